#![no_main]
//! ELF headers of programs and modules (`formats::elf`) and a module's
//! `.modinfo` strings: no panic, no out-of-bounds read, a bounded
//! interpreter path.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::elf::parse;
use nixlive_formats::kmod::{modinfo, vermagic_release};

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = parse(data) {
        assert!(info.interpreter.as_ref().is_none_or(|i| i.len() <= 4096 * 3));
        let _ = info.linkage();
    }
    for v in modinfo(data, "firmware") {
        assert!(v.len() <= 4096);
    }
    let _ = vermagic_release(data);
});

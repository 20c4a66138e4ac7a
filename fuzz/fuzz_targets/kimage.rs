#![no_main]
//! Kernel image headers (`formats::kimage`: bzImage, arm64 Image, EFI
//! zboot, PE): no panic, no out-of-bounds read, releases that are one word.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::kimage::{banner_release, parse, pe_machine};

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = parse(data)
        && let Some(v) = &k.version
    {
        assert!(!v.is_empty() && v.len() <= 64 && !v.contains(char::is_whitespace));
    }
    let _ = pe_machine(data);
    let _ = banner_release(data);
});

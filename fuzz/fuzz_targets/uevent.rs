#![no_main]
//! Netlink uevent messages: no panic on any bytes; a MODALIAS= value
//! comes out whole.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::uevent::parse;

fuzz_target!(|data: &[u8]| {
    let ev = parse(data);
    if let Some(m) = &ev.modalias {
        assert!(!m.contains('\0'));
    }
});

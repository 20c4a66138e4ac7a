#![no_main]
//! The medium manifest: parse never panics; what parses renders back to
//! text that parses to the same manifest.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Manifest::parse(text) {
        for i in &m.images {
            assert!(nixlive_formats::lines::is_safe_relative(&i.name));
        }
        assert_eq!(Manifest::parse(&m.to_string()).as_ref(), Ok(&m));
    }
});

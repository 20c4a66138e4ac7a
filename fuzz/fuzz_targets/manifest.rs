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
        for f in &m.files {
            assert!(nixlive_formats::lines::is_safe_relative(&f.name));
            assert!(m.images.iter().all(|i| i.name != f.name));
        }
        // Without files, the version written is 2 (as before version 3).
        assert_eq!(m.version(), if m.files.is_empty() { 2 } else { 3 });
        assert_eq!(Manifest::parse(&m.to_string()).as_ref(), Ok(&m));
    }
});

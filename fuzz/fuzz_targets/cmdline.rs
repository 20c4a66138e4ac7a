#![no_main]
//! The kernel command line: any text parses, and what it yields is sane.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::Cmdline;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = Cmdline::parse(&text);
    if let Some(i) = &c.init {
        assert!(i.starts_with('/'));
    }
    for w in nixlive_formats::cmdline::words(&text) {
        assert!(!w.contains('"'));
    }
});

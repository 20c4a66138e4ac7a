#![no_main]
//! The initrd configuration: parse never panics and round-trips.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::InitrdConf;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = InitrdConf::parse(text) {
        assert_eq!(InitrdConf::parse(&c.to_string()).as_ref(), Ok(&c));
    }
});

#![no_main]
//! cpio newc archives as initrds hold them (`formats::cpio`): no panic, no
//! out-of-bounds read, members within the input, a length that fits.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::cpio::parse_archive;

fuzz_target!(|data: &[u8]| {
    if let Ok((entries, used)) = parse_archive(data) {
        assert!(used <= data.len());
        let total: usize = entries.iter().map(|e| e.data.len()).sum();
        assert!(total <= data.len());
    }
});

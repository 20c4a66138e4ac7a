#![no_main]
//! exFAT and NTFS labels, read as init reads them: the boot sector says
//! where the label is (`label_at`: exFAT's root directory, NTFS's `$Volume`
//! record), init reads that many bytes there and the label is parsed from
//! them. The input is the boot sector (its first 512 bytes) followed by the
//! bytes read at the label's offset (the seeds: mkfs.exfat and mkntfs).
use libfuzzer_sys::fuzz_target;
use nixlive_formats::superblock::{identify, label_at};

fuzz_target!(|data: &[u8]| {
    if let Some(id) = identify(data) {
        assert!(id.label.as_ref().is_none_or(|l| l.len() <= 32 * 3));
    }
    let Some(at) = label_at(data) else {
        return;
    };
    // Init reads `len` bytes at `offset` (64 KiB at most).
    assert!((1..=64 << 10).contains(&at.len), "{at:?}");
    let read = data.get(512..).unwrap_or_default();
    let read = &read[..read.len().min(at.len)];
    if let Some(label) = at.label(read) {
        assert!(!label.is_empty());
        // UTF-16 in the bytes read, two bytes a unit.
        assert!(label.encode_utf16().count() * 2 <= read.len(), "{label:?}");
        if &data[3..11] == b"EXFAT   " {
            assert!(label.encode_utf16().count() <= 11, "{label:?}");
        }
    }
});

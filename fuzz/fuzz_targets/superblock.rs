#![no_main]
//! Superblock probes (ISO9660, ext2/3/4, FAT, GPT) over arbitrary device
//! heads: no panic, no out-of-bounds read, labels within their fields.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::superblock::{ext_health, gpt_names, identify};

fuzz_target!(|data: &[u8]| {
    if let Some(id) = identify(data) {
        assert!(id.label.as_ref().is_none_or(|l| l.len() <= 32 * 3));
    }
    // A plain root is refused exactly when it needs recovery.
    if let Some(h) = ext_health(data) {
        assert_eq!(h.refusal().is_some(), h.needs_recovery || h.orphans);
    }
    if let Some(names) = gpt_names(data) {
        assert!(names.len() <= 1024);
    }
});

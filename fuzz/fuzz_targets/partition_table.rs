#![no_main]
//! The partition table postboot rewrites to grow the root: for any disk
//! head, disk size and partition number, planning never panics, and a plan
//! writes only whole sectors within the disk and grows, never shrinks (an
//! interrupted growth is finished at the size its table says already).
use libfuzzer_sys::fuzz_target;
use nixlive_postboot::grow::plan;

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let sectors = u64::from_le_bytes(data[..8].try_into().unwrap());
    let partno = u32::from_le_bytes(data[8..12].try_into().unwrap()) % 130;
    if let Ok(Some(g)) = plan(&data[12..], sectors, partno) {
        assert!(g.new_sectors >= g.old_sectors);
        for (at, bytes) in g.writes() {
            assert_eq!(at % 512, 0);
            assert_eq!(bytes.len() % 512, 0);
            assert!(at / 512 + bytes.len() as u64 / 512 <= sectors);
        }
    }
});

#![no_main]
//! dm-verity parameters (issue 11), as a version-2 manifest carries them:
//! parsing never panics; what parses passes the checks init relies on
//! (the hash tree lies inside the image, after the data; no sum
//! overflows) and renders back to the same manifest; the table and
//! superblock of accepted parameters are made without panicking.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::Manifest;

const HEAD: &str = "nixlive-manifest 2\ninit /i\nregistration /r\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The input is the image and verity lines (and whatever else follows).
    let whole = format!("{HEAD}{text}");
    let Ok(m) = Manifest::parse(&whole) else {
        return;
    };
    assert_eq!(Manifest::parse(&m.to_string()).as_ref(), Ok(&m));
    for img in &m.images {
        let Some(v) = &img.verity else { continue };
        assert_eq!(v.check(img.size), Ok(()));
        let area = v.hash_area_len().expect("checked: no overflow");
        assert!(v.hash_offset + area <= img.size);
        assert!(v.data_blocks * u64::from(v.data_block) <= v.hash_offset);
        let table = v.target("/dev/loop0");
        assert!(table.starts_with("1 /dev/loop0 /dev/loop0 "));
        assert_eq!(v.superblock([0; 16])[..8], *b"verity\0\0");
    }
});

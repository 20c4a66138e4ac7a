#![no_main]
//! DNS replies: any bytes parse or are refused, without looping; a
//! query for any name is well-formed or refused.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::net::dns;

fuzz_target!(|data: &[u8]| {
    let id = data.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    if let Ok(a) = dns::answer(data, id) {
        assert!(!a.is_empty());
    }
    let name = String::from_utf8_lossy(data);
    if let Ok(q) = dns::query(id, &name) {
        assert!(q.len() >= 17 && q.ends_with(&[0, 0, 1, 0, 1]));
    }
});

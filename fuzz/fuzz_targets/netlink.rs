#![no_main]
//! rtnetlink answers as init reads them after a request: any bytes give
//! the answer to the request or none, never a panic or an endless walk;
//! an answer found stays the answer whatever follows it. The request's
//! sequence number is the first message's (bytes 8..12), so that the
//! fuzzer's messages answer it.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::net::netlink::ack;

fuzz_target!(|data: &[u8]| {
    let seq = data
        .get(8..12)
        .map_or(1, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    for seq in [seq, seq.wrapping_add(1)] {
        let r = ack(data, seq);
        if let Some(Err(errno)) = r {
            assert_ne!(errno, 0, "an error without an errno");
        }
        if r.is_some() {
            let mut more = data.to_vec();
            more.extend_from_slice(&[0xff; 40]);
            assert_eq!(ack(&more, seq), r, "bytes after the answer changed it");
        }
    }
});

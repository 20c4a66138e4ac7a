#![no_main]
//! HTTP response heads: any bytes parse or are refused; a range is ordered.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::net::http::{Head, head_end};

fuzz_target!(|data: &[u8]| {
    if let Some(end) = head_end(data) {
        assert!(end <= data.len() && data[..end].ends_with(b"\r\n\r\n"));
    }
    if let Ok(h) = Head::parse(data) {
        assert!((100..=599).contains(&h.status));
        if let Some(r) = h.range {
            assert!(r.start <= r.end && r.total.is_none_or(|t| r.end < t));
        }
    }
});

#![no_main]
//! The guest report as the host reads it from the serial console (untrusted:
//! the guest writes it): parse never panics; mountinfo lines and the
//! stage-1 timeline render to text that parses back to the same value.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::report::{self, Mount};
use nixlive_formats::timeline::Timeline;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = report::parse(&text);
    if let Ok(mounts) = report::parse_mountinfo(&text) {
        for m in &mounts {
            let again = Mount::from_report(&m.to_report()).expect("a rendered mount line parses");
            assert_eq!(&again, m);
        }
    }
    if let Ok(t) = Timeline::parse(&text) {
        assert_eq!(
            Timeline::parse(&t.to_json()).expect("rendered timeline parses"),
            t
        );
    }
});

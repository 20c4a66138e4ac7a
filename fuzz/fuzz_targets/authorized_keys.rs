#![no_main]
//! authorized_keys lines: parse never panics; an accepted key renders to a
//! line that parses to the same key.
use libfuzzer_sys::fuzz_target;
use nixlive_postboot::keys::{parse_file, parse_line};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_file(&text);
    for line in text.lines() {
        if let Ok(Some(k)) = parse_line(line) {
            let again = parse_line(&k.line())
                .expect("rendered key parses")
                .expect("a key");
            assert_eq!(again.identity(), k.identity());
        }
    }
});

#![no_main]
//! The nix-store --load-db registration: strict parse never panics; what
//! parses renders back to the same bytes' meaning.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::registration::Registration;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Registration::parse(data) {
        let again =
            Registration::parse(r.render().as_bytes()).expect("rendered registration parses");
        assert_eq!(again.render(), r.render());
    }
});

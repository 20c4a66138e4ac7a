#![no_main]
//! The nix-store --load-db registration: strict parse never panics; what
//! parses renders back to the same bytes' meaning; the quick parser, where
//! it answers, answers as the line-by-line reference parser.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::registration::Registration;

fuzz_target!(|data: &[u8]| {
    let reference = Registration::parse_reference(data);
    if let Some(quick) = Registration::parse_quick(data) {
        assert_eq!(Ok(&quick), reference.as_ref(), "the quick parser differs");
    }
    if let Ok(r) = reference {
        let again =
            Registration::parse(r.render().as_bytes()).expect("rendered registration parses");
        assert_eq!(again.render(), r.render());
    }
});

#![no_main]
//! URLs: a parsed URL prints as one that parses to itself; joining any
//! name onto it gives a URL that does too.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::net::url::Url;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\n').unwrap_or((&text, "x"));
    if let Ok(u) = Url::parse(a) {
        assert!(u.path.starts_with('/'));
        assert_eq!(Url::parse(&u.to_string()).as_ref(), Ok(&u));
        if let Ok(j) = u.join(b) {
            assert!(j.path.starts_with('/'));
            // `..` may stay in the query; never in the path.
            let path = j.path.split('?').next().unwrap_or("");
            assert!(!path.split('/').any(|s| s == ".."), "{j}");
            assert_eq!(Url::parse(&j.to_string()).as_ref(), Ok(&j));
        }
    }
});

#![no_main]
//! Nix binary-cache keys, signatures and the trusted-keys file (issue 11):
//! parsing never panics; what parses renders back to the same text;
//! checking a signature against parsed keys never panics and a signature
//! never verifies under a key with another name.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::nixkey::{self, PublicKey, SecretKey, Signature};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = PublicKey::parse(text) {
        assert_eq!(PublicKey::parse(&k.to_string()), Ok(k));
    }
    if let Ok(s) = Signature::parse(text) {
        assert_eq!(Signature::parse(&s.to_string()).as_ref(), Ok(&s));
    }
    if let Ok(sk) = SecretKey::parse(text) {
        let sig = sk.sign(data);
        assert!(sk.public().verifies(data, &sig));
    }
    if let Ok(keys) = nixkey::parse_keys(text) {
        // The file's lines, checked against a signature from the input.
        let sigs: Vec<Signature> = text.lines().filter_map(|l| Signature::parse(l).ok()).collect();
        if let Ok(name) = nixkey::check(data, &sigs, &keys) {
            assert!(keys.iter().any(|k| k.name == name));
            assert!(sigs.iter().any(|s| s.name == name));
        }
    }
});

#![no_main]
//! /etc/passwd and /etc/shadow as postboot reads and rewrites them: no
//! panic; a home directory never climbs out (`..`); the rewritten shadow
//! keeps every other line byte for byte, bytes that are not UTF-8 too
//! (lines split at `\n` only: a `\r` is the line's own) and is stable (a
//! second pass changes nothing).
use libfuzzer_sys::fuzz_target;
use nixlive_postboot::users::{parse_passwd, shadow_field, shadow_with};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(users) = parse_passwd(&text) {
        for u in &users {
            assert!(u.home.starts_with('/') && !u.home.split('/').any(|c| c == ".."));
        }
    }
    let hash = data.first().is_some_and(|b| b % 2 == 0).then_some("$6$s$h");
    // root's line (its password locked or set) or the live user's.
    let user = if data.get(1).is_some_and(|b| b % 2 == 0) { "root" } else { "nixos" };
    if let Some((new, _)) = shadow_with(data, user, hash) {
        if let Some(h) = hash {
            assert_eq!(shadow_field(&new, user), Some(h.as_bytes()));
        }
        let prefix = format!("{user}:");
        let others = |t: &[u8]| -> Vec<Vec<u8>> {
            t.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty() && !l.starts_with(prefix.as_bytes()))
                .map(<[u8]>::to_vec)
                .collect()
        };
        assert_eq!(others(&new), others(data));
        assert_eq!(
            shadow_with(&new, user, hash),
            None,
            "a second pass changes nothing"
        );
    }
});

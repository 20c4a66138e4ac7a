//! SSH keys a medium carries (`/iso/nixlive/authorized_keys`, the
//! builder's `--medium-authorized-keys`): read once, defensively, before
//! copytoram may let the medium go, and handed to postboot in `/run` only
//! when this boot may use them.
//!
//! With a trusted key, a signed boot uses nothing unsigned: the file must
//! be listed in the signed manifest (`file nixlive/authorized_keys SIZE
//! sha256:HEX`) and match it, or it is ignored and the log says why (a
//! stick that carries copies of the signed files plus keys of its own is
//! authentic, but its keys are not). Without a trusted key, the keys are
//! used and the log says that the medium was not authenticated. Keys
//! packed in the initrd are the initrd's, trusted as it is.
//!
//! Deciding ([`decide`]) is pure; [`accept`] reads and logs.

use nixlive_formats::Manifest;
use nixlive_formats::digest::sha256_hex;
use nixlive_formats::paths::{MEDIUM_KEYS, MEDIUM_KEYS_MAX, MEDIUM_KEYS_NAME, in_new_root};

/// Keys this boot may use, and where they came from (one line, for the
/// log and for postboot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub keys: Vec<u8>,
    pub origin: String,
    /// Whether a trusted key vouched for them (else the log warns).
    pub authenticated: bool,
}

/// What to do with the medium's keys file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The medium has none.
    Absent,
    Keep(Accepted),
    /// Not used; the log line says why.
    Ignore(String),
}

/// Decides about the keys file of `medium` as read (`Ok(None)`: there is
/// none; `Err`: why it could not be read), given its manifest and the
/// trusted key that signed it (`None`: the initrd trusts no key).
pub fn decide(
    medium: &str,
    read: Result<Option<Vec<u8>>, String>,
    m: &Manifest,
    signed_by: Option<&str>,
) -> Verdict {
    let what = format!("the SSH keys {MEDIUM_KEYS} of the medium {medium}");
    let keys = match read {
        Ok(None) => return Verdict::Absent,
        Ok(Some(k)) => k,
        Err(why) => return Verdict::Ignore(format!("{what} are ignored: {why}")),
    };
    let listed = m.file(MEDIUM_KEYS_NAME);
    let size = keys.len() as u64;
    let sha = || sha256_hex(&keys);
    let Some(key) = signed_by else {
        let changed = match listed {
            Some(f) if f.size != size || f.sha256 != sha() => {
                "; they are not what its manifest lists (changed after the build)"
            }
            _ => "",
        };
        return Verdict::Keep(Accepted {
            origin: format!(
                "{MEDIUM_KEYS} of the medium {medium}, which was not authenticated \
                 (the initrd trusts no key): whoever could write it can log in{changed}"
            ),
            keys,
            authenticated: false,
        });
    };
    let signed = format!("the manifest signed by the trusted key {key}");
    let Some(f) = listed else {
        return Verdict::Ignore(format!(
            "{what} are ignored: {signed} does not list {MEDIUM_KEYS_NAME} \
             (a signed boot uses only files the manifest lists with their sha256)"
        ));
    };
    if f.size != size {
        return Verdict::Ignore(format!(
            "{what} are ignored: they are {size} bytes, {signed} lists {} bytes",
            f.size
        ));
    }
    let got = sha();
    if got != f.sha256 {
        return Verdict::Ignore(format!(
            "{what} are ignored: their sha256 is {got}, {signed} lists {}",
            f.sha256
        ));
    }
    Verdict::Keep(Accepted {
        origin: format!(
            "{MEDIUM_KEYS} of the medium {medium}, listed in {signed} (size and sha256 match)"
        ),
        keys,
        authenticated: true,
    })
}

/// Reads the keys of the medium mounted under the new root (capped, no
/// links, regular files only) and decides; logs the outcome.
pub fn accept(medium: &str, m: &Manifest, signed_by: Option<&str>) -> Option<Accepted> {
    let path = in_new_root(MEDIUM_KEYS);
    let read = match crate::medium::read_bytes_capped(&path, MEDIUM_KEYS_MAX) {
        Ok(k) => Ok(Some(k)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            Err(format!("larger than {MEDIUM_KEYS_MAX} bytes"))
        }
        Err(e) => Err(format!("reading {path}: {e}")),
    };
    match decide(medium, read, m, signed_by) {
        Verdict::Absent => None,
        Verdict::Ignore(why) => {
            log::warn!("{why}");
            crate::console::say(&format!("{why}\n"));
            None
        }
        Verdict::Keep(a) => {
            if a.authenticated {
                log::info!("SSH keys from {}", a.origin);
            } else {
                log::warn!("SSH keys from {}", a.origin);
            }
            Some(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixlive_formats::FileEntry;

    const KEYS: &[u8] =
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI me\n";

    fn manifest(listed: Option<(u64, String)>) -> Manifest {
        let mut m = crate::plan::tests::manifest(1);
        m.files = listed
            .into_iter()
            .map(|(size, sha256)| FileEntry {
                name: MEDIUM_KEYS_NAME.into(),
                size,
                sha256,
            })
            .collect();
        m
    }

    fn listed() -> Manifest {
        manifest(Some((KEYS.len() as u64, sha256_hex(KEYS))))
    }

    fn ignored(v: Verdict) -> String {
        match v {
            Verdict::Ignore(why) => why,
            other => panic!("not ignored: {other:?}"),
        }
    }

    #[test]
    fn signed_and_listed_keys_are_kept() {
        let v = decide("/dev/sr0", Ok(Some(KEYS.to_vec())), &listed(), Some("k-1"));
        let Verdict::Keep(a) = v else { panic!("{v:?}") };
        assert_eq!(a.keys, KEYS);
        assert!(a.authenticated);
        assert_eq!(
            a.origin,
            "/iso/nixlive/authorized_keys of the medium /dev/sr0, listed in the manifest \
             signed by the trusted key k-1 (size and sha256 match)"
        );
    }

    #[test]
    fn a_signed_boot_ignores_keys_the_manifest_does_not_vouch_for() {
        let keys = || Ok(Some(KEYS.to_vec()));
        let why = ignored(decide("/dev/sda", keys(), &manifest(None), Some("k-1")));
        assert_eq!(
            why,
            "the SSH keys /iso/nixlive/authorized_keys of the medium /dev/sda are ignored: the \
             manifest signed by the trusted key k-1 does not list nixlive/authorized_keys (a \
             signed boot uses only files the manifest lists with their sha256)"
        );
        let other = manifest(Some((KEYS.len() as u64 + 1, sha256_hex(KEYS))));
        let why = ignored(decide("/dev/sda", keys(), &other, Some("k-1")));
        assert!(
            why.ends_with(&format!(
                "they are {} bytes, the manifest signed by the trusted key k-1 lists {} bytes",
                KEYS.len(),
                KEYS.len() + 1
            )),
            "{why}"
        );
        let other = manifest(Some((KEYS.len() as u64, "0".repeat(64))));
        let why = ignored(decide("/dev/sda", keys(), &other, Some("k-1")));
        assert!(
            why.contains(&format!("their sha256 is {}", sha256_hex(KEYS)))
                && why.ends_with(&format!("lists {}", "0".repeat(64))),
            "{why}"
        );
        // One byte changed, same size.
        let mut changed = KEYS.to_vec();
        changed[20] ^= 1;
        let why = ignored(decide(
            "/dev/sda",
            Ok(Some(changed)),
            &listed(),
            Some("k-1"),
        ));
        assert!(why.contains("their sha256 is"), "{why}");
    }

    #[test]
    fn unreadable_or_absent_keys() {
        assert_eq!(
            decide("/dev/sr0", Ok(None), &listed(), Some("k-1")),
            Verdict::Absent
        );
        assert_eq!(
            decide("/dev/sr0", Ok(None), &listed(), None),
            Verdict::Absent
        );
        let why = ignored(decide(
            "/dev/sda",
            Err("a FIFO, not a regular file: refused".into()),
            &listed(),
            None,
        ));
        assert!(
            why.ends_with("are ignored: a FIFO, not a regular file: refused"),
            "{why}"
        );
    }

    #[test]
    fn without_a_trusted_key_keys_are_kept_and_said_unauthenticated() {
        for m in [manifest(None), listed()] {
            let Verdict::Keep(a) = decide("/dev/vda", Ok(Some(KEYS.to_vec())), &m, None) else {
                panic!()
            };
            assert!(!a.authenticated);
            assert_eq!(
                a.origin,
                "/iso/nixlive/authorized_keys of the medium /dev/vda, which was not \
                 authenticated (the initrd trusts no key): whoever could write it can log in"
            );
        }
        let other = manifest(Some((1, "0".repeat(64))));
        let Verdict::Keep(a) = decide("/dev/vda", Ok(Some(KEYS.to_vec())), &other, None) else {
            panic!()
        };
        assert!(
            a.origin.ends_with("(changed after the build)"),
            "{}",
            a.origin
        );
    }
}

//! Whether a medium is authentic: its manifest signed by a Nix
//! binary-cache key the initrd trusts ([`nixkey::TRUSTED_KEYS`], packed by
//! the builder's `--trusted-key`). Deciding ([`decide`]) is pure; reading
//! the keys and a candidate medium's manifest is the thin part.
//!
//! With no trusted key, nothing changes from an unsigned boot (the log says
//! that the medium is not authenticated); with one, a manifest that does
//! not verify is refused, and every image is checked.

use crate::error::BootError;
use crate::exec::mount_data;
use nixlive_formats::manifest::{self, signed_part};
use nixlive_formats::nixkey::{self, PublicKey};
use nixlive_formats::{Cmdline, Manifest};
use rustix::mount::{MountFlags, UnmountFlags, unmount};

/// The keys the initrd trusts; none when it has no key file. A key file
/// that is there but bad stops the boot: it was meant to protect it.
pub fn trusted_keys(path: &str) -> Result<Vec<PublicKey>, BootError> {
    let text = match crate::medium::read_capped(path, nixkey::MAX_KEYS_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BootError::sys("read", path)(e)),
    };
    let keys = nixkey::parse_keys(&text).map_err(|source| BootError::Manifest {
        path: path.to_string(),
        source,
    })?;
    if keys.is_empty() {
        log::warn!("{path} holds no key: the medium will not be authenticated");
    }
    Ok(keys)
}

/// The trusted key that signed the manifest `text` (None: no key is
/// trusted, so there is nothing to check), or why it is not trusted.
/// `text` is `None` for a medium without a manifest (the stock layout).
pub fn decide(
    text: Option<&str>,
    m: &Manifest,
    keys: &[PublicKey],
) -> Result<Option<String>, String> {
    if keys.is_empty() {
        return Ok(None);
    }
    let Some(text) = text else {
        return Err(
            "there is none (a stock layout), and the initrd trusts only signed manifests".into(),
        );
    };
    nixkey::check(signed_part(text).as_bytes(), &m.sigs, keys)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Checks the manifest read from `medium`; logs the outcome.
pub fn authenticate(
    medium: &str,
    manifest_path: &str,
    text: Option<&str>,
    m: &Manifest,
    keys: &[PublicKey],
) -> Result<Option<String>, BootError> {
    match decide(text, m, keys) {
        Ok(None) => {
            log::warn!(
                "the medium {medium} is not authenticated: the initrd trusts no key \
                 (build it with --trusted-key, the medium with --sign-key)"
            );
            Ok(None)
        }
        Ok(Some(key)) => {
            log::info!(
                "the medium {medium}: manifest {manifest_path} signed by the trusted key {key}"
            );
            Ok(Some(key))
        }
        Err(why) => Err(BootError::Untrusted {
            medium: medium.to_string(),
            manifest: manifest_path.to_string(),
            why,
        }),
    }
}

/// Where a candidate medium is looked into during the search.
const PROBE_DIR: &str = "/run/nixlive/candidate";

/// During the search, with trusted keys: does the device `node` hold a
/// manifest signed by one of them? It is mounted read-only (nosuid,
/// nodev) for the look and unmounted again. `Err` says why not.
pub fn candidate(
    node: &str,
    fstype: &str,
    cmdline: &Cmdline,
    keys: &[PublicKey],
) -> Result<String, String> {
    std::fs::create_dir_all(PROBE_DIR).map_err(|e| format!("creating {PROBE_DIR}: {e}"))?;
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
    mount_data(node, PROBE_DIR, fstype, flags, "")
        .map_err(|e| format!("mounting it ({fstype}): {e}"))?;
    let rel = cmdline
        .manifest
        .clone()
        .unwrap_or_else(|| format!("/{}", manifest::DEFAULT_PATH));
    let path = format!("{PROBE_DIR}{rel}");
    let verdict = crate::medium::read_capped(&path, manifest::MAX_BYTES)
        .map_err(|e| format!("reading its manifest {rel}: {e}"))
        .and_then(|text| {
            let m = Manifest::parse(&text).map_err(|e| format!("its manifest {rel}: {e}"))?;
            match decide(Some(&text), &m, keys)? {
                Some(key) => Ok(key),
                None => Err("no trusted key".into()),
            }
        });
    if let Err(e) = unmount(PROBE_DIR, UnmountFlags::empty()) {
        log::warn!("unmounting {PROBE_DIR} after looking at {node}: {e}, ignoring");
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixlive_formats::nixkey::SecretKey;

    fn key(name: &str, seed: u8) -> (SecretKey, PublicKey) {
        // The formats crate's tests check signing against real Nix keys.
        let sk = SecretKey::from_seed(name, &[seed; 32]);
        let pk = sk.public();
        (sk, pk)
    }

    fn signed(sk: &SecretKey) -> (String, Manifest) {
        let m = crate::plan::tests::manifest(1);
        let body = m.unsigned_text();
        let text = format!("{body}sig {}\n", sk.sign(body.as_bytes()));
        let m = Manifest::parse(&text).unwrap();
        (text, m)
    }

    #[test]
    fn decisions() {
        let (sk, pk) = key("good-1", 1);
        let (other_sk, _) = key("other", 2);
        let (text, m) = signed(&sk);
        assert_eq!(decide(Some(&text), &m, &[]), Ok(None));
        assert_eq!(
            decide(Some(&text), &m, std::slice::from_ref(&pk)),
            Ok(Some("good-1".into()))
        );
        // One byte changed: the key is named.
        let changed = text.replacen("a-sys", "b-sys", 1);
        let m2 = Manifest::parse(&changed).unwrap();
        let e = decide(Some(&changed), &m2, std::slice::from_ref(&pk)).unwrap_err();
        assert!(e.contains("good-1") && e.contains("does not match"), "{e}");
        // Unsigned, and signed by a key not trusted.
        let unsigned = m.unsigned_text();
        let e = decide(
            Some(&unsigned),
            &Manifest::parse(&unsigned).unwrap(),
            std::slice::from_ref(&pk),
        )
        .unwrap_err();
        assert!(e.contains("not signed") && e.contains("good-1"), "{e}");
        let (text3, m3) = signed(&other_sk);
        let e = decide(Some(&text3), &m3, std::slice::from_ref(&pk)).unwrap_err();
        assert!(e.contains("signed by other"), "{e}");
        // No manifest at all (the stock layout).
        let e = decide(None, &m, std::slice::from_ref(&pk)).unwrap_err();
        assert!(e.contains("stock"), "{e}");
        let err = authenticate(
            "/dev/sr0",
            "/mnt-root/iso/nixlive.manifest",
            Some(&changed),
            &m2,
            &[pk],
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("the medium /dev/sr0 is not authentic: its manifest /mnt-root/iso/nixlive.manifest: its signature by the trusted key good-1"), "{err}");
    }

    #[test]
    fn key_files() {
        let dir = std::env::temp_dir().join(format!("nixlive-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("keys");
        let p = f.to_str().unwrap();
        assert!(trusted_keys(p).unwrap().is_empty(), "no file, no keys");
        let (_, pk) = key("k", 3);
        std::fs::write(&f, format!("{pk}\n")).unwrap();
        assert_eq!(trusted_keys(p).unwrap(), vec![pk]);
        std::fs::write(&f, "k:bad\n").unwrap();
        let e = nixlive_formats::error::chain(&trusted_keys(p).unwrap_err());
        assert!(e.starts_with(&format!("{p}: line 1:")), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

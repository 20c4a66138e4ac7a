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

/// During the search: can the device `node` be the live medium? It is
/// mounted read-only (nosuid, nodev) for the look and unmounted again.
/// With trusted keys it must hold a manifest one of them signed (`Ok`
/// names the key); without, a manifest that parses or the stock image
/// (`Ok(None)`). `Err` says why not.
pub fn candidate(
    node: &str,
    fstype: &str,
    cmdline: &Cmdline,
    keys: &[PublicKey],
) -> Result<Option<String>, String> {
    std::fs::create_dir_all(PROBE_DIR).map_err(|e| format!("creating {PROBE_DIR}: {e}"))?;
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
    mount_data(node, PROBE_DIR, fstype, flags, "")
        .map_err(|e| format!("mounting it ({fstype}): {e}"))?;
    let rel = cmdline
        .manifest
        .clone()
        .unwrap_or_else(|| format!("/{}", manifest::DEFAULT_PATH));
    let verdict = look_into(PROBE_DIR, &rel, keys);
    if let Err(e) = unmount(PROBE_DIR, UnmountFlags::empty()) {
        log::warn!("unmounting {PROBE_DIR} after looking at {node}: {e}, ignoring");
    }
    verdict
}

/// [`candidate`]'s look at a medium mounted at `dir`, its manifest at
/// `rel`: every file read defensively (no links, regular files only,
/// capped).
pub fn look_into(dir: &str, rel: &str, keys: &[PublicKey]) -> Result<Option<String>, String> {
    let path = format!("{dir}{rel}");
    let text = match crate::medium::read_capped(&path, manifest::MAX_BYTES) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && keys.is_empty() => {
            let stock = format!("{dir}/{}", manifest::STOCK_IMAGE);
            return match std::fs::symlink_metadata(&stock) {
                Ok(m) if m.is_file() => Ok(None),
                Ok(_) => Err(format!(
                    "it has no manifest {rel}, and its {} is not a regular file",
                    manifest::STOCK_IMAGE
                )),
                Err(_) => Err(format!(
                    "it has neither the manifest {rel} nor the stock image {}",
                    manifest::STOCK_IMAGE
                )),
            };
        }
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return Err(format!(
                "its manifest {rel} is larger than {} bytes",
                manifest::MAX_BYTES
            ));
        }
        Err(e) => return Err(format!("reading its manifest {rel}: {e}")),
    };
    let m = Manifest::parse(&text).map_err(|e| format!("its manifest {rel}: {e}"))?;
    if keys.is_empty() {
        return Ok(None);
    }
    match decide(Some(&text), &m, keys)? {
        Some(key) => Ok(Some(key)),
        None => Err("no trusted key".into()),
    }
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

    /// What the search makes of a mounted candidate, with and without a
    /// key: each way it cannot be a live medium is named.
    #[test]
    fn candidates_looked_into() {
        let dir = std::env::temp_dir().join(format!("nixlive-look-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap();
        let rel = "/nixlive.manifest";
        let (sk, pk) = key("good-1", 1);
        let look = |keys: &[PublicKey]| look_into(d, rel, keys);
        // A plain data filesystem.
        let e = look(&[]).unwrap_err();
        assert!(
            e.contains("neither the manifest /nixlive.manifest nor the stock image"),
            "{e}"
        );
        let e = look(std::slice::from_ref(&pk)).unwrap_err();
        assert!(
            e.starts_with("reading its manifest /nixlive.manifest: "),
            "{e}"
        );
        // The stock image, but as a directory: not a medium.
        std::fs::create_dir(dir.join("nix-store.squashfs")).unwrap();
        let e = look(&[]).unwrap_err();
        assert!(e.contains("is not a regular file"), "{e}");
        std::fs::remove_dir(dir.join("nix-store.squashfs")).unwrap();
        std::fs::write(dir.join("nix-store.squashfs"), b"x").unwrap();
        assert_eq!(look(&[]), Ok(None), "the stock layout");
        // A manifest that does not parse, a FIFO, a link.
        let m = dir.join("nixlive.manifest");
        std::fs::write(&m, "nixlive-manifest 1\nbogus\n").unwrap();
        let e = look(&[]).unwrap_err();
        assert!(e.starts_with("its manifest /nixlive.manifest: line"), "{e}");
        std::fs::remove_file(&m).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            m.as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = look(&[]).unwrap_err();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
        std::fs::remove_file(&m).unwrap();
        let (text, _) = signed(&sk);
        std::fs::write(dir.join("elsewhere"), &text).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), &m).unwrap();
        assert!(look(&[]).unwrap_err().contains("reading its manifest"));
        std::fs::remove_file(&m).unwrap();
        // A good one: parsed without a key, checked with one.
        std::fs::write(&m, &text).unwrap();
        assert_eq!(look(&[]), Ok(None));
        assert_eq!(look(std::slice::from_ref(&pk)), Ok(Some("good-1".into())));
        let (_, other) = key("other", 2);
        let e = look(&[other]).unwrap_err();
        assert!(e.contains("good-1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
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

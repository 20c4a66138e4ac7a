//! Path registration for `nix-store --load-db`, computed from a plain tree
//! of store paths (no Nix needed): for each path its NAR hash, NAR size and
//! references, found the way Nix finds them, by scanning the NAR
//! serialisation for the 32-character hash parts of the candidate paths.
//!
//! Format, per path (as NixOS's `closureInfo` writes it):
//!
//! ```text
//! /nix/store/<hash>-<name>
//! sha256:<nix base32 of the NAR's SHA-256>
//! <NAR size in bytes>
//!                                  (deriver: empty)
//! <number of references>
//! /nix/store/<reference>           (one per line, sorted)
//! ```

use crate::nar::{self, NarError};
use crate::nixbase32;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const HASH_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RegError {
    #[error("cannot list store directory {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Nar(#[from] NarError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// Full store path, e.g. `/nix/store/<hash>-name`.
    pub path: String,
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    /// Full store paths, sorted; may include the path itself.
    pub references: Vec<String>,
}

/// The hash part of a store path base name `<32 nix32 chars>-<name>`, or
/// `None` when the name is not a store path's.
pub fn hash_part(base_name: &str) -> Option<&str> {
    let b = base_name.as_bytes();
    if b.len() > HASH_LEN + 1
        && b[HASH_LEN] == b'-'
        && b[..HASH_LEN].iter().all(|&c| nixbase32::is_digit(c))
    {
        Some(&base_name[..HASH_LEN])
    } else {
        None
    }
}

/// Finds which of a set of hash parts occur in a byte stream, across write
/// boundaries (the algorithm of Nix's `RefScanSink`).
pub struct RefScanner {
    wanted: HashSet<[u8; HASH_LEN]>,
    seen: BTreeSet<[u8; HASH_LEN]>,
    tail: Vec<u8>,
}

impl RefScanner {
    pub fn new<'a>(hashes: impl IntoIterator<Item = &'a str>) -> RefScanner {
        let wanted = hashes
            .into_iter()
            .filter_map(|h| <[u8; HASH_LEN]>::try_from(h.as_bytes()).ok())
            .collect();
        RefScanner {
            wanted,
            seen: BTreeSet::new(),
            tail: Vec::new(),
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        // Only the last HASH_LEN - 1 bytes of earlier data can start a match.
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(data);
        let mut i = 0;
        'outer: while i + HASH_LEN <= buf.len() {
            for j in (0..HASH_LEN).rev() {
                if !nixbase32::is_digit(buf[i + j]) {
                    i += j + 1;
                    continue 'outer;
                }
            }
            if let Ok(h) = <[u8; HASH_LEN]>::try_from(&buf[i..i + HASH_LEN])
                && self.wanted.remove(&h)
            {
                self.seen.insert(h);
            }
            i += 1;
        }
        let keep = buf.len().min(HASH_LEN - 1);
        self.tail = buf[buf.len() - keep..].to_vec();
    }

    /// Hash parts found, sorted.
    pub fn found(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }
}

/// A `Write` sink that hashes, counts and scans what passes through it.
struct NarSink {
    hasher: Sha256,
    size: u64,
    scanner: RefScanner,
}

impl Write for NarSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        self.scanner.feed(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Store path base names directly under `store_dir`, sorted. Entries whose
/// names are not `<hash>-<name>` (such as `.links` or a registration file)
/// are left out.
pub fn list_store(store_dir: &Path) -> Result<Vec<String>, RegError> {
    let lerr = |source| RegError::List {
        path: store_dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for e in fs::read_dir(store_dir).map_err(lerr)? {
        let e = e.map_err(lerr)?;
        if let Some(n) = e.file_name().to_str()
            && hash_part(n).is_some()
        {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Computes the path info of each of `names` (base names under `store_dir`),
/// with references among the same set. `prefix` is the logical store
/// directory, normally `/nix/store`.
pub fn compute(
    store_dir: &Path,
    prefix: &str,
    names: &[String],
) -> Result<Vec<PathInfo>, RegError> {
    let hashes: Vec<&str> = names.iter().filter_map(|n| hash_part(n)).collect();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mut sink = NarSink {
            hasher: Sha256::new(),
            size: 0,
            scanner: RefScanner::new(hashes.iter().copied()),
        };
        nar::dump(&store_dir.join(name), &mut sink)?;
        let found: HashSet<String> = sink.scanner.found().into_iter().collect();
        let mut references: Vec<String> = names
            .iter()
            .filter(|n| hash_part(n).is_some_and(|h| found.contains(h)))
            .map(|n| format!("{prefix}/{n}"))
            .collect();
        references.sort();
        out.push(PathInfo {
            path: format!("{prefix}/{name}"),
            nar_hash: sink.hasher.finalize().into(),
            nar_size: sink.size,
            references,
        });
    }
    Ok(out)
}

/// Renders the `nix-store --load-db` text.
pub fn render(infos: &[PathInfo]) -> String {
    let mut s = String::new();
    for i in infos {
        // Writing to a String cannot fail.
        let _ = writeln!(s, "{}", i.path);
        let _ = writeln!(s, "sha256:{}", nixbase32::encode(&i.nar_hash));
        let _ = writeln!(s, "{}", i.nar_size);
        s.push('\n');
        let _ = writeln!(s, "{}", i.references.len());
        for r in &i.references {
            let _ = writeln!(s, "{r}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdfghijklmnpqrsvwxyz";
    const B: &str = "zyxwvsrqpnmlkjihgfdcba9876543210";

    #[test]
    fn hash_parts() {
        assert_eq!(hash_part(&format!("{A}-foo")), Some(A));
        assert_eq!(hash_part(&format!("{A}-")), None);
        assert_eq!(hash_part(A), None);
        assert_eq!(hash_part("nix-path-registration"), None);
        assert_eq!(hash_part(&format!("{}e-foo", &A[..31])), None);
    }

    #[test]
    fn scanner_across_chunks() {
        let text = format!("xx/nix/store/{A}-foo/bin and {B}");
        for split in 0..text.len() {
            let mut s = RefScanner::new([A, B]);
            s.feed(&text.as_bytes()[..split]);
            s.feed(&text.as_bytes()[split..]);
            assert_eq!(
                s.found(),
                vec![A.to_string(), B.to_string()],
                "split {split}"
            );
        }
        // Byte by byte, too.
        let mut s = RefScanner::new([A]);
        for b in text.as_bytes() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.found(), vec![A.to_string()]);
        let mut s = RefScanner::new([A]);
        s.feed(&A.as_bytes()[..31]);
        s.feed(b"!");
        assert!(s.found().is_empty());
    }

    #[test]
    fn computes_references_and_renders() {
        let dir = tempfile::tempdir().unwrap();
        let a = format!("{A}-a");
        let b = format!("{B}-b");
        fs::create_dir(dir.path().join(&a)).unwrap();
        fs::write(
            dir.path().join(&a).join("f"),
            format!("uses /nix/store/{B}-b"),
        )
        .unwrap();
        fs::write(dir.path().join(&b), "self /nix/store/{B} no").unwrap();
        fs::write(dir.path().join("nix-path-registration"), "").unwrap();
        let names = list_store(dir.path()).unwrap();
        assert_eq!(names, vec![a.clone(), b.clone()]);
        let infos = compute(dir.path(), "/nix/store", &names).unwrap();
        assert_eq!(infos[0].references, vec![format!("/nix/store/{b}")]);
        assert!(infos[1].references.is_empty());
        let mut nar = Vec::new();
        nar::dump(&dir.path().join(&b), &mut nar).unwrap();
        assert_eq!(infos[1].nar_size, nar.len() as u64);
        assert_eq!(infos[1].nar_hash, <[u8; 32]>::from(Sha256::digest(&nar)));
        let text = render(&infos);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("/nix/store/{a}"));
        assert!(lines[1].starts_with("sha256:") && lines[1].len() == 7 + 52);
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "1");
        assert_eq!(lines[5], format!("/nix/store/{b}"));
        assert_eq!(lines[6], format!("/nix/store/{b}"));
        assert_eq!(lines[10], "0");
        assert_eq!(lines.len(), 11);
    }
}

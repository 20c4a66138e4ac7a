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
    #[error("`{0}` is not a store path (/nix/store/<32 base-32 chars>-<name>)")]
    NotAStorePath(String),
    #[error("store path {path} does not exist under {store}")]
    Missing { path: String, store: PathBuf },
    /// Nix's own words for it (`topoSort`).
    #[error("cycle detected in the references of `{path}` from `{from}`")]
    Cycle { path: String, from: String },
    #[error("registration line {line}: {msg}")]
    Parse { line: usize, msg: String },
}

/// How NAR hashes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HashFormat {
    /// `nix-store --dump-db`: lowercase hex without algorithm.
    DumpDb,
    /// nixpkgs `closureInfo`: `sha256:<nix base-32>`, empty deriver.
    ClosureInfo,
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

impl PathInfo {
    /// The base name `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
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

/// Turns store path arguments (`/nix/store/<hash>-<name>` or the bare base
/// name) into base names that exist under `store_dir`, in the order given
/// (as `nix-store --dump-db` prints them), without duplicates.
pub fn resolve(store_dir: &Path, args: &[String]) -> Result<Vec<String>, RegError> {
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for a in args {
        let base = a
            .strip_prefix("/nix/store/")
            .unwrap_or(a)
            .trim_end_matches('/');
        if base.contains('/') || hash_part(base).is_none() {
            return Err(RegError::NotAStorePath(a.clone()));
        }
        if fs::symlink_metadata(store_dir.join(base)).is_err() {
            return Err(RegError::Missing {
                path: a.clone(),
                store: store_dir.to_path_buf(),
            });
        }
        if seen.insert(base.to_string()) {
            names.push(base.to_string());
        }
    }
    Ok(names)
}

/// Fails on a reference cycle between two different paths, as Nix does
/// (a path referring to itself is fine).
pub fn check_cycles(infos: &[PathInfo]) -> Result<(), RegError> {
    use std::collections::HashMap;
    let index: HashMap<&str, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, p)| (p.path.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; infos.len()];
    for start in 0..infos.len() {
        if state[start] != 0 {
            continue;
        }
        // Iterative DFS: (node, next reference to look at).
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let refs = &infos[node].references;
            if *next == refs.len() {
                state[node] = 2;
                stack.pop();
                continue;
            }
            let r = &refs[*next];
            *next += 1;
            let Some(&child) = index.get(r.as_str()) else {
                continue;
            };
            if child == node {
                continue;
            }
            match state[child] {
                0 => {
                    state[child] = 1;
                    stack.push((child, 0));
                }
                1 => {
                    return Err(RegError::Cycle {
                        path: infos[child].path.clone(),
                        from: infos[node].path.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The closure of `roots` (full store paths) over the references in
/// `infos`, as base names, sorted. Unknown roots are errors.
pub fn closure_of(infos: &[PathInfo], roots: &[String]) -> Result<Vec<String>, RegError> {
    use std::collections::HashMap;
    let by_path: HashMap<&str, &PathInfo> = infos.iter().map(|p| (p.path.as_str(), p)).collect();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for r in roots {
        let full = if r.starts_with('/') {
            r.clone()
        } else {
            format!("/nix/store/{r}")
        };
        if !by_path.contains_key(full.as_str()) {
            return Err(RegError::Missing {
                path: r.clone(),
                store: PathBuf::from("the closure"),
            });
        }
        todo.push(full);
    }
    while let Some(p) = todo.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        if let Some(info) = by_path.get(p.as_str()) {
            todo.extend(info.references.iter().cloned());
        }
    }
    Ok(seen
        .iter()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .collect())
}

/// Parses `nix-store --load-db` text (as `closureInfo` or `--dump-db`
/// writes it). Hashes may be `sha256:<base 32>`, `sha256:<hex>` or bare hex;
/// derivers are read and dropped.
pub fn parse(text: &str) -> Result<Vec<PathInfo>, RegError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |line: usize, msg: String| RegError::Parse {
        line: line + 1,
        msg,
    };
    let get = |i: usize| -> Result<&str, RegError> {
        lines
            .get(i)
            .copied()
            .ok_or_else(|| err(i, "unexpected end of the registration".into()))
    };
    let store_path = |i: usize, s: &str| -> Result<String, RegError> {
        match s.strip_prefix("/nix/store/") {
            Some(b) if !b.contains('/') && hash_part(b).is_some() => Ok(s.to_string()),
            _ => Err(err(i, format!("`{s}` is not a store path"))),
        }
    };
    while i < lines.len() {
        if lines[i].is_empty() && lines[i..].iter().all(|l| l.is_empty()) {
            break;
        }
        let path = store_path(i, get(i)?)?;
        let h = get(i + 1)?;
        let nar_hash = parse_hash(h).ok_or_else(|| err(i + 1, format!("bad NAR hash `{h}`")))?;
        let sz = get(i + 2)?;
        let nar_size = sz
            .parse::<u64>()
            .map_err(|_| err(i + 2, format!("bad NAR size `{sz}`")))?;
        let _deriver = get(i + 3)?;
        let c = get(i + 4)?;
        let count = c
            .parse::<usize>()
            .map_err(|_| err(i + 4, format!("bad reference count `{c}`")))?;
        let mut references = Vec::with_capacity(count);
        for k in 0..count {
            references.push(store_path(i + 5 + k, get(i + 5 + k)?)?);
        }
        references.sort();
        i += 5 + count;
        out.push(PathInfo {
            path,
            nar_hash,
            nar_size,
            references,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let h = s.strip_prefix("sha256:").unwrap_or(s);
    let bytes = if h.len() == 64 {
        (0..32)
            .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        nixbase32::decode(h, 32)?
    };
    bytes.try_into().ok()
}

/// Computes the path info of each of `names` (base names under `store_dir`),
/// with references among the same set. `prefix` is the logical store
/// directory, normally `/nix/store`.
#[cfg(test)]
pub fn compute(
    store_dir: &Path,
    prefix: &str,
    names: &[String],
) -> Result<Vec<PathInfo>, RegError> {
    compute_with(store_dir, prefix, names, &mut |_| {})
}

/// [`compute`], calling `done` with each base name when it is hashed.
pub fn compute_with(
    store_dir: &Path,
    prefix: &str,
    names: &[String],
    done: &mut dyn FnMut(&str),
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
        done(name);
    }
    check_cycles(&out)?;
    Ok(out)
}

/// Renders the `nix-store --load-db` text. Derivers are unknown here and
/// left empty.
pub fn render(infos: &[PathInfo], format: HashFormat) -> String {
    let mut s = String::new();
    for i in infos {
        // Writing to a String cannot fail.
        let _ = writeln!(s, "{}", i.path);
        let _ = match format {
            HashFormat::ClosureInfo => writeln!(s, "sha256:{}", nixbase32::encode(&i.nar_hash)),
            HashFormat::DumpDb => {
                let hex: String = i.nar_hash.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(s, "{hex}")
            }
        };
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
        let text = render(&infos, HashFormat::ClosureInfo);
        assert_eq!(parse(&text).unwrap(), infos);
        let hex = render(&infos, HashFormat::DumpDb);
        assert_eq!(parse(&hex).unwrap(), infos);
        assert_eq!(hex.lines().nth(1).unwrap().len(), 64);
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

    fn info(p: &str, refs: &[&str]) -> PathInfo {
        PathInfo {
            path: format!("/nix/store/{p}"),
            nar_hash: [0; 32],
            nar_size: 0,
            references: refs.iter().map(|r| format!("/nix/store/{r}")).collect(),
        }
    }

    #[test]
    fn cycles_between_paths_are_errors_self_references_are_not() {
        let a = format!("{A}-a");
        let b = format!("{B}-b");
        check_cycles(&[info(&a, &[&a, &b]), info(&b, &[&b])]).unwrap();
        let e = check_cycles(&[info(&a, &[&b]), info(&b, &[&a])]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cycle detected in the references of"),
            "{e}"
        );
        assert!(
            e.to_string().contains(&a) && e.to_string().contains(&b),
            "{e}"
        );
        // A longer cycle, behind a path that is not part of it.
        let c = format!("{}-c", "1".repeat(32));
        let d = format!("{}-d", "2".repeat(32));
        assert!(
            check_cycles(&[
                info(&a, &[&b]),
                info(&b, &[&c]),
                info(&c, &[&d]),
                info(&d, &[&b])
            ])
            .is_err()
        );
    }

    #[test]
    fn closures_and_resolving() {
        let a = format!("{A}-a");
        let b = format!("{B}-b");
        let c = format!("{}-c", "1".repeat(32));
        let infos = [info(&a, &[&b]), info(&b, &[&b]), info(&c, &[])];
        assert_eq!(
            closure_of(&infos, &[format!("/nix/store/{a}")]).unwrap(),
            [a.clone(), b.clone()]
        );
        assert_eq!(
            closure_of(&infos, std::slice::from_ref(&c)).unwrap(),
            std::slice::from_ref(&c)
        );
        assert!(closure_of(&infos, &["/nix/store/x".into()]).is_err());

        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(&a)).unwrap();
        fs::write(dir.path().join(&b), "").unwrap();
        assert_eq!(
            resolve(
                dir.path(),
                &[format!("/nix/store/{b}"), a.clone(), format!("{a}/")]
            )
            .unwrap(),
            [b.clone(), a.clone()]
        );
        assert!(matches!(
            resolve(dir.path(), std::slice::from_ref(&c)),
            Err(RegError::Missing { .. })
        ));
        assert!(matches!(
            resolve(dir.path(), &["/nix/store/foo".into()]),
            Err(RegError::NotAStorePath(_))
        ));
        assert!(matches!(
            resolve(dir.path(), &[format!("{a}/x")]),
            Err(RegError::NotAStorePath(_))
        ));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = parse(&format!("/nix/store/{A}-a\nsha256:zz\n1\n\n0\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "registration line 2: bad NAR hash `sha256:zz`"
        );
        let e = parse(&format!(
            "/nix/store/{A}-a\n{}\n1\n\n2\n/nix/store/{B}-b\n",
            "0".repeat(64)
        ))
        .unwrap_err();
        assert!(e.to_string().contains("line 7"), "{e}");
        assert!(parse("").unwrap().is_empty());
    }
}

//! Path registration for `nix-store --load-db`, computed from a plain tree
//! of store paths (no Nix needed): for each path its NAR hash, NAR size and
//! references, found the way Nix finds them, by scanning the NAR
//! serialisation for the 32-character hash parts of the candidate paths.
//!
//! The format itself (parsing, rendering, the cycle check) is
//! [`nixlive_formats::registration`]'s.
//!
//! Non-goals: no signatures, no content-addressed paths, no derivers.

use super::nar::{self, NarError};
use nixlive_formats::digest::Hasher;
use nixlive_formats::nix32;
use nixlive_formats::paths::STORE_DIR;
use nixlive_formats::registration::{self as format, HASH_PART_LEN as HASH_LEN, PathInfo};
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RegError {
    #[error("cannot list store directory {path}")]
    List { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Nar(#[from] NarError),
    #[error("`{0}` is not a store path ({STORE_DIR}/<32 base-32 chars>-<name>)")]
    NotAStorePath(String),
    #[error("store path {path} does not exist under {store}")]
    Missing { path: String, store: PathBuf },
    #[error("store path {0} does not exist under the closure")]
    NotInClosure(String),
    /// Nix's own words for it (`topoSort`).
    #[error("cycle detected in the references of `{path}` from `{from}`")]
    Cycle { path: String, from: String },
}

/// The hash part of a store path base name `<32 nix32 chars>-<name>`, or
/// `None` when the name is not a store path's.
pub fn hash_part(base_name: &str) -> Option<&str> {
    let b = base_name.as_bytes();
    if b.len() > HASH_LEN + 1
        && b[HASH_LEN] == b'-'
        && b[..HASH_LEN].iter().all(|&c| nix32::is_digit(c))
    {
        Some(&base_name[..HASH_LEN])
    } else {
        None
    }
}

/// Finds which of a set of hash parts occur in a byte stream, across write
/// boundaries (the algorithm of Nix's `RefScanSink`). The set is shared
/// between the paths hashed at once; each scanner keeps what it saw.
struct RefScanner<'a> {
    wanted: &'a HashSet<[u8; HASH_LEN]>,
    seen: BTreeSet<[u8; HASH_LEN]>,
    /// The last `HASH_LEN - 1` bytes fed (or fewer at the start).
    tail: Vec<u8>,
}

/// The set of hash parts a [`RefScanner`] looks for.
fn wanted_set<'a>(hashes: impl IntoIterator<Item = &'a str>) -> HashSet<[u8; HASH_LEN]> {
    hashes
        .into_iter()
        .filter_map(|h| <[u8; HASH_LEN]>::try_from(h.as_bytes()).ok())
        .collect()
}

impl<'a> RefScanner<'a> {
    fn new(wanted: &'a HashSet<[u8; HASH_LEN]>) -> RefScanner<'a> {
        RefScanner {
            wanted,
            seen: BTreeSet::new(),
            tail: Vec::new(),
        }
    }

    /// Scans `buf` for hash parts that start in it.
    fn scan(&mut self, buf: &[u8]) {
        let mut i = 0;
        'outer: while i + HASH_LEN <= buf.len() {
            for j in (0..HASH_LEN).rev() {
                if !nix32::is_digit(buf[i + j]) {
                    i += j + 1;
                    continue 'outer;
                }
            }
            if let Ok(h) = <[u8; HASH_LEN]>::try_from(&buf[i..i + HASH_LEN])
                && self.wanted.contains(&h)
            {
                self.seen.insert(h);
            }
            i += 1;
        }
    }

    fn feed(&mut self, data: &[u8]) {
        // A match that starts in the earlier data ends in the first
        // HASH_LEN - 1 bytes of this: scan the seam, then the data in place
        // (no copy of the data itself).
        if !self.tail.is_empty() {
            let mut seam = std::mem::take(&mut self.tail);
            seam.extend_from_slice(&data[..data.len().min(HASH_LEN - 1)]);
            self.scan(&seam);
            self.tail = seam;
        }
        self.scan(data);
        if data.len() >= HASH_LEN - 1 {
            self.tail.clear();
            self.tail
                .extend_from_slice(&data[data.len() - (HASH_LEN - 1)..]);
        } else {
            // The seam already holds the old tail and all of `data`.
            if self.tail.is_empty() {
                self.tail.extend_from_slice(data);
            }
            let keep = self.tail.len().min(HASH_LEN - 1);
            self.tail.drain(..self.tail.len() - keep);
        }
    }

    /// Hash parts found, sorted.
    fn found(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }
}

/// A `Write` sink that hashes, counts and scans what passes through it.
struct NarSink<'a> {
    hasher: Hasher,
    scanner: RefScanner<'a>,
}

impl Write for NarSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
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
        let base = super::strip_store(a).unwrap_or(a).trim_end_matches('/');
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
    match format::find_cycle(infos) {
        Some((node, k)) => Err(RegError::Cycle {
            path: infos[node].references[k].clone(),
            from: infos[node].path.clone(),
        }),
        None => Ok(()),
    }
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
            format!("{STORE_DIR}/{r}")
        };
        if !by_path.contains_key(full.as_str()) {
            return Err(RegError::NotInClosure(r.clone()));
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

/// Computes the path info of each of `names` (base names under `store_dir`),
/// with references among the same set, calling `done` with each base name
/// and its NAR size when it is hashed. `prefix` is the logical store
/// directory, normally `/nix/store`.
///
/// The paths are hashed on every core (one path per thread at a time,
/// taken in order); memory is the results and one 64 KiB buffer a thread,
/// whatever the paths' sizes. The result is in the order of `names`.
pub fn compute_with(
    store_dir: &Path,
    prefix: &str,
    names: &[String],
    done: &mut dyn FnMut(&str, u64),
) -> Result<Vec<PathInfo>, RegError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let wanted = wanted_set(names.iter().filter_map(|n| hash_part(n)));
    let by_hash: std::collections::HashMap<&str, &str> = names
        .iter()
        .filter_map(|n| Some((hash_part(n)?, n.as_str())))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(names.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let one = |name: &str| -> Result<PathInfo, RegError> {
        let mut sink = NarSink {
            hasher: Hasher::new(),
            scanner: RefScanner::new(&wanted),
        };
        nar::dump(&store_dir.join(name), &mut sink)?;
        let mut references: Vec<String> = sink
            .scanner
            .found()
            .iter()
            .filter_map(|h| by_hash.get(h.as_str()))
            .map(|n| format!("{prefix}/{n}"))
            .collect();
        references.sort();
        let nar_size = sink.hasher.len();
        Ok(PathInfo::new(
            format!("{prefix}/{name}"),
            sink.hasher.finish(),
            nar_size,
            references,
        ))
    };
    let mut out: Vec<Option<PathInfo>> = vec![None; names.len()];
    let mut first_err: Option<(usize, RegError)> = None;
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, failed, one) = (&next, &failed, &one);
            s.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else { break };
                    let r = one(name);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            match r {
                Ok(info) => {
                    done(&names[i], info.nar_size);
                    out[i] = Some(info);
                }
                // The first path in `names` order that failed: the same
                // error whatever the threads' timing.
                Err(e) => {
                    if first_err.as_ref().is_none_or(|(j, _)| i < *j) {
                        first_err = Some((i, e));
                    }
                }
            }
        }
    });
    if let Some((_, e)) = first_err {
        return Err(e);
    }
    let out: Vec<PathInfo> = out.into_iter().flatten().collect();
    check_cycles(&out)?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nixlive_formats::registration::{HashFormat, Registration, render};

    fn compute(
        store_dir: &Path,
        prefix: &str,
        names: &[String],
    ) -> Result<Vec<PathInfo>, RegError> {
        compute_with(store_dir, prefix, names, &mut |_, _| {})
    }

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
            let w = wanted_set([A, B]);
            let mut s = RefScanner::new(&w);
            s.feed(&text.as_bytes()[..split]);
            s.feed(&text.as_bytes()[split..]);
            assert_eq!(
                s.found(),
                vec![A.to_string(), B.to_string()],
                "split {split}"
            );
        }
        // Byte by byte, too.
        let w = wanted_set([A]);
        let mut s = RefScanner::new(&w);
        for b in text.as_bytes() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.found(), vec![A.to_string()]);
        let mut s = RefScanner::new(&w);
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
        assert_eq!(infos[1].nar_hash, nixlive_formats::digest::sha256(&nar));
        let text = render(&infos, HashFormat::ClosureInfo);
        let hex = render(&infos, HashFormat::DumpDb);
        for t in [&text, &hex] {
            let back = Registration::parse(t.as_bytes()).unwrap().paths;
            assert_eq!(render(&back, HashFormat::ClosureInfo), text);
            assert_eq!(back[0].nar_hash, infos[0].nar_hash);
        }
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

    #[test]
    fn causes_are_printed_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = anyhow::Error::from(list_store(&dir.path().join("none")).unwrap_err());
        let text = format!("{e:#}");
        assert!(text.starts_with("cannot list store directory "), "{text}");
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        let a = format!("{A}-a");
        let e = compute(dir.path(), "/nix/store", &[a]).unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
    }

    /// A path info with references, for tests.
    pub(crate) fn info(p: &str, refs: &[&str]) -> PathInfo {
        PathInfo::new(
            format!("/nix/store/{p}"),
            [0; 32],
            0,
            refs.iter().map(|r| format!("/nix/store/{r}")).collect(),
        )
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
}

//! The path-registration format of `nix-store --load-db` (what NixOS's
//! `closureInfo` writes to `registration` and live media keep at
//! `/nix/store/nix-path-registration`), parsed strictly.
//!
//! Per store path, one record of lines, each ending in `\n`:
//!
//! ```text
//! /nix/store/<hash>-<name>          store path
//! sha256:<nix base-32 digest>       NAR hash (also base 16, base 64, SRI)
//! <bytes>                           NAR size, decimal, > 0
//! [/nix/store/<hash>-<name>.drv]    deriver, or an empty line
//! <n>                               number of references
//! /nix/store/<hash>-<name>          n lines, one reference each
//! ```
//!
//! Strict where Nix is lax (`nix-store --load-db` would accept some of these
//! or fail half-way): the file ends in a newline and has no trailing blank
//! line; every path is a valid store path under `/nix/store`; a path is
//! listed once; a reference is listed once per record and names a path of
//! the same file (the file is a closure); only SHA-256 hashes; sizes and
//! counts are plain decimals without leading zeros. Every error names the
//! line (1-based) and the field.
//!
//! Pure: bytes in, [`Registration`] out, no I/O (fuzzable).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use thiserror::Error;

use crate::{base64, hex, nix32};

/// The store directory every path must be in.
pub const STORE_DIR: &str = crate::paths::STORE_DIR;
/// Length of the hash part of a store path's base name.
pub const HASH_PART_LEN: usize = 32;
/// Longest name after the hash part that Nix accepts.
pub const MAX_NAME_LEN: usize = 211;

/// Which line of a record an error is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Path,
    NarHash,
    NarSize,
    Deriver,
    RefCount,
    Reference,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Path => "store path",
            Field::NarHash => "NAR hash",
            Field::NarSize => "NAR size",
            Field::Deriver => "deriver",
            Field::RefCount => "reference count",
            Field::Reference => "reference",
        })
    }
}

/// A malformed registration: the line (1-based), the field expected there,
/// and what is wrong with it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("line {line} ({field}): {msg}")]
pub struct RegistrationError {
    pub line: usize,
    pub field: Field,
    pub msg: String,
}

/// One registered store path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// `/nix/store/<hash>-<name>`.
    pub path: String,
    /// SHA-256 of the path's NAR serialisation.
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    pub deriver: Option<String>,
    /// Full store paths, sorted, each once; may include `path` itself.
    pub references: Vec<String>,
    /// The line the record starts on.
    pub line: usize,
}

impl PathInfo {
    /// A path's info as computed rather than read from a file: no deriver,
    /// `line` 0.
    pub fn new(path: String, nar_hash: [u8; 32], nar_size: u64, references: Vec<String>) -> Self {
        PathInfo {
            path,
            nar_hash,
            nar_size,
            deriver: None,
            references,
            line: 0,
        }
    }

    /// The base name `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The hash as Nix keeps it in its database: `sha256:<base 16>`.
    pub fn nar_hash_base16(&self) -> String {
        format!("sha256:{}", hex::encode(&self.nar_hash))
    }

    /// The hash as `closureInfo` writes it: `sha256:<nix base 32>`.
    pub fn nar_hash_base32(&self) -> String {
        format!("sha256:{}", nix32::encode(&self.nar_hash))
    }
}

/// A parsed registration file: the records in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Registration {
    pub paths: Vec<PathInfo>,
}

impl Registration {
    /// Parses a whole registration file. An empty file registers nothing.
    pub fn parse(data: &[u8]) -> Result<Registration, RegistrationError> {
        if data.is_empty() {
            return Ok(Registration::default());
        }
        let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        // `split` yields an empty last piece after a final newline.
        let complete = data.ends_with(b"\n");
        let lines = &lines[..lines.len() - usize::from(complete)];
        let mut cur = Cursor {
            lines,
            next: 0,
            complete,
        };
        let mut paths: Vec<PathInfo> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut refs_at: Vec<Vec<(String, usize)>> = Vec::new();
        while cur.next < lines.len() {
            let (n, path) = cur.take(Field::Path)?;
            if path.is_empty() {
                let msg = if cur.next == lines.len() {
                    "trailing blank line after the last record"
                } else {
                    "blank line where a store path was expected"
                };
                return Err(err(n, Field::Path, msg));
            }
            check_store_path(path).map_err(|m| err(n, Field::Path, m))?;
            if let Some(first) = seen.get(path) {
                return Err(err(
                    n,
                    Field::Path,
                    format!("{path} is listed twice (first on line {first})"),
                ));
            }
            seen.insert(path.to_string(), n);

            let (hn, hash) = cur.take(Field::NarHash)?;
            let nar_hash = parse_sha256(hash).map_err(|m| err(hn, Field::NarHash, m))?;

            let (sn, size) = cur.take(Field::NarSize)?;
            let nar_size = parse_decimal(size).map_err(|m| err(sn, Field::NarSize, m))?;
            if nar_size == 0 {
                return Err(err(sn, Field::NarSize, "a NAR is never 0 bytes long"));
            }

            let (dn, deriver) = cur.take(Field::Deriver)?;
            let deriver = if deriver.is_empty() {
                None
            } else {
                check_store_path(deriver).map_err(|m| err(dn, Field::Deriver, m))?;
                Some(deriver.to_string())
            };

            let (cn, count) = cur.take(Field::RefCount)?;
            let count = parse_decimal(count).map_err(|m| err(cn, Field::RefCount, m))?;
            let left = (lines.len() - cur.next) as u64;
            if count > left {
                return Err(err(
                    cn,
                    Field::RefCount,
                    format!("{count} references announced, only {left} lines follow"),
                ));
            }
            let mut refs: Vec<(String, usize)> = Vec::new();
            let mut set = BTreeSet::new();
            for _ in 0..count {
                let (rn, r) = cur.take(Field::Reference)?;
                check_store_path(r).map_err(|m| err(rn, Field::Reference, m))?;
                if !set.insert(r.to_string()) {
                    return Err(err(
                        rn,
                        Field::Reference,
                        format!("{r} is listed twice in this record"),
                    ));
                }
                refs.push((r.to_string(), rn));
            }
            refs_at.push(refs);
            paths.push(PathInfo {
                path: path.to_string(),
                nar_hash,
                nar_size,
                deriver,
                references: set.into_iter().collect(),
                line: n,
            });
        }
        for refs in &refs_at {
            for (r, rn) in refs {
                if !seen.contains_key(r) {
                    return Err(err(
                        *rn,
                        Field::Reference,
                        format!("{r} is not registered in this file"),
                    ));
                }
            }
        }
        if let Some((node, k)) = find_cycle(&paths) {
            let r = &paths[node].references[k];
            let rn = refs_at[node]
                .iter()
                .find(|(name, _)| name == r)
                .map_or(paths[node].line, |&(_, rn)| rn);
            return Err(err(
                rn,
                Field::Reference,
                format!(
                    "{r} closes a reference cycle with {} (only a path's reference to itself is allowed)",
                    paths[node].path
                ),
            ));
        }
        Ok(Registration { paths })
    }

    /// Renders in the `nix-store --load-db` format (hashes in nix base 32),
    /// which [`Registration::parse`] reads back unchanged (apart from the
    /// hash encoding and reference order of the input).
    pub fn render(&self) -> String {
        render(&self.paths, HashFormat::ClosureInfo)
    }
}

/// How [`render`] writes NAR hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// `nix-store --dump-db`: lowercase base 16 without the algorithm.
    DumpDb,
    /// nixpkgs `closureInfo`: `sha256:<nix base 32>`.
    ClosureInfo,
}

/// Renders records in the `nix-store --load-db` format, the deriver line
/// empty where it is unknown.
pub fn render(paths: &[PathInfo], format: HashFormat) -> String {
    let mut s = String::new();
    for p in paths {
        s.push_str(&p.path);
        s.push('\n');
        s.push_str(&match format {
            HashFormat::ClosureInfo => p.nar_hash_base32(),
            HashFormat::DumpDb => hex::encode(&p.nar_hash),
        });
        s.push('\n');
        s.push_str(&p.nar_size.to_string());
        s.push('\n');
        if let Some(d) = &p.deriver {
            s.push_str(d);
        }
        s.push('\n');
        s.push_str(&p.references.len().to_string());
        s.push('\n');
        for r in &p.references {
            s.push_str(r);
            s.push('\n');
        }
    }
    s
}

/// A reference cycle between different paths, as `(node, k)`: the
/// reference `paths[node].references[k]` closes it. Nix refuses (and rolls
/// back) such a registration (`topoSort` in `registerValidPaths`);
/// self-references are fine, and references to paths not in `paths` are
/// passed over.
pub fn find_cycle(paths: &[PathInfo]) -> Option<(usize, usize)> {
    let index: HashMap<&str, usize> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.path.as_str(), i))
        .collect();
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state = vec![0u8; paths.len()];
    for start in 0..paths.len() {
        if state[start] != 0 {
            continue;
        }
        // Iterative DFS: (node, next reference to look at).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let k = *next;
            let Some(r) = paths[node].references.get(k) else {
                state[node] = 2;
                stack.pop();
                continue;
            };
            *next += 1;
            let Some(&to) = index.get(r.as_str()) else {
                continue;
            };
            if to == node {
                continue;
            }
            match state[to] {
                0 => {
                    state[to] = 1;
                    stack.push((to, 0));
                }
                1 => return Some((node, k)),
                _ => {}
            }
        }
    }
    None
}

fn err(line: usize, field: Field, msg: impl Into<String>) -> RegistrationError {
    RegistrationError {
        line,
        field,
        msg: msg.into(),
    }
}

struct Cursor<'a> {
    lines: &'a [&'a [u8]],
    next: usize,
    complete: bool,
}

impl<'a> Cursor<'a> {
    /// The next line as text, with its 1-based number.
    fn take(&mut self, field: Field) -> Result<(usize, &'a str), RegistrationError> {
        let n = self.next + 1;
        let Some(raw) = self.lines.get(self.next) else {
            return Err(err(n, field, "file ends in the middle of a record"));
        };
        self.next += 1;
        if self.next == self.lines.len() && !self.complete {
            return Err(err(n, field, "last line does not end with a newline"));
        }
        let text =
            std::str::from_utf8(raw).map_err(|_| err(n, field, "line is not valid UTF-8"))?;
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(err(
                n,
                field,
                format!("control character {c:?} in line (CR, tab, ...)"),
            ));
        }
        Ok((n, text))
    }
}

/// Checks `/nix/store/<32 nix base-32 chars>-<name>` with Nix's name rules
/// (and, as newer Nix, no name starting with a dot).
pub fn check_store_path(p: &str) -> Result<(), String> {
    let Some(base) = p.strip_prefix(STORE_DIR).and_then(|r| r.strip_prefix('/')) else {
        return Err(format!("{p:?} is not in {STORE_DIR}"));
    };
    if base.contains('/') {
        return Err(format!("{p:?} is not directly in {STORE_DIR}"));
    }
    let b = base.as_bytes();
    if b.len() < HASH_PART_LEN + 2 || b[HASH_PART_LEN] != b'-' {
        return Err(format!("{p:?}: base name is not <32-char hash>-<name>"));
    }
    if let Some(c) = b[..HASH_PART_LEN].iter().find(|c| !nix32::is_digit(**c)) {
        return Err(format!(
            "{p:?}: {:?} is not a nix base-32 digit in the hash part",
            char::from(*c)
        ));
    }
    let name = &base[HASH_PART_LEN + 1..];
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{p:?}: name is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if name.starts_with('.') {
        return Err(format!("{p:?}: name starts with a dot"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '?' | '=')))
    {
        return Err(format!("{p:?}: character {c:?} is not allowed in a name"));
    }
    Ok(())
}

fn parse_decimal(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err("empty, a decimal number was expected".into());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{s:?} has a leading zero"));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is too large for 64 bits"))
}

/// Parses a SHA-256 as Nix's `Hash::parseAny(s, htSHA256)` does: `sha256:`
/// followed by base 16, nix base 32 or base 64; SRI `sha256-<base 64>`; or
/// the bare digest in one of those encodings.
pub fn parse_sha256(s: &str) -> Result<[u8; 32], String> {
    let digest = if let Some(rest) = s.strip_prefix("sha256:") {
        rest
    } else if let Some(rest) = s.strip_prefix("sha256-") {
        return base64::decode(rest)
            .ok_or_else(|| format!("{s:?}: SRI hash is not valid base 64"))
            .and_then(|v| to32(s, v));
    } else if let Some((algo, _)) = s.split_once([':', '-']) {
        return Err(format!(
            "{s:?}: only sha256 hashes are registered, not {algo:?}"
        ));
    } else {
        s
    };
    let bytes = match digest.len() {
        64 => hex::decode(digest).ok_or_else(|| format!("{s:?} is not valid base 16"))?,
        52 => nix32::decode(digest, 32).map_err(|m| format!("{s:?}: {m}"))?,
        44 => base64::decode(digest).ok_or_else(|| format!("{s:?} is not valid base 64"))?,
        0 => return Err("empty, a sha256 hash was expected".into()),
        n => {
            return Err(format!(
                "{s:?}: a SHA-256 digest is 64 (base 16), 52 (base 32) or 44 (base 64) characters, not {n}"
            ));
        }
    };
    to32(s, bytes)
}

fn to32(s: &str, v: Vec<u8>) -> Result<[u8; 32], String> {
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| format!("{s:?} decodes to {} bytes, not 32", v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a";
    const B: &str = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-b-1.0";
    // sha256("abc")
    const ABC32: &str = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";
    const ABC16: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const ABC64: &str = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";

    fn good() -> String {
        format!("{A}\nsha256:{ABC32}\n120\n\n2\n{B}\n{A}\n{B}\nsha256:{ABC16}\n8\n{B}.drv\n0\n")
    }

    #[test]
    fn parses_records() {
        let r = Registration::parse(good().as_bytes()).unwrap();
        assert_eq!(r.paths.len(), 2);
        let a = &r.paths[0];
        assert_eq!(a.path, A);
        assert_eq!(a.nar_hash_base16(), format!("sha256:{ABC16}"));
        assert_eq!(a.nar_size, 120);
        assert_eq!(a.deriver, None);
        assert_eq!(a.references, vec![A.to_string(), B.to_string()]);
        assert_eq!(a.line, 1);
        assert_eq!(r.paths[1].deriver.as_deref(), Some(&*format!("{B}.drv")));
        assert_eq!(r.paths[1].line, 8);
        assert_eq!(r.paths[1].nar_hash, a.nar_hash);
        assert_eq!(Registration::parse(b"").unwrap().paths.len(), 0);
        let again = Registration::parse(r.render().as_bytes()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn hash_forms() {
        let want = parse_sha256(&format!("sha256:{ABC16}")).unwrap();
        assert_eq!(nix32::encode(&want), ABC32);
        for s in [
            format!("sha256:{ABC32}"),
            format!("sha256:{ABC64}"),
            format!("sha256-{ABC64}"),
            ABC32.to_string(),
            ABC16.to_string(),
        ] {
            assert_eq!(parse_sha256(&s).unwrap(), want, "{s}");
        }
        assert!(parse_sha256(&format!("sha1:{ABC32}")).is_err());
        assert!(parse_sha256("sha256:abc").is_err());
        // A first digit with bits beyond 256.
        assert!(parse_sha256(&format!("sha256:z{}", &ABC32[1..])).is_err());
        assert!(parse_sha256(&format!("sha256:e{}", &ABC32[1..])).is_err());
    }

    fn error_of(text: &str) -> RegistrationError {
        Registration::parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn errors_name_line_and_field() {
        let g = good();
        let e = error_of(g.trim_end_matches('\n'));
        assert_eq!((e.line, e.field), (12, Field::RefCount), "{e}");
        assert!(e.msg.contains("newline"), "{e}");
        let e = error_of(&format!("{g}\n"));
        assert_eq!((e.line, e.field), (13, Field::Path));
        assert!(e.msg.contains("trailing blank"), "{e}");
        let e = error_of(&g.replace(ABC32, &ABC32.replace('1', "e")));
        assert_eq!((e.line, e.field), (2, Field::NarHash), "{e}");
        let e = error_of(&g.replace(
            &format!("{A}\n{B}\nsha"),
            &format!("/nix/store/{}-c\n{B}\nsha", &A[11..43]),
        ));
        assert_eq!((e.line, e.field), (7, Field::Reference), "{e}");
        assert!(e.msg.contains("not registered"), "{e}");
        let e = error_of(&g.replace("\n120\n", "\n0120\n"));
        assert_eq!((e.line, e.field), (3, Field::NarSize), "{e}");
        let e = error_of(&g.replace("\n2\n", "\n3\n"));
        assert_eq!((e.line, e.field), (8, Field::Reference), "{e}");
        let e = error_of(&format!("{g}{A}\nsha256:{ABC32}\n1\n\n0\n"));
        assert!(e.msg.contains("twice (first on line 1)"), "{e}");
        let e = error_of(&g.replace(A, "/nix/store/tooshort-a"));
        assert_eq!((e.line, e.field), (1, Field::Path), "{e}");
        assert_eq!(e.to_string(), format!("line 1 (store path): {}", e.msg));
    }

    #[test]
    fn cycles() {
        // A refers to B and B back to A (line 11).
        let cyclic =
            format!("{A}\nsha256:{ABC32}\n1\n\n1\n{B}\n{B}\nsha256:{ABC32}\n1\n\n2\n{A}\n{B}\n");
        let e = error_of(&cyclic);
        assert_eq!((e.line, e.field), (12, Field::Reference), "{e}");
        assert!(e.msg.contains("cycle"), "{e}");
        // Self-references only: fine.
        assert!(Registration::parse(good().as_bytes()).is_ok());
    }

    #[test]
    fn finds_cycles_and_renders_both_hash_forms() {
        let c = "/nix/store/11111111111111111111111111111111-c";
        let info = |p: &str, refs: &[&str]| {
            PathInfo::new(
                p.to_string(),
                [0; 32],
                1,
                refs.iter().map(|r| r.to_string()).collect(),
            )
        };
        assert_eq!(find_cycle(&[info(A, &[A, B]), info(B, &[B])]), None);
        // Behind a path that is not part of it, and past an unknown one.
        let paths = [
            info(A, &[B]),
            info(B, &[c]),
            info(c, &["/nix/store/x", A, B]),
        ];
        assert_eq!(find_cycle(&paths), Some((2, 1)));
        assert_eq!(paths[2].base_name(), &c[11..]);

        let r = Registration::parse(good().as_bytes()).unwrap();
        let dump = render(&r.paths, HashFormat::DumpDb);
        assert_eq!(dump.lines().nth(1), Some(ABC16));
        assert_eq!(render(&r.paths, HashFormat::ClosureInfo), r.render());
        assert_eq!(Registration::parse(dump.as_bytes()).unwrap(), r);
    }

    #[test]
    fn store_paths() {
        assert!(check_store_path(A).is_ok());
        assert!(check_store_path(&format!("{A}/bin")).is_err());
        assert!(check_store_path(&format!("{A} ")).is_err());
        assert!(check_store_path(&A.replace("-a", "-.a")).is_err());
        assert!(check_store_path(&A.replace("-a", "-")).is_err());
        assert!(check_store_path(&A.replace("/nix/store", "/gnu/store")).is_err());
        assert!(check_store_path(&A.replace('0', "e")).is_err());
        assert!(check_store_path(&format!("{A}{}", "x".repeat(211))).is_err());
        assert!(check_store_path(&format!("{A}{}", "x".repeat(210))).is_ok());
    }
}

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
/// The largest registration postboot reads (64 MiB): a NixOS system's is
/// about 1 MB (some 2,000 paths); this holds well over 100,000 paths with
/// their references. The builder refuses a closure whose registration is
/// larger.
pub const MAX_BYTES: u64 = 64 << 20;

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
    ///
    /// A well-formed file of the usual shape is read in one pass over its
    /// bytes ([`Registration::parse_quick`]); anything else (an error, a
    /// hash in base 64, a name with non-ASCII bytes) goes through the
    /// line-by-line [`Registration::parse_reference`], which says what is
    /// wrong and where. The two agree wherever the quick one answers
    /// (tested, and fuzzed by the `registration` target).
    pub fn parse(data: &[u8]) -> Result<Registration, RegistrationError> {
        match Registration::parse_quick(data) {
            Some(r) => Ok(r),
            None => Registration::parse_reference(data),
        }
    }

    /// The fast path of [`Registration::parse`]: `None` when the file is
    /// malformed or of a shape left to [`Registration::parse_reference`]
    /// (a line with a byte outside printable ASCII, a hash other than base
    /// 16 or nix base 32); else exactly what that returns.
    pub fn parse_quick(data: &[u8]) -> Option<Registration> {
        Borrowed::parse(data).map(|b| b.to_owned())
    }

    /// The line-by-line parser: every check in file order, the first
    /// failure reported with its line and field.
    pub fn parse_reference(data: &[u8]) -> Result<Registration, RegistrationError> {
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

/// A registration as [`Borrowed::parse`] reads it: the records borrow the
/// file, and references are indices of records. What postboot's native
/// loader builds a new database from (no copy of a name, no second
/// look-up); [`Borrowed::to_owned`] makes the [`Registration`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Borrowed<'a> {
    /// In file order.
    pub records: Vec<Record<'a>>,
    /// The references of all records, each the index of a record:
    /// `targets[records[i].refs]` are record `i`'s, in store-path order.
    pub targets: Vec<u32>,
}

/// One record of a [`Borrowed`] registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub path: &'a str,
    /// The line the record starts on.
    pub line: usize,
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    pub deriver: Option<&'a str>,
    /// Where its references are in [`Borrowed::targets`].
    pub refs: std::ops::Range<usize>,
}

impl<'a> Borrowed<'a> {
    /// Reads `data` in one pass over its bytes, without a per-line
    /// allocation, paths found again through a hash map of borrowed names;
    /// `None` when [`Registration::parse_quick`] is.
    pub fn parse(data: &'a [u8]) -> Option<Borrowed<'a>> {
        if data.is_empty() {
            return Some(Borrowed::default());
        }
        if !data.ends_with(b"\n") {
            return None;
        }
        let mut lines = QuickLines { data, pos: 0 };
        // A record takes at least 120 bytes (path, hash, size, count); one
        // of a NixOS system about 500 with its references.
        let guess = data.len() / 256;
        let mut records: Vec<Record<'a>> = Vec::with_capacity(guess);
        let mut index: HashMap<PathKey<'a>, u32, PathHash> =
            HashMap::with_capacity_and_hasher(guess, PathHash::default());
        let mut refs: Vec<&'a [u8]> = Vec::with_capacity(guess * 4);
        let mut line = 0usize;
        while lines.pos < data.len() {
            let start_line = line + 1;
            let path = lines.next()?;
            if !quick_store_path(path) {
                return None;
            }
            let id = u32::try_from(records.len()).ok()?;
            if index.insert(PathKey(path), id).is_some() {
                return None;
            }
            let hash = quick_sha256(lines.next()?)?;
            let size = quick_decimal(lines.next()?)?;
            if size == 0 {
                return None;
            }
            let deriver = lines.next()?;
            if !deriver.is_empty() && !quick_store_path(deriver) {
                return None;
            }
            let count = quick_decimal(lines.next()?)?;
            line += 5;
            let first = refs.len();
            // Checked when found among the paths, which are checked.
            for _ in 0..count {
                refs.push(lines.next()?);
                line += 1;
            }
            let own = &mut refs[first..];
            own.sort_unstable();
            if own.windows(2).any(|w| w[0] == w[1]) {
                return None;
            }
            // Printable ASCII: the bytes are text.
            records.push(Record {
                path: std::str::from_utf8(path).ok()?,
                line: start_line,
                nar_hash: hash,
                nar_size: size,
                deriver: match deriver {
                    b"" => None,
                    d => Some(std::str::from_utf8(d).ok()?),
                },
                refs: first..refs.len(),
            });
        }
        // Every reference is registered; no cycle but self-references.
        let targets: Vec<u32> = refs
            .iter()
            .map(|r| index.get(&PathKey(r)).copied())
            .collect::<Option<_>>()?;
        if quick_has_cycle(&records, &targets) {
            return None;
        }
        // The references' names are those of the paths they were found as.
        Some(Borrowed { records, targets })
    }

    /// Record `i`'s references, as record indices in store-path order.
    pub fn references(&self, i: usize) -> &[u32] {
        &self.targets[self.records[i].refs.clone()]
    }

    /// The [`Registration`] of these records.
    pub fn to_owned(&self) -> Registration {
        let paths = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| PathInfo {
                path: r.path.to_string(),
                nar_hash: r.nar_hash,
                nar_size: r.nar_size,
                deriver: r.deriver.map(str::to_string),
                references: self
                    .references(i)
                    .iter()
                    .map(|&t| self.records[t as usize].path.to_string())
                    .collect(),
                line: r.line,
            })
            .collect();
        Registration { paths }
    }
}

/// The lines of a file that ends in a newline, each printable ASCII.
struct QuickLines<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> QuickLines<'a> {
    /// The next line without its newline; `None` at the end or when it
    /// holds a byte outside printable ASCII (left to the reference parser).
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.data.get(self.pos..)?;
        // Eight bytes at a time while all are printable: no byte below
        // 0x20 (the borrow test) and none above 0x7e (the carry test).
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let mut words = rest.chunks_exact(8);
        let mut start = 0;
        for c in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            let w = u64::from_le_bytes(w);
            if (w.wrapping_sub(ONES * 0x20) & !w | (w.wrapping_add(ONES) | w)) & HIGH != 0 {
                break;
            }
            start += 8;
        }
        let len = start
            + rest[start..]
                .iter()
                .position(|&b| !(0x20..0x7f).contains(&b))?;
        if rest[len] != b'\n' {
            return None;
        }
        self.pos += len + 1;
        Some(&rest[..len])
    }
}

/// [`check_store_path`] as a yes or no, over bytes (printable ASCII).
fn quick_store_path(p: &[u8]) -> bool {
    const PREFIX: &[u8] = b"/nix/store/";
    let Some(base) = p.strip_prefix(PREFIX) else {
        return false;
    };
    base.len() >= HASH_PART_LEN + 2
        && base.len() <= HASH_PART_LEN + 1 + MAX_NAME_LEN
        && base[..HASH_PART_LEN].iter().all(|&c| nix32::is_digit(c))
        && base[HASH_PART_LEN] == b'-'
        && base[HASH_PART_LEN + 1] != b'.'
        && base[HASH_PART_LEN + 1..]
            .iter()
            .all(|&c| NAME_BYTE[usize::from(c)])
}

/// The bytes a store path's name may hold.
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_' | b'?' | b'=');
        c += 1;
    }
    t
};

/// A SHA-256 in base 16 (bare, as `nix-store --dump-db` writes it, or
/// after `sha256:`) or in nix base 32 after `sha256:` (`closureInfo`).
fn quick_sha256(s: &[u8]) -> Option<[u8; 32]> {
    let digest = s.strip_prefix(b"sha256:").unwrap_or(s);
    match digest.len() {
        64 => {
            let mut out = [0u8; 32];
            for (o, pair) in out.iter_mut().zip(digest.chunks_exact(2)) {
                *o = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
            }
            Some(out)
        }
        52 if digest.len() != s.len() => {
            let v = nix32::decode(std::str::from_utf8(digest).ok()?, 32).ok()?;
            <[u8; 32]>::try_from(v.as_slice()).ok()
        }
        _ => None,
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// [`parse_decimal`] as an `Option`, over bytes.
fn quick_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    s.iter().try_fold(0u64, |n, &c| {
        let d = c.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Whether the references (`targets`: each record's, as record indices)
/// make a cycle between different paths ([`find_cycle`]'s question).
fn quick_has_cycle(records: &[Record<'_>], targets: &[u32]) -> bool {
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state = vec![0u8; records.len()];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for start in 0..records.len() {
        if state[start] != 0 {
            continue;
        }
        state[start] = 1;
        stack.push((start, records[start].refs.start));
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if *next == records[node].refs.end {
                state[node] = 2;
                stack.pop();
                continue;
            }
            let to = targets[*next] as usize;
            *next += 1;
            if to == node {
                continue;
            }
            match state[to] {
                0 => {
                    state[to] = 1;
                    stack.push((to, records[to].refs.start));
                }
                1 => return true,
                _ => {}
            }
        }
    }
    false
}

/// A hasher for store paths (FxHash's word-at-a-time mix): their hash
/// parts are already random, and SipHash of every path and reference was
/// a tenth of loading a registration. Not for keys an attacker picks to
/// collide: the registration comes from the medium being booted.
#[derive(Default, Clone, Copy)]
pub struct PathHasher(u64);

impl std::hash::Hasher for PathHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 = h;
    }
}

/// A store path as a hash map key, compared a word at a time: musl's
/// `memcmp`, which `[u8]`'s `==` calls, goes a byte at a time, and every
/// reference of a registration is looked up by its whole name.
#[derive(Clone, Copy)]
struct PathKey<'a>(&'a [u8]);

impl std::hash::Hash for PathKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

impl PartialEq for PathKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0, other.0);
        if a.len() != b.len() {
            return false;
        }
        let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
        let word = |c: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_ne_bytes(w)
        };
        (&mut x).zip(&mut y).all(|(p, q)| word(p) == word(q))
            && x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
    }
}

impl Eq for PathKey<'_> {}

/// [`PathHasher`] for `HashMap`s keyed by store paths.
pub type PathHash = std::hash::BuildHasherDefault<PathHasher>;

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

    #[test]
    fn path_keys_are_equal_only_when_every_byte_is() {
        let a = b"/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-2.12";
        let copy = a.to_vec();
        assert!(PathKey(a) == PathKey(&copy));
        for i in 0..a.len() {
            let mut b = *a;
            b[i] ^= 1;
            assert!(PathKey(a) != PathKey(&b), "byte {i}");
        }
        assert!(PathKey(a) != PathKey(&a[..a.len() - 1]));
        assert!(PathKey(b"") == PathKey(b""));
    }

    #[test]
    fn lines_end_at_the_first_byte_outside_printable_ascii() {
        for len in 0..40 {
            for bad in [0x00u8, 0x09, 0x1f, 0x7f, 0x80, 0xff] {
                let mut data = vec![b'x'; len];
                data.push(b'\n');
                data.extend_from_slice(b"next\n");
                let mut lines = QuickLines {
                    data: &data,
                    pos: 0,
                };
                assert_eq!(lines.next(), Some(&data[..len]), "{len}");
                assert_eq!(lines.next(), Some(&b"next"[..]));
                assert_eq!(lines.next(), None);
                // The same line with a bad byte at any place is refused.
                for at in 0..len {
                    let mut d = data.clone();
                    d[at] = bad;
                    let mut lines = QuickLines { data: &d, pos: 0 };
                    assert_eq!(lines.next(), None, "{len} {at} {bad:#x}");
                }
            }
        }
    }

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

    /// Where the quick parser answers, it answers as the reference one.
    fn agree(data: &[u8]) {
        let reference = Registration::parse_reference(data);
        if let Some(quick) = Registration::parse_quick(data) {
            assert_eq!(
                Ok(&quick),
                reference.as_ref(),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        assert_eq!(Registration::parse(data), reference);
    }

    #[test]
    fn the_quick_parser_reads_both_usual_forms() {
        let r = Registration::parse_reference(good().as_bytes()).unwrap();
        for form in [HashFormat::DumpDb, HashFormat::ClosureInfo] {
            let text = render(&r.paths, form);
            assert_eq!(Registration::parse_quick(text.as_bytes()), Some(r.clone()));
        }
        // The file as written, unsorted references and a base-16 hash
        // after `sha256:` included.
        assert_eq!(Registration::parse_quick(good().as_bytes()), Some(r));
        assert_eq!(
            Registration::parse_quick(b""),
            Some(Registration::default())
        );
        // Left to the reference parser: base 64, a bare base-32 digest.
        for other in [format!("sha256:{ABC64}"), ABC32.to_string()] {
            let text = good().replace(&format!("sha256:{ABC32}"), &other);
            assert_eq!(Registration::parse_quick(text.as_bytes()), None, "{other}");
            assert!(Registration::parse(text.as_bytes()).is_ok(), "{other}");
        }
    }

    #[test]
    fn the_quick_parser_declines_what_the_reference_refuses() {
        let g = good();
        let cyclic =
            format!("{A}\nsha256:{ABC32}\n1\n\n1\n{B}\n{B}\nsha256:{ABC32}\n1\n\n2\n{A}\n{B}\n");
        let cases = [
            g.trim_end_matches('\n').to_string(),
            format!("{g}\n"),
            g.replace("\n120\n", "\n0120\n"),
            g.replace("\n120\n", "\n0\n"),
            g.replace("\n120\n", "\n18446744073709551616\n"),
            g.replace("\n2\n", "\n3\n"),
            g.replace("\n2\n", "\n99999999999999999999\n"),
            g.replace(&format!("{A}\n{B}\nsha"), &format!("{A}\n{A}\nsha")),
            format!("{g}{A}\nsha256:{ABC32}\n1\n\n0\n"),
            g.replace(A, "/nix/store/tooshort-a"),
            g.replace("-a\n", "-.a\n"),
            g.replace("-a\n", "-a\tb\n"),
            g.replace("-a\n", "-\u{e9}\n"),
            g.replace("-a\n", &format!("-{}\n", "x".repeat(212))),
            g.replace(ABC16, &ABC16[1..]),
            g.replace(ABC16, &ABC16.replace('a', "g")),
            g.replace(&format!("{B}.drv"), "/nix/store/x.drv"),
            cyclic,
        ];
        for case in &cases {
            assert_eq!(Registration::parse_quick(case.as_bytes()), None, "{case:?}");
            assert!(Registration::parse(case.as_bytes()).is_err(), "{case:?}");
            agree(case.as_bytes());
        }
        // At the limit of a name's length, and upper-case base 16.
        agree(
            g.replace("-a\n", &format!("-{}\n", "x".repeat(211)))
                .as_bytes(),
        );
        agree(g.replace(ABC16, &ABC16.to_uppercase()).as_bytes());
    }

    #[test]
    fn the_two_parsers_agree_on_every_one_byte_change() {
        let g = good().into_bytes();
        for i in 0..g.len() {
            for b in [
                b'\n', b'0', b'1', b'9', b'a', b'e', b'z', b'-', b'.', b'/', b':', b' ', 0x7f, 0xc3,
            ] {
                let mut d = g.clone();
                d[i] = b;
                agree(&d);
            }
            let mut d = g.clone();
            d.remove(i);
            agree(&d);
        }
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

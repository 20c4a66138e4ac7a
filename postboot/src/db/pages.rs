//! A new database's rows and indexes written as SQLite B-tree pages in one
//! pass ([`crate::btree`]), into the file SQLite made the schema of: no
//! inserts, no lookups (ids are ranks in store-path order).

use super::fresh::{NewPath, finish_fresh, open_new};
use super::{DbError, SCHEMA_SQL, sqlite};
use crate::btree::{Cells, PAGE_SIZE, Pages, TooLarge, Value};
use rusqlite::Connection;
use std::path::Path;

/// Why [`build`] did not build the database.
#[derive(Debug)]
pub(super) enum Fresh {
    /// Rows the page builder leaves to SQLite (a record larger than a
    /// cell, a path or reference listed twice, a file SQLite made with
    /// other settings): [`super::fresh::build_fresh`] takes over.
    Unsuitable(&'static str),
    Failed(DbError),
}

impl From<DbError> for Fresh {
    fn from(e: DbError) -> Self {
        Fresh::Failed(e)
    }
}

fn unsuitable(_: TooLarge) -> Fresh {
    Fresh::Unsuitable("a record larger than a page keeps in a cell")
}

/// The tables and indexes [`build`] fills, by their names in
/// `sqlite_master`.
const FILLED: [&str; 6] = [
    "ValidPaths",
    "sqlite_autoindex_ValidPaths_1",
    "Refs",
    "sqlite_autoindex_Refs_1",
    "IndexReferrer",
    "IndexReference",
];

/// The cells of every tree [`FILLED`] names, in that order.
struct Trees([Cells; 6]);

/// [`super::fresh::build_fresh`] without SQLite's inserts: SQLite makes the
/// schema (its tables and indexes empty, `sqlite_sequence` set), the page
/// builder writes every row's and index entry's pages in one pass, and
/// SQLite opens the file again to switch it to WAL. The rows are the ones
/// SQLite's inserts would make, with the same ids and rowids.
pub(super) fn build(
    tmp: &Path,
    paths: &[NewPath<'_>],
    refs: &[[i64; 2]],
    now: i64,
) -> Result<(), Fresh> {
    if !paths.windows(2).all(|w| w[0].path < w[1].path) {
        return Err(Fresh::Unsuitable("paths not in strict store-path order"));
    }
    // The rows first: nothing is written for rows SQLite must insert.
    let [valid, by_path] = path_cells(paths, now)?;
    let [rows, primary, referrers, references] = ref_cells(refs)?;
    let trees = Trees([valid, by_path, rows, primary, referrers, references]);
    let (roots, count) = empty_schema(tmp, paths.len())?;
    write_pages(tmp, &trees, &roots, count)?;
    // Nix's journal mode, set by SQLite, which reads the file again (not
    // syncing: the file is synced once, before it is renamed).
    let conn = Connection::open(tmp).map_err(sqlite(tmp, "opening"))?;
    conn.execute_batch("pragma locking_mode = exclusive; pragma synchronous = off;")
        .map_err(sqlite(tmp, "setting up a new database"))?;
    Ok(finish_fresh(conn, tmp)?)
}

/// `ValidPaths`' rows and its index by path.
fn path_cells(paths: &[NewPath<'_>], now: i64) -> Result<[Cells; 2], Fresh> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hash_text = [0u8; 7 + 64];
    hash_text[..7].copy_from_slice(b"sha256:");
    let text: usize = paths
        .iter()
        .map(|p| 2 * p.path.len() + p.deriver.map_or(0, str::len))
        .sum();
    let mut valid = Cells::with_capacity(paths.len(), text + paths.len() * 100);
    let mut by_path = Cells::with_capacity(paths.len(), text / 2 + paths.len() * 8);
    for (p, id) in paths.iter().zip(1i64..) {
        for (i, b) in p.nar_hash.iter().enumerate() {
            hash_text[7 + 2 * i] = HEX[usize::from(b >> 4)];
            hash_text[8 + 2 * i] = HEX[usize::from(b & 0xf)];
        }
        let size = i64::try_from(p.nar_size).map_or(Value::Null, Value::Int);
        let deriver = p.deriver.map_or(Value::Null, |d| Value::Text(d.as_bytes()));
        let path = Value::Text(p.path.as_bytes());
        let hash = Value::Text(&hash_text);
        let (null, time) = (Value::Null, Value::Int(now));
        valid
            .push_row(
                id,
                &[null, path, hash, time, deriver, size, null, null, null],
            )
            .map_err(unsuitable)?;
        by_path
            .push_key(&[path, Value::Int(id)])
            .map_err(unsuitable)?;
    }
    Ok([valid, by_path])
}

/// `Refs`' rows (rowids in the order of insertion) and its three indexes,
/// sorted by their keys.
fn ref_cells(refs: &[[i64; 2]]) -> Result<[Cells; 4], Fresh> {
    let mut rows = Cells::with_capacity(refs.len(), refs.len() * 10);
    for (&[referrer, reference], rowid) in refs.iter().zip(1i64..) {
        rows.push_row(rowid, &[Value::Int(referrer), Value::Int(reference)])
            .map_err(unsuitable)?;
    }
    let mut keyed: Vec<(i64, i64, i64)> = refs
        .iter()
        .zip(1i64..)
        .map(|(&[a, b], r)| (a, b, r))
        .collect();
    if !keyed.is_sorted() {
        keyed.sort_unstable();
    }
    if keyed
        .windows(2)
        .any(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
    {
        return Err(Fresh::Unsuitable("a reference listed twice"));
    }
    let mut primary = Cells::with_capacity(refs.len(), refs.len() * 10);
    let mut referrers = Cells::with_capacity(refs.len(), refs.len() * 8);
    for &(a, b, r) in &keyed {
        primary
            .push_key(&[Value::Int(a), Value::Int(b), Value::Int(r)])
            .map_err(unsuitable)?;
        referrers
            .push_key(&[Value::Int(a), Value::Int(r)])
            .map_err(unsuitable)?;
    }
    let mut by_reference: Vec<(i64, i64)> = keyed.iter().map(|&(_, b, r)| (b, r)).collect();
    by_reference.sort_unstable();
    let mut references = Cells::with_capacity(refs.len(), refs.len() * 8);
    for &(b, r) in &by_reference {
        references
            .push_key(&[Value::Int(b), Value::Int(r)])
            .map_err(unsuitable)?;
    }
    Ok([rows, primary, referrers, references])
}

/// SQLite makes the schema and the empty trees in `tmp`: their root pages
/// (in [`FILLED`]'s order) and the file's page count, checked to be what
/// the page builder writes.
fn empty_schema(tmp: &Path, n_paths: usize) -> Result<([u32; 6], u32), Fresh> {
    let sq = |what| sqlite(tmp, what);
    let conn = open_new(tmp)?;
    conn.execute_batch(&format!("begin; {SCHEMA_SQL}"))
        .map_err(sq("creating Nix's schema"))?;
    if n_paths > 0 {
        // What an insert into an AUTOINCREMENT table leaves there.
        conn.execute(
            "insert into sqlite_sequence (name, seq) values ('ValidPaths', ?)",
            [n_paths as i64],
        )
        .map_err(sq("setting sqlite_sequence"))?;
    }
    conn.execute_batch("commit").map_err(sq("committing"))?;
    let mut roots = [0u32; FILLED.len()];
    {
        let mut st = conn
            .prepare("select name, rootpage from sqlite_master where rootpage > 0")
            .map_err(sq("reading sqlite_master"))?;
        let mut q = st.query([]).map_err(sq("reading sqlite_master"))?;
        while let Some(row) = q.next().map_err(sq("reading sqlite_master"))? {
            let name: String = row.get(0).map_err(sq("reading sqlite_master"))?;
            let root: u32 = row.get(1).map_err(sq("reading sqlite_master"))?;
            if let Some(i) = FILLED.iter().position(|&n| n == name) {
                roots[i] = root;
            }
        }
    }
    let (count, size): (u32, usize) = conn
        .query_row(
            "select * from pragma_page_count, pragma_page_size",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sq("reading the page count"))?;
    conn.close()
        .map_err(|(_, source)| sqlite(tmp, "closing")(source))?;
    if size != PAGE_SIZE || roots.contains(&0) {
        return Err(Fresh::Unsuitable(
            "SQLite made the file with other page settings, or without Nix's tables",
        ));
    }
    Ok((roots, count))
}

/// Writes the trees' pages into `tmp` after its `count` pages, once its
/// header says the page builder's format.
fn write_pages(tmp: &Path, trees: &Trees, roots: &[u32; 6], count: u32) -> Result<(), Fresh> {
    use std::os::unix::fs::FileExt;
    let io = |what| {
        let path = tmp.to_path_buf();
        move |source| DbError::Io { what, path, source }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tmp)
        .map_err(io("opening"))?;
    let mut header = [0u8; 100];
    file.read_exact_at(&mut header, 0).map_err(io("reading"))?;
    // The page builder writes 4096-byte pages without reserved bytes, in
    // schema format 4 (0 and 1 stored without bytes) and UTF-8.
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if header[20] != 0 || be32(44) != 4 || be32(56) != 1 {
        return Err(Fresh::Unsuitable(
            "SQLite made the file with other page settings, or without Nix's tables",
        ));
    }
    let [valid, by_path, rows, primary, referrers, references] = &trees.0;
    let bytes = trees.0.iter().map(|c| c.bytes()).sum();
    let mut pages = Pages::new(count + 1, bytes);
    pages.table(roots[0], valid);
    pages.index(roots[1], by_path);
    pages.table(roots[2], rows);
    pages.index(roots[3], primary);
    pages.index(roots[4], referrers);
    pages.index(roots[5], references);
    pages.write_to(&file).map_err(io("writing"))?;
    Ok(())
}

//! SQLite B-tree pages built from sorted rows, for a new database's bulk
//! load ([`crate::db`]): the same file SQLite makes when rows are inserted
//! one at a time, made in one pass (each page filled once, bottom up)
//! instead of a B-tree insert, with its seeks and page splits, for every
//! row of every table and index.
//!
//! SQLite itself makes the file's first pages (the header, the schema and
//! each table's and index's empty root page); [`Pages`] then fills every
//! root and appends the pages below it, following SQLite's file format
//! (<https://www.sqlite.org/fileformat2.html>): 4096-byte pages without
//! reserved bytes, schema format 4, UTF-8 text. The rows must come in key
//! order and the caller says which tree is which. A record too large to
//! stay on its page (SQLite would spill it to overflow pages) is refused
//! with [`TooLarge`]: the caller then lets SQLite insert the rows.
//!
//! Non-goals: overflow pages, free lists, other page sizes, updating a
//! tree; anything but building a new database once.

use thiserror::Error;

/// The page size this module writes (SQLite's default, and Nix's).
pub const PAGE_SIZE: usize = 4096;

/// A record SQLite would not keep whole in its cell.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a record of {len} bytes is larger than a {PAGE_SIZE}-byte page keeps in a cell ({max})")]
pub struct TooLarge {
    pub len: usize,
    pub max: usize,
}

/// The largest payload a table leaf cell keeps without overflow (U - 35).
const TABLE_MAX_LOCAL: usize = PAGE_SIZE - 35;
/// The largest payload an index cell keeps: ((U - 12) * 64 / 255) - 23.
const INDEX_MAX_LOCAL: usize = (PAGE_SIZE - 12) * 64 / 255 - 23;

const INTERIOR_INDEX: u8 = 2;
const INTERIOR_TABLE: u8 = 5;
const LEAF_INDEX: u8 = 10;
const LEAF_TABLE: u8 = 13;

/// A column value of a record.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a [u8]),
}

/// Appends SQLite's varint of `v` (1-9 bytes, big-endian groups of 7 bits,
/// the ninth byte whole).
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    if v >> 56 != 0 {
        let mut b = [0u8; 9];
        b[8] = v as u8;
        let mut rest = v >> 8;
        for byte in b[..8].iter_mut().rev() {
            *byte = (rest & 0x7f) as u8 | 0x80;
            rest >>= 7;
        }
        out.extend_from_slice(&b);
        return;
    }
    let mut b = [0u8; 8];
    let mut n = 0;
    let mut rest = v;
    loop {
        b[n] = (rest & 0x7f) as u8 | 0x80;
        n += 1;
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    b[0] &= 0x7f;
    out.extend(b[..n].iter().rev());
}

fn varint_len(v: u64) -> usize {
    if v >> 56 != 0 {
        9
    } else {
        (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
    }
}

/// The serial type of an integer and its size in bytes (schema format 4:
/// 0 and 1 take no bytes), as SQLite's `sqlite3VdbeSerialType`.
fn int_type(v: i64) -> (u64, usize) {
    if v == 0 || v == 1 {
        return (8 + v as u64, 0);
    }
    let u = if v < 0 { !v as u64 } else { v as u64 };
    match u {
        0..=0x7f => (1, 1),
        0x80..=0x7fff => (2, 2),
        0x8000..=0x7f_ffff => (3, 3),
        0x80_0000..=0x7fff_ffff => (4, 4),
        0x8000_0000..=0x7fff_ffff_ffff => (5, 6),
        _ => (6, 8),
    }
}

/// The most columns a record here has (Nix's `ValidPaths` has 9).
const MAX_COLUMNS: usize = 12;
const _: () = assert!(MAX_COLUMNS * 9 < 0x80);

/// A record's serial types, the size of its header and its whole size.
struct Layout {
    types: [(u64, usize); MAX_COLUMNS],
    header_len: usize,
    len: usize,
}

fn layout(values: &[Value<'_>]) -> Layout {
    assert!(
        values.len() <= MAX_COLUMNS,
        "a record of {} columns",
        values.len()
    );
    let mut types = [(0, 0); MAX_COLUMNS];
    let (mut types_len, mut body) = (0, 0);
    for (t, v) in types.iter_mut().zip(values) {
        *t = match *v {
            Value::Null => (0, 0),
            Value::Int(i) => int_type(i),
            Value::Text(s) => (13 + 2 * s.len() as u64, s.len()),
        };
        types_len += varint_len(t.0);
        body += t.1;
    }
    // The header's length counts its own varint: one byte, as at most
    // MAX_COLUMNS types of at most 9 bytes make less than 128.
    let header_len = types_len + 1;
    Layout {
        types,
        header_len,
        len: header_len + body,
    }
}

/// Appends the record of `values` (a header of serial types, then the
/// values) as SQLite writes it.
fn put_record(out: &mut Vec<u8>, values: &[Value<'_>], l: &Layout) {
    put_varint(out, l.header_len as u64);
    for &(t, _) in &l.types[..values.len()] {
        put_varint(out, t);
    }
    for (v, &(_, n)) in values.iter().zip(&l.types) {
        match *v {
            Value::Null => {}
            Value::Int(i) => out.extend_from_slice(&i.to_be_bytes()[8 - n..]),
            Value::Text(t) => out.extend_from_slice(t),
        }
    }
}

/// The record of `values`.
#[cfg(test)]
pub fn record(out: &mut Vec<u8>, values: &[Value<'_>]) {
    put_record(out, values, &layout(values));
}

/// Cells of one tree level in key order, encoded back to back.
#[derive(Default)]
pub struct Cells {
    data: Vec<u8>,
    ends: Vec<usize>,
    /// A table's cells: each one's rowid.
    rowids: Vec<i64>,
}

impl Cells {
    pub fn with_capacity(cells: usize, bytes: usize) -> Self {
        Cells {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(cells),
            rowids: Vec::new(),
        }
    }

    /// Adds a table leaf cell: the record of `values` with `rowid`.
    pub fn push_row(&mut self, rowid: i64, values: &[Value<'_>]) -> Result<(), TooLarge> {
        let l = layout(values);
        check(l.len, TABLE_MAX_LOCAL)?;
        put_varint(&mut self.data, l.len as u64);
        put_varint(&mut self.data, rowid as u64);
        put_record(&mut self.data, values, &l);
        self.ends.push(self.data.len());
        self.rowids.push(rowid);
        Ok(())
    }

    /// Adds an index cell: the record of `values`, whose last column is
    /// the rowid.
    pub fn push_key(&mut self, values: &[Value<'_>]) -> Result<(), TooLarge> {
        let l = layout(values);
        check(l.len, INDEX_MAX_LOCAL)?;
        put_varint(&mut self.data, l.len as u64);
        put_record(&mut self.data, values, &l);
        self.ends.push(self.data.len());
        Ok(())
    }

    /// The bytes of the cells so far.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

fn check(len: usize, max: usize) -> Result<(), TooLarge> {
    if len > max {
        Err(TooLarge { len, max })
    } else {
        Ok(())
    }
}

/// One page being filled: cells from the end down, their pointers after
/// the header.
struct Page {
    buf: Box<[u8; PAGE_SIZE]>,
    ptrs: Vec<u16>,
    top: usize,
    kind: u8,
    right: u32,
}

impl Page {
    fn new(kind: u8) -> Self {
        Page {
            buf: Box::new([0; PAGE_SIZE]),
            ptrs: Vec::new(),
            top: PAGE_SIZE,
            kind,
            right: 0,
        }
    }

    fn header_len(&self) -> usize {
        if self.kind == LEAF_INDEX || self.kind == LEAF_TABLE {
            8
        } else {
            12
        }
    }

    fn fits(&self, len: usize) -> bool {
        self.header_len() + 2 * (self.ptrs.len() + 1) + len <= self.top
    }

    fn push(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.top -= len;
        let mut at = self.top;
        for p in parts {
            self.buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.ptrs.push(self.top as u16);
    }

    /// Takes the last cell off (it is the lowest in the page).
    fn pop(&mut self) -> Vec<u8> {
        let start = self.ptrs.pop().map_or(self.top, usize::from);
        let end = self.ptrs.last().map_or(PAGE_SIZE, |&p| usize::from(p));
        let cell = self.buf[start..end].to_vec();
        self.buf[start..end].fill(0);
        self.top = end;
        cell
    }

    fn finish(mut self) -> Box<[u8; PAGE_SIZE]> {
        let b = &mut self.buf;
        b[0] = self.kind;
        b[1..3].fill(0);
        b[3..5].copy_from_slice(&(self.ptrs.len() as u16).to_be_bytes());
        b[5..7].copy_from_slice(&(self.top as u16).to_be_bytes());
        b[7] = 0;
        let h = if self.kind == LEAF_INDEX || self.kind == LEAF_TABLE {
            8
        } else {
            b[8..12].copy_from_slice(&self.right.to_be_bytes());
            12
        };
        for (i, p) in self.ptrs.iter().enumerate() {
            b[h + 2 * i..h + 2 * i + 2].copy_from_slice(&p.to_be_bytes());
        }
        self.buf
    }
}

/// The pages of a new database beyond the ones SQLite made: every tree's
/// root goes to its page, the rest are numbered from `first` on.
pub struct Pages {
    first: u32,
    appended: Vec<u8>,
    roots: Vec<(u32, Box<[u8; PAGE_SIZE]>)>,
}

impl Pages {
    /// `first`: the first page number after SQLite's pages; `bytes`: about
    /// how many bytes of cells will come (room is made for them at once).
    pub fn new(first: u32, bytes: usize) -> Self {
        Pages {
            first,
            appended: Vec::with_capacity(bytes + bytes / 4 + PAGE_SIZE),
            roots: Vec::new(),
        }
    }

    /// Numbers a level's pages: a level of one page is the root.
    fn place(&mut self, root: u32, level: Vec<Box<[u8; PAGE_SIZE]>>) -> Vec<u32> {
        if level.len() == 1 {
            self.roots.extend(level.into_iter().map(|p| (root, p)));
            return vec![root];
        }
        let mut numbers = Vec::with_capacity(level.len());
        for p in level {
            numbers.push(self.next());
            self.appended.extend_from_slice(&p[..]);
        }
        numbers
    }

    fn next(&self) -> u32 {
        self.first + (self.appended.len() / PAGE_SIZE) as u32
    }

    /// The table at `root` holding `rows` (leaf cells by ascending rowid,
    /// as [`Cells::push_row`] made them).
    pub fn table(&mut self, root: u32, rows: &Cells) {
        if rows.is_empty() {
            return;
        }
        let mut level = Vec::new();
        let mut keys = Vec::new();
        let mut page = Page::new(LEAF_TABLE);
        for (i, &rowid) in rows.rowids.iter().enumerate() {
            let cell = rows.get(i);
            if !page.fits(cell.len()) {
                level.push(std::mem::replace(&mut page, Page::new(LEAF_TABLE)).finish());
            }
            if page.ptrs.is_empty() {
                keys.push(rowid);
            }
            page.push(&[cell]);
            if let Some(k) = keys.last_mut() {
                *k = rowid;
            }
        }
        level.push(page.finish());
        let mut children = self.place(root, level);
        // Interior levels: a cell (child, its largest rowid) for each child
        // but a page's last, which is the page's right pointer. Children
        // are spread evenly, so no page is left with a single child.
        while children.len() > 1 {
            let widest = 4 + varint_len(keys.iter().copied().max().unwrap_or(0) as u64) + 2;
            let per_page = (PAGE_SIZE - 12) / widest + 1;
            let pages = children.len().div_ceil(per_page);
            let mut level = Vec::with_capacity(pages);
            let mut upper_keys = Vec::with_capacity(pages);
            let mut start = 0;
            for p in 0..pages {
                let end = start + (children.len() - start) / (pages - p);
                let mut page = Page::new(INTERIOR_TABLE);
                let mut key = Vec::with_capacity(9);
                for c in start..end - 1 {
                    key.clear();
                    put_varint(&mut key, keys[c] as u64);
                    page.push(&[&children[c].to_be_bytes(), &key]);
                }
                page.right = children[end - 1];
                upper_keys.push(keys[end - 1]);
                level.push(page.finish());
                start = end;
            }
            children = self.place(root, level);
            keys = upper_keys;
        }
    }

    /// The index at `root` holding `keys` (index cells in key order, as
    /// [`Cells::push_key`] made them). Each entry is in the tree once: a
    /// page's divider moves up to its parent.
    pub fn index(&mut self, root: u32, keys: &Cells) {
        if keys.is_empty() {
            return;
        }
        let mut level = Vec::new();
        let mut dividers = Cells::default();
        let mut page = Page::new(LEAF_INDEX);
        let mut i = 0;
        while i < keys.len() {
            let cell = keys.get(i);
            if page.fits(cell.len()) || page.ptrs.is_empty() {
                page.push(&[cell]);
            } else {
                level.push(std::mem::replace(&mut page, Page::new(LEAF_INDEX)));
                dividers.push_cell(cell);
            }
            i += 1;
        }
        if page.ptrs.is_empty() {
            // The last entry became a divider: it goes down into the last
            // page, and the page before gives up its last entry instead.
            let last = dividers.pop();
            let prev = level.last_mut().map(Page::pop).unwrap_or_default();
            dividers.push_cell(&prev);
            page.push(&[&last]);
        }
        level.push(page);
        let mut children = self.place(root, level.into_iter().map(Page::finish).collect());
        while children.len() > 1 {
            let mut level = Vec::new();
            let mut upper = Cells::default();
            let mut page = Page::new(INTERIOR_INDEX);
            for (c, &child) in children.iter().enumerate().take(dividers.len()) {
                let cell = dividers.get(c);
                if page.fits(4 + cell.len()) || page.ptrs.is_empty() {
                    page.push(&[&child.to_be_bytes(), cell]);
                } else {
                    page.right = child;
                    level.push(std::mem::replace(&mut page, Page::new(INTERIOR_INDEX)));
                    upper.push_cell(cell);
                }
            }
            if page.ptrs.is_empty() {
                // As for the leaves: the page before gives its last cell
                // (child, divider) up, and the divider that went up comes
                // down into this page with the page before's right child.
                let last = upper.pop();
                let prev = level.last_mut().map(|p| (p.pop(), p.right));
                if let Some((cell, right)) = prev {
                    let (child, divider) = cell.split_at(4);
                    if let Some(p) = level.last_mut() {
                        p.right = u32::from_be_bytes(child.try_into().unwrap_or_default());
                    }
                    upper.push_cell(divider);
                    page.push(&[&right.to_be_bytes(), &last]);
                }
            }
            page.right = children[dividers.len()];
            level.push(page);
            children = self.place(root, level.into_iter().map(Page::finish).collect());
            dividers = upper;
        }
    }

    /// The database's size in pages, with `first - 1` pages before these.
    pub fn page_count(&self) -> u32 {
        self.next() - 1
    }

    /// Writes the pages into `file`, the database SQLite made with
    /// `first - 1` pages and closed: the appended pages in one write, each
    /// root at its place, and the header's page count (which SQLite
    /// trusts: its change counter and version-valid-for number are equal,
    /// both SQLite's).
    pub fn write_to(&self, file: &std::fs::File) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let at = |page: u32| u64::from(page - 1) * PAGE_SIZE as u64;
        file.write_all_at(&self.appended, at(self.first))?;
        for (n, page) in &self.roots {
            file.write_all_at(&page[..], at(*n))?;
        }
        file.write_all_at(&self.page_count().to_be_bytes(), 28)
    }
}

impl Cells {
    fn push_cell(&mut self, cell: &[u8]) {
        self.data.extend_from_slice(cell);
        self.ends.push(self.data.len());
    }

    fn pop(&mut self) -> Vec<u8> {
        let i = self.ends.len() - 1;
        let cell = self.get(i).to_vec();
        self.ends.pop();
        self.data.truncate(self.ends.last().copied().unwrap_or(0));
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v), "{v}");
        out
    }

    #[test]
    fn varints_are_sqlites() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x81, 0x00]);
        assert_eq!(varint(16383), [0xff, 0x7f]);
        assert_eq!(varint(16384), [0x81, 0x80, 0x00]);
        assert_eq!(varint(u64::MAX), [0xff; 9]);
        assert_eq!(
            varint(1 << 56),
            [0x80, 0xc0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]
        );
    }

    #[test]
    fn integers_take_sqlites_serial_types() {
        for (v, t) in [
            (0i64, 8),
            (1, 9),
            (2, 1),
            (-1, 1),
            (127, 1),
            (128, 2),
            (-129, 2),
            (40_000, 3),
            (1_700_000_000, 4),
            (1 << 40, 5),
            (i64::MIN, 6),
        ] {
            assert_eq!(int_type(v).0, t, "{v}");
        }
        let mut r = Vec::new();
        record(
            &mut r,
            &[
                Value::Null,
                Value::Text(b"ab"),
                Value::Int(300),
                Value::Int(1),
            ],
        );
        assert_eq!(r, [5, 0, 17, 2, 9, b'a', b'b', 1, 44]);
        // Texts of 100 bytes: serial type 213, two bytes each.
        let long = [Value::Text(&[b'x'; 100]); 9];
        let mut r = Vec::new();
        record(&mut r, &long);
        assert_eq!(r.len(), 1 + 9 * 2 + 900);
        assert_eq!(r[..3], [19, 0x81, 0x55]);
    }

    #[test]
    fn a_record_too_large_for_a_cell_is_refused() {
        let mut cells = Cells::default();
        // A record of one long text: a byte of header length and two of
        // serial type before it.
        let big = vec![0u8; INDEX_MAX_LOCAL - 2];
        assert_eq!(
            cells.push_key(&[Value::Text(&big)]),
            Err(TooLarge {
                len: 1003,
                max: 1002
            })
        );
        assert!(cells.push_key(&[Value::Text(&big[1..])]).is_ok());
        assert!(cells.push_row(1, &[Value::Text(&big)]).is_ok());
        let bigger = vec![0u8; TABLE_MAX_LOCAL];
        assert!(cells.push_row(2, &[Value::Text(&bigger)]).is_err());
    }

    /// A table `t(a integer primary key, b text)` with index `ti` on `b`:
    /// `n` rows of `width`-byte texts, written by [`Pages`] into the file
    /// SQLite made, then read back by SQLite.
    #[cfg(feature = "native-loader")]
    fn built_by_pages(n: usize, width: usize) {
        use rusqlite::Connection;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.sqlite");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "create table t (a integer primary key, b text not null); create index ti on t(b);",
        )
        .unwrap();
        let root = |name: &str| -> u32 {
            conn.query_row(
                "select rootpage from sqlite_master where name = ?",
                [name],
                |r| r.get(0),
            )
            .unwrap()
        };
        let (table, index) = (root("t"), root("ti"));
        let count: u32 = conn
            .query_row("pragma page_count", [], |r| r.get(0))
            .unwrap();
        drop(conn);
        let text = |i: usize| format!("{i:0width$}");
        let (mut rows, mut keys) = (Cells::default(), Cells::default());
        for i in 1..=n {
            let b = text(i);
            rows.push_row(i as i64, &[Value::Null, Value::Text(b.as_bytes())])
                .unwrap();
            keys.push_key(&[Value::Text(b.as_bytes()), Value::Int(i as i64)])
                .unwrap();
        }
        let mut pages = Pages::new(count + 1, rows.bytes() + keys.bytes());
        pages.table(table, &rows);
        pages.index(index, &keys);
        let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        pages.write_to(&file).unwrap();
        drop(file);

        let conn = Connection::open(&db).unwrap();
        let check: Vec<String> = conn
            .prepare("pragma integrity_check")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(check, ["ok"], "{n} rows of {width} bytes");
        let by_index: Vec<(i64, String)> = conn
            .prepare("select a, b from t indexed by ti where b >= '' order by b")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(i64, String)> = (1..=n).map(|i| (i as i64, text(i))).collect();
        assert_eq!(by_index, want, "{n} rows of {width} bytes");
        let last: i64 = conn
            .query_row("select a from t where a = ?", [n as i64], |r| r.get(0))
            .unwrap();
        assert_eq!(last, n as i64);
    }

    #[cfg(feature = "native-loader")]
    #[test]
    fn sqlite_finds_every_tree_sound_at_every_page_boundary() {
        // 900-byte texts: four cells a page, so every way a level can end
        // (a last page of one entry, an entry left over as a divider) and
        // three-level trees come within 160 rows.
        for n in 1..=160 {
            built_by_pages(n, 900);
        }
        // Short keys: hundreds a page, and a table whose interior level
        // spans pages.
        for n in [1, 700, 2_000, 40_000] {
            built_by_pages(n, 8);
        }
        built_by_pages(2_500, 900);
    }
}

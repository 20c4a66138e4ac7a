//! A new database (the first boot), built in bulk: in a file of its own,
//! SQLite making the schema and [`super::pages`] writing the rows' and
//! indexes' pages in one pass, or SQLite inserting them when the page
//! builder does not take them; then switched to WAL, synced once and
//! renamed to `db.sqlite`.

use super::pages::{self, Fresh};
use super::{
    Counts, DbError, SCHEMA_SQL, SCHEMA_VERSION, State, remove_if_there, sqlite, state, write_new,
};
use nixlive_formats::registration::{Borrowed, PathHash, PathInfo, Registration};
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};

/// Loads the quick parser's `reg` when the database in `db_dir` is new
/// (the first boot): built in bulk by [`load_fresh`], ids and references
/// straight from the parsed records. `None` when there is a database
/// already: then [`super::load`] (and [`super::missing`]) take the [`Registration`].
pub fn load_new(db_dir: &Path, reg: &Borrowed<'_>, now: i64) -> Result<Option<Counts>, DbError> {
    if let Some(r) = reg.records.iter().find(|r| r.path.ends_with(".drv")) {
        return Err(DbError::Derivation {
            line: r.line,
            path: r.path.to_string(),
        });
    }
    if !matches!(state(db_dir)?, State::New) {
        return Ok(None);
    }
    // Nix's ids are 1, 2, ... in store-path order: each record's rank.
    let n = reg.records.len();
    let mut order: Vec<u32> = (0..u32::try_from(n).unwrap_or(u32::MAX)).collect();
    if !reg.records.is_sorted_by(|a, b| a.path <= b.path) {
        order.sort_unstable_by(|&a, &b| {
            reg.records[a as usize]
                .path
                .cmp(reg.records[b as usize].path)
        });
    }
    let mut id = vec![0i64; n];
    for (rank, &i) in (1..).zip(&order) {
        id[i as usize] = rank;
    }
    let paths: Vec<NewPath<'_>> = order
        .iter()
        .map(|&i| {
            let r = &reg.records[i as usize];
            NewPath {
                path: r.path,
                nar_hash: &r.nar_hash,
                nar_size: r.nar_size,
                deriver: r.deriver,
            }
        })
        .collect();
    // A record's references are in store-path order, so their ids ascend.
    let mut refs = Vec::with_capacity(reg.targets.len());
    for &i in &order {
        let referrer = id[i as usize];
        refs.extend(
            reg.references(i as usize)
                .iter()
                .map(|&t| [referrer, id[t as usize]]),
        );
    }
    load_fresh(db_dir, &paths, &refs, now).map(Some)
}

/// A path of a new database; its id is its place in the list plus one.
pub(super) struct NewPath<'a> {
    pub(super) path: &'a str,
    pub(super) nar_hash: &'a [u8; 32],
    pub(super) nar_size: u64,
    pub(super) deriver: Option<&'a str>,
}

/// `reg`'s paths in store-path order and its references as
/// `(referrer, reference)` ids, for [`load_fresh`].
pub(super) fn new_rows(reg: &Registration) -> Result<(Vec<NewPath<'_>>, Vec<[i64; 2]>), DbError> {
    let mut sorted: Vec<&PathInfo> = reg.paths.iter().collect();
    if !sorted.is_sorted_by(|a, b| a.path <= b.path) {
        sorted.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    }
    let mut ids: std::collections::HashMap<&str, i64, PathHash> =
        std::collections::HashMap::with_capacity_and_hasher(sorted.len(), PathHash::default());
    ids.extend(sorted.iter().zip(1..).map(|(p, id)| (p.path.as_str(), id)));
    let mut refs = Vec::with_capacity(sorted.iter().map(|p| p.references.len()).sum());
    for (p, referrer) in sorted.iter().zip(1..) {
        for r in &p.references {
            let reference = ids
                .get(r.as_str())
                .copied()
                .ok_or_else(|| DbError::Unregistered {
                    line: p.line,
                    path: p.path.clone(),
                    reference: r.clone(),
                })?;
            refs.push([referrer, reference]);
        }
    }
    let paths = sorted
        .iter()
        .map(|p| NewPath {
            path: &p.path,
            nar_hash: &p.nar_hash,
            nar_size: p.nar_size,
            deriver: p.deriver.as_deref(),
        })
        .collect();
    Ok((paths, refs))
}

/// The prefix of the file a new database is built in, beside `db.sqlite`.
const FRESH_TMP: &str = ".db.sqlite.nixlive-tmp-";

/// A new database (no `schema` file, no tables): built whole in a file of
/// its own and renamed to `db.sqlite`, so it needs neither a journal nor
/// syncs while it is made (a crash leaves only that file, removed by the
/// next run), and nothing else can have it open (exclusive locking). Paths
/// are inserted in store-path order and their ids kept, so references
/// need no lookups. At the end the file is switched to WAL, as Nix keeps
/// it, synced once and renamed into place; a `db.sqlite` without tables
/// and its `-wal`/`-shm` (an interrupted run's) are replaced.
pub(super) fn load_fresh(
    db_dir: &Path,
    paths: &[NewPath<'_>],
    refs: &[[i64; 2]],
    now: i64,
) -> Result<Counts, DbError> {
    let db_path = &db_dir.join("db.sqlite");
    let tmp = db_dir.join(format!("{FRESH_TMP}{}", std::process::id()));
    remove_stale(db_dir)?;
    let mut sqlite_inserts = None;
    let result = pages::build(&tmp, paths, refs, now)
        .or_else(|why| match why {
            Fresh::Failed(e) => Err(e),
            // SQLite inserts what the page builder does not take.
            Fresh::Unsuitable(why) => {
                sqlite_inserts = Some(why);
                remove_if_there(&tmp)?;
                build_fresh(&tmp, paths, refs, now)
            }
        })
        .and_then(|()| replace_db(db_path, &tmp));
    if result.is_err() {
        // not fatal: the error that matters is returned below.
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    write_new(db_dir, "schema", SCHEMA_VERSION.as_bytes()).map_err(|source| DbError::Io {
        what: "writing",
        path: db_dir.join("schema"),
        source,
    })?;
    Ok(Counts {
        added: paths.len(),
        new_references: refs.len(),
        sqlite_inserts,
        ..Counts::default()
    })
}

/// Removes what a killed run left of [`load_fresh`]'s file.
fn remove_stale(db_dir: &Path) -> Result<(), DbError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| DbError::Io { what, path, source }
    };
    for e in std::fs::read_dir(db_dir).map_err(io("listing", db_dir))? {
        let e = e.map_err(io("listing", db_dir))?;
        if e.file_name().to_string_lossy().starts_with(FRESH_TMP) {
            std::fs::remove_file(e.path()).map_err(io("removing", &e.path()))?;
        }
    }
    Ok(())
}

pub(super) fn build_fresh(
    tmp: &Path,
    paths: &[NewPath<'_>],
    refs: &[[i64; 2]],
    now: i64,
) -> Result<(), DbError> {
    let sq = |what| sqlite(tmp, what);
    let mut conn = open_new(tmp)?;
    // Every page in memory. Foreign keys are not checked row by row: every
    // id comes from this run's own inserts.
    conn.execute_batch(
        "pragma cache_size = -65536; pragma temp_store = memory; pragma foreign_keys = off;",
    )
    .map_err(sq("setting up a new database"))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(sq("starting a transaction"))?;
    tx.execute_batch(SCHEMA_SQL)
        .map_err(sq("creating Nix's schema"))?;
    // The two indexes on Refs are made again after the rows are in: one
    // sort each instead of a B-tree insert per reference. SQLite keeps an
    // index's statement text, so the schema reads as Nix's own.
    let deferred = deferred_indexes();
    for (name, _) in &deferred {
        tx.execute_batch(&format!("drop index {name}"))
            .map_err(sq("deferring an index"))?;
    }
    insert_paths(&tx, paths, now).map_err(sq("inserting into ValidPaths"))?;
    insert_refs(&tx, refs).map_err(sq("inserting into Refs"))?;
    for (_, create) in &deferred {
        tx.execute_batch(create).map_err(sq("creating an index"))?;
    }
    tx.commit().map_err(sq("committing"))?;
    finish_fresh(conn, tmp)
}

/// Opens (creates) the new database `tmp`, a file nothing else sees until
/// it is renamed: no journal, no syncs, one lock for the whole run.
pub(super) fn open_new(tmp: &Path) -> Result<Connection, DbError> {
    let sq = |what| sqlite(tmp, what);
    let conn = Connection::open_with_flags(
        tmp,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sq("opening"))?;
    conn.execute_batch(
        "pragma locking_mode = exclusive; pragma journal_mode = off; pragma synchronous = off;",
    )
    .map_err(sq("setting up a new database"))?;
    Ok(conn)
}

/// Switches the new database in `tmp` to WAL, Nix's journal mode (kept in
/// the file's header), closes it and syncs it once.
pub(super) fn finish_fresh(conn: Connection, tmp: &Path) -> Result<(), DbError> {
    let mode: String = conn
        .query_row("pragma main.journal_mode = wal", [], |r| r.get(0))
        .map_err(|source| DbError::Sqlite {
            path: tmp.to_path_buf(),
            what: "setting WAL journal mode",
            source,
        })?;
    if mode != "wal" {
        return Err(DbError::Sqlite {
            path: tmp.to_path_buf(),
            what: "setting WAL journal mode",
            source: rusqlite::Error::InvalidQuery,
        });
    }
    conn.close().map_err(|(_, source)| DbError::Sqlite {
        path: tmp.to_path_buf(),
        what: "closing",
        source,
    })?;
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|source| DbError::Io {
            what: "syncing",
            path: tmp.to_path_buf(),
            source,
        })
}

/// Rows per multi-row `insert` (SQLite's limit on a `values` list is 500):
/// one statement step for many rows.
const ROWS_PER_INSERT: usize = 250;

/// `head` followed by `n` times `row`, comma-separated.
fn multi_row(head: &str, row: &str, n: usize) -> String {
    format!("{head}{}", vec![row; n].join(", "))
}

/// Inserts `paths` (in store-path order) with ids 1, 2, ...: a
/// [`ROWS_PER_INSERT`]-row statement prepared once (and one for the rest),
/// parameters bound straight from the registration. `ultimate`, `sigs`
/// and `ca` are NULL, as the columns' default.
fn insert_paths(tx: &Connection, paths: &[NewPath<'_>], now: i64) -> rusqlite::Result<()> {
    const HEAD: &str =
        "insert into ValidPaths (id, path, hash, registrationTime, deriver, narSize) values ";
    const ROW: &str = "(?, ?, ?, ?, ?, ?)";
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut full = None;
    let mut hash = *b"sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for (c, chunk) in paths.chunks(ROWS_PER_INSERT).enumerate() {
        let mut part;
        let st = if chunk.len() == ROWS_PER_INSERT {
            if full.is_none() {
                full = Some(tx.prepare(&multi_row(HEAD, ROW, ROWS_PER_INSERT))?);
            }
            full.as_mut().ok_or(rusqlite::Error::InvalidQuery)?
        } else {
            part = tx.prepare(&multi_row(HEAD, ROW, chunk.len()))?;
            &mut part
        };
        for (k, p) in chunk.iter().enumerate() {
            let at = k * 6;
            let id = i64::try_from(c * ROWS_PER_INSERT + k + 1).unwrap_or(i64::MAX);
            for (i, b) in p.nar_hash.iter().enumerate() {
                hash[7 + 2 * i] = HEX[usize::from(b >> 4)];
                hash[8 + 2 * i] = HEX[usize::from(b & 0xf)];
            }
            // All ASCII: the bytes are text.
            let hash_text = std::str::from_utf8(&hash).unwrap_or_default();
            st.raw_bind_parameter(at + 1, id)?;
            st.raw_bind_parameter(at + 2, p.path)?;
            st.raw_bind_parameter(at + 3, hash_text)?;
            st.raw_bind_parameter(at + 4, now)?;
            st.raw_bind_parameter(at + 5, p.deriver)?;
            st.raw_bind_parameter(at + 6, i64::try_from(p.nar_size).ok())?;
        }
        st.raw_execute()?;
    }
    Ok(())
}

/// Inserts `(referrer, reference)` rows as [`insert_paths`] does. A new
/// database has no row to replace: a plain insert, not Nix's
/// `insert or replace` (the parser refused a reference listed twice).
fn insert_refs(tx: &Connection, refs: &[[i64; 2]]) -> rusqlite::Result<()> {
    const HEAD: &str = "insert into Refs (referrer, reference) values ";
    let mut full = None;
    for chunk in refs.chunks(ROWS_PER_INSERT) {
        let mut part;
        let st = if chunk.len() == ROWS_PER_INSERT {
            if full.is_none() {
                full = Some(tx.prepare(&multi_row(HEAD, "(?, ?)", ROWS_PER_INSERT))?);
            }
            full.as_mut().ok_or(rusqlite::Error::InvalidQuery)?
        } else {
            part = tx.prepare(&multi_row(HEAD, "(?, ?)", chunk.len()))?;
            &mut part
        };
        for (k, [referrer, reference]) in chunk.iter().enumerate() {
            st.raw_bind_parameter(2 * k + 1, referrer)?;
            st.raw_bind_parameter(2 * k + 2, reference)?;
        }
        st.raw_execute()?;
    }
    Ok(())
}

/// The indexes on `Refs` in [`SCHEMA_SQL`], as `(name, statement)`.
pub(super) fn deferred_indexes() -> Vec<(&'static str, &'static str)> {
    SCHEMA_SQL
        .lines()
        .filter_map(|l| {
            let name = l
                .strip_prefix("create index if not exists ")?
                .split_whitespace()
                .next()?;
            l.contains(" on Refs(").then_some((name, l))
        })
        .collect()
}

/// Renames the new database `tmp` over `db_path`, first removing the
/// `-wal` and `-shm` files an interrupted run's database left.
fn replace_db(db_path: &Path, tmp: &Path) -> Result<(), DbError> {
    for suffix in ["-wal", "-shm"] {
        remove_if_there(&PathBuf::from(format!("{}{suffix}", db_path.display())))?;
    }
    std::fs::rename(tmp, db_path).map_err(|source| DbError::Io {
        what: "renaming into place",
        path: tmp.to_path_buf(),
        source,
    })
}

//! The native loader: writes a registration into Nix's SQLite database
//! (`/nix/var/nix/db/db.sqlite`, schema version 10) the way
//! `nix-store --load-db` does (Nix's `LocalStore::openDB` and
//! `registerValidPaths`):
//!
//! - a new database gets WAL journaling and Nix's `schema.sql`, word for
//!   word (SQLite keeps the statement text, so `.schema` shows the same),
//!   and the `schema` file holds `10` without a newline;
//! - paths are inserted in store-path order (Nix keeps them in a
//!   `std::map<StorePath, ...>`), so they get the same ids;
//! - `hash` is `sha256:<base 16>`, `registrationTime` the current time,
//!   `deriver` NULL when empty; `ultimate`, `sigs` and `ca` NULL;
//! - a path already valid gets Nix's `updatePathInfo` (size and hash);
//!   references are added with `insert or replace`;
//! - all of it in one transaction: any error leaves the database as it was.
//!
//! A new database (no `schema` file, no tables: the first boot) is built
//! in bulk ([`load_fresh`]): in a file of its own, SQLite making the schema
//! and [`crate::btree`] writing the rows' and indexes' pages in one pass
//! (ids are ranks in store-path order, so nothing is looked up), then
//! switched to WAL by SQLite, synced once and renamed to `db.sqlite`. Rows
//! the page builder does not take (a record too long for a cell) are
//! inserted by SQLite instead, with no journal and no syncs. That is what
//! makes the native loader many times faster than `nix-store --load-db`
//! (`make bench` measures it), and it is as safe: the database appears
//! whole or not at all.
//!
//! Interrupted runs: the `schema` file is written (atomically, by rename)
//! only after the transaction committed, so a run that failed or was killed
//! after `Connection::open` leaves a `db.sqlite` without tables and no
//! `schema`; one killed between the commit and the `schema` file leaves the
//! tables without it. Both are told apart by looking for Nix's tables, not
//! by the file's existence, and the next run finishes the job (as Nix
//! itself treats a database without a `schema` file as new).
//!
//! Derivations (`.drv` paths) are refused: Nix also reads the derivation to
//! fill `DerivationOutputs`, which this loader does not do.

use std::path::{Path, PathBuf};

use nixlive_formats::registration::{Borrowed, PathHash, PathInfo, Registration};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;

/// Nix's database schema version (Nix 2.x).
pub const SCHEMA_VERSION: &str = "10";

/// Nix's `src/libstore/schema.sql` (as SQLite keeps it in `sqlite_master`).
pub const SCHEMA_SQL: &str = include_str!("schema.sql");

#[derive(Debug, Error)]
pub enum DbError {
    #[error("{path}: {what}")]
    Sqlite {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: schema version {found:?}, only {SCHEMA_VERSION} is supported")]
    Schema { path: PathBuf, found: String },
    #[error("line {line}: {path} refers to {reference}, which the registration does not list")]
    Unregistered {
        line: usize,
        path: String,
        reference: String,
    },
    #[error(
        "line {line}: {path} is a derivation; the native loader does not register derivations (use --loader nix-store)"
    )]
    Derivation { line: usize, path: String },
}

/// How the database changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub new_references: usize,
    /// A new database whose rows SQLite inserted: why the page builder
    /// ([`crate::btree`]) did not write them.
    pub sqlite_inserts: Option<&'static str>,
}

impl Counts {
    pub fn changed(&self) -> bool {
        self.added + self.updated + self.new_references > 0
    }
}

/// Loads `reg` into the database in `db_dir` (created if missing), with
/// `now` as the registration time of new paths.
pub fn load(db_dir: &Path, reg: &Registration, now: i64) -> Result<Counts, DbError> {
    if let Some(p) = reg.paths.iter().find(|p| p.path.ends_with(".drv")) {
        return Err(DbError::Derivation {
            line: p.line,
            path: p.path.clone(),
        });
    }
    let db_path = db_dir.join("db.sqlite");
    let schema_path = db_dir.join("schema");
    let sq = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| DbError::Sqlite { path, what, source }
    };
    let schema = match state(db_dir)? {
        State::New => {
            let (paths, refs) = new_rows(reg)?;
            return load_fresh(db_dir, &paths, &refs, now);
        }
        State::Existing { schema } => schema,
    };

    let mut conn = Connection::open(&db_path).map_err(sq("opening", &db_path))?;
    conn.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(sq("setting busy timeout", &db_path))?;
    conn.pragma_update(None, "foreign_keys", 1)
        .map_err(sq("enabling foreign keys", &db_path))?;
    let mode: String = conn
        .query_row("pragma main.journal_mode = wal", [], |r| r.get(0))
        .map_err(sq("setting WAL journal mode", &db_path))?;
    if mode != "wal" {
        return Err(DbError::Sqlite {
            path: db_path,
            what: "setting WAL journal mode",
            source: rusqlite::Error::InvalidQuery,
        });
    }

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sq("starting a transaction", &db_path))?;
    let has_tables = has_tables(&tx).map_err(sq("reading sqlite_master", &db_path))?;
    if !schema && !has_tables {
        tx.execute_batch(SCHEMA_SQL)
            .map_err(sq("creating Nix's schema", &db_path))?;
    }
    let mut counts = Counts::default();
    let mut sorted: Vec<&PathInfo> = reg.paths.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    {
        let mut query = tx
            .prepare("select hash, narSize from ValidPaths where path = ?")
            .map_err(sq("preparing a query", &db_path))?;
        let mut insert = tx
            .prepare(
                "insert into ValidPaths (path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca) \
                 values (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .map_err(sq("preparing an insert", &db_path))?;
        let mut update = tx
            .prepare(
                "update ValidPaths set narSize = ?, hash = ?, ultimate = ?, sigs = ?, ca = ? where path = ?",
            )
            .map_err(sq("preparing an update", &db_path))?;
        for p in &sorted {
            let hash = p.nar_hash_base16();
            let size = i64::try_from(p.nar_size).ok();
            let have: Option<(String, Option<i64>)> = query
                .query_row([&p.path], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(sq("querying ValidPaths", &db_path))?;
            match have {
                Some((h, s)) if h == hash && s == size => counts.unchanged += 1,
                Some(_) => {
                    update
                        .execute(params![
                            size,
                            hash,
                            None::<i64>,
                            None::<String>,
                            None::<String>,
                            p.path
                        ])
                        .map_err(sq("updating ValidPaths", &db_path))?;
                    counts.updated += 1;
                }
                None => {
                    insert
                        .execute(params![
                            p.path,
                            hash,
                            now,
                            p.deriver,
                            size,
                            None::<i64>,
                            None::<String>,
                            None::<String>
                        ])
                        .map_err(sq("inserting into ValidPaths", &db_path))?;
                    counts.added += 1;
                }
            }
        }
        let mut id = tx
            .prepare("select id from ValidPaths where path = ?")
            .map_err(sq("preparing a query", &db_path))?;
        let mut has_ref = tx
            .prepare("select 1 from Refs where referrer = ? and reference = ?")
            .map_err(sq("preparing a query", &db_path))?;
        let mut add_ref = tx
            .prepare("insert or replace into Refs (referrer, reference) values (?, ?)")
            .map_err(sq("preparing an insert", &db_path))?;
        let mut id_of = |path: &str| -> Result<i64, DbError> {
            id.query_row([path], |r| r.get(0))
                .map_err(sq("looking up a path id", &db_path))
        };
        for p in &sorted {
            let referrer = id_of(&p.path)?;
            for r in &p.references {
                let reference = id_of(r)?;
                let known = has_ref
                    .exists(params![referrer, reference])
                    .map_err(sq("querying Refs", &db_path))?;
                if !known {
                    add_ref
                        .execute(params![referrer, reference])
                        .map_err(sq("inserting into Refs", &db_path))?;
                    counts.new_references += 1;
                }
            }
        }
    }
    tx.commit().map_err(sq("committing", &db_path))?;
    drop(conn);
    if !schema {
        write_new(db_dir, "schema", SCHEMA_VERSION.as_bytes()).map_err(|source| DbError::Io {
            what: "writing",
            path: schema_path,
            source,
        })?;
    }
    Ok(counts)
}

/// Loads the quick parser's `reg` when the database in `db_dir` is new
/// (the first boot): built in bulk by [`load_fresh`], ids and references
/// straight from the parsed records. `None` when there is a database
/// already: then [`load`] (and [`missing`]) take the [`Registration`].
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

/// Whether the database in `db_dir` is new.
enum State {
    /// No `schema` file and no tables (none yet, or an interrupted first
    /// run's).
    New,
    /// Nix's tables; `schema`: whether the `schema` file is there (a run
    /// killed after the commit left it out).
    Existing { schema: bool },
}

/// Reads the `schema` file (a version other than Nix's is refused) and
/// looks for Nix's tables; creates `db_dir`.
fn state(db_dir: &Path) -> Result<State, DbError> {
    let db_path = db_dir.join("db.sqlite");
    let schema_path = db_dir.join("schema");
    let schema = match std::fs::read_to_string(&schema_path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(DbError::Io {
                what: "reading",
                path: schema_path,
                source,
            });
        }
    };
    if let Some(s) = &schema
        && s.trim_end_matches('\n') != SCHEMA_VERSION
    {
        return Err(DbError::Schema {
            path: schema_path,
            found: s.clone(),
        });
    }
    create_dir(db_dir).map_err(|source| DbError::Io {
        what: "creating",
        path: db_dir.to_path_buf(),
        source,
    })?;
    Ok(if schema.is_none() && !existing_tables(&db_path)? {
        State::New
    } else {
        State::Existing {
            schema: schema.is_some(),
        }
    })
}

/// A path of a new database; its id is its place in the list plus one.
struct NewPath<'a> {
    path: &'a str,
    nar_hash: &'a [u8; 32],
    nar_size: u64,
    deriver: Option<&'a str>,
}

/// `reg`'s paths in store-path order and its references as
/// `(referrer, reference)` ids, for [`load_fresh`].
fn new_rows(reg: &Registration) -> Result<(Vec<NewPath<'_>>, Vec<[i64; 2]>), DbError> {
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

/// Whether `db_path` holds Nix's tables (a missing file does not).
fn existing_tables(db_path: &Path) -> Result<bool, DbError> {
    match std::fs::symlink_metadata(db_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(DbError::Io {
                what: "reading",
                path: db_path.to_path_buf(),
                source,
            });
        }
        Ok(_) => {}
    }
    let sq = |what| {
        let path = db_path.to_path_buf();
        move |source| DbError::Sqlite { path, what, source }
    };
    let conn = Connection::open(db_path).map_err(sq("opening"))?;
    conn.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(sq("setting busy timeout"))?;
    has_tables(&conn).map_err(sq("reading sqlite_master"))
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
fn load_fresh(
    db_dir: &Path,
    paths: &[NewPath<'_>],
    refs: &[[i64; 2]],
    now: i64,
) -> Result<Counts, DbError> {
    let db_path = &db_dir.join("db.sqlite");
    let tmp = db_dir.join(format!("{FRESH_TMP}{}", std::process::id()));
    remove_stale(db_dir)?;
    let mut sqlite_inserts = None;
    let result = build_fresh_pages(&tmp, paths, refs, now)
        .or_else(|why| match why {
            Fresh::Failed(e) => Err(e),
            // SQLite inserts what the page builder does not take.
            Fresh::Unsuitable(why) => {
                sqlite_inserts = Some(why);
                remove_if_there(&tmp)?;
                build_fresh(&tmp, paths, refs, now)
            }
        })
        .and_then(|()| {
            for suffix in ["-wal", "-shm"] {
                let p = PathBuf::from(format!("{}{suffix}", db_path.display()));
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(DbError::Io {
                            what: "removing",
                            path: p,
                            source: e,
                        });
                    }
                    _ => {}
                }
            }
            std::fs::rename(&tmp, db_path).map_err(|source| DbError::Io {
                what: "renaming into place",
                path: tmp.clone(),
                source,
            })
        });
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

fn build_fresh(
    tmp: &Path,
    paths: &[NewPath<'_>],
    refs: &[[i64; 2]],
    now: i64,
) -> Result<(), DbError> {
    let sq = |what| {
        let path = tmp.to_path_buf();
        move |source| DbError::Sqlite { path, what, source }
    };
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
fn open_new(tmp: &Path) -> Result<Connection, DbError> {
    let sq = |what| {
        let path = tmp.to_path_buf();
        move |source| DbError::Sqlite { path, what, source }
    };
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
fn finish_fresh(conn: Connection, tmp: &Path) -> Result<(), DbError> {
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

/// Why [`build_fresh_pages`] did not build the database.
#[derive(Debug)]
enum Fresh {
    /// Rows the page builder leaves to SQLite (a record larger than a
    /// cell, a path or reference listed twice, a file SQLite made with
    /// other settings): [`build_fresh`] takes over.
    Unsuitable(&'static str),
    Failed(DbError),
}

impl From<DbError> for Fresh {
    fn from(e: DbError) -> Self {
        Fresh::Failed(e)
    }
}

/// The tables and indexes [`build_fresh_pages`] fills, by their names in
/// `sqlite_master`.
const FILLED: [&str; 6] = [
    "ValidPaths",
    "sqlite_autoindex_ValidPaths_1",
    "Refs",
    "sqlite_autoindex_Refs_1",
    "IndexReferrer",
    "IndexReference",
];

/// [`build_fresh`] without SQLite's inserts: SQLite makes the schema (its
/// tables and indexes empty, `sqlite_sequence` set), [`btree`] writes every
/// row's and index entry's pages in one pass, and SQLite opens the file
/// again to switch it to WAL. The rows are the ones [`insert_paths`] and
/// [`insert_refs`] would insert, with the same ids and rowids.
fn build_fresh_pages(
    tmp: &Path,
    paths: &[NewPath<'_>],
    refs: &[[i64; 2]],
    now: i64,
) -> Result<(), Fresh> {
    use crate::btree::{Cells, PAGE_SIZE, Pages, Value};
    let unsuitable = |_: crate::btree::TooLarge| {
        Fresh::Unsuitable("a record larger than a page keeps in a cell")
    };
    if !paths.windows(2).all(|w| w[0].path < w[1].path) {
        return Err(Fresh::Unsuitable("paths not in strict store-path order"));
    }
    // The rows first: nothing is written for rows SQLite must insert.
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
        valid
            .push_row(
                id,
                &[
                    Value::Null,
                    path,
                    Value::Text(&hash_text),
                    Value::Int(now),
                    deriver,
                    size,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
            )
            .map_err(unsuitable)?;
        by_path
            .push_key(&[path, Value::Int(id)])
            .map_err(unsuitable)?;
    }
    // Refs' rowids are the order of insertion; its three indexes are
    // sorted by their keys.
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

    // SQLite makes the schema and the empty trees.
    let sq = |what| {
        let path = tmp.to_path_buf();
        move |source| DbError::Sqlite { path, what, source }
    };
    let conn = open_new(tmp)?;
    conn.execute_batch(&format!("begin; {SCHEMA_SQL}"))
        .map_err(sq("creating Nix's schema"))?;
    if !paths.is_empty() {
        // What an insert into an AUTOINCREMENT table leaves there.
        conn.execute(
            "insert into sqlite_sequence (name, seq) values ('ValidPaths', ?)",
            [paths.len() as i64],
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
    conn.close().map_err(|(_, source)| DbError::Sqlite {
        path: tmp.to_path_buf(),
        what: "closing",
        source,
    })?;
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
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut header, 0).map_err(io("reading"))?;
    }
    // The page builder writes 4096-byte pages without reserved bytes, in
    // schema format 4 (0 and 1 stored without bytes) and UTF-8.
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if size != PAGE_SIZE || header[20] != 0 || be32(44) != 4 || be32(56) != 1 || roots.contains(&0)
    {
        return Err(Fresh::Unsuitable(
            "SQLite made the file with other page settings, or without Nix's tables",
        ));
    }

    let bytes = [&valid, &by_path, &rows, &primary, &referrers, &references]
        .iter()
        .map(|c| c.bytes())
        .sum();
    let mut pages = Pages::new(count + 1, bytes);
    pages.table(roots[0], &valid);
    pages.index(roots[1], &by_path);
    pages.table(roots[2], &rows);
    pages.index(roots[3], &primary);
    pages.index(roots[4], &referrers);
    pages.index(roots[5], &references);
    pages.write_to(&file).map_err(io("writing"))?;
    drop(file);

    // Nix's journal mode, set by SQLite, which reads the file again (not
    // syncing: the file is synced once, below, before it is renamed).
    let conn = Connection::open(tmp).map_err(sq("opening"))?;
    conn.execute_batch("pragma locking_mode = exclusive; pragma synchronous = off;")
        .map_err(sq("setting up a new database"))?;
    Ok(finish_fresh(conn, tmp)?)
}

/// Removes `path` if it is there.
fn remove_if_there(path: &Path) -> Result<(), DbError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DbError::Io {
            what: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
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
fn deferred_indexes() -> Vec<(&'static str, &'static str)> {
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

/// Which of `reg`'s paths the database in `db_dir` lacks or has with other
/// contents (hash, size, references). No database, or no `schema` file
/// (to Nix the database is then new: it would create the tables again):
/// all of them.
pub fn missing(db_dir: &Path, reg: &Registration) -> Result<usize, DbError> {
    let db_path = db_dir.join("db.sqlite");
    if !db_path.exists() || !db_dir.join("schema").exists() {
        return Ok(reg.paths.len());
    }
    let sq = |what| {
        let path = db_path.clone();
        move |source| DbError::Sqlite { path, what, source }
    };
    let conn = Connection::open_with_flags(&db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sq("opening"))?;
    // A database an interrupted first run left without tables: all missing.
    if !has_tables(&conn).map_err(sq("reading sqlite_master"))? {
        return Ok(reg.paths.len());
    }
    let mut query = conn
        .prepare("select id, hash, narSize from ValidPaths where path = ?")
        .map_err(sq("preparing a query"))?;
    let mut refs = conn
        .prepare(
            "select v.path from Refs r join ValidPaths v on v.id = r.reference where r.referrer = ? order by v.path",
        )
        .map_err(sq("preparing a query"))?;
    let mut n = 0;
    for p in &reg.paths {
        let have: Option<(i64, String, Option<i64>)> = query
            .query_row([&p.path], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(sq("querying ValidPaths"))?;
        let same = match have {
            Some((id, h, s)) if h == p.nar_hash_base16() && s == i64::try_from(p.nar_size).ok() => {
                let have_refs: Vec<String> = refs
                    .query_map([id], |r| r.get(0))
                    .map_err(sq("querying Refs"))?
                    .collect::<Result<_, _>>()
                    .map_err(sq("querying Refs"))?;
                p.references
                    .iter()
                    .all(|r| have_refs.binary_search(r).is_ok())
            }
            _ => false,
        };
        n += usize::from(!same);
    }
    Ok(n)
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

/// Whether Nix's tables are there (a committed schema).
fn has_tables(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "select count(*) from sqlite_master where type = 'table' and name = 'ValidPaths'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Writes file `name` in `dir` with mode 0644 (the umask permitting), as
/// Nix's `writeFile(path, s, 0666)` does under the usual umask 022; through
/// a temporary file renamed into place, so an interrupted write never
/// leaves it empty or short.
fn write_new(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.nixlive-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        // not fatal: the error that matters is returned below.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixlive_formats::registration::PathInfo;

    fn info(path: &str, references: &[&str], line: usize) -> PathInfo {
        PathInfo {
            path: path.into(),
            nar_hash: [7; 32],
            nar_size: 120,
            deriver: None,
            references: references.iter().map(|r| r.to_string()).collect(),
            line,
        }
    }

    const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a";
    const B: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b";

    #[test]
    fn a_new_database_is_built_beside_and_renamed_into_place() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registration {
            paths: vec![info(B, &[A, B], 1), info(A, &[], 7)],
        };
        let counts = load(tmp.path(), &reg, 1700000000).unwrap();
        assert_eq!(
            counts,
            Counts {
                added: 2,
                updated: 0,
                unchanged: 0,
                new_references: 2,
                sqlite_inserts: None,
            }
        );
        let conn = Connection::open(tmp.path().join("db.sqlite")).unwrap();
        let mode: String = conn
            .query_row("pragma journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let ids: Vec<(i64, String)> = conn
            .prepare("select id, path from ValidPaths order by id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, [(1, A.to_string()), (2, B.to_string())]);
        let refs: Vec<(i64, i64)> = conn
            .prepare("select referrer, reference from Refs order by 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(refs, [(2, 1), (2, 2)]);
        drop(conn);
        assert_eq!(std::fs::read(tmp.path().join("schema")).unwrap(), b"10");
        // A second load finds everything there.
        let again = load(tmp.path(), &reg, 1700000001).unwrap();
        assert_eq!(again.unchanged, 2);
        assert!(!again.changed());
    }

    /// `(id, path)` of ValidPaths and `(referrer, reference)` of Refs.
    type Rows = (Vec<(i64, String)>, Vec<(i64, i64)>);

    fn rows(dir: &Path) -> Rows {
        let conn = Connection::open(dir.join("db.sqlite")).unwrap();
        let paths = conn
            .prepare("select id, path from ValidPaths order by id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let refs = conn
            .prepare("select referrer, reference from Refs order by 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (paths, refs)
    }

    #[test]
    fn the_quick_records_build_the_same_database_in_any_order() {
        const C: &str = "/nix/store/cccccccccccccccccccccccccccccccc-c";
        let h = "0".repeat(64);
        // Not in store-path order: C, A, B; C refers to B and A, B to A.
        let text =
            format!("{C}\n{h}\n1\n\n3\n{B}\n{A}\n{C}\n{A}\n{h}\n1\n\n0\n{B}\n{h}\n1\n\n1\n{A}\n");
        let quick = Borrowed::parse(text.as_bytes()).unwrap();
        let new = tempfile::tempdir().unwrap();
        let counts = load_new(new.path(), &quick, 1).unwrap().unwrap();
        assert_eq!((counts.added, counts.new_references), (3, 4));
        let owned = tempfile::tempdir().unwrap();
        load(owned.path(), &quick.to_owned(), 1).unwrap();
        let (paths, refs) = rows(new.path());
        assert_eq!(
            paths,
            [(1, A.to_string()), (2, B.to_string()), (3, C.to_string())]
        );
        assert_eq!(refs, [(2, 1), (3, 1), (3, 2), (3, 3)]);
        assert_eq!((paths, refs), rows(owned.path()));
        assert_eq!(std::fs::read(new.path().join("schema")).unwrap(), b"10");
        // A database is there now: the owned path takes over.
        assert!(load_new(new.path(), &quick, 2).unwrap().is_none());
    }

    #[test]
    fn a_derivation_is_refused_by_the_quick_load_too() {
        let h = "0".repeat(64);
        let drv = format!("{A}.drv");
        let text = format!("{drv}\n{h}\n1\n\n0\n");
        let quick = Borrowed::parse(text.as_bytes()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let e = load_new(tmp.path(), &quick, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "line 1: {drv} is a derivation; the native loader does not register derivations (use --loader nix-store)"
            )
        );
        assert!(!tmp.path().join("db.sqlite").exists());
    }

    #[test]
    fn the_deferred_indexes_are_the_two_on_refs() {
        assert_eq!(
            deferred_indexes(),
            [
                (
                    "IndexReferrer",
                    "create index if not exists IndexReferrer on Refs(referrer);"
                ),
                (
                    "IndexReference",
                    "create index if not exists IndexReference on Refs(reference);"
                )
            ]
        );
    }

    #[test]
    fn a_reference_the_registration_does_not_list_is_refused_and_nothing_is_left() {
        // (The parser refuses such a file; a Registration made in code can
        // still hold one.)
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registration {
            paths: vec![info(A, &[B], 3)],
        };
        let e = load(tmp.path(), &reg, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("line 3: {A} refers to {B}, which the registration does not list")
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Everything a database holds that Nix or SQLite reads, root page
    /// numbers aside: rows of every table (with rowids), `sqlite_master`,
    /// the journal mode, and SQLite's own integrity check (which also
    /// reads every index against its table).
    fn contents(db: &Path) -> Vec<String> {
        let conn = Connection::open(db).unwrap();
        let mut out = Vec::new();
        for q in [
            "pragma integrity_check",
            "pragma journal_mode",
            "select * from ValidPaths order by id",
            "select rowid, * from Refs order by rowid",
            "select * from Refs indexed by IndexReference where reference > 0 order by reference, rowid",
            "select * from sqlite_sequence",
            "select type, name, tbl_name, sql from sqlite_master order by name",
            "select count(*) from DerivationOutputs",
        ] {
            let mut st = conn.prepare(q).unwrap();
            let n = st.column_count();
            let rows = st
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            for row in rows {
                out.push(format!("{q}: {}", row.unwrap().join(" | ")));
            }
        }
        out
    }

    /// `n` paths with names of `name_len` bytes, a deriver on every
    /// third, each referring to itself now and then and to up to three
    /// earlier paths.
    fn synthetic(n: usize, name_len: usize) -> (Vec<String>, Vec<Option<String>>, Vec<[i64; 2]>) {
        let names: Vec<String> = (0..n)
            .map(|i| format!("/nix/store/{i:032}-{}", "p".repeat(name_len)))
            .collect();
        let derivers = (0..n)
            .map(|i| (i % 3 == 0).then(|| format!("/nix/store/{i:032}-x.drv")))
            .collect();
        let mut refs = Vec::new();
        for i in 0..n as i64 {
            let mut to: Vec<i64> = [i - 1, i / 2, i * 7 / 11]
                .into_iter()
                .filter(|&j| j >= 0 && j < i)
                .collect();
            if i % 5 == 0 {
                to.push(i);
            }
            to.sort_unstable();
            to.dedup();
            refs.extend(to.into_iter().map(|j| [i + 1, j + 1]));
        }
        (names, derivers, refs)
    }

    fn new_paths<'a>(
        names: &'a [String],
        derivers: &'a [Option<String>],
        hash: &'a [u8; 32],
    ) -> Vec<NewPath<'a>> {
        names
            .iter()
            .zip(derivers)
            .enumerate()
            .map(|(i, (path, deriver))| NewPath {
                path,
                nar_hash: hash,
                nar_size: [0, 1, 127, 128, 40_000, 1 << 33][i % 6],
                deriver: deriver.as_deref(),
            })
            .collect()
    }

    #[test]
    fn the_pages_hold_what_sqlites_inserts_would() {
        let hash = [0xa5; 32];
        for (n, name_len) in [(0, 10), (1, 10), (3, 10), (12_000, 40), (300, 200)] {
            let (names, derivers, refs) = synthetic(n, name_len);
            let paths = new_paths(&names, &derivers, &hash);
            let dir = tempfile::tempdir().unwrap();
            let (ours, theirs) = (dir.path().join("pages"), dir.path().join("inserts"));
            build_fresh_pages(&ours, &paths, &refs, 1_700_000_000).unwrap();
            build_fresh(&theirs, &paths, &refs, 1_700_000_000).unwrap();
            let (a, b) = (contents(&ours), contents(&theirs));
            assert_eq!(a[0], "pragma integrity_check: Text(\"ok\")", "{n} paths");
            assert_eq!(a.len(), b.len(), "{n} paths");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x, y, "{n} paths");
            }
        }
    }

    #[test]
    fn rows_the_pages_do_not_take_are_inserted_by_sqlite() {
        let hash = [3; 32];
        let dir = tempfile::tempdir().unwrap();
        // A store path longer than an index cell keeps: SQLite spills it
        // to an overflow page, which the page builder does not write.
        let (names, derivers, refs) = synthetic(40, 1100);
        let paths = new_paths(&names, &derivers, &hash);
        let counts = load_fresh(dir.path(), &paths, &refs, 7).unwrap();
        assert_eq!(
            counts.sqlite_inserts,
            Some("a record larger than a page keeps in a cell")
        );
        let theirs = dir.path().join("inserts");
        build_fresh(&theirs, &paths, &refs, 7).unwrap();
        assert_eq!(contents(&dir.path().join("db.sqlite")), contents(&theirs));
        // A reference listed twice: SQLite's primary key refuses it.
        let dup = tempfile::tempdir().unwrap();
        let (names, derivers, _) = synthetic(2, 10);
        let paths = new_paths(&names, &derivers, &hash);
        match load_fresh(dup.path(), &paths, &[[2, 1], [2, 1]], 7) {
            Err(DbError::Sqlite { what, source, .. }) => {
                assert_eq!(what, "inserting into Refs");
                assert!(
                    source.to_string().contains("UNIQUE constraint failed"),
                    "{source}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!dup.path().join("db.sqlite").exists());
        // And the ordinary case says nothing.
        let ok = tempfile::tempdir().unwrap();
        let counts = load_fresh(ok.path(), &paths, &[[2, 1]], 7).unwrap();
        assert_eq!(counts.sqlite_inserts, None);
    }

    #[test]
    fn sqlite_adds_to_the_pages_database_on_a_later_load() {
        // Full pages from the page builder, then Nix's per-path inserts
        // (a later registration) splitting them all over.
        let name = |i: usize| format!("/nix/store/{:032}-p", i * 2);
        let first = Registration {
            paths: (0..3000)
                .map(|i| PathInfo {
                    references: if i > 0 { vec![name(i - 1)] } else { vec![] },
                    ..info(&name(i), &[], i + 1)
                })
                .collect(),
        };
        let dir = tempfile::tempdir().unwrap();
        let counts = load(dir.path(), &first, 1).unwrap();
        assert_eq!((counts.added, counts.sqlite_inserts), (3000, None));
        // Paths between the first ones' (odd numbers), each referring to
        // its neighbours.
        let between = |i: usize| format!("/nix/store/{:032}-p", i * 2 + 1);
        let mut later = first.clone();
        later.paths.extend((0..2999).map(|i| PathInfo {
            references: vec![name(i), name(i + 1)],
            ..info(&between(i), &[], 9000 + i)
        }));
        let counts = load(dir.path(), &later, 2).unwrap();
        assert_eq!(
            (counts.added, counts.unchanged, counts.new_references),
            (2999, 3000, 5998)
        );
        let all = contents(&dir.path().join("db.sqlite"));
        assert_eq!(all[0], "pragma integrity_check: Text(\"ok\")");
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        let (paths, refs): (i64, i64) = conn
            .query_row(
                "select (select count(*) from ValidPaths), (select count(*) from Refs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((paths, refs), (5999, 2999 + 5998));
    }
}

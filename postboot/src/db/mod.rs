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
//! in bulk ([`fresh`], [`pages`]): in a file of its own, SQLite making the schema
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

mod existing;
mod fresh;
mod pages;

pub use fresh::load_new;

use std::path::{Path, PathBuf};

use nixlive_formats::registration::Registration;
use rusqlite::{Connection, OptionalExtension};
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
/// `now` as the registration time of new paths: built in bulk when it is
/// new ([`fresh`]), else path by path in one transaction ([`existing`]).
pub fn load(db_dir: &Path, reg: &Registration, now: i64) -> Result<Counts, DbError> {
    if let Some(p) = reg.paths.iter().find(|p| p.path.ends_with(".drv")) {
        return Err(DbError::Derivation {
            line: p.line,
            path: p.path.clone(),
        });
    }
    match state(db_dir)? {
        State::New => {
            let (paths, refs) = fresh::new_rows(reg)?;
            fresh::load_fresh(db_dir, &paths, &refs, now)
        }
        State::Existing { schema } => existing::load(db_dir, reg, now, schema),
    }
}

/// The error of SQLite's `what` on the database at `path`.
fn sqlite(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> DbError {
    let path = path.to_path_buf();
    move |source| DbError::Sqlite { path, what, source }
}

/// Whether the database in `db_dir` is new.
pub(super) enum State {
    /// No `schema` file and no tables (none yet, or an interrupted first
    /// run's).
    New,
    /// Nix's tables; `schema`: whether the `schema` file is there (a run
    /// killed after the commit left it out).
    Existing { schema: bool },
}

/// Reads the `schema` file (a version other than Nix's is refused) and
/// looks for Nix's tables; creates `db_dir`.
pub(super) fn state(db_dir: &Path) -> Result<State, DbError> {
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

/// Removes `path` if it is there.
pub(super) fn remove_if_there(path: &Path) -> Result<(), DbError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DbError::Io {
            what: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
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
pub(super) fn has_tables(conn: &Connection) -> rusqlite::Result<bool> {
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
pub(super) fn write_new(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
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
    use nixlive_formats::registration::Borrowed;
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
            fresh::deferred_indexes(),
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
    ) -> Vec<fresh::NewPath<'a>> {
        names
            .iter()
            .zip(derivers)
            .enumerate()
            .map(|(i, (path, deriver))| fresh::NewPath {
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
            pages::build(&ours, &paths, &refs, 1_700_000_000).unwrap();
            fresh::build_fresh(&theirs, &paths, &refs, 1_700_000_000).unwrap();
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
        let counts = fresh::load_fresh(dir.path(), &paths, &refs, 7).unwrap();
        assert_eq!(
            counts.sqlite_inserts,
            Some("a record larger than a page keeps in a cell")
        );
        let theirs = dir.path().join("inserts");
        fresh::build_fresh(&theirs, &paths, &refs, 7).unwrap();
        assert_eq!(contents(&dir.path().join("db.sqlite")), contents(&theirs));
        // A reference listed twice: SQLite's primary key refuses it.
        let dup = tempfile::tempdir().unwrap();
        let (names, derivers, _) = synthetic(2, 10);
        let paths = new_paths(&names, &derivers, &hash);
        match fresh::load_fresh(dup.path(), &paths, &[[2, 1], [2, 1]], 7) {
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
        let counts = fresh::load_fresh(ok.path(), &paths, &[[2, 1]], 7).unwrap();
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

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

use nixlive_formats::registration::{PathInfo, Registration};
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
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| DbError::Io { what, path, source }
    };
    let sq = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| DbError::Sqlite { path, what, source }
    };
    let schema = match std::fs::read_to_string(&schema_path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading", &schema_path)(e)),
    };
    if let Some(s) = &schema
        && s.trim_end_matches('\n') != SCHEMA_VERSION
    {
        return Err(DbError::Schema {
            path: schema_path,
            found: s.clone(),
        });
    }
    create_dir(db_dir).map_err(io("creating", db_dir))?;

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
    if schema.is_none() && !has_tables {
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
    if schema.is_none() {
        write_new(db_dir, "schema", SCHEMA_VERSION.as_bytes())
            .map_err(io("writing", &schema_path))?;
    }
    Ok(counts)
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

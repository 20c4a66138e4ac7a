//! Loading into a database that is there already, as Nix's
//! `registerValidPaths` does: paths in store-path order, a path already
//! valid updated (`updatePathInfo`: size and hash), references added with
//! `insert or replace`, all in one transaction (an error leaves the
//! database as it was).

use super::{Counts, DbError, SCHEMA_SQL, SCHEMA_VERSION, has_tables, sqlite, write_new};
use nixlive_formats::registration::{PathInfo, Registration};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::path::Path;

/// Loads `reg` into the database in `db_dir`; `schema`: whether its
/// `schema` file is there (written after the commit when it is not).
pub(super) fn load(
    db_dir: &Path,
    reg: &Registration,
    now: i64,
    schema: bool,
) -> Result<Counts, DbError> {
    let db_path = db_dir.join("db.sqlite");
    let mut conn = open_wal(&db_path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite(&db_path, "starting a transaction"))?;
    let has_tables = has_tables(&tx).map_err(sqlite(&db_path, "reading sqlite_master"))?;
    if !schema && !has_tables {
        tx.execute_batch(SCHEMA_SQL)
            .map_err(sqlite(&db_path, "creating Nix's schema"))?;
    }
    let mut sorted: Vec<&PathInfo> = reg.paths.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut counts = Counts::default();
    upsert_paths(&tx, &db_path, &sorted, now, &mut counts)?;
    add_refs(&tx, &db_path, &sorted, &mut counts)?;
    tx.commit().map_err(sqlite(&db_path, "committing"))?;
    drop(conn);
    if !schema {
        write_new(db_dir, "schema", SCHEMA_VERSION.as_bytes()).map_err(|source| DbError::Io {
            what: "writing",
            path: db_dir.join("schema"),
            source,
        })?;
    }
    Ok(counts)
}

/// Opens the database as Nix does: a busy timeout, foreign keys, WAL.
fn open_wal(db_path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open(db_path).map_err(sqlite(db_path, "opening"))?;
    conn.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(sqlite(db_path, "setting busy timeout"))?;
    conn.pragma_update(None, "foreign_keys", 1)
        .map_err(sqlite(db_path, "enabling foreign keys"))?;
    let mode: String = conn
        .query_row("pragma main.journal_mode = wal", [], |r| r.get(0))
        .map_err(sqlite(db_path, "setting WAL journal mode"))?;
    if mode != "wal" {
        return Err(sqlite(db_path, "setting WAL journal mode")(
            rusqlite::Error::InvalidQuery,
        ));
    }
    Ok(conn)
}

/// Inserts the paths the database lacks and updates those it has with
/// another hash or size.
fn upsert_paths(
    tx: &Transaction<'_>,
    db_path: &Path,
    sorted: &[&PathInfo],
    now: i64,
    counts: &mut Counts,
) -> Result<(), DbError> {
    let sq = |what| sqlite(db_path, what);
    let mut query = tx
        .prepare("select hash, narSize from ValidPaths where path = ?")
        .map_err(sq("preparing a query"))?;
    let mut insert = tx
        .prepare(
            "insert into ValidPaths (path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca) \
             values (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .map_err(sq("preparing an insert"))?;
    let mut update = tx
        .prepare(
            "update ValidPaths set narSize = ?, hash = ?, ultimate = ?, sigs = ?, ca = ? where path = ?",
        )
        .map_err(sq("preparing an update"))?;
    let none = (None::<i64>, None::<String>, None::<String>);
    for p in sorted {
        let hash = p.nar_hash_base16();
        let size = i64::try_from(p.nar_size).ok();
        let have: Option<(String, Option<i64>)> = query
            .query_row([&p.path], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(sq("querying ValidPaths"))?;
        match have {
            Some((h, s)) if h == hash && s == size => counts.unchanged += 1,
            Some(_) => {
                update
                    .execute(params![size, hash, none.0, none.1, none.2, p.path])
                    .map_err(sq("updating ValidPaths"))?;
                counts.updated += 1;
            }
            None => {
                insert
                    .execute(params![
                        p.path, hash, now, p.deriver, size, none.0, none.1, none.2
                    ])
                    .map_err(sq("inserting into ValidPaths"))?;
                counts.added += 1;
            }
        }
    }
    Ok(())
}

/// Adds the references the database lacks.
fn add_refs(
    tx: &Transaction<'_>,
    db_path: &Path,
    sorted: &[&PathInfo],
    counts: &mut Counts,
) -> Result<(), DbError> {
    let sq = |what| sqlite(db_path, what);
    let mut id = tx
        .prepare("select id from ValidPaths where path = ?")
        .map_err(sq("preparing a query"))?;
    let mut has_ref = tx
        .prepare("select 1 from Refs where referrer = ? and reference = ?")
        .map_err(sq("preparing a query"))?;
    let mut add_ref = tx
        .prepare("insert or replace into Refs (referrer, reference) values (?, ?)")
        .map_err(sq("preparing an insert"))?;
    let mut id_of = |path: &str| -> Result<i64, DbError> {
        id.query_row([path], |r| r.get(0))
            .map_err(sq("looking up a path id"))
    };
    for p in sorted {
        let referrer = id_of(&p.path)?;
        for r in &p.references {
            let reference = id_of(r)?;
            let known = has_ref
                .exists(params![referrer, reference])
                .map_err(sq("querying Refs"))?;
            if !known {
                add_ref
                    .execute(params![referrer, reference])
                    .map_err(sq("inserting into Refs"))?;
                counts.new_references += 1;
            }
        }
    }
    Ok(())
}

//! Fault injection: a write that fails (a full disk: a small tmpfs filled
//! to the last byte), a process killed midway through loading, and the
//! databases an interrupted first run leaves half-made. After each fault
//! the database, the profile and the key files are as they were before the
//! run (compared entry by entry), and the next run succeeds, with real Nix
//! (`nix path-info`, `nix-store --verify --check-contents`, hermetic
//! through nixlive-testkit) reading the result.
//!
//! The full-disk test mounts a tmpfs, so these tests need root (CI and the
//! development machine run them as root); without it they fail, saying so.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nixlive_formats::registration::Registration;

const KEY1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI me@example";
const KEY2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAZeQERM7stzSZSUBJkgfOF0J4SoQnkh1FKoLq9lh4jG medium";

fn db_dir(root: &Path) -> PathBuf {
    root.join("nix/var/nix/db")
}

fn run_native(root: &Path) -> std::process::Output {
    postboot(&["--root", root.to_str().unwrap(), "--loader", "native"])
}

/// A root with the small closure registered and set as the system, KEY1
/// in the initrd's key file; not yet run.
fn small_root(root: &Path) -> Registration {
    let specs = small_closure();
    let reg = make_store(root, &specs);
    fs::write(root.join("nix/store/nix-path-registration"), reg.render()).unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(
        root.join("proc/cmdline"),
        format!("init={}/init console=ttyS0\n", specs[3].path),
    )
    .unwrap();
    fs::create_dir_all(root.join("run/nixlive")).unwrap();
    fs::write(
        root.join("run/nixlive/authorized_keys"),
        format!("{KEY1}\n"),
    )
    .unwrap();
    reg
}

/// Adds `extra` store paths to the root and the registration: the work of
/// the run the fault interrupts.
fn grow(root: &Path, mut reg: Registration, extra: &[Spec]) -> Registration {
    reg.paths.extend(make_store(root, extra).paths);
    fs::write(root.join("nix/store/nix-path-registration"), reg.render()).unwrap();
    reg
}

/// Adds KEY2 to the initrd's key file: more work for the next run.
fn add_key(root: &Path) {
    fs::write(
        root.join("run/nixlive/authorized_keys"),
        format!("{KEY1}\n{KEY2}\n"),
    )
    .unwrap();
}

fn must_succeed(root: &Path, what: &str) -> String {
    let out = run_native(root);
    assert!(out.status.success(), "{what}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a run may change, entry by entry: the rows Nix reads (without
/// registration times), the `schema` file, the profile's and the GC
/// roots' links, root's key files (names and contents: no temporary file
/// may stay behind) and the database directory's files (SQLite's `-wal`
/// and `-shm` come and go with connections and are left out).
fn state(root: &Path) -> Vec<String> {
    let mut s = Vec::new();
    let db = db_dir(root).join("db.sqlite");
    if db.exists() {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let tables: i64 = conn
            .query_row(
                "select count(*) from sqlite_master where type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        s.push(format!("db.sqlite: {tables} tables"));
        if tables > 0 {
            for q in [
                "select path || ' ' || hash || ' ' || narSize from ValidPaths order by path",
                "select a.path || ' -> ' || b.path from Refs r join ValidPaths a on a.id = r.referrer \
                 join ValidPaths b on b.id = r.reference order by 1",
            ] {
                let mut st = conn.prepare(q).unwrap();
                let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
                s.extend(rows.map(Result::unwrap));
            }
        }
    } else {
        s.push("no db.sqlite".into());
    }
    let list = |dir: &Path, s: &mut Vec<String>| {
        let mut names: Vec<_> = match fs::read_dir(dir) {
            Ok(d) => d.map(|e| e.unwrap().path()).collect(),
            Err(_) => return s.push(format!("{}: none", dir.display())),
        };
        names.sort();
        for p in names {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with("-wal") || name.ends_with("-shm") {
                continue;
            }
            let what = match fs::read_link(&p) {
                Ok(t) => format!("-> {}", t.display()),
                // (The database's rows are compared above.)
                Err(_) if name == "db.sqlite" => "database".into(),
                Err(_) if p.is_file() => format!("{:?}", fs::read_to_string(&p).unwrap()),
                Err(_) => "dir".into(),
            };
            s.push(format!("{}: {what}", p.display()));
        }
    };
    for d in [
        "nix/var/nix/db",
        "nix/var/nix/profiles",
        "nix/var/nix/gcroots/auto",
        "root/.ssh",
    ] {
        list(&root.join(d), &mut s);
    }
    s
}

/// Real Nix reads the store: `n` valid paths, and `nix-store --verify
/// --check-contents` finds nothing wrong.
fn nix_reads(root: &Path, n: usize) {
    let info = path_info(root);
    let have = match &info {
        serde_json::Value::Array(a) => a.len(),
        serde_json::Value::Object(o) => o.len(),
        other => panic!("unexpected path-info output {other}"),
    };
    assert_eq!(have, n, "nix path-info --all");
    let verify = nix("nix-store", root, &["--verify", "--check-contents"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success()
            && !err.contains("modified")
            && !err.contains("error")
            && !err.contains("invalid"),
        "nix-store --verify --check-contents:\n{}",
        text(&verify)
    );
}

#[test]
fn a_database_left_half_made_is_finished_by_the_next_run() {
    // What a first load that failed right after `Connection::open` leaves:
    // an empty file, or a WAL database without tables; no `schema` file.
    for (name, make) in [
        (
            "empty file",
            (|p: &Path| fs::write(p, b"").unwrap()) as fn(&Path),
        ),
        ("WAL header, no tables", |p: &Path| {
            let c = rusqlite::Connection::open(p).unwrap();
            let mode: String = c
                .query_row("pragma journal_mode = wal", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        small_root(&root);
        fs::create_dir_all(db_dir(&root)).unwrap();
        make(&db_dir(&root).join("db.sqlite"));
        assert!(state(&root).contains(&"db.sqlite: 0 tables".to_string()));
        let stdout = must_succeed(&root, name);
        assert!(
            stdout.contains("loaded 4 paths (4 new or changed)"),
            "{name}: {stdout}"
        );
        assert_eq!(fs::read(db_dir(&root).join("schema")).unwrap(), b"10");
        nix_reads(&root, 4);
        let again = must_succeed(&root, name);
        assert!(again.contains("postboot: nothing to do"), "{name}: {again}");
    }
}

#[test]
fn a_new_database_left_half_built_is_removed_by_the_next_run() {
    // A first run killed while it built the new database in its own file
    // leaves that file (named with the dead run's process id) and nothing
    // else: the next run removes it and builds the database.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    small_root(&root);
    fs::create_dir_all(db_dir(&root)).unwrap();
    let stale = db_dir(&root).join(".db.sqlite.nixlive-tmp-999999");
    fs::write(&stale, b"SQLite format 3\0 half a database").unwrap();
    let stdout = must_succeed(&root, "run after a killed first run");
    assert!(
        stdout.contains("loaded 4 paths (4 new or changed)"),
        "{stdout}"
    );
    assert!(!stale.exists(), "the stale file is still there");
    let mut names: Vec<String> = fs::read_dir(db_dir(&root))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["db.sqlite", "schema"]);
    nix_reads(&root, 4);
}

#[test]
fn a_new_database_on_a_full_disk_leaves_nothing_and_the_next_run_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _fs = Tmpfs::mount(&root, "48m");
    let reg = small_root(&root);
    let reg = grow(&root, reg, &big_closure(2000));
    fs::create_dir_all(db_dir(&root)).unwrap();
    let filler = fill(&root);
    let out = run_native(&root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains("postboot: registration: error: native loader: ")
            && (stderr.contains("database or disk is full") || stderr.contains("No space left")),
        "{stderr}"
    );
    assert_eq!(
        fs::read_dir(db_dir(&root)).unwrap().count(),
        0,
        "the failed first load left files in the database directory"
    );
    fs::remove_file(filler).unwrap();
    let stdout = must_succeed(&root, "run after space was freed");
    assert!(
        stdout.contains(&format!(
            "loaded {0} paths ({0} new or changed)",
            reg.paths.len()
        )),
        "{stdout}"
    );
    nix_reads(&root, reg.paths.len());
}

#[test]
fn tables_committed_without_the_schema_file_are_kept() {
    // Killed between the commit and writing `schema`.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    small_root(&root);
    must_succeed(&root, "first run");
    let before = state(&root);
    fs::remove_file(db_dir(&root).join("schema")).unwrap();
    let stdout = must_succeed(&root, "run without schema file");
    assert!(
        stdout.contains("loaded 4 paths (4 new or changed)"),
        "{stdout}"
    );
    assert_eq!(fs::read(db_dir(&root).join("schema")).unwrap(), b"10");
    assert_eq!(state(&root), before);
    nix_reads(&root, 4);
}

/// A tmpfs of `size` mounted on `dir` for the guard's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let opts = std::ffi::CString::new(format!("size={size},mode=0755")).unwrap();
        if let Err(e) = rustix::mount::mount(
            "tmpfs",
            dir,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            opts.as_c_str(),
        ) {
            panic!(
                "mounting a tmpfs on {} for the full-disk test: {e} (this test needs root, as CI has)",
                dir.display()
            );
        }
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // not fatal: a test that failed already said why.
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Fills the file system of `dir` to the last byte; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let e = f.write_all(&[0]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected, got {e}");
    p
}

#[test]
fn a_full_disk_changes_nothing_and_the_next_run_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _fs = Tmpfs::mount(&root, "48m");
    let reg = small_root(&root);
    must_succeed(&root, "first run");
    let before = state(&root);
    assert!(
        before.iter().any(|l| l.contains("authorized_keys")),
        "{before:#?}"
    );

    // A key to add, and no room for the new authorized_keys.
    add_key(&root);
    let filler = fill(&root);
    let out = run_native(&root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains("postboot: ssh: error: writing /root/.ssh/authorized_keys (for root): No space left on device"),
        "{stderr}"
    );
    fs::remove_file(filler).unwrap();
    assert_eq!(
        state(&root),
        before,
        "the failed key installation changed something"
    );

    // 2,000 paths to register, and no room for the database to grow. (The
    // keys would now fit: SQLite's log is freed when the load fails.)
    fs::write(
        root.join("run/nixlive/authorized_keys"),
        format!("{KEY1}\n"),
    )
    .unwrap();
    let reg = grow(&root, reg, &big_closure(2000));
    let filler = fill(&root);
    let out = run_native(&root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains("postboot: registration: error: native loader: ")
            && stderr.contains("database or disk is full"),
        "{stderr}"
    );
    fs::remove_file(filler).unwrap();
    assert_eq!(state(&root), before, "the failed load changed something");

    add_key(&root);
    let stdout = must_succeed(&root, "run after space was freed");
    assert!(
        stdout.contains(&format!(
            "loaded {} paths (2000 new or changed)",
            reg.paths.len()
        )),
        "{stdout}"
    );
    assert_eq!(
        fs::read_to_string(root.join("root/.ssh/authorized_keys")).unwrap(),
        format!("{KEY1}\n{KEY2}\n")
    );
    nix_reads(&root, reg.paths.len());
}

#[test]
fn a_run_killed_while_loading_changes_nothing_and_the_next_run_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let reg = small_root(&root);
    must_succeed(&root, "first run");
    let before = state(&root);
    let reg = grow(&root, reg, &big_closure(10_000));
    add_key(&root);

    // SIGKILL as soon as the load's transaction spills its first pages into
    // the write-ahead log: midway, before the commit (the first run's log
    // was checkpointed when it closed the database; `state`'s read-only look
    // may leave an empty one).
    let wal = db_dir(&root).join("db.sqlite-wal");
    assert!(
        fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "a closed database keeps no log"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_nixlive-postboot"))
        .args(["--root", root.to_str().unwrap(), "--loader", "native"])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            child.kill().unwrap();
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("postboot finished ({status}) before it could be killed midway");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no log after 60 s"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    assert_eq!(state(&root), before, "the killed run changed something");

    let stdout = must_succeed(&root, "run after the kill");
    assert!(
        stdout.contains(&format!(
            "loaded {} paths (10000 new or changed)",
            reg.paths.len()
        )),
        "{stdout}"
    );
    nix_reads(&root, reg.paths.len());
}

#[test]
fn writes_refused_by_a_read_only_file_system_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let tmpfs = Tmpfs::mount(&root, "32m");
    let reg = small_root(&root);
    must_succeed(&root, "first run");
    let before = state(&root);
    let reg = grow(&root, reg, &big_closure(100));
    add_key(&root);

    let remount = |flags: rustix::mount::MountFlags| {
        rustix::mount::mount_remount(&tmpfs.0, flags, c"").unwrap();
    };
    remount(rustix::mount::MountFlags::RDONLY);
    let out = run_native(&root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for step in ["registration", "ssh"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("postboot: {step}: error: "))
                    && (l.contains("Read-only file system") || l.contains("readonly database"))),
            "{step}: {stderr}"
        );
    }
    remount(rustix::mount::MountFlags::empty());
    assert_eq!(state(&root), before, "the refused run changed something");

    let stdout = must_succeed(&root, "run once writable again");
    assert!(
        stdout.contains(&format!(
            "loaded {} paths (100 new or changed)",
            reg.paths.len()
        )),
        "{stdout}"
    );
    nix_reads(&root, reg.paths.len());
}

//! Acceptance against real Nix (Debian's `nix-bin`, Nix 2.8): what
//! postboot writes must read, to Nix, as what Nix writes itself.
//!
//! - The native loader and `nix-store --load-db`, given the same file, give
//!   the same `nix path-info --json --all` (apart from `registrationTime`)
//!   and the same database rows and schema; `nix-store --verify
//!   --check-contents` passes on ours. For a small closure and for 10,000
//!   generated paths with references.
//! - `nix-env --list-generations` reads our profile; a later real
//!   `nix-env --set` makes generation 2, and our next run generation 3.
//! - Each malformed file of the corpus is refused with its line, and the
//!   database stays byte for byte as it was.
//!
//! Nix runs against chroot stores (`--store DIR`), hermetically
//! (nixlive-testkit: no nixbld group, no binary cache, nothing of the
//! machine's `/etc/nix`). A missing Nix fails these tests; they never skip.

mod common;

use std::fs;
use std::path::Path;
use std::time::Instant;

use common::*;
use nixlive_formats::registration::Registration;
use nixlive_postboot::profile::gcroot_name;

/// Runs the native loader of the built binary on `root`.
fn load_native(root: &Path) -> std::process::Output {
    postboot(&["--root", root.to_str().unwrap(), "--loader", "native"])
}

fn write_registration(root: &Path, reg: &Registration) -> Vec<u8> {
    let text = reg.render().into_bytes();
    fs::write(root.join("nix/store/nix-path-registration"), &text).unwrap();
    text
}

/// Every row of the tables Nix reads, registration times left out, and the
/// schema as SQLite keeps it.
fn db_rows(root: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        root.join("nix/var/nix/db/db.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut rows = Vec::new();
    for (q, n) in [
        (
            "select type, name, tbl_name, sql from sqlite_master order by name",
            4,
        ),
        (
            "select id, path, hash, deriver, narSize, ultimate, sigs, ca from ValidPaths order by id",
            8,
        ),
        ("select referrer, reference from Refs order by 1, 2", 2),
        ("select name, seq from sqlite_sequence", 2),
        ("pragma journal_mode", 1),
        ("pragma page_size", 1),
        ("pragma user_version", 1),
    ] {
        let mut st = conn.prepare(q).unwrap();
        let mut r = st.query([]).unwrap();
        while let Some(row) = r.next().unwrap() {
            let cols: Vec<String> = (0..n)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect();
            rows.push(format!("{q}: {}", cols.join("|")));
        }
    }
    rows
}

/// Loads `specs` natively into one store and with `nix-store --load-db`
/// into another, and compares what Nix sees.
fn compare_loaders(name: &str, specs: &[Spec], tweak: impl Fn(&mut Registration)) {
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join(format!("{name}-native"));
    let theirs = tmp.path().join(format!("{name}-nix"));
    let mut reg = make_store(&ours, specs);
    tweak(&mut reg);
    let reg_text = write_registration(&ours, &reg);
    fs::create_dir_all(theirs.join("nix/store")).unwrap();

    let t = Instant::now();
    let out = load_native(&ours);
    let native_time = t.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("loaded {} paths", specs.len())),
        "{stdout}"
    );
    assert!(stdout.contains("native loader"), "{stdout}");

    let t = Instant::now();
    nix_store_load_db(&theirs, &reg_text);
    let nix_time = t.elapsed();
    eprintln!(
        "{name}: {} paths, native loader {native_time:?} (whole postboot run), nix-store --load-db {nix_time:?}",
        specs.len()
    );

    let a = path_info(&ours);
    let b = path_info(&theirs);
    assert_eq!(
        a.as_array().map(Vec::len).unwrap_or(0),
        specs.len(),
        "path-info lists every path"
    );
    assert!(
        a == b,
        "nix path-info differs:\nnative: {a:#}\nnix-store: {b:#}"
    );
    let (ra, rb) = (db_rows(&ours), db_rows(&theirs));
    if ra != rb {
        let diff: Vec<_> = ra.iter().zip(&rb).filter(|(x, y)| x != y).take(5).collect();
        panic!("database rows differ (first differences): {diff:#?}");
    }
    assert_eq!(
        fs::read(ours.join("nix/var/nix/db/schema")).unwrap(),
        fs::read(theirs.join("nix/var/nix/db/schema")).unwrap(),
        "schema file"
    );
    assert_eq!(fs::read(ours.join("nix/var/nix/db/schema")).unwrap(), b"10");

    let t = Instant::now();
    let verify = nix("nix-store", &ours, &["--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "nix-store --verify --check-contents on ours:\n{}",
        common::text(&verify)
    );
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !err.contains("modified") && !err.contains("error") && !err.contains("invalid"),
        "nix-store --verify --check-contents complains:\n{err}"
    );
    eprintln!(
        "{name}: nix-store --verify --check-contents {:?}",
        t.elapsed()
    );
    // The check can fail: a changed file is found (then put back).
    let top = ours.join(specs[0].path.trim_start_matches('/'));
    let victim = if top.join("lib/libfoo.so").exists() {
        top.join("lib/libfoo.so")
    } else {
        top
    };
    let set_mode = |mode| {
        let mut p = fs::metadata(&victim).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, mode);
        fs::set_permissions(&victim, p).unwrap();
    };
    let original = fs::read(&victim).unwrap();
    set_mode(0o644);
    fs::write(&victim, b"tampered").unwrap();
    set_mode(0o444);
    let tampered = nix("nix-store", &ours, &["--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(
        !tampered.status.success()
            && String::from_utf8_lossy(&tampered.stderr).contains("was modified"),
        "nix-store --verify --check-contents missed a changed file:\n{}",
        common::text(&tampered)
    );
    set_mode(0o644);
    fs::write(&victim, &original).unwrap();
    set_mode(0o444);

    // A second run has nothing to do and leaves the database alone.
    let before = fs::read(ours.join("nix/var/nix/db/db.sqlite")).unwrap();
    let out = load_native(&ours);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("already valid, nothing to do"), "{stdout}");
    assert!(stdout.ends_with("postboot: nothing to do\n"), "{stdout}");
    assert_eq!(
        before,
        fs::read(ours.join("nix/var/nix/db/db.sqlite")).unwrap()
    );
}

#[test]
fn small_closure_native_equals_nix_store() {
    compare_loaders("small", &small_closure(), |reg| {
        let drv = format!("/nix/store/{}-foo-1.0.drv", hash_part("drv", 0));
        reg.paths[1].deriver = Some(drv);
    });
}

#[test]
fn ten_thousand_paths_native_equals_nix_store() {
    let t = Instant::now();
    compare_loaders("big", &big_closure(10_000), |_| {});
    eprintln!("big: whole test {:?}", t.elapsed());
}

#[test]
fn nix_store_loader_through_postboot() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("via-nix-store");
    let theirs = tmp.path().join("reference");
    let reg = make_store(&ours, &small_closure());
    let text = write_registration(&ours, &reg);
    fs::create_dir_all(theirs.join("nix/store")).unwrap();
    nix_store_load_db(&theirs, &text);
    let nix_store = nixlive_testkit::nix::program("nix-store");
    // postboot passes its environment on to nix-store: the kit's, so that
    // nix-store too is hermetic.
    let env = hermetic_nix(&ours);
    let run = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nixlive-postboot"));
        env.configure(&mut cmd)
            .args(["--root", ours.to_str().unwrap(), "--loader", "nix-store"])
            .arg("--nix-store")
            .arg(&nix_store)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("with the nix-store loader"),
        "{}",
        common::text(&out)
    );
    assert_eq!(path_info(&ours), path_info(&theirs));
    let out = run();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to do"),
        "{}",
        common::text(&out)
    );
}

#[test]
fn nix_env_reads_our_profile_and_continues_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("profile");
    let specs = small_closure();
    let mut reg = make_store(&root, &specs);
    // A second system to switch to.
    let other = format!("/nix/store/{}-nixos-system-other", hash_part("other", 0));
    let more = make_store(
        &root,
        &[Spec {
            path: other.clone(),
            node: Node::File {
                contents: b"other".to_vec(),
                executable: false,
            },
            references: vec![],
        }],
    );
    reg.paths.extend(more.paths);
    write_registration(&root, &reg);
    let system = &specs[3].path;
    let r = root.to_str().unwrap();
    let out = postboot(&["--root", r, "--system", system]);
    assert!(out.status.success(), "{}", text(&out));

    let profiles = root.join("nix/var/nix/profiles");
    let profile = profiles.join("system");
    let p = profile.to_str().unwrap();
    let gens = ok(nix("nix-env", &root, &["-p", p, "--list-generations"]));
    let lines: Vec<&str> = gens.lines().collect();
    assert_eq!(lines.len(), 1, "{gens}");
    assert!(
        lines[0].trim_start().starts_with("1 ") && lines[0].ends_with("(current)"),
        "{gens}"
    );
    let ours_root = root
        .join("nix/var/nix/gcroots/auto")
        .join(gcroot_name("/nix/var/nix/profiles/system-1-link"));
    assert_eq!(
        fs::read_link(&ours_root).unwrap(),
        Path::new("/nix/var/nix/profiles/system-1-link")
    );

    // Real nix-env continues the profile.
    ok(nix("nix-env", &root, &["-p", p, "--set", &other]));
    assert_eq!(fs::read_link(&profile).unwrap(), Path::new("system-2-link"));
    assert_eq!(
        fs::read_link(profiles.join("system-2-link")).unwrap(),
        Path::new(&other)
    );
    assert_eq!(
        fs::read_link(profiles.join("system-1-link")).unwrap(),
        Path::new(system)
    );
    // Its GC root is named as ours are (it hashes the host path of the link,
    // as it sees it through the chroot store).
    let link2 = format!("{p}-2-link");
    let their_root = root
        .join("nix/var/nix/gcroots/auto")
        .join(gcroot_name(&link2));
    assert_eq!(fs::read_link(&their_root).unwrap(), Path::new(&link2));
    let gens = ok(nix("nix-env", &root, &["-p", p, "--list-generations"]));
    assert_eq!(gens.lines().count(), 2, "{gens}");
    assert!(
        gens.lines().nth(1).unwrap().ends_with("(current)"),
        "{gens}"
    );

    // Setting it to the same path again: nix-env makes no generation, nor do we.
    ok(nix("nix-env", &root, &["-p", p, "--set", &other]));
    // (Ours adds the GC root under the path as seen inside the root, which
    // in a chroot store differs from the host path nix-env hashed; on a
    // real system they are one and the same.)
    let out = postboot(&["--root", r, "--system", &other]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(generation 2, system from --system)"),
        "{}",
        text(&out)
    );
    assert!(!profiles.join("system-3-link").exists());
    let out = postboot(&["--root", r, "--system", &other]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("system-2-link already points to"),
        "{}",
        text(&out)
    );
    // Back to the first system: generation 3, from either tool.
    let out = postboot(&["--root", r, "--system", system]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read_link(&profile).unwrap(), Path::new("system-3-link"));
    let gens = ok(nix("nix-env", &root, &["-p", p, "--list-generations"]));
    assert_eq!(gens.lines().count(), 3, "{gens}");
}

/// The corpus: each file with the line and field its error must name.
const CORPUS: &[(&str, usize, &str)] = &[
    ("no-final-newline.reg", 6, "reference"),
    ("trailing-blank-line.reg", 12, "store path"),
    ("bad-hash-digit.reg", 2, "NAR hash"),
    ("bad-hash-length.reg", 8, "NAR hash"),
    ("sha1-hash.reg", 2, "NAR hash"),
    ("unknown-reference.reg", 6, "reference"),
    ("duplicate-path.reg", 7, "store path"),
    ("duplicate-reference.reg", 7, "reference"),
    ("zero-size.reg", 3, "NAR size"),
    ("size-not-a-number.reg", 3, "NAR size"),
    ("count-too-large.reg", 5, "reference count"),
    ("count-negative.reg", 5, "reference count"),
    ("truncated-record.reg", 9, "NAR size"),
    ("path-outside-store.reg", 1, "store path"),
    ("path-bad-hash-part.reg", 7, "store path"),
    ("path-bad-name.reg", 1, "store path"),
    ("deriver-not-a-store-path.reg", 4, "deriver"),
    ("crlf.reg", 1, "store path"),
    ("blank-line-between-records.reg", 7, "store path"),
    ("reference-cycle.reg", 12, "reference"),
];

#[test]
fn malformed_corpus_is_refused_and_db_untouched() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registration");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("corpus");
    let reg = make_store(&root, &small_closure());
    write_registration(&root, &reg);
    let out = load_native(&root);
    assert!(out.status.success(), "{}", text(&out));
    let db = root.join("nix/var/nix/db/db.sqlite");
    let before = fs::read(&db).unwrap();
    let info_before = path_info(&root);

    let mut listed: Vec<String> = CORPUS.iter().map(|c| c.0.to_string()).collect();
    listed.sort();
    let mut present: Vec<String> = fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".reg"))
        .collect();
    present.sort();
    assert_eq!(listed, present, "every corpus file has an expectation");

    for (file, line, field) in CORPUS {
        let data = fs::read(fixtures.join(file)).unwrap();
        // The parser alone.
        let e = Registration::parse(&data).expect_err(file);
        assert_eq!(
            (e.line, e.field.to_string().as_str()),
            (*line, *field),
            "{file}: {e}"
        );
        // The whole program, with each loader.
        fs::write(root.join("nix/store/bad-registration"), &data).unwrap();
        for loader in ["native", "nix-store"] {
            let out = postboot(&[
                "--root",
                root.to_str().unwrap(),
                "--loader",
                loader,
                "--registration",
                "/nix/store/bad-registration",
                "--nix-store",
                "/nonexistent/nix-store",
            ]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{file}: {}", text(&out));
            // Named once: the parse error is the cause, not repeated in the message.
            assert_eq!(
                err.matches(&format!("line {line} ({field})")).count(),
                1,
                "{file}: {}",
                text(&out)
            );
            assert!(err.contains("nothing was registered"), "{file}: {err}");
            assert_eq!(before, fs::read(&db).unwrap(), "{file}: database changed");
        }
    }
    assert_eq!(info_before, path_info(&root));
}

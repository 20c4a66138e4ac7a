//! A root unpacked from a system tarball (persistent, registration at
//! `/nix-path-registration`): the first run loads and removes it, the
//! second has nothing to do; `/run/current-system` names the system; a
//! registration that fails to load is kept for the next boot while the
//! other steps still run. Real Nix (hermetic) accepts the result.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// A persistent root: the store, the registration at the top, and
/// `/run/current-system` pointing at the system (no `init=`).
fn setup(root: &Path) -> (String, Vec<u8>) {
    let specs = small_closure();
    let reg = make_store(root, &specs).render().into_bytes();
    fs::write(root.join("nix-path-registration"), &reg).unwrap();
    let system = specs[3].path.clone();
    fs::create_dir_all(root.join("run")).unwrap();
    std::os::unix::fs::symlink(&system, root.join("run/current-system")).unwrap();
    (system, reg)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn loads_and_removes_the_tarball_registration_then_nothing_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (system, _) = setup(root);
    let r = root.to_str().unwrap();

    let out = postboot(&["--root", r, "--loader", "native"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = stdout(&out);
    assert!(
        s.contains("registration: loaded 4 paths (4 new or changed) from /nix-path-registration"),
        "{s}"
    );
    assert!(
        s.contains("registration: removed /nix-path-registration"),
        "{s}"
    );
    assert!(!root.join("nix-path-registration").exists());
    assert!(
        s.contains(&format!(
            "-> {system} (generation 1, new, system from /run/current-system)"
        )),
        "{s}"
    );
    let db = root.join("nix/var/nix/db/db.sqlite");
    let before = fs::read(&db).unwrap();

    let again = postboot(&["--root", r, "--loader", "native"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let s = stdout(&again);
    assert!(
        s.contains(
            "registration: no /nix-path-registration nor /nix/store/nix-path-registration, skipping"
        ),
        "{s}"
    );
    assert!(s.contains("postboot: nothing to do"), "{s}");
    assert_eq!(fs::read(&db).unwrap(), before, "the database was rewritten");

    // Real Nix reads what the first run wrote, and the store checks out.
    let verify = nix("nix-store", root, &["--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !err.contains("modified") && !err.contains("error") && !err.contains("invalid"),
        "{err}"
    );
    let valid = ok(nix(
        "nix-store",
        root,
        &["--query", "--requisites", &system],
    ));
    assert_eq!(valid.lines().count(), 4, "{valid}");
}

#[test]
fn a_registration_that_fails_to_load_is_kept_and_the_boot_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (system, reg) = setup(root);
    let r = root.to_str().unwrap();
    // A truncated file: its last path's record is cut short.
    let cut = &reg[..reg.len() - 20];
    fs::write(root.join("nix-path-registration"), cut).unwrap();

    let out = postboot(&["--root", r, "--loader", "native"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("postboot: registration: error: /nix-path-registration is malformed"),
        "{err}"
    );
    assert!(
        err.contains("/nix-path-registration is kept, to be loaded at the next boot"),
        "{err}"
    );
    assert_eq!(fs::read(root.join("nix-path-registration")).unwrap(), cut);
    assert!(!root.join("nix/var/nix/db/db.sqlite").exists());
    // The other steps ran.
    let s = stdout(&out);
    assert!(s.contains("marker: created /etc/NIXOS"), "{s}");
    assert!(s.contains(&format!("-> {system} (generation 1")), "{s}");

    // Fixed, the next boot loads it and lets it go.
    fs::write(root.join("nix-path-registration"), &reg).unwrap();
    let out = postboot(&["--root", r, "--loader", "native"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!root.join("nix-path-registration").exists());
}

#[test]
fn the_store_image_registration_is_never_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (_, reg) = setup(root);
    fs::remove_file(root.join("nix-path-registration")).unwrap();
    fs::write(root.join("nix/store/nix-path-registration"), &reg).unwrap();
    let out = postboot(&["--root", root.to_str().unwrap(), "--loader", "native"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("from /nix/store/nix-path-registration"),
        "{}",
        text(&out)
    );
    assert!(root.join("nix/store/nix-path-registration").exists());
}

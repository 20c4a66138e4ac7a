//! `live.nixos.passwd=` and `live.nixos.passwordHash=` (what NixOS's
//! installer documents for SSH into a live system) through the whole
//! program on a temporary root: the live user's `/etc/shadow` field, checked
//! against OpenSSL's own SHA-512 crypt; the file's other lines, mode and
//! owner kept; the password in no output; a second run that changes
//! nothing; and each bad input walked.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

const PASSWD: &str = "root:x:0:0:System administrator:/root:/bin/sh\n\
                      nixos:x:1000:100:NixOS:/home/nixos:/bin/sh\n";
const SHADOW: &str = "root:!:1::::::\nnixos::1::::::\nsshd:!:1::::::\n";
/// Has a space and an `=`: NixOS's own parsing would cut it at the `=`.
const PASSWORD: &str = "pa ss=w0rd";

fn setup(root: &Path, cmdline: &str) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    let shadow = root.join("etc/shadow");
    fs::write(&shadow, SHADOW).unwrap();
    fs::set_permissions(&shadow, fs::Permissions::from_mode(0o640)).unwrap();
    // shadow's group, as Debian has it (the tests run as root).
    std::os::unix::fs::chown(&shadow, Some(0), Some(42)).unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(root.join("proc/cmdline"), format!("{cmdline}\n")).unwrap();
}

fn shadow(root: &Path) -> String {
    fs::read_to_string(root.join("etc/shadow")).unwrap()
}

fn field<'a>(shadow: &'a str, user: &str) -> &'a str {
    shadow
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no {user} in {shadow}"))
}

fn run(root: &Path) -> (Option<i32>, String) {
    let out = postboot(&["--root", root.to_str().unwrap()]);
    (out.status.code(), text(&out))
}

/// `openssl passwd -6 -salt SALT PASSWORD`: the real SHA-512 crypt.
fn openssl_sha512(salt: &str, password: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, password])
        .output()
        .expect("running openssl (scripts/install-deps.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn clear_password_is_sha512_crypt_as_openssl_makes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(
        root,
        &format!("init=/x/init \"live.nixos.passwd={PASSWORD}\""),
    );
    let (code, out) = run(root);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !out.contains("pa ss"),
        "the password reached the output:\n{out}"
    );
    assert!(
        out.contains(
            "postboot: live-password: nixos's password set from live.nixos.passwd (sha512-crypt) in /etc/shadow"
        ),
        "{out}"
    );
    let new = shadow(root);
    let hash = field(&new, "nixos");
    // $6$rounds=5000$SALT$HASH; OpenSSL writes the default rounds implicitly.
    let parts: Vec<&str> = hash.split('$').collect();
    assert_eq!(parts[..3], ["", "6", "rounds=5000"], "{hash}");
    assert_eq!(
        openssl_sha512(parts[3], PASSWORD),
        format!("$6${}${}", parts[3], parts[4])
    );
    // Every other line as it was; mode and owner kept.
    assert_eq!(new.replace(hash, ""), SHADOW, "only nixos's field changed");
    let meta = fs::metadata(root.join("etc/shadow")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 0, 42)
    );

    // Second run: the hash is of this password already; nothing changes.
    let (code, out) = run(root);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("nixos's password already is the one from live.nixos.passwd, nothing to do"),
        "{out}"
    );
    assert_eq!(shadow(root), new);
}

#[test]
fn given_hash_is_written_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let hash = openssl_sha512("nixlivetest", "hunter2");
    // A hash wins over a clear password given beside it.
    setup(
        root,
        &format!("live.nixos.passwd=ignored live.nixos.passwordHash={hash}"),
    );
    let (code, out) = run(root);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("using the hash"), "{out}");
    assert!(
        out.contains("nixos's password set from live.nixos.passwordHash (sha512-crypt)"),
        "{out}"
    );
    assert_eq!(field(&shadow(root), "nixos"), hash);
    let (_, out) = run(root);
    assert!(out.contains("already is the one"), "{out}");
}

#[test]
fn configured_live_user() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "live.nixos.passwd=secret");
    fs::create_dir_all(root.join("etc/nixlive")).unwrap();
    fs::write(
        root.join("etc/nixlive/postboot.conf"),
        "nixlive-postboot 1\nlive-user root\n",
    )
    .unwrap();
    let (code, out) = run(root);
    assert_eq!(code, Some(0), "{out}");
    let s = shadow(root);
    assert!(field(&s, "root").starts_with("$6$"), "{s}");
    assert_eq!(field(&s, "nixos"), "", "{s}");
    assert!(
        out.contains("root's password comes from the kernel command line this boot"),
        "{out}"
    );
    // Root's config step does not lock it again on the next run.
    let (_, out) = run(root);
    assert_eq!(shadow(root), s, "{out}");
}

#[test]
fn a_bad_hash_is_rejected_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "live.nixos.passwordHash=plaintext");
    let (code, out) = run(root);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("rejected live.nixos.passwordHash= for nixos: not a crypt(3) hash"),
        "{out}"
    );
    assert_eq!(field(&shadow(root), "nixos"), "");
}

#[test]
fn an_unknown_live_user_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "live.nixos.passwd=secret");
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let (code, out) = run(root);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "live-password: error: user nixos is not in {}",
            root.join("etc/passwd").display()
        )),
        "{out}"
    );
    assert!(!out.contains("secret"), "{out}");
    assert_eq!(shadow(root).lines().nth(1), Some("nixos::1::::::"));
}

#[test]
fn a_shadow_that_is_a_symlink_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "live.nixos.passwd=secret");
    let elsewhere = root.join("elsewhere");
    fs::write(&elsewhere, SHADOW).unwrap();
    fs::remove_file(root.join("etc/shadow")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("etc/shadow")).unwrap();
    let (code, out) = run(root);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("live-password: error:"), "{out}");
    assert_eq!(fs::read_to_string(&elsewhere).unwrap(), SHADOW);
}

#[test]
fn nothing_asked_nothing_done() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "init=/x/init");
    let (code, out) = run(root);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("no live.nixos.passwd= or live.nixos.passwordHash=, nothing to do"),
        "{out}"
    );
    assert_eq!(shadow(root), SHADOW);
}

//! Key sources that are hostile or broken cost only themselves: an unknown
//! user in the configuration, a key file that is a symbolic link, a FIFO or
//! larger than the cap. The other sources and users still get their keys.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nixlive_postboot::ssh::MAX_KEY_FILE;

const KEY1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI me@example";
const KEY2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAZeQERM7stzSZSUBJkgfOF0J4SoQnkh1FKoLq9lh4jG medium";

/// A root with KEY1 in the initrd's key file, a passwd with root and alice
/// (owned by whoever runs the test), and `medium` as the medium's key file
/// init handed over (written by the closure).
fn setup(root: &Path, conf: &str, medium: impl FnOnce(&Path)) {
    let (uid, gid) = {
        let m = fs::metadata(root).unwrap();
        (m.uid(), m.gid())
    };
    fs::create_dir_all(root.join("etc/nixlive")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        format!("root:x:{uid}:{gid}::/root:/bin/sh\nalice:x:{uid}:{gid}::/home/alice:/bin/sh\n"),
    )
    .unwrap();
    fs::write(root.join("etc/nixlive/postboot.conf"), conf).unwrap();
    fs::create_dir_all(root.join("run/nixlive")).unwrap();
    fs::write(
        root.join("run/nixlive/authorized_keys"),
        format!("{KEY1}\n"),
    )
    .unwrap();
    medium(&root.join("run/nixlive/medium_authorized_keys"));
}

/// Runs postboot on `root` with a deadline: a read that blocks fails the
/// test instead of hanging it.
fn run_bounded(root: &Path) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nixlive-postboot"))
        .args(["--root", root.to_str().unwrap()])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("postboot still running after 20 s (blocked on a key file?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn keys_of(root: &Path, home: &str) -> String {
    fs::read_to_string(root.join(home).join(".ssh/authorized_keys")).unwrap()
}

#[test]
fn an_unknown_user_costs_only_its_own_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(
        root,
        "nixlive-postboot 1\nssh-user ghost\nssh-user alice\nssh-user b@d\n",
        |p| fs::write(p, format!("{KEY2}\n")).unwrap(),
    );
    let out = run_bounded(root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains("user ghost is not in ") && stderr.contains("etc/passwd"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipping an entry of /etc/nixlive/postboot.conf: line 4"),
        "{stderr}"
    );
    let both = format!("{KEY1}\n{KEY2}\n");
    assert_eq!(keys_of(root, "root"), both);
    assert_eq!(keys_of(root, "home/alice"), both);
}

#[test]
fn a_linked_key_file_is_refused_and_the_others_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let secret = root.join("secret");
    fs::write(&secret, format!("{KEY2}\n")).unwrap();
    setup(root, "nixlive-postboot 1\n", |p| {
        std::os::unix::fs::symlink(&secret, p).unwrap()
    });
    let out = run_bounded(root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains(
            "reading /run/nixlive/medium_authorized_keys: is a symbolic link, refusing to follow it"
        ),
        "{stderr}"
    );
    assert_eq!(keys_of(root, "root"), format!("{KEY1}\n"));
}

#[test]
fn a_fifo_key_file_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "nixlive-postboot 1\n", |p| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap()
    });
    // Also a FIFO where root's authorized_keys would be: that user's
    // install fails, quickly; alice's goes on.
    fs::write(
        root.join("etc/nixlive/postboot.conf"),
        "nixlive-postboot 1\nssh-user alice\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("root/.ssh")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("root/.ssh/authorized_keys"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let out = run_bounded(root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains(
            "reading /run/nixlive/medium_authorized_keys: is not a regular file, refusing to read it"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("reading /root/.ssh/authorized_keys (for root): is not a regular file"),
        "{stderr}"
    );
    assert_eq!(keys_of(root, "home/alice"), format!("{KEY1}\n"));
}

#[test]
fn a_key_file_over_the_cap_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "nixlive-postboot 1\n", |p| {
        // Valid keys all the way, one byte over the cap.
        let mut text = format!("{KEY2}\n").repeat(MAX_KEY_FILE as usize / (KEY2.len() + 1) + 1);
        text.truncate(MAX_KEY_FILE as usize + 1);
        fs::write(p, text).unwrap();
    });
    let out = run_bounded(root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains(&format!(
            "reading /run/nixlive/medium_authorized_keys: is larger than {MAX_KEY_FILE} bytes, refusing to read it"
        )),
        "{stderr}"
    );
    assert_eq!(keys_of(root, "root"), format!("{KEY1}\n"));
}

/// The reproduction: keys on the medium that init did not hand
/// over are not postboot's to install (init decides what a boot may use
/// of a medium: a signed boot only what the manifest lists).
#[test]
fn keys_on_the_medium_itself_are_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("iso/nixlive")).unwrap();
    fs::write(
        root.join("iso/nixlive/authorized_keys"),
        format!("{KEY2}\n"),
    )
    .unwrap();
    let out = run_bounded(root);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("postboot: ssh: no keys given, nothing to do"),
        "{}",
        text(&out)
    );
    assert!(!root.join("root/.ssh/authorized_keys").exists());
}

/// The sources are named: the initrd's keys, and the medium's with what
/// init said of them.
#[test]
fn the_log_says_where_keys_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "nixlive-postboot 1\n", |p| {
        fs::write(
            p,
            format!("# nixlive-init: /iso/nixlive/authorized_keys of the medium /dev/sr0, listed in the manifest signed by the trusted key k-1 (size and sha256 match)\n{KEY2}\n"),
        )
        .unwrap()
    });
    let out = run_bounded(root);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "added 2 key(s) (root; from /run/nixlive/authorized_keys: 1 (packed in the initrd), \
             /run/nixlive/medium_authorized_keys: 1 (from /iso/nixlive/authorized_keys of the \
             medium /dev/sr0, listed in the manifest signed by the trusted key k-1 (size and \
             sha256 match)))"
        ),
        "{}",
        text(&out)
    );
}

/// Lines of root's authorized_keys that are not UTF-8 (a Latin-1 comment)
/// stay byte for byte when a key is added.
#[test]
fn authorized_keys_keep_lines_that_are_not_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, "nixlive-postboot 1\n", |_| {});
    fs::create_dir_all(root.join("root/.ssh")).unwrap();
    // Another user's comment in Latin-1 in /etc/passwd, too.
    let passwd = fs::read(root.join("etc/passwd")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        [
            &passwd[..],
            b"juergen:x:1001:100:J\xfcrgen:/home/juergen:/bin/sh\n",
        ]
        .concat(),
    )
    .unwrap();
    let before: &[u8] = b"# J\xfcrgen's laptop\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAZeQERM7stzSZSUBJkgfOF0J4SoQnkh1FKoLq9lh4jG caf\xe9";
    fs::write(root.join("root/.ssh/authorized_keys"), before).unwrap();
    let out = run_bounded(root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = fs::read(root.join("root/.ssh/authorized_keys")).unwrap();
    assert_eq!(after, [before, b"\n", KEY1.as_bytes(), b"\n"].concat());
}

//! The whole program on a temporary root, as the live system would run it
//! (no Nix needed): registration, /etc/NIXOS, profile from `init=`, keys
//! from the command line, the initrd and the medium, then a second run that
//! has nothing to do.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

const KEY1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI me@example";
const KEY2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAZeQERM7stzSZSUBJkgfOF0J4SoQnkh1FKoLq9lh4jG medium";
/// Valid base 64, but an ed25519 blob under an RSA name.
const MISMATCH: &str =
    "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAZeQERM7stzSZSUBJkgfOF0J4SoQnkh1FKoLq9lh4jG liar";

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn setup(root: &Path) -> String {
    let specs = small_closure();
    let reg = make_store(root, &specs);
    fs::write(root.join("nix/store/nix-path-registration"), reg.render()).unwrap();
    let system = specs[3].path.clone();
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(
        root.join("proc/cmdline"),
        format!("root=LABEL=X init={system}/init console=ttyS0 nixlive.ssh_key=\"{KEY1}\" nixlive.ssh_key=\"ssh-ed25519 bogus\"\n"),
    )
    .unwrap();
    fs::create_dir_all(root.join("run/nixlive")).unwrap();
    fs::write(
        root.join("run/nixlive/medium_authorized_keys"),
        format!("# medium keys\n{KEY2}\n{MISMATCH}\n{KEY1}\n"),
    )
    .unwrap();
    fs::write(
        root.join("run/nixlive/authorized_keys"),
        format!("{KEY2}\n"),
    )
    .unwrap();
    system
}

#[test]
fn full_run_then_nothing_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let system = setup(root);
    let r = root.to_str().unwrap();

    let out = postboot(&["--root", r]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    // Two keys rejected (named by source and line), the rest done: exit 3.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr.contains(
            "kernel command line, nixlive.ssh_key #2: ssh-ed25519 key data is not valid base64"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("/run/nixlive/medium_authorized_keys line 3: key data says \"ssh-ed25519\" but the line says \"ssh-rsa\""),
        "{stderr}"
    );
    assert!(stdout.contains("registration: loaded 4 paths"), "{stdout}");
    assert!(stdout.contains("marker: created /etc/NIXOS"), "{stdout}");
    assert!(
        stdout.contains(&format!("profile: /nix/var/nix/profiles/system -> /nix/var/nix/profiles/system-1-link -> {system} (generation 1, new, system from init= on the kernel command line)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("ssh: /root/.ssh/authorized_keys: added 2 key(s)"),
        "{stdout}"
    );

    assert_eq!(
        fs::read_link(root.join("nix/var/nix/profiles/system-1-link")).unwrap(),
        Path::new(&system)
    );
    let keys = root.join("root/.ssh/authorized_keys");
    assert_eq!(
        fs::read_to_string(&keys).unwrap(),
        format!("{KEY1}\n{KEY2}\n")
    );
    assert_eq!(mode(&keys), 0o600);
    assert_eq!(mode(&root.join("root/.ssh")), 0o700);
    assert_eq!(mode(&root.join("root")), 0o700);
    assert_eq!(mode(&root.join("etc/NIXOS")), 0o644);

    let out = postboot(&["--root", r]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(stdout.contains("already valid, nothing to do"), "{stdout}");
    assert!(
        stdout.contains("/etc/NIXOS already present, nothing to do"),
        "{stdout}"
    );
    assert!(
        stdout.contains("system-1-link already points to"),
        "{stdout}"
    );
    assert!(
        stdout.contains("all 2 key(s) present, nothing to do"),
        "{stdout}"
    );
    assert!(stdout.ends_with("postboot: nothing to do\n"), "{stdout}");
    assert_eq!(
        fs::read_to_string(&keys).unwrap(),
        format!("{KEY1}\n{KEY2}\n")
    );
}

#[test]
fn keys_go_to_configured_users_and_never_through_links() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root);
    let (uid, gid) = {
        let m = fs::metadata(root).unwrap();
        (m.uid(), m.gid())
    };
    fs::create_dir_all(root.join("etc/nixlive")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        format!("root:x:{uid}:{gid}::/root:/bin/sh\nalice:x:{uid}:{gid}::/home/alice:/bin/sh\nmallory:x:{uid}:{gid}::/home/mallory:/bin/sh\n"),
    )
    .unwrap();
    fs::write(root.join("etc/shadow"), "root::1::::::\nalice:!:1::::::\n").unwrap();
    fs::write(
        root.join("etc/nixlive/postboot.conf"),
        "nixlive-postboot 1\nssh-user alice\nssh-user mallory\n",
    )
    .unwrap();
    // mallory's .ssh is a link to somewhere else: refused, nothing written there.
    let elsewhere = root.join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::create_dir_all(root.join("home/mallory")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("home/mallory/.ssh")).unwrap();

    let out = postboot(&["--root", root.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains("opening /home/mallory/.ssh (for mallory)"),
        "{stderr}"
    );
    assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
    let alice = root.join("home/alice/.ssh/authorized_keys");
    assert_eq!(
        fs::read_to_string(&alice).unwrap(),
        format!("{KEY1}\n{KEY2}\n")
    );
    assert_eq!(mode(&alice), 0o600);
    // No hash configured: root's empty password is locked.
    assert_eq!(
        fs::read_to_string(root.join("etc/shadow")).unwrap(),
        "root:!:1::::::\nalice:!:1::::::\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = postboot(&["--loader", "fast"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = postboot(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn error_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("etc"), b"not a dir").unwrap();
    let out = postboot(&["--root", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&tmp.path().join("etc").display().to_string()),
        "{}",
        text(&out)
    );
}

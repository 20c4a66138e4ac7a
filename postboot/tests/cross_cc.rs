//! The C cross compiler of the i686 and aarch64 builds (SQLite and
//! mimalloc): `scripts/zig/`'s wrappers around Zig. Without the Zig that
//! `scripts/install-deps.sh` installs they say so and what to run; the
//! flags cc (the crate) gives that Zig does not take are dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/zig")
}

/// A copy of the wrappers in a tree of its own, naming Zig `version`.
fn copy(version: &str) -> tempfile::TempDir {
    let tree = tempfile::tempdir().unwrap();
    let dir = tree.path().join("scripts/zig");
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "zig.sh",
        "aarch64-linux-musl-cc",
        "i686-linux-musl-cc",
        "ar",
    ] {
        std::fs::copy(scripts().join(name), dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("VERSION"), format!("{version}\n")).unwrap();
    tree
}

#[test]
fn a_missing_zig_is_named_with_what_to_run() {
    let tree = copy("0.0.0-missing");
    for wrapper in ["aarch64-linux-musl-cc", "i686-linux-musl-cc", "ar"] {
        let out = Command::new(tree.path().join("scripts/zig").join(wrapper))
            .arg("--version")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{wrapper}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("zig 0.0.0-missing is missing")
                && err.contains("run scripts/install-deps.sh (make deps)"),
            "{wrapper}: {err}"
        );
    }
}

#[test]
fn an_unknown_mode_is_refused_and_flags_zig_lacks_are_dropped() {
    let version = std::fs::read_to_string(scripts().join("VERSION")).unwrap();
    let tree = copy(version.trim());
    // The Zig the wrappers look for, as a stand-in that prints its arguments.
    let zig = tree
        .path()
        .join(format!(".cache/ziglang-{}/ziglang", version.trim()));
    std::fs::create_dir_all(&zig).unwrap();
    std::fs::write(zig.join("zig"), "#!/bin/sh\necho \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(zig.join("zig"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let zig_sh = tree.path().join("scripts/zig/zig.sh");
    let out = Command::new(&zig_sh).arg("link").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mode link (cc or ar)"));
    // cc's --target=<rust triple> and gcc's -melf_i386 are dropped; the
    // wrapper's own target stands.
    let out = Command::new(tree.path().join("scripts/zig/i686-linux-musl-cc"))
        .args([
            "--target=i686-unknown-linux-musl",
            "-O3",
            "-Wl,-melf_i386",
            "-target",
            "x",
            "-c",
            "a.c",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cc -target x86-linux-musl -O3 -c a.c"
    );
}

//! Helpers the builder's host test binaries share.
// Each test binary uses part of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `cmd`; panics naming it when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {shown}: {e} (scripts/install-deps.sh installs the tools)")
    })
}

/// Runs `cmd`, which must succeed; returns its standard output.
pub fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The workspace root.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A Debian kernel unpacked under `.cache/kernels/NAME` by
/// scripts/install-deps.sh.
pub struct Kernel {
    pub vmlinuz: std::path::PathBuf,
    pub version: String,
    pub modules_dir: std::path::PathBuf,
}

/// The kernel `.cache/kernels/NAME` (amd64, amd64-bpo, arm64, i386); panics
/// saying how to get it.
pub fn kernel(name: &str) -> Kernel {
    let dir = workspace().join(".cache/kernels").join(name);
    let version = std::fs::read_to_string(dir.join("version"))
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/install-deps.sh (or scripts/fetch-kernel.sh {name})",
                dir.display()
            )
        })
        .trim()
        .to_string();
    Kernel {
        vmlinuz: dir.join("vmlinuz"),
        modules_dir: dir.join("lib/modules").join(&version),
        version,
    }
}

/// A static guest program built for `arch` (x86_64, aarch64, i686); panics
/// saying how to build it.
pub fn guest_program(arch: &str, name: &str) -> std::path::PathBuf {
    let p = workspace()
        .join("target")
        .join(format!("{arch}-unknown-linux-musl/release"))
        .join(name);
    assert!(p.is_file(), "{} is missing: run `make build`", p.display());
    p
}

/// `nixlive inspect PATH --verify`, which must find the medium bootable;
/// returns its report.
pub fn inspect_ok(nixlive: &str, path: &Path) -> String {
    ok(Command::new(nixlive)
        .arg("inspect")
        .arg("--verify")
        .arg(path))
}

/// `nixlive inspect PATH --verify`, which must refuse the medium; returns
/// standard output and error.
pub fn inspect_refuses(nixlive: &str, path: &Path) -> (String, String) {
    let out = run(Command::new(nixlive)
        .arg("inspect")
        .arg("--verify")
        .arg(path));
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "inspect {} did not refuse:\n{o}\n{e}",
        path.display()
    );
    (o, e)
}

/// The two-path store both builder test fixtures use: `lib` (a `libc.so`
/// and an executable `bin/sh`) and `sys`, whose executable `init` is a
/// script run by lib's `bin/sh` and which links `lib` to it.
pub fn system_and_lib(store: &Path, lib: &str, sys: &str) {
    use std::os::unix::fs::PermissionsExt;
    let exe = |p: &Path, data: &[u8]| {
        std::fs::write(p, data).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o555)).unwrap();
    };
    std::fs::create_dir_all(store.join(lib).join("bin")).unwrap();
    std::fs::write(store.join(lib).join("libc.so"), b"library").unwrap();
    exe(&store.join(lib).join("bin/sh"), b"#!shell");
    std::fs::create_dir_all(store.join(sys).join("bin")).unwrap();
    exe(
        &store.join(sys).join("init"),
        format!("#!/nix/store/{lib}/bin/sh\n").as_bytes(),
    );
    std::os::unix::fs::symlink(format!("/nix/store/{lib}"), store.join(sys).join("lib")).unwrap();
}

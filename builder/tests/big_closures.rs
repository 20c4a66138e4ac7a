//! Host tests of `--max-image-size` (issue 17) through the CLI: the
//! closure split into layers that each stay under the limit, the same
//! layers from a second build, and the refusals (a path over the limit,
//! more images than a manifest lists) before anything is written.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const NIXLIVE: &str = env!("CARGO_BIN_EXE_nixlive");
const KIB: u64 = 1024;

/// Debian's kernel, the built init, and a store of `sizes.len()` paths of
/// random data (the system's init script runs the first path's `bin/sh`
/// and names all of them).
fn fixture(dir: &Path, sizes: &[u64]) -> String {
    let store = dir.join("root/nix/store");
    let mut refs = String::new();
    let mut seed = 0x1234_5678_9abc_def1u64;
    for (i, size) in sizes.iter().enumerate() {
        let name = format!("{}{}-data-{i:03}", "d".repeat(29), hash3(i));
        fs::create_dir_all(store.join(&name)).unwrap();
        let data: Vec<u8> = (0..*size)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        fs::write(store.join(&name).join("blob"), data).unwrap();
        refs.push_str(&format!("/nix/store/{name}\n"));
    }
    let first = refs.lines().next().unwrap().to_string();
    let sh = dir.join(format!("root{first}/bin/sh"));
    fs::create_dir_all(sh.parent().unwrap()).unwrap();
    fs::write(&sh, b"#!shell").unwrap();
    fs::set_permissions(&sh, fs::Permissions::from_mode(0o555)).unwrap();
    let sys = format!("{}-system", "s".repeat(32));
    fs::create_dir_all(store.join(&sys)).unwrap();
    fs::write(
        store.join(&sys).join("init"),
        format!("#!{first}/bin/sh\n{refs}"),
    )
    .unwrap();
    fs::set_permissions(
        store.join(&sys).join("init"),
        fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    format!("/nix/store/{sys}")
}

/// Three nix32 characters for `i`.
fn hash3(i: usize) -> String {
    const D: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    [i / 1024 % 32, i / 32 % 32, i % 32]
        .iter()
        .map(|&k| D[k] as char)
        .collect()
}

fn medium(dir: &Path, sys: &str, out: &Path, limit: &str) -> Command {
    let k = common::kernel("amd64");
    let mut cmd = Command::new(NIXLIVE);
    cmd.arg("medium")
        .arg("--kernel")
        .arg(&k.vmlinuz)
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .args(["--module-set", "base", "--label", "SPLIT", "--no-uefi"])
        .arg("--init")
        .arg(common::guest_program("x86_64", "nixlive-init"))
        .arg("--store-root")
        .arg(dir.join("root"))
        .arg("--system")
        .arg(sys)
        .args(["--max-image-size", limit])
        .args(["--squashfs-backend", "native"])
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    cmd
}

fn manifest(out: &Path) -> nixlive_formats::Manifest {
    let text = fs::read_to_string(out.join("nixlive.manifest")).unwrap();
    nixlive_formats::Manifest::parse(&text).unwrap()
}

#[test]
fn the_closure_is_split_under_the_limit_the_same_way_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sys = fixture(d, &[700 * KIB, 700 * KIB, 900 * KIB, 300 * KIB, 600 * KIB]);
    let outs: Vec<PathBuf> = ["a", "b"].iter().map(|n| d.join(n)).collect();
    let mut said = String::new();
    for out in &outs {
        let o = medium(d, &sys, out, "3M").output().unwrap();
        said = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{said}");
    }
    let m = manifest(&outs[0]);
    assert!(m.images.len() >= 3, "{m:?}\n{said}");
    assert_eq!(m.images[0].name, "nix-store.squashfs");
    assert_eq!(m.images.last().unwrap().name, "nix-store-00.squashfs");
    for i in &m.images {
        assert!(i.size <= 3 << 20, "{} is {} bytes", i.name, i.size);
        assert!(said.contains(&format!("image {} (", i.name)), "{said}");
        let (a, b) = (outs[0].join(&i.name), outs[1].join(&i.name));
        assert!(
            fs::read(&a).unwrap() == fs::read(&b).unwrap(),
            "{} differs",
            i.name
        );
    }
    assert_eq!(manifest(&outs[1]), m);
}

#[test]
fn a_path_over_the_limit_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sys = fixture(d, &[100 * KIB, 1200 * KIB]);
    let out = d.join("out");
    let o = medium(d, &sys, &out, "3M").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("-data-001 is") && err.contains("--max-image-size 3145728"),
        "{err}"
    );
    assert!(!out.exists(), "{} was created", out.display());
    // The same closure under a limit that holds it builds.
    let o = medium(d, &sys, &out, "4M").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn more_images_than_a_manifest_lists_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // 2150 KiB leaves 102 KiB a layer: one 60 KiB path each (the system
    // joins the last), 70 layers.
    let sys = fixture(d, &[60 * KIB; 70]);
    let out = d.join("out");
    let o = medium(d, &sys, &out, "2150K").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("needs 70 images, more than the 64"), "{err}");
    assert!(!out.exists());
}

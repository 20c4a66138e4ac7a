//! Host tests of `nixlive tarball` and `nixlive disk-image`: the tarball
//! unpacks to the ISO's store (the same files, modes and links) plus the
//! registration and `/boot`, owned by root; two builds give the same bytes;
//! the initrd is set up for a plain root; the disk image has one labelled
//! ext4 partition holding the same tree. Uses the real tools (tar,
//! unsquashfs, sgdisk, mkfs.ext4, debugfs); fails when they are missing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{ok, run};

const NIXLIVE: &str = env!("CARGO_BIN_EXE_nixlive");
const EPOCH: &str = "1700000000";

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    sys: String,
    kernel: common::Kernel,
    init: PathBuf,
}

/// Debian's kernel and modules, the built static init (the builder checks
/// both before it writes anything), and a store of two paths (system ->
/// lib, whose `bin/sh` runs the system's init script), one name in it
/// longer than ustar's 100 bytes.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let store = dir.join("root/nix/store");
    let lib = format!("{}-lib", "l".repeat(32));
    let sys = format!("{}-system", "s".repeat(32));
    let deep = store
        .join(&lib)
        .join("share/a-rather-long-directory-name/and-another-one-below-it");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("file-with-a-long-name.txt"), b"deep").unwrap();
    common::system_and_lib(&store, &lib, &sys);
    Fixture {
        _tmp: tmp,
        dir,
        sys: format!("/nix/store/{sys}"),
        kernel: common::kernel("amd64"),
        init: common::guest_program("x86_64", "nixlive-init"),
    }
}

fn builder(f: &Fixture, sub: &str) -> Command {
    let mut cmd = Command::new(NIXLIVE);
    cmd.arg(sub)
        .arg("--kernel")
        .arg(&f.kernel.vmlinuz)
        .arg("--modules-dir")
        .arg(&f.kernel.modules_dir)
        .args(["--module", "ext4"])
        .arg("--init")
        .arg(&f.init)
        .arg("--store-root")
        .arg(f.dir.join("root"))
        .arg("--system")
        .arg(&f.sys)
        .env("SOURCE_DATE_EPOCH", EPOCH);
    cmd
}

fn tarball(f: &Fixture, out: &Path) {
    let mut cmd = builder(f, "tarball");
    ok(cmd.args(["--label", "SDROOT"]).arg("--out").arg(out));
}

/// Every entry under `root`: relative path -> (kind, mode, contents or target).
fn tree(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (char, u32, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.insert(rel, ('l', 0, t.to_str().unwrap().as_bytes().to_vec()));
            } else if m.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                walk(root, &p, out);
            } else {
                out.insert(rel, ('f', mode, fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn untar(tar: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    ok(Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(tar)
        .arg("-C")
        .arg(into));
}

#[test]
fn tarball_is_the_iso_store_plus_registration_and_boot() {
    let f = fixture();
    let tar = f.dir.join("out/system.tar");
    tarball(&f, &tar);
    let x = f.dir.join("x");
    untar(&tar, &x);

    // The ISO's store, from the same inputs.
    let medium = f.dir.join("medium");
    let mut cmd = builder(&f, "medium");
    // A live medium needs loop, squashfs and overlay as well (the builder checks).
    cmd.args(["--module-set", "base"]);
    ok(cmd.args(["--label", "SDROOT"]).arg("--out").arg(&medium));
    let sq = f.dir.join("sq");
    ok(Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(&sq)
        .arg(medium.join("nix-store.squashfs")));
    let mut iso_store = tree(&sq);
    let iso_reg = iso_store.remove("nix-path-registration").unwrap();
    let tar_store: BTreeMap<_, _> = tree(&x.join("nix/store"));
    assert_eq!(
        tar_store.keys().collect::<Vec<_>>(),
        iso_store.keys().collect::<Vec<_>>()
    );
    assert_eq!(tar_store, iso_store);
    assert_eq!(
        fs::read(x.join("nix-path-registration")).unwrap(),
        iso_reg.2
    );

    // The rest of the root.
    let cmdline = fs::read_to_string(x.join("boot/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(&format!("root=LABEL=SDROOT init={}/init ", f.sys)),
        "{cmdline}"
    );
    assert_eq!(
        fs::read(x.join("boot/kernel")).unwrap(),
        fs::read(&f.kernel.vmlinuz).unwrap()
    );
    assert_eq!(
        fs::read_link(x.join("init")).unwrap().to_str().unwrap(),
        format!("{}/init", f.sys)
    );
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "etc",
        "tmp",
        "nix/var/nix/profiles",
    ] {
        assert!(x.join(d).is_dir(), "{d}");
    }
    // The initrd records the plain root.
    let initrd = fs::read(x.join("boot/initrd")).unwrap();
    let cpio = zstd::stream::decode_all(&initrd[..]).unwrap();
    let conf = String::from_utf8_lossy(&cpio);
    assert!(
        conf.contains(&format!("kernel {}\n", f.kernel.version)),
        "{conf}"
    );
    assert!(conf.contains("/ext4.ko\n") && conf.contains("\nroot plain\n"));

    // Owned by root, every entry; the store's time is Nix's.
    let list = ok(Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(&tar));
    assert!(
        list.lines()
            .all(|l| l.split_whitespace().nth(1) == Some("0/0")),
        "{list}"
    );
    assert!(
        list.lines()
            .filter(|l| l.contains(" nix/store/"))
            .all(|l| l.contains("1970-01-01 00:00:01")),
        "{list}"
    );
    assert!(list.contains("2023-11-14 22:13:20 boot/cmdline"), "{list}");
}

#[test]
fn two_tarball_builds_are_byte_identical() {
    let f = fixture();
    for name in ["system.tar", "system.tar.zst", "system.tar.xz"] {
        let (a, b) = (f.dir.join("a").join(name), f.dir.join("b/c").join(name));
        tarball(&f, &a);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        tarball(&f, &b);
        assert!(
            fs::read(&a).unwrap() == fs::read(&b).unwrap(),
            "{name} differs"
        );
    }
    let out = run(builder(&f, "tarball")
        .arg("--out")
        .arg(f.dir.join("system.tgz")));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FILE.tar.zst"));
}

#[test]
fn disk_image_holds_the_tree_on_a_labelled_ext4_partition() {
    let f = fixture();
    let img = f.dir.join("sd.img");
    let mut cmd = builder(&f, "disk-image");
    ok(cmd
        .args(["--label", "SDROOT", "--fs", "ext4", "--size", "80M"])
        .arg("--out")
        .arg(&img));
    assert_eq!(fs::metadata(&img).unwrap().len(), 80 << 20);
    let table = ok(Command::new("sgdisk").arg("-p").arg(&img));
    assert!(
        table.contains("2048") && table.contains("SDROOT"),
        "{table}"
    );
    let at = format!("{}?offset=1048576", img.display());
    let sb = ok(Command::new("dumpe2fs").args(["-h", &at]));
    assert!(sb.contains("Filesystem volume name:   SDROOT"), "{sb}");
    assert!(!sb.contains("needs_recovery"), "{sb}");
    let reg = ok(Command::new("debugfs").args(["-R", "cat /nix-path-registration", &at]));
    assert!(
        reg.starts_with(&format!(
            "{}-lib",
            "/nix/store/".to_string() + &"l".repeat(32)
        )),
        "{reg}"
    );
    let init = ok(Command::new("debugfs").args(["-R", "stat /init", &at]));
    assert!(
        init.contains(&format!("Fast link dest: \"{}/init\"", f.sys)),
        "{init}"
    );
    let sys_init = ok(Command::new("debugfs").args(["-R", &format!("stat {}/init", f.sys), &at]));
    assert!(
        sys_init.contains("Mode:  0555") && sys_init.contains("User:     0"),
        "{sys_init}"
    );

    // MBR, the default size.
    let mbr = f.dir.join("mbr.img");
    let mut cmd = builder(&f, "disk-image");
    ok(cmd
        .args(["--partition-table", "mbr"])
        .arg("--out")
        .arg(&mbr));
    let head = fs::read(&mbr).unwrap();
    assert_eq!((head[450], &head[510..512]), (0x83, &[0x55, 0xaa][..]));
    let at = format!("{}?offset=1048576", mbr.display());
    let sb = ok(Command::new("dumpe2fs").args(["-h", &at]));
    assert!(sb.contains("Filesystem volume name:   NIXOS_SD"), "{sb}");

    // Too small a size is refused, naming what is needed.
    let mut cmd = builder(&f, "disk-image");
    let out = run(cmd
        .args(["--size", "8M"])
        .arg("--out")
        .arg(f.dir.join("small.img")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--size 8 MiB is too small"), "{err}");
}

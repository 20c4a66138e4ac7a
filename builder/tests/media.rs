//! Host tests of whole builds: reproducibility (two builds, in different
//! directories at different times, give the same bytes), the closureInfo
//! input, several images, and the netboot set. Uses the real tools
//! (mksquashfs, xorriso, grub-mkimage, mtools); fails when they are missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::ok;

const NIXLIVE: &str = env!("CARGO_BIN_EXE_nixlive");
const EPOCH: &str = "1700000000";

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    modules: PathBuf,
    sys: String,
    lib: String,
}

fn hash(c: char) -> String {
    c.to_string().repeat(32)
}

/// Debian's 6.1 kernel and its modules (scripts/install-deps.sh fetches
/// them), the built static init, and a store of two paths (system -> lib,
/// whose `bin/sh` runs the system's init script).
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let k = common::kernel("amd64");
    std::os::unix::fs::symlink(&k.vmlinuz, dir.join("vmlinuz")).unwrap();
    std::os::unix::fs::symlink(
        common::guest_program("x86_64", "nixlive-init"),
        dir.join("init"),
    )
    .unwrap();
    let store = dir.join("root/nix/store");
    let lib = format!("{}-lib", hash('l'));
    let sys = format!("{}-system", hash('s'));
    common::system_and_lib(&store, &lib, &sys);
    Fixture {
        _tmp: tmp,
        dir,
        modules: k.modules_dir,
        sys: format!("/nix/store/{sys}"),
        lib: format!("/nix/store/{lib}"),
    }
}

fn common(f: &Fixture, cmd: &mut Command) {
    cmd.arg("--kernel")
        .arg(f.dir.join("vmlinuz"))
        .arg("--modules-dir")
        .arg(&f.modules)
        .args(["--module", "squashfs", "--module-set", "base"])
        .arg("--init")
        .arg(f.dir.join("init"))
        .arg("--store-root")
        .arg(f.dir.join("root"))
        .arg("--system")
        .arg(&f.sys)
        .env("SOURCE_DATE_EPOCH", EPOCH);
}

fn build_iso(f: &Fixture, out: &Path, extra: &[&str]) -> PathBuf {
    let mut cmd = Command::new(NIXLIVE);
    cmd.arg("iso");
    common(f, &mut cmd);
    cmd.args(["--label", "REPRO"])
        .arg("--out")
        .arg(out.join("live.iso"))
        .arg("--medium-dir")
        .arg(out.join("medium"))
        .args(extra);
    ok(&mut cmd);
    out.join("medium")
}

fn same(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert!(
        x == y,
        "{} and {} differ ({} vs {} bytes)",
        a.display(),
        b.display(),
        x.len(),
        y.len()
    );
}

#[test]
fn two_builds_are_byte_identical() {
    let f = fixture();
    let (one, two) = (f.dir.join("one"), f.dir.join("elsewhere/two"));
    build_iso(&f, &one, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build_iso(&f, &two, &[]);
    // Every medium built here passes inspect.
    let report = common::inspect_ok(NIXLIVE, &one.join("live.iso"));
    assert!(report.contains("can boot      yes"), "{report}");
    assert!(report.contains("label REPRO"), "{report}");
    common::inspect_ok(NIXLIVE, &one.join("medium"));
    for p in [
        "live.iso",
        "medium/boot/initrd",
        "medium/nix-store.squashfs",
        "medium/boot/efi.img",
        "medium/EFI/BOOT/BOOTX64.EFI",
        "medium/nixlive.manifest",
    ] {
        same(&one.join(p), &two.join(p));
    }
    // The other initrd compressions, too.
    for c in ["gzip", "xz"] {
        let a = f.dir.join(format!("a.{c}"));
        let b = f.dir.join(format!("b.{c}"));
        for out in [&a, &b] {
            ok(Command::new(NIXLIVE)
                .arg("initrd")
                .arg("--modules-dir")
                .arg(&f.modules)
                .args(["--module", "loop", "--compression", c])
                .arg("--init")
                .arg(f.dir.join("init"))
                .arg("--out")
                .arg(out)
                .env("SOURCE_DATE_EPOCH", EPOCH));
        }
        same(&a, &b);
    }
    // The volume ID is the label, and the ISO boots both ways.
    let iso = fs::read(one.join("live.iso")).unwrap();
    assert_eq!(&iso[0x8028..0x8028 + 5], b"REPRO");
    assert_eq!(
        &iso[0x1fe..0x200],
        &[0x55, 0xaa],
        "no MBR: not USB-bootable"
    );
    let report = ok(Command::new("xorriso")
        .args(["-indev"])
        .arg(one.join("live.iso"))
        .args(["-report_el_torito", "plain"]));
    assert!(
        report.contains("BIOS") && report.contains("UEFI"),
        "{report}"
    );
    let grub = fs::read_to_string(one.join("medium/boot/grub/grub.cfg")).unwrap();
    let isolinux = fs::read_to_string(one.join("medium/isolinux/isolinux.cfg")).unwrap();
    let params = format!("root=LABEL=REPRO init={}/init", f.sys);
    assert!(grub.contains(&params) && isolinux.contains(&params));
}

#[test]
fn closure_info_input_and_two_images() {
    let f = fixture();
    // A closureInfo as nixpkgs writes it (sha256:<base 32>, empty deriver).
    let reg = ok(Command::new(NIXLIVE)
        .args(["registration", "--format", "closure-info", "--root"])
        .arg(f.dir.join("root"))
        .args([&f.lib, &f.sys]));
    let ci = f.dir.join("closure-info");
    fs::create_dir_all(&ci).unwrap();
    fs::write(ci.join("registration"), &reg).unwrap();
    fs::write(ci.join("store-paths"), format!("{}\n{}\n", f.lib, f.sys)).unwrap();
    assert!(reg.contains(&format!("{}\nsha256:", f.sys)));
    assert!(reg.contains(&format!("1\n{}\n", f.lib)), "{reg}");

    let out = f.dir.join("two");
    let mut cmd = Command::new(NIXLIVE);
    cmd.arg("medium");
    common(&f, &mut cmd);
    cmd.arg("--closure-info")
        .arg(&ci)
        .arg("--image")
        .arg(format!("base.squashfs={}", f.lib))
        .args(["--label", "TWO", "--no-uefi"])
        .arg("--out")
        .arg(&out)
        .arg("--hydra-dir")
        .arg(out.join("..").join("hydra"));
    let listed = ok(&mut cmd);
    assert!(listed.contains("squashfs\t"), "{listed}");
    let manifest = fs::read_to_string(out.join("nixlive.manifest")).unwrap();
    let images: Vec<&str> = manifest
        .lines()
        .filter(|l| l.starts_with("image "))
        .collect();
    assert_eq!(images.len(), 2, "{manifest}");
    assert!(images[0].starts_with("image nix-store.squashfs squashfs "));
    assert!(images[1].starts_with("image base.squashfs squashfs "));
    let list = |img: &str| {
        ok(Command::new("unsquashfs")
            .args(["-d", "", "-lc"])
            .arg(out.join(img)))
    };
    let top = list("nix-store.squashfs");
    let base = list("base.squashfs");
    let sys_base = f.sys.rsplit('/').next().unwrap();
    let lib_base = f.lib.rsplit('/').next().unwrap();
    assert!(
        top.contains(&format!("{sys_base}/init")) && !top.contains(lib_base),
        "{top}"
    );
    assert!(
        base.contains(&format!("{lib_base}/libc.so")) && !base.contains(sys_base),
        "{base}"
    );
    // The top image's registration is the whole closure's, as given.
    let got = ok(Command::new("unsquashfs")
        .args(["-cat"])
        .arg(out.join("nix-store.squashfs"))
        .arg("nix-path-registration"));
    assert_eq!(got, reg);
    assert!(!out.join("EFI").exists());
    let report = common::inspect_ok(NIXLIVE, &out);
    assert!(report.contains("image       base.squashfs"), "{report}");
    assert!(report.contains("2 paths, closed"), "{report}");
    let products =
        fs::read_to_string(f.dir.join("hydra/nix-support/hydra-build-products")).unwrap();
    assert!(products.contains("file initrd "), "{products}");
}

#[test]
fn netboot_set() {
    let f = fixture();
    let out = f.dir.join("netboot");
    for dir in [&out, &f.dir.join("netboot-again")] {
        let mut cmd = Command::new(NIXLIVE);
        cmd.arg("netboot");
        common(&f, &mut cmd);
        cmd.args(["--append", "quiet"]).arg("--out").arg(dir);
        ok(&mut cmd);
    }
    same(&out.join("initrd"), &f.dir.join("netboot-again/initrd"));
    let report = common::inspect_ok(NIXLIVE, &out);
    assert!(report.contains("+ stored"), "{report}");
    common::inspect_ok(NIXLIVE, &out.join("initrd"));
    let cmdline = fs::read_to_string(out.join("cmdline")).unwrap();
    assert_eq!(
        cmdline.trim(),
        format!(
            "init={}/init console=tty0 console=ttyS0,115200 quiet",
            f.sys
        )
    );
    let ipxe = fs::read_to_string(out.join("netboot.ipxe")).unwrap();
    assert!(ipxe.starts_with("#!ipxe\n"));
    assert!(ipxe.contains(&format!("kernel bzImage initrd=initrd {}", cmdline.trim())));
    assert!(!cmdline.contains("root="));
    same(&out.join("bzImage"), &f.dir.join("vmlinuz"));
    // The initrd: a zstd archive, then a plain one with the manifest and image.
    let initrd = fs::read(out.join("initrd")).unwrap();
    assert_eq!(&initrd[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    let plain = initrd
        .windows(6)
        .position(|w| w == b"070701")
        .expect("no uncompressed archive after the compressed one");
    assert_eq!(plain % 4, 0);
    let tail = &initrd[plain..];
    let names = ok(Command::new("sh")
        .arg("-c")
        .arg("cpio -it --quiet")
        .stdin(fs::File::open(write_tmp(&f.dir, tail)).unwrap()));
    assert_eq!(names, "nix-store.squashfs\nnixlive.manifest\n");
}

fn write_tmp(dir: &Path, data: &[u8]) -> PathBuf {
    let p = dir.join("tail.cpio");
    fs::write(&p, data).unwrap();
    p
}

#[test]
fn native_squashfs_matches_mksquashfs_contents_and_is_reproducible() {
    let f = fixture();
    let build = |backend: &str, out: &Path| {
        let mut cmd = Command::new(NIXLIVE);
        cmd.arg("medium");
        common(&f, &mut cmd);
        cmd.args([
            "--label",
            "NATIVE",
            "--no-uefi",
            "--squashfs-backend",
            backend,
        ])
        .arg("--out")
        .arg(out);
        ok(&mut cmd);
        out.join("nix-store.squashfs")
    };
    let a = build("native", &f.dir.join("n1"));
    let b = build("native", &f.dir.join("n2"));
    let m = build("mksquashfs", &f.dir.join("m"));
    same(&a, &b);
    common::inspect_ok(NIXLIVE, &f.dir.join("n1"));
    // Same tree, modes, owners, times and link targets (sizes of directory
    // entries depend on the writer's table layout, so they are left out).
    let listing = |img: &Path| {
        ok(Command::new("unsquashfs").args(["-d", "", "-lln"]).arg(img))
            .lines()
            .map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                if c.len() < 6 {
                    return l.to_string();
                }
                let size = if c[0].starts_with('d') { "-" } else { c[2] };
                format!(
                    "{} {} {} {} {}",
                    c[0],
                    c[1],
                    size,
                    c[3..5].join(" "),
                    c[5..].join(" ")
                )
            })
            .collect::<Vec<_>>()
    };
    // backhand cannot set the root directory's mtime (it stays 0).
    let (la, lm) = (listing(&a), listing(&m));
    assert!(la[0].ends_with("1970-01-01 00:00 ") && lm[0].ends_with("2023-11-14 22:13 "));
    assert_eq!(la[1..], lm[1..]);
    let cat = |img: &Path, p: &str| ok(Command::new("unsquashfs").arg("-cat").arg(img).arg(p));
    assert_eq!(
        cat(&a, "nix-path-registration"),
        cat(&m, "nix-path-registration")
    );
    let sys_base = f.sys.rsplit('/').next().unwrap();
    assert_eq!(
        cat(&a, &format!("{sys_base}/init")),
        cat(&m, &format!("{sys_base}/init"))
    );
}

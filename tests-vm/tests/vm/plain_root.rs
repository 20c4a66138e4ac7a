//! The system tarball's tree on a disk (issue 18): `nixlive disk-image`
//! of the demo system boots as a plain root (no tmpfs, no overlay) by its
//! label from a virtio disk (x86_64 and aarch64) and from a USB disk
//! (x86_64). The first boot registers `/nix-path-registration` and removes
//! it; a second boot of the same disk changes nothing, and what the first
//! wrote is still there. The bad inputs each end in stage 1's explanation:
//! no such root, a root that needs recovery, no stage-2 init, a read-only
//! disk booted read-write.
//!
//! On the host, the tarball of the same system, unpacked and registered by
//! postboot (native, and through the real `nix-store --load-db`), is a
//! store real Nix verifies (hermetic, nixlive-testkit).
//!
//! The kernel is booted directly with the initrd and the command line the
//! builder wrote (the command line read back from the image's
//! `/boot/cmdline`); the disk is checked between boots with debugfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{self, run_command};
use nixlive_tests_vm::media::{self, Booted};
use nixlive_tests_vm::{QemuCommand, Vm, kvm};

/// TCG; aarch64 is the slow one.
const TIMEOUT: Duration = Duration::from_secs(300);
const LABEL: &str = "NIXOS_SD";
/// The root partition's offset in the image (the builder's 1 MiB).
const OFFSET: u64 = 1 << 20;

struct Disk {
    dir: PathBuf,
    image: PathBuf,
    initrd: PathBuf,
    kernel: PathBuf,
    /// `/boot/cmdline`, read back from the image.
    cmdline: String,
    system: String,
    arch: Arch,
}

fn disk(arch: Arch) -> &'static Disk {
    static X86: OnceLock<Disk> = OnceLock::new();
    static ARM: OnceLock<Disk> = OnceLock::new();
    let cell = match arch {
        Arch::Aarch64 => &ARM,
        _ => &X86,
    };
    cell.get_or_init(|| build(arch).unwrap_or_else(|e| panic!("building the disk image: {e}")))
}

fn build(arch: Arch) -> Result<Disk, String> {
    let dir = media::work_dir(&format!("plain-root-{}", arch.uname()))?;
    let builder = artifacts::programs_builder();
    let store_root = dir.join("root");
    let mut cmd = Command::new(&builder);
    cmd.arg("demo-system")
        .arg("--init")
        .arg(arch.guest_program("nixlive-demo-init"))
        .arg("--postboot")
        .arg(arch.guest_program("nixlive-postboot"))
        .arg("--root")
        .arg(&store_root);
    let out = run_command(cmd)?;
    let system = out
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("/nix/store/"))
        .ok_or_else(|| format!("`nixlive demo-system` printed no store path:\n{out}"))?
        .to_string();
    let k = artifacts::kernel(arch.debian());
    let image = dir.join("sd.img");
    let initrd = dir.join("initrd");
    let mut cmd = Command::new(&builder);
    cmd.arg("disk-image")
        .arg("--kernel")
        .arg(&k.vmlinuz)
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .args(["--module-set", "virtio,usb", "--module", "ext4"])
        .arg("--init")
        .arg(arch.guest_program("nixlive-init"))
        .arg("--store-root")
        .arg(&store_root)
        .arg("--system")
        .arg(&system)
        .args(["--label", LABEL, "--fs", "ext4", "--size", "256M"])
        .arg("--out")
        .arg(&image)
        .arg("--initrd-out")
        .arg(&initrd);
    if arch == Arch::Aarch64 {
        cmd.arg("--append")
            .arg(format!("console={}", arch.console()));
    }
    run_command(cmd)?;
    let cmdline = debugfs(&image, "cat /boot/cmdline")?.trim().to_string();
    Ok(Disk {
        dir,
        image,
        initrd,
        kernel: k.vmlinuz,
        cmdline,
        system,
        arch,
    })
}

/// A debugfs request on the image's root partition.
fn debugfs(image: &Path, request: &str) -> Result<String, String> {
    let mut cmd = Command::new("debugfs");
    cmd.arg("-R")
        .arg(request)
        .arg(format!("{}?offset={OFFSET}", image.display()));
    run_command(cmd)
}

/// A writable copy of the disk for one test.
fn copy(d: &Disk, name: &str) -> PathBuf {
    let p = d.dir.join(name);
    std::fs::copy(&d.image, &p).unwrap_or_else(|e| panic!("copying the image: {e}"));
    p
}

/// How the disk is attached.
#[derive(Clone, Copy)]
enum Bus {
    Virtio,
    Usb,
}

/// The kernel and initrd booted directly, `image` on `bus`, the image's
/// command line plus `extra`.
fn vm(d: &Disk, image: &Path, bus: Bus, readonly: bool, extra: &str) -> QemuCommand {
    let ro = if readonly { ",readonly=on" } else { "" };
    let mut drive = std::ffi::OsString::from(format!("if=none,id=root,format=raw{ro},file="));
    drive.push(image);
    let cmd = d
        .arch
        .qemu(kvm::accel())
        .arg("-kernel")
        .arg(&d.kernel)
        .arg("-initrd")
        .arg(&d.initrd)
        .arg("-append")
        .arg(format!("{} {extra}", d.cmdline))
        .arg("-drive")
        .arg(drive);
    match bus {
        Bus::Virtio => cmd.arg("-device").arg("virtio-blk-pci,drive=root"),
        Bus::Usb => cmd
            .arg("-device")
            .arg("usb-ehci,id=ehci")
            .arg("-device")
            .arg("usb-storage,bus=ehci.0,drive=root"),
    }
}

fn out(b: &Booted) -> String {
    b.report.postboot_out.join("\n")
}

/// `/` is the disk's ext4, read-write; no tmpfs root, no overlay store.
fn assert_plain_root(b: &Booted, device: &str) {
    let ctx = b.context();
    let root = b
        .report
        .mount("/")
        .unwrap_or_else(|| panic!("no / in the mount table\n{ctx}"));
    assert_eq!(
        (root.fstype.as_str(), root.source.as_str()),
        ("ext4", device),
        "{ctx}"
    );
    assert!(root.option("rw").is_some(), "{root:?}\n{ctx}");
    assert!(
        b.report
            .mounts
            .iter()
            .all(|m| m.fstype != "overlay" && m.fstype != "squashfs"),
        "{:?}\n{ctx}",
        b.report.mounts
    );
    assert!(
        b.init_said("plain root: root= names the root filesystem itself"),
        "{ctx}"
    );
    let phases: Vec<String> = b.report.stage1_phases().into_iter().map(|p| p.0).collect();
    assert!(
        phases.iter().any(|p| p == "find-root") && phases.iter().any(|p| p == "mount-root"),
        "{phases:?}\n{ctx}"
    );
}

/// The change and modification times debugfs shows for a path (not the
/// access time: reading a link may update it).
fn times(image: &Path, path: &str) -> String {
    let stat = debugfs(image, &format!("stat {path}")).unwrap();
    stat.lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("ctime:") || l.starts_with("mtime:")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// First boot registers and removes the registration; the second finds
/// everything in place and changes nothing.
fn first_and_second_boot(arch: Arch, bus: Bus, name: &str, device: &str) {
    let d = disk(arch);
    let image = copy(d, name);
    assert!(
        debugfs(&image, "stat /nix-path-registration")
            .unwrap()
            .contains("Type: regular")
    );

    let first =
        media::boot(&vm(d, &image, bus, false, ""), TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let ctx = first.context();
    eprintln!("first boot, postboot:\n{}", out(&first));
    assert_plain_root(&first, device);
    let o = out(&first);
    // The native loader, on each architecture (SQLite is built for all).
    assert!(
        o.contains("postboot: registration: loaded ")
            && o.contains("from /nix-path-registration with the native loader"),
        "{o}\n{ctx}"
    );
    assert!(
        o.contains("postboot: registration: removed /nix-path-registration"),
        "{o}\n{ctx}"
    );
    let db = first
        .report
        .files
        .get("/nix/var/nix/db/db.sqlite")
        .cloned()
        .flatten();
    assert!(db.is_some_and(|f| f.kind == "regular"), "{ctx}");
    assert!(
        o.contains("(generation 1, new, system from init= on the kernel command line)")
            && o.contains(&d.system),
        "{o}\n{ctx}"
    );
    assert_eq!(first.report.postboot_exit, 0, "{ctx}");
    // On the disk: clean (the demo remounted / read-only before powering
    // off), the registration gone, the marker and profile there.
    let sb = {
        let mut cmd = Command::new("dumpe2fs");
        cmd.arg("-h")
            .arg(format!("{}?offset={OFFSET}", image.display()));
        run_command(cmd).unwrap()
    };
    assert!(!sb.contains("needs_recovery"), "{sb}");
    let reg = debugfs(&image, "stat /nix-path-registration").unwrap_or_else(|e| e);
    assert!(!reg.contains("Type: regular"), "{reg}");
    // The database and its `schema` file too (the demo leaves no WAL: its
    // connection is closed, and the build wrote the file whole).
    let written = [
        "/etc/NIXOS",
        "/nix/var/nix/profiles/system-1-link",
        "/nix/var/nix/db/db.sqlite",
        "/nix/var/nix/db/schema",
    ];
    let before: Vec<String> = written.iter().map(|p| times(&image, p)).collect();
    for (p, t) in written.iter().zip(&before) {
        assert!(
            t.contains("mtime"),
            "{p} was not written in the first boot: {t}"
        );
    }

    let second =
        media::boot(&vm(d, &image, bus, false, ""), TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let ctx = second.context();
    eprintln!("second boot, postboot:\n{}", out(&second));
    assert_plain_root(&second, device);
    let o = out(&second);
    assert!(o.contains("postboot: nothing to do"), "{o}\n{ctx}");
    assert!(
        o.contains("/etc/NIXOS already present")
            && o.contains("nix/var/nix/profiles/system-1-link already points to"),
        "{o}\n{ctx}"
    );
    assert!(
        o.contains(
            "registration: no /nix-path-registration nor /nix/store/nix-path-registration, skipping"
        ),
        "{o}\n{ctx}"
    );
    // What the first boot wrote is still there, untouched.
    let after: Vec<String> = written.iter().map(|p| times(&image, p)).collect();
    assert_eq!(before, after, "changed by the second boot");
    let _ = std::fs::remove_file(&image);
}

#[test]
fn x86_64_virtio_disk_first_and_second_boot() {
    first_and_second_boot(Arch::X86_64, Bus::Virtio, "virtio.img", "/dev/vda1");
}

#[test]
fn x86_64_usb_disk_first_and_second_boot() {
    first_and_second_boot(Arch::X86_64, Bus::Usb, "usb.img", "/dev/sda1");
}

#[test]
fn aarch64_virtio_disk_first_and_second_boot() {
    first_and_second_boot(Arch::Aarch64, Bus::Virtio, "virtio.img", "/dev/vda1");
}

/// Boots into stage 1's failure and returns its message.
fn failure(image: &Path, readonly: bool, extra: &str) -> String {
    let d = disk(Arch::X86_64);
    let vm = Vm::spawn(&vm(d, image, Bus::Virtio, readonly, extra), TIMEOUT).unwrap();
    vm.wait_for_stage1_failure(TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"))
}

fn must_say(console: &str, wants: &[&str]) {
    for w in wants {
        assert!(
            console.contains(w),
            "the failure message lacks {w:?}:\n{console}"
        );
    }
}

#[test]
fn no_such_root_lists_the_devices_seen() {
    let d = disk(Arch::X86_64);
    let console = failure(&d.image, true, "root=LABEL=NO_SUCH_ROOT nixlive.timeout=5");
    must_say(
        &console,
        &[
            "waiting for the boot medium LABEL=NO_SUCH_ROOT (the root filesystem: nixlive.root=plain)",
            "block devices seen:",
            &format!("ext4 label={LABEL}"),
            "/dev/vda1",
        ],
    );
}

#[test]
fn a_root_needing_recovery_is_refused() {
    let d = disk(Arch::X86_64);
    let image = copy(d, "dirty.img");
    let mut cmd = Command::new("debugfs");
    cmd.args(["-w", "-R", "feature needs_recovery"])
        .arg(format!("{}?offset={OFFSET}", image.display()));
    run_command(cmd).unwrap();
    let console = failure(&image, false, "");
    must_say(
        &console,
        &[
            &format!("the root filesystem /dev/vda1 (ext4 label={LABEL}) cannot be booted"),
            "needs_recovery",
            "fsck /dev/vda1",
        ],
    );
    // Refused before mounting: the flag is still set, nothing was replayed.
    let mut cmd = Command::new("dumpe2fs");
    cmd.arg("-h")
        .arg(format!("{}?offset={OFFSET}", image.display()));
    assert!(run_command(cmd).unwrap().contains("needs_recovery"));
    let _ = std::fs::remove_file(&image);
}

#[test]
fn a_root_without_the_stage2_init_is_explained() {
    let d = disk(Arch::X86_64);
    let image = copy(d, "noinit.img");
    let console = failure(
        &image,
        false,
        "init=/nix/store/00000000000000000000000000000000-gone/init",
    );
    must_say(
        &console,
        &[
            "stage-2 init /nix/store/00000000000000000000000000000000-gone/init does not exist on the root filesystem /dev/vda1 (ext4 label=NIXOS_SD)",
            "/boot/cmdline",
        ],
    );
    let _ = std::fs::remove_file(&image);
}

#[test]
fn a_read_only_disk_booted_read_write_is_explained() {
    let d = disk(Arch::X86_64);
    let console = failure(&d.image, true, "");
    must_say(
        &console,
        &[
            "mount -t ext4 /dev/vda1 /mnt-root",
            "add `ro` to the kernel command line",
        ],
    );
}

/// `nixlive tarball` of the x86_64 demo, unpacked twice: postboot's native
/// loader registers one, the real `nix-store --load-db` (through postboot's
/// `nix-store` loader) the other; each time the registration goes, and
/// `nix-store --verify --check-contents` passes with every path valid.
#[test]
fn tarball_unpacked_and_registered_is_a_store_real_nix_accepts() {
    use nixlive_testkit::nix::{Nix, program};
    let d = disk(Arch::X86_64);
    let tar = d.dir.join("system.tar.zst");
    // The demo's store, and two paths of our own: an app referring to a lib.
    let store_root = d.dir.join("tarball-root");
    let _ = std::fs::remove_dir_all(&store_root);
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(d.dir.join("root")).arg(&store_root);
    run_command(cmd).unwrap();
    let store = store_root.join("nix/store");
    let lib = "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-tarball-lib";
    let app = "/nix/store/1d7l0qi8m1fdcgnkbq75g1d0fbgp4c8y-tarball-app";
    let lib_dir = store.join(&lib[11..]);
    std::fs::create_dir_all(lib_dir.join("lib")).unwrap();
    std::fs::write(lib_dir.join("lib/libdemo.so"), b"a library").unwrap();
    std::fs::create_dir_all(store.join(&app[11..]).join("bin")).unwrap();
    std::fs::write(
        store.join(&app[11..]).join("bin/app"),
        format!("#!/bin/sh\nexec {lib}/lib/libdemo.so\n"),
    )
    .unwrap();
    let k = artifacts::kernel(Arch::X86_64.debian());
    let mut cmd = Command::new(artifacts::programs_builder());
    cmd.arg("tarball")
        .arg("--kernel")
        .arg(&k.vmlinuz)
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .args(["--module-set", "virtio", "--module", "ext4"])
        .arg("--init")
        .arg(Arch::X86_64.guest_program("nixlive-init"))
        .arg("--store-root")
        .arg(&store_root)
        .arg("--system")
        .arg(&d.system)
        .args(["--store-path", app, "--store-path", lib])
        .args(["--label", LABEL])
        .arg("--out")
        .arg(&tar);
    run_command(cmd).unwrap();
    let paths = std::fs::read_dir(&store).unwrap().count();
    assert_eq!(paths, 3);
    for loader in ["native", "nix-store"] {
        let root = d.dir.join(format!("unpacked-{loader}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mut cmd = Command::new("tar");
        cmd.args(["--zstd", "--numeric-owner", "-xpf"])
            .arg(&tar)
            .arg("-C")
            .arg(&root);
        run_command(cmd).unwrap();
        assert!(root.join("nix-path-registration").is_file());
        let nix = Nix::new(&d.dir.join(format!("nix-{loader}")));
        let mut cmd = Command::new(Arch::X86_64.guest_program("nixlive-postboot"));
        nix.configure(&mut cmd)
            .arg("--root")
            .arg(&root)
            .args(["--loader", loader])
            .arg("--nix-store")
            .arg(program("nix-store"));
        let out = run_command(cmd).unwrap_or_else(|e| panic!("postboot ({loader}): {e}"));
        assert!(
            out.contains(&format!(
                "registration: loaded {paths} paths ({paths} new or changed) from /nix-path-registration with the {loader} loader"
            )) && out.contains("registration: removed /nix-path-registration"),
            "{out}"
        );
        assert!(!root.join("nix-path-registration").exists());
        let verify = nix
            .on_store("nix-store", &root)
            .args(["--verify", "--check-contents"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && !err.contains("error") && !err.contains("modified"),
            "nix-store --verify --check-contents ({loader}): {verify:?}"
        );
        // Every path valid, the app's reference to the lib registered.
        let q = nix
            .on_store("nix-store", &root)
            .args(["--query", "--requisites", app, &d.system])
            .output()
            .unwrap();
        assert!(q.status.success(), "{q:?}");
        let mut got: Vec<String> = String::from_utf8_lossy(&q.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        got.sort();
        let mut want = vec![lib.to_string(), app.to_string(), d.system.clone()];
        want.sort();
        assert_eq!(got, want, "{q:?}");
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// `nixlive.grow_root` on a disk larger than the image (a 256 MiB image
/// on a 512 MiB disk): the first boot grows the root partition to the
/// disk's end and its ext4 with it, online; the table is one sgdisk finds
/// no problem with; the second boot has nothing to grow.
#[test]
fn x86_64_grow_root_fills_the_disk_once() {
    let d = disk(Arch::X86_64);
    let image = copy(d, "grow.img");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let first = media::boot(
        &vm(d, &image, Bus::Virtio, false, "nixlive.grow_root"),
        TIMEOUT,
    )
    .unwrap_or_else(|f| panic!("{f}"));
    let ctx = first.context();
    let o = out(&first);
    eprintln!("first boot, postboot:\n{o}");
    assert_plain_root(&first, "/dev/vda1");
    assert!(
        o.contains(
            "postboot: grow: /dev/vda1 grown from 254 to 510 MiB (GPT), its ext4 to 510 MiB"
        ),
        "{o}\n{ctx}"
    );
    assert_eq!(first.report.postboot_exit, 0, "{ctx}");
    let mut cmd = Command::new("sgdisk");
    cmd.arg("-v").arg(&image);
    let v = run_command(cmd).unwrap();
    assert!(v.contains("No problems found"), "{v}");
    let mut cmd = Command::new("dumpe2fs");
    cmd.arg("-h")
        .arg(format!("{}?offset={OFFSET}", image.display()));
    let sb = run_command(cmd).unwrap();
    let field = |name: &str| -> u64 {
        sb.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{sb}"))
    };
    let (blocks, size) = (field("Block count:"), field("Block size:"));
    assert_eq!(size, 4096, "the builder asks for 4 KiB blocks");
    assert_eq!((blocks * size) >> 20, 510, "{sb}");

    let second = media::boot(
        &vm(d, &image, Bus::Virtio, false, "nixlive.grow_root"),
        TIMEOUT,
    )
    .unwrap_or_else(|f| panic!("{f}"));
    let o = out(&second);
    assert!(
        o.contains("grow: /dev/vda1 and its filesystem fill the disk already, nothing to do")
            && o.contains("postboot: nothing to do"),
        "{o}\n{}",
        second.context()
    );
    let _ = std::fs::remove_file(&image);
}

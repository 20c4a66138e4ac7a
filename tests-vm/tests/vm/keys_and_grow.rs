//! Issue 25, items 1 and 6.
//!
//! A signed boot uses nothing unsigned from its medium: a stick with the
//! medium's label, carrying copies of the signed files of the real medium
//! plus SSH keys of its own, is authentic, but its keys are ignored (named
//! in init's log, none installed for root) and the boot goes on to stage
//! 2. Keys the builder put on a signed medium (`--medium-authorized-keys`)
//! are listed in the manifest, checked, and installed; the same medium
//! with its keys file replaced boots without them.
//!
//! grow_root survives power loss: the disk image of the demo system on a
//! larger disk, `nixlive.grow_root` with `nixlive.test_grow_stop=STEP`
//! (postboot stops once that step of the table rewrite is on the disk and
//! says so on the console), the power cut there (QMP `quit`); the next
//! boot finds the partition and every file, and finishes growing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{self, run_command};
use nixlive_tests_vm::media::{self, Booted, Live};
use nixlive_tests_vm::qmp::Qmp;
use nixlive_tests_vm::{QemuCommand, Vm, kvm};

const TIMEOUT: Duration = Duration::from_secs(240);
const LABEL: &str = "NIXLIVE_KEYS";
const KEY: &str = "nixlive-keys-test-1";
/// The key the builder puts on the signed medium.
const MEDIUM_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI builder";
/// The key a stick brings along.
const STICK_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAZeQERM7stzSZSUBJkgfOF0J4SoQnkh1FKoLq9lh4jG intruder";
const MODULES: &[&str] = &[
    "isofs",
    "virtio_pci",
    "virtio_blk",
    "ext4",
    "crc32c_generic",
    "loop",
    "squashfs",
    "overlay",
];

struct Signed {
    dir: PathBuf,
    live: Live,
    /// The builder's arguments for another medium of the same system,
    /// signed with the same key (`nixlive medium`).
    medium_args: Vec<String>,
}

/// A signed medium (its manifest lists no keys file), and its initrd that
/// trusts the key.
fn signed() -> &'static Signed {
    static F: OnceLock<Signed> = OnceLock::new();
    F.get_or_init(|| build_signed().unwrap_or_else(|e| panic!("building the medium: {e}")))
}

fn build_signed() -> Result<Signed, String> {
    let dir = media::work_dir("keys-and-grow")?;
    let signing = super::authenticity::signing_args(&dir, KEY)?;
    let mut spec = artifacts::DemoSpec::new(Arch::X86_64, LABEL);
    spec.modules = MODULES.iter().map(|m| m.to_string()).collect();
    spec.builder_args = signing.clone();
    let live = media::build_live_spec(&dir.join("live"), &spec, &|_| Ok(()))?;
    let k = artifacts::kernel(Arch::X86_64.debian());
    let mut medium_args = vec![
        "medium".to_string(),
        "--kernel".into(),
        k.vmlinuz.display().to_string(),
        "--modules-dir".into(),
        k.modules_dir.display().to_string(),
        "--init".into(),
        Arch::X86_64
            .guest_program("nixlive-init")
            .display()
            .to_string(),
        "--store-root".into(),
        dir.join("live/root").display().to_string(),
        "--system".into(),
        live.system.clone(),
        "--label".into(),
        LABEL.into(),
        "--no-uefi".into(),
    ];
    for m in MODULES {
        medium_args.extend(["--module".to_string(), m.to_string()]);
    }
    medium_args.extend(signing);
    Ok(Signed {
        dir,
        live,
        medium_args,
    })
}

/// The same system on a signed medium whose keys the builder put there
/// (`--medium-authorized-keys`): the tree.
fn signed_with_keys() -> &'static PathBuf {
    static F: OnceLock<PathBuf> = OnceLock::new();
    F.get_or_init(|| {
        let s = signed();
        let keys = s.dir.join("medium-keys");
        let out = s.dir.join("signed/medium");
        let made = std::fs::write(&keys, format!("# on the medium\n{MEDIUM_KEY}\n"))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                let mut cmd = Command::new(artifacts::programs_builder());
                cmd.args(&s.medium_args)
                    .arg("--medium-authorized-keys")
                    .arg(&keys)
                    .arg("--out")
                    .arg(&out);
                run_command(cmd)
            });
        made.unwrap_or_else(|e| panic!("building the medium with keys: {e}"));
        out
    })
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let mut c = Command::new("cp");
    c.arg("-a").arg(from).arg(to);
    media::run(c).unwrap_or_else(|e| panic!("{e}"));
}

/// An ext4 disk labelled LABEL holding `tree` with `keys` as its
/// `nixlive/authorized_keys` (none: as it is).
fn stick(tree: &Path, name: &str, keys: Option<&str>, n: u8) -> PathBuf {
    let s = signed();
    let t = s.dir.join(name);
    copy_tree(tree, &t);
    if let Some(k) = keys {
        std::fs::create_dir_all(t.join("nixlive")).unwrap();
        std::fs::write(t.join("nixlive/authorized_keys"), format!("{k}\n")).unwrap();
    }
    let img = s.dir.join(format!("{name}.ext4"));
    let uuid = format!("7a7e0000-0000-4000-8000-0000000025{n:02}");
    media::ext4_image(&t, &img, LABEL, &uuid).unwrap_or_else(|e| panic!("{e}"));
    img
}

fn boot(disk: &Path) -> Booted {
    let cmd = QemuCommand::x86_64_direct(
        &signed().live,
        &format!("root=LABEL={LABEL}"),
        512,
        kvm::accel(),
    )
    .virtio_disk(disk);
    media::boot(&cmd, TIMEOUT).unwrap_or_else(|f| panic!("{f}"))
}

fn root_keys(b: &Booted) -> Option<nixlive_formats::report::FileInfo> {
    b.report
        .files
        .get("/root/.ssh/authorized_keys")
        .cloned()
        .flatten()
}

/// The attack: copies of the public signed files plus keys of its
/// own. The stick is authentic and boots; its keys are not installed.
#[test]
fn a_same_label_stick_with_its_own_keys_gets_none_installed() {
    let s = signed();
    let disk = stick(&s.live.medium, "stick", Some(STICK_KEY), 1);
    let b = boot(&disk);
    let ctx = b.context();
    nixlive_tests_vm::checks::live_system(&b.report, "x86_64")
        .unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    assert!(
        b.init_said(&format!("signed by the trusted key {KEY}")),
        "the stick was not authenticated\n{ctx}"
    );
    assert!(
        b.init_said(&format!(
            "the SSH keys /iso/nixlive/authorized_keys of the medium /dev/vda are ignored: the \
             manifest signed by the trusted key {KEY} does not list nixlive/authorized_keys"
        )),
        "init did not say it ignored the stick's keys\n{ctx}"
    );
    assert_eq!(root_keys(&b), None, "a key was installed for root\n{ctx}");
    let out = b.report.postboot_out.join("\n");
    assert!(
        out.contains("postboot: ssh: no keys given, nothing to do"),
        "{out}\n{ctx}"
    );
}

/// Keys the builder put on a signed medium are listed, checked and
/// installed; the same medium with another keys file boots without them.
#[test]
fn keys_the_builder_put_on_a_signed_medium_are_checked() {
    let tree = signed_with_keys();
    let manifest = std::fs::read_to_string(tree.join("nixlive.manifest")).unwrap();
    assert!(
        manifest.starts_with("nixlive-manifest 3\n")
            && manifest.contains("\nfile nixlive/authorized_keys "),
        "{manifest}"
    );
    let disk = stick(tree, "listed", None, 2);
    let b = boot(&disk);
    let ctx = b.context();
    let origin = format!(
        "/iso/nixlive/authorized_keys of the medium /dev/vda, listed in the manifest signed by \
         the trusted key {KEY} (size and sha256 match)"
    );
    assert!(b.init_said(&format!("SSH keys from {origin}")), "{ctx}");
    assert!(
        b.init_said(
            "SSH keys from /iso/nixlive/authorized_keys handed over in \
             /run/nixlive/medium_authorized_keys"
        ),
        "{ctx}"
    );
    let out = b.report.postboot_out.join("\n");
    assert!(
        out.contains(&format!(
            "/root/.ssh/authorized_keys: added 1 key(s) (root; from \
             /run/nixlive/medium_authorized_keys: 1 (from {origin}))"
        )),
        "{out}\n{ctx}"
    );
    let k = root_keys(&b).unwrap_or_else(|| panic!("no key installed\n{ctx}"));
    assert_eq!(
        (k.kind.as_str(), k.mode, k.uid),
        ("regular", 0o600, 0),
        "{ctx}"
    );

    // The keys file replaced on a copy: the signature still holds, the
    // keys do not.
    let disk = stick(tree, "replaced", Some(STICK_KEY), 3);
    let b = boot(&disk);
    let ctx = b.context();
    assert!(
        b.init_said(
            "the SSH keys /iso/nixlive/authorized_keys of the medium /dev/vda are ignored: \
             they are "
        ) && b.init_said(&format!(
            "the manifest signed by the trusted key {KEY} lists"
        )),
        "{ctx}"
    );
    assert_eq!(root_keys(&b), None, "a key was installed for root\n{ctx}");
}

// ---- grow_root and power loss ----

const DISK_LABEL: &str = "NIXOS_GROW";
/// The root partition's offset in the image (the builder's 1 MiB).
const OFFSET: u64 = 1 << 20;

struct Image {
    dir: PathBuf,
    image: PathBuf,
    initrd: PathBuf,
    kernel: PathBuf,
    cmdline: String,
}

fn image() -> &'static Image {
    static F: OnceLock<Image> = OnceLock::new();
    F.get_or_init(|| build_image().unwrap_or_else(|e| panic!("building the disk image: {e}")))
}

fn build_image() -> Result<Image, String> {
    let arch = Arch::X86_64;
    let dir = media::work_dir("keys-and-grow-disk")?;
    let builder = artifacts::programs_builder();
    let store_root = dir.join("root");
    let _ = std::fs::remove_dir_all(&store_root);
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
    let (image, initrd) = (dir.join("disk.img"), dir.join("initrd"));
    let mut cmd = Command::new(&builder);
    cmd.arg("disk-image")
        .arg("--kernel")
        .arg(&k.vmlinuz)
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .args(["--module-set", "virtio", "--module", "ext4"])
        .arg("--init")
        .arg(arch.guest_program("nixlive-init"))
        .arg("--store-root")
        .arg(&store_root)
        .arg("--system")
        .arg(&system)
        .args(["--label", DISK_LABEL, "--fs", "ext4", "--size", "256M"])
        .arg("--out")
        .arg(&image)
        .arg("--initrd-out")
        .arg(&initrd);
    run_command(cmd)?;
    let cmdline = debugfs(&image, "cat /boot/cmdline")?.trim().to_string();
    // A file of our own, to find again byte for byte after the cuts.
    let canary = dir.join("canary");
    std::fs::write(&canary, canary_bytes()).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("debugfs");
    cmd.arg("-w")
        .arg("-R")
        .arg(format!("write {} /canary", canary.display()))
        .arg(format!("{}?offset={OFFSET}", image.display()));
    run_command(cmd)?;
    Ok(Image {
        dir,
        image,
        initrd,
        kernel: k.vmlinuz,
        cmdline,
    })
}

fn canary_bytes() -> Vec<u8> {
    (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn debugfs(image: &Path, request: &str) -> Result<String, String> {
    let mut cmd = Command::new("debugfs");
    cmd.arg("-R")
        .arg(request)
        .arg(format!("{}?offset={OFFSET}", image.display()));
    run_command(cmd)
}

fn vm(img: &Image, disk: &Path, extra: &str) -> QemuCommand {
    let mut drive = std::ffi::OsString::from("if=none,id=root,format=raw,file=");
    drive.push(disk);
    Arch::X86_64
        .qemu(kvm::accel())
        .arg("-kernel")
        .arg(&img.kernel)
        .arg("-initrd")
        .arg(&img.initrd)
        .arg("-append")
        .arg(format!("{} nixlive.grow_root {extra}", img.cmdline))
        .arg("-drive")
        .arg(drive)
        .arg("-device")
        .arg("virtio-blk-pci,drive=root")
}

/// Boots `disk` until postboot stops after `step`, then cuts the power.
fn cut_after(img: &Image, disk: &Path, step: &str) {
    let sock = img.dir.join(format!("qmp-{step}.sock"));
    let _ = std::fs::remove_file(&sock);
    let cmd = vm(img, disk, &format!("nixlive.test_grow_stop={step}")).with_qmp(&sock);
    let vm = Vm::spawn(&cmd, TIMEOUT + Duration::from_secs(30)).unwrap_or_else(|f| panic!("{f}"));
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for("NIXLIVE-TEST grow stopped after step", TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    // The rest of the line may still be on its way: wait for the step.
    if vm
        .wait_for_any(&[&format!(": {step} (")], Duration::from_secs(60))
        .is_err()
    {
        panic!(
            "{}",
            vm.failure(format!("postboot did not stop after {step}"))
        );
    }
    // Power off now: QEMU exits without the guest's say.
    let _ = qmp.execute("quit", serde_json::json!({}));
    vm.wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|f| panic!("{f}"));
}

/// The ext4 was mounted read-write when the power went: init refuses a
/// root whose journal needs replaying and asks for fsck "from another
/// system", which the host is. Preen mode: the journal, nothing more.
/// On a copy of the filesystem's bytes (e2fsck re-opens a device by name
/// after replaying, without the `?offset=`), written back in place.
fn replay_journal(disk: &Path, step: &str) {
    use std::io::{Read, Seek, SeekFrom, Write};
    // The image's filesystem: from 1 MiB to 1 MiB before its old end.
    let len = (256u64 << 20) - 2 * OFFSET;
    let fs_copy = disk.with_extension("fs");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .unwrap();
    let mut bytes = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(OFFSET)).unwrap();
    f.read_exact(&mut bytes).unwrap();
    std::fs::write(&fs_copy, &bytes).unwrap();
    let out = Command::new("e2fsck")
        .arg("-p")
        .arg(&fs_copy)
        .output()
        .unwrap_or_else(|e| panic!("e2fsck: {e}"));
    // 0: clean, 1: corrected (the journal replayed).
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "after a cut at {step}: e2fsck -p: {out:?}"
    );
    let fixed = std::fs::read(&fs_copy).unwrap();
    assert_eq!(fixed.len(), bytes.len());
    f.seek(SeekFrom::Start(OFFSET)).unwrap();
    f.write_all(&fixed).unwrap();
    let _ = std::fs::remove_file(&fs_copy);
}

/// Power cut after three steps of the table rewrite (the new primary
/// entries written; the primary header moved onto the backup's entries;
/// the new backup whole), the journal replayed from the host as init
/// asks: each next boot finds the partition
/// and the canary intact, finishes the growth, and leaves a table sgdisk
/// finds no problem with and a clean ext4 of the whole disk.
#[test]
fn power_cut_during_grow_root_at_three_points() {
    let img = image();
    for step in [
        "primary-entries",
        "primary-header-on-the-backups-entries",
        "backup-header",
    ] {
        let disk = img.dir.join(format!("cut-{step}.img"));
        std::fs::copy(&img.image, &disk).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        cut_after(img, &disk, step);
        replay_journal(&disk, step);
        let b = media::boot(&vm(img, &disk, ""), TIMEOUT)
            .unwrap_or_else(|f| panic!("after a cut at {step}: {f}"));
        let ctx = format!("after a cut at {step}\n{}", b.context());
        let root = b.report.mount("/").unwrap_or_else(|| panic!("no /\n{ctx}"));
        assert_eq!(
            (root.fstype.as_str(), root.source.as_str()),
            ("ext4", "/dev/vda1"),
            "{ctx}"
        );
        let out = b.report.postboot_out.join("\n");
        let grow = b
            .report
            .postboot_out
            .iter()
            .find(|l| l.starts_with("postboot: grow: "))
            .unwrap_or_else(|| panic!("postboot did not grow\n{out}\n{ctx}"));
        eprintln!("after a cut at {step}: {grow}");
        // A cut before the primary header moved: the old table, grown
        // whole; after: the new size already, the table finished.
        let want = if step == "backup-header" {
            "postboot: grow: /dev/vda1 grown from 254 to 510 MiB (GPT), its ext4 to 510 MiB"
        } else {
            "postboot: grow: /dev/vda1 is 510 MiB: finished its GPT table (an earlier growth \
             was cut short), its ext4 to 510 MiB"
        };
        assert_eq!(grow, want, "{ctx}");
        assert_eq!(b.report.postboot_exit, 0, "{ctx}");
        let mut cmd = Command::new("sgdisk");
        cmd.arg("-v").arg(&disk);
        let v = run_command(cmd).unwrap();
        assert!(v.contains("No problems found"), "{step}: {v}");
        let mut cmd = Command::new("e2fsck");
        cmd.arg("-fn")
            .arg(format!("{}?offset={OFFSET}", disk.display()));
        run_command(cmd).unwrap_or_else(|e| panic!("{step}: e2fsck: {e}"));
        let got = {
            let out = img.dir.join(format!("canary-{step}"));
            let _ = std::fs::remove_file(&out);
            debugfs(&disk, &format!("dump /canary {}", out.display())).unwrap();
            std::fs::read(&out).unwrap_or_default()
        };
        assert!(got == canary_bytes(), "{step}: the canary changed");
        let _ = std::fs::remove_file(&disk);
    }
}

//! Stage 1 finds its medium wherever a user's machine has it (issue 3): by
//! UUID on an ext4 disk, by label on a FAT32 USB stick, by GPT partition
//! name, as an ISO file on another filesystem (`findiso=`), on a disk
//! plugged in while init waits, and, when it is nowhere, says so in time
//! and lists what it saw.
//!
//! The kernel and the builder's initrd are booted directly; the medium tree
//! the builder made is repackaged per test (see `media`). The images are
//! built once for all tests of this binary.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nixlive_tests_vm::media::{self, Booted, Live, Part};
use nixlive_tests_vm::qmp::Qmp;
use nixlive_tests_vm::{QemuCommand, Vm, kvm};

/// Waiting for the report, TCG; a boot takes about 25 s here.
const TIMEOUT: Duration = Duration::from_secs(150);

const LABEL: &str = "NIXLIVE_DISC";
const EXT4_LABEL: &str = "NIXLIVE_EXT4";
const EXT4_UUID: &str = "6b1e5f0c-3f2a-4d5e-9b8c-0a1b2c3d4e5f";
const FAT_LABEL: &str = "NIXLIVE_USB";
const PARTLABEL: &str = "nixlive-live";
const ISO_PATH: &str = "/isos/nixlive.iso";

/// Everything these media need: CD, virtio, USB storage, ext4 (whose crc32c
/// is only a soft dependency), FAT with its code page and Debian's default
/// iocharset (ascii), loop, squashfs, overlay.
const MODULES: &[&str] = &[
    "ata_piix",
    "sr_mod",
    "isofs",
    "virtio_pci",
    "virtio_blk",
    "xhci_pci",
    "usb-storage",
    "sd_mod",
    "ext4",
    "crc32c_generic",
    "vfat",
    "nls_cp437",
    "nls_iso8859-1",
    "nls_utf8",
    "nls_ascii",
    "loop",
    "squashfs",
    "overlay",
];

struct Fixture {
    live: Live,
    /// ext4, label EXT4_LABEL, uuid EXT4_UUID: the medium tree plus the ISO at ISO_PATH.
    ext4: PathBuf,
    /// FAT32 labelled FAT_LABEL with the medium tree.
    fat: PathBuf,
    /// GPT: 1 "EFI" (empty), 2 PARTLABEL (the ext4 image).
    gpt: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build().unwrap_or_else(|e| panic!("building the media: {e}")))
}

fn build() -> Result<Fixture, String> {
    let started = Instant::now();
    let dir = media::work_dir("init-discovery")?;
    let live = media::build_live(&dir.join("live"), LABEL, MODULES, &|_| Ok(()))?;
    let tree = dir.join("ext4-tree");
    copy_tree(&live.medium, &tree)?;
    let iso_dir = tree.join(ISO_PATH.trim_start_matches('/'));
    std::fs::create_dir_all(iso_dir.parent().unwrap()).map_err(|e| e.to_string())?;
    std::fs::copy(&live.iso, &iso_dir).map_err(|e| format!("copying the ISO: {e}"))?;
    let ext4 = dir.join("ext4.img");
    media::ext4_image(&tree, &ext4, EXT4_LABEL, EXT4_UUID)?;
    let fat = dir.join("fat32.img");
    media::fat32_image(&live.medium, &fat, FAT_LABEL)?;
    let part = dir.join("part.img");
    media::ext4_image(
        &live.medium,
        &part,
        "OTHER",
        "11111111-2222-4333-8444-555555555555",
    )?;
    let gpt = dir.join("gpt.img");
    media::gpt_disk(
        &gpt,
        &[
            Part {
                name: "EFI",
                image: None,
                empty_mib: 4,
            },
            Part {
                name: PARTLABEL,
                image: Some(&part),
                empty_mib: 0,
            },
        ],
    )?;
    eprintln!("media built in {:.1?}", started.elapsed());
    Ok(Fixture {
        live,
        ext4,
        fat,
        gpt,
    })
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    let mut cmd = std::process::Command::new("cp");
    cmd.arg("-a").arg(from).arg(to);
    media::run(cmd).map(drop)
}

fn pc(append: &str) -> QemuCommand {
    QemuCommand::x86_64_direct(&fixture().live, append, 1024, kvm::accel())
}

/// The medium mounted at /iso came from `source` with `fstype`, and the
/// store overlay was built on it.
fn assert_booted_from(b: &Booted, fstype: &str, source: &str) {
    let ctx = b.context();
    let iso = b
        .report
        .mount("/iso")
        .unwrap_or_else(|| panic!("no /iso mount\n{ctx}"));
    assert_eq!(iso.fstype, fstype, "/iso\n{ctx}");
    assert_eq!(iso.source, source, "/iso\n{ctx}");
    let store = b
        .report
        .mount("/nix/store")
        .unwrap_or_else(|| panic!("no /nix/store mount\n{ctx}"));
    assert_eq!(store.fstype, "overlay", "{ctx}");
    let img = b
        .report
        .mount("/nix/.ro-store")
        .unwrap_or_else(|| panic!("no /nix/.ro-store\n{ctx}"));
    assert_eq!(img.fstype, "squashfs", "{ctx}");
    assert_eq!(b.report.postboot_exit, 0, "{ctx}");
}

#[test]
fn ext4_disk_by_uuid() {
    let f = fixture();
    // Upper case: UUIDs compare without regard to case.
    let cmd = pc(&format!(
        "root=UUID={} nixlive.timeout=60",
        EXT4_UUID.to_uppercase()
    ))
    .virtio_disk(&f.ext4);
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    assert_booted_from(&b, "ext4", "/dev/vda");
    assert!(
        b.init_lines()
            .iter()
            .any(|l| l.contains("found the medium: /dev/vda") && l.contains(EXT4_UUID)),
        "{}",
        b.context()
    );
}

#[test]
fn fat32_usb_stick_by_label() {
    let f = fixture();
    let mut stick = std::ffi::OsString::from("if=none,id=stick,format=raw,readonly=on,file=");
    stick.push(&f.fat);
    let cmd = pc(&format!("root=LABEL={FAT_LABEL} nixlive.timeout=60"))
        .arg("-device")
        .arg("qemu-xhci,id=xhci")
        .arg("-drive")
        .arg(stick)
        .arg("-device")
        .arg("usb-storage,bus=xhci.0,drive=stick,removable=on");
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    assert_booted_from(&b, "vfat", "/dev/sda");
}

#[test]
fn gpt_partition_by_partlabel() {
    let f = fixture();
    let cmd = pc(&format!("root=PARTLABEL={PARTLABEL} nixlive.timeout=60")).virtio_disk(&f.gpt);
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    assert_booted_from(&b, "ext4", "/dev/vda2");
}

/// Two disks carry the label and the initrd trusts no key: the log names
/// both and the one used, and that one is what was mounted. The choice
/// follows the stated rule (the first by device name), however the kernel
/// announced the disks (virtio_blk probes them asynchronously: the second
/// may be added while the first is looked into). `boot.trace` with
/// `loglevel=8` puts each device init read in the log, for when it fails.
#[test]
fn two_disks_with_one_label_are_both_named() {
    let f = fixture();
    let cmd = pc(&format!(
        "root=LABEL={EXT4_LABEL} nixlive.timeout=60 boot.trace loglevel=8"
    ))
    .virtio_disk(&f.ext4)
    .virtio_disk(&f.ext4);
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    let ctx = b.context();
    let said = b
        .init_lines()
        .into_iter()
        .find_map(|l| {
            l.split_once(&format!("2 devices carry the label {EXT4_LABEL}: "))?
                .1
                .into()
        })
        .unwrap_or_else(|| panic!("init did not name both devices\n{ctx}"));
    let (both, used) = said
        .split_once("; using ")
        .unwrap_or_else(|| panic!("{said:?} does not say which was used\n{ctx}"));
    let mut both: Vec<&str> = both.split(" and ").collect();
    both.sort_unstable();
    assert_eq!(both, ["/dev/vda", "/dev/vdb"], "{ctx}");
    // The rule, not the order of announcement: the first by device name.
    assert_eq!(used.trim(), "/dev/vda", "{ctx}");
    let rule = b
        .init_lines()
        .into_iter()
        .find(|l| l.contains("2 candidates: /dev/vda, /dev/vdb; choosing /dev/vda"))
        .unwrap_or_else(|| panic!("init did not name both candidates and its choice\n{ctx}"));
    eprintln!("{rule}");
    assert!(
        b.init_said("is not authenticated: the initrd trusts no key"),
        "{ctx}"
    );
    assert_booted_from(&b, "ext4", used.trim());
}

#[test]
fn findiso_on_an_ext4_disk() {
    let f = fixture();
    let cmd = pc(&format!("findiso={ISO_PATH} nixlive.timeout=60")).virtio_disk(&f.ext4);
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    let ctx = b.context();
    let iso = b
        .report
        .mount("/iso")
        .unwrap_or_else(|| panic!("no /iso\n{ctx}"));
    assert_eq!(iso.fstype, "iso9660", "{ctx}");
    assert!(iso.source.starts_with("/dev/loop"), "{iso:?}\n{ctx}");
    let host = b
        .report
        .mount("/findiso")
        .unwrap_or_else(|| panic!("no /findiso (the ISO's filesystem)\n{ctx}"));
    assert_eq!(
        (host.fstype.as_str(), host.source.as_str()),
        ("ext4", "/dev/vda"),
        "{ctx}"
    );
    assert_booted_from(&b, "iso9660", &iso.source);
}

/// The disk is plugged in 8 s after init began to wait for it; init must
/// take it as soon as the kernel announces it (well inside the 60 s budget).
#[test]
fn disk_plugged_in_while_waiting_is_found() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let cmd = QemuCommand::x86_64_direct(
        &f.live,
        &format!("root=UUID={EXT4_UUID} nixlive.timeout=60"),
        1024,
        kvm::accel(),
    )
    .on_q35()
    .arg("-device")
    .arg("pcie-root-port,id=rp1,bus=pcie.0,chassis=1")
    .with_qmp(&sock);
    let vm = Vm::spawn(&cmd, TIMEOUT + Duration::from_secs(40)).unwrap();
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for("waiting for the medium", TIMEOUT).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let plug = |q: &mut Qmp| -> Result<(), String> {
        q.execute(
            "blockdev-add",
            serde_json::json!({
                "driver": "raw",
                "node-name": "hp0",
                "read-only": true,
                "file": { "driver": "file", "filename": f.ext4, "read-only": true },
            }),
        )?;
        q.execute(
            "device_add",
            serde_json::json!({
                "driver": "virtio-blk-pci", "id": "hpdisk", "drive": "hp0", "bus": "rp1",
            }),
        )?;
        Ok(())
    };
    plug(&mut qmp).unwrap_or_else(|e| panic!("{}", vm.failure(e)));
    let plugged = vm.elapsed();
    vm.wait_for("found the medium", TIMEOUT).unwrap();
    let found_after = vm.elapsed() - plugged;
    let b = media::finish(&vm, TIMEOUT).unwrap();
    let ctx = b.context();
    assert_booted_from(&b, "ext4", "/dev/vda");
    let waited = media::init_stamp(&b.serial_log, "found the medium").unwrap()
        - media::init_stamp(&b.serial_log, "waiting for the medium").unwrap();
    eprintln!("found {found_after:.1?} after the plug; init waited {waited:.1} s in all");
    // Not a speed check: the wait ended because the disk came, not because
    // 60 s ran out, and init did not give up in between.
    assert!((8.0..40.0).contains(&waited), "waited {waited} s\n{ctx}");
    assert!(!ctx.contains("timed out"), "{ctx}");
}

/// Nothing matches: within the timeout plus 2 s (guest uptime) init says
/// what it wanted and lists every device with its type and label.
#[test]
fn missing_medium_lists_the_devices_seen() {
    let f = fixture();
    let cmd = pc("root=LABEL=NO_SUCH_MEDIUM nixlive.timeout=5")
        .arg("-cdrom")
        .arg(&f.live.iso)
        .virtio_disk(&f.ext4);
    let vm = Vm::spawn(&cmd, TIMEOUT).unwrap();
    let console = vm
        .wait_for_stage1_failure(TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    let fail = |why: &str| -> ! { panic!("{}", vm.failure(why.to_string())) };
    for want in [
        "timed out after 5 s waiting for the boot medium LABEL=NO_SUCH_MEDIUM",
        "block devices seen:",
        &format!("iso9660 label={LABEL}"),
        &format!("ext4 label={EXT4_LABEL} uuid={EXT4_UUID}"),
        "nixlive.timeout=",
    ] {
        if !console.contains(want) {
            fail(&format!("the failure message lacks {want:?}"));
        }
    }
    for dev in ["/dev/sr0", "/dev/vda"] {
        if !console.lines().any(|l| l.trim_start().starts_with(dev)) {
            fail(&format!("{dev} is not listed"));
        }
    }
    let log = vm.serial_log().replace('\r', "");
    let waited = media::init_stamp(&log, "boot failed").unwrap()
        - media::init_stamp(&log, "waiting for the medium").unwrap();
    eprintln!("init gave up {waited:.2} s after it began to wait (timeout 5 s)");
    if !(4.9..=7.0).contains(&waited) {
        fail(&format!(
            "gave up {waited:.2} s after it began to wait, not within 5 s + 2 s"
        ));
    }
}

/// `boot.panic_on_fail`: the explanation first, then a kernel panic (not a
/// hang, not a prompt), so a fleet's watchdog or `panic=N` can act.
#[test]
fn panic_on_fail_explains_then_panics_the_kernel() {
    let f = fixture();
    let cmd = pc("root=LABEL=NO_SUCH_MEDIUM nixlive.timeout=2 boot.panic_on_fail")
        .arg("-cdrom")
        .arg(&f.live.iso);
    let vm = Vm::spawn(&cmd, TIMEOUT).unwrap();
    vm.wait_for_any(&["Kernel panic - not syncing"], TIMEOUT)
        .unwrap();
    let log = vm.serial_log().replace('\r', "");
    let fail = |why: &str| -> ! { panic!("{}", vm.failure(why.to_string())) };
    let explained = log
        .find("timed out after 2 s waiting for the boot medium LABEL=NO_SUCH_MEDIUM")
        .unwrap_or_else(|| fail("no explanation before the panic"));
    let panicked = log.find("Kernel panic - not syncing").unwrap_or(0);
    if explained > panicked {
        fail("the kernel panicked before init explained why");
    }
    if !log.contains("boot.panic_on_fail is set: panicking the kernel.") {
        fail("init did not say it panics on purpose");
    }
    if log.contains(nixlive_tests_vm::report::STAGE1_REBOOT_PROMPT) {
        fail("init offered a reboot instead of panicking");
    }
}

/// `boot.shell_on_fail` with a shell packed (builder `--shell`): init
/// explains, then starts it on the console.
#[test]
fn shell_on_fail_starts_the_packed_shell() {
    let f = fixture();
    let k = nixlive_tests_vm::artifacts::kernel("amd64");
    let initrd = f.live.dir.join("initrd-with-shell");
    let extra = ["--module-set", "base", "--shell", "/bin/busybox"].map(std::ffi::OsStr::new);
    media::initrd(&k, &[], &extra, &initrd).unwrap_or_else(|e| panic!("{e}"));
    let live = media::Live {
        initrd,
        ..f.live.clone()
    };
    let cmd = QemuCommand::x86_64_direct(
        &live,
        "root=LABEL=NO_SUCH_MEDIUM nixlive.timeout=1 boot.shell_on_fail",
        1024,
        kvm::accel(),
    );
    let vm = Vm::spawn(&cmd, TIMEOUT).unwrap();
    vm.wait_for_any(&["boot.shell_on_fail: starting /bin/sh"], TIMEOUT)
        .unwrap();
    // busybox's ash, interactive on the console, prompts as root.
    vm.wait_for_any(&["/ # "], Duration::from_secs(30)).unwrap();
    let log = vm.serial_log();
    if !log.contains("timed out after 1 s waiting for the boot medium LABEL=NO_SUCH_MEDIUM") {
        panic!("{}", vm.failure("no explanation before the shell"));
    }
}

/// A disk that takes 8 s to answer each read (QEMU's null-co driver with a
/// latency) sits beside the CD: probing it gives up after init's per-device
/// timeout, and the CD is found well inside the budget instead of after
/// the disk's answers. The disk's driver is named on the command line so
/// that the disk is there as soon as coldplug loads `virtio_pci` (init
/// loads drivers as devices show up, and the CD would otherwise be found
/// before the disk is even probed); `virtio_pci` itself still loads after
/// the ATA controller's driver, whose port probe would otherwise wait
/// behind the stalled disk's partition scan in the kernel.
#[test]
fn a_stalled_disk_does_not_hold_up_the_search() {
    let f = fixture();
    let line = format!("root=LABEL={LABEL} nixlive.timeout=60 nixlive.modules=virtio_blk");
    let cmd =
        pc(&line).arg("-cdrom").arg(&f.live.iso).arg("-drive").arg(
            "driver=null-co,size=64M,latency-ns=8000000000,read-zeroes=on,if=virtio,readonly=on",
        );
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    let ctx = b.context();
    assert_booted_from(&b, "iso9660", "/dev/sr0");
    assert!(
        b.init_said("/dev/vda did not answer within 5 s"),
        "the stalled disk was not named:\n{ctx}"
    );
    let waited = media::init_stamp(&b.serial_log, "found the medium").unwrap()
        - media::init_stamp(&b.serial_log, "waiting for the medium").unwrap();
    eprintln!("found the CD {waited:.1} s after init began to wait");
    assert!(waited < 20.0, "waited {waited:.1} s\n{ctx}");
}

//! A hostile or damaged medium (issue 25): PID 1 never hangs on a file a
//! stick hands it, `nixlive.check` reads every image before stage 2 and
//! names the first bad block, and a stage-2 init that cannot run stops the
//! boot before the initramfs is emptied.
//!
//! One signed, verity-protected medium (the initrd trusts its key) serves
//! every test, on ext4 disks with the same label: as built, with one byte
//! of the squashfs data changed, and a stick whose `nixlive.manifest` is a
//! FIFO.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::authenticity::{noise, signing_args};
use nixlive_tests_vm::media::{self, Booted, Live, PROBE, PROBE_INIT, PROBE_READS, PROBE_SHOWS};
use nixlive_tests_vm::{QemuCommand, Vm, arch::Arch, artifacts, kvm};

const TIMEOUT: Duration = Duration::from_secs(150);
const LABEL: &str = "NIXLIVE_HOSTILE";
const KEY: &str = "nixlive-vm-test-1";
const MODULES: &[&str] = &[
    "ata_piix",
    "sr_mod",
    "isofs",
    "virtio_pci",
    "virtio_blk",
    "ext4",
    "crc32c_generic",
    "loop",
    "squashfs",
    "overlay",
];
const PAYLOAD: &str = "payload";
const PAYLOAD_LEN: usize = 4 << 20;
const IMAGE: &str = "nix-store.squashfs";

struct Fixture {
    live: Live,
    good: PathBuf,
    /// One byte of the payload's data changed inside the squashfs, at
    /// `changed_at` (bytes from the image's start).
    damaged: PathBuf,
    changed_at: u64,
    /// Same label; `nixlive.manifest` is a FIFO.
    fifo: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build().unwrap_or_else(|e| panic!("building the media: {e}")))
}

fn build() -> Result<Fixture, String> {
    let dir = media::work_dir("hostile-medium")?;
    let mut spec = artifacts::DemoSpec::new(Arch::X86_64, LABEL);
    spec.modules = MODULES.iter().map(|m| m.to_string()).collect();
    spec.builder_args = signing_args(&dir, KEY)?;
    let live = media::build_live_spec(&dir.join("live"), &spec, &|root| {
        let probe = root.join(PROBE.trim_start_matches('/'));
        let (shows, reads) = (probe.join(PROBE_SHOWS), probe.join(PROBE_READS));
        for d in [&shows, &reads] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        std::fs::write(reads.join(PAYLOAD), noise(PAYLOAD_LEN)).map_err(|e| e.to_string())?;
        std::fs::write(shows.join("intact"), b"readable").map_err(|e| e.to_string())
    })?;
    let disk = |tree: &Path, name: &str, n: u8| -> Result<PathBuf, String> {
        let img = dir.join(format!("{name}.ext4"));
        let uuid = format!("7a7e0000-0000-4000-8000-0000000025{n:02}");
        media::ext4_image(tree, &img, LABEL, &uuid)?;
        Ok(img)
    };
    let good = disk(&live.medium, "good", 1)?;

    // After building: one byte in the middle of the payload's data.
    let damaged_tree = dir.join("damaged");
    media::run({
        let mut c = std::process::Command::new("cp");
        c.arg("-a").arg(&live.medium).arg(&damaged_tree);
        c
    })?;
    let img = damaged_tree.join(IMAGE);
    let mut bytes = std::fs::read(&img).map_err(|e| e.to_string())?;
    let probe = &noise(PAYLOAD_LEN)[3_000_000..3_000_064];
    let at = bytes
        .windows(probe.len())
        .position(|w| w == probe)
        .ok_or("the payload is not stored as it is in the squashfs")?
        + 10;
    bytes[at] ^= 0x01;
    std::fs::write(&img, &bytes).map_err(|e| e.to_string())?;
    let damaged = disk(&damaged_tree, "damaged", 2)?;

    // A stick that carries the label and a FIFO where the manifest goes
    // (mkfs.ext4 -d keeps FIFOs as FIFOs).
    let fifo_tree = dir.join("fifo");
    std::fs::create_dir_all(&fifo_tree).map_err(|e| e.to_string())?;
    media::run({
        let mut c = std::process::Command::new("mkfifo");
        c.arg(fifo_tree.join("nixlive.manifest"));
        c
    })?;
    let fifo = disk(&fifo_tree, "fifo", 3)?;
    let listed = media::run({
        let mut c = std::process::Command::new("debugfs");
        c.args(["-R", "stat nixlive.manifest"]).arg(&fifo);
        c
    })?;
    if !listed.contains("Type: FIFO") {
        return Err(format!("mkfs.ext4 did not keep the FIFO: {listed}"));
    }
    Ok(Fixture {
        live,
        good,
        damaged,
        changed_at: at as u64,
        fifo,
    })
}

fn direct(append: &str) -> QemuCommand {
    QemuCommand::x86_64_direct(&fixture().live, append, 512, kvm::accel())
}

fn boot(cmd: &QemuCommand) -> Booted {
    media::boot(cmd, TIMEOUT).unwrap_or_else(|f| panic!("{f}"))
}

/// Waits for init's failure screen; returns it.
fn refused(cmd: &QemuCommand) -> (Vm, String) {
    let vm = Vm::spawn(cmd, TIMEOUT + Duration::from_secs(40)).unwrap_or_else(|f| panic!("{f}"));
    let console = vm
        .wait_for_stage1_failure(TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    (vm, console)
}

fn assert_says(vm: &Vm, console: &str, wants: &[&str]) {
    for want in wants {
        if !console.contains(want) {
            panic!(
                "{}",
                vm.failure(format!("the failure message lacks {want:?}"))
            );
        }
    }
}

/// A same-label stick whose manifest is a FIFO, found first (`/dev/vda`):
/// the trust probe does not block on it; it is skipped, named, and the
/// real medium (`/dev/vdb`) boots within the budget.
#[test]
fn a_fifo_manifest_on_a_same_label_stick_does_not_hang_the_boot() {
    let f = fixture();
    let cmd = direct(&format!(
        "root=LABEL={LABEL} nixlive.timeout=60 init={PROBE_INIT}"
    ))
    .virtio_disk(&f.fifo)
    .virtio_disk(&f.good);
    let b = boot(&cmd);
    let ctx = b.context();
    nixlive_tests_vm::checks::live_system(&b.report, "x86_64")
        .unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    // virtio_blk probes its disks asynchronously: which of the two is vda
    // depends on the kernel, so the FIFO's device is read from init's line.
    let fifo_dev = b
        .init_lines()
        .iter()
        .find(|l| l.contains("a FIFO, not a regular file: refused"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("/dev/vd")))
        .map(|w| w.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("init did not name the FIFO\n{ctx}"));
    let iso = b.report.mount("/iso").map(|m| m.source.clone());
    assert!(
        matches!(iso.as_deref(), Some("/dev/vda" | "/dev/vdb"))
            && iso.as_deref() != Some(&fifo_dev),
        "/iso is {iso:?}, the FIFO was on {fifo_dev}\n{ctx}"
    );
    for l in b.init_lines().iter().filter(|l| l.contains("FIFO")) {
        eprintln!("{l}");
    }
}

/// `nixlive.check` on a medium with one byte changed: the boot stops before
/// stage 2, naming the image, the medium, and the block that holds the
/// changed byte.
#[test]
fn nixlive_check_names_the_bad_block() {
    let f = fixture();
    let cmd = direct(&format!(
        "root=LABEL={LABEL} nixlive.check init={PROBE_INIT}"
    ))
    .virtio_disk(&f.damaged);
    let (vm, console) = refused(&cmd);
    let block = f.changed_at / 4096;
    assert_says(
        &vm,
        &console,
        &[
            &format!("the medium /dev/vda (its manifest signed by the trusted key {KEY})"),
            &format!(
                "nixlive.check: /mnt-root/iso/{IMAGE} is damaged: the block at byte {} \
                 (block {block} of 4096 bytes, in the file /{}/{PROBE_READS}/{PAYLOAD} of the \
                 image)",
                block * 4096,
                PROBE.trim_start_matches("/nix/store/")
            ),
        ],
    );
    let log = vm.serial_log();
    eprintln!("{console}");
    assert!(
        log.contains("nixlive.check:") && log.contains("%"),
        "{}",
        vm.failure("no progress line")
    );
    assert!(
        !log.contains("PROBE-BEGIN"),
        "{}",
        vm.failure("stage 2 ran on a damaged medium")
    );
}

/// The same medium undamaged, with `nixlive.check`: every image is read,
/// the log says the check passed, and the system boots.
#[test]
fn nixlive_check_passes_on_an_intact_medium() {
    let f = fixture();
    let cmd = direct(&format!(
        "root=LABEL={LABEL} nixlive.check init={PROBE_INIT}"
    ))
    .virtio_disk(&f.good);
    let b = boot(&cmd);
    let ctx = b.context();
    nixlive_tests_vm::checks::live_system(&b.report, "x86_64")
        .unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    for l in b.init_lines().iter().filter(|l| l.contains("check")) {
        eprintln!("{l}");
    }
    for said in [
        &format!("nixlive.check: /mnt-root/iso/{IMAGE}: all "),
        "every block intact",
        "nixlive.check: the check passed",
    ] {
        assert!(b.init_said(said), "init did not say {said:?}\n{ctx}");
    }
    let read = b
        .probe
        .iter()
        .find(|l| l.starts_with("read ") && l.contains(&format!("/{PROBE_READS}/{PAYLOAD}")))
        .unwrap_or_else(|| panic!("the probe did not read {PAYLOAD}\n{ctx}"));
    assert!(!read.contains("error"), "{read}\n{ctx}");
}

/// A stage-2 init that exists but is not executable is refused before the
/// switch of root: the failure policy runs with the initramfs intact.
#[test]
fn a_stage2_that_is_not_executable_stops_before_the_switch() {
    let f = fixture();
    let init = format!("{PROBE}/{PROBE_SHOWS}/intact");
    let cmd = direct(&format!("root=LABEL={LABEL} init={init}")).virtio_disk(&f.good);
    let (vm, console) = refused(&cmd);
    assert_says(
        &vm,
        &console,
        &[
            &format!("stage-2 init {init} cannot be run: {init} is not executable (mode 0644)"),
            "the initramfs was left as it was",
        ],
    );
    let log = vm.serial_log();
    assert!(
        !log.contains("switch_root /mnt-root"),
        "{}",
        vm.failure("the switch of root was started")
    );
}

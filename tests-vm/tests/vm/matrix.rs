//! The architecture matrix beyond x86_64 (whose cells are in
//! boot_x86_64.rs and builder_boot.rs): the demo media booted on i686 PCs
//! and on the aarch64 `virt` machine. Each cell is its own test with its own
//! timeout, fails if its VM does not report, and checks the live system the
//! guest reports (mounts, postboot, timeline, architecture).
//!
//! Run one cell alone: `cargo test -p nixlive-tests-vm --test matrix i686_netboot`.

use std::path::Path;
use std::time::Duration;

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{DemoIso, DemoSpec, build_demo};
use nixlive_tests_vm::{BootRun, QemuCommand, boot_command_to_report, checks, kvm};

/// TCG on this machine; an emulated aarch64 is the slowest of the three.
const TIMEOUT: Duration = Duration::from_secs(300);

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nixlive-matrix-")
        .tempdir()
        .expect("creating a temporary directory")
}

fn build(dir: &Path, arch: Arch, label: &str, netboot: bool) -> DemoIso {
    let mut spec = DemoSpec::new(arch, label);
    spec.netboot = netboot;
    build_demo(dir, &spec).unwrap_or_else(|e| panic!("{e}"))
}

/// Boots and checks what every cell checks; returns the run for more.
fn boot(cmd: &QemuCommand, arch: Arch) -> BootRun {
    let run = boot_command_to_report(cmd, TIMEOUT).unwrap();
    checks::live_system(&run.report, arch.uname()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{}: stage 2 at uptime {} ms, report after {:.1?} ({})",
        arch.uname(),
        run.report.uptime_ms,
        run.report_after,
        run.command_line
    );
    run
}

/// The netboot set's kernel command line, written once by the builder.
fn netboot_cmdline(dir: &Path) -> String {
    let p = dir.join("cmdline");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The kernel's `Command line:` as it logged it.
fn kernel_cmdline(log: &str) -> String {
    log.lines()
        .find_map(|l| {
            l.split_once("Kernel command line: ")
                .map(|(_, c)| c.trim().to_string())
        })
        .unwrap_or_else(|| panic!("the kernel logged no command line:\n{log}"))
}

/// Netboot leaves no medium: the images come from the initrd, on loop
/// devices (through dm-verity, which the builder adds by default).
fn assert_netbooted(run: &BootRun) {
    let r = &run.report;
    assert!(r.mount("/iso").is_none(), "netboot mounted /iso\n{r:#?}");
    let img = r.mount("/nix/.ro-store").expect("no image mount");
    assert!(
        img.source.starts_with("/dev/dm-"),
        "image on {}",
        img.source
    );
}

#[test]
fn i686_cd_bios() {
    let tmp = tempdir();
    let demo = build(tmp.path(), Arch::I686, "NIXLIVE_I686", false);
    let cmd = Arch::I686
        .qemu(kvm::accel())
        .arg("-cdrom")
        .arg(&demo.iso)
        .arg("-boot")
        .arg("d");
    let run = boot(&cmd, Arch::I686);
    let medium = run.report.mount("/iso").expect("no /iso mount");
    assert_eq!(medium.fstype, "iso9660");
    assert_eq!(medium.source, "/dev/sr0", "the CD drive holds the medium");
}

/// Through the NIC's iPXE ROM, over TFTP from QEMU's user network.
#[test]
fn i686_netboot() {
    let tmp = tempdir();
    let demo = build(tmp.path(), Arch::I686, "NIXLIVE_I686N", true);
    let dir = demo.netboot.expect("netboot set");
    let cmd = QemuCommand::pc_netboot(Arch::I686, &dir, "netboot.ipxe", kvm::accel());
    // The VM has no disk and no -kernel: only iPXE can have loaded it (its
    // ROM prints to the screen, not the serial line).
    let run = boot(&cmd, Arch::I686);
    assert_netbooted(&run);
    // iPXE puts `initrd=<name>` in front of the script's parameters.
    let got = kernel_cmdline(&run.serial_log);
    let want = netboot_cmdline(&dir);
    assert!(
        got.ends_with(&want),
        "kernel command line {got:?}, want {want:?}"
    );
}

/// The ISO as a virtio disk of the `virt` machine, booted by its firmware
/// (AAVMF) through the EFI system partition and GRUB, found by label.
#[test]
fn aarch64_uefi_virtio_disk() {
    let tmp = tempdir();
    let demo = build(tmp.path(), Arch::Aarch64, "NIXLIVE_ARM64", false);
    let drive = format!(
        "file={},format=raw,if=none,id=medium,readonly=on",
        demo.iso.display()
    );
    let cmd = Arch::Aarch64
        .qemu(kvm::accel())
        .with_uefi(Arch::Aarch64, tmp.path())
        .arg("-drive")
        .arg(drive)
        .arg("-device")
        .arg("virtio-blk-pci,drive=medium,bootindex=0");
    let run = boot(&cmd, Arch::Aarch64);
    let medium = run.report.mount("/iso").expect("no /iso mount");
    assert_eq!(medium.fstype, "iso9660");
    assert!(
        medium.source.starts_with("/dev/vd"),
        "medium on {}",
        medium.source
    );
    assert!(
        run.serial_log.contains("GRUB") || run.serial_log.contains("grub"),
        "GRUB did not run:\n{}",
        run.serial_log
    );
}

/// The netboot set's kernel, initrd and command line, given to the `virt`
/// machine directly (QEMU has no aarch64 iPXE ROM; what a boot loader would
/// fetch is what is under test).
#[test]
fn aarch64_netboot() {
    let tmp = tempdir();
    let demo = build(tmp.path(), Arch::Aarch64, "NIXLIVE_ARM64N", true);
    let dir = demo.netboot.expect("netboot set");
    let cmd = Arch::Aarch64
        .qemu(kvm::accel())
        .arg("-kernel")
        .arg(dir.join("bzImage"))
        .arg("-initrd")
        .arg(dir.join("initrd"))
        .arg("-append")
        .arg(netboot_cmdline(&dir));
    let run = boot(&cmd, Arch::Aarch64);
    assert_netbooted(&run);
    assert_eq!(kernel_cmdline(&run.serial_log), netboot_cmdline(&dir));
}

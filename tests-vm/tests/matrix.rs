//! The architecture matrix: the demo medium booted on i686 and aarch64
//! machines (x86_64 cells live in boot_x86_64.rs and the builder's boot
//! tests). Each cell is its own test with its own timeout, and fails if its
//! VM does not report.
//!
//! Run one cell alone: `cargo test -p nixlive-tests-vm --test matrix i686_cd_bios`.

use std::time::Duration;

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{DemoSpec, build_demo};
use nixlive_tests_vm::{boot_command_to_report, checks, kvm};

/// TCG on this machine; an emulated aarch64 is the slowest of the three.
const TIMEOUT: Duration = Duration::from_secs(300);

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nixlive-matrix-")
        .tempdir()
        .expect("creating a temporary directory")
}

#[test]
fn i686_cd_bios() {
    let tmp = tempdir();
    let demo = build_demo(tmp.path(), &DemoSpec::new(Arch::I686, "NIXLIVE_I686"))
        .unwrap_or_else(|e| panic!("{e}"));
    let cmd = Arch::I686
        .qemu(kvm::accel())
        .arg("-cdrom")
        .arg(&demo.iso)
        .arg("-boot")
        .arg("d");
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap();
    checks::live_system(&run.report, "i686").unwrap_or_else(|e| panic!("{e}"));
    let medium = run.report.mount("/iso").expect("no /iso mount");
    assert_eq!(medium.fstype, "iso9660");
    assert_eq!(medium.source, "/dev/sr0", "the CD drive holds the medium");
}

/// The ISO attached as a virtio disk of the `virt` machine, found by label
/// (the kernel is started directly; the medium is what is under test).
#[test]
fn aarch64_virtio_disk() {
    let tmp = tempdir();
    let demo = build_demo(tmp.path(), &DemoSpec::new(Arch::Aarch64, "NIXLIVE_ARM64"))
        .unwrap_or_else(|e| panic!("{e}"));
    let cfg = std::fs::read_to_string(demo.medium.join("isolinux/isolinux.cfg"))
        .expect("reading isolinux.cfg");
    // The same kernel parameters the boot menu carries.
    let params = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("APPEND "))
        .expect("isolinux.cfg has an APPEND line")
        .split_whitespace()
        .filter(|w| !w.starts_with("initrd="))
        .collect::<Vec<_>>()
        .join(" ");
    let kernel = nixlive_tests_vm::artifacts::kernel(Arch::Aarch64.debian());
    let drive = format!(
        "file={},format=raw,if=none,id=medium,readonly=on",
        demo.iso.display()
    );
    let cmd = Arch::Aarch64
        .qemu(kvm::accel())
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(demo.initrd())
        .arg("-append")
        .arg(params)
        .arg("-drive")
        .arg(drive)
        .arg("-device")
        .arg("virtio-blk-pci,drive=medium");
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap();
    checks::live_system(&run.report, "aarch64").unwrap_or_else(|e| panic!("{e}"));
    let medium = run.report.mount("/iso").expect("no /iso mount");
    assert_eq!(medium.fstype, "iso9660");
    assert!(
        medium.source.starts_with("/dev/vd"),
        "medium on {}",
        medium.source
    );
}

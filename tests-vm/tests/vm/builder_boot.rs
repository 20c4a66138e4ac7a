//! The builder's media boot every way a PC boots them: the hybrid ISO from
//! a CD drive and as a USB disk, under SeaBIOS and under OVMF (UEFI), and
//! the netboot set through the NIC's iPXE ROM over TFTP. One set of media is
//! built for all five; the VMs run as the test threads do, two at a time on
//! two cores (each VM has one CPU).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_tests_vm::boot_modes::{BootMode, DemoMedia, build_demo_media};
use nixlive_tests_vm::{BootRun, QemuCommand, artifacts, boot_command_to_report, checks, kvm};

/// Each boot takes 20-40 s under TCG here; the rest is slack for a busy host.
const TIMEOUT: Duration = Duration::from_secs(150);
const LABEL: &str = "NIXLIVE_BOOT";

fn media() -> &'static DemoMedia {
    static MEDIA: OnceLock<DemoMedia> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let dir = artifacts::workspace_root().join("target/tests-vm/builder-boot");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
        }
        let m = build_demo_media(&dir, LABEL).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "built {} ({} bytes) and {} in {:.1?}",
            m.iso.display(),
            std::fs::metadata(&m.iso).map(|x| x.len()).unwrap_or(0),
            m.netboot.display(),
            m.build_time
        );
        m
    })
}

fn boot(cmd: &QemuCommand) -> BootRun {
    let run = boot_command_to_report(cmd, TIMEOUT).unwrap();
    eprintln!(
        "report after {:.1?} (guest uptime {} ms), {} ({})",
        run.report_after,
        run.report.uptime_ms,
        run.accel.name(),
        run.command_line
    );
    run
}

/// The kernel's `Command line:` as it logged it.
fn kernel_cmdline(log: &str) -> &str {
    log.lines()
        .find_map(|l| l.split_once("Command line: ").map(|(_, c)| c.trim()))
        .unwrap_or_else(|| panic!("the kernel logged no command line:\n{log}"))
}

fn boot_iso(mode: BootMode) {
    let m = media();
    let scratch = tempfile::tempdir().unwrap();
    let cmd = QemuCommand::x86_64_boot(mode, &m.iso, kvm::accel(), scratch.path());
    let run = boot(&cmd);
    let r = &run.report;
    let ctx = format!("{mode:?}\n{}\n{r:#?}", run.command_line);
    checks::live_system(r, "x86_64").unwrap_or_else(|e| panic!("{mode:?}: {e}"));

    let medium = r
        .mount("/iso")
        .unwrap_or_else(|| panic!("no /iso mount\n{ctx}"));
    assert_eq!(medium.fstype, "iso9660", "{ctx}");
    if mode.usb() {
        assert!(
            medium.source.starts_with("/dev/sd"),
            "the USB disk should be a SCSI disk, got {}\n{ctx}",
            medium.source
        );
    } else {
        assert_eq!(medium.source, "/dev/sr0", "{ctx}");
    }
    // The firmware path really was the one asked for.
    let log = &run.serial_log;
    let efi = log.contains("efi: EFI v");
    assert_eq!(efi, mode.uefi(), "UEFI firmware seen: {efi}\n{ctx}");
    if mode.uefi() {
        assert!(log.contains("Welcome to GRUB!"), "GRUB did not run\n{ctx}");
    } else {
        assert!(log.contains("ISOLINUX"), "ISOLINUX did not run\n{ctx}");
    }
    // Both boot loaders give the kernel the same parameters.
    let cmdline = kernel_cmdline(log);
    let want = format!("root=LABEL={LABEL} init={}/init", m.system);
    assert!(
        cmdline.contains(&want),
        "kernel command line {cmdline:?} lacks {want:?}"
    );
}

#[test]
fn iso_boots_from_a_bios_cd() {
    boot_iso(BootMode::BiosCd);
}

#[test]
fn iso_boots_from_a_bios_usb_disk() {
    boot_iso(BootMode::BiosUsb);
}

#[test]
fn iso_boots_from_a_uefi_cd() {
    boot_iso(BootMode::UefiCd);
}

#[test]
fn iso_boots_from_a_uefi_usb_disk() {
    boot_iso(BootMode::UefiUsb);
}

#[test]
fn netboot_set_boots_through_ipxe() {
    let m = media();
    let ipxe: PathBuf = m.netboot.join("netboot.ipxe");
    let script = std::fs::read_to_string(&ipxe)
        .unwrap_or_else(|e| panic!("reading {}: {e}", ipxe.display()));
    let cmd = QemuCommand::x86_64_netboot(&m.netboot, "netboot.ipxe", kvm::accel());
    let run = boot(&cmd);
    let r = &run.report;
    let ctx = format!("{}\n{r:#?}", run.command_line);
    checks::live_system(r, "x86_64").unwrap_or_else(|e| panic!("netboot: {e}"));
    // No medium: the image came inside the initrd and is attached in place,
    // read through dm-verity (issue 11: verity on netboot too).
    assert!(r.mount("/iso").is_none(), "netboot mounted a medium\n{ctx}");
    let image = r.mount("/nix/.ro-store").unwrap();
    assert!(image.source.starts_with("/dev/dm-"), "{ctx}");
    let checks = &r.stage1.as_ref().expect("stage1.json").images;
    assert!(
        !checks.is_empty() && checks.iter().all(|c| c.check == "dm-verity"),
        "{checks:?}\n{ctx}"
    );
    // The kernel got exactly the command line of the iPXE script, which
    // names no root device.
    let cmdline = kernel_cmdline(&run.serial_log);
    let kernel_line = script
        .lines()
        .find(|l| l.starts_with("kernel "))
        .unwrap_or_else(|| panic!("no kernel line in {script}"));
    let want = kernel_line
        .split_once(' ')
        .and_then(|(_, rest)| rest.split_once(' '))
        .map(|(_, params)| params)
        .unwrap();
    assert_eq!(cmdline, want, "{ctx}");
    assert!(!cmdline.contains("root="), "{ctx}");
}

//! The ways a PC boots a nixlive medium, as QEMU command lines: the hybrid
//! ISO on a CD drive or as a USB disk, under SeaBIOS or OVMF (UEFI), and the
//! netboot set through the NIC's iPXE ROM over TFTP. Plus building the demo
//! media those boots need (an ISO whose initrd can reach CD and USB drives,
//! and a netboot directory).

use crate::arch::Arch;
use crate::artifacts;
use crate::qemu::{Accel, QemuCommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the firmware reaches the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    BiosCd,
    BiosUsb,
    UefiCd,
    UefiUsb,
}

impl BootMode {
    pub fn uefi(self) -> bool {
        matches!(self, BootMode::UefiCd | BootMode::UefiUsb)
    }

    pub fn usb(self) -> bool {
        matches!(self, BootMode::BiosUsb | BootMode::UefiUsb)
    }
}

/// OVMF's code (read-only) and the template of its variable store.
#[derive(Debug, Clone)]
pub struct Ovmf {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// Debian's OVMF (package `ovmf`), 4 MiB flavour; panics naming the file
/// when it is missing (VM tests never skip).
pub fn ovmf() -> Ovmf {
    let dir = Path::new("/usr/share/OVMF");
    let pick = |names: &[&str]| {
        names
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "missing OVMF firmware {} (install the `ovmf` package: make deps)",
                    dir.join(names[0]).display()
                )
            })
    };
    Ovmf {
        code: pick(&["OVMF_CODE_4M.fd", "OVMF_CODE.fd"]),
        vars: pick(&["OVMF_VARS_4M.fd", "OVMF_VARS.fd"]),
    }
}

/// Debian's AAVMF (package `qemu-efi-aarch64`): UEFI for the aarch64 `virt`
/// machine; panics naming the file when it is missing.
pub fn aavmf() -> Ovmf {
    let dir = Path::new("/usr/share/AAVMF");
    let must = |n: &str| {
        let p = dir.join(n);
        assert!(
            p.is_file(),
            "missing UEFI firmware {} (install `qemu-efi-aarch64`: make deps)",
            p.display()
        );
        p
    };
    Ovmf {
        code: must("AAVMF_CODE.fd"),
        vars: must("AAVMF_VARS.fd"),
    }
}

/// The iPXE ROM for QEMU's e1000 NIC (package `ipxe-qemu`). The virtio ROMs
/// of Debian 12's iPXE (2019) do not drive QEMU 10's virtio-net; e1000 works.
pub fn ipxe_e1000_rom() -> PathBuf {
    let p = PathBuf::from("/usr/lib/ipxe/qemu/pxe-e1000.rom");
    assert!(
        p.is_file(),
        "missing {} (install the `ipxe-qemu` package: make deps)",
        p.display()
    );
    p
}

impl QemuCommand {
    /// UEFI firmware: OVMF code read-only, and a private copy of the
    /// variable store in `scratch` (each VM writes its own).
    pub fn with_ovmf(self, scratch: &Path) -> QemuCommand {
        let o = ovmf();
        self.with_pflash(&o, scratch)
    }

    /// The UEFI firmware of `arch` (OVMF on PCs, AAVMF on aarch64).
    pub fn with_uefi(self, arch: Arch, scratch: &Path) -> QemuCommand {
        match arch {
            Arch::Aarch64 => self.with_pflash(&aavmf(), scratch),
            Arch::X86_64 | Arch::I686 => self.with_ovmf(scratch),
        }
    }

    fn with_pflash(self, o: &Ovmf, scratch: &Path) -> QemuCommand {
        let vars = scratch.join("UEFI_VARS.fd");
        std::fs::copy(&o.vars, &vars)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", o.vars.display(), vars.display()));
        let mut code = std::ffi::OsString::from("if=pflash,format=raw,unit=0,readonly=on,file=");
        code.push(&o.code);
        let mut var = std::ffi::OsString::from("if=pflash,format=raw,unit=1,file=");
        var.push(&vars);
        self.arg("-drive").arg(code).arg("-drive").arg(var)
    }

    /// `image` as a read-only USB mass-storage disk on an EHCI controller,
    /// first in the boot order.
    pub fn with_usb_disk(self, image: &Path) -> QemuCommand {
        let mut drive = std::ffi::OsString::from("if=none,id=usbdisk,format=raw,readonly=on,file=");
        drive.push(image);
        self.arg("-drive")
            .arg(drive)
            .arg("-device")
            .arg("usb-ehci,id=ehci")
            .arg("-device")
            .arg("usb-storage,bus=ehci.0,drive=usbdisk,bootindex=0")
    }

    /// An x86_64 PC booting `iso` the given way.
    pub fn x86_64_boot(mode: BootMode, iso: &Path, accel: Accel, scratch: &Path) -> QemuCommand {
        let mut cmd = QemuCommand::x86_64(accel);
        if mode.uefi() {
            cmd = cmd.with_ovmf(scratch);
        }
        if mode.usb() {
            cmd.with_usb_disk(iso)
        } else {
            cmd.arg("-cdrom").arg(iso).arg("-boot").arg("d")
        }
    }

    /// An x86_64 PC (SeaBIOS) that boots from the network: QEMU's user
    /// network serves `dir` over TFTP and hands out `bootfile` by DHCP, and
    /// the e1000's iPXE ROM runs it.
    pub fn x86_64_netboot(dir: &Path, bootfile: &str, accel: Accel) -> QemuCommand {
        QemuCommand::pc_netboot(Arch::X86_64, dir, bootfile, accel)
    }

    /// [`QemuCommand::x86_64_netboot`] for a PC of either width (the BIOS
    /// iPXE ROM runs on both).
    pub fn pc_netboot(arch: Arch, dir: &Path, bootfile: &str, accel: Accel) -> QemuCommand {
        let mut netdev = std::ffi::OsString::from("user,id=net0,tftp=");
        netdev.push(dir);
        netdev.push(format!(",bootfile={bootfile}"));
        let mut nic = std::ffi::OsString::from("e1000,netdev=net0,romfile=");
        nic.push(ipxe_e1000_rom());
        arch.qemu(accel)
            .arg("-netdev")
            .arg(netdev)
            .arg("-device")
            .arg(nic)
            .arg("-boot")
            .arg("n")
    }
}

/// The demo media for the boot-mode tests.
#[derive(Debug, Clone)]
pub struct DemoMedia {
    pub iso: PathBuf,
    pub medium: PathBuf,
    /// `bzImage`, `initrd`, `netboot.ipxe`, `cmdline`.
    pub netboot: PathBuf,
    pub system: String,
    pub label: String,
    pub build_time: Duration,
}

/// Builds, in `dir`, the demo system, a hybrid ISO (BIOS and UEFI) whose
/// initrd reaches CD and USB drives (`--module-set base,cd,usb`), and the
/// netboot set with the same initrd contents.
pub fn build_demo_media(dir: &Path, label: &str) -> Result<DemoMedia, String> {
    let mut spec = artifacts::DemoSpec::new(crate::arch::Arch::X86_64, label);
    spec.modules.clear();
    spec.module_sets = vec!["base".into(), "cd".into(), "usb".into()];
    spec.netboot = true;
    let demo = artifacts::build_demo(dir, &spec)?;
    Ok(DemoMedia {
        netboot: demo.netboot.ok_or("the netboot set was not built")?,
        iso: demo.iso,
        medium: demo.medium,
        system: demo.system,
        label: demo.label,
        build_time: demo.build_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let iso = Path::new("/m/live.iso");
        let usb = QemuCommand::x86_64_boot(BootMode::BiosUsb, iso, Accel::Tcg, Path::new("/s"))
            .command_line();
        assert!(usb.contains("-drive if=none,id=usbdisk,format=raw,readonly=on,file=/m/live.iso"));
        assert!(usb.contains("usb-storage,bus=ehci.0,drive=usbdisk,bootindex=0"));
        assert!(!usb.contains("-cdrom") && !usb.contains("pflash"));
        let cd = QemuCommand::x86_64_boot(BootMode::BiosCd, iso, Accel::Tcg, Path::new("/s"))
            .command_line();
        assert!(cd.ends_with("-cdrom /m/live.iso -boot d"));
        let net =
            QemuCommand::x86_64_netboot(Path::new("/n"), "netboot.ipxe", Accel::Tcg).command_line();
        assert!(net.contains("-netdev user,id=net0,tftp=/n,bootfile=netboot.ipxe"));
        assert!(net.ends_with("-boot n"));
    }
}

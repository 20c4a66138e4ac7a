//! The ways a PC boots a nixlive medium, as QEMU command lines: the hybrid
//! ISO on a CD drive or as a USB disk, under SeaBIOS or OVMF (UEFI), and the
//! netboot set through the NIC's iPXE ROM over TFTP. Plus building the demo
//! media those boots need (an ISO whose initrd can reach CD and USB drives,
//! and a netboot directory).

use crate::artifacts;
use crate::qemu::{Accel, QemuCommand};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
        let vars = scratch.join("OVMF_VARS.fd");
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
        let mut netdev = std::ffi::OsString::from("user,id=net0,tftp=");
        netdev.push(dir);
        netdev.push(format!(",bootfile={bootfile}"));
        let mut nic = std::ffi::OsString::from("e1000,netdev=net0,romfile=");
        nic.push(ipxe_e1000_rom());
        QemuCommand::x86_64(accel)
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

fn run(mut cmd: Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("starting {shown}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// Builds, in `dir`, the demo system, a hybrid ISO (BIOS and UEFI) whose
/// initrd reaches CD and USB drives (`--module-set base,cd,usb`), and the
/// netboot set (`--module-set base`).
pub fn build_demo_media(dir: &Path, label: &str) -> Result<DemoMedia, String> {
    let p = artifacts::programs();
    let k = artifacts::kernel("amd64");
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let store_root = dir.join("root");
    let mut cmd = Command::new(&p.builder);
    cmd.arg("demo-system")
        .arg("--init")
        .arg(&p.demo_init)
        .arg("--postboot")
        .arg(&p.postboot)
        .arg("--root")
        .arg(&store_root);
    let system = run(cmd)?
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("/nix/store/"))
        .ok_or("`nixlive demo-system` printed no store path")?
        .to_string();
    let common = |cmd: &mut Command, sets: &str| {
        cmd.arg("--kernel")
            .arg(&k.vmlinuz)
            .arg("--modules-dir")
            .arg(&k.modules_dir)
            .arg("--module-set")
            .arg(sets)
            .arg("--init")
            .arg(&p.init)
            .arg("--store-root")
            .arg(&store_root)
            .arg("--system")
            .arg(&system);
    };
    let iso = dir.join("live.iso");
    let medium = dir.join("medium");
    let mut cmd = Command::new(&p.builder);
    cmd.arg("iso");
    common(&mut cmd, "base,cd,usb");
    cmd.arg("--label")
        .arg(label)
        .arg("--out")
        .arg(&iso)
        .arg("--medium-dir")
        .arg(&medium);
    run(cmd)?;
    let netboot = dir.join("netboot");
    let mut cmd = Command::new(&p.builder);
    cmd.arg("netboot");
    common(&mut cmd, "base");
    cmd.arg("--out").arg(&netboot);
    run(cmd)?;
    Ok(DemoMedia {
        iso,
        medium,
        netboot,
        system,
        label: label.to_string(),
        build_time: started.elapsed(),
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

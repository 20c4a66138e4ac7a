//! The three machines nixlive boots on, and what differs between them:
//! Debian's name, the musl target of the guest programs, the QEMU binary
//! and machine, the serial console, and the modules a demo initrd needs.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::artifacts::{must_exist, workspace_root};
use crate::qemu::{Accel, QemuCommand};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    I686,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::I686, Arch::Aarch64];

    /// Debian's architecture name, as in `.cache/kernels/<debian>`.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::I686 => "i386",
            Arch::Aarch64 => "arm64",
        }
    }

    pub fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::I686 => "i686-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// `uname -m` in the guest.
    pub fn uname(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I686 => "i686",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The serial console the kernel is told to use.
    pub fn console(self) -> &'static str {
        match self {
            Arch::X86_64 | Arch::I686 => "ttyS0,115200",
            Arch::Aarch64 => "ttyAMA0,115200",
        }
    }

    /// The guest program `name` built for this architecture; panics naming
    /// it when missing (VM tests never skip).
    pub fn guest_program(self, name: &str) -> PathBuf {
        must_exist(
            workspace_root()
                .join("target")
                .join(self.musl_target())
                .join("release")
                .join(name),
        )
    }

    /// Modules for a demo boot from the CD drive (PCs) or from a virtio
    /// disk (the aarch64 `virt` machine has no CD drive of its own).
    pub fn demo_modules(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 | Arch::I686 => {
                &["ata_piix", "sr_mod", "isofs", "loop", "squashfs", "overlay"]
            }
            Arch::Aarch64 => &[
                "virtio_pci",
                "virtio_blk",
                "isofs",
                "loop",
                "squashfs",
                "overlay",
            ],
        }
    }

    /// Builder flags for this machine's UEFI boot: aarch64 gets GRUB's
    /// arm64-efi program (modules from `make deps`), i686 no EFI program
    /// (32-bit UEFI PCs are not in the matrix), x86_64 the default.
    pub fn efi_builder_args(self) -> Vec<OsString> {
        match self {
            Arch::X86_64 => Vec::new(),
            Arch::I686 => vec!["--no-uefi".into()],
            Arch::Aarch64 => vec![
                "--efi-arch".into(),
                "aarch64".into(),
                "--grub-efi-dir".into(),
                must_exist(workspace_root().join(".cache/grub/arm64-efi")).into(),
            ],
        }
    }

    /// A bare VM of this architecture: 1 GiB, one CPU, serial on stdio,
    /// no display, exit instead of reboot.
    pub fn qemu(self, accel: Accel) -> QemuCommand {
        let (program, machine): (&str, &[&str]) = match self {
            Arch::X86_64 => ("qemu-system-x86_64", &["-M", "pc"]),
            // Rust's i686 targets assume SSE2 (Pentium 4 and later): a 32-bit Core Duo.
            Arch::I686 => ("qemu-system-i386", &["-M", "pc", "-cpu", "coreduo"]),
            // cortex-a57 is what TCG emulates quickly and the Debian kernel supports.
            Arch::Aarch64 => ("qemu-system-aarch64", &["-M", "virt", "-cpu", "cortex-a57"]),
        };
        let mut args: Vec<OsString> = machine.iter().map(OsString::from).collect();
        for a in [
            "-m",
            "1024",
            "-smp",
            "1",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-accel",
        ] {
            args.push(a.into());
        }
        // KVM runs only the host's own architecture.
        let accel = if self == Arch::X86_64 {
            accel
        } else {
            Accel::Tcg
        };
        args.push(accel.name().into());
        QemuCommand {
            program: program.into(),
            args,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_consistent() {
        for a in Arch::ALL {
            assert!(a.musl_target().starts_with(a.uname()) || a == Arch::I686);
            let q = a.qemu(Accel::Kvm);
            let line = q.command_line();
            assert!(line.contains("-serial stdio"), "{line}");
            if a != Arch::X86_64 {
                assert!(line.ends_with("-accel tcg"), "{line}");
            }
        }
        assert_eq!(Arch::I686.debian(), "i386");
        assert!(Arch::Aarch64.demo_modules().contains(&"virtio_blk"));
    }
}

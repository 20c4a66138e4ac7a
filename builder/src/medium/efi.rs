//! UEFI boot: a standalone GRUB EFI program (`grub-mkimage`, Debian's
//! grub-efi-amd64-bin) whose embedded configuration finds the medium by its
//! label and reads `/boot/grub/grub.cfg` from it, and the FAT EFI system
//! partition image that carries it (El Torito EFI entry on CD, GPT/MBR
//! partition on USB). Both come out byte-identical for the same inputs:
//! grub-mkimage writes no timestamps, `mkfs.vfat --invariant` fixes the
//! serial and times, and mtools takes its times from `SOURCE_DATE_EPOCH`.
//!
//! Non-goals: no Secure Boot (no shim, no signing), no EFI stub booting
//! without GRUB.

use super::BootArgs;
use crate::files::{self, copy, create_dir, write};
use crate::outputs::{Kind, Outputs};
use crate::tool;
use anyhow::{Context, Result, ensure};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The machine an EFI program is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EfiArch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "aarch64")]
    Aarch64,
}

impl EfiArch {
    /// GRUB's platform name (`grub-mkimage -O`, module directory).
    pub fn grub_target(self) -> &'static str {
        match self {
            EfiArch::X86_64 => "x86_64-efi",
            EfiArch::Aarch64 => "arm64-efi",
        }
    }

    /// The removable-media path firmware looks for, under `EFI/BOOT/`.
    pub fn boot_file(self) -> &'static str {
        match self {
            EfiArch::X86_64 => "BOOTX64.EFI",
            EfiArch::Aarch64 => "BOOTAA64.EFI",
        }
    }

    fn package(self) -> &'static str {
        match self {
            EfiArch::X86_64 => "grub-efi-amd64-bin",
            EfiArch::Aarch64 => "grub-efi-arm64-bin",
        }
    }
}

/// GRUB modules the EFI program needs to find and boot the medium.
const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "iso9660",
    "fat",
    "search",
    "search_label",
    "configfile",
    "normal",
    "linux",
    "echo",
    "serial",
    "terminal",
    "test",
    "all_video",
    "gzio",
];

/// FAT cannot date files before 1980.
const FAT_EPOCH_MIN: u64 = 315_532_800;

/// The configuration built into the EFI program: find the medium by label,
/// then read its `grub.cfg` (so the kernel command line lives on the medium).
fn early_cfg(label: &str) -> String {
    format!(
        "search --no-floppy --set=root --label {label}\n\
         set prefix=($root)/boot/grub\n\
         configfile ($root)/boot/grub/grub.cfg\n\
         echo \"nixlive: no medium labelled {label} found\"\n"
    )
}

/// The kernel parameters as GRUB's script language must see them to pass
/// them on unchanged: each word the kernel would see (double quotes
/// grouping) is single-quoted when it holds anything but plain characters.
/// Unquoted, GRUB expands `$6$salt$...` (a `live.nixos.passwordHash=`) to
/// nothing and takes `\`, `;`, `#` as syntax. GRUB passes a word with a
/// space on to the kernel in double quotes, which the kernel groups.
fn grub_words(params: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._,:/=+@%-".contains(c);
    nixlive_formats::cmdline::words(params)
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(plain) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/boot/grub/grub.cfg`: serial and screen, no menu wait, the same kernel
/// and parameters as the BIOS path.
fn grub_cfg(params: &str) -> String {
    let params = grub_words(params);
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\
         set timeout=0\n\
         set default=0\n\
         \n\
         menuentry \"nixlive\" {{\n\
         \x20 linux /boot/vmlinuz {params}\n\
         \x20 initrd /boot/initrd\n\
         }}\n"
    )
}

/// UEFI boot for the medium tree `dir`: GRUB as `EFI/BOOT/<boot file>`, its
/// `boot/grub/grub.cfg`, and the EFI system partition image `boot/efi.img`.
pub fn install(
    b: &BootArgs,
    dir: &Path,
    params: &str,
    work: &Path,
    epoch: u64,
    outs: &mut Outputs,
) -> Result<()> {
    let arch = b.efi_arch;
    let boot = dir.join("boot");
    let efi = work.join(arch.boot_file());
    let grub_dir = b
        .grub_efi_dir
        .clone()
        .unwrap_or_else(|| Path::new("/usr/lib/grub").join(arch.grub_target()));
    make_grub_efi(arch, &grub_dir, &b.label, work, &efi)?;
    write(&boot.join("grub/grub.cfg"), grub_cfg(params).as_bytes())?;
    let efi_boot = dir.join("EFI/BOOT");
    create_dir(&efi_boot)?;
    copy(&efi, &efi_boot.join(arch.boot_file()))?;
    make_esp(&efi, arch.boot_file(), &boot.join("efi.img"), epoch)?;
    outs.add(Kind::EfiImage, boot.join("efi.img"))
}

/// Writes the GRUB EFI program for `arch` to `out`.
fn make_grub_efi(
    arch: EfiArch,
    grub_dir: &Path,
    label: &str,
    work: &Path,
    out: &Path,
) -> Result<()> {
    ensure!(
        grub_dir.join("linux.mod").is_file(),
        "{} has no GRUB {} modules (install {}, or pass --grub-efi-dir)",
        grub_dir.display(),
        arch.grub_target(),
        arch.package()
    );
    let cfg = work.join("grub-early.cfg");
    fs::write(&cfg, early_cfg(label)).with_context(|| format!("writing {}", cfg.display()))?;
    let mut cmd = Command::new("grub-mkimage");
    cmd.args(["-O", arch.grub_target(), "-p", "/boot/grub", "-d"])
        .arg(grub_dir)
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(out)
        .args(GRUB_MODULES);
    tool::run(&mut cmd, "grub-mkimage")
}

/// Size in KiB of an ESP that holds a file of `efi_len` bytes: the file,
/// 1 MiB for FAT structures and slack, rounded up to whole MiB.
fn esp_kib(efi_len: u64) -> u64 {
    (efi_len + (1 << 20)).div_ceil(1 << 20) * 1024
}

/// Writes the FAT image `out` holding `efi` as `EFI/BOOT/<boot_file>`.
fn make_esp(efi: &Path, boot_file: &str, out: &Path, epoch: u64) -> Result<()> {
    let len = fs::metadata(efi)
        .with_context(|| format!("stat {}", efi.display()))?
        .len();
    files::remove_old(out)?;
    let epoch = epoch.max(FAT_EPOCH_MIN);
    let f = fs::File::options()
        .write(true)
        .open(efi)
        .with_context(|| format!("opening {}", efi.display()))?;
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(epoch))
        .with_context(|| format!("setting mtime of {}", efi.display()))?;
    drop(f);
    let e = epoch.to_string();
    let mut cmd = Command::new("mkfs.vfat");
    cmd.args(["-C", "--invariant", "-n", "NIXLIVE-ESP"])
        .arg(out)
        .arg(esp_kib(len).to_string())
        .env("SOURCE_DATE_EPOCH", &e);
    tool::run(&mut cmd, "mkfs.vfat (dosfstools)")?;
    let mut cmd = Command::new("mmd");
    cmd.arg("-i")
        .arg(out)
        .args(["::/EFI", "::/EFI/BOOT"])
        .env("SOURCE_DATE_EPOCH", &e)
        .env("MTOOLS_SKIP_CHECK", "1");
    tool::run(&mut cmd, "mmd (mtools)")?;
    let mut cmd = Command::new("mcopy");
    cmd.arg("-m")
        .arg("-i")
        .arg(out)
        .arg(efi)
        .arg(format!("::/EFI/BOOT/{boot_file}"))
        .env("SOURCE_DATE_EPOCH", &e)
        .env("MTOOLS_SKIP_CHECK", "1");
    tool::run(&mut cmd, "mcopy (mtools)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs() {
        let e = early_cfg("NIXLIVE");
        assert!(e.starts_with("search --no-floppy --set=root --label NIXLIVE\n"));
        assert!(e.contains("configfile ($root)/boot/grub/grub.cfg\n"));
        let g = grub_cfg("root=LABEL=X init=/nix/store/a/init");
        assert!(g.contains("set timeout=0\n"));
        assert!(g.contains("  linux /boot/vmlinuz root=LABEL=X init=/nix/store/a/init\n"));
        assert!(g.contains("  initrd /boot/initrd\n"));
    }

    #[test]
    fn grub_sees_every_word_literally() {
        assert_eq!(
            grub_words(r#"a=1 live.nixos.passwordHash=$6$s$h "k=x y" q=it's b\c"#),
            r#"a=1 'live.nixos.passwordHash=$6$s$h' 'k=x y' 'q=it'\''s' 'b\c'"#
        );
    }

    #[test]
    fn esp_sizes() {
        assert_eq!(esp_kib(0), 1024);
        assert_eq!(esp_kib(688_128), 2048);
        assert_eq!(esp_kib(3 << 20), 4096);
    }
}

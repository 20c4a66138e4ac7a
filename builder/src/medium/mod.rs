//! The medium tree: what the ISO holds, or what is copied onto a USB stick
//! labelled --label. `boot/` holds the kernel and the initrd, the root the
//! store images and their manifest; BIOS boots it through ISOLINUX
//! ([`bios`]), UEFI through GRUB ([`efi`]). Every file gets the build's
//! one timestamp.
//!
//! Non-goals: no partitioning or writing to devices; a reused directory is
//! only emptied of what an earlier build put there.

pub mod bios;
pub mod efi;
pub mod target;

use crate::cmdline;
use crate::epoch::{source_date_epoch, tree_time};
use crate::files::{copy, create_dir, set_mtimes, write};
use crate::images::ImageFormat;
use crate::outputs::{Kind, Outputs};
use crate::pipeline::{Build, CommonArgs};
use anyhow::{Context, Result, ensure};
use std::fs;
use std::path::{Path, PathBuf};

/// The most SSH keys init reads from a medium (64 KiB).
const MEDIUM_KEYS_MAX: u64 = nixlive_formats::paths::MEDIUM_KEYS_MAX;

/// What the medium tree holds besides its images; anything else in
/// a reused --medium-dir is an error.
const MEDIUM_ENTRIES: [&str; 5] = ["nixlive.manifest", "boot", "isolinux", "EFI", "nixlive"];

/// Bootloader files for the medium.
#[derive(Debug, Clone, clap::Args)]
pub struct BootArgs {
    /// ISO volume ID, also root=LABEL=... and GRUB's search label (at most
    /// 32 bytes of A-Z a-z 0-9 _ - .).
    #[arg(long)]
    pub label: String,
    /// Leave out UEFI boot (GRUB and the EFI system partition image).
    #[arg(long)]
    pub no_uefi: bool,
    /// The machine the EFI program is for (x86_64: BOOTX64.EFI, aarch64: BOOTAA64.EFI).
    #[arg(long, value_enum, default_value_t = efi::EfiArch::X86_64)]
    pub efi_arch: efi::EfiArch,
    /// Directory of GRUB's EFI modules for --efi-arch [default:
    /// /usr/lib/grub/x86_64-efi or /usr/lib/grub/arm64-efi].
    #[arg(long, value_name = "DIR")]
    pub grub_efi_dir: Option<PathBuf>,
    /// ISOLINUX's boot image (package isolinux).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/ISOLINUX/isolinux.bin"
    )]
    pub isolinux_bin: PathBuf,
    /// ISOLINUX's core module (package syslinux-common).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
    )]
    pub ldlinux_c32: PathBuf,
    /// The hybrid MBR that makes the ISO bootable from a USB disk under BIOS.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/ISOLINUX/isohdpfx.bin"
    )]
    pub isohdpfx: PathBuf,
}

/// What a medium is built from (`iso` and `medium`).
#[derive(Debug, clap::Args)]
pub struct MediumArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub boot: BootArgs,
    /// SSH keys put on the medium as nixlive/authorized_keys and listed,
    /// with their size and sha256, in the (signed) manifest: init checks
    /// them against it when the initrd trusts a key. --authorized-keys
    /// packs keys into the initrd instead.
    #[arg(long = "medium-authorized-keys", value_name = "FILE")]
    pub medium_keys: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("volume label is empty")]
    Empty,
    #[error("volume label `{0}` is longer than 32 bytes")]
    TooLong(String),
    #[error("volume label `{0}` may only hold A-Z a-z 0-9 `_` `-` `.`")]
    BadChar(String),
}

/// Checks an ISO 9660 volume ID that also has to survive `root=LABEL=...`
/// on the kernel command line.
fn check_label(label: &str) -> Result<(), LabelError> {
    if label.is_empty() {
        return Err(LabelError::Empty);
    }
    if label.len() > 32 {
        return Err(LabelError::TooLong(label.to_string()));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(LabelError::BadChar(label.to_string()));
    }
    Ok(())
}

/// Builds the medium tree in `dir` (which must be empty or an earlier
/// medium) and returns what it holds. `medium_fs` is the filesystem the
/// tree will be on (`iso9660` for an ISO; `None`: the user's choice, and
/// then a FAT filesystem under `dir` must be able to hold the tree:
/// [`target::check_dir`]). `default_limit` is the image size limit
/// without --max-image-size.
pub fn build(
    m: &MediumArgs,
    dir: &Path,
    medium_fs: Option<&'static str>,
    default_limit: Option<u64>,
) -> Result<Outputs> {
    let (c, b) = (&m.common, &m.boot);
    let epoch = source_date_epoch()?;
    let params = check(c, b)?;
    let keys = m.medium_keys.as_deref().map(read_medium_keys).transpose()?;
    let machine = c.check_boot(medium_fs)?;
    let build = Build::start(c, epoch, "nixlive-build.", default_limit)?;
    build.check_stage2(machine)?;
    if medium_fs.is_none() {
        target::check_dir(dir, &build.closure, &build.layout, &c.kernel)?;
    }
    let initrd = build.initrd()?;
    prepare_dir(dir)?;
    let mut outs = Outputs::default();
    let boot = dir.join("boot");
    write(&boot.join("initrd"), &initrd)?;
    copy(&c.kernel, &boot.join("vmlinuz"))?;
    outs.add(Kind::Kernel, boot.join("vmlinuz"))?;
    outs.add(Kind::Initrd, boot.join("initrd"))?;
    let listed = match &keys {
        Some(k) => vec![put_medium_keys(dir, k)?],
        None => Vec::new(),
    };
    let manifest = build.images(dir, &listed)?;
    for i in &manifest.images {
        outs.add(Kind::Image(c.images.format()), dir.join(&i.name))?;
    }
    outs.add(
        Kind::Manifest,
        dir.join(nixlive_formats::manifest::DEFAULT_PATH),
    )?;
    bios::install(b, dir, &params)?;
    if !b.no_uefi {
        efi::install(b, dir, &params, build.work(), epoch, &mut outs)?;
    }
    set_mtimes(dir, tree_time(epoch))?;
    Ok(outs)
}

/// The --medium-authorized-keys file: text, within what init reads.
fn read_medium_keys(p: &Path) -> Result<Vec<u8>> {
    let data =
        fs::read(p).with_context(|| format!("reading --medium-authorized-keys {}", p.display()))?;
    ensure!(
        std::str::from_utf8(&data).is_ok(),
        "--medium-authorized-keys {} is not text",
        p.display()
    );
    ensure!(
        data.len() as u64 <= MEDIUM_KEYS_MAX,
        "--medium-authorized-keys {} is {} bytes; init reads at most {MEDIUM_KEYS_MAX}",
        p.display(),
        data.len()
    );
    Ok(data)
}

/// Puts the keys on the medium; returns their name for the manifest.
fn put_medium_keys(dir: &Path, keys: &[u8]) -> Result<&'static str> {
    let name = nixlive_formats::paths::MEDIUM_KEYS_NAME;
    write(&dir.join(name), keys)?;
    Ok(name)
}

/// Checks the label, the kernel and the bootloader files before anything is
/// built; returns the kernel command line.
fn check(c: &CommonArgs, b: &BootArgs) -> Result<String> {
    check_label(&b.label).context("--label")?;
    let params =
        cmdline::medium_params(&b.label, &c.inputs.system, &c.append).context("--append")?;
    c.check_kernel()?;
    for (p, flag) in [
        (&b.isolinux_bin, "--isolinux-bin"),
        (&b.ldlinux_c32, "--ldlinux-c32"),
        (&b.isohdpfx, "--isohdpfx"),
    ] {
        ensure!(
            p.is_file(),
            "{flag} {} is not a file (install isolinux and syslinux-common)",
            p.display()
        );
    }
    Ok(params)
}

/// Empties a reused medium directory of what an earlier build put there, and
/// refuses one that holds anything else.
fn prepare_dir(dir: &Path) -> Result<()> {
    create_dir(dir)?;
    let mut names = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        names.push(
            e.with_context(|| format!("listing {}", dir.display()))?
                .file_name(),
        );
    }
    let ours = |n: &std::ffi::OsString| {
        MEDIUM_ENTRIES.iter().any(|m| n.as_os_str() == *m)
            || n.to_str().is_some_and(ImageFormat::is_image_name)
    };
    let foreign: Vec<_> = names.iter().filter(|n| !ours(n)).collect();
    ensure!(
        foreign.is_empty(),
        "--medium-dir {} holds {:?}, which is not part of a nixlive medium; use an empty directory",
        dir.display(),
        foreign
    );
    for n in names {
        let p = dir.join(&n);
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.with_context(|| format!("removing old {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(check_label("NIXLIVE").is_ok());
        assert!(check_label("nixos-24.05_x86").is_ok());
        assert!(check_label(&"A".repeat(32)).is_ok());
        assert_eq!(check_label(""), Err(LabelError::Empty));
        assert!(matches!(
            check_label(&"A".repeat(33)),
            Err(LabelError::TooLong(_))
        ));
        assert!(matches!(check_label("A B"), Err(LabelError::BadChar(_))));
        assert!(matches!(check_label("A/B"), Err(LabelError::BadChar(_))));
    }

    #[test]
    fn medium_keys_are_text_within_what_init_reads() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys");
        fs::write(&p, b"ssh-ed25519 AAAA me\n").unwrap();
        assert_eq!(read_medium_keys(&p).unwrap(), b"ssh-ed25519 AAAA me\n");
        fs::write(&p, b"\xff\xfe").unwrap();
        let e = read_medium_keys(&p).unwrap_err().to_string();
        assert!(e.contains("is not text"), "{e}");
        fs::write(&p, vec![b'#'; MEDIUM_KEYS_MAX as usize + 1]).unwrap();
        let e = read_medium_keys(&p).unwrap_err().to_string();
        assert!(e.contains("init reads at most 65536"), "{e}");
        let tree = d.path().join("tree");
        assert_eq!(
            put_medium_keys(&tree, b"k\n").unwrap(),
            "nixlive/authorized_keys"
        );
        assert_eq!(
            fs::read(tree.join("nixlive/authorized_keys")).unwrap(),
            b"k\n"
        );
        // A reused medium directory may hold them.
        prepare_dir(&tree).unwrap();
        assert_eq!(fs::read_dir(&tree).unwrap().count(), 0);
    }

    #[test]
    fn medium_dir_is_reused_only_when_ours() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("boot")).unwrap();
        fs::write(d.path().join("base.squashfs"), b"").unwrap();
        prepare_dir(d.path()).unwrap();
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        fs::write(d.path().join("notes.txt"), b"").unwrap();
        let e = prepare_dir(d.path()).unwrap_err();
        assert!(e.to_string().contains("notes.txt"), "{e}");
    }
}

//! The medium tree: what the ISO holds, or what is copied onto a USB stick
//! labelled --label. `boot/` holds the kernel and the initrd, the root the
//! store images and their manifest; BIOS boots it through ISOLINUX
//! ([`bios`]), UEFI through GRUB ([`efi`]). Every file gets the build's
//! one timestamp.
//!
//! The tree is written beside its final directory and put in place whole
//! ([`crate::atomic`]); an existing directory is replaced only when it
//! holds nothing but an earlier medium.
//!
//! Non-goals: no partitioning or writing to devices.

pub mod bios;
pub mod efi;
pub mod target;

use crate::atomic::OutDir;
use crate::cmdline;
use crate::epoch::{source_date_epoch, tree_time};
use crate::files::{copy, set_mtimes, write};
use crate::images::ImageFormat;
use crate::outputs::{Kind, Outputs};
use crate::overlap;
use crate::pipeline::{Build, CommonArgs};
use anyhow::{Context, Result, ensure};
use std::fs;
use std::path::{Path, PathBuf};

/// The most SSH keys init reads from a medium (64 KiB).
const MEDIUM_KEYS_MAX: u64 = nixlive_formats::paths::MEDIUM_KEYS_MAX;

/// What the medium tree holds besides its images; anything else in
/// a directory it would replace is an error.
pub const MEDIUM_ENTRIES: [&str; 5] = ["nixlive.manifest", "boot", "isolinux", "EFI", "nixlive"];

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

/// A medium build whose checks passed, ready to write its tree.
pub struct Prepared<'a> {
    m: &'a MediumArgs,
    params: String,
    epoch: u64,
    build: Build<'a>,
    /// --medium-authorized-keys, read and checked.
    keys: Option<Vec<u8>>,
}

/// Checks everything a medium tree for `dest` needs before anything is
/// written, and loads the closure. `medium_fs` is the filesystem the
/// tree will be on (`iso9660` for an ISO; `None`: the user's choice, and
/// then a FAT filesystem under `dest` must be able to hold the tree:
/// [`target::check_dir`]). `default_limit` is the image size limit
/// without --max-image-size.
pub fn prepare<'a>(
    m: &'a MediumArgs,
    dest: &Path,
    medium_fs: Option<&'static str>,
    default_limit: Option<u64>,
) -> Result<Prepared<'a>> {
    let (c, b) = (&m.common, &m.boot);
    let epoch = source_date_epoch()?;
    let params = check(c, b)?;
    let keys = m.medium_keys.as_deref().map(read_medium_keys).transpose()?;
    let machine = c.check_boot(medium_fs)?;
    let build = Build::start(c, epoch, "nixlive-build.", default_limit)?;
    build.check_stage2(machine)?;
    if medium_fs.is_none() {
        target::check_dir(dest, &build.closure, &build.layout, &c.kernel)?;
    }
    Ok(Prepared {
        m,
        params,
        epoch,
        build,
        keys,
    })
}

impl Prepared<'_> {
    /// Writes the medium tree into the empty directory `dir` and returns
    /// what it holds.
    pub fn write(&self, dir: &Path) -> Result<Outputs> {
        let (c, b, build, epoch) = (&self.m.common, &self.m.boot, &self.build, self.epoch);
        let initrd = build.initrd()?;
        let mut outs = Outputs::default();
        let boot = dir.join("boot");
        write(&boot.join("initrd"), &initrd)?;
        copy(&c.kernel, &boot.join("vmlinuz"))?;
        outs.add(Kind::Kernel, boot.join("vmlinuz"))?;
        outs.add(Kind::Initrd, boot.join("initrd"))?;
        let listed = match &self.keys {
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
        bios::install(b, dir, &self.params)?;
        if !b.no_uefi {
            efi::install(b, dir, &self.params, build.work(), epoch, &mut outs)?;
        }
        set_mtimes(dir, tree_time(epoch))?;
        Ok(outs)
    }
}

/// Builds the medium tree as the directory `dest` (replacing an earlier
/// medium there whole, once the new one is complete) and returns what it
/// holds.
pub fn build_dir(
    m: &MediumArgs,
    dest: &Path,
    medium_fs: Option<&'static str>,
    default_limit: Option<u64>,
    flag: &str,
) -> Result<Outputs> {
    check_reusable(dest, flag, &MEDIUM_ENTRIES)?;
    let prepared = prepare(m, dest, medium_fs, default_limit)?;
    let out = OutDir::new(dest)?;
    let tmp = out.path().to_path_buf();
    let mut outs = prepared.write(&tmp)?;
    out.commit()?;
    outs.rebase(&tmp, dest);
    Ok(outs)
}

/// The inputs a medium reads: [`overlap::common_inputs`] and the boot
/// loader files.
pub fn inputs(m: &MediumArgs) -> Vec<(&'static str, PathBuf)> {
    let b = &m.boot;
    let mut v = overlap::common_inputs(&m.common);
    v.push(("--isolinux-bin", b.isolinux_bin.clone()));
    v.push(("--ldlinux-c32", b.ldlinux_c32.clone()));
    v.push(("--isohdpfx", b.isohdpfx.clone()));
    overlap::push_opt(&mut v, "--grub-efi-dir", &b.grub_efi_dir);
    overlap::push_opt(&mut v, "--medium-authorized-keys", &m.medium_keys);
    v
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

/// Refuses to replace an existing directory `dir` that holds anything
/// but `ours` (the entries of an earlier build) and store images.
pub fn check_reusable(dir: &Path, flag: &str, ours: &[&str]) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names = Vec::new();
    for e in entries {
        names.push(
            e.with_context(|| format!("listing {}", dir.display()))?
                .file_name(),
        );
    }
    let is_ours = |n: &std::ffi::OsString| {
        ours.iter().any(|m| n.as_os_str() == *m)
            || n.to_str().is_some_and(ImageFormat::is_image_name)
    };
    let foreign: Vec<_> = names.iter().filter(|n| !is_ours(n)).collect();
    ensure!(
        foreign.is_empty(),
        "{flag} {} holds {:?}, which an earlier build did not write there; \
         the build replaces the directory whole: use an empty or new one",
        dir.display(),
        foreign
    );
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
    fn medium_dir_is_reused_only_when_ours() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("boot")).unwrap();
        fs::write(d.path().join("base.squashfs"), b"").unwrap();
        check_reusable(d.path(), "--out", &MEDIUM_ENTRIES).unwrap();
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
        check_reusable(&d.path().join("new"), "--out", &MEDIUM_ENTRIES).unwrap();
        fs::write(d.path().join("notes.txt"), b"").unwrap();
        let e = check_reusable(d.path(), "--out", &MEDIUM_ENTRIES).unwrap_err();
        assert!(e.to_string().contains("notes.txt"), "{e}");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 3);
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
        // A medium directory that is replaced may hold them.
        assert!(MEDIUM_ENTRIES.contains(&"nixlive"));
    }
}

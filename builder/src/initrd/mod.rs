//! The initrd: a cpio newc archive ([`cpio`]) holding the static init, the
//! kernel modules and firmware ([`modules`]), the initrd configuration and
//! optionally a shell and SSH keys; compressed with zstd, gzip or xz;
//! --extra-cpio archives appended as they are.
//!
//! Non-goals: no initrd contents beyond what init needs (no udev, no
//! busybox unless given), no reading of existing initrds.

pub mod cpio;
pub mod modules;

use crate::epoch::mtime32;
use crate::files::{read, read_text};
use crate::tool;
use anyhow::{Context, Result, ensure};
use cpio::{Archive, Kind};
use modules::{InitrdSpec, Notes};
use nixlive_formats::paths;
use nixlive_formats::unpack::Codec;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// How the initrd is made.
#[derive(Debug, Clone, clap::Args)]
pub struct InitrdArgs {
    /// The kernel's /lib/modules/VERSION directory (with modules.dep).
    #[arg(long, value_name = "DIR")]
    pub modules_dir: PathBuf,
    /// Module to load in the initrd, with its dependencies (repeatable); it
    /// must exist.
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// Named module sets (repeatable or comma-separated): base, cd, sata,
    /// usb, virtio, nvme, net, mmc, fs. Names the kernel lacks are skipped.
    #[arg(long = "module-set", value_name = "SET[,SET]")]
    pub module_sets: Vec<String>,
    /// Where firmware named by the modules is looked up (repeatable).
    #[arg(
        long = "firmware-dir",
        value_name = "DIR",
        default_value = "/lib/firmware"
    )]
    pub firmware_dirs: Vec<PathBuf>,
    /// The kernel's build configuration (`.config`); it tells whether the
    /// kernel reads compressed firmware. Default: `MODULES_DIR/build/.config`
    /// when it exists; without one, firmware is packed decompressed.
    #[arg(long, value_name = "FILE")]
    pub kernel_config: Option<PathBuf>,
    /// Static stage-1 init (nixlive-init), packed as /init.
    #[arg(long, value_name = "BIN")]
    pub init: PathBuf,
    /// Initrd compression.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: Compression,
    /// A cpio archive (compressed or not) appended to the initrd as it is,
    /// e.g. keys or configuration (repeatable, in order).
    #[arg(long = "extra-cpio", value_name = "FILE")]
    pub extra_cpio: Vec<PathBuf>,
    /// An authorized_keys file packed into the initrd; the post-boot agent
    /// installs its keys for root (init hands it over in /run/nixlive).
    #[arg(long = "authorized-keys", value_name = "FILE")]
    pub authorized_keys: Option<PathBuf>,
    /// A static shell (e.g. busybox) packed as /bin/sh, which init starts
    /// on failure with boot.shell_on_fail and at the boot.debug1* stops.
    /// Without one the initrd has no shell.
    #[arg(long, value_name = "BIN")]
    pub shell: Option<PathBuf>,
    /// Trust this Nix public key (from `nix-store
    /// --generate-binary-cache-key`; repeatable): init then boots only a
    /// medium whose manifest it signed, and checks every image.
    #[arg(long = "trusted-key", value_name = "PUBLIC", value_parser = crate::keys::public_key_file)]
    pub trusted_keys: Vec<crate::keys::KeyFile<nixlive_formats::nixkey::PublicKey>>,
    /// What `root=` names at boot: set by `tarball` and `disk-image` (a
    /// plain root), live media otherwise.
    #[arg(skip)]
    pub root: nixlive_formats::RootMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Zstd,
    Gzip,
    Xz,
    None,
}

/// The compressed initrd: the main archive, then each --extra-cpio. With
/// `verity`, the kernel's dm-verity module comes too (when it has one), so
/// that init can read images through their hash trees.
pub fn build(a: &InitrdArgs, epoch: u64, verity: bool) -> Result<Vec<u8>> {
    let init = read(&a.init, "--init")?;
    let mut optional = modules::module_set(&a.module_sets).context("--module-set")?;
    if verity && !optional.iter().any(|m| m == "dm_verity") {
        optional.push("dm_verity".into());
    }
    let coldplug = modules::coldplug_set(&a.module_sets).context("--module-set")?;
    let firmware_codecs = firmware_codecs(a)?;
    let (mut archive, notes) = modules::archive(&InitrdSpec {
        init: &init,
        modules_dir: &a.modules_dir,
        modules: &a.modules,
        optional_modules: &optional,
        coldplug_modules: &coldplug,
        firmware_dirs: &a.firmware_dirs,
        firmware_codecs: &firmware_codecs,
        root: a.root,
    })?;
    print_notes(&notes);
    add_shell_and_keys(&mut archive, a)?;
    let mut out = compress(&archive.to_bytes(mtime32(epoch)?), a.compression)?;
    for f in &a.extra_cpio {
        let seg = read(f, "--extra-cpio")?;
        ensure!(
            seg.starts_with(b"070701") || compressed_magic(&seg),
            "--extra-cpio {} is neither a newc cpio archive nor gzip/zstd/xz compressed",
            f.display()
        );
        append_segment(&mut out, &seg);
    }
    Ok(out)
}

/// The compressed firmware formats the kernel reads, from --kernel-config
/// or the modules directory's `build/.config`.
fn firmware_codecs(a: &InitrdArgs) -> Result<Vec<Codec>> {
    let config = match &a.kernel_config {
        Some(f) => Some(read_text(f, "--kernel-config")?),
        None => fs::read_to_string(a.modules_dir.join("build/.config")).ok(),
    };
    Ok(config
        .as_deref()
        .map(modules::firmware_codecs)
        .unwrap_or_default())
}

fn print_notes(notes: &Notes) {
    for b in &notes.builtin {
        eprintln!("note: module {b} is built into the kernel, not packed");
    }
    if !notes.skipped.is_empty() {
        eprintln!(
            "note: module sets name modules this kernel lacks, skipped: {}",
            notes.skipped.join(" ")
        );
    }
    for fw in &notes.missing_firmware {
        eprintln!(
            "note: firmware {fw} named by a module: not found in the firmware directories; not packed"
        );
    }
}

/// --shell as /bin/sh and --authorized-keys where init finds them.
fn add_shell_and_keys(archive: &mut Archive, a: &InitrdArgs) -> Result<()> {
    if let Some(sh) = &a.shell {
        let data = read(sh, "--shell")?;
        ensure!(
            data.starts_with(b"\x7fELF"),
            "--shell {} is not an ELF program (a static one is needed: the initrd has no libraries)",
            sh.display()
        );
        archive.add("/bin/sh", 0o755, Kind::File(data))?;
    }
    if let Some(keys) = &a.authorized_keys {
        let data = read(keys, "--authorized-keys")?;
        ensure!(
            std::str::from_utf8(&data).is_ok(),
            "--authorized-keys {} is not text",
            keys.display()
        );
        archive.add(paths::INITRD_KEYS, 0o600, Kind::File(data))?;
    }
    if !a.trusted_keys.is_empty() {
        let mut text = String::new();
        for k in &a.trusted_keys {
            ensure!(
                !text
                    .lines()
                    .any(|l| l.split_once(':').is_some_and(|(n, _)| n == k.name)),
                "--trusted-key: two keys are named {}",
                k.name
            );
            text.push_str(&format!("{k}\n"));
        }
        archive.add(
            nixlive_formats::nixkey::TRUSTED_KEYS,
            0o444,
            Kind::File(text.into_bytes()),
        )?;
    }
    Ok(())
}

fn compressed_magic(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
        || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || b.starts_with(b"\xfd7zXZ\0")
}

pub fn compress(data: &[u8], c: Compression) -> Result<Vec<u8>> {
    match c {
        Compression::Zstd => zstd::stream::encode_all(data, 19).context("zstd compression"),
        Compression::Gzip => {
            let mut e = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::best());
            e.write_all(data).context("gzip compression")?;
            e.finish().context("gzip compression")
        }
        // The kernel's xz decoder wants CRC32 checks and a bounded dictionary;
        // one thread keeps the output the same everywhere.
        Compression::Xz => tool::pipe(
            Command::new("xz").args([
                "--format=xz",
                "--check=crc32",
                "--lzma2=preset=6,dict=1MiB",
                "--threads=1",
                "-c",
            ]),
            data,
            "xz",
        ),
        Compression::None => Ok(data.to_vec()),
    }
}

/// Appends `segment` to an initrd, first padding it to a multiple of 4
/// bytes (the kernel skips zero bytes between archives, and an uncompressed
/// archive must start 4-aligned).
pub fn append_segment(initrd: &mut Vec<u8>, segment: &[u8]) {
    while !initrd.len().is_multiple_of(4) {
        initrd.push(0);
    }
    initrd.extend_from_slice(segment);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn extra_cpio_kinds() {
        assert!(compressed_magic(&[0x1f, 0x8b, 8]));
        assert!(compressed_magic(b"\xfd7zXZ\0.."));
        assert!(!compressed_magic(b"hello"));
    }

    #[test]
    fn compression_round_trips() {
        let data = b"hello initrd ".repeat(1000);
        let z = compress(&data, Compression::Zstd).unwrap();
        assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(zstd::stream::decode_all(&z[..]).unwrap(), data);
        let g = compress(&data, Compression::Gzip).unwrap();
        assert_eq!(&g[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&g[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(compress(&data, Compression::Gzip).unwrap(), g);
        let x = compress(&data, Compression::Xz).unwrap();
        assert_eq!(&x[..6], b"\xfd7zXZ\0");
        // Stream flags: check type 1 = CRC32, which the kernel's decoder takes.
        assert_eq!(x[7], 1);
        assert_eq!(compress(&data, Compression::Xz).unwrap(), x);
        assert_eq!(
            tool::pipe(Command::new("xz").arg("-dc"), &x, "xz").unwrap(),
            data
        );
    }

    #[test]
    fn segments_are_aligned() {
        let mut v = vec![1, 2, 3, 4, 5];
        append_segment(&mut v, b"0707");
        assert_eq!(v, [1, 2, 3, 4, 5, 0, 0, 0, b'0', b'7', b'0', b'7']);
    }
}

//! The erofs image format: an erofs whose root holds the store paths and
//! `nix-path-registration`, laid out as `nix-store.squashfs` is. Made with
//! `mkfs.erofs` (erofs-utils), reproducibly: one timestamp (`-T`), a UUID
//! made from it, root-owned, no xattrs.
//!
//! mkfs.erofs packs one directory, so the image's tree is first staged
//! beside the output: hard links to the store's files where the file
//! system allows (copies where it does not), symlinks and directories made
//! anew with the store's modes.
//!
//! Non-goals: no native writer, no reading of erofs (init and the kernel
//! do that); Debian's erofs-utils 1.5 has lz4 and lz4hc only.

use super::{Contents, FormatSpec};
use crate::{progress, tool};
use anyhow::{Context, Result, bail, ensure};
use nixlive_formats::ImageFs;
use nixlive_formats::paths::REGISTRATION_NAME;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

pub const SPEC: FormatSpec = FormatSpec {
    ext: "erofs",
    fs: ImageFs::Erofs,
    output_kind: "erofs",
};

/// The erofs options (part of `ImageArgs`).
#[derive(Debug, Clone, clap::Args)]
pub struct ErofsOptions {
    /// erofs compression.
    #[arg(long, value_enum, default_value = "lz4hc")]
    pub erofs_compression: ErofsComp,
    /// erofs physical cluster size in bytes (a multiple of 4096): larger
    /// packs tighter, smaller reads less for a small file.
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    pub erofs_pcluster: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ErofsComp {
    Lz4hc,
    Lz4,
    /// Uncompressed.
    None,
}

impl ErofsComp {
    /// mkfs.erofs' `-z` value, if any.
    fn arg(self) -> Option<&'static str> {
        match self {
            ErofsComp::Lz4hc => Some("lz4hc,12"),
            ErofsComp::Lz4 => Some("lz4"),
            ErofsComp::None => None,
        }
    }
}

/// The filesystem UUID of every image made at `epoch`: reproducible, and
/// different for media built at different times.
fn uuid(epoch: u64) -> String {
    format!("6e69786c-6976-4500-8000-{:012x}", epoch & 0xffff_ffff_ffff)
}

/// The mkfs.erofs command line for `staged` into `out`.
fn command(opts: &ErofsOptions, staged: &Path, out: &Path, epoch: u64) -> Command {
    let mut cmd = Command::new("mkfs.erofs");
    if let Some(z) = opts.erofs_compression.arg() {
        cmd.arg(format!("-z{z}"))
            .arg(format!("-C{}", opts.erofs_pcluster));
    }
    cmd.arg(format!("-T{epoch}"))
        .arg(format!("-U{}", uuid(epoch)))
        .args(["-x-1", "--all-root", "--quiet"])
        .arg(out)
        .arg(staged);
    cmd
}

/// Writes the image `out` holding `contents`.
pub fn write(opts: &ErofsOptions, contents: &Contents<'_>, out: &Path, epoch: u64) -> Result<()> {
    ensure!(
        opts.erofs_pcluster >= 4096 && opts.erofs_pcluster.is_multiple_of(4096),
        "--erofs-pcluster {}: must be a multiple of 4096",
        opts.erofs_pcluster
    );
    let started = std::time::Instant::now();
    let parent = out.parent().unwrap_or(Path::new("."));
    let stage = tempfile::Builder::new()
        .prefix(".nixlive-erofs-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    let root = stage.path().join("root");
    fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", root.display()))?;
    for n in contents.names {
        stage_tree(&contents.store_dir.join(n), &root.join(n))?;
    }
    stage_tree(contents.registration, &root.join(REGISTRATION_NAME))?;
    if out.exists() {
        fs::remove_file(out).with_context(|| format!("removing {}", out.display()))?;
    }
    let mut cmd = command(opts, &root, out, epoch);
    progress::during(&format!("making {}", out.display()), || {
        tool::run(&mut cmd, "mkfs.erofs (erofs-utils)")
    })?;
    // The step line squashfs images get too (`make bench` reads its time).
    let size = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    progress::finished(
        &format!("wrote {}", out.display()),
        &format!("{} paths", contents.names.len()),
        size,
        started,
    );
    Ok(())
}

/// Recreates `src` at `dst`: files hard-linked (copied across file
/// systems), symlinks and directories made with the same target and mode.
fn stage_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).with_context(|| format!("reading {}", src.display()))?;
        std::os::unix::fs::symlink(&target, dst)
            .with_context(|| format!("creating {}", dst.display()))?;
    } else if ft.is_file() {
        if fs::hard_link(src, dst).is_err() {
            fs::copy(src, dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
    } else if ft.is_dir() {
        fs::create_dir(dst).with_context(|| format!("creating {}", dst.display()))?;
        for e in fs::read_dir(src).with_context(|| format!("listing {}", src.display()))? {
            let e = e.with_context(|| format!("listing {}", src.display()))?;
            stage_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.permissions().mode()))
            .with_context(|| format!("chmod {}", dst.display()))?;
    } else {
        bail!(
            "{}: not a file, directory or symlink; a store cannot hold it",
            src.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_reproducible() {
        let opts = ErofsOptions {
            erofs_compression: ErofsComp::Lz4hc,
            erofs_pcluster: 65536,
        };
        let cmd = command(&opts, Path::new("/s"), Path::new("/o.erofs"), 1700000000);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "-zlz4hc,12",
                "-C65536",
                "-T1700000000",
                "-U6e69786c-6976-4500-8000-00006553f100",
                "-x-1",
                "--all-root",
                "--quiet",
                "/o.erofs",
                "/s"
            ]
        );
        let none = ErofsOptions {
            erofs_compression: ErofsComp::None,
            erofs_pcluster: 4096,
        };
        let cmd = command(&none, Path::new("/s"), Path::new("/o"), 1);
        assert!(
            cmd.get_args()
                .all(|a| !a.to_string_lossy().starts_with("-z"))
        );
    }

    #[test]
    fn staging_keeps_modes_links_and_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o555)).unwrap();
        std::os::unix::fs::symlink("bin/tool", src.join("link")).unwrap();
        fs::set_permissions(src.join("bin"), fs::Permissions::from_mode(0o555)).unwrap();
        let dst = tmp.path().join("dst");
        stage_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(
            fs::metadata(dst.join("bin/tool"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o555
        );
        assert_eq!(
            fs::metadata(dst.join("bin")).unwrap().permissions().mode() & 0o7777,
            0o555
        );
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("bin/tool")
        );
        // (Let the temporary directory be removed.)
        fs::set_permissions(src.join("bin"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dst.join("bin"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_device_node_is_refused_by_name() {
        let e = stage_tree(Path::new("/dev/null"), Path::new("/nonexistent/x")).unwrap_err();
        assert!(e.to_string().contains("/dev/null: not a file"), "{e}");
    }

    #[test]
    fn a_bad_pcluster_is_refused() {
        let opts = ErofsOptions {
            erofs_compression: ErofsComp::Lz4hc,
            erofs_pcluster: 5000,
        };
        let c = Contents {
            store_dir: Path::new("/nonexistent"),
            names: &[],
            registration: Path::new("/nonexistent/r"),
        };
        let e = write(&opts, &c, Path::new("/nonexistent/o.erofs"), 0).unwrap_err();
        assert!(e.to_string().contains("--erofs-pcluster 5000"), "{e}");
    }
}

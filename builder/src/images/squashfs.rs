//! The squashfs image format: a squashfs whose root holds the store paths
//! and `nix-path-registration`, as NixOS lays out `nix-store.squashfs`.
//! Made with `mksquashfs` (squashfs-tools 4.5 or newer) or natively (the
//! backhand crate, pure Rust apart from zstd's C library), reproducibly:
//! one timestamp, root-owned, no xattrs, 1 MiB blocks.
//!
//! Non-goals: no reading of squashfs (init and the kernel do that), no
//! options beyond compression and the writer.

use super::{Contents, FormatSpec};
use crate::{progress, tool};
use anyhow::{Context, Result, anyhow, bail, ensure};
use backhand::{FilesystemWriter, NodeHeader};
use nixlive_formats::ImageFs;
use nixlive_formats::paths::REGISTRATION_NAME;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SPEC: FormatSpec = FormatSpec {
    ext: "squashfs",
    fs: ImageFs::Squashfs,
    output_kind: "squashfs",
};

/// The squashfs options (part of `ImageArgs`).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// squashfs compression.
    #[arg(long, value_enum, default_value = "zstd")]
    pub squashfs_compression: SquashComp,
    /// What writes the squashfs images.
    #[arg(long, value_enum, default_value = "mksquashfs")]
    pub squashfs_backend: Backend,
}

/// Which program writes the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// squashfs-tools' mksquashfs.
    Mksquashfs,
    /// Written here (backhand); zstd or gzip.
    Native,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SquashComp {
    Zstd,
    Xz,
    Gzip,
    Lz4,
    /// Data blocks stored as they are (mksquashfs `-noD -noF`; metadata
    /// still zstd): for data that is already compressed, written at the
    /// disk's speed.
    None,
}

impl SquashComp {
    pub fn name(self) -> &'static str {
        match self {
            SquashComp::Zstd => "zstd",
            SquashComp::Xz => "xz",
            SquashComp::Gzip => "gzip",
            SquashComp::Lz4 => "lz4",
            SquashComp::None => "none",
        }
    }
}

/// Writes the image `out` holding `contents`.
pub fn write(opts: &Options, contents: &Contents<'_>, out: &Path, epoch: u64) -> Result<()> {
    let comp = opts.squashfs_compression;
    let started = std::time::Instant::now();
    match opts.squashfs_backend {
        Backend::Mksquashfs => mksquashfs(contents, out, comp, epoch)?,
        Backend::Native => progress::during(&format!("writing {}", out.display()), || {
            native(contents, out, comp, epoch)
        })?,
    }
    let size = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    progress::finished(
        &format!("wrote {}", out.display()),
        &format!("{} paths", contents.names.len()),
        size,
        started,
    );
    Ok(())
}

/// `(major, minor)` of a `mksquashfs -version` banner.
fn parse_version(text: &str) -> (u32, u32) {
    let ver = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("");
    let mut it = ver.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn check_mksquashfs() -> Result<()> {
    let banner = tool::output_text(
        Command::new("mksquashfs").arg("-version"),
        "mksquashfs (squashfs-tools)",
    )?;
    let v = parse_version(&banner);
    ensure!(
        v >= (4, 5),
        "mksquashfs {}.{} is too old: reproducible images need squashfs-tools 4.5 or newer",
        v.0,
        v.1
    );
    Ok(())
}

fn mksquashfs(c: &Contents<'_>, out: &Path, comp: SquashComp, epoch: u64) -> Result<()> {
    check_mksquashfs()?;
    ensure!(
        c.registration.file_name().and_then(|n| n.to_str()) == Some(REGISTRATION_NAME),
        "internal: the registration file must be called {REGISTRATION_NAME}"
    );
    // Names relative to the store, so that a layer's command line stays
    // under Linux's 2 MiB (see images::split::MAX_NAME_BYTES).
    let abs = |p: &Path| std::path::absolute(p).with_context(|| format!("{}", p.display()));
    let mut cmd = Command::new("mksquashfs");
    cmd.current_dir(c.store_dir).args(c.names);
    cmd.arg(abs(c.registration)?).arg(abs(out)?);
    let e = epoch.to_string();
    match comp {
        SquashComp::None => cmd.args(["-comp", "zstd", "-noD", "-noF"]),
        _ => cmd.args(["-comp", comp.name()]),
    };
    cmd.args(["-b", "1048576", "-noappend"])
        .args(["-no-xattrs", "-all-root", "-root-mode", "0755"])
        .args(["-mkfs-time", &e, "-all-time", &e])
        .args(["-no-progress", "-quiet"])
        // mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times.
        .env_remove("SOURCE_DATE_EPOCH");
    progress::during(&format!("making {}", out.display()), || {
        tool::run(&mut cmd, "mksquashfs")
    })
}

/// The native writer: one mtime, root-owned, 1 MiB blocks.
fn native(c: &Contents<'_>, out: &Path, comp: SquashComp, epoch: u64) -> Result<()> {
    let t = u32::try_from(epoch)
        .map_err(|_| anyhow!("SOURCE_DATE_EPOCH {epoch} does not fit squashfs' 32-bit times"))?;
    let mut w = native_writer(comp, t)?;
    let header = |mode: u32| NodeHeader {
        permissions: (mode & 0o7777) as u16,
        uid: 0,
        gid: 0,
        mtime: t,
    };
    add_trees(&mut w, c, out, &header)?;
    let reg_mode = fs::metadata(c.registration)
        .with_context(|| format!("reading {}", c.registration.display()))?
        .permissions()
        .mode();
    w.push_file_from_path(c.registration, REGISTRATION_NAME, header(reg_mode))
        .with_context(|| format!("adding {REGISTRATION_NAME}"))?;
    let f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut bw = std::io::BufWriter::new(f);
    w.write(&mut bw)
        .with_context(|| format!("writing {}", out.display()))?;
    std::io::Write::flush(&mut bw).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn native_writer(comp: SquashComp, t: u32) -> Result<FilesystemWriter<'static, 'static, 'static>> {
    use backhand::FilesystemCompressor;
    use backhand::compression::Compressor;
    let compressor = match comp {
        SquashComp::Zstd => Compressor::Zstd,
        SquashComp::Gzip => Compressor::Gzip,
        // backhand's `Uncompressed` is compressor id 0, which Linux refuses.
        other => bail!(
            "the native squashfs writer does zstd and gzip, not {}; use --squashfs-backend mksquashfs",
            other.name()
        ),
    };
    let mut w = FilesystemWriter::default();
    // backhand has no setter for the root directory's mtime: it stays 0
    // (deterministic all the same; every other inode gets `t`).
    w.set_time(t);
    w.set_root_mode(0o755);
    w.set_root_uid(0);
    w.set_root_gid(0);
    w.set_block_size(1 << 20);
    w.set_compressor(
        FilesystemCompressor::new(compressor, None).context("setting up the compressor")?,
    );
    Ok(w)
}

/// Adds the store paths, depth first, entries sorted by name bytes: the
/// same tree gives the same calls in the same order.
fn add_trees(
    w: &mut FilesystemWriter<'_, '_, '_>,
    c: &Contents<'_>,
    out: &Path,
    header: &dyn Fn(u32) -> NodeHeader,
) -> Result<()> {
    let mut todo: Vec<(PathBuf, PathBuf)> = c
        .names
        .iter()
        .rev()
        .map(|n| (c.store_dir.join(n), PathBuf::from(n)))
        .collect();
    while let Some((src, dst)) = todo.pop() {
        let meta =
            fs::symlink_metadata(&src).with_context(|| format!("reading {}", src.display()))?;
        let mode = meta.permissions().mode();
        let ft = meta.file_type();
        let r = if ft.is_symlink() {
            let target =
                fs::read_link(&src).with_context(|| format!("reading {}", src.display()))?;
            w.push_symlink(target, &dst, header(0o777))
        } else if ft.is_file() {
            w.push_file_from_path(&src, &dst, header(mode))
        } else if ft.is_dir() {
            let kids = sorted_entries(&src)?;
            todo.extend(kids.iter().rev().map(|k| (src.join(k), dst.join(k))));
            w.push_dir(&dst, header(mode))
        } else {
            bail!(
                "{}: not a file, directory or symlink; a store cannot hold it",
                src.display()
            );
        };
        r.with_context(|| format!("adding {} to {}", src.display(), out.display()))?;
    }
    Ok(())
}

/// The names in `dir`, sorted by their bytes.
fn sorted_entries(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut kids: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    kids.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(kids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("mksquashfs version 4.5.1 (2022/03/17)\ncopyright"),
            (4, 5)
        );
        assert_eq!(parse_version("mksquashfs version 4.6-git"), (4, 6));
        assert_eq!(parse_version("nonsense"), (0, 0));
    }
}

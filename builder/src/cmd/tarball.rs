//! `nixlive tarball`: the system tarball ([`crate::system_tree`]) as one
//! tar, plain or compressed by its name (`.tar`, `.tar.zst`, `.tar.xz`);
//! reproducible: entries sorted, owned by root, one time for the store
//! (Nix's 1) and `SOURCE_DATE_EPOCH` for the rest.
//!
//! The tar is written beside --out and renamed into place when complete.
//!
//! Non-goals: no other archive formats, no unpacking.

use crate::atomic::OutFile;
use crate::epoch::source_date_epoch;
use crate::outputs::{Kind, Outputs};
use crate::progress;
use crate::system_tree::{self, SystemArgs};
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub system: SystemArgs,
    /// Where to write the tarball: FILE.tar, FILE.tar.zst or FILE.tar.xz.
    #[arg(long, value_name = "FILE.tar[.zst|.xz]")]
    pub out: PathBuf,
}

/// How the tar is compressed, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Xz,
}

pub fn compression_of(out: &Path) -> Result<Compression> {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("");
    Ok(if name.ends_with(".tar") {
        Compression::None
    } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
        Compression::Zstd
    } else if name.ends_with(".tar.xz") || name.ends_with(".txz") {
        Compression::Xz
    } else {
        bail!(
            "--out {}: name it FILE.tar, FILE.tar.zst or FILE.tar.xz (the name says the compression)",
            out.display()
        )
    })
}

pub fn run(a: &Args) -> Result<()> {
    system_tree::check_args(&a.system, &a.out)?;
    let comp = compression_of(&a.out)?;
    let epoch = source_date_epoch()?;
    let tree = system_tree::build(&a.system, epoch, None)?;
    let out = OutFile::new(&a.out)?;
    progress::during(&format!("making {}", a.out.display()), || {
        write_compressed(&tree.entries, out.path(), comp)
    })?;
    let initrd = match &a.system.initrd_out {
        Some(io) => {
            let f = OutFile::new(io)?;
            std::fs::write(f.path(), &tree.initrd)
                .with_context(|| format!("writing {}", io.display()))?;
            Some(f)
        }
        None => None,
    };
    out.commit()?;
    let mut outs = Outputs::default();
    if let (Some(f), Some(io)) = (initrd, &a.system.initrd_out) {
        f.commit()?;
        outs.add(Kind::Initrd, io.clone())?;
    }
    outs.add(Kind::Tarball, a.out.clone())?;
    outs.report(
        a.system.hydra_dir.as_deref(),
        a.system.outputs_json.as_deref(),
    )
}

fn write_compressed(entries: &[system_tree::Entry], out: &Path, comp: Compression) -> Result<()> {
    let f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let what = || format!("writing {}", out.display());
    match comp {
        Compression::None => {
            let mut w = std::io::BufWriter::new(f);
            system_tree::write_tar(entries, &mut w)?;
            w.flush().with_context(what)
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::Encoder::new(f, 19).with_context(what)?;
            // One thread and a fixed level: the same bytes everywhere.
            enc.include_checksum(true).with_context(what)?;
            system_tree::write_tar(entries, &mut enc)?;
            enc.finish()
                .with_context(what)?
                .sync_all()
                .with_context(what)
        }
        Compression::Xz => {
            let mut child = crate::cleanup::spawn(
                Command::new("xz")
                    .args(["--format=xz", "--check=crc64", "-6", "--threads=1", "-c"])
                    .stdin(Stdio::piped())
                    .stdout(f),
            )
            .context("running xz (install xz-utils)")?;
            let stdin = child.child.stdin.take().context("xz's stdin")?;
            let mut w = std::io::BufWriter::new(stdin);
            let r = system_tree::write_tar(entries, &mut w).and_then(|()| {
                w.flush().with_context(what)?;
                drop(w);
                Ok(())
            });
            let status = child.child.wait().context("waiting for xz")?;
            r?;
            if !status.success() {
                bail!("xz failed ({status}) compressing {}", out.display());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_the_name() {
        let c = |n: &str| compression_of(Path::new(n));
        assert_eq!(c("out/sys.tar").unwrap(), Compression::None);
        assert_eq!(c("sys.tar.zst").unwrap(), Compression::Zstd);
        assert_eq!(c("sys.tar.xz").unwrap(), Compression::Xz);
        let e = c("sys.tgz").unwrap_err().to_string();
        assert!(e.contains("FILE.tar.zst"), "{e}");
    }
}

//! `nixlive disk-image`: the system tarball's tree ([`crate::system_tree`])
//! as a disk image to `dd` onto an SD card or a USB disk: a GPT or MBR
//! partition table with one root partition (from 1 MiB) holding an ext4
//! filesystem labelled --label, made by `mkfs.ext4 -d` at the partition's
//! offset in the image. No root privileges: the tree is staged in a
//! scratch directory, and when its files are not root's, `fakeroot` makes
//! them so for mkfs. The initrd boots it as a plain root (NixOS's SD
//! images, without their boot partition).
//!
//! The image is written beside --out and renamed into place when complete.
//! The initrd carries the root filesystem's module (ext4 and its
//! dependencies) unless the kernel has it built in.
//!
//! Non-goals: no boot loader or firmware partition (the kernel and initrd
//! are in `/boot` for whatever loads them), no filesystem but ext4.

use crate::atomic::OutFile;
use crate::cleanup::Scratch;
use crate::epoch::source_date_epoch;
use crate::outputs::{Kind, Outputs};
use crate::partition_table::{self, PART_START};
use crate::system_tree::{self, Node, SystemArgs};
use crate::{progress, tool};
use anyhow::{Context, Result, bail, ensure};
use nixlive_formats::SizeSpec;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fs {
    Ext4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionTable {
    /// GPT: the partition is also named --label (root=PARTLABEL= finds it).
    Gpt,
    /// MBR (DOS): what older boards' firmware reads.
    Mbr,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub system: SystemArgs,
    /// Where to write the disk image.
    #[arg(long, value_name = "FILE.img")]
    pub out: PathBuf,
    /// The root partition's filesystem.
    #[arg(long, value_enum, default_value = "ext4")]
    pub fs: Fs,
    /// The whole image's size (e.g. 2G, 1536M); default: what the tree
    /// needs plus a quarter and 64 MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,
    #[arg(long, value_enum, default_value = "gpt")]
    pub partition_table: PartitionTable,
}

fn parse_size(s: &str) -> Result<u64, String> {
    match nixlive_formats::cmdline::parse_size(s) {
        Some(SizeSpec::Bytes(b)) => Ok(b),
        _ => Err(format!("`{s}`: want a size such as 2G, 1536M or bytes")),
    }
}

pub fn run(a: &Args) -> Result<()> {
    system_tree::check_args(&a.system, &a.out)?;
    let epoch = source_date_epoch()?;
    let root_fs = match a.fs {
        Fs::Ext4 => "ext4",
    };
    let tree = system_tree::build(&a.system, epoch, Some(root_fs))?;
    let need = tree_bytes(&tree.entries);
    let (total, fs_bytes) = layout(a.size, need, a.partition_table)?;
    let out = OutFile::new(&a.out)?;
    let img = out.path();
    let scratch = Scratch::new("nixlive-disk-image.")?;
    let staged = scratch.path().join("root");
    let r = progress::during("staging the root tree", || {
        system_tree::stage(&tree.entries, &staged)
    })
    .and_then(|()| {
        let f = fs::File::create_new(img).with_context(|| format!("creating {}", img.display()))?;
        f.set_len(total)
            .with_context(|| format!("sizing {}", img.display()))?;
        drop(f);
        let id = partition_table::ids(&a.system.label, epoch, &a.system.inputs.system);
        match a.partition_table {
            PartitionTable::Gpt => partition_table::gpt(img, fs_bytes, &a.system.label, &id)?,
            PartitionTable::Mbr => partition_table::mbr(img, fs_bytes, &id)?,
        }
        progress::during(
            &format!("making the ext4 filesystem of {}", a.out.display()),
            || mkfs_ext4(&staged, img, fs_bytes, &a.system.label, &id.fs_uuid, epoch),
        )
    });
    system_tree::remove_staged(&staged);
    r?;
    let initrd = match &a.system.initrd_out {
        Some(io) => {
            let f = OutFile::new(io)?;
            fs::write(f.path(), &tree.initrd)
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
    outs.add(Kind::DiskImage, a.out.clone())?;
    outs.report(
        a.system.hydra_dir.as_deref(),
        a.system.outputs_json.as_deref(),
    )
}

/// Bytes the tree takes on ext4, roughly: data in 4 KiB blocks plus an
/// inode and a block for each entry.
fn tree_bytes(entries: &[system_tree::Entry]) -> u64 {
    entries
        .iter()
        .map(|e| match &e.node {
            Node::File(d) => d.len().div_ceil(4096) * 4096 + 4096,
            _ => 4096,
        })
        .sum()
}

/// The image's size and the filesystem's, both in whole MiB: the
/// partition runs from 1 MiB to 1 MiB before the end (GPT's backup table
/// sits in that last MiB).
fn layout(size: Option<u64>, need: u64, table: PartitionTable) -> Result<(u64, u64)> {
    let tail = match table {
        PartitionTable::Gpt => MIB,
        PartitionTable::Mbr => 0,
    };
    let min_fs = (need + need / 4 + 64 * MIB).div_ceil(MIB) * MIB;
    let total = match size {
        None => PART_START + min_fs + tail,
        Some(s) => {
            let s = s / MIB * MIB;
            ensure!(
                s >= PART_START + min_fs + tail,
                "--size {} MiB is too small: the tree needs a {} MiB filesystem, so at least {} MiB",
                s / MIB,
                min_fs / MIB,
                (PART_START + min_fs + tail) / MIB
            );
            s
        }
    };
    Ok((total, total - PART_START - tail))
}

/// `mkfs.ext4 -d` of the staged tree into the partition, in place.
fn mkfs_ext4(
    tree: &Path,
    out: &Path,
    fs_bytes: u64,
    label: &str,
    uuid: &str,
    epoch: u64,
) -> Result<()> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "-q".into(),
        "-F".into(),
        "-t".into(),
        "ext4".into(),
        // 4 KiB blocks even on a small image: it is grown to a card's size.
        "-b".into(),
        "4096".into(),
        "-L".into(),
        label.into(),
        "-U".into(),
        uuid.into(),
        "-E".into(),
        format!("offset={PART_START},root_owner=0:0,hash_seed={uuid},nodiscard").into(),
        "-d".into(),
        tree.into(),
        out.into(),
        format!("{}k", fs_bytes / 1024).into(),
    ];
    let owned_by_root = fs::symlink_metadata(tree)
        .with_context(|| format!("reading {}", tree.display()))?
        .uid()
        == 0;
    let mut cmd = if owned_by_root {
        let mut c = Command::new("mkfs.ext4");
        c.args(&args);
        c
    } else {
        // Unprivileged: fakeroot makes the files root's for mkfs to copy.
        let mut c = Command::new("fakeroot");
        c.args([
            "--",
            "sh",
            "-c",
            "chown -R 0:0 \"$0\" && exec mkfs.ext4 \"$@\"",
        ])
        .arg(tree);
        c.args(args.drain(..));
        c
    };
    // mke2fs stamps this time, not the clock's, into what it creates.
    cmd.env("E2FSPROGS_FAKE_TIME", epoch.max(1).to_string());
    match tool::run(&mut cmd, "mkfs.ext4 (package e2fsprogs)") {
        Ok(()) => Ok(()),
        Err(e) if !owned_by_root => {
            bail!("{e:#} (not root: fakeroot is needed to own the files by root)")
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let (total, fs) = layout(None, 100 * MIB, PartitionTable::Gpt).unwrap();
        assert_eq!(fs, 189 * MIB);
        assert_eq!(total, 191 * MIB);
        let (total, fs) = layout(Some(1 << 30), 100 * MIB, PartitionTable::Mbr).unwrap();
        assert_eq!((total, fs), (1 << 30, (1 << 30) - MIB));
        let e = layout(Some(64 * MIB), 100 * MIB, PartitionTable::Gpt).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
        assert!(parse_size("2G").is_ok() && parse_size("50%").is_err());
    }
}

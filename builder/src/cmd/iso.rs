//! `nixlive iso`: the medium tree, made into a hybrid ISO by xorriso: El
//! Torito for BIOS (ISOLINUX) and UEFI (the EFI system partition image),
//! an MBR and GPT so that it also boots from a USB disk.
//!
//! Non-goals: no ISO writing of our own (xorriso's layout is the tested
//! one), no appended partitions.

use crate::epoch::source_date_epoch;
use crate::files::{copy, create_parent, remove_old};
use crate::medium::{self, BootArgs, MediumArgs};
use crate::outputs::{Kind, Outputs};
use crate::{progress, tool};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub medium: MediumArgs,
    /// Where to write the ISO.
    #[arg(long, value_name = "FILE.iso")]
    pub out: PathBuf,
    /// Keep the medium tree here (created, or emptied of an earlier build).
    #[arg(long, value_name = "DIR")]
    pub medium_dir: Option<PathBuf>,
    /// Also write the compressed initrd here.
    #[arg(long, value_name = "FILE")]
    pub initrd_out: Option<PathBuf>,
}

pub fn run(a: &Args) -> Result<()> {
    let tmp;
    let dir = match &a.medium_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("nixlive-medium.")
                .tempdir()
                .context("creating a temporary medium directory")?;
            tmp.path().to_path_buf()
        }
    };
    let tree_outs = medium::build(&a.medium, &dir, Some("iso9660"))?;
    make_iso(&a.medium.boot, &dir, &a.out)?;
    let mut outs = Outputs::default();
    if let Some(io) = &a.initrd_out {
        copy(&dir.join("boot/initrd"), io)?;
        outs.add(Kind::Initrd, io.clone())?;
    }
    // Without --medium-dir the tree goes away: only the ISO is an output.
    if a.medium_dir.is_some() {
        outs.extend(tree_outs);
    }
    outs.add(Kind::Iso, a.out.clone())?;
    a.medium.common.report(&outs)
}

/// Makes the hybrid ISO `out` from a medium tree.
fn make_iso(b: &BootArgs, tree: &Path, out: &Path) -> Result<()> {
    let epoch = source_date_epoch()?;
    create_parent(out)?;
    remove_old(out)?;
    let date = xorriso_date(epoch);
    let mut cmd = Command::new("xorriso");
    cmd.args(["-as", "mkisofs", "-o"])
        .arg(out)
        .args(["-V", &b.label, "-r", "-J", "-joliet-long"])
        .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"]);
    if !b.no_uefi {
        cmd.args(["-eltorito-alt-boot", "-e", "boot/efi.img", "-no-emul-boot"])
            .arg("-isohybrid-gpt-basdat");
    }
    cmd.arg("-isohybrid-mbr")
        .arg(&b.isohdpfx)
        .arg(format!("--modification-date={date}"))
        // atime and ctime as the mtime that the medium gave every file.
        .args(["--set_all_file_dates", "set_to_mtime"])
        .arg(tree)
        .env("SOURCE_DATE_EPOCH", epoch.to_string());
    progress::during(&format!("making {}", out.display()), || {
        tool::run(&mut cmd, "xorriso")
    })
}

/// `YYYYMMDDhhmmss00` in UTC, the form xorriso's `--modification-date=` takes.
fn xorriso_date(epoch: u64) -> String {
    let days = epoch / 86400;
    let secs = epoch % 86400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(xorriso_date(0), "1970010100000000");
        assert_eq!(xorriso_date(951_782_400), "2000022900000000");
        assert_eq!(xorriso_date(1_700_000_000), "2023111422132000");
    }
}

//! `nixlive iso`: the medium tree, made into a hybrid ISO by xorriso: El
//! Torito for BIOS (ISOLINUX) and UEFI (the EFI system partition image),
//! an MBR and GPT so that it also boots from a USB disk.
//!
//! The ISO (and --medium-dir, --initrd-out) are written beside their
//! final paths and put in place when all are complete ([`crate::atomic`]).
//!
//! Non-goals: no ISO writing of our own (xorriso's layout is the tested
//! one), no appended partitions.

use crate::atomic::{OutDir, OutFile};
use crate::cleanup::Scratch;
use crate::epoch::source_date_epoch;
use crate::files::copy;
use crate::medium::{self, BootArgs, MediumArgs};
use crate::outputs::{Kind, Outputs};
use crate::{overlap, progress, tool};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub medium: MediumArgs,
    /// Where to write the ISO.
    #[arg(long, value_name = "FILE.iso")]
    pub out: PathBuf,
    /// Keep the medium tree here (created, or replaced whole when it holds
    /// an earlier medium).
    #[arg(long, value_name = "DIR")]
    pub medium_dir: Option<PathBuf>,
    /// Also write the compressed initrd here.
    #[arg(long, value_name = "FILE")]
    pub initrd_out: Option<PathBuf>,
}

pub fn run(a: &Args) -> Result<()> {
    let c = &a.medium.common;
    let mut outputs = vec![("--out", a.out.clone())];
    overlap::push_opt(&mut outputs, "--medium-dir", &a.medium_dir);
    overlap::push_opt(&mut outputs, "--initrd-out", &a.initrd_out);
    overlap::push_opt(&mut outputs, "--hydra-dir", &c.hydra_dir);
    overlap::push_opt(&mut outputs, "--outputs-json", &c.outputs_json);
    overlap::refuse(&medium::inputs(&a.medium), &outputs)?;
    if let Some(d) = &a.medium_dir {
        medium::check_reusable(d, "--medium-dir", &medium::MEDIUM_ENTRIES)?;
    }
    let prepared = medium::prepare(&a.medium, &a.out, Some("iso9660"), None)?;
    // The tree: beside --medium-dir when it is kept, else in $TMPDIR.
    let (kept, scratch) = match &a.medium_dir {
        Some(d) => (Some(OutDir::new(d)?), None),
        None => (None, Some(Scratch::new("nixlive-medium.")?)),
    };
    let dir = match (&kept, &scratch) {
        (Some(k), _) => k.path().to_path_buf(),
        (_, Some(s)) => s.path().to_path_buf(),
        _ => unreachable!("one of the two is made above"),
    };
    let mut tree_outs = prepared.write(&dir)?;
    let iso = OutFile::new(&a.out)?;
    make_iso(&a.medium.boot, &dir, iso.path(), &a.out)?;
    let initrd = match &a.initrd_out {
        Some(io) => {
            let f = OutFile::new(io)?;
            copy(&dir.join("boot/initrd"), f.path())?;
            Some(f)
        }
        None => None,
    };
    // Everything is complete: put it in place.
    iso.commit()?;
    let mut outs = Outputs::default();
    if let (Some(f), Some(io)) = (initrd, &a.initrd_out) {
        f.commit()?;
        outs.add(Kind::Initrd, io.clone())?;
    }
    // Without --medium-dir the tree goes away: only the ISO is an output.
    if let (Some(k), Some(d)) = (kept, &a.medium_dir) {
        k.commit()?;
        tree_outs.rebase(&dir, d);
        outs.extend(tree_outs);
    }
    outs.add(Kind::Iso, a.out.clone())?;
    c.report(&outs)
}

/// Makes the hybrid ISO at `path` (to be renamed to `out`) from a medium tree.
fn make_iso(b: &BootArgs, tree: &Path, path: &Path, out: &Path) -> Result<()> {
    let epoch = source_date_epoch()?;
    let date = xorriso_date(epoch);
    let mut cmd = Command::new("xorriso");
    cmd.args(["-as", "mkisofs", "-o"])
        .arg(path)
        .args(["-V", &b.label, "-r", "-J", "-joliet-long"])
        // Level 3: files of 4 GiB and more (multi-extent; Linux's isofs
        // reads them), as Debian live-build and archiso pass it.
        .args(["-iso-level", "3"])
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
    let started = std::time::Instant::now();
    progress::during(&format!("making {}", out.display()), || {
        tool::run(&mut cmd, "xorriso")
    })?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    progress::finished(&format!("wrote {}", out.display()), "", size, started);
    Ok(())
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

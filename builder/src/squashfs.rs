//! Store images: a squashfs whose root holds the store paths and
//! `nix-path-registration`, as NixOS lays out `nix-store.squashfs`. Made
//! with `mksquashfs` (squashfs-tools 4.5 or newer), reproducibly: one
//! timestamp, root-owned, no xattrs, fixed block size.

use crate::progress;
use anyhow::{Context, Result, bail, ensure};
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SquashComp {
    Zstd,
    Xz,
    Gzip,
    Lz4,
}

impl SquashComp {
    pub fn name(self) -> &'static str {
        match self {
            SquashComp::Zstd => "zstd",
            SquashComp::Xz => "xz",
            SquashComp::Gzip => "gzip",
            SquashComp::Lz4 => "lz4",
        }
    }
}

pub(crate) fn run_tool(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run {what} ({:?}); is it installed?",
            cmd.get_program()
        )
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {:?}\n{}{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `(major, minor)` of a `mksquashfs -version` banner.
pub fn parse_version(text: &str) -> (u32, u32) {
    let ver = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("");
    let mut it = ver.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn check_mksquashfs() -> Result<()> {
    let out = Command::new("mksquashfs")
        .arg("-version")
        .output()
        .context("cannot run mksquashfs (squashfs-tools); is it installed?")?;
    let v = parse_version(&String::from_utf8_lossy(&out.stdout));
    ensure!(
        v >= (4, 5),
        "mksquashfs {}.{} is too old: reproducible images need squashfs-tools 4.5 or newer",
        v.0,
        v.1
    );
    Ok(())
}

/// Writes `out` holding `store_dir/<name>` for each name and the
/// registration file `registration` (named `nix-path-registration` inside).
pub fn make(
    store_dir: &Path,
    names: &[String],
    registration: &Path,
    out: &Path,
    comp: SquashComp,
    epoch: u64,
) -> Result<()> {
    check_mksquashfs()?;
    ensure!(
        registration.file_name().and_then(|n| n.to_str()) == Some("nix-path-registration"),
        "internal: the registration file must be called nix-path-registration"
    );
    let mut cmd = Command::new("mksquashfs");
    for n in names {
        cmd.arg(store_dir.join(n));
    }
    cmd.arg(registration).arg(out);
    let e = epoch.to_string();
    cmd.args(["-comp", comp.name(), "-b", "1048576", "-noappend"])
        .args(["-no-xattrs", "-all-root", "-root-mode", "0755"])
        .args(["-mkfs-time", &e, "-all-time", &e])
        .args(["-no-progress", "-quiet"])
        // mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times.
        .env_remove("SOURCE_DATE_EPOCH");
    let spin = progress::spinner(&format!("making {}", out.display()));
    let r = run_tool(&mut cmd, "mksquashfs");
    spin.finish_and_clear();
    r
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

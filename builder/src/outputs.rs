//! The list of what a build produced: printed as `KIND<TAB>SIZE<TAB>PATH`
//! lines, written as JSON, and as Hydra's `nix-support/hydra-build-products`
//! (`file KIND PATH`).
//!
//! Non-goals: no checksums here (the manifest has the images'), no
//! description of what a file is for beyond its kind.

use crate::atomic::OutFile;
use crate::images::ImageFormat;
use anyhow::{Context, Result};
use nixlive_formats::size::{self, Unit};
use std::fs;
use std::path::{Path, PathBuf};

/// What an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kernel,
    Initrd,
    Image(ImageFormat),
    Manifest,
    EfiImage,
    Iso,
    Ipxe,
    Cmdline,
    Tarball,
    DiskImage,
}

impl Kind {
    /// The name in the listings (Hydra's product subtype).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kernel => "kernel",
            Kind::Initrd => "initrd",
            Kind::Image(f) => f.spec().output_kind,
            Kind::Manifest => "manifest",
            Kind::EfiImage => "efi-image",
            Kind::Iso => "iso",
            Kind::Ipxe => "ipxe",
            Kind::Cmdline => "cmdline",
            Kind::Tarball => "tarball",
            Kind::DiskImage => "disk-image",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: Kind,
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Outputs {
    pub list: Vec<Output>,
}

impl Outputs {
    /// Records `path` (which must exist) as an output of kind `kind`.
    pub fn add(&mut self, kind: Kind, path: PathBuf) -> Result<()> {
        let size = fs::metadata(&path)
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        self.list.push(Output { kind, path, size });
        Ok(())
    }

    /// Moves the outputs under `from` (where they were written) to the
    /// same place under `to` (where they were put).
    pub fn rebase(&mut self, from: &Path, to: &Path) {
        for o in &mut self.list {
            if let Ok(rest) = o.path.strip_prefix(from) {
                o.path = to.join(rest);
            }
        }
    }

    pub fn extend(&mut self, other: Outputs) {
        self.list.extend(other.list);
    }

    /// `KIND<TAB>SIZE<TAB>PATH` per output.
    pub fn tsv(&self) -> String {
        self.list
            .iter()
            .map(|o| format!("{}\t{}\t{}\n", o.kind, o.size, o.path.display()))
            .collect()
    }

    /// `file KIND PATH` per output (Hydra shows these as downloads).
    pub fn hydra_products(&self) -> String {
        self.list
            .iter()
            .map(|o| format!("file {} {}\n", o.kind, o.path.display()))
            .collect()
    }

    pub fn json(&self) -> String {
        let v: Vec<serde_json::Value> = self
            .list
            .iter()
            .map(|o| {
                serde_json::json!({
                    "kind": o.kind.as_str(),
                    "path": o.path.display().to_string(),
                    "size": o.size,
                })
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Reports the outputs: a table on standard error, `KIND<TAB>SIZE<TAB>PATH`
    /// lines on standard output, and the Hydra products and JSON list where
    /// asked for.
    pub fn report(&self, hydra_dir: Option<&Path>, json: Option<&Path>) -> Result<()> {
        for o in &self.list {
            eprintln!("{:>9}  {:>10}  {}", o.kind, human(o.size), o.path.display());
        }
        if let Some(d) = hydra_dir {
            self.write_hydra(d)?;
        }
        if let Some(j) = json {
            OutFile::write(j, self.json().as_bytes())?;
        }
        print!("{}", self.tsv());
        Ok(())
    }

    /// Writes `DIR/nix-support/hydra-build-products`.
    pub fn write_hydra(&self, dir: &Path) -> Result<PathBuf> {
        let p = dir.join("nix-support/hydra-build-products");
        OutFile::write(&p, self.hydra_products().as_bytes())?;
        Ok(p)
    }
}

/// A size for people, in units up to GiB (as the listing always had).
fn human(n: u64) -> String {
    size::human_up_to(n, Unit::GiB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("live.iso");
        fs::write(&f, b"1234").unwrap();
        let mut o = Outputs::default();
        o.add(Kind::Iso, f.clone()).unwrap();
        assert_eq!(o.tsv(), format!("iso\t4\t{}\n", f.display()));
        assert_eq!(o.hydra_products(), format!("file iso {}\n", f.display()));
        let j: serde_json::Value = serde_json::from_str(&o.json()).unwrap();
        assert_eq!(j[0]["size"], 4);
        let p = o.write_hydra(d.path()).unwrap();
        assert!(p.ends_with("nix-support/hydra-build-products"));
        assert!(o.add(Kind::Kernel, d.path().join("missing")).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(human(10), "10 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 40), "3072.0 GiB");
    }
}

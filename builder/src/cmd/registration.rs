//! `nixlive registration`: prints the `nix-store --load-db` registration
//! of store paths under a root directory, computed here (NAR hashes, sizes,
//! references among the given paths) as Nix computes them.
//!
//! Non-goals: no database writing (postboot loads the registration), no
//! derivers or signatures.

use crate::closure::{self, registration};
use anyhow::Result;
use nixlive_formats::registration::{HashFormat, render};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory holding nix/store/<paths>.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Hash format: dump-db (hex, as `nix-store --dump-db`) or
    /// closure-info (`sha256:<base 32>`, as nixpkgs' closureInfo).
    #[arg(long, value_enum, default_value = "dump-db")]
    pub format: HashFormatArg,
    /// The store paths (/nix/store/<hash>-<name> or <hash>-<name>); all
    /// paths under ROOT/nix/store when none are given.
    #[arg(value_name = "STOREPATH")]
    pub paths: Vec<String>,
}

/// How NAR hashes are written (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HashFormatArg {
    /// `nix-store --dump-db`: lowercase hex without algorithm.
    DumpDb,
    /// nixpkgs `closureInfo`: `sha256:<nix base-32>`, empty deriver.
    ClosureInfo,
}

impl From<HashFormatArg> for HashFormat {
    fn from(f: HashFormatArg) -> Self {
        match f {
            HashFormatArg::DumpDb => HashFormat::DumpDb,
            HashFormatArg::ClosureInfo => HashFormat::ClosureInfo,
        }
    }
}

pub fn run(a: &Args) -> Result<()> {
    let store = closure::store_dir(&a.root);
    let names = if a.paths.is_empty() {
        registration::list_store(&store)?
    } else {
        registration::resolve(&store, &a.paths)?
    };
    let infos = closure::compute(&store, &names)?;
    print!("{}", render(&infos, a.format.into()));
    Ok(())
}

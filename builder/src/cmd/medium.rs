//! `nixlive medium`: the medium tree alone (what the ISO holds), for
//! copying onto a USB stick whose filesystem is labelled --label. Images
//! are split under 4 GiB unless --max-image-size says otherwise, so that
//! the tree fits FAT32, the filesystem every UEFI firmware reads.
//!
//! Non-goals: no formatting or labelling of the stick itself.

use crate::images::split::FAT32_LIMIT;
use crate::medium::{self, MediumArgs};
use crate::overlap;
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub medium: MediumArgs,
    /// The tree's directory (created, or replaced whole when it holds an
    /// earlier medium).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: &Args) -> Result<()> {
    let c = &a.medium.common;
    let mut outputs = vec![("--out", a.out.clone())];
    overlap::push_opt(&mut outputs, "--hydra-dir", &c.hydra_dir);
    overlap::push_opt(&mut outputs, "--outputs-json", &c.outputs_json);
    overlap::refuse(&medium::inputs(&a.medium), &outputs)?;
    let outs = medium::build_dir(&a.medium, &a.out, None, Some(FAT32_LIMIT), "--out")?;
    c.report(&outs)
}

//! `nixlive medium`: the medium tree alone (what the ISO holds), for
//! copying onto a USB stick whose filesystem is labelled --label.
//!
//! Non-goals: no formatting or labelling of the stick itself.

use crate::medium::{self, MediumArgs};
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub medium: MediumArgs,
    /// The tree's directory (created, or emptied of an earlier build).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: &Args) -> Result<()> {
    let outs = medium::build(&a.medium, &a.out, None)?;
    a.medium.common.report(&outs)
}

//! `nixlive initrd`: the initrd stage alone (no store images), e.g. for a
//! system whose images come from elsewhere.
//!
//! Non-goals: no images or manifest inside (that is `netboot`).

use crate::atomic::OutFile;
use crate::check::{self, config::MediumNeeds};
use crate::epoch::source_date_epoch;
use crate::initrd::{self, InitrdArgs};
use crate::outputs::{Kind, Outputs};
use crate::overlap;
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub initrd: InitrdArgs,
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(a: &Args) -> Result<()> {
    let epoch = source_date_epoch()?;
    // No images: only what the kernel needs to start init.
    let needs = MediumNeeds {
        initrd_compression: check::compression_name(a.initrd.compression),
        images: None,
        medium_fs: None,
    };
    overlap::refuse(
        &overlap::initrd_inputs(&a.initrd),
        &[("--out", a.out.clone())],
    )?;
    check::before_build(None, &a.initrd, &needs)?;
    OutFile::write(&a.out, &initrd::build(&a.initrd, epoch, true)?)?;
    let mut outs = Outputs::default();
    outs.add(Kind::Initrd, a.out.clone())?;
    outs.report(None, None)
}

//! The pipeline the media commands share: closure → images → initrd →
//! medium → container (the ISO, or the netboot set). [`Build`] carries what
//! every stage needs: the options, the build's timestamp, the loaded
//! closure and a scratch directory; each command runs the stages it needs.
//!
//! Non-goals: no caching between runs, no stages running in parallel.

use crate::check::{self, config::MediumNeeds};
use crate::closure::{Closure, InputArgs};
use crate::images::{self, ImageArgs};
use crate::initrd::{self, InitrdArgs};
use anyhow::{Result, ensure};
use nixlive_formats::Manifest;
use nixlive_formats::elf::Machine;
use std::path::{Path, PathBuf};

/// Options shared by `iso`, `medium` and `netboot`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Kernel image (bzImage).
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    #[command(flatten)]
    pub initrd: InitrdArgs,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub images: ImageArgs,
    /// Extra kernel parameters.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub append: String,
    /// Write `nix-support/hydra-build-products` under this directory.
    #[arg(long, value_name = "DIR")]
    pub hydra_dir: Option<PathBuf>,
    /// Write the list of outputs as JSON here (also printed, one per line,
    /// as `KIND<TAB>SIZE<TAB>PATH` on standard output).
    #[arg(long, value_name = "FILE")]
    pub outputs_json: Option<PathBuf>,
}

impl CommonArgs {
    pub fn check_kernel(&self) -> Result<()> {
        ensure!(
            self.kernel.is_file(),
            "--kernel {} is not a file",
            self.kernel.display()
        );
        Ok(())
    }

    /// What the medium needs from the kernel, on a medium whose own
    /// filesystem is `medium_fs` (`None`: netboot, or not known).
    pub fn needs(&self, medium_fs: Option<&'static str>) -> MediumNeeds {
        MediumNeeds {
            initrd_compression: check::compression_name(self.initrd.compression),
            images: Some((
                self.images.format().spec().fs,
                self.images.squashfs.squashfs_compression.name(),
            )),
            medium_fs,
        }
    }

    /// The checks that need no closure (see [`crate::check`]); returns the
    /// kernel's machine for [`Build::check_stage2`].
    pub fn check_boot(&self, medium_fs: Option<&'static str>) -> Result<Option<Machine>> {
        check::before_build(Some(&self.kernel), &self.initrd, &self.needs(medium_fs))
    }

    /// Reports `outs` (see [`crate::outputs::Outputs::report`]) with the
    /// Hydra products and JSON list asked for.
    pub fn report(&self, outs: &crate::outputs::Outputs) -> Result<()> {
        outs.report(self.hydra_dir.as_deref(), self.outputs_json.as_deref())
    }
}

/// One build under way.
pub struct Build<'a> {
    pub args: &'a CommonArgs,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
    pub closure: Closure,
    /// The images, planned before anything is written.
    pub layout: images::Layout,
    work: crate::cleanup::Scratch,
}

impl<'a> Build<'a> {
    /// The closure stage: loads the closure (and its registration), plans
    /// its images (refusing what cannot be built, before anything is
    /// written; `default_limit` is the command's image size limit), and
    /// makes a scratch directory named `scratch.XXXXXX`.
    pub fn start(
        args: &'a CommonArgs,
        epoch: u64,
        scratch: &str,
        default_limit: Option<u64>,
    ) -> Result<Build<'a>> {
        let closure = args.inputs.load()?;
        let limit = args.images.limit(default_limit);
        let layout = images::plan(&args.images, &closure, limit)?;
        let work = crate::cleanup::Scratch::new(scratch)?;
        Ok(Build {
            args,
            epoch,
            closure,
            layout,
            work,
        })
    }

    /// The stage-2 init of the loaded closure (see [`crate::check`]).
    pub fn check_stage2(&self, machine: Option<Machine>) -> Result<()> {
        Ok(check::stage2(&self.closure, machine)?)
    }

    /// The scratch directory, removed when the build is dropped.
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// The images stage: the store images and their manifest, in `dir`;
    /// the manifest also lists `files` of `dir` (see [`images::write_all`]).
    pub fn images(&self, dir: &Path, files: &[&str]) -> Result<Manifest> {
        images::write_all(
            &self.args.images,
            &self.closure,
            &self.layout,
            dir,
            files,
            self.epoch,
            self.work(),
        )
    }

    /// The initrd stage: the compressed initrd (with dm-verity unless
    /// --no-verity).
    pub fn initrd(&self) -> Result<Vec<u8>> {
        initrd::build(&self.args.initrd, self.epoch, !self.args.images.no_verity)
    }
}

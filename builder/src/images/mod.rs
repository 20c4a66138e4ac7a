//! The store images: the closure split into layers ([`plan`]), each written
//! in an image format with its registration, and the manifest that lists
//! them for init.
//!
//! The format is a seam: [`ImageFormat`] names the formats, and each has a
//! module that owns its file extension, manifest type, output kind, options
//! and writer (`squashfs.rs`, `erofs.rs`). Another format is a module with
//! `SPEC`, options and `write`, and a variant here: the compiler then
//! asks for its arms in [`ImageFormat::spec`] and `write`; [`ImageArgs`]
//! flattens its options; `--image-format` picks one.
//!
//! Non-goals: no reading back of images, no deduplication across layers
//! (a path lives in one image).

pub mod erofs;
pub mod plan;
pub mod squashfs;
pub mod verity;

use crate::closure::Closure;
use crate::files::{sha256_file, write};
use anyhow::Result;
use clap::ValueEnum;
use nixlive_formats::paths::{REGISTRATION, REGISTRATION_NAME};
use nixlive_formats::registration::{self, HashFormat, PathInfo};
use nixlive_formats::{ImageEntry, ImageFs, Manifest};
use plan::{ImagePlan, ImageSpec, plan_images};
use std::path::Path;

/// The filesystems store images are written in (`--image-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormat {
    Squashfs,
    Erofs,
}

/// What an image format says about itself (its module's `SPEC`).
#[derive(Debug)]
pub struct FormatSpec {
    /// The extension of its image files: the top image is
    /// `nix-store.<ext>`, and a reused medium directory may hold `*.<ext>`.
    pub ext: &'static str,
    /// Its type in the manifest.
    pub fs: ImageFs,
    /// Its kind in the list of outputs.
    pub output_kind: &'static str,
}

/// What goes into one image.
#[derive(Debug)]
pub struct Contents<'a> {
    /// `<store root>/nix/store`.
    pub store_dir: &'a Path,
    /// Base names of the store paths, sorted.
    pub names: &'a [String],
    /// The registration file, named [`REGISTRATION_NAME`].
    pub registration: &'a Path,
}

impl ImageFormat {
    pub fn spec(self) -> &'static FormatSpec {
        match self {
            ImageFormat::Squashfs => &squashfs::SPEC,
            ImageFormat::Erofs => &erofs::SPEC,
        }
    }

    /// The top layer's file name.
    pub fn top_image(self) -> String {
        format!("nix-store.{}", self.spec().ext)
    }

    /// Whether `name` is the name of an image file of some format.
    pub fn is_image_name(name: &str) -> bool {
        ImageFormat::value_variants()
            .iter()
            .any(|f| name.ends_with(&format!(".{}", f.spec().ext)))
    }

    fn write(self, args: &ImageArgs, c: &Contents<'_>, out: &Path, epoch: u64) -> Result<()> {
        match self {
            ImageFormat::Squashfs => squashfs::write(&args.squashfs, c, out, epoch),
            ImageFormat::Erofs => erofs::write(&args.erofs, c, out, epoch),
        }
    }
}

/// How the store images are made.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Put the closure of these store paths into a lower image NAME
    /// (repeatable; the first given is the bottom layer); what no --image
    /// takes goes into nix-store.squashfs (nix-store.erofs), the top layer.
    #[arg(long = "image", value_name = "NAME=STOREPATH[,STOREPATH]")]
    pub images: Vec<ImageSpec>,
    /// The filesystem of the store images (erofs needs the kernel's erofs,
    /// in the `base` module set).
    #[arg(long, value_enum, default_value = "squashfs")]
    pub image_format: ImageFormat,
    #[command(flatten)]
    pub squashfs: squashfs::Options,
    /// Leave out the dm-verity hash trees (by default each image carries
    /// one, and init reads the image through dm-verity).
    #[arg(long)]
    pub no_verity: bool,
    /// Sign the manifest with this Nix secret key (from `nix-store
    /// --generate-binary-cache-key NAME SECRET PUBLIC`; repeatable).
    #[arg(long = "sign-key", value_name = "SECRET", value_parser = crate::keys::secret_key_file)]
    pub sign_keys: Vec<nixlive_formats::nixkey::SecretKey>,
    #[command(flatten)]
    pub erofs: erofs::ErofsOptions,
}

impl ImageArgs {
    /// The format the images are written in.
    pub fn format(&self) -> ImageFormat {
        self.image_format
    }
}

/// Writes the images of `closure` and the manifest into `dir`; `work` holds
/// the registration files. Returns the manifest.
pub fn write_all(
    args: &ImageArgs,
    closure: &Closure,
    dir: &Path,
    epoch: u64,
    work: &Path,
) -> Result<Manifest> {
    let format = args.format();
    let plans = plan_images(&closure.infos, &args.images, &format.top_image())?;
    let mut images = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let reg = work.join(format!("reg-{i}")).join(REGISTRATION_NAME);
        write(&reg, render_registration(closure, plan, i == 0).as_bytes())?;
        let contents = Contents {
            store_dir: &closure.store_dir,
            names: &plan.paths,
            registration: &reg,
        };
        let image = dir.join(&plan.name);
        format.write(args, &contents, &image, epoch)?;
        let verity = if args.no_verity {
            None
        } else {
            Some(verity::append_tree(&image)?)
        };
        let (size, sha256) = sha256_file(&image)?;
        images.push(ImageEntry {
            name: plan.name.clone(),
            fs: format.spec().fs,
            size,
            sha256,
            verity,
        });
    }
    let mut manifest = Manifest {
        init: format!("{}/init", closure.system),
        registration: REGISTRATION.to_string(),
        images,
        sigs: Vec::new(),
    };
    let signed = manifest.unsigned_text();
    manifest.sigs = args
        .sign_keys
        .iter()
        .map(|k| k.sign(signed.as_bytes()))
        .collect();
    write(
        &dir.join(nixlive_formats::manifest::DEFAULT_PATH),
        manifest.to_string().as_bytes(),
    )?;
    Ok(manifest)
}

/// An image's registration: the top image's covers the whole closure (it
/// hides the lower ones' in the overlay); a lower image's covers its own
/// paths.
fn render_registration(closure: &Closure, plan: &ImagePlan, top: bool) -> String {
    let infos: Vec<PathInfo> = if top {
        closure.infos.clone()
    } else {
        closure
            .infos
            .iter()
            .filter(|p| plan.paths.iter().any(|n| n == p.base_name()))
            .cloned()
            .collect()
    };
    registration::render(&infos, HashFormat::ClosureInfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        assert_eq!(ImageFormat::Squashfs.top_image(), "nix-store.squashfs");
        assert!(ImageFormat::is_image_name("base.squashfs"));
        assert_eq!(ImageFormat::Erofs.top_image(), "nix-store.erofs");
        assert!(ImageFormat::is_image_name("base.erofs"));
        assert!(!ImageFormat::is_image_name("squashfs"));
        assert!(!ImageFormat::is_image_name("notes.txt"));
    }
}

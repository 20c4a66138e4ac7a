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
pub mod split;
pub mod squashfs;
pub mod verity;

use crate::closure::Closure;
use crate::files::{sha256_file, write};
use anyhow::{Result, bail, ensure};
use clap::ValueEnum;
use nixlive_formats::manifest::MAX_IMAGES;
use nixlive_formats::paths::{REGISTRATION, REGISTRATION_NAME};
use nixlive_formats::registration::{self, HashFormat, PathInfo};
use nixlive_formats::size::human;
use nixlive_formats::{FileEntry, ImageEntry, ImageFs, Manifest};
use plan::{ImagePlan, ImageSpec, plan_images};
use std::collections::{HashMap, HashSet};
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
    /// Split the closure into layers by store path, each image at most
    /// SIZE (bytes, or with K, M, G, T; `none` for no limit). `medium`'s
    /// default is 4095M, so that every file fits FAT32.
    #[arg(long, value_name = "SIZE", value_parser = parse_max_size)]
    pub max_image_size: Option<MaxSize>,
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
    pub sign_keys: Vec<crate::keys::KeyFile<nixlive_formats::nixkey::SecretKey>>,
    #[command(flatten)]
    pub erofs: erofs::ErofsOptions,
}

/// A `--max-image-size` value: a limit, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxSize(pub Option<u64>);

fn parse_max_size(s: &str) -> Result<MaxSize, split::SizeError> {
    split::parse_size(s).map(MaxSize)
}

impl ImageArgs {
    /// The format the images are written in.
    pub fn format(&self) -> ImageFormat {
        self.image_format
    }

    /// The image size limit: --max-image-size, else the command's default.
    pub fn limit(&self, default: Option<u64>) -> Option<u64> {
        self.max_image_size.map_or(default, |m| m.0)
    }
}

/// The images a build writes, decided before anything is written.
#[derive(Debug)]
pub struct Layout {
    /// Top layer first (the manifest's order).
    pub plans: Vec<ImagePlan>,
    pub limit: Option<u64>,
}

/// Plans the images of `closure`: the `--image` layers, and the rest split
/// under the size limit (see [`split`]). Refuses, before anything is
/// written, a path that cannot fit, more images than the manifest may
/// list and a registration larger than postboot reads.
/// Of `room` bytes for an image, what its data may take when a verity tree
/// is appended: the tree for `room` bytes of data (32-byte hashes of 4 KiB
/// blocks, every level, as `veritysetup` lays it out), its superblock and
/// the data's padding to a block.
fn verity_room(room: u64) -> u64 {
    let tree: u64 = nixlive_formats::verity::levels(room.div_ceil(4096), 4096)
        .iter()
        .sum();
    room.saturating_sub(tree * 4096 + 2 * 4096)
}

pub fn plan(args: &ImageArgs, closure: &Closure, limit: Option<u64>) -> Result<Layout> {
    let format = args.format();
    let top = format.top_image();
    let mut plans = plan_images(&closure.infos, &args.images, &top)?;
    let reg_bytes = registration::render(&closure.infos, HashFormat::ClosureInfo).len() as u64;
    check_registration(reg_bytes, closure.infos.len())?;
    // Without a limit the paths are still split when one image would take
    // more names than mksquashfs' command line holds.
    let room = match limit {
        // The verity tree appended to each image takes about 1/127 of it
        // (32-byte hashes of 4 KiB blocks, every level), plus its
        // superblock and padding: keep that much of the limit free.
        Some(limit) if !args.no_verity => verity_room(split::room(limit, reg_bytes)?),
        Some(limit) => split::room(limit, reg_bytes)?,
        None => u64::MAX,
    };
    let shown_limit = limit.unwrap_or(u64::MAX);
    let sizes: HashMap<&str, u64> = closure
        .infos
        .iter()
        .map(|i| (i.base_name(), i.nar_size))
        .collect();
    for p in plans.iter().filter(|p| p.name != top) {
        let sum: u64 = p.paths.iter().map(|n| sizes[n.as_str()]).sum();
        ensure!(
            sum <= room,
            "--image {} holds {sum} bytes of store paths ({}), more than --max-image-size {shown_limit} \
             ({}) allows; leave it out and let --max-image-size split the closure",
            p.name,
            human(sum),
            human(shown_limit)
        );
        let names: u64 = p.paths.iter().map(|n| n.len() as u64 + 1).sum();
        ensure!(
            names <= split::MAX_NAME_BYTES,
            "--image {} holds {} paths whose names take {names} bytes, more than the {} bytes \
             one image may (mksquashfs' command line); leave it out and let the closure be split",
            p.name,
            p.paths.len(),
            split::MAX_NAME_BYTES
        );
    }
    if plans.first().is_some_and(|p| p.name == top) {
        let rest = plans.remove(0);
        let layers = split::split(&closure.infos, &rest.paths, room, shown_limit)?;
        let n = layers.len();
        let split_plans = layers.into_iter().enumerate().rev().map(|(i, paths)| {
            let name = if i + 1 == n {
                top.clone()
            } else {
                format!("nix-store-{i:02}.{}", format.spec().ext)
            };
            ImagePlan { name, paths }
        });
        plans.splice(0..0, split_plans.collect::<Vec<_>>());
    }
    let mut seen = HashSet::new();
    if let Some(p) = plans.iter().find(|p| !seen.insert(p.name.as_str())) {
        bail!(
            "image name {} is both an --image and a layer of the split; name the --image otherwise",
            p.name
        );
    }
    check_image_count(plans.len())?;
    Ok(Layout { plans, limit })
}

/// Refuses a registration larger than postboot reads.
fn check_registration(bytes: u64, paths: usize) -> Result<()> {
    ensure!(
        bytes <= registration::MAX_BYTES,
        "the registration of the closure's {paths} paths takes {bytes} bytes, more than the \
         {} bytes ({}) postboot reads",
        registration::MAX_BYTES,
        human(registration::MAX_BYTES)
    );
    Ok(())
}

/// Refuses more images than a manifest may list.
fn check_image_count(n: usize) -> Result<()> {
    if n > MAX_IMAGES {
        bail!(
            "the closure needs {n} images, more than the {MAX_IMAGES} a manifest may list; \
             raise --max-image-size"
        );
    }
    Ok(())
}

/// One line per image, top first: what it holds (for the user; standard
/// error).
pub fn describe(layout: &Layout, closure: &Closure) -> Vec<String> {
    let sizes: HashMap<&str, u64> = closure
        .infos
        .iter()
        .map(|i| (i.base_name(), i.nar_size))
        .collect();
    let n = layout.plans.len();
    layout
        .plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let sum: u64 = p.paths.iter().filter_map(|n| sizes.get(n.as_str())).sum();
            let names: Vec<&str> = p.paths.iter().take(3).map(String::as_str).collect();
            let more = p.paths.len().saturating_sub(names.len());
            let place = match (i, n) {
                (_, 1) => "the only layer".to_string(),
                (0, _) => "top layer".to_string(),
                (i, n) if i + 1 == n => "bottom layer".to_string(),
                (i, _) => format!("layer {} from the top", i + 1),
            };
            format!(
                "image {} ({place}): {} paths, {} of NAR: {}{}",
                p.name,
                p.paths.len(),
                human(sum),
                names.join(" "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        })
        .collect()
}

/// Writes the images of `layout` and the manifest into `dir`; `work` holds
/// the registration files. `files` (relative to `dir`, written already)
/// are listed in the manifest with their size and sha256, so that a
/// signed boot can check them. Returns the manifest.
pub fn write_all(
    args: &ImageArgs,
    closure: &Closure,
    layout: &Layout,
    dir: &Path,
    files: &[&str],
    epoch: u64,
    work: &Path,
) -> Result<Manifest> {
    let format = args.format();
    let plans = &layout.plans;
    if plans.len() > 1 || layout.limit.is_some() {
        for line in describe(layout, closure) {
            eprintln!("{line}");
        }
    }
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
        if let Some(limit) = layout.limit {
            ensure!(
                size <= limit,
                "{} is {size} bytes, over --max-image-size {limit}: its paths' NAR sizes did not \
                 bound it; give a smaller --max-image-size",
                image.display()
            );
        }
        images.push(ImageEntry {
            name: plan.name.clone(),
            fs: format.spec().fs,
            size,
            sha256,
            verity,
        });
    }
    let files = files
        .iter()
        .map(|name| {
            let (size, sha256) = sha256_file(&dir.join(name))?;
            Ok(FileEntry {
                name: name.to_string(),
                size,
                sha256,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut manifest = Manifest {
        init: format!("{}/init", closure.system),
        registration: REGISTRATION.to_string(),
        images,
        files,
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
        let mine: HashSet<&str> = plan.paths.iter().map(String::as_str).collect();
        closure
            .infos
            .iter()
            .filter(|p| mine.contains(p.base_name()))
            .cloned()
            .collect()
    };
    registration::render(&infos, HashFormat::ClosureInfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closure() -> Closure {
        const M: u64 = 1 << 20;
        let info = |c: char, size: u64| {
            PathInfo::new(
                format!("/nix/store/{}-{c}", c.to_string().repeat(32)),
                [0; 32],
                size,
                Vec::new(),
            )
        };
        Closure {
            store_dir: "/nowhere/nix/store".into(),
            infos: vec![
                info('a', M),
                info('b', 3 * M),
                info('c', 3 * M),
                info('d', 3 * M),
            ],
            system: format!("/nix/store/{}-d", "d".repeat(32)),
        }
    }

    fn args(images: &[&str]) -> ImageArgs {
        ImageArgs {
            images: images.iter().map(|s| s.parse().unwrap()).collect(),
            max_image_size: None,
            image_format: ImageFormat::Squashfs,
            squashfs: squashfs::Options {
                squashfs_compression: squashfs::SquashComp::Zstd,
                squashfs_backend: squashfs::Backend::Native,
            },
            erofs: erofs::ErofsOptions {
                erofs_compression: erofs::ErofsComp::Lz4,
                erofs_pcluster: 65536,
            },
            // The room these tests count on is the limit less the
            // registration's; verity's share is tested on its own below.
            no_verity: true,
            sign_keys: Vec::new(),
        }
    }

    #[test]
    fn verity_keeps_room_for_its_tree() {
        for room in [4095u64 << 20, 64 << 20, 3 << 20, 1 << 20] {
            let data = verity_room(room).div_ceil(4096) * 4096;
            let tree: u64 = nixlive_formats::verity::levels(data / 4096, 4096)
                .iter()
                .sum();
            assert!(
                data + 4096 + tree * 4096 <= room,
                "room {room}: data {data} and a tree of {tree} blocks do not fit"
            );
        }
    }

    #[test]
    fn the_split_sits_above_the_given_images() {
        let c = closure();
        let a = format!("base.squashfs=/nix/store/{}-a", "a".repeat(32));
        let l = plan(&args(&[&a]), &c, Some(6 << 20)).unwrap();
        let names: Vec<&str> = l.plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "nix-store.squashfs",
                "nix-store-01.squashfs",
                "nix-store-00.squashfs",
                "base.squashfs"
            ]
        );
        let lines = describe(&l, &c);
        assert!(lines[0].starts_with("image nix-store.squashfs (top layer): 1 paths, 3.0 MiB"));
        assert!(lines[3].starts_with("image base.squashfs (bottom layer): 1 paths, 1.0 MiB"));
        // Without a limit: one image above base.
        assert_eq!(plan(&args(&[&a]), &c, None).unwrap().plans.len(), 2);
    }

    #[test]
    fn a_given_image_that_clashes_or_does_not_fit_is_refused() {
        let c = closure();
        let a = format!("nix-store-00.squashfs=/nix/store/{}-a", "a".repeat(32));
        let e = plan(&args(&[&a]), &c, Some(6 << 20))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("image name nix-store-00.squashfs is both"),
            "{e}"
        );
        let bc = format!(
            "big.squashfs=/nix/store/{}-b,/nix/store/{}-c",
            "b".repeat(32),
            "c".repeat(32)
        );
        let e = plan(&args(&[&bc]), &c, Some(6 << 20))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--image big.squashfs holds 6291456 bytes")
                && e.contains("--max-image-size 6291456"),
            "{e}"
        );
    }

    #[test]
    fn limits_of_the_manifest_and_the_registration() {
        check_image_count(MAX_IMAGES).unwrap();
        let e = check_image_count(MAX_IMAGES + 1).unwrap_err().to_string();
        assert!(e.contains("65 images") && e.contains("64"), "{e}");
        check_registration(registration::MAX_BYTES, 100_000).unwrap();
        let e = check_registration(registration::MAX_BYTES + 1, 300_000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("300000 paths") && e.contains("67108865") && e.contains("67108864"),
            "{e}"
        );
    }

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

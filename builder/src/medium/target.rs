//! The filesystem `medium --out` is written to: when it is a mounted FAT
//! filesystem (a USB stick), the tree must fit it, file by file (FAT32
//! holds no file of 4 GiB or more) and as a whole (its free space). Both
//! are checked before anything is written.
//!
//! The images' sizes are not known before they are written: each is taken
//! at its paths' NAR size, the size of the data uncompressed, an upper
//! bound (squashfs' tables are smaller than NAR's framing).
//!
//! Non-goals: no checks on other filesystems (ext4, exFAT, NTFS hold files
//! of any size a medium has); no guessing of compression ratios.

use crate::closure::Closure;
use crate::images::Layout;
use nixlive_formats::size::human;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The largest file FAT32 holds: 4 GiB - 1.
pub const FAT_MAX_FILE: u64 = (4 << 30) - 1;
/// `MSDOS_SUPER_MAGIC`: statfs' type of vfat and msdos.
const MSDOS_SUPER_MAGIC: u64 = 0x4d44;
/// Kept free beyond the estimate, for the boot loaders and directories.
const SLACK: u64 = 16 << 20;

/// What the tree's filesystem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub fat: bool,
    /// Bytes an unprivileged user may still write.
    pub free: u64,
}

/// Why the tree cannot go there.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{dir} is on a FAT filesystem, which holds no file larger than {FAT_MAX_FILE} bytes, \
         but image {file} may take {size} bytes ({}); give --max-image-size 4095M or less",
        human(*size)
    )]
    FileTooLarge {
        dir: PathBuf,
        file: String,
        size: u64,
    },
    #[error(
        "{dir} is on a FAT filesystem with {free} bytes free ({}), but the tree may take {need} \
         bytes ({}: the store paths uncompressed, the kernel and room for the boot loaders); \
         use a larger stick, or build the tree elsewhere and copy it",
        human(*free),
        human(*need)
    )]
    NoSpace { dir: PathBuf, need: u64, free: u64 },
    #[error("cannot find the filesystem of {dir}")]
    Statfs {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Each image's estimate (name, bytes), top first: its paths' NAR sizes,
/// the top one's with the closure's registration.
pub fn estimates(layout: &Layout, closure: &Closure) -> Vec<(String, u64)> {
    let sizes: HashMap<&str, u64> = closure
        .infos
        .iter()
        .map(|i| (i.base_name(), i.nar_size))
        .collect();
    let reg = nixlive_formats::registration::render(
        &closure.infos,
        nixlive_formats::registration::HashFormat::ClosureInfo,
    )
    .len() as u64;
    layout
        .plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let data: u64 = p.paths.iter().filter_map(|n| sizes.get(n.as_str())).sum();
            (p.name.clone(), data + if i == 0 { reg } else { 0 })
        })
        .collect()
}

/// Checks that `images` (name, bytes) and `other` more bytes fit `t`.
pub fn check(
    dir: &Path,
    t: Target,
    images: &[(String, u64)],
    other: u64,
) -> Result<(), TargetError> {
    if !t.fat {
        return Ok(());
    }
    if let Some((file, size)) = images.iter().find(|(_, s)| *s > FAT_MAX_FILE) {
        return Err(TargetError::FileTooLarge {
            dir: dir.to_path_buf(),
            file: file.clone(),
            size: *size,
        });
    }
    let need = images.iter().map(|(_, s)| s).sum::<u64>() + other + SLACK;
    if need > t.free {
        return Err(TargetError::NoSpace {
            dir: dir.to_path_buf(),
            need,
            free: t.free,
        });
    }
    Ok(())
}

/// The filesystem of `dir`, or of its nearest existing parent.
pub fn target_of(dir: &Path) -> Result<Target, TargetError> {
    let mut at = dir;
    let abs;
    if at.is_relative() {
        abs = std::env::current_dir()
            .map_err(|source| TargetError::Statfs {
                dir: dir.to_path_buf(),
                source,
            })?
            .join(dir);
        at = &abs;
    }
    while !at.exists() {
        at = at.parent().unwrap_or(Path::new("/"));
    }
    let st = rustix::fs::statfs(at).map_err(|e| TargetError::Statfs {
        dir: at.to_path_buf(),
        source: e.into(),
    })?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    let (ftype, bavail, bsize) = (st.f_type as u64, st.f_bavail as u64, st.f_bsize as u64);
    Ok(Target {
        fat: ftype == MSDOS_SUPER_MAGIC,
        free: bavail.saturating_mul(bsize),
    })
}

/// [`check`] for the filesystem of `dir`: the images of `layout` and the
/// kernel. Image files an earlier build left in `dir` are counted as free
/// (the build replaces them).
pub fn check_dir(
    dir: &Path,
    closure: &Closure,
    layout: &Layout,
    kernel: &Path,
) -> anyhow::Result<()> {
    let mut t = target_of(dir)?;
    if !t.fat {
        return Ok(());
    }
    let old: u64 = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(crate::images::ImageFormat::is_image_name)
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    t.free += old;
    let kernel = std::fs::metadata(kernel).map(|m| m.len()).unwrap_or(0);
    Ok(check(dir, t, &estimates(layout, closure), kernel)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    fn imgs(v: &[u64]) -> Vec<(String, u64)> {
        v.iter()
            .enumerate()
            .map(|(i, s)| (format!("nix-store-{i:02}.squashfs"), *s))
            .collect()
    }

    #[test]
    fn other_filesystems_are_not_checked() {
        let t = Target {
            fat: false,
            free: 0,
        };
        assert!(check(Path::new("/d"), t, &imgs(&[10 * G]), 0).is_ok());
    }

    #[test]
    fn fat_refuses_a_file_of_4_gib() {
        let t = Target {
            fat: true,
            free: 100 * G,
        };
        assert!(check(Path::new("/d"), t, &imgs(&[G, 4 * G - 1]), 0).is_ok());
        let e = check(Path::new("/d"), t, &imgs(&[G, 4 * G]), 0).unwrap_err();
        assert!(
            matches!(&e, TargetError::FileTooLarge { file, size, .. }
                if file == "nix-store-01.squashfs" && *size == 4 * G),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("4294967296") && text.contains("4294967295"),
            "{text}"
        );
    }

    #[test]
    fn fat_refuses_a_tree_larger_than_its_free_space() {
        let t = Target {
            fat: true,
            free: 3 * G,
        };
        assert!(check(Path::new("/d"), t, &imgs(&[G, G]), 10 << 20).is_ok());
        let e = check(Path::new("/d"), t, &imgs(&[2 * G, G]), 10 << 20).unwrap_err();
        let need = 3 * G + (10 << 20) + SLACK;
        assert!(
            matches!(&e, TargetError::NoSpace { need: n, free, .. }
                if *n == need && *free == 3 * G),
            "{e:?}"
        );
        assert!(e.to_string().contains(&need.to_string()), "{e}");
    }

    #[test]
    fn the_filesystem_of_a_missing_directory_is_its_parents() {
        let d = tempfile::tempdir().unwrap();
        let t = target_of(&d.path().join("not/yet")).unwrap();
        assert!(!t.fat);
        assert!(t.free > 0);
    }
}

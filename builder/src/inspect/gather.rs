//! Finding a medium's parts: an ISO (extracted), a medium tree, a netboot
//! set or an initrd alone, each read into the same [`Parts`].

use super::readers::{grub_entries, ipxe_entries, isolinux_entries};
use super::report::{BootEntry, MediumKind};
use crate::tool;
use anyhow::{Context, Result, bail};
use nixlive_formats::{manifest, superblock};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a medium's images are.
pub(super) enum ImagesIn {
    Dir(PathBuf),
    Initrd,
}

/// The parts of a medium, found; the analysis is the same for every kind.
pub(super) struct Parts {
    pub(super) kind: MediumKind,
    pub(super) label: Option<String>,
    pub(super) kernel: Option<(String, Vec<u8>)>,
    pub(super) initrd: Option<(String, Vec<u8>)>,
    pub(super) entries: Vec<BootEntry>,
    /// The manifest's text and where it is, and where its images are.
    pub(super) manifest: Option<(String, Result<String, String>, ImagesIn)>,
    pub(super) medium_fs: Option<&'static str>,
}

fn read_opt(p: &Path) -> Option<Vec<u8>> {
    fs::read(p).ok()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// The parts of a medium tree (also an ISO's, once extracted).
fn tree_parts(dir: &Path, kind: MediumKind, label: Option<String>) -> Parts {
    let mut entries = Vec::new();
    for (file, parse) in [
        (
            "isolinux/isolinux.cfg",
            isolinux_entries as fn(&str) -> Vec<String>,
        ),
        ("boot/grub/grub.cfg", grub_entries),
    ] {
        if let Ok(t) = fs::read_to_string(dir.join(file)) {
            for cmdline in parse(&t) {
                entries.push(BootEntry {
                    source: file.to_string(),
                    cmdline,
                });
            }
        }
    }
    let mpath = dir.join(manifest::DEFAULT_PATH);
    let manifest = Some((
        rel(dir, &mpath),
        fs::read_to_string(&mpath).map_err(|e| e.to_string()),
        ImagesIn::Dir(dir.to_path_buf()),
    ));
    Parts {
        kind,
        label,
        kernel: read_opt(&dir.join("boot/vmlinuz")).map(|d| ("boot/vmlinuz".to_string(), d)),
        initrd: Some((
            "boot/initrd".to_string(),
            read_opt(&dir.join("boot/initrd")).unwrap_or_default(),
        )),
        entries,
        manifest,
        medium_fs: (kind == MediumKind::Iso).then_some("iso9660"),
    }
}

/// The parts of a netboot set.
fn netboot_parts(dir: &Path) -> Parts {
    let mut entries = Vec::new();
    if let Ok(t) = fs::read_to_string(dir.join("cmdline")) {
        entries.push(BootEntry {
            source: "cmdline".into(),
            cmdline: t.trim().to_string(),
        });
    }
    if let Ok(t) = fs::read_to_string(dir.join("netboot.ipxe")) {
        for cmdline in ipxe_entries(&t) {
            entries.push(BootEntry {
                source: "netboot.ipxe".into(),
                cmdline,
            });
        }
    }
    // `netboot --http`: the manifest and images are served beside the initrd.
    let mpath = dir.join(manifest::DEFAULT_PATH);
    let manifest = mpath.exists().then(|| {
        (
            rel(dir, &mpath),
            fs::read_to_string(&mpath).map_err(|e| e.to_string()),
            ImagesIn::Dir(dir.to_path_buf()),
        )
    });
    Parts {
        kind: MediumKind::Netboot,
        label: None,
        kernel: read_opt(&dir.join("bzImage")).map(|d| ("bzImage".to_string(), d)),
        initrd: Some((
            "initrd".to_string(),
            read_opt(&dir.join("initrd")).unwrap_or_default(),
        )),
        entries,
        manifest,
        medium_fs: None,
    }
}

/// The parts of what `path` is, and the temporary directory an ISO was
/// extracted into (kept while the parts are analysed).
pub(super) fn gather(path: &Path) -> Result<(Parts, Option<crate::cleanup::Scratch>)> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_dir() {
        return file_parts(path);
    }
    // A netboot set first: an HTTP one (`netboot --http`) has the
    // manifest beside its initrd, as a tree does.
    if path.join("bzImage").exists() && path.join("initrd").exists() {
        Ok((netboot_parts(path), None))
    } else if path.join(manifest::DEFAULT_PATH).exists() || path.join("boot/vmlinuz").exists() {
        Ok((tree_parts(path, MediumKind::Tree, None), None))
    } else {
        bail!(
            "{} is neither a medium tree (nixlive.manifest, boot/) nor a netboot set (bzImage, initrd)",
            path.display()
        );
    }
}

/// A file: an ISO (by its superblock), else an initrd.
fn file_parts(path: &Path) -> Result<(Parts, Option<crate::cleanup::Scratch>)> {
    let mut head = vec![0u8; 64 << 10];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    head.truncate(n);
    match superblock::identify(&head) {
        Some(id) if id.fstype == "iso9660" => {
            let tmp = crate::cleanup::Scratch::new("nixlive-inspect.")?;
            extract_iso(path, tmp.path())?;
            let p = tree_parts(tmp.path(), MediumKind::Iso, id.label);
            Ok((p, Some(tmp)))
        }
        _ => Ok((
            Parts {
                kind: MediumKind::Initrd,
                label: None,
                kernel: None,
                initrd: Some((
                    path.display().to_string(),
                    fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                )),
                entries: Vec::new(),
                manifest: None,
                medium_fs: None,
            },
            None,
        )),
    }
}

/// Copies an ISO's files out with xorriso (made writable, so the
/// temporary directory can go).
fn extract_iso(iso: &Path, dir: &Path) -> Result<()> {
    tool::run(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract", "/"])
            .arg(dir),
        "xorriso",
    )?;
    tool::run(Command::new("chmod").args(["-R", "u+w"]).arg(dir), "chmod")
}

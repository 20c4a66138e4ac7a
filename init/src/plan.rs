//! Deciding the boot, as data: pure functions from the command line and
//! what was found (the medium, the manifest, the memory) to [`Step`]s, each
//! of which prints like the shell command that would do it. [`crate::exec`]
//! runs them through an [`crate::exec::Executor`].
//!
//! The boot is planned in three parts, because each needs what the one
//! before it found: [`api_mounts`] (nothing found yet), [`medium`] (the
//! device or ISO file discovery found), [`plan`] (the manifest read from the
//! medium): the images, the store, and the switch into stage 2. Every path
//! inside the new root comes from [`nixlive_formats::paths`].
//!
//! A plain root (a system tarball unpacked onto a disk) is planned by
//! [`plain_root`] instead of [`medium`] and [`plan`]: the device `root=`
//! names is the new root itself, with no tmpfs and no overlay.

use nixlive_formats::paths::{self, NEW_ROOT, in_new_root};
use nixlive_formats::superblock::ExtHealth;
use nixlive_formats::verity;
use nixlive_formats::{Cmdline, ImageEntry, Manifest};
use std::fmt;

/// A loop device, by the name the plan gives it; the executor learns its
/// node (`/dev/loopN`) when it attaches it.
pub type Handle = String;

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A device node, or a pseudo filesystem's name (`tmpfs`, `proc`).
    Path(String),
    /// A loop (or device-mapper) device set up earlier in the plan.
    Loop(Handle),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Path(p) => f.write_str(p),
            Source::Loop(h) => write!(f, "${h}"),
        }
    }
}

/// What a loop device is attached to, and how the file is opened. Both
/// are opened without blocking (a FIFO named like an image hangs nothing)
/// and must be regular files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// The ISO file `findiso=` names, on a filesystem the user chose:
    /// symlinks there are followed.
    IsoFile,
    /// An image the manifest lists: not through a symlink. With a sha256,
    /// the file is hashed through the one open file that then backs the
    /// loop device, so what was checked is what is mounted.
    Image { sha256: Option<String> },
}

/// Mount flags, as `mount -o` spells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub ro: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl Flags {
    /// Read-only, and no set-uid programs or device nodes taken from it:
    /// what the medium, a findiso host and the images are mounted with.
    pub const RO: Flags = Flags {
        ro: true,
        nosuid: true,
        nodev: true,
        noexec: false,
    };
    fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (self.ro, "ro"),
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Mkdir {
        path: String,
    },
    Mount {
        source: Source,
        target: String,
        fstype: String,
        flags: Flags,
        data: String,
    },
    /// Attach `file` read-only (autoclear) to a free loop device, named
    /// `handle` from then on. A mount of it may come later.
    AttachLoop {
        file: String,
        handle: Handle,
        backing: Backing,
    },
    /// `ln -sfn target link`; `target` may be a loop device.
    Symlink {
        target: Source,
        link: String,
    },
    Unmount {
        target: String,
    },
    /// `mount --move`.
    Move {
        from: String,
        to: String,
    },
    /// Fetch an image over HTTP into `to` (on the images tmpfs), checking
    /// its size and SHA-256 as it arrives; `done` and `total` as for
    /// [`Step::CopyToRam`].
    Fetch {
        url: String,
        to: String,
        sha256: String,
        size: u64,
        done: u64,
        total: u64,
    },
    /// Check that `path` has the size the manifest gives, before anything
    /// reads it.
    CheckSize {
        path: String,
        size: u64,
    },
    /// `nixlive.check`: read the whole data area of `source` (the
    /// dm-verity device over `image`) once, with a progress line, so that
    /// a bad block is found now, and named by its byte offset in the
    /// image, rather than as an I/O error in stage 2. `done` and `total`
    /// (bytes, over all images checked) are for the progress line.
    CheckImage {
        source: Handle,
        image: String,
        size: u64,
        block: u32,
        done: u64,
        total: u64,
    },
    /// Put dm-verity over the loop device `source` as the device-mapper
    /// device `name`, known as `handle` from then on: every block read
    /// through it is checked against the hash tree and its root hash.
    Verity {
        source: Handle,
        name: String,
        handle: Handle,
        params: verity::Params,
    },
    /// Copy an image into RAM, checking its SHA-256 on the way; `done` and
    /// `total` (bytes, over all images) are for the progress line.
    CopyToRam {
        from: String,
        to: String,
        sha256: String,
        done: u64,
        total: u64,
    },
    /// Free the initramfs, move the new root onto `/`, chroot, exec `init`.
    SwitchRoot {
        new_root: String,
        init: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mkdir { path } => write!(f, "mkdir -p {path}"),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let mut opts: Vec<&str> = flags.names().collect();
                if !data.is_empty() {
                    opts.push(data);
                }
                write!(f, "mount -t {fstype}")?;
                if !opts.is_empty() {
                    write!(f, " -o {}", opts.join(","))?;
                }
                write!(f, " {source} {target}")
            }
            Step::AttachLoop {
                file,
                handle,
                backing,
            } => {
                write!(f, "{handle}=$(losetup --read-only --find --show {file})")?;
                if let Backing::Image { sha256: Some(_) } = backing {
                    write!(f, " # sha256sum --check of the file losetup opened")?;
                }
                Ok(())
            }
            Step::CheckImage { source, image, .. } => {
                write!(f, "cat ${source} >/dev/null # nixlive.check of {image}")
            }
            Step::Symlink { target, link } => write!(f, "ln -sfn {target} {link}"),
            Step::Unmount { target } => write!(f, "umount {target}"),
            Step::Move { from, to } => write!(f, "mount --move {from} {to}"),
            Step::CheckSize { path, size } => write!(f, "test $(stat -c %s {path}) = {size}"),
            Step::Verity {
                source,
                name,
                handle,
                params,
            } => write!(
                f,
                "{handle}=$(dmsetup create {name} --readonly --table '0 {} verity {}')",
                params.sectors(),
                params.target(&format!("${source}"))
            ),
            Step::CopyToRam { from, to, .. } => write!(f, "cp {from} {to}"),
            Step::Fetch { url, to, .. } => {
                write!(
                    f,
                    "curl --fail --location --continue-at - --output {to} {url}"
                )
            }
            Step::SwitchRoot { new_root, init } => write!(f, "switch_root {new_root} {init}"),
        }
    }
}

fn mkdir(path: impl Into<String>) -> Step {
    Step::Mkdir { path: path.into() }
}

fn mount(source: &str, target: &str, fstype: &str, flags: Flags, data: &str) -> Step {
    Step::Mount {
        source: Source::Path(source.into()),
        target: target.into(),
        fstype: fstype.into(),
        flags,
        data: data.into(),
    }
}

/// The filesystems every later step needs, and the new root's mount point
/// (its tmpfs is [`live_root`]'s: a plain root mounts there instead).
pub fn api_mounts() -> Vec<Step> {
    let api = Flags {
        nosuid: true,
        nodev: true,
        noexec: true,
        ..Flags::default()
    };
    let nosuid = Flags {
        nosuid: true,
        ..Flags::default()
    };
    let run = Flags {
        nodev: true,
        ..nosuid
    };
    vec![
        mkdir("/proc"),
        mount("proc", "/proc", "proc", api, ""),
        mkdir("/sys"),
        mount("sysfs", "/sys", "sysfs", api, ""),
        mkdir("/dev"),
        mount("devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"),
        mkdir("/run"),
        mount("tmpfs", "/run", "tmpfs", run, "mode=0755"),
        mkdir(NEW_ROOT),
    ]
}

/// Live media: the new root is a tmpfs (the store and the medium are
/// mounted inside it).
pub fn live_root() -> Vec<Step> {
    vec![mount(
        "tmpfs",
        NEW_ROOT,
        "tmpfs",
        Flags::default(),
        "mode=0755",
    )]
}

/// The stage-2 init of a plain root without `init=`: the link the system
/// tarball puts at its top.
pub const PLAIN_INIT: &str = "/init";

/// A plain root as discovery found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainProbe {
    /// The device node, e.g. `/dev/vda1`.
    pub node: String,
    pub fstype: String,
    /// The consistency flags of an ext2/3/4 superblock (`None`: another filesystem).
    pub health: Option<ExtHealth>,
}

/// The boot of a plain root: mount it, switch into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainPlan {
    /// The stage-2 init, as the new root sees it.
    pub init: String,
    /// Mounting the root filesystem at the new root (read-write unless `ro`).
    pub mount: Vec<Step>,
    /// Moving the API filesystems and switching root.
    pub switch: Vec<Step>,
    /// What to tell the user without stopping (the kernel recorded errors).
    pub warnings: Vec<String>,
}

/// Why a plain root is not mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub node: String,
    pub why: &'static str,
}

/// Plans the boot of the root filesystem `root=` named: refused when the
/// kernel would have to recover it (that is `fsck`'s job), else mounted
/// read-write (read-only with `ro`) as the new root, and stage 2
/// (`init=`, else [`PLAIN_INIT`]) run from it.
pub fn plain_root(cmdline: &Cmdline, p: &PlainProbe) -> Result<PlainPlan, Refusal> {
    let mut warnings = Vec::new();
    if let Some(h) = p.health {
        if let Some(why) = h.refusal() {
            return Err(Refusal {
                node: p.node.clone(),
                why,
            });
        }
        if h.errors {
            warnings.push(format!(
                "the root filesystem {} has errors recorded by the kernel; run fsck on it soon",
                p.node
            ));
        }
    }
    let flags = Flags {
        ro: cmdline.read_only,
        ..Flags::default()
    };
    let init = cmdline.init.clone().unwrap_or_else(|| PLAIN_INIT.into());
    Ok(PlainPlan {
        mount: vec![
            mount(&p.node, NEW_ROOT, &p.fstype, flags, ""),
            Step::Symlink {
                target: Source::Path(p.node.clone()),
                link: "/dev/root".into(),
            },
        ],
        switch: switch_steps(&init),
        init,
        warnings,
    })
}

/// What discovery found the images on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Netboot: the manifest and images sit in the initrd itself.
    Initrd,
    /// A block device holding the medium's filesystem.
    Device { node: String, fstype: String },
    /// A file holding the medium's filesystem: an ISO on a filesystem
    /// discovery left mounted at `host` (`findiso=`), or one in the
    /// initramfs itself (`root=/FILE`, no host).
    File {
        host: Option<String>,
        path: String,
        fstype: String,
    },
    /// Booting over HTTP: the manifest at this URL (`nixlive.url=`), the
    /// images next to it, fetched into RAM.
    Http { url: nixlive_formats::net::url::Url },
}

/// The medium's handle when it is a loop device (`findiso=`).
pub const MEDIUM_LOOP: &str = "medium";
/// Where a findiso host filesystem is mounted inside the new root.
pub const FINDISO_HOST: &str = "/findiso";

/// Mounts the medium read-only at `/iso` and points `/dev/root` at its
/// device, as NixOS's stage 1 leaves them for the live system's fstab.
pub fn medium(found: &Found) -> Vec<Step> {
    let iso = in_new_root(paths::MEDIUM);
    let (mut steps, source, fstype) = match found {
        Found::Initrd | Found::Http { .. } => return Vec::new(),
        Found::Device { node, fstype } => (Vec::new(), Source::Path(node.clone()), fstype),
        Found::File { path, fstype, .. } => (
            vec![Step::AttachLoop {
                file: path.clone(),
                handle: MEDIUM_LOOP.into(),
                backing: Backing::IsoFile,
            }],
            Source::Loop(MEDIUM_LOOP.into()),
            fstype,
        ),
    };
    steps.push(mkdir(iso.clone()));
    steps.push(Step::Mount {
        source: source.clone(),
        target: iso,
        fstype: fstype.clone(),
        flags: Flags::RO,
        data: String::new(),
    });
    steps.push(Step::Symlink {
        target: source,
        link: "/dev/root".into(),
    });
    steps
}

/// What the rest of the plan depends on.
#[derive(Debug, Clone)]
pub struct Probed {
    pub found: Found,
    pub manifest: Manifest,
    /// `MemAvailable` and the machine's whole RAM, in bytes.
    pub mem_available: u64,
    pub ram: u64,
    /// The initrd trusts a key (and the manifest was signed by it): every
    /// image is checked, as with `nixlive.verify`.
    pub trusted: bool,
}

/// How an image is checked, for the log and `stage1.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every block as it is read, against the hash tree (dm-verity).
    Verity,
    /// The whole image against its SHA-256 before it is mounted.
    Sha256,
    /// Against its SHA-256 while copied to RAM.
    Copied,
    /// Against its SHA-256 while copied to RAM, then through dm-verity.
    CopiedVerity,
    /// Against its SHA-256 while fetched over HTTP.
    Fetched,
    /// Against its SHA-256 while fetched over HTTP, then through dm-verity.
    FetchedVerity,
    /// Not at all (no `nixlive.verify`, no trusted key, no hash tree).
    None,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Verity => "dm-verity",
            Check::Sha256 => "sha256 before mounting",
            Check::Copied => "sha256 while copying to RAM",
            Check::CopiedVerity => "sha256 while copying to RAM, then dm-verity",
            Check::Fetched => "sha256 while fetching",
            Check::FetchedVerity => "sha256 while fetching, then dm-verity",
            Check::None => "not checked",
        }
    }
}

/// Where the images come from, once decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// In place: on the medium, or in the initrd (netboot).
    InPlace { dir: String },
    /// Copied into a tmpfs of this size (`copytoram`), the medium released.
    Ram { size: u64 },
    /// Fetched over HTTP into a tmpfs of this size, and used there.
    Fetched { size: u64 },
}

/// The boot after the medium is mounted: the decisions and their steps.
#[derive(Debug, Clone)]
pub struct BootPlan {
    pub images: ImageSource,
    /// Why `copytoram` was not done, to tell the user (`None`: not asked, or done).
    pub copy_refused: Option<String>,
    /// Every image is checked (`nixlive.verify`, a trusted key, or
    /// copying to RAM).
    pub verify: bool,
    /// `nixlive.check`: every image is read whole before stage 2.
    pub check: bool,
    /// How each image is checked (name, how), for `store` and `fallback`.
    pub checks: Vec<(String, Check)>,
    pub fallback_checks: Vec<(String, Check)>,
    /// The stage-2 init, as the new root sees it.
    pub init: String,
    /// Copying to RAM (empty unless [`ImageSource::Ram`]); it may fail and
    /// be undone, after which [`BootPlan::fallback`] replaces `store`. Or,
    /// [`ImageSource::Fetched`], fetching the images (no fallback).
    pub copy: Vec<Step>,
    /// Verification, the images, the overlay store, releasing the medium.
    pub store: Vec<Step>,
    /// The store from the medium, in case copying to RAM fails.
    pub fallback: Option<Vec<Step>>,
    /// Moving the API filesystems and switching root.
    pub switch: Vec<Step>,
}

/// The directory the images are in: the initrd's root for netboot, else the medium.
pub fn images_dir(found: &Found) -> String {
    match found {
        Found::Initrd => String::new(),
        Found::Http { .. } => in_new_root(paths::RAM_IMAGES),
        _ => in_new_root(paths::MEDIUM),
    }
}

/// The stage-2 init: `init=` or the manifest's.
pub fn stage2_init(cmdline: &Cmdline, manifest: &Manifest) -> String {
    cmdline
        .init
        .clone()
        .unwrap_or_else(|| manifest.init.clone())
}

/// Decides where the images come from, whether they are verified, and the
/// steps from the images to the exec of stage 2.
pub fn plan(cmdline: &Cmdline, p: &Probed) -> BootPlan {
    let m = &p.manifest;
    let dir = images_dir(&p.found);
    let total: u64 = m.images.iter().fold(0, |a, i| a.saturating_add(i.size));
    let copy = match (cmdline.copytoram, &p.found) {
        (false, _) => Ok(None),
        // Netboot images are in RAM already.
        (true, Found::Initrd) => Err("copytoram: netboot images are in RAM already".to_string()),
        (true, Found::Http { .. }) => {
            Err("copytoram: images fetched over HTTP are in RAM already".to_string())
        }
        (true, _) => crate::copytoram::decide(total, p.mem_available).map(Some),
    };
    let (copy_refused, ram_size) = match copy {
        Ok(size) => (None, size),
        Err(why) => (Some(why), None),
    };
    let overlay = overlay_size(cmdline, p.ram);
    // nixlive.check reads an image without a hash tree whole, by its sha256.
    let verify = cmdline.verify || p.trusted || cmdline.check;
    let check = cmdline.check;
    let in_place = store_steps(m, &dir, verify, check, overlay, false, None);
    let in_place_checks = checks(m, verify, Via::InPlace);
    let (images, copy, store, fallback, checks, fallback_checks) = match (ram_size, &p.found) {
        // Sized and hashed while fetched.
        (_, Found::Http { url }) => {
            let (size, fetch) = crate::net::plan::fetch_steps(m, url, &dir);
            (
                ImageSource::Fetched { size },
                fetch,
                store_steps(m, &dir, false, check, overlay, true, None),
                None,
                checks(m, true, Via::Fetched),
                Vec::new(),
            )
        }
        (Some(size), _) => {
            let ram_dir = in_new_root(paths::RAM_IMAGES);
            (
                ImageSource::Ram { size },
                copy_steps(m, &dir, &ram_dir, size, total),
                store_steps(m, &ram_dir, false, check, overlay, true, Some(&p.found)),
                Some(in_place),
                checks(m, true, Via::Copied),
                in_place_checks,
            )
        }
        (None, _) => (
            ImageSource::InPlace { dir },
            Vec::new(),
            in_place,
            None,
            in_place_checks,
            Vec::new(),
        ),
    };
    let init = stage2_init(cmdline, m);
    BootPlan {
        images,
        copy_refused,
        verify: verify || ram_size.is_some() || matches!(p.found, Found::Http { .. }),
        check,
        checks,
        fallback_checks,
        switch: switch_steps(&init),
        init,
        copy,
        store,
        fallback,
    }
}

/// Where the images are read from, for [`checks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    InPlace,
    Copied,
    Fetched,
}

/// How each image of `m` is checked: by verity when it has a tree, else
/// by its SHA-256 when `verify` (or while copied or fetched).
fn checks(m: &Manifest, verify: bool, via: Via) -> Vec<(String, Check)> {
    m.images
        .iter()
        .map(|i| {
            let c = match (i.verity.is_some(), via, verify) {
                (true, Via::Copied, _) => Check::CopiedVerity,
                (true, Via::Fetched, _) => Check::FetchedVerity,
                (true, Via::InPlace, _) => Check::Verity,
                (false, Via::Copied, _) => Check::Copied,
                (false, Via::Fetched, _) => Check::Fetched,
                (false, Via::InPlace, true) => Check::Sha256,
                (false, Via::InPlace, false) => Check::None,
            };
            (i.name.clone(), c)
        })
        .collect()
}

fn overlay_size(cmdline: &Cmdline, ram: u64) -> u64 {
    cmdline.overlay_size.bytes(ram)
}

/// The tmpfs for the images and a verified copy of each.
fn copy_steps(m: &Manifest, from: &str, to: &str, size: u64, total: u64) -> Vec<Step> {
    let mut steps = vec![
        mkdir(to),
        mount(
            "tmpfs",
            to,
            "tmpfs",
            Flags::default(),
            &format!("mode=0755,size={size}"),
        ),
    ];
    steps.extend(m.images.iter().map(|img| Step::CheckSize {
        path: format!("{from}/{}", img.name),
        size: img.size,
    }));
    let mut done = 0;
    for img in &m.images {
        steps.push(Step::CopyToRam {
            from: format!("{from}/{}", img.name),
            to: format!("{to}/{}", img.name),
            sha256: img.sha256.clone(),
            done,
            total,
        });
        done = done.saturating_add(img.size);
    }
    steps
}

/// The images as lower layers (first = top), the rw tmpfs, the overlay at
/// `/nix/store`; after a copy to RAM, the medium (`release`) is let go.
/// Images `copied` (to RAM, or fetched) were sized and hashed on the way;
/// else with `verify`, an image without a hash tree is hashed through the
/// file that backs its loop device. With `check`, every image with a hash
/// tree is read whole through dm-verity before it is mounted.
fn store_steps(
    m: &Manifest,
    dir: &str,
    verify: bool,
    check: bool,
    overlay: u64,
    copied: bool,
    release: Option<&Found>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if !copied {
        steps.extend(m.images.iter().map(|img| Step::CheckSize {
            path: format!("{dir}/{}", img.name),
            size: img.size,
        }));
    }
    let checked: Vec<(usize, u64)> = m
        .images
        .iter()
        .enumerate()
        .filter(|_| check)
        .filter_map(|(i, img)| img.verity.as_ref().map(|v| (i, data_len(v))))
        .collect();
    let total = checked.iter().fold(0u64, |a, (_, n)| a.saturating_add(*n));
    let mut done = 0u64;
    let mut lowers = Vec::new();
    for (i, img) in m.images.iter().enumerate() {
        let hash = verify && img.verity.is_none();
        let read = checked.iter().find(|(j, _)| *j == i).map(|(_, n)| Read {
            size: *n,
            done,
            total,
        });
        done = done.saturating_add(read.as_ref().map_or(0, |r| r.size));
        lowers.push(image_steps(
            &mut steps,
            dir,
            img,
            i,
            m.images.len(),
            hash,
            read,
        ));
    }
    let rw = in_new_root(paths::RW_STORE);
    let store = in_new_root(paths::STORE_DIR);
    steps.extend([
        mkdir(rw.clone()),
        mount(
            "tmpfs",
            &rw,
            "tmpfs",
            Flags::default(),
            &format!("mode=0755,size={overlay}"),
        ),
        mkdir(format!("{rw}/store")),
        mkdir(format!("{rw}/work")),
        mkdir(store.clone()),
        mount(
            "overlay",
            &store,
            "overlay",
            Flags::default(),
            &format!(
                "lowerdir={},upperdir={rw}/store,workdir={rw}/work",
                lowers.join(":")
            ),
        ),
    ]);
    if let Some(found) = release {
        steps.extend(release_steps(found));
    }
    steps
}

/// The bytes dm-verity covers: the image's data area.
fn data_len(v: &verity::Params) -> u64 {
    v.data_blocks.saturating_mul(u64::from(v.data_block))
}

/// A whole read of one image's data through dm-verity (`nixlive.check`).
struct Read {
    size: u64,
    done: u64,
    total: u64,
}

/// Attach and mount image `i` of `n` (hashed through the loop device's
/// file when `hash`; read whole through dm-verity first when `read`);
/// returns its mount point.
fn image_steps(
    steps: &mut Vec<Step>,
    dir: &str,
    img: &ImageEntry,
    i: usize,
    n: usize,
    hash: bool,
    read: Option<Read>,
) -> String {
    let target = in_new_root(&paths::image_mount(i, n));
    let mut handle = format!("image{i}");
    let file = format!("{dir}/{}", img.name);
    steps.extend([
        mkdir(target.clone()),
        Step::AttachLoop {
            file: file.clone(),
            handle: handle.clone(),
            backing: Backing::Image {
                sha256: hash.then(|| img.sha256.clone()),
            },
        },
    ]);
    if let Some(params) = &img.verity {
        let dm = format!("verity{i}");
        steps.push(Step::Verity {
            source: handle,
            name: format!("nixlive-image{i}"),
            handle: dm.clone(),
            params: params.clone(),
        });
        handle = dm;
        if let Some(r) = read {
            steps.push(Step::CheckImage {
                source: handle.clone(),
                image: file,
                size: r.size,
                block: params.data_block,
                done: r.done,
                total: r.total,
            });
        }
    }
    steps.push(Step::Mount {
        source: Source::Loop(handle),
        target: target.clone(),
        fstype: img.fs.as_str().into(),
        flags: Flags::RO,
        data: String::new(),
    });
    target
}

/// After `copytoram`: the medium (and a findiso host) can go.
fn release_steps(found: &Found) -> Vec<Step> {
    let mut steps = vec![Step::Unmount {
        target: in_new_root(paths::MEDIUM),
    }];
    if let Found::File {
        host: Some(host), ..
    } = found
    {
        steps.push(Step::Unmount {
            target: host.clone(),
        });
    }
    steps
}

/// Moves the API filesystems into the new root and switches to it.
fn switch_steps(init: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = ["/dev", "/proc", "/sys", "/run"]
        .into_iter()
        .flat_map(|d| {
            [
                mkdir(in_new_root(d)),
                Step::Move {
                    from: d.into(),
                    to: in_new_root(d),
                },
            ]
        })
        .collect();
    steps.push(Step::SwitchRoot {
        new_root: NEW_ROOT.into(),
        init: init.into(),
    });
    steps
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use nixlive_formats::{ImageFs, SizeSpec};

    pub fn manifest(n: usize) -> Manifest {
        Manifest {
            init: "/nix/store/a-sys/init".into(),
            registration: paths::REGISTRATION.into(),
            images: (0..n)
                .map(|i| ImageEntry {
                    name: format!("img{i}.squashfs"),
                    fs: ImageFs::Squashfs,
                    size: 100 << 20,
                    sha256: format!("{i}").repeat(64),
                    verity: None,
                })
                .collect(),
            files: Vec::new(),
            sigs: Vec::new(),
        }
    }

    pub fn cd() -> Found {
        Found::Device {
            node: "/dev/sr0".into(),
            fstype: "iso9660".into(),
        }
    }

    pub fn findiso(file: &str) -> Found {
        Found::File {
            host: Some("/mnt-root/findiso".into()),
            path: format!("/mnt-root/findiso{file}"),
            fstype: "iso9660".into(),
        }
    }

    pub fn probed(found: Found, n: usize) -> Probed {
        Probed {
            found,
            manifest: manifest(n),
            mem_available: 4 << 30,
            ram: 1 << 30,
            trusted: false,
        }
    }

    pub fn render(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn api_mounts_with_their_flags() {
        assert_eq!(
            render(&api_mounts()),
            [
                "mkdir -p /proc",
                "mount -t proc -o nosuid,nodev,noexec proc /proc",
                "mkdir -p /sys",
                "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
                "mkdir -p /dev",
                "mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev",
                "mkdir -p /run",
                "mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run",
                "mkdir -p /mnt-root",
            ]
        );
        assert_eq!(
            render(&live_root()),
            ["mount -t tmpfs -o mode=0755 tmpfs /mnt-root"]
        );
    }

    fn sd_card(health: Option<ExtHealth>) -> PlainProbe {
        PlainProbe {
            node: "/dev/mmcblk0p1".into(),
            fstype: "ext4".into(),
            health,
        }
    }

    #[test]
    fn plain_root_is_the_new_root_read_write() {
        let c = Cmdline::parse("root=LABEL=NIXOS_SD init=/nix/store/a-sys/init");
        let p = plain_root(&c, &sd_card(Some(ExtHealth::default()))).unwrap();
        assert_eq!(
            render(&p.mount),
            [
                "mount -t ext4 /dev/mmcblk0p1 /mnt-root",
                "ln -sfn /dev/mmcblk0p1 /dev/root",
            ]
        );
        assert_eq!(p.init, "/nix/store/a-sys/init");
        assert!(p.warnings.is_empty());
        let all = render(&[p.mount.clone(), p.switch.clone()].concat());
        assert!(
            !all.iter()
                .any(|s| s.contains("tmpfs") || s.contains("overlay")),
            "no tmpfs, no overlay: {all:?}"
        );
        assert_eq!(
            all.last().unwrap(),
            "switch_root /mnt-root /nix/store/a-sys/init"
        );
    }

    #[test]
    fn plain_root_read_only_and_default_init() {
        let c = Cmdline::parse("root=LABEL=NIXOS_SD ro");
        let p = plain_root(&c, &sd_card(None)).unwrap();
        assert_eq!(
            render(&p.mount)[0],
            "mount -t ext4 -o ro /dev/mmcblk0p1 /mnt-root"
        );
        assert_eq!(p.init, PLAIN_INIT);
    }

    #[test]
    fn plain_root_needing_recovery_is_refused() {
        let c = Cmdline::default();
        let dirty = ExtHealth {
            needs_recovery: true,
            ..Default::default()
        };
        let r = plain_root(&c, &sd_card(Some(dirty))).unwrap_err();
        assert_eq!(r.node, "/dev/mmcblk0p1");
        assert!(r.why.contains("needs_recovery"), "{}", r.why);
        let orphans = ExtHealth {
            orphans: true,
            ..Default::default()
        };
        assert!(plain_root(&c, &sd_card(Some(orphans))).is_err());
        let errors = ExtHealth {
            errors: true,
            ..Default::default()
        };
        let p = plain_root(&c, &sd_card(Some(errors))).unwrap();
        assert!(p.warnings[0].contains("run fsck"), "{:?}", p.warnings);
    }

    #[test]
    fn medium_from_a_device_and_from_an_iso_file() {
        assert_eq!(
            render(&medium(&cd())),
            [
                "mkdir -p /mnt-root/iso",
                "mount -t iso9660 -o ro,nosuid,nodev /dev/sr0 /mnt-root/iso",
                "ln -sfn /dev/sr0 /dev/root",
            ]
        );
        let iso = findiso("/isos/nixos.iso");
        assert_eq!(
            render(&medium(&iso)),
            [
                "medium=$(losetup --read-only --find --show /mnt-root/findiso/isos/nixos.iso)",
                "mkdir -p /mnt-root/iso",
                "mount -t iso9660 -o ro,nosuid,nodev $medium /mnt-root/iso",
                "ln -sfn $medium /dev/root",
            ]
        );
        assert!(medium(&Found::Initrd).is_empty());
        // root=/nixos.iso: a file in the initramfs, no host to let go.
        let file = Found::File {
            host: None,
            path: "/nixos.iso".into(),
            fstype: "iso9660".into(),
        };
        assert_eq!(
            render(&medium(&file))[0],
            "medium=$(losetup --read-only --find --show /nixos.iso)"
        );
        let c = Cmdline {
            copytoram: true,
            ..Default::default()
        };
        let store = render(&plan(&c, &probed(file, 1)).store);
        assert_eq!(store.last().unwrap(), "umount /mnt-root/iso");
    }

    #[test]
    fn one_image_where_nixos_mounts_it() {
        let p = plan(&Cmdline::default(), &probed(cd(), 1));
        assert_eq!(
            render(&p.store),
            [
                "test $(stat -c %s /mnt-root/iso/img0.squashfs) = 104857600",
                "mkdir -p /mnt-root/nix/.ro-store",
                "image0=$(losetup --read-only --find --show /mnt-root/iso/img0.squashfs)",
                "mount -t squashfs -o ro,nosuid,nodev $image0 /mnt-root/nix/.ro-store",
                "mkdir -p /mnt-root/nix/.rw-store",
                "mount -t tmpfs -o mode=0755,size=536870900 tmpfs /mnt-root/nix/.rw-store",
                "mkdir -p /mnt-root/nix/.rw-store/store",
                "mkdir -p /mnt-root/nix/.rw-store/work",
                "mkdir -p /mnt-root/nix/store",
                "mount -t overlay -o lowerdir=/mnt-root/nix/.ro-store,upperdir=/mnt-root/nix/.rw-store/store,workdir=/mnt-root/nix/.rw-store/work overlay /mnt-root/nix/store",
            ]
        );
        assert_eq!(
            p.images,
            ImageSource::InPlace {
                dir: "/mnt-root/iso".into()
            }
        );
        assert!(p.copy.is_empty() && p.fallback.is_none() && !p.verify);
        assert_eq!(
            render(&p.switch),
            [
                "mkdir -p /mnt-root/dev",
                "mount --move /dev /mnt-root/dev",
                "mkdir -p /mnt-root/proc",
                "mount --move /proc /mnt-root/proc",
                "mkdir -p /mnt-root/sys",
                "mount --move /sys /mnt-root/sys",
                "mkdir -p /mnt-root/run",
                "mount --move /run /mnt-root/run",
                "switch_root /mnt-root /nix/store/a-sys/init",
            ]
        );
    }

    #[test]
    fn two_images_first_on_top() {
        let p = plan(&Cmdline::default(), &probed(cd(), 2));
        let s = render(&p.store);
        assert_eq!(s[2], "mkdir -p /mnt-root/nix/.ro-store/0");
        assert_eq!(s[5], "mkdir -p /mnt-root/nix/.ro-store/1");
        assert!(s[6].contains("--show /mnt-root/iso/img1.squashfs"), "{s:?}");
        assert_eq!(
            s[7],
            "mount -t squashfs -o ro,nosuid,nodev $image1 /mnt-root/nix/.ro-store/1"
        );
        assert!(
            s.last()
                .unwrap()
                .contains("lowerdir=/mnt-root/nix/.ro-store/0:/mnt-root/nix/.ro-store/1,")
        );
    }

    #[test]
    fn netboot_images_in_place_and_never_copied() {
        let c = Cmdline {
            copytoram: true,
            ..Default::default()
        };
        let p = plan(&c, &probed(Found::Initrd, 1));
        assert_eq!(p.images, ImageSource::InPlace { dir: String::new() });
        assert!(p.copy.is_empty());
        assert!(p.copy_refused.unwrap().contains("netboot"));
        assert!(render(&p.store)[2].ends_with("--show /img0.squashfs)"));
    }

    #[test]
    fn copytoram_copies_verifies_and_releases_the_medium() {
        let c = Cmdline {
            copytoram: true,
            ..Default::default()
        };
        let p = plan(&c, &probed(cd(), 2));
        assert!(matches!(p.images, ImageSource::Ram { .. }) && p.verify);
        let copy = render(&p.copy);
        assert_eq!(copy[0], "mkdir -p /mnt-root/nix/.images");
        assert_eq!(
            copy[1],
            "mount -t tmpfs -o mode=0755,size=211582976 tmpfs /mnt-root/nix/.images"
        );
        assert_eq!(
            copy[2..5],
            [
                "test $(stat -c %s /mnt-root/iso/img0.squashfs) = 104857600",
                "test $(stat -c %s /mnt-root/iso/img1.squashfs) = 104857600",
                "cp /mnt-root/iso/img0.squashfs /mnt-root/nix/.images/img0.squashfs"
            ]
        );
        let Step::CopyToRam { done, total, .. } = &p.copy[5] else {
            panic!("{copy:?}")
        };
        assert_eq!((*done, *total), (100 << 20, 200 << 20));
        let store = render(&p.store);
        assert!(store[1].contains("--show /mnt-root/nix/.images/img0.squashfs"));
        assert!(
            !store.iter().any(|s| s.contains("sha256sum")),
            "copying verified already"
        );
        assert_eq!(store.last().unwrap(), "umount /mnt-root/iso");
        let iso = findiso("/nixos.iso");
        let store = render(&plan(&c, &probed(iso, 1)).store);
        assert_eq!(
            store[store.len() - 2..],
            ["umount /mnt-root/iso", "umount /mnt-root/findiso"]
        );
        // Should the copy fail, the medium stays and serves the images.
        let fallback = render(p.fallback.as_ref().unwrap());
        assert!(fallback[3].contains("--show /mnt-root/iso/img0.squashfs"));
        assert!(!fallback.iter().any(|s| s.starts_with("umount")));
    }

    #[test]
    fn copytoram_refused_on_a_small_machine() {
        let c = Cmdline {
            copytoram: true,
            ..Default::default()
        };
        let mut p = probed(cd(), 2);
        p.mem_available = 300 << 20;
        let p = plan(&c, &p);
        assert_eq!(
            p.images,
            ImageSource::InPlace {
                dir: "/mnt-root/iso".into()
            }
        );
        assert!(p.copy.is_empty() && !p.verify);
        assert!(
            p.copy_refused
                .unwrap()
                .contains("booting from the medium instead")
        );
    }

    /// Each image is hashed through the open file that then backs its
    /// loop device: no second open by path between the check and the use.
    #[test]
    fn verify_hashes_each_image_through_its_loop_file() {
        let c = Cmdline {
            verify: true,
            ..Default::default()
        };
        let p = plan(&c, &probed(cd(), 2));
        assert!(p.verify);
        let s = render(&p.store);
        assert_eq!(
            s[3],
            "image0=$(losetup --read-only --find --show /mnt-root/iso/img0.squashfs) \
             # sha256sum --check of the file losetup opened"
        );
        assert_eq!(
            p.store[3],
            Step::AttachLoop {
                file: "/mnt-root/iso/img0.squashfs".into(),
                handle: "image0".into(),
                backing: Backing::Image {
                    sha256: Some("0".repeat(64))
                }
            }
        );
        assert!(s[6].ends_with("# sha256sum --check of the file losetup opened"));
        assert!(!s.iter().any(|l| l.starts_with("sha256sum")), "{s:?}");
        // Without a check, no hashing; the findiso ISO follows its links.
        let p = plan(&Cmdline::default(), &probed(cd(), 1));
        assert!(p.store.iter().any(|s| matches!(
            s,
            Step::AttachLoop {
                backing: Backing::Image { sha256: None },
                ..
            }
        )));
        assert!(matches!(
            &medium(&findiso("/a.iso"))[0],
            Step::AttachLoop {
                backing: Backing::IsoFile,
                ..
            }
        ));
    }

    /// nixlive.check: an image with a hash tree is read whole through
    /// dm-verity before it is mounted (progress over all such images); one
    /// without is hashed; without the flag nothing is read ahead.
    #[test]
    fn check_reads_every_image_before_it_is_mounted() {
        let c = Cmdline::parse("root=LABEL=X nixlive.check");
        let mut pr = with_verity(probed(cd(), 3));
        pr.manifest.images[1].verity = None;
        let p = plan(&c, &pr);
        assert!(p.check);
        let s = render(&p.store);
        let at = |needle: &str| s.iter().position(|l| l.contains(needle)).unwrap();
        assert!(at("dmsetup create nixlive-image0") < at("nixlive.check of /mnt-root/iso/img0"));
        assert!(
            at("nixlive.check of /mnt-root/iso/img0") < at("$verity0 /mnt-root/nix/.ro-store/0")
        );
        assert_eq!(
            s[at("nixlive.check of /mnt-root/iso/img0")],
            "cat $verity0 >/dev/null # nixlive.check of /mnt-root/iso/img0.squashfs"
        );
        let reads: Vec<(u64, u64, u64, u32)> = p
            .store
            .iter()
            .filter_map(|s| match s {
                Step::CheckImage {
                    size,
                    done,
                    total,
                    block,
                    ..
                } => Some((*size, *done, *total, *block)),
                _ => None,
            })
            .collect();
        let data = 25_000 * 4096;
        assert_eq!(
            reads,
            [(data, 0, 2 * data, 4096), (data, data, 2 * data, 4096)]
        );
        // The image without a tree: hashed through its loop file.
        assert!(s[at("--show /mnt-root/iso/img1.squashfs)")].contains("sha256sum --check"));
        assert_eq!(p.checks[1], ("img1.squashfs".into(), Check::Sha256));
        // Without nixlive.check: lazy, as before.
        let lazy = plan(&Cmdline::default(), &pr);
        assert!(!lazy.check);
        assert!(
            !lazy
                .store
                .iter()
                .any(|s| matches!(s, Step::CheckImage { .. }))
        );
        // copytoram: the copy hashed every image; verity over the copy is read whole.
        let c = Cmdline::parse("nixlive.check copytoram");
        let p = plan(&c, &pr);
        assert_eq!(
            p.store
                .iter()
                .filter(|s| matches!(s, Step::CheckImage { .. }))
                .count(),
            2
        );
        let fallback = p.fallback.unwrap();
        assert_eq!(
            fallback
                .iter()
                .filter(|s| matches!(s, Step::CheckImage { .. }))
                .count(),
            2,
            "the fallback to the medium checks too"
        );
    }

    #[test]
    fn init_from_the_command_line_or_the_manifest() {
        let mut c = Cmdline::default();
        assert_eq!(plan(&c, &probed(cd(), 1)).init, "/nix/store/a-sys/init");
        c.init = Some("/bin/probe".into());
        let p = plan(&c, &probed(cd(), 1));
        assert_eq!(p.init, "/bin/probe");
        assert_eq!(
            p.switch.last().unwrap().to_string(),
            "switch_root /mnt-root /bin/probe"
        );
    }

    #[test]
    fn overlay_size_in_bytes() {
        let c = Cmdline {
            overlay_size: SizeSpec::Bytes(4096),
            ..Default::default()
        };
        let p = plan(&c, &probed(cd(), 1));
        assert!(render(&p.store).iter().any(|s| s.contains("size=4096")));
    }

    pub fn with_verity(mut p: Probed) -> Probed {
        for img in &mut p.manifest.images {
            img.verity = Some(verity::Params {
                data_block: 4096,
                hash_block: 4096,
                data_blocks: 25_000,
                hash_offset: 25_000 * 4096,
                salt: vec![0xaa; 2],
                root: [0xbb; 32],
            });
        }
        p
    }

    #[test]
    fn verity_goes_between_the_loop_device_and_the_mount() {
        let p = plan(&Cmdline::default(), &with_verity(probed(cd(), 1)));
        let s = render(&p.store);
        assert_eq!(
            s[..5],
            [
                "test $(stat -c %s /mnt-root/iso/img0.squashfs) = 104857600".to_string(),
                "mkdir -p /mnt-root/nix/.ro-store".into(),
                "image0=$(losetup --read-only --find --show /mnt-root/iso/img0.squashfs)".into(),
                format!(
                    "verity0=$(dmsetup create nixlive-image0 --readonly --table '0 200000 verity 1 $image0 $image0 4096 4096 25000 25001 sha256 {} aaaa')",
                    "bb".repeat(32)
                ),
                "mount -t squashfs -o ro,nosuid,nodev $verity0 /mnt-root/nix/.ro-store".into(),
            ]
        );
        assert_eq!(p.checks, [("img0.squashfs".to_string(), Check::Verity)]);
    }

    /// How each image is checked on every path, with a trusted key (or
    /// nixlive.verify) and without.
    #[test]
    fn every_path_checks_every_image_when_asked() {
        let copy = Cmdline {
            copytoram: true,
            ..Default::default()
        };
        let verify = Cmdline {
            verify: true,
            ..Default::default()
        };
        let trusted = |mut p: Probed| {
            p.trusted = true;
            p
        };
        let small = |mut p: Probed| {
            p.mem_available = 300 << 20;
            p
        };
        let has_sha = |p: &BootPlan| {
            render(&p.store)
                .iter()
                .filter(|s| s.contains("sha256sum --check"))
                .count()
        };
        let only = |p: &BootPlan| {
            let mut c: Vec<Check> = p.checks.iter().map(|(_, c)| *c).collect();
            c.dedup();
            c
        };
        let paths = [
            ("medium", Cmdline::default(), probed(cd(), 2)),
            ("findiso", Cmdline::default(), probed(findiso("/a.iso"), 2)),
            ("netboot", Cmdline::default(), probed(Found::Initrd, 2)),
            ("copytoram refused", copy.clone(), small(probed(cd(), 2))),
            (
                "netboot with copytoram",
                copy.clone(),
                probed(Found::Initrd, 2),
            ),
        ];
        for (what, c, p) in paths {
            // Nothing asked: nothing hashed.
            let plain = plan(&c, &p);
            assert_eq!(only(&plain), [Check::None], "{what}");
            assert_eq!(has_sha(&plain), 0, "{what}");
            // A trusted key, or nixlive.verify: every image, by its sha256.
            for p in [plan(&c, &trusted(p.clone())), {
                let mut v = verify.clone();
                v.copytoram = c.copytoram;
                plan(&v, &p)
            }] {
                assert_eq!(only(&p), [Check::Sha256], "{what}");
                assert_eq!(has_sha(&p), 2, "{what}");
                assert!(p.verify, "{what}");
            }
            // With hash trees: dm-verity, and no whole-image hashing.
            let v = plan(&c, &trusted(with_verity(p.clone())));
            assert_eq!(only(&v), [Check::Verity], "{what}");
            assert_eq!(has_sha(&v), 0, "{what}");
            assert_eq!(
                render(&v.store)
                    .iter()
                    .filter(|s| s.contains("dmsetup create"))
                    .count(),
                2,
                "{what}"
            );
        }
        // copytoram: hashed while copying, then verity over the copy; the
        // fallback to the medium still checks every image.
        let p = plan(&copy, &trusted(probed(cd(), 2)));
        assert_eq!(only(&p), [Check::Copied]);
        assert_eq!(p.fallback_checks.len(), 2);
        assert!(p.fallback_checks.iter().all(|(_, c)| *c == Check::Sha256));
        let fallback = render(p.fallback.as_ref().unwrap());
        assert_eq!(
            fallback
                .iter()
                .filter(|s| s.contains("sha256sum --check"))
                .count(),
            2
        );
        let p = plan(&copy, &with_verity(probed(cd(), 1)));
        assert_eq!(only(&p), [Check::CopiedVerity]);
        assert!(render(&p.store)[2].contains("dmsetup create nixlive-image0"));
        assert_eq!(
            Check::CopiedVerity.as_str(),
            "sha256 while copying to RAM, then dm-verity"
        );
    }
}

//! Doing what [`crate::plan`] decided. [`Runner::run`] logs each step as
//! its shell equivalent and performs it through an [`Executor`]: [`Real`]
//! makes the syscalls; the tests' recording executor writes them down.
//! When a step fails, what the same run mounted (inside the new root) or
//! attached is undone, in reverse, so a failure leaves the initramfs as it
//! was before the run; `/proc`, `/sys`, `/dev` and `/run` stay for the
//! failure policy.

use crate::error::BootError;
use crate::plan::{Backing, Flags, Handle, Source, Step};
use crate::sys;
use nixlive_formats::verity;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, mount};
use std::collections::HashMap;
use std::ffi::CString;
use std::io;

/// The primitive operations a plan is made of.
pub trait Executor {
    fn mkdir(&mut self, path: &str) -> io::Result<()>;
    fn mount(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: Flags,
        data: &str,
    ) -> io::Result<()>;
    /// Attaches `file` read-only to a free loop device, opened as
    /// `backing` says (and hashed through that same open file when it
    /// gives a sha256); returns its node.
    fn attach_loop(&mut self, file: &str, backing: &Backing) -> Result<String, AttachError>;
    /// `nixlive.check`: reads `c.size` bytes of the device `dev` (dm-verity
    /// over `c.image`) once, naming the first block that cannot be read.
    fn check_image(&mut self, dev: &str, c: &ImageRead<'_>) -> Result<(), BootError>;
    /// Lets go of a loop device attached here that no mount holds.
    fn detach_loop(&mut self, node: &str);
    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()>;
    fn unmount(&mut self, target: &str) -> io::Result<()>;
    fn move_mount(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// The real size of `path`, in bytes.
    fn file_size(&mut self, path: &str) -> io::Result<u64>;
    /// Puts dm-verity over `dev` as the device-mapper device `name`;
    /// returns its node.
    fn verity(&mut self, name: &str, dev: &str, params: &verity::Params) -> io::Result<String>;
    /// Removes a device-mapper device made here that no mount holds.
    fn remove_dm(&mut self, name: &str);
    /// Copies one image into RAM, checking its SHA-256 (`done` of `total`
    /// bytes were copied before, for the progress line).
    fn copy_to_ram(
        &mut self,
        from: &str,
        to: &str,
        sha256: &str,
        done: u64,
        total: u64,
    ) -> Result<(), BootError>;
    /// Fetches one image over HTTP into `to`, checking its size and
    /// SHA-256 (`done` of `total` bytes fetched before, for the progress line).
    fn fetch(&mut self, f: &Fetch<'_>) -> Result<(), BootError>;
    /// Only returns on failure.
    fn switch_root(&mut self, new_root: &str, init: &str) -> BootError;
}

/// A [`Step::Fetch`]'s fields.
pub struct Fetch<'a> {
    pub url: &'a str,
    pub to: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    pub done: u64,
    pub total: u64,
}

/// A [`Step::CheckImage`]'s fields.
pub struct ImageRead<'a> {
    pub image: &'a str,
    pub size: u64,
    pub block: u32,
    pub done: u64,
    pub total: u64,
}

/// Why a loop device was not attached.
#[derive(Debug)]
pub enum AttachError {
    /// Opening the file, or the loop device: the step is named with it.
    Io(io::Error),
    /// The file is not what the manifest says (its sha256).
    Check(BootError),
}

impl From<io::Error> for AttachError {
    fn from(e: io::Error) -> AttachError {
        AttachError::Io(e)
    }
}

/// Runs plans, remembering the loop devices their handles name.
#[derive(Default)]
pub struct Runner {
    loops: HashMap<Handle, String>,
}

/// What undoes a step that succeeded, should a later one in its run fail.
enum Undo {
    Unmount(String),
    Detach(Handle),
    RemoveDm { name: String, handle: Handle },
}

impl Runner {
    /// Runs `steps` in order; on the first failure, undoes what this run did.
    pub fn run(&mut self, steps: &[Step], ex: &mut dyn Executor) -> Result<(), BootError> {
        let mut undo = Vec::new();
        for s in steps {
            log::info!("{s}");
            match self.one(s, ex) {
                Ok(u) => undo.extend(u),
                Err(e) => {
                    self.undo(undo, ex);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The node of a loop device the plan attached, or the path itself.
    pub fn resolve(&self, source: &Source) -> String {
        match source {
            Source::Path(p) => p.clone(),
            Source::Loop(h) => self
                .loops
                .get(h)
                .cloned()
                .unwrap_or_else(|| format!("${h}")),
        }
    }

    fn one(&mut self, s: &Step, ex: &mut dyn Executor) -> Result<Option<Undo>, BootError> {
        let failed = |e: io::Error| BootError::Step {
            step: s.to_string(),
            hint: hint(s, &e),
            source: e,
        };
        match s {
            Step::Mkdir { path } => ex.mkdir(path).map_err(failed)?,
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let node = self.resolve(source);
                ex.mount(&node, target, fstype, *flags, data)
                    .map_err(failed)?;
                if let Source::Loop(h) = source {
                    log::info!("${h} is {node}");
                }
                // The API filesystems stay: the failure policy and its shell need them.
                let ours = target.starts_with(nixlive_formats::paths::NEW_ROOT);
                return Ok(ours.then(|| Undo::Unmount(target.clone())));
            }
            Step::AttachLoop {
                file,
                handle,
                backing,
            } => {
                let node = ex.attach_loop(file, backing).map_err(|e| match e {
                    AttachError::Io(e) => failed(e),
                    AttachError::Check(e) => e,
                })?;
                self.loops.insert(handle.clone(), node);
                return Ok(Some(Undo::Detach(handle.clone())));
            }
            Step::Symlink { target, link } => {
                ex.symlink(&self.resolve(target), link).map_err(failed)?
            }
            Step::Unmount { target } => ex.unmount(target).map_err(failed)?,
            Step::Move { from, to } => ex.move_mount(from, to).map_err(failed)?,
            Step::CheckImage {
                source,
                image,
                size,
                block,
                done,
                total,
            } => {
                let dev = self.resolve(&Source::Loop(source.clone()));
                ex.check_image(
                    &dev,
                    &ImageRead {
                        image,
                        size: *size,
                        block: *block,
                        done: *done,
                        total: *total,
                    },
                )?
            }
            Step::CheckSize { path, size } => {
                let got = ex.file_size(path).map_err(BootError::sys("stat", path))?;
                if got != *size {
                    return Err(BootError::Size {
                        path: path.clone(),
                        want: *size,
                        got,
                    });
                }
            }
            Step::Verity {
                source,
                name,
                handle,
                params,
            } => {
                let dev = self.resolve(&Source::Loop(source.clone()));
                let node = ex.verity(name, &dev, params).map_err(failed)?;
                log::info!("${handle} is {node}");
                self.loops.insert(handle.clone(), node);
                return Ok(Some(Undo::RemoveDm {
                    name: name.clone(),
                    handle: handle.clone(),
                }));
            }
            Step::CopyToRam {
                from,
                to,
                sha256,
                done,
                total,
            } => ex.copy_to_ram(from, to, sha256, *done, *total)?,
            Step::Fetch {
                url,
                to,
                sha256,
                size,
                done,
                total,
            } => ex.fetch(&Fetch {
                url,
                to,
                sha256,
                size: *size,
                done: *done,
                total: *total,
            })?,
            Step::SwitchRoot { new_root, init } => return Err(ex.switch_root(new_root, init)),
        }
        Ok(None)
    }

    fn undo(&mut self, undo: Vec<Undo>, ex: &mut dyn Executor) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Unmount(target) => match ex.unmount(&target) {
                    Ok(()) => log::info!("undone: umount {target}"),
                    Err(e) => log::warn!("undoing: umount {target}: {e}, leaving it"),
                },
                Undo::RemoveDm { name, handle } => {
                    self.loops.remove(&handle);
                    ex.remove_dm(&name);
                    log::info!("undone: dmsetup remove {name}");
                }
                Undo::Detach(h) => {
                    if let Some(node) = self.loops.remove(&h) {
                        ex.detach_loop(&node);
                        log::info!("undone: ${h} ({node}) detached");
                    }
                }
            }
        }
    }
}

/// What to try when a step fails for a reason the kernel only logs.
pub fn hint(s: &Step, e: &io::Error) -> &'static str {
    if let Step::Verity { .. } = s {
        return " (the kernel log says why; the initrd needs the dm_mod and dm_verity modules)";
    }
    let Step::Mount {
        fstype,
        target,
        flags,
        source,
        ..
    } = s
    else {
        return "";
    };
    let through_verity = matches!(source, Source::Loop(h) if h.starts_with("verity"));
    if through_verity && e.raw_os_error() == Some(libc::EIO) {
        return " (dm-verity refused the image's first blocks: they do not match the manifest's \
                 root hash, so the medium is damaged or was changed)";
    }
    let plain_root = target == nixlive_formats::paths::NEW_ROOT && fstype != "tmpfs";
    match (fstype.as_str(), e.raw_os_error()) {
        (_, Some(libc::EROFS | libc::EACCES)) if plain_root && !flags.ro => {
            " (the root filesystem is read-only, e.g. a write-protected SD card or a \
             filesystem with features this kernel can only read: make it writable, or add \
             `ro` to the kernel command line to boot it read-only)"
        }
        ("vfat", Some(libc::EINVAL)) => {
            " (the kernel log says why; usually a missing code page: the initrd needs \
             nls_cp437 and the module of the default iocharset, e.g. nls_ascii or nls_utf8)"
        }
        (_, Some(libc::ENODEV)) => {
            " (the kernel does not know this filesystem: add its module to the initrd \
             or to nixlive.modules=)"
        }
        _ => "",
    }
}

/// The executor that makes the syscalls.
#[derive(Default)]
pub struct Real {
    /// Open loop devices, by node: with autoclear, the last close of an
    /// unmounted loop device detaches it, so each stays open until mounted.
    loops: HashMap<String, OwnedFd>,
}

impl Executor for Real {
    fn mkdir(&mut self, path: &str) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn mount(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: Flags,
        data: &str,
    ) -> io::Result<()> {
        let mut f = MountFlags::empty();
        for (on, flag) in [
            (flags.ro, MountFlags::RDONLY),
            (flags.nosuid, MountFlags::NOSUID),
            (flags.nodev, MountFlags::NODEV),
            (flags.noexec, MountFlags::NOEXEC),
        ] {
            if on {
                f |= flag;
            }
        }
        match mount_data(source, target, fstype, f, data) {
            // The kernel may have mounted an API filesystem already.
            Err(rustix::io::Errno::BUSY) if ["/proc", "/sys", "/dev", "/run"].contains(&target) => {
            }
            r => r?,
        }
        // The mount holds the loop device now.
        self.loops.remove(source);
        Ok(())
    }

    fn attach_loop(&mut self, file: &str, backing: &Backing) -> Result<String, AttachError> {
        let follow = matches!(backing, Backing::IsoFile);
        let f = open_regular(file, follow)?;
        if let Backing::Image { sha256: Some(want) } = backing {
            crate::verify::verify_open(file, &f, want).map_err(AttachError::Check)?;
        }
        let (node, fd) = attach_loop(f.as_fd())?;
        self.loops.insert(node.clone(), fd);
        Ok(node)
    }

    fn check_image(&mut self, dev: &str, c: &ImageRead<'_>) -> Result<(), BootError> {
        crate::check::read_through(dev, c)
    }

    fn detach_loop(&mut self, node: &str) {
        self.loops.remove(node);
    }

    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()> {
        match std::fs::remove_file(link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(target, link)
    }

    fn unmount(&mut self, target: &str) -> io::Result<()> {
        match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
            // Not mounted: nothing to let go of.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => Ok(()),
            r => Ok(r?),
        }
    }

    fn move_mount(&mut self, from: &str, to: &str) -> io::Result<()> {
        Ok(rustix::mount::mount_move(from, to)?)
    }

    fn file_size(&mut self, path: &str) -> io::Result<u64> {
        Ok(open_regular(path, false)?.metadata()?.len())
    }

    fn verity(&mut self, name: &str, dev: &str, params: &verity::Params) -> io::Result<String> {
        let ctl = rustix::fs::open(
            "/dev/mapper/control",
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let minor = sys::dm_create(
            ctl.as_fd(),
            name,
            params.sectors(),
            "verity",
            &params.target(dev),
        )?;
        // The target holds the loop device now.
        self.loops.remove(dev);
        Ok(format!("/dev/dm-{minor}"))
    }

    fn remove_dm(&mut self, name: &str) {
        let removed = rustix::fs::open(
            "/dev/mapper/control",
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .and_then(|ctl| sys::dm_remove(ctl.as_fd(), name));
        if let Err(e) = removed {
            log::warn!("dmsetup remove {name}: {e}, leaving it");
        }
    }

    fn copy_to_ram(
        &mut self,
        from: &str,
        to: &str,
        sha256: &str,
        done: u64,
        total: u64,
    ) -> Result<(), BootError> {
        crate::copytoram::copy_image(from, to, sha256, done, total)
    }

    fn fetch(&mut self, f: &Fetch<'_>) -> Result<(), BootError> {
        crate::net::fetch_image(f.url, f.to, f.sha256, f.size, f.done, f.total)
    }

    fn switch_root(&mut self, new_root: &str, init: &str) -> BootError {
        match crate::switch_root::switch_root(new_root, init) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }
}

/// `mount(2)` with the options string as data (none when empty).
pub fn mount_data(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> rustix::io::Result<()> {
    let data = CString::new(data).map_err(|_| rustix::io::Errno::INVAL)?;
    let data = (!data.is_empty()).then_some(data.as_c_str());
    mount(source, target, fstype, flags, data)
}

/// Opens a file a medium (or a findiso host) holds, for reading, without
/// ever blocking: `O_NONBLOCK` (a FIFO named like an image would block an
/// open for reading until a writer came), then refused unless it is a
/// regular file (`InvalidInput`, naming what it is); `O_NOFOLLOW` unless
/// `follow`. The flag is cleared again for the reads that follow.
pub fn open_regular(path: &str, follow: bool) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device node"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file: refused"),
        ));
    }
    let fl = rustix::fs::fcntl_getfl(&f)?;
    rustix::fs::fcntl_setfl(&f, fl - OFlags::NONBLOCK)?;
    Ok(f)
}

/// Binds the open file `backing` read-only to a free loop device with
/// `LOOP_CONFIGURE` (autoclear: the device frees itself when unmounted).
/// Returns its node and the open device, which must stay open until the
/// device is in use.
pub(crate) fn attach_loop(backing: rustix::fd::BorrowedFd<'_>) -> io::Result<(String, OwnedFd)> {
    let ctl = rustix::fs::open(
        "/dev/loop-control",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Another process could take the same free device between the two calls;
    // in the initrd nobody else does, but retry a few times on EBUSY anyway.
    let mut last = None;
    for _ in 0..8 {
        let n = sys::loop_ctl_get_free(ctl.as_fd())?;
        let node = format!("/dev/loop{n}");
        let dev = rustix::fs::open(
            node.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        match sys::loop_configure(
            dev.as_fd(),
            backing,
            sys::LO_FLAGS_READ_ONLY | sys::LO_FLAGS_AUTOCLEAR,
        ) {
            Ok(()) => return Ok((node, dev)),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free loop device")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Neither an image nor the findiso ISO can block init: a FIFO (even
    /// through a link the ISO may follow) is refused at once, naming it;
    /// an image is never read through a link; what is opened reads
    /// normally (O_NONBLOCK cleared).
    #[test]
    fn files_from_a_medium_never_block_and_links_only_for_the_iso() {
        use std::io::Read;
        let dir = std::env::temp_dir().join(format!("nixlive-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
        std::fs::write(p("img"), b"image").unwrap();
        std::os::unix::fs::symlink(p("img"), p("link")).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(p("fifo"))
                .status()
                .unwrap()
                .success()
        );
        std::os::unix::fs::symlink(p("fifo"), p("fifo-link")).unwrap();
        let mut text = String::new();
        let mut f = open_regular(&p("img"), false).unwrap();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "image");
        assert!(
            !rustix::fs::fcntl_getfl(&f)
                .unwrap()
                .contains(OFlags::NONBLOCK)
        );
        assert!(open_regular(&p("link"), true).is_ok());
        let e = open_regular(&p("link"), false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        for (path, follow) in [(p("fifo"), false), (p("fifo-link"), true)] {
            let e = open_regular(&path, follow).unwrap_err();
            assert_eq!(e.to_string(), "a FIFO, not a regular file: refused");
        }
        assert!(
            open_regular(&dir.to_string_lossy(), true)
                .unwrap_err()
                .to_string()
                .starts_with("a directory")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hints_name_the_missing_module() {
        let m = |fstype: &str| Step::Mount {
            source: Source::Path("/dev/sda".into()),
            target: "/mnt-root/iso".into(),
            fstype: fstype.into(),
            flags: Flags::default(),
            data: String::new(),
        };
        let einval = io::Error::from_raw_os_error(libc::EINVAL);
        let enodev = io::Error::from_raw_os_error(libc::ENODEV);
        assert!(hint(&m("vfat"), &einval).contains("nls_cp437"));
        assert!(hint(&m("ext4"), &einval).is_empty());
        assert!(hint(&m("exfat"), &enodev).contains("nixlive.modules="));
        assert!(hint(&Step::Mkdir { path: "/x".into() }, &enodev).is_empty());
        let root = |ro: bool| Step::Mount {
            source: Source::Path("/dev/vda1".into()),
            target: "/mnt-root".into(),
            fstype: "ext4".into(),
            flags: Flags {
                ro,
                ..Flags::default()
            },
            data: String::new(),
        };
        let erofs = io::Error::from_raw_os_error(libc::EROFS);
        assert!(hint(&root(false), &erofs).contains("add `ro`"));
        assert!(hint(&root(true), &erofs).is_empty());
        assert!(hint(&m("ext4"), &erofs).is_empty(), "not the root");
    }
}

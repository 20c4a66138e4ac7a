//! Doing what [`crate::plan`] decided: each step is logged as its shell
//! equivalent, then performed with direct syscalls.

use crate::error::BootError;
use crate::plan::Step;
use crate::sys;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, mount};
use std::ffi::CString;

pub fn run(steps: &[Step]) -> Result<(), BootError> {
    for s in steps {
        log::info!("{s}");
        run_one(s).map_err(|e| {
            let what = format!("{s}{}", hint(s, &e));
            BootError::Io { what, source: e }
        })?;
    }
    Ok(())
}

/// What to try when a mount fails for a reason the kernel only logs.
pub fn hint(s: &Step, e: &std::io::Error) -> &'static str {
    let Step::Mount { fstype, .. } = s else {
        return "";
    };
    match (fstype.as_str(), e.raw_os_error()) {
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

fn run_one(s: &Step) -> std::io::Result<()> {
    match s {
        Step::Mkdir { path } => {
            std::fs::create_dir_all(path)?;
        }
        Step::Mount {
            source,
            target,
            fstype,
            readonly,
            data,
        } => {
            let mut flags = MountFlags::empty();
            if *readonly {
                flags |= MountFlags::RDONLY;
            }
            mount_data(source, target, fstype, flags, data)?;
        }
        Step::Symlink { target, link } => {
            match std::fs::remove_file(link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::os::unix::fs::symlink(target, link)?;
        }
        Step::LoopMount {
            image,
            target,
            fstype,
        } => {
            // Keep the loop fd open until mounted: with autoclear, the last
            // close of an unmounted loop device detaches it.
            let (node, _dev) = attach_loop(image)?;
            mount_data(&node, target, fstype, MountFlags::RDONLY, "")?;
            log::info!("{image} is {node}");
        }
    }
    Ok(())
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

/// Binds `image` read-only to a free loop device with `LOOP_CONFIGURE`
/// (autoclear: the device frees itself when unmounted). Returns its node and
/// the open device, which must stay open until the device is in use.
pub fn attach_loop(image: &str) -> std::io::Result<(String, OwnedFd)> {
    let backing = rustix::fs::open(image, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
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
            backing.as_fd(),
            sys::LO_FLAGS_READ_ONLY | sys::LO_FLAGS_AUTOCLEAR,
        ) {
            Ok(()) => return Ok((node, dev)),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free loop device")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_missing_module() {
        let m = |fstype: &str| Step::Mount {
            source: "/dev/sda".into(),
            target: "/mnt-root/iso".into(),
            fstype: fstype.into(),
            readonly: true,
            data: String::new(),
        };
        let einval = std::io::Error::from_raw_os_error(libc::EINVAL);
        let enodev = std::io::Error::from_raw_os_error(libc::ENODEV);
        assert!(hint(&m("vfat"), &einval).contains("nls_cp437"));
        assert!(hint(&m("ext4"), &enodev).contains("nixlive.modules="));
        assert_eq!(hint(&m("ext4"), &einval), "");
        let mkdir = Step::Mkdir { path: "/x".into() };
        assert_eq!(hint(&mkdir, &enodev), "");
    }
}

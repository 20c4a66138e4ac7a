//! The file-system calls that must not follow symbolic links (SSH keys and
//! home directories belong to users, who could plant links there), made
//! relative to directory descriptors through rustix; and the only `unsafe`
//! of postboot: the two ioctls that grow the root partition and its
//! filesystem, which rustix has no typed wrapper for.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::process::{Gid, Uid};

/// Who should own a file, and with which permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Opens a directory we trust (the root given on the command line).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory `name` in `dir`; a symbolic link there is `ELOOP`,
/// anything but a directory `ENOTDIR`.
pub fn open_subdir_nofollow(dir: impl AsFd, name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Creates directory `name` in `dir` (`Ok(false)` if something is there
/// already; the caller opens it with [`open_subdir_nofollow`], which checks
/// what it is).
pub fn mkdir_at(dir: impl AsFd, name: &str, mode: u32) -> io::Result<bool> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Permission bits and owner of an open file.
pub fn stat_fd(fd: impl AsFd) -> io::Result<(u32, Owner)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((
        st.st_mode & 0o7777,
        Owner {
            uid: st.st_uid,
            gid: st.st_gid,
        },
    ))
}

/// Sets mode and owner of an open file where they differ; `Ok(true)` if
/// anything changed. Changing the owner needs privilege, so it is only
/// attempted when needed.
pub fn set_mode_owner(fd: impl AsFd, mode: u32, owner: Owner) -> io::Result<bool> {
    let (have_mode, have_owner) = stat_fd(&fd)?;
    let mut changed = false;
    if have_owner != owner {
        rustix::fs::fchown(
            &fd,
            Some(Uid::from_raw(owner.uid)),
            Some(Gid::from_raw(owner.gid)),
        )?;
        changed = true;
    }
    // After chown: it may clear set-id bits.
    if have_mode != mode || changed {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        changed |= have_mode != mode;
    }
    Ok(changed)
}

/// Reads file `name` in `dir` without following a symbolic link;
/// `Ok(None)` if there is none. Refuses anything but a regular file (a
/// FIFO is opened without blocking, then refused) and files over `limit`
/// bytes.
pub fn read_nofollow(
    dir: impl AsFd,
    name: &str,
    limit: u64,
) -> io::Result<Option<(Vec<u8>, OwnedFd)>> {
    opened(
        rustix::fs::openat(dir, name, READ_NOFOLLOW, Mode::empty()),
        limit,
    )
}

/// [`read_nofollow`] for a whole path: its last component is not
/// followed if it is a symbolic link (the directories above it are the
/// system's, trusted).
pub fn read_path_nofollow(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    Ok(opened(rustix::fs::open(path, READ_NOFOLLOW, Mode::empty()), limit)?.map(|(d, _)| d))
}

const READ_NOFOLLOW: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

fn opened(open: rustix::io::Result<OwnedFd>, limit: u64) -> io::Result<Option<(Vec<u8>, OwnedFd)>> {
    let fd = match open {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(io::Error::other(
                "is a symbolic link, refusing to follow it",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::other(
            "is not a regular file, refusing to read it",
        ));
    }
    let too_large =
        || io::Error::other(format!("is larger than {limit} bytes, refusing to read it"));
    if st.st_size as u64 > limit {
        return Err(too_large());
    }
    let file = std::fs::File::from(fd.try_clone()?);
    let mut data = Vec::new();
    // It may grow while we read: never more than the limit.
    io::Read::read_to_end(&mut io::Read::take(file, limit + 1), &mut data)?;
    if data.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(Some((data, fd)))
}

/// Replaces file `name` in `dir` atomically with `data`: a new file with
/// `mode` and `owner` is written, synced and renamed over it (the rename
/// replaces a link itself, never what it points to).
pub fn replace_file(
    dir: impl AsFd,
    name: &str,
    data: &[u8],
    mode: u32,
    owner: Owner,
) -> io::Result<()> {
    let tmp = format!(".{name}.nixlive-tmp-{}", std::process::id());
    // A stale temporary file of an earlier, interrupted run.
    match rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::openat(
        &dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let result = (|| {
        set_mode_owner(&fd, mode, owner)?;
        let mut file = std::fs::File::from(fd.try_clone()?);
        file.write_all(data)?;
        rustix::fs::fsync(&fd)?;
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?;
        Ok(())
    })();
    if result.is_err() {
        // not fatal: the error that matters is returned below.
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

/// The effective user of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `struct blkpg_partition` from `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: i32,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg` from `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: i32,
    flags: i32,
    datalen: i32,
    data: *mut std::ffi::c_void,
}

const BLKPG: rustix::ioctl::Opcode = rustix::ioctl::opcode::none(0x12, 105);
const BLKPG_RESIZE_PARTITION: i32 = 3;
const EXT4_IOC_RESIZE_FS: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<u64>(b'f', 16);

/// `BLKPG_RESIZE_PARTITION`: tells the kernel that partition `pno` of the
/// disk open as `disk` now spans `length` bytes from `start` (the table on
/// the disk was rewritten already). Works while the partition is mounted.
pub fn blkpg_resize_partition(
    disk: impl AsFd,
    pno: u32,
    start: u64,
    length: u64,
) -> io::Result<()> {
    let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(|_| invalid())?,
        length: i64::try_from(length).map_err(|_| invalid())?,
        pno: i32::try_from(pno).map_err(|_| invalid())?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: (&raw mut part).cast(),
    };
    #[allow(unsafe_code)]
    // SAFETY: BLKPG reads a `blkpg_ioctl_arg` through the pointer rustix
    // passes (to `arg`, alive for the call), whose `data` points to `part`,
    // a `blkpg_partition` of `datalen` bytes alive for the call; the
    // kernel writes nothing back.
    unsafe {
        let setter = rustix::ioctl::Setter::<BLKPG, BlkpgIoctlArg>::new(arg);
        rustix::ioctl::ioctl(disk, setter)?;
    }
    Ok(())
}

/// `EXT4_IOC_RESIZE_FS`: grows the mounted ext4 filesystem (any file of
/// it open as `fs`) to `blocks` blocks, online, as `resize2fs` does.
pub fn ext4_resize(fs: impl AsFd, blocks: u64) -> io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: EXT4_IOC_RESIZE_FS reads one `__u64` through the pointer
    // rustix passes to its own copy of `blocks`; nothing is written back.
    unsafe {
        let setter = rustix::ioctl::Setter::<EXT4_IOC_RESIZE_FS, u64>::new(blocks);
        rustix::ioctl::ioctl(fs, setter)?;
    }
    Ok(())
}

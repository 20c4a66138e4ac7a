//! The only module of init with `unsafe`: the loop-device ioctls, which
//! rustix has no typed wrapper for. Everything else goes through rustix's
//! safe API.
#![allow(unsafe_code)]

use rustix::fd::{AsRawFd, BorrowedFd};
use std::io;

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
pub const LO_FLAGS_READ_ONLY: u32 = 1;
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
pub struct LoopInfo64 {
    pub lo_device: u64,
    pub lo_inode: u64,
    pub lo_rdevice: u64,
    pub lo_offset: u64,
    pub lo_sizelimit: u64,
    pub lo_number: u32,
    pub lo_encrypt_type: u32,
    pub lo_encrypt_key_size: u32,
    pub lo_flags: u32,
    pub lo_file_name: [u8; 64],
    pub lo_crypt_name: [u8; 64],
    pub lo_encrypt_key: [u8; 32],
    pub lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
pub struct LoopConfig {
    pub fd: u32,
    pub block_size: u32,
    pub info: LoopInfo64,
    pub reserved: [u64; 8],
}

// The kernel ABI sizes; a mismatch would make the ioctl read garbage.
const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// `LOOP_CTL_GET_FREE`: the number of a free loop device (allocating one if needed).
pub fn loop_ctl_get_free(ctl: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and only returns an int;
    // `ctl` is a valid open descriptor for the duration of the call.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u32)
    }
}

/// `LOOP_CONFIGURE`: binds `backing` to the loop device `dev` with `flags`, in one call.
pub fn loop_configure(dev: BorrowedFd<'_>, backing: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    let cfg = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: `cfg` is a fully initialised `struct loop_config` (size checked
    // above) that outlives the call; the kernel only reads it.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &cfg as *const LoopConfig,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

const CDROM_DRIVE_STATUS: libc::c_ulong = 0x5326;
/// `CDSL_CURRENT`: the slot currently in the drive.
const CDSL_CURRENT: libc::c_int = libc::c_int::MAX;

/// What a CD/DVD drive says about its tray (`CDS_*` in `<linux/cdrom.h>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveStatus {
    NoDisc,
    TrayOpen,
    NotReady,
    /// A disc is in (or the drive cannot tell).
    Ready,
}

/// `CDROM_DRIVE_STATUS`; `None` when `dev` is not a CD/DVD drive.
pub fn cdrom_drive_status(dev: BorrowedFd<'_>) -> Option<DriveStatus> {
    // SAFETY: CDROM_DRIVE_STATUS takes the slot number by value and returns
    // an int; drivers that do not know it fail with ENOTTY/EINVAL; `dev` is a
    // valid open descriptor for the duration of the call.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), CDROM_DRIVE_STATUS as _, CDSL_CURRENT) };
    match r {
        1 => Some(DriveStatus::NoDisc),
        2 => Some(DriveStatus::TrayOpen),
        3 => Some(DriveStatus::NotReady),
        r if r >= 0 => Some(DriveStatus::Ready),
        _ => None,
    }
}

/// `SO_BINDTODEVICE`: `fd` sends and receives on interface `name` only
/// (DHCP before the interface has an address; rustix has no wrapper).
pub fn bind_to_device(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let bytes = name.as_bytes_with_nul();
    // SAFETY: `bytes` is a NUL-terminated interface name that outlives the
    // call, and its exact length is passed; the kernel only reads it; `fd`
    // is a valid open socket for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

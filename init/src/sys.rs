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

// Device-mapper (`<linux/dm-ioctl.h>`): enough to create one read-only
// device with one target, resume it, and remove it again.

/// `DM_VERSION_MAJOR`: the ioctl interface this code speaks.
const DM_VERSION_MAJOR: u32 = 4;
const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_MAX_TYPE_NAME: usize = 16;
const DM_READONLY_FLAG: u32 = 1 << 0;
/// The room for one target's parameter string (a verity table is ~250 bytes).
pub const DM_PARAMS_LEN: usize = 1024;

/// `struct dm_ioctl`.
#[repr(C)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; DM_NAME_LEN],
    uuid: [u8; DM_UUID_LEN],
    data: [u8; 7],
}

/// `struct dm_target_spec`, followed by its parameter string.
#[repr(C)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; DM_MAX_TYPE_NAME],
}

/// What `DM_TABLE_LOAD` reads: the header, one target, its parameters.
#[repr(C)]
struct DmTableLoad {
    io: DmIoctl,
    spec: DmTargetSpec,
    params: [u8; DM_PARAMS_LEN],
}

// The kernel ABI sizes (the same on x86_64, i686 and aarch64).
const _: () = assert!(std::mem::size_of::<DmIoctl>() == 312);
const _: () = assert!(std::mem::size_of::<DmTargetSpec>() == 40);
const _: () = assert!(std::mem::offset_of!(DmTableLoad, spec) == 312);
const _: () = assert!(std::mem::offset_of!(DmTableLoad, params) == 352);

/// `_IOWR(DM_IOCTL, nr, struct dm_ioctl)`.
const fn dm_cmd(nr: libc::c_ulong) -> libc::c_ulong {
    (3 << 30) | ((std::mem::size_of::<DmIoctl>() as libc::c_ulong) << 16) | (0xfd << 8) | nr
}
const DM_DEV_CREATE: libc::c_ulong = dm_cmd(3);
const DM_DEV_REMOVE: libc::c_ulong = dm_cmd(4);
const DM_DEV_SUSPEND: libc::c_ulong = dm_cmd(6);
const DM_TABLE_LOAD: libc::c_ulong = dm_cmd(9);

fn dm_header(name: &str, size: usize) -> io::Result<DmIoctl> {
    let mut n = [0u8; DM_NAME_LEN];
    if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    n[..name.len()].copy_from_slice(name.as_bytes());
    Ok(DmIoctl {
        version: [DM_VERSION_MAJOR, 0, 0],
        data_size: size as u32,
        data_start: std::mem::size_of::<DmIoctl>() as u32,
        target_count: 0,
        open_count: 0,
        flags: 0,
        event_nr: 0,
        padding: 0,
        dev: 0,
        name: n,
        uuid: [0; DM_UUID_LEN],
        data: [0; 7],
    })
}

/// A header-only device-mapper call on the device `name`; returns the
/// header as the kernel left it.
fn dm_simple(ctl: BorrowedFd<'_>, cmd: libc::c_ulong, name: &str) -> io::Result<DmIoctl> {
    let mut io = dm_header(name, std::mem::size_of::<DmIoctl>())?;
    // SAFETY: `io` is a fully initialised `struct dm_ioctl` (size checked
    // above) whose `data_size` is its own size, so the kernel reads and
    // writes only within it; `ctl` is open for the duration of the call.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), cmd as _, &mut io as *mut DmIoctl) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(io)
    }
}

/// Creates a device-mapper device with one read-only target of `sectors`
/// sectors and activates it; returns its minor number (`/dev/dm-N`).
pub fn dm_create(
    ctl: BorrowedFd<'_>,
    name: &str,
    sectors: u64,
    target: &str,
    params: &str,
) -> io::Result<u32> {
    if target.len() >= DM_MAX_TYPE_NAME || params.len() >= DM_PARAMS_LEN {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let created = dm_simple(ctl, DM_DEV_CREATE, name)?;
    let loaded = (|| {
        let mut t = DmTableLoad {
            io: dm_header(name, std::mem::size_of::<DmTableLoad>())?,
            spec: DmTargetSpec {
                sector_start: 0,
                length: sectors,
                status: 0,
                next: 0,
                target_type: [0; DM_MAX_TYPE_NAME],
            },
            params: [0; DM_PARAMS_LEN],
        };
        t.io.target_count = 1;
        t.io.flags = DM_READONLY_FLAG;
        t.spec.target_type[..target.len()].copy_from_slice(target.as_bytes());
        t.params[..params.len()].copy_from_slice(params.as_bytes());
        // SAFETY: `t` is a fully initialised header, target and
        // NUL-terminated parameter string (sizes and offsets checked
        // above); `data_size` is its size, so the kernel reads only within
        // it; `ctl` is open for the duration of the call.
        let r = unsafe {
            libc::ioctl(
                ctl.as_raw_fd(),
                DM_TABLE_LOAD as _,
                &mut t as *mut DmTableLoad,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the table goes live.
        dm_simple(ctl, DM_DEV_SUSPEND, name).map(|_| ())
    })();
    if let Err(e) = loaded {
        // not fatal: the error that matters is the one returned.
        let _ = dm_remove(ctl, name);
        return Err(e);
    }
    // `dev` is the kernel's huge_encode_dev(): the minor's low byte, then
    // the major, then the minor's other bits from bit 20.
    let dev = created.dev;
    Ok(((dev & 0xff) | ((dev >> 12) & !0xff)) as u32)
}

/// Removes the device-mapper device `name`.
pub fn dm_remove(ctl: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    dm_simple(ctl, DM_DEV_REMOVE, name).map(|_| ())
}

/// Puts the calling thread in `SCHED_IDLE`: it runs only when no other
/// thread wants the CPU.
pub fn sched_idle() -> io::Result<()> {
    // SAFETY: all-zero is a valid sched_param (priority 0, as SCHED_IDLE
    // requires); pid 0 is the calling thread.
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // The system call itself: musl's sched_setscheduler() only says ENOSYS.
    // SAFETY: `param` lives across the call, which only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            libc::SCHED_IDLE,
            &param as *const libc::sched_param,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_ioctl_numbers_as_the_kernel_headers() {
        // From <linux/dm-ioctl.h> on x86_64 (the encoding is the generic one).
        assert_eq!(DM_DEV_CREATE, 0xc138fd03);
        assert_eq!(DM_DEV_REMOVE, 0xc138fd04);
        assert_eq!(DM_DEV_SUSPEND, 0xc138fd06);
        assert_eq!(DM_TABLE_LOAD, 0xc138fd09);
    }

    #[test]
    fn bad_names_never_reach_the_kernel() {
        assert!(dm_header("", 312).is_err());
        assert!(dm_header(&"x".repeat(128), 312).is_err());
        assert!(dm_header("a\0b", 312).is_err());
        assert_eq!(
            dm_header("nixlive-image0", 312).unwrap().name[..7],
            *b"nixlive"
        );
    }
}

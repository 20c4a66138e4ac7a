//! The few syscalls the demo init makes: mount, sync, power off, uname.
//! Everything goes through rustix's safe wrappers; no `unsafe` here.

use std::fmt;
use std::io;

use rustix::mount::MountFlags;

/// A failed syscall, naming what it was done to; the kernel's answer is the
/// source (print it with `nixlive_formats::error::chain`).
#[derive(Debug)]
pub struct SysError {
    pub what: String,
    pub source: io::Error,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for SysError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `mount -t FSTYPE SOURCE TARGET -o nosuid,nodev[,noexec] ,DATA`.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    noexec: bool,
    data: &str,
) -> Result<(), SysError> {
    let mut flags = MountFlags::NOSUID;
    if fstype != "devtmpfs" {
        flags |= MountFlags::NODEV;
    }
    if noexec {
        flags |= MountFlags::NOEXEC;
    }
    let data = std::ffi::CString::new(data).map_err(|e| SysError {
        what: format!("mounting {target} ({fstype}): bad options"),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    rustix::mount::mount(source, target, fstype, flags, data.as_c_str()).map_err(|e| SysError {
        what: format!("mounting {target} ({fstype} from {source})"),
        source: e.into(),
    })
}

/// Flushes every filesystem. Cannot fail.
pub fn sync() {
    rustix::fs::sync();
}

/// `mount -o remount,ro /`: a persistent root (a disk, not a tmpfs) is
/// left clean for the next boot, as a service manager leaves it.
pub fn remount_root_read_only() -> Result<(), SysError> {
    rustix::mount::mount_remount("/", MountFlags::RDONLY, c"").map_err(|e| SysError {
        what: "remounting / read-only".into(),
        source: e.into(),
    })
}

/// Powers the machine off; returns only if the kernel refused.
pub fn power_off() -> SysError {
    match rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
        Ok(()) => SysError {
            what: "power off returned".into(),
            source: io::Error::other("reboot(POWER_OFF) returned without powering off"),
        },
        Err(e) => SysError {
            what: "powering off".into(),
            source: e.into(),
        },
    }
}

/// `uname -m`.
pub fn machine() -> String {
    rustix::system::uname()
        .machine()
        .to_string_lossy()
        .into_owned()
}

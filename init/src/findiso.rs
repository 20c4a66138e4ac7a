//! `findiso=PATH`: the live ISO is a file on some filesystem. Each candidate
//! device is mounted read-only and looked into; the one that holds the file
//! stays mounted (as `/findiso` of the new root) to back the loop device.

use crate::exec::mount_data;
use rustix::mount::{MountFlags, UnmountFlags, unmount};

/// Filesystems a findiso host may have; anything else is not tried.
const HOST_FS: [&str; 7] = ["vfat", "exfat", "ntfs3", "ext4", "ext3", "ext2", "iso9660"];

/// Whether a filesystem of type `fstype` is looked into for the file.
pub fn may_host(fstype: &str) -> bool {
    HOST_FS.contains(&fstype)
}

/// Mounts `node` at `at` and keeps it mounted if `file` is there (the
/// kernel must know `fstype` already: the caller requires its module).
pub fn holds(node: &str, fstype: &str, at: &str, file: &str) -> bool {
    if !may_host(fstype) {
        return false;
    }
    if let Err(e) = std::fs::create_dir_all(at) {
        log::warn!("creating {at}: {e}");
        return false;
    }
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
    if let Err(e) = mount_data(node, at, fstype, flags, "") {
        log::debug!("findiso: mounting {node} ({fstype}) at {at}: {e}, skipping");
        return false;
    }
    if std::path::Path::new(&format!("{at}{file}")).is_file() {
        return true;
    }
    log::debug!("findiso: {node} has no {file}");
    if let Err(e) = unmount(at, UnmountFlags::empty()) {
        log::warn!("unmounting {at} after looking for {file}: {e}");
    }
    false
}

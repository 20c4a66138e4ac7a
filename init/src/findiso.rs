//! `findiso=PATH`: the live ISO is a file on some filesystem. Each candidate
//! device is mounted read-only and looked into; the one that holds the file
//! stays mounted (as `/findiso` of the new root) to back the loop device.

use crate::exec::mount_data;
use nixlive_formats::Cmdline;
use nixlive_formats::nixkey::PublicKey;
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

/// Lets go of a host [`holds`] kept mounted at `at` (its ISO file was not
/// the one wanted).
pub fn release(at: &str) {
    if let Err(e) = unmount(at, UnmountFlags::empty()) {
        log::warn!("unmounting {at}: {e}");
    }
}

/// With trusted keys: is the ISO file `path` a medium whose manifest one
/// of them signed? It is bound to a loop device and looked into as any
/// candidate ([`crate::trust::candidate`]); the loop device frees itself
/// after (autoclear). `Ok` names the key, `Err` says why not.
pub fn signed(path: &str, cmdline: &Cmdline, keys: &[PublicKey]) -> Result<String, String> {
    use std::os::fd::AsFd;
    // The ISO file itself may be a link on the host (findiso= follows it).
    let iso = crate::exec::open_regular(path, true).map_err(|e| format!("opening it: {e}"))?;
    let (node, fd) = crate::exec::attach_loop(iso.as_fd())
        .map_err(|e| format!("binding it to a loop device: {e}"))?;
    let verdict = crate::trust::candidate(&node, "iso9660", cmdline, keys);
    // Unmounted again by now: the last close detaches the loop device.
    drop(fd);
    match verdict {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err("no trusted key".into()),
        Err(e) => Err(e),
    }
}

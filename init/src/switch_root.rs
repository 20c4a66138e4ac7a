//! Switching into the new root the way util-linux's switch_root does it,
//! once the plan has moved the API filesystems into it: free the initramfs
//! (without crossing into other filesystems), move the new root onto `/`,
//! chroot, exec stage 2.

use crate::error::BootError;
use rustix::mount::mount_move;
use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Switches into `new_root` (the API filesystems are in it already) and
/// executes `init` there; returns only on failure.
pub fn switch_root(new_root: &str, init: &str) -> Result<Infallible, BootError> {
    std::env::set_current_dir(new_root).map_err(BootError::sys("chdir", new_root))?;
    // not fatal: a leftover file in the initramfs only costs memory.
    match std::fs::symlink_metadata("/").map(|m| m.dev()) {
        Ok(dev) => remove_tree(Path::new("/"), dev, Path::new(new_root)),
        Err(e) => log::warn!("cannot stat the initramfs root ({e}); not freeing it, ignoring"),
    }
    mount_move(".", "/").map_err(|e| BootError::sys("mount --move . /, in", new_root)(e.into()))?;
    rustix::process::chroot(".").map_err(|e| BootError::sys("chroot", new_root)(e.into()))?;
    std::env::set_current_dir("/").map_err(BootError::sys("chdir", "/ in the new root"))?;
    log::info!("executing stage 2: {init}");
    let err = std::process::Command::new(init).env_clear().exec();
    Err(BootError::Sys {
        call: "execve",
        path: init.to_string(),
        source: err,
    })
}

/// Deletes the contents of `dir` that live on device `dev`, keeping `keep`
/// and anything mounted from another filesystem.
fn remove_tree(dir: &Path, dev: u64, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p == keep {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.dev() != dev {
            continue;
        }
        if md.is_dir() {
            remove_tree(&p, dev, keep);
            // not fatal: a directory that held a mount point stays.
            let _ = std::fs::remove_dir(&p);
        } else if let Err(e) = std::fs::remove_file(&p) {
            log::debug!("removing {}: {e}, ignoring", p.display());
        }
    }
}

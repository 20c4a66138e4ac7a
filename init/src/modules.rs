//! Loading the kernel modules the builder recorded in the initrd config, in
//! the order it wrote them (dependencies first).

use nixlive_formats::InitrdConf;
use rustix::fs::{Mode, OFlags};
use std::path::Path;

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses `.ko.xz`/`.ko.zst` itself.
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;

/// Loads each module; a module that fails is a warning (not fatal: the
/// driver may be built in, or not needed for this machine's medium).
/// Returns how many were loaded.
pub fn load_all(root: &Path, conf: &InitrdConf) -> usize {
    let running = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    if running != conf.kernel {
        log::warn!(
            "the initrd's modules are for kernel {} but {running} is running; loading them anyway",
            conf.kernel
        );
    }
    let dir = root.join("lib/modules").join(&conf.kernel);
    let mut loaded = 0;
    for m in &conf.modules {
        let path = dir.join(m);
        match load(&path) {
            Ok(true) => loaded += 1,
            Ok(false) => log::debug!("{} already loaded", path.display()),
            Err(e) => log::warn!("loading module {}: {e}, ignoring", path.display()),
        }
    }
    loaded
}

/// Returns false when the module was already loaded.
fn load(path: &Path) -> std::io::Result<bool> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let name = path.to_string_lossy();
    let flags = if name.ends_with(".ko.xz") || name.ends_with(".ko.zst") || name.ends_with(".ko.gz")
    {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    match rustix::system::finit_module(&fd, c"", flags) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

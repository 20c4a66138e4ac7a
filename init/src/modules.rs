//! Kernel modules: the list the builder recorded (in load order), the ones
//! named by `nixlive.modules=`, and coldplug: every device's `modalias`
//! matched against `modules.alias` (what udev would do), for the devices
//! present now and for those announced later by uevents.

use nixlive_formats::InitrdConf;
use nixlive_formats::kmod::{self, Aliases, ModDep};
use rustix::fs::{Mode, OFlags};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses `.ko.xz`/`.ko.zst` itself.
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;

pub struct Loader {
    dir: PathBuf,
    dep: ModDep,
    aliases: Aliases,
    /// Module files already tried (loaded, already present, or failed).
    tried: HashSet<String>,
    seen_aliases: HashSet<String>,
    pub loaded: usize,
}

impl Loader {
    pub fn new(root: &Path, conf: &InitrdConf) -> Loader {
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
        // not fatal: without modules.dep only the recorded list is loaded.
        let dep = match std::fs::read_to_string(dir.join("modules.dep")) {
            Ok(t) => ModDep::parse(&t).unwrap_or_else(|e| {
                log::warn!(
                    "{}/modules.dep: {e}; no dependency resolution",
                    dir.display()
                );
                ModDep::default()
            }),
            Err(_) => ModDep::default(),
        };
        let aliases = std::fs::read_to_string(dir.join("modules.alias"))
            .map(|t| Aliases::parse(&t))
            .unwrap_or_default();
        Loader {
            dir,
            dep,
            aliases,
            tried: HashSet::new(),
            seen_aliases: HashSet::new(),
            loaded: 0,
        }
    }

    /// Loads module files (relative to the modules dir) in the given order.
    pub fn load_files(&mut self, files: &[String]) {
        for f in files {
            if !self.tried.insert(f.clone()) {
                continue;
            }
            let path = self.dir.join(f);
            let started = std::time::Instant::now();
            match load(&path) {
                Ok(true) => {
                    self.loaded += 1;
                    log::debug!("loaded {} in {:?}", path.display(), started.elapsed());
                }
                Ok(false) => log::debug!("{} already loaded", path.display()),
                Err(e) => log::warn!("loading module {}: {e}, ignoring", path.display()),
            }
        }
    }

    /// Loads modules by name with their dependencies. Names the initrd does
    /// not have are reported when `explicit`, else skipped quietly (coldplug
    /// finds many devices this initrd was not built for).
    pub fn load_names(&mut self, names: &[String], explicit: bool) {
        for n in names {
            let present = self
                .dep
                .path_of(n)
                .is_some_and(|p| self.dir.join(p).exists());
            if !present {
                if explicit {
                    log::warn!("module {n} is not in this initrd (or is built in), ignoring");
                }
                continue;
            }
            match kmod::closure(&self.dep, &HashSet::new(), std::slice::from_ref(n)) {
                Ok(c) => self.load_files(&c.files),
                Err(e) => log::warn!("module {n}: {e}, ignoring"),
            }
        }
    }

    /// Loads the modules matching one device's modalias.
    pub fn modalias(&mut self, alias: &str) {
        if !self.seen_aliases.insert(alias.to_string()) {
            return;
        }
        let names = self.aliases.lookup(alias);
        if !names.is_empty() {
            log::debug!("{alias} -> {}", names.join(" "));
            self.load_names(&names, false);
        }
    }

    /// Coldplug: every `modalias` under `<sys>/devices`.
    pub fn coldplug(&mut self, sys: &Path) {
        let mut found = Vec::new();
        collect_modaliases(&sys.join("devices"), &mut found, 0);
        for a in found {
            self.modalias(&a);
        }
    }
}

fn collect_modaliases(dir: &Path, out: &mut Vec<String>, depth: usize) {
    // sysfs is a tree under /sys/devices when symlinks are not followed;
    // the depth bound is a guard against surprises.
    if depth > 24 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            collect_modaliases(&e.path(), out, depth + 1);
        } else if ft.is_file()
            && e.file_name() == "modalias"
            && let Ok(a) = std::fs::read_to_string(e.path())
            && !a.trim().is_empty()
        {
            out.push(a.trim().to_string());
        }
    }
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
    // `async_probe`: the module's devices are probed in the background
    // instead of finit_module waiting for them (an ATA controller's port
    // resets take a second). Init waits for the medium by uevents anyway.
    match rustix::system::finit_module(&fd, c"async_probe", flags) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modaliases_from_a_sysfs_fixture() {
        let dir = std::env::temp_dir().join(format!("nixlive-modalias-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.join("devices/pci0000:00/0000:00:04.0");
        std::fs::create_dir_all(d.join("virtio1")).unwrap();
        std::fs::write(d.join("modalias"), "pci:v00001AF4d00001001\n").unwrap();
        std::fs::write(d.join("virtio1/modalias"), "virtio:d00000002v00001AF4\n").unwrap();
        std::fs::write(d.join("vendor"), "0x1af4\n").unwrap();
        let mut out = Vec::new();
        collect_modaliases(&dir.join("devices"), &mut out, 0);
        out.sort();
        assert_eq!(
            out,
            vec!["pci:v00001AF4d00001001", "virtio:d00000002v00001AF4"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

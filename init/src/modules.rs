//! Kernel modules: the list the builder recorded (in load order), the ones
//! named by `nixlive.modules=`, and coldplug: every device's `modalias`
//! matched against `modules.alias` (what udev would do), for the devices
//! present now and for those announced later by uevents.
//!
//! A compressed module (`.ko.xz`, `.ko.zst`, `.ko.gz`, from an initrd or
//! extra cpio that was not made by this builder) goes to the kernel as it is
//! when `/sys/module/compression` says the kernel decompresses that format,
//! and is decompressed here otherwise. A module that fails to load is
//! remembered: when the boot then needs what it provides (a filesystem, loop
//! devices), that is a failure which names the module and why it failed.

use crate::discover::Hotplug;
use crate::error::{BootError, ModuleFailure};
use nixlive_formats::InitrdConf;
use nixlive_formats::kmod::{self, Aliases, ModDep};
use nixlive_formats::unpack::{self, Codec};
use rustix::fs::{Mode, OFlags};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses `.ko.xz`/`.ko.zst` itself.
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;
/// No kernel module comes near this; a larger one is a broken file.
const MODULE_LIMIT: usize = 256 << 20;

/// How one module file reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `finit_module` of the file as it is.
    Plain,
    /// `finit_module` with `MODULE_INIT_COMPRESSED_FILE`.
    Kernel(Codec),
    /// Decompressed here, then `init_module`.
    Own(Codec),
}

/// Decides how to load `file`, given what `/sys/module/compression` says
/// (`None`: the file is absent, the kernel decompresses nothing).
pub fn method(file: &str, kernel_decompresses: Option<&str>) -> Method {
    match Codec::of_name(file) {
        None => Method::Plain,
        Some(c) if kernel_decompresses.map(str::trim) == Some(c.kernel_name()) => Method::Kernel(c),
        Some(c) => Method::Own(c),
    }
}

/// When a module of the builder's list is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// At once: nothing else would ask for it (a code page, a module named
    /// for its own sake), or a module loaded at once needs it.
    Now,
    /// When a device it drives shows up: coldplug for the devices there,
    /// uevents for those that come later.
    Device,
    /// When the boot needs it: a filesystem before its first mount, loop
    /// devices, device-mapper and its verity target before the images.
    Needed,
}

/// When module `name` loads, from the patterns `modules.alias` gives it:
/// a filesystem (`fs-*`), loop or device-mapper control, or the verity
/// target is [`When::Needed`]; one that matches a device (`pci:`, `usb:`,
/// `scsi:`, `virtio:`, `acpi*:`, ...) is [`When::Device`]; the rest (code
/// pages, libraries, modules without aliases) [`When::Now`].
pub fn when(name: &str, patterns: &[&str]) -> When {
    let needed = kmod::module_name(name) == "dm_verity"
        || patterns.iter().any(|p| {
            p.starts_with("fs-") || *p == "devname:loop-control" || *p == "devname:mapper/control"
        });
    if needed {
        When::Needed
    } else if patterns.iter().any(|p| matches_devices(p)) {
        When::Device
    } else {
        When::Now
    }
}

/// Whether an alias pattern is a device's modalias (`BUS:...`), not a
/// name the kernel asks for (`devname:`, `symbol:`, `char-major-...`).
fn matches_devices(pattern: &str) -> bool {
    match pattern.split_once(':') {
        Some((bus, _)) => !bus.is_empty() && bus != "devname" && bus != "symbol",
        None => false,
    }
}

/// The files of the builder's list (in its load order) to load at once:
/// each one no other listed module depends on and [`when`] puts at
/// [`When::Now`], with the files it needs (`closure_of(file)`: its
/// dependencies and itself). A dependency (a library such as `scsi_mod`
/// or `cdrom`) loads with the first module that needs it; the others
/// wait for their device or for the boot to need them.
pub fn upfront(
    files: &[String],
    when_of: impl Fn(&str) -> When,
    closure_of: impl Fn(&str) -> Vec<String>,
) -> Vec<String> {
    let closures: Vec<Vec<String>> = files.iter().map(|f| closure_of(f)).collect();
    let needed_by_another = |f: &String| {
        files
            .iter()
            .zip(&closures)
            .any(|(g, c)| g != f && c.contains(f))
    };
    let mut keep: HashSet<&String> = HashSet::new();
    for (f, c) in files.iter().zip(&closures) {
        if when_of(f) == When::Now && !needed_by_another(f) {
            keep.insert(f);
            keep.extend(c);
        }
    }
    files.iter().filter(|f| keep.contains(f)).cloned().collect()
}

/// Buses whose devices exist only behind a host controller's driver: a
/// disk on them is announced some time after that driver loads.
const BEHIND_A_CONTROLLER: [&str; 4] = ["scsi", "usb", "mmc", "sdio"];

/// The drivers of the builder's list (files) that come next behind a
/// controller: each [`When::Device`] module not loaded yet whose device
/// patterns are all on buses behind a controller ([`BEHIND_A_CONTROLLER`])
/// that `bus_present` says are there now (`/sys/bus/NAME`: `sr_mod` and
/// `sd_mod` once an ATA or SCSI controller's driver brought `scsi_mod`,
/// `usb_storage` once a USB controller's brought `usbcore`). Loaded at
/// once, they are there when the disk behind the controller is
/// announced, instead of after it. A controller's own driver (`pci:`) is
/// never one: coldplug sees its device or it is not there.
pub fn followers(
    files: &[String],
    patterns_of: impl Fn(&str) -> Vec<String>,
    bus_present: impl Fn(&str) -> bool,
    loaded: &HashSet<String>,
) -> Vec<String> {
    files
        .iter()
        .filter(|f| !loaded.contains(*f))
        .filter(|f| {
            let patterns = patterns_of(f);
            let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
            if when(f, &refs) != When::Device {
                return false;
            }
            refs.iter()
                .filter(|p| matches_devices(p))
                .filter_map(|p| p.split_once(':').map(|(bus, _)| bus))
                .all(|bus| BEHIND_A_CONTROLLER.contains(&bus) && bus_present(bus))
        })
        .cloned()
        .collect()
}

/// Of the builder's list (files), what a live boot surely asks for and
/// may load while the search for the medium waits on devices, in the
/// order the boot needs it: loop devices, squashfs (the images' usual
/// filesystem), dm-verity (the builder lists it when the images carry
/// hash trees) and overlayfs. The medium's own filesystem waits for its
/// probe to say which it is.
pub fn background(files: &[String]) -> Vec<String> {
    const SURE: [&str; 4] = ["loop", "squashfs", "dm_verity", "overlay"];
    SURE.iter()
        .filter(|n| files.iter().any(|f| kmod::module_name(f) == **n))
        .map(|n| n.to_string())
        .collect()
}

/// A module that did not load: its file and the error.
#[derive(Debug, Clone)]
pub struct Failed {
    pub path: String,
    pub error: String,
}

/// Modules loading on a thread: their files, when it began, and the
/// thread, which returns each file's outcome and when it ended.
struct Background {
    files: Vec<String>,
    started: Duration,
    handle: std::thread::JoinHandle<(Vec<Result<bool, Failed>>, Duration)>,
}

pub struct Loader {
    dir: PathBuf,
    dep: ModDep,
    aliases: Aliases,
    /// Module files already tried (loaded, already present, or failed).
    tried: HashSet<String>,
    seen_aliases: HashSet<String>,
    /// Modules that failed to load, by module name.
    failed: BTreeMap<String, Failed>,
    /// `/sys/module/compression`, read once.
    kernel_decompresses: Option<String>,
    /// The kernel the initrd's modules were built for, and the running one.
    built_for: String,
    running: String,
    pub loaded: usize,
    background: Option<Background>,
    /// When the background thread ran (uptime), once it was waited for.
    pub background_span: Option<(Duration, Duration)>,
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
        let kernel_decompresses = std::fs::read_to_string("/sys/module/compression").ok();
        Loader {
            dir,
            dep,
            aliases,
            tried: HashSet::new(),
            seen_aliases: HashSet::new(),
            failed: BTreeMap::new(),
            kernel_decompresses,
            built_for: conf.kernel.clone(),
            running,
            loaded: 0,
            background: None,
            background_span: None,
        }
    }

    /// [`upfront`] of the builder's list with this initrd's `modules.dep`
    /// and `modules.alias`; logs what waits and for what.
    pub fn upfront(&self, files: &[String]) -> Vec<String> {
        let when_of = |f: &str| when(f, &self.aliases.of_module(&kmod::module_name(f)));
        let closure_of = |f: &str| {
            kmod::closure(&self.dep, &HashSet::new(), &[kmod::module_name(f)])
                .map(|c| c.files)
                .unwrap_or_default()
        };
        let now = upfront(files, when_of, closure_of);
        let later = |w: When| -> Vec<String> {
            files
                .iter()
                .filter(|f| !now.contains(f) && when_of(f) == w)
                .map(|f| kmod::module_name(f))
                .collect()
        };
        let (device, needed) = (later(When::Device), later(When::Needed));
        log::info!(
            "modules: {} of the {} listed load now; when their device shows up: {}; when the boot needs them: {}",
            now.len(),
            files.len(),
            none_if_empty(&device),
            none_if_empty(&needed)
        );
        now
    }

    /// Loads module files (relative to the modules dir) in the given order.
    /// A file the background thread took waits for that thread first.
    pub fn load_files(&mut self, files: &[String]) {
        if self
            .background
            .as_ref()
            .is_some_and(|b| files.iter().any(|f| b.files.contains(f)))
        {
            self.finish_background();
        }
        for f in files {
            if !self.tried.insert(f.clone()) {
                continue;
            }
            self.note(
                f,
                load_one(&self.dir, f, self.kernel_decompresses.as_deref()),
            );
        }
    }

    fn note(&mut self, f: &str, outcome: Result<bool, Failed>) {
        match outcome {
            Ok(true) => self.loaded += 1,
            Ok(false) => {}
            Err(failed) => {
                self.failed.insert(kmod::module_name(f), failed);
            }
        }
    }

    /// Loads `files` (with their dependencies, in order) on a thread: what
    /// the boot will surely need, while the search for the medium waits on
    /// devices. Whatever asks for one of them later waits for the thread.
    pub fn start_background(&mut self, names: &[String]) {
        let mut files: Vec<String> = Vec::new();
        for n in names {
            if let Ok(c) = kmod::closure(&self.dep, &HashSet::new(), std::slice::from_ref(n)) {
                for f in c.files {
                    if !self.tried.contains(&f) && !files.contains(&f) {
                        files.push(f);
                    }
                }
            }
        }
        if files.is_empty() || self.background.is_some() {
            return;
        }
        let names: Vec<String> = files.iter().map(|f| kmod::module_name(f)).collect();
        log::info!(
            "loading {} in the background while the devices are probed",
            names.join(" ")
        );
        self.tried.extend(files.iter().cloned());
        let (dir, kd, list) = (
            self.dir.clone(),
            self.kernel_decompresses.clone(),
            files.clone(),
        );
        let started = crate::kmsg::uptime();
        let spawned = std::thread::Builder::new()
            .name("modules".into())
            .spawn(move || {
                idle_priority();
                let out: Vec<Result<bool, Failed>> = list
                    .iter()
                    .map(|f| load_one(&dir, f, kd.as_deref()))
                    .collect();
                (out, crate::kmsg::uptime())
            });
        match spawned {
            Ok(handle) => {
                self.background = Some(Background {
                    files,
                    started,
                    handle,
                })
            }
            Err(e) => {
                log::warn!("cannot start a thread ({e}); loading them when needed");
                for f in &files {
                    self.tried.remove(f);
                }
            }
        }
    }

    /// Waits for the background thread, if any, and takes in what it did.
    pub fn finish_background(&mut self) {
        let Some(b) = self.background.take() else {
            return;
        };
        match b.handle.join() {
            Ok((outcomes, ended)) => {
                for (f, o) in b.files.iter().zip(outcomes) {
                    self.note(f, o);
                }
                log::info!(
                    "background modules: {} loaded, {} ms from {} ms of uptime",
                    b.files.len(),
                    ended.saturating_sub(b.started).as_millis(),
                    b.started.as_millis()
                );
                self.background_span = Some((b.started, ended));
            }
            Err(_) => {
                // A panic there is a bug; what it did not load is tried again.
                log::warn!("the background module thread failed; loading its modules here");
                for f in &b.files {
                    self.tried.remove(f);
                }
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
                .is_some_and(|p| present_variant(&self.dir.join(p)).exists());
            if !present {
                // Not in the builder's modules.dep (which lists what it
                // packed): an extra cpio may have brought the file.
                match find_module(&self.dir, n) {
                    Some(rel) => {
                        log::info!(
                            "module {n} is {rel}, which modules.dep does not list; loading it alone"
                        );
                        self.load_files(&[rel]);
                    }
                    None if explicit => {
                        log::warn!("module {n} is not in this initrd (or is built in), ignoring")
                    }
                    None => {}
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

    /// Loads [`followers`] of the builder's list (after coldplug).
    pub fn load_followers(&mut self, files: &[String], sys: &Path) {
        let loaded: HashSet<String> = self
            .tried
            .iter()
            .filter(|f| !self.failed.contains_key(&kmod::module_name(f)))
            .cloned()
            .collect();
        let next = followers(
            files,
            |f| {
                self.aliases
                    .of_module(&kmod::module_name(f))
                    .into_iter()
                    .map(String::from)
                    .collect()
            },
            |bus| sys.join("bus").join(bus).is_dir(),
            &loaded,
        );
        if !next.is_empty() {
            let names: Vec<String> = next.iter().map(|f| kmod::module_name(f)).collect();
            log::info!(
                "{}: their controller's bus is there, so their disks may come next",
                names.join(" ")
            );
            self.load_names(&names, false);
        }
    }

    /// Coldplug: the `modalias` of every device already there.
    pub fn coldplug(&mut self, sys: &Path) {
        for a in collect_modaliases(sys) {
            self.modalias(&a);
        }
    }
}

fn none_if_empty(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" ")
    }
}

/// What the search for the medium asks of the module loader (a trait, so
/// that tests can walk the search's failure paths without a kernel).
pub trait Modules {
    /// A device announced itself, or every device is to be looked at
    /// again; returns whether a module was loaded for it (its driver may
    /// still be bringing up devices).
    fn hotplug(&mut self, h: Hotplug<'_>) -> bool;
    /// Makes sure the kernel can mount `fstype`, as [`Loader::require_fs`].
    fn require_fs(&mut self, fstype: &str, needed_for: &str) -> Result<(), BootError>;
    /// Makes sure the kernel has loop devices, as [`Loader::require_loop`].
    fn require_loop(&mut self, needed_for: &str) -> Result<(), BootError>;
}

impl Modules for Loader {
    fn hotplug(&mut self, h: Hotplug<'_>) -> bool {
        let before = self.loaded;
        match h {
            Hotplug::Modalias(a) => self.modalias(a),
            Hotplug::Rescan => self.coldplug(Path::new("/sys")),
        }
        self.loaded != before
    }

    fn require_fs(&mut self, fstype: &str, needed_for: &str) -> Result<(), BootError> {
        Loader::require_fs(self, fstype, needed_for)
    }

    fn require_loop(&mut self, needed_for: &str) -> Result<(), BootError> {
        Loader::require_loop(self, needed_for)
    }
}

/// The `modalias` of every device on a bus (`<sys>/bus/*/devices/*`) and
/// of every input device (a class, not a bus). Walking all of
/// `/sys/devices` finds the same ones, but reads thousands of directories
/// (`virtual` alone has hundreds), which took about 300 ms under TCG; this
/// reads one directory per bus and one file per device.
fn collect_modaliases(sys: &Path) -> Vec<String> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let entries = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    for bus in entries(&sys.join("bus")) {
        dirs.extend(entries(&bus.join("devices")));
    }
    dirs.extend(entries(&sys.join("class/input")));
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join("modalias")).ok())
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// The file of module `name` (`-` and `_` alike, compressed or not)
/// anywhere under `dir`, relative to it.
fn find_module(dir: &Path, name: &str) -> Option<String> {
    fn walk(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            let ft = e.file_type().ok()?;
            if ft.is_dir() && depth < 8 {
                if let Some(found) = walk(&p, name, depth + 1) {
                    return Some(found);
                }
            } else if ft.is_file() {
                let file = e.file_name().to_string_lossy().into_owned();
                if kmod::module_name(&file) == name && unpack::plain_name(&file).ends_with(".ko") {
                    return Some(p);
                }
            }
        }
        None
    }
    let found = walk(dir, &kmod::module_name(name), 0)?;
    Some(found.strip_prefix(dir).ok()?.to_string_lossy().into_owned())
}

/// `path`, or the compressed file of the same module that exists instead
/// (modules.dep names `.ko`, an extra cpio may bring `.ko.xz`).
fn present_variant(path: &Path) -> PathBuf {
    if path.exists() {
        return path.to_path_buf();
    }
    let plain = unpack::plain_name(&path.to_string_lossy()).to_string();
    std::iter::once(plain.clone())
        .chain(Codec::ALL.iter().map(|c| format!("{plain}{}", c.suffix())))
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// The calling thread runs only when nothing else wants the CPU
/// (`SCHED_IDLE`): loading ahead must not slow the probing of the
/// medium, which is on the boot's path, on a machine with one CPU.
fn idle_priority() {
    if let Err(e) = crate::sys::sched_idle() {
        log::debug!("background modules: SCHED_IDLE refused ({e}); at normal priority");
    }
}

/// Loads one module file (relative to `dir`), logging the outcome;
/// `Ok(false)` when it was loaded already.
fn load_one(dir: &Path, f: &str, kernel_decompresses: Option<&str>) -> Result<bool, Failed> {
    let path = present_variant(&dir.join(f));
    let how = method(&path.to_string_lossy(), kernel_decompresses);
    let started = std::time::Instant::now();
    match load(&path, how) {
        Ok(true) => {
            let d = started.elapsed();
            match how {
                Method::Plain => log::debug!("loaded {} in {d:?}", path.display()),
                // Rare with this builder's initrds (they hold .ko files): say it.
                Method::Kernel(c) => log::info!(
                    "loaded {} in {d:?}, decompressed by the kernel ({})",
                    path.display(),
                    c.kernel_name()
                ),
                Method::Own(c) => log::info!(
                    "loaded {} in {d:?}, decompressed by init ({}; the kernel cannot)",
                    path.display(),
                    c.kernel_name()
                ),
            }
            Ok(true)
        }
        Ok(false) => {
            log::debug!("{} already loaded", path.display());
            Ok(false)
        }
        Err(e) => {
            log::warn!(
                "module {} did not load: {e} (the boot fails if it needs this module)",
                path.display()
            );
            Err(Failed {
                path: path.display().to_string(),
                error: e.to_string(),
            })
        }
    }
}

/// Returns false when the module was already loaded.
fn load(path: &Path, how: Method) -> std::io::Result<bool> {
    // `async_probe`: the module's devices are probed in the background
    // instead of the load waiting for them (an ATA controller's port
    // resets take a second). Init waits for the medium by uevents anyway.
    let params = c"async_probe";
    let r = match how {
        Method::Plain | Method::Kernel(_) => {
            let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
            let flags = match how {
                Method::Kernel(_) => MODULE_INIT_COMPRESSED_FILE,
                _ => 0,
            };
            rustix::system::finit_module(&fd, params, flags)
        }
        Method::Own(codec) => {
            let packed = std::fs::read(path)?;
            let image = unpack::unpack(codec, &packed, MODULE_LIMIT)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            rustix::system::init_module(&image, params)
        }
    };
    match r {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl Loader {
    /// Makes sure the kernel can mount `fstype` (`needed_for` says why the
    /// boot needs it): loads the module that provides it if the kernel does
    /// not know it yet; a module that failed to load is named, with why.
    pub fn require_fs(&mut self, fstype: &str, needed_for: &str) -> Result<(), BootError> {
        let known = || {
            std::fs::read_to_string("/proc/filesystems")
                .map(|t| filesystems_has(&t, fstype))
                .unwrap_or(true)
        };
        let alias = format!("fs-{fstype}");
        self.require(known, &alias, &format!("{fstype} filesystems"), needed_for)
    }

    /// Makes sure loop devices exist (the images are mounted through them).
    pub fn require_loop(&mut self, needed_for: &str) -> Result<(), BootError> {
        let known = || Path::new("/dev/loop-control").exists();
        self.require(known, "devname:loop-control", "loop devices", needed_for)
    }

    /// Device-mapper and its verity target, for images with a hash tree.
    pub fn require_verity(&mut self, needed_for: &str) -> Result<(), BootError> {
        let control = || Path::new("/dev/mapper/control").exists();
        self.require(
            control,
            "devname:mapper/control",
            "device-mapper",
            needed_for,
        )?;
        // A target known to the kernel shows in /sys/module (its parameters
        // are there even when it is built in).
        let verity = || Path::new("/sys/module/dm_verity").exists();
        self.require(verity, "dm-verity", "the dm-verity target", needed_for)
    }

    fn require(
        &mut self,
        known: impl Fn() -> bool,
        alias: &str,
        what: &str,
        needed_for: &str,
    ) -> Result<(), BootError> {
        let mut names = self.aliases.lookup(alias);
        if names.is_empty() {
            // modules.alias lists filesystems as `fs-NAME`; a kernel without
            // it still names most modules after their filesystem.
            names.push(kmod::module_name(alias.trim_start_matches("fs-")));
        }
        // A module the background thread is loading may show in /sys or
        // /dev before its init has finished: wait for the thread first.
        if let Some(b) = &self.background {
            let files = kmod::closure(&self.dep, &HashSet::new(), &names)
                .map(|c| c.files)
                .unwrap_or_default();
            if files.iter().any(|f| b.files.contains(f)) {
                self.finish_background();
            }
        }
        if known() {
            return Ok(());
        }
        self.load_names(&names, false);
        if known() {
            return Ok(());
        }
        let failed = names
            .iter()
            .find_map(|n| self.failed.get(n).map(|f| (n.clone(), f.clone())));
        Err(match failed {
            Some((module, f)) => BootError::ModuleFailed(Box::new(ModuleFailure {
                what: what.to_string(),
                needed_for: needed_for.to_string(),
                module,
                path: f.path,
                error: f.error,
                hint: mismatch_hint(&self.built_for, &self.running),
            })),
            None => BootError::NoModule {
                what: what.to_string(),
                needed_for: needed_for.to_string(),
                modules: names.join(" "),
            },
        })
    }
}

/// What to say when the initrd's modules were made for another kernel.
fn mismatch_hint(built_for: &str, running: &str) -> String {
    if built_for == running {
        String::new()
    } else {
        format!(
            "; the initrd's modules are for kernel {built_for} but {running} is running: \
             build the initrd with the --modules-dir of the kernel you boot"
        )
    }
}

/// Whether `/proc/filesystems` lists `fstype` (lines `nodev\tNAME` or `\tNAME`).
fn filesystems_has(text: &str, fstype: &str) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().last() == Some(fstype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modaliases_from_a_sysfs_fixture() {
        let dir = std::env::temp_dir().join(format!("nixlive-modalias-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // As sysfs has it: devices under /sys/devices, linked from their bus.
        let d = dir.join("devices/pci0000:00/0000:00:04.0");
        std::fs::create_dir_all(d.join("virtio1")).unwrap();
        std::fs::write(d.join("modalias"), "pci:v00001AF4d00001001\n").unwrap();
        std::fs::write(d.join("virtio1/modalias"), "virtio:d00000002v00001AF4\n").unwrap();
        std::fs::write(d.join("vendor"), "0x1af4\n").unwrap();
        let input = dir.join("devices/platform/i8042/serio0/input/input0");
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("modalias"), "input:b0011v0001p0001\n").unwrap();
        // A virtual device (no bus): not looked at; a bus device without a
        // modalias, and an empty one: skipped.
        let virt = dir.join("devices/virtual/misc/loop-control");
        std::fs::create_dir_all(&virt).unwrap();
        std::fs::write(virt.join("modalias"), "never:read\n").unwrap();
        let bare = dir.join("devices/system/memory/memory0");
        std::fs::create_dir_all(&bare).unwrap();
        let empty = dir.join("devices/platform/empty");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::write(empty.join("modalias"), "\n").unwrap();
        let link = |bus: &str, name: &str, target: &Path| {
            let at = dir.join(bus).join(name);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, at).unwrap();
        };
        link("bus/pci/devices", "0000:00:04.0", &d);
        link("bus/virtio/devices", "virtio1", &d.join("virtio1"));
        link("bus/memory/devices", "memory0", &bare);
        link("bus/platform/devices", "empty", &empty);
        link("class/input", "input0", &input);
        let out = collect_modaliases(&dir);
        assert_eq!(
            out,
            vec![
                "pci:v00001AF4d00001001",
                "virtio:d00000002v00001AF4",
                "input:b0011v0001p0001"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn when_modules_load() {
        assert_eq!(
            when("kernel/fs/isofs/isofs.ko", &["iso9660", "fs-iso9660"]),
            When::Needed
        );
        assert_eq!(
            when(
                "loop",
                &[
                    "devname:loop-control",
                    "char-major-10-237",
                    "block-major-7-*"
                ]
            ),
            When::Needed
        );
        assert_eq!(when("dm_mod", &["devname:mapper/control"]), When::Needed);
        // dm-verity has no alias: the boot asks for it by name.
        assert_eq!(when("kernel/drivers/md/dm-verity.ko", &[]), When::Needed);
        assert_eq!(
            when("ata_piix", &["pci:v00008086d00007010sv*sd*bc*sc*i*"]),
            When::Device
        );
        assert_eq!(
            when("sr_mod", &["scsi:t-0x05*", "block-major-11-*"]),
            When::Device
        );
        assert_eq!(when("sdhci_acpi", &["acpi*:80860F14:*"]), When::Device);
        assert_eq!(when("virtio_blk", &["virtio:d00000002v*"]), When::Device);
        // Code pages, libraries, names the kernel asks for: at once.
        assert_eq!(when("nls_cp437", &["nls_cp437"]), When::Now);
        assert_eq!(when("scsi_mod", &[]), When::Now);
        assert_eq!(
            when("tun", &["devname:net/tun", "char-major-10-200"]),
            When::Now
        );
        assert_eq!(
            when("crc32c_generic", &["crypto-crc32c", "crc32c"]),
            When::Now
        );
    }

    /// The bench's list (Debian 6.1, a CD, dm-verity): nothing loads before
    /// coldplug; with the fs set's code pages, those (and only those) do.
    #[test]
    fn only_what_nothing_asks_for_loads_at_once() {
        let dep = ModDep::parse(
            "kernel/fs/squashfs/squashfs.ko:\n\
             kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko\n\
             kernel/fs/overlayfs/overlay.ko:\n\
             kernel/lib/reed_solomon/reed_solomon.ko:\n\
             kernel/drivers/block/loop.ko:\n\
             kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko\n\
             kernel/drivers/scsi/scsi_common.ko:\n\
             kernel/drivers/scsi/sr_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko kernel/drivers/cdrom/cdrom.ko\n\
             kernel/drivers/cdrom/cdrom.ko:\n\
             kernel/drivers/md/dm-mod.ko:\n\
             kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko\n\
             kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko kernel/lib/reed_solomon/reed_solomon.ko\n\
             kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\n\
             kernel/drivers/ata/ata_piix.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\n\
             kernel/fs/nls/nls_cp437.ko:\n\
             kernel/fs/fat/fat.ko:\n\
             kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n",
        )
        .unwrap();
        let aliases = Aliases::parse(
            "alias fs-squashfs squashfs\nalias fs-iso9660 isofs\nalias fs-overlay overlay\n\
             alias devname:loop-control loop\nalias scsi:t-0x05* sr_mod\n\
             alias devname:mapper/control dm_mod\n\
             alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix\n\
             alias nls_cp437 nls_cp437\nalias fs-vfat vfat\n",
        );
        let when_of = |f: &str| when(f, &aliases.of_module(&kmod::module_name(f)));
        let closure_of = |f: &str| {
            kmod::closure(&dep, &HashSet::new(), &[kmod::module_name(f)])
                .unwrap()
                .files
        };
        let files: Vec<String> = [
            "scsi/scsi_common.ko",
            "scsi/scsi_mod.ko",
            "ata/libata.ko",
            "ata/ata_piix.ko",
            "cdrom/cdrom.ko",
            "scsi/sr_mod.ko",
            "isofs/isofs.ko",
            "block/loop.ko",
            "squashfs/squashfs.ko",
            "overlayfs/overlay.ko",
            "reed_solomon/reed_solomon.ko",
            "md/dm-mod.ko",
            "md/dm-bufio.ko",
            "md/dm-verity.ko",
        ]
        .iter()
        .map(|f| match *f {
            "reed_solomon/reed_solomon.ko" => format!("kernel/lib/{f}"),
            f if f.starts_with("isofs")
                || f.starts_with("squashfs")
                || f.starts_with("overlayfs") =>
            {
                format!("kernel/fs/{f}")
            }
            f => format!("kernel/drivers/{f}"),
        })
        .collect();
        assert!(upfront(&files, when_of, closure_of).is_empty());
        let mut with_fs = files.clone();
        with_fs.extend(
            [
                "kernel/fs/fat/fat.ko",
                "kernel/fs/fat/vfat.ko",
                "kernel/fs/nls/nls_cp437.ko",
            ]
            .map(String::from),
        );
        assert_eq!(
            upfront(&with_fs, when_of, closure_of),
            ["kernel/fs/nls/nls_cp437.ko"]
        );
        // A module without aliases that nothing listed depends on (the
        // user named it) loads at once, with what it needs, in list order.
        let mut lone = files.clone();
        lone.retain(|f| !f.contains("sr_mod") && !f.contains("isofs"));
        assert_eq!(
            upfront(&lone, when_of, closure_of),
            ["kernel/drivers/cdrom/cdrom.ko"]
        );
        let only_lib = [
            "kernel/drivers/scsi/scsi_common.ko",
            "kernel/drivers/scsi/scsi_mod.ko",
        ]
        .map(String::from);
        assert_eq!(upfront(&only_lib, when_of, closure_of), only_lib);
    }

    #[test]
    fn drivers_behind_a_controller_follow_its_bus() {
        let aliases = Aliases::parse(
            "alias scsi:t-0x05* sr_mod\nalias scsi:t-0x00* sd_mod\n\
             alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n\
             alias pci:v*d*sv*sd*bc01sc06i01* ahci\n\
             alias pci:v*d*sv*sd*bc01sc08i02* nvme\n\
             alias virtio:d00000008v* virtio_scsi\nalias fs-ext4 ext4\n\
             alias mmc:block mmc_block\n",
        );
        let files: Vec<String> = [
            "sr_mod.ko",
            "sd_mod.ko",
            "usb-storage.ko",
            "ahci.ko",
            "nvme.ko",
            "virtio_scsi.ko",
            "ext4.ko",
            "mmc_block.ko",
            "scsi_mod.ko",
        ]
        .map(String::from)
        .to_vec();
        let patterns_of = |f: &str| {
            aliases
                .of_module(&kmod::module_name(f))
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let loaded: HashSet<String> = ["scsi_mod.ko".to_string()].into();
        // An ATA controller's driver brought scsi_mod: the SCSI disk and CD
        // drivers follow; not the USB, PCI, virtio or MMC ones.
        let scsi = |b: &str| b == "scsi";
        assert_eq!(
            followers(&files, patterns_of, scsi, &loaded),
            ["sr_mod.ko", "sd_mod.ko"]
        );
        let scsi_usb = |b: &str| b == "scsi" || b == "usb";
        assert_eq!(
            followers(&files, patterns_of, scsi_usb, &loaded),
            ["sr_mod.ko", "sd_mod.ko", "usb-storage.ko"]
        );
        // What is loaded already is not loaded again; no bus, no follower.
        let both: HashSet<String> = ["sr_mod.ko".to_string(), "sd_mod.ko".to_string()].into();
        assert!(followers(&files, patterns_of, scsi, &both).is_empty());
        assert!(followers(&files, patterns_of, |_| false, &loaded).is_empty());
    }

    #[test]
    fn how_modules_are_loaded() {
        assert_eq!(method("kernel/fs/isofs/isofs.ko", None), Method::Plain);
        assert_eq!(method("a/loop.ko.xz", None), Method::Own(Codec::Xz));
        assert_eq!(
            method("a/loop.ko.xz", Some("xz\n")),
            Method::Kernel(Codec::Xz)
        );
        // A kernel built for zstd modules cannot take an xz one.
        assert_eq!(
            method("a/loop.ko.xz", Some("zstd\n")),
            Method::Own(Codec::Xz)
        );
        assert_eq!(
            method("a/loop.ko.zst", Some("zstd\n")),
            Method::Kernel(Codec::Zstd)
        );
        assert_eq!(method("a/loop.ko.gz", Some("xz")), Method::Own(Codec::Gzip));
        assert_eq!(method("a/loop.ko", Some("xz")), Method::Plain);
    }

    #[test]
    fn proc_filesystems() {
        let t = "nodev\tsysfs\nnodev\ttmpfs\n\text4\n\tiso9660\nnodev\toverlay\n";
        assert!(filesystems_has(t, "iso9660"));
        assert!(filesystems_has(t, "overlay"));
        assert!(!filesystems_has(t, "squashfs"));
        assert!(!filesystems_has(t, "ext"));
    }

    #[test]
    fn a_module_modules_dep_does_not_list_is_found_by_name() {
        let dir = tempfile_dir("find");
        std::fs::create_dir_all(dir.join("kernel/fs/isofs")).unwrap();
        std::fs::write(dir.join("kernel/fs/isofs/isofs.ko.xz"), b"x").unwrap();
        std::fs::write(dir.join("modules.alias"), b"").unwrap();
        assert_eq!(
            find_module(&dir, "isofs").as_deref(),
            Some("kernel/fs/isofs/isofs.ko.xz")
        );
        std::fs::create_dir_all(dir.join("kernel/drivers")).unwrap();
        std::fs::write(dir.join("kernel/drivers/usb-storage.ko"), b"x").unwrap();
        assert_eq!(
            find_module(&dir, "usb_storage").as_deref(),
            Some("kernel/drivers/usb-storage.ko")
        );
        assert_eq!(find_module(&dir, "nosuch"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compressed_variant_is_found() {
        let dir = tempfile_dir("variant");
        std::fs::write(dir.join("isofs.ko.xz"), b"x").unwrap();
        assert_eq!(
            present_variant(&dir.join("isofs.ko")),
            dir.join("isofs.ko.xz")
        );
        std::fs::write(dir.join("isofs.ko"), b"x").unwrap();
        assert_eq!(present_variant(&dir.join("isofs.ko")), dir.join("isofs.ko"));
        assert_eq!(
            present_variant(&dir.join("isofs.ko.zst")),
            dir.join("isofs.ko")
        );
        assert_eq!(present_variant(&dir.join("none.ko")), dir.join("none.ko"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_needed_module_that_failed_is_named() {
        let mut l = test_loader(
            PathBuf::from("/nonexistent-modules"),
            ModDep::default(),
            "6.12.1",
        );
        // Injected: squashfs failed at load time, as a wrong-kernel module does.
        l.failed.insert(
            "squashfs".into(),
            Failed {
                path: "/lib/modules/6.12.1/kernel/fs/squashfs/squashfs.ko".into(),
                error: "Exec format error (os error 8)".into(),
            },
        );
        let e = l
            .require(
                || false,
                "fs-squashfs",
                "squashfs filesystems",
                "the store images",
            )
            .unwrap_err()
            .to_string();
        for part in [
            "squashfs filesystems",
            "the store images",
            "squashfs.ko",
            "Exec format error",
            "for kernel 6.12.1 but 6.1.0 is running",
        ] {
            assert!(e.contains(part), "{part} missing: {e}");
        }
        let e = l
            .require(
                || false,
                "fs-erofs",
                "erofs filesystems",
                "the store images",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("erofs") && e.contains("nixlive.modules="), "{e}");
        assert!(l.require(|| true, "fs-erofs", "x", "y").is_ok());
    }

    /// A module the background thread could not load: the thread is
    /// waited for before the boot checks what it needs, and the failure is
    /// named as if it had been loaded in the foreground; nothing is tried
    /// twice.
    #[test]
    fn a_module_that_failed_in_the_background_is_named() {
        let dir = tempfile_dir("background");
        let mut l = test_loader(
            dir.clone(),
            ModDep::parse("kernel/fs/squashfs/squashfs.ko:\nkernel/drivers/block/loop.ko:\n")
                .unwrap(),
            "6.1.0",
        );
        let files: Vec<String> = [
            "kernel/drivers/block/loop.ko",
            "kernel/fs/squashfs/squashfs.ko",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(background(&files), ["loop", "squashfs"]);
        l.start_background(&background(&files));
        assert!(l.background.is_some());
        let e = l
            .require(
                || false,
                "fs-squashfs",
                "squashfs filesystems",
                "the store images",
            )
            .unwrap_err()
            .to_string();
        assert!(l.background.is_none(), "the thread was waited for");
        assert!(l.background_span.is_some());
        for part in [
            "squashfs filesystems",
            "the store images",
            "squashfs.ko",
            "No such file",
        ] {
            assert!(e.contains(part), "{part} missing: {e}");
        }
        assert!(l.failed.contains_key("loop") && l.failed.contains_key("squashfs"));
        assert_eq!(l.loaded, 0);
        // Started again: what was tried is not tried twice.
        l.start_background(&["loop".to_string()]);
        assert!(l.background.is_none());
        // The bench's list: the medium's filesystem is not among them.
        let bench: Vec<String> = [
            "kernel/fs/isofs/isofs.ko",
            "kernel/drivers/block/loop.ko",
            "kernel/fs/squashfs/squashfs.ko",
            "kernel/fs/overlayfs/overlay.ko",
            "kernel/drivers/md/dm-verity.ko",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            background(&bench),
            ["loop", "squashfs", "dm_verity", "overlay"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A loader of the modules in `dir` listed by `dep`, built for kernel
    /// `built_for` while 6.1.0 runs, that knows `fs-squashfs`.
    fn test_loader(dir: PathBuf, dep: ModDep, built_for: &str) -> Loader {
        Loader {
            dir,
            dep,
            aliases: Aliases::parse("alias fs-squashfs squashfs\n"),
            tried: HashSet::new(),
            seen_aliases: HashSet::new(),
            failed: BTreeMap::new(),
            kernel_decompresses: None,
            built_for: built_for.into(),
            running: "6.1.0".into(),
            loaded: 0,
            background: None,
            background_span: None,
        }
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nixlive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

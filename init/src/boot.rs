//! The boot, in order: API filesystems, command line, modules, the medium,
//! the manifest, the plan, the store, stage 2. Each phase is logged with its
//! uptime and recorded in the stage-1 timeline. Deciding is in
//! [`crate::plan`]; the steps run through an [`Executor`].

use crate::error::BootError;
use crate::exec::{Executor, Runner};
use crate::medium_keys::{self, Accepted};
use crate::modules::{self, Loader};
use crate::plan::{self, BootPlan, Found, ImageSource, PlainPlan, Probed};
use crate::{console, copytoram, discover, failure, kmsg, medium, net, trust};
use nixlive_formats::nixkey;
use nixlive_formats::paths::{self, in_new_root};
use nixlive_formats::timeline::ImageCheck;
use nixlive_formats::{Cmdline, InitrdConf, Manifest, Phase, RootMode, Timeline, initrd_conf};
use std::cell::RefCell;
use std::convert::Infallible;
use std::path::Path;

/// Records each phase's start and duration for the timeline.
#[derive(Default)]
pub struct Timer {
    timeline: Timeline,
}

impl Timer {
    pub fn phase<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let start = kmsg::uptime();
        log::info!("phase {name}: start");
        let r = f();
        let d = kmsg::uptime().saturating_sub(start);
        log::info!("phase {name}: done in {} ms", d.as_millis());
        self.timeline.phases.push(Phase {
            name: name.to_string(),
            start_ms: start.as_millis() as u64,
            duration_ms: d.as_millis() as u64,
        });
        r
    }
}

/// Boots into stage 2; returns only with the reason it could not.
pub fn run(cmdline: &mut Cmdline, ex: &mut dyn Executor) -> Result<Infallible, BootError> {
    let mut t = Timer::default();
    let mut runner = Runner::default();
    t.phase("mount-api-filesystems", || {
        runner.run(&plan::api_mounts(), ex)
    })?;
    console_to_stdio();
    *cmdline = read_cmdline()?;
    failure::remember(cmdline);
    if cmdline.test_panic {
        panic!("nixlive.test_panic is set: panicking on purpose");
    }
    stop_point(cmdline.debug1, "boot.debug1");
    let keys = trust::trusted_keys(nixkey::TRUSTED_KEYS)?;
    if !keys.is_empty() {
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        log::info!(
            "the initrd trusts {}: only a medium whose manifest one of them signed boots, \
             and every image is checked",
            names.join(", ")
        );
    }
    // Listen before loading drivers so no device announcement is missed.
    let events = discover::uevent::Uevents::open()
        .inspect_err(|e| log::warn!("cannot open the uevent socket ({e}); rescanning instead"))
        .ok();
    let conf = read_conf();
    let mut loader = t.phase("load-modules", || load_modules(cmdline, &conf));
    stop_point(cmdline.debug1devices, "boot.debug1devices");
    if cmdline.root_mode.unwrap_or(conf.root) == RootMode::Plain {
        return plain_root(cmdline, ex, t, runner, events.as_ref(), loader);
    }
    // What the live boot surely needs loads while the medium is searched for.
    loader.start_background(&modules::background(&conf.modules));
    runner.run(&plan::live_root(), ex)?;
    let found = if let Some(url) = &cmdline.url {
        let mut coldplug = || loader.coldplug(Path::new("/sys"));
        let session = t.phase("network", || net::up(cmdline, &mut coldplug))?;
        t.timeline.net = session.describe();
        Found::Http { url: url.clone() }
    } else if medium::in_initrd(cmdline, Path::new("/")) {
        log::info!("netboot: the images are inside the initrd");
        Found::Initrd
    } else {
        let modules = RefCell::new(loader);
        let found = t.phase("find-medium", || {
            medium::find(cmdline, &keys, events.as_ref(), &modules)
        });
        loader = modules.into_inner();
        found?
    };
    match &found {
        Found::Device { node, fstype } => {
            loader.require_fs(fstype, &format!("the medium {node}"))?;
        }
        Found::File { path, fstype, .. } => {
            loader.require_loop(&format!("the ISO file {path}"))?;
            loader.require_fs(fstype, &format!("the ISO file {path}"))?;
        }
        Found::Initrd | Found::Http { .. } => {}
    }
    t.phase("mount-medium", || runner.run(&plan::medium(&found), ex))?;
    let read = match &found {
        // Authenticated below, before any image is fetched.
        Found::Http { url } => t.phase("fetch-manifest", || net::manifest(url))?,
        _ => medium::read_manifest(&plan::images_dir(&found), cmdline)?,
    };
    let medium_name = describe(&found);
    let signed_by = trust::authenticate(
        &medium_name,
        &read.path,
        read.text.as_deref(),
        &read.manifest,
        &keys,
    )?;
    let manifest = read.manifest;
    require_store(&mut loader, &manifest)?;
    // Read before copytoram lets the medium go, for postboot after it.
    let medium_keys = medium_keys::accept(&medium_name, &manifest, signed_by.as_deref());
    let bp = plan::plan(cmdline, &probe(found, manifest, signed_by.is_some()));
    let released = mount_store(&mut t, &mut runner, ex, &bp).map_err(|e| match &signed_by {
        Some(key) => BootError::Signed {
            medium: medium_name.clone(),
            key: key.clone(),
            source: Box::new(e),
        },
        None => e,
    })?;
    // For `make bench` and the RAM tests: what stage 2 starts with.
    if let Some(kib) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| copytoram::mem_available(&m))
    {
        log::info!("MemAvailable before stage 2: {} kB", kib >> 10);
    }
    stop_point(cmdline.debug1mounts, "boot.debug1mounts");
    stage2_exists(&bp.init)?;
    hand_over_keys(medium_keys, released);
    // Nothing may still be loading from the initramfs when it is emptied.
    loader.finish_background()?;
    if let Some((start, end)) = loader.background_span {
        t.timeline.phases.push(Phase {
            name: "background-modules".into(),
            start_ms: start.as_millis() as u64,
            duration_ms: end.saturating_sub(start).as_millis() as u64,
        });
    }
    write_timeline(&t.timeline);
    // switch-root itself takes well under a millisecond: no phase of its own.
    match runner.run(&bp.switch, ex) {
        Ok(()) => Err(BootError::NoStage2(bp.init)),
        Err(e) => Err(e),
    }
}

/// A plain root (`nixlive.root=plain`, or the initrd says so): the
/// device `root=` names, found as a medium is, mounted as the new root.
fn plain_root(
    cmdline: &Cmdline,
    ex: &mut dyn Executor,
    mut t: Timer,
    mut runner: Runner,
    events: Option<&discover::uevent::Uevents>,
    mut loader: Loader,
) -> Result<Infallible, BootError> {
    log::info!("plain root: root= names the root filesystem itself");
    let (probe, described) = {
        let modules = RefCell::new(loader);
        let found = t.phase("find-root", || {
            medium::find_plain(cmdline, events, &modules)
        });
        loader = modules.into_inner();
        found?
    };
    loader.require_fs(
        &probe.fstype,
        &format!("the root filesystem {}", probe.node),
    )?;
    let p: PlainPlan = plan::plain_root(cmdline, &probe).map_err(|r| BootError::NeedsRecovery {
        node: r.node,
        root: described.clone(),
        why: r.why,
    })?;
    for w in &p.warnings {
        log::warn!("{w}");
        console::say(&format!("{w}\n"));
    }
    t.phase("mount-root", || runner.run(&p.mount, ex))?;
    stop_point(cmdline.debug1mounts, "boot.debug1mounts");
    if let Err(e) = stage2_exists(&p.init) {
        let e = match e {
            BootError::NoStage2(_) => BootError::PlainNoStage2 {
                init: p.init.clone(),
                root: described,
            },
            e => e,
        };
        // not fatal to undo: the failure policy runs with or without it.
        let _ = ex.unmount(nixlive_formats::paths::NEW_ROOT);
        return Err(e);
    }
    hand_over_keys(None, false);
    write_timeline(&t.timeline);
    match runner.run(&p.switch, ex) {
        Ok(()) => Err(BootError::NoStage2(p.init)),
        Err(e) => Err(e),
    }
}

/// stdin, stdout and stderr on the console, and the log to `/dev/kmsg`.
fn console_to_stdio() {
    use rustix::fs::{Mode, OFlags};
    // The kernel could not give us a console if the initrd has no /dev/console.
    if let Ok(c) = rustix::fs::open("/dev/console", OFlags::RDWR | OFlags::NOCTTY, Mode::empty()) {
        // not fatal: without them we still log to /dev/kmsg.
        let _ = rustix::stdio::dup2_stdin(&c);
        let _ = rustix::stdio::dup2_stdout(&c);
        let _ = rustix::stdio::dup2_stderr(&c);
    }
    kmsg::attach();
}

fn read_cmdline() -> Result<Cmdline, BootError> {
    let line = std::fs::read_to_string(paths::PROC_CMDLINE)
        .map_err(BootError::sys("read", paths::PROC_CMDLINE))?;
    let cmdline = Cmdline::parse(&line);
    for w in &cmdline.warnings {
        log::warn!("kernel command line: {w}");
    }
    if cmdline.trace {
        log::set_max_level(log::LevelFilter::Debug);
    }
    Ok(cmdline)
}

/// What the builder recorded in the initrd.
fn read_conf() -> InitrdConf {
    std::fs::read_to_string(initrd_conf::PATH)
        .map_err(|e| e.to_string())
        .and_then(|text| InitrdConf::parse(&text).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            log::warn!("{}: {e}; loading only coldplug matches", initrd_conf::PATH);
            let running = rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned();
            InitrdConf {
                kernel: running,
                ..InitrdConf::default()
            }
        })
}

/// What of the builder's list nothing else asks for ([`Loader::upfront`]:
/// drivers wait for their device, filesystems, loop and device-mapper for
/// the boot to need them), `nixlive.modules=`, then coldplug.
fn load_modules(cmdline: &Cmdline, conf: &InitrdConf) -> Loader {
    let mut loader = Loader::new(Path::new("/"), conf);
    let now = loader.upfront(&conf.modules);
    loader.load_files(&now);
    loader.load_names(&cmdline.modules, true);
    loader.coldplug(Path::new("/sys"));
    loader.load_followers(&conf.modules, Path::new("/sys"));
    log::info!("loaded {} modules", loader.loaded);
    loader
}

/// Loop devices and the filesystems of the images and the overlay.
fn require_store(loader: &mut Loader, m: &Manifest) -> Result<(), BootError> {
    loader.require_loop("the store images")?;
    for img in &m.images {
        loader.require_fs(img.fs.as_str(), &format!("the store image {}", img.name))?;
    }
    if let Some(img) = m.images.iter().find(|i| i.verity.is_some()) {
        loader.require_verity(&format!("the store image {} (its hash tree)", img.name))?;
    }
    loader.require_fs("overlay", paths::STORE_DIR)
}

/// The medium, as messages name it.
fn describe(found: &Found) -> String {
    match found {
        Found::Initrd => "in the initrd (netboot)".to_string(),
        Found::Device { node, .. } => node.clone(),
        Found::File { path, .. } => path.clone(),
        Found::Http { url } => format!("served over HTTP at {url}"),
    }
}

fn probe(found: Found, manifest: Manifest, trusted: bool) -> Probed {
    let si = rustix::system::sysinfo();
    Probed {
        found,
        manifest,
        mem_available: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| copytoram::mem_available(&t))
            .unwrap_or(0),
        ram: si.totalram as u64 * u64::from(si.mem_unit),
        trusted,
    }
}

/// Copies to RAM if planned (falling back to the medium when the copy
/// fails), then verifies and mounts the images and the store. Returns
/// whether the medium was let go.
pub(crate) fn mount_store(
    t: &mut Timer,
    runner: &mut Runner,
    ex: &mut dyn Executor,
    bp: &BootPlan,
) -> Result<bool, BootError> {
    if let Some(why) = &bp.copy_refused {
        log::warn!("{why}");
        console::say(&format!("{why}\n"));
    }
    if bp.verify {
        log::info!(
            "every image is checked (nixlive.verify, a trusted key, copytoram, or fetched over HTTP)"
        );
    }
    let mut store = &bp.store;
    if let ImageSource::Fetched { size } = bp.images {
        net::fits(size)?;
        t.phase("fetch-images", || runner.run(&bp.copy, ex))?;
    }
    let mut checks = &bp.checks;
    if let ImageSource::Ram { size } = bp.images {
        match t.phase("copy-to-ram", || runner.run(&bp.copy, ex)) {
            Ok(()) => log::info!(
                "copied the images to a {} MiB tmpfs, digests verified",
                size >> 20
            ),
            Err(e) => {
                let why = nixlive_formats::error::chain(&e);
                log::warn!("copytoram failed, booting from the medium instead: {why}");
                console::say(&format!(
                    "copytoram failed ({why}); booting from the medium instead\n"
                ));
                store = bp.fallback.as_ref().unwrap_or(&bp.store);
                checks = &bp.fallback_checks;
            }
        }
    }
    for (name, check) in checks {
        log::info!("image {name}: {}", check.as_str());
    }
    t.timeline.images = checks
        .iter()
        .map(|(name, check)| ImageCheck {
            name: name.clone(),
            check: check.as_str().to_string(),
        })
        .collect();
    if bp.check {
        log::info!("nixlive.check: every image is read whole before stage 2");
        console::say("nixlive.check: checking every image of the medium\n");
    }
    // With nixlive.verify (or nixlive.check), checking the images is part of it.
    t.phase("mount-store", || runner.run(store, ex))?;
    if bp.check {
        let msg = "nixlive.check: the check passed: every image was read whole and is intact";
        log::info!("{msg}");
        console::say(&format!("{msg}\n"));
    }
    let released = store
        .iter()
        .any(|s| matches!(s, plan::Step::Unmount { .. }));
    if released {
        // not fatal: an empty directory left behind costs nothing.
        let _ = std::fs::remove_dir(in_new_root(paths::MEDIUM));
        console::say("The boot medium is no longer needed and can be removed.\n");
    }
    Ok(released)
}

/// Stage 2 must be runnable before anything irreversible (emptying the
/// initramfs) happens: `init` resolved inside the new root, as the
/// chroot will see it, must be an executable regular file.
fn stage2_exists(init: &str) -> Result<(), BootError> {
    match stage2_check(std::path::Path::new(paths::NEW_ROOT), init) {
        Ok(()) => Ok(()),
        Err(Stage2::Missing) => Err(BootError::NoStage2(init.to_string())),
        Err(Stage2::NotRunnable(why)) => Err(BootError::Stage2NotRunnable {
            init: init.to_string(),
            why,
        }),
    }
}

/// Why stage 2 cannot be run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stage2 {
    Missing,
    NotRunnable(String),
}

/// Symlinks followed before giving up, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: u32 = 40;

/// Checks that `init` (an absolute path as `root` will see it after the
/// chroot) is an executable regular file: each symlink on the way is
/// resolved inside `root` (an absolute target starts again at `root`, `..`
/// never leaves it), as NixOS's `init -> /nix/store/...` must be.
pub(crate) fn stage2_check(root: &Path, init: &str) -> Result<(), Stage2> {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Component, PathBuf};
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    let push = |todo: &mut Vec<std::ffi::OsString>, p: &Path| {
        let parts: Vec<_> = p.components().collect();
        for c in parts.into_iter().rev() {
            match c {
                Component::Normal(n) => todo.push(n.to_os_string()),
                Component::ParentDir => todo.push("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    };
    push(&mut todo, Path::new(init));
    let mut at = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&name);
        let host = root.join(next.strip_prefix("/").unwrap_or(&next));
        let md = match std::fs::symlink_metadata(&host) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Stage2::Missing),
            Err(e) => return Err(Stage2::NotRunnable(format!("{}: {e}", next.display()))),
        };
        if md.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Stage2::NotRunnable(format!(
                    "more than {MAX_LINKS} symlinks on the way to it"
                )));
            }
            let target = std::fs::read_link(&host)
                .map_err(|e| Stage2::NotRunnable(format!("{}: {e}", next.display())))?;
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            push(&mut todo, &target);
            continue;
        }
        if !todo.is_empty() && !md.is_dir() {
            return Err(Stage2::NotRunnable(format!(
                "{} is not a directory",
                next.display()
            )));
        }
        at = next;
    }
    let host = root.join(at.strip_prefix("/").unwrap_or(&at));
    let md = std::fs::metadata(&host)
        .map_err(|e| Stage2::NotRunnable(format!("{}: {e}", at.display())))?;
    let mode = md.permissions().mode();
    let shown = if at.as_os_str() == init {
        at.display().to_string()
    } else {
        format!("it leads to {}, which", at.display())
    };
    if !md.is_file() {
        return Err(Stage2::NotRunnable(format!(
            "{shown} is not a regular file"
        )));
    }
    if mode & 0o111 == 0 {
        return Err(Stage2::NotRunnable(format!(
            "{shown} is not executable (mode {:04o})",
            mode & 0o7777
        )));
    }
    Ok(())
}

/// SSH keys packed into the initrd go to [`paths::RUN_KEYS`] and the
/// medium's that this boot accepted ([`medium_keys`]) to
/// [`paths::RUN_MEDIUM_KEYS`], behind a comment line saying where they
/// came from: postboot reads only these (the initrd's files are gone after
/// the switch of root, and the medium may be: `released`). Not fatal:
/// postboot still has the other key sources.
fn hand_over_keys(medium_keys: Option<Accepted>, released: bool) {
    use paths::{INITRD_KEYS, MEDIUM_KEYS, RUN_KEYS, RUN_MEDIUM_KEYS, RUN_MEDIUM_KEYS_ORIGIN};
    let initrd = std::fs::read(INITRD_KEYS).unwrap_or_default();
    if !initrd.is_empty() && write_new(RUN_KEYS, &initrd) {
        log::info!("SSH keys of the initrd handed over in {RUN_KEYS}");
    }
    let Some(a) = medium_keys else {
        return;
    };
    // One line: the origin names a device and a key, never a newline.
    let origin: String = a
        .origin
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let mut text = format!("{RUN_MEDIUM_KEYS_ORIGIN}{origin}\n").into_bytes();
    text.extend_from_slice(&a.keys);
    if write_new(RUN_MEDIUM_KEYS, &text) {
        if released {
            log::info!(
                "SSH keys from {MEDIUM_KEYS} carried over in {RUN_MEDIUM_KEYS}: the medium is gone"
            );
        } else {
            log::info!("SSH keys from {MEDIUM_KEYS} handed over in {RUN_MEDIUM_KEYS}");
        }
    }
}

/// Writes a new file (0600) under `/run`; says so when it cannot.
fn write_new(path: &str, data: &[u8]) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = Path::new(path)
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
        })
        .and_then(|mut f| f.write_all(data));
    match written {
        Ok(()) => true,
        Err(e) => {
            log::warn!("writing {path}: {e}, ignoring");
            false
        }
    }
}

fn write_timeline(timeline: &Timeline) {
    let path = paths::STAGE1_TIMELINE;
    let dir = Path::new(path).parent().unwrap_or(Path::new("/run"));
    if let Err(e) =
        std::fs::create_dir_all(dir).and_then(|()| std::fs::write(path, timeline.to_json()))
    {
        log::warn!("writing {path}: {e}, ignoring");
    }
}

/// `boot.debug1*`: stop here (a shell if the initrd has one, else wait for Enter).
fn stop_point(on: bool, name: &str) {
    if on {
        failure::pause(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn file(path: &Path, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Symlinks resolve inside the new root, as after the chroot; a file
    /// that is not executable, a directory or a loop is refused with why,
    /// before the initramfs is touched.
    #[test]
    fn stage2_is_an_executable_file_inside_the_new_root() {
        let root = tempfile::Builder::new()
            .prefix("nixlive-stage2-")
            .tempdir()
            .unwrap();
        let r = root.path();
        file(&r.join("nix/store/a-sys/init-real"), 0o755);
        symlink("/nix/store/a-sys/init-real", r.join("nix/store/a-sys/init")).unwrap();
        // A relative link to the store; the one inside is absolute: both resolve in the new root.
        symlink("nix/store/a-sys", r.join("sys")).unwrap();
        assert_eq!(stage2_check(r, "/nix/store/a-sys/init"), Ok(()));
        assert_eq!(stage2_check(r, "/sys/init"), Ok(()));
        // `..` after a link goes up from where the link led, as the kernel does.
        assert_eq!(stage2_check(r, "/sys/../a-sys/init-real"), Ok(()));
        assert_eq!(
            stage2_check(r, "/sys/../sys/init-real"),
            Err(Stage2::Missing)
        );
        // `..` never leaves the new root.
        assert_eq!(stage2_check(r, "/../../nix/store/a-sys/init"), Ok(()));
        assert_eq!(
            stage2_check(r, "/nix/store/b-sys/init"),
            Err(Stage2::Missing)
        );
        file(&r.join("nix/store/a-sys/readme"), 0o644);
        symlink(
            "/nix/store/a-sys/readme",
            r.join("nix/store/a-sys/init-text"),
        )
        .unwrap();
        assert_eq!(
            stage2_check(r, "/nix/store/a-sys/readme"),
            Err(Stage2::NotRunnable(
                "/nix/store/a-sys/readme is not executable (mode 0644)".into()
            ))
        );
        let Err(Stage2::NotRunnable(why)) = stage2_check(r, "/sys/init-text") else {
            panic!("a link to a text file")
        };
        assert_eq!(
            why,
            "it leads to /nix/store/a-sys/readme, which is not executable (mode 0644)"
        );
        assert!(matches!(
            stage2_check(r, "/nix/store/a-sys"),
            Err(Stage2::NotRunnable(w)) if w.contains("not a regular file")
        ));
        // A link out of the new root (to the initramfs's own /bin/sh, say)
        // stays inside it, where there is nothing.
        symlink("/../../../bin/sh", r.join("nix/store/a-sys/escape")).unwrap();
        assert_eq!(
            stage2_check(r, "/nix/store/a-sys/escape"),
            Err(Stage2::Missing)
        );
        symlink("loop", r.join("loop")).unwrap();
        assert!(matches!(
            stage2_check(r, "/loop"),
            Err(Stage2::NotRunnable(w)) if w.contains("symlinks")
        ));
        assert!(matches!(
            stage2_check(r, "/nix/store/a-sys/readme/x"),
            Err(Stage2::NotRunnable(w)) if w.contains("not a directory")
        ));
    }
}

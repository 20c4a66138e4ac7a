//! `nixlive-init`: the stage-1 PID 1 of nixlive live media.
//!
//! Purpose: in the initrd, mount the API filesystems, load the recorded
//! kernel modules, find the boot medium by its label, loop-mount the squashfs
//! images its manifest lists, build the tmpfs-backed overlay `/nix/store`,
//! and switch root into stage 2. Every phase is logged to `/dev/kmsg` with
//! its uptime and recorded in `/run/nixlive/stage1.json`.
//!
//! Non-goals: no shell, no udev, no networking, nothing stage 2 can do
//! (registration, profiles and keys belong to `nixlive-postboot`).
//!
//! Deciding and doing are apart: `plan` and `discover::probe` are pure and
//! unit-tested; `exec`, `switch_root` and `sys` are the thin layer the VM
//! tests cover.

mod copytoram;
mod discover;
mod error;
mod exec;
mod failure;
mod findiso;
mod kmsg;
mod modules;
mod plan;
mod switch_root;
mod sys;

use error::BootError;
use nixlive_formats::{Cmdline, InitrdConf, Manifest, Phase, Timeline, initrd_conf, manifest};
use rustix::mount::MountFlags;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Records each phase's start and duration for the timeline.
struct Timer {
    timeline: Timeline,
}

impl Timer {
    fn phase<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let start = kmsg::uptime();
        log::info!("phase {name}: start");
        let r = f();
        let end = kmsg::uptime();
        let d = end.saturating_sub(start);
        log::info!("phase {name}: done in {} ms", d.as_millis());
        self.timeline.phases.push(Phase {
            name: name.to_string(),
            start_ms: start.as_millis() as u64,
            duration_ms: d.as_millis() as u64,
        });
        r
    }
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        // panic = "abort": log first, then the kernel reports PID 1's death.
        log::error!("nixlive-init panicked: {info}");
        eprintln!("nixlive-init panicked: {info}");
    }));
    kmsg::init(log::LevelFilter::Info);
    let mut cmdline = Cmdline::default();
    let err = match boot(&mut cmdline) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    failure::fail(&error::chain(&err), &cmdline)
}

/// Mounts /proc, /sys, /dev and /run, and puts the console on fds 0-2.
fn mount_basics() -> Result<(), BootError> {
    let nosuid = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    let table: [(&str, &str, &str, MountFlags, &str); 4] = [
        ("proc", "/proc", "proc", nosuid, ""),
        ("sysfs", "/sys", "sysfs", nosuid, ""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            "mode=0755",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        ),
    ];
    for (src, target, fstype, flags, data) in table {
        std::fs::create_dir_all(target).map_err(BootError::io(format!("creating {target}")))?;
        match exec::mount_data(src, target, fstype, flags, data) {
            Ok(()) | Err(rustix::io::Errno::BUSY) => {}
            Err(e) => {
                return Err(BootError::Io {
                    what: format!("mount -t {fstype} {src} {target}"),
                    source: e.into(),
                });
            }
        }
    }
    // The kernel could not give us a console if the initrd has no /dev/console.
    if let Ok(c) = rustix::fs::open(
        "/dev/console",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
    ) {
        // not fatal: without them we still log to /dev/kmsg.
        let _ = rustix::stdio::dup2_stdin(&c);
        let _ = rustix::stdio::dup2_stdout(&c);
        let _ = rustix::stdio::dup2_stderr(&c);
    }
    kmsg::attach();
    Ok(())
}

/// Where the pieces go inside the new root.
const MEDIUM: &str = "/mnt-root/iso";
const FINDISO_HOST: &str = "/mnt-root/findiso";
const RAM_IMAGES: &str = "/mnt-root/nix/.images";

fn boot(cmdline: &mut Cmdline) -> Result<std::convert::Infallible, BootError> {
    let mut t = Timer {
        timeline: Timeline::default(),
    };
    t.phase("mount-api-filesystems", mount_basics)?;
    let line =
        std::fs::read_to_string("/proc/cmdline").map_err(BootError::io("reading /proc/cmdline"))?;
    *cmdline = Cmdline::parse(&line);
    for w in &cmdline.warnings {
        log::warn!("kernel command line: {w}");
    }
    if cmdline.trace {
        log::set_max_level(log::LevelFilter::Debug);
    }
    stop_point(cmdline.debug1, "boot.debug1");
    // Listen before loading drivers so no device announcement is missed.
    let events = match discover::uevent::Uevents::open() {
        Ok(e) => Some(e),
        Err(e) => {
            log::warn!("cannot open the uevent socket ({e}); falling back to rescanning");
            None
        }
    };
    let mut loader = t.phase("load-modules", || {
        let conf = match std::fs::read_to_string(initrd_conf::PATH) {
            Ok(text) => InitrdConf::parse(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let conf = conf.unwrap_or_else(|e| {
            log::warn!("{}: {e}; loading only coldplug matches", initrd_conf::PATH);
            InitrdConf {
                kernel: rustix::system::uname()
                    .release()
                    .to_string_lossy()
                    .into_owned(),
                modules: Vec::new(),
            }
        });
        let mut loader = modules::Loader::new(Path::new("/"), &conf);
        loader.load_files(&conf.modules);
        loader.load_names(&cmdline.modules, true);
        loader.coldplug(Path::new("/sys"));
        log::info!("loaded {} modules", loader.loaded);
        loader
    });
    stop_point(cmdline.debug1devices, "boot.debug1devices");
    exec::run(&plan::plan_root())?;

    // Netboot: the builder put the medium (manifest and images) into the
    // initrd itself; they are attached where they are, never copied.
    let in_initrd = format!("/{}", manifest::DEFAULT_PATH);
    let images_dir =
        if cmdline.root.is_none() && cmdline.findiso.is_none() && Path::new(&in_initrd).exists() {
            log::info!("netboot: the images are inside the initrd");
            "/".to_string()
        } else {
            let (node, fstype, loop_fd) = t.phase("find-medium", || {
                find_medium(cmdline, events.as_ref(), &mut |a| loader.modalias(a))
            })?;
            loader.require_fs(&fstype, &format!("the medium {node}"))?;
            t.phase("mount-medium", || {
                exec::run(&plan::plan_medium(&node, &fstype))
            })?;
            // The mount holds the findiso loop device now; with autoclear it
            // detaches (and lets go of the ISO file) once /iso is unmounted.
            drop(loop_fd);
            MEDIUM.to_string()
        };

    let manifest = read_manifest(&images_dir, cmdline)?;
    if cmdline.verify && !cmdline.copytoram {
        t.phase("verify-images", || verify_images(&manifest, &images_dir))?;
    }
    let ram = {
        let si = rustix::system::sysinfo();
        si.totalram as u64 * u64::from(si.mem_unit)
    };
    let copied = cmdline.copytoram && images_dir == MEDIUM && {
        t.phase("copy-to-ram", || copy_to_ram(&manifest, &images_dir))?
    };
    let store_dir = if copied {
        RAM_IMAGES
    } else {
        images_dir.as_str()
    };
    loader.require_loop("the store images")?;
    for img in &manifest.images {
        loader.require_fs(img.fs.as_str(), &format!("the store image {}", img.name))?;
    }
    loader.require_fs("overlay", "/nix/store")?;
    t.phase("mount-store", || {
        exec::run(&plan::plan_store(
            &manifest,
            store_dir,
            ram,
            cmdline.overlay_size,
        ))
    })?;
    if copied {
        release_medium();
    }
    stop_point(cmdline.debug1mounts, "boot.debug1mounts");

    let init = cmdline
        .init
        .clone()
        .unwrap_or_else(|| manifest.init.clone());
    let in_new_root = format!("{}{init}", plan::NEW_ROOT);
    // A symlink (as NixOS's init is) may point into the store: check the target.
    if std::fs::metadata(&in_new_root).is_err() && std::fs::symlink_metadata(&in_new_root).is_err()
    {
        return Err(BootError::NoStage2(init));
    }
    hand_over_keys();
    // The last phase recorded is the one before the exec; switch-root itself
    // takes well under a millisecond.
    let json = t.timeline.to_json();
    let dir = Path::new(nixlive_formats::timeline::PATH)
        .parent()
        .unwrap_or(Path::new("/run"));
    if let Err(e) = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(nixlive_formats::timeline::PATH, json))
    {
        log::warn!("writing {}: {e}, ignoring", nixlive_formats::timeline::PATH);
    }
    switch_root::switch_root(plan::NEW_ROOT, &init)
}

/// SSH keys packed into the initrd go to `/run` for postboot, since the
/// initrd's files are deleted by the switch of root. Not fatal: postboot
/// still has the other key sources.
fn hand_over_keys() {
    use nixlive_formats::handoff::{INITRD_KEYS, RUN_KEYS};
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(keys) = std::fs::read(INITRD_KEYS) else {
        return;
    };
    let written = Path::new(RUN_KEYS)
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(RUN_KEYS)
        })
        .and_then(|mut f| f.write_all(&keys));
    match written {
        Ok(()) => log::info!("SSH keys from the initrd handed over in {RUN_KEYS}"),
        Err(e) => log::warn!("copying {INITRD_KEYS} to {RUN_KEYS}: {e}, ignoring"),
    }
}

/// Waits for the medium; returns its device node, its filesystem type and,
/// for `findiso=`, the open loop device that must stay open until mounted.
fn find_medium(
    cmdline: &Cmdline,
    events: Option<&discover::uevent::Uevents>,
    on_modalias: &mut dyn FnMut(&str),
) -> Result<(String, String, Option<rustix::fd::OwnedFd>), BootError> {
    let budget = match cmdline.timeout {
        nixlive_formats::Timeout::Forever => None,
        nixlive_formats::Timeout::After(d) => Some(d),
    };
    let says_budget = budget.map_or("no timeout".to_string(), |d| {
        format!("timeout {} s", d.as_secs())
    });
    let timed_out = |wanted: String, seen: discover::Seen| BootError::MediumNotFound {
        check: discover::what_to_check(cmdline),
        wanted,
        secs: budget.unwrap_or(Duration::ZERO).as_secs(),
        seen: seen.list(),
    };
    if let Some(iso) = &cmdline.findiso {
        log::info!("looking for the ISO file {iso} on every filesystem ({says_budget})");
        let mut tried = std::collections::HashSet::new();
        let mut accept = |d: &discover::BlockDev, _: &discover::Seen| {
            let Some(Ok(Some(id))) = &d.probe else {
                return false;
            };
            if !tried.insert(d.name.clone()) {
                return false;
            }
            findiso::holds(&d.node(), id.fstype, FINDISO_HOST, iso)
        };
        return match discover::wait_for(
            &mut accept,
            true,
            on_modalias,
            Path::new("/sys"),
            events,
            budget,
        ) {
            discover::Found::Device(d) => {
                log::info!("found {iso} on {}", d.describe());
                let file = format!("{FINDISO_HOST}{iso}");
                let (node, fd) = exec::attach_loop(&file)
                    .map_err(BootError::io(format!("attaching {file} to a loop device")))?;
                log::info!("{file} is {node}");
                Ok((node, "iso9660".to_string(), Some(fd)))
            }
            discover::Found::TimedOut(seen) => Err(timed_out(format!("file {iso}"), seen)),
        };
    }
    let spec = cmdline.root.clone().ok_or(BootError::NoRoot)?;
    log::info!("waiting for the medium {spec} ({says_budget})");
    let retry = !matches!(spec, nixlive_formats::RootSpec::Device(_));
    let mut accept =
        |d: &discover::BlockDev, seen: &discover::Seen| discover::matches(&spec, d, seen);
    match discover::wait_for(
        &mut accept,
        retry,
        on_modalias,
        Path::new("/sys"),
        events,
        budget,
    ) {
        discover::Found::Device(d) => {
            log::info!("found the medium: {}", d.describe());
            let fstype = match &d.probe {
                Some(Ok(Some(id))) => id.fstype,
                _ => "iso9660",
            };
            Ok((d.node(), fstype.to_string(), None))
        }
        discover::Found::TimedOut(seen) => Err(timed_out(spec.to_string(), seen)),
    }
}

fn verify_images(m: &Manifest, dir: &str) -> Result<(), BootError> {
    for img in &m.images {
        let path = format!("{dir}/{}", img.name);
        let got =
            copytoram::sha256_file(&path).map_err(BootError::io(format!("reading {path}")))?;
        check_digest(&path, &img.sha256, &got)?;
        log::info!("{path}: sha256 verified");
    }
    Ok(())
}

fn check_digest(path: &str, want: &str, got: &str) -> Result<(), BootError> {
    // The stock layout has no digest to compare with.
    if !want.is_empty() && want != got {
        return Err(BootError::Digest {
            path: path.to_string(),
            want: want.to_string(),
            got: got.to_string(),
        });
    }
    Ok(())
}

/// Copies the images into a tmpfs when they fit. Returns false (boot from
/// the medium) when they do not.
fn copy_to_ram(m: &Manifest, dir: &str) -> Result<bool, BootError> {
    let total: u64 = m.images.iter().map(|i| i.size).sum();
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| copytoram::mem_available(&t))
        .unwrap_or(0);
    let size = match copytoram::decide(total, avail) {
        Ok(s) => s,
        Err(why) => {
            log::warn!("{why}");
            console_say(&format!("{why}\n"));
            return Ok(false);
        }
    };
    exec::run(&plan::plan_ram_images(RAM_IMAGES, size))?;
    let mut console = console_writer();
    let start = std::time::Instant::now();
    let mut done = 0;
    for img in &m.images {
        let src = format!("{dir}/{}", img.name);
        let dst = format!("{RAM_IMAGES}/{}", img.name);
        if let Some(parent) = Path::new(&dst).parent() {
            std::fs::create_dir_all(parent)
                .map_err(BootError::io(format!("creating {}", parent.display())))?;
        }
        let got = copytoram::copy_verified(&src, &dst, done, total, start, &mut console)
            .map_err(BootError::io(format!("copying {src} to {dst}")))?;
        check_digest(&src, &img.sha256, &got)?;
        done += img.size;
    }
    let _ = writeln!(console);
    log::info!(
        "copied {} MiB to RAM in {:.1} s, digests verified",
        total >> 20,
        start.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// After copytoram: unmount the medium (and the filesystem holding a
/// findiso file) so it can be removed.
fn release_medium() {
    for m in [MEDIUM, FINDISO_HOST] {
        match rustix::mount::unmount(m, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => log::info!("unmounted {m}"),
            // Not mounted (or never created): nothing to release.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
            Err(e) => log::warn!("unmounting {m}: {e}; the medium stays in use, ignoring"),
        }
    }
    let _ = std::fs::remove_dir(MEDIUM);
    console_say("The boot medium is no longer needed and can be removed.\n");
}

fn console_writer() -> Box<dyn std::io::Write> {
    match std::fs::OpenOptions::new().write(true).open("/dev/console") {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::stderr()),
    }
}

fn console_say(s: &str) {
    // not fatal: the same text is in the kernel log.
    let _ = console_writer().write_all(s.as_bytes());
}

/// `boot.debug1*`: stop here (a shell if the initrd has one, else wait for Enter).
fn stop_point(on: bool, name: &str) {
    if on {
        failure::pause(name);
    }
}

/// The manifest from the medium (or `nixlive.manifest=`); a medium with only
/// the stock `nix-store.squashfs` boots with a manifest made up for it.
fn read_manifest(medium: &str, cmdline: &Cmdline) -> Result<Manifest, BootError> {
    let medium = medium.trim_end_matches('/');
    let rel = cmdline
        .manifest
        .clone()
        .unwrap_or_else(|| format!("/{}", manifest::DEFAULT_PATH));
    let path = format!("{medium}{rel}");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let m = Manifest::parse(&text).map_err(|source| BootError::Manifest {
                path: path.clone(),
                source,
            })?;
            log::info!(
                "manifest {path}: {} image(s), init {}",
                m.images.len(),
                m.init
            );
            Ok(m)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let stock = format!("{medium}/{}", manifest::STOCK_IMAGE);
            let size =
                std::fs::metadata(&stock)
                    .map(|m| m.len())
                    .map_err(|_| BootError::NoManifest {
                        medium: medium.to_string(),
                        manifest: rel.clone(),
                        stock: manifest::STOCK_IMAGE.to_string(),
                    })?;
            log::info!("no manifest at {path}; booting the stock layout {stock}");
            Ok(Manifest {
                init: cmdline.init.clone().unwrap_or_else(|| "/init".into()),
                registration: "/nix/store/nix-path-registration".into(),
                images: vec![nixlive_formats::ImageEntry {
                    name: manifest::STOCK_IMAGE.into(),
                    fs: nixlive_formats::ImageFs::Squashfs,
                    size,
                    sha256: String::new(),
                }],
            })
        }
        Err(e) => Err(BootError::Io {
            what: format!("reading {path}"),
            source: e,
        }),
    }
}

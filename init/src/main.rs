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

mod discover;
mod error;
mod exec;
mod failure;
mod kmsg;
mod modules;
mod plan;
mod switch_root;
mod sys;

use error::BootError;
use nixlive_formats::{Cmdline, InitrdConf, Manifest, Phase, Timeline, initrd_conf, manifest};
use rustix::mount::MountFlags;
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
    // Listen before loading drivers so no device announcement is missed.
    let events = match discover::uevent::Uevents::open() {
        Ok(e) => Some(e),
        Err(e) => {
            log::warn!("cannot open the uevent socket ({e}); falling back to rescanning");
            None
        }
    };
    t.phase("load-modules", || {
        match std::fs::read_to_string(initrd_conf::PATH) {
            Ok(text) => match InitrdConf::parse(&text) {
                Ok(conf) => {
                    let n = modules::load_all(Path::new("/"), &conf);
                    log::info!("loaded {n} of {} modules", conf.modules.len());
                }
                Err(e) => log::warn!("{}: {e}; loading no modules", initrd_conf::PATH),
            },
            Err(e) => log::warn!("{}: {e}; loading no modules", initrd_conf::PATH),
        }
    });
    let spec = cmdline.root.clone().ok_or(BootError::NoRoot)?;
    let budget = match cmdline.timeout {
        nixlive_formats::Timeout::Forever => None,
        nixlive_formats::Timeout::After(d) => Some(d),
    };
    log::info!(
        "waiting for the medium {spec} (timeout: {})",
        budget.map_or("none".to_string(), |d| format!("{} s", d.as_secs()))
    );
    let found = t.phase("find-medium", || {
        discover::wait_for(&spec, Path::new("/sys"), events.as_ref(), budget)
    });
    let dev = match found {
        discover::Found::Device(d) => d,
        discover::Found::TimedOut(seen) => {
            return Err(BootError::MediumNotFound {
                wanted: spec.to_string(),
                secs: budget.unwrap_or(Duration::ZERO).as_secs(),
                seen: seen.list(),
            });
        }
    };
    log::info!("found the medium: {}", dev.describe());
    let fstype = match &dev.probe {
        Some(Ok(Some(id))) => id.fstype,
        _ => "iso9660",
    };
    t.phase("mount-medium", || {
        exec::run(&plan::plan_medium(&dev.node(), fstype))
    })?;

    let medium = format!("{}/iso", plan::NEW_ROOT);
    let manifest = read_manifest(&medium, cmdline)?;
    let ram = {
        let si = rustix::system::sysinfo();
        si.totalram as u64 * u64::from(si.mem_unit)
    };
    t.phase("mount-store", || {
        exec::run(&plan::plan_store(
            &manifest,
            &medium,
            ram,
            cmdline.overlay_size,
        ))
    })?;

    let init = cmdline
        .init
        .clone()
        .unwrap_or_else(|| manifest.init.clone());
    let in_new_root = format!("{}{init}", plan::NEW_ROOT);
    if std::fs::symlink_metadata(&in_new_root).is_err() && std::fs::metadata(&in_new_root).is_err()
    {
        return Err(BootError::NoStage2(init));
    }
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

/// The manifest from the medium (or `nixlive.manifest=`); a medium with only
/// the stock `nix-store.squashfs` boots with a manifest made up for it.
fn read_manifest(medium: &str, cmdline: &Cmdline) -> Result<Manifest, BootError> {
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

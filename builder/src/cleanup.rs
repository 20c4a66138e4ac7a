//! What a build leaves behind when it stops early: every temporary file
//! and directory it makes (scratch directories under `$TMPDIR`, outputs
//! being written beside their final paths) and every program it runs is
//! registered here while it lives. On SIGINT or SIGTERM a thread (the
//! signals are blocked everywhere else, see [`crate::sys`]) kills the
//! running programs' process groups, removes what is registered and ends
//! the process with 130 or 143, as a shell reports a program stopped by
//! the signal. A failing build removes the same through `Drop`.
//!
//! Non-goals: no cleanup after SIGKILL or a power cut (the leftovers are
//! named `nixlive-*` and `.NAME.nixlive-*`, to be found and removed).

use anyhow::{Context, Result};
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Registry {
    /// Temporary paths, removed on a signal.
    paths: Vec<PathBuf>,
    /// Process groups of the programs running now.
    groups: Vec<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    paths: Vec::new(),
    groups: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while the lock was held leaves lists that are still valid.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the killed programs get to be gone before their files are
/// removed anyway.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// Blocks SIGINT and SIGTERM and starts the thread that waits for them.
/// Call first in `main`, before any other thread exists.
pub fn install() -> Result<()> {
    crate::sys::block_stop_signals().context("blocking SIGINT and SIGTERM")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            if let Ok(sig) = crate::sys::wait_stop_signal() {
                stop(sig)
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Ends the process after the build: waits for a cleanup that a signal
/// started (it then exits with the signal's status), else keeps any
/// signal from starting one while the process ends.
pub fn finish() {
    std::mem::forget(registry());
}

fn stop(sig: i32) -> ! {
    let reg = registry();
    let name = if sig == 2 { "SIGINT" } else { "SIGTERM" };
    eprintln!("nixlive: stopped by {name}; removing what this build wrote");
    for &g in &reg.groups {
        if let Some(pid) = rustix::process::Pid::from_raw(g as i32) {
            // not fatal: a group that is gone already needs no killing.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
    // Their files are removed only once they can write no more.
    let start = Instant::now();
    for &g in &reg.groups {
        if let Some(pid) = rustix::process::Pid::from_raw(g as i32) {
            while group_runs(pid) && start.elapsed() < KILL_DEADLINE {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    for p in reg.paths.iter().rev() {
        remove_any(p);
    }
    std::process::exit(128 + sig)
}

/// Whether any process of the group is alive (not a zombie).
fn group_runs(pgid: rustix::process::Pid) -> bool {
    if rustix::process::test_kill_process_group(pgid).is_err() {
        return false;
    }
    let Ok(dir) = fs::read_dir("/proc") else {
        return true;
    };
    let want = pgid.as_raw_nonzero().get();
    dir.flatten().any(|e| {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 3 && f[0] != "Z" && f[2].parse::<i32>() == Ok(want)
    })
}

/// Removes a file or a whole tree (read-only directories included);
/// errors are ignored: this is the last thing done.
pub fn remove_any(p: &Path) {
    fn writable(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = fs::symlink_metadata(p)
            && m.is_dir()
        {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    writable(&e.path());
                }
            }
        }
    }
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            writable(p);
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// A registered temporary path: removed on a signal while this lives.
/// Dropping it unregisters the path (and removes nothing).
#[derive(Debug)]
pub struct Tracked(PathBuf);

impl Tracked {
    pub fn new(p: PathBuf) -> Tracked {
        registry().paths.push(p.clone());
        Tracked(p)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut r = registry();
        if let Some(i) = r.paths.iter().rposition(|p| *p == self.0) {
            r.paths.remove(i);
        }
    }
}

/// A scratch directory under `$TMPDIR`, removed when dropped or on a signal.
#[derive(Debug)]
pub struct Scratch {
    // Dropped before `_tracked`: removed, then unregistered.
    dir: PathBuf,
    _tracked: Tracked,
}

impl Scratch {
    /// Makes `$TMPDIR/PREFIXxxxxxx`.
    pub fn new(prefix: &str) -> Result<Scratch> {
        // Made and registered under the lock: a signal cannot fall between.
        let mut r = registry();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("creating a temporary directory")?
            .keep();
        r.paths.push(dir.clone());
        drop(r);
        Ok(Scratch {
            _tracked: Tracked(dir.clone()),
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_any(&self.dir);
    }
}

/// A running program's process group, registered while it runs.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let mut r = registry();
        if let Some(i) = r.groups.iter().position(|g| *g == self.0) {
            r.groups.remove(i);
        }
    }
}

/// A started program, in a process group of its own that a signal kills.
pub struct Running {
    pub child: Child,
    _group: Group,
}

impl Running {
    /// [`Child::wait_with_output`], the group registered until it is done.
    pub fn wait_with_output(self) -> io::Result<Output> {
        let Running { child, _group } = self;
        child.wait_with_output()
    }
}

/// Starts `cmd` in a process group of its own, registered.
pub fn spawn(cmd: &mut Command) -> io::Result<Running> {
    cmd.process_group(0);
    let mut r = registry();
    let child = cmd.spawn()?;
    r.groups.push(child.id());
    drop(r);
    let id = child.id();
    Ok(Running {
        child,
        _group: Group(id),
    })
}

/// [`Command::output`], with the program registered while it runs.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn(cmd)?.wait_with_output()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_and_tracked_paths_come_and_go() {
        let s = Scratch::new("nixlive-test.").unwrap();
        let p = s.path().to_path_buf();
        assert!(registry().paths.contains(&p));
        std::fs::create_dir(p.join("ro")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        drop(s);
        assert!(!p.exists());
        assert!(!registry().paths.contains(&p));
        let out = output(Command::new("sh").args(["-c", "echo hi"])).unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }
}

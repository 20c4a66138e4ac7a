//! `nixlive-demo-init`: the stage-2 init of nixlive's built-in demo system.
//!
//! nixlive-init switches root into the demo system and executes this as
//! PID 1. It checks what stage 1 left behind and tells the host over the
//! serial console, in the "Guest report" format of docs/contracts.md:
//!
//! 1. make sure `/proc`, `/sys`, `/dev`, `/run` are mounted (stage 1 moved
//!    them here; they are mounted only if absent);
//! 2. record the kernel uptime at which stage 2 began;
//! 3. write `/etc/passwd` and `/etc/shadow` when absent, as NixOS's
//!    activation does for an installer image (root locked; the live user
//!    `nixos` with an empty password);
//! 4. run the sibling `bin/nixlive-postboot`, capturing output and exit code;
//! 5. print the report (mounts, postboot, files of interest, password
//!    schemes, stage-1 timeline) to `/dev/console`;
//! 6. sync, remount `/` read-only (a plain root on a disk stays clean) and
//!    power off.
//!
//! It never fails silently: any error (a panic included) prints
//! `NIXLIVE-ERROR <message>` and the machine still powers off.
//!
//! Non-goals: this is a test fixture, not a service manager; it starts
//! nothing else and never stays up.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nixlive_formats::error::chain;
use nixlive_formats::paths::{
    NIX_DB, NIX_DB_SCHEMA, NIXOS_MARKER, STAGE1_TIMELINE, STORE_DIR, SYSTEM_PROFILE,
};
use nixlive_formats::report::{self, FileInfo, Inputs, Postboot};

mod sys;

/// Paths whose type, mode and owner the report shows.
const FILES_OF_INTEREST: &[&str] = &[
    NIXOS_MARKER,
    "/etc",
    "/etc/shadow",
    STORE_DIR,
    STAGE1_TIMELINE,
    // What postboot makes: Nix's database, the system profile, SSH keys.
    NIX_DB,
    NIX_DB_SCHEMA,
    SYSTEM_PROFILE,
    "/nix/var/nix/profiles/system-1-link",
    "/root",
    "/root/.ssh",
    "/root/.ssh/authorized_keys",
];

const MOUNTINFO: &str = "/proc/self/mountinfo";
const SHADOW: &str = "/etc/shadow";

/// The users of a NixOS installer image, as its activation writes them.
const PASSWD: &str = "root:x:0:0:System administrator:/root:/bin/sh\n\
                      nixos:x:1000:100:NixOS:/home/nixos:/bin/sh\n";
const SHADOW_TEXT: &str = "root:!:1::::::\nnixos::1::::::\n";

/// Writes `/etc/passwd` (0644) and `/etc/shadow` (0600) where absent; a
/// system that has them keeps its own.
fn ensure_users() -> Result<(), String> {
    mkdir("/etc")?;
    for (path, text, mode) in [("/etc/passwd", PASSWD, 0o644), (SHADOW, SHADOW_TEXT, 0o600)] {
        if Path::new(path).exists() {
            continue;
        }
        fs::write(path, text)
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
            .map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        emit(&report::render_error(&format!(
            "demo init panicked: {info}"
        )));
        shutdown();
    }));
    match run() {
        Ok(text) => emit(&text),
        Err(e) => emit(&report::render_error(&e)),
    }
    shutdown();
}

fn run() -> Result<String, String> {
    ensure_api_filesystems()?;
    let uptime = read("/proc/uptime")?;
    let uptime_ms = report::parse_uptime_ms(&uptime)
        .ok_or_else(|| format!("/proc/uptime: cannot parse {uptime:?}"))?;
    ensure_users()?;
    let postboot = run_postboot()?;
    let passwords = match fs::read_to_string(SHADOW) {
        Ok(t) => report::password_schemes(&t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("reading {SHADOW}: {e}")),
    };
    let mounts = mountinfo()?;
    let files = FILES_OF_INTEREST
        .iter()
        .map(|p| stat(p))
        .collect::<Result<Vec<_>, _>>()?;
    let stage1 = match fs::read_to_string(STAGE1_TIMELINE) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("reading {STAGE1_TIMELINE}: {e}")),
    };
    // Keep kernel messages from cutting report lines apart on the console;
    // emergencies (panics, "Power down") still get through.
    // not fatal: the report is still readable without it.
    if let Err(e) = fs::write("/proc/sys/kernel/printk", "1") {
        eprintln!("demo-init: lowering console loglevel: {e}, ignoring");
    }
    Ok(report::render(&Inputs {
        arch: sys::machine(),
        uptime_ms,
        mounts,
        postboot,
        files,
        passwords,
        stage1,
    }))
}

fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
}

fn mountinfo() -> Result<Vec<report::Mount>, String> {
    report::parse_mountinfo(&read(MOUNTINFO)?).map_err(|e| format!("{MOUNTINFO} {e}"))
}

/// Mounts `/proc`, `/sys`, `/dev`, `/run` where stage 1 did not leave them.
fn ensure_api_filesystems() -> Result<(), String> {
    if !Path::new(MOUNTINFO).exists() {
        mkdir("/proc")?;
        sys::mount("proc", "/proc", "proc", true, "").map_err(|e| chain(&e))?;
    }
    let mounts = mountinfo()?;
    for (target, fstype, noexec, data) in [
        ("/sys", "sysfs", true, ""),
        ("/dev", "devtmpfs", false, "mode=0755"),
        ("/run", "tmpfs", false, "mode=0755"),
    ] {
        if !mounts.iter().any(|m| m.point == target) {
            mkdir(target)?;
            sys::mount(fstype, target, fstype, noexec, data).map_err(|e| chain(&e))?;
        }
    }
    Ok(())
}

fn mkdir(path: &str) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("creating {path}: {e}"))
}

/// `<dir of this program>/bin/nixlive-postboot`.
fn postboot_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(PathBuf::from))
        .ok_or("cannot find my own path (no /proc/self/exe, no argv[0])")?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    Ok(dir.join("bin/nixlive-postboot"))
}

fn run_postboot() -> Result<Postboot, String> {
    let path = postboot_path()?;
    let out = Command::new(&path)
        .env_clear()
        .output()
        .map_err(|e| format!("running {}: {e}", path.display()))?;
    let exit = match (out.status.code(), out.status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    };
    Ok(Postboot {
        exit,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn stat(path: &str) -> Result<(String, Option<FileInfo>), String> {
    let info = match fs::symlink_metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            let kind = if t.is_file() {
                "regular"
            } else if t.is_dir() {
                "directory"
            } else if t.is_symlink() {
                "symlink"
            } else if t.is_char_device() {
                "char"
            } else if t.is_block_device() {
                "block"
            } else if t.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            Some(FileInfo {
                kind: kind.to_string(),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("inspecting {path}: {e}")),
    };
    Ok((path.to_string(), info))
}

/// Writes to `/dev/console`, and to stdout too unless stdout is a terminal
/// (then it is the console already and the report would appear twice).
fn emit(text: &str) {
    let console = fs::OpenOptions::new().write(true).open("/dev/console");
    let on_console = match console {
        Ok(mut c) => c
            .write_all(text.as_bytes())
            .and_then(|()| c.flush())
            .is_ok(),
        Err(_) => false,
    };
    let stdout = io::stdout();
    if !on_console || !stdout.is_terminal() {
        let mut out = stdout.lock();
        // not fatal: there is nowhere else to say it.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
}

/// Syncs and powers off. If the kernel refuses (not PID 1, no privilege),
/// says so; PID 1 then waits forever (exiting would panic the kernel),
/// anything else exits non-zero.
fn shutdown() -> ! {
    sys::sync();
    if std::process::id() == 1 {
        // not fatal: a tmpfs root has nothing to keep; a disk's journal is
        // then replayed at the next mount.
        let _ = sys::remount_root_read_only();
    }
    let err = sys::power_off();
    emit(&report::render_error(&chain(&err)));
    if std::process::id() == 1 {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    std::process::exit(1);
}

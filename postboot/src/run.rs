//! The run: each step in order, each saying what it did (or that it had
//! nothing to do) on one line. A failed step is reported and the others
//! still run; the exit code says how it went (see [`Summary::exit_code`]).
//!
//! Order: the registration first, so nothing can collect the store's paths
//! as garbage once Nix runs; then `/etc/NIXOS`, the system profile, the SSH
//! keys, root's password and the live user's.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use nixlive_formats::Cmdline;
use nixlive_formats::registration::check_store_path;

use crate::config::Config;
use crate::load::{self, Loader, Outcome};
use crate::users::{NewPassword, PasswordOutcome};
use crate::{nixos, paths, profile, ssh, users};

/// What to do, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Every path below is inside this directory.
    pub root: PathBuf,
    pub loader: Loader,
    /// The registration file (inside the root). Default: the system
    /// tarball's [`paths::TOP_REGISTRATION`] when it exists, else the
    /// store image's [`paths::REGISTRATION`].
    pub registration: Option<String>,
    /// The system's store path, or a link to it (inside the root). Default:
    /// `/run/current-system`, else the directory of `init=` on the kernel
    /// command line.
    pub system: Option<String>,
    /// The `nix-store` program for `--loader nix-store` (a host path).
    pub nix_store: Option<PathBuf>,
    /// Registration time for new paths (seconds since the epoch); default now.
    pub now: Option<i64>,
    /// Grow the root partition and its filesystem to the end of the disk
    /// (also asked for by `nixlive.grow_root` on the kernel command line).
    pub grow_root: bool,
}

impl Options {
    pub fn new(root: impl Into<PathBuf>) -> Options {
        Options {
            root: root.into(),
            loader: Loader::Auto,
            registration: None,
            system: None,
            nix_store: None,
            now: None,
            grow_root: false,
        }
    }
}

/// How the run went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Steps that changed something.
    pub changed: usize,
    pub failed: usize,
    /// Input that was rejected (malformed keys) while the step went on.
    pub rejected: usize,
}

impl Summary {
    /// 0: done (or nothing to do); 1: a step failed; 3: done, but some
    /// input was rejected (a malformed SSH key). 2 is a usage error.
    pub fn exit_code(&self) -> u8 {
        if self.failed > 0 {
            1
        } else if self.rejected > 0 {
            3
        } else {
            0
        }
    }
}

struct Log<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    summary: Summary,
}

impl Log<'_> {
    fn say(&mut self, step: &str, msg: std::fmt::Arguments<'_>) {
        // not fatal: a closed stdout must not fail the work itself.
        let _ = writeln!(self.out, "postboot: {step}: {msg}");
    }

    fn changed(&mut self, step: &str, msg: std::fmt::Arguments<'_>) {
        self.summary.changed += 1;
        self.say(step, msg);
    }

    fn reject(&mut self, step: &str, msg: &str) {
        self.summary.rejected += 1;
        let _ = writeln!(self.err, "postboot: {step}: rejected {msg}");
    }

    fn fail(&mut self, step: &str, e: &dyn Error) {
        self.summary.failed += 1;
        let _ = writeln!(self.err, "postboot: {step}: error: {}", chain(e));
    }
}

/// An error and its sources, `: `-separated, each once.
pub use nixlive_formats::error::chain;

/// Runs every step; progress on `out`, errors and rejections on `err`.
pub fn run(opts: &Options, out: &mut dyn Write, err: &mut dyn Write) -> Summary {
    let mut log = Log {
        out,
        err,
        summary: Summary::default(),
    };
    let root = opts.root.as_path();
    let cmdline = read_cmdline(root, &mut log);

    registration(opts, &mut log);

    match nixos::ensure(root) {
        Ok(true) => log.changed("marker", format_args!("created {}", paths::NIXOS_MARKER)),
        Ok(false) => log.say(
            "marker",
            format_args!("{} already present, nothing to do", paths::NIXOS_MARKER),
        ),
        Err(e) => log.fail("marker", &e),
    }

    system_profile(opts, &cmdline, &mut log);

    let config = read_config(root, &mut log);
    ssh_keys(root, &cmdline, &config, &mut log);
    let live = live_password_wanted(&cmdline, &config, &mut log);
    if live.is_some() && config.live_user() == "root" {
        // One source for root's password per boot, or runs would flip it.
        log.say(
            "password",
            format_args!("root's password comes from the kernel command line this boot"),
        );
    } else {
        root_password(root, &config, &mut log);
    }
    live_password(root, config.live_user(), live, &mut log);
    if opts.grow_root || cmdline.grow_root {
        grow_root(root, &mut log);
    }

    let s = log.summary;
    if s.failed > 0 {
        let _ = writeln!(
            log.err,
            "postboot: {} step(s) failed, {} changed something",
            s.failed, s.changed
        );
    } else if s.changed == 0 {
        let _ = writeln!(log.out, "postboot: nothing to do");
    } else {
        let _ = writeln!(
            log.out,
            "postboot: done, {} step(s) changed something",
            s.changed
        );
    }
    s
}

fn read_cmdline(root: &Path, log: &mut Log<'_>) -> Cmdline {
    match std::fs::read_to_string(paths::under(root, paths::CMDLINE)) {
        Ok(t) => Cmdline::parse(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Cmdline::default(),
        Err(e) => {
            log.fail("cmdline", &PathError::new("reading", paths::CMDLINE, e));
            Cmdline::default()
        }
    }
}

/// The registration to load: `--registration`, else the first of the
/// tarball's and the store image's that exists.
fn registration_file(opts: &Options) -> String {
    if let Some(r) = &opts.registration {
        return r.clone();
    }
    let top = paths::under(&opts.root, paths::TOP_REGISTRATION);
    if std::fs::symlink_metadata(top).is_ok() {
        paths::TOP_REGISTRATION.to_string()
    } else {
        paths::REGISTRATION.to_string()
    }
}

/// After a successful load, the system tarball's registration goes (as
/// NixOS's `nix-store --load-db < /nix-path-registration && rm
/// /nix-path-registration`), so that the next boot has nothing to do. The
/// store image's stays: it is part of the read-only image.
fn remove_loaded(opts: &Options, file: &str, log: &mut Log<'_>) {
    if file != paths::TOP_REGISTRATION {
        return;
    }
    match std::fs::remove_file(paths::under(&opts.root, file)) {
        Ok(()) => log.changed(
            "registration",
            format_args!("removed {file}: the database holds it now"),
        ),
        Err(e) => log.fail("registration", &PathError::new("removing", file, e)),
    }
}

fn registration(opts: &Options, log: &mut Log<'_>) {
    let step = "registration";
    let file = registration_file(opts);
    let file = file.as_str();
    let now = opts.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let nix_store = opts
        .nix_store
        .clone()
        .unwrap_or_else(|| load::find_nix_store(&opts.root));
    match load::load(&opts.root, file, opts.loader, &nix_store, now) {
        Ok(Outcome::NoFile) if opts.registration.is_none() => log.say(
            step,
            format_args!(
                "no {} nor {}, skipping",
                paths::TOP_REGISTRATION,
                paths::REGISTRATION
            ),
        ),
        Ok(Outcome::NoFile) => log.say(step, format_args!("no {file}, skipping")),
        Ok(Outcome::NoLoader { paths }) => log.say(
            step,
            format_args!(
                "{paths} paths in {}, but no loader here (no native loader in this build, no {}): the system has no Nix to use them, skipping",
                file,
                nix_store.display()
            ),
        ),
        Ok(Outcome::Loaded {
            paths, changed: 0, ..
        }) => {
            log.say(
                step,
                format_args!("all {paths} paths of {file} already valid, nothing to do"),
            );
            remove_loaded(opts, file, log);
        }
        Ok(Outcome::Loaded {
            loader,
            paths,
            changed,
        }) => {
            log.changed(
                step,
                format_args!(
                    "loaded {paths} paths ({changed} new or changed) from {file} with the {} loader",
                    loader.name()
                ),
            );
            remove_loaded(opts, file, log);
        }
        Err(e) => {
            log.fail(step, &e);
            if file == paths::TOP_REGISTRATION {
                let _ = writeln!(
                    log.err,
                    "postboot: registration: {file} is kept, to be loaded at the next boot; the boot goes on without it"
                );
            }
        }
    }
}

/// The system's store path: `--system`, `/run/current-system`, or the
/// directory of the kernel's `init=`.
fn find_system(opts: &Options, cmdline: &Cmdline) -> Option<(String, &'static str)> {
    let resolve = |p: &str| -> Option<String> {
        // Follow links inside the root until a store path.
        let mut cur = p.to_string();
        for _ in 0..8 {
            if let Some(s) = store_path_prefix(&cur) {
                return Some(s);
            }
            let t = std::fs::read_link(paths::under(&opts.root, &cur)).ok()?;
            let t = t.to_str()?;
            cur = if t.starts_with('/') {
                t.to_string()
            } else {
                format!("{}/{t}", cur.rsplit_once('/')?.0)
            };
        }
        None
    };
    if let Some(s) = &opts.system {
        return resolve(s).map(|s| (s, "--system"));
    }
    if let Some(s) = resolve(paths::CURRENT_SYSTEM) {
        return Some((s, paths::CURRENT_SYSTEM));
    }
    let init = cmdline.init.as_deref()?;
    let dir = init.rsplit_once('/')?.0;
    resolve(dir).map(|s| (s, "init= on the kernel command line"))
}

/// `/nix/store/<hash>-<name>` when `p` is exactly a store path.
fn store_path_prefix(p: &str) -> Option<String> {
    check_store_path(p).ok().map(|()| p.to_string())
}

fn system_profile(opts: &Options, cmdline: &Cmdline, log: &mut Log<'_>) {
    let step = "profile";
    let Some((system, from)) = find_system(opts, cmdline) else {
        match &opts.system {
            Some(s) => log.fail(
                step,
                &PathError::new(
                    "resolving",
                    s,
                    std::io::Error::other("does not lead to a store path"),
                ),
            ),
            None => log.say(
                step,
                format_args!(
                    "no system found (no --system, no {}, no init= on the kernel command line), skipping",
                    paths::CURRENT_SYSTEM
                ),
            ),
        }
        return;
    };
    if let Err(e) = std::fs::symlink_metadata(paths::under(&opts.root, &system)) {
        log.fail(step, &PathError::new("finding the system", &system, e));
        return;
    }
    match profile::set(&opts.root, paths::SYSTEM_PROFILE, &system) {
        Ok(o) if !o.changed() => log.say(
            step,
            format_args!("{} already points to {system}, nothing to do", o.link),
        ),
        Ok(o) => log.changed(
            step,
            format_args!(
                "{} -> {} -> {system} (generation {}{}, system from {from})",
                paths::SYSTEM_PROFILE,
                o.link,
                o.generation,
                if o.created_generation { ", new" } else { "" }
            ),
        ),
        Err(e) => log.fail(step, &e),
    }
}

fn read_config(root: &Path, log: &mut Log<'_>) -> Config {
    let step = "config";
    match std::fs::read_to_string(paths::under(root, paths::CONFIG)) {
        Ok(t) => match Config::parse_entries(&t) {
            Ok((c, bad)) => {
                // A bad entry costs only itself: the others still apply.
                for e in bad {
                    log.fail(
                        step,
                        &PathError::new("skipping an entry of", paths::CONFIG, e),
                    );
                }
                c
            }
            Err(e) => {
                log.fail(step, &PathError::new("parsing", paths::CONFIG, e));
                Config::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
        Err(e) => {
            log.fail(step, &PathError::new("reading", paths::CONFIG, e));
            Config::default()
        }
    }
}

fn ssh_keys(root: &Path, cmdline: &Cmdline, config: &Config, log: &mut Log<'_>) {
    let step = "ssh";
    let (collected, unreadable) = ssh::collect(root, &cmdline.ssh_keys);
    for e in &unreadable {
        log.fail(step, e);
    }
    for r in &collected.rejected {
        log.reject(step, r);
    }
    if collected.keys.is_empty() {
        log.say(step, format_args!("no keys given, nothing to do"));
        return;
    }
    let users = match users::lookup(root, &config.ssh_users) {
        Ok((users, unknown)) => {
            for e in &unknown {
                log.fail(step, e);
            }
            users
        }
        Err(e) => {
            log.fail(step, &e);
            return;
        }
    };
    for user in &users {
        match ssh::install(root, user, &collected.keys) {
            Ok(i) if i.added > 0 || i.fixed => log.changed(
                step,
                format_args!(
                    "{}: added {} key(s){} ({}; from {})",
                    i.path,
                    i.added,
                    if i.fixed { ", corrected modes" } else { "" },
                    user.name,
                    collected.sources.join(", ")
                ),
            ),
            Ok(i) => log.say(
                step,
                format_args!(
                    "{}: all {} key(s) present, nothing to do ({})",
                    i.path,
                    collected.keys.len(),
                    user.name
                ),
            ),
            Err(e) => log.fail(step, &e),
        }
    }
}

fn root_password(root: &Path, config: &Config, log: &mut Log<'_>) {
    let step = "password";
    match users::set_root_password(root, config.root_password_hash.as_deref()) {
        Ok(PasswordOutcome::Set) => log.changed(
            step,
            format_args!("root's password hash set from {}", paths::CONFIG),
        ),
        Ok(PasswordOutcome::Locked) => log.changed(
            step,
            format_args!("root had an empty password; locked it (no hash configured)"),
        ),
        Ok(o @ (PasswordOutcome::AlreadyDone | PasswordOutcome::NoShadow)) => {
            let what = match (config.root_password_hash.is_some(), o) {
                (true, _) => "root's password hash already set",
                (false, PasswordOutcome::NoShadow) => "no /etc/shadow, root has no usable password",
                (false, _) => "root has no usable password",
            };
            log.say(step, format_args!("{what}, nothing to do"));
        }
        Err(e) => log.fail(step, &e),
    }
}

/// Which of `live.nixos.passwordHash=` and `live.nixos.passwd=` applies:
/// a valid hash wins over a clear password (and that is said); a hash that
/// is not crypt(3) is rejected, never written.
fn live_password_wanted<'a>(
    cmdline: &'a Cmdline,
    config: &Config,
    log: &mut Log<'_>,
) -> Option<(NewPassword<'a>, &'static str)> {
    let step = "live-password";
    let hash = match cmdline.live_password_hash.as_deref() {
        Some(h) => match crate::config::check_password_hash(h) {
            Ok(()) => Some(h),
            Err(_) => {
                log.reject(
                    step,
                    &format!(
                        "live.nixos.passwordHash= for {}: not a crypt(3) hash (want $6$salt$... or $y$...)",
                        config.live_user()
                    ),
                );
                None
            }
        },
        None => None,
    };
    match (hash, &cmdline.live_password) {
        (Some(h), clear) => {
            if clear.is_some() {
                log.say(
                    step,
                    format_args!(
                        "both live.nixos.passwd= and live.nixos.passwordHash= given; using the hash"
                    ),
                );
            }
            Some((NewPassword::Hash(h), "live.nixos.passwordHash"))
        }
        (None, Some(p)) => Some((NewPassword::Clear(p), "live.nixos.passwd")),
        (None, None) => None,
    }
}

/// The live user's password from the kernel command line (NixOS's
/// installer images: `live.nixos.passwd=`, `live.nixos.passwordHash=`).
/// Logs name the user, the parameter and the scheme; never the password.
fn live_password(
    root: &Path,
    user: &str,
    wanted: Option<(NewPassword<'_>, &'static str)>,
    log: &mut Log<'_>,
) {
    let step = "live-password";
    let Some((password, from)) = wanted else {
        log.say(
            step,
            format_args!("no live.nixos.passwd= or live.nixos.passwordHash=, nothing to do"),
        );
        return;
    };
    let scheme = match password {
        NewPassword::Hash(h) => nixlive_formats::report::password_scheme(h),
        NewPassword::Clear(_) => "sha512-crypt",
    };
    match users::set_password(root, user, password) {
        Ok(PasswordOutcome::AlreadyDone) => log.say(
            step,
            format_args!("{user}'s password already is the one from {from}, nothing to do"),
        ),
        Ok(_) => log.changed(
            step,
            format_args!("{user}'s password set from {from} ({scheme}) in /etc/shadow"),
        ),
        Err(e) => log.fail(step, &e),
    }
}

fn grow_root(root: &Path, log: &mut Log<'_>) {
    let step = "grow";
    let mib = |b: u64| b >> 20;
    match crate::grow::grow_root(root) {
        Ok(crate::grow::Outcome::Nothing { device }) => log.say(
            step,
            format_args!("{device} and its filesystem fill the disk already, nothing to do"),
        ),
        Ok(crate::grow::Outcome::Grown {
            device,
            table,
            from,
            to,
            fs_bytes,
        }) if from == to && table != "none" => log.changed(
            step,
            format_args!(
                "{device} is {} MiB: finished its {table} table (an earlier growth was cut short), its ext4 to {} MiB",
                mib(to),
                mib(fs_bytes)
            ),
        ),
        Ok(crate::grow::Outcome::Grown {
            device,
            table,
            from,
            to,
            fs_bytes,
        }) => log.changed(
            step,
            format_args!(
                "{device} grown from {} to {} MiB ({table}), its ext4 to {} MiB",
                mib(from),
                mib(to),
                mib(fs_bytes)
            ),
        ),
        Err(e) => log.fail(step, &e),
    }
}

/// An I/O or parse error about a path inside the root.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}")]
pub struct PathError {
    pub action: &'static str,
    pub path: String,
    #[source]
    pub source: Box<dyn Error + Send + Sync>,
}

impl PathError {
    fn new(
        action: &'static str,
        path: &str,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> PathError {
        PathError {
            action,
            path: path.to_string(),
            source: source.into(),
        }
    }
}

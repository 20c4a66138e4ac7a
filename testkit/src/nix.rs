//! Debian's Nix (`nix-bin`), run hermetically: every setting comes from a
//! `nix.conf` written here, and everything Nix keeps outside the stores it
//! is given (home, caches, state, logs, temporary build directories) lives
//! in a directory of the test's own.
//!
//! Why: run as root with the machine's defaults, Nix wants a `nixbld` group
//! (`build-users-group`) that Debian's `nix-bin` does not create, waits
//! seconds on retries for `cache.nixos.org` (there is no network), and
//! reads and writes `/etc/nix`, `/nix/var/nix` and `~/.cache/nix`. Here it
//! does none of that, whatever the machine has.
//!
//! `NIX_STORE_DIR` stays unset on purpose: store paths must be
//! `/nix/store/...` as on NixOS; tests give Nix a chroot store
//! (`--store DIR`, whose database and state are then under `DIR/nix/var/nix`).
//! Nix builds into a chroot store in its sandbox whatever `sandbox` says (the
//! builder must see `DIR/nix/store` as `/nix/store`); without build users
//! the builder runs in a user namespace as uid 1000.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where [`program`] looks for Nix: Debian's `nix-bin` installs in
/// `/usr/bin`.
const BIN_DIRS: [&str; 3] = ["/usr/bin", "/usr/local/bin", "/bin"];

/// A Debian Nix program (`nix`, `nix-store`, `nix-build`, `nix-env`, ...).
/// Panics, naming it, when it is not installed: the tests that need Nix
/// fail without it, they never skip.
pub fn program(name: &str) -> PathBuf {
    for dir in BIN_DIRS {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is not installed (looked in {}): these tests need Debian's nix-bin \
         (`make deps` / scripts/install-deps.sh installs it)",
        BIN_DIRS.join(", ")
    )
}

/// A hermetic Nix environment rooted in one directory.
#[derive(Debug, Clone)]
pub struct Nix {
    dir: PathBuf,
}

impl Nix {
    /// Sets up the environment under `<dir>/nix-hermetic` (created if
    /// missing; idempotent). `dir` should be the test's temporary directory.
    pub fn new(dir: &Path) -> Nix {
        let nix = Nix {
            dir: dir.join("nix-hermetic"),
        };
        for sub in [
            "conf",
            "home",
            "tmp",
            "state",
            "log",
            "xdg-config",
            "xdg-config-dirs",
            "xdg-cache",
            "xdg-data",
            "xdg-state",
        ] {
            let p = nix.dir.join(sub);
            fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        }
        let conf = nix.conf_dir().join("nix.conf");
        fs::write(&conf, nix.nix_conf())
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        nix
    }

    /// The directory everything of this environment is under.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `NIX_CONF_DIR`: holds the only `nix.conf` Nix reads.
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("conf")
    }

    /// The whole configuration (see the comments in it).
    fn nix_conf(&self) -> String {
        format!(
            "# Written by nixlive-testkit: the whole configuration of Nix in the tests.\n\
             # Builds run as the calling user: no nixbld group is needed, or looked up.\n\
             build-users-group =\n\
             # No network: never ask a binary cache or a remote builder.\n\
             substituters =\n\
             trusted-substituters =\n\
             builders =\n\
             experimental-features = nix-command\n\
             # Throwaway stores: no need to wait for the disk.\n\
             fsync-metadata = false\n\
             # No channels or profiles of the machine.\n\
             nix-path =\n\
             # A call that forgets --store opens this one, never the machine's /nix.\n\
             store = {}\n",
            self.dir.join("default-store").display()
        )
    }

    /// The environment Nix runs with, complete: give it, after
    /// `env_clear`, to Nix and to programs that run Nix (see
    /// [`Nix::configure`]).
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        let p = |sub: &str| self.dir.join(sub).into_os_string();
        vec![
            ("PATH", "/usr/bin:/bin".into()),
            ("HOME", p("home")),
            ("TMPDIR", p("tmp")),
            ("NIX_CONF_DIR", p("conf")),
            // Empty: no user configuration files at all (not even
            // $XDG_CONFIG_HOME/nix/nix.conf).
            ("NIX_USER_CONF_FILES", "".into()),
            ("NIX_STATE_DIR", p("state")),
            ("NIX_LOG_DIR", p("log")),
            ("XDG_CONFIG_HOME", p("xdg-config")),
            ("XDG_CONFIG_DIRS", p("xdg-config-dirs")),
            ("XDG_CACHE_HOME", p("xdg-cache")),
            ("XDG_DATA_HOME", p("xdg-data")),
            ("XDG_STATE_HOME", p("xdg-state")),
        ]
    }

    /// Clears `cmd`'s environment and gives it [`Nix::env`]: for Nix itself
    /// and for a program that runs Nix (postboot's `nix-store` loader).
    pub fn configure<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env_clear().envs(self.env())
    }

    /// `program` ([`program`]) in this environment, standard input empty.
    pub fn command(&self, program_name: &str) -> Command {
        let mut cmd = Command::new(program(program_name));
        self.configure(&mut cmd).stdin(Stdio::null());
        cmd
    }

    /// `program --store STORE` in this environment: Nix against the chroot
    /// store `STORE` (paths `/nix/store/...`, files under `STORE/nix/store`).
    pub fn on_store(&self, program_name: &str, store: &Path) -> Command {
        let mut cmd = self.command(program_name);
        cmd.arg("--store").arg(store);
        cmd
    }
}

//! SSH authorized keys: collected from the kernel command line, the file
//! the builder put in the initrd (which init leaves in `/run/nixlive`) and
//! the file on the medium; each key checked; the good ones merged into
//! `~/.ssh/authorized_keys` of root and the configured users (directory
//! 0700, file 0600, owned by the user; every path component opened without
//! following symbolic links; the file replaced atomically).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::keys::{self, AuthorizedKey};
use crate::paths;
use crate::sys;
use crate::users::User;

#[derive(Debug, Error)]
pub enum SshError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} (for {user})")]
    Install {
        what: &'static str,
        path: String,
        user: String,
        #[source]
        source: std::io::Error,
    },
}

/// The keys found, in source order without duplicates, and one message
/// per rejected key naming its source and line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    pub keys: Vec<AuthorizedKey>,
    pub rejected: Vec<String>,
    /// Where keys came from, as `source: n key(s)`.
    pub sources: Vec<String>,
}

impl Collected {
    fn add(&mut self, k: AuthorizedKey) {
        if !self.keys.iter().any(|have| have.identity() == k.identity()) {
            self.keys.push(k);
        }
    }
}

/// The largest key file read (the initrd's, the medium's, a user's
/// `authorized_keys`): 1 MiB, some 2,000 RSA keys.
pub const MAX_KEY_FILE: u64 = 1 << 20;

/// Collects keys from `cmdline_keys` (the `nixlive.ssh_key=` values) and the
/// key files under `root`. A key file that cannot be read (a symbolic link,
/// not a regular file, over [`MAX_KEY_FILE`]) is one error; the other
/// sources' keys are still collected.
pub fn collect(root: &Path, cmdline_keys: &[String]) -> (Collected, Vec<SshError>) {
    let mut errors = Vec::new();
    let mut c = Collected::default();
    let mut n = 0;
    for (i, v) in cmdline_keys.iter().enumerate() {
        match keys::parse_line(v) {
            Ok(Some(k)) => {
                n += 1;
                c.add(k);
            }
            Ok(None) => {}
            Err(e) => c.rejected.push(format!(
                "kernel command line, nixlive.ssh_key #{}: {e}",
                i + 1
            )),
        }
    }
    if n > 0 {
        c.sources.push(format!("kernel command line: {n}"));
    }
    for file in [paths::INITRD_KEYS, paths::MEDIUM_KEYS] {
        let path = paths::under(root, file);
        let text = match sys::read_path_nofollow(&path, MAX_KEY_FILE) {
            Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(None) => continue,
            Err(source) => {
                errors.push(SshError::Read {
                    path: PathBuf::from(file),
                    source,
                });
                continue;
            }
        };
        let (good, bad) = keys::parse_file(&text);
        for (line, e) in bad {
            c.rejected.push(format!("{file} line {line}: {e}"));
        }
        if !good.is_empty() {
            c.sources.push(format!("{file}: {}", good.len()));
        }
        for (_, k) in good {
            c.add(k);
        }
    }
    (c, errors)
}

/// What [`install`] did for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// `~/.ssh/authorized_keys` inside the root.
    pub path: String,
    pub added: usize,
    /// Modes or owners that had to be corrected.
    pub fixed: bool,
}

/// Merges `keys` into the user's `authorized_keys` (lines already there
/// stay; a key already there is not added again).
pub fn install(root: &Path, user: &User, keys: &[AuthorizedKey]) -> Result<Installed, SshError> {
    let owner = user.owner();
    let home = user.home.trim_end_matches('/');
    let file = format!("{home}/.ssh/authorized_keys");
    let fail = |what, path: &str| {
        let user = user.name.clone();
        let path = path.to_string();
        move |source| SshError::Install {
            what,
            path,
            user,
            source,
        }
    };
    let mut fixed = false;
    let mut dir: OwnedFd = sys::open_dir(root).map_err(fail("opening", "/"))?;
    let comps: Vec<&str> = home.split('/').filter(|c| !c.is_empty()).collect();
    let mut walked = String::new();
    for (i, comp) in comps.iter().enumerate() {
        walked.push('/');
        walked.push_str(comp);
        let last = i + 1 == comps.len();
        let created = sys::mkdir_at(&dir, comp, if last { 0o700 } else { 0o755 })
            .map_err(fail("creating", &walked))?;
        let next = sys::open_subdir_nofollow(&dir, comp).map_err(fail("opening", &walked))?;
        if created && last {
            sys::set_mode_owner(&next, 0o700, owner).map_err(fail("setting owner of", &walked))?;
        }
        dir = next;
    }
    let ssh_dir = format!("{home}/.ssh");
    sys::mkdir_at(&dir, ".ssh", 0o700).map_err(fail("creating", &ssh_dir))?;
    let ssh = sys::open_subdir_nofollow(&dir, ".ssh").map_err(fail("opening", &ssh_dir))?;
    fixed |= sys::set_mode_owner(&ssh, 0o700, owner).map_err(fail("setting mode of", &ssh_dir))?;

    let existing = sys::read_nofollow(&ssh, "authorized_keys", MAX_KEY_FILE)
        .map_err(fail("reading", &file))?;
    let (mut text, present) = match &existing {
        Some((data, _)) => {
            let text = String::from_utf8_lossy(data).into_owned();
            let (good, _) = keys::parse_file(&text);
            (text, good.into_iter().map(|(_, k)| k).collect::<Vec<_>>())
        }
        None => (String::new(), Vec::new()),
    };
    let missing: Vec<&AuthorizedKey> = keys
        .iter()
        .filter(|k| !present.iter().any(|p| p.identity() == k.identity()))
        .collect();
    if missing.is_empty() {
        if let Some((_, fd)) = &existing {
            fixed |=
                sys::set_mode_owner(fd, 0o600, owner).map_err(fail("setting mode of", &file))?;
        }
        return Ok(Installed {
            path: file,
            added: 0,
            fixed,
        });
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for k in &missing {
        text.push_str(&k.line());
        text.push('\n');
    }
    sys::replace_file(&ssh, "authorized_keys", text.as_bytes(), 0o600, owner)
        .map_err(fail("writing", &file))?;
    Ok(Installed {
        path: file,
        added: missing.len(),
        fixed,
    })
}

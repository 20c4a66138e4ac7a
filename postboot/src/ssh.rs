//! SSH authorized keys: collected from the kernel command line and from
//! what init handed over in `/run/nixlive`: the file the builder put in
//! the initrd, and the medium's keys that init accepted (checked against
//! a signed manifest, or named as coming from a medium that was not
//! authenticated: see init's `medium_keys`). The medium itself is not
//! read here: init decides what of it a boot may use. Each key checked;
//! the good ones merged into `~/.ssh/authorized_keys` of root and the
//! configured users (directory 0700, file 0600, owned by the user; every
//! path component opened without following symbolic links; the file
//! replaced atomically, its other lines kept byte for byte).

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
            // Read, never written back: lossy is only for parsing.
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
            c.sources
                .push(format!("{file}: {} ({})", good.len(), origin(file, &text)));
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
    // The file is kept byte for byte (lines that are not UTF-8 too): the
    // lossy text only finds the keys already there.
    let (mut text, present) = match &existing {
        Some((data, _)) => {
            let (good, _) = keys::parse_file(&String::from_utf8_lossy(data));
            (
                data.clone(),
                good.into_iter().map(|(_, k)| k).collect::<Vec<_>>(),
            )
        }
        None => (Vec::new(), Vec::new()),
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
    text.extend_from_slice(&append_keys(&text, &missing));
    sys::replace_file(&ssh, "authorized_keys", &text, 0o600, owner)
        .map_err(fail("writing", &file))?;
    Ok(Installed {
        path: file,
        added: missing.len(),
        fixed,
    })
}

/// What goes after `existing` (kept as it is) to add `missing`: a newline
/// if its last line lacks one, then one line per key.
pub fn append_keys(existing: &[u8], missing: &[&AuthorizedKey]) -> Vec<u8> {
    let mut out = Vec::new();
    if !existing.is_empty() && !existing.ends_with(b"\n") {
        out.push(b'\n');
    }
    for k in missing {
        out.extend_from_slice(k.line().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Where the keys of a handed-over `file` came from, for the log: the
/// initrd's, or what init wrote in the first line of the medium's.
fn origin(file: &str, text: &str) -> String {
    if file == paths::INITRD_KEYS {
        return "packed in the initrd".into();
    }
    match text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(paths::RUN_MEDIUM_KEYS_ORIGIN))
    {
        Some(o) => format!("from {o}"),
        None => "from the medium, by init".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_appended_after_the_file_as_it_is() {
        let k = keys::parse_line(crate::keys::tests::ED25519)
            .unwrap()
            .unwrap();
        // A comment and an option in Latin-1, and no newline at the end.
        let existing: &[u8] = b"# J\xfcrgen's\nfrom=\"caf\xe9\" ssh-ed25519 AAAA x";
        let add = append_keys(existing, &[&k]);
        assert_eq!(
            add,
            format!("\n{}\n", crate::keys::tests::ED25519).into_bytes()
        );
        assert_eq!(
            append_keys(b"", &[&k]),
            format!("{}\n", crate::keys::tests::ED25519).into_bytes()
        );
        assert_eq!(append_keys(b"a\n", &[]), b"");
    }

    #[test]
    fn origins() {
        assert_eq!(origin(paths::INITRD_KEYS, ""), "packed in the initrd");
        assert_eq!(
            origin(
                paths::MEDIUM_KEYS,
                "# nixlive-init: /iso/nixlive/authorized_keys of the medium /dev/sr0, listed\nssh-ed25519 A\n"
            ),
            "from /iso/nixlive/authorized_keys of the medium /dev/sr0, listed"
        );
        assert_eq!(
            origin(paths::MEDIUM_KEYS, "ssh-ed25519 A\n"),
            "from the medium, by init"
        );
    }
}

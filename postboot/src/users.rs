//! Users from `/etc/passwd`, and passwords in `/etc/shadow` (root's, and
//! the live user's from `live.nixos.passwd=`/`live.nixos.passwordHash=`).

use std::path::{Path, PathBuf};

use thiserror::Error;

use nixlive_formats::Secret;

use crate::crypt;
use crate::sys::{self, Owner};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Absolute, inside the root.
    pub home: String,
}

impl User {
    /// Root as a live system without `/etc/passwd` has it.
    pub fn default_root() -> User {
        User {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
        }
    }

    pub fn owner(&self) -> Owner {
        Owner {
            uid: self.uid,
            gid: self.gid,
        }
    }
}

#[derive(Debug, Error)]
pub enum UserError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: malformed passwd entry")]
    Malformed { path: PathBuf, line: usize },
    #[error("user {name} is not in {path}")]
    Unknown { name: String, path: PathBuf },
    #[error("{path}: {user}'s entry")]
    Shadow {
        path: PathBuf,
        user: String,
        #[source]
        source: std::io::Error,
    },
}

/// Parses `name:x:uid:gid:gecos:home:shell` lines.
pub fn parse_passwd(text: &str) -> Result<Vec<User>, usize> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 7 {
            return Err(i + 1);
        }
        let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) else {
            return Err(i + 1);
        };
        if !f[5].starts_with('/') || f[5].split('/').any(|c| c == "..") {
            return Err(i + 1);
        }
        out.push(User {
            name: f[0].to_string(),
            uid,
            gid,
            home: f[5].to_string(),
        });
    }
    Ok(out)
}

/// The users found and, one error each, the names that were not: an
/// unknown user costs only its own keys.
pub type Lookup = (Vec<User>, Vec<UserError>);

/// Looks the users up in `<root>/etc/passwd`; root is always first, and is
/// [`User::default_root`] if there is no passwd file or no root in it.
pub fn lookup(root: &Path, names: &[String]) -> Result<Lookup, UserError> {
    let path = root.join("etc/passwd");
    // Read only: another user's Latin-1 comment must not stop the lookup.
    let users = match std::fs::read(&path) {
        Ok(t) => {
            parse_passwd(&String::from_utf8_lossy(&t)).map_err(|line| UserError::Malformed {
                path: path.clone(),
                line,
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(UserError::Read { path, source }),
    };
    let mut out = vec![
        users
            .iter()
            .find(|u| u.name == "root")
            .cloned()
            .unwrap_or_else(User::default_root),
    ];
    let mut unknown = Vec::new();
    for n in names {
        match users.iter().find(|u| &u.name == n) {
            Some(u) => out.push(u.clone()),
            None => unknown.push(UserError::Unknown {
                name: n.clone(),
                path: path.clone(),
            }),
        }
    }
    Ok((out, unknown))
}

/// The largest `/etc/shadow` read: 16 MiB (some 100,000 users).
pub const MAX_SHADOW: u64 = 16 << 20;

/// What [`set_root_password`] or [`set_password`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordOutcome {
    /// The user's password field is now the wanted hash.
    Set,
    /// The user had an empty password field, now `!`.
    Locked,
    /// The user's entry already was as wanted.
    AlreadyDone,
    /// There is no `/etc/shadow` and no hash to write one with.
    NoShadow,
}

/// Root's shadow line with the password field replaced, or `None` when
/// nothing changes: with `hash`, the field becomes it; without, an empty
/// field (no password at all) becomes `!` (locked). Bytes in, bytes out:
/// a shadow file need not be UTF-8 (a Latin-1 name or comment).
pub fn shadow_with_root(text: &[u8], hash: Option<&str>) -> Option<(Vec<u8>, PasswordOutcome)> {
    shadow_with(text, "root", hash)
}

/// [`shadow_with_root`] for any user: the first line of `user` changes
/// (every other line, and every other field of that line, stays byte for
/// byte); with a hash and no such line, one is added.
pub fn shadow_with(
    text: &[u8],
    user: &str,
    hash: Option<&str>,
) -> Option<(Vec<u8>, PasswordOutcome)> {
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut outcome = None;
    for line in text.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let mut f = body.splitn(3, |b| *b == b':');
        let (name, field, rest) = (f.next(), f.next(), f.next());
        if let (Some(name), Some(field)) = (name, field)
            && name == user.as_bytes()
            && outcome.is_none()
        {
            let new = match hash {
                Some(h) if field != h.as_bytes() => Some((h, PasswordOutcome::Set)),
                None if field.is_empty() => Some(("!", PasswordOutcome::Locked)),
                _ => None,
            };
            if let Some((v, o)) = new {
                out.extend_from_slice(name);
                out.push(b':');
                out.extend_from_slice(v.as_bytes());
                if let Some(rest) = rest {
                    out.push(b':');
                    out.extend_from_slice(rest);
                }
                out.extend_from_slice(&line[body.len()..]);
                outcome = Some(o);
                continue;
            }
            outcome = Some(PasswordOutcome::AlreadyDone);
        }
        out.extend_from_slice(line);
    }
    match (outcome, hash) {
        (Some(PasswordOutcome::AlreadyDone), _) => None,
        (Some(o), _) => Some((out, o)),
        (None, Some(h)) => {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(format!("{user}:{h}:1::::::\n").as_bytes());
            Some((out, PasswordOutcome::Set))
        }
        (None, None) => None,
    }
}

/// The password field of `user`'s first line, if any.
pub fn shadow_field<'a>(text: &'a [u8], user: &str) -> Option<&'a [u8]> {
    text.split(|b| *b == b'\n').find_map(|line| {
        let mut f = line.split(|b| *b == b':');
        (f.next() == Some(user.as_bytes()))
            .then(|| f.next())
            .flatten()
    })
}

/// Applies [`shadow_with_root`] to `<root>/etc/shadow` (keeping its mode and
/// owner; a new one is `0640 root:root`).
pub fn set_root_password(root: &Path, hash: Option<&str>) -> Result<PasswordOutcome, UserError> {
    update_shadow(root, "root", hash.is_some(), |text| {
        shadow_with_root(text, hash)
    })
}

/// The password to give a user.
#[derive(Debug, Clone, Copy)]
pub enum NewPassword<'a> {
    /// A crypt(3) hash, written as it is.
    Hash(&'a str),
    /// A password in clear, hashed with SHA-512 crypt and a fresh salt,
    /// unless the user's current hash already is of this password.
    Clear(&'a Secret),
}

/// Sets `user`'s password in `<root>/etc/shadow`, atomically, keeping the
/// file's mode and owner. The user must be in `<root>/etc/passwd`.
pub fn set_password(
    root: &Path,
    user: &str,
    password: NewPassword<'_>,
) -> Result<PasswordOutcome, UserError> {
    let (_, unknown) = lookup(root, &[user.to_string()])?;
    if let Some(e) = unknown.into_iter().next() {
        return Err(e);
    }
    let mut hash_err = None;
    let outcome = update_shadow(root, user, true, |text| match password {
        NewPassword::Hash(h) => shadow_with(text, user, Some(h)),
        NewPassword::Clear(p) => {
            let cur = shadow_field(text, user).and_then(|c| std::str::from_utf8(c).ok());
            if cur.is_some_and(|cur| crypt::verify(p, cur)) {
                return None;
            }
            match crypt::sha512_crypt(p) {
                Ok(h) => shadow_with(text, user, Some(&h)),
                Err(e) => {
                    hash_err = Some(e);
                    None
                }
            }
        }
    })?;
    match hash_err {
        Some(source) => Err(UserError::Shadow {
            path: root.join("etc/shadow"),
            user: user.to_string(),
            source,
        }),
        None => Ok(outcome),
    }
}

/// Reads `<root>/etc/shadow` (without following links), lets `change`
/// rewrite it, and replaces it atomically with the same mode and owner.
/// `create`: a missing file (or `/etc`) is made, `0640 root:root`.
fn update_shadow(
    root: &Path,
    user: &str,
    create: bool,
    change: impl FnOnce(&[u8]) -> Option<(Vec<u8>, PasswordOutcome)>,
) -> Result<PasswordOutcome, UserError> {
    let path = root.join("etc/shadow");
    let err = |source| UserError::Shadow {
        path: path.clone(),
        user: user.to_string(),
        source,
    };
    let etc = match sys::open_dir(&root.join("etc")) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
            return Ok(PasswordOutcome::NoShadow);
        }
        Err(e) => return Err(err(e)),
    };
    let existing = sys::read_nofollow(&etc, "shadow", MAX_SHADOW).map_err(err)?;
    let (text, mode, owner) = match &existing {
        Some((data, fd)) => {
            let (mode, owner) = sys::stat_fd(fd).map_err(err)?;
            (data.as_slice(), mode, owner)
        }
        None if !create => return Ok(PasswordOutcome::NoShadow),
        None => (&[][..], 0o640, Owner { uid: 0, gid: 0 }),
    };
    match change(text) {
        None => Ok(PasswordOutcome::AlreadyDone),
        Some((new, outcome)) => {
            sys::replace_file(&etc, "shadow", &new, mode, owner).map_err(err)?;
            Ok(outcome)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd() {
        let u = parse_passwd("root:x:0:0:System administrator:/root:/bin/sh\n# c\nalice:x:1000:100::/home/alice:/bin/sh\n").unwrap();
        assert_eq!(u[1].uid, 1000);
        assert_eq!(u[1].home, "/home/alice");
        assert_eq!(parse_passwd("root:x:0:0\n"), Err(1));
        assert_eq!(parse_passwd("a:x:1:1::../x:/bin/sh\n"), Err(1));
    }

    #[test]
    fn shadow() {
        let s = b"root::1::::::\nbob:!:1::::::\n";
        let (t, o) = shadow_with_root(s, None).unwrap();
        assert_eq!(t, b"root:!:1::::::\nbob:!:1::::::\n");
        assert_eq!(o, PasswordOutcome::Locked);
        assert_eq!(shadow_with_root(&t, None), None);
        let (t2, o) = shadow_with_root(&t, Some("$6$s$h")).unwrap();
        assert_eq!(t2, b"root:$6$s$h:1::::::\nbob:!:1::::::\n");
        assert_eq!(o, PasswordOutcome::Set);
        assert_eq!(shadow_with_root(&t2, Some("$6$s$h")), None);
        let (t3, _) = shadow_with_root(b"bob:!:1::::::", Some("$6$s$h")).unwrap();
        assert_eq!(t3, b"bob:!:1::::::\nroot:$6$s$h:1::::::\n");
        assert_eq!(shadow_with_root(b"root:*:1::::::\n", None), None);
        // A line of only a name and a field keeps its shape.
        let (t4, _) = shadow_with_root(b"root:", Some("$6$s$h")).unwrap();
        assert_eq!(t4, b"root:$6$s$h");
        assert_eq!(shadow_field(&t2, "bob"), Some(&b"!"[..]));
        assert_eq!(shadow_field(&t2, "eve"), None);
    }

    /// Other users' lines stay byte for byte, bytes that are not UTF-8
    /// included (a Latin-1 name and comment: `j\xfcrgen`), and so do the
    /// other fields of the changed line.
    #[test]
    fn shadow_keeps_latin1_lines_byte_exact() {
        let s: &[u8] =
            b"j\xfcrgen:$6$x$y:19000:0:99999:7:::\nroot::19000:0:99999:7:::\n# caf\xe9\n";
        let (t, o) = shadow_with_root(s, Some("$6$s$h")).unwrap();
        assert_eq!(o, PasswordOutcome::Set);
        assert_eq!(
            t,
            b"j\xfcrgen:$6$x$y:19000:0:99999:7:::\nroot:$6$s$h:19000:0:99999:7:::\n# caf\xe9\n"
        );
        let (t, _) = shadow_with(s, "j\u{fc}rgen", Some("$6$s$h")).unwrap();
        assert!(
            t.ends_with(b"\nj\xc3\xbcrgen:$6$s$h:1::::::\n"),
            "a UTF-8 name is another user"
        );
        assert!(t.starts_with(s));
    }

    /// fuzz/artifacts/passwd/crash-434c05c4 (found by `make fuzz`): a shadow
    /// without root whose last line ends in a bare `\r` and no newline. The
    /// harness, not the code, was wrong (`str::lines` drops a `\r` before
    /// the added `\n`); kept as the case it is: the `\r` stays the line's.
    #[test]
    fn shadow_without_root_ending_in_cr() {
        let crash: &[u8] = b"\xe4root:\0\0\0\0\0\0\0Wminixos:\xff\xff\xff\xff>rent-systx:0\xff\xff\xff\xff\xff\xff\xff>:0:`\0\0t:\0\0\0\0\0\0\0Wminixoy#[\r";
        let (new, o) = shadow_with_root(crash, Some("$6$s$h")).unwrap();
        assert_eq!(o, PasswordOutcome::Set);
        assert_eq!(new, [crash, b"\nroot:$6$s$h:1::::::\n"].concat());
        assert_eq!(shadow_with_root(&new, Some("$6$s$h")), None);
    }
}

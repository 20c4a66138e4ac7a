//! `/etc/nixlive/postboot.conf`: what the system's configuration tells
//! postboot beyond the defaults. Optional; strict when present (the shared
//! line format of `nixlive_formats::lines`):
//!
//! ```text
//! nixlive-postboot 1
//! ssh-user alice              # also install the SSH keys for alice (repeatable)
//! root-password-hash $6$...   # root's password hash (crypt(3) format)
//! live-user nixos             # whose password live.nixos.passwd= sets (default nixos)
//! ```
//!
//! Without `root-password-hash`, root has no usable password: an empty
//! password field in `/etc/shadow` is locked (`!`).

use nixlive_formats::lines::{self, LineError};

pub const MAGIC: &str = "nixlive-postboot";
pub const VERSION: &str = "1";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Users (besides root) who get the SSH keys.
    pub ssh_users: Vec<String>,
    pub root_password_hash: Option<String>,
    /// Whose password `live.nixos.passwd=` and `live.nixos.passwordHash=`
    /// set; `None` means [`DEFAULT_LIVE_USER`].
    pub live_user: Option<String>,
}

/// The user NixOS's installer images log in as.
pub const DEFAULT_LIVE_USER: &str = "nixos";

impl Config {
    pub fn live_user(&self) -> &str {
        self.live_user.as_deref().unwrap_or(DEFAULT_LIVE_USER)
    }
}

impl Config {
    /// Strict: the first bad line is the error.
    pub fn parse(text: &str) -> Result<Config, LineError> {
        let (c, mut bad) = Config::parse_entries(text)?;
        if bad.is_empty() {
            Ok(c)
        } else {
            Err(bad.remove(0))
        }
    }

    /// The entries that are good, and one error per bad entry (an invalid
    /// or repeated user name, a bad hash, an unknown key), so that one bad
    /// entry costs only itself. A file that is not this format at all (no
    /// magic line, a blank line, a missing final newline) is the error.
    pub fn parse_entries(text: &str) -> Result<(Config, Vec<LineError>), LineError> {
        let records = lines::records(text)?;
        let mut it = records.into_iter();
        match it.next() {
            Some((_, f)) if f == [MAGIC, VERSION] => {}
            Some((n, f)) => {
                return Err(LineError::new(
                    n,
                    format!("expected \"{MAGIC} {VERSION}\", found {:?}", f.join(" ")),
                ));
            }
            None => return Err(LineError::new(1, format!("no \"{MAGIC} {VERSION}\" line"))),
        }
        let mut c = Config::default();
        let mut bad = Vec::new();
        for (n, f) in it {
            let entry = match f.as_slice() {
                ["ssh-user", name] => check_user_name(name).and_then(|()| {
                    if c.ssh_users.iter().any(|u| u == name) {
                        return Err(format!("user {name} listed twice"));
                    }
                    c.ssh_users.push(name.to_string());
                    Ok(())
                }),
                ["root-password-hash", hash] => {
                    if c.root_password_hash.is_some() {
                        Err("root-password-hash given twice".into())
                    } else {
                        check_password_hash(hash)
                            .map(|()| c.root_password_hash = Some(hash.to_string()))
                    }
                }
                ["live-user", name] => {
                    if c.live_user.is_some() {
                        Err("live-user given twice".into())
                    } else {
                        // root is allowed here: a live system may have no other user.
                        check_user_name(name)
                            .or_else(|e| if *name == "root" { Ok(()) } else { Err(e) })
                            .map(|()| c.live_user = Some(name.to_string()))
                    }
                }
                [key, ..] => Err(format!("unknown key {key:?} or wrong number of fields")),
                [] => unreachable!("records() never yields an empty line"),
            };
            if let Err(m) = entry {
                bad.push(LineError::new(n, m));
            }
        }
        Ok((c, bad))
    }
}

/// A POSIX-portable user name (what `useradd` accepts).
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok && name != "root" {
        Ok(())
    } else if name == "root" {
        Err("root always gets the keys; do not list it".into())
    } else {
        Err(format!("{name:?} is not a valid user name"))
    }
}

/// A crypt(3) hash as `/etc/shadow` holds it: `$id$[params$]salt$hash`.
pub fn check_password_hash(h: &str) -> Result<(), String> {
    let ok = h.starts_with('$')
        && h.split('$').count() >= 4
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b'.' | b'/' | b'=' | b','));
    if ok {
        Ok(())
    } else {
        Err("root-password-hash must be a crypt(3) hash such as $6$salt$... or $y$...".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let c = Config::parse(
            "nixlive-postboot 1\n# who\nssh-user alice\nssh-user bob\nroot-password-hash $6$salt$abc/def.\n",
        )
        .unwrap();
        assert_eq!(c.ssh_users, vec!["alice", "bob"]);
        assert_eq!(c.root_password_hash.as_deref(), Some("$6$salt$abc/def."));
        assert_eq!(c.live_user(), DEFAULT_LIVE_USER);
        let c = Config::parse("nixlive-postboot 1\nlive-user root\n").unwrap();
        assert_eq!(c.live_user(), "root");
        assert_eq!(
            Config::parse("nixlive-postboot 1\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn errors_name_lines() {
        for (text, line) in [
            ("nixlive-postboot 2\n", 1),
            ("nixlive-postboot 1\nssh-user root\n", 2),
            ("nixlive-postboot 1\nssh-user a b\n", 2),
            ("nixlive-postboot 1\nssh-user a\nssh-user a\n", 3),
            ("nixlive-postboot 1\nroot-password-hash secret\n", 2),
            ("nixlive-postboot 1\nshell /bin/sh\n", 2),
            ("nixlive-postboot 1\nlive-user a\nlive-user b\n", 3),
            ("nixlive-postboot 1\nlive-user -x\n", 2),
            ("nixlive-postboot 1\nssh-user a", 2),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn a_bad_entry_costs_only_itself() {
        let (c, bad) = Config::parse_entries(
            "nixlive-postboot 1\nssh-user alice\nssh-user b@d\nshell /bin/sh\nssh-user alice\nroot-password-hash $6$s$h\nssh-user bob\n",
        )
        .unwrap();
        assert_eq!(c.ssh_users, vec!["alice", "bob"]);
        assert_eq!(c.root_password_hash.as_deref(), Some("$6$s$h"));
        assert_eq!(
            bad.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        // Not this format at all: the whole file is the error.
        assert!(Config::parse_entries("ssh-user alice\n").is_err());
    }
}

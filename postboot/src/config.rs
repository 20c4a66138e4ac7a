//! `/etc/nixlive/postboot.conf`: what the system's configuration tells
//! postboot beyond the defaults. Optional; strict when present (the shared
//! line format of `nixlive_formats::lines`):
//!
//! ```text
//! nixlive-postboot 1
//! ssh-user alice              # also install the SSH keys for alice (repeatable)
//! root-password-hash $6$...   # root's password hash (crypt(3) format)
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
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, LineError> {
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
        for (n, f) in it {
            match f.as_slice() {
                ["ssh-user", name] => {
                    check_user_name(name).map_err(|m| LineError::new(n, m))?;
                    if c.ssh_users.iter().any(|u| u == name) {
                        return Err(LineError::new(n, format!("user {name} listed twice")));
                    }
                    c.ssh_users.push(name.to_string());
                }
                ["root-password-hash", hash] => {
                    if c.root_password_hash.is_some() {
                        return Err(LineError::new(n, "root-password-hash given twice"));
                    }
                    check_password_hash(hash).map_err(|m| LineError::new(n, m))?;
                    c.root_password_hash = Some(hash.to_string());
                }
                [key, ..] => {
                    return Err(LineError::new(
                        n,
                        format!("unknown key {key:?} or wrong number of fields"),
                    ));
                }
                [] => unreachable!("records() never yields an empty line"),
            }
        }
        Ok(c)
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
            ("nixlive-postboot 1\nssh-user a", 2),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}

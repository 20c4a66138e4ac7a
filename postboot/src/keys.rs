//! `authorized_keys` lines (sshd(8), "AUTHORIZED_KEYS FILE FORMAT"), parsed
//! and checked: `[options] type base64-blob [comment]`, where the blob must
//! decode and start with the same key type (an SSH string: a 32-bit
//! big-endian length, then the name).
//!
//! Pure: a line in, an [`AuthorizedKey`] or a [`KeyError`] out (fuzzable).

use nixlive_formats::base64;
use thiserror::Error;

/// Key types postboot installs. DSA keys are refused (OpenSSH dropped them).
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no key type and key")]
    Empty,
    #[error("unterminated quote in the options")]
    UnterminatedQuote,
    #[error("unknown or unsupported key type {0:?}")]
    UnknownType(String),
    #[error("{0} key has no base64 key data")]
    MissingBlob(String),
    #[error("{0} key data is not valid base64")]
    BadBase64(String),
    #[error("key data says {inner:?} but the line says {outer:?}")]
    TypeMismatch { outer: String, inner: String },
    #[error("{0} key data is truncated or malformed")]
    Malformed(String),
    #[error("control character in the line")]
    Control,
}

/// One valid key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The options field as written (`from="10.0.0.1",no-pty`), if any.
    pub options: Option<String>,
    pub key_type: String,
    /// The base64 key data as written.
    pub blob: String,
    pub comment: Option<String>,
}

impl AuthorizedKey {
    /// The line as it goes into `authorized_keys` (without newline).
    pub fn line(&self) -> String {
        let mut s = String::new();
        if let Some(o) = &self.options {
            s.push_str(o);
            s.push(' ');
        }
        s.push_str(&self.key_type);
        s.push(' ');
        s.push_str(&self.blob);
        if let Some(c) = &self.comment {
            s.push(' ');
            s.push_str(c);
        }
        s
    }

    /// What makes two lines the same key: type and key data.
    pub fn identity(&self) -> (&str, &str) {
        (&self.key_type, &self.blob)
    }
}

/// Parses one line. `Ok(None)` for a blank or comment line.
pub fn parse_line(line: &str) -> Result<Option<AuthorizedKey>, KeyError> {
    let line = line.trim_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(KeyError::Control);
    }
    let (options, rest) = if is_key_type(first_word(line)) {
        (None, line)
    } else {
        let (opts, rest) = split_options(line)?;
        (Some(opts.to_string()), rest.trim_start_matches([' ', '\t']))
    };
    let key_type = first_word(rest);
    if key_type.is_empty() {
        return Err(KeyError::Empty);
    }
    if !is_key_type(key_type) {
        // `ssh-dss AAAA...`: the first word was the type, not options (key
        // data starts with a small length, `AAAA` in base 64).
        let named = match options {
            Some(_) if key_type.starts_with("AAAA") => first_word(line),
            _ => key_type,
        };
        return Err(KeyError::UnknownType(named.to_string()));
    }
    let rest = rest[key_type.len()..].trim_start_matches([' ', '\t']);
    let blob = first_word(rest);
    if blob.is_empty() {
        return Err(KeyError::MissingBlob(key_type.to_string()));
    }
    check_blob(key_type, blob)?;
    let comment = rest[blob.len()..].trim_matches([' ', '\t']);
    Ok(Some(AuthorizedKey {
        options,
        key_type: key_type.to_string(),
        blob: blob.to_string(),
        comment: (!comment.is_empty()).then(|| comment.to_string()),
    }))
}

/// A whole file: the good keys and the bad lines, each with its 1-based
/// line number.
pub type ParsedFile = (Vec<(usize, AuthorizedKey)>, Vec<(usize, KeyError)>);

/// Parses a whole file (blank and comment lines are skipped).
pub fn parse_file(text: &str) -> ParsedFile {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(k)) => good.push((i + 1, k)),
            Ok(None) => {}
            Err(e) => bad.push((i + 1, e)),
        }
    }
    (good, bad)
}

fn is_key_type(s: &str) -> bool {
    KEY_TYPES.contains(&s)
}

fn first_word(s: &str) -> &str {
    s.split([' ', '\t']).next().unwrap_or("")
}

/// Splits off the options field: up to the first blank outside quotes.
fn split_options(line: &str) -> Result<(&str, &str), KeyError> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok((&line[..i], &line[i..])),
            _ => {}
        }
    }
    if quoted {
        Err(KeyError::UnterminatedQuote)
    } else {
        Err(KeyError::Empty)
    }
}

/// Checks the key data: base64, first an SSH string equal to the type, and
/// for the plain key types the fields that follow.
fn check_blob(key_type: &str, blob: &str) -> Result<(), KeyError> {
    let data = base64::decode(blob).ok_or_else(|| KeyError::BadBase64(key_type.to_string()))?;
    let malformed = || KeyError::Malformed(key_type.to_string());
    let mut r = Reader { data: &data };
    let inner = r.string().ok_or_else(malformed)?;
    if inner != key_type.as_bytes() {
        return Err(KeyError::TypeMismatch {
            outer: key_type.to_string(),
            inner: String::from_utf8_lossy(inner).into_owned(),
        });
    }
    let ok = match key_type {
        "ssh-ed25519" => r.string().is_some_and(|k| k.len() == 32) && r.data.is_empty(),
        "ssh-rsa" => {
            r.string().is_some() && r.string().is_some_and(|n| n.len() >= 64) && r.data.is_empty()
        }
        t if t.starts_with("ecdsa-sha2-") && !t.contains("-cert-") => {
            let curve = &t["ecdsa-sha2-".len()..];
            r.string().is_some_and(|c| c == curve.as_bytes())
                && r.string().is_some_and(|q| !q.is_empty())
                && r.data.is_empty()
        }
        // Security keys and certificates carry more fields; the type check
        // above is what is checked of them.
        _ => !r.data.is_empty(),
    };
    if ok { Ok(()) } else { Err(malformed()) }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// An SSH `string`: u32 big-endian length, then that many bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.data.get(..4)?.try_into().ok()?) as usize;
        let s = self.data.get(4..4 + len)?;
        self.data = &self.data[4 + len..];
        Some(s)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real ed25519 public key (ssh-keygen output).
    pub const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI me@example";

    fn b64(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(char::from(T[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    fn sshstr(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn good_lines() {
        let k = parse_line(ED25519).unwrap().unwrap();
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment.as_deref(), Some("me@example"));
        assert_eq!(k.line(), ED25519);
        let with_opts = format!("from=\"10.0.0.1,10.0.0.2\",command=\"echo a b\",no-pty {ED25519}");
        let k2 = parse_line(&with_opts).unwrap().unwrap();
        assert_eq!(
            k2.options.as_deref(),
            Some("from=\"10.0.0.1,10.0.0.2\",command=\"echo a b\",no-pty")
        );
        assert_eq!(k2.identity(), k.identity());
        assert_eq!(k2.line(), with_opts);
        assert_eq!(parse_line("  # comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
        let rsa = [sshstr(b"ssh-rsa"), sshstr(&[1, 0, 1]), sshstr(&[0x55; 257])].concat();
        assert!(
            parse_line(&format!("ssh-rsa {}", b64(&rsa)))
                .unwrap()
                .is_some()
        );
        let ec = [
            sshstr(b"ecdsa-sha2-nistp256"),
            sshstr(b"nistp256"),
            sshstr(&[4; 65]),
        ]
        .concat();
        assert!(
            parse_line(&format!("ecdsa-sha2-nistp256 {} c", b64(&ec)))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn bad_lines() {
        let blob = ED25519.split(' ').nth(1).unwrap();
        assert_eq!(
            parse_line(&format!("ssh-rsa {blob}")),
            Err(KeyError::TypeMismatch {
                outer: "ssh-rsa".into(),
                inner: "ssh-ed25519".into()
            })
        );
        assert_eq!(
            parse_line(&format!("ssh-dss {blob}")),
            Err(KeyError::UnknownType("ssh-dss".into()))
        );
        assert_eq!(
            parse_line("ssh-ed25519"),
            Err(KeyError::MissingBlob("ssh-ed25519".into()))
        );
        assert_eq!(
            parse_line("ssh-ed25519 AAAA!!!!"),
            Err(KeyError::BadBase64("ssh-ed25519".into()))
        );
        let short = b64(&[sshstr(b"ssh-ed25519"), sshstr(&[1; 31])].concat());
        assert_eq!(
            parse_line(&format!("ssh-ed25519 {short}")),
            Err(KeyError::Malformed("ssh-ed25519".into()))
        );
        assert_eq!(
            parse_line(&format!("command=\"x {ED25519}")),
            Err(KeyError::UnterminatedQuote)
        );
        assert_eq!(parse_line("no-pty"), Err(KeyError::Empty));
        assert_eq!(
            parse_line(&format!("no-pty,bogus {blob}")),
            Err(KeyError::UnknownType("no-pty,bogus".into()))
        );
        let (good, bad) = parse_file(&format!("# keys\n{ED25519}\nssh-ed25519 x\n\n"));
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].0, 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 3);
    }
}

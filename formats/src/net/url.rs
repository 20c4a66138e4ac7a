//! `http://HOST[:PORT]/PATH` URLs, as `nixlive.url=` and redirects give
//! them, and names resolved relative to them (image names in a manifest,
//! a `Location:` header). Only `http`: every byte fetched is checked
//! against the manifest, so TLS would add size to init and no safety.

use std::fmt;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// A DNS name or a dotted IPv4 address, lowercase.
    pub host: String,
    pub port: u16,
    /// From the first `/`, query included; never empty.
    pub path: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error(
        "`{0}`: only http:// URLs are fetched (https is not: every image is checked against the manifest's sha256 instead)"
    )]
    Scheme(String),
    #[error("`{0}`: no host")]
    NoHost(String),
    #[error("`{0}`: host `{1}` is neither a DNS name nor an IPv4 address")]
    Host(String, String),
    #[error("`{0}`: port `{1}` is not 1..65535")]
    Port(String, String),
    #[error("`{0}`: has spaces, control characters, a fragment or user info")]
    Chars(String),
    #[error("`{0}`: longer than 2048 bytes")]
    TooLong(String),
}

const MAX_LEN: usize = 2048;

impl Url {
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        if s.len() > MAX_LEN {
            return Err(UrlError::TooLong(s.chars().take(64).collect()));
        }
        if s.bytes().any(|b| !b.is_ascii_graphic() || b == b'#') {
            return Err(UrlError::Chars(s.to_string()));
        }
        let Some(rest) = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("http://"))
            .map(|_| &s[7..])
        else {
            return Err(UrlError::Scheme(s.to_string()));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(UrlError::Chars(s.to_string()));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| UrlError::Port(s.to_string(), p.to_string()))?;
                (h, port)
            }
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(s.to_string()));
        }
        if !valid_host(host) {
            return Err(UrlError::Host(s.to_string(), host.to_string()));
        }
        Ok(Url {
            host: host.to_ascii_lowercase(),
            port,
            path: collapse_slashes(&path),
        })
    }

    /// `rel` resolved against this URL (RFC 3986, for the forms servers
    /// and manifests use): absolute `http://...`, `/absolute/path`, or a
    /// path relative to this one's directory. `.` and `..` segments are
    /// resolved, never above the root.
    pub fn join(&self, rel: &str) -> Result<Url, UrlError> {
        if rel
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
        {
            // Its path's `.` and `..` are resolved too.
            let u = Url::parse(rel)?;
            return u.join(&u.path.clone());
        }
        if rel
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
            || rel.starts_with("//")
        {
            return Err(UrlError::Scheme(rel.to_string()));
        }
        if rel.bytes().any(|b| !b.is_ascii_graphic() || b == b'#') {
            return Err(UrlError::Chars(rel.to_string()));
        }
        let base_path = self.path.split('?').next().unwrap_or("/");
        let joined = if rel.starts_with('/') {
            rel.to_string()
        } else {
            let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{rel}")
        };
        let (p, q) = match joined.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (joined.as_str(), None),
        };
        let mut out: Vec<&str> = Vec::new();
        let segs: Vec<&str> = p.split('/').skip(1).collect();
        for (i, seg) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            match *seg {
                "." => {
                    if last {
                        out.push("");
                    }
                }
                ".." => {
                    out.pop();
                    if last {
                        out.push("");
                    }
                }
                s => out.push(s),
            }
        }
        let mut path = collapse_slashes(&format!("/{}", out.join("/")));
        if let Some(q) = q {
            path.push('?');
            path.push_str(q);
        }
        let url = Url {
            path,
            ..self.clone()
        };
        if url.to_string().len() > MAX_LEN {
            return Err(UrlError::TooLong(rel.chars().take(64).collect()));
        }
        Ok(url)
    }

    /// `HOST` or `HOST:PORT` as a `Host:` header names it.
    pub fn authority(&self) -> String {
        if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// `/a//b/` as `/a/b/` (before any `?`): iPXE's `${cwduri}` may end in
/// `/` or not, and the script adds one.
fn collapse_slashes(path: &str) -> String {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out = String::with_capacity(path.len());
    for c in p.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    if let Some(q) = q {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A DNS name (letters, digits, `-`, `_`, dots; labels 1..63) or IPv4.
fn valid_host(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let u = Url::parse("http://10.0.2.2:8080/live/nixlive.manifest").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("10.0.2.2", 8080, "/live/nixlive.manifest")
        );
        assert_eq!(u.to_string(), "http://10.0.2.2:8080/live/nixlive.manifest");
        let u = Url::parse("HTTP://Boot.Example.ORG").unwrap();
        assert_eq!(u.to_string(), "http://boot.example.org/");
        assert_eq!(u.authority(), "boot.example.org");
        let u = Url::parse("http://h?x=1").unwrap();
        assert_eq!(u.path, "/?x=1");
        let u = Url::parse("http://h/set//nixlive.manifest?a=//").unwrap();
        assert_eq!(u.path, "/set/nixlive.manifest?a=//");
    }

    #[test]
    fn refuses_what_it_cannot_fetch() {
        for (s, want) in [
            ("https://h/x", "only http://"),
            ("ftp://h/x", "only http://"),
            ("http:///x", "no host"),
            ("http://h:0/", "port `0`"),
            ("http://h:99999/", "port `99999`"),
            ("http://h:x/", "port `x`"),
            ("http://a..b/", "neither a DNS name"),
            ("http://[::1]/", "port `1]`"),
            ("http://[::1]:80/", "neither a DNS name"),
            ("http://u:p@h/", "user info"),
            ("http://h/a b", "spaces"),
            ("http://h/a#f", "fragment"),
        ] {
            let e = Url::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
        let long = format!("http://h/{}", "a".repeat(3000));
        assert!(matches!(Url::parse(&long), Err(UrlError::TooLong(_))));
    }

    #[test]
    fn joins_like_a_browser() {
        let b = Url::parse("http://h:81/live/set/nixlive.manifest?v=2").unwrap();
        let j = |r: &str| b.join(r).map(|u| u.to_string());
        assert_eq!(j("a.squashfs").unwrap(), "http://h:81/live/set/a.squashfs");
        assert_eq!(j("../b.img").unwrap(), "http://h:81/live/b.img");
        assert_eq!(j("../../../../c").unwrap(), "http://h:81/c");
        assert_eq!(j("./d/./e").unwrap(), "http://h:81/live/set/d/e");
        assert_eq!(j("/top?q=1").unwrap(), "http://h:81/top?q=1");
        assert_eq!(j("..").unwrap(), "http://h:81/live/");
        assert_eq!(j("http://other/x").unwrap(), "http://other/x");
        // Found by `make fuzz`: dot segments of an absolute URL go too.
        assert_eq!(j("http://o/a/b../../c/./d").unwrap(), "http://o/a/c/d");
        assert!(j("https://other/x").is_err());
        assert!(j("//other/x").is_err());
        assert!(j("a b").is_err());
        // Found by `make fuzz`: a multi-byte character across byte 7 (a
        // Location header is the server's) must not panic PID 1.
        assert!(j("..\u{fffd}quashfs").is_err());
        assert!(j("abcdé").is_err());
        // Found by `make fuzz`: a query keeps its `..` and `//`, the path not.
        assert_eq!(
            j("p://10?..//x").unwrap(),
            "http://h:81/live/set/p:/10?..//x"
        );
    }
}

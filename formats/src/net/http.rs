//! An HTTP/1.1 response head, as init's fetcher reads it: the status, and
//! the headers a download needs (`Content-Length`, `Content-Range`,
//! `Location`, `Transfer-Encoding`). Strict where a wrong guess would
//! write wrong bytes (lengths, ranges), lenient elsewhere (unknown headers).
//! [`request`] writes the GET that asks for it.

use thiserror::Error;

/// The most a head may take; servers send a few hundred bytes.
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub content_length: Option<u64>,
    /// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
    pub range: Option<ContentRange>,
    pub location: Option<String>,
    /// `Transfer-Encoding` other than `identity` (chunked).
    pub chunked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    /// Inclusive, as the header says it.
    pub end: u64,
    pub total: Option<u64>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the response head is longer than {MAX_HEAD} bytes")]
    TooLong,
    #[error("not an HTTP/1.x status line: {0:?}")]
    StatusLine(String),
    #[error("header line {0:?} is not `Name: value`")]
    Header(String),
    #[error("{name}: {value:?} is not what HTTP allows")]
    Value { name: &'static str, value: String },
    #[error("Content-Length given twice with different values")]
    TwoLengths,
}

/// Where the head ends in `buf` (just past the blank line), if it does.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The GET request for `path` on `host`, from byte `from` on when not 0.
pub fn request(host: &str, path: &str, from: u64) -> String {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nixlive-init\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n"
    );
    if from > 0 {
        r.push_str(&format!("Range: bytes={from}-\r\n"));
    }
    r.push_str("\r\n");
    r
}

impl Head {
    /// Parses a head (status line, headers, up to the blank line; what
    /// follows `head_end` is not read).
    pub fn parse(buf: &[u8]) -> Result<Head, HeadError> {
        let end = head_end(buf).unwrap_or(buf.len());
        if end > MAX_HEAD {
            return Err(HeadError::TooLong);
        }
        let text = String::from_utf8_lossy(&buf[..end]);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut h = status(status_line)?;
        for line in lines.filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(HeadError::Header(line.to_string()));
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(HeadError::Header(line.to_string()));
            }
            let value = value.trim_matches([' ', '\t']);
            match name.to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n = number(value).ok_or_else(|| HeadError::Value {
                        name: "Content-Length",
                        value: value.to_string(),
                    })?;
                    if h.content_length.is_some_and(|o| o != n) {
                        return Err(HeadError::TwoLengths);
                    }
                    h.content_length = Some(n);
                }
                "content-range" => {
                    h.range = Some(content_range(value).ok_or_else(|| HeadError::Value {
                        name: "Content-Range",
                        value: value.to_string(),
                    })?)
                }
                "location" => h.location = Some(value.to_string()),
                "transfer-encoding" => {
                    h.chunked |= !value.eq_ignore_ascii_case("identity");
                }
                _ => {}
            }
        }
        Ok(h)
    }

    pub fn is_redirect(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
    }
}

fn status(line: &str) -> Result<Head, HeadError> {
    let bad = || HeadError::StatusLine(line.chars().take(80).collect());
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .ok_or_else(bad)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&status) {
        return Err(bad());
    }
    Ok(Head {
        status,
        reason: reason.chars().take(80).collect(),
        ..Head::default()
    })
}

/// Digits only (no sign, no spaces), at most 19 of them.
fn number(v: &str) -> Option<u64> {
    (!v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse().ok())
        .flatten()
}

fn content_range(v: &str) -> Option<ContentRange> {
    let rest = v.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end) = (number(start)?, number(end)?);
    let total = match total {
        "*" => None,
        t => Some(number(t)?),
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some(ContentRange { start, end, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_200() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 1234\r\n\r\nbody";
        assert_eq!(head_end(raw), Some(raw.len() - 4));
        let h = Head::parse(raw).unwrap();
        assert_eq!((h.status, h.reason.as_str()), (200, "OK"));
        assert_eq!(h.content_length, Some(1234));
        assert!(!h.chunked && !h.is_redirect() && h.range.is_none());
    }

    #[test]
    fn partial_content_and_redirects() {
        let h = Head::parse(
            b"HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 100-199/200\r\nContent-Length:100\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            h.range,
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(200)
            })
        );
        let h = Head::parse(b"HTTP/1.0 302 Found\r\nLocation: /x/y\r\n\r\n").unwrap();
        assert!(h.is_redirect());
        assert_eq!(h.location.as_deref(), Some("/x/y"));
        let h = Head::parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(h.chunked);
    }

    #[test]
    fn strict_where_bytes_depend_on_it() {
        let e = |raw: &[u8]| Head::parse(raw).unwrap_err().to_string();
        assert!(e(b"HTTP/2 200 OK\r\n\r\n").contains("not an HTTP/1.x status line"));
        assert!(e(b"HTTP/1.1 20 OK\r\n\r\n").contains("status line"));
        assert!(e(b"HTTP/1.1 999 X\r\n\r\n").contains("status line"));
        assert!(e(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").contains("Content-Length"));
        assert!(e(b"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n").contains("Content-Length"));
        assert_eq!(
            Head::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(HeadError::TwoLengths)
        );
        assert!(
            e(b"HTTP/1.1 206 P\r\nContent-Range: bytes 5-4/10\r\n\r\n").contains("Content-Range")
        );
        assert!(
            e(b"HTTP/1.1 206 P\r\nContent-Range: bytes 0-10/10\r\n\r\n").contains("Content-Range")
        );
        assert!(e(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").contains("not `Name: value`"));
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(b"X: y\r\n".repeat(4000));
        assert_eq!(Head::parse(&big), Err(HeadError::TooLong));
        let h = Head::parse(b"HTTP/1.1 206 P\r\nContent-Range: bytes 0-9/*\r\n\r\n").unwrap();
        assert_eq!(h.range.unwrap().total, None);
    }

    #[test]
    fn requests() {
        assert_eq!(
            request("h:8080", "/a", 0),
            "GET /a HTTP/1.1\r\nHost: h:8080\r\nUser-Agent: nixlive-init\r\n\
             Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        );
        assert!(request("h", "/a", 5).ends_with("Range: bytes=5-\r\n\r\n"));
    }
}

//! DNS (RFC 1035), just what a resolver of one name needs: [`query`]
//! asks for the IPv4 addresses of a name (recursion desired); [`answer`]
//! reads the reply, following compressed names, and returns the A records
//! (a CNAME chain the server resolved is fine: its A records are there).

use std::net::Ipv4Addr;
use thiserror::Error;

pub const PORT: u16 = 53;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("`{0}` is not a DNS name")]
    Name(String),
    #[error("the reply is cut short")]
    Short,
    #[error("the reply answers another query (id {got}, ours {want})")]
    OtherId { got: u16, want: u16 },
    #[error("not a reply")]
    NotReply,
    #[error("no such name (NXDOMAIN)")]
    NoSuchName,
    #[error("the server failed (rcode {0})")]
    Rcode(u8),
    #[error("a compressed name points in a loop")]
    Loop,
    #[error("no IPv4 address in the reply")]
    NoAddress,
}

/// A query for `name`'s A records, with transaction `id`.
pub fn query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let bad = || DnsError::Name(name.to_string());
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(bad());
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(q)
}

/// Skips a (possibly compressed) name at `at`; returns the offset after it.
fn skip_name(b: &[u8], mut at: usize) -> Result<usize, DnsError> {
    let mut labels = 0;
    loop {
        let len = *b.get(at).ok_or(DnsError::Short)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => {
                b.get(at + 1).ok_or(DnsError::Short)?;
                return Ok(at + 2);
            }
            l if l & 0xc0 != 0 => return Err(DnsError::Short),
            l => at += 1 + l as usize,
        }
        labels += 1;
        if labels > 127 {
            return Err(DnsError::Loop);
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, DnsError> {
    let s = b.get(at..at + 2).ok_or(DnsError::Short)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

/// The IPv4 addresses a reply to query `id` gives.
pub fn answer(b: &[u8], id: u16) -> Result<Vec<Ipv4Addr>, DnsError> {
    if b.len() < 12 {
        return Err(DnsError::Short);
    }
    let got = u16_at(b, 0)?;
    if got != id {
        return Err(DnsError::OtherId { got, want: id });
    }
    if b[2] & 0x80 == 0 {
        return Err(DnsError::NotReply);
    }
    match b[3] & 0x0f {
        0 => {}
        3 => return Err(DnsError::NoSuchName),
        r => return Err(DnsError::Rcode(r)),
    }
    let qd = u16_at(b, 4)?;
    let an = u16_at(b, 6)?;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(b, at)?;
        let rtype = u16_at(b, at)?;
        let class = u16_at(b, at + 2)?;
        let len = u16_at(b, at + 8)? as usize;
        let data = b.get(at + 10..at + 10 + len).ok_or(DnsError::Short)?;
        if rtype == 1 && class == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    if out.is_empty() {
        return Err(DnsError::NoAddress);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes() {
        let q = query(0x1234, "boot.lan.").unwrap();
        assert_eq!(
            q,
            [
                0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, b'b', b'o', b'o', b't', 3, b'l', b'a',
                b'n', 0, 0, 1, 0, 1
            ]
        );
        for bad in ["", "a..b", &"x".repeat(64), "é.lan"] {
            assert!(query(1, bad).is_err(), "{bad}");
        }
    }

    /// The reply a resolver sends: the question, a CNAME, then an A record,
    /// both with compressed names.
    fn reply(id: u16, rcode: u8) -> Vec<u8> {
        let mut r = query(id, "boot.lan").unwrap();
        r[2] = 0x81;
        r[3] = 0x80 | rcode;
        r[7] = 2;
        // CNAME boot.lan -> srv.lan
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b's', b'r', b'v']);
        r.extend_from_slice(&[0xc0, 17]);
        // A srv.lan 10.0.2.2 (name: "srv" + pointer to "lan")
        r.extend_from_slice(&[3, b's', b'r', b'v', 0xc0, 17]);
        r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 2, 2]);
        r
    }

    #[test]
    fn answers() {
        assert_eq!(
            answer(&reply(9, 0), 9),
            Ok(vec![Ipv4Addr::new(10, 0, 2, 2)])
        );
        assert_eq!(answer(&reply(9, 3), 9), Err(DnsError::NoSuchName));
        assert_eq!(answer(&reply(9, 2), 9), Err(DnsError::Rcode(2)));
        assert!(matches!(
            answer(&reply(9, 0), 8),
            Err(DnsError::OtherId { .. })
        ));
        let r = reply(9, 0);
        assert_eq!(answer(&r[..r.len() - 3], 9), Err(DnsError::Short));
        assert_eq!(answer(&query(9, "a").unwrap(), 9), Err(DnsError::NotReply));
        let mut none = query(9, "a").unwrap();
        none[2] = 0x81;
        assert_eq!(answer(&none, 9), Err(DnsError::NoAddress));
    }
}

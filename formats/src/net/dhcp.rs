//! DHCPv4 (RFC 2131, options RFC 2132), the client's side: [`discover`]
//! and [`request`] write the two messages a client sends; [`Reply::parse`]
//! reads a server's OFFER or ACK (or NAK), checking that it answers our
//! transaction and hardware address.

use std::net::Ipv4Addr;
use thiserror::Error;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
/// chaddr (16), sname (64), file (128), then the magic cookie.
const FIXED: usize = 236;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MsgType {
    fn from_u8(v: u8) -> Option<MsgType> {
        use MsgType::*;
        Some(match v {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }
}

/// What a server's reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MsgType,
    pub xid: u32,
    /// The address offered to us.
    pub yiaddr: Ipv4Addr,
    pub server_id: Option<Ipv4Addr>,
    pub mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DhcpError {
    #[error("{0} bytes: shorter than a DHCP message")]
    Short(usize),
    #[error("not a BOOTREPLY for Ethernet")]
    NotReply,
    #[error("no DHCP magic cookie")]
    Magic,
    #[error("option {0} runs past the end of the message")]
    Truncated(u8),
    #[error("option {code} has length {len}, want {want}")]
    OptionLen {
        code: u8,
        len: usize,
        want: &'static str,
    },
    #[error("no DHCP message type (option 53) or an unknown one")]
    NoType,
    #[error("transaction {got:#010x}, ours is {want:#010x}")]
    OtherXid { got: u32, want: u32 },
    #[error("for hardware address {0}, not ours")]
    OtherMac(String),
}

fn header(xid: u32, mac: [u8; 6]) -> Vec<u8> {
    let mut m = vec![0u8; FIXED];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    // Broadcast flag: we cannot take unicast before we have the address.
    m[10] = 0x80;
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&MAGIC);
    m
}

fn common_options(m: &mut Vec<u8>, kind: MsgType, mac: [u8; 6]) {
    m.extend_from_slice(&[53, 1, kind as u8]);
    // Client identifier: type 1 (Ethernet) and the MAC, as most clients send.
    m.extend_from_slice(&[61, 7, 1]);
    m.extend_from_slice(&mac);
    // Parameter request list: mask, router, DNS, domain, lease, server id.
    m.extend_from_slice(&[55, 6, 1, 3, 6, 15, 51, 54]);
    // Maximum message size we read.
    m.extend_from_slice(&[57, 2, 0x05, 0xdc]);
}

/// A DHCPDISCOVER for `mac`.
pub fn discover(xid: u32, mac: [u8; 6]) -> Vec<u8> {
    let mut m = header(xid, mac);
    common_options(&mut m, MsgType::Discover, mac);
    m.push(255);
    m
}

/// A DHCPREQUEST for the address `offer` offered, to the server that offered it.
pub fn request(xid: u32, mac: [u8; 6], offer: &Reply) -> Vec<u8> {
    let mut m = header(xid, mac);
    common_options(&mut m, MsgType::Request, mac);
    m.extend_from_slice(&[50, 4]);
    m.extend_from_slice(&offer.yiaddr.octets());
    if let Some(s) = offer.server_id {
        m.extend_from_slice(&[54, 4]);
        m.extend_from_slice(&s.octets());
    }
    m.push(255);
    m
}

fn addrs(code: u8, v: &[u8]) -> Result<Vec<Ipv4Addr>, DhcpError> {
    if v.is_empty() || !v.len().is_multiple_of(4) {
        return Err(DhcpError::OptionLen {
            code,
            len: v.len(),
            want: "a multiple of 4",
        });
    }
    Ok(v.chunks(4)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
        .collect())
}

fn one_addr(code: u8, v: &[u8]) -> Result<Ipv4Addr, DhcpError> {
    if v.len() != 4 {
        return Err(DhcpError::OptionLen {
            code,
            len: v.len(),
            want: "4",
        });
    }
    Ok(Ipv4Addr::new(v[0], v[1], v[2], v[3]))
}

impl Reply {
    /// Parses a server's message; `xid` and `mac` are ours, to refuse
    /// answers to other clients on the same segment.
    pub fn parse(b: &[u8], xid: u32, mac: [u8; 6]) -> Result<Reply, DhcpError> {
        if b.len() < FIXED + 4 {
            return Err(DhcpError::Short(b.len()));
        }
        if b[0] != 2 || b[1] != 1 || b[2] != 6 {
            return Err(DhcpError::NotReply);
        }
        if b[FIXED..FIXED + 4] != MAGIC {
            return Err(DhcpError::Magic);
        }
        let got = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if got != xid {
            return Err(DhcpError::OtherXid { got, want: xid });
        }
        if b[28..34] != mac {
            let m: Vec<String> = b[28..34].iter().map(|x| format!("{x:02x}")).collect();
            return Err(DhcpError::OtherMac(m.join(":")));
        }
        let mut r = Reply {
            kind: MsgType::Discover,
            xid,
            yiaddr: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
            server_id: None,
            mask: None,
            routers: Vec::new(),
            dns: Vec::new(),
            lease_secs: None,
            domain: None,
        };
        let mut kind = None;
        let mut i = FIXED + 4;
        while i < b.len() {
            let code = b[i];
            match code {
                0 => {
                    i += 1;
                    continue;
                }
                255 => break,
                _ => {}
            }
            let len = *b.get(i + 1).ok_or(DhcpError::Truncated(code))? as usize;
            let v = b
                .get(i + 2..i + 2 + len)
                .ok_or(DhcpError::Truncated(code))?;
            match code {
                53 if v.len() == 1 => kind = MsgType::from_u8(v[0]),
                53 => {
                    return Err(DhcpError::OptionLen {
                        code,
                        len,
                        want: "1",
                    });
                }
                1 => r.mask = Some(one_addr(code, v)?),
                3 => r.routers = addrs(code, v)?,
                6 => r.dns = addrs(code, v)?,
                54 => r.server_id = Some(one_addr(code, v)?),
                51 => r.lease_secs = Some(u32::from_be_bytes(one_addr(code, v)?.octets())),
                15 => {
                    let d = String::from_utf8_lossy(v);
                    r.domain = Some(d.trim_end_matches('\0').to_string())
                }
                _ => {}
            }
            i += 2 + len;
        }
        r.kind = kind.ok_or(DhcpError::NoType)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    /// An OFFER as QEMU's user network sends it.
    pub fn offer(xid: u32, kind: u8) -> Vec<u8> {
        let mut m = header(xid, MAC);
        m[0] = 2;
        m[16..20].copy_from_slice(&[10, 0, 2, 15]);
        m.extend_from_slice(&[53, 1, kind]);
        m.extend_from_slice(&[54, 4, 10, 0, 2, 2]);
        m.extend_from_slice(&[0, 0]); // pads
        m.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
        m.extend_from_slice(&[3, 4, 10, 0, 2, 2]);
        m.extend_from_slice(&[6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        m.extend_from_slice(&[51, 4, 0, 1, 0x51, 0x80]);
        m.extend_from_slice(&[15, 4, b'l', b'a', b'n', 0]);
        m.push(255);
        m
    }

    #[test]
    fn discover_then_request() {
        let d = discover(0xdeadbeef, MAC);
        assert_eq!(&d[..4], &[1, 1, 6, 0]);
        assert_eq!(&d[4..8], &0xdeadbeefu32.to_be_bytes());
        assert_eq!(d[10], 0x80, "broadcast flag");
        assert_eq!(&d[28..34], &MAC);
        assert_eq!(&d[236..243], &[99, 130, 83, 99, 53, 1, 1]);
        assert_eq!(*d.last().unwrap(), 255);
        let o = Reply::parse(&offer(7, 2), 7, MAC).unwrap();
        assert_eq!(o.kind, MsgType::Offer);
        assert_eq!(o.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(o.server_id, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(o.mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(o.routers, [Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(o.dns.len(), 2);
        assert_eq!(o.lease_secs, Some(86400));
        assert_eq!(o.domain.as_deref(), Some("lan"));
        let r = request(7, MAC, &o);
        let opts = &r[240..];
        assert_eq!(&opts[..3], &[53, 1, 3]);
        assert!(opts.windows(6).any(|w| w == [50, 4, 10, 0, 2, 15]));
        assert!(opts.windows(6).any(|w| w == [54, 4, 10, 0, 2, 2]));
        assert_eq!(
            Reply::parse(&offer(7, 5), 7, MAC).unwrap().kind,
            MsgType::Ack
        );
        assert_eq!(
            Reply::parse(&offer(7, 6), 7, MAC).unwrap().kind,
            MsgType::Nak
        );
    }

    #[test]
    fn refuses_others_and_garbage() {
        let o = offer(7, 2);
        assert!(matches!(
            Reply::parse(&o, 8, MAC),
            Err(DhcpError::OtherXid { .. })
        ));
        assert_eq!(
            Reply::parse(&o, 7, [0; 6]),
            Err(DhcpError::OtherMac("52:54:00:12:34:56".into()))
        );
        assert_eq!(Reply::parse(&o[..100], 7, MAC), Err(DhcpError::Short(100)));
        assert_eq!(
            Reply::parse(&discover(7, MAC), 7, MAC),
            Err(DhcpError::NotReply)
        );
        let mut bad = o.clone();
        bad[237] = 0;
        assert_eq!(Reply::parse(&bad, 7, MAC), Err(DhcpError::Magic));
        // An option whose length runs past the end.
        let mut cut = o[..o.len() - 1].to_vec();
        cut.extend_from_slice(&[6, 200, 1]);
        assert_eq!(Reply::parse(&cut, 7, MAC), Err(DhcpError::Truncated(6)));
        let mut odd = header(7, MAC);
        odd[0] = 2;
        odd.extend_from_slice(&[53, 1, 2, 3, 3, 1, 2, 3, 255]);
        assert!(matches!(
            Reply::parse(&odd, 7, MAC),
            Err(DhcpError::OptionLen { code: 3, .. })
        ));
        let mut none = header(7, MAC);
        none[0] = 2;
        none.push(255);
        assert_eq!(Reply::parse(&none, 7, MAC), Err(DhcpError::NoType));
    }
}

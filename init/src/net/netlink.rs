//! rtnetlink, just what init needs: an interface up, an IPv4 address on
//! it, a default route through a gateway, and link announcements to wake
//! the carrier wait. The messages are built by pure functions (tested
//! byte for byte); [`Netlink`] sends them and reads the kernel's ack.

use rustix::fd::OwnedFd;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::io;
use std::net::Ipv4Addr;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 1;
const AF_INET: u8 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
/// Multicast group of link changes (`RTMGRP_LINK`).
pub const GROUP_LINK: u32 = 1;

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
}

fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    let len = (buf.len() as u32).to_ne_bytes();
    buf[..4].copy_from_slice(&len);
    buf
}

/// `ip link set dev IFINDEX up`.
pub fn link_up_msg(seq: u32, index: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    header(&mut b, RTM_NEWLINK, 0, seq);
    // struct ifinfomsg: family, pad, type, index, flags, change.
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&(index as i32).to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    finish(b)
}

/// `ip address replace ADDR/PREFIX broadcast + dev IFINDEX`.
pub fn add_address_msg(seq: u32, index: u32, addr: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(48);
    header(&mut b, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq);
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    b.extend_from_slice(&[AF_INET, prefix, 0, 0]);
    b.extend_from_slice(&index.to_ne_bytes());
    attr(&mut b, IFA_LOCAL, &addr.octets());
    attr(&mut b, IFA_ADDRESS, &addr.octets());
    let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    let brd = Ipv4Addr::from(u32::from(addr) | host);
    if prefix < 31 {
        attr(&mut b, IFA_BROADCAST, &brd.octets());
    }
    finish(b)
}

/// `ip route replace default via GATEWAY dev IFINDEX proto boot`.
pub fn default_route_msg(seq: u32, index: u32, gateway: Ipv4Addr) -> Vec<u8> {
    let mut b = Vec::with_capacity(48);
    header(&mut b, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    b.extend_from_slice(&[AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST]);
    b.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut b, RTA_GATEWAY, &gateway.octets());
    attr(&mut b, RTA_OIF, &index.to_ne_bytes());
    finish(b)
}

/// The kernel's answer to request `seq` in `buf`: `Some(Ok)` for an ack,
/// `Some(Err)` with the errno it carries, `None` when `buf` holds no
/// answer to `seq` (an announcement). The parser is the formats crate's
/// (fuzzed there).
pub fn ack(buf: &[u8], seq: u32) -> Option<io::Result<()>> {
    nixlive_formats::net::netlink::ack(buf, seq).map(|r| r.map_err(io::Error::from_raw_os_error))
}

/// A route netlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: std::cell::Cell<u32>,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
        Ok(Netlink {
            fd,
            seq: std::cell::Cell::new(1),
        })
    }

    /// A socket that hears link changes (for waiting on a carrier).
    pub fn listen_links() -> io::Result<OwnedFd> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None, // NETLINK_ROUTE
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, GROUP_LINK))?;
        Ok(fd)
    }

    fn request(&self, make: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let msg = make(seq);
        rustix::net::sendto(
            &self.fd,
            &msg,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )?;
        let mut buf = vec![0u8; 8192];
        // The kernel answers at once; a bound on the reads all the same.
        for _ in 0..16 {
            let (n, _) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            if let Some(r) = ack(&buf[..n.min(buf.len())], seq) {
                return r;
            }
        }
        Err(io::Error::other("no answer from the kernel"))
    }

    pub fn link_up(&self, index: u32) -> io::Result<()> {
        self.request(|seq| link_up_msg(seq, index))
    }

    pub fn add_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.request(|seq| add_address_msg(seq, index, addr, prefix))
    }

    pub fn add_default_route(&self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        self.request(|seq| default_route_msg(seq, index, gateway))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixlive_formats::net::netlink::NLMSG_ERROR;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn link_up_bytes() {
        let m = link_up_msg(7, 2);
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()), 32);
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 2);
        assert_eq!(&m[24..28], &IFF_UP.to_ne_bytes());
        assert_eq!(&m[28..32], &IFF_UP.to_ne_bytes());
    }

    #[test]
    fn address_and_route_bytes() {
        let m = add_address_msg(1, 2, Ipv4Addr::new(10, 0, 2, 15), 24);
        assert_eq!(m.len(), 16 + 8 + 3 * 8);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        // IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST, each 8 bytes.
        assert_eq!(u16_at(&m, 26), IFA_LOCAL);
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
        assert_eq!(u16_at(&m, 34), IFA_ADDRESS);
        assert_eq!(u16_at(&m, 42), IFA_BROADCAST);
        assert_eq!(&m[44..48], &[10, 0, 2, 255]);
        assert_eq!(
            add_address_msg(1, 2, Ipv4Addr::new(10, 0, 0, 1), 32).len(),
            40
        );
        let r = default_route_msg(3, 2, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(r.len(), 16 + 12 + 8 + 8);
        assert_eq!(&r[16..24], &[AF_INET, 0, 0, 0, 254, 3, 0, 1]);
        assert_eq!(u16_at(&r, 30), RTA_GATEWAY);
        assert_eq!(&r[32..36], &[10, 0, 2, 2]);
        assert_eq!(u16_at(&r, 38), RTA_OIF);
    }

    #[test]
    fn acks() {
        let mut a = Vec::new();
        // An announcement first, then the error message for seq 5.
        a.extend_from_slice(&link_up_msg(0, 1));
        let mut e = Vec::new();
        e.extend_from_slice(&36u32.to_ne_bytes());
        e.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e.extend_from_slice(&0u16.to_ne_bytes());
        e.extend_from_slice(&5u32.to_ne_bytes());
        e.extend_from_slice(&0u32.to_ne_bytes());
        e.extend_from_slice(&(-17i32).to_ne_bytes());
        e.extend_from_slice(&[0; 16]);
        a.extend_from_slice(&e);
        let r = ack(&a, 5).unwrap().unwrap_err();
        assert_eq!(r.raw_os_error(), Some(17));
        assert!(ack(&a, 6).is_none());
        e[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert!(ack(&e, 5).unwrap().is_ok());
        assert!(ack(&e[..10], 5).is_none());
    }
}

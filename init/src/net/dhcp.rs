//! The DHCPv4 client: DISCOVER, OFFER, REQUEST, ACK on one interface,
//! retransmitting with backoff (RFC 2131 4.1: 4 s doubling, here from 1 s
//! since a boot waits) until the deadline. The messages are
//! [`nixlive_formats::net::dhcp`]'s.

use super::NetError;
use super::link::Iface;
use nixlive_formats::net::dhcp::{self, MsgType, Reply};
use nixlive_formats::net::mask_to_prefix;
use rustix::fd::AsFd;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
}

impl Lease {
    pub fn from_ack(r: &Reply) -> Lease {
        Lease {
            addr: r.yiaddr,
            prefix: r.mask.and_then(mask_to_prefix).unwrap_or(24),
            gateway: r.routers.first().copied(),
            dns: r.dns.clone(),
            server: r.server_id,
            lease_secs: r.lease_secs,
        }
    }
}

/// A transaction id: the clock's nanoseconds mixed with the MAC.
fn xid(mac: [u8; 6]) -> u32 {
    let t = crate::kmsg::uptime().as_nanos() as u32;
    let m = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    t ^ m.rotate_left(13)
}

const MAX_NAKS: u32 = 3;

/// A lease for `iface`, or why not by `deadline`.
pub fn lease(
    iface: &Iface,
    deadline: Option<Instant>,
    budget: Option<Duration>,
) -> Result<Lease, NetError> {
    let sock_err = |what: &str| {
        let what = format!("{what} (DHCP on {})", iface.name);
        move |source| NetError::Socket { what, source }
    };
    let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], dhcp::CLIENT_PORT)))
        .map_err(sock_err("binding UDP port 68"))?;
    sock.set_broadcast(true).map_err(sock_err("SO_BROADCAST"))?;
    crate::sys::bind_to_device(sock.as_fd(), &iface.name).map_err(sock_err("SO_BINDTODEVICE"))?;
    let to = SocketAddr::from(([255, 255, 255, 255], dhcp::SERVER_PORT));
    let mac = iface.mac;
    let mut sent = 0u32;
    let mut naks = 0u32;
    let mut wait = Duration::from_secs(1);
    let mut offer: Option<Reply> = None;
    let x = xid(mac);
    log::info!("network: DHCP on {} (xid {x:#010x})", iface.name);
    loop {
        let msg = match &offer {
            None => dhcp::discover(x, mac),
            Some(o) => dhcp::request(x, mac, o),
        };
        sock.send_to(&msg, to).map_err(sock_err("sending"))?;
        sent += 1;
        let round_end = Instant::now() + wait;
        let mut buf = [0u8; 1500];
        loop {
            let now = Instant::now();
            let until = deadline.map_or(round_end, |d| d.min(round_end));
            let Some(left) = until.checked_duration_since(now).filter(|l| !l.is_zero()) else {
                break;
            };
            // not fatal: a failure just reads without that bound, ended by the next read.
            let _ = sock.set_read_timeout(Some(left));
            let n = match sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(_) => continue,
            };
            let r = match Reply::parse(&buf[..n], x, mac) {
                Ok(r) => r,
                Err(e) => {
                    log::debug!("network: ignoring a DHCP message: {e}");
                    continue;
                }
            };
            match (r.kind, offer.is_some()) {
                (MsgType::Offer, false) => {
                    log::info!(
                        "network: DHCP offer of {} from {}",
                        r.yiaddr,
                        r.server_id.map_or("?".into(), |s| s.to_string())
                    );
                    offer = Some(r);
                    wait = Duration::from_secs(1);
                    break;
                }
                (MsgType::Ack, true) => return Ok(Lease::from_ack(&r)),
                (MsgType::Nak, true) => {
                    naks += 1;
                    let o = offer.take().unwrap_or(r.clone());
                    log::warn!("network: DHCP NAK for {}; starting over", o.yiaddr);
                    if naks >= MAX_NAKS {
                        return Err(NetError::Nak {
                            iface: iface.name.clone(),
                            server: r.server_id.map_or("?".into(), |s| s.to_string()),
                            addr: o.yiaddr,
                            tries: naks,
                        });
                    }
                    break;
                }
                _ => {}
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(NetError::NoLease {
                iface: iface.name.clone(),
                secs: budget.unwrap_or_default().as_secs(),
                sent,
            });
        }
        if Instant::now() >= round_end {
            wait = (wait * 2).min(Duration::from_secs(8));
            if offer.is_some() && sent > 4 {
                // The server stopped answering our REQUEST: discover again.
                offer = None;
            }
        }
    }
}

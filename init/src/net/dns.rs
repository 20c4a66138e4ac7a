//! Resolving the server's name: an IPv4 literal as it is, else a DNS
//! query to each server the lease (or `ip=`) gave, in turn, with a timeout
//! each. No search domains: names are taken as fully qualified.

use super::NetError;
use super::fetch::Resolve;
use nixlive_formats::net::dns::{self, DnsError};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

pub struct Resolver {
    servers: Vec<Ipv4Addr>,
    timeout: Duration,
}

impl Resolver {
    pub fn new(servers: Vec<Ipv4Addr>, timeout: Duration) -> Resolver {
        Resolver {
            servers,
            timeout: timeout.min(Duration::from_secs(3)),
        }
    }

    /// The addresses, or the error and whether it is final (the name does
    /// not exist) rather than this server's failure.
    fn ask(&self, server: Ipv4Addr, host: &str, id: u16) -> Result<Vec<Ipv4Addr>, (bool, String)> {
        let q = dns::query(id, host).map_err(|e| (true, e.to_string()))?;
        let io = |e: std::io::Error| (false, e.to_string());
        let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))).map_err(io)?;
        sock.connect(SocketAddr::from((server, dns::PORT)))
            .map_err(io)?;
        sock.set_read_timeout(Some(self.timeout)).map_err(io)?;
        sock.send(&q).map_err(io)?;
        let mut buf = [0u8; 1500];
        // Replies to other ids (late answers) are skipped; a few at most.
        for _ in 0..4 {
            let n = sock.recv(&mut buf).map_err(io)?;
            return match dns::answer(&buf[..n], id) {
                Err(DnsError::OtherId { .. }) => continue,
                Ok(a) => Ok(a),
                Err(e @ (DnsError::NoSuchName | DnsError::NoAddress)) => Err((true, e.to_string())),
                Err(e) => Err((false, e.to_string())),
            };
        }
        Err((false, "only answers to other queries".into()))
    }
}

impl Resolve for Resolver {
    fn resolve(&self, host: &str) -> Result<Vec<Ipv4Addr>, NetError> {
        if let Ok(a) = host.parse::<Ipv4Addr>() {
            return Ok(vec![a]);
        }
        if self.servers.is_empty() {
            return Err(NetError::HostNotFound {
                host: host.to_string(),
                why: "no DNS server: the DHCP answer named none; use an IP address in \
                      nixlive.url= or give one in ip=...:DNS0"
                    .into(),
            });
        }
        let id = (crate::kmsg::uptime().as_nanos() as u16) ^ 0x5a5a;
        let mut tried = Vec::new();
        for s in &self.servers {
            match self.ask(*s, host, id) {
                Ok(a) => {
                    log::info!("network: {host} is {a:?} (DNS {s})");
                    return Ok(a);
                }
                Err((true, e)) => {
                    return Err(NetError::HostNotFound {
                        host: host.to_string(),
                        why: format!("DNS server {s}: {e}"),
                    });
                }
                Err((false, e)) => tried.push(format!("{s}: {e}")),
            }
        }
        Err(NetError::NoDns {
            host: host.to_string(),
            servers: tried.join("; "),
            hint: "",
        })
    }
}

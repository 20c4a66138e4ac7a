//! Booting over HTTP (`nixlive.url=`): bringing an interface up
//! ([`link`], [`netlink`]), an address from DHCP ([`dhcp`]) or `ip=`,
//! names through DNS ([`dns`]), then the manifest and the images over
//! HTTP ([`fetch`]), each image written once, into the tmpfs it is
//! loop-mounted from. The plan's [`crate::plan::Step::Fetch`] steps run
//! through [`fetch_image`]; what the network is ([`Session`]) is set once
//! by [`up`].
//!
//! Every wait has a deadline: `nixlive.net_timeout=` (default
//! `nixlive.timeout=`) for a carrier, a lease, a server that answers, a
//! body that moves.

pub mod dhcp;
pub mod dns;
pub mod fetch;
pub mod link;
pub mod netlink;
pub mod plan;

use crate::error::BootError;
use fetch::{Budget, Progress, Size, Want};
use nixlive_formats::net::ipconf::IpConfig;
use nixlive_formats::net::url::Url;
use nixlive_formats::{Cmdline, Timeout};
use std::io;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    #[error(
        "nixlive.url= needs the network, but ip=off: drop ip=off or give ip=dhcp \
         (or ip=ADDR::GW:MASK::IFACE:off)"
    )]
    Off,
    #[error(
        "no network interface{which} appeared within {secs} s: the initrd needs the NIC's \
         driver (the builder's `net` module set, or nixlive.modules=)"
    )]
    NoInterface { which: String, secs: u64 },
    #[error(
        "no carrier on {ifaces} within {secs} s: is the cable plugged in and the switch \
         port up? (wait longer with nixlive.net_timeout=SECONDS)"
    )]
    NoCarrier { ifaces: String, secs: u64 },
    #[error(
        "no DHCP answer on {iface} within {secs} s ({sent} requests sent): is a DHCP server \
         on this network? (or set an address with ip=ADDR::GW:MASK::{iface}:off)"
    )]
    NoLease { iface: String, secs: u64, sent: u32 },
    #[error("the DHCP server {server} refused the address {addr} on {iface} (NAK) {tries} times")]
    Nak {
        iface: String,
        server: String,
        addr: Ipv4Addr,
        tries: u32,
    },
    #[error("{what} on {iface}")]
    Netlink {
        what: String,
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}")]
    Socket {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("host not found: {host} ({why})")]
    HostNotFound { host: String, why: String },
    #[error("cannot resolve {host}: no DNS server answered ({servers}){hint}")]
    NoDns {
        host: String,
        servers: String,
        hint: &'static str,
    },
    #[error("{url}: cannot connect to {addr}")]
    Connect {
        url: String,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{url}: {what}")]
    Io {
        url: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{url}: the transfer stalled (no byte for {secs:.1} s)")]
    Stalled { url: String, secs: f64 },
    #[error("{url}: HTTP {status} {reason}{hint}")]
    Status {
        url: String,
        status: u16,
        reason: String,
        hint: &'static str,
    },
    #[error("{url}: {why}")]
    BadResponse { url: String, why: String },
    #[error("{url}: a redirect to an unusable place: {why}")]
    BadRedirect { url: String, why: String },
    #[error("redirect loop: {chain}")]
    RedirectLoop { chain: String },
    #[error(
        "{what}: {url} serves {served} bytes, but the manifest says {want}: the server has \
         another file than the manifest lists"
    )]
    Length {
        what: String,
        url: String,
        served: u64,
        want: u64,
    },
    #[error("{url}: more than {limit} bytes: not a manifest nixlive wrote")]
    TooLarge { url: String, limit: u64 },
    #[error(
        "{what}: {url} has sha256 {got}, but the manifest says {want}: refused (the file on \
         the server is damaged or was changed, or it was changed in transit)"
    )]
    Digest {
        what: String,
        url: String,
        want: String,
        got: String,
    },
    #[error(
        "the images need {need_mib} MiB of RAM plus {reserve_mib} MiB to run, but only \
         {avail_mib} MiB are available: boot this set on a machine with more memory, or from \
         a medium"
    )]
    NoRoom {
        need_mib: u64,
        reserve_mib: u64,
        avail_mib: u64,
    },
    #[error("{url}: writing")]
    Write {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("{url}: gave up after {attempts} attempts with no progress for {secs} s")]
    GaveUp {
        url: String,
        secs: u64,
        attempts: u32,
        #[source]
        last: Box<NetError>,
    },
}

/// What the network is, once up: for the log, `stage1.json` and the fetches.
#[derive(Debug, Clone)]
pub struct Session {
    pub iface: String,
    pub mac: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// `dhcp` (with the server and the lease) or `static`.
    pub method: String,
    pub server: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub budget: Option<Duration>,
}

impl Session {
    /// Key/value pairs for `stage1.json`'s `net` object.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut kv = vec![
            ("interface", self.iface.clone()),
            ("mac", self.mac.clone()),
            ("method", self.method.clone()),
            ("address", format!("{}/{}", self.addr, self.prefix)),
        ];
        if let Some(g) = self.gateway {
            kv.push(("gateway", g.to_string()));
        }
        let dns: Vec<String> = self.dns.iter().map(|d| d.to_string()).collect();
        kv.push(("dns", dns.join(",")));
        if let Some(s) = self.server {
            kv.push(("dhcp_server", s.to_string()));
        }
        if let Some(l) = self.lease_secs {
            kv.push(("lease_s", l.to_string()));
        }
        kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

static SESSION: OnceLock<Session> = OnceLock::new();

/// `nixlive.net_timeout=`, else `nixlive.timeout=` (`None`: forever).
pub fn budget(cmdline: &Cmdline) -> Option<Duration> {
    match cmdline.net_timeout.unwrap_or(cmdline.timeout) {
        Timeout::Forever => None,
        Timeout::After(d) => Some(d),
    }
}

/// When `budget` from `now` ends; `None` (forever) when no budget, or one
/// so long the clock cannot hold its end.
pub fn deadline(now: Instant, budget: Option<Duration>) -> Option<Instant> {
    budget.and_then(|b| now.checked_add(b))
}

/// Brings the network up as `ip=` says (DHCP by default) and remembers it.
/// `coldplug` loads drivers for devices that appeared since the last call
/// (a virtio NIC shows up only once virtio_pci is loaded).
pub fn up(cmdline: &Cmdline, coldplug: &mut dyn FnMut()) -> Result<&'static Session, BootError> {
    let budget = budget(cmdline);
    let deadline = deadline(Instant::now(), budget);
    let ip = cmdline.ip.clone().unwrap_or(IpConfig::Dhcp { iface: None });
    let want_iface = match &ip {
        IpConfig::Off => return Err(NetError::Off.into()),
        IpConfig::Dhcp { iface } => iface.clone(),
        IpConfig::Static(s) => s.iface.clone(),
    };
    let nl = netlink::Netlink::open().map_err(|source| NetError::Socket {
        what: "opening a netlink socket".into(),
        source,
    })?;
    let iface = link::wait_for_carrier(&nl, want_iface.as_deref(), deadline, budget, coldplug)?;
    let session = match ip {
        IpConfig::Static(s) => {
            nl.add_address(iface.index, s.addr, s.prefix)
                .map_err(netlink_err("adding the address", &iface.name))?;
            if let Some(gw) = s.gateway {
                nl.add_default_route(iface.index, gw)
                    .map_err(netlink_err("adding the default route", &iface.name))?;
            }
            Session {
                iface: iface.name.clone(),
                mac: iface.mac_string(),
                addr: s.addr,
                prefix: s.prefix,
                gateway: s.gateway,
                dns: s.dns,
                method: "static".into(),
                server: None,
                lease_secs: None,
                budget,
            }
        }
        _ => {
            let lease = dhcp::lease(&iface, deadline, budget)?;
            nl.add_address(iface.index, lease.addr, lease.prefix)
                .map_err(netlink_err("adding the address", &iface.name))?;
            if let Some(gw) = lease.gateway {
                nl.add_default_route(iface.index, gw)
                    .map_err(netlink_err("adding the default route", &iface.name))?;
            }
            Session {
                iface: iface.name.clone(),
                mac: iface.mac_string(),
                addr: lease.addr,
                prefix: lease.prefix,
                gateway: lease.gateway,
                dns: lease.dns,
                method: "dhcp".into(),
                server: lease.server,
                lease_secs: lease.lease_secs,
                budget,
            }
        }
    };
    log::info!(
        "network: {} ({}) {} {}/{} gateway {} dns {:?}{}",
        session.iface,
        session.mac,
        session.method,
        session.addr,
        session.prefix,
        session.gateway.map_or("none".into(), |g| g.to_string()),
        session.dns,
        match (session.server, session.lease_secs) {
            (Some(s), Some(l)) => format!(" from {s}, lease {l} s"),
            (Some(s), None) => format!(" from {s}"),
            _ => String::new(),
        }
    );
    Ok(SESSION.get_or_init(|| session))
}

fn netlink_err<'a>(what: &'a str, iface: &'a str) -> impl FnOnce(io::Error) -> NetError + 'a {
    move |source| NetError::Netlink {
        what: what.to_string(),
        iface: iface.to_string(),
        source,
    }
}

fn fetch_budget(idle: Option<Duration>) -> Budget {
    Budget {
        idle,
        read: idle.map_or(Duration::from_secs(10), |b| b.min(Duration::from_secs(10))),
        backoff: Duration::from_millis(250),
    }
}

/// The manifest at `url`, as text (at most [`fetch::MAX_MANIFEST`] bytes).
pub fn fetch_manifest(url: &Url) -> Result<String, BootError> {
    let s = SESSION.get();
    let budget = fetch_budget(s.and_then(|s| s.budget));
    let resolver = dns::Resolver::new(s.map(|s| s.dns.clone()).unwrap_or_default(), budget.read);
    let mut body = Vec::new();
    let want = Want {
        what: "the manifest",
        size: Size::AtMost(fetch::MAX_MANIFEST),
        sha256: "",
    };
    fetch::fetch(url, &want, &mut body, &budget, &resolver, &mut Quiet)?;
    let text = String::from_utf8(body).map_err(|_| NetError::BadResponse {
        url: url.to_string(),
        why: "the manifest is not UTF-8 text".into(),
    })?;
    log::info!("fetched the manifest {url} ({} bytes)", text.len());
    Ok(text)
}

/// `Step::Fetch`: one image into `to`, checked against its size and SHA-256.
pub fn fetch_image(
    url: &str,
    to: &str,
    sha256: &str,
    size: u64,
    done: u64,
    total: u64,
) -> Result<(), BootError> {
    let url = Url::parse(url).map_err(|e| NetError::BadResponse {
        url: url.to_string(),
        why: e.to_string(),
    })?;
    let s = SESSION.get();
    let budget = fetch_budget(s.and_then(|s| s.budget));
    let resolver = dns::Resolver::new(s.map(|s| s.dns.clone()).unwrap_or_default(), budget.read);
    let mut file = std::fs::File::create(to).map_err(BootError::sys("create", to))?;
    let what = to.rsplit('/').next().unwrap_or(to);
    let want = Want {
        what,
        size: Size::Exactly(size),
        sha256,
    };
    let mut progress = Line::new(done, total);
    let r = fetch::fetch(&url, &want, &mut file, &budget, &resolver, &mut progress);
    progress.end();
    r?;
    log::info!("{what}: {size} bytes from {url}, sha256 verified");
    Ok(())
}

struct Quiet;

impl Progress for Quiet {
    fn bytes(&mut self, _: u64) {}
    fn resumed(&mut self, url: &Url, from: u64, why: &str) {
        log::warn!("{url}: {why}; resuming at byte {from}");
    }
}

/// The console's progress line over all images.
struct Line {
    done: u64,
    total: u64,
    start: Instant,
    last_pct: u64,
    got: u64,
    console: Box<dyn io::Write>,
}

impl Line {
    fn new(done: u64, total: u64) -> Line {
        Line {
            done,
            total,
            start: Instant::now(),
            last_pct: u64::MAX,
            got: 0,
            console: crate::console::writer(),
        }
    }

    fn end(&mut self) {
        if self.done + self.got >= self.total {
            // not fatal: the progress line is a courtesy.
            let _ = writeln!(self.console);
        }
    }
}

/// `fetching: 45% (123 MiB of 273 MiB, 40.2 MB/s)`.
pub fn progress_line(done: u64, total: u64, got: u64, secs: f64) -> String {
    crate::console::progress_line("fetching", done, total, got, secs, false)
}

impl Progress for Line {
    fn bytes(&mut self, got: u64) {
        self.got = got;
        let done = self.done + got;
        let pct = done * 100 / self.total.max(1);
        if pct != self.last_pct {
            self.last_pct = pct;
            let secs = self.start.elapsed().as_secs_f64();
            // not fatal: the progress line is a courtesy.
            let _ = write!(
                self.console,
                "\r{}",
                progress_line(done, self.total, got, secs)
            );
        }
    }

    fn resumed(&mut self, url: &Url, from: u64, why: &str) {
        let _ = writeln!(self.console);
        log::warn!("{url}: {why}; resuming with Range from byte {from}");
        self.last_pct = u64::MAX;
    }
}

/// The manifest at `url`: fetched and parsed, with its text for the
/// signature check ([`crate::trust::authenticate`], which the caller makes
/// before any image is fetched).
pub fn manifest(url: &Url) -> Result<crate::medium::ReadManifest, BootError> {
    let text = fetch_manifest(url)?;
    let m = nixlive_formats::Manifest::parse(&text).map_err(|source| BootError::Manifest {
        path: url.to_string(),
        source,
    })?;
    log::info!(
        "manifest {url}: {} image(s), init {}",
        m.images.len(),
        m.init
    );
    Ok(crate::medium::ReadManifest {
        manifest: m,
        text: Some(text),
        path: url.to_string(),
    })
}

/// Refuses images that cannot fit in RAM, before fetching a byte.
pub fn fits(size: u64) -> Result<(), BootError> {
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| crate::copytoram::mem_available(&t));
    match avail {
        Some(a) => Ok(room(size, a)?),
        // Without /proc/meminfo the tmpfs's own size limit still holds.
        None => Ok(()),
    }
}

/// A tmpfs of `size` bytes for the fetched images fits in `avail` bytes
/// with what copytoram keeps free for the running system
/// ([`crate::copytoram::RESERVE`]).
pub fn room(size: u64, avail: u64) -> Result<(), NetError> {
    let reserve = crate::copytoram::RESERVE;
    if size.checked_add(reserve).is_none_or(|need| need > avail) {
        return Err(NetError::NoRoom {
            need_mib: size >> 20,
            reserve_mib: reserve >> 20,
            avail_mib: avail >> 20,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2^63 s (or any budget the clock cannot add) is forever, never a panic.
    #[test]
    fn a_budget_past_the_clock_is_forever() {
        let now = Instant::now();
        assert_eq!(deadline(now, None), None);
        assert_eq!(
            deadline(now, Some(Duration::from_secs(5))),
            Some(now + Duration::from_secs(5))
        );
        for huge in [Duration::from_secs(1 << 63), Duration::MAX] {
            assert_eq!(deadline(now, Some(huge)), None, "{huge:?}");
        }
        let c = Cmdline::parse("nixlive.net_timeout=9223372036854775808");
        assert_eq!(deadline(now, budget(&c)), None);
    }

    /// Fetched images keep copytoram's reserve free, not just their size.
    #[test]
    fn fetched_images_leave_the_reserve_free() {
        let mib = 1u64 << 20;
        assert!(room(100 * mib, 400 * mib).is_ok());
        assert!(room(100 * mib, 356 * mib).is_ok());
        let e = room(100 * mib, 355 * mib).unwrap_err().to_string();
        assert!(
            e.contains("100 MiB of RAM plus 256 MiB") && e.contains("only 355 MiB"),
            "{e}"
        );
        // Before the fix, fits() let this through with 1 MiB to spare.
        assert!(room(100 * mib, 101 * mib).is_err());
        assert!(room(u64::MAX, u64::MAX).is_err());
    }
}

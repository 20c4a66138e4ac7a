//! Which interface: every Ethernet interface under `/sys/class/net` (or
//! the one `ip=` names) is brought up; the first with a carrier is used.
//! Waiting is driven by the kernel's link announcements (netlink), with
//! the deadline as the only timer.

use super::NetError;
use super::netlink::Netlink;
use rustix::event::{PollFd, PollFlags};
use std::path::Path;
use std::time::{Duration, Instant};

const SYS_NET: &str = "/sys/class/net";
const ARPHRD_ETHER: &str = "1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Iface {
    pub fn mac_string(&self) -> String {
        let m: Vec<String> = self.mac.iter().map(|b| format!("{b:02x}")).collect();
        m.join(":")
    }
}

/// `52:54:00:12:34:56` as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The Ethernet interfaces under `sys` (`/sys/class/net`), by name.
pub fn ethernet(sys: &Path) -> Vec<Iface> {
    let mut out: Vec<Iface> = std::fs::read_dir(sys)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let dir = e.path();
                    if name == "lo" || read(&dir, "type").as_deref() != Some(ARPHRD_ETHER) {
                        return None;
                    }
                    Some(Iface {
                        index: read(&dir, "ifindex")?.parse().ok()?,
                        mac: parse_mac(&read(&dir, "address")?)?,
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn carrier(sys: &Path, name: &str) -> bool {
    read(&sys.join(name), "carrier").as_deref() == Some("1")
}

/// Brings the interfaces up and returns the first (by name) with a
/// carrier, waiting for announcements until `deadline`.
pub fn wait_for_carrier(
    nl: &Netlink,
    want: Option<&str>,
    deadline: Option<Instant>,
    budget: Option<Duration>,
    coldplug: &mut dyn FnMut(),
) -> Result<Iface, NetError> {
    let sys = Path::new(SYS_NET);
    // Listen first, so a carrier that comes between the scan and the wait is heard.
    let events = Netlink::listen_links().map_err(|source| NetError::Socket {
        what: "listening for link changes".into(),
        source,
    })?;
    let mut up = std::collections::HashSet::new();
    let mut said = false;
    loop {
        // Drivers for devices that appeared meanwhile (already loaded ones are skipped).
        coldplug();
        let all: Vec<Iface> = ethernet(sys)
            .into_iter()
            .filter(|i| want.is_none_or(|w| w == i.name))
            .collect();
        for i in &all {
            if up.insert(i.name.clone()) {
                match nl.link_up(i.index) {
                    Ok(()) => log::info!("network: {} ({}) up", i.name, i.mac_string()),
                    Err(e) => log::warn!("network: cannot bring {} up: {e}", i.name),
                }
            }
        }
        if let Some(i) = all.iter().find(|i| carrier(sys, &i.name)) {
            log::info!("network: carrier on {}", i.name);
            return Ok(i.clone());
        }
        if !said && !all.is_empty() {
            said = true;
            let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
            log::info!("network: waiting for a carrier on {}", names.join(", "));
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(l) if !l.is_zero() => Some(l),
                _ => {
                    let secs = budget.unwrap_or_default().as_secs();
                    return Err(if all.is_empty() {
                        NetError::NoInterface {
                            which: want.map_or(String::new(), |w| format!(" {w}")),
                            secs,
                        }
                    } else {
                        let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
                        NetError::NoCarrier {
                            ifaces: names.join(", "),
                            secs,
                        }
                    });
                }
            },
            None => None,
        };
        // A new interface (a driver still probing) or a carrier change wakes us.
        // The timeout is capped so an interface whose driver sends no
        // announcement (some do not for the first carrier) is read again.
        let wait = left.map_or(Duration::from_millis(500), |l| {
            l.min(Duration::from_millis(500))
        });
        let mut fds = [PollFd::new(&events, PollFlags::IN)];
        let ts = rustix::time::Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        // not fatal: an interrupted poll just rescans.
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        let mut buf = [0u8; 8192];
        while let Ok((n, _)) =
            rustix::net::recv(&events, &mut buf[..], rustix::net::RecvFlags::DONTWAIT)
        {
            if n == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56\n"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    }

    #[test]
    fn only_ethernet_interfaces_by_name() {
        let d = std::env::temp_dir().join(format!("nixlive-net-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for (name, ty, idx) in [
            ("lo", "772", "1"),
            ("eth1", "1", "3"),
            ("eth0", "1", "2"),
            ("wg0", "65534", "4"),
        ] {
            let i = d.join(name);
            std::fs::create_dir_all(&i).unwrap();
            std::fs::write(i.join("type"), format!("{ty}\n")).unwrap();
            std::fs::write(i.join("ifindex"), format!("{idx}\n")).unwrap();
            std::fs::write(i.join("address"), "52:54:00:12:34:56\n").unwrap();
        }
        std::fs::write(d.join("eth1/carrier"), "1\n").unwrap();
        let all = ethernet(&d);
        let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(all[0].index, 2);
        assert!(carrier(&d, "eth1") && !carrier(&d, "eth0"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

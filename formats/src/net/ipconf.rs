//! The kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//! `ip=dhcp` (or `on`, `any`, `both`, `bootp`), `ip=off`/`none`, or
//! `ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:DNS1:NTP0`
//! where every field may be empty. A netmask may also be a prefix length
//! (`24`), as dracut accepts.

use super::mask_to_prefix;
use std::net::Ipv4Addr;
use thiserror::Error;

/// How init configures the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpConfig {
    /// `ip=off`: no network (an error if `nixlive.url=` needs one).
    Off,
    /// DHCPv4, on the named interface or the first with a carrier.
    Dhcp {
        iface: Option<String>,
    },
    Static(StaticIp),
}

/// A fixed address from `ip=ADDR::GW:MASK::IFACE:off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub iface: Option<String>,
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum IpConfigError {
    #[error("field {field} ({name}) `{value}` is not an IPv4 address")]
    Addr {
        field: usize,
        name: &'static str,
        value: String,
    },
    #[error("netmask `{0}` is neither a dotted netmask nor a prefix length 0..32")]
    Mask(String),
    #[error("autoconf `{0}` is not one of off, none, on, any, dhcp, bootp, both")]
    Autoconf(String),
    #[error("a static address needs the client address (field 1)")]
    NoAddress,
    #[error("interface name `{0}` is not a Linux interface name")]
    Iface(String),
    #[error("more than 10 fields")]
    TooMany,
}

const NAMES: [&str; 10] = [
    "client", "server", "gateway", "netmask", "hostname", "device", "autoconf", "dns0", "dns1",
    "ntp0",
];

/// A Linux interface name: 1..15 bytes, no `/`, `:`, whitespace.
pub fn valid_iface(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

impl IpConfig {
    pub fn parse(v: &str) -> Result<IpConfig, IpConfigError> {
        if !v.contains(':') && v.parse::<Ipv4Addr>().is_err() {
            return autoconf(v, None, None).map(|c| c.unwrap_or(IpConfig::Dhcp { iface: None }));
        }
        let f: Vec<&str> = v.split(':').collect();
        if f.len() > NAMES.len() {
            return Err(IpConfigError::TooMany);
        }
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let addr = |i: usize| -> Result<Option<Ipv4Addr>, IpConfigError> {
            let s = get(i);
            if s.is_empty() {
                return Ok(None);
            }
            s.parse().map(Some).map_err(|_| IpConfigError::Addr {
                field: i + 1,
                name: NAMES[i],
                value: s.to_string(),
            })
        };
        let iface = match get(5) {
            "" => None,
            d if valid_iface(d) => Some(d.to_string()),
            d => return Err(IpConfigError::Iface(d.to_string())),
        };
        let client = addr(0)?;
        addr(1)?;
        let gateway = addr(2)?;
        let prefix = match get(3) {
            "" => None,
            m => Some(parse_mask(m)?),
        };
        let hostname = Some(get(4)).filter(|h| !h.is_empty()).map(String::from);
        let dns: Vec<Ipv4Addr> = [addr(7)?, addr(8)?].into_iter().flatten().collect();
        addr(9)?;
        if let Some(c) = autoconf(get(6), client, iface.clone())? {
            return Ok(c);
        }
        let addr = client.ok_or(IpConfigError::NoAddress)?;
        Ok(IpConfig::Static(StaticIp {
            addr,
            prefix: prefix.unwrap_or_else(|| classful(addr)),
            gateway,
            hostname,
            iface,
            dns,
        }))
    }
}

/// `Some` when `v` asks for DHCP (or off); `None` for a static address.
fn autoconf(
    v: &str,
    client: Option<Ipv4Addr>,
    iface: Option<String>,
) -> Result<Option<IpConfig>, IpConfigError> {
    match v {
        "off" | "none" => Ok(client.is_none().then_some(IpConfig::Off)),
        // The kernel: an empty autoconf with no address means "any".
        "" if client.is_some() => Ok(None),
        "" | "on" | "any" | "dhcp" | "bootp" | "both" => Ok(Some(IpConfig::Dhcp { iface })),
        o => Err(IpConfigError::Autoconf(o.to_string())),
    }
}

fn parse_mask(m: &str) -> Result<u8, IpConfigError> {
    let bad = || IpConfigError::Mask(m.to_string());
    if let Ok(p) = m.parse::<u8>() {
        return (p <= 32).then_some(p).ok_or_else(bad);
    }
    let mask: Ipv4Addr = m.parse().map_err(|_| bad())?;
    mask_to_prefix(mask).ok_or_else(bad)
}

/// The kernel's default netmask when none is given: by address class.
fn classful(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_and_off() {
        for v in ["dhcp", "on", "any", "both", "bootp", "", "::::::dhcp"] {
            assert_eq!(
                IpConfig::parse(v),
                Ok(IpConfig::Dhcp { iface: None }),
                "{v}"
            );
        }
        assert_eq!(
            IpConfig::parse(":::::eth1:dhcp"),
            Ok(IpConfig::Dhcp {
                iface: Some("eth1".into())
            })
        );
        assert_eq!(IpConfig::parse("off"), Ok(IpConfig::Off));
        assert_eq!(IpConfig::parse("none"), Ok(IpConfig::Off));
        assert_eq!(
            IpConfig::parse("nope"),
            Err(IpConfigError::Autoconf("nope".into()))
        );
    }

    #[test]
    fn static_address() {
        let c = IpConfig::parse("10.0.2.15::10.0.2.2:255.255.255.0::eth0:off").unwrap();
        assert_eq!(
            c,
            IpConfig::Static(StaticIp {
                addr: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                hostname: None,
                iface: Some("eth0".into()),
                dns: vec![],
            })
        );
        let c = IpConfig::parse("192.168.1.5:::16:live::none:1.1.1.1:8.8.8.8").unwrap();
        let IpConfig::Static(s) = c else { panic!() };
        assert_eq!((s.prefix, s.hostname.as_deref()), (16, Some("live")));
        assert_eq!(s.dns.len(), 2);
        // A bare address, no mask: by class, as the kernel does.
        let IpConfig::Static(s) = IpConfig::parse("172.16.0.9").unwrap() else {
            panic!("static")
        };
        assert_eq!((s.prefix, s.gateway), (16, None));
    }

    #[test]
    fn bad_fields_are_named() {
        let e = IpConfig::parse("10.0.2.300::::::off").unwrap_err();
        assert_eq!(
            e.to_string(),
            "field 1 (client) `10.0.2.300` is not an IPv4 address"
        );
        assert_eq!(
            IpConfig::parse("10.0.0.1:::255.0.255.0:::off"),
            Err(IpConfigError::Mask("255.0.255.0".into()))
        );
        assert_eq!(
            IpConfig::parse("10.0.0.1:::33:::off"),
            Err(IpConfigError::Mask("33".into()))
        );
        assert_eq!(
            IpConfig::parse(":::::eth0:off"),
            Ok(IpConfig::Off),
            "off without an address"
        );
        assert_eq!(
            IpConfig::parse("::10.0.0.1::::"),
            Ok(IpConfig::Dhcp { iface: None }),
            "no address, empty autoconf: any"
        );
        assert!(matches!(
            IpConfig::parse("1:2:3:4:5:6:7:8:9:10:11"),
            Err(IpConfigError::TooMany)
        ));
        assert_eq!(
            IpConfig::parse(":::::a/b:dhcp"),
            Err(IpConfigError::Iface("a/b".into()))
        );
    }
}

//! The network formats init reads and writes when it boots over HTTP, each
//! a pure parser or encoder over bytes and strings (unit-tested and fuzzed):
//!
//! - [`ipconf`]: the kernel's `ip=` parameter;
//! - [`url`]: `http://HOST[:PORT]/PATH` and resolving names relative to it;
//! - [`http`]: an HTTP/1.1 response head (status, length, range, location);
//! - [`dhcp`]: DHCPv4 messages (RFC 2131/2132), the client's side;
//! - [`dns`]: a DNS query for an IPv4 address and its answer (RFC 1035);
//! - [`netlink`]: the kernel's rtnetlink answers to init's requests.

pub mod dhcp;
pub mod dns;
pub mod http;
pub mod ipconf;
pub mod netlink;
pub mod url;

use std::net::Ipv4Addr;

/// Netmask `255.255.255.0` as a prefix length (24); `None` when the ones are not contiguous.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}

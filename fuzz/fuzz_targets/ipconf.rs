#![no_main]
//! `ip=`: any text parses or is refused; a static address has a sane prefix.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::net::ipconf::IpConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(IpConfig::Static(s)) = IpConfig::parse(&text) {
        assert!(s.prefix <= 32);
        assert!(s.dns.len() <= 2);
    }
});

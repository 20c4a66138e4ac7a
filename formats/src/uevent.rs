//! Kernel uevents as the netlink socket delivers them:
//! `ACTION@DEVPATH\0KEY=VALUE\0...`. Pure (fuzzed by `fuzz/uevent`); init's
//! discovery reads the socket and hands each message here.

/// What init needs of one uevent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub modalias: Option<String>,
}

/// Parses one message; what is not understood is skipped (the kernel's
/// format, not a user's, so no errors). The last `MODALIAS=` wins.
pub fn parse(msg: &[u8]) -> Uevent {
    let mut ev = Uevent::default();
    for kv in msg.split(|b| *b == 0) {
        if let Some(a) = kv.strip_prefix(b"MODALIAS=") {
            ev.modalias = Some(String::from_utf8_lossy(a).into_owned());
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        let b = parse(b"add@/devices/x/block/sr0\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sr0\0");
        assert!(b.modalias.is_none());
        let m = parse(
            b"add@/devices/pci0/0000:00:05.0\0ACTION=add\0SUBSYSTEM=pci\0MODALIAS=pci:v00001AF4d00001001\0",
        );
        assert_eq!(m.modalias.as_deref(), Some("pci:v00001AF4d00001001"));
        assert_eq!(parse(b""), Uevent::default());
        // Not UTF-8: kept, lossily.
        assert_eq!(
            parse(b"MODALIAS=\xff").modalias.as_deref(),
            Some("\u{fffd}")
        );
    }
}

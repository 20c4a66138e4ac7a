//! Kernel uevents as the netlink socket delivers them:
//! `ACTION@DEVPATH\0KEY=VALUE\0...`. Pure (fuzzed by `fuzz/uevent`); init's
//! discovery reads the socket and hands each message here.

/// What init needs of one uevent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub modalias: Option<String>,
    /// `ACTION=`: `add`, `remove`, `change`, ...
    pub action: Option<String>,
    /// `SUBSYSTEM=`: `block` for disks and partitions.
    pub subsystem: Option<String>,
    /// `DEVNAME=`: the node's name under /dev, e.g. `sr0`.
    pub devname: Option<String>,
    /// `DISK_MEDIA_CHANGE=1`: the medium in a removable drive changed.
    pub media_change: bool,
}

impl Uevent {
    /// The block device this event says something new about (added,
    /// removed, or its medium changed), by name.
    pub fn block_device(&self) -> Option<&str> {
        if self.subsystem.as_deref() != Some("block") {
            return None;
        }
        self.devname.as_deref().filter(|n| !n.is_empty())
    }
}

/// Parses one message; what is not understood is skipped (the kernel's
/// format, not a user's, so no errors). The last of each key wins.
pub fn parse(msg: &[u8]) -> Uevent {
    let mut ev = Uevent::default();
    let text = |v: &[u8]| Some(String::from_utf8_lossy(v).into_owned());
    for kv in msg.split(|b| *b == 0) {
        if let Some(a) = kv.strip_prefix(b"MODALIAS=") {
            ev.modalias = text(a);
        } else if let Some(a) = kv.strip_prefix(b"ACTION=") {
            ev.action = text(a);
        } else if let Some(a) = kv.strip_prefix(b"SUBSYSTEM=") {
            ev.subsystem = text(a);
        } else if let Some(a) = kv.strip_prefix(b"DEVNAME=") {
            // Sometimes given with its directory (`/dev/sr0`, `disk/x`).
            ev.devname = text(a.strip_prefix(b"/dev/").unwrap_or(a));
        } else if kv == b"DISK_MEDIA_CHANGE=1" {
            ev.media_change = true;
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
        let c = parse(
            b"change@/devices/pci0/ata2/host1/target1:0:0/1:0:0:0/block/sr0\0ACTION=change\0\
              SUBSYSTEM=block\0DEVNAME=sr0\0DEVTYPE=disk\0DISK_MEDIA_CHANGE=1\0",
        );
        assert_eq!(c.action.as_deref(), Some("change"));
        assert!(c.media_change);
        assert_eq!(c.block_device(), Some("sr0"));
        assert_eq!(b.block_device(), Some("sr0"));
        assert_eq!(m.block_device(), None, "a PCI device is not a block device");
        assert_eq!(
            parse(b"SUBSYSTEM=block\0DEVNAME=/dev/vda1\0").block_device(),
            Some("vda1")
        );
        assert_eq!(parse(b"SUBSYSTEM=block\0DEVNAME=\0").block_device(), None);
        // Not UTF-8: kept, lossily.
        assert_eq!(
            parse(b"MODALIAS=\xff").modalias.as_deref(),
            Some("\u{fffd}")
        );
    }
}

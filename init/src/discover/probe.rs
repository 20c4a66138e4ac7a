//! Superblock probes: pure functions from the first bytes of a block device
//! to its filesystem type and label. No I/O here; fixtures are byte arrays.

/// How many bytes of a device the probes need (the ISO9660 primary volume
/// descriptor sits in sector 16 of 2048 bytes).
pub const PROBE_LEN: usize = 16 * 2048 + 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub fstype: &'static str,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

/// Identifies the filesystem whose first bytes are `buf` (shorter buffers
/// simply match nothing).
pub fn identify(buf: &[u8]) -> Option<Identity> {
    iso9660(buf)
}

/// ISO9660: the primary volume descriptor (type 1, "CD001", version 1) at
/// byte 32768; its volume identifier is 32 bytes at offset 40, space padded.
pub fn iso9660(buf: &[u8]) -> Option<Identity> {
    let pvd = buf.get(16 * 2048..17 * 2048)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" || pvd[6] != 1 {
        return None;
    }
    let label = String::from_utf8_lossy(&pvd[40..72])
        .trim_end_matches([' ', '\0'])
        .to_string();
    Some(Identity {
        fstype: "iso9660",
        label: (!label.is_empty()).then_some(label),
        uuid: None,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal ISO9660 head: 16 empty sectors and a primary volume descriptor.
    pub fn iso_head(label: &str) -> Vec<u8> {
        let mut b = vec![0u8; PROBE_LEN];
        let pvd = &mut b[32768..];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[6] = 1;
        let mut id = [b' '; 32];
        id[..label.len()].copy_from_slice(label.as_bytes());
        pvd[40..72].copy_from_slice(&id);
        b
    }

    #[test]
    fn iso_label() {
        let id = identify(&iso_head("NIXLIVE_DEMO")).unwrap();
        assert_eq!(id.fstype, "iso9660");
        assert_eq!(id.label.as_deref(), Some("NIXLIVE_DEMO"));
    }

    #[test]
    fn not_iso() {
        assert_eq!(identify(&vec![0u8; PROBE_LEN]), None);
        assert_eq!(identify(&iso_head("X")[..30000]), None);
        let mut b = iso_head("X");
        b[32768 + 6] = 2;
        assert_eq!(identify(&b), None);
    }
}

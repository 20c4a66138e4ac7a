//! Superblock probes, used by init to find the medium: pure functions from
//! the first bytes of a block device to its filesystem type, label and UUID,
//! and a disk's GPT partition names. No I/O here; fixtures are byte arrays.

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
/// simply match nothing). ISO9660 comes first: an isohybrid image also
/// carries an MBR boot signature that could pass for FAT.
pub fn identify(buf: &[u8]) -> Option<Identity> {
    iso9660(buf).or_else(|| ext(buf)).or_else(|| fat(buf))
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn le64(b: &[u8], o: usize) -> u64 {
    u64::from(le32(b, o)) | (u64::from(le32(b, o + 4)) << 32)
}

fn text_label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let l = String::from_utf8_lossy(&raw[..end]).trim_end().to_string();
    (!l.is_empty()).then_some(l)
}

/// ext2/3/4: superblock at byte 1024, magic 0xEF53 at +56, UUID at +104,
/// volume name at +120 (16 bytes).
pub fn ext(buf: &[u8]) -> Option<Identity> {
    let sb = buf.get(1024..1024 + 256)?;
    if le16(sb, 56) != 0xEF53 {
        return None;
    }
    let compat = le32(sb, 92);
    let incompat = le32(sb, 96);
    // extents, 64bit, flex_bg mean ext4; a journal without them ext3.
    let fstype = if incompat & (0x40 | 0x80 | 0x200) != 0 {
        "ext4"
    } else if compat & 0x4 != 0 {
        "ext3"
    } else {
        "ext2"
    };
    let u = &sb[104..120];
    let hex = crate::hex::encode(u);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    Some(Identity {
        fstype,
        label: text_label(&sb[120..136]),
        uuid: Some(uuid),
    })
}

/// FAT12/16/32: a boot sector with the 0x55AA signature and an extended boot
/// signature (0x29); the volume ID is the UUID (`ABCD-1234`), `NO NAME` means no label.
pub fn fat(buf: &[u8]) -> Option<Identity> {
    let bs = buf.get(..512)?;
    if bs[510] != 0x55 || bs[511] != 0xAA {
        return None;
    }
    let bytes_per_sector = le16(bs, 11);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) || bs[13] == 0 {
        return None;
    }
    // FAT32 has sectors-per-FAT (16 bit) zero and its extended fields at 64.
    let ext_at = if le16(bs, 22) == 0 && &bs[82..87] == b"FAT32" {
        64
    } else if &bs[54..57] == b"FAT" {
        36
    } else {
        return None;
    };
    if bs[ext_at + 2] != 0x29 {
        return None;
    }
    let id = le32(bs, ext_at + 3);
    let label = text_label(&bs[ext_at + 7..ext_at + 18]).filter(|l| l != "NO NAME");
    Some(Identity {
        fstype: "vfat",
        label,
        uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)),
    })
}

/// GPT partition names, indexed by partition number - 1 (empty names kept
/// as empty strings). Assumes 512-byte logical sectors and that the entries
/// lie within `buf`.
pub fn gpt_names(buf: &[u8]) -> Option<Vec<String>> {
    let hdr = buf.get(512..512 + 92)?;
    if &hdr[..8] != b"EFI PART" {
        return None;
    }
    let start = usize::try_from(le64(hdr, 72)).ok()?.checked_mul(512)?;
    let count = le32(hdr, 80) as usize;
    let size = le32(hdr, 84) as usize;
    if size < 128 || count > 1024 {
        return None;
    }
    let mut names = Vec::new();
    for i in 0..count {
        let Some(e) = start
            .checked_add(i * size)
            .and_then(|o| buf.get(o..o + 128))
        else {
            break;
        };
        if e[..16].iter().all(|b| *b == 0) {
            names.push(String::new());
            continue;
        }
        let units: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        names.push(String::from_utf16_lossy(&units));
    }
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    Some(names)
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
    fn ext4_label_and_uuid() {
        let mut b = vec![0u8; 4096];
        let sb = &mut b[1024..];
        sb[56..58].copy_from_slice(&0xEF53u16.to_le_bytes());
        sb[96..100].copy_from_slice(&0x2c2u32.to_le_bytes());
        for (i, x) in sb[104..120].iter_mut().enumerate() {
            *x = i as u8 * 17;
        }
        sb[120..127].copy_from_slice(b"rescue1");
        let id = identify(&b).unwrap();
        assert_eq!(id.fstype, "ext4");
        assert_eq!(id.label.as_deref(), Some("rescue1"));
        assert_eq!(
            id.uuid.as_deref(),
            Some("00112233-4455-6677-8899-aabbccddeeff")
        );
    }

    pub fn fat32_head(label: &[u8; 11], id: u32) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 8;
        b[66] = 0x29;
        b[67..71].copy_from_slice(&id.to_le_bytes());
        b[71..82].copy_from_slice(label);
        b[82..90].copy_from_slice(b"FAT32   ");
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn fat32_label_and_id() {
        let id = identify(&fat32_head(b"NIXLIVE_USB", 0x1234ABCD)).unwrap();
        assert_eq!(id.fstype, "vfat");
        assert_eq!(id.label.as_deref(), Some("NIXLIVE_USB"));
        assert_eq!(id.uuid.as_deref(), Some("1234-ABCD"));
        let none = identify(&fat32_head(b"NO NAME    ", 1)).unwrap();
        assert_eq!(none.label, None);
    }

    #[test]
    fn fat16_label() {
        let mut b = vec![0u8; 4096];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 4;
        b[22] = 32;
        b[38] = 0x29;
        b[39..43].copy_from_slice(&0xDEADBEEFu32.to_le_bytes());
        b[43..54].copy_from_slice(b"SMALL      ");
        b[54..62].copy_from_slice(b"FAT16   ");
        b[510] = 0x55;
        b[511] = 0xAA;
        let id = identify(&b).unwrap();
        assert_eq!(id.label.as_deref(), Some("SMALL"));
        assert_eq!(id.uuid.as_deref(), Some("DEAD-BEEF"));
    }

    #[test]
    fn gpt_partition_names() {
        let mut b = vec![0u8; PROBE_LEN];
        b[512..520].copy_from_slice(b"EFI PART");
        b[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        b[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        b[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        for (i, name) in ["EFI", "nixlive-live"].iter().enumerate() {
            let e = 1024 + i * 128;
            b[e] = 1; // a non-zero type GUID
            for (j, u) in name.encode_utf16().enumerate() {
                b[e + 56 + 2 * j..e + 58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        assert_eq!(gpt_names(&b).unwrap(), vec!["EFI", "nixlive-live"]);
        assert_eq!(gpt_names(&iso_head("X")), None);
        // A header pointing its entries past the buffer yields what fits.
        b[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(gpt_names(&b), None);
    }

    #[test]
    fn iso_wins_over_mbr_signature() {
        let mut b = iso_head("HYBRID");
        b[510] = 0x55;
        b[511] = 0xAA;
        assert_eq!(identify(&b).unwrap().fstype, "iso9660");
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

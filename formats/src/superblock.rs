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
    iso9660(buf)
        .or_else(|| ext(buf))
        .or_else(|| exfat(buf))
        .or_else(|| ntfs(buf))
        .or_else(|| fat(buf))
}

/// Where a filesystem keeps its label when its first blocks do not hold it
/// (exFAT: a root directory entry; NTFS: the `$Volume` file): read `len`
/// bytes at `offset` and give them to [`LabelAt::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelAt {
    pub offset: u64,
    pub len: usize,
    kind: LabelKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelKind {
    ExfatRootDir,
    NtfsVolumeRecord,
}

/// The most a label read may ask for.
const LABEL_READ_MAX: usize = 64 << 10;

/// For exFAT and NTFS, where their label is (`None` for other filesystems).
pub fn label_at(buf: &[u8]) -> Option<LabelAt> {
    let bs = buf.get(..512)?;
    match &bs[3..11] {
        b"EXFAT   " => {
            let sector = 1u64 << bs[108].min(12);
            let cluster = sector << bs[109].min(25 - bs[108].min(12));
            let root = u64::from(le32(bs, 96)).checked_sub(2)?;
            let offset = u64::from(le32(bs, 88))
                .checked_mul(sector)?
                .checked_add(root.checked_mul(cluster)?)?;
            Some(LabelAt {
                offset,
                len: usize::try_from(cluster).ok()?.min(LABEL_READ_MAX),
                kind: LabelKind::ExfatRootDir,
            })
        }
        b"NTFS    " => {
            let (cluster, record) = ntfs_sizes(bs)?;
            let offset = le64(bs, 0x30)
                .checked_mul(cluster)?
                .checked_add(record.checked_mul(3)?)?;
            Some(LabelAt {
                offset,
                len: usize::try_from(record).ok()?.min(LABEL_READ_MAX),
                kind: LabelKind::NtfsVolumeRecord,
            })
        }
        _ => None,
    }
}

impl LabelAt {
    /// The label in the bytes read at [`LabelAt::offset`].
    pub fn label(&self, bytes: &[u8]) -> Option<String> {
        match self.kind {
            LabelKind::ExfatRootDir => exfat_label(bytes),
            LabelKind::NtfsVolumeRecord => ntfs_volume_name(bytes),
        }
    }
}

fn utf16le(raw: &[u8]) -> Option<String> {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16(&units).ok()?;
    (!s.is_empty()).then_some(s)
}

/// exFAT: "EXFAT   " at 3, the volume serial number (the UUID, `ABCD-1234`)
/// at 100; the label is in the root directory ([`label_at`]).
pub fn exfat(buf: &[u8]) -> Option<Identity> {
    let bs = buf.get(..512)?;
    if &bs[3..11] != b"EXFAT   " || bs[510..512] != [0x55, 0xAA] {
        return None;
    }
    let id = le32(bs, 100);
    Some(Identity {
        fstype: "exfat",
        label: None,
        uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)),
    })
}

/// The volume label entry (type 0x83) among a root directory's 32-byte
/// entries; the directory ends at an entry of type 0.
fn exfat_label(dir: &[u8]) -> Option<String> {
    for e in dir.chunks_exact(32) {
        match e[0] {
            0 => return None,
            0x83 => return utf16le(&e[2..2 + 2 * usize::from(e[1].min(11))]),
            _ => {}
        }
    }
    None
}

/// Cluster and MFT record sizes of an NTFS boot sector.
fn ntfs_sizes(bs: &[u8]) -> Option<(u64, u64)> {
    let sector = u64::from(le16(bs, 11));
    if !matches!(sector, 256..=4096) || !sector.is_power_of_two() {
        return None;
    }
    // Sectors per cluster: 1..=128, or 2^-n for larger clusters.
    let spc = match bs[13] {
        0 => return None,
        n @ 1..=128 => u64::from(n),
        n => 1u64
            .checked_shl(256 - u32::from(n))
            .filter(|v| *v <= 1 << 16)?,
    };
    let cluster = sector * spc;
    // Record size: clusters when positive, 2^-n bytes when negative.
    let record = match bs[0x40] as i8 {
        n @ 1..=127 => cluster.checked_mul(n as u64)?,
        n @ -31..=-1 => 1u64 << (-(n as i32)),
        _ => return None,
    };
    Some((cluster, record))
}

/// NTFS: "NTFS    " at 3, the volume serial number (the UUID, 16 hex
/// digits as blkid prints it) at 0x48; the label is in `$Volume`
/// ([`label_at`]). Mounted with the kernel's `ntfs3`.
pub fn ntfs(buf: &[u8]) -> Option<Identity> {
    let bs = buf.get(..512)?;
    if &bs[3..11] != b"NTFS    " || bs[510..512] != [0x55, 0xAA] {
        return None;
    }
    ntfs_sizes(bs)?;
    Some(Identity {
        fstype: "ntfs3",
        label: None,
        uuid: Some(format!("{:016X}", le64(bs, 0x48))),
    })
}

/// The `$VOLUME_NAME` attribute (type 0x60) of an MFT record, after the
/// record's update sequence fixups (the last two bytes of each sector).
fn ntfs_volume_name(rec: &[u8]) -> Option<String> {
    if rec.len() < 48 || &rec[..4] != b"FILE" {
        return None;
    }
    let mut r = rec.to_vec();
    let usa = usize::from(le16(&r, 4));
    let count = usize::from(le16(&r, 6));
    for i in 1..count {
        let (fix, end) = (usa + 2 * i, 512 * i);
        if fix + 2 > r.len() || end > r.len() {
            return None;
        }
        r[end - 2] = r[fix];
        r[end - 1] = r[fix + 1];
    }
    let mut at = usize::from(le16(&r, 0x14));
    while span(at, 24, r.len()).is_some() {
        let kind = le32(&r, at);
        let len = le32(&r, at + 4);
        if kind == 0xFFFF_FFFF || len < 24 {
            return None;
        }
        let attr = span(at, len, r.len())?;
        // Resident (non-resident flag 0), as $VOLUME_NAME always is.
        if kind == 0x60 && r[at + 8] == 0 {
            let size = le32(&r, at + 0x10);
            let off = at + usize::from(le16(&r, at + 0x14));
            return utf16le(&r[span(off, size, attr.end)?]);
        }
        at = attr.end;
    }
    None
}

/// `at..at + len` when it ends within `total` bytes. Lengths read from the
/// medium are 32 bits, as wide as `usize` on i686: `at + len` is checked,
/// or a hostile length would wrap past the bound (and loop or panic).
fn span(at: usize, len: u32, total: usize) -> Option<std::ops::Range<usize>> {
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    (end <= total).then_some(at..end)
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

/// What an ext2/3/4 superblock says about the filesystem's consistency,
/// for booting it as the root: the kernel replays a journal or an orphan
/// list on mount, which is recovery nixlive leaves to `fsck`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtHealth {
    /// `needs_recovery`: the journal holds transactions not yet written
    /// (the filesystem was not unmounted cleanly).
    pub needs_recovery: bool,
    /// `orphan_present`, or an orphan inode list (`s_last_orphan`):
    /// inodes deleted while open, still to be freed.
    pub orphans: bool,
    /// The kernel recorded errors (`s_state` has `ERROR_FS`).
    pub errors: bool,
}

impl ExtHealth {
    /// Why the filesystem must not be mounted as it is (`None`: it may).
    pub fn refusal(&self) -> Option<&'static str> {
        if self.needs_recovery {
            Some(
                "it needs recovery (needs_recovery: its journal was not replayed after an unclean shutdown)",
            )
        } else if self.orphans {
            Some("it needs recovery (orphan inodes left by an unclean shutdown)")
        } else {
            None
        }
    }
}

/// The consistency flags of an ext2/3/4 superblock (`None`: not ext).
pub fn ext_health(buf: &[u8]) -> Option<ExtHealth> {
    let sb = buf.get(1024..1024 + 256)?;
    if le16(sb, 56) != 0xEF53 {
        return None;
    }
    const STATE_ERROR: u16 = 0x2;
    const INCOMPAT_RECOVER: u32 = 0x4;
    const RO_COMPAT_ORPHAN_PRESENT: u32 = 0x1_0000;
    Some(ExtHealth {
        needs_recovery: le32(sb, 96) & INCOMPAT_RECOVER != 0,
        orphans: le32(sb, 100) & RO_COMPAT_ORPHAN_PRESENT != 0 || le32(sb, 232) != 0,
        errors: le16(sb, 58) & STATE_ERROR != 0,
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
    let count = le32(hdr, 80);
    let size = le32(hdr, 84);
    if size < 128 || count > 1024 {
        return None;
    }
    let mut names = Vec::new();
    for i in 0..count {
        // Checked: `i * size` passes 32 bits, and `start` may be near the top.
        let Some(e) = i
            .checked_mul(size)
            .and_then(|o| start.checked_add(usize::try_from(o).ok()?))
            .and_then(|o| span(o, 128, buf.len()))
            .map(|r| &buf[r])
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

    #[test]
    fn ext_health_flags() {
        let mut b = vec![0u8; 4096];
        assert_eq!(ext_health(&b), None, "not ext");
        b[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        b[1024 + 58] = 1; // clean
        let clean = ext_health(&b).unwrap();
        assert_eq!(clean, ExtHealth::default());
        assert_eq!(clean.refusal(), None);
        let mut r = b.clone();
        r[1024 + 96..1024 + 100].copy_from_slice(&0x2c6u32.to_le_bytes());
        let h = ext_health(&r).unwrap();
        assert!(h.needs_recovery && !h.orphans);
        assert!(h.refusal().unwrap().contains("needs_recovery"));
        let mut o = b.clone();
        o[1024 + 100..1024 + 104].copy_from_slice(&0x1_0000u32.to_le_bytes());
        assert!(
            ext_health(&o)
                .unwrap()
                .refusal()
                .unwrap()
                .contains("orphan")
        );
        let mut o = b.clone();
        o[1024 + 232..1024 + 236].copy_from_slice(&12u32.to_le_bytes());
        assert!(ext_health(&o).unwrap().orphans);
        let mut e = b.clone();
        e[1024 + 58] = 3;
        let h = ext_health(&e).unwrap();
        assert!(
            h.errors && h.refusal().is_none(),
            "errors alone are a warning"
        );
        assert_eq!(ext_health(&b[..1100]), None, "short");
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

    /// A filesystem image made by the real tool, and the bytes init would
    /// read: the head, then the label where [`label_at`] says.
    fn made_by(tool: &str, args: &[&str]) -> (Vec<u8>, Option<String>) {
        let dir = std::env::temp_dir().join(format!("nixlive-sb-{tool}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("fs.img");
        std::fs::write(&img, vec![0u8; 64 << 20]).unwrap();
        let st = std::process::Command::new(tool)
            .args(args)
            .arg(&img)
            .output()
            .unwrap_or_else(|e| panic!("{tool} is needed (exfatprogs, ntfs-3g): {e}"));
        assert!(
            st.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let all = std::fs::read(&img).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let head = all[..PROBE_LEN].to_vec();
        let label = label_at(&head).and_then(|at| {
            let start = usize::try_from(at.offset).unwrap();
            at.label(&all[start..start + at.len])
        });
        (head, label)
    }

    #[test]
    fn exfat_as_mkfs_exfat_makes_it() {
        let (head, label) = made_by("mkfs.exfat", &["-L", "NIXOS LIVE"]);
        let id = identify(&head).unwrap();
        assert_eq!(id.fstype, "exfat");
        assert_eq!(label.as_deref(), Some("NIXOS LIVE"));
        let u = id.uuid.unwrap();
        assert!(u.len() == 9 && u.as_bytes()[4] == b'-', "{u}");
        let (_, none) = made_by("mkfs.exfat", &[]);
        assert_eq!(none, None);
    }

    #[test]
    fn ntfs_as_mkntfs_makes_it() {
        let (head, label) = made_by("mkntfs", &["-q", "-F", "-L", "NIXOS NTFS"]);
        let id = identify(&head).unwrap();
        assert_eq!(id.fstype, "ntfs3");
        assert_eq!(label.as_deref(), Some("NIXOS NTFS"));
        assert_eq!(id.uuid.unwrap().len(), 16);
        // A damaged record gives no label, never a panic.
        let at = label_at(&head).unwrap();
        assert_eq!(at.label(b"FILE\xff\xff"), None);
        assert_eq!(at.label(&[0u8; 1024]), None);
    }

    #[test]
    fn spans_are_checked_near_the_top_of_usize() {
        // What `at + len` would wrap on i686, with its 32-bit `usize`.
        assert_eq!(span(usize::MAX - 4, 16, usize::MAX), None);
        assert_eq!(
            span(usize::MAX - 16, 16, usize::MAX),
            Some(usize::MAX - 16..usize::MAX)
        );
        assert_eq!(span(56, u32::MAX, 1024), None);
        assert_eq!(span(56, 24, 80), Some(56..80));
        assert_eq!(span(57, 24, 80), None);
    }

    /// An MFT record (no fixups) whose first attribute, at 56, is `attr`.
    fn mft_record(attr: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 1024];
        r[..4].copy_from_slice(b"FILE");
        r[0x14] = 56;
        r[56..56 + attr.len()].copy_from_slice(attr);
        r
    }

    /// A resident attribute of type `kind`, `len` bytes long, whose value
    /// of `size` bytes starts 24 bytes in.
    fn resident(kind: u32, len: u32, size: u32) -> Vec<u8> {
        let mut a = vec![0u8; 24];
        a[..4].copy_from_slice(&kind.to_le_bytes());
        a[4..8].copy_from_slice(&len.to_le_bytes());
        a[0x10..0x14].copy_from_slice(&size.to_le_bytes());
        a[0x14] = 24;
        a
    }

    #[test]
    fn ntfs_lengths_that_wrap_on_32_bits_are_refused() {
        let mut name = resident(0x60, 32, 8);
        name.extend(b"n\0t\0f\0s\0".iter());
        assert_eq!(
            ntfs_volume_name(&mft_record(&name)).as_deref(),
            Some("ntfs")
        );
        // An attribute length that takes `at` past 2^32: on i686 it wrapped
        // to a small offset and passed the bound.
        assert_eq!(
            ntfs_volume_name(&mft_record(&resident(0x30, 0xFFFF_FFF0, 0))),
            None
        );
        assert_eq!(
            ntfs_volume_name(&mft_record(&resident(0x60, u32::MAX, 0))),
            None
        );
        // A value size that wrapped the same way, and one that passes the
        // attribute's own end.
        assert_eq!(
            ntfs_volume_name(&mft_record(&resident(0x60, 32, u32::MAX))),
            None
        );
        assert_eq!(
            ntfs_volume_name(&mft_record(&resident(0x60, 32, 0xFFFF_FFE8))),
            None
        );
        assert_eq!(ntfs_volume_name(&mft_record(&resident(0x60, 32, 16))), None);
    }

    #[test]
    fn gpt_entries_past_32_bits_end_the_list() {
        let mut b = vec![0u8; PROBE_LEN];
        b[512..520].copy_from_slice(b"EFI PART");
        b[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        b[512 + 80..512 + 84].copy_from_slice(&1024u32.to_le_bytes());
        b[1024] = 1;
        b[1024 + 56] = b'a';
        // Entries 4 GiB apart: the second lies past the buffer (and past
        // what 32 bits hold from the third on), so the list ends.
        b[512 + 84..512 + 88].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(gpt_names(&b).unwrap(), vec!["a"]);
        // Entries that start near the top of the address space.
        let top = (usize::MAX / 512) as u64;
        b[512 + 72..512 + 80].copy_from_slice(&top.to_le_bytes());
        b[512 + 84..512 + 88].copy_from_slice(&400u32.to_le_bytes());
        assert_eq!(gpt_names(&b).unwrap(), Vec::<String>::new());
    }
}

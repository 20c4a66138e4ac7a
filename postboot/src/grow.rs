//! Growing the root partition to fill its disk (what NixOS's SD images do
//! on the first boot, `boot.growPartition`), asked for with
//! `nixlive.grow_root` or `--grow-root`: the partition table is rewritten
//! (GPT: the root's entry, the last usable sector, the backup header and
//! entries moved to the disk's new end; MBR: the root's entry), the kernel
//! is told the new size (`BLKPG_RESIZE_PARTITION`), and ext4 is grown
//! online (`EXT4_IOC_RESIZE_FS`, as `resize2fs` does on a mounted one).
//!
//! Only the root's partition changes, and only when no other partition
//! follows it on the disk; a table that does not check out (signature,
//! CRCs, sizes) is left alone. Deciding is pure ([`plan_disk`], over the
//! disk's first and last MiB); [`grow_root`] reads and writes.
//!
//! Power may go at any instant, and Linux reads only the primary GPT
//! (the backup only with `gpt` on the command line): so the primary is
//! complete and valid at every instant, and so is a second table. The
//! writes come in steps, each synced before the next: (1) the new backup
//! entries and (2) the new backup header at the disk's new end; (3) the
//! old backup header zeroed and the protective MBR grown; (4) the primary
//! header, now pointing at the backup's entries (one sector: atomic);
//! (5) the new primary entries in their place; (6) the primary header
//! pointing at them. A boot after a cut at any point finds either the old
//! table or the new one, and [`plan_disk`] finishes what was begun (a
//! primary header on the backup's entries is step 4's). After writing,
//! the table is read back and checked. An MBR is one sector.
//!
//! Non-goals: shrinking, moving partitions, filesystems but ext4, disks
//! whose logical sectors are not 512 bytes.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::paths;

const SECTOR: u64 = 512;
/// How much of the disk [`plan`] reads: the MBR, the GPT header and a
/// standard entry array (from LBA 2) fit.
pub const HEAD_LEN: usize = 1 << 20;
/// How much of the disk's end [`plan_disk`] reads: the backup header and
/// its entries.
pub const TAIL_LEN: usize = 1 << 20;
/// Where the primary entries go back to after an interrupted growth left
/// the primary header on the backup's entries (where every tool puts them).
const HOME_LBA: u64 = 2;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GrowError {
    #[error("partition {0} is not in the partition table")]
    NoSuchPartition(u32),
    #[error("partition {other} follows the root's partition {root}: growing would overwrite it")]
    NotLast { root: u32, other: u32 },
    #[error("the GPT does not check out ({0}): leaving it alone")]
    BadGpt(&'static str),
    #[error("the MBR has an extended partition (logical partitions are not grown)")]
    Extended,
    #[error("no partition table (neither GPT nor MBR) on the disk")]
    NoTable,
    #[error("read back after writing, the table is not the one written: {0}")]
    ReadBack(String),
}

/// What [`plan`] decided: the root partition's new end and the steps
/// that write it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    pub table: &'static str,
    /// First sector of the partition.
    pub start: u64,
    /// Sectors before and after (equal when an interrupted growth is
    /// finished: the table already says the new size).
    pub old_sectors: u64,
    pub new_sectors: u64,
    pub steps: Vec<Step>,
}

/// Writes (offset in bytes, contents) that may land in any order; the
/// disk is synced after each step, before the next begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub what: &'static str,
    pub writes: Vec<(u64, Vec<u8>)>,
}

impl Growth {
    /// Every write, in step order.
    pub fn writes(&self) -> impl Iterator<Item = &(u64, Vec<u8>)> {
        self.steps.iter().flat_map(|s| &s.writes)
    }
}

/// The disk as [`plan_disk`] sees it: its first bytes ([`HEAD_LEN`]) and
/// its last ([`TAIL_LEN`]), of a disk of `sectors`.
#[derive(Debug, Clone, Copy)]
pub struct DiskView<'a> {
    pub head: &'a [u8],
    pub tail: &'a [u8],
    pub sectors: u64,
}

impl<'a> DiskView<'a> {
    /// `len` bytes at byte `at`, when they are in the head or the tail.
    fn at(&self, at: u64, len: usize) -> Option<&'a [u8]> {
        let end = at.checked_add(len as u64)?;
        if end <= self.head.len() as u64 {
            return self.head.get(at as usize..end as usize);
        }
        let size = self.sectors.checked_mul(SECTOR)?;
        let tail_start = size.checked_sub(self.tail.len() as u64)?;
        if at >= tail_start && end <= size {
            return self
                .tail
                .get((at - tail_start) as usize..(end - tail_start) as usize);
        }
        None
    }
}

/// CRC-32 (IEEE), as GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn le64(b: &[u8], o: usize) -> u64 {
    u64::from(le32(b, o)) | (u64::from(le32(b, o + 4)) << 32)
}

fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// Decides how partition `partno` (1-based) grows to the end of a disk of
/// `disk_sectors` whose first bytes are `head` ([`HEAD_LEN`], or less for
/// a smaller disk). `Ok(None)`: it fills the disk already.
pub fn plan(head: &[u8], disk_sectors: u64, partno: u32) -> Result<Option<Growth>, GrowError> {
    plan_disk(
        &DiskView {
            head,
            tail: &[],
            sectors: disk_sectors,
        },
        partno,
    )
}

/// [`plan`] over the disk's head and tail: a primary GPT whose entries are
/// the backup's (an interrupted growth) is read, and finished.
pub fn plan_disk(d: &DiskView<'_>, partno: u32) -> Result<Option<Growth>, GrowError> {
    // Sizes in bytes must fit a u64, and a table needs a disk.
    if !(2..=u64::MAX / SECTOR).contains(&d.sectors) {
        return Err(GrowError::NoTable);
    }
    let mbr = d.head.get(..512).ok_or(GrowError::NoTable)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Err(GrowError::NoTable);
    }
    if d.head.get(512..520) == Some(b"EFI PART") {
        return gpt(d, partno);
    }
    mbr_plan(mbr, d.sectors, partno)
}

/// A GPT header that checks out (signature, size, CRC, its own place) and
/// its entry array (CRC).
struct Gpt<'a> {
    header: &'a [u8],
    /// The header's size, as it says.
    size: usize,
    entries: &'a [u8],
    entries_lba: u64,
    count: usize,
    esize: usize,
}

/// Reads and checks the GPT header at `lba` and its entries.
fn read_gpt<'a>(d: &DiskView<'a>, lba: u64) -> Result<Gpt<'a>, GrowError> {
    let h = d
        .at(lba.saturating_mul(SECTOR), SECTOR as usize)
        .ok_or(GrowError::BadGpt("header cut short"))?;
    if &h[..8] != b"EFI PART" {
        return Err(GrowError::BadGpt("signature"));
    }
    let size = le32(h, 12) as usize;
    if !(92..=512).contains(&size) {
        return Err(GrowError::BadGpt("header size"));
    }
    let mut check = h[..size].to_vec();
    put32(&mut check, 16, 0);
    if crc32(&check) != le32(h, 16) {
        return Err(GrowError::BadGpt("header CRC"));
    }
    if le64(h, 24) != lba {
        return Err(GrowError::BadGpt(if lba == 1 {
            "not the primary header"
        } else {
            "not the backup header"
        }));
    }
    let entries_lba = le64(h, 72);
    let count = le32(h, 80) as usize;
    let esize = le32(h, 84) as usize;
    if esize < 128 || !esize.is_multiple_of(8) || count == 0 || count > 4096 {
        return Err(GrowError::BadGpt("entry array size"));
    }
    let entries = d
        .at(entries_lba.saturating_mul(SECTOR), count * esize)
        .ok_or(GrowError::BadGpt(
            "entry array beyond the first and last MiB",
        ))?;
    if crc32(entries) != le32(h, 88) {
        return Err(GrowError::BadGpt("entry array CRC"));
    }
    Ok(Gpt {
        header: h,
        size,
        entries,
        entries_lba,
        count,
        esize,
    })
}

fn gpt(d: &DiskView<'_>, partno: u32) -> Result<Option<Growth>, GrowError> {
    let disk_sectors = d.sectors;
    let Gpt {
        header: h,
        size,
        entries,
        entries_lba,
        count,
        esize,
    } = read_gpt(d, 1)?;
    let entries_len = count * esize;
    let entries_sectors = (entries_len as u64).div_ceil(SECTOR);
    let idx = (partno as usize)
        .checked_sub(1)
        .filter(|i| *i < count)
        .ok_or(GrowError::NoSuchPartition(partno))?;
    let used = |i: usize| entries[i * esize..i * esize + 16].iter().any(|b| *b != 0);
    if !used(idx) {
        return Err(GrowError::NoSuchPartition(partno));
    }
    let e = &entries[idx * esize..];
    let (start, end) = (le64(e, 32), le64(e, 40));
    if end < start {
        return Err(GrowError::BadGpt("partition ends before it starts"));
    }
    for i in (0..count).filter(|&i| i != idx && used(i)) {
        if le64(&entries[i * esize..], 32) > start {
            return Err(GrowError::NotLast {
                root: partno,
                other: i as u32 + 1,
            });
        }
    }
    let last = disk_sectors - 1;
    let last_usable = last
        .checked_sub(entries_sectors + 1)
        .ok_or(GrowError::BadGpt("disk too small"))?;
    let backup_entries = last - entries_sectors;
    let first_usable = le64(h, 40);
    // Step 4 of an earlier run: the primary header on the backup's entries.
    let interrupted = entries_lba == backup_entries && le64(h, 32) == last;
    // Where the primary entries belong: where they are, unless they are
    // the backup's; then where every tool puts them.
    let home = if interrupted { HOME_LBA } else { entries_lba };
    let home_fits = home >= 2 && home + entries_sectors <= first_usable;
    let header = |entries: &[u8], my: u64, alt: u64, at: u64| {
        let mut s = h.to_vec();
        put64(&mut s, 24, my);
        put64(&mut s, 32, alt);
        put64(&mut s, 48, last_usable);
        put64(&mut s, 72, at);
        put32(&mut s, 88, crc32(entries));
        put32(&mut s, 16, 0);
        let crc = crc32(&s[..size]);
        put32(&mut s, 16, crc);
        s
    };
    if end >= last_usable || last_usable <= start {
        if !(interrupted && home_fits && end == last_usable) {
            return Ok(None);
        }
        // The table says the new size already: finish steps 5 and 6.
        return Ok(Some(Growth {
            table: "GPT",
            start,
            old_sectors: end - start + 1,
            new_sectors: end - start + 1,
            steps: vec![
                Step {
                    what: "primary entries",
                    writes: vec![(home * SECTOR, entries.to_vec())],
                },
                Step {
                    what: "primary header",
                    writes: vec![(SECTOR, header(entries, 1, last, home))],
                },
            ],
        }));
    }
    if !home_fits {
        return Err(GrowError::BadGpt("entry array place"));
    }
    let mut new_entries = entries.to_vec();
    put64(&mut new_entries[idx * esize..], 40, last_usable);
    let old_backup = le64(h, 32);
    let mut cleanup = Vec::new();
    // The old backup header (past the old end, inside the grown partition
    // but outside its filesystem until that grows) would look like a
    // second disk's GPT: it goes.
    if old_backup != last && old_backup > end && old_backup < last {
        cleanup.push((old_backup * SECTOR, vec![0; SECTOR as usize]));
    }
    // The protective MBR's partition covers the whole disk.
    let mut mbr = d.head[..512].to_vec();
    for i in 0..4 {
        let o = 446 + 16 * i;
        if mbr[o + 4] == 0xEE {
            put32(&mut mbr, o + 12, u32::try_from(last).unwrap_or(u32::MAX));
            cleanup.push((0, mbr));
            break;
        }
    }
    let mut steps = vec![
        Step {
            what: "backup entries",
            writes: vec![(backup_entries * SECTOR, new_entries.clone())],
        },
        Step {
            what: "backup header",
            writes: vec![(last * SECTOR, header(&new_entries, last, 1, backup_entries))],
        },
    ];
    if !cleanup.is_empty() {
        steps.push(Step {
            what: "old backup header and protective MBR",
            writes: cleanup,
        });
    }
    steps.extend([
        Step {
            what: "primary header on the backup's entries",
            writes: vec![(SECTOR, header(&new_entries, 1, last, backup_entries))],
        },
        Step {
            what: "primary entries",
            writes: vec![(home * SECTOR, new_entries.clone())],
        },
        Step {
            what: "primary header",
            writes: vec![(SECTOR, header(&new_entries, 1, last, home))],
        },
    ]);
    Ok(Some(Growth {
        table: "GPT",
        start,
        old_sectors: end - start + 1,
        new_sectors: last_usable - start + 1,
        steps,
    }))
}

/// After writing: the table read back must need nothing more, give the
/// partition `new_sectors`, and (GPT) have a valid backup at the disk's
/// end that agrees with the primary, its entries in their place.
pub fn check_written(d: &DiskView<'_>, partno: u32, g: &Growth) -> Result<(), GrowError> {
    let bad = |why: String| GrowError::ReadBack(why);
    match plan_disk(d, partno) {
        Ok(None) => {}
        Ok(Some(_)) => return Err(bad("it still needs growing".into())),
        Err(e) => return Err(bad(e.to_string())),
    }
    let end = g.start + g.new_sectors - 1;
    if g.table == "MBR" {
        let i = partno as usize - 1;
        let e = &d.head[446 + 16 * i..462 + 16 * i];
        let (s, n) = (u64::from(le32(e, 8)), u64::from(le32(e, 12)));
        if (s, n) != (g.start, g.new_sectors) {
            return Err(bad(format!(
                "partition {partno} spans {n} sectors from {s}"
            )));
        }
        return Ok(());
    }
    let p = read_gpt(d, 1).map_err(|e| bad(format!("primary: {e}")))?;
    let last = d.sectors - 1;
    let b = read_gpt(d, last).map_err(|e| bad(format!("backup: {e}")))?;
    let o = (partno as usize - 1) * p.esize;
    if le64(p.entries, o + 40) != end || le64(p.entries, o + 32) != g.start {
        return Err(bad(format!(
            "partition {partno} does not end at sector {end}"
        )));
    }
    if p.entries != b.entries || le64(p.header, 32) != last || le64(b.header, 32) != 1 {
        return Err(bad("the primary and the backup differ".into()));
    }
    if p.entries_lba >= le64(p.header, 40) {
        return Err(bad("the primary entries are not in their place".into()));
    }
    Ok(())
}

fn mbr_plan(mbr: &[u8], disk_sectors: u64, partno: u32) -> Result<Option<Growth>, GrowError> {
    let entry = |i: usize| &mbr[446 + 16 * i..462 + 16 * i];
    if (0..4).any(|i| matches!(entry(i)[4], 0x05 | 0x0F | 0x85)) {
        return Err(GrowError::Extended);
    }
    let idx = (partno as usize)
        .checked_sub(1)
        .filter(|i| *i < 4 && entry(*i)[4] != 0)
        .ok_or(GrowError::NoSuchPartition(partno))?;
    let start = u64::from(le32(entry(idx), 8));
    let size = u64::from(le32(entry(idx), 12));
    for i in (0..4).filter(|&i| i != idx && entry(i)[4] != 0) {
        if u64::from(le32(entry(i), 8)) > start {
            return Err(GrowError::NotLast {
                root: partno,
                other: i as u32 + 1,
            });
        }
    }
    let new_size = disk_sectors.min(u64::from(u32::MAX)).saturating_sub(start);
    if new_size <= size {
        return Ok(None);
    }
    let mut sector = mbr.to_vec();
    put32(&mut sector, 446 + 16 * idx + 12, new_size as u32);
    Ok(Some(Growth {
        table: "MBR",
        start,
        old_sectors: size,
        new_sectors: new_size,
        steps: vec![Step {
            what: "MBR",
            writes: vec![(0, sector)],
        }],
    }))
}

/// An ext2/3/4 superblock's block count and block size.
pub fn ext_size(sb_area: &[u8]) -> Option<(u64, u64)> {
    let sb = sb_area.get(1024..1024 + 1024)?;
    if u16::from_le_bytes([sb[56], sb[57]]) != 0xEF53 {
        return None;
    }
    let log = le32(sb, 24);
    if log > 6 {
        return None;
    }
    let lo = u64::from(le32(sb, 4));
    // 64bit feature: the high half at 0x150.
    let hi = if le32(sb, 96) & 0x80 != 0 {
        u64::from(le32(sb, 0x150))
    } else {
        0
    };
    Some((lo | (hi << 32), 1024 << log))
}

/// What [`grow_root`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The partition and the filesystem fill the disk already.
    Nothing { device: String },
    Grown {
        device: String,
        table: &'static str,
        /// Bytes of the partition before and after (equal when only the
        /// filesystem grew).
        from: u64,
        to: u64,
        /// Bytes of the filesystem after.
        fs_bytes: u64,
    },
}

#[derive(Debug, Error)]
pub enum GrowRootError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the root filesystem is on {0}, which is not a partition of a disk")]
    NotAPartition(String),
    #[error("the root filesystem {0} is not ext2/3/4: only ext4 is grown")]
    NotExt(String),
    #[error("{device} has {size}-byte logical sectors; only 512 is handled")]
    SectorSize { device: String, size: u64 },
    #[error("{device}")]
    Table {
        device: String,
        #[source]
        source: GrowError,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GrowRootError {
    let path = path.to_path_buf();
    move |source| GrowRootError::Io { what, path, source }
}

fn read_number(p: &Path) -> Result<u64, GrowRootError> {
    let t = fs::read_to_string(p).map_err(io("reading", p))?;
    t.trim().parse().map_err(|_| GrowRootError::Io {
        what: "parsing",
        path: p.to_path_buf(),
        source: std::io::Error::other(format!("not a number: {t:?}")),
    })
}

/// The disk's first [`HEAD_LEN`] and last [`TAIL_LEN`] bytes (less of a
/// smaller disk), read through the page cache the writes went through.
fn read_ends(disk: &mut fs::File, sectors: u64) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let size = sectors * SECTOR;
    let mut head = vec![0u8; HEAD_LEN.min(size as usize)];
    disk.seek(SeekFrom::Start(0))?;
    disk.read_exact(&mut head)?;
    let mut tail = vec![0u8; TAIL_LEN.min(size as usize)];
    disk.seek(SeekFrom::Start(size - tail.len() as u64))?;
    disk.read_exact(&mut tail)?;
    Ok((head, tail))
}

/// The kernel parameter of the power-cut test (tests-vm keys_and_grow):
/// `nixlive.test_grow_stop=STEP` stops the growth once the step named
/// STEP ([`Step::slug`]) is on the disk, so that the harness cuts the
/// power at a known point.
const TEST_STOP: &str = "nixlive.test_grow_stop=";

fn test_stop(root: &Path) -> Option<String> {
    let cmdline = fs::read_to_string(paths::under(root, paths::CMDLINE)).ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(TEST_STOP))
        .map(str::to_string)
}

impl Step {
    /// The step's name as a word: `primary-header-on-the-backups-entries`.
    pub fn slug(&self) -> String {
        self.what
            .chars()
            .filter(|c| *c != '\'')
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }
}

/// Says so on the console (postboot's own output is captured) and waits
/// for the power to go; never returns.
fn stop_here(root: &Path, n: usize, step: &Step) -> ! {
    let line = format!(
        "NIXLIVE-TEST grow stopped after step {n}: {} ({})\n",
        step.slug(),
        step.what
    );
    eprint!("{line}");
    if let Ok(mut c) = fs::OpenOptions::new()
        .write(true)
        .open(paths::under(root, "/dev/console"))
    {
        // not fatal: the test then times out, and says it.
        let _ = c.write_all(line.as_bytes());
    }
    loop {
        std::thread::park();
    }
}

/// Grows the partition of the filesystem mounted at `root`'s `/` and that
/// filesystem to the end of its disk.
pub fn grow_root(root: &Path) -> Result<Outcome, GrowRootError> {
    let top = paths::under(root, "/");
    let dev = fs::metadata(&top).map_err(io("stat", &top))?.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let link = paths::under(root, &format!("/sys/dev/block/{major}:{minor}"));
    let part_dir = fs::canonicalize(&link).map_err(io("resolving", &link))?;
    let name = part_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string();
    let device = format!("/dev/{name}");
    if !part_dir.join("partition").exists() {
        return Err(GrowRootError::NotAPartition(device));
    }
    let partno = read_number(&part_dir.join("partition"))? as u32;
    let disk_dir = part_dir
        .parent()
        .ok_or_else(|| GrowRootError::NotAPartition(device.clone()))?;
    let disk_name = disk_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string();
    let disk_node = paths::under(root, &format!("/dev/{disk_name}"));
    let part_node = paths::under(root, &device);
    let lbs = read_number(&disk_dir.join("queue/logical_block_size")).unwrap_or(SECTOR);
    if lbs != SECTOR {
        return Err(GrowRootError::SectorSize { device, size: lbs });
    }
    let disk_sectors = read_number(&disk_dir.join("size"))?;
    let part_start = read_number(&part_dir.join("start"))?;
    let part_sectors = read_number(&part_dir.join("size"))?;

    let mut disk = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk_node)
        .map_err(io("opening", &disk_node))?;
    let table_err = |source| GrowRootError::Table {
        device: format!("/dev/{disk_name}"),
        source,
    };
    let (head, tail) = read_ends(&mut disk, disk_sectors)
        .map_err(io("reading the partition table of", &disk_node))?;
    let view = DiskView {
        head: &head,
        tail: &tail,
        sectors: disk_sectors,
    };
    let growth = plan_disk(&view, partno).map_err(table_err)?;
    let mut bytes = part_sectors * SECTOR;
    let from = bytes;
    let mut table = "";
    if let Some(g) = &growth {
        let stop = test_stop(root);
        for (n, step) in g.steps.iter().enumerate() {
            for (at, data) in &step.writes {
                disk.seek(SeekFrom::Start(*at))
                    .and_then(|_| disk.write_all(data))
                    .map_err(io("writing the partition table of", &disk_node))?;
            }
            // Each step on the disk before the next begins.
            disk.sync_all().map_err(io("syncing", &disk_node))?;
            if stop.as_deref() == Some(step.slug().as_str()) {
                stop_here(root, n + 1, step);
            }
        }
        let (head, tail) = read_ends(&mut disk, disk_sectors)
            .map_err(io("reading back the partition table of", &disk_node))?;
        let view = DiskView {
            head: &head,
            tail: &tail,
            sectors: disk_sectors,
        };
        check_written(&view, partno, g).map_err(table_err)?;
        bytes = g.new_sectors * SECTOR;
        crate::sys::blkpg_resize_partition(&disk, partno, part_start * SECTOR, bytes)
            .map_err(io("telling the kernel the new size of", &part_node))?;
        table = g.table;
    }
    // The filesystem, to the partition's (new) end.
    let mut sb = vec![0u8; 2048];
    fs::File::open(&part_node)
        .and_then(|mut f| f.read_exact(&mut sb))
        .map_err(io("reading the superblock of", &part_node))?;
    let (blocks, block_size) =
        ext_size(&sb).ok_or_else(|| GrowRootError::NotExt(device.clone()))?;
    let want = bytes / block_size;
    if want <= blocks {
        return Ok(match growth {
            None => Outcome::Nothing { device },
            Some(_) => Outcome::Grown {
                device,
                table,
                from,
                to: bytes,
                fs_bytes: blocks * block_size,
            },
        });
    }
    let mount = fs::File::open(&top).map_err(io("opening", &top))?;
    crate::sys::ext4_resize(&mount, want).map_err(io("growing the filesystem on", &part_node))?;
    Ok(Outcome::Grown {
        device,
        table: if table.is_empty() { "none" } else { table },
        from,
        to: bytes,
        fs_bytes: want * block_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A GPT disk image head with partitions `(start, end)` (sectors),
    /// made for a disk of `sectors`.
    fn gpt_head(sectors: u64, parts: &[(u64, u64)]) -> Vec<u8> {
        let mut head = vec![0u8; HEAD_LEN];
        head[446 + 4] = 0xEE;
        put32(&mut head, 446 + 8, 1);
        put32(&mut head, 446 + 12, (sectors - 1) as u32);
        head[510] = 0x55;
        head[511] = 0xAA;
        let mut entries = vec![0u8; 128 * 128];
        for (i, (s, e)) in parts.iter().enumerate() {
            let o = i * 128;
            entries[o..o + 16].copy_from_slice(&[0xAF; 16]);
            entries[o + 16] = i as u8 + 1;
            put64(&mut entries, o + 32, *s);
            put64(&mut entries, o + 40, *e);
        }
        head[1024..1024 + entries.len()].copy_from_slice(&entries);
        let h = &mut head[512..1024];
        h[..8].copy_from_slice(b"EFI PART");
        put32(h, 8, 0x0001_0000);
        put32(h, 12, 92);
        put64(h, 24, 1);
        put64(h, 32, sectors - 1);
        put64(h, 40, 34);
        put64(h, 48, sectors - 34);
        put64(h, 72, 2);
        put32(h, 80, 128);
        put32(h, 84, 128);
        put32(h, 88, crc32(&entries));
        let crc = crc32(&h[..92]);
        put32(h, 16, crc);
        head
    }

    #[test]
    fn crc32_as_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn gpt_root_grows_to_the_new_end_and_the_backup_moves() {
        let small = 256 * MIB / SECTOR;
        let big = 1024 * MIB / SECTOR;
        let head = gpt_head(small, &[(2048, small - 2048 - 1)]);
        let g = plan(&head, big, 1).unwrap().unwrap();
        assert_eq!(g.table, "GPT");
        assert_eq!(g.start, 2048);
        assert_eq!(
            g.new_sectors,
            (big - 34) - 2048 + 1,
            "to the last usable sector"
        );
        // Apply the writes to a disk and plan again: nothing to do, and
        // the new table checks out (its CRCs).
        let mut disk = head.clone();
        for (at, data) in g.writes() {
            if (*at as usize) < disk.len() {
                disk[*at as usize..*at as usize + data.len()].copy_from_slice(data);
            }
        }
        assert_eq!(plan(&disk, big, 1).unwrap(), None);
        // The backup header: at the last sector, pointing back at LBA 1.
        let (at, backup) = &g.steps[1].writes[0];
        assert_eq!(*at, (big - 1) * SECTOR);
        assert_eq!(&backup[..8], b"EFI PART");
        assert_eq!((le64(backup, 24), le64(backup, 32)), (big - 1, 1));
        assert_eq!(le64(backup, 72), big - 33);
        // The old backup header is zeroed, the protective MBR spans the disk.
        assert!(
            g.writes()
                .any(|(at, d)| *at == (small - 1) * SECTOR && d.iter().all(|b| *b == 0))
        );
        let (_, mbr) = g.writes().find(|(at, _)| *at == 0).unwrap();
        assert_eq!(u64::from(le32(mbr, 446 + 12)), big - 1);
    }

    /// A whole disk of `sectors` with `gpt_head(old, ...)` at its start.
    fn disk_with(old: u64, sectors: u64, end: u64) -> Vec<u8> {
        let mut disk = vec![0u8; (sectors * SECTOR) as usize];
        let head = gpt_head(old, &[(2048, end)]);
        disk[..head.len()].copy_from_slice(&head);
        disk
    }

    fn view(disk: &[u8]) -> DiskView<'_> {
        let n = disk.len();
        DiskView {
            head: &disk[..HEAD_LEN],
            tail: &disk[n - TAIL_LEN..],
            sectors: n as u64 / SECTOR,
        }
    }

    /// Applies `steps`; the last one `torn` (its writes' first halves).
    fn apply(disk: &mut [u8], steps: &[Step], torn: bool) {
        for (i, st) in steps.iter().enumerate() {
            for (at, data) in &st.writes {
                let len = if torn && i + 1 == steps.len() {
                    (data.len() / 2).next_multiple_of(SECTOR as usize)
                } else {
                    data.len()
                };
                let at = *at as usize;
                disk[at..at + len].copy_from_slice(&data[..len]);
            }
        }
    }

    /// Power cut after every step, and in the middle of every step: the
    /// primary GPT (all Linux reads) is whole and valid, the partition
    /// where it was with its old or its new end; the next run finishes
    /// the growth, and what it wrote reads back right.
    #[test]
    fn a_power_cut_at_any_point_leaves_a_valid_primary_and_is_finished() {
        let (small, big) = (4 * MIB / SECTOR, 12 * MIB / SECTOR);
        let old_end = small - 34;
        let disk = disk_with(small, big, old_end);
        let g = plan_disk(&view(&disk), 1).unwrap().unwrap();
        let new_end = big - 34;
        assert_eq!(g.start + g.new_sectors - 1, new_end);
        assert_eq!(g.steps[3].slug(), "primary-header-on-the-backups-entries");
        let whats: Vec<&str> = g.steps.iter().map(|s| s.what).collect();
        assert_eq!(
            whats,
            [
                "backup entries",
                "backup header",
                "old backup header and protective MBR",
                "primary header on the backup's entries",
                "primary entries",
                "primary header"
            ]
        );
        for k in 0..=g.steps.len() {
            for torn in [false, true] {
                if torn && k == 0 {
                    continue;
                }
                let mut d = disk.clone();
                apply(&mut d, &g.steps[..k], torn);
                let p = read_gpt(&view(&d), 1)
                    .unwrap_or_else(|e| panic!("after step {k} (torn {torn}): {e}"));
                let end = le64(p.entries, 40);
                assert!(
                    end == old_end || end == new_end,
                    "after step {k}: the partition ends at {end}"
                );
                // The next boot finishes.
                let Some(again) = plan_disk(&view(&d), 1).unwrap() else {
                    assert_eq!(k, g.steps.len(), "after step {k}: nothing left to do");
                    check_written(&view(&d), 1, &g).unwrap();
                    continue;
                };
                apply(&mut d, &again.steps, false);
                check_written(&view(&d), 1, &again)
                    .unwrap_or_else(|e| panic!("after step {k} (torn {torn}): {e}"));
                assert_eq!(again.start + again.new_sectors - 1, new_end);
                if k >= 4 {
                    assert_eq!(again.old_sectors, again.new_sectors, "after step {k}");
                    assert_eq!(again.steps.len(), 2, "after step {k}: steps 5 and 6");
                }
                assert_eq!(plan_disk(&view(&d), 1).unwrap(), None);
            }
        }
        // The whole run, then read back.
        let mut d = disk.clone();
        apply(&mut d, &g.steps, false);
        check_written(&view(&d), 1, &g).unwrap();
        // A table that did not get written (whole) is caught reading back.
        for k in [0, 5] {
            let mut d = disk.clone();
            apply(&mut d, &g.steps[..k], false);
            let e = check_written(&view(&d), 1, &g).unwrap_err().to_string();
            assert!(e.contains("still needs growing"), "{e}");
        }
        let mut d = disk.clone();
        apply(&mut d, &g.steps, false);
        let last = d.len() - SECTOR as usize;
        d[last + 48] ^= 1;
        let e = check_written(&view(&d), 1, &g).unwrap_err().to_string();
        assert!(
            e.contains("backup: the GPT does not check out (header CRC)"),
            "{e}"
        );
    }

    #[test]
    fn only_the_last_partition_is_grown() {
        let small = 256 * MIB / SECTOR;
        let head = gpt_head(small, &[(2048, 4095), (4096, small - 2048)]);
        assert_eq!(
            plan(&head, small * 4, 1),
            Err(GrowError::NotLast { root: 1, other: 2 })
        );
        assert!(plan(&head, small * 4, 2).unwrap().is_some());
        assert_eq!(
            plan(&head, small * 4, 3),
            Err(GrowError::NoSuchPartition(3))
        );
    }

    #[test]
    fn a_damaged_gpt_is_left_alone() {
        let small = 256 * MIB / SECTOR;
        let mut head = gpt_head(small, &[(2048, small - 2048)]);
        head[1024 + 40] ^= 1;
        assert_eq!(
            plan(&head, small * 2, 1),
            Err(GrowError::BadGpt("entry array CRC"))
        );
        let mut head = gpt_head(small, &[(2048, small - 2048)]);
        head[512 + 48] ^= 1;
        assert_eq!(
            plan(&head, small * 2, 1),
            Err(GrowError::BadGpt("header CRC"))
        );
        assert_eq!(plan(&[0u8; 512], 100, 1), Err(GrowError::NoTable));
        let backwards = gpt_head(small, &[(5000, 4000)]);
        assert_eq!(
            plan(&backwards, small * 2, 1),
            Err(GrowError::BadGpt("partition ends before it starts"))
        );
        let head = gpt_head(small, &[(2048, small - 2048)]);
        assert_eq!(plan(&head, 0, 1), Err(GrowError::NoTable));
        assert_eq!(plan(&head, u64::MAX, 1), Err(GrowError::NoTable));
        assert_eq!(
            plan(&head[..700], small * 2, 1),
            Err(GrowError::BadGpt("header cut short"))
        );
    }

    #[test]
    fn mbr_root_grows() {
        let mut s = vec![0u8; 512];
        s[510] = 0x55;
        s[511] = 0xAA;
        s[446 + 4] = 0x83;
        put32(&mut s, 446 + 8, 2048);
        put32(&mut s, 446 + 12, 4096);
        let g = plan(&s, 100_000, 1).unwrap().unwrap();
        assert_eq!(
            (g.table, g.old_sectors, g.new_sectors),
            ("MBR", 4096, 100_000 - 2048)
        );
        let sector = &g.steps[0].writes[0].1;
        assert_eq!(le32(sector, 446 + 12), 100_000 - 2048);
        assert_eq!(plan(sector, 100_000, 1).unwrap(), None);
        let mut ext = s.clone();
        ext[446 + 16 + 4] = 0x05;
        assert_eq!(plan(&ext, 100_000, 1), Err(GrowError::Extended));
        let mut after = s.clone();
        after[446 + 16 + 4] = 0x83;
        put32(&mut after, 446 + 16 + 8, 8192);
        assert_eq!(
            plan(&after, 100_000, 1),
            Err(GrowError::NotLast { root: 1, other: 2 })
        );
    }

    #[test]
    fn ext_sizes() {
        let mut b = vec![0u8; 2048];
        assert_eq!(ext_size(&b), None);
        b[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        put32(&mut b, 1024 + 4, 1000);
        put32(&mut b, 1024 + 24, 2);
        assert_eq!(ext_size(&b), Some((1000, 4096)));
        put32(&mut b, 1024 + 96, 0x80);
        put32(&mut b, 1024 + 0x150, 1);
        assert_eq!(ext_size(&b), Some((1000 + (1 << 32), 4096)));
    }
}

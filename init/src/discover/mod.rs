//! Finding the medium: block devices as the kernel announces them (uevent
//! netlink plus a scan of `/sys/class/block`), each probed by reading its
//! superblock, until one matches `root=` or the time budget is spent.
//!
//! A device is read again when it may hold something else than when it was
//! read: its identity in sysfs changed (`dev` or `diskseq`: removed and
//! added again), the kernel said its medium changed (a `change` uevent with
//! `DISK_MEDIA_CHANGE=1`, which the kernel sends for removable drives the
//! search asks it to poll), or it could not be read yet (a drive not ready).
//! When several devices are candidates, the choice follows one rule (see
//! [`settle`] and [`order`]), not the order in which the kernel announced
//! them. The rules are pure; the waiting and reading is thin.

pub use nixlive_formats::superblock as probe;
pub mod uevent;

use crate::sys::DriveStatus;
use nixlive_formats::RootSpec;
use probe::Identity;
use std::collections::BTreeMap;
use std::path::Path;

/// What we know of one block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Kernel name, e.g. `sr0`, `sda1`.
    pub name: String,
    pub size_bytes: u64,
    pub partition: bool,
    /// For a partition: its disk's name and its number (1-based).
    pub parent: Option<(String, u32)>,
    /// For a disk with a GPT: the partition names, by number - 1.
    pub gpt: Option<Vec<String>>,
    /// `None` until probed; `Some(Err)` when it could not be read.
    pub probe: Option<Result<Option<Identity>, String>>,
    /// Which device of that name it was when probed (sysfs `dev`, `diskseq`).
    pub ident: Ident,
}

/// What tells one device from another that later gets the same name: its
/// device number and, where the kernel has it (5.15 on), its disk sequence
/// number, which grows on every new disk and every media change. A
/// partition has its disk's.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ident {
    /// `MAJOR:MINOR`, from sysfs `dev`.
    pub dev: String,
    pub diskseq: Option<u64>,
}

impl BlockDev {
    pub fn node(&self) -> String {
        format!("/dev/{}", self.name)
    }

    /// The key a verdict about this device's contents is kept under: its
    /// [`Ident`] and what its superblock said (the filesystem's UUID and
    /// label stand in for `diskseq` on kernels without it), never only its
    /// name, so a medium swapped in the same drive is judged afresh.
    pub fn identity(&self) -> String {
        let (fstype, uuid, label) = match &self.probe {
            Some(Ok(Some(id))) => (
                id.fstype,
                id.uuid.as_deref().unwrap_or("-"),
                id.label.as_deref().unwrap_or("-"),
            ),
            _ => ("-", "-", "-"),
        };
        let seq = self
            .ident
            .diskseq
            .map_or("-".to_string(), |n| n.to_string());
        format!(
            "{} dev={} diskseq={seq} {fstype} uuid={uuid} label={label}",
            self.name, self.ident.dev
        )
    }

    /// One line for the "devices seen" list of a failure message.
    pub fn describe(&self) -> String {
        let what = match &self.probe {
            None => "not probed".to_string(),
            Some(Err(e)) => format!("unreadable: {e}"),
            Some(Ok(None)) => "no filesystem recognised".to_string(),
            Some(Ok(Some(id))) => format!(
                "{} label={} uuid={}",
                id.fstype,
                id.label.as_deref().unwrap_or("(none)"),
                id.uuid.as_deref().unwrap_or("(none)")
            ),
        };
        // An empty CD drive reports a made-up size: show none for devices
        // that could not be read.
        let size = match &self.probe {
            Some(Err(_)) | None => "-".to_string(),
            Some(Ok(_)) => nixlive_formats::size::human(self.size_bytes),
        };
        format!(
            "{:<12} {:>10} {}{}",
            self.node(),
            size,
            if self.partition { "partition " } else { "" },
            what
        )
    }
}

/// The filesystem label a device was probed with.
pub fn label_of(d: &BlockDev) -> Option<&str> {
    match &d.probe {
        Some(Ok(Some(id))) => id.label.as_deref(),
        _ => None,
    }
}

/// Does this device satisfy `root=`? `seen` gives partitions their disk's GPT.
pub fn matches(spec: &RootSpec, dev: &BlockDev, seen: &Seen) -> bool {
    let id = match &dev.probe {
        Some(Ok(Some(id))) => Some(id),
        _ => None,
    };
    match spec {
        RootSpec::Device(p) => *p == dev.node(),
        RootSpec::File(_) => false,
        RootSpec::Label(l) => id.is_some_and(|i| i.label.as_deref() == Some(l.as_str())),
        RootSpec::Uuid(u) => {
            id.is_some_and(|i| i.uuid.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)))
        }
        RootSpec::PartLabel(l) => seen.partlabel(dev) == Some(l.as_str()),
    }
}

/// The first thing to check when the medium was not found, for the
/// failure message.
pub fn what_to_check(cmdline: &nixlive_formats::Cmdline) -> String {
    if let Some(iso) = &cmdline.findiso {
        return format!(
            "check that {iso} exists (the path is taken from the root of each vfat, ext2/3/4 \
             or iso9660 filesystem listed above)"
        );
    }
    match &cmdline.root {
        Some(RootSpec::Label(_)) => {
            "check the medium's label above (it must equal the root=LABEL= value exactly, case included)"
        }
        Some(RootSpec::Uuid(_)) => "check the filesystem UUIDs above against root=UUID=",
        Some(RootSpec::PartLabel(_)) => {
            "check the GPT partition name (root=PARTLABEL= must equal it exactly)"
        }
        Some(RootSpec::Device(_) | RootSpec::File(_)) | None => {
            "check the device name against the list above, or use root=LABEL= instead"
        }
    }
    .to_string()
}

/// Block devices that cannot be the medium: loop devices (init binds them
/// itself, for findiso and the images) and RAM disks.
pub fn is_candidate(name: &str) -> bool {
    !["loop", "ram", "zram"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// One entry of `/sys/class/block`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SysBlock {
    pub name: String,
    pub size_bytes: u64,
    /// Disk name and partition number, for partitions.
    pub parent: Option<(String, u32)>,
    pub ident: Ident,
}

/// Lists the block devices under `<sys>/class/block` with size and parent.
pub fn scan(sys: &Path) -> Vec<SysBlock> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(sys.join("class/block")) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_candidate(&name) {
            continue;
        }
        let base = e.path();
        let sectors = std::fs::read_to_string(base.join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        // A partition's sysfs directory sits inside its disk's.
        let part = std::fs::read_to_string(base.join("partition"))
            .ok()
            .and_then(|n| n.trim().parse::<u32>().ok())
            .and_then(|n| Some((std::fs::canonicalize(&base).ok()?.parent()?.to_owned(), n)));
        let parent = part
            .as_ref()
            .and_then(|(disk, n)| Some((disk.file_name()?.to_string_lossy().into_owned(), *n)));
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .ok()
                .map(|t| t.trim().to_string())
        };
        let diskseq = |d: &Path| read(&d.join("diskseq")).and_then(|t| t.parse().ok());
        let ident = Ident {
            dev: read(&base.join("dev")).unwrap_or_default(),
            diskseq: match &part {
                Some((disk, _)) => diskseq(disk),
                None => diskseq(&base),
            },
        };
        out.push(SysBlock {
            name,
            size_bytes: sectors * 512,
            parent,
            ident,
        });
    }
    // Whole disks before their partitions, in a stable order.
    out.sort();
    out
}

/// Devices seen so far, by name.
#[derive(Debug, Default)]
pub struct Seen {
    pub devs: BTreeMap<String, BlockDev>,
}

impl Seen {
    pub fn list(&self) -> String {
        if self.devs.is_empty() {
            return "  (no block devices appeared)".to_string();
        }
        self.devs
            .values()
            .map(|d| {
                let mut line = format!("  {}", d.describe());
                if d.gpt.is_some() {
                    line.push_str(" (GPT)");
                }
                if let Some(name) = self.partlabel(d) {
                    line.push_str(&format!(" partlabel={name}"));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The other devices (nodes) with `d`'s filesystem label, leaving out
    /// `d`'s own disk and partitions (an isohybrid image has its label on
    /// both).
    pub fn same_label(&self, d: &BlockDev) -> Vec<String> {
        let Some(label) = label_of(d) else {
            return Vec::new();
        };
        let parent_of = |x: &BlockDev| x.parent.as_ref().map(|(p, _)| p.clone());
        self.devs
            .values()
            .filter(|o| o.name != d.name)
            .filter(|o| parent_of(o).as_deref() != Some(d.name.as_str()))
            .filter(|o| parent_of(d).as_deref() != Some(o.name.as_str()))
            .filter(|o| label_of(o) == Some(label))
            .map(BlockDev::node)
            .collect()
    }

    /// A partition's GPT name, from its disk's partition table.
    pub fn partlabel(&self, dev: &BlockDev) -> Option<&str> {
        let (disk, n) = dev.parent.as_ref()?;
        let names = self.devs.get(disk)?.gpt.as_ref()?;
        names
            .get((*n as usize).checked_sub(1)?)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Opens a device node and reads as many of its first bytes as the probes
/// need; returns the device's size too.
///
/// The size comes from the open device, not from sysfs: a CD drive's size in
/// sysfs stays 0 until someone opens it after the disc became ready (the
/// open is what makes the kernel look at the medium again). The open is
/// non-blocking so that it never closes an open tray (the cdrom driver's
/// auto-close is for blocking opens) and does not fail on an empty drive.
pub fn read_head(node: &str) -> HeadResult {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(node)
        .map_err(|e| e.to_string())?;
    // Reading an empty CD drive fails with I/O errors that flood the kernel
    // log on every retry; the drive can say that it is empty instead.
    match crate::sys::cdrom_drive_status(std::os::fd::AsFd::as_fd(&f)) {
        Some(DriveStatus::NoDisc) => return Err(NO_DISC.into()),
        Some(DriveStatus::TrayOpen) => return Err(TRAY_OPEN.into()),
        Some(DriveStatus::NotReady) => return Err("the drive is not ready yet".into()),
        Some(DriveStatus::Ready) | None => {}
    }
    let size = f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    if size == 0 {
        return Err(NO_MEDIUM.to_string());
    }
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let want = probe::PROBE_LEN.min(usize::try_from(size).unwrap_or(usize::MAX));
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    buf.truncate(got);
    let label = probe::label_at(&buf)
        .filter(|at| at.offset.saturating_add(at.len as u64) <= size)
        .and_then(|at| {
            let mut more = vec![0u8; at.len];
            f.seek(SeekFrom::Start(at.offset)).ok()?;
            f.read_exact(&mut more).ok()?;
            at.label(&more)
        });
    Ok(Head {
        size,
        bytes: buf,
        label,
    })
}

/// What the wait tells the module loader: a device announced itself
/// (its modalias), or announcements may have been missed (no uevent
/// socket, or the kernel dropped some), so every device is looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hotplug<'a> {
    Modalias(&'a str),
    Rescan,
}

/// The outcome of waiting: the device, or what was seen instead.
pub enum Found {
    Device(BlockDev),
    TimedOut(Seen),
}

/// Once a first candidate is there, how long the search may go on for
/// devices still being announced or still coming up before it chooses.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// With a candidate, an announcement this recent means more may follow:
/// the search waits until none came for this long (within [`SETTLE`]).
pub const QUIET: std::time::Duration = std::time::Duration::from_millis(250);

/// How often the kernel is asked to look at a removable drive's medium
/// during the search, so that a disc put in or swapped is announced
/// (`change`, `DISK_MEDIA_CHANGE=1`); without it the kernel only notices
/// when someone opens the drive. The drive's setting is restored after.
pub const MEDIA_POLL_MS: u32 = 500;

/// What the search knows when it has candidates, for [`settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settling {
    /// Since the first candidate was seen.
    pub since_first: std::time::Duration,
    /// Since a device was last announced that may bring a candidate: a
    /// block device added, removed or with a new medium, or a device whose
    /// driver was loaded for it (which may still be probing its disks);
    /// `None` if none was.
    pub since_news: Option<std::time::Duration>,
    /// A device is there that could not be read yet and may be soon (a
    /// drive not ready, a probe still running).
    pub coming_up: bool,
}

/// When to choose among the candidates: `None` now, or `Some(at most this
/// long)` to wait for announcements first. The rule: the devices already
/// being announced are finished first (no announcement for [`QUIET`], no
/// device still coming up), but never for more than [`SETTLE`] after the
/// first candidate. A single candidate with nothing else going on is taken
/// at once. (Before choosing, the search also reads what the kernel has
/// queued, without waiting.)
pub fn settle(s: Settling) -> Option<std::time::Duration> {
    let rest = SETTLE.checked_sub(s.since_first).filter(|r| !r.is_zero())?;
    let quiet = s
        .since_news
        .and_then(|n| QUIET.checked_sub(n))
        .filter(|q| !q.is_zero());
    match (quiet, s.coming_up) {
        (_, true) => Some(rest.min(RETRY)),
        (Some(q), false) => Some(rest.min(q)),
        (None, false) => None,
    }
}

/// The order among candidates: by device name, its numbers compared as
/// numbers (`sda2` before `sda10`, a disk before its partitions). Names
/// follow the controller and the port, not the moment a device answered.
pub fn order(a: &str, b: &str) -> std::cmp::Ordering {
    /// Runs of digits and runs of the rest.
    fn chunks(s: &str) -> Vec<&str> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut start = 0;
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[i - 1].is_ascii_digit() {
                out.push(&s[start..i]);
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let num = |c: &str| c.bytes().all(|b| b.is_ascii_digit());
        let o = if num(x) && num(y) {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            x.cmp(y)
        };
        if o.is_ne() {
            return o;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// Whether a probe's error may pass by itself soon (a drive spinning up,
/// a probe still running); an empty drive or open tray waits for its
/// medium, which the kernel announces.
pub fn may_come_up(err: &str) -> bool {
    ![NO_DISC, TRAY_OPEN, NO_MEDIUM].contains(&err)
}

const NO_DISC: &str = "no disc in the drive";
const TRAY_OPEN: &str = "the drive's tray is open";
const NO_MEDIUM: &str = "no medium (size 0)";

/// Whether a device seen before (`known`) must be read again now that
/// sysfs shows `now`: another device under its name (`dev` or `diskseq`
/// changed), or it could not be read before.
pub fn must_probe(known: Option<&BlockDev>, now: &SysBlock) -> bool {
    match known {
        None => true,
        Some(k) => k.ident != now.ident || !matches!(k.probe, Some(Ok(_))),
    }
}

/// Waits for block devices that `accept` takes: scans what exists, then
/// rescans whenever the kernel announces a block device. Devices that could
/// not be read (a CD drive still spinning up, a medium not yet inserted) are
/// retried after a short pause, since the kernel sends no event for a
/// drive that became ready. Candidates are chosen among by [`settle`] and
/// [`order`]; every one is named in the log.
pub fn wait_for(
    accept: &mut dyn FnMut(&BlockDev, &Seen) -> bool,
    on_hotplug: &mut dyn FnMut(Hotplug<'_>) -> bool,
    sys: &Path,
    events: Option<&uevent::Uevents>,
    budget: Option<std::time::Duration>,
) -> Found {
    use std::time::{Duration, Instant};
    let start = Instant::now();
    let mut seen = Seen::default();
    let mut slow = SlowProbes::default();
    let mut media = MediaPolling::default();
    let mut first: Option<Instant> = None;
    let mut news: Option<Instant> = None;
    let found = loop {
        let unreadable = seen.refresh(sys, &mut slow);
        // Matched after the whole scan, so partitions see their disk's GPT;
        // only devices that could be read are asked about.
        let names: Vec<String> = seen.devs.keys().cloned().collect();
        let mut candidates: Vec<String> = names
            .into_iter()
            .filter(|n| {
                let d = &seen.devs[n];
                matches!(d.probe, Some(Ok(_))) && accept(d, &seen)
            })
            .collect();
        candidates.sort_by(|a, b| order(a, b));
        let now = Instant::now();
        let left = budget.map(|b| b.saturating_sub(now - start));
        let mut pause = if unreadable {
            Some(left.map_or(RETRY, |l| l.min(RETRY)))
        } else {
            left
        };
        if let Some(chosen) = candidates.first() {
            let since_first = now - *first.get_or_insert(now);
            let coming_up = slow.is_waiting()
                || seen.devs.values().any(|d| match &d.probe {
                    Some(Err(e)) => may_come_up(e),
                    _ => false,
                });
            let s = Settling {
                since_first,
                since_news: news.map(|n| now - n),
                coming_up,
            };
            match settle(s) {
                // What the kernel queued meanwhile (checking a candidate
                // takes a mount) is taken in first, without waiting.
                None if since_first < SETTLE => {
                    let heard = wait_for_events(events, Some(Duration::ZERO), on_hotplug);
                    let (changed, new) = take_in(&mut seen, heard);
                    if new {
                        news = Some(Instant::now());
                    }
                    if changed {
                        continue;
                    }
                    break Found::Device(choose(&seen, chosen, &candidates, since_first));
                }
                None => break Found::Device(choose(&seen, chosen, &candidates, since_first)),
                Some(w) => {
                    log::debug!(
                        "{} candidate(s); settling ({s:?}), waiting {w:?}",
                        candidates.len()
                    );
                    pause = Some(w);
                }
            }
        } else if left.is_some_and(|l| l.is_zero()) {
            break Found::TimedOut(seen);
        }
        media.ask(sys, &seen);
        let (_, new) = take_in(&mut seen, wait_for_events(events, pause, on_hotplug));
        if new {
            news = Some(Instant::now());
        }
    };
    media.restore();
    found
}

/// Takes in what a wait heard: forgets the devices removed or whose medium
/// changed (read again on the next scan). Returns whether anything changed
/// for the search (a device forgotten or new, a driver loaded), and whether
/// it was news ([`Settling::since_news`]: a device new to the search, or a
/// driver loaded that may still bring some). A medium change alone is no
/// news: the kernel reports one on a drive's first open, and the device is
/// read again before any choice anyway.
fn take_in(seen: &mut Seen, heard: Heard) -> (bool, bool) {
    let mut news = heard.loaded;
    let mut changed = heard.loaded;
    for (name, forget) in heard.block {
        if forget {
            if seen.devs.remove(&name).is_some() {
                log::info!("/dev/{name} was removed or its medium changed: reading it again");
                changed = true;
            }
        } else if !seen.devs.contains_key(&name) {
            news = true;
            changed = true;
        }
    }
    (changed, news)
}

/// The first by [`order`] of `candidates` (`chosen`), every one named.
fn choose(
    seen: &Seen,
    chosen: &str,
    candidates: &[String],
    waited: std::time::Duration,
) -> BlockDev {
    let d = seen.devs[chosen].clone();
    let others = seen.same_label(&d);
    if !others.is_empty() {
        log::warn!(
            "{} devices carry the label {}: {} and {}; using {}",
            others.len() + 1,
            label_of(&d).unwrap_or_default(),
            d.node(),
            others.join(", "),
            d.node()
        );
    }
    if candidates.len() > 1 {
        let all: Vec<String> = candidates.iter().map(|n| format!("/dev/{n}")).collect();
        log::info!(
            "{} candidates: {}; choosing {}, the first by device name (waited {} ms for \
             devices being announced)",
            candidates.len(),
            all.join(", "),
            d.node(),
            waited.as_millis()
        );
    }
    d
}

/// How soon an unreadable device is tried again (the kernel sends no event
/// when a CD drive has spun up), and how often to rescan without uevents.
const RETRY: std::time::Duration = std::time::Duration::from_millis(250);

impl Seen {
    /// Scans the block devices, forgets those gone, and probes each one
    /// new, changed ([`must_probe`]) or not read yet; returns whether one of
    /// them could not be read.
    fn refresh(&mut self, sys: &Path, slow: &mut SlowProbes) -> bool {
        let mut unreadable = false;
        let now = scan(sys);
        self.devs
            .retain(|name, _| now.iter().any(|sb| &sb.name == name));
        for sb in now {
            if !must_probe(self.devs.get(&sb.name), &sb) {
                // A CD drive's size shows in sysfs only after an open.
                if let Some(entry) = self.devs.get_mut(&sb.name)
                    && sb.size_bytes != 0
                {
                    entry.size_bytes = sb.size_bytes;
                }
                continue;
            }
            let entry = self
                .devs
                .entry(sb.name.clone())
                .or_insert_with(|| BlockDev {
                    name: sb.name.clone(),
                    size_bytes: sb.size_bytes,
                    partition: sb.parent.is_some(),
                    parent: sb.parent.clone(),
                    gpt: None,
                    probe: None,
                    ident: sb.ident.clone(),
                });
            if entry.ident != sb.ident {
                log::info!(
                    "{} is another device now ({:?} -> {:?}): reading it again",
                    entry.node(),
                    entry.ident,
                    sb.ident
                );
            }
            entry.ident = sb.ident;
            entry.size_bytes = sb.size_bytes;
            // An empty drive or one still spinning up reads as an error
            // here, and is tried again on the next round.
            let (probe, gpt) = match slow.read_head(&entry.name, PROBE_TIMEOUT) {
                Ok(Head { size, bytes, label }) => {
                    entry.size_bytes = size;
                    let id = probe::identify(&bytes).map(|id| probe::Identity {
                        label: id.label.or(label),
                        ..id
                    });
                    (Ok(id), probe::gpt_names(&bytes))
                }
                Err(e) => (Err(e), None),
            };
            entry.probe = Some(probe);
            entry.gpt = gpt;
            log::debug!("probed {}", entry.describe());
            unreadable |= matches!(entry.probe, Some(Err(_)));
        }
        unreadable
    }
}

/// Removable drives the search asked the kernel to poll, with what their
/// `events_poll_msecs` was before.
#[derive(Default)]
struct MediaPolling {
    asked: BTreeMap<String, Option<String>>,
}

impl MediaPolling {
    /// Asks the kernel to poll every removable drive seen that reports
    /// media changes and is not polled already (see [`MEDIA_POLL_MS`]).
    fn ask(&mut self, sys: &Path, seen: &Seen) {
        for d in seen.devs.values().filter(|d| d.parent.is_none()) {
            if self.asked.contains_key(&d.name) {
                continue;
            }
            let dir = sys.join("block").join(&d.name);
            let events = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
            let before = std::fs::read_to_string(dir.join("events_poll_msecs"))
                .ok()
                .map(|t| t.trim().to_string());
            // -1 is "the module's default", which is 0 (never) unless set.
            let polled = before
                .as_deref()
                .and_then(|b| b.parse::<i64>().ok())
                .is_some_and(|ms| ms > 0);
            if !events.split_whitespace().any(|e| e == "media_change") || polled {
                self.asked.insert(d.name.clone(), None);
                continue;
            }
            match std::fs::write(dir.join("events_poll_msecs"), MEDIA_POLL_MS.to_string()) {
                Ok(()) => {
                    log::debug!("asked the kernel to watch {} for a medium change", d.node());
                    self.asked.insert(d.name.clone(), before);
                }
                Err(e) => {
                    log::debug!("cannot ask the kernel to watch {}: {e}", d.node());
                    self.asked.insert(d.name.clone(), None);
                }
            }
        }
    }

    /// Puts back what each drive's polling was.
    fn restore(&mut self) {
        for (name, before) in std::mem::take(&mut self.asked) {
            let Some(before) = before else { continue };
            let path = format!("/sys/block/{name}/events_poll_msecs");
            if let Err(e) = std::fs::write(&path, &before) {
                log::debug!("restoring {path} to {before}: {e}, ignoring");
            }
        }
    }
}

/// How long one device may take to give its first blocks before the search
/// looks at the others: a device that stalls must not hold the whole budget.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a device's first blocks said: its size, the blocks, and the label
/// of a filesystem that keeps it further in (exFAT, NTFS).
pub struct Head {
    pub size: u64,
    pub bytes: Vec<u8>,
    pub label: Option<String>,
}

type HeadResult = Result<Head, String>;

/// Probes that outlived [`PROBE_TIMEOUT`]: each goes on in its thread (a
/// read in the kernel cannot be cancelled), and its answer is used when it
/// comes.
#[derive(Default)]
pub struct SlowProbes {
    waiting: BTreeMap<String, std::sync::mpsc::Receiver<HeadResult>>,
}

impl SlowProbes {
    /// Whether a probe is still running in the background.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// [`read_head`] of `/dev/<name>`, giving up after `timeout` (the probe
    /// goes on in the background).
    pub fn read_head(&mut self, name: &str, timeout: std::time::Duration) -> HeadResult {
        use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
        let stalled = || {
            format!(
                "did not answer within {} s (still asked)",
                timeout.as_secs()
            )
        };
        if let Some(rx) = self.waiting.get(name) {
            return match rx.try_recv() {
                Ok(r) => {
                    self.waiting.remove(name);
                    r
                }
                Err(TryRecvError::Empty) => Err(stalled()),
                Err(TryRecvError::Disconnected) => Err("the probe ended without an answer".into()),
            };
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let node = format!("/dev/{name}");
        std::thread::spawn(move || {
            // not fatal: nobody listens once the boot has moved on.
            let _ = tx.send(read_head(&node));
        });
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                log::warn!(
                    "/dev/{name} {}; looking at the other devices meanwhile",
                    stalled()
                );
                self.waiting.insert(name.to_string(), rx);
                Err(stalled())
            }
            Err(RecvTimeoutError::Disconnected) => Err("the probe ended without an answer".into()),
        }
    }
}

/// What one wait heard: the block devices announced, each with whether
/// what was read of it must be forgotten (removed, or its medium changed),
/// and whether a driver was loaded for an announced device.
#[derive(Debug, Default)]
struct Heard {
    block: Vec<(String, bool)>,
    loaded: bool,
}

/// Sleeps until the kernel announces a device (or `pause` ends), handing
/// each announced modalias to `on_hotplug`: a new device may need its
/// driver before its disk appears. When announcements may have been
/// missed, `on_hotplug` is told to look at every device again.
fn wait_for_events(
    events: Option<&uevent::Uevents>,
    pause: Option<std::time::Duration>,
    on_hotplug: &mut dyn FnMut(Hotplug<'_>) -> bool,
) -> Heard {
    match events.map(|ev| ev.wait(pause)) {
        Some(Ok(events)) => {
            let mut loaded = false;
            for a in events.iter().filter_map(|e| e.modalias.as_deref()) {
                loaded |= on_hotplug(Hotplug::Modalias(a));
            }
            Heard {
                block: announced(&events),
                loaded,
            }
        }
        Some(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
            log::warn!("the kernel dropped device announcements; looking at every device again");
            Heard {
                block: Vec::new(),
                loaded: on_hotplug(Hotplug::Rescan),
            }
        }
        Some(Err(e)) => {
            log::warn!("reading uevents failed ({e}); rescanning every {RETRY:?}");
            std::thread::sleep(RETRY);
            Heard {
                block: Vec::new(),
                loaded: on_hotplug(Hotplug::Rescan),
            }
        }
        // Without the netlink socket, the fallback is a slow rescan.
        None => {
            std::thread::sleep(pause.map_or(RETRY, |p| p.min(RETRY)));
            Heard {
                block: Vec::new(),
                loaded: on_hotplug(Hotplug::Rescan),
            }
        }
    }
}

/// The block devices `events` announce, each with whether what was read
/// of it is stale: removed, or a `change` that says its medium changed.
pub fn announced(events: &[nixlive_formats::uevent::Uevent]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| {
            let name = e.block_device()?;
            let stale = match e.action.as_deref() {
                Some("remove") => true,
                Some("change") => e.media_change,
                _ => false,
            };
            Some((name.to_string(), stale))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a uevent socket, every wake asks the loader to look at every
    /// device again: announcements are not heard, so none may be missed.
    #[test]
    fn without_uevents_the_loader_rescans() {
        let mut got = Vec::new();
        wait_for_events(None, Some(std::time::Duration::from_millis(1)), &mut |h| {
            got.push(format!("{h:?}"));
            false
        });
        assert_eq!(got, ["Rescan"]);
    }

    fn dev(name: &str, label: Option<&str>) -> BlockDev {
        BlockDev {
            name: name.into(),
            size_bytes: 1 << 20,
            partition: false,
            parent: None,
            gpt: None,
            ident: Ident::default(),
            probe: Some(Ok(label.map(|l| Identity {
                fstype: "iso9660",
                label: Some(l.into()),
                uuid: None,
            }))),
        }
    }

    #[test]
    fn matching() {
        let seen = Seen::default();
        let d = dev("sr0", Some("NIXLIVE"));
        assert!(matches(&RootSpec::Label("NIXLIVE".into()), &d, &seen));
        assert!(!matches(&RootSpec::Label("nixlive".into()), &d, &seen));
        assert!(matches(&RootSpec::Device("/dev/sr0".into()), &d, &seen));
        assert!(!matches(
            &RootSpec::Label("X".into()),
            &dev("sda", None),
            &seen
        ));
    }

    #[test]
    fn partlabel_uses_the_disks_gpt() {
        let mut seen = Seen::default();
        let mut disk = dev("vda", None);
        disk.gpt = Some(vec!["EFI".into(), "live".into()]);
        seen.devs.insert("vda".into(), disk);
        let mut p2 = dev("vda2", None);
        p2.parent = Some(("vda".into(), 2));
        let mut p1 = dev("vda1", None);
        p1.parent = Some(("vda".into(), 1));
        let want = RootSpec::PartLabel("live".into());
        assert!(matches(&want, &p2, &seen));
        seen.devs.insert("vda2".into(), p2.clone());
        assert!(seen.list().contains("partlabel=live"), "{}", seen.list());
        assert!(seen.list().contains("(GPT)"), "{}", seen.list());
        assert!(!matches(&want, &p1, &seen));
        let mut p0 = dev("vda9", None);
        p0.parent = Some(("vda".into(), 0));
        assert!(!matches(&want, &p0, &seen));
    }

    #[test]
    fn two_devices_with_one_label() {
        let mut seen = Seen::default();
        let mut part = dev("sda1", Some("NIXLIVE"));
        part.parent = Some(("sda".into(), 1));
        for d in [
            dev("sda", Some("NIXLIVE")),
            part,
            dev("sr0", Some("NIXLIVE")),
            dev("vda", Some("OTHER")),
        ] {
            seen.devs.insert(d.name.clone(), d);
        }
        // The stick's disk and partition are one medium; the CD another.
        assert_eq!(seen.same_label(&seen.devs["sda"]), ["/dev/sr0"]);
        assert_eq!(seen.same_label(&seen.devs["sda1"]), ["/dev/sr0"]);
        assert_eq!(
            seen.same_label(&seen.devs["sr0"]),
            ["/dev/sda", "/dev/sda1"]
        );
        assert!(seen.same_label(&seen.devs["vda"]).is_empty());
        assert!(seen.same_label(&dev("x", None)).is_empty());
    }

    #[test]
    fn loop_and_ram_devices_are_not_candidates() {
        for n in ["sda", "sr0", "vda1", "nvme0n1p2", "loopy", "mmcblk0"] {
            assert!(is_candidate(n), "{n}");
        }
        for n in ["loop0", "loop12", "ram0", "zram1"] {
            assert!(!is_candidate(n), "{n}");
        }
    }

    #[test]
    fn failure_hint_follows_the_kind_of_root() {
        let c = |line: &str| what_to_check(&nixlive_formats::Cmdline::parse(line));
        assert!(c("root=LABEL=X").contains("label"));
        assert!(c("root=UUID=x").contains("UUID"));
        assert!(c("root=PARTLABEL=x").contains("GPT"));
        assert!(c("root=LABEL=X findiso=/a.iso").contains("/a.iso"));
        assert!(c("root=/dev/sdz").contains("device name"));
    }

    #[test]
    fn unreadable_devices_show_no_size() {
        let mut d = dev("sr0", None);
        d.probe = Some(Err("no disc in the drive".into()));
        let s = d.describe();
        assert!(!s.contains("MiB") && s.contains("no disc"), "{s}");
    }

    #[test]
    fn describe_lists_what_was_seen() {
        let d = dev("sr0", Some("NIXLIVE"));
        let s = d.describe();
        assert!(
            s.contains("/dev/sr0") && s.contains("1.0 MiB") && s.contains("label=NIXLIVE"),
            "{s}"
        );
        let mut seen = Seen::default();
        assert!(seen.list().contains("no block devices"));
        seen.devs.insert("sr0".into(), d);
        assert!(seen.list().contains("iso9660"));
    }

    #[test]
    fn scan_reads_sysfs_fixture() {
        let dir = std::env::temp_dir().join(format!("nixlive-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // As in sysfs: class/block/NAME links to devices/.../block/DISK[/PART].
        let devices = dir.join("devices/pci0/block");
        std::fs::create_dir_all(dir.join("class/block")).unwrap();
        for (path, size, part) in [
            ("sda", "2048", None),
            ("sda/sda1", "1024", Some(1)),
            ("sr0", "0", None),
        ] {
            let d = devices.join(path);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
            std::fs::write(d.join("dev"), format!("8:{size}\n")).unwrap();
            if part.is_none() {
                std::fs::write(d.join("diskseq"), format!("{}\n", size.len())).unwrap();
            }
            if let Some(n) = part {
                std::fs::write(d.join("partition"), format!("{n}\n")).unwrap();
            }
            let name = path.rsplit('/').next().unwrap();
            std::os::unix::fs::symlink(&d, dir.join("class/block").join(name)).unwrap();
        }
        let sb = |name: &str, size_bytes: u64, parent: Option<(&str, u32)>, dev: &str| SysBlock {
            name: name.into(),
            size_bytes,
            parent: parent.map(|(d, n)| (d.into(), n)),
            // A partition has its disk's diskseq.
            ident: Ident {
                dev: dev.into(),
                diskseq: Some(if name == "sr0" { 1 } else { 4 }),
            },
        };
        assert_eq!(
            scan(&dir),
            vec![
                sb("sda", 1 << 20, None, "8:2048"),
                sb("sda1", 512 << 10, Some(("sda", 1)), "8:1024"),
                sb("sr0", 0, None, "8:0"),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn sysblock(name: &str, dev: &str, diskseq: Option<u64>) -> SysBlock {
        SysBlock {
            name: name.into(),
            size_bytes: 1 << 20,
            parent: None,
            ident: Ident {
                dev: dev.into(),
                diskseq,
            },
        }
    }

    /// A device is read again when another one has its name (removed and
    /// added, a new disc: `dev` or `diskseq` changed) or it could not be
    /// read; a device read once and unchanged is not.
    #[test]
    fn what_is_read_again() {
        let now = sysblock("sr0", "11:0", Some(4));
        assert!(must_probe(None, &now));
        let mut known = dev("sr0", Some("WRONG"));
        known.ident = now.ident.clone();
        assert!(!must_probe(Some(&known), &now));
        assert!(must_probe(Some(&known), &sysblock("sr0", "11:0", Some(5))));
        assert!(must_probe(Some(&known), &sysblock("sr0", "11:1", Some(4))));
        known.probe = Some(Err("the drive is not ready yet".into()));
        assert!(must_probe(Some(&known), &now));
        known.probe = None;
        assert!(must_probe(Some(&known), &now));
    }

    /// A verdict's key changes with the device's identity and with what
    /// its superblock says, not only with its name.
    #[test]
    fn identity_is_more_than_the_name() {
        let mut a = dev("sr0", Some("WRONG"));
        a.ident = Ident {
            dev: "11:0".into(),
            diskseq: Some(4),
        };
        let same = a.clone();
        assert_eq!(a.identity(), same.identity());
        let mut swapped = a.clone();
        swapped.ident.diskseq = Some(5);
        assert_ne!(a.identity(), swapped.identity());
        // Without diskseq (an older kernel), the superblock tells them apart.
        let mut old = a.clone();
        old.ident.diskseq = None;
        let mut other_disc = old.clone();
        other_disc.probe = dev("sr0", Some("NIXLIVE")).probe;
        assert_ne!(old.identity(), other_disc.identity());
        assert!(
            a.identity().contains("dev=11:0 diskseq=4"),
            "{}",
            a.identity()
        );
    }

    /// Removal and a media change make what was read stale; an `add` of a
    /// device is news but not stale; other subsystems are not devices.
    #[test]
    fn announcements() {
        use nixlive_formats::uevent::parse;
        let evs = [
            parse(b"ACTION=add\0SUBSYSTEM=block\0DEVNAME=vdb\0"),
            parse(b"ACTION=change\0SUBSYSTEM=block\0DEVNAME=sr0\0DISK_MEDIA_CHANGE=1\0"),
            parse(b"ACTION=change\0SUBSYSTEM=block\0DEVNAME=sda\0"),
            parse(b"ACTION=remove\0SUBSYSTEM=block\0DEVNAME=sdb1\0"),
            parse(b"ACTION=add\0SUBSYSTEM=pci\0MODALIAS=pci:v1\0"),
        ];
        assert_eq!(
            announced(&evs),
            vec![
                ("vdb".to_string(), false),
                ("sr0".to_string(), true),
                ("sda".to_string(), false),
                ("sdb1".to_string(), true),
            ]
        );
    }

    /// Candidates in name order, numbers as numbers, a disk before its
    /// partitions: never the order of announcement.
    #[test]
    fn candidate_order() {
        let mut names = vec![
            "vdb",
            "sr0",
            "vda",
            "sda10",
            "sda2",
            "sda",
            "nvme0n1p2",
            "nvme0n1",
            "sr1",
            "vda1",
        ];
        names.sort_by(|a, b| order(a, b));
        assert_eq!(
            names,
            [
                "nvme0n1",
                "nvme0n1p2",
                "sda",
                "sda2",
                "sda10",
                "sr0",
                "sr1",
                "vda",
                "vda1",
                "vdb"
            ]
        );
        for (a, b) in [("vda", "vdb"), ("sda", "sda1"), ("sd01", "sd1")] {
            assert_eq!(order(a, b), order(b, a).reverse(), "{a} {b}");
            assert!(order(a, b).is_ne(), "{a} {b}: a total order");
        }
    }

    /// The settling rule: a lone candidate with nothing announced lately
    /// and nothing coming up is taken at once; a recent announcement or a device still coming up holds the choice, never
    /// past SETTLE.
    #[test]
    fn settling() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let quiet = Settling {
            since_first: Duration::ZERO,
            since_news: None,
            coming_up: false,
        };
        assert_eq!(settle(quiet), None);
        assert_eq!(
            settle(Settling {
                since_news: Some(ms(50)),
                ..quiet
            }),
            Some(QUIET - ms(50))
        );
        assert_eq!(
            settle(Settling {
                since_news: Some(QUIET),
                ..quiet
            }),
            None
        );
        assert_eq!(
            settle(Settling {
                coming_up: true,
                ..quiet
            }),
            Some(RETRY)
        );
        assert_eq!(
            settle(Settling {
                since_first: SETTLE - ms(10),
                coming_up: true,
                ..quiet
            }),
            Some(ms(10))
        );
        for late in [SETTLE, SETTLE + ms(1)] {
            assert_eq!(
                settle(Settling {
                    since_first: late,
                    since_news: Some(Duration::ZERO),
                    coming_up: true,
                }),
                None,
                "the bound holds"
            );
        }
    }

    /// What a wait heard, taken in: a removal or a media change forgets the
    /// device (read again) without being news; a device new to the search
    /// or a driver loaded is news; an `add` of a device already read is
    /// nothing.
    #[test]
    fn taking_in_what_was_heard() {
        let mut seen = Seen::default();
        for n in ["sr0", "vda"] {
            seen.devs.insert(n.into(), dev(n, Some("X")));
        }
        let heard = |block: &[(&str, bool)], loaded| Heard {
            block: block.iter().map(|(n, f)| (n.to_string(), *f)).collect(),
            loaded,
        };
        assert_eq!(
            take_in(&mut seen, heard(&[("vda", false)], false)),
            (false, false)
        );
        assert_eq!(
            take_in(&mut seen, heard(&[("sr0", true)], false)),
            (true, false)
        );
        assert!(
            !seen.devs.contains_key("sr0"),
            "forgotten, to be read again"
        );
        assert_eq!(
            take_in(&mut seen, heard(&[("sr0", true)], false)),
            (false, false)
        );
        assert_eq!(
            take_in(&mut seen, heard(&[("vdb", false)], false)),
            (true, true)
        );
        assert_eq!(take_in(&mut seen, heard(&[], true)), (true, true));
    }
}

//! Finding the medium: block devices as the kernel announces them (uevent
//! netlink plus a scan of `/sys/class/block`), each probed once by reading
//! its superblock, until one matches `root=` or the time budget is spent.

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
}

impl BlockDev {
    pub fn node(&self) -> String {
        format!("/dev/{}", self.name)
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
        let parent = std::fs::read_to_string(base.join("partition"))
            .ok()
            .and_then(|n| n.trim().parse::<u32>().ok())
            .and_then(|n| {
                let real = std::fs::canonicalize(&base).ok()?;
                let disk = real.parent()?.file_name()?.to_string_lossy().into_owned();
                Some((disk, n))
            });
        out.push(SysBlock {
            name,
            size_bytes: sectors * 512,
            parent,
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
        Some(DriveStatus::NoDisc) => return Err("no disc in the drive".into()),
        Some(DriveStatus::TrayOpen) => return Err("the drive's tray is open".into()),
        Some(DriveStatus::NotReady) => return Err("the drive is not ready yet".into()),
        Some(DriveStatus::Ready) | None => {}
    }
    let size = f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    if size == 0 {
        return Err("no medium (size 0)".to_string());
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

/// Waits for a block device that `accept` takes: scans what exists, then
/// rescans whenever the kernel announces a block device. Devices that could
/// not be read (a CD drive still spinning up, a medium not yet inserted) are
/// retried after a short pause, since the kernel sends no event for those.
pub fn wait_for(
    accept: &mut dyn FnMut(&BlockDev, &Seen) -> bool,
    retry_unreadable: bool,
    on_hotplug: &mut dyn FnMut(Hotplug<'_>),
    sys: &Path,
    events: Option<&uevent::Uevents>,
    budget: Option<std::time::Duration>,
) -> Found {
    use std::time::Instant;
    let start = Instant::now();
    let mut seen = Seen::default();
    let mut slow = SlowProbes::default();
    loop {
        let unreadable = seen.refresh(sys, &mut slow) && retry_unreadable;
        // Matched after the whole scan, so partitions see their disk's GPT.
        if let Some(d) = seen.devs.values().find(|d| accept(d, &seen)) {
            let others = seen.same_label(d);
            if !others.is_empty() {
                log::warn!(
                    "{} devices carry the label {}: {} and {}; using {}",
                    others.len() + 1,
                    label_of(d).unwrap_or_default(),
                    d.node(),
                    others.join(", "),
                    d.node()
                );
            }
            return Found::Device(d.clone());
        }
        let elapsed = start.elapsed();
        let left = match budget {
            Some(b) if elapsed >= b => return Found::TimedOut(seen),
            Some(b) => Some(b - elapsed),
            None => None,
        };
        let pause = if unreadable {
            Some(left.map_or(RETRY, |l| l.min(RETRY)))
        } else {
            left
        };
        wait_for_events(events, pause, on_hotplug);
    }
}

/// How soon an unreadable device is tried again (the kernel sends no event
/// when a CD drive has spun up), and how often to rescan without uevents.
const RETRY: std::time::Duration = std::time::Duration::from_millis(250);

impl Seen {
    /// Scans the block devices and probes each one not yet read; returns
    /// whether one of them could not be read.
    fn refresh(&mut self, sys: &Path, slow: &mut SlowProbes) -> bool {
        let mut unreadable = false;
        for sb in scan(sys) {
            let size = sb.size_bytes;
            let entry = self
                .devs
                .entry(sb.name.clone())
                .or_insert_with(|| BlockDev {
                    name: sb.name,
                    size_bytes: size,
                    partition: sb.parent.is_some(),
                    parent: sb.parent,
                    gpt: None,
                    probe: None,
                });
            if !matches!(entry.probe, Some(Ok(_))) || size != 0 {
                entry.size_bytes = size;
            }
            if !matches!(entry.probe, Some(Ok(_))) {
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
            }
            unreadable |= matches!(entry.probe, Some(Err(_)));
        }
        unreadable
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

/// Sleeps until the kernel announces a device (or `pause` ends), handing
/// each announced modalias to `on_hotplug`: a new device may need its
/// driver before its disk appears. When announcements may have been
/// missed, `on_hotplug` is told to look at every device again.
fn wait_for_events(
    events: Option<&uevent::Uevents>,
    pause: Option<std::time::Duration>,
    on_hotplug: &mut dyn FnMut(Hotplug<'_>),
) {
    match events.map(|ev| ev.wait(pause)) {
        Some(Ok(events)) => {
            for a in events.iter().filter_map(|e| e.modalias.as_deref()) {
                on_hotplug(Hotplug::Modalias(a));
            }
        }
        Some(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
            log::warn!("the kernel dropped device announcements; looking at every device again");
            on_hotplug(Hotplug::Rescan);
        }
        Some(Err(e)) => {
            log::warn!("reading uevents failed ({e}); rescanning every {RETRY:?}");
            std::thread::sleep(RETRY);
            on_hotplug(Hotplug::Rescan);
        }
        // Without the netlink socket, the fallback is a slow rescan.
        None => {
            std::thread::sleep(pause.map_or(RETRY, |p| p.min(RETRY)));
            on_hotplug(Hotplug::Rescan);
        }
    }
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
            got.push(format!("{h:?}"))
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
            if let Some(n) = part {
                std::fs::write(d.join("partition"), format!("{n}\n")).unwrap();
            }
            let name = path.rsplit('/').next().unwrap();
            std::os::unix::fs::symlink(&d, dir.join("class/block").join(name)).unwrap();
        }
        let sb = |name: &str, size_bytes: u64, parent: Option<(&str, u32)>| SysBlock {
            name: name.into(),
            size_bytes,
            parent: parent.map(|(d, n)| (d.into(), n)),
        };
        assert_eq!(
            scan(&dir),
            vec![
                sb("sda", 1 << 20, None),
                sb("sda1", 512 << 10, Some(("sda", 1))),
                sb("sr0", 0, None),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

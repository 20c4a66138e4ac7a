//! Finding the medium: block devices as the kernel announces them (uevent
//! netlink plus a scan of `/sys/class/block`), each probed once by reading
//! its superblock, until one matches `root=` or the time budget is spent.

pub mod probe;
pub mod uevent;

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
        format!(
            "{:<12} {:>10} {}{}",
            self.node(),
            human_size(self.size_bytes),
            if self.partition { "partition " } else { "" },
            what
        )
    }
}

pub fn human_size(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
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
        RootSpec::Label(l) => id.is_some_and(|i| i.label.as_deref() == Some(l.as_str())),
        RootSpec::Uuid(u) => {
            id.is_some_and(|i| i.uuid.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)))
        }
        RootSpec::PartLabel(l) => dev.parent.as_ref().is_some_and(|(disk, n)| {
            seen.devs
                .get(disk)
                .and_then(|d| d.gpt.as_ref())
                .and_then(|names| names.get((*n as usize).checked_sub(1)?))
                .is_some_and(|name| name == l)
        }),
    }
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
            .map(|d| format!("  {}", d.describe()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads the first bytes of a device node, as many as the probes need.
pub fn read_head(node: &str, size: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(node).map_err(|e| e.to_string())?;
    let want = probe::PROBE_LEN.min(size as usize);
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
    Ok(buf)
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
    on_modalias: &mut dyn FnMut(&str),
    sys: &Path,
    events: Option<&uevent::Uevents>,
    budget: Option<std::time::Duration>,
) -> Found {
    use std::time::{Duration, Instant};
    const RETRY: Duration = Duration::from_millis(250);
    let start = Instant::now();
    let mut seen = Seen::default();
    loop {
        let mut unreadable = false;
        for sb in scan(sys) {
            let size = sb.size_bytes;
            let entry = seen
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
            entry.size_bytes = size;
            if !matches!(entry.probe, Some(Ok(_))) {
                // An empty drive (size 0) has nothing to read yet.
                let (probe, gpt) = if size == 0 {
                    (Err("no medium (size 0)".to_string()), None)
                } else {
                    match read_head(&entry.node(), size) {
                        Ok(head) => (Ok(probe::identify(&head)), probe::gpt_names(&head)),
                        Err(e) => (Err(e), None),
                    }
                };
                entry.probe = Some(probe);
                entry.gpt = gpt;
                log::debug!("probed {}", entry.describe());
            }
            if matches!(entry.probe, Some(Err(_))) && retry_unreadable {
                unreadable = true;
            }
        }
        // Matched after the whole scan, so partitions see their disk's GPT.
        if let Some(d) = seen.devs.values().find(|d| accept(d, &seen)) {
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
        match events {
            Some(ev) => match ev.wait(pause) {
                Ok(events) => {
                    // A new device may need its driver before its disk appears.
                    for e in events {
                        if let Some(a) = &e.modalias {
                            on_modalias(a);
                        }
                    }
                }
                Err(e) => {
                    log::warn!("reading uevents failed ({e}); rescanning every {RETRY:?}");
                    std::thread::sleep(RETRY);
                }
            },
            // Without the netlink socket, the fallback is a slow rescan.
            None => std::thread::sleep(pause.map_or(RETRY, |p| p.min(RETRY))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!matches(&want, &p1, &seen));
        let mut p0 = dev("vda9", None);
        p0.parent = Some(("vda".into(), 0));
        assert!(!matches(&want, &p0, &seen));
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

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

/// Does this device satisfy `root=`?
pub fn matches(spec: &RootSpec, dev: &BlockDev) -> bool {
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
        // GPT partition names come with a later probe.
        RootSpec::PartLabel(_) => false,
    }
}

/// Lists the block devices under `<sys>/class/block` with size and kind.
pub fn scan(sys: &Path) -> Vec<(String, u64, bool)> {
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
        let partition = base.join("partition").exists();
        out.push((name, sectors * 512, partition));
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

/// Reads the head of a device node and identifies its filesystem.
pub fn probe_node(node: &str, size: u64) -> Result<Option<Identity>, String> {
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
    Ok(probe::identify(&buf[..got]))
}

/// The outcome of waiting: the device, or what was seen instead.
pub enum Found {
    Device(BlockDev),
    TimedOut(Seen),
}

/// Waits for a block device matching `spec`: scans what exists, then
/// rescans whenever the kernel announces a block device. Devices that could
/// not be read (a CD drive still spinning up, a medium not yet inserted) are
/// retried after a short pause, since the kernel sends no event for those.
pub fn wait_for(
    spec: &RootSpec,
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
        for (name, size, partition) in scan(sys) {
            let entry = seen.devs.entry(name.clone()).or_insert_with(|| BlockDev {
                name,
                size_bytes: size,
                partition,
                probe: None,
            });
            entry.size_bytes = size;
            let needs_probe = !matches!(entry.probe, Some(Ok(_)));
            if needs_probe {
                // An empty drive (size 0) has nothing to read yet.
                entry.probe = Some(if size == 0 {
                    Err("no medium (size 0)".to_string())
                } else {
                    probe_node(&entry.node(), size)
                });
                log::debug!("probed {}", entry.describe());
            }
            if matches!(entry.probe, Some(Err(_))) && !matches!(spec, RootSpec::Device(_)) {
                unreadable = true;
            }
            if matches(spec, entry) {
                return Found::Device(entry.clone());
            }
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
            Some(ev) => {
                if let Err(e) = ev.wait(pause) {
                    log::warn!("reading uevents failed ({e}); rescanning every {RETRY:?}");
                    std::thread::sleep(RETRY);
                }
            }
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
            probe: Some(Ok(label.map(|l| Identity {
                fstype: "iso9660",
                label: Some(l.into()),
                uuid: None,
            }))),
        }
    }

    #[test]
    fn matching() {
        let d = dev("sr0", Some("NIXLIVE"));
        assert!(matches(&RootSpec::Label("NIXLIVE".into()), &d));
        assert!(!matches(&RootSpec::Label("nixlive".into()), &d));
        assert!(matches(&RootSpec::Device("/dev/sr0".into()), &d));
        assert!(!matches(&RootSpec::Label("X".into()), &dev("sda", None)));
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
        for (n, size, part) in [
            ("sda", "2048", false),
            ("sda1", "1024", true),
            ("sr0", "0", false),
        ] {
            let d = dir.join("class/block").join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
            if part {
                std::fs::write(d.join("partition"), "1\n").unwrap();
            }
        }
        let s = scan(&dir);
        assert_eq!(
            s,
            vec![
                ("sda".into(), 1 << 20, false),
                ("sda1".into(), 512 << 10, true),
                ("sr0".into(), 0, false)
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

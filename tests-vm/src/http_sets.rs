//! `netboot --http` sets as the HTTP netboot VM tests and `make bench`
//! boot them: the set's kernel and initrd given to QEMU directly, a virtio
//! NIC on QEMU's user network (the host's loopback is 10.0.2.2 in the
//! guest), `nixlive.url=` pointing at a server on the host, and what init
//! logs about RAM just before stage 2.

use std::path::Path;

use crate::arch::Arch;
use crate::qemu::{Accel, QemuCommand};

/// `nixlive.url=` for a server on the host's loopback `port`.
pub fn url(port: u16) -> String {
    format!("http://10.0.2.2:{port}/nixlive.manifest")
}

/// The set's command line (its `cmdline` file) with `nixlive.url=`
/// replaced by `url` (dropped when `None`), then `more`.
pub fn cmdline(set: &Path, url: Option<&str>, more: &str) -> Result<String, String> {
    let path = set.join("cmdline");
    let line =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut words: Vec<String> = line
        .split_whitespace()
        .filter(|w| !w.starts_with("nixlive.url="))
        .map(String::from)
        .collect();
    if let Some(u) = url {
        words.push(format!("nixlive.url={u}"));
    }
    words.extend(more.split_whitespace().map(String::from));
    Ok(words.join(" "))
}

/// The set's kernel and initrd booted directly with `append`, `mem_mib`
/// of RAM and a virtio NIC on QEMU's user network.
pub fn direct(arch: Arch, set: &Path, append: &str, mem_mib: u32, accel: Accel) -> QemuCommand {
    let mut cmd = arch.qemu(accel);
    if let Some(i) = cmd.args.iter().position(|a| a == "-m") {
        cmd.args[i + 1] = mem_mib.to_string().into();
    }
    cmd.arg("-kernel")
        .arg(set.join("bzImage"))
        .arg("-initrd")
        .arg(set.join("initrd"))
        .arg("-append")
        .arg(append)
        .arg("-netdev")
        .arg("user,id=n0")
        .arg("-device")
        .arg("virtio-net-pci,netdev=n0")
}

/// The `MemAvailable` (KiB) init logs just before it switches to stage 2
/// (`MemAvailable before stage 2: N kB`).
pub fn mem_available_kib(log: &str) -> Option<u64> {
    log.lines().find_map(|l| {
        let rest = l.split_once("MemAvailable before stage 2: ")?.1;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Writes `bytes` of incompressible data (xorshift: fast, and neither
/// squashfs nor erofs can compress it) as `ballast` in the store path
/// `system` under `root`: images that big without a big build.
pub fn ballast(root: &Path, system: &str, bytes: usize) -> Result<(), String> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = vec![0u8; bytes];
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let p = root.join(system.trim_start_matches('/')).join("ballast");
    std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))
}

/// The total size of the images the set's manifest lists.
pub fn images_total(set: &Path) -> Result<u64, String> {
    let path = set.join("nixlive.manifest");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let m =
        nixlive_formats::Manifest::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(m.images.iter().map(|i| i.size).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logged_mem_available() {
        let log = "[    3.1] nixlive-init: x\r\n[    3.2] nixlive-init: MemAvailable before stage 2: 812345 kB\n";
        assert_eq!(mem_available_kib(log), Some(812_345));
        assert_eq!(mem_available_kib("nothing"), None);
        assert_eq!(
            mem_available_kib("MemAvailable before stage 2: lots kB"),
            None
        );
    }

    #[test]
    fn the_url_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("cmdline"),
            "init=/x nixlive.url=${base}/nixlive.manifest console=ttyS0\n",
        )
        .unwrap();
        assert_eq!(
            cmdline(d.path(), Some(&url(8080)), "a=b").unwrap(),
            "init=/x console=ttyS0 nixlive.url=http://10.0.2.2:8080/nixlive.manifest a=b"
        );
        assert_eq!(
            cmdline(d.path(), None, "").unwrap(),
            "init=/x console=ttyS0"
        );
        assert!(cmdline(&d.path().join("none"), None, "").is_err());
    }
}

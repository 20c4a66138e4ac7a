//! The stage 1s `make bench` compares nixlive with, and the one stage-2
//! payload they all start: a busybox script that prints the kernel uptime
//! and `MemAvailable` as its first act and powers off.
//!
//! - `kernel-only`: an initrd whose `/init` is the payload (the floor);
//! - `busybox-floor`: a hand-written busybox script with nixlive's modules,
//!   a fixed `/dev/sr0`, the same mounts as nixlive, `switch_root`;
//! - `debian-live-boot`: Debian's live-boot initrd (initramfs-tools),
//!   `boot=live`, a CD with `/live/filesystem.squashfs`;
//! - `dracut-dmsquash-live`: dracut's dmsquash-live (systemd in the initrd),
//!   `root=live:CDLABEL=... rd.live.image`, a CD with `LiveOS/squashfs.img`
//!   holding `LiveOS/rootfs.img` (an ext4 image: dracut's default
//!   device-mapper snapshot mode; its overlayfs mode fails on Debian's 059
//!   with "failed to resolve /run/overlayfs").
//!
//! The peers' initrds are built by `scripts/fetch-bench-peers.sh` in
//! debootstrap chroots as a Debian user would build them, for the very
//! kernel the bench boots, and cached under `.cache/bench-peers`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::artifacts;

/// The payload's line with the uptime (seconds, as `/proc/uptime` has it).
pub const UPTIME_MARKER: &str = "BENCH-UPTIME";
/// The payload's line with `MemAvailable` (KiB).
pub const MEM_MARKER: &str = "BENCH-MEMAVAIL";
/// The line after both.
pub const DONE_MARKER: &str = "BENCH-DONE";

/// The payload as a store path of nixlive's medium (a valid, if unlikely,
/// store path name), beside the demo system.
pub const PAYLOAD_STORE_PATH: &str =
    "/nix/store/11111111111111111111111111111111-nixlive-bench-payload";

/// The payload script; `busybox` is where busybox is in the booted root.
/// The uptime is read by the shell's own `read` before anything is run.
pub fn payload_script(busybox: &str) -> String {
    format!(
        "#!{busybox} sh\n\
         b={busybox}\n\
         $b mount -t proc proc /proc 2>/dev/null\n\
         read up idle < /proc/uptime\n\
         echo \"{UPTIME_MARKER} $up\"\n\
         while read k v u; do [ \"$k\" = MemAvailable: ] && echo \"{MEM_MARKER} $v\"; done < /proc/meminfo\n\
         echo {DONE_MARKER}\n\
         $b poweroff -f\n"
    )
}

/// What one boot's payload printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub uptime_s: f64,
    pub mem_available_kib: u64,
}

/// Reads the payload's lines from a serial log (the last of each).
pub fn parse_sample(log: &str) -> Option<Sample> {
    let mut uptime = None;
    let mut mem = None;
    for l in log.lines() {
        // A console line may carry the kernel's output before the marker.
        if let Some(i) = l.find(UPTIME_MARKER) {
            uptime = l[i + UPTIME_MARKER.len()..].trim().parse::<f64>().ok();
        }
        if let Some(i) = l.find(MEM_MARKER) {
            mem = l[i + MEM_MARKER.len()..].trim().parse::<u64>().ok();
        }
    }
    Some(Sample {
        uptime_s: uptime?,
        mem_available_kib: mem?,
    })
}

pub fn sh(cmd: &str) -> Result<(), String> {
    let st = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{cmd}` failed: {st}"))
    }
}

pub fn write_exec(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

const BUSYBOX: &str = "/bin/busybox";

/// Writes the payload store path into nixlive's store root.
pub fn write_payload_store_path(store_root: &Path) -> Result<(), String> {
    let dir = store_root.join(PAYLOAD_STORE_PATH.trim_start_matches('/'));
    std::fs::create_dir_all(dir.join("bin")).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::copy(BUSYBOX, dir.join("bin/busybox"))
        .map_err(|e| format!("copying {BUSYBOX} (install busybox-static): {e}"))?;
    write_exec(
        &dir.join("init"),
        &payload_script(&format!("{PAYLOAD_STORE_PATH}/bin/busybox")),
    )
}

/// The payload's `init=` in nixlive's medium.
pub fn payload_init() -> String {
    format!("{PAYLOAD_STORE_PATH}/init")
}

/// Packs `dir` as a zstd-compressed newc cpio at `out` (the compression
/// nixlive's builder uses).
pub fn pack(dir: &Path, out: &Path) -> Result<(), String> {
    sh(&format!(
        "cd '{}' && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | zstd -q -19 -f -o '{}'",
        dir.display(),
        out.display()
    ))
}

/// The kernel-only initrd: busybox and the payload as `/init`.
pub fn kernel_only_initrd(work: &Path) -> Result<PathBuf, String> {
    let tree = work.join("kernel-only-initrd");
    let _ = std::fs::remove_dir_all(&tree);
    sh(&format!(
        "mkdir -p '{0}/bin' '{0}/proc' '{0}/dev' && cp {BUSYBOX} '{0}/bin/busybox'",
        tree.display()
    ))?;
    write_exec(&tree.join("init"), &payload_script(BUSYBOX))?;
    let out = work.join("kernel-only.img");
    pack(&tree, &out)?;
    Ok(out)
}

/// The busybox script: nixlive's initrd's modules (from its unpacked tree
/// `nixlive_tree`, whose `etc/nixlive/initrd.conf` lists them in load
/// order), a fixed `/dev/sr0` polled for, nixlive's mounts, then the
/// payload through `switch_root`.
pub fn busybox_floor_initrd(work: &Path, nixlive_tree: &Path) -> Result<PathBuf, String> {
    let conf = std::fs::read_to_string(nixlive_tree.join("etc/nixlive/initrd.conf"))
        .map_err(|e| format!("reading the initrd config: {e}"))?;
    let conf = nixlive_formats::InitrdConf::parse(&conf).map_err(|e| e.to_string())?;
    let tree = work.join("busybox-initrd");
    let _ = std::fs::remove_dir_all(&tree);
    sh(&format!(
        "cp -a '{0}' '{1}' && rm -rf '{1}/init' '{1}/etc/nixlive' && mkdir -p '{1}/bin' && cp {BUSYBOX} '{1}/bin/busybox'",
        nixlive_tree.display(),
        tree.display(),
    ))?;
    let mut script = String::from(
        "#!/bin/busybox sh\nexport PATH=/bin\n/bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\nmount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\nmount -t tmpfs tmpfs /run\n",
    );
    for m in &conf.modules {
        script.push_str(&format!("insmod /lib/modules/{}/{m}\n", conf.kernel));
    }
    script.push_str(&format!(
        "while [ ! -b /dev/sr0 ]; do usleep 10000; done\n\
         mkdir -p /mnt-root && mount -t tmpfs -o mode=0755 tmpfs /mnt-root\n\
         mkdir -p /mnt-root/iso && mount -t iso9660 -o ro /dev/sr0 /mnt-root/iso\n\
         mkdir -p /mnt-root/nix/.ro-store /mnt-root/nix/.rw-store /mnt-root/nix/store\n\
         mount -t squashfs -o loop,ro /mnt-root/iso/nix-store.squashfs /mnt-root/nix/.ro-store\n\
         mount -t tmpfs -o mode=0755 tmpfs /mnt-root/nix/.rw-store\n\
         mkdir -p /mnt-root/nix/.rw-store/store /mnt-root/nix/.rw-store/work\n\
         mount -t overlay -o lowerdir=/mnt-root/nix/.ro-store,upperdir=/mnt-root/nix/.rw-store/store,workdir=/mnt-root/nix/.rw-store/work overlay /mnt-root/nix/store\n\
         mkdir -p /mnt-root/dev /mnt-root/proc /mnt-root/sys /mnt-root/run\n\
         for d in dev proc sys run; do mount --move /$d /mnt-root/$d; done\n\
         exec switch_root /mnt-root {}\n",
        payload_init()
    ));
    write_exec(&tree.join("init"), &script)?;
    let out = work.join("busybox.img");
    pack(&tree, &out)?;
    Ok(out)
}

/// A root file system for the peers' media: busybox, the payload as
/// `/sbin/init`, `/etc/os-release` (systemd's switch-root in dracut's
/// initrd wants one).
fn payload_root(dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    sh(&format!(
        "mkdir -p '{0}/bin' '{0}/sbin' '{0}/etc' '{0}/usr/lib' '{0}/proc' '{0}/sys' '{0}/dev' '{0}/run' '{0}/tmp' '{0}/root' && \
         cp {BUSYBOX} '{0}/bin/busybox' && ln -s busybox '{0}/bin/sh'",
        dir.display()
    ))?;
    write_exec(&dir.join("sbin/init"), &payload_script(BUSYBOX))?;
    let os_release =
        "NAME=\"nixlive bench payload\"\nID=nixlive-bench\nPRETTY_NAME=\"nixlive bench payload\"\n";
    for f in ["etc/os-release", "usr/lib/os-release"] {
        std::fs::write(dir.join(f), os_release).map_err(|e| format!("{f}: {e}"))?;
    }
    Ok(())
}

fn mksquashfs(tree: &Path, out: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(out);
    sh(&format!(
        "mksquashfs '{}' '{}' -comp zstd -no-progress -quiet -all-root -noappend >/dev/null",
        tree.display(),
        out.display()
    ))
}

fn iso(tree: &Path, label: &str, out: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(out);
    sh(&format!(
        "xorriso -as mkisofs -quiet -R -J -V '{label}' -o '{}' '{}' 2>/dev/null",
        out.display(),
        tree.display()
    ))
}

/// The CD Debian's live-boot boots: `/live/filesystem.squashfs` of the
/// payload root.
pub fn live_boot_iso(work: &Path) -> Result<PathBuf, String> {
    let root = work.join("live-boot-root");
    payload_root(&root)?;
    let medium = work.join("live-boot-medium");
    let _ = std::fs::remove_dir_all(&medium);
    std::fs::create_dir_all(medium.join("live")).map_err(|e| e.to_string())?;
    mksquashfs(&root, &medium.join("live/filesystem.squashfs"))?;
    let out = work.join("live-boot.iso");
    iso(&medium, "BENCH_LIVEBOOT", &out)?;
    Ok(out)
}

/// The ISO volume ID of dracut's CD (`root=live:CDLABEL=`).
pub const DRACUT_LABEL: &str = "BENCH_DRACUT";

/// The CD dracut's dmsquash-live boots: `LiveOS/squashfs.img` holding
/// `LiveOS/rootfs.img`, an ext4 image of the payload root.
pub fn dracut_iso(work: &Path) -> Result<PathBuf, String> {
    let root = work.join("dracut-root");
    payload_root(&root)?;
    let inner = work.join("dracut-squash-tree");
    let _ = std::fs::remove_dir_all(&inner);
    std::fs::create_dir_all(inner.join("LiveOS")).map_err(|e| e.to_string())?;
    sh(&format!(
        "mkfs.ext4 -q -F -d '{}' -L rootfs -E root_owner=0:0 '{}' 32M",
        root.display(),
        inner.join("LiveOS/rootfs.img").display()
    ))?;
    let medium = work.join("dracut-medium");
    let _ = std::fs::remove_dir_all(&medium);
    std::fs::create_dir_all(medium.join("LiveOS")).map_err(|e| e.to_string())?;
    mksquashfs(&inner, &medium.join("LiveOS/squashfs.img"))?;
    let out = work.join("dracut.iso");
    iso(&medium, DRACUT_LABEL, &out)?;
    Ok(out)
}

/// The peers' initrds (`live-boot.img`, `dracut.img`), built and cached
/// by `scripts/fetch-bench-peers.sh` (`make bench` runs it first).
pub fn peer_initrds() -> Result<(PathBuf, PathBuf), String> {
    let dir = artifacts::workspace_root().join(".cache/bench-peers");
    let found = |name: &str| {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{} is missing: run scripts/fetch-bench-peers.sh (make bench does)",
                p.display()
            ))
        }
    };
    Ok((found("live-boot.img")?, found("dracut.img")?))
}

/// The bytes of the initrd's archives unpacked: leading uncompressed
/// newc archives (early microcode, as initramfs-tools and dracut write
/// them) are counted as they are, the compressed rest through its
/// decompressor (zstd, gzip, xz, lz4).
pub fn unpacked_size(path: &Path) -> Result<u64, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut off = 0usize;
    let mut total = 0u64;
    loop {
        while off < data.len() && data[off] == 0 {
            off += 1;
        }
        if off >= data.len() {
            return Ok(total);
        }
        let rest = &data[off..];
        if rest.starts_with(b"070701") {
            let n =
                newc_len(rest).ok_or_else(|| format!("{}: a bad cpio archive", path.display()))?;
            total += n as u64;
            off += n;
            continue;
        }
        let tool = if rest.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            "zstd"
        } else if rest.starts_with(&[0x1f, 0x8b]) {
            "gzip"
        } else if rest.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            "xz"
        } else if rest.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
            "lz4"
        } else {
            return Err(format!(
                "{}: unknown data at byte {off} (not cpio, zstd, gzip, xz, lz4)",
                path.display()
            ));
        };
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tail -c +{} '{}' | {tool} -dc | wc -c",
                off + 1,
                path.display()
            ))
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        let n: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("{}: decompressing with {tool} failed", path.display()))?;
        return Ok(total + n);
    }
}

/// The length of the newc archive at the start of `d`, through its
/// `TRAILER!!!` entry (4-byte aligned as the kernel reads it).
fn newc_len(d: &[u8]) -> Option<usize> {
    nixlive_formats::cpio::parse_archive(d)
        .ok()
        .map(|(_, n)| n.min(d.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_from_a_noisy_console() {
        let log = "[    3.1] random: crng\nBENCH-UPTIME 4.52\n[ 4.6] x BENCH-MEMAVAIL 812345\nBENCH-DONE\n";
        assert_eq!(
            parse_sample(log),
            Some(Sample {
                uptime_s: 4.52,
                mem_available_kib: 812_345
            })
        );
        assert_eq!(parse_sample("BENCH-UPTIME 4.52\n"), None);
        assert_eq!(parse_sample("BENCH-UPTIME x\nBENCH-MEMAVAIL 1\n"), None);
    }

    #[test]
    fn newc_length_runs_through_the_trailer() {
        fn entry(name: &str, data: &[u8]) -> Vec<u8> {
            let mut v = format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                0, 0o100644, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0
            )
            .into_bytes();
            v.extend_from_slice(name.as_bytes());
            v.push(0);
            while v.len() % 4 != 0 {
                v.push(0);
            }
            v.extend_from_slice(data);
            while v.len() % 4 != 0 {
                v.push(0);
            }
            v
        }
        let mut a = entry("kernel/x86/microcode/GenuineIntel.bin", b"abcde");
        a.extend(entry("TRAILER!!!", b""));
        let n = a.len();
        a.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(newc_len(&a), Some(n));
        assert_eq!(newc_len(b"070701"), None);
        assert_eq!(newc_len(b"garbage"), None);
    }
}

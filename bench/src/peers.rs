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

use nixlive_tests_vm::artifacts;

/// The payload's line with the uptime (seconds, as `/proc/uptime` has it).
pub const UPTIME_MARKER: &str = "BENCH-UPTIME";
/// The payload's line with `MemAvailable` (KiB).
pub const MEM_MARKER: &str = "BENCH-MEMAVAIL";
/// The payload's line with how many iso9660 file systems are mounted in
/// stage 2 (after the two measured lines): 0 once a stage 1 released the
/// CD it copied to RAM.
pub const ISO_MOUNTS_MARKER: &str = "BENCH-ISO9660-MOUNTS";
/// The payload's line with `Shmem` (KiB: tmpfs and ramfs contents, where
/// an image copied to RAM lives), after the measured lines.
pub const SHMEM_MARKER: &str = "BENCH-SHMEM";
/// The line after all.
pub const DONE_MARKER: &str = "BENCH-DONE";

/// The payload as a store path of nixlive's medium (a valid, if unlikely,
/// store path name), beside the demo system.
pub const PAYLOAD_STORE_PATH: &str =
    "/nix/store/11111111111111111111111111111111-nixlive-bench-payload";

/// The payload script; `busybox` is where busybox is in the booted root.
/// The uptime is read by the shell's own `read` before anything is run;
/// the iso9660 mounts are counted after both measured lines.
pub fn payload_script(busybox: &str) -> String {
    format!(
        "#!{busybox} sh\n\
         b={busybox}\n\
         $b mount -t proc proc /proc 2>/dev/null\n\
         read up idle < /proc/uptime\n\
         echo \"{UPTIME_MARKER} $up\"\n\
         while read k v u; do [ \"$k\" = MemAvailable: ] && echo \"{MEM_MARKER} $v\"; done < /proc/meminfo\n\
         while read k v u; do [ \"$k\" = Shmem: ] && echo \"{SHMEM_MARKER} $v\"; done < /proc/meminfo\n\
         n=0; while read d m t r; do [ \"$t\" = iso9660 ] && n=$((n+1)); done < /proc/mounts\n\
         echo \"{ISO_MOUNTS_MARKER} $n\"\n\
         echo {DONE_MARKER}\n\
         $b poweroff -f\n"
    )
}

/// What one boot's payload printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub uptime_s: f64,
    pub mem_available_kib: u64,
    /// iso9660 file systems mounted in stage 2 (`None`: not reported).
    pub iso9660_mounts: Option<u32>,
    /// `Shmem` (KiB) then (`None`: not reported).
    pub shmem_kib: Option<u64>,
}

/// Reads the payload's lines from a serial log (the last of each).
pub fn parse_sample(log: &str) -> Option<Sample> {
    let mut uptime = None;
    let mut mem = None;
    let mut isos = None;
    let mut shmem = None;
    for l in log.lines() {
        // A console line may carry the kernel's output before the marker.
        if let Some(i) = l.find(UPTIME_MARKER) {
            uptime = l[i + UPTIME_MARKER.len()..].trim().parse::<f64>().ok();
        }
        if let Some(i) = l.find(MEM_MARKER) {
            mem = l[i + MEM_MARKER.len()..].trim().parse::<u64>().ok();
        }
        if let Some(i) = l.find(ISO_MOUNTS_MARKER) {
            isos = l[i + ISO_MOUNTS_MARKER.len()..].trim().parse::<u32>().ok();
        }
        if let Some(i) = l.find(SHMEM_MARKER) {
            shmem = l[i + SHMEM_MARKER.len()..].trim().parse::<u64>().ok();
        }
    }
    Some(Sample {
        uptime_s: uptime?,
        mem_available_kib: mem?,
        iso9660_mounts: isos,
        shmem_kib: shmem,
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
fn payload_root(dir: &Path, ballast: usize) -> Result<(), String> {
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
    if ballast > 0 {
        nixlive_tests_vm::http_sets::ballast(dir, "/", ballast)?;
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
    live_boot_iso_with(work, 0)
}

/// [`live_boot_iso`] with `ballast` bytes of incompressible data in the
/// payload root (`/ballast`).
pub fn live_boot_iso_with(work: &Path, ballast: usize) -> Result<PathBuf, String> {
    let root = work.join("live-boot-root");
    payload_root(&root, ballast)?;
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
    dracut_iso_with(work, 0)
}

/// [`dracut_iso`] with `ballast` bytes of incompressible data in the
/// payload root (`/ballast`); the ext4 image grows by as much.
pub fn dracut_iso_with(work: &Path, ballast: usize) -> Result<PathBuf, String> {
    let root = work.join("dracut-root");
    payload_root(&root, ballast)?;
    let inner = work.join("dracut-squash-tree");
    let _ = std::fs::remove_dir_all(&inner);
    std::fs::create_dir_all(inner.join("LiveOS")).map_err(|e| e.to_string())?;
    sh(&format!(
        "mkfs.ext4 -q -F -d '{}' -L rootfs -E root_owner=0:0 '{}' {}M",
        root.display(),
        inner.join("LiveOS/rootfs.img").display(),
        32 + (ballast >> 20) * 11 / 10
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

/// A nixlive boot entry's (or netboot set's) command line for the bench:
/// its `initrd=`, `init=` and consoles give way to the bench's `console`
/// and `init=` the payload.
pub fn payload_append(line: &str, console: &str) -> String {
    let mut words: Vec<String> = line
        .split_whitespace()
        .filter(|w| {
            !["initrd=", "init=", "console="]
                .iter()
                .any(|k| w.starts_with(k))
        })
        .map(str::to_string)
        .collect();
    words.push(console.to_string());
    words.push(format!("init={}", payload_init()));
    words.join(" ")
}

/// How a stage 1 shows, on the serial console, that it copied its image to
/// RAM (`copytoram`, live-boot's `toram`, dracut's `rd.live.ram=1`).
#[derive(Debug, Clone, Copy)]
pub struct RamProof {
    /// Lines it prints once the copy is done (each must be in the log).
    pub copied: &'static [&'static str],
    /// Lines it prints when it gives the copy up (none may be).
    pub failed: &'static [&'static str],
    /// Whether it unmounts the CD after the copy (then stage 2 must see no
    /// iso9660 mount).
    pub releases_medium: bool,
}

/// nixlive's `copytoram`: the medium is unmounted and it says so.
pub const NIXLIVE_RAM: RamProof = RamProof {
    copied: &["The boot medium is no longer needed and can be removed."],
    failed: &["copytoram failed", "copytoram: the images need"],
    releases_medium: true,
};

/// live-boot's `toram`: `log_begin_msg "Copying live media to ram"`, then
/// its `copy_live_to` unmounts the CD (its warnings when it gives up).
pub const LIVE_BOOT_RAM: RamProof = RamProof {
    copied: &["Copying live media to ram"],
    failed: &["to copy live media in", "could not be read"],
    releases_medium: true,
};

/// dracut 059's `rd.live.ram=1`: `dmsquash-live-root` copies
/// `LiveOS/squashfs.img` into `/run/initramfs` and says so on `/dev/kmsg`,
/// but leaves the CD mounted on `/run/initramfs/live`.
pub const DRACUT_RAM: RamProof = RamProof {
    copied: &["Done copying live image to RAM."],
    failed: &[],
    releases_medium: false,
};

/// Whether `peer`'s boot (its serial `log`, the payload's `sample`) really
/// ran from a copy in RAM: an error (naming the peer and the missing or
/// offending line) otherwise, so the row is not taken for a result.
pub fn check_ram(peer: &str, proof: &RamProof, log: &str, sample: &Sample) -> Result<(), String> {
    if let Some(f) = proof.failed.iter().find(|f| log.contains(**f)) {
        let line = log.lines().find(|l| l.contains(*f)).unwrap_or(f).trim();
        return Err(format!(
            "{peer} did not copy its image to RAM: its console says {line:?}"
        ));
    }
    if let Some(c) = proof.copied.iter().find(|c| !log.contains(**c)) {
        return Err(format!(
            "{peer} shows no copy to RAM: its console never says {c:?}"
        ));
    }
    if proof.releases_medium {
        match sample.iso9660_mounts {
            None => {
                return Err(format!(
                    "{peer}: the payload did not report the iso9660 mounts ({ISO_MOUNTS_MARKER})"
                ));
            }
            Some(0) => {}
            Some(n) => {
                return Err(format!(
                    "{peer} copied to RAM but the CD is still mounted in stage 2 ({n} iso9660 mounts): it cannot be ejected"
                ));
            }
        }
    }
    Ok(())
}

/// Whether the HTTP server saw `GET /file` (`seen`: the paths it was
/// asked for) during `peer`'s netboot: the root came over the network.
pub fn check_fetched(peer: &str, seen: &[String], file: &str) -> Result<(), String> {
    let want = format!("/{}", file.trim_start_matches('/'));
    if seen.contains(&want) {
        Ok(())
    } else if seen.is_empty() {
        Err(format!(
            "{peer} never fetched {want}: the HTTP server saw no request (no network in its initrd?)"
        ))
    } else {
        Err(format!(
            "{peer} never fetched {want}: the HTTP server saw only {}",
            seen.join(", ")
        ))
    }
}

/// The kernel command lines of the peers' copy-to-RAM and netboot rows
/// (`console`: the serial console; `url`: the root image's URL).
pub fn live_boot_toram_append(console: &str) -> String {
    format!("{console} boot=live toram")
}

pub fn dracut_ram_append(console: &str) -> String {
    format!("{console} root=live:CDLABEL={DRACUT_LABEL} rd.live.image rd.live.ram=1")
}

/// live-boot's `fetch=`: it configures every NIC by DHCP (its `ipconfig`)
/// and downloads `filesystem.squashfs` into a ramfs with wget.
pub fn live_boot_fetch_append(console: &str, url: &str) -> String {
    format!("{console} boot=live fetch={url}")
}

/// dracut's livenet: `root=live:http://...` with the network brought up by
/// DHCP in the initrd (`ip=dhcp rd.neednet=1`); the image is downloaded
/// with curl into `/run/initramfs`.
pub fn dracut_net_append(console: &str, url: &str) -> String {
    format!("{console} root=live:{url} rd.live.image ip=dhcp rd.neednet=1")
}

/// The base URL the guest reaches a server on the host's loopback at
/// (QEMU's user network), for `file`.
pub fn host_url(port: u16, file: &str) -> String {
    format!("http://10.0.2.2:{port}/{}", file.trim_start_matches('/'))
}

/// dracut's initrd with its network and livenet modules (`dracut-net.img`,
/// built by `scripts/fetch-bench-peers.sh` beside the others).
pub fn dracut_net_initrd() -> Result<PathBuf, String> {
    let p = artifacts::workspace_root().join(".cache/bench-peers/dracut-net.img");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run scripts/fetch-bench-peers.sh (make bench does)",
            p.display()
        ))
    }
}

/// The bytes of the regular files under `path` (a file or a tree): what
/// a stage 1 copies to RAM or fetches.
pub fn bytes_under(path: &Path) -> Result<u64, String> {
    let m = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if m.is_file() {
        return Ok(m.len());
    }
    if !m.is_dir() {
        return Ok(0);
    }
    let mut total = 0;
    for e in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", path.display()))?;
        total += bytes_under(&e.path())?;
    }
    Ok(total)
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
                mem_available_kib: 812_345,
                iso9660_mounts: None,
                shmem_kib: None,
            })
        );
        let log =
            "BENCH-UPTIME 4.5\nBENCH-MEMAVAIL 9\n[ 5.0] x BENCH-ISO9660-MOUNTS 1\nBENCH-DONE\n";
        assert_eq!(parse_sample(log).unwrap().iso9660_mounts, Some(1));
        let log = "BENCH-UPTIME 4.5\nBENCH-MEMAVAIL 9\nBENCH-SHMEM 35000\nBENCH-DONE\n";
        assert_eq!(parse_sample(log).unwrap().shmem_kib, Some(35_000));
        assert_eq!(parse_sample("BENCH-UPTIME 4.52\n"), None);
        assert_eq!(parse_sample("BENCH-UPTIME x\nBENCH-MEMAVAIL 1\n"), None);
    }

    fn sample(isos: Option<u32>) -> Sample {
        Sample {
            uptime_s: 1.0,
            mem_available_kib: 1,
            iso9660_mounts: isos,
            shmem_kib: None,
        }
    }

    #[test]
    fn a_copy_to_ram_is_proven_by_the_peers_own_lines() {
        let nixlive = "copying to RAM: 100% (2 MiB of 2 MiB, 9.0 MB/s)\nThe boot medium is no longer needed and can be removed.\n";
        assert_eq!(
            check_ram("nixlive", &NIXLIVE_RAM, nixlive, &sample(Some(0))),
            Ok(())
        );
        let lb = "Begin: Copying live media to ram ... done.\n";
        assert_eq!(
            check_ram("live-boot", &LIVE_BOOT_RAM, lb, &sample(Some(0))),
            Ok(())
        );
        // dracut 059 keeps the CD mounted: reported, not an error.
        let dr = "[ 9.1] Copying live image to RAM...\n[ 9.5] Done copying live image to RAM.\n";
        assert_eq!(
            check_ram("dracut", &DRACUT_RAM, dr, &sample(Some(1))),
            Ok(())
        );
    }

    #[test]
    fn a_peer_that_gave_the_copy_up_is_an_error() {
        let lb = "Begin: Copying live media to ram ... \n[ 5.0] live-boot: Not enough free memory (100k free, 900k needed) to copy live media in ram.\n";
        let e = check_ram(
            "debian-live-boot-toram",
            &LIVE_BOOT_RAM,
            lb,
            &sample(Some(1)),
        )
        .unwrap_err();
        assert!(
            e.starts_with("debian-live-boot-toram did not copy its image to RAM"),
            "{e}"
        );
        assert!(e.contains("Not enough free memory"), "{e}");
        let nl = "copytoram: the images need 900 MiB plus 256 MiB to run, but only 800 MiB are available; booting from the medium instead (it must stay connected)\n";
        let e = check_ram("nixlive-copytoram", &NIXLIVE_RAM, nl, &sample(Some(1))).unwrap_err();
        assert!(e.contains("did not copy its image to RAM"), "{e}");
    }

    #[test]
    fn a_peer_without_its_copy_line_or_with_the_cd_mounted_is_an_error() {
        let e = check_ram(
            "dracut-dmsquash-live-ram",
            &DRACUT_RAM,
            "Copying live image to RAM...\n",
            &sample(Some(1)),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "dracut-dmsquash-live-ram shows no copy to RAM: its console never says \"Done copying live image to RAM.\""
        );
        let lb = "Begin: Copying live media to ram ... done.\n";
        let e = check_ram(
            "debian-live-boot-toram",
            &LIVE_BOOT_RAM,
            lb,
            &sample(Some(1)),
        )
        .unwrap_err();
        assert!(
            e.contains("the CD is still mounted in stage 2 (1 iso9660 mounts)"),
            "{e}"
        );
        let e = check_ram("debian-live-boot-toram", &LIVE_BOOT_RAM, lb, &sample(None)).unwrap_err();
        assert!(e.contains("did not report the iso9660 mounts"), "{e}");
    }

    #[test]
    fn a_netboot_must_have_fetched_its_root() {
        let seen = vec!["/filesystem.squashfs".to_string()];
        assert_eq!(
            check_fetched("debian-live-boot-fetch", &seen, "filesystem.squashfs"),
            Ok(())
        );
        let e = check_fetched("dracut-dmsquash-live-net", &[], "squashfs.img").unwrap_err();
        assert_eq!(
            e,
            "dracut-dmsquash-live-net never fetched /squashfs.img: the HTTP server saw no request (no network in its initrd?)"
        );
        let e = check_fetched("x", &["/other".to_string()], "/squashfs.img").unwrap_err();
        assert!(e.ends_with("saw only /other"), "{e}");
    }

    #[test]
    fn nixlive_lines_get_the_bench_console_and_payload() {
        let line = "initrd=/boot/initrd nixlive.label=X init=/nix/store/a-system/init console=tty0 console=ttyS0 quiet";
        assert_eq!(
            payload_append(line, "console=ttyS0,115200"),
            format!("nixlive.label=X quiet console=ttyS0,115200 init={PAYLOAD_STORE_PATH}/init")
        );
    }

    #[test]
    fn peer_command_lines() {
        assert_eq!(
            live_boot_toram_append("console=ttyS0"),
            "console=ttyS0 boot=live toram"
        );
        assert_eq!(
            dracut_ram_append("c"),
            "c root=live:CDLABEL=BENCH_DRACUT rd.live.image rd.live.ram=1"
        );
        let u = host_url(8080, "/filesystem.squashfs");
        assert_eq!(u, "http://10.0.2.2:8080/filesystem.squashfs");
        assert_eq!(
            live_boot_fetch_append("c", &u),
            format!("c boot=live fetch={u}")
        );
        assert_eq!(
            dracut_net_append("c", "http://h/squashfs.img"),
            "c root=live:http://h/squashfs.img rd.live.image ip=dhcp rd.neednet=1"
        );
    }

    #[test]
    fn payload_counts_iso_mounts_after_the_measured_lines() {
        let s = payload_script("/bin/busybox");
        let up = s.find("/proc/uptime").unwrap();
        let mem = s.find("/proc/meminfo").unwrap();
        let shmem = s.find("Shmem:").unwrap();
        let iso = s.find("/proc/mounts").unwrap();
        assert!(up < mem && mem < shmem && shmem < iso, "{s}");
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

//! A stage 2 that runs a real systemd on NixOS's live-ISO layout, after
//! nixlive's stage 1: the media for `tests/systemd_stage2.rs`.
//!
//! The store holds three paths, as a NixOS system's closure would:
//!
//! - `<hash>-debian-systemd-root`: Debian bookworm with systemd, made by
//!   `scripts/fetch-debian-root.sh` (debootstrap minbase) into
//!   `.cache/debian-systemd`;
//! - `<hash>-kernel-modules`: `lib/modules/<version>` of the test kernel,
//!   cut down to what systemd, the fstab and a QEMU PC's devices load (NixOS's
//!   system has its `kernel-modules` the same way);
//! - `<hash>-nixlive-systemd-system`: `init`, a static busybox script that
//!   makes stage 1's tmpfs `/` into a root systemd can run on (links into the
//!   store for `/usr`, `/bin`, `/lib`..., writable copies of `/etc` and
//!   `/var`, NixOS's live-ISO fstab, a machine id) and executes systemd; and
//!   `nixlive-report.service`, which once startup has finished prints the
//!   state of the booted system on the serial console between
//!   [`BEGIN`] and [`END`] and powers off.
//!
//! Report lines (the host parses them with [`parse`]):
//!
//! ```text
//! NIXLIVE-SYSTEMD-BEGIN
//! state <systemctl is-system-running --wait>
//! target <systemctl is-active multi-user.target>
//! failed <unit> ...                        (systemctl --failed --no-legend; one per unit)
//! mount <point> <fstype> <source> <super options>   (/proc/self/mountinfo, escapes kept)
//! loop <loopN> <backing file>
//! dev-root <readlink -f /dev/root>
//! iso-mount <systemctl is-active iso.mount>
//! dev-root-device <ActiveState of dev-root.device>
//! journal <line>                           (journalctl -b -p warning, for the log reader)
//! NIXLIVE-SYSTEMD-END
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::artifacts;
use nixlive_formats::manifest::STOCK_IMAGE;
use nixlive_formats::paths::{MEDIUM, RO_STORE, STORE_DIR};
use nixlive_formats::report::{self, Mount};

pub const BEGIN: &str = "NIXLIVE-SYSTEMD-BEGIN";
pub const END: &str = "NIXLIVE-SYSTEMD-END";

/// The script that makes [`debian_root`].
pub const FETCH_SCRIPT: &str = "scripts/fetch-debian-root.sh";

/// NixOS's live-ISO fstab (nixos/modules/installer/cd-dvd/iso-image.nix):
/// stage 1 has mounted all of it already, and `/dev/root` is the link to
/// the medium that stage 1 is to leave behind.
pub const LIVE_FSTAB: &str = "\
tmpfs / tmpfs mode=0755 0 0
/dev/root /iso auto ro 0 0
/iso/nix-store.squashfs /nix/.ro-store squashfs loop 0 0
tmpfs /nix/.rw-store tmpfs mode=0755 0 0
overlay /nix/store overlay lowerdir=/nix/.ro-store,upperdir=/nix/.rw-store/store,workdir=/nix/.rw-store/work 0 0
";

/// Modules the stage-2 system may load, with their dependencies: what
/// systemd loads itself (autofs4 at start, its `modprobe@` units), the
/// fstab's file systems, and the drivers udev binds to a QEMU PC's devices.
/// A module udev asks for and does not find is a journal line, not a
/// failed unit, so this list errs on the side of more.
pub const STAGE2_MODULES: &[&str] = &[
    // systemd: autofs4 for its automounts; modprobe@{configfs,dm_mod,drm,efi_pstore,fuse,loop}.
    "autofs4",
    "configfs",
    "dm_mod",
    "drm",
    "efi_pstore",
    "fuse",
    "loop",
    // The live ISO's fstab.
    "isofs",
    "squashfs",
    "overlay",
    "nls_utf8",
    // A QEMU PC: IDE CD, floppy, e1000, PIIX4 SMBus, PS/2, parallel port,
    // speaker, VGA (bochs), fw_cfg, ACPI button; and the SCSI generic nodes.
    "ata_piix",
    "ata_generic",
    "sr_mod",
    "sd_mod",
    "sg",
    "floppy",
    "e1000",
    "i2c_piix4",
    "psmouse",
    "serio_raw",
    "evdev",
    "joydev",
    "pcspkr",
    "parport_pc",
    "ppdev",
    "lp",
    "bochs",
    "qemu_fw_cfg",
    "button",
];

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// `.cache/debian-systemd`, the Debian root with systemd. Missing, it is a
/// panic that names the script that makes it: the test never skips.
pub fn debian_root() -> PathBuf {
    let root = artifacts::workspace_root().join(".cache/debian-systemd");
    let systemd = root.join("usr/lib/systemd/systemd");
    assert!(
        systemd.is_file(),
        "missing {}: run `bash {FETCH_SCRIPT}` (make deps runs it) to build the Debian root with systemd",
        systemd.display()
    );
    root
}

/// `/nix/store/<hash>-<name>`, the hash made from the name (a fixed,
/// well-formed store path).
pub fn store_path(name: &str) -> String {
    use nixlive_formats::nix32;
    let digest = nixlive_formats::digest::sha256(format!("nixlive-tests-vm:{name}").as_bytes());
    format!(
        "/nix/store/{}-{name}",
        nix32::encode(&nix32::compress(&digest, 20))
    )
}

/// Where `store_path` is under the store root `root`.
fn in_root(root: &Path, store_path: &str) -> PathBuf {
    root.join(store_path.trim_start_matches('/'))
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {mode:o} {}", path.display())))
}

/// Copies the Debian root into the store as it is (owners, modes, links).
fn add_rootfs(root: &Path, rootfs: &str) -> Result<(), String> {
    let dst = in_root(root, rootfs);
    let parent = dst.parent().unwrap_or(root);
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let mut cp = Command::new("cp");
    cp.args(["-a", "--reflink=auto"])
        .arg(debian_root())
        .arg(&dst);
    artifacts::run_command(cp).map(drop)
}

/// `<modules>/lib/modules/<version>`: the closure of [`STAGE2_MODULES`]
/// from the test kernel's tree, indexed by depmod.
fn add_modules(root: &Path, modules: &str, kernel: &artifacts::Kernel) -> Result<(), String> {
    use nixlive_formats::kmod;
    let src = &kernel.modules_dir;
    let read = |name: &str| {
        let p = src.join(name);
        std::fs::read_to_string(&p).map_err(io(format!("reading {}", p.display())))
    };
    let dep = kmod::ModDep::parse(&read("modules.dep")?)
        .map_err(|e| format!("{}: {e}", src.display()))?;
    let builtin = kmod::parse_builtin(&read("modules.builtin")?);
    let wanted: Vec<String> = STAGE2_MODULES.iter().map(|m| m.to_string()).collect();
    let closure =
        kmod::closure(&dep, &builtin, &wanted).map_err(|e| format!("{}: {e}", src.display()))?;
    let base = in_root(root, modules);
    let dst = base.join("lib/modules").join(&kernel.version);
    // depmod wants these beside the modules to index the built-in ones.
    let index = [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ];
    for f in closure.files.iter().map(String::as_str).chain(index) {
        let to = dst.join(f);
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        std::fs::copy(src.join(f), &to).map_err(io(format!(
            "copying {} to {}",
            src.join(f).display(),
            to.display()
        )))?;
    }
    let mut depmod = Command::new("/usr/sbin/depmod");
    depmod.arg("-b").arg(&base).arg(&kernel.version);
    artifacts::run_command(depmod).map(drop)
}

/// The stage-2 init: runs as PID 1 on stage 1's tmpfs `/`, with `/nix/store`,
/// `/iso`, `/dev`, `/proc`, `/sys` and `/run` in place, and nothing else.
fn init_script(system: &str, rootfs: &str, modules: &str) -> String {
    format!(
        r#"#!{system}/bin/busybox sh
# Makes stage 1's tmpfs / into a root for the Debian systemd in {rootfs}.
set -e
b={system}/bin/busybox
R={rootfs}
# /usr from the store, but /usr/lib a directory of links, because the
# (merged-/usr) /lib/modules is /usr/lib/modules and comes from another path.
$b mkdir -p /usr/lib
for e in $R/usr/*; do [ "${{e##*/}}" = lib ] || $b ln -s "$e" /usr/; done
for e in $R/usr/lib/*; do $b ln -s "$e" /usr/lib/; done
$b ln -s {modules}/lib/modules /usr/lib/modules
for d in bin sbin lib lib64; do $b ln -s usr/$d /$d; done
# What systemd and the services write to: copies.
for d in etc var root; do $b mkdir -p /$d; $b cp -a $R/$d/. /$d/; done
$b chmod 0700 /root
$b mkdir -p -m 1777 /tmp
$b mkdir -p /home /media /mnt /opt /srv
$b cp {system}/etc/fstab /etc/fstab
# A machine id now, as systemd-machine-id-setup would: without one systemd
# takes this for a first boot (presets, systemd-firstboot's prompts).
id=$($b cat /proc/sys/kernel/random/uuid)
echo "${{id//-/}}" > /etc/machine-id
$b ln -s {system}/etc/systemd/system/nixlive-report.service /etc/systemd/system/
$b mkdir -p /etc/systemd/system/multi-user.target.wants
$b ln -s /etc/systemd/system/nixlive-report.service /etc/systemd/system/multi-user.target.wants/
exec /usr/lib/systemd/systemd
"#
    )
}

/// The report, run by the rootfs's own shell once systemd has started.
fn report_script(rootfs: &str) -> String {
    format!(
        r#"#!{rootfs}/bin/sh
# Waits for startup to finish, writes what the host asserts on into a
# file, then prints it on the serial console and powers off.
out=/run/nixlive-systemd-report
{{
  # On a line of its own: the login prompt before it ends without one.
  echo
  echo {BEGIN}
  echo "state $(systemctl is-system-running --wait)"
  echo "target $(systemctl is-active multi-user.target)"
  systemctl --failed --no-legend --plain | sed 's/^/failed /'
  awk '{{ for (i = 7; $i != "-"; i++); print "mount", $5, $(i + 1), $(i + 2), $(i + 3) }}' /proc/self/mountinfo
  for f in /sys/block/loop*/loop/backing_file; do
    [ -f "$f" ] || continue
    n=${{f#/sys/block/}}
    echo "loop ${{n%%/*}} $(cat "$f")"
  done
  echo "dev-root $(readlink -f /dev/root)"
  echo "iso-mount $(systemctl is-active iso.mount)"
  echo "dev-root-device $(systemctl show -p ActiveState --value dev-root.device)"
  journalctl -b -p warning --no-pager -o short-monotonic | sed 's/^/journal /'
  echo {END}
}} > $out 2>&1
# The serial console is also the login prompt's, and agetty hangs up the
# line when it starts: stop it first, so that nothing cuts the report.
systemctl stop serial-getty@ttyS0.service
cat $out > /dev/ttyS0
systemctl poweroff
"#
    )
}

fn report_unit(system: &str) -> String {
    format!(
        "[Unit]
Description=nixlive test: report the booted system on the serial console
# Runs once multi-user.target is reached; the script waits for the rest.
After=multi-user.target

[Service]
Type=exec
ExecStart={system}/bin/report
StandardOutput=journal

[Install]
WantedBy=multi-user.target
"
    )
}

/// The system path: `init`, `bin/busybox` (static, from the host's
/// busybox-static), `bin/report`, `etc/fstab`, the report unit.
fn add_system(root: &Path, system: &str, rootfs: &str, modules: &str) -> Result<(), String> {
    let dir = in_root(root, system);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(io(format!("creating {}", bin.display())))?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .map_err(io("copying /bin/busybox (install busybox-static)"))?;
    write(
        &dir.join("init"),
        &init_script(system, rootfs, modules),
        0o755,
    )?;
    write(&bin.join("report"), &report_script(rootfs), 0o755)?;
    write(&dir.join("etc/fstab"), LIVE_FSTAB, 0o644)?;
    write(
        &dir.join("etc/systemd/system/nixlive-report.service"),
        &report_unit(system),
        0o644,
    )
}

/// What [`build_iso`] made.
#[derive(Debug, Clone)]
pub struct SystemdIso {
    pub iso: PathBuf,
    pub system: String,
    pub rootfs: String,
    pub build_time: Duration,
}

/// Builds the store (in `dir/root`) and the ISO `dir/systemd.iso` labelled
/// `label`, with the builder, stage 1 and the test kernel.
pub fn build_iso(dir: &Path, label: &str) -> Result<SystemdIso, String> {
    let started = Instant::now();
    let programs = artifacts::programs();
    let kernel = artifacts::kernel("amd64");
    let root = dir.join("root");
    let rootfs = store_path("debian-systemd-root");
    let modules = store_path("kernel-modules");
    let system = store_path("nixlive-systemd-system");
    add_rootfs(&root, &rootfs)?;
    add_modules(&root, &modules, &kernel)?;
    add_system(&root, &system, &rootfs, &modules)?;
    let iso = dir.join("systemd.iso");
    let mut cmd = Command::new(&programs.builder);
    cmd.arg("iso")
        .arg("--kernel")
        .arg(&kernel.vmlinuz)
        .arg("--modules-dir")
        .arg(&kernel.modules_dir)
        .args(["--module-set", "base,cd"])
        .arg("--init")
        .arg(&programs.init)
        .arg("--store-root")
        .arg(&root)
        .arg("--system")
        .arg(&system)
        .arg("--label")
        .arg(label)
        .arg("--out")
        .arg(&iso)
        .arg("--medium-dir")
        .arg(dir.join("medium"));
    artifacts::run_command(cmd)?;
    if !iso.is_file() {
        return Err(format!(
            "`nixlive iso` succeeded but {} does not exist",
            iso.display()
        ));
    }
    artifacts::inspect(&iso)?;
    Ok(SystemdIso {
        iso,
        system,
        rootfs,
        build_time: started.elapsed(),
    })
}

/// What the guest reported (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub state: String,
    pub target: String,
    pub failed: Vec<String>,
    /// In mountinfo order.
    pub mounts: Vec<Mount>,
    /// `(loopN, backing file)`.
    pub loops: Vec<(String, String)>,
    pub dev_root: String,
    pub iso_mount: String,
    pub dev_root_device: String,
    pub journal: Vec<String>,
}

impl Report {
    /// Every mount at `point`, in mount order.
    pub fn mounts_at(&self, point: &str) -> Vec<&Mount> {
        self.mounts.iter().filter(|m| m.point == point).collect()
    }

    /// What is wrong with the booted system, measured against the
    /// acceptance of issue 16; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.target != "active" {
            p.push(format!(
                "multi-user.target is {:?}, not active",
                self.target
            ));
        }
        if self.state != "running" {
            p.push(format!(
                "systemctl is-system-running says {:?}, not \"running\"",
                self.state
            ));
        }
        if !self.failed.is_empty() {
            p.push(format!("failed units: {:?}", self.failed));
        }
        let ro = self.mounts_at(RO_STORE);
        let squashfs: Vec<&Mount> = self
            .mounts
            .iter()
            .filter(|m| m.fstype == "squashfs")
            .collect();
        let image_loops: Vec<_> = self
            .loops
            .iter()
            .filter(|(_, f)| f.ends_with(&format!("/{STOCK_IMAGE}")))
            .collect();
        if ro.len() != 1 || squashfs.len() != 1 || image_loops.len() != 1 {
            p.push(format!(
                "{RO_STORE} is not mounted exactly once: {} mount(s) there, squashfs mounts {:?}, \
                 loop devices on the image {image_loops:?}",
                ro.len(),
                squashfs
                    .iter()
                    .map(|m| format!("{} on {}", m.source, m.point))
                    .collect::<Vec<_>>(),
            ));
        } else if ro[0].fstype != "squashfs" {
            p.push(format!("{RO_STORE} is {}, not squashfs", ro[0].fstype));
        }
        match self.mounts_at(MEDIUM).last() {
            None => p.push(format!("{MEDIUM} is not mounted")),
            Some(iso) => {
                if !self.dev_root.starts_with("/dev/sr") || self.dev_root != iso.source {
                    p.push(format!(
                        "/dev/root resolves to {:?}, not the medium ({} on {MEDIUM})",
                        self.dev_root, iso.source
                    ));
                }
            }
        }
        if self.iso_mount != "active" {
            p.push(format!("iso.mount is {:?}, not active", self.iso_mount));
        }
        match self.mounts_at(STORE_DIR).last() {
            Some(m) if m.fstype == "overlay" => {}
            other => p.push(format!("{STORE_DIR} is not an overlay: {other:?}")),
        }
        p
    }
}

/// Parses the report out of a serial log: the lines between the last
/// [`BEGIN`] and the [`END`] after it, `\r` removed. [`BEGIN`] may end a
/// line that something else (a login prompt) began. Lines that start with
/// `[` are the kernel's or systemd's status lines and are skipped.
pub fn parse(log: &str) -> Result<Report, String> {
    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let begin = lines
        .iter()
        .rposition(|l| l.trim_end().ends_with(BEGIN))
        .ok_or_else(|| format!("no {BEGIN} line"))?;
    let end = lines[begin..]
        .iter()
        .position(|l| l.trim() == END)
        .map(|i| begin + i)
        .ok_or_else(|| format!("no {END} line after {BEGIN}"))?;
    let mut r = Report::default();
    for line in &lines[begin + 1..end] {
        if line.trim().is_empty() || line.starts_with('[') {
            continue;
        }
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        let bad = || format!("bad report line: {line:?}");
        match key {
            "state" => r.state = rest.trim().to_string(),
            "target" => r.target = rest.trim().to_string(),
            "failed" => r.failed.push(rest.trim().to_string()),
            // The guest report's mount lines, made the same way (awk over mountinfo).
            report::key::MOUNT => r.mounts.push(Mount::from_report(rest).ok_or_else(bad)?),
            "loop" => {
                let (dev, file) = rest.split_once(' ').ok_or_else(bad)?;
                r.loops.push((dev.to_string(), file.to_string()));
            }
            "dev-root" => r.dev_root = rest.trim().to_string(),
            "iso-mount" => r.iso_mount = rest.trim().to_string(),
            "dev-root-device" => r.dev_root_device = rest.trim().to_string(),
            "journal" => r.journal.push(rest.to_string()),
            _ => return Err(bad()),
        }
    }
    if r.state.is_empty() || r.target.is_empty() || r.iso_mount.is_empty() || r.mounts.is_empty() {
        return Err(format!(
            "incomplete report (state, target, iso-mount or mounts missing): {r:?}"
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
[   20.1] systemd[1]: Started foo.\r
NIXLIVE-SYSTEMD-BEGIN\r
state running\r
target active\r
mount / tmpfs tmpfs rw,mode=755\r
mount /iso iso9660 /dev/sr0 ro\r
mount /nix/.ro-store squashfs /dev/loop0 ro\r
mount /nix/.rw-store tmpfs tmpfs rw\r
mount /nix/store overlay overlay rw,lowerdir=/mnt-root/nix/.ro-store\r
loop loop0 /iso/nix-store.squashfs\r
dev-root /dev/sr0\r
iso-mount active\r
dev-root-device inactive\r
journal [    3.1] kernel: something odd\r
NIXLIVE-SYSTEMD-END\r
";

    #[test]
    fn a_good_report_has_no_problems() {
        let r = parse(GOOD).unwrap();
        let after_prompt = GOOD.replace(
            "\r\nNIXLIVE-SYSTEMD-BEGIN",
            "\r\nnixlive login: NIXLIVE-SYSTEMD-BEGIN",
        );
        assert_eq!(parse(&after_prompt).unwrap(), r);
        assert_eq!(r.state, "running");
        assert_eq!(
            r.loops,
            vec![("loop0".into(), "/iso/nix-store.squashfs".into())]
        );
        assert_eq!(
            r.journal,
            vec!["[    3.1] kernel: something odd".to_string()]
        );
        assert_eq!(r.problems(), Vec::<String>::new());
    }

    #[test]
    fn the_old_stage1_layout_is_two_problems() {
        // As it was seen: stage 1 mounted the image at /nix/.ro-store/0 and
        // made no /dev/root; systemd mounted it again at /nix/.ro-store,
        // mount(8) reusing the read-only loop device on the same file.
        let log = GOOD
            .replace(
                "mount /nix/.ro-store squashfs /dev/loop0 ro\r\n",
                "mount /nix/.ro-store/0 squashfs /dev/loop0 ro\r\n\
                 mount /nix/.ro-store squashfs /dev/loop0 ro\r\n",
            )
            .replace("dev-root /dev/sr0", "dev-root /dev/root");
        let p = parse(&log).unwrap().problems();
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].contains("not mounted exactly once"), "{p:#?}");
        assert!(
            p[1].contains("/dev/root resolves to \"/dev/root\""),
            "{p:#?}"
        );
    }

    #[test]
    fn failures_and_bad_reports() {
        let log = GOOD.replace("state running", "state degraded").replace(
            "target active\r\n",
            "target active\r\nfailed foo.service loaded failed failed Foo\r\n",
        );
        let p = parse(&log).unwrap().problems();
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(parse("nothing").unwrap_err().contains(BEGIN));
        assert!(parse(&GOOD.replace(END, "")).unwrap_err().contains(END));
        assert!(
            parse(&GOOD.replace("mount /iso iso9660 /dev/sr0 ro", "mount /iso"))
                .unwrap_err()
                .contains("bad report line")
        );
    }

    #[test]
    fn store_paths_are_well_formed() {
        let p = store_path("debian-systemd-root");
        let base = p.strip_prefix("/nix/store/").unwrap();
        let (hash, name) = base.split_at(32);
        assert_eq!(name, "-debian-systemd-root");
        assert!(hash.bytes().all(nixlive_formats::nix32::is_digit), "{p}");
        assert_ne!(p, store_path("kernel-modules"));
    }
}

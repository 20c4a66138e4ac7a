//! Media for the stage-1 VM tests: a live medium tree and initrd from the
//! builder (with whatever modules a test needs), repackaged as the things a
//! user boots from: ext4 and FAT32 disk images, GPT disks with named
//! partitions, extra squashfs layers with a rewritten manifest.
//!
//! The kernel is booted directly (`-kernel`/`-initrd`/`-append`): what is
//! tested is how init finds the medium, not the firmware's boot path.
//!
//! Every medium carries a probe in its store ([`PROBE`]): a busybox shell
//! script that, used as `init=`, prints `PROBE ...` lines (files under
//! `*/probe-shows/`, loop devices and their backing files, block devices
//! and sizes) and then executes the demo system's init, which writes the
//! guest report. With `nixlive_test.pause` on the command line it also
//! stops for a few seconds after `PROBE-PAUSED`, so the host can act on the
//! running stage 2 (eject the CD) before the report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::artifacts;
use crate::qemu::{Accel, Failure, QemuCommand, Vm};
use crate::report::{self, Report};

/// The probe's store path (a valid, if unlikely, store path name). Not
/// 32 zeros: the builder scans every file for the hash parts of the
/// closure's paths, as Nix does, and a run of 32 `0`s in a binary
/// (postboot's hash buffer) made the system seem to refer to the probe.
pub const PROBE: &str = "/nix/store/1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s-nixlive-vm-probe";
/// Where the probe's script is, for `init=`.
pub const PROBE_INIT: &str =
    "/nix/store/1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s-nixlive-vm-probe/bin/probe";
/// Files under this directory of any store path are printed by the probe.
pub const PROBE_SHOWS: &str = "probe-shows";
/// Files under this directory of any store path are read whole by the
/// probe, which prints only its error, if any (`read PATH [ERROR]`).
pub const PROBE_READS: &str = "probe-reads";
/// Printed by the probe before it pauses (with `nixlive_test.pause`).
pub const PROBE_PAUSED: &str = "PROBE-PAUSED";
/// How long the probe pauses.
pub const PROBE_PAUSE: Duration = Duration::from_secs(6);

/// What the builder made, in a directory of its own.
#[derive(Debug, Clone)]
pub struct Live {
    pub dir: PathBuf,
    /// The medium tree (`nixlive.manifest`, `nix-store.squashfs`, `boot/`, ...).
    pub medium: PathBuf,
    pub initrd: PathBuf,
    pub kernel: PathBuf,
    /// The hybrid ISO (volume ID `label`).
    pub iso: PathBuf,
    pub system: String,
    pub label: String,
}

/// Runs a command; the error carries the command and its output.
pub use crate::artifacts::run_command as run;

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// A fresh (emptied) directory for one test binary's media:
/// `target/tests-vm/<name>`, replaced on every run.
pub fn work_dir(name: &str) -> Result<PathBuf, String> {
    let dir = artifacts::workspace_root()
        .join("target/tests-vm")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// Writes the probe into a store root (`ROOT/nix/store/...`).
fn write_probe(store_root: &Path, system: &str) -> Result<(), String> {
    let dir = store_root.join(PROBE.trim_start_matches('/'));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(io(format!("creating {}", bin.display())))?;
    let busybox = Path::new("/bin/busybox");
    std::fs::copy(busybox, bin.join("busybox"))
        .map_err(io("copying /bin/busybox (install busybox-static)"))?;
    let script = format!(
        r#"#!{PROBE}/bin/busybox sh
b={PROBE}/bin/busybox
echo PROBE-BEGIN
for f in /nix/store/*/{PROBE_SHOWS}/*; do
  [ -f "$f" ] && echo "PROBE file $f $($b cat "$f" 2>&1)"
done
for f in /nix/store/*/{PROBE_READS}/*; do
  [ -f "$f" ] && echo "PROBE read $f $($b cat "$f" 2>&1 >/dev/null | $b tr '\n' ' ')"
done
$b cat /proc/mounts | while read -r l; do echo "PROBE mounts $l"; done
for d in /sys/block/*; do
  n=${{d##*/}}
  echo "PROBE block $n $($b cat $d/size)"
  [ -f $d/loop/backing_file ] && echo "PROBE loop $n $($b cat $d/loop/backing_file)"
done
case " $($b cat /proc/cmdline) " in
  *" nixlive_test.pause "*)
    echo {PROBE_PAUSED}
    $b sleep {pause}
    for d in /sys/block/*; do echo "PROBE after-pause block ${{d##*/}} $($b cat $d/size)"; done
    ;;
esac
echo PROBE-END
exec {system}/init
"#,
        pause = PROBE_PAUSE.as_secs()
    );
    let path = bin.join("probe");
    std::fs::write(&path, script).map_err(io(format!("writing {}", path.display())))?;
    set_mode(&path, 0o755)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {mode:o} {}", path.display())))
}

/// Builds the demo system plus the probe (and whatever `extra` adds to the
/// store root), then the medium, initrd (with `modules`) and ISO, in `dir`.
pub fn build_live(
    dir: &Path,
    label: &str,
    modules: &[&str],
    extra: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<Live, String> {
    let mut spec = artifacts::DemoSpec::new(crate::arch::Arch::X86_64, label);
    spec.modules = modules.iter().map(|m| m.to_string()).collect();
    build_live_spec(dir, &spec, extra)
}

/// [`build_live`] from a whole [`artifacts::DemoSpec`] (its label and modules).
pub fn build_live_spec(
    dir: &Path,
    spec: &artifacts::DemoSpec,
    extra: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<Live, String> {
    let demo = artifacts::build_demo_with(dir, spec, &|root, system| {
        write_probe(root, system)?;
        extra(root)
    })?;
    Ok(Live {
        dir: dir.to_path_buf(),
        initrd: demo.initrd(),
        medium: demo.medium,
        kernel: demo.kernel,
        iso: demo.iso,
        system: demo.system,
        label: demo.label,
    })
}

/// Total size of the regular files under `dir`.
fn tree_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// A size in MiB that holds `tree` with room for a filesystem's overhead.
fn fs_mib(tree: &Path) -> u64 {
    (tree_size(tree) >> 20) * 5 / 4 + 40
}

/// An ext4 image of `tree` with this label and UUID.
pub fn ext4_image(tree: &Path, out: &Path, label: &str, uuid: &str) -> Result<(), String> {
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-d"])
        .arg(tree)
        .args(["-L", label, "-U", uuid, "-E", "root_owner=0:0"])
        .arg(out)
        .arg(format!("{}M", fs_mib(tree)));
    run(cmd).map(drop)
}

/// A FAT32 image of `tree` with this label (at most 11 characters).
pub fn fat32_image(tree: &Path, out: &Path, label: &str) -> Result<(), String> {
    // FAT32 wants at least 65525 clusters: 64 MiB of 512-byte clusters is enough.
    let mib = fs_mib(tree).max(64);
    if out.exists() {
        std::fs::remove_file(out).map_err(io(format!("removing {}", out.display())))?;
    }
    let mut cmd = Command::new("mkfs.vfat");
    cmd.args(["-F", "32", "-s", "1", "-n", label, "-C"])
        .arg(out)
        .arg((mib * 1024).to_string());
    run(cmd)?;
    let entries = std::fs::read_dir(tree)
        .map_err(io(format!("reading {}", tree.display())))?
        .flatten()
        .map(|e| e.path());
    let mut cmd = Command::new("mcopy");
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-Q", "-i"])
        .arg(out)
        .args(entries)
        .arg("::/");
    run(cmd).map(drop)
}

/// `nixlive initrd` into `out`: the x86_64 init, `kernel`'s `modules`
/// (with their dependencies), then `extra` builder arguments (`--shell`,
/// `--extra-cpio`, ...).
pub fn initrd(
    kernel: &artifacts::Kernel,
    modules: &[&str],
    extra: &[&std::ffi::OsStr],
    out: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new(artifacts::programs_builder());
    cmd.arg("initrd")
        .arg("--modules-dir")
        .arg(&kernel.modules_dir)
        .arg("--init")
        .arg(crate::arch::Arch::X86_64.guest_program("nixlive-init"))
        .arg("--out")
        .arg(out);
    for m in modules {
        cmd.arg("--module").arg(m);
    }
    cmd.args(extra);
    run(cmd)?;
    // Inspected like every medium, except where an --extra-cpio is given:
    // those replace modules on purpose (compressed ones, a damaged one).
    if !extra.iter().any(|a| *a == "--extra-cpio") {
        artifacts::inspect(out)?;
    }
    Ok(())
}

/// An exFAT image of `tree` with this label. The host's kernel has no
/// exFAT and exfat-fuse refuses a plain file, so a helper VM (Debian's 6.1,
/// busybox, the exfat module) fills the filesystem `mkfs.exfat` made from
/// a tar of `tree` given as a second disk.
pub fn exfat_image(tree: &Path, out: &Path, label: &str) -> Result<(), String> {
    let work = out.with_extension("fill");
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    let tar = work.join("tree.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("-cf").arg(&tar).arg("-C").arg(tree).arg(".");
    run(cmd)?;
    let f = std::fs::File::create(out).map_err(io(format!("creating {}", out.display())))?;
    f.set_len((fs_mib(tree) + 32) << 20)
        .map_err(io(format!("sizing {}", out.display())))?;
    let mut cmd = Command::new("mkfs.exfat");
    cmd.arg("-L").arg(label).arg(out);
    run(cmd)?;
    // The filler: busybox as /bin/sh, a script as rdinit, the modules.
    let stage = work.join("stage");
    let script = "#!/bin/busybox sh\n\
        /bin/busybox --install -s /bin; export PATH=/bin\n\
        mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev\n\
        for m in $(sed -n 's/^module //p' /etc/nixlive/initrd.conf); do\n\
          insmod /lib/modules/$(uname -r)/$m\n\
        done\n\
        mkdir -p /mnt; sleep 1\n\
        mount -t exfat /dev/vda /mnt && tar -xf /dev/vdb -C /mnt && umount /mnt && echo FILL-DONE\n\
        poweroff -f\n";
    std::fs::create_dir_all(stage.join("bin")).map_err(io("creating the filler's tree"))?;
    std::fs::copy("/bin/busybox", stage.join("bin/busybox"))
        .map_err(io("copying /bin/busybox (install busybox-static)"))?;
    std::fs::write(stage.join("fill"), script).map_err(io("writing the filler"))?;
    set_mode(&stage.join("fill"), 0o755)?;
    let cpio = work.join("fill.cpio");
    let mut cmd = Command::new("sh");
    cmd.current_dir(&stage)
        .arg("-c")
        .arg("find . | cpio -o -H newc --quiet > \"$1\"")
        .arg("sh")
        .arg(&cpio);
    run(cmd)?;
    let k = artifacts::kernel("amd64");
    let initrd = work.join("initrd");
    let extra = [std::ffi::OsStr::new("--extra-cpio"), cpio.as_os_str()];
    self::initrd(&k, &["exfat", "virtio_blk", "virtio_pci"], &extra, &initrd)?;
    let mut disk = std::ffi::OsString::from("format=raw,if=virtio,file=");
    disk.push(out);
    let mut src = std::ffi::OsString::from("format=raw,if=virtio,readonly=on,file=");
    src.push(&tar);
    let cmd = QemuCommand::x86_64(crate::kvm::accel())
        .arg("-kernel")
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg("console=ttyS0,115200 rdinit=/fill")
        .arg("-drive")
        .arg(disk)
        .arg("-drive")
        .arg(src);
    let vm = Vm::spawn(&cmd, Duration::from_secs(180)).map_err(|f| f.to_string())?;
    vm.wait_for("FILL-DONE", Duration::from_secs(170))
        .map_err(|f| format!("filling the exFAT image: {f}"))?;
    vm.wait_exit(Duration::from_secs(30))
        .map_err(|f| f.to_string())?;
    std::fs::remove_dir_all(&work).map_err(io(format!("removing {}", work.display())))
}

/// One partition of [`gpt_disk`]: its GPT name and its contents (a
/// filesystem image), or an empty partition of `empty_mib`.
pub struct Part<'a> {
    pub name: &'a str,
    pub image: Option<&'a Path>,
    pub empty_mib: u64,
}

/// A GPT disk (1 MiB aligned partitions, type Linux data) holding `parts`.
pub fn gpt_disk(out: &Path, parts: &[Part<'_>]) -> Result<(), String> {
    const MIB: u64 = 1 << 20;
    let mut sizes = Vec::new();
    for p in parts {
        let bytes = match p.image {
            Some(img) => std::fs::metadata(img)
                .map_err(io(format!("{}", img.display())))?
                .len(),
            None => p.empty_mib * MIB,
        };
        sizes.push(bytes.div_ceil(MIB));
    }
    let total = 2 + sizes.iter().sum::<u64>();
    let f = std::fs::File::create(out).map_err(io(format!("creating {}", out.display())))?;
    f.set_len(total * MIB)
        .map_err(io(format!("sizing {}", out.display())))?;
    drop(f);
    let mut cmd = Command::new("sgdisk");
    let mut start = 1;
    for (i, (p, mib)) in parts.iter().zip(&sizes).enumerate() {
        let n = i + 1;
        cmd.arg(format!(
            "--new={n}:{}:{}",
            start * 2048,
            (start + mib) * 2048 - 1
        ))
        .arg(format!("--change-name={n}:{}", p.name))
        .arg(format!("--typecode={n}:8300"));
        start += mib;
    }
    cmd.arg(out);
    run(cmd).map_err(|e| format!("{e}\n(is gdisk installed?)"))?;
    let mut disk = std::fs::OpenOptions::new()
        .write(true)
        .open(out)
        .map_err(io(format!("opening {}", out.display())))?;
    let mut start = 1;
    for (p, mib) in parts.iter().zip(&sizes) {
        if let Some(img) = p.image {
            use std::io::{Seek, SeekFrom};
            let mut src =
                std::fs::File::open(img).map_err(io(format!("opening {}", img.display())))?;
            disk.seek(SeekFrom::Start(start * MIB))
                .map_err(io(format!("seeking in {}", out.display())))?;
            std::io::copy(&mut src, &mut disk).map_err(io(format!(
                "copying {} into {}",
                img.display(),
                out.display()
            )))?;
        }
        start += mib;
    }
    Ok(())
}

/// A squashfs image of `dir` (owned by root, as the builder's are).
pub fn squashfs(dir: &Path, out: &Path) -> Result<(), String> {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(dir)
        .arg(out)
        .args(["-noappend", "-quiet", "-all-root", "-no-progress"]);
    run(cmd).map(drop)
}

/// Lowercase hex sha256 of a file.
pub fn sha256(path: &Path) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    nixlive_formats::digest::sha256_read(f)
        .map(|sum| sum.hex)
        .map_err(io(format!("reading {}", path.display())))
}

/// Adds `image` (a file already in the medium tree) as the last (bottom)
/// layer of the medium's manifest.
pub fn append_layer(medium: &Path, image: &str) -> Result<(), String> {
    use nixlive_formats::{ImageEntry, ImageFs, Manifest, manifest};
    let path = medium.join(manifest::DEFAULT_PATH);
    let text = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    let mut m = Manifest::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = medium.join(image);
    let size = std::fs::metadata(&file)
        .map_err(io(format!("{}", file.display())))?
        .len();
    m.images.push(ImageEntry {
        name: image.to_string(),
        fs: ImageFs::Squashfs,
        size,
        sha256: sha256(&file)?,
        verity: None,
    });
    std::fs::write(&path, m.to_string()).map_err(io(format!("writing {}", path.display())))
}

impl QemuCommand {
    /// An x86_64 PC booting `live`'s kernel and initrd directly with
    /// `append` (plus the serial console), with `mem_mib` of RAM.
    pub fn x86_64_direct(live: &Live, append: &str, mem_mib: u32, accel: Accel) -> QemuCommand {
        let mut cmd = QemuCommand::x86_64(accel);
        if let Some(i) = cmd.args.iter().position(|a| a == "-m") {
            cmd.args[i + 1] = mem_mib.to_string().into();
        }
        cmd.arg("-kernel")
            .arg(&live.kernel)
            .arg("-initrd")
            .arg(&live.initrd)
            .arg("-append")
            .arg(format!("console=ttyS0,115200 {append}"))
    }

    /// Uses the `q35` machine instead of `pc` (PCIe, for hotplug).
    pub fn on_q35(mut self) -> QemuCommand {
        if let Some(i) = self.args.iter().position(|a| a == "-M") {
            self.args[i + 1] = "q35".into();
        }
        self
    }

    /// A raw disk image on a virtio-blk device, read-only (several tests
    /// may use the same image at once).
    pub fn virtio_disk(self, image: &Path) -> QemuCommand {
        let mut spec = std::ffi::OsString::from("format=raw,if=virtio,readonly=on,file=");
        spec.push(image);
        self.arg("-drive").arg(spec)
    }
}

/// What a booted guest showed: its report, the `PROBE` lines, the log.
#[derive(Debug)]
pub struct Booted {
    pub report: Report,
    /// The probe's lines, without the `PROBE ` prefix.
    pub probe: Vec<String>,
    pub serial_log: String,
    pub command_line: String,
}

impl Booted {
    /// The probe's `file` lines: path -> contents.
    pub fn probe_files(&self) -> std::collections::BTreeMap<String, String> {
        self.probe_pairs("file").collect()
    }

    /// Loop devices and their backing files, from the probe.
    pub fn probe_loops(&self) -> Vec<(String, String)> {
        self.probe_pairs("loop").collect()
    }

    /// The probe's `KEY A B...` lines as `(A, "B...")`.
    fn probe_pairs<'a>(&'a self, key: &'a str) -> impl Iterator<Item = (String, String)> + 'a {
        self.probe
            .iter()
            .filter_map(move |l| l.strip_prefix(key)?.strip_prefix(' ')?.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
    }

    /// The `nixlive[...]` lines init logged.
    pub fn init_lines(&self) -> Vec<&str> {
        self.serial_log
            .lines()
            .filter_map(|l| l.find("nixlive[").map(|i| &l[i..]))
            .collect()
    }

    /// Whether init logged a line containing `needle`.
    pub fn init_said(&self, needle: &str) -> bool {
        self.init_lines().iter().any(|l| l.contains(needle))
    }

    /// Everything, for assertion messages.
    pub fn context(&self) -> String {
        format!(
            "qemu: {}\n----- serial log -----\n{}\n----- end -----",
            self.command_line,
            self.serial_log.replace('\r', "")
        )
    }
}

/// Waits (at most `timeout`) for the report of a VM already running; then
/// gives it time to power off.
pub fn finish(vm: &Vm, timeout: Duration) -> Result<Booted, Failure> {
    vm.wait_for(report::END, timeout)?;
    let log = vm.serial_log();
    let report = report::parse(&log).map_err(|e| vm.failure(format!("bad guest report: {e}")))?;
    vm.wait_exit(Duration::from_secs(30))?;
    let serial_log = vm.serial_log();
    let probe = serial_log
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("PROBE "))
        .map(str::to_string)
        .collect();
    Ok(Booted {
        report,
        probe,
        serial_log,
        command_line: vm.command_line().to_string(),
    })
}

/// Boots `cmd` and waits (at most `timeout`) for the guest report.
pub fn boot(cmd: &QemuCommand, timeout: Duration) -> Result<Booted, Failure> {
    let vm = Vm::spawn(cmd, timeout + Duration::from_secs(40))?;
    finish(&vm, timeout)
}

/// The uptime stamp (seconds) of init's first log line containing `needle`:
/// `nixlive[12.345]: ...`.
pub fn init_stamp(serial_log: &str, needle: &str) -> Option<f64> {
    serial_log.lines().find_map(|l| {
        let at = l.find("nixlive[")?;
        let rest = &l[at + "nixlive[".len()..];
        let (stamp, text) = rest.split_once("]: ")?;
        text.contains(needle).then(|| stamp.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_of_init_lines() {
        let log = "[    9.1] nixlive[8.970]: waiting for the medium X\r\n\
                   [   14.2] nixlive[14.012]: boot failed: timed out\n";
        assert_eq!(init_stamp(log, "waiting for"), Some(8.970));
        assert_eq!(init_stamp(log, "boot failed"), Some(14.012));
        assert_eq!(init_stamp(log, "nothing"), None);
    }
}

//! `nixlive-bench` (used by `make bench`): boots the demo medium with
//! nixlive's stage 1 and with two peers measured in the same run, each
//! three times, and prints initrd sizes and the median kernel uptime at
//! which stage 2 began. Peers:
//!
//! - kernel only: an initrd whose `/init` prints the uptime at once (the floor);
//! - a hand-written busybox script: the same modules, a fixed `/dev/sr0`
//!   polled for, the same mounts, `switch_root`.
//!
//! All three start from the same kernel with `-kernel`/`-initrd`, so only
//! stage 1 differs. Timings are printed, never asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use nixlive_tests_vm::qemu::{QemuCommand, Vm};
use nixlive_tests_vm::{arch::Arch, artifacts, boot_command_to_report, kvm};

const RUNS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(240);
const LABEL: &str = "NIXLIVE_BENCH";

fn sh(cmd: &str) -> Result<(), String> {
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

/// Packs `dir` as a zstd-compressed newc cpio at `out` (the same
/// compression nixlive's builder uses).
fn pack(dir: &Path, out: &Path) -> Result<(), String> {
    sh(&format!(
        "cd '{}' && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | zstd -q -19 -f -o '{}'",
        dir.display(),
        out.display()
    ))
}

struct Peer {
    name: &'static str,
    initrd: PathBuf,
    append: String,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let out = artifacts::workspace_root().join("out/bench");
    let demo = artifacts::build_demo(&out, &artifacts::DemoSpec::new(Arch::X86_64, LABEL))?;
    let kernel = artifacts::kernel("amd64");
    let cfg = std::fs::read_to_string(demo.medium.join("isolinux/isolinux.cfg"))
        .map_err(|e| format!("reading isolinux.cfg: {e}"))?;
    let append = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("APPEND "))
        .ok_or("isolinux.cfg has no APPEND line")?
        .split_whitespace()
        .filter(|w| !w.starts_with("initrd="))
        .collect::<Vec<_>>()
        .join(" ");
    let init = format!("{}/init", demo.system);

    // nixlive's own initrd, unpacked, gives the peers the same module files.
    let tree = out.join("nixlive-initrd");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
    sh(&format!(
        "cd '{}' && zstd -dc '{}' | cpio -idm --quiet",
        tree.display(),
        demo.initrd().display()
    ))?;
    let conf = std::fs::read_to_string(tree.join("etc/nixlive/initrd.conf"))
        .map_err(|e| format!("reading the initrd config: {e}"))?;
    let conf = nixlive_formats::InitrdConf::parse(&conf).map_err(|e| e.to_string())?;

    let busybox = Path::new("/bin/busybox");
    let script_tree = out.join("busybox-initrd");
    let _ = std::fs::remove_dir_all(&script_tree);
    sh(&format!(
        "cp -a '{}' '{}' && rm -rf '{}/init' '{}/etc/nixlive' && mkdir -p '{}/bin' && cp {} '{}/bin/busybox'",
        tree.display(),
        script_tree.display(),
        script_tree.display(),
        script_tree.display(),
        script_tree.display(),
        busybox.display(),
        script_tree.display()
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
         mkdir -p /mnt-root/nix/.ro-store/0 /mnt-root/nix/.rw-store /mnt-root/nix/store\n\
         mount -t squashfs -o loop,ro /mnt-root/iso/nix-store.squashfs /mnt-root/nix/.ro-store/0\n\
         mount -t tmpfs -o mode=0755 tmpfs /mnt-root/nix/.rw-store\n\
         mkdir -p /mnt-root/nix/.rw-store/store /mnt-root/nix/.rw-store/work\n\
         mount -t overlay -o lowerdir=/mnt-root/nix/.ro-store/0,upperdir=/mnt-root/nix/.rw-store/store,workdir=/mnt-root/nix/.rw-store/work overlay /mnt-root/nix/store\n\
         mkdir -p /mnt-root/dev /mnt-root/proc /mnt-root/sys /mnt-root/run\n\
         for d in dev proc sys run; do mount --move /$d /mnt-root/$d; done\n\
         exec switch_root /mnt-root {init}\n"
    ));
    write_exec(&script_tree.join("init"), &script)?;

    let floor_tree = out.join("kernel-only-initrd");
    let _ = std::fs::remove_dir_all(&floor_tree);
    sh(&format!(
        "mkdir -p '{0}/bin' '{0}/proc' '{0}/dev' && cp {1} '{0}/bin/busybox'",
        floor_tree.display(),
        busybox.display()
    ))?;
    write_exec(
        &floor_tree.join("init"),
        "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n\
         echo \"BENCH-UPTIME $(/bin/busybox cut -d' ' -f1 /proc/uptime)\"\n\
         /bin/busybox poweroff -f\n",
    )?;

    let peers = [
        Peer {
            name: "kernel only (init prints at once)",
            initrd: out.join("kernel-only.img"),
            append: "console=ttyS0,115200".into(),
        },
        Peer {
            name: "busybox script (same modules, fixed /dev/sr0)",
            initrd: out.join("busybox.img"),
            append: "console=ttyS0,115200 init=/init".into(),
        },
        Peer {
            name: "nixlive (discovery by label)",
            initrd: demo.initrd(),
            append: append.clone(),
        },
    ];
    pack(&floor_tree, &peers[0].initrd)?;
    pack(&script_tree, &peers[1].initrd)?;

    let accel = kvm::accel();
    println!(
        "boots: {RUNS} per stage 1, {} , 1 GiB, kernel {}",
        accel.name(),
        kernel.version
    );
    // Round-robin, so a change in the host's load hits every peer alike.
    let mut times: Vec<Vec<u64>> = vec![Vec::new(); peers.len()];
    for round in 0..RUNS {
        for (p, t) in peers.iter().zip(times.iter_mut()) {
            let cmd = QemuCommand::x86_64(accel)
                .arg("-kernel")
                .arg(&kernel.vmlinuz)
                .arg("-initrd")
                .arg(&p.initrd)
                .arg("-append")
                .arg(&p.append)
                .arg("-cdrom")
                .arg(&demo.iso);
            let ms = if p.name.starts_with("kernel only") {
                floor_uptime(&cmd)?
            } else {
                boot_command_to_report(&cmd, TIMEOUT)
                    .map_err(|f| format!("{}: {f}", p.name))?
                    .report
                    .uptime_ms
            };
            println!("  {:<48} run {}: {ms} ms", p.name, round + 1);
            t.push(ms);
        }
    }
    let rows: Vec<_> = peers
        .iter()
        .zip(times)
        .map(|(p, t)| {
            let size = std::fs::metadata(&p.initrd).map(|m| m.len()).unwrap_or(0);
            (p.name, size, median(t))
        })
        .collect();
    println!();
    println!("| stage 1 | initrd size | stage 2 reached at uptime (median of {RUNS}) |");
    println!("|---|---|---|");
    for (name, size, ms) in rows {
        println!(
            "| {name} | {:.2} MB | {:.2} s |",
            size as f64 / 1e6,
            ms as f64 / 1000.0
        );
    }
    Ok(())
}

fn write_exec(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The kernel-only peer prints `BENCH-UPTIME <seconds>`.
fn floor_uptime(cmd: &QemuCommand) -> Result<u64, String> {
    let vm = Vm::spawn(cmd, TIMEOUT).map_err(|f| f.to_string())?;
    vm.wait_for("BENCH-UPTIME", TIMEOUT)
        .map_err(|f| f.to_string())?;
    vm.wait_exit(Duration::from_secs(30))
        .map_err(|f| f.to_string())?;
    let log = vm.serial_log();
    let secs: f64 = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("BENCH-UPTIME "))
        .and_then(|s| s.trim().parse().ok())
        .ok_or("no BENCH-UPTIME value in the log")?;
    Ok((secs * 1000.0) as u64)
}

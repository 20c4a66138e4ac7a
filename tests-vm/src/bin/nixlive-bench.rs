//! `nixlive-bench` (used by `make bench`): nixlive against the real peers,
//! measured in one run, and writes `out/bench/bench.json` and `bench.md`.
//!
//! Boot (the `boot` part): the same kernel (`-kernel`), RAM, QEMU and
//! stage-2 payload (a busybox script that prints the uptime and
//! `MemAvailable` first: [`nixlive_tests_vm::peers`]) behind five stage 1s
//! (kernel-only, busybox-floor, debian-live-boot, dracut-dmsquash-live,
//! nixlive), booted round-robin so a change in the host's load hits each
//! alike; median, min and max of the uptime at which stage 2 began, the
//! initrd's size (compressed and unpacked) and `MemAvailable` then.
//!
//! Registration (the `registration` part): 1,000 and 10,000 paths,
//! the static musl postboot's native loader against `nix-store --load-db`
//! ([`nixlive_tests_vm::regbench`]).
//!
//! Netboot RAM (the `netboot` part): `MemAvailable` at the start of stage
//! 2 (init logs it) for the same system (the demo with 128 MiB of
//! incompressible ballast) booted from the in-initrd netboot set and from
//! the `--http` set (fetched from a server on the host's loopback), 1 GiB
//! each; then a 1 GiB VM booting an `--http` set whose images total about
//! 600 MiB.
//!
//! Throughput (the `throughput` part): the builder's NAR hashing against
//! `nix-hash`, its native squashfs writer against `mksquashfs`, and whole
//! ISO builds, on directories of the host's `/usr` copied in as store
//! paths ([`nixlive_tests_vm::throughput`]).
//!
//! Store images (the `images` part): the same tree as squashfs (zstd,
//! xz) and erofs (lz4hc, lz4), made by the builder, read back in a VM,
//! every file and a random sample, cold ([`nixlive_tests_vm::image_read`];
//! `NIXLIVE_BENCH_IMAGES_MB`, default 200, the tree's size).
//!
//! The boot rows are also drawn as `out/bench/bench.svg`
//! ([`nixlive_tests_vm::bench_chart`]).
//!
//! Environment: `NIXLIVE_BENCH_ROUNDS` (default 5), `NIXLIVE_BENCH_PARTS`
//! (comma-separated, default `boot,registration,throughput,netboot,images`),
//! `NIXLIVE_BENCH_TREE_MB` (the throughput tree's size, default 300).
//! Timings are printed and written, never asserted.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use nixlive_formats::error;
use nixlive_tests_vm::bench_stats::{rounds, stats};
use nixlive_tests_vm::http_server::Server;
use nixlive_tests_vm::http_sets;
use nixlive_tests_vm::peers::{self, Sample};
use nixlive_tests_vm::qemu::{QemuCommand, Vm};
use nixlive_tests_vm::{
    arch::Arch, artifacts, bench_chart, boot_command_to_report, image_read, kvm, regbench,
    throughput,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(240);
const LABEL: &str = "NIXLIVE_BENCH";
/// Every stage 1's only console: the serial port the payload prints on.
const CONSOLE: &str = "console=ttyS0,115200";

struct Peer {
    name: &'static str,
    what: &'static str,
    initrd: std::path::PathBuf,
    append: String,
    cdrom: std::path::PathBuf,
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
    let rounds = rounds()?;
    let parts = std::env::var("NIXLIVE_BENCH_PARTS")
        .unwrap_or("boot,registration,throughput,netboot,images".into());
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    const PARTS: [&str; 5] = ["boot", "registration", "throughput", "netboot", "images"];
    if let Some(p) = parts.iter().find(|p| !PARTS.contains(p)) {
        return Err(format!(
            "NIXLIVE_BENCH_PARTS: unknown part {p:?} (parts: {})",
            PARTS.join(", ")
        ));
    }
    let out = artifacts::workspace_root().join("out/bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut boot_result = None;
    if parts.contains(&"boot") {
        let mut md = String::new();
        boot_result = Some((boot(&out, rounds, &mut md)?, md));
    }
    let mut reg_result = None;
    if parts.contains(&"registration") {
        let mut md = String::new();
        reg_result = Some((registrations(&out, rounds, &mut md)?, md));
    }
    let mut tp_result = None;
    if parts.contains(&"throughput") {
        let mut md = String::new();
        tp_result = Some((throughput(rounds, &mut md)?, md));
    }
    let mut net_result = None;
    if parts.contains(&"netboot") {
        let mut md = String::new();
        net_result = Some((netboot_ram(&out, rounds, &mut md)?, md));
    }
    let mut img_result = None;
    if parts.contains(&"images") {
        let mb = positive_env("NIXLIVE_BENCH_IMAGES_MB", 200)?;
        img_result = Some(image_read::run(&out, rounds, mb)?);
    }
    // A run of some parts keeps the others' results from the last run
    // (read now, so a run of the other parts that ended meanwhile stays).
    let json_path = out.join("bench.json");
    let mut doc: serde_json::Value = std::fs::read(&json_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| json!({"rows": [], "registration": [], "netboot": []}));
    if let Some((rows, md)) = boot_result {
        doc["rows"] = json!(rows);
        doc["boot_md"] = json!(md);
        doc["boot_rounds"] = json!(rounds);
        doc["accel"] = json!(kvm::accel().name());
    }
    if let Some((list, md)) = reg_result {
        doc["registration"] = json!(list);
        doc["registration_md"] = json!(md);
        doc["registration_rounds"] = json!(rounds);
    }
    if let Some((list, md)) = tp_result {
        doc["throughput"] = json!(list);
        doc["throughput_md"] = json!(md);
        doc["throughput_rounds"] = json!(rounds);
    }
    if let Some(part) = img_result {
        doc["images"] = json!(part.entries);
        doc["images_md"] = json!(part.md);
        doc["images_rounds"] = json!(rounds);
    }
    // The boot rows as a chart beside bench.md.
    let svg_path = out.join("bench.svg");
    let mut chart_md = String::new();
    if doc["rows"].as_array().is_some_and(|r| !r.is_empty()) {
        let about = format!(
            "{} boots each, {}",
            doc["boot_rounds"].as_u64().unwrap_or(0),
            doc["accel"].as_str().unwrap_or("?")
        );
        let svg = bench_chart::boot_chart(&doc["rows"], &about)?
            .to_svg()
            .map_err(|e| format!("drawing {}: {}", svg_path.display(), error::chain(&e)))?;
        std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
        chart_md = "![boot to stage 2, median and min-max](bench.svg)\n\n".into();
    }
    if let Some((list, md)) = net_result {
        doc["netboot"] = json!(list);
        doc["netboot_md"] = json!(md);
        doc["netboot_rounds"] = json!(rounds);
    }
    let md = format!(
        "# nixlive bench\n\n{}{chart_md}{}{}{}{}",
        doc["boot_md"].as_str().unwrap_or(""),
        doc["registration_md"].as_str().unwrap_or(""),
        doc["throughput_md"].as_str().unwrap_or(""),
        doc["netboot_md"].as_str().unwrap_or(""),
        doc["images_md"].as_str().unwrap_or("")
    );
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    let md_path = out.join("bench.md");
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    println!("\nwrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

fn boot(out: &Path, rounds: usize, md: &mut String) -> Result<Vec<serde_json::Value>, String> {
    let (live_boot_initrd, dracut_initrd) = peers::peer_initrds()?;
    let demo = artifacts::build_demo_with(
        out,
        &artifacts::DemoSpec::new(Arch::X86_64, LABEL),
        &|root, _| peers::write_payload_store_path(root),
    )?;
    let kernel = artifacts::kernel("amd64");
    let cfg = std::fs::read_to_string(demo.medium.join("isolinux/isolinux.cfg"))
        .map_err(|e| format!("reading isolinux.cfg: {e}"))?;
    let mut append: Vec<String> = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("APPEND "))
        .ok_or("isolinux.cfg has no APPEND line")?
        .split_whitespace()
        // The boot entry's consoles (tty0 too) give way to the peers' one.
        .filter(|w| {
            !["initrd=", "init=", "console="]
                .iter()
                .any(|k| w.starts_with(k))
        })
        .map(str::to_string)
        .collect();
    append.push(CONSOLE.to_string());
    append.push(format!("init={}", peers::payload_init()));
    let append = append.join(" ");

    // nixlive's own initrd, unpacked, gives the busybox script the same modules.
    let tree = out.join("nixlive-initrd");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
    peers::sh(&format!(
        "cd '{}' && zstd -dc '{}' | cpio -idm --quiet",
        tree.display(),
        demo.initrd().display()
    ))?;

    let console = CONSOLE;
    let list = [
        Peer {
            name: "kernel-only",
            what: "kernel only (the payload is /init)",
            initrd: peers::kernel_only_initrd(out)?,
            append: console.into(),
            cdrom: demo.iso.clone(),
        },
        Peer {
            name: "busybox-floor",
            what: "busybox script: same modules, fixed /dev/sr0",
            initrd: peers::busybox_floor_initrd(out, &tree)?,
            append: format!("{console} init=/init"),
            cdrom: demo.iso.clone(),
        },
        Peer {
            name: "debian-live-boot",
            what: "Debian live-boot (initramfs-tools)",
            initrd: live_boot_initrd,
            append: format!("{console} boot=live"),
            cdrom: peers::live_boot_iso(out)?,
        },
        Peer {
            name: "dracut-dmsquash-live",
            what: "dracut dmsquash-live (systemd initrd)",
            initrd: dracut_initrd,
            append: format!(
                "{console} root=live:CDLABEL={} rd.live.image",
                peers::DRACUT_LABEL
            ),
            cdrom: peers::dracut_iso(out)?,
        },
        Peer {
            name: "nixlive",
            what: "nixlive (discovery by label)",
            initrd: demo.initrd(),
            append,
            cdrom: demo.iso.clone(),
        },
    ];

    let accel = kvm::accel();
    println!(
        "boots: {rounds} per stage 1, round-robin, {}, 1 GiB, kernel {}",
        accel.name(),
        kernel.version
    );
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); list.len()];
    for round in 0..rounds {
        for (p, s) in list.iter().zip(samples.iter_mut()) {
            let cmd = QemuCommand::x86_64(accel)
                .arg("-kernel")
                .arg(&kernel.vmlinuz)
                .arg("-initrd")
                .arg(&p.initrd)
                .arg("-append")
                .arg(&p.append)
                .arg("-cdrom")
                .arg(&p.cdrom);
            let sample = boot_once(&cmd).map_err(|e| format!("{}: {e}", p.name))?;
            println!(
                "  {:<22} round {}: stage 2 at {:.2} s, MemAvailable {} KiB",
                p.name,
                round + 1,
                sample.uptime_s,
                sample.mem_available_kib
            );
            s.push(sample);
        }
    }
    let mut rows = Vec::new();
    let header = format!(
        "| stage 1 | initrd (compressed / unpacked) | stage 2 at uptime, median (min-max) of {rounds} | MemAvailable at stage 2 |\n|---|---|---|---|\n"
    );
    let mut table = header;
    for (p, s) in list.iter().zip(&samples) {
        let size = std::fs::metadata(&p.initrd)
            .map_err(|e| format!("{}: {e}", p.initrd.display()))?
            .len();
        let unpacked = peers::unpacked_size(&p.initrd)?;
        let up: Vec<f64> = s.iter().map(|x| x.uptime_s).collect();
        let (med, min, max) = stats(&up);
        let mut mem: Vec<u64> = s.iter().map(|x| x.mem_available_kib).collect();
        mem.sort_unstable();
        let mem = mem[mem.len() / 2];
        table.push_str(&format!(
            "| {}: {} | {:.2} MB / {:.2} MB | {med:.2} s ({min:.2}-{max:.2}) | {:.1} MiB |\n",
            p.name,
            p.what,
            size as f64 / 1e6,
            unpacked as f64 / 1e6,
            mem as f64 / 1024.0
        ));
        rows.push(json!({
            "name": p.name,
            "description": p.what,
            "stage2_uptime_s": {"median": med, "min": min, "max": max, "samples": up},
            "initrd_bytes": size,
            "initrd_unpacked_bytes": unpacked,
            "mem_available_kib": mem,
            "kernel_append": p.append,
        }));
    }
    println!("\n{table}");
    md.push_str(&format!(
        "## Boot\n\n{rounds} boots per stage 1, round-robin, {}, 1 GiB, Debian's kernel {} with `-kernel`, \
         the same busybox stage-2 payload.\n\n{table}\n",
        accel.name(),
        kernel.version
    ));
    Ok(rows)
}

/// Boots `cmd` until the payload's lines are out and the VM is off. A
/// boot that fails is tried again, twice at most (under TCG on a busy
/// host the emulated ATAPI drive now and then times out, and a peer then
/// never finds its medium); each retry is printed.
fn boot_once(cmd: &QemuCommand) -> Result<Sample, String> {
    let mut last = String::new();
    for attempt in 1..=3 {
        match boot_attempt(cmd) {
            Ok(s) => return Ok(s),
            Err(e) => {
                let first = e.lines().next().unwrap_or_default().to_string();
                eprintln!("    boot attempt {attempt} failed: {first}");
                last = e;
            }
        }
    }
    Err(last)
}

fn boot_attempt(cmd: &QemuCommand) -> Result<Sample, String> {
    let vm = Vm::spawn(cmd, TIMEOUT).map_err(|f| f.to_string())?;
    vm.wait_for(peers::DONE_MARKER, TIMEOUT)
        .map_err(|f| f.to_string())?;
    vm.wait_exit(Duration::from_secs(60))
        .map_err(|f| f.to_string())?;
    let log = vm.serial_log();
    peers::parse_sample(&log).ok_or_else(|| format!("no payload lines in the serial log:\n{log}"))
}

fn registrations(
    out: &Path,
    rounds: usize,
    md: &mut String,
) -> Result<Vec<serde_json::Value>, String> {
    let programs = artifacts::programs();
    let mut list = Vec::new();
    let mut table = String::from(
        "| paths | native loader (static musl postboot), wall, median (min-max) | nix-store --load-db, wall | ratio | native, CPU | nix-store, CPU | ratio |\n|---|---|---|---|---|---|---|\n",
    );
    for n in [1_000, 10_000] {
        let r = regbench::measure(
            &out.join(format!("registration-{n}")),
            &programs.builder,
            &programs.postboot,
            n,
            rounds,
        )?;
        let (nm, nmin, nmax) = stats(&r.native_s);
        let (sm, smin, smax) = stats(&r.nix_store_s);
        let (ncm, ncmin, ncmax) = stats(&r.native_cpu_s);
        let (scm, scmin, scmax) = stats(&r.nix_store_cpu_s);
        table.push_str(&format!(
            "| {n} | {nm:.3} s ({nmin:.3}-{nmax:.3}) | {sm:.3} s ({smin:.3}-{smax:.3}) | {:.1}x | {ncm:.3} s ({ncmin:.3}-{ncmax:.3}) | {scm:.3} s ({scmin:.3}-{scmax:.3}) | {:.1}x |\n",
            sm / nm,
            scm / ncm
        ));
        list.push(json!({
            "paths": n,
            "native_s": nm,
            "nix_store_s": sm,
            "native_cpu_s": ncm,
            "nix_store_cpu_s": scm,
            "native_samples_s": r.native_s,
            "nix_store_samples_s": r.nix_store_s,
            "native_cpu_samples_s": r.native_cpu_s,
            "nix_store_cpu_samples_s": r.nix_store_cpu_s,
        }));
    }
    println!("\n{table}");
    md.push_str(&format!(
        "## Registration\n\nFresh database each round, {rounds} rounds, the databases compared with `nix path-info --json --all`. Wall clock, and CPU (user + system of the loader's process, from bash's `times`).\n\n{table}\n"
    ));
    Ok(list)
}

/// The throughput part: a tree of `NIXLIVE_BENCH_TREE_MB` (default 300)
/// MB of the host's `/usr`, made in `target/`, measured, removed.
fn throughput(rounds: usize, md: &mut String) -> Result<Vec<serde_json::Value>, String> {
    let mb = positive_env("NIXLIVE_BENCH_TREE_MB", 300)?;
    let builder = artifacts::programs_builder();
    let work = tempfile::Builder::new()
        .prefix("nixlive-throughput.")
        .tempdir_in(artifacts::workspace_root().join("target"))
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let mut tree = throughput::make_tree(&work.path().join("root"), mb * 1_000_000)?;
    println!(
        "throughput: {} store paths copied from /usr/lib and /usr/share, {rounds} rounds",
        tree.paths
    );
    let rows = throughput::measure(work.path(), &builder, &mut tree, rounds)?;
    let table = throughput::table(&rows);
    println!("\n{table}");
    md.push_str(&format!(
        "## Builder throughput\n\n{} store paths ({:.0} MB of NAR) copied from the host's /usr, \
         median of {rounds}; MB/s of the NAR size.\n\n{table}\n",
        tree.paths,
        tree.nar_bytes as f64 / 1e6
    ));
    Ok(throughput::json(&rows, &tree))
}

/// The positive number in the environment variable `var`, or `default`.
fn positive_env(var: &str, default: u64) -> Result<u64, String> {
    match std::env::var(var) {
        Ok(s) => s
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{var}={s:?} is not a positive number")),
        Err(_) => Ok(default),
    }
}

/// The images of the big `--http` set: about 600 MiB, incompressible.
const BALLAST: usize = 600 << 20;
/// The ballast of the pair compared (in the initrd, over HTTP): enough
/// that a second copy of the images would show.
const PAIR_BALLAST: usize = 128 << 20;

/// One boot of a netboot set to the guest report: `MemAvailable` (KiB)
/// init logged before stage 2, and the uptime (s) stage 2 began at.
fn netboot_once(cmd: &QemuCommand) -> Result<(u64, f64), String> {
    let run = boot_command_to_report(cmd, TIMEOUT).map_err(|f| f.to_string())?;
    let mem = http_sets::mem_available_kib(&run.serial_log)
        .ok_or("init logged no MemAvailable before stage 2")?;
    let up = run
        .report
        .stage1
        .as_ref()
        .and_then(|t| {
            t.phases
                .last()
                .map(|p| (p.start_ms + p.duration_ms) as f64 / 1e3)
        })
        .unwrap_or(f64::NAN);
    Ok((mem, up))
}

/// `MemAvailable` at stage 2: in-initrd set against `--http` set (same
/// system and images), and a 1 GiB VM with ~600 MiB of images over HTTP.
fn netboot_ram(
    out: &Path,
    rounds: usize,
    md: &mut String,
) -> Result<Vec<serde_json::Value>, String> {
    let accel = kvm::accel();
    let dir = out.join("netboot");
    let set = |sub: &str, http: bool, ballast: usize| -> Result<std::path::PathBuf, String> {
        let mut spec = artifacts::DemoSpec::new(Arch::X86_64, "NIXLIVE_NET_BENCH");
        spec.netboot = true;
        if http {
            spec.netboot_args = vec![
                "--http".into(),
                "--base-url".into(),
                "http://unused/".into(),
            ];
        }
        let demo = artifacts::build_demo_with(&dir.join(sub), &spec, &|root, system| {
            if ballast > 0 {
                http_sets::ballast(root, system, ballast)
            } else {
                Ok(())
            }
        })?;
        demo.netboot
            .ok_or_else(|| "the builder made no netboot set".to_string())
    };
    let in_initrd = set("in-initrd", false, PAIR_BALLAST)?;
    let http = set("http", true, PAIR_BALLAST)?;
    let big = set("http-600", true, BALLAST)?;
    let initrd_size = |s: &Path| {
        std::fs::metadata(s.join("initrd"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    println!(
        "netboot RAM: {rounds} boots per set, {}, 1 GiB",
        accel.name()
    );
    let mut rows = Vec::new();
    let mut table = String::from(
        "| set | initrd | images | MemAvailable at stage 2, median (min-max) | stage 2 at uptime, median |\n|---|---|---|---|---|\n",
    );
    let cases: [(&str, &Path, usize); 3] = [
        ("in-initrd netboot, ~128 MiB of images", &in_initrd, rounds),
        ("--http, the same images", &http, rounds),
        ("--http, ~600 MiB of images", &big, 1),
    ];
    for (name, set, n) in cases {
        let server = Server::serve(set, Vec::new());
        let url = http_sets::url(server.port);
        let is_http = set.join("nixlive.manifest").is_file();
        let append = http_sets::cmdline(set, is_http.then_some(url.as_str()), "")?;
        let images = if is_http {
            http_sets::images_total(set)?
        } else {
            0
        };
        let mut mem = Vec::new();
        let mut up = Vec::new();
        for round in 0..n {
            let cmd = http_sets::direct(Arch::X86_64, set, &append, 1024, accel);
            let (m, u) = netboot_once(&cmd).map_err(|e| format!("{name}: {e}"))?;
            println!(
                "  {name:<38} round {}: MemAvailable {m} KiB, stage 2 at {u:.2} s",
                round + 1
            );
            mem.push(m as f64);
            up.push(u);
        }
        let (mm, mmin, mmax) = stats(&mem);
        let (um, _, _) = stats(&up);
        let images_col = if is_http {
            format!("{:.1} MiB", images as f64 / 1048576.0)
        } else {
            "in the initrd".into()
        };
        table.push_str(&format!(
            "| {name} | {:.2} MB | {images_col} | {:.1} MiB ({:.1}-{:.1}) | {um:.2} s |\n",
            initrd_size(set) as f64 / 1e6,
            mm / 1024.0,
            mmin / 1024.0,
            mmax / 1024.0
        ));
        rows.push(json!({
            "name": name,
            "initrd_bytes": initrd_size(set),
            "images_bytes": images,
            "mem_available_kib": {"median": mm, "min": mmin, "max": mmax, "samples": mem},
            "stage2_uptime_s": {"median": um, "samples": up},
        }));
    }
    println!("\n{table}");
    md.push_str(&format!(
        "## Netboot RAM\n\n`MemAvailable` as init logs it just before stage 2, the demo system \
         netbooted with `-kernel`/`-initrd` in 1 GiB, {}; the `--http` sets fetched from a server \
         on the host's loopback over QEMU's user network.\n\n{table}\n",
        accel.name()
    ));
    Ok(rows)
}

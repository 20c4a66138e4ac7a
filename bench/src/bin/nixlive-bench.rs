//! `nixlive-bench` (used by `make bench`): nixlive against the real peers,
//! measured in one run, and writes `out/bench/bench.json` and `bench.md`.
//!
//! Boot (the `boot` part): the same kernel (`-kernel`), RAM, QEMU and
//! stage-2 payload (a busybox script that prints the uptime and
//! `MemAvailable` first: [`nixlive_bench::peers`]) behind five stage 1s
//! (kernel-only, busybox-floor, debian-live-boot, dracut-dmsquash-live,
//! nixlive), booted round-robin so a change in the host's load hits each
//! alike; median, min and max of the uptime at which stage 2 began, the
//! initrd's size (compressed and unpacked) and `MemAvailable` then.
//!
//! Root image in RAM (the `ram` part): `MemAvailable`, `Shmem` and the
//! uptime at the start of stage 2, with the same kernel, payload (its root
//! image carrying 32 MiB of incompressible ballast), RAM and QEMU, for the
//! stage 1s that hold their image in RAM: copied from the CD (nixlive
//! `copytoram`, live-boot `toram`, dracut `rd.live.ram=1`; each boot must
//! show its peer's own copy lines, and nixlive and live-boot must have let
//! the CD go, else the row is an error) and fetched over HTTP from the host
//! (nixlive's in-initrd and `--http` netboot sets, live-boot `fetch=`,
//! dracut livenet `root=live:http://`; the server must have served the
//! image). Round-robin like the boot part.
//!
//! Registration (the `registration` part): 1,000 and 10,000 paths,
//! the static musl postboot's native loader against `nix-store --load-db`
//! ([`nixlive_bench::regbench`]).
//!
//! Netboot RAM (the `netboot` part): `MemAvailable` at the start of stage
//! 2 (init logs it) for the same system (the demo with 128 MiB of
//! incompressible ballast) booted from the in-initrd netboot set and from
//! the `--http` set (fetched from a server on the host's loopback), 1 GiB
//! each; then a 1 GiB VM booting an `--http` set whose images total about
//! 512 MiB (what fits beside the 256 MiB reserve fetched images keep).
//!
//! Throughput (the `throughput` part): the builder's NAR hashing against
//! `nix-hash`, its native squashfs writer against `mksquashfs`, and whole
//! ISO builds, on directories of the host's `/usr` copied in as store
//! paths ([`nixlive_bench::throughput`]).
//!
//! Store images (the `images` part): the same tree as squashfs (zstd,
//! xz) and erofs (lz4hc, lz4), made by the builder, read back in a VM,
//! every file and a random sample, cold ([`nixlive_bench::image_read`];
//! `NIXLIVE_BENCH_IMAGES_MB`, default 200, the tree's size).
//!
//! The boot rows are also drawn as `out/bench/bench.svg`
//! ([`nixlive_bench::bench_chart`]).
//!
//! Environment: `NIXLIVE_BENCH_ROUNDS` (default 5), `NIXLIVE_BENCH_PARTS`
//! (comma-separated, default `boot,ram,registration,throughput,netboot,images`),
//! `NIXLIVE_BENCH_RAM_ROWS` (comma-separated parts of the `ram` part's row
//! names, e.g. `ram` for the three copy-to-RAM rows; default all),
//! `NIXLIVE_BENCH_TREE_MB` (the throughput tree's size, default 300).
//! Timings are printed and written, never asserted.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use nixlive_bench::bench_stats::{rounds, stats};
use nixlive_bench::peers::{self, Sample};
use nixlive_bench::{bench_chart, image_read, regbench, throughput};
use nixlive_formats::error;
use nixlive_tests_vm::http_server::Server;
use nixlive_tests_vm::http_sets;
use nixlive_tests_vm::qemu::{QemuCommand, Vm};
use nixlive_tests_vm::{arch::Arch, artifacts, boot_command_to_report, kvm};
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
        .unwrap_or("boot,ram,registration,throughput,netboot,images".into());
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    const PARTS: [&str; 6] = [
        "boot",
        "ram",
        "registration",
        "throughput",
        "netboot",
        "images",
    ];
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
    let mut ram_result = None;
    if parts.contains(&"ram") {
        let mut md = String::new();
        ram_result = Some((ram(&out, rounds, &mut md)?, md));
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
    if let Some((list, md)) = ram_result {
        doc["ram"] = json!(list);
        doc["ram_md"] = json!(md);
        doc["ram_rounds"] = json!(rounds);
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
        "# nixlive bench\n\n{}{chart_md}{}{}{}{}{}",
        doc["boot_md"].as_str().unwrap_or(""),
        doc["ram_md"].as_str().unwrap_or(""),
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

/// nixlive's medium with the payload store path beside the demo system,
/// and its boot entry's command line with the bench's console and
/// `init=` the payload.
fn nixlive_medium(out: &Path) -> Result<(artifacts::DemoIso, String), String> {
    nixlive_medium_with(out, 0)
}

/// [`nixlive_medium`] with `ballast` bytes of incompressible data in the
/// demo system.
fn nixlive_medium_with(out: &Path, ballast: usize) -> Result<(artifacts::DemoIso, String), String> {
    let demo = artifacts::build_demo_with(
        out,
        &artifacts::DemoSpec::new(Arch::X86_64, LABEL),
        &|root, system| {
            peers::write_payload_store_path(root)?;
            if ballast > 0 {
                http_sets::ballast(root, system, ballast)?;
            }
            Ok(())
        },
    )?;
    let cfg = std::fs::read_to_string(demo.medium.join("isolinux/isolinux.cfg"))
        .map_err(|e| format!("reading isolinux.cfg: {e}"))?;
    let line = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("APPEND "))
        .ok_or("isolinux.cfg has no APPEND line")?;
    // The boot entry's consoles (tty0 too) give way to the peers' one.
    let append = peers::payload_append(line, CONSOLE);
    Ok((demo, append))
}

fn boot(out: &Path, rounds: usize, md: &mut String) -> Result<Vec<serde_json::Value>, String> {
    let (live_boot_initrd, dracut_initrd) = peers::peer_initrds()?;
    let (demo, append) = nixlive_medium(out)?;
    let kernel = artifacts::kernel("amd64");

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

/// The images of the big `--http` set: about 512 MiB, incompressible (with
/// the 256 MiB reserve that fetched images keep, what a 1 GiB VM holds).
const BALLAST: usize = 512 << 20;
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

/// The incompressible ballast in every root image of the `ram` part: a
/// stage 1 that held a second copy of its image would show it.
const RAM_BALLAST: usize = 32 << 20;

/// One row of the `ram` part: a stage 1 that holds its root image in RAM,
/// copied from the CD or fetched over HTTP.
struct RamRow {
    name: &'static str,
    what: &'static str,
    initrd: std::path::PathBuf,
    append: String,
    /// The CD (copy-to-RAM rows); none for netboot rows.
    cdrom: Option<std::path::PathBuf>,
    /// The netboot rows' server and the file the peer must fetch from it.
    server: Option<(Server, &'static str)>,
    /// How the copy-to-RAM rows prove the copy.
    proof: Option<peers::RamProof>,
    /// The bytes of the images the stage 1 holds in RAM.
    image_bytes: u64,
}

impl RamRow {
    fn command(&self, kernel: &Path, accel: nixlive_tests_vm::qemu::Accel) -> QemuCommand {
        let mut cmd = QemuCommand::x86_64(accel)
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .arg("-append")
            .arg(&self.append);
        if let Some(cd) = &self.cdrom {
            cmd = cmd.arg("-cdrom").arg(cd);
        }
        if self.server.is_some() {
            cmd = cmd
                .arg("-netdev")
                .arg("user,id=n0")
                .arg("-device")
                .arg("virtio-net-pci,netdev=n0");
        }
        cmd
    }

    /// One boot, then the proof that the image was in RAM: the peer's own
    /// lines (copy to RAM) or the server's log (netboot).
    fn boot(&self, kernel: &Path, accel: nixlive_tests_vm::qemu::Accel) -> Result<Sample, String> {
        let cmd = self.command(kernel, accel);
        let mut last = String::new();
        for attempt in 1..=3 {
            let before = self.server.as_ref().map_or(0, |(s, _)| s.requests().len());
            let run = (|| -> Result<(Sample, String), String> {
                let vm = Vm::spawn(&cmd, TIMEOUT).map_err(|f| f.to_string())?;
                vm.wait_for(peers::DONE_MARKER, TIMEOUT)
                    .map_err(|f| f.to_string())?;
                vm.wait_exit(Duration::from_secs(60))
                    .map_err(|f| f.to_string())?;
                let log = vm.serial_log();
                let sample = peers::parse_sample(&log)
                    .ok_or_else(|| format!("no payload lines in the serial log:\n{log}"))?;
                Ok((sample, log))
            })();
            match run {
                Ok((sample, log)) => {
                    if let Some(proof) = &self.proof {
                        peers::check_ram(self.name, proof, &log, &sample)
                            .map_err(|e| format!("{e}\n--- serial log ---\n{log}"))?;
                    }
                    if let Some((server, file)) = &self.server {
                        let seen: Vec<String> = server.requests()[before..]
                            .iter()
                            .map(|r| r.path.clone())
                            .collect();
                        peers::check_fetched(self.name, &seen, file)?;
                    }
                    return Ok(sample);
                }
                Err(e) => {
                    let first = e.lines().next().unwrap_or_default().to_string();
                    eprintln!("    boot attempt {attempt} failed: {first}");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// Whether the `ram` part's row `name` is asked for:
/// `NIXLIVE_BENCH_RAM_ROWS` (comma-separated parts of row names, e.g.
/// `toram,ram` or `net,fetch`) picks some; unset, all are.
fn wanted(name: &str) -> bool {
    match std::env::var("NIXLIVE_BENCH_RAM_ROWS") {
        Ok(list) => list
            .split(',')
            .any(|w| !w.is_empty() && name.contains(w.trim())),
        Err(_) => true,
    }
}

/// The `ram` part: `MemAvailable` and the uptime at the start of stage 2
/// for the stage 1s that hold their root image in RAM, booted round-robin
/// with the same kernel, payload, RAM and QEMU as the boot part: copied
/// from the CD (nixlive `copytoram`, live-boot `toram`, dracut
/// `rd.live.ram=1`) and fetched over HTTP from the host (nixlive's netboot
/// sets, live-boot `fetch=`, dracut's livenet `root=live:http://`).
fn ram(out: &Path, rounds: usize, md: &mut String) -> Result<Vec<serde_json::Value>, String> {
    let (live_boot_initrd, dracut_initrd) = peers::peer_initrds()?;
    let kernel = artifacts::kernel("amd64");
    // Its own media (the boot part's stay as they are), each root with the
    // same ballast.
    let out = &out.join("ram");
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let (demo, append) = nixlive_medium_with(out, RAM_BALLAST)?;
    let live_iso = peers::live_boot_iso_with(out, RAM_BALLAST)?;
    let dracut_iso = peers::dracut_iso_with(out, RAM_BALLAST)?;
    let live_squash = out.join("live-boot-medium/live");
    let dracut_squash = out.join("dracut-medium/LiveOS");
    // nixlive's images on the CD: the files at its top (the store image
    // and the manifest).
    let mut nixlive_images = 0;
    for e in
        std::fs::read_dir(&demo.medium).map_err(|e| format!("{}: {e}", demo.medium.display()))?
    {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_type().map_err(|e| e.to_string())?.is_file() {
            nixlive_images += e.metadata().map_err(|e| e.to_string())?.len();
        }
    }
    let mut list = Vec::new();
    let any = |names: &[&str]| names.iter().any(|n| wanted(n));
    if any(&[
        "nixlive-copytoram",
        "debian-live-boot-toram",
        "dracut-dmsquash-live-ram",
    ]) {
        list.push(RamRow {
            name: "nixlive-copytoram",
            what: "nixlive `copytoram`",
            initrd: demo.initrd(),
            append: format!("{append} copytoram"),
            cdrom: Some(demo.iso.clone()),
            server: None,
            proof: Some(peers::NIXLIVE_RAM),
            image_bytes: nixlive_images,
        });
        list.push(RamRow {
            name: "debian-live-boot-toram",
            what: "Debian live-boot `toram`",
            initrd: live_boot_initrd.clone(),
            append: peers::live_boot_toram_append(CONSOLE),
            cdrom: Some(live_iso),
            server: None,
            proof: Some(peers::LIVE_BOOT_RAM),
            image_bytes: peers::bytes_under(&out.join("live-boot-medium"))?,
        });
        list.push(RamRow {
            name: "dracut-dmsquash-live-ram",
            what: "dracut dmsquash-live `rd.live.ram=1`",
            initrd: dracut_initrd,
            append: peers::dracut_ram_append(CONSOLE),
            cdrom: Some(dracut_iso),
            server: None,
            proof: Some(peers::DRACUT_RAM),
            image_bytes: peers::bytes_under(&dracut_squash.join("squashfs.img"))?,
        });
    }
    if any(&[
        "nixlive-netboot",
        "nixlive-netboot-http",
        "debian-live-boot-fetch",
        "dracut-dmsquash-live-net",
    ]) {
        let dir = out.join("netboot");
        let set = |sub: &str, http: bool| -> Result<std::path::PathBuf, String> {
            let mut spec = artifacts::DemoSpec::new(Arch::X86_64, LABEL);
            spec.netboot = true;
            if http {
                spec.netboot_args = vec![
                    "--http".into(),
                    "--base-url".into(),
                    "http://unused/".into(),
                ];
            }
            artifacts::build_demo_with(&dir.join(sub), &spec, &|root, system| {
                peers::write_payload_store_path(root)?;
                http_sets::ballast(root, system, RAM_BALLAST)
            })?
            .netboot
            .ok_or_else(|| "the builder made no netboot set".to_string())
        };
        let in_initrd = set("in-initrd", false)?;
        let http = set("http", true)?;
        let images = http_sets::images_total(&http)?;
        list.push(RamRow {
            name: "nixlive-netboot",
            what: "nixlive netboot, images in the initrd",
            initrd: in_initrd.join("initrd"),
            append: peers::payload_append(&http_sets::cmdline(&in_initrd, None, "")?, CONSOLE),
            cdrom: None,
            server: None,
            proof: None,
            image_bytes: images,
        });
        let server = Server::serve(&http, Vec::new());
        let url = http_sets::url(server.port);
        list.push(RamRow {
            name: "nixlive-netboot-http",
            what: "nixlive netboot `--http`",
            initrd: http.join("initrd"),
            append: peers::payload_append(&http_sets::cmdline(&http, Some(&url), "")?, CONSOLE),
            cdrom: None,
            server: Some((server, "nixlive.manifest")),
            proof: None,
            image_bytes: images,
        });
        let server = Server::serve(&live_squash, Vec::new());
        let url = peers::host_url(server.port, "filesystem.squashfs");
        list.push(RamRow {
            name: "debian-live-boot-fetch",
            what: "Debian live-boot `fetch=http://`",
            initrd: live_boot_initrd,
            append: peers::live_boot_fetch_append(CONSOLE, &url),
            cdrom: None,
            server: Some((server, "filesystem.squashfs")),
            proof: None,
            image_bytes: peers::bytes_under(&live_squash.join("filesystem.squashfs"))?,
        });
        let server = Server::serve(&dracut_squash, Vec::new());
        let url = peers::host_url(server.port, "squashfs.img");
        list.push(RamRow {
            name: "dracut-dmsquash-live-net",
            what: "dracut livenet `root=live:http://`",
            initrd: peers::dracut_net_initrd()?,
            append: peers::dracut_net_append(CONSOLE, &url),
            cdrom: None,
            server: Some((server, "squashfs.img")),
            proof: None,
            image_bytes: peers::bytes_under(&dracut_squash.join("squashfs.img"))?,
        });
    }
    list.retain(|r| wanted(r.name));

    let accel = kvm::accel();
    println!(
        "ram: {rounds} boots per stage 1, round-robin, {}, 1 GiB, kernel {}",
        accel.name(),
        kernel.version
    );
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); list.len()];
    for round in 0..rounds {
        for (r, s) in list.iter().zip(samples.iter_mut()) {
            let sample = r
                .boot(&kernel.vmlinuz, accel)
                .map_err(|e| format!("{}: {e}", r.name))?;
            println!(
                "  {:<26} round {}: stage 2 at {:.2} s, MemAvailable {} KiB, Shmem {} KiB, iso9660 mounts {}",
                r.name,
                round + 1,
                sample.uptime_s,
                sample.mem_available_kib,
                sample.shmem_kib.map_or("?".into(), |n| n.to_string()),
                sample.iso9660_mounts.map_or("?".into(), |n| n.to_string())
            );
            s.push(sample);
        }
    }
    let mut rows = Vec::new();
    let mut table = format!(
        "| stage 1 | initrd | image in RAM | MemAvailable at stage 2, median (min-max) | MemAvailable + image | Shmem, median | CD still mounted | stage 2 at uptime, median (min-max) of {rounds} |\n|---|---|---|---|---|---|---|---|\n"
    );
    for (r, s) in list.iter().zip(&samples) {
        let size = std::fs::metadata(&r.initrd)
            .map_err(|e| format!("{}: {e}", r.initrd.display()))?
            .len();
        let up: Vec<f64> = s.iter().map(|x| x.uptime_s).collect();
        let (um, umin, umax) = stats(&up);
        let mem: Vec<f64> = s.iter().map(|x| x.mem_available_kib as f64).collect();
        let (mm, mmin, mmax) = stats(&mem);
        let shmem: Vec<f64> = s
            .iter()
            .filter_map(|x| x.shmem_kib)
            .map(|k| k as f64)
            .collect();
        let shmem_col = if shmem.is_empty() {
            "?".to_string()
        } else {
            format!("{:.1} MiB", stats(&shmem).0 / 1024.0)
        };
        let mounted = if r.cdrom.is_none() {
            "no CD".to_string()
        } else {
            match s.iter().filter_map(|x| x.iso9660_mounts).max() {
                Some(0) => "no".into(),
                Some(_) => "yes".into(),
                None => "?".into(),
            }
        };
        table.push_str(&format!(
            "| {}: {} | {:.2} MB | {:.2} MiB | {:.1} MiB ({:.1}-{:.1}) | {:.1} MiB | {shmem_col} | {mounted} | {um:.2} s ({umin:.2}-{umax:.2}) |\n",
            r.name,
            r.what,
            size as f64 / 1e6,
            r.image_bytes as f64 / 1048576.0,
            mm / 1024.0,
            mmin / 1024.0,
            mmax / 1024.0,
            mm / 1024.0 + r.image_bytes as f64 / 1048576.0,
        ));
        rows.push(json!({
            "name": r.name,
            "description": r.what,
            "initrd_bytes": size,
            "image_bytes": r.image_bytes,
            "mem_available_kib": {"median": mm, "min": mmin, "max": mmax, "samples": mem},
            "stage2_uptime_s": {"median": um, "min": umin, "max": umax, "samples": up},
            "shmem_kib_samples": shmem,
            "cd_mounted_at_stage2": mounted,
            "kernel_append": r.append,
        }));
    }
    println!("\n{table}");
    md.push_str(&format!(
        "## Root image in RAM\n\n{rounds} boots per stage 1, round-robin, {}, 1 GiB, Debian's kernel {} \
         with `-kernel`, the same busybox stage-2 payload; the image copied from the CD, or fetched \
         from a server on the host's loopback over QEMU's user network (virtio NIC). \
         \"MemAvailable + image\" takes the image's own size out: what the stage 1 costs beside it.\n\n{table}\n",
        accel.name(),
        kernel.version
    ));
    Ok(rows)
}

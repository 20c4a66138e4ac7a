//! `nixlive-demo-run` (used by `make demo`): builds the demo ISO in
//! `out/demo/`, boots it in QEMU and tells in plain words what happened.
//! Leaves the stage-1 timeline in `out/demo/stage1.json` (for `nixlive analyze`).
//! Exits non-zero, with the serial log, when the boot fails.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nixlive_formats::paths;
use nixlive_tests_vm::{artifacts, boot_to_report};

const LABEL: &str = "NIXLIVE_DEMO";
const TIMEOUT: Duration = Duration::from_secs(240);

fn size(path: &std::path::Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{:.2} MB ({} bytes)", m.len() as f64 / 1e6, m.len()),
        Err(e) => format!("unknown ({e})"),
    }
}

fn main() -> ExitCode {
    let started = Instant::now();
    let dir = artifacts::workspace_root().join("out/demo");
    println!("building the demo system and ISO in {}", dir.display());
    let iso = match artifacts::build_demo_iso(&dir, LABEL) {
        Ok(iso) => iso,
        Err(e) => {
            eprintln!("demo: building the ISO failed:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("  system  {}", iso.system);
    println!("  ISO     {}: {}", iso.iso.display(), size(&iso.iso));
    println!("  initrd  {}", size(&iso.initrd()));
    println!("  built in {:.1?}", iso.build_time);
    println!("booting it from the CD drive (label {LABEL})...");
    let run = match boot_to_report(&iso.iso, TIMEOUT) {
        Ok(run) => run,
        Err(failure) => {
            eprintln!("demo: the boot failed: {failure}");
            return ExitCode::FAILURE;
        }
    };
    let r = &run.report;
    println!(
        "booted with {} in {:.1?} (host wall time to the report)",
        run.accel.name(),
        run.report_after
    );
    println!("stage 1 (kernel uptime):");
    let phases = r.stage1_phases();
    if phases.is_empty() {
        println!("  no timeline (/run/nixlive/stage1.json missing or empty)");
    }
    for (name, start, dur) in phases {
        println!("  {name:<24} at {:>6} ms, took {:>5} ms", start, dur);
    }
    println!("stage 2 reached at uptime {} ms ({})", r.uptime_ms, r.arch);
    if let Some(t) = &r.stage1 {
        let path = dir.join("stage1.json");
        match std::fs::write(&path, t.to_json()) {
            Ok(()) => println!(
                "  the timeline is in {} (`nixlive analyze {0} --svg stage1.svg` plots it)",
                path.display()
            ),
            Err(e) => eprintln!("demo: writing {}: {e}", path.display()),
        }
    }
    println!("/nix mounts:");
    for m in r
        .mounts
        .iter()
        .filter(|m| m.point.starts_with("/nix") || m.point == paths::MEDIUM || m.point == "/")
    {
        println!(
            "  {:<20} {:<9} {:<12} {}",
            m.point, m.fstype, m.source, m.options
        );
    }
    println!("postboot exited {}:", r.postboot_exit);
    for line in &r.postboot_out {
        println!("  {line}");
    }
    for (path, info) in &r.files {
        match info {
            Some(f) => println!("  {path}: {} {:04o} {}:{}", f.kind, f.mode, f.uid, f.gid),
            None => println!("  {path}: missing"),
        }
    }
    println!(
        "total wall time {:.1?} (VM {:.1?})",
        started.elapsed(),
        run.wall
    );
    if r.postboot_exit != 0 {
        eprintln!("demo: postboot failed; serial log:\n{}", run.serial_log);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

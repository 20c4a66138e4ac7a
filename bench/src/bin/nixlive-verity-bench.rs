//! `nixlive-verity-bench` (used by `make bench`): what dm-verity costs the
//! boot. The demo ISO is built twice from one system, by default (every
//! image with a hash tree) and with `--no-verity`, and each is booted from
//! the CD drive, alternating, `NIXLIVE_BENCH_ROUNDS` times (default 5).
//! Prints stage 1's phases and the uptime at which stage 2 began, median
//! (min-max), side by side, and writes `out/bench/verity.json` and
//! `verity.md`. Timings are printed and written, never asserted.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use nixlive_bench::bench_stats::{rounds, stats};
use nixlive_tests_vm::boot_modes::BootMode;
use nixlive_tests_vm::qemu::QemuCommand;
use nixlive_tests_vm::{arch::Arch, artifacts, boot_command_to_report, kvm};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(240);
const LABEL: &str = "NIXLIVE_VERITY_BENCH";
/// The phases shown, in boot order (the verity target is set up in mount-store).
const PHASES: &[&str] = &["load-modules", "find-medium", "mount-medium", "mount-store"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verity bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One boot's figures: phase name -> ms, and "stage2" -> uptime ms.
type Sample = BTreeMap<String, f64>;

fn boot(iso: &std::path::Path) -> Result<Sample, String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cmd = QemuCommand::x86_64_boot(BootMode::BiosCd, iso, kvm::accel(), scratch.path());
    let run = boot_command_to_report(&cmd, TIMEOUT).map_err(|f| f.to_string())?;
    let mut s = Sample::new();
    for (name, _start, dur) in run.report.stage1_phases() {
        *s.entry(name).or_default() += dur as f64;
    }
    s.insert("stage2".into(), run.report.uptime_ms as f64);
    Ok(s)
}

fn run() -> Result<(), String> {
    let rounds = rounds()?;
    let dir = artifacts::workspace_root().join("target/tests-vm/verity-bench");
    let mut isos = Vec::new();
    for (name, args) in [
        ("verity", vec![]),
        ("no-verity", vec!["--no-verity".into()]),
    ] {
        let mut spec = artifacts::DemoSpec::new(Arch::X86_64, LABEL);
        spec.builder_args = args;
        let demo = artifacts::build_demo(&dir.join(name), &spec)?;
        let size = std::fs::metadata(&demo.iso).map(|m| m.len()).unwrap_or(0);
        println!("{name}: {} ({size} bytes)", demo.iso.display());
        isos.push((name, demo.iso));
    }
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for round in 1..=rounds {
        for (name, iso) in &isos {
            let s = boot(iso)?;
            println!(
                "round {round} {name}: stage 2 at {:.0} ms",
                s.get("stage2").copied().unwrap_or(f64::NAN)
            );
            samples.entry(name).or_default().push(s);
        }
    }
    let mut rows = Vec::new();
    let mut md = format!(
        "## dm-verity's cost ({} boots each from the CD, alternating, {})\n\n\
         | ms, median (min-max) | `--no-verity` | verity |\n|---|---|---|\n",
        rounds,
        kvm::accel().name()
    );
    let keys: Vec<&str> = PHASES.iter().copied().chain(["stage2"]).collect();
    for key in keys {
        let cell = |name: &str| -> Option<(f64, f64, f64)> {
            let v: Vec<f64> = samples[name]
                .iter()
                .filter_map(|s| s.get(key).copied())
                .collect();
            (!v.is_empty()).then(|| stats(&v))
        };
        let (off, on) = (cell("no-verity"), cell("verity"));
        if off.is_none() && on.is_none() {
            continue;
        }
        let show = |c: Option<(f64, f64, f64)>| {
            c.map_or("-".to_string(), |(m, lo, hi)| {
                format!("{m:.0} ({lo:.0}-{hi:.0})")
            })
        };
        let label = if key == "stage2" {
            "stage 2 at uptime"
        } else {
            key
        };
        md.push_str(&format!("| {label} | {} | {} |\n", show(off), show(on)));
        rows.push(json!({
            "name": key,
            "no_verity_ms": off.map(|(m, lo, hi)| json!({"median": m, "min": lo, "max": hi})),
            "verity_ms": on.map(|(m, lo, hi)| json!({"median": m, "min": lo, "max": hi})),
        }));
    }
    let (Some((off, _, _)), Some((on, _, _))) = (
        samples
            .get("no-verity")
            .map(|v| stats(&v.iter().map(|s| s["stage2"]).collect::<Vec<_>>())),
        samples
            .get("verity")
            .map(|v| stats(&v.iter().map(|s| s["stage2"]).collect::<Vec<_>>())),
    ) else {
        return Err("no boots".into());
    };
    let cost = (on - off) / off * 100.0;
    md.push_str(&format!(
        "\nStage 2 with verity: {cost:+.1}% against `--no-verity` (medians).\n"
    ));
    print!("\n{md}");
    let out = artifacts::workspace_root().join("out/bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let doc = json!({"rounds": rounds, "accel": kvm::accel().name(), "rows": rows, "stage2_cost_percent": cost});
    let json_path = out.join("verity.json");
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    let md_path = out.join("verity.md");
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    println!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

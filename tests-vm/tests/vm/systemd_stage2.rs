//! A real systemd as stage 2 after nixlive's stage 1 (issue 16): Debian's
//! systemd boots from the ISO's store with NixOS's live-ISO fstab
//! (`tests-vm/src/systemd.rs`) and must find everything in it already
//! mounted by stage 1: it reaches multi-user.target with no failed unit,
//! `/nix/.ro-store` is mounted once (not again by systemd), `/dev/root`
//! leads to the CD, and `iso.mount` is active.
//!
//! Needs `.cache/debian-systemd` from `scripts/fetch-debian-root.sh`;
//! without it the test fails and says so.

use std::time::{Duration, Instant};

use nixlive_tests_vm::systemd::{self, END};
use nixlive_tests_vm::{QemuCommand, Vm, kvm, media};

/// From power-on to the report: stage 1 plus systemd's startup under TCG.
const TIMEOUT: Duration = Duration::from_secs(240);
/// systemd's shutdown after the report.
const POWER_OFF: Duration = Duration::from_secs(60);
const LABEL: &str = "NIXLIVE_SYSTEMD";
/// The store (Debian's root, ~180 MB) sits in RAM-backed overlay over the
/// squashfs, and /etc and /var are copied into the tmpfs root.
const MEM_MIB: &str = "1536";

#[test]
fn systemd_boots_on_the_live_iso_fstab() {
    let started = Instant::now();
    let dir = media::work_dir("systemd-stage2").unwrap_or_else(|e| panic!("{e}"));
    let built = systemd::build_iso(&dir, LABEL).unwrap_or_else(|e| panic!("building the ISO: {e}"));
    eprintln!(
        "systemd_stage2: ISO built in {:.1?} (system {})",
        built.build_time, built.system
    );

    let mut cmd = QemuCommand::x86_64_cdrom(&built.iso, kvm::accel());
    let m = cmd
        .args
        .iter()
        .position(|a| a == "-m")
        .expect("the base VM sets -m");
    cmd.args[m + 1] = MEM_MIB.into();
    let vm = Vm::spawn(&cmd, TIMEOUT + POWER_OFF).unwrap();
    vm.wait_for(END, TIMEOUT).unwrap();
    let reported = vm.elapsed();
    let report = systemd::parse(&vm.serial_log())
        .unwrap_or_else(|e| panic!("{}", vm.failure(format!("bad systemd report: {e}"))));
    // Powering off is part of working: a stuck shutdown is a failure too.
    vm.wait_exit(POWER_OFF).unwrap();
    eprintln!(
        "systemd_stage2: report after {reported:.1?}, powered off after {:.1?}, {:.1?} in all; \
         dev-root.device {}; {} journal warnings:",
        vm.elapsed(),
        started.elapsed(),
        report.dev_root_device,
        report.journal.len()
    );
    for line in &report.journal {
        eprintln!("  {line}");
    }

    let problems = report.problems();
    assert!(
        problems.is_empty(),
        "{}",
        vm.failure(format!(
            "systemd stage 2 on the live-ISO fstab:\n  - {}",
            problems.join("\n  - ")
        ))
    );
}

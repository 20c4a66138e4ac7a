//! The VM test harness: finds the built programs and kernels, builds media
//! with the builder, boots them in QEMU, and parses what the guest reports
//! on its serial console (docs/contracts.md, "Guest report").
//!
//! - [`arch`]: what differs between x86_64, i686 and aarch64 guests.
//! - [`artifacts`]: where the binaries and kernels are; building the demo ISO.
//! - [`http_server`], [`http_sets`]: serving and booting `netboot --http` sets.
//! - [`kvm`]: whether KVM really works here (probed), else TCG.
//! - [`media`]: ext4/FAT32/GPT disks and extra layers made from the builder's medium.
//! - [`qemu`]: running one VM with a serial log, timeouts and a killing `Drop`.
//! - [`qmp`]: acting on a running VM (hotplug, eject) through QMP.
//! - [`report`]: the pure parser of the guest report.
//! - [`systemd`]: a stage 2 running Debian's systemd on the live-ISO fstab, and its report.
//!
//! The benchmarks that use this harness are the `nixlive-bench` crate
//! (`bench/`).
//!
//! Every run has a hard timeout and kills its VM; every failure carries the
//! QEMU command line and the whole serial log.

pub mod arch;
pub mod artifacts;
pub mod boot_modes;
pub mod checks;
pub mod http_server;
pub mod http_sets;
pub mod kvm;
pub mod media;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod systemd;

use std::path::Path;
use std::time::Duration;

pub use qemu::{Accel, Failure, QemuCommand, Vm};
pub use report::{FileInfo, Mount, Report};

/// What one boot to the guest report gave.
#[derive(Debug)]
pub struct BootRun {
    pub report: Report,
    pub accel: Accel,
    /// Host wall time from starting QEMU to the end of the report.
    pub report_after: Duration,
    /// Host wall time from starting QEMU to its exit.
    pub wall: Duration,
    pub serial_log: String,
    pub command_line: String,
}

/// Time the guest gets to power off once the report is out.
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(30);

/// Boots `iso` from the CD drive of an x86_64 VM and waits (at most
/// `timeout` in all) for the guest report; fails fast when the guest reports
/// an error or the kernel panics; then waits for the guest to power off.
pub fn boot_to_report(iso: &Path, timeout: Duration) -> Result<BootRun, Failure> {
    boot_command_to_report(&QemuCommand::x86_64_cdrom(iso, kvm::accel()), timeout)
}

/// Runs `cmd` and waits (at most `timeout` in all) for the guest report,
/// as [`boot_to_report`] does, for any machine and boot path.
pub fn boot_command_to_report(cmd: &QemuCommand, timeout: Duration) -> Result<BootRun, Failure> {
    let accel = if cmd.command_line().contains("-accel kvm") {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let vm = Vm::spawn(cmd, timeout + POWER_OFF_TIMEOUT)?;
    vm.wait_for(report::END, timeout)?;
    let report_after = vm.elapsed();
    let report = report::parse(&vm.serial_log())
        .map_err(|e| vm.failure(format!("bad guest report: {e}")))?;
    vm.wait_exit(POWER_OFF_TIMEOUT)?;
    Ok(BootRun {
        report,
        accel,
        report_after,
        wall: vm.elapsed(),
        serial_log: vm.serial_log(),
        command_line: vm.command_line().to_string(),
    })
}

/// [`boot_to_report`], keeping only the report.
pub fn run_to_report(iso: &Path, timeout: Duration) -> Result<Report, Failure> {
    boot_to_report(iso, timeout).map(|run| run.report)
}

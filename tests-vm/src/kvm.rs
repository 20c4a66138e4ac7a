//! Whether KVM really works here. `/dev/kvm` existing is not enough (on some
//! hosts `-cpu host` aborts on an MSR and other CPU models hang), so the probe
//! boots the test kernel with the same machine options the tests use and
//! waits, briefly, for it to run to its end (a panic: it has no root
//! filesystem). Anything else means TCG.
//!
//! `NIXLIVE_ACCEL=kvm` or `=tcg` skips the probe. The probe's answer is kept
//! in `target/tests-vm/kvm-probe` for as long as the host stays up (keyed by
//! its boot id), so each test binary does not pay for it again.

use std::sync::OnceLock;
use std::time::Duration;

use crate::artifacts;
use crate::qemu::{Accel, QemuCommand, Vm};

/// With KVM the kernel reaches its no-root panic in a second or two; TCG
/// takes about 11 s here, so this also bounds the cost of a hanging KVM.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// The accelerator to use, probed once per process; says on stderr what it
/// chose and why.
pub fn accel() -> Accel {
    static CHOICE: OnceLock<Accel> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        let (accel, why) = choose();
        eprintln!("nixlive-tests-vm: using {} ({why})", accel.name());
        accel
    })
}

fn choose() -> (Accel, String) {
    match std::env::var("NIXLIVE_ACCEL").as_deref() {
        Ok("kvm") => return (Accel::Kvm, "NIXLIVE_ACCEL=kvm".into()),
        Ok("tcg") => return (Accel::Tcg, "NIXLIVE_ACCEL=tcg".into()),
        _ => {}
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let boot_id = boot_id.trim();
    let cache = artifacts::workspace_root().join("target/tests-vm/kvm-probe");
    if let Some(hit) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|s| cached(&s, boot_id))
    {
        return hit;
    }
    let (accel, why) = match probe_kvm() {
        Ok(()) => (Accel::Kvm, "the KVM probe booted a kernel".to_string()),
        Err(why) => (Accel::Tcg, format!("KVM probe failed: {why}")),
    };
    if !boot_id.is_empty() {
        // not fatal: without the cache the next process probes again.
        let _ = std::fs::create_dir_all(cache.parent().unwrap_or(&cache))
            .and_then(|()| std::fs::write(&cache, format!("{boot_id}\n{}\n{why}\n", accel.name())));
    }
    (accel, why)
}

/// The cached choice, if it was made since the host last booted.
fn cached(text: &str, boot_id: &str) -> Option<(Accel, String)> {
    let mut lines = text.lines();
    if boot_id.is_empty() || lines.next()? != boot_id {
        return None;
    }
    let accel = match lines.next()? {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ => return None,
    };
    Some((accel, format!("cached: {}", lines.next().unwrap_or(""))))
}

/// Boots the amd64 test kernel without an initrd under KVM; `Ok` if it
/// reaches the end of its boot (the "no root" panic) within [`PROBE_TIMEOUT`].
pub fn probe_kvm() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    let kernel = artifacts::kernel("amd64");
    let cmd = QemuCommand::x86_64(Accel::Kvm)
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-append")
        .arg("console=ttyS0 panic=-1 loglevel=4");
    let vm = Vm::spawn(&cmd, PROBE_TIMEOUT).map_err(|f| f.reason)?;
    vm.wait_for_any(&["Kernel panic - not syncing"], PROBE_TIMEOUT)
        .map(drop)
        .map_err(|f| {
            let last = f
                .qemu_stderr
                .lines()
                .chain(f.serial_log.lines())
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            if last.is_empty() {
                f.reason
            } else {
                format!("{} (last output: {last})", f.reason)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_per_host_boot() {
        let text = "abc\ntcg\nKVM probe failed: x\n";
        assert_eq!(
            cached(text, "abc"),
            Some((Accel::Tcg, "cached: KVM probe failed: x".into()))
        );
        assert_eq!(cached(text, "other"), None);
        assert_eq!(cached(text, ""), None);
        assert_eq!(cached("abc\nxen\n", "abc"), None);
        assert_eq!(cached("abc\nkvm\n", "abc").map(|c| c.0), Some(Accel::Kvm));
    }
}

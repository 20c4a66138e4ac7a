//! PID 1 discipline (issue 12): a panic anywhere in init ends in the
//! failure policy (the message, then the packed shell with
//! `boot.shell_on_fail`), never in "Attempted to kill init"; SIGTERM, SIGINT
//! and SIGHUP sent to init do not end it; an orphan left by the debug shell
//! is reaped, and the boot goes on to stage 2.
//!
//! The guest's console is typed on through QEMU's standard input.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{self, DemoIso, DemoSpec};
use nixlive_tests_vm::media;
use nixlive_tests_vm::report;
use nixlive_tests_vm::{QemuCommand, Vm, checks, kvm};

const TIMEOUT: Duration = Duration::from_secs(180);
const LABEL: &str = "NIXLIVE_PID1";

struct Fixture {
    demo: DemoIso,
    /// The demo's initrd with busybox packed as /bin/sh.
    initrd_with_shell: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = media::work_dir("pid1").unwrap_or_else(|e| panic!("{e}"));
        let demo = artifacts::build_demo(&dir, &DemoSpec::new(Arch::X86_64, LABEL))
            .unwrap_or_else(|e| panic!("{e}"));
        let k = artifacts::kernel("amd64");
        let initrd_with_shell = dir.join("initrd-with-shell");
        let shell = ["--shell", "/bin/busybox"].map(std::ffi::OsStr::new);
        media::initrd(&k, Arch::X86_64.demo_modules(), &shell, &initrd_with_shell)
            .unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            demo,
            initrd_with_shell,
        }
    })
}

/// The demo CD, booted with the shell initrd and `append`.
fn boot(append: &str) -> Vm {
    let f = fixture();
    let cmd = QemuCommand::x86_64(kvm::accel())
        .arg("-cdrom")
        .arg(&f.demo.iso)
        .arg("-kernel")
        .arg(&f.demo.kernel)
        .arg("-initrd")
        .arg(&f.initrd_with_shell)
        .arg("-append")
        .arg(format!(
            "console=ttyS0,115200 root=LABEL={LABEL} init={}/init {append}",
            f.demo.system
        ));
    Vm::spawn(&cmd, TIMEOUT + Duration::from_secs(60)).unwrap_or_else(|f| panic!("{f}"))
}

/// busybox's ash, interactive on the console, prompts as root.
const PROMPT: &str = "/ # ";

#[test]
fn a_panic_ends_in_the_failure_policy_not_in_the_death_of_init() {
    let vm = boot("nixlive.test_panic boot.shell_on_fail");
    vm.wait_for_any(&["boot.shell_on_fail: starting /bin/sh"], TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    vm.wait_for_any(&[PROMPT], Duration::from_secs(30))
        .unwrap_or_else(|f| panic!("{f}"));
    let log = vm.serial_log();
    let fail = |why: &str| -> ! { panic!("{}", vm.failure(why.to_string())) };
    if !log.contains("nixlive-init panicked") || !log.contains("nixlive.test_panic is set") {
        fail("the panic is not explained on the console");
    }
    // The shell works, and when it exits init offers the reboot: it lives.
    vm.type_text("echo SHELL-$((6*7)); exit\n")
        .unwrap_or_else(|f| panic!("{f}"));
    vm.wait_for_any(&["SHELL-42"], Duration::from_secs(30))
        .unwrap_or_else(|f| panic!("{f}"));
    let after = vm.serial_log();
    let tail = after
        .rsplit("SHELL-42")
        .next()
        .unwrap_or_default()
        .to_string();
    vm.wait_for_any(&[report::STAGE1_REBOOT_PROMPT], Duration::from_secs(30))
        .unwrap_or_else(|f| panic!("{f}"));
    if vm.serial_log().contains("Attempted to kill init") || tail.contains("Kernel panic") {
        fail("PID 1 died");
    }
}

#[test]
fn signals_do_not_end_init_and_orphans_are_reaped() {
    let vm = boot("boot.debug1");
    vm.wait_for_any(&["boot.debug1: starting /bin/sh"], TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    vm.wait_for_any(&[PROMPT], Duration::from_secs(30))
        .unwrap_or_else(|f| panic!("{f}"));
    // `(true &)`: the subshell exits at once, so `true` is handed to PID 1,
    // ends, and stays a zombie until init reaps it.
    vm.type_text(
        "kill -TERM 1; kill -INT 1; kill -HUP 1; (true &); sleep 1; echo SIGNALS-SENT; exit\n",
    )
    .unwrap_or_else(|f| panic!("{f}"));
    let booted = media::finish(&vm, TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let ctx = booted.context();
    assert!(booted.serial_log.contains("SIGNALS-SENT"), "{ctx}");
    checks::live_system(&booted.report, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    assert!(
        booted.init_said("reaped 1 orphaned process(es)"),
        "the orphan was not reaped:\n{ctx}"
    );
}

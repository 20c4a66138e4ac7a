//! The failure policy: what PID 1 does when the boot cannot go on. It never
//! exits (that would panic the kernel with no explanation); it says what went
//! wrong and what to try, then does what the command line asked for.

use nixlive_formats::{Cmdline, report};
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The command line, once read, for a failure that has no other way to it
/// (a panic).
static CMDLINE: Mutex<Option<Cmdline>> = Mutex::new(None);
/// Set while the failure policy runs: a panic inside it must not start it again.
static FAILING: AtomicBool = AtomicBool::new(false);

/// Remembers the command line for [`on_panic`].
pub fn remember(cmdline: &Cmdline) {
    *CMDLINE.lock().unwrap_or_else(|p| p.into_inner()) = Some(cmdline.clone());
}

/// The panic hook: a panic anywhere in init ends in the failure policy (the
/// message, `boot.shell_on_fail`, `boot.panic_on_fail`, reboot on Enter),
/// never in the death of PID 1 (which the kernel could only report as
/// "Attempted to kill init").
pub fn on_panic(info: &std::panic::PanicHookInfo<'_>) {
    let msg = format!("nixlive-init panicked: {info}");
    if handed_over(&msg) {
        // Returning would abort PID 1 (panic = "abort"): this thread stops
        // here, and the main thread runs the failure policy with the message.
        loop {
            std::thread::park();
        }
    }
    if FAILING.load(Ordering::SeqCst) {
        log::error!("{msg} (while handling a failure)");
        freeze();
    }
    let cmdline = CMDLINE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
    fail(&msg, &cmdline)
}

/// The message of a panic's payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

type Report = Box<dyn Fn(String) + Send>;

std::thread_local! {
    /// Where a panic on this thread goes instead of the failure policy.
    static REPORT: std::cell::RefCell<Option<Report>> = const { std::cell::RefCell::new(None) };
}

/// A helper thread's panics are handed to `report` (which passes them to
/// the main thread) instead of running the failure policy on the helper
/// while the main thread goes on booting.
pub fn report_panics_to(report: Report) {
    REPORT.with(|r| *r.borrow_mut() = Some(report));
}

/// Hands `msg` to this thread's reporter, if it has one.
fn handed_over(msg: &str) -> bool {
    let Some(report) = REPORT.with(|r| r.borrow_mut().take()) else {
        return false;
    };
    let thread = std::thread::current();
    log::error!(
        "{msg} (on the thread {}; the main thread stops the boot)",
        thread.name().unwrap_or("unnamed")
    );
    report(msg.to_string());
    true
}

const SHELLS: [&str; 2] = ["/bin/sh", "/bin/ash"];

pub fn fail(msg: &str, cmdline: &Cmdline) -> ! {
    FAILING.store(true, Ordering::SeqCst);
    log::error!("boot failed: {msg}");
    let mut console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .ok();
    let mut say = |s: &str| {
        if let Some(c) = console.as_mut() {
            // not fatal: the message is in the kernel log too.
            let _ = c.write_all(s.as_bytes());
        } else {
            eprint!("{s}");
        }
    };
    say(&format!("\n\n{}\n\n{msg}\n\n", report::STAGE1_FAILED));
    if cmdline.panic_on_fail {
        say("boot.panic_on_fail is set: panicking the kernel.\n");
        // The sysrq crash is a kernel panic without PID 1 having to exit.
        if std::fs::write("/proc/sysrq-trigger", "c").is_err() {
            log::error!("cannot trigger a kernel panic through /proc/sysrq-trigger");
        }
    }
    if cmdline.shell_on_fail {
        match SHELLS.iter().find(|s| std::path::Path::new(s).exists()) {
            Some(sh) => {
                say(&format!(
                    "boot.shell_on_fail: starting {sh}; exit it to reboot.\n"
                ));
                run_shell(sh, "");
            }
            None => say("boot.shell_on_fail is set, but this initrd has no shell.\n"),
        }
    } else {
        say(
            "Add boot.shell_on_fail to the kernel command line for a shell, or boot.panic_on_fail to panic.\n",
        );
    }
    say(&format!("{}\n", report::STAGE1_REBOOT_PROMPT));
    let mut line = String::new();
    let read = std::fs::File::open("/dev/console")
        .map(|c| std::io::BufReader::new(c).read_line(&mut line));
    if matches!(read, Ok(Ok(n)) if n > 0) {
        rustix::fs::sync();
        if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::Restart) {
            log::error!("reboot failed: {e}");
        }
    }
    freeze()
}

/// A `boot.debug1*` stop: a shell if one was packed, else wait for Enter.
pub fn pause(name: &str) {
    log::info!("{name}: stopping");
    let mut console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console");
    if let Some(sh) = SHELLS.iter().find(|s| std::path::Path::new(s).exists()) {
        if let Ok(c) = console.as_mut() {
            let _ = writeln!(c, "{name}: starting {sh}; exit it to continue booting.");
        }
        run_shell(sh, "; continuing");
        return;
    }
    if let Ok(c) = console.as_mut() {
        let _ = writeln!(
            c,
            "{name}: stopped (this initrd has no shell). The kernel log shows what happened so far. Press Enter to continue booting."
        );
        let mut line = String::new();
        let _ = std::io::BufReader::new(c).read_line(&mut line);
    }
}

/// Runs the shell until it exits, then reaps what it left behind: PID 1
/// inherits every orphan, and a zombie would stay until stage 2 otherwise.
fn run_shell(sh: &str, then: &str) {
    match std::process::Command::new(sh).status() {
        Ok(st) => log::info!("{sh} exited ({st}){then}"),
        Err(e) => log::error!("starting {sh}: {e}{then}"),
    }
    reap_orphans();
}

/// Reaps every child that has ended, without waiting for the others.
pub fn reap_orphans() {
    use rustix::process::{WaitOptions, waitpid};
    let mut reaped = 0;
    while let Ok(Some(_)) = waitpid(None, WaitOptions::NOHANG) {
        reaped += 1;
    }
    if reaped > 0 {
        log::info!("reaped {reaped} orphaned process(es)");
    }
}

/// When nothing else can be done: reap children forever, never exit.
pub fn freeze() -> ! {
    log::error!("nixlive init is frozen; reset the machine");
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(_) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_secs(3600)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hook's first step on a helper thread: the message goes to the
    /// main thread, once; the main thread itself has no reporter.
    #[test]
    fn a_helper_threads_panic_is_handed_over() {
        assert!(!handed_over("on the test's own thread"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            report_panics_to(Box::new(move |m| tx.send(m).unwrap()));
            assert!(handed_over("nixlive-init panicked: boom"));
            assert!(!handed_over("a second one"), "the reporter is used once");
        })
        .join()
        .unwrap();
        assert_eq!(rx.recv().unwrap(), "nixlive-init panicked: boom");
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&1u8), "a panic without a message");
    }
}

//! Running QEMU: one child process per VM, its serial console (stdio)
//! collected by a reader thread into a shared log, waits with timeouts, a
//! watchdog that enforces a hard overall timeout, and a `Drop` that always
//! kills and reaps the VM.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::report::{FATAL_MARKERS, STAGE1_FAILED, STAGE1_REBOOT_PROMPT};

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A QEMU invocation: the program and its arguments.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    pub program: String,
    pub args: Vec<OsString>,
}

impl QemuCommand {
    /// `qemu-system-x86_64 -M pc` with 1 GiB, one CPU, the serial console on
    /// stdio, no display, no monitor, and exit instead of rebooting.
    pub fn x86_64(accel: Accel) -> QemuCommand {
        crate::arch::Arch::X86_64.qemu(accel)
    }

    /// Boot from `iso` on the CD drive through the firmware (SeaBIOS and
    /// isolinux), as a user's machine would.
    pub fn x86_64_cdrom(iso: &Path, accel: Accel) -> QemuCommand {
        QemuCommand::x86_64(accel)
            .arg("-cdrom")
            .arg(iso)
            .arg("-boot")
            .arg("d")
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> QemuCommand {
        self.args.push(a.into());
        self
    }

    /// The command line as a shell would take it (for failure messages).
    pub fn command_line(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            let a = a.to_string_lossy();
            s.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                s.push('\'');
                s.push_str(&a.replace('\'', "'\\''"));
                s.push('\'');
            } else {
                s.push_str(&a);
            }
        }
        s
    }
}

/// Why a VM run failed, with everything needed to see why: the exact QEMU
/// command line, the whole serial log and QEMU's own stderr. `Debug` prints
/// the same as `Display`, so `.unwrap()` in a test shows all of it.
pub struct Failure {
    pub reason: String,
    pub command_line: String,
    pub serial_log: String,
    pub qemu_stderr: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.reason)?;
        writeln!(f, "qemu command line:\n  {}", self.command_line)?;
        writeln!(
            f,
            "----- serial log ({} bytes) -----",
            self.serial_log.len()
        )?;
        writeln!(f, "{}", self.serial_log.replace('\r', ""))?;
        writeln!(f, "----- end of serial log -----")?;
        if !self.qemu_stderr.trim().is_empty() {
            writeln!(
                f,
                "----- qemu stderr -----\n{}",
                self.qemu_stderr.trim_end()
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}

#[derive(Default)]
struct Output {
    serial: String,
    stderr: String,
    serial_eof: bool,
    /// Set by the watchdog when it killed the VM.
    hard_timeout_hit: bool,
}

struct Shared {
    out: Mutex<Output>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Output> {
        // A reader thread that panicked leaves usable data behind.
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running VM. Dropping it kills QEMU and waits for it.
pub struct Vm {
    child: Arc<Mutex<Child>>,
    /// QEMU's standard input: what is written there reaches the guest's
    /// serial console (`-serial stdio`).
    stdin: Mutex<Option<std::process::ChildStdin>>,
    shared: Arc<Shared>,
    command_line: String,
    started: Instant,
    hard_deadline: Instant,
    stop_watchdog: Option<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

fn reader(
    mut from: impl Read + Send + 'static,
    shared: Arc<Shared>,
    serial: bool,
) -> JoinHandle<()> {
    let echo = serial && std::env::var_os("NIXLIVE_VM_ECHO").is_some();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let mut out = shared.lock();
            if n == 0 {
                if serial {
                    out.serial_eof = true;
                }
                shared.changed.notify_all();
                return;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            if echo {
                eprint!("{text}");
            }
            if serial {
                out.serial.push_str(&text);
            } else {
                out.stderr.push_str(&text);
            }
            shared.changed.notify_all();
        }
    })
}

impl Vm {
    /// Starts QEMU. `hard_timeout` bounds the VM's whole life: a watchdog
    /// kills it then, whatever the test is doing.
    pub fn spawn(cmd: &QemuCommand, hard_timeout: Duration) -> Result<Vm, Failure> {
        let command_line = cmd.command_line();
        let mut child = Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure {
                reason: format!(
                    "cannot start {}: {e} (is qemu-system-x86 installed?)",
                    cmd.program
                ),
                command_line: command_line.clone(),
                serial_log: String::new(),
                qemu_stderr: String::new(),
            })?;
        let shared = Arc::new(Shared {
            out: Mutex::new(Output::default()),
            changed: Condvar::new(),
        });
        let mut threads = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            threads.push(reader(stdout, shared.clone(), true));
        }
        if let Some(stderr) = child.stderr.take() {
            threads.push(reader(stderr, shared.clone(), false));
        }
        let stdin = Mutex::new(child.stdin.take());
        let child = Arc::new(Mutex::new(child));
        let (stop, stopped) = mpsc::channel::<()>();
        {
            let child = child.clone();
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(hard_timeout) {
                    let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
                    if let Ok(None) = c.try_wait() {
                        // not fatal: the process may have exited meanwhile.
                        let _ = c.kill();
                        shared.lock().hard_timeout_hit = true;
                        shared.changed.notify_all();
                    }
                }
            }));
        }
        let started = Instant::now();
        Ok(Vm {
            child,
            stdin,
            shared,
            command_line,
            started,
            hard_deadline: started + hard_timeout,
            stop_watchdog: Some(stop),
            threads,
        })
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Everything the guest wrote to its serial console so far.
    pub fn serial_log(&self) -> String {
        self.shared.lock().serial.clone()
    }

    /// Types `text` on the guest's serial console (as a person at it would).
    pub fn type_text(&self, text: &str) -> Result<(), Failure> {
        use std::io::Write;
        let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        let written = match stdin.as_mut() {
            Some(s) => s.write_all(text.as_bytes()).and_then(|()| s.flush()),
            None => Err(std::io::Error::other("QEMU's standard input is closed")),
        };
        written.map_err(|e| self.failure(format!("typing {text:?} on the serial console: {e}")))
    }

    /// A [`Failure`] carrying this VM's command line and logs.
    pub fn failure(&self, reason: impl Into<String>) -> Failure {
        let out = self.shared.lock();
        Failure {
            reason: reason.into(),
            command_line: self.command_line.clone(),
            serial_log: out.serial.clone(),
            qemu_stderr: out.stderr.clone(),
        }
    }

    /// Waits for init's failure screen (its banner, the message, the offer
    /// to reboot) and returns what follows the banner, `\r` removed.
    pub fn wait_for_stage1_failure(&self, timeout: Duration) -> Result<String, Failure> {
        self.wait_for_any(&[STAGE1_REBOOT_PROMPT], timeout)?;
        let log = self.serial_log().replace('\r', "");
        match log.split_once(STAGE1_FAILED) {
            Some((_, after)) => Ok(after.to_string()),
            None => Err(self.failure("no failure banner on the console")),
        }
    }

    /// Waits until the serial log contains one of `markers` (returns its
    /// index), QEMU exits, or `timeout` (capped by the hard timeout) passes.
    pub fn wait_for_any(&self, markers: &[&str], timeout: Duration) -> Result<usize, Failure> {
        let deadline = (Instant::now() + timeout).min(self.hard_deadline);
        let mut out = self.shared.lock();
        loop {
            if let Some(i) = markers.iter().position(|m| out.serial.contains(m)) {
                return Ok(i);
            }
            let now = Instant::now();
            let reason = if out.hard_timeout_hit || now >= self.hard_deadline {
                Some(format!(
                    "hard timeout: the VM ran {:.0?} without printing {markers:?}; killed",
                    self.hard_deadline - self.started
                ))
            } else if out.serial_eof {
                Some(format!(
                    "QEMU exited after {:.1?} before printing {markers:?}",
                    self.elapsed()
                ))
            } else if now >= deadline {
                Some(format!(
                    "timeout: no {markers:?} on the serial console within {timeout:.0?}"
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                drop(out);
                return Err(self.failure(reason));
            }
            out = self
                .shared
                .changed
                .wait_timeout(out, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for `marker`, failing fast when the guest prints one of
    /// [`FATAL_MARKERS`] (then the rest of its output is given a moment to
    /// arrive, so the failure shows it).
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> Result<(), Failure> {
        let mut all = vec![marker];
        all.extend_from_slice(FATAL_MARKERS);
        match self.wait_for_any(&all, timeout)? {
            0 => Ok(()),
            i => {
                self.wait_serial_eof(Duration::from_secs(3));
                let log = self.serial_log();
                let line = log
                    .lines()
                    .find(|l| l.contains(all[i]))
                    .unwrap_or(all[i])
                    .trim();
                Err(self.failure(format!(
                    "the guest failed before printing {marker:?}: {line}"
                )))
            }
        }
    }

    /// Gives the guest up to `timeout` to finish writing (until QEMU closes
    /// the serial pipe).
    fn wait_serial_eof(&self, timeout: Duration) {
        let out = self.shared.lock();
        drop(
            self.shared
                .changed
                .wait_timeout_while(out, timeout, |o| !o.serial_eof),
        );
    }

    /// Waits for QEMU to exit on its own (the guest powered off).
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus, Failure> {
        let deadline = (Instant::now() + timeout).min(self.hard_deadline);
        loop {
            let status = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait();
            match status {
                Ok(Some(status)) => {
                    // Let the reader drain the pipe before anyone reads the log.
                    self.wait_serial_eof(Duration::from_secs(2));
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    return Err(self.failure(format!(
                        "QEMU did not exit within {timeout:.0?} (the guest did not power off)"
                    )));
                }
                Err(e) => return Err(self.failure(format!("waiting for QEMU: {e}"))),
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        {
            let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
            // not fatal: it may have exited already.
            let _ = c.kill();
            let _ = c.wait();
        }
        // Dropping the sender wakes the watchdog, which then exits.
        self.stop_watchdog.take();
        for t in self.threads.drain(..) {
            // not fatal: a reader thread that panicked has nothing left to give.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_shell_quoted() {
        let cmd = QemuCommand::x86_64_cdrom(Path::new("/tmp/a b/demo.iso"), Accel::Tcg)
            .arg("-append")
            .arg("x='y'");
        assert_eq!(
            cmd.command_line(),
            r"qemu-system-x86_64 -M pc -m 1024 -smp 1 -display none -serial stdio -monitor none -no-reboot -accel tcg -cdrom '/tmp/a b/demo.iso' -boot d -append 'x='\''y'\'''"
        );
    }
}

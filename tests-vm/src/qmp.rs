//! A minimal QMP client (QEMU's JSON machine protocol on a unix socket),
//! for acting on a running guest: plugging a disk in, ejecting a CD.
//!
//! Start QEMU with [`QemuCommand::with_qmp`]; connect with [`Qmp::connect`]
//! once it runs. Each command waits for its answer; events in between are
//! skipped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::qemu::QemuCommand;

impl QemuCommand {
    /// Adds a QMP server on the unix socket `sock` (not waiting for a client).
    pub fn with_qmp(self, sock: &Path) -> QemuCommand {
        let mut spec = std::ffi::OsString::from("unix:");
        spec.push(sock);
        spec.push(",server=on,wait=off");
        self.arg("-qmp").arg(spec)
    }
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    sock: PathBuf,
}

impl Qmp {
    /// Connects (retrying until QEMU has made the socket, at most
    /// `timeout`) and leaves capabilities negotiation mode.
    pub fn connect(sock: &Path, timeout: Duration) -> Result<Qmp, String> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("connecting to QMP at {}: {e}", sock.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| format!("QMP socket: {e}"))?;
        let writer = stream.try_clone().map_err(|e| format!("QMP socket: {e}"))?;
        let mut q = Qmp {
            reader: BufReader::new(stream),
            writer,
            sock: sock.to_path_buf(),
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("QMP greeting expected, got {greeting}"));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| format!("reading QMP at {}: {e}", self.sock.display()))?;
        if n == 0 {
            return Err(format!("QMP at {} closed", self.sock.display()));
        }
        serde_json::from_str(&line).map_err(|e| format!("QMP sent bad JSON ({e}): {line}"))
    }

    /// Runs one command; `Ok(return value)` or `Err(QEMU's error text)`.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}").map_err(|e| format!("writing to QMP: {e}"))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("QMP {command} failed: {e}"));
            }
            // An event ({"event": ...}): not the answer, read on.
        }
    }
}

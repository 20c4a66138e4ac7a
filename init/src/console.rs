//! The console: what the person at the machine reads (failures, the
//! copytoram progress), besides the kernel log.

use std::io::Write;

/// `/dev/console` for writing, or standard error when it cannot be opened.
pub fn writer() -> Box<dyn Write> {
    match std::fs::OpenOptions::new().write(true).open("/dev/console") {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::stderr()),
    }
}

/// Writes `s` on the console.
pub fn say(s: &str) {
    // not fatal: the same text is in the kernel log.
    let _ = writer().write_all(s.as_bytes());
}

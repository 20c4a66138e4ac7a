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

/// `WHAT: 45% (123 MiB of 273 MiB, 40.2 MB/s[, 4 s left])`: `done` of
/// `total`, at `moved` bytes in `secs`. With `estimate`, the time left at
/// that rate (none once done or before a rate is known).
pub fn progress_line(
    what: &str,
    done: u64,
    total: u64,
    moved: u64,
    secs: f64,
    estimate: bool,
) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let rate = if secs > 0.0 {
        moved as f64 / 1e6 / secs
    } else {
        0.0
    };
    let left = if estimate && done < total && rate > 0.0 {
        format!(", {:.0} s left", (total - done) as f64 / 1e6 / rate)
    } else {
        String::new()
    };
    format!(
        "{what}: {pct:3}% ({} MiB of {} MiB, {rate:.1} MB/s{left})",
        done >> 20,
        total >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::progress_line;

    #[test]
    fn progress_lines_with_and_without_an_estimate() {
        assert_eq!(
            progress_line("fetching", 50 << 20, 100 << 20, 50 << 20, 2.0, false),
            "fetching:  50% (50 MiB of 100 MiB, 26.2 MB/s)"
        );
        assert_eq!(
            progress_line("copying to RAM", 50 << 20, 100 << 20, 50 << 20, 2.0, true),
            "copying to RAM:  50% (50 MiB of 100 MiB, 26.2 MB/s, 2 s left)"
        );
    }
}

//! Progress bars on standard error, drawn only when it is a terminal (logs
//! and CI stay clean), with the rate and an estimate of the time left; each
//! long step also ends with one line saying what it did, how long it took
//! and how fast (on a terminal and in logs alike).
//!
//! Non-goals: no progress from inside external programs (a spinner stands
//! for them), no machine-readable progress.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nixlive_formats::size::human;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Steps shorter than this end without a line of their own.
const QUIET_UNDER: Duration = Duration::from_secs(2);

/// A bar of `len` steps, hidden when standard error is not a terminal.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    b.set_style(style);
    b.set_prefix(what.to_string());
    b
}

/// A spinner for one long step of unknown length (an external tool).
fn spinner(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        eprintln!("{what}");
        return ProgressBar::hidden();
    }
    let s = ProgressBar::new_spinner();
    s.set_message(what.to_string());
    s.enable_steady_tick(std::time::Duration::from_millis(120));
    s
}

/// Runs `f` under a [`spinner`] saying `what`, cleared when it returns.
pub fn during<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let s = spinner(what);
    let r = f();
    s.finish_and_clear();
    r
}

/// The line that ends a step: `what: 1200 paths, 1.5 GiB in 3.2 s
/// (480.0 MiB/s)`; nothing for a step shorter than two seconds, unless
/// `NIXLIVE_STEP_TIMES` is set (`make bench` reads every step's time).
pub fn finished(what: &str, count: &str, bytes: u64, started: Instant) {
    let t = started.elapsed();
    if t < QUIET_UNDER && std::env::var_os("NIXLIVE_STEP_TIMES").is_none() {
        return;
    }
    eprintln!("{}", summary(what, count, bytes, t));
}

fn summary(what: &str, count: &str, bytes: u64, t: Duration) -> String {
    let rate = (bytes as f64 / t.as_secs_f64().max(1e-3)) as u64;
    let count = if count.is_empty() {
        String::new()
    } else {
        format!("{count}, ")
    };
    format!(
        "{what}: {count}{} in {:.1} s ({}/s)",
        human(bytes),
        t.as_secs_f64(),
        human(rate)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(
            summary("hashing", "3 paths", 3 << 30, Duration::from_secs(2)),
            "hashing: 3 paths, 3.0 GiB in 2.0 s (1.5 GiB/s)"
        );
        assert_eq!(
            summary("writing x", "", 1 << 20, Duration::from_millis(500)),
            "writing x: 1.0 MiB in 0.5 s (2.0 MiB/s)"
        );
    }
}

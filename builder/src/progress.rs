//! Progress bars on standard error, drawn only when it is a terminal (logs
//! and CI stay clean).
//!
//! Non-goals: no progress from inside external programs (a spinner stands
//! for them), no machine-readable progress.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `len` steps, hidden when standard error is not a terminal.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {wide_msg}")
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

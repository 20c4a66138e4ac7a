//! `nixlive analyze FILE [--svg OUT.svg]`: where stage 1's time went. Reads
//! a stage-1 timeline (`/run/nixlive/stage1.json` of a booted system, or
//! the `out/demo/stage1.json` that `make demo` leaves), prints its steps
//! longest first with their start and duration (as `systemd-analyze
//! blame` does) and draws them as bars on the uptime axis (as
//! `systemd-analyze plot` does).
//!
//! The file comes from a guest, so it is untrusted: it is read up to
//! [`MAX_BYTES`] by the strict parser init's writer is checked against
//! ([`Timeline::parse`], fuzzed), and every error names the file and the
//! line and column, or the step.
//!
//! Non-goals: no reading of the kernel log or of stage 2's timings.

use anyhow::{Context, Result, bail};
use nixlive_chart::{Bar, Chart};
use nixlive_formats::Timeline;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A timeline larger than this is refused (init's are about 500 bytes).
pub const MAX_BYTES: u64 = 4 << 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage-1 timeline (`/run/nixlive/stage1.json`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Also draw the steps on the uptime axis into this SVG file.
    #[arg(long, value_name = "OUT.svg")]
    pub svg: Option<PathBuf>,
}

/// One step of stage 1, with where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    /// Kernel uptime at its start, ms.
    pub start_ms: u64,
    pub duration_ms: u64,
    /// Its start after the first step's, ms.
    pub offset_ms: u64,
}

/// The steps, the span they cover and what they left uncovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// In the timeline's order (the order of the boot).
    pub steps: Vec<Step>,
    pub first_ms: u64,
    pub last_ms: u64,
    /// Time within `first_ms..last_ms` in no step, ms.
    pub outside_ms: u64,
    /// `(image, how it was checked)`.
    pub images: Vec<(String, String)>,
}

/// Checks a parsed timeline and lays it out. Refused: no steps, and a
/// step whose end does not fit (start + duration past 2^64 ms), named.
pub fn analyze(t: &Timeline) -> Result<Analysis, String> {
    if t.phases.is_empty() {
        return Err(
            "the timeline has no steps (stage 1 stopped before its first step ended?)".into(),
        );
    }
    let mut ends = Vec::with_capacity(t.phases.len());
    for (i, p) in t.phases.iter().enumerate() {
        let end = p.start_ms.checked_add(p.duration_ms).ok_or_else(|| {
            format!(
                "step {} ({:?}): start_ms {} + duration_ms {} is past the largest uptime",
                i + 1,
                p.name,
                p.start_ms,
                p.duration_ms
            )
        })?;
        ends.push((p.start_ms, end));
    }
    let first_ms = ends.iter().map(|e| e.0).min().unwrap_or(0);
    let last_ms = ends.iter().map(|e| e.1).max().unwrap_or(0);
    // The union of the steps' intervals, to tell the time in none.
    let mut sorted = ends.clone();
    sorted.sort_unstable();
    let (mut covered, mut reach) = (0u64, first_ms);
    for (s, e) in sorted {
        let s = s.max(reach);
        if e > s {
            covered += e - s;
            reach = e;
        }
    }
    Ok(Analysis {
        steps: t
            .phases
            .iter()
            .map(|p| Step {
                name: p.name.clone(),
                start_ms: p.start_ms,
                duration_ms: p.duration_ms,
                offset_ms: p.start_ms - first_ms,
            })
            .collect(),
        first_ms,
        last_ms,
        outside_ms: (last_ms - first_ms) - covered,
        images: t
            .images
            .iter()
            .map(|i| (i.name.clone(), i.check.clone()))
            .collect(),
    })
}

/// `s` with control characters shown as `?`, so a name cannot move the
/// terminal's cursor.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The blame table: steps longest first (ties in boot order).
pub fn blame(a: &Analysis) -> String {
    let mut order: Vec<&Step> = a.steps.iter().collect();
    // Stable: equal durations keep the boot order.
    order.sort_by_key(|s| std::cmp::Reverse(s.duration_ms));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "stage 1: {} steps, {} ms, from {} ms to {} ms of kernel uptime ({} ms in no step)",
        a.steps.len(),
        a.last_ms - a.first_ms,
        a.first_ms,
        a.last_ms,
        a.outside_ms
    );
    let _ = writeln!(
        s,
        "{:>11} {:>11} {:>11}  step",
        "duration", "start", "offset"
    );
    for st in order {
        let _ = writeln!(
            s,
            "{:>8} ms {:>8} ms {:>8} ms  {}",
            st.duration_ms,
            st.start_ms,
            format!("+{}", st.offset_ms),
            printable(&st.name)
        );
    }
    for (name, check) in &a.images {
        let _ = writeln!(s, "image {}: {}", printable(name), printable(check));
    }
    s
}

/// The steps in boot order as bars on the uptime axis (from 0: the
/// kernel's own time shows as the space before the first bar).
pub fn chart(a: &Analysis) -> Chart {
    Chart {
        title: format!(
            "nixlive stage 1: {} steps, {} ms (uptime {} to {} ms)",
            a.steps.len(),
            a.last_ms - a.first_ms,
            a.first_ms,
            a.last_ms
        ),
        axis: "ms of kernel uptime".into(),
        bars: a
            .steps
            .iter()
            .map(|st| Bar {
                label: st.name.clone(),
                from: st.start_ms as f64,
                to: (st.start_ms + st.duration_ms) as f64,
                mark: None,
                note: format!("{} ms", st.duration_ms),
            })
            .collect(),
    }
}

/// Reads and parses `path`; errors name it, with line and column.
pub fn read(path: &Path) -> Result<Timeline> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("reading the timeline {}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the timeline {}", path.display()))?;
    if bytes.len() as u64 > MAX_BYTES {
        bail!(
            "{}: larger than {} MiB, which no stage-1 timeline is",
            path.display(),
            MAX_BYTES >> 20
        );
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    Timeline::parse(&text).map_err(|e| {
        let (line, column) = e.line_column(&text);
        anyhow::anyhow!(
            "{}:{line}:{column}: not a stage-1 timeline: {}",
            path.display(),
            e.msg
        )
    })
}

pub fn run(a: &Args) -> Result<()> {
    let t = read(&a.file)?;
    let analysis = analyze(&t).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    print!("{}", blame(&analysis));
    if let Some(out) = &a.svg {
        let svg = chart(&analysis)
            .to_svg()
            .with_context(|| format!("drawing {}", out.display()))?;
        crate::files::write(out, svg.as_bytes())?;
        eprintln!("wrote {} ({} bytes)", out.display(), svg.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixlive_formats::Phase;

    fn timeline(phases: &[(&str, u64, u64)]) -> Timeline {
        Timeline {
            phases: phases
                .iter()
                .map(|&(name, start_ms, duration_ms)| Phase {
                    name: name.into(),
                    start_ms,
                    duration_ms,
                })
                .collect(),
            ..Timeline::default()
        }
    }

    #[test]
    fn blame_is_longest_first_with_offsets() {
        let a = analyze(&timeline(&[
            ("mount-api-filesystems", 1000, 50),
            ("load-modules", 1060, 900),
            ("find-medium", 1960, 50),
            ("mount-store", 2100, 100),
        ]))
        .unwrap();
        assert_eq!((a.first_ms, a.last_ms), (1000, 2200));
        // 1050..1060 and 2010..2100 are in no step.
        assert_eq!(a.outside_ms, 100);
        let text = blame(&a);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "stage 1: 4 steps, 1200 ms, from 1000 ms to 2200 ms of kernel uptime (100 ms in no step)"
        );
        let names: Vec<&str> = lines[2..]
            .iter()
            .map(|l| l.rsplit("  ").next().unwrap())
            .collect();
        // Equal durations keep the boot order.
        assert_eq!(
            names,
            [
                "load-modules",
                "mount-store",
                "mount-api-filesystems",
                "find-medium"
            ]
        );
        assert_eq!(
            lines[2],
            "     900 ms     1060 ms      +60 ms  load-modules"
        );
    }

    #[test]
    fn overlapping_steps_count_once() {
        let a = analyze(&timeline(&[("a", 10, 100), ("b", 20, 10), ("c", 50, 100)])).unwrap();
        assert_eq!((a.first_ms, a.last_ms, a.outside_ms), (10, 150, 0));
    }

    #[test]
    fn names_are_printed_without_control_characters() {
        let mut t = timeline(&[("a\u{1b}[2Jb", 1, 1)]);
        t.images.push(nixlive_formats::timeline::ImageCheck {
            name: "x\ny".into(),
            check: "dm-verity".into(),
        });
        let text = blame(&analyze(&t).unwrap());
        assert!(text.contains("a?[2Jb"), "{text}");
        assert!(text.contains("image x?y: dm-verity"), "{text}");
    }

    #[test]
    fn refuses_no_steps_and_ends_past_the_largest_uptime() {
        assert!(analyze(&timeline(&[])).unwrap_err().contains("no steps"));
        assert_eq!(
            analyze(&timeline(&[("a", 1, 1), ("b", u64::MAX, 1)])).unwrap_err(),
            format!(
                "step 2 (\"b\"): start_ms {} + duration_ms 1 is past the largest uptime",
                u64::MAX
            )
        );
    }

    #[test]
    fn chart_has_a_bar_per_step_in_boot_order() {
        let c = chart(&analyze(&timeline(&[("a", 1000, 50), ("b", 1100, 0)])).unwrap());
        assert_eq!(c.bars.len(), 2);
        assert_eq!(
            (c.bars[0].label.as_str(), c.bars[0].from, c.bars[0].to),
            ("a", 1000.0, 1050.0)
        );
        assert_eq!(c.bars[1].note, "0 ms");
        c.to_svg().unwrap();
    }
}

//! `nixlive analyze` on a real stage-1 timeline (`fixtures/stage1.json`:
//! what init wrote in a TCG boot of the demo ISO, taken from the guest
//! report of `make demo`) and on each kind of bad input.

mod common;

use std::path::Path;
use std::process::Command;

const NIXLIVE: &str = env!("CARGO_BIN_EXE_nixlive");

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stage1.json")
}

/// Runs `nixlive analyze ARGS`, which must fail; its standard error.
fn refused(args: &[&std::ffi::OsStr]) -> String {
    let out = common::run(Command::new(NIXLIVE).arg("analyze").args(args));
    assert!(!out.status.success(), "analyze {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn blame_of_a_real_boot_is_longest_first() {
    let out = common::ok(Command::new(NIXLIVE).arg("analyze").arg(fixture()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "stage 1: 5 steps, 3510 ms, from 7123 ms to 10633 ms of kernel uptime (130 ms in no step)",
        "{out}"
    );
    let steps: Vec<(u64, u64, &str)> = lines[2..7]
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].parse().unwrap(), w[2].parse().unwrap(), w[6])
        })
        .collect();
    assert_eq!(
        steps,
        [
            (2931, 7235, "load-modules"),
            (182, 10176, "find-medium"),
            (181, 10452, "mount-store"),
            (66, 7123, "mount-api-filesystems"),
            (20, 10360, "mount-medium"),
        ],
        "{out}"
    );
    assert!(lines[2].contains("+112 ms"), "{out}");
    assert_eq!(lines[7], "image nix-store.squashfs: dm-verity");
}

#[test]
fn svg_is_one_bar_per_step_on_the_uptime_axis() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("plots/stage1.svg");
    common::ok(
        Command::new(NIXLIVE)
            .arg("analyze")
            .arg(fixture())
            .arg("--svg")
            .arg(&svg_path),
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert!(root.attribute("width").is_some() && root.attribute("height").is_some());
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for want in [
        "mount-api-filesystems",
        "load-modules",
        "find-medium",
        "mount-medium",
        "mount-store",
        "2931 ms",
        "ms of kernel uptime",
    ] {
        assert!(texts.contains(&want), "no {want:?} in {texts:?}");
    }
    // The background and one filled rectangle per step.
    let rects = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert_eq!(rects, 1 + 5);
    // Boot order, top to bottom.
    let y = |label: &str| -> f64 {
        doc.descendants()
            .find(|n| n.has_tag_name("text") && n.text().map(str::trim) == Some(label))
            .and_then(|n| n.attribute("y")?.parse().ok())
            .unwrap()
    };
    assert!(y("mount-api-filesystems") < y("load-modules"));
    assert!(y("mount-medium") < y("mount-store"));
}

#[test]
fn a_missing_file_is_named() {
    let err = refused(&["/nonexistent/stage1.json".as_ref()]);
    assert!(
        err.contains("reading the timeline /nonexistent/stage1.json")
            && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn bad_input_is_named_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, want) in [
        (
            "html.json",
            "<html>\n",
            ":1:1: not a stage-1 timeline: want '{'",
        ),
        ("empty.json", "", ":1:1: not a stage-1 timeline: want '{'"),
        (
            "truncated.json",
            "{\"version\":1,\n\"phases\":[{\"name\":\"a\"",
            ":2:22: not a stage-1 timeline: want ','",
        ),
        (
            "field.json",
            "{\"version\":1,\n \"phases\":[{\"name\":\"a\",\"start_ms\":1,\"took\":2}]}",
            ":2:44: not a stage-1 timeline: unknown phase key \"took\"",
        ),
        (
            "missing-field.json",
            "{\"version\":1,\"phases\":[{\"name\":\"a\",\"start_ms\":1}]}",
            ":1:49: not a stage-1 timeline: a phase wants name, start_ms and duration_ms",
        ),
        (
            "string-number.json",
            "{\"version\":1,\"phases\":[{\"name\":\"a\",\"start_ms\":\"1\",\"duration_ms\":1}]}",
            ":1:47: not a stage-1 timeline: want a non-negative integer",
        ),
        (
            "version.json",
            "{\"version\":2,\"phases\":[]}\n",
            ":1:12: not a stage-1 timeline: version 2, only 1 is known",
        ),
        (
            "array.json",
            "[1, 2]",
            ":1:1: not a stage-1 timeline: want '{'",
        ),
        (
            "no-steps.json",
            "{\"version\":1,\"phases\":[]}",
            ": the timeline has no steps",
        ),
        (
            "overflow.json",
            "{\"version\":1,\"phases\":[{\"name\":\"late\",\"start_ms\":18446744073709551615,\"duration_ms\":1}]}",
            ": step 1 (\"late\"): start_ms 18446744073709551615 + duration_ms 1 is past the largest uptime",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let err = refused(&[path.as_os_str()]);
        let want = format!("{}{want}", path.display());
        assert!(err.contains(&want), "{name}: want {want:?} in {err:?}");
    }
}

#[test]
fn not_utf8_and_too_large_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin.json");
    std::fs::write(&bin, b"{\"version\":1,\xff}").unwrap();
    let err = refused(&[bin.as_os_str()]);
    assert!(
        err.contains(&format!("{}: not UTF-8 text (byte 13)", bin.display())),
        "{err}"
    );
    let big = dir.path().join("big.json");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(5 << 20).unwrap();
    let err = refused(&[big.as_os_str()]);
    assert!(
        err.contains(&format!("{}: larger than 4 MiB", big.display())),
        "{err}"
    );
    // A directory is not a timeline.
    let err = refused(&[dir.path().as_os_str()]);
    assert!(
        err.contains(&format!("reading the timeline {}", dir.path().display())),
        "{err}"
    );
}

#[test]
fn an_svg_that_cannot_be_written_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let out = file.join("stage1.svg");
    let err = refused(&[fixture().as_os_str(), "--svg".as_ref(), out.as_os_str()]);
    assert!(
        err.contains(&format!("creating {}", file.display())),
        "{err}"
    );
}

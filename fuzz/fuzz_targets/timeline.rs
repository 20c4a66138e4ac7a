#![no_main]
//! The stage-1 timeline as `nixlive analyze` reads it (untrusted: a guest
//! wrote it): parse never panics, a parsed timeline renders to JSON that
//! parses back to the same value, and its chart (what `--svg` draws: a
//! bar per step on the uptime axis) is well-formed XML whatever the
//! names and numbers.
use libfuzzer_sys::fuzz_target;
use nixlive_chart::{Bar, Chart};
use nixlive_formats::timeline::Timeline;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Timeline::parse(text) else {
        return;
    };
    assert_eq!(
        Timeline::parse(&t.to_json()).expect("rendered timeline parses"),
        t
    );
    let bars: Vec<Bar> = t
        .phases
        .iter()
        .filter_map(|p| {
            let end = p.start_ms.checked_add(p.duration_ms)?;
            Some(Bar {
                label: p.name.clone(),
                from: p.start_ms as f64,
                to: end as f64,
                mark: None,
                note: format!("{} ms", p.duration_ms),
            })
        })
        .collect();
    let chart = Chart {
        title: format!("{} steps", bars.len()),
        axis: "ms of kernel uptime".into(),
        bars,
    };
    if let Ok(svg) = chart.to_svg() {
        roxmltree::Document::parse(&svg).expect("the chart is well-formed XML");
    }
});

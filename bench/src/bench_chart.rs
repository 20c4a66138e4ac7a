//! The boot comparison of `make bench` as a chart (`out/bench/bench.svg`):
//! one row per stage 1, a bar from its fastest boot to its slowest and a
//! mark at the median, drawn by [`nixlive_chart`] (the code that draws
//! `nixlive analyze --svg`) from the rows `bench.json` holds.

use nixlive_chart::{Bar, Chart};
use serde_json::Value;

/// The chart of `rows` (bench.json's `rows`: `name`,
/// `stage2_uptime_s.{median,min,max}`); `about` is the subtitle (rounds,
/// accelerator). Errors name the row and the field.
pub fn boot_chart(rows: &Value, about: &str) -> Result<Chart, String> {
    let rows = rows.as_array().ok_or("bench.json: rows is not a list")?;
    let mut bars = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let name = r["name"]
            .as_str()
            .ok_or_else(|| format!("bench.json: row {}: no name", i + 1))?;
        let num = |field: &str| {
            r["stage2_uptime_s"][field]
                .as_f64()
                .ok_or_else(|| format!("bench.json: row {name}: no number stage2_uptime_s.{field}"))
        };
        let (median, min, max) = (num("median")?, num("min")?, num("max")?);
        bars.push(Bar {
            label: name.to_string(),
            from: min,
            to: max,
            mark: Some(median),
            note: format!("{median:.2} s ({min:.2}-{max:.2})"),
        });
    }
    Ok(Chart {
        title: format!("Uptime at which stage 2 began: median (mark), min-max (bar); {about}"),
        axis: "seconds of kernel uptime".into(),
        bars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(name: &str, median: f64, min: f64, max: f64) -> Value {
        json!({"name": name, "stage2_uptime_s": {"median": median, "min": min, "max": max, "samples": []},
               "initrd_bytes": 1})
    }

    #[test]
    fn renders_the_five_rows_in_order() {
        let rows = json!([
            row("kernel-only", 3.70, 3.16, 4.27),
            row("busybox-floor", 5.07, 3.81, 5.88),
            row("debian-live-boot", 14.27, 13.54, 19.31),
            row("dracut-dmsquash-live", 25.05, 22.98, 26.61),
            row("nixlive", 4.80, 4.28, 5.80),
        ]);
        let chart = boot_chart(&rows, "5 boots each, tcg").unwrap();
        assert_eq!(chart.bars.len(), 5);
        assert_eq!(chart.bars[4].mark, Some(4.80));
        assert_eq!(chart.bars[2].note, "14.27 s (13.54-19.31)");
        let svg = chart.to_svg().unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        let y = |label: &str| -> f64 {
            doc.descendants()
                .find(|n| n.has_tag_name("text") && n.text().map(str::trim) == Some(label))
                .and_then(|n| n.attribute("y")?.parse().ok())
                .unwrap_or_else(|| panic!("no label {label:?} in {texts:?}"))
        };
        let ys: Vec<f64> = [
            "kernel-only",
            "busybox-floor",
            "debian-live-boot",
            "dracut-dmsquash-live",
            "nixlive",
        ]
        .iter()
        .map(|l| y(l))
        .collect();
        assert!(
            ys.windows(2).all(|w| w[0] < w[1]),
            "rows out of order: {ys:?}"
        );
        assert!(texts.contains(&"4.80 s (4.28-5.80)"), "{texts:?}");
        // One bar and one median mark per row.
        assert_eq!(
            doc.descendants().filter(|n| n.has_tag_name("rect")).count(),
            1 + 5
        );
    }

    #[test]
    fn a_row_without_its_numbers_is_named() {
        assert_eq!(
            boot_chart(&json!({}), "").unwrap_err(),
            "bench.json: rows is not a list"
        );
        assert_eq!(
            boot_chart(&json!([{"stage2_uptime_s": {}}]), "").unwrap_err(),
            "bench.json: row 1: no name"
        );
        assert_eq!(
            boot_chart(
                &json!([{"name": "nixlive", "stage2_uptime_s": {"median": 1.0, "min": 1.0}}]),
                ""
            )
            .unwrap_err(),
            "bench.json: row nixlive: no number stage2_uptime_s.max"
        );
        assert!(boot_chart(&json!([]), "").unwrap().to_svg().is_err());
    }
}

//! Horizontal bar charts as SVG, one bar a row on a shared axis: the
//! stage-1 timeline that `nixlive analyze --svg` draws (a bar from each
//! step's start to its end, like `systemd-analyze plot`) and the boot
//! comparison `make bench` draws (a bar from the fastest boot to the
//! slowest, a mark at the median).
//!
//! Purpose: one piece of code for both charts, pure (a [`Chart`] in, the
//! SVG text out), so it is tested without files and fuzzed with the
//! timeline parser.
//!
//! Non-goals: no other chart kinds, no raster output, no fonts: the text
//! is left to the SVG viewer, and its width is plotters' estimate.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use thiserror::Error;

/// Widest a chart is drawn, in pixels.
const WIDTH: u32 = 960;
/// Height of one row.
const ROW: u32 = 24;
/// Room above the rows (the title) and below them (the axis).
const TOP: u32 = 50;
const BOTTOM: u32 = 60;
/// Labels longer than this many characters are cut (with `…`).
const LABEL_CHARS: usize = 48;
/// The text size of labels and notes; a character is about 0.55 of it wide.
const TEXT: u32 = 13;

/// One row: a bar from `from` to `to`, an optional mark (a median) and a
/// note written after the bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub from: f64,
    pub to: f64,
    pub mark: Option<f64>,
    pub note: String,
}

/// The rows in order, top to bottom, on one axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    /// The axis' description (`ms of kernel uptime`).
    pub axis: String,
    pub bars: Vec<Bar>,
}

#[derive(Debug, Error)]
pub enum ChartError {
    #[error("the chart {0:?} has no bars")]
    Empty(String),
    #[error("bar {label:?}: {why}")]
    Bar { label: String, why: String },
    #[error("drawing the chart {title:?}")]
    Draw {
        title: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Whether XML 1.0 can hold `c` in text (its `Char` production, less the
/// line ends a label must not have): not a control character, not
/// U+FFFE or U+FFFF (Rust's `char` has no surrogates).
fn xml_text_char(c: char) -> bool {
    !c.is_control() && c != '\u{fffe}' && c != '\u{ffff}'
}

/// `s` as one line of at most `max` characters, those XML cannot hold
/// as `?`.
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if xml_text_char(c) { c } else { '?' })
        .collect();
    if s.chars().nth(max).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

/// A number for the axis: no fraction when it has none worth showing.
fn axis_number(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:.2e}")
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Chart {
    /// Checks every bar: finite ends, `from <= to`, a mark within them.
    fn check(&self) -> Result<(f64, f64), ChartError> {
        if self.bars.is_empty() {
            return Err(ChartError::Empty(self.title.clone()));
        }
        let (mut lo, mut hi) = (0f64, 0f64);
        for b in &self.bars {
            let bad = |why: &str| ChartError::Bar {
                label: b.label.clone(),
                why: why.to_string(),
            };
            if !b.from.is_finite() || !b.to.is_finite() {
                return Err(bad("its ends must be finite numbers"));
            }
            if b.from > b.to {
                return Err(bad("it starts after it ends"));
            }
            if let Some(m) = b.mark
                && !(b.from..=b.to).contains(&m)
            {
                return Err(bad("its mark lies outside it"));
            }
            lo = lo.min(b.from);
            hi = hi.max(b.to);
        }
        // Room after the longest bar for its note; an axis of some width.
        let span = (hi - lo).max(1.0);
        let hi = hi + span * 0.25;
        if !hi.is_finite() || !lo.is_finite() {
            return Err(ChartError::Bar {
                label: self.bars[0].label.clone(),
                why: "the axis does not fit a floating-point number".into(),
            });
        }
        Ok((lo, hi))
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, ChartError> {
        let (lo, hi) = self.check()?;
        let draw = |e: Box<dyn std::error::Error + Send + Sync>| ChartError::Draw {
            title: self.title.clone(),
            source: e,
        };
        let labels: Vec<String> = self
            .bars
            .iter()
            .map(|b| clean(&b.label, LABEL_CHARS))
            .collect();
        let n = self.bars.len() as u32;
        let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
        let label_width = (longest * TEXT * 6 / 10 + 16).clamp(60, WIDTH / 2);
        let height = TOP + BOTTOM + n * ROW;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| draw(e.into()))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(clean(&self.title, 120), ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(label_width)
                // A discrete range holds its end too: n rows are 0..n - 1.
                .build_cartesian_2d(lo..hi, (0..n - 1).into_segmented())
                .map_err(|e| draw(e.into()))?;
            // Row 0 is drawn at the top: the segment n - 1.
            let row = |i: u32| n - 1 - i;
            // The rows' labels are drawn below, beside each bar: plotters
            // gives a one-row axis no labels (and `y_labels(0)` overflows
            // in its key-point search), so its own are left empty.
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(n as usize)
                .y_label_formatter(&|_| String::new())
                .x_label_formatter(&|v| axis_number(*v))
                .x_desc(clean(&self.axis, 120))
                .label_style(("sans-serif", TEXT))
                .draw()
                .map_err(|e| draw(e.into()))?;
            let bar_color = RGBColor(0x4c, 0x78, 0xa8);
            chart
                .draw_series(self.bars.iter().zip(0..).map(|(b, i)| {
                    let mut r = Rectangle::new(
                        [
                            (b.from, SegmentValue::Exact(row(i))),
                            (b.to, SegmentValue::Exact(row(i) + 1)),
                        ],
                        bar_color.filled(),
                    );
                    r.set_margin(4, 4, 0, 0);
                    r
                }))
                .map_err(|e| draw(e.into()))?;
            chart
                .draw_series(self.bars.iter().zip(0..).filter_map(|(b, i)| {
                    let m = b.mark?;
                    Some(PathElement::new(
                        vec![
                            (m, SegmentValue::Exact(row(i))),
                            (m, SegmentValue::Exact(row(i) + 1)),
                        ],
                        BLACK.stroke_width(3),
                    ))
                }))
                .map_err(|e| draw(e.into()))?;
            let label_style = ("sans-serif", TEXT)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center));
            chart
                .draw_series(labels.iter().zip(0..).map(|(l, i)| {
                    EmptyElement::at((lo, SegmentValue::CenterOf(row(i))))
                        + Text::new(l.clone(), (-8, 0), label_style.clone())
                }))
                .map_err(|e| draw(e.into()))?;
            let note_style = ("sans-serif", TEXT)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series(self.bars.iter().zip(0..).map(|(b, i)| {
                    EmptyElement::at((b.to, SegmentValue::CenterOf(row(i))))
                        + Text::new(clean(&b.note, 80), (6, 0), note_style.clone())
                }))
                .map_err(|e| draw(e.into()))?;
            root.present().map_err(|e| draw(e.into()))?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, from: f64, to: f64) -> Bar {
        Bar {
            label: label.into(),
            from,
            to,
            mark: None,
            note: format!("{} ms", to - from),
        }
    }

    /// The texts of the SVG's `<text>` elements, in document order.
    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or_default().trim().to_string())
            .collect()
    }

    #[test]
    fn one_row_per_bar_with_labels_and_notes() {
        let c = Chart {
            title: "stage 1".into(),
            axis: "ms of kernel uptime".into(),
            bars: vec![
                bar("mount-basics", 900.0, 910.0),
                bar("load-modules", 910.0, 2100.0),
            ],
        };
        let svg = c.to_svg().unwrap();
        let t = texts(&svg);
        for want in [
            "stage 1",
            "ms of kernel uptime",
            "mount-basics",
            "load-modules",
            "10 ms",
            "1190 ms",
        ] {
            assert!(t.iter().any(|x| x == want), "no text {want:?} in {t:?}");
        }
        let doc = roxmltree::Document::parse(&svg).unwrap();
        // The background and one rectangle per bar.
        let rects = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
        assert_eq!(rects, 1 + c.bars.len(), "{rects} rects");
        // The first bar is drawn above the second.
        let y_of = |label: &str| -> f64 {
            doc.descendants()
                .find(|n| n.has_tag_name("text") && n.text().map(str::trim) == Some(label))
                .and_then(|n| n.attribute("y"))
                .and_then(|y| y.parse().ok())
                .unwrap()
        };
        assert!(y_of("mount-basics") < y_of("load-modules"));
    }

    #[test]
    fn marks_are_drawn_and_odd_text_is_escaped() {
        let c = Chart {
            title: "boot <&> \"quoted\"".into(),
            axis: "s".into(),
            bars: vec![Bar {
                label: "a\u{1}b<c>&".into(),
                from: 3.1,
                to: 5.9,
                mark: Some(4.8),
                note: "4.80 s (3.10-5.90)".into(),
            }],
        };
        let svg = c.to_svg().unwrap();
        let t = texts(&svg);
        assert!(t.contains(&"a?b<c>&".to_string()), "{t:?}");
        assert!(t.contains(&"boot <&> \"quoted\"".to_string()), "{t:?}");
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert!(
            doc.descendants()
                .any(|n| n.has_tag_name("polyline") || n.has_tag_name("path"))
        );
    }

    /// The `timeline` fuzz target's crash: a step named with U+FFFF, which
    /// XML cannot hold, made an SVG no XML parser reads.
    #[test]
    fn characters_xml_cannot_hold_are_replaced() {
        let c = Chart {
            title: "t\u{fffe}".into(),
            axis: "a".into(),
            bars: vec![Bar {
                note: "\u{ffff}".into(),
                ..bar("\u{ffff}a\u{15e9}:\n", 0.0, 5.0)
            }],
        };
        let t = texts(&c.to_svg().unwrap());
        assert!(t.contains(&"?a\u{15e9}:?".to_string()), "{t:?}");
        assert!(t.contains(&"t?".to_string()), "{t:?}");
        assert_eq!(
            clean("\u{10ffff}\u{e000}\u{fffd}", 9),
            "\u{10ffff}\u{e000}\u{fffd}"
        );
    }

    #[test]
    fn long_labels_are_cut() {
        let long = "x".repeat(200);
        assert_eq!(clean(&long, 10), format!("{}…", "x".repeat(9)));
        assert_eq!(clean("short", 10), "short");
        let c = Chart {
            title: "t".into(),
            axis: "a".into(),
            bars: vec![bar(&long, 0.0, 0.0)],
        };
        let t = texts(&c.to_svg().unwrap());
        assert!(
            t.iter()
                .any(|x| x.ends_with('…') && x.chars().count() == LABEL_CHARS)
        );
    }

    #[test]
    fn extreme_values_still_draw() {
        let c = Chart {
            title: "t".into(),
            axis: "a".into(),
            bars: vec![bar("big", 0.0, u64::MAX as f64), bar("zero", 0.0, 0.0)],
        };
        texts(&c.to_svg().unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_draw() {
        let empty = Chart {
            title: "t".into(),
            axis: "a".into(),
            bars: vec![],
        };
        assert_eq!(
            empty.to_svg().unwrap_err().to_string(),
            "the chart \"t\" has no bars"
        );
        for (b, why) in [
            (bar("x", 2.0, 1.0), "it starts after it ends"),
            (bar("x", f64::NAN, 1.0), "its ends must be finite numbers"),
            (
                bar("x", 0.0, f64::INFINITY),
                "its ends must be finite numbers",
            ),
            (
                Bar {
                    mark: Some(9.0),
                    ..bar("x", 0.0, 1.0)
                },
                "its mark lies outside it",
            ),
            (
                bar("x", 0.0, f64::MAX),
                "the axis does not fit a floating-point number",
            ),
        ] {
            let c = Chart {
                title: "t".into(),
                axis: "a".into(),
                bars: vec![b],
            };
            assert_eq!(
                c.to_svg().unwrap_err().to_string(),
                format!("bar \"x\": {why}")
            );
        }
    }

    #[test]
    fn axis_numbers() {
        assert_eq!(axis_number(1500.0), "1500");
        assert_eq!(axis_number(2.5), "2.5");
        assert_eq!(axis_number(0.376), "0.38");
        assert_eq!(axis_number(2e7), "2.00e7");
    }
}

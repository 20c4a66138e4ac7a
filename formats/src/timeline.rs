//! The stage-1 boot timeline init writes to [`PATH`]: each phase with its
//! start (kernel uptime) and duration, in milliseconds, as JSON.

use std::fmt::Write;

pub const PATH: &str = "/run/nixlive/stage1.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: String,
    pub start_ms: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub phases: Vec<Phase>,
}

impl Timeline {
    /// `{"version":1,"phases":[{"name":"...","start_ms":N,"duration_ms":N},...]}`.
    /// Written by hand: init has no JSON library and phase names are ours
    /// (still escaped, so the output is always valid JSON).
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"version\":1,\"phases\":[");
        for (i, p) in self.phases.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"name\":\"");
            for c in p.name.chars() {
                match c {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(s, "\\u{:04x}", c as u32);
                    }
                    c => s.push(c),
                }
            }
            let _ = write!(
                s,
                "\",\"start_ms\":{},\"duration_ms\":{}}}",
                p.start_ms, p.duration_ms
            );
        }
        s.push_str("]}\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let t = Timeline {
            phases: vec![
                Phase {
                    name: "a\"b".into(),
                    start_ms: 1,
                    duration_ms: 2,
                },
                Phase {
                    name: "c".into(),
                    start_ms: 3,
                    duration_ms: 4,
                },
            ],
        };
        assert_eq!(
            t.to_json(),
            "{\"version\":1,\"phases\":[{\"name\":\"a\\\"b\",\"start_ms\":1,\"duration_ms\":2},{\"name\":\"c\",\"start_ms\":3,\"duration_ms\":4}]}\n"
        );
    }
}

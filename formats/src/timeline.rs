//! The stage-1 boot timeline init writes to [`PATH`]: each phase with its
//! start (kernel uptime) and duration, in milliseconds, as JSON. Written by
//! [`Timeline::to_json`]; read back strictly by [`Timeline::parse`] (the
//! host reads it out of the guest report, which is untrusted input).

use std::fmt::Write;

use thiserror::Error;

pub const PATH: &str = crate::paths::STAGE1_TIMELINE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: String,
    pub start_ms: u64,
    pub duration_ms: u64,
}

/// How one image was checked (`dm-verity`, `sha256 before mounting`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCheck {
    pub name: String,
    pub check: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub phases: Vec<Phase>,
    /// Booting over HTTP: the interface, address, lease and server, as
    /// `"net":{"interface":"eth0",...}` (written only when not empty).
    pub net: Vec<(String, String)>,
    /// Per image, how it was checked (absent in older timelines).
    pub images: Vec<ImageCheck>,
}

/// `s` as a JSON string's contents.
fn escape_into(s: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
}

/// `v` as a JSON string, quotes included.
fn json_str(out: &mut String, v: &str) {
    out.push('"');
    escape_into(out, v);
    out.push('"');
}

impl Timeline {
    /// `{"version":1,"phases":[{"name":"...","start_ms":N,"duration_ms":N},...],
    /// "images":[{"name":"...","check":"..."},...]}` (`images` only when known).
    /// Written by hand: init has no JSON library and phase names are ours
    /// (still escaped, so the output is always valid JSON).
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"version\":1,\"phases\":[");
        for (i, p) in self.phases.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"name\":");
            json_str(&mut s, &p.name);
            let _ = write!(
                s,
                ",\"start_ms\":{},\"duration_ms\":{}}}",
                p.start_ms, p.duration_ms
            );
        }
        s.push(']');
        if !self.net.is_empty() {
            s.push_str(",\"net\":{");
            for (i, (k, v)) in self.net.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                json_str(&mut s, k);
                s.push(':');
                json_str(&mut s, v);
            }
            s.push('}');
        }
        if !self.images.is_empty() {
            s.push_str(",\"images\":[");
            for (i, img) in self.images.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str("{\"name\":\"");
                escape_into(&mut s, &img.name);
                s.push_str("\",\"check\":\"");
                escape_into(&mut s, &img.check);
                s.push_str("\"}");
            }
            s.push(']');
        }
        s.push_str("}\n");
        s
    }

    /// Reads what [`Timeline::to_json`] writes: JSON with exactly the keys
    /// `version` (1) and `phases`, each phase exactly `name`, `start_ms`,
    /// `duration_ms` (in any order, whitespace anywhere between tokens),
    /// numbers as plain non-negative integers.
    pub fn parse(json: &str) -> Result<Timeline, TimelineError> {
        let mut p = Json {
            s: json.as_bytes(),
            at: 0,
        };
        let mut version = None;
        let mut phases = None;
        let mut net = None;
        let mut images = None;
        // Where the version's value is, for the error of an unknown one.
        let mut version_at = 0;
        p.object(|p, key| match key.as_str() {
            "version" => {
                p.ws();
                version_at = p.at;
                once(p, &mut version, Json::number)
            }
            "net" => once(p, &mut net, |p| {
                let mut kv: Vec<(String, String)> = Vec::new();
                p.object(|p, k| {
                    let v = p.string()?;
                    kv.push((k, v));
                    Ok(())
                })?;
                Ok(kv)
            }),
            "phases" => once(p, &mut phases, |p| p.array(Json::phase)),
            "images" => once(p, &mut images, |p| p.array(Json::image)),
            _ => Err(p.err(format!("unknown key {key:?}"))),
        })?;
        p.ws();
        if p.at != p.s.len() {
            return Err(p.err("data after the timeline".into()));
        }
        match (version, phases) {
            (Some(1), Some(phases)) => Ok(Timeline {
                phases,
                net: net.unwrap_or_default(),
                images: images.unwrap_or_default(),
            }),
            (Some(v), Some(_)) => Err(TimelineError {
                at: version_at,
                msg: format!("version {v}, only 1 is known"),
            }),
            _ => Err(p.err("want both version and phases".into())),
        }
    }
}

/// Where and why [`Timeline::parse`] stopped.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("byte {at}: {msg}")]
pub struct TimelineError {
    /// 0-based byte offset into the JSON.
    pub at: usize,
    pub msg: String,
}

impl TimelineError {
    /// Where [`TimelineError::at`] is in `json`: 1-based line and column
    /// (the column in characters), for messages like `stage1.json:3:17`.
    pub fn line_column(&self, json: &str) -> (usize, usize) {
        let before = &json.as_bytes()[..self.at.min(json.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        // Characters, not bytes: count the bytes that start one.
        let column = before[line_start..]
            .iter()
            .filter(|&&b| b & 0xc0 != 0x80)
            .count()
            + 1;
        (line, column)
    }
}

/// Sets `slot` from `read`, refusing a key given twice.
fn once<'a, T>(
    p: &mut Json<'a>,
    slot: &mut Option<T>,
    read: impl FnOnce(&mut Json<'a>) -> Result<T, TimelineError>,
) -> Result<(), TimelineError> {
    if slot.is_some() {
        return Err(p.err("key given twice".into()));
    }
    *slot = Some(read(p)?);
    Ok(())
}

/// A cursor over the JSON text, reading just the shapes a timeline has.
struct Json<'a> {
    s: &'a [u8],
    at: usize,
}

impl Json<'_> {
    fn err(&self, msg: String) -> TimelineError {
        TimelineError { at: self.at, msg }
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Skips whitespace and takes `c`.
    fn expect(&mut self, c: u8) -> Result<(), TimelineError> {
        self.ws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err(format!("want {:?}", char::from(c))))
        }
    }

    /// Skips whitespace and takes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let here = self.s.get(self.at) == Some(&c);
        if here {
            self.at += 1;
        }
        here
    }

    /// `{ "key": value, ... }`, `field` reading each value.
    fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, String) -> Result<(), TimelineError>,
    ) -> Result<(), TimelineError> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            field(self, key)?;
            if self.eat(b'}') {
                return Ok(());
            }
            self.expect(b',')?;
        }
    }

    /// `[ item, ... ]`.
    fn array<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, TimelineError>,
    ) -> Result<Vec<T>, TimelineError> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        if self.eat(b']') {
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if self.eat(b']') {
                return Ok(out);
            }
            self.expect(b',')?;
        }
    }

    fn phase(&mut self) -> Result<Phase, TimelineError> {
        let (mut name, mut start_ms, mut duration_ms) = (None, None, None);
        self.object(|p, key| match key.as_str() {
            "name" => once(p, &mut name, Json::string),
            "start_ms" => once(p, &mut start_ms, Json::number),
            "duration_ms" => once(p, &mut duration_ms, Json::number),
            _ => Err(p.err(format!("unknown phase key {key:?}"))),
        })?;
        match (name, start_ms, duration_ms) {
            (Some(name), Some(start_ms), Some(duration_ms)) => Ok(Phase {
                name,
                start_ms,
                duration_ms,
            }),
            _ => Err(self.err("a phase wants name, start_ms and duration_ms".into())),
        }
    }

    fn image(&mut self) -> Result<ImageCheck, TimelineError> {
        let (mut name, mut check) = (None, None);
        self.object(|p, key| match key.as_str() {
            "name" => once(p, &mut name, Json::string),
            "check" => once(p, &mut check, Json::string),
            _ => Err(p.err(format!("unknown image key {key:?}"))),
        })?;
        match (name, check) {
            (Some(name), Some(check)) => Ok(ImageCheck { name, check }),
            _ => Err(self.err("an image wants name and check".into())),
        }
    }

    /// A non-negative integer without leading zeros, sign, fraction or exponent.
    fn number(&mut self) -> Result<u64, TimelineError> {
        self.ws();
        let start = self.at;
        while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = &self.s[start..self.at];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            self.at = start;
            return Err(self.err("want a non-negative integer".into()));
        }
        // ASCII digits only, so this is UTF-8.
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| TimelineError {
                at: start,
                msg: "number too large".into(),
            })
    }

    /// A string with JSON's escapes; raw control characters are refused.
    fn string(&mut self) -> Result<String, TimelineError> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.at..];
            let Some(end) = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            else {
                return Err(self.err("unterminated string".into()));
            };
            // The input is a &str and the cut is at an ASCII byte.
            out.push_str(std::str::from_utf8(&rest[..end]).unwrap_or_default());
            self.at += end;
            match self.s[self.at] {
                b'"' => {
                    self.at += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.at += 1;
                    out.push(self.escape()?);
                }
                _ => return Err(self.err("control character in a string".into())),
            }
        }
    }

    /// The character after a backslash.
    fn escape(&mut self) -> Result<char, TimelineError> {
        let Some(&c) = self.s.get(self.at) else {
            return Err(self.err("unterminated string".into()));
        };
        self.at += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = if (0xd800..0xdc00).contains(&hi) {
                    if self.s.get(self.at..self.at + 2) != Some(b"\\u") {
                        return Err(self.err("lone surrogate".into()));
                    }
                    self.at += 2;
                    let lo = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&lo) {
                        return Err(self.err("lone surrogate".into()));
                    }
                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or_else(|| self.err("lone surrogate".into()))?
            }
            _ => return Err(self.err(format!("unknown escape \\{}", char::from(c)))),
        })
    }

    fn hex4(&mut self) -> Result<u32, TimelineError> {
        let digits = self
            .s
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("want four hex digits after \\u".into()))?;
        let v = u32::from_str_radix(digits, 16).map_err(|e| self.err(e.to_string()))?;
        self.at += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let t = Timeline {
            net: Vec::new(),
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
            images: Vec::new(),
        };
        assert_eq!(
            t.to_json(),
            "{\"version\":1,\"phases\":[{\"name\":\"a\\\"b\",\"start_ms\":1,\"duration_ms\":2},{\"name\":\"c\",\"start_ms\":3,\"duration_ms\":4}]}\n"
        );
        assert_eq!(Timeline::parse(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn parse_round_trips_odd_names() {
        let t = Timeline {
            net: Vec::new(),
            phases: vec![Phase {
                name: "q\"\\\u{1}\n\té€😀".into(),
                start_ms: u64::MAX,
                duration_ms: 0,
            }],
            images: vec![ImageCheck {
                name: "nix-store.\"squashfs".into(),
                check: "dm-verity".into(),
            }],
        };
        assert_eq!(Timeline::parse(&t.to_json()).unwrap(), t);
        assert_eq!(
            Timeline::parse(&Timeline::default().to_json()).unwrap(),
            Timeline::default()
        );
    }

    #[test]
    fn parse_takes_whitespace_order_and_escapes() {
        let t = Timeline::parse(
            " { \"phases\" : [ { \"duration_ms\" : 30 , \"start_ms\":1500,\"name\":\"mod\\u0075les\\/\\ud83d\\ude00\"} ] ,\n \"version\":1 } \r\n",
        )
        .unwrap();
        assert_eq!(
            t.phases,
            [Phase {
                name: "modules/😀".into(),
                start_ms: 1500,
                duration_ms: 30
            }]
        );
    }

    #[test]
    fn parse_is_strict() {
        for bad in [
            "",
            "{}",
            "{\"version\":1}",
            "{\"version\":2,\"phases\":[]}",
            "{\"version\":1,\"phases\":[]} x",
            "{\"version\":1,\"version\":1,\"phases\":[]}",
            "{\"version\":1,\"phases\":[],\"x\":1}",
            "{\"version\":1,\"phases\":[],\"images\":[{\"name\":\"a\"}]}",
            "{\"version\":1,\"phases\":[],\"images\":[{\"name\":\"a\",\"check\":\"b\",\"x\":1}]}",
            "{\"version\":01,\"phases\":[]}",
            "{\"version\":-1,\"phases\":[]}",
            "{\"version\":1.0,\"phases\":[]}",
            "{\"version\":1,\"phases\":[{\"name\":\"a\",\"start_ms\":1}]}",
            "{\"version\":1,\"phases\":[{\"name\":\"a\",\"start_ms\":1,\"duration_ms\":99999999999999999999}]}",
            "{\"version\":1,\"phases\":[{\"name\":\"a\tb\",\"start_ms\":1,\"duration_ms\":1}]}",
            "{\"version\":1,\"phases\":[{\"name\":\"\\ud800\",\"start_ms\":1,\"duration_ms\":1}]}",
            "{\"version\":1,\"phases\":[{\"name\":\"\\x\",\"start_ms\":1,\"duration_ms\":1}]}",
            "{\"version\":1,\"phases\":[,]}",
            "{\"version\":1,\"phases\":[{\"name\":\"a",
            "{\"version\":1,\"phases\":[{\"name\":\"\\u12",
        ] {
            assert!(Timeline::parse(bad).is_err(), "{bad}");
        }
        let e = Timeline::parse("{\"version\":1,\"phases\":[],\"x\":1}").unwrap_err();
        assert_eq!(e.to_string(), "byte 29: unknown key \"x\"");
    }

    #[test]
    fn net_round_trips() {
        let t = Timeline {
            phases: Vec::new(),
            net: vec![
                ("interface".into(), "eth0".into()),
                ("address".into(), "10.0.2.15/24".into()),
            ],
            images: vec![ImageCheck {
                name: "nix-store.squashfs".into(),
                check: "sha256 while fetching, then dm-verity".into(),
            }],
        };
        let j = t.to_json();
        assert_eq!(
            j,
            "{\"version\":1,\"phases\":[],\"net\":{\"interface\":\"eth0\",\"address\":\"10.0.2.15/24\"},\
             \"images\":[{\"name\":\"nix-store.squashfs\",\"check\":\"sha256 while fetching, then dm-verity\"}]}\n"
        );
        assert_eq!(Timeline::parse(&j), Ok(t));
        assert!(Timeline::parse("{\"version\":1,\"phases\":[],\"net\":{\"a\":1}}").is_err());
    }

    #[test]
    fn errors_have_a_line_and_column() {
        let json = "{\"version\":1,\n \"phases\":[\n  {\"name\":\"é\",\"start_ms\":1,\"x\":2}]}";
        let e = Timeline::parse(json).unwrap_err();
        assert_eq!(e.msg, "unknown phase key \"x\"");
        assert_eq!(e.line_column(json), (3, 32), "at the value of the key");
        assert_eq!(
            TimelineError {
                at: 0,
                msg: String::new()
            }
            .line_column(""),
            (1, 1)
        );
        let json = "{\"phases\":[],\n  \"version\": 2}";
        let e = Timeline::parse(json).unwrap_err();
        assert_eq!(e.msg, "version 2, only 1 is known");
        assert_eq!(e.line_column(json), (2, 14), "at the version's value");
        // An offset past the end is taken as the end.
        assert_eq!(
            TimelineError {
                at: 99,
                msg: String::new()
            }
            .line_column("a\nbc"),
            (2, 3)
        );
    }
}

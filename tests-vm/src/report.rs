//! Parsing the guest report (docs/contracts.md, "Guest report") out of a
//! serial log. Pure: a `&str` in, a [`Report`] or a message naming the bad
//! line out.

use std::collections::BTreeMap;

pub const BEGIN: &str = "NIXLIVE-REPORT-BEGIN";
pub const END: &str = "NIXLIVE-REPORT-END";

/// Text that means the boot has failed: waiting longer is pointless.
pub const FATAL_MARKERS: &[&str] = &[
    "NIXLIVE-ERROR",
    "Kernel panic - not syncing",
    "*** nixlive: the live system could not start ***",
];

/// One line of the guest's `/proc/self/mountinfo`, with the kernel's octal
/// escapes (`\040`) undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: String,
    pub fstype: String,
    pub source: String,
    /// Super-block options, comma-separated as the kernel prints them.
    pub options: String,
}

impl Mount {
    /// The value of `key=value` among the options (`Some("")` for a bare flag).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .split(',')
            .find_map(|o| match o.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if o == key => Some(""),
                _ => None,
            })
    }
}

/// Type, permission bits and owner of a path, as `stat` saw it in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// `regular`, `directory`, `symlink`, `char`, `block`, `fifo`, `socket`.
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub arch: String,
    /// Kernel uptime when stage 2 began.
    pub uptime_ms: u64,
    /// In mountinfo order: a later entry for the same point is mounted on top.
    pub mounts: Vec<Mount>,
    pub postboot_exit: i32,
    pub postboot_out: Vec<String>,
    /// `None`: the guest reported the path missing.
    pub files: BTreeMap<String, Option<FileInfo>>,
    /// `/run/nixlive/stage1.json`, `None` if the guest had none.
    pub stage1: Option<serde_json::Value>,
}

impl Report {
    /// The mount visible at `point` (the last one mounted there).
    pub fn mount(&self, point: &str) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.point == point)
    }

    /// The stage-1 phases as `(name, start_ms, duration_ms)`, in order.
    pub fn stage1_phases(&self) -> Vec<(String, u64, u64)> {
        let Some(phases) = self
            .stage1
            .as_ref()
            .and_then(|v| v.get("phases"))
            .and_then(|p| p.as_array())
        else {
            return Vec::new();
        };
        phases
            .iter()
            .map(|p| {
                (
                    p.get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or("?")
                        .to_string(),
                    p.get("start_ms").and_then(|n| n.as_u64()).unwrap_or(0),
                    p.get("duration_ms").and_then(|n| n.as_u64()).unwrap_or(0),
                )
            })
            .collect()
    }
}

/// Whether a serial line is kernel log output (`[    1.234567] ...`), which
/// may land between report lines and is skipped.
fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim();
    !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Undoes mountinfo's `\ooo` escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Finds the first complete report in `log` and parses it.
pub fn parse(log: &str) -> Result<Report, String> {
    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let begin = lines
        .iter()
        .position(|l| l.trim() == BEGIN)
        .ok_or_else(|| format!("no {BEGIN} line in the serial log"))?;
    let len = lines[begin + 1..]
        .iter()
        .position(|l| l.trim() == END)
        .ok_or_else(|| format!("{BEGIN} without {END}"))?;
    parse_body(&lines[begin + 1..begin + 1 + len])
}

fn parse_body(lines: &[&str]) -> Result<Report, String> {
    let mut arch = None;
    let mut uptime_ms = None;
    let mut mounts = Vec::new();
    let mut postboot_exit = None;
    let mut postboot_out = Vec::new();
    let mut files = BTreeMap::new();
    let mut stage1 = None;
    for line in lines {
        if line.trim().is_empty() || is_kernel_line(line) {
            continue;
        }
        let bad = |why: &str| format!("report line {line:?}: {why}");
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "arch" => arch = Some(rest.trim().to_string()),
            "uptime_ms" => {
                uptime_ms = Some(
                    rest.trim()
                        .parse::<u64>()
                        .map_err(|_| bad("not a number"))?,
                )
            }
            "mount" => {
                let f: Vec<&str> = rest.split(' ').collect();
                let [point, fstype, source, options] = f[..] else {
                    return Err(bad("want: mount POINT FSTYPE SOURCE OPTIONS"));
                };
                mounts.push(Mount {
                    point: unescape(point),
                    fstype: fstype.to_string(),
                    source: unescape(source),
                    options: options.to_string(),
                });
            }
            "postboot" => {
                if let Some(code) = rest.strip_prefix("exit ") {
                    postboot_exit = Some(
                        code.trim()
                            .parse::<i32>()
                            .map_err(|_| bad("exit code is not a number"))?,
                    );
                } else if let Some(out) = rest.strip_prefix("out ") {
                    postboot_out.push(out.to_string());
                } else if rest == "out" {
                    postboot_out.push(String::new());
                } else {
                    return Err(bad("want: postboot exit CODE | postboot out LINE"));
                }
            }
            "file" => {
                let f: Vec<&str> = rest.split(' ').collect();
                match f[..] {
                    [path, "missing"] => {
                        files.insert(path.to_string(), None);
                    }
                    [path, kind, mode, uid, gid] => {
                        let num = |s: &str, radix| {
                            u32::from_str_radix(s, radix).map_err(|_| bad("bad number"))
                        };
                        files.insert(
                            path.to_string(),
                            Some(FileInfo {
                                kind: kind.to_string(),
                                mode: num(mode, 8)?,
                                uid: num(uid, 10)?,
                                gid: num(gid, 10)?,
                            }),
                        );
                    }
                    _ => return Err(bad("want: file PATH TYPE MODE UID GID | file PATH missing")),
                }
            }
            "stage1" => {
                stage1 = Some(if rest.trim() == "missing" {
                    None
                } else {
                    Some(
                        serde_json::from_str(rest)
                            .map_err(|e| bad(&format!("invalid JSON: {e}")))?,
                    )
                });
            }
            _ => return Err(bad("unknown key")),
        }
    }
    let missing = |what: &str| format!("the report has no {what} line");
    Ok(Report {
        arch: arch.ok_or_else(|| missing("arch"))?,
        uptime_ms: uptime_ms.ok_or_else(|| missing("uptime_ms"))?,
        mounts,
        postboot_exit: postboot_exit.ok_or_else(|| missing("postboot exit"))?,
        postboot_out,
        files,
        stage1: stage1.ok_or_else(|| missing("stage1"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
SeaBIOS (version 1.16)\r
[    2.500000] Run /init as init process\r
NIXLIVE-REPORT-BEGIN\r
arch x86_64\r
uptime_ms 2710\r
mount / tmpfs tmpfs rw,mode=755\r
mount /iso iso9660 /dev/sr0 ro,nojoliet,check=s,map=n,blocksize=2048\r
mount /nix/.ro-store squashfs /dev/loop0 ro,errors=continue\r
[    2.800000] random: crng init done\r
mount /nix/store overlay overlay rw,lowerdir=/nix/.ro-store,upperdir=/nix/.rw-store/store,workdir=/nix/.rw-store/work\r
mount /a\\040b tmpfs tmpfs rw\r
postboot exit 0\r
postboot out postboot: created /etc\r
postboot out postboot: created /etc/NIXOS\r
file /etc/NIXOS regular 0644 0 0\r
file /etc/nope missing\r
stage1 {\"version\":1,\"phases\":[{\"name\":\"modules\",\"start_ms\":1500,\"duration_ms\":30}]}\r
NIXLIVE-REPORT-END\r
[    3.000000] reboot: Power down\r
";

    #[test]
    fn parses_the_contract_format() {
        let r = parse(LOG).unwrap();
        assert_eq!(r.arch, "x86_64");
        assert_eq!(r.uptime_ms, 2710);
        assert_eq!(r.mounts.len(), 5);
        let store = r.mount("/nix/store").unwrap();
        assert_eq!(store.fstype, "overlay");
        assert_eq!(store.option("lowerdir"), Some("/nix/.ro-store"));
        assert_eq!(store.option("rw"), Some(""));
        assert_eq!(store.option("nope"), None);
        assert_eq!(r.mount("/a b").unwrap().fstype, "tmpfs");
        assert_eq!(r.postboot_exit, 0);
        assert_eq!(
            r.postboot_out,
            ["postboot: created /etc", "postboot: created /etc/NIXOS"]
        );
        assert_eq!(
            r.files["/etc/NIXOS"],
            Some(FileInfo {
                kind: "regular".into(),
                mode: 0o644,
                uid: 0,
                gid: 0
            })
        );
        assert_eq!(r.files["/etc/nope"], None);
        assert_eq!(r.stage1_phases(), [("modules".to_string(), 1500, 30)]);
    }

    #[test]
    fn stage1_missing() {
        let log = "NIXLIVE-REPORT-BEGIN\narch i686\nuptime_ms 1\npostboot exit 1\npostboot out\nstage1 missing\nNIXLIVE-REPORT-END\n";
        let r = parse(log).unwrap();
        assert_eq!(r.stage1, None);
        assert_eq!(r.postboot_out, [""]);
        assert!(r.stage1_phases().is_empty());
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            parse("nothing")
                .unwrap_err()
                .contains("no NIXLIVE-REPORT-BEGIN")
        );
        assert!(
            parse("NIXLIVE-REPORT-BEGIN\narch x\n")
                .unwrap_err()
                .contains("without")
        );
        let e = parse("NIXLIVE-REPORT-BEGIN\nmount / tmpfs\nNIXLIVE-REPORT-END\n").unwrap_err();
        assert!(e.contains("mount / tmpfs"), "{e}");
        let e = parse("NIXLIVE-REPORT-BEGIN\nbogus 1\nNIXLIVE-REPORT-END\n").unwrap_err();
        assert!(e.contains("unknown key"), "{e}");
        let e = parse("NIXLIVE-REPORT-BEGIN\narch x\nNIXLIVE-REPORT-END\n").unwrap_err();
        assert!(e.contains("uptime_ms"), "{e}");
        let e = parse("NIXLIVE-REPORT-BEGIN\nstage1 {oops\nNIXLIVE-REPORT-END\n").unwrap_err();
        assert!(e.contains("invalid JSON"), "{e}");
    }

    #[test]
    fn kernel_lines() {
        assert!(is_kernel_line("[    2.800000] random: crng init done"));
        assert!(is_kernel_line("[12.5] x"));
        assert!(!is_kernel_line("[x] y"));
        assert!(!is_kernel_line("mount / tmpfs tmpfs rw"));
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/a\\134b"), "/a\\b");
        assert_eq!(unescape("/a\\04"), "/a\\04");
        assert_eq!(unescape("\\"), "\\");
    }
}

//! The guest report (docs/contracts.md, "Guest report"): what the demo's
//! stage 2 prints on the serial console ([`render`]) and the host harness
//! reads back out of the serial log ([`parse`]), with the mountinfo lines
//! it is made from ([`parse_mountinfo`]). Pure: text in, text out.
//!
//! ```text
//! NIXLIVE-REPORT-BEGIN
//! arch x86_64
//! uptime_ms 2710
//! mount /iso iso9660 /dev/sr0 ro,nojoliet,...     (one per mountinfo line)
//! postboot exit 0
//! postboot out postboot: created /etc/NIXOS      (one per output line)
//! file /etc/NIXOS regular 0644 0 0                (or: file PATH missing)
//! password nixos sha512-crypt                     (the scheme only, never the hash)
//! stage1 {"version":1,"phases":[...]}             (or: stage1 missing)
//! NIXLIVE-REPORT-END
//! ```
//!
//! Mount points and sources carry mountinfo's octal escapes (`\040` for a
//! space) on the wire, so each stays one word; a [`Mount`] holds them
//! decoded. Filesystem types and options stay as the kernel prints them.

use std::collections::BTreeMap;
use std::fmt::Write;

use thiserror::Error;

use crate::timeline::{Timeline, TimelineError};

/// The line that starts the report.
pub const BEGIN: &str = "NIXLIVE-REPORT-BEGIN";
/// The line that ends it.
pub const END: &str = "NIXLIVE-REPORT-END";
/// Starts the one line stage 2 prints instead of a report when it fails.
pub const ERROR: &str = "NIXLIVE-ERROR";
/// The banner init prints on the console when the boot fails.
pub const STAGE1_FAILED: &str = "*** nixlive: the live system could not start ***";
/// Init's last line on a failed boot, unless it panics or starts a shell.
pub const STAGE1_REBOOT_PROMPT: &str = "Press Enter to reboot.";

/// The first word of each report line.
pub mod key {
    pub const ARCH: &str = "arch";
    pub const UPTIME_MS: &str = "uptime_ms";
    pub const MOUNT: &str = "mount";
    /// Followed by `exit CODE` or `out LINE`.
    pub const POSTBOOT: &str = "postboot";
    pub const FILE: &str = "file";
    pub const PASSWORD: &str = "password";
    pub const STAGE1: &str = "stage1";
    /// The second word of `postboot exit CODE`.
    pub const EXIT: &str = "exit";
    /// The second word of `postboot out LINE`.
    pub const OUT: &str = "out";
    /// The value of `stage1` and the last word of `file` for what is absent.
    pub const MISSING: &str = "missing";
}

/// One mount, as `/proc/self/mountinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Decoded (`/a b`, not `/a\040b`).
    pub point: String,
    pub fstype: String,
    /// Decoded.
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

    /// `POINT FSTYPE SOURCE OPTIONS`, what follows `mount ` on a report line.
    pub fn to_report(&self) -> String {
        format!(
            "{} {} {} {}",
            escape(&self.point),
            self.fstype,
            escape(&self.source),
            self.options
        )
    }

    /// Reads [`Mount::to_report`]'s four words; `None` for another count.
    pub fn from_report(words: &str) -> Option<Mount> {
        let f: Vec<&str> = words.split(' ').collect();
        let [point, fstype, source, options] = f[..] else {
            return None;
        };
        Some(Mount {
            point: unescape(point),
            fstype: fstype.to_string(),
            source: unescape(source),
            options: options.to_string(),
        })
    }
}

/// A malformed line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("line {line}: malformed: {text:?}")]
pub struct MountinfoError {
    pub line: usize,
    pub text: String,
}

/// Parses `/proc/self/mountinfo`:
/// `ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`.
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, MountinfoError> {
    let mut mounts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || MountinfoError {
            line: n + 1,
            text: line.to_string(),
        };
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-").ok_or_else(bad)?;
        if sep < 6 || fields.len() < sep + 4 {
            return Err(bad());
        }
        mounts.push(Mount {
            point: unescape(fields[4]),
            fstype: fields[sep + 1].to_string(),
            source: unescape(fields[sep + 2]),
            options: fields[sep + 3].to_string(),
        });
    }
    Ok(mounts)
}

/// What the kernel escapes in mount points and sources.
const ESCAPED: &[char] = &[' ', '\t', '\n', '\\'];

/// Escapes as the kernel does in mountinfo: space, tab, newline and
/// backslash as `\ooo`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if ESCAPED.contains(&c) {
            let _ = write!(out, "\\{:03o}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Undoes `\ooo` escapes (any byte); other backslashes stay as they are.
pub fn unescape(s: &str) -> String {
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

/// Milliseconds from the first field of `/proc/uptime` (`"12.34 5.67\n"`).
pub fn parse_uptime_ms(text: &str) -> Option<u64> {
    let secs = text.split_whitespace().next()?;
    let (whole, frac) = secs.split_once('.').unwrap_or((secs, ""));
    let whole: u64 = whole.parse().ok()?;
    let mut ms = 0u64;
    for (i, c) in frac.chars().take(3).enumerate() {
        ms += u64::from(c.to_digit(10)?) * 10u64.pow(2 - i as u32);
    }
    whole.checked_mul(1000)?.checked_add(ms)
}

/// Type, permission bits and owner of a path, as `stat` saw it in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// `regular`, `directory`, `symlink`, `char`, `block`, `fifo`, `socket`.
    pub kind: String,
    /// Permission bits (the report keeps `mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// How postboot ended: its exit code (128 + signal when killed) and output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postboot {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

/// What stage 2 reports, as it gathered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub arch: String,
    pub uptime_ms: u64,
    pub mounts: Vec<Mount>,
    pub postboot: Postboot,
    /// In the order to report them; `None`: the path is missing.
    pub files: Vec<(String, Option<FileInfo>)>,
    /// `(user, scheme)` per `/etc/shadow` line, the scheme as
    /// [`password_scheme`] names it.
    pub passwords: Vec<(String, String)>,
    /// The content of `/run/nixlive/stage1.json`, `None` if absent.
    pub stage1: Option<String>,
}

/// The whole report, [`BEGIN`] to [`END`], each line ending in `\n`.
pub fn render(i: &Inputs) -> String {
    use key::*;
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(s, "{ARCH} {}", one_line(&i.arch));
    let _ = writeln!(s, "{UPTIME_MS} {}", i.uptime_ms);
    for m in &i.mounts {
        let _ = writeln!(s, "{MOUNT} {}", m.to_report());
    }
    let _ = writeln!(s, "{POSTBOOT} {EXIT} {}", i.postboot.exit);
    for line in i.postboot.stdout.lines().chain(i.postboot.stderr.lines()) {
        let _ = writeln!(s, "{POSTBOOT} {OUT} {}", one_line(line));
    }
    for (path, info) in &i.files {
        let _ = match info {
            None => writeln!(s, "{FILE} {path} {MISSING}"),
            Some(f) => writeln!(
                s,
                "{FILE} {path} {} {:04o} {} {}",
                f.kind,
                f.mode & 0o7777,
                f.uid,
                f.gid
            ),
        };
    }
    for (user, scheme) in &i.passwords {
        let _ = writeln!(s, "{PASSWORD} {} {}", one_word(user), one_word(scheme));
    }
    let _ = match &i.stage1 {
        Some(json) => writeln!(s, "{STAGE1} {}", one_line(json).trim()),
        None => writeln!(s, "{STAGE1} {MISSING}"),
    };
    let _ = writeln!(s, "{END}");
    s
}

/// The crypt(3) scheme of a shadow password field, by name: what a report
/// or a log may show instead of the hash.
pub fn password_scheme(field: &str) -> &'static str {
    match field {
        "" => "empty",
        f if f.starts_with(['!', '*']) => "locked",
        f if f.starts_with("$6$") => "sha512-crypt",
        f if f.starts_with("$5$") => "sha256-crypt",
        f if f.starts_with("$y$") => "yescrypt",
        f if f.starts_with("$gy$") => "gost-yescrypt",
        f if f.starts_with("$7$") => "scrypt",
        f if f.starts_with("$2b$") || f.starts_with("$2a$") || f.starts_with("$2y$") => "bcrypt",
        f if f.starts_with("$1$") => "md5-crypt",
        _ => "unknown",
    }
}

/// The `(user, scheme)` pairs of a shadow file's text, in its order.
pub fn password_schemes(shadow: &str) -> Vec<(String, String)> {
    shadow
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let user = f.next().filter(|u| !u.is_empty())?;
            let field = f.next()?;
            Some((user.to_string(), password_scheme(field).to_string()))
        })
        .collect()
}

/// The failure line: `NIXLIVE-ERROR <message>` on one line.
pub fn render_error(message: &str) -> String {
    format!("{ERROR} {}\n", one_line(message))
}

/// Newlines and other control characters become spaces, so a value can
/// never start a line of its own (JSON whitespace is insignificant).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One word: control characters and spaces become `_`.
fn one_word(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() || c == ' ' { '_' } else { c })
        .collect()
}

/// The report as the host reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// User to password scheme, from `/etc/shadow`.
    pub passwords: BTreeMap<String, String>,
    /// `/run/nixlive/stage1.json`, `None` if the guest had none.
    pub stage1: Option<Timeline>,
}

impl Report {
    /// The mount visible at `point` (the last one mounted there).
    pub fn mount(&self, point: &str) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.point == point)
    }

    /// The stage-1 phases as `(name, start_ms, duration_ms)`, in order.
    pub fn stage1_phases(&self) -> Vec<(String, u64, u64)> {
        self.stage1
            .iter()
            .flat_map(|t| &t.phases)
            .map(|p| (p.name.clone(), p.start_ms, p.duration_ms))
            .collect()
    }
}

/// Why a serial log holds no readable report.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("no {BEGIN} line in the serial log")]
    NoBegin,
    #[error("{BEGIN} without {END}")]
    NoEnd,
    #[error("report line {line:?}: {why}")]
    Line { line: String, why: String },
    #[error("the report has no {0} line")]
    Missing(&'static str),
}

/// Whether a serial line is kernel log output (`[    1.234567] ...`), which
/// may land between report lines and is skipped.
pub fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim();
    !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Finds the first complete report in `log` (a serial log: `\r\n` line
/// ends, kernel lines in between) and parses it.
pub fn parse(log: &str) -> Result<Report, ReportError> {
    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let begin = lines
        .iter()
        .position(|l| l.trim() == BEGIN)
        .ok_or(ReportError::NoBegin)?;
    let len = lines[begin + 1..]
        .iter()
        .position(|l| l.trim() == END)
        .ok_or(ReportError::NoEnd)?;
    parse_body(&lines[begin + 1..begin + 1 + len])
}

fn parse_body(lines: &[&str]) -> Result<Report, ReportError> {
    let mut arch = None;
    let mut uptime_ms = None;
    let mut mounts = Vec::new();
    let mut postboot_exit = None;
    let mut postboot_out = Vec::new();
    let mut files = BTreeMap::new();
    let mut stage1 = None;
    let mut passwords = BTreeMap::new();
    for line in lines {
        if line.trim().is_empty() || is_kernel_line(line) {
            continue;
        }
        let bad = |why: &str| ReportError::Line {
            line: line.to_string(),
            why: why.to_string(),
        };
        let (k, rest) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            key::ARCH => arch = Some(rest.trim().to_string()),
            key::UPTIME_MS => {
                uptime_ms = Some(
                    rest.trim()
                        .parse::<u64>()
                        .map_err(|_| bad("not a number"))?,
                )
            }
            key::MOUNT => mounts.push(
                Mount::from_report(rest)
                    .ok_or_else(|| bad("want: mount POINT FSTYPE SOURCE OPTIONS"))?,
            ),
            key::POSTBOOT => match rest.split_once(' ').unwrap_or((rest, "")) {
                (key::EXIT, code) => {
                    postboot_exit = Some(
                        code.trim()
                            .parse::<i32>()
                            .map_err(|_| bad("exit code is not a number"))?,
                    )
                }
                (key::OUT, out) => postboot_out.push(out.to_string()),
                _ => return Err(bad("want: postboot exit CODE | postboot out LINE")),
            },
            key::FILE => {
                let (path, info) = parse_file(rest)
                    .ok_or_else(|| bad("want: file PATH TYPE MODE UID GID | file PATH missing"))?;
                files.insert(path, info);
            }
            key::PASSWORD => {
                let (user, scheme) = rest
                    .split_once(' ')
                    .ok_or_else(|| bad("want: password USER SCHEME"))?;
                passwords.insert(user.to_string(), scheme.to_string());
            }
            key::STAGE1 => {
                stage1 = Some(if rest.trim() == key::MISSING {
                    None
                } else {
                    Some(
                        Timeline::parse(rest)
                            .map_err(|e: TimelineError| bad(&format!("invalid JSON: {e}")))?,
                    )
                });
            }
            _ => return Err(bad("unknown key")),
        }
    }
    Ok(Report {
        arch: arch.ok_or(ReportError::Missing(key::ARCH))?,
        uptime_ms: uptime_ms.ok_or(ReportError::Missing(key::UPTIME_MS))?,
        mounts,
        postboot_exit: postboot_exit.ok_or(ReportError::Missing("postboot exit"))?,
        postboot_out,
        files,
        passwords,
        stage1: stage1.ok_or(ReportError::Missing(key::STAGE1))?,
    })
}

/// `PATH TYPE MODE UID GID` (mode in octal) or `PATH missing`.
fn parse_file(words: &str) -> Option<(String, Option<FileInfo>)> {
    let f: Vec<&str> = words.split(' ').collect();
    match f[..] {
        [path, key::MISSING] => Some((path.to_string(), None)),
        [path, kind, mode, uid, gid] => Some((
            path.to_string(),
            Some(FileInfo {
                kind: kind.to_string(),
                mode: u32::from_str_radix(mode, 8).ok()?,
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
            }),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Phase;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - tmpfs tmpfs rw,mode=755
23 22 11:0 / /iso ro,relatime shared:1 - iso9660 /dev/sr0 ro,nojoliet,check=s,map=n,blocksize=2048
24 22 7:0 / /nix/.ro-store ro,relatime - squashfs /dev/loop0 ro,errors=continue
25 22 0:22 / /nix/store rw,relatime - overlay overlay rw,lowerdir=/nix/.ro-store,upperdir=/nix/.rw-store/store,workdir=/nix/.rw-store/work
26 22 0:5 / /my\\040dir rw - devtmpfs devtmpfs rw,size=4k
";

    #[test]
    fn mountinfo_fields() {
        let m = parse_mountinfo(MOUNTINFO).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[1],
            Mount {
                point: "/iso".into(),
                fstype: "iso9660".into(),
                source: "/dev/sr0".into(),
                options: "ro,nojoliet,check=s,map=n,blocksize=2048".into(),
            }
        );
        assert_eq!(m[3].fstype, "overlay");
        assert_eq!(m[3].option("lowerdir"), Some("/nix/.ro-store"));
        assert_eq!(m[3].option("rw"), Some(""));
        assert_eq!(m[3].option("nope"), None);
        assert_eq!(m[4].point, "/my dir");
        assert_eq!(m[4].to_report(), "/my\\040dir devtmpfs devtmpfs rw,size=4k");
    }

    #[test]
    fn mountinfo_malformed() {
        let e = parse_mountinfo("\n22 1 0:21 / / rw\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: malformed: \"22 1 0:21 / / rw\"");
        assert!(parse_mountinfo("1 2 - a b\n").is_err());
    }

    #[test]
    fn escapes_as_the_kernel() {
        assert_eq!(escape("/a b\tc\nd\\e"), "/a\\040b\\011c\\012d\\134e");
        for s in ["/a b\tc\nd\\e", "/plain", "/ü\\040"] {
            assert_eq!(unescape(&escape(s)), s);
        }
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/a\\134b"), "/a\\b");
        assert_eq!(unescape("/a\\04"), "/a\\04");
        assert_eq!(unescape("/a\\400"), "/a\\400");
        assert_eq!(unescape("\\"), "\\");
    }

    #[test]
    fn uptime() {
        assert_eq!(parse_uptime_ms("2.53 1.00\n"), Some(2530));
        assert_eq!(parse_uptime_ms("12.3 0"), Some(12300));
        assert_eq!(parse_uptime_ms("7 0"), Some(7000));
        assert_eq!(parse_uptime_ms("1.2345 0"), Some(1234));
        assert_eq!(parse_uptime_ms("x"), None);
        assert_eq!(parse_uptime_ms(""), None);
    }

    fn inputs() -> Inputs {
        Inputs {
            arch: "x86_64".into(),
            uptime_ms: 2710,
            mounts: parse_mountinfo(MOUNTINFO).unwrap(),
            postboot: Postboot {
                exit: 0,
                stdout: "postboot: created /etc\npostboot: created /etc/NIXOS\n".into(),
                stderr: String::new(),
            },
            files: vec![
                (
                    "/etc/NIXOS".into(),
                    Some(FileInfo {
                        kind: "regular".into(),
                        mode: 0o100644,
                        uid: 0,
                        gid: 0,
                    }),
                ),
                ("/etc/nope".into(), None),
            ],
            passwords: password_schemes("root:!:1::::::\nnixos:$6$rounds=5000$s$h:1::::::\n"),
            stage1: Some(
                "{\"version\":1,\n\"phases\":[{\"name\":\"modules\",\"start_ms\":1500,\"duration_ms\":30}]}\n"
                    .into(),
            ),
        }
    }

    #[test]
    fn renders_contract_format() {
        let mut i = inputs();
        i.mounts.truncate(2);
        assert_eq!(
            render(&i),
            "NIXLIVE-REPORT-BEGIN
arch x86_64
uptime_ms 2710
mount / tmpfs tmpfs rw,mode=755
mount /iso iso9660 /dev/sr0 ro,nojoliet,check=s,map=n,blocksize=2048
postboot exit 0
postboot out postboot: created /etc
postboot out postboot: created /etc/NIXOS
file /etc/NIXOS regular 0644 0 0
file /etc/nope missing
password root locked
password nixos sha512-crypt
stage1 {\"version\":1, \"phases\":[{\"name\":\"modules\",\"start_ms\":1500,\"duration_ms\":30}]}
NIXLIVE-REPORT-END
"
        );
    }

    #[test]
    fn stage1_missing_and_stderr() {
        let i = Inputs {
            arch: "i686".into(),
            uptime_ms: 1,
            mounts: vec![],
            postboot: Postboot {
                exit: 1,
                stdout: "a\n".into(),
                stderr: "b\nc".into(),
            },
            files: vec![],
            passwords: vec![],
            stage1: None,
        };
        let r = render(&i);
        assert!(
            r.contains(
                "postboot exit 1\npostboot out a\npostboot out b\npostboot out c\nstage1 missing\n"
            ),
            "{r}"
        );
    }

    #[test]
    fn password_schemes_never_show_the_hash() {
        let p = password_schemes(
            "root::1:::\nbob:*:1\nx:$y$j9T$a$b:1\nodd\n:$6$a$b\ny:$1$a$b\nz:plain\n",
        );
        assert_eq!(
            p,
            [
                ("root", "empty"),
                ("bob", "locked"),
                ("x", "yescrypt"),
                ("y", "md5-crypt"),
                ("z", "unknown")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn error_is_one_line() {
        assert_eq!(render_error("a\nb"), "NIXLIVE-ERROR a b\n");
    }

    #[test]
    fn what_is_rendered_parses_back() {
        let i = inputs();
        let r = parse(&render(&i)).unwrap();
        assert_eq!(r.mounts, i.mounts);
        assert_eq!(r.mount("/my dir").unwrap().fstype, "devtmpfs");
        assert_eq!(r.files["/etc/NIXOS"].as_ref().unwrap().mode, 0o644);
        assert_eq!(r.postboot_out.len(), 2);
        assert_eq!(r.passwords["nixos"], "sha512-crypt");
        assert_eq!(r.passwords.len(), 2);
        assert_eq!(
            r.stage1.unwrap().phases,
            [Phase {
                name: "modules".into(),
                start_ms: 1500,
                duration_ms: 30
            }]
        );
    }

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
        let err = |log: &str| parse(log).unwrap_err().to_string();
        assert_eq!(
            err("nothing"),
            "no NIXLIVE-REPORT-BEGIN line in the serial log"
        );
        assert_eq!(
            err("NIXLIVE-REPORT-BEGIN\narch x\n"),
            "NIXLIVE-REPORT-BEGIN without NIXLIVE-REPORT-END"
        );
        let e = err("NIXLIVE-REPORT-BEGIN\nmount / tmpfs\nNIXLIVE-REPORT-END\n");
        assert!(e.contains("mount / tmpfs"), "{e}");
        let e = err("NIXLIVE-REPORT-BEGIN\nbogus 1\nNIXLIVE-REPORT-END\n");
        assert!(e.contains("unknown key"), "{e}");
        let e = err("NIXLIVE-REPORT-BEGIN\narch x\nNIXLIVE-REPORT-END\n");
        assert_eq!(e, "the report has no uptime_ms line");
        let e = err("NIXLIVE-REPORT-BEGIN\nstage1 {oops\nNIXLIVE-REPORT-END\n");
        assert!(e.contains("invalid JSON"), "{e}");
        let e = err("NIXLIVE-REPORT-BEGIN\npostboot exit x\nNIXLIVE-REPORT-END\n");
        assert!(e.contains("exit code is not a number"), "{e}");
        let e = err("NIXLIVE-REPORT-BEGIN\nfile /x regular 9 0 0\nNIXLIVE-REPORT-END\n");
        assert!(e.contains("want: file"), "{e}");
    }

    #[test]
    fn kernel_lines() {
        assert!(is_kernel_line("[    2.800000] random: crng init done"));
        assert!(is_kernel_line("[12.5] x"));
        assert!(!is_kernel_line("[x] y"));
        assert!(!is_kernel_line("mount / tmpfs tmpfs rw"));
    }
}

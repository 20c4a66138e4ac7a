//! The guest report (docs/contracts.md, "Guest report"), rendered from plain
//! inputs so it is tested without a VM. The host harness parses exactly this.

use std::fmt::Write;

pub const BEGIN: &str = "NIXLIVE-REPORT-BEGIN";
pub const END: &str = "NIXLIVE-REPORT-END";
pub const ERROR: &str = "NIXLIVE-ERROR";

/// One line of `/proc/self/mountinfo`, fields kept in the kernel's escaped
/// form (`\040` for a space), so each stays one word on the report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: String,
    pub fstype: String,
    pub source: String,
    pub options: String,
}

/// Parses `/proc/self/mountinfo`:
/// `ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`.
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || format!("/proc/self/mountinfo line {}: malformed: {line:?}", n + 1);
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-").ok_or_else(bad)?;
        if sep < 6 || fields.len() < sep + 4 {
            return Err(bad());
        }
        mounts.push(Mount {
            point: fields[4].to_string(),
            fstype: fields[sep + 1].to_string(),
            source: fields[sep + 2].to_string(),
            options: fields[sep + 3].to_string(),
        });
    }
    Ok(mounts)
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

/// What `stat` said about one path of interest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Missing,
    Present {
        kind: &'static str,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub state: FileState,
}

/// How postboot ended: its exit code (128 + signal when killed) and output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postboot {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub arch: String,
    pub uptime_ms: u64,
    pub mounts: Vec<Mount>,
    pub postboot: Postboot,
    pub files: Vec<FileEntry>,
    /// The content of `/run/nixlive/stage1.json`, `None` if absent.
    pub stage1: Option<String>,
}

/// The whole report, `BEGIN` to `END`, each line ending in `\n`.
pub fn render(i: &Inputs) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(s, "arch {}", one_line(&i.arch));
    let _ = writeln!(s, "uptime_ms {}", i.uptime_ms);
    for m in &i.mounts {
        let _ = writeln!(
            s,
            "mount {} {} {} {}",
            m.point, m.fstype, m.source, m.options
        );
    }
    let _ = writeln!(s, "postboot exit {}", i.postboot.exit);
    for line in i.postboot.stdout.lines().chain(i.postboot.stderr.lines()) {
        let _ = writeln!(s, "postboot out {}", one_line(line));
    }
    for f in &i.files {
        match &f.state {
            FileState::Missing => {
                let _ = writeln!(s, "file {} missing", f.path);
            }
            FileState::Present {
                kind,
                mode,
                uid,
                gid,
            } => {
                let _ = writeln!(
                    s,
                    "file {} {kind} {:04o} {uid} {gid}",
                    f.path,
                    mode & 0o7777
                );
            }
        }
    }
    match &i.stage1 {
        Some(json) => {
            let _ = writeln!(s, "stage1 {}", one_line(json).trim());
        }
        None => {
            let _ = writeln!(s, "stage1 missing");
        }
    }
    let _ = writeln!(s, "{END}");
    s
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(m[3].options.contains("lowerdir=/nix/.ro-store"));
        assert_eq!(m[4].point, "/my\\040dir");
    }

    #[test]
    fn mountinfo_malformed() {
        assert!(parse_mountinfo("22 1 0:21 / / rw\n").is_err());
        assert!(parse_mountinfo("1 2 - a b\n").is_err());
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

    #[test]
    fn renders_contract_format() {
        let inputs = Inputs {
            arch: "x86_64".into(),
            uptime_ms: 2710,
            mounts: parse_mountinfo(MOUNTINFO).unwrap()[..2].to_vec(),
            postboot: Postboot {
                exit: 0,
                stdout: "postboot: created /etc\npostboot: created /etc/NIXOS\n".into(),
                stderr: String::new(),
            },
            files: vec![
                FileEntry {
                    path: "/etc/NIXOS".into(),
                    state: FileState::Present {
                        kind: "regular",
                        mode: 0o100644,
                        uid: 0,
                        gid: 0,
                    },
                },
                FileEntry {
                    path: "/etc/nope".into(),
                    state: FileState::Missing,
                },
            ],
            stage1: Some("{\"version\":1,\n\"phases\":[]}\n".into()),
        };
        assert_eq!(
            render(&inputs),
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
stage1 {\"version\":1, \"phases\":[]}
NIXLIVE-REPORT-END
"
        );
    }

    #[test]
    fn stage1_missing_and_stderr() {
        let inputs = Inputs {
            arch: "i686".into(),
            uptime_ms: 1,
            mounts: vec![],
            postboot: Postboot {
                exit: 1,
                stdout: "a\n".into(),
                stderr: "b\nc".into(),
            },
            files: vec![],
            stage1: None,
        };
        let r = render(&inputs);
        assert!(
            r.contains(
                "postboot exit 1\npostboot out a\npostboot out b\npostboot out c\nstage1 missing\n"
            ),
            "{r}"
        );
    }

    #[test]
    fn error_is_one_line() {
        assert_eq!(render_error("a\nb"), "NIXLIVE-ERROR a b\n");
    }
}

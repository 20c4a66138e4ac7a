//! A reproducible cpio "newc" (SVR4, no CRC) archive writer, the format the
//! kernel unpacks as an initramfs.
//!
//! Entries are sorted by path, missing parent directories are added (mode
//! 0755), every entry is owned by 0:0 with one mtime, inode numbers count
//! from 1 in archive order, and the archive ends with `TRAILER!!!`. Paths are
//! stored without a leading `/`.
//!
//! Non-goals: no reading of archives, no hard links or symlinks (the
//! initrd has none), no CRC variant.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    /// A character device node (major, minor), such as `/dev/console`.
    CharDev(u32, u32),
    /// A regular file whose bytes are read from the host file at write time
    /// (for images too large to hold in memory); the size is checked then.
    HostFile(PathBuf, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Permission bits (the file type bits are added from `kind`).
    perm: u32,
    kind: Kind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioError {
    #[error("initrd path `{0}` is not a clean path (empty, `.` or `..` component)")]
    BadPath(String),
    #[error("initrd path `{0}` added twice")]
    Duplicate(String),
    #[error("initrd path `{0}` is both a directory and something else")]
    NotADir(String),
    #[error("initrd entry `{0}` is larger than 4 GiB, which newc cannot hold")]
    TooLarge(String),
}

#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn clean(path: &str) -> Result<String, CpioError> {
    let p = path.trim_start_matches('/');
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(CpioError::BadPath(path.to_string()));
    }
    Ok(p.to_string())
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds an entry; its parent directories are created as needed.
    pub fn add(&mut self, path: &str, perm: u32, kind: Kind) -> Result<(), CpioError> {
        let p = clean(path)?;
        let mut parent = String::new();
        let comps: Vec<&str> = p.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            match self.entries.get(&parent) {
                Some(Entry {
                    kind: Kind::Dir, ..
                }) => {}
                Some(_) => return Err(CpioError::NotADir(parent)),
                None => {
                    self.entries.insert(
                        parent.clone(),
                        Entry {
                            perm: 0o755,
                            kind: Kind::Dir,
                        },
                    );
                }
            }
        }
        if let Some(old) = self.entries.get(&p) {
            // An explicitly added directory may refine an implied one.
            if old.kind == Kind::Dir && kind == Kind::Dir {
                self.entries.insert(p, Entry { perm, kind });
                return Ok(());
            }
            return Err(if old.kind == Kind::Dir || kind == Kind::Dir {
                CpioError::NotADir(p)
            } else {
                CpioError::Duplicate(p)
            });
        }
        let size = match &kind {
            Kind::File(d) => d.len() as u64,
            Kind::HostFile(_, n) => *n,
            _ => 0,
        };
        if u32::try_from(size).is_err() {
            return Err(CpioError::TooLarge(p));
        }
        self.entries.insert(p, Entry { perm, kind });
        Ok(())
    }

    /// Serialises the archive with every mtime set to `mtime`.
    pub fn to_bytes(&self, mtime: u32) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec only fails for host files, which have their own
        // path (`write_to`).
        let _ = self.write_to(&mut out, mtime);
        out
    }

    /// Streams the archive into `w` with every mtime set to `mtime`. A host
    /// file whose size changed since it was added is an error.
    pub fn write_to(&self, w: &mut impl Write, mtime: u32) -> io::Result<()> {
        let mut out = Vec::new();
        // Sorted component by component, so a directory comes right before
        // its children (plain byte order would put `lib-x` between `lib` and
        // `lib/modules`).
        let mut items: Vec<(&String, &Entry)> = self.entries.iter().collect();
        items.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
        for (ino, (path, e)) in items.into_iter().enumerate() {
            let (ty, nlink, data, rdev): (u32, u32, &[u8], _) = match &e.kind {
                Kind::Dir => (0o040000, 2, &[], (0, 0)),
                Kind::File(d) => (0o100000, 1, d, (0, 0)),
                Kind::CharDev(ma, mi) => (0o020000, 1, &[], (*ma, *mi)),
                Kind::HostFile(..) => (0o100000, 1, &[], (0, 0)),
            };
            let size = match &e.kind {
                Kind::HostFile(_, n) => usize::try_from(*n).unwrap_or(usize::MAX),
                _ => data.len(),
            };
            let ino = u32::try_from(ino + 1).unwrap_or(u32::MAX);
            let h = Header {
                ino,
                mode: ty | (e.perm & 0o7777),
                nlink,
                mtime,
                size,
                rdev,
            };
            h.write(&mut out, path);
            if let Kind::HostFile(src, n) = &e.kind {
                // `out` always starts 4-aligned in the archive, so its own
                // length gives the alignment; flush it before the file data.
                w.write_all(&out)?;
                out.clear();
                let mut f = std::fs::File::open(src)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
                let copied = io::copy(&mut io::Read::take(&mut f, *n), w)?;
                if copied != *n {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} shrank while packing it", src.display()),
                    ));
                }
                w.write_all(&[0u8; 4][..((4 - copied % 4) % 4) as usize])?;
                continue;
            }
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            rdev: (0, 0),
        };
        trailer.write(&mut out, "TRAILER!!!");
        w.write_all(&out)
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: usize,
    rdev: (u32, u32),
}

impl Header {
    fn write(&self, out: &mut Vec<u8>, name: &str) {
        let size = u32::try_from(self.size).unwrap_or(u32::MAX);
        let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        out.extend_from_slice(b"070701");
        let (rmaj, rmin) = self.rdev;
        let fields = [
            self.ino, self.mode, 0, 0, self.nlink, self.mtime, size, 0, 0, rmaj, rmin, namesize, 0,
        ];
        for v in fields {
            out.extend_from_slice(format!("{v:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(h: &[u8], i: usize) -> u32 {
        let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap();
        u32::from_str_radix(s, 16).unwrap()
    }

    /// Parses an archive back: (name, mode, ino, mtime, data) per entry.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut v = Vec::new();
        let total = b.len();
        loop {
            assert_eq!(&b[..6], b"070701");
            assert_eq!((total - b.len()) % 4, 0);
            let namesize = field(b, 11) as usize;
            let size = field(b, 6) as usize;
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let off = (110 + namesize).div_ceil(4) * 4;
            let data = b[off..off + size].to_vec();
            let entry = (name.clone(), field(b, 1), field(b, 0), field(b, 5), data);
            assert_eq!((field(b, 2), field(b, 3)), (0, 0));
            b = &b[(off + size).div_ceil(4) * 4..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return v;
            }
            v.push(entry);
        }
    }

    #[test]
    fn layout_order_and_padding() {
        let mut a = Archive::new();
        a.add("/init", 0o755, Kind::File(b"#!x".to_vec())).unwrap();
        a.add("/lib/modules/v/a.ko", 0o644, Kind::File(vec![1; 5]))
            .unwrap();
        a.add("/lib-x", 0o644, Kind::File(vec![])).unwrap();
        a.add("/dev", 0o755, Kind::Dir).unwrap();
        a.add("/bin/sh", 0o700, Kind::File(b"busybox".to_vec()))
            .unwrap();
        let bytes = a.to_bytes(42);
        assert_eq!(bytes.len() % 4, 0);
        let e = parse(&bytes);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "dev",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/v",
                "lib/modules/v/a.ko",
                "lib-x"
            ]
        );
        let inos: Vec<u32> = e.iter().map(|x| x.2).collect();
        assert_eq!(inos, (1..=9).collect::<Vec<u32>>());
        assert!(e.iter().all(|x| x.3 == 42));
        assert_eq!(e[0].1, 0o040755);
        assert_eq!(e[1].1, 0o100700);
        assert_eq!(e[1].4, b"busybox");
        assert_eq!(e[3].1, 0o100755);
        assert_eq!(e[3].4, b"#!x");
        assert_eq!(e[7].4, vec![1; 5]);
        // Same input, same bytes, whatever the insertion order.
        let mut b = Archive::new();
        b.add("/bin/sh", 0o700, Kind::File(b"busybox".to_vec()))
            .unwrap();
        b.add("/dev", 0o755, Kind::Dir).unwrap();
        b.add("/lib-x", 0o644, Kind::File(vec![])).unwrap();
        b.add("/lib/modules/v/a.ko", 0o644, Kind::File(vec![1; 5]))
            .unwrap();
        b.add("/init", 0o755, Kind::File(b"#!x".to_vec())).unwrap();
        assert_eq!(b.to_bytes(42), bytes);
    }

    #[test]
    fn host_files_stream_like_inline_ones() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("img");
        std::fs::write(&f, b"12345").unwrap();
        let mut inline = Archive::new();
        inline
            .add("/a", 0o644, Kind::File(b"12345".to_vec()))
            .unwrap();
        inline.add("/b", 0o644, Kind::File(b"xy".to_vec())).unwrap();
        let mut host = Archive::new();
        host.add("/a", 0o644, Kind::HostFile(f.clone(), 5)).unwrap();
        host.add("/b", 0o644, Kind::File(b"xy".to_vec())).unwrap();
        let mut out = Vec::new();
        host.write_to(&mut out, 7).unwrap();
        assert_eq!(out, inline.to_bytes(7));
        let mut wrong = Archive::new();
        wrong.add("/a", 0o644, Kind::HostFile(f, 6)).unwrap();
        assert!(wrong.write_to(&mut Vec::new(), 0).is_err());
        assert!(matches!(
            wrong.add("/big", 0o644, Kind::HostFile("x".into(), 1 << 32)),
            Err(CpioError::TooLarge(_))
        ));
    }

    #[test]
    fn errors() {
        let mut a = Archive::new();
        a.add("/a", 0o644, Kind::File(vec![])).unwrap();
        assert_eq!(
            a.add("/a", 0o644, Kind::File(vec![])),
            Err(CpioError::Duplicate("a".into()))
        );
        assert_eq!(
            a.add("/a/b", 0o644, Kind::File(vec![])),
            Err(CpioError::NotADir("a".into()))
        );
        assert!(matches!(
            a.add("/x/../y", 0o644, Kind::Dir),
            Err(CpioError::BadPath(_))
        ));
        assert!(matches!(
            a.add("/", 0o755, Kind::Dir),
            Err(CpioError::BadPath(_))
        ));
        a.add("/d/e", 0o644, Kind::File(vec![])).unwrap();
        a.add("/d", 0o700, Kind::Dir).unwrap();
        assert_eq!(parse(&a.to_bytes(0))[1].1, 0o040700);
        a.add("/dev/console", 0o600, Kind::CharDev(5, 1)).unwrap();
        let bytes = a.to_bytes(0);
        let pos = bytes
            .windows(12)
            .position(|w| w == b"dev/console\0")
            .unwrap();
        let h = &bytes[pos - 110..];
        assert_eq!((field(h, 1), field(h, 9), field(h, 10)), (0o020600, 5, 1));
    }
}

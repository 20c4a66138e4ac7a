//! Reading a cpio `newc` archive (the initramfs format, `070701` and the
//! `070702` CRC variant) as the kernel unpacks it: entries up to
//! `TRAILER!!!`, each header and name padded to 4 bytes, each file's data
//! too. `nixlive inspect` reads initrds with it; the builder writes them
//! with its own writer.
//!
//! Non-goals: no writing, no other cpio formats (odc, binary), no hard-link
//! merging.

use thiserror::Error;

/// The `mode` bits of a regular file, a directory, a symbolic link.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;

const HEADER: usize = 110;
const TRAILER: &str = "TRAILER!!!";
/// Names the kernel takes are at most PATH_MAX.
const MAX_NAME: usize = 4096;

/// One member of an archive; `data` borrows from the archive's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as stored (`init`, `lib/modules/...`; a leading `/` or
    /// `./` is kept).
    pub name: String,
    pub mode: u32,
    pub data: &'a [u8],
}

impl Entry<'_> {
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    /// The name without a leading `/` or `./`.
    pub fn path(&self) -> &str {
        let n = self.name.trim_start_matches("./");
        n.trim_start_matches('/')
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CpioError {
    #[error("no newc cpio header at byte {0}")]
    BadMagic(usize),
    #[error("cpio header at byte {at}: field {field} is not hexadecimal")]
    BadField { at: usize, field: &'static str },
    #[error("cpio archive ends early: the member at byte {at} ({name}) reaches past the end")]
    Truncated { at: usize, name: String },
    #[error("cpio archive ends early: no TRAILER!!! after byte {0}")]
    NoTrailer(usize),
    #[error("cpio member at byte {0}: the name is empty, too long or not NUL-terminated")]
    BadName(usize),
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn hex_field(d: &[u8], at: usize, idx: usize, field: &'static str) -> Result<usize, CpioError> {
    let s = &d[at + 6 + idx * 8..at + 6 + idx * 8 + 8];
    std::str::from_utf8(s)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or(CpioError::BadField { at, field })
}

/// One archive starting at the beginning of `d`: its entries (without the
/// trailer) and the number of bytes it took, padded to 4 (the next
/// archive, if any, starts there, possibly after more zero padding).
pub fn parse_archive(d: &[u8]) -> Result<(Vec<Entry<'_>>, usize), CpioError> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        if at >= d.len() {
            return Err(CpioError::NoTrailer(at));
        }
        let head = d.get(at..at + HEADER).ok_or_else(|| CpioError::Truncated {
            at,
            name: "header".into(),
        })?;
        if &head[..6] != b"070701" && &head[..6] != b"070702" {
            return Err(CpioError::BadMagic(at));
        }
        let mode = hex_field(d, at, 1, "mode")?;
        let size = hex_field(d, at, 6, "filesize")?;
        let namesize = hex_field(d, at, 11, "namesize")?;
        if namesize == 0 || namesize > MAX_NAME {
            return Err(CpioError::BadName(at));
        }
        let raw =
            d.get(at + HEADER..at + HEADER + namesize)
                .ok_or_else(|| CpioError::Truncated {
                    at,
                    name: "name".into(),
                })?;
        let (&nul, raw) = raw.split_last().ok_or(CpioError::BadName(at))?;
        if nul != 0 || raw.contains(&0) {
            return Err(CpioError::BadName(at));
        }
        let name = String::from_utf8_lossy(raw).into_owned();
        let data_at = pad4(at + HEADER + namesize);
        let end = data_at
            .checked_add(size)
            .filter(|&e| e <= d.len())
            .ok_or_else(|| CpioError::Truncated {
                at,
                name: name.clone(),
            })?;
        let next = pad4(end);
        if name == TRAILER {
            return Ok((out, next.min(d.len())));
        }
        out.push(Entry {
            name,
            mode: mode as u32,
            data: &d[data_at..end],
        });
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn archive() -> Vec<u8> {
        let mut a = member("init", S_IFREG | 0o755, b"\x7fELF...");
        a.extend(member("etc", S_IFDIR | 0o755, b""));
        a.extend(member("/etc/x", S_IFREG | 0o644, b"12345"));
        a.extend(member(TRAILER, 0, b""));
        a
    }

    #[test]
    fn reads_members() {
        let mut a = archive();
        let n = a.len();
        a.extend_from_slice(&[0; 8]);
        let (e, used) = parse_archive(&a).unwrap();
        assert_eq!(used, n);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "init");
        assert!(e[0].is_file() && e[1].is_dir());
        assert_eq!(e[0].data, b"\x7fELF...");
        assert_eq!(e[2].path(), "etc/x");
        assert_eq!(e[2].data, b"12345");
    }

    #[test]
    fn truncated_and_broken() {
        let a = archive();
        for cut in [0, 50, 112, 130, a.len() - 120, a.len() - 4] {
            assert!(parse_archive(&a[..cut]).is_err(), "cut at {cut}");
        }
        let e = parse_archive(&a[..a.len() - 124]).unwrap_err();
        assert!(
            matches!(e, CpioError::NoTrailer(_) | CpioError::Truncated { .. }),
            "{e}"
        );
        let mut bad = a.clone();
        bad[0] = b'1';
        assert_eq!(parse_archive(&bad), Err(CpioError::BadMagic(0)));
        let mut bad = a;
        bad[6 + 8] = b'z';
        assert!(matches!(
            parse_archive(&bad),
            Err(CpioError::BadField { field: "mode", .. })
        ));
    }
}

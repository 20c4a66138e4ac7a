//! A tar writer (POSIX ustar, with pax extended headers for names and
//! link targets longer than ustar holds), for the system tarball: entries
//! in the order given, owned by root (0:0), with the times given; nothing
//! of the build host (user names, device numbers, access times) gets in.
//!
//! Non-goals: no reading, no hard links, no special files, no sparse files.

use std::io::{self, Write};

const BLOCK: usize = 512;

/// What one entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind<'a> {
    Dir,
    /// A regular file of this many bytes; its data follows through
    /// [`Writer::data`].
    File(u64),
    Symlink(&'a str),
}

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("tar entry {0:?}: empty name or a name with a NUL byte")]
    BadName(String),
    #[error("tar entry {name}: {size} bytes is more than ustar's 8 GiB")]
    TooLarge { name: String, size: u64 },
    #[error("tar entry {name}: {written} bytes of data given, {size} announced")]
    SizeMismatch {
        name: String,
        size: u64,
        written: u64,
    },
    #[error("writing the tar stream")]
    Io(#[from] io::Error),
}

/// Writes a tar stream to `W`: [`Writer::entry`] per entry (then its data
/// for a file), [`Writer::finish`] at the end.
pub struct Writer<W: Write> {
    out: W,
    /// The file whose data is being written: name, size, bytes so far.
    open: Option<(String, u64, u64)>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer { out, open: None }
    }

    /// Starts an entry named `name` (relative, `/`-separated, without a
    /// trailing slash) with permission bits `mode` and time `mtime`.
    pub fn entry(
        &mut self,
        name: &str,
        mode: u32,
        mtime: u64,
        kind: EntryKind<'_>,
    ) -> Result<(), TarError> {
        self.close_file()?;
        if name.is_empty() || name.contains('\0') {
            return Err(TarError::BadName(name.to_string()));
        }
        let (type_flag, size, link) = match kind {
            EntryKind::Dir => (b'5', 0, ""),
            EntryKind::File(n) => (b'0', n, ""),
            EntryKind::Symlink(t) => (b'2', 0, t),
        };
        if link.contains('\0') {
            return Err(TarError::BadName(format!("{name} -> {link}")));
        }
        if size >= 1 << 33 {
            return Err(TarError::TooLarge {
                name: name.to_string(),
                size,
            });
        }
        let full = if type_flag == b'5' {
            format!("{name}/")
        } else {
            name.to_string()
        };
        let mut pax = String::new();
        if full.len() > 100 {
            pax.push_str(&pax_record("path", &full));
        }
        if link.len() > 100 {
            pax.push_str(&pax_record("linkpath", link));
        }
        if !pax.is_empty() {
            let pax_name = format!("PaxHeaders/{}", truncate(&full, 80));
            let h = header(&pax_name, 0o644, mtime, b'x', pax.len() as u64, "");
            self.out.write_all(&h)?;
            self.out.write_all(pax.as_bytes())?;
            self.pad(pax.len() as u64)?;
        }
        let h = header(
            truncate(&full, 100),
            mode,
            mtime,
            type_flag,
            size,
            truncate(link, 100),
        );
        self.out.write_all(&h)?;
        if size > 0 {
            self.open = Some((name.to_string(), size, 0));
        }
        Ok(())
    }

    /// Data of the file entry started last.
    pub fn data(&mut self, bytes: &[u8]) -> Result<(), TarError> {
        let Some((name, size, written)) = &mut self.open else {
            return Err(TarError::SizeMismatch {
                name: String::new(),
                size: 0,
                written: bytes.len() as u64,
            });
        };
        *written += bytes.len() as u64;
        if *written > *size {
            return Err(TarError::SizeMismatch {
                name: name.clone(),
                size: *size,
                written: *written,
            });
        }
        self.out.write_all(bytes)?;
        Ok(())
    }

    /// Ends the stream (two zero blocks) and returns the writer.
    pub fn finish(mut self) -> Result<W, TarError> {
        self.close_file()?;
        self.out.write_all(&[0; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn close_file(&mut self) -> Result<(), TarError> {
        if let Some((name, size, written)) = self.open.take() {
            if written != size {
                return Err(TarError::SizeMismatch {
                    name,
                    size,
                    written,
                });
            }
            self.pad(size)?;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> Result<(), TarError> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `LEN KEY=VALUE\n`, where LEN counts the whole record, itself included.
fn pax_record(key: &str, value: &str) -> String {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n")
}

fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

fn header(name: &str, mode: u32, mtime: u64, type_flag: u8, size: u64, link: &str) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode & 0o7777));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime.min(0o777_7777_7777));
    h[156] = type_flag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    // The checksum is over the header with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_themselves() {
        assert_eq!(pax_record("path", "a"), "9 path=a\n");
        // Around the lengths where the count gains a digit.
        for n in 0..1100 {
            let r = pax_record("path", &"x".repeat(n));
            assert_eq!(r.len().to_string(), r.split(' ').next().unwrap(), "{n}");
        }
    }

    #[test]
    fn headers_as_ustar_has_them() {
        let h = header("a/b", 0o555, 1, b'0', 5, "");
        assert_eq!(&h[..3], b"a/b");
        assert_eq!(&h[100..108], b"0000555\0");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(&h[257..265], b"ustar\x0000");
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(*b)
                }
            })
            .sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn sizes_are_checked() {
        let mut w = Writer::new(Vec::new());
        w.entry("f", 0o444, 1, EntryKind::File(3)).unwrap();
        w.data(b"ab").unwrap();
        assert!(matches!(
            w.entry("g", 0o444, 1, EntryKind::Dir),
            Err(TarError::SizeMismatch { written: 2, .. })
        ));
        let mut w = Writer::new(Vec::new());
        w.entry("f", 0o444, 1, EntryKind::File(1)).unwrap();
        assert!(w.data(b"ab").is_err());
        let mut w = Writer::new(Vec::new());
        assert!(w.entry("", 0o444, 1, EntryKind::Dir).is_err());
        assert!(w.entry("big", 0o444, 1, EntryKind::File(1 << 33)).is_err());
    }

    /// GNU tar reads it back: long names and link targets, modes, owners, times.
    #[test]
    fn gnu_tar_reads_it() {
        let long = format!("nix/store/{}-name/{}", "a".repeat(32), "deep/".repeat(30));
        let long = long.trim_end_matches('/');
        let target = format!("/nix/store/{}", "t".repeat(120));
        let mut w = Writer::new(Vec::new());
        w.entry("nix", 0o755, 7, EntryKind::Dir).unwrap();
        w.entry(long, 0o555, 7, EntryKind::Dir).unwrap();
        let f = format!("{long}/file");
        w.entry(&f, 0o555, 7, EntryKind::File(600)).unwrap();
        w.data(&[b'x'; 600]).unwrap();
        w.entry("link", 0o777, 7, EntryKind::Symlink(&target))
            .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % BLOCK, 0);
        let d = tempfile::tempdir().unwrap();
        let tar = d.path().join("t.tar");
        std::fs::write(&tar, &bytes).unwrap();
        let out = std::process::Command::new("tar")
            .args(["--numeric-owner", "--full-time", "-tvf"])
            .arg(&tar)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let list = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 4, "{list}");
        assert!(lines[0].starts_with("drwxr-xr-x 0/0 "), "{list}");
        assert!(lines[0].contains("1970-01-01 00:00:07 nix/"), "{list}");
        assert!(lines[2].starts_with("-r-xr-xr-x 0/0 "), "{list}");
        assert!(lines[2].ends_with(f.as_str()), "{list}");
        assert!(lines[3].ends_with(&format!("link -> {target}")), "{list}");
        let x = d.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&x)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read(x.join(&f)).unwrap(), vec![b'x'; 600]);
        assert_eq!(
            std::fs::read_link(x.join("link")).unwrap().to_str(),
            Some(target.as_str())
        );
    }
}

//! Reading an initrd as the kernel unpacks it: a sequence of cpio newc
//! archives, each stored or compressed (gzip, zstd, xz), separated by zero
//! padding; later files replace earlier ones. `nixlive inspect` lists what
//! it holds, and the builder checks each `--extra-cpio` with it.
//!
//! Non-goals: no bzip2, lzma, lzo or lz4 segments (nixlive writes none;
//! they are reported as unreadable), no writing.

use nixlive_formats::cpio;
use nixlive_formats::unpack;
use std::collections::BTreeMap;
use std::io::Read;

/// An initrd's files may unpack to at most this much.
const LIMIT: usize = 4 << 30;

/// One archive of the initrd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its first byte in the initrd.
    pub offset: usize,
    /// `stored`, `gzip`, `zstd` or `xz`.
    pub format: &'static str,
    /// Its bytes in the initrd (compressed size).
    pub size: usize,
    pub files: usize,
}

/// Where a file's bytes are: in the initrd itself or in an unpacked
/// segment.
#[derive(Debug, Clone, Copy)]
struct Place {
    buffer: Option<usize>,
    start: usize,
    end: usize,
    mode: u32,
}

/// A read initrd.
#[derive(Debug)]
pub struct Initrd {
    raw: Vec<u8>,
    buffers: Vec<Vec<u8>>,
    files: BTreeMap<String, Place>,
    pub segments: Vec<Segment>,
}

/// Why an initrd cannot be read (the kernel would stop at the same place).
#[derive(Debug, thiserror::Error)]
#[error("{what} at byte {offset}: {why}")]
pub struct InitrdError {
    pub offset: usize,
    pub what: String,
    pub why: String,
}

fn magic(d: &[u8]) -> Option<&'static str> {
    if d.starts_with(b"070701") || d.starts_with(b"070702") {
        Some("stored")
    } else if d.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if d.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if d.starts_with(b"\xfd7zXZ\0") {
        Some("xz")
    } else {
        None
    }
}

/// The stream at the start of `d`, unpacked, and how many bytes it took.
fn unpack_stream(format: &str, d: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut out = Vec::new();
    let mut rest = d;
    match format {
        "gzip" => {
            let mut dec = flate2::bufread::GzDecoder::new(&mut rest);
            (&mut dec)
                .take(LIMIT as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| e.to_string())?;
        }
        "zstd" => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(&mut rest)
                .map_err(|e| e.to_string())?
                .single_frame();
            (&mut dec)
                .take(LIMIT as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| e.to_string())?;
            drop(dec);
        }
        _ => return unpack::unxz_prefix(d, LIMIT).map_err(|e| e.to_string()),
    }
    if out.len() > LIMIT {
        return Err(format!("unpacks to more than {LIMIT} bytes"));
    }
    Ok((out, d.len() - rest.len()))
}

impl Initrd {
    /// Reads every segment of `raw`.
    pub fn parse(raw: Vec<u8>) -> Result<Initrd, InitrdError> {
        let mut r = Initrd {
            raw,
            buffers: Vec::new(),
            files: BTreeMap::new(),
            segments: Vec::new(),
        };
        let mut at = 0;
        loop {
            while r.raw.get(at) == Some(&0) {
                at += 1;
            }
            if at >= r.raw.len() {
                break;
            }
            let format = magic(&r.raw[at..]).ok_or_else(|| InitrdError {
                offset: at,
                what: "segment".into(),
                why:
                    "neither a cpio archive nor gzip, zstd or xz data (truncated, or not an initrd)"
                        .into(),
            })?;
            let (buffer, size) = if format == "stored" {
                (None, 0)
            } else {
                let (plain, used) =
                    unpack_stream(format, &r.raw[at..]).map_err(|why| InitrdError {
                        offset: at,
                        what: format!("{format} segment"),
                        why: format!("{why} (the initrd is truncated or damaged)"),
                    })?;
                r.buffers.push(plain);
                (Some(r.buffers.len() - 1), used)
            };
            // A compressed segment holds one or more archives.
            let data: &[u8] = match buffer {
                Some(b) => &r.buffers[b],
                None => &r.raw[at..],
            };
            let mut pos = 0;
            let mut files = 0;
            let mut found = Vec::new();
            loop {
                let (entries, used) =
                    cpio::parse_archive(&data[pos..]).map_err(|e| InitrdError {
                        offset: at,
                        what: format!("{format} segment"),
                        why: format!("{e} (the initrd is truncated or damaged)"),
                    })?;
                for e in entries {
                    let start = e.data.as_ptr() as usize - data.as_ptr() as usize;
                    found.push((e.path().to_string(), e.mode, start, start + e.data.len()));
                    files += 1;
                }
                pos += used;
                while data.get(pos) == Some(&0) {
                    pos += 1;
                }
                // Stored: the archive ends here; compressed: until the
                // unpacked data ends.
                if buffer.is_none() || pos >= data.len() {
                    break;
                }
            }
            let (base, size) = match buffer {
                Some(_) => (0, size),
                None => (at, pos),
            };
            for (name, mode, start, end) in found {
                r.files.insert(
                    name,
                    Place {
                        buffer,
                        start: base + start,
                        end: base + end,
                        mode,
                    },
                );
            }
            r.segments.push(Segment {
                offset: at,
                format,
                size,
                files,
            });
            at += size;
        }
        if r.segments.is_empty() {
            return Err(InitrdError {
                offset: 0,
                what: "initrd".into(),
                why: "it is empty".into(),
            });
        }
        Ok(r)
    }

    /// A file's bytes and mode (path without a leading `/`).
    pub fn file(&self, path: &str) -> Option<(&[u8], u32)> {
        let p = self.files.get(path.trim_start_matches('/'))?;
        let src = match p.buffer {
            Some(b) => &self.buffers[b],
            None => &self.raw,
        };
        Some((&src[p.start..p.end], p.mode))
    }

    /// Every path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The initrd's size in bytes.
    pub fn size(&self) -> usize {
        self.raw.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initrd::cpio::{Archive, Kind};
    use crate::initrd::{Compression, append_segment, compress};

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut a = Archive::new();
        for (n, d) in files {
            a.add(n, 0o644, Kind::File(d.to_vec())).unwrap();
        }
        a.to_bytes(0)
    }

    #[test]
    fn segments_of_every_kind() {
        for c in [Compression::Zstd, Compression::Gzip, Compression::Xz] {
            let mut initrd = compress(&archive(&[("/init", b"one"), ("/a", b"A")]), c).unwrap();
            append_segment(&mut initrd, &archive(&[("/init", b"two"), ("/b", b"BB")]));
            let r = Initrd::parse(initrd.clone()).unwrap();
            assert_eq!(r.segments.len(), 2, "{c:?}");
            assert_eq!(r.segments[1].format, "stored");
            // The later archive wins, as in the kernel.
            assert_eq!(r.file("/init").unwrap().0, b"two");
            assert_eq!(r.file("a").unwrap().0, b"A");
            assert_eq!(r.file("b").unwrap().0, b"BB");
            // Cut short, it is refused, naming the segment.
            let cut = &initrd[..r.segments[0].size - 8];
            let e = Initrd::parse(cut.to_vec()).unwrap_err();
            assert_eq!(e.offset, 0, "{e}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
        let stored = archive(&[("/init", b"x")]);
        let e = Initrd::parse(stored[..stored.len() - 30].to_vec()).unwrap_err();
        assert!(e.to_string().contains("stored segment"), "{e}");
        assert!(Initrd::parse(b"hello".to_vec()).is_err());
        assert!(Initrd::parse(Vec::new()).is_err());
    }
}

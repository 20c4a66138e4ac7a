//! Decompressing kernel modules and firmware as distributions ship them
//! (`.xz`, `.zst`, `.gz`): the builder unpacks them into the initrd, and
//! init unpacks a compressed module itself when the running kernel cannot
//! (`CONFIG_MODULE_DECOMPRESS` is off in most released kernels).
//!
//! Pure-Rust decoders, so that the static PID 1 needs no C library for
//! them, chosen small (they are in every initrd); every output is bounded,
//! since a module file is untrusted input.

use thiserror::Error;

/// A compression format of a module or firmware file, known by its suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Xz,
    Zstd,
    Gzip,
}

impl Codec {
    pub const ALL: [Codec; 3] = [Codec::Xz, Codec::Zstd, Codec::Gzip];

    /// The file name suffix, with its dot.
    pub fn suffix(self) -> &'static str {
        match self {
            Codec::Xz => ".xz",
            Codec::Zstd => ".zst",
            Codec::Gzip => ".gz",
        }
    }

    /// The name the kernel prints in `/sys/module/compression` when it
    /// decompresses modules of this format itself.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }

    /// The codec of a file name (`loop.ko.xz` is xz), if it is compressed.
    pub fn of_name(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| name.ends_with(c.suffix()))
    }
}

/// `name` without a compression suffix (`loop.ko.xz` becomes `loop.ko`).
pub fn plain_name(name: &str) -> &str {
    match Codec::of_name(name) {
        Some(c) => &name[..name.len() - c.suffix().len()],
        None => name,
    }
}

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("not valid {codec} data: {why}")]
    Corrupt { codec: &'static str, why: String },
    #[error("unpacks to more than {limit} bytes")]
    TooLarge { limit: usize },
}

/// Decompresses `data`, refusing output over `limit` bytes.
#[cfg(feature = "unpack")]
pub fn unpack(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, UnpackError> {
    let corrupt = |why: String| UnpackError::Corrupt {
        codec: codec.kernel_name(),
        why,
    };
    let mut out = Vec::with_capacity(data.len().saturating_mul(3).min(limit));
    match codec {
        Codec::Xz => unxz(data, &mut out, limit),
        Codec::Zstd => unzstd(data, &mut out, limit),
        Codec::Gzip => gunzip(data, &mut out, limit),
    }
    .map_err(|e| match e {
        Stop::Limit => UnpackError::TooLarge { limit },
        Stop::Corrupt(why) => corrupt(why),
    })?;
    Ok(out)
}

/// Decompresses the xz stream at the start of `data` (more may follow, as
/// in an initrd made of several archives); returns the output and how many
/// bytes of `data` the stream took.
#[cfg(feature = "unpack")]
pub fn unxz_prefix(data: &[u8], limit: usize) -> Result<(Vec<u8>, usize), UnpackError> {
    let mut out = Vec::new();
    let mut rest = data;
    unxz_at(&mut rest, &mut out, limit).map_err(|e| match e {
        Stop::Limit => UnpackError::TooLarge { limit },
        Stop::Corrupt(why) => UnpackError::Corrupt { codec: "xz", why },
    })?;
    Ok((out, data.len() - rest.len()))
}

#[cfg(feature = "unpack")]
enum Stop {
    Limit,
    Corrupt(String),
}

/// Appends `chunk` to `out` unless that passes `limit`.
#[cfg(feature = "unpack")]
fn append(out: &mut Vec<u8>, chunk: &[u8], limit: usize) -> Result<(), Stop> {
    if out.len() + chunk.len() > limit {
        return Err(Stop::Limit);
    }
    out.extend_from_slice(chunk);
    Ok(())
}

/// xz through a port of the kernel's own decoder (xz-embedded): small,
/// and it takes every stream the kernel's module tools write.
#[cfg(feature = "unpack")]
fn unxz(mut data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Stop> {
    unxz_at(&mut data, out, limit)
}

/// [`unxz`], leaving `data` at the end of the stream.
#[cfg(feature = "unpack")]
fn unxz_at(data: &mut &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Stop> {
    use xz4rust::{XzDecoder, XzNextBlockResult};
    // Modules use a 1 MiB dictionary; the decoder grows it as a stream asks.
    let mut dec = XzDecoder::in_heap_with_alloc_dict_size(1 << 20, 64 << 20);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let r = dec
            .decode(data, &mut buf)
            .map_err(|e| Stop::Corrupt(format!("{e:?}")))?;
        *data = &data[r.input_consumed()..];
        append(out, &buf[..r.output_produced()], limit)?;
        match r {
            XzNextBlockResult::EndOfStream(..) => return Ok(()),
            XzNextBlockResult::NeedMoreData(..) if !r.made_progress() => {
                return Err(Stop::Corrupt("the stream ends early".into()));
            }
            XzNextBlockResult::NeedMoreData(..) => {}
        }
    }
}

#[cfg(feature = "unpack")]
fn unzstd(data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Stop> {
    use std::io::Read;
    let mut input = data;
    let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut input)
        .map_err(|e| Stop::Corrupt(e.to_string()))?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = dec
            .read(&mut buf)
            .map_err(|e| Stop::Corrupt(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        append(out, &buf[..n], limit)?;
    }
}

/// gzip (RFC 1952): the header, raw deflate through miniz_oxide, and the
/// CRC-32 and length the trailer carries.
#[cfg(feature = "unpack")]
fn gunzip(data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Stop> {
    let bad = |why: &str| Stop::Corrupt(why.to_string());
    if data.len() < 18 || data[..3] != [0x1f, 0x8b, 8] {
        return Err(bad("no gzip header"));
    }
    let flags = data[3];
    let mut pos = 10;
    if flags & 4 != 0 {
        let xlen = u16::from_le_bytes([data[pos], data[pos + 1]]) as usize;
        pos += 2 + xlen;
    }
    for bit in [8, 16] {
        if flags & bit != 0 {
            let nul = data
                .get(pos..)
                .and_then(|d| d.iter().position(|&b| b == 0))
                .ok_or_else(|| bad("unterminated header field"))?;
            pos += nul + 1;
        }
    }
    if flags & 2 != 0 {
        pos += 2;
    }
    let body = data
        .get(pos..data.len() - 8)
        .ok_or_else(|| bad("header runs past the end"))?;
    let plain =
        miniz_oxide::inflate::decompress_to_vec_with_limit(body, limit).map_err(|e| {
            match e.status {
                miniz_oxide::inflate::TINFLStatus::HasMoreOutput => Stop::Limit,
                s => Stop::Corrupt(format!("{s:?}")),
            }
        })?;
    let trailer = &data[data.len() - 8..];
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if crc32(&plain) != crc || plain.len() as u32 != size {
        return Err(bad("CRC-32 or length does not match the trailer"));
    }
    append(out, &plain, limit)
}

/// CRC-32 (IEEE), bit by bit: gzip modules are rare, and a table would
/// cost the static init 1 to 16 KiB.
#[cfg(feature = "unpack")]
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "unpack")]
    // Made with `xz --check=crc32 --lzma2=dict=1MiB`, `zstd -19` and
    // `gzip -9` from "nixlive module\n" repeated 64 times: the formats the
    // kernel's `make modules_install` writes.
    #[cfg(feature = "unpack")]
    const PLAIN: &[u8] = b"nixlive module\n";

    #[cfg(feature = "unpack")]
    fn reference(codec: Codec) -> Vec<u8> {
        let (prog, args): (&str, &[&str]) = match codec {
            Codec::Xz => ("xz", &["--check=crc32", "--lzma2=dict=1MiB", "-c"]),
            Codec::Zstd => ("zstd", &["-19", "-q", "-c"]),
            Codec::Gzip => ("gzip", &["-9", "-n", "-c"]),
        };
        let mut child = std::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{prog} is needed for this test: {e}"));
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&PLAIN.repeat(64))
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[cfg(feature = "unpack")]
    #[test]
    fn unpacks_what_the_real_tools_write() {
        for codec in Codec::ALL {
            let packed = reference(codec);
            assert_eq!(
                unpack(codec, &packed, 1 << 20).unwrap(),
                PLAIN.repeat(64),
                "{codec:?}"
            );
            // The bound holds, and says so.
            let e = unpack(codec, &packed, 100).unwrap_err();
            assert!(matches!(e, UnpackError::TooLarge { limit: 100 }), "{e}");
            // Damage is an error, never a panic or garbage.
            let mut bad = packed.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 0x55;
            bad.truncate(bad.len() - 3);
            assert!(unpack(codec, &bad, 1 << 20).is_err(), "{codec:?}");
            assert!(unpack(codec, b"", 1 << 20).is_err(), "{codec:?}");
        }
    }

    #[cfg(feature = "unpack")]
    #[test]
    fn gzip_header_fields_and_trailer() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let plain = PLAIN.repeat(64);
        let g = reference(Codec::Gzip);
        // The same deflate body behind a header with a name and a comment.
        let mut named = g[..10].to_vec();
        named[3] |= 8 | 16;
        named.extend_from_slice(b"loop.ko\0made by hand\0");
        named.extend_from_slice(&g[10..]);
        assert_eq!(unpack(Codec::Gzip, &named, 1 << 20).unwrap(), plain);
        // A trailer that does not match is refused.
        let mut wrong = g.clone();
        let n = wrong.len();
        wrong[n - 8] ^= 1;
        assert!(unpack(Codec::Gzip, &wrong, 1 << 20).is_err());
        // Truncated inside the header fields.
        assert!(unpack(Codec::Gzip, &named[..14], 1 << 20).is_err());
    }

    #[cfg(feature = "unpack")]
    #[test]
    fn xz_prefix_says_where_the_stream_ends() {
        let packed = reference(Codec::Xz);
        let mut data = packed.clone();
        data.extend_from_slice(b"\x00\x00\x00\x00070701 next archive");
        let (out, used) = unxz_prefix(&data, 1 << 20).unwrap();
        assert_eq!(out, PLAIN.repeat(64));
        assert_eq!(used, packed.len());
        assert!(unxz_prefix(&packed[..packed.len() - 10], 1 << 20).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(Codec::of_name("a/loop.ko.xz"), Some(Codec::Xz));
        assert_eq!(Codec::of_name("a/loop.ko.zst"), Some(Codec::Zstd));
        assert_eq!(Codec::of_name("fw.bin.gz"), Some(Codec::Gzip));
        assert_eq!(Codec::of_name("a/loop.ko"), None);
        assert_eq!(
            plain_name("kernel/fs/isofs/isofs.ko.zst"),
            "kernel/fs/isofs/isofs.ko"
        );
        assert_eq!(plain_name("isofs.ko"), "isofs.ko");
    }
}

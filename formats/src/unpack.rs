//! Decompressing kernel modules and firmware as distributions ship them
//! (`.xz`, `.zst`, `.gz`): the builder unpacks them into the initrd, and
//! init unpacks a compressed module itself when the running kernel cannot
//! (`CONFIG_MODULE_DECOMPRESS` is off in most released kernels).
//!
//! Pure-Rust decoders, so that the static PID 1 needs no C library for
//! them; every output is bounded, since a module file is untrusted input.

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

/// A writer that refuses to grow past `limit` bytes.
#[cfg(feature = "unpack")]
struct Bounded {
    out: Vec<u8>,
    limit: usize,
    over: bool,
}

#[cfg(feature = "unpack")]
impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decompresses `data`, refusing output over `limit` bytes.
#[cfg(feature = "unpack")]
pub fn unpack(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, UnpackError> {
    use std::io::Write;
    let mut out = Bounded {
        out: Vec::with_capacity(data.len().saturating_mul(3).min(limit)),
        limit,
        over: false,
    };
    let corrupt = |why: String| UnpackError::Corrupt {
        codec: codec.kernel_name(),
        why,
    };
    let result = match codec {
        Codec::Xz => lzma_rs::xz_decompress(&mut &data[..], &mut out).map_err(|e| e.to_string()),
        Codec::Zstd => ruzstd::decoding::StreamingDecoder::new(&mut &data[..])
            .map_err(|e| e.to_string())
            .and_then(|mut d| copy(&mut d, &mut out)),
        Codec::Gzip => copy(&mut flate2::read::MultiGzDecoder::new(data), &mut out),
    };
    match result {
        _ if out.over => Err(UnpackError::TooLarge { limit }),
        Err(why) => Err(corrupt(why)),
        Ok(()) => {
            out.flush().ok();
            Ok(out.out)
        }
    }
}

#[cfg(feature = "unpack")]
fn copy(r: &mut dyn std::io::Read, w: &mut Bounded) -> Result<(), String> {
    std::io::copy(r, w).map(|_| ()).map_err(|e| e.to_string())
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

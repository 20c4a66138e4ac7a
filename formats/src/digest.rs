//! SHA-256 digests as nixlive writes them everywhere (manifest image
//! digests, verification messages, test fixtures): lowercase hex. Reading
//! is the caller's: [`sha256_read`] takes any [`Read`], so this crate does
//! no file I/O.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::hex;

/// A running SHA-256 that also counts the bytes it saw, for digests made
/// while the data goes somewhere else (a copy with progress).
#[derive(Debug, Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 32 bytes of the digest.
    pub fn finish(self) -> [u8; 32] {
        self.inner.finalize().into()
    }

    /// The digest in lowercase hex (64 characters).
    pub fn finish_hex(self) -> String {
        hex::encode(&self.finish())
    }
}

/// What [`sha256_read`] read: how many bytes, and their digest in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Sum {
    pub len: u64,
    pub hex: String,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-256 of `data` in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(&sha256(data))
}

/// Size of each read in [`sha256_read`]: large reads keep the syscalls few
/// on big images (the static init hashes whole squashfs files).
const CHUNK: usize = 1 << 20;

/// Reads `reader` to its end (retrying interrupted reads) and returns the
/// number of bytes and their SHA-256 in lowercase hex.
pub fn sha256_read(mut reader: impl Read) -> io::Result<Sha256Sum> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = h.len();
    Ok(Sha256Sum {
        len,
        hex: h.finish_hex(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf abc | sha256sum`.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    /// `sha256sum < /dev/null`.
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_digests() {
        assert_eq!(sha256_hex(b"abc"), ABC);
        assert_eq!(sha256_hex(b""), EMPTY);
        assert_eq!(hex::encode(&sha256(b"abc")), ABC);
    }

    #[test]
    fn reader_and_hasher_agree() {
        let data: Vec<u8> = (0..3 * CHUNK + 7).map(|i| (i % 251) as u8).collect();
        let sum = sha256_read(&data[..]).unwrap();
        assert_eq!(sum.len, data.len() as u64);
        assert_eq!(sum.hex, sha256_hex(&data));
        let mut h = Hasher::new();
        assert!(h.is_empty());
        for part in data.chunks(1000) {
            h.update(part);
        }
        assert_eq!(h.len(), data.len() as u64);
        assert_eq!(h.finish_hex(), sum.hex);
        assert_eq!(
            sha256_read(io::empty()).unwrap(),
            Sha256Sum {
                len: 0,
                hex: EMPTY.into()
            }
        );
    }

    /// Reads one byte at a time, interrupted before each, then fails.
    struct Flaky {
        left: usize,
        interrupt: bool,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            if self.left == 0 {
                return Err(io::Error::other("gone"));
            }
            self.left -= 1;
            buf[0] = b'a';
            Ok(1)
        }
    }

    #[test]
    fn retries_interrupted_reads_and_passes_errors_on() {
        let e = sha256_read(Flaky {
            left: 3,
            interrupt: false,
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "gone");
    }
}

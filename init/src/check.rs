//! `nixlive.check`: every image read once, whole, through dm-verity before
//! stage 2, so a bad stick is found at boot and named (the image, the byte
//! offset of its first bad block), not met later as a squashfs I/O error.
//! Images without a hash tree are hashed instead ([`crate::verify`]).
//!
//! Finding the block ([`read_all`]) is pure over a positioned read, so the
//! search is tested without a device; [`read_through`] is the thin part.

use crate::error::BootError;
use crate::exec::ImageRead;
use std::io::{self, Write};
use std::time::Instant;

/// How much is read at a time; a failed chunk is read again block by block.
const CHUNK: u64 = 1 << 20;

/// Where a whole read stopped.
#[derive(Debug)]
pub enum Stop {
    /// The block at `offset` (bytes from the image's start) cannot be read:
    /// dm-verity refuses a block whose hash does not match (`EIO`).
    Bad { offset: u64, error: io::Error },
    /// The device ended at `at`, before the size the manifest gives.
    Short { at: u64 },
}

/// Reads `size` bytes through `read_at` (a positioned read) in chunks,
/// reporting each offset reached to `progress`. A chunk that fails is read
/// again one `block` at a time, so the first block that fails is named
/// (and not the chunk around it). A chunk that fails whole but none of
/// whose blocks does alone is named by its start.
pub fn read_all(
    read_at: &mut dyn FnMut(&mut [u8], u64) -> io::Result<usize>,
    size: u64,
    block: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Stop> {
    let block = block.max(512);
    let chunk = CHUNK.max(block) / block * block;
    let mut buf = vec![0u8; chunk as usize];
    let mut off = 0u64;
    while off < size {
        let len = chunk.min(size - off);
        match fill(read_at, &mut buf[..len as usize], off) {
            Ok(true) => {}
            Ok(false) => return Err(Stop::Short { at: off }),
            Err(first) => {
                let mut b = off;
                while b < off + len {
                    let n = block.min(off + len - b) as usize;
                    match fill(read_at, &mut buf[..n], b) {
                        Ok(true) => {}
                        Ok(false) => return Err(Stop::Short { at: b }),
                        Err(error) => return Err(Stop::Bad { offset: b, error }),
                    }
                    b += n as u64;
                }
                return Err(Stop::Bad {
                    offset: off,
                    error: first,
                });
            }
        }
        off += len;
        progress(off);
    }
    Ok(())
}

/// Fills `buf` from `off`; `Ok(false)` when the device ends first.
fn fill(
    read_at: &mut dyn FnMut(&mut [u8], u64) -> io::Result<usize>,
    buf: &mut [u8],
    off: u64,
) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// [`Step::CheckImage`](crate::plan::Step::CheckImage): reads the image's
/// data through the dm-verity device `dev`, with the progress line.
pub fn read_through(dev: &str, c: &ImageRead<'_>) -> Result<(), BootError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(dev).map_err(BootError::sys("open", dev))?;
    let mut line = Progress::new("nixlive.check", c.done, c.total);
    let r = read_all(
        &mut |buf, off| f.read_at(buf, off),
        c.size,
        c.block.into(),
        &mut |at| line.at(at),
    );
    line.end();
    match r {
        Ok(()) => {
            log::info!(
                "nixlive.check: {}: all {} bytes of data read through dm-verity ({dev}), \
                 every block intact",
                c.image,
                c.size
            );
            Ok(())
        }
        Err(Stop::Bad { offset, error }) => Err(BootError::BadBlock {
            image: c.image.to_string(),
            // Its tables are read through dm-verity too: intact, or no name.
            inside: crate::sqfs::file_at(&mut |buf, off| f.read_at(buf, off), offset)
                .map(|p| format!(", in the file {p} of the image"))
                .unwrap_or_default(),
            offset,
            block: offset / u64::from(c.block.max(1)),
            block_size: c.block,
            source: error,
        }),
        Err(Stop::Short { at }) => Err(BootError::Size {
            path: format!("{dev} (dm-verity over {})", c.image),
            want: c.size,
            got: at,
        }),
    }
}

/// A progress line on the console, redrawn at each whole percent.
pub struct Progress {
    what: String,
    before: u64,
    total: u64,
    start: Instant,
    last_pct: u64,
    console: Box<dyn Write>,
}

impl Progress {
    /// `before` of `total` bytes were done by earlier steps.
    pub fn new(what: &str, before: u64, total: u64) -> Progress {
        Progress {
            what: what.to_string(),
            before,
            total,
            start: Instant::now(),
            last_pct: u64::MAX,
            console: crate::console::writer(),
        }
    }

    /// `moved` bytes done by this step.
    pub fn at(&mut self, moved: u64) {
        let done = self.before.saturating_add(moved);
        let pct = done
            .saturating_mul(100)
            .checked_div(self.total)
            .unwrap_or(100);
        if pct != self.last_pct {
            self.last_pct = pct;
            let line = crate::console::progress_line(
                &self.what,
                done,
                self.total,
                moved,
                self.start.elapsed().as_secs_f64(),
                true,
            );
            // not fatal: the progress line is a courtesy.
            let _ = write!(self.console, "\r{line}");
        }
    }

    /// Ends the line.
    pub fn end(&mut self) {
        if self.last_pct != u64::MAX {
            let _ = writeln!(self.console);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device of `size` bytes whose blocks in `bad` fail, as dm-verity
    /// fails a read that touches a block whose hash does not match.
    fn device(
        size: u64,
        bad: &[u64],
        block: u64,
    ) -> impl FnMut(&mut [u8], u64) -> io::Result<usize> {
        let bad = bad.to_vec();
        move |buf: &mut [u8], off: u64| {
            if off >= size {
                return Ok(0);
            }
            let n = (buf.len() as u64).min(size - off);
            let (first, last) = (off / block, (off + n - 1) / block);
            if bad.iter().any(|b| (first..=last).contains(b)) {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            buf[..n as usize].fill(0x5a);
            Ok(n as usize)
        }
    }

    #[test]
    fn an_intact_image_is_read_once_with_progress() {
        let mut reached = Vec::new();
        let size = 3 * CHUNK + 4096;
        let r = read_all(&mut device(size, &[], 4096), size, 4096, &mut |at| {
            reached.push(at)
        });
        assert!(r.is_ok());
        assert_eq!(reached, [CHUNK, 2 * CHUNK, 3 * CHUNK, size]);
    }

    /// The first bad block is named by its own offset, not its chunk's.
    #[test]
    fn the_first_bad_block_is_named() {
        let size = 4 * CHUNK;
        let bad = (CHUNK + 5 * 4096) / 4096;
        for bads in [vec![bad], vec![bad, bad + 1, bad + 300]] {
            let r = read_all(&mut device(size, &bads, 4096), size, 4096, &mut |_| {});
            let Err(Stop::Bad { offset, error }) = r else {
                panic!("{r:?}")
            };
            assert_eq!(offset, CHUNK + 5 * 4096);
            assert_eq!(error.raw_os_error(), Some(libc::EIO));
        }
        // The very first and the very last block.
        let last = size / 4096 - 1;
        for b in [0, last] {
            let r = read_all(&mut device(size, &[b], 4096), size, 4096, &mut |_| {});
            assert!(
                matches!(r, Err(Stop::Bad { offset, .. }) if offset == b * 4096),
                "{b}: {r:?}"
            );
        }
    }

    #[test]
    fn a_device_shorter_than_the_manifest_says_is_named() {
        let r = read_all(
            &mut device(CHUNK + 8192, &[], 4096),
            2 * CHUNK,
            4096,
            &mut |_| {},
        );
        assert!(matches!(r, Err(Stop::Short { at }) if at == CHUNK), "{r:?}");
    }

    /// Short reads (a device may return less than asked) are not errors.
    #[test]
    fn short_reads_are_continued() {
        let mut inner = device(CHUNK, &[], 4096);
        let mut dribble = |buf: &mut [u8], off: u64| {
            let n = buf.len().min(1000);
            inner(&mut buf[..n], off)
        };
        assert!(read_all(&mut dribble, CHUNK, 4096, &mut |_| {}).is_ok());
    }
}

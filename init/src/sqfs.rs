//! Which file of a squashfs image holds a byte offset: for `nixlive.check`,
//! to name the file a bad block belongs to. It reads the superblock, the
//! inode and directory tables (zstd or xz metadata; the builder's default
//! is zstd) and the fragment table, through the same positioned read as the
//! check, and walks the tree once. Anything it cannot read (the bad block
//! is in the tables, another compressor, not a squashfs) is `None`: the
//! offset alone is still named. Work is bounded for a hostile image.

use nixlive_formats::unpack::{self, Codec};
use std::collections::HashMap;
use std::io;

type ReadAt<'a> = &'a mut dyn FnMut(&mut [u8], u64) -> io::Result<usize>;

const MAGIC: u32 = 0x7371_7368;
/// A metadata block's most uncompressed bytes.
const META: usize = 8192;
/// Inodes looked at before giving up (a hostile image could loop).
const MAX_INODES: usize = 2_000_000;
const NO_FRAGMENT: u32 = 0xffff_ffff;

/// The path (from the image's root, `/`-separated) of the file whose data
/// holds byte `offset` of the image; for a fragment block shared by several
/// small files, the first and how many more.
pub fn file_at(read_at: ReadAt<'_>, offset: u64) -> Option<String> {
    let mut img = Image::open(read_at)?;
    let root = img.sb.root_inode;
    let mut frags: HashMap<u32, Vec<String>> = HashMap::new();
    let mut todo = vec![(root, String::new())];
    let mut seen = 0usize;
    while let Some((dir, path)) = todo.pop() {
        for (name, ty, inode) in img.list(dir)? {
            seen += 1;
            if seen > MAX_INODES {
                return None;
            }
            let p = format!("{path}/{name}");
            match ty {
                1 => todo.push((inode, p)),
                2 => {
                    let f = img.file(inode)?;
                    if (f.start..f.end).contains(&offset) {
                        return Some(p);
                    }
                    if f.frag != NO_FRAGMENT {
                        frags.entry(f.frag).or_default().push(p);
                    }
                }
                _ => {}
            }
        }
    }
    let mut hits: Vec<(u32, Vec<String>)> = frags.into_iter().collect();
    hits.sort();
    for (i, mut names) in hits {
        let (start, size) = img.fragment(i)?;
        if (start..start.saturating_add(size)).contains(&offset) {
            names.sort();
            return Some(match names.len() {
                1 => names.remove(0),
                n => format!(
                    "{} (a block shared with {} other small files)",
                    names[0],
                    n - 1
                ),
            });
        }
    }
    None
}

struct Super {
    block_size: u32,
    codec: Option<Codec>,
    root_inode: u64,
    inode_table: u64,
    dir_table: u64,
    frag_table: u64,
}

/// A file's data extent in the image and its fragment.
struct File {
    start: u64,
    end: u64,
    frag: u32,
}

struct Image<'a> {
    read_at: ReadAt<'a>,
    sb: Super,
    /// Decompressed metadata blocks by position: data and the next block's.
    blocks: HashMap<u64, (Vec<u8>, u64)>,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

impl<'a> Image<'a> {
    fn open(read_at: ReadAt<'a>) -> Option<Image<'a>> {
        let mut b = [0u8; 96];
        read_exact(read_at, &mut b, 0)?;
        if u32_at(&b, 0)? != MAGIC {
            return None;
        }
        let codec = match u16_at(&b, 20)? {
            4 => Some(Codec::Xz),
            6 => Some(Codec::Zstd),
            _ => None,
        };
        let sb = Super {
            block_size: u32_at(&b, 12)?.max(4096),
            codec,
            root_inode: u64_at(&b, 32)?,
            inode_table: u64_at(&b, 64)?,
            dir_table: u64_at(&b, 72)?,
            frag_table: u64_at(&b, 80)?,
        };
        Some(Image {
            read_at,
            sb,
            blocks: HashMap::new(),
        })
    }

    /// The metadata block at `pos`: its bytes and where the next starts.
    fn block(&mut self, pos: u64) -> Option<(Vec<u8>, u64)> {
        if let Some(b) = self.blocks.get(&pos) {
            return Some(b.clone());
        }
        let mut h = [0u8; 2];
        read_exact(self.read_at, &mut h, pos)?;
        let h = u16::from_le_bytes(h);
        let len = usize::from(h & 0x7fff);
        let mut raw = vec![0u8; len];
        read_exact(self.read_at, &mut raw, pos + 2)?;
        let data = if h & 0x8000 != 0 {
            raw
        } else {
            unpack::unpack(self.sb.codec?, &raw, META).ok()?
        };
        let next = pos + 2 + len as u64;
        if self.blocks.len() > 4096 {
            self.blocks.clear();
        }
        self.blocks.insert(pos, (data.clone(), next));
        Some((data, next))
    }

    /// `n` bytes of a metadata table from block `pos`, `offset` into it.
    fn meta(&mut self, mut pos: u64, mut offset: usize, n: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let (data, next) = self.block(pos)?;
            let take = data.get(offset..)?;
            if take.is_empty() {
                return None;
            }
            let k = take.len().min(n - out.len());
            out.extend_from_slice(&take[..k]);
            pos = next;
            offset = 0;
        }
        Some(out)
    }

    fn inode(&mut self, r: u64, n: usize) -> Option<Vec<u8>> {
        self.meta(self.sb.inode_table + (r >> 16), (r & 0xffff) as usize, n)
    }

    /// A directory's entries: name, basic type, inode reference.
    fn list(&mut self, dir: u64) -> Option<Vec<(String, u16, u64)>> {
        let h = self.inode(dir, 40)?;
        let (block, size, offset) = match u16_at(&h, 0)? {
            1 => (u32_at(&h, 16)?, u32::from(u16_at(&h, 24)?), u16_at(&h, 26)?),
            8 => (u32_at(&h, 24)?, u32_at(&h, 20)?, u16_at(&h, 34)?),
            _ => return None,
        };
        // The size counts 3 bytes more than the listing holds.
        let size = size.saturating_sub(3) as usize;
        if size == 0 {
            return Some(Vec::new());
        }
        let d = self.meta(self.sb.dir_table + u64::from(block), offset.into(), size)?;
        let mut out = Vec::new();
        let mut i = 0;
        while i + 12 <= d.len() {
            let count = u32_at(&d, i)?.checked_add(1)?;
            let start = u32_at(&d, i + 4)?;
            i += 12;
            for _ in 0..count {
                let off = u16_at(&d, i)?;
                let ty = u16_at(&d, i + 4)?;
                let len = usize::from(u16_at(&d, i + 6)?) + 1;
                let name = d.get(i + 8..i + 8 + len)?;
                i += 8 + len;
                if name.contains(&b'/') || name == b"." || name == b".." {
                    return None;
                }
                let r = (u64::from(start) << 16) | u64::from(off);
                out.push((String::from_utf8_lossy(name).into_owned(), ty, r));
            }
        }
        Some(out)
    }

    fn file(&mut self, r: u64) -> Option<File> {
        let h = self.inode(r, 56)?;
        let (start, size, frag, sizes_at) = match u16_at(&h, 0)? {
            2 => (
                u64::from(u32_at(&h, 16)?),
                u64::from(u32_at(&h, 28)?),
                u32_at(&h, 20)?,
                32,
            ),
            9 => (u64_at(&h, 16)?, u64_at(&h, 24)?, u32_at(&h, 44)?, 56),
            _ => return None,
        };
        let bs = u64::from(self.sb.block_size);
        let blocks = if frag == NO_FRAGMENT {
            size.div_ceil(bs)
        } else {
            size / bs
        };
        let n = usize::try_from(blocks).ok()?.checked_mul(4)?;
        if n > 64 << 20 {
            return None;
        }
        let all = self.inode(r, sizes_at + n)?;
        let stored: u64 = all[sizes_at..]
            .chunks_exact(4)
            .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x00ff_ffff))
            .sum();
        Some(File {
            start,
            end: start.checked_add(stored)?,
            frag,
        })
    }

    /// Fragment block `i`: where it starts and its stored size.
    fn fragment(&mut self, i: u32) -> Option<(u64, u64)> {
        let mut at = [0u8; 8];
        read_exact(
            self.read_at,
            &mut at,
            self.sb.frag_table + u64::from(i / 512) * 8,
        )?;
        let e = self.meta(u64::from_le_bytes(at), (i % 512) as usize * 16, 16)?;
        Some((u64_at(&e, 0)?, u64::from(u32_at(&e, 8)? & 0x00ff_ffff)))
    }
}

fn read_exact(read_at: ReadAt<'_>, buf: &mut [u8], off: u64) -> Option<()> {
    let mut got = 0;
    while got < buf.len() {
        match read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Against real mksquashfs: bytes of a large file (stored as they are,
    /// being noise) and of a small one (in a fragment block) are found in
    /// the image and named; the superblock is no file's.
    #[test]
    fn names_the_file_a_byte_of_a_real_squashfs_belongs_to() {
        let dir = std::env::temp_dir().join(format!("nixlive-sqfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("abc-pkg/share/deep")).unwrap();
        let big = noise(700_000, 7);
        let small = noise(3000, 11);
        std::fs::write(tree.join("abc-pkg/share/deep/big"), &big).unwrap();
        std::fs::write(tree.join("abc-pkg/small"), &small).unwrap();
        for i in 0..40 {
            std::fs::write(tree.join(format!("abc-pkg/f{i}")), noise(500, i + 100)).unwrap();
        }
        for comp in ["zstd", "xz"] {
            let img = dir.join(format!("img-{comp}.squashfs"));
            let ok = std::process::Command::new("mksquashfs")
                .arg(&tree)
                .arg(&img)
                .args(["-noappend", "-quiet", "-no-progress", "-comp", comp])
                .status()
                .expect("mksquashfs (squashfs-tools) is needed for this test");
            assert!(ok.success());
            let bytes = std::fs::read(&img).unwrap();
            let find =
                |probe: &[u8]| bytes.windows(probe.len()).position(|w| w == probe).unwrap() as u64;
            let f = std::fs::File::open(&img).unwrap();
            let mut read = |buf: &mut [u8], off: u64| f.read_at(buf, off);
            let at = find(&big[500_000..500_064]);
            assert_eq!(
                file_at(&mut read, at + 20).as_deref(),
                Some("/abc-pkg/share/deep/big"),
                "{comp}"
            );
            let at = find(&small[1000..1064]);
            let named = file_at(&mut read, at).unwrap();
            assert!(named.starts_with("/abc-pkg/"), "{comp}: {named}");
            assert!(
                named == "/abc-pkg/small" || named.contains("other small files"),
                "{comp}: {named}"
            );
            assert_eq!(file_at(&mut read, 10), None, "the superblock");
        }
        let mut not_sqfs = |buf: &mut [u8], _| {
            buf.fill(0);
            Ok(buf.len())
        };
        assert_eq!(file_at(&mut not_sqfs, 5000), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

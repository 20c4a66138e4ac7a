//! dm-verity in `veritysetup`'s (cryptsetup's) format, version 1, SHA-256:
//! the parameters a manifest records ([`Params`]), the hash tree the
//! builder appends to an image ([`build_tree`]), its superblock, and the
//! device-mapper table init loads ([`Params::target`]).
//!
//! On disk, an image with its tree is: the data (`data_blocks` blocks of
//! `data_block` bytes), then at `hash_offset` the 512-byte superblock in a
//! hash block of its own, then the tree's levels, the top one (a single
//! block) first, as `veritysetup format --hash-offset` writes it. Each hash
//! is SHA-256 over the salt then the block; the root hash is that of the
//! top block.

use crate::digest;
use crate::hex;
use std::io::{self, Read};
use thiserror::Error;

/// SHA-256's digest size, which is also each hash's slot in a hash block.
const DIGEST: usize = 32;
/// The superblock's size (it takes a whole hash block on disk).
pub const SUPERBLOCK_LEN: usize = 512;
/// The longest salt the superblock holds.
pub const MAX_SALT: usize = 256;
/// The block size the builder uses for data and hashes (the page size of
/// every architecture nixlive boots, and squashfs's own alignment).
pub const BLOCK: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub data_block: u32,
    pub hash_block: u32,
    pub data_blocks: u64,
    /// Where the superblock is, in bytes from the start of the file.
    pub hash_offset: u64,
    pub salt: Vec<u8>,
    pub root: [u8; DIGEST],
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamsError {
    #[error("{what} {size} is not a power of two from 512 to 4096")]
    BlockSize { what: &'static str, size: u64 },
    #[error("no data blocks")]
    NoData,
    #[error("the hash offset {hash_offset} is not a multiple of the hash block size {hash_block}")]
    Unaligned { hash_offset: u64, hash_block: u32 },
    #[error("the hash tree at {hash_offset} overlaps the data ({data} bytes)")]
    Overlap { hash_offset: u64, data: u64 },
    #[error("the data and hash tree need {need} bytes, more than the image's {size}")]
    Truncated { need: u64, size: u64 },
    #[error("the sizes add up past 2^64 bytes")]
    Overflow,
    #[error("the salt is {0} bytes, more than {MAX_SALT}")]
    Salt(usize),
}

fn block_size(what: &'static str, size: u64) -> Result<u32, ParamsError> {
    match size {
        512 | 1024 | 2048 | 4096 => Ok(size as u32),
        _ => Err(ParamsError::BlockSize { what, size }),
    }
}

/// How many hashes one hash block holds, as a power of two.
fn per_block_bits(hash_block: u32) -> u32 {
    (hash_block as usize / DIGEST).trailing_zeros()
}

/// The number of blocks in each level, level 0 (hashes of the data) first;
/// empty for a single data block (its hash is the root). cryptsetup's and
/// the kernel's formula.
pub fn levels(data_blocks: u64, hash_block: u32) -> Vec<u64> {
    let bits = per_block_bits(hash_block);
    let mut n = 0;
    while bits * n < 64 && (data_blocks.saturating_sub(1) >> (bits * n)) != 0 {
        n += 1;
    }
    (0..n)
        .map(|i| {
            let shift = bits * (i + 1);
            if shift >= 64 {
                1
            } else {
                // ceil(data_blocks / 2^shift) without overflowing.
                (data_blocks >> shift) + u64::from(data_blocks & ((1 << shift) - 1) != 0)
            }
        })
        .collect()
}

impl Params {
    /// Checks the parameters against each other and the image's `size`.
    pub fn check(&self, size: u64) -> Result<(), ParamsError> {
        block_size("data block size", self.data_block.into())?;
        block_size("hash block size", self.hash_block.into())?;
        if self.data_blocks == 0 {
            return Err(ParamsError::NoData);
        }
        if self.salt.len() > MAX_SALT {
            return Err(ParamsError::Salt(self.salt.len()));
        }
        if !self.hash_offset.is_multiple_of(self.hash_block.into()) {
            return Err(ParamsError::Unaligned {
                hash_offset: self.hash_offset,
                hash_block: self.hash_block,
            });
        }
        let data = self
            .data_blocks
            .checked_mul(self.data_block.into())
            .ok_or(ParamsError::Overflow)?;
        if self.hash_offset < data {
            return Err(ParamsError::Overlap {
                hash_offset: self.hash_offset,
                data,
            });
        }
        let need = self
            .hash_area_len()
            .and_then(|l| l.checked_add(self.hash_offset))
            .ok_or(ParamsError::Overflow)?;
        if need > size {
            return Err(ParamsError::Truncated { need, size });
        }
        Ok(())
    }

    /// The superblock and the tree, in bytes.
    pub fn hash_area_len(&self) -> Option<u64> {
        let blocks = levels(self.data_blocks, self.hash_block)
            .into_iter()
            .try_fold(1u64, |a, n| a.checked_add(n))?;
        blocks.checked_mul(self.hash_block.into())
    }

    /// The data's length in 512-byte sectors (the device-mapper target's).
    pub fn sectors(&self) -> u64 {
        self.data_blocks.saturating_mul(self.data_block.into()) / 512
    }

    /// The `verity` target's parameters with `dev` as both data and hash
    /// device, as `dmsetup table` shows them.
    pub fn target(&self, dev: &str) -> String {
        let hash_start = self.hash_offset / u64::from(self.hash_block) + 1;
        let salt = if self.salt.is_empty() {
            "-".to_string()
        } else {
            hex::encode(&self.salt)
        };
        format!(
            "1 {dev} {dev} {} {} {} {hash_start} sha256 {} {salt}",
            self.data_block,
            self.hash_block,
            self.data_blocks,
            hex::encode(&self.root)
        )
    }

    /// The superblock `veritysetup` reads (`uuid` identifies the tree).
    pub fn superblock(&self, uuid: [u8; 16]) -> [u8; SUPERBLOCK_LEN] {
        let mut sb = [0u8; SUPERBLOCK_LEN];
        sb[0..8].copy_from_slice(b"verity\0\0");
        sb[8..12].copy_from_slice(&1u32.to_le_bytes());
        sb[12..16].copy_from_slice(&1u32.to_le_bytes());
        sb[16..32].copy_from_slice(&uuid);
        sb[32..38].copy_from_slice(b"sha256");
        sb[64..68].copy_from_slice(&self.data_block.to_le_bytes());
        sb[68..72].copy_from_slice(&self.hash_block.to_le_bytes());
        sb[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        let salt = &self.salt[..self.salt.len().min(MAX_SALT)];
        sb[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        sb[88..88 + salt.len()].copy_from_slice(salt);
        sb
    }
}

/// Hashes `data_blocks` blocks read from `data` into a tree; returns the
/// tree's levels as they go on disk (top first, after the superblock) and
/// the root hash.
pub fn build_tree(
    mut data: impl Read,
    data_blocks: u64,
    data_block: u32,
    hash_block: u32,
    salt: &[u8],
) -> io::Result<(Vec<u8>, [u8; DIGEST])> {
    let hash = |block: &[u8]| {
        let mut h = digest::Hasher::new();
        h.update(salt);
        h.update(block);
        h.finish()
    };
    let hb = hash_block as usize;
    let n_levels = levels(data_blocks, hash_block).len();
    let mut buf = vec![0u8; data_block as usize];
    let mut level = Vec::new();
    let mut single = None;
    for _ in 0..data_blocks {
        data.read_exact(&mut buf)?;
        let h = hash(&buf);
        if n_levels == 0 {
            single = Some(h);
        }
        level.extend_from_slice(&h);
    }
    pad(&mut level, hb);
    if let Some(root) = single {
        return Ok((Vec::new(), root));
    }
    let mut built = vec![level];
    while built.len() < n_levels {
        let prev = built.last().map(Vec::as_slice).unwrap_or_default();
        let mut next = Vec::new();
        for block in prev.chunks(hb) {
            next.extend_from_slice(&hash(block));
        }
        pad(&mut next, hb);
        built.push(next);
    }
    let root = hash(built.last().map(Vec::as_slice).unwrap_or_default());
    let tree = built.into_iter().rev().flatten().collect();
    Ok((tree, root))
}

/// Pads a level to whole hash blocks (its hashes are packed, as each
/// SHA-256 fills its 32-byte slot).
fn pad(level: &mut Vec<u8>, hb: usize) {
    let rest = (hb - level.len() % hb) % hb;
    level.resize(level.len() + rest, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(data_blocks: u64) -> Params {
        Params {
            data_block: 4096,
            hash_block: 4096,
            data_blocks,
            hash_offset: data_blocks * 4096,
            salt: vec![1; 32],
            root: [0; 32],
        }
    }

    #[test]
    fn level_sizes_as_cryptsetup() {
        assert_eq!(levels(1, 4096), Vec::<u64>::new());
        assert_eq!(levels(2, 4096), vec![1]);
        assert_eq!(levels(128, 4096), vec![1]);
        assert_eq!(levels(129, 4096), vec![2, 1]);
        assert_eq!(levels(128 * 128 + 1, 4096), vec![129, 2, 1]);
        assert_eq!(levels(u64::MAX, 4096).last(), Some(&1));
    }

    #[test]
    fn checks() {
        let p = params(129);
        // superblock + 2 + 1 blocks
        assert_eq!(p.hash_area_len(), Some(4 * 4096));
        let size = 129 * 4096 + 4 * 4096;
        assert_eq!(p.check(size), Ok(()));
        assert_eq!(
            p.check(size - 1),
            Err(ParamsError::Truncated {
                need: size,
                size: size - 1
            })
        );
        let mut q = p.clone();
        q.hash_block = 3000;
        assert!(matches!(q.check(size), Err(ParamsError::BlockSize { .. })));
        let mut q = p.clone();
        q.hash_offset -= 4096;
        assert!(matches!(q.check(size), Err(ParamsError::Overlap { .. })));
        let mut q = p.clone();
        q.hash_offset += 1;
        assert!(matches!(q.check(size), Err(ParamsError::Unaligned { .. })));
        let mut q = p.clone();
        q.data_blocks = u64::MAX;
        assert_eq!(q.check(u64::MAX), Err(ParamsError::Overflow));
        let mut q = p.clone();
        q.data_blocks = 0;
        assert_eq!(q.check(size), Err(ParamsError::NoData));
        q = p.clone();
        q.salt = vec![0; 257];
        assert_eq!(q.check(size), Err(ParamsError::Salt(257)));
    }

    #[test]
    fn table_and_superblock() {
        let mut p = params(129);
        p.root = [0xab; 32];
        assert_eq!(
            p.target("7:0"),
            format!(
                "1 7:0 7:0 4096 4096 129 130 sha256 {} {}",
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
        assert_eq!(p.sectors(), 129 * 8);
        let sb = p.superblock([9; 16]);
        assert_eq!(&sb[..8], b"verity\0\0");
        assert_eq!(u64::from_le_bytes(sb[72..80].try_into().unwrap()), 129);
        assert_eq!(sb[80], 32);
        p.salt.clear();
        assert!(p.target("x").ends_with(" -"));
    }

    #[test]
    fn tree_shape() {
        let data = vec![7u8; 4096 * 130];
        let (tree, root) = build_tree(&data[..], 130, 4096, 4096, b"s").unwrap();
        assert_eq!(tree.len(), 3 * 4096);
        // The top block holds the hashes of level 0's two blocks.
        let h = |b: &[u8]| {
            let mut x = digest::Hasher::new();
            x.update(b"s");
            x.update(b);
            x.finish()
        };
        assert_eq!(&tree[..32], &h(&tree[4096..8192]));
        assert_eq!(&tree[32..64], &h(&tree[8192..12288]));
        assert_eq!(root, h(&tree[..4096]));
        assert_eq!(&tree[4096..4128], &h(&data[..4096]));
        // One block: its hash is the root, no tree.
        let (tree, root) = build_tree(&data[..4096], 1, 4096, 4096, b"s").unwrap();
        assert!(tree.is_empty());
        assert_eq!(root, h(&data[..4096]));
        // Short data is an error, not a short tree.
        assert!(build_tree(&data[..4095], 1, 4096, 4096, b"s").is_err());
    }
}

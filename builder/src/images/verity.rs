//! The dm-verity hash tree of an image, appended to it in `veritysetup`'s
//! format (superblock, then the levels): the image is padded to whole
//! 4 KiB blocks, hashed with a salt taken from its own SHA-256 (so the same
//! image gives the same tree), and the tree written after it.
//!
//! Non-goals: no forward error correction, no separate hash files.

use anyhow::{Context, Result};
use nixlive_formats::digest;
use nixlive_formats::verity::{self, BLOCK, Params};
use std::fs;
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::Path;

/// Appends the hash tree to `image`; returns its parameters for the manifest.
pub fn append_tree(image: &Path) -> Result<Params> {
    let ctx = || format!("writing the hash tree of {}", image.display());
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(ctx)?;
    let len = f.metadata().with_context(ctx)?.len();
    let data = len.div_ceil(BLOCK.into()) * u64::from(BLOCK);
    f.set_len(data).with_context(ctx)?;
    f.seek(SeekFrom::Start(0)).with_context(ctx)?;
    let sum = digest::sha256_read(BufReader::new(&mut f)).with_context(ctx)?;
    let salt = digest::sha256(format!("nixlive-verity-salt {}", sum.hex).as_bytes()).to_vec();
    f.seek(SeekFrom::Start(0)).with_context(ctx)?;
    let data_blocks = data / u64::from(BLOCK);
    let (tree, root) = verity::build_tree(
        BufReader::with_capacity(1 << 20, &mut f),
        data_blocks,
        BLOCK,
        BLOCK,
        &salt,
    )
    .with_context(ctx)?;
    let params = Params {
        data_block: BLOCK,
        hash_block: BLOCK,
        data_blocks,
        hash_offset: data,
        salt,
        root,
    };
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&root[..16]);
    // An RFC 4122 version-4 shape, as veritysetup's own UUIDs have.
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let mut sb = params.superblock(uuid).to_vec();
    sb.resize(BLOCK as usize, 0);
    f.seek(SeekFrom::Start(data)).with_context(ctx)?;
    f.write_all(&sb)
        .and_then(|()| f.write_all(&tree))
        .and_then(|()| f.sync_all())
        .with_context(ctx)?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_follows_the_padded_image() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("x.squashfs");
        fs::write(&img, vec![3u8; 4096 * 200 + 10]).unwrap();
        let p = append_tree(&img).unwrap();
        assert_eq!((p.data_blocks, p.hash_offset), (201, 201 * 4096));
        let size = fs::metadata(&img).unwrap().len();
        assert_eq!(size, p.hash_offset + p.hash_area_len().unwrap());
        p.check(size).unwrap();
        let bytes = fs::read(&img).unwrap();
        assert_eq!(&bytes[p.hash_offset as usize..][..8], b"verity\0\0");
        // The padding is zeros; the same image gives the same tree.
        assert!(bytes[4096 * 200 + 10..4096 * 201].iter().all(|&b| b == 0));
        let again = d.path().join("y");
        fs::write(&again, vec![3u8; 4096 * 200 + 10]).unwrap();
        assert_eq!(append_tree(&again).unwrap(), p);
        let e = append_tree(&d.path().join("missing")).unwrap_err();
        assert!(format!("{e:#}").contains("hash tree of"), "{e:#}");
    }
}

//! The squashfs superblock, as far as readers of a finished medium need it:
//! which compression an image uses.

/// A squashfs image's compression, from the first 96 bytes (its
/// superblock); `None` when it is not squashfs or the id is unknown.
pub fn compression(head: &[u8]) -> Option<&'static str> {
    if head.get(..4)? != b"hsqs" {
        return None;
    }
    Some(match u16::from_le_bytes([*head.get(20)?, *head.get(21)?]) {
        1 => "gzip",
        2 => "lzma",
        3 => "lzo",
        4 => "xz",
        5 => "lz4",
        6 => "zstd",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_the_superblock() {
        let mut h = vec![0u8; 96];
        h[..4].copy_from_slice(b"hsqs");
        h[20] = 6;
        assert_eq!(compression(&h), Some("zstd"));
        h[20] = 4;
        assert_eq!(compression(&h), Some("xz"));
        h[20] = 9;
        assert_eq!(compression(&h), None);
        assert_eq!(compression(b"nope"), None);
        assert_eq!(compression(b"hsqs"), None);
    }
}

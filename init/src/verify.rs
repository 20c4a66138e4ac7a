//! Checking an image against the SHA-256 its manifest gives.

use crate::error::BootError;
use nixlive_formats::digest;

/// Hashes `path` and compares it with `want` (empty: the stock layout,
/// which has no digest to compare with).
pub fn verify_file(path: &str, want: &str) -> Result<(), BootError> {
    let file = std::fs::File::open(path).map_err(BootError::sys("open", path))?;
    let got = digest::sha256_read(file).map_err(BootError::sys("read", path))?;
    check(path, want, &got.hex)?;
    log::info!("{path}: sha256 verified");
    Ok(())
}

/// `Ok` when `got` is what the manifest says (or it says nothing).
pub fn check(path: &str, want: &str, got: &str) -> Result<(), BootError> {
    if !want.is_empty() && want != got {
        return Err(BootError::Digest {
            path: path.to_string(),
            want: want.to_string(),
            got: got.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_image_is_named_with_both_digests() {
        let dir = std::env::temp_dir().join(format!("nixlive-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("img.squashfs");
        std::fs::write(&img, b"image").unwrap();
        let path = img.to_str().unwrap();
        let right = digest::sha256_hex(b"image");
        assert!(verify_file(path, &right).is_ok());
        assert!(
            verify_file(path, "").is_ok(),
            "the stock layout has no digest"
        );
        let e = verify_file(path, &"0".repeat(64)).unwrap_err().to_string();
        assert!(
            e.contains(path) && e.contains(&right) && e.contains("damaged"),
            "{e}"
        );
        let gone = verify_file("/nonexistent/img", &right).unwrap_err();
        assert_eq!(
            nixlive_formats::error::chain(&gone),
            "open /nonexistent/img: No such file or directory (os error 2)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

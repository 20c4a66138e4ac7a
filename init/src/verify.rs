//! Checking an image against the SHA-256 its manifest gives.

use crate::error::BootError;
use nixlive_formats::digest;

/// Hashes `path` (a regular file, not through a symlink) and compares it
/// with `want` (empty: the stock layout, which has no digest to compare with).
#[cfg(test)]
pub fn verify_file(path: &str, want: &str) -> Result<(), BootError> {
    let file = crate::exec::open_regular(path, false).map_err(BootError::sys("open", path))?;
    verify_open(path, &file, want)
}

/// Hashes the open file `file` (which is `path`), from its start, with a
/// progress line on the console, and compares it with `want`. The caller
/// goes on using the same open file: what was checked is what is used.
pub fn verify_open(path: &str, file: &std::fs::File, want: &str) -> Result<(), BootError> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata().map_err(BootError::sys("stat", path))?.len();
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut line = crate::check::Progress::new(&format!("checking {name}"), 0, size);
    let mut h = digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        // Positioned reads: the file's offset is of no concern to the loop device.
        let n = match file.read_at(&mut buf, h.len()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BootError::sys("read", path)(e)),
        };
        h.update(&buf[..n]);
        line.at(h.len());
    }
    line.end();
    check(path, want, &h.finish_hex())?;
    if want.is_empty() {
        log::warn!(
            "{path}: read whole, but the manifest gives no sha256 (the stock layout): not verified"
        );
    } else {
        log::info!("{path}: sha256 verified");
    }
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
        // Never through a symlink, never a FIFO (which would block).
        let link = dir.join("link.squashfs");
        std::os::unix::fs::symlink(&img, &link).unwrap();
        let e = verify_file(link.to_str().unwrap(), &right).unwrap_err();
        assert!(
            nixlive_formats::error::chain(&e).contains("symbolic links"),
            "{e:?}"
        );
        let fifo = dir.join("fifo.squashfs");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = verify_file(fifo.to_str().unwrap(), &right).unwrap_err();
        assert!(
            nixlive_formats::error::chain(&e).contains("a FIFO, not a regular file"),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

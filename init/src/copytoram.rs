//! `copytoram`: copy the images into a tmpfs so the medium can be removed.
//! Deciding (does it fit?) is pure; copying shows a progress line and
//! verifies each image's sha256 against the manifest.

use crate::error::BootError;
use nixlive_formats::digest;
use std::io::{Read, Write};
use std::time::Instant;

/// What must stay free for the running system after the copy.
pub const RESERVE: u64 = 256 << 20;

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kb = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        kb.checked_mul(1024)
    })
}

/// The size of the tmpfs to copy `total` bytes of images into, or why not.
pub fn decide(total: u64, available: u64) -> Result<u64, String> {
    // Room for the tmpfs's own metadata: a page per MiB is plenty.
    let size = total + total / 256 + (1 << 20);
    let need = size + RESERVE;
    if need > available {
        Err(format!(
            "copytoram: the images need {} MiB plus {} MiB to run, but only {} MiB are available; \
             booting from the medium instead (it must stay connected)",
            total >> 20,
            RESERVE >> 20,
            available >> 20
        ))
    } else {
        Ok(size)
    }
}

/// `copying to RAM: 45% (123 MiB of 273 MiB, 40.2 MB/s, 4 s left)`:
/// `done` of `total`, at `copied` bytes in `secs` (the estimate at that
/// rate; none once done or before a rate is known).
pub fn progress_line(done: u64, total: u64, copied: u64, secs: f64) -> String {
    crate::console::progress_line("copying to RAM", done, total, copied, secs, true)
}

/// Copies `src` to `dst`, hashing on the way, with a progress line on
/// `console` (`done_before` of `total` bytes were copied before this file).
/// Returns the lowercase hex SHA-256 of what was copied.
pub fn copy_verified(
    src: &str,
    dst: &str,
    done_before: u64,
    total: u64,
    console: &mut dyn Write,
) -> std::io::Result<String> {
    let start = Instant::now();
    let mut input = crate::exec::open_regular(src, false)?;
    let mut out = std::fs::File::create(dst)?;
    let mut hasher = digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut last_pct = u64::MAX;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        let done = done_before + hasher.len();
        let pct = done * 100 / total.max(1);
        if pct != last_pct {
            last_pct = pct;
            // not fatal: the progress line is a courtesy.
            let secs = start.elapsed().as_secs_f64();
            let _ = write!(
                console,
                "\r{}",
                progress_line(done, total, hasher.len(), secs)
            );
        }
    }
    out.sync_all()?;
    if done_before + hasher.len() >= total {
        let _ = writeln!(console);
    }
    Ok(hasher.finish_hex())
}

/// One image of a `copytoram`: copied, then checked against the manifest.
pub fn copy_image(
    from: &str,
    to: &str,
    sha256: &str,
    done: u64,
    total: u64,
) -> Result<(), BootError> {
    let got =
        copy_verified(from, to, done, total, &mut crate::console::writer()).map_err(|source| {
            BootError::Sys {
                call: "copy",
                path: format!("{from} to {to}"),
                source,
            }
        })?;
    crate::verify::check(from, sha256, &got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let t =
            "MemTotal:        1000000 kB\nMemFree:          500 kB\nMemAvailable:     812345 kB\n";
        assert_eq!(mem_available(t), Some(812345 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn fits_or_refuses() {
        let gib = 1u64 << 30;
        let size = decide(100 << 20, gib).unwrap();
        assert!(size > 100 << 20 && size < 102 << 20);
        let why = decide(900 << 20, gib).unwrap_err();
        assert!(why.contains("900 MiB") && why.contains("1024 MiB"), "{why}");
    }

    #[test]
    fn progress() {
        assert_eq!(
            progress_line(50 << 20, 100 << 20, 50 << 20, 2.0),
            "copying to RAM:  50% (50 MiB of 100 MiB, 26.2 MB/s, 2 s left)"
        );
        assert_eq!(
            progress_line(100 << 20, 100 << 20, 100 << 20, 4.0),
            "copying to RAM: 100% (100 MiB of 100 MiB, 26.2 MB/s)"
        );
        assert!(progress_line(0, 0, 0, 0.0).contains("100%"));
    }

    #[test]
    fn copy_hashes_what_it_copies() {
        let dir = std::env::temp_dir().join(format!("nixlive-c2r-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("a");
        std::fs::write(&src, b"abc").unwrap();
        let dst = dir.join("b");
        let mut console = Vec::new();
        let h = copy_verified(
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            0,
            3,
            &mut console,
        )
        .unwrap();
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(&dst).unwrap(), b"abc");
        let shown = String::from_utf8(console).unwrap();
        assert!(shown.contains("100%") && shown.ends_with('\n'), "{shown:?}");
        // A changed image is found while copying.
        let e = copy_image(
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            &"0".repeat(64),
            0,
            3,
        )
        .unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

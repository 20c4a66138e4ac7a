//! `copytoram`: copy the images into a tmpfs so the medium can be removed.
//! Deciding (does it fit?) is pure; copying shows a progress line and
//! verifies each image's sha256 against the manifest.

use sha2::{Digest, Sha256};
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

/// `copying to RAM: 45% (123 MiB of 273 MiB, 40.2 MB/s)`.
pub fn progress_line(done: u64, total: u64, secs: f64) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let rate = if secs > 0.0 {
        done as f64 / 1e6 / secs
    } else {
        0.0
    };
    format!(
        "copying to RAM: {pct:3}% ({} MiB of {} MiB, {rate:.1} MB/s)",
        done >> 20,
        total >> 20
    )
}

/// Copies `src` to `dst`, hashing on the way; writes progress to `console`.
/// Returns the lowercase hex sha256 of what was copied.
pub fn copy_verified(
    src: &str,
    dst: &str,
    done_before: u64,
    total: u64,
    start: Instant,
    console: &mut dyn Write,
) -> std::io::Result<String> {
    let mut input = std::fs::File::open(src)?;
    let mut out = std::fs::File::create(dst)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = done_before;
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
        done += n as u64;
        let pct = done * 100 / total.max(1);
        if pct != last_pct {
            last_pct = pct;
            // not fatal: the progress line is a courtesy.
            let _ = write!(
                console,
                "\r{}",
                progress_line(done, total, start.elapsed().as_secs_f64())
            );
        }
    }
    out.sync_all()?;
    Ok(hex(&hasher.finalize()))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// sha256 of a file, for `nixlive.verify` without copying.
pub fn sha256_file(path: &str) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex(&hasher.finalize()))
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
            progress_line(50 << 20, 100 << 20, 2.0),
            "copying to RAM:  50% (50 MiB of 100 MiB, 26.2 MB/s)"
        );
        assert!(progress_line(0, 0, 0.0).contains("100%"));
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
            Instant::now(),
            &mut console,
        )
        .unwrap();
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(&dst).unwrap(), b"abc");
        assert!(String::from_utf8(console).unwrap().contains("100%"));
        assert_eq!(sha256_file(src.to_str().unwrap()).unwrap(), h);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

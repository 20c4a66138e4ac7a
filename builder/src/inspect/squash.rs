//! The store inside a medium's squashfs images, seen through squashfs-tools'
//! `unsquashfs` (listing with `-lln`, reading with `-cat`): the stage-2 init
//! and its interpreter, and the registration.
//!
//! Non-goals: no squashfs reader of our own (unsquashfs reads every
//! compression mksquashfs writes), no erofs yet.

use crate::check::facts::{StoreEntry, StoreView};
use crate::tool;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An `ls -l` mode string (`-r-xr-xr-x`, `lrwxrwxrwx`) as mode bits.
pub fn parse_mode(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 10 {
        return None;
    }
    let mut mode = match b[0] {
        b'-' => 0o100000,
        b'd' => 0o040000,
        b'l' => 0o120000,
        b'c' => 0o020000,
        b'b' => 0o060000,
        b'p' => 0o010000,
        b's' => 0o140000,
        _ => return None,
    };
    for (i, &c) in b[1..].iter().enumerate() {
        let bit = 1 << (8 - i);
        let exec = i % 3 == 2;
        match c {
            b'-' => {}
            b'r' | b'w' | b'x' => mode |= bit,
            b's' | b't' if exec => mode |= bit | special(i),
            b'S' | b'T' if exec => mode |= special(i),
            _ => return None,
        }
    }
    Some(mode)
}

fn special(i: usize) -> u32 {
    match i / 3 {
        0 => 0o4000,
        1 => 0o2000,
        _ => 0o1000,
    }
}

/// One line of `unsquashfs -lln -d ""`: the path (from `/`), mode and
/// symlink target.
pub fn parse_listing_line(line: &str) -> Option<(String, u32, Option<String>)> {
    let mut it = line.splitn(6, ' ').filter(|s| !s.is_empty());
    let mode = parse_mode(it.next()?)?;
    // owner, size, date, time; the rest is the path.
    let rest = line
        .split_whitespace()
        .skip(5)
        .collect::<Vec<_>>()
        .join(" ");
    let (path, link) = match rest.split_once(" -> ") {
        Some((p, l)) if mode & 0o170000 == 0o120000 => (p.to_string(), Some(l.to_string())),
        _ => (rest, None),
    };
    (!path.is_empty()).then_some((path, mode, link))
}

/// One image's listing.
pub struct Image {
    pub path: PathBuf,
    entries: BTreeMap<String, (u32, Option<String>)>,
}

impl Image {
    pub fn list(path: &Path) -> Result<Image> {
        let out = tool::output(
            Command::new("unsquashfs")
                .args(["-lln", "-d", ""])
                .arg(path),
            "unsquashfs",
        )?;
        let entries = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(parse_listing_line)
            .map(|(p, m, l)| (p, (m, l)))
            .collect();
        Ok(Image {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// A file's bytes (`rel` from the image's root, e.g. `nix-path-registration`).
    pub fn cat(&self, rel: &str) -> Result<Vec<u8>> {
        tool::output(
            Command::new("unsquashfs")
                .arg("-cat")
                .arg(&self.path)
                .arg(rel),
            "unsquashfs",
        )
    }

    /// The top-level names (`<hash>-<name>` store paths and files).
    pub fn top_names(&self) -> impl Iterator<Item = &str> {
        self.entries
            .keys()
            .filter_map(|p| p.strip_prefix('/'))
            .filter(|p| !p.is_empty() && !p.contains('/'))
    }
}

/// The store the images make, top image first (the overlay's order).
pub struct Store {
    pub images: Vec<Image>,
    pub closure: BTreeSet<String>,
}

impl StoreView for Store {
    fn entry(&self, path: &str) -> Option<StoreEntry> {
        let rel = path.strip_prefix("/nix/store")?;
        for img in &self.images {
            if let Some((mode, link)) = img.entries.get(rel) {
                let head = if *mode & 0o170000 == 0o100000 {
                    img.cat(rel.trim_start_matches('/')).unwrap_or_default()
                } else {
                    Vec::new()
                };
                return Some(StoreEntry {
                    mode: *mode,
                    link: link.clone(),
                    head,
                });
            }
        }
        None
    }

    fn closure(&self) -> &BTreeSet<String> {
        &self.closure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_lines() {
        assert_eq!(parse_mode("-r-xr-xr-x"), Some(0o100555));
        assert_eq!(parse_mode("drwxr-xr-x"), Some(0o040755));
        assert_eq!(parse_mode("lrwxrwxrwx"), Some(0o120777));
        assert_eq!(parse_mode("-rwsr-xr-t"), Some(0o105755));
        assert_eq!(parse_mode("-rw-r--r--"), Some(0o100644));
        assert_eq!(parse_mode("?rw"), None);
        assert_eq!(
            parse_listing_line("-r-xr-xr-x 0/0   460248 1970-01-01 00:00 /abc-sys/init"),
            Some(("/abc-sys/init".into(), 0o100555, None))
        );
        assert_eq!(
            parse_listing_line(
                "lrwxrwxrwx 0/0  24 1970-01-01 00:00 /abc-sys/lib -> /nix/store/x-lib"
            ),
            Some((
                "/abc-sys/lib".into(),
                0o120777,
                Some("/nix/store/x-lib".into())
            ))
        );
        assert_eq!(
            parse_listing_line("drwxr-xr-x 0/0   104 1970-01-01 00:00 "),
            None
        );
    }
}

//! The medium manifest: which images to mount, in which order, and what to
//! run afterwards.
//!
//! ```text
//! nixlive-manifest 1
//! init /nix/store/<hash>-nixos-system/init
//! registration /nix/store/nix-path-registration
//! image nix-store.squashfs squashfs 1048576 sha256:<64 lowercase hex>
//! ```
//!
//! Rules: the header comes first; `init` and `registration` once each
//! (absolute, clean paths); one or more `image` lines, in overlay order (the
//! first is the top layer). Image names are relative to the directory that
//! holds the manifest, without `..`. Unknown keys are errors: a newer
//! manifest must bump the version rather than be half-understood.

use crate::lines::{LineError, check_header, is_clean_absolute, is_safe_relative, records};
use std::fmt;

pub const MAGIC: &str = "nixlive-manifest";
pub const VERSION: u32 = 1;
/// Where the manifest sits on the medium, relative to its root.
pub const DEFAULT_PATH: &str = "nixlive.manifest";
/// The stock NixOS ISO's image, used when a medium has no manifest.
pub const STOCK_IMAGE: &str = "nix-store.squashfs";
/// The most a manifest may be: a reader stops there (a real one is a few
/// hundred bytes).
pub const MAX_BYTES: u64 = 64 << 10;
/// The most images a manifest may list: each is a loop device and a lower
/// layer, and the overlay's options (every layer's path) must fit in a page.
pub const MAX_IMAGES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFs {
    Squashfs,
    Erofs,
}

impl ImageFs {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFs::Squashfs => "squashfs",
            ImageFs::Erofs => "erofs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// Relative to the manifest's directory.
    pub name: String,
    pub fs: ImageFs,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub init: String,
    pub registration: String,
    pub images: Vec<ImageEntry>,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, LineError> {
        let recs = records(text)?;
        check_header(&recs, MAGIC, VERSION)?;
        let mut init = None;
        let mut registration = None;
        let mut images: Vec<ImageEntry> = Vec::new();
        for (n, f) in &recs[1..] {
            let n = *n;
            match f[0] {
                "init" | "registration" => {
                    if f.len() != 2 {
                        return Err(LineError::new(n, format!("`{}` takes one path", f[0])));
                    }
                    if !is_clean_absolute(f[1]) {
                        return Err(LineError::new(
                            n,
                            format!("`{}` must be a clean absolute path, got `{}`", f[0], f[1]),
                        ));
                    }
                    let slot = if f[0] == "init" {
                        &mut init
                    } else {
                        &mut registration
                    };
                    if slot.replace(f[1].to_string()).is_some() {
                        return Err(LineError::new(n, format!("`{}` given twice", f[0])));
                    }
                }
                "image" => {
                    if f.len() != 5 {
                        return Err(LineError::new(
                            n,
                            "`image` takes NAME FSTYPE SIZE sha256:HEX",
                        ));
                    }
                    let name = f[1];
                    if !is_safe_relative(name) {
                        return Err(LineError::new(
                            n,
                            format!("image name `{name}` must be relative, without `..`"),
                        ));
                    }
                    if images.len() == MAX_IMAGES {
                        return Err(LineError::new(
                            n,
                            format!("more than {MAX_IMAGES} images (the overlay's limit here)"),
                        ));
                    }
                    if images.iter().any(|i| i.name == name) {
                        return Err(LineError::new(n, format!("image `{name}` listed twice")));
                    }
                    let fs = match f[2] {
                        "squashfs" => ImageFs::Squashfs,
                        "erofs" => ImageFs::Erofs,
                        other => {
                            return Err(LineError::new(
                                n,
                                format!("image type `{other}` is not squashfs or erofs"),
                            ));
                        }
                    };
                    // Canonical decimal only: no sign, no leading zero.
                    let canonical = f[3].bytes().all(|b| b.is_ascii_digit())
                        && !(f[3].len() > 1 && f[3].starts_with('0'));
                    let size = f[3]
                        .parse::<u64>()
                        .ok()
                        .filter(|_| canonical)
                        .ok_or_else(|| LineError::new(n, format!("bad image size `{}`", f[3])))?;
                    let hex = f[4].strip_prefix("sha256:").unwrap_or("");
                    if hex.len() != 64
                        || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    {
                        return Err(LineError::new(
                            n,
                            format!(
                                "bad digest `{}` (want sha256: and 64 lowercase hex digits)",
                                f[4]
                            ),
                        ));
                    }
                    images.push(ImageEntry {
                        name: name.to_string(),
                        fs,
                        size,
                        sha256: hex.to_string(),
                    });
                }
                other => return Err(LineError::new(n, format!("unknown key `{other}`"))),
            }
        }
        let last = recs.last().map(|r| r.0).unwrap_or(1);
        let init = init.ok_or_else(|| LineError::new(last, "no `init` line"))?;
        let registration =
            registration.ok_or_else(|| LineError::new(last, "no `registration` line"))?;
        if images.is_empty() {
            return Err(LineError::new(last, "no `image` line"));
        }
        // Sizes are added up for copytoram: their sum must be a number.
        if images
            .iter()
            .try_fold(0u64, |a, i| a.checked_add(i.size))
            .is_none()
        {
            return Err(LineError::new(
                last,
                "the images' sizes add up past 2^64 bytes",
            ));
        }
        Ok(Manifest {
            init,
            registration,
            images,
        })
    }
}

impl fmt::Display for Manifest {
    /// Renders the canonical text, which [`Manifest::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{MAGIC} {VERSION}")?;
        writeln!(f, "init {}", self.init)?;
        writeln!(f, "registration {}", self.registration)?;
        for i in &self.images {
            writeln!(
                f,
                "image {} {} {} sha256:{}",
                i.name,
                i.fs.as_str(),
                i.size,
                i.sha256
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn good() -> String {
        format!(
            "nixlive-manifest 1\n# a comment\ninit /nix/store/aaa-sys/init\nregistration /nix/store/nix-path-registration\nimage base.squashfs squashfs 4096 sha256:{H}\nimage extra/top.erofs erofs 10 sha256:{H}\n"
        )
    }

    #[test]
    fn parses_and_round_trips() {
        let m = Manifest::parse(&good()).unwrap();
        assert_eq!(m.init, "/nix/store/aaa-sys/init");
        assert_eq!(m.images.len(), 2);
        assert_eq!(m.images[1].fs, ImageFs::Erofs);
        assert_eq!(m.images[0].size, 4096);
        assert_eq!(Manifest::parse(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn rejects_with_line_numbers() {
        let cases: &[(&str, usize)] = &[
            ("nixlive-manifest 2\n", 1),
            ("nixlive-manifest 1\ninit relative\n", 2),
            ("nixlive-manifest 1\ninit /a\ninit /b\n", 3),
            ("nixlive-manifest 1\nfoo bar\n", 2),
        ];
        for (text, line) in cases {
            assert_eq!(Manifest::parse(text).unwrap_err().line, *line, "{text}");
        }
        let bad_images = [
            format!("image ../x squashfs 1 sha256:{H}"),
            format!("image x ext4 1 sha256:{H}"),
            format!("image x squashfs -1 sha256:{H}"),
            format!("image x squashfs 01 sha256:{H}"),
            format!("image x squashfs 1 sha256:{}", &H[1..]),
            format!("image x squashfs 1 md5:{H}"),
            format!("image x squashfs 1 sha256:{}", H.to_uppercase()),
        ];
        for img in bad_images {
            let text = format!("nixlive-manifest 1\ninit /a\nregistration /b\n{img}\n");
            assert_eq!(Manifest::parse(&text).unwrap_err().line, 4, "{img}");
        }
        let no_image = "nixlive-manifest 1\ninit /a\nregistration /b\n";
        assert!(Manifest::parse(no_image).unwrap_err().msg.contains("image"));
        let dup = format!(
            "nixlive-manifest 1\ninit /a\nregistration /b\nimage x squashfs 1 sha256:{H}\nimage x squashfs 1 sha256:{H}\n"
        );
        assert_eq!(Manifest::parse(&dup).unwrap_err().line, 5);
    }

    #[test]
    fn limits_on_images() {
        let line = |i: usize, size: &str| {
            format!(
                "image i{i}.squashfs squashfs {size} sha256:{}\n",
                "a".repeat(64)
            )
        };
        let head = "nixlive-manifest 1\ninit /i\nregistration /r\n";
        let many: String = (0..=MAX_IMAGES).map(|i| line(i, "1")).collect();
        let e = Manifest::parse(&format!("{head}{many}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("line {}", MAX_IMAGES + 4)) && e.contains("more than 64"),
            "{e}"
        );
        let just: String = (0..MAX_IMAGES).map(|i| line(i, "1")).collect();
        assert_eq!(
            Manifest::parse(&format!("{head}{just}"))
                .unwrap()
                .images
                .len(),
            MAX_IMAGES
        );
        let huge = format!("{head}{}{}", line(0, &u64::MAX.to_string()), line(1, "1"));
        let e = Manifest::parse(&huge).unwrap_err().to_string();
        assert!(e.contains("add up past"), "{e}");
    }
}

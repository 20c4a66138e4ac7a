//! The medium manifest: which images to mount, in which order, and what to
//! run afterwards.
//!
//! ```text
//! nixlive-manifest 2
//! init /nix/store/<hash>-nixos-system/init
//! registration /nix/store/nix-path-registration
//! image nix-store.squashfs squashfs 1069056 sha256:<64 lowercase hex>
//! verity sha256 data-block=4096 hash-block=4096 data-blocks=256 hash-offset=1048576 salt=<hex> root=<64 hex>
//! sig cache.example.org-1:<base 64 of 64 bytes>
//! ```
//!
//! Rules: the header comes first; `init` and `registration` once each
//! (absolute, clean paths); one or more `image` lines, in overlay order (the
//! first is the top layer). Image names are relative to the directory that
//! holds the manifest, without `..`. Unknown keys are errors: a newer
//! manifest must bump the version rather than be half-understood.
//!
//! Version 2 adds (version 1, without them, is still read):
//! - `verity`, right after an `image` line: that image carries a dm-verity
//!   hash tree in `veritysetup`'s format ([`crate::verity`]) at
//!   `hash-offset`, inside its `SIZE` bytes; the fields come in this order.
//! - `sig NAME:BASE64`: an Ed25519 signature by the Nix binary-cache key
//!   NAME ([`crate::nixkey`]) over the manifest's exact bytes without its
//!   `sig` lines ([`signed_part`]).
//!
//! Version 3 adds `file NAME SIZE sha256:HEX`: a file of the medium that
//! changes the booted system (the SSH keys `nixlive/authorized_keys`),
//! named as images are; a signed boot uses such a file only when its
//! size and digest match. A manifest without `file` lines is written as
//! version 2, byte for byte as before.

use crate::lines::{LineError, header_version, is_clean_absolute, is_safe_relative, records};
use crate::nixkey::Signature;
use crate::verity;
use std::fmt;

pub const MAGIC: &str = "nixlive-manifest";
/// The newest version; versions 1 to 3 are read. A manifest is written
/// in the oldest version that holds it ([`Manifest::version`]).
pub const VERSION: u32 = 3;
/// Where the manifest sits on the medium, relative to its root.
pub const DEFAULT_PATH: &str = "nixlive.manifest";
/// The stock NixOS ISO's image, used when a medium has no manifest.
pub const STOCK_IMAGE: &str = "nix-store.squashfs";
/// The most a manifest may be: a reader stops there (a real one is a few
/// hundred bytes).
pub const MAX_BYTES: u64 = 64 << 10;
/// The most signatures a manifest may carry.
pub const MAX_SIGS: usize = 16;
/// The most images a manifest may list: each is a loop device and a lower
/// layer, and the overlay's options (every layer's path) must fit in a page.
pub const MAX_IMAGES: usize = 64;
/// The most `file` lines a manifest may hold.
pub const MAX_FILES: usize = 64;

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
    /// The image's dm-verity tree, when it has one.
    pub verity: Option<verity::Params>,
}

/// A file of the medium besides the images (version 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the medium's root, as image names are.
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub init: String,
    pub registration: String,
    pub images: Vec<ImageEntry>,
    /// Other files of the medium that change the booted system.
    pub files: Vec<FileEntry>,
    /// Signatures over [`signed_part`] of the text.
    pub sigs: Vec<Signature>,
}

/// The bytes a manifest's signatures cover: its text without `sig` lines.
pub fn signed_part(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !l.starts_with("sig "))
        .collect()
}

/// `verity sha256 data-block=N hash-block=N data-blocks=N hash-offset=N salt=HEX root=HEX`.
fn parse_verity(n: usize, f: &[&str], size: u64) -> Result<verity::Params, LineError> {
    const KEYS: [&str; 6] = [
        "data-block",
        "hash-block",
        "data-blocks",
        "hash-offset",
        "salt",
        "root",
    ];
    let usage = || {
        LineError::new(
            n,
            "`verity` takes sha256 data-block=N hash-block=N data-blocks=N hash-offset=N salt=HEX root=HEX",
        )
    };
    if f.len() != 8 || f[1] != "sha256" {
        return Err(usage());
    }
    let mut v = [""; 6];
    for (i, (key, field)) in KEYS.iter().zip(&f[2..]).enumerate() {
        v[i] = field
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .ok_or_else(usage)?;
    }
    let num = |i: usize| {
        canonical_u64(v[i]).ok_or_else(|| LineError::new(n, format!("bad {} `{}`", KEYS[i], v[i])))
    };
    let small = |i: usize| {
        num(i).and_then(|x| {
            u32::try_from(x).map_err(|_| LineError::new(n, format!("bad {} `{}`", KEYS[i], v[i])))
        })
    };
    let hex_of = |i: usize| {
        let ok = v[i].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        crate::hex::decode(v[i]).filter(|_| ok).ok_or_else(|| {
            LineError::new(n, format!("{} `{}` is not lowercase hex", KEYS[i], v[i]))
        })
    };
    let salt = if v[4] == "-" { Vec::new() } else { hex_of(4)? };
    let root: [u8; 32] = hex_of(5)?.try_into().map_err(|r: Vec<u8>| {
        LineError::new(
            n,
            format!("root hash is {} bytes, a SHA-256 has 32", r.len()),
        )
    })?;
    let p = verity::Params {
        data_block: small(0)?,
        hash_block: small(1)?,
        data_blocks: num(2)?,
        hash_offset: num(3)?,
        salt,
        root,
    };
    p.check(size)
        .map_err(|e| LineError::new(n, format!("verity: {e}")))?;
    Ok(p)
}

/// `sha256:` and 64 lowercase hex digits: the hex.
fn parse_digest(n: usize, field: &str) -> Result<String, LineError> {
    let hex = field.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(LineError::new(
            n,
            format!("bad digest `{field}` (want sha256: and 64 lowercase hex digits)"),
        ));
    }
    Ok(hex.to_string())
}

/// Canonical decimal only: no sign, no leading zero.
fn canonical_u64(s: &str) -> Option<u64> {
    let canonical = s.bytes().all(|b| b.is_ascii_digit()) && !(s.len() > 1 && s.starts_with('0'));
    s.parse::<u64>().ok().filter(|_| canonical)
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, LineError> {
        let recs = records(text)?;
        let version = header_version(&recs, MAGIC, 1..=VERSION)?;
        let mut init = None;
        let mut registration = None;
        let mut images: Vec<ImageEntry> = Vec::new();
        let mut sigs: Vec<Signature> = Vec::new();
        let mut files: Vec<FileEntry> = Vec::new();
        let mut prev = "";
        for (n, f) in &recs[1..] {
            let n = *n;
            let key = std::mem::replace(&mut prev, f[0]);
            match f[0] {
                "verity" | "sig" if version < 2 => {
                    return Err(LineError::new(n, format!("`{}` needs {MAGIC} 2", f[0])));
                }
                "verity" => {
                    let img = images
                        .last_mut()
                        .filter(|i| key == "image" && i.verity.is_none())
                        .ok_or_else(|| {
                            LineError::new(n, "`verity` must follow its `image` line")
                        })?;
                    img.verity = Some(parse_verity(n, f, img.size)?);
                }
                "sig" => {
                    if f.len() != 2 {
                        return Err(LineError::new(n, "`sig` takes one NAME:BASE64"));
                    }
                    let sig = Signature::parse(f[1])
                        .map_err(|e| LineError::new(n, format!("bad signature: {e}")))?;
                    if sigs.len() == MAX_SIGS {
                        return Err(LineError::new(
                            n,
                            format!("more than {MAX_SIGS} signatures"),
                        ));
                    }
                    sigs.push(sig);
                }
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
                    let size = canonical_u64(f[3])
                        .ok_or_else(|| LineError::new(n, format!("bad image size `{}`", f[3])))?;
                    let sha256 = parse_digest(n, f[4])?;
                    if files.iter().any(|x| x.name == name) {
                        return Err(LineError::new(
                            n,
                            format!("`{name}` listed as a file and as an image"),
                        ));
                    }
                    images.push(ImageEntry {
                        name: name.to_string(),
                        fs,
                        size,
                        sha256,
                        verity: None,
                    });
                }
                "file" if version < 3 => {
                    return Err(LineError::new(n, format!("`file` needs {MAGIC} 3")));
                }
                "file" => {
                    if f.len() != 4 {
                        return Err(LineError::new(n, "`file` takes NAME SIZE sha256:HEX"));
                    }
                    let name = f[1];
                    if !is_safe_relative(name) {
                        return Err(LineError::new(
                            n,
                            format!("file name `{name}` must be relative, without `..`"),
                        ));
                    }
                    if files.len() == MAX_FILES {
                        return Err(LineError::new(n, format!("more than {MAX_FILES} files")));
                    }
                    if files.iter().any(|x| x.name == name) || images.iter().any(|i| i.name == name)
                    {
                        return Err(LineError::new(n, format!("`{name}` listed twice")));
                    }
                    let size = canonical_u64(f[2])
                        .ok_or_else(|| LineError::new(n, format!("bad file size `{}`", f[2])))?;
                    files.push(FileEntry {
                        name: name.to_string(),
                        size,
                        sha256: parse_digest(n, f[3])?,
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
            files,
            sigs,
        })
    }

    /// The version written: 3 when there are `file` lines, else 2 (so
    /// that manifests without them stay byte for byte as before).
    pub fn version(&self) -> u32 {
        if self.files.is_empty() { 2 } else { 3 }
    }

    /// The entry of the file `name`, if listed.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The text that is signed: the canonical text without `sig` lines.
    pub fn unsigned_text(&self) -> String {
        signed_part(&self.to_string())
    }
}

impl fmt::Display for Manifest {
    /// Renders the canonical text, which [`Manifest::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{MAGIC} {}", self.version())?;
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
            if let Some(v) = &i.verity {
                let salt = if v.salt.is_empty() {
                    "-".to_string()
                } else {
                    crate::hex::encode(&v.salt)
                };
                writeln!(
                    f,
                    "verity sha256 data-block={} hash-block={} data-blocks={} hash-offset={} salt={salt} root={}",
                    v.data_block,
                    v.hash_block,
                    v.data_blocks,
                    v.hash_offset,
                    crate::hex::encode(&v.root)
                )?;
            }
        }
        for x in &self.files {
            writeln!(f, "file {} {} sha256:{}", x.name, x.size, x.sha256)?;
        }
        for s in &self.sigs {
            writeln!(f, "sig {s}")?;
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
            ("nixlive-manifest 4\n", 1),
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

    fn v2(verity: &str) -> String {
        format!(
            "nixlive-manifest 2\ninit /a\nregistration /b\nimage x.squashfs squashfs 16384 sha256:{H}\n{verity}"
        )
    }

    const V: &str = "verity sha256 data-block=4096 hash-block=4096 data-blocks=2 hash-offset=8192 salt=0a0b root=";

    #[test]
    fn version_2_with_verity_and_signatures() {
        let root = "ab".repeat(32);
        let sig = format!("sig k-1:{}\n", crate::base64::encode(&[5; 64]));
        let text = format!("{}{sig}", v2(&format!("{V}{root}\n")));
        let m = Manifest::parse(&text).unwrap();
        let v = m.images[0].verity.as_ref().unwrap();
        assert_eq!(
            (v.data_blocks, v.hash_offset, &v.salt[..]),
            (2, 8192, &[10, 11][..])
        );
        assert_eq!(m.sigs[0].name, "k-1");
        assert_eq!(m.to_string(), text);
        assert_eq!(signed_part(&text), v2(&format!("{V}{root}\n")));
        assert_eq!(m.unsigned_text(), signed_part(&text));
        // Version 1 is still read, without the new lines.
        let v1 = format!(
            "nixlive-manifest 1\ninit /a\nregistration /b\nimage x squashfs 1 sha256:{H}\n"
        );
        assert!(Manifest::parse(&v1).unwrap().images[0].verity.is_none());
        let e = Manifest::parse(&format!("{v1}{sig}")).unwrap_err();
        assert_eq!(
            (e.line, e.msg.as_str()),
            (5, "`sig` needs nixlive-manifest 2")
        );
    }

    #[test]
    fn version_3_lists_files() {
        let base = "init /a\nregistration /b\nimage x.squashfs squashfs 1 sha256:";
        let file = format!("file nixlive/authorized_keys 81 sha256:{H}\n");
        let sig = format!("sig k-1:{}\n", crate::base64::encode(&[5; 64]));
        let text = format!("nixlive-manifest 3\n{base}{H}\n{file}{sig}");
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(
            m.file("nixlive/authorized_keys"),
            Some(&FileEntry {
                name: "nixlive/authorized_keys".into(),
                size: 81,
                sha256: H.into()
            })
        );
        assert_eq!(m.file("other"), None);
        assert_eq!(m.version(), 3);
        assert_eq!(m.to_string(), text, "renders back byte for byte");
        // The files are signed.
        assert!(signed_part(&text).contains(&file));
        // Without files, version 2 is written, as before version 3.
        let mut without = m.clone();
        without.files.clear();
        assert!(without.to_string().starts_with("nixlive-manifest 2\n"));
        assert_eq!(Manifest::parse(&without.to_string()).unwrap(), without);
        // A version 2 manifest with a `file` line is refused.
        let e = Manifest::parse(&format!("nixlive-manifest 2\n{base}{H}\n{file}")).unwrap_err();
        assert_eq!(
            (e.line, e.msg.as_str()),
            (5, "`file` needs nixlive-manifest 3")
        );
        let bad = [
            (format!("file ../k 1 sha256:{H}"), "must be relative"),
            (format!("file /k 1 sha256:{H}"), "must be relative"),
            (format!("file k 01 sha256:{H}"), "bad file size"),
            (format!("file k -1 sha256:{H}"), "bad file size"),
            (format!("file k 1 sha256:{}", &H[1..]), "bad digest"),
            (
                format!("file k 1 sha256:{}", H.to_uppercase()),
                "bad digest",
            ),
            (format!("file k 1 {H}"), "bad digest"),
            ("file k 1".to_string(), "takes NAME SIZE"),
            (format!("file k 1 sha256:{H} extra"), "takes NAME SIZE"),
            (format!("file x.squashfs 1 sha256:{H}"), "listed twice"),
        ];
        for (line, want) in bad {
            let e =
                Manifest::parse(&format!("nixlive-manifest 3\n{base}{H}\n{line}\n")).unwrap_err();
            assert_eq!(e.line, 5, "{line}: {e}");
            assert!(e.msg.contains(want), "{line}: {e}");
        }
        let twice = format!("nixlive-manifest 3\n{base}{H}\n{file}{file}");
        assert_eq!(Manifest::parse(&twice).unwrap_err().line, 6);
        // A file line first, then an image of the same name.
        let late = format!(
            "nixlive-manifest 3\ninit /a\nregistration /b\nfile x.squashfs 1 sha256:{H}\nimage x.squashfs squashfs 1 sha256:{H}\n"
        );
        let e = Manifest::parse(&late).unwrap_err();
        assert!(e.msg.contains("as a file and as an image"), "{e}");
        let many: String = (0..=MAX_FILES)
            .map(|i| format!("file f{i} 1 sha256:{H}\n"))
            .collect();
        let e = Manifest::parse(&format!("nixlive-manifest 3\n{base}{H}\n{many}")).unwrap_err();
        assert!(e.msg.contains("more than 64 files"), "{e}");
    }

    #[test]
    fn bad_verity_and_signature_lines() {
        let root = "ab".repeat(32);
        let cases = [
            (format!("{V}{}\n", "ab".repeat(31)), "root hash is 31 bytes"),
            (format!("{V}{}\n", "AB".repeat(32)), "not lowercase hex"),
            (
                format!("{}\n", V.replace("salt=0a0b", "salt=0g"))
                    .replace("root=\n", &format!("root={root}\n")),
                "salt `0g` is not lowercase hex",
            ),
            (
                format!(
                    "{}{root}\n",
                    V.replace("hash-offset=8192", "hash-offset=12288")
                ),
                "truncated",
            ),
            (
                format!("{}{root}\n", V.replace("data-blocks=2", "data-blocks=02")),
                "bad data-blocks",
            ),
            (
                format!(
                    "{}{root}\n",
                    V.replace("data-block=4096", "data-block=99999999999")
                ),
                "bad data-block",
            ),
            (
                format!("{}{root}\n", V.replace("hash-block=4096", "hash-block=100")),
                "power of two",
            ),
            (
                format!("{}{root}\n", V.replace("sha256", "sha1")),
                "takes sha256",
            ),
            (
                format!("{}{root}\n", V.replace("salt=", "pepper=")),
                "takes sha256",
            ),
            ("sig nocolon\n".to_string(), "bad signature"),
            ("sig k:!!!!\n".to_string(), "not canonical base 64"),
            ("sig k:AAAA\n".to_string(), "a signature has 64"),
        ];
        for (line, want) in cases {
            let e = Manifest::parse(&v2(&line)).unwrap_err();
            assert_eq!(e.line, 5, "{line}: {e}");
            let e = e.to_string();
            // "truncated": the message says the tree needs more bytes.
            let want = if want == "truncated" {
                "more than the image's"
            } else {
                want
            };
            assert!(e.contains(want), "{line}: {e}");
        }
        // A verity line must follow its image, once.
        let e = Manifest::parse(&format!("nixlive-manifest 2\ninit /a\n{V}{root}\n")).unwrap_err();
        assert!(e.msg.contains("must follow"), "{e}");
        let twice = v2(&format!("{V}{root}\n{V}{root}\n"));
        assert_eq!(Manifest::parse(&twice).unwrap_err().line, 6);
    }
}

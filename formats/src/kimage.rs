//! What a Linux kernel image says about itself: the machine it runs on and
//! its release (`6.1.0-56-amd64`), read from the x86 boot protocol header
//! of a bzImage, the arm64 `Image` header, and the PE header of the EFI
//! stub both carry; an EFI zboot image (a compressed `Image` inside a PE
//! program) is named with where its payload is. The builder refuses a
//! `--kernel` that is none of these, and checks the init and the modules
//! against what it finds.
//!
//! Non-goals: no decompression here (the caller unpacks a zboot payload or
//! `Image.gz` with [`crate::unpack`] and asks again), no other
//! architectures' headers.

use crate::elf::Machine;
use std::fmt;
use thiserror::Error;

/// What kind of kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// x86 bzImage (boot protocol header `HdrS`).
    BzImage,
    /// arm64 `Image` (magic `ARM\x64` at 0x38).
    Arm64Image,
    /// EFI zboot: a compressed `Image` of `codec` (`gzip`, `zstd`, ...) at
    /// `offset`, `size` bytes long, inside a PE program.
    Zboot {
        codec: String,
        offset: usize,
        size: usize,
    },
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageKind::BzImage => f.write_str("bzImage"),
            ImageKind::Arm64Image => f.write_str("arm64 Image"),
            ImageKind::Zboot { codec, .. } => write!(f, "EFI zboot ({codec})"),
        }
    }
}

/// What [`parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    pub kind: ImageKind,
    /// The machine, when the headers say it (a bzImage's PE header or its
    /// 64-bit flag, the arm64 header, a zboot's PE header).
    pub machine: Option<Machine>,
    /// The kernel release, the first word of the version string
    /// (`6.1.0-56-amd64`), when the image carries it readably.
    pub version: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KernelImageError {
    #[error(
        "not a Linux kernel image (no bzImage `HdrS` header, no arm64 `Image` magic, no EFI zboot header)"
    )]
    NotAKernel,
}

fn le16(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(off..off + 2)?.try_into().ok()?))
}

fn le32(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off + 4)?.try_into().ok()?))
}

/// The machine of a PE (EFI stub) header, if `d` starts with one.
pub fn pe_machine(d: &[u8]) -> Option<Machine> {
    if !d.starts_with(b"MZ") {
        return None;
    }
    let pe = usize::try_from(le32(d, 0x3c)?).ok()?;
    if d.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    match le16(d, pe + 4)? {
        0x8664 => Some(Machine::X86_64),
        0x14c => Some(Machine::X86),
        0xaa64 => Some(Machine::Aarch64),
        0x1c2 | 0x1c4 => Some(Machine::Arm),
        _ => None,
    }
}

/// The release in a version string: its first word, if it looks like one
/// (starts with a digit, printable).
pub fn release_of(version: &str) -> Option<String> {
    let w = version.split_ascii_whitespace().next()?;
    (w.starts_with(|c: char| c.is_ascii_digit())
        && w.len() <= 64
        && w.bytes().all(|b| b.is_ascii_graphic()))
    .then(|| w.to_string())
}

/// The release from the `Linux version RELEASE (...` banner an
/// uncompressed kernel carries.
pub fn banner_release(d: &[u8]) -> Option<String> {
    const B: &[u8] = b"Linux version ";
    let mut from = 0;
    while let Some(i) = d.get(from..)?.windows(B.len()).position(|w| w == B) {
        let start = from + i + B.len();
        let end = d.len().min(start + 80);
        let tail = &d[start..end];
        let word: Vec<u8> = tail
            .iter()
            .copied()
            .take_while(|b| b.is_ascii_graphic())
            .collect();
        if let Some(r) = std::str::from_utf8(&word).ok().and_then(release_of) {
            return Some(r);
        }
        from = start;
    }
    None
}

/// Reads a kernel image's headers (the whole file, or at least its first
/// 64 KiB for a bzImage's version string).
pub fn parse(d: &[u8]) -> Result<KernelImage, KernelImageError> {
    if d.get(0x202..0x206) == Some(b"HdrS") && d.get(0x1fe..0x200) == Some(&[0x55, 0xaa]) {
        // kernel_version: an offset from 0x200 to a NUL-terminated string.
        let version = le16(d, 0x20e)
            .filter(|&o| o != 0)
            .and_then(|o| {
                let start = usize::from(o) + 0x200;
                let s = d.get(start..d.len().min(start + 256))?;
                let s = s.split(|&b| b == 0).next()?;
                std::str::from_utf8(s).ok()
            })
            .and_then(release_of);
        // XLF_KERNEL_64 in xloadflags (boot protocol 2.12 and later).
        let proto = le16(d, 0x206).unwrap_or(0);
        let flag = (proto >= 0x20c).then(|| le16(d, 0x236)).flatten().map(|x| {
            if x & 1 != 0 {
                Machine::X86_64
            } else {
                Machine::X86
            }
        });
        return Ok(KernelImage {
            kind: ImageKind::BzImage,
            machine: pe_machine(d).or(flag),
            version,
        });
    }
    if d.get(0x38..0x3c) == Some(b"ARM\x64") {
        return Ok(KernelImage {
            kind: ImageKind::Arm64Image,
            machine: Some(Machine::Aarch64),
            version: banner_release(d),
        });
    }
    if d.starts_with(b"MZ") && d.get(4..8) == Some(b"zimg") {
        let offset = le32(d, 8).ok_or(KernelImageError::NotAKernel)? as usize;
        let size = le32(d, 12).ok_or(KernelImageError::NotAKernel)? as usize;
        let codec = d
            .get(0x18..0x20)
            .map(|c| {
                String::from_utf8_lossy(c.split(|&b| b == 0).next().unwrap_or_default())
                    .into_owned()
            })
            .unwrap_or_default();
        return Ok(KernelImage {
            kind: ImageKind::Zboot {
                codec,
                offset,
                size,
            },
            machine: pe_machine(d),
            version: None,
        });
    }
    Err(KernelImageError::NotAKernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage(version: &str, xloadflags: u16, pe: Option<u16>) -> Vec<u8> {
        let mut d = vec![0u8; 0x1000];
        d[0x1fe] = 0x55;
        d[0x1ff] = 0xaa;
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        d[0x20e..0x210].copy_from_slice(&0x600u16.to_le_bytes());
        d[0x800..0x800 + version.len()].copy_from_slice(version.as_bytes());
        d[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        if let Some(m) = pe {
            d[..2].copy_from_slice(b"MZ");
            d[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
            d[0x40..0x44].copy_from_slice(b"PE\0\0");
            d[0x44..0x46].copy_from_slice(&m.to_le_bytes());
        }
        d
    }

    #[test]
    fn bzimages() {
        let k = parse(&bzimage("6.1.0-56-amd64 (debian) #1 SMP", 0x7f, None)).unwrap();
        assert_eq!(k.kind, ImageKind::BzImage);
        assert_eq!(k.machine, Some(Machine::X86_64));
        assert_eq!(k.version.as_deref(), Some("6.1.0-56-amd64"));
        let k = parse(&bzimage("6.1.0-50-686 (x)", 0x04, None)).unwrap();
        assert_eq!(k.machine, Some(Machine::X86));
        // The PE header wins over the flag.
        let k = parse(&bzimage("6.1.0", 0x04, Some(0x8664))).unwrap();
        assert_eq!(k.machine, Some(Machine::X86_64));
        // A version that is no release is not one.
        let k = parse(&bzimage("%s", 1, None)).unwrap();
        assert_eq!(k.version, None);
    }

    #[test]
    fn arm64_and_zboot() {
        let mut d = vec![0u8; 0x400];
        d[0x38..0x3c].copy_from_slice(b"ARM\x64");
        d.extend_from_slice(b"Linux version %s\0Linux version 6.1.0-50-arm64 (debian)");
        let k = parse(&d).unwrap();
        assert_eq!(k.kind, ImageKind::Arm64Image);
        assert_eq!(k.machine, Some(Machine::Aarch64));
        assert_eq!(k.version.as_deref(), Some("6.1.0-50-arm64"));
        let mut z = vec![0u8; 0x100];
        z[..2].copy_from_slice(b"MZ");
        z[4..8].copy_from_slice(b"zimg");
        z[8..12].copy_from_slice(&0x80u32.to_le_bytes());
        z[12..16].copy_from_slice(&0x20u32.to_le_bytes());
        z[0x18..0x1c].copy_from_slice(b"gzip");
        let k = parse(&z).unwrap();
        assert_eq!(
            k.kind,
            ImageKind::Zboot {
                codec: "gzip".into(),
                offset: 0x80,
                size: 0x20
            }
        );
        assert_eq!(k.kind.to_string(), "EFI zboot (gzip)");
    }

    #[test]
    fn not_kernels() {
        assert_eq!(parse(b""), Err(KernelImageError::NotAKernel));
        assert_eq!(parse(&[0x4d; 4096]), Err(KernelImageError::NotAKernel));
        assert_eq!(
            parse(b"\x7fELF\x02\x01\x01"),
            Err(KernelImageError::NotAKernel)
        );
    }
}

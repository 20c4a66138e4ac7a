//! The guest programs must be static: no program interpreter (`PT_INTERP`)
//! and no shared libraries (`DT_NEEDED`), or they cannot run as PID 1 from
//! an initrd or a store path with no libc. Checked with a tiny ELF reader
//! (ELF32 and ELF64, both byte orders), which is itself tested against
//! `/bin/ls` so the check can fail.

use nixlive_tests_vm::artifacts;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

#[derive(Debug)]
struct Segment {
    kind: u32,
    offset: u64,
    filesz: u64,
}

#[derive(Debug)]
struct Elf {
    is64: bool,
    big_endian: bool,
    segments: Vec<Segment>,
}

struct Reader<'a> {
    b: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: u64) -> Result<[u8; N], String> {
        let at = usize::try_from(at).map_err(|_| "offset too large")?;
        self.b
            .get(at..at + N)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("truncated ELF: {N} bytes at {at:#x}"))
    }
    fn u16(&self, at: u64) -> Result<u16, String> {
        let b = self.bytes::<2>(at)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }
    fn u32(&self, at: u64) -> Result<u32, String> {
        let b = self.bytes::<4>(at)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn u64(&self, at: u64) -> Result<u64, String> {
        let b = self.bytes::<8>(at)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
    /// A word: 4 bytes in ELF32, 8 in ELF64.
    fn word(&self, is64: bool, at: u64) -> Result<u64, String> {
        if is64 {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }
}

fn parse(b: &[u8]) -> Result<Elf, String> {
    if b.len() < 16 || &b[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    let is64 = match b[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    let big_endian = match b[5] {
        1 => false,
        2 => true,
        d => return Err(format!("unknown ELF data encoding {d}")),
    };
    let r = Reader { b, big_endian };
    let (phoff, phentsize, phnum) = if is64 {
        (r.u64(0x20)?, r.u16(0x36)?, r.u16(0x38)?)
    } else {
        (u64::from(r.u32(0x1c)?), r.u16(0x2a)?, r.u16(0x2c)?)
    };
    let mut segments = Vec::new();
    for i in 0..u64::from(phnum) {
        let ph = phoff + i * u64::from(phentsize);
        let kind = r.u32(ph)?;
        // Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz, ...
        // Elf32_Phdr: type, offset, vaddr, paddr, filesz, ...
        let (offset, filesz) = if is64 {
            (r.u64(ph + 8)?, r.u64(ph + 32)?)
        } else {
            (u64::from(r.u32(ph + 4)?), u64::from(r.u32(ph + 16)?))
        };
        segments.push(Segment {
            kind,
            offset,
            filesz,
        });
    }
    Ok(Elf {
        is64,
        big_endian,
        segments,
    })
}

impl Elf {
    fn has(&self, kind: u32) -> bool {
        self.segments.iter().any(|s| s.kind == kind)
    }

    /// How many `DT_NEEDED` entries the dynamic segment has.
    fn needed(&self, b: &[u8]) -> Result<usize, String> {
        let r = Reader {
            b,
            big_endian: self.big_endian,
        };
        let entry = if self.is64 { 16 } else { 8 };
        let mut n = 0;
        for s in self.segments.iter().filter(|s| s.kind == PT_DYNAMIC) {
            for i in 0..s.filesz / entry {
                let tag = r.word(self.is64, s.offset + i * entry)?;
                if tag == 0 {
                    break;
                }
                if tag == DT_NEEDED {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

fn check_static(path: &std::path::Path) -> Result<(), String> {
    let b = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let elf = parse(&b).map_err(|e| format!("{}: {e}", path.display()))?;
    if elf.has(PT_INTERP) {
        return Err(format!(
            "{} has a program interpreter (PT_INTERP): not static",
            path.display()
        ));
    }
    match elf.needed(&b)? {
        0 => Ok(()),
        n => Err(format!(
            "{} needs {n} shared libraries (DT_NEEDED): not static",
            path.display()
        )),
    }
}

#[test]
fn guest_programs_are_static() {
    for path in &artifacts::guest_programs() {
        check_static(path).unwrap();
        let elf = parse(&std::fs::read(path).unwrap()).unwrap();
        assert!(
            elf.is64 && !elf.big_endian,
            "{} is not x86_64",
            path.display()
        );
    }
}

/// postboot of i686 and aarch64 carries C (SQLite and mimalloc, built by
/// Zig's clang): still static, and of its machine.
#[test]
fn postboot_of_every_architecture_is_static() {
    use nixlive_tests_vm::arch::Arch;
    for arch in Arch::ALL {
        let path = arch.guest_program("nixlive-postboot");
        check_static(&path).unwrap();
        let elf = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            (elf.is64, elf.big_endian),
            (arch != Arch::I686, false),
            "{}",
            path.display()
        );
    }
}

#[test]
fn the_check_catches_a_dynamic_binary() {
    let ls = std::path::Path::new("/bin/ls");
    let b = std::fs::read(ls).unwrap();
    let elf = parse(&b).unwrap();
    assert!(elf.has(PT_INTERP), "/bin/ls should have PT_INTERP: {elf:?}");
    assert!(elf.needed(&b).unwrap() > 0, "/bin/ls should need libc");
    let e = check_static(ls).unwrap_err();
    assert!(e.contains("PT_INTERP"), "{e}");
}

#[test]
fn reader_handles_elf32_and_big_endian() {
    // A minimal ELF32 big-endian header with one PT_INTERP program header.
    let mut b = vec![0u8; 0x34 + 0x20];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 1; // ELFCLASS32
    b[5] = 2; // ELFDATA2MSB
    b[0x1c..0x20].copy_from_slice(&0x34u32.to_be_bytes()); // e_phoff
    b[0x2a..0x2c].copy_from_slice(&0x20u16.to_be_bytes()); // e_phentsize
    b[0x2c..0x2e].copy_from_slice(&1u16.to_be_bytes()); // e_phnum
    b[0x34..0x38].copy_from_slice(&PT_INTERP.to_be_bytes());
    let elf = parse(&b).unwrap();
    assert!(!elf.is64 && elf.big_endian);
    assert!(elf.has(PT_INTERP));
    // Truncated program headers are an error, not a pass.
    assert!(parse(&b[..0x40]).is_err());
    assert!(parse(b"#!/bin/sh\n").is_err());
}

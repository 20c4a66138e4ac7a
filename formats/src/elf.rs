//! The ELF header and program headers of a program or kernel module: its
//! machine, word size, byte order, type, and program interpreter
//! (`PT_INTERP`). The builder reads them to refuse an init the kernel
//! cannot run (dynamically linked, or for another machine), and `nixlive
//! inspect` prints them.
//!
//! Non-goals: no sections, symbols or relocations; no loading.

use std::fmt;
use thiserror::Error;

/// The machine an ELF file is for (`e_machine`), as far as nixlive boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Machine {
    X86,
    X86_64,
    Arm,
    Aarch64,
    Other(u16),
}

impl Machine {
    pub fn from_e_machine(m: u16) -> Machine {
        match m {
            3 => Machine::X86,
            62 => Machine::X86_64,
            40 => Machine::Arm,
            183 => Machine::Aarch64,
            o => Machine::Other(o),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Machine::X86 => f.write_str("i386"),
            Machine::X86_64 => f.write_str("x86_64"),
            Machine::Arm => f.write_str("arm"),
            Machine::Aarch64 => f.write_str("aarch64"),
            Machine::Other(m) => write!(f, "ELF machine {m}"),
        }
    }
}

/// `e_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfType {
    /// `ET_REL`: an object file, as kernel modules are.
    Relocatable,
    /// `ET_EXEC`: a program at a fixed address.
    Executable,
    /// `ET_DYN`: a position-independent program or a shared library.
    Shared,
    Other(u16),
}

/// What [`parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// 64-bit (`ELFCLASS64`) or 32-bit.
    pub bits64: bool,
    pub little_endian: bool,
    pub machine: Machine,
    pub kind: ElfType,
    /// The program interpreter `PT_INTERP` names (`/lib64/ld-linux-x86-64.so.2`);
    /// `None` for a statically linked program (static PIE included).
    pub interpreter: Option<String>,
}

impl ElfInfo {
    /// A program the kernel can run with no libraries: an executable (or
    /// static PIE) without a program interpreter.
    pub fn is_static_program(&self) -> bool {
        matches!(self.kind, ElfType::Executable | ElfType::Shared) && self.interpreter.is_none()
    }

    /// `static` or `dynamic (interpreter PATH)`.
    pub fn linkage(&self) -> String {
        match &self.interpreter {
            None => "static".to_string(),
            Some(i) => format!("dynamic (interpreter {i})"),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    #[error("ELF header is truncated or malformed: {0}")]
    Malformed(&'static str),
}

const PT_INTERP: u32 = 3;
/// Interpreter paths are short; a longer one is a broken file.
const MAX_INTERP: usize = 4096;
/// The kernel refuses more program headers than fit in 64 KiB.
const MAX_PHNUM: usize = 65536 / 32;

struct Reader<'a> {
    data: &'a [u8],
    le: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> Result<[u8; N], ElfError> {
        self.data
            .get(off..off.checked_add(N).ok_or(ElfError::Malformed("offset"))?)
            .and_then(|s| s.try_into().ok())
            .ok_or(ElfError::Malformed("field past the end of the file"))
    }
    fn u16(&self, off: usize) -> Result<u16, ElfError> {
        let b = self.bytes::<2>(off)?;
        Ok(if self.le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, off: usize) -> Result<u32, ElfError> {
        let b = self.bytes::<4>(off)?;
        Ok(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, off: usize) -> Result<u64, ElfError> {
        let b = self.bytes::<8>(off)?;
        Ok(if self.le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
    /// A 32- or 64-bit word.
    fn word(&self, off: usize, bits64: bool) -> Result<u64, ElfError> {
        if bits64 {
            self.u64(off)
        } else {
            self.u32(off).map(u64::from)
        }
    }
}

fn usize_of(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| ElfError::Malformed("offset does not fit"))
}

/// Reads the ELF header and program headers of a whole file's bytes (the
/// interpreter path may lie anywhere in it; a prefix of the file gives
/// `Malformed` when the headers reach past it).
pub fn parse(data: &[u8]) -> Result<ElfInfo, ElfError> {
    if !data.starts_with(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    let bits64 = match data.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(ElfError::Malformed("class is neither 32- nor 64-bit")),
    };
    let le = match data.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err(ElfError::Malformed("byte order is neither little nor big")),
    };
    let r = Reader { data, le };
    let kind = match r.u16(16)? {
        1 => ElfType::Relocatable,
        2 => ElfType::Executable,
        3 => ElfType::Shared,
        o => ElfType::Other(o),
    };
    let machine = Machine::from_e_machine(r.u16(18)?);
    let (phoff, phentsize, phnum) = if bits64 {
        (r.u64(32)?, r.u16(54)?, r.u16(56)?)
    } else {
        (u64::from(r.u32(28)?), r.u16(42)?, r.u16(44)?)
    };
    let mut interpreter = None;
    let phnum = usize::from(phnum);
    if phnum > 0 {
        let min = if bits64 { 56 } else { 32 };
        if usize::from(phentsize) < min || phnum > MAX_PHNUM {
            return Err(ElfError::Malformed("program header size or count"));
        }
        let phoff = usize_of(phoff)?;
        let table_end = phoff
            .checked_add(phnum * usize::from(phentsize))
            .ok_or(ElfError::Malformed("program header offset"))?;
        if table_end > data.len() {
            return Err(ElfError::Malformed(
                "program headers past the end of the file",
            ));
        }
        for i in 0..phnum {
            let ph = phoff
                .checked_add(i * usize::from(phentsize))
                .ok_or(ElfError::Malformed("program header offset"))?;
            if r.u32(ph)? != PT_INTERP {
                continue;
            }
            let (off, size) = if bits64 {
                (r.word(ph + 8, true)?, r.word(ph + 32, true)?)
            } else {
                (r.word(ph + 4, false)?, r.word(ph + 16, false)?)
            };
            let (off, size) = (usize_of(off)?, usize_of(size)?);
            if size > MAX_INTERP {
                return Err(ElfError::Malformed("interpreter path is too long"));
            }
            let raw = off
                .checked_add(size)
                .and_then(|end| data.get(off..end))
                .ok_or(ElfError::Malformed("interpreter path past the end"))?;
            let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
            interpreter = Some(String::from_utf8_lossy(raw).into_owned());
            break;
        }
    }
    Ok(ElfInfo {
        bits64,
        little_endian: le,
        machine,
        kind,
        interpreter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian executable with `phnum` headers, the
    /// first of type `ptype` pointing at `interp`.
    fn elf64(machine: u16, ptype: u32, interp: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[16..18].copy_from_slice(&2u16.to_le_bytes());
        d[18..20].copy_from_slice(&machine.to_le_bytes());
        d[32..40].copy_from_slice(&64u64.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&1u16.to_le_bytes());
        d[64..68].copy_from_slice(&ptype.to_le_bytes());
        let off = d.len() as u64;
        d[64 + 8..64 + 16].copy_from_slice(&off.to_le_bytes());
        d[64 + 32..64 + 40].copy_from_slice(&(interp.len() as u64).to_le_bytes());
        d.extend_from_slice(interp);
        d
    }

    #[test]
    fn static_and_dynamic() {
        let s = parse(&elf64(62, 1, b"")).unwrap();
        assert_eq!(s.machine, Machine::X86_64);
        assert!(s.bits64 && s.little_endian && s.is_static_program());
        assert_eq!(s.linkage(), "static");
        let d = parse(&elf64(183, 3, b"/lib/ld-linux-aarch64.so.1\0")).unwrap();
        assert_eq!(d.machine, Machine::Aarch64);
        assert_eq!(d.interpreter.as_deref(), Some("/lib/ld-linux-aarch64.so.1"));
        assert!(!d.is_static_program());
        assert_eq!(d.machine.to_string(), "aarch64");
    }

    #[test]
    fn broken_files() {
        assert_eq!(parse(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        assert!(matches!(
            parse(b"\x7fELF\x02\x01"),
            Err(ElfError::Malformed(_))
        ));
        let mut d = elf64(62, 3, b"/lib/ld.so\0");
        // Interpreter past the end of the file.
        d.truncate(d.len() - 4);
        assert!(matches!(parse(&d), Err(ElfError::Malformed(_))));
        // Program headers past the end.
        let d = elf64(62, 1, b"");
        assert!(matches!(parse(&d[..70]), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn real_programs() {
        // The test binary itself is a program for the host's machine.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = parse(&me).unwrap();
        assert!(matches!(info.kind, ElfType::Executable | ElfType::Shared));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(info.machine, Machine::X86_64);
        }
        // /bin/ls on a glibc system is dynamically linked.
        let ls = std::fs::read("/bin/ls").expect("/bin/ls (coreutils) is needed");
        let info = parse(&ls).unwrap();
        assert!(info.interpreter.is_some(), "{info:?}");
        assert!(!info.is_static_program());
    }
}

//! What the checks look at, read from the build host's files or from a
//! medium: the kernel image's headers, a program's ELF header, samples of
//! the module tree, the stage-2 init in the store. Reading is kept apart
//! from judging ([`super::rules`]) so both the builder and `nixlive
//! inspect` feed the same rules.
//!
//! Non-goals: no judging here; a file that cannot be read is a fact too.

use nixlive_formats::elf::{self, ElfInfo, Machine};
use nixlive_formats::kimage::{self, ImageKind, KernelImage, banner_release};
use nixlive_formats::kmod;
use nixlive_formats::unpack::{self, Codec};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A kernel is at most this large unpacked.
const KERNEL_LIMIT: usize = 256 << 20;
/// A module is at most this large unpacked.
const MODULE_LIMIT: usize = 64 << 20;

/// Something read: found and understood, absent or unreadable, or not
/// what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<T> {
    Ok(T),
    Missing(String),
    Bad(String),
}

impl<T> Found<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Found::Ok(t) => Some(t),
            _ => None,
        }
    }
}

/// The kernel image.
#[derive(Debug, Clone)]
pub struct KernelFacts {
    /// As the user named it (or its place on the medium).
    pub path: String,
    pub image: Found<KernelImage>,
}

impl KernelFacts {
    pub fn read(path: &Path) -> KernelFacts {
        match fs::read(path) {
            Ok(d) => KernelFacts::from_bytes(&path.display().to_string(), &d),
            Err(e) => KernelFacts {
                path: path.display().to_string(),
                image: Found::Missing(e.to_string()),
            },
        }
    }

    /// From a kernel image's bytes; a compressed `Image.gz` or a zboot
    /// payload is unpacked for its release.
    pub fn from_bytes(path: &str, d: &[u8]) -> KernelFacts {
        let image = match kimage::parse(d) {
            Ok(mut k) => {
                if let ImageKind::Zboot {
                    codec,
                    offset,
                    size,
                } = &k.kind
                    && let Some(c) = codec_named(codec)
                    && let Some(payload) = offset
                        .checked_add(*size)
                        .and_then(|end| d.get(*offset..end))
                    && let Ok(inner) = unpack::unpack(c, payload, KERNEL_LIMIT)
                {
                    k.version = banner_release(&inner);
                }
                Found::Ok(k)
            }
            Err(e) => match compressed_kernel(d) {
                Some(k) => Found::Ok(k),
                None => Found::Bad(e.to_string()),
            },
        };
        KernelFacts {
            path: path.to_string(),
            image,
        }
    }
}

fn codec_named(name: &str) -> Option<Codec> {
    match name {
        "gzip" => Some(Codec::Gzip),
        "zstd" | "zstd22" => Some(Codec::Zstd),
        "xzkern" | "xz" => Some(Codec::Xz),
        _ => None,
    }
}

/// An arm64 `Image.gz` (or `.zst`, `.xz`), unpacked.
fn compressed_kernel(d: &[u8]) -> Option<KernelImage> {
    let codec = if d.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if d.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Codec::Zstd
    } else if d.starts_with(b"\xfd7zXZ\0") {
        Codec::Xz
    } else {
        return None;
    };
    let inner = unpack::unpack(codec, d, KERNEL_LIMIT).ok()?;
    kimage::parse(&inner).ok()
}

/// A program packed into the initrd (`--init`, `--shell`).
#[derive(Debug, Clone)]
pub struct ProgramFacts {
    /// `--init`, `--shell`, or its place in the initrd (`/init`).
    pub role: &'static str,
    pub path: String,
    pub elf: Found<ElfInfo>,
}

impl ProgramFacts {
    pub fn read(role: &'static str, path: &Path) -> ProgramFacts {
        match fs::read(path) {
            Ok(d) => ProgramFacts::from_bytes(role, &path.display().to_string(), &d),
            Err(e) => ProgramFacts {
                role,
                path: path.display().to_string(),
                elf: Found::Missing(e.to_string()),
            },
        }
    }

    pub fn from_bytes(role: &'static str, path: &str, d: &[u8]) -> ProgramFacts {
        ProgramFacts {
            role,
            path: path.to_string(),
            elf: match elf::parse(d) {
                Ok(i) => Found::Ok(i),
                Err(e) => Found::Bad(e.to_string()),
            },
        }
    }
}

/// One module of the tree, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSample {
    /// Relative to the module tree (`kernel/fs/squashfs/squashfs.ko.xz`).
    pub file: String,
    /// The release of its `vermagic`.
    pub vermagic: Option<String>,
    /// Its ELF machine.
    pub machine: Option<Machine>,
}

impl ModuleSample {
    /// From a module file's bytes, compressed as its name says.
    pub fn from_bytes(file: &str, data: &[u8]) -> ModuleSample {
        let plain = match Codec::of_name(file) {
            Some(c) => unpack::unpack(c, data, MODULE_LIMIT).ok(),
            None => Some(data.to_vec()),
        };
        let plain = plain.unwrap_or_default();
        ModuleSample {
            file: file.to_string(),
            vermagic: kmod::vermagic_release(&plain).map(String::from),
            machine: elf::parse(&plain).ok().map(|i| i.machine),
        }
    }
}

/// A kernel module tree (`/lib/modules/VERSION`) and some of its modules.
#[derive(Debug, Clone)]
pub struct ModuleFacts {
    pub dir: String,
    /// The directory's name, the release `modules.dep` is for.
    pub version: String,
    pub modules: Vec<ModuleSample>,
}

impl ModuleFacts {
    /// Reads `files` (relative to `dir`) of a host module tree.
    pub fn read(dir: &Path, version: &str, files: &[String]) -> ModuleFacts {
        let modules = files
            .iter()
            .map(|f| match fs::read(dir.join(f)) {
                Ok(d) => ModuleSample::from_bytes(f, &d),
                Err(_) => ModuleSample {
                    file: f.clone(),
                    vermagic: None,
                    machine: None,
                },
            })
            .collect();
        ModuleFacts {
            dir: dir.display().to_string(),
            version: version.to_string(),
            modules,
        }
    }
}

/// What the stage-2 init is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage2File {
    Missing(String),
    NotExecutable { mode: u32 },
    Script { interpreter: String },
    Elf(ElfInfo),
    Other,
}

/// The stage-2 init, found in the store the medium carries.
#[derive(Debug, Clone)]
pub struct Stage2Facts {
    /// `/nix/store/<hash>-system/init`.
    pub path: String,
    pub file: Stage2File,
    /// Whether its interpreter (script or ELF) is a file in the closure;
    /// `None` when it has none.
    pub interpreter_found: Option<bool>,
}

/// A file in a store: its mode, symlink target, and first bytes.
pub struct StoreEntry {
    pub mode: u32,
    pub link: Option<String>,
    pub head: Vec<u8>,
}

/// A view of `/nix/store` (the host's store root, or a medium's images).
pub trait StoreView {
    /// The entry at an absolute `/nix/store/...` path, not following a
    /// final symlink.
    fn entry(&self, path: &str) -> Option<StoreEntry>;
    /// The closure's store path base names (`<hash>-<name>`).
    fn closure(&self) -> &BTreeSet<String>;
}

/// Follows symlinks (up to 32) within the view: the final path and entry.
pub fn resolve(view: &dyn StoreView, path: &str) -> Option<(String, StoreEntry)> {
    let mut p = path.to_string();
    for _ in 0..32 {
        let e = view.entry(&p)?;
        match &e.link {
            None => return Some((p, e)),
            Some(l) if l.starts_with('/') => p = l.clone(),
            Some(l) => {
                let parent = p.rsplit_once('/').map_or("", |(d, _)| d);
                p = normalize(&format!("{parent}/{l}"));
            }
        }
    }
    None
}

fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Whether `path` is a file of the closure (its store path is in it, and
/// it exists there).
fn in_closure(view: &dyn StoreView, path: &str) -> bool {
    let Some(base) = path
        .strip_prefix("/nix/store/")
        .and_then(|r| r.split('/').next())
    else {
        return false;
    };
    view.closure().contains(base) && resolve(view, path).is_some()
}

/// The ELF header of the program at `path` in the view, if it is one
/// (symlinks followed).
pub fn elf_in_view(view: &dyn StoreView, path: &str) -> Option<ElfInfo> {
    let (_, e) = resolve(view, path)?;
    elf::parse(&e.head).ok()
}

/// Programs of the system that run before anything could fix them: the
/// post-boot agent (the demo system's, and a NixOS system's when it has
/// one).
pub const SYSTEM_PROGRAMS: &[&str] = &["bin/nixlive-postboot"];

impl Stage2Facts {
    pub fn from_view(view: &dyn StoreView, init: &str) -> Stage2Facts {
        let (file, interp) = match resolve(view, init) {
            None => (
                Stage2File::Missing("not found in the closure (or a symlink loop)".into()),
                None,
            ),
            Some((_, e)) if e.mode & 0o170000 != 0o100000 => (
                Stage2File::Missing(format!("not a regular file (mode {:o})", e.mode)),
                None,
            ),
            Some((_, e)) if e.mode & 0o111 == 0 => {
                (Stage2File::NotExecutable { mode: e.mode }, None)
            }
            Some((_, e)) if e.head.starts_with(b"#!") => {
                let line = e.head[2..]
                    .split(|&b| b == b'\n')
                    .next()
                    .unwrap_or_default();
                let line = String::from_utf8_lossy(line);
                let interpreter = line.split_whitespace().next().unwrap_or("").to_string();
                let found = in_closure(view, &interpreter);
                (Stage2File::Script { interpreter }, Some(found))
            }
            Some((_, e)) => match elf::parse(&e.head) {
                Ok(info) => {
                    let found = info.interpreter.as_deref().map(|i| in_closure(view, i));
                    (Stage2File::Elf(info), found)
                }
                Err(_) => (Stage2File::Other, None),
            },
        };
        Stage2Facts {
            path: init.to_string(),
            file,
            interpreter_found: interp,
        }
    }
}

/// The build host's store: `<store root>/nix/store` and the closure's
/// names.
pub struct HostStore<'a> {
    pub store_dir: &'a Path,
    pub names: BTreeSet<String>,
}

/// How much of a file the checks read: an ELF program's headers and
/// interpreter path lie within its first pages.
const HEAD: u64 = 64 << 10;

impl StoreView for HostStore<'_> {
    fn entry(&self, path: &str) -> Option<StoreEntry> {
        use std::io::Read;
        let rel = path.strip_prefix("/nix/store/")?;
        let p = self.store_dir.join(rel);
        let m = fs::symlink_metadata(&p).ok()?;
        let link = if m.file_type().is_symlink() {
            Some(fs::read_link(&p).ok()?.to_string_lossy().into_owned())
        } else {
            None
        };
        let mut head = Vec::new();
        if m.is_file() {
            fs::File::open(&p)
                .ok()?
                .take(HEAD)
                .read_to_end(&mut head)
                .ok()?;
        }
        Some(StoreEntry {
            mode: m.permissions().mode(),
            link,
            head,
        })
    }

    fn closure(&self) -> &BTreeSet<String> {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Fake(
        BTreeMap<String, (u32, Option<String>, Vec<u8>)>,
        BTreeSet<String>,
    );

    impl StoreView for Fake {
        fn entry(&self, path: &str) -> Option<StoreEntry> {
            self.0.get(path).map(|(m, l, h)| StoreEntry {
                mode: *m,
                link: l.clone(),
                head: h.clone(),
            })
        }
        fn closure(&self) -> &BTreeSet<String> {
            &self.1
        }
    }

    #[test]
    fn stage2_through_links() {
        let mut files = BTreeMap::new();
        files.insert(
            "/nix/store/s-sys/init".to_string(),
            (0o120777, Some("bin/init".to_string()), vec![]),
        );
        files.insert(
            "/nix/store/s-sys/bin/init".to_string(),
            (
                0o100555,
                None,
                b"#!/nix/store/b-bash/bin/bash -e\n".to_vec(),
            ),
        );
        files.insert(
            "/nix/store/b-bash/bin/bash".to_string(),
            (0o100555, None, b"\x7fELF".to_vec()),
        );
        let mut v = Fake(files, ["s-sys".to_string()].into());
        let f = Stage2Facts::from_view(&v, "/nix/store/s-sys/init");
        assert_eq!(
            f.file,
            Stage2File::Script {
                interpreter: "/nix/store/b-bash/bin/bash".into()
            }
        );
        // bash exists but is not in the closure.
        assert_eq!(f.interpreter_found, Some(false));
        v.1.insert("b-bash".into());
        let f = Stage2Facts::from_view(&v, "/nix/store/s-sys/init");
        assert_eq!(f.interpreter_found, Some(true));
        v.0.get_mut("/nix/store/s-sys/bin/init").unwrap().0 = 0o100444;
        let f = Stage2Facts::from_view(&v, "/nix/store/s-sys/init");
        assert_eq!(f.file, Stage2File::NotExecutable { mode: 0o100444 });
        let f = Stage2Facts::from_view(&v, "/nix/store/s-sys/nope");
        assert!(matches!(f.file, Stage2File::Missing(_)));
        assert_eq!(normalize("/a/b/../c/./d"), "/a/c/d");
    }

    #[test]
    fn real_kernels_and_modules() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/kernels");
        let k = KernelFacts::read(&root.join("amd64/vmlinuz"));
        let img = k
            .image
            .ok()
            .expect("scripts/install-deps.sh fetches the kernels");
        assert_eq!(img.machine, Some(Machine::X86_64));
        let want = fs::read_to_string(root.join("amd64/version")).unwrap();
        assert_eq!(img.version.as_deref(), Some(want.trim()));
        let k = KernelFacts::read(&root.join("arm64/vmlinuz"));
        let img = k.image.ok().unwrap();
        assert_eq!(img.machine, Some(Machine::Aarch64));
        let want = fs::read_to_string(root.join("arm64/version")).unwrap();
        assert_eq!(img.version.as_deref(), Some(want.trim()));
        let k = KernelFacts::read(&root.join("i386/vmlinuz"));
        assert_eq!(k.image.ok().unwrap().machine, Some(Machine::X86));
        // A module of the 6.12 tree (.ko.xz) names its release.
        let bpo = fs::read_to_string(root.join("amd64-bpo/version")).unwrap();
        let dir = root.join("amd64-bpo/lib/modules").join(bpo.trim());
        let dep = fs::read_to_string(dir.join("modules.dep")).unwrap();
        let loop_ko = dep
            .lines()
            .find_map(|l| l.split(':').next().filter(|f| f.contains("/loop.ko")))
            .unwrap()
            .to_string();
        let m = ModuleFacts::read(&dir, bpo.trim(), &[loop_ko]);
        assert_eq!(m.modules[0].vermagic.as_deref(), Some(bpo.trim()));
        assert_eq!(m.modules[0].machine, Some(Machine::X86_64));
    }
}

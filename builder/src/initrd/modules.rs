//! What goes into the initrd's main archive: the static init, the closure
//! of the requested kernel modules (decompressed, `modules.dep` renamed to
//! match), the named module sets, the firmware those modules name, and the
//! initrd configuration that tells init what to load.
//!
//! Non-goals: no module loading or ordering policy (init's, from the
//! configuration), no compression (the archive is compressed as a whole).

use super::cpio::{Archive, Kind};
use crate::files::read;
use anyhow::{Context, Result, anyhow};
use nixlive_formats::InitrdConf;
use nixlive_formats::kmod::{self as modules, ModDep};
use nixlive_formats::paths;
use nixlive_formats::unpack::{self, Codec, plain_name};
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Named groups of modules for common boot devices, so that callers need
/// not know the kernel's driver names. Names a kernel lacks are skipped.
const MODULE_SETS: &[(&str, &[&str])] = &[
    ("base", &["loop", "squashfs", "erofs", "overlay", "isofs"]),
    ("cd", &["ata_piix", "ahci", "sr_mod", "isofs", "cdrom"]),
    ("sata", &["ahci", "ata_piix", "sd_mod"]),
    (
        "usb",
        &[
            "usb_storage",
            "uas",
            "ehci_pci",
            "ohci_pci",
            "uhci_hcd",
            "xhci_pci",
            "sd_mod",
        ],
    ),
    (
        "virtio",
        &[
            "virtio_pci",
            "virtio_blk",
            "virtio_scsi",
            "sd_mod",
            "sr_mod",
        ],
    ),
    ("nvme", &["nvme"]),
    // NICs for booting over HTTP (`netboot --http`): VMs, then the common
    // Intel, Realtek and Broadcom chips.
    (
        "net",
        &[
            "virtio_pci",
            "virtio_net",
            "e1000",
            "e1000e",
            "igb",
            "igc",
            "ixgbe",
            "r8169",
            "tg3",
            "bnx2",
            "vmxnet3",
            "hv_netvsc",
        ],
    ),
    ("mmc", &["sdhci_pci", "sdhci_acpi", "mmc_block"]),
    (
        "fs",
        &[
            "vfat",
            "nls_cp437",
            "nls_iso8859_1",
            "ext4",
            "exfat",
            "ntfs3",
        ],
    ),
];

/// Sets whose modules are packed but loaded only when a device's modalias
/// matches (coldplug), never all at once: a dozen NIC drivers cost seconds
/// to load under emulation, and a machine has one or two NICs.
const COLDPLUG_SETS: &[&str] = &["net"];

/// The modules of the named sets (comma-separated names are accepted too),
/// in set order, without duplicates, except those of [`COLDPLUG_SETS`].
pub fn module_set(names: &[String]) -> Result<Vec<String>> {
    sets(names, false)
}

/// The modules of the named [`COLDPLUG_SETS`] that no other named set has.
pub fn coldplug_set(names: &[String]) -> Result<Vec<String>> {
    let listed = module_set(names)?;
    Ok(sets(names, true)?
        .into_iter()
        .filter(|m| !listed.contains(m))
        .collect())
}

fn sets(names: &[String], coldplug: bool) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for n in names.iter().flat_map(|n| n.split(',')).map(str::trim) {
        if n.is_empty() || COLDPLUG_SETS.contains(&n) != coldplug {
            continue;
        }
        let (_, mods) = MODULE_SETS.iter().find(|(s, _)| *s == n).ok_or_else(|| {
            let known: Vec<&str> = MODULE_SETS.iter().map(|(s, _)| *s).collect();
            anyhow!("unknown module set `{n}` (known: {})", known.join(", "))
        })?;
        for m in *mods {
            if !out.iter().any(|o| o == m) {
                out.push(m.to_string());
            }
        }
    }
    Ok(out)
}

/// The `firmware=` entries of a module's `.modinfo` section, found by
/// scanning the (decompressed) module for NUL-separated `firmware=` strings.
fn firmware_names(module: &[u8]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for s in module.split(|&b| b == 0) {
        if let Some(name) = s.strip_prefix(b"firmware=")
            && let Ok(name) = std::str::from_utf8(name)
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_graphic())
            && !name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            out.insert(name.to_string());
        }
    }
    out.into_iter().collect()
}

/// Modules and firmware are small; a larger result means a broken file.
const UNPACK_LIMIT: usize = 1 << 30;

/// A module or firmware file's bytes, decompressed when its name says it is
/// compressed (`.xz`, `.zst`, `.gz`).
fn decompressed(path: &Path, data: Vec<u8>) -> Result<Vec<u8>> {
    match Codec::of_name(&path.to_string_lossy()) {
        Some(codec) => unpack::unpack(codec, &data, UNPACK_LIMIT)
            .with_context(|| format!("unpacking {}", path.display())),
        None => Ok(data),
    }
}

/// What goes into an initrd.
pub struct InitrdSpec<'a> {
    pub init: &'a [u8],
    pub modules_dir: &'a Path,
    /// Modules asked for by name: each must exist (or be built in).
    pub modules: &'a [String],
    /// Modules from module sets: skipped with a note when the kernel lacks them.
    pub optional_modules: &'a [String],
    /// Modules packed (with their dependencies) but not listed for loading:
    /// init loads them by coldplug when a device matches.
    pub coldplug_modules: &'a [String],
    /// Where to look for firmware the modules name (first match wins).
    pub firmware_dirs: &'a [PathBuf],
    /// Compressed firmware formats the kernel reads itself
    /// ([`firmware_codecs`]); others are packed decompressed.
    pub firmware_codecs: &'a [Codec],
    /// What `root=` names at boot: live media, or a plain root filesystem.
    pub root: nixlive_formats::RootMode,
}

/// The firmware compressions a kernel config (`.config` text) enables
/// (`CONFIG_FW_LOADER_COMPRESS_XZ`, `_ZSTD`).
pub fn firmware_codecs(config: &str) -> Vec<Codec> {
    let on = |key: &str| config.lines().any(|l| l.trim() == format!("{key}=y"));
    let mut out = Vec::new();
    if on("CONFIG_FW_LOADER_COMPRESS") {
        // Before 5.19 xz was the only choice and had no option of its own.
        if on("CONFIG_FW_LOADER_COMPRESS_XZ") || !config.contains("CONFIG_FW_LOADER_COMPRESS_ZSTD")
        {
            out.push(Codec::Xz);
        }
        if on("CONFIG_FW_LOADER_COMPRESS_ZSTD") {
            out.push(Codec::Zstd);
        }
    }
    out
}

/// What [`archive`] found out on the way.
#[derive(Debug, Default)]
pub struct Notes {
    pub builtin: Vec<String>,
    pub skipped: Vec<String>,
    pub firmware: Vec<String>,
    /// Firmware named by a module but found in no firmware directory.
    pub missing_firmware: Vec<String>,
}

/// Builds the initrd's cpio archive (uncompressed): init, the directories
/// init needs, the modules with their metadata and configuration, and the
/// firmware they name.
pub fn archive(spec: &InitrdSpec<'_>) -> Result<(Archive, Notes)> {
    let db = ModuleDb::load(spec.modules_dir)?;
    let mut notes = Notes::default();
    let closure = db.resolve(spec, &mut notes)?;
    let packed = if spec.coldplug_modules.is_empty() {
        closure.files.clone()
    } else {
        let mut more = spec.optional_modules.to_vec();
        more.extend(spec.coldplug_modules.iter().cloned());
        let all = InitrdSpec {
            optional_modules: &more,
            ..*spec
        };
        let mut n = Notes::default();
        let files = db.resolve(&all, &mut n)?.files;
        for m in n.skipped {
            if !notes.skipped.contains(&m) {
                notes.skipped.push(m);
            }
        }
        files
    };
    let mut a = Archive::new();
    add_skeleton(&mut a, spec.init)?;
    let conf = InitrdConf {
        kernel: db.version.clone(),
        modules: closure
            .files
            .iter()
            .map(|f| plain_name(f).to_string())
            .collect(),
        root: spec.root,
    };
    a.add(
        nixlive_formats::initrd_conf::PATH,
        0o644,
        Kind::File(conf.to_string().into_bytes()),
    )?;
    let firmware = db.add_modules(&mut a, &packed)?;
    add_firmware(&mut a, spec, firmware, &mut notes)?;
    Ok((a, notes))
}

/// What an initrd of a module tree would carry, worked out without
/// reading the modules themselves (for the checks before a build).
#[derive(Debug)]
pub struct Plan {
    /// The tree's release (its directory name).
    pub version: String,
    /// The module files to pack, relative to the tree, in load order.
    pub files: Vec<String>,
    /// Modules built into the kernel (`modules.builtin`).
    pub builtin: Vec<String>,
    /// Every module the tree has (`modules.dep`).
    pub available: Vec<String>,
}

/// The [`Plan`] of `modules` and `optional` from `dir`.
pub fn plan(dir: &Path, modules: &[String], optional: &[String]) -> Result<Plan> {
    let db = ModuleDb::load(dir)?;
    let spec = InitrdSpec {
        init: &[],
        modules_dir: dir,
        modules,
        optional_modules: optional,
        coldplug_modules: &[],
        firmware_dirs: &[],
        firmware_codecs: &[],
        // Which modules a medium needs does not depend on the root mode.
        root: nixlive_formats::RootMode::Live,
    };
    let closure = db.resolve(&spec, &mut Notes::default())?;
    let mut builtin: Vec<String> = db.builtin.iter().cloned().collect();
    builtin.sort();
    Ok(Plan {
        version: db.version.clone(),
        files: closure.files,
        builtin,
        available: db.dep.names().map(String::from).collect(),
    })
}

/// A kernel's module database: a /lib/modules/VERSION directory.
struct ModuleDb<'a> {
    dir: &'a Path,
    version: String,
    dep_text: String,
    dep: ModDep,
    builtin: HashSet<String>,
}

impl<'a> ModuleDb<'a> {
    fn load(dir: &'a Path) -> Result<ModuleDb<'a>> {
        let version = dir
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
            .ok_or_else(|| {
                anyhow!(
                    "--modules-dir {} must be a /lib/modules/VERSION directory",
                    dir.display()
                )
            })?
            .to_string();
        let dep_path = dir.join("modules.dep");
        let dep_text = String::from_utf8(read(&dep_path, "modules.dep")?)
            .with_context(|| format!("{} is not UTF-8", dep_path.display()))?;
        let dep = ModDep::parse(&dep_text).with_context(|| dep_path.display().to_string())?;
        let builtin_path = dir.join("modules.builtin");
        let builtin = match fs::read_to_string(&builtin_path) {
            Ok(t) => modules::parse_builtin(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", builtin_path.display())),
        };
        Ok(ModuleDb {
            dir,
            version,
            dep_text,
            dep,
            builtin,
        })
    }

    /// The module files to pack: the requested modules, the optional ones
    /// this kernel has, their soft dependencies and mount-time requests
    /// (ext4's crc32c, vfat's code pages), and all their dependencies.
    fn resolve(&self, spec: &InitrdSpec<'_>, notes: &mut Notes) -> Result<modules::Closure> {
        let mut requested: Vec<String> = spec.modules.to_vec();
        for m in spec.optional_modules {
            let name = modules::module_name(m);
            if self.dep.path_of(&name).is_some() || self.builtin.contains(&name) {
                if !requested.iter().any(|r| modules::module_name(r) == name) {
                    requested.push(m.clone());
                }
            } else {
                notes.skipped.push(m.clone());
            }
        }
        // Soft dependencies are packed and loaded too; a kernel lacking
        // them is fine.
        let meta = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let requested = modules::with_soft_deps(
            &self.dep,
            &self.builtin,
            &modules::Aliases::parse(&meta("modules.alias")),
            &modules::SoftDeps::parse(&meta("modules.softdep")),
            &requested,
        )
        .with_context(|| format!("resolving modules in {}", self.dir.display()))?;
        let closure = modules::closure(&self.dep, &self.builtin, &requested)
            .with_context(|| format!("resolving modules in {}", self.dir.display()))?;
        notes.builtin = closure.builtin.clone();
        Ok(closure)
    }

    /// Adds the module files (decompressed: the initrd is compressed as a
    /// whole, and most kernels cannot decompress a module themselves) and
    /// modules.dep, .alias and .builtin; returns the firmware they name.
    fn add_modules(&self, a: &mut Archive, files: &[String]) -> Result<BTreeSet<String>> {
        let mdir = format!("/lib/modules/{}", self.version);
        a.add(&mdir, 0o755, Kind::Dir)?;
        let mut firmware = BTreeSet::new();
        for f in files {
            let path = self.dir.join(f);
            let data = decompressed(&path, read(&path, "module")?)?;
            firmware.extend(firmware_names(&data));
            a.add(
                &format!("{mdir}/{}", plain_name(f)),
                0o644,
                Kind::File(data),
            )?;
        }
        // Only what the initrd holds: a distribution's whole modules.dep and
        // modules.alias are 100 KB or more even compressed.
        a.add(
            &format!("{mdir}/modules.dep"),
            0o644,
            Kind::File(modules::initrd_dep(&self.dep_text, files).into_bytes()),
        )?;
        let names: HashSet<String> = files.iter().map(|f| modules::module_name(f)).collect();
        for meta in ["modules.alias", "modules.builtin"] {
            let p = self.dir.join(meta);
            match fs::read(&p) {
                Ok(data) if meta == "modules.alias" => {
                    let text = String::from_utf8_lossy(&data);
                    let kept = modules::initrd_aliases(&text, &names);
                    a.add(
                        &format!("{mdir}/{meta}"),
                        0o644,
                        Kind::File(kept.into_bytes()),
                    )?
                }
                Ok(data) => a.add(&format!("{mdir}/{meta}"), 0o644, Kind::File(data))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("note: {} does not exist, not packed", p.display());
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            }
        }
        Ok(firmware)
    }
}

/// `/init` and the directories init mounts on or writes to.
fn add_skeleton(a: &mut Archive, init: &[u8]) -> Result<()> {
    a.add("/init", 0o755, Kind::File(init.to_vec()))?;
    for d in [
        "/dev",
        "/proc",
        "/sys",
        "/run",
        paths::NEW_ROOT,
        "/etc",
        "/etc/nixlive",
    ] {
        a.add(d, 0o755, Kind::Dir)?;
    }
    // The kernel opens /dev/console for PID 1's stdio before init runs.
    a.add("/dev/console", 0o600, Kind::CharDev(5, 1))?;
    Ok(())
}

/// Adds each firmware file found in the firmware directories (first match
/// wins), kept compressed only where the kernel reads it so.
fn add_firmware(
    a: &mut Archive,
    spec: &InitrdSpec<'_>,
    names: BTreeSet<String>,
    notes: &mut Notes,
) -> Result<()> {
    'fw: for name in names {
        for dir in spec.firmware_dirs {
            for suffix in ["", ".zst", ".xz"] {
                let p = dir.join(format!("{name}{suffix}"));
                if !p.is_file() {
                    continue;
                }
                let data = read(&p, "firmware")?;
                let (file, data) = match Codec::of_name(suffix) {
                    Some(c) if !spec.firmware_codecs.contains(&c) => {
                        (name.clone(), decompressed(&p, data)?)
                    }
                    _ => (format!("{name}{suffix}"), data),
                };
                a.add(&format!("/lib/firmware/{file}"), 0o644, Kind::File(data))?;
                notes.firmware.push(file);
                continue 'fw;
            }
        }
        notes.missing_firmware.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn fake_modules(d: &Path) -> PathBuf {
        let m = d.join("6.1.0-test");
        fs::create_dir_all(m.join("kernel/fs")).unwrap();
        fs::write(
            m.join("kernel/fs/a.ko"),
            b"A\0firmware=x/fw.bin\0license=GPL\0",
        )
        .unwrap();
        fs::write(m.join("kernel/fs/b-c.ko"), b"B\0firmware=missing.bin\0").unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/fs/a.ko: kernel/fs/b-c.ko\nkernel/fs/b-c.ko:\n",
        )
        .unwrap();
        fs::write(m.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        m
    }

    #[test]
    fn initrd_from_a_modules_dir() {
        let d = tempfile::tempdir().unwrap();
        let m = fake_modules(d.path());
        let fw = d.path().join("fw");
        fs::create_dir_all(fw.join("x")).unwrap();
        fs::write(fw.join("x/fw.bin"), b"FW").unwrap();
        let spec = InitrdSpec {
            init: b"INIT",
            modules_dir: &m,
            modules: &["a".into(), "ext4".into()],
            optional_modules: &["nothere".into(), "b_c".into()],
            coldplug_modules: &[],
            firmware_dirs: std::slice::from_ref(&fw),
            firmware_codecs: &[],
            root: nixlive_formats::RootMode::Live,
        };
        let (a, notes) = archive(&spec).unwrap();
        assert_eq!(notes.builtin, ["ext4"]);
        assert_eq!(notes.skipped, ["nothere"]);
        assert_eq!(notes.firmware, ["x/fw.bin"]);
        assert_eq!(notes.missing_firmware, ["missing.bin"]);
        let bytes = a.to_bytes(0);
        let text = String::from_utf8_lossy(&bytes);
        for p in [
            "init\0",
            "etc/nixlive/initrd.conf\0",
            "lib/modules/6.1.0-test/kernel/fs/a.ko\0",
            "lib/modules/6.1.0-test/kernel/fs/b-c.ko\0",
            "lib/modules/6.1.0-test/modules.dep\0",
            "lib/modules/6.1.0-test/modules.builtin\0",
            "lib/firmware/x/fw.bin\0",
            "mnt-root\0",
            "dev/console\0",
        ] {
            assert!(text.contains(p), "{p}");
        }
        assert!(!text.contains("modules.alias"));
        assert!(text.contains(
            "nixlive-initrd 1\nkernel 6.1.0-test\nmodule kernel/fs/b-c.ko\nmodule kernel/fs/a.ko\n"
        ));
        let bad = InitrdSpec {
            modules: &["zzz".into()],
            ..spec
        };
        let err = archive(&bad).unwrap_err();
        assert!(format!("{err:#}").contains("zzz"));
        let none = d.path().join("none");
        let bad = InitrdSpec {
            modules_dir: &none,
            modules: &[],
            ..bad
        };
        let err = archive(&bad).unwrap_err();
        assert!(format!("{err:#}").contains("none/modules.dep"), "{err:#}");
    }

    /// `xz`/`zstd` as the kernel's `make modules_install` runs them.
    fn squeeze(data: &[u8], prog: &str) -> Vec<u8> {
        let args: &[&str] = match prog {
            "xz" => &["--check=crc32", "--lzma2=dict=1MiB", "-c"],
            _ => &["-19", "-q", "-c"],
        };
        crate::tool::pipe(Command::new(prog).args(args), data, prog).unwrap()
    }

    #[test]
    fn compressed_modules_go_in_decompressed() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("6.1.0-xz");
        fs::create_dir_all(m.join("kernel/fs")).unwrap();
        let a = b"A\0firmware=x/fw.bin\0license=GPL\0".repeat(50);
        let b = b"B module\0".repeat(50);
        fs::write(m.join("kernel/fs/a.ko.xz"), squeeze(&a, "xz")).unwrap();
        fs::write(m.join("kernel/fs/b.ko.zst"), squeeze(&b, "zstd")).unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/fs/a.ko.xz: kernel/fs/b.ko.zst\nkernel/fs/b.ko.zst:\n",
        )
        .unwrap();
        let fw = d.path().join("fw");
        fs::create_dir_all(fw.join("x")).unwrap();
        fs::write(fw.join("x/fw.bin.xz"), squeeze(b"FIRMWARE", "xz")).unwrap();
        let spec = InitrdSpec {
            init: b"INIT",
            modules_dir: &m,
            modules: &["a".into()],
            optional_modules: &[],
            coldplug_modules: &[],
            firmware_dirs: std::slice::from_ref(&fw),
            firmware_codecs: &[],
            root: nixlive_formats::RootMode::Live,
        };
        let (archive, notes) = archive(&spec).unwrap();
        assert_eq!(notes.firmware, ["x/fw.bin"]);
        let bytes = archive.to_bytes(0);
        let file = |name: &str| -> Vec<u8> {
            // newc: the name (NUL-terminated) is padded to 4 bytes, then the data.
            let at = bytes
                .windows(name.len() + 1)
                .position(|w| w == format!("{name}\0").as_bytes())
                .unwrap_or_else(|| panic!("{name} not in the initrd"));
            let header = at - 110;
            let size = usize::from_str_radix(
                std::str::from_utf8(&bytes[header + 54..header + 62]).unwrap(),
                16,
            )
            .unwrap();
            let start = (at + name.len() + 1).next_multiple_of(4);
            bytes[start..start + size].to_vec()
        };
        assert_eq!(file("lib/modules/6.1.0-xz/kernel/fs/a.ko"), a);
        assert_eq!(file("lib/modules/6.1.0-xz/kernel/fs/b.ko"), b);
        assert_eq!(file("lib/firmware/x/fw.bin"), b"FIRMWARE");
        assert_eq!(
            file("lib/modules/6.1.0-xz/modules.dep"),
            b"kernel/fs/a.ko: kernel/fs/b.ko\nkernel/fs/b.ko:\n"
        );
        let conf = String::from_utf8(file("etc/nixlive/initrd.conf")).unwrap();
        assert!(
            conf.ends_with("module kernel/fs/b.ko\nmodule kernel/fs/a.ko\n"),
            "{conf}"
        );
        assert!(!String::from_utf8_lossy(&bytes).contains(".ko.xz"));
        // Coldplug-only (the net set): packed with its dependencies, not listed.
        let (cold, _) = super::archive(&InitrdSpec {
            modules: &[],
            coldplug_modules: &["a".into()],
            ..spec
        })
        .unwrap();
        let cold = cold.to_bytes(0);
        let text = String::from_utf8_lossy(&cold);
        assert!(text.contains("kernel/fs/a.ko\0") && text.contains("kernel/fs/b.ko\0"));
        assert!(!text.contains("module kernel/fs/"), "listed for loading");
        // A kernel that reads xz firmware gets it as it is.
        let (archive, notes) = super::archive(&InitrdSpec {
            firmware_codecs: &[Codec::Xz],
            ..spec
        })
        .unwrap();
        assert_eq!(notes.firmware, ["x/fw.bin.xz"]);
        drop(archive);
        // A damaged module is an error that names it.
        fs::write(m.join("kernel/fs/b.ko.zst"), b"not zstd").unwrap();
        let e = super::archive(&spec).unwrap_err();
        assert!(format!("{e:#}").contains("b.ko.zst"), "{e:#}");
    }

    #[test]
    fn firmware_codecs_from_the_kernel_config() {
        assert!(firmware_codecs("# CONFIG_FW_LOADER_COMPRESS is not set\n").is_empty());
        assert_eq!(
            firmware_codecs("CONFIG_FW_LOADER_COMPRESS=y\n"),
            [Codec::Xz],
            "before 5.19 compressed firmware meant xz"
        );
        assert_eq!(
            firmware_codecs(
                "CONFIG_FW_LOADER_COMPRESS=y\nCONFIG_FW_LOADER_COMPRESS_XZ=y\nCONFIG_FW_LOADER_COMPRESS_ZSTD=y\n"
            ),
            [Codec::Xz, Codec::Zstd]
        );
        assert_eq!(
            firmware_codecs(
                "CONFIG_FW_LOADER_COMPRESS=y\n# CONFIG_FW_LOADER_COMPRESS_XZ is not set\nCONFIG_FW_LOADER_COMPRESS_ZSTD=y\n"
            ),
            [Codec::Zstd]
        );
    }

    #[test]
    fn firmware_scan() {
        assert_eq!(
            firmware_names(
                b"\0firmware=b.bin\0firmware=a/c.fw\0firmware=../x\0xfirmware=no\0firmware=\0"
            ),
            ["a/c.fw", "b.bin"]
        );
    }

    #[test]
    fn module_sets() {
        let m = module_set(&["base,cd".into(), "usb".into()]).unwrap();
        assert_eq!(&m[..5], ["loop", "squashfs", "erofs", "overlay", "isofs"]);
        assert!(m.contains(&"usb_storage".to_string()) && m.contains(&"sr_mod".to_string()));
        assert_eq!(m.iter().filter(|x| *x == "isofs").count(), 1);
        // NIC drivers are packed for coldplug, not loaded all at once.
        let sets = ["net,virtio".to_string()];
        let listed = module_set(&sets).unwrap();
        let cold = coldplug_set(&sets).unwrap();
        assert!(listed.contains(&"virtio_pci".to_string()));
        assert!(!listed.contains(&"virtio_net".to_string()));
        assert!(cold.contains(&"virtio_net".to_string()) && cold.contains(&"e1000".to_string()));
        assert!(!cold.contains(&"virtio_pci".to_string()), "listed already");
        assert!(coldplug_set(&["floppy".into()]).is_err());
        let e = module_set(&["floppy".into()]).unwrap_err();
        assert!(
            e.to_string().contains("floppy") && e.to_string().contains("usb"),
            "{e}"
        );
    }
}

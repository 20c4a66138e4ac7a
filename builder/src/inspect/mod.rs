//! Reading a finished medium back: an ISO, a medium tree, a netboot set or
//! an initrd alone. What it holds (kernel, init, modules, boot entries,
//! manifest, images, registration) goes into a [`Report`], and the same
//! rules the builder runs before a build ([`crate::check::rules`]) say
//! whether it can boot.
//!
//! A new kind of medium (a system tarball) is a variant of [`MediumKind`]
//! and a function that fills a [`Parts`] from it; the analysis after that
//! is shared.
//!
//! Non-goals: no booting, no repair.

pub mod initrd;
pub mod squash;

use crate::check::config::MediumNeeds;
use crate::check::facts::{KernelFacts, ModuleFacts, ModuleSample, ProgramFacts, Stage2Facts};
use crate::check::rules::{self, Problem};
use crate::tool;
use anyhow::{Context, Result, bail};
use initrd::{Initrd, Segment};
use nixlive_formats::elf::Machine;
use nixlive_formats::kmod;
use nixlive_formats::manifest::{self, Manifest};
use nixlive_formats::nixkey;
use nixlive_formats::registration::Registration;
use nixlive_formats::{ImageFs, InitrdConf, digest, superblock};
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What was inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediumKind {
    Iso,
    Tree,
    Netboot,
    Initrd,
}

impl MediumKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediumKind::Iso => "iso",
            MediumKind::Tree => "medium tree",
            MediumKind::Netboot => "netboot set",
            MediumKind::Initrd => "initrd",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KernelReport {
    pub path: String,
    pub kind: Option<String>,
    pub arch: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProgramReport {
    pub path: String,
    pub arch: Option<String>,
    pub linkage: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InitrdReport {
    pub path: String,
    pub size: usize,
    pub segments: Vec<Segment>,
    pub init: Option<ProgramReport>,
    pub shell: Option<ProgramReport>,
    /// The release of the module tree it carries.
    pub modules_for: Option<String>,
    /// Module names packed.
    pub modules: Vec<String>,
    /// Modules this medium needs (loop, squashfs, ...).
    pub needed: Vec<String>,
    /// Of those, neither packed nor built in.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BootEntry {
    /// The file it is in (`isolinux/isolinux.cfg`).
    pub source: String,
    pub cmdline: String,
}

#[derive(Debug, Clone)]
pub struct ImageReport {
    pub name: String,
    pub fs: String,
    pub size: u64,
    pub sha256: String,
    /// The image's size as found; `None` when it is missing.
    pub found_size: Option<u64>,
    /// The digest check: `None` when not asked (`--verify`) or impossible.
    pub digest_ok: Option<bool>,
    /// Its compression (squashfs superblock), when readable.
    pub compression: Option<&'static str>,
    /// Its dm-verity tree: root hash and where the tree starts.
    pub verity: Option<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct ManifestReport {
    pub path: String,
    pub init: String,
    pub registration: String,
    pub images: Vec<ImageReport>,
    /// The names of the keys its `sig` lines name.
    pub signers: Vec<String>,
    /// Checked against the initrd's trusted keys: the key that signed it,
    /// or why none did; `None` when the initrd trusts no key.
    pub signature: Option<Result<String, String>>,
}

#[derive(Debug, Clone)]
pub struct RegistrationReport {
    pub path: String,
    pub image: String,
    /// How many paths it registers (`None` when it cannot be read).
    pub paths: Option<usize>,
    pub closed: bool,
}

/// Everything `nixlive inspect` found.
#[derive(Debug, Clone)]
pub struct Report {
    pub path: String,
    pub kind: MediumKind,
    pub label: Option<String>,
    pub kernel: Option<KernelReport>,
    pub initrd: Option<InitrdReport>,
    pub entries: Vec<BootEntry>,
    pub manifest: Option<ManifestReport>,
    pub registration: Option<RegistrationReport>,
    pub problems: Vec<Problem>,
}

/// Where a medium's images are.
enum ImagesIn {
    Dir(PathBuf),
    Initrd,
}

/// The parts of a medium, found; the analysis is the same for every kind.
struct Parts {
    kind: MediumKind,
    label: Option<String>,
    kernel: Option<(String, Vec<u8>)>,
    initrd: Option<(String, Vec<u8>)>,
    entries: Vec<BootEntry>,
    /// The manifest's text and where it is, and where its images are.
    manifest: Option<(String, Result<String, String>, ImagesIn)>,
    medium_fs: Option<&'static str>,
}

/// The boot entries of an ISOLINUX configuration: its `APPEND` lines
/// without `initrd=`.
pub fn isolinux_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let (k, rest) = l.split_once(char::is_whitespace)?;
            k.eq_ignore_ascii_case("append").then(|| {
                rest.split_whitespace()
                    .filter(|w| !w.starts_with("initrd="))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        })
        .collect()
}

/// The boot entries of a GRUB configuration: its `linux` lines without the
/// kernel's path.
pub fn grub_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let rest = l.strip_prefix("linux ")?;
            Some(
                rest.split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect()
}

/// The boot entries of an iPXE script: its `kernel` lines without the
/// kernel's name and `initrd=`.
pub fn ipxe_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let rest = l.strip_prefix("kernel ")?;
            Some(
                rest.split_whitespace()
                    .skip(1)
                    .filter(|w| !w.starts_with("initrd="))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect()
}

/// The value of `key=` on a command line.
fn param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// A squashfs image's compression, from its superblock.
pub fn squashfs_compression(head: &[u8]) -> Option<&'static str> {
    if head.get(..4)? != b"hsqs" {
        return None;
    }
    Some(match u16::from_le_bytes([*head.get(20)?, *head.get(21)?]) {
        1 => "gzip",
        2 => "lzma",
        3 => "lzo",
        4 => "xz",
        5 => "lz4",
        6 => "zstd",
        _ => return None,
    })
}

fn read_opt(p: &Path) -> Option<Vec<u8>> {
    fs::read(p).ok()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// The parts of a medium tree (also an ISO's, once extracted).
fn tree_parts(dir: &Path, kind: MediumKind, label: Option<String>) -> Parts {
    let mut entries = Vec::new();
    for (file, parse) in [
        (
            "isolinux/isolinux.cfg",
            isolinux_entries as fn(&str) -> Vec<String>,
        ),
        ("boot/grub/grub.cfg", grub_entries),
    ] {
        if let Ok(t) = fs::read_to_string(dir.join(file)) {
            for cmdline in parse(&t) {
                entries.push(BootEntry {
                    source: file.to_string(),
                    cmdline,
                });
            }
        }
    }
    let mpath = dir.join(manifest::DEFAULT_PATH);
    let manifest = Some((
        rel(dir, &mpath),
        fs::read_to_string(&mpath).map_err(|e| e.to_string()),
        ImagesIn::Dir(dir.to_path_buf()),
    ));
    Parts {
        kind,
        label,
        kernel: read_opt(&dir.join("boot/vmlinuz")).map(|d| ("boot/vmlinuz".to_string(), d)),
        initrd: Some((
            "boot/initrd".to_string(),
            read_opt(&dir.join("boot/initrd")).unwrap_or_default(),
        )),
        entries,
        manifest,
        medium_fs: (kind == MediumKind::Iso).then_some("iso9660"),
    }
}

/// The parts of a netboot set.
fn netboot_parts(dir: &Path) -> Parts {
    let mut entries = Vec::new();
    if let Ok(t) = fs::read_to_string(dir.join("cmdline")) {
        entries.push(BootEntry {
            source: "cmdline".into(),
            cmdline: t.trim().to_string(),
        });
    }
    if let Ok(t) = fs::read_to_string(dir.join("netboot.ipxe")) {
        for cmdline in ipxe_entries(&t) {
            entries.push(BootEntry {
                source: "netboot.ipxe".into(),
                cmdline,
            });
        }
    }
    // `netboot --http`: the manifest and images are served beside the initrd.
    let mpath = dir.join(manifest::DEFAULT_PATH);
    let manifest = mpath.exists().then(|| {
        (
            rel(dir, &mpath),
            fs::read_to_string(&mpath).map_err(|e| e.to_string()),
            ImagesIn::Dir(dir.to_path_buf()),
        )
    });
    Parts {
        kind: MediumKind::Netboot,
        label: None,
        kernel: read_opt(&dir.join("bzImage")).map(|d| ("bzImage".to_string(), d)),
        initrd: Some((
            "initrd".to_string(),
            read_opt(&dir.join("initrd")).unwrap_or_default(),
        )),
        entries,
        manifest,
        medium_fs: None,
    }
}

/// Inspects `path`; `verify` checks each image's SHA-256.
pub fn inspect(path: &Path, verify: bool) -> Result<Report> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let _tmp;
    let parts = if meta.is_dir() {
        // A netboot set first: an HTTP one (`netboot --http`) has the
        // manifest beside its initrd, as a tree does.
        if path.join("bzImage").exists() && path.join("initrd").exists() {
            netboot_parts(path)
        } else if path.join(manifest::DEFAULT_PATH).exists() || path.join("boot/vmlinuz").exists() {
            tree_parts(path, MediumKind::Tree, None)
        } else {
            bail!(
                "{} is neither a medium tree (nixlive.manifest, boot/) nor a netboot set (bzImage, initrd)",
                path.display()
            );
        }
    } else {
        let mut head = vec![0u8; 64 << 10];
        let n = fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .with_context(|| format!("reading {}", path.display()))?;
        head.truncate(n);
        match superblock::identify(&head) {
            Some(id) if id.fstype == "iso9660" => {
                let tmp = crate::cleanup::Scratch::new("nixlive-inspect.")?;
                extract_iso(path, tmp.path())?;
                let p = tree_parts(tmp.path(), MediumKind::Iso, id.label);
                _tmp = tmp;
                p
            }
            _ => Parts {
                kind: MediumKind::Initrd,
                label: None,
                kernel: None,
                initrd: Some((
                    path.display().to_string(),
                    fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                )),
                entries: Vec::new(),
                manifest: None,
                medium_fs: None,
            },
        }
    };
    analyze(&path.display().to_string(), parts, verify)
}

/// Copies an ISO's files out with xorriso (made writable, so the
/// temporary directory can go).
fn extract_iso(iso: &Path, dir: &Path) -> Result<()> {
    tool::run(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract", "/"])
            .arg(dir),
        "xorriso",
    )?;
    tool::run(Command::new("chmod").args(["-R", "u+w"]).arg(dir), "chmod")
}

fn program_report(p: &ProgramFacts) -> ProgramReport {
    let info = p.elf.ok();
    ProgramReport {
        path: p.path.clone(),
        arch: info.map(|i| i.machine.to_string()),
        linkage: info.map(|i| i.linkage()),
    }
}

fn problem(what: String, fix: &str) -> Problem {
    Problem {
        what,
        fix: fix.to_string(),
    }
}

const REBUILD: &str = "rebuild the medium with nixlive, or copy it again whole";

fn analyze(path: &str, mut parts: Parts, verify: bool) -> Result<Report> {
    let mut problems = Vec::new();
    let work = crate::cleanup::Scratch::new("nixlive-inspect.")?;

    // The kernel.
    let kfacts = parts
        .kernel
        .as_ref()
        .map(|(p, d)| KernelFacts::from_bytes(p, d));
    if let Some(k) = &kfacts {
        problems.extend(rules::kernel(k));
    } else if parts.kind != MediumKind::Initrd {
        problems.push(problem(
            "the medium has no kernel (boot/vmlinuz or bzImage)".into(),
            REBUILD,
        ));
    }

    // The initrd.
    let mut initrd = None;
    let mut initrd_report = None;
    let mut module_facts = None;
    let mut builtin = BTreeSet::new();
    if let Some((ipath, data)) = parts.initrd.take() {
        match Initrd::parse(data) {
            Err(e) => problems.push(problem(
                format!("the initrd {ipath} cannot be read: {e}"),
                "rebuild the medium (the kernel stops at the same place and finds no /init)",
            )),
            Ok(r) => {
                let (mf, b) = initrd_modules(&r);
                module_facts = mf;
                builtin = b;
                initrd_report = Some(InitrdReport {
                    path: ipath,
                    size: r.size(),
                    segments: r.segments.clone(),
                    init: None,
                    shell: None,
                    modules_for: module_facts
                        .as_ref()
                        .map(|m: &ModuleFacts| m.version.clone()),
                    modules: module_facts
                        .as_ref()
                        .map(|m| {
                            m.modules
                                .iter()
                                .map(|s| kmod::module_name(&s.file))
                                .collect()
                        })
                        .unwrap_or_default(),
                    needed: Vec::new(),
                    missing: Vec::new(),
                });
                initrd = Some(r);
            }
        }
    }
    let machine = rules::kernel_machine(kfacts.as_ref(), module_facts.as_ref());
    if let (Some(r), Some(rep)) = (&initrd, &mut initrd_report) {
        match r.file("init") {
            None => problems.push(problem(
                format!("the initrd {} has no /init", rep.path),
                "build the initrd with --init (nixlive-init)",
            )),
            Some((d, _)) => {
                let p = ProgramFacts::from_bytes("/init", "/init", d);
                problems.extend(rules::initrd_program(&p, machine));
                rep.init = Some(program_report(&p));
            }
        }
        if let Some((d, _)) = r.file("bin/sh") {
            let p = ProgramFacts::from_bytes("/bin/sh", "/bin/sh", d);
            problems.extend(rules::initrd_program(&p, machine));
            rep.shell = Some(program_report(&p));
        }
        if let Some(m) = &module_facts {
            problems.extend(rules::versions(kfacts.as_ref(), m, machine));
        }
        // A netboot initrd carries the manifest and images.
        if parts.manifest.is_none() {
            if let Some((d, _)) = r.file(manifest::DEFAULT_PATH) {
                parts.manifest = Some((
                    format!("{}:/{}", rep.path, manifest::DEFAULT_PATH),
                    Ok(String::from_utf8_lossy(d).into_owned()),
                    ImagesIn::Initrd,
                ));
            } else if parts.kind == MediumKind::Netboot {
                problems.push(problem(
                    format!(
                        "the netboot initrd {} has no {}",
                        rep.path,
                        manifest::DEFAULT_PATH
                    ),
                    REBUILD,
                ));
            }
        }
    }

    // The manifest and its images.
    let mut manifest_report = None;
    let mut registration = None;
    let mut images_fs = None;
    if let Some((mpath, text, images_in)) = parts.manifest.take() {
        let signed = text.as_ref().ok().map(|t| manifest::signed_part(t));
        match text
            .map_err(|e| e.to_string())
            .and_then(|t| Manifest::parse(&t).map_err(|e| e.to_string()))
        {
            Err(e) if parts.kind != MediumKind::Initrd => problems.push(problem(
                format!("the manifest {mpath} cannot be read: {e}"),
                REBUILD,
            )),
            Err(_) => {}
            Ok(m) => {
                let (rep, files) = check_images(
                    &m,
                    &mpath,
                    &images_in,
                    initrd.as_ref(),
                    work.path(),
                    verify,
                    &mut problems,
                );
                images_fs = m.images.first().map(|i| {
                    let comp = rep
                        .images
                        .first()
                        .and_then(|i| i.compression)
                        .unwrap_or("zstd");
                    (i.fs, comp)
                });
                registration = store_checks(&m, &files, machine, &mut problems);
                for e in &parts.entries {
                    if let Some(init) = param(&e.cmdline, "init")
                        && init != m.init
                    {
                        problems.push(problem(
                            format!(
                                "the boot entry in {} starts init={init}, but the manifest's stage-2 init is {}",
                                e.source, m.init
                            ),
                            REBUILD,
                        ));
                    }
                }
                let mut rep = rep;
                rep.signature = trusted_keys(initrd.as_ref()).map(|keys| {
                    nixkey::check(
                        signed.as_deref().unwrap_or_default().as_bytes(),
                        &m.sigs,
                        &keys,
                    )
                    .map_err(|e| e.to_string())
                });
                if let Some(Err(why)) = &rep.signature {
                    problems.push(problem(
                        format!("the manifest {mpath} is not authentic: {why}"),
                        "sign it with --sign-key for a key the initrd trusts (--trusted-key), or rebuild the medium",
                    ));
                }
                manifest_report = Some(rep);
            }
        }
    }
    for e in &parts.entries {
        if let (Some(want), Some(label)) = (param(&e.cmdline, "root"), &parts.label)
            && let Some(l) = want.strip_prefix("LABEL=")
            && l != label
        {
            problems.push(problem(
                format!(
                    "the boot entry in {} looks for root=LABEL={l}, but the ISO's label is {label}",
                    e.source
                ),
                REBUILD,
            ));
        }
    }

    // What the medium needs from the kernel, against the initrd's modules.
    if let Some(rep) = &mut initrd_report {
        let needs = MediumNeeds {
            initrd_compression: rep
                .segments
                .first()
                .map(|s| s.format)
                .filter(|f| *f != "stored"),
            images: images_fs,
            medium_fs: parts.medium_fs,
        };
        rep.needed = needs
            .needs()
            .iter()
            .filter_map(|n| n.module.map(String::from))
            .collect();
        if module_facts.is_some() {
            let packed: BTreeSet<String> = rep.modules.iter().cloned().collect();
            rep.missing = rules::missing_modules(&needs, &packed, &builtin)
                .into_iter()
                .map(String::from)
                .collect();
            for m in &rep.missing {
                problems.push(problem(
                    format!(
                        "the medium needs module {m}, which the initrd {} neither carries nor lists as built into the kernel",
                        rep.path
                    ),
                    &format!("rebuild with --module {m} (or --module-set base)"),
                ));
            }
        }
    }

    Ok(Report {
        path: path.to_string(),
        kind: parts.kind,
        label: parts.label,
        kernel: kfacts.map(|k| {
            let i = k.image.ok();
            KernelReport {
                path: k.path.clone(),
                kind: i.map(|i| i.kind.to_string()),
                arch: i.and_then(|i| i.machine).map(|m| m.to_string()),
                version: i.and_then(|i| i.version.clone()),
            }
        }),
        initrd: initrd_report,
        entries: parts.entries,
        manifest: manifest_report,
        registration,
        problems,
    })
}

/// The module tree an initrd carries (`lib/modules/VERSION`), each module
/// read, and the names `modules.builtin` lists.
fn initrd_modules(r: &Initrd) -> (Option<ModuleFacts>, BTreeSet<String>) {
    let version = r
        .file(nixlive_formats::initrd_conf::PATH)
        .and_then(|(d, _)| InitrdConf::parse(&String::from_utf8_lossy(d)).ok())
        .map(|c| c.kernel)
        .or_else(|| {
            r.paths()
                .find_map(|p| p.strip_prefix("lib/modules/")?.split('/').next())
                .map(String::from)
        });
    let Some(version) = version else {
        return (None, BTreeSet::new());
    };
    let prefix = format!("lib/modules/{version}/");
    let modules: Vec<ModuleSample> = r
        .paths()
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|f| nixlive_formats::unpack::plain_name(f).ends_with(".ko"))
        .filter_map(|f| {
            let (d, _) = r.file(&format!("{prefix}{f}"))?;
            Some(ModuleSample::from_bytes(f, d))
        })
        .collect();
    let builtin = r
        .file(&format!("{prefix}modules.builtin"))
        .map(|(d, _)| {
            kmod::parse_builtin(&String::from_utf8_lossy(d))
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    (
        Some(ModuleFacts {
            dir: format!("initrd:/{prefix}"),
            version,
            modules,
        }),
        builtin,
    )
}

/// Each image the manifest names: there, its size, and (with `verify`) its
/// digest. Returns the report and the images' files (top first) that
/// exist, for the store checks.
fn check_images(
    m: &Manifest,
    mpath: &str,
    images_in: &ImagesIn,
    initrd: Option<&Initrd>,
    work: &Path,
    verify: bool,
    problems: &mut Vec<Problem>,
) -> (ManifestReport, Vec<(String, PathBuf)>) {
    let mut images = Vec::new();
    let mut files = Vec::new();
    for i in &m.images {
        let (file, where_) = match images_in {
            ImagesIn::Dir(d) => (Some(d.join(&i.name)).filter(|p| p.is_file()), "the medium"),
            ImagesIn::Initrd => {
                let f = initrd.and_then(|r| r.file(&i.name)).and_then(|(d, _)| {
                    let p = work.join(&i.name);
                    fs::write(&p, d).ok().map(|()| p)
                });
                (f, "the initrd")
            }
        };
        let mut rep = ImageReport {
            name: i.name.clone(),
            fs: i.fs.as_str().to_string(),
            size: i.size,
            sha256: i.sha256.clone(),
            found_size: None,
            digest_ok: None,
            compression: None,
            verity: i
                .verity
                .as_ref()
                .map(|v| (nixlive_formats::hex::encode(&v.root), v.hash_offset)),
        };
        match &file {
            None => problems.push(problem(
                format!(
                    "the manifest {mpath} names the image {}, which is not in {where_}",
                    i.name
                ),
                "copy the whole medium (every image the manifest lists), or rebuild it",
            )),
            Some(p) => {
                let size = fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                rep.found_size = Some(size);
                let mut head = [0u8; 96];
                if let Ok(mut f) = fs::File::open(p)
                    && f.read_exact(&mut head).is_ok()
                {
                    rep.compression = squashfs_compression(&head);
                }
                if size != i.size {
                    problems.push(problem(
                        format!(
                            "the image {} is {size} bytes, but the manifest {mpath} says {}",
                            i.name, i.size
                        ),
                        "copy the image again whole (a copy was cut short or replaced), or rebuild the medium",
                    ));
                } else if verify {
                    let ok = fs::File::open(p)
                        .ok()
                        .and_then(|f| digest::sha256_read(f).ok())
                        .is_some_and(|s| s.hex == i.sha256);
                    rep.digest_ok = Some(ok);
                    if !ok {
                        problems.push(problem(
                            format!(
                                "the image {}'s SHA-256 is not the manifest's ({})",
                                i.name, i.sha256
                            ),
                            "copy the image again (it is damaged), or rebuild the medium",
                        ));
                    }
                }
                if i.fs == ImageFs::Squashfs && size == i.size {
                    files.push((i.name.clone(), p.clone()));
                }
            }
        }
        images.push(rep);
    }
    (
        ManifestReport {
            path: mpath.to_string(),
            init: m.init.clone(),
            registration: m.registration.clone(),
            images,
            signers: m.sigs.iter().map(|s| s.name.clone()).collect(),
            signature: None,
        },
        files,
    )
}

/// The keys the initrd trusts (`None` when it holds none).
fn trusted_keys(initrd: Option<&Initrd>) -> Option<Vec<nixkey::PublicKey>> {
    let (data, _) = initrd?.file(nixkey::TRUSTED_KEYS)?;
    let keys = nixkey::parse_keys(&String::from_utf8_lossy(data)).ok()?;
    (!keys.is_empty()).then_some(keys)
}

/// The registration in the top image (parsed, closed) and the stage-2
/// init in the images' store.
fn store_checks(
    m: &Manifest,
    files: &[(String, PathBuf)],
    machine: Option<Machine>,
    problems: &mut Vec<Problem>,
) -> Option<RegistrationReport> {
    let mut images = Vec::new();
    for (name, p) in files {
        match squash::Image::list(p) {
            Ok(i) => images.push(i),
            Err(e) => problems.push(problem(
                format!("the image {name} cannot be read: {e:#}"),
                "copy the image again, or rebuild the medium",
            )),
        }
    }
    if images.len() != m.images.len() {
        // Missing or unreadable images were reported already.
        return None;
    }
    let top = &images[0];
    let rel = m
        .registration
        .strip_prefix("/nix/store/")
        .unwrap_or(&m.registration);
    let mut report = None;
    let mut closure: BTreeSet<String> = BTreeSet::new();
    // Err((true, why)): parsed, but not closed.
    let parsed = top
        .cat(rel)
        .map_err(|e| (false, format!("{e:#}")))
        .and_then(|d| {
            Registration::parse(&d).map_err(|e| (crate::closure::is_open(&e), e.to_string()))
        });
    match parsed {
        Err((true, e)) => {
            problems.push(problem(
                format!(
                    "the registration {} in {} is not closed: {} (postboot refuses it; Nix would see a broken store)",
                    m.registration, m.images[0].name, e
                ),
                "build from a closed closure (nix-store -qR, or closureInfo) and let nixlive write the registration",
            ));
            report = Some(RegistrationReport {
                path: m.registration.clone(),
                image: m.images[0].name.clone(),
                paths: None,
                closed: false,
            });
        }
        Err((false, e)) => problems.push(problem(
            format!(
                "the registration {} in {} cannot be read: {e}",
                m.registration, m.images[0].name
            ),
            REBUILD,
        )),
        Ok(reg) => {
            let all: BTreeSet<&str> = reg.paths.iter().map(|p| p.path.as_str()).collect();
            let open = reg.paths.iter().find_map(|p| {
                p.references
                    .iter()
                    .find(|r| !all.contains(r.as_str()))
                    .map(|r| (p.path.clone(), r.clone()))
            });
            if let Some((p, r)) = &open {
                problems.push(problem(
                    format!(
                        "the registration {} in {} is not closed: {p} refers to {r}, which it does not list (postboot cannot load it; Nix would see a broken store)",
                        m.registration, m.images[0].name
                    ),
                    "build from a closed closure (nix-store -qR, or closureInfo) and let nixlive write the registration",
                ));
            }
            closure = reg
                .paths
                .iter()
                .map(|p| p.base_name().to_string())
                .collect();
            report = Some(RegistrationReport {
                path: m.registration.clone(),
                image: m.images[0].name.clone(),
                paths: Some(reg.paths.len()),
                closed: open.is_none(),
            });
        }
    }
    if closure.is_empty() {
        closure = images
            .iter()
            .flat_map(|i| i.top_names().map(String::from))
            .collect();
    }
    let store = squash::Store { images, closure };
    match m.init.strip_suffix("/init") {
        Some(system) => problems.extend(crate::check::stage2_and_programs(&store, system, machine)),
        None => {
            let facts = Stage2Facts::from_view(&store, &m.init);
            problems.extend(rules::stage2(&facts, machine));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_entries() {
        let iso = "LABEL nixlive\n  KERNEL /boot/vmlinuz\n  APPEND initrd=/boot/initrd root=LABEL=T init=/nix/store/x/init quiet\n";
        assert_eq!(
            isolinux_entries(iso),
            ["root=LABEL=T init=/nix/store/x/init quiet"]
        );
        let grub = "menuentry \"nixlive\" {\n  linux /boot/vmlinuz root=LABEL=T init=/i\n  initrd /boot/initrd\n}\n";
        assert_eq!(grub_entries(grub), ["root=LABEL=T init=/i"]);
        let ipxe =
            "#!ipxe\nkernel bzImage initrd=initrd init=/i console=ttyS0\ninitrd initrd\nboot\n";
        assert_eq!(ipxe_entries(ipxe), ["init=/i console=ttyS0"]);
        assert_eq!(param("root=LABEL=T init=/i", "root"), Some("LABEL=T"));
        assert_eq!(param("xinit=/a init=/i", "init"), Some("/i"));
    }

    #[test]
    fn squashfs_superblock() {
        let mut h = vec![0u8; 96];
        h[..4].copy_from_slice(b"hsqs");
        h[20] = 6;
        assert_eq!(squashfs_compression(&h), Some("zstd"));
        h[20] = 4;
        assert_eq!(squashfs_compression(&h), Some("xz"));
        assert_eq!(squashfs_compression(b"nope"), None);
    }
}

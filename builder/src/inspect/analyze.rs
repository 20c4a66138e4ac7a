//! Judging a medium's parts: the kernel, the initrd and its programs and
//! modules, the manifest, its images and their store, against the same
//! rules the builder runs before a build ([`crate::check::rules`]).

use super::gather::{ImagesIn, Parts};
use super::initrd::Initrd;
use super::readers::param;
use super::report::*;
use super::squash;
use crate::check::config::MediumNeeds;
use crate::check::facts::{KernelFacts, ModuleFacts, ModuleSample, ProgramFacts, Stage2Facts};
use crate::check::rules::{self, Problem};
use anyhow::Result;
use nixlive_formats::elf::Machine;
use nixlive_formats::kmod;
use nixlive_formats::manifest::{self, Manifest};
use nixlive_formats::nixkey;
use nixlive_formats::registration::Registration;
use nixlive_formats::{ImageFs, InitrdConf, digest};
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

const REBUILD: &str = "rebuild the medium with nixlive, or copy it again whole";

fn problem(what: String, fix: &str) -> Problem {
    Problem {
        what,
        fix: fix.to_string(),
    }
}

fn program_report(p: &ProgramFacts) -> ProgramReport {
    let info = p.elf.ok();
    ProgramReport {
        path: p.path.clone(),
        arch: info.map(|i| i.machine.to_string()),
        linkage: info.map(|i| i.linkage()),
    }
}

/// The initrd, read: its archive, its report, its module tree and the
/// modules built into its kernel.
#[derive(Default)]
struct InitrdFound {
    initrd: Option<Initrd>,
    report: Option<InitrdReport>,
    modules: Option<ModuleFacts>,
    builtin: BTreeSet<String>,
}

/// The manifest, judged: its report, the registration's, and the first
/// image's filesystem and compression (what the initrd must mount).
struct ManifestFound {
    report: ManifestReport,
    registration: Option<RegistrationReport>,
    images_fs: Option<(ImageFs, &'static str)>,
}

pub(super) fn analyze(path: &str, mut parts: Parts, verify: bool) -> Result<Report> {
    let mut problems = Vec::new();
    let work = crate::cleanup::Scratch::new("nixlive-inspect.")?;
    let kfacts = kernel(&parts, &mut problems);
    let mut found = read_initrd(parts.initrd.take(), &mut problems);
    let machine = rules::kernel_machine(kfacts.as_ref(), found.modules.as_ref());
    initrd_programs(&mut found, kfacts.as_ref(), machine, &mut problems);
    if parts.manifest.is_none() {
        parts.manifest = manifest_in_initrd(&found, parts.kind, &mut problems);
    }
    let judged = parts.manifest.take().and_then(|(mpath, text, images_in)| {
        let ctx = ImagesCtx {
            images_in: &images_in,
            initrd: found.initrd.as_ref(),
            work: work.path(),
            verify,
        };
        judge_manifest(&mpath, text, &parts, &ctx, machine, &mut problems)
    });
    label_checks(&parts, &mut problems);
    let images_fs = judged.as_ref().and_then(|j| j.images_fs);
    if let Some(rep) = &mut found.report {
        module_needs(
            rep,
            &found.modules,
            &found.builtin,
            images_fs,
            parts.medium_fs,
            &mut problems,
        );
    }
    let (manifest, registration) = match judged {
        Some(j) => (Some(j.report), j.registration),
        None => (None, None),
    };
    Ok(Report {
        path: path.to_string(),
        kind: parts.kind,
        label: parts.label,
        kernel: kfacts.map(kernel_report),
        initrd: found.report,
        entries: parts.entries,
        manifest,
        registration,
        problems,
    })
}

fn kernel(parts: &Parts, problems: &mut Vec<Problem>) -> Option<KernelFacts> {
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
    kfacts
}

fn kernel_report(k: KernelFacts) -> KernelReport {
    let i = k.image.ok();
    KernelReport {
        path: k.path.clone(),
        kind: i.map(|i| i.kind.to_string()),
        arch: i.and_then(|i| i.machine).map(|m| m.to_string()),
        version: i.and_then(|i| i.version.clone()),
    }
}

fn read_initrd(initrd: Option<(String, Vec<u8>)>, problems: &mut Vec<Problem>) -> InitrdFound {
    let Some((ipath, data)) = initrd else {
        return InitrdFound::default();
    };
    let r = match Initrd::parse(data) {
        Ok(r) => r,
        Err(e) => {
            problems.push(problem(
                format!("the initrd {ipath} cannot be read: {e}"),
                "rebuild the medium (the kernel stops at the same place and finds no /init)",
            ));
            return InitrdFound::default();
        }
    };
    let (modules, builtin) = initrd_modules(&r);
    let report = InitrdReport {
        path: ipath,
        size: r.size(),
        segments: r.segments.clone(),
        init: None,
        shell: None,
        modules_for: modules.as_ref().map(|m| m.version.clone()),
        modules: modules
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
    };
    InitrdFound {
        initrd: Some(r),
        report: Some(report),
        modules,
        builtin,
    }
}

/// The initrd's `/init` and `/bin/sh`, and its modules' release.
fn initrd_programs(
    found: &mut InitrdFound,
    kfacts: Option<&KernelFacts>,
    machine: Option<Machine>,
    problems: &mut Vec<Problem>,
) {
    let (Some(r), Some(rep)) = (&found.initrd, &mut found.report) else {
        return;
    };
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
    if let Some(m) = &found.modules {
        problems.extend(rules::versions(kfacts, m, machine));
    }
}

/// A netboot initrd carries the manifest and images.
fn manifest_in_initrd(
    found: &InitrdFound,
    kind: MediumKind,
    problems: &mut Vec<Problem>,
) -> Option<(String, Result<String, String>, ImagesIn)> {
    let (r, rep) = (found.initrd.as_ref()?, found.report.as_ref()?);
    if let Some((d, _)) = r.file(manifest::DEFAULT_PATH) {
        return Some((
            format!("{}:/{}", rep.path, manifest::DEFAULT_PATH),
            Ok(String::from_utf8_lossy(d).into_owned()),
            ImagesIn::Initrd,
        ));
    }
    if kind == MediumKind::Netboot {
        problems.push(problem(
            format!(
                "the netboot initrd {} has no {}",
                rep.path,
                manifest::DEFAULT_PATH
            ),
            REBUILD,
        ));
    }
    None
}

/// Where the images are and how hard to look at them.
struct ImagesCtx<'a> {
    images_in: &'a ImagesIn,
    initrd: Option<&'a Initrd>,
    work: &'a Path,
    verify: bool,
}

/// The manifest: parsed, its images there and whole, the store in them,
/// the boot entries' `init=` and the signature.
fn judge_manifest(
    mpath: &str,
    text: Result<String, String>,
    parts: &Parts,
    ctx: &ImagesCtx,
    machine: Option<Machine>,
    problems: &mut Vec<Problem>,
) -> Option<ManifestFound> {
    let signed = text.as_ref().ok().map(|t| manifest::signed_part(t));
    let m = match text.and_then(|t| Manifest::parse(&t).map_err(|e| e.to_string())) {
        Ok(m) => m,
        Err(e) => {
            if parts.kind != MediumKind::Initrd {
                problems.push(problem(
                    format!("the manifest {mpath} cannot be read: {e}"),
                    REBUILD,
                ));
            }
            return None;
        }
    };
    let (mut report, files) = check_images(&m, mpath, ctx, problems);
    let images_fs = m.images.first().map(|i| {
        let comp = report
            .images
            .first()
            .and_then(|i| i.compression)
            .unwrap_or("zstd");
        (i.fs, comp)
    });
    let registration = store_checks(&m, &files, machine, problems);
    init_checks(&m, &parts.entries, problems);
    report.signature = trusted_keys(ctx.initrd).map(|keys| {
        nixkey::check(
            signed.as_deref().unwrap_or_default().as_bytes(),
            &m.sigs,
            &keys,
        )
        .map_err(|e| e.to_string())
    });
    if let Some(Err(why)) = &report.signature {
        problems.push(problem(
            format!("the manifest {mpath} is not authentic: {why}"),
            "sign it with --sign-key for a key the initrd trusts (--trusted-key), or rebuild the medium",
        ));
    }
    Some(ManifestFound {
        report,
        registration,
        images_fs,
    })
}

/// Each boot entry's `init=` is the manifest's stage-2 init.
fn init_checks(m: &Manifest, entries: &[BootEntry], problems: &mut Vec<Problem>) {
    for e in entries {
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
}

/// Each boot entry's `root=LABEL=` is the ISO's label.
fn label_checks(parts: &Parts, problems: &mut Vec<Problem>) {
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
}

/// What the medium needs from the kernel, against the initrd's modules.
fn module_needs(
    rep: &mut InitrdReport,
    modules: &Option<ModuleFacts>,
    builtin: &BTreeSet<String>,
    images_fs: Option<(ImageFs, &'static str)>,
    medium_fs: Option<&'static str>,
    problems: &mut Vec<Problem>,
) {
    let needs = MediumNeeds {
        initrd_compression: rep
            .segments
            .first()
            .map(|s| s.format)
            .filter(|f| *f != "stored"),
        images: images_fs,
        medium_fs,
    };
    rep.needed = needs
        .needs()
        .iter()
        .filter_map(|n| n.module.map(String::from))
        .collect();
    if modules.is_none() {
        return;
    }
    let packed: BTreeSet<String> = rep.modules.iter().cloned().collect();
    rep.missing = rules::missing_modules(&needs, &packed, builtin)
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
    ctx: &ImagesCtx,
    problems: &mut Vec<Problem>,
) -> (ManifestReport, Vec<(String, PathBuf)>) {
    let mut images = Vec::new();
    let mut files = Vec::new();
    for i in &m.images {
        let mut rep = image_report(i);
        let (file, where_) = image_file(i, ctx);
        match file {
            None => problems.push(problem(
                format!(
                    "the manifest {mpath} names the image {}, which is not in {where_}",
                    i.name
                ),
                "copy the whole medium (every image the manifest lists), or rebuild it",
            )),
            Some(p) => {
                if check_image(i, &p, mpath, ctx.verify, &mut rep, problems) {
                    files.push((i.name.clone(), p));
                }
            }
        }
        images.push(rep);
    }
    let report = ManifestReport {
        path: mpath.to_string(),
        init: m.init.clone(),
        registration: m.registration.clone(),
        images,
        signers: m.sigs.iter().map(|s| s.name.clone()).collect(),
        signature: None,
    };
    (report, files)
}

fn image_report(i: &manifest::ImageEntry) -> ImageReport {
    ImageReport {
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
    }
}

/// The image's file (one in the initrd is written out to `work`), and
/// where it was looked for.
fn image_file(i: &manifest::ImageEntry, ctx: &ImagesCtx) -> (Option<PathBuf>, &'static str) {
    match ctx.images_in {
        ImagesIn::Dir(d) => (Some(d.join(&i.name)).filter(|p| p.is_file()), "the medium"),
        ImagesIn::Initrd => {
            let f = ctx.initrd.and_then(|r| r.file(&i.name)).and_then(|(d, _)| {
                let p = ctx.work.join(&i.name);
                fs::write(&p, d).ok().map(|()| p)
            });
            (f, "the initrd")
        }
    }
}

/// One image's size, compression and (with `verify`) digest; true when
/// it is a whole squashfs image whose store can be read.
fn check_image(
    i: &manifest::ImageEntry,
    p: &Path,
    mpath: &str,
    verify: bool,
    rep: &mut ImageReport,
    problems: &mut Vec<Problem>,
) -> bool {
    let size = fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    rep.found_size = Some(size);
    let mut head = [0u8; 96];
    if let Ok(mut f) = fs::File::open(p)
        && f.read_exact(&mut head).is_ok()
    {
        rep.compression = nixlive_formats::squashfs::compression(&head);
    }
    if size != i.size {
        problems.push(problem(
            format!(
                "the image {} is {size} bytes, but the manifest {mpath} says {}",
                i.name, i.size
            ),
            "copy the image again whole (a copy was cut short or replaced), or rebuild the medium",
        ));
        return false;
    }
    if verify {
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
    i.fs == ImageFs::Squashfs
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
    let (report, mut closure) = registration(m, &images[0], problems);
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

const CLOSED_FIX: &str = "build from a closed closure (nix-store -qR, or closureInfo) and let nixlive write the registration";

/// The registration read from the top image: its report and the store
/// paths it lists (empty when it cannot be read).
fn registration(
    m: &Manifest,
    top: &squash::Image,
    problems: &mut Vec<Problem>,
) -> (Option<RegistrationReport>, BTreeSet<String>) {
    let (reg_path, image) = (&m.registration, &m.images[0].name);
    let rel = reg_path.strip_prefix("/nix/store/").unwrap_or(reg_path);
    let report = |paths, closed| RegistrationReport {
        path: reg_path.clone(),
        image: image.clone(),
        paths,
        closed,
    };
    // Err((true, why)): parsed, but not closed.
    let parsed = top
        .cat(rel)
        .map_err(|e| (false, format!("{e:#}")))
        .and_then(|d| {
            Registration::parse(&d).map_err(|e| (crate::closure::is_open(&e), e.to_string()))
        });
    let reg = match parsed {
        Ok(reg) => reg,
        Err((true, e)) => {
            problems.push(problem(
                format!(
                    "the registration {reg_path} in {image} is not closed: {e} (postboot refuses it; Nix would see a broken store)"
                ),
                CLOSED_FIX,
            ));
            return (Some(report(None, false)), BTreeSet::new());
        }
        Err((false, e)) => {
            problems.push(problem(
                format!("the registration {reg_path} in {image} cannot be read: {e}"),
                REBUILD,
            ));
            return (None, BTreeSet::new());
        }
    };
    let open = first_open(&reg);
    if let Some((p, r)) = &open {
        problems.push(problem(
            format!(
                "the registration {reg_path} in {image} is not closed: {p} refers to {r}, which it does not list (postboot cannot load it; Nix would see a broken store)"
            ),
            CLOSED_FIX,
        ));
    }
    let closure = reg
        .paths
        .iter()
        .map(|p| p.base_name().to_string())
        .collect();
    (Some(report(Some(reg.paths.len()), open.is_none())), closure)
}

/// A path and a reference of it that the registration does not list.
fn first_open(reg: &Registration) -> Option<(String, String)> {
    let all: BTreeSet<&str> = reg.paths.iter().map(|p| p.path.as_str()).collect();
    reg.paths.iter().find_map(|p| {
        p.references
            .iter()
            .find(|r| !all.contains(r.as_str()))
            .map(|r| (p.path.clone(), r.clone()))
    })
}

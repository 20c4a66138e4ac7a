//! The checks themselves, as pure functions from what was found on the
//! host or on a medium ([`super::facts`]) to [`Problem`]s, each saying what
//! is wrong and how to fix it. The builder and `nixlive inspect` run the
//! same rules, so their messages are the same.
//!
//! Non-goals: no reading of files here.

use super::config::{KernelConfig, MediumNeeds, Tristate};
use super::facts::{Found, KernelFacts, ModuleFacts, ProgramFacts, Stage2Facts, Stage2File};
use nixlive_formats::elf::{ElfType, Machine};
use std::collections::BTreeSet;
use std::fmt;

/// Something that keeps the medium from booting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, naming the file, module or version.
    pub what: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; to fix: {}", self.what, self.fix)
    }
}

fn problem(what: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        what: what.into(),
        fix: fix.into(),
    }
}

/// The kernel image: a kernel at all, and its machine and release.
pub fn kernel(k: &KernelFacts) -> Vec<Problem> {
    match &k.image {
        Found::Missing(why) => vec![problem(
            format!("the kernel {} cannot be read: {why}", k.path),
            "give the kernel image (bzImage, arm64 Image or vmlinuz) with --kernel",
        )],
        Found::Bad(why) => vec![problem(
            format!("the kernel {} is {why}", k.path),
            "give the kernel image itself (bzImage, arm64 Image or vmlinuz), not vmlinux, a module or an initrd",
        )],
        Found::Ok(_) => Vec::new(),
    }
}

/// The machine the kernel runs: from its image, else from its modules.
pub fn kernel_machine(k: Option<&KernelFacts>, m: Option<&ModuleFacts>) -> Option<Machine> {
    k.and_then(|k| k.image.ok())
        .and_then(|i| i.machine)
        .or_else(|| m.and_then(|m| m.modules.iter().find_map(|s| s.machine)))
}

/// A program the kernel runs from the initrd (`--init`, `--shell`): a
/// static ELF executable for the kernel's machine.
pub fn initrd_program(p: &ProgramFacts, machine: Option<Machine>) -> Vec<Problem> {
    let fix_static = match machine {
        Some(m) => format!(
            "give a statically linked program for {m} (nixlive-init: target/{}-unknown-linux-musl/release/nixlive-init, which `make build` makes)",
            musl_arch(m)
        ),
        None => "give a statically linked program (nixlive-init: target/<arch>-unknown-linux-musl/release/nixlive-init, which `make build` makes)".to_string(),
    };
    let info = match &p.elf {
        Found::Missing(why) => {
            return vec![problem(
                format!("{} {} cannot be read: {why}", p.role, p.path),
                format!("give an existing file with {}", p.role),
            )];
        }
        Found::Bad(why) => {
            return vec![problem(
                format!("{} {} is not an ELF program: {why}", p.role, p.path),
                fix_static,
            )];
        }
        Found::Ok(i) => i,
    };
    let mut out = Vec::new();
    if !matches!(info.kind, ElfType::Executable | ElfType::Shared) {
        out.push(problem(
            format!(
                "{} {} is an ELF file but not an executable ({:?})",
                p.role, p.path, info.kind
            ),
            fix_static.clone(),
        ));
    }
    if let Some(interp) = &info.interpreter {
        out.push(problem(
            format!(
                "{} {} is dynamically linked (program interpreter {interp}), and the initrd has no libraries",
                p.role, p.path
            ),
            fix_static.clone(),
        ));
    }
    if let Some(m) = machine
        && info.machine != m
    {
        out.push(problem(
            format!(
                "{} {} is for {}, but the kernel is for {m}",
                p.role, p.path, info.machine
            ),
            format!(
                "use the {} built for {m} (target/{}-unknown-linux-musl/release/), or a kernel for {}",
                p.role,
                musl_arch(m),
                info.machine
            ),
        ));
    }
    out
}

fn musl_arch(m: Machine) -> &'static str {
    match m {
        Machine::X86 => "i686",
        Machine::Aarch64 => "aarch64",
        _ => "x86_64",
    }
}

/// The kernel's release against the module tree's: the directory name,
/// and each module's `vermagic` and machine.
pub fn versions(
    k: Option<&KernelFacts>,
    m: &ModuleFacts,
    machine: Option<Machine>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let kver = k.and_then(|k| k.image.ok()).and_then(|i| i.version.clone());
    if let (Some(k), Some(kver)) = (k, &kver)
        && *kver != m.version
    {
        out.push(problem(
            format!(
                "the kernel {} is Linux {kver}, but the modules in {} are for {}; every module would fail to load (\"Invalid module format\")",
                k.path, m.dir, m.version
            ),
            format!(
                "give the module tree of the same kernel (--modules-dir .../lib/modules/{kver}), or the kernel the modules were built for ({})",
                m.version
            ),
        ));
        // Each module would say the same: one message is enough.
        return out;
    }
    for s in &m.modules {
        match &s.vermagic {
            None => out.push(problem(
                format!(
                    "{} in {} has no vermagic: not a kernel module",
                    s.file, m.dir
                ),
                "give the kernel's own /lib/modules/VERSION directory (as depmod left it)",
            )),
            Some(v) if *v != m.version => out.push(problem(
                format!(
                    "module {} was built for Linux {v}, but it sits in the module tree of {} ({})",
                    s.file, m.version, m.dir
                ),
                format!(
                    "rebuild the module tree with depmod for one kernel; the kernel is {}",
                    kver.as_deref().unwrap_or(&m.version)
                ),
            )),
            Some(_) => {}
        }
        if let (Some(want), Some(have)) = (machine, s.machine)
            && want != have
        {
            out.push(problem(
                format!(
                    "module {} in {} is for {have}, but the kernel is for {want}",
                    s.file, m.dir
                ),
                format!("give the module tree of the {want} kernel"),
            ));
        }
    }
    out
}

/// The stage-2 init: there, executable, and what it needs (its script
/// interpreter, or an ELF program's interpreter) in the closure.
pub fn stage2(s: &Stage2Facts, machine: Option<Machine>) -> Vec<Problem> {
    let fix_closure =
        "add the store path to the closure (--store-path, or the system's closureInfo)";
    match &s.file {
        Stage2File::Missing(why) => vec![problem(
            format!("the stage-2 init {} does not exist: {why}", s.path),
            "give a --system whose init is in the closure",
        )],
        Stage2File::NotExecutable { mode } => vec![problem(
            format!(
                "the stage-2 init {} is not executable (mode {:04o}); the kernel would refuse to run it at the end of stage 1",
                s.path,
                mode & 0o7777
            ),
            format!(
                "make it executable (chmod +x {}) in the system's build",
                s.path
            ),
        )],
        Stage2File::Script { interpreter } => {
            if !interpreter.starts_with("/nix/store/") {
                return vec![problem(
                    format!(
                        "the stage-2 init {} is a script for {interpreter}, which is outside /nix/store: stage 2 starts with only the store",
                        s.path
                    ),
                    "point its #! line at an interpreter in the closure (e.g. /nix/store/...-bash/bin/bash)",
                )];
            }
            interpreter_in_closure(s, interpreter, "script interpreter", fix_closure)
        }
        Stage2File::Elf(info) => {
            let mut out = Vec::new();
            if let Some(m) = machine
                && info.machine != m
            {
                out.push(problem(
                    format!(
                        "the stage-2 init {} is for {}, but the kernel is for {m}",
                        s.path, info.machine
                    ),
                    format!("build the system for {m}"),
                ));
            }
            if let Some(i) = &info.interpreter {
                out.extend(interpreter_in_closure(
                    s,
                    i,
                    "program interpreter",
                    fix_closure,
                ));
            }
            out
        }
        Stage2File::Other => vec![problem(
            format!(
                "the stage-2 init {} is neither an ELF program nor a #! script",
                s.path
            ),
            "give a --system whose init is a program or a script",
        )],
    }
}

/// A program of the system (`bin/nixlive-postboot`): for the kernel's
/// machine.
pub fn system_program(
    path: &str,
    info: &nixlive_formats::elf::ElfInfo,
    machine: Option<Machine>,
) -> Vec<Problem> {
    match machine {
        Some(m) if info.machine != m => vec![problem(
            format!(
                "the system's {path} is for {}, but the kernel is for {m}",
                info.machine
            ),
            format!("build the system's programs for {m}"),
        )],
        _ => Vec::new(),
    }
}

fn interpreter_in_closure(s: &Stage2Facts, interp: &str, what: &str, fix: &str) -> Vec<Problem> {
    match s.interpreter_found {
        Some(true) => Vec::new(),
        Some(false) | None => vec![problem(
            format!(
                "the stage-2 init {}'s {what} {interp} is not in the closure",
                s.path
            ),
            fix.to_string(),
        )],
    }
}

/// The kernel's configuration against what the medium needs; `packed` are
/// the module names (`squashfs`) the initrd holds, `builtin` those
/// `modules.builtin` lists.
pub fn config(
    source: &str,
    cfg: &KernelConfig,
    needs: &MediumNeeds,
    packed: &BTreeSet<String>,
    builtin: &BTreeSet<String>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for n in needs.needs() {
        match (cfg.get(n.symbol), n.module) {
            (Some(Tristate::Yes), _) => {}
            (Some(Tristate::Module), Some(m)) if packed.contains(m) || builtin.contains(m) => {}
            (Some(Tristate::Module), Some(m)) => out.push(problem(
                format!(
                    "the kernel has {} as a module ({m}), which the initrd does not carry; {}",
                    n.symbol, n.why
                ),
                format!("add --module {m} (or --module-set base)"),
            )),
            (Some(Tristate::Module), None) => out.push(problem(
                format!(
                    "the kernel has {} as a module, but it must be built in: {}",
                    n.symbol, n.why
                ),
                format!("use a kernel with {}=y", n.symbol),
            )),
            (None, _) => out.push(problem(
                format!(
                    "the kernel's configuration ({source}) lacks {}: {}",
                    n.symbol, n.why
                ),
                format!(
                    "use a kernel with {}=y{}",
                    n.symbol,
                    if n.module.is_some() { " or =m" } else { "" }
                ),
            )),
        }
    }
    out
}

/// What the modules the medium needs are, when no configuration is known:
/// each needed module that is neither packed nor built in (from
/// `modules.builtin`) is missing.
pub fn missing_modules(
    needs: &MediumNeeds,
    packed: &BTreeSet<String>,
    builtin: &BTreeSet<String>,
) -> Vec<&'static str> {
    needs
        .needs()
        .iter()
        .filter_map(|n| n.module)
        .filter(|m| !packed.contains(*m) && !builtin.contains(*m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::facts::ModuleSample;
    use super::*;
    use nixlive_formats::ImageFs;
    use nixlive_formats::elf::ElfInfo;
    use nixlive_formats::kimage::{ImageKind, KernelImage};

    fn elf(machine: Machine, interp: Option<&str>) -> ElfInfo {
        ElfInfo {
            bits64: true,
            little_endian: true,
            machine,
            kind: ElfType::Executable,
            interpreter: interp.map(String::from),
        }
    }

    fn kern(version: &str, machine: Machine) -> KernelFacts {
        KernelFacts {
            path: "vmlinuz".into(),
            image: Found::Ok(KernelImage {
                kind: ImageKind::BzImage,
                machine: Some(machine),
                version: Some(version.into()),
            }),
        }
    }

    fn prog(elf: Found<ElfInfo>) -> ProgramFacts {
        ProgramFacts {
            role: "--init",
            path: "i".into(),
            elf,
        }
    }

    #[test]
    fn init_programs() {
        let ok = prog(Found::Ok(elf(Machine::X86_64, None)));
        assert!(initrd_program(&ok, Some(Machine::X86_64)).is_empty());
        let dynamic = prog(Found::Ok(elf(
            Machine::X86_64,
            Some("/lib64/ld-linux-x86-64.so.2"),
        )));
        let p = initrd_program(&dynamic, Some(Machine::X86_64));
        assert_eq!(p.len(), 1);
        assert!(p[0].what.contains("dynamically linked"), "{}", p[0]);
        assert!(p[0].fix.contains("statically linked program for x86_64"));
        let arm = prog(Found::Ok(elf(Machine::Aarch64, None)));
        let p = initrd_program(&arm, Some(Machine::X86_64));
        assert_eq!(
            p[0].what,
            "--init i is for aarch64, but the kernel is for x86_64"
        );
        assert!(p[0].fix.contains("x86_64-unknown-linux-musl"));
        // Without a known machine only the linkage counts.
        assert!(initrd_program(&arm, None).is_empty());
        let text = prog(Found::Bad("not an ELF file".into()));
        assert!(
            initrd_program(&text, None)[0]
                .what
                .contains("not an ELF program")
        );
    }

    fn modules(version: &str, vermagic: Option<&str>) -> ModuleFacts {
        ModuleFacts {
            dir: "m".into(),
            version: version.into(),
            modules: vec![ModuleSample {
                file: "kernel/fs/loop.ko".into(),
                vermagic: vermagic.map(String::from),
                machine: Some(Machine::X86_64),
            }],
        }
    }

    #[test]
    fn kernel_and_modules() {
        let k = kern("6.12.9-amd64", Machine::X86_64);
        let m = modules("6.1.0-56-amd64", Some("6.1.0-56-amd64"));
        let p = versions(Some(&k), &m, Some(Machine::X86_64));
        assert_eq!(p.len(), 1);
        assert!(
            p[0].what
                .starts_with("the kernel vmlinuz is Linux 6.12.9-amd64, but the modules in m are for 6.1.0-56-amd64"),
            "{}",
            p[0]
        );
        let k = kern("6.1.0-56-amd64", Machine::X86_64);
        assert!(versions(Some(&k), &m, Some(Machine::X86_64)).is_empty());
        // A module of another kernel in the tree, and one that is none.
        let odd = modules("6.1.0-56-amd64", Some("6.1.0-50-amd64"));
        assert!(
            versions(Some(&k), &odd, None)[0]
                .what
                .contains("built for Linux 6.1.0-50-amd64")
        );
        let fake = modules("6.1.0-56-amd64", None);
        assert!(versions(None, &fake, None)[0].what.contains("no vermagic"));
        // Modules for another machine.
        assert!(
            versions(Some(&k), &m, Some(Machine::Aarch64))[0]
                .what
                .contains("is for x86_64")
        );
        assert_eq!(kernel_machine(None, Some(&m)), Some(Machine::X86_64));
    }

    #[test]
    fn not_a_kernel() {
        let k = KernelFacts {
            path: "k".into(),
            image: Found::Bad("not a Linux kernel image".into()),
        };
        assert!(kernel(&k)[0].what.contains("k is not a Linux kernel image"));
        assert_eq!(kernel_machine(Some(&k), None), None);
    }

    fn s2(file: Stage2File, found: Option<bool>) -> Stage2Facts {
        Stage2Facts {
            path: "/nix/store/s-system/init".into(),
            file,
            interpreter_found: found,
        }
    }

    #[test]
    fn stage2_init() {
        let p = stage2(
            &s2(Stage2File::NotExecutable { mode: 0o100644 }, None),
            None,
        );
        assert_eq!(
            p[0].what,
            "the stage-2 init /nix/store/s-system/init is not executable (mode 0644); the kernel would refuse to run it at the end of stage 1"
        );
        let script = |i: &str| Stage2File::Script {
            interpreter: i.into(),
        };
        assert!(stage2(&s2(script("/nix/store/b-bash/bin/bash"), Some(true)), None).is_empty());
        assert!(
            stage2(&s2(script("/nix/store/b-bash/bin/bash"), Some(false)), None)[0]
                .what
                .contains("script interpreter /nix/store/b-bash/bin/bash is not in the closure")
        );
        assert!(
            stage2(&s2(script("/bin/sh"), None), None)[0]
                .what
                .contains("outside /nix/store")
        );
        let e = Stage2File::Elf(elf(Machine::Aarch64, None));
        assert!(stage2(&s2(e.clone(), None), Some(Machine::Aarch64)).is_empty());
        assert!(
            stage2(&s2(e, None), Some(Machine::X86_64))[0]
                .what
                .contains("is for aarch64")
        );
        assert!(!stage2(&s2(Stage2File::Missing("gone".into()), None), None).is_empty());
    }

    #[test]
    fn system_programs() {
        let arm = elf(Machine::Aarch64, None);
        assert!(system_program("/p", &arm, Some(Machine::Aarch64)).is_empty());
        assert_eq!(
            system_program("/p", &arm, Some(Machine::X86_64))[0].what,
            "the system's /p is for aarch64, but the kernel is for x86_64"
        );
    }

    #[test]
    fn kernel_config() {
        let needs = MediumNeeds {
            initrd_compression: Some("zstd"),
            images: Some((ImageFs::Squashfs, "zstd")),
            medium_fs: Some("iso9660"),
        };
        let base = "CONFIG_BLK_DEV_INITRD=y\nCONFIG_DEVTMPFS=y\nCONFIG_TMPFS=y\nCONFIG_RD_ZSTD=y\n\
                    CONFIG_BLK_DEV_LOOP=m\nCONFIG_SQUASHFS=m\nCONFIG_SQUASHFS_ZSTD=y\n\
                    CONFIG_OVERLAY_FS=m\nCONFIG_ISO9660_FS=m\n";
        let cfg = KernelConfig::parse(base);
        let all: BTreeSet<String> = ["loop", "squashfs", "overlay", "isofs"]
            .map(String::from)
            .into();
        let none = BTreeSet::new();
        assert!(config("c", &cfg, &needs, &all, &none).is_empty());
        let mut some = all.clone();
        some.remove("overlay");
        let p = config("c", &cfg, &needs, &some, &none);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].what
                .contains("CONFIG_OVERLAY_FS as a module (overlay)")
        );
        assert_eq!(p[0].fix, "add --module overlay (or --module-set base)");
        assert_eq!(missing_modules(&needs, &some, &none), ["overlay"]);
        let cfg = KernelConfig::parse(&base.replace("CONFIG_RD_ZSTD=y\n", ""));
        let p = config("c", &cfg, &needs, &all, &none);
        assert!(
            p[0].what
                .contains("lacks CONFIG_RD_ZSTD: the initrd is zstd-compressed")
        );
    }
}

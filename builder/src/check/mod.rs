//! Whether a medium can boot, checked on the build host before anything is
//! written (`iso`, `medium`, `netboot`, `initrd`) and on a finished medium
//! (`nixlive inspect`): the kernel image is a kernel; `--init` and
//! `--shell` are static programs for its machine; its release matches the
//! module tree's; the stage-2 init is executable and its interpreter is in
//! the closure; its configuration has what the medium needs, built in or
//! packed as a module.
//!
//! [`facts`] reads, [`rules`] judges (pure, unit-tested), [`config`] knows
//! the kernel options. This module runs them for a build.
//!
//! Non-goals: no check of what only the target machine knows (its
//! devices, its firmware, its memory).

pub mod config;
pub mod facts;
pub mod rules;

use crate::closure::Closure;
use crate::initrd::{Compression, InitrdArgs, modules};
use anyhow::{Context, Result};
use config::{KernelConfig, MediumNeeds};
use facts::{HostStore, KernelFacts, ModuleFacts, ProgramFacts, Stage2Facts};
use nixlive_formats::elf::Machine;
use rules::Problem;
use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Everything that keeps a medium from booting.
#[derive(Debug, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this medium could not boot:")?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

fn result(problems: Vec<Problem>) -> Result<(), Problems> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems(problems))
    }
}

/// The kernel name of an initrd compression (`None` for none).
pub fn compression_name(c: Compression) -> Option<&'static str> {
    match c {
        Compression::Zstd => Some("zstd"),
        Compression::Gzip => Some("gzip"),
        Compression::Xz => Some("xz"),
        Compression::None => None,
    }
}

/// How many of the packed modules have their `vermagic` read before a
/// build (every one is read again when packed; a few show a mismatch).
const MODULE_SAMPLES: usize = 4;

/// The kernel's `.config`: `--kernel-config`, else the module tree's
/// `build/.config`, else `config-VERSION` or `config` beside the kernel
/// image (Debian's `/boot`, and `.cache/kernels/*`).
pub fn config_file(a: &InitrdArgs, kernel: Option<&Path>) -> Option<PathBuf> {
    if let Some(c) = &a.kernel_config {
        return Some(c.clone());
    }
    let mut candidates = vec![a.modules_dir.join("build/.config")];
    if let Some(dir) = kernel.and_then(Path::parent) {
        if let Some(v) = a.modules_dir.file_name() {
            candidates.push(dir.join(format!("config-{}", v.to_string_lossy())));
        }
        candidates.push(dir.join("config"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The checks of the kernel, the initrd's programs and modules, and the
/// kernel's configuration against `needs`; returns the kernel's machine.
/// Run before anything is written.
pub fn before_build(
    kernel: Option<&Path>,
    a: &InitrdArgs,
    needs: &MediumNeeds,
) -> Result<Option<Machine>> {
    let optional = modules::module_set(&a.module_sets).context("--module-set")?;
    let plan = modules::plan(&a.modules_dir, &a.modules, &optional)?;
    let samples: Vec<String> = plan.files.iter().take(MODULE_SAMPLES).cloned().collect();
    let mods = ModuleFacts::read(&a.modules_dir, &plan.version, &samples);
    let kfacts = kernel.map(KernelFacts::read);
    let mut problems = Vec::new();
    if let Some(k) = &kfacts {
        problems.extend(rules::kernel(k));
    }
    let machine = rules::kernel_machine(kfacts.as_ref(), Some(&mods));
    problems.extend(rules::versions(kfacts.as_ref(), &mods, machine));
    problems.extend(rules::initrd_program(
        &ProgramFacts::read("--init", &a.init),
        machine,
    ));
    if let Some(sh) = &a.shell {
        problems.extend(rules::initrd_program(
            &ProgramFacts::read("--shell", sh),
            machine,
        ));
    }
    for f in &a.extra_cpio {
        let data = fs::read(f).with_context(|| format!("reading --extra-cpio {}", f.display()))?;
        if let Err(e) = crate::inspect::initrd::Initrd::parse(data) {
            problems.push(Problem {
                what: format!("--extra-cpio {} cannot be unpacked: {e}", f.display()),
                fix: "give a whole cpio newc archive (plain, or gzip, zstd or xz compressed); the kernel would stop unpacking the initrd there".into(),
            });
        }
    }
    let packed: BTreeSet<String> = plan.files.iter().map(|f| kmod_name(f)).collect();
    let builtin: BTreeSet<String> = plan.builtin.iter().cloned().collect();
    match config_file(a, kernel) {
        Some(file) => {
            let text = fs::read_to_string(&file)
                .with_context(|| format!("reading the kernel config {}", file.display()))?;
            let cfg = KernelConfig::parse(&text);
            if cfg.is_empty() {
                problems.push(Problem {
                    what: format!("the kernel config {} has no CONFIG_ lines", file.display()),
                    fix: "give the kernel's .config with --kernel-config".into(),
                });
            } else {
                problems.extend(rules::config(
                    &file.display().to_string(),
                    &cfg,
                    needs,
                    &packed,
                    &builtin,
                ));
            }
        }
        None => {
            // Without a config: a module the medium needs that the tree
            // has but the initrd would not carry.
            let in_tree: BTreeSet<String> = plan.available.iter().cloned().collect();
            for m in rules::missing_modules(needs, &packed, &builtin) {
                if in_tree.contains(m) {
                    problems.push(Problem {
                        what: format!(
                            "module {m} is in {} but would not be packed, and the medium needs it",
                            a.modules_dir.display()
                        ),
                        fix: format!("add --module {m} (or --module-set base)"),
                    });
                }
            }
        }
    }
    result(problems)?;
    Ok(machine)
}

fn kmod_name(file: &str) -> String {
    nixlive_formats::kmod::module_name(file)
}

/// The stage-2 init of a loaded closure.
pub fn stage2(closure: &Closure, machine: Option<Machine>) -> Result<(), Problems> {
    let store = HostStore {
        store_dir: &closure.store_dir,
        names: closure
            .infos
            .iter()
            .map(|i| i.base_name().to_string())
            .collect(),
    };
    result(stage2_and_programs(&store, &closure.system, machine))
}

/// The stage-2 init of `system` and the system's programs, in a store.
pub fn stage2_and_programs(
    store: &dyn facts::StoreView,
    system: &str,
    machine: Option<Machine>,
) -> Vec<Problem> {
    let facts = Stage2Facts::from_view(store, &format!("{system}/init"));
    let mut problems = rules::stage2(&facts, machine);
    for p in facts::SYSTEM_PROGRAMS {
        let path = format!("{system}/{p}");
        if let Some(info) = facts::elf_in_view(store, &path) {
            problems.extend(rules::system_program(&path, &info, machine));
        }
    }
    problems
}

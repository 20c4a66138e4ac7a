//! What goes into the store images: a closure given as a nixpkgs
//! `closureInfo` directory, as a list of store paths, or as every store path
//! of a plain directory tree; and its registration, taken from the
//! `closureInfo` or computed here (NAR hashes, sizes, references).
//!
//! The first stage of the pipeline. The registration code is
//! [`registration`] (computing it) over [`nar`] (the NAR serialisation).
//!
//! Non-goals: no substitution or building (every path must already be
//! under the store root), no derivers (the media carry none).

pub mod nar;
pub mod registration;

use crate::files::{read, read_text};
use crate::progress;
use anyhow::{Context, Result, bail, ensure};
use nixlive_formats::paths::STORE_DIR;
use nixlive_formats::registration::{PathInfo, Registration};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct InputArgs {
    /// Directory holding nix/store/<paths> (`/` on a host with Nix).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub store_root: PathBuf,
    /// A nixpkgs `closureInfo { rootPaths = [ system ]; }` output: its
    /// `store-paths` are the closure and its `registration` is used as is.
    #[arg(long, value_name = "DIR")]
    pub closure_info: Option<PathBuf>,
    /// A file listing store paths, one a line (the closure, e.g. from
    /// `nix-store -qR`); references are computed among them.
    #[arg(long, value_name = "FILE")]
    pub store_paths: Option<PathBuf>,
    /// A store path to include (repeatable); added to the other inputs.
    #[arg(long = "store-path", value_name = "STOREPATH")]
    pub extra_paths: Vec<String>,
    /// The system's store path (/nix/store/<hash>-<name>, with an `init`).
    #[arg(long, value_name = "STOREPATH")]
    pub system: String,
}

/// The closure to pack, with its registration.
#[derive(Debug)]
pub struct Closure {
    /// `<store root>/nix/store`.
    pub store_dir: PathBuf,
    /// Sorted by path.
    pub infos: Vec<PathInfo>,
    /// `/nix/store/<hash>-<name>`.
    pub system: String,
}

/// `<root>/nix/store`.
pub fn store_dir(root: &Path) -> PathBuf {
    root.join(STORE_DIR.trim_start_matches('/'))
}

/// The base name of `/nix/store/<base>`, if `path` is in the store.
pub fn strip_store(path: &str) -> Option<&str> {
    path.strip_prefix(STORE_DIR)?.strip_prefix('/')
}

/// Non-empty, non-comment lines of a store path list.
fn parse_path_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

impl InputArgs {
    /// The closure stage: the store paths to pack, with their registration.
    pub fn load(&self) -> Result<Closure> {
        let store_dir = store_dir(&self.store_root);
        let sys_base = self.system_base(&store_dir)?;
        let mut wanted: Vec<String> = self.extra_paths.clone();
        let mut given = None;
        if let Some(ci) = &self.closure_info {
            let (paths, reg) = read_closure_info(ci)?;
            wanted.extend(paths);
            given = Some(reg);
        }
        if let Some(f) = &self.store_paths {
            wanted.extend(parse_path_list(&read_text(f, "--store-paths")?));
        }
        let names = self.names(&store_dir, wanted)?;
        ensure!(
            names.iter().any(|n| n == sys_base),
            "--system {} is not part of the closure",
            self.system
        );
        let infos = match given {
            Some(reg) => reuse_or_compute(reg, &store_dir, &names)?,
            None => compute(&store_dir, &names)?,
        };
        check_closed(&infos)?;
        Ok(Closure {
            store_dir,
            infos,
            system: self.system.clone(),
        })
    }

    /// The system's base name; its `init` must exist.
    fn system_base(&self, store_dir: &Path) -> Result<&str> {
        let sys_base = strip_store(&self.system)
            .filter(|b| !b.contains('/') && registration::hash_part(b).is_some())
            .with_context(|| {
                format!(
                    "--system `{}` is not a {STORE_DIR}/<hash>-<name> path",
                    self.system
                )
            })?;
        let sys_dir = store_dir.join(sys_base);
        if let Ok(m) = std::fs::symlink_metadata(&sys_dir)
            && m.file_type().is_symlink()
        {
            let target = std::fs::read_link(&sys_dir).unwrap_or_default();
            let inside = match (
                std::fs::canonicalize(&sys_dir),
                std::fs::canonicalize(&self.store_root),
            ) {
                (Ok(t), Ok(root)) => t.starts_with(root),
                _ => false,
            };
            ensure!(
                inside,
                "--system {}: {} is a symlink to {}, outside --store-root {}; \
                 the media would carry only the link, and the system could not boot \
                 (give the system's real store path, under the store root)",
                self.system,
                sys_dir.display(),
                target.display(),
                self.store_root.display()
            );
        }
        let sys_init = sys_dir.join("init");
        ensure!(
            sys_init.exists(),
            "the system has no init: {} does not exist",
            sys_init.display()
        );
        Ok(sys_base)
    }

    /// The base names of the closure, sorted: the paths asked for and the
    /// system, or everything under a --store-root given alone.
    fn names(&self, store_dir: &Path, mut wanted: Vec<String>) -> Result<Vec<String>> {
        if wanted.is_empty() {
            ensure!(
                self.store_root != Path::new("/"),
                "no closure given: pass --closure-info, --store-paths or --store-path, \
                 or a --store-root that holds only the closure"
            );
            return Ok(registration::list_store(store_dir)?);
        }
        wanted.push(self.system.clone());
        let mut names = registration::resolve(store_dir, &wanted)?;
        names.sort();
        Ok(names)
    }
}

/// A `closureInfo` directory's store paths and registration (sorted by
/// path, without derivers: the media carry none, and none are computed).
fn read_closure_info(ci: &Path) -> Result<(Vec<String>, Vec<PathInfo>)> {
    let paths = parse_path_list(&read_text(&ci.join("store-paths"), "closureInfo")?);
    let reg_path = ci.join("registration");
    let data = read(&reg_path, "closureInfo")?;
    let mut reg = match Registration::parse(&data) {
        Ok(r) => r.paths,
        Err(e) if is_open(&e) => bail!(
            "the closureInfo registration {} is not closed: {e}; to fix: give the closureInfo of the whole closure (closureInfo {{ rootPaths = [ system ]; }})",
            reg_path.display()
        ),
        Err(e) => return Err(e).with_context(|| reg_path.display().to_string()),
    };
    reg.sort_by(|a, b| a.path.cmp(&b.path));
    for p in &mut reg {
        p.deriver = None;
    }
    ensure!(
        !paths.is_empty(),
        "{} lists no store paths",
        ci.join("store-paths").display()
    );
    Ok((paths, reg))
}

/// Whether a registration was refused for naming a reference it does not
/// register: it is not closed.
pub fn is_open(e: &nixlive_formats::registration::RegistrationError) -> bool {
    e.field == nixlive_formats::registration::Field::Reference
        && e.msg.ends_with("is not registered in this file")
}

/// The closureInfo registration of `names` when it covers every one of
/// them; else one computed here.
fn reuse_or_compute(
    reg: Vec<PathInfo>,
    store_dir: &Path,
    names: &[String],
) -> Result<Vec<PathInfo>> {
    let have: BTreeSet<&str> = reg.iter().map(PathInfo::base_name).collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !have.contains(n.as_str()))
        .collect();
    if let Some(first) = missing.first() {
        eprintln!(
            "note: the closureInfo registration lacks {} of the paths (e.g. {first}); computing all",
            missing.len(),
        );
        return compute(store_dir, names);
    }
    let keep: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let infos: Vec<PathInfo> = reg
        .into_iter()
        .filter(|i| keep.contains(i.base_name()))
        .collect();
    registration::check_cycles(&infos)?;
    Ok(infos)
}

/// Fails when a path refers to one outside the closure.
fn check_closed(infos: &[PathInfo]) -> Result<()> {
    let all: BTreeSet<&str> = infos.iter().map(|i| i.path.as_str()).collect();
    for i in infos {
        if let Some(r) = i.references.iter().find(|r| !all.contains(r.as_str())) {
            bail!(
                "the closure is not closed: {} refers to {r}, which is not in it; to fix: give every path of the closure (nix-store -qR SYSTEM, or its closureInfo)",
                i.path
            );
        }
    }
    Ok(())
}

/// Computes the registration with a progress bar over the paths.
pub fn compute(store_dir: &Path, names: &[String]) -> Result<Vec<PathInfo>> {
    let started = std::time::Instant::now();
    let bar = progress::bar(names.len() as u64, "hashing store paths");
    let mut bytes = 0u64;
    let r = registration::compute_with(store_dir, STORE_DIR, names, &mut |n, size| {
        bytes += size;
        bar.set_message(format!("{} {n}", nixlive_formats::size::human(bytes)));
        bar.inc(1);
    });
    bar.finish_and_clear();
    let r = r?;
    progress::finished(
        "hashing store paths",
        &format!("{} paths", names.len()),
        bytes,
        started,
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lists() {
        assert_eq!(
            parse_path_list("/nix/store/a\n\n# c\n  /nix/store/b  \n"),
            ["/nix/store/a", "/nix/store/b"]
        );
    }
}

//! What goes into the store images: a closure given as a nixpkgs
//! `closureInfo` directory, as a list of store paths, or as every store path
//! of a plain directory tree; and its registration, taken from the
//! `closureInfo` or computed here (NAR hashes, sizes, references).
//!
//! Non-goals: no substitution or building (every path must already be
//! under the store root), no derivers (the media carry none).

use crate::files::read_text;
use crate::progress;
use crate::registration;
use anyhow::{Context, Result, bail, ensure};
use nixlive_formats::registration::{PathInfo, Registration};
use std::collections::BTreeSet;
use std::fs;
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

/// Non-empty, non-comment lines of a store path list.
pub fn parse_path_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

impl InputArgs {
    pub fn load(&self) -> Result<Closure> {
        let store_dir = self.store_root.join("nix/store");
        let sys_base = self
            .system
            .strip_prefix("/nix/store/")
            .filter(|b| !b.contains('/') && registration::hash_part(b).is_some())
            .with_context(|| {
                format!(
                    "--system `{}` is not a /nix/store/<hash>-<name> path",
                    self.system
                )
            })?;
        let sys_init = store_dir.join(sys_base).join("init");
        ensure!(
            sys_init.exists(),
            "the system has no init: {} does not exist",
            sys_init.display()
        );

        let mut wanted: Vec<String> = self.extra_paths.clone();
        let mut given: Option<Vec<PathInfo>> = None;
        if let Some(ci) = &self.closure_info {
            let paths = parse_path_list(&read_text(&ci.join("store-paths"), "closureInfo")?);
            let reg_path = ci.join("registration");
            let data = fs::read(&reg_path)
                .with_context(|| format!("reading closureInfo {}", reg_path.display()))?;
            let mut reg = Registration::parse(&data)
                .with_context(|| reg_path.display().to_string())?
                .paths;
            reg.sort_by(|a, b| a.path.cmp(&b.path));
            // The media carry no derivers (they are not computed either).
            for p in &mut reg {
                p.deriver = None;
            }
            ensure!(
                !paths.is_empty(),
                "{} lists no store paths",
                ci.join("store-paths").display()
            );
            wanted.extend(paths);
            given = Some(reg);
        }
        if let Some(f) = &self.store_paths {
            wanted.extend(parse_path_list(&read_text(f, "--store-paths")?));
        }
        let names = if wanted.is_empty() {
            ensure!(
                self.store_root != Path::new("/"),
                "no closure given: pass --closure-info, --store-paths or --store-path, \
                 or a --store-root that holds only the closure"
            );
            registration::list_store(&store_dir)?
        } else {
            wanted.push(self.system.clone());
            let mut names = registration::resolve(&store_dir, &wanted)?;
            names.sort();
            names
        };
        ensure!(
            names.iter().any(|n| n == sys_base),
            "--system {} is not part of the closure",
            self.system
        );

        // Reuse the closureInfo registration when it covers every path.
        let infos = match given {
            Some(reg) => {
                let have: BTreeSet<&str> = reg.iter().map(PathInfo::base_name).collect();
                let missing: Vec<&String> = names
                    .iter()
                    .filter(|n| !have.contains(n.as_str()))
                    .collect();
                if missing.is_empty() {
                    let keep: BTreeSet<&str> = names.iter().map(String::as_str).collect();
                    let infos: Vec<PathInfo> = reg
                        .into_iter()
                        .filter(|i| keep.contains(i.base_name()))
                        .collect();
                    registration::check_cycles(&infos)?;
                    infos
                } else {
                    eprintln!(
                        "note: the closureInfo registration lacks {} of the paths (e.g. {}); computing all",
                        missing.len(),
                        missing[0]
                    );
                    compute(&store_dir, &names)?
                }
            }
            None => compute(&store_dir, &names)?,
        };
        // Every reference must be inside the closure.
        let all: BTreeSet<&str> = infos.iter().map(|i| i.path.as_str()).collect();
        for i in &infos {
            if let Some(r) = i.references.iter().find(|r| !all.contains(r.as_str())) {
                bail!(
                    "the closure is not closed: {} refers to {r}, which is not in it",
                    i.path
                );
            }
        }
        Ok(Closure {
            store_dir,
            infos,
            system: self.system.clone(),
        })
    }
}

/// Computes the registration with a progress bar over the paths.
pub fn compute(store_dir: &Path, names: &[String]) -> Result<Vec<PathInfo>> {
    let bar = progress::bar(names.len() as u64, "hashing store paths");
    let r = registration::compute_with(store_dir, "/nix/store", names, &mut |n| {
        bar.set_message(n.to_string());
        bar.inc(1);
    });
    bar.finish_and_clear();
    Ok(r?)
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

//! The system profile, exactly as `nix-env -p PROFILE --set PATH` leaves it
//! (Nix's `createGeneration`, `addPermRoot`, `addIndirectRoot` and
//! `switchLink`):
//!
//! - `PROFILE-N-link` → `PATH` (absolute), N one more than the highest
//!   generation, unless the highest already points at `PATH`;
//! - `gcroots/auto/<nix32(sha1(PROFILE-N-link))>` → `PROFILE-N-link`;
//! - `PROFILE` → `PROFILE-N-link`, relative (same directory).
//!
//! Links are made under a temporary name and renamed into place, as Nix's
//! `makeSymlink`/`replaceSymlink` do. Paths are as seen inside the booted
//! system; they are created under `root`.

use std::io;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::paths;
use nixlive_formats::nix32;

#[derive(Debug, Error)]
#[error("{what} {path}")]
pub struct ProfileError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// What [`set`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub generation: u64,
    /// `PROFILE-N-link`, inside the root.
    pub link: String,
    pub created_generation: bool,
    /// Whether `PROFILE` had to be switched, or the GC root made.
    pub switched: bool,
    pub rooted: bool,
}

impl Outcome {
    pub fn changed(&self) -> bool {
        self.created_generation || self.switched || self.rooted
    }
}

/// The name of the indirect GC root for `link` (an absolute path).
pub fn gcroot_name(link: &str) -> String {
    nix32::encode(&Sha1::digest(link.as_bytes()))
}

/// Generation numbers and link names of `profile_name` in `dir`, sorted.
pub fn generations(dir: &Path, profile_name: &str) -> io::Result<Vec<(u64, String)>> {
    let mut gens = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(gens),
        Err(e) => return Err(e),
    };
    for e in entries {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix(profile_name)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix("-link"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        {
            gens.push((n, name.to_string()));
        }
    }
    gens.sort();
    Ok(gens)
}

/// Points `profile` (inside the root, e.g. [`paths::SYSTEM_PROFILE`]) at
/// `target` (a store path).
pub fn set(root: &Path, profile: &str, target: &str) -> Result<Outcome, ProfileError> {
    let (dir_logical, name) = profile
        .rsplit_once('/')
        .filter(|(d, n)| d.starts_with('/') && !n.is_empty())
        .ok_or_else(|| ProfileError {
            what: "profile must be an absolute path:",
            path: profile.into(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
    let dir = paths::under(root, dir_logical);
    let err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| ProfileError { what, path, source }
    };
    std::fs::create_dir_all(&dir).map_err(err("creating", &dir))?;
    let gens = generations(&dir, name).map_err(err("listing", &dir))?;

    let newest = gens.last();
    let same = match newest {
        Some((_, link)) => {
            let p = dir.join(link);
            std::fs::read_link(&p).map_err(err("reading link", &p))? == Path::new(target)
        }
        None => false,
    };
    let (generation, created_generation) = match newest {
        Some((n, _)) if same => (*n, false),
        Some((n, _)) => (n + 1, true),
        None => (1, true),
    };
    let link_name = format!("{name}-{generation}-link");
    let link_logical = format!("{dir_logical}/{link_name}");
    let link_path = dir.join(&link_name);
    if created_generation {
        replace_symlink(Path::new(target), &link_path).map_err(err("creating", &link_path))?;
    }

    // A failure past this point takes back the generation it made, so the
    // profile is as it was (Nix would leave the new generation behind).
    let finish = || -> Result<(bool, bool), ProfileError> {
        // The indirect GC root, which Nix makes with the generation.
        let auto = paths::under(root, paths::GCROOTS_AUTO);
        std::fs::create_dir_all(&auto).map_err(err("creating", &auto))?;
        let gcroot = auto.join(gcroot_name(&link_logical));
        let rooted = !link_points_to(&gcroot, &link_logical);
        if rooted {
            replace_symlink(Path::new(&link_logical), &gcroot).map_err(err("creating", &gcroot))?;
        }

        let profile_path = dir.join(name);
        let switched = !link_points_to(&profile_path, &link_name);
        if switched {
            if let Ok(m) = std::fs::symlink_metadata(&profile_path)
                && !m.file_type().is_symlink()
            {
                return Err(ProfileError {
                    what: "replacing (not a symbolic link)",
                    path: profile_path,
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                });
            }
            replace_symlink(Path::new(&link_name), &profile_path)
                .map_err(err("switching", &profile_path))?;
        }
        Ok((rooted, switched))
    };
    let (rooted, switched) = match finish() {
        Ok(r) => r,
        Err(e) => {
            if created_generation {
                // not fatal: the error that matters is returned below.
                let gcroot =
                    paths::under(root, paths::GCROOTS_AUTO).join(gcroot_name(&link_logical));
                if link_points_to(&gcroot, &link_logical) {
                    let _ = std::fs::remove_file(&gcroot);
                }
                let _ = std::fs::remove_file(&link_path);
            }
            return Err(e);
        }
    };
    Ok(Outcome {
        generation,
        link: link_logical,
        created_generation,
        switched,
        rooted,
    })
}

fn link_points_to(link: &Path, target: &str) -> bool {
    std::fs::read_link(link).is_ok_and(|t| t == Path::new(target))
}

/// `ln -sfn target link`, atomically (a temporary link renamed over it).
fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        // not fatal: the rename's error is what is reported.
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-system";
    const S2: &str = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-system";

    fn link(root: &Path, rel: &str) -> String {
        std::fs::read_link(root.join(rel))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn generations_like_nix_env() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let o = set(root, paths::SYSTEM_PROFILE, S1).unwrap();
        assert_eq!(o.generation, 1);
        assert!(o.created_generation && o.switched && o.rooted);
        let p = "nix/var/nix/profiles";
        assert_eq!(link(root, &format!("{p}/system-1-link")), S1);
        assert_eq!(link(root, &format!("{p}/system")), "system-1-link");
        let name = gcroot_name("/nix/var/nix/profiles/system-1-link");
        assert_eq!(
            link(root, &format!("nix/var/nix/gcroots/auto/{name}")),
            "/nix/var/nix/profiles/system-1-link"
        );
        // Checked against nix-env 2.8 (tests/nix_acceptance.rs does it live).
        assert_eq!(
            gcroot_name("/tmp/nixprobe/root/nix/var/nix/profiles/system-1-link"),
            "5f0c7nl13mpaa58gaw7vhdln70cmm2i3"
        );
        let again = set(root, paths::SYSTEM_PROFILE, S1).unwrap();
        assert!(!again.changed(), "{again:?}");
        let o2 = set(root, paths::SYSTEM_PROFILE, S2).unwrap();
        assert_eq!(o2.generation, 2);
        assert_eq!(link(root, &format!("{p}/system")), "system-2-link");
        assert_eq!(link(root, &format!("{p}/system-1-link")), S1);
        // Back to S1: a new generation 3, as nix-env does.
        assert_eq!(set(root, paths::SYSTEM_PROFILE, S1).unwrap().generation, 3);
        let gens = generations(&root.join(p), "system").unwrap();
        assert_eq!(gens.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn refuses_a_profile_that_is_not_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nix/var/nix/profiles");
        std::fs::create_dir_all(dir.join("system")).unwrap();
        let e = set(tmp.path(), paths::SYSTEM_PROFILE, S1).unwrap_err();
        assert!(e.to_string().contains("profiles/system"), "{e}");
        // The generation the failed run made is taken back, its GC root too.
        assert_eq!(generations(&dir, "system").unwrap(), vec![]);
        let auto = tmp.path().join("nix/var/nix/gcroots/auto");
        assert_eq!(std::fs::read_dir(&auto).unwrap().count(), 0);
    }
}

//! Registering the store: the registration file is parsed strictly first
//! (nothing is touched when it is malformed), then loaded by one of two
//! loaders:
//!
//! - `native` ([`crate::db`]): writes Nix's database directly (with the
//!   `native-loader` feature, the default: SQLite is compiled in), proven
//!   equal to `nix-store --load-db` by the host tests;
//! - `nix-store`: pipes the file into the system's `nix-store --load-db`
//!   (with `--store ROOT` when the root is not `/`).
//!
//! `auto` takes `native` where it is built and the file has no derivations,
//! else `nix-store`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nixlive_formats::registration::{Borrowed, Registration, RegistrationError};
use thiserror::Error;

use crate::paths;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    Auto,
    Native,
    NixStore,
}

impl Loader {
    pub fn parse(s: &str) -> Option<Loader> {
        match s {
            "auto" => Some(Loader::Auto),
            "native" => Some(Loader::Native),
            "nix-store" => Some(Loader::NixStore),
            _ => None,
        }
    }
}

/// Whether this build has the native loader.
pub const NATIVE_AVAILABLE: bool = cfg!(feature = "native-loader");

/// The largest registration read: 64 MiB. A NixOS system's is about 1 MB
/// (some 2,000 paths); 64 MiB holds well over 100,000 paths with their
/// references, and keeps a corrupt or hostile file from filling memory.
pub const MAX_REGISTRATION: u64 = nixlive_formats::registration::MAX_BYTES;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "{path} is larger than {} MiB (postboot's limit on the registration), nothing was registered",
        MAX_REGISTRATION >> 20
    )]
    TooLarge { path: String },
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is malformed, nothing was registered")]
    Parse {
        path: String,
        #[source]
        source: RegistrationError,
    },
    #[error("this build has no native loader (feature native-loader); use --loader nix-store")]
    NativeUnavailable,
    #[cfg(feature = "native-loader")]
    #[error("native loader")]
    Db(#[from] crate::db::DbError),
    #[error("running {program} {args}")]
    Spawn {
        program: PathBuf,
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {args} failed ({status}): {stderr}")]
    NixStore {
        program: PathBuf,
        args: String,
        status: String,
        stderr: String,
    },
}

/// A loader that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    Native,
    NixStore,
}

impl Used {
    /// As `--loader` names it.
    pub fn name(self) -> &'static str {
        match self {
            Used::Native => "native",
            Used::NixStore => "nix-store",
        }
    }
}

/// What [`load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// There is no registration file.
    NoFile,
    /// `auto` found no loader: the system has no Nix to use the `paths`.
    NoLoader { paths: usize },
    Loaded {
        loader: Used,
        paths: usize,
        /// Paths that were new or differed (0: nothing to do).
        changed: usize,
    },
}

/// Parses `<root>/<file>` and loads it.
pub fn load(
    root: &Path,
    file: &str,
    loader: Loader,
    nix_store: &Path,
    now: i64,
) -> Result<Outcome, LoadError> {
    let host = paths::under(root, file);
    let data = match read_capped(&host, MAX_REGISTRATION) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return Err(LoadError::TooLarge {
                path: file.to_string(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::NoFile),
        Err(source) => {
            return Err(LoadError::Read {
                path: file.to_string(),
                source,
            });
        }
    };
    // The quick parser reads a well-formed file in one pass and keeps it
    // borrowed: the native loader builds a new database straight from it.
    // Anything else is parsed again by the line-by-line parser, which says
    // what is wrong and where.
    let quick = Borrowed::parse(&data);
    let owned = |quick: &Option<Borrowed<'_>>| match quick {
        Some(q) => Ok(q.to_owned()),
        None => Registration::parse_reference(&data).map_err(|source| LoadError::Parse {
            path: file.to_string(),
            source,
        }),
    };
    let (paths, has_drv, reg) = match &quick {
        Some(q) => (
            q.records.len(),
            q.records.iter().any(|r| r.path.ends_with(".drv")),
            None,
        ),
        None => {
            let reg = owned(&None)?;
            let has_drv = reg.paths.iter().any(|p| p.path.ends_with(".drv"));
            (reg.paths.len(), has_drv, Some(reg))
        }
    };
    match choose(loader, NATIVE_AVAILABLE, has_drv, nix_store.is_file()) {
        Choice::Native => {
            if let Some(q) = &quick
                && let Some(outcome) = load_native_new(root, q, now)?
            {
                return Ok(outcome);
            }
            let reg = match reg {
                Some(r) => r,
                None => owned(&quick)?,
            };
            load_native(root, &reg, now)
        }
        Choice::NixStore => {
            let reg = match reg {
                Some(r) => r,
                None => owned(&quick)?,
            };
            load_nix_store(root, &reg, &data, nix_store)
        }
        Choice::Unavailable => Err(LoadError::NativeUnavailable),
        Choice::Skip => Ok(Outcome::NoLoader { paths }),
    }
}

/// The file's contents, or `None` when it holds more than `limit` bytes
/// (found without reading more than `limit + 1`).
fn read_capped(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Ok(None);
    }
    // Room for the whole file and the byte that would tell it grew: no
    // copying as the buffer grows.
    let mut data = Vec::with_capacity(usize::try_from(len + 1).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut data)?;
    Ok((data.len() as u64 <= limit).then_some(data))
}

/// Which loader runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Native,
    NixStore,
    /// `--loader native` where it is not built.
    Unavailable,
    /// `auto` with neither loader: the system has no Nix to read a database,
    /// so there is nothing to register for (said, not an error).
    Skip,
}

pub fn choose(loader: Loader, native_built: bool, has_drv: bool, nix_store_found: bool) -> Choice {
    match loader {
        Loader::Native if native_built => Choice::Native,
        Loader::Native => Choice::Unavailable,
        Loader::NixStore => Choice::NixStore,
        Loader::Auto if native_built && !has_drv => Choice::Native,
        Loader::Auto if nix_store_found => Choice::NixStore,
        Loader::Auto => Choice::Skip,
    }
}

#[cfg(feature = "native-loader")]
fn load_native(root: &Path, reg: &Registration, now: i64) -> Result<Outcome, LoadError> {
    let dir = paths::under(root, paths::NIX_DB_DIR);
    // A second run finds everything in place and writes nothing.
    let changed = crate::db::missing(&dir, reg)?;
    if changed > 0 {
        crate::db::load(&dir, reg, now)?;
    }
    Ok(Outcome::Loaded {
        loader: Used::Native,
        paths: reg.paths.len(),
        changed,
    })
}

#[cfg(not(feature = "native-loader"))]
fn load_native(_: &Path, _: &Registration, _: i64) -> Result<Outcome, LoadError> {
    Err(LoadError::NativeUnavailable)
}

/// The first boot's load: a new database built from the quick parser's
/// records; `None` when there is a database already.
#[cfg(feature = "native-loader")]
fn load_native_new(
    root: &Path,
    reg: &Borrowed<'_>,
    now: i64,
) -> Result<Option<Outcome>, LoadError> {
    let dir = paths::under(root, paths::NIX_DB_DIR);
    Ok(
        crate::db::load_new(&dir, reg, now)?.map(|counts| Outcome::Loaded {
            loader: Used::Native,
            paths: reg.records.len(),
            changed: counts.added,
        }),
    )
}

#[cfg(not(feature = "native-loader"))]
fn load_native_new(_: &Path, _: &Borrowed<'_>, _: i64) -> Result<Option<Outcome>, LoadError> {
    Err(LoadError::NativeUnavailable)
}

fn load_nix_store(
    root: &Path,
    reg: &Registration,
    data: &[u8],
    nix_store: &Path,
) -> Result<Outcome, LoadError> {
    // Which paths are not valid yet (in chunks: one argument per path).
    let mut invalid = 0;
    for chunk in reg.paths.chunks(2000) {
        let mut args = vec!["--check-validity", "--print-invalid"];
        args.extend(chunk.iter().map(|p| p.path.as_str()));
        let shown = format!("--check-validity --print-invalid ({} paths)", chunk.len());
        let out = run(nix_store, root, &args, &shown, None)?;
        invalid += out.lines().filter(|l| !l.trim().is_empty()).count();
    }
    if invalid > 0 {
        run(nix_store, root, &["--load-db"], "--load-db", Some(data))?;
    }
    Ok(Outcome::Loaded {
        loader: Used::NixStore,
        paths: reg.paths.len(),
        changed: invalid,
    })
}

/// Runs `nix-store [--store ROOT] ARGS` and returns its standard output.
fn run(
    nix_store: &Path,
    root: &Path,
    args: &[&str],
    shown: &str,
    stdin: Option<&[u8]>,
) -> Result<String, LoadError> {
    let mut cmd = Command::new(nix_store);
    let mut shown = shown.to_string();
    if root != Path::new("/") {
        cmd.arg("--store").arg(root);
        shown = format!("--store {} {shown}", root.display());
    }
    cmd.args(args);
    let spawn_err = |source| LoadError::Spawn {
        program: nix_store.to_path_buf(),
        args: shown.clone(),
        source,
    };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(LoadError::NixStore {
            program: nix_store.to_path_buf(),
            args: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `nix-store` program: `$PATH`, then the system's `sw/bin`.
pub fn find_nix_store(root: &Path) -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nix-store"))
            .find(|p| p.is_file())
    });
    in_path.unwrap_or_else(|| {
        paths::under(root, &format!("{}/sw/bin/nix-store", paths::CURRENT_SYSTEM))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_choice() {
        use Loader::{Auto, Native, NixStore};
        assert_eq!(choose(Auto, true, false, false), Choice::Native);
        assert_eq!(choose(Auto, true, true, true), Choice::NixStore);
        assert_eq!(choose(Auto, false, false, true), Choice::NixStore);
        // A build without the native loader, and no Nix on the system.
        assert_eq!(choose(Auto, false, false, false), Choice::Skip);
        assert_eq!(choose(Native, false, false, true), Choice::Unavailable);
        assert_eq!(choose(NixStore, true, false, false), Choice::NixStore);
    }

    #[test]
    fn a_registration_over_the_limit_is_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(root.path().join("reg")).unwrap();
        // Sparse: the size is checked before anything is read.
        f.set_len(MAX_REGISTRATION + 1).unwrap();
        let e = load(
            root.path(),
            "/reg",
            Loader::Auto,
            Path::new("/nonexistent"),
            0,
        )
        .unwrap_err();
        assert_eq!(
            nixlive_formats::error::chain(&e),
            "/reg is larger than 64 MiB (postboot's limit on the registration), nothing was registered"
        );
        assert!(!root.path().join("nix/var/nix/db").exists());
        // At the limit it is read (and here refused for what it holds).
        f.set_len(MAX_REGISTRATION).unwrap();
        let e = load(
            root.path(),
            "/reg",
            Loader::Auto,
            Path::new("/nonexistent"),
            0,
        )
        .unwrap_err();
        assert!(matches!(e, LoadError::Parse { .. }), "{e:?}");
    }

    #[test]
    fn a_malformed_file_names_its_line_once() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("reg"), "not a store path\n").unwrap();
        let e = load(
            root.path(),
            "/reg",
            Loader::Auto,
            Path::new("/nonexistent"),
            0,
        )
        .unwrap_err();
        let shown = nixlive_formats::error::chain(&e);
        assert!(
            shown.starts_with("/reg is malformed, nothing was registered: line 1 ("),
            "{shown}"
        );
        assert_eq!(shown.matches("line 1").count(), 1, "{shown}");
    }
}

//! `/etc/NIXOS`, the marker nixos-rebuild and friends look for.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::paths;

#[derive(Debug, Error)]
#[error("{action} {path}")]
pub struct MarkerError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Makes sure `<root>/etc` (0755) and `<root>/etc/NIXOS` (0644, empty)
/// exist; `Ok(true)` if anything was created.
pub fn ensure(root: &Path) -> Result<bool, MarkerError> {
    let etc = make(&root.join("etc"), Kind::Dir, 0o755)?;
    let marker = make(&paths::under(root, paths::NIXOS_MARKER), Kind::File, 0o644)?;
    Ok(etc || marker)
}

fn not_a(kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("exists and is not a {kind}"),
    )
}

/// What [`make`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Makes `path` a directory or an empty regular file with `mode`, unless
/// one is there; `Ok(true)` if it was created. Anything else in its place
/// is an error.
fn make(path: &Path, kind: Kind, mode: u32) -> Result<bool, MarkerError> {
    let err = |action, source| MarkerError {
        action,
        path: path.to_path_buf(),
        source,
    };
    let (creating, name) = match kind {
        Kind::Dir => ("creating directory", "directory"),
        Kind::File => ("creating", "regular file"),
    };
    match fs::symlink_metadata(path) {
        Ok(m) if (kind == Kind::Dir && m.is_dir()) || (kind == Kind::File && m.is_file()) => {
            Ok(false)
        }
        Ok(_) => Err(err(creating, not_a(name))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match kind {
                Kind::Dir => DirBuilder::new().mode(mode).create(path),
                // create_new (O_CREAT|O_EXCL) never follows a symlink planted there.
                Kind::File => OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(path)
                    .map(drop),
            }
            .map_err(|e| err(creating, e))?;
            // The umask may have narrowed the mode.
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| err("setting mode of", e))?;
            Ok(true)
        }
        Err(e) => Err(err("inspecting", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_nothing_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(ensure(tmp.path()).unwrap());
        let m = fs::metadata(tmp.path().join("etc/NIXOS")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o644);
        assert!(!ensure(tmp.path()).unwrap());
    }

    #[test]
    fn error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("etc"), b"not a dir").unwrap();
        let e = ensure(tmp.path()).unwrap_err();
        assert_eq!(e.path, tmp.path().join("etc"));
    }
}

//! File helpers whose errors name the file (and, for inputs, the option it
//! came from), and the digests the manifest records.
//!
//! Non-goals: no atomic replacement (outputs are rebuilt, not updated in
//! place), no following of the caller's intent about existing files.

use anyhow::{Context, Result};
use nixlive_formats::digest;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

/// Reads an input; `what` names it (`--init`, `module`).
pub fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Reads a text input; `what` names it (`--store-paths`).
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Writes `data` to `path`, creating its parent directories.
pub fn write(path: &Path, data: &[u8]) -> Result<()> {
    create_parent(path)?;
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// Creates the directory `path` would be written into.
pub fn create_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => create_dir(parent),
        None => Ok(()),
    }
}

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

pub fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// Removes a file left by an earlier build, if there is one.
pub fn remove_old(path: &Path) -> Result<()> {
    if path.exists() {
        fs::remove_file(path).with_context(|| format!("removing old {}", path.display()))?;
    }
    Ok(())
}

/// Sets the mtime of every file and directory under `root` (and `root`).
pub fn set_mtimes(root: &Path, t: SystemTime) -> Result<()> {
    let meta = fs::symlink_metadata(root).with_context(|| format!("stat {}", root.display()))?;
    if meta.is_dir() {
        for e in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
            let e = e.with_context(|| format!("listing {}", root.display()))?;
            set_mtimes(&e.path(), t)?;
        }
    }
    if !meta.file_type().is_symlink() {
        let f = fs::File::open(root).with_context(|| format!("opening {}", root.display()))?;
        f.set_modified(t)
            .with_context(|| format!("setting mtime of {}", root.display()))?;
    }
    Ok(())
}

/// The size of `path` and its SHA-256 in lowercase hex.
pub fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let sum = digest::sha256_read(f).with_context(|| format!("reading {}", path.display()))?;
    Ok((sum.len, sum.hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn helpers_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a/b/c");
        write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
        let e = read(&d.path().join("none"), "--init").unwrap_err();
        assert!(e.to_string().starts_with("reading --init "), "{e}");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
        set_mtimes(d.path(), t).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().modified().unwrap(), t);
        remove_old(&f).unwrap();
        remove_old(&f).unwrap();
        assert!(!f.exists());
    }
}

//! The actions postboot takes, each relative to a root directory.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A failed action, naming the path (as seen inside the booted system) and
/// the host path it was tried on.
#[derive(Debug)]
pub struct Error {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Runs every action against `root`, printing one line per action to `out`.
pub fn run(root: &Path, out: &mut impl Write) -> Result<(), Error> {
    ensure_dir(root, "etc", 0o755, out)?;
    ensure_file(root, "etc/NIXOS", 0o644, out)?;
    Ok(())
}

fn say(out: &mut impl Write, line: fmt::Arguments<'_>) {
    // not fatal: the action itself succeeded; a closed stdout must not fail it.
    let _ = writeln!(out, "postboot: {line}");
}

fn ensure_dir(root: &Path, rel: &str, mode: u32, out: &mut impl Write) -> Result<(), Error> {
    let path = root.join(rel);
    let err = |action, source| Error {
        action,
        path: path.clone(),
        source,
    };
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(err(
            "creating directory",
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .mode(mode)
                .create(&path)
                .map_err(|e| err("creating directory", e))?;
            // The umask may have narrowed the mode.
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| err("setting mode of", e))?;
            say(out, format_args!("created /{rel}"));
            Ok(())
        }
        Err(e) => Err(err("inspecting", e)),
    }
}

fn ensure_file(root: &Path, rel: &str, mode: u32, out: &mut impl Write) -> Result<(), Error> {
    let path = root.join(rel);
    let err = |action, source| Error {
        action,
        path: path.clone(),
        source,
    };
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {
            say(out, format_args!("/{rel} already present, nothing to do"));
            Ok(())
        }
        Ok(_) => Err(err(
            "creating",
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a regular file",
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // create_new (O_CREAT|O_EXCL) never follows a symlink planted there.
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .map_err(|e| err("creating", e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| err("setting mode of", e))?;
            say(out, format_args!("created /{rel}"));
            Ok(())
        }
        Err(e) => Err(err("inspecting", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_to_string(root: &Path) -> Result<String, Error> {
        let mut out = Vec::new();
        run(root, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn tempdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("nixlive-postboot-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn creates_then_nothing_to_do() {
        let root = tempdir("idem");
        let first = run_to_string(&root).unwrap();
        assert_eq!(
            first,
            "postboot: created /etc\npostboot: created /etc/NIXOS\n"
        );
        let m = fs::metadata(root.join("etc/NIXOS")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o7777, 0o644);
        assert_eq!(
            fs::metadata(root.join("etc")).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        let second = run_to_string(&root).unwrap();
        assert_eq!(
            second,
            "postboot: /etc/NIXOS already present, nothing to do\n"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn existing_etc_is_kept() {
        let root = tempdir("etc");
        fs::create_dir(root.join("etc")).unwrap();
        let out = run_to_string(&root).unwrap();
        assert_eq!(out, "postboot: created /etc/NIXOS\n");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn error_names_the_path() {
        let root = tempdir("err");
        fs::write(root.join("etc"), b"not a dir").unwrap();
        let e = run_to_string(&root).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&root.join("etc").display().to_string()),
            "{msg}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}

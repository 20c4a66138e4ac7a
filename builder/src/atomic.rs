//! Outputs written whole or not at all: each is made beside its final path
//! under a temporary name (`.NAME.nixlive-PID-N`, on the same filesystem)
//! and renamed into place only when complete, so that an earlier output
//! survives a failed or interrupted build unchanged. A directory replaces
//! an earlier one by an atomic exchange (`renameat2(RENAME_EXCHANGE)`),
//! after which the old tree is removed.
//!
//! Non-goals: no durability against power loss (no fsync: a build that
//! loses power is run again).

use crate::cleanup::{Tracked, remove_any};
use crate::files::create_parent;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The temporary name beside `dest`.
fn beside(dest: &Path) -> Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = dest
        .file_name()
        .with_context(|| format!("{} does not name a file", dest.display()))?;
    let tmp = format!(
        ".{}.nixlive-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Ok(dest.with_file_name(tmp))
}

/// A file output being written.
#[derive(Debug)]
pub struct OutFile {
    tmp: PathBuf,
    dest: PathBuf,
    // Dropped after `Drop::drop` removed the temporary file.
    _tracked: Tracked,
}

impl OutFile {
    /// Prepares to write `dest` (its parent is created; nothing else is).
    pub fn new(dest: &Path) -> Result<OutFile> {
        create_parent(dest)?;
        let tmp = beside(dest)?;
        Ok(OutFile {
            _tracked: Tracked::new(tmp.clone()),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// Where to write (does not exist yet).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Writes `data` and puts it in place.
    pub fn write(dest: &Path, data: &[u8]) -> Result<()> {
        let o = OutFile::new(dest)?;
        fs::write(o.path(), data).with_context(|| format!("writing {}", dest.display()))?;
        o.commit()
    }

    /// Renames the finished file into place.
    pub fn commit(self) -> Result<()> {
        fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("putting {} in place", self.dest.display()))
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        // Gone already when committed.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// A directory output being written.
#[derive(Debug)]
pub struct OutDir {
    tmp: PathBuf,
    dest: PathBuf,
    _tracked: Tracked,
}

impl OutDir {
    /// Creates the empty temporary directory beside `dest`.
    pub fn new(dest: &Path) -> Result<OutDir> {
        create_parent(dest)?;
        let tmp = beside(dest)?;
        let d = OutDir {
            _tracked: Tracked::new(tmp.clone()),
            tmp,
            dest: dest.to_path_buf(),
        };
        fs::create_dir(&d.tmp).with_context(|| format!("creating {}", d.tmp.display()))?;
        Ok(d)
    }

    /// Where to write the tree.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Puts the finished tree in place of `dest` (exchanged with an earlier
    /// one, which is then removed).
    pub fn commit(self) -> Result<()> {
        let what = || format!("putting {} in place", self.dest.display());
        match fs::symlink_metadata(&self.dest) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::rename(&self.tmp, &self.dest).with_context(what)
            }
            Err(e) => Err(e).with_context(what),
            Ok(m) if !m.is_dir() => bail!(
                "{} exists and is not a directory; refusing to replace it",
                self.dest.display()
            ),
            Ok(_) => {
                use rustix::fs::{CWD, RenameFlags, renameat_with};
                match renameat_with(CWD, &self.tmp, CWD, &self.dest, RenameFlags::EXCHANGE) {
                    Ok(()) => Ok(()),
                    // A filesystem without the exchange: two renames, with
                    // a moment in between where `dest` is absent (never a
                    // half-written tree).
                    Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                        let old = beside(&self.dest)?;
                        let _old = Tracked::new(old.clone());
                        fs::rename(&self.dest, &old).with_context(what)?;
                        let r = fs::rename(&self.tmp, &self.dest).with_context(what);
                        if r.is_err() {
                            // not fatal: the earlier tree goes back.
                            let _ = fs::rename(&old, &self.dest);
                        }
                        remove_any(&old);
                        r
                    }
                    Err(e) => Err(std::io::Error::from(e)).with_context(what),
                }
                // Drop removes the earlier tree, now at `tmp`.
            }
        }
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        remove_any(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_appear_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("sub/out.iso");
        OutFile::write(&f, b"first").unwrap();
        let o = OutFile::new(&f).unwrap();
        fs::write(o.path(), b"half").unwrap();
        drop(o);
        assert_eq!(fs::read(&f).unwrap(), b"first");
        assert_eq!(fs::read_dir(d.path().join("sub")).unwrap().count(), 1);
        OutFile::write(&f, b"second").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"second");
    }

    #[test]
    fn directories_are_exchanged() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("med");
        let o = OutDir::new(&out).unwrap();
        fs::write(o.path().join("a"), b"1").unwrap();
        o.commit().unwrap();
        let o = OutDir::new(&out).unwrap();
        fs::write(o.path().join("b"), b"2").unwrap();
        drop(o);
        assert!(out.join("a").exists() && !out.join("b").exists());
        let o = OutDir::new(&out).unwrap();
        fs::write(o.path().join("b"), b"2").unwrap();
        o.commit().unwrap();
        assert!(!out.join("a").exists() && out.join("b").exists());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        fs::write(d.path().join("file"), b"").unwrap();
        let o = OutDir::new(&d.path().join("file")).unwrap();
        assert!(o.commit().is_err());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }
}

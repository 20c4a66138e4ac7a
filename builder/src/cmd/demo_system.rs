//! `nixlive demo-system`: assembles the demo stage-2 system as a store path
//! under a root directory (see docs/contracts.md, "Demo system"): its
//! `init` and `bin/nixlive-postboot`, named by a hash of both programs.
//!
//! Non-goals: no other contents (a real system comes from Nix), no
//! registration (the media compute it like any store path's).

use crate::closure;
use anyhow::{Context, Result};
use nixlive_formats::digest::Hasher;
use nixlive_formats::nix32;
use nixlive_formats::paths::STORE_DIR;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const NAME: &str = "nixlive-demo-system";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Static stage-2 init (nixlive-demo-init).
    #[arg(long, value_name = "BIN")]
    pub init: PathBuf,
    /// Static nixlive-postboot.
    #[arg(long, value_name = "BIN")]
    pub postboot: PathBuf,
    /// Directory that gets nix/store/<hash>-nixlive-demo-system.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
}

/// Creates the store path and prints it.
pub fn run(a: &Args) -> Result<()> {
    println!("{}", create(&a.init, &a.postboot, &a.root)?);
    Ok(())
}

/// The store path's hash part: 20 XOR-folded bytes of a SHA-256 over the
/// name and both programs, in Nix's base 32 (32 characters).
pub fn hash_part(init: &[u8], postboot: &[u8]) -> String {
    let mut h = Hasher::new();
    h.update(b"nixlive-demo-system\0");
    for part in [init, postboot] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    nix32::encode(&nix32::compress(&h.finish(), 20))
}

fn write_exe(path: &Path, data: &[u8]) -> Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        fs::remove_file(path).with_context(|| format!("removing old {}", path.display()))?;
    }
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o555))
        .with_context(|| format!("setting mode 0555 on {}", path.display()))
}

/// Creates the store path and returns it (`/nix/store/<hash>-nixlive-demo-system`).
pub fn create(init: &Path, postboot: &Path, root: &Path) -> Result<String> {
    let init_data = fs::read(init).with_context(|| format!("reading --init {}", init.display()))?;
    let pb_data =
        fs::read(postboot).with_context(|| format!("reading --postboot {}", postboot.display()))?;
    let base = format!("{}-{NAME}", hash_part(&init_data, &pb_data));
    let store = closure::store_dir(root);
    let dir = store.join(&base);
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    write_exe(&dir.join("init"), &init_data)?;
    write_exe(&bin.join("nixlive-postboot"), &pb_data)?;
    Ok(format!("{STORE_DIR}/{base}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_hash() {
        let a = hash_part(b"i", b"p");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(nix32::is_digit));
        assert_eq!(a, hash_part(b"i", b"p"));
        assert_ne!(a, hash_part(b"ip", b""));
    }

    #[test]
    fn creates_the_tree() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("i"), b"init").unwrap();
        fs::write(d.path().join("p"), b"pb").unwrap();
        let root = d.path().join("root");
        let sp = create(&d.path().join("i"), &d.path().join("p"), &root).unwrap();
        assert!(sp.starts_with("/nix/store/") && sp.ends_with("-nixlive-demo-system"));
        let dir = root.join(sp.trim_start_matches('/'));
        let m = fs::metadata(dir.join("init")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o555);
        assert_eq!(fs::read(dir.join("bin/nixlive-postboot")).unwrap(), b"pb");
        // Running again over the read-only files works and gives the same path.
        assert_eq!(
            create(&d.path().join("i"), &d.path().join("p"), &root).unwrap(),
            sp
        );
        let err = create(&d.path().join("nope"), &d.path().join("p"), &root).unwrap_err();
        assert!(format!("{err:#}").contains("nope"));
    }
}

//! Every path postboot reads or writes, as seen inside the booted system
//! (defined once, in `nixlive_formats::paths`). All of them are taken
//! relative to `--root` (default `/`).

use std::path::{Path, PathBuf};

use nixlive_formats::paths;

/// The registration `nix-store --load-db` reads (in the squashfs root, so
/// in `/nix/store` once it is mounted; or at the top of a root unpacked
/// from a system tarball), Nix's database and the profile,
/// its garbage-collector roots, the running system and `/etc/NIXOS`.
pub use paths::{
    CURRENT_SYSTEM, GCROOTS_AUTO, NIX_DB, NIX_DB_DIR, NIXOS_MARKER, REGISTRATION,
    RUN_MEDIUM_KEYS_ORIGIN, SYSTEM_PROFILE, TOP_REGISTRATION,
};
/// The medium's SSH keys that init accepted, handed over in `/run` (the
/// medium itself is not read: init decides what of it a boot may use).
pub const MEDIUM_KEYS: &str = paths::RUN_MEDIUM_KEYS;
/// The kernel command line (`nixlive.ssh_key=`, `init=`).
pub const CMDLINE: &str = paths::PROC_CMDLINE;
/// SSH keys the builder put in the initrd as `/etc/nixlive/authorized_keys`;
/// init copies that file here before switching root (the initrd's contents
/// are deleted then).
pub const INITRD_KEYS: &str = paths::RUN_KEYS;
/// Optional configuration (users for the keys, root password hash).
pub const CONFIG: &str = paths::POSTBOOT_CONFIG;

/// `logical` (absolute, inside the booted system) under `root`.
pub fn under(root: &Path, logical: &str) -> PathBuf {
    root.join(logical.trim_start_matches('/'))
}

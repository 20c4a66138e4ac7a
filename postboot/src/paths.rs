//! Every path postboot reads or writes, as seen inside the booted system.
//! All of them are taken relative to `--root` (default `/`).

use std::path::{Path, PathBuf};

/// The registration `nix-store --load-db` reads (in the squashfs root, so
/// in `/nix/store` once it is mounted).
pub const REGISTRATION: &str = "/nix/store/nix-path-registration";
/// Nix's state directory, database and its schema version file.
pub const NIX_DB_DIR: &str = "/nix/var/nix/db";
pub const NIX_DB: &str = "/nix/var/nix/db/db.sqlite";
/// Indirect garbage-collector roots.
pub const GCROOTS_AUTO: &str = "/nix/var/nix/gcroots/auto";
/// The system profile (`nix-env -p`).
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";
/// The link NixOS's activation points at the running system.
pub const CURRENT_SYSTEM: &str = "/run/current-system";
/// The marker nixos-rebuild looks for.
pub const NIXOS_MARKER: &str = "/etc/NIXOS";
/// The kernel command line (`nixlive.ssh_key=`, `init=`).
pub const CMDLINE: &str = "/proc/cmdline";
/// SSH keys the builder put in the initrd as `/etc/nixlive/authorized_keys`;
/// init copies that file here before switching root (the initrd's contents
/// are deleted then).
pub const INITRD_KEYS: &str = nixlive_formats::handoff::RUN_KEYS;
/// SSH keys on the boot medium (mounted at `/iso`).
pub const MEDIUM_KEYS: &str = "/iso/nixlive/authorized_keys";
/// Optional configuration (users for the keys, root password hash).
pub const CONFIG: &str = "/etc/nixlive/postboot.conf";

/// `logical` (absolute, inside the booted system) under `root`.
pub fn under(root: &Path, logical: &str) -> PathBuf {
    root.join(logical.trim_start_matches('/'))
}

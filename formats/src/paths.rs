//! Paths the parts of nixlive agree on, absolute. Unless a line says
//! otherwise, a path is as the booted system (stage 2) sees it; stage 1
//! builds that system under [`NEW_ROOT`] and reaches the same place as
//! [`in_new_root`]`(path)`.

/// Where init builds the new root before switching to it (stage 1 only).
pub const NEW_ROOT: &str = "/mnt-root";

/// The Nix store, and the directory every store path must be in.
pub const STORE_DIR: &str = "/nix/store";
/// The registration's file name at the root of the store image.
pub const REGISTRATION_NAME: &str = "nix-path-registration";
/// The registration `nix-store --load-db` reads, once the image is mounted.
pub const REGISTRATION: &str = "/nix/store/nix-path-registration";
/// The system tarball's registration, at the top of a persistent root (as
/// NixOS's system tarball and SD images have it): loaded on the first
/// boot, then removed.
pub const TOP_REGISTRATION: &str = "/nix-path-registration";
/// The read-only store images: one image here, several at `RO_STORE/N`
/// ([`image_mount`]), as NixOS's stage 1 leaves them.
pub const RO_STORE: &str = "/nix/.ro-store";
/// The tmpfs holding the overlay's upper and work directories.
pub const RW_STORE: &str = "/nix/.rw-store";
/// The tmpfs the images are copied into with `copytoram`.
pub const RAM_IMAGES: &str = "/nix/.images";
/// The boot medium, read-only (NixOS's place for it).
pub const MEDIUM: &str = "/iso";

/// Nix's database directory, the database and its schema version file.
pub const NIX_DB_DIR: &str = "/nix/var/nix/db";
pub const NIX_DB: &str = "/nix/var/nix/db/db.sqlite";
pub const NIX_DB_SCHEMA: &str = "/nix/var/nix/db/schema";
/// Indirect garbage-collector roots.
pub const GCROOTS_AUTO: &str = "/nix/var/nix/gcroots/auto";
/// The system profile (`nix-env -p`).
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";
/// The link NixOS's activation points at the running system.
pub const CURRENT_SYSTEM: &str = "/run/current-system";
/// The marker nixos-rebuild looks for.
pub const NIXOS_MARKER: &str = "/etc/NIXOS";
/// The kernel command line.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// The stage-1 timeline init writes ([`crate::timeline`]).
pub const STAGE1_TIMELINE: &str = "/run/nixlive/stage1.json";
/// SSH keys the builder packs into the initrd (a path in the initrd).
pub const INITRD_KEYS: &str = "/etc/nixlive/authorized_keys";
/// Where init leaves them for postboot: `/run` survives the switch of
/// root, the initrd's own files do not.
pub const RUN_KEYS: &str = "/run/nixlive/authorized_keys";
/// SSH keys on the boot medium (the builder's `--medium-authorized-keys`).
pub const MEDIUM_KEYS: &str = "/iso/nixlive/authorized_keys";
/// Their name relative to the medium's root, as the manifest lists them.
pub const MEDIUM_KEYS_NAME: &str = "nixlive/authorized_keys";
/// The most init reads of them.
pub const MEDIUM_KEYS_MAX: u64 = 64 << 10;
/// Where init leaves the medium's keys it accepted, for postboot (beside
/// [`RUN_KEYS`], the initrd's); the first line, a comment, says where
/// they came from and whether the medium was authenticated.
pub const RUN_MEDIUM_KEYS: &str = "/run/nixlive/medium_authorized_keys";
/// How that comment line starts.
pub const RUN_MEDIUM_KEYS_ORIGIN: &str = "# nixlive-init: ";
/// Postboot's optional configuration.
pub const POSTBOOT_CONFIG: &str = "/etc/nixlive/postboot.conf";

/// `path` (absolute, as stage 2 sees it) as stage 1 reaches it:
/// `/iso` becomes `/mnt-root/iso`.
pub fn in_new_root(path: &str) -> String {
    format!("{NEW_ROOT}{path}")
}

/// Where image `index` of `count` is mounted: [`RO_STORE`] when it is the
/// only one, else `RO_STORE/index`.
pub fn image_mount(index: usize, count: usize) -> String {
    if count == 1 {
        RO_STORE.to_string()
    } else {
        format!("{RO_STORE}/{index}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn spelled_consistently() {
        assert_eq!(REGISTRATION, format!("{STORE_DIR}/{REGISTRATION_NAME}"));
        assert_eq!(NIX_DB, format!("{NIX_DB_DIR}/db.sqlite"));
        assert_eq!(NIX_DB_SCHEMA, format!("{NIX_DB_DIR}/schema"));
        assert!(MEDIUM_KEYS.starts_with(&format!("{MEDIUM}/")));
        assert_eq!(MEDIUM_KEYS, format!("{MEDIUM}/{MEDIUM_KEYS_NAME}"));
        assert_eq!(
            Path::new(RUN_MEDIUM_KEYS).parent(),
            Path::new(RUN_KEYS).parent()
        );
        for p in [RO_STORE, RW_STORE, RAM_IMAGES, STORE_DIR] {
            assert!(p.starts_with("/nix/"), "{p}");
        }
    }

    #[test]
    fn derived() {
        assert_eq!(in_new_root(MEDIUM), "/mnt-root/iso");
        assert_eq!(in_new_root(RO_STORE), "/mnt-root/nix/.ro-store");
        assert_eq!(image_mount(0, 1), "/nix/.ro-store");
        assert_eq!(image_mount(0, 2), "/nix/.ro-store/0");
        assert_eq!(image_mount(1, 2), "/nix/.ro-store/1");
    }
}

//! The formats that nixlive's builder writes and its init and post-boot agent
//! read: the kernel command line, the medium manifest, the initrd
//! configuration, the stage-1 timeline, the Nix path registration and Nix's
//! base 32.
//!
//! Purpose: one piece of code per format, pure functions over strings and
//! bytes, so that every parser is unit-tested and fuzzed without root.
//!
//! Non-goals: no I/O, no syscalls, no allocation-heavy dependencies (this
//! crate is linked into the static PID 1).

pub mod cmdline;
pub mod initrd_conf;
pub mod kmod;
pub mod lines;
pub mod manifest;
pub mod nix32;
pub mod registration;
pub mod superblock;
pub mod timeline;
pub mod unpack;

pub use cmdline::{Cmdline, RootSpec, SizeSpec, Timeout};
pub use initrd_conf::InitrdConf;
pub use manifest::{ImageEntry, ImageFs, Manifest};
pub use registration::Registration;
pub use timeline::{Phase, Timeline};

/// Files the programs hand each other during the boot.
pub mod handoff {
    /// SSH keys the builder packs into the initrd.
    pub const INITRD_KEYS: &str = "/etc/nixlive/authorized_keys";
    /// Where init leaves them for postboot: `/run` survives the switch of
    /// root, the initrd's own files do not.
    pub const RUN_KEYS: &str = "/run/nixlive/authorized_keys";
}

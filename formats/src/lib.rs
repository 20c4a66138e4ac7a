//! The formats that nixlive's builder writes and its init and post-boot agent
//! read, and the encodings they share:
//!
//! - [`cmdline`]: the kernel command line;
//! - [`manifest`]: the medium manifest, with [`nixkey`] (Nix binary-cache
//!   keys and signatures) and [`verity`] (dm-verity hash trees); [`initrd_conf`]: the initrd's configuration;
//! - [`registration`]: the Nix path registration (`nix-store --load-db`);
//! - [`timeline`]: the stage-1 timeline (`/run/nixlive/stage1.json`);
//! - [`report`]: the guest report the demo's stage 2 prints and the VM tests read;
//! - [`kmod`]: `modules.dep`, `modules.alias`; [`superblock`]: filesystem probes;
//!   [`unpack`]: xz/zstd/gzip decoders for modules and firmware;
//! - [`net`]: `ip=`, URLs, HTTP response heads, DHCPv4, DNS (booting over HTTP);
//! - [`elf`]: a program's machine and interpreter; [`kimage`]: a kernel image's
//!   machine and release; [`cpio`]: reading initramfs archives;
//! - [`paths`]: the paths the programs agree on (`/nix/store/nix-path-registration`, `/mnt-root`, ...);
//! - encodings: [`hex`], [`base64`], [`nix32`] (Nix's base 32), [`digest`]
//!   (SHA-256 as lowercase hex, of bytes or of any reader), [`size`]
//!   (`1.5 KiB`); [`lines`] (the shared line format); [`error`] (printing an
//!   error with its causes, each once).
//!
//! Purpose: one piece of code per format, pure functions over strings and
//! bytes, so that every parser is unit-tested and fuzzed without root.
//!
//! Non-goals: no I/O, no syscalls, no allocation-heavy dependencies (this
//! crate is linked into the static PID 1).

pub mod base64;
pub mod cmdline;
pub mod cpio;
pub mod digest;
pub mod elf;
pub mod error;
pub mod hex;
pub mod initrd_conf;
pub mod kimage;
pub mod kmod;
pub mod lines;
pub mod manifest;
pub mod net;
pub mod nix32;
pub mod nixkey;
pub mod paths;
pub mod registration;
pub mod report;
pub mod size;
pub mod squashfs;
pub mod superblock;
pub mod timeline;
pub mod uevent;
pub mod unpack;
pub mod verity;

pub use cmdline::{Cmdline, RootSpec, Secret, SizeSpec, Timeout};
pub use initrd_conf::{InitrdConf, RootMode};
pub use manifest::{FileEntry, ImageEntry, ImageFs, Manifest};
pub use registration::Registration;
pub use timeline::{Phase, Timeline};

/// Files the programs hand each other during the boot (defined in [`paths`]).
pub mod handoff {
    pub use crate::paths::{INITRD_KEYS, RUN_KEYS};
}

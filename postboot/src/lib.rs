//! `nixlive-postboot`: the post-boot agent that runs once, early in the
//! booted (stage-2) system, and makes it as usable as one booted from a
//! stock NixOS ISO:
//!
//! 1. registers the store's paths in Nix's database
//!    ([`load`]: natively with [`db`], or through `nix-store --load-db`);
//! 2. touches `/etc/NIXOS` ([`nixos`]);
//! 3. points the system profile at the system, as `nix-env -p
//!    /nix/var/nix/profiles/system --set` does ([`profile`]);
//! 4. installs SSH authorized keys for root and configured users
//!    ([`keys`], [`ssh`]) and keeps root without a usable password unless a
//!    hash is configured ([`users`], [`config`]);
//! 5. with `nixlive.grow_root` or `--grow-root`, grows the root partition
//!    and its ext4 to the end of the disk ([`grow`]).
//!
//! Every path is taken relative to a root directory ([`paths`]), so the
//! whole run works unprivileged on a temporary directory. Idempotent: a
//! second run changes nothing and says so.
//!
//! Non-goals: starting services, creating users, anything after boot.

pub mod btree;
pub mod config;
pub mod crypt;
#[cfg(feature = "native-loader")]
pub mod db;
pub mod grow;
pub mod keys;
pub mod load;
pub mod nixos;
pub mod paths;
pub mod profile;
pub mod run;
pub mod ssh;
pub mod sys;
pub mod users;

pub use run::{Options, Summary, run};

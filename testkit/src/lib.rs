//! Test-only helpers shared by nixlive's host tests (a dev-dependency of
//! `nixlive-builder` and `nixlive-postboot`; never published, never shipped).
//!
//! Purpose: whatever the tests run on the host gets its configuration from
//! the project, not from the machine. Today that is Debian's Nix
//! ([`nix::Nix`]): every Nix call of the tests goes through it.
//!
//! Non-goals: it installs nothing (`scripts/install-deps.sh` does, and a
//! missing program is a loud test failure, never a skip), it does not run
//! the VM tests' tools, and it holds no assertions about nixlive itself.

pub mod nix;

//! Reading a finished medium back: an ISO, a medium tree, a netboot set or
//! an initrd alone. What it holds (kernel, init, modules, boot entries,
//! manifest, images, registration) goes into a [`Report`], and the same
//! rules the builder runs before a build ([`crate::check::rules`]) say
//! whether it can boot.
//!
//! - [`report`]: what is reported;
//! - [`readers`]: the boot loaders' entries read back;
//! - `gather`: what a path is, read into the same parts for every kind;
//! - `analyze`: the parts judged.
//!
//! A new kind of medium (a system tarball) is a variant of [`MediumKind`]
//! and a function in `gather` that fills the parts from it; the analysis
//! after that is shared.
//!
//! Non-goals: no booting, no repair.

mod analyze;
mod gather;
pub mod initrd;
pub mod readers;
pub mod report;
pub mod squash;

pub use report::*;

use anyhow::Result;
use std::path::Path;

/// Inspects `path`; `verify` checks each image's SHA-256.
pub fn inspect(path: &Path, verify: bool) -> Result<Report> {
    // The extracted ISO (if any) lives until the analysis is done.
    let (parts, _extracted) = gather::gather(path)?;
    analyze::analyze(&path.display().to_string(), parts, verify)
}

//! What `nixlive inspect` reports: the parts of a medium it found and the
//! problems that keep it from booting.

use super::initrd::Segment;
use crate::check::rules::Problem;

/// What was inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediumKind {
    Iso,
    Tree,
    Netboot,
    Initrd,
}

impl MediumKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediumKind::Iso => "iso",
            MediumKind::Tree => "medium tree",
            MediumKind::Netboot => "netboot set",
            MediumKind::Initrd => "initrd",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KernelReport {
    pub path: String,
    pub kind: Option<String>,
    pub arch: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProgramReport {
    pub path: String,
    pub arch: Option<String>,
    pub linkage: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InitrdReport {
    pub path: String,
    pub size: usize,
    pub segments: Vec<Segment>,
    pub init: Option<ProgramReport>,
    pub shell: Option<ProgramReport>,
    /// The release of the module tree it carries.
    pub modules_for: Option<String>,
    /// Module names packed.
    pub modules: Vec<String>,
    /// Modules this medium needs (loop, squashfs, ...).
    pub needed: Vec<String>,
    /// Of those, neither packed nor built in.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BootEntry {
    /// The file it is in (`isolinux/isolinux.cfg`).
    pub source: String,
    pub cmdline: String,
}

#[derive(Debug, Clone)]
pub struct ImageReport {
    pub name: String,
    pub fs: String,
    pub size: u64,
    pub sha256: String,
    /// The image's size as found; `None` when it is missing.
    pub found_size: Option<u64>,
    /// The digest check: `None` when not asked (`--verify`) or impossible.
    pub digest_ok: Option<bool>,
    /// Its compression (squashfs superblock), when readable.
    pub compression: Option<&'static str>,
    /// Its dm-verity tree: root hash and where the tree starts.
    pub verity: Option<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct ManifestReport {
    pub path: String,
    pub init: String,
    pub registration: String,
    pub images: Vec<ImageReport>,
    /// The names of the keys its `sig` lines name.
    pub signers: Vec<String>,
    /// Checked against the initrd's trusted keys: the key that signed it,
    /// or why none did; `None` when the initrd trusts no key.
    pub signature: Option<Result<String, String>>,
}

#[derive(Debug, Clone)]
pub struct RegistrationReport {
    pub path: String,
    pub image: String,
    /// How many paths it registers (`None` when it cannot be read).
    pub paths: Option<usize>,
    pub closed: bool,
}

/// Everything `nixlive inspect` found.
#[derive(Debug, Clone)]
pub struct Report {
    pub path: String,
    pub kind: MediumKind,
    pub label: Option<String>,
    pub kernel: Option<KernelReport>,
    pub initrd: Option<InitrdReport>,
    pub entries: Vec<BootEntry>,
    pub manifest: Option<ManifestReport>,
    pub registration: Option<RegistrationReport>,
    pub problems: Vec<Problem>,
}

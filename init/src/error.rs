//! Init's error type: every variant names the thing it is about.

use std::io;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BootError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "no root= on the kernel command line: add root=LABEL=<volume id> (or UUID=, PARTLABEL=, /dev/...)"
    )]
    NoRoot,
    #[error(
        "timed out after {secs} s waiting for the boot medium {wanted}\n\
         block devices seen:\n{seen}\n\
         To fix: {check}; if the medium is not listed, add its driver with nixlive.modules=...; \
         or wait longer with nixlive.timeout=SECONDS (0 = forever)"
    )]
    MediumNotFound {
        wanted: String,
        secs: u64,
        seen: String,
        /// What to check, for this kind of `root=`.
        check: String,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: String,
        #[source]
        source: nixlive_formats::lines::LineError,
    },
    #[error("{medium} has neither {manifest} nor the stock image {stock}")]
    NoManifest {
        medium: String,
        manifest: String,
        stock: String,
    },
    #[error(
        "{path}: sha256 is {got}, but the manifest says {want}: the medium is damaged or was changed"
    )]
    Digest {
        path: String,
        want: String,
        got: String,
    },
    #[error("{0}")]
    ModuleFailed(Box<ModuleFailure>),
    #[error(
        "the kernel cannot provide {what}, needed for {needed_for}, and the initrd has no module \
         for it (looked for: {modules}): add it to the builder's --module or to nixlive.modules="
    )]
    NoModule {
        what: String,
        needed_for: String,
        modules: String,
    },
    #[error(
        "stage-2 init {0} does not exist in the new root (set init= or fix the manifest's init line)"
    )]
    NoStage2(String),
}

/// A module the boot needs that did not load.
#[derive(Debug, Error)]
#[error(
    "the kernel cannot provide {what}, needed for {needed_for}: module {module} ({path}) \
     did not load: {error}{hint}"
)]
pub struct ModuleFailure {
    pub what: String,
    pub needed_for: String,
    pub module: String,
    pub path: String,
    pub error: String,
    pub hint: String,
}

impl BootError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> BootError {
        let what = what.into();
        move |source| BootError::Io { what, source }
    }
}

impl From<rustix::io::Errno> for Box<BootError> {
    fn from(e: rustix::io::Errno) -> Self {
        Box::new(BootError::Io {
            what: "system call".into(),
            source: e.into(),
        })
    }
}

/// The error and its sources, one per line, for the console.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(&format!(": {src}"));
        cur = src.source();
    }
    s
}

//! Init's error type: every variant names the thing it is about (the
//! syscall and its path, the step, the device, the module), and keeps the
//! cause as its `source`, printed once by [`nixlive_formats::error::chain`].

use std::io;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BootError {
    /// A syscall (or a std call that is one) on a path.
    #[error("{call} {path}")]
    Sys {
        call: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// A step of the plan, as its shell equivalent, with what to try.
    #[error("{step}{hint}")]
    Step {
        step: String,
        hint: &'static str,
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
    #[error("{path}")]
    Manifest {
        path: String,
        #[source]
        source: nixlive_formats::lines::LineError,
    },
    #[error(
        "root={path}: {why}\nthe initramfs holds: {top}\n\
         To fix: load the medium's file into the initramfs under that name (iPXE: \
         `initrd URL {path}`), or name a device with root=LABEL=..."
    )]
    RootFile {
        path: String,
        why: String,
        top: String,
    },
    #[error("{path} is larger than {limit} bytes: not a manifest nixlive wrote")]
    TooLarge { path: String, limit: u64 },
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
    #[error(
        "nixlive.check: {image} is damaged: the block at byte {offset} (block {block} of \
         {block_size} bytes{inside}) cannot be read intact (dm-verity: it does not match the \
         manifest's hash tree, or the medium failed to read it); the medium is damaged or was \
         changed: write the image to a good medium again; the read"
    )]
    BadBlock {
        image: String,
        /// `, in the file PATH of the image` when it could be found, else empty.
        inside: String,
        offset: u64,
        block: u64,
        block_size: u32,
        source: io::Error,
    },
    #[error(
        "{path} is {got} bytes, but the manifest says {want}: the medium is damaged, truncated or was changed"
    )]
    Size { path: String, want: u64, got: u64 },
    #[error(
        "the medium {medium} is not authentic: its manifest {manifest}: {why}\n\
         To fix: boot a medium built with --sign-key for a key the initrd trusts \
         (the initrd was built with --trusted-key)"
    )]
    Untrusted {
        medium: String,
        manifest: String,
        why: String,
    },
    /// A failure on a medium whose manifest a trusted key signed.
    #[error("the medium {medium} (its manifest signed by the trusted key {key})")]
    Signed {
        medium: String,
        key: String,
        #[source]
        source: Box<BootError>,
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
    /// Booting over HTTP: the network, a name, a server, a transfer.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(
        "stage-2 init {0} does not exist in the new root (set init= or fix the manifest's init line)"
    )]
    NoStage2(String),
    #[error(
        "stage-2 init {init} cannot be run: {why} (set init= or fix the manifest's init line); \
         the initramfs was left as it was"
    )]
    Stage2NotRunnable { init: String, why: String },
    /// A helper thread panicked; the main thread stops the boot.
    #[error("the {thread} thread panicked: {msg}")]
    ThreadPanicked { thread: &'static str, msg: String },
    #[error(
        "the root filesystem {root} cannot be booted: {why}\n\
         To fix: run `fsck {node}` (e2fsck) from another system, or boot with \
         boot.shell_on_fail and run it from the initrd's shell, then boot again"
    )]
    NeedsRecovery {
        node: String,
        /// The device as the list of devices seen shows it.
        root: String,
        why: &'static str,
    },
    #[error(
        "stage-2 init {init} does not exist on the root filesystem {root}\n\
         To fix: check that the system tarball was unpacked onto it, or set init= to the \
         system's init (the tarball's /boot/cmdline has it)"
    )]
    PlainNoStage2 { init: String, root: String },
    #[error(
        "nixlive.root=plain: {what} cannot be the root filesystem; name its device with \
         root=LABEL= (or UUID=, PARTLABEL=, /dev/...)"
    )]
    PlainNotADevice { what: String },
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
    /// `map_err(BootError::sys("mkdir", path))`.
    pub fn sys(call: &'static str, path: impl Into<String>) -> impl FnOnce(io::Error) -> BootError {
        let path = path.into();
        move |source| BootError::Sys { call, path, source }
    }
}

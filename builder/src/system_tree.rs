//! The system tarball's tree, what `tarball` packs and `disk-image` puts
//! on a filesystem (NixOS's `system-tarball.nix`, and what its SD images
//! hold): the closure under `nix/store`, its registration at
//! `nix-path-registration` (postboot loads it on the first boot, then
//! removes it), `boot/{kernel,initrd,cmdline}` with an initrd set up for a
//! plain root, an `init` link to the system's init, `nix/var/nix/profiles`
//! for postboot, and the empty directories stage 2 mounts on.
//!
//! The tree is a sorted list of [`Entry`]s whose files are read from where
//! they are (the store) or held in memory (the generated ones); [`stage`]
//! writes it into a directory, `tarball` streams it into a tar.
//!
//! Non-goals: no `/etc` contents (the system's activation makes them), no
//! boot loader (the tarball's `boot/` is for whatever loads the kernel).

use crate::check::{self, config::MediumNeeds};
use crate::closure::{Closure, InputArgs};
use crate::files::read;
use crate::initrd::{self, InitrdArgs, modules};
use crate::{cmdline, overlap};
use anyhow::{Context, Result, bail, ensure};
use nixlive_formats::RootMode;
use nixlive_formats::registration::{self, HashFormat};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a system tree is made of (`tarball` and `disk-image`).
#[derive(Debug, Clone, clap::Args)]
pub struct SystemArgs {
    /// Kernel image (bzImage), put at boot/kernel.
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    #[command(flatten)]
    pub initrd: InitrdArgs,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// The root filesystem's label: boot/cmdline says root=LABEL=<this>
    /// (at most 16 bytes of A-Z a-z 0-9 _ - .).
    #[arg(long, default_value = "NIXOS_SD")]
    pub label: String,
    /// Extra kernel parameters, appended in boot/cmdline.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub append: String,
    /// Also write the initrd here (to boot the kernel directly).
    #[arg(long, value_name = "FILE")]
    pub initrd_out: Option<PathBuf>,
    /// Write `nix-support/hydra-build-products` under this directory.
    #[arg(long, value_name = "DIR")]
    pub hydra_dir: Option<PathBuf>,
    /// Write the list of outputs as JSON here.
    #[arg(long, value_name = "FILE")]
    pub outputs_json: Option<PathBuf>,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A file of the build host (a store file), `len` bytes when listed.
    Host {
        path: PathBuf,
        len: u64,
    },
    Bytes(Vec<u8>),
}

impl Data {
    pub fn len(&self) -> u64 {
        match self {
            Data::Host { len, .. } => *len,
            Data::Bytes(b) => b.len() as u64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Data),
    Symlink(String),
}

/// One entry of the tree: its path relative to the root, its permission
/// bits, its mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub mtime: u64,
    pub node: Node,
}

/// The mtime of everything in the store, as Nix leaves it.
pub const STORE_MTIME: u64 = 1;

/// The tree, sorted by path bytes, and its initrd (also in `boot/`).
pub struct SystemTree {
    pub entries: Vec<Entry>,
    pub initrd: Vec<u8>,
}

/// Checks an ext4 label that also has to survive `root=LABEL=...`.
pub fn check_label(label: &str) -> Result<()> {
    ensure!(
        !label.is_empty() && label.len() <= 16,
        "--label `{label}` must be 1 to 16 bytes (an ext4 label)"
    );
    ensure!(
        label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')),
        "--label `{label}` may only hold A-Z a-z 0-9 `_` `-` `.`"
    );
    Ok(())
}

/// Why `--trusted-key` means nothing on a plain root.
pub const PLAIN_ROOT_KEYS: &str = "a plain root is a writable filesystem that init mounts as it is: \
     it holds nothing signed to check, so a key could prove nothing about it (init would boot \
     whatever filesystem carries the label) and is refused rather than packed; for an \
     authenticated boot build a signed medium with `nixlive iso`, `medium` or `netboot` \
     and --sign-key";

/// Refuses what a plain root cannot honour, and outputs that would write
/// over an input; run first, before anything is read or written.
pub fn check_args(a: &SystemArgs, out: &Path) -> Result<()> {
    ensure!(
        a.initrd.trusted_keys.is_empty(),
        "--trusted-key cannot be used with a plain root (tarball, disk-image): {PLAIN_ROOT_KEYS}"
    );
    check_label(&a.label)?;
    let mut inputs = vec![("--kernel", a.kernel.clone())];
    inputs.extend(overlap::initrd_inputs(&a.initrd));
    inputs.extend(overlap::closure_inputs(&a.inputs));
    let mut outputs = vec![("--out", out.to_path_buf())];
    overlap::push_opt(&mut outputs, "--initrd-out", &a.initrd_out);
    overlap::push_opt(&mut outputs, "--hydra-dir", &a.hydra_dir);
    overlap::push_opt(&mut outputs, "--outputs-json", &a.outputs_json);
    overlap::refuse(&inputs, &outputs)
}

/// The initrd arguments for a plain root on `root_fs` (`ext4` for
/// `disk-image`; `None`: the tarball, whose filesystem is the user's): its
/// module is added unless the kernel has it built in.
fn plain_root_initrd(a: &SystemArgs, root_fs: Option<&'static str>) -> Result<InitrdArgs> {
    let mut args = a.initrd.clone();
    args.root = RootMode::Plain;
    if let Some(fs) = root_fs {
        let plan = modules::plan(&args.modules_dir, &[], &[])?;
        let named = args
            .modules
            .iter()
            .any(|m| nixlive_formats::kmod::module_name(m) == fs);
        if !named && !plan.builtin.iter().any(|b| b == fs) {
            args.modules.push(fs.to_string());
        }
    }
    Ok(args)
}

/// Checks what `iso`, `medium` and `netboot` check (the kernel, the
/// initrd's programs and modules, the kernel's configuration against a
/// plain root on `root_fs`, the stage-2 init), loads the closure, builds
/// the plain-root initrd and lists the tree. Call [`check_args`] first.
pub fn build(a: &SystemArgs, epoch: u64, root_fs: Option<&'static str>) -> Result<SystemTree> {
    check_label(&a.label)?;
    let cmdline =
        cmdline::medium_params(&a.label, &a.inputs.system, &a.append).context("--append")?;
    ensure!(
        a.kernel.is_file(),
        "--kernel {} is not a file",
        a.kernel.display()
    );
    let initrd_args = plain_root_initrd(a, root_fs)?;
    let needs = MediumNeeds {
        initrd_compression: check::compression_name(initrd_args.compression),
        images: None,
        medium_fs: root_fs,
    };
    let machine = check::before_build(Some(&a.kernel), &initrd_args, &needs)?;
    let closure = a.inputs.load()?;
    check::stage2(&closure, machine)?;
    let initrd = initrd::build(&initrd_args, epoch, false)?;
    let kernel = read(&a.kernel, "--kernel")?;
    let entries = entries(&closure, kernel, initrd.clone(), &cmdline, epoch)?;
    Ok(SystemTree { entries, initrd })
}

/// Every entry of the tree, sorted by path bytes.
pub fn entries(
    closure: &Closure,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
    cmdline: &str,
    epoch: u64,
) -> Result<Vec<Entry>> {
    let dir = |path: &str, mode: u32| Entry {
        path: path.into(),
        mode,
        mtime: epoch,
        node: Node::Dir,
    };
    let file = |path: &str, mode: u32, data: Vec<u8>| Entry {
        path: path.into(),
        mode,
        mtime: epoch,
        node: Node::File(Data::Bytes(data)),
    };
    let reg = registration::render(&closure.infos, HashFormat::ClosureInfo);
    let mut out = vec![
        dir("boot", 0o755),
        file("boot/kernel", 0o444, kernel),
        file("boot/initrd", 0o444, initrd),
        file("boot/cmdline", 0o444, format!("{cmdline}\n").into_bytes()),
        dir("dev", 0o755),
        dir("etc", 0o755),
        Entry {
            path: "init".into(),
            mode: 0o777,
            mtime: epoch,
            node: Node::Symlink(format!("{}/init", closure.system)),
        },
        dir("nix", 0o755),
        file("nix-path-registration", 0o644, reg.into_bytes()),
        Entry {
            mtime: STORE_MTIME,
            ..dir("nix/store", 0o1775)
        },
        dir("nix/var", 0o755),
        dir("nix/var/nix", 0o755),
        dir("nix/var/nix/profiles", 0o755),
        dir("proc", 0o555),
        dir("root", 0o700),
        dir("run", 0o755),
        dir("sys", 0o555),
        dir("tmp", 0o1777),
    ];
    for info in &closure.infos {
        let name = info.base_name();
        store_entries(
            &closure.store_dir.join(name),
            &format!("nix/store/{name}"),
            &mut out,
        )?;
    }
    out.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(out)
}

/// A store path's entries, as they are under the store root (modes kept).
fn store_entries(src: &Path, path: &str, out: &mut Vec<Entry>) -> Result<()> {
    let meta = fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
    let ft = meta.file_type();
    let mode = meta.permissions().mode() & 0o7777;
    let node = if ft.is_symlink() {
        let t = fs::read_link(src).with_context(|| format!("reading {}", src.display()))?;
        let t = t
            .to_str()
            .with_context(|| format!("{}: link target is not UTF-8", src.display()))?;
        Node::Symlink(t.to_string())
    } else if ft.is_file() {
        Node::File(Data::Host {
            path: src.to_path_buf(),
            len: meta.len(),
        })
    } else if ft.is_dir() {
        let mut kids: Vec<_> = fs::read_dir(src)
            .with_context(|| format!("listing {}", src.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing {}", src.display()))?;
        kids.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for k in kids {
            let name = k
                .to_str()
                .with_context(|| format!("{}: a name that is not UTF-8", src.display()))?;
            store_entries(&src.join(&k), &format!("{path}/{name}"), out)?;
        }
        Node::Dir
    } else {
        bail!(
            "{}: not a file, directory or symlink; a store cannot hold it",
            src.display()
        );
    };
    let mode = if ft.is_symlink() { 0o777 } else { mode };
    out.push(Entry {
        path: path.to_string(),
        mode,
        mtime: STORE_MTIME,
        node,
    });
    Ok(())
}

/// Writes the tree into `dir` (empty or absent), modes and mtimes as
/// listed; directories get theirs last, so read-only ones can be filled.
pub fn stage(entries: &[Entry], dir: &Path) -> Result<()> {
    use std::time::{Duration, UNIX_EPOCH};
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for e in entries {
        let p = dir.join(&e.path);
        let r = match &e.node {
            Node::Dir => fs::create_dir(&p),
            Node::File(Data::Host { path, .. }) => fs::copy(path, &p).map(drop),
            Node::File(Data::Bytes(b)) => fs::write(&p, b),
            Node::Symlink(t) => std::os::unix::fs::symlink(t, &p),
        };
        r.with_context(|| format!("writing {}", p.display()))?;
        if !matches!(e.node, Node::Dir | Node::Symlink(_)) {
            set_mode_and_time(&p, e.mode, UNIX_EPOCH + Duration::from_secs(e.mtime))?;
        }
    }
    for e in entries.iter().rev() {
        if e.node == Node::Dir {
            let p = dir.join(&e.path);
            set_mode_and_time(&p, e.mode, UNIX_EPOCH + Duration::from_secs(e.mtime))?;
        }
    }
    Ok(())
}

fn set_mode_and_time(p: &Path, mode: u32, t: std::time::SystemTime) -> Result<()> {
    let f = fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    f.set_modified(t)
        .with_context(|| format!("setting the mtime of {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", p.display()))
}

/// Removes a staged tree, read-only directories included.
pub fn remove_staged(dir: &Path) {
    fn writable(p: &Path) {
        if let Ok(m) = fs::symlink_metadata(p)
            && m.is_dir()
        {
            // not fatal: what cannot be made writable stays behind.
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    writable(&e.path());
                }
            }
        }
    }
    writable(dir);
    // not fatal: a leftover scratch directory costs only space.
    let _ = fs::remove_dir_all(dir);
}

/// Writes the tree as a tar stream into `w`.
pub fn write_tar(entries: &[Entry], w: impl std::io::Write) -> Result<()> {
    use crate::tar::{EntryKind, Writer};
    use std::io::Read;
    let mut t = Writer::new(w);
    let mut buf = vec![0u8; 1 << 16];
    for e in entries {
        match &e.node {
            Node::Dir => t.entry(&e.path, e.mode, e.mtime, EntryKind::Dir)?,
            Node::Symlink(target) => {
                t.entry(&e.path, e.mode, e.mtime, EntryKind::Symlink(target))?
            }
            Node::File(d) => {
                t.entry(&e.path, e.mode, e.mtime, EntryKind::File(d.len()))?;
                match d {
                    Data::Bytes(b) => t.data(b)?,
                    Data::Host { path, .. } => {
                        let mut f = fs::File::open(path)
                            .with_context(|| format!("opening {}", path.display()))?;
                        loop {
                            let n = f
                                .read(&mut buf)
                                .with_context(|| format!("reading {}", path.display()))?;
                            if n == 0 {
                                break;
                            }
                            t.data(&buf[..n])
                                .with_context(|| format!("packing {}", path.display()))?;
                        }
                    }
                }
            }
        }
    }
    t.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system_args(modules_dir: &Path, extra: &[&str]) -> SystemArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: SystemArgs,
        }
        let mut argv = vec![
            "t",
            "--kernel",
            "k",
            "--init",
            "i",
            "--system",
            "/nix/store/x",
        ];
        argv.extend(extra);
        let mut argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
        argv.push("--modules-dir".into());
        argv.push(modules_dir.into());
        T::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn the_root_filesystem_module_is_packed_unless_built_in() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("6.1.0-test");
        fs::create_dir(&m).unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\n",
        )
        .unwrap();
        let a = system_args(&m, &["--module-set", "base,virtio"]);
        let i = plain_root_initrd(&a, Some("ext4")).unwrap();
        assert_eq!(i.modules, ["ext4"]);
        assert_eq!(i.root, RootMode::Plain);
        assert!(plain_root_initrd(&a, None).unwrap().modules.is_empty());
        let a = system_args(&m, &["--module", "ext4"]);
        assert_eq!(
            plain_root_initrd(&a, Some("ext4")).unwrap().modules,
            ["ext4"]
        );
        fs::write(m.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        let a = system_args(&m, &[]);
        assert!(
            plain_root_initrd(&a, Some("ext4"))
                .unwrap()
                .modules
                .is_empty()
        );
    }

    #[test]
    fn labels() {
        assert!(check_label("NIXOS_SD").is_ok());
        assert!(check_label(&"A".repeat(16)).is_ok());
        assert!(check_label(&"A".repeat(17)).is_err());
        assert!(check_label("").is_err());
        assert!(check_label("a b").is_err());
    }
}

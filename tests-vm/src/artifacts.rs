//! Where the built programs and the test kernels are, and building the demo
//! ISO from them with the builder.
//!
//! A missing artifact is a panic that says which file and how to build it:
//! VM tests never skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::arch::Arch;

const HOW: &str = "run `make test` (it builds everything first)";

/// The musl target the guest programs are built for (x86_64 guests).
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-musl";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

pub fn must_exist(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "missing {}: {HOW}", path.display());
    path
}

/// The built programs.
#[derive(Debug, Clone)]
pub struct Programs {
    /// Static `nixlive-init` for the guest.
    pub init: PathBuf,
    /// Static `nixlive-postboot` for the guest.
    pub postboot: PathBuf,
    /// Static `nixlive-demo-init` for the guest.
    pub demo_init: PathBuf,
    /// The host builder CLI, `nixlive`.
    pub builder: PathBuf,
}

/// The host builder CLI; panics when it is not built.
pub fn programs_builder() -> PathBuf {
    must_exist(workspace_root().join("target/release/nixlive"))
}

/// Paths of the built programs; panics naming the first one missing.
pub fn programs() -> Programs {
    let target = workspace_root().join("target");
    let guest = target.join(GUEST_TARGET).join("release");
    Programs {
        init: must_exist(guest.join("nixlive-init")),
        postboot: must_exist(guest.join("nixlive-postboot")),
        demo_init: must_exist(guest.join("nixlive-demo-init")),
        builder: must_exist(target.join("release/nixlive")),
    }
}

/// The static guest programs (init, postboot, demo init); panics naming the
/// first one missing. Unlike [`programs`], does not need the builder.
pub fn guest_programs() -> [PathBuf; 3] {
    let guest = workspace_root()
        .join("target")
        .join(GUEST_TARGET)
        .join("release");
    ["nixlive-init", "nixlive-postboot", "nixlive-demo-init"].map(|n| must_exist(guest.join(n)))
}

/// A Debian kernel unpacked under `.cache/kernels/<name>` (the Debian
/// architecture, or a variant made by the scripts: `amd64-bpo`, `amd64-xz`,
/// `amd64-zst`).
#[derive(Debug, Clone)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub version: String,
    /// `lib/modules/<version>`.
    pub modules_dir: PathBuf,
}

/// The kernel `.cache/kernels/<name>` (`amd64`, `i386`, `arm64`, or a variant).
pub fn kernel(name: &str) -> Kernel {
    let dir = workspace_root().join(".cache/kernels").join(name);
    let version_file = must_exist(dir.join("version"));
    let version = std::fs::read_to_string(&version_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}; {HOW}", version_file.display()))
        .trim()
        .to_string();
    Kernel {
        vmlinuz: must_exist(dir.join("vmlinuz")),
        modules_dir: must_exist(dir.join("lib/modules").join(&version)),
        version,
    }
}

/// What [`build_demo`] produced.
#[derive(Debug, Clone)]
pub struct DemoIso {
    pub iso: PathBuf,
    /// The medium tree the ISO was made from (`boot/initrd`, images, manifest).
    pub medium: PathBuf,
    /// The netboot set (`bzImage`, `initrd`, `netboot.ipxe`, `cmdline`), when asked for.
    pub netboot: Option<PathBuf>,
    /// The store root holding the demo system.
    pub store_root: PathBuf,
    /// `/nix/store/<hash>-nixlive-demo-system`.
    pub system: String,
    pub label: String,
    /// The kernel the media boot.
    pub kernel: PathBuf,
    /// Wall time the builder runs took.
    pub build_time: Duration,
}

impl DemoIso {
    pub fn initrd(&self) -> PathBuf {
        self.medium.join("boot/initrd")
    }
}

/// Runs a command; the error carries the command and its output.
pub fn run_command(mut cmd: Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("starting {shown}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// `nixlive inspect --verify PATH`: every medium the VM tests build must
/// pass the builder's own checks (kernel, init, modules, manifest, images,
/// registration, stage-2 init) before it is booted. Returns the report.
pub fn inspect(path: &Path) -> Result<String, String> {
    let mut cmd = Command::new(programs_builder());
    cmd.arg("inspect").arg("--verify").arg(path);
    run_command(cmd)
        .map_err(|e| format!("the medium {} does not pass inspect:\n{e}", path.display()))
}

/// What to build a demo medium for.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    pub arch: Arch,
    pub label: String,
    /// Kernel modules for the initrd (the builder adds their dependencies).
    pub modules: Vec<String>,
    /// The builder's named module sets (`base`, `cd`, `usb`, ...).
    pub module_sets: Vec<String>,
    /// Extra kernel parameters.
    pub append: String,
    /// Also write the netboot set to `dir/netboot`.
    pub netboot: bool,
    /// More arguments for `nixlive netboot` (`--http`, `--base-url`).
    pub netboot_args: Vec<String>,
    /// An authorized_keys file to pack into the initrd.
    pub authorized_keys: Option<PathBuf>,
    /// The kernel: a directory under `.cache/kernels` (default: the
    /// architecture's Debian kernel, e.g. `amd64`; `amd64-xz` is the same
    /// kernel with an xz-compressed module tree, `amd64-bpo` the 6.12).
    pub kernel: Option<String>,
    /// More arguments for `nixlive iso` and `nixlive netboot` (for example
    /// `--image-format erofs`).
    pub builder_args: Vec<String>,
}

impl DemoSpec {
    /// The demo of `arch` with its usual modules. The builder's boot entry
    /// already names the PC serial console; others get theirs appended.
    pub fn new(arch: Arch, label: &str) -> DemoSpec {
        let append = match arch {
            Arch::X86_64 | Arch::I686 => String::new(),
            Arch::Aarch64 => format!("console={}", arch.console()),
        };
        DemoSpec {
            arch,
            label: label.to_string(),
            modules: arch.demo_modules().iter().map(|m| m.to_string()).collect(),
            module_sets: Vec::new(),
            append,
            netboot: false,
            netboot_args: Vec::new(),
            authorized_keys: None,
            kernel: None,
            builder_args: Vec::new(),
        }
    }
}

/// Builds the demo system and a bootable ISO labelled `label` in `dir`:
/// `dir/root` (store), `dir/medium`, `dir/demo.iso`. `dir` is created; an
/// earlier build in it is replaced.
pub fn build_demo_iso(dir: &Path, label: &str) -> Result<DemoIso, String> {
    build_demo(dir, &DemoSpec::new(Arch::X86_64, label))
}

/// [`build_demo_iso`] for any architecture, modules and extra parameters.
pub fn build_demo(dir: &Path, spec: &DemoSpec) -> Result<DemoIso, String> {
    build_demo_with(dir, spec, &|_, _| Ok(()))
}

/// [`build_demo`], with `extra(store_root, system)` run on the store root
/// before the media are made (to add store paths of a test's own).
pub fn build_demo_with(
    dir: &Path,
    spec: &DemoSpec,
    extra: &dyn Fn(&Path, &str) -> Result<(), String>,
) -> Result<DemoIso, String> {
    let label = spec.label.as_str();
    let arch = spec.arch;
    let builder = programs_builder();
    let k = kernel(spec.kernel.as_deref().unwrap_or(arch.debian()));
    let started = Instant::now();
    for sub in ["root", "medium", "netboot"] {
        let d = dir.join(sub);
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(|e| format!("removing {}: {e}", d.display()))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let store_root = dir.join("root");
    let medium = dir.join("medium");
    let iso = dir.join("demo.iso");

    let mut cmd = Command::new(&builder);
    cmd.arg("demo-system")
        .arg("--init")
        .arg(arch.guest_program("nixlive-demo-init"))
        .arg("--postboot")
        .arg(arch.guest_program("nixlive-postboot"))
        .arg("--root")
        .arg(&store_root);
    let out = run_command(cmd)?;
    let system = out
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("/nix/store/"))
        .ok_or_else(|| format!("`nixlive demo-system` printed no store path:\n{out}"))?
        .to_string();
    extra(&store_root, &system)?;

    // What the ISO and the netboot set share: kernel, initrd, closure.
    let common = |sub: &str| {
        let mut cmd = Command::new(&builder);
        cmd.arg(sub)
            .arg("--kernel")
            .arg(&k.vmlinuz)
            .arg("--modules-dir")
            .arg(&k.modules_dir);
        for m in &spec.modules {
            cmd.arg("--module").arg(m);
        }
        if !spec.module_sets.is_empty() {
            cmd.arg("--module-set").arg(spec.module_sets.join(","));
        }
        if !spec.append.is_empty() {
            cmd.arg("--append").arg(&spec.append);
        }
        if let Some(keys) = &spec.authorized_keys {
            cmd.arg("--authorized-keys").arg(keys);
        }
        cmd.args(&spec.builder_args);
        cmd.arg("--init")
            .arg(arch.guest_program("nixlive-init"))
            .arg("--store-root")
            .arg(&store_root)
            .arg("--system")
            .arg(&system);
        cmd
    };
    let mut cmd = common("iso");
    cmd.args(arch.efi_builder_args())
        .arg("--label")
        .arg(label)
        .arg("--out")
        .arg(&iso)
        .arg("--medium-dir")
        .arg(&medium);
    run_command(cmd)?;
    if !iso.is_file() {
        return Err(format!(
            "`nixlive iso` succeeded but {} does not exist",
            iso.display()
        ));
    }
    inspect(&iso)?;
    inspect(&medium)?;
    let netboot = if spec.netboot {
        let out = dir.join("netboot");
        let mut cmd = common("netboot");
        cmd.arg("--out").arg(&out).args(&spec.netboot_args);
        run_command(cmd)?;
        inspect(&out)?;
        Some(out)
    } else {
        None
    };
    Ok(DemoIso {
        iso,
        medium,
        netboot,
        store_root,
        system,
        label: label.to_string(),
        kernel: k.vmlinuz,
        build_time: started.elapsed(),
    })
}

/// [`build_demo_iso`] in a fresh temporary directory, removed when the
/// returned guard drops.
pub fn build_demo_iso_in_tempdir(label: &str) -> Result<(tempfile::TempDir, DemoIso), String> {
    let tmp = tempfile::Builder::new()
        .prefix("nixlive-demo-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let iso = build_demo_iso(tmp.path(), label)?;
    Ok((tmp, iso))
}

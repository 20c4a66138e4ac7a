//! Kernels as NixOS ships them (issue 16): module trees compressed with xz
//! or zstd on Debian's 6.1, which cannot decompress a module itself, and
//! bookworm-backports' 6.12, whose modules are `.ko.xz` and which can. The
//! builder packs every module decompressed; init still loads a compressed
//! module it is given (here through an extra cpio), with the kernel's help
//! where it has it and by itself where not; and a module the boot needs
//! that cannot load stops the boot with its name and the reason.
//!
//! The module trees come from `scripts/compress-modules.sh` and
//! `scripts/fetch-kernel.sh amd64-bpo` (`make test` runs them).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{self, DemoIso, DemoSpec, Kernel};
use nixlive_tests_vm::media::{self, Booted};
use nixlive_tests_vm::{QemuCommand, Vm, checks, kvm};

const TIMEOUT: Duration = Duration::from_secs(180);

/// One demo ISO per kernel, built once per test binary.
struct Built {
    kernel: Kernel,
    demo: DemoIso,
}

fn build(name: &str) -> Built {
    let kernel = artifacts::kernel(name);
    let dir = artifacts::workspace_root()
        .join("target/tests-vm/nixos-kernels")
        .join(name);
    let mut spec = DemoSpec::new(Arch::X86_64, &format!("NIXLIVE_{}", name.replace('-', "_")));
    spec.kernel = Some(name.to_string());
    let demo = artifacts::build_demo(&dir, &spec).unwrap_or_else(|e| panic!("{e}"));
    Built { kernel, demo }
}

fn xz_tree() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| build("amd64-xz"))
}

fn zst_tree() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| build("amd64-zst"))
}

fn backports() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| build("amd64-bpo"))
}

/// The files of the initrd's main archive (`zstd -dc | cpio -t`).
fn initrd_files(initrd: &Path) -> Vec<String> {
    let out = media::run({
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg("zstd -dc \"$1\" | cpio -t --quiet")
            .arg("sh")
            .arg(initrd);
        c
    })
    .unwrap_or_else(|e| panic!("{e}"));
    out.lines().map(str::to_string).collect()
}

/// The module file `name` (e.g. `kernel/fs/isofs/isofs.ko.xz`) of a tree,
/// relative to its `lib/modules/VERSION`, found by its module name.
fn module_file(k: &Kernel, name: &str) -> String {
    let dep = std::fs::read_to_string(k.modules_dir.join("modules.dep")).unwrap();
    dep.lines()
        .filter_map(|l| l.split_once(':').map(|(p, _)| p))
        .find(|p| {
            let base = p.rsplit('/').next().unwrap_or(p);
            base.split('.').next() == Some(name)
        })
        .unwrap_or_else(|| panic!("{name} is not in {}", k.modules_dir.display()))
        .to_string()
}

/// A newc cpio holding `files` (path relative to `lib/modules/VERSION` ->
/// contents) under the kernel's module directory.
fn modules_cpio(dir: &Path, k: &Kernel, files: &[(String, Vec<u8>)]) -> PathBuf {
    let stage = dir.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    for (rel, data) in files {
        let p = stage.join("lib/modules").join(&k.version).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    let out = dir.join("extra.cpio");
    media::run({
        let mut c = std::process::Command::new("sh");
        c.current_dir(&stage)
            .arg("-c")
            .arg("find . | LC_ALL=C sort | cpio -o -H newc --quiet > \"$1\"")
            .arg("sh")
            .arg(&out);
        c
    })
    .unwrap_or_else(|e| panic!("{e}"));
    out
}

/// `nixlive initrd` for the demo's kernel with `modules` and `extra` cpios.
fn initrd(dir: &Path, k: &Kernel, modules: &[&str], extra: &[PathBuf]) -> PathBuf {
    let out = dir.join("initrd");
    let args: Vec<&std::ffi::OsStr> = extra
        .iter()
        .flat_map(|e| [std::ffi::OsStr::new("--extra-cpio"), e.as_os_str()])
        .collect();
    media::initrd(k, modules, &args, &out).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// Boots `b`'s CD with its kernel and `initrd` given directly.
fn direct(b: &Built, initrd: &Path) -> QemuCommand {
    QemuCommand::x86_64(kvm::accel())
        .arg("-cdrom")
        .arg(&b.demo.iso)
        .arg("-kernel")
        .arg(&b.kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0,115200 root=LABEL={} init={}/init",
            b.demo.label, b.demo.system
        ))
}

fn scratch(name: &str) -> PathBuf {
    media::work_dir(&format!("nixos-kernels-{name}")).unwrap_or_else(|e| panic!("{e}"))
}

/// Boots the ISO from the CD drive through the firmware, as a user would,
/// and checks the live system and that no module failed.
fn boots_from_cd(b: &Built) -> Booted {
    let cmd = QemuCommand::x86_64_cdrom(&b.demo.iso, kvm::accel());
    let booted = media::boot(&cmd, TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let ctx = booted.context();
    checks::live_system(&booted.report, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    assert!(
        !booted.serial_log.contains("did not load"),
        "a module failed:\n{ctx}"
    );
    booted
}

/// The builder's initrd names and holds `.ko` files only.
fn holds_plain_modules(b: &Built) {
    let files = initrd_files(&b.demo.initrd());
    let modules: Vec<&String> = files.iter().filter(|f| f.contains(".ko")).collect();
    assert!(
        modules.iter().any(|f| f.ends_with("/isofs.ko")),
        "{modules:?}"
    );
    assert!(
        modules.iter().all(|f| f.ends_with(".ko")),
        "compressed modules in the initrd: {modules:?}"
    );
    eprintln!(
        "{}: initrd {} bytes, {} modules",
        b.kernel.version,
        std::fs::metadata(b.demo.initrd()).unwrap().len(),
        modules.len()
    );
}

#[test]
fn xz_module_tree_boots_on_a_kernel_that_cannot_decompress() {
    let b = xz_tree();
    assert!(
        module_file(&b.kernel, "isofs").ends_with(".ko.xz"),
        "the tree is not compressed"
    );
    holds_plain_modules(b);
    boots_from_cd(b);
}

#[test]
fn zstd_module_tree_boots_on_a_kernel_that_cannot_decompress() {
    let b = zst_tree();
    assert!(module_file(&b.kernel, "isofs").ends_with(".ko.zst"));
    holds_plain_modules(b);
    boots_from_cd(b);
}

#[test]
fn backports_6_12_boots() {
    let b = backports();
    assert!(
        b.kernel.version.starts_with("6.12."),
        "{}",
        b.kernel.version
    );
    assert!(module_file(&b.kernel, "isofs").ends_with(".ko.xz"));
    holds_plain_modules(b);
    boots_from_cd(b);
}

/// isofs left out of the builder's initrd and given compressed in an extra
/// cpio: init loads it when the medium needs it, decompressing it itself
/// on 6.1 and through the kernel on 6.12.
fn compressed_module_from_an_extra_cpio(b: &Built, name: &str, how: &str) {
    let dir = scratch(name);
    let rel = module_file(&b.kernel, "isofs");
    let data = std::fs::read(b.kernel.modules_dir.join(&rel)).unwrap();
    let extra = modules_cpio(&dir, &b.kernel, &[(rel.clone(), data)]);
    let modules = ["ata_piix", "sr_mod", "loop", "squashfs", "overlay"];
    let initrd = initrd(&dir, &b.kernel, &modules, &[extra]);
    assert!(
        !initrd_files(&initrd).iter().any(|f| f.contains("isofs")),
        "the builder packed isofs although not asked to"
    );
    let booted = media::boot(&direct(b, &initrd), TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let ctx = booted.context();
    checks::live_system(&booted.report, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    let base = rel.rsplit('/').next().unwrap();
    assert!(
        booted
            .init_lines()
            .iter()
            .any(|l| l.contains(base) && l.contains(how)),
        "no line says {base} was {how}:\n{ctx}"
    );
}

#[test]
fn init_decompresses_a_module_the_kernel_cannot() {
    compressed_module_from_an_extra_cpio(xz_tree(), "own", "decompressed by init (xz");
}

#[test]
fn the_kernel_decompresses_a_module_where_it_can() {
    compressed_module_from_an_extra_cpio(backports(), "kernel", "decompressed by the kernel (xz)");
}

/// squashfs is damaged (an extra cpio replaces it with half of itself): the
/// medium is found and mounted, then the boot stops and says which module,
/// which file and why, instead of "ignoring" it.
#[test]
fn a_needed_module_that_cannot_load_is_explained() {
    let b = xz_tree();
    let dir = scratch("damaged");
    let rel = kmod_plain(&module_file(&b.kernel, "squashfs"));
    let real = std::process::Command::new("xz")
        .arg("-dc")
        .arg(b.kernel.modules_dir.join(format!("{rel}.xz")))
        .output()
        .unwrap()
        .stdout;
    assert!(real.starts_with(b"\x7fELF"));
    let extra = modules_cpio(
        &dir,
        &b.kernel,
        &[(rel.clone(), real[..real.len() / 2].to_vec())],
    );
    let initrd = initrd(&dir, &b.kernel, Arch::X86_64.demo_modules(), &[extra]);
    let vm = Vm::spawn(&direct(b, &initrd), TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let console = vm
        .wait_for_stage1_failure(TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    let fail = |why: &str| -> ! { panic!("{}", vm.failure(why.to_string())) };
    for want in [
        "the kernel cannot provide squashfs filesystems",
        "needed for the store image nix-store.squashfs",
        &format!("module squashfs (/lib/modules/{}/{rel})", b.kernel.version),
        "did not load",
    ] {
        if !console.contains(want) {
            fail(&format!("the failure message lacks {want:?}"));
        }
    }
    if !vm.serial_log().contains("mount -t iso9660") {
        fail("the medium was not mounted before the failure");
    }
}

/// `a/b.ko.xz` -> `a/b.ko`.
fn kmod_plain(rel: &str) -> String {
    rel.strip_suffix(".xz").unwrap_or(rel).to_string()
}

//! The builder's promises to the files it is given and the files it made
//! (issue 25): `--trusted-key` on a plain root is refused before anything
//! is written; an `--out` that is, holds or lies in an input is refused
//! and the input stays as it was; a `--system` link out of the store root
//! is refused; SIGINT at about 10 %, 50 % and 90 % of an ISO build (and
//! SIGTERM once) leaves the earlier ISO byte-identical, exit status 130
//! (143), and no temporary files (each build gets a private `TMPDIR`, so
//! the check is exact). One VM test: a `disk-image --fs ext4` built with
//! `--module-set base,virtio` only (no `--module ext4`) boots to stage 2
//! and registers its store on the first boot.
//!
//! The moments of the signals are fractions of one uninterrupted build
//! timed first; the assertions hold wherever a signal lands (a build that
//! finished first must have put the complete new ISO in place).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{self, run_command};
use nixlive_tests_vm::{kvm, media};

const EPOCH: &str = "1700000000";
const TIMEOUT: Duration = Duration::from_secs(300);

/// The demo system's store, built once for the tests of this module.
struct Store {
    dir: PathBuf,
    root: PathBuf,
    system: String,
}

fn store() -> &'static Store {
    static S: OnceLock<Store> = OnceLock::new();
    S.get_or_init(|| {
        let dir = media::work_dir("builder-safety").unwrap();
        let root = dir.join("root");
        let arch = Arch::X86_64;
        let mut cmd = Command::new(artifacts::programs_builder());
        cmd.arg("demo-system")
            .arg("--init")
            .arg(arch.guest_program("nixlive-demo-init"))
            .arg("--postboot")
            .arg(arch.guest_program("nixlive-postboot"))
            .arg("--root")
            .arg(&root);
        let out = run_command(cmd).unwrap();
        let system = out
            .lines()
            .map(str::trim)
            .rfind(|l| l.starts_with("/nix/store/"))
            .unwrap_or_else(|| panic!("`nixlive demo-system` printed no store path:\n{out}"))
            .to_string();
        Store { dir, root, system }
    })
}

/// A fresh directory of the test's own under the store's work directory.
fn test_dir(name: &str) -> PathBuf {
    let d = store().dir.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap();
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `nixlive SUB` with the kernel (`kernel`, or Debian's), modules, init,
/// store and system; `TMPDIR` set to `tmp`.
fn builder(sub: &str, kernel: Option<&Path>, tmp: &Path) -> Command {
    builder_on(sub, kernel, tmp, &store().root)
}

/// [`builder`] with the store root `root`.
fn builder_on(sub: &str, kernel: Option<&Path>, tmp: &Path, root: &Path) -> Command {
    let arch = Arch::X86_64;
    let k = artifacts::kernel(arch.debian());
    let s = store();
    let mut cmd = Command::new(artifacts::programs_builder());
    cmd.arg(sub)
        .arg("--kernel")
        .arg(kernel.unwrap_or(&k.vmlinuz))
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .arg("--init")
        .arg(arch.guest_program("nixlive-init"))
        .arg("--store-root")
        .arg(root)
        .arg("--system")
        .arg(&s.system)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("TMPDIR", tmp);
    cmd
}

/// `builder` for an ISO labelled NIXLIVE_SAFE, with the demo's modules.
fn iso_builder(kernel: Option<&Path>, tmp: &Path, out: &Path) -> Command {
    let mut cmd = builder("iso", kernel, tmp);
    for m in Arch::X86_64.demo_modules() {
        cmd.arg("--module").arg(m);
    }
    cmd.args(["--label", "NIXLIVE_SAFE"]).arg("--out").arg(out);
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every path under `dir` with its kind and contents (`d`, `f`, `l`).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (char, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, (char, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, ('l', t.into_os_string().into_encoded_bytes()));
            } else if m.is_dir() {
                out.insert(rel, ('d', Vec::new()));
                walk(root, &p, out);
            } else {
                out.insert(rel, ('f', std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn must_fail_saying(o: &Output, wants: &[&str]) {
    let t = text(o);
    assert!(!o.status.success(), "the builder did not refuse:\n{t}");
    for w in wants {
        assert!(t.contains(w), "the refusal lacks {w:?}:\n{t}");
    }
}

/// A well-formed Nix public key file (its key is never used for a check).
fn public_key(dir: &Path) -> PathBuf {
    let p = dir.join("key.pub");
    std::fs::write(&p, "test-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    p
}

#[test]
fn trusted_key_on_a_plain_root_is_refused_before_anything_is_written() {
    let dir = test_dir("plain-root-key");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let key = public_key(&dir);
    for (sub, out) in [
        ("tarball", "new/system.tar"),
        ("disk-image", "new/disk.img"),
    ] {
        let out = dir.join(out);
        let o = output(
            builder(sub, None, &tmp)
                .arg("--trusted-key")
                .arg(&key)
                .arg("--out")
                .arg(&out)
                .arg("--initrd-out")
                .arg(dir.join("new/initrd")),
        );
        must_fail_saying(
            &o,
            &[
                "--trusted-key cannot be used with a plain root",
                "nothing signed to check",
                "`nixlive iso`, `medium` or `netboot`",
            ],
        );
        assert!(!dir.join("new").exists(), "{sub} wrote {}", out.display());
        assert_eq!(
            names(&tmp),
            Vec::<String>::new(),
            "{sub} left temporary files"
        );
    }
    assert_eq!(names(&dir), ["key.pub", "tmp"]);
}

#[test]
fn out_equal_to_the_kernel_is_refused_and_the_kernel_kept() {
    let dir = test_dir("out-is-kernel");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let k2 = dir.join("k2");
    std::fs::copy(artifacts::kernel("amd64").vmlinuz, &k2).unwrap();
    let before = std::fs::read(&k2).unwrap();
    let o = output(&mut iso_builder(Some(&k2), &tmp, &k2));
    must_fail_saying(&o, &["--out", "is the input --kernel", "k2"]);
    assert!(std::fs::read(&k2).unwrap() == before, "k2 changed");
    // Through a link to the kernel, and as a tarball's --out.
    std::os::unix::fs::symlink("k2", dir.join("link")).unwrap();
    let o = output(&mut iso_builder(Some(&k2), &tmp, &dir.join("link")));
    must_fail_saying(&o, &["is the input --kernel"]);
    let o = output(
        builder("tarball", Some(&k2), &tmp)
            .arg("--out")
            .arg(dir.join("k2")),
    );
    must_fail_saying(&o, &["is the input --kernel"]);
    assert!(std::fs::read(&k2).unwrap() == before, "k2 changed");
    assert_eq!(names(&dir), ["k2", "link", "tmp"]);
    assert_eq!(names(&tmp), Vec::<String>::new());
}

#[test]
fn medium_out_holding_the_kernel_is_refused_and_kept() {
    let dir = test_dir("out-holds-kernel");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let med = dir.join("med");
    std::fs::create_dir_all(med.join("boot")).unwrap();
    std::fs::copy(artifacts::kernel("amd64").vmlinuz, med.join("boot/vmlinuz")).unwrap();
    std::fs::write(med.join("nixlive.manifest"), b"an earlier manifest\n").unwrap();
    let before = tree(&med);
    let mut cmd = builder("medium", Some(&med.join("boot/vmlinuz")), &tmp);
    for m in Arch::X86_64.demo_modules() {
        cmd.arg("--module").arg(m);
    }
    let o = output(cmd.args(["--label", "NIXLIVE_SAFE"]).arg("--out").arg(&med));
    must_fail_saying(&o, &["--out", "holds the input --kernel"]);
    assert!(tree(&med) == before, "med changed");
    assert_eq!(names(&dir), ["med", "tmp"]);
    assert_eq!(names(&tmp), Vec::<String>::new());
    // And a store root inside --out, or --out inside the store root.
    let o = output(
        builder("tarball", None, &tmp)
            .arg("--out")
            .arg(store().root.join("nix/system.tar")),
    );
    must_fail_saying(&o, &["lies inside the input --store-root"]);
    assert!(!store().root.join("nix/system.tar").exists());
}

#[test]
fn system_linked_out_of_the_store_root_is_refused() {
    let dir = test_dir("system-link");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let s = store();
    let base = s.system.strip_prefix("/nix/store/").unwrap();
    // A second store root whose system is a link to the first's.
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("nix/store")).unwrap();
    let real = s.root.join("nix/store").join(base);
    std::os::unix::fs::symlink(&real, root.join("nix/store").join(base)).unwrap();
    let mut cmd = builder_on("tarball", None, &tmp, &root);
    cmd.arg("--store-path")
        .arg(&s.system)
        .arg("--out")
        .arg(dir.join("system.tar"));
    let o = output(&mut cmd);
    must_fail_saying(
        &o,
        &[
            &format!("--system {}", s.system),
            "is a symlink to",
            &real.display().to_string(),
            "outside --store-root",
        ],
    );
    assert!(!dir.join("system.tar").exists());
}

/// A signal `sig` (`INT`, `TERM`) at `fraction` of `full` into an ISO
/// build over an earlier ISO; returns what happened, for the log.
fn interrupt(dir: &Path, reference: &[u8], when: When, sig: &str) -> (bool, String) {
    let run = dir.join(format!("{sig}-{}", when.name()));
    std::fs::create_dir_all(&run).unwrap();
    let tmp = run.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = run.join("out");
    std::fs::create_dir(&out).unwrap();
    let iso = out.join("live.iso");
    let earlier: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(&iso, &earlier).unwrap();
    let mut cmd = iso_builder(None, &tmp, &iso);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    match when {
        When::Fraction(full, f) => std::thread::sleep(full.mul_f64(f)),
        // The ISO's temporary file beside it: xorriso is writing it.
        When::Writing => {
            let deadline = Instant::now() + TIMEOUT;
            while names(&out).len() < 2
                && child.try_wait().unwrap().is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let sent = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    let now = std::fs::read(&iso).unwrap();
    let what;
    if o.status.success() {
        // Done before the signal: the complete new ISO, and nothing else.
        assert!(
            now == reference,
            "finished, but live.iso is not the new ISO\n{t}"
        );
        what = "finished before the signal";
    } else {
        assert!(
            sent,
            "the signal could not be sent, yet the build failed\n{t}"
        );
        let want = if sig == "INT" { 130 } else { 143 };
        assert_eq!(o.status.code(), Some(want), "{t}");
        assert!(t.contains(&format!("stopped by SIG{sig}")), "{t}");
        // Put in place only when complete: after the report line, the new
        // ISO; before it, the earlier one, byte for byte.
        let reported = String::from_utf8_lossy(&o.stdout).contains("live.iso");
        if now == earlier {
            what = "stopped; the earlier ISO kept";
        } else {
            assert!(
                reported && now == reference,
                "live.iso is neither the earlier nor the complete new ISO ({} bytes)\n{t}",
                now.len()
            );
            what = "stopped after the ISO was put in place";
        }
    }
    assert_eq!(names(&out), ["live.iso"], "leftovers beside the ISO\n{t}");
    assert_eq!(
        names(&tmp),
        Vec::<String>::new(),
        "leftovers in TMPDIR\n{t}"
    );
    let kept = what == "stopped; the earlier ISO kept";
    (
        kept,
        format!(
            "SIG{sig} {} (during: {}): {what}",
            when.name(),
            last_step(&o)
        ),
    )
}

/// When the signal is sent.
#[derive(Clone, Copy)]
enum When {
    /// This fraction of a full build's time after the start.
    Fraction(Duration, f64),
    /// Once the ISO's temporary file appears beside it.
    Writing,
}

impl When {
    fn name(self) -> String {
        match self {
            When::Fraction(_, f) => format!("at-{:.0}%", f * 100.0),
            When::Writing => "while-xorriso-writes".into(),
        }
    }
}

/// The builder's last line on standard error before it was stopped.
fn last_step(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .take_while(|l| !l.contains("stopped by"))
        .last()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// SIGINT halfway through `medium --out med` over an earlier medium (of
/// another label): the earlier tree is kept, file for file.
#[test]
fn an_interrupted_medium_keeps_the_earlier_tree() {
    let dir = test_dir("interrupted-medium");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let med = dir.join("med");
    let medium = |label: &str| {
        let mut cmd = builder("medium", None, &tmp);
        for m in Arch::X86_64.demo_modules() {
            cmd.arg("--module").arg(m);
        }
        cmd.args(["--label", label]).arg("--out").arg(&med);
        cmd
    };
    let started = Instant::now();
    let o = output(&mut medium("EARLIER"));
    let full = started.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    let earlier = tree(&med);
    assert!(earlier.contains_key(Path::new("nixlive.manifest")));
    let mut cmd = medium("LATER");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(full / 2);
    let sent = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    if o.status.success() {
        eprintln!("the medium was done before the signal");
        assert!(tree(&med) != earlier, "{t}");
    } else {
        assert!(sent, "{t}");
        assert_eq!(o.status.code(), Some(130), "{t}");
        if !String::from_utf8_lossy(&o.stdout).contains("manifest") {
            assert!(tree(&med) == earlier, "the earlier medium changed\n{t}");
        }
        eprintln!("SIGINT at 50 % of a medium (during: {})", last_step(&o));
    }
    assert_eq!(names(&dir), ["med", "tmp"], "leftovers beside med\n{t}");
    assert_eq!(
        names(&tmp),
        Vec::<String>::new(),
        "leftovers in TMPDIR\n{t}"
    );
}

#[test]
fn interrupted_iso_builds_keep_the_earlier_iso_and_leave_nothing() {
    let dir = test_dir("interrupted-iso");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let reference = dir.join("reference.iso");
    let started = Instant::now();
    let o = output(&mut iso_builder(None, &tmp, &reference));
    let full = started.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(names(&tmp), Vec::<String>::new());
    let reference = std::fs::read(&reference).unwrap();
    eprintln!("an uninterrupted ISO build took {full:?}");
    let mut runs = Vec::new();
    for f in [0.1, 0.5, 0.9] {
        runs.push(interrupt(&dir, &reference, When::Fraction(full, f), "INT"));
    }
    runs.push(interrupt(
        &dir,
        &reference,
        When::Fraction(full, 0.5),
        "TERM",
    ));
    runs.push(interrupt(&dir, &reference, When::Writing, "INT"));
    let log: Vec<&str> = runs.iter().map(|r| r.1.as_str()).collect();
    eprintln!("{}", log.join("\n"));
    // The signal sent while xorriso writes always finds the build running.
    assert!(runs[4].0, "{}", log.join("\n"));
}

/// A disk image of the demo system with `--module-set base,virtio` only:
/// ext4 is a module of Debian's kernel, which the builder must pack by
/// itself; the disk boots to stage 2, which registers the store.
#[test]
fn ext4_disk_image_with_base_and_virtio_sets_only_boots() {
    let dir = test_dir("ext4-sets-only");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let image = dir.join("sd.img");
    let initrd = dir.join("initrd");
    let o = output(
        builder("disk-image", None, &tmp)
            .args(["--module-set", "base,virtio"])
            .args(["--label", "NIXOS_SD", "--fs", "ext4", "--size", "256M"])
            .arg("--out")
            .arg(&image)
            .arg("--initrd-out")
            .arg(&initrd),
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut cmd = Command::new("debugfs");
    cmd.args(["-R", "cat /boot/cmdline"])
        .arg(format!("{}?offset={}", image.display(), 1 << 20));
    let cmdline = run_command(cmd).unwrap().trim().to_string();
    let mut drive = std::ffi::OsString::from("if=none,id=root,format=raw,file=");
    drive.push(&image);
    let vm = Arch::X86_64
        .qemu(kvm::accel())
        .arg("-kernel")
        .arg(artifacts::kernel("amd64").vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(&cmdline)
        .arg("-drive")
        .arg(drive)
        .arg("-device")
        .arg("virtio-blk-pci,drive=root");
    let b = media::boot(&vm, TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let ctx = b.context();
    let root = b
        .report
        .mount("/")
        .unwrap_or_else(|| panic!("no / in the mount table\n{ctx}"));
    assert_eq!(
        (root.fstype.as_str(), root.source.as_str()),
        ("ext4", "/dev/vda1"),
        "{ctx}"
    );
    let post = b.report.postboot_out.join("\n");
    assert!(
        post.contains("postboot: registration: loaded ")
            && post.contains("postboot: registration: removed /nix-path-registration"),
        "{post}\n{ctx}"
    );
    assert_eq!(b.report.postboot_exit, 0, "{ctx}");
    let _ = std::fs::remove_file(&image);
}

/// A directory holding a `NAME` program that writes into its output
/// (`-o FILE` for xorriso; the next-to-last argument for mkfs.ext4) and
/// fails, ahead of the real ones on `PATH`.
fn failing_tool(dir: &Path, name: &str) -> std::ffi::OsString {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = r#"#!/bin/sh
# Writes into its output, then fails.
prev=
for a in "$@"; do
  [ "$prev" = -o ] && echo partial > "$a"
  prev=$a
done
# mkfs.ext4 ... DEVICE SIZE
if [ $# -ge 2 ]; then
  eval "dev=\${$(($# - 1))}"
  [ -f "$dev" ] && echo partial > "$dev"
fi
echo "injected failure" >&2
exit 1
"#;
    let p = bin.join(name);
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = bin.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

/// A tool failing halfway through its output (injected) leaves the
/// earlier ISO or disk image as it was and no temporary files.
#[test]
fn a_failing_tool_keeps_the_earlier_output() {
    let dir = test_dir("failing-tool");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let earlier = b"an earlier output\n".repeat(1000);
    let iso = out.join("live.iso");
    std::fs::write(&iso, &earlier).unwrap();
    let o = output(iso_builder(None, &tmp, &iso).env("PATH", failing_tool(&dir, "xorriso")));
    must_fail_saying(&o, &["xorriso failed", "injected failure"]);
    assert!(std::fs::read(&iso).unwrap() == earlier, "live.iso changed");
    let img = out.join("sd.img");
    std::fs::write(&img, &earlier).unwrap();
    let o = output(
        builder("disk-image", None, &tmp)
            .args(["--size", "256M", "--out"])
            .arg(&img)
            .env("PATH", failing_tool(&dir, "mkfs.ext4")),
    );
    must_fail_saying(&o, &["mkfs.ext4", "injected failure"]);
    assert!(std::fs::read(&img).unwrap() == earlier, "sd.img changed");
    assert_eq!(names(&out), ["live.iso", "sd.img"]);
    assert_eq!(names(&tmp), Vec::<String>::new());
}

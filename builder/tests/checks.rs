//! Media that cannot boot are refused before anything is written, by
//! `iso`, `medium`, `netboot` and `initrd` alike, and `nixlive inspect`
//! reports the same problems on a medium that was made or damaged by hand.
//! Real inputs: Debian's kernels and module trees (scripts/install-deps.sh),
//! the built static programs (`make build`), /bin/ls as a dynamic program.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{guest_program, inspect_ok, inspect_refuses, kernel, ok, run};

const NIXLIVE: &str = env!("CARGO_BIN_EXE_nixlive");

/// A demo system under `root`, with the usual inputs for a medium.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    system: String,
    kernel: PathBuf,
    modules: PathBuf,
    init: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let root = dir.join("root");
    let out = ok(Command::new(NIXLIVE)
        .arg("demo-system")
        .arg("--init")
        .arg(guest_program("x86_64", "nixlive-demo-init"))
        .arg("--postboot")
        .arg(guest_program("x86_64", "nixlive-postboot"))
        .arg("--root")
        .arg(&root));
    let k = kernel("amd64");
    Setup {
        _tmp: tmp,
        system: out.trim().lines().last().unwrap().to_string(),
        dir,
        root,
        kernel: k.vmlinuz,
        modules: k.modules_dir,
        init: guest_program("x86_64", "nixlive-init"),
    }
}

/// What one build is given; each field can be replaced by a bad one.
#[derive(Clone)]
struct Inputs {
    kernel: PathBuf,
    modules: PathBuf,
    init: PathBuf,
    root: PathBuf,
    system: String,
    extra: Vec<String>,
}

impl Setup {
    fn inputs(&self) -> Inputs {
        Inputs {
            kernel: self.kernel.clone(),
            modules: self.modules.clone(),
            init: self.init.clone(),
            root: self.root.clone(),
            system: self.system.clone(),
            extra: Vec::new(),
        }
    }
}

/// The command `sub` (iso, medium, netboot, initrd) with `i`, writing
/// under `out`.
fn command(sub: &str, i: &Inputs, out: &Path) -> Command {
    let mut c = Command::new(NIXLIVE);
    c.arg(sub)
        .arg("--modules-dir")
        .arg(&i.modules)
        .args(["--module-set", "base,cd"])
        .arg("--init")
        .arg(&i.init)
        .args(&i.extra)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    if sub != "initrd" {
        c.arg("--kernel")
            .arg(&i.kernel)
            .arg("--store-root")
            .arg(&i.root)
            .arg("--system")
            .arg(&i.system);
    }
    match sub {
        "iso" => c
            .args(["--label", "CHECK", "--no-uefi", "--out"])
            .arg(out.join("live.iso"))
            .arg("--medium-dir")
            .arg(out.join("medium")),
        "medium" => c.args(["--label", "CHECK", "--no-uefi", "--out"]).arg(out),
        "netboot" => c.arg("--out").arg(out),
        _ => c.arg("--out").arg(out.join("initrd")),
    };
    c
}

/// `subs` each refuse `i` with a message containing every one of `want`,
/// and write nothing.
fn refused(s: &Setup, subs: &[&str], i: &Inputs, want: &[&str]) {
    for sub in subs {
        let out = s.dir.join(format!("out-{sub}"));
        let o = run(&mut command(sub, i, &out));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{sub} accepted it:\n{err}");
        for w in want {
            assert!(err.contains(w), "{sub}: no `{w}` in:\n{err}");
        }
        assert!(err.contains("to fix: "), "{sub}: no fix in:\n{err}");
        assert!(!out.exists(), "{sub} wrote {}", out.display());
    }
}

const ALL: &[&str] = &["iso", "medium", "netboot", "initrd"];
const WITH_SYSTEM: &[&str] = &["iso", "medium", "netboot"];

#[test]
fn a_dynamic_init_is_refused() {
    let s = setup();
    let i = Inputs {
        init: "/bin/ls".into(),
        ..s.inputs()
    };
    refused(
        &s,
        ALL,
        &i,
        &[
            "--init /bin/ls is dynamically linked (program interpreter /lib64/ld-linux-x86-64.so.2)",
            "give a statically linked program for x86_64",
        ],
    );
    // --shell likewise.
    let i = Inputs {
        extra: vec!["--shell".into(), "/bin/ls".into()],
        ..s.inputs()
    };
    refused(
        &s,
        &["initrd"],
        &i,
        &["--shell /bin/ls is dynamically linked"],
    );
}

#[test]
fn an_init_for_another_machine_is_refused() {
    let s = setup();
    let arm = guest_program("aarch64", "nixlive-init");
    let i = Inputs {
        init: arm.clone(),
        ..s.inputs()
    };
    let msg = format!(
        "--init {} is for aarch64, but the kernel is for x86_64",
        arm.display()
    );
    refused(&s, ALL, &i, &[&msg, "x86_64-unknown-linux-musl"]);
}

#[test]
fn a_kernel_with_another_kernels_modules_is_refused() {
    let s = setup();
    let bpo = kernel("amd64-bpo");
    let i = Inputs {
        kernel: bpo.vmlinuz.clone(),
        ..s.inputs()
    };
    let k61 = kernel("amd64").version;
    let msg = format!(
        "is Linux {}, but the modules in {} are for {k61}",
        bpo.version,
        s.modules.display()
    );
    refused(
        &s,
        WITH_SYSTEM,
        &i,
        &[
            &msg,
            &format!("--modules-dir .../lib/modules/{}", bpo.version),
        ],
    );
    // A 6.1 tree under the 6.12 name is caught by the modules' vermagic
    // (the only check `initrd`, which has no kernel, can make).
    let renamed = s.dir.join("lib/modules").join(&bpo.version);
    fs::create_dir_all(&renamed).unwrap();
    for e in ["kernel", "modules.dep", "modules.builtin", "modules.alias"] {
        std::os::unix::fs::symlink(s.modules.join(e), renamed.join(e)).unwrap();
    }
    let i = Inputs {
        kernel: bpo.vmlinuz.clone(),
        modules: renamed,
        ..s.inputs()
    };
    refused(
        &s,
        ALL,
        &i,
        &[&format!(
            "was built for Linux {k61}, but it sits in the module tree of {}",
            bpo.version
        )],
    );
}

/// A copy of the demo system whose init is not executable.
fn system_with_plain_init(s: &Setup) -> String {
    let base = s.system.rsplit('/').next().unwrap();
    let bad = format!("{}-broken-system", "b".repeat(32));
    let from = s.root.join("nix/store").join(base);
    let to = s.root.join("nix/store").join(&bad);
    ok(Command::new("cp").arg("-r").arg(&from).arg(&to));
    let init = to.join("init");
    fs::set_permissions(&init, fs::Permissions::from_mode(0o644)).unwrap();
    format!("/nix/store/{bad}")
}

#[test]
fn a_stage2_init_that_is_not_executable_is_refused() {
    let s = setup();
    let system = system_with_plain_init(&s);
    let i = Inputs {
        system: system.clone(),
        extra: vec!["--store-path".into(), system.clone()],
        ..s.inputs()
    };
    refused(
        &s,
        WITH_SYSTEM,
        &i,
        &[&format!(
            "the stage-2 init {system}/init is not executable (mode 0644)"
        )],
    );
}

#[test]
fn a_demo_system_for_another_machine_is_refused() {
    let s = setup();
    let root = s.dir.join("arm-root");
    let out = ok(Command::new(NIXLIVE)
        .arg("demo-system")
        .arg("--init")
        .arg(guest_program("aarch64", "nixlive-demo-init"))
        .arg("--postboot")
        .arg(guest_program("aarch64", "nixlive-postboot"))
        .arg("--root")
        .arg(&root));
    let system = out.trim().lines().last().unwrap().to_string();
    let i = Inputs {
        root,
        system: system.clone(),
        ..s.inputs()
    };
    refused(
        &s,
        WITH_SYSTEM,
        &i,
        &[
            &format!("the stage-2 init {system}/init is for aarch64, but the kernel is for x86_64"),
            &format!(
                "the system's {system}/bin/nixlive-postboot is for aarch64, but the kernel is for x86_64"
            ),
        ],
    );
}

/// `data` cut to half, in a file.
fn truncated_cpio(s: &Setup) -> PathBuf {
    let stage = s.dir.join("stage");
    fs::create_dir_all(stage.join("etc")).unwrap();
    fs::write(stage.join("etc/keys"), "x".repeat(4096)).unwrap();
    let full = s.dir.join("extra.cpio");
    ok(Command::new("sh")
        .current_dir(&stage)
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9 > \"$1\"")
        .arg("sh")
        .arg(&full));
    let data = fs::read(&full).unwrap();
    let cut = s.dir.join("cut.cpio.gz");
    fs::write(&cut, &data[..data.len() / 2]).unwrap();
    cut
}

#[test]
fn a_truncated_extra_cpio_is_refused() {
    let s = setup();
    let cut = truncated_cpio(&s);
    let i = Inputs {
        extra: vec!["--extra-cpio".into(), cut.display().to_string()],
        ..s.inputs()
    };
    refused(
        &s,
        ALL,
        &i,
        &[&format!(
            "--extra-cpio {} cannot be unpacked: gzip segment at byte 0",
            cut.display()
        )],
    );
}

#[test]
fn an_open_closure_is_refused() {
    let s = setup();
    // A closureInfo whose registration names a reference it does not hold.
    let reg = ok(Command::new(NIXLIVE)
        .args(["registration", "--format", "closure-info", "--root"])
        .arg(&s.root)
        .arg(&s.system));
    let missing = format!("/nix/store/{}-gone", "g".repeat(32));
    let reg = reg.replacen("\n0\n", &format!("\n1\n{missing}\n"), 1);
    let ci = s.dir.join("closure-info");
    fs::create_dir_all(&ci).unwrap();
    fs::write(ci.join("registration"), reg).unwrap();
    fs::write(ci.join("store-paths"), format!("{}\n", s.system)).unwrap();
    let i = Inputs {
        extra: vec!["--closure-info".into(), ci.display().to_string()],
        ..s.inputs()
    };
    refused(
        &s,
        WITH_SYSTEM,
        &i,
        &[&format!(
            "registration {} is not closed: line 6 (reference): {missing} is not registered in this file",
            ci.join("registration").display()
        )],
    );
}

/// A good medium tree (no UEFI, for speed), which inspect passes.
fn good_medium(s: &Setup) -> PathBuf {
    let out = s.dir.join("good");
    ok(&mut command("medium", &s.inputs(), &out));
    let report = inspect_ok(NIXLIVE, &out);
    for want in [
        "kernel        boot/vmlinuz: bzImage, x86_64, Linux 6.1.0-",
        "  init        /init: x86_64, static",
        "needed      loop squashfs overlay; missing: none",
        "(digest ok)",
        "1 paths, closed",
        "can boot      yes",
    ] {
        assert!(report.contains(want), "no `{want}` in:\n{report}");
    }
    out
}

/// Copies a medium tree.
fn copy_tree(from: &Path, to: &Path) {
    ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Appends a stored cpio archive holding `/init` = `program` to the
/// tree's initrd (the kernel takes the later file).
fn replace_init(tree: &Path, program: &Path) {
    let stage = tree.join("../stage-init");
    fs::create_dir_all(&stage).unwrap();
    fs::copy(program, stage.join("init")).unwrap();
    let seg = ok(Command::new("sh")
        .current_dir(&stage)
        .arg("-c")
        .arg("echo init | cpio -o -H newc --quiet | od -An -v -tx1"));
    let bytes: Vec<u8> = seg
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mut initrd = fs::read(tree.join("boot/initrd")).unwrap();
    while !initrd.len().is_multiple_of(4) {
        initrd.push(0);
    }
    initrd.extend_from_slice(&bytes);
    fs::write(tree.join("boot/initrd"), initrd).unwrap();
}

/// Rewrites the tree's top image with `edit` applied to its unpacked
/// contents, and the manifest's size and digest to match.
fn rewrite_image(tree: &Path, edit: &dyn Fn(&Path)) {
    let img = tree.join("nix-store.squashfs");
    let unpacked = tree.join("../unpacked");
    let _ = fs::remove_dir_all(&unpacked);
    ok(Command::new("unsquashfs")
        .arg("-q")
        .arg("-d")
        .arg(&unpacked)
        .arg(&img));
    edit(&unpacked);
    fs::remove_file(&img).unwrap();
    ok(Command::new("mksquashfs").arg(&unpacked).arg(&img).args([
        "-quiet",
        "-comp",
        "zstd",
        "-all-root",
    ]));
    let data = fs::read(&img).unwrap();
    let sum = ok(Command::new("sha256sum").arg(&img));
    let sum = sum.split_whitespace().next().unwrap();
    let m = fs::read_to_string(tree.join("nixlive.manifest")).unwrap();
    // The rewritten image has no hash tree (and the manifest's signature,
    // if any, no longer holds): drop their lines.
    let m: String = m
        .lines()
        .filter(|l| !l.starts_with("verity ") && !l.starts_with("sig "))
        .map(|l| {
            if l.starts_with("image nix-store.squashfs ") {
                format!(
                    "image nix-store.squashfs squashfs {} sha256:{sum}\n",
                    data.len()
                )
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(tree.join("nixlive.manifest"), m).unwrap();
}

/// inspect refuses `tree` with `want` on standard error (and says so on
/// standard output).
fn inspect_says(tree: &Path, want: &str) {
    let (out, err) = inspect_refuses(NIXLIVE, tree);
    assert!(err.contains(want), "no `{want}` in:\n{err}");
    assert!(out.contains("can boot      no"), "{out}");
}

#[test]
fn inspect_reports_each_bad_medium() {
    let s = setup();
    let good = good_medium(&s);
    let case = |name: &str| {
        let t = s.dir.join(name);
        copy_tree(&good, &t);
        t
    };

    let t = case("dynamic");
    replace_init(&t, Path::new("/bin/ls"));
    inspect_says(
        &t,
        "/init /init is dynamically linked (program interpreter /lib64/ld-linux-x86-64.so.2)",
    );

    let t = case("arm");
    replace_init(&t, &guest_program("aarch64", "nixlive-init"));
    inspect_says(
        &t,
        "/init /init is for aarch64, but the kernel is for x86_64",
    );

    let t = case("mismatch");
    fs::remove_file(t.join("boot/vmlinuz")).unwrap();
    fs::copy(kernel("amd64-bpo").vmlinuz, t.join("boot/vmlinuz")).unwrap();
    inspect_says(
        &t,
        &format!(
            "the kernel boot/vmlinuz is Linux {}, but the modules in initrd:/lib/modules/{}/ are for",
            kernel("amd64-bpo").version,
            kernel("amd64").version
        ),
    );

    let t = case("truncated");
    let initrd = fs::read(t.join("boot/initrd")).unwrap();
    fs::write(t.join("boot/initrd"), &initrd[..initrd.len() / 2]).unwrap();
    inspect_says(
        &t,
        "the initrd boot/initrd cannot be read: zstd segment at byte 0",
    );

    let t = case("missing-image");
    fs::remove_file(t.join("nix-store.squashfs")).unwrap();
    inspect_says(
        &t,
        "the manifest nixlive.manifest names the image nix-store.squashfs, which is not in the medium",
    );

    let t = case("damaged-image");
    let mut img = fs::read(t.join("nix-store.squashfs")).unwrap();
    let n = img.len();
    img[n - 100] ^= 0xff;
    fs::write(t.join("nix-store.squashfs"), img).unwrap();
    inspect_says(
        &t,
        "the image nix-store.squashfs's SHA-256 is not the manifest's",
    );

    let t = case("not-executable");
    let base = s.system.rsplit('/').next().unwrap().to_string();
    rewrite_image(&t, &|d| {
        fs::set_permissions(
            d.join(&base).join("init"),
            fs::Permissions::from_mode(0o444),
        )
        .unwrap()
    });
    inspect_says(
        &t,
        &format!(
            "the stage-2 init {}/init is not executable (mode 0444)",
            s.system
        ),
    );

    let t = case("open");
    let missing = format!("/nix/store/{}-gone", "g".repeat(32));
    rewrite_image(&t, &|d| {
        let p = d.join("nix-path-registration");
        let reg = fs::read_to_string(&p).unwrap();
        fs::write(&p, reg.replacen("\n0\n", &format!("\n1\n{missing}\n"), 1)).unwrap();
    });
    inspect_says(
        &t,
        &format!(
            "the registration /nix/store/nix-path-registration in nix-store.squashfs is not closed: line 6 (reference): {missing} is not registered in this file"
        ),
    );

    // The JSON form says the same.
    let out = run(Command::new(NIXLIVE).arg("inspect").arg("--json").arg(&t));
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bootable"], false);
    assert_eq!(v["registration"]["closed"], false);
    assert!(
        v["problems"][0]["what"]
            .as_str()
            .unwrap()
            .contains("is not closed")
    );
}

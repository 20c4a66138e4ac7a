//! `nixlive registration` against real Nix (Debian's nix-bin): Nix builds
//! varied store paths into a chroot store (it scans the references itself),
//! `nix-store --dump-db` prints what it registered, and `nixlive
//! registration` must print the same for the same paths, computed from the
//! files alone. Derivers are the one thing a tree cannot tell, so the
//! deriver line is compared blank. Fails (never skips) without nix-store.
//! Nix runs hermetically (nixlive-testkit): no nixbld group, no binary cache.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use nixlive_testkit::nix::Nix;

mod common;
use common::{ok, run};

const NIXLIVE: &str = env!("CARGO_BIN_EXE_nixlive");

/// A static busybox as a store source, `bin/sh` and friends as links.
fn busybox_dir(dir: &Path) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is needed (scripts/install-deps.sh installs it)");
    fs::copy(bb, bin.join("busybox")).unwrap();
    for a in [
        "sh", "mkdir", "ln", "chmod", "cp", "head", "yes", "touch", "printf", "cat",
    ] {
        symlink("busybox", bin.join(a)).unwrap();
    }
}

const EXPR: &str = r#"
let
  bb = builtins.path { path = ./bb; name = "busybox"; };
  mk = name: script: derivation {
    inherit name; system = "x86_64-linux";
    builder = "${bb}/bin/sh"; args = [ "-c" script ]; PATH = "${bb}/bin";
  };
  varied = mk "varied" ''
    mkdir -p $out/empty $out/bin $out/sub/deeper
    touch $out/zero
    echo "I am $out" > $out/self
    printf '#!/bin/sh\necho hi\n' > $out/bin/run; chmod 555 $out/bin/run
    ln -s ../self $out/sub/rel-link
    ln -s $out/self $out/abs-link
    ln -s /nowhere $out/dangling
    echo grüß > "$out/sub/deeper/Grüße ünïcødé ☃"
    mkdir "$out/日本語"; touch "$out/日本語/ファイル"
  '';
  big = mk "big" ''
    mkdir $out
    yes "nixlive 100 MB file $out" | head -c 104857600 > $out/big
    touch $out/small
  '';
  user = mk "user" ''
    mkdir $out
    echo ${varied}/bin/run > $out/uses-varied
    ln -s ${big}/big $out/big-link
  '';
  single = mk "single-file" "echo ${user} > $out";
  exe = mk "exe-file" "printf '#!${varied}/bin/run\n' > $out; chmod 555 $out";
  link = mk "link" "ln -s ${single} $out";
in [ varied big user single exe link ]
"#;

/// Replaces each entry's deriver line (the 4th) by an empty line.
fn blank_derivers(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let n: usize = lines[i + 4].parse().unwrap();
        for (k, l) in lines[i..i + 5 + n].iter().enumerate() {
            out.push_str(if k == 3 { "" } else { l });
            out.push('\n');
        }
        i += 5 + n;
    }
    out
}

#[test]
fn registration_matches_nix_store_dump_db() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    busybox_dir(&d.join("bb"));
    fs::write(d.join("paths.nix"), EXPR).unwrap();
    let store = d.join("store");
    let nix = Nix::new(d);
    let outs = ok(nix
        .on_store("nix-build", &store)
        .arg(d.join("paths.nix"))
        .arg("--no-out-link"));
    let outs: Vec<&str> = outs.lines().collect();
    assert_eq!(outs.len(), 6, "{outs:?}");
    let closure = ok(nix.on_store("nix-store", &store).arg("-qR").args(&outs));
    let paths: Vec<&str> = closure.lines().collect();
    let want = ok(nix
        .on_store("nix-store", &store)
        .arg("--dump-db")
        .args(&paths));
    let got = ok(Command::new(NIXLIVE)
        .arg("registration")
        .arg("--root")
        .arg(&store)
        .args(&paths));
    assert_eq!(got, blank_derivers(&want));
    // The tree really has what the test is about.
    assert!(
        got.contains("\n104857600\n")
            || got
                .lines()
                .any(|l| l.parse::<u64>().is_ok_and(|n| n > 104_857_600))
    );
    let self_ref = outs.iter().find(|o| o.ends_with("-varied")).unwrap();
    assert!(
        got.contains(&format!("{self_ref}\n"))
            && want.matches(&format!("\n{self_ref}\n")).count() >= 3,
        "varied must refer to itself:\n{want}"
    );

    // The closure-info form carries the same information.
    let ci = ok(Command::new(NIXLIVE)
        .arg("registration")
        .arg("--format")
        .arg("closure-info")
        .arg("--root")
        .arg(&store)
        .args(&paths));
    assert!(ci.lines().nth(1).unwrap().starts_with("sha256:"));
    assert_eq!(ci.lines().count(), got.lines().count());
}

fn store_path(root: &Path, hash: char, name: &str) -> (String, std::path::PathBuf) {
    let base = format!("{}-{name}", hash.to_string().repeat(32));
    (
        format!("/nix/store/{base}"),
        root.join("nix/store").join(base),
    )
}

#[test]
fn a_reference_cycle_between_two_paths_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("nix/store")).unwrap();
    let (a, a_dir) = store_path(root, 'a', "a");
    let (b, b_dir) = store_path(root, 'b', "b");
    fs::create_dir(&a_dir).unwrap();
    fs::create_dir(&b_dir).unwrap();
    fs::write(a_dir.join("f"), format!("{b} {a}")).unwrap();
    fs::write(b_dir.join("f"), &a).unwrap();
    let out = run(Command::new(NIXLIVE)
        .arg("registration")
        .arg("--root")
        .arg(root)
        .arg(&a)
        .arg(&b));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cycle was accepted");
    assert!(err.contains("cycle detected in the references of"), "{err}");
    // Without the cycle (a self reference is fine) it works.
    fs::write(b_dir.join("f"), &b).unwrap();
    let text = ok(Command::new(NIXLIVE)
        .arg("registration")
        .arg("--root")
        .arg(root)
        .arg(&a)
        .arg(&b));
    assert!(text.contains(&format!("2\n{a}\n{b}\n")), "{text}");
}

/// Nix refuses the same situation: two outputs of one derivation that refer
/// to each other.
#[test]
fn nix_also_refuses_a_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    busybox_dir(&d.join("bb"));
    fs::write(
        d.join("cycle.nix"),
        r#"let bb = builtins.path { path = ./bb; name = "busybox"; }; in
derivation { name = "cycle"; system = "x86_64-linux"; outputs = [ "out" "dev" ];
  builder = "${bb}/bin/sh"; PATH = "${bb}/bin";
  args = [ "-c" "echo $dev > $out; echo $out > $dev" ]; }"#,
    )
    .unwrap();
    let out = run(Nix::new(d)
        .on_store("nix-build", &d.join("store"))
        .arg(d.join("cycle.nix"))
        .arg("--no-out-link"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cycle detected"), "{err}");
}

#[test]
fn unknown_paths_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("nix/store")).unwrap();
    let (a, _) = store_path(tmp.path(), 'a', "gone");
    let out = run(Command::new(NIXLIVE)
        .arg("registration")
        .arg("--root")
        .arg(tmp.path())
        .arg(&a));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&a));
}

//! The kit's Nix is hermetic: it reads only the configuration the kit
//! writes, builds with no `nixbld` group and no binary cache, and leaves the
//! machine's `/nix` alone. And the tests call Nix through the kit only.
//! These run on any machine (with or without a `nixbld` group or an
//! `/etc/nix/nix.conf`) and would have caught a test relying on either.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Output;

use nixlive_testkit::nix::Nix;

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `nix show-config` as a map.
fn show_config(nix: &Nix) -> BTreeMap<String, String> {
    let out = nix.command("nix").arg("show-config").output().unwrap();
    assert!(out.status.success(), "nix show-config: {}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn nix_reads_only_the_project_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let nix = Nix::new(tmp.path());
    // A user configuration where Nix would look by default (in the kit's own
    // HOME and XDG dirs) asking for what broke the tests on a bare machine:
    // it must not be read.
    for dir in ["home/.config/nix", "xdg-config/nix", "xdg-config-dirs/nix"] {
        let d = nix.dir().join(dir);
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("nix.conf"),
            "build-users-group = nixbld\nsubstituters = https://cache.nixos.org\n",
        )
        .unwrap();
    }
    let conf = show_config(&nix);
    let get = |k: &str| conf.get(k).map(String::as_str);
    assert_eq!(get("build-users-group"), Some(""), "{conf:#?}");
    assert_eq!(get("substituters"), Some(""), "{conf:#?}");
    assert_eq!(get("builders"), Some(""), "{conf:#?}");
    assert_eq!(get("nix-path"), Some(""), "{conf:#?}");
    let store = nix.dir().join("default-store");
    assert_eq!(get("store"), store.to_str(), "{conf:#?}");
}

#[test]
fn a_build_needs_no_nixbld_group_and_no_network() {
    let machine_nix = Path::new("/nix").exists();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bb = d.join("bb");
    fs::create_dir(&bb).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is needed (scripts/install-deps.sh installs it)");
    fs::copy(busybox, bb.join("busybox")).unwrap();
    symlink("busybox", bb.join("sh")).unwrap();
    fs::write(
        d.join("t.nix"),
        r#"let bb = builtins.path { path = ./bb; name = "busybox"; }; in
derivation { name = "hermetic"; system = "x86_64-linux"; builder = "${bb}/sh";
  args = [ "-c" "echo built by $(id -u) > $out" ]; }"#,
    )
    .unwrap();
    let store = d.join("store");
    let nix = Nix::new(d);
    let out = nix
        .on_store("nix-build", &store)
        .arg(d.join("t.nix"))
        .arg("--no-out-link")
        .output()
        .unwrap();
    assert!(out.status.success(), "nix-build: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for bad in ["warning", "nixbld", "unable to download", "cache.nixos.org"] {
        assert!(!err.contains(bad), "nix-build said {bad:?}: {}", text(&out));
    }
    let path = String::from_utf8(out.stdout).unwrap();
    let path = path.trim();
    assert!(path.starts_with("/nix/store/") && path.ends_with("-hermetic"));
    // No build user was taken from a group: Nix 2.8 then builds in a user
    // namespace as uid 1000.
    let built = fs::read_to_string(store.join(path.trim_start_matches('/'))).unwrap();
    assert_eq!(built, "built by 1000\n");
    // The chroot store has its own state; the machine's /nix is not made.
    assert!(store.join("nix/var/nix/db/db.sqlite").is_file());
    assert!(
        machine_nix || !Path::new("/nix").exists(),
        "Nix created the machine's /nix"
    );
}

/// Every Nix program the tests run is run through the kit: a direct
/// `Command::new("nix...")` in test code would take the machine's
/// configuration.
#[test]
fn the_tests_run_nix_through_the_kit_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offenders = Vec::new();
    let mut seen = 0;
    let mut dirs: Vec<_> = [
        "builder/tests",
        "postboot/tests",
        "tests-vm/src",
        "tests-vm/tests",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                seen += 1;
                let src = fs::read_to_string(&p).unwrap();
                for (i, line) in src.lines().enumerate() {
                    if line.contains("Command::new(\"nix\")")
                        || line.contains("Command::new(\"nix-")
                    {
                        offenders.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(seen > 10, "found only {seen} test sources under {root:?}");
    assert!(
        offenders.is_empty(),
        "run Nix through nixlive_testkit::nix::Nix, not directly:\n{}",
        offenders.join("\n")
    );
}

//! Boots the demo ISO on an x86_64 PC from its CD drive (SeaBIOS, isolinux,
//! the medium found by its label) and checks the state stage 1 left, as the
//! demo system's init reports it.

use std::time::Duration;

use nixlive_tests_vm::{artifacts, run_to_report};

/// TCG on this machine; KVM, where it works, is far quicker.
const TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn demo_iso_boots_from_cd_by_label() {
    let (_tmp, iso) =
        artifacts::build_demo_iso_in_tempdir("NIXLIVE_TEST").unwrap_or_else(|e| panic!("{e}"));
    // The medium is to be found by its label, not by a fixed device name.
    let cfg_path = iso.medium.join("isolinux/isolinux.cfg");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap_or_else(|e| panic!("{}: {e}", cfg_path.display()));
    assert!(
        cfg.contains("root=LABEL=NIXLIVE_TEST"),
        "{} does not ask for the label:\n{cfg}",
        cfg_path.display()
    );

    let r = run_to_report(&iso.iso, TIMEOUT).unwrap();

    // Everything below fails with the whole report, so a mismatch is readable.
    let ctx = format!("{r:#?}");
    assert_eq!(r.arch, "x86_64", "{ctx}");

    let root = r.mount("/").unwrap_or_else(|| panic!("no / mount\n{ctx}"));
    assert_eq!(root.fstype, "tmpfs", "/ must be a tmpfs\n{ctx}");

    let medium = r
        .mount("/iso")
        .unwrap_or_else(|| panic!("no /iso mount\n{ctx}"));
    assert_eq!(medium.fstype, "iso9660", "{ctx}");

    let image = r
        .mount("/nix/.ro-store")
        .unwrap_or_else(|| panic!("no /nix/.ro-store mount\n{ctx}"));
    assert_eq!(image.fstype, "squashfs", "{ctx}");

    let store = r
        .mount("/nix/store")
        .unwrap_or_else(|| panic!("no /nix/store mount\n{ctx}"));
    assert_eq!(store.fstype, "overlay", "{ctx}");
    let lower = store
        .option("lowerdir")
        .unwrap_or_else(|| panic!("/nix/store has no lowerdir\n{ctx}"));
    assert!(
        lower.split(':').any(|l| l.ends_with("/nix/.ro-store")),
        "lowerdir {lower:?} lacks /nix/.ro-store\n{ctx}"
    );

    assert_eq!(r.postboot_exit, 0, "postboot failed\n{ctx}");
    let nixos = r.files.get("/etc/NIXOS").cloned().flatten();
    assert_eq!(
        nixos.map(|f| f.kind).as_deref(),
        Some("regular"),
        "/etc/NIXOS\n{ctx}"
    );

    let phases = r.stage1_phases();
    assert!(!phases.is_empty(), "stage1.json has no phases\n{ctx}");
    assert!(r.uptime_ms > 0, "{ctx}");
}

//! A medium whose store image is erofs (`nixlive iso --image-format
//! erofs`) boots: the image is `nix-store.erofs`, listed as erofs in the
//! manifest, mounted as erofs at `/nix/.ro-store` under the `/nix/store`
//! overlay, and postboot registers the store from the registration inside
//! it. The builder's `base` module set brings the kernel's erofs; the demo's
//! explicit module list gets it here.

use std::time::Duration;

use nixlive_formats::Manifest;
use nixlive_formats::paths::RO_STORE;
use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::{artifacts, boot_to_report, checks, media};

const TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn an_erofs_medium_boots_with_its_store_registered() {
    let dir = media::work_dir("erofs-boot").unwrap();
    let mut spec = artifacts::DemoSpec::new(Arch::X86_64, "NIXLIVE_EROFS");
    spec.modules.push("erofs".into());
    spec.builder_args = vec!["--image-format".into(), "erofs".into()];
    let demo = artifacts::build_demo(&dir, &spec).unwrap_or_else(|e| panic!("{e}"));

    // The medium carries an erofs image, and no squashfs.
    let image = demo.medium.join("nix-store.erofs");
    let magic = std::fs::read(&image)
        .unwrap_or_else(|e| panic!("{}: {e}", image.display()))
        .get(1024..1028)
        .map(<[u8]>::to_vec);
    assert_eq!(
        magic.as_deref(),
        Some(&[0xe2, 0xe1, 0xf5, 0xe0][..]),
        "no erofs superblock"
    );
    assert!(!demo.medium.join("nix-store.squashfs").exists());
    let text =
        std::fs::read_to_string(demo.medium.join(nixlive_formats::manifest::DEFAULT_PATH)).unwrap();
    let manifest = Manifest::parse(&text).unwrap();
    assert_eq!(manifest.images.len(), 1, "{text}");
    assert_eq!(manifest.images[0].name, "nix-store.erofs");
    assert_eq!(manifest.images[0].fs.as_str(), "erofs");

    let run = boot_to_report(&demo.iso, TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let r = &run.report;
    checks::live_system(r, "x86_64").unwrap_or_else(|e| panic!("{e}"));
    let ro = r
        .mount(RO_STORE)
        .unwrap_or_else(|| panic!("no {RO_STORE} mount\n{r:#?}"));
    assert_eq!(ro.fstype, "erofs", "{r:#?}");
    // Through dm-verity (the builder's default) over the loop device.
    assert!(
        ro.source.starts_with("/dev/loop") || ro.source.starts_with("/dev/dm-"),
        "{r:#?}"
    );
    let out = r.postboot_out.join("\n");
    assert!(
        out.contains("with the native loader") && out.contains("loaded "),
        "postboot did not register the store:\n{out}"
    );
}

//! What stage 1 builds the store from (issue 3): `copytoram` copies the
//! images into RAM and lets go of the medium (the CD can be ejected while
//! the system runs), refuses with a message and boots from the medium when
//! RAM is short, and a manifest with two images stacks both in the overlay,
//! the first on top.
//!
//! One medium serves all three: its store holds a 128 MiB incompressible
//! file (so that it does not fit into a small machine's RAM) and a file that
//! the second layer shadows.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nixlive_tests_vm::media::{self, Booted, Live, PROBE, PROBE_INIT, PROBE_SHOWS};
use nixlive_tests_vm::qmp::Qmp;
use nixlive_tests_vm::{QemuCommand, Vm, kvm};

const TIMEOUT: Duration = Duration::from_secs(150);
const LABEL: &str = "NIXLIVE_STORE";
const PAD_MIB: u64 = 128;
/// Enough for the images and init's 256 MiB reserve.
const BIG_MIB: u32 = 1024;
/// Less than the images plus the reserve, enough to boot from the medium.
const SMALL_MIB: u32 = 384;
const MODULES: &[&str] = &[
    "ata_piix",
    "sr_mod",
    "isofs",
    "virtio_pci",
    "virtio_blk",
    "ext4",
    "crc32c_generic",
    "loop",
    "squashfs",
    "overlay",
];

const MEDIUM_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl medium\n";

struct Fixture {
    live: Live,
    /// ext4 (label LABEL) with the medium and a second image in its manifest.
    layered: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build().unwrap_or_else(|e| panic!("building the media: {e}")))
}

fn write(path: &std::path::Path, text: &[u8]) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn build() -> Result<Fixture, String> {
    let started = Instant::now();
    let dir = media::work_dir("init-store")?;
    let probe = PROBE.trim_start_matches('/');
    let live = media::build_live(&dir.join("live"), LABEL, MODULES, &|root| {
        let shows = root.join(probe).join(PROBE_SHOWS);
        write(&shows.join("shadowed"), b"from-image-0")?;
        write(&shows.join("only-in-0"), b"from-image-0")?;
        // Random bytes do not compress: the image really is this large.
        let mut pad = vec![0u8; (PAD_MIB << 20) as usize];
        let mut rng = std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?;
        std::io::Read::read_exact(&mut rng, &mut pad).map_err(|e| e.to_string())?;
        write(&root.join(probe).join("padding"), &pad)
    })?;
    // The second image: the same store path, with one file the first image
    // also has and one of its own.
    let layer = dir.join("layer1");
    let shows = layer
        .join(PROBE.trim_start_matches("/nix/store/"))
        .join(PROBE_SHOWS);
    write(&shows.join("shadowed"), b"from-image-1")?;
    write(&shows.join("only-in-1"), b"from-image-1")?;
    let tree = dir.join("layered-tree");
    let mut cp = std::process::Command::new("cp");
    cp.arg("-a").arg(&live.medium).arg(&tree);
    media::run(cp)?;
    // A key on the medium, as a user drops it onto a stick: copytoram lets
    // the medium go before postboot runs, and the key must still arrive.
    write(&tree.join("nixlive/authorized_keys"), MEDIUM_KEY.as_bytes())?;
    media::squashfs(&layer, &tree.join("layer1.squashfs"))?;
    media::append_layer(&tree, "layer1.squashfs")?;
    let layered = dir.join("layered.img");
    media::ext4_image(
        &tree,
        &layered,
        LABEL,
        "22222222-3333-4444-8555-666666666666",
    )?;
    eprintln!("media built in {:.1?}", started.elapsed());
    Ok(Fixture { live, layered })
}

/// A PC with the ISO in an IDE CD drive that QMP knows as `cd0`.
fn with_cd(live: &Live, append: &str, mem: u32) -> QemuCommand {
    let mut drive = std::ffi::OsString::from("if=none,id=cdimg,media=cdrom,readonly=on,file=");
    drive.push(&live.iso);
    QemuCommand::x86_64_direct(live, append, mem, kvm::accel())
        .arg("-drive")
        .arg(drive)
        .arg("-device")
        .arg("ide-cd,drive=cdimg,id=cd0")
}

/// The images are mounted from loop devices whose backing files are not on
/// the medium.
fn assert_images_in_ram(b: &Booted) {
    let ctx = b.context();
    let loops = b.probe_loops();
    assert!(!loops.is_empty(), "no loop devices\n{ctx}");
    for (dev, file) in &loops {
        assert!(
            file.starts_with("/nix/.images/"),
            "{dev} is backed by {file}, not a copy in RAM\n{ctx}"
        );
    }
}

#[test]
fn copytoram_lets_the_cd_be_ejected() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let cmd = with_cd(
        &f.live,
        &format!("root=LABEL={LABEL} copytoram init={PROBE_INIT} nixlive_test.pause"),
        BIG_MIB,
    )
    .with_qmp(&sock);
    let vm = Vm::spawn(&cmd, TIMEOUT + Duration::from_secs(40)).unwrap();
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for(media::PROBE_PAUSED, TIMEOUT).unwrap();
    // Without `force`, QEMU refuses while the guest keeps the tray locked,
    // which it does for as long as anything has the CD open.
    qmp.execute("eject", serde_json::json!({ "id": "cd0" }))
        .unwrap_or_else(|e| panic!("{}", vm.failure(format!("stage 2 running: {e}"))));
    let blocks = qmp
        .execute("query-block", serde_json::json!({}))
        .unwrap_or_else(|e| panic!("{}", vm.failure(e)));
    let cd = blocks
        .as_array()
        .and_then(|a| a.iter().find(|d| d["qdev"] == "cd0"))
        .cloned()
        .unwrap_or_else(|| panic!("{}", vm.failure(format!("no cd0 in {blocks}"))));
    assert!(
        cd.get("inserted").is_none(),
        "{}",
        vm.failure(format!("the CD is still in: {cd}"))
    );
    let b = media::finish(&vm, TIMEOUT).unwrap();
    let ctx = b.context();
    assert!(
        b.report.mount("/iso").is_none(),
        "/iso still mounted\n{ctx}"
    );
    assert!(
        !b.report.mounts.iter().any(|m| m.source == "/dev/sr0"),
        "/dev/sr0 still mounted\n{ctx}"
    );
    assert_images_in_ram(&b);
    let images = b
        .report
        .mount("/nix/.images")
        .unwrap_or_else(|| panic!("no /nix/.images tmpfs\n{ctx}"));
    assert_eq!(images.fstype, "tmpfs", "{ctx}");
    let lines = b.init_lines();
    assert!(
        lines.iter().any(|l| l.contains("digests verified")),
        "{ctx}"
    );
    assert!(
        b.serial_log.contains("copying to RAM: 100%"),
        "no progress line\n{ctx}"
    );
    assert!(b.serial_log.contains("can be removed"), "{ctx}");
}

#[test]
fn copytoram_without_enough_ram_boots_from_the_medium() {
    let f = fixture();
    let cmd = with_cd(
        &f.live,
        &format!("root=LABEL={LABEL} copytoram init={PROBE_INIT}"),
        SMALL_MIB,
    );
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    let ctx = b.context();
    let refusal = b
        .serial_log
        .lines()
        .find(|l| l.contains("copytoram: the images need"))
        .unwrap_or_else(|| panic!("no refusal message\n{ctx}"));
    assert!(
        refusal.contains("booting from the medium instead"),
        "{refusal}\n{ctx}"
    );
    let iso = b
        .report
        .mount("/iso")
        .unwrap_or_else(|| panic!("no /iso\n{ctx}"));
    assert_eq!(
        (iso.fstype.as_str(), iso.source.as_str()),
        ("iso9660", "/dev/sr0"),
        "{ctx}"
    );
    assert!(b.report.mount("/nix/.images").is_none(), "{ctx}");
    let loops = b.probe_loops();
    assert!(
        loops
            .iter()
            .any(|(_, file)| file == "/iso/nix-store.squashfs"),
        "the image is not read from the medium: {loops:?}\n{ctx}"
    );
}

#[test]
fn two_images_stack_with_the_first_on_top() {
    let f = fixture();
    let cmd = QemuCommand::x86_64_direct(
        &f.live,
        &format!("root=LABEL={LABEL} init={PROBE_INIT} nixlive.verify"),
        BIG_MIB,
        kvm::accel(),
    )
    .virtio_disk(&f.layered);
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    let ctx = b.context();
    let shows = format!("{PROBE}/{PROBE_SHOWS}");
    let files = b.probe_files();
    let get = |name: &str| files.get(&format!("{shows}/{name}")).map(String::as_str);
    assert_eq!(get("shadowed"), Some("from-image-0"), "{files:?}\n{ctx}");
    assert_eq!(get("only-in-0"), Some("from-image-0"), "{files:?}\n{ctx}");
    assert_eq!(get("only-in-1"), Some("from-image-1"), "{files:?}\n{ctx}");
    for (i, name) in ["nix-store.squashfs", "layer1.squashfs"].iter().enumerate() {
        let m = b
            .report
            .mount(&format!("/nix/.ro-store/{i}"))
            .unwrap_or_else(|| panic!("no /nix/.ro-store/{i}\n{ctx}"));
        assert_eq!(m.fstype, "squashfs", "{ctx}");
        let backing = b.probe_loops();
        let dev = m.source.trim_start_matches("/dev/");
        // The builder's image comes through dm-verity over its loop device;
        // the hand-made layer (no verity tree) straight from its loop.
        assert!(
            backing
                .iter()
                .any(|(d, file)| (d == dev || dev.starts_with("dm-"))
                    && file == &format!("/iso/{name}")),
            "/nix/.ro-store/{i} is not {name}: {backing:?}\n{ctx}"
        );
    }
    let store = b.report.mount("/nix/store").unwrap();
    assert_eq!(
        store.option("lowerdir"),
        Some("/mnt-root/nix/.ro-store/0:/mnt-root/nix/.ro-store/1"),
        "{ctx}"
    );
    assert!(
        b.init_said("/mnt-root/iso/layer1.squashfs: sha256 verified"),
        "nixlive.verify did not check the second image\n{ctx}"
    );
}

#[test]
fn copytoram_keeps_the_ssh_keys_of_the_medium() {
    let f = fixture();
    let cmd = QemuCommand::x86_64_direct(
        &f.live,
        "root=UUID=22222222-3333-4444-8555-666666666666 copytoram",
        BIG_MIB,
        kvm::accel(),
    )
    .virtio_disk(&f.layered);
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    let ctx = b.context();
    assert!(
        b.report.mount("/iso").is_none(),
        "the medium is still mounted\n{ctx}"
    );
    assert!(
        b.init_said("SSH keys from /iso/nixlive/authorized_keys carried over"),
        "{ctx}"
    );
    let key = b
        .report
        .files
        .get("/root/.ssh/authorized_keys")
        .cloned()
        .flatten();
    assert!(key.is_some(), "the medium's key was not installed\n{ctx}");
    assert!(
        b.report
            .postboot_out
            .iter()
            .any(|l| l.contains("ssh:") && !l.contains("no keys")),
        "{ctx}"
    );
}

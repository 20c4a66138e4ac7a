//! Authenticity (issue 11): a medium signed with a Nix binary-cache key
//! (made by `nix-store --generate-binary-cache-key`, run hermetically),
//! its images read through dm-verity, and an initrd that trusts the key.
//!
//! One signed medium serves every test; the bad ones are copies of it with
//! one byte changed (in the squashfs, or in the manifest), or its signature
//! taken away, put on ext4 disks with the same label.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_testkit::nix::Nix;
use nixlive_tests_vm::boot_modes::BootMode;
use nixlive_tests_vm::media::{self, Booted, Live, PROBE, PROBE_INIT, PROBE_READS, PROBE_SHOWS};
use nixlive_tests_vm::qmp::Qmp;
use nixlive_tests_vm::{QemuCommand, Vm, arch::Arch, artifacts, kvm};

const TIMEOUT: Duration = Duration::from_secs(150);
const LABEL: &str = "NIXLIVE_SIGNED";
const KEY: &str = "nixlive-vm-test-1";
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
/// A file the probe reads; one byte of its data is changed on one medium.
const PAYLOAD: &str = "payload";
/// Large, so that the changed block is far from the probe's busybox (the
/// kernel reads ahead; a read that takes in the changed block fails whole).
const PAYLOAD_LEN: usize = 4 << 20;

struct Fixture {
    live: Live,
    /// The medium tree on ext4 (label LABEL): as built, with one byte of the
    /// squashfs changed, with one byte of the manifest changed, unsigned.
    good: PathBuf,
    tampered: PathBuf,
    bad_manifest: PathBuf,
    unsigned: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build().unwrap_or_else(|e| panic!("building the media: {e}")))
}

pub(crate) fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    media::run({
        let mut c = std::process::Command::new("cp");
        c.arg("-a").arg(from).arg(to);
        c
    })
    .map(|_| ())
}

/// A key pair named `key` made by real Nix in `dir`, and the builder's
/// arguments that sign the medium with it and make the initrd trust it.
pub(crate) fn signing_args(dir: &Path, key: &str) -> Result<Vec<String>, String> {
    let nix = Nix::new(dir);
    let (secret, public) = (dir.join("key.secret"), dir.join("key.public"));
    let mut keygen = nix.command("nix-store");
    keygen
        .args(["--generate-binary-cache-key", key])
        .arg(&secret)
        .arg(&public);
    media::run(keygen)?;
    Ok(vec![
        "--sign-key".into(),
        secret.display().to_string(),
        "--trusted-key".into(),
        public.display().to_string(),
    ])
}

fn build() -> Result<Fixture, String> {
    let dir = media::work_dir("authenticity")?;
    let mut spec = artifacts::DemoSpec::new(Arch::X86_64, LABEL);
    spec.modules = MODULES.iter().map(|m| m.to_string()).collect();
    // The ISO also boots as a USB disk.
    spec.module_sets = vec!["usb".into()];
    spec.builder_args = signing_args(&dir, KEY)?;
    let live = media::build_live_spec(&dir.join("live"), &spec, &|root| {
        let probe = root.join(PROBE.trim_start_matches('/'));
        let (shows, reads) = (probe.join(PROBE_SHOWS), probe.join(PROBE_READS));
        for d in [&shows, &reads] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        std::fs::write(reads.join(PAYLOAD), noise(PAYLOAD_LEN)).map_err(|e| e.to_string())?;
        std::fs::write(shows.join("intact"), b"readable").map_err(|e| e.to_string())
    })?;
    let disk = |tree: &Path, name: &str, n: u8| -> Result<PathBuf, String> {
        let img = dir.join(format!("{name}.ext4"));
        let uuid = format!("7a7e0000-0000-4000-8000-0000000000{n:02}");
        media::ext4_image(tree, &img, LABEL, &uuid)?;
        Ok(img)
    };
    let good = disk(&live.medium, "good", 1)?;

    // One byte in the middle of the payload's data, inside the squashfs.
    let tampered_tree = dir.join("tampered");
    copy_tree(&live.medium, &tampered_tree)?;
    let img = tampered_tree.join("nix-store.squashfs");
    let mut bytes = std::fs::read(&img).map_err(|e| e.to_string())?;
    let probe = &noise(PAYLOAD_LEN)[3_000_000..3_000_064];
    let at = bytes
        .windows(probe.len())
        .position(|w| w == probe)
        .ok_or("the payload is not stored as it is in the squashfs")?;
    bytes[at + 10] ^= 0x01;
    std::fs::write(&img, &bytes).map_err(|e| e.to_string())?;
    let tampered = disk(&tampered_tree, "tampered", 2)?;

    // One byte of the manifest: a digit of the image's sha256.
    let manifest_of = |tree: &Path| tree.join("nixlive.manifest");
    let bad_tree = dir.join("bad-manifest");
    copy_tree(&live.medium, &bad_tree)?;
    let text = std::fs::read_to_string(manifest_of(&bad_tree)).map_err(|e| e.to_string())?;
    let i = text.find("sha256:").ok_or("no sha256 in the manifest")? + 7;
    let mut changed = text.into_bytes();
    changed[i] = if changed[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(manifest_of(&bad_tree), changed).map_err(|e| e.to_string())?;
    let bad_manifest = disk(&bad_tree, "bad-manifest", 3)?;

    let unsigned_tree = dir.join("unsigned");
    copy_tree(&live.medium, &unsigned_tree)?;
    let text = std::fs::read_to_string(manifest_of(&unsigned_tree)).map_err(|e| e.to_string())?;
    let stripped = nixlive_formats::manifest::signed_part(&text);
    assert_ne!(stripped, text, "the medium was not signed:\n{text}");
    std::fs::write(manifest_of(&unsigned_tree), stripped).map_err(|e| e.to_string())?;
    let unsigned = disk(&unsigned_tree, "unsigned", 4)?;
    Ok(Fixture {
        live,
        good,
        tampered,
        bad_manifest,
        unsigned,
    })
}

fn direct(append: &str, mem_mib: u32) -> QemuCommand {
    QemuCommand::x86_64_direct(&fixture().live, append, mem_mib, kvm::accel())
}

fn boot(cmd: &QemuCommand) -> Booted {
    media::boot(cmd, TIMEOUT).unwrap_or_else(|f| panic!("{f}"))
}

/// The checks stage1.json records, per image.
fn checks(b: &Booted) -> Vec<(String, String)> {
    b.report
        .stage1
        .as_ref()
        .map(|t| {
            t.images
                .iter()
                .map(|i| (i.name.clone(), i.check.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The signed, verity-protected medium: every image through dm-verity,
/// the manifest's key named, all of it mounted nosuid,nodev.
fn assert_authentic(b: &Booted, ctx: &str) {
    let r = &b.report;
    nixlive_tests_vm::checks::live_system(r, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    let image = r.mount("/nix/.ro-store").expect("no image");
    assert!(
        image.source.starts_with("/dev/dm-"),
        "the image is not read through dm-verity: {image:?}\n{ctx}"
    );
    assert_eq!(
        checks(b),
        [("nix-store.squashfs".to_string(), "dm-verity".to_string())],
        "{ctx}"
    );
    assert!(
        b.init_said(&format!("signed by the trusted key {KEY}")),
        "init did not name the key\n{ctx}"
    );
}

#[test]
fn signed_verity_iso_boots_from_cd_and_usb() {
    let f = fixture();
    for mode in [BootMode::BiosCd, BootMode::BiosUsb] {
        let scratch = tempfile::tempdir().unwrap();
        let cmd = QemuCommand::x86_64_boot(mode, &f.live.iso, kvm::accel(), scratch.path());
        let b = boot(&cmd);
        let ctx = format!("{mode:?}\n{}", b.context());
        assert_authentic(&b, &ctx);
        let medium = b.report.mount("/iso").expect("no /iso");
        let want = if mode.usb() { "/dev/sd" } else { "/dev/sr0" };
        assert!(medium.source.starts_with(want), "{medium:?}\n{ctx}");
    }
}

#[test]
fn a_changed_block_fails_with_eio_and_the_rest_boots() {
    let f = fixture();
    let cmd =
        direct(&format!("root=LABEL={LABEL} init={PROBE_INIT}"), 512).virtio_disk(&f.tampered);
    let b = boot(&cmd);
    let ctx = b.context();
    assert_authentic(&b, &ctx);
    let files = b.probe_files();
    let shown = files
        .iter()
        .find(|(k, _)| k.ends_with(&format!("/{PROBE_SHOWS}/intact")))
        .map(|(_, v)| v.as_str());
    assert_eq!(shown, Some("readable"), "{ctx}");
    let read = b
        .probe
        .iter()
        .find_map(|l| {
            l.strip_prefix("read ")?
                .split_once(&format!("/{PROBE_READS}/{PAYLOAD} "))
        })
        .map(|(_, how)| how.to_string())
        .unwrap_or_else(|| panic!("the probe did not read {PAYLOAD}\n{ctx}"));
    assert!(
        read.contains("Input/output error"),
        "reading the changed file gave {read:?}, not EIO\n{ctx}"
    );
    assert!(
        b.serial_log.contains("device-mapper: verity") && b.serial_log.contains("is corrupted"),
        "the kernel did not report the block\n{ctx}"
    );
    // Mounted read-only, nosuid and nodev: the medium and the image.
    let mounts: Vec<String> = b
        .probe
        .iter()
        .filter_map(|l| l.strip_prefix("mounts "))
        .map(str::to_string)
        .collect();
    for point in [" /iso ", " /nix/.ro-store "] {
        let m = mounts
            .iter()
            .find(|m| m.contains(point))
            .unwrap_or_else(|| panic!("no{point}mount: {mounts:?}\n{ctx}"));
        for flag in ["ro", "nosuid", "nodev"] {
            assert!(
                m.split(' ')
                    .nth(3)
                    .unwrap_or("")
                    .split(',')
                    .any(|o| o == flag),
                "{m} lacks {flag}\n{ctx}"
            );
        }
    }
}

/// Waits for init's failure screen; returns it.
fn refused(cmd: &QemuCommand) -> (Vm, String) {
    let vm = Vm::spawn(cmd, TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let console = vm
        .wait_for_stage1_failure(TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    (vm, console)
}

fn assert_says(vm: &Vm, console: &str, wants: &[&str]) {
    for want in wants {
        if !console.contains(want) {
            panic!(
                "{}",
                vm.failure(format!("the failure message lacks {want:?}"))
            );
        }
    }
}

#[test]
fn a_changed_manifest_is_refused_naming_the_key() {
    let f = fixture();
    let cmd =
        direct(&format!("root=LABEL={LABEL} nixlive.timeout=5"), 512).virtio_disk(&f.bad_manifest);
    let (vm, console) = refused(&cmd);
    assert_says(
        &vm,
        &console,
        &[
            &format!("timed out after 5 s waiting for the boot medium LABEL={LABEL}"),
            &format!(
                "skipped, not authentic: /dev/vda: its signature by the trusted key {KEY} \
                 does not match its contents"
            ),
        ],
    );
}

#[test]
fn an_unsigned_medium_is_refused() {
    let f = fixture();
    // By device name: found at once, then refused after it is mounted.
    let cmd = direct("root=/dev/vda nixlive.timeout=5", 512).virtio_disk(&f.unsigned);
    let (vm, console) = refused(&cmd);
    assert_says(
        &vm,
        &console,
        &[
            "skipped, not authentic: /dev/vda: it is not signed, and the initrd trusts only",
            KEY,
        ],
    );
}

/// The stick with a bad signature is there from the start; the real medium
/// is plugged in while init waits, and wins.
#[test]
fn a_bad_stick_plugged_in_first_is_skipped() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let cmd = direct(&format!("root=LABEL={LABEL} nixlive.timeout=60"), 512)
        .virtio_disk(&f.bad_manifest)
        .on_q35()
        .arg("-device")
        .arg("pcie-root-port,id=rp1,bus=pcie.0,chassis=1")
        .with_qmp(&sock);
    let vm = Vm::spawn(&cmd, TIMEOUT + Duration::from_secs(40)).unwrap();
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for("skipping /dev/vda", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let plug = |q: &mut Qmp| -> Result<(), String> {
        q.execute(
            "blockdev-add",
            serde_json::json!({
                "driver": "raw",
                "node-name": "good0",
                "read-only": true,
                "file": { "driver": "file", "filename": f.good, "read-only": true },
            }),
        )?;
        q.execute(
            "device_add",
            serde_json::json!({
                "driver": "virtio-blk-pci", "id": "gooddisk", "drive": "good0", "bus": "rp1",
            }),
        )?;
        Ok(())
    };
    plug(&mut qmp).unwrap_or_else(|e| panic!("{}", vm.failure(e)));
    let b = media::finish(&vm, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let ctx = b.context();
    assert_authentic(&b, &ctx);
    assert_eq!(
        b.report.mount("/iso").map(|m| m.source.as_str()),
        Some("/dev/vdb"),
        "{ctx}"
    );
    assert!(
        b.init_said(&format!(
            "skipping /dev/vda: it is LABEL={LABEL}, but it is not authentic: its signature by \
             the trusted key {KEY} does not match its contents; still looking"
        )),
        "{ctx}"
    );
}

#[test]
fn verify_with_copytoram_refused_still_checks_every_image() {
    let f = fixture();
    // Too small to copy (init keeps 256 MiB free): the images stay on the
    // medium, and are checked all the same.
    let cmd =
        direct(&format!("root=LABEL={LABEL} nixlive.verify copytoram"), 256).virtio_disk(&f.good);
    let b = boot(&cmd);
    let ctx = b.context();
    assert!(b.init_said("copytoram: the images need"), "{ctx}");
    assert_authentic(&b, &ctx);
    assert_eq!(
        b.report.mount("/iso").map(|m| m.source.as_str()),
        Some("/dev/vda"),
        "{ctx}"
    );
}

/// The same signing and verity on the aarch64 `virt` machine (TCG): the
/// signed ISO, as a virtio disk, boots with its image through dm-verity and
/// the key named; the same ISO with one byte of its manifest changed is
/// refused, naming the key. The kernel and initrd are given directly (the
/// UEFI path is covered by the matrix; what is under test is init).
#[test]
fn aarch64_signed_verity_boots_and_a_changed_manifest_is_refused() {
    const ARM_LABEL: &str = "NIXLIVE_SIGNED_ARM";
    const ARM_TIMEOUT: Duration = Duration::from_secs(300);
    let dir = media::work_dir("authenticity-aarch64").unwrap();
    let mut spec = artifacts::DemoSpec::new(Arch::Aarch64, ARM_LABEL);
    spec.builder_args = signing_args(&dir, KEY).unwrap_or_else(|e| panic!("{e}"));
    let demo = artifacts::build_demo(&dir.join("live"), &spec).unwrap_or_else(|e| panic!("{e}"));

    // The bad ISO: the manifest's bytes are stored once, as they are; one
    // digit of the image's sha256 in them is changed.
    let manifest = std::fs::read(demo.medium.join("nixlive.manifest")).unwrap();
    let mut iso = std::fs::read(&demo.iso).unwrap();
    let at: Vec<usize> = iso
        .windows(manifest.len())
        .enumerate()
        .filter(|(_, w)| *w == manifest.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the manifest is not stored once in the ISO");
    let text = String::from_utf8(manifest.clone()).unwrap();
    let i = at[0] + text.find("sha256:").expect("no sha256 in the manifest") + 7;
    iso[i] = if iso[i] == b'0' { b'1' } else { b'0' };
    let bad_iso = dir.join("bad-manifest.iso");
    std::fs::write(&bad_iso, &iso).unwrap();

    let arm = |iso: &Path, append: &str| {
        Arch::Aarch64
            .qemu(kvm::accel())
            .arg("-kernel")
            .arg(&demo.kernel)
            .arg("-initrd")
            .arg(demo.initrd())
            .arg("-append")
            .arg(format!("{} root=LABEL={ARM_LABEL} {append}", spec.append))
            .virtio_disk(iso)
    };

    let b = media::boot(&arm(&demo.iso, ""), ARM_TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let ctx = b.context();
    let r = &b.report;
    nixlive_tests_vm::checks::live_system(r, "aarch64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    let image = r.mount("/nix/.ro-store").expect("no image");
    assert!(image.source.starts_with("/dev/dm-"), "{image:?}\n{ctx}");
    assert_eq!(
        checks(&b),
        [("nix-store.squashfs".to_string(), "dm-verity".to_string())],
        "{ctx}"
    );
    assert!(
        b.init_said(&format!("signed by the trusted key {KEY}")),
        "init did not name the key\n{ctx}"
    );

    let vm = Vm::spawn(&arm(&bad_iso, "nixlive.timeout=5"), ARM_TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    let console = vm
        .wait_for_stage1_failure(ARM_TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    assert_says(
        &vm,
        &console,
        &[&format!(
            "skipped, not authentic: /dev/vda: its signature by the trusted key {KEY} \
             does not match its contents"
        )],
    );
}

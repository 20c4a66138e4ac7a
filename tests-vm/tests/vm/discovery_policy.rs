//! Discovery's policy among several devices (issue 25): a device that
//! changes during the search is looked at again (a CD swapped in the
//! drive), a device with the medium's label that cannot be a live medium
//! is skipped and named with its reason while the search goes on to the
//! real one, and when every candidate fails the failure lists each with
//! why.
//!
//! The kernel and the builder's initrd are booted directly; the medium is
//! the builder's ISO, or its tree on a FAT32 USB stick. The decoys are
//! made with the real tools (xorriso, mkfs.ext4).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_tests_vm::media::{self, Booted, Live};
use nixlive_tests_vm::qmp::Qmp;
use nixlive_tests_vm::{QemuCommand, Vm, arch::Arch, artifacts, kvm};

/// Waiting for the report, TCG; a boot takes about 25 s here.
const TIMEOUT: Duration = Duration::from_secs(150);

/// At most 11 characters: the USB stick's FAT label carries it too.
const LABEL: &str = "NIXLIVE_POL";

const MODULES: &[&str] = &[
    "ata_piix",
    "sr_mod",
    "isofs",
    "virtio_pci",
    "virtio_blk",
    "xhci_pci",
    "usb-storage",
    "sd_mod",
    "ext4",
    "crc32c_generic",
    "vfat",
    "nls_cp437",
    "nls_iso8859-1",
    "nls_utf8",
    "nls_ascii",
    "loop",
    "squashfs",
    "overlay",
];

struct Fixture {
    live: Live,
    /// An ISO labelled `NIXLIVE_OTHER` holding a text file: the wrong disc.
    wrong_disc: PathBuf,
    /// ext4 labelled LABEL with data only: no manifest, no stock image.
    data_ext4: PathBuf,
    /// ext4 labelled LABEL whose `nixlive.manifest` is a FIFO.
    fifo_ext4: PathBuf,
    /// FAT32 labelled LABEL with the medium tree.
    stick: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build().unwrap_or_else(|e| panic!("building the media: {e}")))
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    media::run(cmd).map(drop)
}

fn build() -> Result<Fixture, String> {
    let dir = media::work_dir("discovery-policy")?;
    let live = media::build_live(&dir.join("live"), LABEL, MODULES, &|_| Ok(()))?;
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };

    let other = dir.join("other-tree");
    let _ = std::fs::remove_dir_all(&other);
    std::fs::create_dir_all(&other).map_err(io("other tree"))?;
    std::fs::write(other.join("README.txt"), b"holiday photos\n").map_err(io("README"))?;
    let wrong_disc = dir.join("wrong.iso");
    let _ = std::fs::remove_file(&wrong_disc);
    run(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-J",
            "-R",
            "-V",
            "NIXLIVE_OTHER",
            "-o",
        ]
        .map(std::ffi::OsStr::new)
        .into_iter()
        .chain([wrong_disc.as_os_str(), other.as_os_str()])
        .collect::<Vec<_>>(),
    )?;

    let data = dir.join("data-tree");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(data.join("photos")).map_err(io("data tree"))?;
    std::fs::write(data.join("photos/a.txt"), b"not a live medium\n").map_err(io("data"))?;
    let data_ext4 = dir.join("data.ext4");
    media::ext4_image(
        &data,
        &data_ext4,
        LABEL,
        "5d1a0000-0000-4000-8000-000000000001",
    )?;

    // A FIFO where the manifest should be: mkfs.ext4 -d copies it as one.
    let fifo = dir.join("fifo-tree");
    let _ = std::fs::remove_dir_all(&fifo);
    std::fs::create_dir_all(&fifo).map_err(io("fifo tree"))?;
    run("mkfifo", &[fifo.join("nixlive.manifest").as_os_str()])?;
    let fifo_ext4 = dir.join("fifo.ext4");
    media::ext4_image(
        &fifo,
        &fifo_ext4,
        LABEL,
        "5d1a0000-0000-4000-8000-000000000002",
    )?;

    let stick = dir.join("stick.fat32");
    media::fat32_image(&live.medium, &stick, LABEL)?;
    Ok(Fixture {
        live,
        wrong_disc,
        data_ext4,
        fifo_ext4,
        stick,
    })
}

fn pc(append: &str) -> QemuCommand {
    QemuCommand::x86_64_direct(&fixture().live, append, 1024, kvm::accel())
}

/// A USB stick (xHCI, usb-storage) holding `image`.
fn usb_stick(cmd: QemuCommand, image: &Path) -> QemuCommand {
    let mut stick = std::ffi::OsString::from("if=none,id=stick,format=raw,readonly=on,file=");
    stick.push(image);
    cmd.arg("-device")
        .arg("qemu-xhci,id=xhci")
        .arg("-drive")
        .arg(stick)
        .arg("-device")
        .arg("usb-storage,bus=xhci.0,drive=stick,removable=on")
}

/// The medium mounted at /iso came from `source` with `fstype`, and the
/// store overlay was built on it.
fn assert_booted_from(b: &Booted, fstype: &str, source: &str) {
    let ctx = b.context();
    let iso = b
        .report
        .mount("/iso")
        .unwrap_or_else(|| panic!("no /iso mount\n{ctx}"));
    assert_eq!(
        (iso.fstype.as_str(), iso.source.as_str()),
        (fstype, source),
        "/iso\n{ctx}"
    );
    let store = b
        .report
        .mount("/nix/store")
        .unwrap_or_else(|| panic!("no /nix/store mount\n{ctx}"));
    assert_eq!(store.fstype, "overlay", "{ctx}");
    assert_eq!(b.report.postboot_exit, 0, "{ctx}");
}

/// The wrong disc is in the CD drive when init begins to search; once init
/// has read it, the disc is swapped for the live ISO (QMP
/// `blockdev-change-medium`, as a user swapping discs). The kernel
/// announces the change, init reads the drive again, and the live ISO
/// boots from it, well inside the budget.
#[test]
fn a_cd_swapped_during_the_search_boots() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let mut cd = std::ffi::OsString::from("if=none,id=cd,media=cdrom,readonly=on,file=");
    cd.push(&f.wrong_disc);
    // boot.trace: init logs each device it reads, the wrong disc too
    // (at debug level: loglevel=8 has the console show it).
    let cmd = pc(&format!(
        "root=LABEL={LABEL} nixlive.timeout=90 boot.trace loglevel=8"
    ))
    .arg("-drive")
    .arg(cd)
    .arg("-device")
    .arg("ide-cd,drive=cd,id=cd0")
    .with_qmp(&sock);
    let vm = Vm::spawn(&cmd, TIMEOUT + Duration::from_secs(90)).unwrap();
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for("waiting for the medium", TIMEOUT).unwrap();
    // Swapped only once init has read the wrong disc.
    vm.wait_for("label=NIXLIVE_OTHER", TIMEOUT).unwrap();
    qmp.execute(
        "blockdev-change-medium",
        serde_json::json!({
            "id": "cd0",
            "filename": f.live.iso,
            "format": "raw",
            "read-only-mode": "read-only",
            "force": true,
        }),
    )
    .unwrap_or_else(|e| panic!("{}", vm.failure(e)));
    let b = media::finish(&vm, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let ctx = b.context();
    assert_booted_from(&b, "iso9660", "/dev/sr0");
    assert!(
        b.init_said("/dev/sr0 was removed or its medium changed: reading it again")
            || b.init_said("/dev/sr0 is another device now"),
        "init did not say it read the drive again\n{ctx}"
    );
    assert!(!ctx.contains("timed out"), "{ctx}");
}

/// Without a key: a plain ext4 data partition labelled like the medium on
/// the first virtio disk, another whose `nixlive.manifest` is a FIFO on the
/// second, and the real medium on a USB stick. Both decoys are skipped and
/// named with their reasons, and the stick boots.
#[test]
fn same_label_disks_that_are_not_a_medium_are_skipped() {
    let f = fixture();
    let cmd = usb_stick(
        pc(&format!("root=LABEL={LABEL} nixlive.timeout=90"))
            .virtio_disk(&f.data_ext4)
            .virtio_disk(&f.fifo_ext4),
        &f.stick,
    );
    let b = media::boot(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let ctx = b.context();
    assert_booted_from(&b, "vfat", "/dev/sda");
    // Which of the two disks is vda depends on the order the kernel
    // probed the virtio devices in: each reason is looked for on either.
    let skipped = |why: &str| {
        ["/dev/vda", "/dev/vdb"].iter().any(|d| {
            b.init_said(&format!(
                "skipping {d}: it is LABEL={LABEL}, but it cannot be a live medium: {why}"
            ))
        })
    };
    for why in [
        "it has neither the manifest /nixlive.manifest nor the stock image nix-store.squashfs; \
         still looking",
        "reading its manifest /nixlive.manifest: a FIFO, not a regular file",
    ] {
        assert!(skipped(why), "no disk was skipped because {why:?}\n{ctx}");
    }
    assert!(
        b.init_said(&format!(
            "/dev/sda is LABEL={LABEL} and holds a live medium"
        )),
        "{ctx}"
    );
    assert!(
        b.init_said("is not authenticated: the initrd trusts no key"),
        "{ctx}"
    );
}

/// Every candidate fails: when the budget ends, the failure lists each
/// device and each candidate skipped, with its reason.
#[test]
fn when_every_candidate_fails_each_is_listed_with_its_reason() {
    let f = fixture();
    let cmd = pc(&format!("root=LABEL={LABEL} nixlive.timeout=8"))
        .virtio_disk(&f.data_ext4)
        .virtio_disk(&f.fifo_ext4);
    let vm = Vm::spawn(&cmd, TIMEOUT).unwrap();
    let console = vm
        .wait_for_stage1_failure(TIMEOUT)
        .unwrap_or_else(|f| panic!("{f}"));
    let either = |rest: &str| {
        ["/dev/vda", "/dev/vdb"]
            .iter()
            .map(|d| format!("skipped, not a live medium: {d}: {rest}"))
            .find(|l| console.contains(l.as_str()))
            .unwrap_or_else(|| format!("skipped, not a live medium: /dev/vd?: {rest}"))
    };
    for want in [
        format!("timed out after 8 s waiting for the boot medium LABEL={LABEL}"),
        either(
            "it has neither the manifest /nixlive.manifest nor the stock image \
             nix-store.squashfs",
        ),
        either("reading its manifest /nixlive.manifest: a FIFO, not a regular file"),
    ] {
        if !console.contains(&want) {
            panic!(
                "{}",
                vm.failure(format!("the failure message lacks {want:?}"))
            );
        }
    }
}

/// Where the findiso test keeps its ISO on each host.
const ISO_PATH: &str = "/isos/live.iso";
const KEY: &str = "nixlive-discovery-test-1";

/// findiso with a trusted key: two hosts hold the file. The one on the
/// virtio disk (announced first) holds an ISO not signed by the key, the
/// USB stick the signed one.
struct Signed {
    live: Live,
    /// ext4 with the unsigned ISO (the fixture's) at ISO_PATH.
    bad_host: PathBuf,
    /// FAT32 with the signed ISO at ISO_PATH.
    good_host: PathBuf,
}

fn signed() -> &'static Signed {
    static F: OnceLock<Signed> = OnceLock::new();
    F.get_or_init(|| build_signed().unwrap_or_else(|e| panic!("building the media: {e}")))
}

fn build_signed() -> Result<Signed, String> {
    let unsigned = fixture();
    let dir = media::work_dir("discovery-policy-signed")?;
    let mut spec = artifacts::DemoSpec::new(Arch::X86_64, "NIXLIVE_SIG");
    spec.modules = MODULES.iter().map(|m| m.to_string()).collect();
    spec.builder_args = super::authenticity::signing_args(&dir, KEY)?;
    let live = media::build_live_spec(&dir.join("live"), &spec, &|_| Ok(()))?;
    let host = |iso: &Path, name: &str| -> Result<PathBuf, String> {
        let tree = dir.join(format!("{name}-tree"));
        let at = tree.join(ISO_PATH.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(iso, &at).map_err(|e| format!("copying {}: {e}", iso.display()))?;
        Ok(tree)
    };
    let bad_host = dir.join("bad-host.ext4");
    media::ext4_image(
        &host(&unsigned.live.iso, "bad")?,
        &bad_host,
        "DATA",
        "5d1a0000-0000-4000-8000-000000000003",
    )?;
    let good_host = dir.join("good-host.fat32");
    media::fat32_image(&host(&live.iso, "good")?, &good_host, "STICK")?;
    Ok(Signed {
        live,
        bad_host,
        good_host,
    })
}

/// findiso= with a trusted key: the first host holding the file holds an
/// ISO the key did not sign; it is named and the search goes on to the
/// stick, whose signed ISO boots.
#[test]
fn findiso_with_a_key_tries_every_host_holding_the_file() {
    let f = signed();
    let cmd = usb_stick(
        QemuCommand::x86_64_direct(
            &f.live,
            &format!("findiso={ISO_PATH} nixlive.timeout=90"),
            1024,
            kvm::accel(),
        )
        .virtio_disk(&f.bad_host),
        &f.good_host,
    );
    let b = media::boot(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let ctx = b.context();
    let host = b
        .report
        .mount("/findiso")
        .unwrap_or_else(|| panic!("no /findiso (the ISO's filesystem)\n{ctx}"));
    assert_eq!(
        (host.fstype.as_str(), host.source.as_str()),
        ("vfat", "/dev/sda"),
        "{ctx}"
    );
    for want in [
        "skipping /dev/vda: it holds the ISO file, but it is not authentic: ".to_string(),
        format!("the ISO file on /dev/sda is signed by the trusted key {KEY}"),
    ] {
        assert!(b.init_said(&want), "init did not say {want:?}\n{ctx}");
    }
}

//! What NixOS users already type and carry (issue 15): a label written the
//! way udev escapes it (`root=LABEL=NIXOS\x20LIVE`) on a FAT32 stick
//! labelled `NIXOS LIVE`, and a whole ISO that iPXE loads as a second
//! initrd (`initrd nixos.iso /nixos.iso`) booted with `root=/nixos.iso`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_tests_vm::media::{self, Live};
use nixlive_tests_vm::{QemuCommand, checks, kvm};

const TIMEOUT: Duration = Duration::from_secs(240);
const LABEL: &str = "NIXLIVE_COMPAT";
const FAT_LABEL: &str = "NIXOS LIVE";

/// CD, virtio, FAT with its code pages, exFAT, loop, squashfs, overlay.
const MODULES: &[&str] = &[
    "ata_piix",
    "sr_mod",
    "isofs",
    "virtio_pci",
    "virtio_blk",
    "vfat",
    "exfat",
    "nls_cp437",
    "nls_iso8859-1",
    "nls_ascii",
    "nls_utf8",
    "loop",
    "squashfs",
    "overlay",
];

struct Fixture {
    live: Live,
    /// FAT32 labelled `NIXOS LIVE` with the medium tree.
    fat: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = media::work_dir("nixos-compat").unwrap_or_else(|e| panic!("{e}"));
        let live = media::build_live(&dir.join("live"), LABEL, MODULES, &|_| Ok(()))
            .unwrap_or_else(|e| panic!("{e}"));
        let fat = dir.join("fat32.img");
        media::fat32_image(&live.medium, &fat, FAT_LABEL).unwrap_or_else(|e| panic!("{e}"));
        Fixture { live, fat }
    })
}

#[test]
fn a_label_with_udevs_escapes_finds_the_stick() {
    let f = fixture();
    let cmd = QemuCommand::x86_64_direct(
        &f.live,
        &format!(r"root=LABEL=NIXOS\x20LIVE init={}/init", f.live.system),
        1024,
        kvm::accel(),
    )
    .virtio_disk(&f.fat);
    let b = media::boot(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let ctx = b.context();
    checks::live_system(&b.report, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    let iso = b
        .report
        .mount("/iso")
        .unwrap_or_else(|| panic!("no /iso\n{ctx}"));
    assert_eq!(
        (iso.fstype.as_str(), iso.source.as_str()),
        ("vfat", "/dev/vda"),
        "{ctx}"
    );
    assert!(
        b.init_said("waiting for the medium LABEL=\"NIXOS LIVE\""),
        "the wanted label is not shown unescaped:\n{ctx}"
    );
}

#[test]
fn an_iso_loaded_by_ipxe_as_a_second_initrd() {
    let f = fixture();
    let tftp = media::work_dir("nixos-compat-ipxe").unwrap_or_else(|e| panic!("{e}"));
    for (from, to) in [
        (&f.live.kernel, "bzImage"),
        (&f.live.initrd, "initrd"),
        (&f.live.iso, "nixos.iso"),
    ] {
        std::fs::copy(from, tftp.join(to)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    let script = format!(
        "#!ipxe\n\
         kernel bzImage console=ttyS0,115200 root=/nixos.iso init={}/init\n\
         initrd initrd\n\
         initrd nixos.iso /nixos.iso\n\
         boot\n",
        f.live.system
    );
    std::fs::write(tftp.join("boot.ipxe"), script).unwrap();
    let cmd = QemuCommand::x86_64_netboot(&tftp, "boot.ipxe", kvm::accel());
    let run =
        nixlive_tests_vm::boot_command_to_report(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let r = &run.report;
    let ctx = format!("{}\n{r:#?}\n{}", run.command_line, run.serial_log);
    checks::live_system(r, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    let iso = r.mount("/iso").unwrap_or_else(|| panic!("no /iso\n{ctx}"));
    assert_eq!(iso.fstype, "iso9660", "{ctx}");
    assert!(iso.source.starts_with("/dev/loop"), "{iso:?}\n{ctx}");
    assert!(
        run.serial_log
            .contains("the medium is the file /nixos.iso: iso9660"),
        "{ctx}"
    );
}

/// The ISO as a file on an NTFS disk (mkntfs, ntfscp), found by `findiso=`
/// and mounted with the kernel's ntfs3: bookworm-backports' 6.12, since
/// Debian's 6.1 has no ntfs3.
#[test]
fn findiso_on_an_ntfs_disk() {
    use nixlive_tests_vm::arch::Arch;
    use nixlive_tests_vm::artifacts::{self, DemoSpec};
    let dir = media::work_dir("nixos-compat-ntfs").unwrap_or_else(|e| panic!("{e}"));
    let mut spec = DemoSpec::new(Arch::X86_64, "NIXLIVE_NTFS");
    spec.kernel = Some("amd64-bpo".into());
    spec.modules = [
        "virtio_pci",
        "virtio_blk",
        "ntfs3",
        "isofs",
        "loop",
        "squashfs",
        "overlay",
    ]
    .map(String::from)
    .to_vec();
    let demo = artifacts::build_demo(&dir, &spec).unwrap_or_else(|e| panic!("{e}"));
    let disk = dir.join("ntfs.img");
    let size = std::fs::metadata(&demo.iso).unwrap().len() + (64 << 20);
    std::fs::write(&disk, b"").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&disk)
        .and_then(|f| f.set_len(size))
        .unwrap();
    for cmd in [
        vec!["mkntfs", "-q", "-F", "-L", "ISOS"],
        vec!["ntfscp", "-f"],
    ] {
        let mut c = std::process::Command::new(cmd[0]);
        c.args(&cmd[1..]).arg(&disk);
        if cmd[0] == "ntfscp" {
            c.arg(&demo.iso).arg("nixlive.iso");
        }
        media::run(c).unwrap_or_else(|e| panic!("{e} (ntfs-3g is needed: make deps)"));
    }
    let cmd = QemuCommand::x86_64(kvm::accel())
        .arg("-kernel")
        .arg(&demo.kernel)
        .arg("-initrd")
        .arg(demo.initrd())
        .arg("-append")
        .arg(format!(
            "console=ttyS0,115200 findiso=/nixlive.iso init={}/init",
            demo.system
        ))
        .virtio_disk(&disk);
    let b = media::boot(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let ctx = b.context();
    checks::live_system(&b.report, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    let host = b
        .report
        .mount("/findiso")
        .unwrap_or_else(|| panic!("no /findiso\n{ctx}"));
    assert_eq!(
        (host.fstype.as_str(), host.source.as_str()),
        ("ntfs3", "/dev/vda"),
        "{ctx}"
    );
    assert!(
        b.init_said("ntfs3 label=ISOS"),
        "the NTFS label was not read:\n{ctx}"
    );
}

/// Ventoy's default: the ISO on an exFAT stick, found by `findiso=`; and
/// the medium tree itself on an exFAT stick, found by its label.
#[test]
fn findiso_and_a_label_on_exfat_sticks() {
    let f = fixture();
    let dir = media::work_dir("nixos-compat-exfat").unwrap_or_else(|e| panic!("{e}"));
    let isos = dir.join("isos-tree");
    std::fs::create_dir_all(isos.join("ventoy")).unwrap();
    std::fs::copy(&f.live.iso, isos.join("ventoy/nixlive.iso")).unwrap();
    let with_iso = dir.join("isos.img");
    media::exfat_image(&isos, &with_iso, "Ventoy").unwrap_or_else(|e| panic!("{e}"));
    let with_tree = dir.join("medium.img");
    media::exfat_image(&f.live.medium, &with_tree, "NIXOS EXFAT").unwrap_or_else(|e| panic!("{e}"));
    for (disk, append, host) in [
        (&with_iso, "findiso=/ventoy/nixlive.iso", true),
        (&with_tree, r"root=LABEL=NIXOS\x20EXFAT", false),
    ] {
        let cmd = QemuCommand::x86_64_direct(
            &f.live,
            &format!("{append} init={}/init", f.live.system),
            1024,
            kvm::accel(),
        )
        .virtio_disk(disk);
        let b = media::boot(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        let ctx = b.context();
        checks::live_system(&b.report, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
        let on_exfat = if host { "/findiso" } else { "/iso" };
        let m = b
            .report
            .mount(on_exfat)
            .unwrap_or_else(|| panic!("no {on_exfat}\n{ctx}"));
        assert_eq!(
            (m.fstype.as_str(), m.source.as_str()),
            ("exfat", "/dev/vda"),
            "{ctx}"
        );
    }
}

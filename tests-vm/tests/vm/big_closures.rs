//! Big closures (issue 17): one closure of more than 4 GiB of
//! incompressible data (three store paths of 1400 MiB, each one random MiB
//! repeated, written with `--squashfs-compression none`, mksquashfs'
//! `-noD -noF`), made into
//!
//! - an ISO whose one image is over 4 GiB (ISO level 3, a multi-extent
//!   file), booted from the CD drive and as a USB disk through SeaBIOS and
//!   ISOLINUX; and
//! - a medium tree with `medium`'s default limit (every file under 4 GiB,
//!   the closure in two layers), copied onto a FAT32 disk image with mtools
//!   (unprivileged) and booted by label.
//!
//! Each boot checks that files of every big path are read, including the
//! ones stored past 4 GiB (squashfs keeps small files in fragment blocks at
//! the image's end), and which image backs which layer.
//!
//! Disk: the store (4.1 GiB) plus at most two copies of it at a time; the
//! ISO goes before the FAT image is made, and everything is removed at the
//! end, also when a check fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nixlive_tests_vm::boot_modes::BootMode;
use nixlive_tests_vm::media::{self, Booted, Live, PROBE_INIT, PROBE_SHOWS};
use nixlive_tests_vm::{QemuCommand, artifacts, kvm};

const TIMEOUT: Duration = Duration::from_secs(240);
/// An ISO volume ID and a FAT label at once (at most 11 characters).
const LABEL: &str = "NIXLIVE_BIG";
const BIG_PATHS: usize = 3;
const BIG_MIB: u64 = 1400;
const GIB: u64 = 1 << 30;
/// CD, USB disk and virtio disk; FAT with Debian's default code page and
/// iocharset; the store.
const MODULES: &[&str] = &[
    "ata_piix",
    "sr_mod",
    "isofs",
    "usb-storage",
    "ehci_pci",
    "sd_mod",
    "virtio_pci",
    "virtio_blk",
    "vfat",
    "nls_cp437",
    "nls_iso8859-1",
    "nls_ascii",
    "loop",
    "squashfs",
    "overlay",
];

/// Removes the test's directory (gigabytes) however the test ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("removing {}: {e}", self.0.display());
        }
    }
}

fn big_name(i: usize) -> String {
    format!("{}{i}-nixlive-big-{i}", "b".repeat(31))
}

/// `BIG_PATHS` store paths of `BIG_MIB` each: `data` (one random MiB
/// repeated, its first bytes the path's number, so that no two files are
/// alike) and `probe-shows/big-N`.
fn write_big_paths(store: &Path) -> Result<(), String> {
    use std::io::Write;
    let mut mib = vec![0u8; 1 << 20];
    let mut rng = std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?;
    std::io::Read::read_exact(&mut rng, &mut mib).map_err(|e| e.to_string())?;
    for i in 0..BIG_PATHS {
        let dir = store.join(big_name(i));
        std::fs::create_dir_all(dir.join(PROBE_SHOWS)).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join(PROBE_SHOWS).join(format!("big-{i}")),
            format!("big-{i}-ok"),
        )
        .map_err(|e| e.to_string())?;
        let data = dir.join("data");
        let f = std::fs::File::create(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let mut w = std::io::BufWriter::with_capacity(4 << 20, f);
        mib[..8].copy_from_slice(&(i as u64).to_le_bytes());
        for _ in 0..BIG_MIB {
            w.write_all(&mib)
                .map_err(|e| format!("{}: {e}", data.display()))?;
        }
        w.flush().map_err(|e| format!("{}: {e}", data.display()))?;
    }
    Ok(())
}

/// `nixlive SUB` over the live medium's store root, with this test's
/// modules, uncompressed data blocks and `extra`; returns standard error.
fn builder(live: &Live, sub: &str, extra: &[&std::ffi::OsStr]) -> Result<String, String> {
    let k = artifacts::kernel("amd64");
    let mut cmd = Command::new(artifacts::programs_builder());
    cmd.arg(sub)
        .arg("--kernel")
        .arg(&k.vmlinuz)
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .arg("--init")
        .arg(nixlive_tests_vm::arch::Arch::X86_64.guest_program("nixlive-init"))
        .arg("--store-root")
        .arg(live.dir.join("root"))
        .arg("--system")
        .arg(&live.system)
        .args(["--label", LABEL, "--squashfs-compression", "none"]);
    for m in MODULES {
        cmd.arg("--module").arg(m);
    }
    cmd.args(extra);
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("{shown} failed ({}):\n{stderr}", out.status));
    }
    Ok(stderr)
}

/// A FAT32 image of `tree` labelled LABEL, with mkfs.fat's default cluster
/// size for its size.
fn fat32(tree: &Path, out: &Path, bytes: u64) -> Result<(), String> {
    let mut cmd = Command::new("mkfs.fat");
    cmd.args(["-F", "32", "-n", LABEL, "-C"])
        .arg(out)
        .arg((bytes >> 10).to_string());
    media::run(cmd)?;
    let entries = std::fs::read_dir(tree)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path());
    let mut cmd = Command::new("mcopy");
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-Q", "-i"])
        .arg(out)
        .args(entries)
        .arg("::/");
    media::run(cmd).map(drop)
}

/// Every big path's probe file is read in the booted system.
fn assert_big_files(b: &Booted) {
    let files = b.probe_files();
    for i in 0..BIG_PATHS {
        let path = format!("/nix/store/{}/{PROBE_SHOWS}/big-{i}", big_name(i));
        assert_eq!(
            files.get(&path).map(String::as_str),
            Some(format!("big-{i}-ok").as_str()),
            "{path}: {files:?}\n{}",
            b.context()
        );
    }
}

/// The loop device backed by `/iso/<image>` and its size in bytes.
fn loop_of(b: &Booted, image: &str) -> (String, u64) {
    let ctx = b.context();
    let backing = format!("/iso/{image}");
    let (dev, _) = b
        .probe_loops()
        .into_iter()
        .find(|(_, f)| *f == backing)
        .unwrap_or_else(|| panic!("no loop device on {backing}\n{ctx}"));
    let sectors: u64 = b
        .probe
        .iter()
        .find_map(|l| l.strip_prefix(&format!("block {dev} ")))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no size of {dev}\n{ctx}"));
    (dev, sectors * 512)
}

#[test]
fn an_image_over_4_gib_boots_from_cd_usb_and_as_fat32_layers() {
    let started = Instant::now();
    let dir = media::work_dir("big-closures").unwrap();
    let _cleanup = Cleanup(dir.clone());
    let live = media::build_live(&dir.join("live"), LABEL, MODULES, &|_| Ok(())).unwrap();
    // The small demo media build_live made are not used.
    std::fs::remove_file(&live.iso).unwrap();
    std::fs::remove_dir_all(&live.medium).unwrap();
    write_big_paths(&live.dir.join("root/nix/store")).unwrap();
    eprintln!("store written in {:.1?}", started.elapsed());

    // The ISO: one image of 4200 MiB and the demo system.
    let t = Instant::now();
    let iso = dir.join("big.iso");
    let append = format!("init={PROBE_INIT}");
    builder(
        &live,
        "iso",
        &[
            "--out".as_ref(),
            iso.as_os_str(),
            "--append".as_ref(),
            append.as_ref(),
        ],
    )
    .unwrap();
    let iso_size = std::fs::metadata(&iso).unwrap().len();
    assert!(iso_size > 4 * GIB, "the ISO is {iso_size} bytes");
    eprintln!("ISO of {iso_size} bytes built in {:.1?}", t.elapsed());
    let scratch = tempfile::tempdir().unwrap();
    for mode in [BootMode::BiosCd, BootMode::BiosUsb] {
        let cmd = QemuCommand::x86_64_boot(mode, &iso, kvm::accel(), scratch.path());
        let b = media::boot(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        let ctx = b.context();
        let (dev, size) = loop_of(&b, "nix-store.squashfs");
        assert!(
            size > 4 * GIB,
            "{mode:?}: {dev} is {size} bytes, not the image over 4 GiB\n{ctx}"
        );
        assert_big_files(&b);
        let m = b.report.mount("/iso").unwrap();
        assert_eq!(m.fstype, "iso9660", "{mode:?}\n{ctx}");
        eprintln!("{mode:?} booted, {:.1?} so far", started.elapsed());
    }
    std::fs::remove_file(&iso).unwrap();

    // The medium tree with medium's default limit.
    let t = Instant::now();
    let tree = dir.join("tree");
    let said = builder(&live, "medium", &["--out".as_ref(), tree.as_os_str()]).unwrap();
    let manifest = std::fs::read_to_string(tree.join("nixlive.manifest")).unwrap();
    let m = nixlive_formats::Manifest::parse(&manifest).unwrap();
    let names: Vec<&str> = m.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["nix-store.squashfs", "nix-store-00.squashfs"],
        "{manifest}\n{said}"
    );
    for i in &m.images {
        assert!(i.size < 4 * GIB, "{} is {} bytes\n{said}", i.name, i.size);
        assert!(
            said.contains(&format!("image {} (", i.name)),
            "the builder did not say what {} holds:\n{said}",
            i.name
        );
    }
    let total: u64 = m.images.iter().map(|i| i.size).sum();
    assert!(total > 4 * GIB, "{total}");
    let initrd = dir.join("initrd");
    std::fs::copy(tree.join("boot/initrd"), &initrd).unwrap();
    let fat = dir.join("fat32.img");
    fat32(&tree, &fat, total + 256 * (1 << 20)).unwrap();
    std::fs::remove_dir_all(&tree).unwrap();
    eprintln!("medium tree and FAT32 image made in {:.1?}", t.elapsed());

    let booting = Live {
        initrd,
        ..live.clone()
    };
    let cmd = QemuCommand::x86_64_direct(
        &booting,
        &format!("root=LABEL={LABEL} init={PROBE_INIT}"),
        1024,
        kvm::accel(),
    )
    .virtio_disk(&fat);
    let b = media::boot(&cmd, TIMEOUT).unwrap();
    let ctx = b.context();
    let medium = b
        .report
        .mount("/iso")
        .unwrap_or_else(|| panic!("no /iso\n{ctx}"));
    assert_eq!(medium.fstype, "vfat", "{ctx}");
    for (i, name) in names.iter().enumerate() {
        let (dev, size) = loop_of(&b, name);
        let layer = b
            .report
            .mount(&format!("/nix/.ro-store/{i}"))
            .unwrap_or_else(|| panic!("no /nix/.ro-store/{i}\n{ctx}"));
        // Straight from the loop device, or through dm-verity over it (the
        // builder's default).
        assert!(
            layer.source == format!("/dev/{dev}") || layer.source.starts_with("/dev/dm-"),
            "{}: {}\n{ctx}",
            layer.point,
            layer.source
        );
        assert_eq!(size, m.images[i].size / 512 * 512, "{name}\n{ctx}");
    }
    assert_eq!(
        b.report.mount("/nix/store").unwrap().option("lowerdir"),
        Some("/mnt-root/nix/.ro-store/0:/mnt-root/nix/.ro-store/1"),
        "{ctx}"
    );
    assert_big_files(&b);
    eprintln!("FAT32 booted; {:.1?} in all", started.elapsed());
}

//! Which recorded module loads when (at once, by its device, when needed,
//! in the background) and how its file reaches the kernel: pure
//! decisions over names, aliases and `modules.dep`, unit-tested without a
//! kernel.

use nixlive_formats::kmod;
use nixlive_formats::unpack::Codec;
use std::collections::HashSet;

/// How one module file reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `finit_module` of the file as it is.
    Plain,
    /// `finit_module` with `MODULE_INIT_COMPRESSED_FILE`.
    Kernel(Codec),
    /// Decompressed here, then `init_module`.
    Own(Codec),
}

/// Decides how to load `file`, given what `/sys/module/compression` says
/// (`None`: the file is absent, the kernel decompresses nothing).
pub fn method(file: &str, kernel_decompresses: Option<&str>) -> Method {
    match Codec::of_name(file) {
        None => Method::Plain,
        Some(c) if kernel_decompresses.map(str::trim) == Some(c.kernel_name()) => Method::Kernel(c),
        Some(c) => Method::Own(c),
    }
}

/// When a module of the builder's list is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// At once: nothing else would ask for it (a code page, a module named
    /// for its own sake), or a module loaded at once needs it.
    Now,
    /// When a device it drives shows up: coldplug for the devices there,
    /// uevents for those that come later.
    Device,
    /// When the boot needs it: a filesystem before its first mount, loop
    /// devices, device-mapper and its verity target before the images.
    Needed,
}

/// When module `name` loads, from the patterns `modules.alias` gives it:
/// a filesystem (`fs-*`), loop or device-mapper control, or the verity
/// target is [`When::Needed`]; one that matches a device (`pci:`, `usb:`,
/// `scsi:`, `virtio:`, `acpi*:`, ...) is [`When::Device`]; the rest (code
/// pages, libraries, modules without aliases) [`When::Now`].
pub fn when(name: &str, patterns: &[&str]) -> When {
    let needed = kmod::module_name(name) == "dm_verity"
        || patterns.iter().any(|p| {
            p.starts_with("fs-") || *p == "devname:loop-control" || *p == "devname:mapper/control"
        });
    if needed {
        When::Needed
    } else if patterns.iter().any(|p| matches_devices(p)) {
        When::Device
    } else {
        When::Now
    }
}

/// Whether an alias pattern is a device's modalias (`BUS:...`), not a
/// name the kernel asks for (`devname:`, `symbol:`, `char-major-...`).
fn matches_devices(pattern: &str) -> bool {
    match pattern.split_once(':') {
        Some((bus, _)) => !bus.is_empty() && bus != "devname" && bus != "symbol",
        None => false,
    }
}

/// The files of the builder's list (in its load order) to load at once:
/// each one no other listed module depends on and [`when`] puts at
/// [`When::Now`], with the files it needs (`closure_of(file)`: its
/// dependencies and itself). A dependency (a library such as `scsi_mod`
/// or `cdrom`) loads with the first module that needs it; the others
/// wait for their device or for the boot to need them.
pub fn upfront(
    files: &[String],
    when_of: impl Fn(&str) -> When,
    closure_of: impl Fn(&str) -> Vec<String>,
) -> Vec<String> {
    let closures: Vec<Vec<String>> = files.iter().map(|f| closure_of(f)).collect();
    let needed_by_another = |f: &String| {
        files
            .iter()
            .zip(&closures)
            .any(|(g, c)| g != f && c.contains(f))
    };
    let mut keep: HashSet<&String> = HashSet::new();
    for (f, c) in files.iter().zip(&closures) {
        if when_of(f) == When::Now && !needed_by_another(f) {
            keep.insert(f);
            keep.extend(c);
        }
    }
    files.iter().filter(|f| keep.contains(f)).cloned().collect()
}

/// Buses whose devices exist only behind a host controller's driver: a
/// disk on them is announced some time after that driver loads.
const BEHIND_A_CONTROLLER: [&str; 4] = ["scsi", "usb", "mmc", "sdio"];

/// The drivers of the builder's list (files) that come next behind a
/// controller: each [`When::Device`] module not loaded yet whose device
/// patterns are all on buses behind a controller ([`BEHIND_A_CONTROLLER`])
/// that `bus_present` says are there now (`/sys/bus/NAME`: `sr_mod` and
/// `sd_mod` once an ATA or SCSI controller's driver brought `scsi_mod`,
/// `usb_storage` once a USB controller's brought `usbcore`). Loaded at
/// once, they are there when the disk behind the controller is
/// announced, instead of after it. A controller's own driver (`pci:`) is
/// never one: coldplug sees its device or it is not there.
pub fn followers(
    files: &[String],
    patterns_of: impl Fn(&str) -> Vec<String>,
    bus_present: impl Fn(&str) -> bool,
    loaded: &HashSet<String>,
) -> Vec<String> {
    files
        .iter()
        .filter(|f| !loaded.contains(*f))
        .filter(|f| {
            let patterns = patterns_of(f);
            let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
            if when(f, &refs) != When::Device {
                return false;
            }
            refs.iter()
                .filter(|p| matches_devices(p))
                .filter_map(|p| p.split_once(':').map(|(bus, _)| bus))
                .all(|bus| BEHIND_A_CONTROLLER.contains(&bus) && bus_present(bus))
        })
        .cloned()
        .collect()
}

/// Of the builder's list (files), what a live boot surely asks for and
/// may load while the search for the medium waits on devices, in the
/// order the boot needs it: loop devices, squashfs (the images' usual
/// filesystem), dm-verity (the builder lists it when the images carry
/// hash trees) and overlayfs. The medium's own filesystem waits for its
/// probe to say which it is.
pub fn background(files: &[String]) -> Vec<String> {
    const SURE: [&str; 4] = ["loop", "squashfs", "dm_verity", "overlay"];
    SURE.iter()
        .filter(|n| files.iter().any(|f| kmod::module_name(f) == **n))
        .map(|n| n.to_string())
        .collect()
}

/// What to say when the initrd's modules were made for another kernel.
pub(super) fn mismatch_hint(built_for: &str, running: &str) -> String {
    if built_for == running {
        String::new()
    } else {
        format!(
            "; the initrd's modules are for kernel {built_for} but {running} is running: \
             build the initrd with the --modules-dir of the kernel you boot"
        )
    }
}

/// Whether `/proc/filesystems` lists `fstype` (lines `nodev\tNAME` or `\tNAME`).
pub(super) fn filesystems_has(text: &str, fstype: &str) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().last() == Some(fstype))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixlive_formats::kmod::{Aliases, ModDep};

    #[test]
    fn when_modules_load() {
        assert_eq!(
            when("kernel/fs/isofs/isofs.ko", &["iso9660", "fs-iso9660"]),
            When::Needed
        );
        assert_eq!(
            when(
                "loop",
                &[
                    "devname:loop-control",
                    "char-major-10-237",
                    "block-major-7-*"
                ]
            ),
            When::Needed
        );
        assert_eq!(when("dm_mod", &["devname:mapper/control"]), When::Needed);
        // dm-verity has no alias: the boot asks for it by name.
        assert_eq!(when("kernel/drivers/md/dm-verity.ko", &[]), When::Needed);
        assert_eq!(
            when("ata_piix", &["pci:v00008086d00007010sv*sd*bc*sc*i*"]),
            When::Device
        );
        assert_eq!(
            when("sr_mod", &["scsi:t-0x05*", "block-major-11-*"]),
            When::Device
        );
        assert_eq!(when("sdhci_acpi", &["acpi*:80860F14:*"]), When::Device);
        assert_eq!(when("virtio_blk", &["virtio:d00000002v*"]), When::Device);
        // Code pages, libraries, names the kernel asks for: at once.
        assert_eq!(when("nls_cp437", &["nls_cp437"]), When::Now);
        assert_eq!(when("scsi_mod", &[]), When::Now);
        assert_eq!(
            when("tun", &["devname:net/tun", "char-major-10-200"]),
            When::Now
        );
        assert_eq!(
            when("crc32c_generic", &["crypto-crc32c", "crc32c"]),
            When::Now
        );
    }

    /// The bench's list (Debian 6.1, a CD, dm-verity): nothing loads before
    /// coldplug; with the fs set's code pages, those (and only those) do.
    #[test]
    fn only_what_nothing_asks_for_loads_at_once() {
        let dep = ModDep::parse(
            "kernel/fs/squashfs/squashfs.ko:\n\
             kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko\n\
             kernel/fs/overlayfs/overlay.ko:\n\
             kernel/lib/reed_solomon/reed_solomon.ko:\n\
             kernel/drivers/block/loop.ko:\n\
             kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko\n\
             kernel/drivers/scsi/scsi_common.ko:\n\
             kernel/drivers/scsi/sr_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko kernel/drivers/cdrom/cdrom.ko\n\
             kernel/drivers/cdrom/cdrom.ko:\n\
             kernel/drivers/md/dm-mod.ko:\n\
             kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko\n\
             kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko kernel/lib/reed_solomon/reed_solomon.ko\n\
             kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\n\
             kernel/drivers/ata/ata_piix.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\n\
             kernel/fs/nls/nls_cp437.ko:\n\
             kernel/fs/fat/fat.ko:\n\
             kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n",
        )
        .unwrap();
        let aliases = Aliases::parse(
            "alias fs-squashfs squashfs\nalias fs-iso9660 isofs\nalias fs-overlay overlay\n\
             alias devname:loop-control loop\nalias scsi:t-0x05* sr_mod\n\
             alias devname:mapper/control dm_mod\n\
             alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix\n\
             alias nls_cp437 nls_cp437\nalias fs-vfat vfat\n",
        );
        let when_of = |f: &str| when(f, &aliases.of_module(&kmod::module_name(f)));
        let closure_of = |f: &str| {
            kmod::closure(&dep, &HashSet::new(), &[kmod::module_name(f)])
                .unwrap()
                .files
        };
        let files: Vec<String> = [
            "scsi/scsi_common.ko",
            "scsi/scsi_mod.ko",
            "ata/libata.ko",
            "ata/ata_piix.ko",
            "cdrom/cdrom.ko",
            "scsi/sr_mod.ko",
            "isofs/isofs.ko",
            "block/loop.ko",
            "squashfs/squashfs.ko",
            "overlayfs/overlay.ko",
            "reed_solomon/reed_solomon.ko",
            "md/dm-mod.ko",
            "md/dm-bufio.ko",
            "md/dm-verity.ko",
        ]
        .iter()
        .map(|f| match *f {
            "reed_solomon/reed_solomon.ko" => format!("kernel/lib/{f}"),
            f if f.starts_with("isofs")
                || f.starts_with("squashfs")
                || f.starts_with("overlayfs") =>
            {
                format!("kernel/fs/{f}")
            }
            f => format!("kernel/drivers/{f}"),
        })
        .collect();
        assert!(upfront(&files, when_of, closure_of).is_empty());
        let mut with_fs = files.clone();
        with_fs.extend(
            [
                "kernel/fs/fat/fat.ko",
                "kernel/fs/fat/vfat.ko",
                "kernel/fs/nls/nls_cp437.ko",
            ]
            .map(String::from),
        );
        assert_eq!(
            upfront(&with_fs, when_of, closure_of),
            ["kernel/fs/nls/nls_cp437.ko"]
        );
        // A module without aliases that nothing listed depends on (the
        // user named it) loads at once, with what it needs, in list order.
        let mut lone = files.clone();
        lone.retain(|f| !f.contains("sr_mod") && !f.contains("isofs"));
        assert_eq!(
            upfront(&lone, when_of, closure_of),
            ["kernel/drivers/cdrom/cdrom.ko"]
        );
        let only_lib = [
            "kernel/drivers/scsi/scsi_common.ko",
            "kernel/drivers/scsi/scsi_mod.ko",
        ]
        .map(String::from);
        assert_eq!(upfront(&only_lib, when_of, closure_of), only_lib);
    }

    #[test]
    fn drivers_behind_a_controller_follow_its_bus() {
        let aliases = Aliases::parse(
            "alias scsi:t-0x05* sr_mod\nalias scsi:t-0x00* sd_mod\n\
             alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n\
             alias pci:v*d*sv*sd*bc01sc06i01* ahci\n\
             alias pci:v*d*sv*sd*bc01sc08i02* nvme\n\
             alias virtio:d00000008v* virtio_scsi\nalias fs-ext4 ext4\n\
             alias mmc:block mmc_block\n",
        );
        let files: Vec<String> = [
            "sr_mod.ko",
            "sd_mod.ko",
            "usb-storage.ko",
            "ahci.ko",
            "nvme.ko",
            "virtio_scsi.ko",
            "ext4.ko",
            "mmc_block.ko",
            "scsi_mod.ko",
        ]
        .map(String::from)
        .to_vec();
        let patterns_of = |f: &str| {
            aliases
                .of_module(&kmod::module_name(f))
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let loaded: HashSet<String> = ["scsi_mod.ko".to_string()].into();
        // An ATA controller's driver brought scsi_mod: the SCSI disk and CD
        // drivers follow; not the USB, PCI, virtio or MMC ones.
        let scsi = |b: &str| b == "scsi";
        assert_eq!(
            followers(&files, patterns_of, scsi, &loaded),
            ["sr_mod.ko", "sd_mod.ko"]
        );
        let scsi_usb = |b: &str| b == "scsi" || b == "usb";
        assert_eq!(
            followers(&files, patterns_of, scsi_usb, &loaded),
            ["sr_mod.ko", "sd_mod.ko", "usb-storage.ko"]
        );
        // What is loaded already is not loaded again; no bus, no follower.
        let both: HashSet<String> = ["sr_mod.ko".to_string(), "sd_mod.ko".to_string()].into();
        assert!(followers(&files, patterns_of, scsi, &both).is_empty());
        assert!(followers(&files, patterns_of, |_| false, &loaded).is_empty());
    }

    #[test]
    fn how_modules_are_loaded() {
        assert_eq!(method("kernel/fs/isofs/isofs.ko", None), Method::Plain);
        assert_eq!(method("a/loop.ko.xz", None), Method::Own(Codec::Xz));
        assert_eq!(
            method("a/loop.ko.xz", Some("xz\n")),
            Method::Kernel(Codec::Xz)
        );
        // A kernel built for zstd modules cannot take an xz one.
        assert_eq!(
            method("a/loop.ko.xz", Some("zstd\n")),
            Method::Own(Codec::Xz)
        );
        assert_eq!(
            method("a/loop.ko.zst", Some("zstd\n")),
            Method::Kernel(Codec::Zstd)
        );
        assert_eq!(method("a/loop.ko.gz", Some("xz")), Method::Own(Codec::Gzip));
        assert_eq!(method("a/loop.ko", Some("xz")), Method::Plain);
    }

    #[test]
    fn proc_filesystems() {
        let t = "nodev\tsysfs\nnodev\ttmpfs\n\text4\n\tiso9660\nnodev\toverlay\n";
        assert!(filesystems_has(t, "iso9660"));
        assert!(filesystems_has(t, "overlay"));
        assert!(!filesystems_has(t, "squashfs"));
        assert!(!filesystems_has(t, "ext"));
    }
}

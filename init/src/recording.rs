//! A recording [`Executor`] for the unit tests: it writes down every
//! primitive operation a plan makes, in order, and fails the one a test
//! names, so that each boot mode's exact sequence and each failure's undo
//! are checked without root.

use crate::error::BootError;
use crate::exec::{AttachError, Executor, ImageRead, Runner};
use crate::plan::{self, Flags, Found, Probed, Step};
use nixlive_formats::Cmdline;
use std::io;

#[derive(Default)]
pub struct Recording {
    pub calls: Vec<String>,
    /// The first call containing this text fails (once).
    fail_on: Option<String>,
    loops: u32,
    dms: u32,
}

impl Recording {
    pub fn failing_on(needle: &str) -> Recording {
        Recording {
            fail_on: Some(needle.to_string()),
            ..Recording::default()
        }
    }

    fn call(&mut self, c: String) -> io::Result<()> {
        let fail = self.fail_on.as_deref().is_some_and(|n| c.contains(n));
        self.calls.push(c);
        if fail {
            self.fail_on = None;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

impl Executor for Recording {
    fn mkdir(&mut self, path: &str) -> io::Result<()> {
        self.call(format!("mkdir {path}"))
    }
    fn mount(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: Flags,
        data: &str,
    ) -> io::Result<()> {
        self.call(format!("mount {fstype} {source} {target} {flags:?} {data}"))
    }
    /// `attach FILE NODE`, or `attach+verify FILE NODE` when the file is
    /// hashed through the open file that backs the loop device (one open).
    fn attach_loop(&mut self, file: &str, backing: &plan::Backing) -> Result<String, AttachError> {
        let node = format!("/dev/loop{}", self.loops);
        match backing {
            plan::Backing::Image { sha256: Some(want) } => self
                .call(format!("attach+verify {file} {node}"))
                .map_err(|_| {
                    AttachError::Check(crate::verify::check(file, want, "bad").unwrap_err())
                })?,
            _ => self.call(format!("attach {file} {node}"))?,
        }
        self.loops += 1;
        Ok(node)
    }
    /// A failing check names its third block as the bad one.
    fn check_image(&mut self, dev: &str, c: &ImageRead<'_>) -> Result<(), BootError> {
        self.call(format!(
            "check {dev} {} {} {}/{}",
            c.image, c.size, c.done, c.total
        ))
        .map_err(|source| BootError::BadBlock {
            image: c.image.to_string(),
            inside: ", in the file /a-pkg/bin/a of the image".into(),
            offset: 3 * u64::from(c.block),
            block: 3,
            block_size: c.block,
            source,
        })
    }
    fn detach_loop(&mut self, node: &str) {
        self.calls.push(format!("detach {node}"));
    }
    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()> {
        self.call(format!("symlink {target} {link}"))
    }
    fn unmount(&mut self, target: &str) -> io::Result<()> {
        self.call(format!("umount {target}"))
    }
    fn move_mount(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.call(format!("move {from} {to}"))
    }
    fn file_size(&mut self, path: &str) -> io::Result<u64> {
        self.call(format!("stat {path}"))?;
        // A file named `short...` is one byte short of what plan::tests' manifests say.
        Ok(if path.contains("short") {
            (100 << 20) - 1
        } else {
            100 << 20
        })
    }
    fn verity(
        &mut self,
        name: &str,
        dev: &str,
        params: &nixlive_formats::verity::Params,
    ) -> io::Result<String> {
        let node = format!("/dev/dm-{}", self.dms);
        self.call(format!("verity {name} {dev} {}", params.data_blocks))?;
        self.dms += 1;
        Ok(node)
    }
    fn remove_dm(&mut self, name: &str) {
        self.calls.push(format!("dm-remove {name}"));
    }
    fn copy_to_ram(
        &mut self,
        from: &str,
        to: &str,
        _: &str,
        _: u64,
        _: u64,
    ) -> Result<(), BootError> {
        self.call(format!("copy {from} {to}"))
            .map_err(BootError::sys("copy", from))
    }
    fn fetch(&mut self, f: &crate::exec::Fetch<'_>) -> Result<(), BootError> {
        self.call(format!("fetch {} {}", f.url, f.to))
            .map_err(BootError::sys("fetch", f.url))
    }
    fn switch_root(&mut self, new_root: &str, init: &str) -> BootError {
        let _ = self.call(format!("switch_root {new_root} {init}"));
        BootError::NoStage2(init.into())
    }
}

/// Runs the whole boot's steps for `found` and `cmdline` as `boot::run`
/// orders them; returns the calls and the error, if any.
fn boot(cmdline: &Cmdline, p: Probed, mut ex: Recording) -> (Vec<String>, Option<String>) {
    let mut r = Runner::default();
    let bp = plan::plan(cmdline, &p);
    let result = (|| {
        r.run(&plan::api_mounts(), &mut ex)?;
        r.run(&plan::live_root(), &mut ex)?;
        r.run(&plan::medium(&p.found), &mut ex)?;
        if !bp.copy.is_empty() {
            r.run(&bp.copy, &mut ex)?;
        }
        r.run(&bp.store, &mut ex)?;
        r.run(&bp.switch, &mut ex)
    })();
    (
        ex.calls,
        result.err().map(|e| nixlive_formats::error::chain(&e)),
    )
}

/// The calls from the medium on (the API mounts are the same everywhere).
fn after_api(calls: &[String]) -> Vec<&str> {
    let n = plan::api_mounts().len() + plan::live_root().len();
    calls[n..].iter().map(String::as_str).collect()
}

fn has(calls: &[String], call: &str) -> bool {
    calls.iter().any(|c| c == call)
}

use crate::plan::tests::{cd, probed};

#[test]
fn cd_boot_in_full() {
    let (calls, err) = boot(&Cmdline::default(), probed(cd(), 1), Recording::default());
    assert_eq!(
        err.as_deref(),
        Some(
            "stage-2 init /nix/store/a-sys/init does not exist in the new root (set init= or fix the manifest's init line)"
        )
    );
    assert_eq!(
        calls[..2],
        [
            "mkdir /proc",
            "mount proc proc /proc Flags { ro: false, nosuid: true, nodev: true, noexec: true } "
        ]
    );
    assert_eq!(
        after_api(&calls),
        [
            "mkdir /mnt-root/iso",
            "mount iso9660 /dev/sr0 /mnt-root/iso Flags { ro: true, nosuid: true, nodev: true, noexec: false } ",
            "symlink /dev/sr0 /dev/root",
            "stat /mnt-root/iso/img0.squashfs",
            "mkdir /mnt-root/nix/.ro-store",
            "attach /mnt-root/iso/img0.squashfs /dev/loop0",
            "mount squashfs /dev/loop0 /mnt-root/nix/.ro-store Flags { ro: true, nosuid: true, nodev: true, noexec: false } ",
            "mkdir /mnt-root/nix/.rw-store",
            "mount tmpfs tmpfs /mnt-root/nix/.rw-store Flags { ro: false, nosuid: false, nodev: false, noexec: false } mode=0755,size=536870900",
            "mkdir /mnt-root/nix/.rw-store/store",
            "mkdir /mnt-root/nix/.rw-store/work",
            "mkdir /mnt-root/nix/store",
            "mount overlay overlay /mnt-root/nix/store Flags { ro: false, nosuid: false, nodev: false, noexec: false } lowerdir=/mnt-root/nix/.ro-store,upperdir=/mnt-root/nix/.rw-store/store,workdir=/mnt-root/nix/.rw-store/work",
            "mkdir /mnt-root/dev",
            "move /dev /mnt-root/dev",
            "mkdir /mnt-root/proc",
            "move /proc /mnt-root/proc",
            "mkdir /mnt-root/sys",
            "move /sys /mnt-root/sys",
            "mkdir /mnt-root/run",
            "move /run /mnt-root/run",
            "switch_root /mnt-root /nix/store/a-sys/init",
        ]
    );
}

#[test]
fn usb_stick_by_its_partition() {
    let usb = Found::Device {
        node: "/dev/sda1".into(),
        fstype: "vfat".into(),
    };
    let (calls, _) = boot(&Cmdline::default(), probed(usb, 1), Recording::default());
    let c = after_api(&calls);
    assert!(c[1].starts_with("mount vfat /dev/sda1 /mnt-root/iso Flags { ro: true"));
    assert_eq!(c[2], "symlink /dev/sda1 /dev/root");
}

#[test]
fn findiso_loop_mounts_the_file_and_names_it_root() {
    let iso = crate::plan::tests::findiso("/isos/nixos.iso");
    let (calls, _) = boot(&Cmdline::default(), probed(iso, 1), Recording::default());
    let c = after_api(&calls);
    assert_eq!(c[0], "attach /mnt-root/findiso/isos/nixos.iso /dev/loop0");
    assert!(c[2].starts_with("mount iso9660 /dev/loop0 /mnt-root/iso Flags { ro: true"));
    assert_eq!(c[3], "symlink /dev/loop0 /dev/root");
    assert_eq!(c[4], "stat /mnt-root/iso/img0.squashfs");
    assert_eq!(c[6], "attach /mnt-root/iso/img0.squashfs /dev/loop1");
}

#[test]
fn netboot_attaches_the_images_where_they_are() {
    let (calls, _) = boot(
        &Cmdline::default(),
        probed(Found::Initrd, 1),
        Recording::default(),
    );
    let c = after_api(&calls);
    assert_eq!(
        c[..3],
        [
            "stat /img0.squashfs",
            "mkdir /mnt-root/nix/.ro-store",
            "attach /img0.squashfs /dev/loop0"
        ]
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("/mnt-root/iso") || c.contains("/dev/root"))
    );
}

#[test]
fn two_layers_first_on_top() {
    let (calls, _) = boot(&Cmdline::default(), probed(cd(), 2), Recording::default());
    assert!(has(&calls, "attach /mnt-root/iso/img1.squashfs /dev/loop1"));
    let overlay = calls
        .iter()
        .find(|c| c.starts_with("mount overlay"))
        .unwrap();
    assert!(overlay.contains("lowerdir=/mnt-root/nix/.ro-store/0:/mnt-root/nix/.ro-store/1,"));
}

#[test]
fn copytoram_copies_then_lets_the_medium_go() {
    let c = Cmdline {
        copytoram: true,
        ..Default::default()
    };
    let (calls, _) = boot(&c, probed(cd(), 2), Recording::default());
    let c = after_api(&calls);
    assert_eq!(c[3], "mkdir /mnt-root/nix/.images");
    // Both sizes are checked before anything is copied.
    assert_eq!(
        c[5..9],
        [
            "stat /mnt-root/iso/img0.squashfs",
            "stat /mnt-root/iso/img1.squashfs",
            "copy /mnt-root/iso/img0.squashfs /mnt-root/nix/.images/img0.squashfs",
            "copy /mnt-root/iso/img1.squashfs /mnt-root/nix/.images/img1.squashfs"
        ]
    );
    assert_eq!(
        c[10],
        "attach /mnt-root/nix/.images/img0.squashfs /dev/loop0"
    );
    let overlay = c
        .iter()
        .position(|x| x.starts_with("mount overlay"))
        .unwrap();
    assert_eq!(c[overlay + 1], "umount /mnt-root/iso");
    assert!(c[overlay + 2].starts_with("mkdir /mnt-root/dev"));
}

#[test]
fn copytoram_refused_boots_from_the_medium() {
    let c = Cmdline {
        copytoram: true,
        ..Default::default()
    };
    let mut p = probed(cd(), 1);
    p.mem_available = 128 << 20;
    let (calls, _) = boot(&c, p, Recording::default());
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("copy") || c.starts_with("umount"))
    );
    assert!(has(&calls, "attach /mnt-root/iso/img0.squashfs /dev/loop0"));
}

#[test]
fn stock_layout_verifies_nothing_it_cannot() {
    let c = Cmdline {
        verify: true,
        ..Default::default()
    };
    let mut p = probed(cd(), 1);
    p.manifest.images[0].name = "nix-store.squashfs".into();
    p.manifest.images[0].sha256 = String::new();
    let bp = plan::plan(&c, &p);
    assert_eq!(
        bp.store[2],
        Step::AttachLoop {
            file: "/mnt-root/iso/nix-store.squashfs".into(),
            handle: "image0".into(),
            backing: plan::Backing::Image {
                sha256: Some(String::new())
            }
        }
    );
    assert!(crate::verify::check("/x", "", "anything").is_ok());
}

#[test]
fn a_failing_overlay_undoes_the_images_and_tmpfs() {
    let (calls, err) = boot(
        &Cmdline::default(),
        probed(cd(), 2),
        Recording::failing_on("mount overlay"),
    );
    let err = err.unwrap();
    assert!(err.starts_with("mount -t overlay -o lowerdir="), "{err}");
    assert!(
        err.ends_with("overlay /mnt-root/nix/store: Input/output error (os error 5)"),
        "{err}"
    );
    let failed = calls
        .iter()
        .position(|c| c.starts_with("mount overlay"))
        .unwrap();
    assert_eq!(
        calls[failed + 1..],
        [
            "umount /mnt-root/nix/.rw-store",
            "umount /mnt-root/nix/.ro-store/1",
            "detach /dev/loop1",
            "umount /mnt-root/nix/.ro-store/0",
            "detach /dev/loop0",
        ]
    );
    // The medium was mounted by an earlier run: it stays for the shell.
    assert!(!has(&calls, "umount /mnt-root/iso"));
}

#[test]
fn a_failing_loop_attach_undoes_the_image_before_it() {
    let (calls, err) = boot(
        &Cmdline::default(),
        probed(cd(), 2),
        Recording::failing_on("attach /mnt-root/iso/img1"),
    );
    assert!(
        err.unwrap()
            .starts_with("image1=$(losetup --read-only --find --show /mnt-root/iso/img1.squashfs)")
    );
    let n = calls.len();
    assert_eq!(
        calls[n - 2..],
        ["umount /mnt-root/nix/.ro-store/0", "detach /dev/loop0"]
    );
}

#[test]
fn a_failing_findiso_mount_lets_the_loop_device_go() {
    let iso = crate::plan::tests::findiso("/nixos.iso");
    let (calls, err) = boot(
        &Cmdline::default(),
        probed(iso, 1),
        Recording::failing_on("mount iso9660"),
    );
    assert!(err.unwrap().contains("$medium /mnt-root/iso"));
    assert_eq!(calls.last().unwrap(), "detach /dev/loop0");
}

/// Each image is hashed through the file its loop device is then bound
/// to; a changed one stops the boot, and what was mounted before it is undone.
#[test]
fn a_changed_image_stops_the_boot_and_is_undone() {
    let c = Cmdline {
        verify: true,
        ..Default::default()
    };
    let (calls, err) = boot(
        &c,
        probed(cd(), 2),
        Recording::failing_on("attach+verify /mnt-root/iso/img1"),
    );
    let err = err.unwrap();
    assert!(
        err.contains("/mnt-root/iso/img1.squashfs: sha256 is bad") && err.contains("damaged"),
        "{err}"
    );
    let c = after_api(&calls);
    assert_eq!(
        c[3..6],
        [
            "stat /mnt-root/iso/img0.squashfs",
            "stat /mnt-root/iso/img1.squashfs",
            "mkdir /mnt-root/nix/.ro-store/0",
        ]
    );
    assert_eq!(c[6], "attach+verify /mnt-root/iso/img0.squashfs /dev/loop0");
    assert!(
        !c.iter().any(|c| c.starts_with("verify ")),
        "one open: {c:?}"
    );
    let n = c.len();
    assert_eq!(
        c[n - 3..],
        [
            "attach+verify /mnt-root/iso/img1.squashfs /dev/loop1",
            "umount /mnt-root/nix/.ro-store/0",
            "detach /dev/loop0"
        ]
    );
}

/// nixlive.check: each image is read whole through its dm-verity device
/// before it is mounted; a bad block stops the boot naming the image and
/// the block's offset, and what was set up is undone (the medium stays).
#[test]
fn nixlive_check_reads_through_verity_and_names_the_bad_block() {
    let c = Cmdline::parse("root=LABEL=X nixlive.check");
    let p = crate::plan::tests::with_verity(probed(cd(), 2));
    let (calls, err) = boot(&c, p.clone(), Recording::default());
    assert!(err.unwrap().starts_with("stage-2 init"));
    let c2 = after_api(&calls);
    let data = 25_000 * 4096u64;
    assert_eq!(
        c2[6..9],
        [
            "attach /mnt-root/iso/img0.squashfs /dev/loop0".to_string(),
            "verity nixlive-image0 /dev/loop0 25000".into(),
            format!(
                "check /dev/dm-0 /mnt-root/iso/img0.squashfs {data} 0/{}",
                2 * data
            ),
        ]
    );
    assert!(c2[9].starts_with("mount squashfs /dev/dm-0 /mnt-root/nix/.ro-store/0"));
    let (calls, err) = boot(&c, p, Recording::failing_on("check /dev/dm-1"));
    let err = err.unwrap();
    assert!(
        err.starts_with(
            "nixlive.check: /mnt-root/iso/img1.squashfs is damaged: the block at byte 12288 \
             (block 3 of 4096 bytes, in the file /a-pkg/bin/a of the image)"
        ),
        "{err}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("/mnt-root/nix/.ro-store/1 "))
    );
    let n = calls.len();
    assert_eq!(
        calls[n - 6..],
        [
            "check /dev/dm-1 /mnt-root/iso/img1.squashfs 102400000 102400000/204800000",
            "dm-remove nixlive-image1",
            "detach /dev/loop1",
            "umount /mnt-root/nix/.ro-store/0",
            "dm-remove nixlive-image0",
            "detach /dev/loop0"
        ]
    );
    assert!(!has(&calls, "umount /mnt-root/iso"));
}

#[test]
fn a_failing_copy_undoes_the_ram_tmpfs_and_falls_back_to_the_medium() {
    let c = Cmdline {
        copytoram: true,
        ..Default::default()
    };
    let p = probed(cd(), 1);
    let bp = plan::plan(&c, &p);
    let mut ex = Recording::failing_on("copy ");
    let mut r = Runner::default();
    r.run(&plan::medium(&p.found), &mut ex).unwrap();
    let mut t = crate::boot::Timer::default();
    assert!(
        !crate::boot::mount_store(&mut t, &mut r, &mut ex, &bp).unwrap(),
        "the medium stays"
    );
    let c: Vec<&str> = ex.calls.iter().map(String::as_str).collect();
    assert_eq!(
        c[5..8],
        [
            "stat /mnt-root/iso/img0.squashfs",
            "copy /mnt-root/iso/img0.squashfs /mnt-root/nix/.images/img0.squashfs",
            "umount /mnt-root/nix/.images"
        ]
    );
    assert_eq!(c[8], "stat /mnt-root/iso/img0.squashfs");
    assert_eq!(c[10], "attach /mnt-root/iso/img0.squashfs /dev/loop0");
    assert!(
        !c.contains(&"umount /mnt-root/iso"),
        "the medium serves the images: {c:?}"
    );
}

#[test]
fn a_failing_api_mount_names_it() {
    let mut ex = Recording::failing_on("mount sysfs");
    let e = Runner::default()
        .run(&plan::api_mounts(), &mut ex)
        .unwrap_err();
    assert_eq!(
        nixlive_formats::error::chain(&e),
        "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys: Input/output error (os error 5)"
    );
    // /proc stays mounted: the failure policy and its shell need it.
    assert!(
        ex.calls.last().unwrap().starts_with("mount sysfs"),
        "{:?}",
        ex.calls
    );
}

#[test]
fn a_failing_move_stops_the_switch() {
    let (calls, err) = boot(
        &Cmdline::default(),
        probed(cd(), 1),
        Recording::failing_on("move /sys"),
    );
    assert_eq!(
        err.unwrap(),
        "mount --move /sys /mnt-root/sys: Input/output error (os error 5)"
    );
    assert!(!calls.iter().any(|c| c.starts_with("switch_root")));
}

#[test]
fn a_short_image_stops_before_anything_is_read() {
    let mut p = probed(cd(), 2);
    p.manifest.images[1].name = "short.squashfs".into();
    let (calls, err) = boot(&Cmdline::default(), p, Recording::default());
    assert_eq!(
        err.unwrap(),
        "/mnt-root/iso/short.squashfs is 104857599 bytes, but the manifest says 104857600: \
         the medium is damaged, truncated or was changed"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("attach /mnt-root/iso/img"))
    );
}

#[test]
fn verity_devices_are_mounted_and_undone() {
    let p = crate::plan::tests::with_verity(probed(cd(), 2));
    let (calls, err) = boot(&Cmdline::default(), p.clone(), Recording::default());
    assert!(err.unwrap().starts_with("stage-2 init"));
    let c = after_api(&calls);
    assert_eq!(
        c[6..9],
        [
            "attach /mnt-root/iso/img0.squashfs /dev/loop0",
            "verity nixlive-image0 /dev/loop0 25000",
            "mount squashfs /dev/dm-0 /mnt-root/nix/.ro-store/0 Flags { ro: true, nosuid: true, nodev: true, noexec: false } "
        ]
    );
    // The second fails: the first comes apart in reverse order.
    let (calls, err) = boot(
        &Cmdline::default(),
        p,
        Recording::failing_on("verity nixlive-image1"),
    );
    let err = err.unwrap();
    assert!(
        err.starts_with("verity1=$(dmsetup create nixlive-image1") && err.contains("dm_verity"),
        "{err}"
    );
    let n = calls.len();
    assert_eq!(
        calls[n - 4..],
        [
            "detach /dev/loop1",
            "umount /mnt-root/nix/.ro-store/0",
            "dm-remove nixlive-image0",
            "detach /dev/loop0"
        ]
    );
}

/// A plain root's boot: the API mounts, the root, the switch.
fn plain_boot(cmdline: &Cmdline, mut ex: Recording) -> (Vec<String>, Option<String>) {
    let probe = plan::PlainProbe {
        node: "/dev/vda1".into(),
        fstype: "ext4".into(),
        health: Some(Default::default()),
    };
    let p = plan::plain_root(cmdline, &probe).unwrap();
    let mut r = Runner::default();
    let result = (|| {
        r.run(&plan::api_mounts(), &mut ex)?;
        r.run(&p.mount, &mut ex)?;
        r.run(&p.switch, &mut ex)
    })();
    (
        ex.calls,
        result.err().map(|e| nixlive_formats::error::chain(&e)),
    )
}

#[test]
fn plain_root_boot_in_full() {
    let c = Cmdline::parse("root=LABEL=NIXOS_SD init=/nix/store/a-sys/init");
    let (calls, _) = plain_boot(&c, Recording::default());
    let n = plan::api_mounts().len();
    assert_eq!(
        calls[n..n + 2],
        [
            "mount ext4 /dev/vda1 /mnt-root Flags { ro: false, nosuid: false, nodev: false, noexec: false } ",
            "symlink /dev/vda1 /dev/root",
        ]
    );
    assert!(!calls.iter().any(|c| c.contains("tmpfs tmpfs /mnt-root")));
    assert_eq!(
        calls.last().unwrap(),
        "switch_root /mnt-root /nix/store/a-sys/init"
    );
}

#[test]
fn a_changed_block_under_verity_is_explained() {
    let p = crate::plan::tests::with_verity(probed(cd(), 1));
    let (_, err) = boot(
        &Cmdline::default(),
        p,
        Recording::failing_on("mount squashfs /dev/dm-0"),
    );
    let err = err.unwrap();
    assert!(
        err.contains("$verity0 /mnt-root/nix/.ro-store (dm-verity refused")
            && err.contains("damaged or was changed"),
        "{err}"
    );
}

#[test]
fn a_failing_root_mount_is_named_and_leaves_nothing() {
    let c = Cmdline::parse("root=LABEL=NIXOS_SD");
    let (calls, err) = plain_boot(&c, Recording::failing_on("mount ext4"));
    let err = err.unwrap();
    assert!(
        err.starts_with("mount -t ext4 /dev/vda1 /mnt-root: "),
        "{err}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("move")), "{calls:?}");
}

#[test]
fn a_failing_link_after_the_root_mount_unmounts_it() {
    let c = Cmdline::parse("root=LABEL=NIXOS_SD");
    let (calls, err) = plain_boot(&c, Recording::failing_on("symlink /dev/vda1"));
    assert!(err.is_some());
    assert_eq!(calls.last().unwrap(), "umount /mnt-root");
}

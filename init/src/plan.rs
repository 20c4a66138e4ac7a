//! Deciding what to mount, as data: pure functions from the parsed command
//! line, manifest and probe results to a list of [`Step`]s, each of which
//! prints like the shell command that would do it. [`crate::exec`] runs them.

use nixlive_formats::{Manifest, SizeSpec};
use std::fmt;

/// Where the new root is assembled inside the initramfs.
pub const NEW_ROOT: &str = "/mnt-root";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Mkdir {
        path: String,
    },
    Mount {
        source: String,
        target: String,
        fstype: String,
        readonly: bool,
        data: String,
    },
    /// `ln -sfn target link`.
    Symlink {
        target: String,
        link: String,
    },
    /// Attach `image` to a free loop device (read-only, autoclear) and mount it.
    LoopMount {
        image: String,
        target: String,
        fstype: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mkdir { path } => write!(f, "mkdir -p {path}"),
            Step::Mount {
                source,
                target,
                fstype,
                readonly,
                data,
            } => {
                let mut opts: Vec<&str> = Vec::new();
                if *readonly {
                    opts.push("ro");
                }
                if !data.is_empty() {
                    opts.push(data);
                }
                write!(f, "mount -t {fstype}")?;
                if !opts.is_empty() {
                    write!(f, " -o {}", opts.join(","))?;
                }
                write!(f, " {source} {target}")
            }
            Step::Symlink { target, link } => write!(f, "ln -sfn {target} {link}"),
            Step::LoopMount {
                image,
                target,
                fstype,
            } => write!(f, "mount -t {fstype} -o loop,ro {image} {target}"),
        }
    }
}

fn mkdir(path: String) -> Step {
    Step::Mkdir { path }
}

/// The new root: a tmpfs.
pub fn plan_root() -> Vec<Step> {
    vec![
        mkdir(NEW_ROOT.into()),
        Step::Mount {
            source: "tmpfs".into(),
            target: NEW_ROOT.into(),
            fstype: "tmpfs".into(),
            readonly: false,
            data: "mode=0755".into(),
        },
    ]
}

/// The tmpfs that `copytoram` copies the images into.
pub fn plan_ram_images(dir: &str, size: u64) -> Vec<Step> {
    vec![
        mkdir(dir.into()),
        Step::Mount {
            source: "tmpfs".into(),
            target: dir.into(),
            fstype: "tmpfs".into(),
            readonly: false,
            data: format!("mode=0755,size={size}"),
        },
    ]
}

/// The medium, read-only at `/iso` of the new root, and `/dev/root` naming
/// its device, as NixOS's stage 1 leaves them for the live system's fstab.
pub fn plan_medium(device: &str, fstype: &str) -> Vec<Step> {
    vec![
        mkdir(format!("{NEW_ROOT}/iso")),
        Step::Mount {
            source: device.into(),
            target: format!("{NEW_ROOT}/iso"),
            fstype: fstype.into(),
            readonly: true,
            data: String::new(),
        },
        Step::Symlink {
            target: device.into(),
            link: "/dev/root".into(),
        },
    ]
}

/// Where image `i` of `n` is mounted: `/nix/.ro-store` when it is the only
/// one (NixOS's place, which its fstab names), else `/nix/.ro-store/<i>`.
pub fn image_mount_point(i: usize, n: usize) -> String {
    if n == 1 {
        format!("{NEW_ROOT}/nix/.ro-store")
    } else {
        format!("{NEW_ROOT}/nix/.ro-store/{i}")
    }
}

/// The images as lower layers (first = top), the rw tmpfs, and the overlay at
/// `/nix/store`. `images_dir` is where the manifest's image names are relative to.
pub fn plan_store(manifest: &Manifest, images_dir: &str, ram: u64, size: SizeSpec) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lowers = Vec::new();
    for (i, img) in manifest.images.iter().enumerate() {
        let target = image_mount_point(i, manifest.images.len());
        steps.push(mkdir(target.clone()));
        steps.push(Step::LoopMount {
            image: format!("{images_dir}/{}", img.name),
            target: target.clone(),
            fstype: img.fs.as_str().into(),
        });
        lowers.push(target);
    }
    let rw = format!("{NEW_ROOT}/nix/.rw-store");
    steps.push(mkdir(rw.clone()));
    steps.push(Step::Mount {
        source: "tmpfs".into(),
        target: rw.clone(),
        fstype: "tmpfs".into(),
        readonly: false,
        data: format!("mode=0755,size={}", size.bytes(ram)),
    });
    steps.push(mkdir(format!("{rw}/store")));
    steps.push(mkdir(format!("{rw}/work")));
    steps.push(mkdir(format!("{NEW_ROOT}/nix/store")));
    steps.push(Step::Mount {
        source: "overlay".into(),
        target: format!("{NEW_ROOT}/nix/store"),
        fstype: "overlay".into(),
        readonly: false,
        data: format!(
            "lowerdir={},upperdir={rw}/store,workdir={rw}/work",
            lowers.join(":")
        ),
    });
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixlive_formats::{ImageEntry, ImageFs};

    fn manifest(n: usize) -> Manifest {
        Manifest {
            init: "/nix/store/a-sys/init".into(),
            registration: "/nix/store/nix-path-registration".into(),
            images: (0..n)
                .map(|i| ImageEntry {
                    name: format!("img{i}.squashfs"),
                    fs: ImageFs::Squashfs,
                    size: 1,
                    sha256: "0".repeat(64),
                })
                .collect(),
        }
    }

    fn render(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn root_and_medium() {
        assert_eq!(
            render(&plan_root()),
            vec![
                "mkdir -p /mnt-root",
                "mount -t tmpfs -o mode=0755 tmpfs /mnt-root"
            ]
        );
        assert_eq!(
            render(&plan_ram_images("/mnt-root/nix/.images", 1000)),
            vec![
                "mkdir -p /mnt-root/nix/.images",
                "mount -t tmpfs -o mode=0755,size=1000 tmpfs /mnt-root/nix/.images"
            ]
        );
        assert_eq!(
            render(&plan_medium("/dev/sr0", "iso9660")),
            vec![
                "mkdir -p /mnt-root/iso",
                "mount -t iso9660 -o ro /dev/sr0 /mnt-root/iso",
                "ln -sfn /dev/sr0 /dev/root",
            ]
        );
    }

    #[test]
    fn one_image_where_nixos_mounts_it() {
        let s = render(&plan_store(
            &manifest(1),
            "/mnt-root/iso",
            1 << 30,
            SizeSpec::Percent(50),
        ));
        assert_eq!(s[0], "mkdir -p /mnt-root/nix/.ro-store");
        assert_eq!(
            s[1],
            "mount -t squashfs -o loop,ro /mnt-root/iso/img0.squashfs /mnt-root/nix/.ro-store"
        );
        assert!(
            s.last()
                .unwrap()
                .contains("lowerdir=/mnt-root/nix/.ro-store,")
        );
    }

    #[test]
    fn store_with_two_images_first_on_top() {
        let s = plan_store(
            &manifest(2),
            "/mnt-root/iso",
            1 << 30,
            SizeSpec::Percent(50),
        );
        assert_eq!(
            render(&s),
            vec![
                "mkdir -p /mnt-root/nix/.ro-store/0",
                "mount -t squashfs -o loop,ro /mnt-root/iso/img0.squashfs /mnt-root/nix/.ro-store/0",
                "mkdir -p /mnt-root/nix/.ro-store/1",
                "mount -t squashfs -o loop,ro /mnt-root/iso/img1.squashfs /mnt-root/nix/.ro-store/1",
                "mkdir -p /mnt-root/nix/.rw-store",
                "mount -t tmpfs -o mode=0755,size=536870900 tmpfs /mnt-root/nix/.rw-store",
                "mkdir -p /mnt-root/nix/.rw-store/store",
                "mkdir -p /mnt-root/nix/.rw-store/work",
                "mkdir -p /mnt-root/nix/store",
                "mount -t overlay -o lowerdir=/mnt-root/nix/.ro-store/0:/mnt-root/nix/.ro-store/1,upperdir=/mnt-root/nix/.rw-store/store,workdir=/mnt-root/nix/.rw-store/work overlay /mnt-root/nix/store",
            ]
        );
    }

    #[test]
    fn overlay_size_in_bytes() {
        let s = plan_store(&manifest(1), "/x", 1 << 30, SizeSpec::Bytes(4096));
        assert!(s.iter().any(|st| st.to_string().contains("size=4096")));
    }
}

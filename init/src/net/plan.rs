//! The steps of booting over HTTP, as data: a tmpfs for the images, sized
//! to them, and one [`Step::Fetch`] per image, from its name resolved
//! against the manifest's URL. The images are then used where they were
//! written (one copy in RAM).

use crate::plan::{Flags, Step};
use nixlive_formats::Manifest;
use nixlive_formats::net::url::Url;

/// The images tmpfs's size for `total` bytes of images: room for the
/// tmpfs's own metadata (a page per MiB is plenty).
pub fn tmpfs_size(total: u64) -> u64 {
    total + total / 256 + (1 << 20)
}

/// The tmpfs at `dir` and a fetch of each image into it; returns the
/// tmpfs's size too. A name the URL cannot take is fetched as given and
/// fails there, naming it.
pub fn fetch_steps(m: &Manifest, url: &Url, dir: &str) -> (u64, Vec<Step>) {
    let total: u64 = m.images.iter().fold(0, |a, i| a.saturating_add(i.size));
    let size = tmpfs_size(total);
    let mut steps = vec![
        Step::Mkdir { path: dir.into() },
        Step::Mount {
            source: crate::plan::Source::Path("tmpfs".into()),
            target: dir.into(),
            fstype: "tmpfs".into(),
            flags: Flags::default(),
            data: format!("mode=0755,size={size}"),
        },
    ];
    let mut done = 0;
    for img in &m.images {
        steps.push(Step::Fetch {
            url: url
                .join(&img.name)
                .map_or_else(|_| img.name.clone(), |u| u.to_string()),
            to: format!("{dir}/{}", img.name),
            sha256: img.sha256.clone(),
            size: img.size,
            done,
            total,
        });
        done = done.saturating_add(img.size);
    }
    (size, steps)
}

#[cfg(test)]
mod tests {
    use crate::plan::tests::{manifest, render};
    use crate::plan::{Check, Found, ImageSource, Probed, plan};
    use nixlive_formats::Cmdline;
    use nixlive_formats::net::url::Url;

    fn http(n: usize) -> Probed {
        Probed {
            found: Found::Http {
                url: Url::parse("http://10.0.2.2:8000/set/nixlive.manifest").unwrap(),
            },
            manifest: manifest(n),
            mem_available: 4 << 30,
            ram: 1 << 30,
            trusted: false,
        }
    }

    #[test]
    fn fetched_into_a_tmpfs_and_used_there() {
        let c = Cmdline {
            copytoram: true,
            ..Default::default()
        };
        let p = plan(&c, &http(2));
        assert!(matches!(p.images, ImageSource::Fetched { size } if size > 200 << 20));
        assert!(p.copy_refused.unwrap().contains("fetched over HTTP"));
        // Every image is sized and hashed as it arrives: no sha256sum after.
        assert!(p.fallback.is_none() && p.verify);
        assert!(p.checks.iter().all(|(_, c)| *c == Check::Fetched));
        assert_eq!(
            render(&p.copy),
            [
                "mkdir -p /mnt-root/nix/.images",
                "mount -t tmpfs -o mode=0755,size=211582976 tmpfs /mnt-root/nix/.images",
                "curl --fail --location --continue-at - --output /mnt-root/nix/.images/img0.squashfs http://10.0.2.2:8000/set/img0.squashfs",
                "curl --fail --location --continue-at - --output /mnt-root/nix/.images/img1.squashfs http://10.0.2.2:8000/set/img1.squashfs",
            ]
        );
        let store = render(&p.store);
        assert!(
            store[1].ends_with("--show /mnt-root/nix/.images/img0.squashfs)"),
            "{store:?}"
        );
        assert!(
            !store
                .iter()
                .any(|s| s.starts_with("umount") || s.starts_with("sha256sum"))
        );
        assert!(crate::plan::medium(&http(1).found).is_empty());
    }

    /// With a trusted key and hash trees: hashed while fetched, then
    /// mounted through dm-verity exactly as from a medium; never hashed
    /// whole again.
    #[test]
    fn fetched_images_with_trees_go_through_verity() {
        let mut p = crate::plan::tests::with_verity(http(2));
        p.trusted = true;
        let bp = plan(&Cmdline::default(), &p);
        assert!(
            bp.checks.iter().all(|(_, c)| *c == Check::FetchedVerity),
            "{:?}",
            bp.checks
        );
        assert_eq!(
            Check::FetchedVerity.as_str(),
            "sha256 while fetching, then dm-verity"
        );
        let store = render(&bp.store);
        assert!(
            store[1].ends_with("--show /mnt-root/nix/.images/img0.squashfs)"),
            "{store:?}"
        );
        assert!(store[2].starts_with("verity0=$(dmsetup create nixlive-image0"));
        assert!(store[3].starts_with("mount -t squashfs -o ro,nosuid,nodev $verity0 "));
        assert!(
            !store
                .iter()
                .any(|s| s.starts_with("sha256sum") || s.starts_with("test $(stat"))
        );
        // The fetches are the same as without a key.
        assert_eq!(render(&bp.copy).len(), 4);
    }
}

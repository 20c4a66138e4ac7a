//! The kernel's build configuration (`.config`) and what a medium needs
//! from it: initramfs decompression for the initrd's compression, and for
//! the store images loop devices, their filesystem (with the images'
//! compression), overlayfs and the medium's filesystem, each built in or as
//! a module packed into the initrd.
//!
//! Non-goals: no dependency logic of Kconfig (a symbol is read as it is
//! set), no options init can do without.

use nixlive_formats::ImageFs;
use std::collections::BTreeMap;

/// A symbol's value: built in (`y`) or a module (`m`); unset symbols are
/// absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tristate {
    Yes,
    Module,
}

/// The `CONFIG_*=y|m` lines of a `.config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    values: BTreeMap<String, Tristate>,
}

impl KernelConfig {
    pub fn parse(text: &str) -> KernelConfig {
        let mut values = BTreeMap::new();
        for l in text.lines().map(str::trim) {
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            if !k.starts_with("CONFIG_") {
                continue;
            }
            let t = match v {
                "y" => Tristate::Yes,
                "m" => Tristate::Module,
                _ => continue,
            };
            values.insert(k.to_string(), t);
        }
        KernelConfig { values }
    }

    pub fn get(&self, symbol: &str) -> Option<Tristate> {
        self.values.get(symbol).copied()
    }

    /// Whether it has any `CONFIG_` line at all (a file that is not a
    /// kernel config has none).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// One thing the medium needs from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// `CONFIG_SQUASHFS`.
    pub symbol: &'static str,
    /// The module that provides it when it is `m` (`squashfs`); `None` when
    /// it must be built in (a bool option, or needed before any module
    /// can load).
    pub module: Option<&'static str>,
    /// Why: `the store images are squashfs`.
    pub why: String,
}

/// What the medium is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediumNeeds {
    /// The initrd's compression, as the kernel names it (`zstd`, `gzip`,
    /// `xz`), or `None` when it is not compressed.
    pub initrd_compression: Option<&'static str>,
    /// The store images' filesystem and compression (`zstd`, `xz`, ...),
    /// when the medium carries images.
    pub images: Option<(ImageFs, &'static str)>,
    /// The medium's own filesystem, when known (`iso9660` for an ISO,
    /// `ext4` for a disk image's plain root).
    pub medium_fs: Option<&'static str>,
}

fn need(symbol: &'static str, module: Option<&'static str>, why: impl Into<String>) -> Need {
    Need {
        symbol,
        module,
        why: why.into(),
    }
}

impl MediumNeeds {
    /// Every kernel option the medium needs, in boot order.
    pub fn needs(&self) -> Vec<Need> {
        let mut out = vec![
            need(
                "CONFIG_BLK_DEV_INITRD",
                None,
                "the kernel must unpack the initrd",
            ),
            need("CONFIG_DEVTMPFS", None, "init mounts /dev as devtmpfs"),
            need(
                "CONFIG_TMPFS",
                None,
                "init builds the new root and /run on tmpfs",
            ),
        ];
        if let Some(c) = self.initrd_compression {
            let sym = match c {
                "gzip" => "CONFIG_RD_GZIP",
                "xz" => "CONFIG_RD_XZ",
                _ => "CONFIG_RD_ZSTD",
            };
            out.push(need(
                sym,
                None,
                format!("the initrd is {c}-compressed (--compression)"),
            ));
        }
        if let Some((fs, comp)) = self.images {
            out.push(need(
                "CONFIG_BLK_DEV_LOOP",
                Some("loop"),
                "the store images are loop-mounted",
            ));
            match fs {
                ImageFs::Squashfs => {
                    out.push(need(
                        "CONFIG_SQUASHFS",
                        Some("squashfs"),
                        "the store images are squashfs",
                    ));
                    let sym = match comp {
                        "xz" => "CONFIG_SQUASHFS_XZ",
                        "gzip" => "CONFIG_SQUASHFS_ZLIB",
                        "lz4" => "CONFIG_SQUASHFS_LZ4",
                        _ => "CONFIG_SQUASHFS_ZSTD",
                    };
                    out.push(need(
                        sym,
                        None,
                        format!(
                            "the squashfs images are {comp}-compressed (--squashfs-compression)"
                        ),
                    ));
                }
                ImageFs::Erofs => out.push(need(
                    "CONFIG_EROFS_FS",
                    Some("erofs"),
                    "the store images are erofs",
                )),
            }
            out.push(need(
                "CONFIG_OVERLAY_FS",
                Some("overlay"),
                "/nix/store is an overlay of the images and a tmpfs",
            ));
        }
        match self.medium_fs {
            Some("iso9660") => out.push(need(
                "CONFIG_ISO9660_FS",
                Some("isofs"),
                "the medium is an ISO 9660 filesystem",
            )),
            Some("ext4") => out.push(need(
                "CONFIG_EXT4_FS",
                Some("ext4"),
                "the root filesystem is ext4",
            )),
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        let c = KernelConfig::parse(
            "# comment\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x\"\nCONFIG_E=8\n",
        );
        assert_eq!(c.get("CONFIG_A"), Some(Tristate::Yes));
        assert_eq!(c.get("CONFIG_B"), Some(Tristate::Module));
        assert_eq!(c.get("CONFIG_C"), None);
        assert_eq!(c.get("CONFIG_D"), None);
        assert!(!c.is_empty());
        assert!(KernelConfig::parse("hello").is_empty());
    }

    #[test]
    fn an_iso_needs_more_than_an_initrd() {
        let iso = MediumNeeds {
            initrd_compression: Some("xz"),
            images: Some((ImageFs::Squashfs, "zstd")),
            medium_fs: Some("iso9660"),
        };
        let syms: Vec<&str> = iso.needs().iter().map(|n| n.symbol).collect();
        for s in [
            "CONFIG_RD_XZ",
            "CONFIG_BLK_DEV_LOOP",
            "CONFIG_SQUASHFS",
            "CONFIG_SQUASHFS_ZSTD",
            "CONFIG_OVERLAY_FS",
            "CONFIG_ISO9660_FS",
        ] {
            assert!(syms.contains(&s), "{s} in {syms:?}");
        }
        let initrd = MediumNeeds {
            initrd_compression: None,
            images: None,
            medium_fs: None,
        };
        let syms: Vec<&str> = initrd.needs().iter().map(|n| n.symbol).collect();
        assert_eq!(
            syms,
            ["CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS", "CONFIG_TMPFS"]
        );
        // A disk image's plain root: its filesystem, no images.
        let disk = MediumNeeds {
            initrd_compression: None,
            images: None,
            medium_fs: Some("ext4"),
        };
        let ext4 = disk.needs().pop().unwrap();
        assert_eq!((ext4.symbol, ext4.module), ("CONFIG_EXT4_FS", Some("ext4")));
    }
}

//! The committed fuzz seeds (`fuzz/seeds/`, made by `scripts/fuzz-seeds.sh`)
//! are what they claim to be: each superblock seed is identified with its
//! type and label, the GPT seed's partitions are read, the uevent seeds
//! carry what init looks for. A seed that stopped reaching its parser would
//! quietly make the fuzzing shallow.

use std::path::{Path, PathBuf};

use nixlive_formats::superblock::{gpt_names, identify};

fn seed(target: &str, name: &str) -> Vec<u8> {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

#[test]
fn superblock_seeds_are_identified() {
    for (name, fstype, label) in [
        ("iso9660", "iso9660", "NIXLIVE_SEED"),
        ("iso9660-joliet-rr", "iso9660", "nixlive-rr"),
        ("fat12", "vfat", "FAT12"),
        ("fat16", "vfat", "FAT16"),
        ("fat32", "vfat", "FAT32"),
        ("ext2", "ext2", "nixlive-ext2"),
        ("ext3", "ext3", "nixlive-ext3"),
        ("ext4", "ext4", "nixlive-ext4"),
    ] {
        let data = seed("superblock", name);
        assert!(data.len() <= 65536, "{name}: {} bytes", data.len());
        let id = identify(&data).unwrap_or_else(|| panic!("{name} not identified"));
        assert_eq!(id.fstype, fstype, "{name}");
        assert_eq!(id.label.as_deref(), Some(label), "{name}");
    }
    assert_eq!(
        gpt_names(&seed("superblock", "gpt")),
        Some(vec!["ESP".to_string(), "nixlive".to_string()])
    );
}

#[test]
fn uevent_seeds_carry_a_modalias() {
    let ev = nixlive_formats::uevent::parse(&seed("uevent", "pci"));
    assert_eq!(
        ev.modalias.as_deref(),
        Some("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00")
    );
    assert_eq!(
        nixlive_formats::uevent::parse(&seed("uevent", "block")).modalias,
        None
    );
}

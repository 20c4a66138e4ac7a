//! The disk image's partition table: a GPT (written by sgdisk) or an MBR
//! (written here) with one Linux partition at [`PART_START`], and the
//! identifiers (disk and partition GUIDs, filesystem UUID, MBR signature)
//! derived from the inputs, so that the same build gives the same disk.
//!
//! Non-goals: more than one partition, hybrid tables.

use crate::tool;
use anyhow::{Context, Result};
use std::fs;
use std::path::Path;
use std::process::Command;

/// Where the partition starts: 1 MiB, as every partitioning tool aligns.
pub const PART_START: u64 = 1 << 20;

/// Identifiers derived from the inputs, so that the same build gives the
/// same disk.
pub struct Ids {
    pub disk_guid: String,
    pub part_guid: String,
    pub fs_uuid: String,
    pub mbr_signature: u32,
}

pub fn ids(label: &str, epoch: u64, system: &str) -> Ids {
    let h = |what: &str| {
        nixlive_formats::digest::sha256(
            format!("nixlive {what} {label} {epoch} {system}").as_bytes(),
        )
    };
    let uuid = |b: [u8; 32]| {
        let mut u = [0u8; 16];
        u.copy_from_slice(&b[..16]);
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        let x = nixlive_formats::hex::encode(&u);
        format!(
            "{}-{}-{}-{}-{}",
            &x[..8],
            &x[8..12],
            &x[12..16],
            &x[16..20],
            &x[20..]
        )
    };
    let sig = h("mbr");
    Ids {
        disk_guid: uuid(h("disk")),
        part_guid: uuid(h("partition")),
        fs_uuid: uuid(h("filesystem")),
        mbr_signature: u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]),
    }
}

/// A GPT with one Linux partition named `label`, by sgdisk.
pub fn gpt(out: &Path, fs_bytes: u64, label: &str, id: &Ids) -> Result<()> {
    let first = PART_START / 512;
    let last = first + fs_bytes / 512 - 1;
    let mut cmd = Command::new("sgdisk");
    cmd.arg(format!("--disk-guid={}", id.disk_guid))
        .arg(format!("--new=1:{first}:{last}"))
        .arg(format!("--change-name=1:{label}"))
        .arg("--typecode=1:8300")
        .arg(format!("--partition-guid=1:{}", id.part_guid))
        .arg(out);
    tool::run(&mut cmd, "sgdisk (package gdisk)")
}

/// An MBR with one bootable Linux partition (type 0x83), written here.
pub fn mbr(out: &Path, fs_bytes: u64, id: &Ids) -> Result<()> {
    let sectors = u32::try_from(fs_bytes / 512)
        .ok()
        .context("the partition is larger than MBR's 2 TiB")?;
    let sector = mbr_sector(id.mbr_signature, (PART_START / 512) as u32, sectors);
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    f.write_all(&sector)
        .with_context(|| format!("writing the MBR of {}", out.display()))
}

fn mbr_sector(signature: u32, start: u32, sectors: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[440..444].copy_from_slice(&signature.to_le_bytes());
    let e = &mut s[446..462];
    e[0] = 0x80; // active
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS: use the LBA fields
    e[4] = 0x83; // Linux
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_entry() {
        let s = mbr_sector(0x1234_5678, 2048, 4096);
        assert_eq!(&s[440..444], &0x1234_5678u32.to_le_bytes());
        assert_eq!(s[446], 0x80);
        assert_eq!(s[450], 0x83);
        assert_eq!(&s[454..458], &2048u32.to_le_bytes());
        assert_eq!(&s[458..462], &4096u32.to_le_bytes());
        assert_eq!(&s[510..], &[0x55, 0xAA]);
    }

    #[test]
    fn ids_are_stable_uuids() {
        let a = ids("NIXOS_SD", 1, "/nix/store/x");
        let b = ids("NIXOS_SD", 1, "/nix/store/x");
        assert_eq!(a.fs_uuid, b.fs_uuid);
        assert_ne!(a.fs_uuid, a.part_guid);
        assert_eq!(a.fs_uuid.len(), 36);
        assert_eq!(&a.fs_uuid[14..15], "4");
    }
}

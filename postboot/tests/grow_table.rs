//! The partition-table growth against real tools: a GPT that sgdisk
//! wrote for a 64 MiB disk, planned for the disk grown to 160 MiB and
//! written back, is one sgdisk finds no problem with, its partition ending
//! at the last usable sector; a second partition after the root stops it.
//! Cut short after any of its steps (power lost), the main (primary) GPT
//! is one sgdisk reads, the partition in it, and the next run finishes it
//! into a table sgdisk finds no problem with.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use nixlive_postboot::grow::{DiskView, GrowError, HEAD_LEN, TAIL_LEN, plan_disk};

fn sgdisk(args: &[&str], disk: &Path) -> String {
    let out = Command::new("sgdisk")
        .args(args)
        .arg(disk)
        .output()
        .expect("sgdisk (package gdisk) is needed");
    assert!(out.status.success(), "sgdisk {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(disk: &Path, sectors: u64, partno: u32) -> Result<bool, GrowError> {
    apply_steps(disk, sectors, partno, usize::MAX)
}

/// Plans from the disk's ends and writes the first `steps` steps.
fn apply_steps(disk: &Path, sectors: u64, partno: u32, steps: usize) -> Result<bool, GrowError> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .unwrap();
    let mut head = vec![0u8; HEAD_LEN];
    f.read_exact(&mut head).unwrap();
    let mut tail = vec![0u8; TAIL_LEN];
    f.seek(SeekFrom::Start(sectors * 512 - TAIL_LEN as u64))
        .unwrap();
    f.read_exact(&mut tail).unwrap();
    let view = DiskView {
        head: &head,
        tail: &tail,
        sectors,
    };
    let Some(g) = plan_disk(&view, partno)? else {
        return Ok(false);
    };
    for st in g.steps.iter().take(steps) {
        for (at, data) in &st.writes {
            f.seek(SeekFrom::Start(*at)).unwrap();
            f.write_all(data).unwrap();
        }
    }
    Ok(true)
}

#[test]
fn sgdisk_accepts_the_grown_gpt() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
    sgdisk(&["--new=1:2048:0", "--change-name=1:NIXOS_SD"], &disk);
    fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(160 << 20)
        .unwrap();
    let sectors = (160 << 20) / 512;
    assert!(apply(&disk, sectors, 1).unwrap());
    let verify = sgdisk(&["-v"], &disk);
    assert!(verify.contains("No problems found"), "{verify}");
    let info = sgdisk(&["-i", "1"], &disk);
    assert!(
        info.contains(&format!("Last sector: {} ", sectors - 34)),
        "{info}"
    );
    assert!(info.contains("NIXOS_SD"), "{info}");
    assert!(
        !apply(&disk, sectors, 1).unwrap(),
        "a second run grows nothing"
    );
}

#[test]
fn a_partition_after_the_root_stops_the_growth() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
    sgdisk(&["--new=1:2048:+16M", "--new=2:0:0"], &disk);
    let before = fs::read(&disk).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    assert_eq!(
        apply(&disk, (128 << 20) / 512, 1),
        Err(GrowError::NotLast { root: 1, other: 2 })
    );
    assert_eq!(
        fs::read(&disk).unwrap()[..64 << 20],
        before[..],
        "nothing written"
    );
}

/// sgdisk's view of partition 1, and what it says of the tables (it
/// warns when the main, primary, GPT is damaged and it used the backup).
fn sgdisk_view(disk: &Path) -> String {
    let out = Command::new("sgdisk")
        .args(["-i", "1"])
        .arg(disk)
        .output()
        .expect("sgdisk (package gdisk) is needed");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn cut_short_after_any_step_the_next_run_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let sectors = (160u64 << 20) / 512;
    for k in 1..=6 {
        let disk = tmp.path().join(format!("disk{k}.img"));
        fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
        sgdisk(&["--new=1:2048:0", "--change-name=1:NIXOS_SD"], &disk);
        fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .unwrap()
            .set_len(160 << 20)
            .unwrap();
        assert!(apply_steps(&disk, sectors, 1, k).unwrap());
        let view = sgdisk_view(&disk);
        assert!(
            view.contains("First sector: 2048 ") && !view.contains("invalid main GPT"),
            "after step {k}:\n{view}"
        );
        let grown = apply(&disk, sectors, 1).unwrap();
        assert_eq!(grown, k < 6, "after step {k}");
        let verify = sgdisk(&["-v"], &disk);
        assert!(
            verify.contains("No problems found"),
            "after step {k}: {verify}"
        );
        let info = sgdisk(&["-i", "1"], &disk);
        assert!(
            info.contains(&format!("Last sector: {} ", sectors - 34)),
            "after step {k}: {info}"
        );
    }
}

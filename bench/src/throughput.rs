//! Builder throughput (`make bench`, part `throughput`): on a realistic
//! tree (directories of the build host's `/usr/lib` and `/usr/share`
//! copied in as store paths, up to a size), how fast
//!
//! - the builder hashes NARs (`nixlive registration`, every core; it also
//!   finds references) against `nix-hash --type sha256` over the same
//!   paths (Debian's Nix, one thread, run hermetically), the hashes
//!   compared;
//! - the native squashfs writer (zstd level 3, backhand's, one thread)
//!   writes the store image against `mksquashfs` at the same level on
//!   every core, and against the builder's default (mksquashfs' zstd
//!   level 15, every core); the builder's step times (`NIXLIVE_STEP_TIMES`);
//! - `nixlive iso` makes the whole ISO, with each writer.
//!
//! Timings are printed and written, never asserted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts;

/// One measured step.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `nar-hash`, `squashfs`, `iso`.
    pub step: &'static str,
    /// What did it, as the table shows it.
    pub tool: String,
    pub samples_s: Vec<f64>,
    /// Bytes read (the paths' NAR size).
    pub input_bytes: u64,
    /// Size of what it made (image, ISO), when it made a file.
    pub output_bytes: Option<u64>,
}

/// The tree: its root (`ROOT/nix/store/...`), the system path, the
/// paths' count and their NAR size in all.
#[derive(Debug)]
pub struct Tree {
    pub root: PathBuf,
    pub system: String,
    pub paths: usize,
    pub nar_bytes: u64,
}

/// A store path's name part: what Nix allows, the rest as `_`.
fn store_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+-._?=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A made-up store hash for path `i` (Nix's base-32 digits).
fn hash_of(i: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..32)
        .map(|_| {
            let d = DIGITS[(x % 32) as usize] as char;
            x = x.rotate_right(5).wrapping_add(0x2545_f491_4f6c_dd1d);
            d
        })
        .collect()
}

/// Apparent size of a directory tree (`du -sb`).
fn du(dir: &Path) -> Result<u64, String> {
    let o = Command::new("du")
        .args(["-sb", "--apparent-size"])
        .arg(dir)
        .output()
        .map_err(|e| format!("du {}: {e}", dir.display()))?;
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("du {}: no size", dir.display()))
}

/// Picks directories of `/usr/lib` and `/usr/share` (by name, each at
/// most what is left) until `max_bytes`, and copies each in as a store
/// path under `root`; adds a shell path and a system whose init runs it.
pub fn make_tree(root: &Path, max_bytes: u64) -> Result<Tree, String> {
    let store = root.join("nix/store");
    std::fs::create_dir_all(&store).map_err(|e| format!("creating {}: {e}", store.display()))?;
    let mut sources = Vec::new();
    for parent in ["/usr/lib", "/usr/share"] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
            .map_err(|e| format!("reading {parent}: {e}"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        sources.extend(dirs);
    }
    let mut total = 0u64;
    let mut i = 0usize;
    for src in sources {
        let size = du(&src)?;
        if size == 0 || total + size > max_bytes {
            continue;
        }
        let name = src
            .file_name()
            .map(|n| store_name(&n.to_string_lossy()))
            .unwrap_or_default();
        let dst = store.join(format!("{}-{name}", hash_of(i)));
        let st = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&dst)
            .status()
            .map_err(|e| format!("cp {}: {e}", src.display()))?;
        if !st.success() {
            // A file the host keeps unreadable: leave the directory out.
            let _ = std::fs::remove_dir_all(&dst);
            continue;
        }
        total += size;
        i += 1;
    }
    if i == 0 {
        return Err(format!(
            "no directory of /usr/lib or /usr/share fits in {max_bytes} bytes"
        ));
    }
    let sh = format!("{}-throughput-sh", hash_of(i));
    let system = format!("{}-throughput-system", hash_of(i + 1));
    let exec = |p: &Path, text: String| -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = p.parent().unwrap_or(p);
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        std::fs::write(p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    exec(&store.join(&sh).join("bin/sh"), "#!\n".into())?;
    exec(
        &store.join(&system).join("init"),
        format!("#!/nix/store/{sh}/bin/sh\n"),
    )?;
    Ok(Tree {
        root: root.to_path_buf(),
        system: format!("/nix/store/{system}"),
        paths: i + 2,
        nar_bytes: 0,
    })
}

/// `(path, hash)` pairs of `nix-store --dump-db` text, and the NAR sizes'
/// sum.
pub fn dump_db_hashes(text: &str) -> Result<(Vec<(String, String)>, u64), String> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut lines = text.lines();
    while let Some(path) = lines.next() {
        let hash = lines.next().ok_or("registration: no hash after a path")?;
        let size: u64 = lines
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("registration: {path}: no NAR size"))?;
        let _deriver = lines.next();
        let refs: usize = lines
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("registration: {path}: no reference count"))?;
        for _ in 0..refs {
            lines.next();
        }
        total += size;
        out.push((path.to_string(), hash.to_string()));
    }
    Ok((out, total))
}

/// Seconds of the builder's step line that starts with `prefix` and
/// holds `holding` (`wrote .../nix-store.squashfs: 5 paths, 1 GiB in 2.1 s
/// (...)`).
pub fn step_seconds(stderr: &str, prefix: &str, holding: &str) -> Option<f64> {
    stderr
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(holding))
        .find_map(|l| {
            let (_, rest) = l.rsplit_once(" in ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
}

fn timed(cmd: &mut Command) -> Result<(f64, std::process::Output), String> {
    let t = Instant::now();
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let s = t.elapsed().as_secs_f64();
    if !o.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok((s, o))
}

fn file_size(p: &Path) -> Result<u64, String> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Measures every row `rounds` times on `tree`, in `work` (scratch).
pub fn measure(
    work: &Path,
    builder: &Path,
    tree: &mut Tree,
    rounds: usize,
) -> Result<Vec<Row>, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let store = tree.root.join("nix/store");
    let nix = nixlive_testkit::nix::Nix::new(work);
    let mut names: Vec<String> = std::fs::read_dir(&store)
        .map_err(|e| format!("reading {}: {e}", store.display()))?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut hash_b = Vec::new();
    let mut hash_n = Vec::new();
    let mut native = Vec::new();
    let mut mk3 = Vec::new();
    let mut mk15 = Vec::new();
    let mut iso_mk = Vec::new();
    let mut iso_native = Vec::new();
    let (mut native_bytes, mut mk3_bytes, mut mk15_bytes) = (0, 0, 0);
    let (mut iso_mk_bytes, mut iso_native_bytes) = (0, 0);
    let kernel = artifacts::kernel("amd64");
    let init = Arch::X86_64.guest_program("nixlive-init");
    for round in 0..rounds {
        // NAR hashing: the builder, then nix-hash, over the same paths.
        let (s, o) = timed(
            Command::new(builder)
                .arg("registration")
                .arg("--root")
                .arg(&tree.root),
        )?;
        hash_b.push(s);
        let (ours, nar_bytes) = dump_db_hashes(&String::from_utf8_lossy(&o.stdout))?;
        tree.nar_bytes = nar_bytes;
        let mut cmd = nix.command("nix-hash");
        cmd.args(["--type", "sha256"]);
        for n in &names {
            cmd.arg(store.join(n));
        }
        let (s, o) = timed(&mut cmd)?;
        hash_n.push(s);
        // Both in store-path order; the hashes as base-16 digits.
        let theirs: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        if round == 0 {
            let ours_hex: Vec<&str> = ours
                .iter()
                .map(|(_, h)| h.strip_prefix("sha256:").unwrap_or(h))
                .collect();
            if ours_hex != theirs {
                return Err(format!(
                    "NAR hashes differ between nixlive registration and nix-hash:\n{ours:?}\n{theirs:?}"
                ));
            }
        }

        // Whole ISOs, each writer; their image step times.
        for (backend, times, iso_times, img_bytes, iso_bytes) in [
            (
                "mksquashfs",
                &mut mk15,
                &mut iso_mk,
                &mut mk15_bytes,
                &mut iso_mk_bytes,
            ),
            (
                "native",
                &mut native,
                &mut iso_native,
                &mut native_bytes,
                &mut iso_native_bytes,
            ),
        ] {
            let medium = work.join(format!("medium-{backend}"));
            let iso = work.join(format!("throughput-{backend}.iso"));
            let _ = std::fs::remove_dir_all(&medium);
            let (s, o) = timed(
                Command::new(builder)
                    .env("NIXLIVE_STEP_TIMES", "1")
                    .arg("iso")
                    .arg("--kernel")
                    .arg(&kernel.vmlinuz)
                    .arg("--modules-dir")
                    .arg(&kernel.modules_dir)
                    .args(["--module-set", "base,cd", "--label", "NIXLIVE_TP"])
                    .arg("--init")
                    .arg(&init)
                    .arg("--store-root")
                    .arg(&tree.root)
                    .arg("--system")
                    .arg(&tree.system)
                    .args(["--squashfs-backend", backend])
                    .arg("--medium-dir")
                    .arg(&medium)
                    .arg("--out")
                    .arg(&iso),
            )?;
            iso_times.push(s);
            let stderr = String::from_utf8_lossy(&o.stderr);
            let step = step_seconds(&stderr, "wrote ", "nix-store.squashfs").ok_or_else(|| {
                format!(
                    "nixlive iso ({backend}): no `wrote ...nix-store.squashfs` step line:\n{stderr}"
                )
            })?;
            times.push(step);
            *img_bytes = file_size(&medium.join("nix-store.squashfs"))?;
            *iso_bytes = file_size(&iso)?;
            std::fs::remove_file(&iso).map_err(|e| format!("{}: {e}", iso.display()))?;
            if backend == "native" {
                // mksquashfs at the native writer's level, every core, on
                // the same store paths and registration.
                let img = work.join("mksquashfs-3.squashfs");
                let (s, _) = timed(
                    Command::new("mksquashfs")
                        .current_dir(&store)
                        .args(&names)
                        .arg(&img)
                        .args(["-comp", "zstd", "-Xcompression-level", "3"])
                        .args(["-processors", &cores.to_string()])
                        .args(["-b", "1048576", "-noappend", "-no-xattrs", "-all-root"])
                        .args(["-mkfs-time", "1700000000", "-all-time", "1700000000"])
                        .args(["-no-progress", "-quiet"])
                        .env_remove("SOURCE_DATE_EPOCH"),
                )?;
                mk3.push(s);
                mk3_bytes = file_size(&img)?;
                std::fs::remove_file(&img).map_err(|e| format!("{}: {e}", img.display()))?;
            }
            std::fs::remove_dir_all(&medium).map_err(|e| format!("{}: {e}", medium.display()))?;
        }
    }
    let n = tree.nar_bytes;
    let row = |step, tool: String, samples_s: Vec<f64>, output_bytes| Row {
        step,
        tool,
        samples_s,
        input_bytes: n,
        output_bytes,
    };
    Ok(vec![
        row(
            "nar-hash",
            format!("nixlive registration ({cores} threads, references too)"),
            hash_b,
            None,
        ),
        row(
            "nar-hash",
            "nix-hash --type sha256 (1 thread)".into(),
            hash_n,
            None,
        ),
        row(
            "squashfs",
            "nixlive native writer, zstd 3 (1 thread)".into(),
            native,
            Some(native_bytes),
        ),
        row(
            "squashfs",
            format!("mksquashfs, zstd 3 ({cores} threads)"),
            mk3,
            Some(mk3_bytes),
        ),
        row(
            "squashfs",
            format!("mksquashfs, zstd 15, the builder's default ({cores} threads)"),
            mk15,
            Some(mk15_bytes),
        ),
        row(
            "iso",
            "nixlive iso (mksquashfs)".into(),
            iso_mk,
            Some(iso_mk_bytes),
        ),
        row(
            "iso",
            "nixlive iso --squashfs-backend native".into(),
            iso_native,
            Some(iso_native_bytes),
        ),
    ])
}

/// Median of `v` (of an even count, the mean of the middle two).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => 0.0,
        _ if n.is_multiple_of(2) => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        _ => s[n / 2],
    }
}

/// The Markdown table of `rows` (median seconds, MB/s of the NAR size).
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from("| step | by | time | MB/s | made |\n|---|---|---|---|---|\n");
    for r in rows {
        let s = median(&r.samples_s);
        let rate = if s > 0.0 {
            format!("{:.0}", r.input_bytes as f64 / 1e6 / s)
        } else {
            "-".into()
        };
        let made = r
            .output_bytes
            .map_or("-".into(), |b| format!("{:.1} MB", b as f64 / 1e6));
        t.push_str(&format!(
            "| {} | {} | {s:.2} s | {rate} | {made} |\n",
            r.step, r.tool
        ));
    }
    t
}

/// `rows` as bench.json's `throughput` entries.
pub fn json(rows: &[Row], tree: &Tree) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|r| {
            let s = median(&r.samples_s);
            serde_json::json!({
                "step": r.step,
                "tool": r.tool,
                "seconds": s,
                "samples_s": r.samples_s,
                "paths": tree.paths,
                "input_bytes": r.input_bytes,
                "mb_per_s": if s > 0.0 { r.input_bytes as f64 / 1e6 / s } else { 0.0 },
                "output_bytes": r.output_bytes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_db_is_read_for_hashes_and_sizes() {
        let text = "/nix/store/a-x\nabc\n10\n\n1\n/nix/store/b-y\n/nix/store/b-y\ndef\n5\n\n0\n";
        let (h, total) = dump_db_hashes(text).unwrap();
        assert_eq!(
            h,
            [
                ("/nix/store/a-x".to_string(), "abc".to_string()),
                ("/nix/store/b-y".to_string(), "def".to_string())
            ]
        );
        assert_eq!(total, 15);
        assert!(dump_db_hashes("/nix/store/a-x\nabc\n").is_err());
        assert!(dump_db_hashes("/nix/store/a-x\nabc\nten\n").is_err());
    }

    #[test]
    fn step_lines_are_found() {
        let err = "hashing store paths: 3 paths, 1.0 MiB in 0.4 s (2 MiB/s)\n\
                   wrote /m/nix-store.squashfs: 3 paths, 1.0 MiB in 2.5 s (400 KiB/s)\n\
                   wrote /m/boot/initrd: 1.0 MiB in 0.1 s (10 MiB/s)\n";
        assert_eq!(step_seconds(err, "wrote ", "nix-store.squashfs"), Some(2.5));
        assert_eq!(step_seconds(err, "wrote ", "efi.img"), None);
    }

    #[test]
    fn names_and_tables() {
        assert_eq!(store_name("python3.11"), "python3.11");
        assert_eq!(store_name("a b:c"), "a_b_c");
        assert_eq!(hash_of(3).len(), 32);
        assert_ne!(hash_of(3), hash_of(4));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        let t = table(&[Row {
            step: "nar-hash",
            tool: "x".into(),
            samples_s: vec![2.0],
            input_bytes: 100_000_000,
            output_bytes: Some(5_000_000),
        }]);
        assert!(
            t.ends_with("| nar-hash | x | 2.00 s | 50 | 5.0 MB |\n"),
            "{t}"
        );
    }
}

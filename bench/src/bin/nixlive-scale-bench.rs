//! `nixlive-scale-bench` (used by `make bench`): how the builder's cost
//! grows with the closure. Synthetic closures of 1, 10 and 100 thousand
//! paths (1 GB of data) and of 1, 4 and 10 GB (1,000 paths) are each made
//! into a medium tree (`nixlive medium`: NAR hashing and registration,
//! squashfs images split under 4 GiB, initrd) with mksquashfs and with the
//! native writer; build time, peak memory (the builder's and its
//! children's, largest resident set) and the builder's own step times are
//! printed as a table and written to `out/bench/scale.json`.
//!
//! The data: per path one to a few files, sizes log-uniform between 64
//! bytes and 8 MiB scaled to the total; half of the files incompressible
//! (a fast PRNG), half text-like (a few words repeated); each path refers
//! to up to three earlier ones (their store paths in a file), so hashing
//! finds references and the split sees heights.
//!
//! `NIXLIVE_SCALE_MAX_GB` (default 10) leaves out the closures larger
//! than that many GB, `NIXLIVE_SCALE_MIN_GB` (default 0) the smaller ones, `NIXLIVE_SCALE_MAX_PATHS` (default 100000) those with
//! more paths: the 10 GB closure needs some 20 GB of free disk while it is
//! built. Everything is made in a temporary directory and removed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use nixlive_tests_vm::{arch::Arch, artifacts};

const GB: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Scenario {
    paths: usize,
    bytes: u64,
}

#[derive(Debug)]
struct Row {
    scenario: Scenario,
    backend: &'static str,
    wall_s: f64,
    peak_rss_kib: u64,
    hashing_s: Option<f64>,
    images_s: f64,
    images: usize,
    image_bytes: u64,
}

/// xorshift64*: fast, deterministic, good enough to defeat compression.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

fn hash_of(i: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..32)
        .map(|_| {
            let d = DIGITS[(x % 32) as usize] as char;
            x = x.rotate_right(5) ^ (i as u64);
            d
        })
        .collect()
}

fn path_name(i: usize) -> String {
    format!("{}-pkg-{i}", hash_of(i))
}

/// Writes the synthetic closure under `store` (`.../nix/store`); returns
/// the base names.
fn make_store(store: &Path, s: Scenario) -> Result<Vec<String>, String> {
    let mut rng = Rng(0x5eed_0000 + s.paths as u64);
    // Log-uniform sizes between 64 B and 8 MiB, then scaled to the total.
    let mut sizes = Vec::new();
    let mut owner = Vec::new();
    for p in 0..s.paths {
        for _ in 0..1 + rng.below(3) {
            let exp = 6.0 + (rng.below(1 << 20) as f64 / (1 << 20) as f64) * 17.0;
            sizes.push(2f64.powf(exp));
            owner.push(p);
        }
    }
    let sum: f64 = sizes.iter().sum();
    let scale = s.bytes as f64 / sum;
    let mut buf = vec![0u8; 1 << 20];
    let words = b"lib share bin include usr nix store gcc glibc locale man doc ";
    let names: Vec<String> = (0..s.paths).map(path_name).collect();
    let mut file_no = 0usize;
    for (p, name) in names.iter().enumerate() {
        let dir = store.join(name);
        std::fs::create_dir_all(dir.join("lib")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut refs = String::new();
        for _ in 0..rng.below(4).min(p as u64) {
            let r = rng.below(p as u64) as usize;
            refs.push_str(&format!("/nix/store/{}\n", names[r]));
        }
        std::fs::write(dir.join("nix-support-refs"), refs).map_err(|e| e.to_string())?;
        while file_no < owner.len() && owner[file_no] == p {
            let size = (sizes[file_no] * scale) as u64;
            let random = file_no.is_multiple_of(2);
            let f = dir.join("lib").join(format!("f{file_no}"));
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(&f).map_err(|e| format!("{}: {e}", f.display()))?,
            );
            let mut left = size;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                if random {
                    rng.fill(&mut buf[..n]);
                } else {
                    for (k, b) in buf[..n].iter_mut().enumerate() {
                        *b = words[(k + file_no) % words.len()];
                    }
                }
                w.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                left -= n as u64;
            }
            w.flush().map_err(|e| e.to_string())?;
            file_no += 1;
        }
    }
    Ok(names)
}

/// Seconds from the builder's step lines (`what: ... in 1.2 s (...)`).
fn step_seconds(stderr: &str, prefix: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (_, rest) = l.rsplit_once(" in ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

fn build(root: &Path, system: &str, backend: &'static str, s: Scenario) -> Result<Row, String> {
    let k = artifacts::kernel("amd64");
    let out = root.join("medium");
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| e.to_string())?;
    }
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "PEAK-RSS-KIB %M"])
        .arg(artifacts::programs_builder())
        .arg("medium")
        .arg("--kernel")
        .arg(&k.vmlinuz)
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .args(["--module-set", "base", "--label", "NIXLIVE_SCALE"])
        .arg("--init")
        .arg(Arch::X86_64.guest_program("nixlive-init"))
        .arg("--store-root")
        .arg(root)
        .arg("--system")
        .arg(system)
        .args(["--squashfs-backend", backend])
        .arg("--out")
        .arg(&out);
    let started = Instant::now();
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let wall_s = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        return Err(format!("{cmd:?} failed ({}):\n{stderr}", o.status));
    }
    let peak_rss_kib = stderr
        .lines()
        .find_map(|l| l.strip_prefix("PEAK-RSS-KIB "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no peak memory from /usr/bin/time:\n{stderr}"))?;
    let manifest =
        std::fs::read_to_string(out.join("nixlive.manifest")).map_err(|e| e.to_string())?;
    let m = nixlive_formats::Manifest::parse(&manifest).map_err(|e| e.to_string())?;
    let row = Row {
        scenario: s,
        backend,
        wall_s,
        peak_rss_kib,
        hashing_s: step_seconds(&stderr, "hashing store paths:")
            .first()
            .copied(),
        images_s: step_seconds(&stderr, "wrote ").iter().sum(),
        images: m.images.len(),
        image_bytes: m.images.iter().map(|i| i.size).sum(),
    };
    std::fs::remove_dir_all(&out).map_err(|e| e.to_string())?;
    Ok(row)
}

fn scenario_rows(work: &Path, s: Scenario) -> Result<Vec<Row>, String> {
    let root = work.join(format!("root-{}-{}", s.paths, s.bytes));
    let store = root.join("nix/store");
    let t = Instant::now();
    let names = make_store(&store, s)?;
    // The system: an init script for a shell in the first path.
    let system = format!("{}-system", "s".repeat(32));
    let sh = store.join(&names[0]).join("bin/sh");
    let init = store.join(&system).join("init");
    let exec = |p: &Path, text: String| -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(p.parent().unwrap_or(p)).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    exec(&sh, "#!\n".into())?;
    exec(&init, format!("#!/nix/store/{}/bin/sh\n", names[0]))?;
    eprintln!(
        "scale: {} paths, {} GB made in {:.1} s",
        s.paths,
        s.bytes as f64 / GB as f64,
        t.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for backend in ["mksquashfs", "native"] {
        let r = build(&root, &format!("/nix/store/{system}"), backend, s);
        match r {
            Ok(r) => {
                eprintln!("scale: {}", line(&r));
                rows.push(r);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                return Err(e);
            }
        }
    }
    std::fs::remove_dir_all(&root).map_err(|e| e.to_string())?;
    Ok(rows)
}

fn line(r: &Row) -> String {
    format!(
        "| {:>7} | {:>5.1} GB | {:<10} | {:>8.1} s | {:>8} | {:>8.1} s | {:>8.1} s | {:>6} | {:>6.2} GB |",
        r.scenario.paths,
        r.scenario.bytes as f64 / GB as f64,
        r.backend,
        r.wall_s,
        format!("{} MiB", r.peak_rss_kib / 1024),
        r.hashing_s.unwrap_or(0.0),
        r.images_s,
        r.images,
        r.image_bytes as f64 / GB as f64,
    )
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let max_gb = env_u64("NIXLIVE_SCALE_MAX_GB", 10);
    let min_gb = env_u64("NIXLIVE_SCALE_MIN_GB", 0);
    let max_paths = env_u64("NIXLIVE_SCALE_MAX_PATHS", 100_000);
    let scenarios: Vec<Scenario> = [
        (1_000, 1),
        (10_000, 1),
        (100_000, 1),
        (1_000, 4),
        (1_000, 10),
    ]
    .into_iter()
    .filter(|&(p, gb)| (min_gb..=max_gb).contains(&gb) && p as u64 <= max_paths)
    .map(|(paths, gb)| Scenario {
        paths,
        bytes: gb * GB,
    })
    .collect();
    let work = match tempfile::Builder::new()
        .prefix("nixlive-scale.")
        .tempdir_in(artifacts::workspace_root().join("target"))
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("scale: creating a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows = Vec::new();
    for s in scenarios {
        match scenario_rows(work.path(), s) {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("scale: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "| paths   | data     | writer     | build      | peak mem | hashing    | images     | images | image size |"
    );
    println!(
        "|---------|----------|------------|------------|----------|------------|------------|--------|------------|"
    );
    for r in &rows {
        println!("{}", line(r));
    }
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "paths": r.scenario.paths,
                "bytes": r.scenario.bytes,
                "writer": r.backend,
                "build_s": r.wall_s,
                "peak_rss_kib": r.peak_rss_kib,
                "hashing_s": r.hashing_s,
                "images_s": r.images_s,
                "images": r.images,
                "image_bytes": r.image_bytes,
            })
        })
        .collect();
    let out: PathBuf = artifacts::workspace_root().join("out/bench");
    let written = std::fs::create_dir_all(&out).and_then(|()| {
        std::fs::write(
            out.join("scale.json"),
            serde_json::to_string_pretty(&serde_json::json!({ "scale": json })).unwrap_or_default(),
        )
    });
    if let Err(e) = written {
        eprintln!("scale: writing {}: {e}", out.join("scale.json").display());
        return ExitCode::FAILURE;
    }
    eprintln!("scale: written to {}", out.join("scale.json").display());
    ExitCode::SUCCESS
}

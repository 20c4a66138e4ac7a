//! Store images read back (`make bench`, part `images`): one realistic
//! tree (directories of the build host's `/usr` copied in as store paths,
//! as [`crate::throughput`] makes it) made into a store image in each
//! format the builder writes, by the builder itself (`nixlive medium`
//! with `--image-format` and the compression; its step line gives the
//! image's build time), then each image booted in QEMU as a read-only
//! virtio disk behind Debian's kernel and a busybox initrd that mounts it
//! and, with the guest's own clock (`/proc/uptime`),
//!
//! - drops the caches and reads every file (`find -type f -exec cat`);
//! - drops the caches again and reads a fixed random sample of the files
//!   (seeded: the same files in the same order for every format).
//!
//! Formats: squashfs zstd and xz (mksquashfs, as the builder calls it),
//! erofs lz4hc and lz4 (erofs-utils' mkfs.erofs, as the builder calls it;
//! Debian 12's erofs-utils 1.5 makes no other compression, and Debian 12's
//! 6.1 kernel reads no other). Rounds go round-robin over the formats;
//! timings are printed and written, never asserted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bench_stats::stats;
use crate::peers;
use crate::throughput;
use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts;
use nixlive_tests_vm::qemu::{Accel, QemuCommand, Vm};

/// One store-image format as the builder makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// As the table shows it: `squashfs zstd`.
    pub name: &'static str,
    /// `mount -t`.
    pub fs: &'static str,
    /// The builder's `--image-format` and compression options.
    pub builder_args: &'static [&'static str],
}

/// The formats compared, in table order.
pub const FORMATS: [Format; 4] = [
    Format {
        name: "squashfs zstd",
        fs: "squashfs",
        builder_args: &[
            "--image-format",
            "squashfs",
            "--squashfs-compression",
            "zstd",
        ],
    },
    Format {
        name: "squashfs xz",
        fs: "squashfs",
        builder_args: &["--image-format", "squashfs", "--squashfs-compression", "xz"],
    },
    Format {
        name: "erofs lz4hc",
        fs: "erofs",
        builder_args: &["--image-format", "erofs", "--erofs-compression", "lz4hc"],
    },
    Format {
        name: "erofs lz4",
        fs: "erofs",
        builder_args: &["--image-format", "erofs", "--erofs-compression", "lz4"],
    },
];

/// The guest's lines: `IMGREAD-ALL <start> <end>` and `IMGREAD-SAMPLE
/// <start> <end>` (uptimes, seconds), `IMGREAD-FILES <count>`, then
/// `IMGREAD-DONE`; `IMGREAD-ERROR <what>` when a step failed.
pub const ALL_MARKER: &str = "IMGREAD-ALL";
pub const SAMPLE_MARKER: &str = "IMGREAD-SAMPLE";
pub const FILES_MARKER: &str = "IMGREAD-FILES";
pub const DONE_MARKER: &str = "IMGREAD-DONE";
pub const ERROR_MARKER: &str = "IMGREAD-ERROR";

/// The sample's seed: the same files in every run.
pub const SEED: u64 = 13;

/// What one boot measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reads {
    /// Every file, cold.
    pub all_s: f64,
    /// The sample, cold.
    pub sample_s: f64,
    /// Regular files the guest found in the image.
    pub files: u64,
}

/// The two uptimes after `marker` on a line of `log` (a console line may
/// carry the kernel's output before it); the last such line counts.
fn span(log: &str, marker: &str) -> Result<Option<f64>, String> {
    let mut found = None;
    for l in log.lines() {
        let Some(i) = l.find(marker) else { continue };
        let rest = &l[i + marker.len()..];
        let mut w = rest.split_whitespace().map(str::parse::<f64>);
        match (w.next(), w.next()) {
            (Some(Ok(a)), Some(Ok(b))) if b >= a => found = Some(b - a),
            _ => {
                return Err(format!(
                    "a bad {marker} line on the console: {:?}",
                    l.trim()
                ));
            }
        }
    }
    Ok(found)
}

/// Parses the guest's lines from a serial log; an `IMGREAD-ERROR` line or
/// a missing line is an error that says which.
pub fn parse_reads(log: &str) -> Result<Reads, String> {
    if let Some(l) = log.lines().find(|l| l.contains(ERROR_MARKER)) {
        return Err(format!("the guest failed: {}", l.trim()));
    }
    let all_s = span(log, ALL_MARKER)?.ok_or(format!("no {ALL_MARKER} line on the console"))?;
    let sample_s =
        span(log, SAMPLE_MARKER)?.ok_or(format!("no {SAMPLE_MARKER} line on the console"))?;
    let files = log
        .lines()
        .filter_map(|l| Some(l[l.find(FILES_MARKER)? + FILES_MARKER.len()..].trim()))
        .next_back()
        .ok_or(format!("no {FILES_MARKER} line on the console"))?;
    let files = files
        .parse()
        .map_err(|_| format!("a bad {FILES_MARKER} line on the console: {files:?}"))?;
    Ok(Reads {
        all_s,
        sample_s,
        files,
    })
}

/// splitmix64: a small, fixed generator (the sample must not change with
/// a crate's version).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How many files the sample holds: a tenth of them, at least 200 (all
/// of a smaller tree).
pub fn sample_size(files: usize) -> usize {
    (files / 10).max(200).min(files)
}

/// `n` of `files` chosen with `seed`, in random order: a partial
/// Fisher-Yates shuffle of the sorted list, so the same files (and order)
/// come out whatever order `files` was listed in.
pub fn sample(files: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut v = files.to_vec();
    v.sort();
    let n = n.min(v.len());
    let mut state = seed;
    for i in 0..n {
        let j = i + (next(&mut state) % (v.len() - i) as u64) as usize;
        v.swap(i, j);
    }
    v.truncate(n);
    v
}

/// Regular files under `dir`, as paths relative to it.
pub fn regular_files(dir: &Path) -> Result<Vec<String>, String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("listing {}: {e}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let t = e
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if t.is_dir() {
                walk(&path, &rel, out)?;
            } else if t.is_file() {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// The modules to `insmod`, in load order, as paths relative to the
/// modules directory: `wanted` (names as `modules.dep` spells them, `-`
/// and `_` alike) with their dependencies first; a module the kernel has
/// built in (`modules.builtin`) is left out, an unknown one is an error.
pub fn load_order(
    modules_dep: &str,
    builtin: &str,
    wanted: &[&str],
) -> Result<Vec<String>, String> {
    let stem = |p: &str| -> String {
        let f = p.rsplit('/').next().unwrap_or(p);
        f.split(".ko").next().unwrap_or(f).replace('-', "_")
    };
    let deps: Vec<(String, Vec<String>)> = modules_dep
        .lines()
        .filter_map(|l| {
            let (m, d) = l.split_once(':')?;
            Some((
                m.trim().to_string(),
                d.split_whitespace().map(str::to_string).collect(),
            ))
        })
        .collect();
    let is_builtin = |name: &str| builtin.lines().any(|l| stem(l.trim()) == name);
    fn visit(
        path: &str,
        deps: &[(String, Vec<String>)],
        out: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        if out.iter().any(|p| p == path) {
            return Ok(());
        }
        if depth > 64 {
            return Err(format!("modules.dep: a dependency cycle through {path}"));
        }
        let d = deps
            .iter()
            .find(|(m, _)| m == path)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| format!("modules.dep: no line for {path}"))?;
        // modules.dep lists a module's dependencies deepest last.
        for p in d.iter().rev() {
            visit(p, deps, out, depth + 1)?;
        }
        out.push(path.to_string());
        Ok(())
    }
    let mut out = Vec::new();
    for w in wanted {
        let name = w.replace('-', "_");
        match deps.iter().find(|(m, _)| stem(m) == name) {
            Some((m, _)) => visit(m, &deps, &mut out, 0)?,
            None if is_builtin(&name) => {}
            None => {
                return Err(format!(
                    "modules.dep: no module {w}, and it is not built in"
                ));
            }
        }
    }
    Ok(out)
}

/// The modules the guest needs: the virtio disk, both file systems,
/// crc32c for erofs (libcrc32c asks the crypto API for it).
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "squashfs",
    "erofs",
];

/// The guest's `/init`: loads `modules` (files under `/modules`), waits
/// for `/dev/vda`, mounts it read-only as `fs`, times both reads, counts
/// the files, powers off.
pub fn guest_script(modules: &[String], fs: &str) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         export PATH=/bin\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         fail() { echo \"IMGREAD-ERROR $*\"; poweroff -f; }\n",
    );
    for m in modules {
        s.push_str(&format!("insmod /modules/{m} || fail insmod {m}\n"));
    }
    s.push_str(&format!(
        "n=0; while [ ! -b /dev/vda ]; do usleep 10000; n=$((n+1)); [ $n -gt 3000 ] && fail no /dev/vda; done\n\
         mkdir -p /mnt && mount -t {fs} -o ro /dev/vda /mnt || fail mount -t {fs} /dev/vda\n\
         cd /mnt\n\
         drop() {{ sync; echo 3 > /proc/sys/vm/drop_caches; }}\n\
         drop\n\
         read a x < /proc/uptime\n\
         find . -type f -exec cat {{}} + > /dev/null || fail reading every file\n\
         read b x < /proc/uptime\n\
         echo \"{ALL_MARKER} $a $b\"\n\
         drop\n\
         read a x < /proc/uptime\n\
         xargs -0 cat < /sample.list > /dev/null || fail reading the sample\n\
         read b x < /proc/uptime\n\
         echo \"{SAMPLE_MARKER} $a $b\"\n\
         echo \"{FILES_MARKER} $(find . -type f | wc -l)\"\n\
         echo {DONE_MARKER}\n\
         cd /\n\
         umount /mnt\n\
         poweroff -f\n"
    ));
    s
}

/// The initrd for one file system: busybox, the modules, the sample (NUL-
/// separated paths relative to the image's root) and the script.
pub fn make_initrd(
    work: &Path,
    modules_dir: &Path,
    modules: &[String],
    sample: &[String],
    fs: &str,
) -> Result<PathBuf, String> {
    let tree = work.join(format!("initrd-{fs}"));
    let _ = std::fs::remove_dir_all(&tree);
    for d in ["bin", "proc", "sys", "dev", "modules"] {
        let p = tree.join(d);
        std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .map_err(|e| format!("copying /bin/busybox (install busybox-static): {e}"))?;
    let mut flat = Vec::new();
    for m in modules {
        let name = m.rsplit('/').next().unwrap_or(m).to_string();
        let src = modules_dir.join(m);
        std::fs::copy(&src, tree.join("modules").join(&name))
            .map_err(|e| format!("copying {}: {e}", src.display()))?;
        flat.push(name);
    }
    let mut list = Vec::new();
    for f in sample {
        list.extend_from_slice(format!("./{f}").as_bytes());
        list.push(0);
    }
    let list_path = tree.join("sample.list");
    std::fs::write(&list_path, list).map_err(|e| format!("{}: {e}", list_path.display()))?;
    peers::write_exec(&tree.join("init"), &guest_script(&flat, fs))?;
    let out = work.join(format!("initrd-{fs}.img"));
    peers::pack(&tree, &out)?;
    Ok(out)
}

/// One image made by the builder.
#[derive(Debug, Clone)]
pub struct Image {
    pub format: Format,
    pub path: PathBuf,
    pub bytes: u64,
    /// The builder's image step (`wrote .../nix-store.*` line).
    pub build_s: f64,
}

/// Makes `tree` into a medium with `format` (`nixlive medium`, step
/// times on) and keeps its one store image as `work/<n>.img`.
pub fn build_image(
    work: &Path,
    builder: &Path,
    tree: &throughput::Tree,
    format: Format,
    n: usize,
) -> Result<Image, String> {
    let kernel = artifacts::kernel("amd64");
    let init = Arch::X86_64.guest_program("nixlive-init");
    let medium = work.join(format!("medium-{n}"));
    let _ = std::fs::remove_dir_all(&medium);
    let mut cmd = Command::new(builder);
    cmd.env("NIXLIVE_STEP_TIMES", "1")
        .arg("medium")
        .arg("--kernel")
        .arg(&kernel.vmlinuz)
        .arg("--modules-dir")
        .arg(&kernel.modules_dir)
        .args(["--module-set", "base", "--label", "NIXLIVE_IMGREAD"])
        .arg("--init")
        .arg(&init)
        .arg("--store-root")
        .arg(&tree.root)
        .arg("--system")
        .arg(&tree.system)
        .args(format.builder_args)
        .arg("--out")
        .arg(&medium);
    let o = cmd
        .output()
        .map_err(|e| format!("{}: {e}", builder.display()))?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        return Err(format!(
            "nixlive medium ({}) failed ({}):\n{stderr}",
            format.name, o.status
        ));
    }
    let images: Vec<PathBuf> = std::fs::read_dir(&medium)
        .map_err(|e| format!("listing {}: {e}", medium.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("nix-store"))
                && p.extension()
                    .is_some_and(|x| x == "squashfs" || x == "erofs")
        })
        .collect();
    let [image] = images.as_slice() else {
        return Err(format!(
            "{}: {} store images, not one: {images:?}",
            medium.display(),
            images.len()
        ));
    };
    let file_name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let build_s = throughput::step_seconds(&stderr, "wrote ", &file_name).ok_or_else(|| {
        format!(
            "nixlive medium ({}): no `wrote ...{file_name}` step line:\n{stderr}",
            format.name
        )
    })?;
    let path = work.join(format!("{n}.img"));
    std::fs::rename(image, &path)
        .map_err(|e| format!("moving {} to {}: {e}", image.display(), path.display()))?;
    let bytes = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    std::fs::remove_dir_all(&medium).map_err(|e| format!("{}: {e}", medium.display()))?;
    Ok(Image {
        format,
        path,
        bytes,
        build_s,
    })
}

/// A boot reads a few hundred MB, xz under TCG among them.
const BOOT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Boots `initrd` with `image` as a read-only virtio disk; what the guest
/// measured.
pub fn read_once(
    accel: Accel,
    vmlinuz: &Path,
    initrd: &Path,
    image: &Path,
) -> Result<Reads, String> {
    let mut drive = std::ffi::OsString::from("file=");
    drive.push(image);
    drive.push(",if=virtio,format=raw,readonly=on");
    let cmd = QemuCommand::x86_64(accel)
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg("console=ttyS0,115200 quiet loglevel=3 panic=-1")
        .arg("-drive")
        .arg(drive);
    let vm = Vm::spawn(&cmd, BOOT_TIMEOUT).map_err(|f| f.to_string())?;
    let i = vm
        .wait_for_any(&[DONE_MARKER, ERROR_MARKER], BOOT_TIMEOUT)
        .map_err(|f| f.to_string())?;
    if i == 0 {
        vm.wait_exit(Duration::from_secs(60))
            .map_err(|f| f.to_string())?;
    } else {
        // Let the rest of the error line arrive.
        let _ = vm.wait_exit(Duration::from_secs(10));
    }
    let log = vm.serial_log();
    parse_reads(&log).map_err(|e| format!("{}: {e}\n{log}", image.display()))
}

/// One format's results.
#[derive(Debug, Clone)]
pub struct Row {
    pub format: &'static str,
    pub image_bytes: u64,
    pub build_s: f64,
    pub all_s: Vec<f64>,
    pub sample_s: Vec<f64>,
}

fn cell(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let (m, lo, hi) = stats(v);
    if v.len() == 1 {
        format!("{m:.2} s")
    } else {
        format!("{m:.2} s ({lo:.2}-{hi:.2})")
    }
}

/// The Markdown table: size, build time, both reads (median, min-max)
/// and the read rate of the tree's `bytes` (every file); the sample is
/// `sample_files` files of `sample_bytes`.
pub fn table(rows: &[Row], bytes: u64, sample_files: usize, sample_bytes: u64) -> String {
    let rounds = rows.first().map_or(0, |r| r.all_s.len());
    let mut t = format!(
        "| format | image | build time | read every file, cold, median (min-max) of {rounds} | MB/s | read {sample_files} random files ({:.1} MB), cold |\n\
         |---|---|---|---|---|---|\n",
        sample_bytes as f64 / 1e6
    );
    for r in rows {
        let rate = if r.all_s.is_empty() {
            "-".into()
        } else {
            let (m, _, _) = stats(&r.all_s);
            format!("{:.0}", bytes as f64 / 1e6 / m.max(1e-3))
        };
        t.push_str(&format!(
            "| {} | {:.1} MB | {:.1} s | {} | {rate} | {} |\n",
            r.format,
            r.image_bytes as f64 / 1e6,
            r.build_s,
            cell(&r.all_s),
            cell(&r.sample_s)
        ));
    }
    t
}

/// `rows` as bench.json's `images` entries.
pub fn json(rows: &[Row]) -> Vec<serde_json::Value> {
    let summary = |v: &[f64]| {
        if v.is_empty() {
            return serde_json::Value::Null;
        }
        let (m, lo, hi) = stats(v);
        serde_json::json!({"median": m, "min": lo, "max": hi, "samples": v})
    };
    rows.iter()
        .map(|r| {
            serde_json::json!({
                "format": r.format,
                "image_bytes": r.image_bytes,
                "build_s": r.build_s,
                "read_all_s": summary(&r.all_s),
                "read_sample_s": summary(&r.sample_s),
            })
        })
        .collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let w: Vec<&str> = s.split_whitespace().take(3).collect();
            (w.len() == 3).then(|| w.join(" "))
        })
        .unwrap_or_else(|| "?".into())
}

/// What the part returns for bench.json.
pub struct Part {
    pub entries: Vec<serde_json::Value>,
    pub md: String,
    pub json: serde_json::Value,
}

/// The whole part: a tree of `mb` MB, each format built once and read
/// `rounds` times round-robin; writes `images.json` and `images.md` in
/// `out`.
pub fn run(out: &Path, rounds: usize, mb: u64) -> Result<Part, String> {
    let load_start = loadavg();
    let builder = artifacts::programs_builder();
    let kernel = artifacts::kernel("amd64");
    let work = tempfile::Builder::new()
        .prefix("nixlive-images.")
        .tempdir_in(artifacts::workspace_root().join("target"))
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let tree = throughput::make_tree(&work.path().join("root"), mb * 1_000_000)?;
    let store = tree.root.join("nix/store");
    let files = regular_files(&store)?;
    let size_of = |f: &String| std::fs::metadata(store.join(f)).map_or(0, |m| m.len());
    let bytes: u64 = files.iter().map(size_of).sum();
    let chosen = sample(&files, sample_size(files.len()), SEED);
    let sample_bytes: u64 = chosen.iter().map(size_of).sum();
    println!(
        "images: {} store paths copied from /usr/lib and /usr/share, {} files, {:.0} MB; \
         a sample of {} ({:.1} MB); {rounds} rounds",
        tree.paths,
        files.len(),
        bytes as f64 / 1e6,
        chosen.len(),
        sample_bytes as f64 / 1e6
    );
    let mut images = Vec::new();
    for (n, f) in FORMATS.iter().enumerate() {
        let img = build_image(work.path(), &builder, &tree, *f, n)?;
        println!(
            "  built {:<14} {:.1} MB in {:.1} s",
            f.name,
            img.bytes as f64 / 1e6,
            img.build_s
        );
        images.push(img);
    }
    // The tree is in the images now; its disk space is free for them.
    std::fs::remove_dir_all(&tree.root)
        .map_err(|e| format!("removing {}: {e}", tree.root.display()))?;

    let dep_path = kernel.modules_dir.join("modules.dep");
    let dep = std::fs::read_to_string(&dep_path)
        .map_err(|e| format!("reading {}: {e}", dep_path.display()))?;
    let builtin =
        std::fs::read_to_string(kernel.modules_dir.join("modules.builtin")).unwrap_or_default();
    let modules = load_order(&dep, &builtin, MODULES)
        .map_err(|e| format!("{}: {e}", kernel.modules_dir.display()))?;
    let mut initrds = Vec::new();
    for fs in ["squashfs", "erofs"] {
        initrds.push((
            fs,
            make_initrd(work.path(), &kernel.modules_dir, &modules, &chosen, fs)?,
        ));
    }
    let initrd_of = |fs: &str| {
        initrds
            .iter()
            .find(|(f, _)| *f == fs)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| format!("no initrd for {fs}"))
    };

    let accel = nixlive_tests_vm::kvm::accel();
    println!(
        "  reads: {rounds} per format, round-robin, {}, 1 GiB, 1 CPU, kernel {}",
        accel.name(),
        kernel.version
    );
    let mut rows: Vec<Row> = images
        .iter()
        .map(|i| Row {
            format: i.format.name,
            image_bytes: i.bytes,
            build_s: i.build_s,
            all_s: Vec::new(),
            sample_s: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for (img, row) in images.iter().zip(rows.iter_mut()) {
            let initrd = initrd_of(img.format.fs)?;
            let r = read_once(accel, &kernel.vmlinuz, &initrd, &img.path)
                .map_err(|e| format!("{}: {e}", img.format.name))?;
            // The image holds the store paths and the registration.
            if r.files != files.len() as u64 + 1 {
                return Err(format!(
                    "{} ({}): the guest found {} files, the tree has {} and the registration",
                    img.format.name,
                    img.path.display(),
                    r.files,
                    files.len()
                ));
            }
            println!(
                "  {:<14} round {}: every file {:.2} s, sample {:.2} s",
                img.format.name,
                round + 1,
                r.all_s,
                r.sample_s
            );
            row.all_s.push(r.all_s);
            row.sample_s.push(r.sample_s);
        }
    }
    let load_end = loadavg();
    let t = table(&rows, bytes, chosen.len(), sample_bytes);
    println!("\n{t}");
    let about = format!(
        "{} store paths copied from the host's /usr ({} files, {:.0} MB), each format made once \
         by `nixlive medium`, then read in a VM ({}, 1 GiB, 1 CPU, Debian's kernel {}) from a \
         read-only virtio disk, {rounds} rounds round-robin, the guest's clock; caches dropped \
         before each read; the sample is {} files in a seeded random order (the same for every \
         format). Host load average (1, 5, 15 min) {load_start} at the start, {load_end} at the end.",
        tree.paths,
        files.len(),
        bytes as f64 / 1e6,
        accel.name(),
        kernel.version,
        chosen.len()
    );
    let md = format!("## Store images read back\n\n{about}\n\n{t}\n");
    let entries = json(&rows);
    let doc = serde_json::json!({
        "paths": tree.paths,
        "files": files.len(),
        "bytes": bytes,
        "sample_files": chosen.len(),
        "sample_bytes": sample_bytes,
        "seed": SEED,
        "rounds": rounds,
        "accel": accel.name(),
        "kernel": kernel.version,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "rows": entries,
    });
    let json_path = out.join("images.json");
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    let md_path = out.join("images.md");
    std::fs::write(&md_path, format!("# nixlive store images\n\n{md}"))
        .map_err(|e| format!("{}: {e}", md_path.display()))?;
    println!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(Part {
        entries,
        md,
        json: doc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_lines_are_parsed() {
        let log = "[    1.0] squashfs: version 4.0\n\
                   IMGREAD-ALL 10.50 22.75\n\
                   IMGREAD-SAMPLE 23.00 24.25\n\
                   IMGREAD-FILES 1234\n\
                   IMGREAD-DONE\n";
        assert_eq!(
            parse_reads(log),
            Ok(Reads {
                all_s: 12.25,
                sample_s: 1.25,
                files: 1234
            })
        );
        // A kernel message before the marker on the same line.
        let log = "[ 2.0] virtio_blk virtio0: [vda]IMGREAD-ALL 1.00 3.00\nIMGREAD-SAMPLE 3.0 3.5\nIMGREAD-FILES 2\n";
        assert_eq!(parse_reads(log).unwrap().all_s, 2.0);
    }

    #[test]
    fn guest_failures_name_the_line() {
        let e = parse_reads("IMGREAD-ERROR mount -t erofs /dev/vda\n").unwrap_err();
        assert!(e.contains("mount -t erofs /dev/vda"), "{e}");
        let e = parse_reads("IMGREAD-ALL 1.0 2.0\nIMGREAD-FILES 3\n").unwrap_err();
        assert!(e.contains(SAMPLE_MARKER), "{e}");
        let e = parse_reads("IMGREAD-ALL 1.0\n").unwrap_err();
        assert!(e.contains("IMGREAD-ALL 1.0"), "{e}");
        let e = parse_reads("IMGREAD-ALL 2.0 1.0\n").unwrap_err();
        assert!(e.contains("bad"), "{e}");
        let e = parse_reads("IMGREAD-ALL 1 2\nIMGREAD-SAMPLE 2 3\nIMGREAD-FILES x\n").unwrap_err();
        assert!(e.contains("\"x\""), "{e}");
    }

    #[test]
    fn the_sample_is_fixed_and_independent_of_listing_order() {
        let files: Vec<String> = (0..1000).map(|i| format!("p/{i:04}")).collect();
        let a = sample(&files, 100, SEED);
        let mut rev = files.clone();
        rev.reverse();
        assert_eq!(a, sample(&rev, 100, SEED));
        assert_eq!(a.len(), 100);
        let mut dedup = a.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 100, "no file twice");
        // Random order, not sorted.
        assert_ne!(a, dedup);
        assert_ne!(a, sample(&files, 100, SEED + 1));
        assert_eq!(sample(&files[..5], 10, SEED).len(), 5);
        assert_eq!(sample_size(50), 50);
        assert_eq!(sample_size(1000), 200);
        assert_eq!(sample_size(12_345), 1234);
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dep = "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
                   kernel/drivers/virtio/virtio_ring.ko:\n\
                   kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
                   kernel/fs/erofs/erofs.ko.xz: kernel/lib/libcrc32c.ko.xz\n\
                   kernel/lib/libcrc32c.ko.xz:\n";
        let builtin = "kernel/drivers/virtio/virtio_pci.ko\n";
        assert_eq!(
            load_order(dep, builtin, &["virtio_pci", "virtio-blk", "erofs"]).unwrap(),
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/lib/libcrc32c.ko.xz",
                "kernel/fs/erofs/erofs.ko.xz",
            ]
        );
        let e = load_order(dep, builtin, &["squashfs"]).unwrap_err();
        assert!(e.contains("squashfs"), "{e}");
    }

    #[test]
    fn the_script_loads_mounts_and_times() {
        let s = guest_script(&["virtio_blk.ko".into()], "erofs");
        assert!(s.contains("insmod /modules/virtio_blk.ko"), "{s}");
        assert!(s.contains("mount -t erofs -o ro /dev/vda /mnt"), "{s}");
        assert!(s.contains("echo \"IMGREAD-ALL $a $b\""), "{s}");
        assert!(s.contains("xargs -0 cat < /sample.list"), "{s}");
        assert!(s.matches("drop_caches").count() == 1 && s.matches("\ndrop\n").count() == 2);
    }

    #[test]
    fn table_and_json() {
        let rows = [Row {
            format: "erofs lz4",
            image_bytes: 26_100_000,
            build_s: 3.44,
            all_s: vec![4.0, 2.0, 3.0],
            sample_s: vec![1.0, 0.5, 0.75],
        }];
        let t = table(&rows, 60_000_000, 200, 6_050_000);
        assert!(t.contains("median (min-max) of 3"), "{t}");
        assert!(t.contains("read 200 random files (6.0 MB), cold"), "{t}");
        assert!(
            t.ends_with(
                "| erofs lz4 | 26.1 MB | 3.4 s | 3.00 s (2.00-4.00) | 20 | 0.75 s (0.50-1.00) |\n"
            ),
            "{t}"
        );
        let j = json(&rows);
        assert_eq!(j[0]["read_all_s"]["median"], 3.0);
        assert_eq!(j[0]["read_sample_s"]["samples"][1], 0.5);
    }
}

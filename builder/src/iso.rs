//! `nixlive iso`: initrd, squashfs image, registration, manifest, medium
//! tree and the hybrid ISO (BIOS via ISOLINUX), reproducibly.

use crate::cpio::{Archive, Kind};
use crate::medium;
use crate::registration;
use anyhow::{Context, Result, anyhow, bail, ensure};
use nixlive_formats::kmod::{self as modules, ModDep};
use nixlive_formats::{ImageEntry, ImageFs, InitrdConf, Manifest};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Zstd,
    Gzip,
}

pub struct IsoOptions {
    pub kernel: PathBuf,
    pub modules_dir: PathBuf,
    pub modules: Vec<String>,
    pub init: PathBuf,
    pub store_root: PathBuf,
    pub system: String,
    pub label: String,
    pub append: String,
    pub compression: Compression,
    pub out: PathBuf,
    pub medium_dir: Option<PathBuf>,
    pub initrd_out: Option<PathBuf>,
    pub isolinux_bin: PathBuf,
    pub ldlinux_c32: PathBuf,
    pub isohdpfx: PathBuf,
}

pub const IMAGE_NAME: &str = "nix-store.squashfs";
pub const REGISTRATION: &str = "/nix/store/nix-path-registration";
/// What the medium tree holds; anything else in a reused --medium-dir is an error.
const MEDIUM_ENTRIES: [&str; 4] = ["nixlive.manifest", IMAGE_NAME, "boot", "isolinux"];

/// `SOURCE_DATE_EPOCH`, or 0 when unset.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(std::env::VarError::NotPresent) => Ok(0),
        Err(e) => Err(anyhow!("SOURCE_DATE_EPOCH: {e}")),
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH `{s}` is not a number of seconds")),
    }
}

fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, hex))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// Builds the initrd's cpio archive (uncompressed) and returns it with the
/// modules that were built in.
pub fn initrd_archive(
    init: &[u8],
    modules_dir: &Path,
    requested: &[String],
) -> Result<(Archive, Vec<String>)> {
    let version = modules_dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
        .ok_or_else(|| {
            anyhow!(
                "--modules-dir {} must be a /lib/modules/VERSION directory",
                modules_dir.display()
            )
        })?
        .to_string();
    let dep_path = modules_dir.join("modules.dep");
    let dep_text = String::from_utf8(read(&dep_path, "modules.dep")?)
        .with_context(|| format!("{} is not UTF-8", dep_path.display()))?;
    let dep = ModDep::parse(&dep_text).with_context(|| dep_path.display().to_string())?;
    let builtin_path = modules_dir.join("modules.builtin");
    let builtin = match fs::read_to_string(&builtin_path) {
        Ok(t) => modules::parse_builtin(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", builtin_path.display())),
    };
    let closure = modules::closure(&dep, &builtin, requested)
        .with_context(|| format!("resolving modules in {}", modules_dir.display()))?;

    let mut a = Archive::new();
    a.add("/init", 0o755, Kind::File(init.to_vec()))?;
    for d in [
        "/dev",
        "/proc",
        "/sys",
        "/run",
        "/mnt-root",
        "/etc",
        "/etc/nixlive",
    ] {
        a.add(d, 0o755, Kind::Dir)?;
    }
    // The kernel opens /dev/console for PID 1's stdio before init runs.
    a.add("/dev/console", 0o600, Kind::CharDev(5, 1))?;
    let conf = InitrdConf {
        kernel: version.clone(),
        modules: closure.files.clone(),
    };
    a.add(
        nixlive_formats::initrd_conf::PATH,
        0o644,
        Kind::File(conf.to_string().into_bytes()),
    )?;
    let mdir = format!("/lib/modules/{version}");
    a.add(&mdir, 0o755, Kind::Dir)?;
    for f in &closure.files {
        let data = read(&modules_dir.join(f), "module")?;
        a.add(&format!("{mdir}/{f}"), 0o644, Kind::File(data))?;
    }
    for meta in ["modules.dep", "modules.alias", "modules.builtin"] {
        let p = modules_dir.join(meta);
        match fs::read(&p) {
            Ok(data) => a.add(&format!("{mdir}/{meta}"), 0o644, Kind::File(data))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && meta != "modules.dep" => {
                eprintln!("note: {} does not exist, not packed", p.display());
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }
    Ok((a, closure.builtin))
}

pub fn compress(data: &[u8], c: Compression) -> Result<Vec<u8>> {
    match c {
        Compression::Zstd => zstd::stream::encode_all(data, 19).context("zstd compression"),
        Compression::Gzip => {
            let mut e = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::best());
            e.write_all(data).context("gzip compression")?;
            e.finish().context("gzip compression")
        }
    }
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run {what} ({:?}); is it installed?",
            cmd.get_program()
        )
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {:?}\n{}{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn check_mksquashfs() -> Result<()> {
    let out = Command::new("mksquashfs")
        .arg("-version")
        .output()
        .context("cannot run mksquashfs (squashfs-tools); is it installed?")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ver = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("");
    let mut it = ver.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (maj, min) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    ensure!(
        (maj, min) >= (4, 5),
        "mksquashfs {ver:?} is too old: reproducible images need squashfs-tools 4.5 or newer"
    );
    Ok(())
}

/// Sets the mtime of every file and directory under `root` (and `root`).
fn set_mtimes(root: &Path, t: SystemTime) -> Result<()> {
    let meta = fs::symlink_metadata(root).with_context(|| format!("stat {}", root.display()))?;
    if meta.is_dir() {
        for e in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
            let e = e.with_context(|| format!("listing {}", root.display()))?;
            set_mtimes(&e.path(), t)?;
        }
    }
    if !meta.file_type().is_symlink() {
        let f = fs::File::open(root).with_context(|| format!("opening {}", root.display()))?;
        f.set_modified(t)
            .with_context(|| format!("setting mtime of {}", root.display()))?;
    }
    Ok(())
}

/// Empties a reused medium directory of what an earlier build put there, and
/// refuses one that holds anything else.
fn prepare_medium_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        names.push(
            e.with_context(|| format!("listing {}", dir.display()))?
                .file_name(),
        );
    }
    let foreign: Vec<_> = names
        .iter()
        .filter(|n| !MEDIUM_ENTRIES.iter().any(|m| n.as_os_str() == *m))
        .collect();
    ensure!(
        foreign.is_empty(),
        "--medium-dir {} holds {:?}, which is not part of a nixlive medium; use an empty directory",
        dir.display(),
        foreign
    );
    for n in names {
        let p = dir.join(&n);
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.with_context(|| format!("removing old {}", p.display()))?;
    }
    Ok(())
}

pub struct Built {
    /// (what, where, size in bytes)
    pub outputs: Vec<(String, String, u64)>,
}

pub fn run(o: &IsoOptions) -> Result<Built> {
    let epoch = source_date_epoch()?;
    let mtime32 = u32::try_from(epoch)
        .map_err(|_| anyhow!("SOURCE_DATE_EPOCH {epoch} does not fit the initrd's 32-bit mtime"))?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    medium::check_label(&o.label).context("--label")?;
    let params = medium::kernel_params(&o.label, &o.system, &o.append).context("--append")?;

    // The system must be a store path found under the store root.
    let sys_base = o
        .system
        .strip_prefix("/nix/store/")
        .filter(|b| !b.contains('/') && registration::hash_part(b).is_some())
        .ok_or_else(|| {
            anyhow!(
                "--system `{}` is not a /nix/store/<hash>-<name> path",
                o.system
            )
        })?;
    let store_dir = o.store_root.join("nix/store");
    let names = registration::list_store(&store_dir)?;
    ensure!(
        names.iter().any(|n| n == sys_base),
        "--system {} is not under --store-root ({} has no {sys_base})",
        o.system,
        store_dir.display()
    );
    let sys_init = store_dir.join(sys_base).join("init");
    ensure!(
        sys_init.is_file(),
        "the system has no init: {} does not exist",
        sys_init.display()
    );
    for (p, what) in [
        (&o.kernel, "--kernel"),
        (&o.isolinux_bin, "isolinux.bin"),
        (&o.ldlinux_c32, "ldlinux.c32"),
        (&o.isohdpfx, "isohdpfx.bin"),
    ] {
        ensure!(p.is_file(), "{what} {} is not a file", p.display());
    }

    let work = tempfile::Builder::new()
        .prefix("nixlive-build.")
        .tempdir()
        .context("creating a temporary directory")?;
    let (medium_dir, _medium_tmp) = match &o.medium_dir {
        Some(d) => {
            prepare_medium_dir(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("nixlive-medium.")
                .tempdir()
                .context("creating a temporary medium directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };

    // initrd
    let init = read(&o.init, "--init")?;
    let (archive, builtin) = initrd_archive(&init, &o.modules_dir, &o.modules)?;
    for b in builtin {
        eprintln!("note: module {b} is built into the kernel, not packed");
    }
    let initrd = compress(&archive.to_bytes(mtime32), o.compression)?;
    let boot = medium_dir.join("boot");
    fs::create_dir_all(&boot).with_context(|| format!("creating {}", boot.display()))?;
    let initrd_path = boot.join("initrd");
    fs::write(&initrd_path, &initrd)
        .with_context(|| format!("writing {}", initrd_path.display()))?;
    copy(&o.kernel, &boot.join("vmlinuz"))?;

    // registration + squashfs
    eprintln!(
        "computing NAR hashes and references of {} store paths",
        names.len()
    );
    let infos = registration::compute(&store_dir, "/nix/store", &names)?;
    let reg_path = work.path().join("nix-path-registration");
    fs::write(&reg_path, registration::render(&infos))
        .with_context(|| format!("writing {}", reg_path.display()))?;
    check_mksquashfs()?;
    let image = medium_dir.join(IMAGE_NAME);
    let mut cmd = Command::new("mksquashfs");
    for n in &names {
        cmd.arg(store_dir.join(n));
    }
    cmd.arg(&reg_path).arg(&image);
    let e = epoch.to_string();
    cmd.args([
        "-comp",
        "zstd",
        "-b",
        "1048576",
        "-noappend",
        "-no-xattrs",
        "-all-root",
    ])
    .args(["-root-mode", "0755", "-mkfs-time", &e, "-all-time", &e])
    .args(["-no-progress", "-quiet"])
    // mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times.
    .env_remove("SOURCE_DATE_EPOCH");
    eprintln!("making {}", image.display());
    run_tool(&mut cmd, "mksquashfs")?;

    // manifest
    let (img_size, img_sha) = sha256_file(&image)?;
    let manifest = Manifest {
        init: format!("{}/init", o.system),
        registration: REGISTRATION.to_string(),
        images: vec![ImageEntry {
            name: IMAGE_NAME.to_string(),
            fs: ImageFs::Squashfs,
            size: img_size,
            sha256: img_sha,
        }],
    };
    let manifest_path = medium_dir.join(nixlive_formats::manifest::DEFAULT_PATH);
    fs::write(&manifest_path, manifest.to_string())
        .with_context(|| format!("writing {}", manifest_path.display()))?;

    // bootloader
    let iso_dir = medium_dir.join("isolinux");
    fs::create_dir_all(&iso_dir).with_context(|| format!("creating {}", iso_dir.display()))?;
    copy(&o.isolinux_bin, &iso_dir.join("isolinux.bin"))?;
    copy(&o.ldlinux_c32, &iso_dir.join("ldlinux.c32"))?;
    let cfg_path = iso_dir.join("isolinux.cfg");
    fs::write(&cfg_path, medium::isolinux_cfg(&params))
        .with_context(|| format!("writing {}", cfg_path.display()))?;
    // xorriso takes an mtime of 0 for "unknown" and stamps the current time
    // into some records then: give the tree at least 1 s past the epoch.
    set_mtimes(
        &medium_dir,
        when.max(SystemTime::UNIX_EPOCH + Duration::from_secs(1)),
    )?;

    // ISO
    if let Some(parent) = o.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if o.out.exists() {
        fs::remove_file(&o.out).with_context(|| format!("removing old {}", o.out.display()))?;
    }
    let date = medium::xorriso_date(epoch);
    let mut cmd = Command::new("xorriso");
    cmd.args(["-as", "mkisofs", "-o"])
        .arg(&o.out)
        .args(["-V", &o.label, "-r", "-J", "-joliet-long"])
        .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .arg("-isohybrid-mbr")
        .arg(&o.isohdpfx)
        .arg(format!("--modification-date={date}"))
        // atime and ctime as the mtime that set_mtimes() gave every file.
        .args(["--set_all_file_dates", "set_to_mtime"])
        .arg(&medium_dir)
        .env("SOURCE_DATE_EPOCH", &e);
    eprintln!("making {}", o.out.display());
    run_tool(&mut cmd, "xorriso")?;

    let iso_size = fs::metadata(&o.out)
        .with_context(|| format!("stat {}", o.out.display()))?
        .len();
    // Without --medium-dir the tree goes away with its temporary directory:
    // name the files by their place on the ISO then.
    let place = |rel: &str| match &o.medium_dir {
        Some(d) => d.join(rel).display().to_string(),
        None => format!("{}:/{rel}", o.out.display()),
    };
    let mut outputs = vec![
        (
            "initrd".to_string(),
            place("boot/initrd"),
            initrd.len() as u64,
        ),
        ("squashfs".to_string(), place(IMAGE_NAME), img_size),
    ];
    if let Some(io) = &o.initrd_out {
        if let Some(parent) = io.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(io, &initrd).with_context(|| format!("writing {}", io.display()))?;
        outputs.push((
            "initrd".to_string(),
            io.display().to_string(),
            initrd.len() as u64,
        ));
    }
    outputs.push(("iso".to_string(), o.out.display().to_string(), iso_size));
    Ok(Built { outputs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_from_a_modules_dir() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("6.1.0-test");
        fs::create_dir_all(m.join("kernel/fs")).unwrap();
        fs::write(m.join("kernel/fs/a.ko"), b"A").unwrap();
        fs::write(m.join("kernel/fs/b-c.ko"), b"B").unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/fs/a.ko: kernel/fs/b-c.ko\nkernel/fs/b-c.ko:\n",
        )
        .unwrap();
        fs::write(m.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        let (a, builtin) = initrd_archive(b"INIT", &m, &["a".into(), "ext4".into()]).unwrap();
        assert_eq!(builtin, ["ext4"]);
        let bytes = a.to_bytes(0);
        let text = String::from_utf8_lossy(&bytes);
        for p in [
            "init\0",
            "etc/nixlive/initrd.conf\0",
            "lib/modules/6.1.0-test/kernel/fs/a.ko\0",
            "lib/modules/6.1.0-test/kernel/fs/b-c.ko\0",
            "lib/modules/6.1.0-test/modules.dep\0",
            "lib/modules/6.1.0-test/modules.builtin\0",
            "mnt-root\0",
            "dev/console\0",
        ] {
            assert!(text.contains(p), "{p}");
        }
        assert!(!text.contains("modules.alias"));
        assert!(text.contains(
            "nixlive-initrd 1\nkernel 6.1.0-test\nmodule kernel/fs/b-c.ko\nmodule kernel/fs/a.ko\n"
        ));
        let err = initrd_archive(b"", &m, &["zzz".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("zzz"));
        let err = initrd_archive(b"", &d.path().join("none"), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("none/modules.dep"), "{err:#}");
    }

    #[test]
    fn compression_round_trips() {
        let data = b"hello initrd ".repeat(1000);
        let z = compress(&data, Compression::Zstd).unwrap();
        assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(zstd::stream::decode_all(&z[..]).unwrap(), data);
        let g = compress(&data, Compression::Gzip).unwrap();
        assert_eq!(&g[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&g[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(compress(&data, Compression::Gzip).unwrap(), g);
    }
}

//! Building media: the initrd, the store images with their registration
//! and the manifest, the medium tree (BIOS via ISOLINUX, UEFI via GRUB), the
//! hybrid ISO, and the netboot set. Every step is reproducible: the same
//! inputs and `SOURCE_DATE_EPOCH` give the same bytes.

use crate::efi;
use crate::epoch::{mtime32, source_date_epoch, tree_time};
use crate::files::{copy, create_dir, create_parent, read, remove_old, set_mtimes, write};
use crate::images::{self, ImageArgs, ImageFormat};
use crate::initrd::cpio::{self, Archive};
use crate::initrd::{self, InitrdArgs};
use crate::inputs::InputArgs;
use crate::medium;
use crate::outputs::{Kind, Outputs};
use crate::tool;
use anyhow::{Context, Result, ensure};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the medium tree holds besides its images; anything else in
/// a reused --medium-dir is an error.
const MEDIUM_ENTRIES: [&str; 4] = ["nixlive.manifest", "boot", "isolinux", "EFI"];

/// Options shared by `iso`, `medium` and `netboot`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Kernel image (bzImage).
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    #[command(flatten)]
    pub initrd: InitrdArgs,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub images: ImageArgs,
    /// Extra kernel parameters.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub append: String,
    /// Write `nix-support/hydra-build-products` under this directory.
    #[arg(long, value_name = "DIR")]
    pub hydra_dir: Option<PathBuf>,
    /// Write the list of outputs as JSON here (also printed, one per line,
    /// as `KIND<TAB>SIZE<TAB>PATH` on standard output).
    #[arg(long, value_name = "FILE")]
    pub outputs_json: Option<PathBuf>,
}

/// Bootloader files for the medium.
#[derive(Debug, Clone, clap::Args)]
pub struct BootArgs {
    /// ISO volume ID, also root=LABEL=... and GRUB's search label (at most
    /// 32 bytes of A-Z a-z 0-9 _ - .).
    #[arg(long)]
    pub label: String,
    /// Leave out UEFI boot (GRUB and the EFI system partition image).
    #[arg(long)]
    pub no_uefi: bool,
    /// The machine the EFI program is for (x86_64: BOOTX64.EFI, aarch64: BOOTAA64.EFI).
    #[arg(long, value_enum, default_value_t = efi::EfiArch::X86_64)]
    pub efi_arch: efi::EfiArch,
    /// Directory of GRUB's EFI modules for --efi-arch [default:
    /// /usr/lib/grub/x86_64-efi or /usr/lib/grub/arm64-efi].
    #[arg(long, value_name = "DIR")]
    pub grub_efi_dir: Option<PathBuf>,
    /// ISOLINUX's boot image (package isolinux).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/ISOLINUX/isolinux.bin"
    )]
    pub isolinux_bin: PathBuf,
    /// ISOLINUX's core module (package syslinux-common).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
    )]
    pub ldlinux_c32: PathBuf,
    /// The hybrid MBR that makes the ISO bootable from a USB disk under BIOS.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/ISOLINUX/isohdpfx.bin"
    )]
    pub isohdpfx: PathBuf,
}

/// Empties a reused medium directory of what an earlier build put there, and
/// refuses one that holds anything else.
fn prepare_medium_dir(dir: &Path) -> Result<()> {
    create_dir(dir)?;
    let mut names = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        names.push(
            e.with_context(|| format!("listing {}", dir.display()))?
                .file_name(),
        );
    }
    let ours = |n: &std::ffi::OsString| {
        MEDIUM_ENTRIES.iter().any(|m| n.as_os_str() == *m)
            || n.to_str().is_some_and(ImageFormat::is_image_name)
    };
    let foreign: Vec<_> = names.iter().filter(|n| !ours(n)).collect();
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

/// Builds the medium tree in `dir` (which must be empty or an earlier
/// medium).
pub fn build_medium(c: &CommonArgs, b: &BootArgs, dir: &Path, outs: &mut Outputs) -> Result<()> {
    let epoch = source_date_epoch()?;
    medium::check_label(&b.label).context("--label")?;
    let params =
        medium::kernel_params(&b.label, &c.inputs.system, &c.append).context("--append")?;
    ensure!(
        c.kernel.is_file(),
        "--kernel {} is not a file",
        c.kernel.display()
    );
    for (p, flag) in [
        (&b.isolinux_bin, "--isolinux-bin"),
        (&b.ldlinux_c32, "--ldlinux-c32"),
        (&b.isohdpfx, "--isohdpfx"),
    ] {
        ensure!(
            p.is_file(),
            "{flag} {} is not a file (install isolinux and syslinux-common)",
            p.display()
        );
    }
    let closure = c.inputs.load()?;
    let work = tempfile::Builder::new()
        .prefix("nixlive-build.")
        .tempdir()
        .context("creating a temporary directory")?;
    prepare_medium_dir(dir)?;

    let initrd = initrd::build(&c.initrd, epoch)?;
    let boot = dir.join("boot");
    write(&boot.join("initrd"), &initrd)?;
    copy(&c.kernel, &boot.join("vmlinuz"))?;
    outs.add(Kind::Kernel, boot.join("vmlinuz"))?;
    outs.add(Kind::Initrd, boot.join("initrd"))?;

    let manifest = images::write_all(&c.images, &closure, dir, epoch, work.path())?;
    for i in &manifest.images {
        outs.add(Kind::Image(c.images.format()), dir.join(&i.name))?;
    }
    outs.add(
        Kind::Manifest,
        dir.join(nixlive_formats::manifest::DEFAULT_PATH),
    )?;

    // BIOS: ISOLINUX.
    let iso_dir = dir.join("isolinux");
    create_dir(&iso_dir)?;
    copy(&b.isolinux_bin, &iso_dir.join("isolinux.bin"))?;
    copy(&b.ldlinux_c32, &iso_dir.join("ldlinux.c32"))?;
    write(
        &iso_dir.join("isolinux.cfg"),
        medium::isolinux_cfg(&params).as_bytes(),
    )?;

    // UEFI: GRUB on the medium and in the EFI system partition image.
    if !b.no_uefi {
        let arch = b.efi_arch;
        let efi = work.path().join(arch.boot_file());
        let grub_dir = b
            .grub_efi_dir
            .clone()
            .unwrap_or_else(|| Path::new("/usr/lib/grub").join(arch.grub_target()));
        efi::make_grub_efi(arch, &grub_dir, &b.label, work.path(), &efi)?;
        write(
            &boot.join("grub/grub.cfg"),
            efi::grub_cfg(&params).as_bytes(),
        )?;
        let efi_boot = dir.join("EFI/BOOT");
        create_dir(&efi_boot)?;
        copy(&efi, &efi_boot.join(arch.boot_file()))?;
        efi::make_esp(&efi, arch.boot_file(), &boot.join("efi.img"), epoch)?;
        outs.add(Kind::EfiImage, boot.join("efi.img"))?;
    }
    set_mtimes(dir, tree_time(epoch))?;
    Ok(())
}

/// Makes the hybrid ISO `out` from a medium tree.
pub fn make_iso(b: &BootArgs, tree: &Path, out: &Path) -> Result<()> {
    let epoch = source_date_epoch()?;
    create_parent(out)?;
    remove_old(out)?;
    let date = medium::xorriso_date(epoch);
    let mut cmd = Command::new("xorriso");
    cmd.args(["-as", "mkisofs", "-o"])
        .arg(out)
        .args(["-V", &b.label, "-r", "-J", "-joliet-long"])
        .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"]);
    if !b.no_uefi {
        cmd.args(["-eltorito-alt-boot", "-e", "boot/efi.img", "-no-emul-boot"])
            .arg("-isohybrid-gpt-basdat");
    }
    cmd.arg("-isohybrid-mbr")
        .arg(&b.isohdpfx)
        .arg(format!("--modification-date={date}"))
        // atime and ctime as the mtime that set_mtimes() gave every file.
        .args(["--set_all_file_dates", "set_to_mtime"])
        .arg(tree)
        .env("SOURCE_DATE_EPOCH", epoch.to_string());
    crate::progress::during(&format!("making {}", out.display()), || {
        tool::run(&mut cmd, "xorriso")
    })
}

/// `nixlive iso`.
pub fn iso(
    c: &CommonArgs,
    b: &BootArgs,
    out: &Path,
    medium_dir: Option<&Path>,
    initrd_out: Option<&Path>,
) -> Result<Outputs> {
    let mut outs = Outputs::default();
    let tmp;
    let dir = match medium_dir {
        Some(d) => d.to_path_buf(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("nixlive-medium.")
                .tempdir()
                .context("creating a temporary medium directory")?;
            tmp.path().to_path_buf()
        }
    };
    let mut tree_outs = Outputs::default();
    build_medium(c, b, &dir, &mut tree_outs)?;
    make_iso(b, &dir, out)?;
    if let Some(io) = initrd_out {
        copy(&dir.join("boot/initrd"), io)?;
        outs.add(Kind::Initrd, io.to_path_buf())?;
    }
    // Without --medium-dir the tree goes away: only the ISO is an output.
    if medium_dir.is_some() {
        outs.extend(tree_outs);
    }
    outs.add(Kind::Iso, out.to_path_buf())?;
    Ok(outs)
}

/// `nixlive netboot`: `bzImage`, `initrd` (with the manifest and images
/// inside, uncompressed, after the compressed main archive), `netboot.ipxe`
/// and `cmdline` in `out`.
pub fn netboot(c: &CommonArgs, out: &Path) -> Result<Outputs> {
    let epoch = source_date_epoch()?;
    let params = medium::netboot_params(&c.inputs.system, &c.append).context("--append")?;
    ensure!(
        c.kernel.is_file(),
        "--kernel {} is not a file",
        c.kernel.display()
    );
    let closure = c.inputs.load()?;
    let work = tempfile::Builder::new()
        .prefix("nixlive-netboot.")
        .tempdir()
        .context("creating a temporary directory")?;
    let images = work.path().join("images");
    create_dir(&images)?;
    let manifest = images::write_all(&c.images, &closure, &images, epoch, work.path())?;

    // The images segment: stored, not compressed again (squashfs already
    // is), so the kernel only copies it and init attaches the files in place.
    let mut seg = Archive::new();
    let mpath = images.join(nixlive_formats::manifest::DEFAULT_PATH);
    seg.add(
        &format!("/{}", nixlive_formats::manifest::DEFAULT_PATH),
        0o444,
        cpio::Kind::File(read(&mpath, "manifest")?),
    )?;
    for i in &manifest.images {
        seg.add(
            &format!("/{}", i.name),
            0o444,
            cpio::Kind::HostFile(images.join(&i.name), i.size),
        )?;
    }
    let main = initrd::build(&c.initrd, epoch)?;
    let mtime = mtime32(epoch)?;
    create_dir(out)?;
    let initrd_path = out.join("initrd");
    {
        let f = fs::File::create(&initrd_path)
            .with_context(|| format!("writing {}", initrd_path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let mut head = main;
        // Pad so the uncompressed archive starts 4-aligned.
        initrd::append_segment(&mut head, &[]);
        w.write_all(&head)
            .and_then(|()| seg.write_to(&mut w, mtime))
            .and_then(|()| w.flush())
            .with_context(|| format!("writing {}", initrd_path.display()))?;
    }
    let kernel = out.join("bzImage");
    copy(&c.kernel, &kernel)?;
    write(&out.join("cmdline"), format!("{params}\n").as_bytes())?;
    write(
        &out.join("netboot.ipxe"),
        medium::ipxe_script("bzImage", "initrd", &params).as_bytes(),
    )?;
    let mut outs = Outputs::default();
    outs.add(Kind::Kernel, kernel)?;
    outs.add(Kind::Initrd, initrd_path)?;
    outs.add(Kind::Ipxe, out.join("netboot.ipxe"))?;
    outs.add(Kind::Cmdline, out.join("cmdline"))?;
    Ok(outs)
}

/// `nixlive initrd`: the initrd alone.
pub fn initrd_only(a: &InitrdArgs, out: &Path) -> Result<Outputs> {
    let epoch = source_date_epoch()?;
    let data = initrd::build(a, epoch)?;
    write(out, &data)?;
    let mut outs = Outputs::default();
    outs.add(Kind::Initrd, out.to_path_buf())?;
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medium_dir_is_reused_only_when_ours() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("boot")).unwrap();
        fs::write(d.path().join("base.squashfs"), b"").unwrap();
        prepare_medium_dir(d.path()).unwrap();
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        fs::write(d.path().join("notes.txt"), b"").unwrap();
        let e = prepare_medium_dir(d.path()).unwrap_err();
        assert!(e.to_string().contains("notes.txt"), "{e}");
    }
}

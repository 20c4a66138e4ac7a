//! `nixlive netboot`: a directory to serve over TFTP or HTTP: `bzImage`,
//! `initrd` (the compressed main archive, then the manifest and images as
//! a stored archive the kernel only copies, so init attaches the images in
//! place), `netboot.ipxe` and `cmdline`.
//!
//! Non-goals: no fetching at boot beyond what the boot loader loads (the
//! images ride in the initrd), no PXE server.

use crate::cmdline;
use crate::epoch::{mtime32, source_date_epoch};
use crate::files::{copy, create_dir, read, write};
use crate::initrd::{
    self,
    cpio::{self, Archive},
};
use crate::outputs::{Kind, Outputs};
use crate::pipeline::{Build, CommonArgs};
use anyhow::{Context, Result};
use nixlive_formats::Manifest;
use nixlive_formats::manifest::DEFAULT_PATH as MANIFEST;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Directory to write into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: &Args) -> Result<()> {
    let (c, out) = (&a.common, &a.out);
    let epoch = source_date_epoch()?;
    let params = cmdline::netboot_params(&c.inputs.system, &c.append).context("--append")?;
    c.check_kernel()?;
    let machine = c.check_boot(None)?;
    let build = Build::start(c, epoch, "nixlive-netboot.")?;
    build.check_stage2(machine)?;
    let images = build.work().join("images");
    create_dir(&images)?;
    let manifest = build.images(&images)?;
    let seg = images_segment(&images, &manifest)?;
    let main = build.initrd()?;
    let mtime = mtime32(epoch)?;
    create_dir(out)?;
    let initrd_path = out.join("initrd");
    write_initrd(&initrd_path, main, &seg, mtime)?;
    let kernel = out.join("bzImage");
    copy(&c.kernel, &kernel)?;
    write(&out.join("cmdline"), format!("{params}\n").as_bytes())?;
    write(
        &out.join("netboot.ipxe"),
        ipxe_script("bzImage", "initrd", &params).as_bytes(),
    )?;
    let mut outs = Outputs::default();
    outs.add(Kind::Kernel, kernel)?;
    outs.add(Kind::Initrd, initrd_path)?;
    outs.add(Kind::Ipxe, out.join("netboot.ipxe"))?;
    outs.add(Kind::Cmdline, out.join("cmdline"))?;
    c.report(&outs)
}

/// The images segment: the manifest and the images in `dir`, stored, not
/// compressed again (the images already are).
fn images_segment(dir: &Path, manifest: &Manifest) -> Result<Archive> {
    let mut seg = Archive::new();
    seg.add(
        &format!("/{MANIFEST}"),
        0o444,
        cpio::Kind::File(read(&dir.join(MANIFEST), "manifest")?),
    )?;
    for i in &manifest.images {
        seg.add(
            &format!("/{}", i.name),
            0o444,
            cpio::Kind::HostFile(dir.join(&i.name), i.size),
        )?;
    }
    Ok(seg)
}

/// Writes the compressed `main` archive, then `seg` streamed from the
/// image files.
fn write_initrd(path: &Path, mut main: Vec<u8>, seg: &Archive, mtime: u32) -> Result<()> {
    let f = fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    // Pad so the uncompressed archive starts 4-aligned.
    initrd::append_segment(&mut main, &[]);
    w.write_all(&main)
        .and_then(|()| seg.write_to(&mut w, mtime))
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}

/// `netboot.ipxe`: kernel and initrd relative to the script's own URL, the
/// command line given once.
fn ipxe_script(kernel: &str, initrd: &str, params: &str) -> String {
    format!(
        "#!ipxe\n\
         # nixlive netboot: serve this directory over TFTP or HTTP\n\
         kernel {kernel} initrd={initrd} {params}\n\
         initrd {initrd}\n\
         boot\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netboot_text() {
        let p = "init=/nix/store/x-sys/init console=tty0 console=ttyS0,115200 quiet";
        assert_eq!(
            ipxe_script("bzImage", "initrd", p),
            format!(
                "#!ipxe\n# nixlive netboot: serve this directory over TFTP or HTTP\n\
                 kernel bzImage initrd=initrd {p}\ninitrd initrd\nboot\n"
            )
        );
    }
}

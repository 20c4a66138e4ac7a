//! `nixlive netboot`: a directory to serve over TFTP or HTTP: `bzImage`,
//! `initrd` (the compressed main archive, then the manifest and images as
//! a stored archive the kernel only copies, so init attaches the images in
//! place), `netboot.ipxe` and `cmdline`.
//!
//! With `--http`, the initrd is small (init, modules with the `net` set,
//! keys; no images) and the images and the manifest sit next to it: init
//! fetches them from `nixlive.url=`, which the iPXE script makes from the
//! URL it was fetched from (`${cwduri}`) or from `--base-url`.
//!
//! The set is written beside `--out` and put in place whole
//! ([`crate::atomic`]).
//!
//! Non-goals: no PXE or HTTP server (any plain web server serves the set).

use crate::atomic::OutDir;
use crate::cmdline;
use crate::epoch::{mtime32, source_date_epoch};
use crate::files::{copy, create_dir, read, write};
use crate::initrd::{
    self,
    cpio::{self, Archive},
};
use crate::outputs::{Kind, Outputs};
use crate::overlap;
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
    /// Serve the images over HTTP: init fetches the manifest and the images
    /// (written next to the initrd, not into it); the `net` module set is added.
    #[arg(long)]
    pub http: bool,
    /// With --http: the URL the directory is served at
    /// (`http://HOST[:PORT]/PATH/`). Default: the directory iPXE fetched the
    /// script from (`${cwduri}`, iPXE 1.21.1 of 2024 and later).
    #[arg(long, value_name = "URL", requires = "http")]
    pub base_url: Option<String>,
}

/// The manifest's URL in the kernel command line: `--base-url`'s, or
/// `${base}` for the iPXE script to fill in.
fn manifest_url(base_url: Option<&str>) -> Result<String> {
    let Some(b) = base_url else {
        return Ok(format!("${{base}}/{MANIFEST}"));
    };
    let url = nixlive_formats::net::url::Url::parse(b).context("--base-url")?;
    let url = format!("{}/{MANIFEST}", url.to_string().trim_end_matches('/'));
    nixlive_formats::net::url::Url::parse(&url).context("--base-url")?;
    Ok(url)
}

pub fn run(a: &Args) -> Result<()> {
    if a.http {
        return run_http(a);
    }
    let c = &a.common;
    refuse_overlaps(c, &a.out)?;
    let epoch = source_date_epoch()?;
    let params = cmdline::netboot_params(&c.inputs.system, &c.append).context("--append")?;
    c.check_kernel()?;
    let machine = c.check_boot(None)?;
    let build = Build::start(c, epoch, "nixlive-netboot.", None)?;
    build.check_stage2(machine)?;
    let images = build.work().join("images");
    create_dir(&images)?;
    let manifest = build.images(&images, &[])?;
    let seg = images_segment(&images, &manifest)?;
    let main = build.initrd()?;
    let mtime = mtime32(epoch)?;
    let set = OutDir::new(&a.out)?;
    let out = set.path();
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
    let tmp = out.to_path_buf();
    set.commit()?;
    outs.rebase(&tmp, &a.out);
    c.report(&outs)
}

/// What a netboot set holds besides its images: an existing `--out`
/// holding anything else is not replaced.
const SET_ENTRIES: [&str; 5] = ["bzImage", "initrd", "cmdline", "netboot.ipxe", MANIFEST];

/// Refuses outputs that would write over an input, and an existing
/// `--out` that is not an earlier set (it is replaced whole).
fn refuse_overlaps(c: &CommonArgs, out: &Path) -> Result<()> {
    let mut outputs = vec![("--out", out.to_path_buf())];
    overlap::push_opt(&mut outputs, "--hydra-dir", &c.hydra_dir);
    overlap::push_opt(&mut outputs, "--outputs-json", &c.outputs_json);
    overlap::refuse(&overlap::common_inputs(c), &outputs)?;
    crate::medium::check_reusable(out, "--out", &SET_ENTRIES)
}

/// `--http`: the small initrd, the images and the manifest beside it, the
/// script that passes `nixlive.url=`.
fn run_http(a: &Args) -> Result<()> {
    let mut c = a.common.clone();
    if !c
        .initrd
        .module_sets
        .iter()
        .flat_map(|s| s.split(','))
        .any(|s| s.trim() == "net")
    {
        c.initrd.module_sets.push("net".into());
    }
    refuse_overlaps(&c, &a.out)?;
    let epoch = source_date_epoch()?;
    let url = manifest_url(a.base_url.as_deref())?;
    let append = format!("{} nixlive.url={url}", c.append.trim());
    let params = cmdline::netboot_params(&c.inputs.system, append.trim()).context("--append")?;
    c.check_kernel()?;
    let machine = c.check_boot(None)?;
    let build = Build::start(&c, epoch, "nixlive-netboot.", None)?;
    build.check_stage2(machine)?;
    let set = OutDir::new(&a.out)?;
    let out = set.path();
    let manifest = build.images(out, &[])?;
    let initrd_path = out.join("initrd");
    write(&initrd_path, &build.initrd()?)?;
    let kernel = out.join("bzImage");
    copy(&c.kernel, &kernel)?;
    write(&out.join("cmdline"), format!("{params}\n").as_bytes())?;
    let script = if a.base_url.is_some() {
        ipxe_script("bzImage", "initrd", &params)
    } else {
        ipxe_script_cwduri("bzImage", "initrd", &params)
    };
    write(&out.join("netboot.ipxe"), script.as_bytes())?;
    let mut outs = Outputs::default();
    outs.add(Kind::Kernel, kernel)?;
    outs.add(Kind::Initrd, initrd_path)?;
    for i in &manifest.images {
        outs.add(Kind::Image(c.images.format()), out.join(&i.name))?;
    }
    outs.add(Kind::Manifest, out.join(MANIFEST))?;
    outs.add(Kind::Ipxe, out.join("netboot.ipxe"))?;
    outs.add(Kind::Cmdline, out.join("cmdline"))?;
    let tmp = out.to_path_buf();
    set.commit()?;
    outs.rebase(&tmp, &a.out);
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

/// `netboot.ipxe` for `--http` without `--base-url`: `nixlive.url=` is
/// made from the directory iPXE fetched the script from; an iPXE too old
/// to know `${cwduri}` says so instead of booting without images.
fn ipxe_script_cwduri(kernel: &str, initrd: &str, params: &str) -> String {
    format!(
        "#!ipxe\n\
         # nixlive netboot over HTTP: serve this directory as it is, boot this script by its URL\n\
         isset ${{cwduri}} || goto no_cwduri\n\
         set base ${{cwduri}}\n\
         kernel {kernel} initrd={initrd} {params}\n\
         initrd {initrd}\n\
         boot\n\
         :no_cwduri\n\
         echo nixlive: this iPXE does not know ${{cwduri}}: rebuild the set with --base-url http://HOST/PATH/\n\
         exit 1\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_scripts_and_urls() {
        assert_eq!(manifest_url(None).unwrap(), "${base}/nixlive.manifest");
        assert_eq!(
            manifest_url(Some("http://10.0.2.2:8000/set/")).unwrap(),
            "http://10.0.2.2:8000/set/nixlive.manifest"
        );
        assert_eq!(
            manifest_url(Some("http://boot.lan")).unwrap(),
            "http://boot.lan/nixlive.manifest"
        );
        let e = format!("{:#}", manifest_url(Some("https://x/")).unwrap_err());
        assert!(
            e.contains("--base-url") && e.contains("only http://"),
            "{e}"
        );
        let s = ipxe_script_cwduri(
            "bzImage",
            "initrd",
            "init=/x/init nixlive.url=${base}/nixlive.manifest",
        );
        assert!(
            s.contains("isset ${cwduri} || goto no_cwduri\nset base ${cwduri}\n"),
            "{s}"
        );
        assert!(s.contains(
            "kernel bzImage initrd=initrd init=/x/init nixlive.url=${base}/nixlive.manifest\n"
        ));
        assert!(s.ends_with("exit 1\n"));
    }

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

//! `nixlive`: builds nixlive boot media on the build host, unprivileged and
//! reproducibly (same inputs and `SOURCE_DATE_EPOCH`, same bytes).
//!
//! The commands live in `cmd/`, one module each; the media commands share
//! the pipeline in `pipeline.rs` (closure → images → initrd → medium →
//! container), whose stages are `closure/`, `images/`, `initrd/` and
//! `medium/`.

mod atomic;
mod check;
mod cleanup;
mod closure;
mod cmd;
mod cmdline;
mod epoch;
mod files;
mod images;
mod initrd;
mod inspect;
mod keys;
mod medium;
mod outputs;
mod overlap;
mod partition_table;
mod pipeline;
mod progress;
mod sys;
mod system_tree;
mod tar;
mod tool;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "nixlive", version, about = "Builds nixlive live media")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Assemble the demo stage-2 system as a store path under ROOT/nix/store
    /// and print its store path.
    DemoSystem(cmd::demo_system::Args),
    /// Print the `nix-store --load-db` registration of STOREPATHs found under
    /// ROOT/nix/store: NAR hashes, sizes and references (among the given
    /// paths) computed here, as `nix-store --dump-db` prints them.
    Registration(cmd::registration::Args),
    /// Build a hybrid ISO (BIOS and UEFI; CD and USB disk): initrd, store
    /// images, registration, manifest.
    Iso(cmd::iso::Args),
    /// Write the medium tree only (what the ISO holds), for copying onto a
    /// USB stick whose filesystem is labelled --label.
    Medium(cmd::medium::Args),
    /// Write a netboot set: bzImage, initrd (manifest and images inside),
    /// netboot.ipxe and cmdline.
    Netboot(cmd::netboot::Args),
    /// Write the initrd alone (no store images).
    Initrd(cmd::initrd::Args),
    /// Show what an ISO, medium tree, netboot set or initrd holds, and
    /// whether it can boot (exit status 1 when it cannot).
    Inspect(cmd::inspect::Args),
    /// Write the system tarball: the closure, /nix-path-registration,
    /// /boot/{kernel,initrd,cmdline} (the initrd boots a plain root), as
    /// FILE.tar, FILE.tar.zst or FILE.tar.xz.
    Tarball(cmd::tarball::Args),
    /// Write the system tarball's tree as a partitioned disk image (one
    /// ext4 root partition labelled --label) for an SD card or USB disk.
    DiskImage(cmd::disk_image::Args),
    /// Print where stage 1's time went (its steps, longest first, with
    /// start and duration) from /run/nixlive/stage1.json, and with --svg
    /// draw them on the uptime axis.
    Analyze(cmd::analyze::Args),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::DemoSystem(a) => cmd::demo_system::run(&a),
        Cmd::Registration(a) => cmd::registration::run(&a),
        Cmd::Iso(a) => cmd::iso::run(&a),
        Cmd::Medium(a) => cmd::medium::run(&a),
        Cmd::Netboot(a) => cmd::netboot::run(&a),
        Cmd::Initrd(a) => cmd::initrd::run(&a),
        Cmd::Inspect(a) => cmd::inspect::run(&a),
        Cmd::Tarball(a) => cmd::tarball::run(&a),
        Cmd::DiskImage(a) => cmd::disk_image::run(&a),
        Cmd::Analyze(a) => cmd::analyze::run(&a),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cleanup::install() {
        eprintln!("nixlive: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let code = match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nixlive: error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // A SIGINT or SIGTERM that came in time ends the process from here on.
    cleanup::finish();
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::PathBuf;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "nixlive",
            "iso",
            "--kernel",
            "k",
            "--modules-dir",
            "m",
            "--module",
            "a",
            "--module",
            "b-c",
            "--module-set",
            "usb,cd",
            "--init",
            "i",
            "--store-root",
            "r",
            "--system",
            "/nix/store/x",
            "--label",
            "L",
            "--append",
            "-x quiet",
            "--compression",
            "xz",
            "--image",
            "base.squashfs=/nix/store/y",
            "--out",
            "o.iso",
        ])
        .unwrap();
        let Cmd::Iso(cmd::iso::Args {
            medium: medium::MediumArgs { common, boot, .. },
            ..
        }) = c.cmd
        else {
            panic!("not iso")
        };
        assert_eq!(common.initrd.modules, ["a", "b-c"]);
        assert_eq!(common.initrd.module_sets, ["usb,cd"]);
        assert_eq!(common.append, "-x quiet");
        assert_eq!(common.initrd.compression, initrd::Compression::Xz);
        assert_eq!(common.images.images[0].name, "base.squashfs");
        assert_eq!(common.inputs.store_root, PathBuf::from("r"));
        assert!(!boot.no_uefi);
        let c = Cli::try_parse_from(["nixlive", "registration", "--root", "/r", "/nix/store/a"])
            .unwrap();
        let Cmd::Registration(cmd::registration::Args { format, paths, .. }) = c.cmd else {
            panic!("not registration")
        };
        assert_eq!(format, cmd::registration::HashFormatArg::DumpDb);
        assert_eq!(paths, ["/nix/store/a"]);
    }
}

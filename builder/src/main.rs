//! `nixlive`: builds nixlive boot media on the build host, unprivileged and
//! reproducibly (same inputs and `SOURCE_DATE_EPOCH`, same bytes).

mod demo_system;
mod efi;
mod epoch;
mod files;
mod images;
mod initrd;
mod inputs;
mod iso;
mod medium;
mod nar;
mod outputs;
mod progress;
mod registration;
mod tool;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "nixlive", version, about = "Builds nixlive live media")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Assemble the demo stage-2 system as a store path under ROOT/nix/store
    /// and print its store path.
    DemoSystem {
        /// Static stage-2 init (nixlive-demo-init).
        #[arg(long, value_name = "BIN")]
        init: PathBuf,
        /// Static nixlive-postboot.
        #[arg(long, value_name = "BIN")]
        postboot: PathBuf,
        /// Directory that gets nix/store/<hash>-nixlive-demo-system.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
    },
    /// Print the `nix-store --load-db` registration of STOREPATHs found under
    /// ROOT/nix/store: NAR hashes, sizes and references (among the given
    /// paths) computed here, as `nix-store --dump-db` prints them.
    Registration {
        /// Directory holding nix/store/<paths>.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Hash format: dump-db (hex, as `nix-store --dump-db`) or
        /// closure-info (`sha256:<base 32>`, as nixpkgs' closureInfo).
        #[arg(long, value_enum, default_value = "dump-db")]
        format: registration::HashFormatArg,
        /// The store paths (/nix/store/<hash>-<name> or <hash>-<name>); all
        /// paths under ROOT/nix/store when none are given.
        #[arg(value_name = "STOREPATH")]
        paths: Vec<String>,
    },
    /// Build a hybrid ISO (BIOS and UEFI; CD and USB disk): initrd, store
    /// images, registration, manifest.
    Iso {
        #[command(flatten)]
        common: iso::CommonArgs,
        #[command(flatten)]
        boot: iso::BootArgs,
        /// Where to write the ISO.
        #[arg(long, value_name = "FILE.iso")]
        out: PathBuf,
        /// Keep the medium tree here (created, or emptied of an earlier build).
        #[arg(long, value_name = "DIR")]
        medium_dir: Option<PathBuf>,
        /// Also write the compressed initrd here.
        #[arg(long, value_name = "FILE")]
        initrd_out: Option<PathBuf>,
    },
    /// Write the medium tree only (what the ISO holds), for copying onto a
    /// USB stick whose filesystem is labelled --label.
    Medium {
        #[command(flatten)]
        common: iso::CommonArgs,
        #[command(flatten)]
        boot: iso::BootArgs,
        /// The tree's directory (created, or emptied of an earlier build).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write a netboot set: bzImage, initrd (manifest and images inside),
    /// netboot.ipxe and cmdline.
    Netboot {
        #[command(flatten)]
        common: iso::CommonArgs,
        /// Directory to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write the initrd alone (no store images).
    Initrd {
        #[command(flatten)]
        initrd: initrd::InitrdArgs,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::DemoSystem {
            init,
            postboot,
            root,
        } => {
            let sp = demo_system::run(&init, &postboot, &root)?;
            println!("{sp}");
        }
        Cmd::Registration {
            root,
            format,
            paths,
        } => {
            let store = root.join("nix/store");
            let names = if paths.is_empty() {
                registration::list_store(&store)?
            } else {
                registration::resolve(&store, &paths)?
            };
            let infos = inputs::compute(&store, &names)?;
            print!(
                "{}",
                nixlive_formats::registration::render(&infos, format.into())
            );
        }
        Cmd::Iso {
            common,
            boot,
            out,
            medium_dir,
            initrd_out,
        } => {
            let outs = iso::iso(
                &common,
                &boot,
                &out,
                medium_dir.as_deref(),
                initrd_out.as_deref(),
            )?;
            outs.report(common.hydra_dir.as_deref(), common.outputs_json.as_deref())?;
        }
        Cmd::Medium { common, boot, out } => {
            let mut outs = outputs::Outputs::default();
            iso::build_medium(&common, &boot, &out, &mut outs)?;
            outs.report(common.hydra_dir.as_deref(), common.outputs_json.as_deref())?;
        }
        Cmd::Netboot { common, out } => {
            let outs = iso::netboot(&common, &out)?;
            outs.report(common.hydra_dir.as_deref(), common.outputs_json.as_deref())?;
        }
        Cmd::Initrd { initrd, out } => {
            let outs = iso::initrd_only(&initrd, &out)?;
            outs.report(None, None)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nixlive: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        let Cmd::Iso { common, boot, .. } = c.cmd else {
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
        let Cmd::Registration { format, paths, .. } = c.cmd else {
            panic!("not registration")
        };
        assert_eq!(format, registration::HashFormatArg::DumpDb);
        assert_eq!(paths, ["/nix/store/a"]);
    }
}

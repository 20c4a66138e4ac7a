//! `nixlive`: builds nixlive boot media on the build host, unprivileged and
//! reproducibly (same inputs and `SOURCE_DATE_EPOCH`, same bytes).

mod cpio;
mod demo_system;
mod efi;
mod epoch;
mod files;
mod initrd;
mod inputs;
mod iso;
mod medium;
mod nar;
mod outputs;
mod progress;
mod registration;
mod squashfs;
mod tool;

use anyhow::Context;
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
        initrd: iso::InitrdArgs,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn report(outs: &outputs::Outputs, common: Option<&iso::CommonArgs>) -> anyhow::Result<()> {
    for o in &outs.list {
        eprintln!("{:>9}  {:>10}  {}", o.kind, human(o.size), o.path.display());
    }
    if let Some(c) = common {
        if let Some(d) = &c.hydra_dir {
            outs.write_hydra(d)?;
        }
        if let Some(j) = &c.outputs_json {
            std::fs::write(j, outs.json()).with_context(|| format!("writing {}", j.display()))?;
        }
    }
    print!("{}", outs.tsv());
    Ok(())
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
            report(&outs, Some(&common))?;
        }
        Cmd::Medium { common, boot, out } => {
            let mut outs = outputs::Outputs::default();
            iso::build_medium(&common, &boot, &out, &mut outs)?;
            report(&outs, Some(&common))?;
        }
        Cmd::Netboot { common, out } => {
            let outs = iso::netboot(&common, &out)?;
            report(&outs, Some(&common))?;
        }
        Cmd::Initrd { initrd, out } => {
            let outs = iso::initrd_only(&initrd, &out)?;
            report(&outs, None)?;
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

    #[test]
    fn sizes() {
        assert_eq!(human(10), "10 B");
        assert_eq!(human(1536), "1.5 KiB");
    }
}

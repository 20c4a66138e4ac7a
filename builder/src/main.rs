//! `nixlive`: builds nixlive boot media on the build host, unprivileged and
//! reproducibly (same inputs and `SOURCE_DATE_EPOCH`, same bytes).

mod cpio;
mod demo_system;
mod iso;
mod medium;
mod nar;
mod nixbase32;
mod registration;

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
    /// Print the `nix-store --load-db` registration of every store path
    /// under ROOT/nix/store (NAR hashes, sizes, references computed here).
    Registration {
        /// Directory holding nix/store/<paths>.
        #[arg(long, value_name = "DIR")]
        store_root: PathBuf,
    },
    /// Build a BIOS-bootable hybrid ISO: initrd, squashfs store image,
    /// registration, manifest; print the ISO's path.
    Iso {
        /// Kernel image (bzImage).
        #[arg(long, value_name = "FILE")]
        kernel: PathBuf,
        /// The kernel's /lib/modules/VERSION directory (with modules.dep).
        #[arg(long, value_name = "DIR")]
        modules_dir: PathBuf,
        /// Module to load in the initrd, with its dependencies (repeatable).
        #[arg(long = "module", value_name = "NAME")]
        modules: Vec<String>,
        /// Static stage-1 init (nixlive-init), packed as /init.
        #[arg(long, value_name = "BIN")]
        init: PathBuf,
        /// Directory holding nix/store/<paths>; every path in it goes into the image.
        #[arg(long, value_name = "DIR")]
        store_root: PathBuf,
        /// The system's store path (/nix/store/<hash>-<name>, with an `init`).
        #[arg(long, value_name = "STOREPATH")]
        system: String,
        /// ISO volume ID, also used as root=LABEL=... (at most 32 bytes).
        #[arg(long)]
        label: String,
        /// Extra kernel parameters.
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        append: String,
        /// Initrd compression.
        #[arg(long, value_enum, default_value = "zstd")]
        compression: iso::Compression,
        /// Where to write the ISO.
        #[arg(long, value_name = "FILE.iso")]
        out: PathBuf,
        /// Keep the medium tree here (created, or emptied of an earlier build).
        #[arg(long, value_name = "DIR")]
        medium_dir: Option<PathBuf>,
        /// Also write the compressed initrd here.
        #[arg(long, value_name = "FILE")]
        initrd_out: Option<PathBuf>,
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/usr/lib/ISOLINUX/isolinux.bin"
        )]
        isolinux_bin: PathBuf,
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
        )]
        ldlinux_c32: PathBuf,
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/usr/lib/ISOLINUX/isohdpfx.bin"
        )]
        isohdpfx: PathBuf,
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
        Cmd::Registration { store_root } => {
            let store = store_root.join("nix/store");
            let names = registration::list_store(&store)?;
            let infos = registration::compute(&store, "/nix/store", &names)?;
            print!("{}", registration::render(&infos));
        }
        Cmd::Iso {
            kernel,
            modules_dir,
            modules,
            init,
            store_root,
            system,
            label,
            append,
            compression,
            out,
            medium_dir,
            initrd_out,
            isolinux_bin,
            ldlinux_c32,
            isohdpfx,
        } => {
            let built = iso::run(&iso::IsoOptions {
                kernel,
                modules_dir,
                modules,
                init,
                store_root,
                system,
                label,
                append,
                compression,
                out: out.clone(),
                medium_dir,
                initrd_out,
                isolinux_bin,
                ldlinux_c32,
                isohdpfx,
            })?;
            for (what, place, size) in &built.outputs {
                eprintln!("{what:>9}  {:>10}  {place}", human(*size));
            }
            println!("{}", out.display());
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
            "gzip",
            "--out",
            "o.iso",
        ])
        .unwrap();
        let Cmd::Iso {
            modules,
            append,
            compression,
            ..
        } = c.cmd
        else {
            panic!("not iso")
        };
        assert_eq!(modules, ["a", "b-c"]);
        assert_eq!(append, "-x quiet");
        assert_eq!(compression, iso::Compression::Gzip);
    }

    #[test]
    fn sizes() {
        assert_eq!(human(10), "10 B");
        assert_eq!(human(1536), "1.5 KiB");
    }
}

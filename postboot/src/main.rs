//! `nixlive-postboot [OPTIONS]`: see the crate documentation of
//! `nixlive_postboot` and `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use nixlive_postboot::load::Loader;
use nixlive_postboot::{Options, run};

/// The static musl build allocates through mimalloc: musl's own allocator
/// makes the registration of 10,000 paths several times slower (SQLite's
/// allocations go to mimalloc too, through its `override` of malloc).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: nixlive-postboot [--root DIR] [--loader auto|native|nix-store]
                        [--registration FILE] [--system PATH] [--nix-store PROGRAM]
                        [--grow-root]

Registers /nix-path-registration (a system tarball's, removed once loaded)
or /nix/store/nix-path-registration in Nix's database, touches
/etc/NIXOS, points /nix/var/nix/profiles/system at the system and installs
SSH keys from nixlive.ssh_key=, /run/nixlive/authorized_keys (the initrd's)
and /run/nixlive/medium_authorized_keys (the medium's that init accepted).
With --grow-root (or nixlive.grow_root on the
kernel command line) the root partition and its ext4 grow to the end of the
disk. Every path is inside --root (default /).

exit status: 0 done or nothing to do, 1 a step failed, 2 usage error,
3 done but some input (an SSH key) was rejected";

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("postboot: {msg}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    ExitCode::from(run(&opts, &mut out, &mut err).exit_code())
}

/// `Ok(None)`: `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options::new("/");
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if key == "--help" || key == "-h" {
            return Ok(None);
        }
        if key == "--grow-root" {
            o.grow_root = true;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key.as_str() {
            "--root" => o.root = PathBuf::from(value()?),
            "--loader" => {
                let v = value()?;
                o.loader = Loader::parse(&v)
                    .ok_or_else(|| format!("--loader {v:?}: expected auto, native or nix-store"))?;
            }
            "--registration" => o.registration = Some(absolute(&key, value()?)?),
            "--system" => o.system = Some(absolute(&key, value()?)?),
            "--nix-store" => o.nix_store = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Some(o))
}

fn absolute(key: &str, v: String) -> Result<String, String> {
    if v.starts_with('/') {
        Ok(v)
    } else {
        Err(format!(
            "{key} {v:?}: must be an absolute path (inside --root)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_options() {
        let o = parse_args(args(&[])).unwrap().unwrap();
        assert_eq!(o.root, PathBuf::from("/"));
        assert_eq!(o.loader, Loader::Auto);
        let o = parse_args(args(&[
            "--root",
            "/x",
            "--loader=nix-store",
            "--system",
            "/run/current-system",
            "--registration=/reg",
            "--nix-store",
            "/bin/nix-store",
            "--grow-root",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.root, PathBuf::from("/x"));
        assert_eq!(o.loader, Loader::NixStore);
        assert_eq!(o.system.as_deref(), Some("/run/current-system"));
        assert_eq!(o.registration.as_deref(), Some("/reg"));
        assert_eq!(o.nix_store, Some(PathBuf::from("/bin/nix-store")));
        assert!(o.grow_root);
        assert!(parse_args(args(&["--help"])).unwrap().is_none());
        for bad in [
            &["--root"][..],
            &["--bogus"],
            &["--loader", "fast"],
            &["--system", "relative"],
        ] {
            assert!(parse_args(args(bad)).is_err(), "{bad:?}");
        }
    }
}

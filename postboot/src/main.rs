//! `nixlive-postboot`: the post-boot agent that runs once, early in the booted
//! (stage-2) system.
//!
//! Purpose (this skeleton): mark the system as NixOS by making sure
//! `<root>/etc/NIXOS` exists, idempotently. Every action is printed as one
//! line; a second run changes nothing and says so.
//!
//! Non-goals for now (a later issue): loading the Nix path-registration
//! database, setting the system profile, installing SSH keys. Those are
//! described in the design's "Post-boot agent" section.
//!
//! Usage: `nixlive-postboot [--root DIR]` (default `/`). `--root` lets tests
//! run against a temporary directory.

use std::path::PathBuf;
use std::process::ExitCode;

mod run;

fn main() -> ExitCode {
    let root = match parse_args(std::env::args().skip(1)) {
        Ok(root) => root,
        Err(msg) => {
            eprintln!("postboot: {msg}");
            eprintln!("usage: nixlive-postboot [--root DIR]");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    match run::run(&root, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postboot: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<PathBuf, String> {
    let mut root = PathBuf::from("/");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => {
                root = PathBuf::from(args.next().ok_or("--root needs a directory")?);
            }
            other => {
                if let Some(v) = other.strip_prefix("--root=") {
                    root = PathBuf::from(v);
                } else {
                    return Err(format!("unknown argument {other:?}"));
                }
            }
        }
    }
    Ok(root)
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
    fn parses_root() {
        assert_eq!(parse_args(args(&[])).unwrap(), PathBuf::from("/"));
        assert_eq!(
            parse_args(args(&["--root", "/x"])).unwrap(),
            PathBuf::from("/x")
        );
        assert_eq!(
            parse_args(args(&["--root=/y"])).unwrap(),
            PathBuf::from("/y")
        );
        assert!(parse_args(args(&["--root"])).is_err());
        assert!(parse_args(args(&["--bogus"])).is_err());
    }
}

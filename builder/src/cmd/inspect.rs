//! `nixlive inspect PATH`: what an ISO, a medium tree, a netboot set or an
//! initrd holds, and whether it can boot (the builder's own checks, see
//! [`crate::check`]); as text, or as JSON with `--json`. Exit status 1,
//! with the problems on standard error, when it cannot boot.
//!
//! Non-goals: no changes to the medium.

use crate::check::Problems;
use crate::inspect::{self, Report};
use anyhow::Result;
use nixlive_formats::size;
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An ISO, a medium tree, a netboot set directory, or an initrd.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Check each image's SHA-256 against the manifest.
    #[arg(long)]
    pub verify: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<()> {
    let r = inspect::inspect(&a.path, a.verify)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&r))?);
    } else {
        print!("{}", text(&r, a.verify));
    }
    if r.problems.is_empty() {
        Ok(())
    } else {
        Err(Problems(r.problems).into())
    }
}

fn or_unknown(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("unknown")
}

fn bytes(n: u64) -> String {
    format!("{} ({n} bytes)", size::human(n))
}

/// The report as text.
pub fn text(r: &Report, verify: bool) -> String {
    let mut o = String::new();
    let label = r
        .label
        .as_ref()
        .map(|l| format!(", label {l}"))
        .unwrap_or_default();
    let _ = writeln!(o, "{} ({}{label})", r.path, r.kind.as_str());
    if let Some(k) = &r.kernel {
        let _ = writeln!(
            o,
            "kernel        {}: {}, {}, Linux {}",
            k.path,
            or_unknown(&k.kind),
            or_unknown(&k.arch),
            or_unknown(&k.version)
        );
    }
    if let Some(i) = &r.initrd {
        let segs: Vec<String> = i
            .segments
            .iter()
            .map(|s| format!("{} {} ({} files)", s.format, bytes(s.size as u64), s.files))
            .collect();
        let _ = writeln!(
            o,
            "initrd        {}: {}; {}",
            i.path,
            bytes(i.size as u64),
            segs.join(" + ")
        );
        for (what, p) in [("init", &i.init), ("shell", &i.shell)] {
            match p {
                Some(p) => {
                    let _ = writeln!(
                        o,
                        "  {what:<11} {}: {}, {}",
                        p.path,
                        or_unknown(&p.arch),
                        p.linkage.as_deref().unwrap_or("not an ELF program")
                    );
                }
                None => {
                    let _ = writeln!(o, "  {what:<11} none");
                }
            }
        }
        let _ = writeln!(
            o,
            "  modules     {} for Linux {}: {}",
            i.modules.len(),
            or_unknown(&i.modules_for),
            i.modules.join(" ")
        );
        let _ = writeln!(
            o,
            "  needed      {}; missing: {}",
            if i.needed.is_empty() {
                "none".to_string()
            } else {
                i.needed.join(" ")
            },
            if i.missing.is_empty() {
                "none".to_string()
            } else {
                i.missing.join(" ")
            }
        );
    }
    if !r.entries.is_empty() {
        let _ = writeln!(o, "boot entries");
        for e in &r.entries {
            let _ = writeln!(o, "  {}: {}", e.source, e.cmdline);
        }
    }
    if let Some(m) = &r.manifest {
        let _ = writeln!(o, "manifest      {}", m.path);
        let _ = writeln!(o, "  init        {}", m.init);
        let _ = writeln!(o, "  reg. file   {}", m.registration);
        for i in &m.images {
            let check = match (i.found_size, i.digest_ok) {
                (None, _) => "MISSING".to_string(),
                (Some(s), _) if s != i.size => format!("found {s} bytes"),
                (_, Some(true)) => "digest ok".to_string(),
                (_, Some(false)) => "DIGEST MISMATCH".to_string(),
                (_, None) if verify => "digest not checked".to_string(),
                (_, None) => "digest not checked (--verify)".to_string(),
            };
            let _ = writeln!(
                o,
                "  image       {} {}{} {} sha256:{} ({check})",
                i.name,
                i.fs,
                i.compression.map(|c| format!("/{c}")).unwrap_or_default(),
                bytes(i.size),
                i.sha256
            );
            if let Some((root, offset)) = &i.verity {
                let _ = writeln!(o, "    verity    root {root}, hash tree at byte {offset}");
            }
        }
    }
    if let Some(g) = &r.registration {
        let _ = writeln!(
            o,
            "registration  {} in {}: {} paths, {}",
            g.path,
            g.image,
            g.paths.map_or("?".to_string(), |n| n.to_string()),
            if g.closed { "closed" } else { "NOT closed" }
        );
    }
    if let Some(m) = &r.manifest {
        let signers = if m.signers.is_empty() {
            "none".to_string()
        } else {
            m.signers.join(", ")
        };
        let check = match &m.signature {
            None => "the initrd trusts no key".to_string(),
            Some(Ok(key)) => format!("verified with the initrd's trusted key {key}"),
            Some(Err(why)) => format!("NOT AUTHENTIC: {why}"),
        };
        let _ = writeln!(o, "signatures    {signers} ({check})");
    }
    if r.problems.is_empty() {
        let _ = writeln!(o, "can boot      yes");
    } else {
        let _ = writeln!(
            o,
            "can boot      no: {} problem(s), listed on standard error",
            r.problems.len()
        );
    }
    o
}

/// The report as JSON.
pub fn to_json(r: &Report) -> serde_json::Value {
    json!({
        "path": r.path,
        "kind": r.kind.as_str(),
        "label": r.label,
        "kernel": r.kernel.as_ref().map(|k| json!({
            "path": k.path, "kind": k.kind, "arch": k.arch, "version": k.version,
        })),
        "initrd": r.initrd.as_ref().map(|i| json!({
            "path": i.path,
            "size": i.size,
            "segments": i.segments.iter().map(|s| json!({
                "offset": s.offset, "format": s.format, "size": s.size, "files": s.files,
            })).collect::<Vec<_>>(),
            "init": i.init.as_ref().map(|p| json!({"path": p.path, "arch": p.arch, "linkage": p.linkage})),
            "shell": i.shell.as_ref().map(|p| json!({"path": p.path, "arch": p.arch, "linkage": p.linkage})),
            "modules_for": i.modules_for,
            "modules": i.modules,
            "needed": i.needed,
            "missing": i.missing,
        })),
        "boot_entries": r.entries.iter().map(|e| json!({"source": e.source, "cmdline": e.cmdline})).collect::<Vec<_>>(),
        "manifest": r.manifest.as_ref().map(|m| json!({
            "path": m.path,
            "init": m.init,
            "registration": m.registration,
            "images": m.images.iter().map(|i| json!({
                "name": i.name, "fs": i.fs, "compression": i.compression, "size": i.size,
                "sha256": i.sha256, "found_size": i.found_size, "digest_ok": i.digest_ok,
            })).collect::<Vec<_>>(),
            "signatures": [],
        })),
        "registration": r.registration.as_ref().map(|g| json!({
            "path": g.path, "image": g.image, "paths": g.paths, "closed": g.closed,
        })),
        "bootable": r.problems.is_empty(),
        "problems": r.problems.iter().map(|p| json!({"what": p.what, "fix": p.fix})).collect::<Vec<_>>(),
    })
}

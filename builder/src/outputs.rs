//! The list of what a build produced: printed as `KIND<TAB>SIZE<TAB>PATH`
//! lines, written as JSON, and as Hydra's `nix-support/hydra-build-products`
//! (`file KIND PATH`).

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: String,
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Outputs {
    pub list: Vec<Output>,
}

impl Outputs {
    /// Records `path` (which must exist) as an output of kind `kind`.
    pub fn add(&mut self, kind: &str, path: PathBuf) -> Result<()> {
        let size = fs::metadata(&path)
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        self.list.push(Output {
            kind: kind.to_string(),
            path,
            size,
        });
        Ok(())
    }

    pub fn extend(&mut self, other: Outputs) {
        self.list.extend(other.list);
    }

    /// `KIND<TAB>SIZE<TAB>PATH` per output.
    pub fn tsv(&self) -> String {
        self.list
            .iter()
            .map(|o| format!("{}\t{}\t{}\n", o.kind, o.size, o.path.display()))
            .collect()
    }

    /// `file KIND PATH` per output (Hydra shows these as downloads).
    pub fn hydra_products(&self) -> String {
        self.list
            .iter()
            .map(|o| format!("file {} {}\n", o.kind, o.path.display()))
            .collect()
    }

    pub fn json(&self) -> String {
        let v: Vec<serde_json::Value> = self
            .list
            .iter()
            .map(|o| {
                serde_json::json!({
                    "kind": o.kind,
                    "path": o.path.display().to_string(),
                    "size": o.size,
                })
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes `DIR/nix-support/hydra-build-products`.
    pub fn write_hydra(&self, dir: &Path) -> Result<PathBuf> {
        let ns = dir.join("nix-support");
        fs::create_dir_all(&ns).with_context(|| format!("creating {}", ns.display()))?;
        let p = ns.join("hydra-build-products");
        fs::write(&p, self.hydra_products()).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("live.iso");
        fs::write(&f, b"1234").unwrap();
        let mut o = Outputs::default();
        o.add("iso", f.clone()).unwrap();
        assert_eq!(o.tsv(), format!("iso\t4\t{}\n", f.display()));
        assert_eq!(o.hydra_products(), format!("file iso {}\n", f.display()));
        let j: serde_json::Value = serde_json::from_str(&o.json()).unwrap();
        assert_eq!(j[0]["size"], 4);
        let p = o.write_hydra(d.path()).unwrap();
        assert!(p.ends_with("nix-support/hydra-build-products"));
        assert!(o.add("x", d.path().join("missing")).is_err());
    }
}

//! The closure split into images: each `--image NAME=STOREPATH,...` takes
//! the closure of its roots that no earlier one took (the first given is the
//! bottom layer), the top image takes the rest.
//!
//! Non-goals: no balancing of sizes, no sharing of a path between images
//! (the overlay shows each path from one layer).

use crate::closure::registration;
use anyhow::{Context, Result, ensure};
use nixlive_formats::registration::PathInfo;
use std::collections::BTreeSet;

/// One image of the closure: a file name and the store paths it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    pub name: String,
    /// Base names, sorted.
    pub paths: Vec<String>,
}

/// `NAME=STOREPATH[,STOREPATH...]`: an image holding the closure of these
/// paths (minus what lower images hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    pub roots: Vec<String>,
}

/// Why an `--image` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageSpecError {
    #[error("`{0}` is not NAME=STOREPATH[,STOREPATH...]")]
    NoEquals(String),
    #[error("image name `{0}` may only hold A-Z a-z 0-9 `-` `_` `.` and not start with `.`")]
    BadName(String),
    #[error("image `{0}` names no store paths")]
    NoPaths(String),
}

impl std::str::FromStr for ImageSpec {
    type Err = ImageSpecError;
    fn from_str(s: &str) -> Result<ImageSpec, ImageSpecError> {
        let (name, roots) = s
            .split_once('=')
            .ok_or_else(|| ImageSpecError::NoEquals(s.to_string()))?;
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(ImageSpecError::BadName(name.to_string()));
        }
        let roots: Vec<String> = roots
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
        if roots.is_empty() {
            return Err(ImageSpecError::NoPaths(name.to_string()));
        }
        Ok(ImageSpec {
            name: name.to_string(),
            roots,
        })
    }
}

/// Splits the closure into images, top layer first (the manifest's order):
/// each `--image` takes the closure of its roots that no earlier `--image`
/// took, the first given being the bottom layer; `top` takes the rest.
pub fn plan_images(infos: &[PathInfo], specs: &[ImageSpec], top: &str) -> Result<Vec<ImagePlan>> {
    let mut taken = BTreeSet::new();
    let mut lower = Vec::new();
    for s in specs {
        ensure!(
            s.name != top && !lower.iter().any(|p: &ImagePlan| p.name == s.name),
            "image name `{}` used twice",
            s.name
        );
        let closure = registration::closure_of(infos, &s.roots)
            .with_context(|| format!("image {}", s.name))?;
        let paths: Vec<String> = closure
            .into_iter()
            .filter(|p| taken.insert(p.clone()))
            .collect();
        ensure!(
            !paths.is_empty(),
            "image {} would be empty: lower images already hold the closure of {}",
            s.name,
            s.roots.join(",")
        );
        lower.push(ImagePlan {
            name: s.name.clone(),
            paths,
        });
    }
    let rest: Vec<String> = infos
        .iter()
        .map(|i| i.base_name().to_string())
        .filter(|n| !taken.contains(n))
        .collect();
    let mut out = Vec::new();
    if !rest.is_empty() || lower.is_empty() {
        out.push(ImagePlan {
            name: top.to_string(),
            paths: rest,
        });
    }
    lower.reverse();
    out.extend(lower);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::closure::registration::tests::info;

    const A: &str = "0123456789abcdfghijklmnpqrsvwxyz";
    const B: &str = "zyxwvsrqpnmlkjihgfdcba9876543210";
    const C: &str = "11111111111111111111111111111111";

    #[test]
    fn image_specs() {
        let s: ImageSpec = "base.squashfs=/nix/store/a,/nix/store/b".parse().unwrap();
        assert_eq!(s.name, "base.squashfs");
        assert_eq!(s.roots, ["/nix/store/a", "/nix/store/b"]);
        assert!("x".parse::<ImageSpec>().is_err());
        assert!("../x=/nix/store/a".parse::<ImageSpec>().is_err());
        assert!("a/b=/nix/store/a".parse::<ImageSpec>().is_err());
        assert!("x=".parse::<ImageSpec>().is_err());
    }

    #[test]
    fn images_split_the_closure() {
        let (a, b, c) = (format!("{A}-sys"), format!("{B}-lib"), format!("{C}-glibc"));
        let infos = vec![info(&c, &[]), info(&b, &[&c]), info(&a, &[&b, &c])];
        let one = plan_images(&infos, &[], "nix-store.squashfs").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].paths.len(), 3);
        let specs = vec![
            format!("glibc.squashfs={c}").parse().unwrap(),
            format!("lib.squashfs=/nix/store/{b}").parse().unwrap(),
        ];
        let p = plan_images(&infos, &specs, "nix-store.squashfs").unwrap();
        let names: Vec<&str> = p.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            ["nix-store.squashfs", "lib.squashfs", "glibc.squashfs"]
        );
        assert_eq!(p[0].paths, std::slice::from_ref(&a));
        assert_eq!(p[1].paths, std::slice::from_ref(&b));
        assert_eq!(p[2].paths, std::slice::from_ref(&c));
        // Everything in lower images: no empty top image.
        let all = vec![format!("all.squashfs={a}").parse().unwrap()];
        let p = plan_images(&infos, &all, "nix-store.squashfs").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "all.squashfs");
        let dup = vec![specs[0].clone(), specs[0].clone()];
        assert!(plan_images(&infos, &dup, "nix-store.squashfs").is_err());
    }
}

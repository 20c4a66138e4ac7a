//! Outputs never overwrite inputs: before anything is written, every
//! output path (`--out`, `--medium-dir`, `--initrd-out`, ...) is compared
//! with every input (kernel, modules directory, store, closure lists,
//! init, keys, any file given), canonically (links resolved; a path that
//! does not exist yet through its nearest existing parent). An output may
//! not be an input, hold one (a directory output replaces what it holds)
//! or lie inside an input directory.
//!
//! Non-goals: no check of files an input names indirectly (the store
//! paths' own contents are under the store, which is checked as a whole).

use anyhow::{Result, bail};
use std::path::{Component, Path, PathBuf};

/// `p` made absolute with its links resolved; the part that does not
/// exist yet is appended as given (`..` there taken lexically).
pub fn canonical(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(c) = std::fs::canonicalize(at) {
            let mut out = c;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            return out;
        }
        match (at.parent(), at.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                at = parent;
            }
            _ => return abs,
        }
    }
}

/// Whether `out` (canonical) collides with `input` (canonical): the same
/// path, or one inside the other.
fn collides(out: &Path, input: &Path) -> Option<&'static str> {
    if out == input {
        Some("is")
    } else if input.starts_with(out) {
        Some("holds")
    } else if out.starts_with(input) {
        Some("lies inside")
    } else {
        None
    }
}

/// Refuses any output that collides with an input; each is `(option, path)`.
pub fn refuse(inputs: &[(&str, PathBuf)], outputs: &[(&str, PathBuf)]) -> Result<()> {
    let ins: Vec<(&str, &PathBuf, PathBuf)> =
        inputs.iter().map(|(o, p)| (*o, p, canonical(p))).collect();
    for (oflag, opath) in outputs {
        let oc = canonical(opath);
        for (iflag, ipath, ic) in &ins {
            if let Some(how) = collides(&oc, ic) {
                bail!(
                    "{oflag} {} {how} the input {iflag} {}: a build never writes over its inputs; \
                     choose another {oflag}",
                    opath.display(),
                    ipath.display()
                );
            }
        }
    }
    Ok(())
}

/// Adds `(flag, path)` to `v` when there is a path.
pub fn push_opt(v: &mut Vec<(&'static str, PathBuf)>, flag: &'static str, p: &Option<PathBuf>) {
    if let Some(p) = p {
        v.push((flag, p.clone()));
    }
}

/// The files and directories an initrd is made of.
pub fn initrd_inputs(a: &crate::initrd::InitrdArgs) -> Vec<(&'static str, PathBuf)> {
    let mut v = vec![
        ("--modules-dir", a.modules_dir.clone()),
        ("--init", a.init.clone()),
    ];
    v.extend(
        a.firmware_dirs
            .iter()
            .map(|d| ("--firmware-dir", d.clone())),
    );
    push_opt(&mut v, "--kernel-config", &a.kernel_config);
    v.extend(a.extra_cpio.iter().map(|f| ("--extra-cpio", f.clone())));
    push_opt(&mut v, "--authorized-keys", &a.authorized_keys);
    push_opt(&mut v, "--shell", &a.shell);
    v.extend(
        a.trusted_keys
            .iter()
            .map(|k| ("--trusted-key", k.path.clone())),
    );
    v
}

/// The closure's inputs: the store root (unless it is `/`, where a Nix
/// build's own output lies: then the system's store path), the lists.
pub fn closure_inputs(a: &crate::closure::InputArgs) -> Vec<(&'static str, PathBuf)> {
    let mut v = Vec::new();
    if canonical(&a.store_root) != Path::new("/") {
        v.push(("--store-root", a.store_root.clone()));
    } else if let Some(base) = crate::closure::strip_store(&a.system) {
        v.push((
            "--system",
            crate::closure::store_dir(&a.store_root).join(base),
        ));
    }
    push_opt(&mut v, "--closure-info", &a.closure_info);
    push_opt(&mut v, "--store-paths", &a.store_paths);
    v
}

/// Everything `iso`, `medium` and `netboot` read.
pub fn common_inputs(c: &crate::pipeline::CommonArgs) -> Vec<(&'static str, PathBuf)> {
    let mut v = vec![("--kernel", c.kernel.clone())];
    v.extend(initrd_inputs(&c.initrd));
    v.extend(closure_inputs(&c.inputs));
    v.extend(
        c.images
            .sign_keys
            .iter()
            .map(|k| ("--sign-key", k.path.clone())),
    );
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collisions() {
        let d = tempfile::tempdir().unwrap();
        let root = canonical(d.path());
        std::fs::create_dir_all(d.path().join("med/boot")).unwrap();
        std::fs::write(d.path().join("med/boot/vmlinuz"), b"k").unwrap();
        std::os::unix::fs::symlink("med/boot/vmlinuz", d.path().join("link")).unwrap();
        assert_eq!(canonical(&d.path().join("new/x/../y")), root.join("new/y"));
        assert_eq!(
            canonical(&d.path().join("link")),
            root.join("med/boot/vmlinuz")
        );
        let k = vec![("--kernel", d.path().join("med/boot/vmlinuz"))];
        let e = refuse(&k, &[("--out", d.path().join("med"))]).unwrap_err();
        assert!(e.to_string().contains("holds the input --kernel"), "{e}");
        let e = refuse(&k, &[("--out", d.path().join("link"))]).unwrap_err();
        assert!(e.to_string().contains("is the input --kernel"), "{e}");
        let s = vec![("--store-root", d.path().join("med"))];
        let e = refuse(&s, &[("--out", d.path().join("med/new/x.iso"))]).unwrap_err();
        assert!(e.to_string().contains("lies inside"), "{e}");
        assert!(refuse(&k, &[("--out", d.path().join("medium"))]).is_ok());
    }
}

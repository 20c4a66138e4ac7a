//! The observable state every successful live boot must show, checked on
//! the guest report. Tests call [`live_system`] and add their own checks.

use nixlive_formats::paths::{NIXOS_MARKER, RO_STORE, STORE_DIR};

use crate::report::Report;

/// Checks what stage 1 must leave behind: `/` a tmpfs, the medium or the
/// images mounted (one at `/nix/.ro-store`, several at `/nix/.ro-store/N`),
/// `/nix/store` an overlay with the first image on top, postboot
/// run, `/etc/NIXOS` present, the stage-1 timeline written. `arch` is the
/// guest's `uname -m`. The error carries the whole report.
pub fn live_system(r: &Report, arch: &str) -> Result<(), String> {
    let ctx = || format!("\n{r:#?}");
    let fail = |what: String| Err(format!("{what}{}", ctx()));
    if r.arch != arch {
        return fail(format!("guest architecture is {:?}, want {arch:?}", r.arch));
    }
    match r.mount("/") {
        Some(m) if m.fstype == "tmpfs" => {}
        Some(m) => return fail(format!("/ is {}, want tmpfs", m.fstype)),
        None => return fail("no / mount".into()),
    }
    // One image sits where NixOS's fstab expects it; several are numbered.
    let numbered = format!("{RO_STORE}/");
    let images: Vec<&str> = r
        .mounts
        .iter()
        .map(|m| m.point.as_str())
        .filter(|p| *p == RO_STORE || p.starts_with(&numbered))
        .collect();
    let top = match images.as_slice() {
        [one] if *one == RO_STORE => RO_STORE.to_string(),
        [] => return fail(format!("no {RO_STORE} mount")),
        _ if images.contains(&RO_STORE) => {
            return fail(format!("{RO_STORE} and numbered images: {images:?}"));
        }
        _ => format!("{numbered}0"),
    };
    let top = top.as_str();
    match r.mount(top) {
        Some(m) if m.fstype == "squashfs" || m.fstype == "erofs" => {}
        Some(m) => return fail(format!("{top} is {}", m.fstype)),
        None => return fail(format!("no {top} mount among {images:?}")),
    }
    let Some(store) = r.mount(STORE_DIR) else {
        return fail(format!("no {STORE_DIR} mount"));
    };
    if store.fstype != "overlay" {
        return fail(format!("{STORE_DIR} is {}, want overlay", store.fstype));
    }
    let lower = store.option("lowerdir").unwrap_or_default();
    if !lower.split(':').next().is_some_and(|l| l.ends_with(top)) {
        return fail(format!(
            "{STORE_DIR}'s top lower layer is not {top}: {lower:?}"
        ));
    }
    if r.postboot_exit != 0 {
        return fail(format!("postboot exited {}", r.postboot_exit));
    }
    match r.files.get(NIXOS_MARKER).cloned().flatten() {
        Some(f) if f.kind == "regular" => {}
        other => return fail(format!("{NIXOS_MARKER} is {other:?}, want a regular file")),
    }
    if r.stage1_phases().is_empty() {
        return fail("stage1.json has no phases".into());
    }
    Ok(())
}

//! BIOS boot from the medium: ISOLINUX (El Torito on a CD; on a USB disk,
//! through the hybrid MBR the ISO gets), booting at once with the console
//! on screen and serial port.
//!
//! Non-goals: no menu, no other entries (memtest, older generations).

use super::BootArgs;
use crate::files::{copy, create_dir, write};
use anyhow::Result;
use std::path::Path;

/// `isolinux/isolinux.cfg`: serial console, no menu, boots at once.
fn isolinux_cfg(params: &str) -> String {
    format!(
        "SERIAL 0 115200\n\
         PROMPT 0\n\
         TIMEOUT 1\n\
         DEFAULT nixlive\n\
         \n\
         LABEL nixlive\n\
         \x20 KERNEL /boot/vmlinuz\n\
         \x20 APPEND initrd=/boot/initrd {params}\n"
    )
}

/// Writes `isolinux/` into the medium tree `dir`.
pub fn install(b: &BootArgs, dir: &Path, params: &str) -> Result<()> {
    let iso_dir = dir.join("isolinux");
    create_dir(&iso_dir)?;
    copy(&b.isolinux_bin, &iso_dir.join("isolinux.bin"))?;
    copy(&b.ldlinux_c32, &iso_dir.join("ldlinux.c32"))?;
    write(
        &iso_dir.join("isolinux.cfg"),
        isolinux_cfg(params).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text() {
        let p = "root=LABEL=NIXLIVE init=/nix/store/x-sys/init quiet";
        let cfg = isolinux_cfg(p);
        assert!(cfg.starts_with("SERIAL 0 115200\n"));
        assert!(cfg.contains("\nDEFAULT nixlive\n"));
        assert!(cfg.contains("\nLABEL nixlive\n  KERNEL /boot/vmlinuz\n"));
        assert!(cfg.ends_with(&format!("  APPEND initrd=/boot/initrd {p}\n")));
    }
}

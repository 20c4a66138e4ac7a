//! Pure pieces of the boot medium: the ISO volume label rules, the
//! ISOLINUX configuration and timestamps for xorriso.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediumError {
    #[error("volume label is empty")]
    EmptyLabel,
    #[error("volume label `{0}` is longer than 32 bytes")]
    LongLabel(String),
    #[error("volume label `{0}` may only hold A-Z a-z 0-9 `_` `-` `.`")]
    BadLabel(String),
    #[error("extra kernel parameters must be one line, got {0:?}")]
    BadAppend(String),
}

/// Checks an ISO 9660 volume ID that also has to survive `root=LABEL=...`
/// on the kernel command line.
pub fn check_label(label: &str) -> Result<(), MediumError> {
    if label.is_empty() {
        return Err(MediumError::EmptyLabel);
    }
    if label.len() > 32 {
        return Err(MediumError::LongLabel(label.to_string()));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(MediumError::BadLabel(label.to_string()));
    }
    Ok(())
}

/// The kernel command line the medium boots with.
pub fn kernel_params(label: &str, system: &str, append: &str) -> Result<String, MediumError> {
    params(&format!("root=LABEL={label} "), system, append)
}

/// The netboot command line: no `root=`, so init uses the manifest and
/// images inside the initrd.
pub fn netboot_params(system: &str, append: &str) -> Result<String, MediumError> {
    params("", system, append)
}

fn params(root: &str, system: &str, append: &str) -> Result<String, MediumError> {
    if append.contains(['\n', '\r']) {
        return Err(MediumError::BadAppend(append.to_string()));
    }
    let mut s = format!("{root}init={system}/init console=tty0 console=ttyS0,115200");
    let append = append.trim();
    if !append.is_empty() {
        s.push(' ');
        s.push_str(append);
    }
    Ok(s)
}

/// `isolinux/isolinux.cfg`: serial console, no menu, boots at once.
pub fn isolinux_cfg(params: &str) -> String {
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

/// `netboot.ipxe`: kernel and initrd relative to the script's own URL, the
/// command line given once.
pub fn ipxe_script(kernel: &str, initrd: &str, params: &str) -> String {
    format!(
        "#!ipxe\n\
         # nixlive netboot: serve this directory over TFTP or HTTP\n\
         kernel {kernel} initrd={initrd} {params}\n\
         initrd {initrd}\n\
         boot\n"
    )
}

/// `YYYYMMDDhhmmss00` in UTC, the form xorriso's `--modification-date=` takes.
pub fn xorriso_date(epoch: u64) -> String {
    let days = epoch / 86400;
    let secs = epoch % 86400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(check_label("NIXLIVE").is_ok());
        assert!(check_label("nixos-24.05_x86").is_ok());
        assert!(check_label(&"A".repeat(32)).is_ok());
        assert_eq!(check_label(""), Err(MediumError::EmptyLabel));
        assert!(matches!(
            check_label(&"A".repeat(33)),
            Err(MediumError::LongLabel(_))
        ));
        assert!(matches!(check_label("A B"), Err(MediumError::BadLabel(_))));
        assert!(matches!(check_label("A/B"), Err(MediumError::BadLabel(_))));
    }

    #[test]
    fn config_text() {
        let p = kernel_params("NIXLIVE", "/nix/store/x-sys", " quiet ").unwrap();
        assert_eq!(
            p,
            "root=LABEL=NIXLIVE init=/nix/store/x-sys/init console=tty0 console=ttyS0,115200 quiet"
        );
        assert!(kernel_params("L", "/s", "a\nb").is_err());
        let cfg = isolinux_cfg(&p);
        assert!(cfg.starts_with("SERIAL 0 115200\n"));
        assert!(cfg.contains("\nDEFAULT nixlive\n"));
        assert!(cfg.contains("\nLABEL nixlive\n  KERNEL /boot/vmlinuz\n"));
        assert!(cfg.ends_with(&format!("  APPEND initrd=/boot/initrd {p}\n")));
    }

    #[test]
    fn netboot_text() {
        let p = netboot_params("/nix/store/x-sys", "quiet").unwrap();
        assert_eq!(
            p,
            "init=/nix/store/x-sys/init console=tty0 console=ttyS0,115200 quiet"
        );
        assert_eq!(
            ipxe_script("bzImage", "initrd", &p),
            format!(
                "#!ipxe\n# nixlive netboot: serve this directory over TFTP or HTTP\n\
                 kernel bzImage initrd=initrd {p}\ninitrd initrd\nboot\n"
            )
        );
    }

    #[test]
    fn dates() {
        assert_eq!(xorriso_date(0), "1970010100000000");
        assert_eq!(xorriso_date(951_782_400), "2000022900000000");
        assert_eq!(xorriso_date(1_700_000_000), "2023111422132000");
    }
}

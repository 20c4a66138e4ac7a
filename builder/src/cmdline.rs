//! The kernel command line the media boot with: `root=LABEL=` on a medium
//! (none for netboot, where init uses the images in the initrd), the
//! stage-2 init, the consoles, then --append.
//!
//! Non-goals: no parsing (init's, `nixlive_formats::cmdline`), no checking
//! of what --append asks for.

/// --append spans lines, which no boot loader configuration can hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("extra kernel parameters must be one line, got {0:?}")]
pub struct BadAppend(pub String);

/// The command line a medium labelled `label` boots with.
pub fn medium_params(label: &str, system: &str, append: &str) -> Result<String, BadAppend> {
    params(&format!("root=LABEL={label} "), system, append)
}

/// The netboot command line: no `root=`, so init uses the manifest and
/// images inside the initrd.
pub fn netboot_params(system: &str, append: &str) -> Result<String, BadAppend> {
    params("", system, append)
}

fn params(root: &str, system: &str, append: &str) -> Result<String, BadAppend> {
    if append.contains(['\n', '\r']) {
        return Err(BadAppend(append.to_string()));
    }
    let mut s = format!("{root}init={system}/init console=tty0 console=ttyS0,115200");
    let append = append.trim();
    if !append.is_empty() {
        s.push(' ');
        s.push_str(append);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medium_and_netboot() {
        let p = medium_params("NIXLIVE", "/nix/store/x-sys", " quiet ").unwrap();
        assert_eq!(
            p,
            "root=LABEL=NIXLIVE init=/nix/store/x-sys/init console=tty0 console=ttyS0,115200 quiet"
        );
        assert!(medium_params("L", "/s", "a\nb").is_err());
        let p = netboot_params("/nix/store/x-sys", "quiet").unwrap();
        assert_eq!(
            p,
            "init=/nix/store/x-sys/init console=tty0 console=ttyS0,115200 quiet"
        );
    }
}

//! The boot entries of the boot loaders' configurations, read back (their
//! writers are in `crate::medium`): the kernel command line each entry
//! passes.

/// The boot entries of an ISOLINUX configuration: its `APPEND` lines
/// without `initrd=`.
pub fn isolinux_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let (k, rest) = l.split_once(char::is_whitespace)?;
            k.eq_ignore_ascii_case("append").then(|| {
                rest.split_whitespace()
                    .filter(|w| !w.starts_with("initrd="))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        })
        .collect()
}

/// The boot entries of a GRUB configuration: its `linux` lines without the
/// kernel's path.
pub fn grub_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let rest = l.strip_prefix("linux ")?;
            Some(
                rest.split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect()
}

/// The boot entries of an iPXE script: its `kernel` lines without the
/// kernel's name and `initrd=`.
pub fn ipxe_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let rest = l.strip_prefix("kernel ")?;
            Some(
                rest.split_whitespace()
                    .skip(1)
                    .filter(|w| !w.starts_with("initrd="))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect()
}

/// The value of `key=` on a command line.
pub(super) fn param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_entries() {
        let iso = "LABEL nixlive\n  KERNEL /boot/vmlinuz\n  APPEND initrd=/boot/initrd root=LABEL=T init=/nix/store/x/init quiet\n";
        assert_eq!(
            isolinux_entries(iso),
            ["root=LABEL=T init=/nix/store/x/init quiet"]
        );
        let grub = "menuentry \"nixlive\" {\n  linux /boot/vmlinuz root=LABEL=T init=/i\n  initrd /boot/initrd\n}\n";
        assert_eq!(grub_entries(grub), ["root=LABEL=T init=/i"]);
        let ipxe =
            "#!ipxe\nkernel bzImage initrd=initrd init=/i console=ttyS0\ninitrd initrd\nboot\n";
        assert_eq!(ipxe_entries(ipxe), ["init=/i console=ttyS0"]);
        assert_eq!(param("root=LABEL=T init=/i", "root"), Some("LABEL=T"));
        assert_eq!(param("xinit=/a init=/i", "init"), Some("/i"));
    }
}

//! The configuration the builder packs into the initrd at
//! [`PATH`]: which kernel it was made for and which modules to load, in
//! dependency order (dependencies first), as paths relative to
//! `/lib/modules/<kernel>`.
//!
//! ```text
//! nixlive-initrd 1
//! kernel 6.1.0-28-amd64
//! module kernel/drivers/cdrom/cdrom.ko
//! module kernel/drivers/scsi/sr_mod.ko
//! ```

use crate::lines::{LineError, check_header, is_safe_relative, records};
use std::fmt;

pub const MAGIC: &str = "nixlive-initrd";
pub const VERSION: u32 = 1;
/// Where the builder puts it inside the initrd.
pub const PATH: &str = "/etc/nixlive/initrd.conf";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitrdConf {
    /// `uname -r` of the kernel the modules belong to.
    pub kernel: String,
    /// Module files relative to `/lib/modules/<kernel>`, in load order.
    pub modules: Vec<String>,
}

impl InitrdConf {
    pub fn parse(text: &str) -> Result<InitrdConf, LineError> {
        let recs = records(text)?;
        check_header(&recs, MAGIC, VERSION)?;
        let mut conf = InitrdConf::default();
        let mut kernel = None;
        for (n, f) in &recs[1..] {
            let n = *n;
            match (f[0], f.len()) {
                ("kernel", 2) => {
                    if kernel.replace(f[1]).is_some() {
                        return Err(LineError::new(n, "`kernel` given twice"));
                    }
                }
                ("module", 2) => {
                    if !is_safe_relative(f[1]) {
                        return Err(LineError::new(
                            n,
                            format!("module path `{}` must be relative, without `..`", f[1]),
                        ));
                    }
                    conf.modules.push(f[1].to_string());
                }
                ("kernel" | "module", _) => {
                    return Err(LineError::new(n, format!("`{}` takes one value", f[0])));
                }
                (other, _) => return Err(LineError::new(n, format!("unknown key `{other}`"))),
            }
        }
        conf.kernel = kernel
            .ok_or_else(|| LineError::new(recs[0].0, "no `kernel` line"))?
            .to_string();
        Ok(conf)
    }
}

impl fmt::Display for InitrdConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{MAGIC} {VERSION}")?;
        writeln!(f, "kernel {}", self.kernel)?;
        for m in &self.modules {
            writeln!(f, "module {m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = InitrdConf {
            kernel: "6.1.0-1-amd64".into(),
            modules: vec!["kernel/fs/isofs/isofs.ko".into(), "kernel/a.ko.xz".into()],
        };
        assert_eq!(InitrdConf::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn rejects() {
        assert_eq!(InitrdConf::parse("nixlive-initrd 1\n").unwrap_err().line, 1);
        assert_eq!(
            InitrdConf::parse("nixlive-initrd 1\nkernel a\nmodule ../x.ko\n")
                .unwrap_err()
                .line,
            3
        );
        assert_eq!(
            InitrdConf::parse("nixlive-initrd 1\nkernel a\nkernel b\n")
                .unwrap_err()
                .line,
            3
        );
        assert_eq!(
            InitrdConf::parse("nixlive-initrd 1\nx y\n")
                .unwrap_err()
                .line,
            2
        );
    }
}

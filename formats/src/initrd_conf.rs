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
//! root plain
//! ```
//!
//! `root plain` (optional; `root live` is the default) says the initrd
//! boots a plain root filesystem (a system tarball unpacked onto a disk),
//! not live media.

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
    /// What `root=` names: live media (the default) or the root filesystem.
    pub root: RootMode,
}

/// What `root=` names: a medium holding store images (`live`), or the
/// root filesystem itself (`plain`). Recorded by the builder, and given
/// on the kernel command line as `nixlive.root=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RootMode {
    #[default]
    Live,
    Plain,
}

impl RootMode {
    pub fn parse(s: &str) -> Option<RootMode> {
        match s {
            "live" => Some(RootMode::Live),
            "plain" => Some(RootMode::Plain),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RootMode::Live => "live",
            RootMode::Plain => "plain",
        }
    }
}

impl InitrdConf {
    pub fn parse(text: &str) -> Result<InitrdConf, LineError> {
        let recs = records(text)?;
        check_header(&recs, MAGIC, VERSION)?;
        let mut conf = InitrdConf::default();
        let mut kernel = None;
        let mut root = None;
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
                ("root", 2) => {
                    let mode = RootMode::parse(f[1]).ok_or_else(|| {
                        LineError::new(n, format!("root `{}`: want live or plain", f[1]))
                    })?;
                    if root.replace(mode).is_some() {
                        return Err(LineError::new(n, "`root` given twice"));
                    }
                }
                ("kernel" | "module" | "root", _) => {
                    return Err(LineError::new(n, format!("`{}` takes one value", f[0])));
                }
                (other, _) => return Err(LineError::new(n, format!("unknown key `{other}`"))),
            }
        }
        conf.kernel = kernel
            .ok_or_else(|| LineError::new(recs[0].0, "no `kernel` line"))?
            .to_string();
        conf.root = root.unwrap_or_default();
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
        if self.root != RootMode::Live {
            writeln!(f, "root {}", self.root.as_str())?;
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
            root: RootMode::Live,
        };
        assert_eq!(InitrdConf::parse(&c.to_string()).unwrap(), c);
        assert!(
            !c.to_string().contains("root"),
            "live is the default, not written"
        );
        let plain = InitrdConf {
            root: RootMode::Plain,
            ..c
        };
        assert!(plain.to_string().ends_with("root plain\n"));
        assert_eq!(InitrdConf::parse(&plain.to_string()).unwrap(), plain);
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
        for bad in ["root persistent", "root plain\nroot live", "root"] {
            let text = format!("nixlive-initrd 1\nkernel a\n{bad}\n");
            assert!(InitrdConf::parse(&text).is_err(), "{bad}");
        }
        assert_eq!(
            InitrdConf::parse("nixlive-initrd 1\nx y\n")
                .unwrap_err()
                .line,
            2
        );
    }
}

//! The kernel command line, as nixlive's init and post-boot agent read it.
//!
//! Tokenised as the kernel does: whitespace separates words, double quotes
//! group (`nixlive.ssh_key="ssh-ed25519 AAAA... me"`), everything after a
//! lone `--` belongs to init's argv and is not read here. Unknown keys are
//! ignored; a known key with a bad value is a warning (kept in
//! [`Cmdline::warnings`]) and the default is used.

use std::time::Duration;

/// Which block device holds the medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    Label(String),
    Uuid(String),
    PartLabel(String),
    /// A device node such as `/dev/sr0`.
    Device(String),
    /// A regular file in the initramfs holding the medium's filesystem
    /// (an ISO that iPXE loaded as a second initrd: `root=/nixos.iso`).
    File(String),
}

impl std::fmt::Display for RootSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootSpec::Label(l) => write!(f, "LABEL={}", shown(l)),
            RootSpec::Uuid(u) => write!(f, "UUID={}", shown(u)),
            RootSpec::PartLabel(l) => write!(f, "PARTLABEL={}", shown(l)),
            RootSpec::Device(d) | RootSpec::File(d) => f.write_str(d),
        }
    }
}

/// A label as a person reads it: quoted when it has spaces or unusual
/// bytes, so `LABEL="NIXOS LIVE"` is told apart from `LABEL=NIXOS_LIVE`.
fn shown(v: &str) -> String {
    if v.chars().all(|c| c.is_ascii_graphic() && c != '"') {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

/// Undoes udev's `\xNN` escapes (its `/dev/disk/by-label/` names, which
/// NixOS's stage 1 resolves `LABEL=` through): `NIXOS\x20LIVE` is
/// `NIXOS LIVE`. A backslash not followed by `x` and two hex digits stays as
/// it is (as udev leaves it), and the second value says so.
pub fn unescape_udev(v: &str) -> (String, Option<String>) {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut odd = None;
    let mut i = 0;
    while i < b.len() {
        let hex = |k: usize| b.get(k).and_then(|c| (*c as char).to_digit(16));
        match (b[i], b.get(i + 1), hex(i + 2), hex(i + 3)) {
            (b'\\', Some(b'x'), Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 4;
            }
            (b'\\', ..) => {
                odd.get_or_insert_with(|| {
                    let end = (i + 4).min(b.len());
                    format!(
                        "`{}` is not \\x and two hex digits; taken as it is",
                        String::from_utf8_lossy(&b[i..end])
                    )
                });
                out.push(b[i]);
                i += 1;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), odd)
}

/// How long to wait for the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    Forever,
    After(Duration),
}

impl Timeout {
    /// Longer than this is forever: no machine waits 136 years, and a
    /// deadline that far ahead would overflow the clock's arithmetic.
    pub const LONGEST: Duration = Duration::from_secs(1 << 32);

    /// `0` and anything past [`Timeout::LONGEST`] mean forever.
    pub fn from_secs(s: u64) -> Timeout {
        match Duration::from_secs(s) {
            d if d.is_zero() || d > Timeout::LONGEST => Timeout::Forever,
            d => Timeout::After(d),
        }
    }
}

/// A size given as bytes or as a percentage of RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    Bytes(u64),
    Percent(u8),
}

impl SizeSpec {
    /// Resolves against the machine's RAM in bytes.
    pub fn bytes(self, ram: u64) -> u64 {
        match self {
            SizeSpec::Bytes(b) => b,
            SizeSpec::Percent(p) => ram / 100 * u64::from(p),
        }
    }
}

/// A value that must never reach a log: `Debug` and `Display` show
/// `<redacted>`; [`Secret::expose`] is the only way to the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Secret {
        Secret(v.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub root: Option<RootSpec>,
    pub init: Option<String>,
    pub findiso: Option<String>,
    pub copytoram: bool,
    pub shell_on_fail: bool,
    pub panic_on_fail: bool,
    pub debug1: bool,
    pub debug1devices: bool,
    pub debug1mounts: bool,
    pub trace: bool,
    /// `nixlive.test_panic`: init panics on purpose once the command line
    /// is read, to show (and test) that a panic ends in the failure policy.
    pub test_panic: bool,
    pub timeout: Timeout,
    pub verify: bool,
    /// `nixlive.check`: every image is read once, whole, through its
    /// check (dm-verity, else its sha256) before stage 2, and the first bad
    /// block is named. Without it dm-verity checks blocks as they are read.
    pub check: bool,
    pub overlay_size: SizeSpec,
    pub manifest: Option<String>,
    pub modules: Vec<String>,
    pub ssh_keys: Vec<String>,
    /// `live.nixos.passwd=`: the live user's password in clear (NixOS's
    /// installer documents it for SSH access). Never shown.
    pub live_password: Option<Secret>,
    /// `live.nixos.passwordHash=`: the live user's password as a crypt(3)
    /// hash (checked by postboot, which writes it to `/etc/shadow`).
    pub live_password_hash: Option<String>,
    /// `nixlive.url=http://HOST[:PORT]/PATH/nixlive.manifest`: boot over
    /// HTTP; image names in the manifest resolve relative to it.
    pub url: Option<crate::net::url::Url>,
    /// `ip=` in the kernel's syntax (DHCP when absent and a URL is given).
    pub ip: Option<crate::net::ipconf::IpConfig>,
    /// `nixlive.net_timeout=SECONDS`: the budget of each network wait (a
    /// carrier, a DHCP lease, a server that answers, a stalled transfer);
    /// `None`: `nixlive.timeout`'s.
    pub net_timeout: Option<Timeout>,
    /// `nixlive.root=plain|live`: what `root=` names, over what the initrd
    /// records.
    pub root_mode: Option<crate::RootMode>,
    /// `ro` (and `rw`, which undoes it; the last wins): a plain root is
    /// mounted read-only.
    pub read_only: bool,
    /// `nixlive.grow_root`: postboot grows the root partition and its
    /// filesystem to the end of the disk.
    pub grow_root: bool,
    /// One message per known key whose value was rejected.
    pub warnings: Vec<String>,
}

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            root: None,
            init: None,
            findiso: None,
            copytoram: false,
            shell_on_fail: false,
            panic_on_fail: false,
            debug1: false,
            debug1devices: false,
            debug1mounts: false,
            trace: false,
            test_panic: false,
            timeout: Timeout::After(DEFAULT_TIMEOUT),
            verify: false,
            check: false,
            overlay_size: SizeSpec::Percent(50),
            manifest: None,
            modules: Vec::new(),
            ssh_keys: Vec::new(),
            live_password: None,
            live_password_hash: None,
            url: None,
            ip: None,
            net_timeout: None,
            root_mode: None,
            read_only: false,
            grow_root: false,
            warnings: Vec::new(),
        }
    }
}

/// Splits a command line into words as the kernel does (quotes group and are removed).
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Parses a size: plain bytes, with a K/M/G/T suffix (powers of 1024), or N% of RAM (1..=100).
pub fn parse_size(v: &str) -> Option<SizeSpec> {
    if let Some(p) = v.strip_suffix('%') {
        let p: u8 = p.parse().ok()?;
        return (1..=100).contains(&p).then_some(SizeSpec::Percent(p));
    }
    let (num, mult) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        b't' | b'T' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let b = num.parse::<u64>().ok()?.checked_mul(mult)?;
    (b > 0).then_some(SizeSpec::Bytes(b))
}

/// `root=`'s value, and a note when an escape in it was taken literally.
fn parse_root(v: &str) -> Option<(RootSpec, Option<String>)> {
    type Make = fn(String) -> RootSpec;
    let tagged: [(&str, Make); 3] = [
        ("LABEL=", RootSpec::Label),
        ("UUID=", RootSpec::Uuid),
        ("PARTLABEL=", RootSpec::PartLabel),
    ];
    for (tag, make) in tagged {
        if let Some(rest) = v.strip_prefix(tag) {
            let (value, odd) = unescape_udev(rest);
            return (!value.is_empty()).then(|| (make(value), odd));
        }
    }
    if v.starts_with("/dev/") && v.len() > 5 {
        Some((RootSpec::Device(v.to_string()), None))
    } else if v.starts_with('/') && v.len() > 1 && !v.split('/').any(|c| c == "..") {
        Some((RootSpec::File(v.to_string()), None))
    } else {
        None
    }
}

impl Cmdline {
    pub fn parse(line: &str) -> Cmdline {
        let mut c = Cmdline::default();
        for w in words(line) {
            if w == "--" {
                break;
            }
            let (key, val) = match w.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (w.as_str(), None),
            };
            c.apply(key, val);
        }
        c
    }

    fn warn(&mut self, key: &str, val: Option<&str>, why: &str) {
        self.warnings.push(match val {
            Some(v) => format!("ignoring {key}={v}: {why}"),
            None => format!("ignoring {key}: {why}"),
        });
    }

    fn apply(&mut self, key: &str, val: Option<&str>) {
        // Flags accept no value; `flag=1`/`flag=0` style is a warning rather than a guess.
        let flag = |c: &mut Cmdline, set: fn(&mut Cmdline)| match val {
            None => set(c),
            Some(_) => c.warn(key, val, "this flag takes no value"),
        };
        match key {
            "copytoram" => flag(self, |c| c.copytoram = true),
            "boot.shell_on_fail" => flag(self, |c| c.shell_on_fail = true),
            "boot.panic_on_fail" => flag(self, |c| c.panic_on_fail = true),
            "boot.debug1" => flag(self, |c| c.debug1 = true),
            "boot.debug1devices" => flag(self, |c| c.debug1devices = true),
            "boot.debug1mounts" => flag(self, |c| c.debug1mounts = true),
            "boot.trace" => flag(self, |c| c.trace = true),
            "nixlive.verify" => flag(self, |c| c.verify = true),
            "nixlive.check" => flag(self, |c| c.check = true),
            "nixlive.test_panic" => flag(self, |c| c.test_panic = true),
            "ro" => flag(self, |c| c.read_only = true),
            "rw" => flag(self, |c| c.read_only = false),
            "nixlive.grow_root" => flag(self, |c| c.grow_root = true),
            "nixlive.root" => match val.and_then(crate::RootMode::parse) {
                Some(m) => self.root_mode = Some(m),
                None => self.warn(key, val, "want plain or live"),
            },
            "root" => match val.and_then(parse_root) {
                Some((r, odd)) => {
                    if let Some(odd) = odd {
                        self.warnings
                            .push(format!("root={}: {odd}", val.unwrap_or("")));
                    }
                    self.root = Some(r);
                }
                None => self.warn(
                    key,
                    val,
                    "want LABEL=, UUID=, PARTLABEL=, /dev/... or /FILE",
                ),
            },
            "init" | "findiso" | "nixlive.manifest" => match val {
                Some(v) if v.starts_with('/') => {
                    let v = Some(match key {
                        // A path on another filesystem, named as udev names files.
                        "findiso" => {
                            let (path, odd) = unescape_udev(v);
                            if let Some(odd) = odd {
                                self.warnings.push(format!("findiso={v}: {odd}"));
                            }
                            path
                        }
                        _ => v.to_string(),
                    });
                    match key {
                        "init" => self.init = v,
                        "findiso" => self.findiso = v,
                        _ => self.manifest = v,
                    }
                }
                _ => self.warn(key, val, "want an absolute path"),
            },
            // The kernel acts on these two; they are only checked here, so
            // that a bad value is warned about like any other known key's.
            "loglevel" if val.and_then(|v| v.parse::<u8>().ok()).is_none_or(|l| l > 7) => {
                self.warn(key, val, "want 0..7")
            }
            "console" if val.is_none_or(str::is_empty) => {
                self.warn(key, val, "want a console name")
            }
            "nixlive.timeout" => match val.and_then(|v| v.parse::<u64>().ok()) {
                Some(s) => self.timeout = Timeout::from_secs(s),
                None => self.warn(key, val, "want whole seconds (0 = wait forever)"),
            },
            "nixlive.url" => match val.map(crate::net::url::Url::parse) {
                Some(Ok(u)) => self.url = Some(u),
                Some(Err(e)) => self.warn(key, None, &e.to_string()),
                None => self.warn(key, val, "want http://HOST[:PORT]/PATH/nixlive.manifest"),
            },
            "ip" => match val.map(crate::net::ipconf::IpConfig::parse) {
                Some(Ok(c)) => self.ip = Some(c),
                Some(Err(e)) => self.warn(key, val, &e.to_string()),
                None => self.warn(key, val, "want dhcp or ADDR::GW:MASK::IFACE:off"),
            },
            "nixlive.net_timeout" => match val.and_then(|v| v.parse::<u64>().ok()) {
                Some(s) => self.net_timeout = Some(Timeout::from_secs(s)),
                None => self.warn(key, val, "want whole seconds (0 = wait forever)"),
            },
            "nixlive.overlay_size" => match val.and_then(parse_size) {
                Some(s) => self.overlay_size = s,
                None => self.warn(key, val, "want a size (1G, 512M, bytes) or N% of RAM"),
            },
            "nixlive.modules" => match val {
                Some(v) if !v.is_empty() => self
                    .modules
                    .extend(v.split(',').filter(|m| !m.is_empty()).map(String::from)),
                _ => self.warn(key, val, "want a comma-separated list of module names"),
            },
            "nixlive.ssh_key" => match val {
                Some(v) if !v.trim().is_empty() => self.ssh_keys.push(v.to_string()),
                _ => self.warn(key, val, "want an authorized_keys line (quote it)"),
            },
            // NixOS splits these at every `=`; here the value is everything
            // after the first, so a password may hold `=`. The warning for an
            // empty password never repeats the value (there is none).
            "live.nixos.passwd" => match val {
                Some(v) if !v.is_empty() => self.live_password = Some(Secret::new(v)),
                _ => self.warn(key, None, "want a password (an empty one is refused)"),
            },
            "live.nixos.passwordHash" => match val {
                Some(v) if !v.is_empty() => self.live_password_hash = Some(v.to_string()),
                _ => self.warn(
                    key,
                    val,
                    "want a crypt(3) hash such as $6$salt$... or $y$...",
                ),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_kernel_quoting() {
        assert_eq!(words(" a  b=\"c d\" e\n"), vec!["a", "b=c d", "e"]);
        assert_eq!(words("\"x y\"z"), vec!["x yz"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn defaults() {
        let c = Cmdline::parse("");
        assert_eq!(c, Cmdline::default());
        assert_eq!(c.timeout, Timeout::After(Duration::from_secs(60)));
        assert_eq!(c.overlay_size, SizeSpec::Percent(50));
    }

    #[test]
    fn typical_nixos_line() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/boot/bzImage root=LABEL=nixos-24.05 init=/nix/store/abc-sys/init \
             console=ttyS0,115200 console=tty0 loglevel=4 copytoram boot.shell_on_fail \
             nixlive.timeout=0 nixlive.overlay_size=2G nixlive.modules=virtio_blk,sr_mod \
             nixlive.ssh_key=\"ssh-ed25519 AAAA me@x\" quiet -- single",
        );
        assert_eq!(c.root, Some(RootSpec::Label("nixos-24.05".into())));
        assert_eq!(c.init.as_deref(), Some("/nix/store/abc-sys/init"));
        assert!(c.copytoram && c.shell_on_fail && !c.panic_on_fail);
        assert_eq!(c.timeout, Timeout::Forever);
        assert_eq!(c.overlay_size, SizeSpec::Bytes(2 << 30));
        assert_eq!(c.modules, vec!["virtio_blk", "sr_mod"]);
        assert_eq!(c.ssh_keys, vec!["ssh-ed25519 AAAA me@x"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn root_forms() {
        let r = |s: &str| Cmdline::parse(&format!("root={s}")).root;
        assert_eq!(
            r("UUID=1234-ABCD"),
            Some(RootSpec::Uuid("1234-ABCD".into()))
        );
        assert_eq!(
            r("PARTLABEL=live"),
            Some(RootSpec::PartLabel("live".into()))
        );
        assert_eq!(r("/dev/sr0"), Some(RootSpec::Device("/dev/sr0".into())));
        assert_eq!(r("LABEL="), None);
        assert_eq!(r("sr0"), None);
    }

    #[test]
    fn bad_values_warn_and_keep_defaults() {
        let c = Cmdline::parse(
            "nixlive.timeout=soon nixlive.overlay_size=150% loglevel=9 init=relative copytoram=1 root=foo",
        );
        assert_eq!(c.warnings.len(), 6, "{:?}", c.warnings);
        assert_eq!(c.timeout, Timeout::After(DEFAULT_TIMEOUT));
        assert_eq!(c.overlay_size, SizeSpec::Percent(50));
        assert!(!c.copytoram);
        assert!(c.warnings[0].contains("nixlive.timeout=soon"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(SizeSpec::Bytes(512 << 20)));
        assert_eq!(parse_size("100%"), Some(SizeSpec::Percent(100)));
        assert_eq!(parse_size("0%"), None);
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(SizeSpec::Percent(50).bytes(1000), 500);
    }

    #[test]
    fn test_panic_is_a_flag() {
        assert!(Cmdline::parse("nixlive.test_panic").test_panic);
        assert!(!Cmdline::parse("").test_panic);
        let c = Cmdline::parse("nixlive.test_panic=1");
        assert!(!c.test_panic && c.warnings.len() == 1, "{c:?}");
    }

    #[test]
    fn check_is_a_flag() {
        assert!(Cmdline::parse("nixlive.check").check);
        assert!(!Cmdline::parse("nixlive.verify").check);
        let c = Cmdline::parse("nixlive.check=yes");
        assert!(!c.check && c.warnings.len() == 1, "{c:?}");
    }

    /// 2^63 s and u64::MAX s are forever, not a deadline that overflows.
    #[test]
    fn huge_timeouts_are_forever() {
        for s in ["9223372036854775808", "18446744073709551615", "4294967297"] {
            let c = Cmdline::parse(&format!("nixlive.timeout={s} nixlive.net_timeout={s}"));
            assert_eq!(c.timeout, Timeout::Forever, "{s}");
            assert_eq!(c.net_timeout, Some(Timeout::Forever), "{s}");
            assert!(c.warnings.is_empty(), "{c:?}");
        }
        let c = Cmdline::parse("nixlive.timeout=4294967296");
        assert_eq!(c.timeout, Timeout::After(Timeout::LONGEST));
        // Past u64: not a number of seconds at all.
        let c = Cmdline::parse("nixlive.timeout=18446744073709551616");
        assert_eq!(c.timeout, Timeout::After(DEFAULT_TIMEOUT));
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn udev_escapes_in_labels_and_findiso() {
        let c = Cmdline::parse(r"root=LABEL=NIXOS\x20LIVE findiso=/isos/my\x20nixos.iso");
        assert_eq!(c.root, Some(RootSpec::Label("NIXOS LIVE".into())));
        assert_eq!(c.root.unwrap().to_string(), "LABEL=\"NIXOS LIVE\"");
        assert_eq!(c.findiso.as_deref(), Some("/isos/my nixos.iso"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Both spellings work: the quoted one as the kernel tokenises it.
        let q = Cmdline::parse("\"root=LABEL=NIXOS LIVE\"");
        assert_eq!(q.root, Some(RootSpec::Label("NIXOS LIVE".into())));
        assert_eq!(
            Cmdline::parse(r"root=UUID=\x41B").root,
            Some(RootSpec::Uuid("AB".into()))
        );
        assert_eq!(
            Cmdline::parse(r"root=PARTLABEL=a\x2fb").root,
            Some(RootSpec::PartLabel("a/b".into()))
        );
        // Not an escape: taken literally, and said.
        let odd = Cmdline::parse(r"root=LABEL=A\xZZ\n");
        assert_eq!(odd.root, Some(RootSpec::Label(r"A\xZZ\n".into())));
        assert_eq!(odd.warnings.len(), 1, "{:?}", odd.warnings);
        assert!(odd.warnings[0].contains(r"`\xZZ`"), "{:?}", odd.warnings);
        assert_eq!(
            unescape_udev(r"end\x4"),
            (
                r"end\x4".to_string(),
                Some(r"`\x4` is not \x and two hex digits; taken as it is".to_string())
            )
        );
        assert_eq!(unescape_udev(r"\x41\x42"), ("AB".to_string(), None));
    }

    #[test]
    fn plain_root_and_read_only() {
        let c = Cmdline::parse("root=LABEL=nixos nixlive.root=plain ro");
        assert_eq!(c.root_mode, Some(crate::RootMode::Plain));
        assert!(c.read_only);
        assert!(Cmdline::parse("nixlive.grow_root").grow_root);
        let c = Cmdline::parse("ro rw nixlive.root=live");
        assert_eq!(c.root_mode, Some(crate::RootMode::Live));
        assert!(!c.read_only, "the last of ro and rw wins");
        let c = Cmdline::parse("nixlive.root=persistent ro=1");
        assert_eq!(c.root_mode, None);
        assert!(!c.read_only);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("want plain or live"));
    }

    #[test]
    fn root_as_a_file() {
        let c = Cmdline::parse("root=/nixos.iso");
        assert_eq!(c.root, Some(RootSpec::File("/nixos.iso".into())));
        assert_eq!(c.root.unwrap().to_string(), "/nixos.iso");
        assert!(Cmdline::parse("root=/").root.is_none());
        assert!(Cmdline::parse("root=/a/../b").root.is_none());
        assert_eq!(
            Cmdline::parse("root=/dev/sr0").root,
            Some(RootSpec::Device("/dev/sr0".into()))
        );
    }

    #[test]
    fn live_password_is_never_shown() {
        let c = Cmdline::parse("live.nixos.passwd=s3cr=t live.nixos.passwordHash=$6$salt$abc");
        assert_eq!(c.live_password.as_ref().map(Secret::expose), Some("s3cr=t"));
        assert_eq!(c.live_password_hash.as_deref(), Some("$6$salt$abc"));
        let shown = format!("{c:?} {}", c.live_password.as_ref().unwrap());
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("<redacted>"));
        let c = Cmdline::parse("live.nixos.passwd= live.nixos.passwd live.nixos.passwordHash=");
        assert_eq!((c.live_password, c.live_password_hash), (None, None));
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    }

    #[test]
    fn network_keys() {
        let c = Cmdline::parse(
            "nixlive.url=http://10.0.2.2:8000/set/nixlive.manifest ip=dhcp nixlive.net_timeout=30",
        );
        assert_eq!(
            c.url.as_ref().map(ToString::to_string).as_deref(),
            Some("http://10.0.2.2:8000/set/nixlive.manifest")
        );
        assert_eq!(
            c.ip,
            Some(crate::net::ipconf::IpConfig::Dhcp { iface: None })
        );
        assert_eq!(c.net_timeout, Some(Timeout::After(Duration::from_secs(30))));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = Cmdline::parse(
            "nixlive.url=https://h/m nixlive.url ip=1.2.3.4:::99:::off nixlive.net_timeout=x",
        );
        assert_eq!((c.url, c.ip, c.net_timeout), (None, None, None));
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("only http://"), "{}", c.warnings[0]);
        assert!(c.warnings[2].contains("netmask `99`"), "{}", c.warnings[2]);
    }
}

//! Kernel module closure from `modules.dep`: which files to pack and in
//! which order to load them (dependencies first).
//!
//! `modules.dep` lines are `path: dep dep ...`, paths relative to
//! `/lib/modules/<version>`. Module names compare with `-` and `_` as equal.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModError {
    #[error("modules.dep line {line}: {msg}")]
    Parse { line: usize, msg: String },
    #[error("module `{0}` is neither in modules.dep nor in modules.builtin")]
    NotFound(String),
    #[error("module `{module}` depends on `{dep}`, which modules.dep does not list")]
    MissingDep { module: String, dep: String },
    #[error("modules.dep has a dependency cycle through `{0}`")]
    Cycle(String),
}

/// The canonical module name of a module file path or a user-given name:
/// file name without `.ko` (and compression suffix), `-` as `_`.
pub fn module_name(s: &str) -> String {
    let base = s.rsplit('/').next().unwrap_or(s);
    let base = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|suf| base.strip_suffix(suf))
        .unwrap_or(base);
    base.replace('-', "_")
}

/// The values of `key` in a (decompressed) module's `.modinfo` section,
/// found as NUL-separated `key=value` strings (`vermagic`, `firmware`).
pub fn modinfo<'a>(module: &'a [u8], key: &str) -> Vec<&'a str> {
    module
        .split(|&b| b == 0)
        .filter_map(|s| s.strip_prefix(key.as_bytes())?.strip_prefix(b"="))
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty() && v.len() <= 4096)
        .collect()
}

/// The kernel release a module was built for: the first word of its
/// `vermagic` (`6.1.0-56-amd64 SMP preempt mod_unload modversions`).
pub fn vermagic_release(module: &[u8]) -> Option<&str> {
    modinfo(module, "vermagic")
        .first()?
        .split_ascii_whitespace()
        .next()
}

#[derive(Debug, Default, Clone)]
pub struct ModDep {
    /// name -> (file path, dependency file paths as listed)
    entries: BTreeMap<String, (String, Vec<String>)>,
    /// file path -> name
    by_path: BTreeMap<String, String>,
}

impl ModDep {
    /// The canonical names of the modules it lists.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn parse(text: &str) -> Result<ModDep, ModError> {
        let mut d = ModDep::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line.split_once(':').ok_or_else(|| ModError::Parse {
                line: i + 1,
                msg: format!("no `:` in `{line}`"),
            })?;
            let path = path.trim();
            if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
                return Err(ModError::Parse {
                    line: i + 1,
                    msg: format!("bad module path `{path}`"),
                });
            }
            let deps: Vec<String> = deps.split_whitespace().map(str::to_string).collect();
            let name = module_name(path);
            d.by_path.insert(path.to_string(), name.clone());
            d.entries.insert(name, (path.to_string(), deps));
        }
        Ok(d)
    }
}

/// The lines of `modules.dep` for the modules an initrd holds (`files`,
/// paths as modules.dep gives them), each path named without its
/// compression suffix (`a.ko.xz: b.ko.xz` becomes `a.ko: b.ko`): the initrd
/// holds them decompressed, and the rest of the tree's modules.dep (half a
/// megabyte for a distribution kernel) would name files it does not have.
pub fn initrd_dep(text: &str, files: &[String]) -> String {
    use crate::unpack::plain_name;
    let packed: HashSet<&str> = files.iter().map(|f| plain_name(f)).collect();
    let mut out = String::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let path = plain_name(path.trim());
        if line.trim_start().starts_with('#') || !packed.contains(path) {
            continue;
        }
        out.push_str(path);
        out.push(':');
        for d in deps.split_whitespace() {
            out.push(' ');
            out.push_str(plain_name(d));
        }
        out.push('\n');
    }
    out
}

/// The lines of `modules.alias` an initrd needs: those of the modules it
/// holds (`names`, canonical), for coldplug, and every module's `fs-*` and
/// `devname:*` aliases (a few hundred bytes), so that init can name the
/// module a filesystem or loop devices need even when it is not packed.
pub fn initrd_aliases(text: &str, names: &HashSet<String>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some("alias"), Some(pattern), Some(module)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if names.contains(&module_name(module))
            || pattern.starts_with("fs-")
            || pattern.starts_with("devname:")
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Names of built-in modules from `modules.builtin` (one path per line).
pub fn parse_builtin(text: &str) -> HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Closure {
    /// Module file paths, dependencies before dependents.
    pub files: Vec<String>,
    /// Requested names that are built into the kernel.
    pub builtin: Vec<String>,
}

/// Resolves `requested` names to their dependency closure in load order.
pub fn closure(
    dep: &ModDep,
    builtin: &HashSet<String>,
    requested: &[String],
) -> Result<Closure, ModError> {
    let mut out = Closure::default();
    let mut done = HashSet::new();
    for r in requested {
        let name = module_name(r);
        if dep.entries.contains_key(&name) {
            visit(dep, &name, &mut done, &mut Vec::new(), &mut out.files)?;
        } else if builtin.contains(&name) {
            if !out.builtin.contains(r) {
                out.builtin.push(r.clone());
            }
        } else {
            return Err(ModError::NotFound(r.clone()));
        }
    }
    Ok(out)
}

fn visit(
    dep: &ModDep,
    name: &str,
    done: &mut HashSet<String>,
    stack: &mut Vec<String>,
    out: &mut Vec<String>,
) -> Result<(), ModError> {
    if done.contains(name) {
        return Ok(());
    }
    if stack.iter().any(|s| s == name) {
        return Err(ModError::Cycle(name.to_string()));
    }
    let Some((path, deps)) = dep.entries.get(name) else {
        return Err(ModError::NotFound(name.to_string()));
    };
    stack.push(name.to_string());
    // modules.dep lists the deepest dependency last; modprobe loads from the
    // end of the list, so visit in reverse for the same order.
    for d in deps.iter().rev() {
        let dname = dep
            .by_path
            .get(d)
            .cloned()
            .unwrap_or_else(|| module_name(d));
        if !dep.entries.contains_key(&dname) {
            return Err(ModError::MissingDep {
                module: name.to_string(),
                dep: d.clone(),
            });
        }
        visit(dep, &dname, done, stack, out)?;
    }
    stack.pop();
    done.insert(name.to_string());
    out.push(path.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/squashfs/squashfs.ko:
kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko
kernel/drivers/cdrom/cdrom.ko:
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/sr_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko kernel/drivers/cdrom/cdrom.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/ata_piix.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/virtio/virtio-mmio.ko.xz:
";

    fn req(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names() {
        assert_eq!(module_name("kernel/a/virtio-mmio.ko.xz"), "virtio_mmio");
        assert_eq!(module_name("sr-mod"), "sr_mod");
        assert_eq!(module_name("x.ko"), "x");
    }

    #[test]
    fn load_order_and_dedup() {
        let d = ModDep::parse(DEP).unwrap();
        let b = parse_builtin("kernel/fs/ext4/ext4.ko\n");
        let c = closure(
            &d,
            &b,
            &req(&["ata_piix", "sr-mod", "isofs", "ext4", "virtio_mmio"]),
        )
        .unwrap();
        assert_eq!(
            c.files,
            req(&[
                "kernel/drivers/scsi/scsi_common.ko",
                "kernel/drivers/scsi/scsi_mod.ko",
                "kernel/drivers/ata/libata.ko",
                "kernel/drivers/ata/ata_piix.ko",
                "kernel/drivers/cdrom/cdrom.ko",
                "kernel/drivers/scsi/sr_mod.ko",
                "kernel/fs/isofs/isofs.ko",
                "kernel/drivers/virtio/virtio-mmio.ko.xz",
            ])
        );
        assert_eq!(c.builtin, req(&["ext4"]));
    }

    #[test]
    fn errors() {
        let d = ModDep::parse(DEP).unwrap();
        assert_eq!(
            closure(&d, &HashSet::new(), &req(&["nope"])).unwrap_err(),
            ModError::NotFound("nope".into())
        );
        let d = ModDep::parse("a.ko: b.ko\n").unwrap();
        assert!(matches!(
            closure(&d, &HashSet::new(), &req(&["a"])).unwrap_err(),
            ModError::MissingDep { .. }
        ));
        let d = ModDep::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        assert!(matches!(
            closure(&d, &HashSet::new(), &req(&["a"])).unwrap_err(),
            ModError::Cycle(_)
        ));
        assert!(matches!(
            ModDep::parse("ok.ko:\ngarbage\n").unwrap_err(),
            ModError::Parse { line: 2, .. }
        ));
        assert!(ModDep::parse("../x.ko:\n").is_err());
    }
}

/// `modules.alias`: `alias PATTERN MODULE` lines, PATTERN a shell glob over
/// a device's `modalias` (`pci:v00001AF4d00001001...`).
#[derive(Debug, Default, Clone)]
pub struct Aliases {
    entries: Vec<(String, String)>,
}

impl Aliases {
    /// Lenient by design: lines that are not `alias PATTERN MODULE` are skipped
    /// (depmod writes comments; a broken line must not stop the boot).
    pub fn parse(text: &str) -> Aliases {
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                match (it.next(), it.next(), it.next(), it.next()) {
                    (Some("alias"), Some(pat), Some(module), None) => {
                        Some((pat.to_string(), module_name(module)))
                    }
                    _ => None,
                }
            })
            .collect();
        Aliases { entries }
    }

    /// The patterns that name module `name` (`-` and `_` alike).
    pub fn of_module(&self, name: &str) -> Vec<&str> {
        let name = module_name(name);
        self.entries
            .iter()
            .filter(|(_, m)| *m == name)
            .map(|(p, _)| p.as_str())
            .collect()
    }

    /// Names of the modules whose patterns match `modalias`, in file order, without repeats.
    pub fn lookup(&self, modalias: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (pat, m) in &self.entries {
            if glob(pat.as_bytes(), modalias.as_bytes()) && !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }
}

/// fnmatch(3) without flags: `*`, `?` and `[...]` (with `!`/`^` and ranges).
pub fn glob(pat: &[u8], s: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear enough for
    // modalias strings, and no recursion on untrusted patterns.
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pat, p, s[i]) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|c| *c == b'*')
}

/// Matches `c` against the bracket expression at `pat[p]`; returns whether
/// it matched and the index after `]`, or None if the bracket is unclosed.
fn class(pat: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let negate = matches!(pat.get(j), Some(b'!' | b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() && (first || pat[j] != b']') {
        first = false;
        if j + 2 < pat.len() && pat[j + 1] == b'-' && pat[j + 2] != b']' {
            if pat[j] <= c && c <= pat[j + 2] {
                matched = true;
            }
            j += 3;
        } else {
            if pat[j] == c {
                matched = true;
            }
            j += 1;
        }
    }
    if j >= pat.len() {
        return None;
    }
    Some((matched != negate, j + 1))
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(
            b"pci:v00001AF4d*sv*",
            b"pci:v00001AF4d00001001sv00001AF4"
        ));
        assert!(!glob(b"pci:v00001AF4d*sv*", b"pci:v00008086d00001001sv0"));
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"*", b""));
        assert!(glob(b"x[0-9]y", b"x5y"));
        assert!(!glob(b"x[!0-9]y", b"x5y"));
        assert!(glob(b"x[!0-9]y", b"xay"));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"[", b"["));
    }

    #[test]
    fn lookup() {
        let a = Aliases::parse(
            "# Aliases extracted from modules themselves.\n\
             alias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_blk\n\
             alias virtio:d00000002v* virtio_blk\n\
             alias pci:v00008086d00007010sv*sd*bc*sc*i* ata-piix\n\
             garbage line\n",
        );
        assert_eq!(a.lookup("virtio:d00000002v00001AF4"), vec!["virtio_blk"]);
        assert_eq!(
            a.lookup("pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80"),
            vec!["ata_piix"]
        );
        assert!(a.lookup("usb:v1234").is_empty());
        assert_eq!(
            a.of_module("ata_piix"),
            vec!["pci:v00008086d00007010sv*sd*bc*sc*i*"]
        );
        assert_eq!(a.of_module("virtio-blk").len(), 2);
        assert!(a.of_module("loop").is_empty());
    }
}

impl ModDep {
    /// The file of module `name` (`-` and `_` equal), if modules.dep lists it.
    pub fn path_of(&self, name: &str) -> Option<&str> {
        self.entries
            .get(&module_name(name))
            .map(|(p, _)| p.as_str())
    }
}

/// `modules.softdep`: `softdep MODULE pre: A B post: C` lines, the modules
/// modprobe loads around MODULE although modules.dep does not list them
/// (ext4 wants `crypto-crc32c`). Names may be aliases.
#[derive(Debug, Default, Clone)]
pub struct SoftDeps {
    entries: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

impl SoftDeps {
    /// Lenient like [`Aliases::parse`]: what is not understood is skipped.
    pub fn parse(text: &str) -> SoftDeps {
        let mut entries: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for l in text.lines() {
            let mut it = l.split_whitespace();
            if it.next() != Some("softdep") {
                continue;
            }
            let Some(module) = it.next() else { continue };
            let e = entries.entry(module_name(module)).or_default();
            // Names before any `pre:`/`post:` are ignored, as modprobe does.
            let mut section = None;
            for tok in it {
                match tok {
                    "pre:" => section = Some(true),
                    "post:" => section = Some(false),
                    name => match section {
                        Some(true) => e.0.push(name.to_string()),
                        Some(false) => e.1.push(name.to_string()),
                        None => {}
                    },
                }
            }
        }
        SoftDeps { entries }
    }

    /// The pre and post soft dependencies of `module`, as written.
    pub fn of(&self, module: &str) -> (&[String], &[String]) {
        self.entries
            .get(&module_name(module))
            .map_or((&[], &[]), |(pre, post)| (pre.as_slice(), post.as_slice()))
    }
}

/// Modules a filesystem asks the kernel for at mount time
/// (`request_module`), which neither modules.dep nor modules.softdep show:
/// FAT needs its code page and character set (Debian's default iocharset
/// is ascii).
pub const MOUNT_TIME_REQUESTS: &[(&str, &[&str])] = &[
    ("vfat", &["nls_cp437", "nls_ascii", "nls_iso8859_1"]),
    ("msdos", &["nls_cp437", "nls_ascii"]),
];

/// `requested` grown by the soft dependencies and mount-time requests of
/// every module in its closure, pre-dependencies first, until nothing new
/// comes in. Names are resolved through `aliases`; what this kernel does
/// not have as a module is left out (a soft dependency is optional).
pub fn with_soft_deps(
    dep: &ModDep,
    builtin: &HashSet<String>,
    aliases: &Aliases,
    softdeps: &SoftDeps,
    requested: &[String],
) -> Result<Vec<String>, ModError> {
    let resolve = |n: &str| -> Vec<String> {
        if dep.entries.contains_key(&module_name(n)) {
            vec![module_name(n)]
        } else {
            aliases
                .lookup(n)
                .into_iter()
                .filter(|m| dep.entries.contains_key(m))
                .collect()
        }
    };
    let mut list: Vec<String> = requested.to_vec();
    loop {
        let c = closure(dep, builtin, &list)?;
        let mut pre = Vec::new();
        let mut post = Vec::new();
        for f in &c.files {
            let name = module_name(f);
            let (p, q) = softdeps.of(&name);
            pre.extend(p.iter().flat_map(|n| resolve(n)));
            post.extend(q.iter().flat_map(|n| resolve(n)));
            if let Some((_, extra)) = MOUNT_TIME_REQUESTS.iter().find(|(m, _)| *m == name) {
                post.extend(extra.iter().flat_map(|n| resolve(n)));
            }
        }
        let known: HashSet<String> = list.iter().map(|n| module_name(n)).collect();
        let mut new_pre: Vec<String> = Vec::new();
        for n in pre {
            if !known.contains(&n) && !new_pre.contains(&n) {
                new_pre.push(n);
            }
        }
        let mut new_post: Vec<String> = Vec::new();
        for n in post {
            if !known.contains(&n) && !new_pre.contains(&n) && !new_post.contains(&n) {
                new_post.push(n);
            }
        }
        if new_pre.is_empty() && new_post.is_empty() {
            return Ok(list);
        }
        new_pre.extend(list);
        new_pre.extend(new_post);
        list = new_pre;
    }
}

#[cfg(test)]
mod softdep_tests {
    use super::*;

    #[test]
    fn ext4_brings_crc32c_first_and_vfat_its_code_pages() {
        let dep = ModDep::parse(
            "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\n\
             kernel/fs/jbd2/jbd2.ko:\n\
             kernel/crypto/crc32c_generic.ko:\n\
             kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n\
             kernel/fs/fat/fat.ko:\n\
             kernel/fs/nls/nls_cp437.ko:\n\
             kernel/fs/nls/nls_ascii.ko:\n",
        )
        .unwrap();
        let aliases =
            Aliases::parse("alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\n");
        let soft = SoftDeps::parse(
            "# Soft dependencies extracted from modules themselves.\n\
             softdep ext4 pre: crypto-crc32c\n\
             softdep jbd2 pre: crypto-crc32c\n\
             softdep cifs gcm\n",
        );
        let got = with_soft_deps(&dep, &HashSet::new(), &aliases, &soft, &["ext4".into()]).unwrap();
        assert_eq!(got, vec!["crc32c_generic", "ext4"]);
        let got = with_soft_deps(&dep, &HashSet::new(), &aliases, &soft, &["vfat".into()]).unwrap();
        assert_eq!(got, vec!["vfat", "nls_cp437", "nls_ascii"]);
        assert_eq!(soft.of("cifs"), (&[][..], &[][..]));
    }

    #[test]
    fn initrd_dep_and_aliases_hold_what_the_initrd_needs() {
        let text = "kernel/fs/isofs/isofs.ko.xz: kernel/drivers/cdrom/cdrom.ko.xz\n\
                    kernel/drivers/cdrom/cdrom.ko.xz:\n# note\nkernel/a.ko: kernel/b.ko.zst kernel/c.ko.gz\n\
                    kernel/net/wifi.ko.xz:\n";
        let files = [
            "kernel/drivers/cdrom/cdrom.ko.xz".to_string(),
            "kernel/fs/isofs/isofs.ko.xz".to_string(),
        ];
        let dep = initrd_dep(text, &files);
        assert_eq!(
            dep,
            "kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko\nkernel/drivers/cdrom/cdrom.ko:\n"
        );
        let d = ModDep::parse(&dep).unwrap();
        assert_eq!(d.path_of("isofs"), Some("kernel/fs/isofs/isofs.ko"));
        assert_eq!(d.path_of("wifi"), None);
        let aliases = "# Aliases\nalias fs-iso9660 isofs\nalias pci:v00008086d* e1000\n\
                       alias fs-ntfs3 ntfs3\nalias devname:loop-control loop\nalias scsi:t-0x05* sr_mod\n";
        let names: HashSet<String> = ["sr_mod".to_string()].into();
        assert_eq!(
            initrd_aliases(aliases, &names),
            "alias fs-iso9660 isofs\nalias fs-ntfs3 ntfs3\nalias devname:loop-control loop\nalias scsi:t-0x05* sr_mod\n"
        );
    }

    #[test]
    fn modinfo_strings() {
        let m = b"\x7fELF..\0license=GPL\0vermagic=6.1.0-56-amd64 SMP mod_unload \0firmware=a.bin\0xvermagic=no\0";
        assert_eq!(vermagic_release(m), Some("6.1.0-56-amd64"));
        assert_eq!(modinfo(m, "firmware"), ["a.bin"]);
        assert_eq!(vermagic_release(b"no modinfo"), None);
    }
}

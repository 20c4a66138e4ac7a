//! Where the images are: in the initrd (netboot), on the medium `root=`
//! names, or in an ISO file `findiso=` names; and the manifest that lists
//! them. Waiting and probing are in [`crate::discover`]; this turns the
//! command line into what to wait for and the outcome into a [`Found`].

use crate::discover::{self, BlockDev, Hotplug, Seen};
use crate::error::BootError;
use crate::modules::Modules;
use crate::plan::{FINDISO_HOST, Found, PlainProbe};
use crate::{findiso, trust};
use nixlive_formats::nixkey::PublicKey;
use nixlive_formats::paths::{self, in_new_root};
use nixlive_formats::{Cmdline, ImageEntry, ImageFs, Manifest, RootSpec, Timeout, manifest};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// Decides whether a device is the one wanted.
type Accept<'a> = Box<dyn FnMut(&BlockDev, &Seen) -> bool + 'a>;

/// Netboot: no `root=`, no `findiso=`, and the builder put the manifest
/// into the initrd itself (`initrd_root` is `/` at boot).
pub fn in_initrd(cmdline: &Cmdline, initrd_root: &Path) -> bool {
    cmdline.root.is_none()
        && cmdline.findiso.is_none()
        && initrd_root.join(manifest::DEFAULT_PATH).exists()
}

/// Waits for the medium (or the filesystem holding the ISO file) within
/// `nixlive.timeout`; `modules` loads drivers for devices that appear, and
/// the filesystem module of each candidate before it is mounted to look
/// into (findiso, a manifest).
pub fn find(
    cmdline: &Cmdline,
    keys: &[PublicKey],
    events: Option<&discover::uevent::Uevents>,
    modules: &RefCell<dyn Modules + '_>,
) -> Result<Found, BootError> {
    search(cmdline, keys, Want::Live, events, modules)
}

/// What the search is for: a live medium (looked into: it must hold a
/// manifest, signed when keys are trusted, or the stock image), or a
/// plain root filesystem (taken as `root=` names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Live,
    Plain,
}

/// Candidates skipped, by node, with why (the latest reason for each).
type Skipped = Rc<RefCell<std::collections::BTreeMap<String, String>>>;

fn search(
    cmdline: &Cmdline,
    keys: &[PublicKey],
    want: Want,
    events: Option<&discover::uevent::Uevents>,
    modules: &RefCell<dyn Modules + '_>,
) -> Result<Found, BootError> {
    let budget = match cmdline.timeout {
        Timeout::Forever => None,
        Timeout::After(d) => Some(d),
    };
    let says = budget.map_or("no timeout".to_string(), |d| {
        format!("timeout {} s", d.as_secs())
    });
    // Candidates refused, for the message if none is found.
    let skipped: Skipped = Rc::default();
    let (wanted, mut accept): (String, Accept<'_>) = match (&cmdline.findiso, &cmdline.root) {
        (Some(iso), _) => {
            log::info!("looking for the ISO file {iso} on every filesystem ({says})");
            (
                format!("file {iso}"),
                Box::new(holds_iso(
                    iso.clone(),
                    cmdline.clone(),
                    keys.to_vec(),
                    modules,
                    skipped.clone(),
                )),
            )
        }
        (None, Some(RootSpec::File(path))) => return in_initramfs(path),
        (None, Some(spec)) => {
            log::info!("waiting for the medium {spec} ({says})");
            let wanted = spec.to_string();
            let accept = candidate(
                spec.clone(),
                cmdline.clone(),
                keys.to_vec(),
                want,
                skipped.clone(),
                modules,
            );
            (wanted, Box::new(accept))
        }
        (None, None) => return Err(BootError::NoRoot),
    };
    let sys = Path::new("/sys");
    let mut on_hotplug = |h: Hotplug<'_>| modules.borrow_mut().hotplug(h);
    match discover::wait_for(&mut *accept, &mut on_hotplug, sys, events, budget) {
        discover::Found::Device(d) => Ok(found(cmdline, &d)),
        discover::Found::TimedOut(seen) => {
            Err(not_found(cmdline, wanted, budget, &seen, &skipped.borrow()))
        }
    }
}

/// The budget is spent: every device seen, then every candidate skipped
/// with why.
fn not_found(
    cmdline: &Cmdline,
    wanted: String,
    budget: Option<Duration>,
    seen: &Seen,
    skipped: &std::collections::BTreeMap<String, String>,
) -> BootError {
    let mut seen = seen.list();
    for s in skipped.values() {
        seen.push_str(&format!("\n  {s}"));
    }
    BootError::MediumNotFound {
        check: discover::what_to_check(cmdline),
        wanted,
        secs: budget.unwrap_or(Duration::ZERO).as_secs(),
        seen,
    }
}

/// A plain root: the device `root=` names is found exactly as a medium
/// is, and its superblock read again for its consistency flags. Returns
/// it and its line for the messages ("devices seen").
pub fn find_plain(
    cmdline: &Cmdline,
    events: Option<&discover::uevent::Uevents>,
    modules: &RefCell<dyn Modules + '_>,
) -> Result<(PlainProbe, String), BootError> {
    if let Some(iso) = &cmdline.findiso {
        return Err(BootError::PlainNotADevice {
            what: format!("findiso={iso}"),
        });
    }
    if let Some(RootSpec::File(f)) = &cmdline.root {
        return Err(BootError::PlainNotADevice {
            what: format!("root={f} (a file in the initramfs)"),
        });
    }
    // A plain root has no manifest to sign: no key takes part in the search.
    let found = search(cmdline, &[], Want::Plain, events, modules).map_err(|e| match e {
        BootError::MediumNotFound {
            wanted,
            secs,
            seen,
            check,
        } => BootError::MediumNotFound {
            wanted: format!("{wanted} (the root filesystem: nixlive.root=plain)"),
            secs,
            seen,
            check,
        },
        e => e,
    })?;
    let (node, fstype) = match found {
        Found::Device { node, fstype } => (node, fstype),
        other => {
            return Err(BootError::PlainNotADevice {
                what: format!("{other:?}"),
            });
        }
    };
    let head = discover::read_head(&node);
    let (health, described) = match &head {
        Ok(h) => {
            let id = discover::probe::identify(&h.bytes);
            let label = id.as_ref().and_then(|i| i.label.clone());
            (
                discover::probe::ext_health(&h.bytes),
                format!(
                    "{node} ({fstype} label={})",
                    label.as_deref().unwrap_or("(none)")
                ),
            )
        }
        // Found a moment ago: mounting it will say what is wrong.
        Err(e) => {
            log::warn!("reading {node} again for its superblock: {e}, ignoring");
            (None, format!("{node} ({fstype})"))
        }
    };
    log::info!("the root filesystem is {described}");
    Ok((
        PlainProbe {
            node,
            fstype,
            health,
        },
        described,
    ))
}

/// `root=/FILE`: the medium is a file the initramfs already holds (iPXE
/// put it there): no waiting, its filesystem read from its first blocks.
fn in_initramfs(path: &str) -> Result<Found, BootError> {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| {
        f.take(discover::probe::PROBE_LEN as u64)
            .read_to_end(&mut head)
    });
    let why = match read {
        Err(e) => e.to_string(),
        Ok(_) => match discover::probe::identify(&head) {
            Some(id) => {
                log::info!(
                    "the medium is the file {path}: {} label={}",
                    id.fstype,
                    id.label.as_deref().unwrap_or("(none)")
                );
                return Ok(Found::File {
                    host: None,
                    path: path.to_string(),
                    fstype: id.fstype.to_string(),
                });
            }
            None => {
                "no filesystem nixlive knows (ISO9660, FAT, ext2/3/4) in its first blocks".into()
            }
        },
    };
    Err(BootError::RootFile {
        path: path.to_string(),
        why,
        top: top_of_initramfs(),
    })
}

/// What the initramfs holds at its top, for the message when a file is missing.
fn top_of_initramfs() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.join(" ")
}

/// A device that matches `spec` and, for a live medium, can be one: it
/// holds a manifest that parses, or the stock image, and when the initrd
/// trusts keys, a manifest one of them signed ([`trust::candidate`]). One
/// that cannot is skipped (with a warning naming it and why) and the
/// search goes on, so a good medium plugged in later still wins. Verdicts
/// are kept by the device's identity ([`BlockDev::identity`]), so a medium
/// swapped in the same drive is looked at afresh.
fn candidate<'a>(
    spec: RootSpec,
    cmdline: Cmdline,
    keys: Vec<PublicKey>,
    want: Want,
    skipped: Skipped,
    modules: &'a RefCell<dyn Modules + '_>,
) -> impl FnMut(&BlockDev, &Seen) -> bool + 'a {
    let mut verdicts = std::collections::HashMap::new();
    move |d, seen| {
        if !discover::matches(&spec, d, seen) {
            return false;
        }
        if want == Want::Plain {
            return true;
        }
        // Not read yet (a drive not ready): asked again once it reads.
        if !matches!(d.probe, Some(Ok(_))) {
            return false;
        }
        *verdicts.entry(d.identity()).or_insert_with(|| {
            let node = d.node();
            let checked = match &d.probe {
                Some(Ok(Some(id))) => modules
                    .borrow_mut()
                    .require_fs(
                        id.fstype,
                        &format!("looking for a live medium's manifest on {node}"),
                    )
                    .map_err(|e| format!("cannot mount it: {}", nixlive_formats::error::chain(&e)))
                    .and_then(|()| trust::candidate(&node, id.fstype, &cmdline, &keys)),
                _ => Err(
                    "no filesystem nixlive recognises (ISO9660, FAT, exFAT, NTFS, ext2/3/4)"
                        .to_string(),
                ),
            };
            let (what, why) = match checked {
                Ok(Some(key)) => {
                    log::info!("{node} is {spec}, its manifest signed by the trusted key {key}");
                    return true;
                }
                Ok(None) => {
                    log::info!("{node} is {spec} and holds a live medium");
                    return true;
                }
                Err(why) if keys.is_empty() => ("it cannot be a live medium", why),
                Err(why) => ("it is not authentic", why),
            };
            log::warn!("skipping {node}: it is {spec}, but {what}: {why}; still looking");
            let line = if keys.is_empty() {
                format!("skipped, not a live medium: {node}: {why}")
            } else {
                format!("skipped, not authentic: {node}: {why}")
            };
            skipped.borrow_mut().insert(node, line);
            false
        })
    }
}

/// `findiso=`: a device whose filesystem holds the file; it stays
/// mounted. Its filesystem's module is loaded first; a device whose module
/// is missing or failed is not looked into, and the timeout says so. With
/// trusted keys, the file must be a medium one of them signed: a host whose
/// file is not is let go, named, and the search goes on to the others.
fn holds_iso<'a>(
    iso: String,
    cmdline: Cmdline,
    keys: Vec<PublicKey>,
    modules: &'a RefCell<dyn Modules + '_>,
    skipped: Skipped,
) -> impl FnMut(&BlockDev, &Seen) -> bool + 'a {
    let host = in_new_root(FINDISO_HOST);
    let look = move |node: &str, fstype: &str| -> HostLook {
        if !findiso::holds(node, fstype, &host, &iso) {
            return HostLook::Lacks;
        }
        if keys.is_empty() {
            return HostLook::Holds;
        }
        let path = format!("{host}{iso}");
        let why = format!("looking into {path} on {node}");
        // One borrow at a time: a borrow lives to the end of its statement.
        let ready = modules.borrow_mut().require_loop(&why);
        let ready = ready.and_then(|()| modules.borrow_mut().require_fs("iso9660", &why));
        let checked = ready
            .map_err(|e| format!("cannot look into it: {}", nixlive_formats::error::chain(&e)))
            .and_then(|()| findiso::signed(&path, &cmdline, &keys));
        match checked {
            Ok(key) => HostLook::Signed(key),
            Err(why) => {
                findiso::release(&host);
                HostLook::NotAuthentic(why)
            }
        }
    };
    hosts(look, modules, skipped)
}

/// What looking into a findiso host found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostLook {
    /// No such file (or the filesystem could not be mounted).
    Lacks,
    /// The file is there (no key to check it against).
    Holds,
    /// The file is there, a medium signed by this trusted key.
    Signed(String),
    /// The file is there, but not a medium a trusted key signed.
    NotAuthentic(String),
}

/// The findiso policy over `look` (mounting and checking, faked in
/// tests): each device that may host the file is looked into once per
/// identity after its module is loaded; the first that holds an authentic
/// file (or the file, without keys) is taken and stays the only candidate
/// (it is mounted), every one refused is named.
fn hosts<'a>(
    mut look: impl FnMut(&str, &str) -> HostLook + 'a,
    modules: &'a RefCell<dyn Modules + '_>,
    skipped: Skipped,
) -> impl FnMut(&BlockDev, &Seen) -> bool + 'a {
    let mut tried = std::collections::HashSet::new();
    // The host taken stays mounted where the ISO is looked for: it stays
    // the one candidate (asked again while the search settles), and no
    // other is mounted over it.
    let mut taken: Option<String> = None;
    move |d, _| match &d.probe {
        _ if taken.is_some() => taken.as_deref() == Some(d.identity().as_str()),
        Some(Ok(Some(id))) if findiso::may_host(id.fstype) && tried.insert(d.identity()) => {
            let node = d.node();
            let why = format!("looking for the ISO file on {node}");
            if let Err(e) = modules.borrow_mut().require_fs(id.fstype, &why) {
                let e = nixlive_formats::error::chain(&e);
                log::warn!("not looking into {node}: {e}");
                let line = format!("not looked into: {node}: {e}");
                skipped.borrow_mut().insert(node, line);
                return false;
            }
            let holds = match look(&node, id.fstype) {
                HostLook::Lacks => false,
                HostLook::Holds => true,
                HostLook::Signed(key) => {
                    log::info!("the ISO file on {node} is signed by the trusted key {key}");
                    true
                }
                HostLook::NotAuthentic(why) => {
                    log::warn!(
                        "skipping {node}: it holds the ISO file, but it is not authentic: {why}; \
                         still looking"
                    );
                    let line = format!("skipped, not authentic: the ISO file on {node}: {why}");
                    skipped.borrow_mut().insert(node, line);
                    false
                }
            };
            if holds {
                taken = Some(d.identity());
            }
            holds
        }
        _ => false,
    }
}

fn found(cmdline: &Cmdline, d: &BlockDev) -> Found {
    match &cmdline.findiso {
        Some(iso) => {
            log::info!("found {iso} on {}", d.describe());
            let host = in_new_root(FINDISO_HOST);
            Found::File {
                path: format!("{host}{iso}"),
                host: Some(host),
                fstype: "iso9660".into(),
            }
        }
        None => {
            log::info!("found the medium: {}", d.describe());
            let fstype = match &d.probe {
                Some(Ok(Some(id))) => id.fstype,
                _ => "iso9660",
            };
            Found::Device {
                node: d.node(),
                fstype: fstype.to_string(),
            }
        }
    }
}

/// A manifest as read: parsed, its text (none for the stock layout) and
/// where it was.
#[derive(Debug)]
pub struct ReadManifest {
    pub manifest: Manifest,
    pub text: Option<String>,
    pub path: String,
}

/// The manifest in `dir` (or at `nixlive.manifest=`); a medium with only
/// the stock `nix-store.squashfs` boots with a manifest made up for it.
pub fn read_manifest(dir: &str, cmdline: &Cmdline) -> Result<ReadManifest, BootError> {
    let rel = cmdline
        .manifest
        .clone()
        .unwrap_or_else(|| format!("/{}", manifest::DEFAULT_PATH));
    let path = format!("{dir}{rel}");
    match read_capped(&path, manifest::MAX_BYTES) {
        Ok(text) => {
            let m = Manifest::parse(&text).map_err(|source| BootError::Manifest {
                path: path.clone(),
                source,
            })?;
            log::info!(
                "manifest {path}: {} image(s), init {}",
                m.images.len(),
                m.init
            );
            Ok(ReadManifest {
                manifest: m,
                text: Some(text),
                path,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ReadManifest {
            manifest: stock(dir, &rel, cmdline)?,
            text: None,
            path,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => Err(BootError::TooLarge {
            path,
            limit: manifest::MAX_BYTES,
        }),
        Err(e) => Err(BootError::sys("read", path)(e)),
    }
}

/// Reads a text file of at most `limit` bytes (`FileTooLarge` past that)
/// from a medium, defensively: see [`read_bytes_capped`]. Text that is not
/// UTF-8 is `InvalidData`.
pub(crate) fn read_capped(path: &str, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_bytes_capped(path, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Reads at most `limit` bytes of a file a medium (or anyone else) handed
/// us: never through a symlink (`ELOOP`), never blocking on a FIFO or a
/// device (opened `O_NONBLOCK`, then refused unless it is a regular file:
/// `InvalidInput` naming what it is), `FileTooLarge` past `limit`.
pub(crate) fn read_bytes_capped(path: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = crate::exec::open_regular(path, false)?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    }
    Ok(bytes)
}

/// NixOS's own ISO layout: one image, no digests, stage 2 from `init=`.
fn stock(dir: &str, rel: &str, cmdline: &Cmdline) -> Result<Manifest, BootError> {
    let stock = format!("{dir}/{}", manifest::STOCK_IMAGE);
    let size = std::fs::metadata(&stock)
        .map(|m| m.len())
        .map_err(|_| BootError::NoManifest {
            medium: if dir.is_empty() {
                "/".into()
            } else {
                dir.to_string()
            },
            manifest: rel.to_string(),
            stock: manifest::STOCK_IMAGE.to_string(),
        })?;
    log::info!("no manifest at {dir}{rel}; booting the stock layout {stock}");
    Ok(Manifest {
        init: cmdline.init.clone().unwrap_or_else(|| "/init".into()),
        registration: paths::REGISTRATION.into(),
        images: vec![ImageEntry {
            name: manifest::STOCK_IMAGE.into(),
            fs: ImageFs::Squashfs,
            size,
            sha256: String::new(),
            verity: None,
        }],
        files: Vec::new(),
        sigs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed when the test ends, also when it fails.
    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("nixlive-medium-{name}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn medium_files_are_read_defensively() {
        let tmp_dir = tmp("defensive");
        let d = tmp_dir.path();
        let file = d.join("f");
        std::fs::write(&file, b"abc").unwrap();
        let p = |n: &str| d.join(n).to_str().unwrap().to_string();
        assert_eq!(read_bytes_capped(&p("f"), 3).unwrap(), b"abc");
        let big = read_bytes_capped(&p("f"), 2).unwrap_err();
        assert_eq!(big.kind(), std::io::ErrorKind::FileTooLarge);
        std::os::unix::fs::symlink(&file, d.join("link")).unwrap();
        let link = read_bytes_capped(&p("link"), 64).unwrap_err();
        assert_eq!(link.raw_os_error(), Some(libc::ELOOP), "{link}");
        // A FIFO would block a plain open forever: it is refused at once.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo").as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let fifo = read_bytes_capped(&p("fifo"), 64).unwrap_err();
        assert!(fifo.to_string().contains("a FIFO"), "{fifo}");
        let dir = read_bytes_capped(d.to_str().unwrap(), 64).unwrap_err();
        assert!(dir.to_string().contains("a directory"), "{dir}");
        std::fs::write(&file, b"\xff\xfe").unwrap();
        let text = read_capped(&p("f"), 64).unwrap_err();
        assert_eq!(text.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn manifest_stock_layout_or_neither() {
        let tmp_dir = tmp("stock");
        let d = tmp_dir.path();
        let dir = d.to_str().unwrap();
        let c = Cmdline::default();
        let e = read_manifest(dir, &c).unwrap_err().to_string();
        assert!(
            e.contains("neither /nixlive.manifest nor the stock image"),
            "{e}"
        );
        std::fs::write(d.join("nix-store.squashfs"), b"12345").unwrap();
        let r = read_manifest(dir, &c).unwrap();
        assert!(r.text.is_none());
        let m = r.manifest;
        assert_eq!((m.images[0].size, m.init.as_str()), (5, "/init"));
        assert!(m.images[0].sha256.is_empty());
        let big = format!("nixlive-manifest 1\n{}", "# padding\n".repeat(10_000));
        std::fs::write(d.join("nixlive.manifest"), big).unwrap();
        let e = read_manifest(dir, &c).unwrap_err().to_string();
        assert!(
            e.contains("nixlive.manifest is larger than 65536 bytes"),
            "{e}"
        );
        std::fs::write(d.join("nixlive.manifest"), "nixlive-manifest 1\nbogus\n").unwrap();
        let e = read_manifest(dir, &c).unwrap_err();
        let shown = nixlive_formats::error::chain(&e);
        assert!(
            shown.starts_with(&format!("{dir}/nixlive.manifest: line")),
            "{shown}"
        );
        assert_eq!(
            shown.matches("line").count(),
            1,
            "the cause is printed once: {shown}"
        );
    }

    #[test]
    fn netboot_only_without_root_and_with_a_manifest_in_the_initrd() {
        let tmp_dir = tmp("initrd");
        let d = tmp_dir.path();
        let mut c = Cmdline::default();
        assert!(!in_initrd(&c, d));
        std::fs::write(d.join("nixlive.manifest"), "").unwrap();
        assert!(in_initrd(&c, d));
        c.findiso = Some("/x.iso".into());
        assert!(!in_initrd(&c, d));
    }

    /// A loader whose filesystem modules are all missing (or all load).
    #[derive(Default)]
    struct FakeModules {
        have: bool,
        asked: Vec<String>,
    }

    impl Modules for FakeModules {
        fn hotplug(&mut self, _: Hotplug<'_>) -> bool {
            false
        }
        fn require_fs(&mut self, fstype: &str, needed_for: &str) -> Result<(), BootError> {
            self.asked.push(format!("{fstype} for {needed_for}"));
            if self.have {
                return Ok(());
            }
            Err(BootError::NoModule {
                what: format!("{fstype} filesystems"),
                needed_for: needed_for.to_string(),
                modules: fstype.to_string(),
            })
        }

        fn require_loop(&mut self, needed_for: &str) -> Result<(), BootError> {
            self.require_fs("loop", needed_for)
        }
    }

    fn dev(name: &str, fstype: &'static str, label: &str) -> BlockDev {
        BlockDev {
            name: name.into(),
            size_bytes: 1 << 20,
            partition: false,
            parent: None,
            gpt: None,
            ident: discover::Ident::default(),
            probe: Some(Ok(Some(discover::probe::Identity {
                fstype,
                label: Some(label.into()),
                uuid: None,
            }))),
        }
    }

    #[test]
    fn no_root_is_explained() {
        let none = RefCell::new(FakeModules::default());
        let e = find(&Cmdline::default(), &[], None, &none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no root=") && e.contains("root=LABEL="), "{e}");
    }

    /// findiso: a host whose filesystem module is missing is not mounted,
    /// asked once, and named in what the timeout lists; a filesystem that
    /// cannot hold the file is not asked for.
    #[test]
    fn findiso_host_without_its_module_is_skipped_and_named() {
        let modules = RefCell::new(FakeModules::default());
        let skipped: Skipped = Rc::default();
        let mut accept = holds_iso(
            "/nixos.iso".into(),
            Cmdline::default(),
            Vec::new(),
            &modules,
            skipped.clone(),
        );
        let seen = Seen::default();
        let usb = dev("nixlive-test-nosuch-sdz1", "exfat", "STICK");
        assert!(!accept(&usb, &seen));
        assert!(!accept(&usb, &seen));
        assert!(!accept(
            &dev("nixlive-test-nosuch-loop9", "squashfs", "x"),
            &seen
        ));
        let m = modules.borrow();
        assert_eq!(m.asked.len(), 1, "{:?}", m.asked);
        assert!(
            m.asked[0]
                .starts_with("exfat for looking for the ISO file on /dev/nixlive-test-nosuch-sdz1")
        );
        let s: Vec<String> = skipped.borrow().values().cloned().collect();
        assert_eq!(s.len(), 1);
        assert!(
            s[0].starts_with("not looked into: /dev/nixlive-test-nosuch-sdz1: ")
                && s[0].contains("exfat filesystems")
                && s[0].contains("(looked for: exfat)"),
            "{}",
            s[0]
        );
    }

    /// A signed boot: a candidate whose filesystem module is missing is
    /// skipped as not checkable, with the module in the reason, and never
    /// mounted; a device with another label is not asked about.
    #[test]
    fn candidate_without_its_module_is_skipped_and_named() {
        use nixlive_formats::nixkey::SecretKey;
        let modules = RefCell::new(FakeModules::default());
        let skipped: Skipped = Rc::default();
        let key = SecretKey::from_seed("k-1", &[7; 32]).public();
        let spec = RootSpec::Label("LIVE".into());
        let mut accept = candidate(
            spec,
            Cmdline::default(),
            vec![key],
            Want::Live,
            skipped.clone(),
            &modules,
        );
        let seen = Seen::default();
        assert!(!accept(
            &dev("nixlive-test-nosuch-sdy", "ntfs", "OTHER"),
            &seen
        ));
        assert!(modules.borrow().asked.is_empty());
        assert!(!accept(
            &dev("nixlive-test-nosuch-sdy1", "ntfs", "LIVE"),
            &seen
        ));
        assert_eq!(modules.borrow().asked.len(), 1);
        let s: Vec<String> = skipped.borrow().values().cloned().collect();
        assert_eq!(s.len(), 1);
        assert!(
            s[0].starts_with(
                "skipped, not authentic: /dev/nixlive-test-nosuch-sdy1: cannot mount it: "
            ) && s[0].contains("ntfs filesystems"),
            "{}",
            s[0]
        );
    }

    /// Without a key: every candidate that cannot be a live medium is
    /// skipped with its reason, the verdict kept by the device's identity
    /// (asked once per identity, again when the medium changed), and a
    /// plain root is taken as named; when the budget ends, each skipped
    /// candidate is listed with its reason.
    #[test]
    fn candidates_that_cannot_be_a_medium_are_skipped_and_listed() {
        let modules = RefCell::new(FakeModules::default());
        let skipped: Skipped = Rc::default();
        let spec = RootSpec::Label("LIVE".into());
        let mut accept = candidate(
            spec.clone(),
            Cmdline::default(),
            Vec::new(),
            Want::Live,
            skipped.clone(),
            &modules,
        );
        let mut seen = Seen::default();
        let a = dev("nixlive-test-nosuch-vda", "ext4", "LIVE");
        let mut b = dev("nixlive-test-nosuch-sdb", "vfat", "LIVE");
        assert!(!accept(&a, &seen));
        assert!(!accept(&a, &seen));
        assert!(!accept(&b, &seen));
        assert_eq!(modules.borrow().asked.len(), 2, "once per device");
        // The same drive with another medium in it is asked about again.
        b.ident.diskseq = Some(9);
        assert!(!accept(&b, &seen));
        assert_eq!(modules.borrow().asked.len(), 3);
        let mut none = dev("nixlive-test-nosuch-vdc", "ext4", "LIVE");
        none.probe = Some(Ok(None));
        assert!(!accept(&none, &seen), "no filesystem: not a label match");
        assert_eq!(skipped.borrow().len(), 2);
        for d in [&a, &b] {
            seen.devs.insert(d.name.clone(), d.clone());
        }
        let e = not_found(
            &Cmdline::parse("root=LABEL=LIVE nixlive.timeout=7"),
            spec.to_string(),
            Some(Duration::from_secs(7)),
            &seen,
            &skipped.borrow(),
        )
        .to_string();
        for want in [
            "/dev/nixlive-test-nosuch-vda",
            "skipped, not a live medium: /dev/nixlive-test-nosuch-vda: cannot mount it: ",
            "skipped, not a live medium: /dev/nixlive-test-nosuch-sdb: cannot mount it: ",
            "ext4 filesystems",
            "vfat filesystems",
        ] {
            assert!(e.contains(want), "{want:?} in\n{e}");
        }
        // A plain root is not looked into.
        let mut plain = candidate(
            spec,
            Cmdline::default(),
            Vec::new(),
            Want::Plain,
            skipped.clone(),
            &modules,
        );
        assert!(plain(&a, &seen));
        assert_eq!(modules.borrow().asked.len(), 3);
    }

    /// findiso with a key: a host whose file is not authentic is named and
    /// the search goes on to the next host holding the file, which is taken
    /// when its file is signed; each host is looked into once.
    #[test]
    fn findiso_tries_every_host_until_one_is_authentic() {
        let modules = RefCell::new(FakeModules {
            have: true,
            ..FakeModules::default()
        });
        let skipped: Skipped = Rc::default();
        let looked = RefCell::new(Vec::new());
        let mut accept = hosts(
            |node: &str, _: &str| {
                looked.borrow_mut().push(node.to_string());
                match node {
                    "/dev/sda1" => HostLook::NotAuthentic("signed by other".into()),
                    "/dev/sdb1" => HostLook::Signed("good-1".into()),
                    _ => HostLook::Lacks,
                }
            },
            &modules,
            skipped.clone(),
        );
        let seen = Seen::default();
        assert!(!accept(&dev("vda", "ext4", "DATA"), &seen));
        assert!(!accept(&dev("sda1", "vfat", "STICK"), &seen));
        assert!(!accept(&dev("sda1", "vfat", "STICK"), &seen), "once");
        assert!(accept(&dev("sdb1", "exfat", "OTHER"), &seen));
        assert!(accept(&dev("sdb1", "exfat", "OTHER"), &seen), "asked again");
        assert!(
            !accept(&dev("sdc1", "vfat", "MORE"), &seen),
            "not looked into"
        );
        assert_eq!(*looked.borrow(), ["/dev/vda", "/dev/sda1", "/dev/sdb1"]);
        let s: Vec<String> = skipped.borrow().values().cloned().collect();
        assert_eq!(
            s,
            ["skipped, not authentic: the ISO file on /dev/sda1: signed by other"]
        );
    }

    /// `root=/dev/X` with a key: a device that was not ready when first
    /// seen is not refused for good; once it reads, it is looked into.
    #[test]
    fn a_device_not_ready_at_first_is_looked_into_later() {
        use nixlive_formats::nixkey::SecretKey;
        let modules = RefCell::new(FakeModules::default());
        let skipped: Skipped = Rc::default();
        let key = SecretKey::from_seed("k-1", &[7; 32]).public();
        let node = "/dev/nixlive-test-nosuch-sr9";
        let mut accept = candidate(
            RootSpec::Device(node.into()),
            Cmdline::default(),
            vec![key],
            Want::Live,
            skipped.clone(),
            &modules,
        );
        let seen = Seen::default();
        let mut d = dev("nixlive-test-nosuch-sr9", "iso9660", "LIVE");
        let ready = d.probe.clone();
        d.probe = Some(Err("the drive is not ready yet".into()));
        assert!(!accept(&d, &seen));
        assert!(modules.borrow().asked.is_empty(), "nothing to mount yet");
        assert!(skipped.borrow().is_empty(), "not refused");
        d.probe = ready;
        assert!(!accept(&d, &seen));
        assert_eq!(modules.borrow().asked.len(), 1, "looked into once it reads");
        assert!(skipped.borrow()[node].contains("cannot mount it"));
    }
}

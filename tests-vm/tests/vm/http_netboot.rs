//! Netboot over HTTP (`nixlive netboot --http`, `nixlive.url=`): iPXE
//! loads kernel and the small initrd over HTTP, init brings the NIC up
//! (DHCP from QEMU's user network), fetches the manifest and the images
//! from a server on the host's loopback (10.0.2.2 in the guest) into RAM
//! and boots them. The same set served by Debian's nginx; faults from the
//! test's own server (a dropped connection, a changed byte, 404, a stalled
//! body, a server that comes up late); RAM against the in-initrd set.
//! Authenticity: a set signed with a Nix binary-cache key boots with the
//! key trusted, its images through dm-verity; an unsigned or changed
//! manifest is refused before any image is asked for.
//!
//! Run one: `cargo test -p nixlive-tests-vm --test vm http_netboot::`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nixlive_formats::Manifest;
use nixlive_testkit::nix::Nix;
use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{DemoSpec, build_demo};
use nixlive_tests_vm::boot_modes::ipxe_e1000_rom;
use nixlive_tests_vm::http_server::{Fault, Nginx, Server, free_port};
use nixlive_tests_vm::http_sets::{self, url};
use nixlive_tests_vm::{BootRun, QemuCommand, Vm, boot_command_to_report, checks, kvm, media};

const TIMEOUT: Duration = Duration::from_secs(300);
/// The initrd of the `--http` set, with the `net` module set, stays under this.
const MAX_INITRD: u64 = 5_000_000;

struct Fixture {
    /// The `--http` set, its script naming `base_port`.
    http: PathBuf,
    /// The in-initrd netboot set of the same system, for the RAM comparison.
    in_initrd: PathBuf,
    /// Reserved for the iPXE test's server: the set's `--base-url` names it.
    base: Mutex<Option<TcpListener>>,
    base_port: u16,
    manifest: Manifest,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // A static is never dropped: its media live under target/, replaced
        // on the next run, not in a temporary directory left behind.
        let dir = media::work_dir("http-netboot").unwrap_or_else(|e| panic!("{e}"));
        let base = TcpListener::bind("127.0.0.1:0").expect("loopback port");
        let base_port = base.local_addr().unwrap().port();
        let started = Instant::now();
        let mut spec = DemoSpec::new(Arch::X86_64, "NIXLIVE_HTTP");
        spec.netboot = true;
        spec.netboot_args = vec![
            "--http".into(),
            "--base-url".into(),
            format!("http://10.0.2.2:{base_port}/"),
        ];
        let http = build_demo(&dir.join("http"), &spec)
            .unwrap_or_else(|e| panic!("{e}"))
            .netboot
            .expect("netboot set");
        spec.netboot_args.clear();
        let in_initrd = build_demo(&dir.join("plain"), &spec)
            .unwrap_or_else(|e| panic!("{e}"))
            .netboot
            .expect("netboot set");
        eprintln!("sets built in {:.1?}", started.elapsed());
        let text = std::fs::read_to_string(http.join("nixlive.manifest")).expect("manifest");
        Fixture {
            http,
            in_initrd,
            base: Mutex::new(Some(base)),
            base_port,
            manifest: Manifest::parse(&text).expect("manifest parses"),
        }
    })
}

/// The set's command line with `nixlive.url=` replaced by `url` (and `more`).
fn cmdline(set: &Path, url: Option<&str>, more: &str) -> String {
    http_sets::cmdline(set, url, more).unwrap_or_else(|e| panic!("{e}"))
}

/// The set's kernel and initrd booted directly, a virtio NIC on QEMU's user network.
fn direct(set: &Path, append: &str, mem_mib: u32) -> QemuCommand {
    http_sets::direct(Arch::X86_64, set, append, mem_mib, kvm::accel())
}

fn image_path(f: &Fixture) -> String {
    format!("/{}", f.manifest.images[0].name)
}

/// Booted over HTTP: the images (with their hash trees, the builder's
/// default) through dm-verity over loop devices on the images tmpfs,
/// hashed while fetched; the lease in stage1.json.
fn assert_fetched(run: &BootRun) {
    assert_fetched_on(run, "x86_64")
}

fn assert_fetched_on(run: &BootRun, arch: &str) {
    let r = &run.report;
    checks::live_system(r, arch).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        r.mount("/iso").is_none(),
        "an HTTP boot mounted /iso\n{r:#?}"
    );
    let img = r.mount("/nix/.ro-store").expect("no image mount");
    assert!(
        img.source.starts_with("/dev/dm-"),
        "the image is not read through dm-verity: {}",
        img.source
    );
    let t = r.stage1.as_ref().expect("stage1.json");
    assert!(!t.images.is_empty(), "stage1.json names no image: {t:?}");
    for i in &t.images {
        assert_eq!(
            i.check, "sha256 while fetching, then dm-verity",
            "{}: {t:?}",
            i.name
        );
    }
    let net: std::collections::BTreeMap<&str, &str> = t
        .net
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(net.get("method"), Some(&"dhcp"), "{net:?}");
    assert_eq!(net.get("address"), Some(&"10.0.2.15/24"), "{net:?}");
    assert_eq!(net.get("gateway"), Some(&"10.0.2.2"), "{net:?}");
    assert!(
        net.contains_key("interface") && net.contains_key("lease_s"),
        "{net:?}"
    );
    let phases: Vec<String> = r.stage1_phases().into_iter().map(|p| p.0).collect();
    for p in ["network", "fetch-manifest", "fetch-images", "mount-store"] {
        assert!(phases.iter().any(|x| x == p), "no phase {p}: {phases:?}");
    }
}

fn mem_available_kib(log: &str) -> u64 {
    http_sets::mem_available_kib(log)
        .unwrap_or_else(|| panic!("init logged no MemAvailable:\n{log}"))
}

/// The acceptance path: the NIC's iPXE ROM gets `http://.../netboot.ipxe`
/// from DHCP, loads kernel and initrd over HTTP, and init fetches the rest
/// from the same server.
#[test]
fn ipxe_boots_the_http_set() {
    let f = fixture();
    let initrd = std::fs::metadata(f.http.join("initrd")).unwrap().len();
    eprintln!("--http initrd: {initrd} bytes (net module set included)");
    assert!(initrd < MAX_INITRD, "initrd is {initrd} bytes");
    let listener = f.base.lock().unwrap().take().expect("the base port, once");
    let server = Server::start(listener, &f.http, Vec::new());
    let netdev = format!(
        "user,id=net0,bootfile=http://10.0.2.2:{}/netboot.ipxe",
        f.base_port
    );
    let mut nic = std::ffi::OsString::from("e1000,netdev=net0,romfile=");
    nic.push(ipxe_e1000_rom());
    let cmd = Arch::X86_64
        .qemu(kvm::accel())
        .arg("-netdev")
        .arg(netdev)
        .arg("-device")
        .arg(nic)
        .arg("-boot")
        .arg("n");
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_fetched(&run);
    let paths: Vec<String> = server.requests().into_iter().map(|s| s.path).collect();
    for p in ["/netboot.ipxe", "/bzImage", "/initrd", "/nixlive.manifest"] {
        assert!(paths.iter().any(|x| x == p), "no GET {p}: {paths:?}");
    }
    assert!(paths.contains(&image_path(f)), "{paths:?}");
    let log = run.serial_log.replace('\r', "");
    assert!(log.contains("fetching: 100%"), "no progress line:\n{log}");
    assert!(log.contains(", sha256 verified"), "{log}");
}

/// Debian's nginx, configured from the project, serves the directory as it is.
#[test]
fn nginx_serves_the_set_unchanged() {
    let f = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(&f.http, scratch.path()).unwrap_or_else(|e| panic!("{e}"));
    let cmd = direct(&f.http, &cmdline(&f.http, Some(&url(nginx.port)), ""), 1024);
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_fetched(&run);
    let log = nginx.access_log();
    assert!(
        log.contains("GET /nixlive.manifest HTTP/1.1\" 200"),
        "{log}"
    );
    assert!(
        log.contains(&format!("GET {} HTTP/1.1\" 200", image_path(f))),
        "{log}"
    );
}

/// The first transfer of the image breaks at 50%: init resumes with Range
/// from where it was, says so, and boots.
#[test]
fn a_dropped_transfer_resumes_with_range() {
    let f = fixture();
    let img = image_path(f);
    let server = Server::serve(&f.http, vec![Fault::DropAtHalf(img.clone())]);
    let cmd = direct(
        &f.http,
        &cmdline(&f.http, Some(&url(server.port)), ""),
        1024,
    );
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_fetched(&run);
    let half = f.manifest.images[0].size / 2;
    let ranges: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|s| s.path == img)
        .map(|s| s.range)
        .collect();
    assert_eq!(ranges, [None, Some(format!("bytes={half}-"))]);
    let log = run.serial_log.replace('\r', "");
    assert!(
        log.contains(&format!("resuming with Range from byte {half}")),
        "{log}"
    );
}

/// Boots `append` expecting stage 1 to fail; returns the console's failure text.
fn fails(set: &Path, append: &str) -> (Vm, String) {
    let vm = Vm::spawn(&direct(set, append, 1024), TIMEOUT).unwrap();
    let console = vm
        .wait_for_stage1_failure(TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    (vm, console)
}

/// One byte changed in transit: refused, naming the image and its URL.
#[test]
fn a_changed_byte_is_refused() {
    let f = fixture();
    let img = image_path(f);
    let server = Server::serve(&f.http, vec![Fault::FlipByte(img.clone())]);
    let (vm, console) = fails(&f.http, &cmdline(&f.http, Some(&url(server.port)), ""));
    let want = format!(
        "{}: http://10.0.2.2:{}{img} has sha256 ",
        f.manifest.images[0].name, server.port
    );
    for w in [want.as_str(), "but the manifest says", "refused"] {
        assert!(console.contains(w), "{}", vm.failure(format!("no {w:?}")));
    }
}

#[test]
fn a_missing_image_is_404() {
    let f = fixture();
    let img = image_path(f);
    let server = Server::serve(&f.http, vec![Fault::NotFound(img.clone())]);
    let (vm, console) = fails(&f.http, &cmdline(&f.http, Some(&url(server.port)), ""));
    let want = format!("http://10.0.2.2:{}{img}: HTTP 404 Not Found", server.port);
    assert!(
        console.contains(&want),
        "{}",
        vm.failure(format!("no {want:?}"))
    );
}

/// A body that stops moving: init gives up after nixlive.net_timeout=.
#[test]
fn a_stalled_body_gives_up() {
    let f = fixture();
    let img = image_path(f);
    let server = Server::serve(&f.http, vec![Fault::Stall(img.clone())]);
    let append = cmdline(&f.http, Some(&url(server.port)), "nixlive.net_timeout=8");
    let (vm, console) = fails(&f.http, &append);
    for w in ["the transfer stalled (no byte for 8.0 s)", "gave up after"] {
        assert!(console.contains(w), "{}", vm.failure(format!("no {w:?}")));
    }
    // Resumed from where it stalled, not from the start.
    let resumed = server
        .requests()
        .into_iter()
        .filter(|s| s.path == img)
        .any(|s| s.range.is_some());
    assert!(resumed, "{:?}", server.requests());
}

/// The server answers only 10 s after init first asks it: refused
/// connections are retried with backoff within the budget, and the boot
/// goes on.
#[test]
fn a_server_that_comes_up_late_is_waited_for() {
    let f = fixture();
    let port = free_port();
    let cmd = direct(&f.http, &cmdline(&f.http, Some(&url(port)), ""), 1024);
    let vm = Vm::spawn(&cmd, TIMEOUT).unwrap();
    vm.wait_for("phase fetch-manifest: start", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let server = Server::serve_later(&f.http, port, Duration::from_secs(10));
    vm.wait_for(nixlive_tests_vm::report::END, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = vm.serial_log().replace('\r', "");
    let report = nixlive_tests_vm::report::parse(&log).unwrap_or_else(|e| panic!("{e}"));
    checks::live_system(&report, "x86_64").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        log.contains(&format!("cannot connect to 10.0.2.2:{port}")),
        "{log}"
    );
    let fetched = nixlive_tests_vm::media::init_stamp(&log, "fetched the manifest").unwrap();
    let asked = nixlive_tests_vm::media::init_stamp(&log, "phase fetch-manifest: start").unwrap();
    eprintln!(
        "the manifest came {:.1} s after init first asked",
        fetched - asked
    );
    assert!(fetched - asked >= 9.0, "{log}");
    assert!(!server.requests().is_empty());
}

/// RAM at the start of stage 2: the images fetched into a tmpfs cost no
/// more than the same images riding in the initrd (within 32 MiB).
#[test]
fn ram_at_stage_2_matches_the_in_initrd_set() {
    let f = fixture();
    let server = Server::serve(&f.http, Vec::new());
    let http = boot_command_to_report(
        &direct(
            &f.http,
            &cmdline(&f.http, Some(&url(server.port)), ""),
            1024,
        ),
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plain = boot_command_to_report(
        &direct(&f.in_initrd, &cmdline(&f.in_initrd, None, ""), 1024),
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (h, p) = (
        mem_available_kib(&http.serial_log),
        mem_available_kib(&plain.serial_log),
    );
    eprintln!("MemAvailable at stage 2: over HTTP {h} kB, in-initrd set {p} kB");
    assert!(h + 32 * 1024 >= p, "over HTTP {h} kB, in the initrd {p} kB");
}

/// The plain case on aarch64 (`virt`, TCG): the `--http` set's kernel and
/// initrd given directly (QEMU has no aarch64 iPXE ROM), the images
/// fetched by init over a virtio NIC.
#[test]
fn aarch64_fetches_the_http_set() {
    let tmp = tempfile::Builder::new()
        .prefix("nixlive-http-arm64-")
        .tempdir()
        .unwrap();
    let mut spec = DemoSpec::new(Arch::Aarch64, "NIXLIVE_HTTP_ARM");
    spec.netboot = true;
    spec.netboot_args = vec![
        "--http".into(),
        "--base-url".into(),
        "http://unused/".into(),
    ];
    let set = build_demo(tmp.path(), &spec)
        .unwrap_or_else(|e| panic!("{e}"))
        .netboot
        .expect("netboot set");
    let server = Server::serve(&set, Vec::new());
    let append = cmdline(&set, Some(&url(server.port)), "");
    let cmd = http_sets::direct(Arch::Aarch64, &set, &append, 1024, kvm::accel());
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_fetched_on(&run, "aarch64");
    let paths: Vec<String> = server.requests().into_iter().map(|s| s.path).collect();
    assert!(paths.iter().any(|p| p == "/nixlive.manifest"), "{paths:?}");
}

/// 512 MiB of images (incompressible ballast in the system's closure) boot
/// in a 1 GiB VM: each image is in RAM once, in the tmpfs it is mounted from.
/// (Fetched images keep copytoram's 256 MiB reserve free: 600 MiB, as this
/// test once held, no longer fit beside it in the 840 MiB such a VM has.)
#[test]
fn a_1_gib_vm_boots_512_mib_of_images() {
    const BALLAST: usize = 512 << 20;
    let tmp = tempfile::Builder::new()
        .prefix("nixlive-http-512-")
        .tempdir()
        .unwrap();
    let mut spec = DemoSpec::new(Arch::X86_64, "NIXLIVE_HTTP_512");
    spec.netboot = true;
    spec.netboot_args = vec![
        "--http".into(),
        "--base-url".into(),
        "http://unused/".into(),
    ];
    let demo = nixlive_tests_vm::artifacts::build_demo_with(tmp.path(), &spec, &|root, system| {
        http_sets::ballast(root, system, BALLAST)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let set = demo.netboot.expect("netboot set");
    let total = http_sets::images_total(&set).unwrap_or_else(|e| panic!("{e}"));
    assert!(total >= BALLAST as u64, "images total {total} bytes");
    let server = Server::serve(&set, Vec::new());
    let cmd = direct(&set, &cmdline(&set, Some(&url(server.port)), ""), 1024);
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_fetched(&run);
    let avail = mem_available_kib(&run.serial_log);
    eprintln!(
        "images {} MiB in a 1 GiB VM: MemAvailable at stage 2 {} MiB",
        total >> 20,
        avail >> 10
    );
}

const KEY: &str = "nixlive-http-test-1";

/// A `--http` set signed with a Nix binary-cache key (made by
/// `nix-store --generate-binary-cache-key`, run hermetically) whose initrd
/// trusts it; and copies of it served with the manifest unsigned, and with
/// one byte of the manifest changed (a digit of the image's sha256).
struct Signed {
    good: PathBuf,
    unsigned: PathBuf,
    changed: PathBuf,
}

fn signed() -> &'static Signed {
    static S: OnceLock<Signed> = OnceLock::new();
    S.get_or_init(|| {
        let work = media::work_dir("http-signed").unwrap_or_else(|e| panic!("{e}"));
        let dir = work.as_path();
        let nix = Nix::new(dir);
        let (secret, public) = (dir.join("key.secret"), dir.join("key.public"));
        let status = nix
            .command("nix-store")
            .args(["--generate-binary-cache-key", KEY])
            .arg(&secret)
            .arg(&public)
            .status()
            .expect("running nix-store");
        assert!(
            status.success(),
            "nix-store --generate-binary-cache-key: {status}"
        );
        let mut spec = DemoSpec::new(Arch::X86_64, "NIXLIVE_HTTP_SIGNED");
        spec.netboot = true;
        spec.netboot_args = vec![
            "--http".into(),
            "--base-url".into(),
            "http://unused/".into(),
        ];
        spec.builder_args = vec![
            "--sign-key".into(),
            secret.display().to_string(),
            "--trusted-key".into(),
            public.display().to_string(),
        ];
        let good = build_demo(&dir.join("good"), &spec)
            .unwrap_or_else(|e| panic!("{e}"))
            .netboot
            .expect("netboot set");
        let copy = |name: &str, change: &dyn Fn(&str) -> String| -> PathBuf {
            let to = dir.join(name);
            std::fs::create_dir_all(&to).unwrap();
            for e in std::fs::read_dir(&good).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
            let m = to.join("nixlive.manifest");
            let text = std::fs::read_to_string(&m).unwrap();
            let new = change(&text);
            assert_ne!(new, text, "{name}: the manifest did not change");
            std::fs::write(&m, new).unwrap();
            to
        };
        let unsigned = copy("unsigned", &|t| {
            nixlive_formats::manifest::signed_part(t).to_string()
        });
        let changed = copy("changed", &|t| {
            let i = t.find("sha256:").expect("no sha256 in the manifest") + 7;
            let mut b = t.as_bytes().to_vec();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            String::from_utf8(b).unwrap()
        });
        Signed {
            good,
            unsigned,
            changed,
        }
    })
}

/// The signed set with its key trusted: the manifest's signature named in
/// the log, every image through dm-verity.
#[test]
fn a_signed_set_boots_with_its_key_trusted() {
    let s = signed();
    let server = Server::serve(&s.good, Vec::new());
    let cmd = direct(
        &s.good,
        &cmdline(&s.good, Some(&url(server.port)), ""),
        1024,
    );
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_fetched(&run);
    let log = run.serial_log.replace('\r', "");
    let want = format!(
        "manifest {} signed by the trusted key {KEY}",
        url(server.port)
    );
    assert!(log.contains(&want), "no {want:?}:\n{log}");
}

/// A manifest the trusted key did not sign is refused, naming the key and
/// the URL, and no image is asked for.
fn refused_before_any_image(set: &Path, why: &str) {
    let server = Server::serve(set, Vec::new());
    let (vm, console) = fails(set, &cmdline(set, Some(&url(server.port)), ""));
    let u = url(server.port);
    for w in [
        format!("served over HTTP at {u} is not authentic: its manifest {u}: "),
        why.to_string(),
    ] {
        assert!(console.contains(&w), "{}", vm.failure(format!("no {w:?}")));
    }
    let paths: Vec<String> = server.requests().into_iter().map(|s| s.path).collect();
    assert!(
        !paths.is_empty() && paths.iter().all(|p| p == "/nixlive.manifest"),
        "requests other than the manifest: {paths:?}"
    );
}

#[test]
fn an_unsigned_manifest_is_refused_before_any_image() {
    refused_before_any_image(
        &signed().unsigned,
        &format!("it is not signed, and the initrd trusts only {KEY}"),
    );
}

#[test]
fn a_changed_manifest_is_refused_before_any_image() {
    refused_before_any_image(
        &signed().changed,
        &format!("its signature by the trusted key {KEY} does not match its contents"),
    );
}

//! The post-boot agent in a booted demo system (x86_64, CD, TCG): with an
//! SSH key on the kernel command line (`nixlive.ssh_key="..."`), stage 2
//! must report the store registered in Nix's database (native loader), the
//! system profile's links, and root's key file with its modes and owner.

use std::time::Duration;

use nixlive_tests_vm::arch::Arch;
use nixlive_tests_vm::artifacts::{self, DemoSpec};
use nixlive_tests_vm::run_to_report;

/// TCG on this machine; KVM, where it works, is far quicker.
const TIMEOUT: Duration = Duration::from_secs(240);

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI vmtest@nixlive";
const INITRD_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn0ZBqgYy8u9o0k7G4hI6pB2Yc9c0vKQ2bB1Xr8c2Qm initrd@nixlive";

#[test]
fn postboot_registers_store_sets_profile_installs_key() {
    let tmp = tempfile::Builder::new()
        .prefix("nixlive-postboot-vm-")
        .tempdir()
        .unwrap();
    let mut spec = DemoSpec::new(Arch::X86_64, "NIXLIVE_PB");
    let extra = format!("nixlive.ssh_key=\"{KEY}\"");
    spec.append = if spec.append.is_empty() {
        extra
    } else {
        format!("{} {extra}", spec.append)
    };
    // A second key comes through the initrd (builder --authorized-keys).
    let keys_file = tmp.path().join("authorized_keys");
    std::fs::write(
        &keys_file,
        format!("# packed by the builder\n{INITRD_KEY}\n"),
    )
    .unwrap();
    spec.authorized_keys = Some(keys_file);
    let iso = artifacts::build_demo(tmp.path(), &spec).unwrap_or_else(|e| panic!("{e}"));
    let cfg = std::fs::read_to_string(iso.medium.join("isolinux/isolinux.cfg")).unwrap();
    assert!(cfg.contains(KEY), "the key is not on the boot line:\n{cfg}");

    let r = run_to_report(&iso.iso, TIMEOUT).unwrap();
    let ctx = format!("{r:#?}");
    let out = r.postboot_out.join("\n");
    eprintln!("postboot in the guest (exit {}):\n{out}", r.postboot_exit);
    for (path, info) in r
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("/nix/var") || p.starts_with("/root"))
    {
        eprintln!("file {path} {info:?}");
    }
    assert_eq!(r.postboot_exit, 0, "postboot failed\n{ctx}");

    // Registration: every path of the image, natively, into Nix's database.
    assert!(
        r.postboot_out
            .iter()
            .any(|l| l.starts_with("postboot: registration: loaded ")
                && l.ends_with("from /nix/store/nix-path-registration with the native loader")),
        "registration not loaded:\n{out}\n{ctx}"
    );
    let file = |p: &str| {
        r.files
            .get(p)
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{p} missing\n{ctx}"))
    };
    let db = file("/nix/var/nix/db/db.sqlite");
    assert_eq!(
        (db.kind.as_str(), db.mode, db.uid),
        ("regular", 0o644, 0),
        "{ctx}"
    );
    assert_eq!(file("/nix/var/nix/db/schema").kind, "regular", "{ctx}");

    // Profile: system -> system-1-link -> the demo system.
    assert!(
        out.contains(&format!(
            "postboot: profile: /nix/var/nix/profiles/system -> /nix/var/nix/profiles/system-1-link -> {} (generation 1, new, system from init= on the kernel command line)",
            iso.system
        )),
        "profile not set:\n{out}\n{ctx}"
    );
    assert_eq!(
        file("/nix/var/nix/profiles/system").kind,
        "symlink",
        "{ctx}"
    );
    assert_eq!(
        file("/nix/var/nix/profiles/system-1-link").kind,
        "symlink",
        "{ctx}"
    );

    // SSH: root's key file, private, root's.
    assert!(
        out.contains("postboot: ssh: /root/.ssh/authorized_keys: added 2 key(s) (root; from kernel command line: 1")
            && out.contains("/run/nixlive/authorized_keys: 1"),
        "keys not installed from both the command line and the initrd:\n{out}\n{ctx}"
    );
    let dir = file("/root/.ssh");
    assert_eq!(
        (dir.kind.as_str(), dir.mode, dir.uid, dir.gid),
        ("directory", 0o700, 0, 0),
        "{ctx}"
    );
    let keys = file("/root/.ssh/authorized_keys");
    assert_eq!(
        (keys.kind.as_str(), keys.mode, keys.uid, keys.gid),
        ("regular", 0o600, 0, 0),
        "{ctx}"
    );
    assert_eq!(file("/etc/NIXOS").kind, "regular", "{ctx}");
    assert!(out.contains("postboot: done, "), "{out}\n{ctx}");
}

/// A `nixos` user with an empty password, as the demo's stage 2 writes it
/// before postboot (as NixOS's installer activation does).
fn assert_live_password(r: &nixlive_formats::report::Report, scheme: &str, secret: &str) {
    let ctx = format!("{r:#?}");
    let out = r.postboot_out.join("\n");
    assert_eq!(r.postboot_exit, 0, "postboot failed\n{ctx}");
    assert_eq!(
        r.passwords.get("nixos").map(String::as_str),
        Some(scheme),
        "nixos's password scheme\n{ctx}"
    );
    assert_eq!(
        r.passwords.get("root").map(String::as_str),
        Some("locked"),
        "{ctx}"
    );
    assert!(
        !ctx.contains(secret),
        "the secret reached the report\n{ctx}"
    );
    assert!(
        out.contains("postboot: live-password: nixos's password set from "),
        "{out}"
    );
    // Written in place of the file: mode and owner as they were (0600 root).
    let shadow = r
        .files
        .get("/etc/shadow")
        .cloned()
        .flatten()
        .expect("/etc/shadow");
    assert_eq!(
        (shadow.mode, shadow.uid, shadow.gid),
        (0o600, 0, 0),
        "{ctx}"
    );
}

/// `live.nixos.passwd=` (NixOS's installer documents it for SSH into the
/// live system) on the BIOS CD: ISOLINUX passes the quoted value as it is.
#[test]
fn live_password_in_clear_becomes_sha512_crypt() {
    let tmp = tempfile::Builder::new()
        .prefix("nixlive-livepw-vm-")
        .tempdir()
        .unwrap();
    let mut spec = DemoSpec::new(Arch::X86_64, "NIXLIVE_PW");
    spec.append = "\"live.nixos.passwd=open sesame=1\"".into();
    let iso = artifacts::build_demo(tmp.path(), &spec).unwrap_or_else(|e| panic!("{e}"));
    let r = run_to_report(&iso.iso, TIMEOUT).unwrap();
    assert_live_password(&r, "sha512-crypt", "open sesame");
    assert!(
        r.postboot_out.iter().any(|l| l
            == "postboot: live-password: nixos's password set from live.nixos.passwd (sha512-crypt) in /etc/shadow"),
        "{:#?}",
        r.postboot_out
    );
}

/// `live.nixos.passwordHash=` (the nixpkgs netboot test passes one) on the
/// UEFI CD: GRUB must hand the `$`s to the kernel unexpanded, and the hash
/// (yescrypt here, which postboot does not make itself) reaches the shadow
/// file as given.
#[test]
fn live_password_hash_through_grub() {
    use nixlive_tests_vm::boot_command_to_report;
    use nixlive_tests_vm::boot_modes::BootMode;
    use nixlive_tests_vm::kvm;
    use nixlive_tests_vm::qemu::QemuCommand;

    // mkpasswd -m yescrypt's format ($y$ params $ salt $ hash).
    const HASH: &str = "$y$j9T$Q1ZyqU5Mlr0dFQbnhnxbf/$xLrQ2w4Fi0ygeEF2eTpJv7sTfFQytN5AGqTyBwm9FsA";
    let tmp = tempfile::Builder::new()
        .prefix("nixlive-livepwh-vm-")
        .tempdir()
        .unwrap();
    let mut spec = DemoSpec::new(Arch::X86_64, "NIXLIVE_PWH");
    spec.append = format!("live.nixos.passwordHash={HASH}");
    let iso = artifacts::build_demo(tmp.path(), &spec).unwrap_or_else(|e| panic!("{e}"));
    let cmd = QemuCommand::x86_64_boot(BootMode::UefiCd, &iso.iso, kvm::accel(), tmp.path());
    let run = boot_command_to_report(&cmd, TIMEOUT).unwrap();
    assert!(
        run.serial_log
            .contains(&format!("live.nixos.passwordHash={HASH}")),
        "the kernel did not get the hash unchanged:\n{}",
        run.serial_log
    );
    assert_live_password(&run.report, "yescrypt", "xLrQ2w4Fi0yge");
    assert!(
        run.report.postboot_out.iter().any(|l| l
            == "postboot: live-password: nixos's password set from live.nixos.passwordHash (yescrypt) in /etc/shadow"),
        "{:#?}",
        run.report.postboot_out
    );
}

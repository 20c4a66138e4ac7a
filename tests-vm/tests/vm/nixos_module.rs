//! For NixOS users (issue 30): nix/module.nix, nix/package.nix, flake.nix
//! and the examples, checked with Debian's Nix (hermetic, nixlive-testkit)
//! and nixpkgs' lib alone (`../shared/nixpkgs-lib`; nixpkgs itself is not
//! here). The module and the examples are evaluated with `lib.evalModules`
//! against stubs of the NixOS modules they read (nix/tests/stubs, each
//! citing the NixOS file it mirrors); package.nix and flake.nix against a
//! stub nixpkgs whose callPackage and buildRustPackage refuse what nixpkgs
//! does not have. Then Nix builds the ISO of examples/iso.nix for real (the
//! module's own script, the host's `nixlive`, a real `exportReferencesGraph`
//! closure, a signing key that stays outside the store) and it boots.
//!
//! The test scripts are nix/tests/eval.nix, package.nix and build.nix;
//! here are the expectations.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use nixlive_testkit::nix::Nix;
use nixlive_tests_vm::artifacts::{self, workspace_root};
use nixlive_tests_vm::media;
use nixlive_tests_vm::{QemuCommand, checks, kvm};
use serde_json::Value;

/// TCG; the build by Nix comes before the boot and is not counted.
const TIMEOUT: Duration = Duration::from_secs(240);
const KEY: &str = "nixlive-nixos-test-1";
/// The root key of the examples.
const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEIaD3ZOY0tC7eKnW4Alh2jmzfjZ+aXWSfrAIPmu2SKY alice@laptop";

/// nixpkgs' lib, beside the project as CI has it (`../shared/nixpkgs-lib`,
/// the directory holding `lib/`), or beside a directory above it (a git
/// worktree one level deeper); `NIXLIVE_NIXPKGS_LIB` names another. Its
/// absence is a failure: these tests are how the NixOS module is checked
/// at all.
fn nixpkgs_lib() -> PathBuf {
    let root = workspace_root();
    let found = std::env::var_os("NIXLIVE_NIXPKGS_LIB")
        .map(PathBuf::from)
        .or_else(|| {
            root.ancestors()
                .skip(1)
                .map(|a| a.join("shared/nixpkgs-lib"))
                .find(|d| d.join("lib/default.nix").is_file())
        });
    match found {
        Some(dir) if dir.join("lib/default.nix").is_file() => dir.canonicalize().unwrap(),
        _ => panic!(
            "nixpkgs' lib is not at {}/../shared/nixpkgs-lib (nor beside a directory above; \
             the directory holding lib/, a copy of nix-community/nixpkgs.lib, or set \
             NIXLIVE_NIXPKGS_LIB): the tests of the NixOS module evaluate it with lib.evalModules",
            root.display()
        ),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `nix-instantiate --eval --strict --json FILE -A ATTR` in `root` (the
/// workspace or a copy of it); the output, successful or not.
fn instantiate(nix: &Nix, store: &Path, root: &Path, file: &str, attr: Option<&str>) -> Output {
    let mut cmd = nix.on_store("nix-instantiate", store);
    cmd.args(["--eval", "--strict", "--json"])
        .arg(root.join(file))
        .arg("--arg")
        .arg("nixpkgsLib")
        .arg(nixpkgs_lib());
    if let Some(a) = attr {
        cmd.arg("-A").arg(a);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running nix-instantiate: {e}"))
}

/// [`instantiate`] in the workspace, parsed; a failure panics with Nix's
/// words.
fn eval_json(file: &str, attr: Option<&str>) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let nix = Nix::new(tmp.path());
    let out = instantiate(
        &nix,
        &tmp.path().join("store"),
        &workspace_root(),
        file,
        attr,
    );
    assert!(out.status.success(), "evaluating {file}: {}", text(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{file} gave no JSON ({e}): {}", text(&out)))
}

/// nix/tests/eval.nix's `checks`, evaluated once for all the tests.
fn checks_json() -> &'static Value {
    static CHECKS: OnceLock<Value> = OnceLock::new();
    CHECKS.get_or_init(|| eval_json("nix/tests/eval.nix", Some("checks")))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v:#}"))
}

/// Every `.nix` file of the project (not target/, .git/, .cache/).
fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() && !p.is_symlink() {
            if !matches!(name.as_str(), "target" | ".git" | ".cache") {
                nix_files(&p, out);
            }
        } else if name.ends_with(".nix") {
            out.push(p);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let root = workspace_root();
    let mut files = Vec::new();
    nix_files(&root, &mut files);
    for want in [
        "flake.nix",
        "nix/module.nix",
        "nix/package.nix",
        "nix/lib.nix",
        "examples/iso.nix",
        "examples/netboot-http.nix",
        "examples/sd-image.nix",
    ] {
        assert!(
            files.contains(&root.join(want)),
            "{want} not found among {files:?}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let nix = Nix::new(tmp.path());
    for f in &files {
        let out = nix
            .command("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not parse: {}",
            f.display(),
            text(&out)
        );
    }
}

/// The command line of each example's output and what else the example
/// leaves: the options read from NixOS's, Hydra's products.
#[test]
fn the_examples_give_their_command_lines_and_products() {
    let ex = &checks_json()["examples"];
    let common = "--modules-dir @kernel@/lib/modules/6.1.0-test --kernel-config @kernel@/config \
                  --firmware-dir @firmware@/lib/firmware";
    let isolinux = "--isolinux-bin @syslinux@/share/syslinux/isolinux.bin \
                    --ldlinux-c32 @syslinux@/share/syslinux/ldlinux.c32 \
                    --isohdpfx @syslinux@/share/syslinux/isohdpfx.bin";

    // The ISO: installation-cd-minimal's label, modules (iso9660 as isofs)
    // and parameters (root= is the builder's), root's SSH key.
    let iso = &ex["iso"];
    let o = &iso["options"];
    assert_eq!(str_of(o, "label"), "nixos-minimal-26.11-x86_64", "{o:#}");
    assert_eq!(
        strings(&o["modules"]),
        ["squashfs", "isofs", "uas", "overlay", "loop"]
    );
    assert_eq!(strings(&o["kernelParams"]), ["boot.shell_on_fail"]);
    assert_eq!(strings(&o["authorizedKeys"]), [SSH_KEY]);
    assert_eq!(strings(&o["storeContents"]), ["@system@"]);
    assert_eq!(
        str_of(o, "squashfsCompression"),
        "zstd",
        "NixOS's default xz is not taken"
    );
    assert_eq!(str_of(o, "isoName"), "nixos-minimal-26.11-x86_64-linux.iso");
    assert_eq!(o["uefi"], Value::Bool(true));
    assert_eq!(o["verity"], Value::Bool(true));
    assert_eq!(o["signKeyFile"], Value::Null);
    assert_eq!(
        str_of(iso, "command"),
        format!(
            "nixlive iso --kernel @kernel@/bzImage {common} --module squashfs --module isofs \
             --module uas --module overlay --module loop \
             --module-set base,cd,usb,sata,virtio,nvme,mmc --init @guest@/bin/nixlive-init \
             --authorized-keys @authorized-keys@ --closure-info @closure-info@ --system @system@ \
             --append boot.shell_on_fail --image-format squashfs --squashfs-compression zstd \
             --label nixos-minimal-26.11-x86_64 --efi-arch x86_64 \
             --grub-efi-dir @grub@/lib/grub/x86_64-efi {isolinux} \
             --out $out/iso/nixos-minimal-26.11-x86_64-linux.iso \
             --outputs-json $out/nix-support/nixlive-outputs.json"
        )
    );
    assert_eq!(
        str_of(iso, "hydraBuildProducts"),
        "file iso $out/iso/nixos-minimal-26.11-x86_64-linux.iso\n"
    );

    // Netboot over HTTP: netboot.nix's modules, a signing key named by a
    // string and the public key the initrd trusts.
    let nb = &ex["netbootHttp"];
    let o = &nb["options"];
    assert_eq!(str_of(o, "label"), "NIXOS_LIVE");
    assert_eq!(strings(&o["modules"]), ["squashfs", "overlay", "loop"]);
    assert_eq!(str_of(o, "signKeyFile"), "/var/lib/nixlive/sign.key");
    assert_eq!(
        str_of(&o["netboot"], "baseUrl"),
        "http://boot.example.org/nixos"
    );
    assert_eq!(
        str_of(nb, "command"),
        format!(
            "nixlive netboot --kernel @kernel@/bzImage {common} --module squashfs \
             --module overlay --module loop --module-set base,cd,usb,sata,virtio,nvme,mmc \
             --init @guest@/bin/nixlive-init --authorized-keys @authorized-keys@ \
             --trusted-key @trusted-key-0@ --closure-info @closure-info@ --system @system@ \
             --image-format squashfs --squashfs-compression zstd \
             --sign-key /var/lib/nixlive/sign.key --http \
             --base-url http://boot.example.org/nixos --out $out \
             --outputs-json $out/nix-support/nixlive-outputs.json"
        )
    );
    assert_eq!(
        str_of(nb, "hydraBuildProducts"),
        "file kernel $out/bzImage\nfile initrd $out/initrd\nfile manifest $out/nixlive.manifest\n\
         file ipxe $out/netboot.ipxe\n"
    );
    // The build checks the key can be read, and says how to let it in.
    let script = str_of(nb, "script");
    assert!(
        script.starts_with("if ! [ -r /var/lib/nixlive/sign.key ]; then")
            && script.contains("extra-sandbox-paths"),
        "{script}"
    );

    // The SD image (aarch64): sd-image.nix's label, compression and growth,
    // the ext4 of a plain root, the consoles of sd-image-aarch64.nix.
    let sd = &ex["sdImage"];
    let o = &sd["options"];
    let d = &o["diskImage"];
    assert_eq!(str_of(d, "label"), "NIXOS_SD");
    assert_eq!(d["compress"], Value::Bool(true));
    assert_eq!(d["growRoot"], Value::Bool(true));
    assert_eq!(str_of(d, "partitionTable"), "mbr");
    assert_eq!(strings(&o["moduleSets"]), ["base", "mmc", "usb"]);
    assert_eq!(
        str_of(sd, "command"),
        format!(
            "nixlive disk-image --kernel @kernel@/Image {common} --module ext4 \
             --module-set base,mmc,usb --init @guest@/bin/nixlive-init \
             --authorized-keys @authorized-keys@ --closure-info @closure-info@ --system @system@ \
             --append 'console=ttyS0,115200n8 console=ttyAMA0,115200n8 console=tty0 nixlive.grow_root' \
             --label NIXOS_SD --partition-table mbr --out $out/sd-image/nixos-sd.img \
             --outputs-json $out/nix-support/nixlive-outputs.json"
        )
    );
    assert_eq!(
        str_of(sd, "hydraBuildProducts"),
        "file sd-image $out/sd-image/nixos-sd.img.zst\n"
    );
    assert!(
        str_of(sd, "script").contains("zstd -q -T0 --rm $out/sd-image/nixos-sd.img"),
        "{}",
        str_of(sd, "script")
    );

    // Each example says the one command that builds it.
    for (file, attr, extra) in [
        ("iso.nix", "nixliveIso", ""),
        ("netboot-http.nix", "nixliveNetbootHttp", ""),
        (
            "sd-image.nix",
            "nixliveDiskImage",
            " --argstr system aarch64-linux",
        ),
    ] {
        let text = fs::read_to_string(workspace_root().join("examples").join(file)).unwrap();
        let command = format!(
            "#   nix-build '<nixpkgs/nixos>' -A config.system.build.{attr} \
             -I nixos-config=examples/{file}{extra}\n"
        );
        assert!(text.contains(&command), "examples/{file} lacks {command:?}");
        let doc = fs::read_to_string(workspace_root().join("docs/nixos.md")).unwrap();
        assert!(
            doc.contains(command.trim_start_matches("#   ").trim_end()),
            "docs/nixos.md lacks the command of examples/{file}"
        );
    }

    for (name, e) in ex.as_object().unwrap() {
        assert_eq!(e["failedAssertions"], Value::Array(vec![]), "{name}");
        // The derivation's builder runs exactly the script shown.
        assert_eq!(e["builderRunsScript"], Value::Bool(true), "{name}");
        // The script runs the command and writes the products.
        let script = str_of(e, "script");
        assert!(script.contains(str_of(e, "command")), "{name}: {script}");
        assert!(
            script.contains("> $out/nix-support/hydra-build-products"),
            "{name}: {script}"
        );
    }
}

/// Each output of one configuration: its command, derivation name and
/// products; and nixlive's own defaults without NixOS's image modules.
#[test]
fn every_output_has_its_command_and_products() {
    let c = checks_json();
    let outs = &c["outputs"];
    let want: BTreeMap<&str, (&str, &str, &str)> = [
        (
            "nixliveIso",
            (
                "nixlive-iso",
                "nixlive iso ",
                "file iso $out/iso/nixos-minimal-26.11-x86_64-linux.iso\n",
            ),
        ),
        (
            "nixliveMedium",
            (
                "nixlive-medium",
                "nixlive medium ",
                "file manifest $out/medium/nixlive.manifest\n",
            ),
        ),
        (
            "nixliveNetboot",
            (
                "nixlive-netboot",
                "nixlive netboot ",
                "file kernel $out/bzImage\nfile initrd $out/initrd\nfile ipxe $out/netboot.ipxe\n",
            ),
        ),
        (
            "nixliveNetbootHttp",
            (
                "nixlive-netboot-http",
                "nixlive netboot ",
                "file kernel $out/bzImage\nfile initrd $out/initrd\nfile manifest $out/nixlive.manifest\n\
                 file ipxe $out/netboot.ipxe\n",
            ),
        ),
        (
            "nixliveTarball",
            (
                "nixlive-tarball",
                "nixlive tarball ",
                "file system-tarball $out/tarball/nixos-system.tar.zst\n",
            ),
        ),
        (
            "nixliveDiskImage",
            (
                "nixlive-disk-image",
                "nixlive disk-image ",
                "file sd-image $out/sd-image/nixos-sd.img\n",
            ),
        ),
    ]
    .into_iter()
    .collect();
    let got: Vec<&String> = outs.as_object().unwrap().keys().collect();
    assert_eq!(got, want.keys().collect::<Vec<_>>());
    for (name, (drv, cmd, products)) in &want {
        let o = &outs[*name];
        assert_eq!(str_of(o, "drvName"), *drv, "{name}");
        let command = str_of(o, "command");
        assert!(command.starts_with(cmd), "{name}: {command}");
        assert_eq!(str_of(o, "hydraBuildProducts"), *products, "{name}");
        let images = [
            "nixliveIso",
            "nixliveMedium",
            "nixliveNetboot",
            "nixliveNetbootHttp",
        ];
        let boot = ["nixliveIso", "nixliveMedium"];
        assert_eq!(
            command.contains("--squashfs-compression zstd"),
            images.contains(name),
            "{name}: {command}"
        );
        assert_eq!(
            command.contains("--label nixos-minimal-26.11-x86_64"),
            boot.contains(name),
            "{name}: {command}"
        );
        // A plain root is ext4 and grows on its first boot (sd-image.nix's
        // expandOnBoot).
        let plain = ["nixliveTarball", "nixliveDiskImage"];
        assert_eq!(
            command.contains("--module ext4") && command.contains("nixlive.grow_root"),
            plain.contains(name),
            "{name}: {command}"
        );
    }
    assert!(str_of(&outs["nixliveNetbootHttp"], "command").contains(" --http --out $out "));

    // No image module: nixlive's own label, name and compression; no
    // modules or parameters of NixOS's.
    let plain = &c["plain"];
    let o = &plain["options"];
    assert_eq!(str_of(o, "label"), "NIXOS_LIVE");
    assert_eq!(str_of(o, "isoName"), "nixos-live.iso");
    assert_eq!(strings(&o["modules"]), Vec::<&str>::new());
    assert_eq!(str_of(&o["diskImage"], "label"), "NIXOS_SD");
    assert_eq!(o["diskImage"]["compress"], Value::Bool(false));
    let command = str_of(plain, "command");
    assert!(
        !command.contains("--append")
            && !command.contains("--authorized-keys")
            && command.contains("--label NIXOS_LIVE ")
            && command.ends_with(
                "--out $out/iso/nixos-live.iso --outputs-json $out/nix-support/nixlive-outputs.json"
            ),
        "{command}"
    );
    // isoImage.squashfsCompression is read when a module sets it.
    assert_eq!(c["squashfsFromIsoImage"], Value::String("xz".into()));

    // Each option that changes the command line, in it.
    let v = &c["variants"];
    let has = |case: &str, parts: &[&str], absent: &[&str]| {
        let command = str_of(v, case);
        for p in parts {
            assert!(command.contains(p), "{case}: {p:?} not in {command}");
        }
        for p in absent {
            assert!(!command.contains(p), "{case}: {p:?} in {command}");
        }
    };
    has(
        "noUefiErofsLayers",
        &[
            " --module-set base --",
            " --append 'boot.shell_on_fail copytoram' ",
            " --image-format erofs --max-image-size 1G --no-verity ",
            " --no-uefi --isolinux-bin ",
        ],
        &["--squashfs-compression", "--efi-arch", "--grub-efi-dir"],
    );
    has(
        "aarch64",
        &[
            "nixlive iso --kernel @kernel@/Image ",
            " --efi-arch aarch64 --grub-efi-dir @grub@/lib/grub/arm64-efi ",
        ],
        &["--no-uefi"],
    );
    has(
        "i686",
        &[" --no-uefi --isolinux-bin "],
        &["--efi-arch", "--grub-efi-dir"],
    );
    has(
        "gptDiskOfASize",
        &[
            " --append boot.shell_on_fail --label NIXOS_SD --partition-table gpt --size 8G \
             --out $out/sd-image/usb.img ",
        ],
        &["nixlive.grow_root"],
    );
}

/// nixlive-postboot takes the place of the image modules' registration in
/// boot.postBootCommands and runs first; other lines stay; without
/// `nixlive.enable` nothing changes and there are no outputs.
#[test]
fn postboot_replaces_the_registration_of_the_image_modules() {
    let c = checks_json();
    let load_db = "/bin/nix-store --load-db < /nix/store/nix-path-registration";
    let set_profile = "/bin/nix-env -p /nix/var/nix/profiles/system --set /run/current-system";
    for ex in ["iso", "netbootHttp"] {
        let cmds = str_of(&c["examples"][ex], "postBootCommands");
        assert!(
            cmds.starts_with("@guest@/bin/nixlive-postboot\n"),
            "{ex}:\n{cmds}"
        );
        for gone in [load_db, set_profile, "touch /etc/NIXOS"] {
            assert!(!cmds.contains(gone), "{ex} still has {gone:?}:\n{cmds}");
        }
    }
    let iso = str_of(&c["examples"]["iso"], "postBootCommands");
    assert!(
        iso.contains("touch /var/lib/nixos/did-channel-init"),
        "channel.nix's line is gone:\n{iso}"
    );
    // The SD image's first-boot block finds /nix-path-registration gone
    // (postboot loaded and removed it) and is skipped.
    let sd = str_of(&c["examples"]["sdImage"], "postBootCommands");
    assert!(sd.starts_with("@guest@/bin/nixlive-postboot\n"), "{sd}");
    assert!(
        sd.contains("if [ -f /nix-path-registration ]; then"),
        "{sd}"
    );

    let off = &c["disabled"];
    assert_eq!(off["outputs"], Value::Array(vec![]));
    let cmds = str_of(off, "postBootCommands");
    assert!(
        !cmds.contains("nixlive-postboot")
            && cmds.contains(&format!("@nix@{load_db}"))
            && cmds.contains(&format!("@nix@{set_profile}"))
            && cmds.contains("touch /etc/NIXOS"),
        "{cmds}"
    );
}

/// Configurations that cannot work get the module's own messages, and
/// their outputs refuse to evaluate.
#[test]
fn impossible_configurations_get_the_modules_messages() {
    let c = checks_json();
    let want: &[(&str, &str)] = &[
        (
            "signKeyIsANixPath",
            "nixlive.signKeyFile is the Nix path /", // then the file, absolute
        ),
        (
            "signKeyIsRelative",
            "nixlive.signKeyFile \"keys/sign.key\" is not an absolute path: the key is read by the build, from the build machine.",
        ),
        (
            "signKeyIsInTheStore",
            "nixlive.signKeyFile \"/nix/store/00000000000000000000000000000000-sign.key\" is in the Nix store, where every user can read it: keep the secret key outside the store.",
        ),
        (
            "trustedKeysWithoutSigning",
            "nixlive.trustedKeys is set but nixlive.signKeyFile is not: the initrd would boot only a medium signed by live.example.org-1, and this one would not be signed, so it could never boot.",
        ),
        (
            "trustedKeyNotAKey",
            "nixlive.trustedKeys holds \"ssh-ed25519 AAAA\", which is not a Nix public key (NAME:BASE64 of 32 bytes, the second file of nix-store --generate-binary-cache-key).",
        ),
        (
            "trustedKeyTooShort",
            "nixlive.trustedKeys holds \"live.example.org-1:c2l4dGVlbiBieXRlcyBvZiBrZXkgbWF0ZXJpYWwhIQ==\", which is not a Nix public key",
        ),
        (
            "labelTooLong",
            "nixlive.label \"NIXOS_LIVE_MEDIUM_WITH_A_LONG_NAME\" is not an ISO 9660 volume label: at most 32 characters of A-Z a-z 0-9 _ - . (it is also root=LABEL= and GRUB's search label).",
        ),
        (
            "labelWithASpace",
            "nixlive.label \"NIXOS LIVE\" is not an ISO 9660 volume label",
        ),
        (
            "diskLabelTooLong",
            "nixlive.diskImage.label \"NIXOS_SD_CARD_ROOT\" is not an ext4 label: at most 16 characters",
        ),
        (
            "maxImageSizeNotASize",
            "nixlive.maxImageSize \"4 GB\" is not a size: bytes, or a number with K, M, G or T (binary), such as \"4095M\".",
        ),
        (
            "lzoFromIsoImage",
            "nixlive.squashfsCompression is \"lzo\" (from isoImage.squashfsCompression when that is set), which nixlive does not write",
        ),
        (
            "moduleWithASpace",
            "nixlive.modules holds \"virtio blk\": a kernel module name has only letters, digits, - and _.",
        ),
        (
            "baseUrlNotHttp",
            "nixlive.netboot.baseUrl \"tftp://boot.example.org/\" is not an http:// or https:// URL.",
        ),
        (
            "uefiOnI686",
            "nixlive.uefi is true on i686, for which nixlive has no UEFI boot (no 32-bit GRUB): set nixlive.uefi = false; the ISO boots by BIOS.",
        ),
        (
            "noUefiOnAarch64",
            "nixlive.uefi is false on aarch64-linux, where an ISO boots only through UEFI (ISOLINUX is x86 only).",
        ),
        (
            "unknownPlatform",
            "nixlive: riscv64-linux is not a platform nixlive builds media for (x86_64, i686 and aarch64 are).",
        ),
    ];
    let got = c["impossible"].as_object().unwrap();
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (case, message) in want {
        let msgs = strings(&got[*case]);
        assert!(
            msgs.len() == 1 && msgs[0].starts_with(message),
            "{case}: want one message starting {message:?}, got {msgs:#?}"
        );
    }
    // The Nix path is named, and was not copied into the store for it.
    let m = strings(&got["signKeyIsANixPath"])[0];
    assert!(
        m.contains("nix/tests/eval.nix, which Nix would copy into the world-readable store")
            && !m.contains("/nix/store/"),
        "{m}"
    );
    for (case, refused) in c["refused"].as_object().unwrap() {
        assert_eq!(refused, &Value::Bool(true), "{case}: the output evaluated");
    }
}

/// A value of the wrong type fails the evaluation naming the option and
/// what it wants.
#[test]
fn wrong_types_are_refused_naming_the_option() {
    let cases: &[(&str, &str)] = &[
        (
            "label",
            "option `nixlive.label' is not of type `ISO 9660 volume label (at most 32 of A-Z a-z 0-9 _ - .)'",
        ),
        (
            "moduleSet",
            "is not of type `one of \"base\", \"cd\", \"sata\", \"usb\", \"virtio\", \"nvme\", \"mmc\", \"net\", \"fs\"'",
        ),
        (
            "trustedKeys",
            "option `nixlive.trustedKeys' is not of type `list of Nix public key (NAME:BASE64)'",
        ),
        (
            "maxImageSize",
            "option `nixlive.maxImageSize' is not of type `null or size (bytes, or with K, M, G, T)'",
        ),
        (
            "signKeyFile",
            "option `nixlive.signKeyFile' is not of type `null or absolute path of a file of the build machine, as a string'",
        ),
        ("verity", "option `nixlive.verity' is not of type `boolean'"),
        (
            "kernelParam",
            "option `boot.kernelParams.\"[definition 2-entry 1]\"' is not of type `string, with spaces inside double quotes'",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let nix = Nix::new(tmp.path());
    let store = tmp.path().join("store");
    for (case, want) in cases {
        let out = instantiate(
            &nix,
            &store,
            &workspace_root(),
            "nix/tests/eval.nix",
            Some(&format!("typeError.{case}")),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case} evaluated: {}", text(&out));
        assert!(err.contains(want), "{case}: want {want:?} in:\n{err}");
    }
}

#[test]
fn the_package_and_the_flake_evaluate_with_stub_nixpkgs() {
    let v = eval_json("nix/tests/package.nix", None);
    let lock = workspace_root().join("Cargo.lock").canonicalize().unwrap();
    let lock = lock.to_str().unwrap();
    let p = &v["package"];
    assert_eq!(str_of(p, "pname"), "nixlive");
    assert_eq!(str_of(p, "mainProgram"), "nixlive");
    assert_eq!(strings(&p["cargoBuildFlags"]), ["-p", "nixlive-builder"]);
    assert_eq!(str_of(p, "lockFile"), lock);
    assert_eq!(p["wraps"], Value::Bool(true));
    assert_eq!(
        strings(&p["tools"]),
        [
            "xorriso",
            "squashfs",
            "erofs-utils",
            "grub",
            "mtools",
            "dosfstools",
            "e2fsprogs",
            "gptfdisk",
            "fakeroot",
            "xz",
            "gnutar",
            "coreutils"
        ]
    );
    // The version is the workspace's.
    let cargo = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains(&format!("version = \"{}\"", str_of(p, "version"))),
        "{p:#}"
    );
    // The guest programs: static musl, init and postboot only.
    let g = &v["guest"];
    assert_eq!(
        strings(&g["cargoBuildFlags"]),
        ["-p", "nixlive-init", "-p", "nixlive-postboot"]
    );
    assert_eq!(str_of(g, "target"), "x86_64-unknown-linux-musl");
    assert_eq!(g["static"], Value::Bool(true));

    let f = &v["flake"];
    assert_eq!(
        str_of(f, "nixpkgsUrl"),
        "github:NixOS/nixpkgs/nixos-unstable"
    );
    assert!(
        !workspace_root().join("flake.lock").exists(),
        "a flake.lock pins nixpkgs"
    );
    for system in ["x86_64-linux", "i686-linux", "aarch64-linux"] {
        assert_eq!(
            strings(&f["packages"][system]),
            [
                "default",
                "nixlive",
                "nixlive-guest",
                "nixlive-guest-aarch64",
                "nixlive-guest-i686",
                "nixlive-guest-x86_64"
            ]
        );
        assert_eq!(
            str_of(&f["nixlive"][system], "target"),
            system.replace("-linux", "-unknown-linux-gnu")
        );
        for (arch, target) in [
            ("x86_64", "x86_64-unknown-linux-musl"),
            ("i686", "i686-unknown-linux-musl"),
            ("aarch64", "aarch64-unknown-linux-musl"),
        ] {
            let guest = &f["guests"][system][arch];
            assert_eq!(str_of(guest, "target"), target, "{system} {arch}");
            assert_eq!(guest["static"], Value::Bool(true), "{system} {arch}");
        }
    }
    assert_eq!(
        PathBuf::from(str_of(f, "module")),
        workspace_root()
            .join("nix/module.nix")
            .canonicalize()
            .unwrap()
    );
    assert_eq!(f["defaultModuleIsNixlive"], Value::Bool(true));
    for func in ["args", "build", "hydraBuildProducts", "script"] {
        assert!(strings(&f["lib"]).contains(&func), "{f:#}");
    }
    assert_eq!(
        strings(&f["libArgs"]).join(" "),
        "netboot --kernel /k/bzImage --modules-dir /k/lib/modules/6.1 --module virtio_net \
         --init /g/bin/nixlive-init --closure-info /ci --system /s --image-format squashfs \
         --squashfs-compression zstd --out /out --outputs-json /out/nix-support/nixlive-outputs.json"
    );
}

/// Copies what nix/tests/package.nix and eval.nix read into `to`: nix/,
/// examples/, flake.nix, Cargo.toml, Cargo.lock, and links to the
/// workspace's members.
fn copy_project(to: &Path) {
    let root = workspace_root();
    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let t = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_dir(&p, &t);
            } else {
                fs::copy(&p, &t).unwrap();
            }
        }
    }
    copy_dir(&root.join("nix"), &to.join("nix"));
    copy_dir(&root.join("examples"), &to.join("examples"));
    for f in ["flake.nix", "Cargo.toml", "Cargo.lock"] {
        fs::copy(root.join(f), to.join(f)).unwrap();
    }
    for member in [
        "formats", "init", "postboot", "builder", "chart", "demo", "tests-vm", "testkit",
    ] {
        std::os::unix::fs::symlink(root.join(member), to.join(member)).unwrap();
    }
}

/// A misspelt name in package.nix, flake.nix or the module fails the
/// evaluation, naming it; the unchanged copy evaluates.
#[test]
fn a_typo_in_the_package_the_flake_or_the_module_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let nix = Nix::new(tmp.path());
    let store = tmp.path().join("store");
    let copy = tmp.path().join("project");
    copy_project(&copy);
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "nix/package.nix",
            "squashfsTools",
            "squashfsTool",
            "nix/tests/package.nix",
            "asks for squashfsTool, which nixpkgs does not have",
        ),
        (
            "nix/package.nix",
            "cargoBuildFlags = [",
            "cargoBuildFlag = [",
            "nix/tests/package.nix",
            "stub buildRustPackage: unknown arguments cargoBuildFlag",
        ),
        (
            "nix/package.nix",
            "cargoLock.lockFile = ../Cargo.lock;",
            "cargoLock.lockFile = ../Cargo.lok;",
            "nix/tests/package.nix",
            "Cargo.lok does not exist",
        ),
        (
            "flake.nix",
            "pkgsCross.musl64",
            "pkgsCross.musl46",
            "nix/tests/package.nix",
            "attribute 'musl46' missing",
        ),
        (
            "nix/module.nix",
            "config.boot.initrd.availableKernelModules",
            "config.boot.initrd.availableKernelModule",
            "nix/tests/eval.nix",
            "attribute 'availableKernelModule' missing",
        ),
    ];
    for (file, from, to, test, want) in cases {
        let path = copy.join(file);
        let original = fs::read_to_string(&path).unwrap();
        assert!(original.contains(from), "{file} has no {from:?}");
        // The copy as it is evaluates.
        let attr = test
            .ends_with("eval.nix")
            .then_some("checks.examples.iso.command");
        let out = instantiate(&nix, &store, &copy, test, attr);
        assert!(out.status.success(), "the unchanged copy: {}", text(&out));
        fs::write(&path, original.replace(from, to)).unwrap();
        let out = instantiate(&nix, &store, &copy, test, attr);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{file} with {to:?} evaluated: {}",
            text(&out)
        );
        assert!(
            err.contains(want),
            "{file} with {to:?}: want {want:?} in:\n{err}"
        );
        fs::write(&path, original).unwrap();
    }
}

/// What Nix built: the ISO and the build's own lists.
struct Built {
    out: PathBuf,
    /// The output's store path (`/nix/store/...`).
    store_path: String,
    iso: PathBuf,
    store: PathBuf,
    secret: String,
}

/// `nix-build nix/tests/build.nix` in the chroot store `dir/store`, signed
/// with `secret` and trusting `public`; `keys_visible` lets the keys'
/// directory into the sandbox.
fn nix_build(dir: &Path, secret: &Path, public: &Path, keys_visible: bool) -> Output {
    let nix = Nix::new(dir);
    let kernel = artifacts::kernel("amd64");
    let kernel_dir = kernel.vmlinuz.parent().unwrap().canonicalize().unwrap();
    let builder = artifacts::programs_builder().canonicalize().unwrap();
    let guest = artifacts::guest_programs()[0]
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap();
    let arg = |p: &Path| p.to_str().unwrap().to_string();
    // The builds run the host's programs (stubs/pkgs.nix): Nix's sandbox
    // (always on for a chroot store) gets /usr and what the test names,
    // and nothing else; the default list is replaced, not extended.
    let mut sandbox = vec![
        "/usr".to_string(),
        "/bin".into(),
        "/lib".into(),
        "/lib64".into(),
        arg(&builder),
        arg(&guest),
        arg(&kernel_dir),
    ];
    if keys_visible {
        sandbox.push(arg(secret.parent().unwrap()));
    }
    nix.on_store("nix-build", &dir.join("store"))
        .arg(workspace_root().join("nix/tests/build.nix"))
        .arg("--no-out-link")
        .args(["--option", "sandbox-paths", &sandbox.join(" ")])
        .arg("--arg")
        .arg("nixpkgsLib")
        .arg(nixpkgs_lib())
        .args(["--argstr", "nixlive", &arg(&builder)])
        .args(["--argstr", "guestDir", &arg(&guest)])
        .args(["--argstr", "kernelDir", &arg(&kernel_dir)])
        .args(["--argstr", "kernelVersion", &kernel.version])
        .args(["--argstr", "signKeyFile", &arg(secret)])
        .args([
            "--argstr",
            "trustedKey",
            fs::read_to_string(public).unwrap().trim(),
        ])
        .output()
        .unwrap()
}

/// A Nix key pair made by `nix-store` in `dir`: (secret, public).
fn key_pair(dir: &Path, keys: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(keys).unwrap();
    let (secret, public) = (keys.join("sign.secret"), keys.join("sign.public"));
    let out = Nix::new(dir)
        .command("nix-store")
        .args(["--generate-binary-cache-key", KEY])
        .arg(&secret)
        .arg(&public)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (secret, public)
}

/// Builds examples/iso.nix's `system.build.nixliveIso` with Nix
/// (nix/tests/build.nix) in a chroot store, signed with a key made by Nix
/// outside the store.
fn build_iso(dir: &Path) -> Built {
    let (secret, public) = key_pair(dir, &dir.join("keys"));
    let out = nix_build(dir, &secret, &public, true);
    assert!(out.status.success(), "nix-build: {}", text(&out));
    let store_path = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        store_path.starts_with("/nix/store/") && store_path.ends_with("-nixlive-iso"),
        "{store_path}"
    );
    let store = dir.join("store");
    let out_dir = store.join(store_path.trim_start_matches('/'));
    let iso = out_dir.join("iso/nixos-minimal-26.11-x86_64-linux.iso");
    assert!(iso.is_file(), "no {}", iso.display());
    let secret_text = fs::read_to_string(&secret).unwrap();
    Built {
        out: out_dir,
        store_path,
        iso,
        store,
        secret: secret_text.trim().split_once(':').unwrap().1.to_string(),
    }
}

/// `nix-store --dump-db` output as closureInfo writes it: each path's
/// deriver (its 4th line) empty, its hash (2nd line) the next of `hashes`.
fn nix_registration(dump: &str, hashes: &[&str]) -> String {
    let lines: Vec<&str> = dump.lines().collect();
    let mut out = String::new();
    let (mut i, mut path) = (0, 0);
    while i < lines.len() {
        let n: usize = lines[i + 4].parse().unwrap();
        for (k, l) in lines[i..i + 5 + n].iter().enumerate() {
            out.push_str(match k {
                1 => hashes[path],
                3 => "",
                _ => l,
            });
            out.push('\n');
        }
        i += 5 + n;
        path += 1;
    }
    assert_eq!(path, hashes.len(), "{dump}");
    out
}

/// Makes `dir` (a chroot store, whose directories Nix leaves read-only)
/// removable by any user.
fn writable(dir: &Path) {
    if dir.exists() {
        let out = std::process::Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}

/// Whether any file under `dir` holds `needle`.
fn holds(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                dirs.push(p);
            } else if m.is_file() {
                let data = fs::read(&p).unwrap();
                if data.windows(needle.len()).any(|w| w == needle) {
                    found.push(p);
                }
            }
        }
    }
    found
}

/// Nix builds the ISO of examples/iso.nix through the module's own script
/// on a real closure; its products are what the module said, the signing
/// key never entered the store, and the ISO boots from a CD: the manifest
/// signed by the trusted key, the image read through dm-verity, the
/// closure registered, root's key installed.
#[test]
fn the_iso_nix_builds_from_the_module_boots() {
    let old = workspace_root().join("target/tests-vm/nixos-module");
    writable(&old);
    let dir = media::work_dir("nixos-module").unwrap();
    let b = build_iso(&dir);
    let sp = &b.store_path;

    // Hydra's products as the module declared them, for this output.
    let declared =
        str_of(&checks_json()["examples"]["iso"], "hydraBuildProducts").replace("$out", sp);
    let products = fs::read_to_string(b.out.join("nix-support/hydra-build-products")).unwrap();
    assert_eq!(products, declared);
    // The builder's own list names the same ISO.
    let json: Value =
        serde_json::from_slice(&fs::read(b.out.join("nix-support/nixlive-outputs.json")).unwrap())
            .unwrap();
    assert_eq!(json[0]["kind"], Value::String("iso".into()), "{json}");
    assert_eq!(
        json[0]["path"],
        Value::String(format!("{sp}/iso/nixos-minimal-26.11-x86_64-linux.iso"))
    );
    assert_eq!(
        json[0]["size"].as_u64(),
        Some(fs::metadata(&b.iso).unwrap().len())
    );

    // The secret key is in no file of the store (the derivation names its
    // path, nothing more).
    let leaks = holds(&b.store.join("nix/store"), b.secret.as_bytes());
    assert!(
        leaks.is_empty(),
        "the secret key is in the store: {leaks:?}"
    );
    let drvs: Vec<PathBuf> = fs::read_dir(b.store.join("nix/store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-nixlive-iso.drv"))
        .collect();
    assert_eq!(drvs.len(), 1, "{drvs:?}");
    let drv = fs::read_to_string(&drvs[0]).unwrap();
    assert!(
        drv.contains("--sign-key") && drv.contains("/keys/sign.secret"),
        "{drv}"
    );

    // The closureInfo made from exportReferencesGraph is Nix's own view of
    // the closure: its registration is `nix-store --dump-db` of those
    // paths, derivers left empty and hashes in base 32 as closureInfo
    // has them (`nix-store -q --hash`).
    let infos: Vec<PathBuf> = fs::read_dir(b.store.join("nix/store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.to_string_lossy().ends_with("-closure-info"))
        .collect();
    assert_eq!(infos.len(), 1, "{infos:?}");
    let registration = fs::read_to_string(infos[0].join("registration")).unwrap();
    let paths = fs::read_to_string(infos[0].join("store-paths")).unwrap();
    let paths: Vec<&str> = paths.lines().collect();
    assert_eq!(
        paths.len(),
        2,
        "the system and the guest programs: {paths:?}"
    );
    let nix_store = |args: &[&str]| {
        let out = Nix::new(&dir)
            .on_store("nix-store", &b.store)
            .args(args)
            .args(&paths)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let hashes = nix_store(&["-q", "--hash"]);
    let want = nix_registration(
        &nix_store(&["--dump-db"]),
        &hashes.lines().collect::<Vec<_>>(),
    );
    assert_eq!(registration, want);

    // A key the sandbox may not read stops the build before nixlive runs,
    // naming the file and the fix (everything else is built already).
    let (hidden, hidden_public) = key_pair(&dir, &dir.join("hidden-keys"));
    let out = nix_build(&dir, &hidden, &hidden_public, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "built with a key it cannot read: {}",
        text(&out)
    );
    assert!(
        err.contains(&format!(
            "nixlive: the signing key {} cannot be read in this build.",
            hidden.display()
        )) && err.contains("to nix.settings.extra-sandbox-paths"),
        "{err}"
    );
    assert!(!err.contains("nixlive: error:"), "nixlive ran: {err}");

    // The builder's checks pass on what Nix built: the signature verified
    // with the initrd's key, the closure (system and guest) registered.
    let report = artifacts::inspect(&b.iso).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.contains(&format!(
            "signatures    {KEY} (verified with the initrd's trusted key {KEY})"
        )),
        "{report}"
    );
    assert!(
        report.contains(
            "registration  /nix/store/nix-path-registration in nix-store.squashfs: 2 paths, closed"
        ),
        "{report}"
    );
    assert!(
        report.contains("-nixos-system-nixlive-test/init"),
        "{report}"
    );

    let cmd = QemuCommand::x86_64_cdrom(&b.iso, kvm::accel());
    let booted = media::boot(&cmd, TIMEOUT).unwrap_or_else(|f| panic!("{f}"));
    let r = &booted.report;
    let ctx = booted.context();
    checks::live_system(r, "x86_64").unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    assert_eq!(
        r.mount("/iso").map(|m| m.fstype.as_str()),
        Some("iso9660"),
        "{ctx}"
    );
    assert!(
        booted.init_said(&format!("signed by the trusted key {KEY}")),
        "init did not check the signature\n{ctx}"
    );
    let image = r.mount("/nix/.ro-store").unwrap();
    assert!(image.source.starts_with("/dev/dm-"), "{image:?}\n{ctx}");
    // root's key from users.users.root.openssh.authorizedKeys, installed by
    // postboot from the initrd.
    let keys = r.files.get("/root/.ssh/authorized_keys").cloned().flatten();
    let keys = keys.unwrap_or_else(|| panic!("no /root/.ssh/authorized_keys\n{ctx}"));
    assert_eq!((keys.kind.as_str(), keys.mode), ("regular", 0o600), "{ctx}");
    // The database postboot wrote is the closure's.
    assert!(
        r.files
            .get("/nix/var/nix/db/db.sqlite")
            .cloned()
            .flatten()
            .is_some(),
        "{ctx}"
    );
    // The kernel got the label of installation-cd-minimal.nix, the
    // system's init and the example's parameters (boot.kernelParams without
    // its root=).
    let cmdline = booted
        .serial_log
        .lines()
        .find_map(|l| l.split_once("Command line: ").map(|(_, c)| c.trim()))
        .unwrap_or_else(|| panic!("no kernel command line\n{ctx}"));
    let params: Vec<&str> = cmdline.split(' ').collect();
    assert!(
        params.contains(&"root=LABEL=nixos-minimal-26.11-x86_64"),
        "{cmdline}"
    );
    assert_eq!(
        params.iter().filter(|p| p.starts_with("root=")).count(),
        1,
        "{cmdline}"
    );
    assert!(
        params
            .iter()
            .any(|p| p.starts_with("init=/nix/store/")
                && p.ends_with("-nixos-system-nixlive-test/init")),
        "{cmdline}"
    );
    assert_eq!(params.last(), Some(&"boot.shell_on_fail"), "{cmdline}");
    // Passed: the store (the kernel's copy is most of its 400 MB) goes; a
    // failing run leaves it for a look.
    writable(&dir);
    fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
}

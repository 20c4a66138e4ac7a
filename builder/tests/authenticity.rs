//! Host tests of signing and dm-verity (issue 11): keys made by real
//! `nix-store --generate-binary-cache-key` (run hermetically) sign the
//! manifest and go into the initrd; the hash tree the builder appends to
//! each image is checked by `veritysetup verify`, and `veritysetup format`
//! computes the same root hash and the same bytes for the same image, salt
//! and block sizes. Fails when `veritysetup` (Debian `cryptsetup-bin`) or
//! Nix is missing.

use nixlive_formats::nixkey::{self, PublicKey};
use nixlive_formats::{Manifest, hex};
use nixlive_testkit::nix::Nix;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{ok, run};

const NIXLIVE: &str = env!("CARGO_BIN_EXE_nixlive");

/// Debian's kernel and modules, the built init, and a store of two paths
/// (system -> shell), as the builder's checks want them.
fn fixture(dir: &Path) -> (PathBuf, String) {
    let k = common::kernel("amd64");
    std::os::unix::fs::symlink(&k.vmlinuz, dir.join("vmlinuz")).unwrap();
    fs::create_dir_all(dir.join("modules")).unwrap();
    std::os::unix::fs::symlink(&k.modules_dir, dir.join("modules").join(&k.version)).unwrap();
    std::os::unix::fs::symlink(
        common::guest_program("x86_64", "nixlive-init"),
        dir.join("init"),
    )
    .unwrap();
    let store = dir.join("root/nix/store");
    let lib = format!("{}-lib", "l".repeat(32));
    let sys = format!("{}-system", "s".repeat(32));
    fs::create_dir_all(store.join(&lib).join("bin")).unwrap();
    fs::write(store.join(&lib).join("bin/sh"), b"#!shell").unwrap();
    fs::set_permissions(
        store.join(&lib).join("bin/sh"),
        fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    let system = store.join(&sys);
    fs::create_dir_all(&system).unwrap();
    // Enough data for a tree of two levels (over 128 blocks of 4 KiB),
    // which does not compress away.
    let mut x = 0x2545f491u32;
    let noise: Vec<u8> = (0..600_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    fs::write(system.join("noise"), noise).unwrap();
    fs::write(system.join("init"), format!("#!/nix/store/{lib}/bin/sh\n")).unwrap();
    fs::set_permissions(system.join("init"), fs::Permissions::from_mode(0o555)).unwrap();
    std::os::unix::fs::symlink(format!("/nix/store/{lib}"), system.join("lib")).unwrap();
    (
        dir.join("modules").join(&k.version),
        format!("/nix/store/{sys}"),
    )
}

/// `dir`: the test's directory; its modules directory is `dir/modules/VERSION`.
fn medium(dir: &Path, sys: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(NIXLIVE);
    cmd.arg("medium")
        .arg("--kernel")
        .arg(dir.join("vmlinuz"))
        .arg("--modules-dir")
        .arg(modules_dir(dir))
        .args(["--module", "squashfs", "--module-set", "base"])
        .arg("--init")
        .arg(dir.join("init"))
        .arg("--store-root")
        .arg(dir.join("root"))
        .args(["--system", sys, "--label", "SIGNED", "--no-uefi"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    run(&mut cmd)
}

/// `nix-store --generate-binary-cache-key NAME` in a hermetic Nix: the
/// secret and public key files.
fn nix_keys(nix: &Nix, name: &str) -> (PathBuf, PathBuf) {
    let (s, p) = (
        nix.dir().join(format!("{name}.secret")),
        nix.dir().join(format!("{name}.public")),
    );
    ok(nix
        .command("nix-store")
        .args(["--generate-binary-cache-key", name])
        .arg(&s)
        .arg(&p));
    (s, p)
}

fn modules_dir(dir: &Path) -> PathBuf {
    let v = fs::read_dir(dir.join("modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    v.path()
}

fn veritysetup(args: &[&str]) -> std::process::Output {
    run(Command::new("veritysetup").args(args))
}

#[test]
fn signed_manifest_and_verity_trees_as_nix_and_cryptsetup_see_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, sys) = fixture(tmp.path());
    let dir = tmp.path().to_path_buf();
    let nix = Nix::new(tmp.path());
    let (secret, public) = nix_keys(&nix, "nixlive-test-1");
    let out = dir.join("medium");
    let o = medium(
        &dir,
        &sys,
        &out,
        &[
            "--sign-key",
            secret.to_str().unwrap(),
            "--trusted-key",
            public.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The signature is Nix's key's, over the manifest without its sig lines.
    let text = fs::read_to_string(out.join("nixlive.manifest")).unwrap();
    assert!(text.starts_with("nixlive-manifest 2\n"), "{text}");
    let m = Manifest::parse(&text).unwrap();
    let key = PublicKey::parse(&fs::read_to_string(&public).unwrap()).unwrap();
    let signed = nixlive_formats::manifest::signed_part(&text);
    assert_eq!(
        nixkey::check(signed.as_bytes(), &m.sigs, std::slice::from_ref(&key)),
        Ok("nixlive-test-1".into())
    );
    assert!(text.ends_with(&format!("sig {}\n", m.sigs[0])), "{text}");
    // The trusted key is in the initrd (zstd: look inside).
    let initrd = fs::read(out.join("boot/initrd")).unwrap();
    let inner = zstd::stream::decode_all(&initrd[..]).unwrap();
    let want = format!("{key}\n");
    assert!(
        inner.windows(want.len()).any(|w| w == want.as_bytes()),
        "the initrd lacks the trusted key"
    );

    // nixlive inspect names the key and shows the trees.
    let shown = common::inspect_ok(NIXLIVE, &out);
    assert!(
        shown.contains(
            "signatures    nixlive-test-1 (verified with the initrd's trusted key nixlive-test-1)"
        ),
        "{shown}"
    );
    assert!(shown.contains("    verity    root "), "{shown}");

    // The tree verifies, and cryptsetup makes the same one.
    let img = m.images[0].clone();
    let v = img.verity.clone().expect("verity on by default");
    let path = out.join(&img.name);
    let p = path.to_str().unwrap();
    let root = hex::encode(&v.root);
    let (offset, blocks) = (
        format!("--hash-offset={}", v.hash_offset),
        format!("--data-blocks={}", v.data_blocks),
    );
    assert!(
        nixlive_formats::verity::levels(v.data_blocks, v.hash_block).len() >= 2,
        "the fixture should need two levels: {v:?}"
    );
    let o = veritysetup(&["verify", &offset, &blocks, p, p, &root]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let copy = dir.join("copy.img");
    let bytes = fs::read(&path).unwrap();
    fs::write(&copy, &bytes[..v.hash_offset as usize]).unwrap();
    let c = copy.to_str().unwrap();
    let sb = &bytes[v.hash_offset as usize..];
    let uuid = hex::encode(&sb[16..32]);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &uuid[..8],
        &uuid[8..12],
        &uuid[12..16],
        &uuid[16..20],
        &uuid[20..]
    );
    let o = veritysetup(&[
        "format",
        &offset,
        &blocks,
        &format!("--salt={}", hex::encode(&v.salt)),
        &format!("--uuid={uuid}"),
        "--data-block-size=4096",
        "--hash-block-size=4096",
        c,
        c,
    ]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        said.contains(&format!("Root hash:      \t{root}")),
        "{said}"
    );
    assert!(
        fs::read(&copy).unwrap() == bytes,
        "veritysetup wrote other bytes"
    );

    // One changed byte of data: the tree no longer verifies.
    let mut bad = bytes.clone();
    bad[5000] ^= 1;
    fs::write(&copy, &bad).unwrap();
    let o = veritysetup(&["verify", &offset, &blocks, c, c, &root]);
    assert!(!o.status.success(), "a changed block verified");

    // --no-verity: a manifest without verity lines, unsigned.
    let plain = dir.join("plain");
    let o = medium(&dir, &sys, &plain, &["--no-verity"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = Manifest::parse(&fs::read_to_string(plain.join("nixlive.manifest")).unwrap()).unwrap();
    assert!(m.images[0].verity.is_none() && m.sigs.is_empty());
    // Its manifest with the other medium's initrd, which trusts the key:
    // inspect refuses it, naming the key.
    fs::copy(out.join("boot/initrd"), plain.join("boot/initrd")).unwrap();
    let (shown, err) = common::inspect_refuses(NIXLIVE, &plain);
    assert!(
        err.contains(
            "is not authentic: it is not signed, and the initrd trusts only nixlive-test-1"
        ),
        "{err}"
    );
    assert!(shown.contains("NOT AUTHENTIC"), "{shown}");
}

#[test]
fn key_files_in_the_wrong_format_stop_the_build_before_it_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, sys) = fixture(tmp.path());
    let dir = tmp.path().to_path_buf();
    let nix = Nix::new(tmp.path());
    let (secret, public) = nix_keys(&nix, "k");
    let out = dir.join("never");
    for (opt, file, says) in [
        ("--sign-key", &public, "is not a Nix secret key"),
        ("--trusted-key", &secret, "is not a Nix public key"),
    ] {
        let o = medium(&dir, &sys, &out, &[opt, file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains(opt) && err.contains(says), "{err}");
        assert!(!out.exists(), "{} was written", out.display());
    }
}

/// `netboot --http` signs the manifest it writes beside the small initrd,
/// appends the hash trees to the images it serves, and packs the trusted
/// key and dm-verity into the initrd; `inspect` checks the set's manifest
/// with the initrd's key, as a medium's.
#[test]
fn an_http_netboot_set_is_signed_and_has_verity() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, sys) = fixture(tmp.path());
    let dir = tmp.path().to_path_buf();
    let nix = Nix::new(tmp.path());
    let (secret, public) = nix_keys(&nix, "nixlive-http-1");
    let out = dir.join("set");
    let mut cmd = Command::new(NIXLIVE);
    cmd.arg("netboot")
        .arg("--http")
        .args(["--base-url", "http://10.0.0.5/live/"])
        .arg("--kernel")
        .arg(dir.join("vmlinuz"))
        .arg("--modules-dir")
        .arg(modules_dir(&dir))
        .args(["--module", "squashfs", "--module-set", "base"])
        .arg("--init")
        .arg(dir.join("init"))
        .arg("--store-root")
        .arg(dir.join("root"))
        .args(["--system", &sys])
        .arg("--sign-key")
        .arg(&secret)
        .arg("--trusted-key")
        .arg(&public)
        .arg("--out")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    let o = run(&mut cmd);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = fs::read_to_string(out.join("nixlive.manifest")).unwrap();
    let m = Manifest::parse(&text).unwrap();
    let key = PublicKey::parse(&fs::read_to_string(&public).unwrap()).unwrap();
    assert_eq!(
        nixkey::check(
            nixlive_formats::manifest::signed_part(&text).as_bytes(),
            &m.sigs,
            std::slice::from_ref(&key)
        ),
        Ok("nixlive-http-1".into())
    );
    let v = m.images[0].verity.clone().expect("verity on by default");
    assert_eq!(
        fs::metadata(out.join(&m.images[0].name)).unwrap().len(),
        m.images[0].size
    );
    assert!(v.hash_offset < m.images[0].size, "{v:?}");
    let initrd = zstd::stream::decode_all(&fs::read(out.join("initrd")).unwrap()[..]).unwrap();
    let has = |s: &[u8]| initrd.windows(s.len()).any(|w| w == s);
    assert!(
        has(format!("{key}\n").as_bytes()),
        "no trusted key in the initrd"
    );
    assert!(
        has(b"dm-verity.ko") || has(b"dm_verity"),
        "no dm-verity in the initrd"
    );
    assert!(
        !has(m.images[0].sha256.as_bytes()),
        "the initrd holds the manifest"
    );
    let cmdline = fs::read_to_string(out.join("cmdline")).unwrap();
    assert!(
        cmdline.contains("nixlive.url=http://10.0.0.5/live/nixlive.manifest"),
        "{cmdline}"
    );
    let shown = common::inspect_ok(NIXLIVE, &out);
    assert!(
        shown.contains(
            "signatures    nixlive-http-1 (verified with the initrd's trusted key nixlive-http-1)"
        ),
        "{shown}"
    );
    // The served manifest unsigned: inspect refuses the set, naming the key.
    fs::write(
        out.join("nixlive.manifest"),
        nixlive_formats::manifest::signed_part(&text),
    )
    .unwrap();
    let (_, err) = common::inspect_refuses(NIXLIVE, &out);
    assert!(
        err.contains("it is not signed, and the initrd trusts only nixlive-http-1"),
        "{err}"
    );
}

//! Shared by the host tests: store trees with real NAR hashes, running the
//! built binary, and running Debian's Nix against a chroot store.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nixlive_formats::nix32;
use nixlive_formats::registration::{PathInfo, Registration};
use nixlive_testkit::nix::Nix;
use sha2::{Digest, Sha256};

/// A file-system object to put in a store path.
#[derive(Debug, Clone)]
pub enum Node {
    File { contents: Vec<u8>, executable: bool },
    Symlink(String),
    Dir(BTreeMap<String, Node>),
}

fn nar_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    out.resize(out.len() + (8 - s.len() % 8) % 8, 0);
}

fn nar_node(out: &mut Vec<u8>, n: &Node) {
    nar_str(out, b"(");
    nar_str(out, b"type");
    match n {
        Node::File {
            contents,
            executable,
        } => {
            nar_str(out, b"regular");
            if *executable {
                nar_str(out, b"executable");
                nar_str(out, b"");
            }
            nar_str(out, b"contents");
            nar_str(out, contents);
        }
        Node::Symlink(t) => {
            nar_str(out, b"symlink");
            nar_str(out, b"target");
            nar_str(out, t.as_bytes());
        }
        Node::Dir(entries) => {
            nar_str(out, b"directory");
            for (name, child) in entries {
                nar_str(out, b"entry");
                nar_str(out, b"(");
                nar_str(out, b"name");
                nar_str(out, name.as_bytes());
                nar_str(out, b"node");
                nar_node(out, child);
                nar_str(out, b")");
            }
        }
    }
    nar_str(out, b")");
}

/// The NAR serialisation of `n` (Nix's `dumpPath`).
pub fn nar(n: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    nar_str(&mut out, b"nix-archive-1");
    nar_node(&mut out, n);
    out
}

fn write_node(path: &Path, n: &Node) {
    match n {
        Node::File {
            contents,
            executable,
        } => {
            fs::write(path, contents).unwrap();
            let mode = if *executable { 0o555 } else { 0o444 };
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        Node::Symlink(t) => std::os::unix::fs::symlink(t, path).unwrap(),
        Node::Dir(entries) => {
            fs::create_dir(path).unwrap();
            for (name, child) in entries {
                write_node(&path.join(name), child);
            }
        }
    }
}

/// A 32-character nix base-32 hash part derived from `i`.
pub fn hash_part(seed: &str, i: usize) -> String {
    let d = Sha256::digest(format!("{seed}{i}").as_bytes());
    d.iter()
        .take(32)
        .map(|b| char::from(nix32::ALPHABET[usize::from(b % 32)]))
        .collect()
}

/// One store path to create: its name and a function of the full paths of
/// its references giving its contents.
pub struct Spec {
    pub path: String,
    pub node: Node,
    pub references: Vec<String>,
}

/// Writes the paths under `<root>/nix/store` and returns their registration
/// (the NAR hash and size computed here, references as given).
pub fn make_store(root: &Path, specs: &[Spec]) -> Registration {
    let store = root.join("nix/store");
    fs::create_dir_all(&store).unwrap();
    let mut paths = Vec::new();
    for s in specs {
        let base = s.path.strip_prefix("/nix/store/").unwrap();
        write_node(&store.join(base), &s.node);
        let bytes = nar(&s.node);
        let mut refs = s.references.clone();
        refs.sort();
        refs.dedup();
        paths.push(PathInfo {
            path: s.path.clone(),
            nar_hash: Sha256::digest(&bytes).into(),
            nar_size: bytes.len() as u64,
            deriver: None,
            references: refs,
            line: 0,
        });
    }
    Registration { paths }
}

/// A small closure: a system with a directory, an executable, a symlink, a
/// self-reference and a deriver.
pub fn small_closure() -> Vec<Spec> {
    let p = |i, name: &str| format!("/nix/store/{}-{name}", hash_part("small", i));
    let lib = p(0, "libfoo-1.0");
    let bin = p(1, "foo-1.0");
    let etc = p(2, "etc");
    let sys = p(3, "nixos-system-test");
    let file = |s: String| Node::File {
        contents: s.into_bytes(),
        executable: false,
    };
    vec![
        Spec {
            path: lib.clone(),
            node: Node::Dir(BTreeMap::from([(
                "lib".into(),
                Node::Dir(BTreeMap::from([(
                    "libfoo.so".into(),
                    file(format!("ELF... rpath {lib}/lib")),
                )])),
            )])),
            references: vec![lib.clone()],
        },
        Spec {
            path: bin.clone(),
            node: Node::Dir(BTreeMap::from([(
                "bin".into(),
                Node::Dir(BTreeMap::from([
                    (
                        "foo".into(),
                        Node::File {
                            contents: format!("#!/bin/sh\nexec {lib}/lib/libfoo.so\n").into_bytes(),
                            executable: true,
                        },
                    ),
                    ("bar".into(), Node::Symlink("foo".into())),
                ])),
            )])),
            references: vec![lib.clone()],
        },
        Spec {
            path: etc.clone(),
            node: file("hostname test\n".into()),
            references: vec![],
        },
        Spec {
            path: sys.clone(),
            node: Node::Dir(BTreeMap::from([
                ("init".into(), Node::Symlink(format!("{bin}/bin/foo"))),
                ("etc".into(), Node::Symlink(etc.clone())),
            ])),
            references: vec![bin, etc],
        },
    ]
}

/// `n` paths, each a file naming up to three earlier paths it refers to.
pub fn big_closure(n: usize) -> Vec<Spec> {
    let paths: Vec<String> = (0..n)
        .map(|i| format!("/nix/store/{}-pkg-{i}", hash_part("big", i)))
        .collect();
    (0..n)
        .map(|i| {
            let mut refs: Vec<String> = [i.wrapping_sub(1), i / 2, i * 7 / 11]
                .into_iter()
                .filter(|&j| j < i)
                .map(|j| paths[j].clone())
                .collect();
            refs.sort();
            refs.dedup();
            let contents = format!("package {i}\n{}\n", refs.join("\n"));
            Spec {
                path: paths[i].clone(),
                node: Node::File {
                    contents: contents.into_bytes(),
                    executable: false,
                },
                references: refs,
            }
        })
        .collect()
}

/// Runs the built postboot binary.
pub fn postboot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nixlive-postboot"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A Nix command against the chroot store `root`, run hermetically
/// (nixlive-testkit: configuration, home and state in `ROOT.nix`, beside
/// the store, never the machine's). Panics when nix-bin is not installed.
pub fn nix(program: &str, root: &Path, args: &[&str]) -> Command {
    let mut cmd = hermetic_nix(root).on_store(program, root);
    cmd.args(args);
    cmd
}

/// The hermetic Nix environment of the tests against the store `root`, for
/// a program that runs Nix itself (postboot's `nix-store` loader).
pub fn hermetic_nix(root: &Path) -> Nix {
    Nix::new(&root.with_extension("nix"))
}

/// Runs `cmd`, panicking with its output when it fails.
pub fn ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// `nix-store --store ROOT --load-db < reg`.
pub fn nix_store_load_db(root: &Path, reg: &[u8]) {
    use std::io::Write;
    let mut cmd = nix("nix-store", root, &["--load-db"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(reg).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nix-store --load-db:\n{}", text(&out));
}

/// `nix path-info --json --all` of the store at `root`, each path's
/// `registrationTime` removed, as a JSON value.
pub fn path_info(root: &Path) -> serde_json::Value {
    // (nix-command is enabled by the kit's nix.conf.)
    let out = ok(nix("nix", root, &["path-info", "--json", "--all"]));
    let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items: Vec<&mut serde_json::Value> = match &mut v {
        serde_json::Value::Array(a) => a.iter_mut().collect(),
        serde_json::Value::Object(o) => o.values_mut().collect(),
        other => panic!("unexpected path-info output {other}"),
    };
    for item in items {
        if let Some(o) = item.as_object_mut() {
            assert!(
                o.remove("registrationTime").is_some(),
                "no registrationTime in {o:?}"
            );
        }
    }
    v
}

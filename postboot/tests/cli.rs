//! Runs the built binary against a temporary root, as the demo system does.

use std::path::PathBuf;
use std::process::Command;

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("nixlive-postboot-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn postboot(root: &PathBuf) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nixlive-postboot"))
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn second_run_has_nothing_to_do() {
    let root = tempdir();
    let (code, out, err) = postboot(&root);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out,
        "postboot: created /etc\npostboot: created /etc/NIXOS\n"
    );
    assert!(root.join("etc/NIXOS").is_file());

    let (code, out, err) = postboot(&root);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "postboot: /etc/NIXOS already present, nothing to do\n");

    // A root that cannot hold /etc: non-zero, and the error names the path.
    let bad = root.join("etc/NIXOS");
    let (code, _, err) = postboot(&bad);
    assert_ne!(code, 0);
    assert!(
        err.contains(&bad.join("etc").display().to_string()),
        "stderr: {err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_arguments_fail() {
    let out = Command::new(env!("CARGO_BIN_EXE_nixlive-postboot"))
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

//! Running the external programs the builder leans on (mksquashfs, xorriso,
//! grub-mkimage, mtools, xz): a failure names the program and shows its
//! command line and output.
//!
//! Each runs in a process group of its own, registered while it runs, so
//! that a SIGINT or SIGTERM stops it before its files are removed
//! ([`crate::cleanup`]).
//!
//! Non-goals: no retries, no streaming of large outputs (these programs
//! write files; only `xz` filters bytes, which are held in memory).

use anyhow::{Context, Result, anyhow, bail};
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `cmd` to completion; `what` names it in errors.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = crate::cleanup::output(cmd).with_context(|| {
        format!(
            "cannot run {what} ({:?}); is it installed?",
            cmd.get_program()
        )
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {:?}\n{}{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output as text, whatever its exit
/// status (for version banners).
pub fn output_text(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what}; is it installed?"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`, which must succeed, and returns its standard output.
pub fn output(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let out = crate::cleanup::output(cmd).with_context(|| {
        format!(
            "cannot run {what} ({:?}); is it installed?",
            cmd.get_program()
        )
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {:?}\n{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Runs the filter program `cmd` over `input` and returns what it wrote.
pub fn pipe(cmd: &mut Command, input: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut child = crate::cleanup::spawn(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .with_context(|| format!("cannot run {what}; is it installed?"))?;
    let mut stdin = child.child.stdin.take().context("stdin")?;
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child
        .wait_with_output()
        .with_context(|| format!("running {what}"))?;
    let wrote = writer
        .join()
        .map_err(|_| anyhow!("{what}: writer panicked"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wrote.with_context(|| format!("feeding {what}"))?;
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_program() {
        run(&mut Command::new("true"), "true").unwrap();
        let e = run(&mut Command::new("false"), "false (coreutils)").unwrap_err();
        assert!(e.to_string().starts_with("false (coreutils) failed"), "{e}");
        let e = run(&mut Command::new("/nonexistent/tool"), "the tool").unwrap_err();
        assert!(e.to_string().contains("cannot run the tool"), "{e}");
        assert_eq!(
            pipe(&mut Command::new("cat"), b"abc", "cat").unwrap(),
            b"abc"
        );
        let e = pipe(
            Command::new("sh").args(["-c", "echo bad >&2; exit 3"]),
            b"",
            "sh",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
    }
}

//! Registration throughput for `make bench`: the static musl
//! `nixlive-postboot --loader native` (the binary that boots) against
//! `nix-store --load-db`, both loading the same registration into a fresh
//! store, several rounds each, alternating.
//!
//! The registration is made by real Nix: a generated store of N paths (each
//! a file naming up to three earlier paths, so it references them) is
//! registered by the builder (`nixlive registration`, NAR hashes and
//! references), loaded by `nix-store --load-db`, and dumped again with
//! `nix-store --dump-db`; that dump is what both loaders are timed on. After
//! the rounds, `nix path-info --json --all` of the last store of each loader
//! must be equal (registration times left out): a faster loader that writes
//! something else is an error, not a result.
//!
//! Nix runs hermetically (nixlive-testkit), the timed `nix-store
//! --load-db` with Nix's default `fsync-metadata = true` (as on a booted
//! system; the native loader syncs its database once). Each round records
//! the wall clock and the CPU time (user + system) of the loader's process.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nixlive_testkit::nix::Nix;

/// One measured size: seconds of each round, per loader, wall clock and
/// CPU (user and system time of the loader's process).
#[derive(Debug, Clone)]
pub struct RegResult {
    pub paths: usize,
    pub native_s: Vec<f64>,
    pub nix_store_s: Vec<f64>,
    pub native_cpu_s: Vec<f64>,
    pub nix_store_cpu_s: Vec<f64>,
}

/// Runs `cmd` as [`run`] does, under bash, which clocks it
/// (`$EPOCHREALTIME` around it: bash's own start is not counted) and whose
/// `times` then says the CPU time it took (its children's line,
/// milliseconds): the wall clock of a shared machine says more about the
/// other load on it. Returns the standard output, the wall and the CPU
/// seconds.
fn run_timed(
    cmd: Command,
    input: Option<&[u8]>,
    scratch: &Path,
) -> Result<(Vec<u8>, f64, f64), String> {
    let times = scratch.join("times");
    let mut timed = Command::new("/bin/bash");
    // Both commands here start from a cleared environment.
    timed.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    timed
        .arg("-c")
        .arg(r#"out=$1; shift; t0=$EPOCHREALTIME; "$@"; rc=$?; t1=$EPOCHREALTIME; { echo "$t0 $t1"; times; } >"$out"; exit $rc"#)
        .arg("bash")
        .arg(&times)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    let out = run(timed, input)?;
    let text = fs::read_to_string(&times).map_err(|e| format!("{}: {e}", times.display()))?;
    let (wall, cpu) = parse_times(&text).ok_or_else(|| format!("bash said {text:?}"))?;
    Ok((out, wall, cpu))
}

/// The wall seconds (first line: two `$EPOCHREALTIME`s) and the children's
/// user plus system seconds from bash's `times` (third line:
/// `0m0.123s 0m0.045s`).
fn parse_times(text: &str) -> Option<(f64, f64)> {
    let mut lines = text.lines();
    let (t0, t1) = lines.next()?.split_once(' ')?;
    let wall = t1.parse::<f64>().ok()? - t0.parse::<f64>().ok()?;
    let line = lines.nth(1)?;
    let cpu = line
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.strip_suffix('s')?.split_once('m')?;
            Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
        })
        .sum::<Option<f64>>()?;
    Some((wall, cpu))
}

/// The generated store: path `i` is a file that names paths `i-1`, `i/2`
/// and `i*7/11` (those below `i`), as Nix's reference scanner finds them.
fn make_store(root: &Path, n: usize) -> Result<(), String> {
    let store = root.join("nix/store");
    fs::create_dir_all(&store).map_err(|e| format!("creating {}: {e}", store.display()))?;
    let names: Vec<String> = (0..n)
        .map(|i| format!("{}-pkg-{i}", hash_part(i)))
        .collect();
    for i in 0..n {
        let mut refs: Vec<usize> = [i.wrapping_sub(1), i / 2, i * 7 / 11]
            .into_iter()
            .filter(|&j| j < i)
            .collect();
        refs.sort_unstable();
        refs.dedup();
        let mut text = format!("package {i}\n");
        for j in refs {
            text.push_str(&format!("/nix/store/{}\n", names[j]));
        }
        let p = store.join(&names[i]);
        fs::write(&p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
    }
    Ok(())
}

/// A store-path hash part (32 characters of Nix's base-32 alphabet),
/// distinct for each `i`.
fn hash_part(i: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    let mut s = String::with_capacity(32);
    for k in 0..32 {
        if k % 12 == 0 {
            x ^= (i as u64).rotate_left(k as u32 + 7).wrapping_add(k as u64);
        }
        s.push(ALPHABET[(x & 31) as usize] as char);
        x = x.rotate_right(5).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    // The index in the last digits keeps them distinct.
    let tail: String = format!("{i:08}")
        .bytes()
        .map(|b| ALPHABET[(b - b'0') as usize] as char)
        .collect();
    format!("{}{tail}", &s[..24])
}

fn run(mut cmd: Command, input: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    if let Some(data) = input {
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin
            .write_all(data)
            .map_err(|e| format!("{shown}: writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

/// `nix path-info --json --all` of `store`, registration times removed.
fn path_info(nix: &Nix, store: &Path) -> Result<serde_json::Value, String> {
    let mut cmd = nix.on_store("nix", store);
    cmd.args(["path-info", "--json", "--all"]);
    let out = run(cmd, None)?;
    let mut v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| format!("nix path-info output: {e}"))?;
    let items: Vec<&mut serde_json::Value> = match &mut v {
        serde_json::Value::Array(a) => a.iter_mut().collect(),
        serde_json::Value::Object(o) => o.values_mut().collect(),
        _ => return Err("unexpected nix path-info output".into()),
    };
    for item in items {
        if let Some(o) = item.as_object_mut() {
            o.remove("registrationTime");
        }
    }
    Ok(v)
}

/// Measures `paths` paths over `rounds` rounds in `dir` (emptied first):
/// `builder` is `nixlive`, `postboot` the static guest build.
pub fn measure(
    dir: &Path,
    builder: &Path,
    postboot: &Path,
    paths: usize,
    rounds: usize,
) -> Result<RegResult, String> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let nix = Nix::new(dir);
    let generated = dir.join("generated");
    make_store(&generated, paths)?;
    let mut cmd = Command::new(builder);
    cmd.arg("registration").arg("--root").arg(&generated);
    let ours = run(cmd, None)?;
    let seed = dir.join("seed");
    fs::create_dir_all(seed.join("nix/store")).map_err(|e| e.to_string())?;
    let mut cmd = nix.on_store("nix-store", &seed);
    cmd.arg("--load-db");
    run(cmd, Some(&ours))?;
    let mut cmd = nix.on_store("nix-store", &seed);
    cmd.arg("--dump-db");
    let registration = run(cmd, None)?;
    let lines = registration.iter().filter(|&&b| b == b'\n').count();
    eprintln!(
        "registration: {paths} paths, {lines} lines, {} bytes (nix-store --dump-db)",
        registration.len()
    );

    let mut result = RegResult {
        paths,
        native_s: Vec::new(),
        nix_store_s: Vec::new(),
        native_cpu_s: Vec::new(),
        nix_store_cpu_s: Vec::new(),
    };
    let fresh = |name: &str| -> Result<PathBuf, String> {
        let p = dir.join(name);
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(p.join("nix/store")).map_err(|e| e.to_string())?;
        Ok(p)
    };
    for _ in 0..rounds {
        let native = fresh("native")?;
        let reg = native.join("nix/store/nix-path-registration");
        fs::write(&reg, &registration).map_err(|e| format!("{}: {e}", reg.display()))?;
        let mut cmd = Command::new(postboot);
        cmd.env_clear()
            .arg("--root")
            .arg(&native)
            .args(["--loader", "native"]);
        let (out, wall, cpu) = run_timed(cmd, None, dir)?;
        result.native_s.push(wall);
        result.native_cpu_s.push(cpu);
        let said = String::from_utf8_lossy(&out);
        if !said.contains(&format!("loaded {paths} paths")) {
            return Err(format!("postboot did not load {paths} paths:\n{said}"));
        }

        let theirs = fresh("nix-store")?;
        let mut cmd = nix.on_store("nix-store", &theirs);
        // Nix's default, as a booted NixOS loads its registration with:
        // the database synced (the test configuration turns it off for
        // throwaway stores). The native loader syncs its new database too.
        cmd.env("NIX_CONFIG", "fsync-metadata = true");
        cmd.arg("--load-db");
        let (_, wall, cpu) = run_timed(cmd, Some(&registration), dir)?;
        result.nix_store_s.push(wall);
        result.nix_store_cpu_s.push(cpu);
    }
    let a = path_info(&nix, &dir.join("native"))?;
    let b = path_info(&nix, &dir.join("nix-store"))?;
    if a.as_array()
        .map(Vec::len)
        .or(a.as_object().map(|o| o.len()))
        != Some(paths)
    {
        return Err(format!("nix path-info does not list {paths} paths"));
    }
    if a != b {
        return Err(format!(
            "{paths} paths: nix path-info differs between the native loader and nix-store --load-db"
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_times_are_read_as_cpu_seconds() {
        let (wall, cpu) = parse_times(
            "1700000000.250000 1700000001.000000\n0m0.004s 0m0.001s\n0m0.120s 1m0.030s\n",
        )
        .unwrap();
        assert!(
            (wall - 0.75).abs() < 1e-6 && (cpu - 60.15).abs() < 1e-9,
            "{wall} {cpu}"
        );
        assert_eq!(parse_times("1 2\n0m0.004s 0m0.001s\n"), None);
        assert_eq!(parse_times("1 2\n0m0.004s 0m0.001s\n0m0.1 0m0.0s\n"), None);
        assert_eq!(parse_times("0m0.004s 0m0.001s\n0m0.1s 0m0.0s\n"), None);
    }

    #[test]
    fn hash_parts_are_distinct_and_in_nix_base32() {
        let parts: std::collections::BTreeSet<String> = (0..20_000).map(hash_part).collect();
        assert_eq!(parts.len(), 20_000);
        for p in parts.iter().take(100) {
            assert_eq!(p.len(), 32);
            assert!(
                p.bytes()
                    .all(|b| b"0123456789abcdfghijklmnpqrsvwxyz".contains(&b))
            );
        }
    }
}

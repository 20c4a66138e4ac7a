//! NAR (Nix ARchive) serialisation of a file tree, byte for byte as
//! `nix-store --dump` writes it, so that its SHA-256 is the path's `narHash`.
//!
//! Every token is a string: a little-endian u64 length, the bytes, zero
//! padding to a multiple of 8. Directory entries are sorted by name bytes;
//! a regular file is executable when its owner-execute bit is set.
//!
//! Non-goals: no NAR reading or unpacking, no compression.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NarError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: not a regular file, directory or symlink; NAR cannot hold it")]
    Unsupported { path: PathBuf },
    #[error("writing the NAR of {path}")]
    Write { path: PathBuf, source: io::Error },
}

const MAGIC: &str = "nix-archive-1";

/// Writes one NAR string token.
fn write_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    w.write_all(&(b.len() as u64).to_le_bytes())?;
    w.write_all(b)?;
    let pad = (8 - b.len() % 8) % 8;
    w.write_all(&[0u8; 8][..pad])
}

fn tok(w: &mut impl Write, s: &str) -> io::Result<()> {
    write_bytes(w, s.as_bytes())
}

/// Serialises the tree at `path` (not following a symlink at the top) into `w`.
pub fn dump(path: &Path, w: &mut impl Write) -> Result<(), NarError> {
    tok(w, MAGIC).map_err(write_err(path))?;
    dump_node(path, w)
}

fn dump_node(path: &Path, w: &mut impl Write) -> Result<(), NarError> {
    let meta = fs::symlink_metadata(path).map_err(read_err(path))?;
    let ft = meta.file_type();
    tok(w, "(").map_err(write_err(path))?;
    if ft.is_symlink() {
        dump_symlink(path, w)?;
    } else if ft.is_file() {
        dump_file(path, &meta, w)?;
    } else if ft.is_dir() {
        dump_dir(path, w)?;
    } else {
        return Err(NarError::Unsupported {
            path: path.to_path_buf(),
        });
    }
    tok(w, ")").map_err(write_err(path))
}

fn read_err(path: &Path) -> impl Fn(io::Error) -> NarError + '_ {
    move |source| NarError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn write_err(path: &Path) -> impl Fn(io::Error) -> NarError + '_ {
    move |source| NarError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn toks(w: &mut impl Write, ts: &[&str]) -> io::Result<()> {
    ts.iter().try_for_each(|t| tok(w, t))
}

fn dump_symlink(path: &Path, w: &mut impl Write) -> Result<(), NarError> {
    let target = fs::read_link(path).map_err(read_err(path))?;
    toks(w, &["type", "symlink", "target"])
        .and_then(|()| write_bytes(w, target.as_os_str().as_bytes()))
        .map_err(write_err(path))
}

fn dump_file(path: &Path, meta: &fs::Metadata, w: &mut impl Write) -> Result<(), NarError> {
    let werr = write_err(path);
    toks(w, &["type", "regular"]).map_err(&werr)?;
    if meta.permissions().mode() & 0o100 != 0 {
        toks(w, &["executable", ""]).map_err(&werr)?;
    }
    tok(w, "contents").map_err(&werr)?;
    let len = meta.len();
    w.write_all(&len.to_le_bytes()).map_err(&werr)?;
    let f = fs::File::open(path).map_err(read_err(path))?;
    // Copy exactly `len` bytes: a file that changes under us must not
    // produce a NAR whose length field lies.
    let copied = copy_exact(&mut f.take(len), w, path)?;
    if copied != len {
        return Err(read_err(path)(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file shrank while reading ({copied} of {len} bytes)"),
        )));
    }
    let pad = ((8 - len % 8) % 8) as usize;
    w.write_all(&[0u8; 8][..pad]).map_err(&werr)
}

fn dump_dir(path: &Path, w: &mut impl Write) -> Result<(), NarError> {
    let (rerr, werr) = (read_err(path), write_err(path));
    toks(w, &["type", "directory"]).map_err(&werr)?;
    let mut names = Vec::new();
    for e in fs::read_dir(path).map_err(&rerr)? {
        names.push(e.map_err(&rerr)?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        toks(w, &["entry", "(", "name"]).map_err(&werr)?;
        write_bytes(w, name.as_bytes()).map_err(&werr)?;
        tok(w, "node").map_err(&werr)?;
        dump_node(&path.join(&name), w)?;
        tok(w, ")").map_err(&werr)?;
    }
    Ok(())
}

fn copy_exact(r: &mut impl Read, w: &mut impl Write, path: &Path) -> Result<u64, NarError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(read_err(path)(source)),
        };
        w.write_all(&buf[..n]).map_err(write_err(path))?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn s(out: &mut Vec<u8>, t: &[u8]) {
        write_bytes(out, t).unwrap();
    }

    #[test]
    fn string_padding() {
        let mut v = Vec::new();
        write_bytes(&mut v, b"abc").unwrap();
        assert_eq!(v, [3, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0]);
        let mut v = Vec::new();
        write_bytes(&mut v, b"").unwrap();
        assert_eq!(v, [0u8; 8]);
        let mut v = Vec::new();
        write_bytes(&mut v, b"12345678").unwrap();
        assert_eq!(v.len(), 16);
    }

    #[test]
    fn tree_matches_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("b"), b"hello\n").unwrap();
        fs::set_permissions(root.join("b"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::write(root.join("a"), b"").unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o444)).unwrap();
        symlink("b", root.join("c")).unwrap();

        let mut got = Vec::new();
        dump(&root, &mut got).unwrap();

        let mut want = Vec::new();
        for t in ["nix-archive-1", "(", "type", "directory"] {
            s(&mut want, t.as_bytes());
        }
        // "a": empty, not executable
        for t in [
            "entry", "(", "name", "a", "node", "(", "type", "regular", "contents",
        ] {
            s(&mut want, t.as_bytes());
        }
        s(&mut want, b"");
        for t in [")", ")"] {
            s(&mut want, t.as_bytes());
        }
        // "b": executable
        for t in [
            "entry",
            "(",
            "name",
            "b",
            "node",
            "(",
            "type",
            "regular",
            "executable",
            "",
            "contents",
        ] {
            s(&mut want, t.as_bytes());
        }
        s(&mut want, b"hello\n");
        for t in [")", ")"] {
            s(&mut want, t.as_bytes());
        }
        // "c": symlink
        for t in [
            "entry", "(", "name", "c", "node", "(", "type", "symlink", "target", "b", ")", ")",
        ] {
            s(&mut want, t.as_bytes());
        }
        s(&mut want, b")");
        assert_eq!(got, want);
    }

    #[test]
    fn single_file_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let mut got = Vec::new();
        dump(&f, &mut got).unwrap();
        let mut want = Vec::new();
        for t in [
            "nix-archive-1",
            "(",
            "type",
            "regular",
            "contents",
            "x",
            ")",
        ] {
            s(&mut want, t.as_bytes());
        }
        assert_eq!(got, want);
        let missing = dir.path().join("missing");
        let err = dump(&missing, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

//! Nix binary-cache key files for `--sign-key` and `--trusted-key`, read
//! and checked while the options are parsed, so that a key in the wrong
//! format stops the build before anything is written.

use nixlive_formats::nixkey::{PublicKey, SecretKey};
use std::path::PathBuf;

/// A key and the file it was read from (an input the build must not
/// overwrite: see [`crate::overlap`]).
#[derive(Debug, Clone)]
pub struct KeyFile<K> {
    pub path: PathBuf,
    pub key: K,
}

impl<K> std::ops::Deref for KeyFile<K> {
    type Target = K;
    fn deref(&self) -> &K {
        &self.key
    }
}

impl<K: std::fmt::Display> std::fmt::Display for KeyFile<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.key.fmt(f)
    }
}

/// The longest key file read (a key line is under 200 bytes).
const MAX: u64 = 4096;

fn read(path: &str) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX + 1).read_to_string(&mut text))
        .map_err(|e| format!("reading {path}: {e}"))?;
    if text.len() as u64 > MAX {
        return Err(format!("{path} is larger than {MAX} bytes: not a key file"));
    }
    Ok(text)
}

/// `--sign-key`: a secret key as `nix-store --generate-binary-cache-key` writes it.
pub fn secret_key_file(path: &str) -> Result<KeyFile<SecretKey>, String> {
    let key = SecretKey::parse(&read(path)?).map_err(|e| {
        format!("{path} is not a Nix secret key (NAME:BASE64, from nix-store --generate-binary-cache-key): {e}")
    })?;
    Ok(KeyFile {
        path: path.into(),
        key,
    })
}

/// `--trusted-key`: a public key as `nix-store --generate-binary-cache-key` writes it.
pub fn public_key_file(path: &str) -> Result<KeyFile<PublicKey>, String> {
    let key = PublicKey::parse(&read(path)?).map_err(|e| {
        format!("{path} is not a Nix public key (NAME:BASE64, from nix-store --generate-binary-cache-key): {e}")
    })?;
    Ok(KeyFile {
        path: path.into(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        std::fs::write(&f, "k:AAAA\n").unwrap();
        let p = f.to_str().unwrap();
        let e = secret_key_file(p).unwrap_err();
        assert!(
            e.starts_with(&format!("{p} is not a Nix secret key")),
            "{e}"
        );
        assert!(e.contains("3 bytes, but a secret key has 64"), "{e}");
        assert!(
            public_key_file(p)
                .unwrap_err()
                .contains("public key has 32")
        );
        let e = public_key_file("/nonexistent/key").unwrap_err();
        assert!(e.starts_with("reading /nonexistent/key"), "{e}");
        std::fs::write(&f, "x".repeat(5000)).unwrap();
        assert!(public_key_file(p).unwrap_err().contains("larger than"));
    }
}

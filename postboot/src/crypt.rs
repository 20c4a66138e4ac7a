//! crypt(3) password hashes for `/etc/shadow`: SHA-512 crypt (`$6$`, what
//! glibc, shadow's `chpasswd` and NixOS's `mkpasswd -m sha-512` write) by
//! RustCrypto's `sha-crypt`, with a salt from the kernel's random source.
//!
//! Non-goals: yescrypt (`$y$`) is accepted as a given hash but not made
//! here; no well-kept pure-Rust yescrypt exists yet.

use std::io::Read;

use nixlive_formats::Secret;
use sha_crypt::{PasswordHasher, PasswordVerifier, ShaCrypt};

/// Salt bytes: 12 give the 16 salt characters glibc uses.
const SALT_BYTES: usize = 12;

/// The kernel's random source, read directly (postboot runs as root in
/// early stage 2, when `/dev` is mounted).
const RANDOM: &str = "/dev/urandom";

/// `$6$rounds=5000$<salt>$<hash>` of `password` with a fresh salt.
pub fn sha512_crypt(password: &Secret) -> std::io::Result<String> {
    let mut salt = [0u8; SALT_BYTES];
    std::fs::File::open(RANDOM)
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| std::io::Error::new(e.kind(), format!("reading {RANDOM} for a salt: {e}")))?;
    sha512_crypt_with_salt(password, &salt)
}

/// As [`sha512_crypt`], with the salt given (tests).
pub fn sha512_crypt_with_salt(password: &Secret, salt: &[u8]) -> std::io::Result<String> {
    ShaCrypt::SHA512
        .hash_password_with_salt(password.expose().as_bytes(), salt)
        .map(|h| h.to_string())
        .map_err(|e| std::io::Error::other(format!("SHA-512 crypt: {e}")))
}

/// Whether `hash` (a shadow password field) is a SHA-256/512 crypt hash of
/// `password`. Any other scheme, a locked or an empty field: false.
pub fn verify(password: &Secret, hash: &str) -> bool {
    (hash.starts_with("$5$") || hash.starts_with("$6$"))
        && ShaCrypt::default()
            .verify_password(password.expose().as_bytes(), hash)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_verifies() {
        let pw = Secret::new("correct horse");
        let h = sha512_crypt(&pw).unwrap();
        assert!(h.starts_with("$6$rounds=5000$"), "{h}");
        assert!(verify(&pw, &h));
        assert!(!verify(&Secret::new("wrong"), &h));
        assert_ne!(h, sha512_crypt(&pw).unwrap(), "each hash gets its own salt");
        assert!(!verify(&pw, "!"));
        assert!(!verify(&pw, ""));
        assert!(!verify(&pw, "$y$j9T$abc$def"));
    }

    /// The glibc test vector (crypt-sha512 "Hello world!", salt "saltstring").
    #[test]
    fn verifies_glibc_vector() {
        let h = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
        assert!(verify(&Secret::new("Hello world!"), h));
    }
}

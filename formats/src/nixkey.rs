//! Nix binary-cache keys and signatures, as `nix-store
//! --generate-binary-cache-key NAME SECRET PUBLIC` writes them and Nix
//! signs store paths: `NAME:BASE64`, where the base 64 is 32 bytes for a
//! public key, 64 for a secret key (libsodium's seed and public key) and
//! 64 for a signature (Ed25519, detached).
//!
//! A manifest is signed with [`SecretKey::sign`] and checked with
//! [`check`], which takes the trusted keys the initrd holds ([`parse_keys`]
//! reads their file). The crypto is `ed25519-dalek`'s; this module only
//! parses and names things.

use crate::base64;
use crate::lines::LineError;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::fmt;
use thiserror::Error;

/// Where the builder packs the trusted public keys inside the initrd.
pub const TRUSTED_KEYS: &str = "/etc/nixlive/trusted-keys";
/// The most bytes a trusted-keys file may have (a key line is ~60).
pub const MAX_KEYS_BYTES: u64 = 64 << 10;
/// The longest key name accepted (Nix's are like `cache.nixos.org-1`).
pub const MAX_NAME: usize = 128;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not NAME:BASE64 (no `:`)")]
    NoColon,
    #[error(
        "the key name is empty, longer than {MAX_NAME} bytes, or has spaces or control characters"
    )]
    BadName,
    #[error("`{name}`: the part after `:` is not canonical base 64")]
    BadBase64 { name: String },
    #[error("`{name}`: {got} bytes, but a {what} has {want}")]
    BadLength {
        name: String,
        what: &'static str,
        got: usize,
        want: usize,
    },
    #[error("`{name}`: not a valid Ed25519 {what}")]
    Invalid { name: String, what: &'static str },
}

/// Splits `NAME:BASE64` and decodes the base 64 to exactly `want` bytes.
fn split<const N: usize>(s: &str, what: &'static str) -> Result<(String, [u8; N]), KeyError> {
    let (name, b64) = s.split_once(':').ok_or(KeyError::NoColon)?;
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(KeyError::BadName);
    }
    let bytes = base64::decode(b64).ok_or_else(|| KeyError::BadBase64 { name: name.into() })?;
    let got = bytes.len();
    let arr: [u8; N] = bytes.try_into().map_err(|_| KeyError::BadLength {
        name: name.into(),
        what,
        got,
        want: N,
    })?;
    Ok((name.to_string(), arr))
}

/// A public key (`NAME:BASE64` of 32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// One key, surrounding whitespace (the file's newline) ignored.
    pub fn parse(s: &str) -> Result<PublicKey, KeyError> {
        let (name, bytes) = split::<32>(s.trim(), "public key")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Invalid {
            name: name.clone(),
            what: "public key",
        })?;
        Ok(PublicKey { name, key })
    }

    /// Whether `sig` is this key's signature of `msg`.
    pub fn verifies(&self, msg: &[u8], sig: &Signature) -> bool {
        let s = ed25519_dalek::Signature::from_bytes(&sig.bytes);
        sig.name == self.name && self.key.verify_strict(msg, &s).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, base64::encode(self.key.as_bytes()))
    }
}

/// A secret key (`NAME:BASE64` of libsodium's 64 bytes: seed, public key).
#[derive(Clone)]
pub struct SecretKey {
    pub name: String,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    /// Never shows the key itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.name)
    }
}

impl SecretKey {
    /// One key; its two halves must agree (a corrupt file is refused).
    pub fn parse(s: &str) -> Result<SecretKey, KeyError> {
        let (name, bytes) = split::<64>(s.trim(), "secret key")?;
        let key = SigningKey::from_keypair_bytes(&bytes).map_err(|_| KeyError::Invalid {
            name: name.clone(),
            what: "secret key (its public half does not match its seed)",
        })?;
        Ok(SecretKey { name, key })
    }

    /// The key for a 32-byte seed (what `nix-store
    /// --generate-binary-cache-key` draws at random).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> SecretKey {
        SecretKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature {
            name: self.name.clone(),
            bytes: self.key.sign(msg).to_bytes(),
        }
    }
}

/// A signature (`NAME:BASE64` of 64 bytes), naming the key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub bytes: [u8; 64],
}

impl Signature {
    pub fn parse(s: &str) -> Result<Signature, KeyError> {
        let (name, bytes) = split::<64>(s, "signature")?;
        Ok(Signature { name, bytes })
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, base64::encode(&self.bytes))
    }
}

/// The trusted-keys file: one public key per line; `#` comments and blank
/// lines allowed. A bad line is an error naming it (never skipped: a key
/// meant to be trusted that is silently dropped would lock the user out
/// with a misleading message, or worse, trust nothing while looking armed).
pub fn parse_keys(text: &str) -> Result<Vec<PublicKey>, LineError> {
    let mut keys: Vec<PublicKey> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let k = PublicKey::parse(line).map_err(|e| LineError::new(i + 1, e.to_string()))?;
        if keys.iter().any(|o| o.name == k.name) {
            return Err(LineError::new(
                i + 1,
                format!("key `{}` given twice", k.name),
            ));
        }
        keys.push(k);
    }
    Ok(keys)
}

/// Why a signed text is not trusted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SigError {
    #[error("it is not signed, and the initrd trusts only {trusted}")]
    Unsigned { trusted: String },
    #[error("it is signed by {signers}, none of which the initrd trusts (it trusts {trusted})")]
    UnknownKey { signers: String, trusted: String },
    #[error("its signature by the trusted key {key} does not match its contents")]
    Bad { key: String },
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// The name of the trusted key that signed `msg`, or why none did. Any one
/// good signature by a trusted key is enough, as for Nix's store paths.
pub fn check(msg: &[u8], sigs: &[Signature], trusted: &[PublicKey]) -> Result<String, SigError> {
    let trusted_names = || names(trusted.iter().map(|k| k.name.as_str()));
    let mut bad = None;
    for s in sigs {
        for k in trusted.iter().filter(|k| k.name == s.name) {
            if k.verifies(msg, s) {
                return Ok(k.name.clone());
            }
            bad.get_or_insert_with(|| k.name.clone());
        }
    }
    match bad {
        Some(key) => Err(SigError::Bad { key }),
        None if sigs.is_empty() => Err(SigError::Unsigned {
            trusted: trusted_names(),
        }),
        None => Err(SigError::UnknownKey {
            signers: names(sigs.iter().map(|s| s.name.as_str())),
            trusted: trusted_names(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key pair as `nix-store --generate-binary-cache-key` writes it
    /// (made from a fixed seed here; the builder's tests use real Nix).
    pub fn keypair(name: &str, seed: u8) -> (String, String) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let secret = format!("{name}:{}", base64::encode(&sk.to_keypair_bytes()));
        let public = format!("{name}:{}", base64::encode(sk.verifying_key().as_bytes()));
        (secret, public)
    }

    #[test]
    fn sign_and_check() {
        let (s, p) = keypair("test-1", 7);
        let sk = SecretKey::parse(&format!("{s}\n")).unwrap();
        let pk = PublicKey::parse(&p).unwrap();
        assert_eq!(sk.public(), pk);
        assert_eq!(pk.to_string(), p);
        let sig = sk.sign(b"hello");
        assert_eq!(Signature::parse(&sig.to_string()).unwrap(), sig);
        assert_eq!(
            check(
                b"hello",
                std::slice::from_ref(&sig),
                std::slice::from_ref(&pk)
            )
            .unwrap(),
            "test-1"
        );
        assert_eq!(
            check(
                b"hellO",
                std::slice::from_ref(&sig),
                std::slice::from_ref(&pk)
            )
            .unwrap_err(),
            SigError::Bad {
                key: "test-1".into()
            }
        );
        let (_, other) = keypair("other", 8);
        let other = PublicKey::parse(&other).unwrap();
        let e = check(
            b"hello",
            std::slice::from_ref(&sig),
            std::slice::from_ref(&other),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is signed by test-1, none of which the initrd trusts (it trusts other)"
        );
        let e = check(b"hello", &[], &[other.clone(), pk.clone()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is not signed, and the initrd trusts only other, test-1"
        );
        // A key with the right name but other bytes: a bad signature.
        let (_, impostor) = keypair("test-1", 9);
        let impostor = PublicKey::parse(&impostor).unwrap();
        assert!(matches!(
            check(b"hello", std::slice::from_ref(&sig), &[impostor]),
            Err(SigError::Bad { .. })
        ));
        // One good signature among others is enough.
        let stranger = SecretKey::parse(&keypair("x", 3).0).unwrap().sign(b"hello");
        assert!(check(b"hello", &[stranger, sig], &[pk]).is_ok());
    }

    #[test]
    fn bad_keys_are_named() {
        let (s, p) = keypair("k", 1);
        assert_eq!(PublicKey::parse("nocolon"), Err(KeyError::NoColon));
        assert_eq!(PublicKey::parse(":AAAA"), Err(KeyError::BadName));
        assert_eq!(PublicKey::parse("a b:AAAA"), Err(KeyError::BadName));
        assert_eq!(
            PublicKey::parse("k:not base64!"),
            Err(KeyError::BadBase64 { name: "k".into() })
        );
        let e = PublicKey::parse(&s).unwrap_err().to_string();
        assert_eq!(e, "`k`: 64 bytes, but a public key has 32");
        let e = SecretKey::parse(&p).unwrap_err().to_string();
        assert_eq!(e, "`k`: 32 bytes, but a secret key has 64");
        // A secret key whose halves disagree.
        let mut raw = base64::decode(s.split_once(':').unwrap().1).unwrap();
        raw[40] ^= 1;
        let e = SecretKey::parse(&format!("k:{}", base64::encode(&raw))).unwrap_err();
        assert!(matches!(e, KeyError::Invalid { .. }), "{e}");
        assert!(Signature::parse("k:AAAA").is_err());
        assert!(format!("{:?}", SecretKey::parse(&s).unwrap()) == "SecretKey(k)");
    }

    #[test]
    fn keys_file() {
        let (_, a) = keypair("a", 1);
        let (_, b) = keypair("b", 2);
        let keys = parse_keys(&format!("# trusted\n{a}\n\n{b}\n")).unwrap();
        assert_eq!(keys.len(), 2);
        let e = parse_keys(&format!("{a}\nb:xyz\n")).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(parse_keys(&format!("{a}\n{a}\n")).unwrap_err().line, 2);
        assert!(parse_keys("").unwrap().is_empty());
    }
}

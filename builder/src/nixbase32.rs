//! Nix's base-32 encoding (the one in store path hashes and `sha256:` NAR
//! hashes): alphabet without `e o u t`, least significant bits first, the
//! string written from the last digit to the first.

pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Length of the encoding of `n` bytes.
pub fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let lo = u16::from(bytes[i]) >> j;
        let hi = if i + 1 < bytes.len() {
            u16::from(bytes[i + 1]) << (8 - j)
        } else {
            0
        };
        out.push(char::from(ALPHABET[usize::from((lo | hi) & 0x1f)]));
    }
    out
}

/// Decodes a Nix base-32 string into `n` bytes; `None` when a character is
/// not a digit, the length is not `encoded_len(n)`, or bits overflow.
pub fn decode(s: &str, n: usize) -> Option<Vec<u8>> {
    if s.len() != encoded_len(n) {
        return None;
    }
    let mut out = vec![0u8; n];
    for (k, c) in s.bytes().rev().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == c)? as u16;
        let b = k * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        if i + 1 < n {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return None;
        }
    }
    Some(out)
}

pub fn is_digit(b: u8) -> bool {
    ALPHABET.contains(&b)
}

/// Folds a digest into `len` bytes by XOR, as Nix's `compressHash` does for
/// store path hashes (32 bytes of SHA-256 into 20).
pub fn compress(digest: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, b) in digest.iter().enumerate() {
        out[i % len] ^= b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn matches_nix_vectors() {
        // `nix hash convert --to nix32 sha256:$(printf abc | sha256sum)`
        let d = Sha256::digest(b"abc");
        assert_eq!(
            encode(&d),
            "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
        );
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x1f]), "0z");
        assert_eq!(encode(&compress(&d, 20)).len(), 32);
    }

    #[test]
    fn decode_round_trips() {
        let d = Sha256::digest(b"abc");
        assert_eq!(decode(&encode(&d), 32).unwrap(), d.to_vec());
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            assert_eq!(decode(&encode(&v), v.len()).unwrap(), v);
        }
        assert!(decode("e", 1).is_none());
        assert!(decode("0", 1).is_none());
        // 52 digits hold 260 bits; the top 4 must be zero for 32 bytes.
        assert!(decode(&format!("z{}", &encode(&d)[1..]), 32).is_none());
    }

    #[test]
    fn digits() {
        assert!(is_digit(b'0') && is_digit(b'z') && is_digit(b'd'));
        assert!(!is_digit(b'e') && !is_digit(b'o') && !is_digit(b'u') && !is_digit(b't'));
        assert!(!is_digit(b'A') && !is_digit(b'-'));
    }
}

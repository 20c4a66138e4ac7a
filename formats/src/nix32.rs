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
    let mut s = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let lo = u16::from(bytes[i]) >> j;
        let hi = bytes.get(i + 1).map_or(0, |&x| u16::from(x) << (8 - j));
        s.push(char::from(ALPHABET[usize::from((lo | hi) & 0x1f)]));
    }
    s
}

/// Decodes a Nix base-32 string into `n` bytes. Fails when the length is not
/// `encoded_len(n)`, a character is not a digit, or the first digit has set
/// bits beyond the `n` bytes (Nix rejects those too).
pub fn decode(s: &str, n: usize) -> Result<Vec<u8>, String> {
    if s.len() != encoded_len(n) {
        return Err(format!(
            "{} digits, the encoding of {n} bytes has {}",
            s.len(),
            encoded_len(n)
        ));
    }
    let mut out = vec![0u8; n];
    for (k, c) in s.bytes().rev().enumerate() {
        let digit = ALPHABET
            .iter()
            .position(|&d| d == c)
            .ok_or_else(|| format!("{:?} is not a nix base-32 digit", char::from(c)))?
            as u16;
        let b = k * 5;
        // With the length checked, `i < n` for every digit.
        let (i, j) = (b / 8, b % 8);
        let v = digit << j;
        out[i] |= (v & 0xff) as u8;
        let carry = v >> 8;
        if i + 1 < n {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err("excess bits in the first digit".into());
        }
    }
    Ok(out)
}

/// Whether `b` is in [`ALPHABET`] (a range test: the registration checks
/// 32 of them per store path, and a search of the alphabet was a tenth of
/// loading 10,000 paths).
pub fn is_digit(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'd' | b'f'..=b'n' | b'p'..=b's' | b'v'..=b'z')
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

    /// SHA-256 of `abc`.
    const ABC: [u8; 32] = [
        186, 120, 22, 191, 143, 1, 207, 234, 65, 65, 64, 222, 93, 174, 34, 35, 176, 3, 97, 163,
        150, 23, 122, 156, 180, 16, 255, 97, 242, 0, 21, 173,
    ];

    #[test]
    fn matches_nix_vectors() {
        // `nix hash convert --to nix32 sha256:$(printf abc | sha256sum)`
        assert_eq!(
            encode(&ABC),
            "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
        );
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x1f]), "0z");
        assert_eq!(encode(&compress(&ABC, 20)).len(), 32);
    }

    #[test]
    fn decode_round_trips() {
        assert_eq!(decode(&encode(&ABC), 32).unwrap(), ABC.to_vec());
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            assert_eq!(decode(&encode(&v), v.len()).unwrap(), v);
        }
        assert!(decode("e", 1).is_err());
        assert!(decode("0", 1).is_err());
        // 52 digits hold 260 bits; the top 4 must be zero for 32 bytes.
        let e = decode(&format!("z{}", &encode(&ABC)[1..]), 32).unwrap_err();
        assert_eq!(e, "excess bits in the first digit");
        let e = decode(&format!("e{}", &encode(&ABC)[1..]), 32).unwrap_err();
        assert_eq!(e, "'e' is not a nix base-32 digit");
    }

    #[test]
    fn digits() {
        assert!(is_digit(b'0') && is_digit(b'z') && is_digit(b'd'));
        assert!(!is_digit(b'e') && !is_digit(b'o') && !is_digit(b'u') && !is_digit(b't'));
        assert!(!is_digit(b'A') && !is_digit(b'-'));
        for b in 0..=255u8 {
            assert_eq!(is_digit(b), ALPHABET.contains(&b), "{b}");
        }
    }

    #[test]
    fn compresses_as_nix() {
        assert_eq!(compress(&[1, 2, 3, 4, 5], 2), [1 ^ 3 ^ 5, 2 ^ 4]);
        assert_eq!(compress(&ABC, 32), ABC.to_vec());
    }
}

#![no_main]
//! Hex and base 64 (SSH key data, Nix hashes): decoding never panics, what
//! decodes encodes back to the same text (base 64 is canonical), and every
//! byte string survives encode then decode.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::{base64, hex};

fuzz_target!(|data: &[u8]| {
    assert_eq!(hex::decode(&hex::encode(data)).as_deref(), Some(data));
    if !data.is_empty() {
        assert_eq!(base64::decode(&base64::encode(data)).as_deref(), Some(data));
    }
    let text = String::from_utf8_lossy(data);
    if let Some(bytes) = hex::decode(&text) {
        assert_eq!(hex::encode(&bytes), text.to_ascii_lowercase());
    }
    if let Some(bytes) = base64::decode(&text) {
        assert_eq!(base64::encode(&bytes), text);
    }
});

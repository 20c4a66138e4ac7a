#![no_main]
//! Compressed modules and firmware (xz, zstd, gzip), as init unpacks them
//! when the kernel cannot: any bytes unpack or are refused, never more than
//! the limit, and the limit is exact (output of n bytes unpacks under a
//! limit of n and is refused under n - 1). The first byte picks the codec
//! (its low two bits; 3 is xz's prefix form, as for an initrd) and the
//! limit (2^(its upper six bits), at most 1 MiB); the rest is the file.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::unpack::{Codec, UnpackError, unpack, unxz_prefix};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let limit = 1usize << (pick >> 2).min(20);
    let Some(&codec) = Codec::ALL.get(usize::from(pick & 3)) else {
        // The xz stream at the start of `data`, and where it ends.
        if let Ok((out, used)) = unxz_prefix(data, limit) {
            assert!(out.len() <= limit && used <= data.len());
            let (again, n) = unxz_prefix(&data[..used], limit).expect("the stream alone");
            assert_eq!((again, n), (out.clone(), used));
            assert_eq!(unpack(Codec::Xz, data, limit).expect("as unpack"), out);
        }
        return;
    };
    match unpack(codec, data, limit) {
        Ok(out) => {
            assert!(out.len() <= limit);
            let exact = unpack(codec, data, out.len()).expect("under a limit of its length");
            assert_eq!(exact, out);
            if let Some(less) = out.len().checked_sub(1) {
                let e = unpack(codec, data, less).expect_err("under a limit one short");
                assert!(
                    matches!(e, UnpackError::TooLarge { limit } if limit == less),
                    "{e}"
                );
            }
        }
        Err(UnpackError::TooLarge { limit: l }) => assert_eq!(l, limit),
        Err(UnpackError::Corrupt { .. }) => {}
    }
});

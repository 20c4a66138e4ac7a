//! `--max-image-size`: the closure split into layers, each image under the
//! limit, by store path (a path never spans two images).
//!
//! The rule, chosen so that a rebuilt stick or netboot cache changes as
//! little as possible:
//!
//! 1. Each path gets its *height*: 0 when it refers to no other path, else
//!    one more than the highest path it refers to. Nix hashes cascade
//!    upwards (a changed path changes every path above it), so the paths of
//!    low height are the ones that change least.
//! 2. The paths are ordered by height, then by name without the hash part
//!    (`glibc-2.39`), then by the whole base name: an order that does not
//!    depend on the order the closure was given in.
//! 3. Layers are filled in that order from the bottom, each until the next
//!    path would take it over the limit, or its names over
//!    [`MAX_NAME_BYTES`] (next fit). A path's cost is its
//!    NAR size, an upper bound of what it takes in an image when its data
//!    does not compress (squashfs' inodes are smaller than NAR's framing);
//!    every layer keeps room for the closure's registration and the
//!    image's own tables. The written images are checked against the limit
//!    all the same.
//!
//! So a layer and every layer below it stay the same, byte for byte, when
//! the paths that changed all sort after it: an update of the system's
//! top (its configuration, the system path, a few packages) rewrites the
//! top layers only.
//!
//! Non-goals: no optimal packing (bin packing would move paths between
//! layers when one changes), no splitting of a path.

use nixlive_formats::registration::{HASH_PART_LEN, PathInfo};
use nixlive_formats::size::human;
use std::collections::HashMap;

/// Room kept in every image for its superblock, tables and directories
/// beyond the NAR sizes (rounded: a few bytes more or less of registration
/// must not move a layer's boundary).
pub const IMAGE_OVERHEAD: u64 = 1 << 20;

/// The most bytes of base names (each with a NUL) one layer holds:
/// mksquashfs takes the paths as arguments, and Linux limits a command
/// line to 2 MiB with the environment (some 15,000 paths of typical names;
/// a closure of 100,000 paths becomes seven layers).
pub const MAX_NAME_BYTES: u64 = 1 << 20;

/// What `medium` defaults to: just under FAT32's largest file (4 GiB - 1).
pub const FAT32_LIMIT: u64 = (4 << 30) - (1 << 20);

/// Why the closure cannot be split under the limit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error(
        "store path {path} is {size} bytes ({}), more than --max-image-size {limit} ({}) allows \
         for one path ({room} bytes after the image's tables and the registration)",
        human(*size),
        human(*limit)
    )]
    PathTooLarge {
        path: String,
        size: u64,
        limit: u64,
        room: u64,
    },
    #[error(
        "--max-image-size {limit} leaves no room for store paths: each image needs \
         {reserve} bytes for its tables and the registration"
    )]
    LimitTooSmall { limit: u64, reserve: u64 },
}

/// Why a `--max-image-size` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a size: give bytes, or a number with K, M, G or T (binary: 1K = 1024)")]
pub struct SizeError(String);

/// Parses `4294967295`, `4095M`, `4G`, `1.5G`, `4GiB` (binary units);
/// `none` or `0` is no limit.
pub fn parse_size(s: &str) -> Result<Option<u64>, SizeError> {
    let bad = || SizeError(s.to_string());
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.as_bytes().last() {
        Some(b'K' | b'k') => (&t[..t.len() - 1], 10),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 20),
        Some(b'G' | b'g') => (&t[..t.len() - 1], 30),
        Some(b'T' | b't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = v * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    let bytes = bytes as u64;
    Ok((bytes > 0).then_some(bytes))
}

/// The room a path has in an image of `limit` bytes when the closure's
/// registration takes `registration` bytes.
pub fn room(limit: u64, registration: u64) -> Result<u64, SplitError> {
    let reserve = registration.div_ceil(1 << 20) * (1 << 20) + IMAGE_OVERHEAD;
    limit
        .checked_sub(reserve)
        .filter(|r| *r > 0)
        .ok_or(SplitError::LimitTooSmall { limit, reserve })
}

/// Splits `paths` (the part of the closure to split; references may point
/// anywhere in `all`) into layers of at most `room` bytes of NAR and
/// [`MAX_NAME_BYTES`] of names, bottom layer first, each layer's base
/// names sorted. `limit` is only for the error message.
pub fn split(
    all: &[PathInfo],
    paths: &[String],
    room: u64,
    limit: u64,
) -> Result<Vec<Vec<String>>, SplitError> {
    let heights = heights(all);
    let by_name: HashMap<&str, &PathInfo> = all.iter().map(|i| (i.base_name(), i)).collect();
    let mut order: Vec<(usize, &str, &str, u64)> = paths
        .iter()
        .map(|n| {
            let size = by_name.get(n.as_str()).map_or(0, |i| i.nar_size);
            let h = heights.get(n.as_str()).copied().unwrap_or(0);
            (h, name_part(n), n.as_str(), size)
        })
        .collect();
    order.sort_unstable();
    order.dedup_by(|a, b| a.2 == b.2);
    let mut layers: Vec<Vec<String>> = Vec::new();
    let (mut used, mut names) = (0u64, 0u64);
    for (_, _, name, size) in order {
        let name_bytes = name.len() as u64 + 1;
        if size > room {
            return Err(SplitError::PathTooLarge {
                path: format!("{}/{name}", nixlive_formats::paths::STORE_DIR),
                size,
                limit,
                room,
            });
        }
        match layers.last_mut() {
            Some(l) if used + size <= room && names + name_bytes <= MAX_NAME_BYTES => {
                l.push(name.to_string());
                used += size;
                names += name_bytes;
            }
            _ => {
                layers.push(vec![name.to_string()]);
                used = size;
                names = name_bytes;
            }
        }
    }
    for l in &mut layers {
        l.sort();
    }
    Ok(layers)
}

/// `<name>` of `<hash>-<name>`.
fn name_part(base: &str) -> &str {
    base.get(HASH_PART_LEN + 1..).unwrap_or(base)
}

/// Each path's height (see the module's rule), by base name. Iterative
/// (a chain of 100,000 paths must not overflow the stack); references
/// outside `all` and to the path itself do not count, and a cycle (which
/// the closure stage already refuses) ends the walk rather than looping.
fn heights(all: &[PathInfo]) -> HashMap<&str, usize> {
    let index: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, p)| (p.path.as_str(), i))
        .collect();
    let refs: Vec<Vec<usize>> = all
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.references
                .iter()
                .filter_map(|r| index.get(r.as_str()).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut height: Vec<Option<usize>> = vec![None; all.len()];
    let mut on_stack = vec![false; all.len()];
    for start in 0..all.len() {
        let mut stack = vec![(start, 0usize)];
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if height[node].is_some() {
                stack.pop();
                continue;
            }
            on_stack[node] = true;
            if let Some(&child) = refs[node].get(*next) {
                *next += 1;
                if height[child].is_none() && !on_stack[child] {
                    stack.push((child, 0));
                }
                continue;
            }
            let h = refs[node]
                .iter()
                .filter_map(|&c| height[c])
                .map(|h| h + 1)
                .max()
                .unwrap_or(0);
            height[node] = Some(h);
            on_stack[node] = false;
            stack.pop();
        }
    }
    all.iter()
        .zip(height)
        .map(|(p, h)| (p.base_name(), h.unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: usize) -> String {
        // 32 nix32 characters, different for every i.
        let digits = b"0123456789abcdfghijklmnpqrsvwxyz";
        (0..32)
            .map(|k| digits[((i >> (5 * (k % 6))) % 32) ^ (k % 2)] as char)
            .collect::<String>()
    }

    fn p(name: &str, i: usize, size: u64, refs: &[&PathInfo]) -> PathInfo {
        PathInfo::new(
            format!("/nix/store/{}-{name}", hash(i)),
            [0; 32],
            size,
            refs.iter().map(|r| r.path.clone()).collect(),
        )
    }

    fn names(v: &[PathInfo]) -> Vec<String> {
        v.iter().map(|i| i.base_name().to_string()).collect()
    }

    /// glibc <- libs <- apps <- system, with sizes in MiB.
    fn closure(system_size: u64) -> Vec<PathInfo> {
        const M: u64 = 1 << 20;
        let glibc = p("glibc", 1, 40 * M, &[]);
        let tz = p("tzdata", 2, 5 * M, &[]);
        let ssl = p("openssl", 3, 20 * M, &[&glibc]);
        let zlib = p("zlib", 4, M, &[&glibc]);
        let curl = p("curl", 5, 30 * M, &[&ssl, &zlib, &glibc]);
        let big = p("firmware", 6, 60 * M, &[]);
        let app = p("app", 7, 50 * M, &[&curl, &tz]);
        let sys = p("system", 8, system_size, &[&app, &big, &glibc]);
        vec![glibc, tz, ssl, zlib, curl, big, app, sys]
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4095M"), Ok(Some(4095 << 20)));
        assert_eq!(parse_size("4G"), Ok(Some(4 << 30)));
        assert_eq!(parse_size("4GiB"), Ok(Some(4 << 30)));
        assert_eq!(parse_size("1.5G"), Ok(Some(3 << 29)));
        assert_eq!(parse_size("1000"), Ok(Some(1000)));
        assert_eq!(parse_size("none"), Ok(None));
        assert_eq!(parse_size("0"), Ok(None));
        for bad in ["", "G", "-1G", "4X", "1e9", "four"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heights_follow_references() {
        let c = closure(1);
        let h = heights(&c);
        let of = |n: &str| h[c.iter().find(|i| i.path.ends_with(n)).unwrap().base_name()];
        assert_eq!(
            ["glibc", "tzdata", "openssl", "curl", "app", "system"].map(of),
            [0, 0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn layers_fill_from_the_bottom_by_height() {
        const M: u64 = 1 << 20;
        let c = closure(M);
        let layers = split(&c, &names(&c), 100 * M, 101 * M).unwrap();
        let short: Vec<Vec<&str>> = layers
            .iter()
            .map(|l| {
                let mut v: Vec<&str> = l.iter().map(|n| name_part(n)).collect();
                v.sort();
                v
            })
            .collect();
        // Height 0 (firmware, glibc, tzdata: 105 MiB) does not fit in one:
        // tzdata opens the second layer, which the paths of height 1 and 2
        // fill up to app.
        assert_eq!(
            short,
            [
                vec!["firmware", "glibc"],
                vec!["curl", "openssl", "tzdata", "zlib"],
                vec!["app", "system"],
            ]
        );
        let flat: Vec<&str> = layers.iter().flatten().map(|n| name_part(n)).collect();
        assert_eq!(flat.len(), c.len());
        for l in &layers {
            let sum: u64 = l
                .iter()
                .map(|n| c.iter().find(|i| i.base_name() == n).unwrap().nar_size)
                .sum();
            assert!(sum <= 100 * M, "{l:?} holds {sum}");
        }
    }

    #[test]
    fn the_split_is_deterministic() {
        const M: u64 = 1 << 20;
        let c = closure(M);
        let a = split(&c, &names(&c), 70 * M, 71 * M).unwrap();
        let mut rev = c.clone();
        rev.reverse();
        let mut given = names(&c);
        given.reverse();
        assert_eq!(split(&rev, &given, 70 * M, 71 * M).unwrap(), a);
        assert_eq!(split(&c, &names(&c), 70 * M, 71 * M).unwrap(), a);
        assert!(a.len() >= 4, "{a:?}");
    }

    #[test]
    fn a_changed_top_leaves_the_lower_layers_alone() {
        const M: u64 = 1 << 20;
        let before = closure(M);
        // The system path changed (new hash, new size), as after a
        // configuration change; everything below it is the same.
        let mut after = closure(3 * M);
        let sys = after.pop().unwrap();
        after.push(PathInfo::new(
            sys.path.replace(&hash(8), &hash(9)),
            [1; 32],
            sys.nar_size,
            sys.references,
        ));
        let a = split(&before, &names(&before), 70 * M, 71 * M).unwrap();
        let b = split(&after, &names(&after), 70 * M, 71 * M).unwrap();
        let n = a.len();
        assert_eq!(a[..n - 1], b[..n - 1], "{a:?}\n{b:?}");
        assert_ne!(a[n - 1], b[n - 1]);
    }

    #[test]
    fn a_path_over_the_limit_is_named() {
        const M: u64 = 1 << 20;
        let c = closure(M);
        let e = split(&c, &names(&c), 55 * M, 57 * M).unwrap_err();
        let firmware = format!("/nix/store/{}-firmware", hash(6));
        assert_eq!(
            e,
            SplitError::PathTooLarge {
                path: firmware.clone(),
                size: 60 * M,
                limit: 57 * M,
                room: 55 * M
            }
        );
        let text = e.to_string();
        assert!(
            text.contains(&firmware) && text.contains("62914560"),
            "{text}"
        );
        assert!(text.contains("57.0 MiB"), "{text}");
    }

    #[test]
    fn room_keeps_the_registration_and_tables() {
        assert_eq!(room(100 << 20, 1), Ok(98 << 20));
        assert_eq!(room(100 << 20, 0), Ok(99 << 20));
        assert_eq!(
            room(1 << 20, 10),
            Err(SplitError::LimitTooSmall {
                limit: 1 << 20,
                reserve: 2 << 20
            })
        );
    }

    #[test]
    fn a_layer_holds_at_most_a_command_line_of_names() {
        // 40,000 paths of no size: the names alone make layers.
        let c: Vec<PathInfo> = (0..40_000).map(|i| p("x", i, 0, &[])).collect();
        let layers = split(&c, &names(&c), u64::MAX, u64::MAX).unwrap();
        // Each name: 32 hash characters, `-x` and a NUL.
        let per = MAX_NAME_BYTES / 35;
        assert_eq!(layers.len() as u64, 40_000u64.div_ceil(per));
        for l in &layers {
            let bytes: u64 = l.iter().map(|n| n.len() as u64 + 1).sum();
            assert!(bytes <= MAX_NAME_BYTES);
        }
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let mut c: Vec<PathInfo> = Vec::new();
        for i in 0..100_000 {
            let refs: Vec<&PathInfo> = c.last().into_iter().collect();
            let info = p("link", i, 1, &refs);
            c.push(info);
        }
        let h = heights(&c);
        assert_eq!(h[c[99_999].base_name()], 99_999);
    }
}

#![no_main]
//! A round trip of postboot's B-tree page writer: a registration derived
//! from the bytes (always valid, up to MAX_PATHS paths with names up to
//! Nix's 211 characters, any NAR size and registration time, up to seven
//! references each, no cycles) is loaded into a new database by `db::load_new`, whose
//! tables and indexes the page writer fills; SQLite's `pragma
//! integrity_check` finds the file sound (every page, every index against
//! its table), every row reads back as registered, and every path is found
//! through its index.
//!
//! The bytes: a path count (2 bytes), the registration time (8), the hash
//! encoding (1), then the rest, read over and over, for every path's hash
//! part, name, NAR hash, size, deriver and references.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::nix32::ALPHABET;
use nixlive_formats::registration::{
    Borrowed, HashFormat, MAX_NAME_LEN, PathInfo, Registration, render,
};
use nixlive_postboot::db;
use rusqlite::{Connection, OptionalExtension};

/// Enough for index trees of three levels (long names), while an input
/// still takes milliseconds (SQLite makes, checks and reads back the file).
const MAX_PATHS: usize = 500;
const NAME: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?=";

/// The input's bytes after its header, read round and round.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at % self.data.len().max(1)).copied();
        self.at += 1;
        b.unwrap_or(0)
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, _| (v << 8) | u64::from(self.byte()))
    }

    /// A name of 1 to `max` characters Nix accepts (not starting with a dot).
    fn name(&mut self, max: usize) -> String {
        let len = 1 + usize::from(self.byte()) * max / 256;
        let mut n: String = (0..len)
            .map(|_| char::from(NAME[usize::from(self.byte()) % NAME.len()]))
            .collect();
        if n.starts_with('.') {
            n.replace_range(..1, "a");
        }
        n
    }
}

fn hash_part(bytes: &mut Bytes<'_>, unique: u64) -> String {
    // 19 digits from the input (the sort order), 13 from `unique` (65 bits).
    let mut h: String = (0..19)
        .map(|_| char::from(ALPHABET[usize::from(bytes.byte() % 32)]))
        .collect();
    h.extend((0..13).map(|i| char::from(ALPHABET[((unique >> (5 * i)) & 31) as usize])));
    h
}

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(11));
    let mut head = head.to_vec();
    head.resize(11, 0);
    let n = usize::from(u16::from_le_bytes([head[0], head[1]])) % (MAX_PATHS + 1);
    let now = i64::from_le_bytes(head[2..10].try_into().unwrap());
    let format = if head[10] & 1 == 0 {
        HashFormat::ClosureInfo
    } else {
        HashFormat::DumpDb
    };
    let salt = u64::from(head[10]) << 56;
    let mut b = Bytes { data: rest, at: 0 };

    let mut infos: Vec<PathInfo> = Vec::with_capacity(n);
    let mut ref_counts = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let f = b.byte();
        // Distinct for every i: an odd multiplier is a bijection.
        let unique = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
        let mut name = b.name(MAX_NAME_LEN);
        if name.ends_with(".drv") {
            // A derivation is refused by the loader (Nix reads it too).
            name.pop();
        }
        let path = format!("/nix/store/{}-{name}", hash_part(&mut b, unique));
        let mut nar_hash = [0u8; 32];
        nar_hash.iter_mut().for_each(|x| *x = b.byte());
        let nar_size = (b.u64() >> (b.byte() % 64)).max(1);
        let deriver = (f & 1 != 0).then(|| {
            let unique = b.u64();
            let d = hash_part(&mut b, unique);
            format!("/nix/store/{d}-{}.drv", b.name(MAX_NAME_LEN - 4))
        });
        let mut info = PathInfo::new(path, nar_hash, nar_size, Vec::new());
        info.deriver = deriver;
        infos.push(info);
        ref_counts.push(usize::from(f >> 1) % 8);
    }
    for (i, &count) in ref_counts.iter().enumerate() {
        // A closure has no cycles but a path's reference to itself: each
        // path refers to those made before it, or to itself.
        let mut refs: Vec<String> = (0..count)
            .map(|_| {
                let t = usize::from(u16::from_le_bytes([b.byte(), b.byte()])) % (i + 1);
                infos[t].path.clone()
            })
            .collect();
        refs.sort_unstable();
        refs.dedup();
        infos[i].references = refs;
    }
    let text = render(&infos, format);
    let Some(reg) = Borrowed::parse(text.as_bytes()) else {
        let why = Registration::parse(text.as_bytes()).err();
        panic!("a valid registration does not parse: {why:?}");
    };

    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("nixlive-fuzz-btree.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let counts = db::load_new(&dir, &reg, now)
        .expect("a new database is loaded")
        .expect("the database is new");
    let refs_total: usize = infos.iter().map(|p| p.references.len()).sum();
    assert_eq!((counts.added, counts.new_references), (n, refs_total));
    assert_eq!(
        counts.sqlite_inserts, None,
        "the page writer took every row"
    );

    let conn = Connection::open(dir.join("db.sqlite")).unwrap();
    let check: Vec<String> = conn
        .prepare("pragma integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(check, ["ok"], "SQLite finds the pages unsound");

    // Nix's ids are ranks in store-path order.
    infos.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    type Row = (
        i64,
        String,
        String,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let want: Vec<Row> = infos
        .iter()
        .zip(1..)
        .map(|(p, id)| {
            (
                id,
                p.path.clone(),
                p.nar_hash_base16(),
                now,
                p.deriver.clone(),
                i64::try_from(p.nar_size).ok(),
                None,
            )
        })
        .collect();
    let got: Vec<Row> = conn
        .prepare(
            "select id, path, hash, registrationTime, deriver, narSize, \
             coalesce(ultimate, sigs, ca) from ValidPaths order by id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, want, "ValidPaths");
    let id = |path: &str| {
        infos
            .binary_search_by(|p| p.path.as_str().cmp(path))
            .unwrap() as i64
            + 1
    };
    let mut want_refs: Vec<(i64, i64)> = infos
        .iter()
        .flat_map(|p| p.references.iter().map(|r| (id(&p.path), id(r))))
        .collect();
    want_refs.sort_unstable();
    let got_refs: Vec<(i64, i64)> = conn
        .prepare("select referrer, reference from Refs order by referrer, reference")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got_refs, want_refs, "Refs");
    // Every path through the path index, every reference through IndexReference.
    let mut by_path = conn
        .prepare("select id from ValidPaths where path = ?1")
        .unwrap();
    let mut by_ref = conn
        .prepare("select count(*) from Refs indexed by IndexReference where reference = ?1")
        .unwrap();
    let mut referrers = vec![0i64; n + 1];
    for &(_, t) in &want_refs {
        referrers[t as usize] += 1;
    }
    for (p, want_id) in infos.iter().zip(1i64..) {
        let got: Option<i64> = by_path
            .query_row([&p.path], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(got, Some(want_id), "{}", p.path);
        let count: i64 = by_ref.query_row([want_id], |r| r.get(0)).unwrap();
        assert_eq!(
            count, referrers[want_id as usize],
            "referrers of {}",
            p.path
        );
    }
    drop(by_path);
    drop(by_ref);
    drop(conn);
    std::fs::remove_dir_all(&dir).unwrap();
});

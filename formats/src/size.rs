//! Human-readable sizes in binary units: `10 B`, `1.5 KiB`, `3.0 GiB`
//! (one decimal above bytes), as init lists devices and the builder lists
//! what it made.

/// The units, smallest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    B,
    KiB,
    MiB,
    GiB,
    TiB,
}

const UNITS: [(Unit, &str); 5] = [
    (Unit::B, "B"),
    (Unit::KiB, "KiB"),
    (Unit::MiB, "MiB"),
    (Unit::GiB, "GiB"),
    (Unit::TiB, "TiB"),
];

/// `bytes` in the largest unit (up to TiB) that keeps the number at least 1.
pub fn human(bytes: u64) -> String {
    human_up_to(bytes, Unit::TiB)
}

/// As [`human`], but never in a unit above `largest` (`1536.0 GiB` rather
/// than `1.5 TiB` for `Unit::GiB`): the builder's listing has always
/// stopped at GiB, and keeps doing so.
pub fn human_up_to(bytes: u64, largest: Unit) -> String {
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() && UNITS[i].0 < largest {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(10), "10 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(700 << 20), "700.0 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(human(3 << 40), "3.0 TiB");
        assert_eq!(human(5000 << 40), "5000.0 TiB");
    }

    #[test]
    fn capped() {
        assert_eq!(human_up_to(1536, Unit::GiB), "1.5 KiB");
        assert_eq!(human_up_to(3 << 30, Unit::GiB), "3.0 GiB");
        assert_eq!(human_up_to(3 << 40, Unit::GiB), "3072.0 GiB");
        assert_eq!(human_up_to(4096, Unit::B), "4096 B");
    }
}

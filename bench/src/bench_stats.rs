//! What the bench programs share: the summary of a set of samples and
//! the number of rounds (`NIXLIVE_BENCH_ROUNDS`).

/// Median (of an even count: the mean of the middle two), min and max.
/// `v` must not be empty.
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n.is_multiple_of(2) {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    } else {
        s[n / 2]
    };
    (median, s[0], s[n - 1])
}

/// `NIXLIVE_BENCH_ROUNDS` (default 5); anything but a positive number is
/// an error that names it.
pub fn rounds() -> Result<usize, String> {
    parse_rounds(std::env::var("NIXLIVE_BENCH_ROUNDS").ok().as_deref())
}

fn parse_rounds(v: Option<&str>) -> Result<usize, String> {
    match v {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("NIXLIVE_BENCH_ROUNDS={s:?} is not a positive number")),
        None => Ok(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(stats(&[7.0]), (7.0, 7.0, 7.0));
    }

    #[test]
    fn rounds_are_positive() {
        assert_eq!(parse_rounds(None), Ok(5));
        assert_eq!(parse_rounds(Some("3")), Ok(3));
        assert!(parse_rounds(Some("0")).unwrap_err().contains("\"0\""));
        assert!(parse_rounds(Some("x")).is_err());
    }
}

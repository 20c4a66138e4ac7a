//! Shared helpers for nixlive's strict, line-based, versioned text formats.

use thiserror::Error;

/// An error in a line-based file, naming the line (1-based) it is on.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {msg}")]
pub struct LineError {
    pub line: usize,
    pub msg: String,
}

impl LineError {
    pub fn new(line: usize, msg: impl Into<String>) -> Self {
        LineError {
            line,
            msg: msg.into(),
        }
    }
}

/// Splits `text` into (1-based line number, fields) for each non-comment line.
///
/// Strict: the text must end with a newline, fields are separated by exactly
/// one space, no tabs, no leading or trailing spaces, no blank lines. Lines
/// starting with `#` are comments.
pub fn records(text: &str) -> Result<Vec<(usize, Vec<&str>)>, LineError> {
    if text.is_empty() {
        return Err(LineError::new(1, "file is empty"));
    }
    if !text.ends_with('\n') {
        let n = text.lines().count();
        return Err(LineError::new(n, "last line does not end with a newline"));
    }
    let mut out = Vec::new();
    for (i, line) in text[..text.len() - 1].split('\n').enumerate() {
        let n = i + 1;
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            return Err(LineError::new(n, "blank line"));
        }
        if line.contains(['\t', '\r']) || line.chars().any(|c| c.is_control()) {
            return Err(LineError::new(
                n,
                "control character (tab, CR, ...) in line",
            ));
        }
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.iter().any(|f| f.is_empty()) {
            return Err(LineError::new(
                n,
                "fields must be separated by exactly one space, with none leading or trailing",
            ));
        }
        out.push((n, fields));
    }
    Ok(out)
}

/// Checks the first record is `<magic> <version>` with a supported version.
pub fn check_header(
    recs: &[(usize, Vec<&str>)],
    magic: &str,
    supported: u32,
) -> Result<(), LineError> {
    header_version(recs, magic, supported..=supported).map(|_| ())
}

/// Checks the first record is `<magic> <version>` with a version in
/// `supported` (the newest is the one named in messages); returns it.
pub fn header_version(
    recs: &[(usize, Vec<&str>)],
    magic: &str,
    supported: std::ops::RangeInclusive<u32>,
) -> Result<u32, LineError> {
    let newest = *supported.end();
    let Some((n, f)) = recs.first() else {
        return Err(LineError::new(
            1,
            format!("missing header `{magic} {newest}`"),
        ));
    };
    if f.len() != 2 || f[0] != magic {
        return Err(LineError::new(
            *n,
            format!("expected header `{magic} {newest}`"),
        ));
    }
    let reads = if supported.start() == supported.end() {
        format!("version {newest}")
    } else {
        format!("versions {} to {newest}", supported.start())
    };
    match f[1].parse::<u32>() {
        Ok(v) if supported.contains(&v) => Ok(v),
        Ok(v) => Err(LineError::new(
            *n,
            format!("{magic} version {v} is not supported (this build reads {reads})"),
        )),
        Err(_) => Err(LineError::new(*n, format!("bad version `{}`", f[1]))),
    }
}

/// True when `name` is a relative path with no `..`, `.` or empty component.
pub fn is_safe_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// True when `p` is an absolute path with no `..`, `.` or empty component.
pub fn is_clean_absolute(p: &str) -> bool {
    p.len() > 1 && p.starts_with('/') && is_safe_relative(&p[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_strict() {
        assert_eq!(records("a b\n").unwrap(), vec![(1, vec!["a", "b"])]);
        assert_eq!(records("# c\na\n").unwrap(), vec![(2, vec!["a"])]);
        assert_eq!(records("a\n\nb\n").unwrap_err().line, 2);
        assert_eq!(records("a\nb").unwrap_err().line, 2);
        assert_eq!(records("a  b\n").unwrap_err().line, 1);
        assert_eq!(records("a\tb\n").unwrap_err().line, 1);
        assert_eq!(records(" a\n").unwrap_err().line, 1);
        assert!(records("").is_err());
    }

    #[test]
    fn paths() {
        assert!(is_safe_relative("a/b.squashfs"));
        assert!(!is_safe_relative("../a"));
        assert!(!is_safe_relative("a//b"));
        assert!(!is_safe_relative("/a"));
        assert!(!is_safe_relative("./a"));
        assert!(is_clean_absolute("/nix/store/x"));
        assert!(!is_clean_absolute("/"));
        assert!(!is_clean_absolute("/nix/../etc"));
        assert!(!is_clean_absolute("nix"));
    }
}

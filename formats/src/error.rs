//! How an error reaches a person: its message, then each `source` in turn,
//! `: `-separated. Error types in nixlive keep their cause as the source
//! and never repeat it in their own message, so each cause is printed once.

use std::error::Error;

/// `e` and its sources: `reading /x: Permission denied (os error 13)`.
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn each_cause_once() {
        let e = Outer("/x", std::io::Error::other("gone"));
        assert_eq!(chain(&e), "reading /x: gone");
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
    }
}

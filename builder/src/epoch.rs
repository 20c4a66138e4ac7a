//! The one timestamp of a build: `SOURCE_DATE_EPOCH` (0 when unset), so
//! the same inputs give the same bytes.
//!
//! Non-goals: no clamping of input files' times (every output entry gets
//! this time, not its source's).

use anyhow::{Context, Result, anyhow};
use std::time::{Duration, SystemTime};

/// `SOURCE_DATE_EPOCH`, or 0 when unset.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(std::env::VarError::NotPresent) => Ok(0),
        Err(e) => Err(anyhow!("SOURCE_DATE_EPOCH: {e}")),
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH `{s}` is not a number of seconds")),
    }
}

/// The epoch as a cpio mtime.
pub fn mtime32(epoch: u64) -> Result<u32> {
    u32::try_from(epoch)
        .map_err(|_| anyhow!("SOURCE_DATE_EPOCH {epoch} does not fit the initrd's 32-bit mtime"))
}

/// The mtime the medium tree gets: the epoch, but at least 1 s past 1970
/// (xorriso takes an mtime of 0 for "unknown" and stamps the current time
/// into some records then).
pub fn tree_time(epoch: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(epoch.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(mtime32(5).unwrap(), 5);
        assert!(mtime32(1 << 32).is_err());
        assert_eq!(
            tree_time(0),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1)
        );
        assert_eq!(
            tree_time(9),
            SystemTime::UNIX_EPOCH + Duration::from_secs(9)
        );
    }
}

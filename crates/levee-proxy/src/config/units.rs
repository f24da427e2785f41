//! Durations and sizes as people write them in config: `"250ms"`, `"10s"`,
//! `"1m"`, `"64KiB"`, `"1MB"`.
//!
//! The parsing itself is done by `humantime` and `bytesize`; this file only
//! gives their failures one clear message with an example of what works.

use std::time::Duration;

/// A duration that `humantime` cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration {text:?}: expected e.g. \"250ms\" or \"10s\"")]
pub struct BadDuration {
    /// The text as written.
    pub text: String,
}

/// A size that `bytesize` cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad size {text:?}: expected e.g. \"64KiB\" or \"1MB\"")]
pub struct BadSize {
    /// The text as written.
    pub text: String,
}

/// Parse a duration such as `"250ms"`, `"10s"`, `"1m"` or `"1h 30m"`.
/// A unit is required: a bare `"10"` is ambiguous and rejected.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    humantime::parse_duration(text).map_err(|_| BadDuration {
        text: text.to_owned(),
    })
}

/// Parse a size in bytes such as `"64KiB"` (65 536), `"1MB"` (1 000 000) or
/// `"512"` (bytes).
pub fn parse_size(text: &str) -> Result<u64, BadSize> {
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| BadSize {
            text: text.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_what_works() {
        for text in ["10 parsecs", "10", "", "-1s", "ten seconds"] {
            let error = parse_duration(text).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("bad duration {text:?}: expected e.g. \"250ms\" or \"10s\"")
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1 MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("512"), Ok(512));
    }

    #[test]
    fn bad_sizes_say_what_works() {
        let error = parse_size("lots").unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"bad size "lots": expected e.g. "64KiB" or "1MB""#
        );
        assert!(parse_size("-1KB").is_err());
    }
}

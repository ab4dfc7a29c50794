//! Verification times: parsing the `--at` argument and printing certificate
//! validity bounds, both in RFC 3339 UTC.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time could not be parsed as RFC 3339 UTC.
#[derive(Debug, thiserror::Error)]
#[error("invalid time {input:?}: expected RFC 3339 in UTC, e.g. 2025-06-01T00:00:00Z ({reason})")]
pub struct TimeError {
    pub input: String,
    pub reason: String,
}

/// Parses `2025-06-01T00:00:00Z` (fractional seconds allowed; UTC only).
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, TimeError> {
    humantime::parse_rfc3339(s.trim()).map_err(|e| TimeError {
        input: s.to_string(),
        reason: e.to_string(),
    })
}

/// Formats a time as RFC 3339 UTC with second precision. Times before 1970 print
/// as the epoch's negative offset in seconds, which X.509 never needs here.
pub fn format_rfc3339(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(d.as_secs()))
            .to_string(),
        Err(e) => format!("-{}s", e.duration().as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_utc() {
        let t = parse_rfc3339("2025-12-10T22:14:21Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_765_404_861
        );
        assert_eq!(format_rfc3339(t), "2025-12-10T22:14:21Z");
    }

    #[test]
    fn rejects_garbage() {
        let e = parse_rfc3339("yesterday").unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }
}

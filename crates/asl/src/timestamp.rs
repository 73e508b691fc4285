//! RFC 3339 timestamps as Step Functions accepts them.

use chrono::{DateTime, FixedOffset};

/// Parses an RFC 3339 timestamp ("ISO-8601 extended offset date-time"): a `T` separator and an
/// explicit offset (`Z` or `+hh:mm`) are required; fractional seconds are optional.
pub fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[10] != b'T' {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// Formats a UTC instant the way AWS renders context timestamps (`2024-01-01T00:00:00.000Z`).
pub fn format_millis(epoch_millis: i64) -> String {
    match DateTime::from_timestamp_millis(epoch_millis) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => String::from("1970-01-01T00:00:00.000Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc3339_only() {
        assert!(parse_timestamp("2016-03-14T01:59:00Z").is_some());
        assert!(parse_timestamp("2016-03-14T01:59:00.123456789+02:00").is_some());
        assert!(parse_timestamp("2016-03-14 01:59:00Z").is_none());
        assert!(parse_timestamp("2016-03-14T01:59:00").is_none());
        assert!(parse_timestamp("2016-13-14T01:59:00Z").is_none());
        assert!(parse_timestamp("2016-12-14T25:59:00Z").is_none());
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }
}

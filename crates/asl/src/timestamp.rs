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
    use chrono::{Datelike, Timelike};
    match DateTime::from_timestamp_millis(epoch_millis) {
        // Four-digit years written digit by digit (no format-string parsing per call: this runs
        // several times per execution); chrono's `%Y` signs other years, so they go through it.
        Some(t) if (0..=9999).contains(&t.year()) => {
            let mut b = *b"0000-00-00T00:00:00.000Z";
            let mut put = |at: usize, width: usize, mut n: u32| {
                for i in (at..at + width).rev() {
                    b[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                }
            };
            put(0, 4, t.year().unsigned_abs());
            put(5, 2, t.month());
            put(8, 2, t.day());
            put(11, 2, t.hour());
            put(14, 2, t.minute());
            put(17, 2, t.second());
            put(20, 3, t.timestamp_subsec_millis().min(999));
            b.iter().map(|&c| char::from(c)).collect()
        }
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

    #[test]
    fn format_millis_matches_chrono() {
        let mut ms: i64 = -62_167_219_200_000 - 5; // just before year 0
        let cases = std::iter::from_fn(|| {
            ms = ms
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407)
                % 400_000_000_000_000;
            Some(ms)
        })
        .take(2000)
        .chain([
            0,
            1,
            999,
            1_000,
            -1,
            1_763_760_000_123,
            253_402_300_799_999,
            253_402_300_800_000,
        ]);
        for m in cases {
            let expected = match DateTime::from_timestamp_millis(m) {
                Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                None => String::from("1970-01-01T00:00:00.000Z"),
            };
            assert_eq!(format_millis(m), expected, "{m}");
        }
    }
}

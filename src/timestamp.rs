//! Times as evoctl writes them: a moment given in milliseconds since the Unix epoch (as
//! CloudWatch and Evolution give it) as RFC 3339 UTC, by `humantime`: to the second in verdicts
//! and disconnects, with milliseconds on log lines. One place, so every output says a time alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn system_time(ms: i64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(u64::try_from(ms).ok()?))
}

/// `2026-12-02T19:48:50Z` (whole seconds, rounded down); `None` before the epoch.
pub fn to_second(ms: i64) -> Option<String> {
    system_time(ms).map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

/// `2026-12-02T19:48:50.799Z` (always three digits of milliseconds); `-` before the epoch.
pub fn to_milli(ms: i64) -> String {
    system_time(ms).map_or_else(|| "-".to_owned(), |t| humantime::format_rfc3339_millis(t).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_down_and_millis_keep_three_digits() {
        assert_eq!(to_second(1_764_622_074_799).as_deref(), Some("2025-12-01T20:47:54Z"));
        assert_eq!(to_milli(1_764_622_074_799), "2025-12-01T20:47:54.799Z");
        assert_eq!(to_milli(1_764_622_074_000), "2025-12-01T20:47:54.000Z");
        assert_eq!((to_second(-1), to_milli(-1)), (None, "-".to_owned()));
    }
}

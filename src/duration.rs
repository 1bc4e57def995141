//! Durations as an operator writes them: on the command line (`--timeout 90s`, `--since 15m`,
//! `2h 30m`; a bare number is seconds) and in the environment (`EVOCTL_*_TIMEOUT`). Parsing is
//! `humantime`'s; this module adds the bare-seconds form, the messages and the one reader of a
//! duration from an environment variable, so every such variable is read and refused alike.

use crate::error::{Error, Result};
use std::time::Duration;

/// A duration like `500ms`, `90s`, `15m`, `2h 30m` or `1d`; a bare number is seconds.
pub fn parse(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map(Duration::from_secs).map_err(|_| format!("`{text}` is too long a duration"));
    }
    humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("`{text}` has an unknown unit `{unit}`: use ms, s, m, h or d (e.g. 90s, 15m, 2h)")
        }
        humantime::DurationError::NumberOverflow => format!("`{text}` is too long a duration"),
        _ => format!("`{text}` is not a duration: use e.g. 90s, 15m, 2h"),
    })
}

/// The duration in the environment variable `name`, or `default` when it is unset or empty; a
/// value that is not a duration above zero is a usage error naming the variable and its value.
pub fn from_env(name: &str, default: Duration) -> Result<Duration> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => parse(&value).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            Error::usage(
                format!("{name}={value:?} is not a duration"),
                format!("set {name} to a duration above zero such as 500ms, 30s or 2m, or unset it"),
            )
        }),
        _ => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bare_seconds() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("2h 30m"), Ok(Duration::from_secs(9000)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse(" 30 "), Ok(Duration::from_secs(30)));
        assert_eq!(parse("15x"), Err("`15x` has an unknown unit `x`: use ms, s, m, h or d (e.g. 90s, 15m, 2h)".into()));
        assert_eq!(parse("m"), Err("`m` is not a duration: use e.g. 90s, 15m, 2h".into()));
        assert_eq!(parse("99999999999999999999"), Err("`99999999999999999999` is too long a duration".into()));
    }
}

//! Durations written the way Polytomic's API writes them: Go's `time.Duration` syntax
//! (`"90s"`, `"30m"`, `"1h"`, `"1h30m"`, `"1.5h"`), used by `healthcheck_interval`.

use std::time::Duration;

/// Why a duration string was refused. The message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{input}' is not a duration: {reason} (expected a number with a unit, e.g. 90s, 30m, 1h or 1h30m; units ns, us, ms, s, m, h)"
)]
pub struct DurationError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Nanoseconds per unit, longest suffixes first so `ms` is not read as `m` + `s`.
const UNITS: &[(&str, f64)] = &[
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("ms", 1e6),
    ("h", 3_600e9),
    ("m", 60e9),
    ("s", 1e9),
];

/// Parses a Go-style duration: one or more `<number><unit>` terms, summed. Negative values,
/// a bare number (other than `0`) and unknown units are refused.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    if text.starts_with('-') {
        return Err(fail("it is negative"));
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total_nanos = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(fail("a unit must follow a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| fail("a term's number is malformed"))?;
        rest = &rest[number_len..];
        let Some((unit, nanos)) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit)) else {
            return Err(fail(if rest.is_empty() {
                "the last number has no unit"
            } else {
                "the unit is unknown"
            }));
        };
        rest = &rest[unit.len()..];
        total_nanos += number * nanos;
    }
    // Keep to whole nanoseconds and far from overflow (Go's own limit is about 290 years).
    if !total_nanos.is_finite() || total_nanos > 9.0e18 {
        return Err(fail("it is too large"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Formats a duration the way Go prints it (`1h30m0s`, `45s`, `0s`), whole seconds only.
pub fn format_go_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let (hours, minutes, seconds) = (total / 3600, (total % 3600) / 60, total % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1.5h", 5400),
            ("2h45m30s", 9930),
            ("0", 0),
            (" 5m ", 300),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_go_duration(text).unwrap(),
                Duration::from_secs(seconds),
                "{text}"
            );
        }
        assert_eq!(
            parse_go_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_go_duration("7us").unwrap(), Duration::from_micros(7));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for (text, reason) in [
            ("", "it is empty"),
            ("-1h", "it is negative"),
            ("10", "the last number has no unit"),
            ("1d", "the unit is unknown"),
            ("h", "a unit must follow a number"),
            ("1..5h", "a term's number is malformed"),
        ] {
            let error = parse_go_duration(text).unwrap_err();
            assert_eq!(error.reason, reason, "{text}");
            assert!(error.to_string().contains("e.g. 90s"), "{error}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_go_duration(Duration::from_secs(600)), "10m0s");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        for seconds in [1, 59, 60, 3599, 3600, 86_400, 90_061] {
            let duration = Duration::from_secs(seconds);
            assert_eq!(
                parse_go_duration(&format_go_duration(duration)).unwrap(),
                duration
            );
        }
    }
}

//! Salesforce datetime formats (spec §1.5, §12).
//!
//! Reading accepts `2024-01-01T00:00:00.000+0000` (REST), `...+00:00`, `...Z`, with or
//! without milliseconds (or any fraction), and epoch milliseconds (Bulk 1.0 JSON).
//! Writing always produces `yyyy-MM-ddTHH:mm:ss.SSSZ` in UTC.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value as Json;

/// Parses a Salesforce datetime string in any of the forms Salesforce emits.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(parsed) = DateTime::<FixedOffset>::parse_from_str(text, format) {
            return Some(parsed.with_timezone(&Utc));
        }
    }
    // No offset at all: Salesforce means UTC.
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

/// Parses a datetime from JSON: a string in any Salesforce form, or epoch milliseconds.
pub fn parse_datetime_json(value: &Json) -> Option<DateTime<Utc>> {
    match value {
        Json::String(text) => parse_datetime(text),
        Json::Number(n) => n.as_i64().and_then(DateTime::from_timestamp_millis),
        _ => None,
    }
}

/// Parses a `yyyy-MM-dd` date.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

/// Formats a datetime the way Ferry writes it to Salesforce: `2024-01-01T00:00:00.000Z`.
pub fn format_datetime(value: DateTime<Utc>) -> String {
    value.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid")
            .with_timezone(&Utc)
    }

    #[test]
    fn parses_every_salesforce_form() {
        let expected = at("2024-01-01T00:00:00Z");
        for text in [
            "2024-01-01T00:00:00.000+0000",
            "2024-01-01T00:00:00+0000",
            "2024-01-01T00:00:00.000+00:00",
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T00:00:00.000Z",
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.000",
            "2024-01-01T01:00:00.000+0100",
            "2023-12-31T19:00:00-05:00",
            "2023-12-31T19:00:00.000000-0500",
        ] {
            assert_eq!(parse_datetime(text), Some(expected), "{text}");
        }
        assert_eq!(
            parse_datetime("2024-01-01T00:00:00.123+0000"),
            Some(at("2024-01-01T00:00:00.123Z"))
        );
        assert_eq!(parse_datetime("yesterday"), None);
        assert_eq!(parse_datetime("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn parses_epoch_millis() {
        assert_eq!(
            parse_datetime_json(&serde_json::json!(1730962800000i64)),
            Some(at("2024-11-07T07:00:00Z"))
        );
        assert_eq!(
            parse_datetime_json(&serde_json::json!("2024-11-07T07:00:00.000+0000")),
            Some(at("2024-11-07T07:00:00Z"))
        );
        assert_eq!(parse_datetime_json(&serde_json::json!(null)), None);
    }

    #[test]
    fn formats_with_millis_and_z() {
        assert_eq!(
            format_datetime(at("2024-01-01T00:00:00Z")),
            "2024-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_datetime(at("2024-01-01T00:00:00.5+01:00")),
            "2023-12-31T23:00:00.500Z"
        );
        assert_eq!(
            parse_date("2024-02-29"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        assert_eq!(parse_date("2023-02-29"), None);
    }
}

//! Compact cell values and the Salesforce wire formats for them (spec §1.5).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::Value as Json;

/// One stored cell. 24 bytes; strings are boxed so a row is a flat `Vec<Val>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// Absent value.
    Null,
    /// checkbox / boolean.
    Bool(bool),
    /// int fields.
    Int(i64),
    /// double, currency, percent.
    Num(f64),
    /// Every text-like type, ids (15-char form in storage) and picklists.
    Str(Box<str>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds since the epoch, UTC.
    DateTime(i64),
}

impl Val {
    /// Text value helper.
    pub fn str(s: &str) -> Val {
        Val::Str(s.into())
    }

    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// Borrowed text, when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Numeric view (ints, numbers).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Num(n) => Some(*n),
            _ => None,
        }
    }
}

const EPOCH_DAYS_CE: i32 = 719_163;

/// Converts a date to days since the epoch.
pub fn date_to_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce_compat() - EPOCH_DAYS_CE
}

/// Converts days since the epoch to a date.
pub fn days_to_date(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_CE).unwrap_or_default()
}

trait CeCompat {
    fn num_days_from_ce_compat(&self) -> i32;
}
impl CeCompat for NaiveDate {
    fn num_days_from_ce_compat(&self) -> i32 {
        use chrono::Datelike;
        self.num_days_from_ce()
    }
}

/// REST datetime format: `2024-01-01T00:00:00.000+0000`.
pub fn format_datetime(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        None => "1970-01-01T00:00:00.000+0000".into(),
    }
}

/// `yyyy-MM-dd`.
pub fn format_date(days: i32) -> String {
    days_to_date(days).format("%Y-%m-%d").to_string()
}

/// Parses the datetime forms Salesforce accepts on input (with or without millis, `Z`,
/// `±HH:mm` or `±HHmm`, or a bare date meaning midnight UTC).
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.timestamp_millis());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_time(NaiveTime::MIN).and_utc().timestamp_millis())
}

/// Parses `yyyy-MM-dd` (a datetime is truncated to its date, as Salesforce does).
pub fn parse_date(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(date_to_days(d));
    }
    parse_datetime(s).map(|ms| ms.div_euclid(86_400_000) as i32)
}

/// Days since epoch of a millisecond timestamp.
pub fn ms_to_days(ms: i64) -> i32 {
    ms.div_euclid(86_400_000) as i32
}

/// JSON number for a stored double, keeping integral values as `100.0`-style floats.
pub fn num_json(n: f64) -> Json {
    serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
}

/// Plain wire rendering of a value (ids are rendered by the caller, which knows the type).
pub fn to_json(v: &Val) -> Json {
    match v {
        Val::Null => Json::Null,
        Val::Bool(b) => Json::Bool(*b),
        Val::Int(i) => Json::from(*i),
        Val::Num(n) => num_json(*n),
        Val::Str(s) => Json::String(s.to_string()),
        Val::Date(d) => Json::String(format_date(*d)),
        Val::DateTime(ms) => Json::String(format_datetime(*ms)),
    }
}

/// Text rendering used by formulas and `TEXT()`.
pub fn to_text(v: &Val) -> String {
    match v {
        Val::Null => String::new(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Num(n) => {
            if n.fract() == 0.0 && n.abs() < 1e15 {
                format!("{}", *n as i64)
            } else {
                n.to_string()
            }
        }
        Val::Str(s) => s.to_string(),
        Val::Date(d) => format_date(*d),
        Val::DateTime(ms) => format_datetime(*ms).replace(".000+0000", "Z"),
    }
}

/// Total order used by ORDER BY and comparisons (nulls handled by callers).
pub fn cmp_vals(a: &Val, b: &Val) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => Ordering::Less,
        (_, Val::Null) => Ordering::Greater,
        (Val::Str(x), Val::Str(y)) => {
            // ASCII text compares without lower-casing copies (same order as below).
            let c = if x.is_ascii() && y.is_ascii() {
                x.bytes()
                    .map(|b| b.to_ascii_lowercase())
                    .cmp(y.bytes().map(|b| b.to_ascii_lowercase()))
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            };
            if c == Ordering::Equal { x.cmp(y) } else { c }
        }
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Date(x), Val::Date(y)) => x.cmp(y),
        (Val::DateTime(x), Val::DateTime(y)) => x.cmp(y),
        (Val::Date(x), Val::DateTime(y)) => (i64::from(*x) * 86_400_000).cmp(y),
        (Val::DateTime(x), Val::Date(y)) => x.cmp(&(i64::from(*y) * 86_400_000)),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => to_text(a).cmp(&to_text(b)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_round_trip() {
        let ms = parse_datetime("2024-01-01T00:00:00Z").unwrap_or(0);
        assert_eq!(format_datetime(ms), "2024-01-01T00:00:00.000+0000");
        assert_eq!(parse_datetime("2024-01-01T01:00:00.000+0100"), Some(ms));
        assert_eq!(parse_datetime("2024-01-01T01:00:00+01:00"), Some(ms));
        assert_eq!(parse_datetime("2024-01-01"), Some(ms));
        assert_eq!(parse_datetime("nope"), None);
    }

    #[test]
    fn dates() {
        let d = parse_date("2024-02-29").unwrap_or(0);
        assert_eq!(format_date(d), "2024-02-29");
        assert_eq!(parse_date("1970-01-01"), Some(0));
    }

    #[test]
    fn val_is_small() {
        assert!(std::mem::size_of::<Val>() <= 24);
    }
}

//! Literal escaping, decoding and formatting.
//!
//! For query builders (Ferry's Salesforce client builds SOQL from synced data and must
//! never allow injection):
//! - [`quote_string`]: any string → a complete quoted literal `'...'`;
//! - [`escape_string`]: the same without the quotes;
//! - [`escape_like`]: content for a LIKE pattern, with `%` and `_` escaped too, so the
//!   caller can add its own wildcards: `format!("Name LIKE '{}%'", escape_like(prefix))`;
//! - [`format_datetime`] / [`format_date`]: unquoted date/datetime literals;
//! - [`is_valid_identifier`] / [`is_valid_field_path`]: check object and field API names
//!   before interpolating them (names cannot be quoted in SOQL).
//!
//! For the parser: [`decode_string`] and [`decode_like`] turn the raw content of a string
//! token into a value, and [`parse_date`] / [`parse_datetime`] validate unquoted
//! date/datetime literals.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};

/// Quotes `value` as a SOQL string literal, escaping every special character
/// (`\` `'` `"` newline, carriage return, tab, backspace, form feed).
///
/// ```
/// assert_eq!(ferry_soql::quote_string("O'Brien\\"), r"'O\'Brien\\'");
/// ```
pub fn quote_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    push_escaped(&mut out, value, false);
    out.push('\'');
    out
}

/// Escapes `value` for use inside single quotes (without adding the quotes).
pub fn escape_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_escaped(&mut out, value, false);
    out
}

/// Escapes `value` for use inside a quoted LIKE pattern (without adding the quotes): like
/// [`escape_string`], and also `%` → `\%` and `_` → `\_`, so the value matches literally.
///
/// ```
/// let pattern = format!("'{}%'", ferry_soql::escape_like("50%_off"));
/// assert_eq!(pattern, r"'50\%\_off%'");
/// ```
pub fn escape_like(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_escaped(&mut out, value, true);
    out
}

fn push_escaped(out: &mut String, value: &str, like: bool) {
    for c in value.chars() {
        push_escaped_char(out, c, like);
    }
}

fn push_escaped_char(out: &mut String, c: char, like: bool) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\'' => out.push_str("\\'"),
        '"' => out.push_str("\\\""),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '%' if like => out.push_str("\\%"),
        '_' if like => out.push_str("\\_"),
        other => out.push(other),
    }
}

/// Quotes a LIKE pattern as held in the AST (see [`crate::like`]): `\\`, `\%` and `\_`
/// are already escapes and are printed as they are; every other character is escaped as
/// in [`quote_string`]. A backslash before any other character is dropped (it means that
/// character literally), and a trailing lone backslash is printed as `\\`.
pub fn quote_like_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 2);
    out.push('\'');
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next @ ('\\' | '%' | '_')) => {
                    out.push('\\');
                    out.push(next);
                }
                Some(next) => push_escaped_char(&mut out, next, false),
                None => out.push_str("\\\\"),
            }
        } else {
            push_escaped_char(&mut out, c, false);
        }
    }
    out.push('\'');
    out
}

/// Why a string literal could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Character offset of the offending backslash within the raw content.
    pub offset: usize,
    /// The offending sequence, e.g. `\x`.
    pub sequence: String,
}

/// Decodes the raw content of a string literal (between the quotes) into its value.
///
/// Escapes: `\'` `\"` `\\` `\n` `\r` `\t` `\b` `\f`. Outside LIKE, `\%` and `\_` are
/// accepted leniently and mean `%` and `_`.
///
/// # Errors
/// Any other backslash sequence.
pub fn decode_string(raw: &str) -> Result<String, DecodeError> {
    decode(raw, false)
}

/// Decodes the raw content of a LIKE pattern: like [`decode_string`], except that `\\`,
/// `\%` and `\_` stay escaped so the matcher can tell a literal `%` from a wildcard (see
/// [`crate::like`]).
///
/// # Errors
/// Any other backslash sequence.
pub fn decode_like(raw: &str) -> Result<String, DecodeError> {
    decode(raw, true)
}

fn decode(raw: &str, like: bool) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().enumerate();
    while let Some((offset, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let next = chars.next().map(|(_, next)| next);
        match next {
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(kept @ ('\\' | '%' | '_')) if like => {
                out.push('\\');
                out.push(kept);
            }
            Some(plain @ ('\\' | '%' | '_')) => out.push(plain),
            other => {
                return Err(DecodeError {
                    offset,
                    sequence: other.map_or_else(|| "\\".to_owned(), |c| format!("\\{c}")),
                });
            }
        }
    }
    Ok(out)
}

/// Formats a datetime as an unquoted SOQL literal in UTC: `2024-01-01T00:00:00Z`, with
/// milliseconds (`.123`) or microseconds when the value has them (nanoseconds are printed
/// with nine digits). Years must be within 0000–9999 to re-parse.
pub fn format_datetime(value: DateTime<Utc>) -> String {
    let nanos = value.timestamp_subsec_nanos();
    let fraction = if nanos == 0 {
        String::new()
    } else if nanos.is_multiple_of(1_000_000) {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    };
    format!("{}{fraction}Z", value.format("%Y-%m-%dT%H:%M:%S"))
}

/// Formats a date as an unquoted SOQL literal: `2024-01-31`.
pub fn format_date(value: NaiveDate) -> String {
    value.format("%Y-%m-%d").to_string()
}

/// Whether `name` is a plausible object or field API name (`Account`, `My_Field__c`,
/// `ns__Thing__r`): an ASCII letter followed by ASCII letters, digits and underscores, at
/// most 255 characters. Anything else must not be interpolated into SOQL.
pub fn is_valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= 255
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `path` is a dotted path of valid identifiers (`Account.Owner.Name`).
pub fn is_valid_field_path(path: &str) -> bool {
    path.split('.').all(is_valid_identifier)
}

/// Parses an unquoted date literal `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = digits(&bytes[0..4])?;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

/// Parses an unquoted datetime literal `YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|+hh:mm|-hh:mm)`
/// and normalises it to UTC.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't') {
        return None;
    }
    let date = parse_date(text.get(..10)?)?;
    let time = &bytes[11..];
    if time.len() < 9 || time[2] != b':' || time[5] != b':' {
        return None;
    }
    let hour = digits(&time[0..2])?;
    let minute = digits(&time[3..5])?;
    let second = digits(&time[6..8])?;
    let mut rest = &time[8..];
    let mut nanos = 0;
    if let Some((b'.', after_dot)) = rest.split_first() {
        let count = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 || count > 9 {
            return None;
        }
        let value = digits(&after_dot[..count])?;
        nanos = value * 10u32.pow(9 - u32::try_from(count).ok()?);
        rest = &after_dot[count..];
    }
    let offset_minutes: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = i64::from(hours * 60 + minutes);
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let local = date.and_time(time).and_utc();
    local.checked_sub_signed(TimeDelta::try_minutes(offset_minutes)?)
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn quote_string_escapes_every_special_character() {
        assert_eq!(quote_string(""), "''");
        assert_eq!(quote_string("plain"), "'plain'");
        assert_eq!(
            quote_string("a'b\"c\\d\ne\rf\tg\u{8}h\u{c}i%_"),
            "'a\\'b\\\"c\\\\d\\ne\\rf\\tg\\bh\\fi%_'"
        );
        // The classic injection attempt stays inside the literal.
        assert_eq!(quote_string("x' OR Name != '"), "'x\\' OR Name != \\''");
    }

    #[test]
    fn escape_like_escapes_wildcards() {
        assert_eq!(escape_like("100%_a'\\"), "100\\%\\_a\\'\\\\");
        assert_eq!(escape_string("100%_"), "100%_");
    }

    #[test]
    fn decode_handles_every_escape() {
        assert_eq!(
            decode_string("a\\'b\\\"c\\\\d\\ne\\rf\\tg\\bh\\fi\\%\\_").as_deref(),
            Ok("a'b\"c\\d\ne\rf\tg\u{8}h\u{c}i%_")
        );
        assert_eq!(
            decode_like("a\\%b\\_c\\\\d\\'%_").as_deref(),
            Ok("a\\%b\\_c\\\\d'%_")
        );
        assert_eq!(
            decode_string("ab\\x"),
            Err(DecodeError {
                offset: 2,
                sequence: "\\x".to_owned()
            })
        );
        assert_eq!(
            decode_string("ab\\"),
            Err(DecodeError {
                offset: 2,
                sequence: "\\".to_owned()
            })
        );
    }

    #[test]
    fn quote_like_pattern_keeps_like_escapes() {
        assert_eq!(
            quote_like_pattern("a\\%b\\_c\\\\%_'"),
            "'a\\%b\\_c\\\\%_\\''"
        );
        assert_eq!(quote_like_pattern("a\\zb"), "'azb'");
        assert_eq!(quote_like_pattern("a\\"), "'a\\\\'");
        let pattern = decode_like(&escape_like("50%_\\'x")).expect("decodes");
        assert_eq!(
            quote_like_pattern(&pattern),
            format!("'{}'", escape_like("50%_\\'x"))
        );
    }

    #[test]
    fn datetimes_format_and_parse() {
        let value = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(format_datetime(value), "2024-01-01T00:00:00Z");
        let millis = value + TimeDelta::milliseconds(120);
        assert_eq!(format_datetime(millis), "2024-01-01T00:00:00.120Z");
        let micros = value + TimeDelta::microseconds(5);
        assert_eq!(format_datetime(micros), "2024-01-01T00:00:00.000005Z");
        let nanos = value + TimeDelta::nanoseconds(7);
        assert_eq!(format_datetime(nanos), "2024-01-01T00:00:00.000000007Z");
        for value in [value, millis, micros, nanos] {
            assert_eq!(parse_datetime(&format_datetime(value)), Some(value));
        }
        assert_eq!(format_date(value.date_naive()), "2024-01-01");
    }

    #[test]
    fn datetime_offsets_normalise_to_utc() {
        let expected = Utc
            .with_ymd_and_hms(2024, 1, 31, 8, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(parse_datetime("2024-01-31T10:00:00+02:00"), Some(expected));
        assert_eq!(parse_datetime("2024-01-31T05:30:00-02:30"), Some(expected));
        assert_eq!(parse_datetime("2024-01-31t08:00:00z"), Some(expected));
        assert_eq!(
            parse_datetime("2024-01-31T08:00:00.000+00:00"),
            Some(expected)
        );
        assert_eq!(
            parse_datetime("2024-01-31T08:00:00.000000Z"),
            Some(expected)
        );
        let crossing = Utc
            .with_ymd_and_hms(2023, 12, 31, 22, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(parse_datetime("2024-01-01T01:00:00+03:00"), Some(crossing));
        assert_eq!(
            parse_datetime("2024-01-31T08:00:00.5Z"),
            Some(expected + TimeDelta::milliseconds(500))
        );
        for bad in [
            "2024-01-31T08:00:00",
            "2024-01-31T08:00Z",
            "2024-01-31T25:00:00Z",
            "2024-02-30T08:00:00Z",
            "2024-01-31T08:00:00.Z",
            "2024-01-31T08:00:00.1234567890Z",
            "2024-01-31T08:00:00+0200",
            "2024-01-31T08:00:00+24:00",
            "2024-01-31T08:00:00ZZ",
            "2024-1-31T08:00:00Z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            parse_date("2024-02-29"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "24-01-01",
            "2024-01-001",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        for good in ["Account", "My_Field__c", "ns__Thing__r", "A1", "x"] {
            assert!(is_valid_identifier(good), "{good}");
        }
        for bad in ["", "1A", "_x", "Name'", "a b", "a.b", "Név", "a-b", "a;b"] {
            assert!(!is_valid_identifier(bad), "{bad}");
        }
        assert!(!is_valid_identifier(&"a".repeat(256)));
        assert!(is_valid_field_path("Account.Owner.Name"));
        assert!(!is_valid_field_path("Account..Name"));
        assert!(!is_valid_field_path("Account.Name) OR (Id"));
    }
}

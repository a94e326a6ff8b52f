//! Filter functions (Polytomic's `FilterFunction`) evaluated on model values and on the
//! current values of target records (target filters), and `filter_logic`
//! (`1 AND (2 OR NOT 3)`, 1-based positions over model and target filters alike).
//!
//! Comparisons are typed by the values: two numbers (or numeric strings) compare as
//! numbers, two dates or timestamps (RFC 3339, Salesforce's `+0000` offsets, databases'
//! `YYYY-MM-DD HH:MM:SS[+00]`, or `YYYY-MM-DD`) as instants, everything else as strings. A
//! null value satisfies only `IsNull` and the negative string functions (`Inequality`,
//! `StringDoesNotContain`, `StringNotOneOf`, ...).
//!
//! Target filters are known only once the target has been read, so a row's filters are
//! first combined in three-valued logic ([`combine`]): a row whose model filters already
//! decide the expression is kept or dropped at once, the others wait for the target.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

/// A filter function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum FilterFunction {
    Equality,
    Inequality,
    IsNull,
    IsNotNull,
    True,
    False,
    OnOrAfter,
    OnOrBefore,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
    StringContains,
    StringStartsWith,
    StringEndsWith,
    StringDoesNotContain,
    StringDoesNotStartWith,
    StringDoesNotEndWith,
    StringOneOf,
    StringNotOneOf,
    StringMatchesTrimmed,
    StringLike,
    StringNotLike,
    ArrayContains,
    ArrayDoesNotContain,
    Between,
}

const SUPPORTED: &str = "Equality, Inequality, IsNull, IsNotNull, True, False, OnOrAfter, \
                         OnOrBefore, GreaterThan, GreaterThanEqual, LessThan, LessThanEqual, \
                         StringContains, StringStartsWith, StringEndsWith, StringDoesNotContain, \
                         StringDoesNotStartWith, StringDoesNotEndWith, StringOneOf, \
                         StringNotOneOf, StringMatchesTrimmed, StringLike, StringNotLike, \
                         ArrayContains, ArrayDoesNotContain, Between";

impl FilterFunction {
    /// Parses the API spelling.
    pub fn parse(name: &str) -> Result<FilterFunction, String> {
        use FilterFunction::*;
        Ok(match name {
            "Equality" => Equality,
            "Inequality" => Inequality,
            "IsNull" => IsNull,
            "IsNotNull" => IsNotNull,
            "True" => True,
            "False" => False,
            "OnOrAfter" => OnOrAfter,
            "OnOrBefore" => OnOrBefore,
            "GreaterThan" => GreaterThan,
            "GreaterThanEqual" => GreaterThanEqual,
            "LessThan" => LessThan,
            "LessThanEqual" => LessThanEqual,
            "StringContains" => StringContains,
            "StringStartsWith" => StringStartsWith,
            "StringEndsWith" => StringEndsWith,
            "StringDoesNotContain" => StringDoesNotContain,
            "StringDoesNotStartWith" => StringDoesNotStartWith,
            "StringDoesNotEndWith" => StringDoesNotEndWith,
            "StringOneOf" => StringOneOf,
            "StringNotOneOf" => StringNotOneOf,
            "StringMatchesTrimmed" => StringMatchesTrimmed,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "ArrayContains" => ArrayContains,
            "ArrayDoesNotContain" => ArrayDoesNotContain,
            "Between" => Between,
            "InTheLast" | "RelativeOnOrBefore" | "RelativeOnOrAfter" => {
                return Err(format!(
                    "'{name}' is not supported yet (supported: {SUPPORTED})"
                ));
            }
            other => {
                return Err(format!(
                    "'{other}' is not a filter function (supported: {SUPPORTED})"
                ));
            }
        })
    }

    /// Checks the comparison value's shape.
    pub fn check_value(self, value: Option<&Value>) -> Result<(), String> {
        use FilterFunction::*;
        let value = value.unwrap_or(&Value::Null);
        match self {
            IsNull | IsNotNull | True | False => Ok(()),
            Between => between_bounds(value).map(|_| ()),
            StringOneOf | StringNotOneOf => match value {
                Value::Array(_) | Value::String(_) => Ok(()),
                _ => Err("must be a list of strings".into()),
            },
            _ if value.is_null() => Err("a comparison value is required".into()),
            _ => Ok(()),
        }
    }

    /// Whether `value` (the model's) satisfies the filter against `argument`.
    pub fn matches(self, value: &Value, argument: Option<&Value>) -> bool {
        use FilterFunction::*;
        let argument = argument.unwrap_or(&Value::Null);
        match self {
            IsNull => value.is_null(),
            IsNotNull => !value.is_null(),
            True => truthy(value) == Some(true),
            False => truthy(value) == Some(false),
            Equality => !value.is_null() && compare(value, argument) == Some(Ordering::Equal),
            Inequality => value.is_null() || compare(value, argument) != Some(Ordering::Equal),
            GreaterThan | OnOrAfter | GreaterThanEqual | LessThan | OnOrBefore | LessThanEqual => {
                let Some(order) = compare(value, argument) else {
                    return false;
                };
                match self {
                    GreaterThan => order == Ordering::Greater,
                    GreaterThanEqual | OnOrAfter => order != Ordering::Less,
                    LessThan => order == Ordering::Less,
                    _ => order != Ordering::Greater,
                }
            }
            Between => {
                let Ok((low, high)) = between_bounds(argument) else {
                    return false;
                };
                matches!(
                    compare(value, low),
                    Some(Ordering::Greater | Ordering::Equal)
                ) && matches!(compare(value, high), Some(Ordering::Less | Ordering::Equal))
            }
            StringContains | StringStartsWith | StringEndsWith | StringMatchesTrimmed
            | StringLike => {
                let (Some(text), Some(pattern)) = (text_of(value), text_of(argument)) else {
                    return false;
                };
                string_match(self, &text, &pattern)
            }
            StringDoesNotContain
            | StringDoesNotStartWith
            | StringDoesNotEndWith
            | StringNotLike => {
                let positive = match self {
                    StringDoesNotContain => StringContains,
                    StringDoesNotStartWith => StringStartsWith,
                    StringDoesNotEndWith => StringEndsWith,
                    _ => StringLike,
                };
                !positive.matches(value, Some(argument))
            }
            StringOneOf => one_of(value, argument),
            StringNotOneOf => !one_of(value, argument),
            ArrayContains => array_contains(value, argument),
            ArrayDoesNotContain => !array_contains(value, argument),
        }
    }
}

fn truthy(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Some(true),
            "false" | "f" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A date or timestamp: RFC 3339, Salesforce's `2024-05-01T10:00:00.000+0000`, a database's
/// `2024-05-01 10:00:00[.ffffff][+00]` (a timestamp without offset is UTC) or `YYYY-MM-DD`.
fn instant_of(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?.trim();
    if let Ok(datetime) = DateTime::parse_from_rfc3339(text) {
        return Some(datetime.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(datetime) = DateTime::parse_from_str(text, format) {
            return Some(datetime.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}

/// Orders a model value against a comparison value (`None` when either is null or they
/// cannot be compared).
pub fn compare(value: &Value, argument: &Value) -> Option<Ordering> {
    if value.is_null() || argument.is_null() {
        return None;
    }
    if let (Value::Bool(a), Some(b)) = (value, truthy(argument)) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (number_of(value), number_of(argument)) {
        return a.partial_cmp(&b);
    }
    if let (Some(a), Some(b)) = (instant_of(value), instant_of(argument)) {
        return Some(a.cmp(&b));
    }
    Some(text_of(value)?.cmp(&text_of(argument)?))
}

fn between_bounds(value: &Value) -> Result<(&Value, &Value), String> {
    let bounds = match value {
        Value::Array(items) if items.len() == 2 => Some((&items[0], &items[1])),
        Value::Object(map) => match (
            map.get("start").or_else(|| map.get("from")),
            map.get("end").or_else(|| map.get("to")),
        ) {
            (Some(low), Some(high)) => Some((low, high)),
            _ => None,
        },
        _ => None,
    };
    bounds.ok_or_else(|| "must be [low, high] or {\"start\": low, \"end\": high}".to_string())
}

fn string_match(function: FilterFunction, text: &str, pattern: &str) -> bool {
    match function {
        FilterFunction::StringContains => text.contains(pattern),
        FilterFunction::StringStartsWith => text.starts_with(pattern),
        FilterFunction::StringEndsWith => text.ends_with(pattern),
        FilterFunction::StringMatchesTrimmed => text.trim() == pattern.trim(),
        _ => like(text, pattern),
    }
}

/// SQL `LIKE` (case-insensitive): `%` any run, `_` one character.
fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    // Iterative matcher with backtracking on the last `%`.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '_' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '%' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == '%' {
        p += 1;
    }
    p == pattern.len()
}

fn one_of(value: &Value, argument: &Value) -> bool {
    let Some(text) = text_of(value) else {
        return false;
    };
    match argument {
        Value::Array(items) => items
            .iter()
            .filter_map(text_of)
            .any(|candidate| candidate == text),
        Value::String(list) => list.split(',').any(|candidate| candidate.trim() == text),
        _ => false,
    }
}

fn array_contains(value: &Value, argument: &Value) -> bool {
    match value {
        Value::Array(items) => items
            .iter()
            .any(|item| compare(item, argument) == Some(Ordering::Equal)),
        _ => false,
    }
}

/// A parsed `filter_logic` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterLogic {
    /// Filter at this 0-based position.
    Filter(usize),
    /// Both.
    And(Box<FilterLogic>, Box<FilterLogic>),
    /// Either.
    Or(Box<FilterLogic>, Box<FilterLogic>),
    /// Negation.
    Not(Box<FilterLogic>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Number(usize),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl FilterLogic {
    /// Parses `1 AND (2 OR NOT 3)` where numbers are 1-based positions among `count`
    /// filters.
    pub fn parse(text: &str, count: usize) -> Result<FilterLogic, String> {
        let tokens = tokenize(text)?;
        let mut position = 0;
        let logic = parse_or(&tokens, &mut position, count)?;
        if position != tokens.len() {
            return Err(format!(
                "unexpected text after position {position} in '{text}'"
            ));
        }
        Ok(logic)
    }

    /// Evaluates with the per-filter results.
    pub fn evaluate(&self, results: &[bool]) -> bool {
        match self {
            FilterLogic::Filter(index) => results.get(*index).copied().unwrap_or(false),
            FilterLogic::And(a, b) => a.evaluate(results) && b.evaluate(results),
            FilterLogic::Or(a, b) => a.evaluate(results) || b.evaluate(results),
            FilterLogic::Not(a) => !a.evaluate(results),
        }
    }

    /// Evaluates with results of which some are not known yet (`None`: a target filter
    /// before the target's current values are read), in three-valued logic: `Some` when
    /// the known results decide the expression whatever the unknown ones turn out to be
    /// (`1 AND 2` with 1 false is false), `None` when it still depends on them.
    pub fn evaluate_partial(&self, results: &[Option<bool>]) -> Option<bool> {
        match self {
            FilterLogic::Filter(index) => results.get(*index).copied().unwrap_or(Some(false)),
            FilterLogic::And(a, b) => {
                match (a.evaluate_partial(results), b.evaluate_partial(results)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                }
            }
            FilterLogic::Or(a, b) => {
                match (a.evaluate_partial(results), b.evaluate_partial(results)) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }
            }
            FilterLogic::Not(a) => a.evaluate_partial(results).map(|r| !r),
        }
    }
}

/// Combines per-filter results with `filter_logic` (without one, every filter must hold),
/// in the three-valued logic of [`FilterLogic::evaluate_partial`]: `None` while the answer
/// depends on results not known yet.
pub fn combine(logic: Option<&FilterLogic>, results: &[Option<bool>]) -> Option<bool> {
    match logic {
        Some(logic) => logic.evaluate_partial(results),
        None if results.contains(&Some(false)) => Some(false),
        None if results.iter().all(Option::is_some) => Some(true),
        None => None,
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            let number = digits
                .parse::<usize>()
                .map_err(|_| format!("'{digits}' is not a filter number"))?;
            tokens.push(Token::Number(number));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(match word.to_ascii_uppercase().as_str() {
                "AND" => Token::And,
                "OR" => Token::Or,
                "NOT" => Token::Not,
                _ => return Err(format!("'{word}' is not AND, OR or NOT")),
            });
        } else {
            return Err(format!("unexpected character '{c}'"));
        }
    }
    Ok(tokens)
}

fn parse_or(tokens: &[Token], position: &mut usize, count: usize) -> Result<FilterLogic, String> {
    let mut left = parse_and(tokens, position, count)?;
    while tokens.get(*position) == Some(&Token::Or) {
        *position += 1;
        let right = parse_and(tokens, position, count)?;
        left = FilterLogic::Or(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_and(tokens: &[Token], position: &mut usize, count: usize) -> Result<FilterLogic, String> {
    let mut left = parse_factor(tokens, position, count)?;
    while tokens.get(*position) == Some(&Token::And) {
        *position += 1;
        let right = parse_factor(tokens, position, count)?;
        left = FilterLogic::And(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_factor(
    tokens: &[Token],
    position: &mut usize,
    count: usize,
) -> Result<FilterLogic, String> {
    match tokens.get(*position) {
        Some(Token::Number(n)) => {
            *position += 1;
            if *n == 0 || *n > count {
                return Err(format!(
                    "filter {n} does not exist (there are {count} filters, numbered from 1)"
                ));
            }
            Ok(FilterLogic::Filter(n - 1))
        }
        Some(Token::Not) => {
            *position += 1;
            Ok(FilterLogic::Not(Box::new(parse_factor(
                tokens, position, count,
            )?)))
        }
        Some(Token::Open) => {
            *position += 1;
            let inner = parse_or(tokens, position, count)?;
            if tokens.get(*position) != Some(&Token::Close) {
                return Err("missing ')'".into());
            }
            *position += 1;
            Ok(inner)
        }
        _ => Err("expected a filter number, NOT or '('".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use FilterFunction::*;

    #[test]
    fn functions() {
        let cases: &[(FilterFunction, Value, Value, bool)] = &[
            (Equality, json!("a"), json!("a"), true),
            (Equality, json!(3), json!("3"), true),
            (Equality, json!(null), json!("a"), false),
            (Inequality, json!("a"), json!("b"), true),
            (Inequality, json!(null), json!("b"), true),
            (IsNull, json!(null), json!(null), true),
            (IsNotNull, json!(""), json!(null), true),
            (True, json!(true), json!(null), true),
            (True, json!("false"), json!(null), false),
            (False, json!(false), json!(null), true),
            (GreaterThan, json!(10), json!(9.5), true),
            (GreaterThan, json!("10"), json!(9), true),
            (GreaterThanEqual, json!(9), json!(9), true),
            (LessThan, json!(1), json!(2), true),
            (LessThanEqual, json!(3), json!(2), false),
            (
                OnOrAfter,
                json!("2024-05-01T10:00:00Z"),
                json!("2024-05-01"),
                true,
            ),
            (
                OnOrBefore,
                json!("2024-04-30"),
                json!("2024-05-01T00:00:00+02:00"),
                true,
            ),
            (StringContains, json!("hello world"), json!("lo w"), true),
            (StringStartsWith, json!("hello"), json!("he"), true),
            (StringEndsWith, json!("hello"), json!("lo"), true),
            (StringDoesNotContain, json!("hello"), json!("x"), true),
            (StringDoesNotContain, json!(null), json!("x"), true),
            (StringOneOf, json!("b"), json!(["a", "b"]), true),
            (StringOneOf, json!("c"), json!(["a", "b"]), false),
            (StringNotOneOf, json!("c"), json!(["a", "b"]), true),
            (Between, json!(5), json!([1, 10]), true),
            (Between, json!(10), json!([1, 10]), true),
            (Between, json!(11), json!({"start": 1, "end": 10}), false),
            (
                Between,
                json!("2024-02-01"),
                json!(["2024-01-01", "2024-03-01"]),
                true,
            ),
            (StringLike, json!("Hello"), json!("h%l_o"), true),
            (StringNotLike, json!("Hello"), json!("x%"), true),
            (StringMatchesTrimmed, json!("  a "), json!("a"), true),
            (ArrayContains, json!([1, 2]), json!(2), true),
            (ArrayDoesNotContain, json!([1, 2]), json!(3), true),
        ];
        for (function, value, argument, expected) in cases {
            assert_eq!(
                function.matches(value, Some(argument)),
                *expected,
                "{function:?}({value}, {argument})"
            );
        }
    }

    #[test]
    fn unsupported_and_unknown_functions() {
        assert!(
            FilterFunction::parse("InTheLast")
                .unwrap_err()
                .contains("not supported yet")
        );
        assert!(FilterFunction::parse("Nope").is_err());
        assert!(Between.check_value(Some(&json!(3))).is_err());
        assert!(Equality.check_value(None).is_err());
        assert!(IsNull.check_value(None).is_ok());
    }

    #[test]
    fn logic() {
        let logic = FilterLogic::parse("1 AND (2 OR NOT 3)", 3).unwrap();
        assert!(logic.evaluate(&[true, false, false]));
        assert!(!logic.evaluate(&[true, false, true]));
        assert!(!logic.evaluate(&[false, true, true]));
        let logic = FilterLogic::parse("1 or 2 and 3", 3).unwrap();
        assert!(logic.evaluate(&[true, false, false]), "AND binds tighter");
        assert!(FilterLogic::parse("1 AND 4", 3).is_err());
        assert!(FilterLogic::parse("(1 AND 2", 2).is_err());
        assert!(FilterLogic::parse("1 XOR 2", 2).is_err());
        assert!(FilterLogic::parse("1 2", 2).is_err());
    }

    #[test]
    fn partial_logic_decides_only_when_the_unknown_results_cannot_matter() {
        let logic = FilterLogic::parse("1 AND (2 OR NOT 3)", 3).unwrap();
        // Filter 1 false: false whatever 2 and 3 are.
        assert_eq!(
            logic.evaluate_partial(&[Some(false), None, None]),
            Some(false)
        );
        // Filter 1 true: depends on the unknown ones.
        assert_eq!(logic.evaluate_partial(&[Some(true), None, None]), None);
        assert_eq!(
            logic.evaluate_partial(&[Some(true), Some(true), None]),
            Some(true)
        );
        assert_eq!(
            logic.evaluate_partial(&[Some(true), None, Some(false)]),
            Some(true)
        );
        assert_eq!(
            logic.evaluate_partial(&[Some(true), Some(false), Some(true)]),
            Some(false)
        );
        // Fully known: the same answer as `evaluate`, for every combination.
        for bits in 0..8u8 {
            let known: Vec<bool> = (0..3).map(|i| bits & (1 << i) != 0).collect();
            let partial: Vec<Option<bool>> = known.iter().copied().map(Some).collect();
            assert_eq!(
                logic.evaluate_partial(&partial),
                Some(logic.evaluate(&known)),
                "{known:?}"
            );
        }
        // Without filter_logic every filter must hold.
        assert_eq!(combine(None, &[Some(true), None]), None);
        assert_eq!(combine(None, &[Some(false), None]), Some(false));
        assert_eq!(combine(None, &[Some(true), Some(true)]), Some(true));
        assert_eq!(combine(None, &[]), Some(true));
        let either = FilterLogic::parse("1 OR 2", 2).unwrap();
        assert_eq!(combine(Some(&either), &[Some(true), None]), Some(true));
        assert_eq!(combine(Some(&either), &[Some(false), None]), None);
    }

    #[test]
    fn target_timestamps_compare_as_instants() {
        // Salesforce's and the databases' spellings of the same instant.
        for current in [
            "2024-05-01T10:00:00.000+0000",
            "2024-05-01 10:00:00+00",
            "2024-05-01 12:00:00+02:00",
            "2024-05-01 10:00:00.000000",
            "2024-05-01T10:00:00",
        ] {
            assert_eq!(
                compare(&json!(current), &json!("2024-05-01T10:00:00Z")),
                Some(Ordering::Equal),
                "{current}"
            );
            assert!(OnOrAfter.matches(&json!(current), Some(&json!("2024-05-01"))));
            assert!(!OnOrAfter.matches(&json!(current), Some(&json!("2024-05-02"))));
        }
    }
}

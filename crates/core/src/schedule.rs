//! Sync schedules (Polytomic's `Schedule`): validation and "when is the next run".
//!
//! All times are UTC. Every field is a string, as in the API.
//!
//! | frequency | fields used | runs |
//! |---|---|---|
//! | `manual` | — | only when started |
//! | `continuous` | — | again as soon as the previous run ends |
//! | `hourly` | `minute` (default `0`) | every hour at that minute |
//! | `daily` | `hour`, `minute` (default `00:00`) | every day |
//! | `weekly` | `day_of_week` (`monday`…`sunday`), `hour`, `minute` | every week |
//! | `custom` | `minute`, `hour`, `day_of_month`, `month`, `day_of_week` as the five fields of a cron expression (each defaults to `*`) | when the cron expression matches |
//! | `runafter` | `run_after.sync_ids` / `bulk_sync_ids` | after those syncs finish |
//!
//! Cron fields accept `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, and
//! names (`jan`…`dec`, `sun`…`sat`, also full day names). As in cron, when both
//! day-of-month and day-of-week are restricted a day matching either runs. `next_after` is a
//! pure function of its `now` argument, so tests inject the clock.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The frequencies Ferry schedules.
pub const FREQUENCIES: &[&str] = &[
    "manual",
    "continuous",
    "hourly",
    "daily",
    "weekly",
    "custom",
    "runafter",
];

/// Syncs this one runs after (`runafter`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAfter {
    /// Model syncs.
    #[serde(default)]
    pub sync_ids: Vec<String>,
    /// Bulk syncs.
    #[serde(default)]
    pub bulk_sync_ids: Vec<String>,
}

/// A schedule as the API carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// `manual`, `continuous`, `hourly`, `daily`, `weekly`, `custom`, `runafter`.
    pub frequency: String,
    /// Minute (0–59) or a cron field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minute: Option<String>,
    /// Hour (0–23) or a cron field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<String>,
    /// Day of week or a cron field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_week: Option<String>,
    /// Day of month or a cron field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_month: Option<String>,
    /// Month or a cron field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// `runafter` dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_after: Option<RunAfter>,
    /// `runafter`: only after successful runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_after_success_only: Option<bool>,
}

/// A parsed cron expression: the allowed values of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days_of_month: Vec<bool>,
    months: Vec<bool>,
    days_of_week: Vec<bool>,
    day_of_month_restricted: bool,
    day_of_week_restricted: bool,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn name_value(token: &str, names: &[&str], base: u32) -> Option<u32> {
    let lower = token.to_ascii_lowercase();
    names
        .iter()
        .position(|name| {
            lower == *name || (lower.len() > 3 && lower.starts_with(name) && full_name_ok(&lower))
        })
        .map(|index| index as u32 + base)
}

fn full_name_ok(lower: &str) -> bool {
    [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "january",
        "february",
        "march",
        "april",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ]
    .contains(&lower)
}

fn parse_field(
    field: &str,
    text: &str,
    min: u32,
    max: u32,
    names: Option<(&[&str], u32)>,
) -> Result<(Vec<bool>, bool), FieldError> {
    let invalid = |why: String| FieldError::new(field, why);
    let value = |token: &str| -> Result<u32, FieldError> {
        let parsed = token
            .parse::<u32>()
            .ok()
            .or_else(|| names.and_then(|(list, base)| name_value(token, list, base)));
        // Cron allows 7 for Sunday.
        let parsed = match (parsed, names) {
            (Some(7), Some((list, _))) if list.len() == 7 => Some(0),
            (other, _) => other,
        };
        match parsed {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(invalid(format!(
                "'{token}' is not a value from {min} to {max}"
            ))),
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("must not be empty".to_string()));
    }
    let mut allowed = vec![false; max as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 =
                    step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        invalid(format!("step '{step}' must be a positive number"))
                    })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (start, end) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let single = value(range)?;
            (single, if step > 1 { max } else { single })
        };
        if start > end {
            return Err(invalid(format!("range '{range}' runs backwards")));
        }
        let mut v = start;
        while v <= end {
            allowed[v as usize] = true;
            v += step;
        }
    }
    Ok((allowed, text != "*"))
}

impl Cron {
    /// Parses the five cron fields (minute, hour, day of month, month, day of week); errors
    /// name the schedule field.
    pub fn parse(
        minute: &str,
        hour: &str,
        day_of_month: &str,
        month: &str,
        day_of_week: &str,
    ) -> Result<Cron, FieldError> {
        let (minutes, _) = parse_field("minute", minute, 0, 59, None)?;
        let (hours, _) = parse_field("hour", hour, 0, 23, None)?;
        let (days_of_month, dom) = parse_field("day_of_month", day_of_month, 1, 31, None)?;
        let (months, _) = parse_field("month", month, 1, 12, Some((MONTHS, 1)))?;
        let (days_of_week, dow) = parse_field("day_of_week", day_of_week, 0, 6, Some((DAYS, 0)))?;
        Ok(Cron {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            day_of_month_restricted: dom,
            day_of_week_restricted: dow,
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if !self.months[date.month() as usize] {
            return false;
        }
        let dom = self.days_of_month[date.day() as usize];
        let dow = self.days_of_week[date.weekday().num_days_from_sunday() as usize];
        match (self.day_of_month_restricted, self.day_of_week_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first matching minute strictly after `now`, within about five years.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = (now + Duration::minutes(1))
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))?;
        let first_day = start.date_naive();
        for offset in 0..(366 * 5) {
            let date = first_day + Duration::days(offset);
            if !self.day_matches(date) {
                continue;
            }
            for hour in 0..24u32 {
                if !self.hours[hour as usize] {
                    continue;
                }
                for minute in 0..60u32 {
                    if !self.minutes[minute as usize] {
                        continue;
                    }
                    let candidate = Utc.from_utc_datetime(&date.and_hms_opt(hour, minute, 0)?);
                    if candidate >= start {
                        return Some(candidate);
                    }
                }
            }
        }
        None
    }
}

fn number(field: &str, value: Option<&str>, default: u32, max: u32) -> Result<u32, FieldError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| {
                FieldError::new(field, format!("'{text}' is not a number from 0 to {max}"))
            }),
    }
}

impl Schedule {
    /// The cron equivalent of a calendar schedule (`None` for manual, continuous, runafter).
    pub fn cron(&self) -> Result<Option<Cron>, FieldError> {
        let field = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .unwrap_or("*")
                .to_string()
        };
        match self.frequency.as_str() {
            "manual" | "continuous" | "runafter" => Ok(None),
            "hourly" => {
                let minute = number("minute", self.minute.as_deref(), 0, 59)?;
                Cron::parse(&minute.to_string(), "*", "*", "*", "*").map(Some)
            }
            "daily" => {
                let minute = number("minute", self.minute.as_deref(), 0, 59)?;
                let hour = number("hour", self.hour.as_deref(), 0, 23)?;
                Cron::parse(&minute.to_string(), &hour.to_string(), "*", "*", "*").map(Some)
            }
            "weekly" => {
                let minute = number("minute", self.minute.as_deref(), 0, 59)?;
                let hour = number("hour", self.hour.as_deref(), 0, 23)?;
                let day = self
                    .day_of_week
                    .as_deref()
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| {
                        FieldError::new(
                            "day_of_week",
                            "is required for a weekly schedule (monday … sunday)",
                        )
                    })?;
                if name_value(day, DAYS, 0).is_none() {
                    return Err(FieldError::new(
                        "day_of_week",
                        format!(
                            "'{day}' is not a day; accepted: monday, tuesday, wednesday, thursday, friday, saturday, sunday"
                        ),
                    ));
                }
                Cron::parse(&minute.to_string(), &hour.to_string(), "*", "*", day).map(Some)
            }
            "custom" => Cron::parse(
                &field(&self.minute),
                &field(&self.hour),
                &field(&self.day_of_month),
                &field(&self.month),
                &field(&self.day_of_week),
            )
            .map(Some),
            other => Err(FieldError::new(
                "frequency",
                format!(
                    "'{other}' is not supported; accepted: {}",
                    FREQUENCIES.join(", ")
                ),
            )),
        }
    }

    /// Checks the schedule; errors name the field (relative to the schedule object).
    pub fn validate(&self) -> Result<(), FieldError> {
        self.cron()?;
        if self.frequency == "runafter" {
            let empty = self
                .run_after
                .as_ref()
                .is_none_or(|r| r.sync_ids.is_empty() && r.bulk_sync_ids.is_empty());
            if empty {
                return Err(FieldError::new(
                    "run_after",
                    "a runafter schedule needs run_after.sync_ids or run_after.bulk_sync_ids",
                ));
            }
        }
        Ok(())
    }

    /// When the next scheduled run is due after `now` (`None` when not time-based).
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron()
            .ok()
            .flatten()
            .and_then(|cron| cron.next_after(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn schedule(
        frequency: &str,
        minute: &str,
        hour: &str,
        dom: &str,
        month: &str,
        dow: &str,
    ) -> Schedule {
        let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
        Schedule {
            frequency: frequency.to_string(),
            minute: some(minute),
            hour: some(hour),
            day_of_month: some(dom),
            month: some(month),
            day_of_week: some(dow),
            ..Schedule::default()
        }
    }

    #[test]
    fn hourly_daily_weekly() {
        let now = at("2026-11-27T18:34:21Z");
        assert_eq!(
            schedule("hourly", "05", "", "", "", "").next_after(now),
            Some(at("2026-11-27T19:05:00Z"))
        );
        assert_eq!(
            schedule("hourly", "", "", "", "", "").next_after(now),
            Some(at("2026-11-27T19:00:00Z"))
        );
        assert_eq!(
            schedule("daily", "30", "18", "", "", "").next_after(now),
            Some(at("2026-11-28T18:30:00Z"))
        );
        assert_eq!(
            schedule("daily", "35", "18", "", "", "").next_after(now),
            Some(at("2026-11-27T18:35:00Z"))
        );
        // 2026-11-27 is a Friday.
        assert_eq!(
            schedule("weekly", "0", "9", "", "", "monday").next_after(now),
            Some(at("2026-11-30T09:00:00Z"))
        );
        assert_eq!(
            schedule("weekly", "0", "9", "", "", "Friday").next_after(now),
            Some(at("2026-12-04T09:00:00Z"))
        );
    }

    #[test]
    fn a_run_exactly_now_is_not_next() {
        let now = at("2026-11-27T19:05:00Z");
        assert_eq!(
            schedule("hourly", "5", "", "", "", "").next_after(now),
            Some(at("2026-11-27T20:05:00Z"))
        );
    }

    #[test]
    fn month_ends_and_leap_days() {
        let custom = schedule("custom", "0", "0", "31", "*", "*");
        assert_eq!(
            custom.next_after(at("2026-11-27T00:00:00Z")),
            Some(at("2026-12-31T00:00:00Z"))
        );
        assert_eq!(
            custom.next_after(at("2027-01-31T00:00:00Z")),
            Some(at("2027-03-31T00:00:00Z"))
        );
        let leap = schedule("custom", "0", "12", "29", "feb", "*");
        assert_eq!(
            leap.next_after(at("2026-11-27T00:00:00Z")),
            Some(at("2028-02-29T12:00:00Z"))
        );
        let last_of_year = schedule("custom", "59", "23", "31", "12", "*");
        assert_eq!(
            last_of_year.next_after(at("2026-12-31T23:59:00Z")),
            Some(at("2027-12-31T23:59:00Z"))
        );
    }

    #[test]
    fn cron_syntax() {
        let every_15 = schedule("custom", "*/15", "", "", "", "");
        assert_eq!(
            every_15.next_after(at("2026-11-27T18:34:21Z")),
            Some(at("2026-11-27T18:45:00Z"))
        );
        let weekdays = schedule("custom", "0", "8-18/2", "", "", "mon-fri");
        assert_eq!(
            weekdays.next_after(at("2026-11-27T18:34:21Z")),
            Some(at("2026-11-30T08:00:00Z"))
        );
        // Both day fields restricted: either matches (the 1st, or any Sunday).
        let either = schedule("custom", "0", "0", "1", "", "sun");
        assert_eq!(
            either.next_after(at("2026-11-27T00:00:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
        assert_eq!(
            either.next_after(at("2026-11-29T00:00:00Z")),
            Some(at("2026-12-01T00:00:00Z"))
        );
        let lists = schedule("custom", "0,30", "6", "", "jan,jul", "");
        assert_eq!(
            lists.next_after(at("2026-11-27T00:00:00Z")),
            Some(at("2027-01-01T06:00:00Z"))
        );
        let sunday_as_7 = schedule("custom", "0", "0", "", "", "7");
        assert_eq!(
            sunday_as_7.next_after(at("2026-11-27T00:00:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
    }

    #[test]
    fn impossible_dates_have_no_next_run() {
        assert_eq!(
            schedule("custom", "0", "0", "30", "feb", "").next_after(at("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn manual_continuous_and_runafter_are_not_time_based() {
        let now = at("2026-11-27T00:00:00Z");
        assert_eq!(schedule("manual", "", "", "", "", "").next_after(now), None);
        assert_eq!(
            schedule("continuous", "", "", "", "", "").next_after(now),
            None
        );
        let mut run_after = schedule("runafter", "", "", "", "", "");
        assert_eq!(run_after.validate().unwrap_err().field, "run_after");
        run_after.run_after = Some(RunAfter {
            sync_ids: vec!["s1".into()],
            bulk_sync_ids: vec![],
        });
        assert!(run_after.validate().is_ok());
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let cases = [
            (schedule("hourly", "60", "", "", "", ""), "minute"),
            (schedule("daily", "0", "24", "", "", ""), "hour"),
            (schedule("weekly", "0", "9", "", "", ""), "day_of_week"),
            (
                schedule("weekly", "0", "9", "", "", "someday"),
                "day_of_week",
            ),
            (schedule("custom", "*/0", "", "", "", ""), "minute"),
            (schedule("custom", "0", "5-2", "", "", ""), "hour"),
            (schedule("custom", "0", "0", "32", "", ""), "day_of_month"),
            (schedule("custom", "0", "0", "", "13", ""), "month"),
            (schedule("fortnightly", "", "", "", "", ""), "frequency"),
        ];
        for (schedule, field) in cases {
            let error = schedule.validate().expect_err("invalid");
            assert_eq!(error.field, field, "{schedule:?}: {error}");
        }
        let error = schedule("fortnightly", "", "", "", "", "")
            .validate()
            .unwrap_err();
        assert!(error.message.contains("hourly"), "{error}");
    }
}

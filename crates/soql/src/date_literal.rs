//! Relative date literals (`TODAY`, `LAST_N_DAYS:30`, ...) and the UTC ranges they denote
//! (spec §5.3).
//!
//! Fixed choices of this implementation, all documented in the spec as the emulator's
//! conventions:
//! - the org and user time zone is UTC, so "today" is `now.date_naive()`;
//! - weeks start on Sunday (the en_US locale);
//! - the fiscal year is the calendar year, so every `*_FISCAL_*` literal has the range of
//!   its calendar twin (`THIS_FISCAL_QUARTER` = `THIS_QUARTER`). The variant is kept so the
//!   query prints back as written.
//!
//! A literal denotes a half-open range `[start, end)` where both ends are at 00:00:00 UTC.
//! Comparisons use it as: `=` inside the range, `>` at or after `end`, `<` before `start`,
//! `>=` at or after `start`, `<=` before `end`.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};

/// A relative date literal. Parameterised variants carry their `n` (`LAST_N_DAYS:n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variant names spell the SOQL keyword
pub enum DateLiteral {
    Yesterday,
    Today,
    Tomorrow,
    LastWeek,
    ThisWeek,
    NextWeek,
    LastMonth,
    ThisMonth,
    NextMonth,
    Last90Days,
    Next90Days,
    ThisQuarter,
    LastQuarter,
    NextQuarter,
    ThisYear,
    LastYear,
    NextYear,
    ThisFiscalQuarter,
    LastFiscalQuarter,
    NextFiscalQuarter,
    ThisFiscalYear,
    LastFiscalYear,
    NextFiscalYear,
    LastNDays(u32),
    NextNDays(u32),
    NDaysAgo(u32),
    LastNWeeks(u32),
    NextNWeeks(u32),
    NWeeksAgo(u32),
    LastNMonths(u32),
    NextNMonths(u32),
    NMonthsAgo(u32),
    LastNQuarters(u32),
    NextNQuarters(u32),
    NQuartersAgo(u32),
    LastNYears(u32),
    NextNYears(u32),
    NYearsAgo(u32),
    LastNFiscalQuarters(u32),
    NextNFiscalQuarters(u32),
    NFiscalQuartersAgo(u32),
    LastNFiscalYears(u32),
    NextNFiscalYears(u32),
    NFiscalYearsAgo(u32),
}

/// The constant (parameterless) literals and their keywords.
const CONSTANTS: [(&str, DateLiteral); 23] = [
    ("YESTERDAY", DateLiteral::Yesterday),
    ("TODAY", DateLiteral::Today),
    ("TOMORROW", DateLiteral::Tomorrow),
    ("LAST_WEEK", DateLiteral::LastWeek),
    ("THIS_WEEK", DateLiteral::ThisWeek),
    ("NEXT_WEEK", DateLiteral::NextWeek),
    ("LAST_MONTH", DateLiteral::LastMonth),
    ("THIS_MONTH", DateLiteral::ThisMonth),
    ("NEXT_MONTH", DateLiteral::NextMonth),
    ("LAST_90_DAYS", DateLiteral::Last90Days),
    ("NEXT_90_DAYS", DateLiteral::Next90Days),
    ("THIS_QUARTER", DateLiteral::ThisQuarter),
    ("LAST_QUARTER", DateLiteral::LastQuarter),
    ("NEXT_QUARTER", DateLiteral::NextQuarter),
    ("THIS_YEAR", DateLiteral::ThisYear),
    ("LAST_YEAR", DateLiteral::LastYear),
    ("NEXT_YEAR", DateLiteral::NextYear),
    ("THIS_FISCAL_QUARTER", DateLiteral::ThisFiscalQuarter),
    ("LAST_FISCAL_QUARTER", DateLiteral::LastFiscalQuarter),
    ("NEXT_FISCAL_QUARTER", DateLiteral::NextFiscalQuarter),
    ("THIS_FISCAL_YEAR", DateLiteral::ThisFiscalYear),
    ("LAST_FISCAL_YEAR", DateLiteral::LastFiscalYear),
    ("NEXT_FISCAL_YEAR", DateLiteral::NextFiscalYear),
];

/// Builds a parameterised literal from its `n`.
type Constructor = fn(u32) -> DateLiteral;

/// The parameterised literals' keywords and constructors.
const PARAMETERISED: [(&str, Constructor); 21] = [
    ("LAST_N_DAYS", DateLiteral::LastNDays),
    ("NEXT_N_DAYS", DateLiteral::NextNDays),
    ("N_DAYS_AGO", DateLiteral::NDaysAgo),
    ("LAST_N_WEEKS", DateLiteral::LastNWeeks),
    ("NEXT_N_WEEKS", DateLiteral::NextNWeeks),
    ("N_WEEKS_AGO", DateLiteral::NWeeksAgo),
    ("LAST_N_MONTHS", DateLiteral::LastNMonths),
    ("NEXT_N_MONTHS", DateLiteral::NextNMonths),
    ("N_MONTHS_AGO", DateLiteral::NMonthsAgo),
    ("LAST_N_QUARTERS", DateLiteral::LastNQuarters),
    ("NEXT_N_QUARTERS", DateLiteral::NextNQuarters),
    ("N_QUARTERS_AGO", DateLiteral::NQuartersAgo),
    ("LAST_N_YEARS", DateLiteral::LastNYears),
    ("NEXT_N_YEARS", DateLiteral::NextNYears),
    ("N_YEARS_AGO", DateLiteral::NYearsAgo),
    ("LAST_N_FISCAL_QUARTERS", DateLiteral::LastNFiscalQuarters),
    ("NEXT_N_FISCAL_QUARTERS", DateLiteral::NextNFiscalQuarters),
    ("N_FISCAL_QUARTERS_AGO", DateLiteral::NFiscalQuartersAgo),
    ("LAST_N_FISCAL_YEARS", DateLiteral::LastNFiscalYears),
    ("NEXT_N_FISCAL_YEARS", DateLiteral::NextNFiscalYears),
    ("N_FISCAL_YEARS_AGO", DateLiteral::NFiscalYearsAgo),
];

/// Calendar unit a literal's range is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl DateLiteral {
    /// Looks up a parameterless literal by keyword (case-insensitive): `today` → `Today`.
    pub fn constant(name: &str) -> Option<Self> {
        CONSTANTS
            .iter()
            .find(|(keyword, _)| keyword.eq_ignore_ascii_case(name))
            .map(|(_, literal)| *literal)
    }

    /// Builds a parameterised literal from its keyword (case-insensitive) and `n`:
    /// `("last_n_days", 7)` → `LastNDays(7)`.
    pub fn parameterised(name: &str, n: u32) -> Option<Self> {
        PARAMETERISED
            .iter()
            .find(|(keyword, _)| keyword.eq_ignore_ascii_case(name))
            .map(|(_, build)| build(n))
    }

    /// Whether `name` is the keyword of a parameterised literal (which needs `:n`).
    pub fn is_parameterised_name(name: &str) -> bool {
        PARAMETERISED
            .iter()
            .any(|(keyword, _)| keyword.eq_ignore_ascii_case(name))
    }

    /// Every constant literal, in spec order (for tests and tooling).
    pub fn constants() -> impl Iterator<Item = DateLiteral> {
        CONSTANTS.iter().map(|(_, literal)| *literal)
    }

    /// Every parameterised literal with the given `n`, in spec order.
    pub fn all_parameterised(n: u32) -> impl Iterator<Item = DateLiteral> {
        PARAMETERISED.iter().map(move |(_, build)| build(n))
    }

    /// The keyword, upper case, without the `:n` (`LAST_N_DAYS`).
    pub fn name(&self) -> &'static str {
        let parameter = self.parameter();
        if parameter.is_some() {
            let own = std::mem::discriminant(self);
            PARAMETERISED
                .iter()
                .find(|(_, build)| std::mem::discriminant(&build(0)) == own)
                .map(|(keyword, _)| *keyword)
                .unwrap_or("")
        } else {
            CONSTANTS
                .iter()
                .find(|(_, literal)| literal == self)
                .map(|(keyword, _)| *keyword)
                .unwrap_or("")
        }
    }

    /// The `n` of a parameterised literal.
    pub fn parameter(&self) -> Option<u32> {
        use DateLiteral::*;
        match *self {
            LastNDays(n)
            | NextNDays(n)
            | NDaysAgo(n)
            | LastNWeeks(n)
            | NextNWeeks(n)
            | NWeeksAgo(n)
            | LastNMonths(n)
            | NextNMonths(n)
            | NMonthsAgo(n)
            | LastNQuarters(n)
            | NextNQuarters(n)
            | NQuartersAgo(n)
            | LastNYears(n)
            | NextNYears(n)
            | NYearsAgo(n)
            | LastNFiscalQuarters(n)
            | NextNFiscalQuarters(n)
            | NFiscalQuartersAgo(n)
            | LastNFiscalYears(n)
            | NextNFiscalYears(n)
            | NFiscalYearsAgo(n) => Some(n),
            _ => None,
        }
    }

    /// The unit and the period offsets `[from, to)` relative to the current period.
    fn periods(&self) -> (Unit, i64, i64) {
        use DateLiteral::*;
        use Unit::*;
        match *self {
            Yesterday => (Day, -1, 0),
            Today => (Day, 0, 1),
            Tomorrow => (Day, 1, 2),
            LastWeek => (Week, -1, 0),
            ThisWeek => (Week, 0, 1),
            NextWeek => (Week, 1, 2),
            LastMonth => (Month, -1, 0),
            ThisMonth => (Month, 0, 1),
            NextMonth => (Month, 1, 2),
            // "Starts with the current day and continues for the past 90 days": today is
            // included, like LAST_N_DAYS:90.
            Last90Days => (Day, -90, 1),
            Next90Days => (Day, 1, 91),
            LastQuarter | LastFiscalQuarter => (Quarter, -1, 0),
            ThisQuarter | ThisFiscalQuarter => (Quarter, 0, 1),
            NextQuarter | NextFiscalQuarter => (Quarter, 1, 2),
            LastYear | LastFiscalYear => (Year, -1, 0),
            ThisYear | ThisFiscalYear => (Year, 0, 1),
            NextYear | NextFiscalYear => (Year, 1, 2),
            // LAST_N_DAYS includes today; the other LAST_N_* stop before the current period.
            LastNDays(n) => (Day, -i64::from(n), 1),
            NextNDays(n) => (Day, 1, i64::from(n) + 1),
            NDaysAgo(n) => (Day, -i64::from(n), 1 - i64::from(n)),
            LastNWeeks(n) => (Week, -i64::from(n), 0),
            NextNWeeks(n) => (Week, 1, i64::from(n) + 1),
            NWeeksAgo(n) => (Week, -i64::from(n), 1 - i64::from(n)),
            LastNMonths(n) => (Month, -i64::from(n), 0),
            NextNMonths(n) => (Month, 1, i64::from(n) + 1),
            NMonthsAgo(n) => (Month, -i64::from(n), 1 - i64::from(n)),
            LastNQuarters(n) | LastNFiscalQuarters(n) => (Quarter, -i64::from(n), 0),
            NextNQuarters(n) | NextNFiscalQuarters(n) => (Quarter, 1, i64::from(n) + 1),
            NQuartersAgo(n) | NFiscalQuartersAgo(n) => (Quarter, -i64::from(n), 1 - i64::from(n)),
            LastNYears(n) | LastNFiscalYears(n) => (Year, -i64::from(n), 0),
            NextNYears(n) | NextNFiscalYears(n) => (Year, 1, i64::from(n) + 1),
            NYearsAgo(n) | NFiscalYearsAgo(n) => (Year, -i64::from(n), 1 - i64::from(n)),
        }
    }

    /// The half-open UTC range `[start, end)` this literal denotes at instant `now`.
    ///
    /// Both ends are at 00:00:00 UTC. Ranges that would fall outside chrono's
    /// representable dates (huge `n`) are clamped to `DateTime::<Utc>::MIN_UTC` /
    /// `MAX_UTC`.
    pub fn range(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let (unit, from, to) = self.periods();
        let today = now.date_naive();
        (
            period_start(unit, today, from).map_or(DateTime::<Utc>::MIN_UTC, midnight),
            period_start(unit, today, to).map_or(DateTime::<Utc>::MAX_UTC, midnight),
        )
    }

    /// The range as dates `[start, end)` (for date-only fields).
    pub fn date_range(&self, now: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
        let (start, end) = self.range(now);
        (start.date_naive(), end.date_naive())
    }
}

/// 00:00:00 UTC on `date`.
fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The first day of the period `offset` periods away from the one containing `today`.
fn period_start(unit: Unit, today: NaiveDate, offset: i64) -> Option<NaiveDate> {
    match unit {
        Unit::Day => today.checked_add_signed(TimeDelta::try_days(offset)?),
        Unit::Week => {
            let sunday = today.checked_sub_signed(TimeDelta::try_days(i64::from(
                today.weekday().num_days_from_sunday(),
            ))?)?;
            sunday.checked_add_signed(TimeDelta::try_days(offset.checked_mul(7)?)?)
        }
        Unit::Month | Unit::Quarter | Unit::Year => {
            let month0 = i64::from(today.month0());
            let (base, step) = match unit {
                Unit::Month => (month0, 1),
                Unit::Quarter => (month0 - month0 % 3, 3),
                _ => (0, 12),
            };
            let index = i64::from(today.year())
                .checked_mul(12)?
                .checked_add(base)?
                .checked_add(offset.checked_mul(step)?)?;
            let year = i32::try_from(index.div_euclid(12)).ok()?;
            let month = u32::try_from(index.rem_euclid(12) + 1).ok()?;
            NaiveDate::from_ymd_opt(year, month, 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 30, 15)
            .single()
            .expect("valid test instant")
    }

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("valid test date")
    }

    fn check(literal: DateLiteral, now: DateTime<Utc>, start: DateTime<Utc>, end: DateTime<Utc>) {
        assert_eq!(literal.range(now), (start, end), "{literal:?} at {now}");
    }

    #[test]
    fn names_round_trip() {
        for literal in DateLiteral::constants() {
            assert_eq!(DateLiteral::constant(literal.name()), Some(literal));
            assert_eq!(literal.parameter(), None);
        }
        for literal in DateLiteral::all_parameterised(7) {
            assert_eq!(literal.parameter(), Some(7));
            assert_eq!(DateLiteral::parameterised(literal.name(), 7), Some(literal));
            assert!(DateLiteral::is_parameterised_name(literal.name()));
        }
        assert_eq!(DateLiteral::constant("today"), Some(DateLiteral::Today));
        assert_eq!(
            DateLiteral::parameterised("last_n_days", 3),
            Some(DateLiteral::LastNDays(3))
        );
        assert_eq!(DateLiteral::constant("LAST_N_DAYS"), None);
        assert_eq!(DateLiteral::constants().count(), 23);
        assert_eq!(DateLiteral::all_parameterised(1).count(), 21);
    }

    #[test]
    fn day_ranges() {
        // Wednesday 2024-03-13
        let now = at(2024, 3, 13, 15);
        check(DateLiteral::Today, now, day(2024, 3, 13), day(2024, 3, 14));
        check(
            DateLiteral::Yesterday,
            now,
            day(2024, 3, 12),
            day(2024, 3, 13),
        );
        check(
            DateLiteral::Tomorrow,
            now,
            day(2024, 3, 14),
            day(2024, 3, 15),
        );
        check(
            DateLiteral::LastNDays(1),
            now,
            day(2024, 3, 12),
            day(2024, 3, 14),
        );
        check(
            DateLiteral::LastNDays(0),
            now,
            day(2024, 3, 13),
            day(2024, 3, 14),
        );
        check(
            DateLiteral::NextNDays(2),
            now,
            day(2024, 3, 14),
            day(2024, 3, 16),
        );
        check(
            DateLiteral::NDaysAgo(13),
            now,
            day(2024, 2, 29),
            day(2024, 3, 1),
        );
        check(
            DateLiteral::Last90Days,
            now,
            day(2023, 12, 14),
            day(2024, 3, 14),
        );
        check(
            DateLiteral::Next90Days,
            now,
            day(2024, 3, 14),
            day(2024, 6, 12),
        );
        assert_eq!(
            DateLiteral::LastNDays(90).range(now),
            DateLiteral::Last90Days.range(now)
        );
    }

    #[test]
    fn day_ranges_cross_year_boundary() {
        let now = at(2024, 1, 1, 0);
        check(
            DateLiteral::Yesterday,
            now,
            day(2023, 12, 31),
            day(2024, 1, 1),
        );
        check(
            DateLiteral::LastNDays(2),
            now,
            day(2023, 12, 30),
            day(2024, 1, 2),
        );
        let now = at(2023, 12, 31, 23);
        check(DateLiteral::Tomorrow, now, day(2024, 1, 1), day(2024, 1, 2));
        check(
            DateLiteral::NextNDays(1),
            now,
            day(2024, 1, 1),
            day(2024, 1, 2),
        );
    }

    #[test]
    fn week_ranges_start_on_sunday() {
        // Wednesday 2024-03-13: the week is Sun 10 .. Sat 16.
        let now = at(2024, 3, 13, 9);
        check(
            DateLiteral::ThisWeek,
            now,
            day(2024, 3, 10),
            day(2024, 3, 17),
        );
        check(
            DateLiteral::LastWeek,
            now,
            day(2024, 3, 3),
            day(2024, 3, 10),
        );
        check(
            DateLiteral::NextWeek,
            now,
            day(2024, 3, 17),
            day(2024, 3, 24),
        );
        check(
            DateLiteral::LastNWeeks(2),
            now,
            day(2024, 2, 25),
            day(2024, 3, 10),
        );
        check(
            DateLiteral::NextNWeeks(2),
            now,
            day(2024, 3, 17),
            day(2024, 3, 31),
        );
        check(
            DateLiteral::NWeeksAgo(1),
            now,
            day(2024, 3, 3),
            day(2024, 3, 10),
        );
        // A Sunday is the first day of its own week.
        let sunday = at(2024, 3, 10, 12);
        check(
            DateLiteral::ThisWeek,
            sunday,
            day(2024, 3, 10),
            day(2024, 3, 17),
        );
        // A Saturday is the last day of its week.
        let saturday = at(2024, 3, 16, 23);
        check(
            DateLiteral::ThisWeek,
            saturday,
            day(2024, 3, 10),
            day(2024, 3, 17),
        );
        // The week of 2024-01-01 (Monday) started in 2023.
        check(
            DateLiteral::ThisWeek,
            at(2024, 1, 1, 1),
            day(2023, 12, 31),
            day(2024, 1, 7),
        );
    }

    #[test]
    fn month_ranges() {
        let now = at(2024, 3, 31, 23);
        check(
            DateLiteral::ThisMonth,
            now,
            day(2024, 3, 1),
            day(2024, 4, 1),
        );
        check(
            DateLiteral::LastMonth,
            now,
            day(2024, 2, 1),
            day(2024, 3, 1),
        );
        check(
            DateLiteral::NextMonth,
            now,
            day(2024, 4, 1),
            day(2024, 5, 1),
        );
        check(
            DateLiteral::LastNMonths(3),
            now,
            day(2023, 12, 1),
            day(2024, 3, 1),
        );
        check(
            DateLiteral::NextNMonths(10),
            now,
            day(2024, 4, 1),
            day(2025, 2, 1),
        );
        check(
            DateLiteral::NMonthsAgo(3),
            now,
            day(2023, 12, 1),
            day(2024, 1, 1),
        );
        let january = at(2024, 1, 15, 0);
        check(
            DateLiteral::LastMonth,
            january,
            day(2023, 12, 1),
            day(2024, 1, 1),
        );
        let december = at(2023, 12, 1, 0);
        check(
            DateLiteral::NextMonth,
            december,
            day(2024, 1, 1),
            day(2024, 2, 1),
        );
    }

    #[test]
    fn quarter_ranges() {
        let now = at(2024, 5, 20, 8); // Q2
        check(
            DateLiteral::ThisQuarter,
            now,
            day(2024, 4, 1),
            day(2024, 7, 1),
        );
        check(
            DateLiteral::LastQuarter,
            now,
            day(2024, 1, 1),
            day(2024, 4, 1),
        );
        check(
            DateLiteral::NextQuarter,
            now,
            day(2024, 7, 1),
            day(2024, 10, 1),
        );
        check(
            DateLiteral::LastNQuarters(2),
            now,
            day(2023, 10, 1),
            day(2024, 4, 1),
        );
        check(
            DateLiteral::NextNQuarters(3),
            now,
            day(2024, 7, 1),
            day(2025, 4, 1),
        );
        check(
            DateLiteral::NQuartersAgo(2),
            now,
            day(2023, 10, 1),
            day(2024, 1, 1),
        );
        let q1 = at(2024, 1, 1, 0);
        check(
            DateLiteral::LastQuarter,
            q1,
            day(2023, 10, 1),
            day(2024, 1, 1),
        );
        check(
            DateLiteral::ThisQuarter,
            q1,
            day(2024, 1, 1),
            day(2024, 4, 1),
        );
        let q4 = at(2024, 12, 31, 23);
        check(
            DateLiteral::NextQuarter,
            q4,
            day(2025, 1, 1),
            day(2025, 4, 1),
        );
        // Fiscal quarters are calendar quarters.
        check(
            DateLiteral::ThisFiscalQuarter,
            now,
            day(2024, 4, 1),
            day(2024, 7, 1),
        );
        check(
            DateLiteral::LastNFiscalQuarters(2),
            now,
            day(2023, 10, 1),
            day(2024, 4, 1),
        );
    }

    #[test]
    fn year_ranges() {
        let now = at(2024, 12, 31, 23);
        check(DateLiteral::ThisYear, now, day(2024, 1, 1), day(2025, 1, 1));
        check(DateLiteral::LastYear, now, day(2023, 1, 1), day(2024, 1, 1));
        check(DateLiteral::NextYear, now, day(2025, 1, 1), day(2026, 1, 1));
        check(
            DateLiteral::LastNYears(2),
            now,
            day(2022, 1, 1),
            day(2024, 1, 1),
        );
        check(
            DateLiteral::NextNYears(2),
            now,
            day(2025, 1, 1),
            day(2027, 1, 1),
        );
        check(
            DateLiteral::NYearsAgo(4),
            now,
            day(2020, 1, 1),
            day(2021, 1, 1),
        );
        check(
            DateLiteral::ThisFiscalYear,
            now,
            day(2024, 1, 1),
            day(2025, 1, 1),
        );
        check(
            DateLiteral::NextNFiscalYears(1),
            now,
            day(2025, 1, 1),
            day(2026, 1, 1),
        );
        check(
            DateLiteral::NFiscalYearsAgo(1),
            now,
            day(2023, 1, 1),
            day(2024, 1, 1),
        );
    }

    #[test]
    fn huge_parameters_clamp_instead_of_panicking() {
        let now = at(2024, 6, 1, 0);
        for literal in DateLiteral::all_parameterised(u32::MAX) {
            let (start, end) = literal.range(now);
            assert!(start <= end, "{literal:?}");
        }
        assert_eq!(
            DateLiteral::LastNYears(u32::MAX).range(now).0,
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            DateLiteral::NextNDays(u32::MAX).range(now).1,
            DateTime::<Utc>::MAX_UTC
        );
    }
}

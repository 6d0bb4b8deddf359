//! Cron schedules in an IANA time zone: parsing with messages a person can act on, and the
//! next occurrence after a given instant (the clock is always an argument).

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed `cron` + `timeZone` pair.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
}

/// Why a schedule cannot be used; each variant says which part is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cron expression did not parse.
    #[error(
        "{expression:?} is not a 5-field cron expression ({reason}); write minute hour day-of-month month day-of-week, e.g. \"0 2 * * SUN#1\""
    )]
    Cron {
        /// The expression given.
        expression: String,
        /// The parser's explanation.
        reason: String,
    },
    /// The time zone is not in the IANA database.
    #[error(
        "{name:?} is not an IANA time zone; use a name such as \"UTC\", \"Europe/Berlin\" or \"Australia/Sydney\""
    )]
    TimeZone {
        /// The name given.
        name: String,
    },
}

impl ScheduleError {
    /// Whether the problem is in the cron expression (as opposed to the time zone).
    pub fn is_cron(&self) -> bool {
        matches!(self, ScheduleError::Cron { .. })
    }
}

/// Parses a standard 5-field cron expression (with `L`, `#`, `W`, names and `@daily`-style
/// aliases). Seconds and years are refused so a pasted Quartz expression is not misread.
pub fn parse_cron(expression: &str) -> Result<Cron, ScheduleError> {
    let fields = expression.split_whitespace().count();
    let fail = |reason: String| ScheduleError::Cron {
        expression: expression.to_owned(),
        reason,
    };
    if !expression.trim_start().starts_with('@') && fields != 5 {
        return Err(fail(format!("it has {fields} fields, not 5")));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|err| fail(err.to_string()))
}

/// Looks up an IANA time zone name; an empty name means UTC.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    if name.is_empty() {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| ScheduleError::TimeZone {
        name: name.to_owned(),
    })
}

impl Schedule {
    /// Parses both parts; the time zone defaults to UTC.
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        Ok(Self {
            cron: parse_cron(expression)?,
            zone: parse_time_zone(time_zone.unwrap_or(""))?,
        })
    }

    /// The first scheduled instant strictly after `after`, if any within the parser's range.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Parses a bare cron expression in UTC.
    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        Self::parse(expression, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn first_sunday_in_sydney() {
        let s = Schedule::parse("0 2 * * SUN#1", Some("Australia/Sydney")).unwrap();
        // 2026-12-06 is the first Sunday of December; Sydney is UTC+11 (daylight time) then.
        assert_eq!(
            s.next_after(ts("2026-11-25T00:00:00Z")),
            Some(ts("2026-12-05T15:00:00Z"))
        );
    }

    #[test]
    fn last_day_of_month() {
        let s = Schedule::parse("30 23 L * *", None).unwrap();
        assert_eq!(
            s.next_after(ts("2027-02-01T00:00:00Z")),
            Some(ts("2027-02-28T23:30:00Z"))
        );
    }

    #[test]
    fn refuses_wrong_field_counts() {
        for bad in ["* * * *", "0 0 2 * * SUN", "0 2 * * * 2027"] {
            let err = parse_cron(bad).unwrap_err();
            assert!(err.is_cron(), "{bad}");
            assert!(err.to_string().contains("not 5"), "{err}");
        }
    }

    #[test]
    fn refuses_nonsense_with_a_hint() {
        let err = parse_cron("61 * * * *").unwrap_err().to_string();
        assert!(
            err.contains("\"61 * * * *\"") && err.contains("SUN#1"),
            "{err}"
        );
    }

    #[test]
    fn unknown_time_zone_is_named() {
        let err = parse_time_zone("Mars/Olympus_Mons").unwrap_err();
        assert!(!err.is_cron());
        assert!(err.to_string().contains("Mars/Olympus_Mons"));
    }

    #[test]
    fn empty_time_zone_is_utc() {
        assert_eq!(parse_time_zone("").unwrap(), TimeZone::UTC);
    }
}

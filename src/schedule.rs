//! Cron schedules in an IANA time zone, and the pure scheduling logic the Runbook,
//! MaintenanceWindow and BackupPolicy controllers share. The clock is always an argument: nothing
//! here reads the system time or does I/O.
//!
//! # Occurrences
//!
//! A [`Schedule`] is a standard 5-field cron expression read as *wall-clock time* in its time
//! zone. Every scheduled time is a whole minute, and every answer is an instant ([`Timestamp`]).
//! Away from daylight-saving transitions each matching wall-clock time is simply the instant the
//! zone's clocks show it. At a transition the schedule's [`ScheduleKind`] decides:
//!
//! * **Wall-clock schedules** ([`ScheduleKind::WallClock`]: the hour field names particular hours,
//!   e.g. `30 2 * * *`, `0 2 * * SUN#1`, `0,30 1 * * *`, `0 */6 * * *`) run **every matching
//!   wall-clock time exactly once**:
//!   - a time that does not exist because the clocks spring forward runs at the first instant that
//!     does exist after it, i.e. at the instant of the jump: `30 2 * * *` in New York on
//!     2027-03-14 (02:00 EST becomes 03:00 EDT) runs at 03:00 EDT (07:00 UTC). Several skipped
//!     times (`*/20 2 * * *`) all map to that one instant and run once there;
//!   - a time that occurs twice because the clocks fall back runs only at its **first**
//!     occurrence: `30 1 * * *` in New York on 2026-11-01 runs at 01:30 EDT and not again at
//!     01:30 EST. A sub-hourly wall-clock schedule such as `*/15 1 * * *` therefore runs four
//!     times that night, during the first 01:xx hour, and pauses during the repeated one.
//! * **Interval schedules** ([`ScheduleKind::Interval`]: the hour field covers all 24 hours, e.g.
//!   `*/15 * * * *`, `5 * * * *`, `@hourly`) run at **every instant whose local wall-clock time
//!   matches**, which keeps their real-time rhythm across transitions: a skipped wall-clock time
//!   is not run (the next match follows at the usual distance in real time) and a repeated one
//!   runs at both instants, because they are different instants an interval apart. `*/15 * * * *`
//!   keeps running every 15 real minutes through both transitions; `0 * * * *` runs at 01:00 EDT
//!   and again at 01:00 EST. No time of a *day* is run twice by such a schedule except by design
//!   of its hour field (it runs every hour, including the repeated one).
//!
//! Croner 4 on its own only treats a single time of day (one minute, one hour) as fixed; a
//! schedule such as `0,30 1 * * *` would run twice during a fall-back and `30 2,14 * * *` would
//! skip 02:30 on the spring-forward day. This module therefore uses croner only to match civil
//! (zone-free) date-times and resolves them against the zone itself, one stretch of constant UTC
//! offset at a time, using jiff's transition data.
//!
//! # Catching up
//!
//! [`Schedule::latest_due`] answers "which scheduled time should a controller act on now": the
//! most recent one in `(since, now]`. Older missed times are not run ("at most one catch-up");
//! [`Schedule::missed_count`] can say how many there were. The search runs backwards from `now`,
//! so its cost does not depend on how long ago `since` was. [`due_decision`] combines this with a
//! starting deadline and suspension, like a Kubernetes CronJob without the backlog.

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// Upper bound on the stretches of constant UTC offset one search crosses (about two per year in
/// a zone with daylight saving time); only reached by schedules that match (almost) never.
const MAX_SEGMENTS: usize = 1_000;

/// A parsed `cron` + `timeZone` pair.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
    kind: ScheduleKind,
}

/// How a schedule behaves at daylight-saving transitions (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    /// The hour field names particular hours: each matching wall-clock time runs exactly once; a
    /// skipped one at the instant of the jump, a repeated one at its first occurrence.
    WallClock,
    /// The hour field covers every hour: the schedule runs at every instant whose wall-clock time
    /// matches, so skipped times do not run and repeated times run at both instants.
    Interval,
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
        let cron = parse_cron(expression)?;
        let zone = parse_time_zone(time_zone.unwrap_or(""))?;
        let kind = if cron.pattern.hours.values().len() == 24 {
            ScheduleKind::Interval
        } else {
            ScheduleKind::WallClock
        };
        Ok(Self { cron, zone, kind })
    }

    /// The time zone the cron expression is read in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The parsed cron expression.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// How the schedule behaves at daylight-saving transitions.
    pub fn kind(&self) -> ScheduleKind {
        self.kind
    }

    /// The first scheduled instant strictly after `after`, or `None` if the expression never
    /// matches again (e.g. `0 0 30 2 *`) within the parser's range.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        // Walk forwards one stretch of constant UTC offset at a time. Within a stretch, wall-clock
        // time and instants correspond one to one.
        let mut start = after;
        let mut inclusive = false;
        for _ in 0..MAX_SEGMENTS {
            let offset = self.zone.to_offset(start);
            let end = self.zone.following(start).next().map(|t| t.timestamp());
            let civil_end = end.map(|end| offset.to_datetime(end));
            let mut civil = self.civil_next(offset.to_datetime(start), inclusive);
            while let Some(candidate) = civil {
                if civil_end.is_some_and(|civil_end| candidate >= civil_end) {
                    break;
                }
                if self.is_repeat(candidate, offset) {
                    civil = self.civil_next(candidate, false);
                    continue;
                }
                return offset.to_timestamp(candidate).ok();
            }
            // No civil match at all from here on: nothing can ever run again.
            civil?;
            let end = end?;
            if self.gap_matches(end, offset, self.zone.to_offset(end)) {
                return Some(end);
            }
            start = end;
            inclusive = true;
        }
        None
    }

    /// The next `count` scheduled instants strictly after `after`, in order (fewer if the
    /// schedule stops matching).
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<Timestamp> {
        let mut found = Vec::with_capacity(count.min(1_024));
        let mut cursor = after;
        while found.len() < count {
            let Some(next) = self.next_after(cursor) else {
                break;
            };
            found.push(next);
            cursor = next;
        }
        found
    }

    /// The most recent scheduled instant `t` with `since < t <= now` (any `t <= now` when `since`
    /// is `None`): the one time a controller should act on after downtime. Earlier missed times
    /// are deliberately not returned ("at most one catch-up").
    ///
    /// The search runs backwards from `now`, so its cost does not depend on how long ago `since`
    /// was, and it agrees with [`Schedule::next_after`] at daylight-saving transitions.
    pub fn latest_due(&self, since: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
        // Walk backwards one stretch of constant UTC offset at a time; `probe` is the last
        // instant (inclusive) still to be searched.
        let mut probe = now;
        for _ in 0..MAX_SEGMENTS {
            if since.is_some_and(|since| probe <= since) {
                return None;
            }
            let offset = self.zone.to_offset(probe);
            let start = self
                .zone
                .preceding(probe.checked_add(SignedDuration::from_nanos(1)).ok()?)
                .next()
                .map(|t| t.timestamp());
            let civil_start = start.map(|start| offset.to_datetime(start));
            let mut civil = self.civil_previous(offset.to_datetime(probe), true);
            while let Some(candidate) = civil {
                if civil_start.is_some_and(|civil_start| candidate < civil_start) {
                    break;
                }
                if self.is_repeat(candidate, offset) {
                    civil = self.civil_previous(candidate, false);
                    continue;
                }
                let found = offset.to_timestamp(candidate).ok()?;
                return since.is_none_or(|since| found > since).then_some(found);
            }
            civil?;
            let start = start?;
            if since.is_some_and(|since| start <= since) {
                return None;
            }
            let before = start.checked_sub(SignedDuration::from_nanos(1)).ok()?;
            if self.gap_matches(start, self.zone.to_offset(before), offset) {
                return Some(start);
            }
            probe = before;
        }
        None
    }

    /// How many scheduled instants fall in `since < t <= now` (any `t <= now` when `since` is
    /// `None`), counting at most `cap` of them. The count includes the one [`latest_due`]
    /// returns, so with at most one catch-up `missed_count - 1` of them never run.
    ///
    /// [`latest_due`]: Schedule::latest_due
    pub fn missed_count(&self, since: Option<Timestamp>, now: Timestamp, cap: usize) -> usize {
        let mut count = 0;
        let mut probe = now;
        while count < cap {
            let Some(found) = self.latest_due(since, probe) else {
                break;
            };
            count += 1;
            let Ok(before) = found.checked_sub(SignedDuration::from_nanos(1)) else {
                break;
            };
            probe = before;
        }
        count
    }

    /// Whether `civil`, met in a stretch with UTC offset `offset`, is the second occurrence of a
    /// repeated wall-clock time that a wall-clock schedule already ran at its first occurrence.
    fn is_repeat(&self, civil: DateTime, offset: Offset) -> bool {
        self.kind == ScheduleKind::WallClock
            && matches!(
                self.zone.to_ambiguous_timestamp(civil).offset(),
                AmbiguousOffset::Fold { after, .. } if after == offset
            )
    }

    /// Whether a wall-clock schedule has a time in the wall-clock gap opened by the transition at
    /// `at` from offset `before` to `after`; such times run at `at`, the instant of the jump.
    fn gap_matches(&self, at: Timestamp, before: Offset, after: Offset) -> bool {
        if self.kind != ScheduleKind::WallClock || after <= before {
            return false;
        }
        let gap_end = after.to_datetime(at);
        self.civil_next(before.to_datetime(at), true)
            .is_some_and(|civil| civil < gap_end)
    }

    /// The first civil date-time at or after (`inclusive`) or strictly after `from` that the
    /// expression matches, ignoring time zones (croner searches in UTC, which has no
    /// transitions).
    fn civil_next(&self, from: DateTime, inclusive: bool) -> Option<DateTime> {
        let from = from.to_zoned(TimeZone::UTC).ok()?;
        self.cron
            .find_next_occurrence(&from, inclusive)
            .ok()
            .map(|found| found.datetime())
    }

    /// Like [`Schedule::civil_next`], searching backwards.
    fn civil_previous(&self, from: DateTime, inclusive: bool) -> Option<DateTime> {
        let from = from.to_zoned(TimeZone::UTC).ok()?;
        self.cron
            .find_previous_occurrence(&from, inclusive)
            .ok()
            .map(|found| found.datetime())
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Parses a bare cron expression in UTC.
    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        Self::parse(expression, None)
    }
}

/// What a scheduling controller should do now; see [`due_decision`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// The scheduled time to start a run for now, if any. Record it as the new "last scheduled
    /// time" once the run is created.
    pub run: Option<Timestamp>,
    /// A scheduled time that came due but is older than the starting deadline allows, so it is
    /// not run. Record it as the "last scheduled time" as well (and report it), so it is not
    /// considered again.
    pub skipped_past_deadline: Option<Timestamp>,
    /// The next scheduled time strictly after `now`, when to look again; `None` while suspended
    /// or if the schedule never matches again.
    pub next: Option<Timestamp>,
}

impl Due {
    /// How long after `now` the controller should look again: the time until [`Due::next`]
    /// (zero if that is not after `now`), or `None` if there is no next time.
    pub fn requeue_after(&self, now: Timestamp) -> Option<std::time::Duration> {
        self.next
            .map(|next| std::time::Duration::try_from(next.duration_since(now)).unwrap_or_default())
    }
}

/// Decides whether a scheduled resource should start a run at `now`, like a Kubernetes CronJob
/// but with at most one catch-up.
///
/// * `last_scheduled`: the scheduled time of the last run started (or skipped) by the
///   controller. **After a suspension ends, pass the later of that time and the time the
///   resource was unsuspended**, so times that came due while suspended are not run as a
///   backlog.
/// * `created`: the resource's creation time; nothing scheduled at or before it runs. It is
///   the lower bound when `last_scheduled` is `None` (and when it is later than
///   `last_scheduled`).
/// * `starting_deadline`: how late a run may still start; `None` means no limit.
/// * `suspended`: nothing runs, nothing is skipped, and `next` is `None`.
///
/// Otherwise the candidate is [`Schedule::latest_due`] of the lower bound and `now`. It becomes
/// [`Due::run`], unless `now - candidate` exceeds the starting deadline, in which case it becomes
/// [`Due::skipped_past_deadline`]. [`Due::next`] is [`Schedule::next_after`] `now`.
pub fn due_decision(
    schedule: &Schedule,
    last_scheduled: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
    starting_deadline: Option<std::time::Duration>,
    suspended: bool,
) -> Due {
    if suspended {
        return Due::default();
    }
    let since = last_scheduled.map_or(created, |last| last.max(created));
    let candidate = schedule.latest_due(Some(since), now);
    let late = |at: Timestamp| {
        starting_deadline.is_some_and(|deadline| {
            // A deadline too long to represent never expires.
            SignedDuration::try_from(deadline)
                .is_ok_and(|deadline| now.duration_since(at) > deadline)
        })
    };
    let (run, skipped_past_deadline) = match candidate {
        Some(at) if late(at) => (None, Some(at)),
        other => (other, None),
    };
    Due {
        run,
        skipped_past_deadline,
        next: schedule.next_after(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sched(expression: &str, zone: &str) -> Schedule {
        Schedule::parse(expression, Some(zone)).unwrap()
    }

    fn all(list: &[&str]) -> Vec<Timestamp> {
        list.iter().map(|s| ts(s)).collect()
    }

    fn minus_1ns(t: Timestamp) -> Timestamp {
        t.checked_sub(SignedDuration::from_nanos(1)).unwrap()
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

    #[test]
    fn kinds() {
        for (expression, kind) in [
            ("30 2 * * *", ScheduleKind::WallClock),
            ("0,30 1 * * *", ScheduleKind::WallClock),
            ("0 */6 * * *", ScheduleKind::WallClock),
            ("*/15 1 * * *", ScheduleKind::WallClock),
            ("0 2 * * SUN#1", ScheduleKind::WallClock),
            ("*/15 * * * *", ScheduleKind::Interval),
            ("5 * * * *", ScheduleKind::Interval),
            ("0 0-23 * * *", ScheduleKind::Interval),
            ("@hourly", ScheduleKind::Interval),
        ] {
            assert_eq!(sched(expression, "UTC").kind(), kind, "{expression}");
        }
    }

    // --- spring forward: a skipped wall-clock time runs at the instant of the jump ---------------

    #[test]
    fn spring_forward_new_york() {
        // 2027-03-14: 02:00 EST (UTC-5) becomes 03:00 EDT (UTC-4) at 07:00 UTC.
        let s = sched("30 2 * * *", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2027-03-13T00:00:00Z"), 3),
            all(&[
                "2027-03-13T07:30:00Z", // 02:30 EST
                "2027-03-14T07:00:00Z", // 02:30 does not exist: 03:00 EDT
                "2027-03-15T06:30:00Z", // 02:30 EDT
            ])
        );
    }

    #[test]
    fn spring_forward_berlin() {
        // 2027-03-28: 02:00 CET (UTC+1) becomes 03:00 CEST (UTC+2) at 01:00 UTC.
        let s = sched("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            s.upcoming(ts("2027-03-27T00:00:00Z"), 3),
            all(&[
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T00:30:00Z",
            ])
        );
    }

    #[test]
    fn spring_forward_sydney() {
        // 2026-10-04: 02:00 AEST (UTC+10) becomes 03:00 AEDT (UTC+11) at 16:00 UTC on the 3rd.
        let s = sched("30 2 * * *", "Australia/Sydney");
        assert_eq!(
            s.upcoming(ts("2026-10-02T00:00:00Z"), 3),
            all(&[
                "2026-10-02T16:30:00Z",
                "2026-10-03T16:00:00Z",
                "2026-10-04T15:30:00Z",
            ])
        );
    }

    #[test]
    fn spring_forward_several_skipped_times_run_once_at_the_jump() {
        // 02:00, 02:20 and 02:40 are all skipped; they run once, at 03:00 EDT, together with
        // nothing else, and 02:00 the next day is back to normal.
        let s = sched("*/20 2 * * *", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2027-03-14T00:00:00Z"), 2),
            all(&["2027-03-14T07:00:00Z", "2027-03-15T06:00:00Z"])
        );
        // A time after the gap on the same day still runs (croner alone skips 02:30 here).
        let s = sched("30 2,14 * * *", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2027-03-14T00:00:00Z"), 2),
            all(&["2027-03-14T07:00:00Z", "2027-03-14T18:30:00Z"])
        );
        // A scheduled time right at the end of the gap coincides with the jump: one run.
        let s = sched("0,30 2,3 * * *", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2027-03-14T06:00:00Z"), 2),
            all(&["2027-03-14T07:00:00Z", "2027-03-14T07:30:00Z"])
        );
    }

    #[test]
    fn half_hour_and_midnight_transitions() {
        // Lord Howe Island moves its clocks by 30 minutes: 02:00 becomes 02:30 (UTC+10:30 to
        // +11) on 2026-10-04 and 02:00 becomes 01:30 again on 2027-04-04.
        let s = sched("15 2 * * *", "Australia/Lord_Howe");
        assert_eq!(
            s.upcoming(ts("2026-10-03T00:00:00Z"), 2),
            all(&["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"])
        );
        let s = sched("45 1 * * *", "Australia/Lord_Howe");
        assert_eq!(
            s.upcoming(ts("2027-04-03T00:00:00Z"), 2),
            all(&["2027-04-03T14:45:00Z", "2027-04-04T15:15:00Z"])
        );
        // Chile springs forward at midnight (00:00 -04 becomes 01:00 -03 on 2026-09-06): a
        // midnight job runs at the jump, still on the Sunday.
        let s = sched("0 0 * * SUN", "America/Santiago");
        assert_eq!(
            s.next_after(ts("2026-09-01T00:00:00Z")),
            Some(ts("2026-09-06T04:00:00Z"))
        );
    }

    // --- fall back: a repeated wall-clock time runs once, at its first occurrence ----------------

    #[test]
    fn fall_back_new_york_runs_once() {
        // 2026-11-01: 02:00 EDT (UTC-4) becomes 01:00 EST (UTC-5) at 06:00 UTC; 01:30 happens at
        // 05:30 and 06:30 UTC.
        let s = sched("30 1 * * *", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2026-10-31T00:00:00Z"), 3),
            all(&[
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
            ])
        );
        // Asking from between the two occurrences (or during the second) finds the next day.
        for from in ["2026-11-01T05:45:00Z", "2026-11-01T06:30:00Z"] {
            assert_eq!(s.next_after(ts(from)), Some(ts("2026-11-02T06:30:00Z")));
        }
    }

    #[test]
    fn fall_back_several_times_in_the_repeated_hour() {
        // croner alone runs these twice each.
        let s = sched("0,30 1 * * *", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2026-11-01T00:00:00Z"), 3),
            all(&[
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:00:00Z",
            ])
        );
        let s = sched("30 1,13 * * *", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2026-11-01T00:00:00Z"), 3),
            all(&[
                "2026-11-01T05:30:00Z",
                "2026-11-01T18:30:00Z",
                "2026-11-02T06:30:00Z",
            ])
        );
        // A sub-hourly wall-clock schedule pauses during the repeated hour.
        let s = sched("*/15 1 * * *", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2026-11-01T00:00:00Z"), 5),
            all(&[
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:15:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T05:45:00Z",
                "2026-11-02T06:00:00Z",
            ])
        );
    }

    #[test]
    fn fall_back_berlin_runs_once() {
        // 2026-10-25: 03:00 CEST (UTC+2) becomes 02:00 CET (UTC+1) at 01:00 UTC; 02:30 happens at
        // 00:30 and 01:30 UTC.
        let s = sched("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            s.upcoming(ts("2026-10-24T00:00:00Z"), 3),
            all(&[
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ])
        );
    }

    // --- interval schedules keep their real-time rhythm --------------------------------------

    #[test]
    fn every_15_minutes_across_fall_back() {
        let s = sched("*/15 * * * *", "America/New_York");
        let runs = s.upcoming(ts("2026-11-01T04:30:00Z"), 12);
        // 00:45 EDT, 01:00..01:45 EDT, 01:00..01:45 EST, 02:00 EST, ... every 15 real minutes.
        let expected: Vec<Timestamp> = (1..=12)
            .map(|i| ts("2026-11-01T04:30:00Z") + SignedDuration::from_mins(15 * i))
            .collect();
        assert_eq!(runs, expected);
    }

    #[test]
    fn every_15_minutes_across_spring_forward() {
        let s = sched("*/15 * * * *", "America/New_York");
        // 01:30 EST, 01:45 EST, 03:00 EDT, 03:15 EDT: still 15 real minutes apart.
        assert_eq!(
            s.upcoming(ts("2027-03-14T06:15:00Z"), 4),
            all(&[
                "2027-03-14T06:30:00Z",
                "2027-03-14T06:45:00Z",
                "2027-03-14T07:00:00Z",
                "2027-03-14T07:15:00Z",
            ])
        );
    }

    #[test]
    fn hourly_across_both_transitions() {
        let s = sched("0 * * * *", "America/New_York");
        // 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST.
        assert_eq!(
            s.upcoming(ts("2026-11-01T03:30:00Z"), 4),
            all(&[
                "2026-11-01T04:00:00Z",
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T07:00:00Z",
            ])
        );
        // 01:00 EST, 03:00 EDT (02:00 does not exist), 04:00 EDT.
        assert_eq!(
            s.upcoming(ts("2027-03-14T05:30:00Z"), 3),
            all(&[
                "2027-03-14T06:00:00Z",
                "2027-03-14T07:00:00Z",
                "2027-03-14T08:00:00Z",
            ])
        );
    }

    // --- calendar features -------------------------------------------------------------------

    #[test]
    fn first_sunday_in_sydney_for_a_year() {
        // 02:00 local on the first Sunday of each month, June 2026 to May 2027. Both DST
        // transitions fall on a first Sunday: 2026-10-04 (02:00 skipped: runs at the jump,
        // 03:00 AEDT) and 2027-04-04 (02:00 twice: runs once, at 02:00 AEDT).
        let s = sched("0 2 * * SUN#1", "Australia/Sydney");
        assert_eq!(
            s.upcoming(ts("2026-06-01T00:00:00Z"), 12),
            all(&[
                "2026-06-06T16:00:00Z",
                "2026-07-04T16:00:00Z",
                "2026-08-01T16:00:00Z",
                "2026-09-05T16:00:00Z",
                "2026-10-03T16:00:00Z",
                "2026-10-31T15:00:00Z",
                "2026-12-05T15:00:00Z",
                "2027-01-02T15:00:00Z",
                "2027-02-06T15:00:00Z",
                "2027-03-06T15:00:00Z",
                "2027-04-03T15:00:00Z",
                "2027-05-01T16:00:00Z",
            ])
        );
    }

    #[test]
    fn nth_weekday() {
        // Third Friday: 2026-05-01 is a Friday, so the 15th; June's is the 19th.
        let s = sched("0 10 * * FRI#3", "Europe/Berlin");
        assert_eq!(
            s.upcoming(ts("2026-05-01T00:00:00Z"), 2),
            all(&["2026-05-15T08:00:00Z", "2026-06-19T08:00:00Z"])
        );
        // Second Sunday of March 2027 is New York's spring-forward day.
        let s = sched("0 2 * * SUN#2", "America/New_York");
        assert_eq!(
            s.next_after(ts("2027-03-01T00:00:00Z")),
            Some(ts("2027-03-14T07:00:00Z"))
        );
        // First Sunday of November 2026 is New York's fall-back day: 01:00 runs once.
        let s = sched("0 1 * * SUN#1", "America/New_York");
        assert_eq!(
            s.upcoming(ts("2026-10-15T00:00:00Z"), 2),
            all(&["2026-11-01T05:00:00Z", "2026-12-06T06:00:00Z"])
        );
    }

    #[test]
    fn last_day_of_month_in_leap_and_common_years() {
        let s = sched("0 12 L * *", "UTC");
        assert_eq!(
            s.upcoming(ts("2027-01-31T12:00:00Z"), 3),
            all(&[
                "2027-02-28T12:00:00Z",
                "2027-03-31T12:00:00Z",
                "2027-04-30T12:00:00Z",
            ])
        );
        let s = sched("0 0 L 2 *", "Europe/Berlin");
        assert_eq!(
            s.upcoming(ts("2026-06-01T00:00:00Z"), 2),
            all(&["2027-02-27T23:00:00Z", "2028-02-28T23:00:00Z"])
        );
    }

    #[test]
    fn never_matching_expression_has_no_occurrences() {
        let s = sched("0 0 30 2 *", "Europe/Berlin");
        assert_eq!(s.next_after(ts("2026-01-01T00:00:00Z")), None);
        assert_eq!(s.latest_due(None, ts("2026-01-01T00:00:00Z")), None);
        assert!(s.upcoming(ts("2026-01-01T00:00:00Z"), 3).is_empty());
    }

    #[test]
    fn upcoming_is_strictly_after_and_sub_second_safe() {
        let s = sched("* * * * *", "UTC");
        assert_eq!(
            s.upcoming(ts("2026-01-01T00:00:00Z"), 2),
            all(&["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"])
        );
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:00.5Z")),
            Some(ts("2026-01-01T00:01:00Z"))
        );
        assert_eq!(
            s.latest_due(None, ts("2026-01-01T00:00:59.999Z")),
            Some(ts("2026-01-01T00:00:00Z"))
        );
        assert!(s.upcoming(ts("2026-01-01T00:00:00Z"), 0).is_empty());
    }

    // --- latest_due and missed_count ---------------------------------------------------------

    #[test]
    fn latest_due_agrees_with_next_after_across_transitions() {
        // For every pair of consecutive occurrences (a, b): the latest due time just before b is
        // a, at b it is b, and nothing is due in (a, b) once a has run.
        let cases = [
            ("30 2 * * *", "America/New_York", "2027-03-12T00:00:00Z"),
            ("30 1 * * *", "America/New_York", "2026-10-30T00:00:00Z"),
            ("0,30 1 * * *", "America/New_York", "2026-10-30T00:00:00Z"),
            ("*/20 2 * * *", "America/New_York", "2027-03-13T00:00:00Z"),
            ("30 2 * * *", "Europe/Berlin", "2026-10-23T00:00:00Z"),
            ("30 2 * * *", "Europe/Berlin", "2027-03-26T00:00:00Z"),
            ("0 2 * * SUN#1", "Australia/Sydney", "2026-06-01T00:00:00Z"),
            ("*/15 * * * *", "America/New_York", "2026-11-01T03:00:00Z"),
            ("*/15 * * * *", "Australia/Sydney", "2027-04-03T14:00:00Z"),
            ("0 * * * *", "Europe/Berlin", "2027-03-27T22:00:00Z"),
            ("*/15 1 * * *", "America/New_York", "2026-10-31T00:00:00Z"),
            ("0 12 L * *", "Europe/Berlin", "2026-01-01T00:00:00Z"),
        ];
        for (expression, zone, from) in cases {
            let s = sched(expression, zone);
            let runs = s.upcoming(ts(from), 40);
            assert_eq!(runs.len(), 40, "{expression} {zone}");
            for pair in runs.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let ctx = format!("{expression} in {zone}: {a} .. {b}");
                assert!(a < b, "{ctx}");
                assert_eq!(s.latest_due(None, minus_1ns(b)), Some(a), "{ctx}");
                assert_eq!(s.latest_due(None, b), Some(b), "{ctx}");
                assert_eq!(s.latest_due(Some(a), minus_1ns(b)), None, "{ctx}");
                assert_eq!(s.latest_due(Some(minus_1ns(a)), b), Some(b), "{ctx}");
                assert_eq!(s.next_after(minus_1ns(b)), Some(b), "{ctx}");
            }
            let (first, last) = (runs[0], runs[39]);
            assert_eq!(s.missed_count(Some(minus_1ns(first)), last, 100), 40);
            assert_eq!(s.missed_count(Some(first), last, 100), 39);
            assert_eq!(s.missed_count(Some(first), last, 5), 5);
        }
    }

    #[test]
    fn latest_due_on_fall_back_day_does_not_run_twice() {
        let s = sched("30 1 * * *", "America/New_York");
        // During the second 01:xx hour (01:45 EST) the due time is still the first 01:30.
        let now = ts("2026-11-01T06:45:00Z");
        assert_eq!(
            s.latest_due(Some(ts("2026-10-31T05:30:00Z")), now),
            Some(ts("2026-11-01T05:30:00Z"))
        );
        assert_eq!(s.latest_due(Some(ts("2026-11-01T05:30:00Z")), now), None);
        assert_eq!(s.missed_count(Some(ts("2026-10-31T05:30:00Z")), now, 10), 1);
    }

    #[test]
    fn latest_due_on_spring_forward_day() {
        let s = sched("30 2 * * *", "America/New_York");
        assert_eq!(
            s.latest_due(None, ts("2027-03-14T07:00:00Z")),
            Some(ts("2027-03-14T07:00:00Z"))
        );
        assert_eq!(
            s.latest_due(None, ts("2027-03-14T06:59:59Z")),
            Some(ts("2027-03-13T07:30:00Z"))
        );
    }

    #[test]
    fn latest_due_after_long_downtime_returns_only_the_latest() {
        // A minutely schedule, last run half a year ago: one answer, found without walking
        // every minute in between.
        let s = sched("* * * * *", "Europe/Berlin");
        let since = Some(ts("2026-01-01T00:00:00Z"));
        let now = ts("2026-06-15T12:34:56Z");
        assert_eq!(s.latest_due(since, now), Some(ts("2026-06-15T12:34:00Z")));
        assert_eq!(s.missed_count(since, now, 1_000), 1_000);

        let s = sched("30 2 * * *", "Europe/Berlin");
        let since = Some(ts("2026-02-15T01:30:00Z")); // 02:30 CET on 2026-02-15
        let now = ts("2026-04-01T12:00:00Z");
        assert_eq!(s.latest_due(since, now), Some(ts("2026-04-01T00:30:00Z")));
        // 16.02 .. 01.04 (45 days; 2026-03-29 is spring-forward day and still runs once).
        assert_eq!(s.missed_count(since, now, 1_000), 45);
        assert_eq!(s.latest_due(Some(now), now), None);
        assert_eq!(s.latest_due(Some(ts("2026-04-02T00:00:00Z")), now), None);
    }

    // --- due_decision ------------------------------------------------------------------------

    fn daily() -> Schedule {
        sched("0 3 * * *", "Europe/Berlin") // 03:00 CEST = 01:00 UTC in summer
    }

    #[test]
    fn due_runs_the_latest_time_once() {
        let s = daily();
        let created = ts("2026-06-01T00:00:00Z");
        let now = ts("2026-06-10T01:00:30Z");
        let due = due_decision(
            &s,
            Some(ts("2026-06-05T01:00:00Z")),
            created,
            now,
            None,
            false,
        );
        assert_eq!(
            due,
            Due {
                run: Some(ts("2026-06-10T01:00:00Z")),
                skipped_past_deadline: None,
                next: Some(ts("2026-06-11T01:00:00Z")),
            }
        );
        assert_eq!(
            due.requeue_after(now),
            Some(std::time::Duration::from_secs(24 * 3600 - 30))
        );
        // Once recorded, nothing more is due.
        let due = due_decision(&s, due.run, created, now, None, false);
        assert_eq!(due.run, None);
        assert_eq!(due.skipped_past_deadline, None);
        assert_eq!(due.next, Some(ts("2026-06-11T01:00:00Z")));
    }

    #[test]
    fn due_starts_from_creation() {
        let s = daily();
        // Created after today's 03:00: nothing due until tomorrow.
        let created = ts("2026-06-10T02:00:00Z");
        let now = ts("2026-06-10T02:00:05Z");
        let due = due_decision(&s, None, created, now, None, false);
        assert_eq!(due.run, None);
        assert_eq!(due.next, Some(ts("2026-06-11T01:00:00Z")));
        // Created before it: today's run is due.
        let due = due_decision(&s, None, ts("2026-06-09T12:00:00Z"), now, None, false);
        assert_eq!(due.run, Some(ts("2026-06-10T01:00:00Z")));
        // A last scheduled time from before creation does not widen the window.
        let due = due_decision(
            &s,
            Some(ts("2026-06-01T01:00:00Z")),
            created,
            now,
            None,
            false,
        );
        assert_eq!(due.run, None);
    }

    #[test]
    fn due_past_starting_deadline_is_skipped() {
        let s = daily();
        let created = ts("2026-06-01T00:00:00Z");
        let last = Some(ts("2026-06-09T01:00:00Z"));
        let deadline = Some(std::time::Duration::from_secs(300));
        // Six minutes late: skipped.
        let now = ts("2026-06-10T01:06:00Z");
        let due = due_decision(&s, last, created, now, deadline, false);
        assert_eq!(
            due,
            Due {
                run: None,
                skipped_past_deadline: Some(ts("2026-06-10T01:00:00Z")),
                next: Some(ts("2026-06-11T01:00:00Z")),
            }
        );
        // Exactly at the deadline: still runs.
        let now = ts("2026-06-10T01:05:00Z");
        let due = due_decision(&s, last, created, now, deadline, false);
        assert_eq!(due.run, Some(ts("2026-06-10T01:00:00Z")));
        assert_eq!(due.skipped_past_deadline, None);
        // No deadline: however late, the latest runs.
        let now = ts("2026-06-10T23:00:00Z");
        let due = due_decision(&s, last, created, now, None, false);
        assert_eq!(due.run, Some(ts("2026-06-10T01:00:00Z")));
    }

    #[test]
    fn due_while_suspended_and_after_resuming() {
        let s = daily();
        let created = ts("2026-06-01T00:00:00Z");
        let last = ts("2026-06-02T01:00:00Z");
        let now = ts("2026-06-10T01:00:30Z");
        let due = due_decision(&s, Some(last), created, now, None, true);
        assert_eq!(due, Due::default());
        assert_eq!(due.requeue_after(now), None);
        // Resumed at 12:00 on the 9th: the caller passes max(last, resumed) and the backlog
        // from while it was suspended does not run; the 10th's time, after resuming, does.
        let resumed = ts("2026-06-09T12:00:00Z");
        let due = due_decision(&s, Some(last.max(resumed)), created, now, None, false);
        assert_eq!(due.run, Some(ts("2026-06-10T01:00:00Z")));
        let due = due_decision(
            &s,
            Some(last.max(resumed)),
            created,
            ts("2026-06-09T12:00:05Z"),
            None,
            false,
        );
        assert_eq!(due.run, None);
        assert_eq!(due.next, Some(ts("2026-06-10T01:00:00Z")));
    }

    #[test]
    fn due_across_fall_back_runs_once() {
        let s = sched("30 1 * * *", "America/New_York");
        let created = ts("2026-10-01T00:00:00Z");
        let first = due_decision(
            &s,
            Some(ts("2026-10-31T05:30:00Z")),
            created,
            ts("2026-11-01T05:30:10Z"),
            None,
            false,
        );
        assert_eq!(first.run, Some(ts("2026-11-01T05:30:00Z")));
        // An hour later the wall clock shows 01:30 again: nothing runs.
        let second = due_decision(
            &s,
            first.run,
            created,
            ts("2026-11-01T06:30:10Z"),
            None,
            false,
        );
        assert_eq!(second.run, None);
        assert_eq!(second.next, Some(ts("2026-11-02T06:30:00Z")));
    }
}

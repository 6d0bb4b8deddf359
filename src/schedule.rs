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
        self.next.map(|next| crate::time::until(now, next))
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
        // A deadline too long to represent saturates at the longest span, so it never expires.
        starting_deadline
            .is_some_and(|deadline| now.duration_since(at) > crate::time::signed(deadline))
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

/// The problems of a `cron` and `timeZone` pair at `path` (e.g. `spec.schedule`): each field
/// that does not parse, named, with the parser's reason.
pub fn problems(
    cron: &str,
    time_zone: Option<&str>,
    path: &str,
) -> Vec<crate::conditions::SpecProblem> {
    let mut problems = Vec::new();
    if let Err(err) = parse_cron(cron) {
        problems.push(crate::conditions::SpecProblem::new(
            format!("{path}.cron"),
            err.to_string(),
        ));
    }
    if let Err(err) = parse_time_zone(time_zone.unwrap_or("")) {
        problems.push(crate::conditions::SpecProblem::new(
            format!("{path}.timeZone"),
            err.to_string(),
        ));
    }
    problems
}

#[cfg(test)]
mod tests;

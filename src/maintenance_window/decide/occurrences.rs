//! When a window's occurrences happen: the spec parsed into [`WindowSettings`], and the
//! occurrences they give at any instant.
//!
//! A recurring window (`schedule {cron, timeZone, duration}`) opens at every start of its
//! [`Schedule`] and closes `duration` of *elapsed* time later. Starts follow the schedule's
//! daylight-saving rules (a start in a skipped hour happens at the first valid instant after it;
//! a start in a repeated hour happens once, at its first occurrence), so a `0 2 * * SUN#1` window
//! of `2h` in Sydney on the spring-forward day opens at 03:00 AEDT and closes at 05:00 AEDT.
//! A one-off window (`start`/`end`) has exactly one occurrence.
//!
//! Occurrences are half-open, `start <= t < end`: at the instant `end` the window is closed,
//! so back-to-back occurrences (duration equal to the period) never overlap. If the duration is
//! longer than the gap between two starts (an invalid spec, see
//! [`WindowSettings::check_overlap`]) the occurrences overlap; the *current* occurrence is then
//! the latest one started, because that is the one whose end is furthest away and whose changes
//! a person expects to be in force.

use jiff::{SignedDuration, Timestamp};

use crate::duration::{Duration, DurationError};
use crate::maintenance_window::types::{MaintenanceWindowSpec, MissedStartPolicy};
use crate::schedule::{Schedule, ScheduleError};
use crate::time::{add, sub};

/// How long before the start the `beforeStart` run begins when `leadTime` is not set.
pub const DEFAULT_LEAD_TIME: SignedDuration = SignedDuration::from_mins(10);

/// How far ahead [`WindowSettings::check_overlap`] looks for two occurrences that overlap: a bit
/// more than a year, so every daylight-saving transition is crossed once.
const OVERLAP_HORIZON: SignedDuration = SignedDuration::from_hours(24 * 400);

/// Upper bound on the starts [`WindowSettings::check_overlap`] compares, so a minutely schedule is
/// not walked for a whole year; such schedules have short gaps that show within the first few.
const OVERLAP_MAX_STARTS: usize = 1_000;

/// One opening of a window: open for `start <= t < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Occurrence {
    /// When the window opens.
    pub start: Timestamp,
    /// When it closes (exclusive).
    pub end: Timestamp,
}

impl Occurrence {
    /// Whether the clock is inside this occurrence.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }
}

/// Why a spec cannot be scheduled. Each message names the field, so the controller can put it
/// in an `InvalidSpec` condition as is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// Neither a schedule nor both `start` and `end` (the CEL rule normally prevents this).
    #[error("spec: set either schedule (a recurring window) or both start and end (a one-off)")]
    NoTimes,
    /// The cron expression or time zone is unusable.
    #[error("spec.schedule.{field}: {source}")]
    Schedule {
        /// `cron` or `timeZone`.
        field: &'static str,
        /// What the schedule parser said.
        source: ScheduleError,
    },
    /// A duration string did not parse.
    #[error("{field}: {source}")]
    Duration {
        /// The field's path, e.g. `spec.schedule.duration`.
        field: &'static str,
        /// What the duration parser said.
        source: DurationError,
    },
    /// A window that lasts no time at all would change and restore in the same instant.
    #[error("spec.schedule.duration: must be longer than 0s")]
    ZeroDuration,
    /// A one-off window whose end is not after its start.
    #[error("spec.end: must be after spec.start")]
    EndNotAfterStart,
    /// `missedStart.policy: StartIfWithin` without `within`.
    #[error("spec.missedStart.within: StartIfWithin needs within (e.g. 15m)")]
    MissingWithin,
    /// The cron expression never matches again.
    #[error("spec.schedule.cron: {cron:?} never fires")]
    NeverFires {
        /// The expression.
        cron: String,
    },
    /// The duration is longer than the gap between two starts, so occurrences overlap.
    #[error(
        "spec.schedule.duration: {duration} is longer than the {gap} between the starts at {first} and {second}"
    )]
    Overlap {
        /// The duration as written.
        duration: String,
        /// The gap between the two starts.
        gap: String,
        /// The earlier start.
        first: Timestamp,
        /// The later start, before the earlier occurrence's end.
        second: Timestamp,
    },
}

/// When a window's occurrences happen.
#[derive(Clone, Debug)]
pub enum Times {
    /// A cron schedule with an elapsed duration.
    Recurring {
        /// The start times (boxed: a parsed cron is large, and a one-off needs none).
        schedule: Box<Schedule>,
        /// How long each occurrence lasts, in elapsed time.
        duration: SignedDuration,
    },
    /// A single occurrence.
    OneOff(Occurrence),
}

/// What to do about a start the operator missed, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissedStartRule {
    /// Skip the occurrence.
    Skip,
    /// Activate it if no more than this much has passed since the start.
    StartIfWithin(SignedDuration),
}

/// The `beforeStart` settings, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreflightRule {
    /// How long before the start the run begins.
    pub lead_time: SignedDuration,
    /// Whether a failed run skips the occurrence.
    pub required: bool,
}

/// A spec parsed into everything the lifecycle needs, so that errors surface once, with the
/// field that caused them.
#[derive(Clone, Debug)]
pub struct WindowSettings {
    /// When the occurrences happen.
    pub times: Times,
    /// The preflight run, if any.
    pub preflight: Option<PreflightRule>,
    /// Whether an `afterEnd` run follows each restore.
    pub after_end: bool,
    /// Policy for starts the operator missed.
    pub missed_start: MissedStartRule,
    /// Whether the window is suspended.
    pub suspended: bool,
}

/// Reads a duration field into a signed duration, naming the field on error.
fn signed(value: &Duration, field: &'static str) -> Result<SignedDuration, SpecError> {
    value
        .parse_signed()
        .map_err(|source| SpecError::Duration { field, source })
}

impl WindowSettings {
    /// Parses a spec. Fails on anything that makes the window's times unknowable (cron, time
    /// zone, durations, a one-off whose end is not after its start). Problems that depend on
    /// the clock (a cron that never fires again, overlapping occurrences) are checked by
    /// [`WindowSettings::check`].
    pub fn from_spec(spec: &MaintenanceWindowSpec) -> Result<Self, SpecError> {
        let times = match (&spec.schedule, &spec.start, &spec.end) {
            (Some(schedule), _, _) => {
                let parsed = Schedule::parse(&schedule.cron, schedule.time_zone.as_deref())
                    .map_err(|source| SpecError::Schedule {
                        field: if source.is_cron() { "cron" } else { "timeZone" },
                        source,
                    })?;
                let duration = signed(&schedule.duration, "spec.schedule.duration")?;
                if !duration.is_positive() {
                    return Err(SpecError::ZeroDuration);
                }
                Times::Recurring {
                    schedule: Box::new(parsed),
                    duration,
                }
            }
            (None, Some(start), Some(end)) => {
                if end.0 <= start.0 {
                    return Err(SpecError::EndNotAfterStart);
                }
                Times::OneOff(Occurrence {
                    start: start.0,
                    end: end.0,
                })
            }
            _ => return Err(SpecError::NoTimes),
        };
        let preflight = spec
            .before_start
            .as_ref()
            .map(|before| {
                Ok::<_, SpecError>(PreflightRule {
                    lead_time: match &before.lead_time {
                        Some(lead) => signed(lead, "spec.beforeStart.leadTime")?,
                        None => DEFAULT_LEAD_TIME,
                    },
                    required: before.required.unwrap_or(true),
                })
            })
            .transpose()?;
        let missed_start = match &spec.missed_start {
            None => MissedStartRule::Skip,
            Some(missed) => match missed.policy {
                MissedStartPolicy::Skip => MissedStartRule::Skip,
                MissedStartPolicy::StartIfWithin => MissedStartRule::StartIfWithin(signed(
                    missed.within.as_ref().ok_or(SpecError::MissingWithin)?,
                    "spec.missedStart.within",
                )?),
            },
        };
        Ok(Self {
            times,
            preflight,
            after_end: spec.after_end.is_some(),
            missed_start,
            suspended: spec.suspend.unwrap_or(false),
        })
    }

    /// The clock-dependent checks: a recurring window whose cron never fires after `now`, or
    /// whose occurrences overlap within about a year ([`WindowSettings::check_overlap`]). A one-off
    /// in the past is not an error: it is simply `Completed`.
    pub fn check(&self, now: Timestamp) -> Result<(), SpecError> {
        if let Times::Recurring { schedule, .. } = &self.times
            && schedule.next_after(now).is_none()
        {
            return Err(SpecError::NeverFires {
                cron: schedule.cron().pattern.to_string(),
            });
        }
        self.check_overlap(now)
    }

    /// Whether two occurrences starting within about a year of `now` overlap (the duration is
    /// longer than the gap between their starts). Gaps change across daylight-saving
    /// transitions (a daily window has a 23-hour day once a year), which is why the check looks
    /// a whole year ahead rather than at one period. Back-to-back occurrences (gap equal to the
    /// duration) do not overlap.
    pub fn check_overlap(&self, now: Timestamp) -> Result<(), SpecError> {
        let Times::Recurring { schedule, duration } = &self.times else {
            return Ok(());
        };
        let horizon = add(now, OVERLAP_HORIZON);
        // Start from the latest start at or before now, so an occurrence already running is
        // compared with the next one too.
        let mut previous = schedule.latest_due(None, now);
        let mut cursor = now;
        for _ in 0..OVERLAP_MAX_STARTS {
            let Some(start) = schedule.next_after(cursor) else {
                break;
            };
            if let Some(earlier) = previous {
                let gap = start.duration_since(earlier);
                if gap < *duration {
                    return Err(SpecError::Overlap {
                        duration: format!("{:#}", duration),
                        gap: format!("{:#}", gap),
                        first: earlier,
                        second: start,
                    });
                }
            }
            if start > horizon {
                break;
            }
            previous = Some(start);
            cursor = start;
        }
        Ok(())
    }

    /// The occurrence that starts at `start`, if the settings have one starting exactly then.
    pub fn occurrence_starting(&self, start: Timestamp) -> Option<Occurrence> {
        match &self.times {
            Times::OneOff(one) => (one.start == start).then_some(*one),
            Times::Recurring { schedule, duration } => {
                let before = start.checked_sub(SignedDuration::from_nanos(1)).ok()?;
                (schedule.next_after(before) == Some(start)).then(|| Occurrence {
                    start,
                    end: add(start, *duration),
                })
            }
        }
    }

    /// The occurrence open at `now` (`start <= now < end`); when occurrences overlap, the latest
    /// one started.
    pub fn current(&self, now: Timestamp) -> Option<Occurrence> {
        match &self.times {
            Times::OneOff(one) => one.contains(now).then_some(*one),
            Times::Recurring { schedule, duration } => {
                // The latest start in (now - duration, now]: start <= now and
                // start + duration > now, exactly the half-open rule.
                let start = schedule.latest_due(Some(sub(now, *duration)), now)?;
                Some(Occurrence {
                    start,
                    end: add(start, *duration),
                })
            }
        }
    }

    /// The occurrence that started last at or before `now`, open or not.
    pub fn latest_started(&self, now: Timestamp) -> Option<Occurrence> {
        match &self.times {
            Times::OneOff(one) => (one.start <= now).then_some(*one),
            Times::Recurring { schedule, duration } => {
                let start = schedule.latest_due(None, now)?;
                Some(Occurrence {
                    start,
                    end: add(start, *duration),
                })
            }
        }
    }

    /// The first occurrence starting strictly after `after`.
    pub fn next(&self, after: Timestamp) -> Option<Occurrence> {
        match &self.times {
            Times::OneOff(one) => (one.start > after).then_some(*one),
            Times::Recurring { schedule, duration } => {
                let start = schedule.next_after(after)?;
                Some(Occurrence {
                    start,
                    end: add(start, *duration),
                })
            }
        }
    }

    /// The next `count` occurrences starting strictly after `after`, in order (status
    /// `upcoming` shows their starts).
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<Occurrence> {
        match &self.times {
            Times::OneOff(one) => (one.start > after && count > 0)
                .then_some(*one)
                .into_iter()
                .collect(),
            Times::Recurring { schedule, duration } => schedule
                .upcoming(after, count)
                .into_iter()
                .map(|start| Occurrence {
                    start,
                    end: add(start, *duration),
                })
                .collect(),
        }
    }

    /// When an occurrence the window activated ends under the *current* spec: if the spec
    /// still has an occurrence starting at the same instant, its end (so editing `duration` or
    /// a one-off's `end` during a window extends or shortens it, a common request during an
    /// incident); otherwise the end recorded at activation (the schedule was changed, and the
    /// running window keeps the end it was promised).
    pub fn effective_end(&self, activated: &Occurrence) -> Timestamp {
        self.occurrence_starting(activated.start)
            .map_or(activated.end, |now_spec| now_spec.end)
    }
}

/// The occurrence open at `now` for `spec`; see [`WindowSettings::current`].
pub fn current_occurrence(
    spec: &MaintenanceWindowSpec,
    now: Timestamp,
) -> Result<Option<Occurrence>, SpecError> {
    Ok(WindowSettings::from_spec(spec)?.current(now))
}

/// The first occurrence of `spec` starting strictly after `now`; see [`WindowSettings::next`].
pub fn next_occurrence(
    spec: &MaintenanceWindowSpec,
    now: Timestamp,
) -> Result<Option<Occurrence>, SpecError> {
    Ok(WindowSettings::from_spec(spec)?.next(now))
}

/// The next `count` occurrences of `spec` starting strictly after `now`.
pub fn upcoming(
    spec: &MaintenanceWindowSpec,
    now: Timestamp,
    count: usize,
) -> Result<Vec<Occurrence>, SpecError> {
    Ok(WindowSettings::from_spec(spec)?.upcoming(now, count))
}

//! The pure decision logic of a MaintenanceWindow's lifecycle: when its occurrences open and
//! close, what the controller should do about the one the clock is in, and how one saved value
//! is restored. Nothing here reads the clock or does I/O: `now` is always an argument, so every
//! rule is unit-tested with fixed instants, including daylight-saving transitions.
//!
//! # Occurrences
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
//! longer than the gap between two starts (an invalid spec, see [`WindowPlan::check_overlap`])
//! the occurrences overlap; the *current* occurrence is then the latest one started, because
//! that is the one whose end is furthest away and whose changes a person expects to be in
//! force.
//!
//! # Lifecycle
//!
//! `Scheduled -> Preparing -> Active -> Restoring -> Scheduled` (or `Completed` for a one-off,
//! `Suspended` while `suspend` is set). [`decide`] is level-triggered: it looks only at the
//! spec, what status says the window did ([`WindowState`]) and the clock, and returns one
//! [`Decision`]. The controller carries it out, records the outcome in status, and calls
//! [`decide`] again at once after every *action* (see [`Decision::requeue_at`]) or at the instant
//! a *waiting* decision names, so boundaries are acted on by timers, never by polling.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::types::{MaintenanceWindowSpec, MissedStartPolicy, OnDrift, SavedValue};
use crate::duration::{Duration, DurationError};
use crate::schedule::{Schedule, ScheduleError};

/// How late after an occurrence's start a first activation still counts as on time. A
/// reconcile woken by the start timer runs a few milliseconds to seconds after it; that must not
/// count as a missed start.
pub const MISSED_START_GRACE: SignedDuration = SignedDuration::from_secs(5);

/// How long before the start the `beforeStart` run begins when `leadTime` is not set.
pub const DEFAULT_LEAD_TIME: SignedDuration = SignedDuration::from_mins(10);

/// How far ahead [`WindowPlan::check_overlap`] looks for two occurrences that overlap: a bit
/// more than a year, so every daylight-saving transition is crossed once.
const OVERLAP_HORIZON: SignedDuration = SignedDuration::from_hours(24 * 400);

/// Upper bound on the starts [`WindowPlan::check_overlap`] compares, so a minutely schedule is
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
pub struct WindowPlan {
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
    let parsed = value
        .parse()
        .map_err(|source| SpecError::Duration { field, source })?;
    // Anything too long for a SignedDuration (hundreds of billions of years) is not a real
    // window; saturating keeps parsing total.
    Ok(SignedDuration::try_from(parsed).unwrap_or(SignedDuration::MAX))
}

/// `at + by`, saturating: a window far in the future must not panic the controller.
fn add(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_add(by).unwrap_or(if by.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `at - by`, saturating.
fn sub(at: Timestamp, by: SignedDuration) -> Timestamp {
    add(at, -by)
}

impl WindowPlan {
    /// Parses a spec. Fails on anything that makes the window's times unknowable (cron, time
    /// zone, durations, a one-off whose end is not after its start). Problems that depend on
    /// the clock (a cron that never fires again, overlapping occurrences) are checked by
    /// [`WindowPlan::check`].
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
    /// whose occurrences overlap within about a year ([`WindowPlan::check_overlap`]). A one-off
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

    /// The occurrence that starts at `start`, if the plan has one starting exactly then.
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

/// The occurrence open at `now` for `spec`; see [`WindowPlan::current`].
pub fn current_occurrence(
    spec: &MaintenanceWindowSpec,
    now: Timestamp,
) -> Result<Option<Occurrence>, SpecError> {
    Ok(WindowPlan::from_spec(spec)?.current(now))
}

/// The first occurrence of `spec` starting strictly after `now`; see [`WindowPlan::next`].
pub fn next_occurrence(
    spec: &MaintenanceWindowSpec,
    now: Timestamp,
) -> Result<Option<Occurrence>, SpecError> {
    Ok(WindowPlan::from_spec(spec)?.next(now))
}

/// The next `count` occurrences of `spec` starting strictly after `now`.
pub fn upcoming(
    spec: &MaintenanceWindowSpec,
    now: Timestamp,
    count: usize,
) -> Result<Vec<Occurrence>, SpecError> {
    Ok(WindowPlan::from_spec(spec)?.upcoming(now, count))
}

/// A name no longer than Kubernetes allows: long names are cut and a hash of the whole name is
/// appended, so two long window names still give different run names.
fn bounded(name: String) -> String {
    crate::names::bound(&name, crate::names::WINDOW_RUN_NAME).into_owned()
}

/// The RunbookRun name of the `beforeStart` run for the occurrence starting at `start`:
/// `<window>-pre-<minutes since the epoch>`. Deterministic, so a controller that crashed after
/// creating it finds it again instead of starting a second one.
pub fn preflight_run_name(window: &str, start: Timestamp) -> String {
    bounded(format!("{window}-pre-{}", start.as_second().div_euclid(60)))
}

/// The RunbookRun name of the `afterEnd` run for the occurrence starting at `start`:
/// `<window>-post-<minutes since the epoch>`.
pub fn after_end_run_name(window: &str, start: Timestamp) -> String {
    bounded(format!(
        "{window}-post-{}",
        start.as_second().div_euclid(60)
    ))
}

/// The phase shown in status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the next occurrence.
    #[default]
    Scheduled,
    /// The `beforeStart` run is running (or done) for the coming occurrence.
    Preparing,
    /// The window's changes are in force.
    Active,
    /// The window is putting back what it changed (and running `afterEnd`).
    Restoring,
    /// A one-off window that is over.
    Completed,
    /// `suspend` is set and nothing is left to restore.
    Suspended,
    /// The spec cannot be scheduled.
    Invalid,
}

impl Phase {
    /// The string written to `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Scheduled => "Scheduled",
            Phase::Preparing => "Preparing",
            Phase::Active => "Active",
            Phase::Restoring => "Restoring",
            Phase::Completed => "Completed",
            Phase::Suspended => "Suspended",
            Phase::Invalid => "Invalid",
        }
    }

    /// Reads `status.phase`; a missing or unknown value is `Scheduled`, the phase that assumes
    /// nothing was changed (what *was* changed is told by `saved`, not by the phase).
    pub fn from_status(phase: Option<&str>) -> Self {
        match phase {
            Some("Preparing") => Phase::Preparing,
            Some("Active") => Phase::Active,
            Some("Restoring") => Phase::Restoring,
            Some("Completed") => Phase::Completed,
            Some("Suspended") => Phase::Suspended,
            Some("Invalid") => Phase::Invalid,
            _ => Phase::Scheduled,
        }
    }
}

/// How a RunbookRun the window started (preflight or afterEnd) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Not finished yet.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully (failed, cancelled, timed out).
    Failed,
}

/// What the controller knows about the window from its status and the runs it owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    /// `status.phase`.
    pub phase: Phase,
    /// The occurrence the window activated and has not finished restoring: `status.currentWindow`
    /// while the phase is Active or Restoring, `None` otherwise.
    pub activated: Option<Occurrence>,
    /// Whether `status.saved` holds values still to restore.
    pub has_saved: bool,
    /// Start of the latest occurrence the window handled (activated, skipped or finished): the
    /// later of `status.lastWindow.start` and `status.currentWindow.start`. No occurrence
    /// starting at or before it is acted on again.
    pub last_handled: Option<Timestamp>,
    /// The RunbookRuns this window started, by name, with how they stand. Only the names
    /// [`preflight_run_name`] and [`after_end_run_name`] give are looked up.
    pub runs: BTreeMap<String, RunOutcome>,
    /// `metadata.creationTimestamp`: an occurrence that was already open when the window was
    /// created was not *missed* by the operator, so the missed-start policy does not apply.
    pub created: Option<Timestamp>,
    /// `metadata.deletionTimestamp` is set: restore, then let the finalizer go.
    pub deleting: bool,
    /// When the running operator started watching. An occurrence that started after it was
    /// seen by a running operator: acting on it late is slowness (many windows opening at
    /// once), not a missed start, so it is activated late rather than skipped. `None`:
    /// unknown, every late first activation is a missed start.
    pub watching_since: Option<Timestamp>,
}

/// Why an occurrence is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A required `beforeStart` run failed.
    PreflightFailed,
    /// A required `beforeStart` run was still running when the occurrence ended.
    PreflightUnfinished,
    /// The operator was down at the start and `missedStart` says not to start late.
    MissedStart,
}

impl SkipReason {
    /// The Event and condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            SkipReason::PreflightFailed => "PreflightFailed",
            SkipReason::PreflightUnfinished => "PreflightUnfinished",
            SkipReason::MissedStart => "MissedStart",
        }
    }

    /// The `lastWindow.result` recorded for the skipped occurrence.
    pub fn result(self) -> &'static str {
        match self {
            SkipReason::PreflightFailed | SkipReason::PreflightUnfinished => "PreflightFailed",
            SkipReason::MissedStart => "Skipped",
        }
    }
}

/// Why the window restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreReason {
    /// The occurrence is over (possibly long ago, while the operator was down).
    Ended,
    /// `suspend` was set during the occurrence.
    Suspended,
    /// The window is being deleted.
    Deleted,
}

/// What the controller should do now. *Actions* change something and are followed by an
/// immediate new [`decide`]; *waits* name the instant to decide again.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Wait. Nothing to do until `requeue_at` (the next preflight or start); `None` when the
    /// schedule never fires again.
    Idle {
        /// When to decide again.
        requeue_at: Option<Timestamp>,
    },
    /// Action: create the `beforeStart` RunbookRun (trigger MaintenanceWindow) named `run_name`
    /// for `occurrence`.
    StartPreflight {
        /// The occurrence being prepared.
        occurrence: Occurrence,
        /// The run's name, from [`preflight_run_name`].
        run_name: String,
    },
    /// Wait for the preflight run to finish (its status change wakes the controller) or until
    /// `requeue_at` (the start, or the end once the start has passed).
    WaitForPreflight {
        /// The occurrence being prepared.
        occurrence: Occurrence,
        /// The run waited for.
        run_name: String,
        /// When to decide again if the run has not finished.
        requeue_at: Timestamp,
    },
    /// Wait: the preflight is done (or failed and is not required); activate at the start.
    WaitForStart {
        /// The occurrence about to open.
        occurrence: Occurrence,
        /// Its start.
        requeue_at: Timestamp,
    },
    /// Action: record `occurrence` as skipped (`lastWindow` with [`SkipReason::result`]), emit an
    /// Event; change nothing in the cluster.
    SkipOccurrence {
        /// The occurrence skipped.
        occurrence: Occurrence,
        /// Why.
        reason: SkipReason,
    },
    /// Action: save prior values, apply the targets' changes, record `currentWindow` and phase
    /// Active.
    Activate {
        /// The occurrence opening.
        occurrence: Occurrence,
        /// More than [`MISSED_START_GRACE`] after the start (a missed start allowed by
        /// `StartIfWithin`, a preflight that finished after the start, or a window created
        /// during the occurrence).
        late: bool,
    },
    /// Wait: the changes stay in force until `requeue_at`, the occurrence's end.
    StayActive {
        /// The occurrence in force.
        occurrence: Occurrence,
        /// Its end.
        requeue_at: Timestamp,
    },
    /// Action: restore every saved value ([`restore_action`]), emptying `saved`; phase
    /// Restoring.
    Restore {
        /// The occurrence being closed; `None` if status holds saved values but lost track of
        /// their occurrence (they are restored all the same).
        occurrence: Option<Occurrence>,
        /// Why now.
        reason: RestoreReason,
    },
    /// Action: create the `afterEnd` RunbookRun named `run_name`.
    StartAfterEnd {
        /// The occurrence that was closed.
        occurrence: Occurrence,
        /// The run's name, from [`after_end_run_name`].
        run_name: String,
    },
    /// Action: the restore is done: move `currentWindow` to `lastWindow` with its result and
    /// clear it. The phase shown is Scheduled until the next [`decide`], which may say
    /// Completed, Suspended or Release instead.
    Finish {
        /// The occurrence that was closed.
        occurrence: Occurrence,
    },
    /// Wait: a one-off window that is over; nothing will happen again.
    Complete,
    /// Wait: `suspend` is set and nothing is left to restore; the next spec change wakes the
    /// controller.
    Suspended,
    /// Action: the window is being deleted and nothing is left to restore; remove the finalizer.
    Release,
    /// Wait: the spec cannot be scheduled (report `InvalidSpec` naming the field); nothing was
    /// left to restore.
    Invalid(SpecError),
}

impl Decision {
    /// The phase to show in status for this decision; `None` for [`Decision::Release`] (the
    /// object is going away).
    pub fn phase(&self) -> Option<Phase> {
        Some(match self {
            Decision::Idle { .. } | Decision::SkipOccurrence { .. } | Decision::Finish { .. } => {
                Phase::Scheduled
            }
            Decision::StartPreflight { .. }
            | Decision::WaitForPreflight { .. }
            | Decision::WaitForStart { .. } => Phase::Preparing,
            Decision::Activate { .. } | Decision::StayActive { .. } => Phase::Active,
            Decision::Restore { .. } | Decision::StartAfterEnd { .. } => Phase::Restoring,
            Decision::Complete => Phase::Completed,
            Decision::Suspended => Phase::Suspended,
            Decision::Invalid(_) => Phase::Invalid,
            Decision::Release => return None,
        })
    }

    /// For a wait, the instant to decide again (`None`: only a change to the window or its runs
    /// wakes it). For an action, `None` as well: after carrying it out and writing status, the
    /// controller decides again at once (see [`Decision::is_action`]).
    pub fn requeue_at(&self) -> Option<Timestamp> {
        match self {
            Decision::Idle { requeue_at } => *requeue_at,
            Decision::WaitForPreflight { requeue_at, .. }
            | Decision::WaitForStart { requeue_at, .. }
            | Decision::StayActive { requeue_at, .. } => Some(*requeue_at),
            _ => None,
        }
    }

    /// Whether this decision changes something (in the cluster or in status) and must be
    /// followed by another [`decide`] once done.
    pub fn is_action(&self) -> bool {
        matches!(
            self,
            Decision::StartPreflight { .. }
                | Decision::SkipOccurrence { .. }
                | Decision::Activate { .. }
                | Decision::Restore { .. }
                | Decision::StartAfterEnd { .. }
                | Decision::Finish { .. }
                | Decision::Release
        )
    }
}

/// Decides what the window named `window` should do at `now`.
///
/// Order of precedence, each rule level-triggered:
///
/// 1. **Restoring comes first.** Saved values or an activated occurrence are restored when the
///    window is deleted, suspended, or its occurrence has ended (by the current spec's end for
///    that start, see [`WindowPlan::effective_end`]), however long ago; an activated occurrence
///    otherwise stays active, even if the spec became invalid (it ends at its recorded end).
///    Once nothing is saved: `afterEnd` (not on deletion), then [`Decision::Finish`].
/// 2. Deleting with nothing to restore: [`Decision::Release`].
/// 3. An invalid spec: [`Decision::Invalid`]; suspended: [`Decision::Suspended`].
/// 4. An open occurrence not yet handled: if more than [`MISSED_START_GRACE`] has passed since
///    its start, no preflight run exists for it and it started after the window was created,
///    the operator missed its start and `missedStart` decides (Skip, or StartIfWithin
///    `within`, inclusive). Otherwise the preflight rules apply, then [`Decision::Activate`].
/// 5. The next occurrence: preflight from `start - leadTime`, else [`Decision::Idle`] until the
///    next boundary; a one-off that is over is [`Decision::Complete`].
///
/// An occurrence that ended unhandled while a preflight run for it exists is recorded as
/// skipped (`PreflightUnfinished` for a required run still running, `PreflightFailed` for a
/// required run that failed, `MissedStart` otherwise) before anything else of rules 4 and 5.
/// Occurrences that passed entirely while the operator was down or the window suspended, with
/// no run, are not recorded: there is nothing to report about them but the downtime.
///
/// While an occurrence is active, a later one that starts before its end (overlapping
/// occurrences, an invalid spec) is not activated; once the first is finished, the later one is
/// open and unhandled, more than the grace after its start, so `missedStart` decides.
///
/// Preflight rules: no run yet → start it (even after the start, for an occurrence being
/// attempted late); running → wait until the start, and after the start a required run is
/// waited for until the end (then the occurrence is skipped as `PreflightUnfinished`) while a
/// not-required one does not hold the window up; succeeded → activate at the start; failed →
/// skip (`PreflightFailed`) if required, else activate at the start.
pub fn decide(
    window: &str,
    spec: &MaintenanceWindowSpec,
    state: &WindowState,
    now: Timestamp,
) -> Decision {
    let plan = WindowPlan::from_spec(spec);
    if let Some(decision) = restoring(window, plan.as_ref().ok(), spec, state, now) {
        return decision;
    }
    if state.deleting {
        return Decision::Release;
    }
    let plan = match plan {
        Ok(plan) => plan,
        Err(error) => return Decision::Invalid(error),
    };
    if plan.suspended {
        return Decision::Suspended;
    }
    let handled = |occurrence: &Occurrence| {
        state
            .last_handled
            .is_some_and(|last| occurrence.start <= last)
    };
    // An occurrence that ended unhandled although a preflight run was started for it: the
    // run did not finish in time, failed, or the operator was down from before the start
    // until after the end. Record why it did not happen instead of dropping it silently.
    if let Some(rule) = plan.preflight
        && let Some(ended) = plan
            .latest_started(now)
            .filter(|latest| latest.end <= now && !handled(latest))
        && let Some(outcome) = state.runs.get(&preflight_run_name(window, ended.start))
    {
        return Decision::SkipOccurrence {
            occurrence: ended,
            reason: match outcome {
                RunOutcome::Running if rule.required => SkipReason::PreflightUnfinished,
                RunOutcome::Failed if rule.required => SkipReason::PreflightFailed,
                _ => SkipReason::MissedStart,
            },
        };
    }
    if let Some(open) = plan.current(now).filter(|open| !handled(open)) {
        return open_occurrence(window, &plan, state, open, now);
    }
    // The next occurrence not yet handled (a preflight failure can skip one before its start).
    let after = state.last_handled.map_or(now, |last| last.max(now));
    let Some(next) = plan.next(after) else {
        return match plan.times {
            Times::OneOff(_) => Decision::Complete,
            Times::Recurring { .. } => Decision::Idle { requeue_at: None },
        };
    };
    let Some(rule) = plan.preflight else {
        return Decision::Idle {
            requeue_at: Some(next.start),
        };
    };
    let prepare_at = sub(next.start, rule.lead_time);
    if now < prepare_at {
        return Decision::Idle {
            requeue_at: Some(prepare_at),
        };
    }
    let run_name = preflight_run_name(window, next.start);
    match state.runs.get(&run_name) {
        None => Decision::StartPreflight {
            occurrence: next,
            run_name,
        },
        Some(RunOutcome::Running) => Decision::WaitForPreflight {
            occurrence: next,
            run_name,
            requeue_at: next.start,
        },
        Some(RunOutcome::Failed) if rule.required => Decision::SkipOccurrence {
            occurrence: next,
            reason: SkipReason::PreflightFailed,
        },
        Some(RunOutcome::Succeeded | RunOutcome::Failed) => Decision::WaitForStart {
            occurrence: next,
            requeue_at: next.start,
        },
    }
}

/// Rule 1 of [`decide`]: what to do while the window has something in force or half restored.
/// Works without a valid plan, because a spec broken during a window must not strand changes.
fn restoring(
    window: &str,
    plan: Option<&WindowPlan>,
    spec: &MaintenanceWindowSpec,
    state: &WindowState,
    now: Timestamp,
) -> Option<Decision> {
    if state.activated.is_none() && !state.has_saved {
        return None;
    }
    let suspended = spec.suspend.unwrap_or(false);
    let end = state
        .activated
        .map(|activated| plan.map_or(activated.end, |plan| plan.effective_end(&activated)));
    let reason = if state.deleting {
        Some(RestoreReason::Deleted)
    } else if suspended {
        Some(RestoreReason::Suspended)
    } else if end.is_none_or(|end| now >= end) {
        // Saved values without an occurrence have no end to wait for: restore them.
        Some(RestoreReason::Ended)
    } else {
        None
    };
    let restoring = state.phase == Phase::Restoring;
    match (state.activated, reason) {
        // A restore already under way is finished whatever changed since (e.g. suspend was
        // cleared again): the values are half put back, and putting the rest back is the only
        // state that is consistent.
        (Some(occurrence), None) if restoring && state.has_saved => Some(Decision::Restore {
            occurrence: Some(occurrence),
            reason: RestoreReason::Ended,
        }),
        (Some(occurrence), None) if !restoring => Some(Decision::StayActive {
            occurrence,
            requeue_at: end.unwrap_or(occurrence.end),
        }),
        _ if state.has_saved => Some(Decision::Restore {
            occurrence: state.activated,
            reason: reason.unwrap_or(RestoreReason::Ended),
        }),
        // Nothing saved any more: the restore is done.
        (Some(occurrence), _) => {
            if state.deleting {
                // The afterEnd run would be owned by the window being deleted and collected
                // with it; the finalizer goes once status is consistent.
                return Some(Decision::Finish { occurrence });
            }
            if plan.is_some_and(|plan| plan.after_end) {
                let run_name = after_end_run_name(window, occurrence.start);
                if !state.runs.contains_key(&run_name) {
                    return Some(Decision::StartAfterEnd {
                        occurrence,
                        run_name,
                    });
                }
            }
            Some(Decision::Finish { occurrence })
        }
        (None, _) => None,
    }
}

/// Rule 4 of [`decide`]: an open occurrence the window has not handled yet.
fn open_occurrence(
    window: &str,
    plan: &WindowPlan,
    state: &WindowState,
    open: Occurrence,
    now: Timestamp,
) -> Decision {
    let since_start = now.duration_since(open.start);
    let late = since_start > MISSED_START_GRACE;
    let run_name = plan
        .preflight
        .map(|_| preflight_run_name(window, open.start));
    let run = run_name.as_ref().and_then(|name| state.runs.get(name));
    // A preflight run for this occurrence proves the operator was there before the start; a
    // window created after the start never had a start to miss.
    let missed = late
        && run.is_none()
        && state.created.is_none_or(|created| created <= open.start)
        && state.watching_since.is_none_or(|since| open.start < since);
    if missed {
        let start_anyway = match plan.missed_start {
            MissedStartRule::Skip => false,
            MissedStartRule::StartIfWithin(within) => since_start <= within,
        };
        if !start_anyway {
            return Decision::SkipOccurrence {
                occurrence: open,
                reason: SkipReason::MissedStart,
            };
        }
    }
    let (Some(rule), Some(run_name)) = (plan.preflight, run_name) else {
        return Decision::Activate {
            occurrence: open,
            late,
        };
    };
    match run {
        None => Decision::StartPreflight {
            occurrence: open,
            run_name,
        },
        Some(RunOutcome::Running) if rule.required => Decision::WaitForPreflight {
            occurrence: open,
            run_name,
            requeue_at: open.end,
        },
        Some(RunOutcome::Failed) if rule.required => Decision::SkipOccurrence {
            occurrence: open,
            reason: SkipReason::PreflightFailed,
        },
        Some(_) => Decision::Activate {
            occurrence: open,
            late,
        },
    }
}

/// What to do with one saved value at restore time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreAction {
    /// Write this prior value back.
    Write(String),
    /// Remove the field: it did not exist before the window (e.g. an env var it added).
    Remove,
    /// Someone changed the field during the window and `onDrift: Respect` keeps their value
    /// (`None`: they removed it); report `DriftRespected`.
    KeepDrifted {
        /// The value found.
        current: Option<String>,
    },
    /// The field already holds its prior value.
    Nothing,
}

/// How to restore `saved`, given the field's `current` value (`None` when the field is
/// absent, e.g. an env var that is not set; an object that no longer exists has nothing to
/// restore and is the controller's to report).
///
/// * Already at the prior value (however it got there): [`RestoreAction::Nothing`].
/// * Still what the window wrote: write the prior value back, or remove the field if it did
///   not exist before.
/// * Anything else is drift: `Respect` keeps it ([`RestoreAction::KeepDrifted`]); `Revert`
///   writes the prior value (or removes the field) anyway.
pub fn restore_action(
    saved: &SavedValue,
    current: Option<&str>,
    on_drift: OnDrift,
) -> RestoreAction {
    if current == saved.prior.as_deref() {
        return RestoreAction::Nothing;
    }
    let back = || match &saved.prior {
        Some(prior) => RestoreAction::Write(prior.clone()),
        None => RestoreAction::Remove,
    };
    if current == Some(saved.written.as_str()) {
        return back();
    }
    match on_drift {
        OnDrift::Respect => RestoreAction::KeepDrifted {
            current: current.map(str::to_owned),
        },
        OnDrift::Revert => back(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance_window::types::{
        AfterEnd, BeforeStart, MissedStart, MissedStartPolicy, WindowSchedule,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const W: &str = "nightly";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn occ(start: &str, end: &str) -> Occurrence {
        Occurrence {
            start: ts(start),
            end: ts(end),
        }
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    fn mins(n: i64) -> SignedDuration {
        SignedDuration::from_mins(n)
    }

    /// Local wall-clock time with its offset, to state DST expectations in local terms.
    fn local(t: Timestamp, zone: &str) -> String {
        t.to_zoned(jiff::tz::TimeZone::get(zone).unwrap())
            .strftime("%Y-%m-%d %H:%M %:z")
            .to_string()
    }

    fn base() -> MaintenanceWindowSpec {
        MaintenanceWindowSpec {
            schedule: None,
            start: None,
            end: None,
            suspend: None,
            before_start: None,
            targets: Vec::new(),
            after_end: None,
            on_drift: None,
            missed_start: None,
        }
    }

    fn recurring(cron: &str, zone: &str, duration: &str) -> MaintenanceWindowSpec {
        MaintenanceWindowSpec {
            schedule: Some(WindowSchedule {
                cron: cron.into(),
                time_zone: Some(zone.into()),
                duration: duration.into(),
            }),
            ..base()
        }
    }

    fn one_off(start: &str, end: &str) -> MaintenanceWindowSpec {
        MaintenanceWindowSpec {
            start: Some(Time(ts(start))),
            end: Some(Time(ts(end))),
            ..base()
        }
    }

    fn with_preflight(
        mut spec: MaintenanceWindowSpec,
        lead: Option<&str>,
        required: Option<bool>,
    ) -> MaintenanceWindowSpec {
        spec.before_start = Some(BeforeStart {
            runbook: "backup".into(),
            params: BTreeMap::new(),
            lead_time: lead.map(Duration::from),
            required,
        });
        spec
    }

    fn with_after_end(mut spec: MaintenanceWindowSpec) -> MaintenanceWindowSpec {
        spec.after_end = Some(AfterEnd {
            runbook: "verify".into(),
            params: BTreeMap::new(),
        });
        spec
    }

    fn with_missed(
        mut spec: MaintenanceWindowSpec,
        policy: MissedStartPolicy,
        within: Option<&str>,
    ) -> MaintenanceWindowSpec {
        spec.missed_start = Some(MissedStart {
            policy,
            within: within.map(Duration::from),
        });
        spec
    }

    fn plan(spec: &MaintenanceWindowSpec) -> WindowPlan {
        WindowPlan::from_spec(spec).unwrap()
    }

    /// A window created long before any occurrence in the tests.
    fn fresh() -> WindowState {
        WindowState {
            created: Some(ts("2026-01-01T00:00:00Z")),
            ..WindowState::default()
        }
    }

    fn active(occurrence: Occurrence) -> WindowState {
        WindowState {
            phase: Phase::Active,
            activated: Some(occurrence),
            has_saved: true,
            last_handled: Some(occurrence.start),
            ..fresh()
        }
    }

    /// What the controller records after carrying out a decision, so multi-step scenarios can
    /// be walked through.
    fn apply(state: &mut WindowState, decision: &Decision) {
        if let Some(phase) = decision.phase() {
            state.phase = phase;
        }
        match decision {
            Decision::StartPreflight { run_name, .. }
            | Decision::StartAfterEnd { run_name, .. } => {
                state.runs.insert(run_name.clone(), RunOutcome::Running);
            }
            Decision::SkipOccurrence { occurrence, .. } => {
                state.last_handled = Some(occurrence.start);
            }
            Decision::Activate { occurrence, .. } => {
                state.activated = Some(*occurrence);
                state.has_saved = true;
                state.last_handled = Some(occurrence.start);
            }
            Decision::Restore { .. } => state.has_saved = false,
            Decision::Finish { occurrence } => {
                state.activated = None;
                state.last_handled = Some(occurrence.start);
            }
            _ => {}
        }
    }

    /// Decides and applies until the decision is a wait; returns every decision.
    fn settle(
        spec: &MaintenanceWindowSpec,
        state: &mut WindowState,
        now: Timestamp,
    ) -> Vec<Decision> {
        let mut seen = Vec::new();
        for _ in 0..20 {
            let decision = decide(W, spec, state, now);
            apply(state, &decision);
            let done = !decision.is_action() || decision == Decision::Release;
            seen.push(decision);
            if done {
                return seen;
            }
        }
        panic!("no wait reached: {seen:?}");
    }

    // --- occurrences -------------------------------------------------------------------------

    fn sydney() -> MaintenanceWindowSpec {
        recurring("0 2 * * SUN#1", "Australia/Sydney", "2h")
    }

    #[test]
    fn sydney_first_sunday_in_standard_time() {
        let p = plan(&sydney());
        let first = p.next(ts("2026-09-01T00:00:00Z")).unwrap();
        assert_eq!(first, occ("2026-09-05T16:00:00Z", "2026-09-05T18:00:00Z"));
        assert_eq!(
            local(first.start, "Australia/Sydney"),
            "2026-09-06 02:00 +10:00"
        );
    }

    #[test]
    fn sydney_spring_forward_starts_at_the_jump_and_lasts_elapsed_time() {
        // 2026-10-04: 02:00 AEST becomes 03:00 AEDT, so 02:00 does not exist.
        let p = plan(&sydney());
        let expected = occ("2026-10-03T16:00:00Z", "2026-10-03T18:00:00Z");
        assert_eq!(p.next(ts("2026-09-06T00:00:00Z")), Some(expected));
        assert_eq!(
            local(expected.start, "Australia/Sydney"),
            "2026-10-04 03:00 +11:00"
        );
        assert_eq!(
            local(expected.end, "Australia/Sydney"),
            "2026-10-04 05:00 +11:00"
        );
        assert_eq!(p.current(ts("2026-10-03T15:59:59Z")), None);
        assert_eq!(p.current(ts("2026-10-03T16:00:00Z")), Some(expected));
        assert_eq!(p.current(ts("2026-10-03T17:59:59Z")), Some(expected));
        assert_eq!(p.current(ts("2026-10-03T18:00:00Z")), None);
    }

    #[test]
    fn sydney_fall_back_starts_once_at_the_first_two_oclock() {
        // 2027-04-04: 03:00 AEDT becomes 02:00 AEST, so 02:00-03:00 happens twice.
        let p = plan(&sydney());
        let expected = occ("2027-04-03T15:00:00Z", "2027-04-03T17:00:00Z");
        assert_eq!(
            local(expected.start, "Australia/Sydney"),
            "2027-04-04 02:00 +11:00"
        );
        // Two hours elapsed: the wall clock shows 03:00 again, in standard time.
        assert_eq!(
            local(expected.end, "Australia/Sydney"),
            "2027-04-04 03:00 +10:00"
        );
        // During the second 02:xx hour it is the same occurrence, not a new one.
        assert_eq!(p.current(ts("2027-04-03T16:30:00Z")), Some(expected));
        assert_eq!(p.current(ts("2027-04-03T17:00:00Z")), None);
        assert_eq!(
            p.next(expected.start).unwrap().start,
            ts("2027-05-01T16:00:00Z") // 2027-05-02 02:00 AEST
        );
        let starts: Vec<_> = p
            .upcoming(ts("2027-03-10T00:00:00Z"), 3)
            .iter()
            .map(|o| o.start)
            .collect();
        assert_eq!(
            starts,
            [
                ts("2027-04-03T15:00:00Z"),
                ts("2027-05-01T16:00:00Z"),
                ts("2027-06-05T16:00:00Z")
            ]
        );
    }

    #[test]
    fn berlin_transitions() {
        let p = plan(&recurring("30 2 * * *", "Europe/Berlin", "1h"));
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 runs at the jump.
        let spring = p.next(ts("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(spring, occ("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"));
        assert_eq!(
            local(spring.start, "Europe/Berlin"),
            "2026-03-29 03:00 +02:00"
        );
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 runs at the first one only.
        let fall = p.next(ts("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(fall, occ("2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"));
        // 02:45 CET, the second 02:xx hour: the window (an hour elapsed) is over.
        assert_eq!(p.current(ts("2026-10-25T01:45:00Z")), None);
        assert_eq!(
            p.next(ts("2026-10-25T01:45:00Z")).unwrap().start,
            ts("2026-10-26T01:30:00Z")
        );
    }

    #[test]
    fn new_york_transitions() {
        // 2026-11-01: 02:00 EDT becomes 01:00 EST.
        let p = plan(&recurring("30 1 * * *", "America/New_York", "1h"));
        let fall = occ("2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z");
        assert_eq!(p.current(ts("2026-11-01T06:00:00Z")), Some(fall));
        // 01:45 EST: the wall clock passed 01:30 again, but that is not a start.
        assert_eq!(p.current(ts("2026-11-01T06:45:00Z")), None);
        assert_eq!(
            p.next(ts("2026-11-01T06:45:00Z")).unwrap().start,
            ts("2026-11-02T06:30:00Z")
        );
        // 2027-03-14: 02:00 EST becomes 03:00 EDT; 02:30 runs at the jump, for 2h elapsed.
        let p = plan(&recurring("30 2 * * *", "America/New_York", "2h"));
        let spring = p.next(ts("2027-03-13T12:00:00Z")).unwrap();
        assert_eq!(spring, occ("2027-03-14T07:00:00Z", "2027-03-14T09:00:00Z"));
        assert_eq!(
            local(spring.end, "America/New_York"),
            "2027-03-14 05:00 -04:00"
        );
    }

    #[test]
    fn quarterly_first_sunday() {
        let p = plan(&recurring("0 1 * 1,4,7,10 SUN#1", "Europe/Berlin", "4h"));
        let up = p.upcoming(ts("2026-01-10T00:00:00Z"), 3);
        assert_eq!(
            up,
            [
                occ("2026-04-04T23:00:00Z", "2026-04-05T03:00:00Z"),
                occ("2026-07-04T23:00:00Z", "2026-07-05T03:00:00Z"),
                occ("2026-10-03T23:00:00Z", "2026-10-04T03:00:00Z"),
            ]
        );
        // January is in CET.
        assert_eq!(
            p.next(ts("2026-10-04T12:00:00Z")),
            Some(occ("2027-01-03T00:00:00Z", "2027-01-03T04:00:00Z"))
        );
        assert_eq!(p.current(ts("2026-04-05T02:59:59Z")), Some(up[0]));
        assert_eq!(p.current(ts("2026-04-05T03:00:00Z")), None);
        assert_eq!(p.check(ts("2026-01-10T00:00:00Z")), Ok(()));
    }

    #[test]
    fn one_off_occurrence() {
        let spec = one_off("2026-12-06T02:00:00+11:00", "2026-12-06T04:00:00+11:00");
        let window = occ("2026-12-05T15:00:00Z", "2026-12-05T17:00:00Z");
        assert_eq!(
            next_occurrence(&spec, ts("2026-12-01T00:00:00Z")),
            Ok(Some(window))
        );
        assert_eq!(
            upcoming(&spec, ts("2026-12-01T00:00:00Z"), 3),
            Ok(vec![window])
        );
        assert_eq!(
            current_occurrence(&spec, ts("2026-12-05T14:59:59Z")),
            Ok(None)
        );
        assert_eq!(
            current_occurrence(&spec, ts("2026-12-05T15:00:00Z")),
            Ok(Some(window))
        );
        assert_eq!(
            current_occurrence(&spec, ts("2026-12-05T17:00:00Z")),
            Ok(None)
        );
        assert_eq!(next_occurrence(&spec, ts("2026-12-05T15:00:00Z")), Ok(None));
        assert_eq!(upcoming(&spec, ts("2026-12-05T16:00:00Z"), 3), Ok(vec![]));
    }

    #[test]
    fn back_to_back_occurrences_do_not_overlap() {
        let p = plan(&recurring("0 * * * *", "UTC", "1h"));
        assert_eq!(
            p.current(ts("2026-06-01T10:00:00Z")),
            Some(occ("2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z"))
        );
        assert_eq!(
            p.current(ts("2026-06-01T09:59:59Z")),
            Some(occ("2026-06-01T09:00:00Z", "2026-06-01T10:00:00Z"))
        );
        assert_eq!(p.check_overlap(ts("2026-06-01T10:00:00Z")), Ok(()));
    }

    #[test]
    fn overlapping_occurrences_current_is_the_latest_started() {
        let p = plan(&recurring("0 * * * *", "UTC", "90m"));
        assert_eq!(
            p.current(ts("2026-06-01T10:15:00Z")),
            Some(occ("2026-06-01T10:00:00Z", "2026-06-01T11:30:00Z"))
        );
        let err = p.check_overlap(ts("2026-06-01T10:15:00Z")).unwrap_err();
        assert!(matches!(err, SpecError::Overlap { .. }), "{err}");
        assert!(
            err.to_string().starts_with("spec.schedule.duration:"),
            "{err}"
        );
    }

    #[test]
    fn overlap_is_found_at_a_short_dst_day() {
        // 23h30m fits every day but the 23-hour spring-forward day.
        let p = plan(&recurring("0 1 * * *", "America/New_York", "23h30m"));
        let err = p.check_overlap(ts("2026-06-01T00:00:00Z")).unwrap_err();
        assert_eq!(
            err,
            SpecError::Overlap {
                duration: "23h 30m".into(),
                gap: "23h".into(),
                // 01:00 EST on the transition day, then 01:00 EDT the next day.
                first: ts("2027-03-14T06:00:00Z"),
                second: ts("2027-03-15T05:00:00Z"),
            }
        );
        assert_eq!(
            plan(&recurring("0 1 * * *", "America/New_York", "23h"))
                .check_overlap(ts("2026-06-01T00:00:00Z")),
            Ok(())
        );
    }

    #[test]
    fn spec_errors_name_the_field() {
        let cases = [
            (
                recurring("0 2 * * *", "Mars/Olympus", "1h"),
                "spec.schedule.timeZone",
            ),
            (recurring("0 2 * *", "UTC", "1h"), "spec.schedule.cron"),
            (
                recurring("0 2 * * *", "UTC", "0s"),
                "spec.schedule.duration",
            ),
            (
                recurring("0 2 * * *", "UTC", "1d"),
                "spec.schedule.duration",
            ),
            (
                with_missed(
                    recurring("0 2 * * *", "UTC", "1h"),
                    MissedStartPolicy::StartIfWithin,
                    None,
                ),
                "spec.missedStart.within",
            ),
            (
                with_preflight(recurring("0 2 * * *", "UTC", "1h"), Some("soon"), None),
                "spec.beforeStart.leadTime",
            ),
            (
                one_off("2026-12-06T04:00:00Z", "2026-12-06T02:00:00Z"),
                "spec.end",
            ),
            (base(), "spec:"),
        ];
        for (spec, field) in cases {
            let err = WindowPlan::from_spec(&spec).unwrap_err().to_string();
            assert!(err.starts_with(field), "{field}: {err}");
        }
        let never = plan(&recurring("0 0 30 2 *", "UTC", "1h"));
        let err = never.check(ts("2026-01-01T00:00:00Z")).unwrap_err();
        assert!(matches!(err, SpecError::NeverFires { .. }), "{err}");
        assert!(err.to_string().starts_with("spec.schedule.cron"), "{err}");
    }

    #[test]
    fn run_names_are_deterministic_and_bounded() {
        assert_eq!(
            preflight_run_name(W, ts("2026-10-03T16:00:00Z")),
            "nightly-pre-29850720"
        );
        assert_eq!(
            after_end_run_name(W, ts("2026-10-03T16:00:30Z")),
            "nightly-post-29850720"
        );
        let long = "a".repeat(250);
        let a = preflight_run_name(&long, ts("2026-10-03T16:00:00Z"));
        let b = preflight_run_name(&long, ts("2026-10-03T17:00:00Z"));
        assert!(a.len() <= crate::names::MAX_NAME && b.len() <= crate::names::MAX_NAME);
        assert_ne!(a, b);
    }

    // --- decide: the way through one occurrence ----------------------------------------------

    /// Daily 02:00 UTC for an hour.
    fn daily() -> MaintenanceWindowSpec {
        recurring("0 2 * * *", "UTC", "1h")
    }

    fn today() -> Occurrence {
        occ("2026-06-10T02:00:00Z", "2026-06-10T03:00:00Z")
    }

    #[test]
    fn scheduled_waits_for_the_start_then_activates() {
        let spec = daily();
        let d = decide(W, &spec, &fresh(), ts("2026-06-10T01:00:00Z"));
        assert_eq!(
            d,
            Decision::Idle {
                requeue_at: Some(today().start)
            }
        );
        assert_eq!(d.phase(), Some(Phase::Scheduled));
        assert_eq!(d.requeue_at(), Some(today().start));
        assert!(!d.is_action());
        let d = decide(W, &spec, &fresh(), ts("2026-06-10T02:00:00.300Z"));
        assert_eq!(
            d,
            Decision::Activate {
                occurrence: today(),
                late: false
            }
        );
        assert_eq!(d.phase(), Some(Phase::Active));
        assert!(d.is_action());
    }

    #[test]
    fn active_stays_until_the_end_then_restores_and_returns_to_scheduled() {
        let spec = daily();
        let mut state = active(today());
        let d = decide(W, &spec, &state, ts("2026-06-10T02:30:00Z"));
        assert_eq!(
            d,
            Decision::StayActive {
                occurrence: today(),
                requeue_at: today().end
            }
        );
        assert_eq!(d.requeue_at(), Some(today().end));
        let seen = settle(&spec, &mut state, today().end);
        assert_eq!(
            seen,
            [
                Decision::Restore {
                    occurrence: Some(today()),
                    reason: RestoreReason::Ended
                },
                Decision::Finish {
                    occurrence: today()
                },
                Decision::Idle {
                    requeue_at: Some(ts("2026-06-11T02:00:00Z"))
                },
            ]
        );
        assert_eq!(seen[0].phase(), Some(Phase::Restoring));
        assert_eq!(state.phase, Phase::Scheduled);
        assert_eq!(state.last_handled, Some(today().start));
    }

    #[test]
    fn after_end_runs_after_the_restore() {
        let spec = with_after_end(daily());
        let mut state = active(today());
        let seen = settle(&spec, &mut state, today().end);
        assert_eq!(
            seen[..3],
            [
                Decision::Restore {
                    occurrence: Some(today()),
                    reason: RestoreReason::Ended
                },
                Decision::StartAfterEnd {
                    occurrence: today(),
                    run_name: "nightly-post-29684280".into()
                },
                Decision::Finish {
                    occurrence: today()
                },
            ]
        );
        assert_eq!(seen[1].phase(), Some(Phase::Restoring));
    }

    #[test]
    fn restore_interrupted_by_a_crash_is_finished() {
        let spec = with_after_end(daily());
        let state = WindowState {
            phase: Phase::Restoring,
            ..active(today())
        };
        // Still saved values: restore again (restore_action makes it idempotent).
        assert_eq!(
            decide(W, &spec, &state, ts("2026-06-10T03:00:01Z")),
            Decision::Restore {
                occurrence: Some(today()),
                reason: RestoreReason::Ended
            }
        );
        // Restored, afterEnd created, crash before Finish: Finish, no second run.
        let mut state = WindowState {
            has_saved: false,
            ..state
        };
        state
            .runs
            .insert(after_end_run_name(W, today().start), RunOutcome::Running);
        assert_eq!(
            decide(W, &spec, &state, ts("2026-06-10T03:00:02Z")),
            Decision::Finish {
                occurrence: today()
            }
        );
    }

    #[test]
    fn saved_values_without_an_occurrence_are_restored() {
        let state = WindowState {
            has_saved: true,
            ..fresh()
        };
        assert_eq!(
            decide(W, &daily(), &state, ts("2026-06-10T01:00:00Z")),
            Decision::Restore {
                occurrence: None,
                reason: RestoreReason::Ended
            }
        );
    }

    // --- decide: preflight -------------------------------------------------------------------

    fn pre_name() -> String {
        preflight_run_name(W, today().start)
    }

    fn with_run(mut state: WindowState, name: String, outcome: RunOutcome) -> WindowState {
        state.runs.insert(name, outcome);
        state
    }

    #[test]
    fn preflight_starts_lead_time_before_the_start() {
        let spec = with_preflight(daily(), None, None);
        // Default lead time 10m.
        assert_eq!(
            decide(W, &spec, &fresh(), ts("2026-06-10T01:00:00Z")),
            Decision::Idle {
                requeue_at: Some(ts("2026-06-10T01:50:00Z"))
            }
        );
        let d = decide(W, &spec, &fresh(), ts("2026-06-10T01:50:00Z"));
        assert_eq!(
            d,
            Decision::StartPreflight {
                occurrence: today(),
                run_name: pre_name()
            }
        );
        assert_eq!(d.phase(), Some(Phase::Preparing));
        // A custom lead time.
        let spec = with_preflight(daily(), Some("45m"), None);
        assert_eq!(
            decide(W, &spec, &fresh(), ts("2026-06-10T01:00:00Z")),
            Decision::Idle {
                requeue_at: Some(ts("2026-06-10T01:15:00Z"))
            }
        );
        assert!(matches!(
            decide(W, &spec, &fresh(), ts("2026-06-10T01:15:00Z")),
            Decision::StartPreflight { .. }
        ));
    }

    #[test]
    fn preflight_success_activates_at_the_start() {
        let spec = with_preflight(daily(), None, None);
        let running = with_run(fresh(), pre_name(), RunOutcome::Running);
        let d = decide(W, &spec, &running, ts("2026-06-10T01:52:00Z"));
        assert_eq!(
            d,
            Decision::WaitForPreflight {
                occurrence: today(),
                run_name: pre_name(),
                requeue_at: today().start
            }
        );
        assert_eq!(d.phase(), Some(Phase::Preparing));
        let done = with_run(fresh(), pre_name(), RunOutcome::Succeeded);
        let d = decide(W, &spec, &done, ts("2026-06-10T01:55:00Z"));
        assert_eq!(
            d,
            Decision::WaitForStart {
                occurrence: today(),
                requeue_at: today().start
            }
        );
        assert_eq!(d.phase(), Some(Phase::Preparing));
        assert_eq!(
            decide(W, &spec, &done, today().start),
            Decision::Activate {
                occurrence: today(),
                late: false
            }
        );
    }

    #[test]
    fn required_preflight_failure_skips_the_occurrence() {
        let spec = with_preflight(daily(), None, None);
        let mut state = with_run(fresh(), pre_name(), RunOutcome::Failed);
        let seen = settle(&spec, &mut state, ts("2026-06-10T01:56:00Z"));
        assert_eq!(
            seen,
            [
                Decision::SkipOccurrence {
                    occurrence: today(),
                    reason: SkipReason::PreflightFailed
                },
                // Nothing more until the next occurrence's preflight.
                Decision::Idle {
                    requeue_at: Some(ts("2026-06-11T01:50:00Z"))
                },
            ]
        );
        assert_eq!(SkipReason::PreflightFailed.result(), "PreflightFailed");
        // At the start, the skipped occurrence is not activated.
        assert_eq!(
            decide(W, &spec, &state, today().start),
            Decision::Idle {
                requeue_at: Some(ts("2026-06-11T01:50:00Z"))
            }
        );
    }

    #[test]
    fn not_required_preflight_failure_still_activates() {
        let spec = with_preflight(daily(), None, Some(false));
        let state = with_run(fresh(), pre_name(), RunOutcome::Failed);
        assert_eq!(
            decide(W, &spec, &state, ts("2026-06-10T01:56:00Z")),
            Decision::WaitForStart {
                occurrence: today(),
                requeue_at: today().start
            }
        );
        assert_eq!(
            decide(W, &spec, &state, today().start),
            Decision::Activate {
                occurrence: today(),
                late: false
            }
        );
        // Still running at the start: an optional run does not hold the window up.
        let state = with_run(fresh(), pre_name(), RunOutcome::Running);
        assert_eq!(
            decide(W, &spec, &state, today().start),
            Decision::Activate {
                occurrence: today(),
                late: false
            }
        );
    }

    #[test]
    fn required_preflight_running_past_the_start_delays_activation() {
        let spec = with_preflight(daily(), None, None);
        let running = with_run(fresh(), pre_name(), RunOutcome::Running);
        assert_eq!(
            decide(W, &spec, &running, ts("2026-06-10T02:00:00Z")),
            Decision::WaitForPreflight {
                occurrence: today(),
                run_name: pre_name(),
                requeue_at: today().end
            }
        );
        // It finishes three minutes late: a late activation, not a missed start.
        let done = with_run(fresh(), pre_name(), RunOutcome::Succeeded);
        assert_eq!(
            decide(W, &spec, &done, ts("2026-06-10T02:03:00Z")),
            Decision::Activate {
                occurrence: today(),
                late: true
            }
        );
        // Still running at the end: skipped, recorded as a preflight failure.
        let mut state = running;
        let seen = settle(&spec, &mut state, today().end);
        assert_eq!(
            seen[0],
            Decision::SkipOccurrence {
                occurrence: today(),
                reason: SkipReason::PreflightUnfinished
            }
        );
        assert_eq!(SkipReason::PreflightUnfinished.result(), "PreflightFailed");
        assert_eq!(
            seen[1],
            Decision::Idle {
                requeue_at: Some(ts("2026-06-11T01:50:00Z"))
            }
        );
    }

    // --- decide: missed starts ---------------------------------------------------------------

    #[test]
    fn missed_start_skip_is_the_default() {
        let spec = daily();
        // Within the grace it is on time.
        assert_eq!(
            decide(W, &spec, &fresh(), today().start + MISSED_START_GRACE),
            Decision::Activate {
                occurrence: today(),
                late: false
            }
        );
        let mut state = fresh();
        let seen = settle(&spec, &mut state, today().start + secs(6));
        assert_eq!(
            seen,
            [
                Decision::SkipOccurrence {
                    occurrence: today(),
                    reason: SkipReason::MissedStart
                },
                Decision::Idle {
                    requeue_at: Some(ts("2026-06-11T02:00:00Z"))
                },
            ]
        );
        assert_eq!(SkipReason::MissedStart.result(), "Skipped");
        // Explicit Skip behaves the same.
        let spec = with_missed(daily(), MissedStartPolicy::Skip, None);
        assert!(matches!(
            decide(W, &spec, &fresh(), today().start + mins(1)),
            Decision::SkipOccurrence {
                reason: SkipReason::MissedStart,
                ..
            }
        ));
    }

    #[test]
    fn missed_start_within_starts_late_inside_and_skips_outside() {
        let spec = with_missed(daily(), MissedStartPolicy::StartIfWithin, Some("15m"));
        for (late_by, activates) in [(mins(10), true), (mins(15), true), (mins(16), false)] {
            let d = decide(W, &spec, &fresh(), today().start + late_by);
            if activates {
                assert_eq!(
                    d,
                    Decision::Activate {
                        occurrence: today(),
                        late: true
                    },
                    "{late_by}"
                );
            } else {
                assert_eq!(
                    d,
                    Decision::SkipOccurrence {
                        occurrence: today(),
                        reason: SkipReason::MissedStart
                    },
                    "{late_by}"
                );
            }
        }
    }

    #[test]
    fn missed_start_within_runs_the_preflight_late() {
        let spec = with_preflight(
            with_missed(daily(), MissedStartPolicy::StartIfWithin, Some("15m")),
            None,
            None,
        );
        let at = today().start + mins(10);
        assert_eq!(
            decide(W, &spec, &fresh(), at),
            Decision::StartPreflight {
                occurrence: today(),
                run_name: pre_name()
            }
        );
        // The run exists, so the start is being handled: finishing after `within` still
        // activates.
        let done = with_run(fresh(), pre_name(), RunOutcome::Succeeded);
        assert_eq!(
            decide(W, &spec, &done, today().start + mins(25)),
            Decision::Activate {
                occurrence: today(),
                late: true
            }
        );
    }

    #[test]
    fn window_created_during_an_occurrence_activates_late() {
        let spec = one_off("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
        let state = WindowState {
            created: Some(ts("2026-12-06T02:30:00Z")),
            ..WindowState::default()
        };
        assert_eq!(
            decide(W, &spec, &state, ts("2026-12-06T02:30:01Z")),
            Decision::Activate {
                occurrence: occ("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z"),
                late: true
            }
        );
    }

    #[test]
    fn a_slow_but_running_operator_activates_late_instead_of_skipping() {
        let spec = one_off("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
        let open = occ("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
        let running = WindowState {
            created: Some(ts("2026-12-01T00:00:00Z")),
            watching_since: Some(ts("2026-12-06T01:00:00Z")),
            ..WindowState::default()
        };
        assert_eq!(
            decide(W, &spec, &running, ts("2026-12-06T02:00:30Z")),
            Decision::Activate {
                occurrence: open,
                late: true
            }
        );
        // Started after the start: the operator was down at it, so missedStart decides.
        let restarted = WindowState {
            watching_since: Some(ts("2026-12-06T02:00:20Z")),
            ..running
        };
        assert_eq!(
            decide(W, &spec, &restarted, ts("2026-12-06T02:00:30Z")),
            Decision::SkipOccurrence {
                occurrence: open,
                reason: SkipReason::MissedStart
            }
        );
    }

    #[test]
    fn operator_down_across_the_end_restores_on_return() {
        let spec = daily();
        let mut state = active(today());
        // Back five hours after the end: restore at once, nothing else first.
        let seen = settle(&spec, &mut state, ts("2026-06-10T08:00:00Z"));
        assert_eq!(
            seen,
            [
                Decision::Restore {
                    occurrence: Some(today()),
                    reason: RestoreReason::Ended
                },
                Decision::Finish {
                    occurrence: today()
                },
                Decision::Idle {
                    requeue_at: Some(ts("2026-06-11T02:00:00Z"))
                },
            ]
        );
        // Back during the next occurrence: restore the old one, then missedStart decides the
        // new one.
        let mut state = active(today());
        let seen = settle(&spec, &mut state, ts("2026-06-11T02:10:00Z"));
        assert_eq!(
            seen[2],
            Decision::SkipOccurrence {
                occurrence: occ("2026-06-11T02:00:00Z", "2026-06-11T03:00:00Z"),
                reason: SkipReason::MissedStart
            }
        );
    }

    #[test]
    fn preflight_done_but_operator_down_through_the_window_is_recorded() {
        let spec = with_preflight(daily(), None, None);
        let mut state = with_run(fresh(), pre_name(), RunOutcome::Succeeded);
        let seen = settle(&spec, &mut state, ts("2026-06-10T05:00:00Z"));
        assert_eq!(
            seen[0],
            Decision::SkipOccurrence {
                occurrence: today(),
                reason: SkipReason::MissedStart
            }
        );
        assert_eq!(
            seen[1],
            Decision::Idle {
                requeue_at: Some(ts("2026-06-11T01:50:00Z"))
            }
        );
    }

    // --- decide: suspend, delete, spec changes -----------------------------------------------

    #[test]
    fn suspend_while_active_restores_first() {
        let mut spec = with_after_end(daily());
        spec.suspend = Some(true);
        let mut state = active(today());
        let seen = settle(&spec, &mut state, ts("2026-06-10T02:20:00Z"));
        assert_eq!(
            seen,
            [
                Decision::Restore {
                    occurrence: Some(today()),
                    reason: RestoreReason::Suspended
                },
                Decision::StartAfterEnd {
                    occurrence: today(),
                    run_name: after_end_run_name(W, today().start)
                },
                Decision::Finish {
                    occurrence: today()
                },
                Decision::Suspended,
            ]
        );
        assert_eq!(state.phase, Phase::Suspended);
        assert_eq!(Decision::Suspended.requeue_at(), None);
        // Resumed while the occurrence is still open: it was handled, so nothing happens
        // until the next one.
        spec.suspend = None;
        assert_eq!(
            decide(W, &spec, &state, ts("2026-06-10T02:30:00Z")),
            Decision::Idle {
                requeue_at: Some(ts("2026-06-11T02:00:00Z"))
            }
        );
    }

    #[test]
    fn resume_during_an_unhandled_occurrence_follows_missed_start() {
        let spec = daily();
        assert_eq!(
            decide(W, &spec, &fresh(), ts("2026-06-10T02:30:00Z")),
            Decision::SkipOccurrence {
                occurrence: today(),
                reason: SkipReason::MissedStart
            }
        );
        let mut suspended = daily();
        suspended.suspend = Some(true);
        assert_eq!(
            decide(W, &suspended, &fresh(), ts("2026-06-10T02:30:00Z")),
            Decision::Suspended
        );
    }

    #[test]
    fn unsuspend_during_a_restore_finishes_the_restore() {
        let spec = daily();
        let state = WindowState {
            phase: Phase::Restoring,
            ..active(today())
        };
        assert_eq!(
            decide(W, &spec, &state, ts("2026-06-10T02:20:00Z")),
            Decision::Restore {
                occurrence: Some(today()),
                reason: RestoreReason::Ended
            }
        );
        let state = WindowState {
            has_saved: false,
            ..state
        };
        assert_eq!(
            decide(W, &spec, &state, ts("2026-06-10T02:20:00Z")),
            Decision::Finish {
                occurrence: today()
            }
        );
    }

    #[test]
    fn delete_while_active_restores_then_releases() {
        let spec = with_after_end(daily());
        let mut state = WindowState {
            deleting: true,
            ..active(today())
        };
        let seen = settle(&spec, &mut state, ts("2026-06-10T02:20:00Z"));
        assert_eq!(
            seen,
            [
                Decision::Restore {
                    occurrence: Some(today()),
                    reason: RestoreReason::Deleted
                },
                // No afterEnd for a window going away.
                Decision::Finish {
                    occurrence: today()
                },
                Decision::Release,
            ]
        );
        assert_eq!(Decision::Release.phase(), None);
        let idle = WindowState {
            deleting: true,
            ..fresh()
        };
        assert_eq!(
            decide(W, &spec, &idle, ts("2026-06-10T01:00:00Z")),
            Decision::Release
        );
    }

    #[test]
    fn extending_the_duration_during_a_window_moves_its_end() {
        let spec = recurring("0 2 * * *", "UTC", "3h");
        assert_eq!(
            decide(W, &spec, &active(today()), ts("2026-06-10T02:30:00Z")),
            Decision::StayActive {
                occurrence: today(),
                requeue_at: ts("2026-06-10T05:00:00Z")
            }
        );
        // A changed schedule keeps the end the running window was given.
        let spec = recurring("0 4 * * *", "UTC", "3h");
        assert_eq!(
            decide(W, &spec, &active(today()), ts("2026-06-10T02:30:00Z")),
            Decision::StayActive {
                occurrence: today(),
                requeue_at: today().end
            }
        );
    }

    #[test]
    fn invalid_spec_during_a_window_still_restores_at_the_recorded_end() {
        let spec = recurring("0 2 * * *", "Mars/Olympus", "1h");
        assert_eq!(
            decide(W, &spec, &active(today()), ts("2026-06-10T02:30:00Z")),
            Decision::StayActive {
                occurrence: today(),
                requeue_at: today().end
            }
        );
        let mut state = active(today());
        let seen = settle(&spec, &mut state, today().end);
        assert_eq!(seen.len(), 3);
        assert!(matches!(
            seen[2],
            Decision::Invalid(SpecError::Schedule {
                field: "timeZone",
                ..
            })
        ));
        assert_eq!(seen[2].phase(), Some(Phase::Invalid));
    }

    #[test]
    fn one_off_runs_once_and_completes() {
        let spec = one_off("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
        let window = occ("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
        let mut state = fresh();
        assert_eq!(
            settle(&spec, &mut state, ts("2026-12-01T00:00:00Z")),
            [Decision::Idle {
                requeue_at: Some(window.start)
            }]
        );
        assert_eq!(
            settle(&spec, &mut state, window.start),
            [
                Decision::Activate {
                    occurrence: window,
                    late: false
                },
                Decision::StayActive {
                    occurrence: window,
                    requeue_at: window.end
                }
            ]
        );
        let seen = settle(&spec, &mut state, window.end);
        assert_eq!(seen.last(), Some(&Decision::Complete));
        assert_eq!(state.phase, Phase::Completed);
        // Created after its end: nothing to do at all.
        assert_eq!(
            decide(W, &spec, &fresh(), ts("2026-12-07T00:00:00Z")),
            Decision::Complete
        );
    }

    /// The whole lifecycle of the Sydney window across the spring-forward day, with a
    /// preflight and an afterEnd, walked through at the instants its timers name.
    #[test]
    fn sydney_window_full_cycle_across_spring_forward() {
        let spec = with_after_end(with_preflight(sydney(), Some("30m"), None));
        let window = occ("2026-10-03T16:00:00Z", "2026-10-03T18:00:00Z");
        let mut state = fresh();
        let mut now = ts("2026-09-20T00:00:00Z");
        let mut phases = Vec::new();
        let mut decisions = Vec::new();
        for _ in 0..10 {
            let seen = settle(&spec, &mut state, now);
            phases.push(state.phase);
            let wait = seen.last().unwrap().requeue_at().unwrap();
            decisions.extend(seen);
            // The preflight run succeeds before the controller wakes again (at the start).
            if let Some(outcome) = state.runs.get_mut(&preflight_run_name(W, window.start)) {
                *outcome = RunOutcome::Succeeded;
            }
            now = wait;
            if now > window.end {
                break;
            }
        }
        assert_eq!(
            phases,
            [
                Phase::Scheduled,
                Phase::Preparing,
                Phase::Active,
                Phase::Scheduled
            ]
        );
        assert!(decisions.contains(&Decision::StartPreflight {
            occurrence: window,
            run_name: "nightly-pre-29850720".into()
        }));
        assert!(decisions.contains(&Decision::WaitForPreflight {
            occurrence: window,
            run_name: "nightly-pre-29850720".into(),
            requeue_at: window.start
        }));
        assert!(decisions.contains(&Decision::Activate {
            occurrence: window,
            late: false
        }));
        assert!(decisions.contains(&Decision::Restore {
            occurrence: Some(window),
            reason: RestoreReason::Ended
        }));
        assert!(decisions.contains(&Decision::StartAfterEnd {
            occurrence: window,
            run_name: "nightly-post-29850720".into()
        }));
        // Next: the preflight for 2026-11-01 02:00 AEDT, 30 minutes before.
        assert_eq!(now, ts("2026-10-31T14:30:00Z"));
    }

    // --- restore_action ----------------------------------------------------------------------

    fn saved(prior: Option<&str>, written: &str) -> SavedValue {
        SavedValue {
            target: "Deployment/worker".into(),
            field: "replicas".into(),
            prior: prior.map(str::to_owned),
            prior_value_from: None,
            written: written.into(),
            applied: true,
        }
    }

    #[test]
    fn restore_untouched_value_writes_the_prior_back() {
        let s = saved(Some("3"), "0");
        for policy in [OnDrift::Respect, OnDrift::Revert] {
            assert_eq!(
                restore_action(&s, Some("0"), policy),
                RestoreAction::Write("3".into())
            );
        }
    }

    #[test]
    fn restore_an_added_env_var_removes_it() {
        let s = saved(None, "true");
        for policy in [OnDrift::Respect, OnDrift::Revert] {
            assert_eq!(
                restore_action(&s, Some("true"), policy),
                RestoreAction::Remove
            );
            // Already gone.
            assert_eq!(restore_action(&s, None, policy), RestoreAction::Nothing);
        }
    }

    #[test]
    fn restore_already_at_prior_does_nothing() {
        let s = saved(Some("3"), "0");
        for policy in [OnDrift::Respect, OnDrift::Revert] {
            assert_eq!(
                restore_action(&s, Some("3"), policy),
                RestoreAction::Nothing
            );
        }
        // The window wrote what was already there.
        let same = saved(Some("false"), "false");
        assert_eq!(
            restore_action(&same, Some("false"), OnDrift::Respect),
            RestoreAction::Nothing
        );
    }

    #[test]
    fn restore_drift_respect_keeps_and_revert_writes() {
        // Someone scaled up to 5 during an incident.
        let s = saved(Some("3"), "0");
        assert_eq!(
            restore_action(&s, Some("5"), OnDrift::Respect),
            RestoreAction::KeepDrifted {
                current: Some("5".into())
            }
        );
        assert_eq!(
            restore_action(&s, Some("5"), OnDrift::Revert),
            RestoreAction::Write("3".into())
        );
        // Someone removed an env var the window replaced.
        let env = saved(Some("false"), "true");
        assert_eq!(
            restore_action(&env, None, OnDrift::Respect),
            RestoreAction::KeepDrifted { current: None }
        );
        assert_eq!(
            restore_action(&env, None, OnDrift::Revert),
            RestoreAction::Write("false".into())
        );
        // Someone changed an env var the window added.
        let added = saved(None, "true");
        assert_eq!(
            restore_action(&added, Some("maybe"), OnDrift::Respect),
            RestoreAction::KeepDrifted {
                current: Some("maybe".into())
            }
        );
        assert_eq!(
            restore_action(&added, Some("maybe"), OnDrift::Revert),
            RestoreAction::Remove
        );
    }

    #[test]
    fn phase_round_trips_through_status() {
        for phase in [
            Phase::Scheduled,
            Phase::Preparing,
            Phase::Active,
            Phase::Restoring,
            Phase::Completed,
            Phase::Suspended,
            Phase::Invalid,
        ] {
            assert_eq!(Phase::from_status(Some(phase.as_str())), phase);
        }
        assert_eq!(Phase::from_status(None), Phase::Scheduled);
        assert_eq!(Phase::from_status(Some("Bogus")), Phase::Scheduled);
    }
}

//! The pure decision of a MaintenanceWindow: what to do now, from the spec, what status says
//! the window did, the runs it started and the clock. Nothing here reads the clock or does
//! I/O: `now` is always an argument, so every rule is unit-tested with fixed instants,
//! including daylight-saving transitions.
//!
//! - [`occurrences`]: the spec parsed into [`WindowSettings`] and when its occurrences open
//!   and close;
//! - [`changes`]: what a window changes on one workload and how it puts it back;
//! - here: [`decide`], the lifecycle, and [`problems`], what is wrong with a spec.
//!
//! # Lifecycle
//!
//! `Scheduled -> Preparing -> Active -> Restoring -> Scheduled` (or `Completed` for a one-off,
//! `Suspended` while `suspend` is set). [`decide`] is level-triggered: it looks only at the
//! spec, what status says the window did ([`WindowState`]) and the clock, and returns one
//! [`Decision`]. The controller carries it out, records the outcome in status, and calls
//! [`decide`] again at once after every *action* (see [`Decision::requeue_at`]) or at the instant
//! a *waiting* decision names, so boundaries are acted on by timers, never by polling.

pub mod changes;
pub mod lifecycle;
pub mod occurrences;

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

pub use self::occurrences::{
    DEFAULT_LEAD_TIME, MissedStartRule, Occurrence, PreflightRule, SpecError, Times,
    WindowSettings, current_occurrence, next_occurrence, upcoming,
};
use super::types::{
    MaintenanceWindow, MaintenanceWindowSpec, MaintenanceWindowStatus, WindowInterval, WindowPhase,
};
use crate::conditions::SpecProblem;
use crate::time::sub;

/// How late after an occurrence's start a first activation still counts as on time. A
/// reconcile woken by the start timer runs a few milliseconds to seconds after it; that must not
/// count as a missed start.
pub const MISSED_START_GRACE: SignedDuration = SignedDuration::from_secs(5);

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
    pub phase: WindowPhase,
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

impl WindowState {
    /// What the lifecycle needs to know, from the window's metadata, its status (as being
    /// built by the reconcile: it changes after each action), the runs it started and when
    /// the running operator started watching.
    pub fn from_status(
        mw: &MaintenanceWindow,
        status: &MaintenanceWindowStatus,
        runs: &BTreeMap<String, RunOutcome>,
        watching_since: Timestamp,
    ) -> Self {
        let phase = WindowPhase::from_status(status.phase);
        let activated = phase
            .changes_in_effect()
            .then(|| status.current_window.as_ref().map(occurrence_of))
            .flatten();
        let last_handled = [
            status.last_window.as_ref().map(|w| w.start.0),
            status.current_window.as_ref().map(|w| w.start.0),
        ]
        .into_iter()
        .flatten()
        .max();
        WindowState {
            phase,
            activated,
            has_saved: !status.saved.is_empty(),
            last_handled,
            runs: runs.clone(),
            created: mw.metadata.creation_timestamp.as_ref().map(|t| t.0),
            deleting: mw.metadata.deletion_timestamp.is_some(),
            watching_since: Some(watching_since),
        }
    }
}

/// The occurrence a status interval records.
pub fn occurrence_of(interval: &WindowInterval) -> Occurrence {
    Occurrence {
        start: interval.start.0,
        end: interval.end.0,
    }
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
    pub fn phase(&self) -> Option<WindowPhase> {
        Some(match self {
            Decision::Idle { .. } | Decision::SkipOccurrence { .. } | Decision::Finish { .. } => {
                WindowPhase::Scheduled
            }
            Decision::StartPreflight { .. }
            | Decision::WaitForPreflight { .. }
            | Decision::WaitForStart { .. } => WindowPhase::Preparing,
            Decision::Activate { .. } | Decision::StayActive { .. } => WindowPhase::Active,
            Decision::Restore { .. } | Decision::StartAfterEnd { .. } => WindowPhase::Restoring,
            Decision::Complete => WindowPhase::Completed,
            Decision::Suspended => WindowPhase::Suspended,
            Decision::Invalid(_) => WindowPhase::Invalid,
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

    /// Whether this decision belongs to putting back what the window changed (or keeping it
    /// in force until then): carried out even while the spec has problems, so a spec broken
    /// during a window never strands its changes.
    pub fn restores(&self) -> bool {
        matches!(
            self,
            Decision::Restore { .. }
                | Decision::StartAfterEnd { .. }
                | Decision::Finish { .. }
                | Decision::StayActive { .. }
                | Decision::Release
        )
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
///    that start, see [`WindowSettings::effective_end`]), however long ago; an activated occurrence
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
    let settings = WindowSettings::from_spec(spec);
    if let Some(decision) = restoring(window, settings.as_ref().ok(), spec, state, now) {
        return decision;
    }
    if state.deleting {
        return Decision::Release;
    }
    let settings = match settings {
        Ok(settings) => settings,
        Err(error) => return Decision::Invalid(error),
    };
    if settings.suspended {
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
    if let Some(rule) = settings.preflight
        && let Some(ended) = settings
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
    if let Some(open) = settings.current(now).filter(|open| !handled(open)) {
        return open_occurrence(window, &settings, state, open, now);
    }
    // The next occurrence not yet handled (a preflight failure can skip one before its start).
    let after = state.last_handled.map_or(now, |last| last.max(now));
    let Some(next) = settings.next(after) else {
        return match settings.times {
            Times::OneOff(_) => Decision::Complete,
            Times::Recurring { .. } => Decision::Idle { requeue_at: None },
        };
    };
    let Some(rule) = settings.preflight else {
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
/// Works without a valid spec, because a spec broken during a window must not strand changes.
fn restoring(
    window: &str,
    settings: Option<&WindowSettings>,
    spec: &MaintenanceWindowSpec,
    state: &WindowState,
    now: Timestamp,
) -> Option<Decision> {
    if state.activated.is_none() && !state.has_saved {
        return None;
    }
    let suspended = spec.suspend.unwrap_or(false);
    let end = state.activated.map(|activated| {
        settings.map_or(activated.end, |settings| settings.effective_end(&activated))
    });
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
    let restoring = state.phase == WindowPhase::Restoring;
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
            if settings.is_some_and(|settings| settings.after_end) {
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
    settings: &WindowSettings,
    state: &WindowState,
    open: Occurrence,
    now: Timestamp,
) -> Decision {
    let since_start = now.duration_since(open.start);
    let late = since_start > MISSED_START_GRACE;
    let run_name = settings
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
        let start_anyway = match settings.missed_start {
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
    let (Some(rule), Some(run_name)) = (settings.preflight, run_name) else {
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

/// Splits a spec error ("spec.x: message") into the field and the message.
fn spec_problem(error: &SpecError) -> SpecProblem {
    let text = error.to_string();
    match text.split_once(": ") {
        Some((field, message)) => SpecProblem::new(field, message),
        None => SpecProblem::new("spec", text),
    }
}

/// Every problem with the spec that the API server could not catch, at `now`;
/// `missing_runbooks` are the Runbooks named by beforeStart/afterEnd that do not exist, with
/// the field naming each.
pub fn problems(
    mw: &MaintenanceWindow,
    missing_runbooks: &[(&'static str, String)],
    now: Timestamp,
) -> Vec<SpecProblem> {
    let spec = &mw.spec;
    let mut problems = crate::notifications::problems(
        &spec.notifications,
        &lifecycle::EVENTS,
        "spec.notifications",
    );
    if let Some(schedule) = &spec.schedule {
        problems.extend(crate::schedule::problems(
            &schedule.cron,
            schedule.time_zone.as_deref(),
            "spec.schedule",
        ));
        match schedule.duration.parse() {
            Err(err) => problems.push(SpecProblem::new("spec.schedule.duration", err.to_string())),
            Ok(d) if d.is_zero() => problems.push(SpecProblem::new(
                "spec.schedule.duration",
                "a window must last longer than 0s",
            )),
            Ok(_) => {}
        }
    }
    if let (Some(start), Some(end)) = (&spec.start, &spec.end)
        && end.0 <= start.0
    {
        problems.push(SpecProblem::new("spec.end", "end must be after start"));
    }
    if problems.is_empty() {
        // The times parse one by one; now the whole spec, and what depends on the clock (a
        // cron that never fires again, a duration longer than the gap between two starts).
        match WindowSettings::from_spec(spec) {
            Err(err) => problems.push(spec_problem(&err)),
            Ok(settings) => {
                if let Err(err) = settings.check(now) {
                    problems.push(spec_problem(&err));
                }
            }
        }
    }
    for (field, runbook) in missing_runbooks {
        problems.push(SpecProblem::new(
            *field,
            format!(
                "Runbook {runbook:?} does not exist in namespace {:?}; create it or fix the name",
                mw.namespace().unwrap_or_default()
            ),
        ));
    }
    problems
}

#[cfg(test)]
mod tests;

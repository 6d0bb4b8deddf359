//! The whole status of a MaintenanceWindow, built from what was observed, what the window
//! recorded (its occurrence, the values it saved, how the last one ended), the phase the
//! decision shows and the clock, conditions included. Pure: the reconcile writes what this
//! returns, so every condition and reason is here and nowhere else.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::decide::{Occurrence, WindowSettings};
use super::types::{MaintenanceWindow, MaintenanceWindowStatus, WindowInterval, WindowPhase};
use crate::conditions::{self, Desired, SpecProblem, Status};
use crate::validation;

/// Condition type: the window's changes are in force (what Runbooks and BlueGreenReleases
/// with `requiresMaintenanceWindow` wait for).
pub const ACTIVE: &str = "Active";
/// Condition type: every target names at least one existing object.
pub const TARGETS_FOUND: &str = "TargetsFound";

/// Reason of `Active=True`: an occurrence is open and its changes are made. (`Active=False`
/// gives the phase as its reason.)
pub const REASON_WINDOW_OPEN: &str = "WindowOpen";
/// Reason of `TargetsFound=True`.
pub const REASON_TARGETS_FOUND: &str = "TargetsFound";
/// Reason of `TargetsFound=False` (and of the Warning Event for a target that names nothing).
pub const REASON_TARGET_NOT_FOUND: &str = "TargetNotFound";

/// `lastWindow.result` of an occurrence that ran and restored everything.
pub const SUCCEEDED: &str = "Succeeded";
/// `lastWindow.result` when a value someone changed was kept.
pub const DRIFT_RESPECTED: &str = "DriftRespected";
/// `lastWindow.result` when a change or a restore could not be written.
pub const FAILED: &str = "Failed";

/// The message of `Ready=True`.
const READY_MESSAGE: &str = "the window is valid and scheduled";

/// How many upcoming starts status lists.
const UPCOMING: usize = 3;

/// The status to write for `phase`: `record` (what the window recorded: `currentWindow`,
/// `lastWindow`, `saved`) as carried, with the generation, the next occurrences (none while the
/// spec has `problems` or nothing is scheduled) and the conditions (Ready/Reconciling/Stalled
/// from `problems`, Active, TargetsFound from `missing_targets`), merged into `record`'s so a
/// condition's lastTransitionTime (`stamp`) moves only when it changes. Returns the verdict
/// too, whose note (if any) tells that readiness changed.
pub fn status(
    mw: &MaintenanceWindow,
    record: &MaintenanceWindowStatus,
    phase: WindowPhase,
    problems: &[SpecProblem],
    missing_targets: &[String],
    now: Timestamp,
    stamp: &Time,
) -> (MaintenanceWindowStatus, validation::Verdict) {
    let mut status = record.clone();
    status.phase = Some(phase);
    status.observed_generation = mw.metadata.generation;
    let settings = WindowSettings::from_spec(&mw.spec).ok();
    let scheduling = problems.is_empty()
        && !matches!(
            phase,
            WindowPhase::Suspended | WindowPhase::Completed | WindowPhase::Invalid
        );
    let next = settings
        .as_ref()
        .filter(|_| scheduling)
        .and_then(|s| s.next(now));
    status.next_start = next.map(|o| Time(o.start));
    status.next_end = next.map(|o| Time(o.end));
    status.upcoming = match settings.as_ref().filter(|_| scheduling) {
        Some(settings) => settings
            .upcoming(now, UPCOMING)
            .iter()
            .map(|o| Time(o.start))
            .collect(),
        None => Vec::new(),
    };
    let verdict = validation::judge(
        &record.conditions,
        problems,
        mw.metadata.generation,
        stamp,
        READY_MESSAGE,
    );
    let active = match (phase, &status.current_window) {
        (WindowPhase::Active, Some(current)) => Desired::new(
            ACTIVE,
            Status::True,
            REASON_WINDOW_OPEN,
            format!(
                "the window's changes are in force until {}",
                local_time(mw, current.end.0)
            ),
        ),
        _ => Desired::new(
            ACTIVE,
            Status::False,
            phase.as_str(),
            match (phase, &status.next_start) {
                (WindowPhase::Restoring, _) => "putting back what the window changed".to_owned(),
                (_, Some(next)) => format!("the next window starts at {}", local_time(mw, next.0)),
                _ => "no window is scheduled".to_owned(),
            },
        ),
    };
    let targets = if missing_targets.is_empty() {
        Desired::new(
            TARGETS_FOUND,
            Status::True,
            REASON_TARGETS_FOUND,
            "every target names at least one object",
        )
    } else {
        Desired::new(
            TARGETS_FOUND,
            Status::False,
            REASON_TARGET_NOT_FOUND,
            missing_targets.join("; "),
        )
    };
    status.conditions = conditions::merge(
        &verdict.conditions,
        &[active, targets],
        mw.metadata.generation,
        stamp,
    );
    (status, verdict)
}

/// `occurrence` as status records it, with its result if known.
pub fn interval(occurrence: &Occurrence, result: Option<&str>) -> WindowInterval {
    WindowInterval {
        start: Time(occurrence.start),
        end: Time(occurrence.end),
        result: result.map(str::to_owned),
    }
}

/// `result` recorded on `current` unless a worse one already is: Failed over DriftRespected
/// over anything else.
pub fn mark_result(current: &mut WindowInterval, result: &str) {
    let rank = |r: Option<&str>| match r {
        Some(FAILED) => 2,
        Some(DRIFT_RESPECTED) => 1,
        _ => 0,
    };
    if rank(Some(result)) > rank(current.result.as_deref()) {
        current.result = Some(result.to_owned());
    }
}

/// `at` as a person in the window's time zone reads it, with the UTC instant:
/// `2026-12-06 02:00 AEDT (2026-12-05T15:00:00Z)`. UTC alone for a one-off or UTC window.
fn local_time(mw: &MaintenanceWindow, at: Timestamp) -> String {
    let zone = mw
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .filter(|z| !z.is_empty() && *z != "UTC")
        .and_then(|z| jiff::tz::TimeZone::get(z).ok());
    match zone {
        Some(tz) => format!("{} ({at})", at.to_zoned(tz).strftime("%Y-%m-%d %H:%M %Z")),
        None => at.to_string(),
    }
}

/// Whether a window's conditions say its changes are in force (`Active=True`).
pub fn is_active(status: &MaintenanceWindowStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == ACTIVE && c.status == Status::True.as_str())
}

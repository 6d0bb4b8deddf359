//! The run's status, built from the previous status, what a step produced and the clock:
//! journal entries (started, retried, failed, succeeded, skipped), the run's phase and end, and
//! the conditions (Ready, Reconciling, Stalled and Succeeded). Pure: no I/O.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;

use super::act::Act;
use super::resolve::Resolved;
use super::types::{RunPhase, RunbookRunStatus, StepPhase, StepStatus};
use crate::conditions::{self, Desired, READY, RECONCILING, STALLED, Status};
use crate::step::{OnFailure, Step};

#[cfg(test)]
mod tests;

/// Condition type: Unknown while running, then True (the run succeeded) or False.
pub const SUCCEEDED: &str = "Succeeded";

/// Reason of Succeeded (and Ready): every step succeeded.
pub const REASON_SUCCEEDED: &str = "Succeeded";
/// Reason of Succeeded: the run succeeded, but some steps with onFailure: Continue failed.
pub const REASON_SUCCEEDED_WITH_FAILURES: &str = "SucceededWithFailures";
/// Reason of Succeeded: a step (whose failure aborts the run) failed.
pub const REASON_STEP_FAILED: &str = "StepFailed";
/// Reason of Succeeded: a step whose failure aborts the run timed out.
pub const REASON_TIMED_OUT: &str = "TimedOut";
/// Reason of Succeeded: the run was cancelled (annotation or deletion).
pub const REASON_CANCELLED: &str = "Cancelled";
/// Reason of Succeeded and Stalled: the run's Runbook does not exist.
pub const REASON_RUNBOOK_NOT_FOUND: &str = "RunbookNotFound";
/// Reason of Succeeded and Stalled: the run's parameters do not resolve against its Runbook.
pub const REASON_INVALID_SPEC: &str = conditions::REASON_INVALID_SPEC;
/// Reason of Stalled=False: the run is not stuck on its spec.
pub const REASON_PROGRESSING: &str = "Progressing";
/// A step's reason when its `when` was false.
pub const REASON_CONDITION_FALSE: &str = "ConditionFalse";

/// A fresh journal for resolved steps: one Pending entry per step, main then finally.
pub fn new_journal(steps: &[Step], finally: &[Step]) -> Vec<StepStatus> {
    steps
        .iter()
        .chain(finally)
        .map(|step| StepStatus {
            name: step.name.clone(),
            phase: StepPhase::Pending,
            attempts: 0,
            start_time: None,
            completion_time: None,
            message: None,
            reason: None,
            condition: None,
            target: None,
            outputs: Default::default(),
        })
        .collect()
}

/// Records the main steps at `indices` (Pending, made moot by an abort or a cancel) as Skipped.
pub fn skip(status: &mut RunbookRunStatus, indices: &[usize], cancelled: bool, now: &Time) {
    for &index in indices {
        let Some(entry) = status.steps.get_mut(index) else {
            continue;
        };
        entry.phase = StepPhase::Skipped;
        entry.completion_time = Some(now.clone());
        entry.message = Some(if cancelled {
            "skipped: the run was cancelled".into()
        } else {
            "skipped: an earlier step failed".into()
        });
        entry.reason = Some(if cancelled { "Cancelled" } else { "Aborted" }.into());
    }
}

/// Records the entries at `indices` as Skipped because the run's deletion grace
/// (`--deletion-grace`, `grace` as written) passed before they finished.
pub fn abandon(status: &mut RunbookRunStatus, indices: &[usize], grace: &str, now: &Time) {
    for &index in indices {
        let Some(entry) = status.steps.get_mut(index) else {
            continue;
        };
        entry.phase = StepPhase::Skipped;
        entry.completion_time = Some(now.clone());
        entry.message = Some(format!(
            "skipped: the run was deleted and the operator's deletion grace ({grace}) passed before this step finished"
        ));
        entry.reason = Some("DeletionGraceOver".into());
    }
}

/// How a finished run ended: phase, reason and message for the Succeeded condition.
pub fn outcome(status: &RunbookRunStatus, cancelled: bool) -> (RunPhase, &'static str, String) {
    if cancelled {
        return (
            RunPhase::Cancelled,
            REASON_CANCELLED,
            "the run was cancelled; finally steps ran".into(),
        );
    }
    let main = status.resolved_steps.len();
    let failed: Vec<(usize, &StepStatus)> = status
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.phase == StepPhase::Failed)
        .collect();
    let fatal = failed.iter().find(|(i, _)| {
        let step = if *i < main {
            status.resolved_steps.get(*i)
        } else {
            status.resolved_finally.get(*i - main)
        };
        step.is_none_or(|s| s.on_failure.unwrap_or_default() == OnFailure::Abort)
    });
    match fatal {
        Some((_, entry)) => {
            let timed_out = entry.outputs.get("reason").map(String::as_str) == Some("TimedOut");
            let message = format!(
                "step {:?} failed: {}",
                entry.name,
                entry.message.as_deref().unwrap_or("no message")
            );
            (
                RunPhase::Failed,
                if timed_out {
                    REASON_TIMED_OUT
                } else {
                    REASON_STEP_FAILED
                },
                message,
            )
        }
        None if failed.is_empty() => (
            RunPhase::Succeeded,
            REASON_SUCCEEDED,
            "every step succeeded".into(),
        ),
        None => (
            RunPhase::Succeeded,
            REASON_SUCCEEDED_WITH_FAILURES,
            format!(
                "succeeded; {} step(s) failed with onFailure: Continue ({})",
                failed.len(),
                failed
                    .iter()
                    .map(|(_, s)| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// The kstatus conditions and Succeeded for where the run stands.
pub fn run_conditions(
    status: &RunbookRunStatus,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let phase = status.phase.unwrap_or(RunPhase::Pending);
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == SUCCEEDED)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let (succeeded, reason, text) = desired_succeeded(status);
    let finished = phase.is_finished();
    let invalid = matches!(
        reason.as_str(),
        REASON_INVALID_SPEC | REASON_RUNBOOK_NOT_FOUND
    );
    let desired = vec![
        Desired::new(
            READY,
            if finished && succeeded != Status::True {
                Status::False
            } else {
                Status::True
            },
            if finished {
                reason.clone()
            } else {
                phase.as_str().to_owned()
            },
            text.clone(),
        ),
        Desired::new(
            RECONCILING,
            if finished {
                Status::False
            } else {
                Status::True
            },
            phase.as_str(),
            if finished {
                "finished".to_owned()
            } else {
                text.clone()
            },
        ),
        Desired::new(
            STALLED,
            if invalid { Status::True } else { Status::False },
            if invalid {
                reason.clone()
            } else {
                REASON_PROGRESSING.to_owned()
            },
            if invalid { text.clone() } else { String::new() },
        ),
        Desired::new(
            SUCCEEDED,
            succeeded,
            reason,
            if text.is_empty() { message } else { text },
        ),
    ];
    conditions::merge(&status.conditions, &desired, generation, now)
}

/// The Succeeded condition's status, reason and message, from the journal.
fn desired_succeeded(status: &RunbookRunStatus) -> (Status, String, String) {
    let phase = status.phase.unwrap_or(RunPhase::Pending);
    let previous = status.conditions.iter().find(|c| c.type_ == SUCCEEDED);
    match phase {
        RunPhase::Succeeded | RunPhase::Failed | RunPhase::Cancelled => {
            let prev = previous.cloned();
            let status_ = if phase == RunPhase::Succeeded {
                Status::True
            } else {
                Status::False
            };
            (
                status_,
                prev.as_ref()
                    .map(|c| c.reason.clone())
                    .unwrap_or_else(|| phase.as_str().to_owned()),
                prev.map(|c| c.message).unwrap_or_default(),
            )
        }
        // The message naming the window it waits for was set when the run was held.
        RunPhase::WaitingForWindow => (
            Status::Unknown,
            phase.as_str().to_owned(),
            previous
                .map(|c| c.message.clone())
                .unwrap_or_else(|| format!("phase {phase}")),
        ),
        // The message naming the run it waits for was set when the run was queued.
        RunPhase::Pending if is_waiting_for_lock(status) => (
            Status::Unknown,
            REASON_WAITING_FOR_LOCK.to_owned(),
            previous.map(|c| c.message.clone()).unwrap_or_default(),
        ),
        RunPhase::Pending | RunPhase::Running | RunPhase::WaitingForApproval => {
            let current = status.current_step.clone().unwrap_or_default();
            let message = status
                .steps
                .iter()
                .find(|s| s.name == current)
                .and_then(|s| s.message.clone())
                .unwrap_or_else(|| format!("phase {phase}"));
            (Status::Unknown, phase.as_str().to_owned(), message)
        }
    }
}

/// Ends the run: phase, completion time and the Succeeded reason.
pub fn finish(
    status: &mut RunbookRunStatus,
    phase: RunPhase,
    reason: &str,
    message: String,
    now: &Time,
) {
    status.phase = Some(phase);
    status.completion_time = Some(now.clone());
    status.current_step = None;
    // The Succeeded condition carries the reason; run_conditions keeps it.
    let succeeded = if phase == RunPhase::Succeeded {
        Status::True
    } else {
        Status::False
    };
    status.conditions = conditions::merge(
        &status.conditions,
        &[Desired::new(SUCCEEDED, succeeded, reason, message)],
        None,
        now,
    );
}

/// The status of a run that ends when its journal is done: `outcome` (from [`outcome`]) and
/// the conditions.
pub fn finished(
    mut status: RunbookRunStatus,
    (phase, reason, message): (RunPhase, &str, String),
    generation: Option<i64>,
    now: &Time,
) -> RunbookRunStatus {
    finish(&mut status, phase, reason, message, now);
    status.conditions = run_conditions(&status, generation, now);
    status
}

/// The status of a run that ends before its steps started: its Runbook is missing, its
/// parameters are wrong, or it was cancelled while held. A run that failed to start counts
/// as started now; a cancelled one never started.
pub fn ended_before_start(
    mut status: RunbookRunStatus,
    phase: RunPhase,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> RunbookRunStatus {
    if phase != RunPhase::Cancelled {
        status.start_time = Some(now.clone());
    }
    finish(&mut status, phase, reason, message, now);
    status.observed_generation = generation;
    status.conditions = run_conditions(&status, generation, now);
    status
}

/// Reason of the `Succeeded` condition (Unknown) of a run queued for its concurrency lock.
pub const REASON_WAITING_FOR_LOCK: &str = "WaitingForLock";
/// Reason of the `Succeeded` condition (False) of a run ended Cancelled because its
/// concurrency lock was taken and its policy is Skip.
pub const REASON_CONCURRENCY_SKIPPED: &str = "ConcurrencySkipped";

/// The status of a run queued for its concurrency lock (`lock` records the key): phase
/// Pending, `Succeeded` Unknown with reason [`REASON_WAITING_FOR_LOCK`] and `message` naming
/// the run it waits for.
pub fn waiting_for_lock(
    mut status: RunbookRunStatus,
    lock: super::types::RunLock,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> RunbookRunStatus {
    status.phase = Some(RunPhase::Pending);
    status.concurrency = Some(lock);
    status.observed_generation = generation;
    status.conditions = conditions::merge(
        &status.conditions,
        &[Desired::new(
            SUCCEEDED,
            Status::Unknown,
            REASON_WAITING_FOR_LOCK,
            message,
        )],
        generation,
        now,
    );
    status.conditions = run_conditions(&status, generation, now);
    status
}

/// Whether the run is queued for its concurrency lock.
pub fn is_waiting_for_lock(status: &RunbookRunStatus) -> bool {
    status.steps.is_empty()
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == SUCCEEDED && c.reason == REASON_WAITING_FOR_LOCK)
}

/// The status of a run held until a MaintenanceWindow is Active; `message` names the window.
pub fn held_for_window(
    mut status: RunbookRunStatus,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> RunbookRunStatus {
    status.phase = Some(RunPhase::WaitingForWindow);
    status.observed_generation = generation;
    status.conditions = conditions::merge(
        &status.conditions,
        &[Desired::new(
            SUCCEEDED,
            Status::Unknown,
            RunPhase::WaitingForWindow.as_str(),
            message,
        )],
        generation,
        now,
    );
    status.conditions = run_conditions(&status, generation, now);
    status
}

/// The status of a run that starts: the resolved steps, a fresh journal, Running.
pub fn started(
    mut status: RunbookRunStatus,
    resolved: Resolved,
    runbook_generation: Option<i64>,
    generation: Option<i64>,
    now: &Time,
) -> RunbookRunStatus {
    status.runbook_generation = runbook_generation;
    status.steps = new_journal(&resolved.steps, &resolved.finally);
    status.resolved_steps = resolved.steps;
    status.resolved_finally = resolved.finally;
    status.resolved_params = resolved.params;
    status.start_time = Some(now.clone());
    status.phase = Some(RunPhase::Running);
    status.observed_generation = generation;
    status.conditions = run_conditions(&status, generation, now);
    status
}

/// The run waits on its step at `index` (for the cluster, a person, or the clock).
pub fn waiting(
    status: &mut RunbookRunStatus,
    index: usize,
    message: String,
    approval: bool,
    generation: Option<i64>,
    now: &Time,
) {
    status.phase = Some(if approval {
        RunPhase::WaitingForApproval
    } else {
        RunPhase::Running
    });
    if let Some(entry) = status.steps.get_mut(index) {
        entry.message = Some(message);
    }
    status.conditions = run_conditions(status, generation, now);
}

/// The run moved on (a journal entry changed): Running, conditions refreshed.
pub fn progressed(status: &mut RunbookRunStatus, generation: Option<i64>, now: &Time) {
    status.phase = Some(RunPhase::Running);
    status.conditions = run_conditions(status, generation, now);
}

/// An Event about a step that changed phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Event reason (StepStarted, StepSucceeded, StepSkipped, StepFailed, StepRetrying).
    pub reason: &'static str,
    /// What happened.
    pub message: String,
    /// Normal or Warning.
    pub type_: EventType,
}

/// What one move on the current step produced.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// New intent or attempt bookkeeping to record.
    Record,
    /// The step changed phase.
    Transition(Transition),
    /// Nothing to record; wait.
    Wait {
        /// What the step waits for.
        message: String,
        /// Look again after at most this long.
        recheck: Option<Duration>,
        /// True while waiting for an approval.
        approval: bool,
    },
}

fn transition(reason: &'static str, message: String, type_: EventType) -> StepOutcome {
    StepOutcome::Transition(Transition {
        reason,
        message,
        type_,
    })
}

/// Records a Pending step as started: its first attempt, at `now`.
pub fn start_step(entry: &mut StepStatus, now: Timestamp) -> StepOutcome {
    entry.phase = StepPhase::Running;
    entry.attempts = 1;
    entry.start_time = Some(crate::time::to_time(now));
    entry
        .outputs
        .insert("attemptStartedAt".into(), now.to_string());
    transition("StepStarted", "started".into(), EventType::Normal)
}

/// Records a step that came up with its `when` false: Skipped with reason ConditionFalse,
/// never started; `condition` is the expression and its value.
pub fn condition_false(entry: &mut StepStatus, condition: String, now: Timestamp) -> StepOutcome {
    let message = format!("skipped: when {condition}");
    entry.phase = StepPhase::Skipped;
    entry.completion_time = Some(crate::time::to_time(now));
    entry.reason = Some(REASON_CONDITION_FALSE.into());
    entry.condition = Some(condition);
    entry.message = Some(message.clone());
    transition("StepSkipped", message, EventType::Normal)
}

/// Records a step whose `when` could not be evaluated: Failed with reason InvalidSpec (another
/// attempt would evaluate the same journal the same way).
pub fn condition_invalid(entry: &mut StepStatus, message: String, now: Timestamp) -> StepOutcome {
    fail(
        entry,
        REASON_INVALID_SPEC,
        message,
        &crate::time::to_time(now),
    )
}

/// A scheduled retry is not due yet: wait until `at`.
pub fn wait_for_retry(entry: &StepStatus, at: Timestamp, now: Timestamp) -> StepOutcome {
    StepOutcome::Wait {
        message: entry.message.clone().unwrap_or_default(),
        recheck: Some(crate::time::until(now, at)),
        approval: false,
    }
}

/// Records the next attempt of a step whose retry is due.
pub fn next_attempt(entry: &mut StepStatus, now: Timestamp) -> StepOutcome {
    entry.outputs.remove("retryAt");
    entry.attempts = entry.attempts.saturating_add(1);
    entry
        .outputs
        .insert("attemptStartedAt".into(), now.to_string());
    StepOutcome::Record
}

/// Records a running main step stopped by the run's cancel.
pub fn cancelled(entry: &mut StepStatus, now: Timestamp) -> StepOutcome {
    fail(
        entry,
        "Cancelled",
        "cancelled while running".into(),
        &crate::time::to_time(now),
    )
}

/// Records an attempt that outlived the step's timeout: retried or failed.
pub fn timed_out(step: &Step, entry: &mut StepStatus, now: Timestamp) -> StepOutcome {
    entry.outputs.insert("reason".into(), "TimedOut".into());
    retry_or_fail(
        step,
        entry,
        "TimedOut",
        format!(
            "timed out after {}",
            step.timeout
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
        true,
        now,
    )
}

/// Records what the step's action produced; a wait is bounded by `deadline`, the step's
/// timeout.
pub fn acted(
    step: &Step,
    entry: &mut StepStatus,
    act: Act,
    deadline: Option<Timestamp>,
    now: Timestamp,
) -> StepOutcome {
    let now_t = crate::time::to_time(now);
    match act {
        Act::Record => StepOutcome::Record,
        Act::Succeeded(message) => {
            entry.phase = StepPhase::Succeeded;
            entry.completion_time = Some(now_t);
            entry.message = Some(message.clone());
            entry.outputs.remove("reason");
            entry.reason = None;
            transition("StepSucceeded", message, EventType::Normal)
        }
        Act::Skipped(message) => {
            entry.phase = StepPhase::Skipped;
            entry.completion_time = Some(now_t);
            entry.message = Some(message.clone());
            entry.outputs.insert("reason".into(), "Plan".into());
            entry.reason = Some("Plan".into());
            transition("StepSkipped", message, EventType::Normal)
        }
        Act::Failed {
            reason,
            message,
            retryable,
        } => retry_or_fail(step, entry, reason, message, retryable, now),
        Act::Wait {
            message,
            recheck,
            approval,
        } => {
            // The step timeout bounds every wait.
            let recheck = match deadline {
                Some(deadline) => {
                    let left = crate::time::until(now, deadline);
                    Some(recheck.map_or(left, |r| r.min(left)))
                }
                None => recheck,
            };
            StepOutcome::Wait {
                message,
                recheck,
                approval,
            }
        }
    }
}

fn fail(entry: &mut StepStatus, reason: &'static str, message: String, now: &Time) -> StepOutcome {
    entry.phase = StepPhase::Failed;
    entry.completion_time = Some(now.clone());
    entry.message = Some(message.clone());
    entry.outputs.insert("reason".into(), reason.into());
    entry.reason = Some(reason.into());
    transition(
        "StepFailed",
        format!("{reason}: {message}"),
        EventType::Warning,
    )
}

/// Schedules another attempt if the step's retries allow it, or fails the step.
fn retry_or_fail(
    step: &Step,
    entry: &mut StepStatus,
    reason: &'static str,
    message: String,
    retryable: bool,
    now: Timestamp,
) -> StepOutcome {
    let limit = step.retries.as_ref().map_or(0, |r| r.limit);
    if retryable && entry.attempts <= limit {
        let base = step
            .retries
            .as_ref()
            .and_then(|r| r.backoff.as_ref())
            .and_then(|b| b.parse().ok())
            .unwrap_or(Duration::from_secs(10));
        let factor = 1u32 << entry.attempts.saturating_sub(1).clamp(0, 16) as u32;
        let wait = base.saturating_mul(factor);
        let at = crate::time::add_std(now, wait);
        entry.outputs.insert("retryAt".into(), at.to_string());
        entry.message = Some(format!(
            "attempt {} failed ({reason}: {message}); retrying at {at}",
            entry.attempts
        ));
        return transition(
            "StepRetrying",
            entry.message.clone().unwrap_or_default(),
            EventType::Warning,
        );
    }
    fail(entry, reason, message, &crate::time::to_time(now))
}

/// The final phase of a step that `entry` shows has just ended (it was `before` when the
/// reconcile picked it up), and how long it ran: from its first attempt's start, to the
/// sub-second when the journal has that attempt's `attemptStartedAt`, to `now`, the instant
/// the reconcile recorded its end. `None` while it runs, and for a step that never started.
pub fn step_finished(
    before: StepPhase,
    entry: &StepStatus,
    now: Timestamp,
) -> Option<(&'static str, Duration)> {
    let result = match entry.phase {
        _ if entry.phase == before => return None,
        StepPhase::Succeeded => "Succeeded",
        StepPhase::Failed => "Failed",
        StepPhase::Skipped => "Skipped",
        StepPhase::Pending | StepPhase::Running => return None,
    };
    let first = entry.start_time.as_ref()?.0;
    // attemptStartedAt is the start of the latest attempt: the step's own start only on
    // the first one.
    let started = entry
        .attempt_start()
        .filter(|t| entry.attempts <= 1 && *t >= first)
        .unwrap_or(first);
    let took = Duration::try_from(now.duration_since(started)).unwrap_or_default();
    Some((result, took))
}

//! The run's journal as a state machine: whether the run starts, executes or is settled, which
//! journal entry is worked on next, what an abort or a cancel skips, and what the entry needs
//! (to be recorded as started, its side effect, a wait, a stop). Pure: no I/O, the clock is an
//! argument; the journal it reads is the run's status as stored.
//!
//! The order record-then-act is decided here: a Pending entry is only ever told to
//! [`StepNext::Start`] (a journal write), and a side effect ([`StepNext::Act`], or the stop of
//! [`StepNext::Cancel`] / [`StepNext::TimeOut`]) is only decided for an entry whose journal
//! already says Running, so a restarted operator finds the step recorded before anything it did.

use jiff::Timestamp;

use super::observe::Observed;
use super::resolve::{self, Resolved};
use super::types::{RunPhase, RunbookRun, RunbookRunStatus, StepPhase, StepStatus};
use crate::runbook::Runbook;
use crate::step::{OnFailure, Step};

pub mod approval;
pub mod condition;
pub mod lock;
pub mod outputs;
#[cfg(test)]
mod tests;

/// What happens to a run as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Finished, or deleted before it started: nothing to run; release the finalizer if held.
    Settled {
        /// Whether the finalizer must be removed.
        release_finalizer: bool,
    },
    /// Cancelled before its steps were resolved (e.g. while held for a window): end it
    /// Cancelled; no step ran.
    CancelBeforeStart,
    /// Not started: resolve the Runbook, then start (or hold for a window).
    Start,
    /// Started: work through the journal ([`decide`]).
    Execute {
        /// A cancel is seen for the first time: record when, and announce it, before any step.
        note_cancel: bool,
    },
}

/// How a run that has not started yet goes on.
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// It cannot start: it ends before its first step with this phase, reason and message
    /// (it is not retried: a run is an immutable record).
    End {
        /// The run's final phase.
        phase: RunPhase,
        /// The reason of its `Succeeded` condition.
        reason: &'static str,
        /// What went wrong, naming the field.
        message: String,
    },
    /// Its Runbook requires a MaintenanceWindow and none is Active: hold it.
    WaitForWindow {
        /// Which window it waits for.
        message: String,
    },
    /// Start it: record these resolved steps in its journal.
    Begin {
        /// The Runbook's steps with the run's parameters substituted.
        resolved: Resolved,
        /// The Runbook's generation the steps come from.
        runbook_generation: Option<i64>,
    },
}

/// Whether a not yet started `run` can start, from its Runbook (`None`: it does not exist)
/// and, when the Runbook requires one, whether a matching MaintenanceWindow is Active
/// (`window_open`; not looked up otherwise).
pub fn start(run: &RunbookRun, runbook: Option<&Runbook>, window_open: Option<bool>) -> Start {
    let namespace = run.metadata.namespace.as_deref().unwrap_or_default();
    let runbook_name = &run.spec.runbook_ref.name;
    let Some(runbook) = runbook else {
        return Start::End {
            phase: RunPhase::Failed,
            reason: super::status::REASON_RUNBOOK_NOT_FOUND,
            message: format!(
                "spec.runbookRef.name: Runbook {runbook_name:?} does not exist in namespace {namespace:?}; create a new run that names an existing Runbook"
            ),
        };
    };
    let resolved = match resolve::resolve(runbook_name, &runbook.spec, &run.spec.params) {
        Ok(resolved) => resolved,
        Err(problems) => {
            return Start::End {
                phase: RunPhase::Failed,
                reason: super::status::REASON_INVALID_SPEC,
                message: problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            };
        }
    };
    if let Some(requirement) = &runbook.spec.requires_maintenance_window
        && window_open != Some(true)
    {
        let selector = &requirement.selector.match_labels;
        return Start::WaitForWindow {
            message: format!(
                "waiting for a MaintenanceWindow labelled {} to be Active",
                selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
    }
    Start::Begin {
        resolved,
        runbook_generation: runbook.metadata.generation,
    }
}

/// Whether the run starts, executes, or has nothing left to do.
pub fn lifecycle(observed: &Observed) -> Lifecycle {
    let status = &observed.status;
    if status.phase.is_some_and(|p| p.is_finished()) {
        return Lifecycle::Settled {
            release_finalizer: observed.has_finalizer,
        };
    }
    let cancel_seen = observed.cancel_annotated || observed.deleted;
    if status.resolved_steps.is_empty() {
        if observed.deleted {
            return Lifecycle::Settled {
                release_finalizer: observed.has_finalizer,
            };
        }
        if cancel_seen {
            return Lifecycle::CancelBeforeStart;
        }
        return Lifecycle::Start;
    }
    Lifecycle::Execute {
        note_cancel: cancel_seen && status.cancel_requested_at.is_none(),
    }
}

/// Where a run stands with the cap on its finally steps once it is deleted
/// (`--deletion-grace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grace {
    /// Not deleted: no cap.
    Alive,
    /// Deleted: its steps may go on until this instant.
    Until(Timestamp),
    /// Deleted longer than the grace ago: whatever is unfinished is skipped, so the finalizer
    /// can go.
    Over,
}

/// The grace of a run deleted at `deleted_at` (its `metadata.deletionTimestamp`) at `now`,
/// measured from the deletion so a restarted operator keeps the same deadline.
pub fn grace(deleted_at: Option<Timestamp>, grace: std::time::Duration, now: Timestamp) -> Grace {
    let Some(deleted_at) = deleted_at else {
        return Grace::Alive;
    };
    let until = crate::time::add_std(deleted_at, grace);
    if now >= until {
        Grace::Over
    } else {
        Grace::Until(until)
    }
}

/// The journal entries not yet settled (Pending or Running): what a run whose deletion grace
/// is over skips.
pub fn unfinished(status: &RunbookRunStatus) -> Vec<usize> {
    status
        .steps
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.phase, StepPhase::Pending | StepPhase::Running))
        .map(|(index, _)| index)
        .collect()
}

/// How long a run that waits for `recheck` (`None`: until something changes) may sleep under
/// `grace`: never past the end of the grace, so the run is looked at again when it ends.
pub fn capped_wait(
    recheck: Option<std::time::Duration>,
    grace: Grace,
    now: Timestamp,
) -> Option<std::time::Duration> {
    match grace {
        Grace::Until(until) => {
            let left = crate::time::until(now, until);
            Some(recheck.map_or(left, |r| r.min(left)))
        }
        Grace::Alive | Grace::Over => recheck,
    }
}

/// Where the run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// Work on the journal entry at this index (main steps first, then finally steps).
    Step(usize),
    /// Nothing left to run.
    Done,
}

/// The next move on a journal, after the moot steps are recorded as skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Pending main steps that an abort or a cancel makes moot: record them as Skipped first.
    pub skip: Vec<usize>,
    /// Then this.
    pub next: Next,
}

/// What the run does after recording the skipped steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Every entry is settled: end the run (its outcome is [`super::status::outcome`]).
    Finish,
    /// The journal names an entry that the resolved steps do not define: stop this pass.
    Undefined {
        /// The journal entry.
        index: usize,
    },
    /// Work on journal entry `index`.
    Step {
        /// The journal entry (main steps first, then finally steps).
        index: usize,
        /// What the entry needs.
        next: StepNext,
    },
}

/// What one journal entry needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepNext {
    /// Pending: record it as started (attempt 1). A journal write, no side effect.
    Start,
    /// Running when the run was cancelled (a main step): stop its side effect, record it
    /// failed with reason Cancelled.
    Cancel,
    /// A failed attempt's retry is due at `at`: wait.
    WaitForRetry {
        /// When the next attempt may start.
        at: Timestamp,
    },
    /// The retry is due: record the next attempt before acting on it.
    NextAttempt,
    /// The attempt outlived the step's timeout: stop its side effect, then retry or fail.
    TimeOut,
    /// Carry out (or look at) the step's action; every wait ends by `deadline`, the step's
    /// timeout.
    Act {
        /// When the current attempt times out, if the step has a timeout.
        deadline: Option<Timestamp>,
    },
}

/// The next move on the journal in `status` at `now`. Cancelled means a cancel was recorded
/// (`cancelRequestedAt`).
pub fn decide(status: &RunbookRunStatus, now: Timestamp) -> Decision {
    let cancelled = status.cancel_requested_at.is_some();
    let (skip, cursor) = cursor(status, cancelled);
    let next = match cursor {
        Cursor::Done => Next::Finish,
        Cursor::Step(index) => match step_at(status, index) {
            None => Next::Undefined { index },
            Some(step) => Next::Step {
                index,
                next: step_next(
                    step,
                    &status.steps[index],
                    cancelled,
                    index >= status.resolved_steps.len(),
                    now,
                ),
            },
        },
    };
    Decision { skip, next }
}

/// What the entry of `step` needs at `now`.
fn step_next(
    step: &Step,
    entry: &StepStatus,
    cancelled: bool,
    is_finally: bool,
    now: Timestamp,
) -> StepNext {
    if entry.phase == StepPhase::Pending {
        return StepNext::Start;
    }
    // Finally steps run to the end even when the run is cancelled.
    if cancelled && !is_finally {
        return StepNext::Cancel;
    }
    if let Some(at) = entry.retry_at() {
        return if now < at {
            StepNext::WaitForRetry { at }
        } else {
            StepNext::NextAttempt
        };
    }
    let deadline = step
        .timeout
        .as_ref()
        .and_then(|t| t.parse().ok())
        .map(|limit| crate::time::add_std(entry.attempt_start().unwrap_or(now), limit));
    match deadline {
        Some(deadline) if now >= deadline => StepNext::TimeOut,
        _ => StepNext::Act { deadline },
    }
}

/// The step definition behind journal entry `index`.
pub fn step_at(status: &RunbookRunStatus, index: usize) -> Option<&Step> {
    let main = status.resolved_steps.len();
    if index < main {
        status.resolved_steps.get(index)
    } else {
        status.resolved_finally.get(index - main)
    }
}

/// Whether a main step failed in a way that stops the main steps.
pub fn aborted(status: &RunbookRunStatus) -> bool {
    status
        .resolved_steps
        .iter()
        .zip(&status.steps)
        .any(|(step, entry)| {
            entry.phase == StepPhase::Failed
                && step.on_failure.unwrap_or_default() == OnFailure::Abort
        })
}

/// The entry to work on, and the Pending main steps before it that an abort or a cancel makes
/// moot. A step already Running when a cancel arrives is the entry, so its executor can stop it.
pub fn cursor(status: &RunbookRunStatus, cancelled: bool) -> (Vec<usize>, Cursor) {
    let main = status.resolved_steps.len();
    let stop_main = cancelled || aborted(status);
    let mut skip = Vec::new();
    for (index, entry) in status.steps.iter().enumerate() {
        match entry.phase {
            StepPhase::Pending if index < main && stop_main => skip.push(index),
            StepPhase::Pending | StepPhase::Running => return (skip, Cursor::Step(index)),
            _ => {}
        }
    }
    (skip, Cursor::Done)
}

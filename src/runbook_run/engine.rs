//! The run's journal as a state machine: which step runs next, what an abort or a cancel
//! skips, and how the run ends. Pure: no I/O, the clock is an argument.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::types::{RunbookRunStatus, StepPhase, StepStatus};
use crate::step::{OnFailure, Step};

/// Run phases.
pub mod phase {
    /// Accepted, not started.
    pub const PENDING: &str = "Pending";
    /// Held until a matching MaintenanceWindow is Active.
    pub const WAITING_FOR_WINDOW: &str = "WaitingForWindow";
    /// Executing a step.
    pub const RUNNING: &str = "Running";
    /// Held at an approval step.
    pub const WAITING_FOR_APPROVAL: &str = "WaitingForApproval";
    /// Every step succeeded (or failed with onFailure: Continue).
    pub const SUCCEEDED: &str = "Succeeded";
    /// A step failed, or the run could not start.
    pub const FAILED: &str = "Failed";
    /// Stopped by `ops.runbook.dev/cancel` or deletion.
    pub const CANCELLED: &str = "Cancelled";

    /// Whether a run in `phase` is finished.
    pub fn is_finished(phase: Option<&str>) -> bool {
        matches!(phase, Some(SUCCEEDED | FAILED | CANCELLED))
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
            target: None,
            outputs: Default::default(),
        })
        .collect()
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

/// Moves the cursor: skips main steps that an abort or cancel makes moot (marking them
/// Skipped), and returns the entry to work on. A step already Running when a cancel arrives
/// is returned so the executor can stop it.
pub fn advance(status: &mut RunbookRunStatus, cancelled: bool, now: &Time) -> Cursor {
    let main = status.resolved_steps.len();
    let stop_main = cancelled || aborted(status);
    for index in 0..status.steps.len() {
        let entry = &mut status.steps[index];
        match entry.phase {
            StepPhase::Pending if index < main && stop_main => {
                entry.phase = StepPhase::Skipped;
                entry.completion_time = Some(now.clone());
                entry.message = Some(if cancelled {
                    "skipped: the run was cancelled".into()
                } else {
                    "skipped: an earlier step failed".into()
                });
            }
            StepPhase::Pending | StepPhase::Running => return Cursor::Step(index),
            _ => {}
        }
    }
    Cursor::Done
}

/// How a finished run ended: phase, reason and message for the Succeeded condition.
pub fn outcome(status: &RunbookRunStatus, cancelled: bool) -> (&'static str, &'static str, String) {
    if cancelled {
        return (
            phase::CANCELLED,
            "Cancelled",
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
                phase::FAILED,
                if timed_out { "TimedOut" } else { "StepFailed" },
                message,
            )
        }
        None if failed.is_empty() => (phase::SUCCEEDED, "Succeeded", "every step succeeded".into()),
        None => (
            phase::SUCCEEDED,
            "SucceededWithFailures",
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(steps: serde_json::Value, finally: serde_json::Value) -> RunbookRunStatus {
        let steps: Vec<Step> = serde_json::from_value(steps).unwrap();
        let finally: Vec<Step> = serde_json::from_value(finally).unwrap();
        RunbookRunStatus {
            steps: new_journal(&steps, &finally),
            resolved_steps: steps,
            resolved_finally: finally,
            ..Default::default()
        }
    }

    fn now() -> Time {
        Time("2026-11-25T00:00:00Z".parse().unwrap())
    }

    fn three_and_finally() -> RunbookRunStatus {
        status(
            json!([
                {"name": "a", "sleep": {"duration": "1s"}},
                {"name": "b", "onFailure": "Continue", "sleep": {"duration": "1s"}},
                {"name": "c", "sleep": {"duration": "1s"}}
            ]),
            json!([{"name": "z", "sleep": {"duration": "1s"}}]),
        )
    }

    #[test]
    fn runs_steps_in_order_then_finally() {
        let mut s = three_and_finally();
        for expected in 0..4 {
            assert_eq!(advance(&mut s, false, &now()), Cursor::Step(expected));
            s.steps[expected].phase = StepPhase::Succeeded;
        }
        assert_eq!(advance(&mut s, false, &now()), Cursor::Done);
        assert_eq!(outcome(&s, false).0, phase::SUCCEEDED);
    }

    #[test]
    fn continue_goes_on_and_still_succeeds() {
        let mut s = three_and_finally();
        s.steps[0].phase = StepPhase::Succeeded;
        s.steps[1].phase = StepPhase::Failed;
        assert_eq!(advance(&mut s, false, &now()), Cursor::Step(2));
        s.steps[2].phase = StepPhase::Succeeded;
        s.steps[3].phase = StepPhase::Succeeded;
        let (phase, reason, message) = outcome(&s, false);
        assert_eq!((phase, reason), (phase::SUCCEEDED, "SucceededWithFailures"));
        assert!(message.contains('b'));
    }

    #[test]
    fn abort_skips_the_rest_but_runs_finally() {
        let mut s = three_and_finally();
        s.steps[0].phase = StepPhase::Failed;
        s.steps[0].message = Some("boom".into());
        assert_eq!(advance(&mut s, false, &now()), Cursor::Step(3));
        assert_eq!(s.steps[1].phase, StepPhase::Skipped);
        assert_eq!(s.steps[2].phase, StepPhase::Skipped);
        s.steps[3].phase = StepPhase::Succeeded;
        let (phase, reason, message) = outcome(&s, false);
        assert_eq!((phase, reason), (phase::FAILED, "StepFailed"));
        assert_eq!(message, "step \"a\" failed: boom");
    }

    #[test]
    fn cancel_returns_the_running_step_then_skips_and_runs_finally() {
        let mut s = three_and_finally();
        s.steps[0].phase = StepPhase::Running;
        assert_eq!(advance(&mut s, true, &now()), Cursor::Step(0));
        s.steps[0].phase = StepPhase::Failed;
        assert_eq!(advance(&mut s, true, &now()), Cursor::Step(3));
        assert!(s.steps[1..3].iter().all(|e| e.phase == StepPhase::Skipped));
        assert_eq!(outcome(&s, true).0, phase::CANCELLED);
    }

    #[test]
    fn a_failed_finally_step_fails_the_run() {
        let mut s = three_and_finally();
        for e in &mut s.steps[..3] {
            e.phase = StepPhase::Succeeded;
        }
        s.steps[3].phase = StepPhase::Failed;
        s.steps[3]
            .outputs
            .insert("reason".into(), "TimedOut".into());
        assert_eq!(outcome(&s, false).1, "TimedOut");
    }
}

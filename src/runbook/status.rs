//! The status a Runbook should have after a decision: its phase, the kstatus conditions of its
//! spec's validity, and the record of triggers and history. Pure: the clock is an argument.
//!
//! A Runbook has no condition types or reasons of its own: `Ready`, `Reconciling` and
//! `Stalled` with their reasons come from [`crate::conditions::validity`].

use jiff::Timestamp;

use super::decide::Decision;
use super::types::{Runbook, RunbookPhase, RunbookStatus};
use crate::validation::{self, Note, Verdict};

/// The message of `Ready=True` (and of the Event when a Runbook becomes Ready).
pub const READY_MESSAGE: &str = "the runbook is valid and can run";

/// The whole status `rb` should have after `decision`, decided at `now`.
pub fn status(rb: &Runbook, decision: &Decision, now: Timestamp) -> RunbookStatus {
    let verdict = verdict(rb, decision, now);
    let mut status = without_alerts(rb.status.as_ref());
    status.phase = Some(if verdict.valid {
        RunbookPhase::Ready
    } else {
        RunbookPhase::Invalid
    });
    status.observed_generation = rb.metadata.generation;
    status.conditions = verdict.conditions;
    if let Some(record) = &decision.record {
        record.store(&mut status);
        status.sent_notifications = decision.notifications.sent.clone();
    }
    status
}

/// `status` without `alerts`: that part belongs to the alert receiver, which writes it with
/// a resourceVersion precondition. The controller neither applies it (a copy read from a
/// cache could undo a newer record) nor compares it.
pub fn without_alerts(status: Option<&RunbookStatus>) -> RunbookStatus {
    let mut status = status.cloned().unwrap_or_default();
    status.alerts = None;
    status
}

/// The Event to publish when `Ready` changes with this decision: Normal `Ready`, or Warning
/// `InvalidSpec` naming every problem.
pub fn readiness_event(rb: &Runbook, decision: &Decision, now: Timestamp) -> Option<Note> {
    verdict(rb, decision, now).note
}

/// The spec judged from the decision's problems: conditions merged into the stored ones
/// (`lastTransitionTime` moves only when a status flips), and an Event if `Ready` changed.
fn verdict(rb: &Runbook, decision: &Decision, now: Timestamp) -> Verdict {
    let existing = rb
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    validation::judge(
        existing,
        &decision.problems,
        rb.metadata.generation,
        &crate::time::to_time(now),
        READY_MESSAGE,
    )
}

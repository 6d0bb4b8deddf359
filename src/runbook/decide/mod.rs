//! What the Runbook controller should do now: a pure function of the Runbook (its spec and the
//! status it stored), what the controller observed, and the clock.

mod alert_triggers;
pub mod lifecycle;
mod triggers;

#[cfg(test)]
mod tests;

use jiff::Timestamp;
use kube::ResourceExt;

use super::observe::Observed;
use super::types::Runbook;
use crate::conditions::SpecProblem;
use crate::runbook_run::RunbookRun;
use crate::validation::Note;

pub use alert_triggers::compile_alert_regex;
pub use triggers::{
    NewRun, REASON_MISSED_SCHEDULE, REASON_RUN_REQUESTED, REASON_SCHEDULE_SKIPPED,
    REASON_SCHEDULED, TriggerRecord, new_run_of, run_now_name, scheduled_name,
};

/// Everything the Runbook controller should do now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Every problem with the spec the API server could not catch; while there is one, no run
    /// is created, cancelled or pruned.
    pub problems: Vec<SpecProblem>,
    /// Runs to create, idempotent by name.
    pub create: Vec<NewRun>,
    /// Active runs to cancel (concurrencyPolicy Replace).
    pub cancel: Vec<String>,
    /// Finished runs beyond the history limits, oldest first.
    pub prune: Vec<String>,
    /// Events to publish (a missed or skipped scheduled time).
    pub events: Vec<Note>,
    /// When to look again: the next scheduled time.
    pub wake_at: Option<Timestamp>,
    /// What the status records of triggers and history after this decision; `None` while the
    /// spec is invalid, when the status keeps what it had.
    pub record: Option<TriggerRecord>,
    /// The lifecycle messages due now and the record of sent ones; empty while the spec is
    /// invalid, when the status keeps the record it had.
    pub notifications: crate::notifications::Plan,
}

impl Decision {
    /// Whether the spec is usable.
    pub fn valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Decides for `rb` at `now`, given what was observed.
pub fn decide(rb: &Runbook, observed: &Observed, now: Timestamp) -> Decision {
    let problems = problems(rb, observed);
    if !problems.is_empty() {
        return Decision {
            problems,
            ..Decision::default()
        };
    }
    let mut record = TriggerRecord::stored(rb.status.as_ref());
    let runs: Vec<&RunbookRun> = observed.runs.iter().map(AsRef::as_ref).collect();
    let triggers = triggers::decide_triggers(rb, &runs, &mut record, now);
    let stored = rb
        .status
        .as_ref()
        .map(|s| s.sent_notifications.as_slice())
        .unwrap_or_default();
    let notifications = crate::notifications::plan(
        &rb.spec.notifications,
        &lifecycle::occurrences(&runs),
        stored,
        now,
    );
    let wake_at = match (triggers.next_check, notifications.wake_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Decision {
        problems,
        create: triggers.create,
        cancel: triggers.cancel,
        prune: triggers.prune,
        events: triggers.events,
        wake_at,
        record: Some(record),
        notifications,
    }
}

/// Every problem with the spec that the API server could not catch.
pub fn problems(rb: &Runbook, observed: &Observed) -> Vec<SpecProblem> {
    let spec = &rb.spec;
    let mut problems = crate::step::validate_step_lists(&[
        ("spec.steps", &spec.steps),
        ("spec.finally", &spec.finally),
    ]);
    if let Some(schedule) = &spec.schedule {
        problems.extend(crate::schedule::problems(
            &schedule.cron,
            schedule.time_zone.as_deref(),
            "spec.schedule",
        ));
    }
    problems.extend(crate::params::undeclared_references(spec));
    problems.extend(crate::params::declaration_problems(spec));
    problems.extend(alert_triggers::problems(rb));
    problems.extend(crate::notifications::problems(
        &spec.notifications,
        &lifecycle::EVENTS,
        "spec.notifications",
    ));
    for (path, policy) in &observed.missing_policies {
        problems.push(SpecProblem::new(
            path,
            format!(
                "BackupPolicy {policy:?} does not exist in namespace {:?}; create it or fix the name",
                rb.namespace().unwrap_or_default()
            ),
        ));
    }
    problems
}

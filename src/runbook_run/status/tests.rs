use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::runbook_run::types::StepStatus;

fn entry(phase: StepPhase, attempts: i32, attempt_started: Option<&str>) -> StepStatus {
    let mut value = json!({
        "name": "scale-down", "phase": phase, "attempts": attempts,
        "startTime": "2026-06-10T12:00:00Z"
    });
    if let Some(at) = attempt_started {
        value["outputs"] = json!({"attemptStartedAt": at});
    }
    serde_json::from_value(value).expect("a journal entry")
}

fn at(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

#[test]
fn a_step_that_just_ended_reports_its_result_and_duration() {
    let now = at("2026-06-10T12:00:03.5Z");
    let done = entry(StepPhase::Succeeded, 1, Some("2026-06-10T12:00:00.25Z"));
    assert_eq!(
        step_finished(StepPhase::Running, &done, now),
        Some(("Succeeded", Duration::from_millis(3250)))
    );
    // Started and ended within one reconcile.
    assert_eq!(
        step_finished(StepPhase::Pending, &done, now).map(|(r, _)| r),
        Some("Succeeded")
    );
    let failed = entry(StepPhase::Failed, 1, None);
    assert_eq!(
        step_finished(StepPhase::Running, &failed, now),
        Some(("Failed", Duration::from_millis(3500)))
    );
    let skipped = entry(StepPhase::Skipped, 1, None);
    assert_eq!(
        step_finished(StepPhase::Running, &skipped, now).map(|(r, _)| r),
        Some("Skipped")
    );
}

#[test]
fn a_retried_step_is_timed_from_its_first_attempt() {
    let now = at("2026-06-10T12:01:00Z");
    let failed = entry(StepPhase::Failed, 3, Some("2026-06-10T12:00:40Z"));
    assert_eq!(
        step_finished(StepPhase::Running, &failed, now),
        Some(("Failed", Duration::from_secs(60)))
    );
}

#[test]
fn no_observation_without_a_new_end_or_a_start() {
    let now = at("2026-06-10T12:00:05Z");
    let running = entry(StepPhase::Running, 1, None);
    assert_eq!(step_finished(StepPhase::Pending, &running, now), None);
    let done = entry(StepPhase::Succeeded, 1, None);
    assert_eq!(step_finished(StepPhase::Succeeded, &done, now), None);
    // Skipped by an abort before it started: no duration to report.
    let mut never = entry(StepPhase::Skipped, 0, None);
    never.start_time = None;
    assert_eq!(step_finished(StepPhase::Pending, &never, now), None);
}

#[test]
fn run_phases_serialize_as_their_names() {
    for phase in [
        RunPhase::Pending,
        RunPhase::WaitingForWindow,
        RunPhase::Running,
        RunPhase::WaitingForApproval,
        RunPhase::Succeeded,
        RunPhase::Failed,
        RunPhase::Cancelled,
    ] {
        assert_eq!(serde_json::to_value(phase).unwrap(), json!(phase.as_str()));
    }
}

#[test]
fn status_text_is_capped_and_capping_is_stable() {
    use crate::names::{MAX_STATUS_TEXT, TRUNCATED_MARKER};
    use crate::runbook_run::types::MAX_OUTPUT_TEXT;
    let mut status = RunbookRunStatus::default();
    let mut entry = StepStatus {
        name: "big".into(),
        phase: StepPhase::Failed,
        attempts: 1,
        start_time: None,
        completion_time: None,
        message: None,
        reason: None,
        condition: None,
        target: None,
        outputs: std::collections::BTreeMap::new(),
    };
    entry.message = Some("é".repeat(1 << 19));
    entry.outputs.insert("body".into(), "x".repeat(1 << 20));
    entry.outputs.insert("jobName".into(), "short".into());
    status.steps.push(entry);
    let bounded = status.bounded().into_owned();
    let message = bounded.steps[0].message.as_deref().unwrap();
    assert!(message.len() <= MAX_STATUS_TEXT && message.ends_with(TRUNCATED_MARKER));
    assert!(bounded.steps[0].outputs["body"].len() <= MAX_OUTPUT_TEXT);
    assert_eq!(bounded.steps[0].outputs["jobName"], "short");
    assert_eq!(bounded.bounded().as_ref(), &bounded);
}

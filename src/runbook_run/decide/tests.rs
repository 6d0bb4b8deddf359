use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;
use crate::runbook_run::act::Act;
use crate::runbook_run::status::{self, new_journal, outcome};
use crate::runbook_run::types::RunPhase;
use crate::testing::{Checks, checked, json_round_trip};

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

/// The journal's move as the controller makes it: the moot steps recorded as skipped, then the
/// entry to work on.
fn advance(s: &mut RunbookRunStatus, cancelled: bool, now: &Time) -> Cursor {
    let (moot, at) = cursor(s, cancelled);
    status::skip(s, &moot, cancelled, now);
    at
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
    assert_eq!(outcome(&s, false).0, RunPhase::Succeeded);
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
    assert_eq!(
        (phase, reason),
        (RunPhase::Succeeded, "SucceededWithFailures")
    );
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
    assert_eq!((phase, reason), (RunPhase::Failed, "StepFailed"));
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
    assert_eq!(outcome(&s, true).0, RunPhase::Cancelled);
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

// --- decide, checked ---------------------------------------------------------------------

/// The safety invariant of the journal, as the code holds it: a side effect (the step's
/// action, or the stop of a cancelled or timed-out attempt) is only decided for an entry whose
/// journal already records it as started (phase Running, written by [`status::start_step`]
/// together with its first attempt and start time); a Pending entry is only ever told to
/// start, which is a journal write. Skipped entries are Pending main steps, never the entry
/// worked on.
fn recorded_before_acting(s: &RunbookRunStatus, decision: &Decision) -> Result<(), String> {
    for &index in &decision.skip {
        let entry = &s.steps[index];
        if entry.phase != StepPhase::Pending || index >= s.resolved_steps.len() {
            return Err(format!("skips {:?}, not a Pending main step", entry.name));
        }
    }
    if let Next::Step { index, next } = &decision.next {
        let entry = &s.steps[*index];
        if decision.skip.contains(index) {
            return Err(format!("works on {:?}, which it skips", entry.name));
        }
        let side_effect = matches!(
            next,
            StepNext::Act { .. } | StepNext::Cancel | StepNext::TimeOut
        );
        if side_effect && entry.phase != StepPhase::Running {
            return Err(format!(
                "decides a side effect for {:?} whose journal says {:?}",
                entry.name, entry.phase
            ));
        }
        if entry.phase == StepPhase::Pending && *next != StepNext::Start {
            return Err(format!(
                "decides {next:?} for {:?} before recording its start",
                entry.name
            ));
        }
    }
    Ok(())
}

fn checks() -> Checks<'static, RunbookRunStatus, Decision> {
    Checks {
        decide: &decide,
        restart: &json_round_trip,
        invariant: &recorded_before_acting,
    }
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

const T0: &str = "2026-11-25T00:00:00Z";

fn timed() -> RunbookRunStatus {
    status(
        json!([
            {"name": "a", "timeout": "30s", "retries": {"limit": 1, "backoff": "10s"},
             "sleep": {"duration": "1m"}},
            {"name": "b", "sleep": {"duration": "1s"}}
        ]),
        json!([{"name": "z", "sleep": {"duration": "1s"}}]),
    )
}

fn started(mut s: RunbookRunStatus, index: usize, at: &str) -> RunbookRunStatus {
    status::start_step(&mut s.steps[index], ts(at));
    s
}

#[test]
fn a_pending_step_is_recorded_as_started_first() {
    let s = timed();
    let d = checked(&checks(), &s, ts(T0));
    assert_eq!(
        d,
        Decision {
            skip: vec![],
            next: Next::Step {
                index: 0,
                next: StepNext::Start
            }
        }
    );
}

#[test]
fn a_started_step_acts_until_its_deadline_then_times_out() {
    let s = started(timed(), 0, T0);
    let d = checked(&checks(), &s, ts("2026-11-25T00:00:10Z"));
    assert_eq!(
        d.next,
        Next::Step {
            index: 0,
            next: StepNext::Act {
                deadline: Some(ts("2026-11-25T00:00:30Z"))
            }
        }
    );
    let d = checked(&checks(), &s, ts("2026-11-25T00:00:30Z"));
    assert_eq!(
        d.next,
        Next::Step {
            index: 0,
            next: StepNext::TimeOut
        }
    );
}

#[test]
fn a_retry_waits_then_records_the_next_attempt() {
    let mut s = started(timed(), 0, T0);
    let step = s.resolved_steps[0].clone();
    status::timed_out(&step, &mut s.steps[0], ts("2026-11-25T00:00:30Z"));
    let d = checked(&checks(), &s, ts("2026-11-25T00:00:35Z"));
    assert_eq!(
        d.next,
        Next::Step {
            index: 0,
            next: StepNext::WaitForRetry {
                at: ts("2026-11-25T00:00:40Z")
            }
        }
    );
    let d = checked(&checks(), &s, ts("2026-11-25T00:00:40Z"));
    assert_eq!(
        d.next,
        Next::Step {
            index: 0,
            next: StepNext::NextAttempt
        }
    );
}

#[test]
fn a_cancel_stops_the_running_main_step_but_not_a_finally_step() {
    let mut s = started(timed(), 0, T0);
    s.cancel_requested_at = Some(Time(ts(T0)));
    let d = checked(&checks(), &s, ts(T0));
    assert_eq!(
        d,
        Decision {
            skip: vec![],
            next: Next::Step {
                index: 0,
                next: StepNext::Cancel
            }
        }
    );
    status::cancelled(&mut s.steps[0], ts(T0));
    let d = checked(&checks(), &s, ts(T0));
    assert_eq!(
        d,
        Decision {
            skip: vec![1],
            next: Next::Step {
                index: 2,
                next: StepNext::Start
            }
        }
    );
    status::skip(&mut s, &d.skip, true, &Time(ts(T0)));
    let mut s = started(s, 2, T0);
    let d = checked(&checks(), &s, ts("2026-11-25T00:00:01Z"));
    assert_eq!(
        d.next,
        Next::Step {
            index: 2,
            next: StepNext::Act { deadline: None }
        }
    );
    s.steps[2].phase = StepPhase::Succeeded;
    assert_eq!(checked(&checks(), &s, ts(T0)).next, Next::Finish);
}

#[test]
fn a_journal_longer_than_its_steps_stops_the_pass() {
    let mut s = timed();
    s.resolved_finally.clear();
    let mut s = started(s, 0, T0);
    s.steps[0].phase = StepPhase::Succeeded;
    s.steps[1].phase = StepPhase::Succeeded;
    let d = checked(&checks(), &s, ts(T0));
    assert_eq!(d.next, Next::Undefined { index: 2 });
}

/// Drives a run to its end the way the controller does, every action answering `answer`,
/// checking each decision on the journal as stored (JSON round trip after every write).
fn drive(mut s: RunbookRunStatus, answer: impl Fn(&str) -> Act) -> RunbookRunStatus {
    let mut now = ts(T0);
    for _ in 0..100 {
        let d = checked(&checks(), &s, now);
        let cancelled = s.cancel_requested_at.is_some();
        status::skip(&mut s, &d.skip, cancelled, &crate::time::to_time(now));
        let Next::Step { index, next } = d.next else {
            return s;
        };
        let step = step_at(&s, index).unwrap().clone();
        let entry = &mut s.steps[index];
        match next {
            StepNext::Start => {
                status::start_step(entry, now);
            }
            StepNext::Cancel => {
                status::cancelled(entry, now);
            }
            StepNext::WaitForRetry { at } => now = at,
            StepNext::NextAttempt => {
                status::next_attempt(entry, now);
            }
            StepNext::TimeOut => {
                status::timed_out(&step, entry, now);
            }
            StepNext::Act { deadline } => {
                let act = answer(&step.name);
                status::acted(&step, entry, act, deadline, now);
            }
        }
        s = json_round_trip(&s);
        now += jiff::SignedDuration::from_secs(1);
    }
    panic!("the run did not end: {s:#?}");
}

#[test]
fn a_run_driven_to_its_end_records_every_step() {
    let s = drive(timed(), |_| Act::Succeeded("done".into()));
    assert!(s.steps.iter().all(|e| e.phase == StepPhase::Succeeded));
    assert_eq!(outcome(&s, false).0, RunPhase::Succeeded);
}

#[test]
fn a_failing_step_is_retried_then_aborts_the_run() {
    let s = drive(timed(), |name| {
        if name == "a" {
            Act::Failed {
                reason: "Boom",
                message: "no".into(),
                retryable: true,
            }
        } else {
            Act::Succeeded("done".into())
        }
    });
    assert_eq!(s.steps[0].phase, StepPhase::Failed);
    assert_eq!(s.steps[0].attempts, 2);
    assert_eq!(s.steps[1].phase, StepPhase::Skipped);
    assert_eq!(s.steps[2].phase, StepPhase::Succeeded);
    assert_eq!(outcome(&s, false).1, "StepFailed");
}

#[test]
fn the_lifecycle_follows_the_markers() {
    let observed = |status: RunbookRunStatus, deleted, cancel| Observed {
        status,
        has_finalizer: true,
        deleted,
        cancel_annotated: cancel,
    };
    let checks = Checks {
        decide: &|o: &Observed, _| lifecycle(o),
        restart: &|o: &Observed| Observed {
            status: json_round_trip(&o.status),
            ..o.clone()
        },
        invariant: &crate::testing::no_invariant,
    };
    let at = ts(T0);
    assert_eq!(
        checked(&checks, &observed(timed_unstarted(), false, false), at),
        Lifecycle::Start
    );
    assert_eq!(
        checked(&checks, &observed(timed_unstarted(), false, true), at),
        Lifecycle::CancelBeforeStart
    );
    assert_eq!(
        checked(&checks, &observed(timed_unstarted(), true, true), at),
        Lifecycle::Settled {
            release_finalizer: true
        }
    );
    assert_eq!(
        checked(&checks, &observed(timed(), false, true), at),
        Lifecycle::Execute { note_cancel: true }
    );
    let mut done = timed();
    done.phase = Some(RunPhase::Failed);
    assert_eq!(
        checked(&checks, &observed(done, false, false), at),
        Lifecycle::Settled {
            release_finalizer: true
        }
    );
}

fn timed_unstarted() -> RunbookRunStatus {
    RunbookRunStatus {
        phase: Some(RunPhase::WaitingForWindow),
        ..Default::default()
    }
}

// --- starting a run ------------------------------------------------------------------------------

fn a_run(params: serde_json::Value) -> RunbookRun {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "RunbookRun",
        "metadata": {"name": "fix-1", "namespace": "shop"},
        "spec": {"runbookRef": {"name": "fix"}, "params": params}
    }))
    .unwrap()
}

fn a_runbook(window: bool) -> Runbook {
    let mut spec = json!({
        "params": [{"name": "replicas"}],
        "steps": [{"name": "wait", "sleep": {"duration": "{{ params.replicas }}s"}}]
    });
    if window {
        spec["requiresMaintenanceWindow"] = json!({"selector": {"matchLabels": {"team": "db"}}});
    }
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
        "metadata": {"name": "fix", "namespace": "shop", "generation": 3},
        "spec": spec
    }))
    .unwrap()
}

type StartInput = (RunbookRun, Option<Runbook>, Option<bool>);

/// `decide::start` through the shared checks: pure, the same after a restart that reads the run
/// and the Runbook back from the API server, and never starting a run whose Runbook requires a
/// window unless that window was seen open.
fn start_checked(run: RunbookRun, runbook: Option<Runbook>, open: Option<bool>) -> Start {
    let checks = Checks {
        decide: &|(run, rb, open): &StartInput, _| start(run, rb.as_ref(), *open),
        restart: &|(run, rb, open): &StartInput| {
            (
                json_round_trip(run),
                rb.as_ref().map(json_round_trip),
                *open,
            )
        },
        invariant: &|(_, rb, open): &StartInput, decision: &Start| {
            let needs_window = rb
                .as_ref()
                .is_some_and(|rb| rb.spec.requires_maintenance_window.is_some());
            match decision {
                Start::Begin { .. } if needs_window && *open != Some(true) => {
                    Err("a run started without the window its Runbook requires".into())
                }
                _ => Ok(()),
            }
        },
    };
    checked(
        &checks,
        &(run, runbook, open),
        "2026-11-25T00:00:00Z".parse().unwrap(),
    )
}

#[test]
fn a_run_of_a_missing_runbook_ends_before_its_first_step() {
    let Start::End {
        phase,
        reason,
        message,
    } = start_checked(a_run(json!({})), None, None)
    else {
        panic!("expected End");
    };
    assert_eq!(
        (phase, reason),
        (RunPhase::Failed, status::REASON_RUNBOOK_NOT_FOUND)
    );
    assert!(
        message.starts_with(
            "spec.runbookRef.name: Runbook \"fix\" does not exist in namespace \"shop\""
        ),
        "{message}"
    );
}

#[test]
fn a_run_whose_params_do_not_resolve_ends_invalid() {
    let decision = start_checked(a_run(json!({})), Some(a_runbook(false)), None);
    let Start::End {
        phase,
        reason,
        message,
    } = decision
    else {
        panic!("expected End, got {decision:?}");
    };
    assert_eq!(
        (phase, reason),
        (RunPhase::Failed, status::REASON_INVALID_SPEC)
    );
    assert!(message.contains("replicas"), "{message}");
}

#[test]
fn a_run_that_needs_a_window_waits_until_one_is_seen_open() {
    let run = a_run(json!({"replicas": "3"}));
    for open in [None, Some(false)] {
        assert_eq!(
            start_checked(run.clone(), Some(a_runbook(true)), open),
            Start::WaitForWindow {
                message: "waiting for a MaintenanceWindow labelled team=db to be Active".into()
            }
        );
    }
    let Start::Begin {
        resolved,
        runbook_generation,
    } = start_checked(run, Some(a_runbook(true)), Some(true))
    else {
        panic!("expected Begin");
    };
    assert_eq!(runbook_generation, Some(3));
    assert_eq!(resolved.steps.len(), 1);
}

#[test]
fn a_run_without_a_window_requirement_begins_with_its_params_substituted() {
    let decision = start_checked(
        a_run(json!({"replicas": "3"})),
        Some(a_runbook(false)),
        None,
    );
    let Start::Begin { resolved, .. } = decision else {
        panic!("expected Begin, got {decision:?}");
    };
    let step = serde_json::to_value(&resolved.steps[0]).unwrap();
    assert_eq!(step["sleep"]["duration"], "3s");
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

#[test]
fn the_deletion_grace_runs_from_the_deletion_timestamp() {
    let five = std::time::Duration::from_secs(300);
    let deleted = at("2026-11-25T00:00:00Z");
    assert_eq!(grace(None, five, deleted), Grace::Alive);
    assert_eq!(
        grace(Some(deleted), five, at("2026-11-25T00:04:59Z")),
        Grace::Until(at("2026-11-25T00:05:00Z"))
    );
    assert_eq!(
        grace(Some(deleted), five, at("2026-11-25T00:05:00Z")),
        Grace::Over
    );
    // A clock behind the deletion (another node's) still waits the whole grace.
    assert_eq!(
        grace(Some(deleted), five, at("2026-11-24T23:59:00Z")),
        Grace::Until(at("2026-11-25T00:05:00Z"))
    );
    // A grace too large for the calendar saturates instead of panicking.
    assert_eq!(
        grace(Some(deleted), std::time::Duration::MAX, deleted),
        Grace::Until(jiff::Timestamp::MAX)
    );
    assert_eq!(
        grace(Some(deleted), std::time::Duration::ZERO, deleted),
        Grace::Over
    );
}

#[test]
fn a_wait_never_outlasts_the_deletion_grace() {
    let now = at("2026-11-25T00:04:00Z");
    let until = Grace::Until(at("2026-11-25T00:05:00Z"));
    let minute = std::time::Duration::from_secs(60);
    // An approval without timeout waits for a change: under a grace, for its end.
    assert_eq!(capped_wait(None, until, now), Some(minute));
    assert_eq!(
        capped_wait(Some(std::time::Duration::from_secs(3600)), until, now),
        Some(minute)
    );
    assert_eq!(
        capped_wait(Some(std::time::Duration::from_secs(5)), until, now),
        Some(std::time::Duration::from_secs(5))
    );
    assert_eq!(capped_wait(None, Grace::Alive, now), None);
}

#[test]
fn once_the_grace_is_over_every_unfinished_step_is_skipped_and_the_run_can_finish() {
    let mut s = status(
        json!([{"name": "main", "sleep": {"duration": "1s"}}]),
        json!([
            {"name": "ask", "approval": {"message": "ok?"}},
            {"name": "after", "sleep": {"duration": "1h"}}
        ]),
    );
    s.steps[0].phase = StepPhase::Skipped;
    s.steps[1].phase = StepPhase::Running;
    s.cancel_requested_at = Some(now());
    let left = unfinished(&s);
    assert_eq!(left, vec![1, 2]);
    status::abandon(&mut s, &left, "5m", &now());
    assert!(s.steps[1..].iter().all(|e| {
        e.phase == StepPhase::Skipped
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains("deletion grace (5m)"))
    }));
    assert_eq!(unfinished(&s), Vec::<usize>::new());
    assert_eq!(decide(&s, now().0).next, Next::Finish);
}

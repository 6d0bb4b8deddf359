//! Tests of the Runbook's decision: the triggers and history (run-now, schedule, concurrency,
//! pruning), and `decide` checked for purity, restart from the stored status, and its
//! invariant on representative inputs and a simulated day.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::json;

use super::triggers::{TriggerRecord, decide_triggers};
use super::{Decision, decide, run_now_name, scheduled_name};
use crate::runbook::observe::Observed;
use crate::runbook::status::status;
use crate::runbook::types::{Runbook, RunbookPhase};
use crate::runbook_run::{RunbookRun, TriggerType};
use crate::testing::{Checks, checked, json_round_trip};
use crate::well_known::RUN_NOW;

fn runbook(spec: serde_json::Value, annotations: serde_json::Value) -> Runbook {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
        "metadata": {"name": "nightly", "namespace": "shop", "uid": "u1",
            "creationTimestamp": "2026-11-01T00:00:00Z", "annotations": annotations},
        "spec": spec
    }))
    .unwrap()
}

fn run(name: &str, created: &str, phase_: &str) -> RunbookRun {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "RunbookRun",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
        "spec": {"runbookRef": {"name": "nightly"}},
        "status": {"phase": phase_}
    }))
    .unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const STEPS: &str = r#"[{"name": "nap", "sleep": {"duration": "1s"}}]"#;

fn steps() -> serde_json::Value {
    serde_json::from_str(STEPS).unwrap()
}

#[test]
fn run_now_creates_one_run_per_token() {
    let rb = runbook(
        json!({"steps": steps()}),
        json!({RUN_NOW: "2026-11-25T10:00"}),
    );
    let mut record = TriggerRecord::default();
    let p = decide_triggers(&rb, &[], &mut record, ts("2026-11-25T10:00:05Z"));
    assert_eq!(p.create.len(), 1);
    assert_eq!(
        p.create[0].run.name_any(),
        run_now_name("nightly", "2026-11-25T10:00")
    );
    assert_eq!(
        record.last_handled_run_now.as_deref(),
        Some("2026-11-25T10:00")
    );
    // The same token again: nothing.
    let again = decide_triggers(&rb, &[], &mut record, ts("2026-11-25T10:00:09Z"));
    assert!(again.create.is_empty());
}

#[test]
fn schedule_starts_the_due_run_with_a_deterministic_name() {
    let rb = runbook(
        json!({"steps": steps(), "schedule": {"cron": "0 2 * * *", "timeZone": "Europe/Berlin"}}),
        json!({}),
    );
    let mut record = TriggerRecord {
        last_schedule_time: Some(Time(ts("2026-11-24T01:00:00Z"))),
        ..Default::default()
    };
    let now = ts("2026-11-25T01:00:03Z");
    let p = decide_triggers(&rb, &[], &mut record, now);
    assert_eq!(p.create.len(), 1);
    assert_eq!(
        p.create[0].run.name_any(),
        scheduled_name("nightly", ts("2026-11-25T01:00:00Z"))
    );
    let trigger = p.create[0].run.spec.trigger.clone().unwrap();
    assert_eq!(trigger.type_, TriggerType::Schedule);
    assert_eq!(
        record.last_schedule_time,
        Some(Time(ts("2026-11-25T01:00:00Z")))
    );
    assert_eq!(
        record.next_schedule_time,
        Some(Time(ts("2026-11-26T01:00:00Z")))
    );
    // Evaluated again (a restart): the same time is not due again.
    assert!(
        decide_triggers(&rb, &[], &mut record, now)
            .create
            .is_empty()
    );
}

#[test]
fn forbid_skips_while_a_run_is_active_and_replace_cancels_it() {
    let active = run("nightly-1", "2026-11-24T01:00:00Z", "Running");
    let mut record = TriggerRecord {
        last_schedule_time: Some(Time(ts("2026-11-24T02:00:00Z"))),
        ..Default::default()
    };
    let forbid = runbook(
        json!({"steps": steps(), "schedule": {"cron": "0 2 * * *"}}),
        json!({}),
    );
    let p = decide_triggers(&forbid, &[&active], &mut record, ts("2026-11-25T02:00:01Z"));
    assert!(p.create.is_empty());
    assert_eq!(p.events[0].reason, "ScheduleSkipped");

    let mut record = TriggerRecord {
        last_schedule_time: Some(Time(ts("2026-11-24T02:00:00Z"))),
        ..Default::default()
    };
    let replace = runbook(
        json!({"steps": steps(), "schedule": {"cron": "0 2 * * *", "concurrencyPolicy": "Replace"}}),
        json!({}),
    );
    let p = decide_triggers(
        &replace,
        &[&active],
        &mut record,
        ts("2026-11-25T02:00:01Z"),
    );
    assert_eq!(p.cancel, ["nightly-1"]);
    assert_eq!(p.create.len(), 1);
}

#[test]
fn replace_never_cancels_the_run_for_the_same_time() {
    // A second decision from a stale copy (lastScheduleTime not yet updated) sees the
    // run it already created for this time; it must not cancel it.
    let replace = runbook(
        json!({"steps": steps(), "schedule": {"cron": "0 2 * * *", "concurrencyPolicy": "Replace"}}),
        json!({}),
    );
    let mut record = TriggerRecord {
        last_schedule_time: Some(Time(ts("2026-11-24T02:00:00Z"))),
        ..Default::default()
    };
    let now = ts("2026-11-25T02:00:01Z");
    let own = run(
        &scheduled_name("nightly", ts("2026-11-25T02:00:00Z")),
        "2026-11-25T02:00:00Z",
        "Running",
    );
    let p = decide_triggers(&replace, &[&own], &mut record, now);
    assert!(p.cancel.is_empty(), "{:?}", p.cancel);
    assert_eq!(
        p.create.len(),
        1,
        "the create is repeated and meets AlreadyExists"
    );
}

#[test]
fn a_resumed_schedule_does_not_run_its_backlog() {
    let suspended = runbook(
        json!({"steps": steps(), "schedule": {"cron": "0 * * * *", "suspend": true}}),
        json!({}),
    );
    let mut record = TriggerRecord {
        last_schedule_time: Some(Time(ts("2026-11-25T00:00:00Z"))),
        ..Default::default()
    };
    let p = decide_triggers(&suspended, &[], &mut record, ts("2026-11-25T00:30:00Z"));
    assert!(p.create.is_empty() && record.next_schedule_time.is_none());
    let resumed = runbook(
        json!({"steps": steps(), "schedule": {"cron": "0 * * * *"}}),
        json!({}),
    );
    let p = decide_triggers(&resumed, &[], &mut record, ts("2026-11-25T05:10:00Z"));
    assert!(
        p.create.is_empty(),
        "hours missed while suspended must not run: {:?}",
        p.create
            .iter()
            .map(|c| c.run.name_any())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        record.next_schedule_time,
        Some(Time(ts("2026-11-25T06:00:00Z")))
    );
}

#[test]
fn history_keeps_the_newest_and_prunes_oldest_first() {
    let rb = runbook(
        json!({"steps": steps(), "historyLimits": {"successful": 1, "failed": 1}}),
        json!({}),
    );
    let runs = [
        run("r1", "2026-11-20T00:00:00Z", "Succeeded"),
        run("r2", "2026-11-21T00:00:00Z", "Failed"),
        run("r3", "2026-11-22T00:00:00Z", "Succeeded"),
        run("r4", "2026-11-23T00:00:00Z", "Cancelled"),
        run("r5", "2026-11-24T00:00:00Z", "Running"),
    ];
    let refs: Vec<&RunbookRun> = runs.iter().collect();
    let mut record = TriggerRecord::default();
    let p = decide_triggers(&rb, &refs, &mut record, ts("2026-11-25T00:00:00Z"));
    assert_eq!(p.prune, ["r1", "r2"]);
    assert_eq!(
        record.last_run.as_ref().map(|l| l.name.as_str()),
        Some("r5")
    );
}

// ---- `decide`, checked ----

/// What a reconcile decides from: the Runbook (with its stored status) and what it observed.
type Input = (Runbook, Observed);

/// The input as a restarted operator rebuilds it: everything read back from the API server.
fn restart((rb, observed): &Input) -> Input {
    (
        json_round_trip(rb),
        Observed {
            missing_policies: observed.missing_policies.clone(),
            runs: observed
                .runs
                .iter()
                .map(|run| Arc::new(json_round_trip(run.as_ref())))
                .collect(),
        },
    )
}

/// The Runbook's safety invariant: at most one run per scheduled time and per run-now token
/// is decided, and never a run for a time in the future; an invalid spec starts, cancels and
/// prunes nothing.
fn invariant((rb, _): &Input, decision: &Decision, now: Timestamp) -> Result<(), String> {
    let touches_runs =
        !decision.create.is_empty() || !decision.cancel.is_empty() || !decision.prune.is_empty();
    if !decision.valid() && touches_runs {
        return Err("an invalid spec acts on runs".into());
    }
    let stored = rb.status.clone().unwrap_or_default();
    let token = rb.annotations().get(RUN_NOW);
    let mut names = BTreeSet::new();
    let mut manual = 0;
    for new in &decision.create {
        let name = new.run.name_any();
        if !names.insert(name.clone()) {
            return Err(format!("run {name} is decided twice"));
        }
        let trigger = new.run.spec.trigger.as_ref();
        match trigger.map(|t| t.type_) {
            Some(TriggerType::Manual) => {
                manual += 1;
                if token.is_none() || stored.last_handled_run_now.as_ref() == token {
                    return Err(format!("run {name} is for a run-now token already handled"));
                }
            }
            Some(TriggerType::Schedule) => {
                let Some(at) = trigger.and_then(|t| t.scheduled_time.as_ref()) else {
                    return Err(format!("scheduled run {name} has no scheduled time"));
                };
                if at.0 > now {
                    return Err(format!("run {name} is for {}, in the future", at.0));
                }
                if stored
                    .last_schedule_time
                    .as_ref()
                    .is_some_and(|last| at.0 <= last.0)
                {
                    return Err(format!("run {name} is for {}, already decided", at.0));
                }
            }
            other => return Err(format!("run {name} has trigger {other:?}")),
        }
    }
    if manual > 1 {
        return Err(format!("{manual} runs for one run-now token"));
    }
    Ok(())
}

/// `decide` for `rb` at `now`, after checking purity, restart and the invariant on it.
fn decided(rb: &Runbook, observed: &Observed, now: Timestamp) -> Decision {
    let checks = Checks {
        decide: &|(rb, observed): &Input, now| decide(rb, observed, now),
        restart: &restart,
        invariant: &|input: &Input, decision: &Decision| invariant(input, decision, now),
    };
    checked(&checks, &(rb.clone(), observed.clone()), now)
}

fn observed(runs: &[RunbookRun]) -> Observed {
    Observed {
        missing_policies: Vec::new(),
        runs: runs.iter().cloned().map(Arc::new).collect(),
    }
}

/// `rb` as it reads back after the controller wrote the status `decision` calls for.
fn stored(rb: &Runbook, decision: &Decision, now: Timestamp) -> Runbook {
    let mut rb = rb.clone();
    rb.status = Some(status(&rb, decision, now));
    json_round_trip(&rb)
}

#[test]
fn decide_checked_on_representative_inputs() {
    let now = ts("2026-11-25T02:00:01Z");
    let active = run("nightly-1", "2026-11-24T01:00:00Z", "Running");
    let last_night = json!({"lastScheduleTime": "2026-11-24T02:00:00Z"});

    // A new run-now token: one run, the token recorded.
    let rb = runbook(json!({"steps": steps()}), json!({RUN_NOW: "t1"}));
    let d = decided(&rb, &observed(&[]), now);
    assert_eq!(d.create.len(), 1);
    assert_eq!(d.create[0].run.name_any(), run_now_name("nightly", "t1"));
    let rb = stored(&rb, &d, now);
    assert_eq!(
        rb.status.as_ref().unwrap().last_handled_run_now.as_deref(),
        Some("t1")
    );
    // Decided again from the stored status: nothing.
    assert!(decided(&rb, &observed(&[]), now).create.is_empty());

    // The schedule is due: one run for that time; Forbid skips it while a run is active,
    // Replace cancels the active one.
    for (policy, cancel, create) in [("Allow", 0, 1), ("Forbid", 0, 0), ("Replace", 1, 1)] {
        let rb = with_status(
            runbook(
                json!({"steps": steps(), "schedule": {"cron": "0 2 * * *", "concurrencyPolicy": policy}}),
                json!({}),
            ),
            last_night.clone(),
        );
        let d = decided(&rb, &observed(std::slice::from_ref(&active)), now);
        assert_eq!(
            (d.cancel.len(), d.create.len()),
            (cancel, create),
            "{policy}"
        );
        assert_eq!(d.wake_at, Some(ts("2026-11-26T02:00:00Z")));
        let rb = stored(&rb, &d, now);
        assert!(
            decided(&rb, &observed(std::slice::from_ref(&active)), now)
                .create
                .is_empty(),
            "{policy}: the same time is not decided twice"
        );
    }

    // Suspended: nothing runs and nothing wakes it.
    let rb = with_status(
        runbook(
            json!({"steps": steps(), "schedule": {"cron": "0 * * * *", "suspend": true}}),
            json!({}),
        ),
        last_night.clone(),
    );
    let d = decided(&rb, &observed(&[]), now);
    assert!(d.create.is_empty() && d.wake_at.is_none());

    // History beyond the limits is pruned, oldest first.
    let rb = runbook(
        json!({"steps": steps(), "historyLimits": {"successful": 1, "failed": 0}}),
        json!({}),
    );
    let runs = [
        run("r1", "2026-11-20T00:00:00Z", "Succeeded"),
        run("r2", "2026-11-21T00:00:00Z", "Failed"),
        run("r3", "2026-11-22T00:00:00Z", "Succeeded"),
    ];
    assert_eq!(decided(&rb, &observed(&runs), now).prune, ["r1", "r2"]);

    // An invalid spec (a missing BackupPolicy, a bad cron) starts nothing, even on run-now.
    let rb = runbook(
        json!({"steps": steps(), "schedule": {"cron": "not a cron"}}),
        json!({RUN_NOW: "t2"}),
    );
    let missing = Observed {
        missing_policies: vec![("spec.steps[0].backup.policy".into(), "nightly".into())],
        runs: observed(&runs).runs,
    };
    let d = decided(&rb, &missing, now);
    assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
    assert!(d.create.is_empty() && d.prune.is_empty() && d.record.is_none());
    let s = status(&rb, &d, now);
    assert_eq!(s.phase, Some(RunbookPhase::Invalid));
    assert_eq!(
        s.last_handled_run_now, None,
        "an invalid spec handles no token"
    );
}

#[test]
fn a_simulated_day_starts_each_scheduled_time_and_each_token_once() {
    // Every half hour, runs take ten minutes, the controller looks every seven minutes, and
    // two run-now tokens arrive. Each decision is checked; the status is stored (JSON round
    // trip) after each, as the API server keeps it.
    let mut rb = runbook(
        json!({"steps": steps(), "schedule": {"cron": "*/30 * * * *"},
            "historyLimits": {"successful": 3}}),
        json!({}),
    );
    let start = ts("2026-11-01T00:00:00Z");
    let mut cluster: BTreeMap<String, RunbookRun> = BTreeMap::new();
    let mut created = Vec::new();
    let mut pruned = 0;
    for step in 1..=(24 * 60 / 7) {
        let now = start + SignedDuration::from_mins(7 * step);
        match step {
            40 => set_token(&mut rb, "first"),
            41 | 90 => set_token(&mut rb, "second"),
            _ => {}
        }
        for run in cluster.values_mut() {
            let started = run.metadata.creation_timestamp.as_ref().unwrap().0;
            if now.duration_since(started) >= SignedDuration::from_mins(10) {
                set_phase(run, "Succeeded");
            }
        }
        let runs: Vec<RunbookRun> = cluster.values().cloned().collect();
        let d = decided(&rb, &observed(&runs), now);
        assert!(d.cancel.is_empty(), "Forbid never cancels");
        for new in &d.create {
            let name = new.run.name_any();
            if cluster.contains_key(&name) {
                continue; // AlreadyExists: that run stands.
            }
            let mut run = new.run.clone();
            run.metadata.creation_timestamp = Some(Time(now));
            set_phase(&mut run, "Running");
            cluster.insert(name.clone(), run);
            created.push(name);
        }
        rb = stored(&rb, &d, now);
        for name in &d.prune {
            pruned += usize::from(cluster.remove(name).is_some());
        }
        let s = rb.status.as_ref().unwrap();
        assert_eq!(s.phase, Some(RunbookPhase::Ready));
        assert!(d.wake_at.is_some_and(|at| at > now));
    }
    let unique: BTreeSet<&String> = created.iter().collect();
    assert_eq!(unique.len(), created.len(), "a run was started twice");
    let scheduled = created.iter().filter(|n| !n.contains("-now-")).count();
    // Every :00 and :30 after creation, up to the last look (23:55): 47 times.
    assert_eq!(scheduled, 47);
    assert_eq!(
        created.iter().filter(|n| n.contains("-now-")).count(),
        2,
        "one run per token"
    );
    assert_eq!(
        created.last(),
        Some(&scheduled_name("nightly", ts("2026-11-01T23:30:00Z")))
    );
    assert_eq!(cluster.len(), 3, "history keeps three succeeded runs");
    assert_eq!(pruned, created.len() - 3);
}

fn with_status(mut rb: Runbook, status: serde_json::Value) -> Runbook {
    rb.status = Some(serde_json::from_value(status).unwrap());
    rb
}

fn set_token(rb: &mut Runbook, token: &str) {
    rb.annotations_mut().insert(RUN_NOW.into(), token.into());
}

/// Sets a run's phase through JSON, as the API server would hand it back.
fn set_phase(run: &mut RunbookRun, phase: &str) {
    run.status = Some(serde_json::from_value(json!({"phase": phase})).unwrap());
}

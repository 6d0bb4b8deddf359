//! What starts runs of a Runbook: the `ops.runbook.dev/run-now` annotation and the schedule;
//! plus the run history (`status.lastRun`, pruning beyond `historyLimits`).
//!
//! Run names are derived from what triggered them (the token, the scheduled minute), so a
//! trigger acted on twice, e.g. after a restart, meets `AlreadyExists` instead of starting a
//! second run.

use crate::well_known::RUN_NOW;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::ResourceExt;

use super::types::{LastRun, Runbook, RunbookStatus};
use crate::runbook_run::RunPhase;
use crate::runbook_run::{RunbookRef, RunbookRun, RunbookRunSpec, Trigger, TriggerType};
use crate::schedule::{Schedule, due_decision};

/// Everything the Runbook controller should do now, decided from the Runbook, its runs and
/// the clock.
#[derive(Debug, Default)]
pub struct Plan {
    /// Runs to create (idempotent by name), each with the Event (reason, message) to publish
    /// when it is really created; an existing run of that name means it was created before.
    pub create: Vec<(RunbookRun, &'static str, String)>,
    /// Active runs to cancel (concurrencyPolicy Replace).
    pub cancel: Vec<String>,
    /// Finished runs beyond the history limits, oldest first.
    pub prune: Vec<String>,
    /// Events to publish: (warning?, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
    /// When to look again for the schedule.
    pub next_check: Option<Timestamp>,
}

/// A stable name for a run-now token.
pub fn run_now_name(runbook: &str, token: &str) -> String {
    bounded(&format!("{runbook}-now-{:08x}", crate::names::fnv32(token)))
}

/// A stable name for a scheduled time: minutes since the epoch, like CronJob's Jobs.
pub fn scheduled_name(runbook: &str, at: Timestamp) -> String {
    bounded(&format!("{runbook}-{}", at.as_second() / 60))
}

fn bounded(name: &str) -> String {
    crate::names::bound(name, crate::names::RUNBOOK_RUN_NAME).into_owned()
}

fn new_run(rb: &Runbook, name: String, trigger: Trigger) -> RunbookRun {
    let mut run = RunbookRun::new(
        &name,
        RunbookRunSpec {
            runbook_ref: RunbookRef {
                name: rb.name_any(),
            },
            params: BTreeMap::new(),
            mode: None,
            trigger: Some(trigger),
        },
    );
    run.metadata.namespace = rb.namespace();
    run.metadata.labels = Some(BTreeMap::from([(
        crate::well_known::RUNBOOK_LABEL.to_owned(),
        rb.name_any(),
    )]));
    // History belongs to the Runbook: deleting it deletes the runs it started.
    run.metadata.owner_references = rb.metadata.uid.clone().map(|uid| {
        vec![OwnerReference {
            api_version: "ops.runbook.dev/v1alpha1".into(),
            kind: "Runbook".into(),
            name: rb.name_any(),
            uid,
            controller: Some(false),
            block_owner_deletion: Some(false),
        }]
    });
    run
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

/// Decides triggers and history for `rb`, given its runs (any order) and `now`; updates
/// `status` (lastHandledRunNow, lastScheduleTime, nextScheduleTime, suspendedSince, lastRun).
pub fn plan(
    rb: &Runbook,
    runs: &[&RunbookRun],
    status: &mut RunbookStatus,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let name = rb.name_any();

    if let Some(token) = rb.annotations().get(RUN_NOW)
        && status.last_handled_run_now.as_deref() != Some(token.as_str())
    {
        let run_name = run_now_name(&name, token);
        plan.create.push((
            new_run(
                rb,
                run_name.clone(),
                Trigger {
                    type_: TriggerType::Manual,
                    scheduled_time: None,
                    source: Some(format!("{RUN_NOW}={token}")),
                },
            ),
            "RunRequested",
            format!("{RUN_NOW}={token}: started run {run_name}"),
        ));
        status.last_handled_run_now = Some(token.clone());
    }

    match &rb.spec.schedule {
        None => {
            status.next_schedule_time = None;
            status.suspended_since = None;
        }
        Some(schedule) => match Schedule::parse(&schedule.cron, schedule.time_zone.as_deref()) {
            Err(_) => status.next_schedule_time = None,
            Ok(parsed) => {
                let suspended = schedule.suspend == Some(true);
                let mut last = status.last_schedule_time.as_ref().map(|t| t.0);
                if suspended {
                    if status.suspended_since.is_none() {
                        status.suspended_since = Some(time(now));
                    }
                } else if status.suspended_since.take().is_some() {
                    // Resumed now (the spec change that resumed it triggered this
                    // reconcile): times that came due while suspended are not a backlog.
                    last = Some(now);
                }
                let created = rb.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
                let deadline = schedule
                    .starting_deadline
                    .as_ref()
                    .and_then(|d| d.parse().ok());
                let due = due_decision(&parsed, last, created, now, deadline, suspended);
                if let Some(at) = due.skipped_past_deadline {
                    status.last_schedule_time = Some(time(at));
                    plan.events.push((true, "MissedSchedule", format!(
                        "the run scheduled for {at} was not started: it is past startingDeadline {}",
                        schedule.starting_deadline.as_ref().map(ToString::to_string).unwrap_or_default()
                    )));
                }
                if let Some(at) = due.run {
                    status.last_schedule_time = Some(time(at));
                    let run_name = scheduled_name(&name, at);
                    // The run for this very time may already exist (a decision repeated
                    // from a stale copy): it is not "another run still going".
                    let active: Vec<&&RunbookRun> = runs
                        .iter()
                        .filter(|r| {
                            r.name_any() != run_name
                                && !r
                                    .status
                                    .as_ref()
                                    .and_then(|s| s.phase)
                                    .is_some_and(RunPhase::is_finished)
                        })
                        .collect();
                    let policy = schedule.concurrency_policy.unwrap_or_default();
                    use super::types::ConcurrencyPolicy::*;
                    if policy == Forbid && !active.is_empty() {
                        plan.events.push((true, "ScheduleSkipped", format!(
                            "the run scheduled for {at} was skipped: concurrencyPolicy Forbid and {} is still running",
                            active[0].name_any()
                        )));
                    } else {
                        if policy == Replace {
                            plan.cancel.extend(active.iter().map(|r| r.name_any()));
                        }
                        plan.create.push((
                            new_run(
                                rb,
                                run_name.clone(),
                                Trigger {
                                    type_: TriggerType::Schedule,
                                    scheduled_time: Some(time(at)),
                                    source: Some(format!("schedule {:?}", schedule.cron)),
                                },
                            ),
                            "Scheduled",
                            format!("started run {run_name} for {at}"),
                        ));
                    }
                }
                status.next_schedule_time = due.next.map(time);
                plan.next_check = due.next;
            }
        },
    }

    // History: newest first by creation time (name breaks ties, stably).
    let mut ordered: Vec<&&RunbookRun> = runs.iter().collect();
    ordered.sort_by(|a, b| {
        let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
        tb.cmp(&ta).then_with(|| b.name_any().cmp(&a.name_any()))
    });
    status.last_run = ordered.first().map(|r| {
        let s = r.status.clone().unwrap_or_default();
        LastRun {
            name: r.name_any(),
            phase: s.phase.map(|p| p.as_str().to_owned()),
            start_time: s.start_time,
            completion_time: s.completion_time,
        }
    });
    let limits = rb.spec.history_limits.clone();
    let keep_ok = limits
        .as_ref()
        .and_then(|l| l.successful)
        .unwrap_or(10)
        .max(0) as usize;
    let keep_failed = limits.as_ref().and_then(|l| l.failed).unwrap_or(10).max(0) as usize;
    let (mut ok, mut bad) = (0usize, 0usize);
    let mut prune = Vec::new();
    for run in &ordered {
        match run.status.as_ref().and_then(|s| s.phase) {
            Some(RunPhase::Succeeded) => {
                ok += 1;
                if ok > keep_ok {
                    prune.push(run.name_any());
                }
            }
            Some(RunPhase::Failed | RunPhase::Cancelled) => {
                bad += 1;
                if bad > keep_failed {
                    prune.push(run.name_any());
                }
            }
            _ => {}
        }
    }
    prune.reverse();
    plan.prune = prune;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let mut status = RunbookStatus::default();
        let p = plan(&rb, &[], &mut status, ts("2026-11-25T10:00:05Z"));
        assert_eq!(p.create.len(), 1);
        assert_eq!(
            p.create[0].0.name_any(),
            run_now_name("nightly", "2026-11-25T10:00")
        );
        assert_eq!(
            status.last_handled_run_now.as_deref(),
            Some("2026-11-25T10:00")
        );
        // The same token again: nothing.
        let again = plan(&rb, &[], &mut status, ts("2026-11-25T10:00:09Z"));
        assert!(again.create.is_empty());
    }

    #[test]
    fn schedule_starts_the_due_run_with_a_deterministic_name() {
        let rb = runbook(
            json!({"steps": steps(), "schedule": {"cron": "0 2 * * *", "timeZone": "Europe/Berlin"}}),
            json!({}),
        );
        let mut status = RunbookStatus {
            last_schedule_time: Some(Time(ts("2026-11-24T01:00:00Z"))),
            ..Default::default()
        };
        let now = ts("2026-11-25T01:00:03Z");
        let p = plan(&rb, &[], &mut status, now);
        assert_eq!(p.create.len(), 1);
        assert_eq!(
            p.create[0].0.name_any(),
            scheduled_name("nightly", ts("2026-11-25T01:00:00Z"))
        );
        let trigger = p.create[0].0.spec.trigger.clone().unwrap();
        assert_eq!(trigger.type_, TriggerType::Schedule);
        assert_eq!(
            status.last_schedule_time,
            Some(Time(ts("2026-11-25T01:00:00Z")))
        );
        assert_eq!(
            status.next_schedule_time,
            Some(Time(ts("2026-11-26T01:00:00Z")))
        );
        // Evaluated again (a restart): the same time is not due again.
        assert!(plan(&rb, &[], &mut status, now).create.is_empty());
    }

    #[test]
    fn forbid_skips_while_a_run_is_active_and_replace_cancels_it() {
        let active = run("nightly-1", "2026-11-24T01:00:00Z", "Running");
        let mut status = RunbookStatus {
            last_schedule_time: Some(Time(ts("2026-11-24T02:00:00Z"))),
            ..Default::default()
        };
        let forbid = runbook(
            json!({"steps": steps(), "schedule": {"cron": "0 2 * * *"}}),
            json!({}),
        );
        let p = plan(&forbid, &[&active], &mut status, ts("2026-11-25T02:00:01Z"));
        assert!(p.create.is_empty());
        assert_eq!(p.events[0].1, "ScheduleSkipped");

        let mut status = RunbookStatus {
            last_schedule_time: Some(Time(ts("2026-11-24T02:00:00Z"))),
            ..Default::default()
        };
        let replace = runbook(
            json!({"steps": steps(), "schedule": {"cron": "0 2 * * *", "concurrencyPolicy": "Replace"}}),
            json!({}),
        );
        let p = plan(
            &replace,
            &[&active],
            &mut status,
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
        let mut status = RunbookStatus {
            last_schedule_time: Some(Time(ts("2026-11-24T02:00:00Z"))),
            ..Default::default()
        };
        let now = ts("2026-11-25T02:00:01Z");
        let own = run(
            &scheduled_name("nightly", ts("2026-11-25T02:00:00Z")),
            "2026-11-25T02:00:00Z",
            "Running",
        );
        let p = plan(&replace, &[&own], &mut status, now);
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
        let mut status = RunbookStatus {
            last_schedule_time: Some(Time(ts("2026-11-25T00:00:00Z"))),
            ..Default::default()
        };
        let p = plan(&suspended, &[], &mut status, ts("2026-11-25T00:30:00Z"));
        assert!(p.create.is_empty() && status.next_schedule_time.is_none());
        let resumed = runbook(
            json!({"steps": steps(), "schedule": {"cron": "0 * * * *"}}),
            json!({}),
        );
        let p = plan(&resumed, &[], &mut status, ts("2026-11-25T05:10:00Z"));
        assert!(
            p.create.is_empty(),
            "hours missed while suspended must not run: {:?}",
            p.create.iter().map(|c| c.0.name_any()).collect::<Vec<_>>()
        );
        assert_eq!(
            status.next_schedule_time,
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
        let mut status = RunbookStatus::default();
        let p = plan(&rb, &refs, &mut status, ts("2026-11-25T00:00:00Z"));
        assert_eq!(p.prune, ["r1", "r2"]);
        assert_eq!(
            status.last_run.as_ref().map(|l| l.name.as_str()),
            Some("r5")
        );
    }
}

use serde_json::{Map, Value, json};

use super::*;
use crate::well_known::{CANCEL, DEFAULT_SLOT_LABEL, REVISION_ANNOTATION};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// `{key: value}`, for keys that live in `well_known`.
fn obj(key: &str, value: Value) -> Value {
    Value::Object(Map::from_iter([(key.to_owned(), value)]))
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-04-20T00:00:00Z"})
}

const NOW: &str = "2026-04-20T12:00:00Z";

fn run(name: &str, runbook: &str, trigger: &str, created: &str, status: Value) -> RunbookRun {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "RunbookRun",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
        "spec": {"runbookRef": {"name": runbook}, "trigger": {"type": trigger}},
        "status": status,
    }))
    .unwrap()
}

fn sleep(name: &str) -> Value {
    json!({"name": name, "sleep": {"duration": "1m"}})
}

/// A run waiting at its approval step `go` since 11:00 (after `prep`).
fn waiting_run(name: &str, since: &str) -> RunbookRun {
    run(
        name,
        "deploy",
        "Manual",
        "2026-04-20T10:00:00Z",
        json!({
            "phase": "WaitingForApproval", "currentStep": "go",
            "startTime": "2026-04-20T10:00:00Z",
            "resolvedSteps": [sleep("prep"), {"name": "go", "approval": {"message": "ship it?"}}],
            "steps": [
                {"name": "prep", "phase": "Succeeded", "attempts": 1,
                 "startTime": "2026-04-20T10:00:00Z", "completionTime": "2026-04-20T10:01:00Z"},
                {"name": "go", "phase": "Running", "attempts": 1, "startTime": since,
                 "message": "ship web:2 to production?"},
            ],
        }),
    )
}

fn failed_run(name: &str, finished: &str) -> RunbookRun {
    run(
        name,
        "restart",
        "Alert",
        "2026-04-18T00:00:00Z",
        json!({
            "phase": "Failed", "startTime": "2026-04-18T00:00:00Z", "completionTime": finished,
            "resolvedSteps": [sleep("kick")],
            "steps": [{"name": "kick", "phase": "Failed", "attempts": 2, "message": "pods never became ready"}],
            "conditions": [cond("Succeeded", "False", "StepFailed", "step kick failed")],
        }),
    )
}

fn window(name: &str, spec: Value) -> MaintenanceWindow {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": name, "namespace": "shop"}, "spec": spec,
    }))
    .unwrap()
}

fn release_with(name: &str, auto: bool, status: Value) -> BlueGreenRelease {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BlueGreenRelease",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"replicas": 2, "services": {"active": "web", "preview": "web-preview"},
                 "strategy": {"autoPromote": auto},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:2"}]}}},
        "status": status,
    }))
    .unwrap()
}

fn backup_policy(name: &str, spec_extra: Value, status: Value) -> BackupPolicy {
    let mut spec = json!({"schedule": {"cron": "0 1 * * *"}, "jobTemplate": {"spec": {}}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": name, "namespace": "shop"}, "spec": spec, "status": status,
    }))
    .unwrap()
}

/// name, action, phase, finally, attempts, offset, width.
type Bar<'a> = (
    &'a str,
    &'a str,
    &'a str,
    bool,
    i32,
    Option<f64>,
    Option<f64>,
);

/// slot, deployment, revision, ready, replicas, selected by.
type SlotLine<'a> = (&'a str, &'a str, Option<&'a str>, i32, i32, Vec<String>);

const ALL: Permissions = Permissions {
    approve: true,
    cancel: true,
    run: true,
    release: true,
    backup: true,
};

#[test]
fn now_lists_what_needs_a_person() {
    let runs = [
        waiting_run("deploy-b", "2026-04-20T11:30:00Z"),
        waiting_run("deploy-a", "2026-04-20T11:00:00Z"),
        failed_run("restart-old", "2026-04-19T11:59:59Z"),
        failed_run("restart-new", "2026-04-20T10:00:00Z"),
        failed_run("restart-mid", "2026-04-19T20:00:00Z"),
        run(
            "ok",
            "deploy",
            "Manual",
            "2026-04-20T09:00:00Z",
            json!({"phase": "Succeeded"}),
        ),
    ];
    let windows = [
        window(
            "nightly",
            json!({"schedule": {"cron": "0 2 * * *", "duration": "1h"}}),
        ),
        window(
            "monthly",
            json!({"schedule": {"cron": "0 2 1 * *", "duration": "1h"}}),
        ),
        window(
            "lunch",
            json!({"schedule": {"cron": "0 11 * * *", "timeZone": "Australia/Sydney", "duration": "1h"}}),
        ),
        window(
            "open",
            json!({"schedule": {"cron": "0 11 * * *", "duration": "2h"}}),
        ),
        window(
            "paused",
            json!({"schedule": {"cron": "0 13 * * *", "duration": "1h"}, "suspend": true}),
        ),
    ];
    let releases = [
        release_with(
            "web",
            true,
            json!({"phase": "Degraded", "conditions": [
                cond("Degraded", "True", "Aborted", "revision r2 was aborted; traffic stays on blue")]}),
        ),
        release_with("api", true, json!({"phase": "Healthy"})),
        release_with(
            "cart",
            true,
            json!({"phase": "Invalid", "conditions": [
                cond("Stalled", "True", "InvalidSpec", "spec.services.active: Service cart does not exist")]}),
        ),
    ];
    let policies = [
        backup_policy(
            "pg",
            json!({"rpo": "24h"}),
            json!({"phase": "Scheduled", "conditions": [
                cond("BackupFresh", "False", "Stale", "newest successful backup finished more than rpo 24h ago")]}),
        ),
        backup_policy(
            "redis",
            json!({"rpo": "24h"}),
            json!({"conditions": [cond("BackupFresh", "True", "Fresh", "fine")]}),
        ),
    ];
    let page = now(&runs, &windows, &releases, &policies, ALL, at(NOW));

    let waiting: Vec<(&str, &str, Option<&str>)> = page
        .waiting
        .iter()
        .map(|w| (w.run.name.as_str(), w.step.as_str(), w.message.as_deref()))
        .collect();
    // Oldest first.
    assert_eq!(
        waiting,
        [
            ("deploy-a", "go", Some("ship web:2 to production?")),
            ("deploy-b", "go", Some("ship web:2 to production?")),
        ]
    );
    assert_eq!(page.waiting[0].since, Some(at("2026-04-20T11:00:00Z")));
    assert_eq!(page.waiting[0].run.phase, "WaitingForApproval");

    // Failed in the last 24 h, newest first; the one a second older than a day is left out.
    let failed: Vec<&str> = page.failed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(failed, ["restart-new", "restart-mid"]);
    assert_eq!(
        page.failed[0].message.as_deref(),
        Some("pods never became ready")
    );
    assert_eq!(page.failed[0].trigger, "Alert");

    // Open now (11:00–13:00 UTC), then 02:00 UTC tomorrow; Sydney's 11:00 is 01:00Z
    // tomorrow (AEST); the monthly one (1 May) is too far, the suspended one not listed.
    let soon: Vec<(&str, Timestamp, &str, &str)> = page
        .windows
        .iter()
        .map(|w| {
            (
                w.name.as_str(),
                w.start,
                w.time_zone.as_str(),
                w.local_start.as_str(),
            )
        })
        .collect();
    assert_eq!(
        soon,
        [
            (
                "open",
                at("2026-04-20T11:00:00Z"),
                "UTC",
                "2026-04-20 11:00"
            ),
            (
                "lunch",
                at("2026-04-21T01:00:00Z"),
                "Australia/Sydney",
                "2026-04-21 11:00"
            ),
            (
                "nightly",
                at("2026-04-21T02:00:00Z"),
                "UTC",
                "2026-04-21 02:00"
            ),
        ]
    );
    assert_eq!(page.windows[1].local_end, "2026-04-21 12:00");

    assert_eq!(
        page.releases,
        [
            Attention {
                name: "cart".into(),
                phase: "Invalid".into(),
                reason: "spec.services.active: Service cart does not exist".into(),
            },
            Attention {
                name: "web".into(),
                phase: "Degraded".into(),
                reason: "revision r2 was aborted; traffic stays on blue".into(),
            },
        ]
    );
    assert_eq!(
        page.backups,
        [Attention {
            name: "pg".into(),
            phase: "Scheduled".into(),
            reason: "newest successful backup finished more than rpo 24h ago".into(),
        }]
    );
    assert_eq!(page.permissions, ALL);
}

#[test]
fn runs_are_filtered_newest_first_with_the_values_each_filter_can_take() {
    let mk = |name: &str, runbook: &str, trigger: &str, created: &str, phase: &str| {
        run(name, runbook, trigger, created, json!({"phase": phase}))
    };
    let all = [
        mk("a", "deploy", "Manual", "2026-04-20T10:00:00Z", "Succeeded"),
        mk("b", "restart", "Alert", "2026-04-20T11:00:00Z", "Failed"),
        mk("c", "deploy", "Schedule", "2026-04-20T09:00:00Z", "Failed"),
        mk("d", "deploy", "Manual", "2026-04-20T11:00:00Z", "Running"),
        run(
            "e",
            "backup",
            "MaintenanceWindow",
            "2026-04-20T08:00:00Z",
            json!({}),
        ),
    ];
    let page = runs(&all, &RunFilter::default());
    let names: Vec<&str> = page.runs.iter().map(|r| r.name.as_str()).collect();
    // Creation time descending; b and d share one, so by name.
    assert_eq!(names, ["b", "d", "a", "c", "e"]);
    assert_eq!(page.total, 5);
    assert_eq!(page.runbooks, ["backup", "deploy", "restart"]);
    assert_eq!(page.phases, ["Failed", "Pending", "Running", "Succeeded"]);
    assert_eq!(
        page.triggers,
        ["Alert", "MaintenanceWindow", "Manual", "Schedule"]
    );

    let filter = RunFilter {
        runbook: Some("deploy".into()),
        phase: Some("Failed".into()),
        trigger: Some(String::new()),
    };
    let page = runs(&all, &filter);
    let names: Vec<&str> = page.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["c"]);
    // Totals and filter values stay those of the whole namespace.
    assert_eq!((page.total, page.runbooks.len()), (5, 3));
    let page = runs(
        &all,
        &RunFilter {
            trigger: Some("Manual".into()),
            ..RunFilter::default()
        },
    );
    let names: Vec<&str> = page.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["d", "a"]);
}

fn finished_run() -> RunbookRun {
    run(
        "deploy-9",
        "deploy",
        "Manual",
        "2026-04-20T09:59:00Z",
        json!({
            "phase": "Failed", "startTime": "2026-04-20T10:00:00Z",
            "completionTime": "2026-04-20T10:10:00Z",
            "resolvedParams": [{"name": "image", "type": "string", "value": "web:2"}],
            "resolvedSteps": [sleep("prep"), sleep("flaky"),
                              {"name": "never", "when": "params.image != ''", "sleep": {"duration": "1s"}}],
            "resolvedFinally": [{"name": "cleanup", "notify": {"message": "done"}}],
            "steps": [
                {"name": "prep", "phase": "Succeeded", "attempts": 1,
                 "startTime": "2026-04-20T10:00:00Z", "completionTime": "2026-04-20T10:01:00Z",
                 "outputs": {"replicas": "3", "attemptStartedAt": "2026-04-20T10:00:00Z"}},
                {"name": "flaky", "phase": "Failed", "attempts": 3, "reason": "Timeout",
                 "message": "boom", "startTime": "2026-04-20T10:01:00Z",
                 "completionTime": "2026-04-20T10:07:00Z"},
                {"name": "cleanup", "phase": "Succeeded", "attempts": 1,
                 "startTime": "2026-04-20T10:09:57Z", "completionTime": "2026-04-20T10:09:57Z"},
            ],
        }),
    )
}

fn event(
    name: &str,
    time: &str,
    kind: &str,
    reason: &str,
    series: Option<i32>,
) -> k8s_openapi::api::events::v1::Event {
    let mut value = json!({
        "metadata": {"name": name, "namespace": "shop"},
        "eventTime": time, "type": kind, "reason": reason, "note": format!("{reason} happened"),
    });
    if let Some(count) = series {
        value["series"] = json!({"count": count, "lastObservedTime": time});
    }
    serde_json::from_value(value).unwrap()
}

#[test]
fn run_detail_draws_each_step_as_a_bar_on_the_runs_time_axis() {
    let run = finished_run();
    let events = [
        event(
            "e1",
            "2026-04-20T10:00:00.000000Z",
            "Normal",
            "Started",
            None,
        ),
        event(
            "e3",
            "2026-04-20T10:07:00.000000Z",
            "Warning",
            "StepFailed",
            Some(3),
        ),
        event(
            "e2",
            "2026-04-20T10:01:00.000000Z",
            "Normal",
            "StepSucceeded",
            None,
        ),
    ];
    let detail = run_detail(&run, &events, ALL, at(NOW));
    assert_eq!(detail.axis_start, Some(at("2026-04-20T10:00:00Z")));
    assert_eq!(detail.axis_end, Some(at("2026-04-20T10:10:00Z")));
    let bars: Vec<Bar> = detail
        .steps
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.action.as_str(),
                s.phase.as_str(),
                s.finally,
                s.attempts,
                s.offset_pct,
                s.width_pct,
            )
        })
        .collect();
    // The axis is 600 s: prep 0–60 s, flaky 60–420 s; cleanup is an instant at 597 s, drawn
    // 0.5 wide; `never` was not reached: Pending, no bar, after the journal.
    assert_eq!(
        bars,
        [
            (
                "prep",
                "sleep",
                "Succeeded",
                false,
                1,
                Some(0.0),
                Some(10.0)
            ),
            ("flaky", "sleep", "Failed", false, 3, Some(10.0), Some(60.0)),
            (
                "cleanup",
                "notify",
                "Succeeded",
                true,
                1,
                Some(99.5),
                Some(0.5)
            ),
            ("never", "sleep", "Pending", false, 0, None, None),
        ]
    );
    assert_eq!(
        detail.steps[3].condition.as_deref(),
        Some("params.image != ''")
    );
    assert_eq!(detail.steps[1].reason.as_deref(), Some("Timeout"));
    // Outputs the operator keeps for itself are not shown.
    assert_eq!(
        detail.steps[0].outputs,
        BTreeMap::from([("replicas".to_owned(), "3".to_owned())])
    );
    assert_eq!(
        detail.params,
        BTreeMap::from([("image".to_owned(), "web:2".to_owned())])
    );
    assert_eq!(detail.run.message.as_deref(), Some("boom"));
    assert_eq!((detail.run.steps_done, detail.run.steps_total), (3, 4));
    let events: Vec<(&str, &str, i32)> = detail
        .events
        .iter()
        .map(|e| (e.reason.as_str(), e.kind.as_str(), e.count))
        .collect();
    assert_eq!(
        events,
        [
            ("StepFailed", "Warning", 3),
            ("StepSucceeded", "Normal", 1),
            ("Started", "Normal", 1)
        ]
    );
    // A finished run: only Run again, when permitted.
    assert_eq!(
        detail.actions,
        RunActions {
            approve: false,
            reject: false,
            cancel: false,
            rerun: true
        }
    );
    let none = run_detail(&run, &[], Permissions::default(), at(NOW));
    assert_eq!(none.actions, RunActions::default());
}

#[test]
fn a_waiting_run_offers_approve_reject_and_cancel_only_when_permitted() {
    let run = waiting_run("deploy-1", "2026-04-20T10:01:00Z");
    let now = at("2026-04-20T10:10:00Z");
    let detail = run_detail(&run, &[], ALL, now);
    assert_eq!(detail.waiting_step.as_deref(), Some("go"));
    assert_eq!(
        detail.actions,
        RunActions {
            approve: true,
            reject: true,
            cancel: true,
            rerun: true
        }
    );
    // The waiting step runs up to now: 60 s to 600 s of a 600 s axis.
    let go = &detail.steps[1];
    assert_eq!(
        (go.phase.as_str(), go.action.as_str()),
        ("WaitingForApproval", "approval")
    );
    assert_eq!((go.offset_pct, go.width_pct), (Some(10.0), Some(90.0)));
    assert_eq!(detail.axis_end, Some(now));

    let viewer = Permissions {
        cancel: true,
        ..Permissions::default()
    };
    let detail = run_detail(&run, &[], viewer, now);
    assert_eq!(
        detail.actions,
        RunActions {
            approve: false,
            reject: false,
            cancel: true,
            rerun: false
        }
    );

    // Already being cancelled: no second Cancel.
    let mut cancelling = run.clone();
    cancelling
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(CANCEL.to_owned(), "2026-04-20T10:05:00.000Z".to_owned());
    assert!(!run_detail(&cancelling, &[], ALL, now).actions.cancel);

    // A run that is running (not waiting) has nothing to approve.
    let mut running = run.clone();
    if let Some(status) = running.status.as_mut() {
        status.phase = Some(RunPhase::Running);
    }
    let detail = run_detail(&running, &[], ALL, now);
    assert_eq!(
        (
            detail.actions.approve,
            detail.actions.reject,
            detail.waiting_step
        ),
        (false, false, None)
    );
    assert_eq!(detail.steps[1].phase, "Running");
}

fn deployment(
    name: &str,
    revision: &str,
    replicas: i32,
    ready: i32,
) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "annotations": obj(REVISION_ANNOTATION, json!(revision))},
        "spec": {"replicas": replicas, "selector": {}, "template": {}},
        "status": {"readyReplicas": ready},
    }))
    .unwrap()
}

fn service(name: &str, slot: &str) -> k8s_openapi::api::core::v1::Service {
    let mut selector = obj(DEFAULT_SLOT_LABEL, json!(slot));
    selector["app"] = json!("web");
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"selector": selector},
    }))
    .unwrap()
}

#[test]
fn release_slots_say_which_services_select_them_and_buttons_follow_the_state() {
    let probe = release_with("web", false, json!({}));
    let current = release_revision(&probe).unwrap();
    let awaiting = release_with(
        "web",
        false,
        json!({"phase": "AwaitingPromotion", "activeSlot": "blue", "previewSlot": "green",
               "activeRevision": "r1", "desiredRevision": current,
               "history": [{"revision": current, "startTime": "2026-04-20T10:00:00Z"},
                           {"revision": "r1", "result": "Promoted", "images": ["web:1"],
                            "completionTime": "2026-04-19T10:00:00Z"}]}),
    );
    let deployments = [
        deployment("web-blue", "r1", 2, 2),
        deployment("web-green", &current, 2, 1),
        deployment("other-blue", "zz", 9, 9),
    ];
    let services = [
        service("web", "blue"),
        service("web-preview", "green"),
        service("other", "green"),
    ];
    let view = release(&awaiting, &deployments, &services, ALL);
    let slots: Vec<SlotLine> = view
        .slots
        .iter()
        .map(|s| {
            (
                s.slot.as_str(),
                s.deployment.as_str(),
                s.revision.as_deref(),
                s.ready,
                s.replicas,
                s.selected_by.clone(),
            )
        })
        .collect();
    assert_eq!(
        slots,
        [
            (
                "blue",
                "web-blue",
                Some("r1"),
                2,
                2,
                vec!["active".to_owned()]
            ),
            (
                "green",
                "web-green",
                Some(current.as_str()),
                1,
                2,
                vec!["preview".to_owned()]
            ),
        ]
    );
    assert_eq!(view.phase, "AwaitingPromotion");
    assert_eq!(view.revision.as_deref(), Some(current.as_str()));
    assert!(view.can_promote && view.can_abort);
    assert_eq!(view.history[0].result, "InProgress");
    assert_eq!(view.history[1].message.as_deref(), Some("web:1"));
    assert_eq!(view.history[1].at, Some(at("2026-04-19T10:00:00Z")));

    // Without patch on releases no button, whatever the state.
    let viewer = release(
        &awaiting,
        &deployments,
        &services,
        Permissions {
            release: false,
            ..ALL
        },
    );
    assert!(!viewer.can_promote && !viewer.can_abort);

    // Both Services on blue, green not created yet; a settled release has nothing to promote.
    let healthy = release_with(
        "web",
        false,
        json!({"phase": "Healthy", "activeSlot": "blue", "activeRevision": current,
               "desiredRevision": current,
               "history": [{"revision": current, "result": "Promoted"}]}),
    );
    let services = [service("web", "blue"), service("web-preview", "blue")];
    let view = release(&healthy, &deployments[..1], &services, ALL);
    assert_eq!(view.slots[0].selected_by, ["active", "preview"]);
    assert!(view.slots[1].selected_by.is_empty());
    assert_eq!(
        (view.slots[1].revision.as_deref(), view.slots[1].replicas),
        (None, 0)
    );
    assert!(!view.can_promote && !view.can_abort);
}

#[test]
fn a_policy_bar_is_the_age_of_the_newest_good_backup_against_the_rpo() {
    let now = at(NOW);
    let status = json!({
        "phase": "Scheduled",
        "lastSuccessfulTime": "2026-04-20T11:00:00Z",
        "lastVerifiedTime": "2026-04-19T00:00:00Z",
        "nextScheduleTime": "2026-04-21T01:00:00Z",
        "conditions": [cond("BackupFresh", "False", "Stale", "too old")],
        "history": [
            {"job": "pg-3", "trigger": "BackupNow", "result": "Succeeded", "stage": "Verify",
             "startTime": "2026-04-20T10:55:00Z", "completionTime": "2026-04-20T11:00:00Z"},
            {"job": "pg-2", "trigger": "Schedule", "result": "Succeeded", "stage": "Done", "verified": false},
            {"job": "pg-1", "trigger": "Schedule", "result": "Succeeded", "stage": "Done", "verified": true},
            {"job": "pg-0", "trigger": "Schedule", "result": "Failed", "stage": "Done"},
        ],
    });
    // With verify, the RPO counts from the newest verified backup: 36 h of 24 h.
    let verified = backup_policy(
        "pg",
        json!({"rpo": "24h", "verify": {"jobTemplate": {"spec": {}}}}),
        status.clone(),
    );
    let view = policy(&verified, ALL, now);
    assert_eq!(view.last_good, Some(at("2026-04-19T00:00:00Z")));
    assert_eq!(
        (view.age_seconds, view.rpo_seconds),
        (Some(36 * 3600), Some(24 * 3600))
    );
    assert_eq!(view.rpo_fraction, Some(1.5));
    assert_eq!(
        (view.rpo.as_deref(), view.fresh),
        (Some("24h"), Some(false))
    );
    assert_eq!(view.next_schedule, Some(at("2026-04-21T01:00:00Z")));
    let results: Vec<(&str, &str, Option<&str>)> = view
        .history
        .iter()
        .map(|b| (b.job.as_str(), b.result.as_str(), b.trigger.as_deref()))
        .collect();
    assert_eq!(
        results,
        [
            ("pg-3", "Verifying", Some("BackupNow")),
            ("pg-2", "VerifyFailed", Some("Schedule")),
            ("pg-1", "Verified", Some("Schedule")),
            ("pg-0", "Failed", Some("Schedule")),
        ]
    );
    assert!(view.can_backup_now);
    assert!(!policy(&verified, Permissions::default(), now).can_backup_now);

    // Without verify, from the newest successful backup: 1 h of 24 h.
    let plain = backup_policy("pg", json!({"rpo": "24h"}), status);
    let view = policy(&plain, ALL, now);
    assert_eq!(view.age_seconds, Some(3600));
    assert_eq!(view.rpo_fraction, Some(1.0 / 24.0));

    // No rpo, no backup yet: nothing to measure.
    let fresh = backup_policy("new", json!({}), json!({}));
    let view = policy(&fresh, ALL, now);
    assert_eq!(
        (
            view.rpo_seconds,
            view.age_seconds,
            view.rpo_fraction,
            view.fresh
        ),
        (None, None, None, None)
    );
    assert_eq!(view.phase, "Unknown");
}

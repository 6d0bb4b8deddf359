use super::*;

fn runbook(params: Value) -> Runbook {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
        "metadata": {"name": "deploy", "namespace": "shop", "uid": "u-1"},
        "spec": {
            "params": params,
            "steps": [{"name": "go", "approval": {"message": "ship {{ params.image }}?"}}]
        }
    }))
    .unwrap()
}

fn image_param() -> Value {
    json!([{"name": "image"}, {"name": "replicas", "default": "2"}])
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn params_split_at_the_first_equals_and_refuse_duplicates_and_bad_pairs() {
    let p = parse_params(&strings(&["image=app:1.5", "flags=a=b", "empty="])).unwrap();
    assert_eq!(p["image"], "app:1.5");
    assert_eq!(p["flags"], "a=b");
    assert_eq!(p["empty"], "");
    assert!(
        parse_params(&strings(&["image"]))
            .unwrap_err()
            .contains("KEY=VALUE")
    );
    assert!(
        parse_params(&strings(&["=x"]))
            .unwrap_err()
            .contains("empty")
    );
    assert!(
        parse_params(&strings(&["a=1", "a=2"]))
            .unwrap_err()
            .contains("more than once")
    );
}

#[test]
fn new_run_is_a_manual_run_with_a_generated_name_params_and_plan_mode() {
    let rb = runbook(image_param());
    let params = BTreeMap::from([("image".to_owned(), "app:1.5".to_owned())]);
    let run = new_run(&rb, params.clone(), true, "kubectl-runbook by alice").unwrap();
    assert_eq!(run.metadata.name, None);
    assert_eq!(run.metadata.generate_name.as_deref(), Some("deploy-"));
    assert_eq!(run.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(run.spec.runbook_ref.name, "deploy");
    assert_eq!(run.spec.params, params);
    assert_eq!(run.spec.mode, Some(RunMode::Plan));
    let trigger = run.spec.trigger.clone().unwrap();
    assert_eq!(trigger.type_, TriggerType::Manual);
    assert_eq!(trigger.source.as_deref(), Some("kubectl-runbook by alice"));
    assert_eq!(run.labels()["ops.runbook.dev/runbook"], "deploy");
    let owner = &run.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Runbook", "u-1", Some(false))
    );
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(json["spec"]["mode"], "Plan");
    assert_eq!(json["spec"]["trigger"]["type"], "Manual");
    // Without --plan the mode is left to its default.
    let run = new_run(
        &rb,
        BTreeMap::from([("image".into(), "x".into())]),
        false,
        "k",
    )
    .unwrap();
    assert_eq!(run.spec.mode, None);
}

#[test]
fn new_run_reports_unknown_and_missing_params_with_what_the_runbook_takes() {
    let rb = runbook(image_param());
    let err = new_run(
        &rb,
        BTreeMap::from([("imgae".to_owned(), "x".to_owned())]),
        false,
        "k",
    )
    .unwrap_err();
    assert!(err.contains("has no parameter \"imgae\""), "{err}");
    assert!(err.contains("-p image=VALUE"), "{err}");
    assert!(
        err.contains("takes: image (required), replicas (default \"2\")"),
        "{err}"
    );
}

#[test]
fn run_name_prefix_is_bounded_and_ends_in_a_dash() {
    assert_eq!(run_name_prefix("nightly"), "nightly-");
    let long = format!("{}-x", "a".repeat(56));
    let prefix = run_name_prefix(&long);
    assert!(prefix.len() <= 58 && prefix.ends_with('-') && !prefix.ends_with("--"));
}

#[test]
fn annotation_patches_touch_one_key_only() {
    assert_eq!(
        annotation_patch(APPROVE, "go"),
        json!({"metadata": {"annotations": {"ops.runbook.dev/approve": "go"}}})
    );
    let t: Timestamp = "2026-11-25T10:03:05.123456Z".parse().unwrap();
    assert_eq!(token(t), "2026-11-25T10:03:05.123Z");
}

fn run_with(status: Value, annotations: Value) -> RunbookRun {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "RunbookRun",
        "metadata": {"name": "deploy-x7k2q", "namespace": "shop", "annotations": annotations},
        "spec": {"runbookRef": {"name": "deploy"}, "params": {"image": "app:1.5"},
                 "trigger": {"type": "Manual", "source": "kubectl-runbook by alice"}},
        "status": status
    }))
    .unwrap()
}

fn journal(phase_: &str, current: &str, entries: Value) -> Value {
    json!({
        "phase": phase_,
        "currentStep": current,
        "startTime": "2026-11-25T10:03:05Z",
        "resolvedSteps": [
            {"name": "backup", "backup": {"policy": "pg"}},
            {"name": "go", "approval": {"message": "ship it?"}},
            {"name": "scale-up", "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": 4}}
        ],
        "resolvedFinally": [{"name": "tell", "notify": {"url": "http://x", "message": "done"}}],
        "steps": entries
    })
}

fn waiting_at_go() -> RunbookRun {
    run_with(
        journal(
            "WaitingForApproval",
            "go",
            json!([
                {"name": "backup", "phase": "Succeeded", "attempts": 1,
                 "startTime": "2026-11-25T10:03:05Z", "completionTime": "2026-11-25T10:03:17Z",
                 "message": "backup pg-now-1a2b3c4d succeeded", "outputs": {"backupJob": "pg-now-1a2b3c4d", "attemptStartedAt": "x"}},
                {"name": "go", "phase": "Running", "attempts": 1, "startTime": "2026-11-25T10:03:18Z",
                 "message": "waiting for approval: ship it?"},
                {"name": "scale-up", "phase": "Pending", "attempts": 0},
                {"name": "tell", "phase": "Pending", "attempts": 0}
            ]),
        ),
        json!({}),
    )
}

#[test]
fn approve_checks_the_step_is_an_approval_the_run_waits_at() {
    let run = waiting_at_go();
    assert_eq!(check_answer(&run, "go", "approve"), Ok(()));
    assert_eq!(check_answer(&run, "go", "reject"), Ok(()));
    let err = check_answer(&run, "nope", "approve").unwrap_err();
    assert!(
        err.contains("no step \"nope\"") && err.contains("approval steps: go"),
        "{err}"
    );
    let err = check_answer(&run, "scale-up", "approve").unwrap_err();
    assert!(err.contains("is a scale step, not an approval"), "{err}");
    let done = run_with(journal("Succeeded", "", json!([])), json!({}));
    assert!(
        check_answer(&done, "go", "reject")
            .unwrap_err()
            .contains("already finished")
    );
    // An answer given before the step waits would not count: refused, with why.
    let unstarted = run_with(json!({"phase": "WaitingForWindow"}), json!({}));
    let err = check_answer(&unstarted, "go", "approve").unwrap_err();
    assert!(
        err.contains("not started") && err.contains("WaitingForApproval"),
        "{err}"
    );
}

#[test]
fn cancel_refuses_finished_and_already_cancelled_runs() {
    assert_eq!(check_cancel(&waiting_at_go()), Ok(()));
    let done = run_with(json!({"phase": "Failed"}), json!({}));
    assert!(
        check_cancel(&done)
            .unwrap_err()
            .contains("already finished (Failed)")
    );
    let cancelling = run_with(json!({"phase": "Running"}), json!({CANCEL: "x"}));
    assert!(
        check_cancel(&cancelling)
            .unwrap_err()
            .contains("already being cancelled")
    );
}

#[test]
fn the_tree_shows_every_step_with_symbol_action_attempts_message_and_outputs() {
    let tree = render_run(&waiting_at_go(), Style::default());
    let expected = "\
RunbookRun shop/deploy-x7k2q   Runbook deploy
Phase:    ⏸ WaitingForApproval
Trigger:  Manual (kubectl-runbook by alice)
Params:   image=app:1.5
Started:  2026-11-25 10:03:05 UTC

Steps
├─ ✔ backup    backup    Succeeded           1 attempt   12s
│    backup pg-now-1a2b3c4d succeeded
│    backupJob: pg-now-1a2b3c4d
├─ ⏸ go        approval  WaitingForApproval  1 attempt   since 10:03:18 UTC
│    waiting for approval: ship it?
└─ ○ scale-up  scale     Pending

Finally
└─ ○ tell      notify    Pending

Waiting for approval of step \"go\": kubectl runbook approve deploy-x7k2q go -n shop
";
    assert_eq!(tree, expected, "\n{tree}");
}

#[test]
fn a_failed_run_says_why_and_ascii_mode_has_no_unicode() {
    let mut status = journal(
        "Failed",
        "",
        json!([
            {"name": "backup", "phase": "Failed", "attempts": 3,
             "startTime": "2026-11-25T10:03:05Z", "completionTime": "2026-11-25T10:05:12Z",
             "message": "BackupFailed: Job pg-now-1 failed\nsee its logs",
             "target": "BackupPolicy/pg", "outputs": {"reason": "BackupFailed", "body": "x".repeat(300)}},
            {"name": "go", "phase": "Skipped", "attempts": 0, "message": "skipped: an earlier step failed"},
            {"name": "scale-up", "phase": "Skipped", "attempts": 0},
            {"name": "tell", "phase": "Succeeded", "attempts": 1,
             "startTime": "2026-11-25T10:05:12Z", "completionTime": "2026-11-25T10:05:13Z"}
        ]),
    );
    status["completionTime"] = json!("2026-11-25T10:05:13Z");
    status["conditions"] = json!([{"type": "Succeeded", "status": "False", "reason": "StepFailed",
        "message": "step \"backup\" failed", "lastTransitionTime": "2026-11-25T10:05:13Z"}]);
    let run = run_with(status, json!({}));
    let tree = render_run(&run, Style { ascii: true });
    assert!(tree.is_ascii(), "{tree}");
    assert!(
        tree.contains("Phase:    x Failed (StepFailed): step \"backup\" failed"),
        "{tree}"
    );
    assert!(
        tree.contains("Started:  2026-11-25 10:03:05 UTC   finished 10:05:13 UTC (took 2m08s)"),
        "{tree}"
    );
    assert!(tree.contains("|- x backup"), "{tree}");
    assert!(tree.contains("3 attempts   2m07s"), "{tree}");
    assert!(
        tree.contains("|    BackupFailed: Job pg-now-1 failed\n|    see its logs\n"),
        "{tree}"
    );
    assert!(tree.contains("|    target: BackupPolicy/pg"), "{tree}");
    assert!(
        tree.contains(&format!("|    body: {}...", "x".repeat(120))),
        "{tree}"
    );
    assert!(tree.contains("`- - scale-up"), "{tree}");
    assert!(tree.contains("Finally\n`- + tell"), "{tree}");
    assert_eq!(exit_status(&run), Some(EXIT_FAILED));
    assert_eq!(exit_status(&waiting_at_go()), None);
}

#[test]
fn a_run_that_has_not_started_says_so() {
    let run = run_with(
        json!({"phase": "WaitingForWindow", "conditions": [{"type": "Succeeded",
        "status": "Unknown", "reason": "WaitingForWindow", "message": "waiting for a MaintenanceWindow labelled w=1 to be Active",
        "lastTransitionTime": "2026-11-25T10:05:13Z"}]}),
        json!({}),
    );
    let tree = render_run(&run, Style::default());
    assert!(tree.contains("⧗ WaitingForWindow"), "{tree}");
    assert!(
        tree.contains("No steps yet: the run waits for a maintenance window"),
        "{tree}"
    );
}

#[test]
fn transitions_name_started_finished_and_waiting_steps() {
    let before = waiting_at_go().status.unwrap();
    let mut after = before.clone();
    after.phase = Some(RunPhase::Running);
    after.steps[1].phase = StepPhase::Succeeded;
    after.steps[1].completion_time = after.steps[1].start_time.clone();
    after.steps[1].message = Some("approved".into());
    after.steps[2].phase = StepPhase::Running;
    let lines = transitions(Some(&before), &after, ("shop", "r"), Style::default());
    assert_eq!(
        lines,
        ["✔ go Succeeded (0s): approved", "▶ scale-up started"]
    );
    let lines = transitions(None, &before, ("shop", "r"), Style { ascii: true });
    assert_eq!(
        lines.last().unwrap(),
        "? run waits for approval of step \"go\": kubectl runbook approve r go -n shop"
    );
}

fn window(name: &str, spec: Value, status: Value) -> MaintenanceWindow {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec, "status": status
    }))
    .unwrap()
}

#[test]
fn the_windows_table_shows_the_next_start_in_the_windows_zone_and_in_utc() {
    let monthly = window(
        "monthly",
        json!({"schedule": {"cron": "0 2 * * SUN#1", "timeZone": "Australia/Sydney", "duration": "2h"}}),
        json!({"phase": "Scheduled", "nextStart": "2026-12-05T15:00:00Z", "nextEnd": "2026-12-05T17:00:00Z",
               "lastWindow": {"start": "2026-11-01T15:00:00Z", "end": "2026-11-01T17:00:00Z", "result": "DriftRespected"}}),
    );
    let once = window(
        "once",
        json!({"start": "2026-11-25T10:00:00Z", "end": "2026-11-25T11:00:00Z"}),
        json!({"phase": "Active", "currentWindow": {"start": "2026-11-25T10:00:00Z", "end": "2026-11-25T11:00:00Z"}}),
    );
    let fresh = window(
        "fresh",
        json!({"start": "2026-11-25T10:00:00Z", "end": "2026-11-25T11:00:00Z"}),
        json!(null),
    );
    let table = render_windows(&[once, monthly, fresh], false);
    let expected = "\
NAME      PHASE       NEXT START                  NEXT START UTC         ENDS                        LAST RESULT
fresh     -           -                           -                      -                           -
monthly   Scheduled   Sun 2026-12-06 02:00 AEDT   2026-12-05 15:00 UTC   Sun 2026-12-06 04:00 AEDT   DriftRespected
once      Active      -                           -                      Wed 2026-11-25 11:00 UTC    -
";
    assert_eq!(table, expected, "\n{table}");
    let all = render_windows(&[window("w", json!({}), json!({}))], true);
    assert!(all.starts_with("NAMESPACE   NAME"), "{all}");
    assert!(all.contains("\nshop        w"), "{all}");
}

#[test]
fn a_window_in_another_season_gets_that_seasons_abbreviation() {
    let zone = TimeZone::get("Australia/Sydney").unwrap();
    let winter: Timestamp = "2026-07-04T16:00:00Z".parse().unwrap();
    assert_eq!(local_time(winter, &zone), "Sun 2026-07-05 02:00 AEST");
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    assert_eq!(
        local_time("2026-03-29T01:00:00Z".parse().unwrap(), &berlin),
        "Sun 2026-03-29 03:00 CEST"
    );
}

fn release(auto: bool, status: Value, annotations: Value) -> BlueGreenRelease {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BlueGreenRelease",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {"replicas": 2, "services": {"active": "web"},
                 "strategy": {"autoPromote": auto},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:2"}]}}},
        "status": status
    }))
    .unwrap()
}

#[test]
fn promote_and_abort_name_the_revision_of_the_current_template() {
    let probe = release(false, json!({}), json!({}));
    let r2 = release_revision(&probe).unwrap();
    let template = probe.spec.template.as_ref().unwrap().decode().unwrap();
    assert_eq!(r2, crate::blue_green::revision(&template));
    let awaiting = release(
        false,
        json!({"phase": "AwaitingPromotion", "desiredRevision": r2, "activeRevision": "r1",
               "history": [{"revision": r2}, {"revision": "r1", "result": "Promoted"}]}),
        json!({}),
    );
    assert_eq!(
        release_request(&awaiting, ReleaseRequest::Promote, None),
        Ok((r2.clone(), vec![]))
    );
    assert_eq!(
        release_request(&awaiting, ReleaseRequest::Abort, Some(&r2)),
        Ok((r2.clone(), vec![]))
    );
    let err = release_request(&awaiting, ReleaseRequest::Promote, Some("0123456789")).unwrap_err();
    assert!(err.contains("not the current revision"), "{err}");
    let settled = release(
        false,
        json!({"phase": "Healthy", "desiredRevision": r2, "activeRevision": r2,
               "history": [{"revision": r2, "result": "Promoted"}]}),
        json!({}),
    );
    assert!(
        release_request(&settled, ReleaseRequest::Promote, None)
            .unwrap_err()
            .contains("already serves")
    );
    assert!(
        release_request(&settled, ReleaseRequest::Abort, None)
            .unwrap_err()
            .contains("to roll back")
    );
    let unseen = release(true, json!({"desiredRevision": "r1"}), json!({}));
    let (_, notes) = release_request(&unseen, ReleaseRequest::Promote, None).unwrap();
    assert!(notes[0].contains("has not taken in"), "{notes:?}");
    assert!(notes[1].contains("autoPromote is on"), "{notes:?}");
}

#[test]
fn retry_needs_an_aborted_revision_and_promote_full_one_not_serving() {
    let r2 = release_revision(&release(false, json!({}), json!({}))).unwrap();
    let aborted = release(
        false,
        json!({"phase": "Degraded", "desiredRevision": r2, "activeRevision": "r1",
               "history": [{"revision": r2, "result": "Aborted"}, {"revision": "r1", "result": "Promoted"}]}),
        json!({}),
    );
    assert_eq!(
        release_request(&aborted, ReleaseRequest::Retry, None),
        Ok((r2.clone(), vec![]))
    );
    assert_eq!(ReleaseRequest::Retry.annotation(), RETRY);
    let open = release(
        false,
        json!({"phase": "Validating", "desiredRevision": r2, "activeRevision": "r1",
               "history": [{"revision": r2}]}),
        json!({}),
    );
    let err = release_request(&open, ReleaseRequest::Retry, None).unwrap_err();
    assert!(err.contains("nothing to retry"), "{err}");
    assert_eq!(
        release_request(&open, ReleaseRequest::PromoteFull, None),
        Ok((r2.clone(), vec![]))
    );
    assert_eq!(ReleaseRequest::PromoteFull.annotation(), PROMOTE_FULL);
    let settled = release(
        false,
        json!({"phase": "Healthy", "desiredRevision": r2, "activeRevision": r2,
               "history": [{"revision": r2, "result": "Promoted"}]}),
        json!({}),
    );
    assert!(
        release_request(&settled, ReleaseRequest::PromoteFull, None)
            .unwrap_err()
            .contains("already serves")
    );
}

#[test]
fn backup_now_notes_say_when_the_backup_starts() {
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "pg", "namespace": "shop"},
        "spec": {"schedule": {"cron": "0 1 * * *", "suspend": true}, "jobTemplate": {"spec": {}}},
        "status": {"history": [{"job": "pg-1", "trigger": "Schedule", "result": "Running", "stage": "Backup"}]}
    }))
    .unwrap();
    let notes = backup_now_notes(&policy);
    assert!(notes[0].contains("pg-1 is still Running"), "{notes:?}");
    assert!(notes[1].contains("suspended"), "{notes:?}");
}

#[test]
fn durations_read_like_people_say_them() {
    let d = SignedDuration::from_secs;
    assert_eq!(human_duration(d(0)), "0s");
    assert_eq!(human_duration(d(45)), "45s");
    assert_eq!(human_duration(d(187)), "3m07s");
    assert_eq!(human_duration(d(7500)), "2h05m");
    assert_eq!(human_duration(d(3 * 86_400 + 4 * 3600)), "3d4h");
    assert_eq!(human_duration(d(-5)), "0s");
}

#[test]
fn not_found_says_what_where_and_how_to_look() {
    assert_eq!(
        not_found("Runbook", "runbooks", "x", "y"),
        "Runbook \"x\" not found in namespace \"y\"; list them with: kubectl get runbooks -n y"
    );
}

#[test]
fn object_refs_read_like_kubectl() {
    assert_eq!(
        object_ref::<RunbookRun>("deploy-x7k2q"),
        "runbookrun.ops.runbook.dev/deploy-x7k2q"
    );
    assert_eq!(
        object_ref::<BackupPolicy>("pg"),
        "backuppolicy.ops.runbook.dev/pg"
    );
    assert_eq!(
        object_ref::<BlueGreenRelease>("shop"),
        "bluegreenrelease.ops.runbook.dev/shop"
    );
}

#[test]
fn the_alerts_table_shows_what_each_alert_did_and_the_cooldown_groups() {
    use crate::runbook::{AlertGroupStatus, AlertsStatus, Runbook, RunbookStatus};
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::Event;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let now: Timestamp = "2026-12-07T10:10:00Z".parse().expect("time");
    let event = |reason: &str, note: &str, minutes: i64, kind: &str| Event {
        reason: Some(reason.into()),
        note: Some(note.into()),
        event_time: Some(MicroTime(now - SignedDuration::from_mins(minutes))),
        regarding: Some(ObjectReference {
            kind: Some(kind.into()),
            name: Some("high-error-rate".into()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    };
    let events = [
        event(
            "AlertCooledDown",
            "alert X started no run: cooldown 15m",
            2,
            "Runbook",
        ),
        event("AlertStartedRun", "alert X started run r-1", 5, "Runbook"),
        event("StepStarted", "step started", 4, "RunbookRun"),
        event("Ready", "valid", 6, "Runbook"),
    ];
    let mut rb: Runbook = serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
        "metadata": {"name": "high-error-rate", "namespace": "shop"},
        "spec": {"steps": [{"name": "s", "sleep": {"duration": "1s"}}]}
    }))
    .expect("a Runbook");
    rb.status = Some(RunbookStatus {
        alerts: Some(AlertsStatus {
            groups: vec![AlertGroupStatus {
                key: "alertname=X".into(),
                last_run: Some("r-1".into()),
                suppressed: Some(1),
                ..AlertGroupStatus::default()
            }],
        }),
        ..RunbookStatus::default()
    });
    let out = super::alerts::render_alerts(&[rb], &events, None, 50, now);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("LAST SEEN"), "{out}");
    assert!(
        lines[1].contains("started") && lines[1].contains("r-1"),
        "oldest first: {out}"
    );
    assert!(lines[2].contains("cooled down"), "{out}");
    assert!(
        !out.contains("step started") && !out.contains("valid"),
        "other Events left out: {out}"
    );
    assert!(
        out.contains("alertname=X") && out.contains("SUPPRESSED"),
        "{out}"
    );
    let only_last = super::alerts::render_alerts(&[], &events, None, 1, now);
    assert!(
        !only_last.contains("r-1") && only_last.contains("cooled down"),
        "{only_last}"
    );
    let none = super::alerts::render_alerts(&[], &events, Some("other"), 50, now);
    assert!(none.starts_with("No alert has reached"), "{none}");
}

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::runbook_run::types::{RunbookRunStatus, StepPhase, StepStatus};
use crate::step::Step;

/// Few enough cases that `cargo test --lib` stays fast; each case runs a whole decide.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A duration as a user may write it: valid, at the bound, far past it, overflowing, or not a
/// duration at all.
fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("100000000h".to_owned()),
        Just("8760h".to_owned()),
        Just("0s".to_owned()),
        Just("99999999999999999999h".to_owned()),
        (
            any::<u64>(),
            prop::sample::select(vec!["h", "m", "s", "ms"])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        "[0-9]{1,20}(h|m|s|ms)([0-9]{1,20}(h|m|s|ms))?",
        ".{0,12}",
    ]
}

/// Text as a user may write it: short, unicode, templated, a path, or long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,20}",
        ".{0,40}",
        Just("x/status".to_owned()),
        Just("{{ params.p }}".to_owned()),
        (1usize..6000).prop_map(|n| "é".repeat(n)),
        (60usize..300).prop_map(|n| "a".repeat(n)),
    ]
}

/// A count: any i32, including negative and huge ones.
fn count() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(-1),
        Just(i64::from(i32::MAX)),
        Just(i64::from(i32::MIN)),
        any::<i32>().prop_map(i64::from)
    ]
}

/// A clock anywhere in jiff's range, often at or next to its ends.
fn clock() -> impl Strategy<Value = Timestamp> {
    let min = Timestamp::MIN.as_second();
    let max = Timestamp::MAX.as_second();
    prop_oneof![
        Just(Timestamp::MIN),
        Just(Timestamp::MAX),
        (0i64..100_000).prop_map(move |d| Timestamp::from_second(max - d).unwrap()),
        (0i64..100_000).prop_map(move |d| Timestamp::from_second(min + d).unwrap()),
        (min..=max).prop_map(|s| Timestamp::from_second(s).unwrap()),
        (1_700_000_000i64..1_900_000_000).prop_map(|s| Timestamp::from_second(s).unwrap()),
    ]
}

fn cron() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*/5 * * * *".to_owned()),
        Just("0 3 * * *".to_owned()),
        Just("0 0 29 2 *".to_owned()),
        ".{0,20}",
    ]
}

/// A step with every duration field and a templated name and URL.
fn step(name: String, timeout: String, backoff: String, sleep: String, limit: i64) -> Value {
    json!({"name": name, "timeout": timeout,
        "retries": {"limit": limit, "backoff": backoff},
        "sleep": {"duration": sleep}})
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (duration(), duration(), duration(), count(), prop::sample::select(vec!["sleep", "http", "patch", "pods"])).prop_map(
            |(timeout, backoff, sleep, limit, kind)| {
                let mut value = step("s".into(), timeout, backoff, sleep, limit);
                let map = value.as_object_mut().unwrap();
                match kind {
                    "http" => {
                        map.remove("sleep");
                        map.insert("http".into(), json!({"url": "{{ params.p }}"}));
                    }
                    "patch" => {
                        map.remove("sleep");
                        map.insert("patch".into(), json!({"target": {"apiVersion": "v1", "kind": "ConfigMap", "name": "{{ params.p }}"}, "type": "merge", "patch": {}}));
                    }
                    "pods" => {
                        map.remove("sleep");
                        map.insert("deletePods".into(), json!({"selector": {"matchLabels": {"app": "{{ params.p }}"}}}));
                    }
                    _ => {}
                }
                serde_json::from_value::<Step>(value).expect("step shape")
            },
        ),
        1..4,
    )
    .prop_map(|mut steps| {
        for (i, step) in steps.iter_mut().enumerate() {
            step.name = format!("s{i}");
        }
        steps
    })
}

/// A journal entry as a (possibly hostile) status may hold it.
fn entry() -> impl Strategy<Value = StepStatus> {
    (
        count(),
        clock(),
        clock(),
        prop::sample::select(vec![
            StepPhase::Pending,
            StepPhase::Running,
            StepPhase::Failed,
        ]),
    )
        .prop_map(|(attempts, started, retry, phase)| StepStatus {
            name: String::new(),
            phase,
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            start_time: Some(Time(started)),
            completion_time: None,
            message: None,
            reason: None,
            condition: None,
            target: None,
            outputs: BTreeMap::from([
                ("attemptStartedAt".to_owned(), started.to_string()),
                ("retryAt".to_owned(), retry.to_string()),
            ]),
        })
}

fn runbook_run_decide_and_status_case(steps: Vec<Step>, entries: Vec<StepStatus>, now: Timestamp) {
    let journal: Vec<StepStatus> = steps
        .iter()
        .zip(entries)
        .map(|(step, mut entry)| {
            entry.name = step.name.clone();
            entry
        })
        .collect();
    let mut status = RunbookRunStatus {
        resolved_steps: steps.clone(),
        steps: journal,
        ..RunbookRunStatus::default()
    };
    let _ = crate::runbook_run::decide::decide(&status, now);
    for (step, entry) in steps.iter().zip(status.steps.iter_mut()) {
        let _ = crate::runbook_run::status::timed_out(step, &mut entry.clone(), now);
        let failed = crate::runbook_run::act::Act::Failed {
            reason: "Test",
            message: "é".repeat(3000),
            retryable: true,
        };
        let _ = crate::runbook_run::status::acted(step, entry, failed, None, now);
    }
    let _ = status.bounded();
}

fn the_resolver_case(
    steps: Vec<Step>,
    value: String,
    default: Option<String>,
    extra: BTreeMap<String, String>,
) {
    let spec: crate::runbook::RunbookSpec = serde_json::from_value(json!({
        "params": [{"name": "p", "default": default}],
        "steps": steps,
    }))
    .expect("runbook shape");
    let mut overrides = extra;
    overrides.insert("p".into(), value);
    if let Ok(resolved) = crate::runbook_run::resolve::resolve("rb", &spec, &overrides) {
        // What resolves is valid by the schema's own rules.
        for step in resolved.steps {
            assert!(crate::step::validate_resolved(&step, "s").is_empty());
        }
    }
}

fn runbook_decide_and_status_case(
    cron: String,
    deadline: String,
    successful: i64,
    failed: i64,
    name: String,
    now: Timestamp,
) {
    let rb: crate::runbook::Runbook = serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
        "metadata": {"name": name, "namespace": "shop", "uid": "u1",
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "annotations": {"ops.runbook.dev/run-now": "t"}},
        "spec": {"steps": [{"name": "nap", "sleep": {"duration": "1s"}}],
            "schedule": {"cron": cron, "startingDeadline": deadline},
            "historyLimits": {"successful": successful, "failed": failed}},
        "status": {"lastScheduleTime": "2026-11-01T00:00:00Z"}
    }))
    .expect("runbook shape");
    let observed = crate::runbook::observe::Observed {
        missing_policies: Vec::new(),
        runs: Vec::new(),
    };
    let decision = crate::runbook::decide::decide(&rb, &observed, now);
    let _ = crate::runbook::status::status(&rb, &decision, now);
}

fn maintenance_window_decide_case(
    cron: String,
    length: String,
    lead: String,
    within: String,
    now: Timestamp,
    last: Option<Timestamp>,
) {
    let spec: crate::maintenance_window::MaintenanceWindowSpec = serde_json::from_value(json!({
        "schedule": {"cron": cron, "timeZone": "Europe/Berlin", "duration": length},
        "beforeStart": {"runbook": "backup", "leadTime": lead},
        "afterEnd": {"runbook": "verify"},
        "missedStart": {"policy": "StartIfWithin", "within": within},
    }))
    .expect("window shape");
    let state = crate::maintenance_window::decide::WindowState {
        phase: crate::maintenance_window::WindowPhase::Scheduled,
        activated: None,
        has_saved: false,
        last_handled: last,
        runs: BTreeMap::new(),
        created: last,
        deleting: false,
        watching_since: last,
    };
    let _ = crate::maintenance_window::decide::decide("mw", &spec, &state, now);
}

fn backup_policy_decide_and_status_case(
    cron: String,
    rpo: String,
    deadline: String,
    keep: i64,
    now: Timestamp,
    created: Timestamp,
) {
    let spec: crate::backup_policy::BackupPolicySpec = serde_json::from_value(json!({
            "schedule": {"cron": cron, "startingDeadline": deadline},
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b"}], "restartPolicy": "Never"}}}},
            "rpo": rpo,
            "retention": {"keepLast": keep},
        }))
        .expect("policy shape");
    let schedule = crate::schedule::Schedule::parse(&spec.schedule.cron, None).ok();
    let stored = crate::backup_policy::BackupPolicyStatus::default();
    let decision = crate::backup_policy::decide::decide(&crate::backup_policy::decide::Inputs {
        policy: "db",
        created,
        spec: &spec,
        schedule: schedule.as_ref(),
        status: &stored,
        jobs: &[],
        backup_now: Some("now"),
        rejected: &[],
        restores: &[],
        now,
    });
    let _ = crate::backup_policy::status::status(crate::backup_policy::status::StatusInputs {
        stored: &stored,
        decided: decision.status.clone(),
        reported: &decision.conditions,
        running: None,
        problems: &[],
        generation: Some(1),
        now: &Time(now),
    });
}

fn blue_green_decide_case(
    delay: String,
    abort_delay: String,
    deadline: String,
    replicas: i64,
    standby: i64,
    now: Timestamp,
    switched: Option<Timestamp>,
) {
    let release: crate::blue_green::BlueGreenRelease = serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BlueGreenRelease",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u"},
            "spec": {
                "replicas": replicas,
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "w:1"}]}},
                "services": {"active": "web"},
                "strategy": {"scaleDownDelay": delay, "abortScaleDownDelay": abort_delay,
                    "progressDeadline": deadline, "standbyReplicas": standby}
            },
            "status": {"activeSlot": "blue", "activeRevision": "r0", "desiredRevision": "r1",
                "switchedAt": switched.map(|t| t.to_string())}
        }))
        .expect("release shape");
    let state = crate::blue_green::observe::ReleaseState::observe(&release, "r1");
    let cluster = crate::blue_green::observe::Cluster::default();
    let _ = crate::blue_green::decide::decide(&release.spec, &state, &cluster, now);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn runbook_run_decide_and_status_never_panic(
        steps in steps(),
        entries in prop::collection::vec(entry(), 4),
        now in clock(),
    ) {
        runbook_run_decide_and_status_case(steps, entries, now);
    }

    #[test]
    fn the_resolver_never_panics_and_checks_what_it_resolved(
        steps in steps(),
        value in text(),
        default in prop::option::of(text()),
        extra in prop::collection::btree_map("[a-z]{1,3}", text(), 0..3),
    ) {
        the_resolver_case(steps, value, default, extra);
    }

    #[test]
    fn runbook_decide_and_status_never_panic(
        cron in cron(),
        deadline in duration(),
        successful in count(),
        failed in count(),
        name in text(),
        now in clock(),
    ) {
        runbook_decide_and_status_case(cron, deadline, successful, failed, name, now);
    }

    #[test]
    fn maintenance_window_decide_never_panics(
        cron in cron(),
        length in duration(),
        lead in duration(),
        within in duration(),
        now in clock(),
        last in prop::option::of(clock()),
    ) {
        maintenance_window_decide_case(cron, length, lead, within, now, last);
    }

    #[test]
    fn backup_policy_decide_and_status_never_panic(
        cron in cron(),
        rpo in duration(),
        deadline in duration(),
        keep in count(),
        now in clock(),
        created in clock(),
    ) {
        backup_policy_decide_and_status_case(cron, rpo, deadline, keep, now, created);
    }

    #[test]
    fn blue_green_decide_never_panics(
        delay in duration(),
        abort_delay in duration(),
        deadline in duration(),
        replicas in count(),
        standby in count(),
        now in clock(),
        switched in prop::option::of(clock()),
    ) {
        blue_green_decide_case(delay, abort_delay, deadline, replicas, standby, now, switched);
    }
}

/// The reproduction of the defect the property tests guard against, case by case: every
/// kind fed durations of `100000000h` (refused by parsing) and of exactly the bound `8760h`
/// (accepted, and added to clocks one second from the ends of jiff's range, so only
/// saturating arithmetic survives), with the clock at and next to both ends.
#[test]
fn every_kind_at_the_bound_and_the_ends_of_time() {
    let second = jiff::SignedDuration::from_secs(1);
    let clocks = [
        Timestamp::MIN,
        crate::time::add(Timestamp::MIN, second),
        crate::time::sub(Timestamp::MAX, second),
        Timestamp::MAX,
    ];
    for length in ["100000000h", "8760h"] {
        let d = || length.to_owned();
        for now in clocks {
            for start in clocks {
                let step: Step = serde_json::from_value(step("s0".into(), d(), d(), d(), 10))
                    .expect("step shape");
                let mut entry = StepStatus {
                    name: "s0".into(),
                    phase: StepPhase::Running,
                    attempts: 11,
                    start_time: Some(Time(start)),
                    completion_time: None,
                    message: None,
                    reason: None,
                    condition: None,
                    target: None,
                    outputs: BTreeMap::from([
                        ("attemptStartedAt".to_owned(), start.to_string()),
                        ("retryAt".to_owned(), start.to_string()),
                    ]),
                };
                runbook_run_decide_and_status_case(vec![step.clone()], vec![entry.clone()], now);
                entry.attempts = 1;
                runbook_run_decide_and_status_case(vec![step], vec![entry], now);
                maintenance_window_decide_case(
                    "*/5 * * * *".into(),
                    d(),
                    d(),
                    d(),
                    now,
                    Some(start),
                );
                backup_policy_decide_and_status_case("*/5 * * * *".into(), d(), d(), 3, now, start);
                blue_green_decide_case(d(), d(), d(), 3, 1, now, Some(start));
            }
            runbook_decide_and_status_case("*/5 * * * *".into(), d(), 3, 3, "nightly".into(), now);
        }
    }
}

/// An alert as anyone with the receiver's token could send it, against a Runbook whose alert
/// trigger a tenant wrote: matching, rendering, the cooldown arithmetic and the record.
fn alerts_decide_case(
    labels: BTreeMap<String, String>,
    (pattern, cooldown, template): (String, String, String),
    resolved: bool,
    starts_at: String,
    now: Timestamp,
    last_run: Option<Timestamp>,
) {
    let rb: crate::runbook::Runbook = serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
        "metadata": {"name": "rb", "namespace": "shop", "uid": "u", "generation": 1},
        "spec": {
            "steps": [{"name": "s", "sleep": {"duration": "1s"}}],
            "triggers": {"alerts": [{"match": {"alertname": "A"}, "matchRegex": {"instance": pattern},
                "params": {"p": template}, "cooldown": cooldown, "onResolved": "Run"}]}
        },
        "status": {"alerts": {"groups": [{"key": "alertname=A,instance=",
            "lastRun": "rb-alert-1", "lastRunTime": last_run.map(|t| t.to_string()),
            "firings": ["x@y"]}]}}
    }))
    .expect("runbook shape");
    let mut labels = labels;
    labels.insert("alertname".into(), "A".into());
    labels.insert("namespace".into(), "shop".into());
    let alert = crate::alerts::payload::Alert {
        status: if resolved { "resolved" } else { "firing" }.into(),
        labels,
        starts_at,
        fingerprint: "f".into(),
        ..Default::default()
    };
    let _ = crate::runbook::decide::problems(&rb, &Default::default());
    let trigger = &rb.spec.triggers.as_ref().expect("triggers").alerts[0];
    let _ = crate::alerts::decide::matching_trigger(&rb, &alert);
    let decision = crate::alerts::decide::decide(&rb, trigger, &alert, now);
    if let crate::alerts::decide::Outcome::Start(run) = decision.outcome {
        assert!(
            run.spec.params["p"].len() <= 4096 + 32,
            "params stay bounded"
        );
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn alert_decisions_never_panic(
        labels in prop::collection::btree_map(text(), text(), 0..8),
        pattern in prop_oneof![Just("(".to_owned()), Just("a{99999}".to_owned()), text()],
        cooldown in duration(),
        template in prop_oneof![Just("{{ alert.labels.instance }}{{ alert.annotations.x }}{{".to_owned()), text()],
        resolved in any::<bool>(),
        starts_at in prop_oneof![Just("2026-12-07T10:00:00Z".to_owned()), text()],
        now in clock(),
        last_run in prop::option::of(clock()),
    ) {
        alerts_decide_case(labels, (pattern, cooldown, template), resolved, starts_at, now, last_run);
    }
}

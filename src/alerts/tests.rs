use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::ResourceExt;

use super::decide::{self, MAX_FIRINGS, MAX_GROUPS, Outcome};
use super::payload::{Alert, Notification, PayloadError};
use crate::duration::Duration;
use crate::runbook::{
    AlertTrigger, AlertsStatus, OnResolved, Runbook, RunbookPhase, RunbookStatus, RunbookTriggers,
};
use crate::runbook_run::TriggerType;

fn runbook(trigger: AlertTrigger) -> Runbook {
    let mut rb: Runbook = serde_json::from_value(serde_json::json!({
        "apiVersion": "ops.runbook.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": "high-error-rate", "namespace": "paralegal", "uid": "u-1", "generation": 1},
        "spec": {"steps": [{"name": "wait", "sleep": {"duration": "1s"}}]}
    }))
    .expect("a Runbook");
    rb.spec.triggers = Some(RunbookTriggers {
        alerts: vec![trigger],
    });
    rb
}

fn trigger() -> AlertTrigger {
    AlertTrigger {
        match_labels: BTreeMap::from([
            ("alertname".into(), "HighErrorRate".into()),
            ("service".into(), "api".into()),
        ]),
        params: BTreeMap::from([
            ("replicas".into(), "4".into()),
            ("statute".into(), "{{ alert.labels.statute }}".into()),
            (
                "summary".into(),
                "{{ alert.annotations.summary }} ({{ alert.status }}) {{ params.x }}".into(),
            ),
        ]),
        ..AlertTrigger::default()
    }
}

fn alert(status: &str, starts_at: &str) -> Alert {
    Alert {
        status: status.into(),
        labels: BTreeMap::from([
            ("alertname".into(), "HighErrorRate".into()),
            ("service".into(), "api".into()),
            ("namespace".into(), "paralegal".into()),
            ("statute".into(), "17 USC 107".into()),
        ]),
        annotations: BTreeMap::from([("summary".into(), "5xx above 5%".into())]),
        starts_at: starts_at.into(),
        fingerprint: "abc123".into(),
        ..Alert::default()
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("a timestamp")
}

fn with_record(mut rb: Runbook, record: Option<AlertsStatus>) -> Runbook {
    rb.status = Some(RunbookStatus {
        alerts: record,
        ..RunbookStatus::default()
    });
    rb
}

#[test]
fn a_firing_that_matches_starts_a_named_run_with_rendered_params_and_records_it_first() {
    let rb = runbook(trigger());
    let a = alert("firing", "2026-12-07T10:00:00Z");
    let (_, t) = decide::matching_trigger(&rb, &a).expect("matches");
    let d = decide::decide(&rb, t, &a, at("2026-12-07T10:01:00Z"));
    let Outcome::Start(run) = d.outcome else {
        panic!("expected a start, got {:?}", d.outcome)
    };
    assert_eq!(run.name_any(), decide::run_name(&rb, &a, false));
    assert!(run.name_any().starts_with("high-error-rate-alert-"));
    assert_eq!(run.spec.params["statute"], "17 USC 107");
    assert_eq!(run.spec.params["replicas"], "4");
    // Other expressions are left for the run's own templating.
    assert_eq!(
        run.spec.params["summary"],
        "5xx above 5% (firing) {{ params.x }}"
    );
    let trigger = run.spec.trigger.expect("a trigger");
    assert_eq!(trigger.type_, TriggerType::Alert);
    assert_eq!(trigger.source.as_deref(), Some("HighErrorRate"));
    let record = trigger.alert.expect("the alert");
    assert_eq!(record.fingerprint, "abc123");
    assert_eq!(record.labels["statute"], "17 USC 107");
    let group = &d.record.expect("recorded before the create").groups[0];
    assert_eq!(group.key, "alertname=HighErrorRate,service=api");
    assert_eq!(
        group.last_run.as_deref(),
        Some(run.metadata.name.as_deref().unwrap_or_default())
    );
    assert_eq!(
        group.firings,
        vec!["abc123@2026-12-07T10:00:00Z".to_owned()]
    );
}

#[test]
fn the_same_firing_names_the_same_run_and_a_new_firing_another() {
    let rb = runbook(trigger());
    let first = alert("firing", "2026-12-07T10:00:00Z");
    assert_eq!(
        decide::run_name(&rb, &first, false),
        decide::run_name(&rb, &first.clone(), false)
    );
    let again = alert("firing", "2026-12-07T11:00:00Z");
    assert_ne!(
        decide::run_name(&rb, &first, false),
        decide::run_name(&rb, &again, false)
    );
    let mut other = rb.clone();
    other.metadata.uid = Some("u-2".into());
    assert_ne!(
        decide::run_name(&rb, &first, false),
        decide::run_name(&other, &first, false)
    );
}

#[test]
fn a_recorded_firing_creates_its_run_again_only_while_it_is_the_groups_latest() {
    let rb = runbook(trigger());
    let a = alert("firing", "2026-12-07T10:00:00Z");
    let t = trigger();
    let now = at("2026-12-07T10:01:00Z");
    let recorded = decide::decide(&rb, &t, &a, now).record;
    let rb = with_record(rb, recorded.clone());
    // Stopped between the record and the create: the retry creates (AlreadyExists is fine).
    let d = decide::decide(&rb, &t, &a, now);
    assert!(matches!(d.outcome, Outcome::Start(_)), "{:?}", d.outcome);
    assert!(d.record.is_none(), "nothing new to record");
    // A later firing of the group started since: the first is a duplicate, even if its run
    // was pruned.
    let later = alert("firing", "2026-12-07T12:00:00Z");
    let recorded = decide::decide(&rb, &t, &later, at("2026-12-07T12:00:01Z")).record;
    let rb = with_record(rb, recorded);
    let d = decide::decide(&rb, &t, &a, at("2026-12-07T12:00:02Z"));
    assert!(
        matches!(d.outcome, Outcome::Deduplicated { .. }),
        "{:?}",
        d.outcome
    );
    assert!(d.record.is_none());
}

#[test]
fn the_cooldown_suppresses_other_firings_of_the_group_counts_them_once_and_ends() {
    let mut t = trigger();
    t.cooldown = Some(Duration("15m".into()));
    let rb = runbook(t.clone());
    let first = alert("firing", "2026-12-07T10:00:00Z");
    let rb = with_record(
        rb.clone(),
        decide::decide(&rb, &t, &first, at("2026-12-07T10:00:00Z")).record,
    );
    let mut second = alert("firing", "2026-12-07T10:05:00Z");
    second.fingerprint = "def456".into();
    let d = decide::decide(&rb, &t, &second, at("2026-12-07T10:05:00Z"));
    let Outcome::CooledDown { reason } = &d.outcome else {
        panic!("expected a suppression, got {:?}", d.outcome)
    };
    assert!(reason.contains("cooldown 15m"), "{reason}");
    assert!(reason.contains("high-error-rate-alert-"), "{reason}");
    let rb = with_record(rb, d.record.clone());
    let group = &d.record.expect("counted").groups[0];
    assert_eq!(group.suppressed, Some(1));
    assert_eq!(
        group.last_suppression.as_ref().map(|s| s.firing.as_str()),
        Some("def456@2026-12-07T10:05:00Z")
    );
    // The same suppressed firing sent again is not counted again (no write).
    let d = decide::decide(&rb, &t, &second, at("2026-12-07T10:06:00Z"));
    assert!(matches!(d.outcome, Outcome::CooledDown { .. }));
    assert!(d.record.is_none());
    // After the cooldown it starts a run.
    let d = decide::decide(&rb, &t, &second, at("2026-12-07T10:15:00Z"));
    assert!(matches!(d.outcome, Outcome::Start(_)), "{:?}", d.outcome);
    // Another group is not held by this one's cooldown.
    let mut web = alert("firing", "2026-12-07T10:05:00Z");
    web.labels.insert("service".into(), "web".into());
    let mut t_any = t.clone();
    t_any.match_labels.remove("service");
    t_any.group_by = vec!["service".into()];
    let rb_any = with_record(
        runbook(t_any.clone()),
        rb.status.as_ref().and_then(|s| s.alerts.clone()),
    );
    let d = decide::decide(&rb_any, &t_any, &web, at("2026-12-07T10:05:00Z"));
    assert!(matches!(d.outcome, Outcome::Start(_)), "{:?}", d.outcome);
}

#[test]
fn suppressed_firings_sent_again_interleaved_are_counted_once() {
    let mut t = trigger();
    t.cooldown = Some(Duration("15m".into()));
    let rb = runbook(t.clone());
    let first = alert("firing", "2026-12-07T10:00:00Z");
    let mut rb = with_record(
        rb.clone(),
        decide::decide(&rb, &t, &first, at("2026-12-07T10:00:00Z")).record,
    );
    let firings: Vec<Alert> = ["b", "c", "d"]
        .iter()
        .map(|fp| {
            let mut a = alert("firing", "2026-12-07T10:01:00Z");
            a.fingerprint = (*fp).into();
            a
        })
        .collect();
    // Alertmanager repeats each firing; repeats of different firings interleave.
    let mut writes = 0;
    for _ in 0..3 {
        for a in &firings {
            let d = decide::decide(&rb, &t, a, at("2026-12-07T10:02:00Z"));
            assert!(
                matches!(d.outcome, Outcome::CooledDown { .. }),
                "{:?}",
                d.outcome
            );
            if let Some(record) = d.record {
                writes += 1;
                rb = with_record(rb, Some(record));
            }
        }
    }
    let group = &rb
        .status
        .as_ref()
        .and_then(|s| s.alerts.clone())
        .expect("a record")
        .groups[0];
    assert_eq!(
        group.suppressed,
        Some(3),
        "each suppressed firing counts once"
    );
    assert_eq!(writes, 3, "a repeat of a suppressed firing writes nothing");
}

#[test]
fn only_alerts_of_the_runbooks_namespace_or_one_it_lists_match() {
    let rb = runbook(trigger());
    let mut a = alert("firing", "2026-12-07T10:00:00Z");
    a.labels.insert("namespace".into(), "other-tenant".into());
    assert!(decide::matching_trigger(&rb, &a).is_none());
    a.labels.remove("namespace");
    assert!(
        decide::matching_trigger(&rb, &a).is_none(),
        "no namespace label: no run"
    );
    let mut t = trigger();
    t.namespaces = vec!["other-tenant".into()];
    let rb = runbook(t);
    a.labels.insert("namespace".into(), "other-tenant".into());
    assert!(decide::matching_trigger(&rb, &a).is_some());
}

#[test]
fn match_needs_every_label_and_match_regex_the_whole_value() {
    let mut t = trigger();
    t.match_regex = BTreeMap::from([("instance".into(), "db-[0-9]+".into())]);
    let rb = runbook(t);
    let mut a = alert("firing", "2026-12-07T10:00:00Z");
    assert!(
        decide::matching_trigger(&rb, &a).is_none(),
        "no instance label"
    );
    a.labels.insert("instance".into(), "db-12".into());
    assert!(decide::matching_trigger(&rb, &a).is_some());
    a.labels.insert("instance".into(), "xdb-12".into());
    assert!(decide::matching_trigger(&rb, &a).is_none(), "anchored");
    a.labels.insert("instance".into(), "db-12".into());
    a.labels.insert("service".into(), "web".into());
    assert!(
        decide::matching_trigger(&rb, &a).is_none(),
        "match label differs"
    );
    let mut bad = trigger();
    bad.match_regex = BTreeMap::from([("instance".into(), "(".into())]);
    let rb = runbook(bad);
    assert!(decide::matching_trigger(&rb, &a).is_none());
    let problems = crate::runbook::decide::problems(&rb, &Default::default());
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.triggers.alerts[0].matchRegex.instance"),
        "{problems:?}"
    );
}

#[test]
fn resolved_alerts_do_what_on_resolved_says() {
    let a = alert("resolved", "2026-12-07T10:00:00Z");
    let now = at("2026-12-07T10:30:00Z");
    let mut t = trigger();
    let d = decide::decide(&runbook(t.clone()), &t, &a, now);
    assert!(matches!(d.outcome, Outcome::Ignored));
    t.on_resolved = Some(OnResolved::CancelWaiting);
    let rb = runbook(t.clone());
    let d = decide::decide(&rb, &t, &a, now);
    let Outcome::CancelWaiting { run } = d.outcome else {
        panic!("expected a cancel")
    };
    assert_eq!(run, decide::run_name(&rb, &a, false));
    t.on_resolved = Some(OnResolved::Run);
    let rb = runbook(t.clone());
    let d = decide::decide(&rb, &t, &a, now);
    let Outcome::Start(run) = d.outcome else {
        panic!("expected a start")
    };
    assert!(run.name_any().starts_with("high-error-rate-resolved-"));
    assert_eq!(
        run.spec.params["summary"],
        "5xx above 5% (resolved) {{ params.x }}"
    );
    assert!(d.record.is_none());
}

#[test]
fn an_invalid_runbook_starts_nothing() {
    let t = trigger();
    let mut rb = runbook(t.clone());
    rb.status = Some(RunbookStatus {
        phase: Some(RunbookPhase::Invalid),
        observed_generation: Some(1),
        ..RunbookStatus::default()
    });
    let d = decide::decide(
        &rb,
        &t,
        &alert("firing", "2026-12-07T10:00:00Z"),
        at("2026-12-07T10:00:00Z"),
    );
    assert!(matches!(d.outcome, Outcome::Invalid));
    assert!(d.record.is_none());
}

#[test]
fn the_record_stays_bounded() {
    let mut record = AlertsStatus::default();
    let now = at("2026-12-07T10:00:00Z");
    for i in 0..(MAX_GROUPS + 10) {
        record = decide::claim(&record, &format!("g{i}"), "run", "f", now);
    }
    assert_eq!(record.groups.len(), MAX_GROUPS);
    assert_eq!(
        record.groups[0].key, "g10",
        "the least recently used went first"
    );
    for i in 0..(MAX_FIRINGS + 5) {
        record = decide::claim(&record, "g10", "run", &format!("f{i}"), now);
    }
    let group = record.groups.last().expect("g10 is now the most recent");
    assert_eq!(group.key, "g10");
    assert_eq!(group.firings.len(), MAX_FIRINGS);
    assert_eq!(group.firings.last().map(String::as_str), Some("f14"));
    // Huge labels are cut on the run.
    let mut a = alert("firing", "2026-12-07T10:00:00Z");
    a.labels.insert("big".into(), "x".repeat(100_000));
    for i in 0..200 {
        a.annotations.insert(format!("a{i:03}"), "v".into());
    }
    let recorded = decide::record_of(&a);
    assert!(recorded.labels["big"].len() <= decide::MAX_RECORDED_VALUE + 32);
    assert_eq!(recorded.annotations.len(), decide::MAX_RECORDED_ENTRIES);
}

#[test]
fn payloads_are_checked() {
    let ok = br#"{"version":"4","status":"firing","receiver":"ops","groupKey":"{}:{}","alerts":[{"status":"firing","labels":{"alertname":"X"},"annotations":{},"startsAt":"2026-12-07T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p/graph","fingerprint":"f1"}]}"#;
    let n = Notification::parse(ok).expect("a notification");
    assert_eq!(n.alerts[0].firing(), "f1@2026-12-07T10:00:00Z");
    assert_eq!(n.alerts[0].generator_url, "http://p/graph");
    assert!(matches!(
        Notification::parse(b"not json"),
        Err(PayloadError::Json(_))
    ));
    assert!(matches!(
        Notification::parse(br#"{"version":"3","alerts":[]}"#),
        Err(PayloadError::Version(_))
    ));
    let missing =
        br#"{"version":"4","alerts":[{"status":"firing","startsAt":"2026-12-07T10:00:00Z"}]}"#;
    let err = Notification::parse(missing).expect_err("no fingerprint");
    assert_eq!(
        err.to_string(),
        "alerts[0] has no fingerprint; Alertmanager always sends it"
    );
}

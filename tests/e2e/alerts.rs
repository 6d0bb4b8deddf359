//! The Alertmanager webhook receiver against the local cluster: a firing alert starts its
//! Runbook's run exactly once (repeats, concurrent deliveries, a restart, a second replica),
//! the cooldown holds across a restart, alerts of one namespace never start another's
//! Runbook, bad requests get 401/400/413, and a resolved alert cancels a waiting run.

use std::time::Duration;

use kube::api::ListParams;
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunPhase, RunbookRun, TriggerType};
use serde_json::{Value, json};

use crate::monitoring::Receiver;
use crate::support::{Operator, TestNamespace, counter_sum, http_get};

/// POSTs `notification` with the receiver's token until it is ready (not 503); the reply.
async fn send(receiver: &Receiver, notification: &Value) -> Value {
    let body = notification.to_string();
    let started = std::time::Instant::now();
    loop {
        let answer = receiver.post(&body).await;
        if let Some((code, reply)) = answer.filter(|(code, _)| *code != 503) {
            assert_eq!(code, 200, "{reply}");
            return serde_json::from_str(&reply).expect("a JSON reply");
        }
        assert!(
            started.elapsed() < crate::support::PATIENCE,
            "the receiver never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status code and JSON reply of one POST with `token`.
async fn post(receiver: &Receiver, token: Option<&str>, body: &str) -> (u16, Value) {
    let (code, text) = receiver
        .post_with(token, body)
        .await
        .expect("the receiver answers");
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An Alertmanager webhook v4 notification of `alerts`.
pub(crate) fn notification(alerts: Vec<Value>) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "status": "firing",
        "receiver": "runbook-operator", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.example", "truncatedAlerts": 0, "alerts": alerts,
    })
}

/// One alert of `namespace`.
pub(crate) fn alert(
    status: &str,
    namespace: &str,
    fingerprint: &str,
    starts_at: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut labels =
        json!({"alertname": "HighErrorRate", "service": "api", "namespace": namespace});
    for (k, v) in extra {
        labels[*k] = json!(v);
    }
    json!({
        "status": status, "labels": labels,
        "annotations": {"summary": "5xx above 5% for 5 minutes"},
        "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph", "fingerprint": fingerprint,
    })
}

fn outcomes(reply: &Value) -> Vec<String> {
    reply["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["runbooks"].as_array().cloned().unwrap_or_default())
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn alert_runs(ns: &TestNamespace) -> Vec<RunbookRun> {
    ns.api::<RunbookRun>()
        .list(&ListParams::default())
        .await
        .expect("list runs")
        .items
        .into_iter()
        .filter(|r| {
            r.spec
                .trigger
                .as_ref()
                .is_some_and(|t| t.type_ == TriggerType::Alert)
        })
        .collect()
}

fn spawn_with_receiver(
    ns: &TestNamespace,
    receiver: &Receiver,
    suffix: &str,
    more: &[&str],
    ready: &str,
) -> Operator {
    let mut args = receiver.args();
    args.extend(more.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ns.spawn_operator(suffix, &args, ready)
}

async fn ready_runbook(ns: &TestNamespace, name: &str) {
    ns.wait_for::<Runbook>(name, "Ready", |rb| {
        rb.status.as_ref().is_some_and(|s| {
            crate::support::ready(&s.conditions, s.observed_generation, rb.metadata.generation)
        })
    })
    .await;
}

/// Waits until `receiver` matches a resolved copy of `alert` to a Runbook (`onResolved`
/// Ignore or CancelWaiting: nothing starts, nothing is recorded). The receiver matches from
/// its own Runbook watch, so a Runbook the controller reports Ready may not be there yet.
async fn until_matched(receiver: &Receiver, mut alert: Value) {
    alert["status"] = json!("resolved");
    alert["fingerprint"] = json!("probe");
    let probe = notification(vec![alert]);
    let started = std::time::Instant::now();
    while outcomes(&send(receiver, &probe).await).is_empty() {
        assert!(
            started.elapsed() < crate::support::PATIENCE,
            "the receiver never matched {probe}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const RUNBOOK: &str = r#"apiVersion: ops.runbook.dev/v1alpha1
kind: Runbook
metadata: {name: high-error-rate}
spec:
  params: [{name: replicas, default: "2"}, {name: statute, default: none}]
  triggers:
    alerts:
    - match: {alertname: HighErrorRate, service: api}
      params: {replicas: "4", statute: "{{ alert.labels.statute }}"}
      cooldown: 1h
  steps:
  - {name: note, sleep: {duration: 1s}}
"#;

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn an_alert_starts_its_runbook_once_per_firing_and_the_cooldown_survives_a_restart() {
    let mut ns = TestNamespace::new("alerts").await;
    let other = TestNamespace::new("alerts-other").await;
    let receiver = Receiver::fresh();
    // One operator for both namespaces, as one shared install sees many tenants.
    let operator = spawn_with_receiver(
        &ns,
        &receiver,
        "",
        &[
            "--namespace",
            &other.name,
            "--alerts-max-body-bytes",
            "65536",
        ],
        "ok",
    );
    ns.adopt_operator(operator);
    ns.apply(RUNBOOK);
    other.apply(RUNBOOK);
    ready_runbook(&ns, "high-error-rate").await;
    until_matched(
        &receiver,
        alert("firing", &ns.name, "p", "2026-12-07T09:00:00Z", &[]),
    )
    .await;
    ready_runbook(&other, "high-error-rate").await;
    until_matched(
        &receiver,
        alert("firing", &other.name, "p", "2026-12-07T09:00:00Z", &[]),
    )
    .await;

    // Requests without the token, with a wrong one, malformed, and too large.
    let first = notification(vec![alert(
        "firing",
        &ns.name,
        "fp-1",
        "2026-12-07T10:00:00Z",
        &[("statute", "17 USC 107")],
    )]);
    let body = first.to_string();
    let (code, _) = post(&receiver, None, &body).await;
    assert_eq!(code, 401);
    let (code, _) = post(&receiver, Some("wrong"), &body).await;
    assert_eq!(code, 401);
    let (code, reply) = post(&receiver, Some(&receiver.token), "{\"version\":\"4\"").await;
    assert_eq!(code, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an Alertmanager webhook notification")),
        "{reply}"
    );
    let (code, _) = post(&receiver, Some(&receiver.token), &"x".repeat(100_000)).await;
    assert_eq!(code, 413);
    assert!(
        alert_runs(&ns).await.is_empty(),
        "nothing was started by a refused request"
    );

    // The same firing delivered five times at once: one run, in this namespace only.
    let replies = futures::future::join_all((0..5).map(|_| send(&receiver, &first))).await;
    let mut seen: Vec<String> = replies.iter().flat_map(outcomes).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "deduplicated",
            "deduplicated",
            "deduplicated",
            "deduplicated",
            "started"
        ],
        "{replies:?}"
    );
    let runs = alert_runs(&ns).await;
    assert_eq!(runs.len(), 1, "one run for one firing");
    let run = &runs[0];
    assert_eq!(run.spec.params["replicas"], "4");
    assert_eq!(run.spec.params["statute"], "17 USC 107");
    let trigger = run.spec.trigger.as_ref().expect("the trigger");
    assert_eq!(trigger.source.as_deref(), Some("HighErrorRate"));
    assert_eq!(
        trigger.alert.as_ref().map(|a| a.fingerprint.as_str()),
        Some("fp-1")
    );
    assert!(
        alert_runs(&other).await.is_empty(),
        "another tenant's Runbook is not started by this namespace's alert"
    );
    ns.wait_for::<RunbookRun>(
        &run.metadata.name.clone().unwrap_or_default(),
        "Succeeded",
        |r| r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Succeeded),
    )
    .await;

    // Another firing of the group within the cooldown: suppressed, counted once, on record.
    let second = notification(vec![alert(
        "firing",
        &ns.name,
        "fp-2",
        "2026-12-07T10:05:00Z",
        &[],
    )]);
    assert_eq!(outcomes(&send(&receiver, &second).await), ["cooled_down"]);
    assert_eq!(outcomes(&send(&receiver, &second).await), ["cooled_down"]);
    let rb = ns
        .api::<Runbook>()
        .get("high-error-rate")
        .await
        .expect("the Runbook");
    let group = &rb
        .status
        .as_ref()
        .and_then(|s| s.alerts.clone())
        .expect("status.alerts")
        .groups[0];
    assert_eq!(group.key, "alertname=HighErrorRate,service=api");
    assert_eq!(group.suppressed, Some(1), "{group:?}");
    assert!(
        group
            .last_suppression
            .as_ref()
            .is_some_and(|s| s.reason.contains("cooldown 1h")),
        "{group:?}"
    );
    ns.wait_for_event("high-error-rate", "AlertCooledDown", "cooldown 1h")
        .await;
    let metrics = http_get(&ns.operator().probe, "/metrics").expect("metrics");
    assert_eq!(
        counter_sum(
            &metrics,
            "runbook_operator_alerts_total",
            "outcome=\"started\""
        ),
        1.0
    );
    assert_eq!(
        counter_sum(
            &metrics,
            "runbook_operator_alert_requests_total",
            "outcome=\"401\""
        ),
        2.0
    );

    // A restarted operator (nothing in memory) deduplicates the first firing and still
    // holds the cooldown for a third.
    ns.stop_operator();
    let operator = spawn_with_receiver(
        &ns,
        &receiver,
        "-restarted",
        &["--namespace", &other.name],
        "ok",
    );
    ns.adopt_operator(operator);
    assert_eq!(outcomes(&send(&receiver, &first).await), ["deduplicated"]);
    let third = notification(vec![alert(
        "firing",
        &ns.name,
        "fp-3",
        "2026-12-07T10:10:00Z",
        &[],
    )]);
    assert_eq!(outcomes(&send(&receiver, &third).await), ["cooled_down"]);
    assert_eq!(alert_runs(&ns).await.len(), 1);

    // The other tenant's alert starts the other tenant's Runbook.
    let theirs = notification(vec![alert(
        "firing",
        &other.name,
        "fp-1",
        "2026-12-07T10:00:00Z",
        &[],
    )]);
    assert_eq!(outcomes(&send(&receiver, &theirs).await), ["started"]);
    assert_eq!(alert_runs(&other).await.len(), 1);
    assert_eq!(alert_runs(&ns).await.len(), 1);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn two_replicas_receiving_the_same_firing_start_one_run() {
    let ns = TestNamespace::new("alerts-ha").await;
    ns.grant_leader_election();
    let receiver_a = Receiver::fresh();
    let receiver_b = receiver_a.replica();
    let election = [
        "--leader-elect",
        "--leader-election-namespace",
        ns.name.as_str(),
        "--leader-election-lease",
        "runbook-operator-alerts-ha",
    ];
    let _leader = spawn_with_receiver(&ns, &receiver_a, "-a", &election, "ok");
    let _standby = spawn_with_receiver(&ns, &receiver_b, "-b", &election, "standby");
    ns.apply(RUNBOOK);
    ready_runbook(&ns, "high-error-rate").await;
    for r in [&receiver_a, &receiver_b] {
        until_matched(
            r,
            alert("firing", &ns.name, "p", "2026-12-07T09:00:00Z", &[]),
        )
        .await;
    }
    // Different firings in one group at once on both replicas: the cooldown lets one start.
    let a = notification(vec![alert(
        "firing",
        &ns.name,
        "fp-a",
        "2026-12-07T10:00:00Z",
        &[],
    )]);
    let b = notification(vec![alert(
        "firing",
        &ns.name,
        "fp-b",
        "2026-12-07T10:00:01Z",
        &[],
    )]);
    let (ra, rb, ra2, rb2) = tokio::join!(
        send(&receiver_a, &a),
        send(&receiver_b, &b),
        send(&receiver_b, &a),
        send(&receiver_a, &b)
    );
    let mut seen: Vec<String> = [&ra, &rb, &ra2, &rb2]
        .into_iter()
        .flat_map(outcomes)
        .collect();
    seen.sort();
    assert_eq!(
        seen.iter().filter(|o| *o == "started").count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        alert_runs(&ns).await.len(),
        1,
        "one run between two replicas: {seen:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_resolved_alert_cancels_its_run_while_it_waits_for_approval() {
    let mut ns = TestNamespace::new("alerts-resolve").await;
    let receiver = Receiver::fresh();
    let operator = spawn_with_receiver(&ns, &receiver, "", &[], "ok");
    ns.adopt_operator(operator);
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: needs-approval}\nspec:\n  triggers:\n    alerts:\n    - match: {alertname: HighErrorRate}\n      onResolved: CancelWaiting\n  steps:\n  - {name: ask, approval: {message: \"scale up\"}}\n  - {name: after, sleep: {duration: 1s}}\n",
    );
    ready_runbook(&ns, "needs-approval").await;
    until_matched(
        &receiver,
        alert("firing", &ns.name, "p", "2026-12-07T09:00:00Z", &[]),
    )
    .await;
    let firing = notification(vec![alert(
        "firing",
        &ns.name,
        "fp-r",
        "2026-12-07T10:00:00Z",
        &[],
    )]);
    assert_eq!(outcomes(&send(&receiver, &firing).await), ["started"]);
    let run = alert_runs(&ns).await.pop().expect("the run");
    let name = run.metadata.name.clone().unwrap_or_default();
    ns.wait_for::<RunbookRun>(&name, "WaitingForApproval", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::WaitingForApproval)
    })
    .await;
    let resolved = notification(vec![alert(
        "resolved",
        &ns.name,
        "fp-r",
        "2026-12-07T10:00:00Z",
        &[],
    )]);
    assert_eq!(
        outcomes(&send(&receiver, &resolved).await),
        ["cancel_waiting"]
    );
    ns.wait_for::<RunbookRun>(&name, "Cancelled", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Cancelled)
    })
    .await;
    ns.wait_for_event(
        "needs-approval",
        "AlertResolvedCancelled",
        "cancelled waiting run",
    )
    .await;
}

/// A Runbook started by alert `alertname` that scales the alert's `deployment` label to
/// `replicas` and holds it `nap`, one run at a time per Deployment.
fn locked_runbook(name: &str, alertname: &str, replicas: i32, nap: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n  params: [{{name: deployment}}]\n  triggers:\n    alerts:\n    - match: {{alertname: {alertname}}}\n      params: {{deployment: \"{{{{ alert.labels.deployment }}}}\"}}\n  concurrency: {{key: \"deployment/{{{{ params.deployment }}}}\", policy: Queue}}\n  steps:\n  - {{name: scale, scale: {{target: {{kind: Deployment, name: \"{{{{ params.deployment }}}}\"}}, replicas: {replicas}}}}}\n  - {{name: hold, sleep: {{duration: {nap}}}}}\n"
    )
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn two_alerts_for_the_same_deployment_arriving_together_take_turns() {
    use crate::concurrency::{deployment, finished, phase, span};
    let mut ns = TestNamespace::new("alerts-lock").await;
    let receiver = Receiver::fresh();
    let operator = spawn_with_receiver(&ns, &receiver, "", &[], "ok");
    ns.adopt_operator(operator);
    ns.apply(&deployment("api"));
    ns.apply(&locked_runbook("errors-scale-up", "HighErrorRate", 4, "3s"));
    ns.apply(&locked_runbook("latency-scale-up", "HighLatency", 6, "1s"));
    ready_runbook(&ns, "errors-scale-up").await;
    ready_runbook(&ns, "latency-scale-up").await;
    until_matched(
        &receiver,
        alert("firing", &ns.name, "p", "2026-12-07T09:00:00Z", &[]),
    )
    .await;
    let mut probe = alert("firing", &ns.name, "p", "2026-12-07T09:00:00Z", &[]);
    probe["labels"]["alertname"] = json!("HighLatency");
    until_matched(&receiver, probe).await;
    let mut latency = alert(
        "firing",
        &ns.name,
        "fp-latency",
        "2026-12-07T10:00:00Z",
        &[("deployment", "api")],
    );
    latency["labels"]["alertname"] = json!("HighLatency");
    let errors = notification(vec![alert(
        "firing",
        &ns.name,
        "fp-errors",
        "2026-12-07T10:00:00Z",
        &[("deployment", "api")],
    )]);
    let latency = notification(vec![latency]);
    let (a, b) = tokio::join!(send(&receiver, &errors), send(&receiver, &latency));
    assert_eq!(outcomes(&a), ["started"]);
    assert_eq!(outcomes(&b), ["started"]);
    let names: Vec<String> = [&a, &b]
        .iter()
        .map(|r| {
            r["alerts"][0]["runbooks"][0]["run"]
                .as_str()
                .expect("a run")
                .to_owned()
        })
        .collect();
    // Without a cooldown the run is created first and the firing recorded before the reply.
    let rb = ns
        .api::<Runbook>()
        .get("errors-scale-up")
        .await
        .expect("the Runbook");
    let group = &rb
        .status
        .and_then(|s| s.alerts)
        .expect("status.alerts")
        .groups[0];
    assert_eq!(
        group.last_run.as_deref(),
        Some(names[0].as_str()),
        "{group:?}"
    );
    assert_eq!(group.firings, ["fp-errors@2026-12-07T10:00:00Z"]);
    let first = finished(&ns, &names[0]).await;
    let second = finished(&ns, &names[1]).await;
    for run in [&first, &second] {
        assert_eq!(phase(run), Some(RunPhase::Succeeded), "{run:#?}");
    }
    let (mut spans, mut labels) = (vec![span(&first), span(&second)], names.clone());
    if spans[1].0 < spans[0].0 {
        spans.swap(0, 1);
        labels.swap(0, 1);
    }
    assert!(
        spans[1].0 >= spans[0].1,
        "run {} started its first step at {} before run {} finished at {}",
        labels[1],
        spans[1].0,
        labels[0],
        spans[0].1
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn the_receiver_serves_tls_from_a_certificate_and_key() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut ns = TestNamespace::new("alerts-tls").await;
    let receiver = Receiver::fresh();
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("a self-signed certificate");
    let dir = receiver
        .token_file
        .parent()
        .expect("the token's directory")
        .to_owned();
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
    std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
    let cert_arg = cert_file.display().to_string();
    let key_arg = key_file.display().to_string();
    let operator = spawn_with_receiver(
        &ns,
        &receiver,
        "",
        &[
            "--alerts-tls-cert-file",
            &cert_arg,
            "--alerts-tls-key-file",
            &key_arg,
        ],
        "ok",
    );
    ns.adopt_operator(operator);
    ns.apply(RUNBOOK);
    ready_runbook(&ns, "high-error-rate").await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("the CA")])
        .build()
        .expect("an HTTPS client");
    let url = format!("https://{}/v1/alerts/alertmanager", receiver.addr);
    let body = notification(vec![alert(
        "firing",
        &ns.name,
        "fp-tls",
        "2026-12-07T10:00:00Z",
        &[],
    )])
    .to_string();
    let started = std::time::Instant::now();
    let reply: Value = loop {
        let response = client
            .post(&url)
            .bearer_auth(&receiver.token)
            .body(body.clone())
            .send()
            .await
            .expect("an answer over TLS");
        let code = response.status().as_u16();
        let text = response.text().await.expect("a body");
        // 503 until synced; no Runbook in the reply until the receiver's watch has it.
        if code != 503 {
            assert_eq!(code, 200, "{text}");
            let reply: Value = serde_json::from_str(&text).expect("JSON");
            if !outcomes(&reply).is_empty() {
                break reply;
            }
        }
        assert!(
            started.elapsed() < crate::support::PATIENCE,
            "never ready: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(outcomes(&reply), ["started"]);
    // Plain HTTP to the TLS port gets no answer from the receiver.
    assert!(
        receiver
            .post(&body)
            .await
            .is_none_or(|(code, _)| code != 200)
    );
}

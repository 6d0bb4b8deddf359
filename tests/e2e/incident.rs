//! The seed 000 incident end to end, with real parts: an application's error rate climbs
//! (an exporter the test drives), Prometheus fires `HighErrorRate`, Alertmanager routes it to
//! the operator's receiver, and the Runbook's run pages PagerDuty, resets the circuit breaker,
//! scales the Deployment named by the alert to 4 and resolves the page. Alertmanager repeats
//! the alert and the test re-sends it: one run exists throughout.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ListParams;
use runbook_operator::runbook::{Runbook, RunbookPhase};
use runbook_operator::runbook_run::{RunbookRun, TriggerType};

use crate::monitoring::{
    Alertmanager, Exporter, Prometheus, Receiver, Recorded, Recorder, Route, ScrapeTarget,
};
use crate::support::{TestNamespace, ready};

/// Seed 000's alert: more than 5% of requests fail, for 10 s (5 min in production; see
/// `examples/prometheus/`), evaluated every second.
const RULES: &str = r#"
groups:
  - name: paralegal-api
    interval: 1s
    rules:
      - alert: HighErrorRate
        expr: |
          sum by (namespace, service, deployment) (rate(http_requests_total{code=~"5.."}[5s]))
            / sum by (namespace, service, deployment) (rate(http_requests_total[5s]))
            > 0.05
        for: 10s
        labels: {severity: critical}
        annotations:
          summary: "{{ $labels.service }}: {{ $value | humanizePercentage }} of requests fail"
"#;

const ROUTING_KEY: &str = "R0UT1NGKEYINCIDENT000000000000000";

/// The application, the PagerDuty routing key and the seed 000 Runbook, its PagerDuty
/// events, circuit reset and scale aimed at the test's servers.
fn manifests(pagerduty: &str, circuit: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: api}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec: {{containers: [{{name: api, image: registry.local/paralegal-api:1}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pagerduty}}
stringData: {{routingKey: {ROUTING_KEY}}}
---
apiVersion: ops.runbook.dev/v1alpha1
kind: Runbook
metadata: {{name: high-error-rate}}
spec:
  description: Seed 000 high error rate - page, reset the circuit breaker, scale up, resolve.
  params:
    - name: deployment
    - name: circuit
      default: search_statute
  triggers:
    alerts:
      - match: {{alertname: HighErrorRate, service: api}}
        params: {{deployment: "{{{{ alert.labels.deployment }}}}"}}
        cooldown: 15m
        onResolved: Ignore
  steps:
    - name: page
      notify:
        message: "HighErrorRate on {{{{ params.deployment }}}}: resetting the circuit breaker and scaling to 4"
        pagerduty:
          url: {pagerduty}/v2/enqueue
          routingKeyFrom: {{secretKeyRef: {{name: pagerduty, key: routingKey}}}}
          severity: critical
    - name: reset-circuit
      http:
        url: "{circuit}/admin/reset-circuit/{{{{ params.circuit }}}}"
        method: POST
        expect: {{status: [200]}}
    - name: scale-up
      scale:
        target: {{kind: Deployment, name: "{{{{ params.deployment }}}}"}}
        replicas: 4
    - name: resolve-page
      notify:
        message: "{{{{ params.deployment }}}} mitigated: circuit reset, scaled to 4"
        pagerduty:
          url: {pagerduty}/v2/enqueue
          routingKeyFrom: {{secretKeyRef: {{name: pagerduty, key: routingKey}}}}
          eventAction: resolve
"#
    )
}

/// The runs of Runbook `high-error-rate` in the namespace.
async fn runs(ns: &TestNamespace) -> Vec<RunbookRun> {
    let mut runs = ns
        .api::<RunbookRun>()
        .list(&ListParams::default())
        .await
        .expect("list runs")
        .items;
    runs.retain(|r| r.spec.runbook_ref.name == "high-error-rate");
    runs
}

/// The notifications Alertmanager sent with `status` (`firing` or `resolved`).
fn notifications(requests: &[Recorded], status: &str) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.json()["status"] == status)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster, Prometheus and Alertmanager: make test"]
async fn high_error_rate_alert_runs_the_runbook_once_and_pages_then_resolves() {
    let mut ns = TestNamespace::new("incident").await;
    let circuit = Recorder::ok().await;
    let pagerduty = crate::sinks_support::Receiver::start().await;
    let copy = Recorder::ok().await;
    let exporter = Exporter::start().await;
    ns.apply(&manifests(&pagerduty.base, &circuit.base));

    let receiver = Receiver::fresh();
    let args = receiver.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = ns.spawn_operator("", &args, "ok");
    ns.adopt_operator(operator);
    receiver.wait_listening().await;
    ns.wait_for::<Runbook>("high-error-rate", "Ready", |rb| {
        rb.status.as_ref().is_some_and(|s| {
            ready(&s.conditions, s.observed_generation, rb.metadata.generation)
                && s.phase == Some(RunbookPhase::Ready)
        })
    })
    .await;

    let operator_url = receiver.url();
    let alertmanager = Alertmanager::start(
        &Route {
            operator_url: &operator_url,
            token_file: &receiver.token_file,
            copy_to: Some(&copy.base),
            repeat_interval: "2s",
        }
        .config(),
    )
    .await;
    let labels = BTreeMap::from([
        ("namespace".to_owned(), ns.name.clone()),
        ("service".to_owned(), "api".to_owned()),
        ("deployment".to_owned(), "api".to_owned()),
    ]);
    let target = ScrapeTarget {
        job: "paralegal-api".to_owned(),
        target: exporter.target(),
        labels,
    };
    let prometheus = Prometheus::start(RULES, &[target], &alertmanager.0.base).await;

    // 20% of requests fail.
    exporter.set_traffic(80, 20);
    let firing = prometheus.wait_alert("HighErrorRate", "firing").await;
    assert_eq!(
        firing["labels"]["namespace"],
        ns.name.as_str(),
        "{firing:#?}"
    );
    alertmanager.wait_alert_active("HighErrorRate").await;

    // The run the alert started.
    let started = ns
        .wait_for::<Runbook>("high-error-rate", "showing a run", |rb| {
            rb.status.as_ref().is_some_and(|s| s.last_run.is_some())
        })
        .await;
    let name = started
        .status
        .and_then(|s| s.last_run)
        .map(|l| l.name)
        .expect("last run");
    let run = ns
        .wait_for::<RunbookRun>(&name, "Succeeded", |r| {
            r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())) == Some("Succeeded")
        })
        .await;
    let trigger = run
        .spec
        .trigger
        .as_ref()
        .expect("the run records its trigger");
    assert_eq!(trigger.type_, TriggerType::Alert, "{run:#?}");
    assert_eq!(trigger.source.as_deref(), Some("HighErrorRate"), "{run:#?}");
    let alert = trigger.alert.as_ref().expect("the run records the alert");
    assert_eq!(alert.name, "HighErrorRate", "{alert:#?}");
    assert_eq!(alert.status, "firing", "{alert:#?}");
    assert!(!alert.fingerprint.is_empty(), "{alert:#?}");
    assert!(alert.starts_at.is_some(), "{alert:#?}");
    assert_eq!(
        alert.labels.get("deployment").map(String::as_str),
        Some("api")
    );
    assert!(
        alert
            .annotations
            .get("summary")
            .is_some_and(|s| s.ends_with("of requests fail")),
        "{alert:#?}"
    );

    // What the run did: the circuit reset once, the Deployment the alert named at 4 replicas.
    let resets = circuit.requests_to("/admin/reset-circuit/search_statute");
    assert_eq!(resets.len(), 1, "{resets:#?}");
    assert_eq!(resets[0].method, "POST");
    let api = ns
        .api::<Deployment>()
        .get("api")
        .await
        .expect("deployment api");
    assert_eq!(api.spec.and_then(|s| s.replicas), Some(4));

    // PagerDuty got a trigger, then a resolve of the same incident.
    let events = pagerduty.pagerduty_events();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "{events:#?}");
    assert_eq!(events[0]["routing_key"], ROUTING_KEY);
    assert_eq!(events[0]["payload"]["severity"], "critical", "{events:#?}");
    assert!(events[0]["dedup_key"].is_string(), "{events:#?}");
    assert_eq!(
        events[0]["dedup_key"], events[1]["dedup_key"],
        "{events:#?}"
    );

    // Alertmanager repeats the firing alert (repeat_interval 2s). Its notifications of a group
    // are sent one after the other, each to both webhooks, so a third copy means the operator
    // answered the first two. Then the same payload, sent again directly: the receiver answers
    // 2xx only once the run is created or deduplicated.
    let seen = copy
        .wait_for("three firing notifications", |r| {
            notifications(r, "firing").len() >= 3
        })
        .await;
    let firing = notifications(&seen, "firing").remove(0);
    let (code, body) = receiver.post(&firing.body).await.expect("receiver answers");
    assert!((200..300).contains(&code), "re-sent alert: {code} {body}");
    let all = runs(&ns).await;
    assert_eq!(all.len(), 1, "one alert, one run: {all:#?}");

    // The errors stop: the alert resolves, Alertmanager says so, and (onResolved: Ignore)
    // nothing new runs.
    exporter.set_traffic(100, 0);
    prometheus.wait_alert_gone("HighErrorRate").await;
    let seen = copy
        .wait_for("a resolved notification", |r| {
            !notifications(r, "resolved").is_empty()
        })
        .await;
    let resolved = notifications(&seen, "resolved").remove(0);
    let (code, body) = receiver
        .post(&resolved.body)
        .await
        .expect("receiver answers");
    assert!((200..300).contains(&code), "resolved alert: {code} {body}");
    let all = runs(&ns).await;
    assert_eq!(all.len(), 1, "a resolved alert starts nothing: {all:#?}");
    assert_eq!(pagerduty.pagerduty_events().len(), 2, "nothing else paged");
    assert!(exporter.scrapes() > 0);
}

/// The parts without the operator: Prometheus turns the exporter's errors into a firing
/// `HighErrorRate` and Alertmanager posts it, as webhook payload version 4 with the bearer
/// token of its `credentials_file`, to the receiver's path (a recorder stands in for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus and Alertmanager: make test"]
async fn prometheus_fires_high_error_rate_and_alertmanager_posts_it_with_the_token() {
    let exporter = Exporter::start().await;
    let stand_in = Recorder::ok().await;
    let receiver = Receiver::fresh();
    let url = format!("{}/v1/alerts/alertmanager", stand_in.base);
    let alertmanager = Alertmanager::start(
        &Route {
            operator_url: &url,
            token_file: &receiver.token_file,
            copy_to: None,
            repeat_interval: "1h",
        }
        .config(),
    )
    .await;
    let target = ScrapeTarget {
        job: "paralegal-api".to_owned(),
        target: exporter.target(),
        labels: BTreeMap::from([
            ("namespace".to_owned(), "paralegal".to_owned()),
            ("service".to_owned(), "api".to_owned()),
            ("deployment".to_owned(), "api".to_owned()),
        ]),
    };
    let prometheus = Prometheus::start(RULES, &[target], &alertmanager.0.base).await;

    exporter.set_traffic(80, 20);
    // Pending first: the condition holds, `for: 10s` has not passed.
    prometheus.wait_alert("HighErrorRate", "pending").await;
    prometheus.wait_alert("HighErrorRate", "firing").await;
    alertmanager.wait_alert_active("HighErrorRate").await;
    let seen = stand_in
        .wait_for("a firing notification", |r| {
            !notifications(r, "firing").is_empty()
        })
        .await;
    let sent = notifications(&seen, "firing").remove(0);
    assert_eq!(sent.path, "/v1/alerts/alertmanager");
    assert_eq!(
        sent.headers.get("authorization"),
        Some(&format!("Bearer {}", receiver.token))
    );
    let payload = sent.json();
    assert_eq!(payload["version"], "4", "{payload:#}");
    let alert = &payload["alerts"][0];
    assert_eq!(alert["status"], "firing", "{payload:#}");
    assert_eq!(alert["labels"]["alertname"], "HighErrorRate");
    assert_eq!(alert["labels"]["namespace"], "paralegal");
    assert_eq!(alert["labels"]["deployment"], "api");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(alert["fingerprint"].is_string(), "{payload:#}");
    assert!(alert["startsAt"].is_string(), "{payload:#}");
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("api: ") && summary.ends_with("% of requests fail"),
        "{summary}"
    );

    // The errors stop: the alert resolves and Alertmanager says so.
    exporter.set_traffic(100, 0);
    prometheus.wait_alert_gone("HighErrorRate").await;
    stand_in
        .wait_for("a resolved notification", |r| {
            !notifications(r, "resolved").is_empty()
        })
        .await;
}

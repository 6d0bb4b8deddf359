//! Metric checks end to end: query and waitFor steps against a real Prometheus (from
//! [`crate::monitoring`]) scraping exporters the test drives, so every number a step judges
//! went through a real scrape and a real PromQL evaluation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use runbook_operator::blue_green::{BlueGreenRelease, BlueGreenReleaseStatus};
use runbook_operator::runbook_run::{RunbookRun, StepPhase, StepStatus};

use crate::monitoring::{Exporter, Prometheus, Recorder, ScrapeTarget, http};
use crate::support::{PATIENCE, TestNamespace, entry, output, run_yaml};

/// An exporter serving one gauge, `queue_depth{queue="message_queue"}`, at the value the test
/// sets.
struct Gauge {
    server: Recorder,
    value: Arc<AtomicU64>,
}

impl Gauge {
    async fn start(value: u64) -> Self {
        let value = Arc::new(AtomicU64::new(value));
        let read = value.clone();
        let server = Recorder::start(move |request| {
            if request.path != "/metrics" {
                return (404, "text/plain", "not found\n".to_owned());
            }
            let body = format!(
                "# HELP queue_depth Messages waiting.\n# TYPE queue_depth gauge\nqueue_depth{{queue=\"message_queue\"}} {}\n",
                read.load(Ordering::SeqCst)
            );
            (200, "text/plain; version=0.0.4", body)
        })
        .await;
        Self { server, value }
    }

    fn set(&self, value: u64) {
        self.value.store(value, Ordering::SeqCst);
    }

    fn target(&self) -> String {
        self.server.base.trim_start_matches("http://").to_owned()
    }
}

/// Prometheus scraping `target` (`host:port`) every second, its series labelled with the
/// test's namespace. No Alertmanager: alerting goes to a closed port, which these tests do
/// not use.
async fn prometheus(ns: &TestNamespace, target: String) -> Prometheus {
    let labels = BTreeMap::from([("namespace".to_owned(), ns.name.clone())]);
    let unused = format!("http://127.0.0.1:{}", crate::support::free_port());
    Prometheus::start(
        "groups: []\n",
        &[ScrapeTarget {
            job: "app".into(),
            target,
            labels,
        }],
        &unused,
    )
    .await
}

/// Waits until Prometheus answers `promql` with one sample whose value satisfies `done`.
async fn wait_value(prometheus: &Prometheus, promql: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + PATIENCE;
    let path = format!("/api/v1/query?query={}", url_encode(promql));
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some((200, body)) = http(&prometheus.0.base, "GET", &path, &[], None).await {
            let value = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v["data"]["result"][0]["value"][1]
                        .as_str()
                        .map(str::to_owned)
                })
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(value) = value.filter(|v| done(*v)) {
                return value;
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("Prometheus never answered {promql} as wanted; last answer: {last}");
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn runbook(name: &str, steps: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n  steps:\n{steps}\n"
    )
}

fn deployment(name: &str, replicas: i32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: {name}, image: \"registry.example.com/{name}:1\"}}]}}\n"
    )
}

async fn replicas(ns: &TestNamespace, name: &str) -> Option<i32> {
    let d = ns.api::<Deployment>().get(name).await.expect("deployment");
    d.spec.and_then(|s| s.replicas)
}

async fn finished(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, "finished", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase.is_some_and(|p| p.is_finished()))
    })
    .await
}

fn run_phase(run: &RunbookRun) -> String {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default()
}

/// The reason the journal gives for how the step ended.
fn reason(e: &StepStatus) -> String {
    e.reason
        .clone()
        .or_else(|| e.outputs.get("reason").cloned())
        .unwrap_or_default()
}

/// The queue-overflow runbook: scale the worker to 3, wait until the queue is below 1000,
/// scale back to 1. The run waits at waitFor while the exporter says 1500 (its message shows
/// 1500, the worker has 3 replicas) and continues when it says 800.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn queue_overflow_waits_for_the_queue_to_drain_then_scales_back() {
    let mut ns = TestNamespace::new("metric-queue").await;
    let gauge = Gauge::start(1500).await;
    let prom = prometheus(&ns, gauge.target()).await;
    let promql = format!("max(queue_depth{{namespace=\"{}\"}})", ns.name);
    wait_value(&prom, &promql, |v| v == 1500.0).await;
    ns.apply(&deployment("worker", 1));
    ns.apply(&runbook(
        "queue-overflow",
        &format!(
            "  - {{name: scale-up, scale: {{target: {{kind: Deployment, name: worker}}, replicas: 3}}}}\n  - name: drained\n    waitFor:\n      address: \"{}\"\n      promql: '{promql}'\n      until: result < 1000\n      interval: 1s\n      timeout: 5m\n  - {{name: scale-down, scale: {{target: {{kind: Deployment, name: worker}}, replicas: 1}}}}",
            prom.0.base
        ),
    ));
    ns.start_operator();
    ns.apply(&run_yaml("overflow-1", "queue-overflow", "Run", &[]));

    let waiting = ns
        .wait_for::<RunbookRun>("overflow-1", "waiting at drained, showing 1500", |r| {
            let Some(s) = r.status.as_ref() else {
                return false;
            };
            s.current_step.as_deref() == Some("drained")
                && s.steps.iter().any(|e| {
                    e.name == "drained"
                        && e.phase == StepPhase::Running
                        && e.message.as_deref().is_some_and(|m| m.contains("1500"))
                        && e.outputs.get("failed").is_some_and(|n| n != "0")
                })
        })
        .await;
    assert_eq!(run_phase(&waiting), "Running");
    assert_eq!(replicas(&ns, "worker").await, Some(3));
    let polls = entry(&waiting, "drained");
    assert_eq!(output(polls, "result"), "1500", "{polls:#?}");
    assert!(output(polls, "measurements").contains("1500"), "{polls:#?}");

    gauge.set(800);
    let done = finished(&ns, "overflow-1").await;
    assert_eq!(run_phase(&done), "Succeeded", "{:#?}", done.status);
    let drained = entry(&done, "drained");
    assert_eq!(drained.phase, StepPhase::Succeeded, "{drained:#?}");
    assert_eq!(output(drained, "result"), "800", "{drained:#?}");
    assert_eq!(output(drained, "successful"), "1", "{drained:#?}");
    assert_eq!(replicas(&ns, "worker").await, Some(1));

    // Plan mode takes one measurement and says what the condition would be.
    ns.apply(&run_yaml("overflow-plan", "queue-overflow", "Plan", &[]));
    let plan = finished(&ns, "overflow-plan").await;
    let drained = entry(&plan, "drained");
    assert_eq!(drained.phase, StepPhase::Skipped, "{drained:#?}");
    let message = drained.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("Plan: result=800, until (result < 1000) would be true"),
        "{message}"
    );
    assert_eq!(
        replicas(&ns, "worker").await,
        Some(1),
        "Plan changed nothing"
    );
}

/// A query step with count 3 and interval 1s passes on a low error ratio and fails with
/// MetricFailed on a high one; the journal shows each measurement.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn query_step_passes_on_a_low_error_ratio_and_fails_on_a_high_one() {
    let mut ns = TestNamespace::new("metric-query").await;
    let exporter = Exporter::start().await;
    exporter.set_traffic(100, 1);
    let prom = prometheus(&ns, exporter.target()).await;
    let promql = format!(
        "sum(rate(http_requests_total{{namespace=\"{ns}\",code=\"500\"}}[5s])) / sum(rate(http_requests_total{{namespace=\"{ns}\"}}[5s]))",
        ns = ns.name
    );
    wait_value(&prom, &promql, |v| v < 0.05).await;
    ns.apply(&runbook(
        "error-ratio",
        &format!(
            "  - name: verify\n    query:\n      address: \"{}\"\n      promql: '{promql}'\n      successCondition: result < 0.05\n      count: 3\n      interval: 1s",
            prom.0.base
        ),
    ));
    ns.start_operator();
    ns.apply(&run_yaml("low-1", "error-ratio", "Run", &[]));
    let low = finished(&ns, "low-1").await;
    assert_eq!(run_phase(&low), "Succeeded", "{:#?}", low.status);
    let verify = entry(&low, "verify");
    assert_eq!(output(verify, "successful"), "3", "{verify:#?}");
    assert_eq!(output(verify, "failed"), "0", "{verify:#?}");
    let measurements: Vec<serde_json::Value> =
        serde_json::from_str(output(verify, "measurements")).expect("measurements JSON");
    // A rate can come back empty for a moment between scrapes: such an Error measurement is
    // tolerated (consecutiveErrorLimit 4) and does not count toward count.
    let phases: Vec<&str> = measurements
        .iter()
        .map(|m| m["phase"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        phases.iter().filter(|p| **p == "Successful").count(),
        3,
        "{measurements:#?}"
    );
    assert!(
        measurements.iter().all(|m| m["time"].is_string()
            && (m["phase"] == "Error" || (m["phase"] == "Successful" && m["value"].is_string()))),
        "{measurements:#?}"
    );

    exporter.set_traffic(10, 90);
    wait_value(&prom, &promql, |v| v > 0.5).await;
    ns.apply(&run_yaml("high-1", "error-ratio", "Run", &[]));
    let high = finished(&ns, "high-1").await;
    assert_eq!(run_phase(&high), "Failed", "{:#?}", high.status);
    let verify = entry(&high, "verify");
    assert_eq!(verify.phase, StepPhase::Failed, "{verify:#?}");
    assert_eq!(reason(verify), "MetricFailed", "{verify:#?}");
    assert_eq!(output(verify, "failed"), "1", "{verify:#?}");
    let message = verify.message.clone().unwrap_or_default();
    assert!(
        message.contains("more than failureLimit 0") && message.contains("last value 0."),
        "{message}"
    );
    assert!(
        output(verify, "measurements").contains("\"Failed\""),
        "{verify:#?}"
    );
}

/// The Services `web` (active) and `web-preview` of the release test.
const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web-preview}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";

/// The release `web` running image tag `tag` with `strategy` (flow YAML entries).
fn release(tag: &str, strategy: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BlueGreenRelease\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  services: {{active: web, preview: web-preview}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: \"registry.example.com/web:{tag}\"}}]}}\n  strategy: {{{strategy}}}\n"
    )
}

fn release_status(b: &BlueGreenRelease) -> BlueGreenReleaseStatus {
    b.status.clone().unwrap_or_default()
}

/// A BlueGreenRelease whose postPromotion query sees the error ratio risen switches traffic
/// back to the old slot: history RolledBack, the validation run Failed at the query step with
/// reason MetricFailed and its measurements in the journal.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn release_switches_back_when_post_promotion_query_sees_errors_rise() {
    let mut ns = TestNamespace::new("metric-bg").await;
    let exporter = Exporter::start().await;
    exporter.set_traffic(100, 1);
    let prom = prometheus(&ns, exporter.target()).await;
    let promql = format!(
        "sum(rate(http_requests_total{{namespace=\"{ns}\",code=\"500\"}}[5s])) / sum(rate(http_requests_total{{namespace=\"{ns}\"}}[5s]))",
        ns = ns.name
    );
    wait_value(&prom, &promql, |v| v < 0.05).await;
    let strategy = format!(
        "scaleDownDelay: 5s, abortScaleDownDelay: 5s, postPromotion: [{{name: error-ratio, query: {{address: \"{}\", promql: '{promql}', successCondition: 'result < 0.05', count: 3, interval: 1s}}}}]",
        prom.0.base
    );
    ns.apply(SERVICES);
    ns.apply(&release("1", &strategy));
    ns.start_operator();
    let first = ns
        .wait_for::<BlueGreenRelease>("web", "Healthy on blue", |b| {
            let s = release_status(b);
            s.phase.map(|p| p.as_str()) == Some("Healthy")
                && s.active_slot.as_deref() == Some("blue")
        })
        .await;
    let r1 = release_status(&first).active_revision.unwrap_or_default();

    // The new revision's errors: the ratio is high before traffic switches to it.
    exporter.set_traffic(10, 90);
    wait_value(&prom, &promql, |v| v > 0.5).await;
    ns.apply(&release("2", &strategy));
    let back = ns
        .wait_for::<BlueGreenRelease>("web", "switched back", |b| {
            release_status(b)
                .history
                .first()
                .is_some_and(|r| r.revision != r1 && r.result.as_deref() == Some("RolledBack"))
        })
        .await;
    let s = release_status(&back);
    assert_eq!(s.active_revision.as_deref(), Some(r1.as_str()), "{s:#?}");
    let r2 = s.history[0].revision.clone();
    let run = finished(&ns, &format!("web-post-{r2}")).await;
    assert_eq!(run_phase(&run), "Failed", "{:#?}", run.status);
    let check = entry(&run, "error-ratio");
    assert_eq!(reason(check), "MetricFailed", "{check:#?}");
    assert!(
        output(check, "measurements").contains("\"Failed\""),
        "{check:#?}"
    );
    let value: f64 = output(check, "result").parse().expect("a number");
    assert!(value > 0.5, "{check:#?}");
}

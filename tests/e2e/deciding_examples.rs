//! The example Runbooks that decide, run for real on the local cluster: a deploy that rolls
//! back when its verification fails, a service-down runbook that rebuilds only while the app
//! is still failing, the queue-overflow runbook waiting on a real Prometheus, and the database
//! recoveries that restore the newest verified backup and return the app to its count.
//!
//! Each test applies the example files as they are, except for retry backoffs and poll
//! intervals, which it shortens (see [`apply_example_with`]) so a run ends within the suite's
//! patience; the steps, conditions and references are the examples' own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use k8s_openapi::api::apps::v1::Deployment;
use runbook_operator::backup_policy::BackupPolicy;
use runbook_operator::runbook_run::{RunbookRun, StepPhase};

use crate::monitoring::{Prometheus, Recorder, ScrapeTarget};
use crate::support::{TestNamespace, entry, output, run_yaml};

/// Applies `examples/<file>` with each `(from, to)` replaced (every `from` must occur): the
/// tests shorten backoffs and intervals only.
fn apply_example_with(ns: &TestNamespace, file: &str, replace: &[(&str, &str)]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let mut text = std::fs::read_to_string(&path).expect("example file");
    for (from, to) in replace {
        assert!(text.contains(from), "{file} no longer contains {from:?}");
        text = text.replace(from, to);
    }
    ns.apply(&text);
}

async fn finished(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, "finished", |r| {
        matches!(
            r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())),
            Some("Succeeded" | "Failed" | "Cancelled")
        )
    })
    .await
}

fn phase(run: &RunbookRun) -> Option<&'static str> {
    run.status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()))
}

async fn replicas(ns: &TestNamespace, name: &str) -> Option<i32> {
    ns.api::<Deployment>()
        .get(name)
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas)
}

async fn available(ns: &TestNamespace, name: &str, count: i32) {
    ns.wait_for::<Deployment>(name, &format!("{count} available"), |d| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(count)
            && d.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
                == count
    })
    .await;
}

/// A server on 127.0.0.1 answering `/health` and `/info` 200 while `healthy` holds, else 503.
async fn switchable_server(healthy: Arc<AtomicBool>) -> Recorder {
    Recorder::start(move |_| {
        if healthy.load(Ordering::SeqCst) {
            (200, "application/json", r#"{"status":"ok"}"#.to_owned())
        } else {
            (503, "application/json", r#"{"status":"down"}"#.to_owned())
        }
    })
    .await
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn deploy_with_backup_rolls_back_when_verification_fails() {
    let mut ns = TestNamespace::new("ex-rollback").await;
    ns.apply_examples();
    apply_example_with(
        &ns,
        "deploy-with-backup.yaml",
        &[(
            "retries: {limit: 5, backoff: 5s}",
            "retries: {limit: 1, backoff: 1s}",
        )],
    );
    ns.start_operator();
    available(&ns, "app", 2).await;
    let server = switchable_server(Arc::new(AtomicBool::new(false))).await;

    ns.apply(&run_yaml(
        "deploy-bad",
        "deploy-with-backup",
        "Run",
        &[
            ("baseUrl", server.base.clone()),
            ("image", "registry.example.com/shop/app:1.5.0".into()),
        ],
    ));
    let run = finished(&ns, "deploy-bad").await;
    assert_eq!(phase(&run), Some("Failed"), "{:#?}", run.status);
    assert_eq!(entry(&run, "verify").phase, StepPhase::Failed);
    let back = entry(&run, "roll-back");
    assert_eq!(back.phase, StepPhase::Succeeded, "{back:#?}");
    assert!(
        back.condition
            .as_deref()
            .is_some_and(|c| c.contains("true")),
        "the journal shows the condition and its value: {back:#?}"
    );
    // The image is the one before the deploy again.
    ns.wait_for::<Deployment>("app", "rolled back to 1.4.2", |d| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers[0].image.as_deref())
            == Some("registry.example.com/shop/app:1.4.2")
    })
    .await;

    // A deploy that verifies keeps its image: the roll-back is Skipped, ConditionFalse.
    let healthy = switchable_server(Arc::new(AtomicBool::new(true))).await;
    ns.apply(&run_yaml(
        "deploy-good",
        "deploy-with-backup",
        "Run",
        &[
            ("baseUrl", healthy.base.clone()),
            ("image", "registry.example.com/shop/app:1.5.1".into()),
        ],
    ));
    let run = finished(&ns, "deploy-good").await;
    assert_eq!(phase(&run), Some("Succeeded"), "{:#?}", run.status);
    let back = entry(&run, "roll-back");
    assert_eq!(back.phase, StepPhase::Skipped, "{back:#?}");
    assert_eq!(back.reason.as_deref(), Some("ConditionFalse"), "{back:#?}");
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn service_down_rebuilds_only_while_the_app_still_fails() {
    let mut ns = TestNamespace::new("ex-service-down").await;
    ns.apply_examples();
    apply_example_with(
        &ns,
        "incident-service-down.yaml",
        &[("backoff: 10s", "backoff: 1s")],
    );
    ns.start_operator();
    available(&ns, "app", 2).await;

    // The restart helped: no rebuild.
    let healthy = switchable_server(Arc::new(AtomicBool::new(true))).await;
    ns.apply(&run_yaml(
        "down-restart-helps",
        "incident-service-down",
        "Run",
        &[("baseUrl", healthy.base.clone())],
    ));
    let run = finished(&ns, "down-restart-helps").await;
    assert_eq!(phase(&run), Some("Succeeded"), "{:#?}", run.status);
    assert_eq!(entry(&run, "verify").phase, StepPhase::Succeeded);
    for step in [
        "rebuild-down",
        "rebuild-up",
        "wait-for-rebuild",
        "verify-rebuild",
    ] {
        let e = entry(&run, step);
        assert_eq!(e.phase, StepPhase::Skipped, "{e:#?}");
        assert_eq!(e.reason.as_deref(), Some("ConditionFalse"), "{e:#?}");
    }

    // Still failing after the restart: the app is rebuilt (0, then its 2 replicas again),
    // and answers once rebuilt.
    let up = Arc::new(AtomicBool::new(false));
    let server = switchable_server(up.clone()).await;
    ns.apply(&run_yaml(
        "down-rebuild",
        "incident-service-down",
        "Run",
        &[("baseUrl", server.base.clone())],
    ));
    ns.wait_for::<RunbookRun>("down-rebuild", "rebuild-down done", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.steps
                .iter()
                .any(|e| e.name == "rebuild-down" && e.phase == StepPhase::Succeeded)
        })
    })
    .await;
    up.store(true, Ordering::SeqCst);
    let run = finished(&ns, "down-rebuild").await;
    assert_eq!(entry(&run, "verify").phase, StepPhase::Failed);
    assert_eq!(output(entry(&run, "rebuild-down"), "previousReplicas"), "2");
    for step in ["rebuild-up", "wait-for-rebuild", "verify-rebuild"] {
        let e = entry(&run, step);
        assert_eq!(e.phase, StepPhase::Succeeded, "{e:#?}");
    }
    assert_eq!(phase(&run), Some("Succeeded"), "{:#?}", run.status);
    assert_eq!(replicas(&ns, "app").await, Some(2));
}

#[tokio::test]
#[ignore = "needs the local cluster and Prometheus: make test"]
async fn queue_overflow_waits_until_the_queue_is_below_1000_then_scales_back() {
    let mut ns = TestNamespace::new("ex-queue").await;
    // The queue's length, as a Redis exporter would report it.
    let length = Arc::new(AtomicU64::new(1500));
    let state = length.clone();
    let exporter = Recorder::start(move |request| {
        if request.path != "/metrics" {
            return (404, "text/plain", "not found\n".to_owned());
        }
        let body = format!(
            "# TYPE redis_list_length gauge\nredis_list_length{{queue=\"message_queue\"}} {}\n",
            state.load(Ordering::SeqCst)
        );
        (200, "text/plain; version=0.0.4", body)
    })
    .await;
    let labels = BTreeMap::from([
        ("namespace".to_owned(), ns.name.clone()),
        ("service".to_owned(), "worker".to_owned()),
    ]);
    let prometheus = Prometheus::start(
        "groups: []\n",
        &[ScrapeTarget {
            job: "redis".into(),
            target: exporter.base.trim_start_matches("http://").to_owned(),
            labels,
        }],
        "http://127.0.0.1:9",
    )
    .await;
    ns.apply_examples();
    apply_example_with(
        &ns,
        "incident-queue-overflow.yaml",
        &[("interval: 30s", "interval: 1s")],
    );
    ns.start_operator();
    // The seed's normal is 1 worker (the demo runs 3).
    ns.kubectl_ok(&["scale", "deployment", "worker", "--replicas=1"]);
    available(&ns, "worker", 1).await;

    ns.apply(&run_yaml(
        "queue-1",
        "incident-queue-overflow",
        "Run",
        &[("prometheus", prometheus.0.base.clone())],
    ));
    // Scaled out, and waiting while the queue holds 1500.
    let waiting = ns
        .wait_for::<RunbookRun>("queue-1", "waiting for the drain", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.steps.iter().any(|e| {
                    e.name == "wait-for-drain"
                        && e.phase == StepPhase::Running
                        && e.message.as_deref().is_some_and(|m| m.contains("1500"))
                })
            })
        })
        .await;
    assert_eq!(phase(&waiting), Some("Running"), "{:#?}", waiting.status);
    assert_eq!(replicas(&ns, "worker").await, Some(3));

    // Below 1000: the wait ends and the workers go back to 1.
    length.store(800, Ordering::SeqCst);
    let run = finished(&ns, "queue-1").await;
    assert_eq!(phase(&run), Some("Succeeded"), "{:#?}", run.status);
    assert_eq!(entry(&run, "wait-for-drain").phase, StepPhase::Succeeded);
    assert_eq!(replicas(&ns, "worker").await, Some(1));
    drop(prometheus);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn database_recoveries_restore_the_newest_verified_backup_and_return_the_app() {
    let mut ns = TestNamespace::new("ex-db-recovery").await;
    ns.apply_examples();
    apply_example_with(
        &ns,
        "db-recovery-docuquery.yaml",
        &[("backoff: 10s", "backoff: 1s")],
    );
    apply_example_with(
        &ns,
        "db-recovery-ai-chat.yaml",
        &[("backoff: 10s", "backoff: 1s")],
    );
    // The compliance recovery ends with an error-ratio query: a real Prometheus scrapes an
    // app that serves 2% errors, measured every second over a 5 s window.
    apply_example_with(
        &ns,
        "db-recovery-compliance.yaml",
        &[("interval: 1m", "interval: 1s"), ("[1m]", "[5s]")],
    );
    let exporter = crate::monitoring::Exporter::start().await;
    exporter.set_traffic(98, 2);
    let prometheus = Prometheus::start(
        "groups: []\n",
        &[ScrapeTarget {
            job: "app".into(),
            target: exporter.target(),
            labels: BTreeMap::from([("service".to_owned(), "app".to_owned())]),
        }],
        "http://127.0.0.1:9",
    )
    .await;
    ns.start_operator();
    available(&ns, "app", 2).await;
    let healthy = switchable_server(Arc::new(AtomicBool::new(true))).await;

    // A verified backup to restore.
    ns.kubectl_ok(&[
        "annotate",
        "backuppolicy",
        "postgres-daily",
        "ops.runbook.dev/backup-now=for-recovery",
        "--overwrite",
    ]);
    let bp = ns
        .wait_for::<BackupPolicy>("postgres-daily", "a verified backup", |bp| {
            bp.status
                .as_ref()
                .is_some_and(|s| s.history.iter().any(|r| r.verified == Some(true)))
        })
        .await;
    let backup = bp
        .status
        .and_then(|s| s.history.into_iter().find(|r| r.verified == Some(true)))
        .expect("verified")
        .job;

    // The app runs 3 replicas: the recovery must return it to 3, not to a hard-coded count.
    ns.kubectl_ok(&["scale", "deployment", "app", "--replicas=3"]);
    available(&ns, "app", 3).await;
    let base = healthy.base.clone();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("db-recovery-paralegal", vec![]),
        ("db-recovery-docuquery", vec![("baseUrl", base.clone())]),
        ("db-recovery-legalllm", vec![]),
        (
            "db-recovery-compliance",
            vec![("prometheus", prometheus.0.base.clone())],
        ),
        (
            "db-recovery-ai-chat",
            vec![("baseUrl", base.clone()), ("backup", backup.clone())],
        ),
    ];
    for (runbook, params) in &cases {
        let name = format!("real-{runbook}");
        ns.apply(&run_yaml(&name, runbook, "Run", params));
        let run = finished(&ns, &name).await;
        assert_eq!(
            phase(&run),
            Some("Succeeded"),
            "{runbook}: {:#?}",
            run.status
        );
        assert_eq!(output(entry(&run, "scale-down"), "previousReplicas"), "3");
        assert_eq!(
            output(entry(&run, "restore"), "backupJob"),
            backup,
            "{runbook} restored another backup"
        );
        available(&ns, "app", 3).await;
        let bp = ns
            .api::<BackupPolicy>()
            .get("postgres-daily")
            .await
            .expect("bp");
        let last = bp.status.and_then(|s| s.last_restore).expect("lastRestore");
        assert_eq!(last.backup_job, backup);
        assert_eq!(last.run.as_deref(), Some(name.as_str()));
    }
    let run = finished(&ns, "real-db-recovery-compliance").await;
    let ratio = entry(&run, "error-ratio");
    assert_eq!(ratio.phase, StepPhase::Succeeded, "{ratio:#?}");
    let last: f64 = output(ratio, "result").parse().expect("a number");
    assert!((0.0..0.05).contains(&last), "{ratio:#?}");
    drop(prometheus);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn high_error_rate_scales_to_its_typed_replicas_param() {
    let mut ns = TestNamespace::new("ex-typed-param").await;
    ns.apply_examples();
    ns.start_operator();
    available(&ns, "app", 2).await;

    ns.apply(&run_yaml(
        "errors-3",
        "incident-high-error-rate",
        "Run",
        &[("replicas", "3".into())],
    ));
    let run = finished(&ns, "errors-3").await;
    assert_eq!(phase(&run), Some("Succeeded"), "{:#?}", run.status);
    assert_eq!(output(entry(&run, "scale-up"), "previousReplicas"), "2");
    available(&ns, "app", 3).await;

    // Below the param's min: the run fails at start, naming the param, and changes nothing.
    ns.apply(&run_yaml(
        "errors-0",
        "incident-high-error-rate",
        "Run",
        &[("replicas", "0".into())],
    ));
    let run = finished(&ns, "errors-0").await;
    assert_eq!(phase(&run), Some("Failed"), "{:#?}", run.status);
    let succeeded = run
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Succeeded"))
        .cloned()
        .expect("Succeeded condition");
    assert_eq!(succeeded.reason, "InvalidSpec", "{succeeded:#?}");
    assert!(succeeded.message.contains("replicas"), "{succeeded:#?}");
    assert_eq!(replicas(&ns, "app").await, Some(3));
}

/// The p99 A2A latency Prometheus computes now from the test's histogram, if it has one.
async fn a2a_p99(prometheus: &Prometheus) -> Option<f64> {
    let query = "histogram_quantile(0.99,%20sum%20by%20(le)%20(rate(a2a_message_latency_seconds_bucket[5s])))";
    let answer = prometheus
        .0
        .get_json(&format!("/api/v1/query?query={query}"))
        .await?;
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
}

#[tokio::test]
#[ignore = "needs the local cluster and Prometheus: make test"]
async fn a2a_latency_restarts_the_agents_only_when_a_real_prometheus_measures_it_high() {
    let mut ns = TestNamespace::new("ex-a2a").await;
    // A histogram of agent message latencies, as the agents would export it: every scrape adds
    // 100 messages, all under 10 ms while `fast`, else all between 10 and 100 ms.
    let fast = Arc::new(AtomicBool::new(true));
    let (under, total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (mode, under_10ms, all) = (fast.clone(), under.clone(), total.clone());
    let exporter = Recorder::start(move |request| {
        if request.path != "/metrics" {
            return (404, "text/plain", "not found\n".to_owned());
        }
        let all = all.fetch_add(100, Ordering::SeqCst) + 100;
        let under = if mode.load(Ordering::SeqCst) {
            under_10ms.fetch_add(100, Ordering::SeqCst) + 100
        } else {
            under_10ms.load(Ordering::SeqCst)
        };
        let body = format!(
            "# TYPE a2a_message_latency_seconds histogram\na2a_message_latency_seconds_bucket{{le=\"0.01\"}} {under}\na2a_message_latency_seconds_bucket{{le=\"0.1\"}} {all}\na2a_message_latency_seconds_bucket{{le=\"+Inf\"}} {all}\na2a_message_latency_seconds_sum 0\na2a_message_latency_seconds_count {all}\n"
        );
        (200, "text/plain; version=0.0.4", body)
    })
    .await;
    let prometheus = Prometheus::start(
        "groups: []\n",
        &[ScrapeTarget {
            job: "agents".into(),
            target: exporter.base.trim_start_matches("http://").to_owned(),
            labels: BTreeMap::from([("namespace".to_owned(), ns.name.clone())]),
        }],
        "http://127.0.0.1:9",
    )
    .await;
    ns.apply_examples();
    // Measurements a second apart over a 5 s window, so the test does not wait minutes.
    apply_example_with(
        &ns,
        "check-a2a-latency.yaml",
        &[("interval: 1m", "interval: 1s"), ("[5m]", "[5s]")],
    );
    ns.start_operator();
    // Waits until Prometheus itself computes a p99 on the wanted side of 50 ms.
    let settled = |low: bool| {
        let prometheus = &prometheus;
        async move {
            let started = std::time::Instant::now();
            loop {
                let p99 = a2a_p99(prometheus).await;
                if p99.is_some_and(|p99| if low { p99 < 0.05 } else { p99 > 0.05 }) {
                    return;
                }
                assert!(
                    started.elapsed() < crate::support::PATIENCE,
                    "Prometheus never reported the A2A p99 {} 50 ms (last: {p99:?}); log:\n{}",
                    if low { "under" } else { "over" },
                    prometheus.0.log_tail()
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };

    // Fast agents: one measurement series passes; nothing is restarted.
    settled(true).await;
    let params = [("prometheus", prometheus.0.base.clone())];
    ns.apply(&run_yaml("a2a-fast", "check-a2a-latency", "Run", &params));
    let run = finished(&ns, "a2a-fast").await;
    assert_eq!(phase(&run), Some("Succeeded"), "{:#?}", run.status);
    let latency = entry(&run, "latency");
    assert_eq!(latency.phase, StepPhase::Succeeded, "{latency:#?}");
    assert_eq!(output(latency, "successful"), "5", "{latency:#?}");
    for step in ["restart-agents", "latency-after-restart"] {
        let skipped = entry(&run, step);
        assert_eq!(skipped.phase, StepPhase::Skipped, "{skipped:#?}");
        assert_eq!(
            skipped.reason.as_deref(),
            Some("ConditionFalse"),
            "{skipped:#?}"
        );
    }

    // Slow agents: the measurement fails, the agents are restarted, and the run fails because
    // the latency stays high after the restart.
    fast.store(false, Ordering::SeqCst);
    settled(false).await;
    ns.apply(&run_yaml("a2a-slow", "check-a2a-latency", "Run", &params));
    let run = finished(&ns, "a2a-slow").await;
    assert_eq!(phase(&run), Some("Failed"), "{:#?}", run.status);
    let latency = entry(&run, "latency");
    assert_eq!(latency.phase, StepPhase::Failed, "{latency:#?}");
    assert_eq!(
        latency.reason.as_deref(),
        Some("MetricFailed"),
        "{latency:#?}"
    );
    assert_eq!(entry(&run, "restart-agents").phase, StepPhase::Succeeded);
    let after = entry(&run, "latency-after-restart");
    assert_eq!(after.reason.as_deref(), Some("MetricFailed"), "{after:#?}");
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    let restarted = app
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/restartedAt"));
    assert!(restarted, "the app's pod template carries the restart");
    drop(prometheus);
}

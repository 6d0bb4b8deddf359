//! The operator's /metrics after real work: a run that succeeds and one that fails are
//! counted by result, their steps timed by type and result, and reconciles counted by how
//! they ended, as a Prometheus scrape would see them.

use runbook_operator::maintenance_window::MaintenanceWindow;
use runbook_operator::runbook_run::RunbookRun;

use crate::support::{PATIENCE, TestNamespace, counter_sum, from_now, http_get, kubectl_in};

async fn finish(ns: &TestNamespace, name: &str) -> String {
    let run = ns
        .wait_for::<RunbookRun>(name, "finished", |r| {
            matches!(
                r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())),
                Some("Succeeded" | "Failed" | "Cancelled")
            )
        })
        .await;
    run.status
        .and_then(|s| s.phase.map(|p| p.as_str().to_owned()))
        .expect("a finished run has a phase")
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn runs_steps_and_reconciles_are_counted_by_result() {
    let mut ns = TestNamespace::new("metrics").await;
    ns.start_operator();
    let probe = ns.operator().probe.clone();
    let scrape = || http_get(&probe, "/metrics").expect("metrics");

    let before = scrape();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        before.contains(&format!(
            "runbook_operator_build_info{{version=\"{version}\"}} 1"
        )),
        "{before}"
    );
    assert_eq!(
        counter_sum(&before, "runbook_operator_runs_total", ""),
        0.0,
        "{before}"
    );

    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: nap}\nspec:\n  steps:\n  - {name: nap, sleep: {duration: 1s}}\n",
    );
    // Port 1 on the loopback refuses connections: the step fails on its only attempt.
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: ping}\nspec:\n  steps:\n  - {name: nap, sleep: {duration: 1s}}\n  - {name: ping, http: {url: \"http://127.0.0.1:1/health\"}}\n  - {name: after, sleep: {duration: 1s}}\n",
    );
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {name: nap-1}\nspec: {runbookRef: {name: nap}}\n",
    );
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {name: ping-1}\nspec: {runbookRef: {name: ping}}\n",
    );
    assert_eq!(finish(&ns, "nap-1").await, "Succeeded");
    assert_eq!(finish(&ns, "ping-1").await, "Failed");

    // A run is counted just after its terminal phase is written (and its lock released), so
    // the counters may lag the phase the test saw: wait until both runs are counted, then
    // check that nothing was counted twice or under the wrong result.
    let n = &ns.name;
    let runs_in = |text: &str, runbook: &str, result: &str| {
        counter_sum(
            text,
            "runbook_operator_runs_total",
            &format!("{{namespace=\"{n}\",runbook=\"{runbook}\",result=\"{result}\"}}"),
        )
    };
    let started = std::time::Instant::now();
    let after = loop {
        let now = scrape();
        if runs_in(&now, "nap", "Succeeded") >= 1.0 && runs_in(&now, "ping", "Failed") >= 1.0 {
            break now;
        }
        assert!(
            started.elapsed() < crate::support::PATIENCE,
            "the finished runs were never counted: {now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let runs = |runbook: &str, result: &str| runs_in(&after, runbook, result);
    assert_eq!(runs("nap", "Succeeded"), 1.0, "{after}");
    assert_eq!(runs("ping", "Failed"), 1.0, "{after}");
    assert_eq!(
        runs("nap", "Failed") + runs("ping", "Succeeded"),
        0.0,
        "{after}"
    );

    let steps = |type_: &str, result: &str| {
        counter_sum(
            &after,
            "runbook_operator_step_duration_seconds_count",
            &format!("{{type=\"{type_}\",result=\"{result}\"}}"),
        )
    };
    // Both runs' sleeps succeeded; the http step failed; "after" was skipped without
    // starting, so it has no duration.
    assert_eq!(steps("sleep", "Succeeded"), 2.0, "{after}");
    assert_eq!(steps("http", "Failed"), 1.0, "{after}");
    assert_eq!(steps("sleep", "Skipped"), 0.0, "{after}");
    let slept = counter_sum(
        &after,
        "runbook_operator_step_duration_seconds_sum",
        "{type=\"sleep\",result=\"Succeeded\"}",
    );
    assert!(slept >= 2.0, "two 1s sleeps took {slept}s: {after}");

    let reconciles = |result: &str| {
        counter_sum(
            &after,
            "runbook_operator_reconcile_total",
            &format!("{{controller=\"runbookrun\",result=\"{result}\"}}"),
        )
    };
    // A sleeping step sets a timer; a finished run waits for the next change.
    assert!(reconciles("requeue_after") >= 1.0, "{after}");
    assert!(reconciles("success") >= 2.0, "{after}");
    // Nothing is reconciling or waiting once both runs are done and settled; then every
    // reconcile counted is counted under exactly one result.
    for controller in ["runbook", "runbookrun"] {
        let settled = crate::support::PATIENCE;
        let started = std::time::Instant::now();
        loop {
            let now = scrape();
            let busy = counter_sum(
                &now,
                "runbook_operator_active_workers",
                &format!("{{controller=\"{controller}\"}}"),
            ) + counter_sum(
                &now,
                "runbook_operator_workqueue_depth",
                &format!("{{controller=\"{controller}\"}}"),
            );
            if busy == 0.0
                && now.contains(&format!("workqueue_depth{{controller=\"{controller}\"}}"))
            {
                break;
            }
            assert!(
                started.elapsed() < settled,
                "{controller} never settled: {now}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    // A deleted Runbook's series go; the other Runbook's stay.
    ns.kubectl_ok(&["delete", "runbook", "nap"]);
    let nap = format!("{{namespace=\"{n}\",runbook=\"nap\"");
    let ping = format!("{{namespace=\"{n}\",runbook=\"ping\",result=\"Failed\"}} 1");
    scrape_until(
        &probe,
        "the deleted Runbook's runs_total series removed",
        |m| !m.contains(&nap) && m.contains(&ping),
    )
    .await;
}

/// Removes the admission policy that refuses writes to a test's Deployment.
struct Lock(String);

impl Lock {
    /// Refuses every update of Deployment `name` (and its scale) in `namespace`.
    fn new(namespace: &str, name: &str) -> Self {
        let policy = format!("{namespace}-lock");
        let yaml = format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {{name: {policy}}}\nspec:\n  failurePolicy: Fail\n  matchConstraints:\n    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {namespace}}}}}\n    resourceRules:\n    - {{apiGroups: [apps], apiVersions: [v1], operations: [UPDATE], resources: [deployments, deployments/scale], resourceNames: [{name}]}}\n  validations:\n  - {{expression: \"false\", message: locked by the test}}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {{name: {policy}}}\nspec: {{policyName: {policy}, validationActions: [Deny]}}\n"
        );
        let out = kubectl_in(None, &["apply", "-f", "-"], Some(&yaml));
        assert!(
            out.status.success(),
            "admission policy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(policy)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = kubectl_in(
            None,
            &[
                "delete",
                "validatingadmissionpolicybinding,validatingadmissionpolicy",
                &self.0,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// Scrapes `/metrics` at `probe` until `done` holds, and returns that scrape. The window gauges
/// are computed from the operator's cache when scraped, and its watch may deliver a status
/// change a moment after the test's own watch did: the figure converges, it is not instant.
async fn scrape_until(probe: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let started = std::time::Instant::now();
    loop {
        let metrics = http_get(probe, "/metrics").expect("metrics");
        if done(&metrics) {
            return metrics;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "metrics never showed {what}: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn gauge(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn window_activity_and_a_refused_restore_are_exported() {
    let mut ns = TestNamespace::new("metrics-mw").await;
    ns.start_operator();
    let probe = ns.operator().probe.clone();
    ns.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: locked}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: locked}}\n  template:\n    metadata: {labels: {app: locked}}\n    spec: {containers: [{name: app, image: \"registry.example.com/app:1\"}]}\n",
    );
    let (start, end) = (from_now(-60), from_now(15));
    ns.apply(&format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: night}}\nspec:\n  start: \"{start}\"\n  end: \"{end}\"\n  targets:\n  - {{kind: Deployment, name: locked, scaleTo: 0}}\n"
    ));
    let phase = |w: &MaintenanceWindow| w.status.as_ref().and_then(|s| s.phase);
    ns.wait_for::<MaintenanceWindow>("night", "Active", |w| {
        phase(w).map(|p| p.as_str()) == Some("Active")
    })
    .await;
    let series = |name: &str| format!("{name}{{namespace=\"{}\",window=\"night\"}}", ns.name);
    let active = series("runbook_operator_maintenance_window_active");
    let failures = series("runbook_operator_window_restore_failures_total");
    let open = scrape_until(&probe, "the window active", |m| {
        gauge(m, &active) == Some(1.0)
    })
    .await;
    assert_eq!(gauge(&open, &failures), None, "{open}");

    // The window cannot put the replicas back once it ends.
    let _lock = Lock::new(&ns.name, "locked");
    let closed = ns
        .wait_for::<MaintenanceWindow>("night", "closed", |w| {
            w.status.as_ref().is_some_and(|s| s.last_window.is_some())
        })
        .await;
    let result = closed
        .status
        .and_then(|s| s.last_window)
        .and_then(|w| w.result);
    assert_eq!(result.as_deref(), Some("Failed"));
    scrape_until(&probe, "the window inactive with one failed restore", |m| {
        gauge(m, &active) == Some(0.0) && gauge(m, &failures) == Some(1.0)
    })
    .await;
    ns.delete_windows().await;
}

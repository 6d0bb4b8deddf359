//! One tenant's hostile objects never take the operator away from another tenant: in one
//! namespace every kind of hostile input at once (durations past any real delay, megabyte
//! parameters, names longer than a label value, names that would address a subresource,
//! blackholed URLs, a 100 MiB answer, a finally step that waits forever and is then deleted),
//! while in another namespace an ordinary run still succeeds, the one operator process never
//! exits, and each hostile object ends in a clear condition.

use std::time::Instant;

use runbook_operator::runbook_run::{RunbookRun, StepPhase};

use crate::egress::{Server, finished, run, runbook};
use crate::outbound::{Blackhole, step_message};
use crate::support::{TestNamespace, condition, counter_sum, entry, http_get_any, run_yaml};

/// Blackholed runs: more than the namespace's outbound slots (8) and the reconcile slots (16).
const BLACKHOLED: usize = 20;

/// Runs the bystander's ordinary run `name`, asserts it succeeded, and returns how long it
/// took from creation to Succeeded (printed as a figure, never compared with a threshold).
async fn ordinary_run(bystander: &TestNamespace, name: &str) -> std::time::Duration {
    let started = Instant::now();
    bystander.apply(&run(name, "ordinary"));
    let done = finished(bystander, name).await;
    let phase = done
        .status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()));
    assert_eq!(phase, Some("Succeeded"), "{name}: {:#?}", done.status);
    started.elapsed()
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_hostile_tenant_never_stops_the_operator_for_another() {
    let hole = Blackhole::start().await;
    let server = Server::start("").await;
    let mut hostile = TestNamespace::new("tenancy-hostile").await;
    let bystander = TestNamespace::new("tenancy-bystander").await;
    bystander.apply(&runbook(
        "ordinary",
        &format!(
            "  - {{name: health, http: {{url: \"{}/health\"}}}}",
            server.base
        ),
    ));
    // One operator for both tenants, as a cluster-wide install serves many teams; a short
    // deletion grace so a finally step that waits forever is cut within the test.
    let operator = hostile.spawn_operator(
        "",
        &["--namespace", &bystander.name, "--deletion-grace", "10s"],
        "ok",
    );
    hostile.adopt_operator(operator);
    // Before the hostile tenant does anything: the bystander's usual figures.
    let before = ordinary_run(&bystander, "ordinary-before").await;

    // 1. Refused at the door, naming the field and the bound: nothing reaches the operator.
    let megabyte = "x".repeat(1 << 20);
    let refusals = [
        (
            runbook(
                "huge-sleep",
                "  - {name: s, timeout: 100000000h, sleep: {duration: 100000000h}}",
            ),
            "at most 8760h",
        ),
        (
            runbook(
                "huge-backoff",
                "  - {name: s, retries: {limit: 3, backoff: 100000000h}, sleep: {duration: 1s}}",
            ),
            "at most 8760h",
        ),
        (
            run_yaml("megabyte", "ordinary", "Run", &[("p", megabyte)]),
            "4096",
        ),
        (
            runbook(
                "subresource",
                "  - {name: p, patch: {target: {apiVersion: v1, kind: ConfigMap, name: x/status}, type: merge, patch: {}}}",
            ),
            "not a path",
        ),
    ];
    for (yaml, words) in &refusals {
        let out = hostile.kubectl(&["create", "-f", "-"], Some(yaml));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(words),
            "refused naming {words:?}: {}",
            &stderr[..stderr.len().min(2000)]
        );
    }

    // 2. Accepted, and each ends in a clear condition.
    let long_name = format!("long-{}", "n".repeat(95));
    hostile.apply(&runbook(
        &long_name,
        "  - {name: nap, sleep: {duration: 1s}}",
    ));
    hostile.apply(&run_yaml("long-name", &long_name, "Run", &[]));
    hostile.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: templated}\nspec:\n  params: [{name: cm, default: settings}]\n  steps:\n  - {name: edit, patch: {target: {apiVersion: v1, kind: ConfigMap, name: \"{{ params.cm }}\"}, type: merge, patch: {data: {a: b}}}}\n",
    );
    hostile.apply(&run_yaml(
        "subresource",
        "templated",
        "Run",
        &[("cm", "x/status".into())],
    ));
    hostile.apply(&runbook(
        "huge-answer",
        &format!(
            "  - {{name: fetch, http: {{url: \"{}/huge\"}}}}",
            server.base
        ),
    ));
    hostile.apply(&run("huge-answer", "huge-answer"));
    hostile.apply(&hole.runbook("blackholed"));
    for i in 0..BLACKHOLED {
        hostile.apply(&run(&format!("blackholed-{i}"), "blackholed"));
    }
    hostile.apply(&runbook(
        "finally-forever",
        "  - {name: nap, sleep: {duration: 1s}}\n  finally:\n  - {name: wait-for-nobody, approval: {message: \"Nobody will answer\"}}",
    ));
    hostile.apply(&run("finally-forever", "finally-forever"));

    // While all of that is in flight, the bystander's run still succeeds.
    for i in 0..BLACKHOLED {
        hostile
            .wait_for::<RunbookRun>(&format!("blackholed-{i}"), "its request pending", |r| {
                step_message(r, "call").contains("waiting for")
            })
            .await;
    }
    let during = ordinary_run(&bystander, "ordinary-during").await;

    // The long name runs; the templated subresource fails InvalidSpec naming the field; the
    // 100 MiB answer is read up to the cap.
    let long = finished(&hostile, "long-name").await;
    assert_eq!(
        long.status
            .as_ref()
            .and_then(|s| s.phase.map(|p| p.as_str())),
        Some("Succeeded"),
        "{:#?}",
        long.status
    );
    let bad = finished(&hostile, "subresource").await;
    let failed = condition(
        &bad.status.as_ref().expect("status").conditions,
        "Succeeded",
    )
    .cloned()
    .expect("Succeeded condition");
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("False", "InvalidSpec"),
        "{failed:?}"
    );
    assert!(
        failed.message.contains("spec.steps[0].patch.target.name"),
        "{failed:?}"
    );
    let huge = finished(&hostile, "huge-answer").await;
    let fetched = entry(&huge, "fetch");
    assert!(
        fetched
            .message
            .as_deref()
            .is_some_and(|m| m.contains("read the first 64 KiB only")),
        "{fetched:#?}"
    );

    // A blackholed run is cancelled: its request is aborted and it ends Cancelled.
    hostile.kubectl_ok(&[
        "annotate",
        "runbookrun",
        "blackholed-0",
        "ops.runbook.dev/cancel=true",
    ]);
    let cancelled = finished(&hostile, "blackholed-0").await;
    assert_eq!(
        cancelled
            .status
            .as_ref()
            .and_then(|s| s.phase.map(|p| p.as_str())),
        Some("Cancelled"),
        "{:#?}",
        cancelled.status
    );

    // The run whose finally waits forever is deleted: once the grace has passed the step is
    // skipped, the finalizer removed, and the run is gone.
    hostile
        .wait_for::<RunbookRun>("finally-forever", "waiting in its finally step", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.steps
                    .iter()
                    .any(|e| e.name == "wait-for-nobody" && e.phase == StepPhase::Running)
            })
        })
        .await;
    hostile.kubectl_ok(&["delete", "runbookrun", "finally-forever", "--wait=false"]);
    hostile
        .wait_gone::<RunbookRun>(
            "finally-forever",
            "its deletion grace cut the finally step short",
        )
        .await;
    hostile
        .wait_for_event(
            "finally-forever",
            "DeletionGraceExpired",
            "\"wait-for-nobody\"",
        )
        .await;

    // And after all of it: the bystander still runs, the process never exited, every
    // controller is alive, and nothing panicked.
    let after = ordinary_run(&bystander, "ordinary-after").await;
    assert!(
        hostile.operator_running(),
        "the operator process exited; log: {}",
        hostile.operator().log.display()
    );
    let operator = hostile.operator();
    let (code, health) = http_get_any(&operator.probe, "/healthz").expect("/healthz answers");
    assert!(
        code == 200 && health.starts_with("ok") && !health.contains("dead"),
        "{code}: {health}"
    );
    let metrics = http_get_any(&operator.probe, "/metrics")
        .expect("/metrics")
        .1;
    assert_eq!(
        counter_sum(&metrics, "runbook_operator_reconcile_panics_total", ""),
        0.0,
        "no reconcile panicked"
    );
    // Figures, not thresholds: what the bystander's run took before, during and after.
    eprintln!(
        "bystander run, create to Succeeded: before {:?}, during {:?}, after {:?}",
        before, during, after
    );
}

//! Per-target serialization (`spec.concurrency`): runs that resolve the same key never run
//! their steps at the same time, whatever Runbook they come from; the lock is a Lease in the
//! namespace, released on finish, cancel and delete; Skip ends a run that finds it taken;
//! runs of different keys run side by side. Orders are checked on the runs' journal times.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DeleteParams, ListParams};
use runbook_operator::runbook_run::{RunPhase, RunbookRun};
use runbook_operator::well_known::LOCK_LABEL;

use crate::support::{PATIENCE, TestNamespace, condition, counter_sum, http_get};

/// A Runbook that scales `{{ params.deployment }}` to `replicas`, then sleeps `nap`, locked
/// on `deployment/{{ params.deployment }}` with `policy`.
fn runbook(name: &str, replicas: i32, nap: &str, policy: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n  params: [{{name: deployment, default: api}}]\n  concurrency: {{key: \"deployment/{{{{ params.deployment }}}}\", policy: {policy}}}\n  steps:\n  - {{name: scale, scale: {{target: {{kind: Deployment, name: \"{{{{ params.deployment }}}}\"}}, replicas: {replicas}}}}}\n  - {{name: hold, sleep: {{duration: {nap}}}}}\n"
    )
}

fn run(name: &str, runbook: &str, deployment: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: {name}}}\nspec:\n  runbookRef: {{name: {runbook}}}\n  params: {{deployment: {deployment}}}\n"
    )
}

pub(crate) fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: {name}, image: \"registry.example.com/{name}:1\"}}]\n"
    )
}

pub(crate) fn phase(run: &RunbookRun) -> Option<RunPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

pub(crate) async fn finished(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, "finished", |r| {
        phase(r).is_some_and(RunPhase::is_finished)
    })
    .await
}

/// When the run's first step started, and when the run finished (journal times).
pub(crate) fn span(run: &RunbookRun) -> (jiff::Timestamp, jiff::Timestamp) {
    let status = run.status.as_ref().expect("status");
    let started = status.steps[0]
        .start_time
        .as_ref()
        .expect("first step start")
        .0;
    let ended = status.completion_time.as_ref().expect("completion").0;
    (started, ended)
}

async fn lock_leases(ns: &TestNamespace) -> Vec<Lease> {
    ns.api::<Lease>()
        .list(&ListParams::default().labels(LOCK_LABEL))
        .await
        .expect("list lock Leases")
        .items
}

/// Waits until no lock Lease is left in the namespace (every holder released).
async fn released(ns: &TestNamespace) {
    let started = std::time::Instant::now();
    loop {
        let left = lock_leases(ns).await;
        if left.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "lock Leases never released: {left:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn two_runs_for_the_same_deployment_take_turns() {
    let mut ns = TestNamespace::new("lock-queue").await;
    ns.start_operator();
    ns.apply(&deployment("api"));
    ns.apply(&runbook("scale-up", 3, "3s", "Queue"));
    ns.apply(&runbook("scale-down", 2, "1s", "Queue"));
    // Two runs of two Runbooks for the same Deployment, created together.
    ns.apply(&format!(
        "{}---\n{}",
        run("first", "scale-up", "api"),
        run("second", "scale-down", "api")
    ));
    let a = finished(&ns, "first").await;
    let b = finished(&ns, "second").await;
    for r in [&a, &b] {
        assert_eq!(phase(r), Some(RunPhase::Succeeded), "{r:#?}");
        let lock = r.status.as_ref().and_then(|s| s.concurrency.as_ref());
        assert_eq!(lock.map(|l| l.key.as_str()), Some("deployment/api"));
    }
    let (a_start, a_end) = span(&a);
    let (b_start, b_end) = span(&b);
    // Whichever went first, the other's first step started only once it had finished.
    let (first, later) = if a_start <= b_start {
        ((a_start, a_end), (b_start, "second"))
    } else {
        ((b_start, b_end), (a_start, "first"))
    };
    assert!(
        later.0 >= first.1,
        "run {:?} started its first step at {} before the other finished at {}",
        later.1,
        later.0,
        first.1
    );
    // It was queued (naming the holder, or saying the holder created the Lease first).
    ns.wait_for_event(
        later.1,
        "WaitingForLock",
        "waiting for the lock on \"deployment/api\"",
    )
    .await;
    released(&ns).await;
    let metrics = http_get(&ns.operator().probe, "/metrics").expect("metrics");
    assert!(
        counter_sum(&metrics, "runbook_operator_run_locks_total", "waited") >= 1.0,
        "{metrics}"
    );
    assert!(counter_sum(&metrics, "runbook_operator_run_locks_total", "acquired") >= 2.0);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn skip_ends_a_run_whose_target_is_locked_and_a_deleted_holder_releases() {
    let mut ns = TestNamespace::new("lock-skip").await;
    ns.start_operator();
    ns.apply(&deployment("api"));
    ns.apply(&runbook("long", 2, "10m", "Queue"));
    ns.apply(&runbook("skipper", 3, "1s", "Skip"));
    ns.apply(&runbook("quick", 4, "1s", "Queue"));
    ns.apply(&run("holder", "long", "api"));
    ns.wait_for::<RunbookRun>("holder", "holding the lock and running", |r| {
        phase(r) == Some(RunPhase::Running)
    })
    .await;

    // Skip: ends Cancelled without running a step.
    ns.apply(&run("skipped", "skipper", "api"));
    let skipped = finished(&ns, "skipped").await;
    let status = skipped.status.as_ref().expect("status");
    assert_eq!(status.phase, Some(RunPhase::Cancelled));
    let succeeded = condition(&status.conditions, "Succeeded").expect("Succeeded");
    assert_eq!(succeeded.reason, "ConcurrencySkipped");
    assert!(succeeded.message.contains("\"holder\""), "{succeeded:?}");
    assert!(status.steps.is_empty(), "{status:#?}");

    // Queue: waits, naming the holder.
    ns.apply(&run("waiter", "quick", "api"));
    let waiting = ns
        .wait_for::<RunbookRun>("waiter", "waiting for the lock", |r| {
            r.status.as_ref().is_some_and(|s| {
                condition(&s.conditions, "Succeeded").is_some_and(|c| c.reason == "WaitingForLock")
            })
        })
        .await;
    let status = waiting.status.as_ref().expect("status");
    assert_eq!(status.phase, Some(RunPhase::Pending));
    let message = &condition(&status.conditions, "Succeeded")
        .expect("Succeeded")
        .message;
    assert!(message.contains("held by run \"holder\""), "{message}");
    let deployment = ns.api::<Deployment>().get("api").await.expect("api");
    assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(2));

    // The holder is deleted mid-run: it is cancelled, releases, and the waiter runs.
    ns.api::<RunbookRun>()
        .delete("holder", &DeleteParams::default())
        .await
        .expect("delete holder");
    let waiter = finished(&ns, "waiter").await;
    assert_eq!(phase(&waiter), Some(RunPhase::Succeeded), "{waiter:#?}");
    let deployment = ns.api::<Deployment>().get("api").await.expect("api");
    assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(4));
    released(&ns).await;
    let metrics = http_get(&ns.operator().probe, "/metrics").expect("metrics");
    assert!(counter_sum(&metrics, "runbook_operator_run_locks_total", "skipped") >= 1.0);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn runs_of_different_keys_run_side_by_side() {
    let mut ns = TestNamespace::new("lock-keys").await;
    ns.start_operator();
    ns.apply(&deployment("api"));
    ns.apply(&deployment("web"));
    ns.apply(&runbook("scale", 2, "4s", "Queue"));
    ns.apply(&format!(
        "{}---\n{}",
        run("for-api", "scale", "api"),
        run("for-web", "scale", "web")
    ));
    let a = finished(&ns, "for-api").await;
    let b = finished(&ns, "for-web").await;
    assert_eq!(phase(&a), Some(RunPhase::Succeeded));
    assert_eq!(phase(&b), Some(RunPhase::Succeeded));
    let (a_start, a_end) = span(&a);
    let (b_start, b_end) = span(&b);
    // Each started its steps while the other was still running.
    assert!(a_start < b_end && b_start < a_end, "{a:#?}\n{b:#?}");
    assert!(ns.event_messages("for-web", "WaitingForLock").is_empty());
    assert!(ns.event_messages("for-api", "WaitingForLock").is_empty());
    released(&ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_lock_whose_holder_vanished_is_taken_over() {
    let mut ns = TestNamespace::new("lock-vanished").await;
    ns.apply(&deployment("api"));
    ns.apply(&runbook("scale", 3, "1s", "Queue"));
    // A lock left behind by a run that no longer exists (as after an operator crash between
    // a holder's deletion and its release): no run has this uid.
    let lease = runbook_operator::names::lock_lease("deployment/api");
    ns.apply(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {lease}\n  labels: {{{LOCK_LABEL}: \"true\"}}\nspec: {{holderIdentity: 00000000-0000-0000-0000-000000000000}}\n"
    ));
    ns.start_operator();
    ns.apply(&run("after", "scale", "api"));
    let after = finished(&ns, "after").await;
    assert_eq!(phase(&after), Some(RunPhase::Succeeded), "{after:#?}");
    released(&ns).await;
    let metrics = http_get(&ns.operator().probe, "/metrics").expect("metrics");
    assert_eq!(
        counter_sum(&metrics, "runbook_operator_run_locks_total", "taken_over"),
        1.0,
        "{metrics}"
    );
}

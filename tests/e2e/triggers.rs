//! What starts a run and what ends one, as a user sees it with kubectl: the run-now
//! annotation, the schedule, history pruning, cancelling and deleting a running run, runs held
//! for a maintenance window, and Plan mode.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::ListParams;
use runbook_operator::maintenance_window::MaintenanceWindow;
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunbookRun, StepPhase, StepStatus, TriggerType};

use crate::support::{PATIENCE, TestNamespace, condition, counter_sum, from_now, http_get, ready};

/// A schedule test waits for up to two minute boundaries (the first after the Runbook was
/// created, then the next one), so it needs more than PATIENCE. A bound on hanging, not a
/// timing assertion.
const SCHEDULE_PATIENCE: Duration = Duration::from_secs(150);

fn runbook(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

fn run(name: &str, runbook: &str, spec: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: {name}}}\nspec:\n  runbookRef: {{name: {runbook}}}\n{spec}\n"
    )
}

fn deployment(name: &str, replicas: i32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: app, image: \"{name}:1\"}}]}}\n"
    )
}

fn phase(run: &RunbookRun) -> &str {
    run.status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()))
        .unwrap_or("")
}

fn finished(run: &RunbookRun) -> bool {
    matches!(phase(run), "Succeeded" | "Failed" | "Cancelled")
}

fn step<'a>(run: &'a RunbookRun, name: &str) -> &'a StepStatus {
    run.status
        .as_ref()
        .and_then(|s| s.steps.iter().find(|e| e.name == name))
        .unwrap_or_else(|| panic!("run {} has no step {name:?}: {run:#?}", run.name_any()))
}

fn output<'a>(entry: &'a StepStatus, key: &str) -> Option<&'a str> {
    entry.outputs.get(key).map(String::as_str)
}

/// The runs of `runbook`, by name.
async fn runs_of(ns: &TestNamespace, runbook: &str) -> Vec<RunbookRun> {
    let mut runs: Vec<RunbookRun> = ns
        .api::<RunbookRun>()
        .list(&ListParams::default())
        .await
        .expect("list runs")
        .items
        .into_iter()
        .filter(|r| r.spec.runbook_ref.name == runbook)
        .collect();
    runs.sort_by_key(|r| r.name_any());
    runs
}

fn names(runs: &[RunbookRun]) -> Vec<String> {
    runs.iter().map(|r| r.name_any()).collect()
}

/// Polls `probe` until it returns Ok, for at most `bound`; the error is the last thing seen.
async fn eventually<T>(
    what: &str,
    bound: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                started.elapsed() < bound,
                "{what} never happened; last seen: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn annotate(ns: &TestNamespace, kind: &str, name: &str, annotation: &str) {
    ns.kubectl_ok(&["annotate", kind, name, "--overwrite", annotation]);
}

/// Reconciles the running operator's `controller` has finished.
fn reconciles(ns: &TestNamespace, controller: &str) -> f64 {
    let metrics = http_get(&ns.operator().probe, "/metrics").expect("metrics");
    counter_sum(
        &metrics,
        "runbook_operator_reconciles_total",
        &format!("controller=\"{controller}\""),
    )
}

/// Waits until the operator has finished at least `at_least` Runbook reconciles.
async fn runbook_reconciles(ns: &TestNamespace, at_least: f64) {
    eventually("Runbook reconciles", PATIENCE, async || {
        let seen = reconciles(ns, "runbook");
        if seen >= at_least {
            Ok(())
        } else {
            Err(format!("{seen} reconciles"))
        }
    })
    .await;
}

async fn wait_ready_runbook(ns: &TestNamespace, name: &str) -> Runbook {
    ns.wait_for::<Runbook>(name, "Ready", |o| {
        o.status
            .as_ref()
            .is_some_and(|s| ready(&s.conditions, s.observed_generation, o.metadata.generation))
    })
    .await
}

async fn wait_phase(ns: &TestNamespace, name: &str, want: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, want, |r| phase(r) == want)
        .await
}

async fn replicas(ns: &TestNamespace, name: &str) -> i32 {
    ns.api::<Deployment>()
        .get(name)
        .await
        .expect("get deployment")
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or_default()
}

/// `kubectl annotate runbook X ops.runbook.dev/run-now=TOKEN` starts exactly one run per
/// distinct token, across repeats and operator restarts.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn run_now_starts_one_run_per_token() {
    let mut ns = TestNamespace::new("run-now").await;
    ns.apply(&deployment("app", 1));
    ns.apply(&runbook(
        "scale-up",
        "  steps:\n  - {name: more, scale: {target: {kind: Deployment, name: app}, by: 1}}\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    ns.start_operator();
    wait_ready_runbook(&ns, "scale-up").await;
    assert!(runs_of(&ns, "scale-up").await.is_empty());

    annotate(&ns, "runbook", "scale-up", "ops.runbook.dev/run-now=t1");
    ns.wait_for::<Runbook>("scale-up", "handled t1", |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.last_handled_run_now.as_deref() == Some("t1"))
    })
    .await;
    let runs = runs_of(&ns, "scale-up").await;
    assert_eq!(runs.len(), 1, "one token, one run: {:?}", names(&runs));
    let first = runs[0].name_any();
    assert!(first.starts_with("scale-up-now-"), "{first}");
    let trigger = runs[0].spec.trigger.clone().expect("trigger");
    assert_eq!(trigger.type_, TriggerType::Manual);
    assert!(
        trigger.source.as_deref().is_some_and(|s| s.contains("t1")),
        "{trigger:?}"
    );
    let done = wait_phase(&ns, &first, "Succeeded").await;
    assert_eq!(step(&done, "more").phase, StepPhase::Succeeded);
    assert_eq!(replicas(&ns, "app").await, 2);
    ns.wait_for::<Runbook>("scale-up", "lastRun Succeeded", |o| {
        o.status
            .as_ref()
            .and_then(|s| s.last_run.as_ref())
            .is_some_and(|l| l.name == first && l.phase.as_deref() == Some("Succeeded"))
    })
    .await;

    // The same token again (with another annotation, so the Runbook does change and is
    // reconciled): nothing new.
    let before = reconciles(&ns, "runbook");
    ns.kubectl_ok(&[
        "annotate",
        "runbook",
        "scale-up",
        "--overwrite",
        "ops.runbook.dev/run-now=t1",
        "example.com/touched=yes",
    ]);
    runbook_reconciles(&ns, before + 1.0).await;
    assert_eq!(names(&runs_of(&ns, "scale-up").await), [first.as_str()]);

    // A restarted operator reconciles the Runbook again: still nothing new.
    ns.stop_operator();
    ns.start_operator();
    runbook_reconciles(&ns, 1.0).await;
    assert_eq!(names(&runs_of(&ns, "scale-up").await), [first.as_str()]);
    assert_eq!(replicas(&ns, "app").await, 2, "the run acted once");

    // A new token: a second run.
    annotate(&ns, "runbook", "scale-up", "ops.runbook.dev/run-now=t2");
    let second = eventually("a second run", PATIENCE, async || {
        let runs = runs_of(&ns, "scale-up").await;
        match runs.iter().find(|r| r.name_any() != first) {
            Some(r) if runs.len() == 2 => Ok(r.clone()),
            _ => Err(format!("{:?}", names(&runs))),
        }
    })
    .await;
    let second_name = second.name_any();
    assert!(second_name.starts_with("scale-up-now-"), "{second_name}");
    let trigger = second.spec.trigger.clone().expect("trigger");
    assert_eq!(trigger.type_, TriggerType::Manual);
    assert!(
        trigger.source.as_deref().is_some_and(|s| s.contains("t2")),
        "{trigger:?}"
    );
    wait_phase(&ns, &second_name, "Succeeded").await;
    assert_eq!(replicas(&ns, "app").await, 3);
    let rb = ns
        .wait_for::<Runbook>("scale-up", "lastRun the newest", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|l| l.name == second_name && l.phase.as_deref() == Some("Succeeded"))
        })
        .await;
    let status = rb.status.expect("status");
    assert_eq!(status.last_handled_run_now.as_deref(), Some("t2"));
    assert_eq!(runs_of(&ns, "scale-up").await.len(), 2);
    // `kubectl get rb` shows it.
    let table = ns.kubectl_ok(&["get", "rb", "scale-up"]);
    assert!(
        table.contains(&second_name) && table.contains("Succeeded"),
        "{table}"
    );
    finish_all_runs(&ns).await;
}

/// A `* * * * *` schedule starts one run per minute, named after the minute; a restart
/// does not start a second run for the same minute; a suspended schedule starts nothing;
/// concurrencyPolicy Forbid skips a time while the previous run still runs, Replace cancels
/// the running one and starts the new one.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn schedule_starts_one_run_per_minute() {
    let mut ns = TestNamespace::new("schedule").await;
    ns.apply(&runbook(
        "every-minute",
        "  schedule: {cron: \"* * * * *\"}\n  steps:\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    ns.apply(&runbook(
        "paused",
        "  schedule: {cron: \"* * * * *\", suspend: true}\n  steps:\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    ns.apply(&runbook(
        "forbid",
        "  schedule: {cron: \"* * * * *\", concurrencyPolicy: Forbid}\n  steps:\n  - {name: long, sleep: {duration: 10m}}",
    ));
    ns.apply(&runbook(
        "replace",
        "  schedule: {cron: \"* * * * *\", concurrencyPolicy: Replace}\n  steps:\n  - {name: long, sleep: {duration: 10m}}",
    ));
    ns.start_operator();
    let rb = wait_ready_runbook(&ns, "every-minute").await;
    let created = rb
        .metadata
        .creation_timestamp
        .clone()
        .expect("creationTimestamp")
        .0;
    let next = rb
        .status
        .as_ref()
        .and_then(|s| s.next_schedule_time.clone())
        .expect("nextScheduleTime while waiting for the first run")
        .0;
    assert_eq!(next.as_second() % 60, 0, "a minute boundary: {next}");
    assert!(next > created, "{next} after creation at {created}");

    // The first run, for the next minute boundary.
    let first = eventually("the first scheduled run", SCHEDULE_PATIENCE, async || {
        let runs = runs_of(&ns, "every-minute").await;
        match runs.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{:?}", names(other))),
        }
    })
    .await;
    let trigger = first.spec.trigger.clone().expect("trigger");
    assert_eq!(trigger.type_, TriggerType::Schedule);
    let at = trigger.scheduled_time.expect("scheduledTime").0;
    // The first minute boundary after creation (the Runbook may have been read just after
    // that boundary passed, when nextScheduleTime already named the following minute).
    let first_boundary =
        jiff::Timestamp::from_second((created.as_second() / 60 + 1) * 60).expect("a timestamp");
    assert_eq!(
        at, first_boundary,
        "the first run stands for the first minute after creation"
    );
    assert!(at <= next, "{at} is not after the announced {next}");
    assert_eq!(
        first.name_any(),
        format!("every-minute-{}", at.as_second() / 60)
    );
    let rb = ns
        .wait_for::<Runbook>("every-minute", "scheduled", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.last_schedule_time.as_ref())
                .is_some_and(|t| t.0 == at)
        })
        .await;
    let status = rb.status.expect("status");
    assert_eq!(
        status.next_schedule_time.map(|t| t.0.as_second()),
        Some(at.as_second() + 60),
        "nextScheduleTime is the following minute"
    );
    wait_phase(&ns, &first.name_any(), "Succeeded").await;

    // The suspended schedule: no next time, no run, though a scheduled minute has passed.
    let paused = wait_ready_runbook(&ns, "paused").await;
    let status = paused.status.expect("status");
    assert_eq!(status.next_schedule_time, None, "{status:?}");
    assert!(runs_of(&ns, "paused").await.is_empty());

    // The Forbid runbook started its (long) run for the same minute.
    let forbid_runs = runs_of(&ns, "forbid").await;
    let forbid_run = format!("forbid-{}", at.as_second() / 60);
    assert_eq!(names(&forbid_runs), [forbid_run.as_str()]);
    let replaced_run = format!("replace-{}", at.as_second() / 60);
    let replacing_run = format!("replace-{}", at.as_second() / 60 + 1);
    eventually("the Replace runbook's first run", PATIENCE, async || {
        let names = names(&runs_of(&ns, "replace").await);
        if names == [replaced_run.as_str()] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;

    // A restarted operator does not start another run for a minute that already has one.
    ns.stop_operator();
    ns.start_operator();
    runbook_reconciles(&ns, 4.0).await;
    let check_names = |runs: &[RunbookRun], runbook: &str| {
        let mut minutes = Vec::new();
        for r in runs {
            let t = r
                .spec
                .trigger
                .as_ref()
                .and_then(|t| t.scheduled_time.as_ref())
                .expect("scheduledTime")
                .0;
            assert_eq!(r.name_any(), format!("{runbook}-{}", t.as_second() / 60));
            minutes.push(t.as_second() / 60);
        }
        let count = minutes.len();
        minutes.dedup();
        assert_eq!(minutes.len(), count, "two runs for one minute: {runs:#?}");
    };
    check_names(&runs_of(&ns, "every-minute").await, "every-minute");
    assert!(runs_of(&ns, "paused").await.is_empty());

    // The schedule goes on after the restart: the next minute gets its run ...
    let second_name = format!("every-minute-{}", at.as_second() / 60 + 1);
    let second = eventually("the second scheduled run", SCHEDULE_PATIENCE, async || {
        let runs = runs_of(&ns, "every-minute").await;
        runs.iter()
            .find(|r| r.name_any() == second_name)
            .cloned()
            .ok_or_else(|| format!("{:?}", names(&runs)))
    })
    .await;
    assert_eq!(
        second
            .spec
            .trigger
            .as_ref()
            .and_then(|t| t.scheduled_time.as_ref())
            .map(|t| t.0.as_second()),
        Some(at.as_second() + 60)
    );
    check_names(&runs_of(&ns, "every-minute").await, "every-minute");

    // ... while Forbid skips it, with a Warning Event naming the run still going.
    let skipped = eventually("a ScheduleSkipped Event", SCHEDULE_PATIENCE, async || {
        let messages = ns.event_messages("forbid", "ScheduleSkipped");
        if messages.is_empty() {
            Err("no Event".into())
        } else {
            Ok(messages)
        }
    })
    .await;
    assert!(skipped.contains(&forbid_run), "{skipped}");
    assert_eq!(names(&runs_of(&ns, "forbid").await), [forbid_run.as_str()]);
    assert!(runs_of(&ns, "paused").await.is_empty());

    // Replace cancels the run still going and starts the new one.
    let cancelled = wait_phase(&ns, &replaced_run, "Cancelled").await;
    assert_eq!(
        output(step(&cancelled, "long"), "reason"),
        Some("Cancelled")
    );
    ns.wait_for::<RunbookRun>(&replacing_run, "running", |r| phase(r) == "Running")
        .await;
    assert_eq!(
        names(&runs_of(&ns, "replace").await),
        [replaced_run.as_str(), replacing_run.as_str()]
    );

    // Cancelling a scheduled run does not stop the schedule.
    annotate(
        &ns,
        "runbookrun",
        &replacing_run,
        "ops.runbook.dev/cancel=done",
    );
    wait_phase(&ns, &replacing_run, "Cancelled").await;
    let rb = ns.api::<Runbook>().get("replace").await.expect("runbook");
    assert!(
        rb.status.and_then(|s| s.next_schedule_time).is_some(),
        "the schedule goes on"
    );

    // Leave nothing behind: a running run's finalizer would hold the namespace once the
    // operator is gone.
    for name in ["every-minute", "forbid", "replace"] {
        ns.kubectl_ok(&[
            "patch",
            "runbook",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"schedule":{"suspend":true}}}"#,
        ]);
        let rb = wait_ready_runbook(&ns, name).await;
        assert_eq!(
            rb.status.and_then(|s| s.next_schedule_time),
            None,
            "{name}: suspended, no next time"
        );
    }
    finish_all_runs(&ns).await;
}

/// Whether the run is still held by the operator's finalizer.
fn holds(run: &RunbookRun) -> bool {
    run.finalizers()
        .iter()
        .any(|f| f == "ops.runbook.dev/finally")
}

/// Cancels every unfinished run of the namespace and waits until all are finished and
/// released, so the namespace can go once the operator is stopped.
async fn finish_all_runs(ns: &TestNamespace) {
    let runs = ns
        .api::<RunbookRun>()
        .list(&ListParams::default())
        .await
        .expect("list runs");
    for r in runs.items.iter().filter(|r| !finished(r)) {
        annotate(
            ns,
            "runbookrun",
            &r.name_any(),
            "ops.runbook.dev/cancel=cleanup",
        );
    }
    eventually("every run finished and released", PATIENCE, async || {
        let runs = ns
            .api::<RunbookRun>()
            .list(&ListParams::default())
            .await
            .expect("list runs");
        let busy: Vec<String> = runs
            .items
            .iter()
            .filter(|r| !finished(r) || holds(r))
            .map(|r| format!("{} {}", r.name_any(), phase(r)))
            .collect();
        if busy.is_empty() {
            Ok(())
        } else {
            Err(format!("{busy:?}"))
        }
    })
    .await;
}

/// historyLimits keep the newest finished runs per outcome and prune the oldest first;
/// status.lastRun follows the newest run.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn history_keeps_the_newest_runs_per_outcome() {
    let mut ns = TestNamespace::new("history").await;
    ns.apply(&deployment("app", 1));
    ns.apply(&runbook(
        "hist",
        "  params: [{name: target, default: app}]\n  historyLimits: {successful: 1, failed: 1}\n  steps:\n  - {name: size, scale: {target: {kind: Deployment, name: \"{{ params.target }}\"}, replicas: 1}}\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    ns.start_operator();
    wait_ready_runbook(&ns, "hist").await;

    // (run, succeeds?, the runs kept afterwards). Created one after another, each once the
    // previous one has finished, so creation order is the order of the names too.
    let sequence: [(&str, bool, &[&str]); 6] = [
        ("h1", true, &["h1"]),
        ("h2", false, &["h1", "h2"]),
        ("h3", true, &["h2", "h3"]),
        ("h4", false, &["h3", "h4"]),
        ("h5", false, &["h3", "h5"]),
        ("h6", true, &["h5", "h6"]),
    ];
    for (name, succeeds, kept) in sequence {
        let params = if succeeds {
            "  params: {target: app}"
        } else {
            "  params: {target: missing}"
        };
        ns.apply(&run(name, "hist", params));
        let done = ns.wait_for::<RunbookRun>(name, "finished", finished).await;
        if succeeds {
            assert_eq!(phase(&done), "Succeeded", "{done:#?}");
        } else {
            assert_eq!(phase(&done), "Failed", "{done:#?}");
            assert_eq!(
                output(step(&done, "size"), "reason"),
                Some("TargetNotFound")
            );
        }
        eventually(
            &format!("history {kept:?} after {name}"),
            PATIENCE,
            async || {
                let names = names(&runs_of(&ns, "hist").await);
                if names == kept {
                    Ok(())
                } else {
                    Err(format!("{names:?}"))
                }
            },
        )
        .await;
        let want_phase = if succeeds { "Succeeded" } else { "Failed" };
        ns.wait_for::<Runbook>("hist", &format!("lastRun {name}"), |o| {
            o.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|l| l.name == name && l.phase.as_deref() == Some(want_phase))
        })
        .await;
    }
    finish_all_runs(&ns).await;
}

const LONG_RUNBOOK: &str = "  params: [{name: marker}]
  steps:
  - name: work
    job:
      template:
        spec:
          backoffLimit: 0
          template:
            metadata: {annotations: {sim.runbook.dev/run-for: 60s}}
            spec: {restartPolicy: Never, containers: [{name: work, image: busybox}]}
  - {name: after, sleep: {duration: 1s}}
  finally:
  - {name: cleanup, scale: {target: {kind: Deployment, name: \"{{ params.marker }}\"}, replicas: 2}}";

/// Waits until the run's job step is running with its Job created; returns the Job's name.
async fn job_running(ns: &TestNamespace, run: &str) -> String {
    let run = ns
        .wait_for::<RunbookRun>(run, "running its Job", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.steps.iter().any(|e| {
                    e.name == "work"
                        && e.phase == StepPhase::Running
                        && e.outputs.contains_key("jobName")
                })
            })
        })
        .await;
    let job = output(step(&run, "work"), "jobName")
        .expect("jobName")
        .to_owned();
    ns.wait_for::<Job>(&job, "created", |_| true).await;
    job
}

/// Cancelling a run stops its Job, skips what is left and still runs finally; deleting a
/// running run runs finally before the run goes away.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn cancel_and_delete_run_finally() {
    let mut ns = TestNamespace::new("cancel").await;
    ns.apply(&deployment("mark-cancel", 1));
    ns.apply(&deployment("mark-delete", 1));
    ns.apply(&runbook("long", LONG_RUNBOOK));
    ns.start_operator();
    wait_ready_runbook(&ns, "long").await;

    ns.apply(&run("cancel-me", "long", "  params: {marker: mark-cancel}"));
    let job = job_running(&ns, "cancel-me").await;
    annotate(&ns, "runbookrun", "cancel-me", "ops.runbook.dev/cancel=now");
    let done = wait_phase(&ns, "cancel-me", "Cancelled").await;
    let work = step(&done, "work");
    assert_ne!(work.phase, StepPhase::Succeeded, "{work:?}");
    assert_eq!(output(work, "reason"), Some("Cancelled"), "{work:?}");
    assert_eq!(step(&done, "after").phase, StepPhase::Skipped);
    assert_eq!(step(&done, "cleanup").phase, StepPhase::Succeeded);
    let status = done.status.clone().expect("status");
    let succeeded = condition(&status.conditions, "Succeeded").expect("Succeeded condition");
    assert_eq!(
        (succeeded.status.as_str(), succeeded.reason.as_str()),
        ("False", "Cancelled")
    );
    assert!(status.completion_time.is_some());
    assert_eq!(replicas(&ns, "mark-cancel").await, 2, "finally ran");
    let left = ns.api::<Job>().get_opt(&job).await.expect("get job");
    assert!(
        left.as_ref()
            .is_none_or(|j| j.metadata.deletion_timestamp.is_some()),
        "the cancelled run's Job is still there: {left:#?}"
    );
    // A finished run is no longer held by the finally finalizer.
    ns.wait_for::<RunbookRun>("cancel-me", "released", |r| !holds(r))
        .await;

    // Deleting a running run: finally runs, then the run disappears.
    ns.apply(&run("delete-me", "long", "  params: {marker: mark-delete}"));
    let job = job_running(&ns, "delete-me").await;
    ns.kubectl_ok(&["delete", "runbookrun", "delete-me", "--wait=false"]);
    ns.wait_gone::<RunbookRun>("delete-me", "its finalizer removed once finally is done")
        .await;
    assert_eq!(
        replicas(&ns, "mark-delete").await,
        2,
        "the deleted run's finally step did not run"
    );
    eventually(
        "a Cancelled Event for the deleted run",
        PATIENCE,
        async || {
            let cancelled = ns.event_messages("delete-me", "Cancelled");
            if cancelled.is_empty() {
                Err("no Event".into())
            } else {
                Ok(())
            }
        },
    )
    .await;
    eventually("the deleted run's Job to go", PATIENCE, async || {
        match ns.api::<Job>().get_opt(&job).await.expect("get job") {
            Some(j) if j.metadata.deletion_timestamp.is_none() => Err(format!("{:?}", j.status)),
            _ => Ok(()),
        }
    })
    .await;
    finish_all_runs(&ns).await;
}

/// A deleted run whose finally step waits forever (an approval without timeout) is held
/// only for the operator's `--deletion-grace`: then the step is skipped, a Warning Event
/// names it, the finalizer goes and so does the run.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_finally_step_that_waits_forever_is_cut_short_by_the_deletion_grace() {
    let mut ns = TestNamespace::new("grace").await;
    ns.apply(&runbook(
        "waits",
        "  steps:\n  - {name: work, sleep: {duration: 10m}}\n  finally:\n  - {name: ask, approval: {message: \"Tidy up?\"}}",
    ));
    let operator = ns.spawn_operator("", &["--deletion-grace", "10s"], "ok");
    ns.adopt_operator(operator);
    wait_ready_runbook(&ns, "waits").await;
    ns.apply(&run("doomed", "waits", ""));
    ns.wait_for::<RunbookRun>("doomed", "working", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.steps
                .first()
                .is_some_and(|e| e.phase == StepPhase::Running)
        })
    })
    .await;
    ns.kubectl_ok(&["delete", "runbookrun", "doomed", "--wait=false"]);
    // Deleted: the main step is cancelled and the finally approval waits, holding the run.
    ns.wait_for::<RunbookRun>("doomed", "waiting in finally", |r| {
        r.metadata.deletion_timestamp.is_some()
            && r.status.as_ref().is_some_and(|s| {
                s.steps
                    .iter()
                    .any(|e| e.name == "ask" && e.phase == StepPhase::Running)
            })
    })
    .await;
    ns.wait_gone::<RunbookRun>("doomed", "the deletion grace cut its finally step short")
        .await;
    let messages = ns
        .wait_for_event("doomed", "DeletionGraceExpired", "\"ask\"")
        .await;
    assert!(messages.contains("10s"), "{messages}");
}

/// A one-off MaintenanceWindow labelled `window: <label>`, open from `start` to `end`, that
/// scales Deployment `target` to 0.
fn window(name: &str, label: &str, start: Timestamp, end: Timestamp, target: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: {name}, labels: {{window: {label}}}}}\nspec:\n  start: \"{start}\"\n  end: \"{end}\"\n  targets: [{{kind: Deployment, name: {target}, scaleTo: 0}}]\n"
    )
}

fn window_active(mw: &MaintenanceWindow) -> bool {
    mw.status
        .as_ref()
        .is_some_and(|s| condition(&s.conditions, "Active").is_some_and(|c| c.status == "True"))
}

fn active_and_ready(mw: &MaintenanceWindow) -> bool {
    window_active(mw)
        && mw
            .status
            .as_ref()
            .is_some_and(|s| ready(&s.conditions, s.observed_generation, mw.metadata.generation))
}

/// A Runbook that requires a maintenance window holds its runs in WaitingForWindow while the
/// matching MaintenanceWindow is only scheduled (an open window with other labels does not
/// count), and starts them once that window opens.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn runs_wait_for_an_active_maintenance_window() {
    let mut ns = TestNamespace::new("window").await;
    ns.apply(&deployment("weekly-app", 1));
    ns.apply(&deployment("nightly-app", 1));
    ns.apply(&runbook(
        "needs-window",
        "  requiresMaintenanceWindow: {selector: {matchLabels: {window: nightly}}}\n  steps:\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    // Open since before it was created (so it opens at once), with other labels.
    ns.apply(&window(
        "weekly",
        "weekly",
        from_now(-60),
        from_now(600),
        "weekly-app",
    ));
    ns.start_operator();
    wait_ready_runbook(&ns, "needs-window").await;
    ns.wait_for::<MaintenanceWindow>("weekly", "Active and Ready", active_and_ready)
        .await;

    ns.apply(&run("held", "needs-window", ""));
    let held = wait_phase(&ns, "held", "WaitingForWindow").await;
    let status = held.status.clone().expect("status");
    let succeeded = condition(&status.conditions, "Succeeded").expect("Succeeded condition");
    assert_eq!(succeeded.status, "Unknown");
    assert!(
        succeeded.message.contains("window=nightly"),
        "the condition says which window the run waits for: {}",
        succeeded.message
    );
    // What it waits for is told in an Event.
    eventually("a WaitingForWindow Event", PATIENCE, async || {
        let waiting = ns.event_messages("held", "WaitingForWindow");
        if waiting.contains("window=nightly") {
            Ok(())
        } else {
            Err(waiting)
        }
    })
    .await;
    assert!(
        status.start_time.is_none() && status.steps.iter().all(|s| s.phase == StepPhase::Pending),
        "a held run has not started: {status:?}"
    );
    let table = ns.kubectl_ok(&["get", "rbr", "held"]);
    assert!(table.contains("WaitingForWindow"), "{table}");

    // The matching window, opening in a few seconds: the run stays held until it is open,
    // then starts and succeeds.
    let opens = from_now(15);
    ns.apply(&window(
        "nightly",
        "nightly",
        opens,
        opens + SignedDuration::from_mins(10),
        "nightly-app",
    ));
    let scheduled = ns
        .wait_for::<MaintenanceWindow>("nightly", "Ready", |mw| {
            mw.status.as_ref().is_some_and(|s| {
                ready(&s.conditions, s.observed_generation, mw.metadata.generation)
            })
        })
        .await;
    assert!(!window_active(&scheduled), "{:#?}", scheduled.status);
    eventually("the nightly window to open", PATIENCE, async || {
        // The run is read before the window: if the window is still closed after, it was
        // closed while the run was read.
        let run = ns.api::<RunbookRun>().get("held").await.expect("run");
        let mw = ns
            .api::<MaintenanceWindow>()
            .get("nightly")
            .await
            .expect("window");
        if window_active(&mw) {
            return Ok(());
        }
        assert_eq!(
            phase(&run),
            "WaitingForWindow",
            "the run started before its window opened: {:#?}",
            mw.status
        );
        Err(format!("window {:?}", mw.status))
    })
    .await;
    let done = wait_phase(&ns, "held", "Succeeded").await;
    assert_eq!(step(&done, "nap").phase, StepPhase::Succeeded);
    let started = done
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .expect("startTime")
        .0;
    assert!(
        started >= opens,
        "started at {started}, the window opened at {opens}"
    );
    finish_all_runs(&ns).await;
    ns.delete_windows().await;
}

/// A Plan-mode run changes nothing: the scale is a dry run, http and job steps are Skipped
/// with reason Plan, and the run Succeeds.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn plan_mode_changes_nothing() {
    let mut ns = TestNamespace::new("plan").await;
    ns.apply(&deployment("app", 1));
    ns.apply(&runbook(
        "preview",
        "  steps:
  - {name: up, scale: {target: {kind: Deployment, name: app}, replicas: 3}}
  - {name: ping, http: {url: \"http://127.0.0.1:9/never\", method: POST}}
  - name: migrate
    job:
      template:
        spec:
          template:
            spec: {restartPolicy: Never, containers: [{name: migrate, image: busybox}]}",
    ));
    ns.start_operator();
    wait_ready_runbook(&ns, "preview").await;
    let before = ns.api::<Deployment>().get("app").await.expect("deployment");

    ns.apply(&run("dry", "preview", "  mode: Plan"));
    let done = wait_phase(&ns, "dry", "Succeeded").await;
    let up = step(&done, "up");
    assert_eq!(up.phase, StepPhase::Succeeded, "{up:?}");
    assert_eq!(output(up, "previousReplicas"), Some("1"), "{up:?}");
    assert_eq!(output(up, "replicas"), Some("3"), "{up:?}");
    assert!(
        up.message.as_deref().is_some_and(|m| m.contains("Plan")),
        "{up:?}"
    );
    for name in ["ping", "migrate"] {
        let entry = step(&done, name);
        assert_eq!(entry.phase, StepPhase::Skipped, "{entry:?}");
        assert_eq!(output(entry, "reason"), Some("Plan"), "{entry:?}");
    }
    let succeeded = condition(
        &done.status.clone().expect("status").conditions,
        "Succeeded",
    )
    .cloned()
    .expect("Succeeded condition");
    assert_eq!(succeeded.status, "True");

    let after = ns.api::<Deployment>().get("app").await.expect("deployment");
    assert_eq!(after.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(after.metadata.generation, before.metadata.generation);
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .expect("list jobs");
    assert!(
        jobs.items.is_empty(),
        "Plan mode created Jobs: {:?}",
        jobs.items.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    finish_all_runs(&ns).await;
}

/// A run held for a window can be cancelled before the window opens: it ends at once with
/// nothing run, and stays so once the window is open (while a new run then does run).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn cancelling_a_run_held_for_a_window_ends_it() {
    let mut ns = TestNamespace::new("window-cancel").await;
    ns.apply(&deployment("nightly-app", 1));
    ns.apply(&runbook(
        "needs-window",
        "  requiresMaintenanceWindow: {selector: {matchLabels: {window: nightly}}}\n  steps:\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    let opens = from_now(20);
    ns.apply(&window(
        "nightly",
        "nightly",
        opens,
        opens + SignedDuration::from_mins(10),
        "nightly-app",
    ));
    ns.start_operator();
    wait_ready_runbook(&ns, "needs-window").await;
    ns.apply(&run("dropped", "needs-window", ""));
    wait_phase(&ns, "dropped", "WaitingForWindow").await;
    annotate(&ns, "runbookrun", "dropped", "ops.runbook.dev/cancel=now");
    let done = wait_phase(&ns, "dropped", "Cancelled").await;
    let status = done.status.expect("status");
    let succeeded = condition(&status.conditions, "Succeeded").expect("Succeeded");
    assert_eq!(
        (succeeded.status.as_str(), succeeded.reason.as_str()),
        ("False", "Cancelled")
    );
    assert!(status.start_time.is_none(), "nothing ran: {status:#?}");
    assert!(
        status.steps.is_empty(),
        "no journal for a run that never started"
    );

    // The window opens: a new run goes through, the cancelled one stays as it was.
    ns.wait_for::<MaintenanceWindow>("nightly", "Active", window_active)
        .await;
    ns.apply(&run("later", "needs-window", ""));
    wait_phase(&ns, "later", "Succeeded").await;
    let dropped = ns.api::<RunbookRun>().get("dropped").await.expect("run");
    let status = dropped.status.expect("status");
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Cancelled"));
    assert!(
        status.start_time.is_none() && status.steps.is_empty(),
        "the cancelled run did not start when its window opened: {status:#?}"
    );
    finish_all_runs(&ns).await;
    ns.delete_windows().await;
}

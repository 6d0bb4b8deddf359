//! Every file in examples/ is accepted and every resource in it reaches Ready; `kubectl get`
//! and `kubectl explain` read well; a settled object costs no writes.

use runbook_operator::backup_policy::BackupPolicy;
use runbook_operator::blue_green::BlueGreenRelease;
use runbook_operator::maintenance_window::MaintenanceWindow;
use runbook_operator::runbook::{Runbook, RunbookPhase};
use runbook_operator::runbook_run::RunbookRun;

use crate::support::{
    TestNamespace, condition, counter_sum, example_names, http_get, kubectl_in, ready,
};

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn every_example_is_accepted_and_ready() {
    let mut ns = TestNamespace::new("examples").await;
    ns.apply_examples();
    ns.start_operator();

    let mut total = 0;
    for name in example_names("Runbook") {
        ns.wait_for::<Runbook>(&name, "Ready", |o| {
            o.status.as_ref().is_some_and(|s| {
                ready(&s.conditions, s.observed_generation, o.metadata.generation)
                    && s.phase == Some(RunbookPhase::Ready)
            })
        })
        .await;
        total += 1;
    }
    for name in example_names("RunbookRun") {
        // The example run is a Plan-mode preview: it runs to the end on the local cluster.
        let run = ns
            .wait_for::<RunbookRun>(&name, "Succeeded and Ready", |o| {
                o.status.as_ref().is_some_and(|s| {
                    ready(&s.conditions, s.observed_generation, o.metadata.generation)
                        && s.phase.map(|p| p.as_str()) == Some("Succeeded")
                })
            })
            .await;
        // Settled means its Runbook shows it as the last run, too.
        ns.wait_for::<Runbook>(
            &run.spec.runbook_ref.name,
            "showing the run as lastRun",
            |rb| {
                rb.status
                    .as_ref()
                    .and_then(|s| s.last_run.as_ref())
                    .is_some_and(|l| l.name == name && l.phase.as_deref() == Some("Succeeded"))
            },
        )
        .await;
        total += 1;
    }
    for name in example_names("MaintenanceWindow") {
        ns.wait_for::<MaintenanceWindow>(&name, "Ready", |o| {
            o.status.as_ref().is_some_and(|s| {
                ready(&s.conditions, s.observed_generation, o.metadata.generation)
                    && s.phase.map(|p| p.as_str()) == Some("Scheduled")
            })
        })
        .await;
        total += 1;
    }
    for name in example_names("BlueGreenRelease") {
        // Ready only says the release is valid; it is settled once its first release is done
        // (Reconciling=False, reason Settled). The restart below must find it settled: a
        // release still rolling out is rightly carried on by a restarted operator (the Service
        // switch after the status recorded it, the switch Event), which is not a settled write.
        ns.wait_for::<BlueGreenRelease>(&name, "Ready and settled", |o| {
            o.status.as_ref().is_some_and(|s| {
                ready(&s.conditions, s.observed_generation, o.metadata.generation)
                    && condition(&s.conditions, "Reconciling")
                        .is_some_and(|c| c.status == "False" && c.reason == "Settled")
            })
        })
        .await;
        total += 1;
    }
    for name in example_names("BackupPolicy") {
        ns.wait_for::<BackupPolicy>(&name, "Ready", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| ready(&s.conditions, s.observed_generation, o.metadata.generation))
        })
        .await;
        total += 1;
    }
    assert!(total >= 5, "examples hold at least one object of each kind");

    // `kubectl get ops` lists every kind with its columns.
    let out = ns.kubectl(&["get", "ops"], None);
    let table = String::from_utf8_lossy(&out.stdout);
    for header in [
        "SCHEDULE",
        "LAST RUN",
        "LAST RESULT",
        "NEXT RUN",
        "RUNBOOK",
        "PHASE",
        "STEP",
        "TRIGGER",
        "STARTED",
        "NEXT START",
        "NEXT END",
        "ACTIVE",
        "REVISION",
        "LAST SUCCESS",
        "FRESH",
        "NEXT",
    ] {
        assert!(
            table.contains(header),
            "kubectl get ops lacks column {header}:\n{table}"
        );
    }
    for name in example_names("MaintenanceWindow") {
        assert!(
            table.contains(&format!("maintenancewindow.ops.runbook.dev/{name}")),
            "{table}"
        );
    }
    let out = ns.kubectl(&["get", "maintenancewindows"], None);
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap_or_default();
    let columns: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        columns,
        [
            "NAME",
            "PHASE",
            "NEXT START",
            "NEXT END",
            "LAST RESULT",
            "AGE"
        ],
        "{table}"
    );
    assert!(
        table.contains("monthly-maintenance") && table.contains("Scheduled"),
        "{table}"
    );

    // A scheduled Runbook shows when it runs next as a readable time.
    let rb = ns
        .wait_for::<Runbook>("daily-health-check", "showing its next run", |rb| {
            rb.status
                .as_ref()
                .is_some_and(|s| s.next_schedule_time.is_some())
        })
        .await;
    let next = rb
        .status
        .and_then(|s| s.next_schedule_time)
        .expect("next")
        .0;
    let out = ns.kubectl(&["get", "runbook", "daily-health-check"], None);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&next.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            && !table.contains("<invalid>"),
        "NEXT RUN should read as a time: {table}"
    );

    // Short names work.
    for short in ["rb", "rbr", "mw", "bgr", "bp"] {
        let out = ns.kubectl(&["get", short], None);
        assert!(
            out.status.success(),
            "kubectl get {short}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A settled object costs zero writes: a fresh operator reconciles everything once and
    // writes nothing.
    ns.start_operator();
    let probe = ns.operator().probe.clone();
    let metrics = loop {
        let text = http_get(&probe, "/metrics").expect("metrics");
        if counter_sum(&text, "runbook_operator_reconciles_total", "") >= total as f64 {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        counter_sum(&metrics, "runbook_operator_api_writes_total", ""),
        0.0,
        "a restarted operator rewrote settled objects:\n{metrics}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn kubectl_explain_describes_fields() {
    for (path, words) in [
        ("runbook.spec.steps.timeout", "Longest time one attempt"),
        ("maintenancewindow.spec.schedule.cron", "SUN#1"),
        ("bluegreenrelease.spec.slotLabel", "ops.runbook.dev/slot"),
        ("backuppolicy.spec.rpo", "Recovery-point objective"),
        ("runbookrun.status.steps.outputs", "previousReplicas"),
    ] {
        let out = kubectl_in(None, &["explain", path], None);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(words),
            "kubectl explain {path}:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

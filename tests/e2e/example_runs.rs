//! Every example Runbook runs in Plan mode without changing anything, and those the local
//! cluster can execute run for real (HTTP steps against a server on 127.0.0.1).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use runbook_operator::backup_policy::{BackupPolicy, BackupStage};
use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestNamespace, example_names, run_yaml};

/// A server on 127.0.0.1 that answers every request 200 `{"status":"ok"}`.
async fn healthy_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let body = r#"{"status":"ok"}"#;
                let _ = socket
                    .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
    port
}

/// The names of the namespace's Jobs, sorted.
async fn job_names(ns: &TestNamespace) -> Vec<String> {
    let jobs = ns
        .api::<k8s_openapi::api::batch::v1::Job>()
        .list(&Default::default())
        .await
        .expect("jobs");
    let mut names: Vec<String> = jobs
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    names
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

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn every_example_runbook_previews_in_plan_mode_and_changes_nothing() {
    let mut ns = TestNamespace::new("plan-examples").await;
    ns.apply_examples();
    ns.start_operator();
    let app = ns
        .wait_for::<Deployment>("app", "Available", |d| {
            d.status.as_ref().and_then(|s| s.available_replicas) == Some(2)
        })
        .await;
    // The database recoveries preview which backup they would restore: there is one, verified.
    ns.kubectl_ok(&[
        "annotate",
        "backuppolicy",
        "postgres-daily",
        "ops.runbook.dev/backup-now=plan-examples",
        "--overwrite",
    ]);
    ns.wait_for::<BackupPolicy>("postgres-daily", "a verified backup, all Jobs done", |bp| {
        bp.status.as_ref().is_some_and(|s| {
            s.history
                .iter()
                .any(|r| r.verified == Some(true) && r.stage == BackupStage::Done)
        })
    })
    .await;
    let jobs_before = job_names(&ns).await;
    let token_before = ns
        .api::<Secret>()
        .get("app-api-token")
        .await
        .expect("secret")
        .data;

    let runbooks = example_names("Runbook");
    assert!(
        runbooks.len() >= 7,
        "examples cover the spec's procedures: {runbooks:?}"
    );
    // The examples of the README's seed table are among them.
    for deciding in [
        "check-a2a-latency",
        "db-recovery-ai-chat",
        "db-recovery-compliance",
        "db-recovery-docuquery",
        "db-recovery-legalllm",
        "db-recovery-paralegal",
        "incident-queue-overflow",
        "incident-service-down",
    ] {
        assert!(
            runbooks.iter().any(|r| r == deciding),
            "{deciding} missing: {runbooks:?}"
        );
    }
    for runbook in &runbooks {
        ns.apply(&run_yaml(&format!("plan-{runbook}"), runbook, "Plan", &[]));
    }
    for runbook in &runbooks {
        let run = finished(&ns, &format!("plan-{runbook}")).await;
        let status = run.status.unwrap_or_default();
        assert_eq!(
            status.phase.map(|p| p.as_str()),
            Some("Succeeded"),
            "Plan run of {runbook}: {status:#?}"
        );
        for entry in &status.steps {
            assert!(
                matches!(entry.phase, StepPhase::Succeeded | StepPhase::Skipped),
                "Plan run of {runbook}, step {}: {entry:#?}",
                entry.name
            );
            let message = entry.message.clone().unwrap_or_default();
            if entry.phase == StepPhase::Skipped {
                // Skipped because Plan mode does not act, or because its `when` was false
                // on what Plan mode knows (the journal then shows the condition).
                let plan = entry.outputs.get("reason").map(String::as_str) == Some("Plan");
                let condition_false =
                    entry.reason.as_deref() == Some("ConditionFalse") && entry.condition.is_some();
                assert!(plan || condition_false, "{runbook}: {entry:#?}");
            }
            assert!(!message.is_empty(), "{runbook}/{}: no message", entry.name);
        }
    }
    // Nothing changed: same Deployment generation, no new Jobs, the same Secret.
    let after = ns.api::<Deployment>().get("app").await.expect("app");
    assert_eq!(
        after.metadata.generation, app.metadata.generation,
        "a Plan run changed Deployment/app"
    );
    assert_eq!(
        job_names(&ns).await,
        jobs_before,
        "a Plan run created Jobs (before: the backup's own)"
    );
    let token_after = ns
        .api::<Secret>()
        .get("app-api-token")
        .await
        .expect("secret")
        .data;
    assert_eq!(token_before, token_after, "a Plan run rotated the Secret");
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn example_runbooks_run_for_real_on_the_local_cluster() {
    let mut ns = TestNamespace::new("real-examples").await;
    let port = healthy_server().await;
    let base = format!("http://127.0.0.1:{port}");
    ns.apply_examples();
    ns.start_operator();
    ns.wait_for::<Deployment>("app", "Available", |d| {
        d.status.as_ref().and_then(|s| s.available_replicas) == Some(2)
    })
    .await;
    let token_before = ns
        .api::<Secret>()
        .get("app-api-token")
        .await
        .expect("secret")
        .data;

    // One at a time: several of them restart the same Deployment.
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("daily-health-check", vec![("baseUrl", base.clone())]),
        ("db-idle-connections", vec![]),
        ("cache-flush", vec![]),
        ("rotate-api-token", vec![]),
        ("pre-maintenance-backup", vec![]),
        (
            "deploy-with-backup",
            vec![
                ("baseUrl", base.clone()),
                ("image", "registry.example.com/shop/app:1.5.0".into()),
            ],
        ),
    ];
    for (runbook, params) in &cases {
        let name = format!("real-{runbook}");
        ns.apply(&run_yaml(&name, runbook, "Run", params));
        let run = finished(&ns, &name).await;
        let status = run.status.clone().unwrap_or_default();
        assert_eq!(
            status.phase.map(|p| p.as_str()),
            Some("Succeeded"),
            "{runbook}: {status:#?}"
        );
        let yaml = String::from_utf8_lossy(
            &ns.kubectl(&["get", "runbookrun", &name, "-o", "yaml"], None)
                .stdout,
        )
        .into_owned();
        let token = ns
            .api::<Secret>()
            .get("app-api-token")
            .await
            .expect("secret")
            .data
            .unwrap_or_default();
        if let Some(value) = token.get("token") {
            let value = String::from_utf8_lossy(&value.0).into_owned();
            assert!(
                !yaml.contains(&value),
                "{runbook}: the rotated token appears in the run's status"
            );
        }
    }
    // The health check really reached the server and recorded the answer.
    let health = ns
        .api::<RunbookRun>()
        .get("real-daily-health-check")
        .await
        .expect("run");
    let first = &health.status.unwrap_or_default().steps[0];
    assert_eq!(
        first.outputs.get("httpStatus").map(String::as_str),
        Some("200")
    );
    // The token was rotated; the deploy rolled out the new image.
    let token_after = ns
        .api::<Secret>()
        .get("app-api-token")
        .await
        .expect("secret")
        .data;
    assert_ne!(
        token_before, token_after,
        "rotate-api-token did not change the Secret"
    );
    let image = ns
        .api::<Deployment>()
        .get("app")
        .await
        .expect("app")
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].image.clone());
    assert_eq!(
        image,
        Some(Some("registry.example.com/shop/app:1.5.0".into()))
    );
    let events =
        String::from_utf8_lossy(&ns.kubectl(&["get", "events", "-o", "yaml"], None).stdout)
            .into_owned();
    if let Some(value) = token_after.unwrap_or_default().get("token") {
        assert!(
            !events.contains(&*String::from_utf8_lossy(&value.0)),
            "the rotated token appears in an Event"
        );
    }
}

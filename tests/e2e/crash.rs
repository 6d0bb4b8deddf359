//! Crash safety: the operator is killed (SIGKILL) at random moments while several multi-step
//! runs execute, and restarted each time. Every run must still finish, and no side effect may
//! repeat: `scale by` applied once per step, one Job per job step and attempt, a notification
//! sent at most once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use rand::Rng;
use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestNamespace;

/// Runs per round.
const RUNS: usize = 4;
/// Rounds, each with fresh runs and Deployments: more kills at more different moments.
const ROUNDS: usize = 3;

/// A webhook receiver on 127.0.0.1 that counts requests per path.
async fn webhook() -> (u16, Arc<Mutex<BTreeMap<String, usize>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let counts = Arc::new(Mutex::new(BTreeMap::new()));
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let mut read = 0;
                // Read the head and whatever body arrived; a notify body is tiny.
                while read < buffer.len() {
                    match socket.read(&mut buffer[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                    let text = String::from_utf8_lossy(&buffer[..read]);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
                if let Some(path) = text.split_whitespace().nth(1) {
                    *seen
                        .lock()
                        .expect("lock")
                        .entry(path.to_owned())
                        .or_insert(0) += 1;
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, counts)
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn killed_at_random_moments_no_side_effect_repeats() {
    let mut ns = TestNamespace::new("crash").await;
    let (port, hits) = webhook().await;
    ns.apply(&RUNBOOK.replace("PORT", &port.to_string()));
    let mut kills = 0;
    for round in 0..ROUNDS {
        kills += round_of_kills(&mut ns, round, &hits).await;
    }
    assert!(
        kills >= 10,
        "the operator was killed only {kills} times; the test proves little"
    );
    eprintln!("crash test: {kills} kills over {ROUNDS} rounds");
}

/// The Runbook every run executes: side effects of every kind, some slow enough to be
/// interrupted.
const RUNBOOK: &str = r#"apiVersion: ops.runbook.dev/v1alpha1
kind: Runbook
metadata: {name: crash-test}
spec:
  params: [{name: app}]
  steps:
  - {name: grow, scale: {target: {kind: Deployment, name: "{{ params.app }}"}, by: 1}}
  - name: migrate
    job:
      template:
        spec:
          backoffLimit: 0
          template:
            metadata: {annotations: {sim.runbook.dev/run-for: "1s"}}
            spec: {restartPolicy: Never, containers: [{name: m, image: migrate:1}]}
  - {name: flag, setEnv: {target: {kind: Deployment, name: "{{ params.app }}"}, set: [{name: MIGRATED, value: "yes"}]}}
  - {name: tell, onFailure: Continue, notify: {url: "http://127.0.0.1:PORT/hook/{{ params.app }}", message: "migrated"}}
  - {name: bounce, restart: {target: {kind: Deployment, name: "{{ params.app }}"}}}
  - {name: grow-again, scale: {target: {kind: Deployment, name: "{{ params.app }}"}, by: 1}}
"#;

/// Starts RUNS runs, kills the operator at random moments until they finish, checks them.
/// Returns how many times the operator was killed.
async fn round_of_kills(
    ns: &mut TestNamespace,
    round: usize,
    hits: &Arc<Mutex<BTreeMap<String, usize>>>,
) -> usize {
    for i in 0..RUNS {
        let app = format!("app-{round}-{i}");
        ns.apply(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec: {{containers: [{{name: app, image: app:1}}]}}\n"
        ));
    }
    for i in 0..RUNS {
        ns.apply(&format!(
            "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: run-{round}-{i}, labels: {{round: \"{round}\"}}}}\nspec:\n  runbookRef: {{name: crash-test}}\n  params: {{app: app-{round}-{i}}}\n"
        ));
    }

    let runs = ns.api::<RunbookRun>();
    let started = Instant::now();
    let mut kills = 0;
    loop {
        ns.start_operator();
        let pause = rand::rng().random_range(100..900);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let all = runs
            .list(&ListParams::default().labels(&format!("round={round}")))
            .await
            .expect("list runs")
            .items;
        let finished = all
            .iter()
            .filter(|r| {
                matches!(
                    r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())),
                    Some("Succeeded" | "Failed" | "Cancelled")
                )
            })
            .count();
        if finished == RUNS {
            break;
        }
        // SIGKILL, mid-whatever-it-was-doing.
        ns.stop_operator();
        kills += 1;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "runs did not finish after {kills} kills: {all:#?}"
        );
    }

    let deployments = ns.api::<Deployment>();
    let jobs = ns.api::<Job>();
    let counts = hits.lock().expect("lock").clone();
    for i in 0..RUNS {
        let run = runs.get(&format!("run-{round}-{i}")).await.expect("run");
        let status = run.status.clone().unwrap_or_default();
        assert_eq!(
            status.phase.map(|p| p.as_str()),
            Some("Succeeded"),
            "run-{round}-{i}: {status:#?}"
        );
        for entry in &status.steps {
            if entry.name != "tell" {
                assert_eq!(
                    entry.phase,
                    StepPhase::Succeeded,
                    "run-{round}-{i} step {}: {entry:#?}",
                    entry.name
                );
            }
        }
        // Two `scale by 1` steps: exactly +2, however often the operator died.
        let replicas = deployments
            .get(&format!("app-{round}-{i}"))
            .await
            .expect("deployment")
            .spec
            .and_then(|s| s.replicas);
        assert_eq!(
            replicas,
            Some(3),
            "run-{round}-{i}: scale by was applied more or less than once per step"
        );
        // One Job per job step attempt.
        let migrate = status
            .steps
            .iter()
            .find(|e| e.name == "migrate")
            .expect("migrate step");
        let made = jobs
            .list(&ListParams::default().labels(&format!("ops.runbook.dev/run=run-{round}-{i}")))
            .await
            .expect("jobs")
            .items
            .len();
        assert_eq!(
            made as i32, migrate.attempts,
            "run-{round}-{i}: Jobs created vs attempts"
        );
        // The notification: at most once; when its delivery is unknown the step says so.
        let sent = counts
            .get(&format!("/hook/app-{round}-{i}"))
            .copied()
            .unwrap_or(0);
        let tell = status
            .steps
            .iter()
            .find(|e| e.name == "tell")
            .expect("tell step");
        assert!(sent <= 1, "run-{round}-{i}: notification sent {sent} times");
        match tell.phase {
            StepPhase::Succeeded => assert_eq!(
                sent, 1,
                "run-{round}-{i}: step says sent, server saw {sent}"
            ),
            StepPhase::Failed => assert_eq!(
                tell.outputs.get("reason").map(String::as_str),
                Some("DeliveryUnknown"),
                "run-{round}-{i}: {tell:#?}"
            ),
            other => panic!("run-{round}-{i}: notify step ended {other:?}"),
        }
    }
    kills
}

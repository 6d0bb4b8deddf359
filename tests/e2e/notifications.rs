//! Lifecycle notifications: a failed run tells a webhook once, also across an operator
//! restart; an approval tells it with the approve command and escalates while unanswered,
//! never after it is answered; a failed backup tells it once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use runbook_operator::backup_policy::BackupPolicy;
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunPhase, RunbookRun};
use runbook_operator::well_known::{APPROVE, BACKUP_NOW};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestNamespace, run_yaml};

/// What the webhook received: (path, body) in arrival order.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook receiver on 127.0.0.1 that keeps every request's path and body.
async fn webhook() -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received: Received = Arc::default();
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                let mut read = 0;
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
                let path = text
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let body = text
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_owned())
                    .unwrap_or_default();
                seen.lock().expect("lock").push((path, body));
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, received)
}

/// The bodies received on `path`.
fn bodies(received: &Received, path: &str) -> Vec<String> {
    received
        .lock()
        .expect("lock")
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| b.clone())
        .collect()
}

/// Waits until `path` received at least one request; returns its bodies.
async fn wait_for_hit(received: &Received, path: &str) -> Vec<String> {
    let started = Instant::now();
    loop {
        let found = bodies(received, path);
        if !found.is_empty() {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "nothing arrived on {path}; received: {:?}",
            received.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Job template (flow YAML) whose pod fails at once.
const FAILING_JOB: &str = "{spec: {backoffLimit: 0, template: {metadata: {labels: {sim.runbook.dev/outcome: fail}}, spec: {restartPolicy: Never, containers: [{name: c, image: \"registry.example.com/tool:1\"}]}}}}";

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_failed_run_notifies_once_across_a_restart() {
    let mut ns = TestNamespace::new("notify-fail").await;
    let (port, received) = webhook().await;
    ns.apply(&format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: breaks}}\nspec:\n  description: first\n  steps:\n  - {{name: migrate, job: {{template: {FAILING_JOB}}}}}\n  notifications:\n  - events: [RunFailed]\n    notify: {{url: \"http://127.0.0.1:{port}/failed\"}}\n    message: \"{{{{ event.name }}}}: {{{{ object.metadata.name }}}} ({{{{ event.id }}}})\"\n"
    ));
    ns.start_operator();
    ns.apply(&run_yaml("breaks-1", "breaks", "Run", &[]));
    ns.wait_for::<RunbookRun>("breaks-1", "Failed", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Failed)
    })
    .await;
    let first = wait_for_hit(&received, "/failed").await;
    assert!(
        first[0].contains("RunFailed: breaks (RunFailed/breaks-1)"),
        "{first:?}"
    );
    let rb = ns
        .wait_for::<Runbook>("breaks", "recording the message", |rb| {
            rb.status.as_ref().is_some_and(|s| {
                s.sent_notifications
                    .iter()
                    .any(|n| n.event_id == "RunFailed/breaks-1")
            })
        })
        .await;
    assert_eq!(rb.status.expect("status").sent_notifications.len(), 1);

    // A restarted operator reconciles the Runbook again (a spec edit proves it did) and
    // finds the record: no second message.
    ns.start_operator();
    let patch = json!({"spec": {"description": "second"}});
    let edited = ns
        .api::<Runbook>()
        .patch("breaks", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit the Runbook");
    let generation = edited.metadata.generation;
    ns.wait_for::<Runbook>("breaks", "reconciled after the restart", |rb| {
        rb.status.as_ref().and_then(|s| s.observed_generation) == generation
    })
    .await;
    assert_eq!(bodies(&received, "/failed").len(), 1);
}

/// A Runbook `name` whose one step waits for approval, telling /NAME/first and escalating to
/// /NAME/escalate after `after`.
fn gate(name: &str, port: u16, after: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n  steps:\n  - {{name: hold, approval: {{message: \"go?\"}}}}\n  notifications:\n  - events: [ApprovalNeeded]\n    notify: {{url: \"http://127.0.0.1:{port}/{name}/first\"}}\n    escalate:\n    - {{after: {after}, notify: {{url: \"http://127.0.0.1:{port}/{name}/escalate\"}}}}\n"
    )
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn an_approval_escalates_while_unanswered_and_not_after_it_is_answered() {
    let mut ns = TestNamespace::new("notify-approval").await;
    let (port, received) = webhook().await;
    ns.apply(&gate("answered", port, "4s"));
    ns.apply(&gate("ignored", port, "4s"));
    ns.start_operator();

    // Answered at once: the first message holds the approve command.
    ns.apply(&run_yaml("answered-1", "answered", "Run", &[]));
    let first = wait_for_hit(&received, "/answered/first").await;
    let command = format!("kubectl runbook approve answered-1 hold -n {}", ns.name);
    assert!(first[0].contains(&command), "{first:?}");
    let approve = json!({"metadata": {"annotations": {APPROVE: "hold"}}});
    ns.api::<RunbookRun>()
        .patch(
            "answered-1",
            &PatchParams::default(),
            &Patch::Merge(&approve),
        )
        .await
        .expect("approve");
    ns.wait_for::<RunbookRun>("answered-1", "Succeeded", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Succeeded)
    })
    .await;

    // Left unanswered, started later: its escalation arrives after the answered one's would
    // have, which is what shows the answered one's never came.
    ns.apply(&run_yaml("ignored-1", "ignored", "Run", &[]));
    wait_for_hit(&received, "/ignored/first").await;
    let escalated = wait_for_hit(&received, "/ignored/escalate").await;
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert!(escalated[0].contains("[escalation 1]"), "{escalated:?}");
    assert!(bodies(&received, "/answered/escalate").is_empty());
    assert_eq!(bodies(&received, "/answered/first").len(), 1);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_failed_backup_notifies_once() {
    let mut ns = TestNamespace::new("notify-backup").await;
    let (port, received) = webhook().await;
    ns.apply(&format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: db, annotations: {{{BACKUP_NOW}: \"t1\"}}}}\nspec:\n  schedule: {{cron: \"0 0 1 1 *\"}}\n  jobTemplate: {FAILING_JOB}\n  notifications:\n  - events: [BackupFailed]\n    notify: {{url: \"http://127.0.0.1:{port}/backup\"}}\n    message: \"{{{{ event.id }}}} {{{{ event.message }}}}\"\n"
    ));
    ns.start_operator();
    let bp = ns
        .wait_for::<BackupPolicy>("db", "recording BackupFailed", |bp| {
            bp.status.as_ref().is_some_and(|s| {
                s.sent_notifications
                    .iter()
                    .any(|n| n.event_id.starts_with("BackupFailed/"))
            })
        })
        .await;
    let sent = bodies(&received, "/backup");
    let got = wait_for_hit(&received, "/backup").await;
    assert!(got[0].contains("BackupFailed"), "{got:?} {sent:?}");
    let id = &bp.status.expect("status").sent_notifications[0].event_id;
    assert!(got[0].contains(id.as_str()), "{got:?}");
    assert_eq!(bodies(&received, "/backup").len(), 1);
}

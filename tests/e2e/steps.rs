//! Every step type the operator executes, checked the way a user would: `kubectl get` of the
//! run (phase, the Succeeded condition, each step's phase, message and outputs) and of the
//! objects the steps act on. http and notify steps talk to a small HTTP server the test runs on
//! 127.0.0.1; the operator runs on the same machine, so it reaches it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Pod, Secret};
use kube::api::ListParams;
use runbook_operator::runbook_run::{RunbookRun, StepPhase, StepStatus};
use runbook_operator::well_known::ROTATABLE_LABEL;
use tokio::net::{TcpListener, TcpStream};

use crate::support::{PATIENCE, TestNamespace, condition, entry, output};

// ---------------------------------------------------------------------------------------------
// manifests
// ---------------------------------------------------------------------------------------------

pub(crate) fn runbook(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

/// A RunbookRun of `runbook`; `extra` holds further spec lines (indented by two spaces).
pub(crate) fn run(name: &str, runbook: &str, extra: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: {name}}}\nspec:\n  runbookRef: {{name: {runbook}}}\n{extra}\n"
    )
}

/// A Deployment labelled `app: <name>` with the given containers (a YAML flow list).
fn deployment(name: &str, replicas: i32, containers: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: {containers}\n"
    )
}

/// A Deployment with one container named after it.
pub(crate) fn simple_deployment(name: &str, replicas: i32) -> String {
    deployment(
        name,
        replicas,
        &format!("[{{name: {name}, image: \"registry.example.com/{name}:1\"}}]"),
    )
}

/// A Job template (JobTemplateSpec, flow YAML) whose pod succeeds, or fails when `fail`.
fn job_template(fail: bool) -> String {
    let labels = if fail {
        "{sim.runbook.dev/outcome: fail}"
    } else {
        "{}"
    };
    pod_job_template(labels, "{}")
}

/// A Job template with the given pod labels and annotations (flow YAML maps).
fn pod_job_template(labels: &str, annotations: &str) -> String {
    format!(
        "{{spec: {{backoffLimit: 0, template: {{metadata: {{labels: {labels}, annotations: {annotations}}}, spec: {{restartPolicy: Never, containers: [{{name: task, image: \"registry.example.com/task:1\"}}]}}}}}}}}"
    )
}

// ---------------------------------------------------------------------------------------------
// reading results
// ---------------------------------------------------------------------------------------------

/// Waits until the run has finished (Succeeded, Failed or Cancelled).
pub(crate) async fn finished(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, "finished", |r| {
        matches!(
            r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())),
            Some("Succeeded" | "Failed" | "Cancelled")
        )
    })
    .await
}

fn phase(run: &RunbookRun) -> &str {
    run.status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()))
        .unwrap_or_default()
}

/// The Succeeded condition's (status, reason, message).
fn succeeded(run: &RunbookRun) -> (String, String, String) {
    let conditions = run
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let c = condition(conditions, "Succeeded").unwrap_or_else(|| {
        panic!(
            "run {} has no Succeeded condition",
            run.metadata.name.as_deref().unwrap_or_default()
        )
    });
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

pub(crate) fn message(entry: &StepStatus) -> &str {
    entry.message.as_deref().unwrap_or_default()
}

/// Asserts a finished run's phase and Succeeded reason, showing the whole status otherwise.
pub(crate) fn assert_run(run: &RunbookRun, want_phase: &str, want_reason: &str) {
    let (_, reason, _) = succeeded(run);
    assert!(
        phase(run) == want_phase && reason == want_reason,
        "run {}: expected {want_phase}/{want_reason}, got {}/{reason}: {:#?}",
        run.metadata.name.as_deref().unwrap_or_default(),
        phase(run),
        run.status
    );
}

/// Asserts a step's phase, showing the entry otherwise.
pub(crate) fn assert_step(run: &RunbookRun, step: &str, want: StepPhase) -> StepStatus {
    let e = entry(run, step).clone();
    assert_eq!(e.phase, want, "step {step:?}: {e:#?}");
    e
}

/// Waits until the Deployment's controller has rolled out its current spec.
async fn rolled_out(ns: &TestNamespace, name: &str) -> Deployment {
    ns.wait_for::<Deployment>(name, "rolled out", |d| {
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        d.status.as_ref().is_some_and(|s| {
            s.observed_generation == d.metadata.generation
                && s.updated_replicas.unwrap_or(0) == wanted
                && s.available_replicas.unwrap_or(0) == wanted
                && s.replicas.unwrap_or(0) == wanted
        })
    })
    .await
}

fn template_annotation(d: &Deployment, key: &str) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

/// The env of one container of a Deployment, as name -> value.
fn env_of(d: &Deployment, container: &str) -> BTreeMap<String, String> {
    let spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let c = spec
        .and_then(|s| s.containers.iter().find(|c| c.name == container))
        .unwrap_or_else(|| panic!("no container {container:?}"));
    c.env
        .iter()
        .flatten()
        .map(|EnvVar { name, value, .. }| (name.clone(), value.clone().unwrap_or_default()))
        .collect()
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Asserts that `secret` appears nowhere a user (or their log shipper) would see it: the
/// runs as `kubectl get -o yaml` and `kubectl describe` show them, the namespace's Events, and
/// the operator's log.
fn assert_never_shown(ns: &TestNamespace, secret: &str) {
    let events = ns.kubectl_ok(&["get", "events", "-o", "yaml"]);
    assert!(
        events.contains("StepSucceeded"),
        "expected the steps' Events to be there: {events}"
    );
    let views = [
        (
            "kubectl get rbr -o yaml",
            ns.kubectl_ok(&["get", "rbr", "-o", "yaml"]),
        ),
        ("kubectl describe rbr", ns.kubectl_ok(&["describe", "rbr"])),
        ("kubectl get events -o yaml", events),
        (
            "the operator log",
            std::fs::read_to_string(ns.log_path()).unwrap_or_default(),
        ),
    ];
    for (what, text) in views {
        assert!(
            !text.contains(secret),
            "{what} shows the secret value {secret:?}:\n{text}"
        );
    }
}

/// Polls `probe` until it returns Some, within PATIENCE.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// a tiny HTTP server for http and notify steps
// ---------------------------------------------------------------------------------------------

/// One request the server received.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    /// Header names lower-cased.
    headers: BTreeMap<String, String>,
    body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 (a free port) that answers with `answer` and records
/// every request. It lives as long as the test's runtime.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    async fn start(answer: fn(&Request) -> (u16, String)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, answer, log).await;
                });
            }
        });
        Self { base, seen }
    }

    /// Requests received for `path`.
    fn requests(&self, path: &str) -> Vec<Request> {
        self.seen
            .lock()
            .expect("request log")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn total(&self) -> usize {
        self.seen.lock().expect("request log").len()
    }
}

async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn serve(
    stream: TcpStream,
    answer: fn(&Request) -> (u16, String),
    log: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if read_some(&stream, &mut buf).await? == 0 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + 4 + length {
        if read_some(&stream, &mut buf).await? == 0 {
            break;
        }
    }
    let body_end = buf.len().min(head_end + 4 + length);
    let request = Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&buf[head_end + 4..body_end]).into_owned(),
    };
    let (code, body) = answer(&request);
    log.lock().expect("request log").push(request);
    let response = format!(
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        if code < 400 { "OK" } else { "Error" },
        body.len()
    );
    write_all(&stream, response.as_bytes()).await
}

/// A 5 KiB body for /big, to check the excerpt cap.
fn big_body() -> String {
    "x".repeat(5 * 1024)
}

fn answer(request: &Request) -> (u16, String) {
    match request.path.as_str() {
        "/health" => (200, r#"{"status":"ok","checks":{"db":"up"}}"#.to_owned()),
        "/big" => (200, big_body()),
        "/down" => (503, r#"{"status":"down"}"#.to_owned()),
        "/secure" => match request.headers.get("authorization") {
            Some(_) => (200, r#"{"status":"authorized"}"#.to_owned()),
            None => (401, r#"{"status":"who are you"}"#.to_owned()),
        },
        path if path.starts_with("/hook") && request.method == "POST" => (200, "ok".to_owned()),
        _ => (404, "{}".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn scale_sets_counts_and_deltas_on_deployments_and_statefulsets() {
    let mut ns = TestNamespace::new("scale").await;
    ns.apply(&simple_deployment("app", 2));
    ns.apply(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 1\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: \"registry.example.com/db:1\"}]}\n",
    );
    ns.apply(&runbook(
        "resize",
        "  steps:\n  - {name: up, scale: {target: {kind: Deployment, name: app}, replicas: 4}}\n  - {name: down-one, scale: {target: {kind: Deployment, name: app}, by: -1}}\n  - {name: db-up, scale: {target: {kind: StatefulSet, name: db}, replicas: 3}}\n  - {name: db-more, scale: {target: {kind: StatefulSet, name: db}, by: 2}}\n  - {name: floor, scale: {target: {kind: StatefulSet, name: db}, by: -100}}",
    ));
    ns.start_operator();
    ns.apply(&run("resize-1", "resize", ""));

    let r = finished(&ns, "resize-1").await;
    assert_run(&r, "Succeeded", "Succeeded");
    for (step, target, previous, replicas) in [
        ("up", "Deployment/app", "2", "4"),
        ("down-one", "Deployment/app", "4", "3"),
        ("db-up", "StatefulSet/db", "1", "3"),
        ("db-more", "StatefulSet/db", "3", "5"),
        ("floor", "StatefulSet/db", "5", "0"),
    ] {
        let e = assert_step(&r, step, StepPhase::Succeeded);
        assert_eq!(e.target.as_deref(), Some(target), "{e:#?}");
        assert_eq!(e.attempts, 1, "{e:#?}");
        assert_eq!(output(&e, "previousReplicas"), previous, "{e:#?}");
        assert_eq!(output(&e, "replicas"), replicas, "{e:#?}");
        assert!(
            message(&e).contains(&format!("from {previous} to {replicas}")),
            "{e:#?}"
        );
    }
    // The workloads really changed.
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    assert_eq!(app.spec.and_then(|s| s.replicas), Some(3));
    let db = ns.api::<StatefulSet>().get("db").await.expect("db");
    assert_eq!(db.spec.and_then(|s| s.replicas), Some(0));
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn restart_waits_for_the_rollout_and_refuses_a_paused_deployment() {
    let mut ns = TestNamespace::new("restart").await;
    ns.apply(&simple_deployment("app", 2));
    let paused = simple_deployment("frozen", 1)
        .replace("spec:\n  replicas", "spec:\n  paused: true\n  replicas");
    ns.apply(&paused);
    ns.apply(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 2\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: \"registry.example.com/db:1\"}]}\n",
    );
    ns.apply(&runbook(
        "bounce",
        "  steps:\n  - {name: restart, restart: {target: {kind: Deployment, name: app}}}\n  - {name: settled, waitForRollout: {target: {kind: Deployment, name: app}}}\n  - {name: restart-db, restart: {target: {kind: StatefulSet, name: db}}}",
    ));
    ns.apply(&runbook(
        "bounce-frozen",
        "  steps:\n  - {name: restart, restart: {target: {kind: Deployment, name: frozen}}}",
    ));
    rolled_out(&ns, "app").await;
    ns.start_operator();
    ns.apply(&run("bounce-1", "bounce", ""));
    ns.apply(&run("frozen-1", "bounce-frozen", ""));

    let r = finished(&ns, "bounce-1").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let restart = assert_step(&r, "restart", StepPhase::Succeeded);
    assert_eq!(restart.target.as_deref(), Some("Deployment/app"));
    assert!(
        message(&restart).contains("successfully rolled out"),
        "the restart step waits for the rollout: {restart:#?}"
    );
    let settled = assert_step(&r, "settled", StepPhase::Succeeded);
    assert!(
        message(&settled).contains("successfully rolled out"),
        "{settled:#?}"
    );
    // The pod template carries the restartedAt the step recorded, and the rollout the step
    // waited for is complete.
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    assert_eq!(
        template_annotation(&app, "kubectl.kubernetes.io/restartedAt").as_deref(),
        Some(output(&restart, "restartedAt")),
        "{app:#?}"
    );
    let status = app.status.clone().unwrap_or_default();
    assert_eq!(
        status.observed_generation, app.metadata.generation,
        "{status:#?}"
    );
    assert_eq!(status.updated_replicas, Some(2), "{status:#?}");
    let e = assert_step(&r, "restart-db", StepPhase::Succeeded);
    assert!(message(&e).contains("roll out complete"), "{e:#?}");
    let db = ns.api::<StatefulSet>().get("db").await.expect("db");
    let db_annotations = db
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        db_annotations.get("kubectl.kubernetes.io/restartedAt"),
        Some(&output(&e, "restartedAt").to_owned())
    );
    let db_status = db.status.clone().unwrap_or_default();
    assert_eq!(db_status.observed_generation, db.metadata.generation);
    assert_eq!(db_status.updated_replicas, Some(2), "{db_status:#?}");

    let f = finished(&ns, "frozen-1").await;
    assert_run(&f, "Failed", "StepFailed");
    let e = assert_step(&f, "restart", StepPhase::Failed);
    assert!(
        message(&e).contains("paused") && message(&e).contains("frozen"),
        "the message says why: {e:#?}"
    );
    let (_, _, run_message) = succeeded(&f);
    assert!(run_message.contains("paused"), "{run_message}");
    let frozen = ns.api::<Deployment>().get("frozen").await.expect("frozen");
    assert_eq!(
        template_annotation(&frozen, "kubectl.kubernetes.io/restartedAt"),
        None,
        "a paused Deployment is left alone"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn set_env_changes_variables_by_name_and_records_prior_values() {
    let mut ns = TestNamespace::new("setenv").await;
    ns.apply(&deployment(
        "app",
        2,
        "[{name: app, image: \"registry.example.com/app:1\", env: [{name: A, value: \"1\"}, {name: B, value: \"2\"}, {name: KEEP, value: k}, {name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}]}, {name: sidecar, image: \"registry.example.com/proxy:1\", env: [{name: A, value: x}]}]",
    ));
    ns.apply(&runbook(
        "tune",
        "  steps:\n  - {name: app-env, setEnv: {target: {kind: Deployment, name: app}, container: app, set: [{name: A, value: \"10\"}, {name: C, value: \"3\"}, {name: PASSWORD, value: plain}], unset: [B]}}\n  - {name: everywhere, setEnv: {target: {kind: Deployment, name: app}, set: [{name: REGION, value: eu}]}}\n  - {name: settled, waitForRollout: {target: {kind: Deployment, name: app}}}",
    ));
    ns.apply(&runbook(
        "tune-wrong",
        "  steps:\n  - {name: env, setEnv: {target: {kind: Deployment, name: app}, container: nope, set: [{name: A, value: \"2\"}]}}",
    ));
    rolled_out(&ns, "app").await;
    ns.start_operator();
    ns.apply(&run("tune-1", "tune", ""));

    let r = finished(&ns, "tune-1").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let e = assert_step(&r, "app-env", StepPhase::Succeeded);
    assert_eq!(e.target.as_deref(), Some("Deployment/app"));
    assert_eq!(output(&e, "prior.app.A"), "\"1\"", "{e:#?}");
    assert_eq!(output(&e, "prior.app.B"), "\"2\"", "{e:#?}");
    assert_eq!(output(&e, "prior.app.C"), "absent", "{e:#?}");
    assert_eq!(
        output(&e, "prior.app.PASSWORD"),
        "secret db, key password",
        "{e:#?}"
    );
    assert!(
        !e.outputs.keys().any(|k| k.starts_with("prior.sidecar.")),
        "only the named container is touched: {e:#?}"
    );
    let e = assert_step(&r, "everywhere", StepPhase::Succeeded);
    assert_eq!(output(&e, "prior.app.REGION"), "absent", "{e:#?}");
    assert_eq!(output(&e, "prior.sidecar.REGION"), "absent", "{e:#?}");
    let e = assert_step(&r, "settled", StepPhase::Succeeded);
    assert!(message(&e).contains("successfully rolled out"), "{e:#?}");

    let app = ns.api::<Deployment>().get("app").await.expect("app");
    let want_app: BTreeMap<String, String> = [
        ("A", "10"),
        ("C", "3"),
        ("KEEP", "k"),
        ("PASSWORD", "plain"),
        ("REGION", "eu"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(env_of(&app, "app"), want_app);
    let want_sidecar: BTreeMap<String, String> = [("A", "x"), ("REGION", "eu")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(env_of(&app, "sidecar"), want_sidecar);
    let password = app
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers[0].env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "PASSWORD"))
        .cloned()
        .expect("PASSWORD");
    assert!(
        password.value_from.is_none(),
        "a plain value replaces the Secret reference: {password:?}"
    );
    let status = app.status.clone().unwrap_or_default();
    assert_eq!(
        status.observed_generation, app.metadata.generation,
        "waitForRollout waited for the new template: {status:#?}"
    );
    assert_eq!(status.updated_replicas, Some(2), "{status:#?}");

    // A container that is not there fails the step, naming it, and changes nothing.
    let generation = app.metadata.generation;
    ns.apply(&run("tune-wrong-1", "tune-wrong", ""));
    let r = finished(&ns, "tune-wrong-1").await;
    assert_run(&r, "Failed", "StepFailed");
    let e = assert_step(&r, "env", StepPhase::Failed);
    assert_eq!(output(&e, "reason"), "InvalidSpec", "{e:#?}");
    assert!(
        message(&e).contains("\"nope\"") && message(&e).contains("Deployment/app"),
        "{e:#?}"
    );
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    assert_eq!(app.metadata.generation, generation);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn rollback_returns_the_deployment_to_the_previous_revision() {
    let mut ns = TestNamespace::new("rollback").await;
    ns.apply(&simple_deployment("web", 1));
    let revision = |want: &'static str| {
        move |d: &Deployment| {
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                == Some(want)
        }
    };
    ns.wait_for::<Deployment>("web", "at revision 1", revision("1"))
        .await;
    ns.kubectl_ok(&[
        "set",
        "image",
        "deployment/web",
        "web=registry.example.com/web:2",
    ]);
    ns.wait_for::<Deployment>("web", "at revision 2", revision("2"))
        .await;
    ns.apply(&runbook(
        "undo",
        "  steps:\n  - {name: back, rollback: {target: {kind: Deployment, name: web}}}\n  - {name: settled, waitForRollout: {target: {kind: Deployment, name: web}}}",
    ));
    ns.start_operator();
    ns.apply(&run("undo-1", "undo", ""));

    let r = finished(&ns, "undo-1").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let e = assert_step(&r, "back", StepPhase::Succeeded);
    assert_eq!(e.target.as_deref(), Some("Deployment/web"));
    assert_eq!(output(&e, "fromRevision"), "2", "{e:#?}");
    assert_eq!(output(&e, "toRevision"), "1", "{e:#?}");
    assert_step(&r, "settled", StepPhase::Succeeded);
    let web = ns.api::<Deployment>().get("web").await.expect("web");
    assert_eq!(image_of(&web), "registry.example.com/web:1");
    // As after `kubectl rollout undo`, the first revision's ReplicaSet becomes revision 3.
    ns.wait_for::<Deployment>("web", "at revision 3", revision("3"))
        .await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn job_steps_run_owned_jobs_with_deterministic_names_and_retries() {
    let mut ns = TestNamespace::new("job").await;
    ns.apply(&format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: report}}\nspec:\n  schedule: \"0 0 1 1 *\"\n  suspend: true\n  jobTemplate: {template}\n",
        template = pod_job_template("{from: cronjob}", "{}"),
    ));
    ns.apply(&runbook(
        "jobs",
        &format!(
            "  steps:\n  - {{name: migrate, job: {{template: {ok}}}}}\n  - {{name: from-cron, job: {{fromCronJob: report}}}}\n  - {{name: no-wait, job: {{wait: false, template: {long}}}}}\n  - {{name: slow, timeout: 2s, onFailure: Continue, job: {{template: {long}}}}}\n  - {{name: flaky, retries: {{limit: 1, backoff: 1s}}, job: {{template: {bad}}}}}",
            ok = job_template(false),
            long = pod_job_template("{}", "{sim.runbook.dev/run-for: \"10m\"}"),
            bad = job_template(true),
        ),
    ));
    ns.start_operator();
    ns.apply(&run("jobs-1", "jobs", ""));

    let r = finished(&ns, "jobs-1").await;
    assert_run(&r, "Failed", "StepFailed");
    let uid = r.metadata.uid.clone().expect("uid");

    let e = assert_step(&r, "migrate", StepPhase::Succeeded);
    assert_eq!(output(&e, "jobName"), "jobs-1-migrate-1", "{e:#?}");
    assert_eq!(e.target.as_deref(), Some("Job/jobs-1-migrate-1"));
    assert_eq!(e.attempts, 1);
    assert!(message(&e).contains("completed"), "{e:#?}");
    let e = assert_step(&r, "from-cron", StepPhase::Succeeded);
    assert_eq!(output(&e, "jobName"), "jobs-1-from-cron-1", "{e:#?}");
    // wait: false succeeds once the Job exists, although it runs for minutes.
    let e = assert_step(&r, "no-wait", StepPhase::Succeeded);
    assert_eq!(output(&e, "jobName"), "jobs-1-no-wait-1", "{e:#?}");
    // A timeout fails the attempt and deletes its Job.
    let e = assert_step(&r, "slow", StepPhase::Failed);
    assert_eq!(output(&e, "reason"), "TimedOut", "{e:#?}");
    let e = assert_step(&r, "flaky", StepPhase::Failed);
    assert_eq!(e.attempts, 2, "one retry makes two attempts: {e:#?}");
    assert_eq!(output(&e, "reason"), "JobFailed", "{e:#?}");
    assert_eq!(output(&e, "jobName"), "jobs-1-flaky-2", "{e:#?}");
    assert!(message(&e).contains("jobs-1-flaky-2"), "{e:#?}");
    let (_, _, run_message) = succeeded(&r);
    assert!(run_message.contains("\"flaky\""), "{run_message}");

    let job_api = ns.api::<Job>();
    eventually("the timed-out Job is deleted", || {
        let job_api = job_api.clone();
        async move {
            job_api
                .get_opt("jobs-1-slow-1")
                .await
                .expect("get job")
                .is_none()
                .then_some(())
        }
    })
    .await;

    // One Job per step and attempt, named <run>-<step>-<attempt>, owned by the run.
    let jobs = job_api.list(&ListParams::default()).await.expect("jobs");
    let mut names: Vec<String> = jobs
        .items
        .iter()
        .map(|j| j.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "jobs-1-flaky-1",
            "jobs-1-flaky-2",
            "jobs-1-from-cron-1",
            "jobs-1-migrate-1",
            "jobs-1-no-wait-1"
        ]
    );
    for job in &jobs.items {
        let name = job.metadata.name.clone().unwrap_or_default();
        let owners = job.metadata.owner_references.clone().unwrap_or_default();
        assert!(
            owners.iter().any(|o| o.kind == "RunbookRun"
                && o.name == "jobs-1"
                && o.uid == uid
                && o.controller == Some(true)),
            "{name} is not owned by the run: {owners:#?}"
        );
        let failed = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
        assert_eq!(failed, name.contains("flaky"), "{name}: {:#?}", job.status);
    }
    let from_cron = jobs
        .items
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some("jobs-1-from-cron-1"))
        .expect("the fromCronJob Job");
    let pod_labels = from_cron
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert_eq!(
        pod_labels.get("from").map(String::as_str),
        Some("cronjob"),
        "the Job is made from the CronJob's jobTemplate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn http_and_notify_steps_talk_to_a_server_without_leaking_secrets() {
    let server = Server::start(answer).await;
    let base = &server.base;
    let mut ns = TestNamespace::new("http").await;
    let token = format!("Bearer s3cr3t-{:08x}", rand::random::<u32>());
    ns.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: api-token}}\nstringData: {{token: \"{token}\"}}\n"
    ));
    // A webhook URL is a credential too.
    let hook_secret = format!("hook-{:08x}", rand::random::<u32>());
    ns.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: webhook}}\nstringData: {{url: \"{base}/{hook_secret}\"}}\n"
    ));
    ns.apply(&runbook(
        "checks",
        &format!(
            "  steps:\n  - {{name: health, http: {{url: \"{base}/health\", expect: {{jsonPath: \"{{.status}}\", equals: ok}}}}}}\n  - {{name: big, http: {{url: \"{base}/big\"}}}}\n  - name: auth\n    http:\n      url: \"{base}/secure\"\n      headers: [{{name: Authorization, valueFrom: {{secretKeyRef: {{name: api-token, key: token}}}}}}]\n  - {{name: down, onFailure: Continue, http: {{url: \"{base}/down\"}}}}\n  - {{name: wrong-body, onFailure: Continue, http: {{url: \"{base}/health\", expect: {{status: [200], jsonPath: \"{{.checks.db}}\", equals: down}}}}}}\n  - {{name: tell, notify: {{url: \"{base}/hook\", message: \"checks done\"}}}}\n  - {{name: tell-secretly, notify: {{urlFrom: {{secretKeyRef: {{name: webhook, key: url}}}}, message: \"also done\"}}}}"
        ),
    ));
    ns.start_operator();
    ns.apply(&run("checks-1", "checks", ""));

    let r = finished(&ns, "checks-1").await;
    // Failures with onFailure: Continue are recorded, and the run still succeeds.
    assert_run(&r, "Succeeded", "SucceededWithFailures");
    let (_, _, run_message) = succeeded(&r);
    assert!(
        run_message.contains("down") && run_message.contains("wrong-body"),
        "{run_message}"
    );

    let e = assert_step(&r, "health", StepPhase::Succeeded);
    assert_eq!(output(&e, "httpStatus"), "200");
    assert_eq!(
        output(&e, "body"),
        r#"{"status":"ok","checks":{"db":"up"}}"#
    );
    assert_eq!(
        e.target.as_deref(),
        Some(format!("GET {base}/health").as_str())
    );

    let e = assert_step(&r, "big", StepPhase::Succeeded);
    let excerpt = output(&e, "body");
    let kept = excerpt.trim_end_matches('…');
    assert!(
        !kept.is_empty() && kept.len() <= 1024 && big_body().starts_with(kept),
        "the body excerpt is at most 1 KiB of the body, got {} bytes",
        excerpt.len()
    );

    let e = assert_step(&r, "auth", StepPhase::Succeeded);
    assert_eq!(output(&e, "httpStatus"), "200");
    let secure = server.requests("/secure");
    assert_eq!(secure.len(), 1, "{secure:#?}");
    assert_eq!(
        secure[0].headers.get("authorization"),
        Some(&token),
        "the header from the Secret reaches the server"
    );

    let e = assert_step(&r, "down", StepPhase::Failed);
    assert_eq!(output(&e, "reason"), "UnexpectedStatus", "{e:#?}");
    assert_eq!(output(&e, "httpStatus"), "503");
    assert!(message(&e).contains("503"), "{e:#?}");

    let e = assert_step(&r, "wrong-body", StepPhase::Failed);
    assert_eq!(output(&e, "reason"), "UnexpectedBody", "{e:#?}");
    assert!(
        message(&e).contains("\"up\"") && message(&e).contains("\"down\""),
        "{e:#?}"
    );

    // notify POSTs {"text": message} exactly once.
    let e = assert_step(&r, "tell", StepPhase::Succeeded);
    assert_eq!(output(&e, "httpStatus"), "200");
    let hooks = server.requests("/hook");
    assert_eq!(hooks.len(), 1, "exactly one notification: {hooks:#?}");
    assert_eq!(hooks[0].method, "POST");
    let sent: serde_json::Value = serde_json::from_str(&hooks[0].body).expect("JSON body");
    assert_eq!(sent, serde_json::json!({"text": "checks done"}));
    assert!(
        hooks[0]
            .headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:#?}",
        hooks[0]
    );
    let e = assert_step(&r, "tell-secretly", StepPhase::Succeeded);
    assert_eq!(e.target.as_deref(), Some("webhook from Secret/webhook"));
    let hooks = server.requests(&format!("/{hook_secret}"));
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let sent: serde_json::Value = serde_json::from_str(&hooks[0].body).expect("JSON body");
    assert_eq!(sent, serde_json::json!({"text": "also done"}));
    // One request per step: /health twice (health and wrong-body), the rest once.
    assert_eq!(server.requests("/health").len(), 2);
    assert_eq!(server.total(), 7, "{:#?}", server.seen);

    ns.wait_for_event("checks-1", "StepSucceeded", "").await;
    assert_never_shown(&ns, token.trim_start_matches("Bearer "));
    assert_never_shown(&ns, &hook_secret);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn patch_delete_pods_and_rotate_secret_change_the_objects() {
    let mut ns = TestNamespace::new("objects").await;
    ns.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: \"1\", b: \"2\"}\n",
    );
    ns.apply(&format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, labels: {{{ROTATABLE_LABEL}: \"true\"}}}}\nstringData: {{password: old-password-value, user: shop}}\n"));
    ns.apply(&simple_deployment("app", 1));
    ns.apply(&simple_deployment("workers", 3));
    ns.apply(&runbook(
        "fix",
        "  steps:\n  - {name: merge, patch: {target: {apiVersion: v1, kind: ConfigMap, name: settings}, type: merge, patch: {data: {c: \"3\"}}}}\n  - {name: json, patch: {target: {apiVersion: v1, kind: ConfigMap, name: settings}, type: json, patch: [{op: replace, path: /data/a, value: \"10\"}, {op: remove, path: /data/b}]}}\n  - {name: unstick, deletePods: {selector: {matchLabels: {app: workers}}, maxCount: 2}}\n  - {name: rotate, rotateSecret: {secret: creds, key: password, restart: [{kind: Deployment, name: app}]}}",
    ));
    rolled_out(&ns, "workers").await;
    rolled_out(&ns, "app").await;
    let pods = ns.api::<Pod>();
    let before: Vec<String> = pods
        .list(&ListParams::default().labels("app=workers"))
        .await
        .expect("pods")
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(before.len(), 3, "{before:?}");
    ns.start_operator();
    ns.apply(&run("fix-1", "fix", ""));

    let r = finished(&ns, "fix-1").await;
    assert_run(&r, "Succeeded", "Succeeded");

    // patch: merge then json.
    let e = assert_step(&r, "merge", StepPhase::Succeeded);
    assert_eq!(e.target.as_deref(), Some("ConfigMap/settings"));
    assert_step(&r, "json", StepPhase::Succeeded);
    let cm = ns
        .api::<ConfigMap>()
        .get("settings")
        .await
        .expect("settings");
    let want: BTreeMap<String, String> = [("a", "10"), ("c", "3")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(cm.data, Some(want));

    // deletePods: at most maxCount matching pods, and they are really gone.
    let e = assert_step(&r, "unstick", StepPhase::Succeeded);
    let deleted: Vec<String> = output(&e, "pods").split(',').map(str::to_owned).collect();
    assert_eq!(deleted.len(), 2, "{e:#?}");
    assert!(
        deleted.iter().all(|p| before.contains(p)),
        "{deleted:?} vs {before:?}"
    );
    for name in &deleted {
        let pods = pods.clone();
        eventually(&format!("pod {name} is deleted"), || {
            let pods = pods.clone();
            async move {
                pods.get_opt(name)
                    .await
                    .expect("get pod")
                    .is_none()
                    .then_some(())
            }
        })
        .await;
    }
    let spared: Vec<&String> = before.iter().filter(|p| !deleted.contains(p)).collect();
    let left = pods.get_opt(spared[0]).await.expect("get pod");
    assert!(
        left.is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
        "the pod beyond maxCount is left alone"
    );

    // rotateSecret: a new value of the default length, the restart target restarted, and
    // the value shown nowhere.
    let e = assert_step(&r, "rotate", StepPhase::Succeeded);
    assert_eq!(e.target.as_deref(), Some("Secret/creds"));
    let secret = ns.api::<Secret>().get("creds").await.expect("creds");
    let data = secret.data.clone().unwrap_or_default();
    let password = String::from_utf8(data["password"].0.clone()).expect("utf-8");
    assert_ne!(password, "old-password-value");
    assert_eq!(password.len(), 32, "default length");
    assert!(
        password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password}"
    );
    assert_eq!(
        String::from_utf8_lossy(&data["user"].0),
        "shop",
        "other keys are kept"
    );
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    assert_eq!(
        template_annotation(&app, "kubectl.kubernetes.io/restartedAt").as_deref(),
        Some(output(&e, "restartedAt")),
        "{app:#?}"
    );
    ns.wait_for_event("fix-1", "StepSucceeded", "").await;
    assert_never_shown(&ns, &password);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn approval_waits_for_the_annotation_or_times_out_and_sleep_waits() {
    let mut ns = TestNamespace::new("approval").await;
    ns.apply(&runbook(
        "gate",
        "  steps:\n  - {name: ask, approval: {message: \"Scale the shop down?\"}}\n  - {name: nap, sleep: {duration: 2s}}",
    ));
    ns.apply(&runbook(
        "gate-timed",
        "  steps:\n  - {name: ask, timeout: 3s, approval: {message: \"Anyone there?\"}}\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    ns.start_operator();
    ns.apply(&run("gate-1", "gate", ""));
    ns.apply(&run("timed-1", "gate-timed", ""));

    let waiting = ns
        .wait_for::<RunbookRun>("gate-1", "WaitingForApproval", |r| {
            phase(r) == "WaitingForApproval"
        })
        .await;
    let e = assert_step(&waiting, "ask", StepPhase::Running);
    assert!(
        message(&e).contains("Scale the shop down?")
            && message(&e).contains("ops.runbook.dev/approve=ask"),
        "the step tells how to approve: {e:#?}"
    );
    assert_eq!(entry(&waiting, "nap").phase, StepPhase::Pending);
    assert_eq!(
        ns.kubectl_ok(&["get", "rbr", "gate-1", "-o", "jsonpath={.status.phase}"]),
        "WaitingForApproval"
    );

    ns.kubectl_ok(&[
        "annotate",
        "runbookrun",
        "gate-1",
        "ops.runbook.dev/approve=ask",
    ]);
    let r = finished(&ns, "gate-1").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let e = assert_step(&r, "ask", StepPhase::Succeeded);
    // "approved by <user>" with the chart's admission policies, "approved" without.
    assert!(message(&e).starts_with("approved"), "{e:#?}");
    let nap = assert_step(&r, "nap", StepPhase::Succeeded);
    assert_eq!(message(&nap), "slept 2s");
    let (start, end) = (
        nap.start_time.clone().expect("start").0,
        nap.completion_time.clone().expect("end").0,
    );
    assert!(
        end.duration_since(start) >= jiff::SignedDuration::from_secs(2),
        "the recorded sleep is not shorter than asked: {start} .. {end}"
    );

    // Without an approval the step's timeout fails the run.
    let t = finished(&ns, "timed-1").await;
    assert_run(&t, "Failed", "TimedOut");
    let e = assert_step(&t, "ask", StepPhase::Failed);
    assert_eq!(output(&e, "reason"), "TimedOut", "{e:#?}");
    assert!(message(&e).contains("timed out after 3s"), "{e:#?}");
    let nap = assert_step(&t, "nap", StepPhase::Skipped);
    assert!(message(&nap).contains("earlier step failed"), "{nap:#?}");
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn failures_abort_or_continue_and_finally_steps_always_run() {
    let mut ns = TestNamespace::new("failures").await;
    ns.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: marker}\ndata: {cleaned: \"no\"}\n",
    );
    ns.apply(&simple_deployment("app", 1));
    let cleanup = "  finally:\n  - {name: cleanup, patch: {target: {apiVersion: v1, kind: ConfigMap, name: marker}, type: merge, patch: {data: {cleaned: \"yes\"}}}}";
    ns.apply(&runbook(
        "soft",
        "  steps:\n  - {name: ghost, onFailure: Continue, scale: {target: {kind: Deployment, name: ghost}, replicas: 2}}\n  - {name: no-config, onFailure: Continue, patch: {target: {apiVersion: v1, kind: ConfigMap, name: nope}, type: merge, patch: {data: {a: b}}}}\n  - {name: real, scale: {target: {kind: Deployment, name: app}, replicas: 2}}",
    ));
    ns.apply(&runbook(
        "hard",
        &format!(
            "  steps:\n  - {{name: ghost, scale: {{target: {{kind: Deployment, name: ghost}}, replicas: 2}}}}\n  - {{name: never, scale: {{target: {{kind: Deployment, name: app}}, replicas: 5}}}}\n{cleanup}"
        ),
    ));
    ns.start_operator();
    ns.apply(&run("soft-1", "soft", ""));
    ns.apply(&run("hard-1", "hard", ""));

    // onFailure: Continue records the failure and goes on; the run still succeeds.
    let r = finished(&ns, "soft-1").await;
    assert_run(&r, "Succeeded", "SucceededWithFailures");
    let e = assert_step(&r, "ghost", StepPhase::Failed);
    assert_eq!(output(&e, "reason"), "TargetNotFound", "{e:#?}");
    assert!(message(&e).contains("Deployment/ghost"), "{e:#?}");
    assert_eq!(e.target.as_deref(), Some("Deployment/ghost"));
    let e = assert_step(&r, "no-config", StepPhase::Failed);
    assert_eq!(output(&e, "reason"), "TargetNotFound", "{e:#?}");
    assert!(message(&e).contains("ConfigMap/nope"), "{e:#?}");
    assert_step(&r, "real", StepPhase::Succeeded);
    let (_, _, run_message) = succeeded(&r);
    assert!(
        run_message.contains("ghost") && run_message.contains("no-config"),
        "{run_message}"
    );

    // Abort (the default) skips the remaining steps, but finally steps still run.
    let h = finished(&ns, "hard-1").await;
    assert_run(&h, "Failed", "StepFailed");
    let e = assert_step(&h, "ghost", StepPhase::Failed);
    assert_eq!(output(&e, "reason"), "TargetNotFound", "{e:#?}");
    let never = assert_step(&h, "never", StepPhase::Skipped);
    assert!(
        message(&never).contains("earlier step failed"),
        "{never:#?}"
    );
    assert_step(&h, "cleanup", StepPhase::Succeeded);
    let (_, _, run_message) = succeeded(&h);
    assert!(
        run_message.contains("\"ghost\"") && run_message.contains("Deployment/ghost"),
        "the run names the failed step and target: {run_message}"
    );
    let marker = ns.api::<ConfigMap>().get("marker").await.expect("marker");
    assert_eq!(
        marker
            .data
            .unwrap_or_default()
            .get("cleaned")
            .map(String::as_str),
        Some("yes")
    );
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    assert_eq!(
        app.spec.and_then(|s| s.replicas),
        Some(2),
        "only soft-1 scaled it"
    );

    // The failure is a Warning Event on the run, with the reason.
    ns.wait_for_event("hard-1", "StepFailed", "TargetNotFound")
        .await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn params_are_substituted_and_unknown_run_params_are_refused() {
    let mut ns = TestNamespace::new("params").await;
    ns.apply(&simple_deployment("app", 1));
    ns.apply(&simple_deployment("other", 1));
    ns.apply(&runbook(
        "tune",
        "  params:\n  - {name: target, default: app}\n  - {name: level, default: info}\n  steps:\n  - {name: env, setEnv: {target: {kind: Deployment, name: \"{{ params.target }}\"}, set: [{name: LOG_LEVEL, value: \"{{ params.level }}\"}]}}",
    ));
    ns.apply(&runbook(
        "needs",
        "  params:\n  - {name: token}\n  steps:\n  - {name: nap, sleep: {duration: \"1s\"}}",
    ));
    ns.start_operator();
    ns.apply(&run("needs-1", "needs", ""));
    ns.apply(&run("tune-debug", "tune", "  params: {level: debug}"));
    ns.apply(&run("tune-default", "tune", "  params: {target: other}"));
    ns.apply(&run("tune-typo", "tune", "  params: {levle: debug}"));

    let r = finished(&ns, "tune-debug").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let e = assert_step(&r, "env", StepPhase::Succeeded);
    assert_eq!(e.target.as_deref(), Some("Deployment/app"));
    let resolved = &r.status.as_ref().expect("status").resolved_steps[0];
    let set_env = resolved.set_env.as_ref().expect("setEnv");
    assert_eq!(set_env.set[0].value, "debug", "{resolved:#?}");
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    assert_eq!(
        env_of(&app, "app").get("LOG_LEVEL").map(String::as_str),
        Some("debug")
    );

    let r = finished(&ns, "tune-default").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let e = assert_step(&r, "env", StepPhase::Succeeded);
    assert_eq!(e.target.as_deref(), Some("Deployment/other"));
    let other = ns.api::<Deployment>().get("other").await.expect("other");
    assert_eq!(
        env_of(&other, "other").get("LOG_LEVEL").map(String::as_str),
        Some("info"),
        "the Runbook's default"
    );

    let r = finished(&ns, "tune-typo").await;
    assert_run(&r, "Failed", "InvalidSpec");
    let (_, _, text) = succeeded(&r);
    assert!(
        text.contains("spec.params.levle") && text.contains("\"tune\""),
        "{text}"
    );
    assert!(
        r.status.as_ref().is_some_and(|s| s.steps.is_empty()),
        "no step ran: {:#?}",
        r.status
    );

    let r = finished(&ns, "needs-1").await;
    assert_run(&r, "Failed", "InvalidSpec");
    let (_, _, text) = succeeded(&r);
    assert!(
        text.contains("spec.params.token") && text.contains("no default"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn plan_mode_dry_runs_cluster_changes_and_skips_side_effects() {
    let server = Server::start(answer).await;
    let base = &server.base;
    let mut ns = TestNamespace::new("plan").await;
    ns.apply(&simple_deployment("app", 2));
    ns.apply(&runbook(
        "change",
        &format!(
            "  steps:\n  - {{name: scale-up, scale: {{target: {{kind: Deployment, name: app}}, replicas: 5}}}}\n  - {{name: maintenance, setEnv: {{target: {{kind: Deployment, name: app}}, set: [{{name: MAINTENANCE_MODE, value: \"true\"}}]}}}}\n  - {{name: ping, http: {{url: \"{base}/health\"}}}}\n  - {{name: tell, notify: {{url: \"{base}/hook\", message: \"planned\"}}}}\n  - {{name: migrate, job: {{template: {job}}}}}",
            job = job_template(false),
        ),
    ));
    let before = rolled_out(&ns, "app").await;
    ns.start_operator();
    ns.apply(&run("preview", "change", "  mode: Plan"));

    let r = finished(&ns, "preview").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let e = assert_step(&r, "scale-up", StepPhase::Succeeded);
    assert!(message(&e).starts_with("Plan:"), "{e:#?}");
    assert_eq!(output(&e, "previousReplicas"), "2");
    assert_eq!(output(&e, "replicas"), "5");
    let e = assert_step(&r, "maintenance", StepPhase::Succeeded);
    assert!(message(&e).starts_with("Plan:"), "{e:#?}");
    assert_eq!(output(&e, "prior.app.MAINTENANCE_MODE"), "absent");
    for step in ["ping", "tell", "migrate"] {
        let e = assert_step(&r, step, StepPhase::Skipped);
        assert_eq!(output(&e, "reason"), "Plan", "{e:#?}");
        assert!(message(&e).starts_with("Plan:"), "{e:#?}");
    }

    // Nothing changed: the Deployment, no Job, no request.
    let after = ns.api::<Deployment>().get("app").await.expect("app");
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(after.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert!(!env_of(&after, "app").contains_key("MAINTENANCE_MODE"));
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .expect("jobs");
    assert!(jobs.items.is_empty(), "{:#?}", jobs.items);
    assert_eq!(server.total(), 0, "{:#?}", server.seen);
}

/// A rollback interrupted after its patch (the operator died before recording success) is
/// not applied a second time by the restarted operator.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_rollback_interrupted_after_its_patch_is_not_applied_twice() {
    let mut ns = TestNamespace::new("rollback-crash").await;
    ns.apply(&simple_deployment("web", 1));
    let revision = |want: &'static str| {
        move |d: &Deployment| {
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                == Some(want)
        }
    };
    ns.wait_for::<Deployment>("web", "at revision 1", revision("1"))
        .await;
    ns.kubectl_ok(&[
        "set",
        "image",
        "deployment/web",
        "web=registry.example.com/web:2",
    ]);
    ns.wait_for::<Deployment>("web", "at revision 2", revision("2"))
        .await;
    ns.apply(&runbook(
        "undo",
        "  steps:\n  - {name: back, rollback: {target: {kind: Deployment, name: web}}}",
    ));
    ns.apply(&run("undo-1", "undo", ""));
    // Where an operator killed right after sending the rollback leaves things: the intent is
    // in the journal, the Deployment is already rolled back (revision 3 = the first
    // template), the step's success is not recorded yet.
    ns.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    ns.wait_for::<Deployment>("web", "at revision 3", revision("3"))
        .await;
    let first = ns
        .api::<k8s_openapi::api::apps::v1::ReplicaSet>()
        .list(&Default::default())
        .await
        .expect("replica sets")
        .items
        .into_iter()
        .find(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                == Some("3")
        })
        .and_then(|rs| rs.metadata.name)
        .expect("the rolled-back ReplicaSet");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = serde_json::json!({"status": {
        "phase": "Running", "observedGeneration": 1, "startTime": now, "currentStep": "back",
        "resolvedSteps": [{"name": "back", "rollback": {"target": {"kind": "Deployment", "name": "web"}}}],
        "steps": [{"name": "back", "phase": "Running", "attempts": 1, "startTime": now,
            "target": "Deployment/web",
            "outputs": {"attemptStartedAt": now, "fromRevision": "2", "toRevision": "1", "replicaSet": first}}],
    }});
    ns.kubectl_ok(&[
        "patch",
        "rbr",
        "undo-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    ns.start_operator();

    let r = finished(&ns, "undo-1").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let web = ns.api::<Deployment>().get("web").await.expect("web");
    assert_eq!(
        image_of(&web),
        "registry.example.com/web:1",
        "the restarted operator rolled back a second time: {:#?}",
        entry(&r, "back")
    );
}

/// A JSON patch whose outcome was lost in a restart is not sent again (it may not be
/// idempotent); the step says so.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_json_patch_interrupted_after_it_was_sent_is_not_applied_twice() {
    let mut ns = TestNamespace::new("patch-crash").await;
    ns.apply(&deployment(
        "app",
        1,
        "[{name: app, image: \"registry.example.com/app:1\", env: [{name: A, value: \"1\"}]}]",
    ));
    let append = r#"[{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "FEATURE_X", "value": "on"}}]"#;
    ns.apply(&runbook(
        "feature",
        &format!(
            "  steps:\n  - {{name: append, patch: {{target: {{apiVersion: apps/v1, kind: Deployment, name: app}}, type: json, patch: {append}}}}}"
        ),
    ));
    ns.apply(&run("feature-1", "feature", ""));
    // Where an operator killed right after sending the patch leaves things: the step is
    // Running with its intent recorded, the Deployment already has the change.
    ns.kubectl_ok(&["patch", "deployment", "app", "--type=json", "-p", append]);
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let resolved: serde_json::Value = serde_json::from_str(&format!(
        r#"[{{"name": "append", "patch": {{"target": {{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}}, "type": "json", "patch": {append}}}}}]"#
    ))
    .expect("json");
    let status = serde_json::json!({"status": {
        "phase": "Running", "observedGeneration": 1, "startTime": now, "currentStep": "append",
        "resolvedSteps": resolved,
        "steps": [{"name": "append", "phase": "Running", "attempts": 1, "startTime": now,
            "target": "Deployment/app", "outputs": {"attemptStartedAt": now, "sent": "attempt 1"}}],
    }});
    ns.kubectl_ok(&[
        "patch",
        "rbr",
        "feature-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    ns.start_operator();

    let r = finished(&ns, "feature-1").await;
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    let entries = app
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers[0].env.clone())
        .unwrap_or_default();
    assert_eq!(
        entries.iter().filter(|e| e.name == "FEATURE_X").count(),
        1,
        "the restarted operator applied the JSON patch a second time: {:#?} {entries:#?}",
        entry(&r, "append")
    );
    let step = entry(&r, "append");
    assert_eq!(
        step.outputs.get("reason").map(String::as_str),
        Some("OutcomeUnknown"),
        "{step:#?}"
    );
}

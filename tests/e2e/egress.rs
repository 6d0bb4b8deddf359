//! The outbound fence of http and notify steps (refused destinations, redirects, the body
//! cap) and the narrower patch and rotateSecret steps: each refusal fails the step with its
//! reason, and nothing reaches the refused place.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::RunbookRun;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{TestNamespace, condition, entry, stalled};

pub(crate) fn runbook(name: &str, steps: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n  steps:\n{steps}\n"
    )
}

pub(crate) fn run(name: &str, runbook: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: {name}}}\nspec:\n  runbookRef: {{name: {runbook}}}\n"
    )
}

pub(crate) async fn finished(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, "finished", |r| {
        matches!(
            r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())),
            Some("Succeeded" | "Failed" | "Cancelled")
        )
    })
    .await
}

/// Asserts the step failed with `reason`, and its message holds every one of `words`.
fn assert_failed(run: &RunbookRun, step: &str, reason: &str, words: &[&str]) {
    let e = entry(run, step);
    assert_eq!(
        e.outputs.get("reason").map(String::as_str),
        Some(reason),
        "{e:#?}"
    );
    let message = e.message.as_deref().unwrap_or_default();
    for word in words {
        assert!(
            message.contains(word),
            "{step}: {word:?} not in {message:?}"
        );
    }
}

/// A request the server received: path and lower-cased headers.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) headers: BTreeMap<String, String>,
}

/// An HTTP/1.1 server on 127.0.0.1 that records every request and answers:
/// `/redirect-here` → 302 to `/landing`, `/redirect-away` → 302 to `http://localhost:<other>`,
/// `/huge` → 100 MiB streamed, anything else → 200 `{"status":"ok"}`.
pub(crate) struct Server {
    pub(crate) base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const HUGE: usize = 100 * 1024 * 1024;

impl Server {
    pub(crate) async fn start(away: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let away = away.to_owned();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, away) = (log.clone(), away.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &away, log).await;
                });
            }
        });
        Self { base, seen }
    }

    pub(crate) fn requests(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().expect("request log");
        seen.iter().filter(|r| r.path == path).cloned().collect()
    }

    pub(crate) fn total(&self) -> usize {
        self.seen.lock().expect("request log").len()
    }
}

async fn serve(
    mut stream: TcpStream,
    away: &str,
    log: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    log.lock().expect("request log").push(Seen {
        path: path.clone(),
        headers,
    });
    let redirect = |to: &str| {
        format!(
            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
    };
    match path.as_str() {
        "/redirect-here" => stream.write_all(redirect("/landing").as_bytes()).await,
        "/redirect-away" => {
            stream
                .write_all(redirect(&format!("{away}/stolen")).as_bytes())
                .await
        }
        "/huge" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {HUGE}\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            let block = vec![b'x'; 64 * 1024];
            // The operator stops reading at its cap and closes: the write then fails.
            for _ in 0..HUGE / block.len() {
                stream.write_all(&block).await?;
            }
            Ok(())
        }
        _ => {
            let body = r#"{"status":"ok"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await
        }
    }
}

/// The API server's URL, as the suite's kubeconfig names it.
pub(crate) async fn api_server_url() -> String {
    let config = kube::Config::infer().await.expect("kubeconfig");
    config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn http_and_notify_never_reach_cloud_metadata_or_the_api_server() {
    let mut ns = TestNamespace::new("egress-refused").await;
    let api = api_server_url().await;
    ns.apply(&runbook(
        "probe",
        &format!(
            "  - {{name: metadata, onFailure: Continue, http: {{url: \"http://169.254.169.254/latest/meta-data/iam/\"}}}}\n  - {{name: metadata-v6, onFailure: Continue, http: {{url: \"http://[fd00:ec2::254]/latest/\"}}}}\n  - {{name: link-local, onFailure: Continue, http: {{url: \"http://169.254.10.1:8080/\"}}}}\n  - {{name: api-server, onFailure: Continue, http: {{url: \"{api}/api/v1/namespaces/{ns}/secrets\"}}}}\n  - {{name: notify-metadata, onFailure: Continue, notify: {{url: \"http://169.254.169.254/hook\", message: hi}}}}",
            ns = ns.name
        ),
    ));
    ns.start_operator();
    ns.apply(&run("probe-1", "probe"));
    let r = finished(&ns, "probe-1").await;
    assert_failed(
        &r,
        "metadata",
        "EgressRefused",
        &["169.254.169.254", "cloud metadata"],
    );
    assert_failed(&r, "metadata-v6", "EgressRefused", &["fd00:ec2::254"]);
    assert_failed(&r, "link-local", "EgressRefused", &["link-local"]);
    assert_failed(
        &r,
        "api-server",
        "EgressRefused",
        &["127.0.0.1", "Kubernetes API server"],
    );
    assert_failed(&r, "notify-metadata", "EgressRefused", &["cloud metadata"]);
    // Refused once, not retried.
    assert_eq!(
        entry(&r, "metadata").attempts,
        1,
        "{:#?}",
        entry(&r, "metadata")
    );

    // A Secret's header goes only to a host written in the step, never one a run's parameter
    // picks: such a Runbook is refused, naming the field.
    ns.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: api-key}\nstringData: {key: top-secret-key}\n");
    ns.apply(&format!(
        "{}  params: [{{name: baseUrl, default: \"https://api.example.com\"}}]\n",
        runbook(
            "aim",
            "  - {name: call, http: {url: \"{{ params.baseUrl }}/x\", headers: [{name: X-Api-Key, valueFrom: {secretKeyRef: {name: api-key, key: key}}}]}}",
        )
    ));
    let aim = ns
        .wait_for::<Runbook>("aim", "Stalled", |o| {
            o.status.as_ref().is_some_and(|s| {
                stalled(&s.conditions, s.observed_generation, o.metadata.generation)
            })
        })
        .await;
    let conditions = aim.status.unwrap_or_default().conditions;
    let message = &condition(&conditions, "Stalled").expect("Stalled").message;
    assert!(
        message.contains("spec.steps[0].http.url") && message.contains("parameter"),
        "{message}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn redirects_are_followed_on_request_to_the_same_host_without_secret_headers() {
    let elsewhere = Server::start("").await;
    // Another host: localhost, not 127.0.0.1 (and another port).
    let away = elsewhere.base.replace("127.0.0.1", "localhost");
    let server = Server::start(&away).await;
    let base = &server.base;
    let mut ns = TestNamespace::new("egress-redirect").await;
    ns.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: api-key}\nstringData: {key: top-secret-key}\n");
    let headers = "[{name: X-Api-Key, valueFrom: {secretKeyRef: {name: api-key, key: key}}}, {name: X-Plain, value: visible}]";
    ns.apply(&runbook(
        "hops",
        &format!(
            "  - {{name: default, onFailure: Continue, http: {{url: \"{base}/redirect-here\", headers: {headers}}}}}\n  - {{name: same-host, http: {{url: \"{base}/redirect-here\", followRedirects: true, headers: {headers}}}}}\n  - {{name: cross-host, onFailure: Continue, http: {{url: \"{base}/redirect-away\", followRedirects: true, headers: {headers}}}}}"
        ),
    ));
    ns.start_operator();
    ns.apply(&run("hops-1", "hops"));
    let r = finished(&ns, "hops-1").await;

    // Not followed by default: the 302 is the answer.
    assert_failed(
        &r,
        "default",
        "UnexpectedStatus",
        &["302", "followRedirects"],
    );
    // Followed to the same host; the Secret's header went with the first request only.
    let same = entry(&r, "same-host");
    assert_eq!(
        same.outputs.get("httpStatus").map(String::as_str),
        Some("200"),
        "{same:#?}"
    );
    let landing = server.requests("/landing");
    assert_eq!(landing.len(), 1, "{landing:?}");
    assert_eq!(
        landing[0].headers.get("x-plain").map(String::as_str),
        Some("visible")
    );
    assert!(!landing[0].headers.contains_key("x-api-key"), "{landing:?}");
    let first = server.requests("/redirect-here");
    assert!(
        first
            .iter()
            .all(|r| r.headers.get("x-api-key").map(String::as_str) == Some("top-secret-key")),
        "{first:?}"
    );
    // Another host: refused, nothing sent there.
    assert_failed(
        &r,
        "cross-host",
        "RedirectRefused",
        &["localhost", "same host"],
    );
    assert_eq!(elsewhere.total(), 0, "{:?}", elsewhere.requests("/stolen"));
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_huge_answer_is_read_only_up_to_the_cap() {
    let server = Server::start("").await;
    let mut ns = TestNamespace::new("egress-huge").await;
    ns.apply(&runbook(
        "download",
        &format!(
            "  - {{name: huge, http: {{url: \"{}/huge\"}}}}",
            server.base
        ),
    ));
    ns.start_operator();
    ns.apply(&run("download-1", "download"));
    let r = finished(&ns, "download-1").await;
    let e = entry(&r, "huge");
    assert_eq!(
        e.outputs.get("httpStatus").map(String::as_str),
        Some("200"),
        "{e:#?}"
    );
    assert!(
        e.outputs
            .get("bodyTruncated")
            .is_some_and(|t| t.contains("65536")),
        "{e:#?}"
    );
    // What reaches status stays capped as before (1 KiB and an ellipsis).
    let body = e
        .outputs
        .get("body")
        .map(String::as_str)
        .unwrap_or_default();
    assert!(body.len() <= 1024 + 3, "{} bytes in status", body.len());
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn loopback_is_refused_unless_the_operator_allows_it() {
    let server = Server::start("").await;
    let mut ns = TestNamespace::new("egress-loopback").await;
    ns.apply(&runbook(
        "local",
        &format!(
            "  - {{name: local, onFailure: Continue, http: {{url: \"{base}/health\"}}}}\n  - {{name: by-name, http: {{url: \"{by_name}/health\"}}}}",
            base = server.base,
            by_name = server.base.replace("127.0.0.1", "localhost"),
        ),
    ));
    let operator = ns.spawn_operator_fenced("");
    ns.adopt_operator(operator);
    ns.apply(&run("local-1", "local"));
    let r = finished(&ns, "local-1").await;
    assert_failed(
        &r,
        "local",
        "EgressRefused",
        &["127.0.0.1", "loopback", "--allow-loopback-egress"],
    );
    assert_failed(&r, "by-name", "EgressRefused", &["localhost", "loopback"]);
    assert_eq!(server.total(), 0);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn rotate_and_patch_leave_guarded_secrets_alone() {
    let mut ns = TestNamespace::new("guarded").await;
    ns.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: plain}\nstringData: {token: unchanged}\n",
    );
    ns.apply(&runbook(
        "grab",
        "  - {name: rotate, onFailure: Continue, rotateSecret: {secret: plain, key: token}}\n  - {name: patch, onFailure: Continue, patch: {target: {apiVersion: v1, kind: Secret, name: plain}, type: merge, patch: {stringData: {token: mine}}}}\n  - {name: patch-role, onFailure: Continue, patch: {target: {apiVersion: rbac.authorization.k8s.io/v1, kind: Role, name: any}, type: merge, patch: {rules: []}}}",
    ));
    ns.start_operator();
    ns.apply(&run("grab-1", "grab"));
    let r = finished(&ns, "grab-1").await;
    assert_failed(
        &r,
        "rotate",
        "NotRotatable",
        &["kubectl label secret", "ops.runbook.dev/rotatable=true"],
    );
    assert_failed(
        &r,
        "patch",
        "PatchRefused",
        &["Secret", "--allow-patch-kinds"],
    );
    assert_failed(
        &r,
        "patch-role",
        "PatchRefused",
        &["Role.rbac.authorization.k8s.io", "--allow-patch-kinds"],
    );
    let secret = ns.api::<Secret>().get("plain").await.expect("secret");
    let token = secret.data.and_then(|d| d.get("token").cloned());
    assert_eq!(token.map(|t| t.0), Some(b"unchanged".to_vec()));
}

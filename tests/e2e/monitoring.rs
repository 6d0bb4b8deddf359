//! Real Prometheus and Alertmanager for the incident tests: each started as a child process on
//! free ports with a generated config in a directory of its own, killed when dropped; an
//! exporter whose `http_requests_total` the test drives; a server that records what it is sent
//! (the test's circuit breaker, a copy of Alertmanager's notifications); and waits on
//! what their HTTP APIs report. The binaries come from `PROMETHEUS` and `ALERTMANAGER`, which
//! `make test` (and `eval "$(hack/tools.sh env)"`) export after building them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::PATIENCE;

/// How often the test's Prometheus scrapes and evaluates rules, and how often its
/// Alertmanager flushes a group: short, so an alert fires seconds after the errors start.
pub const INTERVAL: &str = "1s";

/// A free port on 127.0.0.1 (bound and released; the child binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// The binary named by environment variable `var`, built by `hack/tools.sh build`.
fn binary(var: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{var} is not set: run `make test`, or `hack/tools.sh build` and \
                 `eval \"$(hack/tools.sh env)\"` before `cargo test --test e2e`"
            )
        });
    assert!(
        path.is_file(),
        "{var}={} does not exist: run `hack/tools.sh build`",
        path.display()
    );
    path
}

/// A fresh directory for one process's config, data and log, under the test target dir.
fn scratch_dir(label: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e-monitoring")
        .join(format!("{label}-{:06x}", rand::random::<u32>() & 0xff_ffff));
    std::fs::create_dir_all(&dir).expect("create the monitoring scratch dir");
    dir
}

/// A child process serving HTTP on `base`, killed (and its data removed) when dropped; its
/// config and log stay in `dir` for a failed test's reader.
pub struct Process {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its config, data and `log`.
    pub dir: PathBuf,
    name: &'static str,
}

impl Process {
    fn spawn(name: &'static str, binary: &Path, dir: PathBuf, port: u16, args: &[String]) -> Self {
        let log = std::fs::File::create(dir.join("log")).expect("log file");
        let child = Command::new(binary)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", binary.display()));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            name,
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until `GET /-/ready` answers 200; panics with its log if it exits first.
    async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("child state") {
                panic!(
                    "{} exited ({status}) before it was ready; log {}:\n{}",
                    self.name,
                    self.dir.join("log").display(),
                    self.log_tail()
                );
            }
            if http(&self.base, "GET", "/-/ready", &[], None)
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{} never became ready; log:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET `path` and parse the JSON answer; None while it does not answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Option<Value> {
        let (code, body) = http(&self.base, "GET", path, &[], None).await?;
        if code != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

/// One scrape job of the test's Prometheus: a `host:port` target and the labels every series
/// scraped from it gets (e.g. `namespace`, which scopes the alert to a test namespace).
pub struct ScrapeTarget {
    /// Job name.
    pub job: String,
    /// `127.0.0.1:PORT`.
    pub target: String,
    /// Target labels.
    pub labels: BTreeMap<String, String>,
}

/// Prometheus, scraping every [`INTERVAL`], evaluating `rules` every [`INTERVAL`] and sending
/// alerts to one Alertmanager.
pub struct Prometheus(pub Process);

impl Prometheus {
    /// Starts Prometheus with `rules` (a rule file's YAML: `groups: [...]`), the scrape
    /// `targets` and `alertmanager` (`http://host:port`) and waits until it is ready.
    pub async fn start(rules: &str, targets: &[ScrapeTarget], alertmanager: &str) -> Self {
        let dir = scratch_dir("prometheus");
        let port = free_port();
        std::fs::write(dir.join("rules.yml"), rules).expect("write rules.yml");
        let scrape = targets
            .iter()
            .map(|t| {
                serde_json::json!({
                    "job_name": t.job,
                    "static_configs": [{"targets": [t.target], "labels": t.labels}],
                })
            })
            .collect::<Vec<_>>();
        let am = alertmanager
            .strip_prefix("http://")
            .expect("alertmanager as http://host:port");
        let config = serde_json::json!({
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": ["rules.yml"],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]},
            "scrape_configs": scrape,
        });
        // JSON is YAML: Prometheus reads it as its config file.
        std::fs::write(dir.join("prometheus.yml"), config.to_string()).expect("write config");
        let args = [
            "--config.file=prometheus.yml".to_owned(),
            "--storage.tsdb.path=data".to_owned(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // Re-send firing alerts to Alertmanager every second (default 1m), so a resolved
            // or repeated alert reaches it within the test.
            "--rules.alert.resend-delay=1s".to_owned(),
        ];
        let mut process = Process::spawn("prometheus", &binary("PROMETHEUS"), dir, port, &args);
        process.wait_ready().await;
        Self(process)
    }

    /// The alerts Prometheus reports (`/api/v1/alerts`) named `alertname`.
    pub async fn alerts(&self, alertname: &str) -> Vec<Value> {
        let Some(answer) = self.0.get_json("/api/v1/alerts").await else {
            return Vec::new();
        };
        answer["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == alertname)
            .cloned()
            .collect()
    }

    /// Waits until alert `alertname` is in `state` (`pending` or `firing`) and returns it.
    pub async fn wait_alert(&self, alertname: &str, state: &str) -> Value {
        let started = Instant::now();
        loop {
            let alerts = self.alerts(alertname).await;
            if let Some(alert) = alerts.iter().find(|a| a["state"] == state) {
                return alert.clone();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "Prometheus never reported {alertname} {state}; alerts: {alerts:#?}; log:\n{}",
                self.0.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until Prometheus reports no alert `alertname` (its condition no longer holds).
    pub async fn wait_alert_gone(&self, alertname: &str) {
        let started = Instant::now();
        loop {
            let alerts = self.alerts(alertname).await;
            if alerts.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "Prometheus still reports {alertname}: {alerts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Where Alertmanager sends notifications: the operator's receiver with a bearer token read
/// from a file, and optionally a copy to a second webhook (a test [`Recorder`]).
pub struct Route<'a> {
    /// The operator's `http://127.0.0.1:PORT/v1/alerts/alertmanager`.
    pub operator_url: &'a str,
    /// The file holding the operator's bearer token.
    pub token_file: &'a Path,
    /// Another webhook receiving the same notifications.
    pub copy_to: Option<&'a str>,
    /// How long before a still-firing group is notified again (`repeat_interval`).
    pub repeat_interval: &'a str,
}

impl Route<'_> {
    /// The `alertmanager.yml` for this route: every alert grouped by alertname and
    /// namespace, flushed every [`INTERVAL`], resolved notifications sent.
    pub fn config(&self) -> String {
        let mut webhooks = vec![serde_json::json!({
            "url": self.operator_url,
            "send_resolved": true,
            "http_config": {"authorization": {
                "type": "Bearer",
                "credentials_file": self.token_file,
            }},
        })];
        if let Some(copy) = self.copy_to {
            webhooks.push(serde_json::json!({"url": copy, "send_resolved": true}));
        }
        serde_json::json!({
            "route": {
                "receiver": "runbook-operator",
                "group_by": ["alertname", "namespace"],
                "group_wait": INTERVAL,
                "group_interval": INTERVAL,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [{"name": "runbook-operator", "webhook_configs": webhooks}],
        })
        .to_string()
    }
}

/// Alertmanager, alone (no cluster peers).
pub struct Alertmanager(pub Process);

impl Alertmanager {
    /// Starts Alertmanager with `config` (`alertmanager.yml`) and waits until it is ready.
    pub async fn start(config: &str) -> Self {
        let dir = scratch_dir("alertmanager");
        let port = free_port();
        std::fs::write(dir.join("alertmanager.yml"), config).expect("write alertmanager.yml");
        let args = [
            "--config.file=alertmanager.yml".to_owned(),
            "--storage.path=data".to_owned(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // No gossip port: a single instance, and parallel tests never collide on 9094.
            "--cluster.listen-address=".to_owned(),
        ];
        let mut process = Process::spawn("alertmanager", &binary("ALERTMANAGER"), dir, port, &args);
        process.wait_ready().await;
        Self(process)
    }

    /// The alerts Alertmanager holds (`/api/v2/alerts`) named `alertname`.
    pub async fn alerts(&self, alertname: &str) -> Vec<Value> {
        let Some(answer) = self.0.get_json("/api/v2/alerts").await else {
            return Vec::new();
        };
        answer
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == alertname)
            .cloned()
            .collect()
    }

    /// Waits until Alertmanager holds `alertname` as active (received from Prometheus, not
    /// silenced or inhibited) and returns it.
    pub async fn wait_alert_active(&self, alertname: &str) -> Value {
        let started = Instant::now();
        loop {
            let alerts = self.alerts(alertname).await;
            if let Some(alert) = alerts.iter().find(|a| a["status"]["state"] == "active") {
                return alert.clone();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "Alertmanager never held {alertname} active; alerts: {alerts:#?}; log:\n{}",
                self.0.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One request a [`Recorder`] received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: String,
}

impl Recorded {
    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// What a server answers: status, content type, body.
type Answer = Arc<dyn Fn(&Recorded) -> (u16, &'static str, String) + Send + Sync>;

/// An HTTP server on 127.0.0.1 that answers with a function of the request and records every
/// request. It lives as long as the test's runtime.
pub struct Recorder {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    /// Starts a server answering every request with `answer`.
    pub async fn start(
        answer: impl Fn(&Recorded) -> (u16, &'static str, String) + Send + Sync + 'static,
    ) -> Self {
        let answer: Answer = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, answer) = (log.clone(), answer.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, answer, log).await;
                });
            }
        });
        Self { base, seen }
    }

    /// A server answering 200 `{"status":"ok"}` to everything (the test's circuit breaker, a
    /// copy of Alertmanager's notifications).
    pub async fn ok() -> Self {
        Self::start(|_| (200, "application/json", r#"{"status":"ok"}"#.to_owned())).await
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().expect("request log").clone()
    }

    /// Requests received for `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        let mut requests = self.requests();
        requests.retain(|r| r.path == path);
        requests
    }

    /// Waits until `done` holds for the requests received so far; returns them.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let started = Instant::now();
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{} never received {what}; received: {requests:#?}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    answer: Answer,
    log: Arc<Mutex<Vec<Recorded>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
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
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let request = Recorded {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (code, content_type, reply) = answer(&request);
    log.lock().expect("request log").push(request);
    let response = format!(
        "HTTP/1.1 {code} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Requests per scrape the exporter adds to each series.
#[derive(Clone, Copy, Debug, Default)]
struct Traffic {
    ok_total: u64,
    errors_total: u64,
    ok_per_scrape: u64,
    errors_per_scrape: u64,
}

/// An application's metrics endpoint the test drives: `GET /metrics` serves the counter
/// `http_requests_total{code="200"|"500"}`, each scrape adding the requests per scrape the
/// test last set, so `rate()` over it is the traffic the test chose.
pub struct Exporter {
    server: Recorder,
    traffic: Arc<Mutex<Traffic>>,
}

impl Exporter {
    /// Starts an exporter serving no traffic.
    pub async fn start() -> Self {
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let state = traffic.clone();
        let server = Recorder::start(move |request| {
            if request.path != "/metrics" {
                return (404, "text/plain", "not found\n".to_owned());
            }
            let mut t = state.lock().expect("traffic");
            t.ok_total += t.ok_per_scrape;
            t.errors_total += t.errors_per_scrape;
            let body = format!(
                "# HELP http_requests_total Requests served, by status code.\n\
                 # TYPE http_requests_total counter\n\
                 http_requests_total{{code=\"200\"}} {}\n\
                 http_requests_total{{code=\"500\"}} {}\n",
                t.ok_total, t.errors_total
            );
            (200, "text/plain; version=0.0.4", body)
        })
        .await;
        Self { server, traffic }
    }

    /// From the next scrape on, each scrape counts `ok` more 200s and `errors` more 500s.
    pub fn set_traffic(&self, ok: u64, errors: u64) {
        let mut t = self.traffic.lock().expect("traffic");
        t.ok_per_scrape = ok;
        t.errors_per_scrape = errors;
    }

    /// `127.0.0.1:PORT`, the scrape target.
    pub fn target(&self) -> String {
        self.server.base.trim_start_matches("http://").to_owned()
    }

    /// How many times it was scraped.
    pub fn scrapes(&self) -> usize {
        self.server.requests_to("/metrics").len()
    }
}

/// One HTTP/1.1 request to `base` (`http://host:port`) with `Connection: close`; the status
/// and body (chunked bodies decoded), or None when nothing answers.
pub async fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, String)> {
    let addr = base.strip_prefix("http://")?;
    let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Some((
        code,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The operator's alert receiver for a test: a free port and a token file.
pub struct Receiver {
    /// `127.0.0.1:PORT`, for `--alerts-addr`.
    pub addr: String,
    /// The bearer token.
    pub token: String,
    /// The file holding it, for `--alerts-token-file` and Alertmanager's `credentials_file`.
    pub token_file: PathBuf,
}

impl Receiver {
    /// A free port and a fresh random token written to a file.
    pub fn fresh() -> Self {
        let dir = scratch_dir("receiver");
        let token = format!("{:032x}", rand::random::<u128>());
        let token_file = dir.join("token");
        std::fs::write(&token_file, &token).expect("write the token file");
        Self {
            addr: format!("127.0.0.1:{}", free_port()),
            token,
            token_file,
        }
    }

    /// The operator flags that turn the receiver on.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--alerts-addr".to_owned(),
            self.addr.clone(),
            "--alerts-token-file".to_owned(),
            self.token_file.display().to_string(),
        ]
    }

    /// The webhook URL Alertmanager posts to.
    pub fn url(&self) -> String {
        format!("http://{}/v1/alerts/alertmanager", self.addr)
    }

    /// POSTs an Alertmanager webhook payload as Alertmanager does (bearer token); the status
    /// and body, or None when the receiver does not answer.
    pub async fn post(&self, payload: &str) -> Option<(u16, String)> {
        self.post_with(Some(&self.token), payload).await
    }

    /// POSTs `payload` with `token` (`None`: no Authorization header).
    pub async fn post_with(&self, token: Option<&str>, payload: &str) -> Option<(u16, String)> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        http(
            &format!("http://{}", self.addr),
            "POST",
            "/v1/alerts/alertmanager",
            &headers,
            Some(payload),
        )
        .await
    }

    /// The same token on another free port: a second operator replica's receiver.
    pub fn replica(&self) -> Self {
        Self {
            addr: format!("127.0.0.1:{}", free_port()),
            token: self.token.clone(),
            token_file: self.token_file.clone(),
        }
    }

    /// Waits until the receiver accepts connections (the operator serves it once started).
    pub async fn wait_listening(&self) {
        let started = Instant::now();
        while TcpStream::connect(&self.addr).await.is_err() {
            assert!(
                started.elapsed() < PATIENCE,
                "the operator's alert receiver never listened on {}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

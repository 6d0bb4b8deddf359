//! What the benchmarks `benches/runs.rs`, `benches/windows.rs`, `benches/releases.rs`,
//! `benches/backups.rs`, `benches/failover.rs` and `benches/scale.rs` share: the clock and the
//! progress lines, the environment knobs they all read, the connection to the cluster and to
//! the operator under test ([`Rig`]), Prometheus text parsing and request-count snapshots
//! ([`Snapshot`]), watches stamped with their arrival time, percentiles and number formatting,
//! the figures table ([`figures::Table`]), and operator processes a bench starts itself
//! ([`process::Launcher`]).
//!
//! Each bench target is its own crate and includes this file with `mod support;` (a directory
//! module, so Cargo does not take it for a bench target of its own). The including crate
//! defines `PROGRESS_TAG`, the tag of its progress lines (`bench-runs`, `bench-windows`,
//! `bench-releases`, `bench-backups`, `bench-failover`, `bench-scale`).

pub mod figures;
pub mod pace;
pub mod process;

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How often a progress line is due at the least while a bench waits.
const TICK: Duration = Duration::from_secs(15);
/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

// ---------------------------------------------------------------------------
// clock, progress, entry point
// ---------------------------------------------------------------------------

/// The start of the run: a monotonic instant and the wall-clock time taken with it.
static T0: OnceLock<(Instant, Timestamp)> = OnceLock::new();

/// The start of the run, taken on first use ([`main`] takes it before anything else).
pub fn t0() -> &'static (Instant, Timestamp) {
    T0.get_or_init(|| (Instant::now(), Timestamp::now()))
}

/// Seconds since the run started, on the monotonic clock (the `+Ns` of progress lines).
pub fn now() -> f64 {
    t0().0.elapsed().as_secs_f64()
}

/// A progress line on stderr: `[TAG HH:MM:SS +Ns] msg`, TAG being the bench's `PROGRESS_TAG`.
pub fn progress(msg: impl Display) {
    let clock = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
    eprintln!("[{} {clock} +{:4.0}s] {msg}", crate::PROGRESS_TAG, now());
}

/// Says when another progress line is due (at least one every TICK while waiting).
pub struct Ticker(Instant);

impl Ticker {
    /// A ticker whose first line is due one TICK from now.
    pub fn new() -> Self {
        Self(Instant::now() + TICK)
    }

    /// Whether a line is due; when it is, the next one is due one TICK later.
    pub fn due(&mut self) -> bool {
        if Instant::now() >= self.0 {
            self.0 = Instant::now() + TICK;
            true
        } else {
            false
        }
    }
}

/// The body of a bench's `main`. Without `BENCH_OPERATOR_URL` it prints `usage` and returns
/// (exit 0), so a plain `cargo bench` never touches whatever cluster the kubeconfig points
/// at. Otherwise it starts the clock and runs `bench`; it exits 1 when `bench` fails (after
/// an `ERROR:` progress line) or returns Ok(false) (figures printed, but something broke).
pub async fn main<F, Fut>(usage: &str, bench: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let Some(operator_url) = env_text("BENCH_OPERATOR_URL") else {
        println!("{usage}");
        return;
    };
    t0();
    match bench(operator_url).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            progress(format!("ERROR: {err:#}"));
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------

/// A positive integer from the environment; `default` when unset or empty.
pub fn env_positive(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) if v.is_empty() => Ok(default),
        Ok(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name} must be a positive integer (got {v:?})"),
        },
    }
}

/// A text from the environment; None when unset or empty.
pub fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The knobs both benches read the same way (the scripts set them).
pub struct Settings {
    /// `http://127.0.0.1:PORT` of the operator's probe server, without a trailing `/`.
    pub operator_url: String,
    /// BENCH_OPERATOR_PID: the operator's pid, for RSS, CPU time and liveness.
    pub operator_pid: Option<u32>,
    /// BENCH_TIMEOUT (600 s): how long any one wait may take.
    pub timeout: Duration,
    /// BENCH_OUT: directory for raw data.
    pub out: Option<PathBuf>,
}

impl Settings {
    /// Reads BENCH_TIMEOUT, BENCH_OPERATOR_PID and BENCH_OUT, in that order (so the first
    /// bad one is the one reported); `operator_url` is BENCH_OPERATOR_URL.
    pub fn from_env(operator_url: String) -> Result<Self> {
        Ok(Self {
            timeout: Duration::from_secs(env_positive("BENCH_TIMEOUT", 600)?),
            operator_url: operator_url.trim_end_matches('/').to_owned(),
            operator_pid: env_text("BENCH_OPERATOR_PID")
                .map(|p| p.parse().context("BENCH_OPERATOR_PID"))
                .transpose()?,
            out: env_text("BENCH_OUT").map(PathBuf::from),
        })
    }
}

// ---------------------------------------------------------------------------
// the cluster and the operator under test
// ---------------------------------------------------------------------------

/// The cluster and the operator under test, as a bench reaches them.
pub struct Rig {
    /// Client of the cluster of the current kubeconfig (the script's bench cluster).
    pub client: Client,
    /// Client for the operator's /metrics.
    pub http: reqwest::Client,
    /// BENCH_OPERATOR_URL, without a trailing `/`.
    pub operator_url: String,
    /// BENCH_OPERATOR_PID.
    pub operator_pid: Option<u32>,
    /// BENCH_TIMEOUT.
    pub timeout: Duration,
    /// BENCH_OUT.
    pub out: Option<PathBuf>,
    /// Prefix of the FlowSchemas that count the operator's requests (see the bench's script).
    pub flow_prefix: &'static str,
}

impl Rig {
    /// Installs the TLS provider, creates BENCH_OUT, and connects to the cluster of the
    /// current kubeconfig.
    pub async fn connect(settings: Settings, flow_prefix: &'static str) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(dir) = &settings.out {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let client = Client::try_default()
            .await
            .map_err(|e| anyhow!("no Kubernetes client: {e}"))?;
        let http = reqwest::Client::builder()
            .build()
            .context("building the HTTP client")?;
        let Settings {
            operator_url,
            operator_pid,
            timeout,
            out,
        } = settings;
        Ok(Self {
            client,
            http,
            operator_url,
            operator_pid,
            timeout,
            out,
            flow_prefix,
        })
    }

    /// Fails when the operator process is gone.
    pub fn operator_alive(&self) -> Result<()> {
        let Some(pid) = self.operator_pid else {
            return Ok(());
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let state = status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .map(str::trim)
            .unwrap_or("");
        if state.is_empty() || state.starts_with('Z') {
            bail!("the operator (pid {pid}) exited");
        }
        Ok(())
    }

    /// CPU seconds (user + system) the operator process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.operator_pid?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // fields after "(comm)": state is field 3, utime 14, stime 15
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / USER_HZ)
    }

    /// A `/proc/PID/status` field of the operator in MiB (VmRSS, VmHWM).
    pub fn proc_mib(&self, field: &str) -> Option<f64> {
        proc_mib(self.operator_pid?, field)
    }

    /// The API server's and the operator's counters now.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::take(
            &self.client,
            &self.http,
            &self.operator_url,
            self.flow_prefix,
        )
        .await
    }

    /// Writes `text` to the file `file` of BENCH_OUT (nothing without BENCH_OUT); a failure
    /// is only reported.
    pub fn write_out(&self, file: &str, text: &str) {
        if let Some(dir) = &self.out
            && let Err(err) = std::fs::write(dir.join(file), text)
        {
            progress(format!("cannot write {}: {err}", dir.join(file).display()));
        }
    }

    /// Polls `check` every 250 ms until it returns Ok(None); Ok(Some(text)) is the progress
    /// shown every ~15 s.
    pub async fn wait_for<F, Fut>(&self, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<String>>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut tick = Ticker::new();
        loop {
            let state = check().await?;
            let Some(state) = state else { return Ok(()) };
            self.operator_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "timed out after {:?} waiting for {what}: {state}",
                    self.timeout
                );
            }
            if tick.due() {
                progress(format!("  ... waiting for {what}: {state}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until `total` (a sum of the operator's counters, read every 500 ms) stands still
    /// for 3 s; returns Ok(false) instead when `past_deadline` says so first.
    pub async fn wait_quiet(
        &self,
        total: impl Fn(&Snapshot) -> f64,
        past_deadline: impl Fn() -> bool,
    ) -> Result<bool> {
        let mut last = f64::NAN;
        let mut still_since = Instant::now();
        let mut tick = Ticker::new();
        loop {
            let snap = self.snapshot().await?;
            let total = total(&snap);
            if total != last {
                last = total;
                still_since = Instant::now();
            } else if still_since.elapsed() >= Duration::from_secs(3) {
                return Ok(true);
            }
            self.operator_alive()?;
            if past_deadline() {
                return Ok(false);
            }
            if tick.due() {
                progress("  ... waiting for the operator to be quiet");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A `/proc/PID/status` field in MiB (VmRSS, VmHWM); None when the process is gone.
pub fn proc_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Runs `make` over `0..n` with `parallel` futures in flight; all must succeed.
pub async fn for_all<F, Fut>(n: usize, parallel: usize, make: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let results: Vec<Result<()>> = stream::iter(0..n)
        .map(make)
        .buffer_unordered(parallel)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// A Deployment `name` of 1 replica, labelled `label: name` (also its selector), with one
/// container `app` (a made-up image: kwok runs no pods) that has the env variable `env`.
#[allow(dead_code, reason = "benches/releases.rs makes no Deployments")]
pub fn deployment(name: &str, label: &str, env: (&str, &str)) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {label: name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {label: name}},
            "template": {
                "metadata": {"labels": {label: name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "registry.invalid/bench-app:1",
                    "env": [{"name": env.0, "value": env.1}]
                }]}
            }
        }
    })
}

/// `kubectl rollout status` for a Deployment: done when the controller observed the current
/// generation and every replica is updated and available, with no old one left.
#[allow(dead_code, reason = "benches/releases.rs makes no Deployments")]
pub fn rollout_complete(d: &Deployment) -> bool {
    let (Some(spec), Some(status)) = (&d.spec, &d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && updated >= want
        && status.replicas.unwrap_or(0) <= updated
        && status.available_replicas.unwrap_or(0) >= updated
}

// ---------------------------------------------------------------------------
// watches
// ---------------------------------------------------------------------------

/// How a bench stamps the arrival of a watch event: seconds on [`now`] (`f64`) or a
/// wall-clock instant (`Timestamp`).
pub trait Arrival: Send + 'static {
    /// The arrival time of an event that reaches this process now.
    fn arrival() -> Self;
}

impl Arrival for f64 {
    fn arrival() -> f64 {
        now()
    }
}

impl Arrival for Timestamp {
    fn arrival() -> Timestamp {
        Timestamp::now()
    }
}

/// Watch errors of this process's watches (each bench is its own process).
static WATCH_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times the bench's watches failed (and were retried) so far.
pub fn watch_errors() -> u64 {
    WATCH_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Locks `m`, also when a panicking holder poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Follows a watch, stamping every object with its arrival time; the first five errors
/// (the watch retries) get a progress line.
pub fn spawn_watch<K, S, T>(
    api: Api<K>,
    config: watcher::Config,
    seen: Arc<Mutex<S>>,
    record: fn(&mut S, T, K),
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    S: Send + 'static,
    T: Arrival,
{
    spawn_watch_changes(api, config, seen, move |seen, t, change| {
        if let Change::Applied(o) = change {
            record(seen, t, o)
        }
    });
}

/// One object of a watch event, for [`spawn_watch_changes`].
pub enum Change<K> {
    /// Created or changed (also the objects of a (re)list).
    Applied(K),
    /// Deleted (a deletion missed while the watch restarts is not reported).
    Deleted(K),
}

/// [`spawn_watch`], also reporting deletions.
pub fn spawn_watch_changes<K, S, T, F>(
    api: Api<K>,
    config: watcher::Config,
    seen: Arc<Mutex<S>>,
    record: F,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    S: Send + 'static,
    T: Arrival,
    F: Fn(&mut S, T, Change<K>) + Send + 'static,
{
    tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let t = T::arrival();
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    record(&mut lock(&seen), t, Change::Applied(o))
                }
                Ok(watcher::Event::Delete(o)) => record(&mut lock(&seen), t, Change::Deleted(o)),
                Ok(_) => {}
                Err(err) => {
                    let n = WATCH_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n <= 5 {
                        progress(format!("watch error (retried): {err}"));
                    }
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------
// metrics: API server, FlowSchemas, operator
// ---------------------------------------------------------------------------

/// One Prometheus text sample.
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Its labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The samples of a Prometheus text exposition (comments and unparsable lines skipped).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = match line.rfind('}') {
            Some(close) => (&line[..=close], line[close + 1..].trim()),
            None => match line.split_once(' ') {
                Some((h, v)) => (h, v.trim()),
                None => continue,
            },
        };
        let value = value.split_whitespace().next().unwrap_or("");
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
            None => (head, BTreeMap::new()),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// The labels of a sample: `a="x",b="y\"z"` without the braces.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            chars.next();
            if c == '=' {
                break;
            }
            if c != ',' && !c.is_whitespace() {
                key.push(c);
            }
        }
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => break,
                _ => value.push(c),
            }
        }
        labels.insert(key, value);
    }
    labels
}

/// A label of a sample; "" when it has none of that name.
fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.labels.get(name).map(String::as_str).unwrap_or("")
}

/// The key of an API server request sample: "VERB group/resource[/subresource]" (group
/// `core` for the core group).
fn request_key(s: &Sample) -> String {
    let group = match label(s, "group") {
        "" => "core",
        g => g,
    };
    let sub = label(s, "subresource");
    format!(
        "{} {group}/{}{}{sub}",
        label(s, "verb"),
        label(s, "resource"),
        if sub.is_empty() { "" } else { "/" },
    )
}

/// The counter maps of a [`Snapshot`], by their name in raw data (`Snapshot::tsv`).
#[derive(Clone, Copy)]
pub enum Counters {
    /// `api`: requests of all clients.
    Api,
    /// `refused`: the requests answered with an error.
    #[allow(dead_code, reason = "benches/windows.rs leaves it out of its raw data")]
    Refused,
    /// `flow`: the operator's requests, by FlowSchema.
    Flows,
    /// `op`: the operator's own metrics.
    Op,
}

/// Counters at one moment.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// `apiserver_request_total` by "VERB group/resource[/subresource]" (all clients).
    pub api: BTreeMap<String, f64>,
    /// `apiserver_request_duration_seconds` sum and count, keyed like `api`.
    pub latency_sum: BTreeMap<String, f64>,
    /// See `latency_sum`.
    pub latency_count: BTreeMap<String, f64>,
    /// The part of `api` answered with an error, by "CODE VERB group/resource[/subresource]".
    pub refused: BTreeMap<String, f64>,
    /// `apiserver_flowcontrol_dispatched_requests_total` of the operator's FlowSchemas, by
    /// suffix (events, crd-write, write, get, list, watch, other).
    pub flows: BTreeMap<String, f64>,
    /// The operator's metrics: "write CONTROLLER/KIND" and "reconcile CONTROLLER".
    pub op: BTreeMap<String, f64>,
}

impl Snapshot {
    /// Reads the API server's /metrics (through `client`) and the operator's (at
    /// `operator_url`); `flow_prefix` picks the FlowSchemas that count the operator.
    pub async fn take(
        client: &Client,
        http: &reqwest::Client,
        operator_url: &str,
        flow_prefix: &str,
    ) -> Result<Self> {
        let request = axum::http::Request::get("/metrics").body(Vec::new())?;
        let text = client
            .request_text(request)
            .await
            .context("reading the API server's /metrics")?;
        let mut snap = Snapshot::default();
        for s in parse_prometheus(&text) {
            match s.name.as_str() {
                "apiserver_request_total" => {
                    let key = request_key(&s);
                    if label(&s, "code").parse::<u16>().is_ok_and(|c| c >= 400) {
                        *snap
                            .refused
                            .entry(format!("{} {key}", label(&s, "code")))
                            .or_default() += s.value;
                    }
                    *snap.api.entry(key).or_default() += s.value;
                }
                "apiserver_request_duration_seconds_sum"
                | "apiserver_request_duration_seconds_count" => {
                    let key = request_key(&s);
                    let map = if s.name.ends_with("_sum") {
                        &mut snap.latency_sum
                    } else {
                        &mut snap.latency_count
                    };
                    *map.entry(key).or_default() += s.value;
                }
                "apiserver_flowcontrol_dispatched_requests_total" => {
                    if let Some(kind) = label(&s, "flow_schema").strip_prefix(flow_prefix) {
                        *snap.flows.entry(kind.to_owned()).or_default() += s.value;
                    }
                }
                _ => {}
            }
        }
        let text = http
            .get(format!("{operator_url}/metrics"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("scraping the operator's /metrics")?
            .text()
            .await?;
        for s in parse_prometheus(&text) {
            let key = match s.name.as_str() {
                "runbook_operator_api_writes_total" => {
                    format!("write {}/{}", label(&s, "controller"), label(&s, "write"))
                }
                "runbook_operator_reconciles_total" => {
                    format!("reconcile {}", label(&s, "controller"))
                }
                _ => continue,
            };
            *snap.op.entry(key).or_default() += s.value;
        }
        Ok(snap)
    }

    /// Per-key `self - before`.
    pub fn since(&self, before: &Snapshot) -> Snapshot {
        fn diff(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
            a.iter()
                .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v != 0.0)
                .collect()
        }
        Snapshot {
            api: diff(&self.api, &before.api),
            refused: diff(&self.refused, &before.refused),
            latency_sum: diff(&self.latency_sum, &before.latency_sum),
            latency_count: diff(&self.latency_count, &before.latency_count),
            flows: diff(&self.flows, &before.flows),
            op: diff(&self.op, &before.op),
        }
    }

    /// All clients' requests whose (verb, "group/resource[/subresource]") passes `pred`.
    pub fn api_sum(&self, pred: impl Fn(&str, &str) -> bool) -> f64 {
        self.api
            .iter()
            .filter(|(k, _)| {
                let (verb, what) = k.split_once(' ').unwrap_or((k, ""));
                pred(verb, what)
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// All clients' write requests, by key (for listing them).
    pub fn api_writes(&self) -> impl Iterator<Item = (&String, &f64)> {
        self.api
            .iter()
            .filter(|(k, _)| is_write(k.split(' ').next().unwrap_or("")))
    }

    /// Mean server-side latency in seconds of the requests whose key passes `pred`.
    #[allow(dead_code, reason = "only benches/runs.rs shows latencies")]
    pub fn mean_latency(&self, pred: impl Fn(&str, &str) -> bool) -> Option<f64> {
        let (mut sum, mut count) = (0.0, 0.0);
        for (k, c) in &self.latency_count {
            let (verb, what) = k.split_once(' ').unwrap_or((k, ""));
            if pred(verb, what) {
                count += c;
                sum += self.latency_sum.get(k).copied().unwrap_or(0.0);
            }
        }
        (count > 0.0).then(|| sum / count)
    }

    /// The operator's requests counted by the FlowSchema of suffix `kind`.
    pub fn flow(&self, kind: &str) -> f64 {
        self.flows.get(kind).copied().unwrap_or(0.0)
    }

    /// The operator's writes of any resource, Events included (FlowSchemas).
    pub fn op_writes(&self) -> f64 {
        self.flow("crd-write") + self.flow("write") + self.flow("events")
    }

    /// One of the operator's own counters ("write CONTROLLER/KIND", "reconcile CONTROLLER").
    #[allow(dead_code, reason = "only benches/runs.rs reads one counter exactly")]
    pub fn op_exact(&self, key: &str) -> f64 {
        self.op.get(key).copied().unwrap_or(0.0)
    }

    /// The sum of the operator's own counters whose key starts with `prefix`.
    pub fn op_sum(&self, prefix: &str) -> f64 {
        self.op
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    /// Raw data: a "MAP\tKEY\tVALUE" line per counter of the maps `maps`, in that order.
    pub fn tsv(&self, maps: &[Counters]) -> String {
        let mut out = String::new();
        for which in maps {
            let (name, map) = match which {
                Counters::Api => ("api", &self.api),
                Counters::Refused => ("refused", &self.refused),
                Counters::Flows => ("flow", &self.flows),
                Counters::Op => ("op", &self.op),
            };
            for (k, v) in map {
                let _ = writeln!(out, "{name}\t{k}\t{v}");
            }
        }
        out
    }
}

/// Whether an API server verb writes.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "POST" | "PUT" | "PATCH" | "DELETE" | "DELETECOLLECTION" | "APPLY" | "CREATE" | "UPDATE"
    )
}

// ---------------------------------------------------------------------------
// figures
// ---------------------------------------------------------------------------

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// `v`, sorted (total order: NaN last).
pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// A figure for the table: no decimals for whole numbers and from 1000 on, one from 100 on,
/// two down to 0.01 (and for zero: "0.00"), four below.
pub fn num(v: f64) -> String {
    // no "-0.00": an empty f64 sum is -0.0
    let v = v + 0.0;
    let a = v.abs();
    if a >= 1000.0 || (a > 0.0 && v.fract() == 0.0) {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// "a 2, b 1": how often each text occurs, in text order.
pub fn counts(items: impl IntoIterator<Item = String>) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for i in items {
        *by.entry(i).or_default() += 1;
    }
    by.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

//! Benchmark of issue 3, "Runbooks that really run": BENCH_COUNT (200) concurrent RunbookRuns
//! of a five-step Runbook, `scale` (by 1) -> `setEnv` -> `restart` (wait for the rollout) ->
//! `job` -> `http` (to a server this binary runs on 127.0.0.1), each run on its own Deployment.
//!
//! Run it through `hack/bench-runs.sh`, which starts the `bench` cluster and the operator and
//! passes them in through the environment. Without `BENCH_OPERATOR_URL` this binary only
//! prints how to run it and exits 0, so a plain `cargo bench` never touches whatever cluster
//! the current kubeconfig points at.
//!
//! Prints figures, not verdicts: it exits non-zero only when something broke (a run did not
//! succeed, the operator died, a wait timed out). Progress goes to stderr (a line at least
//! every ~15 s), the summary table to stdout.
//!
//! # Definitions
//!
//! All times are taken by this process on one monotonic clock: the moment a watch event
//! (RunbookRuns, Jobs, Deployments of the namespace) reaches this process, or the moment its
//! HTTP server answers. The operator's own timestamps are not used.
//!
//! * **step starts**: the first RunbookRun event in which the step's journal entry is no
//!   longer `Pending`.
//! * **condition met**, per step: scale: the Deployment event showing the new
//!   `spec.replicas`; setEnv: the Deployment event showing the new env value; restart: the
//!   first Deployment event whose pod template carries the run's `restartedAt` and whose
//!   rollout is complete by `kubectl rollout status` rules; job: the Job event with
//!   `Complete=True`; http: the moment the server answered.
//! * **operator overhead** of a transition = next step starts (for http: the run is seen
//!   finished) - condition met. It is what the operator adds between "the cluster is done"
//!   and "the journal shows the next step": noticing the change, re-reading the target,
//!   journal writes and Events.
//! * **runs per second** = BENCH_COUNT / (first create sent -> last run seen finished).
//! * **API requests per step** = request deltas over a round / (BENCH_COUNT x 5). The
//!   operator's own requests are counted exactly with API Priority and Fairness: the script
//!   runs the operator impersonating the user `runbook-bench-operator` and installs
//!   FlowSchemas `runbook-bench-op-*` (priority level `exempt`, so nothing is throttled)
//!   that sort its requests by kind; `apiserver_flowcontrol_dispatched_requests_total` counts
//!   them. Also shown: `apiserver_request_total` for all clients (controller-manager,
//!   scheduler, kwok and this bench included) and the operator's own
//!   `runbook_operator_api_writes_total`.
//! * **operator RSS**: VmRSS of the operator process at the end of each round.
//! * **settled window**: after the last round, BENCH_SETTLE s idle, then BENCH_WINDOW s in
//!   which every write to `ops.runbook.dev` is counted (target 0): the Runbook has no
//!   schedule and its runs are finished.
//!
//! Each round first resets the stage: deletes the previous round's runs and Jobs, scales
//! the Deployments back to 1 replica, and waits until the operator is quiet.
//!
//! Environment (defaults in parentheses; hack/bench-runs.sh sets them):
//! * BENCH_OPERATOR_URL: http://127.0.0.1:PORT of the operator's probe server (required)
//! * BENCH_OPERATOR_PID: the operator's pid, for RSS, CPU time and liveness
//! * BENCH_NAMESPACE (bench-runs), BENCH_COUNT (200)
//! * BENCH_RUNS (1): rounds; a round of 200 runs takes ~4 min on a 2-core machine, most of
//!   it the controller-manager rolling out 200 Deployments twice, so one round by default
//! * BENCH_WINDOW (60), BENCH_SETTLE (20): the settled window, seconds
//! * BENCH_TIMEOUT (600): seconds for any one wait
//! * BENCH_JOB_RUN_FOR: a Go duration the Job pods run for (default: they complete at once)
//! * BENCH_OUT: directory for raw data (per-run times, request deltas, failed runs)

use std::collections::{BTreeMap, HashMap};
use std::fmt::{Display, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The Runbook every run runs.
const RUNBOOK: &str = "bench-five-steps";
/// Step names, in order; the transitions measured are between neighbours.
const STEPS: [&str; 5] = ["scale", "set-env", "restart", "job", "http"];
/// What "condition met" means for each step (summary and raw data).
const CONDITIONS: [&str; 5] = [
    "Deployment shows the new spec.replicas",
    "Deployment shows the new env value",
    "rollout of the restarted template complete",
    "Job Complete=True",
    "HTTP server answered",
];
/// Field manager of everything this binary writes.
const MANAGER: &str = "bench-runs";
/// Prefix of the FlowSchemas that count the operator's requests (see hack/bench-runs.sh).
const FLOW_PREFIX: &str = "runbook-bench-op-";
/// The env variable the setEnv step sets (to the round number).
const ENV_NAME: &str = "BENCH_ROUND";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const TICK: Duration = Duration::from_secs(15);
/// The ConfigMap and the RunbookRun the bench patches once a second, in the namespace
/// `<BENCH_NAMESPACE>-probe` that the operator does not watch, to time its own watches.
const PROBE: &str = "bench-runs-probe";
/// The two probes.
const PROBE_KINDS: [&str; 2] = ["ConfigMap", "RunbookRun"];
const PROBE_SEQ: &str = "bench.runbook.dev/seq";
/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

// ---------------------------------------------------------------------------
// clock, progress, configuration
// ---------------------------------------------------------------------------

static T0: OnceLock<(Instant, jiff::Timestamp)> = OnceLock::new();

fn t0() -> &'static (Instant, jiff::Timestamp) {
    T0.get_or_init(|| (Instant::now(), jiff::Timestamp::now()))
}

/// Seconds since this process started (the one clock every figure uses).
fn now() -> f64 {
    t0().0.elapsed().as_secs_f64()
}

/// A wall-clock time (RFC 3339) on the `now()` scale; raw data only.
fn wall_to_secs(text: &str) -> Option<f64> {
    let ts: jiff::Timestamp = text.parse().ok()?;
    Some(ts.duration_since(t0().1).as_secs_f64())
}

fn progress(msg: impl Display) {
    let clock = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
    eprintln!("[bench-runs {clock} +{:4.0}s] {msg}", now());
}

/// Says when another progress line is due (at least one every TICK while waiting).
struct Ticker(Instant);

impl Ticker {
    fn new() -> Self {
        Self(Instant::now() + TICK)
    }
    fn due(&mut self) -> bool {
        if Instant::now() >= self.0 {
            self.0 = Instant::now() + TICK;
            true
        } else {
            false
        }
    }
}

struct Config {
    namespace: String,
    count: usize,
    rounds: usize,
    window: u64,
    settle: u64,
    timeout: Duration,
    operator_url: String,
    operator_pid: Option<u32>,
    job_run_for: Option<String>,
    out: Option<PathBuf>,
}

fn env_positive(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) if v.is_empty() => Ok(default),
        Ok(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name} must be a positive integer (got {v:?})"),
        },
    }
}

fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    fn from_env(operator_url: String) -> Result<Self> {
        let count = env_positive("BENCH_COUNT", 200)? as usize;
        if count > 1000 {
            bail!("BENCH_COUNT is at most 1000 (the Runbook's history limit)");
        }
        Ok(Self {
            namespace: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-runs".into()),
            count,
            rounds: env_positive("BENCH_RUNS", 1)? as usize,
            window: env_positive("BENCH_WINDOW", 60)?,
            settle: env_positive("BENCH_SETTLE", 20)?,
            timeout: Duration::from_secs(env_positive("BENCH_TIMEOUT", 600)?),
            operator_url: operator_url.trim_end_matches('/').to_owned(),
            operator_pid: env_text("BENCH_OPERATOR_PID")
                .map(|p| p.parse().context("BENCH_OPERATOR_PID"))
                .transpose()?,
            job_run_for: env_text("BENCH_JOB_RUN_FOR"),
            out: env_text("BENCH_OUT").map(PathBuf::from),
        })
    }
}

// ---------------------------------------------------------------------------
// what the watches and the HTTP server saw
// ---------------------------------------------------------------------------

struct RunSeen {
    /// When each step was first seen not Pending.
    started: [Option<f64>; 5],
    /// When the run was first seen finished.
    finished: Option<f64>,
    last: RunbookRun,
}

struct DeploySeen {
    t: f64,
    replicas: i32,
    env: Option<String>,
    restarted_at: Option<String>,
    complete: bool,
}

#[derive(Default)]
struct JobSeen {
    complete: Option<f64>,
    failed: Option<f64>,
}

#[derive(Default)]
struct Seen {
    runs: HashMap<String, RunSeen>,
    deployments: HashMap<String, Vec<DeploySeen>>,
    jobs: HashMap<String, JobSeen>,
    /// First answer per request path.
    http: HashMap<String, f64>,
    watch_errors: u64,
    /// Probe writes by (kind index, sequence number): when the patch was sent, and when its
    /// watch event arrived.
    probe_sent: HashMap<(usize, u64), f64>,
    probe_seen: HashMap<(usize, u64), f64>,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(seen: &Shared) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_phase(run: &RunbookRun) -> Option<&str> {
    run.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_finished(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed" | "Cancelled"))
}

fn record_run(seen: &mut Seen, t: f64, run: RunbookRun) {
    let entry = seen.runs.entry(run.name_any()).or_insert_with(|| RunSeen {
        started: [None; 5],
        finished: None,
        last: run.clone(),
    });
    if let Some(status) = &run.status {
        for (slot, step) in entry.started.iter_mut().zip(&status.steps) {
            if step.phase != StepPhase::Pending && slot.is_none() {
                *slot = Some(t);
            }
        }
        if is_finished(status.phase.as_deref()) && entry.finished.is_none() {
            entry.finished = Some(t);
        }
    }
    entry.last = run;
}

/// `kubectl rollout status` for a Deployment: done when the controller observed the current
/// generation and every replica is updated and available, with no old one left.
fn rollout_complete(d: &Deployment) -> bool {
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

fn deploy_seen(t: f64, d: &Deployment) -> DeploySeen {
    let template = d.spec.as_ref().map(|s| &s.template);
    let env = template
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == ENV_NAME))
        .and_then(|e| e.value.clone());
    let restarted_at = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RESTARTED_AT).cloned());
    DeploySeen {
        t,
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        env,
        restarted_at,
        complete: rollout_complete(d),
    }
}

fn record_deployment(seen: &mut Seen, t: f64, d: Deployment) {
    let obs = deploy_seen(t, &d);
    seen.deployments.entry(d.name_any()).or_default().push(obs);
}

fn record_job(seen: &mut Seen, t: f64, job: Job) {
    let entry = seen.jobs.entry(job.name_any()).or_default();
    let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => {
                entry.complete.get_or_insert(t);
            }
            "Failed" => {
                entry.failed.get_or_insert(t);
            }
            _ => {}
        }
    }
}

fn record_probe<K: Resource>(kind: usize, seen: &mut Seen, t: f64, obj: K) {
    if let Some(seq) = obj
        .annotations()
        .get(PROBE_SEQ)
        .and_then(|v| v.parse::<u64>().ok())
    {
        seen.probe_seen.entry((kind, seq)).or_insert(t);
    }
}

fn record_probe_cm(seen: &mut Seen, t: f64, obj: ConfigMap) {
    record_probe(0, seen, t, obj);
}

fn record_probe_run(seen: &mut Seen, t: f64, obj: RunbookRun) {
    record_probe(1, seen, t, obj);
}

/// Follows a watch, stamping every object with its arrival time.
fn spawn_watch<K>(api: Api<K>, config: watcher::Config, seen: Shared, record: fn(&mut Seen, f64, K))
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let t = now();
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    record(&mut lock(&seen), t, o)
                }
                Ok(_) => {}
                Err(err) => {
                    let n = {
                        let mut s = lock(&seen);
                        s.watch_errors += 1;
                        s.watch_errors
                    };
                    if n <= 5 {
                        progress(format!("watch error (retried): {err}"));
                    }
                }
            }
        }
    });
}

/// The http step's target: answers 200 to anything and notes when it answered each path.
async fn start_http_server(seen: Shared) -> Result<u16> {
    async fn answer(
        axum::extract::State(seen): axum::extract::State<Shared>,
        uri: axum::http::Uri,
    ) -> &'static str {
        let t = now();
        lock(&seen).http.entry(uri.path().to_owned()).or_insert(t);
        "ok\n"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().fallback(answer).with_state(seen);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            progress(format!("HTTP server stopped: {err}"));
        }
    });
    Ok(port)
}

// ---------------------------------------------------------------------------
// metrics: API server, FlowSchemas, operator
// ---------------------------------------------------------------------------

/// One Prometheus text sample.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_prometheus(text: &str) -> Vec<Sample> {
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

/// Counters at one moment.
#[derive(Clone, Default)]
struct Snapshot {
    /// `apiserver_request_total` by "VERB group/resource[/subresource]" (all clients).
    api: BTreeMap<String, f64>,
    /// `apiserver_request_duration_seconds` sum and count, keyed like `api`.
    latency_sum: BTreeMap<String, f64>,
    latency_count: BTreeMap<String, f64>,
    /// The part of `api` answered with an error, by "CODE VERB group/resource[/subresource]".
    refused: BTreeMap<String, f64>,
    /// `apiserver_flowcontrol_dispatched_requests_total` of the operator's FlowSchemas, by
    /// suffix (events, crd-write, write, get, list, watch, other).
    flows: BTreeMap<String, f64>,
    /// The operator's metrics: "write CONTROLLER/KIND" and "reconcile CONTROLLER".
    op: BTreeMap<String, f64>,
}

fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.labels.get(name).map(String::as_str).unwrap_or("")
}

impl Snapshot {
    async fn take(client: &Client, http: &reqwest::Client, operator_url: &str) -> Result<Self> {
        let request = axum::http::Request::get("/metrics").body(Vec::new())?;
        let text = client
            .request_text(request)
            .await
            .context("reading the API server's /metrics")?;
        let mut snap = Snapshot::default();
        for s in parse_prometheus(&text) {
            match s.name.as_str() {
                "apiserver_request_total" => {
                    let group = match label(&s, "group") {
                        "" => "core",
                        g => g,
                    };
                    let sub = label(&s, "subresource");
                    let key = format!(
                        "{} {group}/{}{}{sub}",
                        label(&s, "verb"),
                        label(&s, "resource"),
                        if sub.is_empty() { "" } else { "/" },
                    );
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
                    let group = match label(&s, "group") {
                        "" => "core",
                        g => g,
                    };
                    let sub = label(&s, "subresource");
                    let key = format!(
                        "{} {group}/{}{}{sub}",
                        label(&s, "verb"),
                        label(&s, "resource"),
                        if sub.is_empty() { "" } else { "/" },
                    );
                    let map = if s.name.ends_with("_sum") {
                        &mut snap.latency_sum
                    } else {
                        &mut snap.latency_count
                    };
                    *map.entry(key).or_default() += s.value;
                }
                "apiserver_flowcontrol_dispatched_requests_total" => {
                    if let Some(kind) = label(&s, "flow_schema").strip_prefix(FLOW_PREFIX) {
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
    fn since(&self, before: &Snapshot) -> Snapshot {
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

    fn api_sum(&self, pred: impl Fn(&str, &str) -> bool) -> f64 {
        self.api
            .iter()
            .filter(|(k, _)| {
                let (verb, what) = k.split_once(' ').unwrap_or((k, ""));
                pred(verb, what)
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Mean server-side latency in seconds of the requests whose key passes `pred`.
    fn mean_latency(&self, pred: impl Fn(&str, &str) -> bool) -> Option<f64> {
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

    fn flow(&self, kind: &str) -> f64 {
        self.flows.get(kind).copied().unwrap_or(0.0)
    }

    fn op_exact(&self, key: &str) -> f64 {
        self.op.get(key).copied().unwrap_or(0.0)
    }

    fn op_sum(&self, prefix: &str) -> f64 {
        self.op
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    fn tsv(&self) -> String {
        let mut out = String::new();
        for (name, map) in [
            ("api", &self.api),
            ("refused", &self.refused),
            ("flow", &self.flows),
            ("op", &self.op),
        ] {
            for (k, v) in map {
                let _ = writeln!(out, "{name}\t{k}\t{v}");
            }
        }
        out
    }
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "POST" | "PUT" | "PATCH" | "DELETE" | "DELETECOLLECTION" | "APPLY" | "CREATE" | "UPDATE"
    )
}

// ---------------------------------------------------------------------------
// figures
// ---------------------------------------------------------------------------

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn median(v: &[f64]) -> f64 {
    let v = sorted(v.to_vec());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One line of the summary: a value per round (None: not measurable in that round).
struct Row {
    label: String,
    unit: &'static str,
    note: String,
    values: Vec<f64>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn add(
        &mut self,
        label: impl Into<String>,
        value: Option<f64>,
        unit: &'static str,
        note: impl Into<String>,
    ) {
        let label = label.into();
        let note = note.into();
        match self.rows.iter_mut().find(|r| r.label == label) {
            Some(row) => {
                row.values.extend(value);
                if !note.is_empty() {
                    row.note = note;
                }
            }
            None => self.rows.push(Row {
                label,
                unit,
                note,
                values: value.into_iter().collect(),
            }),
        }
    }

    fn set_note(&mut self, label: &str, note: String) {
        if let Some(row) = self.rows.iter_mut().find(|r| r.label == label) {
            row.note = note;
        }
    }

    fn heading(&mut self, text: &str) {
        self.add(text, None, "", "");
    }

    fn print(&self) {
        println!(
            "{:<50} {:>9} {:>9} {:>9} {:<7} {:>2}  note",
            "figure", "median", "min", "max", "unit", "n"
        );
        println!("{}", "-".repeat(118));
        for row in &self.rows {
            if row.unit.is_empty() && row.values.is_empty() {
                println!("{}", row.label);
                continue;
            }
            if row.values.is_empty() {
                println!(
                    "{:<50} {:>29} {:<7} {:>2}  {}",
                    row.label, "n/a", row.unit, 0, row.note
                );
                continue;
            }
            let (lo, hi) = row
                .values
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            println!(
                "{:<50} {:>9} {:>9} {:>9} {:<7} {:>2}  {}",
                row.label,
                num(median(&row.values)),
                num(lo),
                num(hi),
                row.unit,
                row.values.len(),
                row.note
            );
        }
    }
}

fn num(v: f64) -> String {
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

// ---------------------------------------------------------------------------
// the benchmark
// ---------------------------------------------------------------------------

struct Bench {
    cfg: Config,
    client: Client,
    http: reqwest::Client,
    seen: Shared,
    port: u16,
    failures: Vec<String>,
    /// Samples of every round, by the table row whose note shows their pooled percentiles.
    pooled: BTreeMap<String, Vec<f64>>,
}

fn app_name(i: usize) -> String {
    format!("app-{i:03}")
}

fn run_name(round: usize, i: usize) -> String {
    format!("r{round}-{i:03}")
}

fn http_path(round: usize, app: &str) -> String {
    format!("/check/{round}/{app}")
}

impl Bench {
    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }
    fn runs(&self) -> Api<RunbookRun> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }
    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    /// Fails when the operator process is gone.
    fn operator_alive(&self) -> Result<()> {
        let Some(pid) = self.cfg.operator_pid else {
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
    fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.cfg.operator_pid?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // fields after "(comm)": state is field 3, utime 14, stime 15
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / USER_HZ)
    }

    fn probe_namespace(&self) -> String {
        format!("{}-probe", self.cfg.namespace)
    }

    /// Patches the probe ConfigMap and RunbookRun once a second until aborted.
    fn spawn_probe(&self) -> tokio::task::JoinHandle<()> {
        let ns = self.probe_namespace();
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        let runs: Api<RunbookRun> = Api::namespaced(self.client.clone(), &ns);
        let seen = self.seen.clone();
        tokio::spawn(async move {
            for seq in 1u64.. {
                let patch = json!({"metadata": {"annotations": {PROBE_SEQ: seq.to_string()}}});
                let pp = PatchParams::default();
                let sent = now();
                if cms.patch(PROBE, &pp, &Patch::Merge(&patch)).await.is_ok() {
                    lock(&seen).probe_sent.insert((0, seq), sent);
                }
                let sent = now();
                if runs.patch(PROBE, &pp, &Patch::Merge(&patch)).await.is_ok() {
                    lock(&seen).probe_sent.insert((1, seq), sent);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    /// The probe namespace, ConfigMap, RunbookRun (never reconciled) and their watches.
    async fn setup_probes(&self) -> Result<()> {
        let ns = self.probe_namespace();
        let pp = PatchParams::apply(MANAGER).force();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        namespaces
            .patch(
                &ns,
                &pp,
                &Patch::Apply(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                ),
            )
            .await
            .with_context(|| format!("creating namespace {ns}"))?;
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        cms.patch(
            PROBE,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": PROBE}}),
            ),
        )
        .await
        .context("creating the probe ConfigMap")?;
        let runs: Api<RunbookRun> = Api::namespaced(self.client.clone(), &ns);
        runs.patch(
            PROBE,
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "ops.runbook.dev/v1alpha1",
                "kind": "RunbookRun",
                "metadata": {"name": PROBE},
                "spec": {"runbookRef": {"name": "no-such-runbook"}}
            })),
        )
        .await
        .context("creating the probe RunbookRun")?;
        let by_name = || watcher::Config::default().fields(&format!("metadata.name={PROBE}"));
        spawn_watch(cms, by_name(), self.seen.clone(), record_probe_cm);
        spawn_watch(runs, by_name(), self.seen.clone(), record_probe_run);
        Ok(())
    }

    fn rss_mib(&self) -> Option<f64> {
        let pid = self.cfg.operator_pid?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::take(&self.client, &self.http, &self.cfg.operator_url).await
    }

    fn write_out(&self, file: &str, text: &str) {
        if let Some(dir) = &self.cfg.out
            && let Err(err) = std::fs::write(dir.join(file), text)
        {
            progress(format!("cannot write {}: {err}", dir.join(file).display()));
        }
    }

    /// Polls `check` every 250 ms until it returns Ok(None); Ok(Some(text)) is the progress
    /// shown every ~15 s.
    async fn wait_for<F, Fut>(&self, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>>>,
    {
        let deadline = Instant::now() + self.cfg.timeout;
        let mut tick = Ticker::new();
        loop {
            let state = check().await?;
            let Some(state) = state else { return Ok(()) };
            self.operator_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "timed out after {:?} waiting for {what}: {state}",
                    self.cfg.timeout
                );
            }
            if tick.due() {
                progress(format!("  ... waiting for {what}: {state}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn sleep_watching(&self, what: &str, seconds: u64) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(seconds);
        let start = Instant::now();
        let mut tick = Ticker::new();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(500).min(end - Instant::now())).await;
            self.operator_alive()?;
            if tick.due() {
                progress(format!(
                    "  ... {what}: {:.0}/{seconds}s",
                    start.elapsed().as_secs_f64()
                ));
            }
        }
        Ok(())
    }

    /// Waits until the operator's reconcile and write counters stand still for 3 s.
    async fn wait_quiet(&self) -> Result<()> {
        let mut last = f64::NAN;
        let mut still_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut tick = Ticker::new();
        loop {
            let snap = self.snapshot().await?;
            let total = snap.op_sum("");
            if total != last {
                last = total;
                still_since = Instant::now();
            } else if still_since.elapsed() >= Duration::from_secs(3) {
                return Ok(());
            }
            self.operator_alive()?;
            if Instant::now() > deadline {
                progress("  (the operator kept reconciling for 120 s; going on anyway)");
                return Ok(());
            }
            if tick.due() {
                progress("  ... waiting for the operator to be quiet");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn wait_deployments(&self, replicas: i32) -> Result<()> {
        let api = self.deployments();
        let count = self.cfg.count;
        self.wait_for(
            &format!("{count} Deployments at {replicas} replica(s), rolled out"),
            || {
                let api = api.clone();
                async move {
                    let list = api
                        .list(&ListParams::default().labels("bench.runbook.dev/app"))
                        .await?;
                    let done = list
                        .items
                        .iter()
                        .filter(|d| {
                            d.spec.as_ref().and_then(|s| s.replicas) == Some(replicas)
                                && rollout_complete(d)
                        })
                        .count();
                    Ok((done < count).then(|| format!("{done}/{count} ready")))
                }
            },
        )
        .await
    }

    /// Deployments, the Runbook, watches; once.
    async fn setup(&self) -> Result<()> {
        let cfg = &self.cfg;
        progress(format!(
            "creating {} Deployments (1 replica each) in {}",
            cfg.count, cfg.namespace
        ));
        let api = self.deployments();
        let pp = PatchParams::apply(MANAGER).force();
        let results: Vec<Result<()>> = stream::iter(0..cfg.count)
            .map(|i| {
                let api = api.clone();
                let pp = pp.clone();
                async move {
                    let name = app_name(i);
                    let d = json!({
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": {"name": name, "labels": {"bench.runbook.dev/app": name}},
                        "spec": {
                            "replicas": 1,
                            "selector": {"matchLabels": {"bench.runbook.dev/app": name}},
                            "template": {
                                "metadata": {"labels": {"bench.runbook.dev/app": name}},
                                "spec": {"containers": [{
                                    "name": "app",
                                    "image": "registry.invalid/bench-app:1",
                                    "env": [{"name": ENV_NAME, "value": "0"}]
                                }]}
                            }
                        }
                    });
                    api.patch(&name, &pp, &Patch::Apply(&d)).await?;
                    Ok(())
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        self.wait_deployments(1).await?;

        let mut pod_template = json!({"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "task", "image": "registry.invalid/bench-task:1", "command": ["/bin/true"]}]
        }});
        if let Some(run_for) = &cfg.job_run_for {
            pod_template["metadata"] = json!({"annotations": {"sim.runbook.dev/run-for": run_for}});
        }
        let target = json!({"kind": "Deployment", "name": "{{ params.app }}"});
        let url = format!("http://127.0.0.1:{}{}", self.port, http_path_template());
        let runbook = json!({
            "apiVersion": "ops.runbook.dev/v1alpha1",
            "kind": "Runbook",
            "metadata": {"name": RUNBOOK},
            "spec": {
                "description": "bench-runs: scale, setEnv, restart and wait, job, http",
                "params": [
                    {"name": "app", "default": app_name(0)},
                    {"name": "round", "default": "0"}
                ],
                "historyLimits": {"successful": 1000, "failed": 1000},
                "steps": [
                    {"name": STEPS[0], "timeout": "2m", "scale": {"target": target, "by": 1}},
                    {"name": STEPS[1], "timeout": "2m", "setEnv": {"target": target,
                        "set": [{"name": ENV_NAME, "value": "{{ params.round }}"}]}},
                    {"name": STEPS[2], "timeout": "5m", "restart": {"target": target, "wait": true}},
                    {"name": STEPS[3], "timeout": "5m", "job": {"template": {"spec": {
                        "backoffLimit": 0, "template": pod_template}}}},
                    {"name": STEPS[4], "timeout": "30s", "http": {"url": url}}
                ]
            }
        });
        progress(format!("applying Runbook {RUNBOOK} (http step -> {url})"));
        let runbooks: Api<Runbook> = Api::namespaced(self.client.clone(), &cfg.namespace);
        runbooks
            .patch(RUNBOOK, &pp, &Patch::Apply(&runbook))
            .await
            .context("applying the Runbook")?;
        self.wait_for("the Runbook to be Ready", || {
            let runbooks = runbooks.clone();
            async move {
                let rb = runbooks.get(RUNBOOK).await?;
                let phase = rb.status.as_ref().and_then(|s| s.phase.clone());
                Ok((phase.as_deref() != Some("Ready"))
                    .then(|| format!("phase {}", phase.as_deref().unwrap_or("none"))))
            }
        })
        .await?;

        spawn_watch(
            self.runs(),
            watcher::Config::default(),
            self.seen.clone(),
            record_run,
        );
        spawn_watch(
            self.jobs(),
            watcher::Config::default().labels("ops.runbook.dev/run"),
            self.seen.clone(),
            record_job,
        );
        self.setup_probes().await?;
        spawn_watch(
            self.deployments(),
            watcher::Config::default().labels("bench.runbook.dev/app"),
            self.seen.clone(),
            record_deployment,
        );
        Ok(())
    }

    /// Deletes the previous round's runs and Jobs, scales every Deployment back to 1.
    async fn reset(&self) -> Result<()> {
        let runs = self.runs();
        let jobs = self.jobs();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        if !runs
            .list_metadata(&ListParams::default())
            .await?
            .items
            .is_empty()
        {
            progress("  deleting the previous round's runs and Jobs");
            runs.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await?;
            jobs.delete_collection(
                &DeleteParams::background(),
                &ListParams::default().labels("ops.runbook.dev/run"),
            )
            .await?;
            self.wait_for("old runs, Jobs and Job pods to be gone", || {
                let (runs, jobs, pods) = (runs.clone(), jobs.clone(), pods.clone());
                async move {
                    let r = runs
                        .list_metadata(&ListParams::default())
                        .await?
                        .items
                        .len();
                    let j = jobs
                        .list_metadata(&ListParams::default().labels("ops.runbook.dev/run"))
                        .await?
                        .items
                        .len();
                    let p = pods
                        .list_metadata(
                            &ListParams::default().labels("batch.kubernetes.io/job-name"),
                        )
                        .await?
                        .items
                        .len();
                    Ok((r + j + p > 0).then(|| format!("{r} runs, {j} Jobs, {p} pods left")))
                }
            })
            .await?;
        }
        let api = self.deployments();
        let list = api
            .list(&ListParams::default().labels("bench.runbook.dev/app"))
            .await?;
        let to_scale: Vec<String> = list
            .items
            .iter()
            .filter(|d| d.spec.as_ref().and_then(|s| s.replicas) != Some(1))
            .map(|d| d.name_any())
            .collect();
        if !to_scale.is_empty() {
            progress(format!(
                "  scaling {} Deployments back to 1 replica",
                to_scale.len()
            ));
            let results: Vec<Result<()>> = stream::iter(to_scale)
                .map(|name| {
                    let api = api.clone();
                    async move {
                        api.patch_scale(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"spec": {"replicas": 1}})),
                        )
                        .await?;
                        Ok(())
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        self.wait_deployments(1).await?;
        self.wait_quiet().await
    }

    async fn round(&mut self, round: usize, table: &mut Table) -> Result<()> {
        let count = self.cfg.count;
        progress(format!("round {round}/{}: reset", self.cfg.rounds));
        self.reset().await?;
        {
            let mut seen = lock(&self.seen);
            seen.deployments.clear();
            seen.jobs.clear();
            seen.runs.clear();
            seen.probe_sent.clear();
            seen.probe_seen.clear();
        }
        let before = self.snapshot().await?;
        let cpu_before = self.cpu_seconds();
        let probe = self.spawn_probe();
        progress(format!(
            "round {round}/{}: creating {count} RunbookRuns at once",
            self.cfg.rounds
        ));
        let t_start = now();
        let runs = self.runs();
        let ns = self.cfg.namespace.clone();
        let created: Vec<Result<(usize, f64)>> = stream::iter(0..count)
            .map(|i| {
                let runs = runs.clone();
                let ns = ns.clone();
                async move {
                    let run: RunbookRun = serde_json::from_value(json!({
                        "apiVersion": "ops.runbook.dev/v1alpha1",
                        "kind": "RunbookRun",
                        "metadata": {"name": run_name(round, i), "namespace": ns},
                        "spec": {
                            "runbookRef": {"name": RUNBOOK},
                            "params": {"app": app_name(i), "round": round.to_string()}
                        }
                    }))?;
                    runs.create(&PostParams::default(), &run)
                        .await
                        .with_context(|| format!("creating RunbookRun {}", run_name(round, i)))?;
                    Ok((i, now()))
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut created_at = vec![f64::NAN; count];
        for c in created {
            let (i, t) = c?;
            created_at[i] = t;
        }
        let t_created = now();
        progress(format!(
            "  {count} runs created in {:.2}s; waiting for them to finish",
            t_created - t_start
        ));

        // wait for every run to finish
        let deadline = Instant::now() + self.cfg.timeout;
        let mut tick = Ticker::new();
        loop {
            let (finished, state) = {
                let seen = lock(&self.seen);
                let mut finished = 0;
                let mut at: BTreeMap<String, usize> = BTreeMap::new();
                for i in 0..count {
                    match seen.runs.get(&run_name(round, i)) {
                        Some(r) if r.finished.is_some() => {
                            finished += 1;
                            *at.entry(run_phase(&r.last).unwrap_or("?").to_owned())
                                .or_default() += 1;
                        }
                        Some(r) => {
                            let step = r
                                .last
                                .status
                                .as_ref()
                                .and_then(|s| s.current_step.clone())
                                .unwrap_or_else(|| "(not started)".into());
                            *at.entry(step).or_default() += 1;
                        }
                        None => *at.entry("(not seen)".into()).or_default() += 1,
                    }
                }
                let state = at
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                (finished, state)
            };
            if finished == count {
                break;
            }
            self.operator_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "round {round}: only {finished}/{count} runs finished after {:?} ({state})",
                    self.cfg.timeout
                );
            }
            if tick.due() {
                progress(format!("  ... {finished}/{count} finished; {state}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        probe.abort();
        // trailing writes (finalizer removal, the Runbook's lastRun, Events) belong to the round
        self.wait_quiet().await?;
        let after = self.snapshot().await?;
        let cpu = self
            .cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        let rss = self.rss_mib();
        let delta = after.since(&before);
        self.write_out(&format!("api-delta-round-{round}.tsv"), &delta.tsv());

        // per-run figures
        let seen = lock(&self.seen);
        let mut overhead: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
        let mut step_time: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
        let mut queue = Vec::new();
        let mut duration = Vec::new();
        let mut unmeasured = 0usize;
        let mut failed = Vec::new();
        let mut last_finish = t_start;
        let mut raw = String::from(
            "# seconds on the bench's clock; start = step seen past Pending, met = condition met, op = the step's outputs.attemptStartedAt (operator's wall clock: the start of the reconcile that started it)\nrun\tphase\tcreated\tstart:scale\tstart:set-env\tstart:restart\tstart:job\tstart:http\tfinished\tmet:scale\tmet:set-env\tmet:restart\tmet:job\tmet:http\top:scale\top:set-env\top:restart\top:job\top:http\n",
        );
        for (i, created) in created_at.iter().enumerate() {
            let name = run_name(round, i);
            let Some(run) = seen.runs.get(&name) else {
                failed.push(format!("{name}: never seen"));
                continue;
            };
            let phase = run_phase(&run.last).unwrap_or("?").to_owned();
            let finished = run.finished.unwrap_or(f64::NAN);
            last_finish = last_finish.max(finished);
            let met = conditions_met(&seen, run, round, &app_name(i));
            let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.6}"));
            let _ = writeln!(
                raw,
                "{name}\t{phase}\t{created:.6}\t{}\t{finished:.6}\t{}\t{}",
                run.started
                    .iter()
                    .map(|v| fmt(*v))
                    .collect::<Vec<_>>()
                    .join("\t"),
                met.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join("\t"),
                (0..STEPS.len())
                    .map(|k| fmt(run
                        .last
                        .status
                        .as_ref()
                        .and_then(|s| s.steps.get(k))
                        .and_then(|s| s.outputs.get("attemptStartedAt"))
                        .and_then(|t| wall_to_secs(t))))
                    .collect::<Vec<_>>()
                    .join("\t"),
            );
            if phase != "Succeeded" {
                failed.push(failure_text(&name, &run.last));
                continue;
            }
            if let Some(first) = run.started[0] {
                queue.push(first - created);
            }
            duration.push(finished - created);
            for k in 0..STEPS.len() {
                let next = if k + 1 < STEPS.len() {
                    run.started[k + 1]
                } else {
                    run.finished
                };
                match (met[k], next) {
                    (Some(m), Some(n)) => overhead[k].push(n - m),
                    _ => unmeasured += 1,
                }
                if let (Some(s), Some(n)) = (run.started[k], next) {
                    step_time[k].push(n - s);
                }
            }
        }
        let watch_errors = seen.watch_errors;
        let failed_yaml: Vec<(String, String)> = seen
            .runs
            .iter()
            .filter(|(_, r)| run_phase(&r.last) != Some("Succeeded"))
            .take(3)
            .map(|(n, r)| {
                (
                    n.clone(),
                    serde_yaml::to_string(&r.last).unwrap_or_default(),
                )
            })
            .collect();
        drop(seen);
        self.write_out(&format!("runs-round-{round}.tsv"), &raw);
        for (name, yaml) in failed_yaml {
            self.write_out(&format!("failed-run-{name}.yaml"), &yaml);
        }

        let ok = count - failed.len();
        let wall = last_finish - t_start;
        let steps_total = (count * STEPS.len()) as f64;
        let ms = |v: Option<f64>| v.map(|v| v * 1000.0);

        table.heading(&format!(
            "-- {count} concurrent runs (figures per round; median/min/max over rounds)"
        ));
        table.add(
            "runs succeeded",
            Some(ok as f64),
            "runs",
            if failed.is_empty() {
                format!("of {count}")
            } else {
                format!("of {count}; FAILED: {}", failed.len())
            },
        );
        table.add(
            "wall time: first create -> last run finished",
            Some(wall),
            "s",
            format!(
                "creating all {count} took {:.2} s of it",
                t_created - t_start
            ),
        );
        table.add(
            "runs per second",
            (wall > 0.0).then(|| count as f64 / wall),
            "runs/s",
            "COUNT / wall time",
        );
        let queue = sorted(queue);
        let duration = sorted(duration);
        table.add(
            "run created -> first step starts, p50",
            ms(percentile(&queue, 0.5)),
            "ms",
            "queueing behind the other runs",
        );
        table.add(
            "run created -> first step starts, p99",
            ms(percentile(&queue, 0.99)),
            "ms",
            "",
        );
        table.add(
            "run duration (created -> finished), p50",
            percentile(&duration, 0.5),
            "s",
            "",
        );
        table.add(
            "run duration (created -> finished), p99",
            percentile(&duration, 0.99),
            "s",
            "",
        );

        table.heading("-- operator overhead: condition met -> next step starts (ms)");
        let mut all = Vec::new();
        for k in 0..STEPS.len() {
            let next = STEPS.get(k + 1).copied().unwrap_or("run finished");
            let v = sorted(std::mem::take(&mut overhead[k]));
            all.extend(v.iter().copied());
            table.add(
                format!("{} -> {next}, p50", STEPS[k]),
                ms(percentile(&v, 0.5)),
                "ms",
                format!("met: {}", CONDITIONS[k]),
            );
            table.add(
                format!("{} -> {next}, p99", STEPS[k]),
                ms(percentile(&v, 0.99)),
                "ms",
                "",
            );
            self.pooled
                .entry(format!("{} -> {next}, p99", STEPS[k]))
                .or_default()
                .extend(v);
        }
        let all = sorted(all);
        self.pooled
            .entry("all five transitions, p99".into())
            .or_default()
            .extend(all.iter().copied());
        table.add(
            "all five transitions, p50",
            ms(percentile(&all, 0.5)),
            "ms",
            if unmeasured > 0 {
                format!(
                    "{} samples; {unmeasured} not measurable (raw data)",
                    all.len()
                )
            } else {
                format!("{} samples", all.len())
            },
        );
        table.add(
            "all five transitions, p99",
            ms(percentile(&all, 0.99)),
            "ms",
            "",
        );
        table.heading("-- step duration: step starts -> next step starts (context)");
        for k in 0..STEPS.len() {
            let v = sorted(std::mem::take(&mut step_time[k]));
            let label = format!("{} step, p50", STEPS[k]);
            table.add(label.clone(), ms(percentile(&v, 0.5)), "ms", "");
            self.pooled.entry(label).or_default().extend(v);
        }

        table.heading("-- API requests per step (round delta / (COUNT x 5))");
        let per_step = |v: f64| Some(v / steps_total);
        if delta.flows.is_empty() && before.flows.is_empty() {
            table.add(
                "operator requests / step",
                None,
                "req",
                "FlowSchemas runbook-bench-op-* missing",
            );
        } else {
            let reads = delta.flow("get") + delta.flow("list") + delta.flow("watch");
            let writes = delta.flow("crd-write") + delta.flow("write") + delta.flow("events");
            table.add(
                "operator requests / step, all",
                per_step(reads + writes + delta.flow("other")),
                "req",
                "exact: APF FlowSchemas runbook-bench-op-*",
            );
            table.add(
                "  reads (get / list / watch)",
                per_step(reads),
                "req",
                format!(
                    "get {:.2}, list {:.2}, watch {:.2} per step",
                    delta.flow("get") / steps_total,
                    delta.flow("list") / steps_total,
                    delta.flow("watch") / steps_total
                ),
            );
            table.add("  writes, all", per_step(writes), "req", "");
            table.add(
                "  writes to ops.runbook.dev (journal, metadata)",
                per_step(delta.flow("crd-write")),
                "req",
                "",
            );
            table.add(
                "  writes to workloads and Jobs (the steps' effects)",
                per_step(delta.flow("write")),
                "req",
                "",
            );
            table.add("  Events", per_step(delta.flow("events")), "req", "");
        }
        table.add(
            "operator api_writes metric / step",
            per_step(delta.op_sum("write ")),
            "req",
            format!(
                "runbookrun status {:.2}, metadata {:.2}, events {:.2}; runbook {:.2}",
                delta.op_sum("write runbookrun/status") / steps_total,
                delta.op_sum("write runbookrun/metadata") / steps_total,
                delta.op_sum("write runbookrun/event") / steps_total,
                delta.op_sum("write runbook/") / steps_total,
            ),
        );
        table.add(
            "reconciles / step",
            per_step(delta.op_sum("reconcile ")),
            "count",
            format!(
                "runbookrun {:.2}, runbook {:.2}",
                delta.op_exact("reconcile runbookrun") / steps_total,
                delta.op_exact("reconcile runbook") / steps_total,
            ),
        );
        // the bench's own probe patches are left out
        let (probe_lags, probe_writes) = {
            let seen = lock(&self.seen);
            let lags: Vec<(usize, f64)> = seen
                .probe_sent
                .iter()
                .filter_map(|(key, sent)| seen.probe_seen.get(key).map(|t| (key.0, t - sent)))
                .collect();
            let writes: Vec<usize> = (0..PROBE_KINDS.len())
                .map(|k| seen.probe_sent.keys().filter(|key| key.0 == k).count())
                .collect();
            (lags, writes)
        };
        let all_writes =
            delta.api_sum(|verb, _| is_write(verb)) - probe_writes.iter().sum::<usize>() as f64;
        let all_reads = delta.api_sum(|verb, _| matches!(verb, "GET" | "LIST"));
        let crd_writes = delta
            .api_sum(|verb, what| is_write(verb) && what.starts_with("ops.runbook.dev/"))
            - probe_writes[1] as f64;
        table.add(
            "all clients: writes / step",
            per_step(all_writes),
            "req",
            "apiserver_request_total; + controller-manager, scheduler, kwok, bench",
        );
        table.add(
            "all clients: GET+LIST / step",
            per_step(all_reads),
            "req",
            "(WATCHes are counted when they end)",
        );
        table.add(
            "all clients: writes to ops.runbook.dev / step",
            per_step(crd_writes),
            "req",
            format!("includes the bench's {count} creates"),
        );
        let conflicts: f64 = delta
            .refused
            .iter()
            .filter(|(k, _)| k.starts_with("409 ") && k.contains(" ops.runbook.dev/"))
            .map(|(_, v)| v)
            .sum();
        table.add(
            "  of which refused with 409 Conflict",
            per_step(conflicts),
            "req",
            format!(
                "{conflicts} in the round: journal writes from a stale copy, refused as designed"
            ),
        );
        table.add(
            "API server latency, journal writes, mean",
            ms(delta.mean_latency(|verb, what| {
                verb == "APPLY" && what == "ops.runbook.dev/runbookruns/status"
            })),
            "ms",
            "server side, apiserver_request_duration_seconds",
        );
        table.add(
            "API server latency, all requests but WATCH, mean",
            ms(delta.mean_latency(|verb, _| !matches!(verb, "WATCH" | "WATCHLIST" | "CONNECT"))),
            "ms",
            "all clients",
        );
        table.add("operator VmRSS at the end of the round", rss, "MiB", "");
        table.add(
            "operator CPU time / step",
            cpu.map(|c| c * 1000.0 / steps_total),
            "ms",
            "user + system, /proc/PID/stat",
        );
        table.add(
            "operator CPU utilisation during the round",
            cpu.map(|c| c / (now() - t_start)),
            "cores",
            format!("of {} cores, shared with the cluster", cores()),
        );
        table.heading(
            "-- calibration: the bench's own watches (a probe object patched every second)",
        );
        for (kind, name) in PROBE_KINDS.iter().enumerate() {
            let lags = sorted(
                probe_lags
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, l)| *l)
                    .collect(),
            );
            table.add(
                format!("{name} patch sent -> watch event seen, p50"),
                ms(percentile(&lags, 0.5)),
                "ms",
                format!("{} probes; how late this process sees a change", lags.len()),
            );
            table.add(
                format!("{name} patch sent -> watch event seen, p99"),
                ms(percentile(&lags, 0.99)),
                "ms",
                "",
            );
        }

        progress(format!(
            "round {round}: {ok}/{count} succeeded; wall {wall:.1}s ({:.2} runs/s); overhead p50 {} ms, p99 {} ms; operator {} req/step; RSS {} MiB{}",
            count as f64 / wall,
            percentile(&all, 0.5).map_or("-".into(), |v| format!("{:.1}", v * 1000.0)),
            percentile(&all, 0.99).map_or("-".into(), |v| format!("{:.1}", v * 1000.0)),
            if delta.flows.is_empty() {
                "?".into()
            } else {
                format!("{:.2}", delta.flows.values().sum::<f64>() / steps_total)
            },
            rss.map_or("?".into(), |r| format!("{r:.1}")),
            if watch_errors > 0 {
                format!("; {watch_errors} watch errors so far")
            } else {
                String::new()
            },
        ));
        for f in failed.iter().take(5) {
            progress(format!("  FAILED {f}"));
        }
        self.failures
            .extend(failed.into_iter().map(|f| format!("round {round}: {f}")));
        Ok(())
    }

    /// Settled Runbook, no schedule: writes over a window.
    async fn settled(&self, table: &mut Table) -> Result<()> {
        let cfg = &self.cfg;
        progress(format!(
            "settled window: {}s idle, then {}s counting writes (Runbook without schedule, {} finished runs)",
            cfg.settle, cfg.window, cfg.count
        ));
        self.sleep_watching("settling", cfg.settle).await?;
        let rss_idle = self.rss_mib();
        let before = self.snapshot().await?;
        self.sleep_watching("write window", cfg.window).await?;
        let after = self.snapshot().await?;
        let d = after.since(&before);
        self.write_out("api-delta-window.tsv", &d.tsv());
        let crd_writes =
            d.api_sum(|verb, what| is_write(verb) && what.starts_with("ops.runbook.dev/"));
        let op_writes = d.flow("crd-write") + d.flow("write") + d.flow("events");
        let op_reads = d.flow("get") + d.flow("list") + d.flow("watch");
        table.heading(&format!(
            "-- settled Runbook without schedule, {} s window after {} s idle",
            cfg.window, cfg.settle
        ));
        table.add(
            "writes to ops.runbook.dev (apiserver)",
            Some(crd_writes),
            "writes",
            "all clients; target 0",
        );
        table.add(
            "operator writes, any resource (FlowSchemas)",
            (!(before.flows.is_empty() && after.flows.is_empty())).then_some(op_writes),
            "writes",
            "incl. Events; target 0",
        );
        table.add(
            "operator api_writes metric",
            Some(d.op_sum("write ")),
            "writes",
            "target 0",
        );
        table.add(
            "operator reads (get/list/watch)",
            (!(before.flows.is_empty() && after.flows.is_empty())).then_some(op_reads),
            "req",
            "watch re-establishment shows up here",
        );
        table.add("reconciles", Some(d.op_sum("reconcile ")), "count", "");
        table.add("operator VmRSS, idle", rss_idle, "MiB", "");
        progress(format!(
            "  window: {} writes to ops.runbook.dev, operator writes {}, reads {}",
            num(crd_writes),
            num(op_writes),
            num(op_reads)
        ));
        if crd_writes > 0.0 || op_writes > 0.0 {
            for (k, v) in d
                .api
                .iter()
                .filter(|(k, _)| is_write(k.split(' ').next().unwrap_or("")))
            {
                progress(format!("    {k}: {v}"));
            }
        }
        Ok(())
    }
}

/// The template of the http step's path (params substituted by the operator).
fn http_path_template() -> String {
    "/check/{{ params.round }}/{{ params.app }}".into()
}

/// When each step's condition was met, as seen by this process.
fn conditions_met(seen: &Seen, run: &RunSeen, round: usize, app: &str) -> [Option<f64>; 5] {
    let history = seen.deployments.get(app).map(Vec::as_slice).unwrap_or(&[]);
    let outputs = |k: usize| {
        run.last
            .status
            .as_ref()
            .and_then(|s| s.steps.get(k))
            .map(|s| &s.outputs)
    };
    let replicas: Option<i32> = outputs(0)
        .and_then(|o| o.get("replicas"))
        .and_then(|r| r.parse().ok());
    let scaled = replicas.and_then(|want| history.iter().find(|d| d.replicas == want).map(|d| d.t));
    let round_value = round.to_string();
    let env_set = history
        .iter()
        .find(|d| d.env.as_deref() == Some(round_value.as_str()))
        .map(|d| d.t);
    let restarted_at = outputs(2).and_then(|o| o.get("restartedAt"));
    let restarted = restarted_at.and_then(|at| {
        history
            .iter()
            .find(|d| d.complete && d.restarted_at.as_ref() == Some(at))
            .map(|d| d.t)
    });
    let job = outputs(3)
        .and_then(|o| o.get("jobName"))
        .and_then(|j| seen.jobs.get(j))
        .and_then(|j| j.complete);
    let answered = seen.http.get(&http_path(round, app)).copied();
    [scaled, env_set, restarted, job, answered]
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn failure_text(name: &str, run: &RunbookRun) -> String {
    let Some(status) = &run.status else {
        return format!("{name}: no status");
    };
    let step = status
        .steps
        .iter()
        .find(|s| s.phase == StepPhase::Failed)
        .or_else(|| status.steps.iter().find(|s| s.phase == StepPhase::Running));
    format!(
        "{name}: phase {}; step {}: {}",
        status.phase.as_deref().unwrap_or("?"),
        step.map_or("-", |s| s.name.as_str()),
        step.and_then(|s| s.message.as_deref()).unwrap_or("-"),
    )
}

#[tokio::main]
async fn main() {
    let Some(operator_url) = env_text("BENCH_OPERATOR_URL") else {
        println!(
            "benches/runs.rs needs a cluster and a running operator: run hack/bench-runs.sh (or make bench)"
        );
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

/// Ok(false): the figures are printed, but runs failed.
async fn bench(operator_url: String) -> Result<bool> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Config::from_env(operator_url)?;
    if let Some(dir) = &cfg.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let client = Client::try_default()
        .await
        .map_err(|e| anyhow!("no Kubernetes client: {e}"))?;
    let http = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let seen: Shared = Arc::default();
    let port = start_http_server(seen.clone()).await?;
    progress(format!(
        "{} concurrent runs x {} rounds of a five-step Runbook in namespace {}; HTTP target on 127.0.0.1:{port}",
        cfg.count, cfg.rounds, cfg.namespace
    ));
    let mut bench = Bench {
        cfg,
        client,
        http,
        seen,
        port,
        failures: Vec::new(),
        pooled: BTreeMap::new(),
    };
    bench.operator_alive()?;
    bench.setup().await?;
    let mut table = Table::default();
    let mut round_secs = Vec::new();
    for round in 1..=bench.cfg.rounds {
        let t = Instant::now();
        bench.round(round, &mut table).await?;
        round_secs.push(t.elapsed().as_secs_f64());
        progress(format!(
            "round {round} took {:.0}s including the reset",
            t.elapsed().as_secs_f64()
        ));
    }
    for (label, samples) in &bench.pooled {
        let v = sorted(samples.clone());
        let at = |q| percentile(&v, q).map_or("-".into(), |x| format!("{:.1}", x * 1000.0));
        table.set_note(
            label,
            format!(
                "all rounds pooled ({} samples): p50 {}, p99 {}, max {} ms",
                v.len(),
                at(0.5),
                at(0.99),
                at(1.0)
            ),
        );
    }
    bench.settled(&mut table).await?;

    println!();
    table.print();
    println!();
    println!("Definitions (all times on this process's clock, from watch events as they arrive):");
    println!("  step starts: first RunbookRun event with the step's journal entry past Pending.");
    println!(
        "  condition met: scale/setEnv: the Deployment event showing the change; restart: rollout"
    );
    println!(
        "    of the restarted template complete (kubectl rollout status rules); job: Job Complete=True;"
    );
    println!(
        "    http: this process's server answered. Overhead = next step starts (or run finished) - met."
    );
    println!("  operator requests: the operator impersonates runbook-bench-operator; FlowSchemas");
    println!(
        "    runbook-bench-op-{{get,list,watch,crd-write,write,events,other}} (priority level exempt)"
    );
    println!("    count its requests in apiserver_flowcontrol_dispatched_requests_total.");
    println!(
        "  rounds took {} s each, reset included.",
        round_secs
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !bench.failures.is_empty() {
        println!();
        println!("{} run(s) did not succeed:", bench.failures.len());
        for f in bench.failures.iter().take(20) {
            println!("  {f}");
        }
        return Ok(false);
    }
    Ok(true)
}

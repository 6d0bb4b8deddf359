//! Benchmark of deciding runbooks: BENCH_ROUNDS (3) rounds of BENCH_COUNT (50) concurrent
//! RunbookRuns of one Runbook that uses typed params, outputs between steps, `when` and a
//! query step, each run on its own Deployment (2 replicas):
//!
//! 1. `scale-down`: `scale.replicas: "{{ params.replicas }}"` (a typed integer param, 0);
//! 2. `check`: a query step, `max(bench_queue_depth)` against a real Prometheus scraping an
//!    exporter this binary serves, `successCondition: result < 1000`, count 3, interval 1s;
//! 3. `scale-up`: `when: int(steps['scale-down'].outputs.previousReplicas) > params.replicas`
//!    (true), `scale.replicas: "{{ steps.scale-down.outputs.previousReplicas }}"`;
//! 4. `page`: `when: params.replicas > 5` (false: Skipped, reason ConditionFalse).
//!
//! Before the rounds, one run of a Runbook with only a query step probes the operator: when it
//! fails with reason NotImplemented, `check` is left out of the Runbook (and its figures), with
//! a note in the output.
//!
//! The peer, on the same cluster, Prometheus and exporter: Argo Rollouts' AnalysisRun
//! controller (`rollouts-controller --controllers analysis`, BENCH_PEER_BIN, started by this
//! binary) runs BENCH_COUNT concurrent AnalysisRuns per round of the same PromQL, count 3,
//! interval 1s, `successCondition: result[0] < 1000`. It runs first, while the operator (which
//! does not watch AnalysisRuns) is idle, and is stopped before the operator's rounds.
//!
//! Run it through `hack/bench-decisions.sh`. Without `BENCH_OPERATOR_URL` this binary only
//! prints how to run it and exits 0.
//!
//! # Definitions
//!
//! All times are taken by this process on one monotonic clock: when it sent a create, or when
//! a watch event reached it. The operator's own (second-granular) timestamps are not used.
//!
//! * **run latency**: create sent -> first event with the run Succeeded.
//! * **gate decision**: first event showing the step before the gated one Succeeded -> first
//!   event showing the gated step past Pending (`scale-up`, true: Running or later) or Skipped
//!   (`page`, false).
//! * **query step overhead**: `check` first seen Succeeded - `check` first seen past Pending -
//!   (count-1) x interval (2 s, the least a query step of count 3 at 1 s can take).
//! * **operator RSS**: VmRSS after each round, once the operator is quiet; **slope per run** =
//!   (RSS after the round - RSS before it) / BENCH_COUNT.
//! * **API requests per reconcile**: the operator's requests over a round (it impersonates
//!   `runbook-bench-operator`; FlowSchemas `runbook-bench-op-*` count them, the steps'
//!   requests as the namespace's ServiceAccounts included) / its reconciles
//!   (`runbook_operator_reconciles_total`) over the round.
//! * **settled window**: BENCH_SETTLE s idle after the last round, then BENCH_WINDOW s in which
//!   the operator's writes are counted: must be 0 (checked; the bench fails otherwise).
//! * **peer latency**: AnalysisRun create sent -> first event with `status.phase: Successful`;
//!   peer RSS: VmRSS of the controller after each round.
//!
//! Every figure is computed per round; the table shows each round and the median over them.
//!
//! Environment (hack/bench-decisions.sh sets them):
//! * BENCH_OPERATOR_URL (required), BENCH_OPERATOR_PID, BENCH_TIMEOUT, BENCH_OUT
//! * BENCH_NAMESPACE (bench-decisions), BENCH_COUNT (50), BENCH_ROUNDS (3)
//! * BENCH_SETTLE (10), BENCH_WINDOW (30): the settled window, seconds
//! * BENCH_PROMETHEUS: the Prometheus binary (hack/tools.sh builds it)
//! * BENCH_PEER_BIN: the rollouts-controller binary (empty: no peer; BENCH_PEER_NOTE says why)

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use runbook_operator::runbook::{Runbook, RunbookPhase};
use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use serde_json::{Value, json};
use support::{
    Counters, Rig, Settings, Ticker, counts, env_positive, env_text, for_all, lock, now, num,
    percentile, proc_mib, progress, sorted, spawn_watch, watch_errors,
};

const PROGRESS_TAG: &str = "bench-decisions";
/// Field manager of what this bench applies.
const MANAGER: &str = "bench-decisions";
/// Prefix of the FlowSchemas that count the operator's requests (hack/bench-lib.sh).
const FLOW_PREFIX: &str = "runbook-bench-op-";
/// The Runbook under test, and the one that probes whether query steps are built.
const RUNBOOK: &str = "bench-decide";
const PROBE_RUNBOOK: &str = "bench-decide-query-probe";
/// A Runbook of only the query step (count 3), the like of the peer's AnalysisRun.
const QUERY_RUNBOOK: &str = "bench-decide-query-only";
const APP_LABEL: &str = "bench.runbook.dev/app";
/// Replicas of every Deployment before a run (scale-down records it as previousReplicas).
const REPLICAS: i64 = 2;
/// The query: count, interval (seconds), expression and conditions (ours, Argo's).
const QUERY_COUNT: u32 = 3;
const QUERY_INTERVAL: u32 = 1;
const PROMQL: &str = "max(bench_queue_depth)";
const SUCCESS: &str = "result < 1000";
const PEER_SUCCESS: &str = "result[0] < 1000";

#[tokio::main]
async fn main() {
    support::main(
        "benches/decisions.rs needs a cluster, a running operator and Prometheus: run hack/bench-decisions.sh (or make bench-decisions)",
        bench,
    )
    .await;
}

// ---------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------

struct Config {
    namespace: String,
    count: usize,
    rounds: usize,
    settle: u64,
    window: u64,
    prometheus: PathBuf,
    peer_bin: Option<PathBuf>,
    peer_note: Option<String>,
    peer_version: String,
}

impl Config {
    fn from_env() -> Result<Self> {
        Ok(Self {
            namespace: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-decisions".into()),
            count: env_positive("BENCH_COUNT", 50)? as usize,
            rounds: env_positive("BENCH_ROUNDS", 3)? as usize,
            settle: env_positive("BENCH_SETTLE", 10)?,
            window: env_positive("BENCH_WINDOW", 30)?,
            prometheus: env_text("BENCH_PROMETHEUS")
                .map(PathBuf::from)
                .context("BENCH_PROMETHEUS must name the Prometheus binary (hack/tools.sh env)")?,
            peer_bin: env_text("BENCH_PEER_BIN").map(PathBuf::from),
            peer_note: env_text("BENCH_PEER_NOTE"),
            peer_version: env_text("BENCH_PEER_VERSION").unwrap_or_else(|| "?".into()),
        })
    }
}

// ---------------------------------------------------------------------------
// child processes: Prometheus and the peer
// ---------------------------------------------------------------------------

/// A free port on 127.0.0.1 (bound and released; the child binds it right after).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process, killed when dropped.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, bin: &Path, args: &[String], dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name} ({})", bin.display()))?;
        Ok(Self { child, name, log })
    }

    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// Waits until GET `url` answers 2xx.
    async fn wait_ok(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut tick = Ticker::new();
        loop {
            self.alive()?;
            if http
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer {url} within {timeout:?}; log:\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
            if tick.due() {
                progress(format!("  ... waiting for {} ({url})", self.name));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn rss_mib(&self) -> Option<f64> {
        proc_mib(self.child.id(), "VmRSS")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The exporter: `/metrics` answers one gauge, `bench_queue_depth 42`.
async fn start_exporter() -> Result<u16> {
    async fn metrics() -> &'static str {
        "# HELP bench_queue_depth Made-up queue depth.\n# TYPE bench_queue_depth gauge\nbench_queue_depth 42\n"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().route("/metrics", axum::routing::get(metrics));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            progress(format!("exporter stopped: {err}"));
        }
    });
    Ok(port)
}

/// `text` percent-encoded for a URL query (all but unreserved characters).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts Prometheus scraping the exporter every second and waits until the query answers.
async fn start_prometheus(
    rig: &Rig,
    bin: &Path,
    exporter: u16,
    dir: &Path,
) -> Result<(Proc, String)> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "bench-exporter",
            "static_configs": [{"targets": [format!("127.0.0.1:{exporter}")]}]}],
    });
    // JSON is YAML: Prometheus reads it as its config file.
    std::fs::write(dir.join("prometheus.yml"), config.to_string())?;
    let args = [
        "--config.file=prometheus.yml".to_owned(),
        "--storage.tsdb.path=data".to_owned(),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let mut proc = Proc::spawn("prometheus", bin, &args, dir)?;
    let base = format!("http://127.0.0.1:{port}");
    proc.wait_ok(&rig.http, &format!("{base}/-/ready"), rig.timeout)
        .await?;
    let deadline = Instant::now() + rig.timeout;
    loop {
        let answer: Option<Value> = async {
            rig.http
                .get(format!("{base}/api/v1/query?query={}", url_encode(PROMQL)))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
        }
        .await;
        let has = answer
            .as_ref()
            .and_then(|a| a.pointer("/data/result/0/value/1"))
            .is_some();
        if has {
            return Ok((proc, base));
        }
        proc.alive()?;
        if Instant::now() > deadline {
            bail!("Prometheus never answered {PROMQL} with a sample (last answer {answer:?})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------
// what the watches saw
// ---------------------------------------------------------------------------

/// The step names of the Runbook, in order (without `check` when query steps are not built).
fn steps(with_query: bool) -> Vec<&'static str> {
    if with_query {
        vec!["scale-down", "check", "scale-up", "page"]
    } else {
        vec!["scale-down", "scale-up", "page"]
    }
}

#[derive(Default)]
struct RunSeen {
    /// Per step: first seen past Pending, first seen Succeeded, first seen Skipped.
    started: HashMap<String, f64>,
    succeeded: HashMap<String, f64>,
    skipped: HashMap<String, f64>,
    /// First seen Succeeded / finished (any final phase).
    run_succeeded: Option<f64>,
    finished: Option<f64>,
    last: Option<RunbookRun>,
}

#[derive(Default)]
struct Seen {
    runs: HashMap<String, RunSeen>,
    /// AnalysisRuns: first seen Successful, first seen in a final phase, last phase seen.
    analysis: HashMap<String, (Option<f64>, Option<f64>, String)>,
}

type Shared = Arc<Mutex<Seen>>;

fn record_run(seen: &mut Seen, t: f64, run: RunbookRun) {
    let entry = seen.runs.entry(run.name_any()).or_default();
    if let Some(status) = &run.status {
        for step in &status.steps {
            if step.phase != StepPhase::Pending {
                entry.started.entry(step.name.clone()).or_insert(t);
            }
            if step.phase == StepPhase::Succeeded {
                entry.succeeded.entry(step.name.clone()).or_insert(t);
            }
            if step.phase == StepPhase::Skipped {
                entry.skipped.entry(step.name.clone()).or_insert(t);
            }
        }
        let phase = status.phase.map(|p| p.as_str());
        if phase == Some("Succeeded") && entry.run_succeeded.is_none() {
            entry.run_succeeded = Some(t);
        }
        if matches!(phase, Some("Succeeded" | "Failed" | "Cancelled")) && entry.finished.is_none() {
            entry.finished = Some(t);
        }
    }
    entry.last = Some(run);
}

fn record_analysis(seen: &mut Seen, t: f64, ar: DynamicObject) {
    let phase = ar
        .data
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let entry = seen.analysis.entry(ar.name_any()).or_default();
    if phase == "Successful" && entry.0.is_none() {
        entry.0 = Some(t);
    }
    if matches!(
        phase.as_str(),
        "Successful" | "Failed" | "Error" | "Inconclusive"
    ) && entry.1.is_none()
    {
        entry.1 = Some(t);
    }
    entry.2 = phase;
}

/// One line about a run that did not do what the Runbook says, from its last status.
fn run_problem(name: &str, run: Option<&RunbookRun>) -> String {
    let Some(status) = run.and_then(|r| r.status.as_ref()) else {
        return format!("{name}: no status");
    };
    let steps = status
        .steps
        .iter()
        .map(|s| {
            format!(
                "{}={:?}{}{}",
                s.name,
                s.phase,
                s.reason
                    .as_deref()
                    .map(|r| format!("/{r}"))
                    .unwrap_or_default(),
                s.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{name}: phase {}; {steps}",
        status.phase.map_or("none", |p| p.as_str())
    )
}

// ---------------------------------------------------------------------------
// the figures table: one value per round and their median
// ---------------------------------------------------------------------------

fn median(v: &[f64]) -> Option<f64> {
    let v = sorted(v.to_vec());
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

struct Row {
    label: String,
    unit: &'static str,
    values: Vec<Option<f64>>,
    note: String,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    rounds: usize,
}

impl Table {
    /// Sets the value of round `round` (0-based) of the row `label`, adding the row.
    fn set(&mut self, label: &str, unit: &'static str, round: usize, value: Option<f64>) {
        let rounds = self.rounds;
        let row = match self.rows.iter().position(|r| r.label == label) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    label: label.to_owned(),
                    unit,
                    values: vec![None; rounds],
                    note: String::new(),
                });
                self.rows.last_mut().expect("just pushed")
            }
        };
        if round < row.values.len() {
            row.values[round] = value;
        }
    }

    /// p50 and p99 of `samples` as two rows `LABEL p50` and `LABEL p99`, in milliseconds.
    fn dist_ms(&mut self, label: &str, round: usize, samples: &[f64]) {
        let v = sorted(samples.to_vec());
        self.set(
            &format!("{label} p50"),
            "ms",
            round,
            percentile(&v, 0.5).map(|x| x * 1000.0),
        );
        self.set(
            &format!("{label} p99"),
            "ms",
            round,
            percentile(&v, 0.99).map(|x| x * 1000.0),
        );
    }

    fn note(&mut self, label: &str, note: String) {
        if let Some(row) = self.rows.iter_mut().find(|r| r.label == label) {
            row.note = note;
        }
    }

    fn print(&self) {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), support::figures::num);
        let mut head = format!("{:<52}", "figure");
        for r in 1..=self.rounds {
            head.push_str(&format!(" {:>9}", format!("round {r}")));
        }
        println!("{head} {:>9} {:<6}  note", "median", "unit");
        println!("{}", "-".repeat(52 + 10 * (self.rounds + 1) + 20));
        for row in &self.rows {
            let mut line = format!("{:<52}", row.label);
            for v in &row.values {
                line.push_str(&format!(" {:>9}", opt(*v)));
            }
            let present: Vec<f64> = row.values.iter().flatten().copied().collect();
            println!(
                "{line} {:>9} {:<6}  {}",
                opt(median(&present)),
                row.unit,
                row.note
            );
        }
    }
}

// ---------------------------------------------------------------------------
// the bench
// ---------------------------------------------------------------------------

struct Bench {
    cfg: Config,
    rig: Rig,
    seen: Shared,
    prometheus: String,
    with_query: bool,
    failures: Vec<String>,
}

fn app_name(i: usize) -> String {
    format!("app-{i:03}")
}

fn analysis_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "AnalysisRun".into(),
        plural: "analysisruns".into(),
    }
}

impl Bench {
    fn client(&self) -> Client {
        self.rig.client.clone()
    }

    fn runs(&self) -> Api<RunbookRun> {
        Api::namespaced(self.client(), &self.cfg.namespace)
    }

    fn query_step(&self, count: u32) -> Value {
        json!({"query": {
            "address": self.prometheus,
            "promql": PROMQL,
            "successCondition": SUCCESS,
            "interval": format!("{QUERY_INTERVAL}s"),
            "count": count,
        }})
    }

    /// Applies a Runbook and waits until it is Ready (an apply the API server refuses, or a
    /// Runbook the operator finds invalid, ends the bench with its message).
    async fn apply_runbook(&self, name: &str, spec: Value) -> Result<()> {
        let runbooks: Api<Runbook> = Api::namespaced(self.client(), &self.cfg.namespace);
        let body = json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
            "metadata": {"name": name}, "spec": spec,
        });
        runbooks
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .with_context(|| format!("applying Runbook {name}"))?;
        self.rig
            .wait_for(&format!("Runbook {name} to be Ready"), || {
                let runbooks = runbooks.clone();
                async move {
                    let rb = runbooks.get(name).await?;
                    let status = rb.status.as_ref();
                    let phase = status.and_then(|s| s.phase);
                    if phase == Some(RunbookPhase::Ready) {
                        return Ok(None);
                    }
                    Ok(Some(format!(
                        "phase {}; {}",
                        phase.map_or("none".into(), |p| format!("{p:?}")),
                        serde_json::to_string(&status.map(|s| &s.conditions)).unwrap_or_default()
                    )))
                }
            })
            .await
    }

    /// Creates a run of `runbook` named `name` with `params`; returns when the create was sent.
    async fn create_run(&self, runbook: &str, name: &str, params: Value) -> Result<f64> {
        let run: RunbookRun = serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "RunbookRun",
            "metadata": {"name": name},
            "spec": {"runbookRef": {"name": runbook}, "params": params},
        }))?;
        let t = now();
        self.runs()
            .create(&PostParams::default(), &run)
            .await
            .with_context(|| format!("creating RunbookRun {name}"))?;
        Ok(t)
    }

    async fn wait_finished(&self, names: &[String]) -> Result<()> {
        let seen = self.seen.clone();
        let names = names.to_vec();
        self.rig
            .wait_for("the runs to finish", || {
                let left = {
                    let s = lock(&seen);
                    names
                        .iter()
                        .filter(|n| s.runs.get(*n).and_then(|r| r.finished).is_none())
                        .count()
                };
                async move { Ok((left > 0).then(|| format!("{left} not finished"))) }
            })
            .await
    }

    /// Whether the operator runs query steps: one run of a query-only Runbook.
    async fn probe_query(&mut self) -> Result<Option<String>> {
        let check = with_action(
            json!({"name": "check", "timeout": "1m"}),
            self.query_step(1),
        );
        self.apply_runbook(
            PROBE_RUNBOOK,
            json!({"description": "bench-decisions: are query steps built?", "steps": [check]}),
        )
        .await?;
        let name = "query-probe".to_owned();
        self.create_run(PROBE_RUNBOOK, &name, json!({})).await?;
        self.wait_finished(std::slice::from_ref(&name)).await?;
        let s = lock(&self.seen);
        let run = s.runs.get(&name).and_then(|r| r.last.as_ref());
        let status = run.and_then(|r| r.status.as_ref());
        if status.and_then(|s| s.phase).map(|p| p.as_str()) == Some("Succeeded") {
            return Ok(None);
        }
        let step = status.and_then(|s| s.steps.first());
        // The reason, once the journal records it; before that only the stub's message says so.
        let not_built = step.is_some_and(|s| {
            s.reason.as_deref() == Some("NotImplemented")
                || s.message
                    .as_deref()
                    .is_some_and(|m| m.contains("not built"))
        });
        if not_built {
            return Ok(Some(format!(
                "the operator answers NotImplemented for query steps ({}): the query part is left out",
                step.and_then(|s| s.message.as_deref()).unwrap_or("")
            )));
        }
        bail!("the query probe run failed: {}", run_problem(&name, run));
    }

    async fn setup(&mut self) -> Result<()> {
        let cfg = &self.cfg;
        progress(format!(
            "creating {} Deployments ({REPLICAS} replicas each) in {}",
            cfg.count, cfg.namespace
        ));
        let api: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(self.client(), &cfg.namespace);
        let pp = PatchParams::apply(MANAGER).force();
        for_all(cfg.count, 16, |i| {
            let (api, pp) = (api.clone(), pp.clone());
            async move {
                let name = app_name(i);
                let mut d = support::deployment(&name, APP_LABEL, ("BENCH", "1"));
                d["spec"]["replicas"] = json!(REPLICAS);
                api.patch(&name, &pp, &Patch::Apply(&d)).await?;
                Ok(())
            }
        })
        .await?;
        spawn_watch(
            self.runs(),
            watcher::Config::default(),
            self.seen.clone(),
            record_run,
        );
        if let Some(note) = self.probe_query().await? {
            progress(format!("NOTE: {note}"));
            self.with_query = false;
        }
        if self.with_query {
            let check = with_action(
                json!({"name": "check", "timeout": "1m"}),
                self.query_step(QUERY_COUNT),
            );
            self.apply_runbook(
                QUERY_RUNBOOK,
                json!({"description": "bench-decisions: the query step alone, as the peer's AnalysisRun",
                    "historyLimits": {"successful": 1000, "failed": 1000}, "steps": [check]}),
            )
            .await?;
        }
        let target = json!({"kind": "Deployment", "name": "{{ params.app }}"});
        let mut steps = vec![json!({"name": "scale-down", "timeout": "1m",
            "scale": {"target": target, "replicas": "{{ params.replicas }}"}})];
        if self.with_query {
            steps.push(with_action(
                json!({"name": "check", "timeout": "1m"}),
                self.query_step(QUERY_COUNT),
            ));
        }
        steps.push(json!({"name": "scale-up", "timeout": "1m",
            "when": "int(steps['scale-down'].outputs.previousReplicas) > params.replicas",
            "scale": {"target": target, "replicas": "{{ steps.scale-down.outputs.previousReplicas }}"}}));
        steps.push(
            json!({"name": "page", "timeout": "1m", "when": "params.replicas > 5",
            "scale": {"target": target, "by": 1}}),
        );
        self.apply_runbook(
            RUNBOOK,
            json!({
                "description": "bench-decisions: typed params, outputs between steps, when, query",
                "params": [
                    {"name": "app", "type": "string"},
                    {"name": "replicas", "type": "integer", "min": 0, "max": 10},
                ],
                "historyLimits": {"successful": 1000, "failed": 1000},
                "steps": steps,
            }),
        )
        .await?;
        progress(format!(
            "Runbook {RUNBOOK} Ready: steps {}",
            steps_text(self.with_query)
        ));
        Ok(())
    }

    async fn wait_quiet(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        if !self
            .rig
            .wait_quiet(|snap| snap.op_sum(""), || Instant::now() > deadline)
            .await?
        {
            progress("  (the operator kept reconciling for 120 s; going on anyway)");
        }
        Ok(())
    }

    async fn round(&mut self, round: usize, table: &mut Table) -> Result<()> {
        let count = self.cfg.count;
        self.wait_quiet().await?;
        let rss_before = self.rig.proc_mib("VmRSS");
        let cpu_before = self.rig.cpu_seconds();
        let before = self.rig.snapshot().await?;
        progress(format!("round {}: creating {} runs", round + 1, count));
        let names: Vec<String> = (0..count)
            .map(|i| format!("r{}-{i:03}", round + 1))
            .collect();
        let created: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        for_all(count, 16, |i| {
            let (created, name) = (created.clone(), names[i].clone());
            let this = &*self;
            async move {
                let t = this
                    .create_run(RUNBOOK, &name, json!({"app": app_name(i), "replicas": "0"}))
                    .await?;
                lock(&created).insert(name, t);
                Ok(())
            }
        })
        .await?;
        self.wait_finished(&names).await?;
        self.wait_quiet().await?;
        let d = self.rig.snapshot().await?.since(&before);
        let rss_after = self.rig.proc_mib("VmRSS");
        let cpu = cpu_before.zip(self.rig.cpu_seconds()).map(|(a, b)| b - a);
        self.rig.write_out(
            &format!("round-{}-counters.tsv", round + 1),
            &d.tsv(&[Counters::Api, Counters::Flows, Counters::Op]),
        );

        let steps = steps(self.with_query);
        let gate_prev = steps[steps.len() - 3];
        let (mut latency, mut gate_true, mut gate_false, mut query) =
            (vec![], vec![], vec![], vec![]);
        {
            let created = lock(&created);
            let s = lock(&self.seen);
            for name in &names {
                let Some(r) = s.runs.get(name) else { continue };
                let ok = r.run_succeeded.is_some()
                    && r.succeeded.contains_key("scale-up")
                    && r.skipped.contains_key("page")
                    && r.last
                        .as_ref()
                        .and_then(|l| l.status.as_ref())
                        .is_some_and(|st| {
                            st.steps.iter().any(|e| {
                                e.name == "page" && e.reason.as_deref() == Some("ConditionFalse")
                            })
                        });
                if !ok {
                    self.failures.push(run_problem(name, r.last.as_ref()));
                    continue;
                }
                if let (Some(c), Some(t)) = (created.get(name), r.run_succeeded) {
                    latency.push(t - c);
                }
                if let (Some(p), Some(t)) = (r.succeeded.get(gate_prev), r.started.get("scale-up"))
                {
                    gate_true.push(t - p);
                }
                if let (Some(p), Some(t)) = (r.succeeded.get("scale-up"), r.skipped.get("page")) {
                    gate_false.push(t - p);
                }
                if self.with_query
                    && let (Some(a), Some(b)) = (r.started.get("check"), r.succeeded.get("check"))
                {
                    query.push(b - a - f64::from((QUERY_COUNT - 1) * QUERY_INTERVAL));
                }
            }
        }
        table.dist_ms("run: create -> Succeeded", round, &latency);
        table.dist_ms(
            &format!("gate true (scale-up): {gate_prev} done -> Running"),
            round,
            &gate_true,
        );
        table.dist_ms(
            "gate false (page): scale-up done -> Skipped",
            round,
            &gate_false,
        );
        if self.with_query {
            table.dist_ms("query step: duration - (count-1)*interval", round, &query);
        }
        let n = count as f64;
        table.set("operator RSS after the round", "MiB", round, rss_after);
        table.set(
            "operator RSS slope per run",
            "KiB",
            round,
            rss_before.zip(rss_after).map(|(a, b)| (b - a) * 1024.0 / n),
        );
        let requests: f64 = d.flows.values().sum();
        let reconciles = d.op_sum("reconcile ");
        table.set(
            "operator API requests per reconcile",
            "req",
            round,
            (reconciles > 0.0).then(|| requests / reconciles),
        );
        table.set(
            "operator API requests per run",
            "req",
            round,
            Some(requests / n),
        );
        table.set(
            "operator writes per run",
            "writes",
            round,
            Some(d.op_writes() / n),
        );
        table.set(
            "operator reconciles per run",
            "",
            round,
            Some(reconciles / n),
        );
        table.set(
            "operator CPU per run",
            "ms",
            round,
            cpu.map(|c| c * 1000.0 / n),
        );
        if self.with_query {
            self.query_only(round, table).await?;
        }
        let failed = names.len() - latency.len();
        table.set("runs not as expected", "runs", round, Some(failed as f64));
        progress(format!(
            "round {}: {} of {} runs as expected; p50 create -> Succeeded {} ms",
            round + 1,
            latency.len(),
            count,
            percentile(&sorted(latency.clone()), 0.5).map_or("-".into(), |x| num(x * 1000.0))
        ));
        Ok(())
    }

    /// BENCH_COUNT concurrent runs of the query step alone (after the round's counters were
    /// read): create -> Succeeded, the figure to hold against the peer's AnalysisRuns.
    async fn query_only(&mut self, round: usize, table: &mut Table) -> Result<()> {
        let names: Vec<String> = (0..self.cfg.count)
            .map(|i| format!("q{}-{i:03}", round + 1))
            .collect();
        let created: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        for_all(self.cfg.count, 16, |i| {
            let (created, name) = (created.clone(), names[i].clone());
            let this = &*self;
            async move {
                let t = this.create_run(QUERY_RUNBOOK, &name, json!({})).await?;
                lock(&created).insert(name, t);
                Ok(())
            }
        })
        .await?;
        self.wait_finished(&names).await?;
        let mut latency = vec![];
        {
            let created = lock(&created);
            let s = lock(&self.seen);
            for name in &names {
                let r = s.runs.get(name);
                match (created.get(name), r.and_then(|r| r.run_succeeded)) {
                    (Some(c), Some(t)) => latency.push(t - c),
                    _ => self
                        .failures
                        .push(run_problem(name, r.and_then(|r| r.last.as_ref()))),
                }
            }
        }
        table.dist_ms("query step alone: create -> Succeeded", round, &latency);
        self.wait_quiet().await
    }

    /// BENCH_SETTLE s idle, then BENCH_WINDOW s of counted writes; true when there were none.
    async fn settled(&self, table: &mut Table) -> Result<bool> {
        progress(format!(
            "settled window: {}s idle, then {}s counted",
            self.cfg.settle, self.cfg.window
        ));
        tokio::time::sleep(Duration::from_secs(self.cfg.settle)).await;
        let before = self.rig.snapshot().await?;
        tokio::time::sleep(Duration::from_secs(self.cfg.window)).await;
        self.rig.operator_alive()?;
        let d = self.rig.snapshot().await?.since(&before);
        // All clients' writes include the control plane's Lease renewals: only those to
        // ops.runbook.dev are worth a line.
        for (key, n) in d
            .api_writes()
            .filter(|(k, _)| k.contains(" ops.runbook.dev/"))
        {
            progress(format!(
                "  write to ops.runbook.dev in the settled window: {key} x{n}"
            ));
        }
        let writes = d.op_writes();
        let all =
            d.api_sum(|verb, what| support::is_write(verb) && what.starts_with("ops.runbook.dev/"));
        let last = table.rounds.saturating_sub(1);
        table.set(
            "settled window: operator writes (must be 0)",
            "writes",
            last,
            Some(writes),
        );
        table.set(
            "settled window: all writes to ops.runbook.dev",
            "writes",
            last,
            Some(all),
        );
        table.set(
            "settled window: operator reconciles",
            "",
            last,
            Some(d.op_sum("reconcile ")),
        );
        table.set("operator RSS idle", "MiB", last, self.rig.proc_mib("VmRSS"));
        Ok(writes == 0.0 && all == 0.0)
    }

    /// The peer: rounds of BENCH_COUNT AnalysisRuns of the same query.
    async fn peer(&mut self, bin: &Path, table: &mut Table) -> Result<()> {
        let dir = self
            .rig
            .out
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("peer");
        let (metrics, healthz) = (free_port()?, free_port()?);
        let kubeconfig = std::env::var("KUBECONFIG").context("KUBECONFIG (the bench cluster's)")?;
        let args = [
            "--controllers=analysis".to_owned(),
            "--leader-elect=false".to_owned(),
            format!("--kubeconfig={kubeconfig}"),
            format!("--metricsPort={metrics}"),
            format!("--healthzPort={healthz}"),
            "--loglevel=warn".to_owned(),
        ];
        progress(format!(
            "peer: starting {} {}",
            bin.display(),
            args.join(" ")
        ));
        let mut proc = Proc::spawn("rollouts-controller", bin, &args, &dir)?;
        proc.wait_ok(
            &self.rig.http,
            &format!("http://127.0.0.1:{healthz}/healthz"),
            self.rig.timeout,
        )
        .await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client(), &self.cfg.namespace, &analysis_resource());
        spawn_watch(
            api.clone(),
            watcher::Config::default(),
            self.seen.clone(),
            record_analysis,
        );
        let idle = proc.rss_mib();
        for round in 0..self.cfg.rounds {
            progress(format!(
                "peer round {}: creating {} AnalysisRuns",
                round + 1,
                self.cfg.count
            ));
            let names: Vec<String> = (0..self.cfg.count)
                .map(|i| format!("ar{}-{i:03}", round + 1))
                .collect();
            let created: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
            let prometheus = self.prometheus.clone();
            for_all(self.cfg.count, 16, |i| {
                let (api, created, name, prometheus) = (
                    api.clone(),
                    created.clone(),
                    names[i].clone(),
                    prometheus.clone(),
                );
                async move {
                    let mut ar = DynamicObject::new(&name, &analysis_resource());
                    ar.data = json!({"spec": {"metrics": [{
                        "name": "check",
                        "interval": format!("{QUERY_INTERVAL}s"),
                        "count": QUERY_COUNT,
                        "successCondition": PEER_SUCCESS,
                        "provider": {"prometheus": {"address": prometheus, "query": PROMQL}},
                    }]}});
                    let t = now();
                    api.create(&PostParams::default(), &ar)
                        .await
                        .with_context(|| format!("creating AnalysisRun {name}"))?;
                    lock(&created).insert(name, t);
                    Ok(())
                }
            })
            .await?;
            let seen = self.seen.clone();
            let wait_names = names.clone();
            let deadline = Instant::now() + self.rig.timeout;
            let mut tick = Ticker::new();
            loop {
                let left = {
                    let s = lock(&seen);
                    wait_names
                        .iter()
                        .filter(|n| s.analysis.get(*n).and_then(|a| a.1).is_none())
                        .count()
                };
                if left == 0 {
                    break;
                }
                proc.alive()?;
                if Instant::now() > deadline {
                    bail!(
                        "peer: {left} AnalysisRuns not finished after {:?}",
                        self.rig.timeout
                    );
                }
                if tick.due() {
                    progress(format!(
                        "  ... waiting for the AnalysisRuns: {left} not finished"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let (mut latency, mut bad) = (vec![], vec![]);
            {
                let created = lock(&created);
                let s = lock(&seen);
                for name in &names {
                    match (created.get(name), s.analysis.get(name)) {
                        (Some(c), Some((Some(t), _, _))) => latency.push(t - c),
                        (_, a) => bad.push(format!("{name}: {}", a.map_or("-", |a| a.2.as_str()))),
                    }
                }
            }
            progress(format!(
                "peer round {}: {} of {} AnalysisRuns Successful; p50 create -> Successful {} ms",
                round + 1,
                latency.len(),
                names.len(),
                percentile(&sorted(latency.clone()), 0.5).map_or("-".into(), |x| num(x * 1000.0))
            ));
            table.dist_ms("peer AnalysisRun: create -> Successful", round, &latency);
            table.set(
                "peer controller RSS after the round",
                "MiB",
                round,
                proc.rss_mib(),
            );
            table.set(
                "peer AnalysisRuns not Successful",
                "runs",
                round,
                Some(bad.len() as f64),
            );
            for b in bad.iter().take(5) {
                self.failures.push(format!("peer {b}"));
            }
        }
        table.set("peer controller RSS before the first round", "MiB", 0, idle);
        Ok(())
    }
}

/// `step` with the keys of `action` added.
fn with_action(mut step: Value, action: Value) -> Value {
    if let (Some(s), Value::Object(a)) = (step.as_object_mut(), action) {
        s.extend(a);
    }
    step
}

fn steps_text(with_query: bool) -> String {
    steps(with_query).join(" -> ")
}

async fn bench(operator_url: String) -> Result<bool> {
    let cfg = Config::from_env()?;
    let rig = Rig::connect(Settings::from_env(operator_url)?, FLOW_PREFIX).await?;
    let exporter = start_exporter().await?;
    let dir = rig
        .out
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join("prometheus");
    let (_prometheus, base) = start_prometheus(&rig, &cfg.prometheus, exporter, &dir).await?;
    progress(format!(
        "exporter on 127.0.0.1:{exporter}; Prometheus {base} answers {PROMQL}"
    ));
    let mut table = Table {
        rounds: cfg.rounds,
        ..Table::default()
    };
    let mut bench = Bench {
        cfg,
        rig,
        seen: Arc::default(),
        prometheus: base,
        with_query: true,
        failures: Vec::new(),
    };
    bench.rig.operator_alive()?;
    let mut notes = Vec::new();
    // The peer first, while the operator has nothing to do: it does not watch AnalysisRuns.
    match (bench.cfg.peer_bin.clone(), bench.cfg.peer_note.clone()) {
        (Some(bin), _) => {
            if let Err(err) = bench.peer(&bin, &mut table).await {
                progress(format!("peer failed: {err:#}"));
                notes.push(format!(
                    "peer (Argo Rollouts {}) failed: {err:#}",
                    bench.cfg.peer_version
                ));
            }
        }
        (None, note) => notes.push(format!(
            "peer (Argo Rollouts {}) left out: {}",
            bench.cfg.peer_version,
            note.unwrap_or_else(|| "no BENCH_PEER_BIN".into())
        )),
    }
    // A Runbook the API server or the operator refuses (an operator without the features it
    // uses) still lets the peer's figures be printed, with the reason.
    let ran = match bench.setup().await {
        Ok(()) => true,
        Err(err) => {
            progress(format!("ERROR: {err:#}"));
            notes.push(format!("the operator's part did not run: {err:#}"));
            false
        }
    };
    if !bench.with_query {
        notes.push("query steps: the operator answers NotImplemented; the Runbook runs without its `check` step and no query figures are shown".to_owned());
    }
    let mut settled = false;
    if ran {
        for round in 0..bench.cfg.rounds {
            bench.round(round, &mut table).await?;
        }
        settled = bench.settled(&mut table).await?;
    }
    table.note(
        "operator RSS slope per run",
        "(RSS after - before the round) / runs".into(),
    );

    println!();
    println!(
        "{} rounds of {} concurrent runs; steps {}; figures per round, median over the rounds.",
        bench.cfg.rounds,
        bench.cfg.count,
        steps_text(bench.with_query)
    );
    println!();
    table.print();
    println!();
    println!("Definitions (times on this process's clock: a create sent, a watch event arrived):");
    println!("  run: create sent -> first event with the run Succeeded.");
    println!(
        "  gate: the step before the gated one first seen Succeeded -> the gated step first seen"
    );
    println!("    past Pending (when true) or Skipped (when false, reason ConditionFalse).");
    println!(
        "  query step: first seen Succeeded - first seen past Pending - (count-1)*interval = {}s.",
        (QUERY_COUNT - 1) * QUERY_INTERVAL
    );
    println!(
        "  requests: the operator's (FlowSchemas runbook-bench-op-*, the runs' ServiceAccount"
    );
    println!("    included) over a round / its reconciles (runbook_operator_reconciles_total).");
    println!(
        "  peer: Argo Rollouts {} rollouts-controller --controllers=analysis; the same PromQL",
        bench.cfg.peer_version
    );
    println!(
        "    ({PROMQL}), count {QUERY_COUNT}, interval {QUERY_INTERVAL}s; create -> status.phase Successful;"
    );
    println!(
        "    to hold against `query step alone` (a Runbook of only that query step, same count/interval)."
    );
    if ran {
        println!(
            "check: operator writes in the settled window = 0: {}",
            if settled { "ok" } else { "FAILED" }
        );
    }
    for n in &notes {
        println!("note: {n}");
    }
    if watch_errors() > 0 {
        println!(
            "note: the bench's watches failed {} time(s) (retried)",
            watch_errors()
        );
    }
    if !bench.failures.is_empty() {
        println!();
        println!(
            "{} run(s) not as expected ({}):",
            bench.failures.len(),
            counts(bench.failures.iter().map(|f| {
                f.split(';')
                    .next()
                    .unwrap_or("")
                    .split(": ")
                    .nth(1)
                    .unwrap_or("")
                    .to_owned()
            }))
        );
        for f in bench.failures.iter().take(20) {
            println!("  {f}");
        }
    }
    Ok(settled && bench.failures.is_empty())
}

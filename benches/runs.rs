//! Benchmark of issue 3, "Runbooks that really run": BENCH_COUNT (200) concurrent RunbookRuns
//! of a five-step Runbook, `scale` (by 1) -> `setEnv` -> `restart` (wait for the rollout) ->
//! `job` -> `http` (to a server this binary runs on 127.0.0.1), each run on its own Deployment.
//!
//! Run it through `hack/bench-runs.sh`, which starts a cluster (`bench` unless BENCH_CLUSTER)
//! and the operator and passes them in through the environment. Without `BENCH_OPERATOR_URL`
//! this binary only prints how to run it and exits 0, so a plain `cargo bench` never touches
//! whatever cluster the current kubeconfig points at.
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

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use runbook_operator::runbook::{Runbook, RunbookPhase};
use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use serde_json::json;
use support::{
    Counters, Rig, Settings, Ticker, counts, env_positive, env_text, for_all, is_write, lock, now,
    num, percentile, progress, rollout_complete, sorted, spawn_watch,
};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-runs";
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
/// Label on the bench's Deployments (value: the Deployment's name).
const APP_LABEL: &str = "bench.runbook.dev/app";
/// The env variable the setEnv step sets (to the round number).
const ENV_NAME: &str = "BENCH_ROUND";
/// The pod template annotation `restart` sets.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The ConfigMap and the RunbookRun the bench patches once a second, in the namespace
/// `<BENCH_NAMESPACE>-probe` that the operator does not watch, to time its own watches.
const PROBE: &str = "bench-runs-probe";
/// The two probes.
const PROBE_KINDS: [&str; 2] = ["ConfigMap", "RunbookRun"];
/// The annotation that carries a probe write's sequence number.
const PROBE_SEQ: &str = "bench.runbook.dev/seq";
/// The counters the raw request deltas (`api-delta-*.tsv`) hold, in that order.
const RAW_COUNTERS: [Counters; 4] = [
    Counters::Api,
    Counters::Refused,
    Counters::Flows,
    Counters::Op,
];

// ---------------------------------------------------------------------------
// clock, progress, configuration
// ---------------------------------------------------------------------------

/// A wall-clock time (RFC 3339) on the `now()` scale; raw data only.
fn wall_to_secs(text: &str) -> Option<f64> {
    let ts: jiff::Timestamp = text.parse().ok()?;
    Some(ts.duration_since(support::t0().1).as_secs_f64())
}

/// This bench's knobs (the ones both benches read are `support::Settings`).
struct Config {
    namespace: String,
    count: usize,
    rounds: usize,
    window: u64,
    settle: u64,
    job_run_for: Option<String>,
}

impl Config {
    /// Reads the environment (before `Settings::from_env`, the order the errors come in).
    fn from_env() -> Result<Self> {
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
            job_run_for: env_text("BENCH_JOB_RUN_FOR"),
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
    /// Probe writes by (kind index, sequence number): when the patch was sent, and when its
    /// watch event arrived.
    probe_sent: HashMap<(usize, u64), f64>,
    probe_seen: HashMap<(usize, u64), f64>,
}

/// What the watches and the HTTP server saw, shared with their tasks.
type Shared = Arc<Mutex<Seen>>;

fn run_phase(run: &RunbookRun) -> Option<&str> {
    run.status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()))
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
        if is_finished(status.phase.map(|p| p.as_str())) && entry.finished.is_none() {
            entry.finished = Some(t);
        }
    }
    entry.last = run;
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
// figures
// ---------------------------------------------------------------------------

/// The median of unsorted samples (the mean of the middle two for an even count).
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

// ---------------------------------------------------------------------------
// the benchmark
// ---------------------------------------------------------------------------

/// The benchmark's state across rounds.
struct Bench {
    cfg: Config,
    /// The cluster and the operator.
    rig: Rig,
    seen: Shared,
    /// The port of the http step's target.
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
        Api::namespaced(self.rig.client.clone(), &self.cfg.namespace)
    }
    fn runs(&self) -> Api<RunbookRun> {
        Api::namespaced(self.rig.client.clone(), &self.cfg.namespace)
    }
    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.rig.client.clone(), &self.cfg.namespace)
    }

    fn probe_namespace(&self) -> String {
        format!("{}-probe", self.cfg.namespace)
    }

    /// Patches the probe ConfigMap and RunbookRun once a second until aborted.
    fn spawn_probe(&self) -> tokio::task::JoinHandle<()> {
        let ns = self.probe_namespace();
        let cms: Api<ConfigMap> = Api::namespaced(self.rig.client.clone(), &ns);
        let runs: Api<RunbookRun> = Api::namespaced(self.rig.client.clone(), &ns);
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
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
            Api::all(self.rig.client.clone());
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
        let cms: Api<ConfigMap> = Api::namespaced(self.rig.client.clone(), &ns);
        cms.patch(
            PROBE,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": PROBE}}),
            ),
        )
        .await
        .context("creating the probe ConfigMap")?;
        let runs: Api<RunbookRun> = Api::namespaced(self.rig.client.clone(), &ns);
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

    /// Sleeps `seconds`, checking the operator and saying how far it got (`what`).
    async fn sleep_watching(&self, what: &str, seconds: u64) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(seconds);
        let start = Instant::now();
        let mut tick = Ticker::new();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(500).min(end - Instant::now())).await;
            self.rig.operator_alive()?;
            if tick.due() {
                progress(format!(
                    "  ... {what}: {:.0}/{seconds}s",
                    start.elapsed().as_secs_f64()
                ));
            }
        }
        Ok(())
    }

    /// Waits until the operator's reconcile and write counters stand still for 3 s (for
    /// 120 s at the most).
    async fn wait_quiet(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let quiet = self
            .rig
            .wait_quiet(|snap| snap.op_sum(""), || Instant::now() > deadline)
            .await?;
        if !quiet {
            progress("  (the operator kept reconciling for 120 s; going on anyway)");
        }
        Ok(())
    }

    async fn wait_deployments(&self, replicas: i32) -> Result<()> {
        let api = self.deployments();
        let count = self.cfg.count;
        self.rig
            .wait_for(
                &format!("{count} Deployments at {replicas} replica(s), rolled out"),
                || {
                    let api = api.clone();
                    async move {
                        let list = api.list(&ListParams::default().labels(APP_LABEL)).await?;
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
        for_all(cfg.count, 16, |i| {
            let api = api.clone();
            let pp = pp.clone();
            async move {
                let name = app_name(i);
                let d = support::deployment(&name, APP_LABEL, (ENV_NAME, "0"));
                api.patch(&name, &pp, &Patch::Apply(&d)).await?;
                Ok(())
            }
        })
        .await?;
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
        let runbooks: Api<Runbook> = Api::namespaced(self.rig.client.clone(), &cfg.namespace);
        runbooks
            .patch(RUNBOOK, &pp, &Patch::Apply(&runbook))
            .await
            .context("applying the Runbook")?;
        self.rig
            .wait_for("the Runbook to be Ready", || {
                let runbooks = runbooks.clone();
                async move {
                    let rb = runbooks.get(RUNBOOK).await?;
                    let phase = rb.status.as_ref().and_then(|s| s.phase);
                    Ok((phase != Some(RunbookPhase::Ready)).then(|| {
                        format!(
                            "phase {}",
                            phase.map_or("none".into(), |p| format!("{p:?}"))
                        )
                    }))
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
            watcher::Config::default().labels(APP_LABEL),
            self.seen.clone(),
            record_deployment,
        );
        Ok(())
    }

    /// Deletes the previous round's runs and Jobs, scales every Deployment back to 1.
    async fn reset(&self) -> Result<()> {
        let runs = self.runs();
        let jobs = self.jobs();
        let pods: Api<Pod> = Api::namespaced(self.rig.client.clone(), &self.cfg.namespace);
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
            self.rig
                .wait_for("old runs, Jobs and Job pods to be gone", || {
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
        let list = api.list(&ListParams::default().labels(APP_LABEL)).await?;
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
            for_all(to_scale.len(), 16, |i| {
                let api = api.clone();
                let name = to_scale[i].clone();
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
            .await?;
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
        let before = self.rig.snapshot().await?;
        let cpu_before = self.rig.cpu_seconds();
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
        let deadline = Instant::now() + self.rig.timeout;
        let mut tick = Ticker::new();
        loop {
            let (finished, state) = {
                let seen = lock(&self.seen);
                let mut finished = 0;
                let mut at = Vec::with_capacity(count);
                for i in 0..count {
                    at.push(match seen.runs.get(&run_name(round, i)) {
                        Some(r) if r.finished.is_some() => {
                            finished += 1;
                            run_phase(&r.last).unwrap_or("?").to_owned()
                        }
                        Some(r) => r
                            .last
                            .status
                            .as_ref()
                            .and_then(|s| s.current_step.clone())
                            .unwrap_or_else(|| "(not started)".into()),
                        None => "(not seen)".into(),
                    });
                }
                (finished, counts(at))
            };
            if finished == count {
                break;
            }
            self.rig.operator_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "round {round}: only {finished}/{count} runs finished after {:?} ({state})",
                    self.rig.timeout
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
        let after = self.rig.snapshot().await?;
        let cpu = self
            .rig
            .cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        let rss = self.rig.proc_mib("VmRSS");
        let delta = after.since(&before);
        self.rig.write_out(
            &format!("api-delta-round-{round}.tsv"),
            &delta.tsv(&RAW_COUNTERS),
        );

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
        let watch_errors = support::watch_errors();
        let failed_yaml: Vec<(String, String)> = seen
            .runs
            .iter()
            .filter(|(_, r)| run_phase(&r.last) != Some("Succeeded"))
            .take(3)
            .map(|(n, r)| {
                (
                    n.clone(),
                    serde_norway::to_string(&r.last).unwrap_or_default(),
                )
            })
            .collect();
        drop(seen);
        self.rig.write_out(&format!("runs-round-{round}.tsv"), &raw);
        for (name, yaml) in failed_yaml {
            self.rig
                .write_out(&format!("failed-run-{name}.yaml"), &yaml);
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
            let writes = delta.op_writes();
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
        let rss_idle = self.rig.proc_mib("VmRSS");
        let before = self.rig.snapshot().await?;
        self.sleep_watching("write window", cfg.window).await?;
        let after = self.rig.snapshot().await?;
        let d = after.since(&before);
        self.rig
            .write_out("api-delta-window.tsv", &d.tsv(&RAW_COUNTERS));
        let crd_writes =
            d.api_sum(|verb, what| is_write(verb) && what.starts_with("ops.runbook.dev/"));
        let op_writes = d.op_writes();
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
            for (k, v) in d.api_writes() {
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
        status.phase.map(|p| p.as_str()).unwrap_or("?"),
        step.map_or("-", |s| s.name.as_str()),
        step.and_then(|s| s.message.as_deref()).unwrap_or("-"),
    )
}

#[tokio::main]
async fn main() {
    support::main(
        "benches/runs.rs needs a cluster and a running operator: run hack/bench-runs.sh (or make bench)",
        bench,
    )
    .await;
}

/// Ok(false): the figures are printed, but runs failed.
async fn bench(operator_url: String) -> Result<bool> {
    let cfg = Config::from_env()?;
    let rig = Rig::connect(Settings::from_env(operator_url)?, FLOW_PREFIX).await?;
    let seen: Shared = Arc::default();
    let port = start_http_server(seen.clone()).await?;
    progress(format!(
        "{} concurrent runs x {} rounds of a five-step Runbook in namespace {}; HTTP target on 127.0.0.1:{port}",
        cfg.count, cfg.rounds, cfg.namespace
    ));
    let mut bench = Bench {
        cfg,
        rig,
        seen,
        port,
        failures: Vec::new(),
        pooled: BTreeMap::new(),
    };
    bench.rig.operator_alive()?;
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
    println!(
        "  operator requests: the operator impersonates runbook-bench-operator, and the steps'"
    );
    println!(
        "    requests are sent as the runs' ServiceAccount (`default` of the namespace); FlowSchemas"
    );
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

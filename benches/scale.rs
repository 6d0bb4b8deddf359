//! Benchmark of the operator at scale under the chart's RBAC (issue 7: "operator RSS and CPU
//! with every example plus 1,000 objects of each kind under the chart's RBAC").
//!
//! Run it through `hack/bench-scale.sh`, which starts a cluster (`benchscale` unless
//! BENCH_CLUSTER), applies the chart's RBAC and writes a kubeconfig that impersonates the
//! chart's ServiceAccount; this binary starts a fresh operator with that kubeconfig for every
//! round. Without `BENCH_OPERATOR_URL` it only prints how to run it and exits 0, so a plain
//! `cargo bench` never touches whatever cluster the current kubeconfig points at.
//!
//! Prints figures, not verdicts: it exits non-zero only when something broke (the operator
//! died, a wait timed out). Progress goes to stderr (a line at least every ~15 s), the figures
//! to stdout.
//!
//! # A round (BENCH_ROUNDS, 3; each in fresh namespaces with a fresh operator)
//!
//! 1. Namespaces `<BENCH_NAMESPACE>-rR-NN` (BENCH_NAMESPACES, 10) and `<...>-rR-examples`;
//!    in each numbered one a Deployment `target` (1 replica), and per BlueGreenRelease its
//!    active Service. kwok makes the Deployments Available. None of this is measured.
//! 2. The operator starts (`run`, all namespaces, as the kubeconfig BENCH_OPERATOR_KUBECONFIG
//!    says: the chart's ServiceAccount) and becomes ready; the **load phase** begins.
//! 3. `kubectl apply --server-side -f examples/` into the examples namespace, then, spread
//!    round-robin over the numbered namespaces (BENCH_PARALLEL, 32, creates in flight), in
//!    this order: BENCH_RUNBOOKS Runbooks `rb-NNNN` (one 1 s sleep step), BENCH_WINDOWS
//!    MaintenanceWindows `mw-NNNN` (yearly, on 1 January, scaling `target` to 0),
//!    BENCH_POLICIES BackupPolicies `bp-NNNN` (yearly on 1 January: no Job runs),
//!    BENCH_RELEASES BlueGreenReleases `rel-NNNN` (1 replica, no steps; the operator creates
//!    its slot Deployment), BENCH_RUNS RunbookRuns `run-NNNN` of `rb-NNNN`. Each count
//!    defaults to BENCH_COUNT (1000).
//! 4. **settled**: every object of the five kinds in the round's namespaces (the examples'
//!    too) has `status.observedGeneration == metadata.generation`; the bench's runs also have
//!    a terminal phase and its releases phase Healthy. Seen through watches; then the
//!    operator's reconcile and write counters stand still for 3 s (the load phase ends), then
//!    BENCH_SETTLE (10) s more.
//! 5. **quiet interval** of BENCH_QUIET (60) s: nothing changes; counted are the operator's
//!    writes (`runbook_operator_api_writes_total`, and exactly through the FlowSchemas
//!    `runbook-bench-scale-*` the script installs for the ServiceAccount), its reconciles
//!    (`runbook_operator_reconciles_total`) and its CPU time. A settled object costs 0 writes.
//! 6. The namespaces are deleted (with the operator still running, so RunbookRun finalizers
//!    are handled) and waited for; then the operator stops.
//!
//! # Figures
//!
//! * time to settle: first create -> settled, and last create -> settled
//! * operator RSS: VmRSS when settled, the highest VmRSS sample (every 100 ms) in the load
//!   phase, VmHWM (kernel high-water mark since the process started) at the end of the quiet
//!   interval, VmRSS then
//! * CPU seconds (utime + stime of /proc/PID/stat): in the load phase (ready -> quiet), in the
//!   quiet interval (idle cost)
//! * writes and reconciles in the quiet interval
//!
//! Each figure: median over the rounds, and every round's value.
//!
//! Environment (defaults in parentheses; hack/bench-scale.sh sets them):
//! * BENCH_OPERATOR_URL: http://127.0.0.1:PORT for the operator's probe server (required)
//! * BENCH_OPERATOR_BIN: the runbook-operator binary (required)
//! * BENCH_OPERATOR_KUBECONFIG: the operator's kubeconfig (default: the bench's)
//! * BENCH_IDENTITY: what the operator should authenticate as (checked, printed)
//! * BENCH_EXAMPLES: the examples directory (required)
//! * BENCH_NAMESPACE (bench-scale), BENCH_NAMESPACES (10), BENCH_COUNT (1000),
//!   BENCH_RUNBOOKS / BENCH_RUNS / BENCH_WINDOWS / BENCH_POLICIES / BENCH_RELEASES
//!   (BENCH_COUNT), BENCH_ROUNDS (3), BENCH_PARALLEL (32), BENCH_SETTLE (10), BENCH_QUIET (60)
//! * BENCH_TIMEOUT (600): seconds for any one wait
//! * BENCH_OUT: directory for logs and raw data

#[allow(
    dead_code,
    reason = "this bench starts its own operators and watches with changes: parts of support are unused"
)]
mod support;

use support::figures::{Table, num};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use runbook_operator::backup_policy::BackupPolicy;
use runbook_operator::blue_green::BlueGreenRelease;
use runbook_operator::maintenance_window::MaintenanceWindow;
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::RunbookRun;
use serde_json::{Value, json};
use support::pace::{RssSamples, secs};
use support::process::{Launcher, Operator};
use support::{
    Change, Counters, Rig, Settings, env_positive, env_text, for_all, lock, progress,
    spawn_watch_changes,
};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-scale";
/// Prefix of the FlowSchemas that count the operator's requests (see hack/bench-scale.sh).
const FLOW_PREFIX: &str = "runbook-bench-scale-";
/// Label on the bench's namespaces (value: the round).
const NS_LABEL: &str = "bench.runbook.dev/scale";
/// The counters the raw request deltas hold.
const RAW_COUNTERS: [Counters; 3] = [Counters::Api, Counters::Flows, Counters::Op];
/// The five kinds, in creation order.
const KINDS: [&str; 5] = [
    "Runbook",
    "MaintenanceWindow",
    "BackupPolicy",
    "BlueGreenRelease",
    "RunbookRun",
];

// ---------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------

struct Config {
    prefix: String,
    namespaces: usize,
    /// Objects per kind, in KINDS order.
    counts: [usize; 5],
    rounds: usize,
    parallel: usize,
    settle: u64,
    quiet: u64,
    examples: PathBuf,
    identity: Option<String>,
    port: u16,
}

impl Config {
    fn from_env(operator_url: &str) -> Result<Self> {
        let count = env_positive("BENCH_COUNT", 1000)?;
        let mut counts = [0; 5];
        for (i, var) in [
            "BENCH_RUNBOOKS",
            "BENCH_WINDOWS",
            "BENCH_POLICIES",
            "BENCH_RELEASES",
            "BENCH_RUNS",
        ]
        .iter()
        .enumerate()
        {
            counts[i] = env_positive(var, count)? as usize;
        }
        if counts[4] > counts[0] {
            bail!("BENCH_RUNS must be at most BENCH_RUNBOOKS: run-N runs rb-N");
        }
        let namespaces = env_positive("BENCH_NAMESPACES", 10)? as usize;
        if namespaces > 99 {
            bail!("BENCH_NAMESPACES must be at most 99");
        }
        let port = operator_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
            .ok_or_else(|| anyhow!("BENCH_OPERATOR_URL {operator_url:?} has no port"))?;
        Ok(Self {
            prefix: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-scale".into()),
            namespaces,
            counts,
            rounds: env_positive("BENCH_ROUNDS", 3)? as usize,
            parallel: env_positive("BENCH_PARALLEL", 32)? as usize,
            settle: env_positive("BENCH_SETTLE", 10)?,
            quiet: env_positive("BENCH_QUIET", 60)?,
            examples: env_text("BENCH_EXAMPLES")
                .map(PathBuf::from)
                .context("BENCH_EXAMPLES must name the examples directory")?,
            identity: env_text("BENCH_IDENTITY"),
            port,
        })
    }

    fn namespace(&self, round: usize, i: usize) -> String {
        format!("{}-r{round}-{:02}", self.prefix, i % self.namespaces)
    }

    fn examples_namespace(&self, round: usize) -> String {
        format!("{}-r{round}-examples", self.prefix)
    }

    fn round_prefix(&self, round: usize) -> String {
        format!("{}-r{round}-", self.prefix)
    }
}

/// How many objects of each of our kinds the examples directory holds.
fn example_counts(dir: &PathBuf) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if !path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = serde_norway::Value::deserialize(doc)
                .with_context(|| format!("parsing {}", path.display()))?;
            let api = value
                .get("apiVersion")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
            if api.starts_with("ops.runbook.dev/") {
                *counts.entry(kind.to_owned()).or_default() += 1;
            }
        }
    }
    Ok(counts)
}

use serde::Deserialize as _;

// ---------------------------------------------------------------------------
// what the watches saw
// ---------------------------------------------------------------------------

struct ObjSeen {
    settled: bool,
    phase: String,
    /// For an unsettled object, its Ready condition as "reason: message", so a round that
    /// does not settle says why.
    why: String,
}

#[derive(Default)]
struct Seen {
    /// kind -> "ns/name" -> state (objects of every namespace; filtered by prefix when read).
    objects: HashMap<&'static str, HashMap<String, ObjSeen>>,
}

/// Whether an object of `kind` is settled: its status describes its generation, and the
/// bench's runs finished and releases are Healthy.
fn settled(kind: &str, obj: &DynamicObject) -> (bool, String) {
    let status = obj.data.get("status");
    let observed = status
        .and_then(|s| s.get("observedGeneration"))
        .and_then(Value::as_i64);
    let phase = status
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut ok = observed.is_some() && observed == obj.metadata.generation;
    let ours = obj.labels().contains_key(NS_LABEL);
    if ours && kind == "RunbookRun" {
        ok &= matches!(phase.as_str(), "Succeeded" | "Failed" | "Cancelled");
    }
    if ours && kind == "BlueGreenRelease" {
        ok &= phase == "Healthy";
    }
    (ok, phase)
}

/// An object's Ready condition as "Ready=Status reason: message" ("no Ready condition" when
/// it has none).
fn ready_condition(obj: &DynamicObject) -> String {
    let ready = obj
        .data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) => format!(
            "Ready={} {}: {}",
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or("?"),
            c["message"].as_str().unwrap_or("")
        ),
        None => "no Ready condition".into(),
    }
}

impl Seen {
    /// Up to `n` unsettled objects of `kind` in namespaces starting with `prefix`, each as
    /// "ns/name (Ready condition)".
    fn unsettled(&self, kind: &str, prefix: &str, n: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .objects
            .get(kind)
            .into_iter()
            .flatten()
            .filter(|(key, o)| key.starts_with(prefix) && !o.settled)
            .map(|(key, o)| format!("{key} ({})", o.why))
            .collect();
        out.sort();
        out.truncate(n);
        out
    }

    /// (settled, seen) of `kind` in namespaces starting with `prefix`, and phases.
    fn count(&self, kind: &str, prefix: &str) -> (usize, usize, BTreeMap<String, usize>) {
        let mut phases = BTreeMap::new();
        let (mut ok, mut all) = (0, 0);
        if let Some(objs) = self.objects.get(kind) {
            for (key, o) in objs {
                if !key.starts_with(prefix) {
                    continue;
                }
                all += 1;
                ok += usize::from(o.settled);
                *phases
                    .entry(if o.phase.is_empty() {
                        "-".into()
                    } else {
                        o.phase.clone()
                    })
                    .or_default() += 1;
            }
        }
        (ok, all, phases)
    }
}

// ---------------------------------------------------------------------------
// a round's figures
// ---------------------------------------------------------------------------

#[derive(Default, Clone)]
struct Figures {
    objects: usize,
    create: f64,
    settle_first: f64,
    settle_last: f64,
    rss_settled: Option<f64>,
    rss_peak: Option<f64>,
    hwm: Option<f64>,
    rss_end: Option<f64>,
    cpu_load: Option<f64>,
    cpu_quiet: Option<f64>,
    writes_quiet: f64,
    flow_writes_quiet: f64,
    crd_writes_quiet: f64,
    reconciles_quiet: f64,
    reconciles_load: f64,
    writes_load: f64,
    phases: String,
}

// ---------------------------------------------------------------------------
// the bench
// ---------------------------------------------------------------------------

struct Bench {
    cfg: Config,
    rig: Rig,
    launcher: Launcher,
    seen: Arc<Mutex<Seen>>,
    examples: BTreeMap<String, usize>,
}

fn resource(kind: &str) -> ApiResource {
    match kind {
        "Runbook" => ApiResource::erase::<Runbook>(&()),
        "RunbookRun" => ApiResource::erase::<RunbookRun>(&()),
        "MaintenanceWindow" => ApiResource::erase::<MaintenanceWindow>(&()),
        "BlueGreenRelease" => ApiResource::erase::<BlueGreenRelease>(&()),
        _ => ApiResource::erase::<BackupPolicy>(&()),
    }
}

impl Bench {
    fn watch(&self) {
        for kind in KINDS {
            let api: Api<DynamicObject> = Api::all_with(self.rig.client.clone(), &resource(kind));
            spawn_watch_changes(
                api,
                watcher::Config::default(),
                self.seen.clone(),
                move |seen: &mut Seen, _t: Timestamp, change| {
                    let objs = seen.objects.entry(kind).or_default();
                    match change {
                        Change::Applied(o) => {
                            let key =
                                format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                            let (settled, phase) = settled(kind, &o);
                            let why = if settled {
                                String::new()
                            } else {
                                ready_condition(&o)
                            };
                            objs.insert(
                                key,
                                ObjSeen {
                                    settled,
                                    phase,
                                    why,
                                },
                            );
                        }
                        Change::Deleted(o) => {
                            let key =
                                format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                            objs.remove(&key);
                        }
                    }
                },
            );
        }
    }

    fn label(round: usize) -> Value {
        json!({NS_LABEL: round.to_string()})
    }

    async fn create(&self, ns: &str, body: Value) -> Result<()> {
        let kind = body["kind"].as_str().unwrap_or_default().to_owned();
        let api_version = body["apiVersion"].as_str().unwrap_or_default();
        let ar = match api_version {
            "v1" => ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
            "apps/v1" => ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
            _ => resource(&kind),
        };
        let ar = if kind == "Namespace" {
            ApiResource::erase::<Namespace>(&())
        } else {
            ar
        };
        let api: Api<DynamicObject> = if kind == "Namespace" {
            Api::all_with(self.rig.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.rig.client.clone(), ns, &ar)
        };
        let obj: DynamicObject = serde_json::from_value(body)?;
        for attempt in 0..5 {
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                Err(err) if attempt < 4 => {
                    progress(format!(
                        "  create {kind} {ns}/{} failed (retrying): {err}",
                        obj.name_any()
                    ));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(err) => {
                    return Err(err).context(format!("creating {kind} {ns}/{}", obj.name_any()));
                }
            }
        }
        Ok(())
    }

    /// Creates `n` objects made by `make` (namespace, body), BENCH_PARALLEL in flight; returns
    /// the seconds it took.
    async fn create_all(
        &self,
        what: &str,
        n: usize,
        make: impl Fn(usize) -> (String, Value),
    ) -> Result<f64> {
        let t = Timestamp::now();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = {
            let done = done.clone();
            let what = what.to_owned();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(15)).await;
                    progress(format!(
                        "  ... {} of {n} {what} created",
                        done.load(std::sync::atomic::Ordering::Relaxed)
                    ));
                }
            })
        };
        let result = for_all(n, self.cfg.parallel, |i| {
            let (ns, body) = make(i);
            let done = done.clone();
            async move {
                self.create(&ns, body).await?;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        })
        .await;
        ticker.abort();
        result?;
        let s = secs(t, Timestamp::now());
        progress(format!("  {n} {what} created in {s:.1}s"));
        Ok(s)
    }

    fn meta(&self, round: usize, i: usize, name: String) -> (String, Value) {
        let ns = self.cfg.namespace(round, i);
        (
            ns.clone(),
            json!({"name": name, "namespace": ns, "labels": Bench::label(round)}),
        )
    }

    /// Namespaces, the windows' target Deployments and the releases' Services.
    async fn stage(&self, round: usize) -> Result<()> {
        let cfg = &self.cfg;
        let mut names: Vec<String> = (0..cfg.namespaces)
            .map(|i| cfg.namespace(round, i))
            .collect();
        names.push(cfg.examples_namespace(round));
        for ns in &names {
            self.create(
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": Bench::label(round)}}),
            )
            .await?;
        }
        for i in 0..cfg.namespaces {
            let ns = cfg.namespace(round, i);
            let mut d = support::deployment("target", "app", ("BENCH", "1"));
            d["metadata"]["namespace"] = json!(ns);
            self.create(&ns, d).await?;
        }
        self.create_all("Services", cfg.counts[3], |i| {
            let (ns, mut meta) = self.meta(round, i, format!("rel-{i:04}"));
            meta["labels"] = json!({});
            (
                ns,
                json!({
                    "apiVersion": "v1", "kind": "Service", "metadata": meta,
                    "spec": {"selector": {"app": format!("rel-{i:04}")}, "ports": [{"port": 80}]}
                }),
            )
        })
        .await?;
        Ok(())
    }

    fn body(&self, kind: &str, round: usize, i: usize) -> (String, Value) {
        let prefix = match kind {
            "Runbook" => "rb",
            "RunbookRun" => "run",
            "MaintenanceWindow" => "mw",
            "BlueGreenRelease" => "rel",
            _ => "bp",
        };
        let (ns, meta) = self.meta(round, i, format!("{prefix}-{i:04}"));
        let spec = match kind {
            "Runbook" => json!({"steps": [{"name": "pause", "sleep": {"duration": "1s"}}]}),
            "RunbookRun" => json!({"runbookRef": {"name": format!("rb-{i:04}")}}),
            "MaintenanceWindow" => json!({
                "schedule": {"cron": format!("{} {} 1 1 *", i % 60, i % 24), "timeZone": "UTC", "duration": "1h"},
                "targets": [{"kind": "Deployment", "name": "target", "scaleTo": 0}]
            }),
            "BlueGreenRelease" => json!({
                "replicas": 1,
                "services": {"active": format!("rel-{i:04}")},
                "template": {
                    "metadata": {"labels": {"app": format!("rel-{i:04}")}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/bench-app:1"}]}
                }
            }),
            _ => json!({
                "schedule": {"cron": format!("{} {} 1 1 *", i % 60, i % 24), "timeZone": "UTC"},
                "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "backup", "image": "registry.invalid/backup:1"}]
                }}}}
            }),
        };
        (
            ns,
            json!({"apiVersion": "ops.runbook.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}),
        )
    }

    fn expected(&self, kind: &str, idx: usize) -> usize {
        self.cfg.counts[idx] + self.examples.get(kind).copied().unwrap_or(0)
    }

    fn state(&self, round: usize) -> (bool, String) {
        let seen = lock(&self.seen);
        let prefix = self.cfg.round_prefix(round);
        let mut all = true;
        let mut parts = Vec::new();
        for (idx, kind) in KINDS.iter().enumerate() {
            let (ok, n, _) = seen.count(kind, &prefix);
            let want = self.expected(kind, idx);
            all &= ok >= want && n >= want;
            parts.push(format!("{kind} {ok}/{want}"));
        }
        (all, parts.join(", "))
    }

    fn phases(&self, round: usize) -> String {
        let seen = lock(&self.seen);
        let prefix = self.cfg.round_prefix(round);
        KINDS
            .iter()
            .map(|kind| {
                let (_, _, phases) = seen.count(kind, &prefix);
                let p: Vec<String> = phases.iter().map(|(k, v)| format!("{k} {v}")).collect();
                format!("{kind}: {}", p.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Three unsettled objects of each kind that has any, with their Ready conditions.
    fn unsettled_examples(&self, round: usize) -> String {
        let seen = lock(&self.seen);
        let prefix = self.cfg.round_prefix(round);
        KINDS
            .iter()
            .flat_map(|kind| seen.unsettled(kind, &prefix, 3))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn sleep(&self, what: &str, seconds: u64, op: &mut Operator) -> Result<()> {
        let end = Timestamp::now() + jiff::SignedDuration::from_secs(seconds as i64);
        let mut tick = support::Ticker::new();
        while Timestamp::now() < end {
            tokio::time::sleep(Duration::from_millis(250)).await;
            op.check_alive()?;
            if tick.due() {
                progress(format!(
                    "  ... {what}: {:.0}s to go",
                    secs(Timestamp::now(), end)
                ));
            }
        }
        Ok(())
    }

    async fn round(&mut self, round: usize) -> Result<Figures> {
        let cfg_rounds = self.cfg.rounds;
        progress(format!(
            "round {round}/{cfg_rounds}: namespaces, target Deployments, Services"
        ));
        self.stage(round).await?;

        let mut op = self
            .launcher
            .spawn(&format!("scale-r{round}"), self.cfg.port, &[])?;
        self.rig.operator_pid = Some(op.pid);
        let ready = op
            .wait_readyz(&self.rig.http, "ok", self.rig.timeout)
            .await?;
        progress(format!(
            "round {round}: operator (pid {}) ready {ready:.1}s after spawn; load phase begins",
            op.pid
        ));
        let rss = RssSamples::start(Some(op.pid), Timestamp::now);
        let before = self.rig.snapshot().await?;
        let cpu0 = self.rig.cpu_seconds();
        let t_first = Timestamp::now();

        let ex_ns = self.cfg.examples_namespace(round);
        let out = Command::new("kubectl")
            .args(["apply", "--server-side", "-n", &ex_ns, "-f"])
            .arg(&self.cfg.examples)
            .output()
            .context("running kubectl apply -f examples/")?;
        if !out.status.success() {
            bail!(
                "kubectl apply -f examples/ failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut create = 0.0;
        for (idx, kind) in KINDS.iter().enumerate() {
            let n = self.cfg.counts[idx];
            create += self
                .create_all(&format!("{kind} objects"), n, |i| self.body(kind, round, i))
                .await?;
        }
        let t_last = Timestamp::now();
        let total: usize = (0..5).map(|i| self.expected(KINDS[i], i)).sum();
        progress(format!(
            "round {round}: {total} objects created ({create:.1}s of creates); waiting until settled"
        ));
        let deadline =
            Timestamp::now() + jiff::SignedDuration::from_secs(self.rig.timeout.as_secs() as i64);
        let mut tick = support::Ticker::new();
        loop {
            let (done, state) = self.state(round);
            if done {
                break;
            }
            op.check_alive()?;
            if Timestamp::now() > deadline {
                bail!(
                    "round {round}: not settled after {:?}: {state}; {}; unsettled, for example: {}",
                    self.rig.timeout,
                    self.phases(round),
                    self.unsettled_examples(round)
                );
            }
            if tick.due() {
                progress(format!("  ... settled: {state}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let t_settled = Timestamp::now();
        let rss_settled = op.mib("VmRSS");
        progress(format!(
            "round {round}: all {total} settled {:.1}s after the first create; VmRSS {} MiB",
            secs(t_first, t_settled),
            rss_settled.map_or("?".into(), num)
        ));
        let far =
            Timestamp::now() + jiff::SignedDuration::from_secs(self.rig.timeout.as_secs() as i64);
        if !self
            .rig
            .wait_quiet(
                |s| s.op_sum("write ") + s.op_sum("reconcile "),
                || Timestamp::now() > far,
            )
            .await?
        {
            progress("  (the operator never went quiet; measuring anyway)");
        }
        let t_quiet = Timestamp::now();
        let cpu_quiet_start = self.rig.cpu_seconds();
        let after_load = self.rig.snapshot().await?;
        let load = after_load.since(&before);
        self.rig.write_out(
            &format!("api-delta-load-r{round}.tsv"),
            &load.tsv(&RAW_COUNTERS),
        );
        self.sleep("settling", self.cfg.settle, &mut op).await?;

        let q0 = self.rig.snapshot().await?;
        let c0 = self.rig.cpu_seconds();
        progress(format!(
            "round {round}: quiet interval of {}s",
            self.cfg.quiet
        ));
        self.sleep("quiet interval", self.cfg.quiet, &mut op)
            .await?;
        let q1 = self.rig.snapshot().await?;
        let c1 = self.rig.cpu_seconds();
        let quiet = q1.since(&q0);
        self.rig.write_out(
            &format!("api-delta-quiet-r{round}.tsv"),
            &quiet.tsv(&RAW_COUNTERS),
        );
        let figures = Figures {
            objects: total,
            create,
            settle_first: secs(t_first, t_settled),
            settle_last: secs(t_last, t_settled),
            rss_settled,
            rss_peak: rss.peak(t_first, t_quiet),
            hwm: op.mib("VmHWM"),
            rss_end: op.mib("VmRSS"),
            cpu_load: cpu_quiet_start.zip(cpu0).map(|(a, b)| a - b),
            cpu_quiet: c1.zip(c0).map(|(a, b)| a - b),
            writes_quiet: quiet.op_sum("write "),
            flow_writes_quiet: quiet.op_writes(),
            crd_writes_quiet: quiet.api_sum(|verb, what| {
                support::is_write(verb) && what.starts_with("ops.runbook.dev/")
            }),
            reconciles_quiet: quiet.op_sum("reconcile "),
            reconciles_load: load.op_sum("reconcile "),
            writes_load: load.op_sum("write "),
            phases: self.phases(round),
        };
        progress(format!(
            "round {round}: settle {:.1}s, RSS {} MiB (peak {}), CPU load {} s, quiet: {} writes, {} reconciles, {} CPU s",
            figures.settle_first,
            figures.rss_settled.map_or("?".into(), num),
            figures.rss_peak.map_or("?".into(), num),
            figures.cpu_load.map_or("?".into(), num),
            num(figures.writes_quiet),
            num(figures.reconciles_quiet),
            figures.cpu_quiet.map_or("?".into(), num),
        ));

        // Delete while the operator runs: it removes its RunbookRun finalizers.
        self.delete_round(round, &mut op).await?;
        op.terminate(Duration::from_secs(10)).await;
        Ok(figures)
    }

    async fn delete_round(&self, round: usize, op: &mut Operator) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.rig.client.clone());
        let lp = ListParams::default().labels(&format!("{NS_LABEL}={round}"));
        progress(format!("round {round}: deleting its namespaces"));
        for ns in namespaces.list(&lp).await? {
            let _ = namespaces
                .delete(&ns.name_any(), &DeleteParams::default())
                .await;
        }
        let deadline =
            Timestamp::now() + jiff::SignedDuration::from_secs(self.rig.timeout.as_secs() as i64);
        let mut tick = support::Ticker::new();
        loop {
            let left = namespaces.list(&lp).await?.items.len();
            if left == 0 {
                return Ok(());
            }
            op.check_alive()?;
            if Timestamp::now() > deadline {
                bail!(
                    "round {round}: {left} namespaces still there after {:?}",
                    self.rig.timeout
                );
            }
            if tick.due() {
                progress(format!(
                    "  ... {left} namespaces of round {round} still terminating"
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The username a client with `kubeconfig` authenticates as, asked with kube-rs (so its
/// handling of the kubeconfig's `as:` is what is checked).
async fn whoami(kubeconfig: &PathBuf) -> Result<String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    whoami_client(&Client::try_from(config)?).await
}

#[tokio::main]
async fn main() {
    support::main(
        "benches/scale.rs: run it with hack/bench-scale.sh (it needs a cluster and the operator binary)",
        bench,
    )
    .await;
}

fn stat(table: &mut Table, label: &str, values: Vec<Option<f64>>, unit: &'static str, note: &str) {
    let got: Vec<f64> = values.iter().flatten().copied().collect();
    let median = support::percentile(&support::sorted(got), 0.5);
    let each: Vec<String> = values.iter().map(|v| v.map_or("-".into(), num)).collect();
    let note = if note.is_empty() {
        format!("runs: {}", each.join(", "))
    } else {
        format!("runs: {}; {note}", each.join(", "))
    };
    table.value(label, median, unit, note);
}

async fn bench(operator_url: String) -> Result<bool> {
    let cfg = Config::from_env(&operator_url)?;
    let settings = Settings::from_env(operator_url)?;
    let rig = Rig::connect(settings, FLOW_PREFIX).await?;
    let launcher = Launcher::from_env()?;
    let examples = example_counts(&cfg.examples)?;
    let identity = match &launcher.kubeconfig {
        Some(kc) => whoami(kc).await?,
        None => whoami_client(&rig.client).await?,
    };
    if let Some(want) = &cfg.identity
        && *want != identity
    {
        bail!("the operator's kubeconfig authenticates (kube-rs) as {identity:?}, not {want:?}");
    }
    progress(format!(
        "scale: {} rounds; per round {:?} of {:?} in {} namespaces plus the examples ({examples:?}); operator runs as {identity}",
        cfg.rounds, cfg.counts, KINDS, cfg.namespaces
    ));
    let mut bench = Bench {
        cfg,
        rig,
        launcher,
        seen: Arc::default(),
        examples,
    };
    bench.watch();
    let mut all = Vec::new();
    for round in 1..=bench.cfg.rounds {
        all.push(bench.round(round).await?);
    }

    let mut table = Table::default();
    let cfg = &bench.cfg;
    table.heading(format!(
        "-- per round: examples/ plus {} Runbooks, {} MaintenanceWindows, {} BackupPolicies, {} BlueGreenReleases, {} RunbookRuns in {} namespaces; operator as {identity}",
        cfg.counts[0], cfg.counts[1], cfg.counts[2], cfg.counts[3], cfg.counts[4], cfg.namespaces
    ));
    let col = |f: fn(&Figures) -> Option<f64>| all.iter().map(f).collect::<Vec<_>>();
    stat(
        &mut table,
        "objects of our five kinds",
        col(|f| Some(f.objects as f64)),
        "",
        "",
    );
    stat(
        &mut table,
        "creating them",
        col(|f| Some(f.create)),
        "s",
        &format!("{} creates in flight", cfg.parallel),
    );
    stat(
        &mut table,
        "first create -> all settled",
        col(|f| Some(f.settle_first)),
        "s",
        "observedGeneration == generation; runs done, releases Healthy",
    );
    stat(
        &mut table,
        "last create -> all settled",
        col(|f| Some(f.settle_last)),
        "s",
        "",
    );
    table.heading("-- operator memory");
    stat(
        &mut table,
        "VmRSS when settled",
        col(|f| f.rss_settled),
        "MiB",
        "",
    );
    stat(
        &mut table,
        "VmRSS peak in the load phase (100 ms samples)",
        col(|f| f.rss_peak),
        "MiB",
        "",
    );
    stat(
        &mut table,
        "VmHWM (high-water mark since start)",
        col(|f| f.hwm),
        "MiB",
        "",
    );
    stat(
        &mut table,
        "VmRSS after the quiet interval",
        col(|f| f.rss_end),
        "MiB",
        "",
    );
    table.heading("-- operator CPU (utime + stime)");
    stat(
        &mut table,
        "load phase: ready -> settled and quiet",
        col(|f| f.cpu_load),
        "s",
        "",
    );
    stat(
        &mut table,
        &format!("quiet interval ({} s)", cfg.quiet),
        col(|f| f.cpu_quiet),
        "s",
        "idle cost",
    );
    stat(
        &mut table,
        "  per minute",
        all.iter()
            .map(|f| f.cpu_quiet.map(|c| c * 60.0 / cfg.quiet as f64))
            .collect(),
        "s",
        "",
    );
    table.heading(format!(
        "-- quiet interval ({} s, everything settled): target 0 writes",
        cfg.quiet
    ));
    stat(
        &mut table,
        "operator writes (runbook_operator_api_writes_total)",
        col(|f| Some(f.writes_quiet)),
        "writes",
        "",
    );
    stat(
        &mut table,
        "operator writes of any resource (FlowSchemas)",
        col(|f| Some(f.flow_writes_quiet)),
        "writes",
        "Events included",
    );
    stat(
        &mut table,
        "all clients' writes to ops.runbook.dev",
        col(|f| Some(f.crd_writes_quiet)),
        "writes",
        "apiserver_request_total",
    );
    stat(
        &mut table,
        "operator reconciles (runbook_operator_reconciles_total)",
        col(|f| Some(f.reconciles_quiet)),
        "",
        "",
    );
    table.heading("-- load phase, for scale");
    stat(
        &mut table,
        "operator writes",
        col(|f| Some(f.writes_load)),
        "writes",
        "",
    );
    stat(
        &mut table,
        "operator reconciles",
        col(|f| Some(f.reconciles_load)),
        "",
        "",
    );
    let watch_errors = support::watch_errors();
    table.value("watch errors (retried)", Some(watch_errors as f64), "", "");
    println!();
    table.print();
    println!();
    for (i, f) in all.iter().enumerate() {
        println!("round {} phases: {}", i + 1, f.phases);
    }
    Ok(true)
}

/// The user `client` authenticates as, by SelfSubjectReview.
async fn whoami_client(client: &Client) -> Result<String> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .context("SelfSubjectReview")?;
    Ok(review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}

//! Benchmark of BackupPolicies at scale: "500 policies due every minute: p50/p99 from scheduled
//! instant to Job created, operator RSS, API writes between due times (target: zero)."
//!
//! Run it through `hack/bench-backups.sh`, which starts a cluster (`bench` unless
//! BENCH_CLUSTER) and the operator (watching all namespaces) and passes them in through the
//! environment. Without `BENCH_OPERATOR_URL` this binary only prints how to run it and exits
//! 0, so a plain `cargo bench` never touches whatever cluster the current kubeconfig points at.
//!
//! Prints figures, not verdicts: it exits non-zero only when something broke (the operator
//! died, a wait timed out, a due time passed without its backup Job, or a backup was never
//! recorded as finished; the figures are printed first). Progress goes to stderr (a line at
//! least every ~15 s), the summary table to stdout.
//!
//! # The stage
//!
//! * BENCH_NAMESPACES (10) namespaces `<BENCH_NAMESPACE>-NN`, and BENCH_POLICIES (500)
//!   BackupPolicies `bp-NNNN` spread round-robin over them, all with cron `* * * * *` (UTC, no
//!   startingDeadline, no rpo) and the same trivial jobTemplate: `backoffLimit: 0`,
//!   `restartPolicy: Never`, one container (a made-up image: kwok completes the pod at once).
//!   Default retention (3 successful, 1 failed) unless BENCH_SUCCESSFUL_JOBS; no prune; a verify
//!   Job of the same kind only with BENCH_VERIFY=1.
//! * The policies are created (32 requests in flight) right after a whole minute, so all exist
//!   well before the next one, T1 = the first due time (a policy runs nothing at creation).
//!   Then BENCH_DUE_TIMES (3) due times T1, T2 = T1 + 60 s, ... are measured; the one after
//!   the last (Tn + 60 s) ends the measurement and is not.
//!
//! # Definitions
//!
//! All times are wall-clock instants of this host (the API server, the operator and this
//! process share it): a due time T is the whole minute itself; a change is "seen" at the moment
//! the watch event showing it reaches this process (client-side receipt, so the watch delivery
//! is included; Jobs' creationTimestamp has only whole seconds).
//!
//! * **T -> Job created**, per policy and due time: the first event of the backup Job for T
//!   (label `ops.runbook.dev/backup-stage=backup`, annotation `ops.runbook.dev/scheduled-time`
//!   = T; the name `<policy>-<unix minutes of T>` when the annotation is missing) - T.
//! * **T -> recorded Succeeded**: the first policy event whose `status.history` holds the
//!   record of T with `result: Succeeded` - T. **T -> recorded done**: the first with that
//!   record at `stage: Done` (after the verify Job, with BENCH_VERIFY=1).
//! * **Job finished -> recorded**: from the first Job event with condition Complete (or
//!   Failed) True to the first policy event with the record's result Succeeded (or Failed):
//!   the operator's reaction, without the cluster's job controller and kwok.
//! * **delayed**: records of T seen with `result: Pending` (a due time while the policy's
//!   previous backup still ran).
//! * **settled**: every policy's `status.observedGeneration` equals its generation, it has a
//!   phase, and its `status.nextScheduleTime` is T1.
//! * **quiet**: the operator's reconcile and write counters stand still for 3 s.
//! * **writes for a due time T**: the operator's writes from T - 2 s until the records of T
//!   were all done and the operator quiet (or T + 60 s - 10 s, whichever came first), by kind:
//!   writes to `ops.runbook.dev` (status), Job creates, Job deletes (retention), other writes,
//!   Events. Also shown per backup (divided by BENCH_POLICIES).
//! * **API writes between due times**: the operator's writes of any resource (a) from settled
//!   and quiet before T1 until T1 - 2 s, and (b) after each due time T, from the moment all
//!   records of T were done and the operator quiet until T + 60 s - 2 s (no interval when the
//!   records were not all done by T + 50 s). They are counted exactly with API Priority and
//!   Fairness: the script runs the operator impersonating the user
//!   `runbook-bench-backups-operator` and installs FlowSchemas `runbook-bench-bp-*` (priority
//!   level `exempt`) that sort its requests by kind;
//!   `apiserver_flowcontrol_dispatched_requests_total` counts them. Also shown: the operator's
//!   own `runbook_operator_api_writes_total`, and all clients' writes to `ops.runbook.dev`
//!   (`apiserver_request_total`). Target: 0.
//! * **operator RSS**: VmRSS of the operator process (/proc/PID/status), sampled every 100 ms;
//!   "peak" is the highest sample in the interval, VmHWM the kernel's high-water mark since
//!   the operator started.
//! * percentiles: nearest rank over the samples of this one run.
//!
//! Environment (defaults in parentheses; hack/bench-backups.sh sets them):
//! * BENCH_OPERATOR_URL: http://127.0.0.1:PORT of the operator's probe server (required)
//! * BENCH_OPERATOR_PID: the operator's pid, for RSS, CPU time and liveness
//! * BENCH_NAMESPACE (bench-backups): namespace prefix
//! * BENCH_POLICIES (500), BENCH_NAMESPACES (10), BENCH_DUE_TIMES (3)
//! * BENCH_VERIFY (0): 1 adds a verify Job to every policy
//! * BENCH_SUCCESSFUL_JOBS (unset: the policy's default, 3): spec.retention.successfulJobs
//! * BENCH_TIMEOUT (600): seconds for any one wait
//! * BENCH_OUT: directory for raw data (per-backup times, request deltas)

mod support;

use runbook_operator::well_known::{POLICY_LABEL, STAGE_LABEL};
use support::figures::{Table, num};

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use runbook_operator::backup_policy::BackupPolicy;
use runbook_operator::well_known::SCHEDULED_TIME_ANNOTATION as SCHEDULED_ANNOTATION;
use serde_json::{Value, json};
use support::pace::{RssSamples, plus, secs, until};
use support::{
    Change, Counters, Rig, Settings, Snapshot, Ticker, counts, env_positive, env_text, for_all,
    is_write, lock, progress, spawn_watch, spawn_watch_changes,
};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-backups";
/// Field manager of everything this binary writes.
const MANAGER: &str = "bench-backups";
/// Prefix of the FlowSchemas that count the operator's requests (see hack/bench-backups.sh).
const FLOW_PREFIX: &str = "runbook-bench-bp-";
/// Label on the bench's namespaces and policies.
const BENCH_LABEL: &str = "bench.runbook.dev/backups";
/// Name of the operator's BackupPolicy controller in its metrics.
const CONTROLLER: &str = "backuppolicy";
/// Requests this binary has in flight when it creates the policies.
const PARALLEL: usize = 32;
/// The policies are created only when at most this many seconds of the minute have passed
/// (otherwise the bench waits for the next whole minute), so they all exist well before T1.
const CREATE_BY_SECOND: i64 = 5;
/// The counters the raw request deltas (`api-delta-*.tsv`) hold, in that order.
const RAW_COUNTERS: [Counters; 4] = [
    Counters::Api,
    Counters::Refused,
    Counters::Flows,
    Counters::Op,
];

// ---------------------------------------------------------------------------
// clock, configuration
// ---------------------------------------------------------------------------

/// The first whole minute after `t` (`t` itself when it is one).
fn minute_at_or_after(t: Timestamp) -> Result<Timestamp> {
    let minute = (t.as_second() + 59).div_euclid(60) * 60;
    Timestamp::from_second(minute).map_err(|e| anyhow!("computing a whole minute: {e}"))
}

/// This bench's knobs (the ones all benches read are `support::Settings`).
struct Config {
    prefix: String,
    policies: usize,
    namespaces: usize,
    due_times: usize,
    verify: bool,
    successful_jobs: Option<u64>,
}

impl Config {
    /// Reads the environment (before `Settings::from_env`, the order the errors come in).
    fn from_env() -> Result<Self> {
        let policies = env_positive("BENCH_POLICIES", 500)? as usize;
        let namespaces = env_positive("BENCH_NAMESPACES", 10)? as usize;
        if namespaces > policies || namespaces > 100 {
            bail!("BENCH_NAMESPACES ({namespaces}) must be at most BENCH_POLICIES and 100");
        }
        if policies > 9999 {
            bail!("BENCH_POLICIES ({policies}) must be at most 9999");
        }
        let verify = match env_text("BENCH_VERIFY").as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => bail!("BENCH_VERIFY must be 0 or 1 (got {other:?})"),
        };
        let successful_jobs = match env_text("BENCH_SUCCESSFUL_JOBS") {
            None => None,
            Some(_) => Some(env_positive("BENCH_SUCCESSFUL_JOBS", 3)?),
        };
        Ok(Self {
            prefix: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-backups".into()),
            policies,
            namespaces,
            due_times: env_positive("BENCH_DUE_TIMES", 3)? as usize,
            verify,
            successful_jobs,
        })
    }

    fn namespace_at(&self, n: usize) -> String {
        format!("{}-{:02}", self.prefix, n)
    }

    /// "namespace/name" of policy `i`.
    fn key(&self, i: usize) -> String {
        key(&self.namespace_at(i % self.namespaces), &policy_name(i))
    }
}

fn policy_name(i: usize) -> String {
    format!("bp-{i:04}")
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn object_key<K: Resource>(obj: &K) -> String {
    key(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

/// A trivial Job template: one container, no retries; kwok completes its pod at once.
fn job_template(container: &str) -> Value {
    json!({
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": container,
                        "image": format!("registry.invalid/bench-{container}:1")
                    }]
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------
// what the watches saw
// ---------------------------------------------------------------------------

/// One Job's history.
struct JobSeen {
    /// The first event of the Job.
    created: Timestamp,
    /// The first event with condition Complete or Failed True, and whether it failed.
    finished: Option<(Timestamp, bool)>,
    /// The moment the watch reported it deleted.
    deleted: Option<Timestamp>,
}

/// One history record of a policy (one scheduled time), as first seen in each state.
#[derive(Default)]
struct RecordSeen {
    pending: Option<Timestamp>,
    running: Option<Timestamp>,
    succeeded: Option<Timestamp>,
    failed: Option<Timestamp>,
    /// First event with stage Done.
    done: Option<Timestamp>,
    /// The last event's result and stage.
    last: Option<(String, String)>,
    job: Option<String>,
}

/// One policy's status history.
#[derive(Default)]
struct PolicySeen {
    generation: Option<i64>,
    observed_generation: Option<i64>,
    phase: Option<String>,
    next: Option<Timestamp>,
    /// By the scheduled time, unix seconds.
    records: HashMap<i64, RecordSeen>,
}

impl PolicySeen {
    fn settled(&self, t1: Timestamp) -> bool {
        self.phase.is_some()
            && self.observed_generation.is_some()
            && self.observed_generation == self.generation
            && self.next == Some(t1)
    }

    fn done(&self, t: Timestamp) -> bool {
        self.records
            .get(&t.as_second())
            .is_some_and(|r| r.done.is_some())
    }
}

#[derive(Default)]
struct Seen {
    /// "PREFIX-": the bench's namespaces start with it.
    ns_prefix: String,
    /// By "namespace/name" of the Job.
    jobs: HashMap<String, JobSeen>,
    /// Backup Jobs by ("namespace/policy", scheduled time in unix seconds): "namespace/job".
    backups: HashMap<(String, i64), String>,
    /// Jobs other than scheduled backup Jobs (verify, prune, on-demand), by stage.
    other_jobs: HashMap<String, usize>,
    /// By "namespace/name".
    policies: HashMap<String, PolicySeen>,
}

impl Seen {
    /// The backup Job of `policy` for `t`.
    fn backup_job(&self, policy: &str, t: Timestamp) -> Option<&JobSeen> {
        self.backups
            .get(&(policy.to_owned(), t.as_second()))
            .and_then(|j| self.jobs.get(j))
    }

    fn record(&self, policy: &str, t: Timestamp) -> Option<&RecordSeen> {
        self.policies
            .get(policy)
            .and_then(|p| p.records.get(&t.as_second()))
    }
}

/// What the watches saw, shared with their tasks.
type Shared = Arc<Mutex<Seen>>;

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// The scheduled time of a backup Job: its annotation, else the unix minutes its name ends in.
fn scheduled_time(job: &Job) -> Option<Timestamp> {
    if let Some(t) = job
        .annotations()
        .get(SCHEDULED_ANNOTATION)
        .and_then(|t| parse_time(t))
    {
        return Some(t);
    }
    let minutes: i64 = job.name_any().rsplit_once('-')?.1.parse().ok()?;
    Timestamp::from_second(minutes * 60).ok()
}

fn record_job(seen: &mut Seen, t: Timestamp, change: Change<Job>) {
    let (job, deleted) = match change {
        Change::Applied(j) => (j, false),
        Change::Deleted(j) => (j, true),
    };
    if !job
        .namespace()
        .is_some_and(|ns| ns.starts_with(&seen.ns_prefix))
    {
        return;
    }
    let job_key = object_key(&job);
    if !seen.jobs.contains_key(&job_key) {
        let labels = job.labels();
        let stage = labels.get(STAGE_LABEL).cloned().unwrap_or_default();
        let policy = labels.get(POLICY_LABEL).cloned().unwrap_or_default();
        match scheduled_time(&job) {
            Some(at) if stage == "backup" => {
                let policy = key(&job.namespace().unwrap_or_default(), &policy);
                seen.backups
                    .insert((policy, at.as_second()), job_key.clone());
            }
            _ => *seen.other_jobs.entry(stage).or_default() += 1,
        }
        seen.jobs.insert(
            job_key.clone(),
            JobSeen {
                created: t,
                finished: None,
                deleted: None,
            },
        );
    }
    let entry = seen.jobs.get_mut(&job_key).expect("inserted above");
    if deleted {
        entry.deleted.get_or_insert(t);
        return;
    }
    if entry.finished.is_none() {
        let conditions = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for c in conditions {
            if c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed") {
                entry.finished = Some((t, c.type_ == "Failed"));
                break;
            }
        }
    }
}

fn record_policy(seen: &mut Seen, t: Timestamp, bp: DynamicObject) {
    let entry = seen.policies.entry(object_key(&bp)).or_default();
    let status = bp.data.get("status");
    let text = |v: Option<&Value>, ptr: &str| {
        v.and_then(|s| s.pointer(ptr))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    entry.generation = bp.metadata.generation;
    entry.observed_generation = status
        .and_then(|s| s.get("observedGeneration"))
        .and_then(Value::as_i64);
    entry.phase = text(status, "/phase");
    entry.next = text(status, "/nextScheduleTime").and_then(|t| parse_time(&t));
    let history = status
        .and_then(|s| s.get("history"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for record in history {
        let Some(at) = text(Some(record), "/scheduledTime").and_then(|t| parse_time(&t)) else {
            continue;
        };
        let result = text(Some(record), "/result").unwrap_or_default();
        let stage = text(Some(record), "/stage").unwrap_or_default();
        let r = entry.records.entry(at.as_second()).or_default();
        match result.as_str() {
            "Pending" => {
                r.pending.get_or_insert(t);
            }
            "Running" => {
                r.running.get_or_insert(t);
            }
            "Succeeded" => {
                r.succeeded.get_or_insert(t);
            }
            "Failed" => {
                r.failed.get_or_insert(t);
            }
            _ => {}
        }
        if stage == "Done" {
            r.done.get_or_insert(t);
        }
        r.job = text(Some(record), "/job");
        r.last = Some((result, stage));
    }
}

// ---------------------------------------------------------------------------
// figures
// ---------------------------------------------------------------------------

/// Seconds to milliseconds.
fn ms(seconds: Vec<f64>) -> Vec<f64> {
    seconds.into_iter().map(|s| s * 1000.0).collect()
}

/// All the operator's writes, Events included (FlowSchemas; Job creates and deletes have
/// FlowSchemas of their own in this bench).
fn writes(d: &Snapshot) -> f64 {
    d.op_writes() + d.flow("job-create") + d.flow("job-delete")
}

/// "N ops.runbook.dev, N Job creates, N Job deletes, N other, N Events" (FlowSchemas).
fn write_kinds(d: &Snapshot) -> String {
    format!(
        "{} ops.runbook.dev, {} Job creates, {} Job deletes, {} other, {} Events",
        num(d.flow("crd-write")),
        num(d.flow("job-create")),
        num(d.flow("job-delete")),
        num(d.flow("write")),
        num(d.flow("events"))
    )
}

/// "N refused (CODE VERB ...)": the writes to Jobs and policies the API server answered with
/// an error (all clients; only the operator writes Jobs and, while measuring, policies).
fn refused_writes(d: &Snapshot) -> String {
    let refused: Vec<(&String, &f64)> = d
        .refused
        .iter()
        .filter(|(k, _)| {
            let mut parts = k.split(' ');
            let (_code, verb, what) = (parts.next(), parts.next(), parts.next());
            verb.is_some_and(is_write)
                && what.is_some_and(|w| {
                    w.starts_with("batch/jobs") || w.starts_with("ops.runbook.dev/")
                })
        })
        .collect();
    if refused.is_empty() {
        return "none refused".into();
    }
    let total: f64 = refused.iter().map(|(_, v)| **v).sum();
    let list: Vec<String> = refused
        .iter()
        .map(|(k, v)| format!("{k}: {}", num(**v)))
        .collect();
    format!("{} refused ({})", num(total), list.join(", "))
}

/// The operator's own write counters of the BackupPolicy controller: "status 500, event 1000".
fn metric_kinds(d: &Snapshot) -> String {
    let prefix = format!("write {CONTROLLER}/");
    let parts: Vec<String> =
        d.op.iter()
            .filter_map(|(k, v)| Some(format!("{} {}", k.strip_prefix(&prefix)?, num(*v))))
            .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

// ---------------------------------------------------------------------------
// the benchmark
// ---------------------------------------------------------------------------

/// The benchmark's state.
struct Bench {
    /// The operator's memory over time.
    rss: RssSamples<Timestamp>,
    cfg: Config,
    /// The cluster and the operator.
    rig: Rig,
    seen: Shared,
    policies: ApiResource,
}

/// Writes counted over one interval, for the table.
struct Interval {
    label: String,
    /// Raw data file name part.
    file: String,
    seconds: f64,
    delta: Snapshot,
}

/// What one due time cost.
struct DueTime {
    t: Timestamp,
    /// From T - 2 s until done and quiet (or the deadline).
    delta: Snapshot,
    cpu: Option<f64>,
    /// Seconds from T until all records were done (None: not by the deadline).
    all_done: Option<f64>,
    rss_peak: Option<f64>,
    jobs_deleted: usize,
}

impl Bench {
    fn policy_api(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.rig.client.clone(), ns, &self.policies)
    }

    /// Waits until the operator's reconcile and write counters stand still for 3 s, or
    /// `deadline` passes; returns whether it got quiet.
    async fn wait_quiet(&self, deadline: Timestamp) -> Result<bool> {
        self.rig
            .wait_quiet(
                |snap| snap.op_sum("") + writes(snap),
                || until(deadline) <= 0.0,
            )
            .await
    }

    /// Namespaces and watches.
    async fn setup(&self) -> Result<()> {
        let cfg = &self.cfg;
        let pp = PatchParams::apply(MANAGER).force();
        progress(format!(
            "creating {} namespaces {}-NN",
            cfg.namespaces, cfg.prefix
        ));
        let namespaces: Api<Namespace> = Api::all(self.rig.client.clone());
        for_all(cfg.namespaces, 8, |i| {
            let (namespaces, pp) = (namespaces.clone(), pp.clone());
            let name = cfg.namespace_at(i);
            async move {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {BENCH_LABEL: "1"}}});
                namespaces
                    .patch(&name, &pp, &Patch::Apply(&ns))
                    .await
                    .with_context(|| format!("creating namespace {name}"))?;
                Ok(())
            }
        })
        .await?;
        lock(&self.seen).ns_prefix = format!("{}-", cfg.prefix);
        spawn_watch_changes(
            Api::<Job>::all(self.rig.client.clone()),
            watcher::Config::default().labels(POLICY_LABEL),
            self.seen.clone(),
            record_job,
        );
        spawn_watch(
            Api::<DynamicObject>::all_with(self.rig.client.clone(), &self.policies),
            watcher::Config::default().labels(BENCH_LABEL),
            self.seen.clone(),
            record_policy,
        );
        Ok(())
    }

    /// Creates the policies; returns seconds taken.
    async fn create_policies(&self) -> Result<f64> {
        let cfg = &self.cfg;
        progress(format!(
            "creating {} BackupPolicies (cron * * * * *{}{})",
            cfg.policies,
            if cfg.verify { ", with verify" } else { "" },
            cfg.successful_jobs
                .map_or(String::new(), |n| format!(", successfulJobs {n}"))
        ));
        let start = Instant::now();
        for_all(cfg.policies, PARALLEL, |i| {
            let ns = cfg.namespace_at(i % cfg.namespaces);
            let name = policy_name(i);
            let api = self.policy_api(&ns);
            let mut spec = json!({
                "schedule": {"cron": "* * * * *"},
                "jobTemplate": job_template("backup"),
            });
            if cfg.verify {
                spec["verify"] = json!({"jobTemplate": job_template("verify")});
            }
            if let Some(n) = cfg.successful_jobs {
                spec["retention"] = json!({"successfulJobs": n});
            }
            let body = json!({
                "apiVersion": "ops.runbook.dev/v1alpha1",
                "kind": "BackupPolicy",
                "metadata": {"name": name, "namespace": ns, "labels": {BENCH_LABEL: "1"}},
                "spec": spec
            });
            async move {
                let obj: DynamicObject = serde_json::from_value(body)?;
                api.create(&PostParams::default(), &obj)
                    .await
                    .with_context(|| format!("creating BackupPolicy {ns}/{name}"))?;
                Ok(())
            }
        })
        .await?;
        let took = start.elapsed().as_secs_f64();
        progress(format!("  {} policies created in {took:.1}s", cfg.policies));
        Ok(took)
    }

    /// How many policies have their record of `t` done.
    fn done_count(&self, t: Timestamp) -> usize {
        let seen = lock(&self.seen);
        (0..self.cfg.policies)
            .filter(|&i| {
                seen.policies
                    .get(&self.cfg.key(i))
                    .is_some_and(|p| p.done(t))
            })
            .count()
    }

    /// "N Jobs, N Succeeded, N Pending" for the records of `t`, for progress lines.
    fn due_state(&self, t: Timestamp) -> String {
        let seen = lock(&self.seen);
        let mut jobs = 0;
        let mut finished = 0;
        for i in 0..self.cfg.policies {
            if let Some(j) = seen.backup_job(&self.cfg.key(i), t) {
                jobs += 1;
                if j.finished.is_some() {
                    finished += 1;
                }
            }
        }
        let results = counts((0..self.cfg.policies).map(|i| {
            seen.record(&self.cfg.key(i), t)
                .and_then(|r| r.last.as_ref())
                .map_or("(no record)".to_owned(), |(r, s)| format!("{r}/{s}"))
        }));
        format!("{jobs} Jobs seen, {finished} finished; records: {results}")
    }

    fn phases(&self) -> String {
        let seen = lock(&self.seen);
        counts(seen.policies.values().map(|p| {
            p.phase
                .clone()
                .unwrap_or_else(|| "(no phase yet)".to_owned())
        }))
    }
}

#[tokio::main]
async fn main() {
    support::main(
        "benches/backups.rs needs a cluster and a running operator: run hack/bench-backups.sh (or make bench)",
        bench,
    )
    .await;
}

/// Ok(false): the figures are printed, but some due time had no backup Job, or some backup
/// was never recorded as done.
async fn bench(operator_url: String) -> Result<bool> {
    let cfg = Config::from_env()?;
    let rig = Rig::connect(Settings::from_env(operator_url)?, FLOW_PREFIX).await?;
    progress(format!(
        "{} BackupPolicies in {} namespaces, due every minute; measuring {} due times",
        cfg.policies, cfg.namespaces, cfg.due_times
    ));
    let rss = RssSamples::start(rig.operator_pid, Timestamp::now);
    let bench = Bench {
        rss,
        cfg,
        rig,
        seen: Arc::default(),
        policies: ApiResource::erase::<BackupPolicy>(&()),
    };
    bench.rig.operator_alive()?;
    bench.setup().await?;
    let cfg = &bench.cfg;
    let n = cfg.policies;
    let mut table = Table::default();
    let mut ok = true;

    // -----------------------------------------------------------------------
    // create right after a whole minute, settle
    // -----------------------------------------------------------------------
    bench.wait_quiet(plus(Timestamp::now(), 60.0)).await?;
    let rss_before = bench.rig.proc_mib("VmRSS");
    let now = Timestamp::now();
    if now.as_second().rem_euclid(60) > CREATE_BY_SECOND {
        let start = plus(minute_at_or_after(now)?, 1.0);
        progress(format!(
            "waiting {:.0}s for the next whole minute, to create the policies right after it",
            until(start)
        ));
        bench
            .rig
            .sleep_until("waiting for the next whole minute", start)
            .await?;
    }
    let before_create = bench.rig.snapshot().await?;
    let cpu_before_create = bench.rig.cpu_seconds();
    let t_create = Timestamp::now();
    let t1 = minute_at_or_after(plus(t_create, 1.0))?;
    let create_secs = bench.create_policies().await?;
    let t_created = Timestamp::now();
    if until(t1) < 10.0 {
        bail!(
            "creating the policies took until {:.1}s before the first due time {t1}; use fewer policies",
            until(t1)
        );
    }
    let dues: Vec<Timestamp> = (0..cfg.due_times)
        .map(|k| plus(t1, 60.0 * k as f64))
        .collect();
    let t_after = plus(t1, 60.0 * cfg.due_times as f64);
    progress(format!(
        "first due time T1 = {t1} (in {:.0}s); measuring up to {t_after}",
        until(t1)
    ));
    let mut tick = Ticker::new();
    let settled_at = loop {
        let settled = {
            let seen = lock(&bench.seen);
            (0..n)
                .filter(|&i| {
                    seen.policies
                        .get(&cfg.key(i))
                        .is_some_and(|p| p.settled(t1))
                })
                .count()
        };
        if settled == n {
            break Some(Timestamp::now());
        }
        bench.rig.operator_alive()?;
        if until(t1) <= 3.0 {
            progress(format!(
                "  only {settled}/{n} policies settled (nextScheduleTime = T1) 3s before T1"
            ));
            break None;
        }
        if tick.due() {
            progress(format!(
                "  ... {settled}/{n} settled; phases: {}",
                bench.phases()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let quiet = bench.wait_quiet(plus(t1, -7.0)).await?;
    let t_settled_quiet = Timestamp::now();
    let after_settle = bench.rig.snapshot().await?;
    let cpu_settle = bench
        .rig
        .cpu_seconds()
        .zip(cpu_before_create)
        .map(|(a, b)| a - b);
    let rss_settled = bench.rig.proc_mib("VmRSS");
    let phases_settled = bench.phases();
    if let Some(t) = settled_at {
        progress(format!(
            "all {n} settled {:.1}s after the last create ({phases_settled}); VmRSS {} MiB",
            secs(t_created, t),
            rss_settled.map_or("?".into(), num)
        ));
    }
    if !quiet {
        progress("  (the operator was still busy 7 s before T1)");
    }
    let settle_delta = after_settle.since(&before_create);
    bench
        .rig
        .write_out("api-delta-settle.tsv", &settle_delta.tsv(&RAW_COUNTERS));

    table.heading(format!(
        "-- {n} BackupPolicies (cron * * * * *{}) in {} namespaces",
        if cfg.verify { ", verify" } else { "" },
        cfg.namespaces
    ));
    table.value(
        "create the policies",
        Some(create_secs),
        "s",
        format!("{PARALLEL} creates in flight, starting {t_create}"),
    );
    table.value(
        "last create -> all settled (nextScheduleTime = T1)",
        settled_at.map(|t| secs(t_created, t)),
        "s",
        format!("phases: {phases_settled}"),
    );
    table.value(
        "operator writes to settle them, per policy",
        Some(writes(&settle_delta) / n as f64),
        "req",
        format!("FlowSchemas: {}", write_kinds(&settle_delta)),
    );
    table.value(
        "operator CPU time to settle them",
        cpu_settle,
        "s",
        "user + system, /proc/PID/stat",
    );

    // -----------------------------------------------------------------------
    // quiet interval before T1
    // -----------------------------------------------------------------------
    let mut intervals = Vec::new();
    let room = until(t1) - 2.0;
    let mut before_due = if room >= 5.0 {
        progress(format!(
            "quiet interval before T1: {room:.0}s counting the operator's writes"
        ));
        let start = Instant::now();
        bench
            .rig
            .sleep_until("quiet interval before T1", plus(t1, -2.0))
            .await?;
        let b = bench.rig.snapshot().await?;
        intervals.push(Interval {
            label: "settled, before T1".into(),
            file: "before-t1".into(),
            seconds: start.elapsed().as_secs_f64(),
            delta: b.since(&after_settle),
        });
        b
    } else {
        progress(format!(
            "no room for a quiet interval before T1 ({room:.0}s left)"
        ));
        bench
            .rig
            .sleep_until("waiting for T1", plus(t1, -2.0))
            .await?;
        bench.rig.snapshot().await?
    };
    let rss_before_t1 = bench.rig.proc_mib("VmRSS");

    // -----------------------------------------------------------------------
    // the due times
    // -----------------------------------------------------------------------
    let mut due_costs = Vec::new();
    for (k, &t) in dues.iter().enumerate() {
        let label = format!("T{}", k + 1);
        let next = plus(t, 60.0);
        let cpu_before = bench.rig.cpu_seconds();
        let deleted_before = lock(&bench.seen)
            .jobs
            .values()
            .filter(|j| j.deleted.is_some())
            .count();
        bench
            .rig
            .sleep_until(&format!("waiting for {label}"), t)
            .await?;
        progress(format!(
            "{label} = {t}: waiting for {n} backup Jobs and their records done (until {label} + 50s at the latest)"
        ));
        let deadline = plus(next, -10.0);
        let mut tick = Ticker::new();
        let all_done = loop {
            let done = bench.done_count(t);
            if done == n {
                break Some(-until(t));
            }
            bench.rig.operator_alive()?;
            if until(deadline) <= 0.0 {
                progress(format!(
                    "  only {done}/{n} records of {label} done by {label} + 50s: {}",
                    bench.due_state(t)
                ));
                break None;
            }
            if tick.due() {
                progress(format!(
                    "  ... {done}/{n} done, {:.0}s after {label}: {}",
                    -until(t),
                    bench.due_state(t)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let quiet = match all_done {
            Some(s) => {
                progress(format!(
                    "  all done {s:.2}s after {label}; waiting for the operator to be quiet"
                ));
                bench.wait_quiet(deadline).await?
            }
            None => false,
        };
        let quiet_from = Timestamp::now();
        let after = bench.rig.snapshot().await?;
        let delta = after.since(&before_due);
        bench.rig.write_out(
            &format!("api-delta-due-{}.tsv", k + 1),
            &delta.tsv(&RAW_COUNTERS),
        );
        let deleted_after = lock(&bench.seen)
            .jobs
            .values()
            .filter(|j| j.deleted.is_some())
            .count();
        due_costs.push(DueTime {
            t,
            delta,
            cpu: bench.rig.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b),
            all_done,
            rss_peak: bench.rss.peak(plus(t, -2.0), quiet_from),
            jobs_deleted: deleted_after - deleted_before,
        });
        let next_label = format!("T{}", k + 2);
        before_due = if all_done.is_some() {
            let room = until(next) - 2.0;
            progress(format!(
                "quiet interval after {label}: {room:.0}s counting the operator's writes{}",
                if quiet {
                    ""
                } else {
                    " (the operator was not quiet at its start)"
                }
            ));
            let start = Instant::now();
            bench
                .rig
                .sleep_until(
                    &format!("quiet interval before {next_label}"),
                    plus(next, -2.0),
                )
                .await?;
            let b = bench.rig.snapshot().await?;
            intervals.push(Interval {
                label: format!(
                    "after {label}'s backups, until {next_label}{}",
                    if quiet { "" } else { " (not quiet at start)" }
                ),
                file: format!("after-t{}", k + 1),
                seconds: start.elapsed().as_secs_f64(),
                delta: b.since(&after),
            });
            b
        } else {
            progress(format!(
                "no quiet interval after {label}: its backups were not all done"
            ));
            bench
                .rig
                .sleep_until(&format!("waiting for {next_label}"), plus(next, -2.0))
                .await?;
            bench.rig.snapshot().await?
        };
    }
    let t_end = Timestamp::now();
    let rss_end = bench.rig.proc_mib("VmRSS");
    let rss_due_peak = bench.rss.peak(plus(t1, -2.0), t_end);
    let hwm = bench.rig.proc_mib("VmHWM");

    // Backups not done by their deadline: give them BENCH_TIMEOUT more (later due times keep
    // coming meanwhile; they are not measured).
    let late = dues.iter().any(|&t| bench.done_count(t) < n);
    if late {
        progress("some backups were not done in their minute; waiting for them");
        let dues = &dues;
        let wait = bench
            .rig
            .wait_for("every measured backup recorded done", || async {
                let missing: usize = dues.iter().map(|&t| n - bench.done_count(t)).sum();
                Ok((missing > 0).then(|| format!("{missing} not done")))
            })
            .await;
        if let Err(err) = wait {
            progress(format!("  {err:#}"));
        }
    }

    // -----------------------------------------------------------------------
    // figures
    // -----------------------------------------------------------------------
    let seen = lock(&bench.seen);
    let mut raw = String::from(
        "# seconds relative to the due time T, wall clock of this host; - = not seen\npolicy\tT\tjob\tjob_seen\tjob_finished\tjob_failed\tpending\trunning\tsucceeded\tfailed\tdone\tlast_result\tlast_stage\tjob_deleted\n",
    );
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    let mut all_created = Vec::new();
    let mut all_succeeded = Vec::new();
    let mut all_reaction = Vec::new();
    let mut per_due = Vec::new();
    let mut missing_jobs = Vec::new();
    let mut missing_done = Vec::new();
    for (k, &t) in dues.iter().enumerate() {
        let mut created = Vec::new();
        let mut finished = Vec::new();
        let mut succeeded = Vec::new();
        let mut done = Vec::new();
        let mut reaction = Vec::new();
        let mut pending = 0;
        let mut failed = 0;
        for i in 0..n {
            let policy = cfg.key(i);
            let job = seen.backup_job(&policy, t);
            let record = seen.record(&policy, t);
            let job_seen = job.map(|j| secs(t, j.created));
            let job_finished = job.and_then(|j| j.finished).map(|(f, _)| secs(t, f));
            let at =
                |f: fn(&RecordSeen) -> Option<Timestamp>| record.and_then(f).map(|x| secs(t, x));
            let (r_pending, r_running, r_succeeded, r_failed, r_done) = (
                at(|r| r.pending),
                at(|r| r.running),
                at(|r| r.succeeded),
                at(|r| r.failed),
                at(|r| r.done),
            );
            created.extend(job_seen);
            finished.extend(job_finished);
            succeeded.extend(r_succeeded);
            done.extend(r_done);
            if let Some(f) = job_finished
                && let Some(r) = r_succeeded.or(r_failed)
            {
                reaction.push(r - f);
            }
            if r_pending.is_some() {
                pending += 1;
            }
            if r_failed.is_some() || job.and_then(|j| j.finished).is_some_and(|(_, f)| f) {
                failed += 1;
            }
            if job.is_none() {
                missing_jobs.push(format!(
                    "{policy} at T{}: no backup Job seen; record: {}",
                    k + 1,
                    record
                        .and_then(|r| r.last.as_ref())
                        .map_or("none".into(), |(r, s)| format!("{r}/{s}"))
                ));
            } else if r_done.is_none() {
                missing_done.push(format!(
                    "{policy} at T{}: Job {}, record: {}",
                    k + 1,
                    if job_finished.is_some() {
                        "finished"
                    } else {
                        "not finished"
                    },
                    record
                        .and_then(|r| r.last.as_ref())
                        .map_or("none".into(), |(r, s)| format!("{r}/{s}"))
                ));
            }
            let _ = writeln!(
                raw,
                "{policy}\tT{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                k + 1,
                record
                    .and_then(|r| r.job.clone())
                    .unwrap_or_else(|| "-".into()),
                fmt(job_seen),
                fmt(job_finished),
                job.and_then(|j| j.finished)
                    .map_or("-", |(_, f)| if f { "yes" } else { "no" }),
                fmt(r_pending),
                fmt(r_running),
                fmt(r_succeeded),
                fmt(r_failed),
                fmt(r_done),
                record
                    .and_then(|r| r.last.as_ref())
                    .map_or("-", |(r, _)| r.as_str()),
                record
                    .and_then(|r| r.last.as_ref())
                    .map_or("-", |(_, s)| s.as_str()),
                fmt(job.and_then(|j| j.deleted).map(|d| secs(t, d))),
            );
        }
        all_created.extend(created.iter().copied());
        all_succeeded.extend(succeeded.iter().copied());
        all_reaction.extend(reaction.iter().copied());
        per_due.push((
            created, finished, succeeded, done, reaction, pending, failed,
        ));
    }
    let other_jobs = counts(
        seen.other_jobs
            .iter()
            .flat_map(|(s, c)| std::iter::repeat_n(s.clone(), *c)),
    );
    let watch_errors = support::watch_errors();
    drop(seen);
    bench.rig.write_out("backups.tsv", &raw);

    let runs = n * dues.len();
    table.heading(format!(
        "-- {} due times T1..T{} from {t1}, {n} backups each (client-side receipt of watch events)",
        dues.len(),
        dues.len()
    ));
    table.dist(
        "T -> backup Job created (all due times)",
        ms(all_created),
        "ms",
        format!(
            "{} of {runs} seen; the issue's figure",
            runs - missing_jobs.len()
        ),
    );
    table.dist(
        "T -> history record Succeeded (all due times)",
        ms(all_succeeded),
        "ms",
        "",
    );
    table.dist(
        "Job finished -> record Succeeded/Failed (all)",
        ms(all_reaction),
        "ms",
        "the operator's reaction to the job controller",
    );
    for (k, (due, stats)) in due_costs.iter().zip(&per_due).enumerate() {
        let (created, finished, succeeded, done, reaction, pending, failed) = stats;
        let label = format!("T{}", k + 1);
        table.heading(format!("-- {label} = {}", due.t));
        table.dist(
            format!("{label} -> backup Job created"),
            ms(created.clone()),
            "ms",
            format!(
                "{} delayed (record Pending first), {} failed",
                pending, failed
            ),
        );
        table.dist(
            format!("{label} -> Job finished (job controller, kwok)"),
            ms(finished.clone()),
            "ms",
            "",
        );
        table.dist(
            format!("{label} -> history record Succeeded"),
            ms(succeeded.clone()),
            "ms",
            "",
        );
        if cfg.verify {
            table.dist(
                format!("{label} -> history record stage Done (verified)"),
                ms(done.clone()),
                "ms",
                "",
            );
        }
        table.dist(
            format!("{label}: Job finished -> record Succeeded/Failed"),
            ms(reaction.clone()),
            "ms",
            "",
        );
        table.value(
            format!("{label} -> all {n} records done"),
            due.all_done,
            "s",
            if due.all_done.is_some() {
                ""
            } else {
                "not by T + 50 s"
            },
        );
        let d = &due.delta;
        table.value(
            format!("operator writes for {label}, per backup"),
            Some(writes(d) / n as f64),
            "req",
            format!("{} in all: {}", num(writes(d)), write_kinds(d)),
        );
        table.value(
            "  operator api_writes metric, per backup",
            Some(d.op_sum("write ") / n as f64),
            "req",
            format!(
                "{CONTROLLER}: {}; Job deletes seen by the watch: {}; {}",
                metric_kinds(d),
                due.jobs_deleted,
                refused_writes(d)
            ),
        );
        table.value(
            format!("operator CPU time for {label}"),
            due.cpu,
            "s",
            format!(
                "{} reconciles ({CONTROLLER}: {})",
                num(d.op_sum("reconcile ")),
                num(d.op_sum(&format!("reconcile {CONTROLLER}")))
            ),
        );
        table.value(
            format!("operator VmRSS peak for {label}"),
            due.rss_peak,
            "MiB",
            "T-2s until done and quiet, sampled every 100 ms",
        );
    }
    table.heading("-- API writes between due times (target 0)");
    for iv in &intervals {
        let d = &iv.delta;
        table.value(
            format!("operator writes, {}", iv.label),
            Some(writes(d)),
            "writes",
            format!("{:.0} s; FlowSchemas: {}", iv.seconds, write_kinds(d)),
        );
        table.write_checks(d, CONTROLLER);
        bench.rig.write_out(
            &format!("api-delta-quiet-{}.tsv", iv.file),
            &d.tsv(&RAW_COUNTERS),
        );
        if writes(d) > 0.0 {
            progress(format!("  writes in the interval \"{}\":", iv.label));
            for (k, v) in d.api_writes() {
                progress(format!("    (all clients) {k}: {v}"));
            }
            for (k, v) in d.op.iter().filter(|(k, _)| k.starts_with("write ")) {
                progress(format!("    (operator metric) {k}: {v}"));
            }
        }
    }
    if intervals.len() < dues.len() + 1 {
        table.value(
            "intervals without a quiet part",
            Some((dues.len() + 1 - intervals.len()) as f64),
            "count",
            "backups of the due time before not all done by T + 50 s",
        );
    }
    table.heading("-- operator memory");
    table.value("operator VmRSS before the policies", rss_before, "MiB", "");
    table.value(
        "operator VmRSS, policies settled before T1",
        rss_settled,
        "MiB",
        format!("{} MiB at T1 - 2 s", rss_before_t1.map_or("?".into(), num)),
    );
    table.value(
        "operator VmRSS peak while creating and settling",
        bench.rss.peak(t_create, t_settled_quiet),
        "MiB",
        "sampled every 100 ms",
    );
    table.value(
        "operator VmRSS peak during the due times",
        rss_due_peak,
        "MiB",
        format!(
            "T1 - 2 s until the end; {} MiB at the end",
            rss_end.map_or("?".into(), num)
        ),
    );
    table.value(
        "operator VmHWM (peak RSS since it started)",
        hwm,
        "MiB",
        "/proc/PID/status",
    );

    println!();
    table.print();
    println!();
    println!(
        "Definitions (wall clock of this host; watch events timed when they reach this process):"
    );
    println!(
        "  T -> Job created: first watch event of the policy's backup Job for T (annotation {SCHEDULED_ANNOTATION}), minus T."
    );
    println!(
        "  record Succeeded: first policy event whose status.history has T's record with result Succeeded, minus T."
    );
    println!(
        "  operator writes: the operator impersonates runbook-bench-backups-operator; FlowSchemas"
    );
    println!(
        "    {FLOW_PREFIX}{{get,list,watch,crd-write,job-create,job-delete,write,events,other}} (priority level"
    );
    println!("    exempt) count its requests in apiserver_flowcontrol_dispatched_requests_total.");
    println!(
        "  writes for T: from T - 2 s until T's records were all done and the operator quiet (3 s without"
    );
    println!(
        "    a reconcile or write); the interval after T runs from then until the next due time - 2 s."
    );
    println!(
        "  percentiles: nearest rank over the backups of this one run (one run: no medians over runs)."
    );
    if !other_jobs.is_empty() {
        println!("  other Jobs of the policies seen (by stage): {other_jobs}.");
    }
    if watch_errors > 0 {
        println!("  the bench's watches failed {watch_errors} time(s) and were retried.");
    }
    if !missing_jobs.is_empty() || !missing_done.is_empty() {
        ok = false;
        println!();
        println!(
            "{} due time(s) without a backup Job, {} backup(s) never recorded done:",
            missing_jobs.len(),
            missing_done.len()
        );
        for m in missing_jobs.iter().chain(&missing_done).take(20) {
            println!("  {m}");
        }
    }
    Ok(ok)
}

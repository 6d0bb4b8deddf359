//! Benchmark of MaintenanceWindows at scale: "1,000 windows across 50 namespaces, a tenth of
//! them opening in the same minute: p50/p99 from the scheduled instant to the last change
//! applied, operator RSS, API writes between boundaries (target: zero)."
//!
//! Run it through `hack/bench-windows.sh`, which starts a cluster (`bench` unless
//! BENCH_CLUSTER) and the operator (watching all namespaces) and passes them in through the
//! environment. Without `BENCH_OPERATOR_URL` this binary only prints how to run it and exits
//! 0, so a plain `cargo bench` never touches whatever cluster the current kubeconfig points at.
//!
//! Prints figures, not verdicts: it exits non-zero only when something broke (the operator
//! died, a wait timed out, a window never opened or never restored; the figures are printed
//! first). Progress goes to stderr (a line at least every ~15 s), the summary table to stdout.
//!
//! # The stage
//!
//! * BENCH_NAMESPACES (50) namespaces `<BENCH_NAMESPACE>-NN`, each with BENCH_DEPLOYMENTS_PER_NS
//!   Deployments `app-J` (default: enough for the simultaneous windows, at least 3), 1 replica,
//!   one container without `MAINTENANCE_MODE`; kwok makes them Available.
//! * BENCH_WINDOWS (1000) MaintenanceWindows spread round-robin over the namespaces:
//!   - BENCH_SIMULTANEOUS (100) one-off windows `once-NNNN`, all with `start` = T and
//!     `end` = T + BENCH_WINDOW_DURATION (60 s), each changing its own Deployment
//!     (`scaleTo: 0`, env `MAINTENANCE_MODE=true`). They are created last; T is the first
//!     whole minute at least BENCH_LEAD (120) s after the other windows were created, so every
//!     window exists and has settled well before T.
//!   - the rest, recurring windows `yearly-NNNN`: `M H 1 MON *` about half a year ahead, in ten
//!     time zones, 2h, targeting the same Deployments the same way. No occurrence falls inside
//!     the benchmark, so they only settle (status Scheduled with their next start).
//!
//! # Definitions
//!
//! All times are wall-clock instants of this host (the API server, the operator and this
//! process share it): T and END are the instants written into the windows' specs; a change is
//! "seen" at the moment the Deployment watch event showing it reaches this process (client-side
//! receipt, so the watch delivery is included).
//!
//! * **open latency** of a one-off window = first Deployment event with `spec.replicas == 0`
//!   AND every container carrying `MAINTENANCE_MODE=true` (the last of its changes) - T.
//!   Also shown: the first of the two changes - T, and the window's status showing phase
//!   Active - T.
//! * **restore latency** = first later event with `spec.replicas == 1` AND no container
//!   carrying `MAINTENANCE_MODE` - END; also the window showing phase Completed - END.
//! * **settled**: every window's `status.observedGeneration` equals its generation and it has
//!   a phase; then the operator's reconcile and write counters stand still for 3 s.
//! * **operator RSS**: VmRSS of the operator process (/proc/PID/status), read every 100 ms;
//!   "peak" is the highest sample in the interval, VmHWM the kernel's high-water mark since the
//!   operator started.
//! * **API writes between boundaries**: in three intervals in which no window has a boundary
//!   (settled before T; while the one-off windows are open, after their changes settled; after
//!   the restore), the operator's writes of any resource. They are counted exactly with API
//!   Priority and Fairness: the script runs the operator impersonating the user
//!   `runbook-bench-windows-operator` and installs FlowSchemas `runbook-bench-mw-*` (priority
//!   level `exempt`) that sort its requests by kind; `apiserver_flowcontrol_dispatched_requests_total`
//!   counts them. Also shown: the operator's own `runbook_operator_api_writes_total`, and all
//!   clients' writes to `ops.runbook.dev` (`apiserver_request_total`). Target: 0.
//!
//! Environment (defaults in parentheses; hack/bench-windows.sh sets them):
//! * BENCH_OPERATOR_URL: http://127.0.0.1:PORT of the operator's probe server (required)
//! * BENCH_OPERATOR_PID: the operator's pid, for RSS, CPU time and liveness
//! * BENCH_NAMESPACE (bench-windows): namespace prefix
//! * BENCH_WINDOWS (1000), BENCH_NAMESPACES (50), BENCH_SIMULTANEOUS (100),
//!   BENCH_DEPLOYMENTS_PER_NS (max(3, ceil(SIMULTANEOUS / NAMESPACES)))
//! * BENCH_WINDOW_DURATION (60): seconds the one-off windows stay open
//! * BENCH_LEAD (120): at least this many seconds from creation to T
//! * BENCH_QUIET (60): seconds of each quiet interval (the one before T is shortened to fit)
//! * BENCH_SETTLE (20): seconds idle after the restore before the last quiet interval
//! * BENCH_TIMEOUT (600): seconds for any one wait
//! * BENCH_OUT: directory for raw data (per-window times, request deltas)

mod support;

use support::figures::{Table, num};

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use runbook_operator::maintenance_window::MaintenanceWindow;
use serde_json::{Value, json};
use support::pace::{RssSamples, plus, secs, until};
use support::{
    Counters, Rig, Settings, Snapshot, Ticker, counts, env_positive, env_text, for_all, lock,
    progress, rollout_complete, spawn_watch,
};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-windows";
/// Field manager of everything this binary writes.
const MANAGER: &str = "bench-windows";
/// Prefix of the FlowSchemas that count the operator's requests (see hack/bench-windows.sh).
const FLOW_PREFIX: &str = "runbook-bench-mw-";
/// The env variable every window sets.
const ENV_NAME: &str = "MAINTENANCE_MODE";
/// Label on the bench's Deployments (value: the Deployment's name).
const APP_LABEL: &str = "bench.runbook.dev/windows-app";
/// Label on the bench's windows: `one-off` or `recurring`.
const KIND_LABEL: &str = "bench.runbook.dev/window-kind";
/// Label on the bench's namespaces.
const NS_LABEL: &str = "bench.runbook.dev/windows";
/// Name of the operator's MaintenanceWindow controller in its metrics.
const CONTROLLER: &str = "maintenancewindow";
/// Time zones of the recurring windows.
const ZONES: [&str; 10] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Los_Angeles",
    "Europe/London",
    "Pacific/Auckland",
    "America/Sao_Paulo",
];
/// The counters the raw request deltas (`api-delta-*.tsv`) hold, in that order.
const RAW_COUNTERS: [Counters; 3] = [Counters::Api, Counters::Flows, Counters::Op];

// ---------------------------------------------------------------------------
// clock, progress, configuration
// ---------------------------------------------------------------------------

/// This bench's knobs (the ones both benches read are `support::Settings`).
struct Config {
    prefix: String,
    windows: usize,
    namespaces: usize,
    simultaneous: usize,
    deployments_per_ns: usize,
    duration: u64,
    lead: u64,
    quiet: u64,
    settle: u64,
}

impl Config {
    /// Reads the environment (before `Settings::from_env`, the order the errors come in).
    fn from_env() -> Result<Self> {
        let windows = env_positive("BENCH_WINDOWS", 1000)? as usize;
        let namespaces = env_positive("BENCH_NAMESPACES", 50)? as usize;
        let simultaneous = env_positive("BENCH_SIMULTANEOUS", 100)? as usize;
        if simultaneous > windows {
            bail!("BENCH_SIMULTANEOUS ({simultaneous}) exceeds BENCH_WINDOWS ({windows})");
        }
        if namespaces > windows || namespaces > 100 {
            bail!("BENCH_NAMESPACES ({namespaces}) must be at most BENCH_WINDOWS and 100");
        }
        let deployments_per_ns = env_positive(
            "BENCH_DEPLOYMENTS_PER_NS",
            simultaneous.div_ceil(namespaces).max(3) as u64,
        )? as usize;
        if deployments_per_ns * namespaces < simultaneous {
            bail!(
                "BENCH_DEPLOYMENTS_PER_NS ({deployments_per_ns}) x BENCH_NAMESPACES ({namespaces}) \
                 is less than BENCH_SIMULTANEOUS ({simultaneous}): each one-off window needs its own Deployment"
            );
        }
        let lead = env_positive("BENCH_LEAD", 120)?;
        if lead < 20 {
            bail!("BENCH_LEAD must be at least 20 s (got {lead})");
        }
        Ok(Self {
            prefix: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-windows".into()),
            windows,
            namespaces,
            simultaneous,
            deployments_per_ns,
            duration: env_positive("BENCH_WINDOW_DURATION", 60)?,
            lead,
            quiet: env_positive("BENCH_QUIET", 60)?,
            settle: env_positive("BENCH_SETTLE", 20)?,
        })
    }

    fn namespace(&self, i: usize) -> String {
        format!("{}-{:02}", self.prefix, i)
    }

    /// The namespace and Deployment one-off window `i` changes (each its own).
    fn one_off_target(&self, i: usize) -> (String, String) {
        (
            self.namespace(i % self.namespaces),
            app_name(i / self.namespaces),
        )
    }

    fn recurring(&self) -> usize {
        self.windows - self.simultaneous
    }
}

fn app_name(j: usize) -> String {
    format!("app-{j}")
}

fn one_off_name(i: usize) -> String {
    format!("once-{i:04}")
}

fn recurring_name(r: usize) -> String {
    format!("yearly-{r:04}")
}

// ---------------------------------------------------------------------------
// what the watches saw
// ---------------------------------------------------------------------------

/// One Deployment's history, as far as the measurement needs it.
#[derive(Default)]
struct TargetSeen {
    /// First event with either change visible (replicas 0, or the env var on any container).
    first_change: Option<Timestamp>,
    /// First event with both changes visible: replicas 0 and the env var on every container.
    opened: Option<Timestamp>,
    /// First event after `opened` with replicas 1 and the env var on no container.
    restored: Option<Timestamp>,
    /// The last event's state: (replicas, env on every container, env on any container).
    last: Option<(i32, bool, bool)>,
}

/// One window's status history.
#[derive(Default)]
struct WindowSeen {
    generation: Option<i64>,
    observed_generation: Option<i64>,
    phase: Option<String>,
    next_start: bool,
    result: Option<String>,
    /// First event with phase Active.
    active: Option<Timestamp>,
    /// First event with phase Completed.
    completed: Option<Timestamp>,
    /// Phases in the order first seen.
    phases: Vec<String>,
}

impl WindowSeen {
    fn settled(&self) -> bool {
        self.phase.is_some()
            && self.observed_generation.is_some()
            && self.observed_generation == self.generation
    }
}

#[derive(Default)]
struct Seen {
    /// By "namespace/name".
    targets: HashMap<String, TargetSeen>,
    /// By "namespace/name".
    windows: HashMap<String, WindowSeen>,
}

/// What the watches saw, shared with their tasks.
type Shared = Arc<Mutex<Seen>>;

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn object_key<K: Resource>(obj: &K) -> String {
    key(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

fn record_deployment(seen: &mut Seen, t: Timestamp, d: Deployment) {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let containers = spec
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let has_env = |c: &k8s_openapi::api::core::v1::Container| {
        c.env
            .as_ref()
            .is_some_and(|env| env.iter().any(|e| e.name == ENV_NAME))
    };
    let env_all = !containers.is_empty()
        && containers.iter().all(|c| {
            c.env.as_ref().is_some_and(|env| {
                env.iter()
                    .any(|e| e.name == ENV_NAME && e.value.as_deref() == Some("true"))
            })
        });
    let env_any = containers.iter().any(has_env);
    let entry = seen.targets.entry(object_key(&d)).or_default();
    if (replicas == 0 || env_any) && entry.first_change.is_none() {
        entry.first_change = Some(t);
    }
    if replicas == 0 && env_all && entry.opened.is_none() {
        entry.opened = Some(t);
    } else if entry.opened.is_some() && entry.restored.is_none() && replicas == 1 && !env_any {
        entry.restored = Some(t);
    }
    entry.last = Some((replicas, env_all, env_any));
}

fn record_window(seen: &mut Seen, t: Timestamp, mw: DynamicObject) {
    let entry = seen.windows.entry(object_key(&mw)).or_default();
    let status = mw.data.get("status");
    let text = |ptr: &str| {
        status
            .and_then(|s| s.pointer(ptr))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    entry.generation = mw.metadata.generation;
    entry.observed_generation = status
        .and_then(|s| s.get("observedGeneration"))
        .and_then(Value::as_i64);
    entry.phase = text("/phase");
    entry.next_start = text("/nextStart").is_some();
    entry.result = text("/lastWindow/result");
    if let Some(phase) = &entry.phase {
        if !entry.phases.contains(phase) {
            entry.phases.push(phase.clone());
        }
        match phase.as_str() {
            "Active" => {
                entry.active.get_or_insert(t);
            }
            "Completed" => {
                entry.completed.get_or_insert(t);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// figures
// ---------------------------------------------------------------------------

/// Seconds to milliseconds.
fn ms(seconds: Vec<f64>) -> Vec<f64> {
    seconds.into_iter().map(|s| s * 1000.0).collect()
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
    windows: ApiResource,
}

/// Writes counted over one interval, for the table.
struct Interval {
    label: String,
    /// Raw data file name part.
    file: &'static str,
    seconds: f64,
    delta: Snapshot,
}

impl Bench {
    fn window_api(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.rig.client.clone(), ns, &self.windows)
    }

    /// Waits until the operator's reconcile and write counters stand still for 3 s, or
    /// `deadline` passes; returns whether it got quiet.
    async fn wait_quiet(&self, deadline: Timestamp) -> Result<bool> {
        self.rig
            .wait_quiet(
                |snap| snap.op_sum("") + snap.op_writes(),
                || until(deadline) <= 0.0,
            )
            .await
    }

    /// Namespaces, Deployments, watches.
    async fn setup(&self) -> Result<()> {
        let cfg = &self.cfg;
        let pp = PatchParams::apply(MANAGER).force();
        progress(format!(
            "creating {} namespaces {}-NN with {} Deployments each (1 replica)",
            cfg.namespaces, cfg.prefix, cfg.deployments_per_ns
        ));
        let namespaces: Api<Namespace> = Api::all(self.rig.client.clone());
        for_all(cfg.namespaces, 8, |i| {
            let (namespaces, pp) = (namespaces.clone(), pp.clone());
            let name = cfg.namespace(i);
            async move {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {NS_LABEL: "1"}}});
                namespaces
                    .patch(&name, &pp, &Patch::Apply(&ns))
                    .await
                    .with_context(|| format!("creating namespace {name}"))?;
                Ok(())
            }
        })
        .await?;
        let per_ns = cfg.deployments_per_ns;
        for_all(cfg.namespaces * per_ns, 16, |k| {
            let pp = pp.clone();
            let ns = cfg.namespace(k / per_ns);
            let name = app_name(k % per_ns);
            let api: Api<Deployment> = Api::namespaced(self.rig.client.clone(), &ns);
            async move {
                let d = support::deployment(&name, APP_LABEL, ("APP_COLOUR", "blue"));
                api.patch(&name, &pp, &Patch::Apply(&d))
                    .await
                    .with_context(|| format!("creating Deployment {ns}/{name}"))?;
                Ok(())
            }
        })
        .await?;
        let all: Api<Deployment> = Api::all(self.rig.client.clone());
        let want = cfg.namespaces * per_ns;
        self.rig
            .wait_for(&format!("{want} Deployments rolled out"), || {
                let all = all.clone();
                async move {
                    let list = all.list(&ListParams::default().labels(APP_LABEL)).await?;
                    let done = list.items.iter().filter(|d| rollout_complete(d)).count();
                    Ok((done < want).then(|| format!("{done}/{want} available")))
                }
            })
            .await?;
        spawn_watch(
            all,
            watcher::Config::default().labels(APP_LABEL),
            self.seen.clone(),
            record_deployment,
        );
        spawn_watch(
            Api::<DynamicObject>::all_with(self.rig.client.clone(), &self.windows),
            watcher::Config::default().labels(KIND_LABEL),
            self.seen.clone(),
            record_window,
        );
        Ok(())
    }

    /// Creates windows `0..n` made by `make(i) -> (namespace, object)`; returns seconds taken.
    async fn create_windows<F>(&self, what: &str, n: usize, make: F) -> Result<f64>
    where
        F: Fn(usize) -> (String, Value),
    {
        if n == 0 {
            return Ok(0.0);
        }
        progress(format!("creating {n} {what} windows"));
        let start = Instant::now();
        let make = &make;
        for_all(n, 32, |i| {
            let (ns, body) = make(i);
            let api = self.window_api(&ns);
            async move {
                let obj: DynamicObject = serde_json::from_value(body)?;
                api.create(&PostParams::default(), &obj)
                    .await
                    .with_context(|| {
                        format!("creating MaintenanceWindow {ns}/{}", obj.name_any())
                    })?;
                Ok(())
            }
        })
        .await?;
        let took = start.elapsed().as_secs_f64();
        progress(format!("  {n} {what} windows created in {took:.1}s"));
        Ok(took)
    }

    /// The window's changes, on one Deployment.
    fn targets(app: &str) -> Value {
        json!([{
            "kind": "Deployment",
            "name": app,
            "scaleTo": 0,
            "env": [{"name": ENV_NAME, "value": "true"}]
        }])
    }

    fn window_body(ns: &str, name: &str, kind: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "ops.runbook.dev/v1alpha1",
            "kind": "MaintenanceWindow",
            "metadata": {"name": name, "namespace": ns, "labels": {KIND_LABEL: kind}},
            "spec": spec
        })
    }

    /// The one-off windows' (namespace/window, namespace/Deployment) keys.
    fn one_offs(&self) -> Vec<(String, String)> {
        (0..self.cfg.simultaneous)
            .map(|i| {
                let (ns, app) = self.cfg.one_off_target(i);
                (key(&ns, &one_off_name(i)), key(&ns, &app))
            })
            .collect()
    }

    fn window_phases(&self) -> String {
        let seen = lock(&self.seen);
        counts(seen.windows.values().map(|w| {
            w.phase
                .clone()
                .unwrap_or_else(|| "(no phase yet)".to_owned())
        }))
    }
}

/// A cron month about half a year ahead of `now` (1-12), so no recurring occurrence falls
/// inside the benchmark.
fn far_month(now: Timestamp) -> i8 {
    let month = now.to_zoned(jiff::tz::TimeZone::UTC).month();
    (month + 5) % 12 + 1
}

/// The first whole minute at least `lead` seconds after `now`.
fn whole_minute_after(now: Timestamp, lead: u64) -> Result<Timestamp> {
    let s = now.as_second() + lead as i64;
    let minute = (s + 59).div_euclid(60) * 60;
    Timestamp::from_second(minute).map_err(|e| anyhow!("computing T: {e}"))
}

#[tokio::main]
async fn main() {
    support::main(
        "benches/windows.rs needs a cluster and a running operator: run hack/bench-windows.sh (or make bench)",
        bench,
    )
    .await;
}

/// Ok(false): the figures are printed, but some window did not open or restore.
async fn bench(operator_url: String) -> Result<bool> {
    let cfg = Config::from_env()?;
    let rig = Rig::connect(Settings::from_env(operator_url)?, FLOW_PREFIX).await?;
    progress(format!(
        "{} MaintenanceWindows in {} namespaces, {} of them one-off windows opening at the same instant for {}s",
        cfg.windows, cfg.namespaces, cfg.simultaneous, cfg.duration
    ));
    let rss = RssSamples::start(rig.operator_pid, Timestamp::now);
    let bench = Bench {
        rss,
        cfg,
        rig,
        seen: Arc::default(),
        windows: ApiResource::erase::<MaintenanceWindow>(&()),
    };
    bench.rig.operator_alive()?;
    bench.setup().await?;
    let cfg = &bench.cfg;
    let mut table = Table::default();
    let mut ok = true;

    // -----------------------------------------------------------------------
    // create, settle
    // -----------------------------------------------------------------------
    bench.wait_quiet(plus(Timestamp::now(), 60.0)).await?;
    let rss_before = bench.rig.proc_mib("VmRSS");
    let before_create = bench.rig.snapshot().await?;
    let cpu_before_create = bench.rig.cpu_seconds();
    let t_create = Timestamp::now();
    let month = far_month(t_create);
    let recurring = cfg.recurring();
    let recurring_secs = bench
        .create_windows("recurring", recurring, |r| {
            let ns = cfg.namespace(r % cfg.namespaces);
            let app = app_name((r / cfg.namespaces) % cfg.deployments_per_ns);
            let spec = json!({
                "schedule": {
                    "cron": format!("{} {} 1 {month} *", r % 60, 1 + r % 4),
                    "timeZone": ZONES[r % ZONES.len()],
                    "duration": "2h"
                },
                "targets": Bench::targets(&app)
            });
            (
                ns.clone(),
                Bench::window_body(&ns, &recurring_name(r), "recurring", spec),
            )
        })
        .await?;
    let t_open = whole_minute_after(Timestamp::now(), cfg.lead)?;
    let t_end = plus(t_open, cfg.duration as f64);
    progress(format!(
        "T = {t_open} (in {:.0}s), END = {t_end}",
        until(t_open)
    ));
    let once_secs = bench
        .create_windows("one-off", cfg.simultaneous, |i| {
            let (ns, app) = cfg.one_off_target(i);
            let spec = json!({
                "start": t_open.to_string(),
                "end": t_end.to_string(),
                "targets": Bench::targets(&app)
            });
            (
                ns.clone(),
                Bench::window_body(&ns, &one_off_name(i), "one-off", spec),
            )
        })
        .await?;
    let t_created = Timestamp::now();
    if until(t_open) < 15.0 {
        bail!(
            "creating the windows took until {:.0}s before T; raise BENCH_LEAD",
            until(t_open)
        );
    }
    let total = cfg.windows;
    bench
        .rig
        .wait_for(&format!("all {total} windows settled"), || {
            let seen = &bench.seen;
            async move {
                let seen = lock(seen);
                let settled = seen.windows.values().filter(|w| w.settled()).count();
                Ok((settled < total).then(|| {
                    format!(
                        "{settled}/{total} settled, {} seen by the watch",
                        seen.windows.len()
                    )
                }))
            }
        })
        .await?;
    let t_settled = Timestamp::now();
    let quiet = bench.wait_quiet(plus(t_open, -5.0)).await?;
    let t_settled_quiet = Timestamp::now();
    let after_settle = bench.rig.snapshot().await?;
    let cpu_settle = bench
        .rig
        .cpu_seconds()
        .zip(cpu_before_create)
        .map(|(a, b)| a - b);
    let rss_settled = bench.rig.proc_mib("VmRSS");
    let phases_settled = bench.window_phases();
    let with_next = lock(&bench.seen)
        .windows
        .values()
        .filter(|w| w.next_start)
        .count();
    progress(format!(
        "all {total} settled {:.1}s after the last create ({phases_settled}; {with_next} with nextStart); VmRSS {} MiB",
        secs(t_created, t_settled),
        rss_settled.map_or("?".into(), num)
    ));
    if !quiet {
        progress("  (the operator was still busy 5 s before T)");
    }
    let settle_delta = after_settle.since(&before_create);
    bench
        .rig
        .write_out("api-delta-settle.tsv", &settle_delta.tsv(&RAW_COUNTERS));

    table.heading(format!(
        "-- {total} windows ({} recurring, {} one-off) in {} namespaces, {} Deployments each",
        recurring, cfg.simultaneous, cfg.namespaces, cfg.deployments_per_ns
    ));
    table.value(
        "create the windows (recurring, then one-off)",
        Some(recurring_secs + once_secs),
        "s",
        format!("{recurring_secs:.1} s + {once_secs:.1} s; 32 creates in flight"),
    );
    table.value(
        "last create -> all settled",
        Some(secs(t_created, t_settled)),
        "s",
        format!(
            "first create -> settled {:.1} s; phases: {phases_settled}; {with_next} with nextStart",
            secs(t_create, t_settled)
        ),
    );
    table.value(
        "operator writes to settle them, per window",
        Some(settle_delta.op_writes() / total as f64),
        "req",
        format!(
            "FlowSchemas: {} to ops.runbook.dev, {} other, {} Events in all",
            num(settle_delta.flow("crd-write")),
            num(settle_delta.flow("write")),
            num(settle_delta.flow("events")),
        ),
    );
    table.value(
        "operator CPU time to settle them",
        cpu_settle,
        "s",
        "user + system, /proc/PID/stat",
    );
    table.value(
        "operator VmRSS before the windows",
        rss_before,
        "MiB",
        format!("{} Deployments", cfg.namespaces * cfg.deployments_per_ns),
    );
    table.value(
        "operator VmRSS, all windows settled",
        rss_settled,
        "MiB",
        "",
    );
    table.value(
        "operator VmRSS peak while creating and settling",
        bench.rss.peak(t_create, t_settled_quiet),
        "MiB",
        "sampled every 100 ms",
    );

    // -----------------------------------------------------------------------
    // quiet interval before T
    // -----------------------------------------------------------------------
    let mut intervals = Vec::new();
    let room = until(t_open) - 5.0;
    let length = room.min(cfg.quiet as f64);
    if length >= 10.0 {
        progress(format!(
            "quiet interval before T: {length:.0}s counting the operator's writes"
        ));
        let a = bench.rig.snapshot().await?;
        let start = Instant::now();
        bench
            .rig
            .sleep_until("quiet interval before T", plus(Timestamp::now(), length))
            .await?;
        let b = bench.rig.snapshot().await?;
        intervals.push(Interval {
            label: "settled, before T".into(),
            file: "before-t",
            seconds: start.elapsed().as_secs_f64(),
            delta: b.since(&a),
        });
    } else {
        progress(format!(
            "no room for a quiet interval before T ({room:.0}s left); raise BENCH_LEAD"
        ));
    }

    // -----------------------------------------------------------------------
    // the open
    // -----------------------------------------------------------------------
    bench
        .rig
        .sleep_until("waiting for T", plus(t_open, -2.0))
        .await?;
    let before_open = bench.rig.snapshot().await?;
    let cpu_before_open = bench.rig.cpu_seconds();
    let one_offs = bench.one_offs();
    let n = one_offs.len();
    progress(format!(
        "T: waiting for {n} Deployments to show replicas 0 and {ENV_NAME}=true (until END at the latest)"
    ));
    let mut tick = Ticker::new();
    loop {
        let opened = {
            let seen = lock(&bench.seen);
            one_offs
                .iter()
                .filter(|(_, d)| seen.targets.get(d).is_some_and(|t| t.opened.is_some()))
                .count()
        };
        if opened == n {
            break;
        }
        bench.rig.operator_alive()?;
        if until(t_end) <= 0.0 {
            progress(format!(
                "  only {opened}/{n} Deployments showed both changes by END"
            ));
            break;
        }
        if tick.due() {
            progress(format!(
                "  ... {opened}/{n} opened, {:.0}s after T; windows: {}",
                -until(t_open),
                bench.window_phases()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_open = {
        let seen = lock(&bench.seen);
        one_offs
            .iter()
            .filter_map(|(_, d)| seen.targets.get(d).and_then(|t| t.opened))
            .max()
    };
    match last_open {
        Some(t) => progress(format!(
            "  last change seen {:.2}s after T; waiting for the operator to be quiet",
            secs(t_open, t)
        )),
        None => progress("  no change seen at all; waiting for the operator to be quiet"),
    }
    bench.wait_quiet(plus(t_end, -12.0)).await?;
    let t_open_quiet = Timestamp::now();
    let after_open = bench.rig.snapshot().await?;
    let cpu_open = bench
        .rig
        .cpu_seconds()
        .zip(cpu_before_open)
        .map(|(a, b)| a - b);
    let open_delta = after_open.since(&before_open);
    bench
        .rig
        .write_out("api-delta-open.tsv", &open_delta.tsv(&RAW_COUNTERS));
    let rss_open_peak = bench.rss.peak(plus(t_open, -2.0), t_open_quiet);

    // quiet interval while open
    let room = until(t_end) - 2.0;
    let before_end = if room >= 10.0 {
        progress(format!(
            "quiet interval while the windows are open: {room:.0}s counting the operator's writes"
        ));
        let start = Instant::now();
        bench
            .rig
            .sleep_until("quiet interval while open", plus(t_end, -2.0))
            .await?;
        let b = bench.rig.snapshot().await?;
        intervals.push(Interval {
            label: "one-off windows open, changes settled".into(),
            file: "open",
            seconds: start.elapsed().as_secs_f64(),
            delta: b.since(&after_open),
        });
        b
    } else {
        progress(format!(
            "no room for a quiet interval while open ({room:.0}s before END)"
        ));
        bench
            .rig
            .sleep_until("waiting for END", plus(t_end, -2.0))
            .await?;
        bench.rig.snapshot().await?
    };
    let cpu_before_end = bench.rig.cpu_seconds();

    // -----------------------------------------------------------------------
    // the restore
    // -----------------------------------------------------------------------
    bench.rig.sleep_until("waiting for END", t_end).await?;
    progress(format!(
        "END: waiting for the opened Deployments to show replicas 1 and no {ENV_NAME}"
    ));
    let restore_deadline = plus(t_end, bench.rig.timeout.as_secs_f64());
    let mut tick = Ticker::new();
    loop {
        let (opened, restored) = {
            let seen = lock(&bench.seen);
            let mut opened = 0;
            let mut restored = 0;
            for (_, d) in &one_offs {
                if let Some(t) = seen.targets.get(d)
                    && t.opened.is_some()
                {
                    opened += 1;
                    if t.restored.is_some() {
                        restored += 1;
                    }
                }
            }
            (opened, restored)
        };
        if restored == opened {
            break;
        }
        bench.rig.operator_alive()?;
        if until(restore_deadline) <= 0.0 {
            progress(format!(
                "  only {restored}/{opened} Deployments restored {:?} after END",
                bench.rig.timeout
            ));
            break;
        }
        if tick.due() {
            progress(format!(
                "  ... {restored}/{opened} restored, {:.0}s after END; windows: {}",
                -until(t_end),
                bench.window_phases()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_restore = {
        let seen = lock(&bench.seen);
        one_offs
            .iter()
            .filter_map(|(_, d)| seen.targets.get(d).and_then(|t| t.restored))
            .max()
    };
    match last_restore {
        Some(t) => progress(format!(
            "  last restore seen {:.2}s after END; waiting for the operator to be quiet",
            secs(t_end, t)
        )),
        None => progress(
            "  no restore seen (nothing opened, or nothing restored); waiting for the operator to be quiet",
        ),
    }
    bench.wait_quiet(plus(Timestamp::now(), 60.0)).await?;
    let t_restore_quiet = Timestamp::now();
    let after_restore = bench.rig.snapshot().await?;
    let cpu_restore = bench
        .rig
        .cpu_seconds()
        .zip(cpu_before_end)
        .map(|(a, b)| a - b);
    let restore_delta = after_restore.since(&before_end);
    bench
        .rig
        .write_out("api-delta-restore.tsv", &restore_delta.tsv(&RAW_COUNTERS));
    let rss_restore_peak = bench.rss.peak(plus(t_end, -2.0), t_restore_quiet);

    // quiet interval after the restore
    progress(format!(
        "quiet interval after the restore: {}s idle, then {}s counting the operator's writes",
        bench.cfg.settle, bench.cfg.quiet
    ));
    bench
        .rig
        .sleep_until(
            "idle after the restore",
            plus(Timestamp::now(), bench.cfg.settle as f64),
        )
        .await?;
    let rss_idle = bench.rig.proc_mib("VmRSS");
    let a = bench.rig.snapshot().await?;
    let start = Instant::now();
    bench
        .rig
        .sleep_until(
            "quiet interval after the restore",
            plus(Timestamp::now(), bench.cfg.quiet as f64),
        )
        .await?;
    let b = bench.rig.snapshot().await?;
    intervals.push(Interval {
        label: "after the restore".into(),
        file: "after-restore",
        seconds: start.elapsed().as_secs_f64(),
        delta: b.since(&a),
    });
    let hwm = bench.rig.proc_mib("VmHWM");

    // -----------------------------------------------------------------------
    // figures
    // -----------------------------------------------------------------------
    let seen = lock(&bench.seen);
    let mut open_last = Vec::new();
    let mut open_first = Vec::new();
    let mut open_status = Vec::new();
    let mut restore_last = Vec::new();
    let mut restore_status = Vec::new();
    let mut missing_open = Vec::new();
    let mut missing_restore = Vec::new();
    let mut raw = String::from(
        "# seconds relative to T (open) and END (restore), wall clock of this host; - = not seen\nwindow\tdeployment\tfirst_change\topened\tstatus_active\trestored\tstatus_completed\tphases\tlast_result\n",
    );
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    for (w, d) in &one_offs {
        let target = seen.targets.get(d);
        let window = seen.windows.get(w);
        let first = target.and_then(|t| t.first_change).map(|t| secs(t_open, t));
        let opened = target.and_then(|t| t.opened).map(|t| secs(t_open, t));
        let restored = target.and_then(|t| t.restored).map(|t| secs(t_end, t));
        let active = window.and_then(|w| w.active).map(|t| secs(t_open, t));
        let completed = window.and_then(|w| w.completed).map(|t| secs(t_end, t));
        open_first.extend(first);
        open_last.extend(opened);
        open_status.extend(active);
        restore_last.extend(restored);
        restore_status.extend(completed);
        if opened.is_none() {
            let last = target.and_then(|t| t.last);
            missing_open.push(format!(
                "{w} -> {d}: last seen {}",
                last.map_or("never".into(), |(r, all, _)| format!(
                    "replicas {r}, {ENV_NAME}={all}"
                ))
            ));
        } else if restored.is_none() {
            let last = target.and_then(|t| t.last);
            missing_restore.push(format!(
                "{w} -> {d}: last seen {}",
                last.map_or("never".into(), |(r, _, any)| format!(
                    "replicas {r}, {ENV_NAME} present={any}"
                ))
            ));
        }
        let _ = writeln!(
            raw,
            "{w}\t{d}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            fmt(first),
            fmt(opened),
            fmt(active),
            fmt(restored),
            fmt(completed),
            window.map_or("-".into(), |w| w.phases.join(">")),
            window
                .and_then(|w| w.result.clone())
                .unwrap_or_else(|| "-".into()),
        );
    }
    let results = counts(one_offs.iter().map(|(w, _)| {
        seen.windows
            .get(w)
            .and_then(|w| w.result.clone())
            .unwrap_or_else(|| "(none)".into())
    }));
    let final_phases = counts(one_offs.iter().map(|(w, _)| {
        seen.windows
            .get(w)
            .and_then(|w| w.phase.clone())
            .unwrap_or_else(|| "(none)".into())
    }));
    let recurring_moved = seen
        .windows
        .iter()
        .filter(|(k, w)| k.contains("/yearly-") && w.phases.iter().any(|p| p != "Scheduled"))
        .count();
    let watch_errors = support::watch_errors();
    drop(seen);
    bench.rig.write_out("one-off-windows.tsv", &raw);

    table.heading(format!(
        "-- open: {n} one-off windows starting at T = {t_open} (client-side receipt of watch events)"
    ));
    table.dist(
        "T -> last change visible (replicas 0 AND env set)",
        ms(open_last),
        "ms",
        format!("{} of {n} seen", n - missing_open.len()),
    );
    table.dist(
        "T -> first change visible (replicas 0 OR env set)",
        ms(open_first),
        "ms",
        "",
    );
    table.dist("T -> window status phase Active", ms(open_status), "ms", "");
    table.value(
        "operator writes for the open, per window",
        Some(open_delta.op_writes() / n as f64),
        "req",
        format!(
            "FlowSchemas, T-2s to quiet: {} ops.runbook.dev, {} workloads, {} Events",
            num(open_delta.flow("crd-write")),
            num(open_delta.flow("write")),
            num(open_delta.flow("events"))
        ),
    );
    table.value(
        "operator CPU time for the open",
        cpu_open,
        "s",
        format!("{} reconciles", num(open_delta.op_sum("reconcile "))),
    );
    table.value(
        "operator VmRSS peak during the open",
        rss_open_peak,
        "MiB",
        "T-2s until quiet, sampled every 100 ms",
    );
    table.heading(format!(
        "-- restore: the same windows ending at END = T + {}s",
        bench.cfg.duration
    ));
    table.dist(
        "END -> restored (replicas 1 AND env removed)",
        ms(restore_last),
        "ms",
        format!(
            "{} of {} opened seen restored",
            n - missing_open.len() - missing_restore.len(),
            n - missing_open.len()
        ),
    );
    table.dist(
        "END -> window status phase Completed",
        ms(restore_status),
        "ms",
        format!("final phases: {final_phases}; lastWindow.result: {results}"),
    );
    table.value(
        "operator writes for the restore, per window",
        Some(restore_delta.op_writes() / n as f64),
        "req",
        format!(
            "FlowSchemas, END-2s to quiet: {} ops.runbook.dev, {} workloads, {} Events",
            num(restore_delta.flow("crd-write")),
            num(restore_delta.flow("write")),
            num(restore_delta.flow("events"))
        ),
    );
    table.value(
        "operator CPU time for the restore",
        cpu_restore,
        "s",
        format!("{} reconciles", num(restore_delta.op_sum("reconcile "))),
    );
    table.value(
        "operator VmRSS peak during the restore",
        rss_restore_peak,
        "MiB",
        "",
    );
    table.value(
        "recurring windows that left phase Scheduled",
        Some(recurring_moved as f64),
        "count",
        "expected 0: none of their occurrences falls inside the benchmark",
    );
    table.heading("-- API writes between boundaries (target 0)");
    for iv in &intervals {
        let d = &iv.delta;
        table.value(
            format!("operator writes, {}", iv.label),
            Some(d.op_writes()),
            "writes",
            format!(
                "{:.0} s; FlowSchemas: {} ops.runbook.dev, {} other, {} Events",
                iv.seconds,
                num(d.flow("crd-write")),
                num(d.flow("write")),
                num(d.flow("events"))
            ),
        );
        table.write_checks(d, CONTROLLER);
        bench.rig.write_out(
            &format!("api-delta-quiet-{}.tsv", iv.file),
            &d.tsv(&RAW_COUNTERS),
        );
        if d.op_writes() > 0.0 {
            progress(format!("  writes in the interval \"{}\":", iv.label));
            for (k, v) in d.api_writes() {
                progress(format!("    (all clients) {k}: {v}"));
            }
        }
    }
    table.heading("-- operator memory");
    table.value(
        "operator VmRSS, idle after the restore",
        rss_idle,
        "MiB",
        "",
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
        "  open: first Deployment event with spec.replicas 0 and {ENV_NAME}=true on every container, minus T."
    );
    println!(
        "  restore: first later event with spec.replicas 1 and {ENV_NAME} on no container, minus END."
    );
    println!(
        "  operator writes: the operator impersonates runbook-bench-windows-operator; FlowSchemas"
    );
    println!(
        "    {FLOW_PREFIX}{{get,list,watch,crd-write,write,events,other}} (priority level exempt)"
    );
    println!("    count its requests in apiserver_flowcontrol_dispatched_requests_total.");
    println!(
        "  percentiles: nearest rank over the windows of this one run (one run: no medians over runs)."
    );
    if watch_errors > 0 {
        println!("  the bench's watches failed {watch_errors} time(s) and were retried.");
    }
    if !missing_open.is_empty() || !missing_restore.is_empty() {
        ok = false;
        println!();
        println!(
            "{} window(s) never showed both changes, {} never showed the restore:",
            missing_open.len(),
            missing_restore.len()
        );
        for m in missing_open.iter().chain(&missing_restore).take(20) {
            println!("  {m}");
        }
    }
    Ok(ok)
}

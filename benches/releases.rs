//! Benchmark of BlueGreenReleases (issue 5): "for one release and for 200 at once: p50/p99 from
//! 'new slot fully available' to 'Service selector switched', from switch to 'EndpointSlices
//! converged', and the whole release time for a template change with no validation steps;
//! operator RSS with 200 releases; API writes for a settled release (target: zero)."
//!
//! Run it through `hack/bench-releases.sh`, which starts a cluster (`bench` unless
//! BENCH_CLUSTER) and the operator (watching all namespaces) and passes them in through the
//! environment. Without `BENCH_OPERATOR_URL` this binary only prints how to run it and exits
//! 0, so a plain `cargo bench` never touches whatever cluster the current kubeconfig points at.
//!
//! Prints figures, not verdicts: it exits non-zero only when something broke (the operator
//! died, a wait timed out, a release never finished; the figures measured so far and the state
//! of the releases that did not finish are printed first). Progress goes to stderr (a line at
//! least every ~15 s), the summary table to stdout.
//!
//! # The stage
//!
//! * BENCH_NAMESPACES (4) namespaces `<BENCH_NAMESPACE>-NN`; BENCH_RELEASES (200)
//!   BlueGreenReleases `rel-NNNN` spread round-robin over them, each with its own active Service
//!   of the same name (selector `{app: <name>}`, port 80; no preview Service), `replicas`
//!   BENCH_REPLICAS (2), a pod template labelled `app: <name>` with one container (a made-up
//!   image: kwok "runs" the pods and makes them Ready) carrying the env variable
//!   `BENCH_REVISION`, no prePromotion / postPromotion steps, autoPromote (the default),
//!   `scaleDownDelay` BENCH_SCALE_DOWN_DELAY (10) s, standbyReplicas 0 (the default).
//! * A **template change** sets `BENCH_REVISION` to a new value (server-side apply of the whole
//!   release): a new revision, rolled into the idle slot and promoted.
//!
//! # The passes
//!
//! 1. **One release**: `rel-0000` alone is created and becomes Healthy, then its template is
//!    changed BENCH_SINGLE_ROUNDS (3) times, one change after the previous one has finished
//!    (phase Healthy, old slot scaled down) and the operator is quiet. Nothing else happens on
//!    the cluster meanwhile.
//! 2. **All at once**: the other releases are created at once (32 requests in flight) and
//!    become Healthy; then the templates of all BENCH_RELEASES releases (`rel-0000` included)
//!    are changed at once.
//! 3. **Settled**: after every release finished and the operator is quiet, BENCH_SETTLE (5) s
//!    idle, then BENCH_QUIET (60) s in which the operator's writes are counted (target 0).
//!
//! # Definitions
//!
//! All times are taken by this process on one monotonic clock: the moment a watch event
//! (BlueGreenReleases, slot Deployments, the Services, their EndpointSlices) reaches this
//! process (client-side receipt, so the watch delivery is included), or the moment a request
//! was sent. For each release and template change (T = the moment the change was sent; the old
//! slot and revision are read from the release's status before):
//!
//! * **new slot fully available** = the first event of the new slot's Deployment
//!   (`<name>-green` when blue was active) carrying the new revision's annotation in which
//!   `status.observedGeneration >= metadata.generation` and `spec.replicas` = updated =
//!   available = ready = status.replicas (> 0).
//! * **selector switched** = the first Service event after T whose selector's slot key
//!   (`ops.runbook.dev/slot`) names the new slot.
//! * **EndpointSlices converged** = the first moment after T at which the Service's
//!   EndpointSlices (label `kubernetes.io/service-name`, all of them, deletions followed) hold
//!   at least one endpoint and only ready endpoints of pods of the new slot (pod name prefix
//!   `<name>-<slot>-`; an unset `ready` counts as ready, as the API says): the condition the
//!   controller waits for before it records `TrafficSwitched`.
//! * **TrafficSwitched** = the first release event with `status.activeRevision` = the new
//!   revision and `status.switchedAt` set (condition TrafficSwitched True).
//! * **done (whole release)** = the first release event with phase Healthy and
//!   `activeRevision` = `desiredRevision` = the new revision: after `scaleDownDelay` the old
//!   slot was scaled to standbyReplicas. The wait for a pass also needs the old slot's
//!   Deployment to show `status.replicas` 0.
//! * **empty moments**: releases whose Service's EndpointSlices were seen, between T and done,
//!   with no ready endpoint at all (target 0); **early switches**: selector switched before the
//!   new slot was seen fully available (target 0).
//! * **operator writes per release** = the operator's writes from just before the changes were
//!   sent until it was quiet again after they finished / the releases changed. They are counted
//!   exactly with API Priority and Fairness: the script runs the operator impersonating the
//!   user `runbook-bench-releases-operator` and installs FlowSchemas `runbook-bench-bgr-*`
//!   (priority level `exempt`) that sort its requests by kind;
//!   `apiserver_flowcontrol_dispatched_requests_total` counts them. The breakdown by kind comes
//!   from the operator's own `runbook_operator_api_writes_total`.
//! * **quiet**: the operator's reconcile and write counters stand still for 3 s.
//! * **operator RSS**: VmRSS of the operator process (/proc/PID/status), sampled every 100 ms;
//!   "peak" is the highest sample in the interval, VmHWM the kernel's high-water mark.
//! * percentiles: nearest rank over the samples of this one run.
//!
//! Environment (defaults in parentheses; hack/bench-releases.sh sets them):
//! * BENCH_OPERATOR_URL: http://127.0.0.1:PORT of the operator's probe server (required)
//! * BENCH_OPERATOR_PID: the operator's pid, for RSS, CPU time and liveness
//! * BENCH_NAMESPACE (bench-releases): namespace prefix
//! * BENCH_RELEASES (200), BENCH_NAMESPACES (4), BENCH_REPLICAS (2)
//! * BENCH_SINGLE_ROUNDS (3): template changes of the lone release
//! * BENCH_SCALE_DOWN_DELAY (10): the releases' scaleDownDelay, seconds
//! * BENCH_QUIET (60), BENCH_SETTLE (5): the settled interval, seconds
//! * BENCH_TIMEOUT (600): seconds for any one wait
//! * BENCH_OUT: directory for raw data (per-release times, request deltas)

#[path = "releases/floor.rs"]
mod floor;
#[path = "releases/peer.rs"]
mod peer;
mod support;

use runbook_operator::well_known::{DEFAULT_SLOT_LABEL, RELEASE_LABEL, REVISION_ANNOTATION};
use support::figures::{Table, num};

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use runbook_operator::blue_green::BlueGreenRelease;

use serde_json::{Value, json};
use support::pace::RssSamples;
use support::{
    Change, Counters, Rig, Settings, Snapshot, Ticker, counts, env_positive, env_text, for_all,
    lock, now, progress, spawn_watch, spawn_watch_changes,
};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-releases";
/// Field manager of everything this binary writes.
const MANAGER: &str = "bench-releases";
/// Prefix of the FlowSchemas that count the operator's requests (see hack/bench-releases.sh).
const FLOW_PREFIX: &str = "runbook-bench-bgr-";
/// Label on the bench's namespaces, releases and Services.
const BENCH_LABEL: &str = "bench.runbook.dev/releases";
/// The label EndpointSlices carry naming their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The env variable whose value makes a revision.
const ENV_NAME: &str = "BENCH_REVISION";
/// Name of the operator's BlueGreenRelease controller in its metrics.
const CONTROLLER: &str = "bluegreenrelease";
/// Requests this binary has in flight when it creates or changes releases.
const PARALLEL: usize = 32;
/// The counters the raw request deltas (`api-delta-*.tsv`) hold, in that order.
const RAW_COUNTERS: [Counters; 3] = [Counters::Api, Counters::Flows, Counters::Op];

// ---------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------

/// This bench's knobs (the ones all benches read are `support::Settings`).
struct Config {
    prefix: String,
    /// Releases changed at once, ascending (1: the lone release); the largest is `releases`.
    sizes: Vec<usize>,
    /// Samples of the floor (one watch event + one PATCH).
    floor_rounds: usize,
    /// The peer's rollouts-controller (None: no peer).
    peer_bin: Option<std::path::PathBuf>,
    releases: usize,
    namespaces: usize,
    replicas: i32,
    single_rounds: usize,
    scale_down_delay: u64,
    quiet: u64,
    settle: u64,
}

impl Config {
    /// Reads the environment (before `Settings::from_env`, the order the errors come in).
    fn from_env() -> Result<Self> {
        let mut sizes: Vec<usize> = match env_text("BENCH_SIZES") {
            Some(text) => text
                .split([' ', ','])
                .filter(|w| !w.is_empty())
                .map(|w| {
                    w.parse::<usize>()
                        .with_context(|| format!("BENCH_SIZES: {w:?}"))
                })
                .collect::<Result<_>>()?,
            None => vec![1, env_positive("BENCH_RELEASES", 200)? as usize],
        };
        sizes.retain(|n| *n > 0);
        sizes.push(1);
        sizes.sort_unstable();
        sizes.dedup();
        let releases = sizes.last().copied().unwrap_or(1);
        let namespaces = env_positive("BENCH_NAMESPACES", 4)? as usize;
        let namespaces = namespaces.min(releases);
        if namespaces > 100 {
            bail!("BENCH_NAMESPACES ({namespaces}) must be at most 100");
        }
        if releases > 9999 {
            bail!("BENCH_RELEASES ({releases}) must be at most 9999");
        }
        Ok(Self {
            prefix: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-releases".into()),
            sizes,
            floor_rounds: env_positive("BENCH_FLOOR_ROUNDS", 20)? as usize,
            peer_bin: env_text("BENCH_PEER_BIN").map(Into::into),
            releases,
            namespaces,
            replicas: i32::try_from(env_positive("BENCH_REPLICAS", 2)?)
                .context("BENCH_REPLICAS")?,
            single_rounds: env_positive("BENCH_SINGLE_ROUNDS", 3)? as usize,
            scale_down_delay: env_positive("BENCH_SCALE_DOWN_DELAY", 10)?,
            quiet: env_positive("BENCH_QUIET", 60)?,
            settle: env_positive("BENCH_SETTLE", 5)?,
        })
    }

    fn namespace_at(&self, n: usize) -> String {
        format!("{}-{:02}", self.prefix, n)
    }

    /// The namespace of release `i`.
    fn namespace(&self, i: usize) -> String {
        self.namespace_at(i % self.namespaces)
    }

    /// "namespace/name" of release `i` (its active Service has the same key).
    fn key(&self, i: usize) -> String {
        key(&self.namespace(i), &release_name(i))
    }
}

fn release_name(i: usize) -> String {
    format!("rel-{i:04}")
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn object_key<K: Resource>(obj: &K) -> String {
    key(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

fn other_slot(slot: &str) -> &'static str {
    if slot == "blue" { "green" } else { "blue" }
}

// ---------------------------------------------------------------------------
// what the watches saw
// ---------------------------------------------------------------------------

/// The part of a release's status the bench follows.
#[derive(Clone, Default, PartialEq)]
struct StatusSeen {
    phase: Option<String>,
    active_slot: Option<String>,
    active_revision: Option<String>,
    desired_revision: Option<String>,
    switched_at: Option<String>,
    /// "Type=Status(Reason): message" of the conditions that are not as a healthy release has
    /// them, for the report on a release that did not finish.
    conditions: Vec<String>,
}

impl StatusSeen {
    fn healthy(&self) -> bool {
        self.phase.as_deref() == Some("Healthy")
            && self.active_revision.is_some()
            && self.active_revision == self.desired_revision
    }
}

/// One release's history, as far as the measurement needs it.
#[derive(Default)]
struct ReleaseSeen {
    last: Option<StatusSeen>,
    /// By revision: first event with `activeRevision` = it.
    active: HashMap<String, f64>,
    /// By revision: first event with `activeRevision` = it and `switchedAt` set.
    switched: HashMap<String, f64>,
    /// By revision: first event with phase Healthy and `activeRevision` = `desiredRevision` = it.
    healthy: HashMap<String, f64>,
    /// Phases in the order seen (consecutive repeats dropped).
    trail: Vec<String>,
    /// Every event with a status: (time, phase, what changed in the status since the event
    /// before, see [`status_changes`]).
    events: Vec<(f64, String, Vec<String>)>,
    /// The status of the last event, as JSON.
    status_json: Option<Value>,
}

/// One slot Deployment's history.
#[derive(Default)]
struct DeploymentSeen {
    /// By revision (the Deployment's annotation): first event fully available.
    available: HashMap<String, f64>,
    /// The last event: (revision, spec.replicas, status.replicas, ready, observed current).
    last: Option<(Option<String>, i32, i32, i32, bool)>,
}

/// A Service's EndpointSlices.
#[derive(Default)]
struct SlicesSeen {
    /// By slice name: (pod name, ready) of each endpoint.
    slices: HashMap<String, Vec<(Option<String>, bool)>>,
    /// (time, the slot the endpoints converged on, ready endpoints) whenever the pair changes.
    transitions: Vec<(f64, Option<&'static str>, usize)>,
}

#[derive(Default)]
struct Seen {
    /// "PREFIX-": the bench's namespaces start with it.
    ns_prefix: String,
    /// By "namespace/name".
    releases: HashMap<String, ReleaseSeen>,
    /// By "namespace/name".
    deployments: HashMap<String, DeploymentSeen>,
    /// By "namespace/name": (time, value of the slot key) whenever it changes.
    services: HashMap<String, Vec<(f64, Option<String>)>>,
    /// By the Service's "namespace/name".
    slices: HashMap<String, SlicesSeen>,
}

impl Seen {
    fn ours<K: Resource>(&self, obj: &K) -> bool {
        obj.meta()
            .namespace
            .as_deref()
            .is_some_and(|ns| ns.starts_with(&self.ns_prefix))
    }

    fn status(&self, key: &str) -> Option<&StatusSeen> {
        self.releases.get(key).and_then(|r| r.last.as_ref())
    }
}

/// What the watches saw, shared with their tasks.
type Shared = Arc<Mutex<Seen>>;

fn record_release(seen: &mut Seen, t: f64, bgr: BlueGreenRelease) {
    let entry = seen.releases.entry(object_key(&bgr)).or_default();
    let Some(status) = bgr.status.as_ref() else {
        return;
    };
    let conditions = status
        .conditions
        .iter()
        .filter(|c| {
            let healthy = if matches!(c.type_.as_str(), "Reconciling" | "Stalled" | "Degraded") {
                "False"
            } else {
                "True"
            };
            c.status != healthy
        })
        .map(|c| format!("{}={}({}): {}", c.type_, c.status, c.reason, c.message))
        .collect();
    let now_seen = StatusSeen {
        phase: status.phase.map(|p| p.as_str().to_owned()),
        active_slot: status.active_slot.clone(),
        active_revision: status.active_revision.clone(),
        desired_revision: status.desired_revision.clone(),
        switched_at: status.switched_at.as_ref().map(|t| t.0.to_string()),
        conditions,
    };
    if let Some(rev) = &now_seen.active_revision {
        entry.active.entry(rev.clone()).or_insert(t);
        if now_seen.switched_at.is_some() {
            entry.switched.entry(rev.clone()).or_insert(t);
        }
        if now_seen.healthy() {
            entry.healthy.entry(rev.clone()).or_insert(t);
        }
    }
    let phase = now_seen.phase.clone().unwrap_or_else(|| "-".into());
    if entry.trail.last() != Some(&phase) && entry.trail.len() < 40 {
        entry.trail.push(phase.clone());
    }
    let json = serde_json::to_value(status).unwrap_or(Value::Null);
    let changes = status_changes(entry.status_json.as_ref(), &json);
    entry.events.push((t, phase, changes));
    entry.status_json = Some(json);
    entry.last = Some(now_seen);
}

/// What differs between two statuses (JSON): the top-level fields, and for conditions
/// `conditions.TYPE.FIELD`; `(no status change)` when nothing does (an event for the spec or
/// metadata), `(first status)` without an earlier one.
fn status_changes(before: Option<&Value>, after: &Value) -> Vec<String> {
    let Some(before) = before else {
        return vec!["(first status)".into()];
    };
    let empty = serde_json::Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changes = Vec::new();
    for k in keys {
        let (x, y) = (b.get(k), a.get(k));
        if x == y {
            continue;
        }
        if k != "conditions" {
            changes.push(k.clone());
            continue;
        }
        let by_type = |v: Option<&Value>| -> HashMap<String, Value> {
            v.and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| Some((c.get("type")?.as_str()?.to_owned(), c.clone())))
                .collect()
        };
        let (cx, cy) = (by_type(x), by_type(y));
        let mut types: Vec<&String> = cx.keys().chain(cy.keys()).collect();
        types.sort();
        types.dedup();
        for ty in types {
            let (p, q) = (cx.get(ty), cy.get(ty));
            if p == q {
                continue;
            }
            for field in [
                "status",
                "reason",
                "message",
                "lastTransitionTime",
                "observedGeneration",
            ] {
                if p.and_then(|p| p.get(field)) != q.and_then(|q| q.get(field)) {
                    changes.push(format!("conditions.{ty}.{field}"));
                }
            }
        }
    }
    if changes.is_empty() {
        changes.push("(no status change)".into());
    }
    changes
}

/// Every replica updated, available and ready at the current generation, no other left.
fn fully_available(d: &Deployment) -> bool {
    let (Some(spec), Some(status)) = (&d.spec, &d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    want > 0
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && status.updated_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.ready_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
}

fn record_deployment(seen: &mut Seen, t: f64, d: Deployment) {
    if !seen.ours(&d) {
        return;
    }
    let revision = d.annotations().get(REVISION_ANNOTATION).cloned();
    let entry = seen.deployments.entry(object_key(&d)).or_default();
    if fully_available(&d)
        && let Some(rev) = &revision
    {
        entry.available.entry(rev.clone()).or_insert(t);
    }
    let status = d.status.clone().unwrap_or_default();
    entry.last = Some((
        revision,
        d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        status.replicas.unwrap_or(0),
        status.ready_replicas.unwrap_or(0),
        status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0),
    ));
}

fn record_service(seen: &mut Seen, t: f64, svc: Service) {
    let slot = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get(DEFAULT_SLOT_LABEL))
        .cloned();
    let entry = seen.services.entry(object_key(&svc)).or_default();
    if entry.last().map(|(_, s)| s) != Some(&slot) {
        entry.push((t, slot));
    }
}

fn record_slice(seen: &mut Seen, t: f64, change: Change<EndpointSlice>) {
    let (slice, deleted) = match change {
        Change::Applied(s) => (s, false),
        Change::Deleted(s) => (s, true),
    };
    if !seen.ours(&slice) {
        return;
    }
    let Some(service) = slice.labels().get(SERVICE_NAME_LABEL).cloned() else {
        return;
    };
    let ns = slice.namespace().unwrap_or_default();
    let entry = seen.slices.entry(key(&ns, &service)).or_default();
    if deleted {
        entry.slices.remove(&slice.name_any());
    } else {
        let endpoints = slice
            .endpoints
            .iter()
            .flatten()
            .map(|e| {
                let pod = e
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone());
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                (pod, ready)
            })
            .collect();
        entry.slices.insert(slice.name_any(), endpoints);
    }
    let state = converged(&service, &entry.slices);
    if entry.transitions.last().map(|(_, s, n)| (*s, *n)) != Some(state) {
        entry.transitions.push((t, state.0, state.1));
    }
}

/// The slot a Service's endpoints converged on (at least one endpoint, all ready, all pods of
/// that slot), and how many ready endpoints there are.
fn converged(
    service: &str,
    slices: &HashMap<String, Vec<(Option<String>, bool)>>,
) -> (Option<&'static str>, usize) {
    let blue = format!("{service}-blue-");
    let green = format!("{service}-green-");
    let mut ready = 0;
    let mut slot: Option<Option<&'static str>> = None;
    let mut mixed = false;
    for (pod, is_ready) in slices.values().flatten() {
        if *is_ready {
            ready += 1;
        } else {
            mixed = true;
        }
        let this = match pod.as_deref() {
            Some(p) if p.starts_with(&blue) => Some("blue"),
            Some(p) if p.starts_with(&green) => Some("green"),
            _ => None,
        };
        match slot {
            None => slot = Some(this),
            Some(s) if s != this => mixed = true,
            Some(_) => {}
        }
    }
    let slot = if mixed { None } else { slot.flatten() };
    (slot, ready)
}

// ---------------------------------------------------------------------------
// figures
// ---------------------------------------------------------------------------

/// Seconds to milliseconds.
fn ms(seconds: &[f64]) -> Vec<f64> {
    seconds.iter().map(|s| s * 1000.0).collect()
}

/// The operator's writes in `delta` by kind ("status 3, deployment 1, ..."), per `per`.
fn write_kinds(delta: &Snapshot, per: f64) -> String {
    let prefix = format!("write {CONTROLLER}/");
    let mut kinds: Vec<String> = delta
        .op
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?, v)))
        .map(|(k, v)| format!("{k} {}", num(v / per)))
        .collect();
    let other = delta.op_sum("write ") - delta.op_sum(&prefix);
    if other != 0.0 {
        kinds.push(format!("other controllers {}", num(other / per)));
    }
    if kinds.is_empty() {
        "none".into()
    } else {
        kinds.join(", ")
    }
}

// ---------------------------------------------------------------------------
// one template change of one release, measured
// ---------------------------------------------------------------------------

/// A template change sent.
struct Sent {
    /// Index of the release.
    i: usize,
    /// When the request was sent.
    t: f64,
    /// The release's active slot and revision before.
    old_slot: String,
    old_revision: String,
}

/// The figures of a set of template changes.
#[derive(Default)]
struct Samples {
    avail_to_switch: Vec<f64>,
    switch_to_converged: Vec<f64>,
    change_to_available: Vec<f64>,
    change_to_traffic: Vec<f64>,
    change_to_done: Vec<f64>,
    converged_to_recorded: Vec<f64>,
    /// Releases whose Service had no ready endpoint at some moment between T and done.
    empty_moments: Vec<String>,
    /// Releases switched before their new slot was seen fully available.
    early: Vec<String>,
    /// Releases with a figure missing, and why.
    missing: Vec<String>,
    /// Release events (with a status) per change, from the change until Healthy.
    events: Vec<f64>,
    /// Those events by phase.
    events_by_phase: BTreeMap<String, usize>,
    /// Those events by what changed in the status (one event can count several times).
    events_by_change: BTreeMap<String, usize>,
    /// Releases that left phase Healthy again after their change was done.
    relapsed: Vec<String>,
    /// Raw data: one line per release.
    raw: String,
}

impl Samples {
    fn extend(&mut self, other: Samples) {
        self.avail_to_switch.extend(other.avail_to_switch);
        self.switch_to_converged.extend(other.switch_to_converged);
        self.change_to_available.extend(other.change_to_available);
        self.change_to_traffic.extend(other.change_to_traffic);
        self.change_to_done.extend(other.change_to_done);
        self.converged_to_recorded
            .extend(other.converged_to_recorded);
        self.empty_moments.extend(other.empty_moments);
        self.early.extend(other.early);
        self.missing.extend(other.missing);
        self.events.extend(other.events);
        for (k, v) in other.events_by_phase {
            *self.events_by_phase.entry(k).or_default() += v;
        }
        for (k, v) in other.events_by_change {
            *self.events_by_change.entry(k).or_default() += v;
        }
        self.relapsed.extend(other.relapsed);
        self.raw.push_str(&other.raw);
    }
}

const RAW_HEADER: &str = "# seconds after the template change was sent (monotonic clock of this process); - = not seen\nrelease\tround\told_slot\tnew_slot\tnew_revision\tavailable\tswitched\tconverged\ttraffic_switched\tdone\tevents\tphases\n";

/// The figures of the changes `sent`, from what the watches saw until `until` (now).
fn measure(cfg: &Config, seen: &Seen, sent: &[Sent], round: &str, until: f64) -> Samples {
    let mut out = Samples::default();
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    for s in sent {
        let k = cfg.key(s.i);
        let name = release_name(s.i);
        let new_slot = other_slot(&s.old_slot);
        let release = seen.releases.get(&k);
        let new_rev = release
            .and_then(|r| r.last.as_ref())
            .and_then(|st| st.desired_revision.clone())
            .filter(|rev| *rev != s.old_revision);
        let Some(rev) = new_rev else {
            out.missing.push(format!(
                "{k}: the operator never recorded a new desiredRevision"
            ));
            continue;
        };
        let deploy = key(&cfg.namespace(s.i), &format!("{name}-{new_slot}"));
        let available = seen
            .deployments
            .get(&deploy)
            .and_then(|d| d.available.get(&rev))
            .copied();
        let switched = seen.services.get(&k).and_then(|v| {
            v.iter()
                .find(|(t, slot)| *t >= s.t && slot.as_deref() == Some(new_slot))
                .map(|(t, _)| *t)
        });
        let slices = seen.slices.get(&k);
        let conv = slices.and_then(|v| {
            v.transitions
                .iter()
                .find(|(t, slot, _)| *t >= s.t && *slot == Some(new_slot))
                .map(|(t, _, _)| *t)
        });
        let traffic = release.and_then(|r| r.switched.get(&rev)).copied();
        let done = release.and_then(|r| r.healthy.get(&rev)).copied();
        let end = done.unwrap_or(until);
        let mut events = 0;
        for (t, phase, changes) in release.iter().flat_map(|r| &r.events) {
            if *t < s.t {
                continue;
            }
            if *t <= end {
                events += 1;
                *out.events_by_phase.entry(phase.clone()).or_default() += 1;
                for c in changes {
                    *out.events_by_change.entry(c.clone()).or_default() += 1;
                }
            } else if done.is_some() && phase != "Healthy" {
                out.relapsed
                    .push(format!("{k}: phase {phase} {:.1}s after Healthy", t - end));
                break;
            }
        }
        out.events.push(events as f64);
        if let Some(v) = slices
            && v.transitions
                .iter()
                .any(|(t, _, n)| *t >= s.t && done.is_none_or(|d| *t <= d) && *n == 0)
        {
            out.empty_moments.push(k.clone());
        }
        if let (Some(a), Some(sw)) = (available, switched) {
            out.avail_to_switch.push(sw - a);
            if sw < a {
                out.early.push(k.clone());
            }
        }
        if let (Some(sw), Some(c)) = (switched, conv) {
            out.switch_to_converged.push(c - sw);
        }
        if let (Some(c), Some(tr)) = (conv, traffic) {
            out.converged_to_recorded.push(tr - c);
        }
        out.change_to_available.extend(available.map(|a| a - s.t));
        out.change_to_traffic.extend(traffic.map(|tr| tr - s.t));
        out.change_to_done.extend(done.map(|d| d - s.t));
        let what = [
            ("new slot available", available),
            ("selector switched", switched),
            ("EndpointSlices converged", conv),
            ("TrafficSwitched", traffic),
            ("Healthy", done),
        ];
        let not_seen: Vec<&str> = what
            .iter()
            .filter(|(_, t)| t.is_none())
            .map(|(w, _)| *w)
            .collect();
        if !not_seen.is_empty() {
            out.missing
                .push(format!("{k} ({rev}): not seen: {}", not_seen.join(", ")));
        }
        let rel = |v: Option<f64>| fmt(v.map(|v| v - s.t));
        let _ = writeln!(
            out.raw,
            "{k}\t{round}\t{}\t{new_slot}\t{rev}\t{}\t{}\t{}\t{}\t{}\t{events}\t{}",
            s.old_slot,
            rel(available),
            rel(switched),
            rel(conv),
            rel(traffic),
            rel(done),
            release.map_or("-".into(), |r| r.trail.join(">")),
        );
    }
    out
}

// ---------------------------------------------------------------------------
// the benchmark
// ---------------------------------------------------------------------------

/// The benchmark's state.
struct Bench {
    /// The operator's memory over time.
    rss: RssSamples<f64>,
    cfg: Config,
    /// The cluster and the operator.
    rig: Rig,
    seen: Shared,
    /// The value of BENCH_REVISION each release's template has now.
    revision: Mutex<Vec<u32>>,
}

/// What the releases of a wait must show.
#[derive(Clone, Copy)]
enum Goal {
    /// The first release done: Healthy.
    Created,
    /// A template change done: Healthy on a new revision in the other slot, whose old slot
    /// shows no replicas left.
    Changed,
}

impl Bench {
    fn releases(&self, ns: &str) -> Api<BlueGreenRelease> {
        Api::namespaced(self.rig.client.clone(), ns)
    }

    /// The release `i` with BENCH_REVISION = `rev`.
    fn release_body(&self, i: usize, rev: u32) -> Value {
        let name = release_name(i);
        json!({
            "apiVersion": "ops.runbook.dev/v1alpha1",
            "kind": "BlueGreenRelease",
            "metadata": {"name": name, "namespace": self.cfg.namespace(i), "labels": {BENCH_LABEL: "1"}},
            "spec": {
                "replicas": self.cfg.replicas,
                "services": {"active": name},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{
                        "name": "app",
                        "image": "registry.invalid/bench-app:1",
                        "env": [{"name": ENV_NAME, "value": rev.to_string()}]
                    }]}
                },
                "strategy": {"scaleDownDelay": format!("{}s", self.cfg.scale_down_delay)}
            }
        })
    }

    /// Sleeps `seconds`, checking the operator and saying what it waits for.
    async fn sleep(&self, what: &str, seconds: f64) -> Result<()> {
        let end = Instant::now() + Duration::from_secs_f64(seconds);
        let mut tick = Ticker::new();
        while Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(500))).await;
            self.rig.operator_alive()?;
            if tick.due() {
                progress(format!(
                    "  ... {what}: {:.0}s to go",
                    end.saturating_duration_since(Instant::now()).as_secs_f64()
                ));
            }
        }
        Ok(())
    }

    /// Waits until the operator's reconcile and write counters stand still for 3 s (at most
    /// BENCH_TIMEOUT); returns whether it got quiet.
    async fn wait_quiet(&self) -> Result<bool> {
        let deadline = Instant::now() + self.rig.timeout;
        let quiet = self
            .rig
            .wait_quiet(
                |snap| snap.op_sum("") + snap.op_writes(),
                || Instant::now() > deadline,
            )
            .await?;
        if !quiet {
            progress(format!(
                "  the operator did not get quiet within {:?}",
                self.rig.timeout
            ));
        }
        Ok(quiet)
    }

    /// Namespaces and Services, then the watches; waits until the Service watch shows them all.
    async fn setup(&self) -> Result<()> {
        let cfg = &self.cfg;
        let pp = PatchParams::apply(MANAGER).force();
        progress(format!(
            "creating {} namespaces {}-NN and {} Services (selector app: <release>)",
            cfg.namespaces, cfg.prefix, cfg.releases
        ));
        let namespaces: Api<Namespace> = Api::all(self.rig.client.clone());
        for n in 0..cfg.namespaces {
            let name = cfg.namespace_at(n);
            let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {BENCH_LABEL: "1"}}});
            namespaces
                .patch(&name, &pp, &Patch::Apply(&ns))
                .await
                .with_context(|| format!("creating namespace {name}"))?;
        }
        let client = self.rig.client.clone();
        spawn_watch(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(BENCH_LABEL),
            self.seen.clone(),
            record_service,
        );
        spawn_watch(
            Api::<BlueGreenRelease>::all(client.clone()),
            watcher::Config::default().labels(BENCH_LABEL),
            self.seen.clone(),
            record_release,
        );
        spawn_watch(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default().labels(RELEASE_LABEL),
            self.seen.clone(),
            record_deployment,
        );
        spawn_watch_changes(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
            self.seen.clone(),
            record_slice,
        );
        for_all(cfg.releases, PARALLEL, |i| {
            let (pp, ns, name) = (pp.clone(), cfg.namespace(i), release_name(i));
            let api: Api<Service> = Api::namespaced(client.clone(), &ns);
            async move {
                let svc = json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": ns, "labels": {BENCH_LABEL: "1"}},
                    "spec": {
                        "selector": {"app": name},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]
                    }
                });
                api.patch(&name, &pp, &Patch::Apply(&svc))
                    .await
                    .with_context(|| format!("creating Service {ns}/{name}"))?;
                Ok(())
            }
        })
        .await?;
        let want = cfg.releases;
        self.rig
            .wait_for(&format!("the watch to show {want} Services"), || {
                let seen = &self.seen;
                async move {
                    let n = lock(seen).services.len();
                    Ok((n < want).then(|| format!("{n}/{want}")))
                }
            })
            .await
    }

    /// Applies releases `which` with their current BENCH_REVISION + 1 (the first apply creates
    /// them with 1), `PARALLEL` at a time; returns what was sent, in `which`'s order. For a
    /// change, the old slot and revision come from the release's status as last seen.
    async fn apply(&self, which: &[usize]) -> Result<Vec<Sent>> {
        let pp = PatchParams::apply(MANAGER).force();
        let results: Vec<Result<Sent>> = stream::iter(which.iter().copied())
            .map(|i| {
                let rev = {
                    let mut revs = lock(&self.revision);
                    revs[i] += 1;
                    revs[i]
                };
                let body = self.release_body(i, rev);
                let api = self.releases(&self.cfg.namespace(i));
                let pp = pp.clone();
                let (old_slot, old_revision) = {
                    let seen = lock(&self.seen);
                    let st = seen.status(&self.cfg.key(i));
                    (
                        st.and_then(|s| s.active_slot.clone()).unwrap_or_default(),
                        st.and_then(|s| s.active_revision.clone())
                            .unwrap_or_default(),
                    )
                };
                async move {
                    let t = now();
                    api.patch(&release_name(i), &pp, &Patch::Apply(&body))
                        .await
                        .with_context(|| format!("applying release {}", release_name(i)))?;
                    Ok(Sent {
                        i,
                        t,
                        old_slot,
                        old_revision,
                    })
                }
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Whether the release of `sent` reached `goal`.
    fn reached(&self, seen: &Seen, sent: &Sent, goal: Goal) -> bool {
        let k = self.cfg.key(sent.i);
        let Some(st) = seen.status(&k) else {
            return false;
        };
        match goal {
            Goal::Created => st.healthy() && st.active_slot.is_some(),
            Goal::Changed => {
                let new_slot = other_slot(&sent.old_slot);
                let old = key(
                    &self.cfg.namespace(sent.i),
                    &format!("{}-{}", release_name(sent.i), sent.old_slot),
                );
                let old_gone = seen
                    .deployments
                    .get(&old)
                    .and_then(|d| d.last.as_ref())
                    .is_some_and(|(_, spec, replicas, _, current)| {
                        *spec == 0 && *replicas == 0 && *current
                    });
                st.healthy()
                    && st.desired_revision.as_deref() != Some(sent.old_revision.as_str())
                    && st.active_slot.as_deref() == Some(new_slot)
                    && old_gone
            }
        }
    }

    /// Waits until every release of `sent` reached `goal` (at most BENCH_TIMEOUT); returns the
    /// ones that did not.
    async fn wait_releases(&self, what: &str, sent: &[Sent], goal: Goal) -> Result<Vec<usize>> {
        let deadline = Instant::now() + self.rig.timeout;
        let mut tick = Ticker::new();
        loop {
            let (pending, phases) = {
                let seen = lock(&self.seen);
                let pending: Vec<usize> = sent
                    .iter()
                    .filter(|s| !self.reached(&seen, s, goal))
                    .map(|s| s.i)
                    .collect();
                let phases = counts(pending.iter().map(|i| {
                    seen.status(&self.cfg.key(*i))
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_else(|| "(no status)".into())
                }));
                (pending, phases)
            };
            if pending.is_empty() {
                return Ok(pending);
            }
            self.rig.operator_alive()?;
            if Instant::now() > deadline {
                progress(format!(
                    "  {} of {} releases did not finish within {:?} ({what}); phases: {phases}",
                    pending.len(),
                    sent.len(),
                    self.rig.timeout
                ));
                return Ok(pending);
            }
            if tick.due() {
                progress(format!(
                    "  ... {what}: {}/{} done; the others: {phases}",
                    sent.len() - pending.len(),
                    sent.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What the bench last saw of release `i`, for the report on a release that did not finish.
    fn describe(&self, i: usize) -> Vec<String> {
        let seen = lock(&self.seen);
        let k = self.cfg.key(i);
        let mut lines = Vec::new();
        match seen.releases.get(&k).and_then(|r| r.last.as_ref()) {
            None => lines.push(format!("{k}: no status seen")),
            Some(st) => {
                let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                lines.push(format!(
                    "{k}: phase {}, activeSlot {}, activeRevision {}, desiredRevision {}, switchedAt {}; phases seen: {}",
                    o(&st.phase),
                    o(&st.active_slot),
                    o(&st.active_revision),
                    o(&st.desired_revision),
                    o(&st.switched_at),
                    seen.releases[&k].trail.join(">")
                ));
                for c in &st.conditions {
                    lines.push(format!("    condition {c}"));
                }
            }
        }
        for slot in ["blue", "green"] {
            let d = key(
                &self.cfg.namespace(i),
                &format!("{}-{slot}", release_name(i)),
            );
            if let Some((rev, spec, replicas, ready, current)) =
                seen.deployments.get(&d).and_then(|d| d.last.as_ref())
            {
                lines.push(format!(
                    "    Deployment {d}: revision {}, spec.replicas {spec}, status replicas {replicas}, ready {ready}, observed current {current}",
                    rev.as_deref().unwrap_or("-")
                ));
            }
        }
        if let Some(v) = seen.services.get(&k) {
            let trail: Vec<String> = v
                .iter()
                .map(|(t, s)| format!("{}@{t:.1}s", s.as_deref().unwrap_or("-")))
                .collect();
            lines.push(format!("    Service slot key: {}", trail.join(" > ")));
        }
        if let Some(v) = seen.slices.get(&k)
            && let Some((t, slot, n)) = v.transitions.last()
        {
            lines.push(format!(
                "    EndpointSlices: {n} ready endpoint(s), converged on {} (since {t:.1}s)",
                slot.unwrap_or("-")
            ));
        }
        lines
    }
}

/// Rows for the figures of `samples` (of `n` template changes).
fn sample_rows(table: &mut Table, samples: &Samples, n: usize) {
    table.dist(
        "new slot fully available -> Service selector switched",
        ms(&samples.avail_to_switch),
        "ms",
        format!(
            "{} of {n} seen; switched before available: {}",
            samples.avail_to_switch.len(),
            samples.early.len()
        ),
    );
    table.dist(
        "selector switched -> EndpointSlices converged",
        ms(&samples.switch_to_converged),
        "ms",
        "only ready endpoints of new-slot pods, at least one",
    );
    table.dist(
        "template change -> TrafficSwitched True (switchedAt)",
        ms(&samples.change_to_traffic),
        "ms",
        "the release's traffic moved (no validation steps)",
    );
    table.dist(
        "template change -> Healthy (whole release)",
        ms(&samples.change_to_done),
        "ms",
        "includes scaleDownDelay, then the old slot scaled to 0",
    );
    table.dist(
        "  template change -> new slot fully available",
        ms(&samples.change_to_available),
        "ms",
        "rollout of the new slot (controller-manager, scheduler, kwok)",
    );
    table.dist(
        "  EndpointSlices converged -> status switchedAt seen",
        ms(&samples.converged_to_recorded),
        "ms",
        "the operator noticing convergence and writing status",
    );
    table.value(
        "  releases with 0 ready endpoints seen (target 0)",
        Some(samples.empty_moments.len() as f64),
        "count",
        "from the template change until Healthy",
    );
    let per = samples.events.len().max(1) as f64;
    table.dist(
        "  release events per change (the change + status writes)",
        samples.events.clone(),
        "count",
        format!(
            "change until Healthy; by phase (mean): {}",
            samples
                .events_by_phase
                .iter()
                .map(|(k, v)| format!("{k} {}", num(*v as f64 / per)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    table.value(
        "  releases that left Healthy again afterwards",
        Some(samples.relapsed.len() as f64),
        "count",
        "",
    );
}

/// The peer's rows: its latency per size and ours over it, its RSS and RSS per release.
fn peer_rows(
    table: &mut Table,
    peer: &peer::Figures,
    ours: &[(usize, Vec<f64>)],
    our_slope: Option<f64>,
    floor_ms: &[f64],
) {
    let p = |v: &[f64], q: f64| support::percentile(&support::sorted(v.to_vec()), q);
    let ratio =
        |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b);
    table.heading("-- peer: Argo Rollouts rollouts-controller (blueGreen, autoPromotionEnabled), same cluster");
    for (n, samples, missing) in &peer.latency {
        let theirs = ms(samples);
        let mine = ours
            .iter()
            .find(|(m, _)| m == n)
            .map(|(_, s)| ms(s))
            .unwrap_or_default();
        table.dist(
            format!("peer: new ReplicaSet available -> switched, {n} at once"),
            theirs.clone(),
            "ms",
            format!("{missing} change(s) without a sample"),
        );
        for (q, what) in [(0.5, "p50"), (0.99, "p99")] {
            table.value(
                format!("  ratio ours/theirs {what}, {n} at once"),
                ratio(p(&mine, q), p(&theirs, q)),
                "x",
                format!(
                    "ours {} ms, theirs {} ms",
                    p(&mine, q).map_or("-".into(), num),
                    p(&theirs, q).map_or("-".into(), num)
                ),
            );
        }
        if *n == 1 {
            table.value(
                "  ratio ours/floor p50, 1 alone",
                ratio(p(&mine, 0.5), p(floor_ms, 0.5)),
                "x",
                "",
            );
        }
    }
    table.value("peer VmRSS, idle", peer.idle_rss, "MiB", "");
    let mut points: Vec<(f64, f64)> = peer.idle_rss.map(|r| (0.0, r)).into_iter().collect();
    for (n, rss) in &peer.settled_rss {
        table.value(
            format!("peer VmRSS, {n} Rollout(s) settled"),
            *rss,
            "MiB",
            "",
        );
        points.extend(rss.map(|r| (*n as f64, r)));
    }
    let theirs = peer::slope(&points).map(|mib| mib * 1024.0);
    table.value(
        "peer RSS per settled Rollout (slope)",
        theirs,
        "KiB",
        "least squares over (Rollouts, VmRSS settled)",
    );
    table.value(
        "  ratio ours/theirs RSS per release",
        ratio(our_slope, theirs),
        "x",
        "",
    );
}

/// Lines: what changed in the releases' status per change (mean), most frequent first.
fn change_lines(what: &str, samples: &Samples) -> Vec<String> {
    let per = samples.events.len().max(1) as f64;
    let mut by: Vec<(&String, &usize)> = samples.events_by_change.iter().collect();
    by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let items: Vec<String> = by
        .iter()
        .map(|(k, v)| format!("{k} {}", num(**v as f64 / per)))
        .collect();
    let mut lines = vec![format!(
        "  {what} ({} changes): {}",
        samples.events.len(),
        items.join(", ")
    )];
    for r in samples.relapsed.iter().take(5) {
        lines.push(format!("    left Healthy again: {r}"));
    }
    lines
}

#[tokio::main]
async fn main() {
    support::main(
        "benches/releases.rs needs a cluster and a running operator: run hack/bench-releases.sh (or make bench)",
        bench,
    )
    .await;
}

/// Ok(false): the figures are printed, but some release did not finish.
async fn bench(operator_url: String) -> Result<bool> {
    let cfg = Config::from_env()?;
    let rig = Rig::connect(Settings::from_env(operator_url)?, FLOW_PREFIX).await?;
    progress(format!(
        "{} BlueGreenReleases in {} namespaces, {} replicas each, scaleDownDelay {}s, no validation steps; {} template change(s) of one release alone, then one of all at once",
        cfg.releases, cfg.namespaces, cfg.replicas, cfg.scale_down_delay, cfg.single_rounds
    ));
    let n = cfg.releases;
    let rss = RssSamples::start(rig.operator_pid, now);
    let bench = Bench {
        rss,
        seen: Arc::new(Mutex::new(Seen {
            ns_prefix: format!("{}-", cfg.prefix),
            ..Seen::default()
        })),
        revision: Mutex::new(vec![0; n]),
        cfg,
        rig,
    };
    bench.rig.operator_alive()?;
    bench.setup().await?;
    bench.wait_quiet().await?;
    let rss_idle = bench.rig.proc_mib("VmRSS");
    progress(format!(
        "floor: {} rounds of Deployment available (watch event) -> the bench's own selector PATCH -> Service event",
        bench.cfg.floor_rounds
    ));
    let floor_samples = floor::measure(
        &bench.rig.client,
        &bench.cfg.namespace_at(0),
        bench.cfg.floor_rounds,
        bench.cfg.replicas,
        bench.rig.timeout,
    )
    .await?;
    let floor_ms = ms(&floor_samples);
    let mut table = Table::default();
    table.heading("-- the floor on this cluster: one watch event + one PATCH, by the bench itself");
    table.dist(
        "Deployment available event -> own selector PATCH -> Service event",
        floor_ms.clone(),
        "ms",
        "the yardstick of 'new slot fully available -> Service selector switched'",
    );
    let mut stuck: Vec<(String, Vec<usize>)> = Vec::new();
    let mut raw = String::from(RAW_HEADER);

    // -----------------------------------------------------------------------
    // one release alone
    // -----------------------------------------------------------------------
    let cfg = &bench.cfg;
    progress(format!(
        "one release: creating {} and waiting for it to be Healthy",
        cfg.key(0)
    ));
    let created = bench.apply(&[0]).await?;
    let left = bench
        .wait_releases("first release of rel-0000", &created, Goal::Created)
        .await?;
    let mut single = Samples::default();
    let mut single_writes = Vec::new();
    let mut single_cpu = Vec::new();
    let mut single_kinds = Snapshot::default();
    let mut single_rounds = 0;
    if !left.is_empty() {
        stuck.push(("the first release of the lone release".into(), left));
    } else {
        bench.wait_quiet().await?;
        for round in 1..=cfg.single_rounds {
            progress(format!(
                "one release, change {round}/{}: template change of {}",
                cfg.single_rounds,
                cfg.key(0)
            ));
            let before = bench.rig.snapshot().await?;
            let cpu_before = bench.rig.cpu_seconds();
            let sent = bench.apply(&[0]).await?;
            let left = bench
                .wait_releases("the lone release's template change", &sent, Goal::Changed)
                .await?;
            bench.wait_quiet().await?;
            let delta = bench.rig.snapshot().await?.since(&before);
            single_cpu.extend(bench.rig.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b));
            bench.rig.write_out(
                &format!("api-delta-single-{round}.tsv"),
                &delta.tsv(&RAW_COUNTERS),
            );
            let samples = {
                let seen = lock(&bench.seen);
                measure(cfg, &seen, &sent, &format!("single-{round}"), now())
            };
            if let Some(t) = samples.change_to_done.first() {
                progress(format!(
                    "  done {t:.2}s after the change; {} operator writes",
                    num(delta.op_writes())
                ));
            }
            single.extend(samples);
            single_writes.push(delta.op_writes());
            for (k, v) in &delta.op {
                *single_kinds.op.entry(k.clone()).or_default() += v;
            }
            single_rounds += 1;
            if !left.is_empty() {
                stuck.push((format!("template change {round} of the lone release"), left));
                break;
            }
        }
    }
    raw.push_str(&single.raw);
    let rss_single = if stuck.is_empty() {
        bench.wait_quiet().await?;
        bench.rig.proc_mib("VmRSS")
    } else {
        None
    };
    table.heading(format!(
        "-- one release alone ({}): {single_rounds} template change(s), one after the other",
        cfg.key(0)
    ));
    sample_rows(&mut table, &single, single_rounds);
    table.dist(
        "operator writes per template change",
        single_writes.clone(),
        "req",
        format!(
            "FlowSchemas; by kind (operator metric, mean): {}",
            write_kinds(&single_kinds, single_writes.len().max(1) as f64)
        ),
    );
    table.dist(
        "operator CPU time per template change",
        single_cpu,
        "s",
        "user + system, from the change until quiet",
    );

    // -----------------------------------------------------------------------
    // releases at once, for each size
    // -----------------------------------------------------------------------
    let mut rss_points: Vec<(f64, f64)> = rss_idle.map(|r| (0.0, r)).into_iter().collect();
    rss_points.extend(rss_single.map(|r| (1.0, r)));
    let mut at_once_all: Vec<(usize, Samples)> = Vec::new();
    let mut made = 1;
    for n in cfg.sizes.iter().copied().filter(|n| *n > 1) {
        let all: Vec<usize> = (0..n).collect();
        let fresh: Vec<usize> = (made..n).collect();
        let mut first = Vec::new();
        let mut at_once = Samples::default();
        let mut change_delta = None;
        let mut change_cpu = None;
        let mut rss_before_change = None;
        let mut rss_change_peak = None;
        let mut change_spread = None;
        let mut create_spread = None;
        if stuck.is_empty() && n > 1 {
            progress(format!(
                "{n} at once: creating {} more releases ({PARALLEL} requests in flight)",
                fresh.len()
            ));
            let t_create = now();
            let created = bench.apply(&fresh).await?;
            made = n;
            create_spread = Some(now() - t_create);
            progress(format!(
                "  sent in {:.1}s; waiting for them to be Healthy",
                now() - t_create
            ));
            let left = bench
                .wait_releases("first releases", &created, Goal::Created)
                .await?;
            {
                let seen = lock(&bench.seen);
                for s in &created {
                    let Some(r) = seen.releases.get(&cfg.key(s.i)) else {
                        continue;
                    };
                    let rev = r.last.as_ref().and_then(|st| st.active_revision.as_ref());
                    if let Some(t) = rev.and_then(|rev| r.healthy.get(rev)) {
                        first.push(t - s.t);
                    }
                }
            }
            if !left.is_empty() {
                stuck.push(("the first release, all at once".into(), left));
            }
        }
        if stuck.is_empty() {
            bench.wait_quiet().await?;
            rss_before_change = bench.rig.proc_mib("VmRSS");
            rss_points.extend(rss_before_change.map(|r| (n as f64, r)));
            progress(format!(
                "all at once: changing the template of all {n} releases ({PARALLEL} requests in flight)"
            ));
            let before = bench.rig.snapshot().await?;
            let cpu_before = bench.rig.cpu_seconds();
            let t_change = now();
            let sent = bench.apply(&all).await?;
            change_spread = Some(now() - t_change);
            progress(format!(
                "  sent in {:.1}s; waiting for every release to be Healthy on its new revision and its old slot scaled down",
                now() - t_change
            ));
            let left = bench
                .wait_releases("template changes", &sent, Goal::Changed)
                .await?;
            bench.wait_quiet().await?;
            let t_quiet = now();
            let delta = bench.rig.snapshot().await?.since(&before);
            change_cpu = bench.rig.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
            bench
                .rig
                .write_out("api-delta-all-at-once.tsv", &delta.tsv(&RAW_COUNTERS));
            rss_change_peak = bench.rss.peak(t_change, t_quiet);
            at_once = {
                let seen = lock(&bench.seen);
                measure(cfg, &seen, &sent, &format!("{n}-at-once"), now())
            };
            progress(format!(
                "  {} of {n} done; last {:.1}s after its change",
                at_once.change_to_done.len(),
                at_once
                    .change_to_done
                    .iter()
                    .copied()
                    .reduce(f64::max)
                    .unwrap_or(f64::NAN)
            ));
            change_delta = Some(delta);
            if !left.is_empty() {
                stuck.push(("the template change, all at once".into(), left));
            }
        }
        raw.push_str(&at_once.raw);
        bench.rig.write_out("releases.tsv", &raw);
        table.heading(format!(
            "-- {n} releases at once: template of every release changed together{}",
            change_spread.map_or(String::new(), |s| format!(
                " (requests sent within {s:.1}s)"
            ))
        ));
        sample_rows(&mut table, &at_once, n);
        table.value(
            format!("operator VmRSS, {n} releases settled (before the change)"),
            rss_before_change,
            "MiB",
            "",
        );
        table.value(
            format!("operator VmRSS peak, {n} releases changing"),
            rss_change_peak,
            "MiB",
            "sampled every 100 ms from the change until quiet",
        );
        table.value(
            "operator writes per release",
            change_delta.as_ref().map(|d| d.op_writes() / n as f64),
            "req",
            change_delta.as_ref().map_or(String::new(), |d| {
                format!(
                    "FlowSchemas: {} ops.runbook.dev, {} other, {} Events in all; by kind (operator metric): {}",
                    num(d.flow("crd-write")),
                    num(d.flow("write")),
                    num(d.flow("events")),
                    write_kinds(d, n as f64)
                )
            }),
        );
        table.value(
            "operator reconciles per release",
            change_delta
                .as_ref()
                .map(|d| d.op_sum(&format!("reconcile {CONTROLLER}")) / n as f64),
            "count",
            change_delta.as_ref().map_or(String::new(), |d| {
                format!(
                    "operator GET+LIST in all: {}",
                    num(d.flow("get") + d.flow("list"))
                )
            }),
        );
        table.value(
            "operator CPU time for the change of all",
            change_cpu,
            "s",
            "user + system, from the change until quiet",
        );
        if n > 1 {
            table.dist(
                format!("  first release: create -> Healthy ({} at once)", n - 1),
                ms(&first),
                "ms",
                create_spread.map_or(String::new(), |s| format!("requests sent within {s:.1}s")),
            );
        }
        at_once_all.push((n, at_once));
    }
    let n = cfg.releases;

    // -----------------------------------------------------------------------
    // settled
    // -----------------------------------------------------------------------
    table.heading(format!("-- {n} releases settled"));
    if stuck.is_empty() {
        progress(format!(
            "settled: {}s idle, then {}s counting the operator's writes",
            cfg.settle, cfg.quiet
        ));
        bench.sleep("idle", cfg.settle as f64).await?;
        let a = bench.rig.snapshot().await?;
        let start = Instant::now();
        bench
            .sleep("counting the operator's writes", cfg.quiet as f64)
            .await?;
        let d = bench.rig.snapshot().await?.since(&a);
        let seconds = start.elapsed().as_secs_f64();
        bench
            .rig
            .write_out("api-delta-quiet.tsv", &d.tsv(&RAW_COUNTERS));
        table.value(
            format!("operator writes, {n} releases settled (target 0)"),
            Some(d.op_writes()),
            "writes",
            format!(
                "{seconds:.0} s; FlowSchemas: {} ops.runbook.dev, {} other, {} Events",
                num(d.flow("crd-write")),
                num(d.flow("write")),
                num(d.flow("events"))
            ),
        );
        table.write_checks(&d, CONTROLLER);
        let reconciles = d.op_sum(&format!("reconcile {CONTROLLER}"));
        let requests = d.flow("get") + d.flow("list") + d.op_writes();
        table.value(
            "operator API requests per reconcile, settled",
            (reconciles > 0.0).then(|| requests / reconciles),
            "req",
            format!(
                "{} reconciles, GET+LIST {}, writes {} in the interval",
                num(reconciles),
                num(d.flow("get") + d.flow("list")),
                num(d.op_writes())
            ),
        );
        if d.op_writes() > 0.0 {
            progress("  writes in the settled interval (all clients):");
            for (k, v) in d.api_writes() {
                progress(format!("    {k}: {v}"));
            }
        }
    } else {
        table.value(
            "operator writes, settled (target 0)",
            None,
            "writes",
            "not measured: some release did not finish",
        );
    }
    table.heading("-- operator memory");
    table.value(
        "operator VmRSS, idle before any release",
        rss_idle,
        "MiB",
        "",
    );
    table.value("operator VmRSS, 1 release settled", rss_single, "MiB", "");
    let our_slope = peer::slope(&rss_points).map(|mib| mib * 1024.0);
    table.value(
        format!("operator RSS per settled release, 0..{n} (slope)"),
        our_slope,
        "KiB",
        format!(
            "least squares over (releases, VmRSS settled): {}",
            rss_points
                .iter()
                .map(|(x, y)| format!("{x}:{}", num(*y)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    table.value(
        format!("operator VmRSS, {n} releases settled (end)"),
        bench.rig.proc_mib("VmRSS"),
        "MiB",
        "",
    );
    table.value(
        "operator VmHWM (peak RSS since it started)",
        bench.rig.proc_mib("VmHWM"),
        "MiB",
        "/proc/PID/status",
    );

    // -----------------------------------------------------------------------
    // the peer: Argo Rollouts, same shapes, same cluster
    // -----------------------------------------------------------------------
    let ours: Vec<(usize, Vec<f64>)> = std::iter::once((1, single.avail_to_switch.clone()))
        .chain(
            at_once_all
                .iter()
                .map(|(n, s)| (*n, s.avail_to_switch.clone())),
        )
        .collect();
    match bench.cfg.peer_bin.clone() {
        None => {
            table.heading("-- peer: Argo Rollouts left out (no ARGO_ROLLOUTS_BIN)");
        }
        Some(bin) if stuck.is_empty() => {
            let peer = peer::Peer {
                bin: &bin,
                client: bench.rig.client.clone(),
                namespace: format!("{}-peer", bench.cfg.prefix),
                out: bench
                    .rig
                    .out
                    .clone()
                    .unwrap_or_else(std::env::temp_dir)
                    .join("peer"),
                sizes: bench.cfg.sizes.clone(),
                single_rounds: bench.cfg.single_rounds,
                replicas: bench.cfg.replicas,
                scale_down_delay: bench.cfg.scale_down_delay,
                settle: bench.cfg.settle,
                timeout: bench.rig.timeout,
            };
            match peer.run().await {
                Err(err) => {
                    progress(format!("peer failed: {err:#}"));
                    table.heading(format!("-- peer: Argo Rollouts failed: {err:#}"));
                }
                Ok(figures) => peer_rows(&mut table, &figures, &ours, our_slope, &floor_ms),
            }
        }
        Some(_) => table.heading("-- peer: left out, some release did not finish"),
    }

    println!();
    table.print();
    println!();
    println!(
        "Definitions (monotonic clock of this process; watch events timed when they reach it):"
    );
    println!(
        "  template change: the moment the release's apply was sent; the new slot is the one not active before."
    );
    println!(
        "  available: first event of the new slot's Deployment with the new revision, observedGeneration current and"
    );
    println!("    spec.replicas = updated = available = ready = status.replicas.");
    println!(
        "  switched: first Service event whose selector's {DEFAULT_SLOT_LABEL} names the new slot."
    );
    println!(
        "  converged: first moment the Service's EndpointSlices hold only ready endpoints of new-slot pods (>= 1)."
    );
    println!(
        "  Healthy: first release event with phase Healthy and activeRevision = desiredRevision = the new revision."
    );
    println!(
        "  operator writes: the operator impersonates runbook-bench-releases-operator; FlowSchemas"
    );
    println!(
        "    {FLOW_PREFIX}{{get,list,watch,crd-write,write,events,other}} (priority level exempt)"
    );
    println!("    count its requests in apiserver_flowcontrol_dispatched_requests_total.");
    println!("  percentiles: nearest rank over the releases of this one run.");
    println!();
    println!(
        "What changed in the releases' status, per template change (mean over the events from the change until Healthy):"
    );
    for line in change_lines("one release alone", &single)
        .into_iter()
        .chain(
            at_once_all
                .iter()
                .flat_map(|(n, samples)| change_lines(&format!("{n} at once"), samples)),
        )
    {
        println!("{line}");
    }
    let watch_errors = support::watch_errors();
    if watch_errors > 0 {
        println!("  the bench's watches failed {watch_errors} time(s) and were retried.");
    }
    let mut ok = true;
    let missing: Vec<&String> = single
        .missing
        .iter()
        .chain(at_once_all.iter().flat_map(|(_, s)| &s.missing))
        .collect();
    if !missing.is_empty() {
        println!();
        println!("{} release change(s) with a figure missing:", missing.len());
        for m in missing.iter().take(20) {
            println!("  {m}");
        }
    }
    for (what, left) in &stuck {
        ok = false;
        println!();
        println!(
            "{} release(s) did not finish ({what}) within {:?}:",
            left.len(),
            bench.rig.timeout
        );
        for i in left.iter().take(10) {
            for line in bench.describe(*i) {
                println!("  {line}");
            }
        }
    }
    Ok(ok)
}

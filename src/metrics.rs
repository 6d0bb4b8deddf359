//! Prometheus metrics of the operator, served as text on `/metrics`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// Labels naming one controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name, e.g. `runbook`.
    pub controller: String,
}

/// Labels naming a controller and the kind of write it made.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Controller name.
    pub controller: String,
    /// What was written: `status` or `event`.
    pub write: String,
}

/// Labels naming what one alert did to one Runbook, or how a receiver request ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `started`, `deduplicated`, `cooled_down`, `ignored`, `cancel_waiting`, `invalid`,
    /// `no_match`, `failed`; for requests, the HTTP status code.
    pub outcome: String,
}

/// Labels naming one BackupPolicy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub policy: String,
}

/// What the backup gauges report for one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupFreshness {
    /// Which policy.
    pub labels: PolicyLabels,
    /// When the newest good backup (verified, when the policy verifies) finished.
    pub newest_good: Option<jiff::Timestamp>,
    /// The policy's recovery-point objective.
    pub rpo: Option<Duration>,
}

/// Reads every policy's freshness at scrape time, so ages are exact when scraped and a
/// deleted policy's series disappears with it.
pub type BackupSource = Source<BackupFreshness>;

/// Functions read at scrape time, one per controller set: with one set of controllers per
/// watched namespace, each installs its own, and a scrape reads them all.
pub struct Sources<T>(Arc<Mutex<Vec<Source<T>>>>);

/// One scrape-time source: the rows of one controller set's cache.
pub type Source<T> = Box<dyn Fn() -> Vec<T> + Send + Sync>;

impl<T> Clone for Sources<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Sources<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T> Sources<T> {
    /// Adds a source; every installed source is read at each scrape.
    pub fn install(&self, source: Source<T>) {
        if let Ok(mut sources) = self.0.lock() {
            sources.push(source);
        }
    }

    /// Every row of every source.
    fn read(&self) -> Vec<T> {
        match self.0.lock() {
            Ok(sources) => sources.iter().flat_map(|source| source()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Encodes one gauge family from `(labels, value)` rows; nothing when there are none.
/// Rows with the same labels (two sources covering one object) are written once.
fn encode_gauges<L: EncodeLabelSet + Ord>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(L, f64)>,
) -> Result<(), std::fmt::Error> {
    let rows: BTreeMap<L, f64> = rows.into_iter().collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in &rows {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// The collector behind `backup_age_seconds` and `backup_rpo_seconds`; each BackupPolicy
/// controller installs its source once its cache exists.
#[derive(Clone, Default)]
pub struct BackupGauges(Sources<BackupFreshness>);

impl std::fmt::Debug for BackupGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupGauges")
    }
}

impl BackupGauges {
    /// Adds a source (one per controller set).
    pub fn install(&self, source: BackupSource) {
        self.0.install(source);
    }
}

impl Collector for BackupGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let policies = self.0.read();
        let now = jiff::Timestamp::now();
        let ages = policies
            .iter()
            .filter_map(|p| {
                let at = p.newest_good?;
                let age = crate::time::until(at, now).as_secs_f64();
                Some((p.labels.clone(), age))
            })
            .collect();
        encode_gauges(
            &mut encoder,
            "backup_age_seconds",
            "Age of the newest good backup (verified, when the policy verifies) per BackupPolicy",
            ages,
        )?;
        let rpos = policies
            .iter()
            .filter_map(|p| Some((p.labels.clone(), p.rpo?.as_secs_f64())))
            .collect();
        encode_gauges(
            &mut encoder,
            "backup_rpo_seconds",
            "Recovery-point objective (spec.rpo) per BackupPolicy",
            rpos,
        )
    }
}

/// Labels naming one MaintenanceWindow.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct WindowLabels {
    /// The window's namespace.
    pub namespace: String,
    /// The window's name.
    pub window: String,
}

/// Labels naming one BlueGreenRelease.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ReleaseLabels {
    /// The release's namespace.
    pub namespace: String,
    /// The release's name.
    pub release: String,
}

/// Reads every window at scrape time: its labels and whether its changes are in effect.
pub type WindowSource = Source<(WindowLabels, bool)>;

/// Reads every release at scrape time: its labels and whether it is degraded.
pub type ReleaseSource = Source<(ReleaseLabels, bool)>;

/// The collector behind `maintenance_window_active` and `release_degraded`, computed from the
/// controllers' caches at scrape time so a deleted object's series disappears with it.
#[derive(Clone, Default)]
pub struct ObjectGauges {
    windows: Sources<(WindowLabels, bool)>,
    releases: Sources<(ReleaseLabels, bool)>,
}

impl std::fmt::Debug for ObjectGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectGauges")
    }
}

impl ObjectGauges {
    /// Adds a MaintenanceWindow source (one per controller set).
    pub fn install_windows(&self, source: WindowSource) {
        self.windows.install(source);
    }

    /// Adds a BlueGreenRelease source (one per controller set).
    pub fn install_releases(&self, source: ReleaseSource) {
        self.releases.install(source);
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

impl Collector for ObjectGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_gauges(
            &mut encoder,
            "maintenance_window_active",
            "1 while a MaintenanceWindow's changes are in effect (phase Active or Restoring), else 0",
            self.windows
                .read()
                .into_iter()
                .map(|(labels, active)| (labels, flag(active)))
                .collect(),
        )?;
        encode_gauges(
            &mut encoder,
            "release_degraded",
            "1 while a BlueGreenRelease is degraded (phase Degraded or condition Degraded=True: validation failed, aborted, rolled back, or no ready pods to serve), else 0",
            self.releases
                .read()
                .into_iter()
                .map(|(labels, degraded)| (labels, flag(degraded)))
                .collect(),
        )
    }
}

/// Labels naming a controller and how a reconcile ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Controller name.
    pub controller: String,
    /// [`ReconcileResult`] as text.
    pub result: String,
}

/// How a reconcile ended, as controller-runtime's `reconcile_total` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Returned `Action::await_change()`: nothing more until a watched object changes.
    Success,
    /// Returned `Action::requeue(..)`: a timer was set.
    RequeueAfter,
    /// Returned an error (retried by the error policy).
    Error,
}

impl ReconcileResult {
    /// Classifies a reconcile's outcome. kube's `Action` has no getter for its timer, but it
    /// is `PartialEq`: anything other than `await_change()` set one.
    pub fn of<E>(outcome: &Result<Action, E>) -> Self {
        match outcome {
            Err(_) => Self::Error,
            Ok(action) if *action == Action::await_change() => Self::Success,
            Ok(_) => Self::RequeueAfter,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RequeueAfter => "requeue_after",
            Self::Error => "error",
        }
    }
}

/// Labels of `build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version.
    pub version: String,
}

/// Labels naming a Runbook and how one of its runs ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// The run's namespace.
    pub namespace: String,
    /// The Runbook the run names.
    pub runbook: String,
    /// The run's terminal phase: Succeeded, Failed or Cancelled.
    pub result: String,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller.
    pub controller: String,
    /// The error's class (its `metric_label`).
    pub error: String,
}

/// Labels of a finished step.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The step's action, e.g. `scale`, `job`, `http`.
    pub r#type: String,
    /// The step's final phase: Succeeded, Failed or Skipped.
    pub result: String,
}

/// Labels of a run's concurrency lock outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LockLabels {
    /// `acquired`, `waited`, `skipped` or `taken_over`.
    pub outcome: String,
}

/// Labels of a traffic switch's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SwitchResultLabels {
    /// `Switched` (to a new revision) or `RolledBack` (back to the previous one).
    pub result: String,
}

/// Labels of a completed traffic switch.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SwitchLabels {
    /// The release's namespace.
    pub namespace: String,
    /// The release's name.
    pub release: String,
    /// `Switched` or `RolledBack`.
    pub result: String,
}

/// All metrics the operator exports.
pub struct Metrics {
    /// Reconciles finished, per controller (kept beside `reconcile_total` for dashboards and
    /// benchmarks that read it).
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles finished, per controller and [`ReconcileResult`].
    pub reconcile_results: Family<ResultLabels, Counter>,
    /// Reconciles that ended in an error, per controller and error class.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration in seconds, per controller.
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// Reconciles in progress, per controller.
    pub active_workers: Family<ControllerLabels, Gauge>,
    /// Objects waiting for a reconcile after their own watch event, per controller.
    pub workqueue_depth: Family<ControllerLabels, Gauge>,
    /// Writes to the API server, per controller and kind of write.
    pub api_writes: Family<WriteLabels, Counter>,
    /// Watched objects skipped because they could not be decoded, per controller.
    pub decode_errors: Family<ControllerLabels, Counter>,
    /// Reconciles that panicked (caught: each failed its object only), per controller.
    pub reconcile_panics: Family<ControllerLabels, Counter>,
    /// Events dropped because the publishing queue was full ([`crate::events`]).
    pub events_dropped: Counter,
    /// What alerts did, per outcome: one count per alert and matching Runbook (`no_match`:
    /// per alert that matched none).
    pub alerts: Family<AlertLabels, Counter>,
    /// Requests to the alert receiver, per HTTP status code answered.
    pub alert_requests: Family<AlertLabels, Counter>,
    /// Time to handle one receiver request (every alert recorded and its run created).
    pub alert_request_duration: Histogram,
    /// 1 once every controller's cache has synced.
    pub ready: Gauge,
    /// 1 while this process holds the leader Lease (or runs without leader election).
    pub leader: Gauge,
    /// RunbookRuns that reached a terminal phase.
    pub runs: Family<RunLabels, Counter>,
    /// Concurrency lock outcomes of runs (`spec.concurrency`).
    pub run_locks: Family<LockLabels, Counter>,
    /// Duration of finished steps.
    pub step_duration: Family<StepLabels, Histogram>,
    /// Targets a MaintenanceWindow failed to restore.
    pub window_restore_failures: Family<WindowLabels, Counter>,
    /// Completed traffic switches of BlueGreenReleases.
    pub release_switches: Family<SwitchLabels, Counter>,
    /// Time from a selector patch to the new slot serving alone.
    pub release_switch_duration: Family<SwitchResultLabels, Histogram>,
    /// Measurements of query and waitFor steps, per phase.
    pub metric_measurements: Family<MeasurementLabels, Counter>,
    /// Backup age and RPO per BackupPolicy, computed at scrape time.
    pub backups: BackupGauges,
    /// Window activity and release health, computed at scrape time.
    pub objects: ObjectGauges,
    /// The Runbooks that exist (namespace, name), read at scrape time: `runs_total` keeps
    /// series of these only.
    pub runbooks: Sources<(String, String)>,
    /// The per-object counter series written so far, so those of deleted objects can go.
    counted: Mutex<Counted>,
    /// Objects per controller whose watch event arrived and whose reconcile has not started.
    pending: Mutex<HashMap<String, HashSet<(String, String)>>>,
    registry: Registry,
}

/// Registers `metric` under `name` (the registry adds the `runbook_operator` prefix) and
/// returns it: the caller keeps the handle it updates, which shares its values with the
/// registered clone.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("runbook_operator");
        let reconciles = registered(
            &mut registry,
            "reconciles",
            "Reconciles finished, per controller (the sum of reconcile_total over result)",
            Family::<ControllerLabels, Counter>::default(),
        );
        let reconcile_results = registered(
            &mut registry,
            "reconcile",
            "Reconciles finished, per controller and result: success (waits for the next change), requeue_after (set a timer), error (retried with a backoff from 5s to 5 minutes)",
            Family::<ResultLabels, Counter>::default(),
        );
        let reconcile_errors = registered(
            &mut registry,
            "reconcile_errors",
            "Reconciles that returned an error, per controller and error class (e.g. forbidden, conflict, transport)",
            Family::<ErrorLabels, Counter>::default(),
        );
        let reconcile_duration = registered(
            &mut registry,
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
        );
        let active_workers = registered(
            &mut registry,
            "active_workers",
            "Reconciles in progress",
            Family::<ControllerLabels, Gauge>::default(),
        );
        let workqueue_depth = registered(
            &mut registry,
            "workqueue_depth",
            "Objects of the controller's own kind whose watch event arrived and whose reconcile has not started yet (one per object, as a workqueue dedups); reconciles woken by owned or related objects or by timers are not counted",
            Family::<ControllerLabels, Gauge>::default(),
        );
        let api_writes = registered(
            &mut registry,
            "api_writes",
            "Writes sent to the API server (status patches, events)",
            Family::<WriteLabels, Counter>::default(),
        );
        let decode_errors = registered(
            &mut registry,
            "decode_errors",
            "Watched objects skipped because they could not be decoded",
            Family::<ControllerLabels, Counter>::default(),
        );
        let reconcile_panics = registered(
            &mut registry,
            "reconcile_panics",
            "Reconciles that panicked; each was caught and failed its object only (Stalled, reason InternalError)",
            Family::<ControllerLabels, Counter>::default(),
        );
        let events_dropped = registered(
            &mut registry,
            "events_dropped",
            "Events not published because the queue of Events waiting to be published was full (1024); the reconciles that reported them went on",
            Counter::default(),
        );
        let alerts = registered(
            &mut registry,
            "alerts",
            "What alerts received from Alertmanager did, per outcome: started, deduplicated (the firing already started its run), cooled_down, ignored (resolved, onResolved Ignore), cancel_waiting, invalid (the Runbook's spec is invalid), failed (a write failed; Alertmanager retries), one per alert and matching Runbook; no_match, one per alert that matched no Runbook",
            Family::<AlertLabels, Counter>::default(),
        );
        let alert_requests = registered(
            &mut registry,
            "alert_requests",
            "Requests to the alert receiver, per HTTP status code answered (the outcome label): 200 done, 400 malformed, 401 no or wrong token, 413 too large, 500 a write failed, 503 not ready",
            Family::<AlertLabels, Counter>::default(),
        );
        let alert_request_duration = registered(
            &mut registry,
            "alert_request_duration_seconds",
            "Time from a receiver request's arrival to its reply: every alert recorded and its run created",
            Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        );
        let ready = registered(
            &mut registry,
            "ready",
            "1 once every controller's cache has synced",
            Gauge::default(),
        );
        let leader = registered(
            &mut registry,
            "leader",
            "1 while this process holds the leader Lease (or runs without leader election)",
            Gauge::default(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label is the operator's version",
            build_info,
        );
        let runs = registered(
            &mut registry,
            "runs",
            "RunbookRuns that reached a terminal phase (result: Succeeded, Failed, Cancelled), counted when the operator writes that phase",
            Family::<RunLabels, Counter>::default(),
        );
        let run_locks = registered(
            &mut registry,
            "run_locks",
            "Concurrency locks of RunbookRuns (spec.concurrency of their Runbook), by outcome: acquired (the run took the lock and starts), waited (the run was queued, counted once per run), skipped (policy Skip: the run ended Cancelled, reason ConcurrencySkipped), taken_over (the lock was taken from a holder that finished or was deleted without releasing it)",
            Family::<LockLabels, Counter>::default(),
        );
        let step_duration = registered(
            &mut registry,
            "step_duration_seconds",
            "Time from a step's start to its end (result: Succeeded, Failed, Skipped), observed when the operator writes the step's final phase; steps skipped without starting are not observed",
            Family::<StepLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.1, 2.0, 18))
            }),
        );
        let window_restore_failures = registered(
            &mut registry,
            "window_restore_failures",
            "Targets a MaintenanceWindow could not restore when it ended (a RestoreFailed Event each; lastWindow.result Failed)",
            Family::<WindowLabels, Counter>::default(),
        );
        let release_switches = registered(
            &mut registry,
            "release_switches",
            "Completed traffic switches of a BlueGreenRelease (result: Switched to a new slot, RolledBack to the previous one), counted when status.switchedAt is written",
            Family::<SwitchLabels, Counter>::default(),
        );
        let release_switch_duration = registered(
            &mut registry,
            "release_switch_duration_seconds",
            "Time from sending the active Service's selector patch to seeing its endpoints be only ready pods of the new slot",
            Family::<SwitchResultLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.05, 2.0, 14))
            }),
        );
        let metric_measurements = registered(
            &mut registry,
            "metric_measurements",
            "Measurements of query and waitFor steps recorded in a run's journal, per phase (Successful, Failed, Inconclusive, Error; a waitFor poll whose condition is not yet true is Failed)",
            Family::<MeasurementLabels, Counter>::default(),
        );
        let backups = BackupGauges::default();
        registry.register_collector(Box::new(backups.clone()));
        let objects = ObjectGauges::default();
        registry.register_collector(Box::new(objects.clone()));
        Self {
            reconciles,
            reconcile_results,
            reconcile_errors,
            reconcile_duration,
            active_workers,
            workqueue_depth,
            api_writes,
            decode_errors,
            reconcile_panics,
            events_dropped,
            alerts,
            alert_requests,
            alert_request_duration,
            ready,
            leader,
            runs,
            run_locks,
            step_duration,
            window_restore_failures,
            release_switches,
            release_switch_duration,
            metric_measurements,
            backups,
            objects,
            runbooks: Sources::default(),
            counted: Mutex::default(),
            pending: Mutex::default(),
            registry,
        }
    }
}

/// The label sets of the counters keyed by an object, as written.
#[derive(Default)]
struct Counted {
    runs: HashSet<RunLabels>,
    restores: HashSet<WindowLabels>,
    switches: HashSet<SwitchLabels>,
}

fn controller_labels(controller: &str) -> ControllerLabels {
    ControllerLabels {
        controller: controller.to_owned(),
    }
}

impl Metrics {
    /// Counts a reconcile, its result and its duration.
    pub fn observe_reconcile(&self, controller: &str, took: Duration, result: ReconcileResult) {
        let labels = controller_labels(controller);
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_results
            .get_or_create(&ResultLabels {
                controller: controller.to_owned(),
                result: result.as_str().to_owned(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts a reconcile that failed, by the error's [`crate::errors::MetricLabel`].
    pub fn count_reconcile_error(&self, controller: &str, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_owned(),
                error: error.to_owned(),
            })
            .inc();
    }

    /// Counts a reconcile that panicked (it was caught; see [`crate::runtime::run`]).
    pub fn count_reconcile_panic(&self, controller: &str) {
        self.reconcile_panics
            .get_or_create(&controller_labels(controller))
            .inc();
    }

    /// Counts one alert outcome (see [`Metrics::alerts`]).
    pub fn count_alert(&self, outcome: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one receiver request answered with `code`.
    pub fn count_alert_request(&self, code: u16) {
        self.alert_requests
            .get_or_create(&AlertLabels {
                outcome: code.to_string(),
            })
            .inc();
    }

    /// Counts one write to the API server.
    pub fn count_write(&self, controller: &str, write: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                controller: controller.to_owned(),
                write: write.to_owned(),
            })
            .inc();
    }

    /// A watch event for `namespace/name` reached `controller`: it waits for a reconcile.
    pub fn enqueued(&self, controller: &str, namespace: &str, name: &str) {
        self.update_pending(controller, |set| {
            set.insert((namespace.to_owned(), name.to_owned()));
        });
    }

    /// A reconcile of `namespace/name` started (or was dropped because the object is gone):
    /// it no longer waits.
    pub fn dequeued(&self, controller: &str, namespace: &str, name: &str) {
        self.update_pending(controller, |set| {
            set.remove(&(namespace.to_owned(), name.to_owned()));
        });
    }

    fn update_pending(
        &self,
        controller: &str,
        change: impl FnOnce(&mut HashSet<(String, String)>),
    ) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let set = pending.entry(controller.to_owned()).or_default();
        change(set);
        let depth = i64::try_from(set.len()).unwrap_or(i64::MAX);
        self.workqueue_depth
            .get_or_create(&controller_labels(controller))
            .set(depth);
    }

    /// Marks a reconcile of `controller` in progress until the guard drops.
    pub fn working(self: &Arc<Self>, controller: &str) -> Working {
        let labels = controller_labels(controller);
        self.active_workers.get_or_create(&labels).inc();
        Working {
            metrics: self.clone(),
            labels,
        }
    }

    /// Counts a run that reached the terminal phase `result`; `runbook` is `None` for a run
    /// whose Runbook does not exist (counted under `runbook=""`, so names nobody created
    /// never become series).
    pub fn count_run(&self, namespace: &str, runbook: Option<&str>, result: &str) {
        let labels = RunLabels {
            namespace: namespace.to_owned(),
            runbook: runbook.unwrap_or_default().to_owned(),
            result: result.to_owned(),
        };
        self.runs.get_or_create(&labels).inc();
        if let Ok(mut counted) = self.counted.lock() {
            counted.runs.insert(labels);
        }
    }

    /// Counts a concurrency lock `outcome` of a run: `acquired`, `waited`, `skipped` or
    /// `taken_over`.
    pub fn count_lock(&self, outcome: &str) {
        self.run_locks
            .get_or_create(&LockLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records a step of action `type_` that ended in `result` after `took`.
    pub fn observe_step(&self, type_: &str, result: &str, took: Duration) {
        self.step_duration
            .get_or_create(&StepLabels {
                r#type: type_.to_owned(),
                result: result.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts `failed` targets a window could not restore.
    pub fn count_restore_failures(&self, namespace: &str, window: &str, failed: u64) {
        if failed == 0 {
            return;
        }
        let labels = WindowLabels {
            namespace: namespace.to_owned(),
            window: window.to_owned(),
        };
        self.window_restore_failures
            .get_or_create(&labels)
            .inc_by(failed);
        if let Ok(mut counted) = self.counted.lock() {
            counted.restores.insert(labels);
        }
    }

    /// Counts a completed switch of a release and, when known, how long it took.
    pub fn observe_switch(
        &self,
        namespace: &str,
        release: &str,
        result: &str,
        took: Option<Duration>,
    ) {
        let labels = SwitchLabels {
            namespace: namespace.to_owned(),
            release: release.to_owned(),
            result: result.to_owned(),
        };
        self.release_switches.get_or_create(&labels).inc();
        if let Ok(mut counted) = self.counted.lock() {
            counted.switches.insert(labels);
        }
        if let Some(took) = took {
            self.release_switch_duration
                .get_or_create(&SwitchResultLabels {
                    result: result.to_owned(),
                })
                .observe(took.as_secs_f64());
        }
    }

    /// Removes the counter series of Runbooks, windows and releases that no longer exist, so
    /// series are bounded by the objects there are, not by every name ever seen. Only once
    /// every cache has listed (`ready`): before, an empty cache would look like deletions.
    fn prune(&self) {
        if self.ready.get() != 1 {
            return;
        }
        let Ok(mut counted) = self.counted.lock() else {
            return;
        };
        let runbooks: HashSet<(String, String)> = self.runbooks.read().into_iter().collect();
        counted.runs.retain(|l| {
            let keep = l.runbook.is_empty()
                || runbooks.contains(&(l.namespace.clone(), l.runbook.clone()));
            if !keep {
                self.runs.remove(l);
            }
            keep
        });
        let windows: HashSet<WindowLabels> = self
            .objects
            .windows
            .read()
            .into_iter()
            .map(|(labels, _)| labels)
            .collect();
        counted.restores.retain(|l| {
            let keep = windows.contains(l);
            if !keep {
                self.window_restore_failures.remove(l);
            }
            keep
        });
        let releases: HashSet<ReleaseLabels> = self
            .objects
            .releases
            .read()
            .into_iter()
            .map(|(labels, _)| labels)
            .collect();
        counted.switches.retain(|l| {
            let keep = releases.contains(&ReleaseLabels {
                namespace: l.namespace.clone(),
                release: l.release.clone(),
            });
            if !keep {
                self.release_switches.remove(l);
            }
            keep
        });
    }

    /// The registry in the Prometheus text format (0.0.4), which `/metrics` declares.
    pub fn render(&self) -> String {
        self.prune();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        open_metrics_to_text(&out)
    }
}

/// prometheus-client writes OpenMetrics, where a counter's HELP and TYPE name the family
/// (`x`) and its sample is `x_total`; in the Prometheus text format they must name the sample
/// (`x_total`), or Prometheus and `promtool check metrics` see a counter without metadata.
/// Renames those lines and drops the OpenMetrics `# EOF` terminator.
fn open_metrics_to_text(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A reconcile in progress: counted in `active_workers` until dropped, so a reconcile that
/// panics or is cancelled at shutdown is not counted forever.
pub struct Working {
    metrics: Arc<Metrics>,
    labels: ControllerLabels,
}

impl Drop for Working {
    fn drop(&mut self) {
        self.metrics
            .active_workers
            .get_or_create(&self.labels)
            .dec();
    }
}

/// Labels of a metric step's measurement.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeasurementLabels {
    /// `Successful`, `Failed`, `Inconclusive` or `Error`.
    pub phase: String,
}

impl Metrics {
    /// Counts a measurement of a query or waitFor step, by its phase.
    pub fn count_metric_measurement(&self, phase: &str) {
        self.metric_measurements
            .get_or_create(&MeasurementLabels {
                phase: phase.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests;

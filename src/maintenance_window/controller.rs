//! MaintenanceWindow controller: observe (the window, its runs, its targets) -> decide
//! ([`lifecycle::decide`], pure) -> apply (runs, changes, restores) -> status.
//!
//! A reconcile carries out decisions until one says to wait, then asks to be woken at the
//! instant that decision names (the next lead time, start or end): boundaries are timers,
//! and a reconcile between them writes nothing. Every change to a workload is recorded in
//! status before it is sent, and every restore reads the workload first, so a reconcile cut
//! short anywhere is finished by the next one.

use crate::well_known::{RESTORE_FINALIZER, WINDOW_LABEL};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, Patch};
use kube::core::PartialObjectMeta;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::changes::{self, Toward, Workload, Writes};
use super::lifecycle::{self, Decision, Occurrence, Phase, RunOutcome, WindowPlan, WindowState};
use super::types::{
    MaintenanceWindow, MaintenanceWindowStatus, SavedValue, TargetKind, WindowInterval,
    WindowTarget,
};
use crate::conditions::{self, Desired, SpecProblem, Status};
use crate::context::Context;
use crate::runbook::Runbook;
use crate::runbook_run::RunPhase;
use crate::runbook_run::{RunbookRef, RunbookRun, RunbookRunSpec, Trigger, TriggerType};
use crate::runtime::{self, Cache, Shutdown};
use crate::validation;

/// Controller name in logs and metrics.
pub const NAME: &str = "maintenancewindow";
/// Condition: the window's changes are in force.
pub const ACTIVE: &str = "Active";
/// Condition: every target names at least one existing object.
pub const TARGETS_FOUND: &str = "TargetsFound";
/// `lastWindow.result` of an occurrence that ran and restored everything.
pub const SUCCEEDED: &str = "Succeeded";
/// `lastWindow.result` when a value someone changed was kept.
pub const DRIFT_RESPECTED: &str = "DriftRespected";
/// `lastWindow.result` when a change or a restore could not be written.
pub const FAILED: &str = "Failed";

/// Decisions carried out in one reconcile before it gives up and asks to run again; a real
/// sequence (restore, afterEnd, finish, next preflight) is a handful.
const MAX_ACTIONS: usize = 16;

/// What can go wrong while reconciling a MaintenanceWindow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A write the API server refused or failed, naming the request.
    #[error(transparent)]
    Write(#[from] crate::write::WriteError),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(err) => crate::write::status_label(err),
            Error::Write(err) => err.metric_label(),
        }
    }
}

/// What the reconcile reads besides the window.
pub struct Observed {
    /// Runbooks named by beforeStart/afterEnd that do not exist, with the field path.
    pub missing_runbooks: Vec<(&'static str, String)>,
}

struct State {
    ctx: Arc<Context>,
    windows: Store<MaintenanceWindow>,
    runbooks: Cache<PartialObjectMeta<Runbook>>,
    runs: Cache<RunbookRun>,
    deployments: Cache<PartialObjectMeta<Deployment>>,
    statefulsets: Cache<PartialObjectMeta<StatefulSet>>,
    cronjobs: Cache<PartialObjectMeta<CronJob>>,
    /// Wakes windows waiting for a later window to restore a field they share.
    wake: UnboundedSender<ObjectRef<MaintenanceWindow>>,
    /// When this controller started: starts before it were missed, later ones only delayed.
    started: Timestamp,
    /// The windows' resourceVersions as this controller last wrote them.
    written: runtime::Written,
}

/// The Runbooks a window names, with the field naming each.
fn runbooks_named(mw: &MaintenanceWindow) -> impl Iterator<Item = (&'static str, &str)> {
    let before = mw
        .spec
        .before_start
        .as_ref()
        .map(|b| ("spec.beforeStart.runbook", b.runbook.as_str()));
    let after = mw
        .spec
        .after_end
        .as_ref()
        .map(|a| ("spec.afterEnd.runbook", a.runbook.as_str()));
    before.into_iter().chain(after)
}

/// Whether a window's changes are in effect, for `maintenance_window_active`: from the moment
/// it has made them (Active) until it has put them all back (Restoring ends).
pub fn changes_in_effect(mw: &MaintenanceWindow) -> bool {
    let phase = mw.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(Phase::from_status(phase), Phase::Active | Phase::Restoring)
}

/// Every cached window and whether its changes are in effect.
fn activity(windows: &Store<MaintenanceWindow>) -> Vec<(crate::metrics::WindowLabels, bool)> {
    windows
        .state()
        .iter()
        .map(|mw| {
            let labels = crate::metrics::WindowLabels {
                namespace: mw.namespace().unwrap_or_default(),
                window: mw.name_any(),
            };
            (labels, changes_in_effect(mw))
        })
        .collect()
}

/// Whether `target` names the object `name` with `labels`.
fn target_names(target: &WindowTarget, name: &str, labels: &BTreeMap<String, String>) -> bool {
    match (&target.name, &target.selector) {
        (Some(n), _) => n == name,
        (None, Some(selector)) => selector_matches(&selector.match_labels, labels),
        (None, None) => false,
    }
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Windows in the object's namespace with a target of `kind` naming it.
fn windows_targeting<K: Resource>(
    windows: &Store<MaintenanceWindow>,
    kind: TargetKind,
    obj: &PartialObjectMeta<K>,
) -> Vec<ObjectRef<MaintenanceWindow>> {
    let name = obj.name_any();
    let labels = obj.labels().clone();
    runtime::referrers(windows, obj.namespace(), |mw| {
        mw.spec
            .targets
            .iter()
            .any(|t| t.kind == kind && target_names(t, &name, &labels))
    })
}

/// Runs the MaintenanceWindow controller until shutdown; `synced` fires once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<MaintenanceWindow>(&ctx, NAME);
    let (runbooks, runbook_stream) = runtime::watch_metadata::<Runbook>(&ctx);
    let (runs, run_stream) = runtime::watch_decoded_with::<RunbookRun>(
        &ctx,
        NAME,
        watcher::Config::default().labels(WINDOW_LABEL),
    );
    let (deployments, deployment_stream) = runtime::watch_metadata::<Deployment>(&ctx);
    let (statefulsets, statefulset_stream) = runtime::watch_metadata::<StatefulSet>(&ctx);
    let (cronjobs, cronjob_stream) = runtime::watch_metadata::<CronJob>(&ctx);
    let (wake, woken) = unbounded();
    let windows = store.store.clone();
    let gauged = windows.clone();
    ctx.metrics
        .objects
        .install_windows(Box::new(move || activity(&gauged)));
    let (by_runbook, by_deployment, by_statefulset, by_cronjob) = (
        windows.clone(),
        windows.clone(),
        windows.clone(),
        windows.clone(),
    );
    let controller =
        Controller::for_stream(runtime::queued(&ctx, NAME, stream), store.store.clone())
            .watches_stream(runbook_stream, move |runbook| {
                let name = runbook.name_any();
                runtime::referrers(&by_runbook, runbook.namespace(), |mw| {
                    runbooks_named(mw).any(|(_, r)| r == name)
                })
            })
            .watches_stream(run_stream, |run: RunbookRun| {
                let namespace = run.namespace().unwrap_or_default();
                run.labels()
                    .get(WINDOW_LABEL)
                    .map(|window| ObjectRef::new(window).within(&namespace))
            })
            .watches_stream(deployment_stream, move |d| {
                windows_targeting(&by_deployment, TargetKind::Deployment, &d)
            })
            .watches_stream(statefulset_stream, move |s| {
                windows_targeting(&by_statefulset, TargetKind::StatefulSet, &s)
            })
            .watches_stream(cronjob_stream, move |c| {
                windows_targeting(&by_cronjob, TargetKind::CronJob, &c)
            })
            .reconcile_on(woken);
    runtime::report_synced(
        vec![
            runtime::listed(&store),
            runtime::listed(&runbooks),
            runtime::listed(&runs),
            runtime::listed(&deployments),
            runtime::listed(&statefulsets),
            runtime::listed(&cronjobs),
        ],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        windows,
        runbooks,
        runs,
        deployments,
        statefulsets,
        cronjobs,
        wake,
        started: Timestamp::now(),
        written: runtime::Written::default(),
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |mw, _| reconcile(mw, state.clone()),
        shutdown,
    )
    .await;
}

/// Splits a lifecycle error ("spec.x: message") into the field and the message.
fn spec_problem(error: &lifecycle::SpecError) -> SpecProblem {
    let text = error.to_string();
    match text.split_once(": ") {
        Some((field, message)) => SpecProblem::new(field, message),
        None => SpecProblem::new("spec", text),
    }
}

/// Every problem with the spec that the API server could not catch, at `now`.
pub fn problems(mw: &MaintenanceWindow, observed: &Observed, now: Timestamp) -> Vec<SpecProblem> {
    let spec = &mw.spec;
    let mut problems = Vec::new();
    if let Some(schedule) = &spec.schedule {
        if let Err(err) = crate::schedule::parse_cron(&schedule.cron) {
            problems.push(SpecProblem::new("spec.schedule.cron", err.to_string()));
        }
        if let Err(err) =
            crate::schedule::parse_time_zone(schedule.time_zone.as_deref().unwrap_or(""))
        {
            problems.push(SpecProblem::new("spec.schedule.timeZone", err.to_string()));
        }
        match schedule.duration.parse() {
            Err(err) => problems.push(SpecProblem::new("spec.schedule.duration", err.to_string())),
            Ok(d) if d.is_zero() => problems.push(SpecProblem::new(
                "spec.schedule.duration",
                "a window must last longer than 0s",
            )),
            Ok(_) => {}
        }
    }
    if let (Some(start), Some(end)) = (&spec.start, &spec.end)
        && end.0 <= start.0
    {
        problems.push(SpecProblem::new("spec.end", "end must be after start"));
    }
    if problems.is_empty() {
        // The times parse one by one; now the whole plan, and what depends on the clock (a
        // cron that never fires again, a duration longer than the gap between two starts).
        match WindowPlan::from_spec(spec) {
            Err(err) => problems.push(spec_problem(&err)),
            Ok(plan) => {
                if let Err(err) = plan.check(now) {
                    problems.push(spec_problem(&err));
                }
            }
        }
    }
    for (field, runbook) in &observed.missing_runbooks {
        problems.push(SpecProblem::new(
            *field,
            format!(
                "Runbook {runbook:?} does not exist in namespace {:?}; create it or fix the name",
                mw.namespace().unwrap_or_default()
            ),
        ));
    }
    problems
}

/// The objects `target` names, by the metadata caches: a named object (present or not: a
/// GET decides), or every object its selector matches.
async fn resolve(
    state: &State,
    namespace: &str,
    target: &WindowTarget,
) -> Result<Vec<String>, kube::Error> {
    if let Some(name) = &target.name {
        return Ok(vec![name.clone()]);
    }
    let Some(selector) = &target.selector else {
        return Ok(Vec::new());
    };
    let matching =
        |labels: &BTreeMap<String, String>| selector_matches(&selector.match_labels, labels);
    let mut names = match target.kind {
        TargetKind::Deployment => names_in(&state.deployments, namespace, matching).await,
        TargetKind::StatefulSet => names_in(&state.statefulsets, namespace, matching).await,
        TargetKind::CronJob => names_in(&state.cronjobs, namespace, matching).await,
    }?;
    names.sort();
    Ok(names)
}

async fn names_in<K>(
    cache: &Cache<PartialObjectMeta<K>>,
    namespace: &str,
    matching: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Result<Vec<String>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone,
{
    cache.synced().await?;
    Ok(cache
        .store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace) && matching(o.labels()))
        .map(|o| o.name_any())
        .collect())
}

async fn present<K>(
    cache: &Cache<PartialObjectMeta<K>>,
    namespace: &str,
    target: &WindowTarget,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone,
{
    Ok(match (&target.name, &target.selector) {
        (Some(name), _) => runtime::exists(cache, namespace, name).await?,
        (None, Some(selector)) => !names_in(cache, namespace, |labels| {
            selector_matches(&selector.match_labels, labels)
        })
        .await?
        .is_empty(),
        (None, None) => false,
    })
}

/// One sentence per target that names nothing that exists, with its field path.
async fn missing_targets(
    state: &State,
    mw: &MaintenanceWindow,
) -> Result<Vec<String>, kube::Error> {
    let namespace = mw.namespace().unwrap_or_default();
    let mut missing = Vec::new();
    for (i, target) in mw.spec.targets.iter().enumerate() {
        let found = match target.kind {
            TargetKind::Deployment => present(&state.deployments, &namespace, target).await,
            TargetKind::StatefulSet => present(&state.statefulsets, &namespace, target).await,
            TargetKind::CronJob => present(&state.cronjobs, &namespace, target).await,
        }?;
        if found {
            continue;
        }
        missing.push(match (&target.name, &target.selector) {
            (Some(name), _) => format!(
                "spec.targets[{i}]: {:?} {name:?} not found in namespace {namespace:?}",
                target.kind
            ),
            (None, Some(selector)) => format!(
                "spec.targets[{i}].selector: no {:?} in namespace {namespace:?} has the labels {}",
                target.kind,
                selector
                    .match_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (None, None) => format!("spec.targets[{i}]: set name or selector"),
        });
    }
    Ok(missing)
}

/// How the runs this window started stand, by name.
async fn run_outcomes(
    state: &State,
    mw: &MaintenanceWindow,
) -> Result<BTreeMap<String, RunOutcome>, kube::Error> {
    state.runs.synced().await?;
    let namespace = mw.namespace();
    let name = mw.name_any();
    Ok(state
        .runs
        .store
        .state()
        .iter()
        .filter(|run| run.namespace() == namespace && run.labels().get(WINDOW_LABEL) == Some(&name))
        .map(|run| {
            let outcome = match run.status.as_ref().and_then(|s| s.phase) {
                Some(RunPhase::Succeeded) => RunOutcome::Succeeded,
                Some(RunPhase::Failed | RunPhase::Cancelled) => RunOutcome::Failed,
                _ => RunOutcome::Running,
            };
            (run.name_any(), outcome)
        })
        .collect())
}

fn occurrence_of(interval: &WindowInterval) -> Occurrence {
    Occurrence {
        start: interval.start.0,
        end: interval.end.0,
    }
}

/// What the lifecycle needs to know from status and the runs.
fn window_state(
    mw: &MaintenanceWindow,
    status: &MaintenanceWindowStatus,
    runs: &BTreeMap<String, RunOutcome>,
    watching_since: Timestamp,
) -> WindowState {
    let phase = Phase::from_status(status.phase.as_deref());
    let activated = matches!(phase, Phase::Active | Phase::Restoring)
        .then(|| status.current_window.as_ref().map(occurrence_of))
        .flatten();
    let last_handled = [
        status.last_window.as_ref().map(|w| w.start.0),
        status.current_window.as_ref().map(|w| w.start.0),
    ]
    .into_iter()
    .flatten()
    .max();
    WindowState {
        phase,
        activated,
        has_saved: !status.saved.is_empty(),
        last_handled,
        runs: runs.clone(),
        created: mw.metadata.creation_timestamp.as_ref().map(|t| t.0),
        deleting: mw.metadata.deletion_timestamp.is_some(),
        watching_since: Some(watching_since),
    }
}

/// `at` as a person in the window's time zone reads it, with the UTC instant:
/// `2026-12-06 02:00 AEDT (2026-12-05T15:00:00Z)`. UTC alone for a one-off or UTC window.
fn local_time(mw: &MaintenanceWindow, at: Timestamp) -> String {
    let zone = mw
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .filter(|z| !z.is_empty() && *z != "UTC")
        .and_then(|z| jiff::tz::TimeZone::get(z).ok());
    match zone {
        Some(tz) => format!("{} ({at})", at.to_zoned(tz).strftime("%Y-%m-%d %H:%M %Z")),
        None => at.to_string(),
    }
}

fn interval(occurrence: &Occurrence, result: Option<&str>) -> WindowInterval {
    WindowInterval {
        start: Time(occurrence.start),
        end: Time(occurrence.end),
        result: result.map(str::to_owned),
    }
}

/// The status for `phase`: times, conditions and the rest of `base` as carried.
fn compose(
    mw: &MaintenanceWindow,
    base: &MaintenanceWindowStatus,
    phase: Phase,
    problems: &[SpecProblem],
    missing: &[String],
    now: Timestamp,
) -> (MaintenanceWindowStatus, validation::Verdict) {
    let mut status = base.clone();
    status.phase = Some(phase.as_str().into());
    status.observed_generation = mw.metadata.generation;
    let plan = WindowPlan::from_spec(&mw.spec).ok();
    let scheduling = problems.is_empty()
        && !matches!(phase, Phase::Suspended | Phase::Completed | Phase::Invalid);
    let next = plan
        .as_ref()
        .filter(|_| scheduling)
        .and_then(|p| p.next(now));
    status.next_start = next.map(|o| Time(o.start));
    status.next_end = next.map(|o| Time(o.end));
    status.upcoming = match plan.as_ref().filter(|_| scheduling) {
        Some(plan) => plan
            .upcoming(now, 3)
            .iter()
            .map(|o| Time(o.start))
            .collect(),
        None => Vec::new(),
    };
    let stamp = runtime::now();
    let verdict = validation::judge(
        &base.conditions,
        problems,
        mw.metadata.generation,
        &stamp,
        "the window is valid and scheduled",
    );
    let active = match (phase, &status.current_window) {
        (Phase::Active, Some(current)) => Desired::new(
            ACTIVE,
            Status::True,
            "WindowOpen",
            format!(
                "the window's changes are in force until {}",
                local_time(mw, current.end.0)
            ),
        ),
        _ => Desired::new(
            ACTIVE,
            Status::False,
            phase.as_str(),
            match (phase, &status.next_start) {
                (Phase::Restoring, _) => "putting back what the window changed".to_owned(),
                (_, Some(next)) => format!("the next window starts at {}", local_time(mw, next.0)),
                _ => "no window is scheduled".to_owned(),
            },
        ),
    };
    let targets = if missing.is_empty() {
        Desired::new(
            TARGETS_FOUND,
            Status::True,
            "TargetsFound",
            "every target names at least one object",
        )
    } else {
        Desired::new(
            TARGETS_FOUND,
            Status::False,
            "TargetNotFound",
            missing.join("; "),
        )
    };
    status.conditions = conditions::merge(
        &verdict.conditions,
        &[active, targets],
        mw.metadata.generation,
        &stamp,
    );
    (status, verdict)
}

/// One reconcile in progress: the window, what was observed, and the status as last written.
struct Reconcile<'a> {
    state: &'a State,
    mw: &'a MaintenanceWindow,
    namespace: String,
    name: String,
    problems: Vec<SpecProblem>,
    missing: Vec<String>,
    now: Timestamp,
    /// The status on the server (after our own writes).
    written: Option<MaintenanceWindowStatus>,
    /// The status being built.
    status: MaintenanceWindowStatus,
    runs: BTreeMap<String, RunOutcome>,
    ready_note: Option<validation::Note>,
    has_finalizer: bool,
}

impl Reconcile<'_> {
    fn ctx(&self) -> &Context {
        &self.state.ctx
    }

    async fn event(&self, type_: EventType, reason: &str, message: String) {
        self.ctx()
            .publish(NAME, &self.mw.object_ref(&()), type_, reason, message)
            .await;
    }

    /// Writes the status for `phase` if it changed.
    async fn save(&mut self, phase: Phase) -> Result<(), Error> {
        let (status, verdict) = compose(
            self.mw,
            &self.status,
            phase,
            &self.problems,
            &self.missing,
            self.now,
        );
        if verdict.note.is_some() {
            self.ready_note = verdict.note;
        }
        if let Some(rv) =
            runtime::apply_status(self.ctx(), NAME, self.mw, self.written.as_ref(), &status).await?
        {
            self.state
                .written
                .record::<MaintenanceWindow>(&self.namespace, &self.name, rv);
        }
        self.written = Some(status.clone());
        self.status = status;
        Ok(())
    }

    async fn set_finalizer(&mut self, present: bool) -> Result<(), Error> {
        if self.has_finalizer == present {
            return Ok(());
        }
        let api: Api<MaintenanceWindow> =
            Api::namespaced(self.ctx().client.clone(), &self.namespace);
        let finalizers = self.mw.finalizers();
        // A JSON patch that tests what it changes: no resourceVersion, which our own status
        // writes keep moving, yet a concurrent change to the list fails instead of being lost.
        let patch = if present {
            match finalizers.len() {
                0 => {
                    json!([{"op": "add", "path": "/metadata/finalizers", "value": [RESTORE_FINALIZER]}])
                }
                _ => json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": RESTORE_FINALIZER}
                ]),
            }
        } else {
            let Some(index) = finalizers.iter().position(|f| f == RESTORE_FINALIZER) else {
                self.has_finalizer = false;
                return Ok(());
            };
            json!([
                {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": RESTORE_FINALIZER},
                {"op": "remove", "path": format!("/metadata/finalizers/{index}")}
            ])
        };
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap_or_default();
        let result = api
            .patch(
                &self.name,
                &runtime::patch_params(),
                &Patch::Json::<()>(patch),
            )
            .await;
        self.ctx().metrics.count_write(NAME, "finalizer");
        match result {
            Ok(patched) => self.state.written.record::<MaintenanceWindow>(
                &self.namespace,
                &self.name,
                patched.resource_version().unwrap_or_default(),
            ),
            // Already gone: the finalizer was the last thing holding it.
            Err(kube::Error::Api(e)) if e.code == 404 && !present => {
                self.state
                    .written
                    .forget::<MaintenanceWindow>(&self.namespace, &self.name);
            }
            Err(err) => return Err(err.into()),
        }
        self.has_finalizer = present;
        Ok(())
    }

    /// Creates the RunbookRun `run_name` of `runbook` for `occurrence` (a second create of the
    /// same name finds the first).
    async fn start_run(
        &mut self,
        run_name: &str,
        runbook: &str,
        params: &BTreeMap<String, String>,
        occurrence: &Occurrence,
    ) -> Result<(), Error> {
        let mut run = RunbookRun::new(
            run_name,
            RunbookRunSpec {
                runbook_ref: RunbookRef {
                    name: runbook.to_owned(),
                },
                params: params.clone(),
                mode: None,
                trigger: Some(Trigger {
                    type_: TriggerType::MaintenanceWindow,
                    scheduled_time: Some(Time(occurrence.start)),
                    source: Some(format!("MaintenanceWindow/{}", self.name)),
                }),
            },
        );
        run.metadata.namespace = Some(self.namespace.clone());
        run.metadata.labels = Some(BTreeMap::from([(
            WINDOW_LABEL.to_owned(),
            self.name.clone(),
        )]));
        run.metadata.owner_references = self.mw.metadata.uid.clone().map(|uid| {
            vec![OwnerReference {
                api_version: "ops.runbook.dev/v1alpha1".into(),
                kind: "MaintenanceWindow".into(),
                name: self.name.clone(),
                uid,
                controller: Some(true),
                block_owner_deletion: Some(false),
            }]
        });
        let api: Api<RunbookRun> = Api::namespaced(self.ctx().client.clone(), &self.namespace);
        self.ctx().metrics.count_write(NAME, "create");
        match api.create(&runtime::post_params(), &run).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
        self.runs.insert(run_name.to_owned(), RunOutcome::Running);
        Ok(())
    }

    /// Reads one workload; `None` if it does not exist.
    async fn fetch(&self, kind: TargetKind, name: &str) -> Result<Option<Workload>, Error> {
        let client = self.ctx().client.clone();
        let ns = &self.namespace;
        let found = match kind {
            TargetKind::Deployment => Api::<Deployment>::namespaced(client, ns)
                .get_opt(name)
                .await?
                .map(|o| Workload::Deployment(Box::new(o))),
            TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(client, ns)
                .get_opt(name)
                .await?
                .map(|o| Workload::StatefulSet(Box::new(o))),
            TargetKind::CronJob => Api::<CronJob>::namespaced(client, ns)
                .get_opt(name)
                .await?
                .map(|o| Workload::CronJob(Box::new(o))),
        };
        Ok(found)
    }

    /// Sends `writes` to `workload`, its requests at once (they touch different fields: the
    /// scale subresource, the pod template's env, a CronJob's suspend flag).
    async fn send(&self, workload: &Workload, writes: &Writes) -> Result<(), kube::Error> {
        let client = &self.ctx().client;
        let ns = &self.namespace;
        let name = workload.name();
        let metrics = &self.ctx().metrics;
        let scale = async {
            let Some(replicas) = writes.replicas else {
                return Ok(());
            };
            let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
            match workload {
                Workload::StatefulSet(_) => {
                    Api::<StatefulSet>::namespaced(client.clone(), ns)
                        .patch_scale(&name, &runtime::patch_params(), &patch)
                        .await?;
                }
                _ => {
                    Api::<Deployment>::namespaced(client.clone(), ns)
                        .patch_scale(&name, &runtime::patch_params(), &patch)
                        .await?;
                }
            }
            metrics.count_write(NAME, "scale");
            Ok::<(), kube::Error>(())
        };
        let env = async {
            let Some(patch) = &writes.env_patch else {
                return Ok(());
            };
            let patch = Patch::Strategic(patch.clone());
            match workload {
                Workload::StatefulSet(_) => {
                    Api::<StatefulSet>::namespaced(client.clone(), ns)
                        .patch(&name, &runtime::patch_params(), &patch)
                        .await?;
                }
                _ => {
                    Api::<Deployment>::namespaced(client.clone(), ns)
                        .patch(&name, &runtime::patch_params(), &patch)
                        .await?;
                }
            }
            metrics.count_write(NAME, "env");
            Ok::<(), kube::Error>(())
        };
        let suspend = async {
            let Some(suspend) = writes.suspend else {
                return Ok(());
            };
            Api::<CronJob>::namespaced(client.clone(), ns)
                .patch(
                    &name,
                    &runtime::patch_params(),
                    &Patch::Merge(json!({"spec": {"suspend": suspend}})),
                )
                .await?;
            metrics.count_write(NAME, "suspend");
            Ok::<(), kube::Error>(())
        };
        let (scale, env, suspend) = futures::join!(scale, env, suspend);
        scale.and(env).and(suspend)
    }

    /// Marks the current occurrence's result, keeping the worst seen.
    fn mark_result(&mut self, result: &str) {
        if let Some(current) = &mut self.status.current_window {
            let rank = |r: Option<&str>| match r {
                Some(FAILED) => 2,
                Some(DRIFT_RESPECTED) => 1,
                _ => 0,
            };
            if rank(Some(result)) > rank(current.result.as_deref()) {
                current.result = Some(result.to_owned());
            }
        }
    }

    /// Saves the prior values of everything the targets change, then changes them.
    async fn activate(&mut self, occurrence: Occurrence, late: bool) -> Result<(), Error> {
        let mut saved: Vec<SavedValue> = Vec::new();
        let mut failures = Vec::new();
        let mut workloads: BTreeMap<String, Workload> = BTreeMap::new();
        for (i, target) in self.mw.spec.targets.iter().enumerate() {
            let names = resolve(self.state, &self.namespace, target).await?;
            if names.is_empty() {
                self.event(
                    EventType::Warning,
                    "TargetNotFound",
                    format!(
                        "spec.targets[{i}].selector: no {:?} in namespace {:?} matches; the other targets are changed",
                        target.kind, self.namespace
                    ),
                )
                .await;
            }
            for name in names {
                let known = workloads.get(&changes::label(target.kind, &name)).cloned();
                let found = match known {
                    Some(workload) => Some(workload),
                    None => self.fetch(target.kind, &name).await?,
                };
                let Some(workload) = found else {
                    self.event(
                        EventType::Warning,
                        "TargetNotFound",
                        format!(
                            "spec.targets[{i}]: {:?} {name:?} not found in namespace {:?}; the other targets are changed",
                            target.kind, self.namespace
                        ),
                    )
                    .await;
                    continue;
                };
                match changes::plan_activation(target, &workload) {
                    Ok(values) => {
                        for value in values {
                            // Two targets touching one field: the first in spec order wins.
                            if !saved
                                .iter()
                                .any(|s| s.target == value.target && s.field == value.field)
                            {
                                saved.push(value);
                            }
                        }
                    }
                    Err(err) => failures.push(format!("spec.targets[{i}]: {err}")),
                }
                workloads.insert(workload.label(), workload);
            }
        }
        if !failures.is_empty() {
            self.event(EventType::Warning, "ChangeFailed", failures.join("; "))
                .await;
        }
        if !saved.is_empty() {
            self.set_finalizer(true).await?;
        }
        let result = (!failures.is_empty()).then_some(FAILED);
        self.status.current_window = Some(interval(&occurrence, result));
        self.status.saved = saved;
        self.save(Phase::Active).await?;
        let applied = self.apply_pending(workloads).await?;
        self.event(
            EventType::Normal,
            "WindowOpened",
            format!(
                "window {}–{} opened{}: {}",
                occurrence.start,
                occurrence.end,
                if late { " late" } else { "" },
                if !applied.is_empty() {
                    applied.join("; ")
                } else if failures.is_empty() && self.status.saved.is_empty() {
                    "nothing to change".to_owned()
                } else {
                    "no change could be made; the Warning Events say why".to_owned()
                }
            ),
        )
        .await;
        Ok(())
    }

    /// Writes every saved value not yet written, then records them as written. `known` holds
    /// workloads already read in this reconcile (by `Kind/name`); the others are read first.
    /// All targets are written at once. Returns what was changed, one phrase per value.
    async fn apply_pending(
        &mut self,
        mut known: BTreeMap<String, Workload>,
    ) -> Result<Vec<String>, Error> {
        let mut by_target: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, s) in self.status.saved.iter().enumerate() {
            if !s.applied {
                by_target.entry(s.target.clone()).or_default().push(i);
            }
        }
        if by_target.is_empty() {
            return Ok(Vec::new());
        }
        let mut dropped = BTreeSet::new();
        let mut planned = Vec::new();
        for (target, indexes) in by_target {
            let workload = match known.remove(&target) {
                Some(workload) => Some(workload),
                None => match parse_target(&target) {
                    Some((kind, name)) => self.fetch(kind, &name).await?,
                    None => None,
                },
            };
            let Some(workload) = workload else {
                self.event(
                    EventType::Warning,
                    "TargetNotFound",
                    format!("{target} was deleted before the window could change it"),
                )
                .await;
                dropped.extend(indexes);
                continue;
            };
            let entries: Vec<_> = indexes
                .iter()
                .map(|&i| (&self.status.saved[i], Toward::Written))
                .collect();
            let writes =
                changes::writes(&workload, &entries).map_err(|e| Failure::Plan(e.to_string()));
            planned.push((target, indexes, workload, writes));
        }
        let this = &*self;
        let sent =
            futures::future::join_all(planned.iter().map(|(_, _, workload, writes)| async move {
                match writes {
                    Ok(writes) => this.send(workload, writes).await.map_err(Failure::from),
                    Err(Failure::Plan(message)) => Err(Failure::Plan(message.clone())),
                    Err(_) => Ok(()),
                }
            }))
            .await;
        let mut done = Vec::new();
        let mut phrases = Vec::new();
        let mut transient = None;
        for ((target, indexes, _, _), outcome) in planned.into_iter().zip(sent) {
            match outcome {
                Ok(()) => {
                    for &i in &indexes {
                        let s = &self.status.saved[i];
                        phrases.push(format!(
                            "{} {} {} -> {:?}",
                            s.target,
                            s.field,
                            s.prior
                                .as_deref()
                                .map_or("(absent)".into(), |p| format!("{p:?}")),
                            s.written
                        ));
                    }
                    done.extend(indexes);
                }
                // Left unapplied: the retry writes it again.
                Err(Failure::Transient(err)) => transient = Some(err),
                Err(failure) => {
                    self.event(
                        EventType::Warning,
                        "ChangeFailed",
                        format!("could not change {target}: {failure}; it is left as it was"),
                    )
                    .await;
                    self.mark_result(FAILED);
                    dropped.extend(indexes);
                }
            }
        }
        for i in done {
            self.status.saved[i].applied = true;
        }
        let mut index = 0;
        self.status.saved.retain(|_| {
            let keep = !dropped.contains(&index);
            index += 1;
            keep
        });
        self.save(Phase::Active).await?;
        if let Some(err) = transient {
            return Err(err.into());
        }
        Ok(phrases)
    }

    /// The windows (other than this one) that started later, are still open or restoring, and
    /// hold a saved value for the same field as `saved`: that field is theirs to put back
    /// first. Confirmed with a fresh read, as the cache may not yet show their last restore.
    async fn later_holders(&self) -> Result<Vec<MaintenanceWindow>, Error> {
        let Some(mine) = &self.status.current_window else {
            return Ok(Vec::new());
        };
        let candidates: Vec<String> = self
            .state
            .windows
            .state()
            .iter()
            .filter(|w| {
                w.namespace().as_deref() == Some(self.namespace.as_str())
                    && w.name_any() != self.name
            })
            .filter(|w| holds_later(w, mine.start.0, &self.name, &self.status.saved))
            .map(|w| w.name_any())
            .collect();
        let api: Api<MaintenanceWindow> =
            Api::namespaced(self.ctx().client.clone(), &self.namespace);
        let mut holders = Vec::new();
        for name in candidates {
            if let Some(w) = api.get_opt(&name).await?
                && holds_later(&w, mine.start.0, &self.name, &self.status.saved)
            {
                holders.push(w);
            }
        }
        Ok(holders)
    }

    /// Puts back every saved value no later window still holds. Returns when to look again
    /// if some values wait for a later window (`None` when all are restored).
    async fn restore(&mut self) -> Result<Option<Action>, Error> {
        let holders = self.later_holders().await?;
        let held = |s: &SavedValue| {
            holders.iter().any(|w| {
                w.status.as_ref().is_some_and(|st| {
                    st.saved
                        .iter()
                        .any(|o| o.target == s.target && o.field == s.field)
                })
            })
        };
        let mut by_target: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, s) in self.status.saved.iter().enumerate() {
            if !held(s) {
                by_target.entry(s.target.clone()).or_default().push(i);
            }
        }
        let on_drift = self.mw.spec.on_drift.unwrap_or_default();
        let mut restored = BTreeSet::new();
        let mut failed = 0;
        let mut phrases = Vec::new();
        for (target, indexes) in by_target {
            let workload = match parse_target(&target) {
                Some((kind, name)) => self.fetch(kind, &name).await?,
                None => None,
            };
            let Some(workload) = workload else {
                self.event(
                    EventType::Normal,
                    "TargetGone",
                    format!("{target} no longer exists; nothing to restore there"),
                )
                .await;
                restored.extend(indexes);
                continue;
            };
            let entries: Vec<&SavedValue> =
                indexes.iter().map(|&i| &self.status.saved[i]).collect();
            let plan = match changes::plan_restore(&workload, &entries, on_drift) {
                Ok(plan) => plan,
                Err(err) => {
                    self.event(
                        EventType::Warning,
                        "RestoreFailed",
                        format!("cannot restore {target}: {err}; put it back by hand"),
                    )
                    .await;
                    self.mark_result(FAILED);
                    failed += 1;
                    restored.extend(indexes);
                    continue;
                }
            };
            match self.send(&workload, &plan.writes).await {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(kube::Error::Api(e)) if permanent(e.code) => {
                    self.event(
                        EventType::Warning,
                        "RestoreFailed",
                        format!(
                            "cannot restore {target}: {}; put it back by hand",
                            e.message
                        ),
                    )
                    .await;
                    self.mark_result(FAILED);
                    failed += 1;
                }
                Err(err) => return Err(err.into()),
            }
            for drift in &plan.drift {
                if drift.kept {
                    self.event(EventType::Warning, "DriftRespected", drift.describe())
                        .await;
                    self.mark_result(DRIFT_RESPECTED);
                } else {
                    self.event(EventType::Normal, "DriftReverted", drift.describe())
                        .await;
                }
            }
            if !plan.writes.is_empty() {
                phrases.push(target.clone());
            }
            restored.extend(indexes);
        }
        let mut index = 0;
        self.status.saved.retain(|_| {
            let keep = !restored.contains(&index);
            index += 1;
            keep
        });
        self.save(Phase::Restoring).await?;
        // Counted once the status no longer lists the failed values: a retry of this
        // reconcile (the save failed) attempts them again, a later one no longer sees them.
        self.ctx()
            .metrics
            .count_restore_failures(&self.namespace, &self.name, failed);
        if !phrases.is_empty() {
            info!(window = %self.name, namespace = %self.namespace, restored = ?phrases, "restored");
        }
        // A window restoring before this one may have waited for these values.
        for w in self.state.windows.state().iter() {
            if w.namespace().as_deref() == Some(self.namespace.as_str())
                && w.name_any() != self.name
                && w.status.as_ref().and_then(|s| s.phase.as_deref())
                    == Some(Phase::Restoring.as_str())
            {
                let _ = self.state.wake.unbounded_send(ObjectRef::from(w.as_ref()));
            }
        }
        if self.status.saved.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = holders.iter().map(|w| w.name_any()).collect();
        let until = holders
            .iter()
            .filter_map(|w| w.status.as_ref()?.current_window.as_ref().map(|c| c.end.0))
            .max();
        self.event(
            EventType::Normal,
            "WaitingForLaterWindow",
            format!(
                "{} value(s) were changed again by the later window(s) {}; they are restored after those windows restore theirs",
                self.status.saved.len(),
                names.join(", ")
            ),
        )
        .await;
        Ok(Some(runtime::wake_at(until, self.now)))
    }

    /// Moves the occurrence to `lastWindow` and lets the finalizer go.
    async fn finish(&mut self, occurrence: Occurrence) -> Result<(), Error> {
        let result = self
            .status
            .current_window
            .take()
            .and_then(|w| w.result)
            .unwrap_or_else(|| SUCCEEDED.to_owned());
        self.status.last_window = Some(interval(&occurrence, Some(&result)));
        self.status.saved.clear();
        self.save(Phase::Scheduled).await?;
        self.set_finalizer(false).await?;
        let (type_, outcome) = match result.as_str() {
            SUCCEEDED => (EventType::Normal, "everything it changed is restored"),
            DRIFT_RESPECTED => (
                EventType::Normal,
                "restored, except values changed by someone else during the window, which were kept",
            ),
            _ => (
                EventType::Warning,
                "not everything went as planned: see this window's Warning Events (RestoreFailed names values to put back by hand)",
            ),
        };
        self.event(
            type_,
            "WindowClosed",
            format!(
                "window {}–{} closed: {result}; {outcome}",
                occurrence.start, occurrence.end
            ),
        )
        .await;
        Ok(())
    }
}

/// Why a change was not written.
enum Failure {
    /// Worth retrying (conflict, throttling, server or network error).
    Transient(kube::Error),
    /// The API server refused it; retrying the same write would be refused again.
    Refused(String),
    /// The saved value cannot be turned into a write.
    Plan(String),
}

impl From<kube::Error> for Failure {
    fn from(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(e) if permanent(e.code) || e.code == 404 => {
                Failure::Refused(e.message)
            }
            err => Failure::Transient(err),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(err) => write!(f, "{err}"),
            Failure::Refused(message) | Failure::Plan(message) => f.write_str(message),
        }
    }
}

/// A client error the same request would get again (not a conflict or throttling).
fn permanent(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 404 | 409 | 429)
}

/// `Kind/name` back into its parts.
fn parse_target(target: &str) -> Option<(TargetKind, String)> {
    let (kind, name) = target.split_once('/')?;
    let kind = match kind {
        "Deployment" => TargetKind::Deployment,
        "StatefulSet" => TargetKind::StatefulSet,
        "CronJob" => TargetKind::CronJob,
        _ => return None,
    };
    Some((kind, name.to_owned()))
}

/// Whether `other` started after the window (`start`, `name`) (ties broken by name), is still
/// open or restoring, and holds a saved value for a field in `saved`.
pub fn holds_later(
    other: &MaintenanceWindow,
    start: Timestamp,
    name: &str,
    saved: &[SavedValue],
) -> bool {
    let Some(status) = &other.status else {
        return false;
    };
    let Some(current) = &status.current_window else {
        return false;
    };
    let phase = Phase::from_status(status.phase.as_deref());
    if !matches!(phase, Phase::Active | Phase::Restoring) {
        return false;
    }
    let later =
        current.start.0 > start || (current.start.0 == start && other.name_any().as_str() > name);
    later
        && status.saved.iter().any(|o| {
            saved
                .iter()
                .any(|s| s.target == o.target && s.field == o.field)
        })
}

async fn reconcile(mw: Arc<MaintenanceWindow>, state: Arc<State>) -> Result<Action, Error> {
    let namespace = mw.namespace().unwrap_or_default();
    let api: Api<MaintenanceWindow> = Api::namespaced(state.ctx.client.clone(), &namespace);
    let Some(mw) = state.written.latest(&api, mw).await? else {
        return Ok(Action::await_change());
    };
    let mut missing_runbooks = Vec::new();
    for (field, runbook) in runbooks_named(&mw) {
        if !runtime::exists(&state.runbooks, &namespace, runbook).await? {
            missing_runbooks.push((field, runbook.to_owned()));
        }
    }
    let now = Timestamp::now();
    let problems = problems(&mw, &Observed { missing_runbooks }, now);
    let missing = missing_targets(&state, &mw).await?;
    let runs = run_outcomes(&state, &mw).await?;
    let mut r = Reconcile {
        state: &state,
        mw: &mw,
        name: mw.name_any(),
        namespace,
        problems,
        missing,
        now,
        written: mw.status.clone(),
        status: mw.status.clone().unwrap_or_default(),
        runs,
        ready_note: None,
        has_finalizer: mw.finalizers().iter().any(|f| f == RESTORE_FINALIZER),
    };
    let action = drive(&mut r).await;
    if let Some(note) = &r.ready_note {
        runtime::publish_note(&state.ctx, NAME, mw.as_ref(), note).await;
    }
    action
}

/// Carries out decisions until one is a wait.
async fn drive(r: &mut Reconcile<'_>) -> Result<Action, Error> {
    let mw = r.mw;
    let spec = &mw.spec;
    for _ in 0..MAX_ACTIONS {
        let window = window_state(r.mw, &r.status, &r.runs, r.state.started);
        let decision = lifecycle::decide(&r.name, spec, &window, r.now);
        let restoring = matches!(
            decision,
            Decision::Restore { .. }
                | Decision::StartAfterEnd { .. }
                | Decision::Finish { .. }
                | Decision::StayActive { .. }
                | Decision::Release
        );
        if !r.problems.is_empty() && !restoring {
            // Something the lifecycle cannot see (a missing Runbook) or a clock-dependent
            // problem: nothing new starts until the spec is fixed.
            r.save(Phase::Invalid).await?;
            return Ok(Action::await_change());
        }
        match decision {
            Decision::StartPreflight {
                occurrence,
                run_name,
            } => {
                let Some(before) = &spec.before_start else {
                    return Ok(Action::await_change());
                };
                r.start_run(&run_name, &before.runbook, &before.params, &occurrence)
                    .await?;
                r.save(Phase::Preparing).await?;
                r.event(
                    EventType::Normal,
                    "PreflightStarted",
                    format!(
                        "started RunbookRun {run_name} (Runbook {}) for the window starting at {}",
                        before.runbook, occurrence.start
                    ),
                )
                .await;
            }
            Decision::SkipOccurrence { occurrence, reason } => {
                r.status.last_window = Some(interval(&occurrence, Some(reason.result())));
                r.save(Phase::Scheduled).await?;
                let why = match reason {
                    lifecycle::SkipReason::PreflightFailed => format!(
                        "the beforeStart run {} failed",
                        lifecycle::preflight_run_name(&r.name, occurrence.start)
                    ),
                    lifecycle::SkipReason::PreflightUnfinished => format!(
                        "the beforeStart run {} had not finished when the window ended",
                        lifecycle::preflight_run_name(&r.name, occurrence.start)
                    ),
                    lifecycle::SkipReason::MissedStart => {
                        "the operator was not running at its start (missedStart)".to_owned()
                    }
                };
                r.event(
                    EventType::Warning,
                    reason.reason(),
                    format!(
                        "skipped the window {}–{}: {why}; nothing was changed",
                        occurrence.start, occurrence.end
                    ),
                )
                .await;
            }
            Decision::Activate { occurrence, late } => r.activate(occurrence, late).await?,
            Decision::StayActive {
                occurrence: _,
                requeue_at,
            } => {
                r.apply_pending(BTreeMap::new()).await?;
                r.save(Phase::Active).await?;
                return Ok(runtime::wake_at(Some(requeue_at), r.now));
            }
            Decision::Restore { .. } => {
                if let Some(wait) = r.restore().await? {
                    return Ok(wait);
                }
            }
            Decision::StartAfterEnd {
                occurrence,
                run_name,
            } => {
                let Some(after) = &spec.after_end else {
                    return Ok(Action::await_change());
                };
                r.start_run(&run_name, &after.runbook, &after.params, &occurrence)
                    .await?;
                r.event(
                    EventType::Normal,
                    "AfterEndStarted",
                    format!("started RunbookRun {run_name} (Runbook {})", after.runbook),
                )
                .await;
            }
            Decision::Finish { occurrence } => {
                r.finish(occurrence).await?;
                if r.mw.metadata.deletion_timestamp.is_some() {
                    return Ok(Action::await_change());
                }
            }
            Decision::Release => {
                r.set_finalizer(false).await?;
                return Ok(Action::await_change());
            }
            wait => {
                let phase = wait.phase().unwrap_or_default();
                r.save(phase).await?;
                return Ok(runtime::wake_at(wait.requeue_at(), r.now));
            }
        }
    }
    // Still acting after many steps: look again shortly rather than loop here.
    Ok(Action::requeue(std::time::Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(phase: Option<&str>) -> MaintenanceWindow {
        let mut value = serde_json::json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "MaintenanceWindow",
            "metadata": {"name": "nightly", "namespace": "shop"},
            "spec": {"start": "2026-06-10T01:00:00Z", "end": "2026-06-10T02:00:00Z"}
        });
        if let Some(phase) = phase {
            value["status"] = serde_json::json!({"phase": phase});
        }
        serde_json::from_value(value).expect("a MaintenanceWindow")
    }

    #[test]
    fn changes_are_in_effect_from_active_until_restored() {
        for phase in [
            Phase::Scheduled,
            Phase::Preparing,
            Phase::Active,
            Phase::Restoring,
            Phase::Completed,
            Phase::Suspended,
            Phase::Invalid,
        ] {
            let expected = matches!(phase, Phase::Active | Phase::Restoring);
            assert_eq!(
                changes_in_effect(&window(Some(phase.as_str()))),
                expected,
                "{phase:?}"
            );
        }
        assert!(!changes_in_effect(&window(None)), "never reconciled");
    }

    #[test]
    fn activity_names_each_cached_window() {
        let (reader, mut writer) = kube::runtime::reflector::store::<MaintenanceWindow>();
        writer.apply_watcher_event(&watcher::Event::Apply(window(Some("Active"))));
        let rows = activity(&reader);
        assert_eq!(
            rows,
            vec![(
                crate::metrics::WindowLabels {
                    namespace: "shop".into(),
                    window: "nightly".into()
                },
                true
            )]
        );
    }
}

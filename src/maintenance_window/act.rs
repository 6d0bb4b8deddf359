//! Carries out a MaintenanceWindow's decisions: the runs it starts (beforeStart, afterEnd),
//! the changes it makes and puts back (scale, env, suspend), its finalizer, and its status,
//! every write through a [`Writer`]. Every change to a workload is recorded in status before
//! it is sent, and every restore reads the workload first, so a reconcile cut short anywhere is
//! finished by the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::NAME;
use super::decide::changes::{self, Toward, Workload, Writes};
use super::decide::{self, Decision, Occurrence, RunOutcome, WindowState, lifecycle};
use super::observe::{self, Caches, Observed};
use super::status::{self, DRIFT_RESPECTED, FAILED, REASON_TARGET_NOT_FOUND, SUCCEEDED, interval};
use super::types::{
    MaintenanceWindow, MaintenanceWindowStatus, SavedValue, TargetKind, WindowPhase,
};
use crate::conditions::SpecProblem;
use crate::context::Context;
use crate::notifications;
use crate::runbook_run::{RunbookRef, RunbookRun, RunbookRunSpec, Trigger, TriggerType};
use crate::runtime;
use crate::validation;
use crate::well_known::{ACKNOWLEDGED, RESTORE_FINALIZER, WINDOW_LABEL};
use crate::write::{FinalizerGuard, WriteError, Writer};

/// What can go wrong while carrying out a decision.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read (a workload, a later window, a cache) failed.
    #[error(transparent)]
    Read(#[from] observe::Error),
    /// A write the API server refused or failed, naming the request.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// No client acting as the window's identity could be built.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The window's identity may not read a target.
    #[error(transparent)]
    Refused(#[from] crate::identity::Refused),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Read(err) => err.metric_label(),
            Error::Write(err) => err.metric_label(),
            Error::Identity(_) => "identity",
            Error::Refused(_) => "forbidden",
        }
    }
}

/// What every reconcile of the controller shares.
pub struct Shared {
    /// The operator's context.
    pub ctx: Arc<Context>,
    /// The controller's caches.
    pub caches: Caches,
    /// Wakes windows waiting for a later window to restore a field they share.
    pub wake: UnboundedSender<ObjectRef<MaintenanceWindow>>,
    /// When this controller started: starts before it were missed, later ones only delayed.
    pub started: Timestamp,
    /// The windows' resourceVersions as this controller last wrote them.
    pub written: runtime::Written,
}

/// One reconcile in progress: the window, what was observed, and the status as last written.
pub struct Reconcile<'a> {
    shared: &'a Shared,
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
    /// The window's resourceVersion after our own writes (guards a write that records
    /// lifecycle messages).
    resource_version: Option<String>,
    /// When the next lifecycle escalation falls due.
    notify_wake: Option<Timestamp>,
}

impl<'a> Reconcile<'a> {
    /// When the next lifecycle escalation falls due, as of the last status written.
    pub fn notify_wake(&self) -> Option<Timestamp> {
        self.notify_wake
    }

    /// Starts carrying out decisions about `mw`, as observed, with the spec's `problems`.
    pub fn new(
        shared: &'a Shared,
        mw: &'a MaintenanceWindow,
        observed: Observed,
        problems: Vec<SpecProblem>,
    ) -> Self {
        Reconcile {
            shared,
            mw,
            name: mw.name_any(),
            namespace: mw.namespace().unwrap_or_default(),
            problems,
            missing: observed.missing_targets,
            now: observed.now,
            written: mw.status.clone(),
            status: mw.status.clone().unwrap_or_default(),
            runs: observed.runs,
            ready_note: None,
            has_finalizer: mw.finalizers().iter().any(|f| f == RESTORE_FINALIZER),
            resource_version: mw.resource_version(),
            notify_wake: None,
        }
    }

    /// The window as read at the start of the reconcile.
    pub fn mw(&self) -> &'a MaintenanceWindow {
        self.mw
    }

    /// The window's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the reconcile looked.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// What the lifecycle needs to know, from the status as carried so far.
    pub fn window_state(&self) -> WindowState {
        WindowState::from_status(self.mw, &self.status, &self.runs, self.shared.started)
    }

    /// The Event to publish when readiness changed, once the reconcile is over.
    pub fn ready_note(&self) -> Option<&validation::Note> {
        self.ready_note.as_ref()
    }

    /// Carries out `decision`: `Some(action)` when it was a wait (or the reconcile should
    /// stop there), `None` when the window should be decided on again at once.
    pub async fn carry_out(&mut self, decision: Decision) -> Result<Option<Action>, Error> {
        if !self.problems.is_empty() && !decision.restores() {
            // Something the lifecycle cannot see (a missing Runbook) or a clock-dependent
            // problem: nothing new starts until the spec is fixed.
            self.save(WindowPhase::Invalid).await?;
            return Ok(Some(Action::await_change()));
        }
        let mw = self.mw;
        match decision {
            Decision::StartPreflight {
                occurrence,
                run_name,
            } => {
                let Some(before) = &mw.spec.before_start else {
                    return Ok(Some(Action::await_change()));
                };
                self.start_run(&run_name, &before.runbook, &before.params, &occurrence)
                    .await?;
                self.save(WindowPhase::Preparing).await?;
                self.event(
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
                self.status.last_window = Some(interval(&occurrence, Some(reason.result())));
                self.save(WindowPhase::Scheduled).await?;
                let why = match reason {
                    decide::SkipReason::PreflightFailed => format!(
                        "the beforeStart run {} failed",
                        decide::preflight_run_name(&self.name, occurrence.start)
                    ),
                    decide::SkipReason::PreflightUnfinished => format!(
                        "the beforeStart run {} had not finished when the window ended",
                        decide::preflight_run_name(&self.name, occurrence.start)
                    ),
                    decide::SkipReason::MissedStart => {
                        "the operator was not running at its start (missedStart)".to_owned()
                    }
                };
                self.event(
                    EventType::Warning,
                    reason.reason(),
                    format!(
                        "skipped the window {}–{}: {why}; nothing was changed",
                        occurrence.start, occurrence.end
                    ),
                )
                .await;
            }
            Decision::Activate { occurrence, late } => self.activate(occurrence, late).await?,
            Decision::StayActive {
                occurrence: _,
                requeue_at,
            } => {
                self.apply_pending(BTreeMap::new()).await?;
                self.save(WindowPhase::Active).await?;
                return Ok(Some(runtime::wake_at(Some(requeue_at), self.now)));
            }
            Decision::Restore { .. } => {
                if let Some(wait) = self.restore().await? {
                    return Ok(Some(wait));
                }
            }
            Decision::StartAfterEnd {
                occurrence,
                run_name,
            } => {
                let Some(after) = &mw.spec.after_end else {
                    return Ok(Some(Action::await_change()));
                };
                self.start_run(&run_name, &after.runbook, &after.params, &occurrence)
                    .await?;
                self.event(
                    EventType::Normal,
                    "AfterEndStarted",
                    format!("started RunbookRun {run_name} (Runbook {})", after.runbook),
                )
                .await;
            }
            Decision::Finish { occurrence } => {
                self.finish(occurrence).await?;
                if mw.metadata.deletion_timestamp.is_some() {
                    return Ok(Some(Action::await_change()));
                }
            }
            Decision::Release => {
                self.set_finalizer(false).await?;
                return Ok(Some(Action::await_change()));
            }
            wait => {
                let phase = wait.phase().unwrap_or_default();
                self.save(phase).await?;
                return Ok(Some(runtime::wake_at(wait.requeue_at(), self.now)));
            }
        }
        Ok(None)
    }

    fn ctx(&self) -> &Context {
        &self.shared.ctx
    }

    fn writer(&self) -> Writer<'_> {
        Writer::new(self.ctx(), NAME)
    }

    /// The writer for the window's targets (reads and writes), acting as the window's identity
    /// (`spec.serviceAccountName`, or the default ServiceAccount of its namespace).
    fn targets(&self) -> Result<Writer<'_>, crate::identity::IdentityError> {
        let identity = self.ctx().identities.of(
            &self.namespace,
            self.mw.spec.service_account_name.as_deref(),
        );
        self.writer().acting_as(&identity)
    }

    async fn event(&self, type_: EventType, reason: &str, message: String) {
        self.ctx()
            .publish(NAME, &self.mw.object_ref(&()), type_, reason, message)
            .await;
    }

    /// Writes the status for `phase` if it changed.
    async fn save(&mut self, phase: WindowPhase) -> Result<(), Error> {
        let (status, verdict) = status::status(
            self.mw,
            &self.status,
            phase,
            &self.problems,
            &self.missing,
            self.now,
            &crate::time::now(),
        );
        if verdict.note.is_some() {
            self.ready_note = verdict.note;
        }
        let mut status = status;
        // Lifecycle messages from the status about to be written, recorded in that write
        // before they are sent.
        let acknowledged = self.mw.annotations().get(ACKNOWLEDGED).map(String::as_str);
        let plan = notifications::plan(
            &self.mw.spec.notifications,
            &lifecycle::occurrences(&self.name, &self.namespace, acknowledged, &status),
            &self.status.sent_notifications,
            self.now,
        );
        status.sent_notifications = plan.sent;
        self.notify_wake = plan.wake_at;
        let identity = self.ctx().identities.of(
            &self.namespace,
            self.mw.spec.service_account_name.as_deref(),
        );
        if let Some(rv) = notifications::send::record_then_send(
            &self.writer(),
            (self.mw, self.resource_version.as_deref()),
            self.written.as_ref(),
            &status,
            &plan.send,
            || notifications::send::About {
                kind: "MaintenanceWindow",
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                uid: self.mw.uid().unwrap_or_default(),
                object: serde_json::to_value(self.mw).unwrap_or_default(),
                identity,
            },
        )
        .await?
        {
            self.resource_version = Some(rv.clone());
            self.shared
                .written
                .record::<MaintenanceWindow>(&self.namespace, &self.name, rv);
        }
        self.written = Some(status.clone());
        self.status = status;
        Ok(())
    }

    /// Adds or removes the restore finalizer, by the Writer's JSON patch that tests the list
    /// it changes: no resourceVersion, which our own status writes keep moving, yet a
    /// concurrent change to the list fails instead of being lost.
    async fn set_finalizer(&mut self, present: bool) -> Result<(), Error> {
        if self.has_finalizer == present {
            return Ok(());
        }
        // Judged on the window as read: nothing to write (no patch sent, nothing recorded).
        if crate::write::finalizer_patch(self.mw.finalizers(), RESTORE_FINALIZER, present).is_none()
        {
            self.has_finalizer = present;
            return Ok(());
        }
        match self
            .writer()
            .set_finalizer(
                self.mw,
                RESTORE_FINALIZER,
                present,
                &[],
                FinalizerGuard::List,
            )
            .await?
        {
            Some(patched) => self.shared.written.record::<MaintenanceWindow>(
                &self.namespace,
                &self.name,
                patched.resource_version().unwrap_or_default(),
            ),
            // Already gone: the finalizer was the last thing holding it.
            None => self
                .shared
                .written
                .forget::<MaintenanceWindow>(&self.namespace, &self.name),
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
                    alert: None,
                }),
            },
        );
        run.metadata.namespace = Some(self.namespace.clone());
        run.metadata.labels = Some(BTreeMap::from([(
            WINDOW_LABEL.to_owned(),
            crate::names::label_value(&self.name).into_owned(),
        )]));
        run.metadata.owner_references = self.mw.metadata.uid.clone().map(|uid| {
            vec![OwnerReference {
                api_version: MaintenanceWindow::api_version(&()).into_owned(),
                kind: MaintenanceWindow::kind(&()).into_owned(),
                name: self.name.clone(),
                uid,
                controller: Some(true),
                block_owner_deletion: Some(false),
            }]
        });
        let writer = self.writer();
        let api: Api<RunbookRun> = writer.api(&self.namespace);
        match writer.create(&api, &run, "create").await {
            Ok(_) => {}
            // A second create of the same name: the run exists already.
            Err(err) if err.already_exists() => {}
            Err(err) => return Err(err.into()),
        }
        self.runs.insert(run_name.to_owned(), RunOutcome::Running);
        Ok(())
    }

    /// Reads one workload; `None` if it does not exist.
    async fn fetch(&self, kind: TargetKind, name: &str) -> Result<Option<Workload>, Error> {
        let targets = self.targets()?;
        match observe::fetch(targets.client(), &self.namespace, kind, name).await {
            Ok(workload) => Ok(workload),
            Err(err) => match crate::runtime::forbidden(&err) {
                Some(message) => {
                    Err(crate::identity::Refused(crate::identity::refused(&message)).into())
                }
                None => Err(err.into()),
            },
        }
    }

    /// Sends `writes` to `workload`, its requests at once (they touch different fields: the
    /// scale subresource, the pod template's env, a CronJob's suspend flag).
    async fn send(&self, workload: &Workload, writes: &Writes) -> Result<(), Error> {
        let writer = self.targets()?;
        let ns = &self.namespace;
        let name = workload.name();
        let scale = async {
            let Some(replicas) = writes.replicas else {
                return Ok(());
            };
            let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
            match workload {
                Workload::StatefulSet(_) => {
                    let api: Api<StatefulSet> = writer.api(ns);
                    writer.patch_scale(&api, &name, &patch, "scale").await?;
                }
                _ => {
                    let api: Api<Deployment> = writer.api(ns);
                    writer.patch_scale(&api, &name, &patch, "scale").await?;
                }
            }
            Ok::<(), WriteError>(())
        };
        let env = async {
            let Some(patch) = &writes.env_patch else {
                return Ok(());
            };
            let patch = Patch::Strategic(patch.clone());
            match workload {
                Workload::StatefulSet(_) => {
                    let api: Api<StatefulSet> = writer.api(ns);
                    writer.patch(&api, &name, &patch, "env").await?;
                }
                _ => {
                    let api: Api<Deployment> = writer.api(ns);
                    writer.patch(&api, &name, &patch, "env").await?;
                }
            }
            Ok::<(), WriteError>(())
        };
        let suspend = async {
            let Some(suspend) = writes.suspend else {
                return Ok(());
            };
            let api: Api<CronJob> = writer.api(ns);
            let patch = Patch::Merge(json!({"spec": {"suspend": suspend}}));
            writer.patch(&api, &name, &patch, "suspend").await?;
            Ok::<(), WriteError>(())
        };
        let (scale, env, suspend) = futures::join!(scale, env, suspend);
        Ok(scale.and(env).and(suspend)?)
    }

    /// Marks the current occurrence's result, keeping the worst seen.
    fn mark_result(&mut self, result: &str) {
        if let Some(current) = &mut self.status.current_window {
            status::mark_result(current, result);
        }
    }

    /// Saves the prior values of everything the targets change, then changes them.
    async fn activate(&mut self, occurrence: Occurrence, late: bool) -> Result<(), Error> {
        let mut saved: Vec<SavedValue> = Vec::new();
        let mut failures = Vec::new();
        let mut workloads: BTreeMap<String, Workload> = BTreeMap::new();
        for (i, target) in self.mw.spec.targets.iter().enumerate() {
            let names = observe::resolve(&self.shared.caches, &self.namespace, target).await?;
            if names.is_empty() {
                self.event(
                    EventType::Warning,
                    REASON_TARGET_NOT_FOUND,
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
                        REASON_TARGET_NOT_FOUND,
                        format!(
                            "spec.targets[{i}]: {:?} {name:?} not found in namespace {:?}; the other targets are changed",
                            target.kind, self.namespace
                        ),
                    )
                    .await;
                    continue;
                };
                match changes::activation_values(target, &workload) {
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
        self.save(WindowPhase::Active).await?;
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
                None => match changes::parse_target(&target) {
                    Some((kind, name)) => self.fetch(kind, &name).await?,
                    None => None,
                },
            };
            let Some(workload) = workload else {
                self.event(
                    EventType::Warning,
                    REASON_TARGET_NOT_FOUND,
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
            let writes = changes::writes(&workload, &entries)
                .map_err(|e| Failure::Unwritable(e.to_string()));
            planned.push((target, indexes, workload, writes));
        }
        let this = &*self;
        let sent =
            futures::future::join_all(planned.iter().map(|(_, _, workload, writes)| async move {
                match writes {
                    Ok(writes) => this.send(workload, writes).await.map_err(Failure::from),
                    Err(Failure::Unwritable(message)) => Err(Failure::Unwritable(message.clone())),
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
        self.save(WindowPhase::Active).await?;
        if let Some(err) = transient {
            return Err(err.into());
        }
        Ok(phrases)
    }

    /// The later windows that hold a field this one saved: theirs to put back first.
    async fn later_holders(&self) -> Result<Vec<MaintenanceWindow>, Error> {
        let Some(mine) = &self.status.current_window else {
            return Ok(Vec::new());
        };
        Ok(observe::later_holders(
            self.ctx(),
            &self.shared.caches,
            &self.namespace,
            &self.name,
            mine.start.0,
            &self.status.saved,
        )
        .await?)
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
            let workload = match changes::parse_target(&target) {
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
            let restoration = match changes::restoration(&workload, &entries, on_drift) {
                Ok(restoration) => restoration,
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
            match self.send(&workload, &restoration.writes).await {
                Ok(()) => {}
                Err(Error::Write(err)) if err.not_found() => {}
                Err(Error::Write(err)) if err.code().is_some_and(permanent) => {
                    self.event(
                        EventType::Warning,
                        "RestoreFailed",
                        format!(
                            "cannot restore {target}: {}; put it back by hand",
                            api_message(&err)
                        ),
                    )
                    .await;
                    self.mark_result(FAILED);
                    failed += 1;
                }
                Err(err) => return Err(err),
            }
            for drift in &restoration.drift {
                if drift.kept {
                    self.event(EventType::Warning, "DriftRespected", drift.describe())
                        .await;
                    self.mark_result(DRIFT_RESPECTED);
                } else {
                    self.event(EventType::Normal, "DriftReverted", drift.describe())
                        .await;
                }
            }
            if !restoration.writes.is_empty() {
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
        self.save(WindowPhase::Restoring).await?;
        // Counted once the status no longer lists the failed values: a retry of this
        // reconcile (the save failed) attempts them again, a later one no longer sees them.
        self.ctx()
            .metrics
            .count_restore_failures(&self.namespace, &self.name, failed);
        if !phrases.is_empty() {
            info!(window = %self.name, namespace = %self.namespace, restored = ?phrases, "restored");
        }
        // A window restoring before this one may have waited for these values.
        for w in self.shared.caches.windows.state().iter() {
            if w.namespace().as_deref() == Some(self.namespace.as_str())
                && w.name_any() != self.name
                && w.status.as_ref().and_then(|s| s.phase) == Some(WindowPhase::Restoring)
            {
                let _ = self.shared.wake.unbounded_send(ObjectRef::from(w.as_ref()));
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
        self.save(WindowPhase::Scheduled).await?;
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
    Transient(WriteError),
    /// The API server refused it; retrying the same write would be refused again.
    Refused(String),
    /// The saved value cannot be turned into a write.
    Unwritable(String),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        match err {
            Error::Write(err) => err.into(),
            other => Failure::Refused(other.to_string()),
        }
    }
}

impl From<WriteError> for Failure {
    fn from(err: WriteError) -> Self {
        match err.code() {
            Some(code) if permanent(code) || code == 404 => Failure::Refused(api_message(&err)),
            _ => Failure::Transient(err),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(err) => write!(f, "{err}"),
            Failure::Refused(message) | Failure::Unwritable(message) => f.write_str(message),
        }
    }
}

/// A client error the same request would get again (not a conflict or throttling).
fn permanent(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 404 | 409 | 429)
}

/// The API server's message for a refused write (what an Event tells a person).
fn api_message(err: &WriteError) -> String {
    if let Some(refused) = err.refused_identity() {
        return refused;
    }
    match err.source.as_ref() {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

//! BlueGreenRelease controller: observe (the release, its slot Deployments, its Services and
//! their EndpointSlices, its validation runs, MaintenanceWindows) -> decide
//! ([`release::decide`], pure) -> apply (slot Deployments by server-side apply, the slot key of
//! the Services' selectors by a merge patch, validation runs) -> status.
//!
//! Validation steps run on the RunbookRun engine: the controller keeps a Runbook
//! `<release>-<stage>` holding the stage's steps (owned by the release) and starts the run
//! `<release>-<pre|post>-<revision>`, whose journal it copies into `status.validation`.

use crate::well_known::{FIELD_MANAGER, RELEASE_RUN_LABEL};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::release::{
    self, Cluster, Decision, EndpointView, ReleaseState, ScaleReason, Slot, SlotView, Stage,
};
use super::types::{BlueGreenRelease, BlueGreenReleaseStatus};
use crate::conditions::{self, Desired, SpecProblem, Status};
use crate::context::Context;
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook::{Runbook, RunbookSpec};
use crate::runbook_run::new_journal;
use crate::runbook_run::{RunbookRef, RunbookRun, RunbookRunSpec, Trigger, TriggerType};
use crate::runtime::{self, Cache, Shutdown};
use crate::validation;

/// Controller name in logs and metrics.
pub const NAME: &str = "bluegreenrelease";
/// The label EndpointSlices carry naming their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Decisions carried out in one reconcile before it asks to run again.
const MAX_ACTIONS: usize = 16;
/// The Ready condition's message for a valid release.
const READY_MESSAGE: &str = "the release is valid and its Services exist";

/// What can go wrong while reconciling a BlueGreenRelease.
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

/// What the reconcile reads besides the release.
pub struct Observed {
    /// Services named by the release that do not exist, with the field path.
    pub missing_services: Vec<(&'static str, String)>,
    /// Selector keys of the named Services (other than the slot key) that the template's
    /// labels do not carry with the same value: (field, service, key, value).
    pub unmatched_selectors: Vec<(&'static str, String, String, String)>,
}

struct State {
    ctx: Arc<Context>,
    services: Cache<Service>,
    slices: Cache<EndpointSlice>,
    deployments: Cache<Deployment>,
    runs: Cache<RunbookRun>,
    windows: Cache<MaintenanceWindow>,
    /// Releases and Services as this controller last wrote them.
    written: runtime::Written,
    /// When the selector patch of each release's switch in progress was sent, for
    /// `release_switch_duration_seconds`. In memory: a switch a restart interrupts is still
    /// counted when it completes, but its latency is not known.
    switching: std::sync::Mutex<HashMap<(String, String), std::time::Instant>>,
}

/// Whether a release is degraded, for `release_degraded`: phase Degraded (validation failed,
/// aborted, rolled back) or the Degraded condition True (also: no ready pods to serve).
/// Invalid is not: that is a spec problem, reported by Stalled.
pub fn is_degraded(bgr: &BlueGreenRelease) -> bool {
    let Some(status) = bgr.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some(release::Phase::Degraded.as_str())
        || status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True")
}

/// Every cached release and whether it is degraded.
fn health(releases: &Store<BlueGreenRelease>) -> Vec<(crate::metrics::ReleaseLabels, bool)> {
    releases
        .state()
        .iter()
        .map(|bgr| {
            let labels = crate::metrics::ReleaseLabels {
                namespace: bgr.namespace().unwrap_or_default(),
                release: bgr.name_any(),
            };
            (labels, is_degraded(bgr))
        })
        .collect()
}

/// The `result` label of a completed switch.
fn switch_result(back: bool) -> &'static str {
    if back { "RolledBack" } else { "Switched" }
}

fn services_named(bgr: &BlueGreenRelease) -> impl Iterator<Item = (&'static str, &str)> {
    let services = &bgr.spec.services;
    std::iter::once(("spec.services.active", services.active.as_str())).chain(
        services
            .preview
            .as_deref()
            .map(|p| ("spec.services.preview", p)),
    )
}

/// Runs the BlueGreenRelease controller until shutdown; `synced` fires once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<BlueGreenRelease>(&ctx, NAME);
    let (services, service_stream) =
        runtime::watch_decoded_with::<Service>(&ctx, NAME, watcher::Config::default());
    let (slices, slice_stream) = runtime::watch_decoded_with::<EndpointSlice>(
        &ctx,
        NAME,
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
    );
    let (deployments, deployment_stream) = runtime::watch_decoded_with::<Deployment>(
        &ctx,
        NAME,
        watcher::Config::default().labels(crate::well_known::RELEASE_LABEL),
    );
    let (runs, run_stream) = runtime::watch_decoded_with::<RunbookRun>(
        &ctx,
        NAME,
        watcher::Config::default().labels(RELEASE_RUN_LABEL),
    );
    let (windows, window_stream) = runtime::watch_decoded::<MaintenanceWindow>(&ctx, NAME);
    let releases = store.store.clone();
    let gauged = releases.clone();
    ctx.metrics
        .objects
        .install_releases(Box::new(move || health(&gauged)));
    let (by_service, by_slice, by_window) = (releases.clone(), releases.clone(), releases.clone());
    let controller =
        Controller::for_stream(runtime::queued(&ctx, NAME, stream), store.store.clone())
            .watches_stream(service_stream, move |service: Service| {
                let name = service.name_any();
                runtime::referrers(&by_service, service.namespace(), |bgr| {
                    services_named(bgr).any(|(_, s)| s == name)
                })
            })
            .watches_stream(slice_stream, move |slice: EndpointSlice| {
                let service = slice.labels().get(SERVICE_NAME_LABEL).cloned();
                runtime::referrers(&by_slice, slice.namespace(), |bgr| {
                    Some(&bgr.spec.services.active) == service.as_ref()
                })
            })
            .watches_stream(deployment_stream, |d: Deployment| {
                owner_of(&d)
                    .map(|name| ObjectRef::new(&name).within(&d.namespace().unwrap_or_default()))
            })
            .watches_stream(run_stream, |run: RunbookRun| {
                let namespace = run.namespace().unwrap_or_default();
                run.labels()
                    .get(RELEASE_RUN_LABEL)
                    .map(|name| ObjectRef::new(name).within(&namespace))
            })
            .watches_stream(window_stream, move |mw: MaintenanceWindow| {
                runtime::referrers(&by_window, mw.namespace(), |bgr| {
                    bgr.spec.requires_maintenance_window.is_some()
                })
            });
    runtime::report_synced(
        vec![
            runtime::listed(&store),
            runtime::listed(&services),
            runtime::listed(&slices),
            runtime::listed(&deployments),
            runtime::listed(&runs),
            runtime::listed(&windows),
        ],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        services,
        slices,
        deployments,
        runs,
        windows,
        written: runtime::Written::default(),
        switching: std::sync::Mutex::default(),
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |bgr, _| reconcile(bgr, state.clone()),
        shutdown,
    )
    .await;
}

/// The release that controls a slot Deployment.
fn owner_of(d: &Deployment) -> Option<String> {
    d.owner_references()
        .iter()
        .find(|o| o.kind == "BlueGreenRelease" && o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// Every problem with the spec that the API server could not catch.
pub fn problems(bgr: &BlueGreenRelease, observed: &Observed) -> Vec<SpecProblem> {
    let spec = &bgr.spec;
    let mut problems = Vec::new();
    if let Err(err) = spec.template.decode() {
        problems.push(SpecProblem::new("spec.template", err.to_string()));
    }
    if let Some(strategy) = &spec.strategy {
        problems.extend(crate::step::validate_steps(
            &strategy.pre_promotion,
            "spec.strategy.prePromotion",
        ));
        problems.extend(crate::step::validate_steps(
            &strategy.post_promotion,
            "spec.strategy.postPromotion",
        ));
        problems.extend(crate::step::validate_unique_names(&[
            ("spec.strategy.prePromotion", &strategy.pre_promotion),
            ("spec.strategy.postPromotion", &strategy.post_promotion),
        ]));
    }
    if let Err(err) = release::ReleasePlan::from_spec(spec) {
        let text = err.to_string();
        let (field, message) = text.split_once(": ").unwrap_or(("spec", text.as_str()));
        problems.push(SpecProblem::new(field, message));
    }
    let namespace = bgr.namespace().unwrap_or_default();
    for (field, service) in &observed.missing_services {
        problems.push(SpecProblem::new(
            *field,
            format!(
                "Service {service:?} does not exist in namespace {namespace:?}; the release switches an existing Service's selector, so create the Service first"
            ),
        ));
    }
    for (field, service, key, value) in &observed.unmatched_selectors {
        problems.push(SpecProblem::new(
            "spec.template.metadata.labels",
            format!(
                "the selector of Service {service:?} ({field}) needs the label {key}={value}, which the template's labels lack; add it to spec.template.metadata.labels or remove it from the Service's selector"
            ),
        ));
    }
    problems
}

/// Selector keys of `service` other than `slot_key` that `template` does not carry.
fn unmatched(
    service: &Service,
    slot_key: &str,
    template: Option<&PodTemplateSpec>,
) -> Vec<(String, String)> {
    let empty = BTreeMap::new();
    let labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .unwrap_or(&empty);
    service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .into_iter()
        .flatten()
        .filter(|(k, v)| k.as_str() != slot_key && labels.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn service_slot(service: Option<&Service>, key: &str) -> Option<Slot> {
    release::selector_slot(
        service
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.selector.as_ref()),
        key,
    )
}

/// One reconcile in progress.
struct Reconcile<'a> {
    state: &'a State,
    bgr: BlueGreenRelease,
    namespace: String,
    name: String,
    template: PodTemplateSpec,
    desired: String,
    images: Vec<String>,
    cluster: Cluster,
    written: Option<BlueGreenReleaseStatus>,
    now: Timestamp,
    notes: Vec<validation::Note>,
}

impl Reconcile<'_> {
    fn ctx(&self) -> &Context {
        &self.state.ctx
    }

    async fn event(&self, type_: EventType, reason: &str, message: String) {
        self.ctx()
            .publish(NAME, &self.bgr.object_ref(&()), type_, reason, message)
            .await;
    }

    fn status(&self) -> BlueGreenReleaseStatus {
        self.bgr.status.clone().unwrap_or_default()
    }

    /// Writes `status` (with the active slot's figures and the conditions for `decision`).
    async fn save(
        &mut self,
        mut status: BlueGreenReleaseStatus,
        decision: &Decision,
    ) -> Result<(), Error> {
        let active = status.active_slot.as_deref().and_then(Slot::parse);
        let view = active.map(|slot| self.cluster.slot(slot).clone());
        status.observed_generation = self.bgr.metadata.generation;
        status.replicas = view.as_ref().map(|v| v.spec_replicas);
        status.ready_replicas = view.as_ref().map(|v| v.ready_replicas);
        status.selector = active.map(|slot| {
            release::slot_selector(&self.bgr, slot)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        });
        let stamp = runtime::now();
        let verdict = validation::judge(
            &status.conditions,
            &[],
            self.bgr.metadata.generation,
            &stamp,
            READY_MESSAGE,
        );
        if let Some(note) = verdict.note.clone() {
            self.notes.push(note);
        }
        let available = match (&view, active) {
            (Some(v), Some(slot)) if v.available => Desired::new(
                "Available",
                Status::True,
                "SlotAvailable",
                format!(
                    "{} slot: {} of {} replicas ready",
                    slot, v.ready_replicas, v.spec_replicas
                ),
            ),
            (Some(v), Some(slot)) => Desired::new(
                "Available",
                Status::False,
                "SlotNotAvailable",
                format!(
                    "{} slot: {} of {} replicas ready",
                    slot, v.ready_replicas, v.spec_replicas
                ),
            ),
            _ => Desired::new(
                "Available",
                Status::False,
                "NoActiveSlot",
                "no slot serves yet",
            ),
        };
        let switched = match (&status.switched_at, active) {
            (Some(at), Some(slot)) => Desired::new(
                "TrafficSwitched",
                Status::True,
                "EndpointsConverged",
                format!(
                    "the active Service's endpoints are only ready pods of the {slot} slot since {}",
                    at.0
                ),
            ),
            (None, Some(slot)) => Desired::new(
                "TrafficSwitched",
                Status::False,
                "EndpointsConverging",
                format!(
                    "waiting for the active Service's endpoints to be only ready pods of the {slot} slot"
                ),
            ),
            _ => Desired::new(
                "TrafficSwitched",
                Status::False,
                "NoActiveSlot",
                "no slot serves yet",
            ),
        };
        let degraded = match decision {
            Decision::Abort {
                revision, reason, ..
            }
            | Decision::SwitchBack {
                failed: revision,
                reason,
                ..
            }
            | Decision::AwaitSwitchBack {
                revision, reason, ..
            } => Desired::new(
                "Degraded",
                Status::True,
                reason.reason(),
                reason.message(revision),
            ),
            Decision::HoldSelector { slot, .. } => Desired::new(
                "Degraded",
                Status::True,
                "NoReadyPods",
                format!("the {slot} slot has no ready pods; the selector is left as it is"),
            ),
            // Still degraded (scaling the failed slot down, waiting for the switch back to
            // converge, or holding an aborted revision): keep the reason that made it so.
            _ if decision.phase() == Some(release::Phase::Degraded) => {
                match self
                    .status_condition(&status, "Degraded")
                    .filter(|c| c.status == "True")
                {
                    Some(c) => Desired::new(
                        "Degraded",
                        Status::True,
                        c.reason.clone(),
                        c.message.clone(),
                    ),
                    None => Desired::new(
                        "Degraded",
                        Status::True,
                        "Aborted",
                        format!(
                            "revision {} was not promoted; change the template to try again",
                            self.desired
                        ),
                    ),
                }
            }
            _ => Desired::new("Degraded", Status::False, "Healthy", "nothing failed"),
        };
        let reconciling = match decision {
            Decision::AwaitPromotion { revision, reason } => Desired::new(
                conditions::RECONCILING,
                Status::True,
                reason.reason(),
                reason.message(revision),
            ),
            _ => match decision.phase() {
                Some(release::Phase::Healthy) | None => Desired::new(
                    conditions::RECONCILING,
                    Status::False,
                    "Settled",
                    "nothing to do",
                ),
                Some(release::Phase::Degraded) => Desired::new(
                    conditions::RECONCILING,
                    Status::False,
                    "Degraded",
                    "the release stopped; see the Degraded condition",
                ),
                Some(phase) => Desired::new(
                    conditions::RECONCILING,
                    Status::True,
                    phase.as_str(),
                    format!("revision {}: {}", self.desired, phase.as_str()),
                ),
            },
        };
        let was = self
            .status_condition(&status, conditions::RECONCILING)
            .map(|c| c.reason.clone());
        if let Decision::AwaitPromotion { revision, reason } = decision
            && was.as_deref() != Some(reason.reason())
        {
            self.event(EventType::Normal, reason.reason(), reason.message(revision))
                .await;
        }
        // One merge against the stored conditions: merging Reconciling over the verdict's
        // freshly merged "Settled" would look like a flip on every reconcile and restamp its
        // lastTransitionTime (a status write per Deployment event during a rollout).
        let mut desired = conditions::validity(&[], READY_MESSAGE);
        desired.retain(|d| d.type_ != conditions::RECONCILING);
        desired.extend([available, switched, degraded, reconciling]);
        status.conditions = conditions::merge(
            &status.conditions,
            &desired,
            self.bgr.metadata.generation,
            &stamp,
        );
        if let Some(rv) =
            runtime::apply_status(self.ctx(), NAME, &self.bgr, self.written.as_ref(), &status)
                .await?
        {
            self.state
                .written
                .record::<BlueGreenRelease>(&self.namespace, &self.name, rv);
        }
        self.written = Some(status.clone());
        self.bgr.status = Some(status);
        Ok(())
    }

    fn status_condition<'s>(
        &self,
        status: &'s BlueGreenReleaseStatus,
        type_: &str,
    ) -> Option<&'s k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        status.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Notes that the selector patch of a switch is about to be sent.
    fn switch_sent(&self) {
        if let Ok(mut switching) = self.state.switching.lock() {
            switching.insert(
                (self.namespace.clone(), self.name.clone()),
                std::time::Instant::now(),
            );
        }
    }

    /// Counts a switch whose new slot now serves alone, with its latency when this process
    /// sent its selector patch.
    fn switch_completed(&self, back: bool) {
        let sent = self.state.switching.lock().ok().and_then(|mut switching| {
            switching.remove(&(self.namespace.clone(), self.name.clone()))
        });
        self.ctx().metrics.observe_switch(
            &self.namespace,
            &self.name,
            switch_result(back),
            sent.map(|at| at.elapsed()),
        );
    }

    /// Sets the slot key of `service`'s selector (one key of an atomic map: a merge patch).
    async fn point(&mut self, service: &str, slot: Slot) -> Result<(), Error> {
        let key = release::slot_label(&self.bgr.spec).to_owned();
        let patched = Api::<Service>::namespaced(self.ctx().client.clone(), &self.namespace)
            .patch(
                service,
                &runtime::patch_params(),
                &Patch::Merge(json!({"spec": {"selector": {key: slot.as_str()}}})),
            )
            .await?;
        self.state.written.record::<Service>(
            &self.namespace,
            service,
            patched.resource_version().unwrap_or_default(),
        );
        self.ctx().metrics.count_write(NAME, "selector");
        Ok(())
    }

    async fn apply_slot(&mut self, slot: Slot, revision: &str, replicas: i32) -> Result<(), Error> {
        let deployment =
            release::slot_deployment(&self.bgr, slot, &self.template, revision, replicas);
        let name = release::slot_deployment_name(&self.name, slot);
        Api::<Deployment>::namespaced(self.ctx().client.clone(), &self.namespace)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&deployment),
            )
            .await?;
        self.ctx().metrics.count_write(NAME, "deployment");
        let view = self.cluster.slot_mut(slot);
        view.exists = true;
        view.revision = Some(revision.to_owned());
        view.spec_replicas = replicas;
        view.available = false;
        Ok(())
    }

    async fn scale_slot(&mut self, slot: Slot, replicas: i32) -> Result<(), Error> {
        let name = release::slot_deployment_name(&self.name, slot);
        let result = Api::<Deployment>::namespaced(self.ctx().client.clone(), &self.namespace)
            .patch_scale(
                &name,
                &runtime::patch_params(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await;
        match result {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
        self.ctx().metrics.count_write(NAME, "scale");
        let view = self.cluster.slot_mut(slot);
        if replicas > view.spec_replicas {
            view.available = false;
        }
        view.spec_replicas = replicas;
        view.ready_replicas = view.ready_replicas.min(replicas);
        Ok(())
    }

    /// Keeps the stage's Runbook in step with the spec and starts the stage's run.
    async fn start_validation(&mut self, stage: Stage, revision: &str) -> Result<(), Error> {
        let strategy = self.bgr.spec.strategy.clone().unwrap_or_default();
        let steps = match stage {
            Stage::Pre => strategy.pre_promotion,
            Stage::Post => strategy.post_promotion,
        };
        let runbook_name = format!("{}-{}", self.name, stage.as_str().to_lowercase());
        let owner = self.bgr.controller_owner_ref(&()).map(|o| OwnerReference {
            block_owner_deletion: Some(false),
            ..o
        });
        let labels = BTreeMap::from([(RELEASE_RUN_LABEL.to_owned(), self.name.clone())]);
        let mut runbook = Runbook::new(
            &runbook_name,
            RunbookSpec {
                description: Some(format!(
                    "The {} steps of BlueGreenRelease {}, kept by the operator; edit the release, not this Runbook.",
                    stage.as_str(),
                    self.name
                )),
                params: Vec::new(),
                steps: steps.clone(),
                finally: Vec::new(),
                schedule: None,
                requires_maintenance_window: None,
                history_limits: None,
            },
        );
        runbook.metadata.namespace = Some(self.namespace.clone());
        runbook.metadata.labels = Some(labels.clone());
        runbook.metadata.owner_references = owner.clone().map(|o| vec![o]);
        Api::<Runbook>::namespaced(self.ctx().client.clone(), &self.namespace)
            .patch(
                &runbook_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&runbook),
            )
            .await?;
        let run_name = run_name(&self.name, stage, revision);
        let mut run = RunbookRun::new(
            &run_name,
            RunbookRunSpec {
                runbook_ref: RunbookRef { name: runbook_name },
                params: BTreeMap::new(),
                mode: None,
                trigger: Some(Trigger {
                    type_: TriggerType::BlueGreenRelease,
                    scheduled_time: None,
                    source: Some(format!("BlueGreenRelease/{}", self.name)),
                }),
            },
        );
        run.metadata.namespace = Some(self.namespace.clone());
        run.metadata.labels = Some(labels);
        run.metadata.owner_references = owner.map(|o| vec![o]);
        match Api::<RunbookRun>::namespaced(self.ctx().client.clone(), &self.namespace)
            .create(&PostParams::default(), &run)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
        self.ctx().metrics.count_write(NAME, "validation");
        // Pending entries stand for the run until its journal is copied in, so the stage reads
        // as running and is not started twice.
        let mut status = self.status();
        for entry in new_journal(&steps, &[]) {
            if !status.validation.iter().any(|e| e.name == entry.name) {
                status.validation.push(entry);
            }
        }
        self.bgr.status = Some(status);
        Ok(())
    }

    /// Copies the journals of the desired revision's validation runs into `status.validation`.
    fn mirror_validation(&mut self) {
        let mut status = self.status();
        if status.desired_revision.as_deref() != Some(self.desired.as_str()) {
            return;
        }
        for stage in [Stage::Pre, Stage::Post] {
            let name = run_name(&self.name, stage, &self.desired);
            let Some(run) = self
                .state
                .runs
                .store
                .get(&ObjectRef::new(&name).within(&self.namespace))
            else {
                continue;
            };
            for entry in run.status.iter().flat_map(|s| s.steps.iter()) {
                match status.validation.iter_mut().find(|e| e.name == entry.name) {
                    Some(existing) => *existing = entry.clone(),
                    None => status.validation.push(entry.clone()),
                }
            }
        }
        self.bgr.status = Some(status);
    }
}

/// The run of one validation stage of one revision.
pub fn run_name(release: &str, stage: Stage, revision: &str) -> String {
    let stage = match stage {
        Stage::Pre => "pre",
        Stage::Post => "post",
    };
    format!("{release}-{stage}-{revision}")
}

async fn reconcile(bgr: Arc<BlueGreenRelease>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = state.ctx.clone();
    let namespace = bgr.namespace().unwrap_or_default();
    let api: Api<BlueGreenRelease> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(bgr) = state.written.latest(&api, bgr).await? else {
        return Ok(Action::await_change());
    };
    state.services.synced().await?;
    let service_api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut services = BTreeMap::new();
    for (_, name) in services_named(&bgr) {
        let cached = state
            .services
            .store
            .get(&ObjectRef::new(name).within(&namespace));
        let found = match cached {
            Some(cached) => state.written.latest(&service_api, cached).await?,
            None => None,
        };
        services.insert(name.to_owned(), found);
    }
    let service = |name: &str| services.get(name).cloned().flatten();
    let template = bgr.spec.template.decode().ok();
    let slot_key = release::slot_label(&bgr.spec).to_owned();
    let mut observed = Observed {
        missing_services: Vec::new(),
        unmatched_selectors: Vec::new(),
    };
    for (field, name) in services_named(&bgr) {
        match service(name) {
            None => observed.missing_services.push((field, name.to_owned())),
            Some(svc) => {
                for (key, value) in unmatched(&svc, &slot_key, template.as_ref()) {
                    observed
                        .unmatched_selectors
                        .push((field, name.to_owned(), key, value));
                }
            }
        }
    }
    let problems = problems(&bgr, &observed);
    let Some(template) = template.filter(|_| problems.is_empty()) else {
        runtime::settle(
            &ctx,
            NAME,
            bgr.as_ref(),
            bgr.status.as_ref(),
            &problems,
            READY_MESSAGE,
            |verdict| {
                let mut status = bgr.status.clone().unwrap_or_default();
                status.observed_generation = bgr.metadata.generation;
                status.conditions = verdict.conditions.clone();
                // As for every kind: nothing new is released until the spec is fixed.
                status.phase = Some("Invalid".into());
                status
            },
        )
        .await?;
        return Ok(Action::await_change());
    };
    state.deployments.synced().await?;
    state.slices.synced().await?;
    state.runs.synced().await?;
    let name = bgr.name_any();
    let slot_view = |slot: Slot| {
        SlotView::observe(
            state
                .deployments
                .store
                .get(
                    &ObjectRef::new(&release::slot_deployment_name(&name, slot)).within(&namespace),
                )
                .as_deref(),
        )
    };
    let active_service = service(&bgr.spec.services.active);
    let slices: Vec<_> = state
        .slices
        .store
        .state()
        .into_iter()
        .filter(|s| {
            s.namespace().as_deref() == Some(namespace.as_str())
                && s.labels().get(SERVICE_NAME_LABEL) == Some(&bgr.spec.services.active)
        })
        .collect();
    let prefixes = [Slot::Blue, Slot::Green].map(|slot| {
        (
            slot,
            format!("{}-", release::slot_deployment_name(&name, slot)),
        )
    });
    let slot_of = |endpoint: &Endpoint| {
        let pod = endpoint.target_ref.as_ref()?;
        if pod.kind.as_deref() != Some("Pod") {
            return None;
        }
        let pod_name = pod.name.as_deref()?;
        prefixes
            .iter()
            .find(|(_, prefix)| pod_name.starts_with(prefix.as_str()))
            .map(|(slot, _)| *slot)
    };
    let endpoints = EndpointView::from_slices(slices.iter().map(|s| s.as_ref()), slot_of);
    let window_open = match &bgr.spec.requires_maintenance_window {
        None => true,
        Some(requirement) => {
            state.windows.synced().await?;
            let windows = state.windows.store.state();
            crate::maintenance_window::open_window(
                windows.iter().map(|w| w.as_ref()),
                &namespace,
                &requirement.selector.match_labels,
            )
        }
    };
    let preview_service = bgr.spec.services.preview.as_deref().and_then(service);
    let cluster = Cluster {
        blue: slot_view(Slot::Blue),
        green: slot_view(Slot::Green),
        endpoints,
        service_slot: service_slot(active_service.as_deref(), &slot_key),
        preview_service_slot: service_slot(preview_service.as_deref(), &slot_key),
        window_open,
    };
    let desired = release::revision(&template);
    let mut r = Reconcile {
        state: &state,
        images: release::images(&template),
        bgr: bgr.as_ref().clone(),
        namespace,
        name,
        template,
        desired,
        cluster,
        written: bgr.status.clone(),
        now: Timestamp::now(),
        notes: Vec::new(),
    };
    let action = drive(&mut r).await;
    for note in &r.notes {
        runtime::publish_note(&ctx, NAME, bgr.as_ref(), note).await;
    }
    action
}

/// Carries out decisions until one is a wait.
async fn drive(r: &mut Reconcile<'_>) -> Result<Action, Error> {
    let mut status = r.status();
    release::record_desired_revision(&mut status, &r.desired);
    r.bgr.status = Some(status);
    r.mirror_validation();
    for _ in 0..MAX_ACTIONS {
        let state = ReleaseState::observe(&r.bgr, &r.desired);
        let decision = release::decide(&r.bgr.spec, &state, &r.cluster, r.now);
        let mut status = r.status();
        release::update_status(&mut status, &r.desired, &decision, &r.images, r.now);
        if !decision.is_action() {
            r.save(status, &decision).await?;
            return Ok(runtime::wake_at(decision.requeue_at(), r.now));
        }
        match &decision {
            Decision::BeginRelease {
                revision,
                slot,
                fast_track,
                ..
            } => {
                r.save(status, &decision).await?;
                r.event(
                    EventType::Normal,
                    "ReleaseStarted",
                    format!(
                        "revision {revision} ({}) goes to the {slot} slot{}",
                        r.images.join(", "),
                        if *fast_track {
                            " without validation (first release or a known-good revision)"
                        } else {
                            ""
                        }
                    ),
                )
                .await;
            }
            Decision::ApplySlot {
                slot,
                revision,
                replicas,
            } => {
                r.apply_slot(*slot, revision, *replicas).await?;
                r.save(status, &decision).await?;
                r.event(
                    EventType::Normal,
                    "SlotUpdated",
                    format!("the {slot} slot runs revision {revision} with {replicas} replicas"),
                )
                .await;
            }
            Decision::ScaleSlot {
                slot,
                replicas,
                reason,
            } => {
                r.scale_slot(*slot, *replicas).await?;
                r.save(status, &decision).await?;
                let why = match reason {
                    ScaleReason::Replicas => "to spec.replicas",
                    ScaleReason::Standby => "to standbyReplicas after scaleDownDelay",
                    ScaleReason::Aborted => "down after the abort",
                    ScaleReason::SwitchBack => "back up to switch back to it",
                };
                r.event(
                    EventType::Normal,
                    "SlotScaled",
                    format!("scaled the {slot} slot {why}: {replicas} replicas"),
                )
                .await;
            }
            Decision::PointPreview { slot, .. } => {
                if let Some(preview) = r.bgr.spec.services.preview.clone() {
                    r.point(&preview, *slot).await?;
                }
                r.cluster.preview_service_slot = Some(*slot);
                r.save(status, &decision).await?;
            }
            Decision::StartValidation { stage, revision } => {
                r.save(status, &decision).await?;
                r.start_validation(*stage, revision).await?;
                let status = r.status();
                r.save(status, &decision).await?;
                r.event(
                    EventType::Normal,
                    "ValidationStarted",
                    format!(
                        "{} of revision {revision}: RunbookRun {}",
                        stage.as_str(),
                        run_name(&r.name, *stage, revision)
                    ),
                )
                .await;
            }
            Decision::SwitchTraffic { to, revision } => {
                // Status first: it is the intent a restarted operator completes.
                r.save(status, &decision).await?;
                let active = r.bgr.spec.services.active.clone();
                r.switch_sent();
                r.point(&active, *to).await?;
                r.cluster.service_slot = Some(*to);
                r.event(
                    EventType::Normal,
                    "TrafficSwitching",
                    format!("Service {active} now selects the {to} slot (revision {revision})"),
                )
                .await;
            }
            Decision::SwitchBack {
                to, failed, reason, ..
            } => {
                r.save(status, &decision).await?;
                let active = r.bgr.spec.services.active.clone();
                r.switch_sent();
                r.point(&active, *to).await?;
                r.cluster.service_slot = Some(*to);
                r.event(
                    EventType::Warning,
                    "SwitchedBack",
                    format!(
                        "{}; Service {active} selects the {to} slot again",
                        reason.message(failed)
                    ),
                )
                .await;
            }
            Decision::RestoreSelector { slot, found } => {
                let active = r.bgr.spec.services.active.clone();
                r.point(&active, *slot).await?;
                r.cluster.service_slot = Some(*slot);
                r.save(status, &decision).await?;
                if *found != Some(*slot) {
                    let what = match found {
                        Some(found) => format!("selected the {found} slot"),
                        None => "had no valid slot key in its selector".to_owned(),
                    };
                    r.event(
                        EventType::Warning,
                        "SelectorRestored",
                        format!("Service {active} {what}; put back the {slot} slot the release says is active"),
                    )
                    .await;
                }
            }
            Decision::RecordSwitched { slot, at, back, .. } => {
                r.save(status, &decision).await?;
                // Counted once switchedAt is written: later reconciles see it set and decide
                // no second RecordSwitched for this switch.
                r.switch_completed(*back);
                r.event(
                    EventType::Normal,
                    "TrafficSwitched",
                    format!("the active Service's endpoints are only ready pods of the {slot} slot (at {at})"),
                )
                .await;
            }
            Decision::CloseRelease { revision, result } => {
                r.save(status, &decision).await?;
                r.event(
                    EventType::Normal,
                    result.as_str(),
                    format!("release of revision {revision}: {}", result.as_str()),
                )
                .await;
            }
            Decision::Abort {
                revision, reason, ..
            } => {
                r.save(status, &decision).await?;
                r.event(
                    EventType::Warning,
                    reason.reason(),
                    reason.message(revision),
                )
                .await;
            }
            _ => {
                r.save(status, &decision).await?;
            }
        }
    }
    Ok(Action::requeue(std::time::Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(status: serde_json::Value) -> BlueGreenRelease {
        serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BlueGreenRelease",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}},
                "services": {"active": "web"}
            },
            "status": status
        }))
        .expect("a BlueGreenRelease")
    }

    fn degraded_condition(status: &str) -> serde_json::Value {
        json!({"type": "Degraded", "status": status, "reason": "ValidationFailed",
               "message": "", "lastTransitionTime": "2026-06-10T12:00:00Z"})
    }

    #[test]
    fn degraded_by_phase_or_condition() {
        for phase in release::Phase::ALL {
            let bgr = release(json!({"phase": phase.as_str()}));
            assert_eq!(
                is_degraded(&bgr),
                phase == release::Phase::Degraded,
                "{phase:?}"
            );
        }
        // The selector held on a slot with no ready pods: Degraded=True in another phase.
        let held = release(json!({"phase": "Healthy", "conditions": [degraded_condition("True")]}));
        assert!(is_degraded(&held));
        let fine =
            release(json!({"phase": "Healthy", "conditions": [degraded_condition("False")]}));
        assert!(!is_degraded(&fine));
        assert!(!is_degraded(&release(json!({"phase": "Invalid"}))));
        assert!(!is_degraded(&release(json!(null))), "never reconciled");
    }

    #[test]
    fn switch_results_name_the_direction() {
        assert_eq!(switch_result(false), "Switched");
        assert_eq!(switch_result(true), "RolledBack");
    }
}

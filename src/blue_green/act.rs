//! Carries out a BlueGreenRelease's decisions, every write through a [`Writer`]: the slot
//! Deployments (server-side apply, or the scale subresource), the slot key of the Services'
//! selectors (a merge patch of that one key), the validation Runbook and run, and the status;
//! plus the Events and the switch metrics that go with them.
//!
//! The model of the cluster ([`Cluster`]) is updated after each write the way the write will
//! show in the caches, so the next decision of the same reconcile sees it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Patch;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::decide::{
    AbortReason, Decision, ScaleReason, Settings, Size, lifecycle, slot_deployment,
};
use super::observe::{
    Cluster, Slot, Stage, component_deployment_name, release_label_value, run_name, slot_label,
};
use super::status;
use super::types::{BlueGreenRelease, BlueGreenReleaseStatus};
use crate::notifications;
use crate::runbook::{Runbook, RunbookSpec};
use crate::runbook_run::{RunbookRef, RunbookRun, RunbookRunSpec, Trigger, TriggerType};
use crate::runtime::Written;
use crate::validation::Note;
use crate::well_known::{
    ABORT_ANNOTATION, ACKNOWLEDGED, RELEASE_LABEL, RELEASE_RUN_LABEL, RETRY_ANNOTATION,
};
use crate::write::{WriteError, Writer};

/// A write of a decision that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a write; it names the request.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// No client acting as the release's identity could be built.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Write(err) => err.metric_label(),
            Error::Identity(_) => "identity",
        }
    }
}

/// When the selector patch of each release's switch in progress was sent, for
/// `release_switch_duration_seconds`. In memory: a switch a restart interrupts is still counted
/// when it completes, but its latency is not known.
#[derive(Default)]
pub struct Switches(Mutex<HashMap<(String, String), Instant>>);

/// The `result` label of a completed switch.
pub fn switch_result(back: bool) -> &'static str {
    if back { "RolledBack" } else { "Switched" }
}

/// The Services to switch back after a switch failed part-way: those switched so far (unit
/// index, the slot it named before), last switched first, so the Services on the new slot stay
/// a prefix of the switch order; a Service that named no slot before is left on the new one
/// (there is nothing to put back).
pub fn revert_plan(switched: &[(usize, Option<Slot>)]) -> Vec<(usize, Slot)> {
    switched
        .iter()
        .rev()
        .filter_map(|(index, previous)| Some((*index, (*previous)?)))
        .collect()
}

/// Whether an HTTP status refuses a write for good (a 4xx other than a conflict or throttling):
/// the switch is given up rather than retried.
pub fn refused(code: Option<u16>) -> bool {
    code.is_some_and(|c| (400..500).contains(&c) && c != 409 && c != 429)
}

/// One reconcile's release, carrying out decisions.
pub struct Actor<'a> {
    /// Sends the writes of the operator's own kinds: the status, the validation Runbook and run.
    pub writer: Writer<'a>,
    /// Sends the writes to the slot Deployments and the Services, acting as the release's
    /// identity (`spec.serviceAccountName`, or the default ServiceAccount).
    pub target_writer: Writer<'a>,
    /// Where the resourceVersions of the release and Services written are recorded.
    pub written: &'a Written,
    /// Switches in progress, for their latency.
    pub switches: &'a Switches,
    /// The release, its status as carried out so far.
    pub bgr: BlueGreenRelease,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Each unit's decoded pod template, in declared order.
    pub templates: Vec<PodTemplateSpec>,
    /// The template's revision.
    pub desired: String,
    /// The template's images.
    pub images: Vec<String>,
    /// The cluster as the decisions see it.
    pub cluster: Cluster,
    /// The status as last written, compared with before writing.
    pub written_status: Option<BlueGreenReleaseStatus>,
    /// The reconcile's clock.
    pub now: Timestamp,
    /// Ready Events to publish once the reconcile is done.
    pub notes: Vec<Note>,
    /// The release's resourceVersion after our own status writes (guards a write that
    /// records lifecycle messages).
    pub resource_version: Option<String>,
    /// When the next lifecycle escalation falls due, as of the last status written.
    pub notify_wake: Option<Timestamp>,
}

impl Actor<'_> {
    /// The status as carried out so far.
    pub fn status(&self) -> BlueGreenReleaseStatus {
        self.bgr.status.clone().unwrap_or_default()
    }

    async fn event(&self, type_: EventType, reason: &str, message: String) {
        self.writer
            .ctx()
            .publish(
                super::CONTROLLER_NAME,
                &self.bgr.object_ref(&()),
                type_,
                reason,
                message,
            )
            .await;
    }

    /// Writes `recorded` completed for `decision` ([`status::status`]), if it changed.
    pub async fn save(
        &mut self,
        recorded: BlueGreenReleaseStatus,
        decision: &Decision,
    ) -> Result<(), Error> {
        let stamp = crate::runtime::now();
        if let Some(note) = status::ready_note(&self.bgr, &recorded, &stamp) {
            self.notes.push(note);
        }
        if let Some((revision, reason)) = status::promotion_wait_begins(&recorded, decision) {
            self.event(EventType::Normal, reason.reason(), reason.message(revision))
                .await;
        }
        let status = status::status(
            &self.bgr,
            recorded,
            &self.cluster,
            decision,
            &self.desired,
            &stamp,
        );
        let mut status = status;
        // Lifecycle messages from the history this status records, recorded in the same
        // write before they are sent.
        let acknowledged = self.bgr.annotations().get(ACKNOWLEDGED).cloned();
        let stored = self
            .written_status
            .as_ref()
            .map(|s| s.sent_notifications.clone())
            .unwrap_or_default();
        let plan = notifications::plan(
            &self.bgr.spec.notifications,
            &lifecycle::occurrences(
                &self.name,
                &self.namespace,
                acknowledged.as_deref(),
                &status,
            ),
            &stored,
            self.now,
        );
        status.sent_notifications = plan.sent;
        self.notify_wake = plan.wake_at;
        let identity = self.writer.ctx().identities.of(
            &self.namespace,
            self.bgr.spec.service_account_name.as_deref(),
        );
        if let Some(rv) = notifications::send::record_then_send(
            &self.writer,
            (&self.bgr, self.resource_version.as_deref()),
            self.written_status.as_ref(),
            &status,
            &plan.send,
            || notifications::send::About {
                kind: "BlueGreenRelease",
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                uid: self.bgr.uid().unwrap_or_default(),
                object: serde_json::to_value(&self.bgr).unwrap_or_default(),
                identity,
            },
        )
        .await?
        {
            self.resource_version = Some(rv.clone());
            self.written
                .record::<BlueGreenRelease>(&self.namespace, &self.name, rv);
        }
        self.written_status = Some(status.clone());
        self.bgr.status = Some(status);
        Ok(())
    }

    /// Carries out the action `decision`, whose effect on status is `recorded`
    /// ([`status::update_status`]): the writes, in the order crash safety needs (a decision
    /// that moves traffic is written to status before the Service is patched), and its Event.
    pub async fn carry_out(
        &mut self,
        decision: &Decision,
        recorded: BlueGreenReleaseStatus,
    ) -> Result<(), Error> {
        match decision {
            Decision::BeginRelease {
                revision,
                slot,
                fast_track,
                ..
            } => {
                self.save(recorded, decision).await?;
                self.event(
                    EventType::Normal,
                    "ReleaseStarted",
                    format!(
                        "revision {revision} ({}) goes to the {slot} slot{}",
                        self.images.join(", "),
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
                size,
            } => {
                for index in 0..self.templates.len() {
                    let replicas = self.count(*size, index);
                    self.apply_slot(index, *slot, revision, replicas).await?;
                }
                self.save(recorded, decision).await?;
                self.event(
                    EventType::Normal,
                    "SlotUpdated",
                    format!(
                        "the {slot} slot runs revision {revision} with {}",
                        self.sizes(*size)
                    ),
                )
                .await;
            }
            Decision::ScaleSlot { slot, size, reason } => {
                for index in 0..self.templates.len() {
                    let replicas = self.count(*size, index);
                    self.scale_slot(index, *slot, replicas).await?;
                }
                self.save(recorded, decision).await?;
                let why = match reason {
                    ScaleReason::Replicas => "to spec.replicas",
                    ScaleReason::Standby => "to standbyReplicas after scaleDownDelay",
                    ScaleReason::Aborted => "down after the abort",
                    ScaleReason::SwitchBack => "back up to switch back to it",
                    ScaleReason::Promotion => "from previewReplicas to full size before the switch",
                };
                self.event(
                    EventType::Normal,
                    "SlotScaled",
                    format!("scaled the {slot} slot {why}: {}", self.sizes(*size)),
                )
                .await;
            }
            Decision::PointPreview { slot, .. } => {
                let previews: Vec<(usize, String)> = self
                    .bgr
                    .spec
                    .units()
                    .iter()
                    .filter_map(|u| Some((u.index, u.services.preview.clone()?)))
                    .collect();
                for (index, preview) in previews {
                    if self.cluster.component(index).preview_service_slot != Some(*slot) {
                        self.point(&preview, *slot).await?;
                    }
                    self.cluster.component_mut(index).preview_service_slot = Some(*slot);
                }
                self.save(recorded, decision).await?;
            }
            Decision::StartValidation { stage, revision } => {
                self.save(recorded, decision).await?;
                self.start_validation(*stage, revision).await?;
                let started = self.status();
                self.save(started, decision).await?;
                self.event(
                    EventType::Normal,
                    "ValidationStarted",
                    format!(
                        "{} of revision {revision}: RunbookRun {}",
                        stage.as_str(),
                        run_name(&self.name, *stage, &self.run_revision(revision))
                    ),
                )
                .await;
            }
            Decision::SwitchTraffic { to, revision } => {
                // What serves before the switch, put back if a Service refuses it part-way.
                let before = self.status();
                // Status first: it is the intent a restarted operator completes.
                self.save(recorded, decision).await?;
                self.switch_sent();
                let active = self.switch(*to, revision, before).await?;
                self.event(
                    EventType::Normal,
                    "TrafficSwitching",
                    format!("Service {active} now selects the {to} slot (revision {revision})"),
                )
                .await;
            }
            Decision::SwitchBack {
                to, failed, reason, ..
            } => {
                self.save(recorded, decision).await?;
                self.switch_sent();
                // Undo the switch last-first: the Services still on the failed slot stay a
                // prefix of the switch order, as they were while it switched.
                let mut order = self.bgr.spec.switch_order();
                order.reverse();
                let active = self.point_active(*to, &order).await?;
                self.event(
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
                let order = self.bgr.spec.switch_order();
                let active = self.point_active(*slot, &order).await?;
                self.save(recorded, decision).await?;
                if *found != Some(*slot) {
                    let what = match found {
                        Some(found) => format!("selected the {found} slot"),
                        None => "had no valid slot key in its selector".to_owned(),
                    };
                    self.event(
                        EventType::Warning,
                        "SelectorRestored",
                        format!("Service {active} {what}; put back the {slot} slot the release says is active"),
                    )
                    .await;
                }
            }
            Decision::RecordSwitched { slot, at, back, .. } => {
                self.save(recorded, decision).await?;
                // Counted once switchedAt is written: later reconciles see it set and decide
                // no second RecordSwitched for this switch.
                self.switch_completed(*back);
                self.event(
                    EventType::Normal,
                    "TrafficSwitched",
                    format!("the active Service's endpoints are only ready pods of the {slot} slot (at {at})"),
                )
                .await;
            }
            Decision::CloseRelease { revision, result } => {
                self.save(recorded, decision).await?;
                self.event(
                    EventType::Normal,
                    result.as_str(),
                    format!("release of revision {revision}: {}", result.as_str()),
                )
                .await;
            }
            Decision::Abort {
                revision, reason, ..
            } => {
                self.save(recorded, decision).await?;
                self.event(
                    EventType::Warning,
                    reason.reason(),
                    reason.message(revision),
                )
                .await;
            }
            Decision::ClearRetry { revision, abort } => {
                self.clear_retry(*abort).await?;
                self.save(recorded, decision).await?;
                self.event(
                    EventType::Normal,
                    "RetryStarted",
                    format!("revision {revision} is released again; {RETRY_ANNOTATION} removed"),
                )
                .await;
            }
            Decision::PromoteFull { revision, by } => {
                self.save(recorded, decision).await?;
                self.event(
                    EventType::Normal,
                    "PromotedFull",
                    format!(
                        "{by} promoted revision {revision} in full: the remaining gates are skipped"
                    ),
                )
                .await;
            }
            _ => {
                self.save(recorded, decision).await?;
            }
        }
        Ok(())
    }

    /// What names `revision`'s validation runs at its current attempt (a retry gets new runs).
    fn run_revision(&self, revision: &str) -> String {
        let attempt = super::decide::controls::attempt(self.bgr.status.as_ref(), revision);
        super::decide::controls::run_revision(revision, attempt)
    }

    /// Notes that the selector patch of a switch is about to be sent.
    fn switch_sent(&self) {
        if let Ok(mut switching) = self.switches.0.lock() {
            switching.insert((self.namespace.clone(), self.name.clone()), Instant::now());
        }
    }

    /// Counts a switch whose new slot now serves alone, with its latency when this process
    /// sent its selector patch.
    fn switch_completed(&self, back: bool) {
        let sent = self.switches.0.lock().ok().and_then(|mut switching| {
            switching.remove(&(self.namespace.clone(), self.name.clone()))
        });
        self.writer.ctx().metrics.observe_switch(
            &self.namespace,
            &self.name,
            switch_result(back),
            sent.map(|at| at.elapsed()),
        );
    }

    /// Removes the retry annotation (and the abort annotation, when `abort`) from the release:
    /// a merge patch of those keys alone, as the operator's own write.
    async fn clear_retry(&mut self, abort: bool) -> Result<(), Error> {
        let mut annotations = serde_json::Map::new();
        annotations.insert(RETRY_ANNOTATION.to_owned(), serde_json::Value::Null);
        if abort {
            annotations.insert(ABORT_ANNOTATION.to_owned(), serde_json::Value::Null);
        }
        let api = self.writer.api::<BlueGreenRelease>(&self.namespace);
        let patched = self
            .writer
            .patch(
                &api,
                &self.name,
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
                "retry",
            )
            .await?;
        if let Some(annotations) = self.bgr.metadata.annotations.as_mut() {
            annotations.remove(RETRY_ANNOTATION);
            if abort {
                annotations.remove(ABORT_ANNOTATION);
            }
        }
        if let Some(rv) = patched.resource_version() {
            self.resource_version = Some(rv.clone());
            self.written
                .record::<BlueGreenRelease>(&self.namespace, &self.name, rv);
        }
        Ok(())
    }

    /// The replica count of `size` for unit `index`.
    fn count(&self, size: Size, index: usize) -> i32 {
        Settings::from_spec(&self.bgr.spec).map_or(0, |settings| settings.count(size, index))
    }

    /// `size` in words, for Events: `3 replicas`, or per component `web 3, api 2 replicas`.
    fn sizes(&self, size: Size) -> String {
        let units = self.bgr.spec.units();
        match units.as_slice() {
            [unit] if unit.name.is_none() => format!("{} replicas", self.count(size, 0)),
            _ => {
                let each: Vec<String> = units
                    .iter()
                    .map(|u| {
                        format!(
                            "{} {}",
                            u.name.unwrap_or_default(),
                            self.count(size, u.index)
                        )
                    })
                    .collect();
                format!("{} replicas", each.join(", "))
            }
        }
    }

    /// Points every component's active Service that does not name `slot` yet at it, in
    /// `order` (indices of units); returns the Services' names, for Events.
    async fn point_active(&mut self, slot: Slot, order: &[usize]) -> Result<String, Error> {
        let units: Vec<String> = self
            .bgr
            .spec
            .units()
            .iter()
            .map(|u| u.services.active.clone())
            .collect();
        let mut names = Vec::new();
        for &index in order {
            let service = units[index].clone();
            if self.cluster.component(index).service_slot != Some(slot) {
                self.point(&service, slot).await?;
                self.cluster.component_mut(index).service_slot = Some(slot);
            }
            names.push(service);
        }
        Ok(names.join(", "))
    }

    /// The switch of [`Decision::SwitchTraffic`] to `to` (status already says so): every
    /// component's active Service in the switch order. When one fails, those already switched
    /// are switched back (in reverse, so the Services on the new slot stay a prefix of the
    /// order); a refusal (a 4xx other than a conflict) then puts `before` back in status and
    /// closes the release as Aborted, Degraded naming the component and Service
    /// ([`Decision::SwitchRefused`]); anything else is returned, and the next reconcile puts
    /// the selectors where status says.
    async fn switch(
        &mut self,
        to: Slot,
        revision: &str,
        before: BlueGreenReleaseStatus,
    ) -> Result<String, Error> {
        let units: Vec<(Option<String>, String)> = self
            .bgr
            .spec
            .units()
            .iter()
            .map(|u| (u.name.map(str::to_owned), u.services.active.clone()))
            .collect();
        let mut switched: Vec<(usize, Option<Slot>)> = Vec::new();
        for index in self.bgr.spec.switch_order() {
            let service = units[index].1.clone();
            let found = self.cluster.component(index).service_slot;
            if found == Some(to) {
                continue;
            }
            match self.point(&service, to).await {
                Ok(()) => {
                    self.cluster.component_mut(index).service_slot = Some(to);
                    switched.push((index, found));
                }
                Err(err) => {
                    for (done, previous) in revert_plan(&switched) {
                        // Best effort: a failure here is put right by RestoreSelector.
                        let name = units[done].1.clone();
                        if self.point(&name, previous).await.is_ok() {
                            self.cluster.component_mut(done).service_slot = Some(previous);
                        }
                    }
                    let code = match &err {
                        Error::Write(write) => write.code(),
                        Error::Identity(_) => None,
                    };
                    if !refused(code) {
                        return Err(err);
                    }
                    let component = units[index].0.clone().unwrap_or_else(|| self.name.clone());
                    let decision = Decision::SwitchRefused {
                        to: before.active_slot.as_deref().and_then(Slot::parse),
                        revision: before.active_revision.clone(),
                        switched_at: before.switched_at.as_ref().map(|t| t.0),
                        failed: revision.to_owned(),
                        reason: AbortReason::SwitchRefused {
                            component,
                            service,
                            message: err.to_string(),
                        },
                    };
                    let mut recorded = self.status();
                    super::status::update_status(
                        &mut recorded,
                        &self.desired,
                        &decision,
                        &self.images,
                        self.now,
                    );
                    self.save(recorded, &decision).await?;
                    if let Decision::SwitchRefused { reason, .. } = &decision {
                        self.event(
                            EventType::Warning,
                            reason.reason(),
                            reason.message(revision),
                        )
                        .await;
                    }
                    return Ok(String::new());
                }
            }
        }
        Ok(units
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// Sets the slot key of `service`'s selector (one key of an atomic map: a merge patch), and
    /// in the same patch the release label, which its EndpointSlices inherit: the controller
    /// caches only slices with that label.
    async fn point(&mut self, service: &str, slot: Slot) -> Result<(), Error> {
        let key = slot_label(&self.bgr.spec).to_owned();
        let api = self.target_writer.api::<Service>(&self.namespace);
        let patch = json!({
            "metadata": {"labels": {RELEASE_LABEL: release_label_value(&self.name)}},
            "spec": {"selector": {key: slot.as_str()}},
        });
        let patched = self
            .target_writer
            .patch(&api, service, &Patch::Merge(patch), "selector")
            .await?;
        self.written.record::<Service>(
            &self.namespace,
            service,
            patched.resource_version().unwrap_or_default(),
        );
        Ok(())
    }

    /// Server-side applies unit `index`'s Deployment of `slot` at `revision` with `replicas`.
    async fn apply_slot(
        &mut self,
        index: usize,
        slot: Slot,
        revision: &str,
        replicas: i32,
    ) -> Result<(), Error> {
        let units = self.bgr.spec.units();
        let component = units.get(index).and_then(|u| u.name);
        let Some(template) = self.templates.get(index) else {
            return Ok(());
        };
        let deployment = slot_deployment(&self.bgr, component, slot, template, revision, replicas);
        let name = component_deployment_name(&self.name, component, slot);
        let api = self.target_writer.api::<Deployment>(&self.namespace);
        self.target_writer
            .patch(&api, &name, &Patch::Apply(&deployment), "deployment")
            .await?;
        let view = self.cluster.component_mut(index).slot_mut(slot);
        view.exists = true;
        view.revision = Some(revision.to_owned());
        view.spec_replicas = replicas;
        view.available = false;
        Ok(())
    }

    /// Sets `spec.replicas` of a slot Deployment through its scale subresource (a Deployment
    /// already gone needs no scaling).
    async fn scale_slot(&mut self, index: usize, slot: Slot, replicas: i32) -> Result<(), Error> {
        let units = self.bgr.spec.units();
        let component = units.get(index).and_then(|u| u.name);
        let name = component_deployment_name(&self.name, component, slot);
        let api = self.target_writer.api::<Deployment>(&self.namespace);
        match self
            .target_writer
            .patch_scale(
                &api,
                &name,
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                "scale",
            )
            .await
        {
            Ok(_) => {}
            Err(err) if err.not_found() => {}
            Err(err) => return Err(err.into()),
        }
        let view = self.cluster.component_mut(index).slot_mut(slot);
        if !view.exists {
            return Ok(());
        }
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
        let labels = BTreeMap::from([(
            RELEASE_RUN_LABEL.to_owned(),
            crate::names::label_value(&self.name).into_owned(),
        )]);
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
                triggers: None,
                requires_maintenance_window: None,
                history_limits: None,
                // The validation runs act as the release does.
                service_account_name: self.bgr.spec.service_account_name.clone(),
                concurrency: None,
                notifications: Vec::new(),
            },
        );
        runbook.metadata.namespace = Some(self.namespace.clone());
        runbook.metadata.labels = Some(labels.clone());
        runbook.metadata.owner_references = owner.clone().map(|o| vec![o]);
        let runbooks = self.writer.api::<Runbook>(&self.namespace);
        self.writer
            .patch(
                &runbooks,
                &runbook_name,
                &Patch::Apply(&runbook),
                "validation",
            )
            .await?;
        let run_name = run_name(&self.name, stage, &self.run_revision(revision));
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
                    alert: None,
                }),
            },
        );
        run.metadata.namespace = Some(self.namespace.clone());
        run.metadata.labels = Some(labels);
        run.metadata.owner_references = owner.map(|o| vec![o]);
        let runs = self.writer.api::<RunbookRun>(&self.namespace);
        match self.writer.create(&runs, &run, "validation").await {
            Ok(_) => {}
            // The run's name is the stage's and the revision's: it was started before.
            Err(err) if err.already_exists() => {}
            Err(err) => return Err(err.into()),
        }
        let mut status = self.status();
        status::record_validation_started(&mut status, &steps);
        self.bgr.status = Some(status);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_switch_is_undone_last_first() {
        let switched = [(2, Some(Slot::Blue)), (1, Some(Slot::Blue)), (0, None)];
        assert_eq!(revert_plan(&switched), [(1, Slot::Blue), (2, Slot::Blue)]);
        assert!(revert_plan(&[]).is_empty());
    }

    #[test]
    fn only_a_lasting_refusal_gives_the_switch_up() {
        for code in [400, 403, 404, 422] {
            assert!(refused(Some(code)), "{code}");
        }
        for code in [Some(409), Some(429), Some(500), Some(503), None] {
            assert!(!refused(code), "{code:?}");
        }
    }

    #[test]
    fn switch_results_name_the_direction() {
        assert_eq!(switch_result(false), "Switched");
        assert_eq!(switch_result(true), "RolledBack");
    }
}

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

use super::decide::{Decision, ScaleReason, lifecycle, slot_deployment};
use super::observe::{
    Cluster, Slot, Stage, release_label_value, run_name, slot_deployment_name, slot_label,
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
    /// Its decoded pod template.
    pub template: PodTemplateSpec,
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
                replicas,
            } => {
                self.apply_slot(*slot, revision, *replicas).await?;
                self.save(recorded, decision).await?;
                self.event(
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
                self.scale_slot(*slot, *replicas).await?;
                self.save(recorded, decision).await?;
                let why = match reason {
                    ScaleReason::Replicas => "to spec.replicas",
                    ScaleReason::Standby => "to standbyReplicas after scaleDownDelay",
                    ScaleReason::Aborted => "down after the abort",
                    ScaleReason::SwitchBack => "back up to switch back to it",
                };
                self.event(
                    EventType::Normal,
                    "SlotScaled",
                    format!("scaled the {slot} slot {why}: {replicas} replicas"),
                )
                .await;
            }
            Decision::PointPreview { slot, .. } => {
                if let Some(preview) = self.bgr.spec.services.preview.clone() {
                    self.point(&preview, *slot).await?;
                }
                self.cluster.preview_service_slot = Some(*slot);
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
                // Status first: it is the intent a restarted operator completes.
                self.save(recorded, decision).await?;
                let active = self.bgr.spec.services.active.clone();
                self.switch_sent();
                self.point(&active, *to).await?;
                self.cluster.service_slot = Some(*to);
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
                let active = self.bgr.spec.services.active.clone();
                self.switch_sent();
                self.point(&active, *to).await?;
                self.cluster.service_slot = Some(*to);
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
                let active = self.bgr.spec.services.active.clone();
                self.point(&active, *slot).await?;
                self.cluster.service_slot = Some(*slot);
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

    /// Server-side applies the slot Deployment of `slot` at `revision` with `replicas`.
    async fn apply_slot(&mut self, slot: Slot, revision: &str, replicas: i32) -> Result<(), Error> {
        let deployment = slot_deployment(&self.bgr, slot, &self.template, revision, replicas);
        let name = slot_deployment_name(&self.name, slot);
        let api = self.target_writer.api::<Deployment>(&self.namespace);
        self.target_writer
            .patch(&api, &name, &Patch::Apply(&deployment), "deployment")
            .await?;
        let view = self.cluster.slot_mut(slot);
        view.exists = true;
        view.revision = Some(revision.to_owned());
        view.spec_replicas = replicas;
        view.available = false;
        Ok(())
    }

    /// Sets `spec.replicas` of a slot Deployment through its scale subresource (a Deployment
    /// already gone needs no scaling).
    async fn scale_slot(&mut self, slot: Slot, replicas: i32) -> Result<(), Error> {
        let name = slot_deployment_name(&self.name, slot);
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
    fn switch_results_name_the_direction() {
        assert_eq!(switch_result(false), "Switched");
        assert_eq!(switch_result(true), "RolledBack");
    }
}

//! The pure decision logic of a BlueGreenRelease: which slot serves, what the idle slot holds,
//! when traffic switches, when a release is aborted or switched back, and when a slot is scaled
//! down. Nothing here reads the clock or does I/O: `now` is always an argument, so every rule is
//! unit-tested with fixed instants.
//!
//! # Model
//!
//! A release owns two Deployments, `<name>-blue` and `<name>-green` ([`slot_deployment`]). The
//! *active* slot is the one the active Service's selector names through the slot key; the other
//! is *idle*. A *revision* is a hash of the pod template ([`revision`]); each slot Deployment
//! carries the revision it was made from in the annotation [`REVISION_ANNOTATION`], so the
//! cluster itself tells which slot holds what.
//!
//! A *release* is the journey of one revision to the active slot. It is recorded in
//! `status.history` (newest first, [`HISTORY_LIMIT`] kept): [`Decision::BeginRelease`] opens a
//! record (its `startTime` is where `progressDeadline` counts from), and exactly one of
//! Promoted, Aborted, RolledBack or Superseded closes it ([`ReleaseResult`]).
//!
//! [`decide`] is level-triggered: it reads the spec, what status and annotations say
//! ([`ReleaseState`]), what the cluster shows ([`Cluster`]) and the clock, and returns one
//! [`Decision`]. The controller carries out an *action*, records it with [`update_status`], and
//! decides again at once; a *wait* names the instant to decide again, if any
//! ([`Decision::requeue_at`]); otherwise a change of the release, its Deployments, its Services'
//! EndpointSlices, a validation step or a MaintenanceWindow wakes it.
//!
//! # Crash safety
//!
//! Every input comes from the API server, so a restarted operator decides exactly what the
//! stopped one would have. The one ordering the controller must respect: a decision that
//! moves traffic ([`Decision::SwitchTraffic`], [`Decision::SwitchBack`]) is written to status
//! **before** the Service is patched. Status is the intent; if the operator dies between the two
//! writes, the next [`decide`] sees a Service that disagrees with status and puts the selector
//! where status says ([`Decision::RestoreSelector`]): the switch completes, it is never undone
//! and never repeated. (The other order would read the half-done switch as a hand edit and
//! switch back.)
//!
//! # No empty moment
//!
//! No decision ever writes the active Service's slot key to a slot without ready pods
//! (unless `replicas` is 0, where there is nothing to serve). A promotion additionally needs the
//! new slot fully available (every replica updated and available at the current generation).
//! `TrafficSwitched` and `switchedAt` are recorded only once the active Service's EndpointSlices
//! hold nothing but ready endpoints of the new slot, and the old slot keeps its pods until
//! `scaleDownDelay` after that moment; a new revision is not rolled into the old slot earlier
//! either ([`Decision::WaitForDrain`]).

use crate::well_known::{
    ABORT_ANNOTATION, DEFAULT_SLOT_LABEL, PROMOTE_ANNOTATION, RELEASE_LABEL, REVISION_ANNOTATION,
};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::{Resource, ResourceExt};

use super::types::{BlueGreenRelease, BlueGreenReleaseSpec, BlueGreenReleaseStatus, ReleaseRecord};
use crate::duration::{Duration, DurationError};
use crate::kubectl::{RolloutStatus, deployment_rollout_status};
use crate::runbook_run::{StepPhase, StepStatus};
use crate::step::{OnFailure, Step};

/// How long the old slot keeps its replicas after the switch when `scaleDownDelay` is not set.
pub const DEFAULT_SCALE_DOWN_DELAY: SignedDuration = SignedDuration::from_secs(30);
/// How long an aborted slot keeps its replicas when `abortScaleDownDelay` is not set.
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY: SignedDuration = SignedDuration::from_secs(30);
/// How long a new revision may take to become available when `progressDeadline` is not set.
pub const DEFAULT_PROGRESS_DEADLINE: SignedDuration = SignedDuration::from_mins(10);
/// Releases kept in `status.history`.
pub const HISTORY_LIMIT: usize = 5;

/// The longest a new revision waits for the previous switch to drain before it replaces the
/// old slot's pods (see [`Decision::WaitForDrain`]): the propagation time Argo Rollouts
/// recommends as the minimum `scaleDownDelay`.
pub const MAX_DRAIN: SignedDuration = SignedDuration::from_secs(30);
/// Longest label value Kubernetes accepts.
const MAX_LABEL_VALUE: usize = 63;
/// Longest object name Kubernetes accepts.
const MAX_NAME: usize = 253;

// --- slots ---------------------------------------------------------------------------------------

/// One of the two Deployments of a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// `<name>-blue`, the slot a first release normally uses.
    Blue,
    /// `<name>-green`.
    Green,
}

impl Slot {
    /// Both slots, blue first.
    pub const ALL: [Slot; 2] = [Slot::Blue, Slot::Green];

    /// The value of the slot label and the Deployment name suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }

    /// Reads a slot label value; anything but exactly `blue` or `green` is `None`.
    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "blue" => Some(Slot::Blue),
            "green" => Some(Slot::Green),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A slot label value that is neither `blue` nor `green`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a slot (blue or green)")]
pub struct UnknownSlot(pub String);

impl FromStr for Slot {
    type Err = UnknownSlot;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Slot::parse(text).ok_or_else(|| UnknownSlot(text.to_owned()))
    }
}

// --- revisions -----------------------------------------------------------------------------------

use crate::names::fnv64 as fnv1a64;

/// Writes `value` as canonical JSON: no whitespace, object keys sorted by their bytes, strings
/// escaped as serde_json escapes them. The output does not depend on the order keys were
/// inserted in, so it is the same whether or not serde_json's `preserve_order` feature is on.
fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            // Scalars: serde_json's compact form, which is deterministic.
            out.push_str(&value.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
    }
}

/// The revision of a pod template: the first 10 lowercase hex digits of the 64-bit FNV-1a hash
/// of the template's canonical JSON (keys sorted, no whitespace).
///
/// The template is hashed as the typed `PodTemplateSpec` serializes it, i.e. exactly what
/// [`slot_deployment`] puts in the Deployment: a field this version of k8s-openapi does not know
/// is dropped from both, so it neither changes the revision nor reaches the cluster. Replicas
/// are not part of the template, so a replica change is not a new revision.
pub fn revision(template: &PodTemplateSpec) -> String {
    // Serializing a PodTemplateSpec cannot fail (every map key is a string).
    let value = serde_json::to_value(template).unwrap_or(serde_json::Value::Null);
    let mut text = String::new();
    canonical_json(&value, &mut text);
    let hash = format!("{:016x}", fnv1a64(text.as_bytes()));
    hash[..10].to_owned()
}

/// The container images of a template (containers, then init containers, each once), for
/// `status.history`.
pub fn images(template: &PodTemplateSpec) -> Vec<String> {
    let mut seen = Vec::new();
    if let Some(spec) = &template.spec {
        let init = spec.init_containers.iter().flatten();
        for container in spec.containers.iter().chain(init) {
            if let Some(image) = &container.image
                && !seen.contains(image)
            {
                seen.push(image.clone());
            }
        }
    }
    seen
}

// --- slot Deployments ----------------------------------------------------------------------------

/// The slot label key of a release: `spec.slotLabel` or [`DEFAULT_SLOT_LABEL`].
pub fn slot_label(spec: &BlueGreenReleaseSpec) -> &str {
    spec.slot_label.as_deref().unwrap_or(DEFAULT_SLOT_LABEL)
}

/// `text` if it fits in `max` characters, else a prefix and a hash of the whole text, so two
/// long texts still differ.
fn bounded(text: &str, max: usize) -> String {
    crate::names::bound(text, crate::names::release(max)).into_owned()
}

/// The name of a slot's Deployment: `<release>-<slot>` (a release name too long for that is
/// shortened with a hash, the slot suffix is always kept).
pub fn slot_deployment_name(release: &str, slot: Slot) -> String {
    format!("{}-{slot}", bounded(release, MAX_NAME - 6))
}

/// The value of [`RELEASE_LABEL`] for a release: its name, or for a name longer than a label
/// value may be, a prefix and a hash.
pub fn release_label_value(release: &str) -> String {
    bounded(release, MAX_LABEL_VALUE)
}

/// The label selector of a slot Deployment: [`RELEASE_LABEL`] and the slot label.
///
/// A Deployment's selector is immutable, so it must hold only what never changes between
/// revisions. The template's own labels can change between revisions (a `version` label is
/// common), so they are *not* part of it; the release label makes the selector unique to this
/// release, so two releases' slots never select each other's pods.
pub fn slot_selector(release: &BlueGreenRelease, slot: Slot) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            RELEASE_LABEL.to_owned(),
            release_label_value(&release.name_any()),
        ),
        (
            slot_label(&release.spec).to_owned(),
            slot.as_str().to_owned(),
        ),
    ])
}

/// The Deployment of `slot` made from `template` at `revision` with `replicas`, for server-side
/// apply by the operator's field manager. It holds only fields the operator owns: name,
/// namespace, labels (the template's, plus [`slot_selector`]), the revision annotation, the owner
/// reference (controller, blocking deletion; only when the release has a uid), and
/// `spec.{replicas, selector, template}`. The pod template carries the template's labels and
/// annotations plus the selector labels and the revision annotation; other template metadata
/// (a name, say) means nothing in a Deployment and is dropped.
///
/// A slot label key the template already uses is overwritten with the slot.
pub fn slot_deployment(
    release: &BlueGreenRelease,
    slot: Slot,
    template: &PodTemplateSpec,
    revision: &str,
    replicas: i32,
) -> Deployment {
    let selector = slot_selector(release, slot);
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(selector.clone());
    let mut pod_annotations = meta.annotations.unwrap_or_default();
    pod_annotations.insert(REVISION_ANNOTATION.to_owned(), revision.to_owned());
    let owner = release.controller_owner_ref(&()).map(|mut owner| {
        owner.block_owner_deletion = Some(true);
        owner
    });
    Deployment {
        metadata: ObjectMeta {
            name: Some(slot_deployment_name(&release.name_any(), slot)),
            namespace: release.namespace(),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_owned(),
                revision.to_owned(),
            )])),
            owner_references: owner.map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: template.spec.clone(),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

// --- what the cluster shows ----------------------------------------------------------------------

/// One slot Deployment as the decision needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotView {
    /// The Deployment exists.
    pub exists: bool,
    /// Its [`REVISION_ANNOTATION`].
    pub revision: Option<String>,
    /// `spec.replicas` (the API server defaults it to 1).
    pub spec_replicas: i32,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// Fully rolled out: `kubectl rollout status` would say done (observedGeneration current,
    /// no progress deadline exceeded, no old replicas left) and updated == available ==
    /// spec replicas.
    pub available: bool,
}

impl SlotView {
    /// A slot whose Deployment does not exist.
    pub fn absent() -> Self {
        Self::default()
    }

    /// Reads a slot Deployment (`None`: it does not exist).
    pub fn observe(deployment: Option<&Deployment>) -> Self {
        let Some(deployment) = deployment else {
            return Self::absent();
        };
        let spec_replicas = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(1);
        let status = deployment.status.as_ref();
        let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
        let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
        let done = matches!(
            deployment_rollout_status(deployment),
            RolloutStatus::Done(_)
        );
        Self {
            exists: true,
            revision: deployment.annotations().get(REVISION_ANNOTATION).cloned(),
            spec_replicas,
            ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available: done && updated == spec_replicas && available == spec_replicas,
        }
    }

    /// The Deployment exists and was made from `revision`.
    pub fn holds(&self, revision: &str) -> bool {
        self.exists && self.revision.as_deref() == Some(revision)
    }
}

/// The active Service's EndpointSlices, summarised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointView {
    /// Ready endpoints whose pod belongs to each slot.
    pub ready_by_slot: BTreeMap<Slot, i32>,
    /// Ready endpoints of pods of neither slot (e.g. pods the Service selected before the
    /// release took it over, or endpoints without a pod).
    pub ready_unknown: i32,
    /// Endpoints not ready (starting, failing readiness, terminating), whatever their slot.
    pub not_ready: i32,
}

impl EndpointView {
    /// Summarises EndpointSlices; `slot_of` tells the slot of an endpoint's pod (from the pod's
    /// slot label, looked up by `targetRef`), `None` for anything else. A `ready` condition
    /// that is not set counts as ready, as the EndpointSlice API specifies.
    pub fn from_slices<'a>(
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        slot_of: impl Fn(&Endpoint) -> Option<Slot>,
    ) -> Self {
        let mut view = Self::default();
        for endpoint in slices
            .into_iter()
            .flat_map(|slice| slice.endpoints.iter().flatten())
        {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                view.not_ready += 1;
            } else if let Some(slot) = slot_of(endpoint) {
                *view.ready_by_slot.entry(slot).or_default() += 1;
            } else {
                view.ready_unknown += 1;
            }
        }
        view
    }

    /// Ready endpoints of `slot`.
    pub fn ready(&self, slot: Slot) -> i32 {
        self.ready_by_slot.get(&slot).copied().unwrap_or(0)
    }

    /// The endpoints are only ready endpoints of `slot` and there is at least one (none at all
    /// is accepted when `allow_empty`, i.e. the release has 0 replicas).
    pub fn only(&self, slot: Slot, allow_empty: bool) -> bool {
        self.not_ready == 0
            && self.ready_unknown == 0
            && self.ready(slot.other()) == 0
            && (allow_empty || self.ready(slot) > 0)
    }
}

/// The slot a Service's selector names through `key` (`None`: the key is missing or its value
/// is not a slot).
pub fn selector_slot(selector: Option<&BTreeMap<String, String>>, key: &str) -> Option<Slot> {
    selector
        .and_then(|selector| selector.get(key))
        .and_then(|value| Slot::parse(value))
}

/// Everything the decision reads from the cluster besides the release itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    /// `<name>-blue`.
    pub blue: SlotView,
    /// `<name>-green`.
    pub green: SlotView,
    /// The active Service's EndpointSlices.
    pub endpoints: EndpointView,
    /// The slot the active Service's selector names ([`selector_slot`]).
    pub service_slot: Option<Slot>,
    /// The slot the preview Service's selector names (ignored without a preview Service).
    pub preview_service_slot: Option<Slot>,
    /// A MaintenanceWindow matching `requiresMaintenanceWindow` is Active (ignored when the
    /// release does not require one).
    pub window_open: bool,
}

impl Cluster {
    /// The view of one slot.
    pub fn slot(&self, slot: Slot) -> &SlotView {
        match slot {
            Slot::Blue => &self.blue,
            Slot::Green => &self.green,
        }
    }

    /// The view of one slot, to change.
    pub fn slot_mut(&mut self, slot: Slot) -> &mut SlotView {
        match slot {
            Slot::Blue => &mut self.blue,
            Slot::Green => &mut self.green,
        }
    }
}

// --- what the release says -----------------------------------------------------------------------

/// Where one validation stage (prePromotion or postPromotion) of the desired revision stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Outcome {
    /// No step of the stage has a status entry.
    #[default]
    NotStarted,
    /// Some steps are not finished.
    Running,
    /// Every step finished; failures of `onFailure: Continue` steps do not count.
    Succeeded,
    /// A step failed; its message.
    Failed(String),
}

/// Summarises the status entries of one stage's `steps` (entries of other steps are ignored).
pub fn stage_outcome(validation: &[StepStatus], steps: &[Step]) -> Outcome {
    let mut found = 0;
    let mut finished = 0;
    for step in steps {
        let Some(entry) = validation.iter().find(|entry| entry.name == step.name) else {
            continue;
        };
        found += 1;
        match entry.phase {
            StepPhase::Failed if step.on_failure != Some(OnFailure::Continue) => {
                let detail = entry.message.as_deref().unwrap_or("failed");
                return Outcome::Failed(format!("step {:?}: {detail}", step.name));
            }
            StepPhase::Failed | StepPhase::Succeeded | StepPhase::Skipped => finished += 1,
            StepPhase::Pending | StepPhase::Running => {}
        }
    }
    if found == 0 {
        Outcome::NotStarted
    } else if finished == steps.len() {
        Outcome::Succeeded
    } else {
        Outcome::Running
    }
}

/// How a release ended, as written to `status.history[].result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseResult {
    /// It serves traffic and passed postPromotion: a known-good revision.
    Promoted,
    /// Stopped before the switch (prePromotion failed, progressDeadline, abort annotation).
    Aborted,
    /// Switched, then switched back (postPromotion failed or abort annotation).
    RolledBack,
    /// A newer template (or a revert to the active revision) replaced it before it finished.
    Superseded,
}

impl ReleaseResult {
    /// The string stored in status.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseResult::Promoted => "Promoted",
            ReleaseResult::Aborted => "Aborted",
            ReleaseResult::RolledBack => "RolledBack",
            ReleaseResult::Superseded => "Superseded",
        }
    }

    /// Reads a stored result; an unknown string reads as Superseded (closed, and not known
    /// good, so nothing is skipped on its account).
    pub fn from_status(text: &str) -> Self {
        match text {
            "Promoted" => ReleaseResult::Promoted,
            "Aborted" => ReleaseResult::Aborted,
            "RolledBack" => ReleaseResult::RolledBack,
            _ => ReleaseResult::Superseded,
        }
    }
}

/// One entry of `status.history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The revision released.
    pub revision: String,
    /// How it ended; `None` while the release is in progress (an *open* record).
    pub result: Option<ReleaseResult>,
    /// When the release began.
    pub started: Option<Timestamp>,
    /// When it ended.
    pub completed: Option<Timestamp>,
}

impl Record {
    /// Reads a stored record.
    pub fn from_status(record: &ReleaseRecord) -> Self {
        Self {
            revision: record.revision.clone(),
            result: record.result.as_deref().map(ReleaseResult::from_status),
            started: record.start_time.as_ref().map(|t| t.0),
            completed: record.completion_time.as_ref().map(|t| t.0),
        }
    }
}

/// What the release object says: its status, its annotations, and the revision of its current
/// template. Only persisted data, so a restarted operator reads the same.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseState {
    /// [`revision`] of the current `spec.template`.
    pub desired_revision: String,
    /// `status.desiredRevision`: the template revision the controller last recorded. Status
    /// validation entries belong to it (see [`record_desired_revision`]), so they count only
    /// when it equals `desired_revision`; and an abort is remembered only while it equals the
    /// aborted revision (a template changed and changed back is a retry).
    pub recorded_revision: Option<String>,
    /// `status.activeSlot`: the slot the active Service is meant to select.
    pub active_slot: Option<Slot>,
    /// `status.activeRevision`: the revision serving.
    pub active_revision: Option<String>,
    /// `status.switchedAt`: when the active Service's endpoints became only the active slot's
    /// ready pods; cleared by every switch until they do.
    pub switched_at: Option<Timestamp>,
    /// `status.history`, newest first.
    pub history: Vec<Record>,
    /// prePromotion of `recorded_revision`.
    pub pre_validation: Outcome,
    /// postPromotion of `recorded_revision`.
    pub post_validation: Outcome,
    /// The [`PROMOTE_ANNOTATION`] value, trimmed.
    pub promote: Option<String>,
    /// The [`ABORT_ANNOTATION`] value, trimmed.
    pub abort: Option<String>,
}

impl ReleaseState {
    /// Reads a release; `desired_revision` is [`revision`] of its decoded template.
    pub fn observe(release: &BlueGreenRelease, desired_revision: &str) -> Self {
        let empty = BlueGreenReleaseStatus::default();
        let status = release.status.as_ref().unwrap_or(&empty);
        let strategy = release.spec.strategy.as_ref();
        let pre = strategy.map_or(&[][..], |s| &s.pre_promotion[..]);
        let post = strategy.map_or(&[][..], |s| &s.post_promotion[..]);
        let annotation = |key: &str| {
            release
                .annotations()
                .get(key)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        Self {
            desired_revision: desired_revision.to_owned(),
            recorded_revision: status.desired_revision.clone(),
            active_slot: status.active_slot.as_deref().and_then(Slot::parse),
            active_revision: status.active_revision.clone(),
            switched_at: status.switched_at.as_ref().map(|t| t.0),
            history: status.history.iter().map(Record::from_status).collect(),
            pre_validation: stage_outcome(&status.validation, pre),
            post_validation: stage_outcome(&status.validation, post),
            promote: annotation(PROMOTE_ANNOTATION),
            abort: annotation(ABORT_ANNOTATION),
        }
    }
}

// --- the spec, parsed ----------------------------------------------------------------------------

/// Why a spec cannot be acted on. Each message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A duration string did not parse.
    #[error("{field}: {source}")]
    Duration {
        /// The field's path, e.g. `spec.strategy.scaleDownDelay`.
        field: &'static str,
        /// What the duration parser said.
        source: DurationError,
    },
    /// A count below zero (the schema normally prevents this).
    #[error("{field}: must be 0 or more, not {value}")]
    Negative {
        /// The field's path.
        field: &'static str,
        /// The value given.
        value: i32,
    },
    /// A progress deadline of no time would abort every release at once.
    #[error("spec.strategy.progressDeadline: must be longer than 0s")]
    ZeroDeadline,
}

/// A spec parsed into what [`decide`] needs, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasePlan {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `standbyReplicas` (default 0), at most `replicas`: an HPA scaling the release below it
    /// must not make the spec invalid, so it is capped rather than rejected.
    pub standby: i32,
    /// `autoPromote` (default true).
    pub auto_promote: bool,
    /// prePromotion has steps.
    pub has_pre: bool,
    /// postPromotion has steps.
    pub has_post: bool,
    /// A preview Service is named.
    pub has_preview: bool,
    /// `requiresMaintenanceWindow` is set.
    pub requires_window: bool,
    /// `scaleDownDelay` (default [`DEFAULT_SCALE_DOWN_DELAY`]).
    pub scale_down_delay: SignedDuration,
    /// `abortScaleDownDelay` (default [`DEFAULT_ABORT_SCALE_DOWN_DELAY`]).
    pub abort_scale_down_delay: SignedDuration,
    /// `progressDeadline` (default [`DEFAULT_PROGRESS_DEADLINE`]).
    pub progress_deadline: SignedDuration,
}

/// Reads a duration field into a signed duration, naming the field on error.
fn signed(value: &Duration, field: &'static str) -> Result<SignedDuration, SpecError> {
    let parsed = value
        .parse()
        .map_err(|source| SpecError::Duration { field, source })?;
    // Anything too long for a SignedDuration is not a real delay; saturating keeps parsing
    // total.
    Ok(SignedDuration::try_from(parsed).unwrap_or(SignedDuration::MAX))
}

/// Reads an optional duration field with its default.
fn signed_or(
    value: Option<&Duration>,
    field: &'static str,
    default: SignedDuration,
) -> Result<SignedDuration, SpecError> {
    value.map_or(Ok(default), |value| signed(value, field))
}

impl ReleasePlan {
    /// Parses a spec; fails on durations that do not parse, negative counts and a zero
    /// progress deadline. (Template, Services and steps are checked by the controller.)
    pub fn from_spec(spec: &BlueGreenReleaseSpec) -> Result<Self, SpecError> {
        if spec.replicas < 0 {
            return Err(SpecError::Negative {
                field: "spec.replicas",
                value: spec.replicas,
            });
        }
        let default = Default::default();
        let strategy = spec.strategy.as_ref().unwrap_or(&default);
        let standby = strategy.standby_replicas.unwrap_or(0);
        if standby < 0 {
            return Err(SpecError::Negative {
                field: "spec.strategy.standbyReplicas",
                value: standby,
            });
        }
        let progress_deadline = signed_or(
            strategy.progress_deadline.as_ref(),
            "spec.strategy.progressDeadline",
            DEFAULT_PROGRESS_DEADLINE,
        )?;
        if !progress_deadline.is_positive() {
            return Err(SpecError::ZeroDeadline);
        }
        Ok(Self {
            replicas: spec.replicas,
            standby: standby.min(spec.replicas),
            auto_promote: strategy.auto_promote.unwrap_or(true),
            has_pre: !strategy.pre_promotion.is_empty(),
            has_post: !strategy.post_promotion.is_empty(),
            has_preview: spec.services.preview.is_some(),
            requires_window: spec.requires_maintenance_window.is_some(),
            scale_down_delay: signed_or(
                strategy.scale_down_delay.as_ref(),
                "spec.strategy.scaleDownDelay",
                DEFAULT_SCALE_DOWN_DELAY,
            )?,
            abort_scale_down_delay: signed_or(
                strategy.abort_scale_down_delay.as_ref(),
                "spec.strategy.abortScaleDownDelay",
                DEFAULT_ABORT_SCALE_DOWN_DELAY,
            )?,
            progress_deadline,
        })
    }
}

/// `at + by`, saturating: a huge delay must not panic the controller.
fn add(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_add(by).unwrap_or(if by.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `at` cut to the whole second. Status times are stored with second precision, so instants
/// the decision records are cut first: what a restarted operator reads back is then exactly
/// what the running one computed.
fn second(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

// --- decisions -----------------------------------------------------------------------------------

/// A validation stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `prePromotion`: against the new slot, before the switch.
    Pre,
    /// `postPromotion`: after the switch, while the old slot still runs.
    Post,
}

impl Stage {
    /// The spec field's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pre => "prePromotion",
            Stage::Post => "postPromotion",
        }
    }
}

/// Why a release is stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// `ops.runbook.dev/abort` names the revision.
    ByHand,
    /// A validation step failed.
    ValidationFailed {
        /// Which stage.
        stage: Stage,
        /// The step's message.
        message: String,
    },
    /// The new slot was not available by the deadline.
    ProgressDeadline {
        /// The deadline that passed.
        deadline: Timestamp,
    },
}

impl AbortReason {
    /// The Event and `Degraded` condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AbortReason::ByHand => "AbortedByHand",
            AbortReason::ValidationFailed {
                stage: Stage::Pre, ..
            } => "PrePromotionFailed",
            AbortReason::ValidationFailed {
                stage: Stage::Post, ..
            } => "PostPromotionFailed",
            AbortReason::ProgressDeadline { .. } => "ProgressDeadlineExceeded",
        }
    }

    /// A sentence for the condition and the Event.
    pub fn message(&self, revision: &str) -> String {
        match self {
            AbortReason::ByHand => format!("{ABORT_ANNOTATION} names revision {revision}"),
            AbortReason::ValidationFailed { stage, message } => {
                format!(
                    "{} of revision {revision} failed: {message}",
                    stage.as_str()
                )
            }
            AbortReason::ProgressDeadline { deadline } => {
                format!("revision {revision} was not available by its progress deadline {deadline}")
            }
        }
    }
}

/// Why promotion waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromotionWait {
    /// `autoPromote` is false and no promote annotation is set.
    Manual,
    /// `autoPromote` is false and the promote annotation names another revision (an old or a
    /// future one): it is ignored.
    OtherRevision {
        /// The revision the annotation names.
        named: String,
    },
    /// `requiresMaintenanceWindow` and no matching window is Active.
    MaintenanceWindow,
}

impl PromotionWait {
    /// The Event and condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PromotionWait::Manual => "PromotionRequired",
            PromotionWait::OtherRevision { .. } => "PromoteNamesOtherRevision",
            PromotionWait::MaintenanceWindow => "WaitingForWindow",
        }
    }

    /// A sentence for the condition.
    pub fn message(&self, revision: &str) -> String {
        match self {
            PromotionWait::Manual => format!(
                "autoPromote is false: set the annotation {PROMOTE_ANNOTATION}: {revision} to promote"
            ),
            PromotionWait::OtherRevision { named } => format!(
                "{PROMOTE_ANNOTATION} names revision {named}, not the desired revision {revision}; ignored"
            ),
            PromotionWait::MaintenanceWindow => format!(
                "revision {revision} is ready; promotion waits for a matching MaintenanceWindow to be Active"
            ),
        }
    }
}

/// Why a slot's replica count changes without a template change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleReason {
    /// The active slot follows `spec.replicas` (an HPA or an edit) while the template is
    /// another revision, so the slot cannot be re-applied from it.
    Replicas,
    /// The old slot goes to `standbyReplicas` after `scaleDownDelay`.
    Standby,
    /// An aborted or rolled-back revision's slot goes to 0 after `abortScaleDownDelay`.
    Aborted,
    /// The old slot is brought back to full size so traffic can switch back to it.
    SwitchBack,
}

/// The phase shown in `status.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The desired revision serves, nothing is pending.
    Healthy,
    /// A revision is being rolled into a slot, or the cluster is being brought in line.
    Progressing,
    /// prePromotion steps run.
    Validating,
    /// Ready to switch; waiting for a promote annotation or a maintenance window.
    AwaitingPromotion,
    /// Traffic is switching, endpoints converging, or postPromotion steps run.
    Promoting,
    /// The old slot waits out `scaleDownDelay` or is being scaled down.
    ScalingDown,
    /// A release was aborted or switched back, or traffic cannot be put where it belongs.
    Degraded,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 7] = [
        Phase::Healthy,
        Phase::Progressing,
        Phase::Validating,
        Phase::AwaitingPromotion,
        Phase::Promoting,
        Phase::ScalingDown,
        Phase::Degraded,
    ];

    /// The string written to `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Healthy => "Healthy",
            Phase::Progressing => "Progressing",
            Phase::Validating => "Validating",
            Phase::AwaitingPromotion => "AwaitingPromotion",
            Phase::Promoting => "Promoting",
            Phase::ScalingDown => "ScalingDown",
            Phase::Degraded => "Degraded",
        }
    }
}

/// What the controller should do now. *Actions* change the cluster or status and are followed
/// by an immediate new [`decide`]; *waits* change nothing and name when to decide again, if a
/// watched change will not come first.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Action: open a release of `revision` in status (push a history record with its images
    /// and `startTime` now, close `supersedes` as Superseded, set `previewSlot` to `slot`).
    /// Any validation still running for another revision is cancelled (status validation
    /// belongs to the desired revision, see [`record_desired_revision`]).
    BeginRelease {
        /// The revision released.
        revision: String,
        /// The slot it goes to.
        slot: Slot,
        /// No validation and no promotion gates: the first release, or a revision that was
        /// promoted before (a rollback).
        fast_track: bool,
        /// The open release it replaces, if any.
        supersedes: Option<String>,
    },
    /// Action: server-side apply [`slot_deployment`] for `slot` from the current template.
    /// Used to roll `revision` into the idle slot, and to keep the active slot at
    /// `spec.replicas`.
    ApplySlot {
        /// The slot.
        slot: Slot,
        /// The revision of the current template.
        revision: String,
        /// `spec.replicas`.
        replicas: i32,
    },
    /// Action: set only `spec.replicas` of a slot Deployment (through its scale subresource;
    /// a server-side apply of just that field would drop the template the operator owns).
    ScaleSlot {
        /// The slot.
        slot: Slot,
        /// The new count.
        replicas: i32,
        /// Why.
        reason: ScaleReason,
    },
    /// Action: set the preview Service's slot key to `slot` (JSON merge patch of that key
    /// only): it follows the slot of the desired revision, and a hand edit is put back.
    PointPreview {
        /// Where it should point.
        slot: Slot,
        /// What it names now.
        found: Option<Slot>,
    },
    /// Action: start the validation steps of `stage` against the new slot.
    StartValidation {
        /// Which stage.
        stage: Stage,
        /// The revision validated.
        revision: String,
    },
    /// Action: promote: record in status `activeSlot: to`, `activeRevision: revision` and clear
    /// `switchedAt`/`scaleDownAt` (TrafficSwitched False), **then** set the active Service's
    /// slot key to `to`. Only decided when `to` is fully available.
    SwitchTraffic {
        /// The new active slot.
        to: Slot,
        /// Its revision.
        revision: String,
    },
    /// Action: the active Service's endpoints are now only ready pods of `slot`: record
    /// `switchedAt: at` and `scaleDownAt`, TrafficSwitched True.
    RecordSwitched {
        /// The active slot.
        slot: Slot,
        /// Now, to the second.
        at: Timestamp,
        /// When the other slot will be scaled down.
        scale_down_at: Timestamp,
        /// This completes a switch back after a failed release.
        back: bool,
    },
    /// Action: close the open release of `revision` with `result` (Promoted once the switch is
    /// complete and postPromotion passed; Superseded when the template went back to the active
    /// revision before it finished).
    CloseRelease {
        /// The revision.
        revision: String,
        /// How it ended.
        result: ReleaseResult,
    },
    /// Action: stop the release of `revision` before the switch: close it as Aborted, Degraded
    /// with the reason, record `scaleDownAt`. The active slot and Service are untouched; the new
    /// slot is scaled to 0 later ([`Decision::Aborted`]). The revision is not tried again until
    /// the template changes.
    Abort {
        /// The revision.
        revision: String,
        /// Why.
        reason: AbortReason,
        /// When its slot will be scaled down (now + `abortScaleDownDelay`).
        scale_down_at: Timestamp,
    },
    /// Action: undo a switch whose postPromotion failed or that was aborted by hand: record
    /// `activeSlot: to`, `activeRevision: revision`, clear `switchedAt`, close `failed` as
    /// RolledBack, Degraded, **then** set the active Service's slot key to `to`.
    SwitchBack {
        /// The old slot, which still has ready pods.
        to: Slot,
        /// Its revision.
        revision: String,
        /// The revision switched away from.
        failed: String,
        /// Why.
        reason: AbortReason,
    },
    /// Action: the active Service's slot key is not the active slot (edited by hand, removed by
    /// a GitOps sync, or a switch interrupted between the status write and the patch): set it
    /// back to `slot`, which has ready pods.
    RestoreSelector {
        /// The active slot.
        slot: Slot,
        /// What the Service names now.
        found: Option<Slot>,
    },
    /// Wait until `until`: the idle slot still holds the previous revision's pods and may
    /// still get traffic from proxies that have not caught up with the last switch; a new
    /// revision replaces them only once the switch converged and `min(scaleDownDelay,`
    /// [`MAX_DRAIN`]`)` passed since `switchedAt`.
    WaitForDrain {
        /// The slot the new revision goes to.
        slot: Slot,
        /// `switchedAt + min(scaleDownDelay, MAX_DRAIN)`.
        until: Timestamp,
    },
    /// Wait for `slot` to be fully available (its Deployment's status wakes the controller),
    /// or until `deadline`, the progress deadline.
    WaitForAvailable {
        /// The slot.
        slot: Slot,
        /// When the release is aborted if the slot is still not available.
        deadline: Option<Timestamp>,
    },
    /// Wait for the validation steps of `stage` to finish.
    WaitForValidation {
        /// Which stage.
        stage: Stage,
        /// The revision validated.
        revision: String,
    },
    /// Wait: the new slot is ready and validated; promotion waits (AwaitingPromotion).
    AwaitPromotion {
        /// The revision waiting.
        revision: String,
        /// Why.
        reason: PromotionWait,
    },
    /// Wait for the active Service's EndpointSlices to hold only ready endpoints of `slot`.
    WaitForEndpoints {
        /// The active slot.
        slot: Slot,
        /// After a switch back.
        back: bool,
    },
    /// Wait until `at` (`switchedAt + scaleDownDelay`) to scale the old slot down.
    WaitForScaleDown {
        /// The old slot.
        slot: Slot,
        /// When.
        at: Timestamp,
    },
    /// Wait: the release of `revision` was aborted or rolled back (Degraded) and is not retried
    /// until the template changes; its slot is scaled to 0 at `scale_down_at` (`None`: already
    /// done).
    Aborted {
        /// The revision.
        revision: String,
        /// When its slot is scaled down, if it still has replicas.
        scale_down_at: Option<Timestamp>,
    },
    /// Wait: `revision` must be switched back from, but the old slot `to` has no ready pods yet
    /// (or there is no old slot: `None`, e.g. a first release aborted after its switch).
    /// Traffic stays where it is rather than going to an empty slot. Degraded.
    AwaitSwitchBack {
        /// The slot to switch back to.
        to: Option<Slot>,
        /// The revision being left.
        revision: String,
        /// Why.
        reason: AbortReason,
    },
    /// Wait: the active Service names another slot than the active one, but the active slot has
    /// no ready pods, so restoring the selector would empty the Service; it is left alone
    /// until the slot has ready pods. Degraded.
    HoldSelector {
        /// The active slot.
        slot: Slot,
        /// What the Service names now.
        found: Option<Slot>,
    },
    /// Wait: the desired revision serves, the old slot is at standby, nothing is pending.
    Healthy,
    /// Wait: the spec cannot be acted on (report `InvalidSpec` naming the field); the cluster is
    /// left untouched.
    Invalid(SpecError),
}

impl Decision {
    /// The phase to show for this decision; `None` for [`Decision::Invalid`] (the controller
    /// reports an invalid spec through its conditions).
    pub fn phase(&self) -> Option<Phase> {
        use Decision::*;
        Some(match self {
            Healthy => Phase::Healthy,
            BeginRelease { .. }
            | ApplySlot { .. }
            | PointPreview { .. }
            | RestoreSelector { .. }
            | WaitForDrain { .. }
            | WaitForAvailable { .. }
            | ScaleSlot {
                reason: ScaleReason::Replicas,
                ..
            }
            | CloseRelease {
                result: ReleaseResult::Superseded,
                ..
            } => Phase::Progressing,
            StartValidation {
                stage: Stage::Pre, ..
            }
            | WaitForValidation {
                stage: Stage::Pre, ..
            } => Phase::Validating,
            AwaitPromotion { .. } => Phase::AwaitingPromotion,
            SwitchTraffic { .. }
            | StartValidation {
                stage: Stage::Post, ..
            }
            | WaitForValidation {
                stage: Stage::Post, ..
            }
            | RecordSwitched { back: false, .. }
            | WaitForEndpoints { back: false, .. }
            | CloseRelease { .. } => Phase::Promoting,
            ScaleSlot {
                reason: ScaleReason::Standby,
                ..
            }
            | WaitForScaleDown { .. } => Phase::ScalingDown,
            Abort { .. }
            | Aborted { .. }
            | SwitchBack { .. }
            | AwaitSwitchBack { .. }
            | HoldSelector { .. }
            | RecordSwitched { back: true, .. }
            | WaitForEndpoints { back: true, .. }
            | ScaleSlot {
                reason: ScaleReason::Aborted | ScaleReason::SwitchBack,
                ..
            } => Phase::Degraded,
            Invalid(_) => return None,
        })
    }

    /// Whether this decision changes something and must be followed by another [`decide`].
    pub fn is_action(&self) -> bool {
        use Decision::*;
        matches!(
            self,
            BeginRelease { .. }
                | ApplySlot { .. }
                | ScaleSlot { .. }
                | PointPreview { .. }
                | StartValidation { .. }
                | SwitchTraffic { .. }
                | RecordSwitched { .. }
                | CloseRelease { .. }
                | Abort { .. }
                | SwitchBack { .. }
                | RestoreSelector { .. }
        )
    }

    /// For a wait, the instant to decide again if nothing watched changes first; `None` for
    /// actions (decide again at once) and for waits only a change can end.
    pub fn requeue_at(&self) -> Option<Timestamp> {
        match self {
            Decision::WaitForDrain { until, .. } => Some(*until),
            Decision::WaitForAvailable { deadline, .. } => *deadline,
            Decision::WaitForScaleDown { at, .. } => Some(*at),
            Decision::Aborted { scale_down_at, .. } => *scale_down_at,
            _ => None,
        }
    }

    /// Whether this decision writes the active Service's selector (after status).
    pub fn moves_traffic(&self) -> Option<Slot> {
        match self {
            Decision::SwitchTraffic { to, .. } | Decision::SwitchBack { to, .. } => Some(*to),
            Decision::RestoreSelector { slot, .. } => Some(*slot),
            _ => None,
        }
    }
}

/// Decides what the release should do at `now`.
///
/// In order, each rule level-triggered (`R` is the desired revision, `A` the active slot):
///
/// 1. **Invalid spec**: [`Decision::Invalid`], nothing touched.
/// 2. **Active slot size.** When `R` serves, the active slot is re-applied if it does not hold
///    `R` at `spec.replicas`; otherwise (it holds an older revision) only its replica count
///    follows `spec.replicas` ([`ScaleReason::Replicas`]).
/// 3. **Selector guard.** If the active Service does not name `A`, it is put back
///    ([`Decision::RestoreSelector`]) if `A` has ready pods, else left alone
///    ([`Decision::HoldSelector`]).
/// 4. Then one of three situations:
///    - **`R` serves** ([`settled`](#settled)): finish its release, scale the old slot down.
///    - **`R` was aborted or rolled back** and the template has not changed since:
///      [`Decision::Aborted`], its slot scaled to 0 `abortScaleDownDelay` after the abort (or
///      after the switch back converged); if it was aborted before it reached the idle slot,
///      that slot goes to standby at `switchedAt + scaleDownDelay` as usual.
///    - **`R` is on its way** ([`in flight`](#in-flight)).
///
/// # In flight
///
/// The target slot is the idle one (`A`'s other); for a first release (no `A`): the slot the
/// Service already names if it holds `R`, else the other one if it names one (so a Service
/// selecting pods from before the release never empties), else a slot already holding `R`,
/// else blue.
///
/// 1. No open record for `R`: [`Decision::BeginRelease`] (superseding an open one).
/// 2. Abort annotation naming `R`, or prePromotion failed: [`Decision::Abort`].
/// 3. Target does not hold `R` at `spec.replicas`: abort if the progress deadline passed; wait
///    for the previous switch to converge and drain if the target still runs other pods
///    ([`Decision::WaitForDrain`]); else [`Decision::ApplySlot`].
/// 4. Preview Service to the target.
/// 5. Target not fully available: abort at the deadline, else [`Decision::WaitForAvailable`].
/// 6. Unless fast-tracked: prePromotion (start, wait); then `autoPromote` false needs
///    `ops.runbook.dev/promote: R`, and `requiresMaintenanceWindow` needs an open window
///    ([`Decision::AwaitPromotion`]).
/// 7. [`Decision::SwitchTraffic`].
///
/// The progress deadline is `progressDeadline` after the later of the release's start and the
/// end of the drain; it applies until prePromotion starts (validation and waiting for
/// promotion are not bounded by it).
///
/// *Fast track*: a first release (nothing serves yet) and a revision that was Promoted before
/// (a rollback, found in the history kept) skip validation and promotion gates. A rollback to
/// the revision the idle slot still runs at full size is therefore an instant flip: no pod is
/// created.
///
/// # Settled
///
/// When `R` is the active revision and its release is open: an abort annotation naming `R` or a
/// failed postPromotion switches back to the old slot if it has ready pods (scaling it back to
/// `spec.replicas` first if it was shrunk; [`Decision::AwaitSwitchBack`] otherwise); the switch
/// is recorded once the endpoints hold only ready pods of `A`; postPromotion runs (not on the
/// fast track, nor when the other slot holds no revision of this release); then the release
/// closes as Promoted. An open
/// release of another revision (the template went back to the active one) closes as
/// Superseded. Then the old slot goes to `standbyReplicas` (0 if it holds a revision never
/// promoted) at `switchedAt + scaleDownDelay`. An active slot that is not fully available shows
/// as [`Decision::WaitForAvailable`]; otherwise [`Decision::Healthy`].
pub fn decide(
    spec: &BlueGreenReleaseSpec,
    state: &ReleaseState,
    cluster: &Cluster,
    now: Timestamp,
) -> Decision {
    let plan = match ReleasePlan::from_spec(spec) {
        Ok(plan) => plan,
        Err(error) => return Decision::Invalid(error),
    };
    Ctx {
        plan: &plan,
        state,
        cluster,
        now,
    }
    .decide()
}

/// One decision's inputs.
struct Ctx<'a> {
    plan: &'a ReleasePlan,
    state: &'a ReleaseState,
    cluster: &'a Cluster,
    now: Timestamp,
}

impl Ctx<'_> {
    fn decide(&self) -> Decision {
        let desired = self.desired();
        let active = self.state.active_slot;
        let settled = active.is_some() && self.state.active_revision.as_deref() == Some(desired);
        if let Some(a) = active {
            let view = self.slot(a);
            if settled {
                if !view.holds(desired) || view.spec_replicas != self.plan.replicas {
                    return Decision::ApplySlot {
                        slot: a,
                        revision: desired.to_owned(),
                        replicas: self.plan.replicas,
                    };
                }
            } else if view.exists && view.spec_replicas != self.plan.replicas {
                return Decision::ScaleSlot {
                    slot: a,
                    replicas: self.plan.replicas,
                    reason: ScaleReason::Replicas,
                };
            }
            let found = self.cluster.service_slot;
            if found != Some(a) {
                return if self.can_select(a) {
                    Decision::RestoreSelector { slot: a, found }
                } else {
                    Decision::HoldSelector { slot: a, found }
                };
            }
        }
        match active {
            Some(a) if settled => self.settled(a),
            _ => match self.aborted() {
                Some(record) => self.aborted_release(record),
                None => self.in_flight(),
            },
        }
    }

    fn desired(&self) -> &str {
        &self.state.desired_revision
    }

    fn slot(&self, slot: Slot) -> &SlotView {
        self.cluster.slot(slot)
    }

    /// Whether the active Service may be pointed at `slot`: it has ready pods (or the release
    /// wants none).
    fn can_select(&self, slot: Slot) -> bool {
        let view = self.slot(slot);
        view.exists && (view.ready_replicas > 0 || self.plan.replicas == 0)
    }

    /// A stage's outcome for the desired revision: status validation counts only when it
    /// belongs to the desired revision.
    fn validation(&self, stage: Stage) -> Outcome {
        if self.state.recorded_revision.as_deref() != Some(self.desired()) {
            return Outcome::NotStarted;
        }
        match stage {
            Stage::Pre => self.state.pre_validation.clone(),
            Stage::Post => self.state.post_validation.clone(),
        }
    }

    fn latest(&self) -> Option<&Record> {
        self.state.history.first()
    }

    /// The newest record, if it is an open release of the desired revision.
    fn open_release(&self) -> Option<&Record> {
        self.latest()
            .filter(|record| record.revision == self.desired() && record.result.is_none())
    }

    /// A revision that was promoted before.
    fn known_good(&self, revision: &str) -> bool {
        self.state.history.iter().any(|record| {
            record.revision == revision && record.result == Some(ReleaseResult::Promoted)
        })
    }

    /// The newest record, if it says the desired revision was aborted or rolled back and the
    /// template has not changed since.
    fn aborted(&self) -> Option<&Record> {
        self.latest().filter(|record| {
            record.revision == self.desired()
                && matches!(
                    record.result,
                    Some(ReleaseResult::Aborted | ReleaseResult::RolledBack)
                )
                && self.state.recorded_revision.as_deref() == Some(self.desired())
        })
    }

    /// The slot the desired revision goes to (see [`decide`], "In flight").
    fn target_slot(&self) -> Slot {
        if let Some(active) = self.state.active_slot {
            return active.other();
        }
        let desired = self.desired();
        if let Some(named) = self.cluster.service_slot {
            return if self.slot(named).holds(desired) {
                named
            } else {
                named.other()
            };
        }
        Slot::ALL
            .into_iter()
            .find(|slot| self.slot(*slot).holds(desired))
            .unwrap_or(Slot::Blue)
    }

    /// The preview Service follows `target`.
    fn preview(&self, target: Slot) -> Option<Decision> {
        let found = self.cluster.preview_service_slot;
        (self.plan.has_preview && found != Some(target)).then_some(Decision::PointPreview {
            slot: target,
            found,
        })
    }

    /// Record the switch to `slot` once the endpoints converged, else wait for them.
    fn converge(&self, slot: Slot, back: bool, delay: SignedDuration) -> Decision {
        if self.cluster.endpoints.only(slot, self.plan.replicas == 0) {
            let at = second(self.now);
            Decision::RecordSwitched {
                slot,
                at,
                scale_down_at: add(at, delay),
                back,
            }
        } else {
            Decision::WaitForEndpoints { slot, back }
        }
    }

    fn settled(&self, active: Slot) -> Decision {
        let desired = self.desired();
        let old = active.other();
        let open = self.open_release().is_some();
        if open {
            let failure = if self.state.abort.as_deref() == Some(desired) {
                Some(AbortReason::ByHand)
            } else if let Outcome::Failed(message) = self.validation(Stage::Post) {
                Some(AbortReason::ValidationFailed {
                    stage: Stage::Post,
                    message,
                })
            } else {
                None
            };
            if let Some(reason) = failure {
                return self.switch_back(old, reason);
            }
        }
        let Some(switched_at) = self.state.switched_at else {
            return self.converge(active, false, self.plan.scale_down_delay);
        };
        if open {
            // First release (the other slot holds nothing of ours) or a known-good revision.
            let fast_track = self.slot(old).revision.is_none() || self.known_good(desired);
            if !fast_track && self.plan.has_post {
                match self.validation(Stage::Post) {
                    Outcome::NotStarted => {
                        return Decision::StartValidation {
                            stage: Stage::Post,
                            revision: desired.to_owned(),
                        };
                    }
                    Outcome::Running => {
                        return Decision::WaitForValidation {
                            stage: Stage::Post,
                            revision: desired.to_owned(),
                        };
                    }
                    Outcome::Succeeded | Outcome::Failed(_) => {}
                }
            }
            return Decision::CloseRelease {
                revision: desired.to_owned(),
                result: ReleaseResult::Promoted,
            };
        }
        if let Some(stale) = self.latest().filter(|record| record.result.is_none()) {
            return Decision::CloseRelease {
                revision: stale.revision.clone(),
                result: ReleaseResult::Superseded,
            };
        }
        if let Some(preview) = self.preview(active) {
            return preview;
        }
        if let Some(keep) = self.standby_for(old) {
            let at = add(switched_at, self.plan.scale_down_delay);
            return if self.now >= at {
                Decision::ScaleSlot {
                    slot: old,
                    replicas: keep,
                    reason: ScaleReason::Standby,
                }
            } else {
                Decision::WaitForScaleDown { slot: old, at }
            };
        }
        if !self.slot(active).available {
            return Decision::WaitForAvailable {
                slot: active,
                deadline: None,
            };
        }
        Decision::Healthy
    }

    /// Switch back from the desired revision to `old`.
    fn switch_back(&self, old: Slot, reason: AbortReason) -> Decision {
        let desired = self.desired();
        let view = self.slot(old);
        match &view.revision {
            Some(previous) if view.exists && previous != desired => {
                if view.spec_replicas < self.plan.replicas {
                    Decision::ScaleSlot {
                        slot: old,
                        replicas: self.plan.replicas,
                        reason: ScaleReason::SwitchBack,
                    }
                } else if self.can_select(old) {
                    Decision::SwitchBack {
                        to: old,
                        revision: previous.clone(),
                        failed: desired.to_owned(),
                        reason,
                    }
                } else {
                    Decision::AwaitSwitchBack {
                        to: Some(old),
                        revision: desired.to_owned(),
                        reason,
                    }
                }
            }
            _ => Decision::AwaitSwitchBack {
                to: None,
                revision: desired.to_owned(),
                reason,
            },
        }
    }

    fn aborted_release(&self, record: &Record) -> Decision {
        let desired = self.desired();
        let target = self.target_slot();
        let active = self.state.active_slot;
        if let Some(active) = active
            && self.state.switched_at.is_none()
        {
            return self.converge(active, true, self.plan.abort_scale_down_delay);
        }
        if let Some(preview) = self.preview(target) {
            return preview;
        }
        let view = self.slot(target);
        let (at, replicas, reason) = if view.holds(desired) {
            if view.spec_replicas == 0 {
                return Decision::Aborted {
                    revision: desired.to_owned(),
                    scale_down_at: None,
                };
            }
            // From the abort, or from the moment traffic was back on the active slot, whichever
            // is later; a record without a completion time is scaled down at once.
            let since = record.completed.max(active.and(self.state.switched_at));
            let at = since.map_or(self.now, |since| {
                add(since, self.plan.abort_scale_down_delay)
            });
            (at, 0, ScaleReason::Aborted)
        } else if let Some(switched_at) = active.and(self.state.switched_at)
            && let Some(keep) = self.standby_for(target)
        {
            // Aborted before it touched the idle slot (while the previous switch drained):
            // that slot still holds the previous revision and goes to standby as usual.
            (
                add(switched_at, self.plan.scale_down_delay),
                keep,
                ScaleReason::Standby,
            )
        } else {
            return Decision::Aborted {
                revision: desired.to_owned(),
                scale_down_at: None,
            };
        };
        if self.now >= at {
            return Decision::ScaleSlot {
                slot: target,
                replicas,
                reason,
            };
        }
        Decision::Aborted {
            revision: desired.to_owned(),
            scale_down_at: Some(at),
        }
    }

    /// The size the slot that stopped serving should shrink to, if it is not there yet:
    /// `standbyReplicas` when it holds a revision that was promoted (warm for a rollback), else
    /// 0 (standby pods of a revision that never passed would serve no purpose).
    fn standby_for(&self, slot: Slot) -> Option<i32> {
        let view = self.slot(slot);
        let keep = view
            .revision
            .as_deref()
            .filter(|revision| self.known_good(revision))
            .map_or(0, |_| self.plan.standby);
        (view.exists && view.spec_replicas != keep).then_some(keep)
    }

    /// When a new revision may replace the pods of the slot that served before the last switch:
    /// `min(scaleDownDelay, 30s)` after `switchedAt`. That is the time proxies need to stop
    /// sending it traffic; a longer `scaleDownDelay` only keeps a rollback warm, and a new
    /// revision gives that up anyway.
    fn drained(&self) -> Option<Timestamp> {
        let drain = self.plan.scale_down_delay.min(MAX_DRAIN);
        self.state
            .active_slot
            .and(self.state.switched_at)
            .map(|switched| add(switched, drain))
    }

    fn abort(&self, reason: AbortReason) -> Decision {
        Decision::Abort {
            revision: self.desired().to_owned(),
            reason,
            scale_down_at: add(second(self.now), self.plan.abort_scale_down_delay),
        }
    }

    fn in_flight(&self) -> Decision {
        let desired = self.desired();
        let target = self.target_slot();
        let active = self.state.active_slot;
        let fast_track = active.is_none() || self.known_good(desired);
        let Some(record) = self.open_release() else {
            return Decision::BeginRelease {
                revision: desired.to_owned(),
                slot: target,
                fast_track,
                supersedes: self
                    .latest()
                    .filter(|record| record.result.is_none())
                    .map(|record| record.revision.clone()),
            };
        };
        if self.state.abort.as_deref() == Some(desired) {
            return self.abort(AbortReason::ByHand);
        }
        let pre = self.validation(Stage::Pre);
        if let Outcome::Failed(message) = &pre {
            return self.abort(AbortReason::ValidationFailed {
                stage: Stage::Pre,
                message: message.clone(),
            });
        }
        // When the old slot drains, the deadline counts from the end of the drain.
        let drained = self.drained();
        let deadline = (pre == Outcome::NotStarted)
            .then(|| record.started.max(drained))
            .flatten()
            .map(|from| add(from, self.plan.progress_deadline));
        let overdue = deadline.filter(|deadline| self.now >= *deadline);
        let view = self.slot(target);
        if !view.holds(desired) || view.spec_replicas != self.plan.replicas {
            if let Some(deadline) = overdue {
                return self.abort(AbortReason::ProgressDeadline { deadline });
            }
            if let Some(active) = active
                && view.exists
                && !view.holds(desired)
                && view.spec_replicas > 0
            {
                let Some(until) = drained else {
                    return self.converge(active, false, self.plan.scale_down_delay);
                };
                if self.now < until {
                    return Decision::WaitForDrain {
                        slot: target,
                        until,
                    };
                }
            }
            return Decision::ApplySlot {
                slot: target,
                revision: desired.to_owned(),
                replicas: self.plan.replicas,
            };
        }
        if let Some(preview) = self.preview(target) {
            return preview;
        }
        if !view.available || !self.can_select(target) {
            if let Some(deadline) = overdue {
                return self.abort(AbortReason::ProgressDeadline { deadline });
            }
            return Decision::WaitForAvailable {
                slot: target,
                deadline,
            };
        }
        if !fast_track {
            if self.plan.has_pre {
                match pre {
                    Outcome::NotStarted => {
                        return Decision::StartValidation {
                            stage: Stage::Pre,
                            revision: desired.to_owned(),
                        };
                    }
                    Outcome::Running => {
                        return Decision::WaitForValidation {
                            stage: Stage::Pre,
                            revision: desired.to_owned(),
                        };
                    }
                    Outcome::Succeeded | Outcome::Failed(_) => {}
                }
            }
            if !self.plan.auto_promote && self.state.promote.as_deref() != Some(desired) {
                return Decision::AwaitPromotion {
                    revision: desired.to_owned(),
                    reason: match &self.state.promote {
                        Some(named) => PromotionWait::OtherRevision {
                            named: named.clone(),
                        },
                        None => PromotionWait::Manual,
                    },
                };
            }
            if self.plan.requires_window && !self.cluster.window_open {
                return Decision::AwaitPromotion {
                    revision: desired.to_owned(),
                    reason: PromotionWait::MaintenanceWindow,
                };
            }
        }
        Decision::SwitchTraffic {
            to: target,
            revision: desired.to_owned(),
        }
    }
}

// --- status --------------------------------------------------------------------------------------

/// Sets `status.desiredRevision`; when it changes, `status.validation` is cleared, because
/// validation entries always belong to `desiredRevision`. Every status write goes through this,
/// so stale steps of a replaced revision never count for a new one (the controller also stops
/// any step still running for the old revision).
pub fn record_desired_revision(status: &mut BlueGreenReleaseStatus, revision: &str) {
    if status.desired_revision.as_deref() != Some(revision) {
        status.desired_revision = Some(revision.to_owned());
        status.validation.clear();
    }
}

/// Opens a release record (newest first, at most [`HISTORY_LIMIT`] kept).
pub fn begin_record(
    history: &mut Vec<ReleaseRecord>,
    revision: &str,
    images: Vec<String>,
    now: Timestamp,
) {
    history.insert(
        0,
        ReleaseRecord {
            revision: revision.to_owned(),
            images,
            result: None,
            start_time: Some(Time(second(now))),
            completion_time: None,
        },
    );
    history.truncate(HISTORY_LIMIT);
}

/// Closes the newest open record of `revision`, if there is one.
pub fn close_record(
    history: &mut [ReleaseRecord],
    revision: &str,
    result: ReleaseResult,
    now: Timestamp,
) {
    if let Some(record) = history
        .iter_mut()
        .find(|record| record.revision == revision && record.result.is_none())
    {
        record.result = Some(result.as_str().to_owned());
        record.completion_time = Some(Time(second(now)));
    }
}

/// Records in status what `decision` did, once the controller has carried it out (for
/// [`Decision::SwitchTraffic`] and [`Decision::SwitchBack`]: *before* patching the Service).
/// `desired_revision` is the current template's revision, `images` its images. Conditions,
/// Events, the scale fields and validation steps are the controller's.
pub fn update_status(
    status: &mut BlueGreenReleaseStatus,
    desired_revision: &str,
    decision: &Decision,
    images: &[String],
    now: Timestamp,
) {
    record_desired_revision(status, desired_revision);
    if let Some(phase) = decision.phase() {
        status.phase = Some(phase.as_str().to_owned());
    }
    let at = |t: Timestamp| Some(Time(t));
    match decision {
        Decision::BeginRelease {
            revision,
            slot,
            supersedes,
            ..
        } => {
            if let Some(old) = supersedes {
                close_record(&mut status.history, old, ReleaseResult::Superseded, now);
            }
            begin_record(&mut status.history, revision, images.to_vec(), now);
            status.preview_slot = Some(slot.as_str().to_owned());
        }
        Decision::SwitchTraffic { to, revision } => {
            status.active_slot = Some(to.as_str().to_owned());
            status.active_revision = Some(revision.clone());
            status.preview_slot = Some(to.as_str().to_owned());
            status.switched_at = None;
            status.scale_down_at = None;
        }
        Decision::RecordSwitched {
            at: switched,
            scale_down_at,
            ..
        } => {
            status.switched_at = at(*switched);
            status.scale_down_at = at(*scale_down_at);
        }
        Decision::CloseRelease { revision, result } => {
            close_record(&mut status.history, revision, *result, now);
        }
        Decision::Abort {
            revision,
            scale_down_at,
            ..
        } => {
            close_record(&mut status.history, revision, ReleaseResult::Aborted, now);
            status.scale_down_at = at(*scale_down_at);
        }
        Decision::SwitchBack {
            to,
            revision,
            failed,
            ..
        } => {
            close_record(&mut status.history, failed, ReleaseResult::RolledBack, now);
            status.active_slot = Some(to.as_str().to_owned());
            status.active_revision = Some(revision.clone());
            status.switched_at = None;
            status.scale_down_at = None;
        }
        Decision::ScaleSlot {
            reason: ScaleReason::Standby | ScaleReason::Aborted,
            ..
        } => status.scale_down_at = None,
        Decision::WaitForScaleDown { at: when, .. } => status.scale_down_at = at(*when),
        Decision::Aborted { scale_down_at, .. } => status.scale_down_at = scale_down_at.map(Time),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::EndpointConditions;
    use serde_json::json;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    const T0: &str = "2026-06-10T12:00:00Z";

    fn template(image: &str) -> serde_json::Value {
        json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"team": "shop"}},
            "spec": {"containers": [{"name": "web", "image": image}]}
        })
    }

    fn step(name: &str) -> serde_json::Value {
        json!({"name": name, "sleep": {"duration": "1s"}})
    }

    fn release(strategy: serde_json::Value) -> BlueGreenRelease {
        serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1",
            "kind": "BlueGreenRelease",
            "metadata": {"name": "web", "namespace": "shop", "uid": "0b6c1e52-1111-4c7e-9a6e-3f0d4a5b6c7d"},
            "spec": {
                "replicas": 3,
                "template": template("web:1"),
                "services": {"active": "web", "preview": "web-preview"},
                "strategy": strategy
            }
        }))
        .unwrap()
    }

    fn decoded(bgr: &BlueGreenRelease) -> PodTemplateSpec {
        bgr.spec.template.decode().unwrap()
    }

    /// A small world: the release as stored by the API server, the cluster, and a clock. It
    /// carries out decisions the way the controller is meant to (status through
    /// [`update_status`], selector writes after status), and checks on every decision that a
    /// restarted operator (the release read back from its JSON) decides the same.
    struct Sim {
        release: BlueGreenRelease,
        cluster: Cluster,
        now: Timestamp,
        /// Deployments become fully available as soon as they are applied or scaled.
        auto_ready: bool,
        /// EndpointSlices follow a selector change at once.
        auto_endpoints: bool,
        /// Pods created so far, per slot.
        pods_created: BTreeMap<Slot, i32>,
        /// Every decision, in order.
        log: Vec<String>,
    }

    impl Sim {
        fn new(strategy: serde_json::Value) -> Self {
            Self {
                release: release(strategy),
                cluster: Cluster::default(),
                now: ts(T0),
                auto_ready: true,
                auto_endpoints: true,
                pods_created: BTreeMap::new(),
                log: Vec::new(),
            }
        }

        fn revision(&self) -> String {
            revision(&decoded(&self.release))
        }

        fn state(&self) -> ReleaseState {
            ReleaseState::observe(&self.release, &self.revision())
        }

        fn decide(&self) -> Decision {
            let decision = decide(&self.release.spec, &self.state(), &self.cluster, self.now);
            // Pure: the same inputs, the same decision.
            assert_eq!(
                decide(&self.release.spec, &self.state(), &self.cluster, self.now),
                decision
            );
            // A restart reads the release back from the API server: same decision.
            let stored: BlueGreenRelease =
                serde_json::from_str(&serde_json::to_string(&self.release).unwrap()).unwrap();
            let restarted = ReleaseState::observe(&stored, &self.revision());
            assert_eq!(
                decide(&stored.spec, &restarted, &self.cluster, self.now),
                decision,
                "a restart changes the decision"
            );
            // No empty moment: traffic only ever goes to a slot with ready pods.
            if let Some(to) = decision.moves_traffic() {
                assert!(
                    self.cluster.slot(to).ready_replicas > 0 || self.release.spec.replicas == 0,
                    "{decision:?} moves traffic to a slot without ready pods"
                );
            }
            decision
        }

        fn status(&mut self) -> &mut BlueGreenReleaseStatus {
            self.release.status.get_or_insert_with(Default::default)
        }

        fn apply_status(&mut self, decision: &Decision) {
            let revision = self.revision();
            let images = images(&decoded(&self.release));
            let now = self.now;
            update_status(self.status(), &revision, decision, &images, now);
        }

        fn scale(&mut self, slot: Slot, replicas: i32, new_template: bool) {
            let auto = self.auto_ready;
            let view = self.cluster.slot_mut(slot);
            let created = if new_template {
                replicas
            } else {
                (replicas - view.spec_replicas).max(0)
            };
            view.exists = true;
            view.spec_replicas = replicas;
            if auto || created == 0 {
                view.available = true;
                view.ready_replicas = replicas;
            } else {
                view.available = false;
                if new_template {
                    view.ready_replicas = view.ready_replicas.min(replicas);
                }
            }
            *self.pods_created.entry(slot).or_default() += created;
        }

        fn point_service(&mut self, slot: Slot) {
            self.cluster.service_slot = Some(slot);
            if self.auto_endpoints {
                self.converge_endpoints();
            }
        }

        fn apply_cluster(&mut self, decision: &Decision) {
            match decision {
                Decision::ApplySlot {
                    slot,
                    revision,
                    replicas,
                } => {
                    let new_template = !self.cluster.slot(*slot).holds(revision);
                    self.cluster.slot_mut(*slot).revision = Some(revision.clone());
                    self.scale(*slot, *replicas, new_template);
                }
                Decision::ScaleSlot { slot, replicas, .. } => self.scale(*slot, *replicas, false),
                Decision::PointPreview { slot, .. } => {
                    self.cluster.preview_service_slot = Some(*slot);
                }
                Decision::StartValidation { stage, .. } => self.set_validation(*stage, None),
                Decision::SwitchTraffic { to, .. } | Decision::SwitchBack { to, .. } => {
                    self.point_service(*to);
                }
                Decision::RestoreSelector { slot, .. } => self.point_service(*slot),
                _ => {}
            }
        }

        fn apply(&mut self, decision: &Decision) {
            // Status first, then the cluster: the order the controller must keep.
            self.apply_status(decision);
            self.apply_cluster(decision);
            self.log.push(format!("{decision:?}"));
        }

        /// Decides and carries out until a wait; returns what was decided.
        fn settle(&mut self) -> Vec<Decision> {
            let mut seen: Vec<Decision> = Vec::new();
            for _ in 0..30 {
                let decision = self.decide();
                if let Some(last) = seen.last() {
                    assert_ne!(last, &decision, "an action was decided twice in a row");
                }
                self.apply(&decision);
                let done = !decision.is_action();
                seen.push(decision);
                if done {
                    return seen;
                }
            }
            panic!("no wait reached: {seen:?}");
        }

        fn last(&mut self) -> Decision {
            self.settle().pop().unwrap()
        }

        fn set_template(&mut self, image: &str) {
            self.release.spec.template = crate::embedded::Embedded::new(template(image));
        }

        fn annotate(&mut self, key: &str, value: &str) {
            self.release
                .annotations_mut()
                .insert(key.to_owned(), value.to_owned());
        }

        fn steps(&self, stage: Stage) -> Vec<Step> {
            let strategy = self.release.spec.strategy.clone().unwrap_or_default();
            match stage {
                Stage::Pre => strategy.pre_promotion,
                Stage::Post => strategy.post_promotion,
            }
        }

        /// Sets every step of `stage`: running (`None`), succeeded or failed.
        fn set_validation(&mut self, stage: Stage, done: Option<bool>) {
            let (phase, message) = match done {
                None => (StepPhase::Running, None),
                Some(true) => (StepPhase::Succeeded, None),
                Some(false) => (StepPhase::Failed, Some("HTTP 503 from /healthz".to_owned())),
            };
            let steps = self.steps(stage);
            let status = self.status();
            for step in steps {
                status.validation.retain(|entry| entry.name != step.name);
                status.validation.push(StepStatus {
                    name: step.name.clone(),
                    phase,
                    attempts: 1,
                    start_time: None,
                    completion_time: None,
                    message: message.clone(),
                    target: None,
                    outputs: BTreeMap::new(),
                });
            }
        }

        fn converge_endpoints(&mut self) {
            let slot = self.cluster.service_slot.unwrap();
            let ready = self.cluster.slot(slot).ready_replicas;
            self.cluster.endpoints = EndpointView {
                ready_by_slot: BTreeMap::from([(slot, ready)]),
                ..EndpointView::default()
            };
        }

        fn finish_rollout(&mut self, slot: Slot) {
            let view = self.cluster.slot_mut(slot);
            view.available = true;
            view.ready_replicas = view.spec_replicas;
        }

        fn active(&self) -> Option<String> {
            self.release.status.as_ref()?.active_slot.clone()
        }

        fn history(&self) -> Vec<(String, Option<String>)> {
            let status = self.release.status.as_ref().unwrap();
            status
                .history
                .iter()
                .map(|r| (r.revision.clone(), r.result.clone()))
                .collect()
        }

        fn advance(&mut self, by: SignedDuration) {
            self.now = add(self.now, by);
        }

        /// A release serving `web:1` on blue, settled (Healthy).
        fn healthy(strategy: serde_json::Value) -> Self {
            let mut sim = Sim::new(strategy);
            assert_eq!(sim.last(), Decision::Healthy);
            sim.advance(secs(3600));
            sim
        }
    }

    fn rev_of(image: &str) -> String {
        let raw = template(image);
        revision(&serde_json::from_value(raw).unwrap())
    }

    // --- slots and revisions ---------------------------------------------------------------------

    #[test]
    fn slot_names_and_parsing() {
        assert_eq!(Slot::Blue.as_str(), "blue");
        assert_eq!(Slot::Green.as_str(), "green");
        assert_eq!(Slot::Blue.other(), Slot::Green);
        assert_eq!(Slot::Green.other(), Slot::Blue);
        assert_eq!("green".parse::<Slot>(), Ok(Slot::Green));
        assert_eq!("Blue".parse::<Slot>(), Err(UnknownSlot("Blue".to_owned())));
        assert_eq!(Slot::parse("purple"), None);
        assert_eq!(Slot::Green.to_string(), "green");
    }

    #[test]
    fn revision_is_stable_and_pinned() {
        let a = rev_of("web:1");
        assert_eq!(a, rev_of("web:1"));
        assert_eq!(a.len(), 10);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        // Pinned: a change here re-releases every BlueGreenRelease after an operator upgrade.
        assert_eq!(a, "1102565448");
    }

    #[test]
    fn revision_ignores_key_order() {
        let one: PodTemplateSpec = serde_json::from_str(
            r#"{"metadata":{"labels":{"b":"2","a":"1"}},"spec":{"containers":[{"image":"x","name":"c"}]}}"#,
        )
        .unwrap();
        let two: PodTemplateSpec = serde_json::from_str(
            r#"{"spec":{"containers":[{"name":"c","image":"x"}]},"metadata":{"labels":{"a":"1","b":"2"}}}"#,
        )
        .unwrap();
        assert_eq!(revision(&one), revision(&two));
        let mut out = String::new();
        let mut map = serde_json::Map::new();
        map.insert("z".into(), json!(1));
        map.insert("a".into(), json!({"y": [true, null, "q\""], "b": 2.5}));
        canonical_json(&serde_json::Value::Object(map), &mut out);
        assert_eq!(out, r#"{"a":{"b":2.5,"y":[true,null,"q\""]},"z":1}"#);
    }

    #[test]
    fn revision_changes_with_image_env_and_labels() {
        let base = template("web:1");
        let base_rev = rev_of("web:1");
        assert_ne!(base_rev, rev_of("web:2"));
        let mut env = base.clone();
        env["spec"]["containers"][0]["env"] = json!([{"name": "MODE", "value": "fast"}]);
        let mut labels = base.clone();
        labels["metadata"]["labels"]["version"] = json!("v2");
        for changed in [env, labels] {
            let changed: PodTemplateSpec = serde_json::from_value(changed).unwrap();
            assert_ne!(revision(&changed), base_rev);
        }
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn images_lists_containers_then_init_once() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {
            "containers": [{"name": "a", "image": "app:1"}, {"name": "b", "image": "side:1"}],
            "initContainers": [{"name": "i", "image": "app:1"}, {"name": "j", "image": "migrate:1"}]
        }}))
        .unwrap();
        assert_eq!(images(&t), ["app:1", "side:1", "migrate:1"]);
    }

    // --- slot Deployments ------------------------------------------------------------------------

    #[test]
    fn slot_deployment_has_names_labels_selector_and_owner() {
        let bgr = release(json!({}));
        let t = decoded(&bgr);
        let d = slot_deployment(&bgr, Slot::Green, &t, "abc1234567", 4);
        assert_eq!(d.metadata.name.as_deref(), Some("web-green"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("shop"));
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(4));
        let selector = spec.selector.match_labels.clone().unwrap();
        assert_eq!(
            selector,
            BTreeMap::from([
                ("ops.runbook.dev/release".to_owned(), "web".to_owned()),
                ("ops.runbook.dev/slot".to_owned(), "green".to_owned()),
            ])
        );
        let pod_meta = spec.template.metadata.as_ref().unwrap();
        let pod_labels = pod_meta.labels.as_ref().unwrap();
        assert_eq!(pod_labels["app"], "web");
        assert_eq!(pod_labels["ops.runbook.dev/slot"], "green");
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        assert_eq!(d.metadata.labels.as_ref(), Some(pod_labels));
        let pod_annotations = pod_meta.annotations.as_ref().unwrap();
        assert_eq!(pod_annotations[REVISION_ANNOTATION], "abc1234567");
        assert_eq!(pod_annotations["team"], "shop");
        assert_eq!(d.annotations()[REVISION_ANNOTATION], "abc1234567");
        assert_eq!(spec.template.spec, t.spec);
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "BlueGreenRelease");
        assert_eq!(owner.api_version, "ops.runbook.dev/v1alpha1");
        assert_eq!(owner.name, "web");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        // Only owned fields, with apiVersion and kind, for server-side apply.
        let value = serde_json::to_value(&d).unwrap();
        assert_eq!(value["apiVersion"], "apps/v1");
        assert_eq!(value["kind"], "Deployment");
        assert!(value.get("status").is_none());
        let mut keys: Vec<_> = value["spec"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["replicas", "selector", "template"]);
        assert_eq!(
            SlotView::observe(Some(&d)).revision.as_deref(),
            Some("abc1234567")
        );
    }

    #[test]
    fn slot_deployment_selector_survives_label_changes_and_custom_slot_label() {
        let mut bgr = release(json!({}));
        bgr.spec.slot_label = Some("deployment-slot".into());
        let one = decoded(&bgr);
        let mut raw = template("web:2");
        raw["metadata"]["labels"] = json!({"app": "web", "version": "v2"});
        let two: PodTemplateSpec = serde_json::from_value(raw).unwrap();
        let a = slot_deployment(&bgr, Slot::Blue, &one, &revision(&one), 3);
        let b = slot_deployment(&bgr, Slot::Blue, &two, &revision(&two), 3);
        assert_eq!(a.spec.unwrap().selector, b.spec.as_ref().unwrap().selector);
        let labels = b.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["deployment-slot"], "blue");
        assert_eq!(labels["version"], "v2");
        assert!(!labels.contains_key(DEFAULT_SLOT_LABEL));
    }

    #[test]
    fn slot_deployment_without_uid_has_no_owner() {
        let mut bgr = release(json!({}));
        bgr.metadata.uid = None;
        let t = decoded(&bgr);
        let d = slot_deployment(&bgr, Slot::Blue, &t, "r", 1);
        assert_eq!(d.metadata.owner_references, None);
    }

    #[test]
    fn long_names_are_bounded() {
        let long = "a".repeat(250);
        let name = slot_deployment_name(&long, Slot::Green);
        assert!(name.len() <= 253 && name.ends_with("-green"), "{name}");
        assert_ne!(name, slot_deployment_name(&"a".repeat(249), Slot::Green));
        let label = release_label_value(&long);
        assert_eq!(label.len(), 63);
        assert_eq!(release_label_value("web"), "web");
    }

    // --- observing the cluster -------------------------------------------------------------------

    fn deployment(generation: i64, observed: i64, replicas: i32, counts: [i32; 4]) -> Deployment {
        let [total, updated, ready, available] = counts;
        Deployment {
            metadata: ObjectMeta {
                name: Some("web-blue".into()),
                generation: Some(generation),
                annotations: Some(BTreeMap::from([(REVISION_ANNOTATION.into(), "r1".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(total),
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                available_replicas: Some(available),
                ..DeploymentStatus::default()
            }),
        }
    }

    #[test]
    fn slot_view_available_only_when_fully_rolled_out() {
        assert_eq!(SlotView::observe(None), SlotView::absent());
        let done = SlotView::observe(Some(&deployment(2, 2, 3, [3, 3, 3, 3])));
        assert_eq!(
            done,
            SlotView {
                exists: true,
                revision: Some("r1".into()),
                spec_replicas: 3,
                ready_replicas: 3,
                available: true
            }
        );
        // Spec not observed yet, old replicas left, not all available, not all updated.
        for d in [
            deployment(3, 2, 3, [3, 3, 3, 3]),
            deployment(2, 2, 3, [4, 3, 3, 3]),
            deployment(2, 2, 3, [3, 3, 3, 2]),
            deployment(2, 2, 3, [3, 2, 3, 3]),
        ] {
            let view = SlotView::observe(Some(&d));
            assert!(!view.available, "{d:?}");
        }
        assert!(SlotView::observe(Some(&deployment(1, 1, 0, [0, 0, 0, 0]))).available);
    }

    #[test]
    fn endpoint_view_counts_ready_by_slot() {
        let endpoint = |pod: &str, ready: Option<bool>| Endpoint {
            addresses: vec!["10.0.0.1".into()],
            conditions: Some(EndpointConditions {
                ready,
                ..EndpointConditions::default()
            }),
            target_ref: Some(ObjectReference {
                name: Some(pod.into()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        };
        let slice = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: Some(vec![
                endpoint("web-green-1", Some(true)),
                endpoint("web-green-2", None),
                endpoint("web-blue-1", Some(false)),
                endpoint("legacy-1", Some(true)),
            ]),
            metadata: ObjectMeta::default(),
            ports: None,
        };
        let slot_of = |e: &Endpoint| {
            let name = e.target_ref.as_ref()?.name.as_deref()?;
            Slot::ALL
                .into_iter()
                .find(|s| name.starts_with(&format!("web-{s}-")))
        };
        let view = EndpointView::from_slices([&slice], slot_of);
        assert_eq!(view.ready(Slot::Green), 2);
        assert_eq!(view.ready(Slot::Blue), 0);
        assert_eq!(view.not_ready, 1);
        assert_eq!(view.ready_unknown, 1);
        assert!(!view.only(Slot::Green, false));
        let clean = EndpointView {
            ready_by_slot: BTreeMap::from([(Slot::Green, 2)]),
            ..EndpointView::default()
        };
        assert!(clean.only(Slot::Green, false));
        assert!(!clean.only(Slot::Blue, true));
        assert!(!EndpointView::default().only(Slot::Blue, false));
        assert!(EndpointView::default().only(Slot::Blue, true));
    }

    #[test]
    fn selector_slot_reads_the_key() {
        let selector = BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("deployment-slot".to_owned(), "green".to_owned()),
        ]);
        assert_eq!(
            selector_slot(Some(&selector), "deployment-slot"),
            Some(Slot::Green)
        );
        assert_eq!(selector_slot(Some(&selector), DEFAULT_SLOT_LABEL), None);
        assert_eq!(selector_slot(None, "deployment-slot"), None);
        let odd = BTreeMap::from([("deployment-slot".to_owned(), "purple".to_owned())]);
        assert_eq!(selector_slot(Some(&odd), "deployment-slot"), None);
    }

    #[test]
    fn stage_outcome_summarises_steps() {
        let steps: Vec<Step> =
            serde_json::from_value(json!([step("smoke"), step("soak")])).unwrap();
        let entry = |name: &str, phase| StepStatus {
            name: name.into(),
            phase,
            attempts: 1,
            start_time: None,
            completion_time: None,
            message: Some("boom".into()),
            target: None,
            outputs: BTreeMap::new(),
        };
        assert_eq!(stage_outcome(&[], &steps), Outcome::NotStarted);
        let other = [entry("post-check", StepPhase::Failed)];
        assert_eq!(stage_outcome(&other, &steps), Outcome::NotStarted);
        let running = [
            entry("smoke", StepPhase::Succeeded),
            entry("soak", StepPhase::Pending),
        ];
        assert_eq!(stage_outcome(&running, &steps), Outcome::Running);
        let done = [
            entry("smoke", StepPhase::Succeeded),
            entry("soak", StepPhase::Skipped),
        ];
        assert_eq!(stage_outcome(&done, &steps), Outcome::Succeeded);
        let failed = [
            entry("smoke", StepPhase::Failed),
            entry("soak", StepPhase::Skipped),
        ];
        assert_eq!(
            stage_outcome(&failed, &steps),
            Outcome::Failed("step \"smoke\": boom".into())
        );
        let mut lenient: Vec<Step> =
            serde_json::from_value(json!([step("smoke"), step("soak")])).unwrap();
        lenient[0].on_failure = Some(OnFailure::Continue);
        assert_eq!(stage_outcome(&failed, &lenient), Outcome::Succeeded);
    }

    // --- the plan --------------------------------------------------------------------------------

    #[test]
    fn plan_defaults() {
        let plan = ReleasePlan::from_spec(&release(json!({})).spec).unwrap();
        assert_eq!(
            plan,
            ReleasePlan {
                replicas: 3,
                standby: 0,
                auto_promote: true,
                has_pre: false,
                has_post: false,
                has_preview: true,
                requires_window: false,
                scale_down_delay: secs(30),
                abort_scale_down_delay: secs(30),
                progress_deadline: secs(600),
            }
        );
        let capped = release(json!({"standbyReplicas": 5}));
        assert_eq!(ReleasePlan::from_spec(&capped.spec).unwrap().standby, 3);
    }

    #[test]
    fn invalid_specs_name_the_field_and_touch_nothing() {
        let cases = [
            (
                json!({"scaleDownDelay": "soon"}),
                "spec.strategy.scaleDownDelay",
            ),
            (
                json!({"abortScaleDownDelay": "1x"}),
                "spec.strategy.abortScaleDownDelay",
            ),
            (
                json!({"progressDeadline": ""}),
                "spec.strategy.progressDeadline",
            ),
            (
                json!({"progressDeadline": "0s"}),
                "spec.strategy.progressDeadline",
            ),
            (
                json!({"standbyReplicas": -1}),
                "spec.strategy.standbyReplicas",
            ),
        ];
        for (strategy, field) in cases {
            let sim = Sim::new(strategy);
            let decision = sim.decide();
            let Decision::Invalid(error) = &decision else {
                panic!("{decision:?}");
            };
            assert!(error.to_string().starts_with(field), "{error}");
            assert!(!decision.is_action());
            assert_eq!(decision.phase(), None);
        }
        let mut sim = Sim::new(json!({}));
        sim.release.spec.replicas = -1;
        assert_eq!(
            sim.decide(),
            Decision::Invalid(SpecError::Negative {
                field: "spec.replicas",
                value: -1
            })
        );
    }

    // --- first apply -----------------------------------------------------------------------------

    #[test]
    fn first_apply_scales_blue_then_switches_and_is_healthy() {
        // Validation, manual promotion and a closed window do not hold up a first release:
        // nothing serves yet, so there is nothing to protect.
        let mut sim = Sim::new(json!({
            "autoPromote": false,
            "prePromotion": [step("smoke")],
            "postPromotion": [step("soak")]
        }));
        sim.release.spec.requires_maintenance_window =
            Some(serde_json::from_value(json!({"selector": {"matchLabels": {"w": "x"}}})).unwrap());
        sim.auto_ready = false;
        let r1 = sim.revision();
        assert_eq!(
            sim.settle(),
            [
                Decision::BeginRelease {
                    revision: r1.clone(),
                    slot: Slot::Blue,
                    fast_track: true,
                    supersedes: None
                },
                Decision::ApplySlot {
                    slot: Slot::Blue,
                    revision: r1.clone(),
                    replicas: 3
                },
                Decision::PointPreview {
                    slot: Slot::Blue,
                    found: None
                },
                Decision::WaitForAvailable {
                    slot: Slot::Blue,
                    deadline: Some(ts("2026-06-10T12:10:00Z"))
                },
            ]
        );
        assert_eq!(sim.active(), None);
        sim.finish_rollout(Slot::Blue);
        sim.advance(secs(5));
        assert_eq!(
            sim.settle(),
            [
                Decision::SwitchTraffic {
                    to: Slot::Blue,
                    revision: r1.clone()
                },
                Decision::RecordSwitched {
                    slot: Slot::Blue,
                    at: ts("2026-06-10T12:00:05Z"),
                    scale_down_at: ts("2026-06-10T12:00:35Z"),
                    back: false
                },
                Decision::CloseRelease {
                    revision: r1.clone(),
                    result: ReleaseResult::Promoted
                },
                Decision::Healthy,
            ]
        );
        let status = sim.release.status.clone().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Healthy"));
        assert_eq!(status.active_slot.as_deref(), Some("blue"));
        assert_eq!(status.active_revision.as_deref(), Some(r1.as_str()));
        assert_eq!(status.desired_revision.as_deref(), Some(r1.as_str()));
        assert_eq!(status.history[0].images, ["web:1"]);
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        assert!(status.validation.is_empty());
        assert!(!sim.cluster.green.exists);
    }

    #[test]
    fn first_apply_beside_a_service_already_naming_a_slot_uses_the_other() {
        // The Service selects pods from before the release (e.g. the seed runbook's blue
        // Deployment): the release rolls into green and switches once green is ready.
        let mut sim = Sim::new(json!({}));
        sim.cluster.service_slot = Some(Slot::Blue);
        sim.cluster.blue = SlotView {
            exists: true,
            revision: None,
            spec_replicas: 2,
            ready_replicas: 2,
            available: true,
        };
        let seen = sim.settle();
        assert!(matches!(
            seen[0],
            Decision::BeginRelease {
                slot: Slot::Green,
                ..
            }
        ));
        assert_eq!(sim.active().as_deref(), Some("green"));
        // Status lost, the Service still names green, which holds the revision: adopted with
        // no new pods.
        let created = sim.pods_created.clone();
        sim.release.status = None;
        let seen = sim.settle();
        assert!(matches!(
            seen[0],
            Decision::BeginRelease {
                slot: Slot::Green,
                ..
            }
        ));
        assert_eq!(sim.pods_created, created);
        assert_eq!(sim.active().as_deref(), Some("green"));
    }

    // --- template change: the happy path ---------------------------------------------------------

    #[test]
    fn template_change_rolls_into_idle_slot_validates_switches_and_scales_down() {
        let mut sim = Sim::healthy(json!({
            "prePromotion": [step("smoke")],
            "postPromotion": [step("soak")]
        }));
        let r1 = sim.revision();
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.auto_ready = false;
        let seen = sim.settle();
        assert_eq!(
            seen,
            [
                Decision::BeginRelease {
                    revision: r2.clone(),
                    slot: Slot::Green,
                    fast_track: false,
                    supersedes: None
                },
                Decision::ApplySlot {
                    slot: Slot::Green,
                    revision: r2.clone(),
                    replicas: 3
                },
                Decision::PointPreview {
                    slot: Slot::Green,
                    found: Some(Slot::Blue)
                },
                Decision::WaitForAvailable {
                    slot: Slot::Green,
                    deadline: Some(add(sim.now, secs(600)))
                },
            ]
        );
        assert_eq!(seen[3].phase(), Some(Phase::Progressing));
        // The active slot is untouched while the new one rolls.
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        assert!(sim.cluster.blue.holds(&r1));
        // Partly available: still waiting, no validation yet.
        let green = sim.cluster.slot_mut(Slot::Green);
        green.ready_replicas = 2;
        assert!(matches!(sim.decide(), Decision::WaitForAvailable { .. }));
        sim.finish_rollout(Slot::Green);
        let seen = sim.settle();
        assert_eq!(
            seen,
            [
                Decision::StartValidation {
                    stage: Stage::Pre,
                    revision: r2.clone()
                },
                Decision::WaitForValidation {
                    stage: Stage::Pre,
                    revision: r2.clone()
                },
            ]
        );
        assert_eq!(seen[1].phase(), Some(Phase::Validating));
        sim.set_validation(Stage::Pre, Some(true));
        sim.advance(secs(60));
        let switched = second(sim.now);
        assert_eq!(
            sim.settle(),
            [
                Decision::SwitchTraffic {
                    to: Slot::Green,
                    revision: r2.clone()
                },
                Decision::RecordSwitched {
                    slot: Slot::Green,
                    at: switched,
                    scale_down_at: add(switched, secs(30)),
                    back: false
                },
                Decision::StartValidation {
                    stage: Stage::Post,
                    revision: r2.clone()
                },
                Decision::WaitForValidation {
                    stage: Stage::Post,
                    revision: r2.clone()
                },
            ]
        );
        // postPromotion still running past scaleDownAt: the old slot keeps its pods, so a
        // failure could still switch back.
        sim.advance(secs(120));
        assert_eq!(
            sim.decide(),
            Decision::WaitForValidation {
                stage: Stage::Post,
                revision: r2.clone()
            }
        );
        sim.set_validation(Stage::Post, Some(true));
        assert_eq!(
            sim.settle(),
            [
                Decision::CloseRelease {
                    revision: r2.clone(),
                    result: ReleaseResult::Promoted
                },
                Decision::ScaleSlot {
                    slot: Slot::Blue,
                    replicas: 0,
                    reason: ScaleReason::Standby
                },
                Decision::Healthy,
            ]
        );
        assert_eq!(
            sim.history(),
            [
                (r2.clone(), Some("Promoted".into())),
                (r1.clone(), Some("Promoted".into()))
            ]
        );
        assert_eq!(sim.release.status.as_ref().unwrap().scale_down_at, None);
        assert_eq!(
            sim.log
                .iter()
                .filter(|l| l.starts_with("SwitchTraffic"))
                .count(),
            2
        );
    }

    #[test]
    fn scale_down_waits_for_scale_down_at_exactly_then_goes_to_standby() {
        let mut sim = Sim::healthy(json!({"standbyReplicas": 1, "scaleDownDelay": "2m"}));
        sim.set_template("web:2");
        let seen = sim.settle();
        let Some(Decision::RecordSwitched {
            at, scale_down_at, ..
        }) = seen
            .iter()
            .find(|d| matches!(d, Decision::RecordSwitched { .. }))
        else {
            panic!("{seen:?}");
        };
        assert_eq!(*scale_down_at, add(*at, secs(120)));
        let at = *scale_down_at;
        assert_eq!(
            seen.last(),
            Some(&Decision::WaitForScaleDown {
                slot: Slot::Blue,
                at
            })
        );
        assert_eq!(seen.last().unwrap().phase(), Some(Phase::ScalingDown));
        assert_eq!(seen.last().unwrap().requeue_at(), Some(at));
        assert_eq!(
            sim.release.status.as_ref().unwrap().scale_down_at,
            Some(Time(at))
        );
        sim.now = at - SignedDuration::from_nanos(1);
        assert_eq!(
            sim.decide(),
            Decision::WaitForScaleDown {
                slot: Slot::Blue,
                at
            }
        );
        sim.now = at;
        assert_eq!(
            sim.settle(),
            [
                Decision::ScaleSlot {
                    slot: Slot::Blue,
                    replicas: 1,
                    reason: ScaleReason::Standby
                },
                Decision::Healthy
            ]
        );
    }

    #[test]
    fn traffic_switched_only_when_endpoints_hold_only_ready_new_slot_pods() {
        let mut sim = Sim::healthy(json!({}));
        sim.auto_endpoints = false;
        sim.set_template("web:2");
        let seen = sim.settle();
        assert!(seen.contains(&Decision::SwitchTraffic {
            to: Slot::Green,
            revision: sim.revision()
        }));
        let waiting = Decision::WaitForEndpoints {
            slot: Slot::Green,
            back: false,
        };
        assert_eq!(seen.last(), Some(&waiting));
        assert_eq!(waiting.phase(), Some(Phase::Promoting));
        assert_eq!(sim.release.status.as_ref().unwrap().switched_at, None);
        let unconverged = [
            // Still the old slot's endpoints.
            EndpointView {
                ready_by_slot: BTreeMap::from([(Slot::Blue, 3)]),
                ..EndpointView::default()
            },
            // Both slots.
            EndpointView {
                ready_by_slot: BTreeMap::from([(Slot::Blue, 1), (Slot::Green, 3)]),
                ..EndpointView::default()
            },
            // New slot, one endpoint not ready.
            EndpointView {
                ready_by_slot: BTreeMap::from([(Slot::Green, 2)]),
                not_ready: 1,
                ..EndpointView::default()
            },
            // An endpoint of neither slot.
            EndpointView {
                ready_by_slot: BTreeMap::from([(Slot::Green, 3)]),
                ready_unknown: 1,
                ..EndpointView::default()
            },
            // Nothing at all.
            EndpointView::default(),
        ];
        for endpoints in unconverged {
            sim.cluster.endpoints = endpoints;
            assert_eq!(sim.decide(), waiting);
        }
        sim.converge_endpoints();
        sim.advance(secs(7));
        assert!(matches!(
            sim.settle()[0],
            Decision::RecordSwitched {
                slot: Slot::Green,
                ..
            }
        ));
        assert_eq!(
            sim.release.status.as_ref().unwrap().switched_at,
            Some(Time(second(sim.now)))
        );
    }

    #[test]
    fn zero_replicas_release_switches_with_no_endpoints() {
        let mut sim = Sim::new(json!({}));
        sim.release.spec.replicas = 0;
        assert_eq!(sim.last(), Decision::Healthy);
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
    }

    #[test]
    fn auto_promote_switches_after_pre_promotion_succeeds() {
        let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        assert_eq!(
            sim.last(),
            Decision::WaitForValidation {
                stage: Stage::Pre,
                revision: r2.clone()
            }
        );
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        sim.set_validation(Stage::Pre, Some(true));
        assert_eq!(
            sim.decide(),
            Decision::SwitchTraffic {
                to: Slot::Green,
                revision: r2
            }
        );
    }

    #[test]
    fn manual_promotion_waits_for_the_promote_annotation_of_the_desired_revision() {
        let mut sim = Sim::healthy(json!({"autoPromote": false}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        let waiting = sim.last();
        assert_eq!(
            waiting,
            Decision::AwaitPromotion {
                revision: r2.clone(),
                reason: PromotionWait::Manual
            }
        );
        assert_eq!(waiting.phase(), Some(Phase::AwaitingPromotion));
        assert!(
            PromotionWait::Manual
                .message(&r2)
                .contains(&format!("ops.runbook.dev/promote: {r2}"))
        );
        // A promote naming another revision (a stale approval) is ignored and reported.
        let r1 = rev_of("web:1");
        sim.annotate(PROMOTE_ANNOTATION, &r1);
        assert_eq!(
            sim.decide(),
            Decision::AwaitPromotion {
                revision: r2.clone(),
                reason: PromotionWait::OtherRevision { named: r1 }
            }
        );
        // Waiting for promotion is not bounded by the progress deadline.
        sim.advance(secs(3600));
        assert!(matches!(sim.decide(), Decision::AwaitPromotion { .. }));
        sim.annotate(PROMOTE_ANNOTATION, &format!(" {r2}\n"));
        assert_eq!(
            sim.decide(),
            Decision::SwitchTraffic {
                to: Slot::Green,
                revision: r2.clone()
            }
        );
        // The approval of r2 does not promote r3.
        sim.set_template("web:3");
        let r3 = sim.revision();
        assert_eq!(
            sim.last(),
            Decision::AwaitPromotion {
                revision: r3,
                reason: PromotionWait::OtherRevision { named: r2 }
            }
        );
    }

    #[test]
    fn maintenance_window_holds_promotion_until_open() {
        let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
        sim.release.spec.requires_maintenance_window =
            Some(serde_json::from_value(json!({"selector": {"matchLabels": {"w": "x"}}})).unwrap());
        sim.set_template("web:2");
        let r2 = sim.revision();
        assert!(matches!(sim.last(), Decision::WaitForValidation { .. }));
        sim.set_validation(Stage::Pre, Some(true));
        let waiting = sim.decide();
        assert_eq!(
            waiting,
            Decision::AwaitPromotion {
                revision: r2.clone(),
                reason: PromotionWait::MaintenanceWindow
            }
        );
        assert_eq!(waiting.phase(), Some(Phase::AwaitingPromotion));
        assert_eq!(
            PromotionWait::MaintenanceWindow.reason(),
            "WaitingForWindow"
        );
        sim.cluster.window_open = true;
        assert_eq!(
            sim.decide(),
            Decision::SwitchTraffic {
                to: Slot::Green,
                revision: r2
            }
        );
    }

    #[test]
    fn no_switch_unless_the_new_slot_is_fully_available() {
        let mut sim = Sim::healthy(json!({}));
        sim.auto_ready = false;
        sim.set_template("web:2");
        assert!(matches!(sim.last(), Decision::WaitForAvailable { .. }));
        // Ready pods but not every replica available: no switch.
        for (ready, available) in [(0, false), (2, false), (3, false)] {
            let green = sim.cluster.slot_mut(Slot::Green);
            green.ready_replicas = ready;
            green.available = available;
            assert!(matches!(
                sim.decide(),
                Decision::WaitForAvailable {
                    slot: Slot::Green,
                    ..
                }
            ));
        }
        sim.finish_rollout(Slot::Green);
        assert!(matches!(sim.decide(), Decision::SwitchTraffic { .. }));
    }

    /// Over many combinations of what the cluster shows, no decision points the active Service
    /// at a slot without ready pods, and a promotion only goes to a fully available slot.
    #[test]
    fn no_empty_moment_over_many_states() {
        let views = [
            SlotView::absent(),
            SlotView {
                exists: true,
                revision: Some(rev_of("web:1")),
                spec_replicas: 3,
                ready_replicas: 0,
                available: false,
            },
            SlotView {
                exists: true,
                revision: Some(rev_of("web:2")),
                spec_replicas: 3,
                ready_replicas: 2,
                available: false,
            },
            SlotView {
                exists: true,
                revision: Some(rev_of("web:2")),
                spec_replicas: 3,
                ready_replicas: 0,
                available: true,
            },
            SlotView {
                exists: true,
                revision: Some(rev_of("web:1")),
                spec_replicas: 3,
                ready_replicas: 3,
                available: true,
            },
            SlotView {
                exists: true,
                revision: Some(rev_of("web:2")),
                spec_replicas: 3,
                ready_replicas: 3,
                available: true,
            },
        ];
        let r1 = rev_of("web:1");
        let r2 = rev_of("web:2");
        let record = |revision: &str, result| Record {
            revision: revision.into(),
            result,
            started: Some(ts(T0)),
            completed: None,
        };
        let states = [
            ReleaseState {
                desired_revision: r2.clone(),
                ..ReleaseState::default()
            },
            ReleaseState {
                desired_revision: r2.clone(),
                recorded_revision: Some(r2.clone()),
                active_slot: Some(Slot::Blue),
                active_revision: Some(r1.clone()),
                switched_at: Some(ts(T0)),
                history: vec![
                    record(&r2, None),
                    record(&r1, Some(ReleaseResult::Promoted)),
                ],
                pre_validation: Outcome::Succeeded,
                ..ReleaseState::default()
            },
            ReleaseState {
                desired_revision: r2.clone(),
                recorded_revision: Some(r2.clone()),
                active_slot: Some(Slot::Green),
                active_revision: Some(r2.clone()),
                history: vec![
                    record(&r2, None),
                    record(&r1, Some(ReleaseResult::Promoted)),
                ],
                post_validation: Outcome::Failed("boom".into()),
                ..ReleaseState::default()
            },
            ReleaseState {
                desired_revision: r1.clone(),
                recorded_revision: Some(r1.clone()),
                active_slot: Some(Slot::Green),
                active_revision: Some(r2.clone()),
                switched_at: Some(ts(T0)),
                history: vec![
                    record(&r2, Some(ReleaseResult::Promoted)),
                    record(&r1, Some(ReleaseResult::Promoted)),
                ],
                ..ReleaseState::default()
            },
        ];
        let spec = release(json!({})).spec;
        let mut checked = 0;
        for state in &states {
            for blue in &views {
                for green in &views {
                    for service_slot in [None, Some(Slot::Blue), Some(Slot::Green)] {
                        let cluster = Cluster {
                            blue: blue.clone(),
                            green: green.clone(),
                            service_slot,
                            preview_service_slot: service_slot,
                            ..Cluster::default()
                        };
                        let decision = decide(&spec, state, &cluster, add(ts(T0), secs(3600)));
                        if let Some(to) = decision.moves_traffic() {
                            assert!(
                                cluster.slot(to).ready_replicas > 0,
                                "{decision:?} in {state:?} / {cluster:?}"
                            );
                        }
                        if let Decision::SwitchTraffic { to, revision } = &decision {
                            assert!(
                                cluster.slot(*to).available && cluster.slot(*to).holds(revision)
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 6 * 6 * 3);
    }

    // --- failures ------------------------------------------------------------------------------------

    #[test]
    fn pre_promotion_failure_aborts_and_scales_the_new_slot_down_later() {
        let mut sim = Sim::healthy(json!({
            "prePromotion": [step("smoke")],
            "abortScaleDownDelay": "45s"
        }));
        sim.set_template("web:2");
        let r2 = sim.revision();
        assert!(matches!(sim.last(), Decision::WaitForValidation { .. }));
        sim.set_validation(Stage::Pre, Some(false));
        let aborted_at = second(sim.now);
        let reason = AbortReason::ValidationFailed {
            stage: Stage::Pre,
            message: "step \"smoke\": HTTP 503 from /healthz".into(),
        };
        let scale_down_at = add(aborted_at, secs(45));
        assert_eq!(
            sim.settle(),
            [
                Decision::Abort {
                    revision: r2.clone(),
                    reason: reason.clone(),
                    scale_down_at
                },
                Decision::Aborted {
                    revision: r2.clone(),
                    scale_down_at: Some(scale_down_at)
                },
            ]
        );
        assert_eq!(reason.reason(), "PrePromotionFailed");
        assert!(reason.message(&r2).contains("HTTP 503"));
        let status = sim.release.status.clone().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Degraded"));
        assert_eq!(status.scale_down_at, Some(Time(scale_down_at)));
        // Active untouched.
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        assert_eq!(sim.active().as_deref(), Some("blue"));
        assert_eq!(status.active_revision, Some(rev_of("web:1")));
        assert_eq!(sim.cluster.green.spec_replicas, 3);
        // Exactly at the abort scale-down instant, not before.
        sim.now = scale_down_at - SignedDuration::from_nanos(1);
        assert!(matches!(sim.decide(), Decision::Aborted { .. }));
        sim.now = scale_down_at;
        assert_eq!(
            sim.settle(),
            [
                Decision::ScaleSlot {
                    slot: Slot::Green,
                    replicas: 0,
                    reason: ScaleReason::Aborted
                },
                Decision::Aborted {
                    revision: r2.clone(),
                    scale_down_at: None
                },
            ]
        );
        assert_eq!(sim.history()[0], (r2, Some("Aborted".into())));
    }

    #[test]
    fn progress_deadline_aborts_exactly_at_the_deadline() {
        let mut sim = Sim::healthy(json!({"progressDeadline": "5m"}));
        sim.auto_ready = false;
        sim.set_template("web:2");
        let begun = second(sim.now);
        let deadline = add(begun, secs(300));
        let seen = sim.settle();
        assert_eq!(
            seen.last(),
            Some(&Decision::WaitForAvailable {
                slot: Slot::Green,
                deadline: Some(deadline)
            })
        );
        assert_eq!(seen.last().unwrap().requeue_at(), Some(deadline));
        sim.now = deadline - SignedDuration::from_nanos(1);
        assert!(matches!(sim.decide(), Decision::WaitForAvailable { .. }));
        sim.now = deadline;
        let reason = AbortReason::ProgressDeadline { deadline };
        assert_eq!(
            sim.decide(),
            Decision::Abort {
                revision: sim.revision(),
                reason: reason.clone(),
                scale_down_at: add(deadline, secs(30))
            }
        );
        assert_eq!(reason.reason(), "ProgressDeadlineExceeded");
        sim.settle();
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        // Becoming available after the abort changes nothing.
        sim.finish_rollout(Slot::Green);
        assert!(matches!(sim.decide(), Decision::Aborted { .. }));
    }

    #[test]
    fn progress_deadline_of_a_first_release_aborts_it_too() {
        let mut sim = Sim::new(json!({}));
        sim.auto_ready = false;
        sim.settle();
        sim.advance(secs(600));
        let seen = sim.settle();
        assert!(matches!(seen[0], Decision::Abort { .. }), "{seen:?}");
        assert_eq!(sim.cluster.service_slot, None);
        sim.advance(secs(30));
        assert!(matches!(
            sim.settle()[0],
            Decision::ScaleSlot {
                slot: Slot::Blue,
                replicas: 0,
                ..
            }
        ));
        // A fixed template is a new first release into the same slot.
        sim.auto_ready = true;
        sim.set_template("web:2");
        let seen = sim.settle();
        assert!(matches!(
            seen[0],
            Decision::BeginRelease {
                slot: Slot::Blue,
                fast_track: true,
                ..
            }
        ));
        assert_eq!(seen.last(), Some(&Decision::Healthy));
    }

    #[test]
    fn post_promotion_failure_switches_back_while_the_old_slot_runs() {
        let mut sim = Sim::healthy(json!({"postPromotion": [step("soak")]}));
        let r1 = sim.revision();
        sim.set_template("web:2");
        let r2 = sim.revision();
        assert!(matches!(
            sim.last(),
            Decision::WaitForValidation {
                stage: Stage::Post,
                ..
            }
        ));
        assert_eq!(sim.cluster.service_slot, Some(Slot::Green));
        sim.set_validation(Stage::Post, Some(false));
        sim.advance(secs(10));
        let reason = AbortReason::ValidationFailed {
            stage: Stage::Post,
            message: "step \"soak\": HTTP 503 from /healthz".into(),
        };
        let back_at = second(sim.now);
        assert_eq!(
            sim.settle(),
            [
                Decision::SwitchBack {
                    to: Slot::Blue,
                    revision: r1.clone(),
                    failed: r2.clone(),
                    reason: reason.clone()
                },
                Decision::RecordSwitched {
                    slot: Slot::Blue,
                    at: back_at,
                    scale_down_at: add(back_at, secs(30)),
                    back: true
                },
                Decision::Aborted {
                    revision: r2.clone(),
                    scale_down_at: Some(add(back_at, secs(30)))
                },
            ]
        );
        assert_eq!(reason.reason(), "PostPromotionFailed");
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        let status = sim.release.status.clone().unwrap();
        assert_eq!(status.active_slot.as_deref(), Some("blue"));
        assert_eq!(status.active_revision, Some(r1.clone()));
        assert_eq!(status.phase.as_deref(), Some("Degraded"));
        assert_eq!(sim.history()[0], (r2.clone(), Some("RolledBack".into())));
        sim.advance(secs(30));
        assert_eq!(
            sim.settle(),
            [
                Decision::ScaleSlot {
                    slot: Slot::Green,
                    replicas: 0,
                    reason: ScaleReason::Aborted
                },
                Decision::Aborted {
                    revision: r2,
                    scale_down_at: None
                }
            ]
        );
    }

    #[test]
    fn switch_back_scales_a_shrunk_old_slot_up_first_and_never_to_an_empty_slot() {
        let mut sim = Sim::healthy(json!({"postPromotion": [step("soak")]}));
        sim.set_template("web:2");
        sim.settle();
        // Someone scaled the old slot to 0 during postPromotion.
        sim.cluster.blue.spec_replicas = 0;
        sim.cluster.blue.ready_replicas = 0;
        sim.set_validation(Stage::Post, Some(false));
        sim.auto_ready = false;
        let seen = sim.settle();
        assert_eq!(
            seen[0],
            Decision::ScaleSlot {
                slot: Slot::Blue,
                replicas: 3,
                reason: ScaleReason::SwitchBack
            }
        );
        assert!(matches!(
            seen[1],
            Decision::AwaitSwitchBack {
                to: Some(Slot::Blue),
                ..
            }
        ));
        assert_eq!(seen[1].phase(), Some(Phase::Degraded));
        assert_eq!(sim.cluster.service_slot, Some(Slot::Green));
        sim.cluster.blue.ready_replicas = 1;
        assert!(matches!(
            sim.decide(),
            Decision::SwitchBack { to: Slot::Blue, .. }
        ));
    }

    #[test]
    fn abort_annotation_aborts_by_hand() {
        // Before the switch: aborted, active untouched.
        let mut sim = Sim::healthy(json!({"autoPromote": false}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        assert!(matches!(sim.last(), Decision::AwaitPromotion { .. }));
        // An abort naming another revision is ignored.
        sim.annotate(ABORT_ANNOTATION, &rev_of("web:1"));
        assert!(matches!(sim.decide(), Decision::AwaitPromotion { .. }));
        sim.annotate(ABORT_ANNOTATION, &r2);
        let seen = sim.settle();
        assert!(matches!(
            &seen[0],
            Decision::Abort { revision, reason: AbortReason::ByHand, .. } if *revision == r2
        ));
        assert_eq!(AbortReason::ByHand.reason(), "AbortedByHand");
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        // A promote afterwards does not resurrect it.
        sim.annotate(PROMOTE_ANNOTATION, &r2);
        assert!(matches!(sim.decide(), Decision::Aborted { .. }));

        // After the switch, during postPromotion: switched back.
        let mut sim = Sim::healthy(json!({"postPromotion": [step("soak")]}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.settle();
        sim.annotate(ABORT_ANNOTATION, &r2);
        assert!(matches!(
            sim.decide(),
            Decision::SwitchBack {
                to: Slot::Blue,
                reason: AbortReason::ByHand,
                ..
            }
        ));

        // After the release completed: ignored (revert the template instead).
        let mut sim = Sim::healthy(json!({}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.settle();
        sim.annotate(ABORT_ANNOTATION, &r2);
        assert!(matches!(sim.decide(), Decision::WaitForScaleDown { .. }));
    }

    #[test]
    fn abort_of_a_first_release_after_its_switch_has_nowhere_to_go() {
        let mut sim = Sim::new(json!({}));
        sim.auto_endpoints = false;
        let r1 = sim.revision();
        assert!(matches!(sim.last(), Decision::WaitForEndpoints { .. }));
        sim.annotate(ABORT_ANNOTATION, &r1);
        let decision = sim.decide();
        assert_eq!(
            decision,
            Decision::AwaitSwitchBack {
                to: None,
                revision: r1,
                reason: AbortReason::ByHand
            }
        );
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
    }

    #[test]
    fn aborted_revision_is_not_retried_until_the_template_changes() {
        let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.settle();
        sim.set_validation(Stage::Pre, Some(false));
        sim.settle();
        sim.advance(secs(3600));
        sim.settle();
        for _ in 0..3 {
            sim.advance(secs(600));
            assert_eq!(
                sim.last(),
                Decision::Aborted {
                    revision: r2.clone(),
                    scale_down_at: None
                }
            );
        }
        // A new template is released (into the aborted slot, which holds no live traffic).
        sim.set_template("web:3");
        let r3 = sim.revision();
        assert_eq!(
            sim.decide(),
            Decision::BeginRelease {
                revision: r3.clone(),
                slot: Slot::Green,
                fast_track: false,
                supersedes: None
            }
        );
        assert!(matches!(sim.last(), Decision::WaitForValidation { .. }));
        // Changed back to the aborted template: that is a retry, validated again.
        sim.set_template("web:2");
        assert_eq!(
            sim.decide(),
            Decision::BeginRelease {
                revision: r2.clone(),
                slot: Slot::Green,
                fast_track: false,
                supersedes: Some(r3.clone())
            }
        );
        assert_eq!(
            sim.last(),
            Decision::WaitForValidation {
                stage: Stage::Pre,
                revision: r2.clone()
            }
        );
        assert_eq!(
            &sim.history()[..3],
            [
                (r2.clone(), None),
                (r3, Some("Superseded".into())),
                (r2, Some("Aborted".into()))
            ]
        );
    }

    #[test]
    fn aborted_then_template_back_to_active_then_again_is_a_retry() {
        let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.settle();
        sim.set_validation(Stage::Pre, Some(false));
        sim.settle();
        sim.set_template("web:1");
        sim.advance(secs(60));
        assert_eq!(sim.last(), Decision::Healthy);
        // The aborted slot went to 0 (never promoted, so not kept as standby).
        assert_eq!(sim.cluster.green.spec_replicas, 0);
        sim.set_template("web:2");
        assert!(matches!(
            sim.decide(),
            Decision::BeginRelease { revision, .. } if revision == r2
        ));
    }

    // --- rollback, supersede ---------------------------------------------------------------------

    #[test]
    fn revert_to_the_running_previous_revision_is_an_instant_flip() {
        let mut sim = Sim::healthy(json!({
            "autoPromote": false,
            "prePromotion": [step("smoke")],
            "postPromotion": [step("soak")],
            "scaleDownDelay": "1h"
        }));
        sim.release.spec.requires_maintenance_window =
            Some(serde_json::from_value(json!({"selector": {"matchLabels": {"w": "x"}}})).unwrap());
        let r1 = sim.revision();
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.settle();
        sim.set_validation(Stage::Pre, Some(true));
        sim.annotate(PROMOTE_ANNOTATION, &r2);
        sim.cluster.window_open = true;
        sim.settle();
        sim.set_validation(Stage::Post, Some(true));
        assert!(matches!(
            sim.last(),
            Decision::WaitForScaleDown {
                slot: Slot::Blue,
                ..
            }
        ));
        sim.cluster.window_open = false;
        // Revert while blue still runs r1 at full size: no pod, no validation, no gate.
        sim.set_template("web:1");
        let created = sim.pods_created.clone();
        let seen = sim.settle();
        let flip_at = second(sim.now);
        assert_eq!(
            seen,
            [
                Decision::BeginRelease {
                    revision: r1.clone(),
                    slot: Slot::Blue,
                    fast_track: true,
                    supersedes: None
                },
                Decision::PointPreview {
                    slot: Slot::Blue,
                    found: Some(Slot::Green)
                },
                Decision::SwitchTraffic {
                    to: Slot::Blue,
                    revision: r1.clone()
                },
                Decision::RecordSwitched {
                    slot: Slot::Blue,
                    at: flip_at,
                    scale_down_at: add(flip_at, secs(3600)),
                    back: false
                },
                Decision::CloseRelease {
                    revision: r1.clone(),
                    result: ReleaseResult::Promoted
                },
                Decision::WaitForScaleDown {
                    slot: Slot::Green,
                    at: add(flip_at, secs(3600))
                },
            ]
        );
        assert_eq!(sim.pods_created, created);
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        // And forward again: green still runs r2, which was promoted: instant too.
        sim.set_template("web:2");
        let seen = sim.settle();
        assert!(seen.contains(&Decision::SwitchTraffic {
            to: Slot::Green,
            revision: r2
        }));
        assert!(!seen.iter().any(|d| matches!(d, Decision::ApplySlot { .. })));
        assert_eq!(sim.pods_created, created);
    }

    #[test]
    fn revert_after_scale_down_scales_the_known_revision_back_up_first() {
        let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
        let r1 = sim.revision();
        sim.set_template("web:2");
        sim.settle();
        sim.set_validation(Stage::Pre, Some(true));
        sim.settle();
        sim.advance(secs(30));
        assert_eq!(sim.last(), Decision::Healthy);
        assert_eq!(sim.cluster.blue.spec_replicas, 0);
        sim.auto_ready = false;
        sim.set_template("web:1");
        let seen = sim.settle();
        assert_eq!(
            seen[1],
            Decision::ApplySlot {
                slot: Slot::Blue,
                revision: r1.clone(),
                replicas: 3
            }
        );
        assert!(matches!(
            seen.last(),
            Some(Decision::WaitForAvailable { .. })
        ));
        sim.finish_rollout(Slot::Blue);
        // Known good: no prePromotion.
        assert_eq!(
            sim.decide(),
            Decision::SwitchTraffic {
                to: Slot::Blue,
                revision: r1
            }
        );
    }

    #[test]
    fn newer_template_during_validation_replaces_the_preview() {
        let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.settle();
        // Validation of r2 half done when r3 arrives.
        assert!(matches!(sim.decide(), Decision::WaitForValidation { .. }));
        sim.set_template("web:3");
        let r3 = sim.revision();
        let seen = sim.settle();
        assert_eq!(
            seen,
            [
                Decision::BeginRelease {
                    revision: r3.clone(),
                    slot: Slot::Green,
                    fast_track: false,
                    supersedes: Some(r2.clone())
                },
                Decision::ApplySlot {
                    slot: Slot::Green,
                    revision: r3.clone(),
                    replicas: 3
                },
                Decision::StartValidation {
                    stage: Stage::Pre,
                    revision: r3.clone()
                },
                Decision::WaitForValidation {
                    stage: Stage::Pre,
                    revision: r3.clone()
                },
            ]
        );
        // r2's steps were dropped with its revision; the active slot never moved.
        let status = sim.release.status.clone().unwrap();
        assert_eq!(status.desired_revision, Some(r3.clone()));
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        assert_eq!(status.active_revision, Some(rev_of("web:1")));
        assert_eq!(sim.history()[1], (r2, Some("Superseded".into())));
        // A failed step recorded for r2 never counts for r3.
        let mut state = sim.state();
        state.recorded_revision = Some(rev_of("web:2"));
        state.pre_validation = Outcome::Failed("old".into());
        assert!(matches!(
            decide(&sim.release.spec, &state, &sim.cluster, sim.now),
            Decision::StartValidation { .. }
        ));
    }

    #[test]
    fn newer_template_during_post_promotion_supersedes_the_switched_release() {
        let mut sim = Sim::healthy(json!({"postPromotion": [step("soak")]}));
        let r1 = sim.revision();
        sim.set_template("web:2");
        let r2 = sim.revision();
        assert!(matches!(
            sim.last(),
            Decision::WaitForValidation {
                stage: Stage::Post,
                ..
            }
        ));
        sim.advance(secs(60));
        sim.set_template("web:3");
        let r3 = sim.revision();
        let seen = sim.settle();
        assert_eq!(
            seen[0],
            Decision::BeginRelease {
                revision: r3.clone(),
                slot: Slot::Blue,
                fast_track: false,
                supersedes: Some(r2.clone())
            }
        );
        assert!(seen.contains(&Decision::SwitchTraffic {
            to: Slot::Blue,
            revision: r3.clone()
        }));
        assert_eq!(
            seen.last(),
            Some(&Decision::WaitForValidation {
                stage: Stage::Post,
                revision: r3.clone()
            })
        );
        // r2 served but never passed postPromotion: not known good, so a later revert to it
        // is validated again.
        assert_eq!(
            sim.history(),
            [
                (r3.clone(), None),
                (r2.clone(), Some("Superseded".into())),
                (r1, Some("Promoted".into()))
            ]
        );
        // r3 fails: back to green, which still runs r2.
        sim.set_validation(Stage::Post, Some(false));
        assert!(matches!(
            sim.decide(),
            Decision::SwitchBack { to: Slot::Green, revision, .. } if revision == r2
        ));
    }

    #[test]
    fn revert_to_the_active_revision_during_validation_supersedes_and_scales_down() {
        let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")], "standbyReplicas": 2}));
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.settle();
        sim.set_template("web:1");
        assert_eq!(
            sim.settle(),
            [
                Decision::CloseRelease {
                    revision: r2.clone(),
                    result: ReleaseResult::Superseded
                },
                Decision::PointPreview {
                    slot: Slot::Blue,
                    found: Some(Slot::Green)
                },
                Decision::ScaleSlot {
                    slot: Slot::Green,
                    replicas: 0,
                    reason: ScaleReason::Standby
                },
                Decision::Healthy,
            ]
        );
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
    }

    #[test]
    fn a_new_revision_waits_for_the_old_slot_to_drain() {
        // scaleDownDelay 1h keeps web:1 warm for a rollback; the drain before web:3 may replace
        // it is capped at 30s. A progress deadline shorter than the drain does not run during it.
        let mut sim = Sim::healthy(json!({"scaleDownDelay": "1h", "progressDeadline": "20s"}));
        sim.set_template("web:2");
        let seen = sim.settle();
        let Some(Decision::RecordSwitched { at: switched, .. }) = seen
            .iter()
            .find(|d| matches!(d, Decision::RecordSwitched { .. }))
        else {
            panic!("{seen:?}");
        };
        let drained = add(*switched, secs(30));
        // web:3 right after the switch: blue still holds web:1 pods that may get traffic.
        sim.advance(secs(10));
        sim.set_template("web:3");
        let r3 = sim.revision();
        let seen = sim.settle();
        assert_eq!(
            seen.last(),
            Some(&Decision::WaitForDrain {
                slot: Slot::Blue,
                until: drained
            })
        );
        assert_eq!(seen.last().unwrap().requeue_at(), Some(drained));
        assert_eq!(seen.last().unwrap().phase(), Some(Phase::Progressing));
        assert!(sim.cluster.blue.holds(&rev_of("web:1")));
        sim.now = drained - SignedDuration::from_nanos(1);
        assert!(matches!(sim.decide(), Decision::WaitForDrain { .. }));
        sim.now = drained;
        sim.auto_ready = false;
        let seen = sim.settle();
        assert_eq!(
            seen[0],
            Decision::ApplySlot {
                slot: Slot::Blue,
                revision: r3.clone(),
                replicas: 3
            }
        );
        assert_eq!(
            seen.last(),
            Some(&Decision::WaitForAvailable {
                slot: Slot::Blue,
                deadline: Some(add(drained, secs(20)))
            })
        );
        sim.finish_rollout(Slot::Blue);
        assert!(sim.settle().contains(&Decision::SwitchTraffic {
            to: Slot::Blue,
            revision: r3
        }));
        // A short scaleDownDelay is the drain itself.
        let mut sim = Sim::healthy(json!({"scaleDownDelay": "10s"}));
        sim.set_template("web:2");
        sim.settle();
        let switched = sim.state().switched_at.unwrap();
        sim.set_template("web:3");
        assert_eq!(
            sim.last(),
            Decision::WaitForDrain {
                slot: Slot::Blue,
                until: add(switched, secs(10))
            }
        );
    }

    #[test]
    fn abort_while_draining_still_scales_the_old_slot_down() {
        let mut sim = Sim::healthy(json!({"scaleDownDelay": "2m", "standbyReplicas": 1}));
        sim.set_template("web:2");
        sim.settle();
        let switched = sim.state().switched_at.unwrap();
        sim.set_template("web:3");
        let r3 = sim.revision();
        assert!(matches!(sim.last(), Decision::WaitForDrain { .. }));
        sim.annotate(ABORT_ANNOTATION, &r3);
        let seen = sim.settle();
        assert!(matches!(seen[0], Decision::Abort { .. }));
        // Blue still holds web:1 (promoted): standby at switchedAt + scaleDownDelay.
        let at = add(switched, secs(120));
        assert_eq!(
            seen.last(),
            Some(&Decision::Aborted {
                revision: r3.clone(),
                scale_down_at: Some(at)
            })
        );
        sim.now = at;
        assert_eq!(
            sim.settle(),
            [
                Decision::ScaleSlot {
                    slot: Slot::Blue,
                    replicas: 1,
                    reason: ScaleReason::Standby
                },
                Decision::Aborted {
                    revision: r3,
                    scale_down_at: None
                }
            ]
        );
        assert_eq!(sim.cluster.service_slot, Some(Slot::Green));
    }

    #[test]
    fn a_new_revision_waits_for_the_previous_switch_to_converge() {
        let mut sim = Sim::healthy(json!({}));
        sim.auto_endpoints = false;
        sim.set_template("web:2");
        assert!(matches!(sim.last(), Decision::WaitForEndpoints { .. }));
        sim.set_template("web:3");
        let seen = sim.settle();
        assert!(matches!(seen[0], Decision::BeginRelease { .. }));
        assert_eq!(
            seen.last(),
            Some(&Decision::WaitForEndpoints {
                slot: Slot::Green,
                back: false
            })
        );
        sim.converge_endpoints();
        let seen = sim.settle();
        assert!(matches!(seen[0], Decision::RecordSwitched { .. }));
        assert!(matches!(seen.last(), Some(Decision::WaitForDrain { .. })));
    }

    // --- selectors, replicas ---------------------------------------------------------------------

    #[test]
    fn hand_edit_of_the_slot_key_is_put_back() {
        let mut sim = Sim::healthy(json!({"standbyReplicas": 3}));
        sim.set_template("web:2");
        sim.settle();
        sim.advance(secs(60));
        assert_eq!(sim.last(), Decision::Healthy);
        for found in [Some(Slot::Blue), None] {
            sim.cluster.service_slot = found;
            assert_eq!(
                sim.settle(),
                [
                    Decision::RestoreSelector {
                        slot: Slot::Green,
                        found
                    },
                    Decision::Healthy
                ]
            );
            assert_eq!(sim.cluster.service_slot, Some(Slot::Green));
        }
        // The preview Service too.
        sim.cluster.preview_service_slot = Some(Slot::Blue);
        assert_eq!(
            sim.decide(),
            Decision::PointPreview {
                slot: Slot::Green,
                found: Some(Slot::Blue)
            }
        );
    }

    #[test]
    fn hand_edit_is_held_while_the_active_slot_has_no_ready_pods() {
        let mut sim = Sim::healthy(json!({}));
        sim.cluster.blue.ready_replicas = 0;
        sim.cluster.blue.available = false;
        sim.cluster.green = SlotView {
            exists: true,
            revision: Some("hotfix".into()),
            spec_replicas: 3,
            ready_replicas: 3,
            available: true,
        };
        sim.cluster.service_slot = Some(Slot::Green);
        let decision = sim.decide();
        assert_eq!(
            decision,
            Decision::HoldSelector {
                slot: Slot::Blue,
                found: Some(Slot::Green)
            }
        );
        assert_eq!(decision.phase(), Some(Phase::Degraded));
        sim.cluster.blue.ready_replicas = 1;
        assert!(matches!(sim.decide(), Decision::RestoreSelector { .. }));
    }

    #[test]
    fn interrupted_switch_completes_without_a_second_switch() {
        let mut sim = Sim::healthy(json!({}));
        sim.set_template("web:2");
        // Run until the switch is decided, then die after the status write only.
        loop {
            let decision = sim.decide();
            if let Decision::SwitchTraffic { .. } = decision {
                sim.apply_status(&decision);
                break;
            }
            sim.apply(&decision);
        }
        assert_eq!(sim.cluster.service_slot, Some(Slot::Blue));
        let seen = sim.settle();
        assert_eq!(
            seen[0],
            Decision::RestoreSelector {
                slot: Slot::Green,
                found: Some(Slot::Blue)
            }
        );
        assert!(
            !seen
                .iter()
                .any(|d| matches!(d, Decision::SwitchTraffic { .. }))
        );
        assert!(matches!(
            seen[1],
            Decision::RecordSwitched {
                slot: Slot::Green,
                ..
            }
        ));
    }

    #[test]
    fn replica_changes_follow_spec_on_both_slots() {
        // Settled: the active slot is re-applied with the new count, no release.
        let mut sim = Sim::healthy(json!({}));
        sim.release.spec.replicas = 5;
        let r1 = sim.revision();
        assert_eq!(
            sim.settle(),
            [
                Decision::ApplySlot {
                    slot: Slot::Blue,
                    revision: r1,
                    replicas: 5
                },
                Decision::Healthy
            ]
        );
        // In flight: the active slot (another revision) is only scaled; the new one is applied
        // at the new count.
        sim.auto_ready = false;
        sim.set_template("web:2");
        let r2 = sim.revision();
        sim.settle();
        sim.release.spec.replicas = 4;
        assert_eq!(
            sim.settle()[..2],
            [
                Decision::ScaleSlot {
                    slot: Slot::Blue,
                    replicas: 4,
                    reason: ScaleReason::Replicas
                },
                Decision::ApplySlot {
                    slot: Slot::Green,
                    revision: r2,
                    replicas: 4
                },
            ]
        );
    }

    // --- idempotence and restarts ----------------------------------------------------------------

    /// A whole release with every stage, checked step by step: each decision is re-decided by
    /// a restarted operator (inside `Sim::decide`), the state each action produced moves
    /// forward (no action repeats), and traffic switches exactly once each way.
    #[test]
    fn a_release_in_every_phase_survives_restarts_and_switches_once() {
        let mut sim = Sim::healthy(json!({
            "autoPromote": false,
            "prePromotion": [step("smoke")],
            "postPromotion": [step("soak")]
        }));
        sim.auto_ready = false;
        sim.auto_endpoints = false;
        sim.set_template("web:2");
        let r2 = sim.revision();
        let mut phases = Vec::new();
        let mut note = |sim: &mut Sim| {
            let decision = sim.last();
            phases.push(decision.phase().unwrap());
            decision
        };
        assert!(matches!(note(&mut sim), Decision::WaitForAvailable { .. }));
        sim.finish_rollout(Slot::Green);
        assert!(matches!(note(&mut sim), Decision::WaitForValidation { .. }));
        sim.set_validation(Stage::Pre, Some(true));
        assert!(matches!(note(&mut sim), Decision::AwaitPromotion { .. }));
        sim.annotate(PROMOTE_ANNOTATION, &r2);
        assert!(matches!(note(&mut sim), Decision::WaitForEndpoints { .. }));
        sim.converge_endpoints();
        assert!(matches!(note(&mut sim), Decision::WaitForValidation { .. }));
        sim.set_validation(Stage::Post, Some(true));
        assert!(matches!(note(&mut sim), Decision::WaitForScaleDown { .. }));
        sim.advance(secs(30));
        assert!(matches!(note(&mut sim), Decision::Healthy));
        assert_eq!(
            phases,
            [
                Phase::Progressing,
                Phase::Validating,
                Phase::AwaitingPromotion,
                Phase::Promoting,
                Phase::Promoting,
                Phase::ScalingDown,
                Phase::Healthy
            ]
        );
        let switches: Vec<_> = sim
            .log
            .iter()
            .filter(|l| l.starts_with("SwitchTraffic") || l.starts_with("SwitchBack"))
            .collect();
        // One for the first release, one for r2.
        assert_eq!(switches.len(), 2, "{switches:?}");
        // Settled: deciding again and again writes nothing.
        for _ in 0..3 {
            sim.advance(secs(3600));
            assert_eq!(sim.decide(), Decision::Healthy);
        }
    }

    #[test]
    fn every_decision_has_a_phase_and_waits_are_not_actions() {
        let slot = Slot::Blue;
        let r = || "r".to_owned();
        let t = ts(T0);
        let all = [
            (
                Decision::BeginRelease {
                    revision: r(),
                    slot,
                    fast_track: false,
                    supersedes: None,
                },
                Phase::Progressing,
            ),
            (
                Decision::ApplySlot {
                    slot,
                    revision: r(),
                    replicas: 1,
                },
                Phase::Progressing,
            ),
            (
                Decision::ScaleSlot {
                    slot,
                    replicas: 1,
                    reason: ScaleReason::Replicas,
                },
                Phase::Progressing,
            ),
            (
                Decision::ScaleSlot {
                    slot,
                    replicas: 0,
                    reason: ScaleReason::Standby,
                },
                Phase::ScalingDown,
            ),
            (
                Decision::ScaleSlot {
                    slot,
                    replicas: 0,
                    reason: ScaleReason::Aborted,
                },
                Phase::Degraded,
            ),
            (
                Decision::ScaleSlot {
                    slot,
                    replicas: 3,
                    reason: ScaleReason::SwitchBack,
                },
                Phase::Degraded,
            ),
            (
                Decision::PointPreview { slot, found: None },
                Phase::Progressing,
            ),
            (
                Decision::StartValidation {
                    stage: Stage::Pre,
                    revision: r(),
                },
                Phase::Validating,
            ),
            (
                Decision::StartValidation {
                    stage: Stage::Post,
                    revision: r(),
                },
                Phase::Promoting,
            ),
            (
                Decision::SwitchTraffic {
                    to: slot,
                    revision: r(),
                },
                Phase::Promoting,
            ),
            (
                Decision::RecordSwitched {
                    slot,
                    at: t,
                    scale_down_at: t,
                    back: false,
                },
                Phase::Promoting,
            ),
            (
                Decision::RecordSwitched {
                    slot,
                    at: t,
                    scale_down_at: t,
                    back: true,
                },
                Phase::Degraded,
            ),
            (
                Decision::CloseRelease {
                    revision: r(),
                    result: ReleaseResult::Promoted,
                },
                Phase::Promoting,
            ),
            (
                Decision::CloseRelease {
                    revision: r(),
                    result: ReleaseResult::Superseded,
                },
                Phase::Progressing,
            ),
            (
                Decision::Abort {
                    revision: r(),
                    reason: AbortReason::ByHand,
                    scale_down_at: t,
                },
                Phase::Degraded,
            ),
            (
                Decision::SwitchBack {
                    to: slot,
                    revision: r(),
                    failed: r(),
                    reason: AbortReason::ByHand,
                },
                Phase::Degraded,
            ),
            (
                Decision::RestoreSelector { slot, found: None },
                Phase::Progressing,
            ),
            (
                Decision::WaitForDrain { slot, until: t },
                Phase::Progressing,
            ),
            (
                Decision::WaitForAvailable {
                    slot,
                    deadline: None,
                },
                Phase::Progressing,
            ),
            (
                Decision::WaitForValidation {
                    stage: Stage::Pre,
                    revision: r(),
                },
                Phase::Validating,
            ),
            (
                Decision::WaitForValidation {
                    stage: Stage::Post,
                    revision: r(),
                },
                Phase::Promoting,
            ),
            (
                Decision::AwaitPromotion {
                    revision: r(),
                    reason: PromotionWait::Manual,
                },
                Phase::AwaitingPromotion,
            ),
            (
                Decision::WaitForEndpoints { slot, back: false },
                Phase::Promoting,
            ),
            (
                Decision::WaitForEndpoints { slot, back: true },
                Phase::Degraded,
            ),
            (
                Decision::WaitForScaleDown { slot, at: t },
                Phase::ScalingDown,
            ),
            (
                Decision::Aborted {
                    revision: r(),
                    scale_down_at: None,
                },
                Phase::Degraded,
            ),
            (
                Decision::AwaitSwitchBack {
                    to: None,
                    revision: r(),
                    reason: AbortReason::ByHand,
                },
                Phase::Degraded,
            ),
            (
                Decision::HoldSelector { slot, found: None },
                Phase::Degraded,
            ),
            (Decision::Healthy, Phase::Healthy),
        ];
        let mut shown: Vec<Phase> = all.iter().map(|(_, p)| *p).collect();
        shown.dedup();
        for phase in Phase::ALL {
            assert!(shown.contains(&phase), "{phase:?} never shown");
        }
        for (decision, phase) in &all {
            assert_eq!(decision.phase(), Some(*phase), "{decision:?}");
            if decision.is_action() {
                assert_eq!(decision.requeue_at(), None);
            }
        }
        let actions = all.iter().filter(|(d, _)| d.is_action()).count();
        assert_eq!(actions, 17);
    }

    #[test]
    fn history_keeps_the_last_five_newest_first() {
        let mut history = Vec::new();
        for i in 0..7 {
            begin_record(&mut history, &format!("r{i}"), vec![], ts(T0));
            close_record(
                &mut history,
                &format!("r{i}"),
                ReleaseResult::Promoted,
                ts(T0),
            );
        }
        let revisions: Vec<_> = history.iter().map(|r| r.revision.as_str()).collect();
        assert_eq!(revisions, ["r6", "r5", "r4", "r3", "r2"]);
        // Closing only touches an open record.
        close_record(&mut history, "r6", ReleaseResult::Aborted, ts(T0));
        assert_eq!(history[0].result.as_deref(), Some("Promoted"));
        assert_eq!(
            ReleaseResult::from_status("Weird"),
            ReleaseResult::Superseded
        );
        for result in [
            ReleaseResult::Promoted,
            ReleaseResult::Aborted,
            ReleaseResult::RolledBack,
            ReleaseResult::Superseded,
        ] {
            assert_eq!(ReleaseResult::from_status(result.as_str()), result);
        }
    }

    #[test]
    fn record_desired_revision_clears_stale_validation() {
        let mut sim = Sim::new(json!({"prePromotion": [step("smoke")]}));
        sim.set_validation(Stage::Pre, Some(true));
        let status = sim.status();
        record_desired_revision(status, "a");
        assert!(status.validation.is_empty());
        status.validation = vec![];
        sim.set_validation(Stage::Pre, Some(true));
        let status = sim.status();
        record_desired_revision(status, "a");
        assert_eq!(status.validation.len(), 1);
    }
}

//! What a BlueGreenRelease reconcile reads, and nothing else: the release as last written, its
//! Services (do they exist, do their selectors fit the template), its slot Deployments and the
//! active Service's EndpointSlices ([`Cluster`]), its validation runs and the MaintenanceWindows.
//! Also what the release object itself says ([`ReleaseState`]): only persisted data, so a
//! restarted operator reads the same. No decisions, no writes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::types::{
    BlueGreenRelease, BlueGreenReleaseSpec, BlueGreenReleaseStatus, ReleaseRecord, Unit,
};
use crate::kubectl::{RolloutStatus, deployment_rollout_status};
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook_run::{RunbookRun, StepPhase, StepStatus};
use crate::runtime::{self, Cache};
use crate::step::{OnFailure, Step};
use crate::well_known::{
    ABORT_ANNOTATION, DEFAULT_SLOT_LABEL, PROMOTE_ANNOTATION, PROMOTE_FULL_ANNOTATION,
    PROMOTED_FULL_BY, RETRY_ANNOTATION, REVISION_ANNOTATION,
};

/// Longest label value Kubernetes accepts.
const MAX_LABEL_VALUE: usize = 63;
/// Longest object name Kubernetes accepts.
const MAX_NAME: usize = 253;
/// The label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

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

// --- names of the slot objects -------------------------------------------------------------------

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

/// The name of a component's slot Deployment: `<release>-<slot>` for the single-template form
/// (`component` `None`, [`slot_deployment_name`]), `<release>-<component>-<slot>` for a stack's
/// component (a release name too long for that is shortened with a hash; the component and
/// slot are always kept).
pub fn component_deployment_name(release: &str, component: Option<&str>, slot: Slot) -> String {
    match component {
        None => slot_deployment_name(release, slot),
        Some(component) => format!(
            "{}-{component}-{slot}",
            bounded(release, MAX_NAME.saturating_sub(7 + component.len()))
        ),
    }
}

/// The value of [`RELEASE_LABEL`](crate::well_known::RELEASE_LABEL) for a release: its name,
/// or for a name longer than a label value may be, a prefix and a hash.
pub fn release_label_value(release: &str) -> String {
    bounded(release, MAX_LABEL_VALUE)
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

/// One component in the cluster: its slot Deployments and its Services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComponentView {
    /// Its blue Deployment.
    pub blue: SlotView,
    /// Its green Deployment.
    pub green: SlotView,
    /// Its active Service's EndpointSlices.
    pub endpoints: EndpointView,
    /// The slot its active Service's selector names ([`selector_slot`]).
    pub service_slot: Option<Slot>,
    /// The slot its preview Service's selector names (ignored without a preview Service).
    pub preview_service_slot: Option<Slot>,
}

impl ComponentView {
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

/// Everything the decision reads from the cluster besides the release itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Each component, in declared order (one for the single-template form). A component
    /// the list is too short for reads as absent (no Deployments, Services naming no slot).
    pub components: Vec<ComponentView>,
    /// A MaintenanceWindow matching `requiresMaintenanceWindow` is Active (ignored when the
    /// release does not require one).
    pub window_open: bool,
}

impl Default for Cluster {
    /// One absent component.
    fn default() -> Self {
        Self {
            components: vec![ComponentView::default()],
            window_open: false,
        }
    }
}

/// An absent component.
static ABSENT: std::sync::LazyLock<ComponentView> =
    std::sync::LazyLock::new(ComponentView::default);

impl Cluster {
    /// Component `index` (an absent one past the end of the list).
    pub fn component(&self, index: usize) -> &ComponentView {
        self.components.get(index).unwrap_or(&ABSENT)
    }

    /// Component `index`, to change (the list grows as needed).
    pub fn component_mut(&mut self, index: usize) -> &mut ComponentView {
        if self.components.len() <= index {
            self.components.resize(index + 1, ComponentView::default());
        }
        &mut self.components[index]
    }
}

// --- what the release says -----------------------------------------------------------------------

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
    /// Which try of the revision (1 unless retried).
    pub attempt: i32,
    /// A full promotion skipped its remaining gates.
    pub promoted_full: bool,
}

impl Record {
    /// Reads a stored record.
    pub fn from_status(record: &ReleaseRecord) -> Self {
        Self {
            revision: record.revision.clone(),
            result: record.result.as_deref().map(ReleaseResult::from_status),
            started: record.start_time.as_ref().map(|t| t.0),
            completed: record.completion_time.as_ref().map(|t| t.0),
            attempt: record.attempt.unwrap_or(1),
            promoted_full: record.promoted_full_at.is_some(),
        }
    }
}

/// What the release object says: its status, its annotations, and the revision of its current
/// template. Only persisted data, so a restarted operator reads the same.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseState {
    /// [`revision`](super::revision) of the current `spec.template`.
    pub desired_revision: String,
    /// `status.desiredRevision`: the template revision the controller last recorded. Status
    /// validation entries belong to it (see
    /// [`record_desired_revision`](super::status::record_desired_revision)), so they count only
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
    /// The [`RETRY_ANNOTATION`] value, trimmed.
    pub retry: Option<String>,
    /// The [`PROMOTE_FULL_ANNOTATION`] value, trimmed.
    pub promote_full: Option<String>,
    /// The [`PROMOTED_FULL_BY`] stamp, trimmed.
    pub promoted_full_by: Option<String>,
    /// `status.readyToPromoteAt`.
    pub ready_to_promote_at: Option<Timestamp>,
}

impl ReleaseState {
    /// Reads a release; `desired_revision` is [`revision`](super::revision) of its decoded
    /// template.
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
            retry: annotation(RETRY_ANNOTATION),
            promote_full: annotation(PROMOTE_FULL_ANNOTATION),
            promoted_full_by: annotation(PROMOTED_FULL_BY),
            ready_to_promote_at: status.ready_to_promote_at.as_ref().map(|t| t.0),
        }
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

// --- reading the caches --------------------------------------------------------------------------

/// A read that failed, naming what was read.
pub type Error = crate::errors::ReadError;

fn read(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error { what, source }
}

/// The caches the controller keeps, and the resourceVersions it last wrote.
pub struct Caches {
    /// Services (the ones releases name).
    pub services: Cache<Service>,
    /// EndpointSlices labelled with their Service.
    pub slices: Cache<EndpointSlice>,
    /// Slot Deployments (labelled with the release).
    pub deployments: Cache<Deployment>,
    /// Validation runs (labelled with the release).
    pub runs: Cache<RunbookRun>,
    /// MaintenanceWindows.
    pub windows: Cache<MaintenanceWindow>,
    /// Releases and Services as this controller last wrote them.
    pub written: runtime::Written,
}

/// Every Service a release names (each component's active and preview Service), each with
/// the field that names it (`spec.services.active`, `spec.components[1].services.preview`).
/// The one place that lists them: the reads, the watches and the cache filter use it.
pub fn services_named(bgr: &BlueGreenRelease) -> impl Iterator<Item = (String, &str)> {
    bgr.spec.units().into_iter().flat_map(|unit| {
        let services = unit.services;
        std::iter::once((unit.field("services.active"), services.active.as_str())).chain(
            services
                .preview
                .as_deref()
                .map(|p| (unit.field("services.preview"), p)),
        )
    })
}

/// The active Services of a release, in declared order.
pub fn active_services(bgr: &BlueGreenRelease) -> impl Iterator<Item = &str> {
    bgr.spec
        .units()
        .into_iter()
        .map(|unit| unit.services.active.as_str())
}

/// The release as this controller last wrote it or newer (`None`: it is gone).
pub async fn release(
    caches: &Caches,
    client: &kube::Client,
    bgr: Arc<BlueGreenRelease>,
) -> Result<Option<Arc<BlueGreenRelease>>, Error> {
    let namespace = bgr.namespace().unwrap_or_default();
    let what = format!("BlueGreenRelease {namespace}/{}", bgr.name_any());
    let api: Api<BlueGreenRelease> = Api::namespaced(client.clone(), &namespace);
    caches.written.latest(&api, bgr).await.map_err(read(what))
}

/// What the reconcile reads about the release's Services, to judge whether the spec fits them.
pub struct Observed {
    /// Each named Service as the API server has it (`None`: it does not exist).
    pub services: BTreeMap<String, Option<Arc<Service>>>,
    /// Services named by the release that do not exist, with the field path.
    pub missing_services: Vec<(String, String)>,
    /// Selector keys of the named Services (other than the slot key) that the component's
    /// template labels do not carry with the same value: (template field, service field,
    /// service, key, value).
    pub unmatched_selectors: Vec<(String, String, String, String, String)>,
}

impl Observed {
    /// Reads the Services `bgr` names (a cached copy older than this controller's own last
    /// write of it, or one not cached, is read from the API server) and how they fit
    /// `templates` (each unit's decoded template, in declared order).
    pub async fn read(
        caches: &Caches,
        client: &kube::Client,
        bgr: &BlueGreenRelease,
        templates: &[Option<PodTemplateSpec>],
    ) -> Result<Self, Error> {
        caches
            .services
            .synced()
            .await
            .map_err(read("the Service cache"))?;
        let namespace = bgr.namespace().unwrap_or_default();
        let service_api: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let mut services = BTreeMap::new();
        for (_, name) in services_named(bgr) {
            let cached = caches
                .services
                .store
                .get(&ObjectRef::new(name).within(&namespace));
            let found = match cached {
                Some(cached) => caches
                    .written
                    .latest(&service_api, cached)
                    .await
                    .map_err(read(format!("Service {namespace}/{name}")))?,
                // The cache keeps a Service only if a release named it when its event came
                // (see the controller): one that existed before its release is read here
                // until its next change brings it into the cache.
                None => service_api
                    .get_opt(name)
                    .await
                    .map_err(read(format!("Service {namespace}/{name}")))?
                    .map(Arc::new),
            };
            services.insert(name.to_owned(), found);
        }
        Ok(Self::from_services(bgr, services, templates))
    }

    /// How the Services found fit the release (`templates`: each unit's decoded template).
    pub fn from_services(
        bgr: &BlueGreenRelease,
        services: BTreeMap<String, Option<Arc<Service>>>,
        templates: &[Option<PodTemplateSpec>],
    ) -> Self {
        let slot_key = slot_label(&bgr.spec).to_owned();
        let mut observed = Self {
            services,
            missing_services: Vec::new(),
            unmatched_selectors: Vec::new(),
        };
        for unit in bgr.spec.units() {
            let template = templates.get(unit.index).and_then(Option::as_ref);
            let services = unit.services;
            let named = std::iter::once(("services.active", services.active.as_str()))
                .chain(services.preview.as_deref().map(|p| ("services.preview", p)));
            for (field, name) in named {
                match observed.service(name) {
                    None => observed
                        .missing_services
                        .push((unit.field(field), name.to_owned())),
                    Some(svc) => {
                        for (key, value) in unmatched(&svc, &slot_key, template) {
                            observed.unmatched_selectors.push((
                                unit.field("template.metadata.labels"),
                                unit.field(field),
                                name.to_owned(),
                                key,
                                value,
                            ));
                        }
                    }
                }
            }
        }
        observed
    }

    /// The Service `name`, if the release names it and it exists.
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services.get(name).cloned().flatten()
    }
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

/// The slot a Service's selector names through `key`.
fn service_slot(service: Option<&Service>, key: &str) -> Option<Slot> {
    selector_slot(
        service
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.selector.as_ref()),
        key,
    )
}

/// What the cluster shows of a valid release: its slot Deployments, the active Service's
/// EndpointSlices, where the Services point, and whether a required MaintenanceWindow is open.
/// Waits for the Deployment, EndpointSlice and run caches to be listed (the runs are read
/// later, by [`validation_journals`]).
pub async fn cluster(
    caches: &Caches,
    bgr: &BlueGreenRelease,
    observed: &Observed,
) -> Result<Cluster, Error> {
    caches
        .deployments
        .synced()
        .await
        .map_err(read("the Deployment cache"))?;
    caches
        .slices
        .synced()
        .await
        .map_err(read("the EndpointSlice cache"))?;
    caches
        .runs
        .synced()
        .await
        .map_err(read("the RunbookRun cache"))?;
    let namespace = bgr.namespace().unwrap_or_default();
    let name = bgr.name_any();
    let slot_key = slot_label(&bgr.spec);
    let components = bgr
        .spec
        .units()
        .into_iter()
        .map(|unit| component_view(caches, observed, &namespace, &name, slot_key, &unit))
        .collect();
    let window_open = match &bgr.spec.requires_maintenance_window {
        None => true,
        Some(requirement) => {
            caches
                .windows
                .synced()
                .await
                .map_err(read("the MaintenanceWindow cache"))?;
            let windows = caches.windows.store.state();
            crate::maintenance_window::open_window(
                windows.iter().map(|w| w.as_ref()),
                &namespace,
                &requirement.selector.match_labels,
            )
        }
    };
    Ok(Cluster {
        components,
        window_open,
    })
}

/// One component of a release as the caches show it: its slot Deployments, its active
/// Service's EndpointSlices (an endpoint's slot is told by its pod's name, which starts with
/// the slot Deployment's), and where its Services point.
fn component_view(
    caches: &Caches,
    observed: &Observed,
    namespace: &str,
    release: &str,
    slot_key: &str,
    unit: &Unit<'_>,
) -> ComponentView {
    let deployment = |slot: Slot| component_deployment_name(release, unit.name, slot);
    let slot_view = |slot: Slot| {
        SlotView::observe(
            caches
                .deployments
                .store
                .get(&ObjectRef::new(&deployment(slot)).within(namespace))
                .as_deref(),
        )
    };
    let active = &unit.services.active;
    let slices: Vec<_> = caches
        .slices
        .store
        .state()
        .into_iter()
        .filter(|s| {
            s.namespace().as_deref() == Some(namespace)
                && s.labels().get(SERVICE_NAME_LABEL) == Some(active)
        })
        .collect();
    let prefixes = Slot::ALL.map(|slot| (slot, format!("{}-", deployment(slot))));
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
    let preview = unit
        .services
        .preview
        .as_deref()
        .and_then(|preview| observed.service(preview));
    ComponentView {
        blue: slot_view(Slot::Blue),
        green: slot_view(Slot::Green),
        endpoints,
        service_slot: service_slot(observed.service(active).as_deref(), slot_key),
        preview_service_slot: service_slot(preview.as_deref(), slot_key),
    }
}

/// The journals of `revision`'s validation runs (prePromotion's, then postPromotion's), as
/// the run cache has them.
pub fn validation_journals(
    runs: &Cache<RunbookRun>,
    namespace: &str,
    release: &str,
    revision: &str,
) -> Vec<StepStatus> {
    let mut journals = Vec::new();
    for stage in [Stage::Pre, Stage::Post] {
        let name = run_name(release, stage, revision);
        let Some(run) = runs.store.get(&ObjectRef::new(&name).within(namespace)) else {
            continue;
        };
        journals.extend(run.status.iter().flat_map(|s| s.steps.iter()).cloned());
    }
    journals
}

/// The release that controls a slot Deployment or a validation run.
pub fn owner_of(d: &impl ResourceExt) -> Option<String> {
    d.owner_references()
        .iter()
        .find(|o| o.kind == "BlueGreenRelease" && o.controller == Some(true))
        .map(|o| o.name.clone())
}

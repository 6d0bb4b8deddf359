//! The BlueGreenRelease custom resource: two Deployment slots behind a Service.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::embedded::Embedded;
use crate::runbook::WindowRequirement;
use crate::runbook_run::StepStatus;
use crate::step::{MAX_STEPS, Step};

/// A blue-green release: the operator keeps Deployments `<name>-blue` and `<name>-green` from
/// one pod template, rolls a new revision into the idle slot, validates it, switches the slot
/// key of the active Service's selector, and keeps the old slot for instant rollback.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ops.runbook.dev",
    version = "v1alpha1",
    kind = "BlueGreenRelease",
    namespaced,
    status = "BlueGreenReleaseStatus",
    shortname = "bgr",
    category = "ops",
    doc = "A blue-green release: two Deployment slots from one pod template behind existing Services, with validation, a selector switch that never leaves the Service without ready endpoints, instant rollback and delayed scale-down.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.activeSlot",
        description = "Slot the active Service selects"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.activeRevision",
        description = "Template revision serving traffic"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Healthy, Progressing, Validating, AwaitingPromotion, Promoting, ScalingDown or Degraded"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition: the spec is valid and settled"
    ),
    printcolumn(
        name = "Components",
        type_ = "integer",
        json_path = ".status.componentCount",
        description = "Components of the release (1 for the single-template form)",
        priority = 1
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Replicas of the active slot",
        priority = 1
    ),
    printcolumn(
        name = "Ready Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready replicas of the active slot",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.slotLabel) == has(oldSelf.slotLabel) && (!has(self.slotLabel) || self.slotLabel == oldSelf.slotLabel)").message("spec.slotLabel cannot change once the release exists: both slot Deployments' selectors and the Services' selectors use it; to use another slot label, create a new release").field_path(".slotLabel"))]
#[x_kube(validation = Rule::new("has(self.components) && size(self.components) > 0 ? !has(self.template) && !has(self.replicas) && !has(self.services) : has(self.template) && has(self.replicas) && has(self.services)").message("set either template, replicas and services (one Deployment per slot) or components (a stack), not both"))]
#[x_kube(validation = Rule::new("!has(self.components) || self.components.all(c, self.components.exists_one(d, d.name == c.name))").message("component names must be unique within spec.components").field_path(".components"))]
/// Specification of a BlueGreenRelease.
pub struct BlueGreenReleaseSpec {
    /// Replicas of the active slot (the single-template form; with `components`, each
    /// component has its own). This is the scale subresource's field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// The pod template (a core/v1 PodTemplateSpec) both slot Deployments `<name>-blue` and
    /// `<name>-green` are made from; a change is a new revision. Set either `template`,
    /// `replicas` and `services` (one Deployment per slot), or `components` (a stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Embedded<PodTemplateSpec>>,
    /// A stack released as one: each component is a pod template with its own replicas and
    /// Services, rolled into the idle slot together (Deployments
    /// `<name>-<component>-<slot>`), validated together, and switched together (every
    /// component's active Service, in `strategy.switchOrder`). A change to any component is a
    /// new revision of the whole stack. Instead of `template`, `replicas` and `services`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_COMPONENTS))]
    pub components: Vec<Component>,
    /// Label key whose value (`blue` or `green`) tells the slots apart (default
    /// `ops.runbook.dev/slot`). Immutable: set it when the release is created; to use another
    /// key, create a new release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 316))]
    pub slot_label: Option<String>,
    /// The existing Services whose selector's slot key the operator sets (the
    /// single-template form; with `components`, each component names its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ReleaseServices>,
    /// How promotion happens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<ReleaseStrategy>,
    /// Promotion waits until a MaintenanceWindow matching this selector is Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_maintenance_window: Option<WindowRequirement>,
    /// ServiceAccount of this namespace whose rights the release uses on its Deployments and
    /// Services; the validation Runbook it creates carries the same name.
    /// The operator sends those requests impersonating
    /// `system:serviceaccount:<this namespace>:<serviceAccountName>`, so they succeed exactly
    /// when that ServiceAccount's RBAC allows them, and a refusal names it. Unset: the
    /// operator's default ServiceAccount of this namespace (flag `--default-service-account`,
    /// `default` unless the cluster admin chose another). Naming a ServiceAccount requires the
    /// right to impersonate it (checked at admission when the chart's policy is installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: Option<String>,
    /// Messages when a revision is promoted (Promoted) or aborted (Aborted: aborted, or
    /// rolled back after a failed postPromotion), as `status.history` records them, with
    /// escalation for Aborted until the release's `ops.runbook.dev/acknowledged` annotation
    /// holds the event id (`status.sentNotifications[].eventId`). Each message is sent once
    /// per revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::notifications::MAX_RULES))]
    pub notifications: Vec<crate::notifications::Notification>,
}

/// Most components a release may hold.
pub const MAX_COMPONENTS: usize = 16;
/// Longest component name: `<release>-<component>-<slot>` then still leaves the release name
/// most of a Deployment name.
pub const MAX_COMPONENT_NAME: usize = 40;

/// One component of a stack: a pod template with its own replicas and Services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// The component's name (a DNS label, unique in the release): its slot Deployments are
    /// `<release>-<name>-blue` and `<release>-<name>-green`, and their pods carry the label
    /// `ops.runbook.dev/component: <name>`.
    #[schemars(
        length(min = 1, max = MAX_COMPONENT_NAME),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Replicas of the component in the active slot.
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// The component's pod template (a core/v1 PodTemplateSpec).
    pub template: Embedded<PodTemplateSpec>,
    /// The component's existing Services: `active` follows the stack's active slot, `preview`
    /// the slot under validation.
    pub services: ReleaseServices,
}

/// The order the components' active Services are switched in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum SwitchOrder {
    /// The order `components` lists them in.
    #[default]
    Declared,
    /// The reverse: with components listed front to back (interface first), their
    /// dependencies switch first.
    Reverse,
}

/// Services of a release (same namespace).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseServices {
    /// Service carrying production traffic; its selector follows the active slot.
    #[schemars(length(min = 1, max = 63))]
    pub active: String,
    /// Service whose selector follows the slot under validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// Promotion strategy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStrategy {
    /// Switch traffic as soon as validation passes (default true); when false, wait for the
    /// annotation `ops.runbook.dev/promote: <revision>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promote: Option<bool>,
    /// Steps run against the new slot before the switch (http, job, approval, sleep, notify).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STEPS))]
    pub pre_promotion: Vec<Step>,
    /// Steps run after the switch; a failure switches back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STEPS))]
    pub post_promotion: Vec<Step>,
    /// How long the old slot keeps its replicas after the switch (default `30s`).
    /// At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay: Option<Duration>,
    /// How long an aborted new slot keeps its replicas (default `30s`). At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay: Option<Duration>,
    /// Longest time a new revision may take to become available (default `10m`).
    /// At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<Duration>,
    /// Replicas the old slot keeps after scale-down (default 0; per component at most its
    /// replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub standby_replicas: Option<i32>,
    /// Promote automatically this long after the revision became ready to promote (validated,
    /// `status.readyToPromoteAt`), without the promote annotation; the annotation still promotes
    /// earlier. Set, it also holds back a release with `autoPromote` true for that long (Argo
    /// Rollouts' `autoPromotionSeconds`). A required maintenance window is still waited for.
    /// At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promote_after: Option<Duration>,
    /// Keep the two slots' pods apart: each slot Deployment's pods get a pod anti-affinity
    /// against the other slot's pods of this release (topology key `kubernetes.io/hostname`),
    /// so a node failure cannot take both the serving and the rollback slot. Takes effect for
    /// the next revision rolled into a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Gate rollbacks too (default false): a return to a revision that was promoted before
    /// (otherwise an instant flip without validation or gates) also waits for
    /// `requiresMaintenanceWindow` to be open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_requires_window: Option<bool>,
    /// Replicas the new slot runs with until promotion (per component at most its replicas;
    /// default: all of them). Before the switch it is scaled to full size, and the switch waits
    /// until it is fully available (Argo Rollouts' `previewReplicaCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub preview_replicas: Option<i32>,
    /// The order the components' active Services switch in: `Declared` (default) or
    /// `Reverse`. A rollback (a new switch) uses the same order; a switch back after a failed
    /// postPromotion undoes the switch in the reverse order. Kubernetes has no multi-object
    /// write, so during a switch the Services switched so far (a prefix of this order) select
    /// the new slot and the rest the old one, and during a switch back the Services still on
    /// the failed slot are such a prefix; each selects only a slot with ready pods of its
    /// component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_order: Option<SwitchOrder>,
}

/// Where one component of a stack stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The component's name.
    pub name: String,
    /// The slot its active Service's selector names (unset: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_slot: Option<String>,
    /// Replicas of its Deployment in that slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready replicas of its Deployment in that slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Its Service selects the release's active slot and that Deployment is fully available.
    pub ready: bool,
}

/// One past release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// Template revision.
    pub revision: String,
    /// Container images of the revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Promoted, Aborted, RolledBack (switched back after a failed postPromotion) or
    /// Superseded (a newer template replaced it before it was promoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// When the revision was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it was promoted or aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Which try of this revision the record is: 1 when absent, counted up by each retry
    /// (`ops.runbook.dev/retry`); a retry's validation runs are named `...-<revision>-<attempt>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub attempt: Option<i32>,
    /// When a full promotion (`ops.runbook.dev/promote-full`) skipped the remaining gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_full_at: Option<Time>,
    /// Who asked for the full promotion (stamped at admission as
    /// `ops.runbook.dev/promoted-full-by`; `unknown` without the chart's admission policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_full_by: Option<String>,
}

/// Where a release stands (`status.phase`): Healthy, Progressing, Validating,
/// AwaitingPromotion, Promoting, ScalingDown, Degraded, or Invalid (the spec cannot be acted
/// on; Stalled says which field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// The spec cannot be acted on (the Stalled condition names the field); nothing new is
    /// released until it is fixed.
    Invalid,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 8] = [
        Phase::Healthy,
        Phase::Progressing,
        Phase::Validating,
        Phase::AwaitingPromotion,
        Phase::Promoting,
        Phase::ScalingDown,
        Phase::Degraded,
        Phase::Invalid,
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
            Phase::Invalid => "Invalid",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a BlueGreenRelease.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenReleaseStatus {
    /// Healthy, Progressing, Validating, AwaitingPromotion, Promoting, ScalingDown, Degraded, or
    /// Invalid (the spec cannot be acted on; Stalled says which field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Slot the active Service selects: blue or green.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_slot: Option<String>,
    /// Slot holding the revision under validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_slot: Option<String>,
    /// Revision serving traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_revision: Option<String>,
    /// Revision of the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    /// When the active Service's endpoints last became only the new slot's ready pods (to the
    /// microsecond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<MicroTime>,
    /// When the old slot will be scaled down; cleared once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_at: Option<Time>,
    /// When the revision under release became ready to promote (validated, waiting for the
    /// promote annotation, `autoPromoteAfter` or a window); `autoPromoteAfter` counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_promote_at: Option<Time>,
    /// Validation steps of the revision in progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<StepStatus>,
    /// The last five releases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub history: Vec<ReleaseRecord>,
    /// The lifecycle messages sent (at most 64, the oldest dropped first): what keeps each
    /// message to one per event across restarts and replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent_notifications: Vec<crate::notifications::SentNotification>,
    /// Replicas of the active slot (scale subresource); with `components`, the sum over all
    /// components (see `components` for each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready replicas of the active slot; with `components`, the sum over all components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// How many components the release holds (1 for the single-template form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_count: Option<i32>,
    /// Each component of a stack (empty for the single-template form), in declared order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_COMPONENTS))]
    pub components: Vec<ComponentStatus>,
    /// Label selector of the active slot's pods (scale subresource, for an HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Ready, Reconciling, Stalled, Available, TrafficSwitched and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Pod anti-affinity between the two slots (Argo Rollouts' `antiAffinity`): exactly one of the
/// two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.preferredDuringSchedulingIgnoredDuringExecution) != has(self.requiredDuringSchedulingIgnoredDuringExecution)").message("antiAffinity: set exactly one of preferredDuringSchedulingIgnoredDuringExecution or requiredDuringSchedulingIgnoredDuringExecution"))]
pub struct AntiAffinity {
    /// The scheduler prefers a node without the other slot's pods, with this weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_during_scheduling_ignored_during_execution: Option<PreferredAntiAffinity>,
    /// Pods never share a node with the other slot's pods (they stay Pending if no node is
    /// free of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<RequiredAntiAffinity>,
}

/// A preferred anti-affinity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferredAntiAffinity {
    /// Weight of the preference, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
}

/// A required anti-affinity (no fields: `{}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct RequiredAntiAffinity {}
/// One component as the operator handles it: a stack's component, or the single-template form
/// (no name). See [`BlueGreenReleaseSpec::units`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unit<'a> {
    /// The component's name; `None` for the single-template form.
    pub name: Option<&'a str>,
    /// Its index in `spec.components` (0 for the single-template form).
    pub index: usize,
    /// Replicas in the active slot.
    pub replicas: i32,
    /// Its pod template.
    pub template: &'a Embedded<PodTemplateSpec>,
    /// Its Services.
    pub services: &'a ReleaseServices,
}

impl Unit<'_> {
    /// The path of the field holding this unit's `field` (`template`, `services.active`, ...):
    /// `spec.<field>` or `spec.components[<i>].<field>`.
    pub fn field(&self, field: &str) -> String {
        match self.name {
            None => format!("spec.{field}"),
            Some(_) => format!("spec.components[{}].{field}", self.index),
        }
    }
}

impl BlueGreenReleaseSpec {
    /// The components the operator handles, in declared order: `spec.components`, or the
    /// single-template form as one unnamed unit. Empty when neither form is complete (an
    /// invalid spec, reported by [`problems`](super::decide::problems)).
    pub fn units(&self) -> Vec<Unit<'_>> {
        if !self.components.is_empty() {
            return self
                .components
                .iter()
                .enumerate()
                .map(|(index, c)| Unit {
                    name: Some(c.name.as_str()),
                    index,
                    replicas: c.replicas,
                    template: &c.template,
                    services: &c.services,
                })
                .collect();
        }
        match (&self.template, &self.services) {
            (Some(template), Some(services)) => vec![Unit {
                name: None,
                index: 0,
                replicas: self.replicas.unwrap_or(1),
                template,
                services,
            }],
            _ => Vec::new(),
        }
    }

    /// The switch order of the units: indices into [`units`](Self::units).
    pub fn switch_order(&self) -> Vec<usize> {
        let count = self.units().len();
        let reverse =
            self.strategy.as_ref().and_then(|s| s.switch_order) == Some(SwitchOrder::Reverse);
        if reverse {
            (0..count).rev().collect()
        } else {
            (0..count).collect()
        }
    }
}

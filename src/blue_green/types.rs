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
/// Specification of a BlueGreenRelease.
pub struct BlueGreenReleaseSpec {
    /// Replicas of the active slot.
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// The pod template (a core/v1 PodTemplateSpec) both slot Deployments are made from; a
    /// change is a new revision.
    pub template: Embedded<PodTemplateSpec>,
    /// Label key whose value (`blue` or `green`) tells the slots apart (default
    /// `ops.runbook.dev/slot`). Immutable: set it when the release is created; to use another
    /// key, create a new release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 316))]
    pub slot_label: Option<String>,
    /// The existing Services whose selector's slot key the operator sets.
    pub services: ReleaseServices,
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
    /// Replicas the old slot keeps after scale-down (default 0).
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
    /// Replicas of the active slot (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready replicas of the active slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
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

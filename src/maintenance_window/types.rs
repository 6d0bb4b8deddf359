//! The MaintenanceWindow custom resource: recurring or one-off windows that prepare, change
//! workloads for the duration, and always restore.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::EnvVarSource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::step::{EnvVar, MatchLabels};

/// A maintenance window: at each start it runs an optional preflight runbook, then scales,
/// sets environment variables or suspends CronJobs; at the end it restores exactly what it
/// changed. Recurring (cron in an IANA time zone) or one-off.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ops.runbook.dev",
    version = "v1alpha1",
    kind = "MaintenanceWindow",
    namespaced,
    status = "MaintenanceWindowStatus",
    shortname = "mw",
    category = "ops",
    doc = "A recurring or one-off maintenance window that prepares (e.g. backs up), changes workloads for its duration (scale, env, suspend) and always restores what it changed.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Scheduled, Preparing, Active, Restoring, Completed or Suspended"
    ),
    printcolumn(
        name = "Next Start",
        type_ = "string",
        json_path = ".status.nextStart",
        description = "Start of the next window (UTC)"
    ),
    printcolumn(
        name = "Next End",
        type_ = "string",
        json_path = ".status.nextEnd",
        description = "End of the next window (UTC)"
    ),
    printcolumn(
        name = "Last Result",
        type_ = "string",
        json_path = ".status.lastWindow.result",
        description = "How the last window ended"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.schedule) ? !has(self.start) && !has(self.end) : has(self.start) && has(self.end)").message("set either schedule (a recurring window) or both start and end (a one-off window), not both"))]
#[x_kube(validation = Rule::new("!has(self.start) || !has(self.end) || self.end > self.start").message("end must be after start").field_path(".end"))]
/// Specification of a MaintenanceWindow.
pub struct MaintenanceWindowSpec {
    /// A recurring window: when it starts and how long it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<WindowSchedule>,
    /// Start of a one-off window, RFC 3339 with offset (e.g. `2026-12-06T02:00:00+11:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,
    /// End of a one-off window, RFC 3339 with offset; must be after `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
    /// Pause the window; an active window restores first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// A run that must succeed before the window's changes are made (e.g. a backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_start: Option<BeforeStart>,
    /// The workloads the window changes and how.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub targets: Vec<WindowTarget>,
    /// A run started after the restore (e.g. verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_end: Option<AfterEnd>,
    /// When someone changed a field the window set: `Respect` (default) keeps their value at
    /// restore time and reports it; `Revert` restores the saved value anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<OnDrift>,
    /// What to do when the operator was down at a start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_start: Option<MissedStart>,
    /// ServiceAccount of this namespace whose rights the window uses to change and restore
    /// its targets (scaling, patching and suspending Deployments, StatefulSets and CronJobs).
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
    /// Messages when an occurrence opens (WindowOpened) or closes (WindowClosed), or when
    /// the window could not write a change or restore a value (RestoreFailed:
    /// `lastWindow.result` Failed), with escalation for RestoreFailed until the window's
    /// `ops.runbook.dev/acknowledged` annotation holds the event id
    /// (`status.sentNotifications[].eventId`). Each message is sent once per occurrence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::notifications::MAX_RULES))]
    pub notifications: Vec<crate::notifications::Notification>,
}

/// When a recurring window opens and how long it stays open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowSchedule {
    /// 5-field cron expression for the start, e.g. `0 2 * * SUN#1` (02:00, first Sunday).
    #[schemars(length(min = 1, max = 128))]
    pub cron: String,
    /// IANA time zone of the cron expression (default UTC), e.g. `Australia/Sydney`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How long the window lasts, in elapsed time (e.g. `2h`). At most `8760h` (one year).
    pub duration: Duration,
}

/// The preflight run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BeforeStart {
    /// Runbook to run (same namespace).
    pub runbook: String,
    /// Parameter values for the run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// How long before the start the run begins (default `10m`). At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_time: Option<Duration>,
    /// If true (default), a failed run skips this occurrence with reason PreflightFailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// The follow-up run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AfterEnd {
    /// Runbook to run (same namespace).
    pub runbook: String,
    /// Parameter values for the run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

/// Kinds a window can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TargetKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// batch/v1 CronJob.
    CronJob,
}

/// A workload (or a set of them) and the changes the window makes to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.selector)").message("set exactly one of name or selector"))]
#[x_kube(validation = Rule::new("has(self.scaleTo) || has(self.env) || has(self.suspend)").message("a target needs at least one change: scaleTo, env or suspend"))]
#[x_kube(validation = Rule::new("!has(self.suspend) || self.kind == 'CronJob'").message("suspend applies to CronJobs only").field_path(".suspend"))]
#[x_kube(validation = Rule::new("self.kind != 'CronJob' || (!has(self.scaleTo) && !has(self.env))").message("a CronJob target can only be suspended"))]
pub struct WindowTarget {
    /// Deployment, StatefulSet or CronJob.
    pub kind: TargetKind,
    /// Name of one object (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels selecting several objects of the kind (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<MatchLabels>,
    /// Replica count during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_to: Option<i32>,
    /// Environment variables set during the window (e.g. MAINTENANCE_MODE=true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub env: Option<Vec<EnvVar>>,
    /// Container the env changes apply to; all containers when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Suspend the CronJob during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Drift handling at restore time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum OnDrift {
    /// Keep a value someone changed during the window, and report it (default).
    #[default]
    Respect,
    /// Restore the saved value anyway.
    Revert,
}

/// Policy for a start the operator missed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum MissedStartPolicy {
    /// Skip that occurrence (default).
    #[default]
    Skip,
    /// Start late if no more than `within` has passed since the start.
    StartIfWithin,
}

/// What to do about a missed start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.policy != 'StartIfWithin' || has(self.within)").message("StartIfWithin needs within (e.g. 15m)"))]
pub struct MissedStart {
    /// Skip or StartIfWithin.
    pub policy: MissedStartPolicy,
    /// How late a start may still happen, for StartIfWithin. At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

/// One window occurrence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowInterval {
    /// Start (UTC).
    pub start: Time,
    /// End (UTC).
    pub end: Time,
    /// How it ended: Succeeded, PreflightFailed, Skipped, DriftRespected, Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// A value the window changed: what was there before and what the window wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavedValue {
    /// The object, e.g. `Deployment/worker`.
    pub target: String,
    /// The field, e.g. `replicas`, `env[api].MAINTENANCE_MODE` or `suspend`.
    pub field: String,
    /// The value before the window; absent when the field (e.g. an env var) did not exist or
    /// was read from a source (see `priorValueFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<String>,
    /// For an env var that was read from a Secret, ConfigMap or field before the window: that
    /// source, put back exactly at the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_value_from: Option<EnvVarSource>,
    /// The value the window wrote.
    pub written: String,
    /// True once the value was written to the cluster. The entry is recorded first, so an
    /// operator stopped between recording and writing finishes the write when it is back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub applied: bool,
}

/// Where a MaintenanceWindow is in its lifecycle (`status.phase`):
/// `Scheduled -> Preparing -> Active -> Restoring -> Scheduled`, or `Completed` for a one-off,
/// `Suspended` while `suspend` is set, `Invalid` while the spec cannot be scheduled.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum WindowPhase {
    /// The `beforeStart` run is running (or done) for the coming occurrence.
    Preparing,
    /// The window's changes are in force.
    Active,
    /// The window is putting back what it changed (and running `afterEnd`).
    Restoring,
    /// A one-off window that is over.
    Completed,
    /// `suspend` is set and nothing is left to restore.
    Suspended,
    /// The spec cannot be scheduled (see the Ready and Stalled conditions).
    Invalid,
    /// Waiting for the next occurrence. A value this operator does not know reads as
    /// Scheduled too (serde's `other` variant, which must come last): the phase that assumes
    /// nothing was changed (what *was* changed is told by `saved`, not by the phase).
    #[default]
    #[serde(other)]
    Scheduled,
}

impl WindowPhase {
    /// The string written to `status.phase` (and shown in the Phase column).
    pub fn as_str(self) -> &'static str {
        match self {
            WindowPhase::Scheduled => "Scheduled",
            WindowPhase::Preparing => "Preparing",
            WindowPhase::Active => "Active",
            WindowPhase::Restoring => "Restoring",
            WindowPhase::Completed => "Completed",
            WindowPhase::Suspended => "Suspended",
            WindowPhase::Invalid => "Invalid",
        }
    }

    /// The phase of a status as read (a window never reconciled is `Scheduled`).
    pub fn from_status(phase: Option<WindowPhase>) -> Self {
        phase.unwrap_or_default()
    }

    /// Whether the window's changes are (or may still be) in force: from the moment it made
    /// them (Active) until it has put them all back (Restoring ends).
    pub fn changes_in_effect(self) -> bool {
        matches!(self, WindowPhase::Active | WindowPhase::Restoring)
    }
}

/// Observed state of a MaintenanceWindow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindowStatus {
    /// Scheduled, Preparing, Active, Restoring, Completed, Suspended or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WindowPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The window in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_window: Option<WindowInterval>,
    /// Start of the next window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<Time>,
    /// End of the next window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_end: Option<Time>,
    /// The next three starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upcoming: Vec<Time>,
    /// The most recent finished window and its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_window: Option<WindowInterval>,
    /// Prior and written values of every field the active window changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saved: Vec<SavedValue>,
    /// The lifecycle messages sent (at most 64, the oldest dropped first): what keeps each
    /// message to one per event across restarts and replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent_notifications: Vec<crate::notifications::SentNotification>,
    /// Ready, Reconciling, Stalled, Active (the window's changes are in force) and TargetsFound
    /// (every target names at least one existing object).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

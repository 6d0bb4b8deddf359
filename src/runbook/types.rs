//! The Runbook custom resource: a reusable, parameterised procedure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::step::{MAX_STEPS, MatchLabels, Step};

#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ops.runbook.dev",
    version = "v1alpha1",
    kind = "Runbook",
    namespaced,
    status = "RunbookStatus",
    shortname = "rb",
    category = "ops",
    doc = "A reusable, parameterised operations procedure: ordered typed steps, finally steps that always run, and an optional schedule. Each execution is recorded as a RunbookRun.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.schedule.cron",
        description = "Cron schedule, if any"
    ),
    printcolumn(
        name = "Last Run",
        type_ = "string",
        json_path = ".status.lastRun.name",
        description = "Most recent RunbookRun"
    ),
    printcolumn(
        name = "Last Result",
        type_ = "string",
        json_path = ".status.lastRun.phase",
        description = "Phase of the most recent run"
    ),
    printcolumn(
        name = "Next Run",
        // A string, not a date: kubectl renders a future date as "<invalid>".
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        description = "Next scheduled run (UTC)"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition: the spec is valid and settled"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.steps.all(s, self.steps.exists_one(t, t.name == s.name))").message("step names must be unique within spec.steps").field_path(".steps"))]
#[x_kube(validation = Rule::new("!has(self.finally) || self.finally.all(s, self.finally.exists_one(t, t.name == s.name))").message("step names must be unique within spec.finally").field_path(".finally"))]
#[x_kube(validation = Rule::new("!has(self.finally) || self.finally.all(f, !self.steps.exists(s, s.name == f.name))").message("a finally step may not reuse the name of a step in spec.steps").field_path(".finally"))]
/// Specification of a Runbook.
pub struct RunbookSpec {
    /// What the runbook is for, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameters steps refer to as `{{ params.NAME }}` inside string fields; a RunbookRun may
    /// override their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PARAMS))]
    pub params: Vec<Param>,
    /// The procedure: steps run in order, one at a time (at least one).
    #[schemars(length(min = 1, max = MAX_STEPS))]
    pub steps: Vec<Step>,
    /// Steps that always run after `steps`, whether they succeeded, failed or were cancelled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STEPS))]
    pub finally: Vec<Step>,
    /// Run the runbook on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<RunbookSchedule>,
    /// What else starts runs: alerts from Alertmanager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<RunbookTriggers>,
    /// Hold runs in phase WaitingForWindow until a MaintenanceWindow matching this selector is
    /// Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_maintenance_window: Option<WindowRequirement>,
    /// How many finished RunbookRuns of this runbook to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_limits: Option<HistoryLimits>,
    /// ServiceAccount of this namespace whose rights every run of this Runbook uses for its
    /// steps: reading and changing targets, creating Jobs, deleting pods, reading Secrets.
    /// A run takes it when it starts; editing it later does not change a running run.
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
    /// Serializes the runs that act on the same target: runs of any Runbook in this namespace
    /// (whatever started them: a person, the schedule, an alert, a window or a release) whose
    /// key resolves to the same text never run their steps at the same time. Unlike
    /// `schedule.concurrencyPolicy`, which only governs the schedule, this holds for every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Messages on the lifecycle of this Runbook's runs: RunStarted, RunSucceeded, RunFailed
    /// and ApprovalNeeded (whose message holds `kubectl runbook approve <run> -n <namespace>`),
    /// with escalation while a failure or an approval stays unanswered. Each message is sent
    /// once per run (recorded in `status.sentNotifications` before it is sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::notifications::MAX_RULES))]
    pub notifications: Vec<crate::notifications::Notification>,
}

/// Per-target serialization of runs: a lock per resolved key, held in the cluster (a
/// `coordination.k8s.io` Lease in the run's namespace, named `runbook-lock-<hash of the key>`,
/// whose holder is the run's uid), so it survives restarts, failover and several replicas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Concurrency {
    /// The lock's key, resolved with the run's parameters when the run starts, e.g.
    /// `deployment/{{ params.deployment }}`. Runs whose keys resolve to the same text (in the
    /// same namespace, from any Runbook) hold the same lock. The resolved key is recorded in
    /// the run's `status.concurrency`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// What a run does when another run holds the lock (or is queued ahead of it): `Queue`
    /// (default) waits in phase Pending (condition `Succeeded` Unknown, reason
    /// `WaitingForLock`, naming the run it waits for) and starts in creation order once the lock
    /// is released; `Skip` ends the run Cancelled (reason `ConcurrencySkipped`) without running
    /// a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<LockPolicy>,
}

/// What a run does when its lock is taken.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum LockPolicy {
    /// Wait (phase Pending) and start in creation order once the lock is free (default).
    #[default]
    Queue,
    /// End Cancelled (reason `ConcurrencySkipped`) without running a step.
    Skip,
}

impl LockPolicy {
    /// The policy as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            LockPolicy::Queue => "Queue",
            LockPolicy::Skip => "Skip",
        }
    }
}

/// A runbook parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Param {
    /// Parameter name, used as `{{ params.NAME }}` in step fields and `params.NAME` in `when`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub name: String,
    /// `string` (default), `integer`, `boolean` (`true` or `false`) or `duration` (`30s`,
    /// `5m`, `1h30m`). A run's value is checked against the type, `enum`, `min` and `max` when
    /// the run starts; a bad value fails the run with reason InvalidSpec naming the parameter.
    /// An integer may fill an integer field such as `scale.replicas: "{{ params.replicas }}"`,
    /// and `when` reads it as a number (`params.replicas > 3`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<super::param_value::ParamType>,
    /// Value used when a run does not set one; a run must set parameters without a default.
    /// Written as an integer or a string (`4`, `"true"`, `"5m"`); at most 4096 bytes
    /// (`MAX_PARAM_VALUE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::param_value::scalar_schema")]
    pub default: Option<super::param_value::ParamValue>,
    /// What the parameter means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The only values allowed, e.g. `[staging, production]` (at most 64).
    #[serde(rename = "enum", default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::param_value::enum_schema")]
    pub enum_: Vec<super::param_value::ParamValue>,
    /// Smallest value allowed, for an integer (`1`) or a duration (`30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::param_value::scalar_schema")]
    pub min: Option<super::param_value::ParamValue>,
    /// Largest value allowed, for an integer (`10`) or a duration (`1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::param_value::scalar_schema")]
    pub max: Option<super::param_value::ParamValue>,
}

/// What happens when a scheduled run is due while the previous one still runs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ConcurrencyPolicy {
    /// Skip the new run (default).
    #[default]
    Forbid,
    /// Start the new run alongside.
    Allow,
    /// Cancel the running run and start the new one.
    Replace,
}

/// A cron schedule for a runbook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookSchedule {
    /// 5-field cron expression; `L` (last) and `#` (nth weekday) are supported, e.g.
    /// `0 2 * * SUN#1` is 02:00 on the first Sunday of each month.
    #[schemars(length(min = 1, max = 128))]
    pub cron: String,
    /// IANA time zone the cron expression is read in (default UTC), e.g. `Australia/Sydney`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Forbid (default), Allow or Replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// A run that could not start within this long after its scheduled time is skipped.
    /// At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<Duration>,
    /// Pause scheduling without deleting the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Triggers besides run-now and the schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookTriggers {
    /// Alerts that start a run. The operator's alert receiver takes Alertmanager's webhook
    /// (`POST /v1/alerts/alertmanager`); every firing alert is checked against every entry, and
    /// the first entry that matches starts (at most) one run for that firing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ALERT_TRIGGERS))]
    pub alerts: Vec<AlertTrigger>,
}

/// Starts a run when a matching alert fires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.match) ? size(self.match) : 0) + (has(self.matchRegex) ? size(self.matchRegex) : 0) > 0").message("an alert trigger needs at least one label in match or matchRegex"))]
pub struct AlertTrigger {
    /// Labels the alert must carry, with exactly these values, e.g.
    /// `{alertname: HighErrorRate, service: api}`.
    #[serde(default, rename = "match")]
    #[schemars(length(max = 16))]
    pub match_labels: BTreeMap<String, String>,
    /// Labels whose values must match these regular expressions, matched against the whole
    /// value (as Alertmanager's `=~` does), e.g. `{instance: "db-.*"}`.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub match_regex: BTreeMap<String, String>,
    /// Namespaces besides this Runbook's own whose alerts may start it. An alert belongs to the
    /// namespace in its `namespace` label; an alert without one starts no run (add the label in
    /// the alerting rule). Empty (default): only alerts of this namespace. Listing a namespace
    /// lets this Runbook see that namespace's alert labels and annotations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub namespaces: Vec<String>,
    /// Parameter values for the run. Values may use `{{ alert.labels.NAME }}`,
    /// `{{ alert.annotations.NAME }}`, `{{ alert.status }}`, `{{ alert.fingerprint }}` and
    /// `{{ alert.startsAt }}`; a label or annotation the alert lacks renders empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = MAX_PARAMS))]
    pub params: BTreeMap<String, String>,
    /// At most one run per group (see `groupBy`) within this long; firings of the same group
    /// inside it are suppressed and counted in `status.alerts`. Unset: every firing starts a
    /// run. At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// Alert labels whose values make up a cooldown group, e.g. `[service]`. Unset: the labels
    /// named in `match` and `matchRegex`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub group_by: Vec<String>,
    /// What a resolved notification does: `Ignore` (default), `CancelWaiting` (cancel the
    /// firing's run if it has not started a step yet or waits for an approval or a window), or
    /// `Run` (start one more run for the resolution, with `{{ alert.status }}` = `resolved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_resolved: Option<OnResolved>,
}

/// What a resolved alert does to the Runbook it matches.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum OnResolved {
    /// Nothing (default).
    #[default]
    Ignore,
    /// Cancel the firing's run if it is still Pending, WaitingForWindow or WaitingForApproval.
    CancelWaiting,
    /// Start a run for the resolution.
    Run,
}

/// Most alert triggers a Runbook declares.
pub const MAX_ALERT_TRIGGERS: u32 = 16;

/// Selects the MaintenanceWindows a run must wait for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowRequirement {
    /// Labels of the MaintenanceWindows (same namespace) that allow a run while Active.
    pub selector: MatchLabels,
}

/// How many finished runs to keep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryLimits {
    /// Succeeded runs to keep (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub successful: Option<i32>,
    /// Failed or cancelled runs to keep (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub failed: Option<i32>,
}

/// Observed state of a Runbook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookStatus {
    /// `Ready` when the runbook can run, `Invalid` when its spec must be fixed first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunbookPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// When the schedule last created a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the schedule will next create a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The last `ops.runbook.dev/run-now` token acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_run_now: Option<String>,
    /// When the schedule was seen suspended; times that come due while suspended are not
    /// run as a backlog after it resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_since: Option<Time>,
    /// The lifecycle messages sent (at most 64, the oldest dropped first): what keeps each
    /// message to one per event across restarts and replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent_notifications: Vec<crate::notifications::SentNotification>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// What alerts did, per cooldown group: the run each group last started and the firings
    /// suppressed since. Written by the alert receiver before it starts a run, so a restart, a
    /// second replica or a repeated notification never starts a second run inside a cooldown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsStatus>,
}

/// The alert record of a Runbook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertsStatus {
    /// One entry per group, most recently used last; at most 64 (the least recently used
    /// group is forgotten first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<AlertGroupStatus>,
}

/// What the alerts of one group did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertGroupStatus {
    /// The group: `groupBy` labels and their values, e.g. `alertname=HighErrorRate,service=api`.
    pub key: String,
    /// The run the group last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// When it was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<Time>,
    /// The firings (`fingerprint@startsAt`) that started runs, newest last, at most 10: a
    /// firing sent again after its run was removed by `historyLimits` starts nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firings: Vec<String>,
    /// How many firings the cooldown suppressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<i64>,
    /// The firings (`fingerprint@startsAt`) the cooldown suppressed, newest last, at most 10:
    /// Alertmanager repeats each firing, and a repeat of one listed here is not counted again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_firings: Vec<String>,
    /// The most recent suppression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_suppression: Option<AlertSuppression>,
}

/// A firing the cooldown suppressed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertSuppression {
    /// When.
    pub time: Time,
    /// The firing, `fingerprint@startsAt`.
    pub firing: String,
    /// Why, e.g. `cooldown 15m: run high-error-rate-alert-1a2b3c4d started 3m ago`.
    pub reason: String,
}

/// `Ready` when the runbook can run, `Invalid` when its spec must be fixed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RunbookPhase {
    /// The spec is valid: run-now requests and the schedule start runs.
    Ready,
    /// The spec has problems (named in the `Stalled` condition): neither run-now nor the
    /// schedule starts a run until it is fixed.
    Invalid,
}

/// Summary of a run, kept on the Runbook for `kubectl get`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// RunbookRun name.
    pub name: String,
    /// Its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

pub use super::param_value::MAX_PARAM_VALUE;

/// Most parameters a Runbook declares or a run sets.
pub const MAX_PARAMS: u32 = 32;

/// Parameter values keyed by name, as given on a RunbookRun.
pub type ParamValues = BTreeMap<String, String>;

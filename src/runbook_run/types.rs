//! The RunbookRun custom resource: one execution of a Runbook, kept as an immutable record.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::step::Step;

/// One execution of a Runbook. The spec is immutable once created; the status is the journal:
/// the steps as resolved at start, and per step its phase, attempts, times, target and outputs.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ops.runbook.dev",
    version = "v1alpha1",
    kind = "RunbookRun",
    namespaced,
    status = "RunbookRunStatus",
    shortname = "rbr",
    category = "ops",
    doc = "One execution of a Runbook: an immutable record of what ran, step by step, with outputs and results.",
    printcolumn(
        name = "Runbook",
        type_ = "string",
        json_path = ".spec.runbookRef.name",
        description = "The Runbook being run"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, WaitingForWindow, Running, WaitingForApproval, Succeeded, Failed or Cancelled"
    ),
    printcolumn(
        name = "Step",
        type_ = "string",
        json_path = ".status.currentStep",
        description = "Step in progress"
    ),
    printcolumn(
        name = "Trigger",
        type_ = "string",
        json_path = ".spec.trigger.type",
        description = "What started the run"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.trigger.source",
        description = "Who or what asked: the alert name, the window or release, the run-now token"
    ),
    printcolumn(
        name = "Started",
        type_ = "date",
        json_path = ".status.startTime",
        description = "When the first step started"
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
#[x_kube(validation = Rule::new("self == oldSelf").message("a RunbookRun is an immutable record: create a new run instead of editing this one"))]
/// Specification of a RunbookRun (immutable).
pub struct RunbookRunSpec {
    /// The Runbook to run (same namespace).
    pub runbook_ref: RunbookRef,
    /// Parameter values overriding the Runbook's defaults: at most 32, each at most 4096
    /// bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "params_schema")]
    pub params: BTreeMap<String, String>,
    /// `Run` executes the steps; `Plan` sends every Kubernetes change as a server-side dry run
    /// and records what would change, skipping http, notify and job steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RunMode>,
    /// What started the run (set by whoever creates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

/// Names a Runbook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookRef {
    /// Runbook name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Whether a run changes the cluster.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum RunMode {
    /// Execute the steps (default).
    #[default]
    Run,
    /// Preview: Kubernetes changes are dry-run, side effects outside the cluster are skipped.
    Plan,
}

/// Where runs come from.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum TriggerType {
    /// A person created the run (default).
    #[default]
    Manual,
    /// The Runbook's schedule.
    Schedule,
    /// An alert.
    Alert,
    /// A MaintenanceWindow's beforeStart or afterEnd.
    MaintenanceWindow,
    /// A BlueGreenRelease's validation.
    BlueGreenRelease,
}

/// What started a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Manual, Schedule, Alert, MaintenanceWindow or BlueGreenRelease.
    #[serde(rename = "type")]
    pub type_: TriggerType,
    /// For scheduled runs, the scheduled time the run stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// Who or what asked, e.g. `MaintenanceWindow/db-maintenance` or an alert name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For runs an alert started, the alert as Alertmanager sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertRecord>,
}

/// The alert that started a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRecord {
    /// The `alertname` label.
    pub name: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Alertmanager's fingerprint of the alert's labels.
    pub fingerprint: String,
    /// When the alert started firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Time>,
    /// The alert's labels (values cut at 1024 bytes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The alert's annotations (values cut at 1024 bytes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Alertmanager's link to the alert's source (the rule's graph), if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// Pending, WaitingForWindow, Running, WaitingForApproval, Succeeded, Failed or Cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RunPhase {
    /// Accepted, not started.
    Pending,
    /// Held until a matching MaintenanceWindow is Active.
    WaitingForWindow,
    /// Executing a step.
    Running,
    /// Held at an approval step.
    WaitingForApproval,
    /// Every step succeeded (or failed with onFailure: Continue).
    Succeeded,
    /// A step failed, or the run could not start.
    Failed,
    /// Stopped by `ops.runbook.dev/cancel` or deletion.
    Cancelled,
}

impl RunPhase {
    /// The phase as written in status (and shown by the printer column).
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Pending => "Pending",
            RunPhase::WaitingForWindow => "WaitingForWindow",
            RunPhase::Running => "Running",
            RunPhase::WaitingForApproval => "WaitingForApproval",
            RunPhase::Succeeded => "Succeeded",
            RunPhase::Failed => "Failed",
            RunPhase::Cancelled => "Cancelled",
        }
    }

    /// Whether a run in this phase is finished.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunPhase::Succeeded | RunPhase::Failed | RunPhase::Cancelled
        )
    }
}

impl std::fmt::Display for RunPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Phase of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum StepPhase {
    /// Not started.
    Pending,
    /// In progress.
    Running,
    /// Done, successfully.
    Succeeded,
    /// Done, unsuccessfully.
    Failed,
    /// Not run (aborted run, or Plan mode for side effects outside the cluster).
    Skipped,
}

/// The journal entry of one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// Step name.
    pub name: String,
    /// Pending, Running, Succeeded, Failed or Skipped.
    pub phase: StepPhase,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: i32,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the step finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What happened, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why the step ended as it did, in PascalCase: e.g. `ConditionFalse` for a step whose
    /// `when` was false, `InvalidSpec`, `TimedOut`, `MetricFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The step's `when` and its value when the step came up, e.g.
    /// `steps.verify.phase == 'Failed' = false`; in Plan mode, or `unknown` and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The object acted on, e.g. `Deployment/app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Recorded results, e.g. previousReplicas, jobName, httpStatus.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

impl StepStatus {
    /// When the current attempt started, as recorded in the journal.
    pub fn attempt_start(&self) -> Option<jiff::Timestamp> {
        self.outputs
            .get("attemptStartedAt")
            .and_then(|t| t.parse().ok())
    }

    /// When a scheduled retry is due, as recorded in the journal.
    pub fn retry_at(&self) -> Option<jiff::Timestamp> {
        self.outputs.get("retryAt").and_then(|t| t.parse().ok())
    }
}

/// Longest value of one journal output, in bytes (a recorded intent such as the pods to
/// delete is longer than a message, but still bounded).
pub const MAX_OUTPUT_TEXT: usize = 32 * 1024;

impl RunbookRunStatus {
    /// This status with every text cut to its cap (with a marker): step messages and targets
    /// at [`crate::names::MAX_STATUS_TEXT`], outputs at [`MAX_OUTPUT_TEXT`], condition
    /// messages at [`crate::names::MAX_STATUS_TEXT`]. Cutting twice changes nothing, so a
    /// status read back compares equal to the one written.
    pub fn bounded(&self) -> std::borrow::Cow<'_, Self> {
        use crate::names::{MAX_STATUS_TEXT, truncate};
        let long = |text: &str, max: usize| text.len() > max;
        let needs = self.steps.iter().any(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| long(m, MAX_STATUS_TEXT))
                || e.target
                    .as_deref()
                    .is_some_and(|t| long(t, MAX_STATUS_TEXT))
                || e.outputs.values().any(|v| long(v, MAX_OUTPUT_TEXT))
        }) || self
            .conditions
            .iter()
            .any(|c| long(&c.message, MAX_STATUS_TEXT));
        if !needs {
            return std::borrow::Cow::Borrowed(self);
        }
        let cut = |text: &mut String, max: usize| {
            if let std::borrow::Cow::Owned(short) = truncate(text, max) {
                *text = short;
            }
        };
        let mut status = self.clone();
        for entry in &mut status.steps {
            if let Some(message) = entry.message.as_mut() {
                cut(message, MAX_STATUS_TEXT);
            }
            if let Some(target) = entry.target.as_mut() {
                cut(target, MAX_STATUS_TEXT);
            }
            for value in entry.outputs.values_mut() {
                cut(value, MAX_OUTPUT_TEXT);
            }
        }
        for condition in &mut status.conditions {
            cut(&mut condition.message, MAX_STATUS_TEXT);
        }
        std::borrow::Cow::Owned(status)
    }
}

/// Observed state of a RunbookRun.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookRunStatus {
    /// Pending, WaitingForWindow, Running, WaitingForApproval, Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the run started executing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The ServiceAccount (of the run's namespace) whose rights the run's steps use, taken
    /// from the Runbook's `serviceAccountName`, or the operator's default ServiceAccount, when
    /// the run started: editing the Runbook later does not change a running run's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The Runbook's generation when the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_generation: Option<i64>,
    /// The run's parameter values as checked when it started (run values over the Runbook's
    /// defaults), with their types: what `{{ params.NAME }}` became and what `when` reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::runbook::MAX_PARAMS))]
    pub resolved_params: Vec<ResolvedParam>,
    /// The Runbook's steps as they were when the run started, parameters resolved; later
    /// edits of the Runbook do not change a running run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::step::MAX_STEPS))]
    pub resolved_steps: Vec<Step>,
    /// The Runbook's finally steps as they were when the run started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::step::MAX_STEPS))]
    pub resolved_finally: Vec<Step>,
    /// The step in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// The lock of the Runbook's `spec.concurrency`, recorded when the run first asks for it:
    /// the key it waits for, holds, or held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<RunLock>,
    /// When a cancel (the `ops.runbook.dev/cancel` annotation, or deletion) was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_at: Option<Time>,
    /// The journal: one entry per step, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepStatus>,
    /// Ready, Reconciling, Stalled and Succeeded (Unknown while running, then True or False).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One parameter of a run, as resolved when it started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedParam {
    /// The parameter's name.
    pub name: String,
    /// string, integer, boolean or duration.
    #[serde(rename = "type")]
    pub type_: crate::params::ParamType,
    /// The value, as text (canonical for its type: `04` is recorded as `4`).
    #[schemars(length(max = crate::runbook::MAX_PARAM_VALUE))]
    pub value: String,
}

/// The lock a run asks for (`status.concurrency`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLock {
    /// The Runbook's `spec.concurrency.key` with the run's parameters substituted.
    pub key: String,
    /// Queue or Skip, from the Runbook when the run asked.
    pub policy: crate::runbook::LockPolicy,
    /// The `coordination.k8s.io` Lease (this namespace) that is the lock: its
    /// `spec.holderIdentity` is the uid of the run holding it.
    pub lease: String,
    /// Set once the run holds the lock: the Lease's resourceVersion written when it took it.
    /// Releasing deletes the Lease only if it is still that version, so a run never releases
    /// a lock another run has taken over since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_version: Option<String>,
}

/// Schema of `spec.params`: the bounds of [`crate::runbook::MAX_PARAMS`] and
/// [`crate::runbook::MAX_PARAM_VALUE`].
fn params_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": crate::runbook::MAX_PARAMS,
        "additionalProperties": {"type": "string", "maxLength": crate::runbook::MAX_PARAM_VALUE}
    })
}

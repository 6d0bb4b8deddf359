//! Lifecycle notifications: the `notifications` block of Runbook, MaintenanceWindow,
//! BlueGreenRelease and BackupPolicy.
//!
//! Each kind turns what its status already records into [`Occurrence`]s (a run failed, an
//! approval waits, a window opened, ...). [`plan`] decides, purely from those occurrences, the
//! record of what was sent (kept in the object's status) and the clock, which messages are due
//! now, which escalations are due, what the record becomes and when to look again. The
//! controller writes the new record to the status first and sends afterwards ([`send`]), so a
//! restarted or second operator finds the record and never sends the same message twice.

mod decide;
pub mod send;
mod template;

#[cfg(test)]
mod tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

pub use crate::notify::Sink;
pub use decide::{
    Occurrence, Outgoing, Plan, STALE_AFTER, ack_command, from_condition, plan, problems,
};
pub use template::render;

/// Most notification rules an object declares.
pub const MAX_RULES: u32 = 16;
/// Most escalation levels a rule declares.
pub const MAX_ESCALATIONS: u32 = 8;
/// Most entries the status keeps of what was sent; the oldest go first.
pub const MAX_SENT: usize = 64;
/// Longest message template, in bytes.
pub const MAX_MESSAGE: u32 = 4096;

/// A lifecycle event a notification rule can send on.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum LifecycleEvent {
    /// Runbook: a run started executing (phase Running for the first time).
    RunStarted,
    /// Runbook: a run ended in phase Succeeded.
    RunSucceeded,
    /// Runbook: a run ended in phase Failed. Escalates until the run carries the
    /// `ops.runbook.dev/acknowledged` annotation.
    RunFailed,
    /// Runbook: a run waits at an approval step (phase WaitingForApproval). The message holds
    /// `kubectl runbook approve <run> -n <namespace>`. Escalates until the step is approved or
    /// rejected, or the run is acknowledged.
    ApprovalNeeded,
    /// MaintenanceWindow: an occurrence of the window became Active.
    WindowOpened,
    /// MaintenanceWindow: an occurrence of the window closed.
    WindowClosed,
    /// MaintenanceWindow: restoring the values the window changed failed. Escalates until
    /// acknowledged.
    RestoreFailed,
    /// BlueGreenRelease: a revision was promoted (its slot is active).
    Promoted,
    /// BlueGreenRelease: a revision was aborted. Escalates until acknowledged.
    Aborted,
    /// BackupPolicy: the latest backup failed. Escalates until acknowledged.
    BackupFailed,
    /// BackupPolicy: the latest successful backup is older than the policy's RPO.
    /// Escalates until acknowledged.
    RpoViolated,
}

impl LifecycleEvent {
    /// The event's name as written in the spec and the status.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleEvent::RunStarted => "RunStarted",
            LifecycleEvent::RunSucceeded => "RunSucceeded",
            LifecycleEvent::RunFailed => "RunFailed",
            LifecycleEvent::ApprovalNeeded => "ApprovalNeeded",
            LifecycleEvent::WindowOpened => "WindowOpened",
            LifecycleEvent::WindowClosed => "WindowClosed",
            LifecycleEvent::RestoreFailed => "RestoreFailed",
            LifecycleEvent::Promoted => "Promoted",
            LifecycleEvent::Aborted => "Aborted",
            LifecycleEvent::BackupFailed => "BackupFailed",
            LifecycleEvent::RpoViolated => "RpoViolated",
        }
    }
}

impl std::fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification rule: on these events, send this message to this sink, and escalate
/// while the event stays unanswered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The lifecycle events this rule sends on (at least one). Events that do not apply to
    /// the object's kind are reported in the `Stalled` condition. (Not `on`: YAML 1.1, which
    /// kubectl reads, takes a bare `on` key for the boolean `true`.)
    #[schemars(length(min = 1, max = 11))]
    pub events: Vec<LifecycleEvent>,
    /// Where the first message goes: any sink of the notify step (`url`/`urlFrom`, `slack`,
    /// `msteams`, `pagerduty`, `webhook`, `email`), its Secrets read with the object's
    /// identity, sent through the outbound pool and the egress fence. The dedup key
    /// (PagerDuty's `dedup_key`, `{{ dedupKey }}` of a webhook body) is
    /// `<object uid>/<event id>`, the same for every level of one event.
    pub notify: Sink,
    /// The message, a template: `{{ event.name }}`, `{{ event.id }}`, `{{ event.message }}`,
    /// `{{ event.command }}` (the command that answers it, e.g. `kubectl runbook approve
    /// <run> -n <namespace>`), `{{ escalation.level }}` (0 for the first message), and
    /// `{{ object.<path> }}` for any field of the object (`{{ object.metadata.name }}`,
    /// `{{ object.status.phase }}`). Unset: a one-line summary naming the object, the event
    /// and its details. An ApprovalNeeded message always holds the approve command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_MESSAGE))]
    pub message: Option<String>,
    /// Further messages while the event is unanswered: an approval not yet approved or
    /// rejected, a failure without the `ops.runbook.dev/acknowledged` annotation. Each level's
    /// `after` counts from the event, and levels fire in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ESCALATIONS))]
    pub escalate: Vec<Escalation>,
}

/// One escalation level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Escalation {
    /// How long after the event this level fires if the event is still unanswered, e.g.
    /// `15m`.
    pub after: Duration,
    /// Where this level's message goes.
    pub notify: Sink,
    /// This level's message template (same fields as the rule's); unset: the rule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_MESSAGE))]
    pub message: Option<String>,
}

/// One message recorded as sent (recorded before it is sent: a message recorded here is
/// never sent again, even by a restarted or second operator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentNotification {
    /// The event occurrence, e.g. `RunFailed/nightly-x7k2` or
    /// `ApprovalNeeded/nightly-x7k2/confirm`; the value the `ops.runbook.dev/acknowledged`
    /// annotation takes on a MaintenanceWindow, BlueGreenRelease or BackupPolicy.
    pub event_id: String,
    /// The event.
    pub event: LifecycleEvent,
    /// Index of the rule in `spec.notifications`.
    pub rule: i32,
    /// 0 for the rule's own message, n for `escalate[n-1]`.
    pub level: i32,
    /// When it was recorded and handed to the sender.
    pub sent_at: Time,
}

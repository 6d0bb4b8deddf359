//! What each dashboard page shows, as JSON for the page's script: pure functions of the
//! objects the dashboard's watch saw, the user's permissions and the clock.
//!
//! Times are RFC 3339 UTC strings (`jiff::Timestamp` serialised); the page formats them.
//! Every list is sorted so that two builds from the same input are byte-identical.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::backup_policy::BackupPolicy;
use crate::blue_green::BlueGreenRelease;
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook_run::RunbookRun;

/// What the user may do in a namespace, from SelfSubjectAccessReviews; the page shows a
/// button only when the matching flag is true (the API server still decides on the POST).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    /// `patch` and `approve` on runbookruns: Approve and Reject.
    pub approve: bool,
    /// `patch` on runbookruns: Cancel.
    pub cancel: bool,
    /// `create` on runbookruns: Run again.
    pub run: bool,
    /// `patch` on bluegreenreleases: Promote and Abort.
    pub release: bool,
    /// `patch` on backuppolicies: Backup now.
    pub backup: bool,
}

/// One run, as a row of a list.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRow {
    pub name: String,
    /// `spec.runbookRef.name`.
    pub runbook: String,
    /// The run's phase (`Pending` when the controller has not written one yet).
    pub phase: String,
    /// Manual, Schedule, Alert, Window, Release, ... (`spec.trigger.type`).
    pub trigger: String,
    /// Plan mode.
    pub plan: bool,
    /// The step in progress.
    pub current_step: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    pub started: Option<Timestamp>,
    pub finished: Option<Timestamp>,
    /// Steps done (Succeeded, Failed, Skipped) out of all steps (`resolvedSteps` +
    /// `resolvedFinally`, or the journal's length before they are resolved).
    pub steps_done: usize,
    pub steps_total: usize,
    /// The failed step's message, or the Succeeded condition's message when the run failed.
    pub message: Option<String>,
}

/// The approval step a run waits at, with what the approver needs to decide.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub run: RunRow,
    /// The approval step's name.
    pub step: String,
    /// The step's message (what it asks).
    pub message: Option<String>,
    /// Since when it waits (the step's start).
    pub since: Option<Timestamp>,
}

/// A window occurrence that opens soon.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowSoon {
    pub name: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// The window's time zone (IANA name; `UTC` when unset).
    pub time_zone: String,
    /// Start and end in that zone, `YYYY-MM-DD HH:MM` (the page shows them as the window's
    /// owners wrote them).
    pub local_start: String,
    pub local_end: String,
}

/// A release or policy that needs a look, with why.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attention {
    pub name: String,
    /// Its phase.
    pub phase: String,
    /// Why it is listed (the condition's message).
    pub reason: String,
}

/// The Now page: what needs a person.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Now {
    /// Runs waiting for approval, oldest first.
    pub waiting: Vec<Waiting>,
    /// Runs that failed in the last 24 h, newest first.
    pub failed: Vec<RunRow>,
    /// Window occurrences starting in the next 24 h (or open now), soonest first.
    pub windows: Vec<WindowSoon>,
    /// Releases whose phase is Degraded (or Stalled/Degraded condition True).
    pub releases: Vec<Attention>,
    /// Policies whose BackupFresh condition is False (out of RPO).
    pub backups: Vec<Attention>,
    pub permissions: Permissions,
}

/// Filters of the Runs page (empty: any).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFilter {
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub trigger: Option<String>,
}

/// The Runs page.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Runs {
    /// Matching runs, newest first (creation time, then name).
    pub runs: Vec<RunRow>,
    /// How many runs the namespace has, before filtering.
    pub total: usize,
    /// The values each filter can take in this namespace, sorted.
    pub runbooks: Vec<String>,
    pub phases: Vec<String>,
    pub triggers: Vec<String>,
}

/// One journal entry on the run's timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineStep {
    pub name: String,
    /// The step's action (`http`, `scale`, `approval`, ...), `?` if not resolved.
    pub action: String,
    /// Whether it is a `finally` step.
    pub finally: bool,
    /// Pending, Running, WaitingForApproval, Succeeded, Failed, Skipped, ...
    pub phase: String,
    pub attempts: i32,
    pub started: Option<Timestamp>,
    pub finished: Option<Timestamp>,
    /// Bar geometry on the run's time axis, in percent of the axis (0..=100): where the bar
    /// starts and how wide it is (at least 0.5 so an instant step stays visible). Absent
    /// for a step that never started.
    pub offset_pct: Option<f64>,
    pub width_pct: Option<f64>,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The `when` condition, when the step has one.
    pub condition: Option<String>,
    pub target: Option<String>,
    pub outputs: BTreeMap<String, String>,
}

/// One Event about an object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    pub time: Option<Timestamp>,
    /// Normal or Warning.
    pub kind: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
}

/// What the run's buttons may do now (state allows it and the user is permitted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunActions {
    pub approve: bool,
    pub reject: bool,
    pub cancel: bool,
    pub rerun: bool,
}

/// A run's page.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    pub run: RunRow,
    /// The resolved parameters, name → value.
    pub params: BTreeMap<String, String>,
    /// The time axis: the run's start (or creation) to its finish (or `now`).
    pub axis_start: Option<Timestamp>,
    pub axis_end: Option<Timestamp>,
    /// Journal entries, then steps not reached yet (phase Pending, no bar), in step order.
    pub steps: Vec<TimelineStep>,
    /// The approval step the run waits at.
    pub waiting_step: Option<String>,
    /// Newest first.
    pub events: Vec<EventRow>,
    pub actions: RunActions,
    /// `status.conditions`, for the person who wants them: type, status, reason, message.
    pub conditions: Vec<ConditionRow>,
}

/// A condition, flattened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition: Option<Timestamp>,
}

/// One slot of a release.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotView {
    /// blue or green.
    pub slot: String,
    /// The slot's Deployment.
    pub deployment: String,
    /// The revision the slot's Deployment holds (absent: no Deployment yet).
    pub revision: Option<String>,
    pub replicas: i32,
    pub ready: i32,
    /// Which of the release's Services select this slot now: "active", "preview".
    pub selected_by: Vec<String>,
}

/// One past release.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseHistoryRow {
    pub revision: String,
    pub result: String,
    pub at: Option<Timestamp>,
    pub message: Option<String>,
}

/// A release's card on the Releases page.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    pub name: String,
    pub phase: String,
    /// The active and preview Services' names.
    pub active_service: String,
    pub preview_service: Option<String>,
    pub active_slot: Option<String>,
    pub preview_slot: Option<String>,
    pub active_revision: Option<String>,
    pub desired_revision: Option<String>,
    /// Blue then green.
    pub slots: Vec<SlotView>,
    /// The validation run's name and its journal, as timeline rows (no bar geometry needed).
    pub validation: Vec<TimelineStep>,
    pub history: Vec<ReleaseHistoryRow>,
    pub conditions: Vec<ConditionRow>,
    /// The revision Promote and Abort are bound to (the current one), and whether they are
    /// possible now and permitted.
    pub revision: Option<String>,
    pub can_promote: bool,
    pub can_abort: bool,
}

/// One backup in a policy's history.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRow {
    pub job: String,
    /// Pending, Running, Succeeded, Failed, Verified, ... (the record's result).
    pub result: String,
    pub started: Option<Timestamp>,
    pub finished: Option<Timestamp>,
    pub trigger: Option<String>,
}

/// A policy's card on the Backups page.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub name: String,
    pub phase: String,
    /// The RPO, as written (e.g. `24h`), and in seconds.
    pub rpo: Option<String>,
    pub rpo_seconds: Option<i64>,
    /// The newest verified (or, without verify, successful) backup the RPO counts from.
    pub last_good: Option<Timestamp>,
    /// Seconds since `last_good` at `now`.
    pub age_seconds: Option<i64>,
    /// `age / rpo`, for the bar (1.0 = at the RPO; may exceed 1).
    pub rpo_fraction: Option<f64>,
    /// The BackupFresh condition: true, false, or absent when unknown.
    pub fresh: Option<bool>,
    pub next_schedule: Option<Timestamp>,
    pub history: Vec<BackupRow>,
    pub conditions: Vec<ConditionRow>,
    pub can_backup_now: bool,
}

/// The Now page from the namespace's objects.
pub fn now(
    runs: &[RunbookRun],
    windows: &[MaintenanceWindow],
    releases: &[BlueGreenRelease],
    policies: &[BackupPolicy],
    permissions: Permissions,
    now: Timestamp,
) -> Now {
    let _ = (runs, windows, releases, policies, permissions, now);
    unimplemented!("contract: built by the view module")
}

/// The Runs page.
pub fn runs(runs: &[RunbookRun], filter: &RunFilter) -> Runs {
    let _ = (runs, filter);
    unimplemented!("contract: built by the view module")
}

/// A run's page. `events` are the Events whose regarding object is the run.
pub fn run_detail(
    run: &RunbookRun,
    events: &[k8s_openapi::api::events::v1::Event],
    permissions: Permissions,
    now: Timestamp,
) -> RunDetail {
    let _ = (run, events, permissions, now);
    unimplemented!("contract: built by the view module")
}

/// A release's card; `deployments` and `services` are the namespace's objects the release
/// names (its two slot Deployments, its active and preview Services), as read.
pub fn release(
    release: &BlueGreenRelease,
    deployments: &[k8s_openapi::api::apps::v1::Deployment],
    services: &[k8s_openapi::api::core::v1::Service],
    permissions: Permissions,
) -> ReleaseView {
    let _ = (release, deployments, services, permissions);
    unimplemented!("contract: built by the view module")
}

/// A policy's card.
pub fn policy(policy: &BackupPolicy, permissions: Permissions, now: Timestamp) -> PolicyView {
    let _ = (policy, permissions, now);
    unimplemented!("contract: built by the view module")
}

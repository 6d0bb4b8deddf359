//! What each dashboard page shows, as JSON for the page's script: pure functions of the
//! objects the dashboard's watch saw, the user's permissions and the clock.
//!
//! Times are RFC 3339 UTC strings (`jiff::Timestamp` serialised); the page formats them.
//! Every list is sorted so that two builds from the same input are byte-identical.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::Serialize;

use crate::backup_policy::status::BACKUP_FRESH;
use crate::backup_policy::{BackupPolicy, BackupRecord, BackupResult, BackupStage};
use crate::blue_green::observe::{
    Slot, SlotView as ObservedSlot, selector_slot, services_named, slot_deployment_name, slot_label,
};
use crate::blue_green::status as bg_status;
use crate::blue_green::{BlueGreenRelease, Phase as BgPhase};
use crate::conditions::STALLED;
use crate::maintenance_window::decide::occurrences::WindowSettings;
use crate::maintenance_window::{MaintenanceWindow, WindowPhase};
use crate::plugin::{
    ReleaseRequest, check_answer, check_cancel, release_request, release_revision,
};
use crate::runbook_run::status::SUCCEEDED;
use crate::runbook_run::{RunMode, RunPhase, RunbookRun, StepPhase, StepStatus};
use crate::schedule::parse_time_zone;
use crate::time::{add, sub};

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
    /// Kinds the page could not read (e.g. the user may not list BlueGreenReleases here),
    /// each with why; their sections are empty for that reason, not because all is well.
    pub unavailable: Vec<String>,
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
    let mut waiting: Vec<Waiting> = runs.iter().filter_map(waiting_of).collect();
    waiting.sort_by(|a, b| (a.since, &a.run.name).cmp(&(b.since, &b.run.name)));
    let day_ago = sub(now, DAY);
    let mut failed: Vec<RunRow> = runs
        .iter()
        .filter(|run| phase_of(run) == RunPhase::Failed)
        .map(run_row)
        .filter(|row| {
            row.finished
                .or(row.created)
                .is_some_and(|t| day_ago <= t && t <= now)
        })
        .collect();
    failed.sort_by(|a, b| {
        (b.finished.or(b.created), &a.name).cmp(&(a.finished.or(a.created), &b.name))
    });
    let mut soon: Vec<WindowSoon> = windows.iter().filter_map(|w| window_soon(w, now)).collect();
    soon.sort_by(|a, b| (a.start, &a.name).cmp(&(b.start, &b.name)));
    let mut degraded: Vec<Attention> = releases.iter().filter_map(release_attention).collect();
    degraded.sort_by(|a, b| a.name.cmp(&b.name));
    let mut stale: Vec<Attention> = policies.iter().filter_map(policy_attention).collect();
    stale.sort_by(|a, b| a.name.cmp(&b.name));
    Now {
        waiting,
        failed,
        windows: soon,
        releases: degraded,
        backups: stale,
        permissions,
        unavailable: Vec::new(),
    }
}

/// How far the Now page looks back for failed runs and ahead for windows.
const DAY: SignedDuration = SignedDuration::from_hours(24);

fn phase_of(run: &RunbookRun) -> RunPhase {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(RunPhase::Pending)
}

/// The approval step the run waits at now, if any.
fn waiting_step(run: &RunbookRun) -> Option<String> {
    if phase_of(run) != RunPhase::WaitingForApproval {
        return None;
    }
    run.status.as_ref()?.current_step.clone()
}

fn waiting_of(run: &RunbookRun) -> Option<Waiting> {
    let step = waiting_step(run)?;
    let entry = run
        .status
        .as_ref()
        .and_then(|s| s.steps.iter().find(|e| e.name == step));
    let message = entry.and_then(|e| e.message.clone()).or_else(|| {
        resolved(run)
            .find(|(s, _)| s.name == step)
            .and_then(|(s, _)| s.approval.as_ref())
            .map(|a| a.message.clone())
    });
    Some(Waiting {
        run: run_row(run),
        since: entry.and_then(|e| e.start_time.as_ref()).map(|t| t.0),
        step,
        message,
    })
}

/// The run's resolved steps, each with whether it is a `finally` step.
fn resolved(run: &RunbookRun) -> impl Iterator<Item = (&crate::step::Step, bool)> {
    let status = run.status.as_ref();
    let steps = status
        .map(|s| s.resolved_steps.as_slice())
        .unwrap_or_default();
    let finally = status
        .map(|s| s.resolved_finally.as_slice())
        .unwrap_or_default();
    steps
        .iter()
        .map(|s| (s, false))
        .chain(finally.iter().map(|s| (s, true)))
}

fn run_row(run: &RunbookRun) -> RunRow {
    let status = run.status.as_ref();
    let phase = phase_of(run);
    let journal = status.map(|s| s.steps.as_slice()).unwrap_or_default();
    let resolved_count = resolved(run).count();
    let message = (phase == RunPhase::Failed)
        .then(|| {
            journal
                .iter()
                .find(|e| e.phase == StepPhase::Failed)
                .and_then(|e| e.message.clone())
                .or_else(|| {
                    status?
                        .conditions
                        .iter()
                        .find(|c| c.type_ == SUCCEEDED && !c.message.is_empty())
                        .map(|c| c.message.clone())
                })
        })
        .flatten();
    RunRow {
        name: run.name_any(),
        runbook: run.spec.runbook_ref.name.clone(),
        phase: phase.as_str().to_owned(),
        trigger: trigger_of(run),
        plan: run.spec.mode == Some(RunMode::Plan),
        current_step: status.and_then(|s| s.current_step.clone()),
        created: run.metadata.creation_timestamp.as_ref().map(|t| t.0),
        started: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        finished: status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0),
        steps_done: journal
            .iter()
            .filter(|e| {
                matches!(
                    e.phase,
                    StepPhase::Succeeded | StepPhase::Failed | StepPhase::Skipped
                )
            })
            .count(),
        steps_total: if resolved_count == 0 {
            journal.len()
        } else {
            resolved_count
        },
        message,
    }
}

/// `spec.trigger.type` as written (`Manual` when unset).
fn trigger_of(run: &RunbookRun) -> String {
    serde_json::to_value(
        run.spec
            .trigger
            .as_ref()
            .map(|t| t.type_)
            .unwrap_or_default(),
    )
    .ok()
    .and_then(|v| v.as_str().map(str::to_owned))
    .unwrap_or_else(|| "Manual".to_owned())
}

/// The window's occurrence open now, or else its next one when it starts within a day.
fn window_soon(window: &MaintenanceWindow, now: Timestamp) -> Option<WindowSoon> {
    let phase = WindowPhase::from_status(window.status.as_ref().and_then(|s| s.phase));
    let settings = WindowSettings::from_spec(&window.spec).ok()?;
    if settings.suspended || phase == WindowPhase::Invalid {
        return None;
    }
    let occurrence = settings
        .current(now)
        .or_else(|| settings.next(now).filter(|o| o.start <= add(now, DAY)))?;
    let zone_name = window
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.time_zone.clone())
        .filter(|z| !z.is_empty())
        .unwrap_or_else(|| "UTC".to_owned());
    let zone = parse_time_zone(&zone_name).ok()?;
    let local = |t: Timestamp| {
        t.to_zoned(zone.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    };
    Some(WindowSoon {
        name: window.name_any(),
        start: occurrence.start,
        end: occurrence.end,
        local_start: local(occurrence.start),
        local_end: local(occurrence.end),
        time_zone: zone_name,
    })
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A release that needs a look: phase Degraded, or its Degraded or Stalled condition True.
fn release_attention(release: &BlueGreenRelease) -> Option<Attention> {
    let status = release.status.as_ref()?;
    let degraded =
        condition(&status.conditions, bg_status::DEGRADED).filter(|c| c.status == "True");
    let stalled = condition(&status.conditions, STALLED).filter(|c| c.status == "True");
    if status.phase != Some(BgPhase::Degraded) && degraded.is_none() && stalled.is_none() {
        return None;
    }
    let reason = degraded
        .or(stalled)
        .map(|c| c.message.clone())
        .unwrap_or_else(|| "the release is Degraded".to_owned());
    Some(Attention {
        name: release.name_any(),
        phase: status.phase.map_or("Unknown", |p| p.as_str()).to_owned(),
        reason,
    })
}

/// A policy out of its RPO: BackupFresh False.
fn policy_attention(policy: &BackupPolicy) -> Option<Attention> {
    let status = policy.status.as_ref()?;
    let fresh = condition(&status.conditions, BACKUP_FRESH).filter(|c| c.status == "False")?;
    Some(Attention {
        name: policy.name_any(),
        phase: policy_phase(policy),
        reason: fresh.message.clone(),
    })
}

fn policy_phase(policy: &BackupPolicy) -> String {
    policy
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or_else(|| "Unknown".to_owned(), |p| format!("{p:?}"))
}

/// The Runs page.
pub fn runs(runs: &[RunbookRun], filter: &RunFilter) -> Runs {
    let rows: Vec<RunRow> = runs.iter().map(run_row).collect();
    let values = |pick: fn(&RunRow) -> &String| -> Vec<String> {
        let set: std::collections::BTreeSet<&String> = rows.iter().map(pick).collect();
        set.into_iter().cloned().collect()
    };
    let (runbooks, phases, triggers) = (
        values(|r| &r.runbook),
        values(|r| &r.phase),
        values(|r| &r.trigger),
    );
    let wanted = |want: &Option<String>, have: &str| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| w == have)
    };
    let total = rows.len();
    let mut matching: Vec<RunRow> = rows
        .into_iter()
        .filter(|r| {
            wanted(&filter.runbook, &r.runbook)
                && wanted(&filter.phase, &r.phase)
                && wanted(&filter.trigger, &r.trigger)
        })
        .collect();
    matching.sort_by(|a, b| (b.created, &a.name).cmp(&(a.created, &b.name)));
    Runs {
        runs: matching,
        total,
        runbooks,
        phases,
        triggers,
    }
}

/// A run's page. `events` are the Events whose regarding object is the run.
pub fn run_detail(
    run: &RunbookRun,
    events: &[k8s_openapi::api::events::v1::Event],
    permissions: Permissions,
    now: Timestamp,
) -> RunDetail {
    let row = run_row(run);
    let status = run.status.clone().unwrap_or_default();
    let axis_start = row.started.or(row.created);
    let axis_end = axis_start.map(|start| row.finished.unwrap_or(now).max(start));
    let waiting = waiting_step(run);
    let mut steps: Vec<TimelineStep> = status
        .steps
        .iter()
        .map(|entry| {
            let mut step = timeline_step(run, entry, waiting.as_deref());
            if let (Some(from), Some(to), Some(started)) = (axis_start, axis_end, step.started) {
                let end = step.finished.unwrap_or(now).min(to).max(started);
                let (offset, width) = bar(from, to, started, end);
                step.offset_pct = Some(offset);
                step.width_pct = Some(width);
            }
            step
        })
        .collect();
    for (resolved_step, finally) in resolved(run) {
        if status.steps.iter().any(|e| e.name == resolved_step.name) {
            continue;
        }
        steps.push(TimelineStep {
            name: resolved_step.name.clone(),
            action: resolved_step.action_name().unwrap_or("?").to_owned(),
            finally,
            phase: "Pending".to_owned(),
            attempts: 0,
            started: None,
            finished: None,
            offset_pct: None,
            width_pct: None,
            reason: None,
            message: None,
            condition: resolved_step.when.clone(),
            target: None,
            outputs: BTreeMap::new(),
        });
    }
    let params = if status.resolved_params.is_empty() {
        run.spec.params.clone()
    } else {
        status
            .resolved_params
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect()
    };
    let answer = |verb: &str| {
        waiting
            .as_deref()
            .is_some_and(|step| check_answer(run, step, verb).is_ok())
    };
    let actions = RunActions {
        approve: permissions.approve && answer("approve"),
        reject: permissions.approve && answer("reject"),
        cancel: permissions.cancel && check_cancel(run).is_ok(),
        rerun: permissions.run,
    };
    let mut rows: Vec<(Option<Timestamp>, String, EventRow)> = events
        .iter()
        .map(|e| {
            (
                crate::events::last_seen(e),
                e.metadata.name.clone().unwrap_or_default(),
                event_row(e),
            )
        })
        .collect();
    rows.sort_by(|a, b| (b.0, &a.1).cmp(&(a.0, &b.1)));
    RunDetail {
        run: row,
        params,
        axis_start,
        axis_end,
        steps,
        waiting_step: waiting,
        events: rows.into_iter().map(|(_, _, row)| row).collect(),
        actions,
        conditions: condition_rows(&status.conditions),
    }
}

/// A journal entry as a timeline row (no bar yet).
fn timeline_step(run: &RunbookRun, entry: &StepStatus, waiting: Option<&str>) -> TimelineStep {
    let found = resolved(run).find(|(s, _)| s.name == entry.name);
    let phase = if waiting == Some(entry.name.as_str()) && entry.phase == StepPhase::Running {
        RunPhase::WaitingForApproval.as_str().to_owned()
    } else {
        format!("{:?}", entry.phase)
    };
    TimelineStep {
        name: entry.name.clone(),
        action: found
            .and_then(|(s, _)| s.action_name())
            .unwrap_or("?")
            .to_owned(),
        finally: found.is_some_and(|(_, finally)| finally),
        phase,
        attempts: entry.attempts,
        started: entry.start_time.as_ref().map(|t| t.0),
        finished: entry.completion_time.as_ref().map(|t| t.0),
        offset_pct: None,
        width_pct: None,
        reason: entry.reason.clone(),
        message: entry.message.clone(),
        condition: entry
            .condition
            .clone()
            .or_else(|| found.and_then(|(s, _)| s.when.clone())),
        target: entry.target.clone(),
        outputs: entry
            .outputs
            .iter()
            .filter(|(k, _)| !crate::plugin::HIDDEN_OUTPUTS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The smallest bar width, in percent, so an instant step stays visible.
pub const MIN_BAR_PCT: f64 = 0.5;

/// Where a bar from `start` to `end` sits on the axis `from..to`, in percent (two decimals):
/// offset and width, the width at least [`MIN_BAR_PCT`] and the bar inside the axis.
fn bar(from: Timestamp, to: Timestamp, start: Timestamp, end: Timestamp) -> (f64, f64) {
    let total = to.duration_since(from).as_secs_f64();
    if total <= 0.0 {
        return (0.0, 100.0);
    }
    let pct =
        |t: Timestamp| (t.duration_since(from).as_secs_f64() / total * 100.0).clamp(0.0, 100.0);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let offset = pct(start).min(100.0 - MIN_BAR_PCT);
    let width = (pct(end) - pct(start)).max(MIN_BAR_PCT).min(100.0 - offset);
    (round(offset), round(width))
}

fn event_row(event: &k8s_openapi::api::events::v1::Event) -> EventRow {
    EventRow {
        time: crate::events::last_seen(event),
        kind: event.type_.clone().unwrap_or_else(|| "Normal".to_owned()),
        reason: event.reason.clone().unwrap_or_default(),
        message: event.note.clone().unwrap_or_default(),
        count: event
            .series
            .as_ref()
            .map(|s| s.count)
            .or(event.deprecated_count)
            .unwrap_or(1),
    }
}

fn condition_rows(conditions: &[Condition]) -> Vec<ConditionRow> {
    conditions
        .iter()
        .map(|c| ConditionRow {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition: Some(c.last_transition_time.0),
        })
        .collect()
}

/// A release's card; `deployments` and `services` are the namespace's objects the release
/// names (its two slot Deployments, its active and preview Services), as read.
pub fn release(
    release: &BlueGreenRelease,
    deployments: &[k8s_openapi::api::apps::v1::Deployment],
    services: &[k8s_openapi::api::core::v1::Service],
    permissions: Permissions,
) -> ReleaseView {
    let name = release.name_any();
    let status = release.status.clone().unwrap_or_default();
    let key = slot_label(&release.spec);
    // Which slot each named Service selects now, as "active"/"preview".
    let selecting: Vec<(&str, Option<Slot>)> = services_named(release)
        .map(|(field, service)| {
            let role = if field.ends_with("preview") {
                "preview"
            } else {
                "active"
            };
            let selects = services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(service))
                .and_then(|s| selector_slot(s.spec.as_ref()?.selector.as_ref(), key));
            (role, selects)
        })
        .collect();
    let slots = Slot::ALL
        .iter()
        .map(|slot| {
            let deployment = slot_deployment_name(&name, *slot);
            let seen = ObservedSlot::observe(
                deployments
                    .iter()
                    .find(|d| d.metadata.name.as_deref() == Some(deployment.as_str())),
            );
            SlotView {
                slot: slot.as_str().to_owned(),
                deployment,
                revision: seen.revision,
                replicas: seen.spec_replicas,
                ready: seen.ready_replicas,
                selected_by: selecting
                    .iter()
                    .filter(|(_, s)| *s == Some(*slot))
                    .map(|(role, _)| (*role).to_owned())
                    .collect(),
            }
        })
        .collect();
    let strategy = release.spec.strategy.as_ref();
    let validation_steps: Vec<&crate::step::Step> = strategy
        .map(|s| s.pre_promotion.iter().chain(&s.post_promotion).collect())
        .unwrap_or_default();
    let validation = status
        .validation
        .iter()
        .map(|entry| TimelineStep {
            name: entry.name.clone(),
            action: validation_steps
                .iter()
                .find(|s| s.name == entry.name)
                .and_then(|s| s.action_name())
                .unwrap_or("?")
                .to_owned(),
            finally: false,
            phase: format!("{:?}", entry.phase),
            attempts: entry.attempts,
            started: entry.start_time.as_ref().map(|t| t.0),
            finished: entry.completion_time.as_ref().map(|t| t.0),
            offset_pct: None,
            width_pct: None,
            reason: entry.reason.clone(),
            message: entry.message.clone(),
            condition: entry.condition.clone(),
            target: entry.target.clone(),
            outputs: entry.outputs.clone(),
        })
        .collect();
    let history = status
        .history
        .iter()
        .map(|r| ReleaseHistoryRow {
            revision: r.revision.clone(),
            result: r.result.clone().unwrap_or_else(|| "InProgress".to_owned()),
            at: r
                .completion_time
                .as_ref()
                .or(r.start_time.as_ref())
                .map(|t| t.0),
            message: (!r.images.is_empty()).then(|| r.images.join(", ")),
        })
        .collect();
    let possible = |request| release_request(release, request, None).is_ok();
    ReleaseView {
        phase: status.phase.map_or("Unknown", |p| p.as_str()).to_owned(),
        active_service: release
            .spec
            .units()
            .iter()
            .map(|u| u.services.active.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        preview_service: Some(
            release
                .spec
                .units()
                .iter()
                .filter_map(|u| u.services.preview.as_deref())
                .collect::<Vec<_>>()
                .join(", "),
        )
        .filter(|p| !p.is_empty()),
        active_slot: status.active_slot.clone(),
        preview_slot: status.preview_slot.clone(),
        active_revision: status.active_revision.clone(),
        desired_revision: status.desired_revision.clone(),
        slots,
        validation,
        history,
        conditions: condition_rows(&status.conditions),
        revision: release_revision(release).ok(),
        can_promote: permissions.release && possible(ReleaseRequest::Promote),
        can_abort: permissions.release && possible(ReleaseRequest::Abort),
        name,
    }
}

/// A policy's card.
pub fn policy(policy: &BackupPolicy, permissions: Permissions, now: Timestamp) -> PolicyView {
    let status = policy.status.clone().unwrap_or_default();
    let rpo_seconds = policy
        .spec
        .rpo
        .as_ref()
        .and_then(|r| r.parse_signed().ok())
        .map(|d| d.as_secs());
    // BackupFresh counts from the newest verified backup when verify is set, else the newest
    // successful one: the same reference the controller uses.
    let last_good = if policy.spec.verify.is_some() {
        status.last_verified_time.as_ref()
    } else {
        status.last_successful_time.as_ref()
    }
    .map(|t| t.0);
    let age_seconds = last_good.map(|t| now.duration_since(t).as_secs().max(0));
    let rpo_fraction = match (age_seconds, rpo_seconds) {
        (Some(age), Some(rpo)) if rpo > 0 => Some(age as f64 / rpo as f64),
        _ => None,
    };
    let fresh = condition(&status.conditions, BACKUP_FRESH).and_then(|c| match c.status.as_str() {
        "True" => Some(true),
        "False" => Some(false),
        _ => None,
    });
    let history = status
        .history
        .iter()
        .map(|r| BackupRow {
            job: r.job.clone(),
            result: backup_result(r),
            started: r.start_time.as_ref().map(|t| t.0),
            finished: r.completion_time.as_ref().map(|t| t.0),
            trigger: Some(format!("{:?}", r.trigger)),
        })
        .collect();
    PolicyView {
        name: policy.name_any(),
        phase: policy_phase(policy),
        rpo: policy.spec.rpo.as_ref().map(|r| r.to_string()),
        rpo_seconds,
        last_good,
        age_seconds,
        rpo_fraction,
        fresh,
        next_schedule: status.next_schedule_time.as_ref().map(|t| t.0),
        history,
        conditions: condition_rows(&status.conditions),
        // An Invalid policy creates no Job, so Backup now would only wait.
        can_backup_now: permissions.backup
            && status.phase != Some(crate::backup_policy::BackupPolicyPhase::Invalid),
    }
}

/// A backup's result as a person reads it: the Job's own result, refined by verification
/// (Verified, VerifyFailed, Verifying).
fn backup_result(record: &BackupRecord) -> String {
    match (record.result, record.verified, record.stage) {
        (BackupResult::Succeeded, Some(true), _) => "Verified".to_owned(),
        (BackupResult::Succeeded, Some(false), _) => "VerifyFailed".to_owned(),
        (BackupResult::Succeeded, None, BackupStage::Verify) => "Verifying".to_owned(),
        (result, _, _) => format!("{result:?}"),
    }
}

#[cfg(test)]
mod tests;

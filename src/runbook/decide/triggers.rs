//! What starts runs of a Runbook: the `ops.runbook.dev/run-now` annotation and the schedule;
//! plus the run history (`status.lastRun`, pruning beyond `historyLimits`).
//!
//! Run names are derived from what triggered them (the token, the scheduled minute), so a
//! trigger acted on twice, e.g. after a restart, meets `AlreadyExists` instead of starting a
//! second run.

use crate::well_known::RUN_NOW;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::runbook::types::{LastRun, Runbook, RunbookStatus};
use crate::runbook_run::RunPhase;
use crate::runbook_run::{RunbookRef, RunbookRun, RunbookRunSpec, Trigger, TriggerType};
use crate::schedule::{Schedule, due_decision};
use crate::validation::Note;

/// Event reason: a run-now token started a run.
pub const REASON_RUN_REQUESTED: &str = "RunRequested";
/// Event reason: the schedule started a run.
pub const REASON_SCHEDULED: &str = "Scheduled";
/// Event reason (Warning): a scheduled time passed its startingDeadline before it could run.
pub const REASON_MISSED_SCHEDULE: &str = "MissedSchedule";
/// Event reason (Warning): concurrencyPolicy Forbid skipped a scheduled time.
pub const REASON_SCHEDULE_SKIPPED: &str = "ScheduleSkipped";

/// A run to create, and the Event to publish once it is really created; an existing run of
/// that name means it was created before, and the Event was published then.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The run, named after what triggered it.
    pub run: RunbookRun,
    /// The Normal Event announcing it.
    pub note: Note,
}

// By hand: the generated `RunbookRun` does not derive `PartialEq`; its parts do.
impl PartialEq for NewRun {
    fn eq(&self, other: &Self) -> bool {
        self.run.metadata == other.run.metadata
            && self.run.spec == other.run.spec
            && self.run.status == other.run.status
            && self.note == other.note
    }
}

/// What the Runbook's status records about its triggers and history, so the next decision (by
/// this operator or a restarted one) knows what was already acted on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerRecord {
    /// The last `ops.runbook.dev/run-now` token acted on.
    pub last_handled_run_now: Option<String>,
    /// When the schedule last created (or skipped past its deadline) a run.
    pub last_schedule_time: Option<Time>,
    /// When the schedule will next create a run.
    pub next_schedule_time: Option<Time>,
    /// When the schedule was seen suspended.
    pub suspended_since: Option<Time>,
    /// The most recent run.
    pub last_run: Option<LastRun>,
}

impl TriggerRecord {
    /// The record a stored status holds.
    pub fn stored(status: Option<&RunbookStatus>) -> Self {
        let Some(status) = status else {
            return Self::default();
        };
        Self {
            last_handled_run_now: status.last_handled_run_now.clone(),
            last_schedule_time: status.last_schedule_time.clone(),
            next_schedule_time: status.next_schedule_time.clone(),
            suspended_since: status.suspended_since.clone(),
            last_run: status.last_run.clone(),
        }
    }

    /// Writes the record into `status`.
    pub fn store(&self, status: &mut RunbookStatus) {
        status.last_handled_run_now = self.last_handled_run_now.clone();
        status.last_schedule_time = self.last_schedule_time.clone();
        status.next_schedule_time = self.next_schedule_time.clone();
        status.suspended_since = self.suspended_since.clone();
        status.last_run = self.last_run.clone();
    }
}

/// What the triggers and the history call for now.
#[derive(Debug, Default)]
pub struct Triggers {
    /// Runs to create (idempotent by name).
    pub create: Vec<NewRun>,
    /// Active runs to cancel (concurrencyPolicy Replace).
    pub cancel: Vec<String>,
    /// Finished runs beyond the history limits, oldest first.
    pub prune: Vec<String>,
    /// Events to publish.
    pub events: Vec<Note>,
    /// When to look again for the schedule.
    pub next_check: Option<Timestamp>,
}

/// A stable name for a run-now token.
pub fn run_now_name(runbook: &str, token: &str) -> String {
    bounded(&format!("{runbook}-now-{:08x}", crate::names::fnv32(token)))
}

/// A stable name for a scheduled time: minutes since the epoch, like CronJob's Jobs.
pub fn scheduled_name(runbook: &str, at: Timestamp) -> String {
    bounded(&format!("{runbook}-{}", at.as_second() / 60))
}

fn bounded(name: &str) -> String {
    crate::names::bound(name, crate::names::RUNBOOK_RUN_NAME).into_owned()
}

fn note(reason: &'static str, message: String) -> Note {
    Note {
        type_: EventType::Normal,
        reason,
        message,
    }
}

fn warning(reason: &'static str, message: String) -> Note {
    Note {
        type_: EventType::Warning,
        reason,
        message,
    }
}

fn new_run(rb: &Runbook, name: String, trigger: Trigger) -> RunbookRun {
    new_run_of(rb, name, trigger, BTreeMap::new())
}

/// A run of `rb` named `name`, labelled with the Runbook and owned by it (deleting the
/// Runbook deletes its history), with `params` set.
pub fn new_run_of(
    rb: &Runbook,
    name: String,
    trigger: Trigger,
    params: BTreeMap<String, String>,
) -> RunbookRun {
    let mut run = RunbookRun::new(
        &name,
        RunbookRunSpec {
            runbook_ref: RunbookRef {
                name: rb.name_any(),
            },
            params,
            mode: None,
            trigger: Some(trigger),
        },
    );
    run.metadata.namespace = rb.namespace();
    run.metadata.labels = Some(BTreeMap::from([(
        crate::well_known::RUNBOOK_LABEL.to_owned(),
        crate::names::label_value(&rb.name_any()).into_owned(),
    )]));
    run.metadata.owner_references = rb.metadata.uid.clone().map(|uid| {
        vec![OwnerReference {
            api_version: Runbook::api_version(&()).into_owned(),
            kind: Runbook::kind(&()).into_owned(),
            name: rb.name_any(),
            uid,
            controller: Some(false),
            block_owner_deletion: Some(false),
        }]
    });
    run
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

/// Decides triggers and history for `rb`, given its runs (any order) and `now`; updates
/// `record` (lastHandledRunNow, lastScheduleTime, nextScheduleTime, suspendedSince, lastRun).
pub fn decide_triggers(
    rb: &Runbook,
    runs: &[&RunbookRun],
    record: &mut TriggerRecord,
    now: Timestamp,
) -> Triggers {
    let mut triggers = Triggers::default();
    let name = rb.name_any();

    if let Some(token) = rb.annotations().get(RUN_NOW)
        && record.last_handled_run_now.as_deref() != Some(token.as_str())
    {
        let run_name = run_now_name(&name, token);
        triggers.create.push(NewRun {
            run: new_run(
                rb,
                run_name.clone(),
                Trigger {
                    type_: TriggerType::Manual,
                    scheduled_time: None,
                    source: Some(format!("{RUN_NOW}={token}")),
                    alert: None,
                },
            ),
            note: note(
                REASON_RUN_REQUESTED,
                format!("{RUN_NOW}={token}: started run {run_name}"),
            ),
        });
        record.last_handled_run_now = Some(token.clone());
    }

    match &rb.spec.schedule {
        None => {
            record.next_schedule_time = None;
            record.suspended_since = None;
        }
        Some(schedule) => match Schedule::parse(&schedule.cron, schedule.time_zone.as_deref()) {
            Err(_) => record.next_schedule_time = None,
            Ok(parsed) => {
                let suspended = schedule.suspend == Some(true);
                let mut last = record.last_schedule_time.as_ref().map(|t| t.0);
                if suspended {
                    if record.suspended_since.is_none() {
                        record.suspended_since = Some(time(now));
                    }
                } else if record.suspended_since.take().is_some() {
                    // Resumed now (the spec change that resumed it triggered this
                    // reconcile): times that came due while suspended are not a backlog.
                    last = Some(now);
                }
                let created = rb.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
                let deadline = schedule
                    .starting_deadline
                    .as_ref()
                    .and_then(|d| d.parse().ok());
                let due = due_decision(&parsed, last, created, now, deadline, suspended);
                if let Some(at) = due.skipped_past_deadline {
                    record.last_schedule_time = Some(time(at));
                    triggers.events.push(warning(REASON_MISSED_SCHEDULE, format!(
                        "the run scheduled for {at} was not started: it is past startingDeadline {}",
                        schedule.starting_deadline.as_ref().map(ToString::to_string).unwrap_or_default()
                    )));
                }
                if let Some(at) = due.run {
                    record.last_schedule_time = Some(time(at));
                    let run_name = scheduled_name(&name, at);
                    // The run for this very time may already exist (a decision repeated
                    // from a stale copy): it is not "another run still going".
                    let active: Vec<&&RunbookRun> = runs
                        .iter()
                        .filter(|r| {
                            r.name_any() != run_name
                                && !r
                                    .status
                                    .as_ref()
                                    .and_then(|s| s.phase)
                                    .is_some_and(RunPhase::is_finished)
                        })
                        .collect();
                    let policy = schedule.concurrency_policy.unwrap_or_default();
                    use crate::runbook::types::ConcurrencyPolicy::*;
                    if policy == Forbid && !active.is_empty() {
                        triggers.events.push(warning(REASON_SCHEDULE_SKIPPED, format!(
                            "the run scheduled for {at} was skipped: concurrencyPolicy Forbid and {} is still running",
                            active[0].name_any()
                        )));
                    } else {
                        if policy == Replace {
                            triggers.cancel.extend(active.iter().map(|r| r.name_any()));
                        }
                        triggers.create.push(NewRun {
                            run: new_run(
                                rb,
                                run_name.clone(),
                                Trigger {
                                    type_: TriggerType::Schedule,
                                    scheduled_time: Some(time(at)),
                                    source: Some(format!("schedule {:?}", schedule.cron)),
                                    alert: None,
                                },
                            ),
                            note: note(
                                REASON_SCHEDULED,
                                format!("started run {run_name} for {at}"),
                            ),
                        });
                    }
                }
                record.next_schedule_time = due.next.map(time);
                triggers.next_check = due.next;
            }
        },
    }

    // History: newest first by creation time (name breaks ties, stably).
    let mut ordered: Vec<&&RunbookRun> = runs.iter().collect();
    ordered.sort_by(|a, b| {
        let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
        tb.cmp(&ta).then_with(|| b.name_any().cmp(&a.name_any()))
    });
    record.last_run = ordered.first().map(|r| {
        let s = r.status.clone().unwrap_or_default();
        LastRun {
            name: r.name_any(),
            phase: s.phase.map(|p| p.as_str().to_owned()),
            start_time: s.start_time,
            completion_time: s.completion_time,
        }
    });
    let limits = rb.spec.history_limits.clone();
    let keep_ok = limits
        .as_ref()
        .and_then(|l| l.successful)
        .unwrap_or(10)
        .max(0) as usize;
    let keep_failed = limits.as_ref().and_then(|l| l.failed).unwrap_or(10).max(0) as usize;
    let (mut ok, mut bad) = (0usize, 0usize);
    let mut prune = Vec::new();
    for run in &ordered {
        match run.status.as_ref().and_then(|s| s.phase) {
            Some(RunPhase::Succeeded) => {
                ok += 1;
                if ok > keep_ok {
                    prune.push(run.name_any());
                }
            }
            Some(RunPhase::Failed | RunPhase::Cancelled) => {
                bad += 1;
                if bad > keep_failed {
                    prune.push(run.name_any());
                }
            }
            _ => {}
        }
    }
    prune.reverse();
    triggers.prune = prune;
    triggers
}

//! The pure decisions of a BackupPolicy: which Job to create next, what its status says, which
//! finished Jobs retention removes, which conditions hold and when to look again. Nothing here
//! reads the clock or talks to the API server: [`decide`] gets the stored status, the Jobs that
//! exist and `now`, and returns a [`Decision`] the controller carries out.
//!
//! # How a backup proceeds
//!
//! Every backup is one [`BackupRecord`] in `status.history` (newest first). A scheduled time
//! that comes due starts the backup Job `<policy>-<unix minutes>`; an `ops.runbook.dev/backup-now`
//! token starts `<policy>-now-<hash of the token>`. Both names are deterministic, so a restart
//! that repeats a create meets `AlreadyExists` instead of making a second backup. After the
//! backup Job succeeds, `<job>-verify` runs (if `spec.verify` is set), then `<job>-prune` (if
//! `spec.prune` is set); a failed verification stops there, because pruning after it could delete
//! the last good backup.
//!
//! Never two at once: while any Job of a backup runs, a scheduled time that comes due is kept as
//! one `Pending` record (a newer one replaces it) and a token waits on the annotation.
//!
//! # Create, then record
//!
//! When [`decide`] returns [`Decision::create`], [`Decision::status`] already records that Job.
//! If the process dies after creating it but before writing status, the next call finds the Job
//! without a record and adopts it (rule 1), so no second Job is made.
//!
//! # Rooms
//!
//! [`names`] (Job names), [`jobs`] (the Jobs as decide sees and asks for them), [`spec`] (what
//! is wrong with a spec, and its parsed schedule), `history` (rules 1 and 2), `scheduling`
//! (rules 3 and 4), `retention` (rule 5), `conditions` (rule 6), [`restore`] (rule 7, and which
//! backup a restore takes).

mod conditions;
mod history;
pub mod jobs;
pub mod lifecycle;
pub mod names;
pub mod restore;
mod retention;
mod scheduling;
pub mod spec;
#[cfg(test)]
mod tests;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

pub use jobs::{JobOutcome, NewJob, ObservedJob, Stage, build_job};
pub use names::{
    label_value, on_demand_job_name, prune_job_name, scheduled_job_name, verify_job_name,
};

use super::types::{
    BackupPolicyPhase, BackupPolicySpec, BackupPolicyStatus, BackupRecord, BackupResult,
    BackupStage, BackupTrigger, RestoreRecord,
};
use crate::conditions::Desired;
use crate::schedule::Schedule;
use crate::validation::Note;

/// Successful backup Jobs kept when `spec.retention.successfulJobs` is not set.
pub const DEFAULT_SUCCESSFUL_JOBS: usize = 3;
/// Failed backup Jobs kept when `spec.retention.failedJobs` is not set.
pub const DEFAULT_FAILED_JOBS: usize = 1;
/// Finished records kept in `status.history` (unfinished ones are always kept).
pub const HISTORY_LIMIT: usize = 10;

/// How many missed scheduled times are counted before saying "or more": counting walks
/// backwards one occurrence at a time, so a minutely schedule down for a month must stop early.
const MISSED_CAP: usize = 1_000;
/// Start of a record message for a Job the API server refused; [`decide`] reads it back to give
/// `LastBackupSucceeded` the reason `JobRejected`.
const REJECTED_PREFIX: &str = "the API server rejected Job ";

/// RFC 3339 in UTC with whole seconds, the form of the
/// [`SCHEDULED_TIME_ANNOTATION`](crate::well_known::SCHEDULED_TIME_ANNOTATION), the
/// `BACKUP_SCHEDULED_TIME` env var and instants in messages.
fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Everything [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The policy's name.
    pub policy: &'a str,
    /// The policy's creationTimestamp: nothing scheduled at or before it runs.
    pub created: Timestamp,
    /// The spec.
    pub spec: &'a BackupPolicySpec,
    /// The parsed schedule; `None` when the spec is invalid, and then no Job is created.
    pub schedule: Option<&'a Schedule>,
    /// The status as stored, or as the previous [`decide`] of this reconcile decided it.
    pub status: &'a BackupPolicyStatus,
    /// Every existing Job of the policy (backup, verify and prune).
    pub jobs: &'a [ObservedJob],
    /// The policy's [`BACKUP_NOW`](crate::well_known::BACKUP_NOW) annotation, trimmed; `None`
    /// when absent or empty.
    pub backup_now: Option<&'a str>,
    /// Jobs the API server refused during this reconcile: (name, its message).
    pub rejected: &'a [(String, String)],
    /// The restore Jobs of the policy that exist (Runbook `restore` steps made them), each as
    /// the `lastRestore` record it makes.
    pub restores: &'a [RestoreRecord],
    /// The clock.
    pub now: Timestamp,
}

/// What the controller should do and write: the output of [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status to write, except `conditions` (copied through from the input;
    /// [`status`](crate::backup_policy::status::status) merges [`Decision::conditions`] into
    /// them) and `observedGeneration` (copied through).
    pub status: BackupPolicyStatus,
    /// The one Job to create now, already recorded in [`Decision::status`].
    pub create: Option<NewJob>,
    /// Job names retention removes, oldest backup first; only Jobs that exist.
    pub delete: Vec<String>,
    /// Events to publish, each for a change this call made.
    pub notes: Vec<Note>,
    /// `LastBackupSucceeded`, `BackupFresh` and `ScheduleMeetsRPO`, where they apply.
    pub conditions: Vec<Desired>,
    /// The Job that runs now ([`active_job`] of the decided history), for the `Reconciling`
    /// condition.
    pub running: Option<String>,
    /// The earliest future instant at which a decision changes without any event: the next
    /// scheduled time, or the instant `BackupFresh` turns False.
    pub wake_at: Option<Timestamp>,
}

/// Decides what a BackupPolicy does now; see the [module docs](self). The rules, in order:
///
/// 1. Jobs found without a record are adopted when they must be ours from a create whose status
///    write was lost: still running, newer than `lastScheduleTime`, or answering the current
///    unhandled token.
/// 2. Each record advances from its Jobs: backup -> verify -> prune -> done, creating the next
///    Job when it is missing.
/// 3. A scheduled time that came due starts a backup, or waits as the one `Pending` record while
///    another backup runs; after downtime only the latest runs, and only within
///    `startingDeadline`; times that came due while suspended never run.
/// 4. A new backup-now token starts a backup when nothing runs and no scheduled one waits.
/// 5. Retention deletes older finished Jobs; history keeps the newest ten records and every
///    unfinished one.
/// 6. Phase, conditions and the next wake-up follow from the result.
/// 7. `lastRestore` is the newest restore Job a Runbook's `restore` step ran
///    ([`restore::last_restore`]).
///
/// At most one Job is created per call; calling again with the returned status and that Job
/// among `jobs` creates nothing more and returns the same status.
pub fn decide(inputs: &Inputs) -> Decision {
    let mut work = Work::new(*inputs);
    work.adopt();
    work.advance_records();
    work.status.last_successful_time = work
        .status
        .history
        .iter()
        .filter(|record| record.result == BackupResult::Succeeded)
        .filter_map(|record| record.completion_time.clone())
        .chain(work.status.last_successful_time.clone())
        .max_by_key(|time| time.0);

    let next = inputs
        .schedule
        .and_then(|schedule| work.schedule_backups(schedule));
    work.status.next_schedule_time = next.map(Time);
    if inputs.schedule.is_some() {
        work.backup_now();
    }

    let (last_restore, restored) =
        restore::last_restore(inputs.status.last_restore.as_ref(), inputs.restores);
    work.status.last_restore = last_restore;
    work.notes.extend(restored);

    let delete = work.retention();
    work.trim_history();
    work.status.phase = Some(work.phase());

    let mut wake = Vec::new();
    wake.extend(next);
    let mut conditions = Vec::new();
    conditions.extend(conditions::last_backup_condition(&work.status.history));
    if let Some(rpo) = inputs
        .spec
        .rpo
        .as_ref()
        .and_then(|rpo| rpo.parse().ok())
        .and_then(|rpo| SignedDuration::try_from(rpo).ok())
    {
        let (fresh, flip) = work.freshness(rpo);
        wake.extend(flip);
        conditions.push(fresh);
        if let Some(schedule) = inputs.schedule {
            conditions.push(conditions::schedule_meets_rpo(schedule, rpo, inputs.now));
        }
    }

    let running = active_job(&work.status.history);
    Decision {
        status: work.status,
        create: work.create,
        delete,
        notes: work.notes,
        conditions,
        running,
        wake_at: wake.into_iter().filter(|at| *at > inputs.now).min(),
    }
}

/// The state one [`decide`] call builds up.
struct Work<'a> {
    inputs: Inputs<'a>,
    status: BackupPolicyStatus,
    create: Option<NewJob>,
    notes: Vec<Note>,
}

/// A new record of a backup Job, at the stage `Backup`.
fn new_record(
    job: String,
    trigger: BackupTrigger,
    scheduled_time: Option<Timestamp>,
    request: Option<String>,
    result: BackupResult,
) -> BackupRecord {
    BackupRecord {
        job,
        trigger,
        request,
        scheduled_time: scheduled_time.map(Time),
        start_time: None,
        completion_time: None,
        result,
        stage: BackupStage::Backup,
        verified: None,
        pruned: None,
        message: None,
    }
}

/// The Job that keeps a new backup from starting: a running backup Job, or the verify or prune
/// Job of a successful one. Pending records wait; they do not block.
pub fn active_job(history: &[BackupRecord]) -> Option<String> {
    history
        .iter()
        .find_map(|record| match (record.result, record.stage) {
            (BackupResult::Running, _) => Some(record.job.clone()),
            (BackupResult::Succeeded, BackupStage::Verify) => Some(verify_job_name(&record.job)),
            (BackupResult::Succeeded, BackupStage::Prune) => Some(prune_job_name(&record.job)),
            _ => None,
        })
}

/// "the next is at ..." for messages about skipped times.
fn or_next(next: Option<Timestamp>) -> String {
    next.map_or_else(
        || "there is no next scheduled time".into(),
        |next| format!("the next is at {}", rfc3339(next)),
    )
}

/// A count of missed times, capped at [`MISSED_CAP`] ("1000 or more").
fn count_text(count: usize) -> String {
    if count >= MISSED_CAP {
        format!("{MISSED_CAP} or more")
    } else {
        count.to_string()
    }
}

impl<'a> Work<'a> {
    fn new(inputs: Inputs<'a>) -> Self {
        Self {
            inputs,
            status: inputs.status.clone(),
            create: None,
            notes: Vec::new(),
        }
    }

    fn job(&self, name: &str) -> Option<&'a ObservedJob> {
        self.inputs.jobs.iter().find(|job| job.name == name)
    }

    fn rejection(&self, name: &str) -> Option<&'a str> {
        self.inputs
            .rejected
            .iter()
            .find(|(rejected, _)| rejected == name)
            .map(|(_, message)| message.as_str())
    }

    fn note(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.notes.push(Note {
            type_,
            reason,
            message,
        });
    }

    /// Whether a Job may be created in this call: the spec is valid and none was yet.
    fn can_create(&self) -> bool {
        self.inputs.schedule.is_some() && self.create.is_none()
    }

    fn backup_token(&self) -> Option<&'a str> {
        self.inputs.backup_now.filter(|token| !token.is_empty())
    }

    fn token_unhandled(&self) -> Option<&'a str> {
        self.backup_token()
            .filter(|token| self.status.last_handled_backup_now.as_deref() != Some(*token))
    }

    // --- rule 6 --------------------------------------------------------------------------------

    /// The phase the decided status shows.
    fn phase(&self) -> BackupPolicyPhase {
        if self.inputs.schedule.is_none() {
            BackupPolicyPhase::Invalid
        } else if active_job(&self.status.history).is_some() {
            BackupPolicyPhase::Running
        } else if self.inputs.spec.schedule.suspend == Some(true) {
            BackupPolicyPhase::Suspended
        } else {
            BackupPolicyPhase::Scheduled
        }
    }
}

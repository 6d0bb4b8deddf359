//! The pure decisions of a BackupPolicy: which Job to create next, what its status says, which
//! finished Jobs retention removes, which conditions hold and when to look again. Nothing here
//! reads the clock or talks to the API server: [`decide`] gets the stored status, the Jobs that
//! exist and `now`, and returns a [`Plan`] the controller carries out.
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
//! When [`decide`] returns [`Plan::create`], [`Plan::status`] already records that Job. If the
//! process dies after creating it but before writing status, the next call finds the Job without
//! a record and adopts it (rule 2), so no second Job is made.

use crate::well_known::{
    BACKUP_LABEL, BACKUP_NOW, POLICY_LABEL, SCHEDULED_TIME_ANNOTATION, STAGE_LABEL,
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use kube::runtime::events::EventType;

use super::types::{
    BackupPolicy, BackupPolicySpec, BackupPolicyStatus, BackupRecord, BackupResult, BackupStage,
    BackupTrigger,
};
use crate::conditions::{Desired, Status};
use crate::names::{self, hash8};
use crate::schedule::{self, Schedule};
use crate::validation::Note;

/// Condition: the newest good backup is younger than `spec.rpo`.
pub const BACKUP_FRESH: &str = "BackupFresh";
/// Condition: how the newest finished backup ended.
pub const LAST_BACKUP_SUCCEEDED: &str = "LastBackupSucceeded";
/// Condition: the schedule runs often enough for `spec.rpo` to be met.
pub const SCHEDULE_MEETS_RPO: &str = "ScheduleMeetsRPO";

/// Successful backup Jobs kept when `spec.retention.successfulJobs` is not set.
pub const DEFAULT_SUCCESSFUL_JOBS: usize = 3;
/// Failed backup Jobs kept when `spec.retention.failedJobs` is not set.
pub const DEFAULT_FAILED_JOBS: usize = 1;
/// Finished records kept in `status.history` (unfinished ones are always kept).
pub const HISTORY_LIMIT: usize = 10;

/// Longest backup Job name: leaves room for `-verify` within 63 characters, which the Job
/// controller needs because it copies the Job name into the `job-name` label of its pods.
const MAX_BACKUP_JOB_NAME: usize = 52;
/// How many missed scheduled times are counted before saying "or more": counting walks
/// backwards one occurrence at a time, so a minutely schedule down for a month must stop early.
const MISSED_CAP: usize = 1_000;
/// How many scheduled times [`longest_gap`] looks at, at most.
const GAP_OCCURRENCES: usize = 400;
/// How far ahead [`longest_gap`] looks: a year and a day, so every daylight-saving transition
/// of the zone is crossed once.
const GAP_HORIZON: SignedDuration = SignedDuration::from_hours(24 * 366);
/// Start of a record message for a Job the API server refused; [`decide`] reads it back to give
/// `LastBackupSucceeded` the reason `JobRejected`.
const REJECTED_PREFIX: &str = "the API server rejected Job ";

// --- names -----------------------------------------------------------------------------------

/// The value of [`POLICY_LABEL`] for a policy: the name itself when it fits a label (63
/// characters), otherwise its first 54 characters and a hash of the whole name, so two long
/// names with the same beginning still differ.
pub fn label_value(policy: &str) -> String {
    names::bound(policy, names::POLICY_LABEL_VALUE).into_owned()
}

/// `<policy><suffix>`, with the policy name shortened and hashed when the whole would be longer
/// than [`MAX_BACKUP_JOB_NAME`].
fn backup_job_name(policy: &str, suffix: &str) -> String {
    names::bound_with_suffix(policy, suffix, MAX_BACKUP_JOB_NAME)
}

/// The backup Job for the scheduled time `at`: `<policy>-<minutes since the Unix epoch>`, at
/// most 52 characters. The same time always gives the same name, so a repeated create after a
/// restart cannot make a second Job.
pub fn scheduled_job_name(policy: &str, at: Timestamp) -> String {
    backup_job_name(policy, &format!("-{}", at.as_second().div_euclid(60)))
}

/// The backup Job answering the backup-now token `token`: `<policy>-now-<8 hex of its hash>`.
pub fn on_demand_job_name(policy: &str, token: &str) -> String {
    backup_job_name(policy, &format!("-now-{}", hash8(token)))
}

/// The verify Job of a backup Job.
pub fn verify_job_name(backup_job: &str) -> String {
    format!("{backup_job}-verify")
}

/// The prune Job of a backup Job.
pub fn prune_job_name(backup_job: &str) -> String {
    format!("{backup_job}-prune")
}

/// RFC 3339 in UTC with whole seconds, the form of [`SCHEDULED_TIME_ANNOTATION`], the
/// `BACKUP_SCHEDULED_TIME` env var and instants in messages.
fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A duration as specs write them (`26h`, `1h30m`, `45s`, `250ms`), so a message can be copied
/// into `spec.rpo`.
fn format_duration(duration: SignedDuration) -> String {
    let duration = duration.abs();
    let seconds = duration.as_secs();
    let parts = [
        (seconds / 3600, "h"),
        (seconds % 3600 / 60, "m"),
        (seconds % 60, "s"),
        (i64::from(duration.subsec_millis()), "ms"),
    ];
    let text: String = parts
        .iter()
        .filter(|(amount, _)| *amount != 0)
        .map(|(amount, unit)| format!("{amount}{unit}"))
        .collect();
    if text.is_empty() { "0s".into() } else { text }
}

// --- Jobs --------------------------------------------------------------------------------------

/// The role a Job plays for a backup, as its [`STAGE_LABEL`] says. Unlike
/// [`BackupStage`] it has no `Done`: it names a Job, not a record's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The backup Job itself.
    Backup,
    /// The verification Job run after a successful backup.
    Verify,
    /// The prune Job run after a successful (and verified) backup.
    Prune,
}

impl Stage {
    /// The value of [`STAGE_LABEL`].
    pub fn label(self) -> &'static str {
        match self {
            Stage::Backup => "backup",
            Stage::Verify => "verify",
            Stage::Prune => "prune",
        }
    }

    /// Reads a [`STAGE_LABEL`] value.
    pub fn from_label(value: &str) -> Option<Self> {
        match value {
            "backup" => Some(Stage::Backup),
            "verify" => Some(Stage::Verify),
            "prune" => Some(Stage::Prune),
            _ => None,
        }
    }

    /// The spec field whose template makes Jobs of this role, for messages about them.
    pub fn template_field(self) -> &'static str {
        match self {
            Stage::Backup => "spec.jobTemplate",
            Stage::Verify => "spec.verify.jobTemplate",
            Stage::Prune => "spec.prune.jobTemplate",
        }
    }
}

/// How a Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Not finished yet (including not yet started).
    Running,
    /// Completed.
    Succeeded {
        /// When it completed.
        at: Timestamp,
    },
    /// Failed for good (the Job controller gave up).
    Failed {
        /// When it failed.
        at: Timestamp,
        /// The Job's own explanation.
        message: String,
    },
}

/// What [`decide`] needs to know about one existing Job of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedJob {
    /// The Job's name.
    pub name: String,
    /// How it stands.
    pub outcome: JobOutcome,
    /// `status.startTime`.
    pub start_time: Option<Timestamp>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// Its role ([`STAGE_LABEL`]).
    pub stage: Stage,
    /// The [`SCHEDULED_TIME_ANNOTATION`], if it has one.
    pub scheduled_time: Option<Timestamp>,
    /// The [`BACKUP_NOW`] token it answers, if it has one.
    pub request: Option<String>,
}

/// A Job [`decide`] wants created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// The Job's name.
    pub name: String,
    /// Its role; picks the template (`spec.jobTemplate`, `spec.verify` or `spec.prune`).
    pub stage: Stage,
    /// The backup Job it belongs to (its own name for a backup Job).
    pub backup_job: String,
    /// The scheduled time of the backup, for scheduled backups.
    pub scheduled_time: Option<Timestamp>,
    /// The backup-now token, for on-demand backups.
    pub request: Option<String>,
    /// When the backup was asked for: `BACKUP_SCHEDULED_TIME` of an on-demand backup.
    pub requested_at: Timestamp,
}

/// Builds the Job `new` from `template` (the spec's template for `new.stage`, decoded): the
/// template's spec unchanged except for the backup env vars, its labels and annotations plus
/// ours, owned by the policy so deleting the policy garbage-collects its Jobs.
///
/// Every container and init container gets `BACKUP_POLICY`, `BACKUP_JOB_NAME` (the backup Job,
/// also for verify and prune) and `BACKUP_SCHEDULED_TIME` (the scheduled time, or for an
/// on-demand backup when it was asked for), unless the template already sets a var of that name.
pub fn build_job(policy: &BackupPolicy, new: &NewJob, template: JobTemplateSpec) -> Job {
    let policy_name = policy.metadata.name.clone().unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();

    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(POLICY_LABEL.into(), label_value(&policy_name));
    labels.insert(STAGE_LABEL.into(), new.stage.label().into());
    if new.stage != Stage::Backup {
        labels.insert(BACKUP_LABEL.into(), new.backup_job.clone());
    }

    let mut annotations = template_meta.annotations.unwrap_or_default();
    if let Some(at) = new.scheduled_time {
        annotations.insert(SCHEDULED_TIME_ANNOTATION.into(), rfc3339(at));
    }
    if let (Stage::Backup, Some(token)) = (new.stage, &new.request) {
        annotations.insert(BACKUP_NOW.into(), token.clone());
    }

    let env = [
        ("BACKUP_POLICY", policy_name.clone()),
        ("BACKUP_JOB_NAME", new.backup_job.clone()),
        (
            "BACKUP_SCHEDULED_TIME",
            rfc3339(new.scheduled_time.unwrap_or(new.requested_at)),
        ),
    ];
    let mut spec = template.spec;
    if let Some(pod) = spec.as_mut().and_then(|spec| spec.template.spec.as_mut()) {
        let init = pod.init_containers.iter_mut().flatten();
        for container in pod.containers.iter_mut().chain(init) {
            add_env(container, &env);
        }
    }

    let owner = OwnerReference {
        api_version: BackupPolicy::api_version(&()).into_owned(),
        kind: BackupPolicy::kind(&()).into_owned(),
        name: policy_name,
        uid: policy.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Job {
        metadata: ObjectMeta {
            name: Some(new.name.clone()),
            namespace: policy.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// Appends each var the container does not set itself: the template's own value wins.
fn add_env(container: &mut Container, vars: &[(&str, String)]) {
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in vars {
        if !env.iter().any(|var| var.name == *name) {
            env.push(EnvVar {
                name: (*name).to_owned(),
                value: Some(value.clone()),
                value_from: None,
            });
        }
    }
}

// --- decide --------------------------------------------------------------------------------------

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
    /// The status as stored, or as the previous [`decide`] of this reconcile planned it.
    pub status: &'a BackupPolicyStatus,
    /// Every existing Job of the policy (backup, verify and prune).
    pub jobs: &'a [ObservedJob],
    /// The policy's [`BACKUP_NOW`] annotation, trimmed; `None` when absent or empty.
    pub backup_now: Option<&'a str>,
    /// Jobs the API server refused during this reconcile: (name, its message).
    pub rejected: &'a [(String, String)],
    /// The clock.
    pub now: Timestamp,
}

/// What the controller should do and write.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to write, except `conditions` (copied through from the input; merge
    /// [`Plan::conditions`] into them) and `observedGeneration` (copied through).
    pub status: BackupPolicyStatus,
    /// The one Job to create now, already recorded in [`Plan::status`].
    pub create: Option<NewJob>,
    /// Job names retention removes, oldest backup first; only Jobs that exist.
    pub delete: Vec<String>,
    /// Events to publish, each for a change this call made.
    pub notes: Vec<Note>,
    /// `LastBackupSucceeded`, `BackupFresh` and `ScheduleMeetsRPO`, where they apply.
    pub conditions: Vec<Desired>,
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
///
/// At most one Job is created per call; calling again with the returned status and that Job
/// among `jobs` creates nothing more and returns the same status.
pub fn decide(inputs: &Inputs) -> Plan {
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

    let delete = work.retention();
    work.trim_history();
    work.status.phase = Some(work.phase().into());

    let mut wake = Vec::new();
    wake.extend(next);
    let mut conditions = Vec::new();
    conditions.extend(last_backup_condition(&work.status.history));
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
            conditions.push(schedule_meets_rpo(schedule, rpo, inputs.now));
        }
    }

    Plan {
        status: work.status,
        create: work.create,
        delete,
        notes: work.notes,
        conditions,
        wake_at: wake.into_iter().filter(|at| *at > inputs.now).min(),
    }
}

/// Where a verify or prune Job stands.
enum FollowUp {
    /// Not created yet (the plan creates it) or still running.
    Waiting,
    /// It completed.
    Succeeded,
    /// It failed, or the API server refused it (already reported as JobRejected).
    Failed {
        /// The record's message.
        message: String,
        /// Whether the API server refused it.
        rejected: bool,
    },
}

/// The state one [`decide`] call builds up.
struct Work<'a> {
    inputs: Inputs<'a>,
    status: BackupPolicyStatus,
    create: Option<NewJob>,
    notes: Vec<Note>,
}

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

fn or_next(next: Option<Timestamp>) -> String {
    next.map_or_else(
        || "there is no next scheduled time".into(),
        |next| format!("the next is at {}", rfc3339(next)),
    )
}

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

    // --- rule 2 (applied first, so rule 1 brings adopted records up to date as well) -----------

    fn adopt(&mut self) {
        let last_scheduled = self.status.last_schedule_time.as_ref().map(|time| time.0);
        let token = self.token_unhandled();
        let mut found: Vec<&ObservedJob> = self
            .inputs
            .jobs
            .iter()
            .filter(|job| job.stage == Stage::Backup)
            .filter(|job| !self.status.history.iter().any(|r| r.job == job.name))
            .filter(|job| {
                job.outcome == JobOutcome::Running
                    || job
                        .scheduled_time
                        .is_some_and(|at| last_scheduled.is_none_or(|last| at > last))
                    || (job.request.is_some() && job.request.as_deref() == token)
            })
            .collect();
        // Oldest first, each inserted at the front: the newest ends up first.
        found.sort_by_key(|job| (job.created, job.start_time, job.scheduled_time));
        for job in found {
            let trigger = if job.scheduled_time.is_none() && job.request.is_some() {
                BackupTrigger::BackupNow
            } else {
                BackupTrigger::Schedule
            };
            if let Some(at) = job.scheduled_time {
                let last = self.status.last_schedule_time.as_ref().map(|time| time.0);
                if last.is_none_or(|last| at > last) {
                    self.status.last_schedule_time = Some(Time(at));
                }
            }
            // Only the current token is marked handled: marking an older one would make the
            // current token look new again.
            if job.request.is_some() && job.request.as_deref() == self.backup_token() {
                self.status.last_handled_backup_now = job.request.clone();
            }
            let record = new_record(
                job.name.clone(),
                trigger,
                job.scheduled_time,
                job.request.clone(),
                BackupResult::Running,
            );
            self.status.history.insert(0, record);
        }
    }

    // --- rule 1 ------------------------------------------------------------------------------

    fn advance_records(&mut self) {
        let mut history = std::mem::take(&mut self.status.history);
        for record in history.iter_mut() {
            // A record can pass several stages at once (backup done, verify not needed, ...);
            // each step returns whether it moved, and there are at most three to pass.
            for _ in 0..4 {
                let moved = match (record.result, record.stage) {
                    (BackupResult::Pending, _) => self.pending_was_created(record),
                    (BackupResult::Running, _) => self.advance_backup(record),
                    (BackupResult::Succeeded, BackupStage::Verify) => self.advance_verify(record),
                    (BackupResult::Succeeded, BackupStage::Prune) => self.advance_prune(record),
                    _ => false,
                };
                if !moved {
                    break;
                }
            }
        }
        self.status.history = history;
    }

    /// A Pending record whose Job exists was started by a call whose status write was lost.
    fn pending_was_created(&self, record: &mut BackupRecord) -> bool {
        if self.job(&record.job).is_none() {
            return false;
        }
        record.result = BackupResult::Running;
        record.message = None;
        true
    }

    /// The stage after a successful backup Job.
    fn after_backup(&self) -> BackupStage {
        if self.inputs.spec.verify.is_some() {
            BackupStage::Verify
        } else {
            self.after_verify()
        }
    }

    /// The stage after a passed (or skipped) verification.
    fn after_verify(&self) -> BackupStage {
        if self.inputs.spec.prune.is_some() {
            BackupStage::Prune
        } else {
            BackupStage::Done
        }
    }

    fn advance_backup(&mut self, record: &mut BackupRecord) -> bool {
        let Some(job) = self.job(&record.job) else {
            record.result = BackupResult::Failed;
            record.stage = BackupStage::Done;
            if let Some(message) = self.rejection(&record.job) {
                record.completion_time = Some(Time(self.inputs.now));
                record.message = Some(format!(
                    "{REJECTED_PREFIX}{} made from {}: {message}",
                    record.job,
                    Stage::Backup.template_field()
                ));
                self.note_rejected(Stage::Backup, &record.job, message);
            } else {
                let message = format!("Job {} was deleted before it finished", record.job);
                record.message = Some(message.clone());
                self.note(EventType::Warning, "BackupFailed", message);
            }
            return false;
        };
        if let Some(start) = job.start_time {
            record.start_time = Some(Time(start));
        }
        match &job.outcome {
            JobOutcome::Running => false,
            JobOutcome::Succeeded { at } => {
                record.result = BackupResult::Succeeded;
                record.completion_time = Some(Time(*at));
                record.stage = self.after_backup();
                self.note(
                    EventType::Normal,
                    "BackupSucceeded",
                    format!("backup Job {} succeeded at {}", record.job, rfc3339(*at)),
                );
                true
            }
            JobOutcome::Failed { at, message } => {
                record.result = BackupResult::Failed;
                record.completion_time = Some(Time(*at));
                record.stage = BackupStage::Done;
                record.message = Some(message.clone());
                self.note(
                    EventType::Warning,
                    "BackupFailed",
                    format!("backup Job {} failed: {message}", record.job),
                );
                false
            }
        }
    }

    fn note_rejected(&mut self, stage: Stage, name: &str, message: &str) {
        let field = stage.template_field();
        let next = if stage == Stage::Backup {
            "; the next scheduled time still runs"
        } else {
            ""
        };
        self.note(
            EventType::Warning,
            "JobRejected",
            format!("{REJECTED_PREFIX}{name} made from {field}: {message}; fix {field}{next}"),
        );
    }

    /// When a verify or prune Job is absent: create it (the name is deterministic, so a
    /// repeated create is harmless), unless the API server refused it in this reconcile.
    /// Returns the refusal.
    fn create_follow_up(
        &mut self,
        record: &BackupRecord,
        stage: Stage,
        name: &str,
    ) -> Option<&'a str> {
        if let Some(message) = self.rejection(name) {
            return Some(message);
        }
        if self.can_create() {
            let requested_at = self
                .job(&record.job)
                .and_then(|job| job.created)
                .or(record.start_time.as_ref().map(|time| time.0))
                .unwrap_or(self.inputs.now);
            self.create = Some(NewJob {
                name: name.to_owned(),
                stage,
                backup_job: record.job.clone(),
                scheduled_time: record.scheduled_time.as_ref().map(|time| time.0),
                request: record.request.clone(),
                requested_at,
            });
        }
        None
    }

    /// Where the verify or prune Job of `record` stands: absent ones are created (or found
    /// refused), a running one is waited for; a refusal counts as a failure.
    fn follow_up(&mut self, record: &BackupRecord, stage: Stage, name: &str) -> FollowUp {
        match self.job(name) {
            None => match self.create_follow_up(record, stage, name) {
                None => FollowUp::Waiting,
                Some(message) => {
                    self.note_rejected(stage, name, message);
                    FollowUp::Failed {
                        message: format!(
                            "{REJECTED_PREFIX}{name} made from {}: {message}",
                            stage.template_field()
                        ),
                        rejected: true,
                    }
                }
            },
            Some(job) => match &job.outcome {
                JobOutcome::Running => FollowUp::Waiting,
                JobOutcome::Succeeded { .. } => FollowUp::Succeeded,
                JobOutcome::Failed { message, .. } => {
                    let what = if stage == Stage::Verify {
                        "verification"
                    } else {
                        "prune"
                    };
                    FollowUp::Failed {
                        message: format!("{what} Job {name} failed: {message}"),
                        rejected: false,
                    }
                }
            },
        }
    }

    fn advance_verify(&mut self, record: &mut BackupRecord) -> bool {
        if self.inputs.spec.verify.is_none() {
            // Verification was removed from the spec after this backup finished.
            record.stage = self.after_verify();
            return true;
        }
        let name = verify_job_name(&record.job);
        match self.follow_up(record, Stage::Verify, &name) {
            FollowUp::Waiting => false,
            FollowUp::Succeeded => {
                record.verified = Some(true);
                if let Some(done) = &record.completion_time {
                    let newer = self
                        .status
                        .last_verified_time
                        .as_ref()
                        .is_none_or(|last| done.0 > last.0);
                    if newer {
                        self.status.last_verified_time = Some(done.clone());
                    }
                }
                record.stage = self.after_verify();
                self.note(
                    EventType::Normal,
                    "BackupVerified",
                    format!("backup Job {} passed verification Job {name}", record.job),
                );
                true
            }
            FollowUp::Failed {
                message: failure,
                rejected,
            } => {
                if !rejected {
                    let prune = if self.inputs.spec.prune.is_some() {
                        "; the prune Job does not run, since pruning could delete the last good backup"
                    } else {
                        ""
                    };
                    self.note(
                        EventType::Warning,
                        "VerificationFailed",
                        format!("backup Job {}: {failure}{prune}", record.job),
                    );
                }
                record.verified = Some(false);
                record.message = Some(failure);
                record.stage = BackupStage::Done;
                false
            }
        }
    }

    fn advance_prune(&mut self, record: &mut BackupRecord) -> bool {
        if self.inputs.spec.prune.is_none() {
            record.stage = BackupStage::Done;
            return true;
        }
        let name = prune_job_name(&record.job);
        match self.follow_up(record, Stage::Prune, &name) {
            FollowUp::Waiting => false,
            FollowUp::Succeeded => {
                record.pruned = Some(true);
                record.stage = BackupStage::Done;
                true
            }
            FollowUp::Failed {
                message: failure,
                rejected,
            } => {
                if !rejected {
                    self.note(
                        EventType::Warning,
                        "PruneFailed",
                        format!(
                            "backup Job {}: {failure}; the backup itself is good",
                            record.job
                        ),
                    );
                }
                record.pruned = Some(false);
                record.message = Some(failure);
                record.stage = BackupStage::Done;
                false
            }
        }
    }

    // --- rule 4 ------------------------------------------------------------------------------

    /// Handles scheduled times; returns the next one.
    fn schedule_backups(&mut self, schedule: &Schedule) -> Option<Timestamp> {
        let spec = &self.inputs.spec.schedule;
        let now = self.inputs.now;
        let created = self.inputs.created;
        if spec.suspend == Some(true) {
            self.drop_pending(EventType::Normal, "the policy was suspended");
            return None;
        }
        let deadline = spec
            .starting_deadline
            .as_ref()
            .and_then(|deadline| deadline.parse().ok());
        let lower = |status: &BackupPolicyStatus| {
            status
                .last_schedule_time
                .as_ref()
                .map_or(created, |last| last.0.max(created))
        };

        if self.was_suspended() {
            let since = lower(&self.status);
            if let Some(latest) = schedule.latest_due(Some(since), now) {
                let missed = schedule.missed_count(Some(since), now, MISSED_CAP);
                self.status.last_schedule_time = Some(Time(latest));
                self.note(
                    EventType::Normal,
                    "BackupSkipped",
                    format!(
                        "{} scheduled backup(s) came due while the policy was suspended; none is run; {}",
                        count_text(missed),
                        or_next(schedule.next_after(now))
                    ),
                );
            }
        }

        let since = lower(&self.status);
        let last = self.status.last_schedule_time.as_ref().map(|time| time.0);
        let due = schedule::due_decision(schedule, last, created, now, deadline, false);
        if let Some(skipped) = due.skipped_past_deadline {
            let missed = schedule.missed_count(Some(since), now, MISSED_CAP);
            self.status.last_schedule_time = Some(Time(skipped));
            let all = if missed > 1 {
                format!(
                    " ({} scheduled times were missed in all while the operator was not running)",
                    count_text(missed)
                )
            } else {
                String::new()
            };
            let deadline = spec
                .starting_deadline
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.note(
                EventType::Warning,
                "BackupSkipped",
                format!(
                    "the backup scheduled for {} could not start within startingDeadline {deadline}{all}; {}",
                    rfc3339(skipped),
                    or_next(due.next)
                ),
            );
        }
        if let Some(at) = due.run {
            let missed = schedule.missed_count(Some(since), now, MISSED_CAP);
            self.status.last_schedule_time = Some(Time(at));
            let blocker = active_job(&self.status.history)
                .or_else(|| self.create.as_ref().map(|create| create.name.clone()));
            match blocker {
                Some(blocker) => self.queue(at, &blocker),
                None => {
                    self.drop_pending(
                        EventType::Normal,
                        &format!("replaced by the newer scheduled time {}", rfc3339(at)),
                    );
                    let catch_up = if missed > 1 {
                        format!(
                            " (catch-up: {} scheduled times were missed while the operator was not running; only the latest runs)",
                            count_text(missed)
                        )
                    } else {
                        String::new()
                    };
                    self.start_scheduled(at, catch_up);
                }
            }
        }
        if active_job(&self.status.history).is_none() && self.can_create() {
            self.start_pending(deadline);
        }
        due.next
    }

    /// Whether the stored status was written while the policy was suspended. A backup that ran
    /// during the suspension shows phase Running, but then nextScheduleTime is absent, which a
    /// valid, unsuspended schedule only has when it never fires again.
    fn was_suspended(&self) -> bool {
        match self.inputs.status.phase.as_deref() {
            Some("Suspended") => true,
            Some("Running") => self.inputs.status.next_schedule_time.is_none(),
            _ => false,
        }
    }

    fn drop_pending(&mut self, type_: EventType, why: &str) {
        let (pending, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.status.history)
            .into_iter()
            .partition(|record| record.result == BackupResult::Pending);
        self.status.history = kept;
        for record in pending {
            let at = record
                .scheduled_time
                .as_ref()
                .map_or_else(|| record.job.clone(), |time| rfc3339(time.0));
            self.note(
                type_,
                "BackupSkipped",
                format!("the backup scheduled for {at} is skipped: {why}"),
            );
        }
    }

    fn queue(&mut self, at: Timestamp, blocker: &str) {
        self.drop_pending(
            EventType::Normal,
            &format!("replaced by the newer scheduled time {}", rfc3339(at)),
        );
        let job = scheduled_job_name(self.inputs.policy, at);
        let mut record = new_record(
            job,
            BackupTrigger::Schedule,
            Some(at),
            None,
            BackupResult::Pending,
        );
        record.message = Some(format!("waiting for {blocker} to finish"));
        self.status.history.insert(0, record);
        self.note(
            EventType::Normal,
            "BackupDelayed",
            format!(
                "the backup scheduled for {} waits for {blocker} to finish (never two backups at once)",
                rfc3339(at)
            ),
        );
    }

    fn start_scheduled(&mut self, at: Timestamp, why: String) {
        let job = scheduled_job_name(self.inputs.policy, at);
        self.create = Some(NewJob {
            name: job.clone(),
            stage: Stage::Backup,
            backup_job: job.clone(),
            scheduled_time: Some(at),
            request: None,
            requested_at: self.inputs.now,
        });
        let record = new_record(
            job.clone(),
            BackupTrigger::Schedule,
            Some(at),
            None,
            BackupResult::Running,
        );
        self.status.history.insert(0, record);
        self.note(
            EventType::Normal,
            "BackupStarted",
            format!(
                "started backup Job {job} for the scheduled time {}{why}",
                rfc3339(at)
            ),
        );
    }

    /// Starts the waiting record, or drops it when it waited past the starting deadline.
    fn start_pending(&mut self, deadline: Option<std::time::Duration>) {
        let history = &self.status.history;
        let Some(index) = history
            .iter()
            .position(|record| record.result == BackupResult::Pending)
        else {
            return;
        };
        let waited_for = history
            .iter()
            .skip(index + 1)
            .find(|record| record.result != BackupResult::Pending)
            .map_or_else(|| "the previous backup".into(), |record| record.job.clone());
        let record = &history[index];
        let at = record.scheduled_time.as_ref().map(|time| time.0);
        let late = |at: Timestamp| {
            deadline
                .and_then(|deadline| SignedDuration::try_from(deadline).ok())
                .is_some_and(|deadline| self.inputs.now.duration_since(at) > deadline)
        };
        if at.is_some_and(late) {
            self.status.history.remove(index);
            let deadline = self
                .inputs
                .spec
                .schedule
                .starting_deadline
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.note(
                EventType::Warning,
                "BackupSkipped",
                format!(
                    "the backup scheduled for {} is skipped: it waited for {waited_for} longer than startingDeadline {deadline}",
                    at.map(rfc3339).unwrap_or_default()
                ),
            );
            return;
        }
        let record = &mut self.status.history[index];
        record.result = BackupResult::Running;
        record.message = None;
        let job = record.job.clone();
        self.create = Some(NewJob {
            name: job.clone(),
            stage: Stage::Backup,
            backup_job: job.clone(),
            scheduled_time: at,
            request: None,
            requested_at: self.inputs.now,
        });
        self.note(
            EventType::Normal,
            "BackupStarted",
            format!(
                "started backup Job {job} for the scheduled time {} (it waited for {waited_for} to finish)",
                at.map(rfc3339).unwrap_or_default()
            ),
        );
    }

    // --- rule 5 ------------------------------------------------------------------------------

    fn backup_now(&mut self) {
        let Some(token) = self.token_unhandled() else {
            return;
        };
        let job = on_demand_job_name(self.inputs.policy, token);
        let used =
            self.status.history.iter().any(|record| record.job == job) || self.job(&job).is_some();
        if used {
            self.status.last_handled_backup_now = Some(token.to_owned());
            self.note(
                EventType::Warning,
                "BackupNowIgnored",
                format!(
                    "token {token} was already used by Job {job}; set a new token to start another backup"
                ),
            );
            return;
        }
        let waiting = self
            .status
            .history
            .iter()
            .any(|record| record.result == BackupResult::Pending);
        // The annotation itself is the queue: nothing is recorded until the token can run.
        if active_job(&self.status.history).is_some() || waiting || !self.can_create() {
            return;
        }
        self.status.last_handled_backup_now = Some(token.to_owned());
        self.create = Some(NewJob {
            name: job.clone(),
            stage: Stage::Backup,
            backup_job: job.clone(),
            scheduled_time: None,
            request: Some(token.to_owned()),
            requested_at: self.inputs.now,
        });
        let record = new_record(
            job.clone(),
            BackupTrigger::BackupNow,
            None,
            Some(token.to_owned()),
            BackupResult::Running,
        );
        self.status.history.insert(0, record);
        self.note(
            EventType::Normal,
            "BackupStarted",
            format!("started backup Job {job} for backup-now token {token}"),
        );
    }

    // --- rule 6 ------------------------------------------------------------------------------

    /// The Jobs of finished backups beyond what retention keeps, oldest backup first.
    ///
    /// Backups are counted newest first: the finished records in history, then backup Jobs that
    /// have no record any more (history holds ten records, retention may keep up to a thousand
    /// Jobs), newest first by creation.
    fn retention(&self) -> Vec<String> {
        let retention = self.inputs.spec.retention.as_ref();
        let limit = |value: Option<i32>, default: usize| {
            value.map_or(default, |value| usize::try_from(value).unwrap_or(0))
        };
        let keep_good = limit(
            retention.and_then(|r| r.successful_jobs),
            DEFAULT_SUCCESSFUL_JOBS,
        );
        let keep_bad = limit(retention.and_then(|r| r.failed_jobs), DEFAULT_FAILED_JOBS);

        let recorded = self
            .status
            .history
            .iter()
            .filter(|record| record.stage == BackupStage::Done)
            .map(|record| {
                let good =
                    record.result == BackupResult::Succeeded && record.verified != Some(false);
                (record.job.as_str(), good)
            });
        let mut leftovers: Vec<&ObservedJob> = self
            .inputs
            .jobs
            .iter()
            .filter(|job| job.stage == Stage::Backup && job.outcome != JobOutcome::Running)
            .filter(|job| !self.status.history.iter().any(|r| r.job == job.name))
            .collect();
        leftovers.sort_by_key(|job| {
            std::cmp::Reverse(job.created.or(job.start_time).or(job.scheduled_time))
        });
        let leftovers = leftovers.into_iter().map(|job| {
            let verification_failed = self
                .job(&verify_job_name(&job.name))
                .is_some_and(|verify| matches!(verify.outcome, JobOutcome::Failed { .. }));
            let good = matches!(job.outcome, JobOutcome::Succeeded { .. }) && !verification_failed;
            (job.name.as_str(), good)
        });

        let (mut good_seen, mut bad_seen) = (0, 0);
        let mut doomed = Vec::new();
        for (job, good) in recorded.chain(leftovers) {
            let seen = if good { &mut good_seen } else { &mut bad_seen };
            *seen += 1;
            if *seen > if good { keep_good } else { keep_bad } {
                doomed.push(job);
            }
        }
        doomed
            .into_iter()
            .rev()
            .flat_map(|job| [job.to_owned(), verify_job_name(job), prune_job_name(job)])
            .filter(|name| self.job(name).is_some())
            .collect()
    }

    fn trim_history(&mut self) {
        let mut position = 0;
        self.status.history.retain(|record| {
            position += 1;
            position <= HISTORY_LIMIT || record.stage != BackupStage::Done
        });
    }

    // --- rules 7 and 8 -------------------------------------------------------------------------

    fn phase(&self) -> &'static str {
        if self.inputs.schedule.is_none() {
            "Invalid"
        } else if active_job(&self.status.history).is_some() {
            "Running"
        } else if self.inputs.spec.schedule.suspend == Some(true) {
            "Suspended"
        } else {
            "Scheduled"
        }
    }

    /// `BackupFresh`, and the future instant it turns False when it is not yet.
    fn freshness(&mut self, rpo: SignedDuration) -> (Desired, Option<Timestamp>) {
        let now = self.inputs.now;
        let verify = self.inputs.spec.verify.is_some();
        let kind = if verify { "verified" } else { "successful" };
        let reference = if verify {
            &self.status.last_verified_time
        } else {
            &self.status.last_successful_time
        };
        let rpo_text = self
            .inputs
            .spec
            .rpo
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let (desired, flip) = match reference.as_ref().map(|time| time.0) {
            Some(finished) => match finished.checked_add(rpo) {
                Ok(until) if now < until => (
                    Desired::new(
                        BACKUP_FRESH,
                        Status::True,
                        "WithinRPO",
                        format!(
                            "newest {kind} backup finished at {}; fresh until {} (rpo {rpo_text})",
                            rfc3339(finished),
                            rfc3339(until)
                        ),
                    ),
                    Some(until),
                ),
                Ok(until) => (
                    Desired::new(
                        BACKUP_FRESH,
                        Status::False,
                        "RPOViolated",
                        format!(
                            "newest {kind} backup finished at {}, more than rpo {rpo_text} ago (since {})",
                            rfc3339(finished),
                            rfc3339(until)
                        ),
                    )
                    .since(Time(until)),
                    None,
                ),
                // An rpo too long to add never runs out.
                Err(_) => (
                    Desired::new(
                        BACKUP_FRESH,
                        Status::True,
                        "WithinRPO",
                        format!(
                            "newest {kind} backup finished at {} (rpo {rpo_text})",
                            rfc3339(finished)
                        ),
                    ),
                    None,
                ),
            },
            None => {
                let created = self.inputs.created;
                match created.checked_add(rpo) {
                    Ok(until) if now >= until => (
                        Desired::new(
                            BACKUP_FRESH,
                            Status::False,
                            "RPOViolated",
                            format!(
                                "no {kind} backup since the policy was created at {} (rpo {rpo_text})",
                                rfc3339(created)
                            ),
                        )
                        .since(Time(until)),
                        None,
                    ),
                    until => (
                        Desired::new(
                            BACKUP_FRESH,
                            Status::Unknown,
                            "AwaitingFirstBackup",
                            format!(
                                "no {kind} backup yet; the policy was created at {} (rpo {rpo_text})",
                                rfc3339(created)
                            ),
                        ),
                        until.ok(),
                    ),
                }
            }
        };
        // Stored conditions do not change between the calls of one reconcile, so only the last
        // call (the one that creates nothing) reports a flip, or every call would.
        if self.create.is_none() {
            let was_false =
                self.inputs.status.conditions.iter().any(|condition| {
                    condition.type_ == BACKUP_FRESH && condition.status == "False"
                });
            match desired.status {
                Status::False if !was_false => {
                    self.note(EventType::Warning, "RPOViolated", desired.message.clone())
                }
                Status::True if was_false => {
                    self.note(EventType::Normal, "BackupFresh", desired.message.clone())
                }
                _ => {}
            }
        }
        (desired, flip)
    }
}

/// `LastBackupSucceeded` from the newest finished record; `None` before any finished.
fn last_backup_condition(history: &[BackupRecord]) -> Option<Desired> {
    let record = history
        .iter()
        .find(|record| record.stage == BackupStage::Done)?;
    let job = &record.job;
    let message = record.message.clone().unwrap_or_default();
    let rejected = message.starts_with(REJECTED_PREFIX);
    let finished = record
        .completion_time
        .as_ref()
        .map(|time| format!(" at {}", rfc3339(time.0)))
        .unwrap_or_default();
    let desired = match (record.result, record.verified) {
        (BackupResult::Succeeded, Some(true)) => Desired::new(
            LAST_BACKUP_SUCCEEDED,
            Status::True,
            "Verified",
            format!("backup Job {job} succeeded{finished} and passed verification"),
        ),
        (BackupResult::Succeeded, Some(false)) => Desired::new(
            LAST_BACKUP_SUCCEEDED,
            Status::False,
            if rejected {
                "JobRejected"
            } else {
                "VerificationFailed"
            },
            format!("backup Job {job} succeeded{finished} but was not verified: {message}"),
        ),
        (BackupResult::Succeeded, None) => Desired::new(
            LAST_BACKUP_SUCCEEDED,
            Status::True,
            "Succeeded",
            format!("backup Job {job} succeeded{finished}"),
        ),
        _ => Desired::new(
            LAST_BACKUP_SUCCEEDED,
            Status::False,
            if rejected {
                "JobRejected"
            } else {
                "BackupFailed"
            },
            format!("backup Job {job} failed: {message}"),
        ),
    };
    Some(desired)
}

/// The longest time between two consecutive scheduled times, over the next
/// [`GAP_OCCURRENCES`] times or [`GAP_HORIZON`], whichever ends first (the gap to the time
/// after the last one inside the horizon counts). `None` when fewer than two times come.
fn longest_gap(schedule: &Schedule, now: Timestamp) -> Option<SignedDuration> {
    let horizon = now.checked_add(GAP_HORIZON).ok();
    let mut previous = schedule.next_after(now)?;
    let mut longest: Option<SignedDuration> = None;
    for _ in 1..GAP_OCCURRENCES {
        if horizon.is_some_and(|horizon| previous > horizon) {
            break;
        }
        let Some(next) = schedule.next_after(previous) else {
            break;
        };
        let gap = next.duration_since(previous);
        longest = Some(longest.map_or(gap, |longest| longest.max(gap)));
        previous = next;
    }
    longest
}

/// `ScheduleMeetsRPO`: False when a gap between scheduled backups is longer than the rpo, so
/// `BackupFresh` would turn False before the next backup even when every backup succeeds.
fn schedule_meets_rpo(schedule: &Schedule, rpo: SignedDuration, now: Timestamp) -> Desired {
    let rpo_text = format_duration(rpo);
    match longest_gap(schedule, now) {
        None => Desired::new(
            SCHEDULE_MEETS_RPO,
            Status::False,
            "NoUpcomingBackups",
            format!(
                "the schedule has fewer than two upcoming times, so spec.rpo ({rpo_text}) cannot be met for long"
            ),
        ),
        Some(gap) if rpo < gap => Desired::new(
            SCHEDULE_MEETS_RPO,
            Status::False,
            "RPOShorterThanSchedule",
            format!(
                "spec.rpo ({rpo_text}) is shorter than the longest gap between scheduled backups ({}), so BackupFresh will turn False before the next backup; raise spec.rpo or schedule backups more often",
                format_duration(gap)
            ),
        ),
        Some(gap) => Desired::new(
            SCHEDULE_MEETS_RPO,
            Status::True,
            "Achievable",
            format!(
                "spec.rpo ({rpo_text}) is at least the longest gap between scheduled backups ({})",
                format_duration(gap)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use serde_json::json;

    use super::*;
    use crate::backup_policy::types::{BackupSchedule, JobStage, Retention};
    use crate::conditions::merge;
    use crate::duration::Duration;
    use crate::embedded::Embedded;
    use crate::names::fnv32 as fnv;

    const P: &str = "db";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn mins(n: i64) -> SignedDuration {
        SignedDuration::from_mins(n)
    }

    fn template(image: &str) -> serde_json::Value {
        json!({"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image}]
        }}}})
    }

    fn follow_up() -> Option<JobStage> {
        Some(JobStage {
            job_template: Embedded::new(template("check")),
        })
    }

    fn spec(cron: &str) -> BackupPolicySpec {
        BackupPolicySpec {
            schedule: BackupSchedule {
                cron: cron.into(),
                time_zone: None,
                suspend: None,
                starting_deadline: None,
            },
            job_template: Embedded::new(template("backup")),
            verify: None,
            retention: None,
            prune: None,
            rpo: None,
        }
    }

    fn record(job: &str, result: BackupResult, stage: BackupStage) -> BackupRecord {
        BackupRecord {
            stage,
            ..new_record(job.into(), BackupTrigger::Schedule, None, None, result)
        }
    }

    fn done(job: &str, result: BackupResult, verified: Option<bool>) -> BackupRecord {
        BackupRecord {
            verified,
            ..record(job, result, BackupStage::Done)
        }
    }

    fn observed(name: &str, stage: Stage, outcome: JobOutcome) -> ObservedJob {
        ObservedJob {
            name: name.into(),
            outcome,
            start_time: None,
            created: None,
            stage,
            scheduled_time: None,
            request: None,
        }
    }

    fn succeeded(at: &str) -> JobOutcome {
        JobOutcome::Succeeded { at: ts(at) }
    }

    /// A policy, its Jobs and an API server that creates (or refuses) them, driven the way the
    /// controller drives [`decide`].
    struct Sim {
        spec: BackupPolicySpec,
        schedule: Option<Schedule>,
        created: Timestamp,
        status: BackupPolicyStatus,
        jobs: Vec<ObservedJob>,
        backup_now: Option<String>,
        /// Job names the API server refuses.
        refuse: Vec<String>,
        /// Every Job created, in order.
        made: Vec<String>,
        notes: Vec<Note>,
    }

    impl Sim {
        fn new(spec: BackupPolicySpec, created: &str) -> Self {
            let schedule =
                Schedule::parse(&spec.schedule.cron, spec.schedule.time_zone.as_deref()).ok();
            Self {
                spec,
                schedule,
                created: ts(created),
                status: BackupPolicyStatus::default(),
                jobs: Vec::new(),
                backup_now: None,
                refuse: Vec::new(),
                made: Vec::new(),
                notes: Vec::new(),
            }
        }

        fn decide_with(
            &self,
            status: &BackupPolicyStatus,
            jobs: &[ObservedJob],
            rejected: &[(String, String)],
            now: Timestamp,
        ) -> Plan {
            decide(&Inputs {
                policy: P,
                created: self.created,
                spec: &self.spec,
                schedule: self.schedule.as_ref(),
                status,
                jobs,
                backup_now: self.backup_now.as_deref(),
                rejected,
                now,
            })
        }

        fn decide(&self, now: &str) -> Plan {
            self.decide_with(&self.status, &self.jobs, &[], ts(now))
        }

        /// Pretends the API server created `new`.
        fn create(&mut self, new: &NewJob, now: Timestamp) {
            if self.jobs.iter().any(|job| job.name == new.name) {
                return; // AlreadyExists: the controller reads the existing Job instead.
            }
            self.made.push(new.name.clone());
            self.jobs.push(ObservedJob {
                name: new.name.clone(),
                outcome: JobOutcome::Running,
                start_time: Some(now),
                created: Some(now),
                stage: new.stage,
                scheduled_time: new.scheduled_time,
                request: new.request.clone().filter(|_| new.stage == Stage::Backup),
            });
        }

        /// One reconcile, as the controller runs it. Afterwards deciding again must change
        /// nothing, which every test thereby checks at every step.
        fn reconcile(&mut self, now: &str) -> Plan {
            let now = ts(now);
            let mut rejected = Vec::new();
            let mut rounds = 0;
            let plan = loop {
                let plan = self.decide_with(&self.status, &self.jobs, &rejected, now);
                let Some(new) = plan.create.clone() else {
                    self.notes.extend(plan.notes.iter().cloned());
                    break plan;
                };
                rounds += 1;
                assert!(rounds < 8, "decide keeps asking for Jobs: {new:?}");
                if self.refuse.contains(&new.name) {
                    // As the controller does: a refused Job did not start.
                    self.notes.extend(
                        plan.notes
                            .iter()
                            .filter(|n| !n.reason.ends_with("Started"))
                            .cloned(),
                    );
                    rejected.push((new.name.clone(), "spec.template: Required value".into()));
                } else {
                    self.notes.extend(plan.notes.iter().cloned());
                    self.create(&new, now);
                }
                self.status = plan.status.clone();
            };
            self.jobs.retain(|job| !plan.delete.contains(&job.name));
            let mut status = plan.status.clone();
            status.conditions = merge(&self.status.conditions, &plan.conditions, None, &Time(now));
            self.status = status;

            let again = self.decide_with(&self.status, &self.jobs, &[], now);
            assert_eq!(
                again.status, self.status,
                "deciding again changed the status"
            );
            assert_eq!(again.create, None, "deciding again created a Job");
            assert_eq!(again.delete, Vec::<String>::new());
            assert_eq!(again.notes, Vec::new(), "deciding again repeated notes");
            plan
        }

        fn finish(&mut self, name: &str, ok: bool, at: &str) {
            let job = self
                .jobs
                .iter_mut()
                .find(|job| job.name == name)
                .unwrap_or_else(|| panic!("no Job {name}"));
            job.outcome = if ok {
                succeeded(at)
            } else {
                JobOutcome::Failed {
                    at: ts(at),
                    message: "BackoffLimitExceeded".into(),
                }
            };
        }

        fn record(&self, job: &str) -> &BackupRecord {
            self.status
                .history
                .iter()
                .find(|record| record.job == job)
                .unwrap_or_else(|| panic!("no record of {job}"))
        }

        /// The reasons of the notes since the last call.
        fn reasons(&mut self) -> Vec<&'static str> {
            self.notes.drain(..).map(|note| note.reason).collect()
        }

        fn condition(&self, type_: &str) -> &Condition {
            self.status
                .conditions
                .iter()
                .find(|condition| condition.type_ == type_)
                .unwrap_or_else(|| panic!("no condition {type_}"))
        }

        fn running(&self) -> usize {
            self.jobs
                .iter()
                .filter(|job| job.outcome == JobOutcome::Running)
                .count()
        }
    }

    fn job_at(at: &str) -> String {
        scheduled_job_name(P, ts(at))
    }

    fn hourly() -> Sim {
        Sim::new(spec("0 * * * *"), "2026-03-01T00:00:00Z")
    }

    fn desired<'p>(plan: &'p Plan, type_: &str) -> Option<&'p Desired> {
        plan.conditions
            .iter()
            .find(|desired| desired.type_ == type_)
    }

    // --- names ---------------------------------------------------------------------------------

    #[test]
    fn names_are_deterministic_and_short_names_are_kept() {
        let at = ts("2026-03-01T01:00:00Z");
        assert_eq!(scheduled_job_name("db", at), "db-29538780");
        assert_eq!(
            scheduled_job_name("db", ts("2026-03-01T01:01:00Z")),
            "db-29538781"
        );
        assert_eq!(verify_job_name("db-29538780"), "db-29538780-verify");
        assert_eq!(prune_job_name("db-29538780"), "db-29538780-prune");
        let token = on_demand_job_name("db", "before-upgrade");
        assert_eq!(token, on_demand_job_name("db", "before-upgrade"));
        assert_eq!(token, format!("db-now-{:08x}", fnv("before-upgrade")));
        assert_ne!(token, on_demand_job_name("db", "before-upgrade-2"));
        assert_eq!(label_value("db"), "db");
    }

    #[test]
    fn long_names_are_hashed_and_fit() {
        let long = format!("{}-postgres", "a".repeat(60));
        let other = format!("{}-mysql", "a".repeat(60));
        let at = ts("2026-03-01T01:00:00Z");
        for name in [
            scheduled_job_name(&long, at),
            on_demand_job_name(&long, "tok"),
        ] {
            assert!(name.len() <= 52, "{name}");
            assert!(verify_job_name(&name).len() <= 63);
            assert!(name.contains(&format!("-{:08x}-", fnv(&long))), "{name}");
            assert!(!name.contains("--"), "{name}");
        }
        assert!(scheduled_job_name(&long, at).ends_with("-29538780"));
        assert_ne!(
            scheduled_job_name(&long, at),
            scheduled_job_name(&other, at)
        );
        assert_eq!(scheduled_job_name(&long, at), scheduled_job_name(&long, at));
        // A name of exactly 52 characters is kept; one more is hashed.
        let fits = "b".repeat(52 - 9);
        assert_eq!(scheduled_job_name(&fits, at), format!("{fits}-29538780"));
        let over = "b".repeat(52 - 8);
        assert_ne!(scheduled_job_name(&over, at), format!("{over}-29538780"));

        let label63 = "c".repeat(63);
        assert_eq!(label_value(&label63), label63);
        let label = label_value(&long);
        assert_eq!(label.len(), 63);
        assert!(label.ends_with(&format!("-{:08x}", fnv(&long))));
        // Trailing separators are trimmed before the hash.
        let dashed = format!("{}-{}", "d".repeat(53), "e".repeat(20));
        assert_eq!(
            label_value(&dashed),
            format!("{}-{:08x}", "d".repeat(53), fnv(&dashed))
        );
    }

    #[test]
    fn formats_durations_like_specs() {
        assert_eq!(format_duration(SignedDuration::from_hours(26)), "26h");
        assert_eq!(format_duration(mins(90)), "1h30m");
        assert_eq!(format_duration(SignedDuration::from_secs(45)), "45s");
        assert_eq!(
            format_duration(SignedDuration::from_millis(1500)),
            "1s500ms"
        );
        assert_eq!(format_duration(SignedDuration::ZERO), "0s");
    }

    // --- Jobs ------------------------------------------------------------------------------------

    fn policy() -> BackupPolicy {
        let mut policy = BackupPolicy::new(P, spec("0 * * * *"));
        policy.metadata.namespace = Some("data".into());
        policy.metadata.uid = Some("uid-1".into());
        policy
    }

    fn job_template() -> JobTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"team": "dba"}, "annotations": {"note": "keep"}},
            "spec": {"backoffLimit": 2, "template": {"spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": "wait", "image": "busybox"}],
                "containers": [
                    {"name": "dump", "image": "pg", "env": [
                        {"name": "BACKUP_SCHEDULED_TIME", "value": "mine"}
                    ]},
                    {"name": "upload", "image": "s3"}
                ]
            }}}
        }))
        .unwrap()
    }

    fn env_of(container: &Container) -> BTreeMap<String, String> {
        container
            .env
            .iter()
            .flatten()
            .map(|var| (var.name.clone(), var.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn build_job_labels_owns_and_injects_env() {
        let new = NewJob {
            name: "db-29538780".into(),
            stage: Stage::Backup,
            backup_job: "db-29538780".into(),
            scheduled_time: Some(ts("2026-03-01T01:00:00Z")),
            request: None,
            requested_at: ts("2026-03-01T01:00:02.5Z"),
        };
        let job = build_job(&policy(), &new, job_template());
        let meta = &job.metadata;
        assert_eq!(meta.name.as_deref(), Some("db-29538780"));
        assert_eq!(meta.namespace.as_deref(), Some("data"));
        let labels = meta.labels.clone().unwrap();
        assert_eq!(labels["team"], "dba");
        assert_eq!(labels[POLICY_LABEL], "db");
        assert_eq!(labels[STAGE_LABEL], "backup");
        assert!(!labels.contains_key(BACKUP_LABEL));
        let annotations = meta.annotations.clone().unwrap();
        assert_eq!(annotations["note"], "keep");
        assert_eq!(
            annotations[SCHEDULED_TIME_ANNOTATION],
            "2026-03-01T01:00:00Z"
        );
        assert!(!annotations.contains_key(BACKUP_NOW));
        let owners = meta.owner_references.clone().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].api_version, "ops.runbook.dev/v1alpha1");
        assert_eq!(owners[0].kind, "BackupPolicy");
        assert_eq!(owners[0].name, "db");
        assert_eq!(owners[0].uid, "uid-1");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].block_owner_deletion, Some(true));
        assert!(job.status.is_none());

        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        let pod = spec.template.spec.unwrap();
        let dump = env_of(&pod.containers[0]);
        assert_eq!(dump["BACKUP_SCHEDULED_TIME"], "mine", "a user-set var wins");
        assert_eq!(dump["BACKUP_JOB_NAME"], "db-29538780");
        assert_eq!(dump["BACKUP_POLICY"], "db");
        assert_eq!(pod.containers[0].env.as_ref().unwrap().len(), 3);
        let upload = env_of(&pod.containers[1]);
        assert_eq!(upload["BACKUP_SCHEDULED_TIME"], "2026-03-01T01:00:00Z");
        let init = env_of(&pod.init_containers.unwrap()[0]);
        assert_eq!(init["BACKUP_JOB_NAME"], "db-29538780");
    }

    #[test]
    fn build_job_for_verify_and_on_demand() {
        let verify = NewJob {
            name: "db-now-1-verify".into(),
            stage: Stage::Verify,
            backup_job: "db-now-1".into(),
            scheduled_time: None,
            request: Some("tok".into()),
            requested_at: ts("2026-03-01T01:00:02.5Z"),
        };
        let job = build_job(&policy(), &verify, job_template());
        let labels = job.metadata.labels.clone().unwrap();
        assert_eq!(labels[STAGE_LABEL], "verify");
        assert_eq!(labels[BACKUP_LABEL], "db-now-1");
        let annotations = job.metadata.annotations.clone().unwrap();
        assert!(!annotations.contains_key(BACKUP_NOW), "only the backup Job");
        assert!(!annotations.contains_key(SCHEDULED_TIME_ANNOTATION));
        let pod = job.spec.unwrap().template.spec.unwrap();
        let env = env_of(&pod.containers[1]);
        assert_eq!(env["BACKUP_JOB_NAME"], "db-now-1");
        assert_eq!(env["BACKUP_SCHEDULED_TIME"], "2026-03-01T01:00:02Z");

        let backup = NewJob {
            name: "db-now-1".into(),
            stage: Stage::Backup,
            ..verify
        };
        let job = build_job(&policy(), &backup, job_template());
        assert_eq!(job.metadata.annotations.unwrap()[BACKUP_NOW], "tok");
    }

    // --- scheduling ------------------------------------------------------------------------------

    #[test]
    fn nothing_fires_at_creation() {
        let mut sim = hourly();
        let plan = sim.reconcile("2026-03-01T00:00:01Z");
        assert_eq!(plan.create, None);
        assert!(sim.made.is_empty());
        assert_eq!(sim.status.last_schedule_time, None);
        assert_eq!(
            sim.status.next_schedule_time,
            Some(Time(ts("2026-03-01T01:00:00Z")))
        );
        assert_eq!(sim.status.phase.as_deref(), Some("Scheduled"));
        assert_eq!(plan.wake_at, Some(ts("2026-03-01T01:00:00Z")));
        assert!(plan.conditions.is_empty(), "no rpo, nothing finished yet");
    }

    #[test]
    fn due_time_creates_and_records_first() {
        let sim = hourly();
        let now = ts("2026-03-01T01:00:02Z");
        let plan = sim.decide("2026-03-01T01:00:02Z");
        let name = job_at("2026-03-01T01:00:00Z");
        let new = plan.create.clone().unwrap();
        assert_eq!(
            new,
            NewJob {
                name: name.clone(),
                stage: Stage::Backup,
                backup_job: name.clone(),
                scheduled_time: Some(ts("2026-03-01T01:00:00Z")),
                request: None,
                requested_at: now,
            }
        );
        // Recorded before it is created.
        let recorded = &plan.status.history[0];
        assert_eq!(recorded.job, name);
        assert_eq!(recorded.result, BackupResult::Running);
        assert_eq!(recorded.trigger, BackupTrigger::Schedule);
        assert_eq!(
            plan.status.last_schedule_time,
            Some(Time(ts("2026-03-01T01:00:00Z")))
        );
        assert_eq!(plan.status.phase.as_deref(), Some("Running"));
        assert_eq!(plan.notes[0].reason, "BackupStarted");
        assert!(plan.notes[0].message.contains(&name));

        // With the Job there, the next call is a no-op.
        let jobs = vec![ObservedJob {
            scheduled_time: new.scheduled_time,
            ..observed(&name, Stage::Backup, JobOutcome::Running)
        }];
        let again = sim.decide_with(&plan.status, &jobs, &[], now);
        assert_eq!(again.create, None);
        assert_eq!(again.status, plan.status);
        assert!(again.notes.is_empty());
    }

    /// A tiny deterministic generator, so the property test needs no dependency.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    #[test]
    fn property_one_job_per_time_and_never_two_at_once() {
        for seed in 1..=6u64 {
            let mut spec = spec("*/10 * * * *");
            spec.verify = follow_up();
            if seed.is_multiple_of(2) {
                spec.prune = follow_up();
                spec.schedule.starting_deadline = Some(Duration::from("15m"));
            }
            let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
            let schedule = sim.schedule.clone().unwrap();
            let mut rng = Lcg(seed);
            let mut now = sim.created;
            let mut last_scheduled = None;
            for step in 0..250 {
                now += SignedDuration::from_secs(30 + rng.below(13 * 60) as i64);
                // Jobs take 1 to 25 minutes; one in five fails.
                let finished: Vec<(String, bool, Timestamp)> = sim
                    .jobs
                    .iter()
                    .filter(|job| job.outcome == JobOutcome::Running)
                    .filter_map(|job| {
                        let hash = fnv(&job.name);
                        let end = job.created? + mins(1 + i64::from(hash % 25));
                        (end <= now).then(|| (job.name.clone(), !hash.is_multiple_of(5), end))
                    })
                    .collect();
                for (name, ok, end) in finished {
                    sim.finish(&name, ok, &end.to_string());
                }
                if step % 37 == 5 {
                    sim.backup_now = Some(format!("token-{step}"));
                }
                sim.reconcile(&now.to_string());

                assert!(sim.running() <= 1, "seed {seed} at {now}: {:?}", sim.jobs);
                let last = sim.status.last_schedule_time.clone().map(|t| t.0);
                assert!(last >= last_scheduled, "lastScheduleTime went back");
                last_scheduled = last;
            }
            let unique: BTreeSet<&String> = sim.made.iter().collect();
            assert_eq!(unique.len(), sim.made.len(), "a Job was created twice");
            let backups: Vec<&ObservedJob> = sim
                .jobs
                .iter()
                .filter(|job| job.stage == Stage::Backup)
                .collect();
            for job in &backups {
                if let Some(at) = job.scheduled_time {
                    assert!(at > sim.created);
                    assert_eq!(
                        schedule.latest_due(None, at),
                        Some(at),
                        "not a scheduled time"
                    );
                    assert_eq!(job.name, scheduled_job_name(P, at));
                }
            }
            let made_backups = sim
                .made
                .iter()
                .filter(|name| !name.ends_with("-verify") && !name.ends_with("-prune"))
                .count();
            assert!(
                made_backups > 25,
                "seed {seed}: only {made_backups} backups"
            );
            // The run met the cases it is meant to check.
            let reasons: BTreeSet<&str> = sim.notes.iter().map(|note| note.reason).collect();
            for reason in [
                "BackupDelayed",
                "BackupFailed",
                "BackupVerified",
                "BackupStarted",
            ] {
                assert!(reasons.contains(reason), "seed {seed}: no {reason}");
            }
        }
    }

    #[test]
    fn success_runs_verify_then_prune_and_a_failed_prune_keeps_the_backup_good() {
        let mut spec = spec("0 * * * *");
        spec.verify = follow_up();
        spec.prune = follow_up();
        let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
        let job = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.finish(&job, true, "2026-03-01T01:20:00Z");
        sim.reconcile("2026-03-01T01:20:01Z");
        assert_eq!(sim.made, vec![job.clone(), verify_job_name(&job)]);
        assert_eq!(sim.record(&job).stage, BackupStage::Verify);
        assert_eq!(sim.record(&job).result, BackupResult::Succeeded);
        assert_eq!(
            sim.record(&job).start_time,
            Some(Time(ts("2026-03-01T01:00:02Z")))
        );
        assert_eq!(
            sim.status.last_successful_time,
            Some(Time(ts("2026-03-01T01:20:00Z")))
        );
        assert_eq!(sim.status.phase.as_deref(), Some("Running"));
        assert_eq!(sim.reasons(), vec!["BackupStarted", "BackupSucceeded"]);

        sim.finish(&verify_job_name(&job), true, "2026-03-01T01:25:00Z");
        sim.reconcile("2026-03-01T01:25:01Z");
        assert_eq!(sim.made.last(), Some(&prune_job_name(&job)));
        assert_eq!(sim.record(&job).verified, Some(true));
        assert_eq!(sim.record(&job).stage, BackupStage::Prune);
        // The backup's finish time, not the verification's.
        assert_eq!(
            sim.status.last_verified_time,
            Some(Time(ts("2026-03-01T01:20:00Z")))
        );
        assert_eq!(sim.reasons(), vec!["BackupVerified"]);

        sim.finish(&prune_job_name(&job), false, "2026-03-01T01:26:00Z");
        let plan = sim.reconcile("2026-03-01T01:26:01Z");
        let record = sim.record(&job);
        assert_eq!(record.pruned, Some(false));
        assert_eq!(record.stage, BackupStage::Done);
        assert!(record.message.as_deref().unwrap().contains("prune Job"));
        assert_eq!(sim.reasons(), vec!["PruneFailed"]);
        let last = desired(&plan, LAST_BACKUP_SUCCEEDED).unwrap();
        assert_eq!(
            (last.status, last.reason.as_str()),
            (Status::True, "Verified")
        );
        assert_eq!(sim.status.phase.as_deref(), Some("Scheduled"));
        assert_eq!(sim.made.len(), 3);
    }

    #[test]
    fn failed_verification_stops_before_prune() {
        let mut spec = spec("0 * * * *");
        spec.verify = follow_up();
        spec.prune = follow_up();
        let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
        let job = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.finish(&job, true, "2026-03-01T01:20:00Z");
        sim.reconcile("2026-03-01T01:20:01Z");
        sim.finish(&verify_job_name(&job), false, "2026-03-01T01:25:00Z");
        sim.notes.clear();
        let plan = sim.reconcile("2026-03-01T01:25:01Z");
        assert_eq!(plan.create, None);
        assert_eq!(sim.made, vec![job.clone(), verify_job_name(&job)]);
        let record = sim.record(&job);
        assert_eq!(record.verified, Some(false));
        assert_eq!(record.pruned, None);
        assert_eq!(record.stage, BackupStage::Done);
        assert!(
            record
                .message
                .as_deref()
                .unwrap()
                .contains("verification Job")
        );
        assert_eq!(sim.status.last_verified_time, None);
        let note = &sim.notes[0];
        assert_eq!(note.reason, "VerificationFailed");
        assert!(
            note.message
                .contains("pruning could delete the last good backup")
        );
        let last = desired(&plan, LAST_BACKUP_SUCCEEDED).unwrap();
        assert_eq!(
            (last.status, last.reason.as_str()),
            (Status::False, "VerificationFailed")
        );
        assert!(last.message.contains(&job));
    }

    #[test]
    fn a_due_time_waits_while_a_backup_runs() {
        let mut sim = hourly();
        let first = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.reasons();

        sim.reconcile("2026-03-01T02:00:01Z");
        assert_eq!(sim.made, vec![first.clone()]);
        let second = job_at("2026-03-01T02:00:00Z");
        let pending = &sim.status.history[0];
        assert_eq!(
            (pending.job.as_str(), pending.result),
            (second.as_str(), BackupResult::Pending)
        );
        assert_eq!(
            pending.message.as_deref(),
            Some(format!("waiting for {first} to finish").as_str())
        );
        assert_eq!(sim.reasons(), vec!["BackupDelayed"]);

        // A newer time replaces the waiting one.
        sim.reconcile("2026-03-01T03:00:01Z");
        let third = job_at("2026-03-01T03:00:00Z");
        let pending: Vec<&str> = sim
            .status
            .history
            .iter()
            .filter(|record| record.result == BackupResult::Pending)
            .map(|record| record.job.as_str())
            .collect();
        assert_eq!(pending, vec![third.as_str()]);
        assert_eq!(sim.reasons(), vec!["BackupSkipped", "BackupDelayed"]);

        sim.finish(&first, true, "2026-03-01T03:10:00Z");
        sim.reconcile("2026-03-01T03:10:01Z");
        assert_eq!(sim.made, vec![first.clone(), third.clone()]);
        assert_eq!(sim.record(&third).result, BackupResult::Running);
        assert_eq!(
            sim.record(&third).scheduled_time,
            Some(Time(ts("2026-03-01T03:00:00Z")))
        );
        let started = sim.notes.last().unwrap();
        assert_eq!(started.reason, "BackupStarted");
        assert!(
            started.message.contains(&format!("waited for {first}")),
            "{}",
            started.message
        );
    }

    #[test]
    fn pending_past_the_starting_deadline_is_skipped() {
        let mut spec = spec("0 * * * *");
        spec.schedule.starting_deadline = Some(Duration::from("30m"));
        let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
        let first = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.reconcile("2026-03-01T02:00:01Z");
        sim.finish(&first, true, "2026-03-01T02:40:00Z");
        sim.reasons();
        sim.reconcile("2026-03-01T02:40:01Z");
        assert_eq!(sim.made, vec![first]);
        assert!(
            sim.status
                .history
                .iter()
                .all(|r| r.result != BackupResult::Pending)
        );
        assert_eq!(sim.reasons(), vec!["BackupSucceeded", "BackupSkipped"]);
    }

    #[test]
    fn after_downtime_only_the_latest_runs() {
        let mut sim = hourly();
        let first = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.finish(&first, true, "2026-03-01T01:10:00Z");
        sim.reconcile("2026-03-01T01:10:00Z");
        sim.reasons();
        // Down from 01:10 to 04:30: 02:00, 03:00 and 04:00 came due.
        sim.reconcile("2026-03-01T04:30:00Z");
        assert_eq!(sim.made, vec![first, job_at("2026-03-01T04:00:00Z")]);
        let note = &sim.notes[0];
        assert_eq!(note.reason, "BackupStarted");
        assert!(
            note.message.contains("catch-up: 3 scheduled times"),
            "{}",
            note.message
        );
    }

    #[test]
    fn after_downtime_past_the_deadline_nothing_runs() {
        let mut spec = spec("0 * * * *");
        spec.schedule.starting_deadline = Some(Duration::from("10m"));
        let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
        sim.reconcile("2026-03-01T00:30:00Z");
        let plan = sim.reconcile("2026-03-01T04:30:00Z");
        assert!(sim.made.is_empty());
        assert_eq!(
            sim.status.last_schedule_time,
            Some(Time(ts("2026-03-01T04:00:00Z")))
        );
        assert_eq!(plan.wake_at, Some(ts("2026-03-01T05:00:00Z")));
        let note = &sim.notes[0];
        assert_eq!(
            (note.reason, &note.type_),
            ("BackupSkipped", &EventType::Warning)
        );
        assert!(
            note.message.contains("startingDeadline 10m"),
            "{}",
            note.message
        );
        assert!(
            note.message.contains("4 scheduled times"),
            "{}",
            note.message
        );
        assert!(
            note.message.contains("2026-03-01T05:00:00Z"),
            "{}",
            note.message
        );
        // The next one runs on time.
        sim.reconcile("2026-03-01T05:00:03Z");
        assert_eq!(sim.made, vec![job_at("2026-03-01T05:00:00Z")]);
    }

    #[test]
    fn unsuspending_does_not_fire_a_backlog() {
        let mut sim = hourly();
        sim.reconcile("2026-03-01T00:30:00Z");
        sim.spec.schedule.suspend = Some(true);
        let plan = sim.reconcile("2026-03-01T01:30:00Z");
        assert_eq!(sim.status.phase.as_deref(), Some("Suspended"));
        assert_eq!(sim.status.next_schedule_time, None);
        assert_eq!(plan.wake_at, None);
        sim.reconcile("2026-03-01T05:30:00Z");
        assert!(sim.made.is_empty());

        sim.spec.schedule.suspend = None;
        sim.reconcile("2026-03-01T05:40:00Z");
        assert!(sim.made.is_empty());
        assert_eq!(
            sim.status.last_schedule_time,
            Some(Time(ts("2026-03-01T05:00:00Z")))
        );
        let note = sim.notes.last().unwrap();
        assert_eq!(note.reason, "BackupSkipped");
        assert!(
            note.message.starts_with("5 scheduled backup(s)"),
            "{}",
            note.message
        );
        assert_eq!(sim.status.phase.as_deref(), Some("Scheduled"));
        sim.reconcile("2026-03-01T06:00:01Z");
        assert_eq!(sim.made, vec![job_at("2026-03-01T06:00:00Z")]);
    }

    #[test]
    fn unsuspending_while_a_backup_runs_does_not_fire_a_backlog() {
        let mut sim = hourly();
        sim.backup_now = Some("a".into());
        sim.spec.schedule.suspend = Some(true);
        sim.reconcile("2026-03-01T00:30:00Z");
        assert_eq!(sim.status.phase.as_deref(), Some("Running"));
        sim.spec.schedule.suspend = None;
        sim.reconcile("2026-03-01T02:30:00Z");
        assert_eq!(sim.made, vec![on_demand_job_name(P, "a")]);
        assert!(
            sim.status
                .history
                .iter()
                .all(|r| r.result != BackupResult::Pending)
        );
    }

    #[test]
    fn suspending_drops_the_waiting_backup_and_backup_now_still_works() {
        let mut sim = hourly();
        let first = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.reconcile("2026-03-01T02:00:01Z");
        sim.spec.schedule.suspend = Some(true);
        sim.reasons();
        sim.reconcile("2026-03-01T02:05:00Z");
        assert!(
            sim.status
                .history
                .iter()
                .all(|r| r.result != BackupResult::Pending)
        );
        assert_eq!(sim.reasons(), vec!["BackupSkipped"]);
        assert_eq!(
            sim.status.phase.as_deref(),
            Some("Running"),
            "the first still runs"
        );

        sim.finish(&first, true, "2026-03-01T02:10:00Z");
        sim.reconcile("2026-03-01T02:10:01Z");
        assert_eq!(sim.status.phase.as_deref(), Some("Suspended"));
        sim.backup_now = Some("manual".into());
        sim.reconcile("2026-03-01T02:20:00Z");
        let on_demand = on_demand_job_name(P, "manual");
        assert_eq!(sim.made, vec![first, on_demand.clone()]);
        let record = sim.record(&on_demand);
        assert_eq!(record.trigger, BackupTrigger::BackupNow);
        assert_eq!(record.request.as_deref(), Some("manual"));
    }

    #[test]
    fn backup_now_runs_once_per_token_and_waits_while_busy() {
        let mut sim = hourly();
        sim.backup_now = Some("a".into());
        sim.reconcile("2026-03-01T00:10:00Z");
        let a = on_demand_job_name(P, "a");
        assert_eq!(sim.made, vec![a.clone()]);
        assert_eq!(sim.status.last_handled_backup_now.as_deref(), Some("a"));
        sim.reconcile("2026-03-01T00:11:00Z");
        assert_eq!(sim.made.len(), 1, "same token, nothing new");

        // A new token while the backup runs waits, unrecorded.
        sim.backup_now = Some("b".into());
        sim.reconcile("2026-03-01T00:12:00Z");
        assert_eq!(sim.made.len(), 1);
        assert_eq!(sim.status.last_handled_backup_now.as_deref(), Some("a"));
        sim.finish(&a, true, "2026-03-01T00:20:00Z");
        sim.reconcile("2026-03-01T00:20:01Z");
        let b = on_demand_job_name(P, "b");
        assert_eq!(sim.made, vec![a.clone(), b.clone()]);
        sim.finish(&b, true, "2026-03-01T00:30:00Z");
        sim.reconcile("2026-03-01T00:30:01Z");

        // Reusing a token is refused once, with a Warning.
        sim.backup_now = Some("a".into());
        sim.reasons();
        sim.reconcile("2026-03-01T00:40:00Z");
        assert_eq!(sim.made.len(), 2);
        assert_eq!(sim.reasons(), vec!["BackupNowIgnored"]);
        assert_eq!(sim.status.last_handled_backup_now.as_deref(), Some("a"));
    }

    #[test]
    fn a_waiting_scheduled_backup_goes_before_a_token() {
        let mut sim = hourly();
        let first = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.reconcile("2026-03-01T02:00:01Z");
        sim.backup_now = Some("t".into());
        sim.finish(&first, true, "2026-03-01T02:10:00Z");
        sim.reconcile("2026-03-01T02:10:01Z");
        let second = job_at("2026-03-01T02:00:00Z");
        assert_eq!(sim.made, vec![first, second.clone()]);
        sim.finish(&second, true, "2026-03-01T02:20:00Z");
        sim.reconcile("2026-03-01T02:20:01Z");
        assert_eq!(sim.made.last(), Some(&on_demand_job_name(P, "t")));
    }

    #[test]
    fn a_job_created_but_not_recorded_is_adopted() {
        let mut sim = hourly();
        sim.reconcile("2026-03-01T00:30:00Z");
        let stored = sim.status.clone();
        // The process creates the Job and dies before writing status.
        let plan = sim.decide("2026-03-01T01:00:02Z");
        sim.create(&plan.create.unwrap(), ts("2026-03-01T01:00:02Z"));
        sim.status = stored;
        sim.reconcile("2026-03-01T01:00:30Z");
        let job = job_at("2026-03-01T01:00:00Z");
        assert_eq!(sim.made, vec![job.clone()], "no second Job");
        assert_eq!(sim.record(&job).result, BackupResult::Running);
        assert_eq!(
            sim.status.last_schedule_time,
            Some(Time(ts("2026-03-01T01:00:00Z")))
        );

        // The same for a token, after that Job finished unobserved.
        sim.finish(&job, true, "2026-03-01T01:05:00Z");
        sim.reconcile("2026-03-01T01:05:01Z");
        sim.backup_now = Some("t".into());
        let stored = sim.status.clone();
        let plan = sim.decide("2026-03-01T01:10:00Z");
        sim.create(&plan.create.unwrap(), ts("2026-03-01T01:10:00Z"));
        let token_job = on_demand_job_name(P, "t");
        sim.finish(&token_job, true, "2026-03-01T01:15:00Z");
        sim.status = stored;
        sim.reconcile("2026-03-01T01:20:00Z");
        assert_eq!(sim.made, vec![job, token_job.clone()]);
        assert_eq!(sim.status.last_handled_backup_now.as_deref(), Some("t"));
        assert_eq!(sim.record(&token_job).result, BackupResult::Succeeded);
        assert_eq!(sim.record(&token_job).trigger, BackupTrigger::BackupNow);
    }

    #[test]
    fn a_pending_backup_whose_job_exists_is_not_created_again() {
        let mut sim = hourly();
        let first = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.reconcile("2026-03-01T02:00:01Z");
        sim.finish(&first, true, "2026-03-01T02:10:00Z");
        let stored = sim.status.clone();
        let plan = sim.decide("2026-03-01T02:10:01Z");
        sim.create(&plan.create.unwrap(), ts("2026-03-01T02:10:01Z"));
        sim.status = stored;
        sim.notes.clear();
        sim.reconcile("2026-03-01T02:10:30Z");
        let second = job_at("2026-03-01T02:00:00Z");
        assert_eq!(sim.made, vec![first, second.clone()]);
        assert_eq!(sim.record(&second).result, BackupResult::Running);
    }

    #[test]
    fn unrecorded_old_jobs_are_not_adopted() {
        let mut sim = hourly();
        sim.status.last_schedule_time = Some(Time(ts("2026-03-01T05:00:00Z")));
        sim.status.phase = Some("Scheduled".into());
        sim.jobs.push(ObservedJob {
            scheduled_time: Some(ts("2026-03-01T04:00:00Z")),
            ..observed(
                &job_at("2026-03-01T04:00:00Z"),
                Stage::Backup,
                succeeded("2026-03-01T04:10:00Z"),
            )
        });
        let plan = sim.decide("2026-03-01T05:30:00Z");
        assert!(plan.status.history.is_empty());
        assert_eq!(plan.create, None);
    }

    #[test]
    fn a_rejected_job_is_recorded_and_the_next_time_still_runs() {
        let mut sim = hourly();
        let first = job_at("2026-03-01T01:00:00Z");
        sim.refuse.push(first.clone());
        let plan = sim.reconcile("2026-03-01T01:00:02Z");
        assert!(sim.made.is_empty());
        let record = sim.record(&first);
        assert_eq!(record.result, BackupResult::Failed);
        assert_eq!(record.stage, BackupStage::Done);
        assert_eq!(
            record.message.as_deref(),
            Some(
                format!(
                    "the API server rejected Job {first} made from spec.jobTemplate: \
                     spec.template: Required value"
                )
                .as_str()
            )
        );
        assert_eq!(sim.reasons(), vec!["JobRejected"]);
        let last = desired(&plan, LAST_BACKUP_SUCCEEDED).unwrap();
        assert_eq!(
            (last.status, last.reason.as_str()),
            (Status::False, "JobRejected")
        );
        assert_eq!(sim.status.phase.as_deref(), Some("Scheduled"));

        sim.reconcile("2026-03-01T02:00:02Z");
        assert_eq!(sim.made, vec![job_at("2026-03-01T02:00:00Z")]);
    }

    #[test]
    fn a_rejected_verify_job_names_its_template() {
        let mut spec = spec("0 * * * *");
        spec.verify = follow_up();
        let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
        let job = job_at("2026-03-01T01:00:00Z");
        sim.refuse.push(verify_job_name(&job));
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.finish(&job, true, "2026-03-01T01:10:00Z");
        sim.notes.clear();
        let plan = sim.reconcile("2026-03-01T01:10:01Z");
        let rejected = sim
            .notes
            .iter()
            .find(|n| n.reason == "JobRejected")
            .unwrap();
        assert!(
            rejected.message.contains("spec.verify.jobTemplate"),
            "{}",
            rejected.message
        );
        assert_eq!(sim.record(&job).verified, Some(false));
        let last = desired(&plan, LAST_BACKUP_SUCCEEDED).unwrap();
        assert_eq!(
            (last.status, last.reason.as_str()),
            (Status::False, "JobRejected")
        );
    }

    #[test]
    fn a_job_deleted_while_running_fails_the_backup() {
        let mut sim = hourly();
        let job = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.jobs.clear();
        sim.reasons();
        sim.reconcile("2026-03-01T01:05:00Z");
        let record = sim.record(&job);
        assert_eq!(record.result, BackupResult::Failed);
        assert_eq!(
            record.message.as_deref(),
            Some(format!("Job {job} was deleted before it finished").as_str())
        );
        assert_eq!(sim.reasons(), vec!["BackupFailed"]);
    }

    #[test]
    fn an_invalid_spec_starts_nothing() {
        let mut sim = Sim::new(spec("not cron"), "2026-03-01T00:00:00Z");
        sim.spec.verify = follow_up();
        sim.backup_now = Some("t".into());
        sim.status.history = vec![record("db-1", BackupResult::Running, BackupStage::Backup)];
        sim.jobs = vec![observed(
            "db-1",
            Stage::Backup,
            succeeded("2026-03-01T01:00:00Z"),
        )];
        let plan = sim.reconcile("2026-03-01T05:00:00Z");
        assert_eq!(plan.create, None);
        assert!(sim.made.is_empty());
        assert_eq!(sim.status.phase.as_deref(), Some("Invalid"));
        assert_eq!(sim.status.next_schedule_time, None);
        assert_eq!(
            sim.record("db-1").stage,
            BackupStage::Verify,
            "waits for a valid spec"
        );
        assert_eq!(sim.status.last_handled_backup_now, None);
    }

    // --- retention and history -------------------------------------------------------------------

    #[test]
    fn retention_deletes_the_oldest_beyond_the_limits() {
        let mut sim = hourly();
        use BackupResult::{Failed, Succeeded};
        // Newest first: 5 good, 3 bad (one of them a failed verification).
        sim.status.history = vec![
            done("g0", Succeeded, None),
            done("g1", Succeeded, Some(true)),
            done("b0", Succeeded, Some(false)),
            done("g2", Succeeded, None),
            done("g3", Succeeded, None),
            done("b1", Failed, None),
            done("g4", Succeeded, None),
            done("b2", Failed, None),
        ];
        sim.status.phase = Some("Scheduled".into());
        let ok = || succeeded("2026-03-01T00:10:00Z");
        for name in ["g0", "g1", "b0", "g2", "g3", "g4", "b2"] {
            sim.jobs.push(observed(name, Stage::Backup, ok()));
        }
        sim.jobs.push(observed("g3-verify", Stage::Verify, ok()));
        sim.jobs.push(observed("g1-verify", Stage::Verify, ok()));
        let plan = sim.decide("2026-03-01T00:30:00Z");
        // b1's Job is already gone, so it is not deleted again.
        assert_eq!(plan.delete, vec!["b2", "g4", "g3", "g3-verify"]);
        assert_eq!(plan.status.history.len(), 8, "records stay");

        sim.spec.retention = Some(Retention {
            successful_jobs: Some(0),
            failed_jobs: Some(5),
        });
        let plan = sim.decide("2026-03-01T00:30:00Z");
        assert_eq!(
            plan.delete,
            vec!["g4", "g3", "g3-verify", "g2", "g1", "g1-verify", "g0"]
        );
    }

    #[test]
    fn retention_reaches_jobs_whose_records_left_history() {
        let mut sim = hourly();
        sim.spec.retention = Some(Retention {
            successful_jobs: Some(1),
            failed_jobs: Some(1),
        });
        sim.status.history = vec![done("new", BackupResult::Succeeded, None)];
        sim.status.phase = Some("Scheduled".into());
        let old = |name: &str, at: &str, outcome: JobOutcome| ObservedJob {
            created: Some(ts(at)),
            ..observed(name, Stage::Backup, outcome)
        };
        sim.jobs = vec![
            observed("new", Stage::Backup, succeeded("2026-03-01T00:10:00Z")),
            old(
                "older",
                "2026-02-20T00:00:00Z",
                succeeded("2026-02-20T00:10:00Z"),
            ),
            old(
                "oldest",
                "2026-02-10T00:00:00Z",
                succeeded("2026-02-10T00:10:00Z"),
            ),
            old(
                "broken",
                "2026-02-15T00:00:00Z",
                JobOutcome::Failed {
                    at: ts("2026-02-15T00:10:00Z"),
                    message: "x".into(),
                },
            ),
        ];
        let plan = sim.decide("2026-03-01T00:30:00Z");
        assert_eq!(plan.delete, vec!["oldest", "older"]);
    }

    #[test]
    fn history_keeps_ten_plus_the_unfinished() {
        let mut sim = hourly();
        sim.status.phase = Some("Running".into());
        sim.status.next_schedule_time = Some(Time(ts("2026-03-01T01:00:00Z")));
        sim.status.history = (0..11)
            .map(|i| done(&format!("old-{i}"), BackupResult::Succeeded, None))
            .collect();
        sim.status
            .history
            .push(record("slow", BackupResult::Running, BackupStage::Backup));
        sim.jobs = vec![observed("slow", Stage::Backup, JobOutcome::Running)];
        let plan = sim.decide("2026-03-01T00:30:00Z");
        let names: Vec<&str> = plan.status.history.iter().map(|r| r.job.as_str()).collect();
        let mut expected: Vec<String> = (0..10).map(|i| format!("old-{i}")).collect();
        expected.push("slow".into());
        assert_eq!(names, expected);
    }

    // --- conditions ------------------------------------------------------------------------------

    fn daily_with_rpo(rpo: &str) -> Sim {
        let mut spec = spec("0 1 * * *");
        spec.rpo = Some(Duration::from(rpo));
        Sim::new(spec, "2026-03-01T00:00:00Z")
    }

    #[test]
    fn backup_fresh_flips_at_the_exact_instant() {
        let mut sim = daily_with_rpo("2h");
        let job = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.finish(&job, true, "2026-03-01T01:10:00Z");
        sim.reconcile("2026-03-01T01:10:01Z");
        let plan = sim.reconcile("2026-03-01T03:09:59Z");
        let fresh = sim.condition(BACKUP_FRESH);
        assert_eq!(
            (fresh.status.as_str(), fresh.reason.as_str()),
            ("True", "WithinRPO")
        );
        assert!(
            fresh.message.contains("fresh until 2026-03-01T03:10:00Z"),
            "{}",
            fresh.message
        );
        assert_eq!(plan.wake_at, Some(ts("2026-03-01T03:10:00Z")));
        sim.reasons();

        // The timer fires a few seconds late; the condition says when it really flipped.
        let plan = sim.reconcile("2026-03-01T03:10:04Z");
        let fresh = sim.condition(BACKUP_FRESH);
        assert_eq!(
            (fresh.status.as_str(), fresh.reason.as_str()),
            ("False", "RPOViolated")
        );
        assert_eq!(fresh.last_transition_time, Time(ts("2026-03-01T03:10:00Z")));
        assert_eq!(plan.wake_at, Some(ts("2026-03-02T01:00:00Z")));
        assert_eq!(sim.reasons(), vec!["RPOViolated"]);
        sim.reconcile("2026-03-01T04:00:00Z");
        assert!(sim.reasons().is_empty(), "reported once");

        let next = job_at("2026-03-02T01:00:00Z");
        sim.reconcile("2026-03-02T01:00:01Z");
        sim.finish(&next, true, "2026-03-02T01:05:00Z");
        sim.reasons();
        sim.reconcile("2026-03-02T01:05:01Z");
        assert_eq!(sim.condition(BACKUP_FRESH).status, "True");
        assert_eq!(sim.reasons(), vec!["BackupSucceeded", "BackupFresh"]);
    }

    #[test]
    fn backup_fresh_counts_from_verified_backups_when_verify_is_set() {
        let mut sim = daily_with_rpo("2h");
        sim.spec.verify = follow_up();
        let job = job_at("2026-03-01T01:00:00Z");
        sim.reconcile("2026-03-01T01:00:02Z");
        sim.finish(&job, true, "2026-03-01T01:10:00Z");
        let plan = sim.reconcile("2026-03-01T01:10:01Z");
        let fresh = desired(&plan, BACKUP_FRESH).unwrap();
        assert_eq!(
            fresh.status,
            Status::Unknown,
            "succeeded but not yet verified"
        );
        assert!(
            fresh.message.contains("no verified backup"),
            "{}",
            fresh.message
        );
        sim.finish(&verify_job_name(&job), true, "2026-03-01T01:30:00Z");
        let plan = sim.reconcile("2026-03-01T01:30:01Z");
        let fresh = desired(&plan, BACKUP_FRESH).unwrap();
        assert_eq!(fresh.status, Status::True);
        // Counted from the backup's finish, not the verification's.
        assert_eq!(plan.wake_at, Some(ts("2026-03-01T03:10:00Z")));
        assert!(
            fresh
                .message
                .starts_with("newest verified backup finished at 2026-03-01T01:10:00Z")
        );
    }

    #[test]
    fn backup_fresh_before_the_first_backup() {
        let mut sim = daily_with_rpo("30m");
        let plan = sim.reconcile("2026-03-01T00:10:00Z");
        let fresh = desired(&plan, BACKUP_FRESH).unwrap();
        assert_eq!(
            (fresh.status, fresh.reason.as_str()),
            (Status::Unknown, "AwaitingFirstBackup")
        );
        assert_eq!(plan.wake_at, Some(ts("2026-03-01T00:30:00Z")));
        sim.reconcile("2026-03-01T00:30:00Z");
        let fresh = sim.condition(BACKUP_FRESH);
        assert_eq!(fresh.status, "False");
        assert_eq!(fresh.last_transition_time, Time(ts("2026-03-01T00:30:00Z")));
        assert!(
            fresh
                .message
                .contains("since the policy was created at 2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn a_flip_in_a_reconcile_that_creates_a_job_is_reported_once() {
        // rpo runs out at 01:00, the very instant the first backup is due.
        let mut sim = daily_with_rpo("1h");
        sim.reconcile("2026-03-01T00:10:00Z");
        sim.reasons();
        sim.reconcile("2026-03-01T01:00:02Z");
        assert_eq!(sim.made, vec![job_at("2026-03-01T01:00:00Z")]);
        assert_eq!(sim.reasons(), vec!["BackupStarted", "RPOViolated"]);
        assert_eq!(sim.condition(BACKUP_FRESH).status, "False");
    }

    #[test]
    fn schedule_meets_rpo_compares_the_longest_gap() {
        let now = ts("2026-03-01T00:00:00Z");
        let check = |cron: &str, zone: &str, rpo: i64| {
            let schedule = Schedule::parse(cron, Some(zone)).unwrap();
            schedule_meets_rpo(&schedule, SignedDuration::from_secs(rpo), now)
        };
        let minutely = check("* * * * *", "UTC", 30);
        assert_eq!(
            (minutely.status, minutely.reason.as_str()),
            (Status::False, "RPOShorterThanSchedule")
        );
        assert!(minutely.message.starts_with(
            "spec.rpo (30s) is shorter than the longest gap between scheduled backups (1m)"
        ));
        let daily = check("0 1 * * *", "Australia/Sydney", 26 * 3600);
        assert_eq!(
            (daily.status, daily.reason.as_str()),
            (Status::True, "Achievable")
        );
        // The night Sydney's clocks fall back (April) is 25 hours long.
        let tight = check("0 1 * * *", "Australia/Sydney", 24 * 3600);
        assert_eq!(tight.status, Status::False);
        assert!(tight.message.contains("(25h)"), "{}", tight.message);
        let never = check("0 0 30 2 *", "UTC", 3600);
        assert_eq!(never.reason, "NoUpcomingBackups");
    }

    #[test]
    fn plan_reports_schedule_meets_rpo_only_with_rpo() {
        let sim = daily_with_rpo("26h");
        let plan = sim.decide("2026-03-01T00:10:00Z");
        assert_eq!(
            desired(&plan, SCHEDULE_MEETS_RPO).unwrap().status,
            Status::True
        );
        let sim = hourly();
        assert!(desired(&sim.decide("2026-03-01T00:10:00Z"), SCHEDULE_MEETS_RPO).is_none());
    }

    #[test]
    fn spring_forward_gap_runs_once_at_the_jump() {
        let mut spec = spec("30 2 * * *");
        spec.schedule.time_zone = Some("Australia/Sydney".into());
        let mut sim = Sim::new(spec, "2026-10-01T00:00:00Z");
        // 02:30 AEST on 3 October.
        sim.status.last_schedule_time = Some(Time(ts("2026-10-02T16:30:00Z")));
        sim.status.phase = Some("Scheduled".into());
        // 4 October: 02:00 AEST becomes 03:00 AEDT, so 02:30 runs at 03:00 AEDT (16:00 UTC).
        sim.reconcile("2026-10-03T15:59:00Z");
        assert!(sim.made.is_empty());
        sim.reconcile("2026-10-03T16:00:05Z");
        let jump = job_at("2026-10-03T16:00:00Z");
        assert_eq!(sim.made, vec![jump.clone()]);
        sim.finish(&jump, true, "2026-10-03T16:10:00Z");
        sim.reconcile("2026-10-03T16:30:05Z");
        assert_eq!(sim.made.len(), 1);
        assert_eq!(
            sim.status.next_schedule_time,
            Some(Time(ts("2026-10-04T15:30:00Z")))
        );
    }
}

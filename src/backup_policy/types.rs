//! The BackupPolicy custom resource: scheduled backup Jobs with retention, verification and
//! a recovery-point objective.

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::embedded::Embedded;

/// A backup policy: one Job per scheduled time (never two at once), an optional verification
/// and prune Job after each success, retention of finished Jobs, and a `BackupFresh`
/// condition that turns False when the newest good backup is older than the RPO.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ops.runbook.dev",
    version = "v1alpha1",
    kind = "BackupPolicy",
    plural = "backuppolicies",
    namespaced,
    status = "BackupPolicyStatus",
    shortname = "bp",
    category = "ops",
    doc = "Scheduled backup Jobs with retention, verification and a recovery-point objective (RPO) reported as the BackupFresh condition.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.schedule.cron",
        description = "Cron schedule"
    ),
    printcolumn(
        name = "Last Success",
        type_ = "date",
        json_path = ".status.lastSuccessfulTime",
        description = "When the newest successful backup finished"
    ),
    printcolumn(
        name = "Fresh",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"BackupFresh\")].status",
        description = "Newest good backup is within the RPO"
    ),
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        description = "Next scheduled backup (UTC)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
/// Specification of a BackupPolicy.
pub struct BackupPolicySpec {
    /// When backups run.
    pub schedule: BackupSchedule,
    /// The backup Job (a batch/v1 JobTemplateSpec), created once per scheduled time.
    pub job_template: Embedded<JobTemplateSpec>,
    /// A Job run after each successful backup, with env BACKUP_JOB_NAME and
    /// BACKUP_SCHEDULED_TIME; a failure marks the backup unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<JobStage>,
    /// How many finished backup Jobs to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// A Job run after each success to prune old backups in the backup store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<JobStage>,
    /// How to restore a backup: a Job a Runbook's `restore` step runs, with env
    /// BACKUP_JOB_NAME and BACKUP_SCHEDULED_TIME of the backup it restores. The newest
    /// restore is kept in `status.lastRestore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<JobStage>,
    /// Recovery-point objective: BackupFresh turns False when the newest good backup is
    /// older than this (e.g. `26h` for a daily backup). At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
    /// ServiceAccount of this namespace whose rights the policy uses to create and delete its
    /// backup, verify and prune Jobs.
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
    /// Messages when a backup fails (BackupFailed: `LastBackupSucceeded` turns False) or the
    /// newest backup ages past the RPO (RpoViolated: `BackupFresh` turns False with reason
    /// RPOViolated), with escalation until the policy's `ops.runbook.dev/acknowledged`
    /// annotation holds the event id (`status.sentNotifications[].eventId`). Each message is
    /// sent once per event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::notifications::MAX_RULES))]
    pub notifications: Vec<crate::notifications::Notification>,
}

/// Backup schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSchedule {
    /// 5-field cron expression, e.g. `0 1 * * *`.
    #[schemars(length(min = 1, max = 128))]
    pub cron: String,
    /// IANA time zone of the cron expression (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Pause scheduled backups; on-demand backups still run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// A backup that could not start within this long after its time is skipped; after
    /// downtime at most one catch-up backup runs, and only within this deadline.
    /// At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<Duration>,
}

/// A follow-up Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStage {
    /// The Job to create (a batch/v1 JobTemplateSpec).
    pub job_template: Embedded<JobTemplateSpec>,
}

/// Retention of finished backup Jobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Successful backup Jobs to keep (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub successful_jobs: Option<i32>,
    /// Failed backup Jobs to keep (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub failed_jobs: Option<i32>,
}

/// What started a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum BackupTrigger {
    /// A scheduled time of `spec.schedule.cron`.
    Schedule,
    /// The annotation `ops.runbook.dev/backup-now` (set by a person or a Runbook backup step).
    BackupNow,
}

/// How a backup Job ended, or that it has not yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum BackupResult {
    /// A scheduled time came due while another backup ran; it starts when that one is done.
    Pending,
    /// The backup Job is running.
    Running,
    /// The backup Job completed.
    Succeeded,
    /// The backup Job failed, was rejected by the API server or was deleted before it ended.
    Failed,
}

/// Which Job of a backup runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum BackupStage {
    /// The backup Job itself (also while Pending).
    Backup,
    /// The verify Job (`<job>-verify`).
    Verify,
    /// The prune Job (`<job>-prune`).
    Prune,
    /// Nothing more runs for this backup.
    Done,
}

/// One backup: the backup Job and what ran after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// Backup Job name; its verify and prune Jobs are `<job>-verify` and `<job>-prune`.
    pub job: String,
    /// What started it.
    pub trigger: BackupTrigger,
    /// The `ops.runbook.dev/backup-now` token it answers (BackupNow only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The scheduled time it stands for (Schedule only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// When the backup Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the backup Job finished (completed or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Pending, Running, Succeeded or Failed: the backup Job's own outcome.
    pub result: BackupResult,
    /// Which Job runs now: Backup, Verify, Prune, or Done.
    pub stage: BackupStage,
    /// Whether the verify Job passed (absent until it ends, and when verify is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Whether the prune Job passed (absent until it ends, and when prune did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<bool>,
    /// Why it failed, was not verified or not pruned, or why it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Scheduled (waiting for the next time), Running (a backup, verify or prune Job runs),
/// Suspended, or Invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum BackupPolicyPhase {
    /// The spec is valid and nothing runs: the policy waits for the next scheduled time (or a
    /// backup-now token).
    Scheduled,
    /// A backup Job, or the verify or prune Job of a successful backup, runs; a scheduled time
    /// that comes due meanwhile waits.
    Running,
    /// `spec.schedule.suspend` is true and nothing runs: scheduled times do not start backups
    /// (backup-now tokens still do).
    Suspended,
    /// The spec cannot be acted on (see the `Stalled` condition): no Job is created.
    Invalid,
}

/// One restore of a backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRecord {
    /// The restore Job.
    pub job: String,
    /// The backup Job whose backup was restored.
    pub backup_job: String,
    /// The scheduled time of that backup, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_scheduled_time: Option<Time>,
    /// The RunbookRun whose step ran the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// When the restore Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// How long it took (the measured recovery time), e.g. `2m31s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Running, Succeeded or Failed.
    pub result: String,
}

/// Observed state of a BackupPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    /// Scheduled (waiting for the next time), Running (a backup, verify or prune Job runs),
    /// Suspended, or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPolicyPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The newest scheduled time that came due, whether it ran, waits, or was skipped (see
    /// Events); scheduled times at or before it are never run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The next scheduled time (absent while suspended or invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// When the newest successful backup Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the newest backup that passed verification finished (the backup Job, not the
    /// verify Job): with verify set, BackupFresh counts from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_time: Option<Time>,
    /// The last `ops.runbook.dev/backup-now` token acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_backup_now: Option<String>,
    /// Recent backups, newest first: the last ten, plus any still pending or running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<BackupRecord>,
    /// The newest restore a Runbook's `restore` step ran: when, which backup, which run, and
    /// how long it took (the measured recovery time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restore: Option<RestoreRecord>,
    /// The lifecycle messages sent (at most 64, the oldest dropped first): what keeps each
    /// message to one per event across restarts and replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent_notifications: Vec<crate::notifications::SentNotification>,
    /// Ready, Reconciling, Stalled, BackupFresh, LastBackupSucceeded and ScheduleMeetsRPO.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

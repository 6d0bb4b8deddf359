//! The whole status of a BackupPolicy, conditions included, from the stored status, what
//! [`decide`](super::decide::decide) decided and the clock; and the vocabulary of its
//! conditions.
//!
//! Conditions: the kstatus triple (`Ready`, `Reconciling`, `Stalled`; Reconciling is True while
//! a backup, verify or prune Job runs, so kstatus-aware tools such as Argo CD and
//! `kubectl wait` see the policy working), plus [`LAST_BACKUP_SUCCEEDED`], [`BACKUP_FRESH`] and
//! [`SCHEDULE_MEETS_RPO`], which the decision reports where they apply.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::types::BackupPolicyStatus;
use crate::conditions::{self, Desired, SpecProblem, Status};

/// Condition: the newest good backup is younger than `spec.rpo`.
pub const BACKUP_FRESH: &str = "BackupFresh";
/// Condition: how the newest finished backup ended.
pub const LAST_BACKUP_SUCCEEDED: &str = "LastBackupSucceeded";
/// Condition: the schedule runs often enough for `spec.rpo` to be met.
pub const SCHEDULE_MEETS_RPO: &str = "ScheduleMeetsRPO";
/// The condition types the decision reports; each is removed when it stops reporting it (for
/// `BackupFresh` and `ScheduleMeetsRPO`: when `spec.rpo` is removed).
pub const DECIDED_CONDITIONS: [&str; 3] = [BACKUP_FRESH, LAST_BACKUP_SUCCEEDED, SCHEDULE_MEETS_RPO];

/// `LastBackupSucceeded=True`: the newest finished backup succeeded and passed verification.
pub const REASON_VERIFIED: &str = "Verified";
/// `LastBackupSucceeded=True`: the newest finished backup succeeded (no verification set).
pub const REASON_SUCCEEDED: &str = "Succeeded";
/// `LastBackupSucceeded=False`: the newest backup succeeded but its verify Job failed.
pub const REASON_VERIFICATION_FAILED: &str = "VerificationFailed";
/// `LastBackupSucceeded=False`: the newest backup Job failed or was deleted before it ended.
pub const REASON_BACKUP_FAILED: &str = "BackupFailed";
/// `LastBackupSucceeded=False`: the API server refused the backup (or its verify) Job, so the
/// template needs fixing.
pub const REASON_JOB_REJECTED: &str = "JobRejected";
/// `BackupFresh=True`: the newest good backup is younger than `spec.rpo`.
pub const REASON_WITHIN_RPO: &str = "WithinRPO";
/// `BackupFresh=False`: the newest good backup (or, before any, the policy) is older than
/// `spec.rpo`.
pub const REASON_RPO_VIOLATED: &str = "RPOViolated";
/// `BackupFresh=Unknown`: no good backup yet, and the policy is younger than `spec.rpo`.
pub const REASON_AWAITING_FIRST_BACKUP: &str = "AwaitingFirstBackup";
/// `ScheduleMeetsRPO=True`: no gap between scheduled times is longer than `spec.rpo`.
pub const REASON_ACHIEVABLE: &str = "Achievable";
/// `ScheduleMeetsRPO=False`: a gap between scheduled times is longer than `spec.rpo`.
pub const REASON_RPO_SHORTER_THAN_SCHEDULE: &str = "RPOShorterThanSchedule";
/// `ScheduleMeetsRPO=False`: fewer than two scheduled times are ahead.
pub const REASON_NO_UPCOMING_BACKUPS: &str = "NoUpcomingBackups";
/// `Reconciling=True`: a backup, verify or prune Job runs.
pub const REASON_BACKUP_RUNNING: &str = "BackupRunning";

/// The `Ready` condition's message (and Event) while the spec is valid.
pub const READY_MESSAGE: &str = "the policy is valid";

/// What [`status`] builds the status from.
#[derive(Clone, Debug)]
pub struct StatusInputs<'a> {
    /// The status as stored: a condition that keeps its status keeps its lastTransitionTime.
    pub stored: &'a BackupPolicyStatus,
    /// The decided status (`Decision::status`): everything but the conditions and
    /// `observedGeneration`.
    pub decided: BackupPolicyStatus,
    /// The conditions the decision reports (`Decision::conditions`).
    pub reported: &'a [Desired],
    /// The Job that runs now (`Decision::running`).
    pub running: Option<&'a str>,
    /// What is wrong with the spec.
    pub problems: &'a [SpecProblem],
    /// The policy's `metadata.generation`.
    pub generation: Option<i64>,
    /// The clock, for conditions that flip now.
    pub now: &'a Time,
}

/// The status to write: the decided status, the generation it describes, and the conditions
/// merged into the stored ones.
pub fn status(inputs: StatusInputs<'_>) -> BackupPolicyStatus {
    let StatusInputs {
        stored,
        decided: mut status,
        reported,
        running,
        problems,
        generation,
        now,
    } = inputs;
    status.observed_generation = generation;
    let mut desired = conditions::validity(problems, READY_MESSAGE);
    if let Some(working) = reconciling(running) {
        desired.retain(|d| d.type_ != conditions::RECONCILING);
        desired.push(working);
    }
    desired.extend(reported.iter().cloned());
    // A condition the decision no longer reports (rpo removed) goes, rather than going stale.
    let kept: Vec<_> = stored
        .conditions
        .iter()
        .filter(|c| {
            !DECIDED_CONDITIONS.contains(&c.type_.as_str())
                || desired.iter().any(|d| d.type_ == c.type_)
        })
        .cloned()
        .collect();
    status.conditions = conditions::merge(&kept, &desired, generation, now);
    status
}

/// `Reconciling` while a backup, verify or prune Job runs, so kstatus-aware tools (Argo CD,
/// `kubectl wait`) see the policy working.
fn reconciling(running: Option<&str>) -> Option<Desired> {
    let job = running?;
    Some(Desired::new(
        conditions::RECONCILING,
        Status::True,
        REASON_BACKUP_RUNNING,
        format!("Job {job} is running"),
    ))
}

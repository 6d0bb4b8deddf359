//! The names of a policy's Jobs and the value of its policy label. All are deterministic (the
//! same scheduled minute, token or backup always gives the same name), so a create repeated
//! after a restart meets `AlreadyExists` instead of making a second Job. Cutting and hashing
//! long names is [`crate::names`]'s; this only says what each name is made of.

use jiff::Timestamp;

use crate::names::{self, hash8};

/// Longest backup Job name: leaves room for `-verify` within 63 characters, which the Job
/// controller needs because it copies the Job name into the `job-name` label of its pods.
const MAX_BACKUP_JOB_NAME: usize = 52;

/// The value of [`POLICY_LABEL`](crate::well_known::POLICY_LABEL) for a policy: the name itself when it fits a label (63
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

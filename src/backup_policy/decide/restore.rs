//! Restores of a policy's backups: which backup a Runbook's `restore` step takes
//! ([`choose`]), and `status.lastRestore` from the restore Jobs the policy observes
//! ([`last_restore`]). A restore Job belongs to the run that made it (it is owned by the
//! RunbookRun); the policy only reads it, through its labels, so each controller writes only
//! its own status.

use jiff::{SignedDuration, Timestamp};
use kube::runtime::events::EventType;

use super::conditions::format_duration;
use super::rfc3339;
use crate::backup_policy::types::{BackupRecord, BackupResult, RestoreRecord};
use crate::validation::Note;

/// The [`STAGE_LABEL`](crate::well_known::STAGE_LABEL) value of a restore Job.
pub const RESTORE_STAGE: &str = "restore";
/// `restore.backup` when unset: the newest backup whose verification passed.
pub const LATEST_VERIFIED: &str = "latestVerified";
/// `restore.backup`: the newest successful backup, verified or not.
pub const LATEST: &str = "latest";
/// `lastRestore.result` while the restore Job runs.
pub const RESTORE_RUNNING: &str = "Running";
/// `lastRestore.result` once the restore Job completed.
pub const RESTORE_SUCCEEDED: &str = "Succeeded";
/// `lastRestore.result` once the restore Job failed.
pub const RESTORE_FAILED: &str = "Failed";
/// Event reason when a restore Job completed.
pub const REASON_RESTORE_SUCCEEDED: &str = "RestoreSucceeded";
/// Event reason when a restore Job failed.
pub const REASON_RESTORE_FAILED: &str = "RestoreFailed";

/// Records listed in a [`choose`] message, at most.
const LISTED: usize = 10;

/// The backup a restore takes from `history` (newest first, as `status.history` keeps it):
/// `which` is `latestVerified` (also when `None`: the newest successful backup whose
/// verification passed), `latest` (the newest successful backup) or a backup Job name (that
/// record, which must have succeeded; an explicit name may be unverified). The error says what
/// the history holds, for the `BackupNotFound` message.
pub fn choose<'h>(
    history: &'h [BackupRecord],
    which: Option<&str>,
) -> Result<&'h BackupRecord, String> {
    let which = which.map(str::trim).unwrap_or(LATEST_VERIFIED);
    let succeeded = |r: &&BackupRecord| r.result == BackupResult::Succeeded;
    let found = match which {
        LATEST_VERIFIED => newest(
            history
                .iter()
                .filter(succeeded)
                .filter(|r| r.verified == Some(true)),
        ),
        LATEST => newest(history.iter().filter(succeeded)),
        name => match history.iter().find(|r| r.job == name) {
            Some(r) if r.result == BackupResult::Succeeded => Some(r),
            Some(r) => {
                return Err(format!(
                    "backup Job {name} did not succeed (result {:?}{}), so it cannot be restored; {}",
                    r.result,
                    r.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default(),
                    holds(history)
                ));
            }
            None => None,
        },
    };
    found.ok_or_else(|| {
        let wanted = match which {
            LATEST_VERIFIED => "no successful backup whose verification passed".to_owned(),
            LATEST => "no successful backup".to_owned(),
            name => format!("no backup Job named {name}"),
        };
        format!("status.history has {wanted}; {}", holds(history))
    })
}

/// The newest of `records`: the latest completion, and among equal ones the first (history is
/// newest first).
fn newest<'h>(records: impl Iterator<Item = &'h BackupRecord>) -> Option<&'h BackupRecord> {
    records
        .enumerate()
        .max_by_key(|(i, r)| {
            (
                r.completion_time.as_ref().map(|t| t.0),
                std::cmp::Reverse(*i),
            )
        })
        .map(|(_, r)| r)
}

/// "it holds: a (Succeeded, verified), b (Failed)", or what to do when it holds nothing.
fn holds(history: &[BackupRecord]) -> String {
    if history.is_empty() {
        return "it holds no backup yet: take one first (a backup step, or the \
                ops.runbook.dev/backup-now annotation)"
            .into();
    }
    let listed: Vec<String> = history
        .iter()
        .take(LISTED)
        .map(|r| {
            let verified = match r.verified {
                Some(true) => ", verified",
                Some(false) => ", verification failed",
                None => "",
            };
            format!("{} ({:?}{verified})", r.job, r.result)
        })
        .collect();
    format!(
        "it holds: {}; set restore.backup to latest, latestVerified or one of those names",
        listed.join(", ")
    )
}

/// `BACKUP_SCHEDULED_TIME` of a restore of `record`: the scheduled time it stands for, or for
/// an on-demand backup when its Job started (as its verify Job gets it); RFC 3339, UTC.
pub fn backup_time(record: &BackupRecord) -> Option<String> {
    record
        .scheduled_time
        .as_ref()
        .or(record.start_time.as_ref())
        .map(|t| rfc3339(t.0))
}

/// The measured time from `start` to `end`, as specs write durations (`2m31s`).
pub fn duration_text(start: Timestamp, end: Timestamp) -> String {
    let took = end.duration_since(start);
    format_duration(if took.is_negative() {
        SignedDuration::ZERO
    } else {
        took
    })
}

/// `status.lastRestore` from the stored one and the restore Jobs observed now (each as the
/// record it makes): the newest by start time (then name), so a restore Job deleted with its
/// run leaves its record in place and an older Job never replaces a newer record. The Event
/// reports a restore that has just finished.
pub fn last_restore(
    stored: Option<&RestoreRecord>,
    observed: &[RestoreRecord],
) -> (Option<RestoreRecord>, Option<Note>) {
    let key = |r: &RestoreRecord| (r.start_time.as_ref().map(|t| t.0), r.job.clone());
    // The stored record first: `max_by_key` keeps the last of equals, so the Job as observed
    // now replaces its own older record.
    let newest = stored
        .into_iter()
        .chain(observed)
        .max_by_key(|r| key(r))
        .cloned();
    let note = newest.as_ref().and_then(|record| {
        let changed = stored.is_none_or(|s| s.job != record.job || s.result != record.result);
        if !changed {
            return None;
        }
        let took = record
            .duration
            .as_deref()
            .map(|d| format!(" in {d}"))
            .unwrap_or_default();
        let by = record
            .run
            .as_deref()
            .map(|r| format!(" (RunbookRun {r})"))
            .unwrap_or_default();
        let (type_, reason, verb) = match record.result.as_str() {
            RESTORE_SUCCEEDED => (EventType::Normal, REASON_RESTORE_SUCCEEDED, "succeeded"),
            RESTORE_FAILED => (EventType::Warning, REASON_RESTORE_FAILED, "failed"),
            _ => return None,
        };
        Some(Note {
            type_,
            reason,
            message: format!(
                "restore Job {} of backup {}{by} {verb}{took}",
                record.job, record.backup_job
            ),
        })
    });
    (newest, note)
}

#[cfg(test)]
mod tests;

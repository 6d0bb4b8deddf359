//! The lifecycle events of a BackupPolicy, read from the conditions its status records, for
//! [`crate::notifications::plan`].

use crate::backup_policy::status::{
    BACKUP_FRESH, LAST_BACKUP_SUCCEEDED, REASON_BACKUP_FAILED, REASON_JOB_REJECTED,
    REASON_RPO_VIOLATED, REASON_VERIFICATION_FAILED,
};
use crate::backup_policy::types::BackupPolicyStatus;
use crate::notifications::{LifecycleEvent, Occurrence, ack_command, from_condition};

/// The events a BackupPolicy's `notifications` may name.
pub const EVENTS: [LifecycleEvent; 2] = [LifecycleEvent::BackupFailed, LifecycleEvent::RpoViolated];

/// BackupFailed while `LastBackupSucceeded` is False (the backup Job failed, was rejected or
/// did not verify); RpoViolated while `BackupFresh` is False with reason RPOViolated. Each is
/// open until `acknowledged` (the policy's annotation) names it.
pub fn occurrences(
    name: &str,
    namespace: &str,
    acknowledged: Option<&str>,
    status: &BackupPolicyStatus,
) -> Vec<Occurrence> {
    let ack = |id: &str| ack_command("backuppolicy", name, namespace, id);
    let failed = from_condition(
        &status.conditions,
        (
            LAST_BACKUP_SUCCEEDED,
            &[
                REASON_BACKUP_FAILED,
                REASON_JOB_REJECTED,
                REASON_VERIFICATION_FAILED,
            ],
        ),
        LifecycleEvent::BackupFailed,
        acknowledged,
        ack,
    );
    let stale = from_condition(
        &status.conditions,
        (BACKUP_FRESH, &[REASON_RPO_VIOLATED]),
        LifecycleEvent::RpoViolated,
        acknowledged,
        ack,
    );
    failed.into_iter().chain(stale).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_failed_backup_is_one_occurrence_until_acknowledged() {
        let status: BackupPolicyStatus = serde_json::from_value(json!({"conditions": [
            {"type": "LastBackupSucceeded", "status": "False", "reason": "BackupFailed",
             "message": "Job db-1 failed", "lastTransitionTime": "2026-11-25T10:00:00Z"},
            {"type": "BackupFresh", "status": "True", "reason": "WithinRPO", "message": "",
             "lastTransitionTime": "2026-11-25T09:00:00Z"}]}))
        .unwrap();
        let found = occurrences("db", "shop", None, &status);
        assert_eq!(found.len(), 1);
        let id = "BackupFailed/2026-11-25T10:00:00Z";
        assert_eq!(found[0].id, id);
        assert!(found[0].open);
        assert_eq!(
            found[0].command.as_deref(),
            Some(
                "kubectl annotate backuppolicy db -n shop ops.runbook.dev/acknowledged=BackupFailed/2026-11-25T10:00:00Z --overwrite"
            )
        );
        assert!(!occurrences("db", "shop", Some(id), &status)[0].open);
    }
}

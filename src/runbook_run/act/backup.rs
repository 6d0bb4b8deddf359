//! The backup step: one backup of a BackupPolicy, asked for through its annotation.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::Patch;
use serde_json::json;

use super::{Act, Error, Exec, failed, write_error};
use crate::runbook_run::types::StepStatus;
use crate::step::Step;
use crate::well_known::BACKUP_NOW;

/// How often a backup step looks at its policy when no change wakes it (a safety net: the
/// policy's status changes wake the run).
const BACKUP_RECHECK: Duration = Duration::from_secs(60);

/// Starts one backup of a BackupPolicy through its `ops.runbook.dev/backup-now` annotation,
/// with a token naming this run, step and attempt, and waits until the policy's history says
/// how the backup and its verification ended.
///
/// The annotation holds one token, so two runs asking at once can overwrite each other's;
/// each run re-asks until the policy has handled its own token, and the policy starts one
/// backup per token, one at a time.
pub(super) async fn run(
    exec: &Exec<'_>,
    step: &Step,
    backup: &crate::step::BackupAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    use crate::backup_policy::{BackupPolicy, BackupResult, BackupStage};
    let what = format!("BackupPolicy/{}", backup.policy);
    entry.target = Some(what.clone());
    if exec.plan() {
        return Ok(Act::Skipped(format!(
            "Plan: would start a backup of {what} and wait for it and its verification"
        )));
    }
    let token = format!("{}/{}/{}", exec.run_name, step.name, entry.attempts.max(1));
    if entry.outputs.get("backupRequest") != Some(&token) {
        entry.outputs.insert("backupRequest".into(), token);
        return Ok(Act::Record);
    }
    let policy = match read_policy(exec, &backup.policy).await? {
        Ok(policy) => policy,
        Err(act) => return Ok(act),
    };
    let status = policy.status.clone().unwrap_or_default();
    if let Some(record) = status
        .history
        .iter()
        .find(|r| r.request.as_deref() == Some(token.as_str()))
    {
        let job = &record.job;
        entry.outputs.insert("backupJob".into(), job.clone());
        let why = record.message.clone().unwrap_or_default();
        return Ok(match (record.result, record.stage, record.verified) {
            (BackupResult::Failed, _, _) => failed(
                "BackupFailed",
                format!("backup Job {job} of {what} failed: {why}"),
            ),
            (_, _, Some(false)) => failed(
                "VerificationFailed",
                format!("backup Job {job} of {what} succeeded but its verification failed: {why}"),
            ),
            (BackupResult::Succeeded, BackupStage::Prune | BackupStage::Done, verified) => {
                Act::Succeeded(if verified == Some(true) {
                    format!("backup Job {job} of {what} succeeded and was verified")
                } else {
                    format!("backup Job {job} of {what} succeeded")
                })
            }
            (_, stage, _) => Act::Wait {
                message: match stage {
                    BackupStage::Verify => {
                        format!("waiting for the verification of backup Job {job} of {what}")
                    }
                    _ => format!("waiting for backup Job {job} of {what} to finish"),
                },
                recheck: Some(BACKUP_RECHECK),
                approval: false,
            },
        });
    }
    if status.last_handled_backup_now.as_deref() == Some(token.as_str()) {
        return Ok(failed(
            "BackupNotRecorded",
            format!(
                "{what} started the backup for {token:?} but its history no longer holds it; \
                 see kubectl get jobs -l {}={}",
                crate::well_known::POLICY_LABEL,
                crate::backup_policy::label_value(&backup.policy)
            ),
        ));
    }
    if policy.annotations().get(BACKUP_NOW) != Some(&token) {
        let patch = json!({"metadata": {"annotations": {BACKUP_NOW: token}}});
        if let Err(err) = exec
            .writer
            .patch(
                &exec.writer.api::<BackupPolicy>(exec.namespace),
                &backup.policy,
                &Patch::Merge(&patch),
                "backup_now",
            )
            .await
        {
            return write_error(err, &what, exec.namespace);
        }
    }
    Ok(Act::Wait {
        message: format!("waiting for {what} to start the backup requested as {token:?}"),
        recheck: Some(BACKUP_RECHECK),
        approval: false,
    })
}

/// Reads BackupPolicy `name` as the run's identity: the step's failure (TargetNotFound) when it
/// does not exist, a reconcile error when the read failed.
pub(super) async fn read_policy(
    exec: &Exec<'_>,
    name: &str,
) -> Result<Result<crate::backup_policy::BackupPolicy, Act>, Error> {
    let what = format!("BackupPolicy/{name}");
    let api = exec
        .writer
        .api::<crate::backup_policy::BackupPolicy>(exec.namespace);
    let policy = api
        .get_opt(name)
        .await
        .map_err(|err| Error::read(what.clone(), exec.namespace, err))?;
    Ok(policy.ok_or_else(|| {
        failed(
            "TargetNotFound",
            format!("{what} not found in namespace {:?}", exec.namespace),
        )
    }))
}

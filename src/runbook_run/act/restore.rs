//! restore steps: run a BackupPolicy's restore Job for a chosen backup.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobTemplateSpec};
use kube::ResourceExt;

use super::{Act, Error, Exec, failed, write_error};
use crate::backup_policy::decide::restore::{self as choice, RESTORE_STAGE, duration_text};
use crate::backup_policy::label_value;
use crate::runbook_run::types::StepStatus;
use crate::step::{RestoreAction, Step};
use crate::well_known::{BACKUP_LABEL, POLICY_LABEL, SCHEDULED_TIME_ANNOTATION, STAGE_LABEL};

/// Outputs of a restore step: the backup Job restored, its scheduled time, the restore Job and
/// how long it took.
pub const OUTPUT_BACKUP_JOB: &str = "backupJob";
/// See [`OUTPUT_BACKUP_JOB`].
pub const OUTPUT_BACKUP_TIME: &str = "backupScheduledTime";
/// See [`OUTPUT_BACKUP_JOB`]; also what a cancel or timeout deletes.
pub const OUTPUT_RESTORE_JOB: &str = "restoreJob";
/// See [`OUTPUT_BACKUP_JOB`].
pub const OUTPUT_DURATION: &str = "duration";

/// Restores a backup of a BackupPolicy: reads the policy as the run's identity, chooses the
/// backup ([`choice::choose`]), records the choice and the Job name in the journal, then
/// creates the restore Job from `spec.restore.jobTemplate` (owned by the run, labelled with the
/// policy so the policy's `status.lastRestore` follows it) and waits for it.
pub async fn run(
    exec: &Exec<'_>,
    step: &Step,
    restore: &RestoreAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let what = format!("BackupPolicy/{}", restore.policy);
    entry.target = Some(what.clone());
    let policy = match super::backup::read_policy(exec, &restore.policy).await? {
        Ok(policy) => policy,
        Err(act) => return Ok(act),
    };
    let Some(stage) = &policy.spec.restore else {
        return Ok(Act::Failed {
            reason: "RestoreNotConfigured",
            message: format!(
                "{what} has no spec.restore: add spec.restore.jobTemplate (the Job that restores \
                 the backup named by its BACKUP_JOB_NAME and BACKUP_SCHEDULED_TIME env) to the policy"
            ),
            retryable: false,
        });
    };
    let name = super::job_name(exec.run_name, &step.name, entry.attempts.max(1));
    let recorded = entry.outputs.get(OUTPUT_RESTORE_JOB) == Some(&name);
    if !recorded || exec.plan() {
        let history = policy.status.as_ref().map_or(&[][..], |s| &s.history[..]);
        let chosen = match choice::choose(history, restore.backup.as_deref()) {
            Ok(record) => record,
            Err(why) => {
                return Ok(failed(
                    "BackupNotFound",
                    format!(
                        "{what} has no backup to restore for backup: {}: {why}",
                        restore.backup.as_deref().unwrap_or(choice::LATEST_VERIFIED)
                    ),
                ));
            }
        };
        let time = choice::backup_time(chosen).unwrap_or_default();
        if exec.plan() {
            return Ok(Act::Skipped(format!(
                "Plan: would restore backup {} ({time}) of {what} with Job {name}",
                chosen.job
            )));
        }
        // Record, then act: a restart finds the choice and the Job name, and never restores a
        // different backup in the same attempt.
        entry
            .outputs
            .insert(OUTPUT_BACKUP_JOB.into(), chosen.job.clone());
        entry.outputs.insert(OUTPUT_BACKUP_TIME.into(), time);
        entry.outputs.insert(OUTPUT_RESTORE_JOB.into(), name);
        return Ok(Act::Record);
    }
    let backup = entry
        .outputs
        .get(OUTPUT_BACKUP_JOB)
        .cloned()
        .unwrap_or_default();
    let time = entry
        .outputs
        .get(OUTPUT_BACKUP_TIME)
        .cloned()
        .unwrap_or_default();
    let jobs = exec.writer.api::<Job>(exec.namespace);
    let existing = jobs
        .get_opt(&name)
        .await
        .map_err(|err| Error::read(format!("Job/{name}"), exec.namespace, err))?;
    let current = match existing {
        Some(job) => job,
        None => {
            let template: JobTemplateSpec = match stage.job_template.decode() {
                Ok(t) => t,
                Err(err) => {
                    return Ok(Act::Failed {
                        reason: "InvalidSpec",
                        message: format!("{what} spec.restore.jobTemplate: {err}"),
                        retryable: false,
                    });
                }
            };
            let mut object =
                super::job::build_job(exec, &name, &step.name, entry.attempts, template);
            mark(&mut object, &restore.policy, &backup, &time);
            match exec.writer.create(&jobs, &object, "create").await {
                Ok(job) => job,
                Err(err) if err.already_exists() => jobs
                    .get(&name)
                    .await
                    .map_err(|err| Error::read(format!("Job/{name}"), exec.namespace, err))?,
                Err(err) => return write_error(err, &format!("Job/{name}"), exec.namespace),
            }
        }
    };
    Ok(progress(&current, &backup, &what, entry))
}

/// Labels, annotation and env that make `job` the restore of `backup` (scheduled at `time`) of
/// `policy`: the policy's controller finds it by its labels; every container and init container
/// gets `BACKUP_POLICY`, `BACKUP_JOB_NAME` and `BACKUP_SCHEDULED_TIME`, as the policy's verify
/// Jobs do (a var the template sets itself wins).
fn mark(job: &mut Job, policy: &str, backup: &str, time: &str) {
    let labels = job.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POLICY_LABEL.into(), label_value(policy));
    labels.insert(STAGE_LABEL.into(), RESTORE_STAGE.into());
    labels.insert(BACKUP_LABEL.into(), backup.to_owned());
    if !time.is_empty() {
        job.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SCHEDULED_TIME_ANNOTATION.into(), time.to_owned());
    }
    let vars = [
        ("BACKUP_POLICY", policy.to_owned()),
        ("BACKUP_JOB_NAME", backup.to_owned()),
        ("BACKUP_SCHEDULED_TIME", time.to_owned()),
    ];
    crate::backup_policy::decide::jobs::add_backup_env(&mut job.spec, &vars);
}

/// Where the restore Job stands; on its end, how long it took (`outputs.duration`).
fn progress(job: &Job, backup: &str, what: &str, entry: &mut StepStatus) -> Act {
    let name = job.name_any();
    let status = job.status.as_ref();
    let took = |end: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        let start = status.and_then(|s| s.start_time.as_ref())?;
        Some(duration_text(start.0, end?.0))
    };
    match super::job_progress(job) {
        Act::Succeeded(_) => {
            let end = status.and_then(|s| s.completion_time.as_ref());
            let duration = took(end);
            if let Some(d) = &duration {
                entry.outputs.insert(OUTPUT_DURATION.into(), d.clone());
            }
            Act::Succeeded(format!(
                "restored backup {backup} of {what} with Job {name}{}",
                duration.map(|d| format!(" in {d}")).unwrap_or_default()
            ))
        }
        Act::Failed { message, .. } => {
            let end = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"))
                .and_then(|c| c.last_transition_time.as_ref());
            if let Some(d) = took(end) {
                entry.outputs.insert(OUTPUT_DURATION.into(), d);
            }
            failed(
                "RestoreFailed",
                format!("restore of backup {backup} of {what}: {message}"),
            )
        }
        _ => Act::Wait {
            message: format!(
                "waiting for restore Job {name} (backup {backup} of {what}) to finish"
            ),
            recheck: None,
            approval: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(env: &[(&str, &str)]) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "recover-restore-1", "labels": {"team": "db"}},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "fetch"}],
                "containers": [{"name": "load", "env": env.iter().map(|(n, v)| serde_json::json!({"name": n, "value": v})).collect::<Vec<_>>()}],
            }}},
        }))
        .expect("job")
    }

    fn env(job: &Job, container: usize) -> Vec<(String, String)> {
        let pod = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        let all: Vec<_> = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .collect();
        all[container]
            .env
            .iter()
            .flatten()
            .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn every_container_gets_the_backup_and_the_job_its_labels() {
        let mut j = job(&[("BACKUP_POLICY", "mine")]);
        mark(&mut j, "db", "db-29000000", "2026-12-07T14:00:00Z");
        let labels = j.labels();
        assert_eq!(labels.get(POLICY_LABEL).map(String::as_str), Some("db"));
        assert_eq!(labels.get(STAGE_LABEL).map(String::as_str), Some("restore"));
        assert_eq!(
            labels.get(BACKUP_LABEL).map(String::as_str),
            Some("db-29000000")
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("db"));
        assert_eq!(
            j.annotations()
                .get(SCHEDULED_TIME_ANNOTATION)
                .map(String::as_str),
            Some("2026-12-07T14:00:00Z")
        );
        let want = |policy: &str| {
            vec![
                ("BACKUP_POLICY".to_owned(), policy.to_owned()),
                ("BACKUP_JOB_NAME".to_owned(), "db-29000000".to_owned()),
                (
                    "BACKUP_SCHEDULED_TIME".to_owned(),
                    "2026-12-07T14:00:00Z".to_owned(),
                ),
            ]
        };
        // The template's own value wins.
        assert_eq!(env(&j, 0), want("mine"));
        assert_eq!(env(&j, 1), want("db"));
    }
}

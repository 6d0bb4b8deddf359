//! Executing one step: the side effects, each made safe to repeat after a crash.
//!
//! The rule is *record, then act*: every intent (the replica count to set, the Job name, the
//! restartedAt value, the pods to delete) is written to the run's journal before the
//! request that acts on it, and every such request is idempotent for the recorded intent.
//! Guarantees per step type (documented in the README too):
//!
//! | step | guarantee |
//! |---|---|
//! | scale, setEnv, restart, rollback, deletePods, rotateSecret, patch (merge, apply) | effect exactly once (idempotent write of a recorded intent) |
//! | patch (json) | at most once: a lost outcome is reported, never re-sent |
//! | job | exactly one Job per step and attempt (deterministic name) |
//! | http | at most once per attempt; a retry is a new attempt |
//! | notify | at most once: an unknown delivery is reported, never resent |
//! | approval, sleep, waitForRollout | no side effect |

use crate::well_known::{BACKUP_NOW, FIELD_MANAGER, ROTATED_BY};
use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::types::StepStatus;
use crate::kubectl::{self, RolloutStatus};
use crate::step::{HttpMethod, Step, WorkloadKind, WorkloadRef};

/// Longest response excerpt kept in a step's outputs.
pub const EXCERPT_LIMIT: usize = 1024;

/// What executing a step needs to know about its run.
pub struct Exec<'a> {
    /// Kubernetes client.
    pub client: &'a Client,
    /// HTTP client for http and notify steps.
    pub http: &'a reqwest::Client,
    /// The run's namespace; every target lives here.
    pub namespace: &'a str,
    /// The run's name.
    pub run_name: &'a str,
    /// The run's uid, for owner references.
    pub run_uid: &'a str,
    /// Plan mode: Kubernetes writes are dry-run; http, notify and job steps are skipped.
    pub plan: bool,
    /// The step named by `ops.runbook.dev/approve`, if any.
    pub approved: Option<&'a str>,
    /// The current time.
    pub now: Timestamp,
}

/// Where a step stands after one call of [`act`].
#[derive(Debug, PartialEq)]
pub enum Act {
    /// The journal entry holds a new intent that must be recorded before going on.
    Record,
    /// The step is done.
    Succeeded(String),
    /// The step failed; `reason` is PascalCase (TargetNotFound, JobFailed, ...).
    Failed {
        /// Why, as a reason.
        reason: &'static str,
        /// What happened.
        message: String,
        /// Whether another attempt may help (false for an unknown notify delivery).
        retryable: bool,
    },
    /// Not run, e.g. in Plan mode.
    Skipped(String),
    /// Waiting for the cluster, a person or the clock.
    Wait {
        /// What it waits for.
        message: String,
        /// Look again after at most this long (events usually come sooner).
        recheck: Option<Duration>,
        /// True while waiting for an approval.
        approval: bool,
    },
}

/// Errors that stop a reconcile (retried), as opposed to a step failing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server failed a request in a way a retry may fix.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(err) => crate::write::status_label(err),
        }
    }
}

fn failed(reason: &'static str, message: impl Into<String>) -> Act {
    Act::Failed {
        reason,
        message: message.into(),
        retryable: true,
    }
}

fn params(plan: bool) -> PatchParams {
    PatchParams {
        dry_run: plan,
        ..Default::default()
    }
}

/// `kind/name` as the journal's target.
pub fn target_label(target: &WorkloadRef) -> String {
    format!("{:?}/{}", target.kind, target.name)
}

/// Maps an API error on a target into a step failure (404 -> TargetNotFound, 403 ->
/// Forbidden, 400/422 -> Invalid) or a reconcile error (anything a retry may fix).
fn target_error(err: kube::Error, what: &str, namespace: &str) -> Result<Act, Error> {
    match &err {
        kube::Error::Api(status) if status.code == 404 => Ok(failed(
            "TargetNotFound",
            format!("{what} not found in namespace {namespace:?}"),
        )),
        kube::Error::Api(status) if status.code == 403 => Ok(failed(
            "Forbidden",
            format!("the operator may not change {what}: {}", status.message),
        )),
        kube::Error::Api(status) if status.code == 400 || status.code == 422 => Ok(failed(
            "Invalid",
            format!(
                "the API server refused the change to {what}: {}",
                status.message
            ),
        )),
        _ => Err(Error::Kube(err)),
    }
}

/// Runs one step of `entry`'s current attempt.
pub async fn act(
    exec: &Exec<'_>,
    step: &Step,
    entry: &mut StepStatus,
    fresh_intent: bool,
) -> Result<Act, Error> {
    if let Some(scale) = &step.scale {
        return act_scale(exec, scale, entry).await;
    }
    if let Some(restart) = &step.restart {
        return act_restart(exec, &restart.target, restart.wait.unwrap_or(true), entry).await;
    }
    if let Some(set_env) = &step.set_env {
        return act_set_env(exec, set_env, entry).await;
    }
    if let Some(wait) = &step.wait_for_rollout {
        entry.target = Some(target_label(&wait.target));
        return rollout_progress(exec, &wait.target).await;
    }
    if let Some(rollback) = &step.rollback {
        return act_rollback(exec, rollback, entry).await;
    }
    if let Some(job) = &step.job {
        return act_job(exec, step, job, entry).await;
    }
    if let Some(http) = &step.http {
        return act_http(exec, step, http, entry, fresh_intent).await;
    }
    if let Some(patch) = &step.patch {
        return act_patch(exec, patch, entry, fresh_intent).await;
    }
    if let Some(delete) = &step.delete_pods {
        return act_delete_pods(exec, delete, entry).await;
    }
    if let Some(rotate) = &step.rotate_secret {
        return act_rotate_secret(exec, rotate, entry).await;
    }
    if let Some(approval) = &step.approval {
        if exec.plan {
            return Ok(Act::Skipped(
                "Plan: approval is not requested in Plan mode".into(),
            ));
        }
        if exec.approved == Some(step.name.as_str()) {
            return Ok(Act::Succeeded("approved".into()));
        }
        return Ok(Act::Wait {
            message: format!(
                "waiting for approval: {} (kubectl annotate runbookrun {} ops.runbook.dev/approve={})",
                approval.message, exec.run_name, step.name
            ),
            recheck: None,
            approval: true,
        });
    }
    if let Some(sleep) = &step.sleep {
        if exec.plan {
            return Ok(Act::Skipped(format!(
                "Plan: would sleep {}",
                sleep.duration
            )));
        }
        let length = sleep.duration.parse().unwrap_or_default();
        let started = attempt_start(entry).unwrap_or(exec.now);
        let end = started + signed(length);
        return Ok(if exec.now >= end {
            Act::Succeeded(format!("slept {}", sleep.duration))
        } else {
            Act::Wait {
                message: format!("sleeping until {end}"),
                recheck: Some(until(exec.now, end)),
                approval: false,
            }
        });
    }
    if let Some(notify) = &step.notify {
        return act_notify(exec, notify, entry, fresh_intent).await;
    }
    if let Some(backup) = &step.backup {
        return act_backup(exec, step, backup, entry).await;
    }
    Ok(Act::Failed {
        reason: "InvalidSpec",
        message: "the step has no action".into(),
        retryable: false,
    })
}

/// When the current attempt started, as recorded in the journal.
pub fn attempt_start(entry: &StepStatus) -> Option<Timestamp> {
    entry
        .outputs
        .get("attemptStartedAt")
        .and_then(|t| t.parse().ok())
}

/// A std duration as a signed one (saturating).
pub fn signed(d: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
}

/// Time from `now` until `end`, zero if past.
pub fn until(now: Timestamp, end: Timestamp) -> Duration {
    Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO)
}

async fn act_scale(
    exec: &Exec<'_>,
    scale: &crate::step::ScaleAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let target = &scale.target;
    entry.target = Some(target_label(target));
    let what = target_label(target);
    // Record the absolute count first: `by` is applied once even if the operator restarts.
    let Some(replicas) = entry
        .outputs
        .get("replicas")
        .and_then(|r| r.parse::<i32>().ok())
    else {
        let current = match target.kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(exec.client.clone(), exec.namespace)
                    .get_scale(&target.name)
                    .await
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(exec.client.clone(), exec.namespace)
                    .get_scale(&target.name)
                    .await
            }
        };
        let current = match current {
            Ok(scale) => scale.spec.and_then(|s| s.replicas).unwrap_or(0),
            Err(err) => return target_error(err, &what, exec.namespace),
        };
        let desired = kubectl::scale_target(current, scale.replicas, scale.by);
        entry
            .outputs
            .insert("previousReplicas".into(), current.to_string());
        entry.outputs.insert("replicas".into(), desired.to_string());
        return Ok(Act::Record);
    };
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let result = match target.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(exec.client.clone(), exec.namespace)
                .patch_scale(&target.name, &params(exec.plan), &patch)
                .await
                .map(|_| ())
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(exec.client.clone(), exec.namespace)
                .patch_scale(&target.name, &params(exec.plan), &patch)
                .await
                .map(|_| ())
        }
    };
    if let Err(err) = result {
        return target_error(err, &what, exec.namespace);
    }
    let previous = entry
        .outputs
        .get("previousReplicas")
        .cloned()
        .unwrap_or_default();
    Ok(Act::Succeeded(if exec.plan {
        format!(
            "Plan: would scale {what} from {previous} to {replicas} replicas (dry run accepted)"
        )
    } else {
        format!("scaled {what} from {previous} to {replicas} replicas")
    }))
}

async fn workload_template(
    exec: &Exec<'_>,
    target: &WorkloadRef,
) -> Result<
    Result<
        (
            Option<Deployment>,
            k8s_openapi::api::core::v1::PodTemplateSpec,
        ),
        kube::Error,
    >,
    Error,
> {
    Ok(match target.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(exec.client.clone(), exec.namespace)
                .get(&target.name)
                .await
                .map(|d| {
                    let template = d
                        .spec
                        .as_ref()
                        .map(|s| s.template.clone())
                        .unwrap_or_default();
                    (Some(d), template)
                })
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(exec.client.clone(), exec.namespace)
                .get(&target.name)
                .await
                .map(|s| (None, s.spec.map(|s| s.template).unwrap_or_default()))
        }
    })
}

async fn patch_workload(
    exec: &Exec<'_>,
    target: &WorkloadRef,
    patch: &Patch<serde_json::Value>,
    plan: bool,
) -> Result<(), kube::Error> {
    match target.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(exec.client.clone(), exec.namespace)
                .patch(&target.name, &params(plan), patch)
                .await
                .map(|_| ())
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(exec.client.clone(), exec.namespace)
                .patch(&target.name, &params(plan), patch)
                .await
                .map(|_| ())
        }
    }
}

async fn act_restart(
    exec: &Exec<'_>,
    target: &WorkloadRef,
    wait: bool,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    entry.target = Some(target_label(target));
    let what = target_label(target);
    if !entry.outputs.contains_key("restartedAt") {
        let workload = match workload_template(exec, target).await? {
            Ok(w) => w,
            Err(err) => return target_error(err, &what, exec.namespace),
        };
        if let Some(deployment) = &workload.0
            && let Err(err) = kubectl::check_restartable(deployment)
        {
            return Ok(failed("Paused", err.to_string()));
        }
        entry
            .outputs
            .insert("restartedAt".into(), kubectl::restarted_at(exec.now));
        return Ok(Act::Record);
    }
    if !entry.outputs.contains_key("restartPatched") {
        let at = entry
            .outputs
            .get("restartedAt")
            .cloned()
            .unwrap_or_default();
        let patch = Patch::Strategic(kubectl::restart_patch(at.parse().unwrap_or(exec.now)));
        if let Err(err) = patch_workload(exec, target, &patch, exec.plan).await {
            return target_error(err, &what, exec.namespace);
        }
        if exec.plan {
            return Ok(Act::Succeeded(format!(
                "Plan: would restart {what} (dry run accepted)"
            )));
        }
        if !wait {
            return Ok(Act::Succeeded(format!("restarted {what}")));
        }
        entry.outputs.insert("restartPatched".into(), "true".into());
        return Ok(Act::Record);
    }
    rollout_progress(exec, target).await
}

/// `kubectl rollout status` for one look: succeeded, failed, or keep waiting.
async fn rollout_progress(exec: &Exec<'_>, target: &WorkloadRef) -> Result<Act, Error> {
    let what = target_label(target);
    let status = match target.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(exec.client.clone(), exec.namespace)
                .get(&target.name)
                .await
                .map(|d| kubectl::deployment_rollout_status(&d))
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(exec.client.clone(), exec.namespace)
                .get(&target.name)
                .await
                .map(|s| kubectl::statefulset_rollout_status(&s))
        }
    };
    Ok(match status {
        Err(err) => return target_error(err, &what, exec.namespace),
        Ok(RolloutStatus::Done(message)) => Act::Succeeded(message),
        Ok(RolloutStatus::Failed(message)) => failed("RolloutFailed", message),
        Ok(RolloutStatus::Waiting(message)) => Act::Wait {
            message,
            // The workload watch wakes the run on every change; this is only a backstop.
            recheck: Some(Duration::from_secs(30)),
            approval: false,
        },
    })
}

async fn act_set_env(
    exec: &Exec<'_>,
    set_env: &crate::step::SetEnvAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let target = &set_env.target;
    entry.target = Some(target_label(target));
    let what = target_label(target);
    let (_, template) = match workload_template(exec, target).await? {
        Ok(w) => w,
        Err(err) => return target_error(err, &what, exec.namespace),
    };
    let set: Vec<(String, String)> = set_env
        .set
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    let change = match kubectl::env_change(
        target,
        &template,
        set_env.container.as_deref(),
        &set,
        &set_env.unset,
    ) {
        Ok(change) => change,
        Err(err) => {
            return Ok(Act::Failed {
                reason: "InvalidSpec",
                message: err.to_string(),
                retryable: false,
            });
        }
    };
    // Prior values are recorded once, before the first write, so a restart does not record
    // the step's own values as "prior".
    if !entry.outputs.contains_key("priorsRecorded") {
        for prior in &change.priors {
            entry.outputs.insert(
                format!("prior.{}.{}", prior.container, prior.name),
                prior.prior.describe(),
            );
        }
        entry.outputs.insert("priorsRecorded".into(), "true".into());
        return Ok(Act::Record);
    }
    if !change.changed {
        return Ok(Act::Succeeded(format!(
            "{what} already has these values; nothing to change"
        )));
    }
    if let Err(err) = patch_workload(exec, target, &Patch::Strategic(change.patch), exec.plan).await
    {
        return target_error(err, &what, exec.namespace);
    }
    Ok(Act::Succeeded(if exec.plan {
        format!("Plan: would change the environment of {what} (dry run accepted)")
    } else {
        format!("changed the environment of {what}; prior values are in outputs")
    }))
}

async fn act_rollback(
    exec: &Exec<'_>,
    rollback: &crate::step::RollbackAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let target = &rollback.target;
    entry.target = Some(target_label(target));
    let what = target_label(target);
    let deployments = Api::<Deployment>::namespaced(exec.client.clone(), exec.namespace);
    let deployment = match deployments.get(&target.name).await {
        Ok(d) => d,
        Err(err) => return target_error(err, &what, exec.namespace),
    };
    let replica_sets = Api::<ReplicaSet>::namespaced(exec.client.clone(), exec.namespace)
        .list(&ListParams::default())
        .await?
        .items;
    // Once recorded, the target is the ReplicaSet chosen then: after the rollback it carries
    // a new revision number, and "previous" would mean something else. Planning against its
    // current revision makes a repeated pass a no-op ("already matches").
    let wanted = match entry.outputs.get("replicaSet") {
        None => rollback.to_revision,
        Some(name) => {
            let revision = replica_sets
                .iter()
                .find(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|rs| rs.annotations().get(kubectl::REVISION_ANNOTATION))
                .and_then(|r| r.parse::<i64>().ok());
            match revision {
                Some(r) => Some(r),
                None => {
                    return Ok(failed(
                        "RollbackFailed",
                        format!(
                            "ReplicaSet {name} of the recorded target revision no longer exists"
                        ),
                    ));
                }
            }
        }
    };
    let plan = match kubectl::rollback_plan(&deployment, &replica_sets, wanted) {
        Ok(plan) => plan,
        Err(err) => return Ok(failed("RollbackFailed", err.to_string())),
    };
    if let (kubectl::RollbackChange::Skip { .. }, Some(from), Some(to)) = (
        &plan.change,
        entry.outputs.get("fromRevision"),
        entry.outputs.get("toRevision"),
    ) {
        return Ok(Act::Succeeded(format!(
            "rolled {what} back from revision {from} to {to}"
        )));
    }
    let patch = match &plan.change {
        kubectl::RollbackChange::Skip { message } => return Ok(Act::Succeeded(message.clone())),
        kubectl::RollbackChange::Patch { patch, .. } => {
            match serde_json::from_value::<json_patch::Patch>(patch.clone()) {
                Ok(ops) => Patch::<()>::Json(ops),
                Err(err) => {
                    return Ok(failed(
                        "RollbackFailed",
                        format!("internal: rollback patch is not a JSON patch: {err}"),
                    ));
                }
            }
        }
    };
    if !entry.outputs.contains_key("toRevision") {
        entry
            .outputs
            .insert("fromRevision".into(), plan.from_revision.to_string());
        entry
            .outputs
            .insert("toRevision".into(), plan.to_revision.to_string());
        entry
            .outputs
            .insert("replicaSet".into(), plan.replica_set.clone());
        return Ok(Act::Record);
    }
    if let Err(err) = deployments
        .patch(&target.name, &params(exec.plan), &patch)
        .await
    {
        return target_error(err, &what, exec.namespace);
    }
    Ok(Act::Succeeded(if exec.plan {
        format!(
            "Plan: would roll {what} back to revision {} (dry run accepted)",
            plan.to_revision
        )
    } else {
        format!(
            "rolled {what} back from revision {} to {}",
            plan.from_revision, plan.to_revision
        )
    }))
}

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
async fn act_backup(
    exec: &Exec<'_>,
    step: &Step,
    backup: &crate::step::BackupAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    use crate::backup_policy::{BackupPolicy, BackupResult, BackupStage};
    let what = format!("BackupPolicy/{}", backup.policy);
    entry.target = Some(what.clone());
    if exec.plan {
        return Ok(Act::Skipped(format!(
            "Plan: would start a backup of {what} and wait for it and its verification"
        )));
    }
    let token = format!("{}/{}/{}", exec.run_name, step.name, entry.attempts.max(1));
    if entry.outputs.get("backupRequest") != Some(&token) {
        entry.outputs.insert("backupRequest".into(), token);
        return Ok(Act::Record);
    }
    let api = Api::<BackupPolicy>::namespaced(exec.client.clone(), exec.namespace);
    let Some(policy) = api.get_opt(&backup.policy).await? else {
        return Ok(failed(
            "TargetNotFound",
            format!("{what} not found in namespace {:?}", exec.namespace),
        ));
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
        match api
            .patch(
                &backup.policy,
                &crate::runtime::patch_params(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(err) => return target_error(err, &what, exec.namespace),
        }
    }
    Ok(Act::Wait {
        message: format!("waiting for {what} to start the backup requested as {token:?}"),
        recheck: Some(BACKUP_RECHECK),
        approval: false,
    })
}

/// Deterministic Job name for a run, step and attempt (at most 63 characters).
pub fn job_name(run: &str, step: &str, attempt: i32) -> String {
    crate::names::bound(
        &format!("{run}-{step}-{attempt}"),
        crate::names::STEP_JOB_NAME,
    )
    .into_owned()
}

async fn act_job(
    exec: &Exec<'_>,
    step: &Step,
    job: &crate::step::JobAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let name = job_name(exec.run_name, &step.name, entry.attempts.max(1));
    entry.target = Some(format!("Job/{name}"));
    if exec.plan {
        return Ok(Act::Skipped(format!("Plan: would create Job {name}")));
    }
    if entry.outputs.get("jobName") != Some(&name) {
        entry.outputs.insert("jobName".into(), name);
        return Ok(Act::Record);
    }
    let jobs = Api::<Job>::namespaced(exec.client.clone(), exec.namespace);
    let existing = jobs.get_opt(&name).await?;
    let current = match existing {
        Some(j) => j,
        None => {
            let template: JobTemplateSpec = match (&job.template, &job.from_cron_job) {
                (Some(t), _) => match t.decode() {
                    Ok(t) => t,
                    Err(err) => {
                        return Ok(Act::Failed {
                            reason: "InvalidSpec",
                            message: format!("job.template: {err}"),
                            retryable: false,
                        });
                    }
                },
                (None, Some(cron)) => {
                    match Api::<CronJob>::namespaced(exec.client.clone(), exec.namespace)
                        .get(cron)
                        .await
                    {
                        Ok(c) => c.spec.job_template,
                        Err(err) => {
                            return target_error(err, &format!("CronJob/{cron}"), exec.namespace);
                        }
                    }
                }
                (None, None) => {
                    return Ok(Act::Failed {
                        reason: "InvalidSpec",
                        message: "job needs template or fromCronJob".into(),
                        retryable: false,
                    });
                }
            };
            let object = build_job(exec, &name, &step.name, entry.attempts, template);
            match jobs.create(&PostParams::default(), &object).await {
                Ok(j) => j,
                Err(kube::Error::Api(s)) if s.code == 409 => jobs.get(&name).await?,
                Err(err) => return target_error(err, &format!("Job/{name}"), exec.namespace),
            }
        }
    };
    if !job.wait.unwrap_or(true) {
        return Ok(Act::Succeeded(format!("created Job {name}")));
    }
    Ok(job_progress(&current))
}

/// The Job built from a template: owned by the run (so deleting the run deletes it), labelled
/// with the run and step.
fn build_job(
    exec: &Exec<'_>,
    name: &str,
    step: &str,
    attempt: i32,
    template: JobTemplateSpec,
) -> Job {
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = Some(name.to_owned());
    metadata.namespace = Some(exec.namespace.to_owned());
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("ops.runbook.dev/run".into(), exec.run_name.to_owned());
    labels.insert("ops.runbook.dev/step".into(), step.to_owned());
    labels.insert("ops.runbook.dev/attempt".into(), attempt.to_string());
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "ops.runbook.dev/v1alpha1".into(),
        kind: "RunbookRun".into(),
        name: exec.run_name.to_owned(),
        uid: exec.run_uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    Job {
        metadata,
        spec: template.spec,
        status: None,
    }
}

/// A Job's outcome from its conditions.
pub fn job_progress(job: &Job) -> Act {
    let name = job.name_any();
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let true_condition = |type_: &str| {
        conditions.and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    if true_condition("Complete").is_some() {
        return Act::Succeeded(format!("Job {name} completed"));
    }
    if let Some(c) = true_condition("Failed") {
        return failed(
            "JobFailed",
            format!(
                "Job {name} failed: {}",
                c.message
                    .clone()
                    .or_else(|| c.reason.clone())
                    .unwrap_or_default()
            ),
        );
    }
    Act::Wait {
        message: format!("waiting for Job {name} to finish"),
        recheck: None,
        approval: false,
    }
}

/// Deletes the Job of the current attempt, if any (cancel, timeout).
pub async fn stop(exec: &Exec<'_>, entry: &StepStatus) -> Result<(), Error> {
    if let Some(name) = entry.outputs.get("jobName") {
        let jobs = Api::<Job>::namespaced(exec.client.clone(), exec.namespace);
        match jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

async fn secret_value(
    exec: &Exec<'_>,
    reference: &crate::step::SecretKeyRef,
) -> Result<Result<String, Act>, Error> {
    let secrets = Api::<Secret>::namespaced(exec.client.clone(), exec.namespace);
    let secret = match secrets.get(&reference.name).await {
        Ok(s) => s,
        Err(err) => {
            return target_error(err, &format!("Secret/{}", reference.name), exec.namespace)
                .map(Err);
        }
    };
    let value = secret
        .data
        .and_then(|mut d| d.remove(&reference.key))
        .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
    Ok(value.ok_or_else(|| {
        failed(
            "TargetNotFound",
            format!("Secret/{} has no key {:?}", reference.name, reference.key),
        )
    }))
}

/// Truncates a response body for the journal.
pub fn excerpt(body: &str) -> String {
    if body.len() <= EXCERPT_LIMIT {
        return body.to_owned();
    }
    let mut end = EXCERPT_LIMIT;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

fn sent_marker(entry: &StepStatus) -> String {
    format!("attempt {}", entry.attempts)
}

async fn act_http(
    exec: &Exec<'_>,
    step: &Step,
    http: &crate::step::HttpAction,
    entry: &mut StepStatus,
    fresh_intent: bool,
) -> Result<Act, Error> {
    let method = http.method.unwrap_or_default();
    entry.target = Some(format!("{method:?} {}", http.url));
    if exec.plan {
        return Ok(Act::Skipped(format!(
            "Plan: would send {method:?} {}",
            http.url
        )));
    }
    if entry.outputs.get("sent") != Some(&sent_marker(entry)) {
        entry.outputs.insert("sent".into(), sent_marker(entry));
        return Ok(Act::Record);
    }
    if !fresh_intent {
        return Ok(failed(
            "Unknown",
            "the operator restarted after sending the request and before recording the answer",
        ));
    }
    let mut request = exec.http.request(reqwest_method(method), &http.url);
    for header in &http.headers {
        let value = match (&header.value, &header.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => match secret_value(exec, &from.secret_key_ref).await? {
                Ok(v) => v,
                Err(act) => return Ok(act),
            },
            (None, None) => String::new(),
        };
        request = request.header(&header.name, value);
    }
    if let Some(body) = &http.body {
        request = request.body(body.clone());
    }
    let timeout = step
        .timeout
        .as_ref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(Duration::from_secs(30));
    let response = match request.timeout(timeout).send().await {
        Ok(r) => r,
        Err(err) => {
            return Ok(failed(
                "RequestFailed",
                format!("{method:?} {}: {}", http.url, describe(err)),
            ));
        }
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    entry
        .outputs
        .insert("httpStatus".into(), status.to_string());
    entry.outputs.insert("body".into(), excerpt(&body));
    let expect = http.expect.clone().unwrap_or_default();
    let accepted = if expect.status.is_empty() {
        vec![200]
    } else {
        expect.status.clone()
    };
    if !accepted.contains(&i32::from(status)) {
        return Ok(failed(
            "UnexpectedStatus",
            format!(
                "{method:?} {} answered {status}, expected {accepted:?}",
                http.url
            ),
        ));
    }
    if let (Some(path), Some(expected)) = (&expect.json_path, &expect.equals) {
        let actual = json_path_value(&body, path);
        if actual.as_deref() != Some(expected.as_str()) {
            return Ok(failed(
                "UnexpectedBody",
                format!("{path} is {actual:?}, expected {expected:?}"),
            ));
        }
    }
    Ok(Act::Succeeded(format!(
        "{method:?} {} answered {status}",
        http.url
    )))
}

/// Error text without the URL's query (it may carry a token).
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn reqwest_method(method: HttpMethod) -> reqwest::Method {
    match method {
        HttpMethod::GET => reqwest::Method::GET,
        HttpMethod::HEAD => reqwest::Method::HEAD,
        HttpMethod::POST => reqwest::Method::POST,
        HttpMethod::PUT => reqwest::Method::PUT,
        HttpMethod::PATCH => reqwest::Method::PATCH,
        HttpMethod::DELETE => reqwest::Method::DELETE,
    }
}

/// A value from a JSON body by a simple path: `{.status}`, `.data.items[0].name`, `status`.
pub fn json_path_value(body: &str, path: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut current = &value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        if let Some(i) = index {
            current = current.get(i)?;
        }
    }
    Some(match current {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

async fn act_notify(
    exec: &Exec<'_>,
    notify: &crate::step::NotifyAction,
    entry: &mut StepStatus,
    fresh_intent: bool,
) -> Result<Act, Error> {
    entry.target = Some(match (&notify.url, &notify.url_from) {
        (_, Some(from)) => format!("webhook from Secret/{}", from.secret_key_ref.name),
        _ => "webhook".into(),
    });
    if exec.plan {
        return Ok(Act::Skipped("Plan: would send the notification".into()));
    }
    if entry.outputs.get("sent") != Some(&sent_marker(entry)) {
        entry.outputs.insert("sent".into(), sent_marker(entry));
        return Ok(Act::Record);
    }
    if !fresh_intent {
        // At most once: a message whose delivery is unknown is not sent again.
        return Ok(Act::Failed {
            reason: "DeliveryUnknown",
            message:
                "the operator restarted while sending; not resent, to avoid a duplicate message"
                    .into(),
            retryable: false,
        });
    }
    let url = match (&notify.url, &notify.url_from) {
        (Some(u), _) => u.clone(),
        (None, Some(from)) => match secret_value(exec, &from.secret_key_ref).await? {
            Ok(v) => v.trim().to_owned(),
            Err(act) => return Ok(act),
        },
        (None, None) => {
            return Ok(Act::Failed {
                reason: "InvalidSpec",
                message: "notify needs url or urlFrom".into(),
                retryable: false,
            });
        }
    };
    let result = exec
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(json!({ "text": notify.message }).to_string())
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    // Messages name the webhook only generically: its URL is a credential.
    match result {
        Ok(r) if r.status().is_success() => {
            entry
                .outputs
                .insert("httpStatus".into(), r.status().as_u16().to_string());
            Ok(Act::Succeeded("notification sent".into()))
        }
        Ok(r) => Ok(Act::Failed {
            reason: "UnexpectedStatus",
            message: format!("the webhook answered {}", r.status().as_u16()),
            retryable: false,
        }),
        Err(err) => Ok(Act::Failed {
            reason: "RequestFailed",
            message: format!("could not reach the webhook: {}", describe(err)),
            retryable: false,
        }),
    }
}

async fn act_patch(
    exec: &Exec<'_>,
    patch: &crate::step::PatchAction,
    entry: &mut StepStatus,
    fresh_intent: bool,
) -> Result<Act, Error> {
    let target = &patch.target;
    let what = format!("{}/{}", target.kind, target.name);
    entry.target = Some(what.clone());
    if !exec.plan {
        if entry.outputs.get("sent") != Some(&sent_marker(entry)) {
            entry.outputs.insert("sent".into(), sent_marker(entry));
            return Ok(Act::Record);
        }
        // Merge and apply patches give the same result when repeated; a JSON patch (e.g. an
        // append) may not, so one whose outcome was lost in a restart is not re-sent.
        if !fresh_intent && patch.type_ == crate::step::PatchType::Json {
            return Ok(Act::Failed {
                reason: "OutcomeUnknown",
                message: format!(
                    "the operator restarted after sending the JSON patch to {what}; not re-sent, since a JSON patch may not be idempotent: check {what}"
                ),
                retryable: false,
            });
        }
    }
    let (group, version) = match target.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", target.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    let (resource, caps) = match kube::discovery::pinned_kind(exec.client, &gvk).await {
        Ok(found) => found,
        Err(err) => {
            return Ok(failed(
                "TargetNotFound",
                format!("unknown kind {} {}: {err}", target.api_version, target.kind),
            ));
        }
    };
    if caps.scope != kube::discovery::Scope::Namespaced {
        return Ok(Act::Failed {
            reason: "InvalidSpec",
            message: format!(
                "{} is cluster-scoped; patch targets must live in the run's namespace",
                target.kind
            ),
            retryable: false,
        });
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(exec.client.clone(), exec.namespace, &resource);
    let request = match patch.type_ {
        crate::step::PatchType::Merge => {
            api.patch(
                &target.name,
                &params(exec.plan),
                &Patch::Merge(&patch.patch),
            )
            .await
        }
        crate::step::PatchType::Json => {
            match serde_json::from_value::<json_patch::Patch>(patch.patch.clone()) {
                Ok(ops) => {
                    api.patch(&target.name, &params(exec.plan), &Patch::<()>::Json(ops))
                        .await
                }
                Err(err) => {
                    return Ok(Act::Failed {
                        reason: "InvalidSpec",
                        message: format!("patch is not a JSON patch: {err}"),
                        retryable: false,
                    });
                }
            }
        }
        crate::step::PatchType::Apply => {
            let mut body = patch.patch.clone();
            if let Some(obj) = body.as_object_mut() {
                obj.insert("apiVersion".into(), json!(target.api_version));
                obj.insert("kind".into(), json!(target.kind));
                obj.entry("metadata")
                    .or_insert(json!({}))
                    .as_object_mut()
                    .map(|m| m.insert("name".into(), json!(target.name)));
            }
            let mut p = PatchParams::apply(FIELD_MANAGER).force();
            p.dry_run = exec.plan;
            api.patch(&target.name, &p, &Patch::Apply(&body)).await
        }
    };
    match request {
        Ok(_) => Ok(Act::Succeeded(if exec.plan {
            format!("Plan: would patch {what} (dry run accepted)")
        } else {
            format!("patched {what}")
        })),
        Err(err) => target_error(err, &what, exec.namespace),
    }
}

async fn act_delete_pods(
    exec: &Exec<'_>,
    delete: &crate::step::DeletePodsAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let selector = delete
        .selector
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    entry.target = Some(format!("pods {selector}"));
    let pods = Api::<Pod>::namespaced(exec.client.clone(), exec.namespace);
    let Some(recorded) = entry.outputs.get("pods").cloned() else {
        let mut names: Vec<String> = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        if let Some(max) = delete.max_count {
            names.truncate(usize::try_from(max).unwrap_or(0));
        }
        entry.outputs.insert("pods".into(), names.join(","));
        return Ok(Act::Record);
    };
    let names: Vec<&str> = recorded.split(',').filter(|n| !n.is_empty()).collect();
    for name in &names {
        let dp = DeleteParams {
            dry_run: exec.plan,
            ..Default::default()
        };
        match pods.delete(name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return target_error(err, &format!("Pod/{name}"), exec.namespace),
        }
    }
    Ok(Act::Succeeded(match (names.len(), exec.plan) {
        (0, _) => format!("no pods matched {selector}"),
        (n, true) => format!("Plan: would delete {n} pod(s): {}", names.join(", ")),
        (n, false) => format!("deleted {n} pod(s): {}", names.join(", ")),
    }))
}

async fn act_rotate_secret(
    exec: &Exec<'_>,
    rotate: &crate::step::RotateSecretAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let what = format!("Secret/{}", rotate.secret);
    entry.target = Some(what.clone());
    let marker = format!("{}/{}", exec.run_name, entry.name);
    let secrets = Api::<Secret>::namespaced(exec.client.clone(), exec.namespace);
    if !entry.outputs.contains_key("rotated") {
        let secret = match secrets.get(&rotate.secret).await {
            Ok(s) => s,
            Err(err) => return target_error(err, &what, exec.namespace),
        };
        // The marker on the Secret makes the rotation happen once per run step, even if the
        // operator dies between the write and recording it.
        let already = secret.annotations().get(ROTATED_BY) == Some(&marker);
        if !already {
            let length = usize::try_from(rotate.length.unwrap_or(32)).unwrap_or(32);
            let value = random_token(length);
            let patch = json!({
                "metadata": {"annotations": {ROTATED_BY: marker}},
                "stringData": {rotate.key.clone(): value},
            });
            if let Err(err) = secrets
                .patch(&rotate.secret, &params(exec.plan), &Patch::Merge(&patch))
                .await
            {
                return target_error(err, &what, exec.namespace);
            }
            if exec.plan {
                return Ok(Act::Succeeded(format!(
                    "Plan: would write a new {length}-character value to key {:?} of {what} and restart {} workload(s)",
                    rotate.key,
                    rotate.restart.len()
                )));
            }
        }
        entry.outputs.insert("rotated".into(), rotate.key.clone());
        entry
            .outputs
            .insert("restartedAt".into(), kubectl::restarted_at(exec.now));
        return Ok(Act::Record);
    }
    let at = entry
        .outputs
        .get("restartedAt")
        .cloned()
        .unwrap_or_default();
    for target in &rotate.restart {
        if let Err(err) = patch_workload(
            exec,
            target,
            &Patch::Strategic(kubectl::restart_patch(at.parse().unwrap_or(exec.now))),
            false,
        )
        .await
        {
            return target_error(err, &target_label(target), exec.namespace);
        }
    }
    Ok(Act::Succeeded(format!(
        "wrote a new value to key {:?} of {what}; restarted {}",
        rotate.key,
        if rotate.restart.is_empty() {
            "nothing".to_owned()
        } else {
            rotate
                .restart
                .iter()
                .map(target_label)
                .collect::<Vec<_>>()
                .join(", ")
        }
    )))
}

/// A random alphanumeric token.
fn random_token(length: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..length)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_deterministic_and_short() {
        assert_eq!(job_name("db-fix-7", "kill-idle", 1), "db-fix-7-kill-idle-1");
        let long = job_name(&"r".repeat(50), &"s".repeat(40), 2);
        assert!(long.len() <= 63, "{long}");
        assert_eq!(long, job_name(&"r".repeat(50), &"s".repeat(40), 2));
        assert_ne!(long, job_name(&"r".repeat(50), &"s".repeat(40), 3));
    }

    #[test]
    fn excerpts_are_capped_on_a_char_boundary() {
        let body = "é".repeat(2000);
        let cut = excerpt(&body);
        assert!(cut.len() <= EXCERPT_LIMIT + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("ok"), "ok");
    }

    #[test]
    fn json_paths_read_simple_values() {
        let body = r#"{"status":"ok","checks":[{"name":"db","up":true}]}"#;
        assert_eq!(json_path_value(body, "{.status}").as_deref(), Some("ok"));
        assert_eq!(
            json_path_value(body, ".checks[0].up").as_deref(),
            Some("true")
        );
        assert_eq!(json_path_value(body, "missing"), None);
    }

    #[test]
    fn random_tokens_have_the_asked_length() {
        let a = random_token(32);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_token(32));
    }
}

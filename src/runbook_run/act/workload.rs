//! Steps on a Deployment or StatefulSet: scale, restart, setEnv, waitForRollout, rollback.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch};
use serde_json::json;

use super::{Act, Error, Exec, failed, target_error, target_label, write_error};
use crate::kubectl::{self, RolloutStatus};
use crate::runbook_run::types::StepStatus;
use crate::step::{WorkloadKind, WorkloadRef};
use crate::write::{WriteError, Writer};

/// Scales the target to a count recorded first (`by` is applied once).
pub(super) async fn scale(
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
                Api::<Deployment>::namespaced(exec.client().clone(), exec.namespace)
                    .get_scale(&target.name)
                    .await
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(exec.client().clone(), exec.namespace)
                    .get_scale(&target.name)
                    .await
            }
        };
        let current = match current {
            Ok(scale) => scale.spec.and_then(|s| s.replicas).unwrap_or(0),
            Err(err) => return target_error(err, &what, exec.namespace),
        };
        let fields = (
            super::number(scale.replicas.as_ref(), 0, "scale.replicas"),
            super::number(scale.by.as_ref(), i32::MIN, "scale.by"),
        );
        let (replicas, by) = match fields {
            (Ok(replicas), Ok(by)) => (replicas, by),
            (Err(act), _) | (_, Err(act)) => return Ok(act),
        };
        let desired = kubectl::scale_target(current, replicas, by);
        entry
            .outputs
            .insert("previousReplicas".into(), current.to_string());
        entry.outputs.insert("replicas".into(), desired.to_string());
        return Ok(Act::Record);
    };
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let writer = &exec.writer;
    let result = match target.kind {
        WorkloadKind::Deployment => writer
            .patch_scale(
                &writer.api::<Deployment>(exec.namespace),
                &target.name,
                &patch,
                "scale",
            )
            .await
            .map(|_| ()),
        WorkloadKind::StatefulSet => writer
            .patch_scale(
                &writer.api::<StatefulSet>(exec.namespace),
                &target.name,
                &patch,
                "scale",
            )
            .await
            .map(|_| ()),
    };
    if let Err(err) = result {
        return write_error(err, &what, exec.namespace);
    }
    let previous = entry
        .outputs
        .get("previousReplicas")
        .cloned()
        .unwrap_or_default();
    Ok(Act::Succeeded(if exec.plan() {
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
            Api::<Deployment>::namespaced(exec.client().clone(), exec.namespace)
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
            Api::<StatefulSet>::namespaced(exec.client().clone(), exec.namespace)
                .get(&target.name)
                .await
                .map(|s| (None, s.spec.map(|s| s.template).unwrap_or_default()))
        }
    })
}

/// Patches the workload `target` through `writer` (counted as `write`).
pub(super) async fn patch_workload(
    writer: &Writer<'_>,
    namespace: &str,
    target: &WorkloadRef,
    patch: &Patch<serde_json::Value>,
    write: &'static str,
) -> Result<(), WriteError> {
    match target.kind {
        WorkloadKind::Deployment => writer
            .patch(
                &writer.api::<Deployment>(namespace),
                &target.name,
                patch,
                write,
            )
            .await
            .map(|_| ()),
        WorkloadKind::StatefulSet => writer
            .patch(
                &writer.api::<StatefulSet>(namespace),
                &target.name,
                patch,
                write,
            )
            .await
            .map(|_| ()),
    }
}

/// Restarts the target with a recorded restartedAt value, then (optionally) waits for the rollout.
pub(super) async fn restart(
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
        if let Err(err) =
            patch_workload(&exec.writer, exec.namespace, target, &patch, "restart").await
        {
            return write_error(err, &what, exec.namespace);
        }
        if exec.plan() {
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
pub(super) async fn rollout_progress(exec: &Exec<'_>, target: &WorkloadRef) -> Result<Act, Error> {
    let what = target_label(target);
    let status = match target.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(exec.client().clone(), exec.namespace)
                .get(&target.name)
                .await
                .map(|d| kubectl::deployment_rollout_status(&d))
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(exec.client().clone(), exec.namespace)
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

/// Sets and unsets environment variables, recording the prior values before the first write.
pub(super) async fn set_env(
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
    if let Err(err) = patch_workload(
        &exec.writer,
        exec.namespace,
        target,
        &Patch::Strategic(change.patch),
        "env",
    )
    .await
    {
        return write_error(err, &what, exec.namespace);
    }
    Ok(Act::Succeeded(if exec.plan() {
        format!("Plan: would change the environment of {what} (dry run accepted)")
    } else {
        format!("changed the environment of {what}; prior values are in outputs")
    }))
}

/// Rolls a Deployment back to a ReplicaSet's template, recording the revisions first.
pub(super) async fn rollback(
    exec: &Exec<'_>,
    rollback: &crate::step::RollbackAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let target = &rollback.target;
    entry.target = Some(target_label(target));
    let what = target_label(target);
    let deployments = exec.writer.api::<Deployment>(exec.namespace);
    let deployment = match deployments.get(&target.name).await {
        Ok(d) => d,
        Err(err) => return target_error(err, &what, exec.namespace),
    };
    let replica_sets = Api::<ReplicaSet>::namespaced(exec.client().clone(), exec.namespace)
        .list(&ListParams::default())
        .await
        .map_err(|err| Error::read("ReplicaSets", exec.namespace, err))?
        .items;
    // Once recorded, the target is the ReplicaSet chosen then: after the rollback it carries
    // a new revision number, and "previous" would mean something else. Planning against its
    // current revision makes a repeated pass a no-op ("already matches").
    let wanted = match entry.outputs.get("replicaSet") {
        None => match super::number(rollback.to_revision.as_ref(), 1, "rollback.toRevision") {
            Ok(revision) => revision.map(i64::from),
            Err(act) => return Ok(act),
        },
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
    if let Err(err) = exec
        .writer
        .patch(&deployments, &target.name, &patch, "rollback")
        .await
    {
        return write_error(err, &what, exec.namespace);
    }
    Ok(Act::Succeeded(if exec.plan() {
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

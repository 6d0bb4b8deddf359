//! The job step: one Job per step and attempt, under a deterministic name; and stopping it.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};

use super::{Act, Error, Exec, failed, target_error, write_error};
use crate::runbook_run::decide::outputs;
use crate::runbook_run::types::{RunbookRun, StepStatus};
use crate::step::Step;
use crate::well_known::{ATTEMPT_LABEL, JOB_NAME_LABEL, RUN_LABEL, STEP_LABEL};

/// Deterministic Job name for a run, step and attempt (at most 63 characters).
pub fn job_name(run: &str, step: &str, attempt: i32) -> String {
    crate::names::bound(
        &format!("{run}-{step}-{attempt}"),
        crate::names::STEP_JOB_NAME,
    )
    .into_owned()
}

/// Creates the attempt's Job (its name recorded first) and follows it to the end.
pub(super) async fn run(
    exec: &Exec<'_>,
    step: &Step,
    job: &crate::step::JobAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let name = job_name(exec.run_name, &step.name, entry.attempts.max(1));
    entry.target = Some(format!("Job/{name}"));
    if exec.plan() {
        return Ok(Act::Skipped(format!("Plan: would create Job {name}")));
    }
    if entry.outputs.get("jobName") != Some(&name) {
        entry.outputs.insert("jobName".into(), name);
        return Ok(Act::Record);
    }
    let jobs = exec.writer.api::<Job>(exec.namespace);
    let existing = jobs
        .get_opt(&name)
        .await
        .map_err(|err| Error::read(format!("Job/{name}"), exec.namespace, err))?;
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
                    match Api::<CronJob>::namespaced(exec.client().clone(), exec.namespace)
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
            match exec.writer.create(&jobs, &object, "create").await {
                Ok(j) => j,
                Err(err) if err.already_exists() => jobs
                    .get(&name)
                    .await
                    .map_err(|err| Error::read(format!("Job/{name}"), exec.namespace, err))?,
                Err(err) => return write_error(err, &format!("Job/{name}"), exec.namespace),
            }
        }
    };
    if !job.wait.unwrap_or(true) {
        return Ok(Act::Succeeded(format!("created Job {name}")));
    }
    match job_progress(&current) {
        // Outputs go into the same journal write as the outcome: reading the pods again after
        // a restart gives the same messages.
        end @ (Act::Succeeded(_) | Act::Failed { .. }) => {
            with_outputs(exec, &current, entry, end).await
        }
        waiting => Ok(waiting),
    }
}

/// Records the termination messages of the finished Job's pods as the step's outputs
/// ([`outputs`]), and notes what was refused in the step's message. A Job that succeeded is
/// read from its Succeeded pods (in creation order); one that failed from its newest Failed
/// pod. Pods already gone leave no outputs; a run identity that may not list pods gets the
/// outcome without outputs and a note saying so.
async fn with_outputs(
    exec: &Exec<'_>,
    job: &Job,
    entry: &mut StepStatus,
    end: Act,
) -> Result<Act, Error> {
    let name = job.name_any();
    let pods = exec.writer.api::<Pod>(exec.namespace);
    let selector = format!("{JOB_NAME_LABEL}={}", crate::names::label_value(&name));
    let listed = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(err) if crate::write::code(&err).is_some_and(super::permanent) => {
            return Ok(noted(
                end,
                &format!("outputs not read: listing the pods of Job {name} was refused ({err})"),
            ));
        }
        Err(err) => return Err(Error::read(format!("pods {selector}"), exec.namespace, err)),
    };
    let succeeded = matches!(end, Act::Succeeded(_));
    let messages = termination_messages(job.uid().as_deref(), listed, succeeded);
    let parsed = outputs::parse(&messages);
    outputs::record(&mut entry.outputs, &parsed);
    Ok(match parsed.summary() {
        Some(notes) => noted(end, &format!("outputs: {notes}")),
        None => end,
    })
}

/// The `(container, message)` pairs of a finished Job's pods owned by the Job with `uid`, in
/// container order: every Succeeded pod (oldest first) for a Job that succeeded, else the
/// newest Failed pod. A container's current termination message, else its last one.
pub fn termination_messages(
    uid: Option<&str>,
    mut pods: Vec<Pod>,
    succeeded: bool,
) -> Vec<(String, String)> {
    let wanted = if succeeded { "Succeeded" } else { "Failed" };
    pods.retain(|pod| {
        let owned = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(o.uid.as_str()) == uid);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        owned && phase == Some(wanted)
    });
    pods.sort_by(|a, b| {
        let key = |p: &Pod| (p.metadata.creation_timestamp.clone(), p.name_any());
        key(a).cmp(&key(b))
    });
    if !succeeded && let Some(newest) = pods.pop() {
        pods = vec![newest];
    }
    let mut messages = Vec::new();
    for pod in &pods {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        for container in containers {
            let Some(status) = statuses.iter().find(|s| s.name == container.name) else {
                continue;
            };
            let terminated = |s: Option<&ContainerState>| {
                s.and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.message.clone())
                    .filter(|m| !m.trim().is_empty())
            };
            if let Some(message) =
                terminated(status.state.as_ref()).or_else(|| terminated(status.last_state.as_ref()))
            {
                messages.push((container.name.clone(), message));
            }
        }
    }
    messages
}

/// `act` with `note` added to its message.
fn noted(act: Act, note: &str) -> Act {
    match act {
        Act::Succeeded(message) => Act::Succeeded(format!("{message}; {note}")),
        Act::Failed {
            reason,
            message,
            retryable,
        } => Act::Failed {
            reason,
            message: format!("{message}; {note}"),
            retryable,
        },
        other => other,
    }
}

/// The Job built from a template: owned by the run (so deleting the run deletes it), labelled
/// with the run and step.
pub(super) fn build_job(
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
    labels.insert(
        RUN_LABEL.into(),
        crate::names::label_value(exec.run_name).into_owned(),
    );
    labels.insert(STEP_LABEL.into(), step.to_owned());
    labels.insert(ATTEMPT_LABEL.into(), attempt.to_string());
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: RunbookRun::api_version(&()).into_owned(),
        kind: RunbookRun::kind(&()).into_owned(),
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

/// Deletes the Job of the current attempt, if any (cancel, timeout): a job step's, or a
/// restore step's.
/// The delete is never a dry run: a Plan-mode run records no Job name, so it has no Job to stop.
pub async fn stop(exec: &Exec<'_>, entry: &StepStatus) -> Result<(), Error> {
    let job = entry
        .outputs
        .get("jobName")
        // restore::OUTPUT_RESTORE_JOB (restore steps build on this module, not the reverse).
        .or_else(|| entry.outputs.get("restoreJob"));
    if let Some(name) = job {
        let writer = exec.writer.dry_run(false);
        // Already gone (Ok(false)) is what a stop wants.
        writer
            .delete(
                &writer.api::<Job>(exec.namespace),
                name,
                &DeleteParams::background(),
                "delete",
            )
            .await?;
    }
    Ok(())
}

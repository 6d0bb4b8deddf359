//! BackupPolicy controller: observe (the policy, its Jobs) -> decide ([`plan::decide`], pure)
//! -> apply (create the one Job the plan asks for, delete what retention drops) -> status.
//!
//! Jobs are created before they are recorded, under names derived from what they stand for
//! (the scheduled minute, the backup-now token, the backup they verify or prune): a process
//! that dies in between finds the Job on restart and adopts it, and a second create of the
//! same name is refused by the API server, so no scheduled time ever gets two backups. The
//! reconcile then sleeps until the instant the plan names (the next scheduled time, the
//! moment the newest backup ages past the RPO); Job changes wake it in between.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobTemplateSpec};
use kube::api::{Api, DeleteParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::debug;

use super::plan::{self, Inputs, JobOutcome, NewJob, ObservedJob, Stage};
use super::types::{BackupPolicy, BackupPolicyStatus, BackupStage};
use crate::conditions::{self, Desired, SpecProblem, Status};
use crate::context::Context;
use crate::metrics::{BackupFreshness, PolicyLabels};
use crate::runtime::{self, Cache, Shutdown};
use crate::schedule::Schedule;
use crate::validation;

/// Controller name in logs and metrics.
pub const NAME: &str = "backuppolicy";

/// The Ready condition's message while the spec is valid.
const READY_MESSAGE: &str = "the policy is valid";
/// Condition types the plan reports; each is removed when the plan stops reporting it.
const PLAN_CONDITIONS: [&str; 3] = ["BackupFresh", "LastBackupSucceeded", "ScheduleMeetsRPO"];

/// Jobs created in one reconcile before it hands over to the next: a backup that completed
/// while the operator was away can need its verify and prune Jobs, then the next backup.
const MAX_CREATES: usize = 8;

/// What can go wrong while reconciling a BackupPolicy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A write the API server refused or failed, naming the request.
    #[error(transparent)]
    Write(#[from] crate::write::WriteError),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(err) => crate::write::status_label(err),
            Error::Write(err) => err.metric_label(),
        }
    }
}

struct State {
    ctx: Arc<Context>,
    jobs: Cache<Job>,
    /// Jobs this controller deleted, until the cache has seen them go: deleting one again,
    /// or counting it for retention, would be wrong.
    deleted: std::sync::Mutex<BTreeSet<(String, String)>>,
    /// The policies' resourceVersions as this controller last wrote them.
    written: runtime::Written,
}

/// The policy that owns `job`, by its controller owner reference.
fn owning_policy(job: &Job) -> Option<ObjectRef<BackupPolicy>> {
    let owner = job
        .owner_references()
        .iter()
        .find(|o| o.kind == "BackupPolicy" && o.controller == Some(true))?;
    Some(ObjectRef::new(&owner.name).within(&job.namespace()?))
}

/// Runs the BackupPolicy controller until shutdown; `synced` fires once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<BackupPolicy>(&ctx, NAME);
    // Only the Jobs' metadata and status are read; their pod templates stay out of memory.
    let (jobs, job_stream) = runtime::watch_typed::<Job>(
        &ctx,
        watcher::Config::default().labels(crate::well_known::POLICY_LABEL),
        |job| job.spec = None,
    );
    let policies = store.store.clone();
    ctx.metrics
        .backups
        .install(Box::new(move || freshness(&policies)));
    let controller =
        Controller::for_stream(runtime::queued(&ctx, NAME, stream), store.store.clone())
            .watches_stream(job_stream, |job| owning_policy(&job));
    runtime::report_synced(
        vec![runtime::listed(&store), runtime::listed(&jobs)],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        jobs,
        deleted: std::sync::Mutex::default(),
        written: runtime::Written::default(),
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |bp, _| reconcile(bp, state.clone()),
        shutdown,
    )
    .await;
}

/// Every policy's newest good backup and RPO, for the backup gauges.
fn freshness(policies: &Store<BackupPolicy>) -> Vec<BackupFreshness> {
    policies
        .state()
        .iter()
        .map(|bp| {
            let status = bp.status.as_ref();
            let newest_good = if bp.spec.verify.is_some() {
                status.and_then(|s| s.last_verified_time.as_ref())
            } else {
                status.and_then(|s| s.last_successful_time.as_ref())
            };
            BackupFreshness {
                labels: PolicyLabels {
                    namespace: bp.namespace().unwrap_or_default(),
                    policy: bp.name_any(),
                },
                newest_good: newest_good.map(|t| t.0),
                rpo: bp.spec.rpo.as_ref().and_then(|r| r.parse().ok()),
            }
        })
        .collect()
}

/// Every problem with the spec that the API server could not catch.
pub fn problems(bp: &BackupPolicy) -> Vec<SpecProblem> {
    let spec = &bp.spec;
    let mut problems = Vec::new();
    if let Err(err) = crate::schedule::parse_cron(&spec.schedule.cron) {
        problems.push(SpecProblem::new("spec.schedule.cron", err.to_string()));
    }
    if let Err(err) =
        crate::schedule::parse_time_zone(spec.schedule.time_zone.as_deref().unwrap_or(""))
    {
        problems.push(SpecProblem::new("spec.schedule.timeZone", err.to_string()));
    }
    let durations = [
        (
            "spec.schedule.startingDeadline",
            spec.schedule.starting_deadline.as_ref(),
        ),
        ("spec.rpo", spec.rpo.as_ref()),
    ];
    for (field, duration) in durations {
        match duration.map(|d| d.parse()) {
            Some(Err(err)) => problems.push(SpecProblem::new(field, err.to_string())),
            Some(Ok(d)) if d.is_zero() => {
                problems.push(SpecProblem::new(field, "must be longer than 0s"));
            }
            _ => {}
        }
    }
    for (field, template) in templates(spec) {
        if let Some(Err(err)) = template.map(|t| t.decode()) {
            problems.push(SpecProblem::new(field, err.to_string()));
        }
    }
    problems
}

/// The three Job templates with the field naming each.
fn templates(
    spec: &super::types::BackupPolicySpec,
) -> [(
    &'static str,
    Option<&crate::embedded::Embedded<JobTemplateSpec>>,
); 3] {
    [
        ("spec.jobTemplate", Some(&spec.job_template)),
        (
            "spec.verify.jobTemplate",
            spec.verify.as_ref().map(|v| &v.job_template),
        ),
        (
            "spec.prune.jobTemplate",
            spec.prune.as_ref().map(|p| &p.job_template),
        ),
    ]
}

/// A Job as the plan sees it: its role, what it stands for, and how it ended.
fn observed(job: &Job) -> ObservedJob {
    let labels = job.labels();
    let annotations = job.annotations();
    let stage = match labels
        .get(crate::well_known::STAGE_LABEL)
        .map(String::as_str)
    {
        Some("verify") => Stage::Verify,
        Some("prune") => Stage::Prune,
        _ => Stage::Backup,
    };
    let status = job.status.as_ref();
    let true_condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    let outcome = if let Some(complete) = true_condition("Complete") {
        JobOutcome::Succeeded {
            at: status
                .and_then(|s| s.completion_time.as_ref())
                .or(complete.last_transition_time.as_ref())
                .map_or_else(Timestamp::now, |t| t.0),
        }
    } else if let Some(failed) = true_condition("Failed") {
        JobOutcome::Failed {
            at: failed
                .last_transition_time
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0),
            message: failed
                .message
                .clone()
                .or_else(|| failed.reason.clone())
                .unwrap_or_else(|| "the Job failed".into()),
        }
    } else {
        JobOutcome::Running
    };
    ObservedJob {
        name: job.name_any(),
        outcome,
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        created: job.metadata.creation_timestamp.as_ref().map(|t| t.0),
        stage,
        scheduled_time: annotations
            .get(crate::well_known::SCHEDULED_TIME_ANNOTATION)
            .and_then(|t| t.parse().ok()),
        request: annotations.get(crate::well_known::BACKUP_NOW).cloned(),
    }
}

/// The Job each unfinished record waits on now.
fn awaited_jobs(status: &BackupPolicyStatus) -> Vec<String> {
    status
        .history
        .iter()
        .filter_map(|record| match record.stage {
            BackupStage::Backup => Some(record.job.clone()),
            BackupStage::Verify => Some(plan::verify_job_name(&record.job)),
            BackupStage::Prune => Some(plan::prune_job_name(&record.job)),
            BackupStage::Done => None,
        })
        .collect()
}

/// The policy's Jobs: from the cache, plus a GET for any Job a record waits on that the cache
/// does not hold yet (one created a moment ago), so a Job the plan does not see is gone.
async fn observe_jobs(
    state: &State,
    bp: &BackupPolicy,
    status: &BackupPolicyStatus,
) -> Result<Vec<ObservedJob>, Error> {
    state.jobs.synced().await?;
    let namespace = bp.namespace();
    let uid = bp.uid();
    let cached = state.jobs.store.state();
    let ours: Vec<&Arc<Job>> = cached
        .iter()
        .filter(|job| {
            job.namespace() == namespace
                && job
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .collect();
    let mut jobs: Vec<ObservedJob> = match state.deleted.lock() {
        Ok(mut deleted) => {
            // Forget deletions the cache has caught up with, in this policy's namespace: a
            // Job of another policy there stays remembered until the cache drops it too.
            let ns = namespace.clone().unwrap_or_default();
            deleted.retain(|(n, name)| {
                *n != ns
                    || cached.iter().any(|job| {
                        job.namespace().as_deref() == Some(ns.as_str()) && job.name_any() == *name
                    })
            });
            ours.iter()
                .filter(|job| !deleted.contains(&(ns.clone(), job.name_any())))
                .map(|job| observed(job))
                .collect()
        }
        Err(_) => ours.iter().map(|job| observed(job)).collect(),
    };
    let known: BTreeSet<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let api: Api<Job> = Api::namespaced(
        state.ctx.client.clone(),
        namespace.as_deref().unwrap_or_default(),
    );
    for name in awaited_jobs(status) {
        if known.contains(&name) {
            continue;
        }
        if let Some(job) = api.get_opt(&name).await? {
            jobs.push(observed(&job));
        }
    }
    Ok(jobs)
}

/// What became of one create.
enum Created {
    /// The Job exists now (made by this call, or found under its name).
    Exists(Box<Job>),
    /// The API server refused it; the message says why.
    Rejected(String),
}

/// The template a new Job of `stage` is made from.
fn template_for(bp: &BackupPolicy, stage: Stage) -> Result<JobTemplateSpec, String> {
    let (field, template) = match stage {
        Stage::Backup => ("spec.jobTemplate", Some(&bp.spec.job_template)),
        Stage::Verify => (
            "spec.verify.jobTemplate",
            bp.spec.verify.as_ref().map(|v| &v.job_template),
        ),
        Stage::Prune => (
            "spec.prune.jobTemplate",
            bp.spec.prune.as_ref().map(|p| &p.job_template),
        ),
    };
    let template = template.ok_or_else(|| format!("{field} is not set"))?;
    template.decode().map_err(|err| format!("{field}: {err}"))
}

/// Creates the Job `new` names; an existing Job of that name is the one a previous attempt
/// made.
async fn create_job(state: &State, bp: &BackupPolicy, new: &NewJob) -> Result<Created, Error> {
    let template = match template_for(bp, new.stage) {
        Ok(t) => t,
        Err(message) => return Ok(Created::Rejected(message)),
    };
    let job = plan::build_job(bp, new, template);
    let api: Api<Job> = Api::namespaced(
        state.ctx.client.clone(),
        &bp.namespace().unwrap_or_default(),
    );
    state.ctx.metrics.count_write(NAME, "create");
    match api.create(&runtime::post_params(), &job).await {
        Ok(job) => Ok(Created::Exists(Box::new(job))),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok(Created::Exists(Box::new(api.get(&new.name).await?)))
        }
        Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => {
            Ok(Created::Rejected(status.message))
        }
        Err(err) => Err(err.into()),
    }
}

/// Deletes the Jobs retention drops (their pods go with them).
async fn delete_jobs(state: &State, bp: &BackupPolicy, names: &[String]) -> Result<(), Error> {
    let api: Api<Job> = Api::namespaced(
        state.ctx.client.clone(),
        &bp.namespace().unwrap_or_default(),
    );
    let namespace = bp.namespace().unwrap_or_default();
    for name in names {
        state.ctx.metrics.count_write(NAME, "delete");
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => debug!(job = %name, "deleted by retention"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
        if let Ok(mut deleted) = state.deleted.lock() {
            deleted.insert((namespace.clone(), name.clone()));
        }
    }
    Ok(())
}

/// `Reconciling` while a backup, verify or prune Job runs, so kstatus-aware tools (Argo CD,
/// `kubectl wait`) see the policy working.
fn reconciling(status: &BackupPolicyStatus) -> Option<Desired> {
    let job = plan::active_job(&status.history)?;
    Some(Desired::new(
        conditions::RECONCILING,
        Status::True,
        "BackupRunning",
        format!("Job {job} is running"),
    ))
}

async fn reconcile(bp: Arc<BackupPolicy>, state: Arc<State>) -> Result<Action, Error> {
    let namespace = bp.namespace().unwrap_or_default();
    let api: Api<BackupPolicy> = Api::namespaced(state.ctx.client.clone(), &namespace);
    let Some(bp) = state.written.latest(&api, bp).await? else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let problems = problems(&bp);
    let schedule = if problems.is_empty() {
        Schedule::parse(
            &bp.spec.schedule.cron,
            bp.spec.schedule.time_zone.as_deref(),
        )
        .ok()
    } else {
        None
    };
    let stored = bp.status.clone().unwrap_or_default();
    let mut jobs = observe_jobs(&state, &bp, &stored).await?;
    let backup_now = bp
        .annotations()
        .get(crate::well_known::BACKUP_NOW)
        .map(|t| t.trim())
        .filter(|t| !t.is_empty());
    let created = bp.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);

    // Create at most one Job per decision, each before it is recorded (see the module
    // comment), until the plan has nothing more to start.
    let mut status = stored.clone();
    let mut rejected: Vec<(String, String)> = Vec::new();
    let mut notes = Vec::new();
    let mut more_to_do = false;
    let mut plan = None;
    for round in 0..=MAX_CREATES {
        let mut decided = plan::decide(&Inputs {
            policy: &bp.name_any(),
            created,
            spec: &bp.spec,
            schedule: schedule.as_ref(),
            status: &status,
            jobs: &jobs,
            backup_now,
            rejected: &rejected,
            now,
        });
        let Some(new) = decided.create.take() else {
            notes.append(&mut decided.notes);
            plan = Some(decided);
            break;
        };
        status = decided.status.clone();
        if round == MAX_CREATES {
            // Left for the next reconcile, which starts right away.
            more_to_do = true;
            plan = Some(decided);
            break;
        }
        match create_job(&state, &bp, &new).await? {
            Created::Exists(job) => jobs.push(observed(&job)),
            Created::Rejected(message) => {
                // It did not start: the JobRejected Event of the next round says so instead.
                decided.notes.retain(|n| !n.reason.ends_with("Started"));
                rejected.push((new.name.clone(), message));
            }
        }
        notes.append(&mut decided.notes);
    }
    let Some(plan) = plan else {
        return Ok(Action::requeue(std::time::Duration::ZERO));
    };
    delete_jobs(&state, &bp, &plan.delete).await?;

    let time = runtime::now();
    // Judged for its Ready Event; the conditions are merged once below, against the stored
    // ones, so a condition that stays put keeps its lastTransitionTime.
    let verdict = validation::judge(
        &stored.conditions,
        &problems,
        bp.meta().generation,
        &time,
        READY_MESSAGE,
    );
    let mut status = plan.status;
    status.observed_generation = bp.meta().generation;
    let mut desired = conditions::validity(&problems, READY_MESSAGE);
    if let Some(working) = reconciling(&status) {
        desired.retain(|d| d.type_ != conditions::RECONCILING);
        desired.push(working);
    }
    desired.extend(plan.conditions);
    // A condition the plan no longer reports (rpo removed) goes, rather than going stale.
    let kept: Vec<_> = stored
        .conditions
        .iter()
        .filter(|c| {
            !PLAN_CONDITIONS.contains(&c.type_.as_str())
                || desired.iter().any(|d| d.type_ == c.type_)
        })
        .cloned()
        .collect();
    status.conditions = conditions::merge(&kept, &desired, bp.meta().generation, &time);
    if let Some(rv) =
        runtime::apply_status(&state.ctx, NAME, bp.as_ref(), bp.status.as_ref(), &status).await?
    {
        state
            .written
            .record::<BackupPolicy>(&namespace, &bp.name_any(), rv);
    }
    for note in verdict.note.iter().chain(&notes) {
        runtime::publish_note(&state.ctx, NAME, bp.as_ref(), note).await;
    }
    if more_to_do {
        return Ok(Action::requeue(std::time::Duration::ZERO));
    }
    Ok(runtime::wake_at(plan.wake_at, now))
}

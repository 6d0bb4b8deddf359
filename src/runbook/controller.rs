//! Runbook controller: observe referenced BackupPolicies, decide validity, write status.

use std::sync::Arc;

use crate::runtime::Cache;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::Controller;
use kube::runtime::controller::Action;

use std::time::Duration;

use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;

use super::triggers;
use super::types::{Runbook, RunbookStatus};
use crate::backup_policy::BackupPolicy;
use crate::conditions::SpecProblem;
use crate::context::Context;
use crate::runbook_run::RunbookRun;
use crate::runtime::{self, Shutdown};
use crate::validation;

/// Controller name in logs and metrics.
pub const NAME: &str = "runbook";

/// What can go wrong while reconciling a Runbook.
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

/// What the reconcile reads besides the Runbook.
pub struct Observed {
    /// BackupPolicies named by backup steps that do not exist, with the step's JSON path.
    pub missing_policies: Vec<(String, String)>,
}

struct State {
    ctx: Arc<Context>,
    runs: Cache<RunbookRun>,
    policies: Cache<PartialObjectMeta<BackupPolicy>>,
}

/// Runs the Runbook controller until shutdown; `synced` resolves once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<Runbook>(&ctx, NAME);
    let (policies, policy_stream) = runtime::watch_metadata::<BackupPolicy>(&ctx);
    let runbooks = store.store.clone();
    let controller =
        Controller::for_stream(runtime::queued(&ctx, NAME, stream), store.store.clone())
            .watches_stream(policy_stream, move |policy| {
                let name = policy.name_any();
                runtime::referrers(&runbooks, policy.namespace(), |rb| {
                    backup_policies(rb).any(|(_, p)| p == name)
                })
            });
    let (runs, run_stream) = runtime::watch_decoded::<RunbookRun>(&ctx, NAME);
    let controller = controller.watches_stream(run_stream, |run| {
        let namespace = run.namespace().unwrap_or_default();
        Some(
            kube::runtime::reflector::ObjectRef::new(&run.spec.runbook_ref.name).within(&namespace),
        )
    });
    runtime::report_synced(
        vec![
            runtime::listed(&store),
            runtime::listed(&policies),
            runtime::listed(&runs),
        ],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        runs: runs.clone(),
        policies,
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |rb, _| reconcile(rb, state.clone()),
        shutdown,
    )
    .await;
}

/// The BackupPolicies a runbook's backup steps name, with the JSON path of each step.
fn backup_policies(rb: &Runbook) -> impl Iterator<Item = (String, &str)> {
    let steps = rb
        .spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("spec.steps[{i}]"), s));
    let finally = rb
        .spec
        .finally
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("spec.finally[{i}]"), s));
    steps.chain(finally).filter_map(|(path, step)| {
        step.backup
            .as_ref()
            .map(|b| (format!("{path}.backup.policy"), b.policy.as_str()))
    })
}

async fn observe(rb: &Runbook, state: &State) -> Result<Observed, kube::Error> {
    let ns = rb.namespace().unwrap_or_default();
    let mut missing_policies = Vec::new();
    for (path, policy) in backup_policies(rb) {
        if !runtime::exists(&state.policies, &ns, policy).await? {
            missing_policies.push((path, policy.to_owned()));
        }
    }
    Ok(Observed { missing_policies })
}

/// Every problem with the spec that the API server could not catch.
pub fn problems(rb: &Runbook, observed: &Observed) -> Vec<SpecProblem> {
    let spec = &rb.spec;
    let mut problems = crate::step::validate_steps(&spec.steps, "spec.steps");
    problems.extend(crate::step::validate_steps(&spec.finally, "spec.finally"));
    problems.extend(crate::step::validate_unique_names(&[
        ("spec.steps", &spec.steps),
        ("spec.finally", &spec.finally),
    ]));
    if let Some(schedule) = &spec.schedule {
        if let Err(err) = crate::schedule::parse_cron(&schedule.cron) {
            problems.push(SpecProblem::new("spec.schedule.cron", err.to_string()));
        }
        if let Err(err) =
            crate::schedule::parse_time_zone(schedule.time_zone.as_deref().unwrap_or(""))
        {
            problems.push(SpecProblem::new("spec.schedule.timeZone", err.to_string()));
        }
    }
    problems.extend(crate::params::undeclared_references(spec));
    for (path, policy) in &observed.missing_policies {
        problems.push(SpecProblem::new(
            path,
            format!(
                "BackupPolicy {policy:?} does not exist in namespace {:?}; create it or fix the name",
                rb.namespace().unwrap_or_default()
            ),
        ));
    }
    problems
}

/// The status the Runbook should have.
pub fn desired_status(rb: &Runbook, verdict: &validation::Verdict) -> RunbookStatus {
    let mut status = rb.status.clone().unwrap_or_default();
    status.phase = Some(if verdict.valid { "Ready" } else { "Invalid" }.into());
    status.observed_generation = rb.metadata.generation;
    status.conditions = verdict.conditions.clone();
    status
}

async fn reconcile(rb: Arc<Runbook>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let observed = observe(&rb, &state).await?;
    let problems = problems(&rb, &observed);
    let existing = rb
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let verdict = validation::judge(
        existing,
        &problems,
        rb.metadata.generation,
        &runtime::now(),
        "the runbook is valid and can run",
    );
    let mut status = desired_status(&rb, &verdict);
    let namespace = rb.namespace().unwrap_or_default();
    let name = rb.name_any();
    // History and concurrency are decided from the runs cache: never from one that has not
    // listed yet, or a restart would read "no runs" and rewrite lastRun.
    state.runs.synced().await?;
    let runs = state.runs.store.state();
    let mine: Vec<&RunbookRun> = runs
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| {
            r.namespace().as_deref() == Some(namespace.as_str()) && r.spec.runbook_ref.name == name
        })
        .collect();
    let now = jiff::Timestamp::now();
    let plan = if verdict.valid {
        triggers::plan(&rb, &mine, &mut status, now)
    } else {
        triggers::Plan::default()
    };
    let run_api: Api<RunbookRun> = Api::namespaced(ctx.client.clone(), &namespace);
    for run in &plan.cancel {
        let patch = serde_json::json!({"metadata": {"annotations": {crate::well_known::CANCEL: "concurrencyPolicy Replace"}}});
        match run_api
            .patch(run, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
        ctx.metrics.count_write(NAME, "cancel");
    }
    let mut created = Vec::new();
    for (run, reason, message) in &plan.create {
        ctx.metrics.count_write(NAME, "create");
        match run_api.create(&PostParams::default(), run).await {
            Ok(_) => created.push((*reason, message.clone())),
            // Created before (a restart, or a token used again): that run stands.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    runtime::apply_status(ctx, NAME, rb.as_ref(), rb.status.as_ref(), &status).await?;
    for run in &plan.prune {
        match run_api.delete(run, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
        ctx.metrics.count_write(NAME, "prune");
    }
    if let Some(note) = &verdict.note {
        runtime::publish_note(ctx, NAME, rb.as_ref(), note).await;
    }
    for (reason, message) in created {
        ctx.publish(
            NAME,
            &rb.object_ref(&()),
            EventType::Normal,
            reason,
            message,
        )
        .await;
    }
    for (warning, reason, message) in plan.events {
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(NAME, &rb.object_ref(&()), type_, reason, message)
            .await;
    }
    Ok(match plan.next_check {
        Some(next) => Action::requeue(crate::time::until(now, next) + Duration::from_millis(50)),
        None => Action::await_change(),
    })
}

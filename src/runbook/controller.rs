//! Runbook controller: observe referenced BackupPolicies, decide validity, write status.

use std::sync::Arc;

use crate::runtime::Cache;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::Controller;
use kube::runtime::controller::Action;

use super::types::{Runbook, RunbookStatus};
use crate::backup_policy::BackupPolicy;
use crate::conditions::SpecProblem;
use crate::context::Context;
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
}

/// What the reconcile reads besides the Runbook.
pub struct Observed {
    /// BackupPolicies named by backup steps that do not exist, with the step's JSON path.
    pub missing_policies: Vec<(String, String)>,
}

struct State {
    ctx: Arc<Context>,
    policies: Cache<PartialObjectMeta<BackupPolicy>>,
}

/// Runs the Runbook controller until shutdown; `synced` resolves once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<Runbook>(&ctx, NAME);
    let (policies, policy_stream) = runtime::watch_metadata::<BackupPolicy>(&ctx);
    let runbooks = store.store.clone();
    let controller = Controller::for_stream(stream, store.store.clone()).watches_stream(
        policy_stream,
        move |policy| {
            let name = policy.name_any();
            runtime::referrers(&runbooks, policy.namespace(), |rb| {
                backup_policies(rb).any(|(_, p)| p == name)
            })
        },
    );
    runtime::report_synced(
        vec![runtime::listed(&store), runtime::listed(&policies)],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
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

async fn observe(rb: &Runbook, state: &State) -> Observed {
    let ns = rb.namespace().unwrap_or_default();
    let mut missing_policies = Vec::new();
    for (path, policy) in backup_policies(rb) {
        if !runtime::exists(&state.policies, &ns, policy).await {
            missing_policies.push((path, policy.to_owned()));
        }
    }
    Observed { missing_policies }
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
    let observed = observe(&rb, &state).await;
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
    let status = desired_status(&rb, &verdict);
    runtime::apply_status(ctx, NAME, rb.as_ref(), rb.status.as_ref(), &status).await?;
    if let Some(note) = &verdict.note {
        runtime::publish_note(ctx, NAME, rb.as_ref(), note).await;
    }
    Ok(Action::await_change())
}

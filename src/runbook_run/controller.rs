//! RunbookRun controller: observe the referenced Runbook, decide validity, write status.
//! Step execution builds on this in the Runbook execution engine.

use std::sync::Arc;

use crate::runtime::Cache;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::Controller;
use kube::runtime::controller::Action;

use super::types::{RunbookRun, RunbookRunStatus};
use crate::conditions::SpecProblem;
use crate::context::Context;
use crate::runbook::Runbook;
use crate::runtime::{self, Shutdown};
use crate::validation;

/// Controller name in logs and metrics.
pub const NAME: &str = "runbookrun";

/// Phase of a run that has not started.
pub const PHASE_PENDING: &str = "Pending";

/// What can go wrong while reconciling a RunbookRun.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// What the reconcile reads besides the run.
pub struct Observed {
    /// Whether the named Runbook exists.
    pub runbook_exists: bool,
}

struct State {
    ctx: Arc<Context>,
    runbooks: Cache<PartialObjectMeta<Runbook>>,
}

/// Runs the RunbookRun controller until shutdown; `synced` fires once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<RunbookRun>(&ctx, NAME);
    let (runbooks, runbook_stream) = runtime::watch_metadata::<Runbook>(&ctx);
    let runs = store.store.clone();
    let controller = Controller::for_stream(stream, store.store.clone()).watches_stream(
        runbook_stream,
        move |runbook| {
            let name = runbook.name_any();
            runtime::referrers(&runs, runbook.namespace(), |run| {
                run.spec.runbook_ref.name == name
            })
        },
    );
    runtime::report_synced(
        vec![runtime::listed(&store), runtime::listed(&runbooks)],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        runbooks,
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |run, _| reconcile(run, state.clone()),
        shutdown,
    )
    .await;
}

/// Every problem with the run that the API server could not catch.
pub fn problems(run: &RunbookRun, observed: &Observed) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    if !observed.runbook_exists {
        problems.push(SpecProblem::new(
            "spec.runbookRef.name",
            format!(
                "Runbook {:?} does not exist in namespace {:?}; create it, or delete this run and create one that names an existing Runbook",
                run.spec.runbook_ref.name,
                run.namespace().unwrap_or_default()
            ),
        ));
    }
    problems
}

/// The status the run should have.
pub fn desired_status(run: &RunbookRun, verdict: &validation::Verdict) -> RunbookRunStatus {
    let mut status = run.status.clone().unwrap_or_default();
    if status.phase.is_none() {
        status.phase = Some(PHASE_PENDING.into());
    }
    status.observed_generation = run.metadata.generation;
    status.conditions = verdict.conditions.clone();
    status
}

async fn reconcile(run: Arc<RunbookRun>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let namespace = run.namespace().unwrap_or_default();
    let observed = Observed {
        runbook_exists: runtime::exists(&state.runbooks, &namespace, &run.spec.runbook_ref.name)
            .await,
    };
    let problems = problems(&run, &observed);
    let existing = run
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let verdict = validation::judge(
        existing,
        &problems,
        run.metadata.generation,
        &runtime::now(),
        "the Runbook exists and the run is accepted",
    );
    let status = desired_status(&run, &verdict);
    runtime::apply_status(ctx, NAME, run.as_ref(), run.status.as_ref(), &status).await?;
    if let Some(note) = &verdict.note {
        runtime::publish_note(ctx, NAME, run.as_ref(), note).await;
    }
    Ok(Action::await_change())
}

//! BackupPolicy controller: decide validity, write status. Scheduling builds on this.

use std::sync::Arc;

use kube::runtime::Controller;
use kube::runtime::controller::Action;

use super::types::{BackupPolicy, BackupPolicyStatus};
use crate::conditions::SpecProblem;
use crate::context::Context;
use crate::runtime::{self, Shutdown};
use crate::validation;

/// Controller name in logs and metrics.
pub const NAME: &str = "backuppolicy";

/// What can go wrong while reconciling a BackupPolicy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the BackupPolicy controller until shutdown; `synced` fires once its cache is full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<BackupPolicy>(&ctx, NAME);
    let controller = Controller::for_stream(stream, store.store.clone());
    runtime::report_synced(vec![runtime::listed(&store)], synced);
    runtime::run(controller, ctx, NAME, reconcile, shutdown).await;
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
    let templates = [
        ("spec.jobTemplate", Some(&spec.job_template)),
        (
            "spec.verify.jobTemplate",
            spec.verify.as_ref().map(|v| &v.job_template),
        ),
        (
            "spec.prune.jobTemplate",
            spec.prune.as_ref().map(|p| &p.job_template),
        ),
    ];
    for (field, template) in templates {
        if let Some(Err(err)) = template.map(|t| t.decode()) {
            problems.push(SpecProblem::new(field, err.to_string()));
        }
    }
    problems
}

/// The status the policy should have.
pub fn desired_status(bp: &BackupPolicy, verdict: &validation::Verdict) -> BackupPolicyStatus {
    let mut status = bp.status.clone().unwrap_or_default();
    let phase = if !verdict.valid {
        "Invalid"
    } else if bp.spec.schedule.suspend == Some(true) {
        "Suspended"
    } else {
        "Ready"
    };
    status.phase = Some(phase.into());
    status.observed_generation = bp.metadata.generation;
    status.conditions = verdict.conditions.clone();
    status
}

async fn reconcile(bp: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let problems = problems(&bp);
    runtime::settle(
        &ctx,
        NAME,
        bp.as_ref(),
        bp.status.as_ref(),
        &problems,
        "the policy is valid",
        |verdict| desired_status(&bp, verdict),
    )
    .await?;
    Ok(Action::await_change())
}

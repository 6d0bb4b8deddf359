//! MaintenanceWindow controller: observe referenced Runbooks, decide validity, write status.
//! The window lifecycle builds on this.

use std::sync::Arc;

use crate::runtime::Cache;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::Controller;
use kube::runtime::controller::Action;

use super::types::{MaintenanceWindow, MaintenanceWindowStatus};
use crate::conditions::SpecProblem;
use crate::context::Context;
use crate::runbook::Runbook;
use crate::runtime::{self, Shutdown};
use crate::validation;

/// Controller name in logs and metrics.
pub const NAME: &str = "maintenancewindow";

/// What can go wrong while reconciling a MaintenanceWindow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// What the reconcile reads besides the window.
pub struct Observed {
    /// Runbooks named by beforeStart/afterEnd that do not exist, with the field path.
    pub missing_runbooks: Vec<(&'static str, String)>,
}

struct State {
    ctx: Arc<Context>,
    runbooks: Cache<PartialObjectMeta<Runbook>>,
}

/// The Runbooks a window names, with the field naming each.
fn runbooks_named(mw: &MaintenanceWindow) -> impl Iterator<Item = (&'static str, &str)> {
    let before = mw
        .spec
        .before_start
        .as_ref()
        .map(|b| ("spec.beforeStart.runbook", b.runbook.as_str()));
    let after = mw
        .spec
        .after_end
        .as_ref()
        .map(|a| ("spec.afterEnd.runbook", a.runbook.as_str()));
    before.into_iter().chain(after)
}

/// Runs the MaintenanceWindow controller until shutdown; `synced` fires once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<MaintenanceWindow>(&ctx, NAME);
    let (runbooks, runbook_stream) = runtime::watch_metadata::<Runbook>(&ctx);
    let windows = store.store.clone();
    let controller = Controller::for_stream(stream, store.store.clone()).watches_stream(
        runbook_stream,
        move |runbook| {
            let name = runbook.name_any();
            runtime::referrers(&windows, runbook.namespace(), |mw| {
                runbooks_named(mw).any(|(_, r)| r == name)
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
        move |mw, _| reconcile(mw, state.clone()),
        shutdown,
    )
    .await;
}

/// Every problem with the spec that the API server could not catch.
pub fn problems(mw: &MaintenanceWindow, observed: &Observed) -> Vec<SpecProblem> {
    let spec = &mw.spec;
    let mut problems = Vec::new();
    if let Some(schedule) = &spec.schedule {
        if let Err(err) = crate::schedule::parse_cron(&schedule.cron) {
            problems.push(SpecProblem::new("spec.schedule.cron", err.to_string()));
        }
        if let Err(err) =
            crate::schedule::parse_time_zone(schedule.time_zone.as_deref().unwrap_or(""))
        {
            problems.push(SpecProblem::new("spec.schedule.timeZone", err.to_string()));
        }
        match schedule.duration.parse() {
            Err(err) => problems.push(SpecProblem::new("spec.schedule.duration", err.to_string())),
            Ok(d) if d.is_zero() => problems.push(SpecProblem::new(
                "spec.schedule.duration",
                "a window must last longer than 0s",
            )),
            Ok(_) => {}
        }
    }
    if let (Some(start), Some(end)) = (&spec.start, &spec.end)
        && end.0 <= start.0
    {
        problems.push(SpecProblem::new("spec.end", "end must be after start"));
    }
    for (field, runbook) in &observed.missing_runbooks {
        problems.push(SpecProblem::new(
            *field,
            format!(
                "Runbook {runbook:?} does not exist in namespace {:?}; create it or fix the name",
                mw.namespace().unwrap_or_default()
            ),
        ));
    }
    problems
}

/// The status the window should have.
pub fn desired_status(
    mw: &MaintenanceWindow,
    verdict: &validation::Verdict,
) -> MaintenanceWindowStatus {
    let mut status = mw.status.clone().unwrap_or_default();
    let phase = if !verdict.valid {
        "Invalid"
    } else if mw.spec.suspend == Some(true) {
        "Suspended"
    } else {
        "Scheduled"
    };
    status.phase = Some(phase.into());
    status.observed_generation = mw.metadata.generation;
    status.conditions = verdict.conditions.clone();
    status
}

async fn reconcile(mw: Arc<MaintenanceWindow>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let namespace = mw.namespace().unwrap_or_default();
    let mut missing_runbooks = Vec::new();
    for (field, runbook) in runbooks_named(&mw) {
        if !runtime::exists(&state.runbooks, &namespace, runbook).await {
            missing_runbooks.push((field, runbook.to_owned()));
        }
    }
    let problems = problems(&mw, &Observed { missing_runbooks });
    runtime::settle(
        ctx,
        NAME,
        mw.as_ref(),
        mw.status.as_ref(),
        &problems,
        "the window is valid",
        |verdict| desired_status(&mw, verdict),
    )
    .await?;
    Ok(Action::await_change())
}

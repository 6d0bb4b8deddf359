//! MaintenanceWindow controller: wiring only. Watches and caches -> [`observe`] ->
//! [`decide::decide`] (pure) -> [`act`] (runs, changes, restores, status) -> requeue.
//!
//! A reconcile carries out decisions until one says to wait, then asks to be woken at the
//! instant that decision names (the next lead time, start or end): boundaries are timers,
//! and a reconcile between them writes nothing.

use std::sync::Arc;

use futures::channel::mpsc::unbounded;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::NAME;
use super::act::{self, Reconcile, Shared};
use super::decide;
use super::observe::{self, Caches};
use super::types::{MaintenanceWindow, TargetKind, WindowPhase};
use crate::context::Context;
use crate::errors::MetricLabel;
use crate::runbook::Runbook;
use crate::runbook_run::RunbookRun;
use crate::runtime::{self, Shutdown};
use crate::well_known::WINDOW_LABEL;

/// Decisions carried out in one reconcile before it gives up and asks to run again; a real
/// sequence (restore, afterEnd, finish, next preflight) is a handful.
const MAX_ACTIONS: usize = 16;

/// What can go wrong while reconciling a MaintenanceWindow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the window or what it names failed.
    #[error(transparent)]
    Read(#[from] observe::Error),
    /// Carrying out a decision failed.
    #[error(transparent)]
    Act(#[from] act::Error),
}

impl MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Read(err) => err.metric_label(),
            Error::Act(err) => err.metric_label(),
        }
    }
}

/// Whether a window's changes are in effect, for `maintenance_window_active`: from the moment
/// it has made them (Active) until it has put them all back (Restoring ends).
pub fn changes_in_effect(mw: &MaintenanceWindow) -> bool {
    let phase = mw.status.as_ref().and_then(|s| s.phase);
    WindowPhase::from_status(phase).changes_in_effect()
}

/// Every cached window and whether its changes are in effect.
fn activity(windows: &Store<MaintenanceWindow>) -> Vec<(crate::metrics::WindowLabels, bool)> {
    windows
        .state()
        .iter()
        .map(|mw| {
            let labels = crate::metrics::WindowLabels {
                namespace: mw.namespace().unwrap_or_default(),
                window: mw.name_any(),
            };
            (labels, changes_in_effect(mw))
        })
        .collect()
}

/// Runs the MaintenanceWindow controller until shutdown; `synced` fires once its caches are full.
///
/// `windows` is the scope's shared MaintenanceWindow watch: its cache and this controller's
/// stream.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: Shutdown,
    synced: tokio::sync::mpsc::Sender<()>,
    windows: runtime::SharedPart<MaintenanceWindow>,
) {
    let (store, stream) = windows;
    let (runbooks, runbook_stream) = runtime::watch_metadata::<Runbook>(&ctx);
    let (runs, run_stream) = runtime::watch_decoded_with::<RunbookRun>(
        &ctx,
        NAME,
        watcher::Config::default().labels(WINDOW_LABEL),
    );
    let (deployments, deployment_stream) = runtime::watch_metadata::<Deployment>(&ctx);
    let (statefulsets, statefulset_stream) = runtime::watch_metadata::<StatefulSet>(&ctx);
    let (cronjobs, cronjob_stream) = runtime::watch_metadata::<CronJob>(&ctx);
    let (wake, woken) = unbounded();
    let windows = store.store.clone();
    let gauged = windows.clone();
    ctx.metrics
        .objects
        .install_windows(Box::new(move || activity(&gauged)));
    let (by_runbook, by_deployment, by_statefulset, by_cronjob) = (
        windows.clone(),
        windows.clone(),
        windows.clone(),
        windows.clone(),
    );
    let controller = Controller::for_shared_stream(
        runtime::queued_shared(&ctx, NAME, stream),
        store.store.clone(),
    )
    .watches_stream(runbook_stream, move |runbook| {
        let name = runbook.name_any();
        runtime::referrers(&by_runbook, runbook.namespace(), |mw| {
            observe::runbooks_named(mw).any(|(_, r)| r == name)
        })
    })
    .watches_stream(run_stream, |run: RunbookRun| {
        let namespace = run.namespace().unwrap_or_default();
        // The label holds a hashed value for a long window name; the controlling owner
        // reference holds the name itself.
        run.labels().get(WINDOW_LABEL)?;
        run.owner_references()
            .iter()
            .find(|o| {
                o.controller == Some(true)
                    && o.kind == <MaintenanceWindow as kube::Resource>::kind(&())
            })
            .map(|o| ObjectRef::new(&o.name).within(&namespace))
    })
    .watches_stream(deployment_stream, move |d| {
        observe::windows_targeting(&by_deployment, TargetKind::Deployment, &d)
    })
    .watches_stream(statefulset_stream, move |s| {
        observe::windows_targeting(&by_statefulset, TargetKind::StatefulSet, &s)
    })
    .watches_stream(cronjob_stream, move |c| {
        observe::windows_targeting(&by_cronjob, TargetKind::CronJob, &c)
    })
    .reconcile_on(woken);
    runtime::report_synced(
        vec![
            runtime::listed(&store),
            runtime::listed(&runbooks),
            runtime::listed(&runs),
            runtime::listed(&deployments),
            runtime::listed(&statefulsets),
            runtime::listed(&cronjobs),
        ],
        synced,
    );
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        caches: Caches {
            windows,
            runbooks,
            runs,
            deployments,
            statefulsets,
            cronjobs,
        },
        wake,
        started: Timestamp::now(),
        written: runtime::Written::default(),
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |mw, _| reconcile(mw, shared.clone()),
        shutdown,
    )
    .await;
}

async fn reconcile(mw: Arc<MaintenanceWindow>, shared: Arc<Shared>) -> Result<Action, Error> {
    let namespace = mw.namespace().unwrap_or_default();
    let api: Api<MaintenanceWindow> = Api::namespaced(shared.ctx.client.clone(), &namespace);
    let name = mw.name_any();
    let latest = shared.written.latest(&api, mw).await;
    let latest = latest.map_err(|source| observe::Error {
        what: format!("MaintenanceWindow {namespace}/{name}"),
        source,
    })?;
    let Some(mw) = latest else {
        return Ok(Action::await_change());
    };
    let observed = observe::observe(&shared.caches, &mw).await?;
    let problems = decide::problems(&mw, &observed.missing_runbooks, observed.now);
    let mut r = Reconcile::new(&shared, &mw, observed, problems);
    let action = drive(&mut r).await;
    if let Some(at) = r.notify_wake() {
        // The window's own timers know nothing of escalations: a timer of its own wakes the
        // window when the next level falls due.
        let wake = shared.wake.clone();
        let window = kube::runtime::reflector::ObjectRef::from(mw.as_ref());
        let wait = crate::time::until(r.now(), at);
        tokio::spawn(async move {
            tokio::time::sleep(wait + std::time::Duration::from_millis(50)).await;
            let _ = wake.unbounded_send(window);
        });
    }
    if let Some(note) = r.ready_note() {
        runtime::publish_note(&shared.ctx, NAME, mw.as_ref(), note).await;
    }
    Ok(action?)
}

/// Decides and carries out decisions until one is a wait.
async fn drive(r: &mut Reconcile<'_>) -> Result<Action, act::Error> {
    for _ in 0..MAX_ACTIONS {
        let decision = decide::decide(r.name(), &r.mw().spec, &r.window_state(), r.now());
        if let Some(action) = r.carry_out(decision).await? {
            return Ok(action);
        }
    }
    // Still acting after many steps: look again shortly rather than loop here.
    Ok(Action::requeue(std::time::Duration::from_secs(1)))
}

#[cfg(test)]
mod tests;

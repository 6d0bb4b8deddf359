//! BlueGreenRelease controller, wiring only: watches and caches -> [`observe`] ->
//! [`decide`](super::decide::decide) (pure) -> [`act`] (the writes, status included, built by
//! [`status`]) -> requeue.
//!
//! Validation steps run on the RunbookRun engine: the release keeps a Runbook
//! `<release>-<stage>` holding the stage's steps (owned by the release) and starts the run
//! `<release>-<pre|post>-<revision>`, whose journal is copied into `status.validation`.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::act::{self, Actor, Switches};
use super::decide::{self, problems, stack_images, stack_revision};
use super::observe::{
    self, Caches, Observed, ReleaseState, SERVICE_NAME_LABEL, active_services, owner_of,
    services_named, validation_journals,
};
use super::status;
use super::types::BlueGreenRelease;
use crate::context::Context;
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook_run::RunbookRun;
use crate::runtime::{self, Shutdown};
use crate::well_known::RELEASE_RUN_LABEL;
use crate::write::Writer;

/// Controller name in logs and metrics.
pub const NAME: &str = super::CONTROLLER_NAME;
/// Decisions carried out in one reconcile before it asks to run again.
const MAX_ACTIONS: usize = 16;

/// What can go wrong while reconciling a BlueGreenRelease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read of the release, its Services or a cache failed.
    #[error(transparent)]
    Observe(#[from] observe::Error),
    /// A write the API server refused or failed, naming the request.
    #[error(transparent)]
    Write(#[from] crate::write::WriteError),
    /// A write carrying out a decision failed.
    #[error(transparent)]
    Act(#[from] act::Error),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Observe(err) => err.metric_label(),
            Error::Write(err) => err.metric_label(),
            Error::Act(err) => err.metric_label(),
        }
    }
}

struct State {
    ctx: Arc<Context>,
    caches: Caches,
    switches: Switches,
}

/// Every cached release and whether it is degraded.
fn health(releases: &Store<BlueGreenRelease>) -> Vec<(crate::metrics::ReleaseLabels, bool)> {
    releases
        .state()
        .iter()
        .map(|bgr| {
            let labels = crate::metrics::ReleaseLabels {
                namespace: bgr.namespace().unwrap_or_default(),
                release: bgr.name_any(),
            };
            (labels, status::is_degraded(bgr))
        })
        .collect()
}

/// Runs the BlueGreenRelease controller until shutdown; `synced` fires once its caches are full.
/// `windows` is the scope's shared MaintenanceWindow watch.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: Shutdown,
    synced: tokio::sync::mpsc::Sender<()>,
    windows: runtime::SharedPart<MaintenanceWindow>,
) {
    let (store, stream) = runtime::watch_decoded::<BlueGreenRelease>(&ctx, NAME);
    let (services, service_stream) =
        runtime::watch_decoded_with::<Service>(&ctx, NAME, watcher::Config::default());
    let (slices, slice_stream) = runtime::watch_decoded_with::<EndpointSlice>(
        &ctx,
        NAME,
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
    );
    let (deployments, deployment_stream) = runtime::watch_decoded_with::<Deployment>(
        &ctx,
        NAME,
        watcher::Config::default().labels(crate::well_known::RELEASE_LABEL),
    );
    let (runs, run_stream) = runtime::watch_decoded_with::<RunbookRun>(
        &ctx,
        NAME,
        watcher::Config::default().labels(RELEASE_RUN_LABEL),
    );
    let (windows, window_stream) = windows;
    let releases = store.store.clone();
    let gauged = releases.clone();
    ctx.metrics
        .objects
        .install_releases(Box::new(move || health(&gauged)));
    let (by_service, by_slice, by_window) = (releases.clone(), releases.clone(), releases.clone());
    let controller =
        Controller::for_stream(runtime::queued(&ctx, NAME, stream), store.store.clone())
            .watches_stream(service_stream, move |service: Service| {
                let name = service.name_any();
                runtime::referrers(&by_service, service.namespace(), |bgr| {
                    services_named(bgr).any(|(_, s)| s == name)
                })
            })
            .watches_stream(slice_stream, move |slice: EndpointSlice| {
                let service = slice.labels().get(SERVICE_NAME_LABEL).cloned();
                runtime::referrers(&by_slice, slice.namespace(), |bgr| {
                    active_services(bgr).any(|active| Some(active) == service.as_deref())
                })
            })
            .watches_stream(deployment_stream, |d: Deployment| {
                owner_of(&d)
                    .map(|name| ObjectRef::new(&name).within(&d.namespace().unwrap_or_default()))
            })
            .watches_stream(run_stream, |run: RunbookRun| {
                let namespace = run.namespace().unwrap_or_default();
                // The label holds a hashed value for a long release name; the controlling
                // owner reference holds the name itself.
                run.labels().get(RELEASE_RUN_LABEL)?;
                owner_of(&run).map(|name| ObjectRef::new(&name).within(&namespace))
            })
            .watches_shared_stream(window_stream, move |mw: Arc<MaintenanceWindow>| {
                runtime::referrers(&by_window, mw.namespace(), |bgr| {
                    bgr.spec.requires_maintenance_window.is_some()
                })
            });
    runtime::report_synced(
        vec![
            runtime::listed(&store),
            runtime::listed(&services),
            runtime::listed(&slices),
            runtime::listed(&deployments),
            runtime::listed(&runs),
            runtime::listed(&windows),
        ],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        caches: Caches {
            services,
            slices,
            deployments,
            runs,
            windows,
            written: runtime::Written::default(),
        },
        switches: Switches::default(),
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |bgr, _| reconcile(bgr, state.clone()),
        shutdown,
    )
    .await;
}

async fn reconcile(bgr: Arc<BlueGreenRelease>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = state.ctx.clone();
    let caches = &state.caches;
    let Some(bgr) = observe::release(caches, &ctx.client, bgr).await? else {
        return Ok(Action::await_change());
    };
    let units = bgr.spec.units();
    let decoded: Vec<_> = units.iter().map(|u| u.template.decode().ok()).collect();
    let observed = Observed::read(caches, &ctx.client, &bgr, &decoded).await?;
    let problems = problems(&bgr, &observed);
    let templates: Option<Vec<_>> = decoded.into_iter().collect();
    let Some(templates) = templates.filter(|t| problems.is_empty() && !t.is_empty()) else {
        runtime::settle(
            &ctx,
            NAME,
            bgr.as_ref(),
            bgr.status.as_ref(),
            &problems,
            status::READY_MESSAGE,
            |verdict| status::invalid(&bgr, verdict),
        )
        .await?;
        return Ok(Action::await_change());
    };
    let cluster = observe::cluster(caches, &bgr, &observed).await?;
    let named: Vec<_> = units.iter().map(|u| u.name).zip(&templates).collect();
    let desired = stack_revision(&named);
    let writer = Writer::new(&ctx, NAME);
    // The slot Deployments and Services are changed with the release's rights.
    let identity = ctx.identities.of(
        &bgr.namespace().unwrap_or_default(),
        bgr.spec.service_account_name.as_deref(),
    );
    let targets = writer
        .acting_as(&identity)
        .map_err(super::act::Error::from)?;
    let mut actor = Actor {
        writer,
        target_writer: targets,
        written: &caches.written,
        switches: &state.switches,
        images: stack_images(&templates),
        bgr: bgr.as_ref().clone(),
        namespace: bgr.namespace().unwrap_or_default(),
        name: bgr.name_any(),
        templates,
        desired,
        cluster,
        written_status: bgr.status.clone(),
        now: Timestamp::now(),
        notes: Vec::new(),
        resource_version: bgr.resource_version(),
        notify_wake: None,
    };
    let action = drive(&mut actor, caches).await;
    for note in &actor.notes {
        runtime::publish_note(&ctx, NAME, bgr.as_ref(), note).await;
    }
    action
}

/// Decides and carries out decisions until one is a wait.
async fn drive(actor: &mut Actor<'_>, caches: &Caches) -> Result<Action, Error> {
    let mut current = actor.status();
    status::record_desired_revision(&mut current, &actor.desired);
    let journals = validation_journals(&caches.runs, &actor.namespace, &actor.name, &actor.desired);
    status::mirror_validation(&mut current, &actor.desired, &journals);
    actor.bgr.status = Some(current);
    for _ in 0..MAX_ACTIONS {
        let release = ReleaseState::observe(&actor.bgr, &actor.desired);
        let decision = decide::decide(&actor.bgr.spec, &release, &actor.cluster, actor.now);
        let mut recorded = actor.status();
        status::update_status(
            &mut recorded,
            &actor.desired,
            &decision,
            &actor.images,
            actor.now,
        );
        if !decision.is_action() {
            actor.save(recorded, &decision).await?;
            let wake_at = match (decision.requeue_at(), actor.notify_wake) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            return Ok(runtime::wake_at(wake_at, actor.now));
        }
        actor.carry_out(&decision, recorded).await?;
    }
    Ok(Action::requeue(std::time::Duration::from_secs(1)))
}

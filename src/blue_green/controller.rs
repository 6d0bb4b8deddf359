//! BlueGreenRelease controller, wiring only: watches and caches -> [`observe`] ->
//! [`decide`](super::decide::decide) (pure) -> [`act`] (the writes, status included, built by
//! [`status`]) -> requeue.
//!
//! Validation steps run on the RunbookRun engine: the release keeps a Runbook
//! `<release>-<stage>` holding the stage's steps (owned by the release) and starts the run
//! `<release>-<pre|post>-<revision>`, whose journal is copied into `status.validation`.
//!
//! # What is cached
//!
//! Only what releases use, each object stripped of its managed fields and last-applied copy
//! ([`runtime::strip`]), so memory grows with the releases and not with the cluster:
//!
//! * slot Deployments and validation runs, by the release label the operator puts on them;
//! * Services that some release names ([`services_named`]): every Service is watched, but the
//!   store keeps one only if a release in the cache names it when its event arrives
//!   ([`named_by_a_release`]). The Service watch starts once the releases have listed, so
//!   after a restart the first list is judged against every release. A release created after
//!   its Services finds them missing from the cache and reads them from the API server
//!   ([`Observed::read`]), until its first switch changes them and their next event puts them
//!   in the store; a Service created after its release is kept at its creation event, which
//!   also reconciles the release.
//! * EndpointSlices of those Services only, by a label: the selector switch (one merge patch,
//!   [`act`]) also sets the release label on the Service, and the EndpointSlice controller
//!   copies a Service's labels onto its slices. The slices matter only after a switch, the
//!   patch that labelled their Service, so the wait for "only ready endpoints of the new slot"
//!   (no empty moment) reads them as before. A label, unlike a predicate over the releases,
//!   is filtered by the API server and needs no re-list when a release appears: slices change
//!   too often to be read from the API server on every reconcile.
//!
//! No write is added: the label rides on the switch the operator already sends, so a crash
//! leaves a Service either switched and labelled or neither.

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
use crate::well_known::{RELEASE_LABEL, RELEASE_RUN_LABEL};
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

/// Whether a release among `releases` names `service` in its namespace ([`services_named`]):
/// the Services the controller caches.
pub fn named_by_a_release(releases: &[Arc<BlueGreenRelease>], service: &Service) -> bool {
    let name = service.name_any();
    releases.iter().any(|bgr| {
        bgr.namespace() == service.namespace() && services_named(bgr).any(|(_, s)| s == name)
    })
}

/// The label selector of the EndpointSlices the controller caches: those of Services a
/// release has switched, which carry the release label their Service got with the switch.
pub fn slice_selector() -> String {
    format!("{SERVICE_NAME_LABEL},{RELEASE_LABEL}")
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
    let naming = store.store.clone();
    let (services, service_stream) = runtime::watch_decoded_kept::<Service>(
        &ctx,
        NAME,
        watcher::Config::default(),
        runtime::listed(&store),
        move |service| named_by_a_release(&naming.state(), service),
    );
    let (slices, slice_stream) = runtime::watch_decoded_with::<EndpointSlice>(
        &ctx,
        NAME,
        watcher::Config::default().labels(&slice_selector()),
    );
    let (deployments, deployment_stream) = runtime::watch_decoded_with::<Deployment>(
        &ctx,
        NAME,
        watcher::Config::default().labels(RELEASE_LABEL),
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
    // A retry's runs are named by its attempt, so the failed runs of the try before never count.
    let attempt = decide::controls::attempt(actor.bgr.status.as_ref(), &actor.desired);
    let run_revision = decide::controls::run_revision(&actor.desired, attempt);
    let journals = validation_journals(&caches.runs, &actor.namespace, &actor.name, &run_revision);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn release(
        namespace: &str,
        name: &str,
        active: &str,
        preview: Option<&str>,
    ) -> BlueGreenRelease {
        let mut services = serde_json::json!({"active": active});
        if let Some(preview) = preview {
            services["preview"] = preview.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BlueGreenRelease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 1,
                "services": services,
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]}
                },
            }
        }))
        .unwrap_or_else(|err| panic!("a BlueGreenRelease: {err}"))
    }

    fn service(namespace: &str, name: &str) -> Service {
        Service {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_services_a_release_names_in_their_namespace_are_cached() {
        let releases = vec![
            Arc::new(release("shop", "web", "web", Some("web-preview"))),
            Arc::new(release("shop", "api", "api", None)),
        ];
        for name in ["web", "web-preview", "api"] {
            assert!(
                named_by_a_release(&releases, &service("shop", name)),
                "{name}"
            );
        }
        // Same name, another namespace; another Service of the release's namespace.
        assert!(!named_by_a_release(&releases, &service("other", "web")));
        assert!(!named_by_a_release(&releases, &service("shop", "db")));
        assert!(!named_by_a_release(&[], &service("shop", "web")));
    }

    #[test]
    fn cached_slices_are_those_of_services_a_release_switched() {
        let selector = slice_selector();
        let keys: Vec<_> = selector.split(',').collect();
        assert_eq!(keys, [SERVICE_NAME_LABEL, RELEASE_LABEL]);
    }
}

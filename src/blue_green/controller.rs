//! BlueGreenRelease controller: observe the named Services, decide validity, write status.
//! Slot management builds on this.

use std::sync::Arc;

use crate::runtime::Cache;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::Controller;
use kube::runtime::controller::Action;

use super::types::{BlueGreenRelease, BlueGreenReleaseStatus};
use crate::conditions::SpecProblem;
use crate::context::Context;
use crate::runtime::{self, Shutdown};
use crate::validation;

/// Controller name in logs and metrics.
pub const NAME: &str = "bluegreenrelease";

/// What can go wrong while reconciling a BlueGreenRelease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// What the reconcile reads besides the release.
pub struct Observed {
    /// Services named by the release that do not exist, with the field path.
    pub missing_services: Vec<(&'static str, String)>,
}

struct State {
    ctx: Arc<Context>,
    services: Cache<PartialObjectMeta<Service>>,
}

fn services_named(bgr: &BlueGreenRelease) -> impl Iterator<Item = (&'static str, &str)> {
    let services = &bgr.spec.services;
    std::iter::once(("spec.services.active", services.active.as_str())).chain(
        services
            .preview
            .as_deref()
            .map(|p| ("spec.services.preview", p)),
    )
}

/// Runs the BlueGreenRelease controller until shutdown; `synced` fires once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<BlueGreenRelease>(&ctx, NAME);
    let (services, service_stream) = runtime::watch_metadata::<Service>(&ctx);
    let releases = store.store.clone();
    let controller = Controller::for_stream(stream, store.store.clone()).watches_stream(
        service_stream,
        move |service| {
            let name = service.name_any();
            runtime::referrers(&releases, service.namespace(), |bgr| {
                services_named(bgr).any(|(_, s)| s == name)
            })
        },
    );
    runtime::report_synced(
        vec![runtime::listed(&store), runtime::listed(&services)],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        services,
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

/// Every problem with the spec that the API server could not catch.
pub fn problems(bgr: &BlueGreenRelease, observed: &Observed) -> Vec<SpecProblem> {
    let spec = &bgr.spec;
    let mut problems = Vec::new();
    if let Err(err) = spec.template.decode() {
        problems.push(SpecProblem::new("spec.template", err.to_string()));
    }
    if let Some(strategy) = &spec.strategy {
        problems.extend(crate::step::validate_steps(
            &strategy.pre_promotion,
            "spec.strategy.prePromotion",
        ));
        problems.extend(crate::step::validate_steps(
            &strategy.post_promotion,
            "spec.strategy.postPromotion",
        ));
        problems.extend(crate::step::validate_unique_names(&[
            ("spec.strategy.prePromotion", &strategy.pre_promotion),
            ("spec.strategy.postPromotion", &strategy.post_promotion),
        ]));
    }
    for (field, service) in &observed.missing_services {
        problems.push(SpecProblem::new(
            *field,
            format!(
                "Service {service:?} does not exist in namespace {:?}; the release switches an existing Service's selector, so create the Service first",
                bgr.namespace().unwrap_or_default()
            ),
        ));
    }
    problems
}

/// The status the release should have.
pub fn desired_status(
    bgr: &BlueGreenRelease,
    verdict: &validation::Verdict,
) -> BlueGreenReleaseStatus {
    let mut status = bgr.status.clone().unwrap_or_default();
    if !verdict.valid {
        status.phase = Some("Invalid".into());
    } else if status.phase.as_deref() == Some("Invalid") {
        status.phase = None;
    }
    status.observed_generation = bgr.metadata.generation;
    status.conditions = verdict.conditions.clone();
    status
}

async fn reconcile(bgr: Arc<BlueGreenRelease>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let namespace = bgr.namespace().unwrap_or_default();
    let mut missing_services = Vec::new();
    for (field, service) in services_named(&bgr) {
        if !runtime::exists(&state.services, &namespace, service).await {
            missing_services.push((field, service.to_owned()));
        }
    }
    let problems = problems(&bgr, &Observed { missing_services });
    runtime::settle(
        ctx,
        NAME,
        bgr.as_ref(),
        bgr.status.as_ref(),
        &problems,
        "the release is valid and its Services exist",
        |verdict| desired_status(&bgr, verdict),
    )
    .await?;
    Ok(Action::await_change())
}

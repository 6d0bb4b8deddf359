//! The floor of "new slot fully available -> Service selector switched" on this cluster: what
//! one watch event and one PATCH cost, measured the way the releases are. The bench itself is
//! the controller: it watches a Deployment `floor` and a Service `floor`; each round changes
//! the Deployment's template, and on the first Deployment event showing the new template fully
//! rolled out (the same test as a release's new slot) it PATCHes the Service's selector (one
//! merge patch of one key). The sample is the time from that Deployment event to the Service
//! event carrying the new selector, both as they reach this process: the lower bound of what
//! any controller can do here.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::support::{now, progress};
use super::{BENCH_LABEL, ENV_NAME, MANAGER};

/// Name of the Deployment and the Service.
const NAME: &str = "floor";
/// The selector key the bench switches.
const KEY: &str = "bench.runbook.dev/floor";

/// The value of `ENV_NAME` in a Deployment's template.
fn revision(d: &Deployment) -> Option<&str> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == ENV_NAME)?
        .value
        .as_deref()
}

/// Fully rolled out with `replicas`, as the releases' new slot must be (see `fully_available`).
fn available(d: &Deployment, replicas: i32) -> bool {
    super::fully_available(d) && d.spec.as_ref().and_then(|s| s.replicas) == Some(replicas)
}

/// `rounds` samples (seconds) of "Deployment available event -> Service selector event" in
/// `namespace`, the Deployment having `replicas`.
pub async fn measure(
    client: &kube::Client,
    namespace: &str,
    rounds: usize,
    replicas: i32,
    timeout: Duration,
) -> Result<Vec<f64>> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let pp = PatchParams::apply(MANAGER).force();
    let deployment = |rev: usize| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "labels": {BENCH_LABEL: "1"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": NAME}},
                "template": {
                    "metadata": {"labels": {"app": NAME}},
                    "spec": {"containers": [{
                        "name": "app", "image": "registry.invalid/bench-app:1",
                        "env": [{"name": ENV_NAME, "value": rev.to_string()}]
                    }]}
                }
            }
        })
    };
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "labels": {BENCH_LABEL: "1"}},
        "spec": {"selector": {"app": NAME, KEY: "0"}, "ports": [{"port": 80}]}
    });
    services
        .patch(NAME, &pp, &Patch::Apply(&service))
        .await
        .context("creating the floor Service")?;
    let by_name = || watcher::Config::default().fields(&format!("metadata.name={NAME}"));
    let mut d_events = watcher(deployments.clone(), by_name())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut s_events = watcher(services.clone(), by_name())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut samples = Vec::new();
    for round in 1..=rounds {
        let rev = round.to_string();
        deployments
            .patch(NAME, &pp, &Patch::Apply(&deployment(round)))
            .await
            .context("changing the floor Deployment")?;
        let step = async {
            let t_available = loop {
                let Some(d) = d_events.next().await else {
                    bail!("the floor Deployment watch ended");
                };
                let d = d.context("the floor Deployment watch")?;
                if revision(&d) == Some(rev.as_str()) && available(&d, replicas) {
                    break now();
                }
            };
            let patch = json!({"spec": {"selector": {KEY: rev}}});
            services
                .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .context("patching the floor Service's selector")?;
            loop {
                let Some(s) = s_events.next().await else {
                    bail!("the floor Service watch ended");
                };
                let s = s.context("the floor Service watch")?;
                let selected = s.spec.as_ref().and_then(|spec| spec.selector.as_ref());
                if selected.and_then(|sel| sel.get(KEY)) == Some(&rev) {
                    return Ok(now() - t_available);
                }
            }
        };
        let sample = tokio::time::timeout(timeout, step)
            .await
            .with_context(|| format!("floor round {round} did not finish within {timeout:?}"))??;
        samples.push(sample);
    }
    progress(format!("floor: {} rounds done", samples.len()));
    deployments
        .delete(NAME, &Default::default())
        .await
        .context("deleting the floor Deployment")?;
    services
        .delete(NAME, &Default::default())
        .await
        .context("deleting the floor Service")?;
    Ok(samples)
}

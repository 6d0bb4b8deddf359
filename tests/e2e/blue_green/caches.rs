//! The controller caches only the Services releases name and the EndpointSlices of Services it
//! switched (labelled by the switch). Whichever comes first, the Services or the release, while
//! the operator is running, the release promotes and keeps promoting.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::ListParams;

use super::{
    ACTIVE, PREVIEW, active_revision, assert_serves, cond, get_release, release, services,
    wait_healthy_after, wait_release,
};
use crate::support::TestNamespace;

/// The release label the switch puts on a Service (and its EndpointSlices inherit).
const RELEASE_LABEL: &str = runbook_operator::well_known::RELEASE_LABEL;

/// Both Services carry the release label, and so do the active Service's EndpointSlices.
async fn assert_labelled(ns: &TestNamespace) {
    let services = ns.api::<Service>();
    for name in [ACTIVE, PREVIEW] {
        let svc = services.get(name).await.expect("get Service");
        assert_eq!(
            svc.labels().get(RELEASE_LABEL).map(String::as_str),
            Some(super::RELEASE),
            "Service {name}: {:?}",
            svc.labels()
        );
    }
    let slices = ns
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={ACTIVE}")))
        .await
        .expect("list EndpointSlices");
    assert!(!slices.items.is_empty());
    for slice in &slices.items {
        assert!(
            slice.labels().contains_key(RELEASE_LABEL),
            "EndpointSlice {} lacks the label: {:?}",
            slice.name_any(),
            slice.labels()
        );
    }
}

/// Promotes a template change (image tag 2) and checks it serves from green.
async fn promote_a_change(ns: &TestNamespace, first: &str) {
    ns.apply(&release("2", ""));
    let bgr = wait_healthy_after(ns, first).await;
    let revision = active_revision(&bgr);
    assert_serves(ns, &bgr, "green", &revision).await;
}

/// The operator runs (and has listed Services) before the Services and the release exist: the
/// Services' events come before any release names them, so the release reads them from the
/// API server, and its switch brings them (and their EndpointSlices) into the cache.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_release_created_after_its_services_promotes() {
    let mut ns = TestNamespace::new("bg-svc-first").await;
    ns.start_operator();
    ns.apply(&services());
    ns.apply(&release("1", ""));
    let bgr = wait_healthy_after(&ns, "").await;
    let first = active_revision(&bgr);
    assert_serves(&ns, &bgr, "blue", &first).await;
    assert_labelled(&ns).await;
    promote_a_change(&ns, &first).await;
}

/// The release comes first and reports its missing Services; creating them is an event the
/// cache keeps (a release names them), which reconciles the release: it promotes.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_service_created_after_its_release_is_picked_up() {
    let mut ns = TestNamespace::new("bg-svc-late").await;
    ns.start_operator();
    ns.apply(&release("1", ""));
    wait_release(&ns, "reporting the missing Services", |b| {
        cond(b, "Ready").2.contains("does not exist")
    })
    .await;
    ns.apply(&services());
    let bgr = wait_healthy_after(&ns, "").await;
    let first = active_revision(&bgr);
    assert_serves(&ns, &bgr, "blue", &first).await;
    assert_labelled(&ns).await;
    assert_eq!(active_revision(&get_release(&ns).await), first);
    promote_a_change(&ns, &first).await;
}

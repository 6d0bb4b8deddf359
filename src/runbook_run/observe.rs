//! What the cluster says about a run: its journal and markers (read from the object itself),
//! its Runbook (a GET when it starts) and whether a matching MaintenanceWindow is open (the
//! cache). No decisions, no writes.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::Api;

use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{ObjectRef, Store};

use super::decide::lock::{Contender, LeaseView};
use super::types::RunbookRun;
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook::Runbook;
use crate::runtime::Cache;
use crate::well_known::{CANCEL, FINALLY_FINALIZER};

/// What the reconcile reads about a run before deciding what to do with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The run's status (the journal) as stored.
    pub status: super::types::RunbookRunStatus,
    /// Whether the run holds the `ops.runbook.dev/finally` finalizer.
    pub has_finalizer: bool,
    /// Whether the run is being deleted.
    pub deleted: bool,
    /// Whether the `ops.runbook.dev/cancel` annotation is set.
    pub cancel_annotated: bool,
}

/// The run's state as its object holds it.
pub fn observe(run: &RunbookRun) -> Observed {
    Observed {
        status: run.status.clone().unwrap_or_default(),
        has_finalizer: run.finalizers().iter().any(|f| f == FINALLY_FINALIZER),
        deleted: run.metadata.deletion_timestamp.is_some(),
        cancel_annotated: run.annotations().contains_key(CANCEL),
    }
}

/// The Runbook `name` in `namespace`, `None` when it does not exist.
pub async fn runbook(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Runbook>, kube::Error> {
    Api::<Runbook>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
}

/// Whether a MaintenanceWindow in `namespace` matching `selector` is Active, once the window
/// cache has listed.
pub async fn window_open(
    windows: &Cache<MaintenanceWindow>,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> Result<bool, kube::Error> {
    windows.synced().await?;
    let listed = windows.store.state();
    Ok(crate::maintenance_window::open_window(
        listed.iter().map(|w| w.as_ref()),
        namespace,
        selector,
    ))
}

/// The lock Lease `name` in `namespace` as cached (`None`: it does not exist), once the Lease
/// cache has listed.
pub async fn lease(
    leases: &Cache<Lease>,
    namespace: &str,
    name: &str,
) -> Result<Option<LeaseView>, kube::Error> {
    leases.synced().await?;
    Ok(leases
        .store
        .get(&ObjectRef::new(name).within(namespace))
        .map(|lease| LeaseView {
            holder: lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            resource_version: lease.resource_version(),
        }))
}

/// Every run of `namespace` as a contender for a lock, once the run cache has listed (a holder
/// missing from a cache that has not listed yet is not gone).
pub async fn contenders(
    runs: &Cache<RunbookRun>,
    namespace: &str,
) -> Result<Vec<Contender>, kube::Error> {
    runs.synced().await?;
    Ok(in_namespace(&runs.store, namespace))
}

fn in_namespace(store: &Store<RunbookRun>, namespace: &str) -> Vec<Contender> {
    store
        .state()
        .iter()
        .filter(|run| run.metadata.namespace.as_deref() == Some(namespace))
        .map(|run| {
            let status = run.status.as_ref();
            Contender {
                uid: run.metadata.uid.clone().unwrap_or_default(),
                name: run.name_any(),
                created: run.metadata.creation_timestamp.as_ref().map(|t| t.0),
                finished: status
                    .and_then(|s| s.phase)
                    .is_some_and(super::types::RunPhase::is_finished),
                started: status.is_some_and(|s| !s.resolved_steps.is_empty()),
                key: status
                    .and_then(|s| s.concurrency.as_ref())
                    .map(|c| c.key.clone()),
            }
        })
        .collect()
}

//! The writes of a run's concurrency lock: its `coordination.k8s.io` Lease, created or taken
//! over when the run starts and deleted when it finishes. Every write is conditional (create
//! answers 409 when the Lease exists; a takeover and a release carry the resourceVersion read),
//! so a stale cache, a second replica or a restarted operator cannot make two runs hold it.
//!
//! The Lease is owned (without blocking deletion) by its holder: when a holder is deleted
//! while the operator is down or without its finalizer, the garbage collector deletes the Lease,
//! and that deletion wakes the runs queued for it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, Preconditions};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::runbook_run::RunbookRun;
use crate::well_known::{LOCK_KEY_ANNOTATION, LOCK_LABEL};
use crate::write::{WriteError, Writer};

/// The owner reference a lock Lease carries: its holder, never blocking the run's deletion.
fn owner(run: &RunbookRun) -> Option<OwnerReference> {
    run.controller_owner_ref(&()).map(|o| OwnerReference {
        block_owner_deletion: Some(false),
        controller: Some(false),
        ..o
    })
}

/// Creates the Lease `lease` for `key`, held by `run`. Returns its resourceVersion, or `None`
/// when another run created it first (409): the caller waits for the Lease's watch event.
pub async fn create(
    writer: &Writer<'_>,
    run: &RunbookRun,
    lease: &str,
    key: &str,
    now: Timestamp,
) -> Result<Option<String>, WriteError> {
    let namespace = run.namespace().unwrap_or_default();
    let api: Api<Lease> = writer.api(&namespace);
    let object = Lease {
        metadata: ObjectMeta {
            name: Some(lease.to_owned()),
            namespace: Some(namespace),
            labels: Some(BTreeMap::from([(LOCK_LABEL.to_owned(), "true".to_owned())])),
            annotations: Some(BTreeMap::from([(
                LOCK_KEY_ANNOTATION.to_owned(),
                key.to_owned(),
            )])),
            owner_references: owner(run).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: run.metadata.uid.clone(),
            acquire_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    match writer.create(&api, &object, "lock").await {
        Ok(written) => Ok(written.resource_version()),
        Err(err) if err.already_exists() => Ok(None),
        Err(err) => Err(err),
    }
}

/// Takes over the Lease `lease` from a holder that finished or vanished, if it is still at
/// `resource_version`. Returns the new resourceVersion, or `None` when it changed since (409)
/// or is gone (404): the caller waits for the Lease's watch event.
pub async fn take_over(
    writer: &Writer<'_>,
    run: &RunbookRun,
    lease: &str,
    resource_version: Option<&str>,
    now: Timestamp,
) -> Result<Option<String>, WriteError> {
    let api: Api<Lease> = writer.api(&run.namespace().unwrap_or_default());
    // A merge patch replaces the owner list whole, and carrying the resourceVersion read makes
    // it conditional: two runs taking over the same released Lease cannot both succeed.
    let patch = json!({
        "metadata": {"resourceVersion": resource_version, "ownerReferences": owner(run).map(|o| vec![o])},
        "spec": {"holderIdentity": run.metadata.uid, "acquireTime": MicroTime(now)},
    });
    match writer
        .patch(&api, lease, &Patch::Merge(&patch), "lock")
        .await
    {
        Ok(written) => Ok(written.resource_version()),
        Err(err) if err.conflict() || err.not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

/// Releases the lock a run held: deletes the Lease `lease` if it is still at
/// `resource_version` (the version the run wrote when it took it). A Lease taken over since
/// (409) or already gone (404) is left alone: the run no longer holds it.
pub async fn release(
    writer: &Writer<'_>,
    namespace: &str,
    lease: &str,
    resource_version: &str,
) -> Result<(), WriteError> {
    let api: Api<Lease> = writer.api(namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(resource_version.to_owned()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    match writer.delete(&api, lease, &params, "lock").await {
        Ok(_) => Ok(()),
        Err(err) if err.conflict() => Ok(()),
        Err(err) => Err(err),
    }
}

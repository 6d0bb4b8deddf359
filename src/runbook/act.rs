//! Carries out a Runbook decision: cancels the runs concurrencyPolicy Replace replaces, creates
//! the runs the triggers call for, and prunes the history. Every write goes through the
//! [`Writer`].

use kube::api::{DeleteParams, Patch};

use super::decide::Decision;
use crate::runbook_run::RunbookRun;
use crate::validation::Note;
use crate::well_known::CANCEL;
use crate::write::{WriteError, Writer};

/// The `ops.runbook.dev/cancel` value on a run a newer scheduled run replaces.
const CANCELLED_BY_REPLACE: &str = "concurrencyPolicy Replace";

/// A write of the Runbook's runs the API server refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Cancelling an active run for concurrencyPolicy Replace.
    #[error("cancelling a run a newer scheduled run replaces: {0}")]
    Cancel(#[source] WriteError),
    /// Creating a triggered run.
    #[error("starting a run: {0}")]
    Create(#[source] WriteError),
    /// Deleting a finished run beyond the history limits.
    #[error("pruning a run beyond the history limits: {0}")]
    Prune(#[source] WriteError),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Cancel(err) | Error::Create(err) | Error::Prune(err) => err.metric_label(),
        }
    }
}

/// Cancels and creates the decided runs in `namespace`; returns the Events of the runs this
/// call really created (one that already exists was created, and announced, before).
pub async fn start_runs<'d>(
    writer: &Writer<'_>,
    namespace: &str,
    decision: &'d Decision,
) -> Result<Vec<&'d Note>, Error> {
    let api = writer.api::<RunbookRun>(namespace);
    for run in &decision.cancel {
        let patch =
            serde_json::json!({"metadata": {"annotations": {CANCEL: CANCELLED_BY_REPLACE}}});
        match writer
            .patch(&api, run, &Patch::Merge(&patch), "cancel")
            .await
        {
            Ok(_) => {}
            // Already gone: nothing left to cancel.
            Err(err) if err.not_found() => {}
            Err(err) => return Err(Error::Cancel(err)),
        }
    }
    let mut created = Vec::new();
    for new in &decision.create {
        match writer.create(&api, &new.run, "create").await {
            Ok(_) => created.push(&new.note),
            // Created before (a restart, or a token used again): that run stands.
            Err(err) if err.already_exists() => {}
            Err(err) => return Err(Error::Create(err)),
        }
    }
    Ok(created)
}

/// Deletes the decided finished runs in `namespace`, oldest first.
pub async fn prune(writer: &Writer<'_>, namespace: &str, decision: &Decision) -> Result<(), Error> {
    let api = writer.api::<RunbookRun>(namespace);
    for run in &decision.prune {
        // `false` (already gone) is what the delete wanted.
        writer
            .delete(&api, run, &DeleteParams::background(), "prune")
            .await
            .map_err(Error::Prune)?;
    }
    Ok(())
}

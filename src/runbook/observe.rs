//! What the Runbook controller reads besides the Runbook: which BackupPolicies its backup steps
//! name are missing, and its runs. Reads only caches; decides nothing, writes nothing.

use std::sync::Arc;

use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use super::types::Runbook;
use crate::backup_policy::BackupPolicy;
use crate::runbook_run::RunbookRun;
use crate::runtime::{self, Cache};

/// What the reconcile reads besides the Runbook.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// BackupPolicies named by backup steps that do not exist, with the step's JSON path.
    pub missing_policies: Vec<(String, String)>,
    /// The Runbook's RunbookRuns (same namespace, `spec.runbookRef` naming it), in any order.
    pub runs: Vec<Arc<RunbookRun>>,
}

/// The caches the Runbook controller reads.
pub struct Caches {
    /// Every watched RunbookRun.
    pub runs: Cache<RunbookRun>,
    /// The names of every watched BackupPolicy.
    pub policies: Cache<PartialObjectMeta<BackupPolicy>>,
}

/// A cache the Runbook controller could not read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The BackupPolicy cache could not list (the API server refused the watch).
    #[error("checking the BackupPolicies Runbook {runbook} names: {source}")]
    Policies {
        /// `namespace/name` of the Runbook.
        runbook: String,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
    /// The RunbookRun cache could not list (the API server refused the watch).
    #[error("reading the RunbookRuns of Runbook {runbook}: {source}")]
    Runs {
        /// `namespace/name` of the Runbook.
        runbook: String,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Policies { source, .. } | Error::Runs { source, .. } => {
                crate::write::status_label(source)
            }
        }
    }
}

/// The BackupPolicies a runbook's backup steps name, with the JSON path of each step.
pub fn backup_policies(rb: &Runbook) -> impl Iterator<Item = (String, &str)> {
    let steps = rb
        .spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("spec.steps[{i}]"), s));
    let finally = rb
        .spec
        .finally
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("spec.finally[{i}]"), s));
    steps.chain(finally).filter_map(|(path, step)| {
        step.backup
            .as_ref()
            .map(|b| (format!("{path}.backup.policy"), b.policy.as_str()))
    })
}

/// Reads what deciding for `rb` needs from `caches`.
pub async fn observe(rb: &Runbook, caches: &Caches) -> Result<Observed, Error> {
    let namespace = rb.namespace().unwrap_or_default();
    let name = rb.name_any();
    let runbook = || format!("{namespace}/{name}");
    let mut missing_policies = Vec::new();
    for (path, policy) in backup_policies(rb) {
        let exists = runtime::exists(&caches.policies, &namespace, policy)
            .await
            .map_err(|source| Error::Policies {
                runbook: runbook(),
                source,
            })?;
        if !exists {
            missing_policies.push((path, policy.to_owned()));
        }
    }
    // History and concurrency are decided from the runs cache: never from one that has not
    // listed yet, or a restart would read "no runs" and rewrite lastRun.
    caches.runs.synced().await.map_err(|source| Error::Runs {
        runbook: runbook(),
        source,
    })?;
    let runs = caches
        .runs
        .store
        .state()
        .into_iter()
        .filter(|r| {
            r.namespace().as_deref() == Some(namespace.as_str()) && r.spec.runbook_ref.name == name
        })
        .collect();
    Ok(Observed {
        missing_policies,
        runs,
    })
}

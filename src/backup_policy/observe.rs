//! What the cluster says about a BackupPolicy, gathered into one [`Observed`]: the policy's
//! Jobs as [`decide`](super::decide::decide) sees them (from the Job cache, less the Jobs this
//! controller deleted and the cache still holds, plus a GET for a Job a record waits on that
//! the cache has not seen yet), the policy's backup-now token and creation time, the restore
//! Jobs Runbook `restore` steps made for it, and the creates the API server refused during this
//! reconcile.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::{Client, ResourceExt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::decide::restore::{
    RESTORE_FAILED, RESTORE_RUNNING, RESTORE_STAGE, RESTORE_SUCCEEDED, duration_text,
};
use super::decide::{JobOutcome, ObservedJob, Stage, label_value, prune_job_name, verify_job_name};
use super::types::{BackupPolicy, BackupPolicyStatus, BackupStage, RestoreRecord};
use crate::runtime::Cache;
use crate::well_known::{
    BACKUP_LABEL, BACKUP_NOW, POLICY_LABEL, SCHEDULED_TIME_ANNOTATION, STAGE_LABEL,
};

/// A read of the cluster that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Job cache could not list.
    #[error("listing the Jobs of BackupPolicies failed: {0}")]
    JobCache(#[source] kube::Error),
    /// A GET of a Job a record waits on failed.
    #[error("get Job {namespace}/{name}: {source}")]
    ReadJob {
        /// The Job's namespace.
        namespace: String,
        /// The Job's name.
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::JobCache(source) | Error::ReadJob { source, .. } => {
                crate::write::status_label(source)
            }
        }
    }
}

/// Everything [`decide`](super::decide::decide) looks at besides the spec, the stored status
/// and the clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Every existing Job of the policy (backup, verify and prune).
    pub jobs: Vec<ObservedJob>,
    /// Jobs the API server refused during this reconcile: (name, its message).
    pub rejected: Vec<(String, String)>,
    /// The policy's [`BACKUP_NOW`] annotation, trimmed; `None` when absent or empty.
    pub backup_now: Option<String>,
    /// The policy's creationTimestamp (the clock when it has none yet).
    pub created: Timestamp,
    /// The restore Jobs of the policy that exist, as `lastRestore` records.
    pub restores: Vec<RestoreRecord>,
}

impl Observed {
    /// A Job the API server made (or had) for a create of this reconcile.
    pub fn created(&mut self, job: &Job) {
        self.jobs.push(observed(job));
    }

    /// A create of this reconcile that the API server refused, with its message.
    pub fn rejected(&mut self, name: &str, message: String) {
        self.rejected.push((name.to_owned(), message));
    }
}

/// Jobs this controller deleted, until the cache has seen them go: deleting one again, or
/// counting it for retention, would be wrong.
#[derive(Debug, Default)]
pub struct Deleted(Mutex<BTreeSet<(String, String)>>);

impl Deleted {
    /// Remembers that the Job `namespace/name` was deleted.
    pub fn insert(&self, namespace: &str, name: &str) {
        if let Ok(mut deleted) = self.0.lock() {
            deleted.insert((namespace.to_owned(), name.to_owned()));
        }
    }

    /// `ours` less the Jobs deleted but still cached; first forgets the deletions in
    /// `namespace` the cache has caught up with (a Job of another policy there stays
    /// remembered until the cache drops it too).
    fn filter<'j>(&self, namespace: &str, cached: &[Arc<Job>], ours: Vec<&'j Job>) -> Vec<&'j Job> {
        let Ok(mut deleted) = self.0.lock() else {
            return ours;
        };
        deleted.retain(|(n, name)| {
            *n != namespace
                || cached.iter().any(|job| {
                    job.namespace().as_deref() == Some(namespace) && job.name_any() == *name
                })
        });
        ours.into_iter()
            .filter(|job| !deleted.contains(&(namespace.to_owned(), job.name_any())))
            .collect()
    }
}

/// Reads what the cluster says about `bp` whose stored status is `status`, at `now`.
pub async fn observe(
    client: &Client,
    jobs: &Cache<Job>,
    deleted: &Deleted,
    bp: &BackupPolicy,
    status: &BackupPolicyStatus,
    now: Timestamp,
) -> Result<Observed, Error> {
    let backup_now = bp
        .annotations()
        .get(BACKUP_NOW)
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let created = bp.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    Ok(Observed {
        jobs: observe_jobs(client, jobs, deleted, bp, status).await?,
        rejected: Vec::new(),
        backup_now,
        created,
        restores: jobs
            .store
            .state()
            .iter()
            .filter(|job| job.namespace() == bp.namespace() && is_restore_of(job, &bp.name_any()))
            .map(|job| restore_record(job))
            .collect(),
    })
}

/// Whether `job` is a restore Job of the policy named `policy`: labelled with the policy and
/// the restore stage, and made by a RunbookRun's restore step (owned by the run), so no other
/// Job labelled alike changes `lastRestore`.
pub fn is_restore_of(job: &Job, policy: &str) -> bool {
    let labels = job.labels();
    labels.get(STAGE_LABEL).map(String::as_str) == Some(RESTORE_STAGE)
        && labels.get(POLICY_LABEL) == Some(&label_value(policy))
        && run_of(job).is_some()
}

/// The RunbookRun that owns `job` (its controller owner reference).
fn run_of(job: &Job) -> Option<&str> {
    job.owner_references()
        .iter()
        .find(|o| o.kind == "RunbookRun" && o.controller == Some(true))
        .map(|o| o.name.as_str())
}

/// The `lastRestore` record a restore Job makes: which backup ([`BACKUP_LABEL`] and the
/// [`SCHEDULED_TIME_ANNOTATION`] the step set), which run, when it started (its creation until
/// the Job controller sets a start) and, once it ended, when and how long it took.
pub fn restore_record(job: &Job) -> RestoreRecord {
    let status = job.status.as_ref();
    let true_condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    let (result, end) = if let Some(complete) = true_condition("Complete") {
        let end = status
            .and_then(|s| s.completion_time.clone())
            .or_else(|| complete.last_transition_time.clone());
        (RESTORE_SUCCEEDED, end)
    } else if let Some(failed) = true_condition("Failed") {
        (RESTORE_FAILED, failed.last_transition_time.clone())
    } else {
        (RESTORE_RUNNING, None)
    };
    let start = status
        .and_then(|s| s.start_time.clone())
        .or_else(|| job.metadata.creation_timestamp.clone());
    let duration = match (&start, &end) {
        (Some(start), Some(end)) => Some(duration_text(start.0, end.0)),
        _ => None,
    };
    RestoreRecord {
        job: job.name_any(),
        backup_job: job.labels().get(BACKUP_LABEL).cloned().unwrap_or_default(),
        backup_scheduled_time: job
            .annotations()
            .get(SCHEDULED_TIME_ANNOTATION)
            .and_then(|t| t.parse().ok())
            .map(Time),
        run: run_of(job).map(str::to_owned),
        start_time: start,
        completion_time: end,
        duration,
        result: result.into(),
    }
}

/// The policy's Jobs: from the cache, plus a GET for any Job a record waits on that the cache
/// does not hold yet (one created a moment ago), so a Job decide does not see is gone.
async fn observe_jobs(
    client: &Client,
    jobs: &Cache<Job>,
    deleted: &Deleted,
    bp: &BackupPolicy,
    status: &BackupPolicyStatus,
) -> Result<Vec<ObservedJob>, Error> {
    jobs.synced().await.map_err(Error::JobCache)?;
    let namespace = bp.namespace();
    let uid = bp.uid();
    let cached = jobs.store.state();
    let ours: Vec<&Job> = cached
        .iter()
        .filter(|job| {
            job.namespace() == namespace
                && job
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .map(AsRef::as_ref)
        .collect();
    let ns = namespace.unwrap_or_default();
    let mut found: Vec<ObservedJob> = deleted
        .filter(&ns, &cached, ours)
        .into_iter()
        .map(observed)
        .collect();
    let known: BTreeSet<String> = found.iter().map(|j| j.name.clone()).collect();
    let api: Api<Job> = Api::namespaced(client.clone(), &ns);
    for name in awaited_jobs(status) {
        if known.contains(&name) {
            continue;
        }
        let job = api.get_opt(&name).await.map_err(|source| Error::ReadJob {
            namespace: ns.clone(),
            name: name.clone(),
            source,
        })?;
        if let Some(job) = job {
            found.push(observed(&job));
        }
    }
    Ok(found)
}

/// The Job each unfinished record waits on now.
fn awaited_jobs(status: &BackupPolicyStatus) -> Vec<String> {
    status
        .history
        .iter()
        .filter_map(|record| match record.stage {
            BackupStage::Backup => Some(record.job.clone()),
            BackupStage::Verify => Some(verify_job_name(&record.job)),
            BackupStage::Prune => Some(prune_job_name(&record.job)),
            BackupStage::Done => None,
        })
        .collect()
}

/// A Job as decide sees it: its role, what it stands for, and how it ended.
pub fn observed(job: &Job) -> ObservedJob {
    let labels = job.labels();
    let annotations = job.annotations();
    let stage = labels
        .get(STAGE_LABEL)
        .and_then(|value| Stage::from_label(value))
        .unwrap_or(Stage::Backup);
    let status = job.status.as_ref();
    let true_condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    let outcome = if let Some(complete) = true_condition("Complete") {
        JobOutcome::Succeeded {
            at: status
                .and_then(|s| s.completion_time.as_ref())
                .or(complete.last_transition_time.as_ref())
                .map_or_else(Timestamp::now, |t| t.0),
        }
    } else if let Some(failed) = true_condition("Failed") {
        JobOutcome::Failed {
            at: failed
                .last_transition_time
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0),
            message: failed
                .message
                .clone()
                .or_else(|| failed.reason.clone())
                .unwrap_or_else(|| "the Job failed".into()),
        }
    } else {
        JobOutcome::Running
    };
    ObservedJob {
        name: job.name_any(),
        outcome,
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        created: job.metadata.creation_timestamp.as_ref().map(|t| t.0),
        stage,
        scheduled_time: annotations
            .get(SCHEDULED_TIME_ANNOTATION)
            .and_then(|t| t.parse().ok()),
        request: annotations.get(BACKUP_NOW).cloned(),
    }
}

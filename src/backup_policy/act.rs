//! Carries out a [`Decision`](super::decide::Decision)'s writes, all through a [`Writer`]: the
//! one Job it asks for, and the Jobs retention drops.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use tracing::debug;

use super::decide::{NewJob, build_job, spec};
use super::observe::Deleted;
use super::types::BackupPolicy;
use crate::write::{WriteError, Writer};

/// A write of this controller (or the read that follows one) that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write the API server refused or failed, naming the request.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// No client acting as the policy's identity could be built.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The GET of a Job whose create met `AlreadyExists` failed.
    #[error("get Job {namespace}/{name} (it already existed when created): {source}")]
    ReadExisting {
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
            Error::Write(err) => err.metric_label(),
            Error::Identity(_) => "identity",
            Error::ReadExisting { source, .. } => crate::write::status_label(source),
        }
    }
}

/// What became of one create.
pub enum Created {
    /// The Job exists now (made by this call, or found under its name).
    Exists(Box<Job>),
    /// The API server refused it (or its template cannot be decoded); the message says why.
    Rejected(String),
}

/// Creates the Job `new` names with `writer`, which acts as the policy's identity; an existing Job of that name is the one a previous attempt
/// made (the names are deterministic), so it is read and counted as created.
pub async fn create_job(
    writer: &Writer<'_>,
    bp: &BackupPolicy,
    new: &NewJob,
) -> Result<Created, Error> {
    let template = match spec::template(&bp.spec, new.stage) {
        Ok(t) => t,
        Err(message) => return Ok(Created::Rejected(message)),
    };
    let job = build_job(bp, new, template);
    let namespace = bp.namespace().unwrap_or_default();
    let api: Api<Job> = writer.api(&namespace);
    match writer.create(&api, &job, "create").await {
        Ok(job) => Ok(Created::Exists(Box::new(job))),
        Err(err) if err.already_exists() => match api.get(&new.name).await {
            Ok(job) => Ok(Created::Exists(Box::new(job))),
            Err(source) => Err(Error::ReadExisting {
                namespace,
                name: new.name.clone(),
                source,
            }),
        },
        Err(err) => match (err.refused_identity(), *err.source) {
            // The policy's identity may not create Jobs: recorded like any refused Job, in
            // words that say whom to grant what.
            (Some(refused), _) => Ok(Created::Rejected(refused)),
            (None, kube::Error::Api(status)) if (400..500).contains(&status.code) => {
                Ok(Created::Rejected(status.message))
            }
            (None, source) => Err(WriteError {
                source: Box::new(source),
                ..err
            }
            .into()),
        },
    }
}

/// Deletes the Jobs retention drops (their pods go with them), and remembers each in
/// `deleted` so the next reconciles do not count it while the cache still holds it.
pub async fn delete_jobs(
    writer: &Writer<'_>,
    deleted: &Deleted,
    bp: &BackupPolicy,
    names: &[String],
) -> Result<(), Error> {
    let namespace = bp.namespace().unwrap_or_default();
    let api: Api<Job> = writer.api(&namespace);
    for name in names {
        if writer
            .delete(&api, name, &DeleteParams::background(), "delete")
            .await?
        {
            debug!(job = %name, "deleted by retention");
        }
        deleted.insert(&namespace, name);
    }
    Ok(())
}

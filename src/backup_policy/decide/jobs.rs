//! The Jobs a policy's backups are made of: the roles they play, how [`decide`](super::decide)
//! sees an existing one ([`ObservedJob`]), the one it asks for ([`NewJob`]), and the Job built
//! from the spec's template for it ([`build_job`]).

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::names::label_value;
use super::rfc3339;
use crate::backup_policy::types::BackupPolicy;
use crate::well_known::{
    BACKUP_LABEL, BACKUP_NOW, POLICY_LABEL, SCHEDULED_TIME_ANNOTATION, STAGE_LABEL,
};

/// The role a Job plays for a backup, as its [`STAGE_LABEL`] says. Unlike
/// [`BackupStage`](crate::backup_policy::BackupStage) it has no `Done`: it names a Job, not a record's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The backup Job itself.
    Backup,
    /// The verification Job run after a successful backup.
    Verify,
    /// The prune Job run after a successful (and verified) backup.
    Prune,
}

impl Stage {
    /// The value of [`STAGE_LABEL`].
    pub fn label(self) -> &'static str {
        match self {
            Stage::Backup => "backup",
            Stage::Verify => "verify",
            Stage::Prune => "prune",
        }
    }

    /// Reads a [`STAGE_LABEL`] value.
    pub fn from_label(value: &str) -> Option<Self> {
        match value {
            "backup" => Some(Stage::Backup),
            "verify" => Some(Stage::Verify),
            "prune" => Some(Stage::Prune),
            _ => None,
        }
    }

    /// The spec field whose template makes Jobs of this role, for messages about them.
    pub fn template_field(self) -> &'static str {
        match self {
            Stage::Backup => "spec.jobTemplate",
            Stage::Verify => "spec.verify.jobTemplate",
            Stage::Prune => "spec.prune.jobTemplate",
        }
    }
}

/// How a Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Not finished yet (including not yet started).
    Running,
    /// Completed.
    Succeeded {
        /// When it completed.
        at: Timestamp,
    },
    /// Failed for good (the Job controller gave up).
    Failed {
        /// When it failed.
        at: Timestamp,
        /// The Job's own explanation.
        message: String,
    },
}

/// What [`decide`](super::decide) needs to know about one existing Job of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedJob {
    /// The Job's name.
    pub name: String,
    /// How it stands.
    pub outcome: JobOutcome,
    /// `status.startTime`.
    pub start_time: Option<Timestamp>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// Its role ([`STAGE_LABEL`]).
    pub stage: Stage,
    /// The [`SCHEDULED_TIME_ANNOTATION`], if it has one.
    pub scheduled_time: Option<Timestamp>,
    /// The [`BACKUP_NOW`] token it answers, if it has one.
    pub request: Option<String>,
}

/// A Job [`decide`](super::decide) wants created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// The Job's name.
    pub name: String,
    /// Its role; picks the template (`spec.jobTemplate`, `spec.verify` or `spec.prune`).
    pub stage: Stage,
    /// The backup Job it belongs to (its own name for a backup Job).
    pub backup_job: String,
    /// The scheduled time of the backup, for scheduled backups.
    pub scheduled_time: Option<Timestamp>,
    /// The backup-now token, for on-demand backups.
    pub request: Option<String>,
    /// When the backup was asked for: `BACKUP_SCHEDULED_TIME` of an on-demand backup.
    pub requested_at: Timestamp,
}

/// Builds the Job `new` from `template` (the spec's template for `new.stage`, decoded): the
/// template's spec unchanged except for the backup env vars, its labels and annotations plus
/// ours, owned by the policy so deleting the policy garbage-collects its Jobs.
///
/// Every container and init container gets `BACKUP_POLICY`, `BACKUP_JOB_NAME` (the backup Job,
/// also for verify and prune) and `BACKUP_SCHEDULED_TIME` (the scheduled time, or for an
/// on-demand backup when it was asked for), unless the template already sets a var of that name.
pub fn build_job(policy: &BackupPolicy, new: &NewJob, template: JobTemplateSpec) -> Job {
    let policy_name = policy.metadata.name.clone().unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();

    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(POLICY_LABEL.into(), label_value(&policy_name));
    labels.insert(STAGE_LABEL.into(), new.stage.label().into());
    if new.stage != Stage::Backup {
        labels.insert(BACKUP_LABEL.into(), new.backup_job.clone());
    }

    let mut annotations = template_meta.annotations.unwrap_or_default();
    if let Some(at) = new.scheduled_time {
        annotations.insert(SCHEDULED_TIME_ANNOTATION.into(), rfc3339(at));
    }
    if let (Stage::Backup, Some(token)) = (new.stage, &new.request) {
        annotations.insert(BACKUP_NOW.into(), token.clone());
    }

    let env = [
        ("BACKUP_POLICY", policy_name.clone()),
        ("BACKUP_JOB_NAME", new.backup_job.clone()),
        (
            "BACKUP_SCHEDULED_TIME",
            rfc3339(new.scheduled_time.unwrap_or(new.requested_at)),
        ),
    ];
    let mut spec = template.spec;
    add_backup_env(&mut spec, &env);

    let owner = OwnerReference {
        api_version: BackupPolicy::api_version(&()).into_owned(),
        kind: BackupPolicy::kind(&()).into_owned(),
        name: policy_name,
        uid: policy.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Job {
        metadata: ObjectMeta {
            name: Some(new.name.clone()),
            namespace: policy.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// Gives every container and init container of `spec`'s pods each of `vars` it does not set
/// itself (the template's own value wins): the env of backup, verify, prune and restore Jobs.
pub fn add_backup_env(spec: &mut Option<JobSpec>, vars: &[(&str, String)]) {
    if let Some(pod) = spec.as_mut().and_then(|spec| spec.template.spec.as_mut()) {
        let init = pod.init_containers.iter_mut().flatten();
        for container in pod.containers.iter_mut().chain(init) {
            add_env(container, vars);
        }
    }
}

/// Appends each var the container does not set itself: the template's own value wins.
fn add_env(container: &mut Container, vars: &[(&str, String)]) {
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in vars {
        if !env.iter().any(|var| var.name == *name) {
            env.push(EnvVar {
                name: (*name).to_owned(),
                value: Some(value.clone()),
                value_from: None,
            });
        }
    }
}

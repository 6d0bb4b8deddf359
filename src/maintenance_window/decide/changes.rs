//! What a window changes on one workload and how it puts it back. Pure: the workloads are
//! passed in as read, and the result is the list of values to save and the writes to send, so
//! the activation and restore rules are unit-tested without a cluster.
//!
//! Every field a window touches is recorded as a [`SavedValue`]: `replicas` (through the scale
//! subresource), `env[<container>].<NAME>` (`initEnv[...]` for an init container) and `suspend`
//! (a CronJob). The prior value is the field as found; an env var that did not exist has no
//! prior, one read from a source keeps that source in `priorValueFrom`.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{EnvVarSource, PodTemplateSpec};
use kube::ResourceExt;
use serde_json::Value;

use crate::kubectl::{self, EnvPrior, Prior};
use crate::maintenance_window::types::{OnDrift, SavedValue, TargetKind, WindowTarget};
use crate::step::{WorkloadKind, WorkloadRef};

/// The `field` of a replica count.
pub const REPLICAS: &str = "replicas";
/// The `field` of a CronJob's suspend flag.
pub const SUSPEND: &str = "suspend";

/// Why a change cannot be worked out or a saved value cannot be written back.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// The env change does not fit the workload (e.g. no container of that name).
    #[error(transparent)]
    Env(#[from] kubectl::Error),
    /// A saved value does not parse (status edited by hand).
    #[error("saved value {value:?} of {target} {field} is not valid for that field")]
    BadSavedValue {
        /// The object, e.g. `Deployment/web`.
        target: String,
        /// The field.
        field: String,
        /// The value found.
        value: String,
    },
    /// A saved field this version does not know.
    #[error("{target} has a saved field {field:?} this operator does not know")]
    UnknownField {
        /// The object.
        target: String,
        /// The field.
        field: String,
    },
}

/// A workload a window can change, as read from the cluster (boxed: the objects are large).
#[derive(Clone, Debug)]
pub enum Workload {
    /// An apps/v1 Deployment.
    Deployment(Box<Deployment>),
    /// An apps/v1 StatefulSet.
    StatefulSet(Box<StatefulSet>),
    /// A batch/v1 CronJob.
    CronJob(Box<CronJob>),
}

impl Workload {
    /// The kind, as in a target.
    pub fn kind(&self) -> TargetKind {
        match self {
            Workload::Deployment(_) => TargetKind::Deployment,
            Workload::StatefulSet(_) => TargetKind::StatefulSet,
            Workload::CronJob(_) => TargetKind::CronJob,
        }
    }

    /// The object's name.
    pub fn name(&self) -> String {
        match self {
            Workload::Deployment(d) => d.name_any(),
            Workload::StatefulSet(s) => s.name_any(),
            Workload::CronJob(c) => c.name_any(),
        }
    }

    /// `Kind/name`, the `target` of its saved values.
    pub fn label(&self) -> String {
        label(self.kind(), &self.name())
    }

    /// The desired replica count (Kubernetes defaults an unset count to 1).
    fn replicas(&self) -> Option<i32> {
        match self {
            Workload::Deployment(d) => Some(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
            Workload::StatefulSet(s) => Some(s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
            Workload::CronJob(_) => None,
        }
    }

    /// Whether a CronJob is suspended.
    fn suspended(&self) -> Option<bool> {
        match self {
            Workload::CronJob(c) => Some(c.spec.suspend.unwrap_or(false)),
            _ => None,
        }
    }

    /// The pod template of a Deployment or StatefulSet.
    fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            Workload::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
            Workload::CronJob(_) => None,
        }
    }

    fn workload_ref(&self) -> WorkloadRef {
        WorkloadRef {
            kind: match self {
                Workload::StatefulSet(_) => WorkloadKind::StatefulSet,
                _ => WorkloadKind::Deployment,
            },
            name: self.name(),
        }
    }
}

/// `Kind/name` for a target kind and object name.
pub fn label(kind: TargetKind, name: &str) -> String {
    format!("{kind:?}/{name}")
}

/// `Kind/name` back into its parts (the inverse of [`label`]).
pub fn parse_target(target: &str) -> Option<(TargetKind, String)> {
    let (kind, name) = target.split_once('/')?;
    let kind = match kind {
        "Deployment" => TargetKind::Deployment,
        "StatefulSet" => TargetKind::StatefulSet,
        "CronJob" => TargetKind::CronJob,
        _ => return None,
    };
    Some((kind, name.to_owned()))
}

/// The `field` of an env var.
pub fn env_field(init_container: bool, container: &str, name: &str) -> String {
    let list = if init_container { "initEnv" } else { "env" };
    format!("{list}[{container}].{name}")
}

/// The parts of an env `field`: (init container?, container, variable).
fn parse_env_field(field: &str) -> Option<(bool, &str, &str)> {
    let (init, rest) = if let Some(rest) = field.strip_prefix("initEnv[") {
        (true, rest)
    } else {
        (false, field.strip_prefix("env[")?)
    };
    let (container, name) = rest.split_once("].")?;
    Some((init, container, name))
}

/// What to send to bring one workload to the wanted values. Each part is a separate request:
/// replicas through the scale subresource, suspend as a merge patch, env as a strategic merge
/// patch that merges variables by name and leaves every other variable alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Writes {
    /// Replica count to set.
    pub replicas: Option<i32>,
    /// CronJob suspend flag to set.
    pub suspend: Option<bool>,
    /// Strategic merge patch of the pod template's env.
    pub env_patch: Option<Value>,
}

impl Writes {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_none() && self.suspend.is_none() && self.env_patch.is_none()
    }
}

/// The values `target` would change on `workload`, each with the value found and the value
/// to write, in the order: replicas, env (per selected container, variables in spec order),
/// suspend. A field already at the wanted value is recorded too: it is restored like any
/// other, which is a no-op unless someone changes it during the window.
pub fn activation_values(
    target: &WindowTarget,
    workload: &Workload,
) -> Result<Vec<SavedValue>, Error> {
    let label = workload.label();
    let mut saved = Vec::new();
    if let (Some(to), Some(current)) = (target.scale_to, workload.replicas()) {
        saved.push(SavedValue {
            target: label.clone(),
            field: REPLICAS.into(),
            prior: Some(current.to_string()),
            prior_value_from: None,
            written: to.to_string(),
            applied: false,
        });
    }
    if let (Some(env), Some(template)) = (&target.env, workload.template())
        && !env.is_empty()
    {
        let set: Vec<(String, String)> = env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        let change = kubectl::env_change(
            &workload.workload_ref(),
            template,
            target.container.as_deref(),
            &set,
            &[],
        )?;
        for record in change.priors {
            let Some((_, written)) = set.iter().find(|(name, _)| *name == record.name) else {
                continue;
            };
            let (prior, prior_value_from) = match record.prior {
                Prior::Absent => (None, None),
                Prior::Value(v) => (Some(v), None),
                Prior::ValueFrom(src) => (None, Some(*src)),
            };
            saved.push(SavedValue {
                target: label.clone(),
                field: env_field(record.init_container, &record.container, &record.name),
                prior,
                prior_value_from,
                written: written.clone(),
                applied: false,
            });
        }
    }
    if let (Some(to), Some(current)) = (target.suspend, workload.suspended()) {
        saved.push(SavedValue {
            target: label,
            field: SUSPEND.into(),
            prior: Some(current.to_string()),
            prior_value_from: None,
            written: to.to_string(),
            applied: false,
        });
    }
    Ok(saved)
}

/// Which side of a saved value to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    /// The value the window sets.
    Written,
    /// The value from before the window.
    Prior,
}

/// The writes that put each of `entries` (all of `workload`) at its written or prior value.
pub fn writes(workload: &Workload, entries: &[(&SavedValue, Toward)]) -> Result<Writes, Error> {
    let mut writes = Writes::default();
    let mut env = Vec::new();
    for (saved, toward) in entries {
        let bad = |value: &str| Error::BadSavedValue {
            target: saved.target.clone(),
            field: saved.field.clone(),
            value: value.to_owned(),
        };
        let value = match toward {
            Toward::Written => Some(saved.written.as_str()),
            Toward::Prior => saved.prior.as_deref(),
        };
        if saved.field == REPLICAS {
            let value = value.unwrap_or_default();
            writes.replicas = Some(value.parse().map_err(|_| bad(value))?);
        } else if saved.field == SUSPEND {
            let value = value.unwrap_or_default();
            writes.suspend = Some(value.parse().map_err(|_| bad(value))?);
        } else if let Some((init, container, name)) = parse_env_field(&saved.field) {
            let prior = match (toward, value, &saved.prior_value_from) {
                (Toward::Prior, _, Some(src)) => Prior::ValueFrom(Box::new(src.clone())),
                (_, Some(value), _) => Prior::Value(value.to_owned()),
                (_, None, _) => Prior::Absent,
            };
            env.push(EnvPrior {
                container: container.to_owned(),
                init_container: init,
                name: name.to_owned(),
                prior,
                changed: true,
            });
        } else {
            return Err(Error::UnknownField {
                target: saved.target.clone(),
                field: saved.field.clone(),
            });
        }
    }
    if !env.is_empty()
        && let Some(template) = workload.template()
    {
        // `env_restore` writes each record's value, which is exactly "make these variables
        // hold these values"; containers that no longer exist are skipped.
        let change = kubectl::env_restore(template, &env);
        if change.changed {
            writes.env_patch = Some(change.patch);
        }
    }
    Ok(writes)
}

/// The field's value now, in the form [`restore_action`] compares: the count or flag as text,
/// an env var's plain value, `valueFrom: <source>` for a variable read from a source, `None`
/// for an env var (or its container) that is absent.
pub fn current_value(workload: &Workload, field: &str) -> Option<String> {
    if field == REPLICAS {
        return workload.replicas().map(|r| r.to_string());
    }
    if field == SUSPEND {
        return workload.suspended().map(|s| s.to_string());
    }
    let (init, container, name) = parse_env_field(field)?;
    let spec = workload.template()?.spec.as_ref()?;
    let containers = if init {
        spec.init_containers.as_deref().unwrap_or_default()
    } else {
        &spec.containers
    };
    let var = containers
        .iter()
        .find(|c| c.name == container)?
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)?;
    Some(match &var.value_from {
        Some(src) => source_key(src),
        None => var.value.clone().unwrap_or_default(),
    })
}

fn source_key(src: &EnvVarSource) -> String {
    format!(
        "valueFrom: {}",
        Prior::ValueFrom(Box::new(src.clone())).describe()
    )
}

/// The saved prior in the form of [`current_value`].
fn prior_value(saved: &SavedValue) -> Option<String> {
    match &saved.prior_value_from {
        Some(src) => Some(source_key(src)),
        None => saved.prior.clone(),
    }
}

/// A field someone changed while the window was open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The object, e.g. `Deployment/web`.
    pub target: String,
    /// The field.
    pub field: String,
    /// What the window had written.
    pub written: String,
    /// What was found at the restore (`None`: removed).
    pub found: Option<String>,
    /// What it was before the window (`None`: absent).
    pub prior: Option<String>,
    /// True when the found value was kept (`onDrift: Respect`), false when it was reverted.
    pub kept: bool,
}

impl Drift {
    /// A sentence for an Event.
    pub fn describe(&self) -> String {
        let show =
            |v: &Option<String>| v.as_deref().map_or("(absent)".into(), |v| format!("{v:?}"));
        if self.kept {
            format!(
                "{} {} was changed to {} during the window (the window set {:?}); kept it instead of restoring {} (onDrift: Respect)",
                self.target,
                self.field,
                show(&self.found),
                self.written,
                show(&self.prior)
            )
        } else {
            format!(
                "{} {} was changed to {} during the window (the window set {:?}); restored {} anyway (onDrift: Revert)",
                self.target,
                self.field,
                show(&self.found),
                self.written,
                show(&self.prior)
            )
        }
    }
}

/// How to restore the saved values of one workload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Restoration {
    /// What to send.
    pub writes: Writes,
    /// Fields someone changed during the window, kept or reverted.
    pub drift: Vec<Drift>,
}

/// How to restore `entries`, all saved values of `workload`: per field,
/// [`restore_action`] with the value found now.
pub fn restoration(
    workload: &Workload,
    entries: &[&SavedValue],
    on_drift: OnDrift,
) -> Result<Restoration, Error> {
    let mut back = Vec::new();
    let mut drift = Vec::new();
    for saved in entries {
        let found = current_value(workload, &saved.field);
        let prior = prior_value(saved);
        let compare = SavedValue {
            prior: prior.clone(),
            prior_value_from: None,
            ..(*saved).clone()
        };
        let drifted = || Drift {
            target: saved.target.clone(),
            field: saved.field.clone(),
            written: saved.written.clone(),
            found: found.clone(),
            prior: prior.clone(),
            kept: false,
        };
        match restore_action(&compare, found.as_deref(), on_drift) {
            RestoreAction::Nothing => {}
            RestoreAction::KeepDrifted { .. } => drift.push(Drift {
                kept: true,
                ..drifted()
            }),
            RestoreAction::Write(_) | RestoreAction::Remove => {
                if found.as_deref() != Some(saved.written.as_str()) {
                    drift.push(drifted());
                }
                back.push((*saved, Toward::Prior));
            }
        }
    }
    Ok(Restoration {
        writes: writes(workload, &back)?,
        drift,
    })
}

/// What to do with one saved value at restore time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreAction {
    /// Write this prior value back.
    Write(String),
    /// Remove the field: it did not exist before the window (e.g. an env var it added).
    Remove,
    /// Someone changed the field during the window and `onDrift: Respect` keeps their value
    /// (`None`: they removed it); report `DriftRespected`.
    KeepDrifted {
        /// The value found.
        current: Option<String>,
    },
    /// The field already holds its prior value.
    Nothing,
}

/// How to restore `saved`, given the field's `current` value (`None` when the field is
/// absent, e.g. an env var that is not set; an object that no longer exists has nothing to
/// restore and is the controller's to report).
///
/// * Already at the prior value (however it got there): [`RestoreAction::Nothing`].
/// * Still what the window wrote: write the prior value back, or remove the field if it did
///   not exist before.
/// * Anything else is drift: `Respect` keeps it ([`RestoreAction::KeepDrifted`]); `Revert`
///   writes the prior value (or removes the field) anyway.
pub fn restore_action(
    saved: &SavedValue,
    current: Option<&str>,
    on_drift: OnDrift,
) -> RestoreAction {
    if current == saved.prior.as_deref() {
        return RestoreAction::Nothing;
    }
    let back = || match &saved.prior {
        Some(prior) => RestoreAction::Write(prior.clone()),
        None => RestoreAction::Remove,
    };
    if current == Some(saved.written.as_str()) {
        return back();
    }
    match on_drift {
        OnDrift::Respect => RestoreAction::KeepDrifted {
            current: current.map(str::to_owned),
        },
        OnDrift::Revert => back(),
    }
}

#[cfg(test)]
mod tests;

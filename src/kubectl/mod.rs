//! kubectl's workload semantics as pure functions, so runbook steps behave like the commands
//! operators already know: `kubectl rollout status`, `rollout restart`, `rollout undo`,
//! `set env` and `scale`.
//!
//! Nothing here talks to the API server or reads the clock: every function takes the objects
//! (and, where kubectl would call `time.Now()`, the time) as arguments and returns a verdict,
//! a message or the patch kubectl would send. That keeps the behaviour testable against
//! realistic objects and lets the callers decide how to send and retry.
//!
//! The logic follows kubectl's own sources (`k8s.io/kubectl/pkg/polymorphichelpers`
//! `rollout_status.go`, `rollback.go`, `objectrestarter.go`, `pkg/cmd/set/set_env.go`,
//! `helper.go`, `env/env_parse.go`, `pkg/util/deployment`); messages are kubectl's words
//! without the trailing newline kubectl prints. Where this module deliberately differs, the
//! item's documentation says so and why.
//!
//! One private file per command: `rollout_status`, `restart`, `rollback` (`rollout undo`),
//! `env` (`set env`) and `scale`; everything they offer is re-exported here, so callers write
//! `crate::kubectl::X`.

use k8s_openapi::api::apps::v1::Deployment;
use serde::Serialize;
use serde_json::{Map, Value};

mod env;
mod restart;
mod rollback;
mod rollout_status;
mod scale;

pub use env::{EnvChange, EnvPrior, Prior, env_change, env_restore};
pub use restart::{check_restartable, restart_patch, restarted_at};
pub use rollback::{RollbackChange, RollbackPlan, rollback_plan};
pub use rollout_status::{RolloutStatus, deployment_rollout_status, statefulset_rollout_status};
pub use scale::scale_target;

/// Pod-template annotation `kubectl rollout restart` bumps; a changed template makes the
/// controller roll every pod.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// Annotation on a Deployment and its ReplicaSets recording the rollout sequence number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Label the Deployment controller adds to each ReplicaSet's template; a Deployment's own
/// template never has it, so comparisons and rollbacks drop it.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Reason of the `Progressing` condition once a Deployment's progress deadline has passed.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// Deployment annotations `kubectl rollout undo` keeps from the Deployment instead of copying
/// them from the target ReplicaSet: they describe the Deployment's own history and apply
/// state, not the template being restored.
pub const ROLLBACK_PRESERVED_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Why a kubectl-style operation cannot be planned. The messages are kubectl's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `kubectl rollout restart` refuses a paused Deployment: the new template would not roll
    /// out until someone resumes it, so the restart would silently do nothing.
    #[error("deployments.apps {name:?} can't restart paused deployment (run rollout resume first)")]
    RestartPaused {
        /// Name of the Deployment.
        name: String,
    },
    /// `kubectl rollout undo` refuses a paused Deployment for the same reason.
    #[error(
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/{name}' and try again"
    )]
    RollbackPaused {
        /// Name of the Deployment.
        name: String,
    },
    /// The requested revision is not among the Deployment's ReplicaSets (or is negative).
    #[error("unable to find specified revision {revision} in history")]
    RevisionNotFound {
        /// The revision that was asked for.
        revision: i64,
    },
    /// There is no revision before the current one to go back to.
    #[error("no rollout history found for deployment {name:?}")]
    NoRolloutHistory {
        /// Name of the Deployment.
        name: String,
    },
    /// No container (or init container) of the template matches the selector. kubectl only
    /// warns and changes nothing; a runbook step naming a container that is not there is a
    /// mistake worth failing on, so here it is an error with kubectl's wording.
    #[error("{kind}/{name} does not have any containers matching {selector:?}")]
    NoMatchingContainers {
        /// Kind of the workload, e.g. `Deployment`.
        kind: String,
        /// Name of the workload.
        name: String,
        /// The container name or `*` pattern that matched nothing.
        selector: String,
    },
    /// A variable to set has a name kubectl would reject.
    #[error("{name:?} is not a valid key name: {reason}")]
    InvalidEnvName {
        /// The rejected name.
        name: String,
        /// kubectl's validation messages, joined with `;`.
        reason: String,
    },
    /// The same variable is both set and unset; kubectl refuses to guess which was meant.
    #[error("can not both modify and remove the same environment variable in the same command")]
    SetAndUnset {
        /// The variable named on both sides.
        name: String,
    },
    /// Neither a variable to set nor one to unset was given.
    #[error("at least one environment variable must be provided")]
    NoEnvChanges,
}

/// How the server must read a patch produced here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902 JSON patch (a list of operations); what `kubectl rollout undo` sends.
    Json,
    /// Kubernetes strategic merge patch; what `rollout restart` and `set env` send.
    StrategicMerge,
}

impl PatchType {
    /// The `Content-Type` the API server expects for this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// Whether the Deployment is paused; `rollout restart` and `rollout undo` both refuse it.
fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// Builds `{"a": {"b": ... value}}` from a path, for patches whose keys are constants.
fn nest(path: &[&str], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        let mut map = Map::new();
        map.insert((*key).to_owned(), inner);
        Value::Object(map)
    })
}

/// Serializes k8s-openapi values, whose `Serialize` cannot fail on these plain data types.
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests;

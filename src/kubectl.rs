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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Container, EnvVarSource, PodTemplateSpec};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::step::WorkloadRef;

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

/// kubectl's own validation message for a bad variable name (apimachinery `IsEnvVarName`,
/// including the doubled spaces its `RegexError` produces), so errors read the same.
const ENV_NAME_MESSAGE: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

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

// ---------------------------------------------------------------------------------------------
// rollout status
// ---------------------------------------------------------------------------------------------

/// Where a rollout stands, with kubectl's message (without its trailing newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutStatus {
    /// The rollout is complete; kubectl would exit 0.
    Done(String),
    /// The rollout is still going; kubectl would keep watching.
    Waiting(String),
    /// kubectl would stop with this error (progress deadline exceeded, unsupported strategy).
    Failed(String),
}

impl RolloutStatus {
    /// kubectl's message for this state.
    pub fn message(&self) -> &str {
        match self {
            RolloutStatus::Done(m) | RolloutStatus::Waiting(m) | RolloutStatus::Failed(m) => m,
        }
    }

    /// Whether the rollout is complete.
    pub fn is_done(&self) -> bool {
        matches!(self, RolloutStatus::Done(_))
    }
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// `kubectl rollout status deployment/<name>` for one observation of the Deployment.
///
/// Order matters and is kubectl's: nothing is judged until the controller has observed the
/// current generation (status would describe the previous spec); then a timed-out
/// `Progressing` condition fails; then new replicas, old replicas and availability are
/// checked in turn. A paused Deployment is not special-cased, exactly as in kubectl: it keeps
/// waiting. The pod-level warnings newer kubectl appends (image pull back-off and the like)
/// need a pod list and are left to the caller.
pub fn deployment_rollout_status(d: &Deployment) -> RolloutStatus {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    if generation > observed {
        return RolloutStatus::Waiting(
            "Waiting for deployment spec update to be observed...".into(),
        );
    }

    // kubectl looks at the first condition of type Progressing only.
    let progressing = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conds| conds.iter().find(|c| c.type_ == "Progressing"));
    if progressing.is_some_and(|c| c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)) {
        return RolloutStatus::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }

    // Go reads absent counters as 0; i64 keeps the subtraction from overflowing.
    let updated = i64::from(status.and_then(|s| s.updated_replicas).unwrap_or(0));
    let replicas = i64::from(status.and_then(|s| s.replicas).unwrap_or(0));
    let available = i64::from(status.and_then(|s| s.available_replicas).unwrap_or(0));
    // An unset spec.replicas skips this check, as in kubectl (the server always defaults it).
    if let Some(wanted) = d.spec.as_ref().and_then(|s| s.replicas)
        && updated < i64::from(wanted)
    {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutStatus::Done(format!("deployment {name:?} successfully rolled out"))
}

/// `kubectl rollout status statefulset/<name>` for one observation of the StatefulSet.
///
/// As in kubectl: an `OnDelete` StatefulSet has no rollout to follow, so it fails with
/// kubectl's error; a rollout is not judged before the controller has observed the
/// generation; all replicas must be ready; with a `rollingUpdate` block the partition decides
/// completion (the API server always fills in `partition: 0`, which is why kubectl prints
/// "partitioned roll out complete" even for unpartitioned sets); without one the current and
/// update revisions must meet.
///
/// One deliberate difference: an absent `updateStrategy` is read as `RollingUpdate`, the
/// server's default, where kubectl (given an object the server never produces) would fail.
pub fn statefulset_rollout_status(s: &StatefulSet) -> RolloutStatus {
    let spec = s.spec.as_ref();
    let strategy = spec.and_then(|sp| sp.update_strategy.as_ref());
    let strategy_type = strategy
        .and_then(|st| st.type_.as_deref())
        .unwrap_or("RollingUpdate");
    if strategy_type != "RollingUpdate" {
        return RolloutStatus::Failed(
            "rollout status is only available for RollingUpdate strategy type".into(),
        );
    }

    let status = s.status.as_ref();
    let generation = s.metadata.generation.unwrap_or(0);
    let observed = status.and_then(|st| st.observed_generation).unwrap_or(0);
    if observed == 0 || generation > observed {
        return RolloutStatus::Waiting(
            "Waiting for statefulset spec update to be observed...".into(),
        );
    }

    let replicas = spec.and_then(|sp| sp.replicas);
    let ready = i64::from(status.and_then(|st| st.ready_replicas).unwrap_or(0));
    if let Some(wanted) = replicas
        && ready < i64::from(wanted)
    {
        return RolloutStatus::Waiting(format!(
            "Waiting for {} pods to be ready...",
            i64::from(wanted) - ready
        ));
    }

    let updated = i64::from(status.and_then(|st| st.updated_replicas).unwrap_or(0));
    if let Some(rolling) = strategy.and_then(|st| st.rolling_update.as_ref()) {
        if let (Some(wanted), Some(partition)) = (replicas, rolling.partition) {
            let to_update = i64::from(wanted) - i64::from(partition);
            if updated < to_update {
                return RolloutStatus::Waiting(format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {to_update} new pods have been updated..."
                ));
            }
        }
        return RolloutStatus::Done(format!(
            "partitioned roll out complete: {updated} new pods have been updated..."
        ));
    }

    let update_revision = status
        .and_then(|st| st.update_revision.as_deref())
        .unwrap_or_default();
    let current_revision = status
        .and_then(|st| st.current_revision.as_deref())
        .unwrap_or_default();
    if update_revision != current_revision {
        return RolloutStatus::Waiting(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
        ));
    }
    let current = status.and_then(|st| st.current_replicas).unwrap_or(0);
    RolloutStatus::Done(format!(
        "statefulset rolling update complete {current} pods at revision {current_revision}..."
    ))
}

// ---------------------------------------------------------------------------------------------
// rollout restart
// ---------------------------------------------------------------------------------------------

/// The `kubectl.kubernetes.io/restartedAt` value kubectl writes for `now`: RFC 3339 to the
/// second (Go's `time.RFC3339` drops sub-seconds), in UTC, which is what kubectl prints on a
/// machine (or pod) whose local zone is UTC.
pub fn restarted_at(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The strategic merge patch `kubectl rollout restart` sends ([`PatchType::StrategicMerge`]).
///
/// It is the same for Deployments, StatefulSets and DaemonSets: only the pod template's
/// `restartedAt` annotation changes, which is enough for each controller to replace every pod
/// under its usual rollout rules. Check a Deployment with [`check_restartable`] first. Two
/// restarts within the same second produce the same value and so no rollout; kubectl reports
/// that case as an "empty patch" error.
pub fn restart_patch(now: Timestamp) -> Value {
    nest(
        &[
            "spec",
            "template",
            "metadata",
            "annotations",
            RESTARTED_AT_ANNOTATION,
        ],
        Value::String(restarted_at(now)),
    )
}

/// Refuses to restart a paused Deployment, as kubectl's object restarter does.
pub fn check_restartable(d: &Deployment) -> Result<(), Error> {
    if is_paused(d) {
        return Err(Error::RestartPaused {
            name: d.metadata.name.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

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

// ---------------------------------------------------------------------------------------------
// rollout undo
// ---------------------------------------------------------------------------------------------

/// What `kubectl rollout undo deployment/<name>` would do.
#[derive(Clone, Debug, PartialEq)]
pub struct RollbackPlan {
    /// The Deployment's latest revision (the highest among its ReplicaSets).
    pub from_revision: i64,
    /// The revision being returned to.
    pub to_revision: i64,
    /// Name of the ReplicaSet holding the target revision's template.
    pub replica_set: String,
    /// Whether there is anything to send.
    pub change: RollbackChange,
}

/// The outcome of a rollback plan.
#[derive(Clone, Debug, PartialEq)]
pub enum RollbackChange {
    /// The Deployment already runs the target template; kubectl reports this and sends
    /// nothing.
    Skip {
        /// kubectl's message, e.g. `skipped rollback (current template already matches revision 3)`.
        message: String,
    },
    /// Send this patch to the Deployment.
    Patch {
        /// Always [`PatchType::Json`], as kubectl.
        patch_type: PatchType,
        /// The patch: replace `/spec/template` and `/metadata/annotations`.
        patch: Value,
    },
}

/// Plans `kubectl rollout undo` of a Deployment, given the ReplicaSets of its namespace.
///
/// Only ReplicaSets whose controller owner reference carries the Deployment's uid count (the
/// others may match the selector by accident). Revisions come from the
/// `deployment.kubernetes.io/revision` annotation; as in kubectl a ReplicaSet without it is
/// revision 0 and one with an unreadable value is ignored. `to_revision` `None` (or `Some(0)`,
/// kubectl's `--to-revision=0`) means the second-highest revision; `Some(n)` means exactly n.
/// Checks run in kubectl's order: find the revision, refuse a paused Deployment, skip when
/// the template already matches, else build kubectl's JSON patch: the ReplicaSet's template
/// without the `pod-template-hash` label, and the annotations of the ReplicaSet except those in
/// [`ROLLBACK_PRESERVED_ANNOTATIONS`], which keep the Deployment's values. Like kubectl this
/// replaces the whole annotation map, so other Deployment annotations are dropped.
///
/// One deliberate difference: kubectl's skip message names the revision asked for, which is
/// `0` when none was given; here it names the revision found.
pub fn rollback_plan(
    d: &Deployment,
    replica_sets: &[ReplicaSet],
    to_revision: Option<i64>,
) -> Result<RollbackPlan, Error> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let wanted = to_revision.unwrap_or(0);
    if wanted < 0 {
        return Err(Error::RevisionNotFound { revision: wanted });
    }
    let empty_template = PodTemplateSpec::default();
    let current_template = d.spec.as_ref().map_or(&empty_template, |s| &s.template);
    let history = deployment_history(d, replica_sets, current_template);

    let from_revision = history.iter().map(|(rev, _)| *rev).max().unwrap_or(0);
    let (to_revision, target) = if wanted == 0 {
        previous_revision(&history).ok_or_else(|| Error::NoRolloutHistory { name: name.clone() })?
    } else {
        history
            .iter()
            .find(|(rev, _)| *rev == wanted)
            .copied()
            .ok_or(Error::RevisionNotFound { revision: wanted })?
    };

    if is_paused(d) {
        return Err(Error::RollbackPaused { name });
    }
    let replica_set = target.metadata.name.clone().unwrap_or_default();
    let target_template = rs_template(target);
    if equal_ignore_hash(&target_template, current_template) {
        return Ok(RollbackPlan {
            from_revision,
            to_revision,
            replica_set,
            change: RollbackChange::Skip {
                message: format!(
                    "skipped rollback (current template already matches revision {to_revision})"
                ),
            },
        });
    }

    let mut template = target_template;
    if let Some(meta) = template.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        // Go drops an emptied map from JSON (omitempty); do the same.
        if meta.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.labels = None;
        }
    }
    let mut annotations = BTreeMap::new();
    let own = d.metadata.annotations.as_ref();
    for key in ROLLBACK_PRESERVED_ANNOTATIONS {
        if let Some(value) = own.and_then(|a| a.get(key)) {
            annotations.insert(key.to_owned(), value.clone());
        }
    }
    for (key, value) in target.metadata.annotations.iter().flatten() {
        if !ROLLBACK_PRESERVED_ANNOTATIONS.contains(&key.as_str()) {
            annotations.insert(key.clone(), value.clone());
        }
    }
    let patch = Value::Array(vec![
        json_op("replace", "/spec/template", to_json(&template)),
        json_op("replace", "/metadata/annotations", to_json(&annotations)),
    ]);
    Ok(RollbackPlan {
        from_revision,
        to_revision,
        replica_set,
        change: RollbackChange::Patch {
            patch_type: PatchType::Json,
            patch,
        },
    })
}

/// The Deployment's ReplicaSets with readable revisions, in the order kubectl walks them:
/// old ReplicaSets by creation time (name breaks ties), then the one running the current
/// template. The order only matters if two ReplicaSets share a revision.
fn deployment_history<'a>(
    d: &Deployment,
    replica_sets: &'a [ReplicaSet],
    current_template: &PodTemplateSpec,
) -> Vec<(i64, &'a ReplicaSet)> {
    let uid = d.metadata.uid.as_deref().unwrap_or_default();
    let mut owned: Vec<&ReplicaSet> = replica_sets
        .iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .collect();
    owned.sort_by(|a, b| {
        let key = |rs: &ReplicaSet| {
            (
                rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                rs.metadata.name.clone().unwrap_or_default(),
            )
        };
        key(a).cmp(&key(b))
    });
    // kubectl's "new" ReplicaSet is the oldest one whose template matches the Deployment's.
    if let Some(pos) = owned
        .iter()
        .position(|rs| equal_ignore_hash(&rs_template(rs), current_template))
    {
        let new_rs = owned.remove(pos);
        owned.push(new_rs);
    }
    owned
        .into_iter()
        .filter_map(|rs| revision(rs).map(|rev| (rev, rs)))
        .collect()
}

/// kubectl's walk for the previous revision: track the newest and second-newest seen; a
/// revision equal to the newest counts as second-newest.
fn previous_revision<'a>(history: &[(i64, &'a ReplicaSet)]) -> Option<(i64, &'a ReplicaSet)> {
    let mut latest: Option<(i64, &ReplicaSet)> = None;
    let mut previous: Option<(i64, &ReplicaSet)> = None;
    for &(rev, rs) in history {
        if latest.is_none_or(|(l, _)| l < rev) {
            previous = latest;
            latest = Some((rev, rs));
        } else if previous.is_none_or(|(p, _)| p < rev) {
            previous = Some((rev, rs));
        }
    }
    previous
}

/// A ReplicaSet's revision as kubectl reads it: absent is 0, unreadable is no revision.
fn revision(rs: &ReplicaSet) -> Option<i64> {
    match rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
    {
        None => Some(0),
        Some(text) => text.parse().ok(),
    }
}

fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

/// kubectl's `equalIgnoreHash`: templates are equal when they differ at most in the
/// `pod-template-hash` label. Go's semantic equality treats absent and empty maps and lists
/// alike, so both sides are compared as JSON with nulls and empty maps and lists pruned.
/// Quantities are compared as written; the API server stores them canonically, so templates
/// read from it agree.
fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    comparable(a) == comparable(b)
}

fn comparable(template: &PodTemplateSpec) -> Value {
    let mut value = to_json(template);
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    prune(&mut value);
    value
}

/// Removes nulls and empty maps and lists from objects, recursively; returns whether the value
/// itself is empty. List elements are kept, because their positions carry meaning.
fn prune(value: &mut Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => {
            map.retain(|_, v| !prune(v));
            map.is_empty()
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune(item);
            }
            items.is_empty()
        }
        _ => false,
    }
}

fn json_op(op: &str, path: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert("op".into(), Value::String(op.into()));
    map.insert("path".into(), Value::String(path.into()));
    map.insert("value".into(), value);
    Value::Object(map)
}

/// Serializes k8s-openapi values, whose `Serialize` cannot fail on these plain data types.
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// set env
// ---------------------------------------------------------------------------------------------

/// What a variable held before a change: recorded so a maintenance window can put it back.
///
/// Stored as `{}` (absent), `{"value": "..."}` or `{"valueFrom": {...}}`, the shape of an
/// EnvVar without its name, so the record reads naturally in a status and stays a structural
/// schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "PriorWire", into = "PriorWire")]
pub enum Prior {
    /// The variable was not defined.
    Absent,
    /// The variable had this plain value (an unset `value` reads as "").
    Value(String),
    /// The variable was read from a source (Secret, ConfigMap, field, resource, file).
    /// Boxed: a source is many times the size of the other variants.
    ValueFrom(Box<EnvVarSource>),
}

impl Prior {
    /// Human description: `absent`, the quoted value, or kubectl's `set env --list` wording
    /// for a reference (e.g. `secret db, key password`).
    pub fn describe(&self) -> String {
        match self {
            Prior::Absent => "absent".into(),
            Prior::Value(v) => format!("{v:?}"),
            Prior::ValueFrom(src) => describe_source(src),
        }
    }
}

/// kubectl's `GetEnvVarRefString`. kubectl has no wording for `fileKeyRef` yet (it prints
/// "invalid valueFrom"); this names the file instead.
fn describe_source(src: &EnvVarSource) -> String {
    if let Some(r) = &src.config_map_key_ref {
        return format!("configmap {}, key {}", r.name, r.key);
    }
    if let Some(r) = &src.secret_key_ref {
        return format!("secret {}, key {}", r.name, r.key);
    }
    if let Some(r) = &src.field_ref {
        return format!("field path {}", r.field_path);
    }
    if let Some(r) = &src.resource_field_ref {
        let prefix = r
            .container_name
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| format!("{c}/"))
            .unwrap_or_default();
        return format!("resource field {prefix}{}", r.resource);
    }
    if let Some(r) = &src.file_key_ref {
        return format!("file {}/{}, key {}", r.volume_name, r.path, r.key);
    }
    "invalid valueFrom".into()
}

/// Wire form of [`Prior`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct PriorWire {
    /// The plain value the variable had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// The source the variable was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_from: Option<EnvVarSource>,
}

impl From<PriorWire> for Prior {
    fn from(wire: PriorWire) -> Self {
        // The API server never stores both; should a hand-edited record, the source wins as
        // it is the richer of the two.
        match (wire.value, wire.value_from) {
            (_, Some(src)) => Prior::ValueFrom(Box::new(src)),
            (Some(v), None) => Prior::Value(v),
            (None, None) => Prior::Absent,
        }
    }
}

impl From<Prior> for PriorWire {
    fn from(prior: Prior) -> Self {
        match prior {
            Prior::Absent => PriorWire::default(),
            Prior::Value(v) => PriorWire {
                value: Some(v),
                value_from: None,
            },
            Prior::ValueFrom(src) => PriorWire {
                value: None,
                value_from: Some(*src),
            },
        }
    }
}

impl JsonSchema for Prior {
    fn schema_name() -> Cow<'static, str> {
        "EnvPriorValue".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = PriorWire::json_schema(generator);
        schema.insert(
            "description".into(),
            "What the variable held before: value, valueFrom, or neither when it was absent."
                .into(),
        );
        schema
    }
}

/// One variable of one container, before a change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvPrior {
    /// Container name.
    pub container: String,
    /// True when the container is an init container (they are changed too, as by kubectl).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init_container: bool,
    /// Variable name.
    pub name: String,
    /// What the variable held before.
    pub prior: Prior,
    /// Whether the change alters this variable; a restore only touches those that it did.
    pub changed: bool,
}

/// The effect of a `set env` style change on a pod template.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvChange {
    /// One record per selected container and named variable (containers first, then init
    /// containers; variables in the order given), with the value before the change.
    pub priors: Vec<EnvPrior>,
    /// Whether anything changes at all; when false there is nothing to send (kubectl skips
    /// an empty patch the same way) and `patch` is `{}`.
    pub changed: bool,
    /// Strategic merge patch ([`PatchType::StrategicMerge`]) of the workload: per changed
    /// container, `env` entries merged by name, `{"$patch": "delete", "name": ...}` for removals.
    pub patch: Value,
}

/// What a variable should end up as.
enum Desired<'a> {
    Absent,
    Value(&'a str),
    ValueFrom(&'a EnvVarSource),
}

/// Plans `kubectl set env <workload> [-c <container>] NAME=value... NAME-...` on a pod template.
///
/// kubectl's rules: names to set must pass its variable-name validation; a name may not be
/// both set and unset; the first of repeated names wins; an existing variable is replaced in
/// place, a new one is appended; a variable read from a source and set to a plain value loses
/// its `valueFrom`. Containers are chosen as kubectl's `--containers` does: `None` (or `*`)
/// means every container and init container, otherwise a name in which `*` matches any run of
/// characters (kubectl's own matcher does not anchor a pattern's first part, so `app*` there
/// also matches `myapp`; here patterns are anchored). Only variables that actually change
/// appear in the patch, so it is `{}` when the template already matches.
pub fn env_change(
    workload: &WorkloadRef,
    template: &PodTemplateSpec,
    container: Option<&str>,
    set: &[(String, String)],
    unset: &[String],
) -> Result<EnvChange, Error> {
    if set.is_empty() && unset.is_empty() {
        return Err(Error::NoEnvChanges);
    }
    for (name, _) in set {
        let problems = env_name_problems(name);
        if !problems.is_empty() {
            return Err(Error::InvalidEnvName {
                name: name.clone(),
                reason: problems.join(";"),
            });
        }
    }
    if let Some(name) = unset.iter().find(|u| set.iter().any(|(s, _)| s == *u)) {
        return Err(Error::SetAndUnset { name: name.clone() });
    }

    let mut seen = HashSet::new();
    let mut wanted: Vec<(&str, Desired<'_>)> = Vec::new();
    for (name, value) in set {
        if seen.insert(name.as_str()) {
            wanted.push((name, Desired::Value(value)));
        }
    }
    for name in unset {
        if seen.insert(name.as_str()) {
            wanted.push((name, Desired::Absent));
        }
    }

    let selector = container.unwrap_or("*");
    let selected: Vec<(bool, &Container)> = pod_containers(template)
        .filter(|(_, c)| wildcard_match(selector, &c.name))
        .collect();
    if selected.is_empty() {
        return Err(Error::NoMatchingContainers {
            // Debug of the unit variant is its kind name, and keeps up with new kinds.
            kind: format!("{:?}", workload.kind),
            name: workload.name.clone(),
            selector: selector.to_owned(),
        });
    }

    let mut plan = EnvPlan::default();
    for (init, c) in selected {
        for (name, desired) in &wanted {
            plan.add(init, c, name, desired);
        }
    }
    Ok(plan.finish())
}

/// The change that puts recorded variables back as they were before an [`env_change`].
///
/// Only records marked `changed` are restored: a variable the original change did not alter
/// may since have been changed by someone else, and restoring it would undo their work. When
/// a container and variable appear in several records, the first wins: concatenated records
/// of successive changes restore the value from before the first. A variable that was absent
/// is deleted, a plain value is set back (dropping any `valueFrom`), a source is put back
/// (dropping any plain value). Containers that no longer exist are skipped: there is nothing
/// left to restore in them. The returned `priors` describe the template before the restore.
pub fn env_restore(template: &PodTemplateSpec, priors: &[EnvPrior]) -> EnvChange {
    let mut seen = HashSet::new();
    let mut plan = EnvPlan::default();
    for record in priors.iter().filter(|p| p.changed) {
        if !seen.insert((record.init_container, &record.container, &record.name)) {
            continue;
        }
        let Some((init, c)) = pod_containers(template)
            .find(|(init, c)| *init == record.init_container && c.name == record.container)
        else {
            continue;
        };
        let desired = match &record.prior {
            Prior::Absent => Desired::Absent,
            Prior::Value(v) => Desired::Value(v),
            Prior::ValueFrom(src) => Desired::ValueFrom(src),
        };
        plan.add(init, c, &record.name, &desired);
    }
    plan.finish()
}

/// Containers then init containers, flagged `true` for init containers; kubectl's order.
fn pod_containers(template: &PodTemplateSpec) -> impl Iterator<Item = (bool, &Container)> {
    let spec = template.spec.as_ref();
    let containers = spec.into_iter().flat_map(|s| s.containers.iter());
    let inits = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten());
    containers
        .map(|c| (false, c))
        .chain(inits.map(|c| (true, c)))
}

/// Accumulates priors and per-container env patch entries.
#[derive(Default)]
struct EnvPlan {
    priors: Vec<EnvPrior>,
    /// (init container?, container name, env entries), in first-touched order.
    entries: Vec<(bool, String, Vec<Value>)>,
}

impl EnvPlan {
    fn add(&mut self, init: bool, c: &Container, name: &str, desired: &Desired<'_>) {
        let prior = current_prior(c, name);
        let op = env_op(name, &prior, desired);
        self.priors.push(EnvPrior {
            container: c.name.clone(),
            init_container: init,
            name: name.to_owned(),
            prior,
            changed: op.is_some(),
        });
        if let Some(op) = op {
            match self
                .entries
                .iter_mut()
                .find(|(i, n, _)| *i == init && *n == c.name)
            {
                Some((_, _, ops)) => ops.push(op),
                None => self.entries.push((init, c.name.clone(), vec![op])),
            }
        }
    }

    fn finish(self) -> EnvChange {
        let changed = !self.entries.is_empty();
        let mut containers = Vec::new();
        let mut inits = Vec::new();
        for (init, name, env) in self.entries {
            let mut entry = Map::new();
            entry.insert("name".into(), Value::String(name));
            entry.insert("env".into(), Value::Array(env));
            if init { &mut inits } else { &mut containers }.push(Value::Object(entry));
        }
        let mut pod_spec = Map::new();
        if !containers.is_empty() {
            pod_spec.insert("containers".into(), Value::Array(containers));
        }
        if !inits.is_empty() {
            pod_spec.insert("initContainers".into(), Value::Array(inits));
        }
        let patch = if changed {
            nest(&["spec", "template", "spec"], Value::Object(pod_spec))
        } else {
            Value::Object(Map::new())
        };
        EnvChange {
            priors: self.priors,
            changed,
            patch,
        }
    }
}

/// The variable as the container defines it now (its first definition, as kubectl's lookup).
fn current_prior(c: &Container, name: &str) -> Prior {
    match c.env.iter().flatten().find(|e| e.name == name) {
        None => Prior::Absent,
        Some(e) => match &e.value_from {
            Some(src) => Prior::ValueFrom(Box::new(src.clone())),
            None => Prior::Value(e.value.clone().unwrap_or_default()),
        },
    }
}

/// The env patch entry taking `current` to `desired`, or None when they already agree.
/// Strategic merge merges an entry's fields into the existing variable, so fields of the old
/// form are nulled explicitly; otherwise a variable could end up with both `value` and
/// `valueFrom`, or with two kinds of source, which the API server rejects.
fn env_op(name: &str, current: &Prior, desired: &Desired<'_>) -> Option<Value> {
    let mut entry = Map::new();
    match (current, desired) {
        (Prior::Absent, Desired::Absent) => return None,
        (Prior::Value(a), Desired::Value(b)) if a == b => return None,
        (Prior::ValueFrom(a), Desired::ValueFrom(b)) if **a == **b => return None,
        (_, Desired::Absent) => {
            // A delete directive is only emitted for a variable that exists, so it never
            // lands in a container without an env list.
            entry.insert("$patch".into(), Value::String("delete".into()));
            entry.insert("name".into(), Value::String(name.to_owned()));
            return Some(Value::Object(entry));
        }
        (_, Desired::Value(v)) => {
            entry.insert("name".into(), Value::String(name.to_owned()));
            entry.insert("value".into(), Value::String((*v).to_owned()));
            if matches!(current, Prior::ValueFrom(_)) {
                entry.insert("valueFrom".into(), Value::Null);
            }
        }
        (_, Desired::ValueFrom(src)) => {
            entry.insert("name".into(), Value::String(name.to_owned()));
            let new = to_json(*src);
            let value_from = match current {
                Prior::ValueFrom(old) => replace_by_merge(&to_json(&**old), &new),
                _ => new,
            };
            entry.insert("valueFrom".into(), value_from);
            if matches!(current, Prior::Value(_)) {
                entry.insert("value".into(), Value::Null);
            }
        }
    }
    Some(Value::Object(entry))
}

/// A merge value that turns `old` into exactly `new`: keys missing from `new` are nulled.
fn replace_by_merge(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for (key, nv) in n {
                let merged = match o.get(key) {
                    Some(ov) => replace_by_merge(ov, nv),
                    None => nv.clone(),
                };
                out.insert(key.clone(), merged);
            }
            for key in o.keys() {
                if !n.contains_key(key) {
                    out.insert(key.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// apimachinery's `IsEnvVarName`, which `kubectl set env` applies to names it sets.
fn env_name_problems(name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'));
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !(first_ok && rest_ok) {
        problems.push(ENV_NAME_MESSAGE.to_owned());
    }
    if name == "." {
        problems.push("must not be '.'".into());
    } else if name == ".." {
        problems.push("must not be '..'".into());
    } else if name.starts_with("..") {
        problems.push("must not start with '..'".into());
    }
    problems
}

/// Whole-string match where `*` stands for any run of characters (kubectl's `--containers`).
fn wildcard_match(pattern: &str, text: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        // No `*` at all: the pattern is a plain name.
        return rest.is_empty();
    };
    // Middle parts take their leftmost occurrence, which leaves the most room for the rest.
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

// ---------------------------------------------------------------------------------------------
// scale
// ---------------------------------------------------------------------------------------------

/// The replica count a scale step asks for: `replicas` when given (an absolute count wins
/// over a delta), else `current` changed by `by`, else `current`. Never below 0, and the
/// arithmetic saturates rather than wrapping.
pub fn scale_target(current: i32, replicas: Option<i32>, by: Option<i32>) -> i32 {
    match (replicas, by) {
        (Some(count), _) => count,
        (None, Some(delta)) => current.saturating_add(delta),
        (None, None) => current,
    }
    .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::WorkloadKind;
    use k8s_openapi::api::core::v1::EnvVar;
    use serde_json::json;

    // ---- fixtures ---------------------------------------------------------------------------

    fn deployment(v: Value) -> Deployment {
        serde_json::from_value(v).expect("a Deployment")
    }

    fn statefulset(v: Value) -> StatefulSet {
        serde_json::from_value(v).expect("a StatefulSet")
    }

    fn template(v: Value) -> PodTemplateSpec {
        serde_json::from_value(v).expect("a PodTemplateSpec")
    }

    const UID: &str = "5f0c6a8e-1111-4c8e-9c55-0d3a4f1b2c3d";

    /// A Deployment as the API server returns it, mid-way or at rest depending on `status`.
    fn app(spec_extra: Value, status: Value, generation: i64) -> Deployment {
        let mut v = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "app", "namespace": "shop", "uid": UID, "generation": generation,
                "annotations": {
                    "deployment.kubernetes.io/revision": "3",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}",
                    "team": "payments"
                }
            },
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "app"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
                "template": app_template("v3")
            },
            "status": status
        });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), spec_extra.as_object()) {
            for (k, val) in extra {
                spec.insert(k.clone(), val.clone());
            }
        }
        deployment(v)
    }

    fn app_template(image_tag: &str) -> Value {
        json!({
            "metadata": {"creationTimestamp": null, "labels": {"app": "app"}},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": format!("registry.example/app:{image_tag}"),
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent"
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "securityContext": {},
                "schedulerName": "default-scheduler"
            }
        })
    }

    fn progressing(reason: &str, status: &str) -> Value {
        json!({"type": "Progressing", "status": status, "reason": reason,
               "message": "ReplicaSet \"app-7c9d\" is progressing."})
    }

    fn done_status() -> Value {
        json!({
            "observedGeneration": 7, "replicas": 4, "updatedReplicas": 4, "readyReplicas": 4,
            "availableReplicas": 4,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                progressing("NewReplicaSetAvailable", "True")
            ]
        })
    }

    // ---- deployment rollout status ----------------------------------------------------------

    #[test]
    fn deployment_done_when_all_replicas_updated_and_available() {
        let d = app(json!({}), done_status(), 7);
        let s = deployment_rollout_status(&d);
        assert_eq!(
            s,
            RolloutStatus::Done("deployment \"app\" successfully rolled out".into())
        );
        assert!(s.is_done());
    }

    #[test]
    fn deployment_waits_for_new_replicas_mid_rollout() {
        let d = app(
            json!({}),
            json!({"observedGeneration": 7, "replicas": 5, "updatedReplicas": 1,
                   "readyReplicas": 4, "availableReplicas": 4, "unavailableReplicas": 1,
                   "conditions": [progressing("ReplicaSetUpdated", "True")]}),
            7,
        );
        assert_eq!(
            deployment_rollout_status(&d),
            RolloutStatus::Waiting(
                "Waiting for deployment \"app\" rollout to finish: 1 out of 4 new replicas have been updated..."
                    .into()
            )
        );
    }

    #[test]
    fn deployment_waits_for_old_replicas_to_terminate() {
        let d = app(
            json!({}),
            json!({"observedGeneration": 7, "replicas": 5, "updatedReplicas": 4,
                   "availableReplicas": 4, "conditions": [progressing("ReplicaSetUpdated", "True")]}),
            7,
        );
        assert_eq!(
            deployment_rollout_status(&d).message(),
            "Waiting for deployment \"app\" rollout to finish: 1 old replicas are pending termination..."
        );
    }

    #[test]
    fn deployment_waits_for_updated_replicas_to_become_available() {
        let d = app(
            json!({}),
            json!({"observedGeneration": 7, "replicas": 4, "updatedReplicas": 4,
                   "readyReplicas": 2, "availableReplicas": 2}),
            7,
        );
        assert_eq!(
            deployment_rollout_status(&d),
            RolloutStatus::Waiting(
                "Waiting for deployment \"app\" rollout to finish: 2 of 4 updated replicas are available..."
                    .into()
            )
        );
    }

    #[test]
    fn deployment_fails_when_progress_deadline_exceeded() {
        let d = app(
            json!({}),
            json!({"observedGeneration": 7, "replicas": 5, "updatedReplicas": 1,
            "availableReplicas": 4,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                progressing(PROGRESS_DEADLINE_EXCEEDED, "False")
            ]}),
            7,
        );
        assert_eq!(
            deployment_rollout_status(&d),
            RolloutStatus::Failed("deployment \"app\" exceeded its progress deadline".into())
        );
    }

    #[test]
    fn deployment_generation_not_observed_waits_even_with_old_deadline_condition() {
        // A new spec resets the deadline; the stale condition describes the old one.
        let mut status = done_status();
        status["observedGeneration"] = json!(6);
        status["conditions"] = json!([progressing(PROGRESS_DEADLINE_EXCEEDED, "False")]);
        let d = app(json!({}), status, 7);
        assert_eq!(
            deployment_rollout_status(&d),
            RolloutStatus::Waiting("Waiting for deployment spec update to be observed...".into())
        );
    }

    #[test]
    fn deployment_without_status_waits_for_observation() {
        let d = app(json!({}), Value::Null, 1);
        assert_eq!(
            deployment_rollout_status(&d).message(),
            "Waiting for deployment spec update to be observed..."
        );
    }

    #[test]
    fn deployment_scaled_to_zero_is_done() {
        let d = app(json!({"replicas": 0}), json!({"observedGeneration": 7}), 7);
        assert!(deployment_rollout_status(&d).is_done());
    }

    #[test]
    fn paused_deployment_mid_rollout_keeps_waiting_like_kubectl() {
        let d = app(
            json!({"paused": true}),
            json!({"observedGeneration": 7, "replicas": 4, "updatedReplicas": 2,
                   "availableReplicas": 4,
                   "conditions": [progressing("DeploymentPaused", "Unknown")]}),
            7,
        );
        assert_eq!(
            deployment_rollout_status(&d).message(),
            "Waiting for deployment \"app\" rollout to finish: 2 out of 4 new replicas have been updated..."
        );
    }

    // ---- statefulset rollout status ---------------------------------------------------------

    fn web(strategy: Value, status: Value, generation: i64) -> StatefulSet {
        let mut spec = json!({
            "replicas": 5,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "podManagementPolicy": "OrderedReady",
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}
        });
        if !strategy.is_null() {
            spec["updateStrategy"] = strategy;
        }
        statefulset(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "shop", "generation": generation},
            "spec": spec,
            "status": status
        }))
    }

    fn rolling(partition: i32) -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}})
    }

    #[test]
    fn statefulset_on_delete_fails_like_kubectl() {
        let s = web(
            json!({"type": "OnDelete"}),
            json!({"observedGeneration": 2, "replicas": 5, "readyReplicas": 5}),
            2,
        );
        assert_eq!(
            statefulset_rollout_status(&s),
            RolloutStatus::Failed(
                "rollout status is only available for RollingUpdate strategy type".into()
            )
        );
    }

    #[test]
    fn statefulset_waits_until_generation_observed() {
        let never = web(rolling(0), json!({"replicas": 0}), 1);
        let stale = web(
            rolling(0),
            json!({"observedGeneration": 2, "replicas": 5, "readyReplicas": 5}),
            3,
        );
        for s in [never, stale] {
            assert_eq!(
                statefulset_rollout_status(&s),
                RolloutStatus::Waiting(
                    "Waiting for statefulset spec update to be observed...".into()
                )
            );
        }
    }

    #[test]
    fn statefulset_waits_for_ready_pods() {
        let s = web(
            rolling(0),
            json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 3, "updatedReplicas": 2}),
            3,
        );
        assert_eq!(
            statefulset_rollout_status(&s).message(),
            "Waiting for 2 pods to be ready..."
        );
    }

    #[test]
    fn statefulset_partitioned_rollout_waits_then_completes() {
        let waiting = web(
            rolling(2),
            json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5,
                   "updatedReplicas": 1, "currentRevision": "web-5d4b9c", "updateRevision": "web-7f8a6d"}),
            3,
        );
        assert_eq!(
            statefulset_rollout_status(&waiting),
            RolloutStatus::Waiting(
                "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated..."
                    .into()
            )
        );
        let complete = web(
            rolling(2),
            json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5,
                   "updatedReplicas": 3, "currentRevision": "web-5d4b9c", "updateRevision": "web-7f8a6d"}),
            3,
        );
        assert_eq!(
            statefulset_rollout_status(&complete),
            RolloutStatus::Done(
                "partitioned roll out complete: 3 new pods have been updated...".into()
            )
        );
    }

    #[test]
    fn statefulset_defaulted_partition_zero_reports_partitioned_completion() {
        let s = web(
            rolling(0),
            json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5, "currentReplicas": 5,
                   "updatedReplicas": 5, "currentRevision": "web-7f8a6d", "updateRevision": "web-7f8a6d"}),
            3,
        );
        assert_eq!(
            statefulset_rollout_status(&s).message(),
            "partitioned roll out complete: 5 new pods have been updated..."
        );
    }

    #[test]
    fn statefulset_without_rolling_update_block_compares_revisions() {
        let mid = web(
            json!({"type": "RollingUpdate"}),
            json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5, "currentReplicas": 3,
                   "updatedReplicas": 2, "currentRevision": "web-5d4b9c", "updateRevision": "web-7f8a6d"}),
            3,
        );
        assert_eq!(
            statefulset_rollout_status(&mid),
            RolloutStatus::Waiting(
                "waiting for statefulset rolling update to complete 2 pods at revision web-7f8a6d..."
                    .into()
            )
        );
        let done = web(
            json!({"type": "RollingUpdate"}),
            json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5, "currentReplicas": 5,
                   "updatedReplicas": 5, "currentRevision": "web-7f8a6d", "updateRevision": "web-7f8a6d"}),
            3,
        );
        assert_eq!(
            statefulset_rollout_status(&done),
            RolloutStatus::Done(
                "statefulset rolling update complete 5 pods at revision web-7f8a6d...".into()
            )
        );
    }

    #[test]
    fn statefulset_absent_strategy_reads_as_rolling_update() {
        let s = web(
            Value::Null,
            json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5, "currentReplicas": 5,
                   "updatedReplicas": 5, "currentRevision": "web-1", "updateRevision": "web-1"}),
            3,
        );
        assert!(statefulset_rollout_status(&s).is_done());
    }

    // ---- restart ----------------------------------------------------------------------------

    #[test]
    fn restart_patch_sets_restarted_at_to_the_second_in_utc() {
        let now: Timestamp = "2024-05-01T12:30:45.987654321Z".parse().unwrap();
        assert_eq!(restarted_at(now), "2024-05-01T12:30:45Z");
        assert_eq!(
            restart_patch(now),
            json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2024-05-01T12:30:45Z"
            }}}}})
        );
        // A timestamp given with an offset is still written in UTC.
        let offset: Timestamp = "2024-05-01T14:30:45+02:00".parse().unwrap();
        assert_eq!(restarted_at(offset), "2024-05-01T12:30:45Z");
    }

    #[test]
    fn restart_refuses_paused_deployment_with_kubectls_message() {
        let paused = app(json!({"paused": true}), done_status(), 7);
        let err = check_restartable(&paused).unwrap_err();
        assert_eq!(
            err.to_string(),
            "deployments.apps \"app\" can't restart paused deployment (run rollout resume first)"
        );
        assert_eq!(check_restartable(&app(json!({}), done_status(), 7)), Ok(()));
        assert_eq!(
            check_restartable(&app(json!({"paused": false}), done_status(), 7)),
            Ok(())
        );
    }

    // ---- rollback ---------------------------------------------------------------------------

    fn rs(
        name: &str,
        revision: Option<&str>,
        image_tag: &str,
        created: &str,
        owner_uid: &str,
    ) -> ReplicaSet {
        let mut annotations = json!({
            "deployment.kubernetes.io/desired-replicas": "4",
            "deployment.kubernetes.io/max-replicas": "5",
            "kubernetes.io/change-cause": format!("deploy {image_tag}")
        });
        if let Some(rev) = revision {
            annotations["deployment.kubernetes.io/revision"] = json!(rev);
        }
        let hash = name.rsplit('-').next().unwrap();
        let mut tmpl = app_template(image_tag);
        tmpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": name, "namespace": "shop", "creationTimestamp": created,
                "annotations": annotations,
                "labels": {"app": "app", "pod-template-hash": hash},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app",
                                     "uid": owner_uid, "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": {"replicas": 0,
                     "selector": {"matchLabels": {"app": "app", "pod-template-hash": hash}},
                     "template": tmpl}
        }))
        .expect("a ReplicaSet")
    }

    /// Revisions 1..3 of `app`, the third current, listed out of order, plus strangers.
    fn history() -> Vec<ReplicaSet> {
        let mut foreign_controller = rs(
            "app-9z9z9z",
            Some("9"),
            "v9",
            "2024-04-01T00:00:00Z",
            "other-uid",
        );
        foreign_controller.metadata.name = Some("app-9z9z9z".into());
        let mut not_controller = rs("app-8y8y8y", Some("8"), "v8", "2024-04-01T00:00:00Z", UID);
        if let Some(refs) = not_controller.metadata.owner_references.as_mut() {
            refs[0].controller = Some(false);
        }
        vec![
            rs("app-7c9d5f", Some("3"), "v3", "2024-04-03T00:00:00Z", UID),
            rs("app-5b8c4d", Some("1"), "v1", "2024-04-01T00:00:00Z", UID),
            foreign_controller,
            rs("app-6f7a2b", Some("2"), "v2", "2024-04-02T00:00:00Z", UID),
            not_controller,
        ]
    }

    #[test]
    fn rollback_goes_to_previous_revision_with_kubectls_json_patch() {
        let d = app(json!({}), done_status(), 7);
        let plan = rollback_plan(&d, &history(), None).unwrap();
        assert_eq!(plan.from_revision, 3);
        assert_eq!(plan.to_revision, 2);
        assert_eq!(plan.replica_set, "app-6f7a2b");
        let RollbackChange::Patch { patch_type, patch } = plan.change else {
            panic!("expected a patch, got {:?}", plan.change);
        };
        assert_eq!(patch_type, PatchType::Json);
        assert_eq!(patch_type.content_type(), "application/json-patch+json");
        let ops = patch.as_array().unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0]["op"], "replace");
        assert_eq!(ops[0]["path"], "/spec/template");
        // The hash label is gone, the rest of the template is the ReplicaSet's.
        assert_eq!(ops[0]["value"]["metadata"]["labels"], json!({"app": "app"}));
        assert_eq!(
            ops[0]["value"]["spec"]["containers"][0]["image"],
            "registry.example/app:v2"
        );
        assert_eq!(ops[1]["op"], "replace");
        assert_eq!(ops[1]["path"], "/metadata/annotations");
        // Revision and last-applied stay the Deployment's; change-cause comes from the
        // ReplicaSet; desired/max replicas are not copied; "team" is dropped as by kubectl.
        assert_eq!(
            ops[1]["value"],
            json!({
                "deployment.kubernetes.io/revision": "3",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}",
                "kubernetes.io/change-cause": "deploy v2"
            })
        );
    }

    #[test]
    fn rollback_to_a_named_revision() {
        let d = app(json!({}), done_status(), 7);
        let plan = rollback_plan(&d, &history(), Some(1)).unwrap();
        assert_eq!((plan.from_revision, plan.to_revision), (3, 1));
        assert_eq!(plan.replica_set, "app-5b8c4d");
        let RollbackChange::Patch { patch, .. } = plan.change else {
            panic!("expected a patch");
        };
        assert_eq!(
            patch[0]["value"]["spec"]["containers"][0]["image"],
            "registry.example/app:v1"
        );
        // Some(0) is kubectl's --to-revision=0: the previous revision.
        assert_eq!(
            rollback_plan(&d, &history(), Some(0)).unwrap().to_revision,
            2
        );
    }

    #[test]
    fn rollback_to_unknown_or_foreign_revision_is_not_found() {
        let d = app(json!({}), done_status(), 7);
        for wanted in [7, 9, 8, -1] {
            let err = rollback_plan(&d, &history(), Some(wanted)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("unable to find specified revision {wanted} in history")
            );
        }
    }

    #[test]
    fn rollback_to_current_revision_is_skipped() {
        let d = app(json!({}), done_status(), 7);
        let plan = rollback_plan(&d, &history(), Some(3)).unwrap();
        assert_eq!(
            plan.change,
            RollbackChange::Skip {
                message: "skipped rollback (current template already matches revision 3)".into()
            }
        );
    }

    #[test]
    fn rollback_of_paused_deployment_is_refused() {
        let d = app(json!({"paused": true}), done_status(), 7);
        let err = rollback_plan(&d, &history(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/app' and try again"
        );
        // kubectl looks the revision up first, so a missing revision wins over paused.
        assert_eq!(
            rollback_plan(&d, &history(), Some(42)).unwrap_err(),
            Error::RevisionNotFound { revision: 42 }
        );
    }

    #[test]
    fn rollback_without_history_fails() {
        let d = app(json!({}), done_status(), 7);
        let only = vec![rs(
            "app-7c9d5f",
            Some("3"),
            "v3",
            "2024-04-03T00:00:00Z",
            UID,
        )];
        let err = rollback_plan(&d, &only, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no rollout history found for deployment \"app\""
        );
        assert_eq!(
            rollback_plan(&d, &[], None).unwrap_err(),
            Error::NoRolloutHistory { name: "app".into() }
        );
    }

    #[test]
    fn rollback_reads_missing_revision_as_zero_and_skips_unreadable_ones() {
        let d = app(json!({}), done_status(), 7);
        let set = vec![
            rs("app-7c9d5f", Some("3"), "v3", "2024-04-03T00:00:00Z", UID),
            rs("app-6f7a2b", Some("two"), "v2", "2024-04-02T00:00:00Z", UID),
            rs("app-5b8c4d", None, "v1", "2024-04-01T00:00:00Z", UID),
        ];
        let plan = rollback_plan(&d, &set, None).unwrap();
        assert_eq!(
            (plan.to_revision, plan.replica_set.as_str()),
            (0, "app-5b8c4d")
        );
    }

    #[test]
    fn rollback_comparison_ignores_hash_label_and_empty_fields() {
        // The Deployment's template written without the empty maps the server echoes;
        // the current ReplicaSet still matches it.
        let mut d = app(json!({}), done_status(), 7);
        let mut bare = app_template("v3");
        bare["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("resources");
        bare["spec"]
            .as_object_mut()
            .unwrap()
            .remove("securityContext");
        d.spec.as_mut().unwrap().template = template(bare);
        let plan = rollback_plan(&d, &history(), Some(3)).unwrap();
        assert!(matches!(plan.change, RollbackChange::Skip { .. }));
    }

    #[test]
    fn rollback_previous_is_second_highest_not_second_listed() {
        // Revision 5 re-used the v1 template (a rollback earlier on), so history is 2, 4, 5.
        let d = app(json!({}), done_status(), 7);
        let set = vec![
            rs("app-aaaaaa", Some("4"), "v4", "2024-04-04T00:00:00Z", UID),
            rs("app-bbbbbb", Some("5"), "v3", "2024-04-01T00:00:00Z", UID),
            rs("app-cccccc", Some("2"), "v2", "2024-04-02T00:00:00Z", UID),
        ];
        let plan = rollback_plan(&d, &set, None).unwrap();
        assert_eq!((plan.from_revision, plan.to_revision), (5, 4));
        assert_eq!(plan.replica_set, "app-aaaaaa");
    }

    // ---- env --------------------------------------------------------------------------------

    fn target() -> WorkloadRef {
        WorkloadRef {
            kind: WorkloadKind::Deployment,
            name: "app".into(),
        }
    }

    fn pod() -> PodTemplateSpec {
        template(json!({
            "metadata": {"labels": {"app": "app"}},
            "spec": {
                "initContainers": [{"name": "migrate", "image": "app:v3",
                                    "env": [{"name": "LOG_LEVEL", "value": "info"}]}],
                "containers": [
                    {"name": "app", "image": "app:v3", "env": [
                        {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "FEATURE_X", "value": "on"},
                        {"name": "EMPTY"}
                    ]},
                    {"name": "sidecar-proxy", "image": "envoy:1.30"}
                ]
            }
        }))
    }

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn prior_of<'a>(change: &'a EnvChange, container: &str, name: &str) -> &'a EnvPrior {
        change
            .priors
            .iter()
            .find(|p| p.container == container && p.name == name)
            .expect("a prior")
    }

    /// What the API server's strategic merge does with the env patches built here: containers
    /// and env entries merged by name, `$patch: delete` removing, nulls clearing fields.
    fn apply(t: &PodTemplateSpec, patch: &Value) -> PodTemplateSpec {
        fn merge(target: &mut Value, patch: &Value) {
            match (target.as_object_mut(), patch.as_object()) {
                (Some(t), Some(p)) => {
                    for (k, v) in p {
                        if v.is_null() {
                            t.remove(k);
                        } else {
                            merge(t.entry(k.clone()).or_insert(Value::Null), v);
                        }
                    }
                }
                _ => *target = patch.clone(),
            }
        }
        let mut value = to_json(t);
        for list in ["containers", "initContainers"] {
            let Some(entries) = patch.pointer(&format!("/spec/template/spec/{list}")) else {
                continue;
            };
            for entry in entries.as_array().unwrap() {
                let containers = value["spec"][list].as_array_mut().unwrap();
                let c = containers
                    .iter_mut()
                    .find(|c| c["name"] == entry["name"])
                    .expect("patched container exists");
                if c.get("env").is_none() {
                    c["env"] = json!([]);
                }
                let env = c["env"].as_array_mut().unwrap();
                for op in entry["env"].as_array().unwrap() {
                    if op["$patch"] == "delete" {
                        env.retain(|e| e["name"] != op["name"]);
                    } else if let Some(e) = env.iter_mut().find(|e| e["name"] == op["name"]) {
                        merge(e, op);
                    } else {
                        let mut fresh = json!({});
                        merge(&mut fresh, op);
                        env.push(fresh);
                    }
                }
            }
        }
        template(value)
    }

    fn env_of(t: &PodTemplateSpec, container: &str) -> Vec<EnvVar> {
        pod_containers(t)
            .find(|(_, c)| c.name == container)
            .and_then(|(_, c)| c.env.clone())
            .unwrap_or_default()
    }

    #[test]
    fn env_set_new_variable_appends_and_records_absent() {
        let t = pod();
        let change = env_change(
            &target(),
            &t,
            Some("app"),
            &set(&[("REGION", "eu-west-1")]),
            &[],
        )
        .unwrap();
        assert!(change.changed);
        assert_eq!(
            change.patch,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "REGION", "value": "eu-west-1"}]}
            ]}}}})
        );
        assert_eq!(change.priors.len(), 1);
        assert_eq!(
            change.priors[0],
            EnvPrior {
                container: "app".into(),
                init_container: false,
                name: "REGION".into(),
                prior: Prior::Absent,
                changed: true
            }
        );
        let after = apply(&t, &change.patch);
        let env = env_of(&after, "app");
        assert_eq!(env.last().unwrap().name, "REGION");
        assert_eq!(env.len(), 5);
    }

    #[test]
    fn env_set_existing_variable_replaces_in_place_and_records_old_value() {
        let t = pod();
        let change = env_change(
            &target(),
            &t,
            Some("app"),
            &set(&[("LOG_LEVEL", "debug")]),
            &[],
        )
        .unwrap();
        assert_eq!(
            prior_of(&change, "app", "LOG_LEVEL").prior,
            Prior::Value("info".into())
        );
        let after = apply(&t, &change.patch);
        let env = env_of(&after, "app");
        assert_eq!(env[0].name, "LOG_LEVEL");
        assert_eq!(env[0].value.as_deref(), Some("debug"));
    }

    #[test]
    fn env_same_value_is_a_no_op() {
        let t = pod();
        let change = env_change(
            &target(),
            &t,
            Some("app"),
            &set(&[("LOG_LEVEL", "info"), ("EMPTY", "")]),
            &names(&["NOT_THERE"]),
        )
        .unwrap();
        assert!(!change.changed);
        assert_eq!(change.patch, json!({}));
        assert!(change.priors.iter().all(|p| !p.changed));
        assert_eq!(
            prior_of(&change, "app", "EMPTY").prior,
            Prior::Value(String::new())
        );
        assert_eq!(prior_of(&change, "app", "NOT_THERE").prior, Prior::Absent);
    }

    #[test]
    fn env_plain_value_over_value_from_clears_the_source() {
        let t = pod();
        let change = env_change(
            &target(),
            &t,
            Some("app"),
            &set(&[("DB_PASSWORD", "hunter2")]),
            &[],
        )
        .unwrap();
        let prior = &prior_of(&change, "app", "DB_PASSWORD").prior;
        assert!(matches!(prior, Prior::ValueFrom(_)));
        assert_eq!(prior.describe(), "secret db, key password");
        assert_eq!(
            change.patch["spec"]["template"]["spec"]["containers"][0]["env"][0],
            json!({"name": "DB_PASSWORD", "value": "hunter2", "valueFrom": null})
        );
        let after = apply(&t, &change.patch);
        let var = env_of(&after, "app")
            .into_iter()
            .find(|e| e.name == "DB_PASSWORD")
            .unwrap();
        assert_eq!(var.value.as_deref(), Some("hunter2"));
        assert!(var.value_from.is_none());
    }

    #[test]
    fn env_unset_deletes_existing_and_ignores_absent() {
        let t = pod();
        let change = env_change(
            &target(),
            &t,
            Some("app"),
            &[],
            &names(&["FEATURE_X", "GHOST"]),
        )
        .unwrap();
        assert_eq!(
            change.patch["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"$patch": "delete", "name": "FEATURE_X"}])
        );
        assert_eq!(
            prior_of(&change, "app", "FEATURE_X").prior,
            Prior::Value("on".into())
        );
        assert!(!prior_of(&change, "app", "GHOST").changed);
        let after = apply(&t, &change.patch);
        assert!(env_of(&after, "app").iter().all(|e| e.name != "FEATURE_X"));
    }

    #[test]
    fn env_without_container_changes_every_container_and_init_container() {
        let t = pod();
        let change = env_change(&target(), &t, None, &set(&[("LOG_LEVEL", "debug")]), &[]).unwrap();
        assert_eq!(
            change.patch,
            json!({"spec": {"template": {"spec": {
                "containers": [
                    {"name": "app", "env": [{"name": "LOG_LEVEL", "value": "debug"}]},
                    {"name": "sidecar-proxy", "env": [{"name": "LOG_LEVEL", "value": "debug"}]}
                ],
                "initContainers": [
                    {"name": "migrate", "env": [{"name": "LOG_LEVEL", "value": "debug"}]}
                ]
            }}}})
        );
        let order: Vec<(&str, bool)> = change
            .priors
            .iter()
            .map(|p| (p.container.as_str(), p.init_container))
            .collect();
        assert_eq!(
            order,
            [("app", false), ("sidecar-proxy", false), ("migrate", true)]
        );
        assert_eq!(
            prior_of(&change, "sidecar-proxy", "LOG_LEVEL").prior,
            Prior::Absent
        );
        // "*" is the same as no container.
        let star = env_change(
            &target(),
            &t,
            Some("*"),
            &set(&[("LOG_LEVEL", "debug")]),
            &[],
        )
        .unwrap();
        assert_eq!(star, change);
    }

    #[test]
    fn env_container_wildcards_are_anchored() {
        let t = pod();
        let side = env_change(&target(), &t, Some("sidecar-*"), &set(&[("A", "1")]), &[]).unwrap();
        let touched: Vec<&str> = side.priors.iter().map(|p| p.container.as_str()).collect();
        assert_eq!(touched, ["sidecar-proxy"]);
        let ends = env_change(&target(), &t, Some("*-proxy"), &set(&[("A", "1")]), &[]).unwrap();
        assert_eq!(ends.priors[0].container, "sidecar-proxy");
        assert!(env_change(&target(), &t, Some("proxy*"), &set(&[("A", "1")]), &[]).is_err());
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(wildcard_match("a*b*c", "abc"));
        assert!(!wildcard_match("a*b*c", "abcx"));
        assert!(wildcard_match("m*e", "migrate"));
        assert!(!wildcard_match("app", "app2"));
    }

    #[test]
    fn env_unknown_container_is_an_error_naming_it() {
        let err =
            env_change(&target(), &pod(), Some("worker"), &set(&[("A", "1")]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Deployment/app does not have any containers matching \"worker\""
        );
        let sts = WorkloadRef {
            kind: WorkloadKind::StatefulSet,
            name: "web".into(),
        };
        let err = env_change(&sts, &pod(), Some("worker"), &set(&[("A", "1")]), &[]).unwrap_err();
        assert_eq!(
            err,
            Error::NoMatchingContainers {
                kind: "StatefulSet".into(),
                name: "web".into(),
                selector: "worker".into()
            }
        );
    }

    #[test]
    fn env_rejects_what_kubectl_rejects() {
        let t = pod();
        assert_eq!(
            env_change(&target(), &t, None, &[], &[])
                .unwrap_err()
                .to_string(),
            "at least one environment variable must be provided"
        );
        let err = env_change(&target(), &t, None, &set(&[("A", "1")]), &names(&["A"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "can not both modify and remove the same environment variable in the same command"
        );
        let err = env_change(&target(), &t, None, &set(&[("1ST", "x")]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"1ST\" is not a valid key name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
        );
        let err = env_change(&target(), &t, None, &set(&[("..", "x")]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"..\" is not a valid key name: must not be '..'"
        );
        let err = env_change(&target(), &t, None, &set(&[("..x", "x")]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"..x\" is not a valid key name: must not start with '..'"
        );
        let err = env_change(&target(), &t, None, &set(&[("", "x")]), &[]).unwrap_err();
        assert!(matches!(err, Error::InvalidEnvName { .. }));
        // Names kubectl accepts.
        for ok in ["my.env-name", "MY_ENV.NAME", "_x", "-x", "MyEnvName1"] {
            assert!(env_name_problems(ok).is_empty(), "{ok}");
        }
    }

    #[test]
    fn env_first_of_repeated_names_wins() {
        let t = pod();
        let change = env_change(
            &target(),
            &t,
            Some("app"),
            &set(&[("REGION", "eu"), ("REGION", "us")]),
            &[],
        )
        .unwrap();
        assert_eq!(change.priors.len(), 1);
        assert_eq!(
            change.patch["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "REGION", "value": "eu"}])
        );
    }

    #[test]
    fn env_change_then_restore_round_trips_exactly() {
        let t = pod();
        let change = env_change(
            &target(),
            &t,
            None,
            &set(&[
                ("LOG_LEVEL", "debug"),
                ("DB_PASSWORD", "plain"),
                ("REGION", "eu"),
            ]),
            &names(&["FEATURE_X", "EMPTY"]),
        )
        .unwrap();
        let changed = apply(&t, &change.patch);
        assert_ne!(comparable(&changed), comparable(&t));

        let restore = env_restore(&changed, &change.priors);
        assert!(restore.changed);
        let restored = apply(&changed, &restore.patch);
        // Values and sources are back; re-added variables are appended, not re-positioned.
        for container in ["app", "sidecar-proxy", "migrate"] {
            let mut before = env_of(&t, container);
            let mut after = env_of(&restored, container);
            before.sort_by(|a, b| a.name.cmp(&b.name));
            after.sort_by(|a, b| a.name.cmp(&b.name));
            // The API server stores `value: ""` as no value (Go's omitempty); compare alike.
            let strip = |v: Vec<EnvVar>| -> Vec<Value> {
                v.iter()
                    .map(|e| {
                        let mut j = to_json(e);
                        if j["value"] == "" {
                            j["value"] = Value::Null;
                        }
                        prune(&mut j);
                        j
                    })
                    .collect()
            };
            assert_eq!(strip(after), strip(before), "{container}");
        }
        // The sidecar had no env; REGION and LOG_LEVEL are deleted again.
        assert!(env_of(&restored, "sidecar-proxy").is_empty());
        // The source comes back without a plain value.
        let ops = &restore.patch["spec"]["template"]["spec"]["containers"][0]["env"];
        let db = ops
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "DB_PASSWORD")
            .unwrap();
        assert_eq!(
            db,
            &json!({"name": "DB_PASSWORD", "value": null,
                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}})
        );
        // Restoring again is a no-op.
        assert!(!env_restore(&restored, &change.priors).changed);
    }

    #[test]
    fn env_restore_touches_only_changed_variables_first_record_wins_and_skips_gone_containers() {
        let t = pod();
        let records = vec![
            // Unchanged by the original change: left alone even though it differs now.
            EnvPrior {
                container: "app".into(),
                init_container: false,
                name: "LOG_LEVEL".into(),
                prior: Prior::Value("warn".into()),
                changed: false,
            },
            EnvPrior {
                container: "app".into(),
                init_container: false,
                name: "FEATURE_X".into(),
                prior: Prior::Value("off".into()),
                changed: true,
            },
            // A later change's record of the same variable: ignored.
            EnvPrior {
                container: "app".into(),
                init_container: false,
                name: "FEATURE_X".into(),
                prior: Prior::Value("on".into()),
                changed: true,
            },
            EnvPrior {
                container: "removed-sidecar".into(),
                init_container: false,
                name: "X".into(),
                prior: Prior::Absent,
                changed: true,
            },
            // Same name, but recorded for the init container list: not the app container.
            EnvPrior {
                container: "app".into(),
                init_container: true,
                name: "FEATURE_X".into(),
                prior: Prior::Absent,
                changed: true,
            },
        ];
        let restore = env_restore(&t, &records);
        assert_eq!(
            restore.patch,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "FEATURE_X", "value": "off"}]}
            ]}}}})
        );
        assert_eq!(restore.priors.len(), 1);
        assert_eq!(restore.priors[0].prior, Prior::Value("on".into()));
    }

    #[test]
    fn env_restore_of_a_different_source_kind_nulls_the_old_one() {
        let t = template(json!({"spec": {"containers": [{"name": "app", "env": [
            {"name": "TOKEN", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "token", "optional": true}}}
        ]}]}}));
        let record = EnvPrior {
            container: "app".into(),
            init_container: false,
            name: "TOKEN".into(),
            prior: Prior::ValueFrom(Box::new(
                serde_json::from_value(json!({"secretKeyRef": {"name": "api", "key": "token"}}))
                    .unwrap(),
            )),
            changed: true,
        };
        let restore = env_restore(&t, std::slice::from_ref(&record));
        assert_eq!(
            restore.patch["spec"]["template"]["spec"]["containers"][0]["env"][0],
            json!({"name": "TOKEN", "valueFrom": {
                "secretKeyRef": {"name": "api", "key": "token"}, "configMapKeyRef": null
            }})
        );
        let after = apply(&t, &restore.patch);
        let var = &env_of(&after, "app")[0];
        assert_eq!(var.value_from, record_source(&record));
    }

    fn record_source(p: &EnvPrior) -> Option<EnvVarSource> {
        match &p.prior {
            Prior::ValueFrom(src) => Some((**src).clone()),
            _ => None,
        }
    }

    #[test]
    fn prior_descriptions_follow_kubectl_list_wording() {
        let src = |v: Value| Prior::ValueFrom(Box::new(serde_json::from_value(v).unwrap()));
        assert_eq!(Prior::Absent.describe(), "absent");
        assert_eq!(Prior::Value("a b".into()).describe(), "\"a b\"");
        assert_eq!(
            src(json!({"configMapKeyRef": {"name": "cfg", "key": "k"}})).describe(),
            "configmap cfg, key k"
        );
        assert_eq!(
            src(json!({"fieldRef": {"fieldPath": "metadata.name"}})).describe(),
            "field path metadata.name"
        );
        assert_eq!(
            src(json!({"resourceFieldRef": {"containerName": "app", "resource": "limits.cpu"}}))
                .describe(),
            "resource field app/limits.cpu"
        );
        assert_eq!(
            src(json!({"resourceFieldRef": {"resource": "requests.memory"}})).describe(),
            "resource field requests.memory"
        );
        assert_eq!(
            src(json!({"fileKeyRef": {"volumeName": "env", "path": "app.env", "key": "K"}}))
                .describe(),
            "file env/app.env, key K"
        );
        assert_eq!(src(json!({})).describe(), "invalid valueFrom");
    }

    #[test]
    fn env_prior_records_serialize_as_envvar_shapes_and_have_a_schema() {
        let records = vec![
            EnvPrior {
                container: "app".into(),
                init_container: false,
                name: "A".into(),
                prior: Prior::Absent,
                changed: true,
            },
            EnvPrior {
                container: "migrate".into(),
                init_container: true,
                name: "B".into(),
                prior: Prior::Value(String::new()),
                changed: true,
            },
            EnvPrior {
                container: "app".into(),
                init_container: false,
                name: "C".into(),
                prior: Prior::ValueFrom(Box::new(
                    serde_json::from_value(json!({"secretKeyRef": {"name": "db", "key": "pw"}}))
                        .unwrap(),
                )),
                changed: false,
            },
        ];
        let wire = serde_json::to_value(&records).unwrap();
        assert_eq!(
            wire,
            json!([
                {"container": "app", "name": "A", "prior": {}, "changed": true},
                {"container": "migrate", "initContainer": true, "name": "B", "prior": {"value": ""}, "changed": true},
                {"container": "app", "name": "C", "prior": {"valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}, "changed": false}
            ])
        );
        let back: Vec<EnvPrior> = serde_json::from_value(wire).unwrap();
        assert_eq!(back, records);

        let schema = serde_json::to_value(schemars::schema_for!(EnvPrior)).unwrap();
        let text = schema.to_string();
        assert!(text.contains("valueFrom"), "{text}");
        assert!(text.contains("initContainer"), "{text}");
    }

    // ---- scale ------------------------------------------------------------------------------

    #[test]
    fn scale_target_absolute_relative_and_bounds() {
        assert_eq!(scale_target(3, Some(5), None), 5);
        assert_eq!(scale_target(3, Some(0), None), 0);
        assert_eq!(scale_target(3, None, Some(2)), 5);
        assert_eq!(scale_target(3, None, Some(-1)), 2);
        assert_eq!(scale_target(3, None, Some(-10)), 0);
        assert_eq!(scale_target(3, None, None), 3);
        assert_eq!(scale_target(i32::MAX - 1, None, Some(10)), i32::MAX);
        assert_eq!(scale_target(0, None, Some(i32::MIN)), 0);
        assert_eq!(scale_target(3, Some(-2), None), 0);
        // An absolute count wins over a delta.
        assert_eq!(scale_target(3, Some(1), Some(5)), 1);
    }
}

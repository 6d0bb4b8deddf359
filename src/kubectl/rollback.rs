//! `kubectl rollout undo` of a Deployment (kubectl's `rollback.go` and `pkg/util/deployment`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Map, Value};

use super::{
    Error, POD_TEMPLATE_HASH_LABEL, PatchType, REVISION_ANNOTATION, ROLLBACK_PRESERVED_ANNOTATIONS,
    is_paused, to_json,
};

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

pub(super) fn comparable(template: &PodTemplateSpec) -> Value {
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
pub(super) fn prune(value: &mut Value) -> bool {
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

//! `kubectl set env` on a pod template, and putting the variables back afterwards
//! (kubectl's `pkg/cmd/set/set_env.go` and `env/env_parse.go`).

use std::borrow::Cow;
use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, EnvVarSource, PodTemplateSpec};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Error, nest, to_json};
use crate::step::WorkloadRef;

/// kubectl's own validation message for a bad variable name (apimachinery `IsEnvVarName`,
/// including the doubled spaces its `RegexError` produces), so errors read the same.
const ENV_NAME_MESSAGE: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

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
pub(super) fn pod_containers(
    template: &PodTemplateSpec,
) -> impl Iterator<Item = (bool, &Container)> {
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
pub(super) fn env_name_problems(name: &str) -> Vec<String> {
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
pub(super) fn wildcard_match(pattern: &str, text: &str) -> bool {
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

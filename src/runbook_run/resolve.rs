//! Resolving a Runbook into the steps a run executes: parameter values (run overrides over
//! Runbook defaults) substituted into every `{{ params.NAME }}`. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::conditions::SpecProblem;
use crate::runbook::RunbookSpec;
use crate::step::Step;

/// Steps ready to execute.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The main steps, parameters substituted.
    pub steps: Vec<Step>,
    /// The finally steps, parameters substituted.
    pub finally: Vec<Step>,
    /// The lock the run must hold before its first step (`spec.concurrency`), key resolved.
    pub concurrency: Option<ResolvedLock>,
}

/// A Runbook's `spec.concurrency` for one run: the key with the run's parameters substituted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedLock {
    /// The resolved key.
    pub key: String,
    /// Queue or Skip.
    pub policy: crate::runbook::LockPolicy,
}

/// Longest resolved concurrency key, in bytes: it is kept in the run's status and on the Lease.
pub const MAX_LOCK_KEY: usize = 1024;

/// The Runbook's concurrency key with `values` substituted; a problem names
/// `spec.concurrency.key` when it resolves to nothing, too long, or keeps a reference.
fn resolve_lock(
    runbook_name: &str,
    runbook: &RunbookSpec,
    values: &BTreeMap<String, String>,
) -> Result<Option<ResolvedLock>, SpecProblem> {
    let Some(concurrency) = &runbook.concurrency else {
        return Ok(None);
    };
    let key = substitute_text(&concurrency.key, values);
    let field = format!("Runbook {runbook_name}: spec.concurrency.key");
    if key.trim().is_empty() {
        return Err(SpecProblem::new(
            field,
            "resolves to an empty key with this run's parameters; give the parameters it refers to a value",
        ));
    }
    if key.len() > MAX_LOCK_KEY {
        return Err(SpecProblem::new(
            field,
            format!(
                "resolves to {} bytes with this run's parameters; at most {MAX_LOCK_KEY} are allowed",
                key.len()
            ),
        ));
    }
    if key.contains("{{") {
        return Err(SpecProblem::new(
            field,
            format!(
                "{key:?} still holds a template after substituting parameters: only {{{{ params.NAME }}}} of declared parameters are substituted"
            ),
        ));
    }
    Ok(Some(ResolvedLock {
        key,
        policy: concurrency.policy.unwrap_or_default(),
    }))
}

/// Most bytes the resolved steps of a run may take (JSON): they are kept in the run's
/// status, which etcd bounds (1.5 MiB per object).
pub const MAX_RESOLVED_BYTES: usize = 512 * 1024;

/// Resolves `runbook` with the run's parameter `overrides`. Every problem names the field:
/// an override the Runbook does not declare, a parameter without default nor value, a value
/// longer than [`crate::runbook::MAX_PARAM_VALUE`], or a step that is invalid once its
/// templates are substituted (checked as the schema checks written values:
/// [`crate::step::validate_steps`] and [`crate::step::validate_resolved`]). A run with a
/// problem fails with reason InvalidSpec; nothing is retried.
pub fn resolve(
    runbook_name: &str,
    runbook: &RunbookSpec,
    overrides: &BTreeMap<String, String>,
) -> Result<Resolved, Vec<SpecProblem>> {
    let mut problems = Vec::new();
    for name in overrides.keys() {
        if !runbook.params.iter().any(|p| &p.name == name) {
            problems.push(SpecProblem::new(
                format!("spec.params.{name}"),
                format!("Runbook {runbook_name:?} declares no parameter {name:?}"),
            ));
        }
    }
    let max_params = crate::runbook::MAX_PARAMS as usize;
    if overrides.len() > max_params {
        problems.push(SpecProblem::new(
            "spec.params",
            format!(
                "sets {} parameters; at most {max_params} are allowed",
                overrides.len()
            ),
        ));
    }
    let max_value = crate::runbook::MAX_PARAM_VALUE as usize;
    let too_long = |field: String, value: &str| {
        (value.len() > max_value).then(|| {
            SpecProblem::new(
                field,
                format!(
                    "the value is {} bytes long; at most {max_value} are allowed",
                    value.len()
                ),
            )
        })
    };
    problems.extend(
        overrides
            .iter()
            .filter_map(|(name, value)| too_long(format!("spec.params.{name}"), value)),
    );
    problems.extend(runbook.params.iter().enumerate().filter_map(|(i, p)| {
        p.default.as_deref().and_then(|value| {
            too_long(
                format!("Runbook {runbook_name}: spec.params[{i}].default"),
                value,
            )
        })
    }));
    let mut values = BTreeMap::new();
    for param in &runbook.params {
        match overrides.get(&param.name).or(param.default.as_ref()) {
            Some(value) => {
                values.insert(param.name.clone(), value.clone());
            }
            None => problems.push(SpecProblem::new(
                format!("spec.params.{}", param.name),
                format!(
                    "Runbook {runbook_name:?} requires parameter {:?} (it has no default); set it in spec.params",
                    param.name
                ),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let substitute = |steps: &[Step], path: &str| -> Result<Vec<Step>, SpecProblem> {
        steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let mut value = serde_json::to_value(step)
                    .map_err(|e| SpecProblem::new(format!("{path}[{i}]"), e.to_string()))?;
                substitute_value(&mut value, &values);
                serde_json::from_value(value).map_err(|e| {
                    SpecProblem::new(
                        format!("{path}[{i}]"),
                        format!("after substituting parameters the step is invalid: {e}"),
                    )
                })
            })
            .collect()
    };
    let steps = substitute(&runbook.steps, "spec.steps").map_err(|p| vec![p])?;
    let finally = substitute(&runbook.finally, "spec.finally").map_err(|p| vec![p])?;
    let concurrency = resolve_lock(runbook_name, runbook, &values).map_err(|p| vec![p])?;
    let mut problems =
        crate::step::validate_step_lists(&[("spec.steps", &steps), ("spec.finally", &finally)]);
    for (path, list) in [("spec.steps", &steps), ("spec.finally", &finally)] {
        for (i, step) in list.iter().enumerate() {
            let at = format!("{path}[{i}]");
            problems.extend(
                crate::step::validate_resolved(step, &at)
                    .into_iter()
                    .map(|p| {
                        SpecProblem::new(p.field, format!("step {:?}: {}", step.name, p.message))
                    }),
            );
        }
    }
    let size = serde_json::to_vec(&(&steps, &finally)).map_or(0, |json| json.len());
    if size > MAX_RESOLVED_BYTES {
        problems.push(SpecProblem::new(
            "spec.params",
            format!(
                "the steps with parameters substituted take {size} bytes; at most {MAX_RESOLVED_BYTES} fit in the run's status: use shorter values or fewer references"
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Resolved {
        steps,
        finally,
        concurrency,
    })
}

/// Replaces `{{ params.NAME }}` (spaces optional) in every string of `value`.
fn substitute_value(value: &mut Value, params: &BTreeMap<String, String>) {
    match value {
        Value::String(text) => *text = substitute_text(text, params),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute_value(v, params)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute_value(v, params)),
        _ => {}
    }
}

/// Replaces the references in one string; unknown references are left as written.
pub fn substitute_text(text: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = after[..close].trim();
        match inner
            .strip_prefix("params.")
            .and_then(|n| params.get(n.trim()))
        {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> RunbookSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn run_values_override_defaults_everywhere() {
        let rb = spec(json!({
            "params": [{"name": "host", "default": "app"}, {"name": "replicas", "default": "2"}],
            "steps": [{"name": "get", "http": {"url": "http://{{ params.host }}:8080/health",
                "headers": [{"name": "X-Host", "value": "{{params.host}}"}]}}],
            "finally": [{"name": "note", "notify": {"url": "http://hook", "message": "done on {{ params.host }}"}}]
        }));
        let overrides = BTreeMap::from([("host".to_owned(), "app.shop.svc".to_owned())]);
        let r = resolve("rb", &rb, &overrides).unwrap();
        let http = r.steps[0].http.as_ref().unwrap();
        assert_eq!(http.url, "http://app.shop.svc:8080/health");
        assert_eq!(http.headers[0].value.as_deref(), Some("app.shop.svc"));
        assert_eq!(
            r.finally[0].notify.as_ref().unwrap().message,
            "done on app.shop.svc"
        );
    }

    #[test]
    fn unknown_and_missing_parameters_are_named() {
        let rb = spec(json!({
            "params": [{"name": "token"}],
            "steps": [{"name": "nap", "sleep": {"duration": "1s"}}]
        }));
        let overrides = BTreeMap::from([("tokn".to_owned(), "x".to_owned())]);
        let problems = resolve("rotate", &rb, &overrides).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["spec.params.tokn", "spec.params.token"]);
        assert!(problems[1].message.contains("no default"));
    }

    #[test]
    fn a_value_that_makes_a_step_invalid_fails_naming_step_and_field() {
        let rb = spec(json!({
            "params": [{"name": "cm", "default": "settings"}, {"name": "url", "default": "http://app/x"}],
            "steps": [
                {"name": "edit", "patch": {"target": {"apiVersion": "v1", "kind": "ConfigMap", "name": "{{ params.cm }}"}, "type": "merge", "patch": {}}},
                {"name": "call", "http": {"url": "{{ params.url }}"}}
            ]
        }));
        assert!(resolve("rb", &rb, &BTreeMap::new()).is_ok());
        let overrides = BTreeMap::from([
            ("cm".to_owned(), "x/status".to_owned()),
            ("url".to_owned(), format!("http://app/{}", "a".repeat(3000))),
        ]);
        let problems = resolve("rb", &rb, &overrides).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.steps[0].patch.target.name", "spec.steps[1].http.url"]
        );
        assert!(
            problems[0].message.starts_with("step \"edit\": "),
            "{}",
            problems[0].message
        );
        assert!(
            problems[1].message.contains("2048"),
            "{}",
            problems[1].message
        );
    }

    #[test]
    fn parameter_values_and_counts_are_bounded() {
        let rb = spec(json!({
            "params": [{"name": "p", "default": "x".repeat(5000)}],
            "steps": [{"name": "nap", "sleep": {"duration": "1s"}}]
        }));
        let problems = resolve("rb", &rb, &BTreeMap::new()).unwrap_err();
        assert!(
            problems[0].field.ends_with("spec.params[0].default"),
            "{problems:?}"
        );
        let huge = BTreeMap::from([("p".to_owned(), "y".repeat(1 << 20))]);
        let problems = resolve("rb", &rb, &huge).unwrap_err();
        assert_eq!(problems[0].field, "spec.params.p");
        assert!(
            problems[0].message.contains("4096"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn the_concurrency_key_is_resolved_with_the_run_parameters() {
        let rb = spec(json!({
            "params": [{"name": "deployment", "default": "api"}],
            "concurrency": {"key": "deployment/{{ params.deployment }}", "policy": "Skip"},
            "steps": [{"name": "nap", "sleep": {"duration": "1s"}}]
        }));
        let r = resolve("rb", &rb, &BTreeMap::new()).unwrap();
        assert_eq!(
            r.concurrency,
            Some(ResolvedLock {
                key: "deployment/api".into(),
                policy: crate::runbook::LockPolicy::Skip
            })
        );
        let overrides = BTreeMap::from([("deployment".to_owned(), "worker".to_owned())]);
        let r = resolve("rb", &rb, &overrides).unwrap();
        assert_eq!(r.concurrency.unwrap().key, "deployment/worker");
        let empty = BTreeMap::from([("deployment".to_owned(), " ".to_owned())]);
        let key = spec(json!({
            "params": [{"name": "deployment", "default": "api"}],
            "concurrency": {"key": "{{ params.deployment }}"},
            "steps": [{"name": "nap", "sleep": {"duration": "1s"}}]
        }));
        let problems = resolve("rb", &key, &empty).unwrap_err();
        assert_eq!(problems[0].field, "Runbook rb: spec.concurrency.key");
        let unknown = spec(json!({
            "concurrency": {"key": "{{ alert.labels.x }}"},
            "steps": [{"name": "nap", "sleep": {"duration": "1s"}}]
        }));
        let problems = resolve("rb", &unknown, &BTreeMap::new()).unwrap_err();
        assert!(
            problems[0].message.contains("still holds a template"),
            "{problems:?}"
        );
    }

    #[test]
    fn text_substitution_leaves_other_braces_alone() {
        let params = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        assert_eq!(
            substitute_text("{{ params.a }}-{{ other }}-{{", &params),
            "1-{{ other }}-{{"
        );
    }
}

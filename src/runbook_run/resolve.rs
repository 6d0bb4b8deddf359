//! Resolving a Runbook into the steps a run executes: parameter values (run overrides over
//! Runbook defaults) substituted into every `{{ params.NAME }}`. Pure.

use std::collections::BTreeMap;

use crate::conditions::SpecProblem;
use crate::runbook::RunbookSpec;
use crate::step::Step;
use crate::template::Reference;

use super::types::ResolvedParam;

/// Steps ready to execute.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The main steps, parameters substituted.
    pub steps: Vec<Step>,
    /// The finally steps, parameters substituted.
    pub finally: Vec<Step>,
    /// The lock the run must hold before its first step (`spec.concurrency`), key resolved.
    pub concurrency: Option<ResolvedLock>,
    /// The parameter values, checked against their types.
    pub params: Vec<ResolvedParam>,
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
        p.default.as_ref().and_then(|value| {
            too_long(
                format!("Runbook {runbook_name}: spec.params[{i}].default"),
                &value.as_text(),
            )
        })
    }));
    let mut values = BTreeMap::new();
    let mut params = Vec::new();
    for param in &runbook.params {
        let given = overrides.get(&param.name).cloned().or_else(|| {
            param
                .default
                .as_ref()
                .map(crate::params::ParamValue::as_text)
        });
        match given {
            Some(value) => match crate::params::typed(param, &value) {
                Ok(typed) => {
                    params.push(ResolvedParam {
                        name: param.name.clone(),
                        type_: param.type_.unwrap_or_default(),
                        value: typed.text.clone(),
                    });
                    values.insert(param.name.clone(), typed.text);
                }
                Err(message) => problems.push(SpecProblem::new(
                    format!("spec.params.{}", param.name),
                    message,
                )),
            },
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
                crate::template::for_each_text(&mut value, &mut |_, text| {
                    *text = substitute_text(text, &values);
                });
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
            // Fields filled from earlier steps' outputs are checked when the step acts.
            problems.extend(
                crate::step::validate_resolved(step, &at)
                    .into_iter()
                    .filter(|p| !waits_for_outputs(step, &p.field, &at))
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
        params,
    })
}

/// Whether the problem at `field` of `step` (at `at`) is about a value that an earlier step's
/// output fills in later: such a field is checked once substituted, when the step acts.
fn waits_for_outputs(step: &Step, field: &str, at: &str) -> bool {
    let Ok(value) = serde_json::to_value(step) else {
        return false;
    };
    let Some(relative) = field.strip_prefix(at).map(|f| f.trim_start_matches('.')) else {
        return false;
    };
    let mut found = false;
    let mut value = value;
    crate::template::for_each_text(&mut value, &mut |path, text| {
        if relative.starts_with(path)
            && crate::template::references(text)
                .iter()
                .any(|r| r.step().is_some())
        {
            found = true;
        }
    });
    found
}

/// Replaces the `{{ params.NAME }}` references in one string; others are left as written.
pub fn substitute_text(text: &str, params: &BTreeMap<String, String>) -> String {
    crate::template::substitute(text, |reference| match reference {
        Reference::Param(name) => params.get(name).cloned(),
        _ => None,
    })
}

#[cfg(test)]
mod tests;

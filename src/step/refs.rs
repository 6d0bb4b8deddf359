//! References between steps: `{{ steps.STEP.outputs.KEY }}` and `{{ steps.STEP.phase }}` in a
//! step's fields. Checked when a Runbook is validated and when a run starts: a step may read
//! only steps that come before it (a `finally` step: any main step and the finally steps
//! before it), and, for actions whose outputs are fixed, only keys they record.

use std::collections::BTreeMap;

use super::Step;
use crate::conditions::SpecProblem;
use crate::template::Reference;

/// The output keys an action records, when they are fixed; `None` for actions whose outputs
/// depend on what ran (a Job's termination message, an http step's captures, a setEnv's prior
/// values).
pub fn known_outputs(step: &Step) -> Option<Vec<&str>> {
    let fixed: &[&str] = match step.action_name()? {
        "scale" => &["previousReplicas", "replicas"],
        "restart" => &["restartedAt"],
        "rollback" => &["fromRevision", "toRevision", "replicaSet"],
        "deletePods" => &["pods"],
        "rotateSecret" => &["rotated"],
        "approval" => &["approvedBy"],
        "backup" => &["backupJob", "backupRequest"],
        "restore" => &["backupJob", "backupScheduledTime", "restoreJob", "duration"],
        "query" | "waitFor" => &[
            "result",
            "measurements",
            "successful",
            "failed",
            "inconclusive",
            "errors",
            "consecutiveErrors",
        ],
        _ => return None,
    };
    Some(fixed.to_vec())
}

/// Problems with the references of the step lists of one object. Lists whose path ends in
/// `finally` may read every list before them; any other list stands alone (a release's
/// pre- and post-promotion steps run as separate runs).
pub fn problems(lists: &[(&str, &[Step])]) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    let mut before: BTreeMap<&str, &Step> = BTreeMap::new();
    let mut everywhere: BTreeMap<&str, String> = BTreeMap::new();
    for (path, steps) in lists {
        for (i, step) in steps.iter().enumerate() {
            everywhere.insert(&step.name, format!("{path}[{i}]"));
        }
    }
    for (path, steps) in lists {
        if !path.ends_with("finally") {
            before.clear();
        }
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let Ok(mut value) = serde_json::to_value(step) else {
                continue;
            };
            crate::template::for_each_text(&mut value, &mut |field, text| {
                for reference in crate::template::references(text) {
                    if let Some(message) = check(reference, step, &before, &everywhere) {
                        problems.push(SpecProblem::new(format!("{at}.{field}"), message));
                    }
                }
            });
            if let Some(when) = &step.when {
                problems
                    .extend(when_problem(when).map(|m| SpecProblem::new(format!("{at}.when"), m)));
            }
            before.insert(&step.name, step);
        }
    }
    problems
}

/// The variables a `when` may read.
pub const WHEN_VARIABLES: [&str; 3] = ["params", "run", "steps"];

/// What is wrong with a `when`, if anything: it must parse and read only
/// [`WHEN_VARIABLES`].
fn when_problem(when: &str) -> Option<String> {
    if when.contains("{{") {
        return Some(
            "when is a CEL expression, not a template: read params.NAME and steps.STEP.outputs.KEY directly, without {{ }}".into(),
        );
    }
    match crate::expr::Expression::compile(when) {
        Err(err) => Some(err.to_string()),
        Ok(expression) => {
            let unknown: Vec<String> = expression
                .variables()
                .into_iter()
                .filter(|v| !WHEN_VARIABLES.contains(&v.as_str()))
                .collect();
            (!unknown.is_empty()).then(|| {
                format!(
                    "reads {unknown:?}; a when reads only params, steps and run (e.g. steps.verify.phase == 'Failed', params.replicas > 3, run.failed)"
                )
            })
        }
    }
}

/// What is wrong with one reference made by `step`, if anything.
fn check(
    reference: Reference<'_>,
    step: &Step,
    before: &BTreeMap<&str, &Step>,
    everywhere: &BTreeMap<&str, String>,
) -> Option<String> {
    let name = match reference {
        Reference::Param(_) => return None,
        // Other templates belong to the field (a notify body's `{{ message }}`); only a
        // malformed reference to params or steps is a mistake.
        Reference::Other(inner) if !(inner.starts_with("params") || inner.starts_with("steps")) => {
            return None;
        }
        Reference::Other(inner) => {
            return Some(format!(
                "{{{{ {inner} }}}} is not a reference this field understands: write {{{{ params.NAME }}}}, {{{{ steps.STEP.outputs.KEY }}}} or {{{{ steps.STEP.phase }}}}"
            ));
        }
        Reference::Output { step, .. } | Reference::Phase(step) => step,
    };
    if name == step.name {
        return Some(format!(
            "step {name:?} refers to its own outputs; a step reads only the steps before it"
        ));
    }
    let Some(source) = before.get(name) else {
        return Some(match everywhere.get(name) {
            Some(at) => format!(
                "refers to step {name:?} ({at}), which does not run before step {:?}; a step reads only the steps before it (a finally step: every main step and the finally steps before it)",
                step.name
            ),
            None => format!("refers to step {name:?}, but no step has that name"),
        });
    };
    if let Reference::Output { key, .. } = reference
        && let Some(keys) = known_outputs(source)
        && !keys.contains(&key)
    {
        return Some(format!(
            "step {name:?} ({}) records no output {key:?}; it records {}",
            source.action_name().unwrap_or("unknown"),
            keys.join(", ")
        ));
    }
    None
}

#[cfg(test)]
mod tests;

//! What a step reads from the run before it acts: its `when` (CEL over `params`, `steps` and
//! `run`) when it comes up, and its `{{ steps.STEP.outputs.KEY }}` / `{{ steps.STEP.phase }}`
//! references each time it acts. Pure: the journal is the only input, so a restarted operator
//! decides the same.

use serde_json::{Map, Value, json};

use super::super::types::{RunMode, RunbookRunStatus, StepPhase};
use crate::params::ParamType;
use crate::step::Step;
use crate::template::Reference;

/// What the run is, for `run` in a `when`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunView<'a> {
    /// The run's name.
    pub name: &'a str,
    /// The run's namespace.
    pub namespace: &'a str,
    /// Run or Plan.
    pub mode: RunMode,
}

impl RunView<'_> {
    fn plan(&self) -> bool {
        self.mode == RunMode::Plan
    }
}

/// Whether a step that comes up runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// Start it; `condition` is its `when` and value, for the journal.
    Run {
        /// `<when> = true`, or in Plan mode `<when> = unknown (...)`.
        condition: Option<String>,
    },
    /// Its `when` is false: Skipped with reason ConditionFalse.
    Skip {
        /// `<when> = false`.
        condition: String,
    },
    /// Its `when` could not be evaluated: Failed with reason InvalidSpec.
    Invalid {
        /// What went wrong.
        message: String,
    },
}

/// The entries a step at journal `index` may read: the steps before it (for a finally step,
/// every main step and the finally steps before it: the journal holds them in that order).
fn earlier(status: &RunbookRunStatus, index: usize) -> &[super::super::types::StepStatus] {
    &status.steps[..index.min(status.steps.len())]
}

/// Bookkeeping the journal keeps in `outputs` that is not a result of the step.
const BOOKKEEPING: [&str; 4] = ["attemptStartedAt", "retryAt", "sent", "reason"];

/// The variables of a `when` for the step at journal `index`.
pub fn variables(status: &RunbookRunStatus, index: usize, run: &RunView<'_>) -> Value {
    let mut params = Map::new();
    for param in &status.resolved_params {
        let value = match param.type_ {
            ParamType::Integer => param
                .value
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(param.value.clone())),
            ParamType::Boolean => Value::Bool(param.value == "true"),
            ParamType::String | ParamType::Duration => Value::String(param.value.clone()),
        };
        params.insert(param.name.clone(), value);
    }
    let mut steps = Map::new();
    for entry in earlier(status, index) {
        let outputs: Map<String, Value> = entry
            .outputs
            .iter()
            .filter(|(key, _)| !BOOKKEEPING.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect();
        steps.insert(
            entry.name.clone(),
            json!({
                "phase": format!("{:?}", entry.phase),
                "reason": entry.reason.clone().unwrap_or_default(),
                "outputs": outputs,
            }),
        );
    }
    json!({
        "params": params,
        "steps": steps,
        "run": {
            "name": run.name,
            "namespace": run.namespace,
            "mode": format!("{:?}", run.mode),
            "failed": super::aborted(status),
            "cancelled": status.cancel_requested_at.is_some(),
        },
    })
}

/// Whether the step at journal `index` runs, from its `when`. In Plan mode an expression that
/// cannot be evaluated (it reads an output of a step Plan mode does not run) is planned as if
/// true, and the journal says so.
pub fn gate(step: &Step, status: &RunbookRunStatus, index: usize, run: &RunView<'_>) -> Gate {
    let Some(when) = &step.when else {
        return Gate::Run { condition: None };
    };
    let value = crate::expr::Expression::compile(when)
        .and_then(|e| e.evaluate_bool(&variables(status, index, run)));
    match value {
        Ok(true) => Gate::Run {
            condition: Some(format!("{when} = true")),
        },
        Ok(false) => Gate::Skip {
            condition: format!("{when} = false"),
        },
        Err(err) if run.plan() => Gate::Run {
            condition: Some(format!(
                "{when} = unknown in Plan mode ({err}); planned as if true"
            )),
        },
        Err(err) => Gate::Invalid {
            message: format!("when: {err}"),
        },
    }
}

/// The step at journal `index` with its `{{ steps.* }}` references replaced from the journal,
/// then checked as written values are ([`crate::step::validate_resolved`]). An error names the
/// field and what is missing: a step that did not record the output (it was skipped, failed
/// early, or records no such key).
pub fn expand(
    step: &Step,
    status: &RunbookRunStatus,
    index: usize,
    at: &str,
) -> Result<Step, String> {
    let mut value = serde_json::to_value(step).map_err(|e| e.to_string())?;
    let before = earlier(status, index);
    let mut missing = Vec::new();
    let mut touched = false;
    crate::template::for_each_text(&mut value, &mut |field, text| {
        if !text.contains("{{") {
            return;
        }
        *text = crate::template::substitute(text, |reference| {
            let name = reference.step()?;
            touched = true;
            let found = before.iter().find(|e| e.name == name);
            let value = match (reference, found) {
                (Reference::Phase(_), Some(entry)) => Some(format!("{:?}", entry.phase)),
                (Reference::Output { key, .. }, Some(entry)) => entry.outputs.get(key).cloned(),
                _ => None,
            };
            if value.is_none() {
                let why = match found {
                    None => "that step does not run before this one".to_owned(),
                    Some(entry) if entry.phase == StepPhase::Skipped => {
                        format!("step {name:?} was Skipped")
                    }
                    Some(entry) => {
                        format!("step {name:?} ({:?}) recorded no such output", entry.phase)
                    }
                };
                let shown = match reference {
                    Reference::Output { step, key } => format!("steps.{step}.outputs.{key}"),
                    _ => format!("steps.{name}.phase"),
                };
                missing.push(format!("{at}.{field}: {shown} has no value: {why}"));
            }
            value
        });
    });
    if !missing.is_empty() {
        return Err(missing.join("; "));
    }
    if !touched {
        return Ok(step.clone());
    }
    let expanded: Step = serde_json::from_value(value)
        .map_err(|e| format!("{at}: after substituting outputs the step is invalid: {e}"))?;
    let problems = crate::step::validate_resolved(&expanded, at);
    if !problems.is_empty() {
        return Err(problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "));
    }
    Ok(expanded)
}

#[cfg(test)]
mod tests;

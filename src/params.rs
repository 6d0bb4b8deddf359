//! Runbook parameters: their types (a value is checked against the declaration when a run
//! starts) and the `{{ params.NAME }}` references inside step fields.

use serde_json::Value;

use crate::conditions::SpecProblem;
pub use crate::runbook::param_value::{ParamType, ParamValue};
use crate::runbook::{Param, RunbookSpec};

/// A parameter's value for one run, checked against its declaration: the text substituted
/// into `{{ params.NAME }}` (canonical: `04` becomes `4`) and the typed value `when` reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Typed {
    /// What `{{ params.NAME }}` becomes.
    pub text: String,
    /// What `params.NAME` is in CEL: a string, a number or a boolean.
    pub value: Value,
}

/// Reads `text` as a value of `param`'s type within its `enum`, `min` and `max`; the error
/// says what is wrong (the caller names the field).
pub fn typed(param: &Param, text: &str) -> Result<Typed, String> {
    let kind = param.type_.unwrap_or_default();
    let shown = crate::names::truncate(text, 128);
    let value = match kind {
        ParamType::String => Typed {
            text: text.to_owned(),
            value: Value::String(text.to_owned()),
        },
        ParamType::Integer => {
            let n: i64 = text.trim().parse().map_err(|_| {
                format!(
                    "{shown:?} is not an integer (parameter {:?} is of type integer)",
                    param.name
                )
            })?;
            Typed {
                text: n.to_string(),
                value: Value::from(n),
            }
        }
        ParamType::Boolean => {
            let b = match text.trim() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(format!(
                        "{shown:?} is not true or false (parameter {:?} is of type boolean)",
                        param.name
                    ));
                }
            };
            Typed {
                text: b.to_string(),
                value: Value::Bool(b),
            }
        }
        ParamType::Duration => {
            let written = text.trim();
            crate::duration::Duration(written.to_owned())
                .parse()
                .map_err(|e| format!("{e} (parameter {:?} is of type duration)", param.name))?;
            Typed {
                text: written.to_owned(),
                value: Value::String(written.to_owned()),
            }
        }
    };
    if !param.enum_.is_empty() {
        let allowed: Vec<String> = param.enum_.iter().map(ParamValue::as_text).collect();
        let canonical = |t: &str| match kind {
            ParamType::Integer => t
                .trim()
                .parse::<i64>()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| t.to_owned()),
            _ => t.trim().to_owned(),
        };
        if !allowed.iter().any(|a| canonical(a) == value.text) {
            return Err(format!(
                "{shown:?} is not one of the allowed values {allowed:?} of parameter {:?}",
                param.name
            ));
        }
    }
    for (bound, below) in [(&param.min, true), (&param.max, false)] {
        let Some(bound) = bound else { continue };
        let outside = match kind {
            ParamType::Integer => {
                let limit: i64 = bound.as_text().trim().parse().map_err(|_| {
                    format!(
                        "parameter {:?}: its bound {:?} is not an integer",
                        param.name,
                        bound.as_text()
                    )
                })?;
                let n = value.value.as_i64().unwrap_or_default();
                if below { n < limit } else { n > limit }
            }
            ParamType::Duration => {
                let limit = crate::duration::Duration(bound.as_text())
                    .parse()
                    .map_err(|e| {
                        format!(
                            "parameter {:?}: its bound is not a duration: {e}",
                            param.name
                        )
                    })?;
                let d = crate::duration::Duration(value.text.clone())
                    .parse()
                    .unwrap_or_default();
                if below { d < limit } else { d > limit }
            }
            ParamType::String | ParamType::Boolean => {
                return Err(format!(
                    "parameter {:?}: min and max apply to integers and durations only",
                    param.name
                ));
            }
        };
        if outside {
            return Err(format!(
                "{shown:?} is {} the {} {} of parameter {:?}",
                if below { "below" } else { "above" },
                if below { "minimum" } else { "maximum" },
                bound.as_text(),
                param.name
            ));
        }
    }
    Ok(value)
}

/// Problems with the declarations of `spec.params`: a default, an enum value or a bound that
/// does not read as the parameter's type.
pub fn declaration_problems(spec: &RunbookSpec) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    for (i, param) in spec.params.iter().enumerate() {
        let at = format!("spec.params[{i}]");
        let kind = param.type_.unwrap_or_default();
        let bare = Param {
            enum_: Vec::new(),
            min: None,
            max: None,
            ..param.clone()
        };
        for (j, value) in param.enum_.iter().enumerate() {
            if let Err(message) = typed(&bare, &value.as_text()) {
                problems.push(SpecProblem::new(format!("{at}.enum[{j}]"), message));
            }
        }
        for (field, bound) in [("min", &param.min), ("max", &param.max)] {
            let Some(bound) = bound else { continue };
            if !matches!(kind, ParamType::Integer | ParamType::Duration) {
                problems.push(SpecProblem::new(
                    format!("{at}.{field}"),
                    format!(
                        "applies to parameters of type integer or duration, and {:?} is of type {}",
                        param.name,
                        kind.as_str()
                    ),
                ));
            } else if let Err(message) = typed(&bare, &bound.as_text()) {
                problems.push(SpecProblem::new(format!("{at}.{field}"), message));
            }
        }
        if let Some(default) = &param.default
            && let Err(message) = typed(param, &default.as_text())
        {
            problems.push(SpecProblem::new(format!("{at}.default"), message));
        }
    }
    problems
}

/// The parameter names referenced as `{{ params.NAME }}` in `text`, in order.
pub fn references(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        let inner = after[..close].trim();
        if let Some(name) = inner.strip_prefix("params.") {
            names.push(name.trim());
        }
        rest = &after[close + 2..];
    }
    names
}

/// Problems for every `{{ params.NAME }}` whose NAME is not declared in `spec.params`.
pub fn undeclared_references(spec: &RunbookSpec) -> Vec<SpecProblem> {
    let declared: Vec<&str> = spec.params.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    for (path, steps) in [("spec.steps", &spec.steps), ("spec.finally", &spec.finally)] {
        for (i, step) in steps.iter().enumerate() {
            // Serializing our own plain struct cannot fail; Null simply finds nothing.
            let value = serde_json::to_value(step).unwrap_or(Value::Null);
            walk(&value, &format!("{path}[{i}]"), &mut |field, text| {
                for name in references(text) {
                    if !declared.contains(&name) {
                        problems.push(SpecProblem::new(
                            field,
                            format!("refers to {{{{ params.{name} }}}} but spec.params declares no parameter {name:?}"),
                        ));
                    }
                }
            });
        }
    }
    if let Some(concurrency) = &spec.concurrency {
        for name in references(&concurrency.key) {
            if !declared.contains(&name) {
                problems.push(SpecProblem::new(
                    "spec.concurrency.key",
                    format!("refers to {{{{ params.{name} }}}} but spec.params declares no parameter {name:?}"),
                ));
            }
        }
    }
    problems
}

fn walk(value: &Value, path: &str, visit: &mut impl FnMut(&str, &str)) {
    match value {
        Value::String(text) => visit(path, text),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), visit);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                walk(item, &format!("{path}.{key}"), visit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_references_with_and_without_spaces() {
        assert_eq!(
            references("http://{{ params.host }}:{{params.port}}/x/{{ other }}"),
            ["host", "port"]
        );
        assert!(references("no braces, {{ unterminated").is_empty());
    }

    #[test]
    fn reports_undeclared_parameters_with_their_field() {
        let spec: RunbookSpec = serde_json::from_value(json!({
            "params": [{"name": "host"}],
            "steps": [{"name": "check", "http": {"url": "http://{{ params.host }}/{{ params.path }}"}}]
        }))
        .unwrap();
        let problems = undeclared_references(&spec);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.steps[0].http.url");
        assert!(
            problems[0].message.contains("\"path\""),
            "{}",
            problems[0].message
        );
    }
}

//! `{{ params.NAME }}` references inside step fields.

use serde_json::Value;

use crate::conditions::SpecProblem;
use crate::runbook::RunbookSpec;

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

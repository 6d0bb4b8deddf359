use super::*;
use serde_json::{Value, json};

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

#[test]
fn typed_parameters_are_checked_and_fill_integer_fields() {
    let rb = spec(json!({
        "params": [
            {"name": "replicas", "type": "integer", "default": 4, "min": 1, "max": 10},
            {"name": "env", "enum": ["staging", "production"], "default": "staging"},
            {"name": "dryRun", "type": "boolean", "default": false},
            {"name": "wait", "type": "duration", "default": "30s", "max": "1h"}
        ],
        "steps": [{"name": "up", "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": "{{ params.replicas }}"}}]
    }));
    let r = resolve("rb", &rb, &BTreeMap::new()).unwrap();
    let replicas = r.steps[0]
        .scale
        .as_ref()
        .unwrap()
        .replicas
        .as_ref()
        .unwrap();
    assert_eq!(replicas.value(0), Ok(4));
    let recorded: Vec<_> = r
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        recorded,
        [
            ("replicas", "4"),
            ("env", "staging"),
            ("dryRun", "false"),
            ("wait", "30s")
        ]
    );
    let overrides = BTreeMap::from([("replicas".to_owned(), " 07".to_owned())]);
    let r = resolve("rb", &rb, &overrides).unwrap();
    assert_eq!(
        r.steps[0]
            .scale
            .as_ref()
            .unwrap()
            .replicas
            .as_ref()
            .unwrap()
            .value(0),
        Ok(7)
    );
    for (name, value, words) in [
        ("replicas", "four", "not an integer"),
        ("replicas", "11", "above the maximum 10"),
        ("replicas", "0", "below the minimum 1"),
        ("replicas", "99999999999999999999999", "not an integer"),
        ("env", "prod", "not one of the allowed values"),
        ("dryRun", "yes", "not true or false"),
        ("wait", "2h", "above the maximum 1h"),
        ("wait", "soon", "not a duration"),
    ] {
        let overrides = BTreeMap::from([(name.to_owned(), value.to_owned())]);
        let problems = resolve("rb", &rb, &overrides).unwrap_err();
        assert_eq!(problems[0].field, format!("spec.params.{name}"), "{value}");
        assert!(
            problems[0].message.contains(words),
            "{value}: {}",
            problems[0].message
        );
    }
}

#[test]
fn fields_that_read_outputs_wait_for_them_and_when_is_never_substituted() {
    let rb = spec(json!({
        "params": [{"name": "x", "default": "1"}],
        "steps": [
            {"name": "down", "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": 0}},
            {"name": "back", "when": "params.x == '1'", "scale": {"target": {"kind": "Deployment", "name": "app"},
                "replicas": "{{ steps.down.outputs.previousReplicas }}"}}
        ]
    }));
    let r = resolve("rb", &rb, &BTreeMap::new()).unwrap();
    let back = &r.steps[1];
    assert_eq!(back.when.as_deref(), Some("params.x == '1'"));
    assert!(
        back.scale
            .as_ref()
            .unwrap()
            .replicas
            .as_ref()
            .unwrap()
            .is_template()
    );
}

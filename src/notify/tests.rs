//! Targets and the checks of resolved notify steps.

use super::*;
use serde_json::json;

fn notify(value: serde_json::Value) -> NotifyAction {
    serde_json::from_value(value).expect("notify shape")
}

#[test]
fn the_older_form_still_reads() {
    let n = notify(json!({"url": "http://hook", "message": "done"}));
    assert_eq!(n.sink.url.as_deref(), Some("http://hook"));
    assert_eq!(kind(&n.sink), "chat");
    assert_eq!(
        serde_json::to_value(&n).unwrap(),
        json!({"url": "http://hook", "message": "done"})
    );
}

#[test]
fn targets_name_the_sink_and_host_never_the_path() {
    let cases = [
        (
            json!({"message": "m", "slack": {"url": "https://hooks.slack.com/services/T0/B0/SECRET"}}),
            "slack hooks.slack.com",
        ),
        (
            json!({"message": "m", "msteams": {"urlFrom": {"secretKeyRef": {"name": "teams", "key": "url"}}}}),
            "msteams from Secret/teams",
        ),
        (
            json!({"message": "m", "pagerduty": {"routingKeyFrom": {"secretKeyRef": {"name": "pd", "key": "key"}}}}),
            "pagerduty events.pagerduty.com",
        ),
        (
            json!({"message": "m", "webhook": {"url": "http://hooks:8080/x?token=SECRET"}}),
            "webhook hooks:8080",
        ),
        (
            json!({"message": "m", "email": {"host": "smtp.example.com", "from": "a@b.c", "to": ["d@e.f"], "subject": "s"}}),
            "email smtp.example.com:587",
        ),
        (
            json!({"message": "m", "urlFrom": {"secretKeyRef": {"name": "chat", "key": "url"}}}),
            "webhook from Secret/chat",
        ),
    ];
    for (value, expected) in cases {
        let n = notify(value);
        assert_eq!(target(&n.sink), expected);
        assert!(!target(&n.sink).contains("SECRET"));
    }
}

#[test]
fn resolved_sinks_are_checked_with_their_field() {
    let cases = [
        (
            json!({"message": "m", "webhook": {"url": "http://h/x", "body": "{\"n\": {{ params.n }}}"}}),
            "notify.webhook.body",
        ),
        (
            json!({"message": "m", "webhook": {"url": "http://h/x", "body": "{\"n\": \"a\"\"}"}}),
            "notify.webhook.body",
        ),
        (
            json!({"message": "m", "slack": {"url": "ftp://h/x"}}),
            "notify.slack.url",
        ),
        (
            json!({"message": "m", "email": {"host": "smtp", "from": "a@b.c", "to": ["x\r\ny"], "subject": "s"}}),
            "notify.email.to[0]",
        ),
        (
            json!({"message": "m", "pagerduty": {"routingKeyFrom": {"secretKeyRef": {"name": "A/b", "key": "k"}}}}),
            "notify.pagerduty.routingKeyFrom.secretKeyRef.name",
        ),
        (
            json!({"message": "m", "urlFrom": {"secretKeyRef": {"name": "x/y", "key": "k"}}}),
            "notify.urlFrom.secretKeyRef.name",
        ),
        (
            json!({"message": "m", "webhook": {"url": "{{ params.u }}/x", "headers": [{"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}}]}}),
            "notify.webhook.url",
        ),
    ];
    for (value, field) in cases {
        let problems = validate_resolved(&notify(value), "spec.steps[0]");
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(
            fields.contains(&format!("spec.steps[0].{field}").as_str()),
            "{field}: {problems:?}"
        );
    }
    let fine = notify(
        json!({"message": "m", "webhook": {"url": "http://h/x", "body": "{\"text\": \"{{ message }}\"}"}}),
    );
    assert!(validate_resolved(&fine, "spec.steps[0]").is_empty());
}

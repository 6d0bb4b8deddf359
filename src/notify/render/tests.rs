//! Body shapes of each sink, exactly.

use super::*;

#[test]
fn chat_posts_only_text() {
    assert_eq!(chat("db restarted"), json!({"text": "db restarted"}));
}

#[test]
fn slack_is_a_header_and_a_section_with_a_text_fallback() {
    assert_eq!(
        slack(Some("HighErrorRate"), "scaled *api* to 4"),
        json!({
            "text": "HighErrorRate: scaled *api* to 4",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "HighErrorRate", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "scaled *api* to 4"}},
            ],
        })
    );
    assert_eq!(
        slack(None, "done"),
        json!({"text": "done", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "done"}}]})
    );
}

#[test]
fn slack_texts_are_cut_to_block_kit_limits() {
    let body = slack(Some(&"t".repeat(400)), &"é".repeat(2000));
    let header = body["blocks"][0]["text"]["text"].as_str().unwrap();
    let section = body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(header.len() <= 150 && header.ends_with('…'), "{header}");
    assert!(section.len() <= 3000 && section.ends_with('…'));
}

#[test]
fn teams_is_an_adaptive_card_in_a_message() {
    assert_eq!(
        teams(Some("Release aborted"), "web-v2 rolled back"),
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": "Release aborted", "weight": "Bolder", "size": "Medium", "wrap": true},
                        {"type": "TextBlock", "text": "web-v2 rolled back", "wrap": true},
                    ],
                },
            }],
        })
    );
}

fn event<'a>(action: EventAction, details: &'a BTreeMap<String, String>) -> PagerDutyEvent<'a> {
    PagerDutyEvent {
        action,
        dedup_key: "shop/high-error-rate-x",
        summary: "error rate above 5% on api",
        source: "runbook-operator/shop",
        severity: Severity::Critical,
        custom_details: details,
    }
}

#[test]
fn pagerduty_trigger_carries_the_payload() {
    let details = BTreeMap::from([("service".to_owned(), "api".to_owned())]);
    assert_eq!(
        pagerduty("R0UT1NG", &event(EventAction::Trigger, &details)),
        json!({
            "routing_key": "R0UT1NG",
            "event_action": "trigger",
            "dedup_key": "shop/high-error-rate-x",
            "payload": {
                "summary": "error rate above 5% on api",
                "source": "runbook-operator/shop",
                "severity": "critical",
                "custom_details": {"service": "api"},
            },
            "client": "runbook-operator",
        })
    );
}

#[test]
fn pagerduty_resolve_and_acknowledge_carry_only_the_key() {
    let none = BTreeMap::new();
    for (action, name) in [
        (EventAction::Resolve, "resolve"),
        (EventAction::Acknowledge, "acknowledge"),
    ] {
        assert_eq!(
            pagerduty("R0UT1NG", &event(action, &none)),
            json!({"routing_key": "R0UT1NG", "event_action": name, "dedup_key": "shop/high-error-rate-x"})
        );
    }
}

#[test]
fn pagerduty_summary_is_cut_to_1024_bytes() {
    let none = BTreeMap::new();
    let long = "x".repeat(5000);
    let mut e = event(EventAction::Trigger, &none);
    e.summary = &long;
    let body = pagerduty("k", &e);
    assert!(body["payload"]["summary"].as_str().unwrap().len() <= 1024);
}

#[test]
fn webhook_substitutes_json_escaped_values() {
    let body = webhook(
        Some(r#"{"msg": "{{ message }}", "key": "{{dedupKey}}", "keep": "{{ other }}"}"#),
        "say \"hi\"\nnow",
        "ns/run",
    )
    .unwrap();
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        value,
        json!({"msg": "say \"hi\"\nnow", "key": "ns/run", "keep": "{{ other }}"})
    );
    assert_eq!(webhook(None, "done", "k").unwrap(), r#"{"text": "done"}"#);
}

#[test]
fn webhook_body_that_is_not_json_is_refused() {
    let err = webhook(Some(r#"{"replicas": {{ message }}}"#), "four", "k").unwrap_err();
    assert!(err.contains("not valid JSON"), "{err}");
    assert!(webhook(Some("{\"a\": \"x\"\"}"), "", "").is_err());
}

#[test]
fn email_is_crlf_with_headers_and_dot_stuffed_lines() {
    let to = vec![
        "oncall@example.com".to_owned(),
        "lead@example.com".to_owned(),
    ];
    let mail = Email {
        from: "runbooks@example.com",
        to: &to,
        subject: "Run failed",
        body: "step scale failed\n.hidden line\n..two\nend",
        date: "Mon, 7 Dec 2026 11:00:00 +0000",
        message_id: "0badc0de@example.com",
    };
    assert_eq!(
        email(&mail),
        "From: runbooks@example.com\r\nTo: oncall@example.com, lead@example.com\r\nSubject: Run failed\r\nDate: Mon, 7 Dec 2026 11:00:00 +0000\r\nMessage-ID: <0badc0de@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nstep scale failed\r\n..hidden line\r\n...two\r\nend\r\n"
    );
}

#[test]
fn email_subject_is_encoded_when_not_ascii_and_never_breaks_a_line() {
    let to = vec!["a@example.com".to_owned()];
    let mut mail = Email {
        from: "r@example.com",
        to: &to,
        subject: "Fenêtre ouverte",
        body: "",
        date: "d",
        message_id: "m@x",
    };
    assert!(email(&mail).contains("Subject: =?UTF-8?B?RmVuw6p0cmUgb3V2ZXJ0ZQ==?=\r\n"));
    mail.subject = "hi\r\nBcc: evil@example.com";
    assert!(email(&mail).contains("Subject: hiBcc: evil@example.com\r\n"));
}

#[test]
fn addresses_with_line_breaks_or_brackets_are_refused() {
    assert!(check_address("oncall@example.com").is_ok());
    for bad in ["a@b\r\nRCPT TO:<x@y>", "<a@b>", "nobody", "a b@c"] {
        assert!(check_address(bad).is_err(), "{bad:?}");
    }
}

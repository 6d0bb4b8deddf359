//! Notification sinks of the notify step against receivers the test runs (see
//! `sinks_support`): Slack blocks, a Teams card, a webhook body template with a header from a
//! Secret, a PagerDuty trigger and its resolve with the same dedup key, and an email through
//! SMTP with AUTH PLAIN. Secrets never show in status, Events or the log.

use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use serde_json::json;

use crate::sinks_support::{Receiver, SmtpServer};
use crate::support::{TestNamespace, entry, output};

async fn finished(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, "finished", |r| {
        matches!(
            r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())),
            Some("Succeeded" | "Failed" | "Cancelled")
        )
    })
    .await
}

fn phase(run: &RunbookRun) -> &str {
    run.status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()))
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn each_sink_gets_its_own_shape_and_secrets_stay_out_of_sight() {
    let http = Receiver::start().await;
    let smtp = SmtpServer::start().await;
    let base = &http.base;
    let mut ns = TestNamespace::new("notify").await;
    let hook = format!("hook-{:08x}", rand::random::<u32>());
    let routing = format!("R0UT1NG{:08x}", rand::random::<u32>());
    let token = format!("tok-{:08x}", rand::random::<u32>());
    let password = format!("pw-{:08x}", rand::random::<u32>());
    ns.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: sinks}}\nstringData: {{slack: \"{base}/slack/{hook}\", routing: \"{routing}\", token: \"{token}\", user: mailer, password: \"{password}\"}}\n"
    ));
    let ns_name = ns.name.clone();
    ns.apply(&format!(
        r#"apiVersion: ops.runbook.dev/v1alpha1
kind: Runbook
metadata: {{name: incident}}
spec:
  params:
  - {{name: service, default: api}}
  steps:
  - name: page
    notify:
      message: "error rate above 5% on {{{{ params.service }}}}"
      pagerduty:
        url: "{base}/v2/enqueue"
        routingKeyFrom: {{secretKeyRef: {{name: sinks, key: routing}}}}
        severity: critical
        customDetails: {{service: "{{{{ params.service }}}}"}}
  - name: slack
    notify:
      message: "scaled *{{{{ params.service }}}}* to 4"
      slack: {{title: HighErrorRate, urlFrom: {{secretKeyRef: {{name: sinks, key: slack}}}}}}
  - name: teams
    notify: {{message: "scaled to 4", msteams: {{url: "{base}/teams", title: HighErrorRate}}}}
  - name: hook
    notify:
      message: "say \"done\""
      webhook:
        url: "{base}/hook"
        headers: [{{name: Authorization, valueFrom: {{secretKeyRef: {{name: sinks, key: token}}}}}}]
        body: '{{"service": "{{{{ params.service }}}}", "text": "{{{{ message }}}}", "key": "{{{{ dedupKey }}}}"}}'
  - name: mail
    notify:
      message: "step scale done\n.dot line"
      email:
        host: 127.0.0.1
        port: {port}
        tls: None
        usernameFrom: {{secretKeyRef: {{name: sinks, key: user}}}}
        passwordFrom: {{secretKeyRef: {{name: sinks, key: password}}}}
        from: runbooks@example.com
        to: [oncall@example.com, lead@example.com]
        subject: "Incident on {{{{ params.service }}}}"
  finally:
  - name: resolve
    notify:
      message: resolved
      pagerduty:
        url: "{base}/v2/enqueue"
        routingKeyFrom: {{secretKeyRef: {{name: sinks, key: routing}}}}
        eventAction: resolve
"#,
        port = smtp.port
    ));
    ns.start_operator();
    ns.apply("apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {name: incident-1}\nspec:\n  runbookRef: {name: incident}\n");
    let r = finished(&ns, "incident-1").await;
    assert_eq!(phase(&r), "Succeeded", "{:#?}", r.status);

    // PagerDuty: a trigger with the payload, then a resolve with the same key.
    let key = format!("{ns_name}/incident-1");
    let events = http.pagerduty_events();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[0]["routing_key"], routing.as_str());
    assert_eq!(events[0]["dedup_key"], key.as_str());
    assert_eq!(
        events[0]["payload"],
        json!({"summary": "error rate above 5% on api", "source": format!("runbook-operator/{ns_name}"), "severity": "critical", "custom_details": {"service": "api"}})
    );
    assert_eq!(
        events[1],
        json!({"routing_key": routing, "event_action": "resolve", "dedup_key": key})
    );
    let page = entry(&r, "page");
    assert_eq!(page.phase, StepPhase::Succeeded, "{page:#?}");
    assert_eq!(output(page, "dedupKey"), key);
    assert_eq!(output(page, "httpStatus"), "202");
    assert_eq!(output(entry(&r, "resolve"), "dedupKey"), key);

    // Slack: Block Kit with the fallback text, to the URL from the Secret.
    let slack = http.requests(&format!("/slack/{hook}"));
    assert_eq!(slack.len(), 1, "{slack:#?}");
    assert_eq!(slack[0].method, "POST");
    assert_eq!(
        slack[0].json(),
        json!({"text": "HighErrorRate: scaled *api* to 4", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "HighErrorRate", "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "scaled *api* to 4"}}]})
    );
    assert_eq!(
        entry(&r, "slack").target.as_deref(),
        Some("slack from Secret/sinks")
    );

    // Teams: an Adaptive Card.
    let teams = http.requests("/teams");
    assert_eq!(teams.len(), 1);
    let card = teams[0].json();
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(
        card["attachments"][0]["content"]["body"][1]["text"],
        "scaled to 4"
    );

    // Webhook: the template, values JSON-escaped, the header from the Secret.
    let hook_requests = http.requests("/hook");
    assert_eq!(hook_requests.len(), 1);
    assert_eq!(
        hook_requests[0].json(),
        json!({"service": "api", "text": "say \"done\"", "key": key})
    );
    assert_eq!(hook_requests[0].headers.get("authorization"), Some(&token));

    // Email: authenticated, both recipients, headers and a dot-stuffed line restored.
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert_eq!(mail.auth, Some(("mailer".into(), password.clone())));
    assert_eq!(mail.from, "runbooks@example.com");
    assert_eq!(mail.to, ["oncall@example.com", "lead@example.com"]);
    assert!(
        mail.data.contains("Subject: Incident on api\r\n"),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .ends_with("\r\n\r\nstep scale done\r\n.dot line\r\n"),
        "{}",
        mail.data
    );
    assert_eq!(
        entry(&r, "mail").target.as_deref(),
        Some("email 127.0.0.1:".to_owned() + &smtp.port.to_string()).as_deref()
    );

    ns.wait_for_event("incident-1", "StepSucceeded", "").await;
    let shown = [
        ns.kubectl_ok(&["get", "rbr", "-o", "yaml"]),
        ns.kubectl_ok(&["get", "events", "-o", "yaml"]),
        std::fs::read_to_string(ns.log_path()).unwrap_or_default(),
    ]
    .join("\n");
    for secret in [&hook, &routing, &token, &password] {
        assert!(
            !shown.contains(secret.as_str()),
            "{secret} is shown:\n{shown}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_webhook_body_that_is_not_json_fails_the_run_naming_the_field() {
    let http = Receiver::start().await;
    let mut ns = TestNamespace::new("notify-bad").await;
    ns.apply(&format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: bad}}\nspec:\n  params:\n  - {{name: count, default: \"four\"}}\n  steps:\n  - name: hook\n    notify: {{message: m, webhook: {{url: \"{}/hook\", body: '{{\"replicas\": {{{{ params.count }}}}}}'}}}}\n",
        http.base
    ));
    ns.start_operator();
    ns.apply("apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {name: bad-1}\nspec:\n  runbookRef: {name: bad}\n");
    let r = finished(&ns, "bad-1").await;
    assert_eq!(phase(&r), "Failed");
    let status = format!("{:?}", r.status);
    assert!(
        status.contains("InvalidSpec") && status.contains("notify.webhook.body"),
        "{status}"
    );
    assert!(http.requests("/hook").is_empty());
}

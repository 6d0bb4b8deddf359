//! The request body of each sink, from the notification alone. Pure, so each shape is tested
//! exactly.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::types::{EventAction, Severity};

/// Longest Slack section text (Block Kit's limit).
const SLACK_SECTION: usize = 3000;
/// Longest Slack header text (Block Kit's limit).
const SLACK_HEADER: usize = 150;
/// Longest PagerDuty summary (Events API v2's limit).
const PAGERDUTY_SUMMARY: usize = 1024;

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The older chat form: `{"text": message}`.
pub fn chat(message: &str) -> Value {
    json!({ "text": message })
}

/// A Slack incoming webhook message in Block Kit: a header (when there is a title) and a
/// section with the message as mrkdwn; `text` is the fallback notifications show.
pub fn slack(title: Option<&str>, message: &str) -> Value {
    let mut blocks = Vec::new();
    if let Some(title) = title.filter(|t| !t.is_empty()) {
        blocks.push(json!({
            "type": "header",
            "text": {"type": "plain_text", "text": clip(title, SLACK_HEADER), "emoji": true},
        }));
    }
    blocks.push(json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": clip(message, SLACK_SECTION)},
    }));
    let fallback = match title.filter(|t| !t.is_empty()) {
        Some(title) => format!("{title}: {message}"),
        None => message.to_owned(),
    };
    json!({ "text": fallback, "blocks": blocks })
}

/// A Teams Workflows webhook message: one Adaptive Card (1.4) in a `message` envelope.
pub fn teams(title: Option<&str>, message: &str) -> Value {
    let mut body = Vec::new();
    if let Some(title) = title.filter(|t| !t.is_empty()) {
        body.push(json!({
            "type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true,
        }));
    }
    body.push(json!({ "type": "TextBlock", "text": message, "wrap": true }));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

/// One PagerDuty event (the parts that are not the routing key).
#[derive(Clone, Debug, PartialEq)]
pub struct PagerDutyEvent<'a> {
    /// trigger, acknowledge or resolve.
    pub action: EventAction,
    /// The incident's key.
    pub dedup_key: &'a str,
    /// The message (the trigger's summary).
    pub summary: &'a str,
    /// The affected system.
    pub source: &'a str,
    /// The trigger's severity.
    pub severity: Severity,
    /// Extra fields of a trigger.
    pub custom_details: &'a BTreeMap<String, String>,
}

/// An Events API v2 body: a trigger carries `payload`, an acknowledge or resolve only the key.
pub fn pagerduty(routing_key: &str, event: &PagerDutyEvent<'_>) -> Value {
    let action = match event.action {
        EventAction::Trigger => "trigger",
        EventAction::Acknowledge => "acknowledge",
        EventAction::Resolve => "resolve",
    };
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": event.dedup_key,
    });
    if event.action == EventAction::Trigger {
        let severity = match event.severity {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let mut payload = json!({
            "summary": clip(event.summary, PAGERDUTY_SUMMARY),
            "source": event.source,
            "severity": severity,
        });
        if !event.custom_details.is_empty() {
            payload["custom_details"] = json!(event.custom_details);
        }
        body["payload"] = payload;
        body["client"] = json!("runbook-operator");
    }
    body
}

/// The default webhook body template.
pub const DEFAULT_WEBHOOK_BODY: &str = r#"{"text": "{{ message }}"}"#;

/// A webhook body: the template with `{{ message }}` and `{{ dedupKey }}` replaced by their
/// JSON-escaped text. `Err` says why the result is not JSON.
pub fn webhook(template: Option<&str>, message: &str, dedup_key: &str) -> Result<String, String> {
    let template = template.unwrap_or(DEFAULT_WEBHOOK_BODY);
    let body = substitute(template, &[("message", message), ("dedupKey", dedup_key)]);
    match serde_json::from_str::<Value>(&body) {
        Ok(_) => Ok(body),
        Err(err) => Err(format!(
            "is not valid JSON once substituted ({err}); write {{{{ message }}}} inside a string and check the parameters it uses"
        )),
    }
}

/// Replaces `{{ name }}` (spaces optional) by the JSON-escaped value; other references stay.
fn substitute(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = after[..close].trim();
        match values.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => {
                let quoted = serde_json::to_string(value).unwrap_or_default();
                // A JSON string is at least `""`: strip its quotes.
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// One email's headers and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Email<'a> {
    /// Sender address.
    pub from: &'a str,
    /// Recipient addresses.
    pub to: &'a [String],
    /// Subject line.
    pub subject: &'a str,
    /// Body text.
    pub body: &'a str,
    /// `Date:` value (RFC 5322).
    pub date: &'a str,
    /// `Message-ID:` value, without the angle brackets.
    pub message_id: &'a str,
}

/// An address fit for a header and an SMTP command: no line breaks, no angle brackets, an
/// `@`. `Err` names the problem.
pub fn check_address(address: &str) -> Result<(), String> {
    if address
        .chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | ' ' | ','))
        || !address.contains('@')
    {
        return Err(format!(
            "{:?} is not an email address (user@host, no spaces, brackets or line breaks)",
            crate::names::truncate(address, 256)
        ));
    }
    Ok(())
}

/// The message as SMTP DATA carries it: CRLF line ends, a subject encoded when it is not
/// ASCII (RFC 2047), a plain UTF-8 body, and every line starting with `.` doubled
/// (dot-stuffing, RFC 5321 4.5.2). The closing `.` line is not included.
pub fn email(mail: &Email<'_>) -> String {
    use base64::Engine;
    let subject: String = mail.subject.chars().filter(|c| !c.is_control()).collect();
    let subject = if subject.is_ascii() {
        subject
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(subject.as_bytes());
        format!("=?UTF-8?B?{encoded}?=")
    };
    let mut text = format!(
        "From: {}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        mail.from,
        mail.to.join(", "),
        mail.date,
        mail.message_id,
    );
    for line in mail.body.replace("\r\n", "\n").split('\n') {
        if line.starts_with('.') {
            text.push('.');
        }
        text.push_str(line);
        text.push_str("\r\n");
    }
    text
}

#[cfg(test)]
mod tests;

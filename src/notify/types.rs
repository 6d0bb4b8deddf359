//! The shapes of notifications: the `notify` step and the sinks it (and the lifecycle
//! notifications of other kinds) can send to.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::secret_ref::{HttpHeader, SecretKeyRef, ValueFrom};

/// Longest URL a sink may post to.
pub const MAX_URL: usize = 2048;

/// Longest webhook body template, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// Send a notification: `message` to exactly one sink. Webhook URLs, routing keys and SMTP
/// passwords are credentials: they never reach status, Events, logs or metrics (the step's
/// `target` names the sink and host only). Delivery is at most once: a notification whose
/// delivery is unknown (the operator restarted while sending) is reported, never resent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyAction {
    /// The message text: a Slack/Teams message, the PagerDuty summary, the email body, or
    /// `{{ message }}` in a webhook body.
    pub message: String,
    /// Where it goes (exactly one sink).
    #[serde(flatten)]
    pub sink: Sink,
}

/// Where a notification goes: exactly one of its fields. The older form `url`/`urlFrom`
/// posts `{"text": message}` (what Slack and Mattermost incoming webhooks take).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.url), has(self.urlFrom), has(self.slack), has(self.msteams), has(self.pagerduty), has(self.webhook), has(self.email)].filter(x, x).size() == 1").message("a notification needs exactly one sink: url or urlFrom (a chat webhook taking {\"text\": ...}), slack, msteams, pagerduty, webhook or email"))]
pub struct Sink {
    /// Chat webhook URL taking `{"text": message}`, written inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("url must start with http:// or https://"))]
    pub url: Option<String>,
    /// Chat webhook URL taking `{"text": message}`, read from a Secret (recommended: webhook
    /// URLs are credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<UrlFrom>,
    /// A Slack incoming webhook, sent as Block Kit (a header and a section) with the message
    /// as the `text` fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackSink>,
    /// A Microsoft Teams incoming webhook (a Workflows "when a Teams webhook request is
    /// received" URL), sent as an Adaptive Card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msteams: Option<TeamsSink>,
    /// A PagerDuty event (Events API v2): trigger, acknowledge or resolve an incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<PagerDutySink>,
    /// A generic JSON POST whose body is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSink>,
    /// An email through an SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSink>,
}

/// Where a webhook URL comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UrlFrom {
    /// Read the URL from a Secret key.
    pub secret_key_ref: SecretKeyRef,
}

/// A Slack incoming webhook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlFrom)").message("slack: set exactly one of url or urlFrom"))]
pub struct SlackSink {
    /// Webhook URL (`https://hooks.slack.com/services/...`), written inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("url must start with http:// or https://"))]
    pub url: Option<String>,
    /// Webhook URL, read from a Secret (recommended: the URL is a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<UrlFrom>,
    /// Header block above the message (plain text, at most 150 characters); none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 150))]
    pub title: Option<String>,
}

/// A Microsoft Teams incoming webhook. The body is an Adaptive Card (version 1.4) in a
/// `message` envelope, the form Teams Workflows webhooks accept (the Office 365 connector
/// MessageCard is retired).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlFrom)").message("msteams: set exactly one of url or urlFrom"))]
pub struct TeamsSink {
    /// Webhook URL, written inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("url must start with http:// or https://"))]
    pub url: Option<String>,
    /// Webhook URL, read from a Secret (recommended: the URL is a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<UrlFrom>,
    /// Bold title above the message; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub title: Option<String>,
}

/// A PagerDuty event through the Events API v2. The step records the `dedup_key` PagerDuty
/// returns in its outputs (`dedupKey`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagerDutySink {
    /// The integration's routing key, read from a Secret.
    pub routing_key_from: ValueFrom,
    /// Events API endpoint (default `https://events.pagerduty.com/v2/enqueue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("url must start with http:// or https://"))]
    pub url: Option<String>,
    /// trigger (default), acknowledge or resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_action: Option<EventAction>,
    /// The incident's key: a resolve with the key of a trigger resolves that incident.
    /// Default: the notification's own key (for a notify step, `<namespace>/<run name>`, so a
    /// trigger step and a resolve in `finally` of the same run match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub dedup_key: Option<String>,
    /// Severity of a trigger: critical, error (default), warning or info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The affected system, shown in PagerDuty (default `runbook-operator/<namespace>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub source: Option<String>,
    /// Extra fields shown with a triggered incident (at most 32).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub custom_details: BTreeMap<String, String>,
}

/// What a PagerDuty event does to its incident.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum EventAction {
    /// Open an incident (or add to the open one with the same dedup key).
    #[default]
    Trigger,
    /// Acknowledge the incident with the dedup key.
    Acknowledge,
    /// Resolve the incident with the dedup key.
    Resolve,
}

/// Severity of a PagerDuty trigger.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// Critical.
    Critical,
    /// Error (default).
    #[default]
    Error,
    /// Warning.
    Warning,
    /// Info.
    Info,
}

/// A generic JSON POST.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlFrom)").message("webhook: set exactly one of url or urlFrom"))]
pub struct WebhookSink {
    /// URL, written inline. A host without a dot is a Service in the object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("url must start with http:// or https://"))]
    pub url: Option<String>,
    /// URL, read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<UrlFrom>,
    /// Request headers (at most 16); values may come from Secrets (then the url's host must
    /// be written out, not come from a parameter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HttpHeader>,
    /// The JSON body, a template: `{{ params.X }}` as in other fields, plus `{{ message }}`
    /// and `{{ dedupKey }}`, replaced JSON-escaped (write them inside a string). It must be
    /// valid JSON once substituted, else the step fails with reason InvalidSpec naming
    /// `webhook.body`. Default: `{"text": "{{ message }}"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub body: Option<String>,
}

/// How an SMTP connection is encrypted.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum SmtpTls {
    /// Plain text (only for a relay inside the cluster; credentials cross the network in the
    /// clear).
    None,
    /// Plain connection upgraded with STARTTLS before authenticating (default; port 587).
    #[default]
    StartTLS,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// An email through an SMTP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.usernameFrom) == has(self.passwordFrom)").message("email: set both usernameFrom and passwordFrom, or neither"))]
pub struct EmailSink {
    /// The SMTP server's host name. A host without a dot is a Service in the object's
    /// namespace; the fence applies as to http steps.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port (default 587, 465 with `tls: Implicit`, 25 with `tls: None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// None, StartTLS (default) or Implicit. With StartTLS a server that does not offer it
    /// fails the notification (never falls back to plain text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    /// User name for AUTH PLAIN, read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_from: Option<ValueFrom>,
    /// Password for AUTH PLAIN, read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_from: Option<ValueFrom>,
    /// Sender address, e.g. `runbooks@example.com`.
    #[schemars(length(min = 3, max = 254))]
    pub from: String,
    /// Recipient addresses (1 to 32).
    #[schemars(length(min = 1, max = 32))]
    pub to: Vec<String>,
    /// Subject line (the message is the body).
    #[schemars(length(max = 998))]
    pub subject: String,
}

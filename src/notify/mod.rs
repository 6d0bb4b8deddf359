//! Notifications: the sinks a message can go to (a `{"text"}` chat webhook, Slack, Microsoft
//! Teams, PagerDuty, a generic JSON webhook, email over SMTP) and the one entry point,
//! [`deliver`], that the `notify` step and the lifecycle notifications of other kinds call.
//!
//! Every connection passes the egress fence ([`crate::fence`]): resolved addresses are checked
//! before connecting, for SMTP as for HTTP. Credentials (webhook URLs, routing keys, SMTP
//! passwords) are read from Secrets as the object's identity at send time and never appear in
//! a message, an output or a log: messages name the sink and the host only ([`target`]).

use std::time::Duration;

use crate::conditions::SpecProblem;
use crate::outbound::Reply;
use crate::write::Writer;

pub mod render;
mod send;
mod smtp;
mod types;

pub use send::Courier;
pub use types::{
    EmailSink, EventAction, MAX_BODY, MAX_URL, NotifyAction, PagerDutySink, Severity, Sink,
    SlackSink, SmtpTls, TeamsSink, UrlFrom, WebhookSink,
};

/// Most time one notification may take, reading its Secrets included.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// PagerDuty's Events API v2 endpoint, the default of `pagerduty.url`.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Sends `message` to `sink` once, reading the sink's Secrets in `namespace` as the writer's
/// identity, and returns what happened: `outputs` to record (`httpStatus`, `dedupKey` for
/// PagerDuty, ...) and the verdict (`Succeeded`, or `Failed` with a PascalCase reason such as
/// EgressRefused, UnexpectedStatus, RequestFailed, TargetNotFound, InvalidSpec).
///
/// `dedup_key` identifies the notification for the receiver: PagerDuty's `dedup_key` unless
/// the sink sets one, `{{ dedupKey }}` in a webhook body, the email's Message-ID. Give the same
/// key to the notifications about the same thing (a trigger and its resolve).
///
/// Never retried here and never longer than [`TIMEOUT`]; a dry-run writer sends nothing and
/// succeeds with a `Plan:` message. Messages never contain a credential. For a request that
/// must outlive the caller (the outbound pool), use [`Courier::send`], which owns its inputs.
pub async fn deliver(
    writer: &Writer<'_>,
    namespace: &str,
    sink: &Sink,
    message: &str,
    dedup_key: &str,
) -> Reply {
    Courier::new(writer)
        .send(
            namespace.to_owned(),
            sink.clone(),
            message.to_owned(),
            dedup_key.to_owned(),
        )
        .await
}

/// The sink's name: `chat`, `slack`, `msteams`, `pagerduty`, `webhook`, `email`, or `none`.
pub fn kind(sink: &Sink) -> &'static str {
    if sink.slack.is_some() {
        "slack"
    } else if sink.msteams.is_some() {
        "msteams"
    } else if sink.pagerduty.is_some() {
        "pagerduty"
    } else if sink.webhook.is_some() {
        "webhook"
    } else if sink.email.is_some() {
        "email"
    } else if sink.url.is_some() || sink.url_from.is_some() {
        "chat"
    } else {
        "none"
    }
}

/// What a notification goes to, fit for status and Events: the sink and the host, or the
/// Secret the URL comes from, never a URL's path or query (a webhook's path is its token).
pub fn target(sink: &Sink) -> String {
    let (url, from) = match (
        &sink.slack,
        &sink.msteams,
        &sink.pagerduty,
        &sink.webhook,
        &sink.email,
    ) {
        (Some(s), ..) => (s.url.as_deref(), s.url_from.as_ref()),
        (_, Some(t), ..) => (t.url.as_deref(), t.url_from.as_ref()),
        (_, _, Some(p), ..) => (Some(p.url.as_deref().unwrap_or(PAGERDUTY_URL)), None),
        (_, _, _, Some(w), _) => (w.url.as_deref(), w.url_from.as_ref()),
        (.., Some(e)) => {
            let port = send::smtp_port(e);
            return format!("email {}:{port}", e.host);
        }
        _ => (sink.url.as_deref(), sink.url_from.as_ref()),
    };
    let name = match kind(sink) {
        "chat" => "webhook",
        other => other,
    };
    match (url, from) {
        (Some(url), _) => format!("{name} {}", host_of(url)),
        (None, Some(from)) => format!("{name} from Secret/{}", from.secret_key_ref.name),
        (None, None) => name.to_owned(),
    }
}

/// The host (and port) of a URL, or `?` when it does not parse.
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => "?".into(),
        },
        Err(_) => "?".into(),
    }
}

/// Checks a notify step once its `{{ params.X }}` templates are substituted, with the field of
/// each problem under `at` (e.g. `spec.steps[2]`): URLs are http(s) and at most
/// [`MAX_URL`] long, a webhook body is JSON, email addresses are addresses.
pub fn validate_resolved(notify: &NotifyAction, at: &str) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    let sink = &notify.sink;
    let urls = [
        ("notify.url", sink.url.as_deref()),
        (
            "notify.slack.url",
            sink.slack.as_ref().and_then(|s| s.url.as_deref()),
        ),
        (
            "notify.msteams.url",
            sink.msteams.as_ref().and_then(|s| s.url.as_deref()),
        ),
        (
            "notify.pagerduty.url",
            sink.pagerduty.as_ref().and_then(|s| s.url.as_deref()),
        ),
        (
            "notify.webhook.url",
            sink.webhook.as_ref().and_then(|s| s.url.as_deref()),
        ),
    ];
    for (field, url) in urls {
        let Some(url) = url else { continue };
        if let Err(message) = check_url(url) {
            problems.push(SpecProblem::new(format!("{at}.{field}"), message));
        }
    }
    for (field, name) in secret_names(sink) {
        if !crate::names::is_dns_subdomain(name) {
            problems.push(SpecProblem::new(
                format!("{at}.notify.{field}"),
                format!(
                    "{:?} is not a Secret name (a DNS subdomain); check the parameter it came from",
                    crate::names::truncate(name, 256)
                ),
            ));
        }
    }
    if let Some(webhook) = &sink.webhook {
        if let Err(message) = render::webhook(webhook.body.as_deref(), "", "") {
            problems.push(SpecProblem::new(
                format!("{at}.notify.webhook.body"),
                format!("the body {message}"),
            ));
        }
        if webhook.headers.iter().any(|h| h.value_from.is_some())
            && webhook
                .url
                .as_deref()
                .is_some_and(crate::secret_ref::templated_host)
        {
            problems.push(SpecProblem::new(
                format!("{at}.notify.webhook.url"),
                "a request carrying a header from a Secret must name its host in the step, not through a parameter: write the scheme and host and template only the path or query",
            ));
        }
    }
    if let Some(email) = &sink.email {
        let addresses = std::iter::once(("from".to_owned(), &email.from)).chain(
            email
                .to
                .iter()
                .enumerate()
                .map(|(i, to)| (format!("to[{i}]"), to)),
        );
        for (field, address) in addresses {
            if let Err(message) = render::check_address(address) {
                problems.push(SpecProblem::new(
                    format!("{at}.notify.email.{field}"),
                    message,
                ));
            }
        }
        if !crate::names::is_dns_subdomain(&email.host.to_ascii_lowercase())
            && crate::fence::literal_ip(&email.host).is_none()
        {
            problems.push(SpecProblem::new(
                format!("{at}.notify.email.host"),
                format!(
                    "{:?} is not a host name or address",
                    crate::names::truncate(&email.host, 256)
                ),
            ));
        }
    }
    problems
}

/// The Secrets a sink reads, each with its field under `notify.`.
fn secret_names(sink: &Sink) -> Vec<(String, &str)> {
    fn url_from(s: Option<&UrlFrom>) -> Option<&crate::secret_ref::SecretKeyRef> {
        s.map(|f| &f.secret_key_ref)
    }
    fn value_from(
        s: Option<&crate::secret_ref::ValueFrom>,
    ) -> Option<&crate::secret_ref::SecretKeyRef> {
        s.map(|f| &f.secret_key_ref)
    }
    let email = sink.email.as_ref();
    let mut refs = vec![
        ("urlFrom".to_owned(), url_from(sink.url_from.as_ref())),
        (
            "slack.urlFrom".into(),
            url_from(sink.slack.as_ref().and_then(|s| s.url_from.as_ref())),
        ),
        (
            "msteams.urlFrom".into(),
            url_from(sink.msteams.as_ref().and_then(|s| s.url_from.as_ref())),
        ),
        (
            "webhook.urlFrom".into(),
            url_from(sink.webhook.as_ref().and_then(|s| s.url_from.as_ref())),
        ),
        (
            "pagerduty.routingKeyFrom".into(),
            sink.pagerduty
                .as_ref()
                .map(|p| &p.routing_key_from.secret_key_ref),
        ),
        (
            "email.usernameFrom".into(),
            value_from(email.and_then(|e| e.username_from.as_ref())),
        ),
        (
            "email.passwordFrom".into(),
            value_from(email.and_then(|e| e.password_from.as_ref())),
        ),
    ];
    for (i, header) in sink.webhook.iter().flat_map(|w| &w.headers).enumerate() {
        refs.push((
            format!("webhook.headers[{i}].valueFrom"),
            value_from(header.value_from.as_ref()),
        ));
    }
    refs.into_iter()
        .filter_map(|(path, r)| r.map(|r| (format!("{path}.secretKeyRef.name"), r.name.as_str())))
        .collect()
}

/// A URL a sink may post to: http(s), at most [`MAX_URL`] long.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL {
        return Err(format!(
            "the URL is {} characters long; at most {} are allowed",
            url.len(),
            MAX_URL
        ));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{:?} must start with http:// or https://",
            crate::names::truncate(url, 256)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

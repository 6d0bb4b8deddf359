//! Sending one notification: reading the sink's Secrets, rendering its body and posting it
//! through the egress fence (or handing it to the SMTP client).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::render::{self, PagerDutyEvent};
use super::types::{EmailSink, PagerDutySink, Sink, SmtpTls, UrlFrom, WebhookSink};
use super::{PAGERDUTY_URL, TIMEOUT, smtp, target};
use crate::fence::{self, EgressPolicy};
use crate::outbound::{Reply, Verdict, describe};
use crate::secret_ref::{HttpHeader, SecretKeyRef};
use crate::write::Writer;

/// Most bytes of a sink's answer read (PagerDuty's JSON is far smaller).
const ANSWER_LIMIT: usize = 16 * 1024;

/// Everything sending needs, owned, so a send can run as a task that outlives the reconcile
/// that started it (the outbound pool).
#[derive(Clone)]
pub struct Courier {
    kube: kube::Client,
    http: reqwest::Client,
    egress: Arc<EgressPolicy>,
    dry_run: bool,
}

impl Courier {
    /// A courier reading Secrets as `writer`'s identity, with a fenced HTTP client of its own.
    pub fn new(writer: &Writer<'_>) -> Self {
        let egress = writer.ctx().config.fence.egress.clone();
        Self::with_http(writer, &fence::http_client(egress))
    }

    /// A courier reading Secrets as `writer`'s identity and posting with `http` (a client
    /// from [`fence::http_client`]).
    pub fn with_http(writer: &Writer<'_>, http: &reqwest::Client) -> Self {
        Courier {
            kube: writer.client().clone(),
            http: http.clone(),
            egress: writer.ctx().config.fence.egress.clone(),
            dry_run: writer.is_dry_run(),
        }
    }

    /// Sends `message` to `sink` once: see [`super::deliver`].
    pub async fn send(self, namespace: String, sink: Sink, message: String, key: String) -> Reply {
        let shown = target(&sink);
        if self.dry_run {
            return Reply {
                outputs: Vec::new(),
                verdict: Verdict::Succeeded(format!("Plan: would notify {shown}")),
            };
        }
        let job = Job {
            courier: &self,
            namespace: &namespace,
            shown: &shown,
        };
        match tokio::time::timeout(TIMEOUT, job.run(&sink, &message, &key)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(reply)) => reply,
            Err(_) => fail(
                "RequestFailed",
                format!(
                    "{shown}: no answer within {}s; not resent, to avoid a duplicate message",
                    TIMEOUT.as_secs()
                ),
                false,
            ),
        }
    }
}

/// The default port of an email sink.
pub(super) fn smtp_port(email: &EmailSink) -> u16 {
    let default = match email.tls.unwrap_or_default() {
        SmtpTls::None => 25,
        SmtpTls::StartTLS => 587,
        SmtpTls::Implicit => 465,
    };
    email
        .port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(default)
}

pub(super) fn fail(reason: &'static str, message: impl Into<String>, retryable: bool) -> Reply {
    Reply {
        outputs: Vec::new(),
        verdict: Verdict::Failed {
            reason,
            message: message.into(),
            retryable,
        },
    }
}

/// One send in progress; `Err` carries a failure, so `?` ends it.
struct Job<'a> {
    courier: &'a Courier,
    namespace: &'a str,
    shown: &'a str,
}

impl Job<'_> {
    async fn run(&self, sink: &Sink, message: &str, key: &str) -> Result<Reply, Reply> {
        if let Some(slack) = &sink.slack {
            let url = self
                .url(slack.url.as_deref(), slack.url_from.as_ref())
                .await?;
            let body = render::slack(slack.title.as_deref(), message);
            return self.post(url, Vec::new(), body.to_string()).await.map(ok);
        }
        if let Some(teams) = &sink.msteams {
            let url = self
                .url(teams.url.as_deref(), teams.url_from.as_ref())
                .await?;
            let body = render::teams(teams.title.as_deref(), message);
            return self.post(url, Vec::new(), body.to_string()).await.map(ok);
        }
        if let Some(pagerduty) = &sink.pagerduty {
            return self.pagerduty(pagerduty, message, key).await;
        }
        if let Some(webhook) = &sink.webhook {
            return self.webhook(webhook, message, key).await;
        }
        if let Some(email) = &sink.email {
            return self.email(email, message, key).await;
        }
        let url = self
            .url(sink.url.as_deref(), sink.url_from.as_ref())
            .await?;
        let body = render::chat(message);
        self.post(url, Vec::new(), body.to_string()).await.map(ok)
    }

    async fn pagerduty(
        &self,
        sink: &PagerDutySink,
        message: &str,
        key: &str,
    ) -> Result<Reply, Reply> {
        let routing_key = self.secret(&sink.routing_key_from.secret_key_ref).await?;
        let url = self.parse(sink.url.as_deref().unwrap_or(PAGERDUTY_URL), "url")?;
        let source = sink
            .source
            .clone()
            .unwrap_or_else(|| format!("runbook-operator/{}", self.namespace));
        let event = PagerDutyEvent {
            action: sink.event_action.unwrap_or_default(),
            dedup_key: sink.dedup_key.as_deref().unwrap_or(key),
            summary: message,
            source: &source,
            severity: sink.severity.unwrap_or_default(),
            custom_details: &sink.custom_details,
        };
        let body = render::pagerduty(routing_key.trim(), &event);
        let (status, answer) = self.post(url, Vec::new(), body.to_string()).await?;
        // PagerDuty answers the key it filed the event under; record it so a later resolve
        // (or a person) can find the incident.
        let filed = serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("dedup_key")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| event.dedup_key.to_owned());
        let mut reply = ok((status, answer));
        reply.outputs.push((
            "dedupKey".into(),
            crate::names::truncate(&filed, 255).into_owned(),
        ));
        Ok(reply)
    }

    async fn webhook(&self, sink: &WebhookSink, message: &str, key: &str) -> Result<Reply, Reply> {
        let body = render::webhook(sink.body.as_deref(), message, key)
            .map_err(|m| fail("InvalidSpec", format!("webhook.body {m}"), false))?;
        let url = self
            .url(sink.url.as_deref(), sink.url_from.as_ref())
            .await?;
        let headers = self.headers(&sink.headers).await?;
        self.post(url, headers, body).await.map(ok)
    }

    async fn email(&self, sink: &EmailSink, message: &str, key: &str) -> Result<Reply, Reply> {
        // Addresses go into SMTP commands and headers: a line break would add one.
        for address in std::iter::once(&sink.from).chain(&sink.to) {
            render::check_address(address)
                .map_err(|m| fail("InvalidSpec", format!("{}: {m}", self.shown), false))?;
        }
        let auth = match (&sink.username_from, &sink.password_from) {
            (Some(user), Some(password)) => Some((
                self.secret(&user.secret_key_ref).await?.trim().to_owned(),
                self.secret(&password.secret_key_ref).await?,
            )),
            _ => None,
        };
        let host = fence::qualified_host(&sink.host, self.namespace);
        let date = jiff::fmt::rfc2822::to_string(&jiff::Zoned::now()).unwrap_or_default();
        let domain = sink.from.rsplit_once('@').map_or("localhost", |(_, d)| d);
        let message_id = format!("{}@{domain}", crate::names::hash8(key));
        let mail = render::Email {
            from: &sink.from,
            to: &sink.to,
            subject: &sink.subject,
            body: message,
            date: &date,
            message_id: &message_id,
        };
        let data = render::email(&mail);
        let server = smtp::Server {
            host: &host,
            port: smtp_port(sink),
            tls: sink.tls.unwrap_or_default(),
        };
        match smtp::send(
            &server,
            &self.courier.egress,
            auth,
            &sink.from,
            &sink.to,
            &data,
        )
        .await
        {
            Ok(answer) => Ok(Reply {
                outputs: vec![
                    ("messageId".into(), message_id),
                    (
                        "smtpReply".into(),
                        crate::names::truncate(&answer, 256).into_owned(),
                    ),
                ],
                verdict: Verdict::Succeeded(format!("email sent through {}", self.shown)),
            }),
            Err(err) => Err(fail(err.reason(), format!("{}: {err}", self.shown), false)),
        }
    }

    /// The URL written inline or read from a Secret.
    async fn url(
        &self,
        inline: Option<&str>,
        from: Option<&UrlFrom>,
    ) -> Result<reqwest::Url, Reply> {
        let text = match (inline, from) {
            (Some(url), _) => url.to_owned(),
            (None, Some(from)) => self.secret(&from.secret_key_ref).await?.trim().to_owned(),
            (None, None) => {
                return Err(fail(
                    "InvalidSpec",
                    format!("{}: set url or urlFrom", self.shown),
                    false,
                ));
            }
        };
        self.parse(&text, if inline.is_some() { "url" } else { "urlFrom" })
    }

    /// A URL, qualified for the namespace; the error never repeats it (it may be a token).
    fn parse(&self, text: &str, field: &str) -> Result<reqwest::Url, Reply> {
        let mut url = reqwest::Url::parse(text).map_err(|err| {
            fail(
                "InvalidSpec",
                format!("{}: {field} is not a URL: {err}", self.shown),
                false,
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(
                "InvalidSpec",
                format!("{}: {field} must be http or https", self.shown),
                false,
            ));
        }
        fence::qualify(&mut url, self.namespace);
        Ok(url)
    }

    /// The value of a Secret key, read as the object's identity.
    async fn secret(&self, reference: &SecretKeyRef) -> Result<String, Reply> {
        let what = format!("Secret/{}", reference.name);
        let secrets = Api::<Secret>::namespaced(self.courier.kube.clone(), self.namespace);
        let secret = secrets.get(&reference.name).await.map_err(|err| {
            let (reason, retryable) = match crate::write::code(&err) {
                Some(404) => ("TargetNotFound", true),
                Some(403) => ("Forbidden", true),
                _ => ("RequestFailed", true),
            };
            let message = match &err {
                kube::Error::Api(status) if status.code == 403 => {
                    crate::identity::refused(&status.message)
                }
                kube::Error::Api(status) => status.message.clone(),
                other => other.to_string(),
            };
            fail(
                reason,
                format!(
                    "reading {what} in namespace {:?} for {}: {message}",
                    self.namespace, self.shown
                ),
                retryable,
            )
        })?;
        secret
            .data
            .and_then(|mut d| d.remove(&reference.key))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
            .ok_or_else(|| {
                fail(
                    "TargetNotFound",
                    format!("{what} has no key {:?} (for {})", reference.key, self.shown),
                    true,
                )
            })
    }

    /// Header values, inline or from Secrets.
    async fn headers(&self, headers: &[HttpHeader]) -> Result<Vec<(String, String)>, Reply> {
        let mut out = Vec::with_capacity(headers.len());
        for header in headers {
            let value = match (&header.value, &header.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => self.secret(&from.secret_key_ref).await?.trim().to_owned(),
                (None, None) => String::new(),
            };
            out.push((header.name.clone(), value));
        }
        Ok(out)
    }

    /// POSTs a JSON body through the fence; a 2xx answer is the status and (capped) body.
    async fn post(
        &self,
        url: reqwest::Url,
        headers: Vec<(String, String)>,
        body: String,
    ) -> Result<(u16, String), Reply> {
        let shown = self.shown;
        let refused = |refused: &fence::Refused| {
            fail(
                "EgressRefused",
                format!("refused to notify {shown}: {refused}"),
                false,
            )
        };
        fence::check_url(&url, &self.courier.egress)
            .await
            .map_err(|r| refused(&r))?;
        let mut request = self
            .courier
            .http
            .post(url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes());
            let value = reqwest::header::HeaderValue::from_str(&value);
            let (Ok(name), Ok(value)) = (name, value) else {
                return Err(fail(
                    "InvalidSpec",
                    format!("{shown}: a header has a name or value that cannot be sent in HTTP"),
                    false,
                ));
            };
            request = request.header(name, value);
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(err) => {
                return Err(match fence::refused_in(&err) {
                    Some(r) => refused(r),
                    None => fail(
                        "RequestFailed",
                        format!("could not reach {shown}: {}", describe(err)),
                        false,
                    ),
                });
            }
        };
        let status = response.status().as_u16();
        let (answer, _) = crate::outbound::read_capped(response, ANSWER_LIMIT).await;
        if !(200..300).contains(&status) {
            return Err(Reply {
                outputs: vec![("httpStatus".into(), status.to_string())],
                verdict: Verdict::Failed {
                    reason: "UnexpectedStatus",
                    message: format!(
                        "{shown} answered {status}: {}",
                        crate::names::truncate(answer.trim(), 256)
                    ),
                    retryable: false,
                },
            });
        }
        Ok((status, answer))
    }
}

/// The success of an HTTP sink.
fn ok((status, _): (u16, String)) -> Reply {
    Reply {
        outputs: vec![("httpStatus".into(), status.to_string())],
        verdict: Verdict::Succeeded(format!("notification sent (answered {status})")),
    }
}

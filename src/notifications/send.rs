//! Sends the messages a [`super::Plan`] decided, after the record is in the status: each one a
//! JSON POST in the outbound pool, through the egress fence, like notify steps. A delivery
//! that fails is logged (naming the sink, never its URL) and not retried: the record already
//! says it was sent, which is what keeps a restarted operator from sending it twice.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Outgoing, render};
use crate::fence;
use crate::identity::Identity;
use crate::outbound::{Key, Owner, Reply, Verdict};
use crate::write::Writer;

/// Most time one lifecycle message may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The object the messages are about.
pub struct About {
    /// Its kind, for logs.
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (keys the pool's requests).
    pub uid: String,
    /// The object as JSON, for `{{ object.X }}`.
    pub object: Value,
    /// Whose rights read a sink's `urlFrom` Secret.
    pub identity: Identity,
}

/// Starts every message of `send` in the outbound pool; returns at once.
pub async fn deliver(writer: &Writer<'_>, about: &About, send: &[Outgoing]) {
    if send.is_empty() || writer.is_dry_run() {
        return;
    }
    let ctx = writer.ctx();
    let policy = ctx.config.fence.egress.clone();
    let client = fence::http_client(policy.clone());
    for out in send {
        let sink = out.sink.describe();
        let url = match resolve(writer, about, out).await {
            Ok(url) => url,
            Err(why) => {
                warn!(kind = about.kind, namespace = %about.namespace, name = %about.name,
                    event = %out.occurrence.id, level = out.level, %sink,
                    "lifecycle notification not sent: {why}");
                continue;
            }
        };
        let text = render(out, &about.object);
        let body = json!({
            "text": text,
            "event": out.occurrence.event.as_str(),
            "eventId": out.occurrence.id,
            "object": about.name,
            "namespace": about.namespace,
            "level": out.level,
        })
        .to_string();
        let key = Key {
            run: format!("lifecycle/{}/{}", about.uid, out.occurrence.id),
            step: out.rule,
            attempt: i32::try_from(out.level).unwrap_or(i32::MAX),
        };
        let owner = Owner {
            namespace: about.namespace.clone(),
            name: about.name.clone(),
        };
        let labels = (
            about.kind,
            about.namespace.to_owned(),
            about.name.to_owned(),
            out.occurrence.id.clone(),
            out.level,
            sink,
        );
        let post = post(client.clone(), policy.clone(), url, body, labels);
        ctx.outbound.start(key, owner, post);
    }
}

/// The sink's URL, qualified for the namespace; an error says why not (never the URL).
async fn resolve(
    writer: &Writer<'_>,
    about: &About,
    out: &Outgoing,
) -> Result<reqwest::Url, String> {
    let raw = match (&out.sink.url, &out.sink.url_from) {
        (Some(url), _) => url.clone(),
        (None, Some(from)) => {
            let reference = &from.secret_key_ref;
            let reader = writer
                .acting_as(&about.identity)
                .map_err(|err| err.to_string())?;
            let secret = reader
                .api::<Secret>(&about.namespace)
                .get(&reference.name)
                .await
                .map_err(|err| {
                    format!(
                        "reading Secret/{} as {}: {}",
                        reference.name,
                        about.identity.username(),
                        crate::write::status_label(&err)
                    )
                })?;
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&reference.key))
                .ok_or_else(|| {
                    format!("Secret/{} has no key {:?}", reference.name, reference.key)
                })?;
            String::from_utf8_lossy(&bytes.0).trim().to_owned()
        }
        (None, None) => return Err("the sink needs url or urlFrom".into()),
    };
    let mut url =
        reqwest::Url::parse(&raw).map_err(|err| format!("the webhook URL is not a URL: {err}"))?;
    fence::qualify(&mut url, &about.namespace);
    Ok(url)
}

type Labels = (&'static str, String, String, String, usize, String);

async fn post(
    client: reqwest::Client,
    policy: Arc<fence::EgressPolicy>,
    url: reqwest::Url,
    body: String,
    (kind, namespace, name, event, level, sink): Labels,
) -> Reply {
    let outcome: Result<u16, String> = async {
        fence::check_url(&url, &policy)
            .await
            .map_err(|r| format!("refused by the egress fence: {r}"))?;
        let request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send();
        let response = tokio::time::timeout(TIMEOUT, request)
            .await
            .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
            .map_err(|err| match fence::refused_in(&err) {
                Some(r) => format!("refused by the egress fence: {r}"),
                None => err.without_url().to_string(),
            })?;
        let code = response.status().as_u16();
        if response.status().is_success() {
            Ok(code)
        } else {
            Err(format!("the webhook answered {code}"))
        }
    }
    .await;
    match outcome {
        Ok(code) => {
            info!(kind, %namespace, %name, %event, level, %sink, code, "lifecycle notification sent");
            Reply {
                outputs: Vec::new(),
                verdict: Verdict::Succeeded("sent".into()),
            }
        }
        Err(why) => {
            warn!(kind, %namespace, %name, %event, level, %sink, "lifecycle notification failed: {why}");
            Reply {
                outputs: Vec::new(),
                verdict: Verdict::Failed {
                    reason: "NotificationFailed",
                    message: why,
                    retryable: false,
                },
            }
        }
    }
}

/// Writes `status` (which holds `plan.sent`) on `obj`, then starts `plan.send`: the record
/// first, so a message is never sent without it. With messages to send the write is guarded
/// by `resource_version` (see [`Writer::apply_status_guarded`]). Returns the resourceVersion
/// written, as [`Writer::apply_status`] does.
pub async fn record_then_send<K, S>(
    writer: &Writer<'_>,
    (obj, resource_version): (&K, Option<&str>),
    current: Option<&S>,
    status: &S,
    send: &[Outgoing],
    about: impl FnOnce() -> About,
) -> Result<Option<String>, crate::write::WriteError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize + PartialEq,
{
    if send.is_empty() {
        return writer.apply_status(obj, current, status).await;
    }
    let written = writer
        .apply_status_guarded(obj, resource_version, current, status)
        .await?;
    deliver(writer, &about(), send).await;
    Ok(written)
}

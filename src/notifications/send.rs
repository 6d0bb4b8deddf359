//! Sends the messages a [`super::Plan`] decided, after the record is in the status: each one
//! through [`crate::notify::Courier`] (every sink of the notify step, its Secrets read as the
//! object's identity, the egress fence) in the outbound pool. A delivery that fails is logged
//! (naming the sink and host, never a URL or credential) and not retried: the record already
//! says it was sent, which is what keeps a restarted operator from sending it twice.

use serde_json::Value;
use tracing::{info, warn};

use super::{Outgoing, render};
use crate::identity::Identity;
use crate::notify::Courier;
use crate::outbound::{Key, Owner, Verdict};
use crate::write::Writer;

/// The object the messages are about.
pub struct About {
    /// Its kind, for logs.
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (keys the pool's requests and the dedup key).
    pub uid: String,
    /// The object as JSON, for `{{ object.X }}`.
    pub object: Value,
    /// Whose rights read the sinks' Secrets.
    pub identity: Identity,
}

/// Starts every message of `send` in the outbound pool; returns at once.
pub async fn deliver(writer: &Writer<'_>, about: &About, send: &[Outgoing]) {
    if send.is_empty() || writer.is_dry_run() {
        return;
    }
    let reader = match writer.acting_as(&about.identity) {
        Ok(reader) => reader,
        Err(err) => {
            warn!(kind = about.kind, namespace = %about.namespace, name = %about.name,
                "lifecycle notifications not sent: {err}");
            return;
        }
    };
    for out in send {
        let text = render(out, &about.object);
        let sink = crate::notify::target(&out.sink);
        let key = Key {
            run: format!("lifecycle/{}/{}", about.uid, out.occurrence.id),
            step: out.rule,
            attempt: i32::try_from(out.level).unwrap_or(i32::MAX),
        };
        let owner = Owner {
            namespace: about.namespace.clone(),
            name: about.name.clone(),
        };
        let courier = Courier::new(&reader);
        let (kind, namespace, name) = (about.kind, about.namespace.clone(), about.name.clone());
        let (event, level) = (out.occurrence.id.clone(), out.level);
        let dedup = format!("{}/{}", about.uid, out.occurrence.id);
        let target = out.sink.clone();
        let post = async move {
            let reply = courier.send(namespace.clone(), target, text, dedup).await;
            match &reply.verdict {
                Verdict::Succeeded(_) => {
                    info!(kind, %namespace, %name, %event, level, %sink, "lifecycle notification sent");
                }
                Verdict::Failed {
                    reason, message, ..
                } => {
                    warn!(kind, %namespace, %name, %event, level, %sink, reason,
                        "lifecycle notification failed: {message}");
                }
            }
            reply
        };
        writer.ctx().outbound.start(key, owner, post);
    }
}

/// Writes `status` (which holds `plan.sent`) on `obj`, then starts `send`: the record first,
/// so a message is never sent without it. With messages to send the write is guarded by
/// `resource_version` (see [`Writer::apply_status_guarded`]). Returns the resourceVersion
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

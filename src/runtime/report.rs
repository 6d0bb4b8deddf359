//! How the runtime reports a request the API server refused (403) or a reconcile that
//! panicked on the object itself: a `Ready=False` (and, for a panic, `Stalled=True`) condition
//! and one Warning Event per object and message, so neither looks like an object that is
//! merely slow.

use std::sync::Arc;

use kube::api::{Api, Patch};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::Reported;
use crate::conditions::HasConditions;
use crate::context::Context;
use crate::time::now;
use crate::write::Writer;

/// The API server's message if `err`, or anything it was caused by, is a 403.
pub fn forbidden(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(kube::Error::Api(status)) = err.downcast_ref::<kube::Error>()
            && status.code == 403
        {
            return Some(status.message.clone());
        }
        cause = err.source();
    }
    None
}

/// The sentence about a request refused to an object's identity (not to the operator's own),
/// if `err` or anything it was caused by is one.
pub fn refused_identity(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(write) = err.downcast_ref::<crate::write::WriteError>()
            && let Some(sentence) = write.refused_identity()
        {
            return Some(sentence);
        }
        if let Some(refused) = err.downcast_ref::<crate::identity::Refused>() {
            return Some(refused.0.clone());
        }
        cause = err.source();
    }
    None
}

/// The refusals already reported per object, so a reconcile retried every few seconds
/// reports each one once (the Event and the condition stay until it is fixed).
#[derive(Clone, Default)]
pub(super) struct Refusals(
    Arc<std::sync::Mutex<std::collections::HashMap<(String, String), String>>>,
);

impl Refusals {
    pub(super) fn key<K: Resource>(obj: &K) -> (String, String) {
        (obj.namespace().unwrap_or_default(), obj.name_any())
    }

    /// Records `message` for `obj`; false when it was the last one reported for it.
    pub(super) fn first_time<K: Resource>(&self, obj: &K, message: &str) -> bool {
        let Ok(mut map) = self.0.lock() else {
            return true;
        };
        map.insert(Self::key(obj), message.to_owned()).as_deref() != Some(message)
    }

    /// Forgets `obj` once it reconciles again.
    pub(super) fn forget<K: Resource>(&self, obj: &K) {
        if let Ok(mut map) = self.0.lock()
            && !map.is_empty()
        {
            map.remove(&Self::key(obj));
        }
    }
}

/// The sentence a person reads in the condition and the Event about a refused request.
pub fn forbidden_note(message: &str) -> String {
    format!(
        "{message}. The operator's ServiceAccount lacks this permission: add it to the operator's \
         RBAC (the Helm chart's rules grant it); the operator retries with a backoff from 5s to 5 minutes"
    )
}

/// Publishes the Warning Event and sets `Ready=False` (reason `Forbidden`) on `obj`.
pub(super) async fn report_forbidden<K: Reported>(
    ctx: Arc<Context>,
    controller: &'static str,
    obj: Arc<K>,
    note: String,
) {
    let desired = vec![crate::conditions::Desired::new(
        crate::conditions::READY,
        crate::conditions::Status::False,
        REASON_FORBIDDEN,
        note.clone(),
    )];
    report(ctx, controller, obj, REASON_FORBIDDEN, desired, note).await;
}

/// Publishes the Warning Event and sets `Stalled=True` and `Ready=False` (reason
/// `InternalError`) on `obj`, whose reconcile panicked. The note says what happened and what
/// to do, never what the panic said (it may quote the object's spec).
pub(super) async fn report_internal_error<K: Reported>(
    ctx: Arc<Context>,
    controller: &'static str,
    obj: Arc<K>,
) {
    let note = internal_error_note(controller);
    let desired = [crate::conditions::READY, crate::conditions::STALLED]
        .into_iter()
        .map(|type_| {
            let status = match type_ == crate::conditions::STALLED {
                true => crate::conditions::Status::True,
                false => crate::conditions::Status::False,
            };
            crate::conditions::Desired::new(type_, status, REASON_INTERNAL_ERROR, note.clone())
        })
        .collect();
    report(ctx, controller, obj, REASON_INTERNAL_ERROR, desired, note).await;
}

/// The sentence a person reads in the condition and the Event after a reconcile panicked.
pub fn internal_error_note(controller: &str) -> String {
    format!(
        "the operator failed inside its {controller} controller while reconciling this object (a \
         panic, counted in runbook_operator_reconcile_panics_total); other objects are not \
         affected. It is retried every 5 minutes and on every change; if it persists, report it \
         with the operator's log of this time"
    )
}

/// Publishes a Warning Event with `reason` and merges `desired` into `obj`'s conditions. The
/// conditions go in by a merge patch of `status.conditions` guarded by the object's
/// resourceVersion: a server-side apply of part of the status would drop the rest of it.
async fn report<K: Reported>(
    ctx: Arc<Context>,
    controller: &'static str,
    obj: Arc<K>,
    reason: &'static str,
    desired: Vec<crate::conditions::Desired>,
    note: String,
) {
    ctx.publish(
        controller,
        &obj.object_ref(&()),
        EventType::Warning,
        reason,
        note,
    )
    .await;
    let writer = Writer::new(&ctx, controller);
    let api: Api<K> = writer.api(&obj.namespace().unwrap_or_default());
    // The cached copy may be behind the object (its controller keeps writing status): on a
    // conflict, merge into the current copy instead.
    let mut current = obj;
    for _ in 0..3 {
        let existing = current
            .status()
            .map(|s| s.conditions().to_vec())
            .unwrap_or_default();
        let merged =
            crate::conditions::merge(&existing, &desired, current.meta().generation, &now());
        if merged == existing {
            return;
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": current.resource_version()},
            "status": {"conditions": merged},
        });
        let err = match writer
            .patch_status(&api, &current.name_any(), &Patch::Merge(&patch), "status")
            .await
        {
            Ok(_) => return,
            Err(err) => err,
        };
        let conflict = err.conflict();
        let fresh = match conflict {
            true => api.get_opt(&current.name_any()).await,
            false => Ok(None),
        };
        match fresh {
            Ok(Some(fresh)) => current = Arc::new(fresh),
            _ => {
                warn!(controller, object = %current.name_any(), %err, reason, "cannot record the condition in status");
                return;
            }
        }
    }
}

/// Reason of the condition and Event that report a request the API server refused (403).
pub const REASON_FORBIDDEN: &str = "Forbidden";

/// Reason of the conditions (`Stalled=True`, `Ready=False`) and Event that report a reconcile
/// that panicked.
pub const REASON_INTERNAL_ERROR: &str = "InternalError";

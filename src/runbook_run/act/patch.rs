//! The patch step: a merge, JSON or apply patch to any namespaced object.

use kube::api::{DynamicObject, Patch};
use kube::core::GroupVersionKind;
use serde_json::json;

use super::{Act, Error, Exec, failed, sent_marker, write_error};
use crate::runbook_run::types::StepStatus;

/// Sends the step's patch; a JSON patch whose outcome a restart lost is not re-sent.
pub(super) async fn send(
    exec: &Exec<'_>,
    patch: &crate::step::PatchAction,
    entry: &mut StepStatus,
    fresh_intent: bool,
) -> Result<Act, Error> {
    let target = &patch.target;
    let what = format!("{}/{}", target.kind, target.name);
    entry.target = Some(what.clone());
    let allowed = &exec.writer.ctx().config.fence.allow_patch_kinds;
    if let Some(why) = crate::fence::patch_refusal(&target.api_version, &target.kind, allowed) {
        return Ok(Act::Failed {
            reason: "PatchRefused",
            message: format!("{what}: {why}"),
            retryable: false,
        });
    }
    if !exec.plan() {
        if entry.outputs.get("sent") != Some(&sent_marker(entry)) {
            entry.outputs.insert("sent".into(), sent_marker(entry));
            return Ok(Act::Record);
        }
        // Merge and apply patches give the same result when repeated; a JSON patch (e.g. an
        // append) may not, so one whose outcome was lost in a restart is not re-sent.
        if !fresh_intent && patch.type_ == crate::step::PatchType::Json {
            return Ok(Act::Failed {
                reason: "OutcomeUnknown",
                message: format!(
                    "the operator restarted after sending the JSON patch to {what}; not re-sent, since a JSON patch may not be idempotent: check {what}"
                ),
                retryable: false,
            });
        }
    }
    let (group, version) = match target.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", target.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    let (resource, caps) = match kube::discovery::pinned_kind(exec.client(), &gvk).await {
        Ok(found) => found,
        Err(err) => {
            return Ok(failed(
                "TargetNotFound",
                format!("unknown kind {} {}: {err}", target.api_version, target.kind),
            ));
        }
    };
    if caps.scope != kube::discovery::Scope::Namespaced {
        return Ok(Act::Failed {
            reason: "InvalidSpec",
            message: format!(
                "{} is cluster-scoped; patch targets must live in the run's namespace",
                target.kind
            ),
            retryable: false,
        });
    }
    let api = exec.writer.api_with(exec.namespace, &resource);
    let writer = &exec.writer;
    let request: Result<DynamicObject, _> = match patch.type_ {
        crate::step::PatchType::Merge => {
            writer
                .patch_dynamic(
                    &api,
                    &resource,
                    &target.name,
                    &Patch::Merge(&patch.patch),
                    "patch",
                )
                .await
        }
        crate::step::PatchType::Json => {
            match serde_json::from_value::<json_patch::Patch>(patch.patch.clone()) {
                Ok(ops) => {
                    writer
                        .patch_dynamic(
                            &api,
                            &resource,
                            &target.name,
                            &Patch::<()>::Json(ops),
                            "patch",
                        )
                        .await
                }
                Err(err) => {
                    return Ok(Act::Failed {
                        reason: "InvalidSpec",
                        message: format!("patch is not a JSON patch: {err}"),
                        retryable: false,
                    });
                }
            }
        }
        crate::step::PatchType::Apply => {
            let mut body = patch.patch.clone();
            if let Some(obj) = body.as_object_mut() {
                obj.insert("apiVersion".into(), json!(target.api_version));
                obj.insert("kind".into(), json!(target.kind));
                obj.entry("metadata")
                    .or_insert(json!({}))
                    .as_object_mut()
                    .map(|m| m.insert("name".into(), json!(target.name)));
            }
            // The writer sends an apply with the operator's field manager, forced.
            writer
                .patch_dynamic(&api, &resource, &target.name, &Patch::Apply(&body), "patch")
                .await
        }
    };
    match request {
        Ok(_) => Ok(Act::Succeeded(if exec.plan() {
            format!("Plan: would patch {what} (dry run accepted)")
        } else {
            format!("patched {what}")
        })),
        Err(err) => write_error(err, &what, exec.namespace),
    }
}

//! The deletePods step: the pods to delete are recorded first, then deleted.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};

use super::{Act, Error, Exec, write_error};
use crate::runbook_run::types::StepStatus;

/// Records the matching pods, then deletes exactly those (already gone counts as deleted).
pub(super) async fn delete(
    exec: &Exec<'_>,
    delete: &crate::step::DeletePodsAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    // Keys and values are checked, not joined raw: a value such as `a,b` or `x)` would
    // otherwise change which pods the selector matches.
    let selector = match delete.selector.selector() {
        Ok(selector) => selector,
        Err(message) => {
            return Ok(Act::Failed {
                reason: "InvalidSpec",
                message: format!("deletePods.selector.matchLabels: {message}"),
                retryable: false,
            });
        }
    };
    entry.target = Some(format!("pods {selector}"));
    let pods = exec.writer.api::<Pod>(exec.namespace);
    let Some(recorded) = entry.outputs.get("pods").cloned() else {
        let mut names: Vec<String> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|err| Error::read(format!("pods {selector}"), exec.namespace, err))?
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        let max = match super::number(delete.max_count.as_ref(), 1, "deletePods.maxCount") {
            Ok(max) => max,
            Err(act) => return Ok(act),
        };
        if let Some(max) = max {
            names.truncate(usize::try_from(max).unwrap_or(0));
        }
        entry.outputs.insert("pods".into(), names.join(","));
        return Ok(Act::Record);
    };
    let names: Vec<&str> = recorded.split(',').filter(|n| !n.is_empty()).collect();
    for name in &names {
        // Already gone (Ok(false)) is what the step wants.
        if let Err(err) = exec
            .writer
            .delete(&pods, name, &DeleteParams::default(), "delete")
            .await
        {
            return write_error(err, &format!("Pod/{name}"), exec.namespace);
        }
    }
    Ok(Act::Succeeded(match (names.len(), exec.plan()) {
        (0, _) => format!("no pods matched {selector}"),
        (n, true) => format!("Plan: would delete {n} pod(s): {}", names.join(", ")),
        (n, false) => format!("deleted {n} pod(s): {}", names.join(", ")),
    }))
}

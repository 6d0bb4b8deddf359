//! `kubectl rollout restart` (kubectl's `objectrestarter.go`).

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;

use super::{Error, RESTARTED_AT_ANNOTATION, is_paused, nest};

/// The `kubectl.kubernetes.io/restartedAt` value kubectl writes for `now`: RFC 3339 to the
/// second (Go's `time.RFC3339` drops sub-seconds), in UTC, which is what kubectl prints on a
/// machine (or pod) whose local zone is UTC.
pub fn restarted_at(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The strategic merge patch `kubectl rollout restart` sends ([`PatchType::StrategicMerge`]).
///
/// It is the same for Deployments, StatefulSets and DaemonSets: only the pod template's
/// `restartedAt` annotation changes, which is enough for each controller to replace every pod
/// under its usual rollout rules. Check a Deployment with [`check_restartable`] first. Two
/// restarts within the same second produce the same value and so no rollout; kubectl reports
/// that case as an "empty patch" error.
pub fn restart_patch(now: Timestamp) -> Value {
    nest(
        &[
            "spec",
            "template",
            "metadata",
            "annotations",
            RESTARTED_AT_ANNOTATION,
        ],
        Value::String(restarted_at(now)),
    )
}

/// Refuses to restart a paused Deployment, as kubectl's object restarter does.
pub fn check_restartable(d: &Deployment) -> Result<(), Error> {
    if is_paused(d) {
        return Err(Error::RestartPaused {
            name: d.metadata.name.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

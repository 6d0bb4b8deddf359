//! `kubectl rollout status` for Deployments and StatefulSets (kubectl's `rollout_status.go`).

use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

use super::PROGRESS_DEADLINE_EXCEEDED;

/// Where a rollout stands, with kubectl's message (without its trailing newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutStatus {
    /// The rollout is complete; kubectl would exit 0.
    Done(String),
    /// The rollout is still going; kubectl would keep watching.
    Waiting(String),
    /// kubectl would stop with this error (progress deadline exceeded, unsupported strategy).
    Failed(String),
}

impl RolloutStatus {
    /// kubectl's message for this state.
    pub fn message(&self) -> &str {
        match self {
            RolloutStatus::Done(m) | RolloutStatus::Waiting(m) | RolloutStatus::Failed(m) => m,
        }
    }

    /// Whether the rollout is complete.
    pub fn is_done(&self) -> bool {
        matches!(self, RolloutStatus::Done(_))
    }
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// `kubectl rollout status deployment/<name>` for one observation of the Deployment.
///
/// Order matters and is kubectl's: nothing is judged until the controller has observed the
/// current generation (status would describe the previous spec); then a timed-out
/// `Progressing` condition fails; then new replicas, old replicas and availability are
/// checked in turn. A paused Deployment is not special-cased, exactly as in kubectl: it keeps
/// waiting. The pod-level warnings newer kubectl appends (image pull back-off and the like)
/// need a pod list and are left to the caller.
pub fn deployment_rollout_status(d: &Deployment) -> RolloutStatus {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    if generation > observed {
        return RolloutStatus::Waiting(
            "Waiting for deployment spec update to be observed...".into(),
        );
    }

    // kubectl looks at the first condition of type Progressing only.
    let progressing = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conds| conds.iter().find(|c| c.type_ == "Progressing"));
    if progressing.is_some_and(|c| c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)) {
        return RolloutStatus::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }

    // Go reads absent counters as 0; i64 keeps the subtraction from overflowing.
    let updated = i64::from(status.and_then(|s| s.updated_replicas).unwrap_or(0));
    let replicas = i64::from(status.and_then(|s| s.replicas).unwrap_or(0));
    let available = i64::from(status.and_then(|s| s.available_replicas).unwrap_or(0));
    // An unset spec.replicas skips this check, as in kubectl (the server always defaults it).
    if let Some(wanted) = d.spec.as_ref().and_then(|s| s.replicas)
        && updated < i64::from(wanted)
    {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutStatus::Done(format!("deployment {name:?} successfully rolled out"))
}

/// `kubectl rollout status statefulset/<name>` for one observation of the StatefulSet.
///
/// As in kubectl: an `OnDelete` StatefulSet has no rollout to follow, so it fails with
/// kubectl's error; a rollout is not judged before the controller has observed the
/// generation; all replicas must be ready; with a `rollingUpdate` block the partition decides
/// completion (the API server always fills in `partition: 0`, which is why kubectl prints
/// "partitioned roll out complete" even for unpartitioned sets); without one the current and
/// update revisions must meet.
///
/// One deliberate difference: an absent `updateStrategy` is read as `RollingUpdate`, the
/// server's default, where kubectl (given an object the server never produces) would fail.
pub fn statefulset_rollout_status(s: &StatefulSet) -> RolloutStatus {
    let spec = s.spec.as_ref();
    let strategy = spec.and_then(|sp| sp.update_strategy.as_ref());
    let strategy_type = strategy
        .and_then(|st| st.type_.as_deref())
        .unwrap_or("RollingUpdate");
    if strategy_type != "RollingUpdate" {
        return RolloutStatus::Failed(
            "rollout status is only available for RollingUpdate strategy type".into(),
        );
    }

    let status = s.status.as_ref();
    let generation = s.metadata.generation.unwrap_or(0);
    let observed = status.and_then(|st| st.observed_generation).unwrap_or(0);
    if observed == 0 || generation > observed {
        return RolloutStatus::Waiting(
            "Waiting for statefulset spec update to be observed...".into(),
        );
    }

    let replicas = spec.and_then(|sp| sp.replicas);
    let ready = i64::from(status.and_then(|st| st.ready_replicas).unwrap_or(0));
    if let Some(wanted) = replicas
        && ready < i64::from(wanted)
    {
        return RolloutStatus::Waiting(format!(
            "Waiting for {} pods to be ready...",
            i64::from(wanted) - ready
        ));
    }

    let updated = i64::from(status.and_then(|st| st.updated_replicas).unwrap_or(0));
    if let Some(rolling) = strategy.and_then(|st| st.rolling_update.as_ref()) {
        if let (Some(wanted), Some(partition)) = (replicas, rolling.partition) {
            let to_update = i64::from(wanted) - i64::from(partition);
            if updated < to_update {
                return RolloutStatus::Waiting(format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {to_update} new pods have been updated..."
                ));
            }
        }
        return RolloutStatus::Done(format!(
            "partitioned roll out complete: {updated} new pods have been updated..."
        ));
    }

    let update_revision = status
        .and_then(|st| st.update_revision.as_deref())
        .unwrap_or_default();
    let current_revision = status
        .and_then(|st| st.current_revision.as_deref())
        .unwrap_or_default();
    if update_revision != current_revision {
        return RolloutStatus::Waiting(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
        ));
    }
    let current = status.and_then(|st| st.current_replicas).unwrap_or(0);
    RolloutStatus::Done(format!(
        "statefulset rolling update complete {current} pods at revision {current_revision}..."
    ))
}

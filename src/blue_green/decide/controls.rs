//! Argo Rollouts' controls, as pure rules [`decide`](super::decide) and the slot objects use:
//! when promotion waits (`autoPromote`, the promote annotation, `autoPromoteAfter`), when the
//! maintenance window gates (also for a rollback with `rollbackRequiresWindow`), when a retry
//! of an aborted revision applies, what a retry's validation runs are called, and the pod
//! anti-affinity between the slots.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use std::collections::BTreeMap;

use crate::blue_green::observe::{Record, ReleaseResult, ReleaseState};
use crate::blue_green::types::{AntiAffinity, BlueGreenReleaseStatus};
use crate::time::{add, whole_seconds};

use super::decision::PromotionWait;
use super::settings::Settings;

/// The topology the slots are kept apart on: one node.
pub const ANTI_AFFINITY_TOPOLOGY: &str = "kubernetes.io/hostname";

/// Who a full promotion is recorded as when no admission stamp names anyone (the chart's
/// admission policy is not installed).
pub const UNKNOWN_USER: &str = "unknown";

/// Why a validated revision still waits for promotion, if it does.
///
/// A promote annotation naming `desired` promotes at once. With `autoPromoteAfter`, the
/// revision is promoted that long after it became ready to promote (`ready_at`, or `now` when
/// it just did), whatever `autoPromote` says. Otherwise `autoPromote` true promotes at once and
/// false waits for the annotation.
pub fn promotion_wait(
    auto_promote: bool,
    after: Option<SignedDuration>,
    promote: Option<&str>,
    desired: &str,
    ready_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<PromotionWait> {
    if promote == Some(desired) {
        return None;
    }
    if let Some(after) = after {
        let at = add(ready_at.unwrap_or_else(|| whole_seconds(now)), after);
        return (now < at).then_some(PromotionWait::Scheduled { at });
    }
    if auto_promote {
        return None;
    }
    Some(match promote {
        Some(named) => PromotionWait::OtherRevision {
            named: named.to_owned(),
        },
        None => PromotionWait::Manual,
    })
}

/// Whether the switch waits for `requiresMaintenanceWindow`: always for a validated release,
/// and for a rollback to a known-good revision (the fast track) only with
/// `rollbackRequiresWindow` (a first release, with nothing serving, is never held).
pub fn window_gates(settings: &Settings, fast_track: bool, first_release: bool) -> bool {
    settings.requires_window
        && (!fast_track || (settings.rollback_requires_window && !first_release))
}

/// Whether the retry annotation reopens the aborted `record` of the desired revision: it names
/// that revision, and traffic has settled back on the active slot (a switch back has
/// converged), so the retry starts from a known state.
pub fn retry_applies(state: &ReleaseState, record: &Record) -> bool {
    state.retry.as_deref() == Some(state.desired_revision.as_str())
        && record.revision == state.desired_revision
        && matches!(
            record.result,
            Some(ReleaseResult::Aborted | ReleaseResult::RolledBack)
        )
        && (state.active_slot.is_none() || state.switched_at.is_some())
}

/// Whether the retry annotation has done its work and should be removed: the open release of
/// the desired revision is a retry (attempt 2 or later) and the annotation still names it.
pub fn retry_consumed(state: &ReleaseState, open: &Record) -> bool {
    open.attempt > 1 && state.retry.as_deref() == Some(state.desired_revision.as_str())
}

/// Who a full promotion is recorded as: the admission stamp, else [`UNKNOWN_USER`].
pub fn promoted_by(stamp: Option<&str>) -> String {
    stamp.unwrap_or(UNKNOWN_USER).to_owned()
}

/// The attempt of the newest record of `revision` in `status` (1 when there is none).
pub fn attempt(status: Option<&BlueGreenReleaseStatus>, revision: &str) -> i32 {
    status
        .and_then(|s| s.history.iter().find(|r| r.revision == revision))
        .and_then(|r| r.attempt)
        .unwrap_or(1)
}

/// What names the validation runs of `revision` at `attempt`: the revision for the first try,
/// `<revision>-<attempt>` for a retry, so a retry never reads the failed run of the try before.
pub fn run_revision(revision: &str, attempt: i32) -> String {
    if attempt > 1 {
        format!("{revision}-{attempt}")
    } else {
        revision.to_owned()
    }
}

/// The pod spec of a slot's Deployment: `spec` with, when `anti_affinity` is set, a pod
/// anti-affinity term against the pods `other` selects (the other slot's selector labels) on
/// [`ANTI_AFFINITY_TOPOLOGY`], added to whatever anti-affinity the template already has.
pub fn slot_pod_spec(
    spec: Option<PodSpec>,
    anti_affinity: Option<&AntiAffinity>,
    other: BTreeMap<String, String>,
) -> Option<PodSpec> {
    let Some(wanted) = anti_affinity else {
        return spec;
    };
    let mut spec = spec?;
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(other),
            ..LabelSelector::default()
        }),
        topology_key: ANTI_AFFINITY_TOPOLOGY.to_owned(),
        ..PodAffinityTerm::default()
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let anti = affinity
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default);
    if let Some(preferred) = &wanted.preferred_during_scheduling_ignored_during_execution {
        anti.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight: preferred.weight,
                pod_affinity_term: term,
            });
    } else if wanted
        .required_during_scheduling_ignored_during_execution
        .is_some()
    {
        anti.required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
    }
    Some(spec)
}

#[cfg(test)]
mod tests;

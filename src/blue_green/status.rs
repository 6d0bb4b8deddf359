//! The status of a BlueGreenRelease, built without I/O: what a decision records
//! ([`update_status`]), the active slot's figures and every condition ([`status`]), the status
//! of an invalid spec ([`invalid`]), and what reads it back ([`is_degraded`]).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};

use super::decide::{Decision, ScaleReason, slot_selector};
use super::observe::{Cluster, ReleaseResult, Slot, SlotView};
use super::types::{
    BlueGreenRelease, BlueGreenReleaseStatus, ComponentStatus, Phase, ReleaseRecord,
};
use crate::conditions::{self, Desired, Status};
use crate::runbook_run::StepStatus;
use crate::step::Step;
use crate::validation::{self, Note, Verdict};

#[cfg(test)]
mod tests;

/// Releases kept in `status.history`.
pub const HISTORY_LIMIT: usize = 5;

/// The Ready condition's message for a valid release.
pub const READY_MESSAGE: &str = "the release is valid and its Services exist";

/// Condition type: the active slot is fully rolled out (every replica updated and available).
pub const AVAILABLE: &str = "Available";
/// Condition type: the active Service's endpoints are only ready pods of the active slot.
pub const TRAFFIC_SWITCHED: &str = "TrafficSwitched";
/// Condition type: a release failed (aborted, switched back) or traffic cannot be put where it
/// belongs (no ready pods).
pub const DEGRADED: &str = "Degraded";

/// Available reason: the active slot is fully rolled out.
pub const REASON_SLOT_AVAILABLE: &str = "SlotAvailable";
/// Available reason: the active slot is not fully rolled out.
pub const REASON_SLOT_NOT_AVAILABLE: &str = "SlotNotAvailable";
/// Available and TrafficSwitched reason: no slot serves yet (nothing was released).
pub const REASON_NO_ACTIVE_SLOT: &str = "NoActiveSlot";
/// TrafficSwitched reason: the endpoints are only ready pods of the active slot.
pub const REASON_ENDPOINTS_CONVERGED: &str = "EndpointsConverged";
/// TrafficSwitched reason: waiting for the endpoints to be only ready pods of the active slot.
pub const REASON_ENDPOINTS_CONVERGING: &str = "EndpointsConverging";
/// Degraded reason: the Service names another slot, and the active one has no ready pods to
/// put back.
pub const REASON_NO_READY_PODS: &str = "NoReadyPods";
/// Degraded reason when the cause of an abort is no longer known: the revision was not
/// promoted.
pub const REASON_ABORTED: &str = "Aborted";
/// Degraded reason: nothing failed.
pub const REASON_HEALTHY: &str = "Healthy";
/// Reconciling reason: nothing to do.
pub const REASON_SETTLED: &str = "Settled";
/// Reconciling reason: the release stopped (see the Degraded condition).
pub const REASON_DEGRADED: &str = "Degraded";

/// Sets `status.desiredRevision`; when it changes, `status.validation` is cleared, because
/// validation entries always belong to `desiredRevision`. Every status write goes through this,
/// so stale steps of a replaced revision never count for a new one (the controller also stops
/// any step still running for the old revision).
pub fn record_desired_revision(status: &mut BlueGreenReleaseStatus, revision: &str) {
    if status.desired_revision.as_deref() != Some(revision) {
        status.desired_revision = Some(revision.to_owned());
        status.validation.clear();
    }
}

/// Opens a release record (newest first, at most [`HISTORY_LIMIT`] kept).
pub fn begin_record(
    history: &mut Vec<ReleaseRecord>,
    revision: &str,
    images: Vec<String>,
    now: Timestamp,
) {
    history.insert(
        0,
        ReleaseRecord {
            revision: revision.to_owned(),
            images,
            result: None,
            start_time: Some(crate::time::to_time(now)),
            completion_time: None,
            attempt: None,
            promoted_full_at: None,
            promoted_full_by: None,
        },
    );
    history.truncate(HISTORY_LIMIT);
}

/// Closes the newest open record of `revision`, if there is one.
pub fn close_record(
    history: &mut [ReleaseRecord],
    revision: &str,
    result: ReleaseResult,
    now: Timestamp,
) {
    if let Some(record) = history
        .iter_mut()
        .find(|record| record.revision == revision && record.result.is_none())
    {
        record.result = Some(result.as_str().to_owned());
        record.completion_time = Some(crate::time::to_time(now));
    }
}

/// Records in status what `decision` did, once the controller has carried it out (for
/// [`Decision::SwitchTraffic`] and [`Decision::SwitchBack`]: *before* patching the Service).
/// `desired_revision` is the current template's revision, `images` its images. The scale
/// fields and conditions are [`status`]'s; validation steps come from the runs
/// ([`mirror_validation`], [`record_validation_started`]).
pub fn update_status(
    status: &mut BlueGreenReleaseStatus,
    desired_revision: &str,
    decision: &Decision,
    images: &[String],
    now: Timestamp,
) {
    record_desired_revision(status, desired_revision);
    if let Some(phase) = decision.phase() {
        status.phase = Some(phase);
    }
    let at = |t: Timestamp| Some(crate::time::to_time(t));
    match decision {
        Decision::BeginRelease {
            revision,
            slot,
            supersedes,
            ..
        } => {
            if let Some(old) = supersedes {
                close_record(&mut status.history, old, ReleaseResult::Superseded, now);
            }
            begin_record(&mut status.history, revision, images.to_vec(), now);
            status.preview_slot = Some(slot.as_str().to_owned());
            status.ready_to_promote_at = None;
        }
        Decision::Retry {
            revision,
            slot,
            attempt,
        } => {
            begin_record(&mut status.history, revision, images.to_vec(), now);
            if let Some(record) = status.history.first_mut() {
                record.attempt = Some(*attempt);
            }
            status.validation.clear();
            status.preview_slot = Some(slot.as_str().to_owned());
            status.ready_to_promote_at = None;
            status.scale_down_at = None;
        }
        Decision::PromoteFull { revision, by } => {
            if let Some(record) = status
                .history
                .iter_mut()
                .find(|record| &record.revision == revision && record.result.is_none())
            {
                record.promoted_full_at = at(now);
                record.promoted_full_by = Some(by.clone());
            }
        }
        Decision::AwaitPromotion { .. } if status.ready_to_promote_at.is_none() => {
            status.ready_to_promote_at = at(now);
        }
        Decision::Healthy => status.scale_down_at = None,
        Decision::SwitchTraffic { to, revision } => {
            status.active_slot = Some(to.as_str().to_owned());
            status.active_revision = Some(revision.clone());
            status.preview_slot = Some(to.as_str().to_owned());
            status.switched_at = None;
            status.scale_down_at = None;
            status.ready_to_promote_at = None;
        }
        Decision::RecordSwitched {
            at: switched,
            scale_down_at,
            ..
        } => {
            status.switched_at = Some(MicroTime(crate::time::whole_micros(*switched)));
            status.scale_down_at = at(*scale_down_at);
        }
        Decision::CloseRelease { revision, result } => {
            close_record(&mut status.history, revision, *result, now);
        }
        Decision::Abort {
            revision,
            scale_down_at,
            ..
        } => {
            close_record(&mut status.history, revision, ReleaseResult::Aborted, now);
            status.scale_down_at = at(*scale_down_at);
            status.ready_to_promote_at = None;
        }
        Decision::SwitchBack {
            to,
            revision,
            failed,
            ..
        } => {
            close_record(&mut status.history, failed, ReleaseResult::RolledBack, now);
            status.active_slot = Some(to.as_str().to_owned());
            status.active_revision = Some(revision.clone());
            status.switched_at = None;
            status.scale_down_at = None;
        }
        Decision::SwitchRefused {
            to,
            revision,
            switched_at,
            failed,
            ..
        } => {
            close_record(&mut status.history, failed, ReleaseResult::Aborted, now);
            status.active_slot = to.map(|slot| slot.as_str().to_owned());
            status.active_revision = revision.clone();
            status.switched_at = switched_at.map(MicroTime);
            status.scale_down_at = None;
        }
        Decision::ScaleSlot {
            reason: ScaleReason::Standby | ScaleReason::Aborted,
            ..
        } => status.scale_down_at = None,
        Decision::WaitForScaleDown { at: when, .. } => status.scale_down_at = at(*when),
        Decision::Aborted { scale_down_at, .. } => status.scale_down_at = scale_down_at.map(Time),
        _ => {}
    }
}

/// Copies the journals of the desired revision's validation runs into `status.validation`
/// (an entry of the same step is replaced). Nothing when the status belongs to another
/// revision.
pub fn mirror_validation(
    status: &mut BlueGreenReleaseStatus,
    desired_revision: &str,
    journals: &[StepStatus],
) {
    if status.desired_revision.as_deref() != Some(desired_revision) {
        return;
    }
    for entry in journals {
        match status.validation.iter_mut().find(|e| e.name == entry.name) {
            Some(existing) => *existing = entry.clone(),
            None => status.validation.push(entry.clone()),
        }
    }
}

/// Records a validation stage as started: a Pending entry for each of its `steps` not listed
/// yet stands for the run until its journal is copied in, so the stage reads as running and is
/// not started twice.
pub fn record_validation_started(status: &mut BlueGreenReleaseStatus, steps: &[Step]) {
    for entry in crate::runbook_run::new_journal(steps, &[]) {
        if !status.validation.iter().any(|e| e.name == entry.name) {
            status.validation.push(entry);
        }
    }
}

/// The whole status to write: `recorded` (the stored status with what the decision recorded,
/// [`update_status`]) plus the observed generation, the active slot's figures (replicas, ready
/// replicas, selector for the scale subresource) and the conditions for `decision`, merged so a
/// condition's lastTransitionTime moves only when its status changes. `desired_revision` is the
/// current template's revision; `now` stamps a condition that flips.
pub fn status(
    release: &BlueGreenRelease,
    mut recorded: BlueGreenReleaseStatus,
    cluster: &Cluster,
    decision: &Decision,
    desired_revision: &str,
    now: &Time,
) -> BlueGreenReleaseStatus {
    let active = recorded.active_slot.as_deref().and_then(Slot::parse);
    let units = release.spec.units();
    let views: Vec<_> = units.iter().map(|u| cluster.component(u.index)).collect();
    // The active slot of the whole stack: sums, and available when every component is.
    let view = active.map(|slot| {
        let each = views.iter().map(|c| c.slot(slot));
        SlotView {
            exists: true,
            revision: None,
            spec_replicas: each.clone().map(|v| v.spec_replicas).sum(),
            ready_replicas: each.clone().map(|v| v.ready_replicas).sum(),
            available: each.clone().all(|v| v.available),
        }
    });
    recorded.observed_generation = release.metadata.generation;
    recorded.replicas = view.as_ref().map(|v| v.spec_replicas);
    recorded.ready_replicas = view.as_ref().map(|v| v.ready_replicas);
    recorded.component_count = i32::try_from(units.len()).ok();
    recorded.components = units
        .iter()
        .zip(&views)
        .filter_map(|(unit, component)| {
            let name = unit.name?;
            let serving = component.service_slot.map(|slot| component.slot(slot));
            Some(ComponentStatus {
                name: name.to_owned(),
                active_slot: component.service_slot.map(|s| s.as_str().to_owned()),
                replicas: serving.map(|v| v.spec_replicas),
                ready_replicas: serving.map(|v| v.ready_replicas),
                ready: active.is_some()
                    && component.service_slot == active
                    && serving.is_some_and(|v| v.available),
            })
        })
        .collect();
    let view = view.as_ref();
    recorded.selector = active.map(|slot| {
        slot_selector(release, slot)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let available = match (view, active) {
        (Some(v), Some(slot)) => Desired::new(
            AVAILABLE,
            if v.available {
                Status::True
            } else {
                Status::False
            },
            if v.available {
                REASON_SLOT_AVAILABLE
            } else {
                REASON_SLOT_NOT_AVAILABLE
            },
            format!(
                "{} slot: {} of {} replicas ready",
                slot, v.ready_replicas, v.spec_replicas
            ),
        ),
        _ => Desired::new(
            AVAILABLE,
            Status::False,
            REASON_NO_ACTIVE_SLOT,
            "no slot serves yet",
        ),
    };
    let switched = match (&recorded.switched_at, active) {
        (Some(at), Some(slot)) => Desired::new(
            TRAFFIC_SWITCHED,
            Status::True,
            REASON_ENDPOINTS_CONVERGED,
            format!(
                "the active Service's endpoints are only ready pods of the {slot} slot since {}",
                at.0
            ),
        ),
        (None, Some(slot)) => Desired::new(
            TRAFFIC_SWITCHED,
            Status::False,
            REASON_ENDPOINTS_CONVERGING,
            format!(
                "waiting for the active Service's endpoints to be only ready pods of the {slot} slot"
            ),
        ),
        _ => Desired::new(
            TRAFFIC_SWITCHED,
            Status::False,
            REASON_NO_ACTIVE_SLOT,
            "no slot serves yet",
        ),
    };
    let degraded = degraded(&recorded, decision, desired_revision);
    let reconciling = reconciling(decision, desired_revision);
    // One merge against the stored conditions: merging Reconciling over the verdict's
    // freshly merged "Settled" would look like a flip on every reconcile and restamp its
    // lastTransitionTime (a status write per Deployment event during a rollout).
    let mut desired = conditions::validity(&[], READY_MESSAGE);
    desired.retain(|d| d.type_ != conditions::RECONCILING);
    desired.extend([available, switched, degraded, reconciling]);
    recorded.conditions = conditions::merge(
        &recorded.conditions,
        &desired,
        release.metadata.generation,
        now,
    );
    recorded
}

/// The Degraded condition for `decision`.
fn degraded(
    status: &BlueGreenReleaseStatus,
    decision: &Decision,
    desired_revision: &str,
) -> Desired {
    match decision {
        Decision::Abort {
            revision, reason, ..
        }
        | Decision::SwitchBack {
            failed: revision,
            reason,
            ..
        }
        | Decision::SwitchRefused {
            failed: revision,
            reason,
            ..
        }
        | Decision::AwaitSwitchBack {
            revision, reason, ..
        } => Desired::new(
            DEGRADED,
            Status::True,
            reason.reason(),
            reason.message(revision),
        ),
        Decision::HoldSelector { slot, .. } => Desired::new(
            DEGRADED,
            Status::True,
            REASON_NO_READY_PODS,
            format!("the {slot} slot has no ready pods; the selector is left as it is"),
        ),
        // Still degraded (scaling the failed slot down, waiting for the switch back to
        // converge, or holding an aborted revision): keep the reason that made it so.
        _ if decision.phase() == Some(Phase::Degraded) => {
            match condition(status, DEGRADED).filter(|c| c.status == Status::True.as_str()) {
                Some(c) => {
                    Desired::new(DEGRADED, Status::True, c.reason.clone(), c.message.clone())
                }
                None => Desired::new(
                    DEGRADED,
                    Status::True,
                    REASON_ABORTED,
                    format!(
                        "revision {desired_revision} was not promoted; change the template to try again"
                    ),
                ),
            }
        }
        _ => Desired::new(DEGRADED, Status::False, REASON_HEALTHY, "nothing failed"),
    }
}

/// The Reconciling condition for `decision`.
fn reconciling(decision: &Decision, desired_revision: &str) -> Desired {
    match decision {
        Decision::AwaitPromotion { revision, reason } => Desired::new(
            conditions::RECONCILING,
            Status::True,
            reason.reason(),
            reason.message(revision),
        ),
        _ => match decision.phase() {
            Some(Phase::Healthy) | None => Desired::new(
                conditions::RECONCILING,
                Status::False,
                REASON_SETTLED,
                "nothing to do",
            ),
            Some(Phase::Degraded) => Desired::new(
                conditions::RECONCILING,
                Status::False,
                REASON_DEGRADED,
                "the release stopped; see the Degraded condition",
            ),
            Some(phase) => Desired::new(
                conditions::RECONCILING,
                Status::True,
                phase.as_str(),
                format!("revision {desired_revision}: {}", phase.as_str()),
            ),
        },
    }
}

/// The condition of `type_` in `status`.
fn condition<'s>(status: &'s BlueGreenReleaseStatus, type_: &str) -> Option<&'s Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The Event for Ready changing, if writing `status` changes it (judged against the
/// conditions `status` still carries from the last write).
pub fn ready_note(
    release: &BlueGreenRelease,
    status: &BlueGreenReleaseStatus,
    now: &Time,
) -> Option<Note> {
    validation::judge(
        &status.conditions,
        &[],
        release.metadata.generation,
        now,
        READY_MESSAGE,
    )
    .note
}

/// The promotion wait `decision` begins, when the status being written (still with the last
/// written conditions) did not already report it: worth an Event once, not on every reconcile.
pub fn promotion_wait_begins<'d>(
    status: &BlueGreenReleaseStatus,
    decision: &'d Decision,
) -> Option<(&'d str, &'d super::decide::PromotionWait)> {
    let Decision::AwaitPromotion { revision, reason } = decision else {
        return None;
    };
    let was = condition(status, conditions::RECONCILING).map(|c| c.reason.as_str());
    (was != Some(reason.reason())).then_some((revision.as_str(), reason))
}

/// The status of a release whose spec cannot be acted on: the stored status with the
/// verdict's conditions and phase Invalid (as for every kind, nothing new is released until
/// the spec is fixed).
pub fn invalid(release: &BlueGreenRelease, verdict: &Verdict) -> BlueGreenReleaseStatus {
    let mut status = release.status.clone().unwrap_or_default();
    status.observed_generation = release.metadata.generation;
    status.conditions = verdict.conditions.clone();
    status.phase = Some(Phase::Invalid);
    status
}

/// Whether a release is degraded, for `release_degraded`: phase Degraded (validation failed,
/// aborted, rolled back) or the Degraded condition True (also: no ready pods to serve).
/// Invalid is not: that is a spec problem, reported by Stalled.
pub fn is_degraded(release: &BlueGreenRelease) -> bool {
    let Some(status) = release.status.as_ref() else {
        return false;
    };
    status.phase == Some(Phase::Degraded)
        || status
            .conditions
            .iter()
            .any(|c| c.type_ == DEGRADED && c.status == Status::True.as_str())
}

//! What [`decide`](super::decide) returns: one [`Decision`], and the reasons it carries.

use jiff::Timestamp;

use crate::blue_green::observe::{ReleaseResult, Slot, Stage};
use crate::blue_green::types::Phase;
use crate::well_known::{ABORT_ANNOTATION, PROMOTE_ANNOTATION};

use super::settings::{Size, SpecError};

/// Why a release is stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// `ops.runbook.dev/abort` names the revision.
    ByHand,
    /// A validation step failed.
    ValidationFailed {
        /// Which stage.
        stage: Stage,
        /// The step's message.
        message: String,
    },
    /// The new slot was not available by the deadline.
    ProgressDeadline {
        /// The deadline that passed.
        deadline: Timestamp,
    },
    /// A component's active Service refused the switch; the Services already switched were
    /// switched back.
    SwitchRefused {
        /// The component (its name, or the release's for the single-template form).
        component: String,
        /// The Service that refused.
        service: String,
        /// What the API server said.
        message: String,
    },
}

impl AbortReason {
    /// The Event and `Degraded` condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AbortReason::ByHand => "AbortedByHand",
            AbortReason::ValidationFailed {
                stage: Stage::Pre, ..
            } => "PrePromotionFailed",
            AbortReason::ValidationFailed {
                stage: Stage::Post, ..
            } => "PostPromotionFailed",
            AbortReason::ProgressDeadline { .. } => "ProgressDeadlineExceeded",
            AbortReason::SwitchRefused { .. } => "SwitchRefused",
        }
    }

    /// A sentence for the condition and the Event.
    pub fn message(&self, revision: &str) -> String {
        match self {
            AbortReason::ByHand => format!("{ABORT_ANNOTATION} names revision {revision}"),
            AbortReason::ValidationFailed { stage, message } => {
                format!(
                    "{} of revision {revision} failed: {message}",
                    stage.as_str()
                )
            }
            AbortReason::ProgressDeadline { deadline } => {
                format!("revision {revision} was not available by its progress deadline {deadline}")
            }
            AbortReason::SwitchRefused {
                component,
                service,
                message,
            } => format!(
                "switching revision {revision}: Service {service} of component {component} refused the selector patch ({message}); the Services switched before it were switched back, so the whole stack still serves the previous slot. Fix the cause (the release's ServiceAccount's rights on that Service, or an admission policy), then change the template to release again"
            ),
        }
    }
}

/// Why promotion waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromotionWait {
    /// `autoPromote` is false and no promote annotation is set.
    Manual,
    /// `autoPromote` is false and the promote annotation names another revision (an old or a
    /// future one): it is ignored.
    OtherRevision {
        /// The revision the annotation names.
        named: String,
    },
    /// `requiresMaintenanceWindow` and no matching window is Active.
    MaintenanceWindow,
    /// `autoPromoteAfter`: promoted automatically at `at` unless the promote annotation comes
    /// first.
    Scheduled {
        /// `status.readyToPromoteAt + autoPromoteAfter`.
        at: Timestamp,
    },
}

impl PromotionWait {
    /// The Event and condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PromotionWait::Manual => "PromotionRequired",
            PromotionWait::OtherRevision { .. } => "PromoteNamesOtherRevision",
            PromotionWait::MaintenanceWindow => "WaitingForWindow",
            PromotionWait::Scheduled { .. } => "AutoPromotionScheduled",
        }
    }

    /// A sentence for the condition.
    pub fn message(&self, revision: &str) -> String {
        match self {
            PromotionWait::Manual => format!(
                "autoPromote is false: set the annotation {PROMOTE_ANNOTATION}: {revision} to promote"
            ),
            PromotionWait::OtherRevision { named } => format!(
                "{PROMOTE_ANNOTATION} names revision {named}, not the desired revision {revision}; ignored"
            ),
            PromotionWait::MaintenanceWindow => format!(
                "revision {revision} is ready; promotion waits for a matching MaintenanceWindow to be Active"
            ),
            PromotionWait::Scheduled { at } => format!(
                "revision {revision} is ready; promoted automatically at {at} (autoPromoteAfter), or earlier with the annotation {PROMOTE_ANNOTATION}: {revision}"
            ),
        }
    }
}

/// Why a slot's replica count changes without a template change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleReason {
    /// The active slot follows `spec.replicas` (an HPA or an edit) while the template is
    /// another revision, so the slot cannot be re-applied from it.
    Replicas,
    /// The old slot goes to `standbyReplicas` after `scaleDownDelay`.
    Standby,
    /// An aborted or rolled-back revision's slot goes to 0 after `abortScaleDownDelay`.
    Aborted,
    /// The old slot is brought back to full size so traffic can switch back to it.
    SwitchBack,
    /// The new slot, run at `previewReplicas` during validation, goes to full size before
    /// the switch.
    Promotion,
}

/// What the controller should do now. *Actions* change the cluster or status and are followed
/// by an immediate new [`decide`](super::decide); *waits* change nothing and name when to
/// decide again, if a watched change will not come first.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Action: open a release of `revision` in status (push a history record with its images
    /// and `startTime` now, close `supersedes` as Superseded, set `previewSlot` to `slot`).
    /// Any validation still running for another revision is cancelled (status validation
    /// belongs to the desired revision, see
    /// [`record_desired_revision`](crate::blue_green::status::record_desired_revision)).
    BeginRelease {
        /// The revision released.
        revision: String,
        /// The slot it goes to.
        slot: Slot,
        /// No validation and no promotion gates: the first release, or a revision that was
        /// promoted before (a rollback).
        fast_track: bool,
        /// The open release it replaces, if any.
        supersedes: Option<String>,
    },
    /// Action: reopen the aborted or rolled-back `revision` ([`RETRY_ANNOTATION`](crate::well_known::RETRY_ANNOTATION) names it):
    /// a new history record with the next `attempt`, `status.validation` cleared, `previewSlot`
    /// set to `slot`. Validation runs again under new run names.
    Retry {
        /// The revision retried.
        revision: String,
        /// The slot it goes to.
        slot: Slot,
        /// The try this is (2 for the first retry).
        attempt: i32,
    },
    /// Action: the retry of `revision` has started: remove [`RETRY_ANNOTATION`](crate::well_known::RETRY_ANNOTATION) from the
    /// release (and [`ABORT_ANNOTATION`] when `abort`: it names the same revision and would
    /// abort the retry at once).
    ClearRetry {
        /// The revision retried.
        revision: String,
        /// Also remove the abort annotation.
        abort: bool,
    },
    /// Action: `ops.runbook.dev/promote-full` names `revision`: record in its open history
    /// record who asked and when; from then on the gates still ahead (prePromotion, the promote
    /// annotation, `autoPromoteAfter`, postPromotion) are skipped.
    PromoteFull {
        /// The revision.
        revision: String,
        /// Who asked (the admission stamp).
        by: String,
    },
    /// Action: server-side apply [`slot_deployment`](super::slot_deployment) for `slot` from
    /// the current template. Used to roll `revision` into the idle slot, and to keep the active slot at
    /// `spec.replicas`.
    ApplySlot {
        /// The slot.
        slot: Slot,
        /// The revision of the current template.
        revision: String,
        /// The size each component's Deployment gets.
        size: Size,
    },
    /// Action: set only `spec.replicas` of a slot Deployment (through its scale subresource;
    /// a server-side apply of just that field would drop the template the operator owns).
    ScaleSlot {
        /// The slot.
        slot: Slot,
        /// The new size of each component's Deployment.
        size: Size,
        /// Why.
        reason: ScaleReason,
    },
    /// Action: set the preview Service's slot key to `slot` (JSON merge patch of that key
    /// only): it follows the slot of the desired revision, and a hand edit is put back.
    PointPreview {
        /// Where it should point.
        slot: Slot,
        /// What it names now.
        found: Option<Slot>,
    },
    /// Action: start the validation steps of `stage` against the new slot.
    StartValidation {
        /// Which stage.
        stage: Stage,
        /// The revision validated.
        revision: String,
    },
    /// Action: promote: record in status `activeSlot: to`, `activeRevision: revision` and clear
    /// `switchedAt`/`scaleDownAt` (TrafficSwitched False), **then** set the active Service's
    /// slot key to `to`. Only decided when `to` is fully available.
    SwitchTraffic {
        /// The new active slot.
        to: Slot,
        /// Its revision.
        revision: String,
    },
    /// Action: the active Service's endpoints are now only ready pods of `slot`: record
    /// `switchedAt: at` and `scaleDownAt`, TrafficSwitched True.
    RecordSwitched {
        /// The active slot.
        slot: Slot,
        /// Now, to the second.
        at: Timestamp,
        /// When the other slot will be scaled down.
        scale_down_at: Timestamp,
        /// This completes a switch back after a failed release.
        back: bool,
    },
    /// Action: close the open release of `revision` with `result` (Promoted once the switch is
    /// complete and postPromotion passed; Superseded when the template went back to the active
    /// revision before it finished).
    CloseRelease {
        /// The revision.
        revision: String,
        /// How it ended.
        result: ReleaseResult,
    },
    /// Action: stop the release of `revision` before the switch: close it as Aborted, Degraded
    /// with the reason, record `scaleDownAt`. The active slot and Service are untouched; the new
    /// slot is scaled to 0 later ([`Decision::Aborted`]). The revision is not tried again until
    /// the template changes.
    Abort {
        /// The revision.
        revision: String,
        /// Why.
        reason: AbortReason,
        /// When its slot will be scaled down (now + `abortScaleDownDelay`).
        scale_down_at: Timestamp,
    },
    /// Action: undo a switch whose postPromotion failed or that was aborted by hand: record
    /// `activeSlot: to`, `activeRevision: revision`, clear `switchedAt`, close `failed` as
    /// RolledBack, Degraded, **then** set the active Service's slot key to `to`.
    SwitchBack {
        /// The old slot, which still has ready pods.
        to: Slot,
        /// Its revision.
        revision: String,
        /// The revision switched away from.
        failed: String,
        /// Why.
        reason: AbortReason,
    },
    /// Action: the active Service's slot key is not the active slot (edited by hand, removed by
    /// a GitOps sync, or a switch interrupted between the status write and the patch): set it
    /// back to `slot`, which has ready pods.
    RestoreSelector {
        /// The active slot.
        slot: Slot,
        /// What the Service names now.
        found: Option<Slot>,
    },
    /// Wait until `until`: the idle slot still holds the previous revision's pods and may
    /// still get traffic from proxies that have not caught up with the last switch; a new
    /// revision replaces them only once the switch converged and `min(scaleDownDelay,`
    /// [`MAX_DRAIN`](super::MAX_DRAIN)`)` passed since `switchedAt`.
    WaitForDrain {
        /// The slot the new revision goes to.
        slot: Slot,
        /// `switchedAt + min(scaleDownDelay, MAX_DRAIN)`.
        until: Timestamp,
    },
    /// Action, never decided by [`decide`](super::decide) but recorded by the controller when
    /// a component's active Service refused [`Decision::SwitchTraffic`] part-way and the
    /// Services already switched were switched back: put back in status the slot, revision and
    /// switch time from before the switch (`to`, `revision`, `switched_at`), close `failed` as
    /// Aborted, Degraded naming the component and Service.
    SwitchRefused {
        /// The slot serving before the switch (unset: none, a first release).
        to: Option<Slot>,
        /// Its revision.
        revision: Option<String>,
        /// Its `switchedAt`.
        switched_at: Option<Timestamp>,
        /// The revision whose switch was refused.
        failed: String,
        /// [`AbortReason::SwitchRefused`].
        reason: AbortReason,
    },
    /// Wait for `slot` to be fully available (its Deployment's status wakes the controller),
    /// or until `deadline`, the progress deadline.
    WaitForAvailable {
        /// The slot.
        slot: Slot,
        /// When the release is aborted if the slot is still not available.
        deadline: Option<Timestamp>,
    },
    /// Wait for the validation steps of `stage` to finish.
    WaitForValidation {
        /// Which stage.
        stage: Stage,
        /// The revision validated.
        revision: String,
    },
    /// Wait: the new slot is ready and validated; promotion waits (AwaitingPromotion).
    AwaitPromotion {
        /// The revision waiting.
        revision: String,
        /// Why.
        reason: PromotionWait,
    },
    /// Wait for the active Service's EndpointSlices to hold only ready endpoints of `slot`.
    WaitForEndpoints {
        /// The active slot.
        slot: Slot,
        /// After a switch back.
        back: bool,
    },
    /// Wait until `at` (`switchedAt + scaleDownDelay`) to scale the old slot down.
    WaitForScaleDown {
        /// The old slot.
        slot: Slot,
        /// When.
        at: Timestamp,
    },
    /// Wait: the release of `revision` was aborted or rolled back (Degraded) and is not retried
    /// until the template changes; its slot is scaled to 0 at `scale_down_at` (`None`: already
    /// done).
    Aborted {
        /// The revision.
        revision: String,
        /// When its slot is scaled down, if it still has replicas.
        scale_down_at: Option<Timestamp>,
    },
    /// Wait: `revision` must be switched back from, but the old slot `to` has no ready pods yet
    /// (or there is no old slot: `None`, e.g. a first release aborted after its switch).
    /// Traffic stays where it is rather than going to an empty slot. Degraded.
    AwaitSwitchBack {
        /// The slot to switch back to.
        to: Option<Slot>,
        /// The revision being left.
        revision: String,
        /// Why.
        reason: AbortReason,
    },
    /// Wait: the active Service names another slot than the active one, but the active slot has
    /// no ready pods, so restoring the selector would empty the Service; it is left alone
    /// until the slot has ready pods. Degraded.
    HoldSelector {
        /// The active slot.
        slot: Slot,
        /// What the Service names now.
        found: Option<Slot>,
    },
    /// Wait: the desired revision serves, the old slot is at standby, nothing is pending.
    Healthy,
    /// Wait: the spec cannot be acted on (report `InvalidSpec` naming the field); the cluster is
    /// left untouched.
    Invalid(SpecError),
}

impl Decision {
    /// The phase to show for this decision; `None` for [`Decision::Invalid`] (the controller
    /// reports an invalid spec through its conditions).
    pub fn phase(&self) -> Option<Phase> {
        use Decision::*;
        Some(match self {
            Healthy => Phase::Healthy,
            Retry { .. } | ClearRetry { .. } => Phase::Progressing,
            PromoteFull { .. } => Phase::Promoting,
            BeginRelease { .. }
            | ApplySlot { .. }
            | PointPreview { .. }
            | RestoreSelector { .. }
            | WaitForDrain { .. }
            | WaitForAvailable { .. }
            | ScaleSlot {
                reason: ScaleReason::Replicas,
                ..
            }
            | CloseRelease {
                result: ReleaseResult::Superseded,
                ..
            } => Phase::Progressing,
            StartValidation {
                stage: Stage::Pre, ..
            }
            | WaitForValidation {
                stage: Stage::Pre, ..
            } => Phase::Validating,
            AwaitPromotion { .. } => Phase::AwaitingPromotion,
            SwitchTraffic { .. }
            | StartValidation {
                stage: Stage::Post, ..
            }
            | WaitForValidation {
                stage: Stage::Post, ..
            }
            | RecordSwitched { back: false, .. }
            | WaitForEndpoints { back: false, .. }
            | CloseRelease { .. } => Phase::Promoting,
            ScaleSlot {
                reason: ScaleReason::Promotion,
                ..
            } => Phase::Promoting,
            ScaleSlot {
                reason: ScaleReason::Standby,
                ..
            }
            | WaitForScaleDown { .. } => Phase::ScalingDown,
            Abort { .. }
            | Aborted { .. }
            | SwitchBack { .. }
            | SwitchRefused { .. }
            | AwaitSwitchBack { .. }
            | HoldSelector { .. }
            | RecordSwitched { back: true, .. }
            | WaitForEndpoints { back: true, .. }
            | ScaleSlot {
                reason: ScaleReason::Aborted | ScaleReason::SwitchBack,
                ..
            } => Phase::Degraded,
            Invalid(_) => return None,
        })
    }

    /// Whether this decision changes something and must be followed by another
    /// [`decide`](super::decide).
    pub fn is_action(&self) -> bool {
        use Decision::*;
        matches!(
            self,
            BeginRelease { .. }
                | Retry { .. }
                | ClearRetry { .. }
                | PromoteFull { .. }
                | ApplySlot { .. }
                | ScaleSlot { .. }
                | PointPreview { .. }
                | StartValidation { .. }
                | SwitchTraffic { .. }
                | RecordSwitched { .. }
                | CloseRelease { .. }
                | Abort { .. }
                | SwitchBack { .. }
                | SwitchRefused { .. }
                | RestoreSelector { .. }
        )
    }

    /// For a wait, the instant to decide again if nothing watched changes first; `None` for
    /// actions (decide again at once) and for waits only a change can end.
    pub fn requeue_at(&self) -> Option<Timestamp> {
        match self {
            Decision::WaitForDrain { until, .. } => Some(*until),
            Decision::WaitForAvailable { deadline, .. } => *deadline,
            Decision::WaitForScaleDown { at, .. } => Some(*at),
            Decision::Aborted { scale_down_at, .. } => *scale_down_at,
            Decision::AwaitPromotion {
                reason: PromotionWait::Scheduled { at },
                ..
            } => Some(*at),
            _ => None,
        }
    }

    /// Whether this decision writes the active Service's selector (after status).
    pub fn moves_traffic(&self) -> Option<Slot> {
        match self {
            Decision::SwitchTraffic { to, .. } | Decision::SwitchBack { to, .. } => Some(*to),
            Decision::RestoreSelector { slot, .. } => Some(*slot),
            _ => None,
        }
    }
}

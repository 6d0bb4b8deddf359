//! The pure decision logic of a BlueGreenRelease: which slot serves, what the idle slot holds,
//! when traffic switches, when a release is aborted or switched back, and when a slot is scaled
//! down. Nothing here reads the clock or does I/O: `now` is always an argument, so every rule is
//! unit-tested with fixed instants.
//!
//! # Model
//!
//! A release owns two Deployments, `<name>-blue` and `<name>-green` ([`slot_deployment`]). The
//! *active* slot is the one the active Service's selector names through the slot key; the other
//! is *idle*. A *revision* is a hash of the pod template ([`revision`]); each slot Deployment
//! carries the revision it was made from in the annotation [`REVISION_ANNOTATION`], so the
//! cluster itself tells which slot holds what.
//!
//! A *release* is the journey of one revision to the active slot. It is recorded in
//! `status.history` (newest first, [`HISTORY_LIMIT`] kept): [`Decision::BeginRelease`] opens a
//! record (its `startTime` is where `progressDeadline` counts from), and exactly one of
//! Promoted, Aborted, RolledBack or Superseded closes it ([`ReleaseResult`]).
//!
//! [`decide`] is level-triggered: it reads the spec, what status and annotations say
//! ([`ReleaseState`]), what the cluster shows ([`Cluster`]) and the clock, and returns one
//! [`Decision`]. The controller carries out an *action*, records it with [`update_status`], and
//! decides again at once; a *wait* names the instant to decide again, if any
//! ([`Decision::requeue_at`]); otherwise a change of the release, its Deployments, its Services'
//! EndpointSlices, a validation step or a MaintenanceWindow wakes it.
//!
//! # Crash safety
//!
//! Every input comes from the API server, so a restarted operator decides exactly what the
//! stopped one would have. The one ordering the controller must respect: a decision that
//! moves traffic ([`Decision::SwitchTraffic`], [`Decision::SwitchBack`]) is written to status
//! **before** the Service is patched. Status is the intent; if the operator dies between the two
//! writes, the next [`decide`] sees a Service that disagrees with status and puts the selector
//! where status says ([`Decision::RestoreSelector`]): the switch completes, it is never undone
//! and never repeated. (The other order would read the half-done switch as a hand edit and
//! switch back.)
//!
//! # No empty moment
//!
//! No decision ever writes the active Service's slot key to a slot without ready pods
//! (unless `replicas` is 0, where there is nothing to serve). A promotion additionally needs the
//! new slot fully available (every replica updated and available at the current generation).
//! `TrafficSwitched` and `switchedAt` are recorded only once the active Service's EndpointSlices
//! hold nothing but ready endpoints of the new slot, and the old slot keeps its pods until
//! `scaleDownDelay` after that moment; a new revision is not rolled into the old slot earlier
//! either ([`Decision::WaitForDrain`]).
//!
//! [`REVISION_ANNOTATION`]: crate::well_known::REVISION_ANNOTATION
//! [`HISTORY_LIMIT`]: crate::blue_green::status::HISTORY_LIMIT
//! [`update_status`]: crate::blue_green::status::update_status

pub mod controls;
mod decision;
pub mod lifecycle;
mod revision;
mod settings;
mod slots;
mod stack;
#[cfg(test)]
mod tests;

use jiff::{SignedDuration, Timestamp};

use crate::blue_green::observe::{
    Cluster, Outcome, Record, ReleaseResult, ReleaseState, Slot, Stage,
};
use crate::blue_green::types::BlueGreenReleaseSpec;
use crate::time::{add, whole_seconds};

pub use decision::{AbortReason, Decision, PromotionWait, ScaleReason};
pub use revision::{images, revision, spec_revision, stack_images, stack_revision};
pub use settings::{
    DEFAULT_ABORT_SCALE_DOWN_DELAY, DEFAULT_PROGRESS_DEADLINE, DEFAULT_SCALE_DOWN_DELAY, Settings,
    Size, SpecError, problems,
};
pub use slots::{slot_deployment, slot_selector};
pub use stack::{StackSlot, common};

/// The longest a new revision waits for the previous switch to drain before it replaces the
/// old slot's pods (see [`Decision::WaitForDrain`]): the propagation time Argo Rollouts
/// recommends as the minimum `scaleDownDelay`.
pub const MAX_DRAIN: SignedDuration = SignedDuration::from_secs(30);

/// Decides what the release should do at `now`.
///
/// In order, each rule level-triggered (`R` is the desired revision, `A` the active slot):
///
/// 1. **Invalid spec**: [`Decision::Invalid`], nothing touched.
/// 2. **Active slot size.** When `R` serves, the active slot is re-applied if it does not hold
///    `R` at `spec.replicas`; otherwise (it holds an older revision) only its replica count
///    follows `spec.replicas` ([`ScaleReason::Replicas`]).
/// 3. **Selector guard.** If the active Service does not name `A`, it is put back
///    ([`Decision::RestoreSelector`]) if `A` has ready pods, else left alone
///    ([`Decision::HoldSelector`]).
/// 4. Then one of three situations:
///    - **`R` serves** ([`settled`](#settled)): finish its release, scale the old slot down.
///    - **`R` was aborted or rolled back** and the template has not changed since:
///      [`Decision::Aborted`], its slot scaled to 0 `abortScaleDownDelay` after the abort (or
///      after the switch back converged); if it was aborted before it reached the idle slot,
///      that slot goes to standby at `switchedAt + scaleDownDelay` as usual.
///    - **`R` is on its way** ([`in flight`](#in-flight)).
///
/// # In flight
///
/// The target slot is the idle one (`A`'s other); for a first release (no `A`): the slot the
/// Service already names if it holds `R`, else the other one if it names one (so a Service
/// selecting pods from before the release never empties), else a slot already holding `R`,
/// else blue.
///
/// 1. No open record for `R`: [`Decision::BeginRelease`] (superseding an open one).
/// 2. Abort annotation naming `R`, or prePromotion failed: [`Decision::Abort`].
/// 3. Target does not hold `R` at `spec.replicas`: abort if the progress deadline passed; wait
///    for the previous switch to converge and drain if the target still runs other pods
///    ([`Decision::WaitForDrain`]); else [`Decision::ApplySlot`].
/// 4. Preview Service to the target.
/// 5. Target not fully available: abort at the deadline, else [`Decision::WaitForAvailable`].
/// 6. Unless fast-tracked: prePromotion (start, wait); then `autoPromote` false needs
///    `ops.runbook.dev/promote: R`, and `requiresMaintenanceWindow` needs an open window
///    ([`Decision::AwaitPromotion`]).
/// 7. [`Decision::SwitchTraffic`].
///
/// The progress deadline is `progressDeadline` after the later of the release's start and the
/// end of the drain; it applies until prePromotion starts (validation and waiting for
/// promotion are not bounded by it).
///
/// *Fast track*: a first release (nothing serves yet) and a revision that was Promoted before
/// (a rollback, found in the history kept) skip validation and promotion gates. A rollback to
/// the revision the idle slot still runs at full size is therefore an instant flip: no pod is
/// created.
///
/// # Settled
///
/// When `R` is the active revision and its release is open: an abort annotation naming `R` or a
/// failed postPromotion switches back to the old slot if it has ready pods (scaling it back to
/// `spec.replicas` first if it was shrunk; [`Decision::AwaitSwitchBack`] otherwise); the switch
/// is recorded once the endpoints hold only ready pods of `A`; postPromotion runs (not on the
/// fast track, nor when the other slot holds no revision of this release); then the release
/// closes as Promoted. An open
/// release of another revision (the template went back to the active one) closes as
/// Superseded. Then the old slot goes to `standbyReplicas` (0 if it holds a revision never
/// promoted) at `switchedAt + scaleDownDelay`. An active slot that is not fully available shows
/// as [`Decision::WaitForAvailable`]; otherwise [`Decision::Healthy`].
pub fn decide(
    spec: &BlueGreenReleaseSpec,
    state: &ReleaseState,
    cluster: &Cluster,
    now: Timestamp,
) -> Decision {
    let settings = match Settings::from_spec(spec) {
        Ok(settings) => settings,
        Err(error) => return Decision::Invalid(error),
    };
    Ctx {
        settings: &settings,
        state,
        cluster,
        now,
    }
    .decide()
}

/// One decision's inputs.
struct Ctx<'a> {
    settings: &'a Settings,
    state: &'a ReleaseState,
    cluster: &'a Cluster,
    now: Timestamp,
}

impl Ctx<'_> {
    fn decide(&self) -> Decision {
        let desired = self.desired();
        let active = self.state.active_slot;
        let settled = active.is_some() && self.state.active_revision.as_deref() == Some(desired);
        if let Some(a) = active {
            let view = self.slot(a);
            if settled {
                if !view.holds(desired) || !view.sized(Size::Full) {
                    return Decision::ApplySlot {
                        slot: a,
                        revision: desired.to_owned(),
                        size: Size::Full,
                    };
                }
            } else if view.exists_not_sized(Size::Full) {
                return Decision::ScaleSlot {
                    slot: a,
                    size: Size::Full,
                    reason: ScaleReason::Replicas,
                };
            }
            let found = self.service_slot();
            if found != Some(a) {
                return if self.can_select(a) {
                    Decision::RestoreSelector { slot: a, found }
                } else {
                    Decision::HoldSelector { slot: a, found }
                };
            }
        }
        match active {
            Some(a) if settled => self.settled(a),
            _ => match self.aborted() {
                Some(record) if controls::retry_applies(self.state, record) => Decision::Retry {
                    revision: desired.to_owned(),
                    slot: self.target_slot(),
                    attempt: record.attempt + 1,
                },
                Some(record) => self.aborted_release(record),
                None => self.in_flight(),
            },
        }
    }

    fn desired(&self) -> &str {
        &self.state.desired_revision
    }

    /// `slot` of every component.
    fn slot(&self, slot: Slot) -> StackSlot<'_> {
        StackSlot::new(self.cluster, self.settings, slot)
    }

    /// The slot every active Service names (`None`: one names none, or they disagree).
    fn service_slot(&self) -> Option<Slot> {
        stack::service_slot(self.cluster, self.settings)
    }

    /// Whether the active Services may be pointed at `slot`: each component has ready pods
    /// there (or wants none).
    fn can_select(&self, slot: Slot) -> bool {
        self.slot(slot).can_select()
    }

    /// A stage's outcome for the desired revision: status validation counts only when it
    /// belongs to the desired revision.
    fn validation(&self, stage: Stage) -> Outcome {
        if self.state.recorded_revision.as_deref() != Some(self.desired()) {
            return Outcome::NotStarted;
        }
        match stage {
            Stage::Pre => self.state.pre_validation.clone(),
            Stage::Post => self.state.post_validation.clone(),
        }
    }

    fn latest(&self) -> Option<&Record> {
        self.state.history.first()
    }

    /// The newest record, if it is an open release of the desired revision.
    fn open_release(&self) -> Option<&Record> {
        self.latest()
            .filter(|record| record.revision == self.desired() && record.result.is_none())
    }

    /// A revision that was promoted before.
    fn known_good(&self, revision: &str) -> bool {
        self.state.history.iter().any(|record| {
            record.revision == revision && record.result == Some(ReleaseResult::Promoted)
        })
    }

    /// The newest record, if it says the desired revision was aborted or rolled back and the
    /// template has not changed since.
    fn aborted(&self) -> Option<&Record> {
        self.latest().filter(|record| {
            record.revision == self.desired()
                && matches!(
                    record.result,
                    Some(ReleaseResult::Aborted | ReleaseResult::RolledBack)
                )
                && self.state.recorded_revision.as_deref() == Some(self.desired())
        })
    }

    /// The slot the desired revision goes to (see [`decide`], "In flight").
    fn target_slot(&self) -> Slot {
        if let Some(active) = self.state.active_slot {
            return active.other();
        }
        let desired = self.desired();
        if let Some(named) = self.service_slot() {
            return if self.slot(named).holds(desired) {
                named
            } else {
                named.other()
            };
        }
        Slot::ALL
            .into_iter()
            .find(|slot| self.slot(*slot).holds(desired))
            .unwrap_or(Slot::Blue)
    }

    /// The preview Service follows `target`.
    fn preview(&self, target: Slot) -> Option<Decision> {
        let found = stack::preview_slot(self.cluster, self.settings);
        (self.settings.has_preview && found != Some(target)).then_some(Decision::PointPreview {
            slot: target,
            found,
        })
    }

    /// Record the switch to `slot` once the endpoints converged, else wait for them.
    fn converge(&self, slot: Slot, back: bool, delay: SignedDuration) -> Decision {
        if self.slot(slot).endpoints_converged() {
            let at = crate::time::whole_micros(self.now);
            Decision::RecordSwitched {
                slot,
                at,
                scale_down_at: whole_seconds(add(at, delay)),
                back,
            }
        } else {
            Decision::WaitForEndpoints { slot, back }
        }
    }

    fn settled(&self, active: Slot) -> Decision {
        let desired = self.desired();
        let old = active.other();
        let open = self.open_release().is_some();
        if open {
            let failure = if self.state.abort.as_deref() == Some(desired) {
                Some(AbortReason::ByHand)
            } else if let Outcome::Failed(message) = self.validation(Stage::Post) {
                Some(AbortReason::ValidationFailed {
                    stage: Stage::Post,
                    message,
                })
            } else {
                None
            };
            if let Some(reason) = failure {
                return self.switch_back(old, reason);
            }
        }
        let Some(switched_at) = self.state.switched_at else {
            return self.converge(active, false, self.settings.scale_down_delay);
        };
        if open {
            // First release (the other slot holds nothing of ours), a known-good revision, or
            // a full promotion.
            let fast_track = !self.slot(old).has_revision()
                || self.known_good(desired)
                || self
                    .open_release()
                    .is_some_and(|record| record.promoted_full);
            if !fast_track && self.settings.has_post {
                match self.validation(Stage::Post) {
                    Outcome::NotStarted => {
                        return Decision::StartValidation {
                            stage: Stage::Post,
                            revision: desired.to_owned(),
                        };
                    }
                    Outcome::Running => {
                        return Decision::WaitForValidation {
                            stage: Stage::Post,
                            revision: desired.to_owned(),
                        };
                    }
                    Outcome::Succeeded | Outcome::Failed(_) => {}
                }
            }
            return Decision::CloseRelease {
                revision: desired.to_owned(),
                result: ReleaseResult::Promoted,
            };
        }
        if let Some(stale) = self.latest().filter(|record| record.result.is_none()) {
            return Decision::CloseRelease {
                revision: stale.revision.clone(),
                result: ReleaseResult::Superseded,
            };
        }
        if let Some(preview) = self.preview(active) {
            return preview;
        }
        if let Some(keep) = self.standby_for(old) {
            let at = add(switched_at, self.settings.scale_down_delay);
            return if self.now >= at {
                Decision::ScaleSlot {
                    slot: old,
                    size: keep,
                    reason: ScaleReason::Standby,
                }
            } else {
                Decision::WaitForScaleDown { slot: old, at }
            };
        }
        if !self.slot(active).available() {
            return Decision::WaitForAvailable {
                slot: active,
                deadline: None,
            };
        }
        Decision::Healthy
    }

    /// Switch back from the desired revision to `old`.
    fn switch_back(&self, old: Slot, reason: AbortReason) -> Decision {
        let desired = self.desired();
        let view = self.slot(old);
        match view.revision() {
            Some(previous) if previous != desired => {
                if view.below(Size::Full) {
                    Decision::ScaleSlot {
                        slot: old,
                        size: Size::Full,
                        reason: ScaleReason::SwitchBack,
                    }
                } else if self.can_select(old) {
                    Decision::SwitchBack {
                        to: old,
                        revision: previous.to_owned(),
                        failed: desired.to_owned(),
                        reason,
                    }
                } else {
                    Decision::AwaitSwitchBack {
                        to: Some(old),
                        revision: desired.to_owned(),
                        reason,
                    }
                }
            }
            _ => Decision::AwaitSwitchBack {
                to: None,
                revision: desired.to_owned(),
                reason,
            },
        }
    }

    fn aborted_release(&self, record: &Record) -> Decision {
        let desired = self.desired();
        let target = self.target_slot();
        let active = self.state.active_slot;
        if let Some(active) = active
            && self.state.switched_at.is_none()
        {
            return self.converge(active, true, self.settings.abort_scale_down_delay);
        }
        if let Some(preview) = self.preview(target) {
            return preview;
        }
        let view = self.slot(target);
        let (at, size, reason) = if view.holds(desired) {
            if view.sized(Size::Zero) {
                return Decision::Aborted {
                    revision: desired.to_owned(),
                    scale_down_at: None,
                };
            }
            // From the abort, or from the moment traffic was back on the active slot, whichever
            // is later; a record without a completion time is scaled down at once.
            let since = record.completed.max(active.and(self.state.switched_at));
            let at = since.map_or(self.now, |since| {
                add(since, self.settings.abort_scale_down_delay)
            });
            (at, Size::Zero, ScaleReason::Aborted)
        } else if let Some(switched_at) = active.and(self.state.switched_at)
            && let Some(keep) = self.standby_for(target)
        {
            // Aborted before it touched the idle slot (while the previous switch drained):
            // that slot still holds the previous revision and goes to standby as usual.
            (
                add(switched_at, self.settings.scale_down_delay),
                keep,
                ScaleReason::Standby,
            )
        } else {
            return Decision::Aborted {
                revision: desired.to_owned(),
                scale_down_at: None,
            };
        };
        if self.now >= at {
            return Decision::ScaleSlot {
                slot: target,
                size,
                reason,
            };
        }
        Decision::Aborted {
            revision: desired.to_owned(),
            scale_down_at: Some(at),
        }
    }

    /// The size the slot that stopped serving should shrink to, if it is not there yet:
    /// `standbyReplicas` when it holds a revision that was promoted (warm for a rollback), else
    /// 0 (standby pods of a revision that never passed would serve no purpose).
    fn standby_for(&self, slot: Slot) -> Option<Size> {
        let view = self.slot(slot);
        let keep = match view.revision() {
            Some(revision) if self.known_good(revision) && self.settings.standby > 0 => {
                Size::Standby
            }
            _ => Size::Zero,
        };
        view.exists_not_sized(keep).then_some(keep)
    }

    /// When a new revision may replace the pods of the slot that served before the last switch:
    /// `min(scaleDownDelay, 30s)` after `switchedAt`. That is the time proxies need to stop
    /// sending it traffic; a longer `scaleDownDelay` only keeps a rollback warm, and a new
    /// revision gives that up anyway.
    fn drained(&self) -> Option<Timestamp> {
        let drain = self.settings.scale_down_delay.min(MAX_DRAIN);
        self.state
            .active_slot
            .and(self.state.switched_at)
            .map(|switched| add(switched, drain))
    }

    fn abort(&self, reason: AbortReason) -> Decision {
        Decision::Abort {
            revision: self.desired().to_owned(),
            reason,
            scale_down_at: add(
                whole_seconds(self.now),
                self.settings.abort_scale_down_delay,
            ),
        }
    }

    fn in_flight(&self) -> Decision {
        let desired = self.desired();
        let target = self.target_slot();
        let active = self.state.active_slot;
        let fast_track = active.is_none() || self.known_good(desired);
        let Some(record) = self.open_release() else {
            return Decision::BeginRelease {
                revision: desired.to_owned(),
                slot: target,
                fast_track,
                supersedes: self
                    .latest()
                    .filter(|record| record.result.is_none())
                    .map(|record| record.revision.clone()),
            };
        };
        if controls::retry_consumed(self.state, record) {
            return Decision::ClearRetry {
                revision: desired.to_owned(),
                abort: self.state.abort.as_deref() == Some(desired),
            };
        }
        if self.state.abort.as_deref() == Some(desired) {
            return self.abort(AbortReason::ByHand);
        }
        let pre = self.validation(Stage::Pre);
        if let Outcome::Failed(message) = &pre {
            return self.abort(AbortReason::ValidationFailed {
                stage: Stage::Pre,
                message: message.clone(),
            });
        }
        // When the old slot drains, the deadline counts from the end of the drain.
        let drained = self.drained();
        let deadline = (pre == Outcome::NotStarted)
            .then(|| record.started.max(drained))
            .flatten()
            .map(|from| add(from, self.settings.progress_deadline));
        let overdue = deadline.filter(|deadline| self.now >= *deadline);
        let view = self.slot(target);
        // Validated at previewReplicas (unless fast-tracked), scaled to full before the
        // switch; a slot at either size is not re-applied.
        let initial = if fast_track || self.settings.preview.is_none() {
            Size::Full
        } else {
            Size::Preview
        };
        if !view.holds(desired) || !view.sized_any(&[initial, Size::Full]) {
            if let Some(deadline) = overdue {
                return self.abort(AbortReason::ProgressDeadline { deadline });
            }
            if let Some(active) = active
                && view.runs_other(desired)
            {
                let Some(until) = drained else {
                    return self.converge(active, false, self.settings.scale_down_delay);
                };
                if self.now < until {
                    return Decision::WaitForDrain {
                        slot: target,
                        until,
                    };
                }
            }
            return Decision::ApplySlot {
                slot: target,
                revision: desired.to_owned(),
                size: initial,
            };
        }
        if let Some(preview) = self.preview(target) {
            return preview;
        }
        if !view.available() || !self.can_select(target) {
            if let Some(deadline) = overdue {
                return self.abort(AbortReason::ProgressDeadline { deadline });
            }
            return Decision::WaitForAvailable {
                slot: target,
                deadline,
            };
        }
        if !fast_track && !record.promoted_full {
            if self.state.promote_full.as_deref() == Some(desired) {
                return Decision::PromoteFull {
                    revision: desired.to_owned(),
                    by: controls::promoted_by(self.state.promoted_full_by.as_deref()),
                };
            }
            if self.settings.has_pre {
                match pre {
                    Outcome::NotStarted => {
                        return Decision::StartValidation {
                            stage: Stage::Pre,
                            revision: desired.to_owned(),
                        };
                    }
                    Outcome::Running => {
                        return Decision::WaitForValidation {
                            stage: Stage::Pre,
                            revision: desired.to_owned(),
                        };
                    }
                    Outcome::Succeeded | Outcome::Failed(_) => {}
                }
            }
            if let Some(reason) = controls::promotion_wait(
                self.settings.auto_promote,
                self.settings.auto_promote_after,
                self.state.promote.as_deref(),
                desired,
                self.state.ready_to_promote_at,
                self.now,
            ) {
                return Decision::AwaitPromotion {
                    revision: desired.to_owned(),
                    reason,
                };
            }
        }
        if controls::window_gates(self.settings, fast_track, active.is_none())
            && !self.cluster.window_open
        {
            return Decision::AwaitPromotion {
                revision: desired.to_owned(),
                reason: PromotionWait::MaintenanceWindow,
            };
        }
        if !view.sized(Size::Full) {
            return Decision::ScaleSlot {
                slot: target,
                size: Size::Full,
                reason: ScaleReason::Promotion,
            };
        }
        Decision::SwitchTraffic {
            to: target,
            revision: desired.to_owned(),
        }
    }
}

//! Argo Rollouts' controls in the simulation: autoPromoteAfter, retry, promote --full,
//! rollbackRequiresWindow, and the switchedAt / scaleDownAt bookkeeping.

use super::*;
use crate::well_known::{PROMOTE_FULL_ANNOTATION, PROMOTED_FULL_BY, RETRY_ANNOTATION};

/// Like [`Sim::settle`], also carrying out [`Decision::ClearRetry`] (the annotations go).
fn settle_all(sim: &mut Sim) -> Vec<Decision> {
    let mut seen = Vec::new();
    for _ in 0..30 {
        let decision = sim.decide();
        if let Decision::ClearRetry { abort, .. } = &decision {
            sim.release.annotations_mut().remove(RETRY_ANNOTATION);
            if *abort {
                sim.release.annotations_mut().remove(ABORT_ANNOTATION);
            }
        }
        sim.apply(&decision);
        let done = !decision.is_action();
        seen.push(decision);
        if done {
            return seen;
        }
    }
    panic!("no wait reached: {seen:?}");
}

fn window() -> crate::runbook::WindowRequirement {
    serde_json::from_value(json!({"selector": {"matchLabels": {"w": "x"}}})).unwrap()
}

#[test]
fn auto_promote_after_promotes_once_the_wait_is_over() {
    let mut sim = Sim::healthy(json!({
        "autoPromote": false,
        "autoPromoteAfter": "10m",
        "prePromotion": [step("smoke")]
    }));
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    sim.set_validation(Stage::Pre, Some(true));
    let ready = whole_seconds(sim.now);
    let wait = sim.last();
    let at = add(ready, secs(600));
    assert_eq!(
        wait,
        Decision::AwaitPromotion {
            revision: r2.clone(),
            reason: PromotionWait::Scheduled { at }
        }
    );
    assert_eq!(wait.requeue_at(), Some(at));
    assert_eq!(sim.status().ready_to_promote_at, Some(Time(ready)));
    // Still waiting a second before; the recorded moment does not move.
    sim.advance(secs(599));
    assert_eq!(sim.last(), wait);
    sim.advance(secs(1));
    let seen = sim.settle();
    assert!(seen.contains(&Decision::SwitchTraffic {
        to: Slot::Green,
        revision: r2
    }));
    assert_eq!(sim.status().ready_to_promote_at, None);
}

#[test]
fn retry_reopens_an_aborted_revision_and_validates_it_again() {
    let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    let r1 = rev_of("web:1");
    sim.settle();
    sim.set_validation(Stage::Pre, Some(false));
    sim.annotate(ABORT_ANNOTATION, &r2);
    assert!(matches!(sim.last(), Decision::Aborted { .. }));
    // A retry naming another revision is ignored.
    sim.annotate(RETRY_ANNOTATION, &r1);
    assert!(matches!(sim.last(), Decision::Aborted { .. }));
    sim.annotate(RETRY_ANNOTATION, &r2);
    let seen = settle_all(&mut sim);
    assert_eq!(
        seen[0],
        Decision::Retry {
            revision: r2.clone(),
            slot: Slot::Green,
            attempt: 2
        }
    );
    assert_eq!(
        seen[1],
        Decision::ClearRetry {
            revision: r2.clone(),
            abort: true
        }
    );
    assert_eq!(
        seen.last(),
        Some(&Decision::WaitForValidation {
            stage: Stage::Pre,
            revision: r2.clone()
        })
    );
    assert!(sim.release.annotations().get(RETRY_ANNOTATION).is_none());
    assert_eq!(
        &sim.history()[..2],
        [(r2.clone(), None), (r2.clone(), Some("Aborted".into()))]
    );
    assert_eq!(sim.status().history[0].attempt, Some(2));
    // This time it passes and is promoted.
    sim.set_validation(Stage::Pre, Some(true));
    sim.settle();
    assert_eq!(sim.history()[0], (r2, Some("Promoted".into())));
}

#[test]
fn promote_full_skips_validation_and_is_recorded() {
    let mut sim = Sim::healthy(json!({
        "autoPromote": false,
        "prePromotion": [step("smoke")],
        "postPromotion": [step("soak")]
    }));
    sim.release.spec.requires_maintenance_window = Some(window());
    sim.set_template("web:2");
    let r2 = sim.revision();
    assert!(matches!(
        sim.last(),
        Decision::WaitForValidation {
            stage: Stage::Pre,
            ..
        }
    ));
    sim.annotate(PROMOTE_FULL_ANNOTATION, &r2);
    sim.annotate(PROMOTED_FULL_BY, "alice");
    let seen = sim.settle();
    assert_eq!(
        seen[0],
        Decision::PromoteFull {
            revision: r2.clone(),
            by: "alice".into()
        }
    );
    // A required window is not skipped.
    assert_eq!(
        seen.last(),
        Some(&Decision::AwaitPromotion {
            revision: r2.clone(),
            reason: PromotionWait::MaintenanceWindow
        })
    );
    sim.cluster.window_open = true;
    let seen = sim.settle();
    assert!(seen.contains(&Decision::SwitchTraffic {
        to: Slot::Green,
        revision: r2.clone()
    }));
    // No postPromotion either: closed as Promoted straight after the switch.
    assert!(
        !seen
            .iter()
            .any(|d| matches!(d, Decision::StartValidation { .. }))
    );
    let record = &sim.status().history[0];
    assert_eq!(record.result.as_deref(), Some("Promoted"));
    assert_eq!(record.promoted_full_by.as_deref(), Some("alice"));
    assert!(record.promoted_full_at.is_some());
}

#[test]
fn rollback_requires_window_gates_the_fast_track() {
    for gated in [false, true] {
        let mut sim = Sim::healthy(json!({"rollbackRequiresWindow": gated}));
        sim.release.spec.requires_maintenance_window = Some(window());
        sim.cluster.window_open = true;
        sim.set_template("web:2");
        sim.settle();
        sim.cluster.window_open = false;
        sim.set_template("web:1");
        let r1 = sim.revision();
        let last = sim.last();
        if gated {
            assert_eq!(
                last,
                Decision::AwaitPromotion {
                    revision: r1,
                    reason: PromotionWait::MaintenanceWindow
                }
            );
        } else {
            assert_eq!(sim.active().as_deref(), Some("blue"), "{last:?}");
        }
    }
}

#[test]
fn scale_down_at_is_cleared_once_nothing_is_left_to_scale() {
    let mut sim = Sim::new(json!(null));
    assert_eq!(sim.last(), Decision::Healthy);
    assert_eq!(sim.status().scale_down_at, None);
    sim.set_template("web:2");
    sim.settle();
    assert!(sim.status().scale_down_at.is_some());
    sim.advance(secs(3600));
    assert_eq!(sim.last(), Decision::Healthy);
    assert_eq!(sim.status().scale_down_at, None);
}

#[test]
fn switched_at_keeps_sub_second_precision_and_reads_old_values() {
    let mut sim = Sim::new(json!(null));
    sim.now = ts("2026-06-10T12:00:00.123456789Z");
    let seen = sim.settle();
    let written = serde_json::to_value(sim.status().clone()).unwrap();
    assert_eq!(written["switchedAt"], json!("2026-06-10T12:00:00.123456Z"));
    // scaleDownAt stays whole seconds, as the API server stores it.
    assert!(seen.iter().any(|d| matches!(
        d,
        Decision::RecordSwitched { scale_down_at, .. }
            if *scale_down_at == ts("2026-06-10T12:00:30Z")
    )));
    let old: BlueGreenReleaseStatus =
        serde_json::from_value(json!({"switchedAt": "2026-06-10T12:00:00Z"})).unwrap();
    assert_eq!(old.switched_at.unwrap().0, ts("2026-06-10T12:00:00Z"));
}

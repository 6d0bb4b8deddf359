use serde_json::json;

use super::*;
use crate::blue_green::types::Phase;

fn t0() -> Timestamp {
    "2026-06-10T12:00:00Z".parse().unwrap()
}

#[test]
fn history_keeps_the_last_five_newest_first() {
    let mut history = Vec::new();
    for i in 0..7 {
        begin_record(&mut history, &format!("r{i}"), vec![], t0());
        close_record(
            &mut history,
            &format!("r{i}"),
            ReleaseResult::Promoted,
            t0(),
        );
    }
    let revisions: Vec<_> = history.iter().map(|r| r.revision.as_str()).collect();
    assert_eq!(revisions, ["r6", "r5", "r4", "r3", "r2"]);
    // Closing only touches an open record.
    close_record(&mut history, "r6", ReleaseResult::Aborted, t0());
    assert_eq!(history[0].result.as_deref(), Some("Promoted"));
    assert_eq!(
        ReleaseResult::from_status("Weird"),
        ReleaseResult::Superseded
    );
    for result in [
        ReleaseResult::Promoted,
        ReleaseResult::Aborted,
        ReleaseResult::RolledBack,
        ReleaseResult::Superseded,
    ] {
        assert_eq!(ReleaseResult::from_status(result.as_str()), result);
    }
}

fn release(status: serde_json::Value) -> BlueGreenRelease {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BlueGreenRelease",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}},
            "services": {"active": "web"}
        },
        "status": status
    }))
    .expect("a BlueGreenRelease")
}

fn degraded_condition(status: &str) -> serde_json::Value {
    json!({"type": "Degraded", "status": status, "reason": "ValidationFailed",
           "message": "", "lastTransitionTime": "2026-06-10T12:00:00Z"})
}

#[test]
fn degraded_by_phase_or_condition() {
    for phase in Phase::ALL {
        let bgr = release(json!({"phase": phase.as_str()}));
        assert_eq!(is_degraded(&bgr), phase == Phase::Degraded, "{phase:?}");
    }
    // The selector held on a slot with no ready pods: Degraded=True in another phase.
    let held = release(json!({"phase": "Healthy", "conditions": [degraded_condition("True")]}));
    assert!(is_degraded(&held));
    let fine = release(json!({"phase": "Healthy", "conditions": [degraded_condition("False")]}));
    assert!(!is_degraded(&fine));
    assert!(!is_degraded(&release(json!({"phase": "Invalid"}))));
    assert!(!is_degraded(&release(json!(null))), "never reconciled");
}

fn stamp(text: &str) -> Time {
    Time(text.parse().unwrap())
}

fn serving_blue(ready: i32) -> Cluster {
    Cluster {
        components: vec![crate::blue_green::observe::ComponentView {
            blue: crate::blue_green::observe::SlotView {
                exists: true,
                revision: Some("r1".into()),
                spec_replicas: 2,
                ready_replicas: ready,
                available: ready == 2,
            },
            ..Default::default()
        }],
        ..Cluster::default()
    }
}

fn find<'s>(status: &'s BlueGreenReleaseStatus, type_: &str) -> &'s Condition {
    condition(status, type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

#[test]
fn a_healthy_release_reports_its_active_slot_and_settled_conditions() {
    let bgr = release(json!(null));
    let recorded = BlueGreenReleaseStatus {
        phase: Some(Phase::Healthy),
        active_slot: Some("blue".into()),
        switched_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            stamp("2026-06-10T12:00:00Z").0,
        )),
        ..Default::default()
    };
    let now = stamp("2026-06-10T12:05:00Z");
    let written = status(
        &bgr,
        recorded,
        &serving_blue(2),
        &Decision::Healthy,
        "r1",
        &now,
    );
    assert_eq!(written.replicas, Some(2));
    assert_eq!(written.ready_replicas, Some(2));
    assert_eq!(
        written.selector.as_deref(),
        Some("ops.runbook.dev/release=web,ops.runbook.dev/slot=blue")
    );
    let available = find(&written, AVAILABLE);
    assert_eq!(
        (available.status.as_str(), available.reason.as_str()),
        ("True", REASON_SLOT_AVAILABLE)
    );
    assert_eq!(available.message, "blue slot: 2 of 2 replicas ready");
    let switched = find(&written, TRAFFIC_SWITCHED);
    assert_eq!(switched.reason, REASON_ENDPOINTS_CONVERGED);
    assert_eq!(find(&written, DEGRADED).reason, REASON_HEALTHY);
    let reconciling = find(&written, conditions::RECONCILING);
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("False", REASON_SETTLED)
    );
    assert_eq!(find(&written, conditions::READY).status, "True");
    // Written again later with nothing changed: no condition moves its lastTransitionTime.
    let again = status(
        &bgr,
        written.clone(),
        &serving_blue(2),
        &Decision::Healthy,
        "r1",
        &stamp("2026-06-10T13:00:00Z"),
    );
    assert_eq!(again, written);
}

#[test]
fn no_active_slot_and_a_held_selector_are_reported() {
    let bgr = release(json!(null));
    let now = stamp("2026-06-10T12:00:00Z");
    let first = status(
        &bgr,
        BlueGreenReleaseStatus::default(),
        &Cluster::default(),
        &Decision::Healthy,
        "r1",
        &now,
    );
    assert_eq!(find(&first, AVAILABLE).reason, REASON_NO_ACTIVE_SLOT);
    assert_eq!(find(&first, TRAFFIC_SWITCHED).reason, REASON_NO_ACTIVE_SLOT);
    assert_eq!(first.replicas, None);
    let recorded = BlueGreenReleaseStatus {
        active_slot: Some("blue".into()),
        ..Default::default()
    };
    let held = status(
        &bgr,
        recorded,
        &serving_blue(0),
        &Decision::HoldSelector {
            slot: Slot::Blue,
            found: Some(Slot::Green),
        },
        "r1",
        &now,
    );
    let degraded = find(&held, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", REASON_NO_READY_PODS)
    );
    assert_eq!(find(&held, AVAILABLE).reason, REASON_SLOT_NOT_AVAILABLE);
    assert_eq!(
        find(&held, TRAFFIC_SWITCHED).reason,
        REASON_ENDPOINTS_CONVERGING
    );
    assert_eq!(find(&held, conditions::RECONCILING).reason, REASON_DEGRADED);
}

#[test]
fn a_promotion_wait_is_announced_once_and_an_invalid_spec_is_phase_invalid() {
    let bgr = release(json!(null));
    let wait = Decision::AwaitPromotion {
        revision: "r2".into(),
        reason: crate::blue_green::decide::PromotionWait::Manual,
    };
    let before = BlueGreenReleaseStatus::default();
    assert!(promotion_wait_begins(&before, &wait).is_some());
    let written = status(
        &bgr,
        before,
        &serving_blue(2),
        &wait,
        "r2",
        &stamp("2026-06-10T12:00:00Z"),
    );
    assert_eq!(
        find(&written, conditions::RECONCILING).reason,
        "PromotionRequired"
    );
    assert!(promotion_wait_begins(&written, &wait).is_none());
    let verdict = validation::judge(
        &[],
        &[conditions::SpecProblem::new("spec.replicas", "bad")],
        Some(1),
        &stamp("2026-06-10T12:00:00Z"),
        READY_MESSAGE,
    );
    let invalid = invalid(&bgr, &verdict);
    assert_eq!(invalid.phase, Some(Phase::Invalid));
    assert_eq!(invalid.conditions, verdict.conditions);
}

#[test]
fn a_refused_switch_puts_the_previous_slot_back_and_aborts_the_revision() {
    use crate::blue_green::decide::AbortReason;
    let mut recorded = BlueGreenReleaseStatus {
        active_slot: Some("green".into()),
        active_revision: Some("r2".into()),
        desired_revision: Some("r2".into()),
        history: vec![ReleaseRecord {
            revision: "r2".into(),
            images: vec![],
            result: None,
            start_time: None,
            completion_time: None,
            attempt: None,
            promoted_full_by: None,
            promoted_full_at: None,
        }],
        ..Default::default()
    };
    let switched: jiff::Timestamp = "2026-06-10T11:00:00Z".parse().unwrap();
    let decision = Decision::SwitchRefused {
        to: Some(Slot::Blue),
        revision: Some("r1".into()),
        switched_at: Some(switched),
        failed: "r2".into(),
        reason: AbortReason::SwitchRefused {
            component: "orchestrator".into(),
            service: "orchestrator".into(),
            message: "forbidden".into(),
        },
    };
    let now: jiff::Timestamp = "2026-06-10T12:00:00Z".parse().unwrap();
    update_status(&mut recorded, "r2", &decision, &[], now);
    assert_eq!(recorded.active_slot.as_deref(), Some("blue"));
    assert_eq!(recorded.active_revision.as_deref(), Some("r1"));
    assert_eq!(recorded.switched_at, Some(MicroTime(switched)));
    assert_eq!(recorded.history[0].result.as_deref(), Some("Aborted"));
    assert_eq!(recorded.phase, Some(Phase::Degraded));
    let written = status(
        &release(json!(null)),
        recorded,
        &serving_blue(2),
        &decision,
        "r2",
        &stamp("2026-06-10T12:00:00Z"),
    );
    let degraded = find(&written, DEGRADED);
    assert_eq!(degraded.reason, "SwitchRefused");
    assert!(
        degraded
            .message
            .contains("Service orchestrator of component orchestrator")
    );
}

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

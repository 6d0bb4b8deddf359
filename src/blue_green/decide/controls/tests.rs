use super::*;
use crate::blue_green::decide::slot_selector;
use crate::blue_green::observe::Slot;
use crate::blue_green::types::{BlueGreenRelease, PreferredAntiAffinity, RequiredAntiAffinity};
use serde_json::json;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn release() -> BlueGreenRelease {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1",
        "kind": "BlueGreenRelease",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}},
            "services": {"active": "web"}
        }
    }))
    .unwrap()
}

#[test]
fn promote_annotation_naming_the_revision_promotes_at_once() {
    let now = ts("2026-06-10T12:00:00Z");
    let after = Some(SignedDuration::from_mins(10));
    assert_eq!(
        promotion_wait(false, after, Some("r2"), "r2", None, now),
        None
    );
    assert_eq!(
        promotion_wait(false, None, Some("r2"), "r2", None, now),
        None
    );
}

#[test]
fn auto_promote_after_counts_from_ready_and_survives_a_restart() {
    let ready = ts("2026-06-10T12:00:00Z");
    let after = Some(SignedDuration::from_mins(10));
    // Just became ready (no stamp yet): counts from now, to the second.
    assert_eq!(
        promotion_wait(
            false,
            after,
            None,
            "r2",
            None,
            ts("2026-06-10T12:00:00.700Z")
        ),
        Some(PromotionWait::Scheduled {
            at: ts("2026-06-10T12:10:00Z")
        })
    );
    // Later, from the recorded moment (a restart reads the same stamp).
    let later = ts("2026-06-10T12:09:59Z");
    assert_eq!(
        promotion_wait(false, after, None, "r2", Some(ready), later),
        Some(PromotionWait::Scheduled {
            at: ts("2026-06-10T12:10:00Z")
        })
    );
    for auto in [false, true] {
        assert_eq!(
            promotion_wait(
                auto,
                after,
                None,
                "r2",
                Some(ready),
                ts("2026-06-10T12:10:00Z")
            ),
            None
        );
    }
    // A promote naming another revision does not cut the wait short.
    assert!(matches!(
        promotion_wait(false, after, Some("r1"), "r2", Some(ready), later),
        Some(PromotionWait::Scheduled { .. })
    ));
}

#[test]
fn without_auto_promote_after_auto_promote_decides() {
    let now = ts("2026-06-10T12:00:00Z");
    assert_eq!(promotion_wait(true, None, None, "r2", None, now), None);
    assert_eq!(
        promotion_wait(false, None, None, "r2", None, now),
        Some(PromotionWait::Manual)
    );
    assert_eq!(
        promotion_wait(false, None, Some("r1"), "r2", None, now),
        Some(PromotionWait::OtherRevision { named: "r1".into() })
    );
}

#[test]
fn retry_runs_get_their_own_names() {
    assert_eq!(run_revision("abc", 1), "abc");
    assert_eq!(run_revision("abc", 3), "abc-3");
    let status: BlueGreenReleaseStatus = serde_json::from_value(json!({
        "history": [
            {"revision": "abc", "attempt": 2, "result": "Aborted"},
            {"revision": "abc", "result": "Aborted"},
            {"revision": "old", "result": "Promoted"}
        ]
    }))
    .unwrap();
    assert_eq!(attempt(Some(&status), "abc"), 2);
    assert_eq!(attempt(Some(&status), "old"), 1);
    assert_eq!(attempt(None, "abc"), 1);
}

#[test]
fn full_promotion_without_a_stamp_is_recorded_as_unknown() {
    assert_eq!(promoted_by(Some("alice")), "alice");
    assert_eq!(promoted_by(None), UNKNOWN_USER);
}

#[test]
fn no_anti_affinity_leaves_the_pod_spec_as_it_is() {
    let spec = PodSpec::default();
    assert_eq!(
        slot_pod_spec(
            Some(spec.clone()),
            None,
            slot_selector(&release(), Slot::Green)
        ),
        Some(spec)
    );
}

#[test]
fn required_anti_affinity_keeps_away_from_the_other_slot() {
    let wanted = AntiAffinity {
        required_during_scheduling_ignored_during_execution: Some(RequiredAntiAffinity {}),
        ..AntiAffinity::default()
    };
    let spec = slot_pod_spec(
        Some(PodSpec::default()),
        Some(&wanted),
        slot_selector(&release(), Slot::Blue),
    )
    .unwrap();
    let anti = spec.affinity.unwrap().pod_anti_affinity.unwrap();
    let terms = anti
        .required_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].topology_key, ANTI_AFFINITY_TOPOLOGY);
    let labels = terms[0]
        .label_selector
        .clone()
        .unwrap()
        .match_labels
        .unwrap();
    assert_eq!(labels, slot_selector(&release(), Slot::Blue));
    assert!(
        anti.preferred_during_scheduling_ignored_during_execution
            .is_none()
    );
}

#[test]
fn preferred_anti_affinity_is_added_to_the_templates_own() {
    let own = PodAffinityTerm {
        topology_key: "topology.kubernetes.io/zone".into(),
        ..PodAffinityTerm::default()
    };
    let template = PodSpec {
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 5,
                        pod_affinity_term: own,
                    },
                ]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }),
        ..PodSpec::default()
    };
    let wanted = AntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity {
            weight: 40,
        }),
        ..AntiAffinity::default()
    };
    let spec = slot_pod_spec(
        Some(template),
        Some(&wanted),
        slot_selector(&release(), Slot::Green),
    )
    .unwrap();
    let preferred = spec
        .affinity
        .unwrap()
        .pod_anti_affinity
        .unwrap()
        .preferred_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(preferred.len(), 2);
    assert_eq!(preferred[1].weight, 40);
    let labels = preferred[1]
        .pod_affinity_term
        .label_selector
        .clone()
        .unwrap()
        .match_labels
        .unwrap();
    assert_eq!(labels, slot_selector(&release(), Slot::Green));
}

//! A stack's slot, aggregated over its components, and a three-component release decided end
//! to end on a model of the cluster.

use jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::blue_green::decide::{Decision, ScaleReason, decide, spec_revision};
use crate::blue_green::observe::{ComponentView, EndpointView, ReleaseState};
use crate::blue_green::status::update_status;
use crate::blue_green::types::{BlueGreenRelease, BlueGreenReleaseSpec};

fn component(name: &str, replicas: i32) -> serde_json::Value {
    json!({
        "name": name,
        "replicas": replicas,
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": name, "image": format!("{name}:1")}]}},
        "services": {"active": name, "preview": format!("{name}-preview")}
    })
}

fn stack(strategy: serde_json::Value) -> BlueGreenRelease {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1",
        "kind": "BlueGreenRelease",
        "metadata": {"name": "legal", "namespace": "shop"},
        "spec": {
            "components": [component("interface", 3), component("orchestrator", 2), component("agents", 1)],
            "strategy": strategy
        }
    }))
    .unwrap()
}

fn view(revision: &str, replicas: i32, ready: i32) -> SlotView {
    SlotView {
        exists: true,
        revision: Some(revision.to_owned()),
        spec_replicas: replicas,
        ready_replicas: ready,
        available: ready == replicas,
    }
}

fn settings(spec: &BlueGreenReleaseSpec) -> Settings {
    Settings::from_spec(spec).unwrap()
}

#[test]
fn sizes_are_per_component() {
    let spec = stack(json!({"previewReplicas": 2, "standbyReplicas": 2})).spec;
    let s = settings(&spec);
    assert_eq!(s.replicas, [3, 2, 1]);
    let counts = |size| (0..3).map(|i| s.count(size, i)).collect::<Vec<_>>();
    assert_eq!(counts(Size::Full), [3, 2, 1]);
    assert_eq!(counts(Size::Preview), [2, 2, 1]);
    assert_eq!(counts(Size::Standby), [2, 2, 1]);
    assert_eq!(counts(Size::Zero), [0, 0, 0]);
    // Without previewReplicas the preview size is the full size.
    let full = settings(&stack(json!({})).spec);
    assert_eq!(full.count(Size::Preview, 0), 3);
}

#[test]
fn a_slot_of_the_stack_is_what_all_its_components_are() {
    let spec = stack(json!({})).spec;
    let s = settings(&spec);
    let mut cluster = Cluster {
        components: vec![
            ComponentView {
                blue: view("r1", 3, 3),
                ..Default::default()
            },
            ComponentView {
                blue: view("r1", 2, 2),
                ..Default::default()
            },
            ComponentView {
                blue: view("r1", 1, 0),
                ..Default::default()
            },
        ],
        window_open: true,
    };
    let blue = StackSlot::new(&cluster, &s, Slot::Blue);
    assert!(blue.exists() && blue.holds("r1") && blue.sized(Size::Full));
    assert_eq!(blue.revision(), Some("r1"));
    assert!(!blue.available(), "agents are not ready");
    assert!(!blue.can_select(), "agents have no ready pod");
    cluster.components[2].blue = view("r1", 1, 1);
    let blue = StackSlot::new(&cluster, &s, Slot::Blue);
    assert!(blue.available() && blue.can_select());
    // One component on another revision: the slot holds no common revision.
    cluster.components[1].blue.revision = Some("r0".into());
    let blue = StackSlot::new(&cluster, &s, Slot::Blue);
    assert!(!blue.holds("r1"));
    assert_eq!(blue.revision(), None);
    assert!(blue.has_revision() && blue.runs_other("r1"));
    // A missing component: the slot does not exist as a whole.
    let green = StackSlot::new(&cluster, &s, Slot::Green);
    assert!(!green.exists() && !green.has_revision() && green.sized(Size::Zero));
    // Endpoints converge only when every active Service holds only that slot's ready pods.
    for (i, c) in cluster.components.iter_mut().enumerate() {
        c.endpoints = EndpointView {
            ready_by_slot: [(Slot::Blue, 1)].into(),
            not_ready: i32::from(i == 1),
            ..Default::default()
        };
    }
    assert!(!StackSlot::new(&cluster, &s, Slot::Blue).endpoints_converged());
    cluster.components[1].endpoints.not_ready = 0;
    assert!(StackSlot::new(&cluster, &s, Slot::Blue).endpoints_converged());
}

#[test]
fn the_service_slot_is_the_one_every_active_service_names() {
    let s = settings(&stack(json!({})).spec);
    let named = |slots: [Option<Slot>; 3]| Cluster {
        components: slots
            .iter()
            .map(|slot| ComponentView {
                service_slot: *slot,
                preview_service_slot: *slot,
                ..Default::default()
            })
            .collect(),
        window_open: true,
    };
    let all_blue = named([Some(Slot::Blue); 3]);
    assert_eq!(service_slot(&all_blue, &s), Some(Slot::Blue));
    assert_eq!(preview_slot(&all_blue, &s), Some(Slot::Blue));
    let mixed = named([Some(Slot::Green), Some(Slot::Blue), Some(Slot::Blue)]);
    assert_eq!(service_slot(&mixed, &s), None, "no common slot");
    assert_eq!(
        service_slot(&named([Some(Slot::Blue), None, None]), &s),
        None
    );
    // A short list reads as absent components.
    let short = Cluster {
        components: vec![ComponentView {
            service_slot: Some(Slot::Blue),
            ..Default::default()
        }],
        window_open: true,
    };
    assert_eq!(service_slot(&short, &s), None);
}

#[test]
fn switch_order_is_declared_or_reversed() {
    assert_eq!(stack(json!({})).spec.switch_order(), [0, 1, 2]);
    assert_eq!(
        stack(json!({"switchOrder": "Declared"}))
            .spec
            .switch_order(),
        [0, 1, 2]
    );
    assert_eq!(
        stack(json!({"switchOrder": "Reverse"})).spec.switch_order(),
        [2, 1, 0]
    );
}

#[test]
fn the_stack_revision_covers_every_component_and_keeps_the_single_form() {
    let one = stack(json!({}));
    let r1 = spec_revision(&one.spec).unwrap();
    let mut two = one.clone();
    two.spec.components[2].template = crate::embedded::Embedded::new(json!({
        "metadata": {"labels": {"app": "agents"}},
        "spec": {"containers": [{"name": "agents", "image": "agents:2"}]}
    }));
    assert_ne!(
        spec_revision(&two.spec).unwrap(),
        r1,
        "any template is a new revision"
    );
    let mut scaled = one.clone();
    scaled.spec.components[0].replicas = 9;
    assert_eq!(spec_revision(&scaled.spec).unwrap(), r1, "replicas are not");
    // The single-template form: the revision of its template alone, as before.
    let single: BlueGreenRelease = serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BlueGreenRelease",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}},
                 "services": {"active": "web"}}
    }))
    .unwrap();
    let template = single.spec.template.as_ref().unwrap().decode().unwrap();
    assert_eq!(
        spec_revision(&single.spec).unwrap(),
        crate::blue_green::revision(&template)
    );
}

/// Carries out `decision` on every component of `cluster` (Deployments ready at once,
/// endpoints following selectors at once) and in the release's status.
fn carry_out(
    bgr: &mut BlueGreenRelease,
    cluster: &mut Cluster,
    decision: &Decision,
    now: Timestamp,
) {
    let desired = spec_revision(&bgr.spec).unwrap();
    let s = settings(&bgr.spec);
    let steps = bgr.spec.strategy.clone().unwrap_or_default().pre_promotion;
    let status = bgr.status.get_or_insert_with(Default::default);
    update_status(status, &desired, decision, &[], now);
    if let Decision::StartValidation { .. } = decision {
        crate::blue_green::status::record_validation_started(status, &steps);
    }
    for (i, c) in cluster.components.iter_mut().enumerate() {
        match decision {
            Decision::ApplySlot {
                slot,
                revision,
                size,
            } => {
                *c.slot_mut(*slot) = view(revision, s.count(*size, i), s.count(*size, i));
            }
            Decision::ScaleSlot { slot, size, .. } => {
                let v = c.slot_mut(*slot);
                v.spec_replicas = s.count(*size, i);
                v.ready_replicas = v.spec_replicas;
            }
            Decision::PointPreview { slot, .. } => c.preview_service_slot = Some(*slot),
            Decision::SwitchTraffic { to: slot, .. }
            | Decision::SwitchBack { to: slot, .. }
            | Decision::RestoreSelector { slot, .. } => c.service_slot = Some(*slot),
            _ => {}
        }
        if let Some(slot) = c.service_slot {
            c.endpoints = EndpointView {
                ready_by_slot: [(slot, c.slot(slot).ready_replicas)].into(),
                ..Default::default()
            };
        }
    }
}

/// Decides and carries out until a wait.
fn settle(bgr: &mut BlueGreenRelease, cluster: &mut Cluster, now: Timestamp) -> Vec<Decision> {
    let mut seen = Vec::new();
    for _ in 0..40 {
        let desired = spec_revision(&bgr.spec).unwrap();
        let state = ReleaseState::observe(bgr, &desired);
        let decision = decide(&bgr.spec, &state, cluster, now);
        carry_out(bgr, cluster, &decision, now);
        let done = !decision.is_action();
        seen.push(decision);
        if done {
            return seen;
        }
    }
    panic!("no wait reached: {seen:?}");
}

#[test]
fn a_stack_is_released_as_one_and_the_preview_runs_small_until_the_switch() {
    let now: Timestamp = "2026-06-10T12:00:00Z".parse().unwrap();
    let mut bgr = stack(
        json!({"previewReplicas": 1, "prePromotion": [{"name": "smoke", "sleep": {"duration": "1s"}}]}),
    );
    let mut cluster = Cluster {
        components: vec![ComponentView::default(); 3],
        window_open: true,
    };
    // First release: every component to blue at full size, all Services to blue.
    assert_eq!(
        settle(&mut bgr, &mut cluster, now).last(),
        Some(&Decision::Healthy)
    );
    assert!(
        cluster
            .components
            .iter()
            .all(|c| c.service_slot == Some(Slot::Blue))
    );
    assert_eq!(
        cluster
            .components
            .iter()
            .map(|c| c.blue.spec_replicas)
            .collect::<Vec<_>>(),
        [3, 2, 1]
    );
    // A new revision of one component: the whole stack goes to green, at previewReplicas.
    bgr.spec.components[1].template = crate::embedded::Embedded::new(json!({
        "metadata": {"labels": {"app": "orchestrator"}},
        "spec": {"containers": [{"name": "orchestrator", "image": "orchestrator:2"}]}
    }));
    let r2 = spec_revision(&bgr.spec).unwrap();
    let seen = settle(&mut bgr, &mut cluster, now);
    assert!(seen.contains(&Decision::ApplySlot {
        slot: Slot::Green,
        revision: r2.clone(),
        size: Size::Preview
    }));
    assert!(matches!(
        seen.last(),
        Some(Decision::WaitForValidation { .. })
    ));
    assert_eq!(
        cluster
            .components
            .iter()
            .map(|c| c.green.spec_replicas)
            .collect::<Vec<_>>(),
        [1, 1, 1]
    );
    assert!(cluster.components.iter().all(|c| c.green.holds(&r2)));
    assert!(
        cluster
            .components
            .iter()
            .all(|c| c.preview_service_slot == Some(Slot::Green))
    );
    assert!(
        cluster
            .components
            .iter()
            .all(|c| c.service_slot == Some(Slot::Blue))
    );
    // Validation passes: scaled to full, then every Service switches.
    let status = bgr.status.as_mut().unwrap();
    for entry in &mut status.validation {
        entry.phase = crate::runbook_run::StepPhase::Succeeded;
    }
    let seen = settle(&mut bgr, &mut cluster, now);
    let scale = seen
        .iter()
        .position(|d| {
            matches!(
                d,
                Decision::ScaleSlot {
                    reason: ScaleReason::Promotion,
                    size: Size::Full,
                    ..
                }
            )
        })
        .expect("scaled to full before the switch");
    let switch = seen
        .iter()
        .position(|d| matches!(d, Decision::SwitchTraffic { .. }))
        .expect("switched");
    assert!(scale < switch);
    assert!(
        cluster
            .components
            .iter()
            .all(|c| c.service_slot == Some(Slot::Green))
    );
    assert_eq!(
        cluster
            .components
            .iter()
            .map(|c| c.green.spec_replicas)
            .collect::<Vec<_>>(),
        [3, 2, 1]
    );
}

#[test]
fn a_half_switched_stack_is_put_where_status_says() {
    let now: Timestamp = "2026-06-10T12:00:00Z".parse().unwrap();
    let mut bgr = stack(json!({}));
    let mut cluster = Cluster {
        components: vec![ComponentView::default(); 3],
        window_open: true,
    };
    settle(&mut bgr, &mut cluster, now);
    // The operator stopped after switching the first Service to green (status says blue
    // here: a hand edit), or a Service was edited by hand: no common slot.
    cluster.components[0].service_slot = Some(Slot::Green);
    let desired = spec_revision(&bgr.spec).unwrap();
    let decision = decide(
        &bgr.spec,
        &ReleaseState::observe(&bgr, &desired),
        &cluster,
        now,
    );
    assert_eq!(
        decision,
        Decision::RestoreSelector {
            slot: Slot::Blue,
            found: None
        }
    );
}

//! The decision, the slot objects and revisions, and a simulation ([`Sim`]) that carries out
//! decisions on a model of the cluster, checking each with [`crate::testing::checked`].

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;

use super::revision::{canonical_json, fnv1a64};
use super::*;
use crate::blue_green::observe::{
    ComponentView, EndpointView, SlotView, UnknownSlot, release_label_value, selector_slot,
    slot_deployment_name, stage_outcome,
};
use crate::blue_green::status::{record_desired_revision, update_status};
use crate::blue_green::types::{BlueGreenRelease, BlueGreenReleaseStatus, Phase};
use crate::runbook_run::{StepPhase, StepStatus};
use crate::step::{OnFailure, Step};
use crate::testing::{Checks, checked};
use crate::well_known::{
    ABORT_ANNOTATION, DEFAULT_SLOT_LABEL, PROMOTE_ANNOTATION, REVISION_ANNOTATION,
};
use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::EndpointConditions;
use serde_json::json;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

const T0: &str = "2026-06-10T12:00:00Z";

fn template(image: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": "web"}, "annotations": {"team": "shop"}},
        "spec": {"containers": [{"name": "web", "image": image}]}
    })
}

fn step(name: &str) -> serde_json::Value {
    json!({"name": name, "sleep": {"duration": "1s"}})
}

fn release(strategy: serde_json::Value) -> BlueGreenRelease {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1",
        "kind": "BlueGreenRelease",
        "metadata": {"name": "web", "namespace": "shop", "uid": "0b6c1e52-1111-4c7e-9a6e-3f0d4a5b6c7d"},
        "spec": {
            "replicas": 3,
            "template": template("web:1"),
            "services": {"active": "web", "preview": "web-preview"},
            "strategy": strategy
        }
    }))
    .unwrap()
}

fn decoded(bgr: &BlueGreenRelease) -> PodTemplateSpec {
    bgr.spec.template.as_ref().unwrap().decode().unwrap()
}

/// What a simulated reconcile decides from: the release as stored, and the cluster.
type SimInput = (BlueGreenRelease, Cluster);

/// The decision the controller makes for `input` at `now`.
fn sim_decide((release, cluster): &SimInput, now: Timestamp) -> Decision {
    let desired = revision(&decoded(release));
    decide(
        &release.spec,
        &ReleaseState::observe(release, &desired),
        cluster,
        now,
    )
}

/// A restart reads the release back from the API server (its JSON); the cluster is observed
/// again as it is.
fn sim_restart((release, cluster): &SimInput) -> SimInput {
    let stored: BlueGreenRelease =
        serde_json::from_str(&serde_json::to_string(release).unwrap()).unwrap();
    (stored, cluster.clone())
}

/// No empty moment: traffic only ever goes to a slot with ready pods (unless the release wants
/// none).
fn no_empty_moment((release, cluster): &SimInput, decision: &Decision) -> Result<(), String> {
    match decision.moves_traffic() {
        Some(to)
            if cluster.components[0].slot(to).ready_replicas == 0
                && release.spec.replicas != Some(0) =>
        {
            Err(format!(
                "{decision:?} moves traffic to a slot without ready pods"
            ))
        }
        _ => Ok(()),
    }
}

/// A small world: the release as stored by the API server, the cluster, and a clock. It
/// carries out decisions the way the controller is meant to (status through
/// [`update_status`], selector writes after status), and checks every decision with
/// [`checked`]: pure, the same after a restart (the release read back from its JSON), and
/// [`no_empty_moment`].
struct Sim {
    release: BlueGreenRelease,
    cluster: Cluster,
    now: Timestamp,
    /// Deployments become fully available as soon as they are applied or scaled.
    auto_ready: bool,
    /// EndpointSlices follow a selector change at once.
    auto_endpoints: bool,
    /// Pods created so far, per slot.
    pods_created: BTreeMap<Slot, i32>,
    /// Every decision, in order.
    log: Vec<String>,
}

impl Sim {
    fn new(strategy: serde_json::Value) -> Self {
        Self {
            release: release(strategy),
            cluster: Cluster::default(),
            now: ts(T0),
            auto_ready: true,
            auto_endpoints: true,
            pods_created: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    fn revision(&self) -> String {
        revision(&decoded(&self.release))
    }

    fn state(&self) -> ReleaseState {
        ReleaseState::observe(&self.release, &self.revision())
    }

    fn decide(&self) -> Decision {
        let input = (self.release.clone(), self.cluster.clone());
        checked(
            &Checks {
                decide: &sim_decide,
                restart: &sim_restart,
                invariant: &no_empty_moment,
            },
            &input,
            self.now,
        )
    }

    fn status(&mut self) -> &mut BlueGreenReleaseStatus {
        self.release.status.get_or_insert_with(Default::default)
    }

    fn apply_status(&mut self, decision: &Decision) {
        let revision = self.revision();
        let images = images(&decoded(&self.release));
        let now = self.now;
        update_status(self.status(), &revision, decision, &images, now);
    }

    fn scale(&mut self, slot: Slot, replicas: i32, new_template: bool) {
        let auto = self.auto_ready;
        let view = self.cluster.components[0].slot_mut(slot);
        let created = if new_template {
            replicas
        } else {
            (replicas - view.spec_replicas).max(0)
        };
        view.exists = true;
        view.spec_replicas = replicas;
        if auto || created == 0 {
            view.available = true;
            view.ready_replicas = replicas;
        } else {
            view.available = false;
            if new_template {
                view.ready_replicas = view.ready_replicas.min(replicas);
            }
        }
        *self.pods_created.entry(slot).or_default() += created;
    }

    /// The replica count of `size` (one component).
    fn count(&self, size: Size) -> i32 {
        Settings::from_spec(&self.release.spec)
            .unwrap()
            .count(size, 0)
    }

    fn point_service(&mut self, slot: Slot) {
        self.cluster.components[0].service_slot = Some(slot);
        if self.auto_endpoints {
            self.converge_endpoints();
        }
    }

    fn apply_cluster(&mut self, decision: &Decision) {
        match decision {
            Decision::ApplySlot {
                slot,
                revision,
                size,
            } => {
                let new_template = !self.cluster.components[0].slot(*slot).holds(revision);
                self.cluster.components[0].slot_mut(*slot).revision = Some(revision.clone());
                self.scale(*slot, self.count(*size), new_template);
            }
            Decision::ScaleSlot { slot, size, .. } => self.scale(*slot, self.count(*size), false),
            Decision::PointPreview { slot, .. } => {
                self.cluster.components[0].preview_service_slot = Some(*slot);
            }
            Decision::StartValidation { stage, .. } => self.set_validation(*stage, None),
            Decision::SwitchTraffic { to, .. } | Decision::SwitchBack { to, .. } => {
                self.point_service(*to);
            }
            Decision::RestoreSelector { slot, .. } => self.point_service(*slot),
            _ => {}
        }
    }

    fn apply(&mut self, decision: &Decision) {
        // Status first, then the cluster: the order the controller must keep.
        self.apply_status(decision);
        self.apply_cluster(decision);
        self.log.push(format!("{decision:?}"));
    }

    /// Decides and carries out until a wait; returns what was decided.
    fn settle(&mut self) -> Vec<Decision> {
        let mut seen: Vec<Decision> = Vec::new();
        for _ in 0..30 {
            let decision = self.decide();
            if let Some(last) = seen.last() {
                assert_ne!(last, &decision, "an action was decided twice in a row");
            }
            self.apply(&decision);
            let done = !decision.is_action();
            seen.push(decision);
            if done {
                return seen;
            }
        }
        panic!("no wait reached: {seen:?}");
    }

    fn last(&mut self) -> Decision {
        self.settle().pop().unwrap()
    }

    fn set_template(&mut self, image: &str) {
        self.release.spec.template = Some(crate::embedded::Embedded::new(template(image)));
    }

    fn annotate(&mut self, key: &str, value: &str) {
        self.release
            .annotations_mut()
            .insert(key.to_owned(), value.to_owned());
    }

    fn steps(&self, stage: Stage) -> Vec<Step> {
        let strategy = self.release.spec.strategy.clone().unwrap_or_default();
        match stage {
            Stage::Pre => strategy.pre_promotion,
            Stage::Post => strategy.post_promotion,
        }
    }

    /// Sets every step of `stage`: running (`None`), succeeded or failed.
    fn set_validation(&mut self, stage: Stage, done: Option<bool>) {
        let (phase, message) = match done {
            None => (StepPhase::Running, None),
            Some(true) => (StepPhase::Succeeded, None),
            Some(false) => (StepPhase::Failed, Some("HTTP 503 from /healthz".to_owned())),
        };
        let steps = self.steps(stage);
        let status = self.status();
        for step in steps {
            status.validation.retain(|entry| entry.name != step.name);
            status.validation.push(StepStatus {
                name: step.name.clone(),
                phase,
                attempts: 1,
                start_time: None,
                completion_time: None,
                message: message.clone(),
                reason: None,
                condition: None,
                target: None,
                outputs: BTreeMap::new(),
            });
        }
    }

    fn converge_endpoints(&mut self) {
        let slot = self.cluster.components[0].service_slot.unwrap();
        let ready = self.cluster.components[0].slot(slot).ready_replicas;
        self.cluster.components[0].endpoints = EndpointView {
            ready_by_slot: BTreeMap::from([(slot, ready)]),
            ..EndpointView::default()
        };
    }

    fn finish_rollout(&mut self, slot: Slot) {
        let view = self.cluster.components[0].slot_mut(slot);
        view.available = true;
        view.ready_replicas = view.spec_replicas;
    }

    fn active(&self) -> Option<String> {
        self.release.status.as_ref()?.active_slot.clone()
    }

    fn history(&self) -> Vec<(String, Option<String>)> {
        let status = self.release.status.as_ref().unwrap();
        status
            .history
            .iter()
            .map(|r| (r.revision.clone(), r.result.clone()))
            .collect()
    }

    fn advance(&mut self, by: SignedDuration) {
        self.now = add(self.now, by);
    }

    /// A release serving `web:1` on blue, settled (Healthy).
    fn healthy(strategy: serde_json::Value) -> Self {
        let mut sim = Sim::new(strategy);
        assert_eq!(sim.last(), Decision::Healthy);
        sim.advance(secs(3600));
        sim
    }
}

fn rev_of(image: &str) -> String {
    let raw = template(image);
    revision(&serde_json::from_value(raw).unwrap())
}

// --- slots and revisions ---------------------------------------------------------------------

#[test]
fn slot_names_and_parsing() {
    assert_eq!(Slot::Blue.as_str(), "blue");
    assert_eq!(Slot::Green.as_str(), "green");
    assert_eq!(Slot::Blue.other(), Slot::Green);
    assert_eq!(Slot::Green.other(), Slot::Blue);
    assert_eq!("green".parse::<Slot>(), Ok(Slot::Green));
    assert_eq!("Blue".parse::<Slot>(), Err(UnknownSlot("Blue".to_owned())));
    assert_eq!(Slot::parse("purple"), None);
    assert_eq!(Slot::Green.to_string(), "green");
}

#[test]
fn revision_is_stable_and_pinned() {
    let a = rev_of("web:1");
    assert_eq!(a, rev_of("web:1"));
    assert_eq!(a.len(), 10);
    assert!(
        a.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    // Pinned: a change here re-releases every BlueGreenRelease after an operator upgrade.
    assert_eq!(a, "1102565448");
}

#[test]
fn revision_ignores_key_order() {
    let one: PodTemplateSpec = serde_json::from_str(
        r#"{"metadata":{"labels":{"b":"2","a":"1"}},"spec":{"containers":[{"image":"x","name":"c"}]}}"#,
    )
    .unwrap();
    let two: PodTemplateSpec = serde_json::from_str(
        r#"{"spec":{"containers":[{"name":"c","image":"x"}]},"metadata":{"labels":{"a":"1","b":"2"}}}"#,
    )
    .unwrap();
    assert_eq!(revision(&one), revision(&two));
    let mut out = String::new();
    let mut map = serde_json::Map::new();
    map.insert("z".into(), json!(1));
    map.insert("a".into(), json!({"y": [true, null, "q\""], "b": 2.5}));
    canonical_json(&serde_json::Value::Object(map), &mut out);
    assert_eq!(out, r#"{"a":{"b":2.5,"y":[true,null,"q\""]},"z":1}"#);
}

#[test]
fn revision_changes_with_image_env_and_labels() {
    let base = template("web:1");
    let base_rev = rev_of("web:1");
    assert_ne!(base_rev, rev_of("web:2"));
    let mut env = base.clone();
    env["spec"]["containers"][0]["env"] = json!([{"name": "MODE", "value": "fast"}]);
    let mut labels = base.clone();
    labels["metadata"]["labels"]["version"] = json!("v2");
    for changed in [env, labels] {
        let changed: PodTemplateSpec = serde_json::from_value(changed).unwrap();
        assert_ne!(revision(&changed), base_rev);
    }
}

#[test]
fn fnv_matches_reference_vectors() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn images_lists_containers_then_init_once() {
    let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {
        "containers": [{"name": "a", "image": "app:1"}, {"name": "b", "image": "side:1"}],
        "initContainers": [{"name": "i", "image": "app:1"}, {"name": "j", "image": "migrate:1"}]
    }}))
    .unwrap();
    assert_eq!(images(&t), ["app:1", "side:1", "migrate:1"]);
}

// --- slot Deployments ------------------------------------------------------------------------

#[test]
fn slot_deployment_has_names_labels_selector_and_owner() {
    let bgr = release(json!({}));
    let t = decoded(&bgr);
    let d = slot_deployment(&bgr, None, Slot::Green, &t, "abc1234567", 4);
    assert_eq!(d.metadata.name.as_deref(), Some("web-green"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("shop"));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(4));
    let selector = spec.selector.match_labels.clone().unwrap();
    assert_eq!(
        selector,
        BTreeMap::from([
            ("ops.runbook.dev/release".to_owned(), "web".to_owned()),
            ("ops.runbook.dev/slot".to_owned(), "green".to_owned()),
        ])
    );
    let pod_meta = spec.template.metadata.as_ref().unwrap();
    let pod_labels = pod_meta.labels.as_ref().unwrap();
    assert_eq!(pod_labels["app"], "web");
    assert_eq!(pod_labels["ops.runbook.dev/slot"], "green");
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    assert_eq!(d.metadata.labels.as_ref(), Some(pod_labels));
    let pod_annotations = pod_meta.annotations.as_ref().unwrap();
    assert_eq!(pod_annotations[REVISION_ANNOTATION], "abc1234567");
    assert_eq!(pod_annotations["team"], "shop");
    assert_eq!(d.annotations()[REVISION_ANNOTATION], "abc1234567");
    assert_eq!(spec.template.spec, t.spec);
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "BlueGreenRelease");
    assert_eq!(owner.api_version, "ops.runbook.dev/v1alpha1");
    assert_eq!(owner.name, "web");
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    // Only owned fields, with apiVersion and kind, for server-side apply.
    let value = serde_json::to_value(&d).unwrap();
    assert_eq!(value["apiVersion"], "apps/v1");
    assert_eq!(value["kind"], "Deployment");
    assert!(value.get("status").is_none());
    let mut keys: Vec<_> = value["spec"].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["replicas", "selector", "template"]);
    assert_eq!(
        SlotView::observe(Some(&d)).revision.as_deref(),
        Some("abc1234567")
    );
}

#[test]
fn slot_deployment_selector_survives_label_changes_and_custom_slot_label() {
    let mut bgr = release(json!({}));
    bgr.spec.slot_label = Some("deployment-slot".into());
    let one = decoded(&bgr);
    let mut raw = template("web:2");
    raw["metadata"]["labels"] = json!({"app": "web", "version": "v2"});
    let two: PodTemplateSpec = serde_json::from_value(raw).unwrap();
    let a = slot_deployment(&bgr, None, Slot::Blue, &one, &revision(&one), 3);
    let b = slot_deployment(&bgr, None, Slot::Blue, &two, &revision(&two), 3);
    assert_eq!(a.spec.unwrap().selector, b.spec.as_ref().unwrap().selector);
    let labels = b.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["deployment-slot"], "blue");
    assert_eq!(labels["version"], "v2");
    assert!(!labels.contains_key(DEFAULT_SLOT_LABEL));
}

#[test]
fn slot_deployment_without_uid_has_no_owner() {
    let mut bgr = release(json!({}));
    bgr.metadata.uid = None;
    let t = decoded(&bgr);
    let d = slot_deployment(&bgr, None, Slot::Blue, &t, "r", 1);
    assert_eq!(d.metadata.owner_references, None);
}

#[test]
fn long_names_are_bounded() {
    let long = "a".repeat(250);
    let name = slot_deployment_name(&long, Slot::Green);
    assert!(name.len() <= 253 && name.ends_with("-green"), "{name}");
    assert_ne!(name, slot_deployment_name(&"a".repeat(249), Slot::Green));
    let label = release_label_value(&long);
    assert_eq!(label.len(), 63);
    assert_eq!(release_label_value("web"), "web");
}

// --- observing the cluster -------------------------------------------------------------------

fn deployment(generation: i64, observed: i64, replicas: i32, counts: [i32; 4]) -> Deployment {
    let [total, updated, ready, available] = counts;
    Deployment {
        metadata: ObjectMeta {
            name: Some("web-blue".into()),
            generation: Some(generation),
            annotations: Some(BTreeMap::from([(REVISION_ANNOTATION.into(), "r1".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(total),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..DeploymentStatus::default()
        }),
    }
}

#[test]
fn slot_view_available_only_when_fully_rolled_out() {
    assert_eq!(SlotView::observe(None), SlotView::absent());
    let done = SlotView::observe(Some(&deployment(2, 2, 3, [3, 3, 3, 3])));
    assert_eq!(
        done,
        SlotView {
            exists: true,
            revision: Some("r1".into()),
            spec_replicas: 3,
            ready_replicas: 3,
            available: true
        }
    );
    // Spec not observed yet, old replicas left, not all available, not all updated.
    for d in [
        deployment(3, 2, 3, [3, 3, 3, 3]),
        deployment(2, 2, 3, [4, 3, 3, 3]),
        deployment(2, 2, 3, [3, 3, 3, 2]),
        deployment(2, 2, 3, [3, 2, 3, 3]),
    ] {
        let view = SlotView::observe(Some(&d));
        assert!(!view.available, "{d:?}");
    }
    assert!(SlotView::observe(Some(&deployment(1, 1, 0, [0, 0, 0, 0]))).available);
}

#[test]
fn endpoint_view_counts_ready_by_slot() {
    let endpoint = |pod: &str, ready: Option<bool>| Endpoint {
        addresses: vec!["10.0.0.1".into()],
        conditions: Some(EndpointConditions {
            ready,
            ..EndpointConditions::default()
        }),
        target_ref: Some(ObjectReference {
            name: Some(pod.into()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    };
    let slice = EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: Some(vec![
            endpoint("web-green-1", Some(true)),
            endpoint("web-green-2", None),
            endpoint("web-blue-1", Some(false)),
            endpoint("legacy-1", Some(true)),
        ]),
        metadata: ObjectMeta::default(),
        ports: None,
    };
    let slot_of = |e: &Endpoint| {
        let name = e.target_ref.as_ref()?.name.as_deref()?;
        Slot::ALL
            .into_iter()
            .find(|s| name.starts_with(&format!("web-{s}-")))
    };
    let view = EndpointView::from_slices([&slice], slot_of);
    assert_eq!(view.ready(Slot::Green), 2);
    assert_eq!(view.ready(Slot::Blue), 0);
    assert_eq!(view.not_ready, 1);
    assert_eq!(view.ready_unknown, 1);
    assert!(!view.only(Slot::Green, false));
    let clean = EndpointView {
        ready_by_slot: BTreeMap::from([(Slot::Green, 2)]),
        ..EndpointView::default()
    };
    assert!(clean.only(Slot::Green, false));
    assert!(!clean.only(Slot::Blue, true));
    assert!(!EndpointView::default().only(Slot::Blue, false));
    assert!(EndpointView::default().only(Slot::Blue, true));
}

#[test]
fn selector_slot_reads_the_key() {
    let selector = BTreeMap::from([
        ("app".to_owned(), "web".to_owned()),
        ("deployment-slot".to_owned(), "green".to_owned()),
    ]);
    assert_eq!(
        selector_slot(Some(&selector), "deployment-slot"),
        Some(Slot::Green)
    );
    assert_eq!(selector_slot(Some(&selector), DEFAULT_SLOT_LABEL), None);
    assert_eq!(selector_slot(None, "deployment-slot"), None);
    let odd = BTreeMap::from([("deployment-slot".to_owned(), "purple".to_owned())]);
    assert_eq!(selector_slot(Some(&odd), "deployment-slot"), None);
}

#[test]
fn stage_outcome_summarises_steps() {
    let steps: Vec<Step> = serde_json::from_value(json!([step("smoke"), step("soak")])).unwrap();
    let entry = |name: &str, phase| StepStatus {
        name: name.into(),
        phase,
        attempts: 1,
        start_time: None,
        completion_time: None,
        message: Some("boom".into()),
        reason: None,
        condition: None,
        target: None,
        outputs: BTreeMap::new(),
    };
    assert_eq!(stage_outcome(&[], &steps), Outcome::NotStarted);
    let other = [entry("post-check", StepPhase::Failed)];
    assert_eq!(stage_outcome(&other, &steps), Outcome::NotStarted);
    let running = [
        entry("smoke", StepPhase::Succeeded),
        entry("soak", StepPhase::Pending),
    ];
    assert_eq!(stage_outcome(&running, &steps), Outcome::Running);
    let done = [
        entry("smoke", StepPhase::Succeeded),
        entry("soak", StepPhase::Skipped),
    ];
    assert_eq!(stage_outcome(&done, &steps), Outcome::Succeeded);
    let failed = [
        entry("smoke", StepPhase::Failed),
        entry("soak", StepPhase::Skipped),
    ];
    assert_eq!(
        stage_outcome(&failed, &steps),
        Outcome::Failed("step \"smoke\": boom".into())
    );
    let mut lenient: Vec<Step> =
        serde_json::from_value(json!([step("smoke"), step("soak")])).unwrap();
    lenient[0].on_failure = Some(OnFailure::Continue);
    assert_eq!(stage_outcome(&failed, &lenient), Outcome::Succeeded);
}

// --- the plan --------------------------------------------------------------------------------

#[test]
fn settings_defaults() {
    let settings = Settings::from_spec(&release(json!({})).spec).unwrap();
    assert_eq!(
        settings,
        Settings {
            replicas: vec![3],
            standby: 0,
            preview: None,
            auto_promote: true,
            has_pre: false,
            has_post: false,
            has_preview: true,
            previews: vec![true],
            requires_window: false,
            scale_down_delay: secs(30),
            abort_scale_down_delay: secs(30),
            progress_deadline: secs(600),
            auto_promote_after: None,
            rollback_requires_window: false,
        }
    );
    let capped = release(json!({"standbyReplicas": 5}));
    assert_eq!(Settings::from_spec(&capped.spec).unwrap().standby, 3);
}

#[test]
fn invalid_specs_name_the_field_and_touch_nothing() {
    let cases = [
        (
            json!({"scaleDownDelay": "soon"}),
            "spec.strategy.scaleDownDelay",
        ),
        (
            json!({"abortScaleDownDelay": "1x"}),
            "spec.strategy.abortScaleDownDelay",
        ),
        (
            json!({"progressDeadline": ""}),
            "spec.strategy.progressDeadline",
        ),
        (
            json!({"progressDeadline": "0s"}),
            "spec.strategy.progressDeadline",
        ),
        (
            json!({"standbyReplicas": -1}),
            "spec.strategy.standbyReplicas",
        ),
    ];
    for (strategy, field) in cases {
        let sim = Sim::new(strategy);
        let decision = sim.decide();
        let Decision::Invalid(error) = &decision else {
            panic!("{decision:?}");
        };
        assert!(error.to_string().starts_with(field), "{error}");
        assert!(!decision.is_action());
        assert_eq!(decision.phase(), None);
    }
    let mut sim = Sim::new(json!({}));
    sim.release.spec.replicas = Some(-1);
    assert_eq!(
        sim.decide(),
        Decision::Invalid(SpecError::Negative {
            field: "spec.replicas",
            value: -1
        })
    );
}

// --- first apply -----------------------------------------------------------------------------

#[test]
fn first_apply_scales_blue_then_switches_and_is_healthy() {
    // Validation, manual promotion and a closed window do not hold up a first release:
    // nothing serves yet, so there is nothing to protect.
    let mut sim = Sim::new(json!({
        "autoPromote": false,
        "prePromotion": [step("smoke")],
        "postPromotion": [step("soak")]
    }));
    sim.release.spec.requires_maintenance_window =
        Some(serde_json::from_value(json!({"selector": {"matchLabels": {"w": "x"}}})).unwrap());
    sim.auto_ready = false;
    let r1 = sim.revision();
    assert_eq!(
        sim.settle(),
        [
            Decision::BeginRelease {
                revision: r1.clone(),
                slot: Slot::Blue,
                fast_track: true,
                supersedes: None
            },
            Decision::ApplySlot {
                slot: Slot::Blue,
                revision: r1.clone(),
                size: Size::Full
            },
            Decision::PointPreview {
                slot: Slot::Blue,
                found: None
            },
            Decision::WaitForAvailable {
                slot: Slot::Blue,
                deadline: Some(ts("2026-06-10T12:10:00Z"))
            },
        ]
    );
    assert_eq!(sim.active(), None);
    sim.finish_rollout(Slot::Blue);
    sim.advance(secs(5));
    assert_eq!(
        sim.settle(),
        [
            Decision::SwitchTraffic {
                to: Slot::Blue,
                revision: r1.clone()
            },
            Decision::RecordSwitched {
                slot: Slot::Blue,
                at: ts("2026-06-10T12:00:05Z"),
                scale_down_at: ts("2026-06-10T12:00:35Z"),
                back: false
            },
            Decision::CloseRelease {
                revision: r1.clone(),
                result: ReleaseResult::Promoted
            },
            Decision::Healthy,
        ]
    );
    let status = sim.release.status.clone().unwrap();
    assert_eq!(status.phase.map(Phase::as_str), Some("Healthy"));
    assert_eq!(status.active_slot.as_deref(), Some("blue"));
    assert_eq!(status.active_revision.as_deref(), Some(r1.as_str()));
    assert_eq!(status.desired_revision.as_deref(), Some(r1.as_str()));
    assert_eq!(status.history[0].images, ["web:1"]);
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    assert!(status.validation.is_empty());
    assert!(!sim.cluster.components[0].green.exists);
}

#[test]
fn first_apply_beside_a_service_already_naming_a_slot_uses_the_other() {
    // The Service selects pods from before the release (e.g. the seed runbook's blue
    // Deployment): the release rolls into green and switches once green is ready.
    let mut sim = Sim::new(json!({}));
    sim.cluster.components[0].service_slot = Some(Slot::Blue);
    sim.cluster.components[0].blue = SlotView {
        exists: true,
        revision: None,
        spec_replicas: 2,
        ready_replicas: 2,
        available: true,
    };
    let seen = sim.settle();
    assert!(matches!(
        seen[0],
        Decision::BeginRelease {
            slot: Slot::Green,
            ..
        }
    ));
    assert_eq!(sim.active().as_deref(), Some("green"));
    // Status lost, the Service still names green, which holds the revision: adopted with
    // no new pods.
    let created = sim.pods_created.clone();
    sim.release.status = None;
    let seen = sim.settle();
    assert!(matches!(
        seen[0],
        Decision::BeginRelease {
            slot: Slot::Green,
            ..
        }
    ));
    assert_eq!(sim.pods_created, created);
    assert_eq!(sim.active().as_deref(), Some("green"));
}

// --- template change: the happy path ---------------------------------------------------------

#[test]
fn template_change_rolls_into_idle_slot_validates_switches_and_scales_down() {
    let mut sim = Sim::healthy(json!({
        "prePromotion": [step("smoke")],
        "postPromotion": [step("soak")]
    }));
    let r1 = sim.revision();
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.auto_ready = false;
    let seen = sim.settle();
    assert_eq!(
        seen,
        [
            Decision::BeginRelease {
                revision: r2.clone(),
                slot: Slot::Green,
                fast_track: false,
                supersedes: None
            },
            Decision::ApplySlot {
                slot: Slot::Green,
                revision: r2.clone(),
                size: Size::Full
            },
            Decision::PointPreview {
                slot: Slot::Green,
                found: Some(Slot::Blue)
            },
            Decision::WaitForAvailable {
                slot: Slot::Green,
                deadline: Some(add(sim.now, secs(600)))
            },
        ]
    );
    assert_eq!(seen[3].phase(), Some(Phase::Progressing));
    // The active slot is untouched while the new one rolls.
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    assert!(sim.cluster.components[0].blue.holds(&r1));
    // Partly available: still waiting, no validation yet.
    let green = sim.cluster.components[0].slot_mut(Slot::Green);
    green.ready_replicas = 2;
    assert!(matches!(sim.decide(), Decision::WaitForAvailable { .. }));
    sim.finish_rollout(Slot::Green);
    let seen = sim.settle();
    assert_eq!(
        seen,
        [
            Decision::StartValidation {
                stage: Stage::Pre,
                revision: r2.clone()
            },
            Decision::WaitForValidation {
                stage: Stage::Pre,
                revision: r2.clone()
            },
        ]
    );
    assert_eq!(seen[1].phase(), Some(Phase::Validating));
    sim.set_validation(Stage::Pre, Some(true));
    sim.advance(secs(60));
    let switched = whole_seconds(sim.now);
    assert_eq!(
        sim.settle(),
        [
            Decision::SwitchTraffic {
                to: Slot::Green,
                revision: r2.clone()
            },
            Decision::RecordSwitched {
                slot: Slot::Green,
                at: switched,
                scale_down_at: add(switched, secs(30)),
                back: false
            },
            Decision::StartValidation {
                stage: Stage::Post,
                revision: r2.clone()
            },
            Decision::WaitForValidation {
                stage: Stage::Post,
                revision: r2.clone()
            },
        ]
    );
    // postPromotion still running past scaleDownAt: the old slot keeps its pods, so a
    // failure could still switch back.
    sim.advance(secs(120));
    assert_eq!(
        sim.decide(),
        Decision::WaitForValidation {
            stage: Stage::Post,
            revision: r2.clone()
        }
    );
    sim.set_validation(Stage::Post, Some(true));
    assert_eq!(
        sim.settle(),
        [
            Decision::CloseRelease {
                revision: r2.clone(),
                result: ReleaseResult::Promoted
            },
            Decision::ScaleSlot {
                slot: Slot::Blue,
                size: Size::Zero,
                reason: ScaleReason::Standby
            },
            Decision::Healthy,
        ]
    );
    assert_eq!(
        sim.history(),
        [
            (r2.clone(), Some("Promoted".into())),
            (r1.clone(), Some("Promoted".into()))
        ]
    );
    assert_eq!(sim.release.status.as_ref().unwrap().scale_down_at, None);
    assert_eq!(
        sim.log
            .iter()
            .filter(|l| l.starts_with("SwitchTraffic"))
            .count(),
        2
    );
}

#[test]
fn scale_down_waits_for_scale_down_at_exactly_then_goes_to_standby() {
    let mut sim = Sim::healthy(json!({"standbyReplicas": 1, "scaleDownDelay": "2m"}));
    sim.set_template("web:2");
    let seen = sim.settle();
    let Some(Decision::RecordSwitched {
        at, scale_down_at, ..
    }) = seen
        .iter()
        .find(|d| matches!(d, Decision::RecordSwitched { .. }))
    else {
        panic!("{seen:?}");
    };
    assert_eq!(*scale_down_at, add(*at, secs(120)));
    let at = *scale_down_at;
    assert_eq!(
        seen.last(),
        Some(&Decision::WaitForScaleDown {
            slot: Slot::Blue,
            at
        })
    );
    assert_eq!(seen.last().unwrap().phase(), Some(Phase::ScalingDown));
    assert_eq!(seen.last().unwrap().requeue_at(), Some(at));
    assert_eq!(
        sim.release.status.as_ref().unwrap().scale_down_at,
        Some(Time(at))
    );
    sim.now = at - SignedDuration::from_nanos(1);
    assert_eq!(
        sim.decide(),
        Decision::WaitForScaleDown {
            slot: Slot::Blue,
            at
        }
    );
    sim.now = at;
    assert_eq!(
        sim.settle(),
        [
            Decision::ScaleSlot {
                slot: Slot::Blue,
                size: Size::Standby,
                reason: ScaleReason::Standby
            },
            Decision::Healthy
        ]
    );
}

#[test]
fn traffic_switched_only_when_endpoints_hold_only_ready_new_slot_pods() {
    let mut sim = Sim::healthy(json!({}));
    sim.auto_endpoints = false;
    sim.set_template("web:2");
    let seen = sim.settle();
    assert!(seen.contains(&Decision::SwitchTraffic {
        to: Slot::Green,
        revision: sim.revision()
    }));
    let waiting = Decision::WaitForEndpoints {
        slot: Slot::Green,
        back: false,
    };
    assert_eq!(seen.last(), Some(&waiting));
    assert_eq!(waiting.phase(), Some(Phase::Promoting));
    assert_eq!(sim.release.status.as_ref().unwrap().switched_at, None);
    let unconverged = [
        // Still the old slot's endpoints.
        EndpointView {
            ready_by_slot: BTreeMap::from([(Slot::Blue, 3)]),
            ..EndpointView::default()
        },
        // Both slots.
        EndpointView {
            ready_by_slot: BTreeMap::from([(Slot::Blue, 1), (Slot::Green, 3)]),
            ..EndpointView::default()
        },
        // New slot, one endpoint not ready.
        EndpointView {
            ready_by_slot: BTreeMap::from([(Slot::Green, 2)]),
            not_ready: 1,
            ..EndpointView::default()
        },
        // An endpoint of neither slot.
        EndpointView {
            ready_by_slot: BTreeMap::from([(Slot::Green, 3)]),
            ready_unknown: 1,
            ..EndpointView::default()
        },
        // Nothing at all.
        EndpointView::default(),
    ];
    for endpoints in unconverged {
        sim.cluster.components[0].endpoints = endpoints;
        assert_eq!(sim.decide(), waiting);
    }
    sim.converge_endpoints();
    sim.advance(secs(7));
    assert!(matches!(
        sim.settle()[0],
        Decision::RecordSwitched {
            slot: Slot::Green,
            ..
        }
    ));
    assert_eq!(
        sim.release.status.as_ref().unwrap().switched_at,
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            whole_seconds(sim.now)
        ))
    );
}

#[test]
fn zero_replicas_release_switches_with_no_endpoints() {
    let mut sim = Sim::new(json!({}));
    sim.release.spec.replicas = Some(0);
    assert_eq!(sim.last(), Decision::Healthy);
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
}

#[test]
fn auto_promote_switches_after_pre_promotion_succeeds() {
    let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    assert_eq!(
        sim.last(),
        Decision::WaitForValidation {
            stage: Stage::Pre,
            revision: r2.clone()
        }
    );
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    sim.set_validation(Stage::Pre, Some(true));
    assert_eq!(
        sim.decide(),
        Decision::SwitchTraffic {
            to: Slot::Green,
            revision: r2
        }
    );
}

#[test]
fn manual_promotion_waits_for_the_promote_annotation_of_the_desired_revision() {
    let mut sim = Sim::healthy(json!({"autoPromote": false}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    let waiting = sim.last();
    assert_eq!(
        waiting,
        Decision::AwaitPromotion {
            revision: r2.clone(),
            reason: PromotionWait::Manual
        }
    );
    assert_eq!(waiting.phase(), Some(Phase::AwaitingPromotion));
    assert!(
        PromotionWait::Manual
            .message(&r2)
            .contains(&format!("ops.runbook.dev/promote: {r2}"))
    );
    // A promote naming another revision (a stale approval) is ignored and reported.
    let r1 = rev_of("web:1");
    sim.annotate(PROMOTE_ANNOTATION, &r1);
    assert_eq!(
        sim.decide(),
        Decision::AwaitPromotion {
            revision: r2.clone(),
            reason: PromotionWait::OtherRevision { named: r1 }
        }
    );
    // Waiting for promotion is not bounded by the progress deadline.
    sim.advance(secs(3600));
    assert!(matches!(sim.decide(), Decision::AwaitPromotion { .. }));
    sim.annotate(PROMOTE_ANNOTATION, &format!(" {r2}\n"));
    assert_eq!(
        sim.decide(),
        Decision::SwitchTraffic {
            to: Slot::Green,
            revision: r2.clone()
        }
    );
    // The approval of r2 does not promote r3.
    sim.set_template("web:3");
    let r3 = sim.revision();
    assert_eq!(
        sim.last(),
        Decision::AwaitPromotion {
            revision: r3,
            reason: PromotionWait::OtherRevision { named: r2 }
        }
    );
}

#[test]
fn maintenance_window_holds_promotion_until_open() {
    let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
    sim.release.spec.requires_maintenance_window =
        Some(serde_json::from_value(json!({"selector": {"matchLabels": {"w": "x"}}})).unwrap());
    sim.set_template("web:2");
    let r2 = sim.revision();
    assert!(matches!(sim.last(), Decision::WaitForValidation { .. }));
    sim.set_validation(Stage::Pre, Some(true));
    let waiting = sim.decide();
    assert_eq!(
        waiting,
        Decision::AwaitPromotion {
            revision: r2.clone(),
            reason: PromotionWait::MaintenanceWindow
        }
    );
    assert_eq!(waiting.phase(), Some(Phase::AwaitingPromotion));
    assert_eq!(
        PromotionWait::MaintenanceWindow.reason(),
        "WaitingForWindow"
    );
    sim.cluster.window_open = true;
    assert_eq!(
        sim.decide(),
        Decision::SwitchTraffic {
            to: Slot::Green,
            revision: r2
        }
    );
}

#[test]
fn no_switch_unless_the_new_slot_is_fully_available() {
    let mut sim = Sim::healthy(json!({}));
    sim.auto_ready = false;
    sim.set_template("web:2");
    assert!(matches!(sim.last(), Decision::WaitForAvailable { .. }));
    // Ready pods but not every replica available: no switch.
    for (ready, available) in [(0, false), (2, false), (3, false)] {
        let green = sim.cluster.components[0].slot_mut(Slot::Green);
        green.ready_replicas = ready;
        green.available = available;
        assert!(matches!(
            sim.decide(),
            Decision::WaitForAvailable {
                slot: Slot::Green,
                ..
            }
        ));
    }
    sim.finish_rollout(Slot::Green);
    assert!(matches!(sim.decide(), Decision::SwitchTraffic { .. }));
}

/// Over many combinations of what the cluster shows, no decision points the active Service
/// at a slot without ready pods, and a promotion only goes to a fully available slot.
#[test]
fn no_empty_moment_over_many_states() {
    let views = [
        SlotView::absent(),
        SlotView {
            exists: true,
            revision: Some(rev_of("web:1")),
            spec_replicas: 3,
            ready_replicas: 0,
            available: false,
        },
        SlotView {
            exists: true,
            revision: Some(rev_of("web:2")),
            spec_replicas: 3,
            ready_replicas: 2,
            available: false,
        },
        SlotView {
            exists: true,
            revision: Some(rev_of("web:2")),
            spec_replicas: 3,
            ready_replicas: 0,
            available: true,
        },
        SlotView {
            exists: true,
            revision: Some(rev_of("web:1")),
            spec_replicas: 3,
            ready_replicas: 3,
            available: true,
        },
        SlotView {
            exists: true,
            revision: Some(rev_of("web:2")),
            spec_replicas: 3,
            ready_replicas: 3,
            available: true,
        },
    ];
    let r1 = rev_of("web:1");
    let r2 = rev_of("web:2");
    let record = |revision: &str, result| Record {
        revision: revision.into(),
        result,
        started: Some(ts(T0)),
        completed: None,
        attempt: 1,
        promoted_full: false,
    };
    let states = [
        ReleaseState {
            desired_revision: r2.clone(),
            ..ReleaseState::default()
        },
        ReleaseState {
            desired_revision: r2.clone(),
            recorded_revision: Some(r2.clone()),
            active_slot: Some(Slot::Blue),
            active_revision: Some(r1.clone()),
            switched_at: Some(ts(T0)),
            history: vec![
                record(&r2, None),
                record(&r1, Some(ReleaseResult::Promoted)),
            ],
            pre_validation: Outcome::Succeeded,
            ..ReleaseState::default()
        },
        ReleaseState {
            desired_revision: r2.clone(),
            recorded_revision: Some(r2.clone()),
            active_slot: Some(Slot::Green),
            active_revision: Some(r2.clone()),
            history: vec![
                record(&r2, None),
                record(&r1, Some(ReleaseResult::Promoted)),
            ],
            post_validation: Outcome::Failed("boom".into()),
            ..ReleaseState::default()
        },
        ReleaseState {
            desired_revision: r1.clone(),
            recorded_revision: Some(r1.clone()),
            active_slot: Some(Slot::Green),
            active_revision: Some(r2.clone()),
            switched_at: Some(ts(T0)),
            history: vec![
                record(&r2, Some(ReleaseResult::Promoted)),
                record(&r1, Some(ReleaseResult::Promoted)),
            ],
            ..ReleaseState::default()
        },
    ];
    let spec = release(json!({})).spec;
    let mut checked = 0;
    for state in &states {
        for blue in &views {
            for green in &views {
                for service_slot in [None, Some(Slot::Blue), Some(Slot::Green)] {
                    let cluster = Cluster {
                        components: vec![ComponentView {
                            blue: blue.clone(),
                            green: green.clone(),
                            service_slot,
                            preview_service_slot: service_slot,
                            ..ComponentView::default()
                        }],
                        ..Cluster::default()
                    };
                    let decision = decide(&spec, state, &cluster, add(ts(T0), secs(3600)));
                    if let Some(to) = decision.moves_traffic() {
                        assert!(
                            cluster.components[0].slot(to).ready_replicas > 0,
                            "{decision:?} in {state:?} / {cluster:?}"
                        );
                    }
                    if let Decision::SwitchTraffic { to, revision } = &decision {
                        assert!(
                            cluster.components[0].slot(*to).available
                                && cluster.components[0].slot(*to).holds(revision)
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 6 * 6 * 3);
}

// --- failures ------------------------------------------------------------------------------------

#[test]
fn pre_promotion_failure_aborts_and_scales_the_new_slot_down_later() {
    let mut sim = Sim::healthy(json!({
        "prePromotion": [step("smoke")],
        "abortScaleDownDelay": "45s"
    }));
    sim.set_template("web:2");
    let r2 = sim.revision();
    assert!(matches!(sim.last(), Decision::WaitForValidation { .. }));
    sim.set_validation(Stage::Pre, Some(false));
    let aborted_at = whole_seconds(sim.now);
    let reason = AbortReason::ValidationFailed {
        stage: Stage::Pre,
        message: "step \"smoke\": HTTP 503 from /healthz".into(),
    };
    let scale_down_at = add(aborted_at, secs(45));
    assert_eq!(
        sim.settle(),
        [
            Decision::Abort {
                revision: r2.clone(),
                reason: reason.clone(),
                scale_down_at
            },
            Decision::Aborted {
                revision: r2.clone(),
                scale_down_at: Some(scale_down_at)
            },
        ]
    );
    assert_eq!(reason.reason(), "PrePromotionFailed");
    assert!(reason.message(&r2).contains("HTTP 503"));
    let status = sim.release.status.clone().unwrap();
    assert_eq!(status.phase.map(Phase::as_str), Some("Degraded"));
    assert_eq!(status.scale_down_at, Some(Time(scale_down_at)));
    // Active untouched.
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    assert_eq!(sim.active().as_deref(), Some("blue"));
    assert_eq!(status.active_revision, Some(rev_of("web:1")));
    assert_eq!(sim.cluster.components[0].green.spec_replicas, 3);
    // Exactly at the abort scale-down instant, not before.
    sim.now = scale_down_at - SignedDuration::from_nanos(1);
    assert!(matches!(sim.decide(), Decision::Aborted { .. }));
    sim.now = scale_down_at;
    assert_eq!(
        sim.settle(),
        [
            Decision::ScaleSlot {
                slot: Slot::Green,
                size: Size::Zero,
                reason: ScaleReason::Aborted
            },
            Decision::Aborted {
                revision: r2.clone(),
                scale_down_at: None
            },
        ]
    );
    assert_eq!(sim.history()[0], (r2, Some("Aborted".into())));
}

#[test]
fn progress_deadline_aborts_exactly_at_the_deadline() {
    let mut sim = Sim::healthy(json!({"progressDeadline": "5m"}));
    sim.auto_ready = false;
    sim.set_template("web:2");
    let begun = whole_seconds(sim.now);
    let deadline = add(begun, secs(300));
    let seen = sim.settle();
    assert_eq!(
        seen.last(),
        Some(&Decision::WaitForAvailable {
            slot: Slot::Green,
            deadline: Some(deadline)
        })
    );
    assert_eq!(seen.last().unwrap().requeue_at(), Some(deadline));
    sim.now = deadline - SignedDuration::from_nanos(1);
    assert!(matches!(sim.decide(), Decision::WaitForAvailable { .. }));
    sim.now = deadline;
    let reason = AbortReason::ProgressDeadline { deadline };
    assert_eq!(
        sim.decide(),
        Decision::Abort {
            revision: sim.revision(),
            reason: reason.clone(),
            scale_down_at: add(deadline, secs(30))
        }
    );
    assert_eq!(reason.reason(), "ProgressDeadlineExceeded");
    sim.settle();
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    // Becoming available after the abort changes nothing.
    sim.finish_rollout(Slot::Green);
    assert!(matches!(sim.decide(), Decision::Aborted { .. }));
}

#[test]
fn progress_deadline_of_a_first_release_aborts_it_too() {
    let mut sim = Sim::new(json!({}));
    sim.auto_ready = false;
    sim.settle();
    sim.advance(secs(600));
    let seen = sim.settle();
    assert!(matches!(seen[0], Decision::Abort { .. }), "{seen:?}");
    assert_eq!(sim.cluster.components[0].service_slot, None);
    sim.advance(secs(30));
    assert!(matches!(
        sim.settle()[0],
        Decision::ScaleSlot {
            slot: Slot::Blue,
            size: Size::Zero,
            ..
        }
    ));
    // A fixed template is a new first release into the same slot.
    sim.auto_ready = true;
    sim.set_template("web:2");
    let seen = sim.settle();
    assert!(matches!(
        seen[0],
        Decision::BeginRelease {
            slot: Slot::Blue,
            fast_track: true,
            ..
        }
    ));
    assert_eq!(seen.last(), Some(&Decision::Healthy));
}

#[test]
fn post_promotion_failure_switches_back_while_the_old_slot_runs() {
    let mut sim = Sim::healthy(json!({"postPromotion": [step("soak")]}));
    let r1 = sim.revision();
    sim.set_template("web:2");
    let r2 = sim.revision();
    assert!(matches!(
        sim.last(),
        Decision::WaitForValidation {
            stage: Stage::Post,
            ..
        }
    ));
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Green));
    sim.set_validation(Stage::Post, Some(false));
    sim.advance(secs(10));
    let reason = AbortReason::ValidationFailed {
        stage: Stage::Post,
        message: "step \"soak\": HTTP 503 from /healthz".into(),
    };
    let back_at = whole_seconds(sim.now);
    assert_eq!(
        sim.settle(),
        [
            Decision::SwitchBack {
                to: Slot::Blue,
                revision: r1.clone(),
                failed: r2.clone(),
                reason: reason.clone()
            },
            Decision::RecordSwitched {
                slot: Slot::Blue,
                at: back_at,
                scale_down_at: add(back_at, secs(30)),
                back: true
            },
            Decision::Aborted {
                revision: r2.clone(),
                scale_down_at: Some(add(back_at, secs(30)))
            },
        ]
    );
    assert_eq!(reason.reason(), "PostPromotionFailed");
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    let status = sim.release.status.clone().unwrap();
    assert_eq!(status.active_slot.as_deref(), Some("blue"));
    assert_eq!(status.active_revision, Some(r1.clone()));
    assert_eq!(status.phase.map(Phase::as_str), Some("Degraded"));
    assert_eq!(sim.history()[0], (r2.clone(), Some("RolledBack".into())));
    sim.advance(secs(30));
    assert_eq!(
        sim.settle(),
        [
            Decision::ScaleSlot {
                slot: Slot::Green,
                size: Size::Zero,
                reason: ScaleReason::Aborted
            },
            Decision::Aborted {
                revision: r2,
                scale_down_at: None
            }
        ]
    );
}

#[test]
fn switch_back_scales_a_shrunk_old_slot_up_first_and_never_to_an_empty_slot() {
    let mut sim = Sim::healthy(json!({"postPromotion": [step("soak")]}));
    sim.set_template("web:2");
    sim.settle();
    // Someone scaled the old slot to 0 during postPromotion.
    sim.cluster.components[0].blue.spec_replicas = 0;
    sim.cluster.components[0].blue.ready_replicas = 0;
    sim.set_validation(Stage::Post, Some(false));
    sim.auto_ready = false;
    let seen = sim.settle();
    assert_eq!(
        seen[0],
        Decision::ScaleSlot {
            slot: Slot::Blue,
            size: Size::Full,
            reason: ScaleReason::SwitchBack
        }
    );
    assert!(matches!(
        seen[1],
        Decision::AwaitSwitchBack {
            to: Some(Slot::Blue),
            ..
        }
    ));
    assert_eq!(seen[1].phase(), Some(Phase::Degraded));
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Green));
    sim.cluster.components[0].blue.ready_replicas = 1;
    assert!(matches!(
        sim.decide(),
        Decision::SwitchBack { to: Slot::Blue, .. }
    ));
}

#[test]
fn abort_annotation_aborts_by_hand() {
    // Before the switch: aborted, active untouched.
    let mut sim = Sim::healthy(json!({"autoPromote": false}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    assert!(matches!(sim.last(), Decision::AwaitPromotion { .. }));
    // An abort naming another revision is ignored.
    sim.annotate(ABORT_ANNOTATION, &rev_of("web:1"));
    assert!(matches!(sim.decide(), Decision::AwaitPromotion { .. }));
    sim.annotate(ABORT_ANNOTATION, &r2);
    let seen = sim.settle();
    assert!(matches!(
        &seen[0],
        Decision::Abort { revision, reason: AbortReason::ByHand, .. } if *revision == r2
    ));
    assert_eq!(AbortReason::ByHand.reason(), "AbortedByHand");
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    // A promote afterwards does not resurrect it.
    sim.annotate(PROMOTE_ANNOTATION, &r2);
    assert!(matches!(sim.decide(), Decision::Aborted { .. }));

    // After the switch, during postPromotion: switched back.
    let mut sim = Sim::healthy(json!({"postPromotion": [step("soak")]}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    sim.annotate(ABORT_ANNOTATION, &r2);
    assert!(matches!(
        sim.decide(),
        Decision::SwitchBack {
            to: Slot::Blue,
            reason: AbortReason::ByHand,
            ..
        }
    ));

    // After the release completed: ignored (revert the template instead).
    let mut sim = Sim::healthy(json!({}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    sim.annotate(ABORT_ANNOTATION, &r2);
    assert!(matches!(sim.decide(), Decision::WaitForScaleDown { .. }));
}

#[test]
fn abort_of_a_first_release_after_its_switch_has_nowhere_to_go() {
    let mut sim = Sim::new(json!({}));
    sim.auto_endpoints = false;
    let r1 = sim.revision();
    assert!(matches!(sim.last(), Decision::WaitForEndpoints { .. }));
    sim.annotate(ABORT_ANNOTATION, &r1);
    let decision = sim.decide();
    assert_eq!(
        decision,
        Decision::AwaitSwitchBack {
            to: None,
            revision: r1,
            reason: AbortReason::ByHand
        }
    );
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
}

#[test]
fn aborted_revision_is_not_retried_until_the_template_changes() {
    let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    sim.set_validation(Stage::Pre, Some(false));
    sim.settle();
    sim.advance(secs(3600));
    sim.settle();
    for _ in 0..3 {
        sim.advance(secs(600));
        assert_eq!(
            sim.last(),
            Decision::Aborted {
                revision: r2.clone(),
                scale_down_at: None
            }
        );
    }
    // A new template is released (into the aborted slot, which holds no live traffic).
    sim.set_template("web:3");
    let r3 = sim.revision();
    assert_eq!(
        sim.decide(),
        Decision::BeginRelease {
            revision: r3.clone(),
            slot: Slot::Green,
            fast_track: false,
            supersedes: None
        }
    );
    assert!(matches!(sim.last(), Decision::WaitForValidation { .. }));
    // Changed back to the aborted template: that is a retry, validated again.
    sim.set_template("web:2");
    assert_eq!(
        sim.decide(),
        Decision::BeginRelease {
            revision: r2.clone(),
            slot: Slot::Green,
            fast_track: false,
            supersedes: Some(r3.clone())
        }
    );
    assert_eq!(
        sim.last(),
        Decision::WaitForValidation {
            stage: Stage::Pre,
            revision: r2.clone()
        }
    );
    assert_eq!(
        &sim.history()[..3],
        [
            (r2.clone(), None),
            (r3, Some("Superseded".into())),
            (r2, Some("Aborted".into()))
        ]
    );
}

#[test]
fn aborted_then_template_back_to_active_then_again_is_a_retry() {
    let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    sim.set_validation(Stage::Pre, Some(false));
    sim.settle();
    sim.set_template("web:1");
    sim.advance(secs(60));
    assert_eq!(sim.last(), Decision::Healthy);
    // The aborted slot went to 0 (never promoted, so not kept as standby).
    assert_eq!(sim.cluster.components[0].green.spec_replicas, 0);
    sim.set_template("web:2");
    assert!(matches!(
        sim.decide(),
        Decision::BeginRelease { revision, .. } if revision == r2
    ));
}

// --- rollback, supersede ---------------------------------------------------------------------

#[test]
fn revert_to_the_running_previous_revision_is_an_instant_flip() {
    let mut sim = Sim::healthy(json!({
        "autoPromote": false,
        "prePromotion": [step("smoke")],
        "postPromotion": [step("soak")],
        "scaleDownDelay": "1h"
    }));
    sim.release.spec.requires_maintenance_window =
        Some(serde_json::from_value(json!({"selector": {"matchLabels": {"w": "x"}}})).unwrap());
    let r1 = sim.revision();
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    sim.set_validation(Stage::Pre, Some(true));
    sim.annotate(PROMOTE_ANNOTATION, &r2);
    sim.cluster.window_open = true;
    sim.settle();
    sim.set_validation(Stage::Post, Some(true));
    assert!(matches!(
        sim.last(),
        Decision::WaitForScaleDown {
            slot: Slot::Blue,
            ..
        }
    ));
    sim.cluster.window_open = false;
    // Revert while blue still runs r1 at full size: no pod, no validation, no gate.
    sim.set_template("web:1");
    let created = sim.pods_created.clone();
    let seen = sim.settle();
    let flip_at = whole_seconds(sim.now);
    assert_eq!(
        seen,
        [
            Decision::BeginRelease {
                revision: r1.clone(),
                slot: Slot::Blue,
                fast_track: true,
                supersedes: None
            },
            Decision::PointPreview {
                slot: Slot::Blue,
                found: Some(Slot::Green)
            },
            Decision::SwitchTraffic {
                to: Slot::Blue,
                revision: r1.clone()
            },
            Decision::RecordSwitched {
                slot: Slot::Blue,
                at: flip_at,
                scale_down_at: add(flip_at, secs(3600)),
                back: false
            },
            Decision::CloseRelease {
                revision: r1.clone(),
                result: ReleaseResult::Promoted
            },
            Decision::WaitForScaleDown {
                slot: Slot::Green,
                at: add(flip_at, secs(3600))
            },
        ]
    );
    assert_eq!(sim.pods_created, created);
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    // And forward again: green still runs r2, which was promoted: instant too.
    sim.set_template("web:2");
    let seen = sim.settle();
    assert!(seen.contains(&Decision::SwitchTraffic {
        to: Slot::Green,
        revision: r2
    }));
    assert!(!seen.iter().any(|d| matches!(d, Decision::ApplySlot { .. })));
    assert_eq!(sim.pods_created, created);
}

#[test]
fn revert_after_scale_down_scales_the_known_revision_back_up_first() {
    let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
    let r1 = sim.revision();
    sim.set_template("web:2");
    sim.settle();
    sim.set_validation(Stage::Pre, Some(true));
    sim.settle();
    sim.advance(secs(30));
    assert_eq!(sim.last(), Decision::Healthy);
    assert_eq!(sim.cluster.components[0].blue.spec_replicas, 0);
    sim.auto_ready = false;
    sim.set_template("web:1");
    let seen = sim.settle();
    assert_eq!(
        seen[1],
        Decision::ApplySlot {
            slot: Slot::Blue,
            revision: r1.clone(),
            size: Size::Full
        }
    );
    assert!(matches!(
        seen.last(),
        Some(Decision::WaitForAvailable { .. })
    ));
    sim.finish_rollout(Slot::Blue);
    // Known good: no prePromotion.
    assert_eq!(
        sim.decide(),
        Decision::SwitchTraffic {
            to: Slot::Blue,
            revision: r1
        }
    );
}

#[test]
fn newer_template_during_validation_replaces_the_preview() {
    let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")]}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    // Validation of r2 half done when r3 arrives.
    assert!(matches!(sim.decide(), Decision::WaitForValidation { .. }));
    sim.set_template("web:3");
    let r3 = sim.revision();
    let seen = sim.settle();
    assert_eq!(
        seen,
        [
            Decision::BeginRelease {
                revision: r3.clone(),
                slot: Slot::Green,
                fast_track: false,
                supersedes: Some(r2.clone())
            },
            Decision::ApplySlot {
                slot: Slot::Green,
                revision: r3.clone(),
                size: Size::Full
            },
            Decision::StartValidation {
                stage: Stage::Pre,
                revision: r3.clone()
            },
            Decision::WaitForValidation {
                stage: Stage::Pre,
                revision: r3.clone()
            },
        ]
    );
    // r2's steps were dropped with its revision; the active slot never moved.
    let status = sim.release.status.clone().unwrap();
    assert_eq!(status.desired_revision, Some(r3.clone()));
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    assert_eq!(status.active_revision, Some(rev_of("web:1")));
    assert_eq!(sim.history()[1], (r2, Some("Superseded".into())));
    // A failed step recorded for r2 never counts for r3.
    let mut state = sim.state();
    state.recorded_revision = Some(rev_of("web:2"));
    state.pre_validation = Outcome::Failed("old".into());
    assert!(matches!(
        decide(&sim.release.spec, &state, &sim.cluster, sim.now),
        Decision::StartValidation { .. }
    ));
}

#[test]
fn newer_template_during_post_promotion_supersedes_the_switched_release() {
    let mut sim = Sim::healthy(json!({"postPromotion": [step("soak")]}));
    let r1 = sim.revision();
    sim.set_template("web:2");
    let r2 = sim.revision();
    assert!(matches!(
        sim.last(),
        Decision::WaitForValidation {
            stage: Stage::Post,
            ..
        }
    ));
    sim.advance(secs(60));
    sim.set_template("web:3");
    let r3 = sim.revision();
    let seen = sim.settle();
    assert_eq!(
        seen[0],
        Decision::BeginRelease {
            revision: r3.clone(),
            slot: Slot::Blue,
            fast_track: false,
            supersedes: Some(r2.clone())
        }
    );
    assert!(seen.contains(&Decision::SwitchTraffic {
        to: Slot::Blue,
        revision: r3.clone()
    }));
    assert_eq!(
        seen.last(),
        Some(&Decision::WaitForValidation {
            stage: Stage::Post,
            revision: r3.clone()
        })
    );
    // r2 served but never passed postPromotion: not known good, so a later revert to it
    // is validated again.
    assert_eq!(
        sim.history(),
        [
            (r3.clone(), None),
            (r2.clone(), Some("Superseded".into())),
            (r1, Some("Promoted".into()))
        ]
    );
    // r3 fails: back to green, which still runs r2.
    sim.set_validation(Stage::Post, Some(false));
    assert!(matches!(
        sim.decide(),
        Decision::SwitchBack { to: Slot::Green, revision, .. } if revision == r2
    ));
}

#[test]
fn revert_to_the_active_revision_during_validation_supersedes_and_scales_down() {
    let mut sim = Sim::healthy(json!({"prePromotion": [step("smoke")], "standbyReplicas": 2}));
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    sim.set_template("web:1");
    assert_eq!(
        sim.settle(),
        [
            Decision::CloseRelease {
                revision: r2.clone(),
                result: ReleaseResult::Superseded
            },
            Decision::PointPreview {
                slot: Slot::Blue,
                found: Some(Slot::Green)
            },
            Decision::ScaleSlot {
                slot: Slot::Green,
                size: Size::Zero,
                reason: ScaleReason::Standby
            },
            Decision::Healthy,
        ]
    );
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
}

#[test]
fn a_new_revision_waits_for_the_old_slot_to_drain() {
    // scaleDownDelay 1h keeps web:1 warm for a rollback; the drain before web:3 may replace
    // it is capped at 30s. A progress deadline shorter than the drain does not run during it.
    let mut sim = Sim::healthy(json!({"scaleDownDelay": "1h", "progressDeadline": "20s"}));
    sim.set_template("web:2");
    let seen = sim.settle();
    let Some(Decision::RecordSwitched { at: switched, .. }) = seen
        .iter()
        .find(|d| matches!(d, Decision::RecordSwitched { .. }))
    else {
        panic!("{seen:?}");
    };
    let drained = add(*switched, secs(30));
    // web:3 right after the switch: blue still holds web:1 pods that may get traffic.
    sim.advance(secs(10));
    sim.set_template("web:3");
    let r3 = sim.revision();
    let seen = sim.settle();
    assert_eq!(
        seen.last(),
        Some(&Decision::WaitForDrain {
            slot: Slot::Blue,
            until: drained
        })
    );
    assert_eq!(seen.last().unwrap().requeue_at(), Some(drained));
    assert_eq!(seen.last().unwrap().phase(), Some(Phase::Progressing));
    assert!(sim.cluster.components[0].blue.holds(&rev_of("web:1")));
    sim.now = drained - SignedDuration::from_nanos(1);
    assert!(matches!(sim.decide(), Decision::WaitForDrain { .. }));
    sim.now = drained;
    sim.auto_ready = false;
    let seen = sim.settle();
    assert_eq!(
        seen[0],
        Decision::ApplySlot {
            slot: Slot::Blue,
            revision: r3.clone(),
            size: Size::Full
        }
    );
    assert_eq!(
        seen.last(),
        Some(&Decision::WaitForAvailable {
            slot: Slot::Blue,
            deadline: Some(add(drained, secs(20)))
        })
    );
    sim.finish_rollout(Slot::Blue);
    assert!(sim.settle().contains(&Decision::SwitchTraffic {
        to: Slot::Blue,
        revision: r3
    }));
    // A short scaleDownDelay is the drain itself.
    let mut sim = Sim::healthy(json!({"scaleDownDelay": "10s"}));
    sim.set_template("web:2");
    sim.settle();
    let switched = sim.state().switched_at.unwrap();
    sim.set_template("web:3");
    assert_eq!(
        sim.last(),
        Decision::WaitForDrain {
            slot: Slot::Blue,
            until: add(switched, secs(10))
        }
    );
}

#[test]
fn abort_while_draining_still_scales_the_old_slot_down() {
    let mut sim = Sim::healthy(json!({"scaleDownDelay": "2m", "standbyReplicas": 1}));
    sim.set_template("web:2");
    sim.settle();
    let switched = sim.state().switched_at.unwrap();
    sim.set_template("web:3");
    let r3 = sim.revision();
    assert!(matches!(sim.last(), Decision::WaitForDrain { .. }));
    sim.annotate(ABORT_ANNOTATION, &r3);
    let seen = sim.settle();
    assert!(matches!(seen[0], Decision::Abort { .. }));
    // Blue still holds web:1 (promoted): standby at switchedAt + scaleDownDelay.
    let at = add(switched, secs(120));
    assert_eq!(
        seen.last(),
        Some(&Decision::Aborted {
            revision: r3.clone(),
            scale_down_at: Some(at)
        })
    );
    sim.now = at;
    assert_eq!(
        sim.settle(),
        [
            Decision::ScaleSlot {
                slot: Slot::Blue,
                size: Size::Standby,
                reason: ScaleReason::Standby
            },
            Decision::Aborted {
                revision: r3,
                scale_down_at: None
            }
        ]
    );
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Green));
}

#[test]
fn a_new_revision_waits_for_the_previous_switch_to_converge() {
    let mut sim = Sim::healthy(json!({}));
    sim.auto_endpoints = false;
    sim.set_template("web:2");
    assert!(matches!(sim.last(), Decision::WaitForEndpoints { .. }));
    sim.set_template("web:3");
    let seen = sim.settle();
    assert!(matches!(seen[0], Decision::BeginRelease { .. }));
    assert_eq!(
        seen.last(),
        Some(&Decision::WaitForEndpoints {
            slot: Slot::Green,
            back: false
        })
    );
    sim.converge_endpoints();
    let seen = sim.settle();
    assert!(matches!(seen[0], Decision::RecordSwitched { .. }));
    assert!(matches!(seen.last(), Some(Decision::WaitForDrain { .. })));
}

// --- selectors, replicas ---------------------------------------------------------------------

#[test]
fn hand_edit_of_the_slot_key_is_put_back() {
    let mut sim = Sim::healthy(json!({"standbyReplicas": 3}));
    sim.set_template("web:2");
    sim.settle();
    sim.advance(secs(60));
    assert_eq!(sim.last(), Decision::Healthy);
    for found in [Some(Slot::Blue), None] {
        sim.cluster.components[0].service_slot = found;
        assert_eq!(
            sim.settle(),
            [
                Decision::RestoreSelector {
                    slot: Slot::Green,
                    found
                },
                Decision::Healthy
            ]
        );
        assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Green));
    }
    // The preview Service too.
    sim.cluster.components[0].preview_service_slot = Some(Slot::Blue);
    assert_eq!(
        sim.decide(),
        Decision::PointPreview {
            slot: Slot::Green,
            found: Some(Slot::Blue)
        }
    );
}

#[test]
fn hand_edit_is_held_while_the_active_slot_has_no_ready_pods() {
    let mut sim = Sim::healthy(json!({}));
    sim.cluster.components[0].blue.ready_replicas = 0;
    sim.cluster.components[0].blue.available = false;
    sim.cluster.components[0].green = SlotView {
        exists: true,
        revision: Some("hotfix".into()),
        spec_replicas: 3,
        ready_replicas: 3,
        available: true,
    };
    sim.cluster.components[0].service_slot = Some(Slot::Green);
    let decision = sim.decide();
    assert_eq!(
        decision,
        Decision::HoldSelector {
            slot: Slot::Blue,
            found: Some(Slot::Green)
        }
    );
    assert_eq!(decision.phase(), Some(Phase::Degraded));
    sim.cluster.components[0].blue.ready_replicas = 1;
    assert!(matches!(sim.decide(), Decision::RestoreSelector { .. }));
}

#[test]
fn interrupted_switch_completes_without_a_second_switch() {
    let mut sim = Sim::healthy(json!({}));
    sim.set_template("web:2");
    // Run until the switch is decided, then die after the status write only.
    loop {
        let decision = sim.decide();
        if let Decision::SwitchTraffic { .. } = decision {
            sim.apply_status(&decision);
            break;
        }
        sim.apply(&decision);
    }
    assert_eq!(sim.cluster.components[0].service_slot, Some(Slot::Blue));
    let seen = sim.settle();
    assert_eq!(
        seen[0],
        Decision::RestoreSelector {
            slot: Slot::Green,
            found: Some(Slot::Blue)
        }
    );
    assert!(
        !seen
            .iter()
            .any(|d| matches!(d, Decision::SwitchTraffic { .. }))
    );
    assert!(matches!(
        seen[1],
        Decision::RecordSwitched {
            slot: Slot::Green,
            ..
        }
    ));
}

#[test]
fn replica_changes_follow_spec_on_both_slots() {
    // Settled: the active slot is re-applied with the new count, no release.
    let mut sim = Sim::healthy(json!({}));
    sim.release.spec.replicas = Some(5);
    let r1 = sim.revision();
    assert_eq!(
        sim.settle(),
        [
            Decision::ApplySlot {
                slot: Slot::Blue,
                revision: r1,
                size: Size::Full
            },
            Decision::Healthy
        ]
    );
    // In flight: the active slot (another revision) is only scaled; the new one is applied
    // at the new count.
    sim.auto_ready = false;
    sim.set_template("web:2");
    let r2 = sim.revision();
    sim.settle();
    sim.release.spec.replicas = Some(4);
    assert_eq!(
        sim.settle()[..2],
        [
            Decision::ScaleSlot {
                slot: Slot::Blue,
                size: Size::Full,
                reason: ScaleReason::Replicas
            },
            Decision::ApplySlot {
                slot: Slot::Green,
                revision: r2,
                size: Size::Full
            },
        ]
    );
}

// --- idempotence and restarts ----------------------------------------------------------------

/// A whole release with every stage, checked step by step: each decision is re-decided by
/// a restarted operator (inside `Sim::decide`), the state each action produced moves
/// forward (no action repeats), and traffic switches exactly once each way.
#[test]
fn a_release_in_every_phase_survives_restarts_and_switches_once() {
    let mut sim = Sim::healthy(json!({
        "autoPromote": false,
        "prePromotion": [step("smoke")],
        "postPromotion": [step("soak")]
    }));
    sim.auto_ready = false;
    sim.auto_endpoints = false;
    sim.set_template("web:2");
    let r2 = sim.revision();
    let mut phases = Vec::new();
    let mut note = |sim: &mut Sim| {
        let decision = sim.last();
        phases.push(decision.phase().unwrap());
        decision
    };
    assert!(matches!(note(&mut sim), Decision::WaitForAvailable { .. }));
    sim.finish_rollout(Slot::Green);
    assert!(matches!(note(&mut sim), Decision::WaitForValidation { .. }));
    sim.set_validation(Stage::Pre, Some(true));
    assert!(matches!(note(&mut sim), Decision::AwaitPromotion { .. }));
    sim.annotate(PROMOTE_ANNOTATION, &r2);
    assert!(matches!(note(&mut sim), Decision::WaitForEndpoints { .. }));
    sim.converge_endpoints();
    assert!(matches!(note(&mut sim), Decision::WaitForValidation { .. }));
    sim.set_validation(Stage::Post, Some(true));
    assert!(matches!(note(&mut sim), Decision::WaitForScaleDown { .. }));
    sim.advance(secs(30));
    assert!(matches!(note(&mut sim), Decision::Healthy));
    assert_eq!(
        phases,
        [
            Phase::Progressing,
            Phase::Validating,
            Phase::AwaitingPromotion,
            Phase::Promoting,
            Phase::Promoting,
            Phase::ScalingDown,
            Phase::Healthy
        ]
    );
    let switches: Vec<_> = sim
        .log
        .iter()
        .filter(|l| l.starts_with("SwitchTraffic") || l.starts_with("SwitchBack"))
        .collect();
    // One for the first release, one for r2.
    assert_eq!(switches.len(), 2, "{switches:?}");
    // Settled: deciding again and again writes nothing.
    for _ in 0..3 {
        sim.advance(secs(3600));
        assert_eq!(sim.decide(), Decision::Healthy);
    }
}

#[test]
fn every_decision_has_a_phase_and_waits_are_not_actions() {
    let slot = Slot::Blue;
    let r = || "r".to_owned();
    let t = ts(T0);
    let all = [
        (
            Decision::BeginRelease {
                revision: r(),
                slot,
                fast_track: false,
                supersedes: None,
            },
            Phase::Progressing,
        ),
        (
            Decision::ApplySlot {
                slot,
                revision: r(),
                size: Size::Full,
            },
            Phase::Progressing,
        ),
        (
            Decision::ScaleSlot {
                slot,
                size: Size::Full,
                reason: ScaleReason::Replicas,
            },
            Phase::Progressing,
        ),
        (
            Decision::ScaleSlot {
                slot,
                size: Size::Zero,
                reason: ScaleReason::Standby,
            },
            Phase::ScalingDown,
        ),
        (
            Decision::ScaleSlot {
                slot,
                size: Size::Zero,
                reason: ScaleReason::Aborted,
            },
            Phase::Degraded,
        ),
        (
            Decision::ScaleSlot {
                slot,
                size: Size::Full,
                reason: ScaleReason::SwitchBack,
            },
            Phase::Degraded,
        ),
        (
            Decision::ScaleSlot {
                slot,
                size: Size::Full,
                reason: ScaleReason::Promotion,
            },
            Phase::Promoting,
        ),
        (
            Decision::PointPreview { slot, found: None },
            Phase::Progressing,
        ),
        (
            Decision::StartValidation {
                stage: Stage::Pre,
                revision: r(),
            },
            Phase::Validating,
        ),
        (
            Decision::StartValidation {
                stage: Stage::Post,
                revision: r(),
            },
            Phase::Promoting,
        ),
        (
            Decision::SwitchTraffic {
                to: slot,
                revision: r(),
            },
            Phase::Promoting,
        ),
        (
            Decision::RecordSwitched {
                slot,
                at: t,
                scale_down_at: t,
                back: false,
            },
            Phase::Promoting,
        ),
        (
            Decision::RecordSwitched {
                slot,
                at: t,
                scale_down_at: t,
                back: true,
            },
            Phase::Degraded,
        ),
        (
            Decision::CloseRelease {
                revision: r(),
                result: ReleaseResult::Promoted,
            },
            Phase::Promoting,
        ),
        (
            Decision::CloseRelease {
                revision: r(),
                result: ReleaseResult::Superseded,
            },
            Phase::Progressing,
        ),
        (
            Decision::Abort {
                revision: r(),
                reason: AbortReason::ByHand,
                scale_down_at: t,
            },
            Phase::Degraded,
        ),
        (
            Decision::SwitchBack {
                to: slot,
                revision: r(),
                failed: r(),
                reason: AbortReason::ByHand,
            },
            Phase::Degraded,
        ),
        (
            Decision::RestoreSelector { slot, found: None },
            Phase::Progressing,
        ),
        (
            Decision::WaitForDrain { slot, until: t },
            Phase::Progressing,
        ),
        (
            Decision::WaitForAvailable {
                slot,
                deadline: None,
            },
            Phase::Progressing,
        ),
        (
            Decision::WaitForValidation {
                stage: Stage::Pre,
                revision: r(),
            },
            Phase::Validating,
        ),
        (
            Decision::WaitForValidation {
                stage: Stage::Post,
                revision: r(),
            },
            Phase::Promoting,
        ),
        (
            Decision::AwaitPromotion {
                revision: r(),
                reason: PromotionWait::Manual,
            },
            Phase::AwaitingPromotion,
        ),
        (
            Decision::WaitForEndpoints { slot, back: false },
            Phase::Promoting,
        ),
        (
            Decision::WaitForEndpoints { slot, back: true },
            Phase::Degraded,
        ),
        (
            Decision::WaitForScaleDown { slot, at: t },
            Phase::ScalingDown,
        ),
        (
            Decision::Aborted {
                revision: r(),
                scale_down_at: None,
            },
            Phase::Degraded,
        ),
        (
            Decision::AwaitSwitchBack {
                to: None,
                revision: r(),
                reason: AbortReason::ByHand,
            },
            Phase::Degraded,
        ),
        (
            Decision::HoldSelector { slot, found: None },
            Phase::Degraded,
        ),
        (
            Decision::SwitchRefused {
                to: Some(slot),
                revision: Some(r()),
                switched_at: None,
                failed: r(),
                reason: AbortReason::SwitchRefused {
                    component: "api".into(),
                    service: "api".into(),
                    message: "forbidden".into(),
                },
            },
            Phase::Degraded,
        ),
        (Decision::Healthy, Phase::Healthy),
    ];
    let mut shown: Vec<Phase> = all.iter().map(|(_, p)| *p).collect();
    shown.dedup();
    // Invalid is no decision's: the controller shows it for a spec it cannot act on.
    for phase in Phase::ALL.into_iter().filter(|p| *p != Phase::Invalid) {
        assert!(shown.contains(&phase), "{phase:?} never shown");
    }
    for (decision, phase) in &all {
        assert_eq!(decision.phase(), Some(*phase), "{decision:?}");
        if decision.is_action() {
            assert_eq!(decision.requeue_at(), None);
        }
    }
    let actions = all.iter().filter(|(d, _)| d.is_action()).count();
    // 17, plus ScaleSlot for Promotion (previewReplicas) and SwitchRefused (a stack's switch).
    assert_eq!(actions, 19);
}

#[test]
fn record_desired_revision_clears_stale_validation() {
    let mut sim = Sim::new(json!({"prePromotion": [step("smoke")]}));
    sim.set_validation(Stage::Pre, Some(true));
    let status = sim.status();
    record_desired_revision(status, "a");
    assert!(status.validation.is_empty());
    status.validation = vec![];
    sim.set_validation(Stage::Pre, Some(true));
    let status = sim.status();
    record_desired_revision(status, "a");
    assert_eq!(status.validation.len(), 1);
}

mod controls;

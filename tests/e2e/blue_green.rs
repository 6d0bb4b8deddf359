//! BlueGreenRelease end to end: a release `web` with two Services (`web` active, `web-preview`)
//! that exist before it, checked the way a user would: the release's status and Events, the
//! Services' selectors, the slot Deployments and their pods, the active Service's
//! EndpointSlices (kept by the real kube-controller-manager; kwok makes pods Ready), and the
//! validation RunbookRuns. Job steps fail when their pod carries the label
//! `sim.runbook.dev/outcome: fail` (hack/kwok/stages.yaml).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use runbook_operator::blue_green::{BlueGreenRelease, BlueGreenReleaseStatus};
use runbook_operator::maintenance_window::MaintenanceWindow;
use runbook_operator::runbook_run::{RunbookRun, StepPhase};

use crate::support::{PATIENCE, TestNamespace, condition, counter_sum, from_now, http_get};

mod caches;

/// The release of every test; its slot Deployments are `web-blue` and `web-green`.
const RELEASE: &str = "web";
/// The active Service.
const ACTIVE: &str = "web";
/// The preview Service.
const PREVIEW: &str = "web-preview";
/// The default slot label key, the one key of the Services' selectors the operator sets.
const SLOT_KEY: &str = "ops.runbook.dev/slot";
/// Replicas of every release.
const REPLICAS: i32 = 2;

// ---------------------------------------------------------------------------------------------
// manifests
// ---------------------------------------------------------------------------------------------

/// The Services `web` and `web-preview`, both selecting `app: web` and nothing else: the
/// operator adds the slot key.
fn services() -> String {
    [ACTIVE, PREVIEW]
        .map(|name| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
            )
        })
        .join("---\n")
}

/// The release `web`: 2 replicas of `registry.example.com/web:<tag>` labelled `app: web`.
/// `strategy` holds the entries of `spec.strategy` (flow YAML, without braces), `pod_extra`
/// entries of the pod spec put before `containers` (flow YAML, each followed by a comma), and
/// `extra` further spec lines (indented by two spaces).
fn release_with(tag: &str, strategy: &str, pod_extra: &str, extra: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BlueGreenRelease\nmetadata: {{name: {RELEASE}}}\nspec:\n  replicas: {REPLICAS}\n  services: {{active: {ACTIVE}, preview: {PREVIEW}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{{pod_extra}containers: [{{name: web, image: \"registry.example.com/web:{tag}\"}}]}}\n  strategy: {{{strategy}}}\n{extra}\n"
    )
}

/// The release `web` running image tag `tag` with `strategy` (see [`release_with`]).
fn release(tag: &str, strategy: &str) -> String {
    release_with(tag, strategy, "", "")
}

/// A sleep step.
fn sleep_step(name: &str, duration: &str) -> String {
    format!("{{name: {name}, sleep: {{duration: {duration}}}}}")
}

/// A job step whose pod succeeds, or fails when `fail`.
fn job_step(name: &str, fail: bool) -> String {
    let labels = if fail {
        "{sim.runbook.dev/outcome: fail}"
    } else {
        "{}"
    };
    format!(
        "{{name: {name}, job: {{template: {{spec: {{backoffLimit: 0, template: {{metadata: {{labels: {labels}}}, spec: {{restartPolicy: Never, containers: [{{name: task, image: \"registry.example.com/task:1\"}}]}}}}}}}}}}}}"
    )
}

/// Pod spec entry that keeps the pods of a revision from being scheduled (so its slot stays
/// unavailable) until the test removes the gate from them.
const HOLD: &str = "schedulingGates: [{name: e2e.runbook.dev/hold}], ";

// ---------------------------------------------------------------------------------------------
// reading results
// ---------------------------------------------------------------------------------------------

fn status(bgr: &BlueGreenRelease) -> BlueGreenReleaseStatus {
    bgr.status.clone().unwrap_or_default()
}

fn phase(bgr: &BlueGreenRelease) -> String {
    status(bgr)
        .phase
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default()
}

fn active_slot(bgr: &BlueGreenRelease) -> Option<String> {
    status(bgr).active_slot
}

fn active_revision(bgr: &BlueGreenRelease) -> String {
    status(bgr).active_revision.unwrap_or_default()
}

fn desired_revision(bgr: &BlueGreenRelease) -> String {
    status(bgr).desired_revision.unwrap_or_default()
}

/// The status describes the current spec.
fn current(bgr: &BlueGreenRelease) -> bool {
    status(bgr).observed_generation == bgr.metadata.generation
}

/// `history` as (revision, result), newest first.
fn history(bgr: &BlueGreenRelease) -> Vec<(String, String)> {
    status(bgr)
        .history
        .into_iter()
        .map(|r| (r.revision, r.result.unwrap_or_default()))
        .collect()
}

/// One history entry, for comparing with [`history`].
fn record(revision: &str, result: &str) -> (String, String) {
    (revision.to_owned(), result.to_owned())
}

/// A condition as (status, reason, message); ("", "", "") when it is missing.
fn cond(bgr: &BlueGreenRelease, type_: &str) -> (String, String, String) {
    let s = status(bgr);
    condition(&s.conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

fn cond_status(bgr: &BlueGreenRelease, type_: &str) -> String {
    cond(bgr, type_).0
}

/// Phase Healthy for the current template: the desired revision serves, nothing pending.
fn healthy(bgr: &BlueGreenRelease) -> bool {
    let s = status(bgr);
    current(bgr)
        && s.phase.map(|p| p.as_str()) == Some("Healthy")
        && s.active_revision.is_some()
        && s.active_revision == s.desired_revision
}

async fn get_release(ns: &TestNamespace) -> BlueGreenRelease {
    ns.api::<BlueGreenRelease>()
        .get(RELEASE)
        .await
        .expect("get release")
}

async fn wait_release(
    ns: &TestNamespace,
    what: &str,
    done: impl Fn(&BlueGreenRelease) -> bool,
) -> BlueGreenRelease {
    ns.wait_for::<BlueGreenRelease>(RELEASE, what, done).await
}

/// Waits until the release is Healthy on a revision other than `old` (any, when `old` is "").
async fn wait_healthy_after(ns: &TestNamespace, old: &str) -> BlueGreenRelease {
    wait_release(
        ns,
        &format!("Healthy on a revision other than {old:?}"),
        |b| healthy(b) && active_revision(b) != old,
    )
    .await
}

/// Waits until status has taken in the current template (a new desiredRevision) and returns
/// that revision.
async fn wait_desired_after(ns: &TestNamespace, old: &str) -> String {
    let bgr = wait_release(ns, &format!("desiredRevision other than {old}"), |b| {
        current(b) && !desired_revision(b).is_empty() && desired_revision(b) != old
    })
    .await;
    desired_revision(&bgr)
}

/// The selector of Service `name`.
async fn selector(ns: &TestNamespace, name: &str) -> BTreeMap<String, String> {
    ns.api::<Service>()
        .get(name)
        .await
        .expect("get service")
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default()
}

/// The value of the slot key in Service `name`'s selector.
async fn service_slot(ns: &TestNamespace, name: &str) -> Option<String> {
    selector(ns, name).await.get(SLOT_KEY).cloned()
}

async fn deployment(ns: &TestNamespace, name: &str) -> Option<Deployment> {
    ns.api::<Deployment>()
        .get_opt(name)
        .await
        .expect("get deployment")
}

fn slot_deployment(slot: &str) -> String {
    format!("{RELEASE}-{slot}")
}

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn revision_of(d: &Deployment) -> Option<String> {
    d.annotations().get("ops.runbook.dev/revision").cloned()
}

fn available(d: &Deployment) -> bool {
    let wanted = replicas_of(d);
    d.status.as_ref().is_some_and(|s| {
        s.observed_generation == d.metadata.generation
            && s.updated_replicas.unwrap_or(0) == wanted
            && s.available_replicas.unwrap_or(0) == wanted
            && s.replicas.unwrap_or(0) == wanted
    })
}

/// (revision annotation, spec.replicas) of a slot Deployment that must exist.
async fn slot_state(ns: &TestNamespace, slot: &str) -> (Option<String>, i32) {
    let d = deployment(ns, &slot_deployment(slot))
        .await
        .unwrap_or_else(|| panic!("Deployment {} does not exist", slot_deployment(slot)));
    (revision_of(&d), replicas_of(&d))
}

/// Waits until slot Deployment `slot` asks for `replicas` replicas.
async fn wait_slot_replicas(ns: &TestNamespace, slot: &str, replicas: i32) -> Deployment {
    ns.wait_for::<Deployment>(
        &slot_deployment(slot),
        &format!("scaled to {replicas}"),
        |d| replicas_of(d) == replicas,
    )
    .await
}

/// Pods of the release's slots as (name, uid), sorted.
async fn slot_pods(ns: &TestNamespace) -> Vec<(String, String)> {
    let mut pods: Vec<_> = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("ops.runbook.dev/release={RELEASE}")))
        .await
        .expect("list pods")
        .items
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    pods.sort();
    pods
}

/// ReplicaSets of the namespace as (name, uid), sorted.
async fn replica_sets(ns: &TestNamespace) -> Vec<(String, String)> {
    let mut sets: Vec<_> = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .expect("list replicasets")
        .items
        .iter()
        .map(|r| (r.name_any(), r.uid().unwrap_or_default()))
        .collect();
    sets.sort();
    sets
}

/// Names of the validation RunbookRuns the release started.
async fn validation_runs(ns: &TestNamespace) -> Vec<String> {
    let mut names: Vec<_> = ns
        .api::<RunbookRun>()
        .list(
            &ListParams::default().labels(&format!("ops.runbook.dev/blue-green-release={RELEASE}")),
        )
        .await
        .expect("list runs")
        .items
        .iter()
        .map(|r| r.name_any())
        .collect();
    names.sort();
    names
}

/// Waits until every validation run of the release has finished, so no finalizer holds the
/// namespace once the operator is stopped.
async fn wait_runs_finished(ns: &TestNamespace) {
    let started = Instant::now();
    loop {
        let runs = ns
            .api::<RunbookRun>()
            .list(&ListParams::default())
            .await
            .expect("list runs")
            .items;
        let busy: Vec<_> = runs
            .iter()
            .filter(|r| {
                !matches!(
                    r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())),
                    Some("Succeeded" | "Failed" | "Cancelled")
                ) || !r.finalizers().is_empty()
            })
            .map(|r| r.name_any())
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "runs still busy: {busy:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn annotate(ns: &TestNamespace, annotation: &str) {
    ns.kubectl_ok(&[
        "annotate",
        "bluegreenrelease",
        RELEASE,
        "--overwrite",
        annotation,
    ]);
}

/// Reconciles of the BlueGreenRelease controller the running operator has finished.
fn reconciles(ns: &TestNamespace) -> f64 {
    let metrics = http_get(&ns.operator().probe, "/metrics").expect("metrics");
    counter_sum(
        &metrics,
        "runbook_operator_reconciles_total",
        "controller=\"bluegreenrelease\"",
    )
}

/// Waits until the operator has reconciled the release at least once more than `before`.
async fn reconciled_since(ns: &TestNamespace, before: f64) {
    let started = Instant::now();
    while reconciles(ns) <= before {
        assert!(
            started.elapsed() < PATIENCE,
            "the operator did not reconcile the release again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sleep_until(at: Timestamp) {
    let left = at.duration_since(Timestamp::now());
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// One Event about the release. The operator's event recorder folds a repeat of a reason into
/// a series on the first Event (count and lastObservedTime), so an Event stands for `count`
/// occurrences between `first` and `last`.
#[derive(Clone, Debug)]
struct Occurrence {
    reason: String,
    type_: String,
    note: String,
    first: Timestamp,
    last: Timestamp,
    count: i32,
}

impl Occurrence {
    /// The earliest occurrence at or after `since` this Event shows, if any (a series shows
    /// only its first and its last occurrence).
    fn seen_since(&self, since: Timestamp) -> Option<Timestamp> {
        if self.first >= since {
            Some(self.first)
        } else if self.last >= since {
            Some(self.last)
        } else {
            None
        }
    }
}

/// The Events (events.k8s.io/v1) about the release, oldest first.
async fn release_events(ns: &TestNamespace) -> Vec<Occurrence> {
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items;
    let mut found: Vec<_> = events
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("BlueGreenRelease") && r.name.as_deref() == Some(RELEASE)
            })
        })
        .filter_map(|e| {
            let first = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
            let (last, count) = match &e.series {
                Some(series) => (series.last_observed_time.0, series.count),
                None => (first, 1),
            };
            Some(Occurrence {
                reason: e.reason.clone().unwrap_or_default(),
                type_: e.type_.clone().unwrap_or_default(),
                note: e.note.clone().unwrap_or_default(),
                first,
                last,
                count,
            })
        })
        .collect();
    found.sort_by_key(|o| o.first);
    found
}

/// How many times `reason` was reported about the release (every Event and every repeat in
/// its series).
fn times(events: &[Occurrence], reason: &str) -> i32 {
    events
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.count)
        .sum()
}

/// Waits until `reason` was reported about the release at least `at_least` times.
async fn wait_times(ns: &TestNamespace, reason: &str, at_least: i32) -> Vec<Occurrence> {
    let started = Instant::now();
    loop {
        let events = release_events(ns).await;
        if times(&events, reason) >= at_least {
            return events;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{reason} was not reported {at_least} times about the release: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The earliest time `reason` was reported at or after `since`.
fn first_since(events: &[Occurrence], reason: &str, since: Timestamp) -> Option<Timestamp> {
    events
        .iter()
        .filter(|e| e.reason == reason)
        .filter_map(|e| e.seen_since(since))
        .min()
}

/// Whether `reason` is reported where a user looks: as the reason of a status condition of
/// `bgr`, or of an Event about the release.
async fn reports_reason(ns: &TestNamespace, bgr: &BlueGreenRelease, reason: &str) -> bool {
    status(bgr).conditions.iter().any(|c| c.reason == reason)
        || release_events(ns).await.iter().any(|e| e.reason == reason)
}

// ---------------------------------------------------------------------------------------------
// common checks
// ---------------------------------------------------------------------------------------------

/// Starts the operator on the first release of `strategy` (image tag 1) and waits until it is
/// Healthy on blue; returns its revision.
async fn first_release(ns: &mut TestNamespace, strategy: &str) -> String {
    ns.apply(&services());
    ns.apply(&release("1", strategy));
    ns.start_operator();
    let bgr = wait_healthy_after(ns, "").await;
    assert_eq!(
        active_slot(&bgr).as_deref(),
        Some("blue"),
        "{:#?}",
        bgr.status
    );
    assert_eq!(service_slot(ns, ACTIVE).await.as_deref(), Some("blue"));
    active_revision(&bgr)
}

/// The release serves `revision` from `slot`, and everything a user looks at agrees: status,
/// the active Service's slot key, the slot Deployment (revision, replicas, rolled out) and the
/// conditions of a settled release.
async fn assert_serves(ns: &TestNamespace, bgr: &BlueGreenRelease, slot: &str, revision: &str) {
    let s = status(bgr);
    assert_eq!(s.active_slot.as_deref(), Some(slot), "{s:#?}");
    assert_eq!(s.active_revision.as_deref(), Some(revision), "{s:#?}");
    assert_eq!(service_slot(ns, ACTIVE).await.as_deref(), Some(slot));
    assert_eq!(
        selector(ns, ACTIVE).await.get("app").map(String::as_str),
        Some("web"),
        "the operator changed another key of the Service's selector"
    );
    let d = deployment(ns, &slot_deployment(slot))
        .await
        .expect("active slot Deployment");
    assert_eq!(revision_of(&d).as_deref(), Some(revision));
    assert_eq!(replicas_of(&d), REPLICAS);
    assert!(available(&d), "active slot not rolled out: {:#?}", d.status);
    assert!(s.switched_at.is_some(), "{s:#?}");
    assert_eq!(cond_status(bgr, "TrafficSwitched"), "True", "{s:#?}");
    assert_eq!(cond_status(bgr, "Available"), "True", "{s:#?}");
    assert_eq!(s.replicas, Some(REPLICAS));
    assert_eq!(s.ready_replicas, Some(REPLICAS));
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

/// The whole life of two releases. The first apply puts blue up and the Services on it with
/// no validation (Healthy, history one Promoted entry, no green Deployment, no run). An image
/// change is a new revision: rolled into green, validated by a Job step that succeeds (its run
/// and journal in status), switched (both Services on green, TrafficSwitched True), and blue is
/// scaled to 0 only after scaleDownDelay from switchedAt; history holds both releases newest
/// first, both Promoted. The second release's Events come in the order ReleaseStarted,
/// SlotUpdated, ValidationStarted, TrafficSwitching, TrafficSwitched, Promoted, SlotScaled
/// (order of first appearance, series taken into account), validation is started once and
/// traffic switched once for it, none of them is a warning, and the ones that name a revision
/// name the new one.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn template_change_is_rolled_validated_switched_and_the_old_slot_scaled_down() {
    let mut ns = TestNamespace::new("bg-happy").await;
    let strategy = format!(
        "scaleDownDelay: 5s, prePromotion: [{}]",
        job_step("smoke", false)
    );
    let r1 = first_release(&mut ns, &strategy).await;
    let first = get_release(&ns).await;
    assert_serves(&ns, &first, "blue", &r1).await;
    assert_eq!(service_slot(&ns, PREVIEW).await.as_deref(), Some("blue"));
    assert_eq!(cond_status(&first, "Ready"), "True");
    assert_eq!(cond(&first, "Degraded").0, "False");
    assert_eq!(history(&first), vec![record(&r1, "Promoted")]);
    assert!(
        deployment(&ns, "web-green").await.is_none(),
        "the first release made the green slot"
    );
    assert!(
        validation_runs(&ns).await.is_empty(),
        "the first release was validated"
    );

    let t0 = Timestamp::now();
    ns.apply(&release("2", &strategy));
    let r2 = wait_desired_after(&ns, &r1).await;
    let second = wait_healthy_after(&ns, &r1).await;
    assert_eq!(active_revision(&second), r2);
    assert_serves(&ns, &second, "green", &r2).await;
    assert_eq!(service_slot(&ns, PREVIEW).await.as_deref(), Some("green"));
    assert_eq!(cond(&second, "Degraded").0, "False");
    assert_eq!(
        slot_state(&ns, "blue").await,
        (Some(r1.clone()), 0),
        "the old slot keeps its revision and is scaled to standbyReplicas 0"
    );
    let s = status(&second);
    assert_eq!(
        history(&second),
        vec![record(&r2, "Promoted"), record(&r1, "Promoted")],
        "newest first"
    );
    assert_eq!(s.history[0].images, vec!["registry.example.com/web:2"]);
    assert_eq!(s.history[1].images, vec!["registry.example.com/web:1"]);
    let smoke: Vec<_> = s
        .validation
        .iter()
        .map(|e| (e.name.as_str(), e.phase))
        .collect();
    assert_eq!(smoke, vec![("smoke", StepPhase::Succeeded)], "{s:#?}");
    assert_eq!(validation_runs(&ns).await, vec![format!("web-pre-{r2}")]);
    let run = ns
        .api::<RunbookRun>()
        .get(&format!("web-pre-{r2}"))
        .await
        .expect("prePromotion run");
    assert_eq!(
        run.status.and_then(|s| s.phase).map(|p| p.as_str()),
        Some("Succeeded")
    );

    let expected = [
        "ReleaseStarted",
        "SlotUpdated",
        "ValidationStarted",
        "TrafficSwitching",
        "TrafficSwitched",
        "Promoted",
        "SlotScaled",
    ];
    let events = {
        let started = Instant::now();
        loop {
            let events = release_events(&ns).await;
            if expected
                .iter()
                .all(|r| first_since(&events, r, t0).is_some())
            {
                break events;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the second release did not report every transition: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut seen: Vec<(Timestamp, &str)> = expected
        .iter()
        .map(|r| (first_since(&events, r, t0).expect("seen"), *r))
        .collect();
    seen.sort();
    let order: Vec<&str> = seen.iter().map(|(_, r)| *r).collect();
    assert_eq!(order, expected, "Events of the second release: {events:#?}");
    assert_eq!(
        (
            times(&events, "ValidationStarted"),
            times(&events, "TrafficSwitching")
        ),
        (1, 2),
        "one validation started and one switch per release: {events:#?}"
    );
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| e.type_ == "Warning" && e.seen_since(t0).is_some())
        .collect();
    assert!(warnings.is_empty(), "warnings: {warnings:#?}");

    // The old slot kept its pods for scaleDownDelay after the switch was recorded.
    let switched_at = s.switched_at.clone().expect("switchedAt").0;
    let scaled = first_since(&events, "SlotScaled", t0).expect("SlotScaled");
    assert!(
        scaled >= switched_at + jiff::SignedDuration::from_secs(5),
        "blue scaled down at {scaled}, before switchedAt {switched_at} + scaleDownDelay 5s"
    );

    // Last: a person reading the Events of the second release learns which revision they are
    // about.
    let unnamed: Vec<&str> = [
        "ReleaseStarted",
        "SlotUpdated",
        "TrafficSwitching",
        "Promoted",
    ]
    .into_iter()
    .filter(|reason| {
        !events
            .iter()
            .any(|e| e.reason == *reason && e.note.contains(&r2))
    })
    .collect();
    assert!(
        unnamed.is_empty(),
        "no {unnamed:?} Event names the second revision {r2}; the Events: {events:#?}"
    );
}

/// What one agreement sample saw, read in this order: the active Service, the release, the
/// slot Deployments, the pods the Service selects.
#[derive(Clone, Debug)]
struct Agreement {
    service: Option<String>,
    status: Option<String>,
    revision: Option<String>,
    phase: String,
    /// Slot Deployments whose pod template labels hold every entry of the Service's selector.
    selected_deployments: Vec<String>,
    /// The revision annotation of the Deployment of the slot status calls active.
    active_deployment_revision: Option<String>,
    /// Pods the Service's selector matches.
    selected_pods: Vec<String>,
}

async fn sample_agreement(client: &Client, namespace: &str) -> Agreement {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let releases: Api<BlueGreenRelease> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = services
        .get(ACTIVE)
        .await
        .expect("get service")
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default();
    let bgr = releases.get(RELEASE).await.expect("get release");
    let s = status(&bgr);
    let slots = deployments
        .list(&ListParams::default().labels(&format!("ops.runbook.dev/release={RELEASE}")))
        .await
        .expect("list deployments")
        .items;
    let selected_deployments = slots
        .iter()
        .filter(|d| {
            let labels = d
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .map(|d| d.name_any())
        .collect();
    let active_deployment_revision = s.active_slot.as_ref().and_then(|slot| {
        slots
            .iter()
            .find(|d| d.name_any() == slot_deployment(slot))
            .and_then(revision_of)
    });
    let query = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let selected_pods = pods
        .list(&ListParams::default().labels(&query))
        .await
        .expect("list pods")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    Agreement {
        service: selector.get(SLOT_KEY).cloned(),
        status: s.active_slot,
        revision: s.active_revision,
        phase: s.phase.map(|p| p.as_str().to_owned()).unwrap_or_default(),
        selected_deployments,
        active_deployment_revision,
        selected_pods,
    }
}

/// Starts a task that samples `probe` every `every` until the returned flag is set; the
/// handle yields the samples.
fn sampler<T, F, Fut>(
    every: Duration,
    mut probe: F,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<T>>)
where
    T: Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = tokio::spawn(async move {
        let mut samples = Vec::new();
        while !flag.load(Ordering::SeqCst) {
            samples.push(probe().await);
            tokio::time::sleep(every).await;
        }
        samples
    });
    (stop, handle)
}

/// Three-way agreement at every step of three releases (the first; a validated promotion to
/// green; a promotion to blue whose postPromotion fails and is switched back to green), sampled
/// every ~100 ms throughout: `status.activeSlot`, the active Service's slot key, and the slot
/// whose Deployment's pods the Service selects (by the Deployments' pod template labels, and
/// by the pods it matches) name the same slot, and `status.activeRevision` is the revision of
/// that slot's Deployment.
///
/// The one allowed disagreement: the operator writes the switch to status *before* it patches
/// the Service (status is the intent a restarted operator completes), so a sample may catch
/// status on the new slot and the Service still on the old one. Each sample reads the Service
/// first and status second, so that lag shows as status ahead of the Service; it is allowed for
/// one observation only (the next sample must show the Service caught up with an unchanged
/// status). The reverse, the Service ahead of status, is never allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn status_service_and_deployments_agree_on_the_active_slot_at_every_step() {
    let mut ns = TestNamespace::new("bg-agree").await;
    ns.apply(&services());
    let strategy = format!(
        "scaleDownDelay: 5s, abortScaleDownDelay: 5s, prePromotion: [{}], postPromotion: [{}]",
        sleep_step("soak", "2s"),
        sleep_step("settle", "2s")
    );
    ns.apply(&release("1", &strategy));
    let (client, namespace) = (ns.client.clone(), ns.name.clone());
    let (stop, samples) = sampler(Duration::from_millis(100), move || {
        let (client, namespace) = (client.clone(), namespace.clone());
        async move { sample_agreement(&client, &namespace).await }
    });
    ns.start_operator();
    let r1 = active_revision(&wait_healthy_after(&ns, "").await);
    ns.apply(&release("2", &strategy));
    let r2 = active_revision(&wait_healthy_after(&ns, &r1).await);
    let failing = format!(
        "scaleDownDelay: 5s, abortScaleDownDelay: 5s, prePromotion: [{}], postPromotion: [{}]",
        sleep_step("soak", "2s"),
        job_step("check", true)
    );
    ns.apply(&release_with("3", &failing, "", ""));
    let r3 = wait_desired_after(&ns, &r2).await;
    let back = wait_release(&ns, "switched back to green and converged", |b| {
        history(b).first() == Some(&record(&r3, "RolledBack"))
            && status(b).switched_at.is_some()
            && active_slot(b).as_deref() == Some("green")
    })
    .await;
    assert_eq!(active_revision(&back), r2);
    // A few more samples of the settled state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let samples = samples.await.expect("sampler");

    for (i, s) in samples.iter().enumerate() {
        if s.service != s.status {
            // Status leads: the Service catches up by the next observation, status unchanged.
            let next = samples.get(i + 1);
            let caught_up = next.is_some_and(|n| n.status == s.status && n.service == s.status);
            assert!(
                caught_up && s.status.is_some(),
                "sample {i}: status says {:?}, the Service selects {:?}, and the next sample does not show the Service following status: {s:#?} then {next:#?}",
                s.status,
                s.service
            );
        }
        let Some(slot) = &s.service else {
            continue;
        };
        let deployment = slot_deployment(slot);
        assert!(
            s.selected_deployments == vec![deployment.clone()],
            "sample {i}: the Service names {slot} but selects the pods of {:?}: {s:#?}",
            s.selected_deployments
        );
        assert!(
            s.selected_pods
                .iter()
                .all(|p| p.starts_with(&format!("{deployment}-"))),
            "sample {i}: the Service names {slot} but selects pods {:?}",
            s.selected_pods
        );
        if s.status.is_some() {
            assert_eq!(
                s.revision, s.active_deployment_revision,
                "sample {i}: activeRevision is not the revision of the active slot's Deployment: {s:#?}"
            );
        }
    }
    let slots: Vec<_> = samples.iter().map(|s| s.status.clone()).collect();
    let mut switches: Vec<Option<String>> = slots.clone();
    switches.dedup();
    assert_eq!(
        switches,
        vec![
            None,
            Some("blue".to_owned()),
            Some("green".to_owned()),
            Some("blue".to_owned()),
            Some("green".to_owned())
        ],
        "the sampler did not see every switch (first release, promotion, promotion, switch back)"
    );
    let phases: BTreeSet<_> = samples.iter().map(|s| s.phase.as_str()).collect();
    for p in [
        "Validating",
        "Promoting",
        "ScalingDown",
        "Healthy",
        "Degraded",
    ] {
        assert!(
            phases.contains(p),
            "no sample in phase {p}: {phases:?} ({} samples)",
            samples.len()
        );
    }
    wait_runs_finished(&ns).await;
}

/// Ready endpoints of the active Service's EndpointSlices as (ready count, pod names).
async fn ready_endpoints(client: &Client, namespace: &str) -> (usize, Vec<String>) {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={ACTIVE}")))
        .await
        .expect("list endpointslices");
    let ready: Vec<String> = list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .map(|e| {
            e.target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_default()
        })
        .collect();
    (ready.len(), ready)
}

/// No empty moment: a watcher samples the active Service's EndpointSlices every ~50 ms
/// throughout two releases (a validated promotion from blue to green with blue scaled down
/// after it, then a promotion to blue whose postPromotion fails and is switched back to green)
/// and the count of ready endpoints never drops to zero. It saw the switches: blue's pods
/// first, then green's, then blue's again, and green's at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn active_service_never_has_zero_ready_endpoints_during_a_release() {
    let mut ns = TestNamespace::new("bg-endpoints").await;
    let strategy = format!(
        "scaleDownDelay: 5s, abortScaleDownDelay: 5s, prePromotion: [{}]",
        sleep_step("soak", "2s")
    );
    let r1 = first_release(&mut ns, &strategy).await;
    // The EndpointSlices hold blue's pods before the watcher starts.
    let started = Instant::now();
    while ready_endpoints(&ns.client, &ns.name).await.0 < REPLICAS as usize {
        assert!(started.elapsed() < PATIENCE, "blue never got endpoints");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (client, namespace) = (ns.client.clone(), ns.name.clone());
    let (stop, samples) = sampler(Duration::from_millis(50), move || {
        let (client, namespace) = (client.clone(), namespace.clone());
        async move { ready_endpoints(&client, &namespace).await }
    });
    ns.apply(&release("2", &strategy));
    let r2 = active_revision(&wait_healthy_after(&ns, &r1).await);
    let failing = format!(
        "scaleDownDelay: 5s, abortScaleDownDelay: 5s, postPromotion: [{}]",
        job_step("check", true)
    );
    ns.apply(&release("3", &failing));
    let r3 = wait_desired_after(&ns, &r2).await;
    wait_release(&ns, "switched back and the failed slot scaled down", |b| {
        history(b).first() == Some(&record(&r3, "RolledBack")) && status(b).switched_at.is_some()
    })
    .await;
    wait_slot_replicas(&ns, "blue", 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let samples = samples.await.expect("sampler");

    let empty: Vec<_> = samples
        .iter()
        .enumerate()
        .filter(|(_, (ready, _))| *ready == 0)
        .collect();
    assert!(
        empty.is_empty(),
        "{} of {} samples saw no ready endpoint, first at sample {:?}",
        empty.len(),
        samples.len(),
        empty.first().map(|(i, _)| i)
    );
    // Which slots served, in order (a sample mixing both slots is part of a switch).
    let only = |pods: &[String], slot: &str| {
        pods.iter()
            .all(|p| p.starts_with(&format!("{}-", slot_deployment(slot))))
    };
    let mut served: Vec<&str> = samples
        .iter()
        .filter_map(|(_, pods)| {
            if only(pods, "blue") {
                Some("blue")
            } else if only(pods, "green") {
                Some("green")
            } else {
                None
            }
        })
        .collect();
    served.dedup();
    assert_eq!(
        served,
        vec!["blue", "green", "blue", "green"],
        "the watcher did not see both switches and the switch back ({} samples)",
        samples.len()
    );
    wait_runs_finished(&ns).await;
}

/// A prePromotion Job whose pod fails aborts the release: phase Degraded, Degraded True with
/// reason PrePromotionFailed naming the step, a PrePromotionFailed warning, history Aborted,
/// and the active Service never touched (same resourceVersion, still blue). The idle slot
/// keeps its pods until abortScaleDownDelay after the abort, then goes to 0.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn failing_pre_promotion_job_aborts_and_leaves_the_active_service_alone() {
    let mut ns = TestNamespace::new("bg-pre-fail").await;
    let strategy = format!(
        "scaleDownDelay: 5s, abortScaleDownDelay: 5s, prePromotion: [{}]",
        job_step("smoke", true)
    );
    let r1 = first_release(&mut ns, &strategy).await;
    let before = ns.api::<Service>().get(ACTIVE).await.expect("service");

    ns.apply(&release("2", &strategy));
    let r2 = wait_desired_after(&ns, &r1).await;
    let aborted = wait_release(&ns, "Degraded after the failed prePromotion", |b| {
        phase(b) == "Degraded" && history(b).first().is_some_and(|h| h.1 == "Aborted")
    })
    .await;
    let (degraded, reason, message) = cond(&aborted, "Degraded");
    assert_eq!(
        (degraded.as_str(), reason.as_str()),
        ("True", "PrePromotionFailed")
    );
    assert!(
        message.contains("smoke") && message.contains(&r2),
        "the Degraded message names neither the step nor the revision: {message}"
    );
    assert_eq!(
        history(&aborted),
        vec![record(&r2, "Aborted"), record(&r1, "Promoted")]
    );
    assert_eq!(active_slot(&aborted).as_deref(), Some("blue"));
    assert_eq!(active_revision(&aborted), r1);
    let scale_down_at = status(&aborted).scale_down_at.expect("scaleDownAt").0;
    assert_eq!(
        slot_state(&ns, "green").await,
        (Some(r2.clone()), REPLICAS),
        "the aborted slot was scaled down before abortScaleDownDelay"
    );
    let events = wait_times(&ns, "PrePromotionFailed", 1).await;
    let warning = events
        .iter()
        .find(|e| e.reason == "PrePromotionFailed")
        .expect("warning");
    assert_eq!(warning.type_, "Warning");

    wait_slot_replicas(&ns, "green", 0).await;
    let events = wait_times(&ns, "SlotScaled", 1).await;
    let scaled = first_since(&events, "SlotScaled", Timestamp::UNIX_EPOCH).expect("SlotScaled");
    assert!(
        scaled >= scale_down_at,
        "green scaled down at {scaled}, before scaleDownAt {scale_down_at}"
    );
    let settled = wait_release(&ns, "Degraded with no scale-down pending", |b| {
        phase(b) == "Degraded" && status(b).scale_down_at.is_none()
    })
    .await;
    let after = ns.api::<Service>().get(ACTIVE).await.expect("service");
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "the active Service was written to: {:?}",
        after.spec.and_then(|s| s.selector)
    );
    assert_eq!(service_slot(&ns, ACTIVE).await.as_deref(), Some("blue"));
    assert_eq!(times(&events, "TrafficSwitching"), 1, "{events:#?}");
    assert_eq!(slot_state(&ns, "blue").await, (Some(r1), REPLICAS));
    wait_runs_finished(&ns).await;

    // Last: once the aborted slot is scaled down, Degraded still tells why.
    let (degraded, reason, message) = cond(&settled, "Degraded");
    assert!(
        degraded == "True" && reason == "PrePromotionFailed" && message.contains("smoke"),
        "after the scale-down, Degraded no longer says the prePromotion step failed: ({degraded}, {reason}, {message:?})"
    );
}

/// A postPromotion Job whose pod fails after the switch sends traffic back to the old slot,
/// which still runs: SwitchedBack warning, history RolledBack, Degraded True with reason
/// PostPromotionFailed, status and both Services on blue again with TrafficSwitched True once
/// the endpoints converged, and green scaled to 0 after abortScaleDownDelay.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn failing_post_promotion_job_switches_back_to_the_old_slot() {
    let mut ns = TestNamespace::new("bg-post-fail").await;
    let strategy = format!(
        "scaleDownDelay: 5s, abortScaleDownDelay: 5s, postPromotion: [{}]",
        job_step("verify", true)
    );
    let r1 = first_release(&mut ns, &strategy).await;
    ns.apply(&release("2", &strategy));
    let r2 = wait_desired_after(&ns, &r1).await;
    let back = wait_release(&ns, "switched back, endpoints converged", |b| {
        history(b).first() == Some(&record(&r2, "RolledBack")) && status(b).switched_at.is_some()
    })
    .await;
    assert_eq!(phase(&back), "Degraded");
    assert_eq!(
        history(&back),
        vec![record(&r2, "RolledBack"), record(&r1, "Promoted")]
    );
    assert_serves(&ns, &back, "blue", &r1).await;
    let events = wait_times(&ns, "SwitchedBack", 1).await;
    let switched_back = events
        .iter()
        .find(|e| e.reason == "SwitchedBack")
        .expect("SwitchedBack");
    assert_eq!(switched_back.type_, "Warning");
    assert_eq!(
        times(&events, "TrafficSwitching"),
        2,
        "first release and the promotion to green"
    );
    let to_green = events
        .iter()
        .filter(|e| e.reason == "TrafficSwitching")
        .map(|e| e.last)
        .max()
        .expect("TrafficSwitching");
    assert!(
        to_green <= switched_back.first,
        "switched back before switching: {events:#?}"
    );
    assert_eq!(
        validation_runs(&ns).await,
        vec![format!("web-post-{r2}")],
        "postPromotion ran once, for the new revision"
    );

    wait_slot_replicas(&ns, "green", 0).await;
    assert_eq!(slot_state(&ns, "blue").await, (Some(r1.clone()), REPLICAS));
    let settled = wait_release(&ns, "Degraded with no scale-down pending", |b| {
        phase(b) == "Degraded" && status(b).scale_down_at.is_none()
    })
    .await;
    assert_eq!(active_revision(&settled), r1);
    assert_eq!(service_slot(&ns, ACTIVE).await.as_deref(), Some("blue"));
    wait_runs_finished(&ns).await;

    // Last: Degraded tells why, once the switch back converged and after the scale-down.
    for (when, bgr) in [
        ("after the switch back", &back),
        ("after the scale-down", &settled),
    ] {
        let (degraded, reason, message) = cond(bgr, "Degraded");
        assert!(
            degraded == "True" && reason == "PostPromotionFailed" && message.contains("verify"),
            "{when}, Degraded does not say the postPromotion step failed: ({degraded}, {reason}, {message:?})"
        );
    }
}

/// With autoPromote false a new revision waits in AwaitingPromotion; the abort annotation
/// naming it stops the release (Degraded True, reason AbortedByHand, an AbortedByHand warning,
/// history Aborted, active Service untouched, the idle slot scaled to 0 after
/// abortScaleDownDelay). Changing the template again is a retry: the new revision progresses,
/// the stale abort annotation does not stop it, and a promote annotation naming it switches.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn abort_by_annotation_then_retry_with_a_new_template() {
    let mut ns = TestNamespace::new("bg-abort").await;
    let strategy = "autoPromote: false, scaleDownDelay: 5s, abortScaleDownDelay: 5s";
    let r1 = first_release(&mut ns, strategy).await;
    ns.apply(&release("2", strategy));
    let r2 = wait_desired_after(&ns, &r1).await;
    let waiting = wait_release(&ns, "AwaitingPromotion", |b| {
        phase(b) == "AwaitingPromotion" && desired_revision(b) == r2
    })
    .await;
    assert_eq!(active_slot(&waiting).as_deref(), Some("blue"));
    assert_eq!(service_slot(&ns, ACTIVE).await.as_deref(), Some("blue"));
    assert_eq!(service_slot(&ns, PREVIEW).await.as_deref(), Some("green"));
    assert_eq!(slot_state(&ns, "green").await, (Some(r2.clone()), REPLICAS));

    annotate(&ns, &format!("ops.runbook.dev/abort={r2}"));
    let aborted = wait_release(&ns, "Degraded by hand", |b| {
        phase(b) == "Degraded" && history(b).first() == Some(&record(&r2, "Aborted"))
    })
    .await;
    let (degraded, reason, _) = cond(&aborted, "Degraded");
    assert_eq!(
        (degraded.as_str(), reason.as_str()),
        ("True", "AbortedByHand")
    );
    assert_eq!(
        history(&aborted),
        vec![record(&r2, "Aborted"), record(&r1, "Promoted")]
    );
    assert_eq!(active_slot(&aborted).as_deref(), Some("blue"));
    assert_eq!(service_slot(&ns, ACTIVE).await.as_deref(), Some("blue"));
    let events = wait_times(&ns, "AbortedByHand", 1).await;
    assert!(
        events
            .iter()
            .any(|e| e.reason == "AbortedByHand" && e.type_ == "Warning")
    );
    wait_slot_replicas(&ns, "green", 0).await;
    assert_eq!(times(&release_events(&ns).await, "TrafficSwitching"), 1);

    // Retry: a new template is a new revision, released from scratch.
    ns.apply(&release("3", strategy));
    let r3 = wait_desired_after(&ns, &r2).await;
    let waiting = wait_release(&ns, "the retry AwaitingPromotion", |b| {
        phase(b) == "AwaitingPromotion" && desired_revision(b) == r3
    })
    .await;
    assert_eq!(
        cond(&waiting, "Degraded").0,
        "False",
        "the retry still reports the abort: {:#?}",
        waiting.status
    );
    assert_eq!(slot_state(&ns, "green").await, (Some(r3.clone()), REPLICAS));
    assert_eq!(service_slot(&ns, ACTIVE).await.as_deref(), Some("blue"));
    annotate(&ns, &format!("ops.runbook.dev/promote={r3}"));
    let promoted = wait_healthy_after(&ns, &r1).await;
    assert_serves(&ns, &promoted, "green", &r3).await;
    assert_eq!(
        history(&promoted),
        vec![
            record(&r3, "Promoted"),
            record(&r2, "Aborted"),
            record(&r1, "Promoted")
        ]
    );
    assert_eq!(cond(&promoted, "Degraded").0, "False");
    assert_eq!(slot_state(&ns, "blue").await, (Some(r1), 0));
}

/// Reverting the template to the revision the old slot still runs (scaleDownDelay 5m keeps
/// it) is an instant flip: status and both Services go back to blue, history records the
/// rollback as a new Promoted release, and no pod or ReplicaSet is created or removed, neither
/// slot Deployment is written, and no validation runs (prePromotion is skipped for a revision
/// that was promoted before). Events: one validation in all, one switch per release, and no
/// SelectorRestored (nobody edited a Service).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn reverting_the_template_flips_back_with_no_new_pods_and_no_validation() {
    let mut ns = TestNamespace::new("bg-rollback").await;
    let strategy = format!(
        "scaleDownDelay: 5m, prePromotion: [{}]",
        sleep_step("soak", "1s")
    );
    let r1 = first_release(&mut ns, &strategy).await;
    ns.apply(&release("2", &strategy));
    let r2 = wait_desired_after(&ns, &r1).await;
    let promoted = wait_release(&ns, "promoted to green, blue kept", |b| {
        phase(b) == "ScalingDown"
            && active_revision(b) == r2
            && history(b).first() == Some(&record(&r2, "Promoted"))
    })
    .await;
    assert_serves(&ns, &promoted, "green", &r2).await;
    assert_eq!(slot_state(&ns, "blue").await, (Some(r1.clone()), REPLICAS));
    wait_runs_finished(&ns).await;
    let pods = slot_pods(&ns).await;
    let sets = replica_sets(&ns).await;
    let generations = (
        deployment(&ns, "web-blue")
            .await
            .and_then(|d| d.metadata.generation),
        deployment(&ns, "web-green")
            .await
            .and_then(|d| d.metadata.generation),
    );
    let runs = validation_runs(&ns).await;
    assert_eq!(runs, vec![format!("web-pre-{r2}")]);
    assert_eq!(pods.len(), 2 * REPLICAS as usize, "{pods:?}");

    ns.apply(&release("1", &strategy));
    let flipped = wait_release(&ns, "back on blue, converged", |b| {
        current(b)
            && active_revision(b) == r1
            && status(b).switched_at.is_some()
            && history(b).first() == Some(&record(&r1, "Promoted"))
    })
    .await;
    assert_serves(&ns, &flipped, "blue", &r1).await;
    assert_eq!(
        history(&flipped),
        vec![
            record(&r1, "Promoted"),
            record(&r2, "Promoted"),
            record(&r1, "Promoted")
        ]
    );
    assert!(
        status(&flipped).validation.is_empty(),
        "the rollback was validated: {:#?}",
        flipped.status
    );
    assert_eq!(
        validation_runs(&ns).await,
        runs,
        "a validation run was started for the rollback"
    );
    assert_eq!(slot_pods(&ns).await, pods, "pods were created or removed");
    assert_eq!(replica_sets(&ns).await, sets, "ReplicaSets changed");
    assert_eq!(
        (
            deployment(&ns, "web-blue")
                .await
                .and_then(|d| d.metadata.generation),
            deployment(&ns, "web-green")
                .await
                .and_then(|d| d.metadata.generation),
        ),
        generations,
        "a slot Deployment was rewritten"
    );
    // Green is the old slot now; it keeps its pods for the (long) scaleDownDelay.
    assert_eq!(slot_state(&ns, "green").await, (Some(r2), REPLICAS));
    assert_eq!(phase(&get_release(&ns).await), "ScalingDown");
    let events = release_events(&ns).await;
    assert_eq!(
        (
            times(&events, "ValidationStarted"),
            times(&events, "TrafficSwitching"),
            times(&events, "SelectorRestored")
        ),
        (1, 3, 0),
        "expected one validation (of the second revision), one switch per release and no selector put back (nobody edited it): {events:#?}"
    );
}

/// Manual promotion is bound to a revision: with autoPromote false, a promote annotation
/// naming another revision is ignored (the release stays AwaitingPromotion on blue after the
/// operator has seen it) and reported (reason PromoteNamesOtherRevision); the annotation
/// naming the desired revision switches to green.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn promote_annotation_naming_another_revision_is_ignored() {
    let mut ns = TestNamespace::new("bg-promote").await;
    let strategy = "autoPromote: false, scaleDownDelay: 5s";
    let r1 = first_release(&mut ns, strategy).await;
    ns.apply(&release("2", strategy));
    let r2 = wait_desired_after(&ns, &r1).await;
    let waiting = wait_release(&ns, "AwaitingPromotion", |b| {
        phase(b) == "AwaitingPromotion" && desired_revision(b) == r2
    })
    .await;
    assert_eq!(cond(&waiting, "Degraded").0, "False");

    // The previous revision, then a revision that does not exist: both ignored.
    let mut ignored = Vec::new();
    for wrong in [r1.as_str(), "0123456789"] {
        let before = reconciles(&ns);
        annotate(&ns, &format!("ops.runbook.dev/promote={wrong}"));
        reconciled_since(&ns, before).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let still = get_release(&ns).await;
        assert_eq!(phase(&still), "AwaitingPromotion", "{:#?}", still.status);
        assert_eq!(active_slot(&still).as_deref(), Some("blue"));
        assert_eq!(service_slot(&ns, ACTIVE).await.as_deref(), Some("blue"));
        ignored.push(reports_reason(&ns, &still, "PromoteNamesOtherRevision").await);
    }

    annotate(&ns, &format!("ops.runbook.dev/promote={r2}"));
    let promoted = wait_healthy_after(&ns, &r1).await;
    assert_serves(&ns, &promoted, "green", &r2).await;
    assert_eq!(
        history(&promoted),
        vec![record(&r2, "Promoted"), record(&r1, "Promoted")]
    );
    assert_eq!(times(&release_events(&ns).await, "TrafficSwitching"), 2);

    // Last: the ignored annotation was reported, not silently dropped.
    assert_eq!(
        ignored,
        vec![true, true],
        "a promote annotation naming another revision was not reported (reason PromoteNamesOtherRevision in a condition or an Event)"
    );
}

/// A hand edit of the slot key is put back: the active Service pointed at the other slot is
/// restored with a SelectorRestored warning naming both slots; the key removed altogether (as a
/// GitOps sync might) is put back too; the preview Service's slot key is restored as well. The
/// release stays Healthy on blue and its other selector keys are untouched.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn hand_edited_slot_key_is_put_back() {
    let mut ns = TestNamespace::new("bg-tamper").await;
    let r1 = first_release(&mut ns, "scaleDownDelay: 5s").await;

    ns.kubectl_ok(&[
        "patch",
        "service",
        ACTIVE,
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"spec":{{"selector":{{"{SLOT_KEY}":"green"}}}}}}"#),
    ]);
    let messages = ns
        .wait_for_event(RELEASE, "SelectorRestored", "green")
        .await;
    assert!(messages.contains("blue"), "{messages}");
    let started = Instant::now();
    while service_slot(&ns, ACTIVE).await.as_deref() != Some("blue") {
        assert!(
            started.elapsed() < PATIENCE,
            "the slot key was not put back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = release_events(&ns).await;
    let restored = events
        .iter()
        .find(|e| e.reason == "SelectorRestored")
        .expect("SelectorRestored");
    assert_eq!(restored.type_, "Warning");

    ns.kubectl_ok(&[
        "patch",
        "service",
        ACTIVE,
        "--type",
        "json",
        "-p",
        &format!(
            r#"[{{"op":"remove","path":"/spec/selector/{}"}}]"#,
            SLOT_KEY.replace('/', "~1")
        ),
    ]);
    let started = Instant::now();
    while service_slot(&ns, ACTIVE).await.as_deref() != Some("blue") {
        assert!(
            started.elapsed() < PATIENCE,
            "the removed slot key was not put back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    ns.kubectl_ok(&[
        "patch",
        "service",
        PREVIEW,
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"spec":{{"selector":{{"{SLOT_KEY}":"green"}}}}}}"#),
    ]);
    let started = Instant::now();
    while service_slot(&ns, PREVIEW).await.as_deref() != Some("blue") {
        assert!(
            started.elapsed() < PATIENCE,
            "the preview Service's slot key was not put back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let bgr = wait_release(&ns, "Healthy", healthy).await;
    assert_serves(&ns, &bgr, "blue", &r1).await;
    assert_eq!(
        selector(&ns, ACTIVE).await,
        BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            (SLOT_KEY.to_owned(), "blue".to_owned())
        ])
    );
    assert_eq!(history(&bgr), vec![record(&r1, "Promoted")]);
    assert_eq!(times(&release_events(&ns).await, "TrafficSwitching"), 1);
}

/// A phase of a release to kill the operator in.
#[derive(Clone, Copy, Debug)]
enum KillIn {
    /// The new slot is rolling out (its pods are held unscheduled).
    Progressing,
    /// prePromotion (a 6 s sleep) runs.
    Validating,
    /// Traffic was switched and postPromotion (a 6 s sleep) runs.
    Promoting,
    /// The old slot waits out scaleDownDelay (8 s).
    ScalingDown,
}

/// The operator is SIGKILLed while the second release is in `when`; what it was waiting for
/// happens while it is down; a new operator process converges to Healthy on green with the
/// old slot scaled to 0, and traffic was switched exactly once for the new revision (two
/// TrafficSwitching occurrences in all, one per release, counting every Event and series),
/// history has exactly one entry per release, and exactly one validation run was made.
async fn operator_killed_while(when: KillIn) {
    let (prefix, strategy, pod_extra, want) = match when {
        KillIn::Progressing => (
            "bg-kill-prog",
            "scaleDownDelay: 5s".to_owned(),
            HOLD,
            "Progressing",
        ),
        KillIn::Validating => (
            "bg-kill-val",
            format!(
                "scaleDownDelay: 5s, prePromotion: [{}]",
                sleep_step("soak", "6s")
            ),
            "",
            "Validating",
        ),
        KillIn::Promoting => (
            "bg-kill-prom",
            format!(
                "scaleDownDelay: 5s, postPromotion: [{}]",
                sleep_step("soak", "6s")
            ),
            "",
            "Promoting",
        ),
        KillIn::ScalingDown => (
            "bg-kill-scale",
            "scaleDownDelay: 8s".to_owned(),
            "",
            "ScalingDown",
        ),
    };
    let mut ns = TestNamespace::new(prefix).await;
    let r1 = first_release(&mut ns, &strategy).await;
    ns.apply(&release_with("2", &strategy, pod_extra, ""));
    let r2 = wait_desired_after(&ns, &r1).await;
    let caught = wait_release(&ns, want, |b| {
        phase(b) == want
            && desired_revision(b) == r2
            && match when {
                // After the switch: status and Service on green.
                KillIn::Promoting => active_slot(b).as_deref() == Some("green"),
                KillIn::ScalingDown => status(b).scale_down_at.is_some(),
                _ => true,
            }
    })
    .await;
    if let KillIn::Progressing = when {
        // The new slot exists and its pods are waiting to be scheduled.
        let started = Instant::now();
        loop {
            let green = deployment(&ns, "web-green").await;
            let gated = ns
                .api::<Pod>()
                .list(&ListParams::default().labels("ops.runbook.dev/slot=green"))
                .await
                .expect("list pods")
                .items
                .len();
            if green.as_ref().and_then(revision_of).as_deref() == Some(r2.as_str())
                && gated == REPLICAS as usize
            {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "green was never made with held pods: {green:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let KillIn::Promoting = when {
        let started = Instant::now();
        while service_slot(&ns, ACTIVE).await.as_deref() != Some("green") {
            assert!(started.elapsed() < PATIENCE, "the Service never switched");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ns.stop_operator();
    let at_kill = get_release(&ns).await;

    // What the release waits for happens while no operator runs.
    match when {
        KillIn::Progressing => {
            let started = Instant::now();
            loop {
                let green = deployment(&ns, "web-green").await;
                if green.as_ref().is_some_and(available) {
                    break;
                }
                assert!(
                    started.elapsed() < PATIENCE,
                    "green never became available: {green:#?}"
                );
                let pods = ns
                    .api::<Pod>()
                    .list(&ListParams::default().labels("ops.runbook.dev/slot=green"))
                    .await
                    .expect("list pods")
                    .items;
                for pod in pods.iter().filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.scheduling_gates.as_ref())
                        .is_some_and(|g| !g.is_empty())
                }) {
                    ns.kubectl_ok(&[
                        "patch",
                        "pod",
                        &pod.name_any(),
                        "--type",
                        "json",
                        "-p",
                        r#"[{"op":"remove","path":"/spec/schedulingGates"}]"#,
                    ]);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        KillIn::ScalingDown => {
            let at = status(&caught).scale_down_at.expect("scaleDownAt").0;
            sleep_until(at + jiff::SignedDuration::from_secs(1)).await;
        }
        KillIn::Validating | KillIn::Promoting => {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let down = get_release(&ns).await;
    assert_eq!(
        down.status, at_kill.status,
        "the release's status changed with no operator running"
    );
    assert_eq!(
        slot_state(&ns, "blue").await.1,
        REPLICAS,
        "blue was scaled with no operator running"
    );

    ns.start_operator();
    let done = wait_healthy_after(&ns, &r1).await;
    assert_eq!(active_revision(&done), r2);
    assert_serves(&ns, &done, "green", &r2).await;
    assert_eq!(cond(&done, "Degraded").0, "False");
    assert_eq!(slot_state(&ns, "blue").await, (Some(r1.clone()), 0));
    assert_eq!(
        history(&done),
        vec![record(&r2, "Promoted"), record(&r1, "Promoted")]
    );
    let events = wait_times(&ns, "SlotScaled", 1).await;
    // Events are published after the write they report, so a kill between the two loses
    // that Event: the check is that no switch was made twice, not that none went unreported.
    let switches = times(&events, "TrafficSwitching");
    assert!(
        (1..=2).contains(&switches),
        "traffic switched more than once per release: {events:#?}"
    );
    assert_eq!(times(&events, "SwitchedBack"), 0, "{events:#?}");
    let expected_runs: Vec<String> = match when {
        KillIn::Validating => vec![format!("web-pre-{r2}")],
        KillIn::Promoting => vec![format!("web-post-{r2}")],
        _ => Vec::new(),
    };
    assert_eq!(validation_runs(&ns).await, expected_runs);
    wait_runs_finished(&ns).await;
}

/// The operator killed while the new slot rolls out (Progressing) converges with no double
/// switch (see [`operator_killed_while`]).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_killed_while_progressing_converges_with_one_switch() {
    operator_killed_while(KillIn::Progressing).await;
}

/// The operator killed while prePromotion runs (Validating) converges with no double switch
/// (see [`operator_killed_while`]).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_killed_while_validating_converges_with_one_switch() {
    operator_killed_while(KillIn::Validating).await;
}

/// The operator killed after the switch, while postPromotion runs (Promoting), converges with
/// no double switch (see [`operator_killed_while`]).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_killed_while_promoting_converges_with_one_switch() {
    operator_killed_while(KillIn::Promoting).await;
}

/// The operator killed while the old slot waits out scaleDownDelay (ScalingDown), and kept down
/// past scaleDownAt, scales it down when it returns, with no double switch (see
/// [`operator_killed_while`]).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_killed_while_scaling_down_converges_with_one_switch() {
    operator_killed_while(KillIn::ScalingDown).await;
}

/// With requiresMaintenanceWindow, a validated revision waits in AwaitingPromotion (reason
/// WaitingForWindow) while no matching window is Active, even while a window with other labels
/// is; a one-off window with matching labels opening ~15 s later lets it switch, and the switch
/// comes after that window's start. The first release is not held (nothing serves yet).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn promotion_waits_for_a_matching_maintenance_window() {
    let mut ns = TestNamespace::new("bg-window").await;
    let strategy = "scaleDownDelay: 5s";
    ns.apply(&services());
    ns.apply(&release_with(
        "1",
        strategy,
        "",
        "  requiresMaintenanceWindow: {selector: {matchLabels: {window: release}}}",
    ));
    ns.start_operator();
    let r1 = active_revision(&wait_healthy_after(&ns, "").await);
    let window = |name: &str, label: &str, start: Timestamp| {
        format!(
            "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: {name}, labels: {{window: {label}}}}}\nspec:\n  start: \"{start}\"\n  end: \"{}\"\n",
            start + jiff::SignedDuration::from_mins(10)
        )
    };
    // A window with other labels, open now.
    ns.apply(&window("other", "other", from_now(2)));
    ns.wait_for::<MaintenanceWindow>("other", "Active", |mw| {
        mw.status
            .as_ref()
            .is_some_and(|s| condition(&s.conditions, "Active").is_some_and(|c| c.status == "True"))
    })
    .await;

    ns.apply(&release_with(
        "2",
        strategy,
        "",
        "  requiresMaintenanceWindow: {selector: {matchLabels: {window: release}}}",
    ));
    let r2 = wait_desired_after(&ns, &r1).await;
    let waiting = wait_release(&ns, "AwaitingPromotion", |b| {
        phase(b) == "AwaitingPromotion" && desired_revision(b) == r2
    })
    .await;
    assert_eq!(active_slot(&waiting).as_deref(), Some("blue"));
    assert_eq!(slot_state(&ns, "green").await, (Some(r2.clone()), REPLICAS));
    let reported = reports_reason(&ns, &waiting, "WaitingForWindow").await;

    let opens = from_now(15);
    ns.apply(&window("release", "release", opens));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = get_release(&ns).await;
    assert_eq!(
        phase(&still),
        "AwaitingPromotion",
        "switched before the window opened"
    );
    assert_eq!(service_slot(&ns, ACTIVE).await.as_deref(), Some("blue"));

    let promoted = wait_healthy_after(&ns, &r1).await;
    assert_serves(&ns, &promoted, "green", &r2).await;
    let events = release_events(&ns).await;
    let switched = events
        .iter()
        .filter(|e| e.reason == "TrafficSwitching")
        .map(|e| e.last)
        .max()
        .expect("TrafficSwitching");
    assert!(
        switched >= opens,
        "switched at {switched}, before the window opened at {opens}"
    );
    assert!(
        status(&promoted).switched_at.is_some_and(|t| t.0 >= opens),
        "switchedAt before the window opened at {opens}: {:#?}",
        promoted.status
    );
    assert_eq!(times(&events, "TrafficSwitching"), 2, "{events:#?}");
    ns.delete_windows().await;

    // Last: the wait was reported with its reason.
    assert!(
        reported,
        "AwaitingPromotion for a window was not reported (reason WaitingForWindow in a condition or an Event): {:#?}",
        waiting.status
    );
}

//! Argo Rollouts' controls of a BlueGreenRelease end to end: autoPromoteAfter, retry (by
//! annotation and by `kubectl runbook retry`), antiAffinity between the slots, `promote --full`
//! recorded in history, slotLabel refused at apply once set, and rollbackRequiresWindow.

use std::collections::BTreeSet;
use std::process::Command;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::ListParams;
use runbook_operator::blue_green::{BlueGreenRelease, BlueGreenReleaseStatus};
use runbook_operator::maintenance_window::MaintenanceWindow;
use runbook_operator::runbook_run::RunbookRun;
use runbook_operator::well_known::{
    ABORT_ANNOTATION, PROMOTE_ANNOTATION, PROMOTED_FULL_BY, RETRY_ANNOTATION,
};

use crate::support::{TestNamespace, condition, from_now};

const RELEASE: &str = "web";

fn services() -> String {
    ["web", "web-preview"]
        .map(|name| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
            )
        })
        .join("---\n")
}

/// The release `web` (2 replicas of `web:<tag>`) with `strategy` entries and `extra` spec lines.
fn release(tag: &str, strategy: &str, extra: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BlueGreenRelease\nmetadata: {{name: {RELEASE}}}\nspec:\n  replicas: 2\n  services: {{active: web, preview: web-preview}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: \"registry.example.com/web:{tag}\"}}]}}\n  strategy: {{{strategy}}}\n{extra}\n"
    )
}

fn status(bgr: &BlueGreenRelease) -> BlueGreenReleaseStatus {
    bgr.status.clone().unwrap_or_default()
}

fn phase(bgr: &BlueGreenRelease) -> String {
    status(bgr)
        .phase
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default()
}

fn desired(bgr: &BlueGreenRelease) -> String {
    status(bgr).desired_revision.unwrap_or_default()
}

fn reconciling_reason(bgr: &BlueGreenRelease) -> String {
    condition(&status(bgr).conditions, "Reconciling")
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// Serving the current template, other than `old`, nothing pending but the old slot's scale
/// down (Healthy or ScalingDown).
fn healthy_after(bgr: &BlueGreenRelease, old: &str) -> bool {
    let s = status(bgr);
    s.observed_generation == bgr.metadata.generation
        && matches!(phase(bgr).as_str(), "Healthy" | "ScalingDown")
        && s.active_revision.is_some()
        && s.active_revision == s.desired_revision
        && s.active_revision.as_deref() != Some(old)
}

async fn wait(
    ns: &TestNamespace,
    what: &str,
    done: impl Fn(&BlueGreenRelease) -> bool,
) -> BlueGreenRelease {
    ns.wait_for::<BlueGreenRelease>(RELEASE, what, done).await
}

/// Applies the first release and waits until it serves; returns its revision.
async fn first_release(ns: &mut TestNamespace, strategy: &str, extra: &str) -> String {
    ns.apply(&services());
    ns.apply(&release("1", strategy, extra));
    ns.start_operator();
    let bgr = wait(ns, "first release Healthy", |b| healthy_after(b, "")).await;
    status(&bgr).active_revision.unwrap_or_default()
}

/// Waits until the new template is taken in and waits for promotion; returns its revision.
async fn wait_awaiting(ns: &TestNamespace, old: &str, reason: &str) -> BlueGreenRelease {
    wait(ns, &format!("AwaitingPromotion ({reason})"), |b| {
        desired(b) != old && phase(b) == "AwaitingPromotion" && reconciling_reason(b) == reason
    })
    .await
}

fn plugin(ns: &TestNamespace, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-runbook"))
        .args(["-n", &ns.name])
        .args(args)
        .output()
        .expect("run kubectl-runbook");
    assert!(
        out.status.success(),
        "kubectl runbook {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn annotate(ns: &TestNamespace, key: &str, value: &str) {
    ns.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "bgr",
        RELEASE,
        &format!("{key}={value}"),
    ]);
}

/// autoPromote false with autoPromoteAfter: the validated revision waits with reason
/// AutoPromotionScheduled (readyToPromoteAt recorded), then switches without any annotation.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn auto_promote_after_promotes_without_the_annotation() {
    let mut ns = TestNamespace::new("ctl-autoafter").await;
    let strategy = "autoPromote: false, autoPromoteAfter: 4s, scaleDownDelay: 2s";
    let r1 = first_release(&mut ns, strategy, "").await;
    ns.apply(&release("2", strategy, ""));
    let waiting = wait_awaiting(&ns, &r1, "AutoPromotionScheduled").await;
    let ready = status(&waiting)
        .ready_to_promote_at
        .expect("readyToPromoteAt")
        .0;
    let r2 = desired(&waiting);
    let promoted = wait(&ns, "promoted by autoPromoteAfter", |b| {
        healthy_after(b, &r1)
    })
    .await;
    assert_eq!(
        status(&promoted).active_revision.as_deref(),
        Some(r2.as_str())
    );
    assert!(!promoted.annotations().contains_key(PROMOTE_ANNOTATION));
    let switched = status(&promoted).switched_at.expect("switchedAt").0;
    assert!(
        switched >= ready + jiff::SignedDuration::from_secs(4),
        "switched at {switched}, before readyToPromoteAt {ready} + 4s"
    );
}

/// An aborted revision is released again by `ops.runbook.dev/retry: <revision>` and by
/// `kubectl runbook retry`: a new history record (attempt 2, 3), validation runs again under new
/// run names, and the operator removes the retry and abort annotations.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn retry_by_annotation_and_by_plugin_validates_again() {
    let mut ns = TestNamespace::new("ctl-retry").await;
    let strategy = "autoPromote: false, scaleDownDelay: 2s, abortScaleDownDelay: 2s, prePromotion: [{name: smoke, sleep: {duration: 1s}}]";
    let r1 = first_release(&mut ns, strategy, "").await;
    ns.apply(&release("2", strategy, ""));
    let r2 = desired(&wait_awaiting(&ns, &r1, "PromotionRequired").await);
    annotate(&ns, ABORT_ANNOTATION, &r2);
    wait(&ns, "aborted", |b| {
        phase(b) == "Degraded"
            && status(b).history.first().and_then(|h| h.result.as_deref()) == Some("Aborted")
    })
    .await;
    // A retry naming another revision is ignored.
    annotate(&ns, RETRY_ANNOTATION, &r1);
    annotate(&ns, RETRY_ANNOTATION, &r2);
    let retried = wait_awaiting(&ns, &r1, "PromotionRequired").await;
    let newest = &status(&retried).history[0];
    assert_eq!(
        (newest.revision.as_str(), newest.attempt),
        (r2.as_str(), Some(2))
    );
    let cleared = wait(&ns, "retry and abort annotations removed", |b| {
        !b.annotations().contains_key(RETRY_ANNOTATION)
            && !b.annotations().contains_key(ABORT_ANNOTATION)
    })
    .await;
    assert_eq!(phase(&cleared), "AwaitingPromotion");

    // Again, through the plugin.
    plugin(&ns, &["abort", RELEASE]);
    wait(&ns, "aborted again", |b| {
        status(b).history.first().and_then(|h| h.result.as_deref()) == Some("Aborted")
    })
    .await;
    let said = plugin(&ns, &["retry", RELEASE]);
    assert!(said.contains(&r2), "{said}");
    let again = wait(&ns, "third attempt awaiting promotion", |b| {
        phase(b) == "AwaitingPromotion"
            && status(b).history.first().and_then(|h| h.attempt) == Some(3)
    })
    .await;
    assert_eq!(status(&again).history[0].result, None);
    let runs: BTreeSet<String> = ns
        .api::<RunbookRun>()
        .list(&ListParams::default())
        .await
        .expect("runs")
        .items
        .iter()
        .map(|r| r.name_any())
        .collect();
    for name in [
        format!("web-pre-{r2}"),
        format!("web-pre-{r2}-2"),
        format!("web-pre-{r2}-3"),
    ] {
        assert!(runs.contains(&name), "no validation run {name}: {runs:?}");
    }
    plugin(&ns, &["promote", RELEASE]);
    wait(&ns, "promoted after the retry", |b| healthy_after(b, &r1)).await;
}

/// Required anti-affinity: the new slot's Deployment keeps its pods off the nodes of the other
/// slot's pods (kwok's scheduler honours it).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn anti_affinity_keeps_the_slots_on_different_nodes() {
    let mut ns = TestNamespace::new("ctl-anti").await;
    let strategy =
        "scaleDownDelay: 1h, antiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {}}";
    let r1 = first_release(&mut ns, strategy, "").await;
    ns.apply(&release("2", strategy, ""));
    wait(&ns, "second release Healthy", |b| healthy_after(b, &r1)).await;
    let green = ns
        .api::<Deployment>()
        .get("web-green")
        .await
        .expect("web-green");
    let anti = green
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.affinity)
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.required_during_scheduling_ignored_during_execution)
        .expect("required pod anti-affinity");
    assert_eq!(anti[0].topology_key, "kubernetes.io/hostname");
    let against = anti[0]
        .label_selector
        .clone()
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert_eq!(
        against.get("ops.runbook.dev/slot").map(String::as_str),
        Some("blue")
    );
    let nodes = |slot: &'static str| {
        let api = ns.api::<Pod>();
        async move {
            api.list(&ListParams::default().labels(&format!("ops.runbook.dev/slot={slot}")))
                .await
                .expect("pods")
                .items
                .into_iter()
                .filter_map(|p| p.spec.and_then(|s| s.node_name))
                .collect::<BTreeSet<String>>()
        }
    };
    let (blue, green) = (nodes("blue").await, nodes("green").await);
    assert!(
        !blue.is_empty() && !green.is_empty(),
        "blue {blue:?} green {green:?}"
    );
    assert!(
        blue.is_disjoint(&green),
        "blue {blue:?} and green {green:?} share a node"
    );
}

/// `kubectl runbook promote --full` while prePromotion still runs: the switch happens at once,
/// and history records who (stamped at admission) and when.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn promote_full_skips_validation_and_is_recorded() {
    let mut ns = TestNamespace::new("ctl-full").await;
    let strategy = "autoPromote: false, scaleDownDelay: 2s, prePromotion: [{name: soak, sleep: {duration: 1h}}]";
    let r1 = first_release(&mut ns, strategy, "").await;
    ns.apply(&release("2", strategy, ""));
    wait(&ns, "validating", |b| {
        desired(b) != r1 && phase(b) == "Validating"
    })
    .await;
    let before = Timestamp::now();
    plugin(&ns, &["promote", RELEASE, "--full"]);
    let promoted = wait(&ns, "promoted in full", |b| healthy_after(b, &r1)).await;
    let record = &status(&promoted).history[0];
    assert_eq!(record.result.as_deref(), Some("Promoted"));
    let by = record.promoted_full_by.clone().unwrap_or_default();
    assert!(!by.is_empty() && by != "unknown", "promotedFullBy {by:?}");
    assert_eq!(promoted.annotations().get(PROMOTED_FULL_BY), Some(&by));
    let at = record.promoted_full_at.as_ref().expect("promotedFullAt").0;
    assert!(at >= jiff::Timestamp::from_second(before.as_second()).unwrap());
}

/// `spec.slotLabel` cannot change once the release exists: the API server refuses it and says
/// what to do.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn slot_label_change_is_refused_at_apply() {
    let ns = TestNamespace::new("ctl-slotlabel").await;
    ns.apply(&release("1", "", "  slotLabel: example.com/slot"));
    let changed = release("1", "", "  slotLabel: example.com/colour");
    let out = ns.kubectl(&["apply", "-f", "-"], Some(&changed));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a slotLabel change was accepted");
    assert!(said.contains("create a new release"), "{said}");
    let removed = release("1", "", "");
    let out = ns.kubectl(&["apply", "-f", "-"], Some(&removed));
    assert!(!out.status.success(), "removing slotLabel was accepted");
}

/// rollbackRequiresWindow: a revert to the revision that served before waits for the
/// maintenance window like any release, then flips.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn rollback_waits_for_the_window_when_required() {
    let mut ns = TestNamespace::new("ctl-rbwindow").await;
    let strategy = "scaleDownDelay: 1h, rollbackRequiresWindow: true";
    let gate = "  requiresMaintenanceWindow: {selector: {matchLabels: {window: release}}}";
    let r1 = first_release(&mut ns, strategy, gate).await;
    let start = from_now(1);
    ns.apply(&format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: release, labels: {{window: release}}}}\nspec:\n  start: \"{start}\"\n  end: \"{}\"\n",
        start + jiff::SignedDuration::from_mins(10)
    ));
    ns.apply(&release("2", strategy, gate));
    let served = wait(&ns, "second release Healthy in the window", |b| {
        healthy_after(b, &r1)
    })
    .await;
    let r2 = status(&served).active_revision.unwrap_or_default();
    ns.kubectl_ok(&["delete", "maintenancewindow", "release"]);
    ns.wait_gone::<MaintenanceWindow>("release", "window deleted")
        .await;
    // The revert: blue still runs r1 at full size, yet the flip waits for a window.
    ns.apply(&release("1", strategy, gate));
    let held = wait_awaiting(&ns, &r2, "WaitingForWindow").await;
    assert_eq!(status(&held).active_revision.as_deref(), Some(r2.as_str()));
    let start = from_now(1);
    ns.apply(&format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: again, labels: {{window: release}}}}\nspec:\n  start: \"{start}\"\n  end: \"{}\"\n",
        start + jiff::SignedDuration::from_mins(10)
    ));
    let back = wait(&ns, "rolled back in the window", |b| healthy_after(b, &r2)).await;
    assert_eq!(status(&back).active_revision.as_deref(), Some(r1.as_str()));
}

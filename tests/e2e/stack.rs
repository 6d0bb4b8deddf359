//! A BlueGreenRelease of a stack (`spec.components`): three components (interface,
//! orchestrator, agents), each with an active and a preview Service, released, validated and
//! switched as one. A sampler lists the Services every 50 ms across a promotion and a switch
//! back: Kubernetes has no multi-object write, so the switch is a sequence of PATCHes; every
//! sample must be all-blue, all-green, or a prefix of the switch order on the new slot, the
//! sequence never goes backwards, and no Service selects a slot without ready pods of its
//! component.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use runbook_operator::blue_green::BlueGreenRelease;

use crate::support::TestNamespace;

const RELEASE: &str = "legal";
const SLOT_KEY: &str = "deployment-slot";
const COMPONENTS: [&str; 3] = ["interface", "orchestrator", "agents"];

fn services() -> String {
    COMPONENTS
        .iter()
        .flat_map(|c| [c.to_string(), format!("{c}-preview")].map(move |name| (name, *c)))
        .map(|(name, app)| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{port: 80}}]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A job step whose pod succeeds, or fails when `fail` (hack/kwok/stages.yaml).
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

/// The stack at image tag `tag`; `hold` names a component whose pods never schedule.
fn release(tag: &str, strategy: &str, hold: Option<&str>) -> String {
    let components: Vec<String> = COMPONENTS
        .iter()
        .map(|c| {
            let gate = if hold == Some(*c) {
                "schedulingGates: [{name: e2e.runbook.dev/hold}], "
            } else {
                ""
            };
            format!(
                "  - name: {c}\n    replicas: 2\n    services: {{active: {c}, preview: {c}-preview}}\n    template:\n      metadata: {{labels: {{app: {c}}}}}\n      spec: {{{gate}containers: [{{name: {c}, image: \"registry.example.com/{c}:{tag}\"}}]}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BlueGreenRelease\nmetadata: {{name: {RELEASE}}}\nspec:\n  slotLabel: {SLOT_KEY}\n  strategy: {{{strategy}}}\n  components:\n{}",
        components.concat()
    )
}

fn phase(b: &BlueGreenRelease) -> String {
    b.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default()
}

fn history(b: &BlueGreenRelease) -> Vec<(String, String)> {
    b.status
        .iter()
        .flat_map(|s| s.history.iter())
        .map(|r| (r.revision.clone(), r.result.clone().unwrap_or_default()))
        .collect()
}

fn healthy_on(b: &BlueGreenRelease, revision: Option<&str>) -> bool {
    let s = b.status.clone().unwrap_or_default();
    phase(b) == "Healthy"
        && s.desired_revision == s.active_revision
        && revision.is_none_or(|r| s.active_revision.as_deref() != Some(r))
}

/// The active Services' slots, in declared order.
async fn slots(services: &Api<Service>) -> Vec<Option<String>> {
    let list = services
        .list(&Default::default())
        .await
        .expect("list Services");
    COMPONENTS
        .iter()
        .map(|c| {
            list.items
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(*c))
                .and_then(|s| s.spec.as_ref()?.selector.as_ref()?.get(SLOT_KEY).cloned())
        })
        .collect()
}

/// Ready replicas of each component's Deployment in each slot.
async fn ready(deployments: &Api<Deployment>, component: &str, slot: &str) -> i32 {
    deployments
        .get_opt(&format!("{RELEASE}-{component}-{slot}"))
        .await
        .ok()
        .flatten()
        .and_then(|d| d.status?.ready_replicas)
        .unwrap_or(0)
}

/// A sample: how many Services (a prefix of the declared order) select `to`, the rest `from`.
fn prefix_on(sample: &[Option<String>], from: &str, to: &str) -> Option<usize> {
    let on = sample
        .iter()
        .take_while(|s| s.as_deref() == Some(to))
        .count();
    sample[on..]
        .iter()
        .all(|s| s.as_deref() == Some(from))
        .then_some(on)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn a_stack_promotes_as_one_and_a_post_promotion_failure_switches_all_back() {
    let mut ns = TestNamespace::new("stack").await;
    ns.apply(&services());
    let strategy = |post_fails: bool| {
        format!(
            "scaleDownDelay: 5s, abortScaleDownDelay: 5s, previewReplicas: 1, prePromotion: [{}], postPromotion: [{}]",
            job_step("smoke", false),
            job_step("verify", post_fails)
        )
    };
    ns.apply(&release("1", &strategy(false), None));
    ns.start_operator();
    let first = ns
        .wait_for::<BlueGreenRelease>(RELEASE, "Healthy", |b| healthy_on(b, None))
        .await;
    let r1 = first.status.clone().unwrap().active_revision.unwrap();
    let services: Api<Service> = ns.api();
    let deployments: Api<Deployment> = ns.api();
    assert_eq!(slots(&services).await, vec![Some("blue".to_owned()); 3]);
    let status = first.status.clone().unwrap();
    assert_eq!(status.component_count, Some(3));
    assert!(
        status
            .components
            .iter()
            .all(|c| c.ready && c.active_slot.as_deref() == Some("blue"))
    );

    // Sample the Services every 50 ms through the promotion to green and the switch back.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (services, deployments, stop) = (services.clone(), deployments.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut empty = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let sample = slots(&services).await;
                for (index, (component, slot)) in COMPONENTS.iter().zip(&sample).enumerate() {
                    // An empty moment: the Service selects the slot before and after a read
                    // that finds no ready pod there (the reads are not one snapshot, so a
                    // Service that moved on in between proves nothing).
                    if let Some(slot) = slot
                        && ready(&deployments, component, slot).await == 0
                        && slots(&services).await[index].as_ref() == Some(slot)
                    {
                        empty.push(format!("{component} -> {slot}"));
                    }
                }
                samples.push(sample);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (samples, empty)
        })
    };
    // Release 2 (its postPromotion fails): validated at previewReplicas, scaled up, switched,
    // then switched back as a whole.
    ns.apply(&release("2", &strategy(true), None));
    let preview = ns
        .wait_for::<Deployment>(
            &format!("{RELEASE}-agents-green"),
            "at previewReplicas",
            |d| d.spec.as_ref().and_then(|s| s.replicas) == Some(1),
        )
        .await;
    assert!(preview.metadata.annotations.is_some());
    let back = ns
        .wait_for::<BlueGreenRelease>(RELEASE, "switched back", |b| {
            history(b)
                .first()
                .is_some_and(|(r, result)| r != &r1 && result == "RolledBack")
                && b.status.as_ref().is_some_and(|s| s.switched_at.is_some())
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    let (samples, empty) = sampler.await.expect("sampler");
    assert_eq!(phase(&back), "Degraded");
    assert_eq!(slots(&services).await, vec![Some("blue".to_owned()); 3]);
    assert!(
        empty.is_empty(),
        "Services selected slots without ready pods: {empty:?}"
    );
    // Every sample: a prefix of the order on green going up, then (switch back) down again.
    let mut mixed = 0;
    let mut last = 0usize;
    let mut rising = true;
    let mut saw_green = false;
    for sample in &samples {
        let on = prefix_on(sample, "blue", "green")
            .unwrap_or_else(|| panic!("not a prefix of the switch order: {sample:?}"));
        if on > 0 && on < 3 {
            mixed += 1;
        }
        saw_green |= on == 3;
        if rising && on < last {
            rising = false;
        }
        if !rising {
            assert!(
                on <= last,
                "went backwards during the switch back: {samples:?}"
            );
        }
        last = on;
    }
    assert!(saw_green, "the sampler never saw the whole stack on green");
    println!(
        "stack switch: {} samples, {mixed} mixed (a prefix of the switch order on the new slot)",
        samples.len()
    );
    // Green is scaled down after the abort; blue serves the previous revision.
    for c in COMPONENTS {
        ns.wait_for::<Deployment>(&format!("{RELEASE}-{c}-green"), "scaled to 0", |d| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(0)
        })
        .await;
        assert_eq!(ready(&deployments, c, "blue").await, 2);
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_component_that_never_becomes_available_aborts_the_whole_stack() {
    let mut ns = TestNamespace::new("stack-stuck").await;
    ns.apply(&services());
    let strategy = "progressDeadline: 5s, abortScaleDownDelay: 5s";
    ns.apply(&release("1", strategy, None));
    ns.start_operator();
    let first = ns
        .wait_for::<BlueGreenRelease>(RELEASE, "Healthy", |b| healthy_on(b, None))
        .await;
    let r1 = first.status.clone().unwrap().active_revision.unwrap();
    ns.apply(&release("2", strategy, Some("orchestrator")));
    let aborted = ns
        .wait_for::<BlueGreenRelease>(RELEASE, "aborted", |b| {
            history(b)
                .first()
                .is_some_and(|(r, result)| r != &r1 && result == "Aborted")
        })
        .await;
    assert_eq!(phase(&aborted), "Degraded");
    let services: Api<Service> = ns.api();
    assert_eq!(
        slots(&services).await,
        vec![Some("blue".to_owned()); 3],
        "nothing switched"
    );
    assert_eq!(
        aborted.status.unwrap().active_revision.as_deref(),
        Some(r1.as_str())
    );
}

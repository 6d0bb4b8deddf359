//! Runbooks that decide: typed parameters, outputs carried from one step to a later one, a
//! step's `when`, and what Plan mode shows of each condition.

use k8s_openapi::api::apps::v1::Deployment;
use runbook_operator::runbook_run::StepPhase;

use crate::steps::{assert_run, assert_step, finished, run, runbook, simple_deployment};
use crate::support::{TestNamespace, output};

const RECOVER: &str = r#"  params:
  - {name: replicas, type: integer, default: 5, min: 1, max: 10}
  - {name: rebuild, type: boolean, default: "false"}
  steps:
  - {name: scale-down, scale: {target: {kind: Deployment, name: app}, replicas: 0}}
  - name: full-rebuild
    when: params.rebuild
    scale: {target: {kind: Deployment, name: app}, replicas: "{{ params.replicas }}"}
  - name: scale-back
    when: "int(steps['scale-down'].outputs.previousReplicas) > 0"
    scale: {target: {kind: Deployment, name: app}, replicas: "{{ steps.scale-down.outputs.previousReplicas }}"}"#;

async fn replicas(ns: &TestNamespace) -> Option<i32> {
    let app = ns.api::<Deployment>().get("app").await.expect("app");
    app.spec.and_then(|s| s.replicas)
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn outputs_carry_forward_when_branches_and_typed_params_are_checked() {
    let mut ns = TestNamespace::new("decide").await;
    ns.apply(&simple_deployment("app", 3));
    ns.apply(&runbook("recover", RECOVER));
    ns.start_operator();

    ns.apply(&run("recover-1", "recover", ""));
    let r = finished(&ns, "recover-1").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let skipped = assert_step(&r, "full-rebuild", StepPhase::Skipped);
    assert_eq!(
        skipped.reason.as_deref(),
        Some("ConditionFalse"),
        "{skipped:#?}"
    );
    assert_eq!(skipped.condition.as_deref(), Some("params.rebuild = false"));
    let back = assert_step(&r, "scale-back", StepPhase::Succeeded);
    assert_eq!(output(&back, "previousReplicas"), "0", "{back:#?}");
    assert_eq!(
        output(&back, "replicas"),
        "3",
        "the count scale-down recorded: {back:#?}"
    );
    assert!(
        back.condition
            .as_deref()
            .is_some_and(|c| c.ends_with("= true")),
        "{back:#?}"
    );
    assert_eq!(replicas(&ns).await, Some(3));

    // The other branch: the boolean and the integer parameter come from the run.
    ns.apply(&run(
        "recover-2",
        "recover",
        "  params: {rebuild: \"true\", replicas: \"6\"}",
    ));
    let r = finished(&ns, "recover-2").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let rebuilt = assert_step(&r, "full-rebuild", StepPhase::Succeeded);
    assert_eq!(output(&rebuilt, "replicas"), "6", "{rebuilt:#?}");
    let back = assert_step(&r, "scale-back", StepPhase::Succeeded);
    assert_eq!(output(&back, "previousReplicas"), "6", "{back:#?}");
    assert_eq!(output(&back, "replicas"), "3", "{back:#?}");
    assert_eq!(replicas(&ns).await, Some(3));

    // A value of the wrong type never reaches a step.
    ns.apply(&run(
        "recover-3",
        "recover",
        "  params: {replicas: \"eleven\"}",
    ));
    let r = finished(&ns, "recover-3").await;
    assert_run(&r, "Failed", "InvalidSpec");
    let message =
        crate::support::condition(&r.status.as_ref().expect("status").conditions, "Succeeded")
            .map(|c| c.message.clone())
            .unwrap_or_default();
    assert!(
        message.contains("spec.params.replicas") && message.contains("not an integer"),
        "{message}"
    );
    assert!(
        r.status.as_ref().is_some_and(|s| s.steps.is_empty()),
        "{r:#?}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn plan_mode_shows_each_condition_and_what_it_could_not_know() {
    let mut ns = TestNamespace::new("plan-when").await;
    ns.apply(&simple_deployment("app", 3));
    ns.apply(&runbook(
        "check",
        r#"  params:
  - {name: env, enum: [staging, production], default: staging}
  steps:
  - {name: probe, http: {url: "http://app:8080/health"}}
  - {name: prod-only, when: "params.env == 'production'", scale: {target: {kind: Deployment, name: app}, replicas: 4}}
  - {name: staging-only, when: "params.env == 'staging'", scale: {target: {kind: Deployment, name: app}, replicas: 2}}
  - {name: if-healthy, when: "steps.probe.outputs.httpStatus == '200'", scale: {target: {kind: Deployment, name: app}, replicas: 5}}"#,
    ));
    ns.start_operator();
    ns.apply(&run("check-plan", "check", "  mode: Plan"));
    let r = finished(&ns, "check-plan").await;
    assert_run(&r, "Succeeded", "Succeeded");
    let probe = assert_step(&r, "probe", StepPhase::Skipped);
    assert_eq!(probe.reason.as_deref(), Some("Plan"), "{probe:#?}");
    let prod = assert_step(&r, "prod-only", StepPhase::Skipped);
    assert_eq!(
        prod.condition.as_deref(),
        Some("params.env == 'production' = false")
    );
    assert_eq!(prod.reason.as_deref(), Some("ConditionFalse"));
    let staging = assert_step(&r, "staging-only", StepPhase::Succeeded);
    assert_eq!(
        staging.condition.as_deref(),
        Some("params.env == 'staging' = true")
    );
    let healthy = assert_step(&r, "if-healthy", StepPhase::Succeeded);
    let condition = healthy.condition.as_deref().unwrap_or_default();
    assert!(
        condition.contains("unknown in Plan mode") && condition.contains("planned as if true"),
        "{healthy:#?}"
    );
    // Plan mode changed nothing.
    assert_eq!(replicas(&ns).await, Some(3));
}

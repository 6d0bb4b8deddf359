use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::runbook_run::types::{ResolvedParam, StepStatus};

fn step(value: serde_json::Value) -> Step {
    serde_json::from_value(value).expect("step")
}

fn entry(name: &str, phase: StepPhase, outputs: &[(&str, &str)]) -> StepStatus {
    StepStatus {
        name: name.into(),
        phase,
        attempts: 1,
        start_time: None,
        completion_time: None,
        message: None,
        reason: None,
        condition: None,
        target: None,
        outputs: outputs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn status(main: Vec<Step>, finally: Vec<Step>, journal: Vec<StepStatus>) -> RunbookRunStatus {
    RunbookRunStatus {
        resolved_steps: main,
        resolved_finally: finally,
        resolved_params: vec![
            ResolvedParam {
                name: "replicas".into(),
                type_: ParamType::Integer,
                value: "4".into(),
            },
            ResolvedParam {
                name: "dryRun".into(),
                type_: ParamType::Boolean,
                value: "false".into(),
            },
        ],
        steps: journal,
        ..Default::default()
    }
}

const RUN: RunView<'static> = RunView {
    name: "fix-1",
    namespace: "shop",
    mode: RunMode::Run,
};

#[test]
fn branches_both_ways_on_an_earlier_output() {
    let check = step(json!({"name": "check", "job": {"fromCronJob": "c"}}));
    let heal = step(
        json!({"name": "heal", "when": "steps.check.outputs.healthy == 'false' && params.replicas > 3 && !params.dryRun", "sleep": {"duration": "1s"}}),
    );
    for (healthy, expected) in [("false", true), ("true", false)] {
        let s = status(
            vec![check.clone(), heal.clone()],
            vec![],
            vec![
                entry(
                    "check",
                    StepPhase::Succeeded,
                    &[("healthy", healthy), ("attemptStartedAt", "x")],
                ),
                entry("heal", StepPhase::Pending, &[]),
            ],
        );
        let gate = gate(&heal, &s, 1, &RUN);
        match (expected, gate) {
            (true, Gate::Run { condition: Some(c) }) => assert!(c.ends_with("= true"), "{c}"),
            (false, Gate::Skip { condition }) => {
                assert!(condition.ends_with("= false"), "{condition}")
            }
            (_, other) => panic!("healthy={healthy}: {other:?}"),
        }
    }
}

#[test]
fn finally_reads_main_steps_and_whether_the_run_failed() {
    let verify = step(json!({"name": "verify", "http": {"url": "http://app/health"}}));
    let undo = step(
        json!({"name": "undo", "when": "run.failed && steps.verify.phase == 'Failed'", "rollback": {"target": {"kind": "Deployment", "name": "app"}}}),
    );
    let s = status(
        vec![verify.clone()],
        vec![undo.clone()],
        vec![
            entry("verify", StepPhase::Failed, &[("reason", "HttpStatus")]),
            entry("undo", StepPhase::Pending, &[]),
        ],
    );
    assert!(matches!(gate(&undo, &s, 1, &RUN), Gate::Run { .. }));
    let vars = variables(&s, 1, &RUN);
    assert_eq!(
        vars["steps"]["verify"]["outputs"],
        json!({}),
        "bookkeeping is not an output"
    );
    assert_eq!(vars["run"]["failed"], json!(true));
    let ok = status(
        vec![verify],
        vec![undo.clone()],
        vec![
            entry("verify", StepPhase::Succeeded, &[]),
            entry("undo", StepPhase::Pending, &[]),
        ],
    );
    assert!(matches!(gate(&undo, &ok, 1, &RUN), Gate::Skip { .. }));
}

#[test]
fn an_expression_that_cannot_be_evaluated_fails_in_a_run_and_is_planned_in_plan_mode() {
    let check = step(json!({"name": "check", "http": {"url": "http://app/health"}}));
    let next = step(
        json!({"name": "next", "when": "steps.check.outputs.code == '200'", "sleep": {"duration": "1s"}}),
    );
    let s = status(
        vec![check, next.clone()],
        vec![],
        vec![
            entry("check", StepPhase::Skipped, &[]),
            entry("next", StepPhase::Pending, &[]),
        ],
    );
    match gate(&next, &s, 1, &RUN) {
        Gate::Invalid { message } => assert!(message.starts_with("when: "), "{message}"),
        other => panic!("{other:?}"),
    }
    let plan = RunView {
        mode: RunMode::Plan,
        ..RUN
    };
    match gate(&next, &s, 1, &plan) {
        Gate::Run { condition: Some(c) } => assert!(c.contains("unknown in Plan mode"), "{c}"),
        other => panic!("{other:?}"),
    }
    let wrong_type =
        step(json!({"name": "next", "when": "params.replicas", "sleep": {"duration": "1s"}}));
    assert!(matches!(
        gate(&wrong_type, &s, 1, &RUN),
        Gate::Invalid { .. }
    ));
}

#[test]
fn outputs_are_substituted_typed_and_missing_ones_are_named() {
    let down = step(
        json!({"name": "scale-down", "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": 0}}),
    );
    let back = step(
        json!({"name": "scale-back", "scale": {"target": {"kind": "Deployment", "name": "app"},
        "replicas": "{{ steps.scale-down.outputs.previousReplicas }}"}}),
    );
    let s = status(
        vec![down.clone(), back.clone()],
        vec![],
        vec![
            entry(
                "scale-down",
                StepPhase::Succeeded,
                &[("previousReplicas", "3")],
            ),
            entry("scale-back", StepPhase::Running, &[]),
        ],
    );
    let expanded = expand(&back, &s, 1, "spec.steps[1]").unwrap();
    assert_eq!(expanded.scale.unwrap().replicas.unwrap().value(0), Ok(3));
    let skipped = status(
        vec![down.clone(), back.clone()],
        vec![],
        vec![
            entry("scale-down", StepPhase::Skipped, &[]),
            entry("scale-back", StepPhase::Running, &[]),
        ],
    );
    let err = expand(&back, &skipped, 1, "spec.steps[1]").unwrap_err();
    assert!(err.contains("spec.steps[1].scale.replicas"), "{err}");
    assert!(err.contains("was Skipped"), "{err}");
    let garbage = status(
        vec![down, back.clone()],
        vec![],
        vec![
            entry(
                "scale-down",
                StepPhase::Succeeded,
                &[("previousReplicas", "lots")],
            ),
            entry("scale-back", StepPhase::Running, &[]),
        ],
    );
    let err = expand(&back, &garbage, 1, "spec.steps[1]").unwrap_err();
    assert!(err.contains("not an integer"), "{err}");
    let unchanged = step(json!({"name": "nap", "sleep": {"duration": "1s"}}));
    assert_eq!(
        expand(&unchanged, &s, 1, "spec.steps[1]").unwrap(),
        unchanged
    );
}

#[test]
fn a_huge_output_is_substituted_but_the_step_is_checked() {
    let big = "x".repeat(40_000);
    let get = step(json!({"name": "get", "http": {"url": "http://app/v"}}));
    let call =
        step(json!({"name": "call", "http": {"url": "http://app/{{ steps.get.outputs.v }}"}}));
    let s = status(
        vec![get, call.clone()],
        vec![],
        vec![
            entry("get", StepPhase::Succeeded, &[("v", &big)]),
            entry("call", StepPhase::Running, &[]),
        ],
    );
    let err = expand(&call, &s, 1, "spec.steps[1]").unwrap_err();
    assert!(err.contains("http.url"), "{}", &err[..200.min(err.len())]);
}

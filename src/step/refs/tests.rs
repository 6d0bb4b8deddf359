use serde_json::json;

use super::*;

fn steps(value: serde_json::Value) -> Vec<Step> {
    serde_json::from_value(value).expect("steps")
}

#[test]
fn earlier_steps_and_their_known_outputs_may_be_read() {
    let main = steps(json!([
        {"name": "scale-down", "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": 0}},
        {"name": "check", "job": {"fromCronJob": "check"}},
        {"name": "scale-back", "scale": {"target": {"kind": "Deployment", "name": "app"},
            "replicas": "{{ steps.scale-down.outputs.previousReplicas }}"}},
        {"name": "note", "notify": {"url": "http://hook", "message": "{{ steps.check.outputs.anything }} {{ steps.check.phase }}"}}
    ]));
    let finally = steps(json!([
        {"name": "undo", "when": "steps['check'].phase == 'Failed'",
         "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": "{{ steps.scale-down.outputs.previousReplicas }}"}}
    ]));
    assert_eq!(
        problems(&[("spec.steps", &main), ("spec.finally", &finally)]),
        []
    );
}

#[test]
fn later_own_unknown_steps_and_unknown_keys_are_named() {
    let main = steps(json!([
        {"name": "a", "scale": {"target": {"kind": "Deployment", "name": "{{ steps.b.outputs.x }}"}, "replicas": 1}},
        {"name": "b", "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": "{{ steps.b.outputs.replicas }}"}},
        {"name": "c", "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": "{{ steps.a.outputs.previous }}"}},
        {"name": "d", "sleep": {"duration": "{{ steps.zz.phase }}"}},
        {"name": "e", "sleep": {"duration": "{{ steps.a.output.replicas }}"}},
        {"name": "e2", "notify": {"url": "http://hook", "message": "{{ dedupKey }}"}},
        {"name": "f", "when": "steps.a.phase ==", "sleep": {"duration": "1s"}}
    ]));
    let found = problems(&[("spec.steps", &main)]);
    let fields: Vec<_> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.steps[0].scale.target.name",
            "spec.steps[1].scale.replicas",
            "spec.steps[2].scale.replicas",
            "spec.steps[3].sleep.duration",
            "spec.steps[4].sleep.duration",
            "spec.steps[6].when",
        ]
    );
    assert!(
        found[0].message.contains("does not run before"),
        "{}",
        found[0].message
    );
    assert!(
        found[1].message.contains("its own outputs"),
        "{}",
        found[1].message
    );
    assert!(
        found[2].message.contains("previousReplicas"),
        "{}",
        found[2].message
    );
    assert!(
        found[3].message.contains("no step has that name"),
        "{}",
        found[3].message
    );
    assert!(
        found[4].message.contains("not a reference"),
        "{}",
        found[4].message
    );
}

#[test]
fn a_list_that_is_not_finally_does_not_see_the_list_before_it() {
    let pre = steps(
        json!([{"name": "a", "scale": {"target": {"kind": "Deployment", "name": "x"}, "replicas": 1}}]),
    );
    let post = steps(json!([{"name": "b", "sleep": {"duration": "{{ steps.a.phase }}"}}]));
    let found = problems(&[
        ("spec.strategy.prePromotion", &pre),
        ("spec.strategy.postPromotion", &post),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].field,
        "spec.strategy.postPromotion[0].sleep.duration"
    );
}

#[test]
fn a_when_must_parse_and_read_only_params_steps_and_run() {
    let main = steps(json!([
        {"name": "a", "when": "{{ params.x }} == 'y'", "sleep": {"duration": "1s"}},
        {"name": "b", "when": "alert.labels.x == 'y'", "sleep": {"duration": "1s"}},
        {"name": "c", "when": "run.failed || params.x > 3 || steps.a.phase == 'Skipped'", "sleep": {"duration": "1s"}}
    ]));
    let found = problems(&[("spec.steps", &main)]);
    let fields: Vec<_> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["spec.steps[0].when", "spec.steps[1].when"]);
    assert!(
        found[0].message.contains("not a template"),
        "{}",
        found[0].message
    );
    assert!(found[1].message.contains("alert"), "{}", found[1].message);
}

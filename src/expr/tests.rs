use serde_json::json;

use super::*;

#[test]
fn compares_numbers_strings_and_nested_maps() {
    let vars = json!({
        "params": {"replicas": 4, "dryRun": false, "env": "prod"},
        "steps": {"verify": {"phase": "Failed", "outputs": {"code": "503"}}},
        "result": 0.07
    });
    assert_eq!(evaluate_bool("params.replicas > 3", &vars), Ok(true));
    assert_eq!(
        evaluate_bool("steps.verify.phase == 'Failed'", &vars),
        Ok(true)
    );
    assert_eq!(
        evaluate_bool("int(steps['verify'].outputs.code) >= 500", &vars),
        Ok(true)
    );
    assert_eq!(evaluate_bool("result < 0.05", &vars), Ok(false));
    assert_eq!(
        evaluate_bool("!params.dryRun && params.env == 'prod'", &vars),
        Ok(true)
    );
}

#[test]
fn a_missing_key_or_a_wrong_type_is_an_error_that_names_the_expression() {
    let vars = json!({"steps": {"verify": {"outputs": {}}}});
    let err = evaluate_bool("steps.verify.outputs.code == '1'", &vars).unwrap_err();
    assert!(matches!(err, ExprError::Evaluate { .. }), "{err:?}");
    assert!(
        err.to_string().contains("steps.verify.outputs.code"),
        "{err}"
    );
    let err = evaluate_bool("1 + 1", &vars).unwrap_err();
    assert!(matches!(err, ExprError::WrongType { .. }), "{err:?}");
    let err = evaluate_bool("'a' < 1", &vars).unwrap_err();
    assert!(matches!(err, ExprError::Evaluate { .. }), "{err:?}");
}

#[test]
fn syntax_errors_long_and_deep_expressions_are_refused() {
    assert!(matches!(
        Expression::compile("a &&"),
        Err(ExprError::Parse { .. })
    ));
    let long = "a".repeat(MAX_EXPRESSION + 1);
    assert_eq!(
        Expression::compile(&long).unwrap_err(),
        ExprError::TooLong {
            len: MAX_EXPRESSION + 1
        }
    );
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert!(matches!(
        Expression::compile(&deep),
        Err(ExprError::Parse { .. })
    ));
}

#[test]
fn lists_variables_and_keeps_values_as_json() {
    let e = Expression::compile("steps.a.phase == 'Succeeded' && params.x > 1").unwrap();
    assert_eq!(e.variables(), ["params", "steps"]);
    let value = Expression::compile("[1, 'two', {'k': true}]")
        .unwrap()
        .evaluate(&json!({}))
        .unwrap();
    assert_eq!(value, json!([1, "two", {"k": true}]));
}

#[test]
fn huge_values_and_huge_numbers_do_not_panic() {
    let big: Vec<u64> = (0..10_000).collect();
    let vars = json!({"result": big, "n": u64::MAX});
    assert_eq!(evaluate_bool("size(result) == 10000", &vars), Ok(true));
    assert!(evaluate_bool("n + 1 > 0", &vars).is_err());
    assert!(evaluate_bool("9223372036854775807 + 1 > 0", &vars).is_err());
}

#[test]
fn long_operator_chains_within_the_length_cap_evaluate() {
    for text in [
        vec!["1"; 1000].join("+") + " > 0",
        "!".repeat(2000) + "true",
        "-".repeat(2000) + "1 < 2",
        format!("x{} == 1", ".a".repeat(1000)),
        vec!["true"; 400].join(" && "),
        vec!["x.a"; 500].join(" || "),
    ] {
        let text = &text[..text.len().min(MAX_EXPRESSION)];
        let _ = evaluate_bool(text, &json!({"x": {"a": true}}));
    }
}

use std::collections::BTreeMap;

use super::*;

fn one(message: &str) -> Parsed {
    parse(&[("task".to_owned(), message.to_owned())])
}

fn pairs(parsed: &Parsed) -> Vec<(&str, &str)> {
    parsed
        .outputs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn key_value_lines_skip_blanks_and_comments() {
    let p = one("# written by check.sh\nhealthy=true\n\n  lag = 3 \nurl=http://x/?a=b\r\n");
    assert_eq!(
        pairs(&p),
        [("healthy", "true"), ("lag", "3"), ("url", "http://x/?a=b")]
    );
    assert!(p.notes.is_empty(), "{p:?}");
    assert_eq!(p.summary(), None);
}

#[test]
fn an_empty_value_is_a_value() {
    assert_eq!(pairs(&one("note=")), [("note", "")]);
}

#[test]
fn a_json_object_of_scalars() {
    let p = one(r#" {"healthy": true, "lag": 3, "ratio": 0.5, "who": "db-0"} "#);
    assert_eq!(
        pairs(&p),
        [
            ("healthy", "true"),
            ("lag", "3"),
            ("ratio", "0.5"),
            ("who", "db-0")
        ]
    );
}

#[test]
fn json_values_that_are_not_scalars_are_noted() {
    let p = one(r#"{"ok": "yes", "list": [1], "nested": {"a": 1}, "none": null}"#);
    assert_eq!(pairs(&p), [("ok", "yes")]);
    assert_eq!(p.notes.len(), 3, "{p:?}");
    assert!(p.notes.iter().any(|n| n.contains("\"list\"")), "{p:?}");
}

#[test]
fn a_broken_json_object_records_nothing_and_says_so() {
    for text in ["{\"a\": 1", "{not json}", "[1, 2]"] {
        let p = one(text);
        assert!(
            p.outputs.is_empty() || text.starts_with('['),
            "{text}: {p:?}"
        );
    }
    let p = one("{\"a\": 1");
    assert!(p.notes[0].contains("not one JSON object"), "{p:?}");
}

#[test]
fn text_that_is_not_key_value_is_noted_with_its_line() {
    let p = one("ok=1\ndisk full on /data\n");
    assert_eq!(pairs(&p), [("ok", "1")]);
    assert!(
        p.notes[0].contains("line 2") && p.notes[0].contains("disk full"),
        "{p:?}"
    );
}

#[test]
fn invalid_keys_are_refused() {
    let long = "k".repeat(64);
    let p = one(&format!(
        "1st=x\nwith-dash=x\nwith.dot=x\n{long}=x\n=x\n_ok=y\n{}=z",
        "k".repeat(63)
    ));
    assert_eq!(pairs(&p), [("_ok", "y"), (&*"k".repeat(63), "z")]);
    assert_eq!(p.notes.len(), 5, "{p:?}");
}

#[test]
fn the_journals_own_keys_are_refused() {
    let p = one(
        "jobName=other-job\nattemptStartedAt=2020-01-01T00:00:00Z\nretryAt=x\nsent=no\nreason=x\nhealthy=true",
    );
    assert_eq!(pairs(&p), [("healthy", "true")]);
    assert_eq!(p.notes.len(), 5, "{p:?}");
    assert!(
        p.notes[0].contains("jobName") && p.notes[0].contains("journal"),
        "{p:?}"
    );
    for key in ["approvalRequestedAt", "approvalRefused", "previousReplicas"] {
        assert!(reserved(key), "{key}");
        assert!(valid_key(key), "{key}");
    }
}

#[test]
fn containers_merge_in_order_and_the_first_value_wins() {
    let p = parse(&[
        ("main".to_owned(), "a=1\nb=2".to_owned()),
        ("sidecar".to_owned(), "b=2\nc=3\na=9".to_owned()),
    ]);
    assert_eq!(pairs(&p), [("a", "1"), ("b", "2"), ("c", "3")]);
    // The same value twice is no conflict; a different one is.
    assert_eq!(p.notes.len(), 1, "{p:?}");
    assert!(
        p.notes[0].contains("sidecar")
            && p.notes[0].contains("key a")
            && p.notes[0].contains("\"1\""),
        "{p:?}"
    );
}

#[test]
fn at_most_32_keys() {
    let text: String = (0..40).map(|i| format!("k{i}=v\n")).collect();
    let p = one(&text);
    assert_eq!(p.outputs.len(), MAX_KEYS);
    assert_eq!(p.notes.len(), 8);
    let summary = p.summary().expect("notes");
    assert!(summary.ends_with("and 3 more"), "{summary}");
    assert!(summary.contains("at most 32 outputs"), "{summary}");
}

#[test]
fn values_are_cut_on_a_character_boundary() {
    let value = "é".repeat(600); // 1200 bytes
    let p = one(&format!("v={value}"));
    let got = &p.outputs[0].1;
    assert!(
        got.len() <= MAX_VALUE && got.len() >= MAX_VALUE - 1,
        "{}",
        got.len()
    );
    assert!(value.starts_with(got.as_str()));
    assert!(p.notes[0].contains("cut to 1024"), "{p:?}");
}

#[test]
fn a_huge_message_is_read_up_to_4096_bytes() {
    let text = format!("a=1\n{}\nb=2", "#".repeat(1 << 20));
    let p = one(&text);
    assert_eq!(pairs(&p), [("a", "1")]);
    assert!(p.notes[0].contains("4096"), "{p:?}");
}

#[test]
fn recording_replaces_an_earlier_attempts_outputs_and_keeps_bookkeeping() {
    let mut outputs = BTreeMap::from([
        ("jobName".to_owned(), "run-check-2".to_owned()),
        ("attemptStartedAt".to_owned(), "t".to_owned()),
        ("healthy".to_owned(), "false".to_owned()),
        ("stale".to_owned(), "x".to_owned()),
    ]);
    record(&mut outputs, &one("healthy=true"));
    assert_eq!(
        outputs,
        BTreeMap::from([
            ("jobName".to_owned(), "run-check-2".to_owned()),
            ("attemptStartedAt".to_owned(), "t".to_owned()),
            ("healthy".to_owned(), "true".to_owned()),
        ])
    );
}

#[test]
fn a_runbook_may_not_name_an_http_output_after_the_journals_own() {
    let step: crate::step::Step = serde_json::from_value(serde_json::json!({
        "name": "get",
        "http": {"url": "http://app/v", "outputs": {"version": "{.version}", "httpStatus": "{.code}", "body": ".b"}},
    }))
    .expect("step");
    let problems = crate::step::validate_steps(&[step], "spec.steps");
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.steps[0].http.outputs.body",
            "spec.steps[0].http.outputs.httpStatus"
        ],
        "{problems:?}"
    );
    assert!(problems[0].message.contains("choose another name"));
}

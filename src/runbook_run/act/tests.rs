use super::secret::random_token;
use super::*;

#[test]
fn job_names_are_deterministic_and_short() {
    assert_eq!(job_name("db-fix-7", "kill-idle", 1), "db-fix-7-kill-idle-1");
    let long = job_name(&"r".repeat(50), &"s".repeat(40), 2);
    assert!(long.len() <= 63, "{long}");
    assert_eq!(long, job_name(&"r".repeat(50), &"s".repeat(40), 2));
    assert_ne!(long, job_name(&"r".repeat(50), &"s".repeat(40), 3));
}

#[test]
fn excerpts_are_capped_on_a_char_boundary() {
    let body = "é".repeat(2000);
    let cut = excerpt(&body);
    assert!(cut.len() <= EXCERPT_LIMIT + '…'.len_utf8());
    assert!(cut.ends_with('…'));
    assert_eq!(excerpt("ok"), "ok");
}

#[test]
fn json_paths_read_simple_values() {
    let body = r#"{"status":"ok","checks":[{"name":"db","up":true}]}"#;
    assert_eq!(json_path_value(body, "{.status}").as_deref(), Some("ok"));
    assert_eq!(
        json_path_value(body, ".checks[0].up").as_deref(),
        Some("true")
    );
    assert_eq!(json_path_value(body, "missing"), None);
}

#[test]
fn random_tokens_have_the_asked_length() {
    let a = random_token(32);
    assert_eq!(a.len(), 32);
    assert_ne!(a, random_token(32));
}

#[test]
fn only_conflicts_and_throttling_among_4xx_are_worth_asking_again() {
    for code in [400, 403, 404, 405, 410, 413, 422] {
        assert!(permanent(code), "{code}");
    }
    for code in [409, 429, 500, 503, 200, 302] {
        assert!(!permanent(code), "{code}");
    }
    let status = kube::core::Status {
        code: 422,
        message: "spec.replicas: Invalid value".into(),
        ..Default::default()
    };
    let err = kube::Error::Api(Box::new(status));
    let Some(Act::Failed { reason, .. }) = refusal(&err, "Deployment/web", "shop") else {
        panic!("422 is a step failure");
    };
    assert_eq!(reason, "Invalid");
}

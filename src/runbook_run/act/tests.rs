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

mod requests {
    use super::super::http::{Move, next_move, read_capped};
    use crate::outbound::{Progress, Reply, Verdict};

    fn reply() -> Reply {
        Reply {
            outputs: vec![],
            verdict: Verdict::Succeeded("answered 200".into()),
        }
    }

    #[test]
    fn an_attempt_is_recorded_before_it_is_sent() {
        assert_eq!(next_move(false, None, false), Move::Record);
        assert_eq!(next_move(false, None, true), Move::Record);
        assert_eq!(next_move(true, None, true), Move::Send);
    }

    #[test]
    fn a_sent_attempt_the_pool_does_not_know_was_interrupted() {
        // After a restart the journal says sent and the new process has no request: whether
        // it reached the endpoint is unknown, and it is never sent again.
        assert_eq!(next_move(true, None, false), Move::Interrupted);
    }

    #[test]
    fn a_pending_request_is_waited_for_and_its_reply_collected() {
        assert_eq!(
            next_move(true, Some(Progress::InFlight), false),
            Move::Wait(Progress::InFlight)
        );
        let queued = Progress::Queued {
            namespace: true,
            in_flight: 8,
        };
        assert_eq!(
            next_move(true, Some(queued.clone()), true),
            Move::Wait(queued)
        );
        assert_eq!(
            next_move(true, Some(Progress::Done(reply())), false),
            Move::Collect(reply())
        );
    }

    /// Serves one response whose body never ends, in 64 KiB chunks.
    async fn endless_server() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            while socket.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn an_endless_body_is_read_up_to_the_cap_only() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = endless_server().await;
        let response = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .expect("response");
        // Returning at all shows the rest of the body is left unread.
        let (body, truncated) = read_capped(response, 1000).await;
        assert!(truncated);
        assert_eq!(body.len(), 1000);
    }
}

fn wanted(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn failure(verdict: crate::outbound::Verdict) -> (&'static str, String) {
    match verdict {
        crate::outbound::Verdict::Failed {
            reason, message, ..
        } => (reason, message),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn http_outputs_capture_values_by_json_path() {
    let body = r#"{"version":"1.4.2","build":{"number":7,"ok":true},"tags":["a","b"]}"#;
    let got = http::capture(
        &wanted(&[
            ("version", "{.version}"),
            ("build", ".build.number"),
            ("ok", "build.ok"),
            ("tag", "{.tags[1]}"),
        ]),
        body,
        "GET http://app/v",
        "",
    )
    .expect("captured");
    assert_eq!(
        got,
        [
            ("build".to_owned(), "7".to_owned()),
            ("ok".to_owned(), "true".to_owned()),
            ("tag".to_owned(), "b".to_owned()),
            ("version".to_owned(), "1.4.2".to_owned()),
        ]
    );
    let long = format!(r#"{{"v":"{}"}}"#, "x".repeat(5000));
    let got = http::capture(&wanted(&[("v", "{.v}")]), &long, "GET u", "").expect("captured");
    assert_eq!(got[0].1.len(), 1024);
}

#[test]
fn http_outputs_fail_on_a_missing_path_or_a_body_that_is_not_json() {
    let (reason, message) = failure(
        http::capture(
            &wanted(&[("version", "{.version}"), ("zone", "{.meta.zone}")]),
            r#"{"version":"1"}"#,
            "GET http://app/v",
            "",
        )
        .unwrap_err(),
    );
    assert_eq!(reason, "OutputMissing");
    assert!(
        message.contains("http.outputs.zone") && message.contains("{.meta.zone}"),
        "{message}"
    );
    let (reason, message) = failure(
        http::capture(
            &wanted(&[("version", "{.version}")]),
            "<html>ok</html>",
            "GET http://app/v",
            "",
        )
        .unwrap_err(),
    );
    assert_eq!(reason, "OutputMissing");
    assert!(
        message.contains("not JSON") && message.contains("version"),
        "{message}"
    );
    let (reason, _) =
        failure(http::capture(&wanted(&[("httpStatus", ".a")]), "{}", "GET u", "").unwrap_err());
    assert_eq!(reason, "InvalidSpec");
}

fn pod(name: &str, owner: &str, phase: &str, created: i64, containers: &[(&str, &str)]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "creationTimestamp": jiff::Timestamp::from_second(created).expect("time").to_string(),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": owner}],
        },
        "spec": {"containers": containers.iter().map(|(n, _)| serde_json::json!({"name": n})).collect::<Vec<_>>()},
        "status": {
            "phase": phase,
            // Statuses in another order than the spec: the spec's order counts.
            "containerStatuses": containers.iter().rev().map(|(n, m)| serde_json::json!({
                "name": n, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": m}},
            })).collect::<Vec<_>>(),
        },
    }))
    .expect("pod")
}

use k8s_openapi::api::core::v1::Pod;

#[test]
fn termination_messages_come_from_the_jobs_own_finished_pods_in_container_order() {
    let pods = vec![
        pod("b", "uid-1", "Succeeded", 20, &[("main", "a=2")]),
        pod(
            "a",
            "uid-1",
            "Succeeded",
            10,
            &[("main", "a=1"), ("side", "s=1")],
        ),
        pod("old", "uid-0", "Succeeded", 5, &[("main", "a=0")]),
        pod("f", "uid-1", "Failed", 1, &[("main", "err=x")]),
        pod("empty", "uid-1", "Succeeded", 30, &[("main", "  ")]),
    ];
    let got = super::job::termination_messages(Some("uid-1"), pods.clone(), true);
    let want = [("main", "a=1"), ("side", "s=1"), ("main", "a=2")];
    assert_eq!(
        got,
        want.map(|(c, m)| (c.to_owned(), m.to_owned())).to_vec()
    );
    let mut failed = pods;
    failed.push(pod("g", "uid-1", "Failed", 2, &[("main", "err=y")]));
    let got = super::job::termination_messages(Some("uid-1"), failed, false);
    assert_eq!(got, [("main".to_owned(), "err=y".to_owned())]);
}

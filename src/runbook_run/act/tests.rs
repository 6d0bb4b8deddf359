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

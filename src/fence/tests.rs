use super::*;

fn addr(text: &str) -> SocketAddr {
    match text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => SocketAddr::new(text.parse().expect("an address"), 0),
    }
}

fn refused(text: &str, policy: &EgressPolicy) -> Option<Rule> {
    is_refused(addr(text), policy)
}

#[test]
fn metadata_and_link_local_are_always_refused() {
    let open = EgressPolicy {
        allow_loopback: true,
        ..Default::default()
    };
    for metadata in ["169.254.169.254", "fd00:ec2::254", "100.100.100.200"] {
        assert_eq!(
            refused(metadata, &open),
            Some(Rule::CloudMetadata),
            "{metadata}"
        );
    }
    // An IPv4-mapped IPv6 address is the IPv4 address it carries.
    assert_eq!(
        refused("::ffff:169.254.169.254", &open),
        Some(Rule::CloudMetadata)
    );
    for link_local in ["169.254.0.1", "169.254.255.255", "fe80::1", "febf::1"] {
        assert_eq!(
            refused(link_local, &open),
            Some(Rule::LinkLocal),
            "{link_local}"
        );
    }
    for fine in [
        "169.255.0.1",
        "fec0::1",
        "10.0.0.1",
        "8.8.8.8",
        "2001:db8::1",
    ] {
        assert_eq!(refused(fine, &open), None, "{fine}");
    }
}

#[test]
fn loopback_only_with_the_flag() {
    let closed = EgressPolicy::default();
    let open = EgressPolicy {
        allow_loopback: true,
        ..Default::default()
    };
    for local in ["127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::", "0.1.2.3"] {
        assert_eq!(refused(local, &closed), Some(Rule::Loopback), "{local}");
        assert_eq!(refused(local, &open), None, "{local}");
    }
}

#[test]
fn the_api_server_is_refused_on_every_port_unless_it_is_on_loopback() {
    let policy = EgressPolicy {
        allow_loopback: true,
        api_server: vec![addr("10.96.0.1:443"), addr("127.0.0.1:6443")],
        ..Default::default()
    };
    assert_eq!(refused("10.96.0.1:443", &policy), Some(Rule::ApiServer));
    assert_eq!(refused("10.96.0.1:8080", &policy), Some(Rule::ApiServer));
    assert_eq!(refused("10.96.0.1", &policy), Some(Rule::ApiServer));
    // A local cluster's API server shares 127.0.0.1 with the test servers.
    assert_eq!(refused("127.0.0.1:6443", &policy), Some(Rule::ApiServer));
    assert_eq!(refused("127.0.0.1:8081", &policy), None);
}

#[test]
fn admin_ranges_are_refused() {
    let policy = EgressPolicy {
        deny: vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("fd00::/8").unwrap(),
            Cidr::parse("192.168.1.7").unwrap(),
        ],
        ..Default::default()
    };
    let denied = |text: &str| match refused(text, &policy) {
        Some(Rule::Denied(cidr)) => Some(cidr.to_string()),
        _ => None,
    };
    assert_eq!(denied("10.200.3.4").as_deref(), Some("10.0.0.0/8"));
    assert_eq!(denied("fd12::1").as_deref(), Some("fd00::/8"));
    assert_eq!(denied("192.168.1.7").as_deref(), Some("192.168.1.7/32"));
    assert_eq!(denied("192.168.1.8"), None);
    assert_eq!(denied("11.0.0.1"), None);
}

#[test]
fn cidrs_parse_or_say_how_to_write_them() {
    assert_eq!(Cidr::parse(" 0.0.0.0/0 ").unwrap().to_string(), "0.0.0.0/0");
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap())
    );
    assert!(
        !Cidr::parse("::/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap())
    );
    for bad in [
        "10.0.0.0/33",
        "fd00::/129",
        "10.0.0/8",
        "ten/8",
        "10.0.0.0/x",
        "",
    ] {
        let err = Cidr::parse(bad).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    }
}

#[test]
fn a_name_with_any_refused_answer_is_refused() {
    let policy = EgressPolicy::default();
    let answers = [addr("93.184.216.34:80"), addr("169.254.169.254:80")];
    let err = first_refused("rebind.example", &answers, &policy).unwrap_err();
    assert_eq!(err.rule, Rule::CloudMetadata);
    let text = err.to_string();
    assert!(
        text.contains("rebind.example") && text.contains("169.254.169.254"),
        "{text}"
    );
    assert!(first_refused("example.com", &answers[..1], &policy).is_ok());
}

#[test]
fn every_refusal_says_what_to_do() {
    let advice = |rule: Rule| rule.advice();
    assert!(advice(Rule::Loopback).contains("--allow-loopback-egress"));
    let cidr = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(advice(Rule::Denied(cidr)).contains("--deny-egress-cidrs"));
    assert!(advice(Rule::ApiServer).contains("patch"));
}

#[test]
fn a_host_without_a_dot_is_a_service_in_the_namespace() {
    let qualified = |text: &str| {
        let mut url = reqwest::Url::parse(text).unwrap();
        qualify(&mut url, "shop");
        url.to_string()
    };
    assert_eq!(
        qualified("http://app:8080/x?y=1"),
        "http://app.shop.svc:8080/x?y=1"
    );
    for unchanged in [
        "http://app.other.svc:8080/",
        "http://example.com/",
        "http://localhost:8080/",
        "http://127.0.0.1:8080/",
        "http://[::1]:8080/",
    ] {
        assert_eq!(qualified(unchanged), unchanged);
    }
}

#[test]
fn redirects_stay_on_the_host_and_never_downgrade() {
    let url = |text: &str| reqwest::Url::parse(text).unwrap();
    let from = url("https://api.example.com/a");
    assert!(same_host(&from, &url("https://api.example.com/b")));
    assert!(same_host(&from, &url("https://api.example.com:443/b")));
    assert!(!same_host(&from, &url("https://evil.example.com/b")));
    assert!(!same_host(&from, &url("https://api.example.com:8443/b")));
    assert!(!same_host(&from, &url("http://api.example.com/b")));
}

#[test]
fn literal_addresses_are_recognised() {
    assert_eq!(literal_ip("[::1]"), Some("::1".parse().unwrap()));
    assert_eq!(literal_ip("10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
    assert_eq!(literal_ip("app.shop.svc"), None);
}

#[test]
fn guarded_kinds_need_the_flag() {
    let none: Vec<String> = Vec::new();
    for (api_version, kind) in [
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("ops.runbook.dev/v1alpha1", "Runbook"),
    ] {
        let why = patch_refusal(api_version, kind, &none).expect(kind);
        assert!(why.contains("--allow-patch-kinds"), "{why}");
    }
    for (api_version, kind) in [("v1", "ConfigMap"), ("apps/v1", "Deployment")] {
        assert_eq!(patch_refusal(api_version, kind, &none), None, "{kind}");
    }
    let allowed = vec!["Secret".to_owned(), "*.rbac.authorization.k8s.io".into()];
    assert_eq!(patch_refusal("v1", "Secret", &allowed), None);
    assert_eq!(
        patch_refusal("rbac.authorization.k8s.io/v1", "Role", &allowed),
        None
    );
    assert!(patch_refusal("v1", "ServiceAccount", &allowed).is_some());
    let why = patch_refusal("ops.runbook.dev/v1alpha1", "Runbook", &allowed).unwrap();
    assert!(why.contains("Runbook.ops.runbook.dev"), "{why}");
}

#[tokio::test]
async fn the_client_refuses_a_name_at_connect_time() {
    // No check before sending here: the resolver alone refuses what `localhost` resolves to.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = http_client(Arc::new(EgressPolicy::default()));
    let err = client.get("http://localhost:9/").send().await.unwrap_err();
    let refused = refused_in(&err).expect("a Refused in the error chain");
    assert_eq!(refused.rule, Rule::Loopback);
    assert_eq!(refused.host, "localhost");
}

#[tokio::test]
async fn check_url_resolves_names_with_the_port() {
    let policy = EgressPolicy {
        allow_loopback: true,
        api_server: vec![addr("127.0.0.1:6443")],
        ..Default::default()
    };
    let url = |text: &str| reqwest::Url::parse(text).unwrap();
    let err = check_url(&url("https://localhost:6443/api"), &policy)
        .await
        .unwrap_err();
    assert_eq!(err.rule, Rule::ApiServer);
    assert!(
        check_url(&url("http://localhost:8080/"), &policy)
            .await
            .is_ok()
    );
}

#[test]
fn resolve_overrides_parse_and_say_how_to_write_them() {
    let o = Override::parse(" Storefront-Preview.demo.svc.=127.0.0.1:18090 ").unwrap();
    assert_eq!(o.host, "storefront-preview.demo.svc");
    assert_eq!(o.addr, addr("127.0.0.1:18090"));
    for bad in [
        "no-equals",
        "=127.0.0.1:1",
        "host=127.0.0.1",
        "host=nowhere:80",
    ] {
        let err = Override::parse(bad).unwrap_err();
        assert!(err.to_string().contains("HOST=ADDRESS:PORT"), "{err}");
    }
    let policy = EgressPolicy {
        resolve: vec![o],
        ..Default::default()
    };
    assert_eq!(
        policy.overridden("STOREFRONT-preview.demo.svc."),
        Some(vec![addr("127.0.0.1:18090")])
    );
    assert_eq!(policy.overridden("storefront.demo.svc"), None);
}

/// A request to an overridden name reaches the override's address and port (the URL names no
/// port), and the fence still applies to it: loopback is refused without the loopback flag.
#[tokio::test]
async fn an_overridden_name_connects_to_its_address_and_stays_fenced() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    let entry = Override::parse(&format!("preview.shop.svc={local}")).unwrap();
    let allowed = Arc::new(EgressPolicy {
        allow_loopback: true,
        resolve: vec![entry.clone()],
        ..Default::default()
    });
    let url = reqwest::Url::parse("http://preview.shop.svc/health").unwrap();
    check_url(&url, &allowed).await.unwrap();
    let answer = http_client(allowed).get(url.clone()).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok");

    let fenced = Arc::new(EgressPolicy {
        resolve: vec![entry],
        ..Default::default()
    });
    assert_eq!(
        check_url(&url, &fenced).await.unwrap_err().rule,
        Rule::Loopback
    );
    let err = http_client(fenced).get(url).send().await.unwrap_err();
    assert_eq!(
        refused_in(&err).map(|r| r.rule.clone()),
        Some(Rule::Loopback)
    );
}

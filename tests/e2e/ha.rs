//! High availability: two operator processes with leader election on one namespace. Only the
//! holder of the Lease acts; killing it in the middle of a run hands the run to the standby,
//! which finishes it without repeating a step that was already done. A leader whose renewal
//! hangs stops by its own clock before the Lease expires.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunbookRun, StepPhase};

use crate::support::{Operator, TestNamespace, counter_sum, http_get};

/// Leader election with a short Lease, so the takeover in the test is quick.
const ELECTION: [&str; 7] = [
    "--leader-elect",
    "--leader-election-lease",
    "runbook-operator-ha",
    "--lease-duration",
    "6",
    "--lease-renew-before",
    "2",
];

fn metrics(operator: &Operator) -> String {
    http_get(&operator.probe, "/metrics").expect("the operator serves /metrics")
}

fn writes(operator: &Operator) -> f64 {
    counter_sum(&metrics(operator), "runbook_operator_api_writes_total", "")
}

fn is_leader(operator: &Operator) -> bool {
    counter_sum(&metrics(operator), "runbook_operator_leader ", "") == 1.0
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_standby_finishes_the_run_of_a_killed_leader_without_repeating_a_step() {
    let ns = TestNamespace::new("ha").await;
    ns.grant_leader_election();
    let mut election = vec!["--leader-election-namespace", ns.name.as_str()];
    election.extend(ELECTION);
    let first = ns.spawn_operator("-a", &election, "ok");
    assert!(is_leader(&first), "the first process holds the Lease");
    let second = ns.spawn_operator("-b", &election, "standby");
    assert!(!is_leader(&second), "the second process waits on standby");
    let lease = ns
        .api::<Lease>()
        .get("runbook-operator-ha")
        .await
        .expect("the Lease exists in the namespace");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .expect("the Lease has a holder");

    ns.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: app}}\n  template:\n    metadata: {labels: {app: app}}\n    spec:\n      containers: [{name: app, image: \"registry.example.com/app:1\"}]\n",
    );
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: bump-twice}\nspec:\n  steps:\n  - {name: bump, scale: {target: {kind: Deployment, name: app}, by: 1}}\n  - {name: pause, sleep: {duration: 20s}}\n  - {name: bump-again, scale: {target: {kind: Deployment, name: app}, by: 1}}\n",
    );
    ns.wait_for::<Runbook>("bump-twice", "Ready", |rb| {
        rb.status.as_ref().is_some_and(|s| {
            crate::support::ready(&s.conditions, s.observed_generation, rb.metadata.generation)
        })
    })
    .await;
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {name: bump-1}\nspec:\n  runbookRef: {name: bump-twice}\n",
    );
    // Kill the leader while the run sleeps between its two scale steps.
    ns.wait_for::<RunbookRun>("bump-1", "in its pause step", |run| {
        run.status.as_ref().is_some_and(|s| {
            s.steps
                .iter()
                .any(|e| e.name == "pause" && e.phase == StepPhase::Running)
        })
    })
    .await;
    ns.wait_for::<Deployment>("app", "scaled to 2 by the first step", |d| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(2)
    })
    .await;
    assert!(writes(&first) > 0.0, "the leader wrote the run's status");
    assert_eq!(writes(&second), 0.0, "the standby wrote nothing");
    drop(first); // SIGKILL: the Lease is not released, it has to expire.

    let run = ns
        .wait_for::<RunbookRun>("bump-1", "finished by the new leader", |run| {
            run.status
                .as_ref()
                .and_then(|s| s.phase.map(|p| p.as_str()))
                .is_some_and(|p| p == "Succeeded" || p == "Failed")
        })
        .await;
    let status = run.status.expect("status");
    assert_eq!(
        status.phase.map(|p| p.as_str()),
        Some("Succeeded"),
        "{status:#?}"
    );
    for entry in &status.steps {
        assert_eq!(entry.attempts, 1, "each step ran once: {entry:#?}");
    }
    let replicas = ns
        .api::<Deployment>()
        .get("app")
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(
        replicas,
        Some(3),
        "1 + 1 + 1: no scale step was applied twice"
    );
    assert!(is_leader(&second), "the standby took the Lease over");
    assert!(writes(&second) > 0.0, "the new leader wrote the rest");
    let lease = ns
        .api::<Lease>()
        .get("runbook-operator-ha")
        .await
        .expect("Lease");
    let new_holder = lease.spec.and_then(|s| s.holder_identity);
    assert!(
        new_holder.as_ref().is_some_and(|h| *h != holder),
        "the Lease changed hands: {holder} -> {new_holder:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_leader_that_stops_releases_the_lease_to_the_standby() {
    let mut ns = TestNamespace::new("ha-release").await;
    ns.grant_leader_election();
    let mut election = vec!["--leader-election-namespace", ns.name.as_str()];
    election.extend(ELECTION);
    let first = ns.spawn_operator("-a", &election, "ok");
    let second = ns.spawn_operator("-b", &election, "standby");
    assert!(is_leader(&first) && !is_leader(&second));
    let holder = |lease: Lease| lease.spec.and_then(|s| s.holder_identity);
    let leases = ns.api::<Lease>();
    let before = holder(leases.get("runbook-operator-ha").await.expect("Lease"))
        .expect("the leader holds the Lease");
    // SIGTERM: the leader stops its controllers and gives the Lease up.
    ns.adopt_operator(first);
    let status = ns.terminate_operator();
    assert!(
        status.success(),
        "a stopped leader exits cleanly: {status:?}"
    );
    // Released, not left to expire: the old leader no longer holds it.
    let lease = leases.get("runbook-operator-ha").await.expect("Lease");
    assert_ne!(
        holder(lease.clone()).as_deref(),
        Some(before.as_str()),
        "the stopped leader released the Lease: {lease:?}"
    );
    let started = std::time::Instant::now();
    while !(is_leader(&second) && http_get(&second.probe, "/readyz").as_deref() == Some("ok")) {
        assert!(
            started.elapsed() < crate::support::PATIENCE,
            "the standby never took over and synced; Lease: {lease:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A TCP proxy to the API server that can be frozen: once frozen it forwards nothing more
/// either way, so every request through it (a Lease renewal too) hangs without failing.
struct Proxy {
    /// The address operators connect to instead of the API server's.
    server: String,
    frozen: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Proxy {
    /// Listens on the API server's host (so its certificate still matches) at a free port.
    fn start(host: &str, upstream: std::net::SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind((host, 0)).expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let frozen = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let gate = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let gate = gate.clone();
                    std::thread::spawn(move || pipe(from, to, &gate));
                }
            }
        });
        Self {
            server: format!("https://{host}:{port}"),
            frozen,
        }
    }

    /// From now on nothing passes.
    fn freeze(&self) {
        let (lock, _) = &*self.frozen;
        *lock.lock().expect("proxy gate") = true;
    }
}

/// Copies `from` to `to`, holding every chunk read while the gate is frozen.
fn pipe(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    gate: &(std::sync::Mutex<bool>, std::sync::Condvar),
) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (lock, frozen) = gate;
        let held = lock.lock().expect("proxy gate");
        // Frozen is for good: the chunk is never delivered.
        let _held = frozen.wait_while(held, |f| *f).expect("proxy gate");
        drop(_held);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The operators' kubeconfig with its API server replaced by `proxy`'s; the API server's
/// host and address, to start the proxy.
fn through_proxy() -> (String, std::net::SocketAddr, kube::config::Kubeconfig) {
    let config = match crate::support::operator_kubeconfig() {
        Some(path) => kube::config::Kubeconfig::read_from(path),
        None => kube::config::Kubeconfig::read(),
    }
    .expect("read the operators' kubeconfig");
    let server = config
        .clusters
        .iter()
        .find_map(|c| c.cluster.as_ref()?.server.clone())
        .expect("the kubeconfig names an API server");
    let uri: http::Uri = server.parse().expect("the API server's URL");
    let host = uri.host().expect("the API server's host").to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .expect("resolve the API server")
        .next()
        .expect("an address of the API server");
    (host, upstream, config)
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_leader_whose_renewal_hangs_stops_by_its_own_clock() {
    let ns = TestNamespace::new("ha-hang").await;
    ns.grant_leader_election();
    let mut election = vec!["--leader-election-namespace", ns.name.as_str()];
    election.extend(ELECTION);
    // The leader reaches the API server through a proxy the test can freeze.
    let (host, upstream, mut config) = through_proxy();
    let proxy = Proxy::start(&host, upstream);
    for cluster in &mut config.clusters {
        if let Some(cluster) = cluster.cluster.as_mut() {
            cluster.server = Some(proxy.server.clone());
        }
    }
    let kubeconfig = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("e2e-{}-proxied.kubeconfig", ns.name));
    std::fs::write(
        &kubeconfig,
        serde_norway::to_string(&config).expect("kubeconfig as YAML"),
    )
    .expect("write the proxied kubeconfig");
    let mut first = ns.spawn_operator_with("-a", &election, "ok", Some(&kubeconfig));
    assert!(is_leader(&first), "the first process holds the Lease");
    let second = ns.spawn_operator("-b", &election, "standby");

    // Every request of the leader now hangs, its next renewal included; its read timeout
    // (30 s) is longer than the Lease (6 s), so only its own clock can stop it in time.
    proxy.freeze();
    let status = first.exited();
    assert!(
        !status.success(),
        "a leader that lost the Lease exits non-zero: {status:?}"
    );
    let log = std::fs::read_to_string(&first.log).expect("the leader's log");
    assert!(
        log.contains("could not renew the leader Lease before it expires by this process's clock"),
        "the leader stopped by its own clock, not by a failed request: {}",
        first.log.display()
    );
    // The standby takes over.
    let started = std::time::Instant::now();
    while !is_leader(&second) {
        assert!(
            started.elapsed() < crate::support::PATIENCE,
            "the standby never took the Lease over"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

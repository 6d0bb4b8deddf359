//! The local cluster is a real one: RBAC is enforced for a ServiceAccount acting through
//! impersonation, and the operator stops cleanly on SIGTERM.

use std::time::{Duration, Instant};

use runbook_operator::runbook::Runbook;

use crate::support::{PATIENCE, TestNamespace};

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_service_account_gets_only_what_rbac_grants() {
    let ns = TestNamespace::new("rbac").await;
    ns.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reader}\n");
    let as_reader = ns.client_as_service_account("reader").await;
    let runbooks = kube::Api::<Runbook>::namespaced(as_reader, &ns.name);

    let denied = runbooks.list(&Default::default()).await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
        "an account without a Role must be refused: {denied:?}"
    );

    ns.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: runbook-reader}\nrules:\n- {apiGroups: [ops.runbook.dev], resources: [runbooks], verbs: [get, list]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: reader}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: runbook-reader}\nsubjects:\n- {kind: ServiceAccount, name: reader}\n",
    );
    let started = Instant::now();
    loop {
        match runbooks.list(&Default::default()).await {
            Ok(_) => break,
            Err(err) => assert!(
                started.elapsed() < PATIENCE,
                "the Role never took effect: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let write = runbooks
        .delete_collection(&Default::default(), &Default::default())
        .await;
    assert!(
        matches!(&write, Err(kube::Error::Api(s)) if s.code == 403),
        "the Role grants no delete: {write:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn the_operator_stops_cleanly_on_sigterm() {
    let mut ns = TestNamespace::new("sigterm").await;
    ns.start_operator();
    let status = ns.terminate_operator();
    assert!(
        status.success(),
        "operator exited with {status} after SIGTERM"
    );
    let log = std::fs::read_to_string(ns.log_path()).expect("operator log");
    assert!(
        log.contains("controller stopped") && log.contains("stopped"),
        "{log}"
    );
}

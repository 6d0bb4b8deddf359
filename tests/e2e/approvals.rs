//! Approvals tied to a person, as the chart installs them (its MutatingAdmissionPolicy and
//! ValidatingAdmissionPolicy, and the approver ClusterRole): people are users the admin
//! identity impersonates, with RBAC the test creates in its namespace. Who may answer is
//! decided at admission (the verb `approve`, a waiting step) and by the operator (the step's
//! approvers and distinctFromRequester); the journal and Events name who answered.

use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use runbook_operator::well_known::{APPROVE, APPROVED_BY, REJECT, REQUESTED_BY};
use serde_json::json;

use crate::support::{TestNamespace, client_as, entry, output};

/// The approver ClusterRole of the chart release `make test` installs (`<fullname>-approver`).
const APPROVER_ROLE: &str = "runbook-operator-approver";

/// RBAC of the test's people: every user in `editors` may create and patch runs (as the
/// aggregated `edit` role would let them), those in `approvers` also hold the chart's
/// approver role.
fn rbac(editors: &[&str], approvers: &[&str]) -> String {
    let subjects = |users: &[&str]| {
        users
            .iter()
            .map(|u| format!("{{kind: User, apiGroup: rbac.authorization.k8s.io, name: {u}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: run-editor}}\nrules:\n- {{apiGroups: [ops.runbook.dev], resources: [runbookruns], verbs: [get, list, watch, create, patch]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: run-editors}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-editor}}\nsubjects: [{}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: approvers}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {APPROVER_ROLE}}}\nsubjects: [{}]\n",
        subjects(editors),
        subjects(approvers)
    )
}

fn runbook(name: &str, steps: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n  steps:\n{steps}\n"
    )
}

/// The API server's answer as "<code> <message>", or the run.
fn answer(result: Result<RunbookRun, kube::Error>) -> Result<RunbookRun, String> {
    result.map_err(|e| match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    })
}

/// Creates run `name` of `runbook` as `client`, with `annotations`.
async fn create_run(
    client: &Client,
    ns: &TestNamespace,
    name: &str,
    runbook: &str,
    annotations: serde_json::Value,
) -> Result<RunbookRun, String> {
    let run: RunbookRun = serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1",
        "kind": "RunbookRun",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"runbookRef": {"name": runbook}},
    }))
    .expect("a run");
    let api: Api<RunbookRun> = Api::namespaced(client.clone(), &ns.name);
    answer(api.create(&PostParams::default(), &run).await)
}

/// Sets annotation `key` to `value` on run `name` as `client` (a merge patch, as kubectl
/// annotate and the plugin send).
async fn annotate(
    client: &Client,
    ns: &TestNamespace,
    name: &str,
    key: &str,
    value: &str,
) -> Result<RunbookRun, String> {
    let api: Api<RunbookRun> = Api::namespaced(client.clone(), &ns.name);
    let patch = json!({"metadata": {"annotations": {key: value}}});
    answer(
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    )
}

/// Whether the run waits for approval at `step`.
fn waiting_at(run: &RunbookRun, step: &str) -> bool {
    run.status.as_ref().is_some_and(|s| {
        s.phase.map(|p| p.as_str()) == Some("WaitingForApproval")
            && s.current_step.as_deref() == Some(step)
    })
}

fn refused(result: Result<RunbookRun, String>, words: &[&str]) -> String {
    let err = result.expect_err("the API server must refuse this");
    assert!(err.starts_with("403 "), "{err}");
    for w in words {
        assert!(err.contains(w), "the refusal should say {w:?}: {err}");
    }
    err
}

/// Only holders of the verb `approve` may answer, only a step the run waits at, never at
/// creation; requested-by and approved-by are stamped by admission and cannot be forged;
/// the journal and Events name who approved and who rejected.
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn answers_need_the_verb_and_a_waiting_step_and_the_journal_names_who_answered() {
    let mut ns = TestNamespace::new("approvals").await;
    ns.apply(&rbac(&["carol", "dave", "erin"], &["erin"]));
    ns.apply(&runbook(
        "gate",
        "  - {name: hold, approval: {message: \"Start?\"}}\n  - {name: ask, approval: {message: \"Ship it?\"}}",
    ));
    let carol = client_as("carol", &[]).await;
    let dave = client_as("dave", &[]).await;
    let erin = client_as("erin", &["sre"]).await;

    // An approval at creation would pass the gate at once: refused.
    refused(
        create_run(&carol, &ns, "gate-1", "gate", json!({APPROVE: "hold"})).await,
        &["refused at creation", "WaitingForApproval"],
    );
    // requested-by is stamped from the request, whatever the client sends.
    let created = create_run(
        &carol,
        &ns,
        "gate-1",
        "gate",
        json!({REQUESTED_BY: "mallory"}),
    )
    .await
    .expect("carol may create a run");
    assert_eq!(
        created.annotations().get(REQUESTED_BY).map(String::as_str),
        Some("carol")
    );
    ns.start_operator();
    ns.wait_for::<RunbookRun>("gate-1", "waiting at hold", |r| waiting_at(r, "hold"))
        .await;

    // `kubectl auth can-i approve runbookruns` tells who holds the verb.
    let can = |user: &str| {
        let out = ns.kubectl(
            &["auth", "can-i", "approve", "runbookruns", "--as", user],
            None,
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!((can("dave").as_str(), can("erin").as_str()), ("no", "yes"));
    refused(
        annotate(&dave, &ns, "gate-1", APPROVE, "hold").await,
        &[
            "dave may not approve step hold",
            "kubectl auth can-i approve runbookruns",
            APPROVER_ROLE,
        ],
    );
    refused(
        annotate(&dave, &ns, "gate-1", REJECT, "hold").await,
        &["dave may not reject step hold"],
    );
    // A pre-set answer for a later step (even by someone with the verb) does not count: the
    // step is not waiting.
    refused(
        annotate(&erin, &ns, "gate-1", APPROVE, "ask").await,
        &["step ask is not waiting for approval", "waits at step hold"],
    );
    // Nobody writes the stamps by hand.
    refused(
        annotate(&erin, &ns, "gate-1", APPROVED_BY, "erin").await,
        &["cannot be set by hand"],
    );
    refused(
        annotate(&dave, &ns, "gate-1", REQUESTED_BY, "dave").await,
        &["cannot be changed"],
    );

    // erin holds the verb: her approval counts and the journal names her.
    let approved = annotate(&erin, &ns, "gate-1", APPROVE, "hold")
        .await
        .expect("erin may approve");
    assert_eq!(
        approved.annotations().get(APPROVED_BY).map(String::as_str),
        Some("erin")
    );
    let r = ns
        .wait_for::<RunbookRun>("gate-1", "waiting at ask", |r| waiting_at(r, "ask"))
        .await;
    let hold = entry(&r, "hold");
    assert_eq!(hold.phase, StepPhase::Succeeded, "{hold:#?}");
    assert_eq!(hold.message.as_deref(), Some("approved by erin"));
    assert_eq!(output(hold, "approvedBy"), "erin");
    assert_eq!(output(hold, "decision"), "Approved");
    assert!(output(hold, "approverGroups").contains("sre"), "{hold:#?}");
    assert!(
        output(hold, "approvedAt")
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    ns.wait_for_event("gate-1", "Approved", "step \"hold\" approved by erin")
        .await;

    // Reject is an answer too: the step fails with reason Rejected, not retried.
    annotate(&erin, &ns, "gate-1", REJECT, "ask")
        .await
        .expect("erin may reject");
    let r = ns
        .wait_for::<RunbookRun>("gate-1", "finished", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
        })
        .await;
    let ask = entry(&r, "ask");
    assert_eq!(ask.phase, StepPhase::Failed, "{ask:#?}");
    assert_eq!(output(ask, "reason"), "Rejected");
    assert_eq!(output(ask, "approvedBy"), "erin");
    assert_eq!(output(ask, "decision"), "Rejected");
    assert_eq!(ask.attempts, 1, "a rejection is not retried: {ask:#?}");
    assert_eq!(
        r.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str()),
        Some("Failed")
    );
    ns.wait_for_event("gate-1", "Rejected", "step \"ask\" rejected by erin")
        .await;
}

/// distinctFromRequester refuses the run's creator and approvers narrow who may answer; a
/// refused answer is removed (so someone else may answer), the step keeps waiting and says
/// who was refused and why.
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn the_creator_and_people_outside_the_approvers_are_refused_by_the_operator() {
    let mut ns = TestNamespace::new("four-eyes").await;
    ns.apply(&rbac(
        &["erin", "frank", "gina"],
        &["erin", "frank", "gina"],
    ));
    ns.apply(&runbook(
        "four-eyes",
        "  - name: ask\n    approval: {message: \"Drop the old table?\", distinctFromRequester: true, approvers: {groups: [sre]}}",
    ));
    let erin = client_as("erin", &["sre"]).await;
    let frank = client_as("frank", &["dev"]).await;
    let gina = client_as("gina", &["sre"]).await;
    create_run(&erin, &ns, "drop-1", "four-eyes", json!({}))
        .await
        .expect("erin may create a run");
    ns.start_operator();
    ns.wait_for::<RunbookRun>("drop-1", "waiting at ask", |r| waiting_at(r, "ask"))
        .await;

    // The creator holds the verb and is in sre, but may not approve her own run.
    annotate(&erin, &ns, "drop-1", APPROVE, "ask")
        .await
        .expect("admission lets erin answer: she holds the verb");
    let r = ns
        .wait_for::<RunbookRun>("drop-1", "erin refused", |r| {
            !r.annotations().contains_key(APPROVE)
                && entry(r, "ask")
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("refused: erin: they created the run"))
        })
        .await;
    assert!(
        waiting_at(&r, "ask"),
        "the step keeps waiting: {:#?}",
        r.status
    );
    ns.wait_for_event("drop-1", "ApprovalRefused", "erin").await;

    // frank holds the verb but is not in the approvers' group.
    annotate(&frank, &ns, "drop-1", APPROVE, "ask")
        .await
        .expect("admission lets frank answer: he holds the verb");
    let r = ns
        .wait_for::<RunbookRun>("drop-1", "frank refused", |r| {
            !r.annotations().contains_key(APPROVE)
                && entry(r, "ask").message.as_deref().is_some_and(|m| {
                    m.contains("refused: frank: not among the step's approval.approvers")
                })
        })
        .await;
    assert!(waiting_at(&r, "ask"), "{:#?}", r.status);

    // gina is in sre and did not create the run: her approval counts.
    annotate(&gina, &ns, "drop-1", APPROVE, "ask")
        .await
        .expect("gina may approve");
    let r = ns
        .wait_for::<RunbookRun>("drop-1", "Succeeded", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.as_str() == "Succeeded")
        })
        .await;
    let ask = entry(&r, "ask");
    assert_eq!(output(ask, "approvedBy"), "gina");
    assert!(!ask.outputs.contains_key("approvalRefused"), "{ask:#?}");
}

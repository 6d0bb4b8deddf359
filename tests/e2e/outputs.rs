//! Outputs between steps, as a user sees them in the run's journal: a Job's termination
//! messages (kwok ends a pod with the text of its `sim.runbook.dev/termination-message`
//! annotation, as a kubelet reports what the container wrote to `terminationMessagePath`) and
//! values an http step captures from a JSON answer; then later steps that branch on them
//! (`when`) or carry them forward (`{{ steps.<name>.outputs.<key> }}`).

use runbook_operator::runbook_run::{RunbookRun, StepPhase, StepStatus};

use crate::monitoring::Recorder;
use crate::support::{TestNamespace, entry, output};

fn runbook(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

fn run(name: &str, runbook: &str, params: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: {name}}}\nspec:\n  runbookRef: {{name: {runbook}}}\n  params: {{{params}}}\n"
    )
}

/// A Job template (flow YAML) whose pod has the given labels and annotations and the given
/// containers (names).
fn job_template(labels: &str, annotations: &str, containers: &[&str]) -> String {
    let containers: Vec<String> = containers
        .iter()
        .map(|c| format!("{{name: {c}, image: \"registry.example.com/{c}:1\"}}"))
        .collect();
    format!(
        "{{spec: {{backoffLimit: 0, template: {{metadata: {{labels: {labels}, annotations: {annotations}}}, spec: {{restartPolicy: Never, containers: [{}]}}}}}}}}",
        containers.join(", ")
    )
}

async fn finished(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, "finished", |r| {
        matches!(
            r.status.as_ref().and_then(|s| s.phase.map(|p| p.as_str())),
            Some("Succeeded" | "Failed" | "Cancelled")
        )
    })
    .await
}

fn assert_step(run: &RunbookRun, step: &str, want: StepPhase) -> StepStatus {
    let e = entry(run, step).clone();
    assert_eq!(e.phase, want, "step {step:?}: {e:#?}");
    e
}

/// The reason a step ended with: the journal's `reason` field, else the output of that name.
fn reason(e: &StepStatus) -> &str {
    e.reason
        .as_deref()
        .or(e.outputs.get("reason").map(String::as_str))
        .unwrap_or_default()
}

/// A server for http steps: `/version` answers a JSON document, `/text` plain text, everything
/// else `{"status":"ok"}`.
async fn server() -> Recorder {
    Recorder::start(|request| {
        let (kind, body) = match request.path.as_str() {
            "/version" => (
                "application/json",
                r#"{"version":"1.4.2","build":{"number":7}}"#,
            ),
            "/text" => ("text/plain", "all good"),
            _ => ("application/json", r#"{"status":"ok"}"#),
        };
        (200, kind, body.to_owned())
    })
    .await
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn job_termination_messages_and_http_captures_are_recorded_as_outputs() {
    let mut ns = TestNamespace::new("outputs").await;
    let web = server().await;
    let check = job_template(
        "{}",
        r##"{sim.runbook.dev/termination-message: "# from check.sh\nhealthy=true\nlag=3\njobName=evil", sim.runbook.dev/termination-message-side: "{\"zone\": \"a\", \"healthy\": false}"}"##,
        &["main", "side"],
    );
    let broken = job_template(
        "{sim.runbook.dev/outcome: fail}",
        r#"{sim.runbook.dev/termination-message: "error=disk full"}"#,
        &["main"],
    );
    ns.apply(&runbook(
        "outs",
        &format!(
            "  steps:\n  - {{name: check, job: {{template: {check}}}}}\n  - {{name: broken, onFailure: Continue, job: {{template: {broken}}}}}\n  - {{name: get, http: {{url: \"{base}/version\", outputs: {{version: \"{{.version}}\", build: \"{{.build.number}}\"}}}}}}\n  - {{name: missing, onFailure: Continue, http: {{url: \"{base}/version\", outputs: {{zone: \"{{.zone}}\"}}}}}}\n  - {{name: not-json, onFailure: Continue, http: {{url: \"{base}/text\", outputs: {{zone: \"{{.zone}}\"}}}}}}",
            base = web.base,
        ),
    ));
    ns.start_operator();
    ns.apply(&run("outs-1", "outs", ""));
    let r = finished(&ns, "outs-1").await;

    let e = assert_step(&r, "check", StepPhase::Succeeded);
    assert_eq!(output(&e, "healthy"), "true", "{e:#?}");
    assert_eq!(output(&e, "lag"), "3", "{e:#?}");
    assert_eq!(output(&e, "zone"), "a", "{e:#?}");
    // The journal's own key is not overwritten, and the step's message says why.
    assert_eq!(output(&e, "jobName"), "outs-1-check-1", "{e:#?}");
    let message = e.message.clone().unwrap_or_default();
    assert!(
        message.contains("key jobName ignored") && message.contains("key healthy given again"),
        "{e:#?}"
    );

    let e = assert_step(&r, "broken", StepPhase::Failed);
    assert_eq!(output(&e, "error"), "disk full", "{e:#?}");
    assert_eq!(reason(&e), "JobFailed", "{e:#?}");

    let e = assert_step(&r, "get", StepPhase::Succeeded);
    assert_eq!(output(&e, "version"), "1.4.2", "{e:#?}");
    assert_eq!(output(&e, "build"), "7", "{e:#?}");
    assert_eq!(output(&e, "httpStatus"), "200", "{e:#?}");

    let e = assert_step(&r, "missing", StepPhase::Failed);
    assert_eq!(reason(&e), "OutputMissing", "{e:#?}");
    let message = e.message.clone().unwrap_or_default();
    assert!(
        message.contains("http.outputs.zone") && message.contains("{.zone}"),
        "{e:#?}"
    );
    assert!(!e.outputs.contains_key("zone"), "{e:#?}");

    let e = assert_step(&r, "not-json", StepPhase::Failed);
    assert_eq!(reason(&e), "OutputMissing", "{e:#?}");
    assert!(
        e.message
            .as_deref()
            .unwrap_or_default()
            .contains("not JSON"),
        "{e:#?}"
    );
    ns.stop_operator();
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_run_branches_both_ways_on_a_jobs_termination_message() {
    let mut ns = TestNamespace::new("branch").await;
    let check = job_template(
        "{}",
        r#"{sim.runbook.dev/termination-message: "healthy={{ params.healthy }}"}"#,
        &["probe"],
    );
    ns.apply(&runbook(
        "branch",
        &format!(
            "  params: [{{name: healthy, default: \"true\"}}]\n  steps:\n  - {{name: check, job: {{template: {check}}}}}\n  - {{name: carry-on, when: \"steps.check.outputs.healthy == 'true'\", sleep: {{duration: 1s}}}}\n  - {{name: repair, when: \"steps.check.outputs.healthy != 'true'\", sleep: {{duration: 1s}}}}"
        ),
    ));
    ns.start_operator();
    ns.apply(&run("branch-healthy", "branch", "healthy: \"true\""));
    ns.apply(&run("branch-sick", "branch", "healthy: \"false\""));
    for (name, value, taken, skipped) in [
        ("branch-healthy", "true", "carry-on", "repair"),
        ("branch-sick", "false", "repair", "carry-on"),
    ] {
        let r = finished(&ns, name).await;
        let e = assert_step(&r, "check", StepPhase::Succeeded);
        assert_eq!(output(&e, "healthy"), value, "{name}: {e:#?}");
        assert_step(&r, taken, StepPhase::Succeeded);
        let e = assert_step(&r, skipped, StepPhase::Skipped);
        assert_eq!(reason(&e), "ConditionFalse", "{name}: {e:#?}");
        assert_eq!(
            r.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str()),
            Some("Succeeded"),
            "{name}: {:#?}",
            r.status
        );
    }
    ns.stop_operator();
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn an_http_capture_feeds_a_later_steps_request() {
    let mut ns = TestNamespace::new("carry").await;
    let web = server().await;
    ns.apply(&runbook(
        "carry",
        &format!(
            "  steps:\n  - {{name: get, http: {{url: \"{base}/version\", outputs: {{version: \"{{.version}}\"}}}}}}\n  - {{name: announce, http: {{url: \"{base}/announce\", method: POST, body: \"deployed {{{{ steps.get.outputs.version }}}}\"}}}}",
            base = web.base,
        ),
    ));
    ns.start_operator();
    ns.apply(&run("carry-1", "carry", ""));
    let r = finished(&ns, "carry-1").await;
    let e = assert_step(&r, "get", StepPhase::Succeeded);
    assert_eq!(output(&e, "version"), "1.4.2", "{e:#?}");
    assert_step(&r, "announce", StepPhase::Succeeded);
    let sent = web.requests_to("/announce");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].body, "deployed 1.4.2");
    ns.stop_operator();
}

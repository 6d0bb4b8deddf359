//! Hostile input ends in a clear answer and never stops the operator: durations far past any
//! real delay, megabyte parameters, names longer than a label value and names that would
//! address a subresource are refused at `kubectl apply` naming the field and the bound, or
//! (when they arrive through a `{{ params.X }}` template) end the run `Failed` with reason
//! `InvalidSpec` naming the step and field. A Runbook with a 100-character name still runs.

use kube::ResourceExt;
use kube::api::ListParams;
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::RunbookRun;

use crate::support::{TestNamespace, condition, run_yaml};

fn runbook(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

/// Creates `yaml` (create, not apply: a megabyte object does not fit the last-applied
/// annotation) and returns kubectl's error, panicking if it was accepted.
fn refused(ns: &TestNamespace, what: &str, yaml: &str) -> String {
    let out = ns.kubectl(&["create", "-f", "-"], Some(yaml));
    assert!(
        !out.status.success(),
        "{what}: was accepted but must be refused"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn huge_durations_params_and_paths_are_refused_at_apply() {
    let ns = TestNamespace::new("hostile-apply").await;
    let huge = "100000000h";
    let megabyte = "x".repeat(1 << 20);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "a step timeout of 100000000h",
            runbook(
                "huge-timeout",
                &format!("  steps:\n  - {{name: s, timeout: {huge}, sleep: {{duration: 1s}}}}"),
            ),
            vec!["spec.steps[0].timeout", "at most 8760h"],
        ),
        (
            "a sleep of 100000000h",
            runbook(
                "huge-sleep",
                &format!("  steps:\n  - {{name: s, sleep: {{duration: {huge}}}}}"),
            ),
            vec!["spec.steps[0].sleep.duration", "at most 8760h"],
        ),
        (
            "a retry backoff of 100000000h",
            runbook(
                "huge-backoff",
                &format!(
                    "  steps:\n  - {{name: s, retries: {{limit: 2, backoff: {huge}}}, sleep: {{duration: 1s}}}}"
                ),
            ),
            vec!["spec.steps[0].retries.backoff", "at most 8760h"],
        ),
        (
            "a duration that overflows the API server's own reading",
            runbook(
                "overflow",
                "  steps:\n  - {name: s, sleep: {duration: 99999999999999999999h}}",
            ),
            vec!["spec.steps[0].sleep.duration", "at most 8760h"],
        ),
        (
            "a window of 100000000h",
            format!(
                "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: forever}}\nspec:\n  schedule: {{cron: \"0 2 * * *\", duration: {huge}}}\n  targets: [{{kind: Deployment, name: app, scaleTo: 0}}]\n"
            ),
            vec!["spec.schedule.duration", "at most 8760h"],
        ),
        (
            "an rpo of 100000000h",
            format!(
                "apiVersion: ops.runbook.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: forever}}\nspec:\n  schedule: {{cron: \"0 1 * * *\"}}\n  rpo: {huge}\n  jobTemplate: {{spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: dump, image: pg:16}}]}}}}}}}}\n"
            ),
            vec!["spec.rpo", "at most 8760h"],
        ),
        (
            "a 1 MiB parameter default",
            runbook(
                "big-default",
                &format!(
                    "  params: [{{name: p, default: \"{megabyte}\"}}]\n  steps:\n  - {{name: s, sleep: {{duration: 1s}}}}"
                ),
            ),
            vec!["spec.params[0].default", "4096"],
        ),
        (
            "a 1 MiB run parameter",
            run_yaml("big-param", "any", "Run", &[("p", megabyte.clone())]),
            vec!["spec.params.p", "4096"],
        ),
        (
            "a patch of x/status",
            runbook(
                "subresource",
                "  steps:\n  - {name: p, patch: {target: {apiVersion: v1, kind: ConfigMap, name: x/status}, type: merge, patch: {}}}",
            ),
            vec!["spec.steps[0].patch.target.name", "not a path"],
        ),
        (
            "a rotateSecret of x/status",
            runbook(
                "rotate-path",
                "  steps:\n  - {name: r, rotateSecret: {secret: x/status, key: k}}",
            ),
            vec!["spec.steps[0].rotateSecret.secret", "not a path"],
        ),
        (
            "a backup policy named x/status",
            runbook(
                "backup-path",
                "  steps:\n  - {name: b, backup: {policy: x/status}}",
            ),
            vec!["spec.steps[0].backup.policy", "not a path"],
        ),
        (
            "a Job from CronJob x/status",
            runbook(
                "cron-path",
                "  steps:\n  - {name: j, job: {fromCronJob: x/status}}",
            ),
            vec!["spec.steps[0].job.fromCronJob", "not a path"],
        ),
        (
            "a header Secret named x/status",
            runbook(
                "secret-path",
                "  steps:\n  - {name: h, http: {url: \"http://app/x\", headers: [{name: A, valueFrom: {secretKeyRef: {name: x/status, key: k}}}]}}",
            ),
            vec!["secretKeyRef.name", "not a path"],
        ),
        (
            "a deletePods selector value that adds a term",
            runbook(
                "selector",
                "  steps:\n  - {name: d, deletePods: {selector: {matchLabels: {app: \"web,tier!=x\"}}}}",
            ),
            vec![
                "spec.steps[0].deletePods.selector.matchLabels",
                "label values",
            ],
        ),
    ];
    for (what, yaml, expected) in cases {
        let stderr = refused(&ns, what, &yaml);
        for words in expected {
            assert!(
                stderr.contains(words),
                "{what}: the error does not mention {words:?}:\n{}",
                &stderr[..stderr.len().min(4000)]
            );
        }
    }
    // The bound itself is accepted.
    ns.apply(&runbook(
        "a-year",
        "  steps:\n  - {name: s, timeout: 8760h, retries: {limit: 1, backoff: 525600m}, sleep: {duration: 1s}}",
    ));
}

/// What a template resolves to is checked when the run starts: a bad value fails the run at
/// once with InvalidSpec naming the step and field, and is not retried.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn templated_hostile_values_fail_the_run_with_invalid_spec() {
    let mut ns = TestNamespace::new("hostile-params").await;
    ns.apply(&runbook(
        "templated",
        "  params: [{name: cm, default: settings}, {name: url, default: \"http://app/x\"}, {name: app, default: web}]\n  steps:\n  - {name: edit, patch: {target: {apiVersion: v1, kind: ConfigMap, name: \"{{ params.cm }}\"}, type: merge, patch: {data: {a: b}}}}\n  - {name: call, http: {url: \"{{ params.url }}\"}}\n  - {name: clean, deletePods: {selector: {matchLabels: {app: \"{{ params.app }}\"}}}}",
    ));
    let long_url = format!("http://app/{}", "a".repeat(3000));
    ns.apply(&run_yaml(
        "subresource",
        "templated",
        "Run",
        &[("cm", "x/status".into())],
    ));
    ns.apply(&run_yaml(
        "long-url",
        "templated",
        "Run",
        &[("url", long_url)],
    ));
    ns.apply(&run_yaml(
        "not-http",
        "templated",
        "Run",
        &[("url", "file:///etc/passwd".into())],
    ));
    ns.apply(&run_yaml(
        "selector",
        "templated",
        "Run",
        &[("app", "web,tier!=x".into())],
    ));
    ns.start_operator();

    let cases = [
        (
            "subresource",
            [
                "spec.steps[0].patch.target.name",
                "step \"edit\"",
                "x/status",
            ],
        ),
        (
            "long-url",
            ["spec.steps[1].http.url", "step \"call\"", "2048"],
        ),
        (
            "not-http",
            [
                "spec.steps[1].http.url",
                "step \"call\"",
                "http:// or https://",
            ],
        ),
        (
            "selector",
            [
                "spec.steps[2].deletePods.selector.matchLabels",
                "step \"clean\"",
                "not a label value",
            ],
        ),
    ];
    for (name, expected) in cases {
        let run = ns
            .wait_for::<RunbookRun>(name, "Failed", |o| {
                o.status
                    .as_ref()
                    .is_some_and(|s| s.phase.map(|p| p.as_str()) == Some("Failed"))
            })
            .await;
        let status = run.status.unwrap_or_default();
        assert!(
            status.steps.iter().all(|s| s.attempts == 0),
            "{name}: no step ran: {:?}",
            status.steps
        );
        let succeeded = condition(&status.conditions, "Succeeded")
            .cloned()
            .expect("Succeeded condition");
        assert_eq!(
            (succeeded.status.as_str(), succeeded.reason.as_str()),
            ("False", "InvalidSpec"),
            "{name}"
        );
        for words in expected {
            assert!(
                succeeded.message.contains(words),
                "{name}: {words:?} not in {}",
                succeeded.message
            );
        }
    }
    // The ConfigMap's status subresource was never addressed: nothing named x exists.
    let out = ns.kubectl(&["get", "configmap", "x"], None);
    assert!(!out.status.success(), "no ConfigMap x was created");
}

/// A Runbook name of 100 characters is a valid object name but too long for a label value:
/// its runs (run-now and created by hand) still start and succeed, labelled with the hashed
/// value, and run-now starts exactly one run.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_runbook_with_a_hundred_character_name_runs() {
    let mut ns = TestNamespace::new("hostile-name").await;
    let name = format!("long-{}", "n".repeat(95));
    assert_eq!(name.len(), 100);
    ns.apply(&runbook(
        &name,
        "  steps:\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    ns.apply(&run_yaml("by-hand", &name, "Run", &[]));
    ns.start_operator();
    let succeeded = |o: &RunbookRun| {
        o.status
            .as_ref()
            .is_some_and(|s| s.phase.map(|p| p.as_str()) == Some("Succeeded"))
    };
    let run = ns
        .wait_for::<RunbookRun>("by-hand", "Succeeded", succeeded)
        .await;
    let label = run
        .labels()
        .get("ops.runbook.dev/runbook")
        .cloned()
        .unwrap_or_default();
    assert!(
        label.len() <= 63 && label.starts_with("long-nnn"),
        "{label}"
    );

    ns.kubectl_ok(&["annotate", "runbook", &name, "ops.runbook.dev/run-now=t1"]);
    ns.wait_for::<Runbook>(&name, "handled t1", |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.last_handled_run_now.as_deref() == Some("t1"))
    })
    .await;
    let runs = ns
        .api::<RunbookRun>()
        .list(&ListParams::default().labels(&format!("ops.runbook.dev/runbook={label}")))
        .await
        .expect("list runs");
    let started: Vec<String> = runs
        .items
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n != "by-hand")
        .collect();
    assert_eq!(started.len(), 1, "one token, one run: {started:?}");
    let run = ns
        .wait_for::<RunbookRun>(&started[0], "Succeeded", succeeded)
        .await;
    let condition = condition(&run.status.unwrap_or_default().conditions, "Succeeded")
        .cloned()
        .expect("Succeeded condition");
    assert_eq!(condition.status, "True", "{condition:?}");
}

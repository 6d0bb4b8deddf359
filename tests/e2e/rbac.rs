//! The Helm chart's RBAC is enough and nothing more: in namespaced mode the operator, acting as
//! the chart's ServiceAccount, runs a runbook in each listed namespace and leaves the others
//! alone; and without any one of the chart's rules, the refusal shows up as `Forbidden` on an
//! object (status or Event) rather than as a silent stall.
//!
//! The operators here authenticate as their ServiceAccount with a token, so the chart's
//! `impersonate` rule is checked too: without it, a step fails Forbidden naming the refused
//! impersonation. The objects act as their namespace's `default` ServiceAccount, which
//! `TestNamespace::new` grants the runner Role.
//!
//! (The whole suite also runs as the chart's ServiceAccount under `make test`: see
//! `support::OPERATOR_KUBECONFIG`.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_operator::runbook_run::RunbookRun;
use serde_json::{Value, json};

use crate::support::{PATIENCE, TestNamespace, run_yaml, token_kubeconfig};

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/runbook-operator")
}

/// `helm template` of the chart with `sets`, as JSON documents.
fn render(release_namespace: &str, sets: &[&str]) -> Vec<Value> {
    let helm = std::env::var_os("HELM").unwrap_or_else(|| {
        panic!("HELM is not set: run `make test` (it builds helm with `make tools`)")
    });
    let mut cmd = Command::new(helm);
    cmd.args(["template", "rb", "--kube-version", &server_version()])
        .arg(chart())
        .args(["--namespace", release_namespace]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_norway::Deserializer::from_str(&text)
        .filter_map(|doc| {
            let value: Value = serde::Deserialize::deserialize(doc).ok()?;
            (!value.is_null()).then_some(value)
        })
        .collect()
}

/// The local cluster's Kubernetes version, so the chart renders (and checks `kubeVersion`)
/// against it rather than helm's built-in default.
fn server_version() -> String {
    let out = crate::support::kubectl_in(None, &["version", "-o", "json"], None);
    let version: Value = serde_json::from_slice(&out.stdout).expect("kubectl version -o json");
    version["serverVersion"]["gitVersion"]
        .as_str()
        .expect("server version")
        .to_owned()
}

/// Every rule the chart grants in namespaced mode for `namespace` (its Role plus the leader
/// election Role), in order.
fn namespaced_rules(namespace: &str) -> Vec<Value> {
    let docs = render(namespace, &[&format!("watchNamespaces={{{namespace}}}")]);
    // Aggregated roles and the approver role are for people, not for the operator.
    assert!(
        !docs.iter().any(|d| d["kind"] == "ClusterRole"
            && !d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-approver"))
            && !d["metadata"]["labels"]
                .as_object()
                .is_some_and(|l| l.keys().any(|k| k.contains("aggregate-to")))),
        "namespaced mode renders a ClusterRole for the operator"
    );
    docs.iter()
        .filter(|d| d["kind"] == "Role")
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn rule_label(rule: &Value) -> String {
    format!(
        "{} {} {}",
        rule["apiGroups"], rule["resources"], rule["verbs"]
    )
}

/// Grants ServiceAccount `account` of `ns` exactly `rules` in `ns`.
fn grant(ns: &TestNamespace, account: &str, rules: &[Value]) {
    let objects = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": account}, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": account},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
             "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns.name}]},
        ]
    });
    let out = ns.kubectl(&["apply", "-f", "-"], Some(&objects.to_string()));
    assert!(
        out.status.success(),
        "grant: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Applies every example and starts the work that touches every kind of object the operator
/// writes: runs that scale, restart, set env, run Jobs, back up, rotate a Secret, roll back,
/// delete pods and patch a ConfigMap, and an on-demand backup.
fn exercise(ns: &TestNamespace) {
    ns.apply_examples();
    ns.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: \"1\"}\n");
    // No example scales a StatefulSet: a window over one needs the statefulsets rule.
    ns.apply(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 1\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: db:1}]}\n",
    );
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {name: db-quiet}\nspec:\n  schedule: {cron: \"0 3 1 1 *\", timeZone: UTC, duration: 1h}\n  targets:\n  - {kind: StatefulSet, name: db, scaleTo: 0}\n",
    );
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: rbac-extra}\nspec:\n  steps:\n  - {name: back, onFailure: Continue, rollback: {target: {kind: Deployment, name: app}}}\n  - {name: unstick, onFailure: Continue, deletePods: {selector: {matchLabels: {app: app}}, maxCount: 1}}\n  - {name: settings, onFailure: Continue, patch: {target: {apiVersion: v1, kind: ConfigMap, name: settings}, type: merge, patch: {data: {a: \"2\"}}}}\n",
    );
    let base = ("baseUrl", "http://127.0.0.1:9".to_owned());
    let image = ("image", "registry.example.com/shop/app:1.5.0".to_owned());
    for (runbook, params) in [
        ("rbac-extra", vec![]),
        ("db-idle-connections", vec![]),
        ("cache-flush", vec![]),
        ("rotate-api-token", vec![]),
        ("pre-maintenance-backup", vec![]),
        ("daily-health-check", vec![base.clone()]),
        ("deploy-with-backup", vec![base.clone(), image.clone()]),
    ] {
        ns.apply(&run_yaml(&format!("x-{runbook}"), runbook, "Run", &params));
    }
    let out = ns.kubectl(
        &[
            "annotate",
            "backuppolicy",
            "--all",
            "ops.runbook.dev/backup-now=rbac-check",
            "--overwrite",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where a refusal shows up: conditions and step journals of our objects, and Events.
#[derive(Debug, Default)]
struct Seen {
    status: Vec<String>,
    events: Vec<String>,
}

fn refusals(ns: &TestNamespace, words: &[String]) -> Seen {
    let mentions = |text: &str| {
        let lower = text.to_lowercase();
        lower.contains("forbidden") && words.iter().any(|w| text.contains(w.as_str()))
    };
    let mut seen = Seen::default();
    let out = ns.kubectl(
        &[
            "get",
            "runbooks,runbookruns,maintenancewindows,bluegreenreleases,backuppolicies",
            "-o",
            "json",
        ],
        None,
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    for item in list["items"].as_array().into_iter().flatten() {
        let mut texts = Vec::new();
        strings(&item["status"], &mut texts);
        if texts.iter().any(|t| mentions(t)) {
            seen.status.push(format!(
                "{}/{}",
                item["kind"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("")
            ));
        }
    }
    let out = ns.kubectl(&["get", "events", "-o", "json"], None);
    let events: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    for event in events["items"].as_array().into_iter().flatten() {
        let message = event["message"].as_str().unwrap_or("");
        if mentions(message) {
            seen.events.push(format!(
                "{} {}",
                event["reason"].as_str().unwrap_or(""),
                event["involvedObject"]["name"].as_str().unwrap_or("")
            ));
        }
    }
    seen
}

/// Every string in `value` (messages in conditions and step journals), unescaped.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The strings a refusal of `rule` names: `resource "deployments/scale"`, `jobs.batch`.
fn words_of(rule: &Value) -> Vec<String> {
    let groups: Vec<&str> = rule["apiGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut words = Vec::new();
    if rule["verbs"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v == "impersonate")
    {
        // The API server names the refused impersonation (`cannot impersonate-on:...`), and
        // the step's failure says the operator may not impersonate.
        words.push("impersonate".into());
    }
    for resource in rule["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        words.push(format!("resource \"{resource}\""));
        if resource.ends_with("/finalizers") {
            // The admission plugin names the object being created, not the owner.
            words.push("can't set finalizers on".into());
        }
        let base = resource.split('/').next().unwrap_or(resource);
        for group in &groups {
            words.push(if group.is_empty() {
                format!("{base} \"")
            } else {
                format!("{base}.{group}")
            });
        }
    }
    words
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn namespaced_chart_rbac_serves_the_listed_namespaces_only() {
    let home = TestNamespace::new("rbac-home").await;
    let other = TestNamespace::new("rbac-other").await;
    let unlisted = TestNamespace::new("rbac-unlisted").await;
    let docs = render(
        &home.name,
        &[&format!("watchNamespaces={{{},{}}}", home.name, other.name)],
    );
    let rbac: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ServiceAccount" | "Role" | "RoleBinding")
            )
        })
        .collect();
    let roles: Vec<&str> = rbac
        .iter()
        .filter(|d| d["kind"] == "Role")
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .collect();
    assert!(
        roles.contains(&home.name.as_str()) && roles.contains(&other.name.as_str()),
        "a Role per listed namespace: {roles:?}"
    );
    assert!(!roles.contains(&unlisted.name.as_str()));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": rbac});
    // The objects name their namespaces (the release's and the listed ones).
    let out = crate::support::kubectl_in(None, &["apply", "-f", "-"], Some(&list.to_string()));
    assert!(
        out.status.success(),
        "apply the chart's RBAC: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let account = rbac
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .and_then(|d| d["metadata"]["name"].as_str())
        .expect("the chart's ServiceAccount");
    let kubeconfig = token_kubeconfig(&home.name, account, "namespaced");
    let scale = |ns: &TestNamespace| {
        ns.apply(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: app}}\n  template:\n    metadata: {labels: {app: app}}\n    spec: {containers: [{name: app, image: app:1}]}\n",
        );
        ns.apply(
            "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: scale-up}\nspec:\n  steps:\n  - name: scale\n    scale: {target: {kind: Deployment, name: app}, replicas: 3}\n",
        );
        ns.apply(
            "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {name: scale-up-1}\nspec:\n  runbookRef: {name: scale-up}\n",
        );
    };
    scale(&home);
    scale(&other);
    scale(&unlisted);
    let operator = home.spawn_operator_with(
        "-namespaced",
        &[
            "--namespace",
            &other.name,
            "--leader-elect",
            "--leader-election-namespace",
            &home.name,
        ],
        "ok",
        Some(&kubeconfig),
    );
    for ns in [&home, &other] {
        let run = ns
            .wait_for::<RunbookRun>("scale-up-1", "finished", |r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.phase.map(|p| p.as_str()))
                    .is_some_and(|p| p == "Succeeded" || p == "Failed")
            })
            .await;
        assert_eq!(
            run.status.and_then(|s| s.phase).map(|p| p.as_str()),
            Some("Succeeded"),
            "the run in {} did not succeed; operator log: {}",
            ns.name,
            operator.log.display()
        );
    }
    let untouched = unlisted
        .api::<RunbookRun>()
        .get("scale-up-1")
        .await
        .expect("run");
    assert!(
        untouched.status.is_none(),
        "the operator acted in a namespace it was not given: {:?}",
        untouched.status
    );
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the chart's namespaced RBAC refused something: {}",
        operator.log.display()
    );
}

/// Where the refusal of a rule must show. Most rules guard work on an object, which reports
/// it (status, and an Event); a few cannot:
#[derive(Debug, PartialEq)]
enum Channel {
    /// The object the work was for: `Forbidden` in its status or an Event about it.
    Object,
    /// Leader election: the process stops at once with the API server's message (a pod in
    /// CrashLoopBackOff whose log says why), since it can never act.
    Exit,
    /// Listing the kind itself: the operator sees none of those objects, so `/readyz` answers
    /// 503 naming the refused list (the pod stays unready) and the log says it.
    Readiness,
    /// Events: they are best effort, the work goes on, and each refused Event is logged with
    /// the API server's message. (Writing it into status instead would make every status
    /// write publish an Event that fails and writes status again.)
    Log,
}

fn channel(rule: &Value) -> Channel {
    let groups = rule["apiGroups"].to_string();
    let resources: Vec<&str> = rule["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let verbs = rule["verbs"].to_string();
    if groups.contains("coordination.k8s.io") && verbs.contains("\"list\"") {
        // The runs' concurrency lock Leases: watched like a kind of its own.
        Channel::Readiness
    } else if groups.contains("coordination.k8s.io") {
        Channel::Exit
    } else if groups.contains("events.k8s.io") {
        Channel::Log
    } else if resources
        .iter()
        .all(|r| matches!(*r, "maintenancewindows" | "bluegreenreleases"))
    {
        Channel::Readiness
    } else {
        Channel::Object
    }
}

/// Whether every verb of `rule` is still granted on every resource it names by one of `others`
/// that is not limited by name. Here the watched namespace is also the release namespace, so
/// the rule of the runs' lock Leases (create among its verbs) covers leader election's
/// `create` on leases; with the release namespace apart from the watched ones, they are not
/// the same grant.
fn covered(rule: &Value, others: &[Value]) -> bool {
    let list = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let groups = list(&rule["apiGroups"]);
    let resources = list(&rule["resources"]);
    let verbs = list(&rule["verbs"]);
    others.iter().any(|other| {
        other.get("resourceNames").is_none()
            && groups.iter().all(|g| list(&other["apiGroups"]).contains(g))
            && resources
                .iter()
                .all(|r| list(&other["resources"]).contains(r))
            && verbs.iter().all(|v| list(&other["verbs"]).contains(v))
    })
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn without_any_one_chart_rule_the_refusal_shows_on_an_object() {
    let probe = TestNamespace::new("rbac-rules").await;
    let rules = namespaced_rules(&probe.name);
    assert!(rules.len() > 5, "the chart grants rules: {rules:?}");
    drop(probe);
    let mut missing = Vec::new();
    let mut report = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let mut fewer = rules.clone();
        fewer.remove(i);
        if covered(rule, &fewer) {
            report.push(format!(
                "{}: also granted by another rule in this namespace",
                rule_label(rule)
            ));
            continue;
        }
        let ns = TestNamespace::new(&format!("rbac-minus-{i}")).await;
        grant(&ns, "op", &fewer);
        let kubeconfig = token_kubeconfig(&ns.name, "op", &format!("minus-{i}"));
        let words = words_of(rule);
        let mentions = |text: &str| {
            text.to_lowercase().contains("forbidden") && words.iter().any(|w| text.contains(w))
        };
        let leader_args = [
            "--leader-elect",
            "--leader-election-namespace",
            ns.name.as_str(),
        ];
        let expected = channel(rule);
        let line = if expected == Channel::Exit {
            let out = Command::new(env!("CARGO_BIN_EXE_runbook-operator"))
                .args([
                    "run",
                    "--namespace",
                    &ns.name,
                    "--probe-addr",
                    "127.0.0.1:0",
                ])
                .args(leader_args)
                .env("KUBECONFIG", &kubeconfig)
                .env("NO_COLOR", "1")
                .output()
                .expect("run the operator");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let shown = !out.status.success() && mentions(&stderr);
            if !shown {
                missing.push(format!(
                    "{}: exit {:?}: {stderr}",
                    rule_label(rule),
                    out.status
                ));
            }
            format!("{}: exits: {}", rule_label(rule), out.status)
        } else {
            exercise(&ns);
            // Ready is not awaited: without a list or watch rule a cache never fills.
            let operator = ns.spawn_operator_with("", &leader_args, "", Some(&kubeconfig));
            let started = Instant::now();
            let (seen, readyz, logged) = loop {
                let seen = refusals(&ns, &words);
                let readyz = crate::support::http_get_any(&operator.probe, "/readyz");
                let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
                let logged = log.lines().any(mentions);
                let shown = match expected {
                    Channel::Object => !seen.status.is_empty() || !seen.events.is_empty(),
                    Channel::Readiness => readyz
                        .as_ref()
                        .is_some_and(|(code, body)| *code == 503 && mentions(body)),
                    Channel::Log => logged,
                    Channel::Exit => unreachable!(),
                };
                if shown || started.elapsed() > PATIENCE {
                    if !shown {
                        missing.push(format!(
                            "{} (expected {expected:?}; operator log: {})",
                            rule_label(rule),
                            operator.log.display()
                        ));
                    }
                    break (seen, readyz, logged);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            format!(
                "{}: status {:?}, events {:?}, readyz {:?}, log {}",
                rule_label(rule),
                seen.status,
                seen.events,
                readyz.map(|(code, _)| code),
                if logged { "yes" } else { "no" }
            )
        };
        eprintln!("[rbac] {line}");
        report.push(line);
    }
    assert!(
        missing.is_empty(),
        "without these rules the refusal did not show where it must:\n{}\n\nall:\n{}",
        missing.join("\n"),
        report.join("\n")
    );
}

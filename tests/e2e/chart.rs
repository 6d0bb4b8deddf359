//! The Helm chart: `helm lint --strict` and `helm template` of every `ci/` profile, every
//! rendered manifest schema-checked by kubeconform against JSON Schemas generated here from the
//! local cluster's own OpenAPI v3 (so: its Kubernetes version, our installed CRDs and the
//! prometheus-operator CRDs applied for the check), the values schema, the alert rules under
//! promtool, and the shape of the RBAC each profile renders.
//!
//! The tools are the ones `make tools` builds (`hack/tools.sh`); the Makefile exports their
//! paths as HELM, KUBECONFORM, PROMTOOL and MONITORING_CRDS.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::support::{PATIENCE, kubectl_in};

const RELEASE: &str = "runbook-operator";
const RELEASE_NAMESPACE: &str = "runbook-system";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/runbook-operator")
}

/// A tool path from the environment `make test` sets, or a failure that says how to get it.
pub(crate) fn tool(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run `make tools` and then `eval \"$(hack/tools.sh env)\"` (make test does both)"
        )
    });
    assert!(
        path.exists(),
        "{var}={} does not exist: run `make tools`",
        path.display()
    );
    path
}

pub(crate) fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()))
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every values profile under ci/, by name (`ha` for `ci/ha-values.yaml`).
fn profiles() -> BTreeMap<String, PathBuf> {
    let dir = chart_dir().join("ci");
    let profiles: BTreeMap<String, PathBuf> = std::fs::read_dir(&dir)
        .expect("charts/runbook-operator/ci exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter_map(|p| {
            let name = p
                .file_name()?
                .to_str()?
                .strip_suffix("-values.yaml")?
                .to_owned();
            Some((name, p))
        })
        .collect();
    for wanted in [
        "default",
        "namespaced",
        "ha",
        "monitoring",
        "templated-crds",
    ] {
        assert!(
            profiles.contains_key(wanted),
            "ci/{wanted}-values.yaml is missing"
        );
    }
    profiles
}

/// `helm template` of one profile (plus `extra` arguments); the manifests, or the failure.
fn template(values: Option<&Path>, extra: &[&str]) -> Result<String, String> {
    let helm = tool("HELM");
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        RELEASE_NAMESPACE,
    ];
    if let Some(values) = values {
        args.extend(["--values", values.to_str().expect("utf-8 path")]);
    }
    args.extend(extra);
    let out = run(&helm, &args);
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// The documents of a multi-document YAML stream, as JSON values (empty ones dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .filter_map(|doc| {
            let value: Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
            (!value.is_null()).then_some(value)
        })
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn helm_lint_strict_passes_on_every_profile() {
    let helm = tool("HELM");
    let chart = chart_dir();
    for (name, values) in profiles() {
        let out = run(
            &helm,
            &[
                "lint",
                "--strict",
                chart.to_str().expect("utf-8 path"),
                "--namespace",
                RELEASE_NAMESPACE,
                "--values",
                values.to_str().expect("utf-8 path"),
            ],
        );
        assert!(
            out.status.success(),
            "helm lint --strict failed for ci/{name}-values.yaml:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn the_values_schema_rejects_a_misspelt_key() {
    let err = template(None, &["--set", "replicaCuont=2"])
        .expect_err("a misspelt top-level key must fail the render");
    assert!(
        err.contains("replicaCuont") && err.contains("additional properties"),
        "the error names the unknown key: {err}"
    );
    let err = template(None, &["--set", "metrics.serviceMonitor.enabeld=true"])
        .expect_err("a misspelt nested key must fail the render");
    assert!(err.contains("enabeld"), "{err}");
    // And a right key with a wrong type.
    let err = template(None, &["--set", "replicaCount=two"])
        .expect_err("a string replica count must fail the render");
    assert!(err.contains("replicaCount"), "{err}");
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn rbac_follows_the_watch_mode_and_ha_gets_a_pdb() {
    let profiles = profiles();
    let render = |name: &str| {
        documents(&template(Some(&profiles[name]), &[]).unwrap_or_else(|e| panic!("{name}: {e}")))
    };

    // The approver role is for people (the verb `approve` the admission policy asks for),
    // bound by the admin; it grants the operator nothing.
    let approver = format!("{RELEASE}-approver");
    let for_people = |d: &Value| d["metadata"]["name"] == approver.as_str();

    // Cluster-wide: one ClusterRole with every rule, bound cluster-wide; no PDB for 1 replica.
    let default = render("default");
    let approver_role = default
        .iter()
        .find(|d| kind_of(d) == "ClusterRole" && for_people(d))
        .expect("the approver ClusterRole");
    assert!(
        approver_role["rules"][0]["verbs"]
            .as_array()
            .expect("verbs")
            .iter()
            .any(|v| v == "approve"),
        "{approver_role}"
    );
    for kind in [
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(
            default.iter().any(|d| kind_of(d) == kind),
            "admission.enabled (default) renders a {kind}"
        );
    }
    let without =
        documents(&template(None, &["--set", "admission.enabled=false"]).expect("render"));
    assert!(
        !without
            .iter()
            .any(|d| kind_of(d).ends_with("AdmissionPolicy")),
        "admission.enabled=false renders no admission policy"
    );
    let cluster_roles: Vec<&Value> = default
        .iter()
        .filter(|d| kind_of(d) == "ClusterRole" && !for_people(d))
        .collect();
    assert_eq!(
        cluster_roles.len(),
        1,
        "default renders one ClusterRole for the operator"
    );
    assert_eq!(
        cluster_roles[0]["metadata"]["name"], RELEASE,
        "the ClusterRole is named after the release"
    );
    assert!(
        default.iter().any(|d| kind_of(d) == "ClusterRoleBinding"),
        "default binds the ClusterRole"
    );
    assert!(
        !default.iter().any(|d| kind_of(d) == "PodDisruptionBudget"),
        "one replica gets no PodDisruptionBudget (it would block every drain)"
    );
    for doc in &default {
        for rule in doc["rules"].as_array().into_iter().flatten() {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                !verbs.contains(&"*"),
                "no wildcard verbs: {rule} in {}",
                doc["metadata"]["name"]
            );
            assert!(
                !rule["resources"]
                    .as_array()
                    .expect("resources")
                    .iter()
                    .any(|r| r == "*"),
                "no wildcard resources: {rule}"
            );
        }
    }
    // The operator's own rules: no write to what objects act on, no Secret read, and
    // impersonation of ServiceAccounts (any, by default) to act as the objects' identities.
    let rules: Vec<&Value> = cluster_roles[0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .collect();
    let acted_on = [
        "deployments",
        "deployments/scale",
        "statefulsets",
        "statefulsets/scale",
        "jobs",
        "cronjobs",
        "services",
        "pods",
        "secrets",
        "configmaps",
        "replicasets",
    ];
    for rule in &rules {
        let verbs = strings(&rule["verbs"]);
        for resource in strings(&rule["resources"]) {
            if resource == "secrets" {
                panic!("the operator reads or writes no Secret: {rule}");
            }
            if acted_on.contains(&resource) {
                assert!(
                    verbs.iter().all(|v| matches!(*v, "get" | "list" | "watch")),
                    "the operator only reads {resource}; its identities change it: {rule}"
                );
            }
        }
    }
    let impersonate = rules
        .iter()
        .find(|r| strings(&r["verbs"]) == ["impersonate"])
        .expect("an impersonate rule");
    assert_eq!(strings(&impersonate["resources"]), ["serviceaccounts"]);
    assert!(
        impersonate.get("resourceNames").is_none(),
        "any ServiceAccount by default: {impersonate}"
    );
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(
            default.iter().any(|d| kind_of(d) == kind),
            "admission.enabled renders a {kind}"
        );
    }
    let env = &default
        .iter()
        .find(|d| kind_of(d) == "Deployment")
        .expect("a Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "DEFAULT_SERVICE_ACCOUNT" && e["value"] == "default"),
        "defaultServiceAccount reaches the flag: {env}"
    );

    let lease_role = default
        .iter()
        .find(|d| {
            kind_of(d) == "Role" && d["metadata"]["name"] == "runbook-operator-leader-election"
        })
        .expect("a leader-election Role");
    assert_eq!(lease_role["metadata"]["namespace"], RELEASE_NAMESPACE);

    // Namespaced: a Role and RoleBinding in each listed namespace, the Lease Role in the
    // release namespace, and no ClusterRole or ClusterRoleBinding at all.
    let namespaced = render("namespaced");
    let role_namespaces: BTreeSet<&str> = namespaced
        .iter()
        .filter(|d| kind_of(d) == "Role" && d["metadata"]["name"] == RELEASE)
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(
        role_namespaces,
        BTreeSet::from(["team-a", "team-b"]),
        "one Role per listed namespace, none elsewhere"
    );
    let binding_namespaces: BTreeSet<&str> = namespaced
        .iter()
        .filter(|d| kind_of(d) == "RoleBinding" && d["metadata"]["name"] == RELEASE)
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(binding_namespaces, role_namespaces);
    for doc in namespaced.iter().filter(|d| !for_people(d)) {
        assert!(
            !matches!(kind_of(doc), "ClusterRole" | "ClusterRoleBinding"),
            "the namespaced profile needs nothing cluster-wide: {}",
            doc["metadata"]["name"]
        );
    }
    let role = namespaced
        .iter()
        .find(|d| kind_of(d) == "Role" && d["metadata"]["name"] == RELEASE)
        .expect("a Role");
    let impersonate = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| strings(&r["verbs"]) == ["impersonate"])
        .expect("an impersonate rule");
    assert_eq!(
        strings(&impersonate["resourceNames"]),
        ["runbook-runner", "default"],
        "rbac.impersonate.serviceAccountNames restricts the names"
    );
    let deployment = namespaced
        .iter()
        .find(|d| kind_of(d) == "Deployment")
        .expect("a Deployment");
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "WATCH_NAMESPACE" && e["value"] == "team-a,team-b"),
        "the operator is told to watch exactly the listed namespaces: {env}"
    );

    // HA: two replicas, leader election on, and a PDB keeping one.
    let ha = render("ha");
    let pdb = ha
        .iter()
        .find(|d| kind_of(d) == "PodDisruptionBudget")
        .expect("ha renders a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let deployment = ha
        .iter()
        .find(|d| kind_of(d) == "Deployment")
        .expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .expect("args")
            .iter()
            .any(|a| a == "--leader-elect"),
        "{args}"
    );
}

/// The value of the operator container's env var `name`, if set.
fn env_value(docs: &[Value], name: &str) -> Option<String> {
    let deployment = docs.iter().find(|d| kind_of(d) == "Deployment")?;
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array()?;
    env.iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn the_fence_values_reach_the_operator_and_the_network_policy() {
    let profiles = profiles();
    let render = |name: &str| {
        documents(&template(Some(&profiles[name]), &[]).unwrap_or_else(|e| panic!("{name}: {e}")))
    };
    // Watching every namespace leaves kube-system and the operator's own namespace alone.
    let default = render("default");
    assert_eq!(
        env_value(&default, "EXCLUDE_NAMESPACES").as_deref(),
        Some(format!("kube-system,{RELEASE_NAMESPACE}").as_str())
    );
    assert!(!default.iter().any(|d| kind_of(d) == "NetworkPolicy"));
    // Listed namespaces only: nothing to exclude.
    assert_eq!(env_value(&render("namespaced"), "EXCLUDE_NAMESPACES"), None);

    let locked = render("networkpolicy");
    assert_eq!(
        env_value(&locked, "DENY_EGRESS_CIDRS").as_deref(),
        Some("172.18.0.0/16")
    );
    assert_eq!(
        env_value(&locked, "ALLOW_PATCH_KINDS").as_deref(),
        Some("Role.rbac.authorization.k8s.io")
    );
    let policy = locked
        .iter()
        .find(|d| kind_of(d) == "NetworkPolicy")
        .expect("a NetworkPolicy");
    let egress = policy["spec"]["egress"].as_array().expect("egress rules");
    let cidrs: Vec<&str> = egress
        .iter()
        .flat_map(|rule| rule["to"].as_array().into_iter().flatten())
        .filter_map(|peer| peer["ipBlock"]["cidr"].as_str())
        .collect();
    assert_eq!(cidrs, ["10.96.0.1/32", "172.18.0.2/32", "10.96.0.0/12"]);
    assert!(
        egress.iter().any(|rule| rule["ports"][0]["port"] == 53),
        "DNS is allowed: {egress:?}"
    );
    // Turned on without the API server's addresses, the chart refuses to render.
    let err = template(None, &["--set", "networkPolicy.enabled=true"]).unwrap_err();
    assert!(err.contains("networkPolicy.apiServer.cidrs"), "{err}");
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn the_alert_receiver_gets_a_service_a_token_and_its_flags() {
    let default = documents(&template(None, &[]).expect("renders"));
    let deployment = default
        .iter()
        .find(|d| kind_of(d) == "Deployment")
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let args: Vec<&str> = strings(&pod["containers"][0]["args"]);
    let after = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1).copied())
    };
    assert_eq!(after("--alerts-addr"), Some("0.0.0.0:9443"), "{args:?}");
    assert_eq!(
        after("--alerts-token-file"),
        Some("/etc/runbook-operator/alerts/token")
    );
    assert!(
        !args.contains(&"--alerts-tls-cert-file"),
        "plain HTTP by default"
    );
    let secret = default
        .iter()
        .find(|d| kind_of(d) == "Secret" && d["metadata"]["name"] == "runbook-operator-alerts")
        .expect("the token Secret");
    assert!(
        secret["data"]["token"]
            .as_str()
            .is_some_and(|t| t.len() >= 40)
    );
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        "runbook-operator-alerts"
    );
    let service = default
        .iter()
        .find(|d| kind_of(d) == "Service" && d["metadata"]["name"] == "runbook-operator-alerts")
        .expect("the receiver's Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "alerts");

    // An existing Secret and TLS: no generated Secret, the TLS flags and volume.
    let tls = documents(
        &template(
            None,
            &[
                "--set",
                "alerts.existingSecret=am-token",
                "--set",
                "alerts.tls.secretName=am-tls",
            ],
        )
        .expect("renders"),
    );
    assert!(
        !tls.iter()
            .any(|d| kind_of(d) == "Secret" && d["metadata"]["name"] == "runbook-operator-alerts")
    );
    let pod = &tls
        .iter()
        .find(|d| kind_of(d) == "Deployment")
        .expect("a Deployment")["spec"]["template"]["spec"];
    let args = strings(&pod["containers"][0]["args"]);
    assert!(args.contains(&"--alerts-tls-cert-file"), "{args:?}");
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "am-token");
    assert_eq!(pod["volumes"][1]["secret"]["secretName"], "am-tls");

    // Off: no receiver, Service or Secret.
    let off = documents(&template(None, &["--set", "alerts.enabled=false"]).expect("renders"));
    assert!(
        !off.iter()
            .any(|d| d["metadata"]["name"] == "runbook-operator-alerts")
    );
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn the_prometheus_rule_passes_promtool() {
    let promtool = tool("PROMTOOL");
    let profiles = profiles();
    let rendered = documents(
        &template(Some(&profiles["monitoring"]), &[]).expect("monitoring profile renders"),
    );
    let rule = rendered
        .iter()
        .find(|d| kind_of(d) == "PrometheusRule")
        .expect("the monitoring profile renders a PrometheusRule");
    let dir = scratch("promtool");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        serde_norway::to_string(&rule["spec"]).expect("rules serialize"),
    )
    .expect("write rules");
    let out = run(
        &promtool,
        &["check", "rules", rules.to_str().expect("utf-8 path")],
    );
    assert!(
        out.status.success(),
        "promtool check rules on the rendered PrometheusRule:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The rule file's unit tests; they name their rule file relative to themselves.
    let tests = chart_dir().join("files/prometheus-rules.test.yaml");
    let out = run(
        &promtool,
        &["test", "rules", tests.to_str().expect("utf-8 path")],
    );
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The rendered groups are exactly the file's: nothing lost in the embedding.
    let file: Value = serde_norway::from_str(
        &std::fs::read_to_string(chart_dir().join("files/prometheus-rules.yaml"))
            .expect("files/prometheus-rules.yaml"),
    )
    .expect("rules file is YAML");
    assert_eq!(rule["spec"]["groups"], file["groups"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn every_rendered_manifest_matches_the_clusters_own_schemas() {
    let kubeconform = tool("KUBECONFORM");
    let client = kube::Client::try_default().await.expect("cluster client");
    let version = client.apiserver_version().await.expect("server version");
    let kube_version = version.git_version.trim_start_matches('v').to_owned();
    apply_monitoring_crds();

    let dir = scratch("kubeconform");
    let mut manifests = Vec::new();
    let mut group_versions = BTreeSet::new();
    for (name, values) in profiles() {
        // --include-crds: the crds/ files are checked as CustomResourceDefinitions too.
        let yaml = template(
            Some(&values),
            &["--include-crds", "--kube-version", &kube_version],
        )
        .unwrap_or_else(|e| panic!("ci/{name}-values.yaml does not render: {e}"));
        for doc in documents(&yaml) {
            if let Some(api_version) = doc["apiVersion"].as_str() {
                group_versions.insert(api_version.to_owned());
            }
        }
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write manifests");
        manifests.push(path);
    }
    let schemas = dir.join("schemas");
    let kinds = generate_schemas(&client, &group_versions, &schemas).await;
    assert!(
        kinds >= 20,
        "expected a schema for every kind of the rendered group-versions, got {kinds}"
    );

    let location = format!(
        "{}/{{{{ .ResourceKind }}}}_{{{{ .Group }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        schemas.display()
    );
    let check = |files: &[PathBuf]| {
        let mut args = vec![
            "-strict".to_owned(),
            "-summary".to_owned(),
            "-kubernetes-version".to_owned(),
            kube_version.clone(),
            "-schema-location".to_owned(),
            location.clone(),
        ];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&kubeconform, &args)
    };
    let out = check(&manifests);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "kubeconform rejected rendered manifests:\n{report}"
    );
    assert!(
        report.contains("Invalid: 0")
            && report.contains("Errors: 0")
            && report.contains("Skipped: 0"),
        "{report}"
    );

    // The same pipeline fails on what the cluster would refuse.
    let broken = [
        (
            "unknown-deployment-field",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  replicaz: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n",
            "replicaz",
        ),
        (
            "runbook-wrong-type",
            "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: bad}\nspec:\n  steps: [{name: wait, sleep: {duration: 5s}}]\n  historyLimits: {successful: ten}\n",
            "successful",
        ),
        (
            "service-monitor-unknown-field",
            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: bad}\nspec:\n  selector: {}\n  endpoints: [{port: http, intervall: 30s}]\n",
            "intervall",
        ),
    ];
    for (name, yaml, field) in broken {
        let path = dir.join(format!("broken-{name}.yaml"));
        std::fs::write(&path, yaml).expect("write broken manifest");
        let out = check(std::slice::from_ref(&path));
        let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !out.status.success(),
            "kubeconform accepted the broken manifest {name}:\n{report}"
        );
        assert!(
            report.contains(field) && report.contains("Invalid: 1"),
            "the rejection of {name} names {field:?}:\n{report}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the test target dir.
fn scratch(what: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("chart")
        .join(format!("{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Applies the ServiceMonitor and PrometheusRule CRDs `make tools` fetched, so the cluster's
/// OpenAPI describes them, and waits until they are served.
pub(crate) fn apply_monitoring_crds() {
    let dir = tool("MONITORING_CRDS");
    let out = kubectl_in(
        None,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            dir.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "applying the monitoring CRDs: {}",
        text(&out.stderr)
    );
    let out = kubectl_in(
        None,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "monitoring CRDs not established: {}",
        text(&out.stderr)
    );
}

/// GETs `path` as JSON; an answer that is not JSON (an empty body) is an error to retry.
async fn get_json(client: &kube::Client, path: &str) -> Result<Value, String> {
    let request = axum::http::Request::get(path)
        .body(Vec::new())
        .expect("request");
    let body = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: not JSON ({e}): {body:.200}"))
}

/// Writes one JSON Schema per kind of the listed group-versions into `out`, from the cluster's
/// OpenAPI v3 documents (found through the `/openapi/v3` index); returns how many kinds. A new
/// CRD appears in the index a moment after it is Established, so a missing one is polled for.
pub(crate) async fn generate_schemas(
    client: &kube::Client,
    group_versions: &BTreeSet<String>,
    out: &Path,
) -> usize {
    std::fs::create_dir_all(out).expect("schema dir");
    // The negative cases use these too.
    let wanted: BTreeSet<String> = group_versions
        .iter()
        .cloned()
        .chain(
            [
                "apps/v1",
                "ops.runbook.dev/v1alpha1",
                "monitoring.coreos.com/v1",
            ]
            .map(String::from),
        )
        .collect();
    let mut kinds = 0;
    for gv in &wanted {
        let key = if gv.contains('/') {
            format!("apis/{gv}")
        } else {
            format!("api/{gv}")
        };
        // Once the index lists the group-version, its document is served at /openapi/v3/<key>.
        // The index's own URL carries a hash that goes stale whenever any CRD changes (other
        // tests install some), and a stale hash is answered with a redirect and no body, so
        // the document is read without it.
        let started = Instant::now();
        let doc = loop {
            let attempt = match get_json(client, "/openapi/v3").await {
                Ok(index) if index["paths"][&key].is_object() => {
                    get_json(client, &format!("/openapi/v3/{key}")).await
                }
                Ok(_) => Err(format!("the cluster's /openapi/v3 does not list {key} yet")),
                Err(e) => Err(e),
            };
            match attempt {
                Ok(doc) => break doc,
                Err(e) => assert!(started.elapsed() < PATIENCE, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        kinds += schema::write_group_version(gv, &doc, out).unwrap_or_else(|e| panic!("{gv}: {e}"));
    }
    kinds
}

/// OpenAPI v3 (as the API server publishes it) to the standalone JSON Schemas kubeconform
/// loads. Per group-version one `_definitions_<group>_<version>.json` holds every component
/// schema, converted; per kind a small `<kind>_<group>_<version>.json` refers into it, so
/// recursive types (JSONSchemaProps) stay finite. The file names follow kubeconform's
/// template variables: `.ResourceKind` is the lowercased kind and `.Group` the part of
/// apiVersion before the slash (for core `v1` that is `v1` itself), `.ResourceAPIVersion` the
/// part after it.
mod schema {
    use super::*;

    /// Converts the document of the group-version `api_version` (`v1`, `apps/v1`); returns
    /// the number of kinds written.
    pub fn write_group_version(
        api_version: &str,
        doc: &Value,
        out: &Path,
    ) -> Result<usize, String> {
        let components = doc["components"]["schemas"]
            .as_object()
            .ok_or("no components.schemas")?;
        let mut definitions = Map::new();
        let mut kinds = Vec::new();
        for (name, schema) in components {
            for gvk in schema["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let group = gvk["group"].as_str().unwrap_or_default();
                let version = gvk["version"].as_str().ok_or("gvk without version")?;
                let kind = gvk["kind"].as_str().ok_or("gvk without kind")?;
                kinds.push((
                    group.to_owned(),
                    version.to_owned(),
                    kind.to_owned(),
                    name.clone(),
                ));
            }
            definitions.insert(name.clone(), convert(schema));
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let group_dir = |group: &str, version: &str| {
            if group.is_empty() {
                version.to_owned()
            } else {
                group.to_owned()
            }
        };
        let defs_file = format!("_definitions_{}_{version}.json", group_dir(group, version));
        write(
            &out.join(&defs_file),
            &json!({"$schema": "http://json-schema.org/draft-07/schema#", "definitions": definitions}),
        )?;
        let mut written = 0;
        for (group, version, kind, name) in kinds {
            // A document also describes kinds of other group-versions (autoscaling/v1 Scale in
            // apps/v1, meta's WatchEvent in every one); those come from their own document.
            if defs_file
                != format!(
                    "_definitions_{}_{version}.json",
                    group_dir(&group, &version)
                )
            {
                continue;
            }
            let file = format!(
                "{}_{}_{version}.json",
                kind.to_lowercase(),
                group_dir(&group, &version)
            );
            write(
                &out.join(file),
                &json!({
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "$ref": format!("{defs_file}#/definitions/{name}"),
                }),
            )?;
            written += 1;
        }
        Ok(written)
    }

    fn write(path: &Path, value: &Value) -> Result<(), String> {
        std::fs::write(path, serde_json::to_vec(value).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// One OpenAPI v3 schema as JSON Schema (draft 7): refs point into `definitions`,
    /// `nullable` admits null, int-or-string admits both, the `x-kubernetes-*` extensions go,
    /// and every object that lists its properties and does not preserve unknown fields
    /// admits no others (kubeconform's strict mode relies on the schema for that).
    pub fn convert(schema: &Value) -> Value {
        let Some(obj) = schema.as_object() else {
            return schema.clone();
        };
        let mut out = Map::new();
        for (key, value) in obj {
            match key.as_str() {
                "$ref" => {
                    let target = value.as_str().unwrap_or_default();
                    let name = target.trim_start_matches("#/components/schemas/");
                    out.insert(key.clone(), json!(format!("#/definitions/{name}")));
                }
                "properties" | "patternProperties" => {
                    let converted: Map<String, Value> = value
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), convert(v)))
                        .collect();
                    out.insert(key.clone(), Value::Object(converted));
                }
                "items" | "not" => {
                    out.insert(key.clone(), convert(value));
                }
                "additionalProperties" => {
                    out.insert(
                        key.clone(),
                        if value.is_object() {
                            convert(value)
                        } else {
                            value.clone()
                        },
                    );
                }
                "allOf" | "anyOf" | "oneOf" => {
                    let converted: Vec<Value> = value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(convert)
                        .collect();
                    out.insert(key.clone(), Value::Array(converted));
                }
                "nullable" => {}
                "format" if value == "int-or-string" => {}
                k if k.starts_with("x-") => {}
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        let flag = |name: &str| obj.get(name).and_then(Value::as_bool) == Some(true);
        if (flag("x-kubernetes-int-or-string")
            || obj.get("format") == Some(&json!("int-or-string")))
            && !out.contains_key("anyOf")
            && !out.contains_key("oneOf")
        {
            out.remove("type");
            out.insert(
                "anyOf".into(),
                json!([{"type": "integer"}, {"type": "string"}]),
            );
        }
        if out.contains_key("properties")
            && !out.contains_key("additionalProperties")
            && !flag("x-kubernetes-preserve-unknown-fields")
        {
            out.insert("additionalProperties".into(), json!(false));
        }
        if flag("nullable") {
            match out.get("type").cloned() {
                Some(Value::String(t)) => {
                    out.insert("type".into(), json!([t, "null"]));
                }
                _ => {
                    return json!({"anyOf": [{"type": "null"}, Value::Object(out)]});
                }
            }
        }
        Value::Object(out)
    }

    #[test]
    fn conversion_keeps_refs_resolvable_and_objects_strict() {
        let converted = convert(&json!({
            "type": "object",
            "properties": {
                "spec": {"allOf": [{"$ref": "#/components/schemas/a.Spec"}], "default": {}},
                "port": {"x-kubernetes-int-or-string": true},
                "note": {"type": "string", "nullable": true},
                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}}
            },
            "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "A"}]
        }));
        assert_eq!(converted["additionalProperties"], false);
        assert_eq!(
            converted["properties"]["spec"]["allOf"][0]["$ref"],
            "#/definitions/a.Spec"
        );
        assert_eq!(
            converted["properties"]["port"]["anyOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert_eq!(
            converted["properties"]["note"]["type"],
            json!(["string", "null"])
        );
        assert!(
            converted["properties"]["raw"]
                .get("additionalProperties")
                .is_none()
        );
        assert!(converted.get("x-kubernetes-group-version-kind").is_none());
    }
}

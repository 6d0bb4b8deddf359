//! The PrometheusRule examples (deploy/prometheus/rules/, kept out of examples/ because the
//! test cluster has no prometheus-operator CRDs to apply them to): each passes
//! `promtool check rules` on its groups and kubeconform against the PrometheusRule CRD
//! `hack/tools.sh` fetches, and every alert they define starts an example Runbook and back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chart::{apply_monitoring_crds, generate_schemas, run, text, tool};

/// The rule files, sorted.
fn rule_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/prometheus/rules/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read YAML");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("example-rules")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
#[ignore = "needs the local cluster and the tools: make test"]
async fn example_prometheus_rules_pass_promtool_and_kubeconform_and_start_example_runbooks() {
    let promtool = tool("PROMTOOL");
    let kubeconform = tool("KUBECONFORM");
    let dir = scratch();
    let files = rule_files();
    assert!(files.len() >= 3, "seeds 000, 001 and 004: {files:?}");

    let mut alerts = BTreeSet::new();
    for file in &files {
        for doc in documents(file) {
            assert_eq!(doc["kind"], "PrometheusRule", "{}", file.display());
            let groups = dir.join("groups.yaml");
            std::fs::write(
                &groups,
                serde_norway::to_string(&doc["spec"]).expect("groups as YAML"),
            )
            .expect("write groups");
            let out = run(
                &promtool,
                &["check", "rules", groups.to_str().expect("utf-8")],
            );
            assert!(
                out.status.success(),
                "promtool check rules {}:\n{}{}",
                file.display(),
                text(&out.stdout),
                text(&out.stderr)
            );
            for rule in doc["spec"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            {
                let alert = rule["alert"].as_str().expect("alerting rules only");
                let expr = rule["expr"].as_str().unwrap_or_default();
                assert!(
                    expr.contains("namespace"),
                    "{alert} must keep the namespace label (it scopes the Runbooks it may start)"
                );
                alerts.insert(alert.to_owned());
            }
        }
    }

    // Schema check against the CRD as the cluster publishes it.
    let client = kube::Client::try_default().await.expect("cluster client");
    apply_monitoring_crds();
    let schemas = dir.join("schemas");
    let wanted = BTreeSet::from(["monitoring.coreos.com/v1".to_owned()]);
    generate_schemas(&client, &wanted, &schemas).await;
    let location = format!(
        "{}/{{{{ .ResourceKind }}}}_{{{{ .Group }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        schemas.display()
    );
    let mut args = vec!["-strict", "-summary", "-schema-location", &location];
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = run(&kubeconform, &args);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "kubeconform:\n{report}");
    assert!(
        report.contains("Invalid: 0")
            && report.contains("Errors: 0")
            && report.contains("Skipped: 0"),
        "{report}"
    );

    // Every alert starts an example Runbook, and every example alert trigger names an alert.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut triggered = BTreeSet::new();
    for entry in std::fs::read_dir(examples).expect("examples/") {
        for doc in documents(&entry.expect("entry").path()) {
            if doc["kind"] != "Runbook" {
                continue;
            }
            for trigger in doc["spec"]["triggers"]["alerts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(name) = trigger["match"]["alertname"].as_str() {
                    triggered.insert(name.to_owned());
                }
            }
        }
    }
    assert_eq!(alerts, triggered, "rule alerts vs example Runbook triggers");
    let _ = std::fs::remove_dir_all(&dir);
}

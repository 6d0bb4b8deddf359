use super::env::{env_name_problems, pod_containers, wildcard_match};
use super::rollback::{comparable, prune};
use super::*;
use crate::step::{WorkloadKind, WorkloadRef};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, PodTemplateSpec};
use serde_json::json;

// ---- fixtures ---------------------------------------------------------------------------

fn deployment(v: Value) -> Deployment {
    serde_json::from_value(v).expect("a Deployment")
}

fn statefulset(v: Value) -> StatefulSet {
    serde_json::from_value(v).expect("a StatefulSet")
}

fn template(v: Value) -> PodTemplateSpec {
    serde_json::from_value(v).expect("a PodTemplateSpec")
}

const UID: &str = "5f0c6a8e-1111-4c8e-9c55-0d3a4f1b2c3d";

/// A Deployment as the API server returns it, mid-way or at rest depending on `status`.
fn app(spec_extra: Value, status: Value, generation: i64) -> Deployment {
    let mut v = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "app", "namespace": "shop", "uid": UID, "generation": generation,
            "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}",
                "team": "payments"
            }
        },
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "app"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "template": app_template("v3")
        },
        "status": status
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), spec_extra.as_object()) {
        for (k, val) in extra {
            spec.insert(k.clone(), val.clone());
        }
    }
    deployment(v)
}

fn app_template(image_tag: &str) -> Value {
    json!({
        "metadata": {"creationTimestamp": null, "labels": {"app": "app"}},
        "spec": {
            "containers": [{
                "name": "app",
                "image": format!("registry.example/app:{image_tag}"),
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler"
        }
    })
}

fn progressing(reason: &str, status: &str) -> Value {
    json!({"type": "Progressing", "status": status, "reason": reason,
           "message": "ReplicaSet \"app-7c9d\" is progressing."})
}

fn done_status() -> Value {
    json!({
        "observedGeneration": 7, "replicas": 4, "updatedReplicas": 4, "readyReplicas": 4,
        "availableReplicas": 4,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            progressing("NewReplicaSetAvailable", "True")
        ]
    })
}

// ---- deployment rollout status ----------------------------------------------------------

#[test]
fn deployment_done_when_all_replicas_updated_and_available() {
    let d = app(json!({}), done_status(), 7);
    let s = deployment_rollout_status(&d);
    assert_eq!(
        s,
        RolloutStatus::Done("deployment \"app\" successfully rolled out".into())
    );
    assert!(s.is_done());
}

#[test]
fn deployment_waits_for_new_replicas_mid_rollout() {
    let d = app(
        json!({}),
        json!({"observedGeneration": 7, "replicas": 5, "updatedReplicas": 1,
               "readyReplicas": 4, "availableReplicas": 4, "unavailableReplicas": 1,
               "conditions": [progressing("ReplicaSetUpdated", "True")]}),
        7,
    );
    assert_eq!(
        deployment_rollout_status(&d),
        RolloutStatus::Waiting(
            "Waiting for deployment \"app\" rollout to finish: 1 out of 4 new replicas have been updated..."
                .into()
        )
    );
}

#[test]
fn deployment_waits_for_old_replicas_to_terminate() {
    let d = app(
        json!({}),
        json!({"observedGeneration": 7, "replicas": 5, "updatedReplicas": 4,
               "availableReplicas": 4, "conditions": [progressing("ReplicaSetUpdated", "True")]}),
        7,
    );
    assert_eq!(
        deployment_rollout_status(&d).message(),
        "Waiting for deployment \"app\" rollout to finish: 1 old replicas are pending termination..."
    );
}

#[test]
fn deployment_waits_for_updated_replicas_to_become_available() {
    let d = app(
        json!({}),
        json!({"observedGeneration": 7, "replicas": 4, "updatedReplicas": 4,
               "readyReplicas": 2, "availableReplicas": 2}),
        7,
    );
    assert_eq!(
        deployment_rollout_status(&d),
        RolloutStatus::Waiting(
            "Waiting for deployment \"app\" rollout to finish: 2 of 4 updated replicas are available..."
                .into()
        )
    );
}

#[test]
fn deployment_fails_when_progress_deadline_exceeded() {
    let d = app(
        json!({}),
        json!({"observedGeneration": 7, "replicas": 5, "updatedReplicas": 1,
        "availableReplicas": 4,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            progressing(PROGRESS_DEADLINE_EXCEEDED, "False")
        ]}),
        7,
    );
    assert_eq!(
        deployment_rollout_status(&d),
        RolloutStatus::Failed("deployment \"app\" exceeded its progress deadline".into())
    );
}

#[test]
fn deployment_generation_not_observed_waits_even_with_old_deadline_condition() {
    // A new spec resets the deadline; the stale condition describes the old one.
    let mut status = done_status();
    status["observedGeneration"] = json!(6);
    status["conditions"] = json!([progressing(PROGRESS_DEADLINE_EXCEEDED, "False")]);
    let d = app(json!({}), status, 7);
    assert_eq!(
        deployment_rollout_status(&d),
        RolloutStatus::Waiting("Waiting for deployment spec update to be observed...".into())
    );
}

#[test]
fn deployment_without_status_waits_for_observation() {
    let d = app(json!({}), Value::Null, 1);
    assert_eq!(
        deployment_rollout_status(&d).message(),
        "Waiting for deployment spec update to be observed..."
    );
}

#[test]
fn deployment_scaled_to_zero_is_done() {
    let d = app(json!({"replicas": 0}), json!({"observedGeneration": 7}), 7);
    assert!(deployment_rollout_status(&d).is_done());
}

#[test]
fn paused_deployment_mid_rollout_keeps_waiting_like_kubectl() {
    let d = app(
        json!({"paused": true}),
        json!({"observedGeneration": 7, "replicas": 4, "updatedReplicas": 2,
               "availableReplicas": 4,
               "conditions": [progressing("DeploymentPaused", "Unknown")]}),
        7,
    );
    assert_eq!(
        deployment_rollout_status(&d).message(),
        "Waiting for deployment \"app\" rollout to finish: 2 out of 4 new replicas have been updated..."
    );
}

// ---- statefulset rollout status ---------------------------------------------------------

fn web(strategy: Value, status: Value, generation: i64) -> StatefulSet {
    let mut spec = json!({
        "replicas": 5,
        "serviceName": "web",
        "selector": {"matchLabels": {"app": "web"}},
        "podManagementPolicy": "OrderedReady",
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}
    });
    if !strategy.is_null() {
        spec["updateStrategy"] = strategy;
    }
    statefulset(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "spec": spec,
        "status": status
    }))
}

fn rolling(partition: i32) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}})
}

#[test]
fn statefulset_on_delete_fails_like_kubectl() {
    let s = web(
        json!({"type": "OnDelete"}),
        json!({"observedGeneration": 2, "replicas": 5, "readyReplicas": 5}),
        2,
    );
    assert_eq!(
        statefulset_rollout_status(&s),
        RolloutStatus::Failed(
            "rollout status is only available for RollingUpdate strategy type".into()
        )
    );
}

#[test]
fn statefulset_waits_until_generation_observed() {
    let never = web(rolling(0), json!({"replicas": 0}), 1);
    let stale = web(
        rolling(0),
        json!({"observedGeneration": 2, "replicas": 5, "readyReplicas": 5}),
        3,
    );
    for s in [never, stale] {
        assert_eq!(
            statefulset_rollout_status(&s),
            RolloutStatus::Waiting("Waiting for statefulset spec update to be observed...".into())
        );
    }
}

#[test]
fn statefulset_waits_for_ready_pods() {
    let s = web(
        rolling(0),
        json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 3, "updatedReplicas": 2}),
        3,
    );
    assert_eq!(
        statefulset_rollout_status(&s).message(),
        "Waiting for 2 pods to be ready..."
    );
}

#[test]
fn statefulset_partitioned_rollout_waits_then_completes() {
    let waiting = web(
        rolling(2),
        json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5,
               "updatedReplicas": 1, "currentRevision": "web-5d4b9c", "updateRevision": "web-7f8a6d"}),
        3,
    );
    assert_eq!(
        statefulset_rollout_status(&waiting),
        RolloutStatus::Waiting(
            "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated..."
                .into()
        )
    );
    let complete = web(
        rolling(2),
        json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5,
               "updatedReplicas": 3, "currentRevision": "web-5d4b9c", "updateRevision": "web-7f8a6d"}),
        3,
    );
    assert_eq!(
        statefulset_rollout_status(&complete),
        RolloutStatus::Done(
            "partitioned roll out complete: 3 new pods have been updated...".into()
        )
    );
}

#[test]
fn statefulset_defaulted_partition_zero_reports_partitioned_completion() {
    let s = web(
        rolling(0),
        json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5, "currentReplicas": 5,
               "updatedReplicas": 5, "currentRevision": "web-7f8a6d", "updateRevision": "web-7f8a6d"}),
        3,
    );
    assert_eq!(
        statefulset_rollout_status(&s).message(),
        "partitioned roll out complete: 5 new pods have been updated..."
    );
}

#[test]
fn statefulset_without_rolling_update_block_compares_revisions() {
    let mid = web(
        json!({"type": "RollingUpdate"}),
        json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5, "currentReplicas": 3,
               "updatedReplicas": 2, "currentRevision": "web-5d4b9c", "updateRevision": "web-7f8a6d"}),
        3,
    );
    assert_eq!(
        statefulset_rollout_status(&mid),
        RolloutStatus::Waiting(
            "waiting for statefulset rolling update to complete 2 pods at revision web-7f8a6d..."
                .into()
        )
    );
    let done = web(
        json!({"type": "RollingUpdate"}),
        json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5, "currentReplicas": 5,
               "updatedReplicas": 5, "currentRevision": "web-7f8a6d", "updateRevision": "web-7f8a6d"}),
        3,
    );
    assert_eq!(
        statefulset_rollout_status(&done),
        RolloutStatus::Done(
            "statefulset rolling update complete 5 pods at revision web-7f8a6d...".into()
        )
    );
}

#[test]
fn statefulset_absent_strategy_reads_as_rolling_update() {
    let s = web(
        Value::Null,
        json!({"observedGeneration": 3, "replicas": 5, "readyReplicas": 5, "currentReplicas": 5,
               "updatedReplicas": 5, "currentRevision": "web-1", "updateRevision": "web-1"}),
        3,
    );
    assert!(statefulset_rollout_status(&s).is_done());
}

// ---- restart ----------------------------------------------------------------------------

#[test]
fn restart_patch_sets_restarted_at_to_the_second_in_utc() {
    let now: Timestamp = "2024-05-01T12:30:45.987654321Z".parse().unwrap();
    assert_eq!(restarted_at(now), "2024-05-01T12:30:45Z");
    assert_eq!(
        restart_patch(now),
        json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2024-05-01T12:30:45Z"
        }}}}})
    );
    // A timestamp given with an offset is still written in UTC.
    let offset: Timestamp = "2024-05-01T14:30:45+02:00".parse().unwrap();
    assert_eq!(restarted_at(offset), "2024-05-01T12:30:45Z");
}

#[test]
fn restart_refuses_paused_deployment_with_kubectls_message() {
    let paused = app(json!({"paused": true}), done_status(), 7);
    let err = check_restartable(&paused).unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployments.apps \"app\" can't restart paused deployment (run rollout resume first)"
    );
    assert_eq!(check_restartable(&app(json!({}), done_status(), 7)), Ok(()));
    assert_eq!(
        check_restartable(&app(json!({"paused": false}), done_status(), 7)),
        Ok(())
    );
}

// ---- rollback ---------------------------------------------------------------------------

fn rs(
    name: &str,
    revision: Option<&str>,
    image_tag: &str,
    created: &str,
    owner_uid: &str,
) -> ReplicaSet {
    let mut annotations = json!({
        "deployment.kubernetes.io/desired-replicas": "4",
        "deployment.kubernetes.io/max-replicas": "5",
        "kubernetes.io/change-cause": format!("deploy {image_tag}")
    });
    if let Some(rev) = revision {
        annotations["deployment.kubernetes.io/revision"] = json!(rev);
    }
    let hash = name.rsplit('-').next().unwrap();
    let mut tmpl = app_template(image_tag);
    tmpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": name, "namespace": "shop", "creationTimestamp": created,
            "annotations": annotations,
            "labels": {"app": "app", "pod-template-hash": hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app",
                                 "uid": owner_uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"replicas": 0,
                 "selector": {"matchLabels": {"app": "app", "pod-template-hash": hash}},
                 "template": tmpl}
    }))
    .expect("a ReplicaSet")
}

/// Revisions 1..3 of `app`, the third current, listed out of order, plus strangers.
fn history() -> Vec<ReplicaSet> {
    let mut foreign_controller = rs(
        "app-9z9z9z",
        Some("9"),
        "v9",
        "2024-04-01T00:00:00Z",
        "other-uid",
    );
    foreign_controller.metadata.name = Some("app-9z9z9z".into());
    let mut not_controller = rs("app-8y8y8y", Some("8"), "v8", "2024-04-01T00:00:00Z", UID);
    if let Some(refs) = not_controller.metadata.owner_references.as_mut() {
        refs[0].controller = Some(false);
    }
    vec![
        rs("app-7c9d5f", Some("3"), "v3", "2024-04-03T00:00:00Z", UID),
        rs("app-5b8c4d", Some("1"), "v1", "2024-04-01T00:00:00Z", UID),
        foreign_controller,
        rs("app-6f7a2b", Some("2"), "v2", "2024-04-02T00:00:00Z", UID),
        not_controller,
    ]
}

#[test]
fn rollback_goes_to_previous_revision_with_kubectls_json_patch() {
    let d = app(json!({}), done_status(), 7);
    let plan = rollback_plan(&d, &history(), None).unwrap();
    assert_eq!(plan.from_revision, 3);
    assert_eq!(plan.to_revision, 2);
    assert_eq!(plan.replica_set, "app-6f7a2b");
    let RollbackChange::Patch { patch_type, patch } = plan.change else {
        panic!("expected a patch, got {:?}", plan.change);
    };
    assert_eq!(patch_type, PatchType::Json);
    assert_eq!(patch_type.content_type(), "application/json-patch+json");
    let ops = patch.as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0]["op"], "replace");
    assert_eq!(ops[0]["path"], "/spec/template");
    // The hash label is gone, the rest of the template is the ReplicaSet's.
    assert_eq!(ops[0]["value"]["metadata"]["labels"], json!({"app": "app"}));
    assert_eq!(
        ops[0]["value"]["spec"]["containers"][0]["image"],
        "registry.example/app:v2"
    );
    assert_eq!(ops[1]["op"], "replace");
    assert_eq!(ops[1]["path"], "/metadata/annotations");
    // Revision and last-applied stay the Deployment's; change-cause comes from the
    // ReplicaSet; desired/max replicas are not copied; "team" is dropped as by kubectl.
    assert_eq!(
        ops[1]["value"],
        json!({
            "deployment.kubernetes.io/revision": "3",
            "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}",
            "kubernetes.io/change-cause": "deploy v2"
        })
    );
}

#[test]
fn rollback_to_a_named_revision() {
    let d = app(json!({}), done_status(), 7);
    let plan = rollback_plan(&d, &history(), Some(1)).unwrap();
    assert_eq!((plan.from_revision, plan.to_revision), (3, 1));
    assert_eq!(plan.replica_set, "app-5b8c4d");
    let RollbackChange::Patch { patch, .. } = plan.change else {
        panic!("expected a patch");
    };
    assert_eq!(
        patch[0]["value"]["spec"]["containers"][0]["image"],
        "registry.example/app:v1"
    );
    // Some(0) is kubectl's --to-revision=0: the previous revision.
    assert_eq!(
        rollback_plan(&d, &history(), Some(0)).unwrap().to_revision,
        2
    );
}

#[test]
fn rollback_to_unknown_or_foreign_revision_is_not_found() {
    let d = app(json!({}), done_status(), 7);
    for wanted in [7, 9, 8, -1] {
        let err = rollback_plan(&d, &history(), Some(wanted)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unable to find specified revision {wanted} in history")
        );
    }
}

#[test]
fn rollback_to_current_revision_is_skipped() {
    let d = app(json!({}), done_status(), 7);
    let plan = rollback_plan(&d, &history(), Some(3)).unwrap();
    assert_eq!(
        plan.change,
        RollbackChange::Skip {
            message: "skipped rollback (current template already matches revision 3)".into()
        }
    );
}

#[test]
fn rollback_of_paused_deployment_is_refused() {
    let d = app(json!({"paused": true}), done_status(), 7);
    let err = rollback_plan(&d, &history(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/app' and try again"
    );
    // kubectl looks the revision up first, so a missing revision wins over paused.
    assert_eq!(
        rollback_plan(&d, &history(), Some(42)).unwrap_err(),
        Error::RevisionNotFound { revision: 42 }
    );
}

#[test]
fn rollback_without_history_fails() {
    let d = app(json!({}), done_status(), 7);
    let only = vec![rs(
        "app-7c9d5f",
        Some("3"),
        "v3",
        "2024-04-03T00:00:00Z",
        UID,
    )];
    let err = rollback_plan(&d, &only, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no rollout history found for deployment \"app\""
    );
    assert_eq!(
        rollback_plan(&d, &[], None).unwrap_err(),
        Error::NoRolloutHistory { name: "app".into() }
    );
}

#[test]
fn rollback_reads_missing_revision_as_zero_and_skips_unreadable_ones() {
    let d = app(json!({}), done_status(), 7);
    let set = vec![
        rs("app-7c9d5f", Some("3"), "v3", "2024-04-03T00:00:00Z", UID),
        rs("app-6f7a2b", Some("two"), "v2", "2024-04-02T00:00:00Z", UID),
        rs("app-5b8c4d", None, "v1", "2024-04-01T00:00:00Z", UID),
    ];
    let plan = rollback_plan(&d, &set, None).unwrap();
    assert_eq!(
        (plan.to_revision, plan.replica_set.as_str()),
        (0, "app-5b8c4d")
    );
}

#[test]
fn rollback_comparison_ignores_hash_label_and_empty_fields() {
    // The Deployment's template written without the empty maps the server echoes;
    // the current ReplicaSet still matches it.
    let mut d = app(json!({}), done_status(), 7);
    let mut bare = app_template("v3");
    bare["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("resources");
    bare["spec"]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    d.spec.as_mut().unwrap().template = template(bare);
    let plan = rollback_plan(&d, &history(), Some(3)).unwrap();
    assert!(matches!(plan.change, RollbackChange::Skip { .. }));
}

#[test]
fn rollback_previous_is_second_highest_not_second_listed() {
    // Revision 5 re-used the v1 template (a rollback earlier on), so history is 2, 4, 5.
    let d = app(json!({}), done_status(), 7);
    let set = vec![
        rs("app-aaaaaa", Some("4"), "v4", "2024-04-04T00:00:00Z", UID),
        rs("app-bbbbbb", Some("5"), "v3", "2024-04-01T00:00:00Z", UID),
        rs("app-cccccc", Some("2"), "v2", "2024-04-02T00:00:00Z", UID),
    ];
    let plan = rollback_plan(&d, &set, None).unwrap();
    assert_eq!((plan.from_revision, plan.to_revision), (5, 4));
    assert_eq!(plan.replica_set, "app-aaaaaa");
}

// ---- env --------------------------------------------------------------------------------

fn target() -> WorkloadRef {
    WorkloadRef {
        kind: WorkloadKind::Deployment,
        name: "app".into(),
    }
}

fn pod() -> PodTemplateSpec {
    template(json!({
        "metadata": {"labels": {"app": "app"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "app:v3",
                                "env": [{"name": "LOG_LEVEL", "value": "info"}]}],
            "containers": [
                {"name": "app", "image": "app:v3", "env": [
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "FEATURE_X", "value": "on"},
                    {"name": "EMPTY"}
                ]},
                {"name": "sidecar-proxy", "image": "envoy:1.30"}
            ]
        }
    }))
}

fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn prior_of<'a>(change: &'a EnvChange, container: &str, name: &str) -> &'a EnvPrior {
    change
        .priors
        .iter()
        .find(|p| p.container == container && p.name == name)
        .expect("a prior")
}

/// What the API server's strategic merge does with the env patches built here: containers
/// and env entries merged by name, `$patch: delete` removing, nulls clearing fields.
fn apply(t: &PodTemplateSpec, patch: &Value) -> PodTemplateSpec {
    fn merge(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(t), Some(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }
    let mut value = to_json(t);
    for list in ["containers", "initContainers"] {
        let Some(entries) = patch.pointer(&format!("/spec/template/spec/{list}")) else {
            continue;
        };
        for entry in entries.as_array().unwrap() {
            let containers = value["spec"][list].as_array_mut().unwrap();
            let c = containers
                .iter_mut()
                .find(|c| c["name"] == entry["name"])
                .expect("patched container exists");
            if c.get("env").is_none() {
                c["env"] = json!([]);
            }
            let env = c["env"].as_array_mut().unwrap();
            for op in entry["env"].as_array().unwrap() {
                if op["$patch"] == "delete" {
                    env.retain(|e| e["name"] != op["name"]);
                } else if let Some(e) = env.iter_mut().find(|e| e["name"] == op["name"]) {
                    merge(e, op);
                } else {
                    let mut fresh = json!({});
                    merge(&mut fresh, op);
                    env.push(fresh);
                }
            }
        }
    }
    template(value)
}

fn env_of(t: &PodTemplateSpec, container: &str) -> Vec<EnvVar> {
    pod_containers(t)
        .find(|(_, c)| c.name == container)
        .and_then(|(_, c)| c.env.clone())
        .unwrap_or_default()
}

#[test]
fn env_set_new_variable_appends_and_records_absent() {
    let t = pod();
    let change = env_change(
        &target(),
        &t,
        Some("app"),
        &set(&[("REGION", "eu-west-1")]),
        &[],
    )
    .unwrap();
    assert!(change.changed);
    assert_eq!(
        change.patch,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "REGION", "value": "eu-west-1"}]}
        ]}}}})
    );
    assert_eq!(change.priors.len(), 1);
    assert_eq!(
        change.priors[0],
        EnvPrior {
            container: "app".into(),
            init_container: false,
            name: "REGION".into(),
            prior: Prior::Absent,
            changed: true
        }
    );
    let after = apply(&t, &change.patch);
    let env = env_of(&after, "app");
    assert_eq!(env.last().unwrap().name, "REGION");
    assert_eq!(env.len(), 5);
}

#[test]
fn env_set_existing_variable_replaces_in_place_and_records_old_value() {
    let t = pod();
    let change = env_change(
        &target(),
        &t,
        Some("app"),
        &set(&[("LOG_LEVEL", "debug")]),
        &[],
    )
    .unwrap();
    assert_eq!(
        prior_of(&change, "app", "LOG_LEVEL").prior,
        Prior::Value("info".into())
    );
    let after = apply(&t, &change.patch);
    let env = env_of(&after, "app");
    assert_eq!(env[0].name, "LOG_LEVEL");
    assert_eq!(env[0].value.as_deref(), Some("debug"));
}

#[test]
fn env_same_value_is_a_no_op() {
    let t = pod();
    let change = env_change(
        &target(),
        &t,
        Some("app"),
        &set(&[("LOG_LEVEL", "info"), ("EMPTY", "")]),
        &names(&["NOT_THERE"]),
    )
    .unwrap();
    assert!(!change.changed);
    assert_eq!(change.patch, json!({}));
    assert!(change.priors.iter().all(|p| !p.changed));
    assert_eq!(
        prior_of(&change, "app", "EMPTY").prior,
        Prior::Value(String::new())
    );
    assert_eq!(prior_of(&change, "app", "NOT_THERE").prior, Prior::Absent);
}

#[test]
fn env_plain_value_over_value_from_clears_the_source() {
    let t = pod();
    let change = env_change(
        &target(),
        &t,
        Some("app"),
        &set(&[("DB_PASSWORD", "hunter2")]),
        &[],
    )
    .unwrap();
    let prior = &prior_of(&change, "app", "DB_PASSWORD").prior;
    assert!(matches!(prior, Prior::ValueFrom(_)));
    assert_eq!(prior.describe(), "secret db, key password");
    assert_eq!(
        change.patch["spec"]["template"]["spec"]["containers"][0]["env"][0],
        json!({"name": "DB_PASSWORD", "value": "hunter2", "valueFrom": null})
    );
    let after = apply(&t, &change.patch);
    let var = env_of(&after, "app")
        .into_iter()
        .find(|e| e.name == "DB_PASSWORD")
        .unwrap();
    assert_eq!(var.value.as_deref(), Some("hunter2"));
    assert!(var.value_from.is_none());
}

#[test]
fn env_unset_deletes_existing_and_ignores_absent() {
    let t = pod();
    let change = env_change(
        &target(),
        &t,
        Some("app"),
        &[],
        &names(&["FEATURE_X", "GHOST"]),
    )
    .unwrap();
    assert_eq!(
        change.patch["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"$patch": "delete", "name": "FEATURE_X"}])
    );
    assert_eq!(
        prior_of(&change, "app", "FEATURE_X").prior,
        Prior::Value("on".into())
    );
    assert!(!prior_of(&change, "app", "GHOST").changed);
    let after = apply(&t, &change.patch);
    assert!(env_of(&after, "app").iter().all(|e| e.name != "FEATURE_X"));
}

#[test]
fn env_without_container_changes_every_container_and_init_container() {
    let t = pod();
    let change = env_change(&target(), &t, None, &set(&[("LOG_LEVEL", "debug")]), &[]).unwrap();
    assert_eq!(
        change.patch,
        json!({"spec": {"template": {"spec": {
            "containers": [
                {"name": "app", "env": [{"name": "LOG_LEVEL", "value": "debug"}]},
                {"name": "sidecar-proxy", "env": [{"name": "LOG_LEVEL", "value": "debug"}]}
            ],
            "initContainers": [
                {"name": "migrate", "env": [{"name": "LOG_LEVEL", "value": "debug"}]}
            ]
        }}}})
    );
    let order: Vec<(&str, bool)> = change
        .priors
        .iter()
        .map(|p| (p.container.as_str(), p.init_container))
        .collect();
    assert_eq!(
        order,
        [("app", false), ("sidecar-proxy", false), ("migrate", true)]
    );
    assert_eq!(
        prior_of(&change, "sidecar-proxy", "LOG_LEVEL").prior,
        Prior::Absent
    );
    // "*" is the same as no container.
    let star = env_change(
        &target(),
        &t,
        Some("*"),
        &set(&[("LOG_LEVEL", "debug")]),
        &[],
    )
    .unwrap();
    assert_eq!(star, change);
}

#[test]
fn env_container_wildcards_are_anchored() {
    let t = pod();
    let side = env_change(&target(), &t, Some("sidecar-*"), &set(&[("A", "1")]), &[]).unwrap();
    let touched: Vec<&str> = side.priors.iter().map(|p| p.container.as_str()).collect();
    assert_eq!(touched, ["sidecar-proxy"]);
    let ends = env_change(&target(), &t, Some("*-proxy"), &set(&[("A", "1")]), &[]).unwrap();
    assert_eq!(ends.priors[0].container, "sidecar-proxy");
    assert!(env_change(&target(), &t, Some("proxy*"), &set(&[("A", "1")]), &[]).is_err());
    assert!(wildcard_match("a*b*c", "axxbyyc"));
    assert!(wildcard_match("a*b*c", "abc"));
    assert!(!wildcard_match("a*b*c", "abcx"));
    assert!(wildcard_match("m*e", "migrate"));
    assert!(!wildcard_match("app", "app2"));
}

#[test]
fn env_unknown_container_is_an_error_naming_it() {
    let err = env_change(&target(), &pod(), Some("worker"), &set(&[("A", "1")]), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Deployment/app does not have any containers matching \"worker\""
    );
    let sts = WorkloadRef {
        kind: WorkloadKind::StatefulSet,
        name: "web".into(),
    };
    let err = env_change(&sts, &pod(), Some("worker"), &set(&[("A", "1")]), &[]).unwrap_err();
    assert_eq!(
        err,
        Error::NoMatchingContainers {
            kind: "StatefulSet".into(),
            name: "web".into(),
            selector: "worker".into()
        }
    );
}

#[test]
fn env_rejects_what_kubectl_rejects() {
    let t = pod();
    assert_eq!(
        env_change(&target(), &t, None, &[], &[])
            .unwrap_err()
            .to_string(),
        "at least one environment variable must be provided"
    );
    let err = env_change(&target(), &t, None, &set(&[("A", "1")]), &names(&["A"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "can not both modify and remove the same environment variable in the same command"
    );
    let err = env_change(&target(), &t, None, &set(&[("1ST", "x")]), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"1ST\" is not a valid key name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
    );
    let err = env_change(&target(), &t, None, &set(&[("..", "x")]), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"..\" is not a valid key name: must not be '..'"
    );
    let err = env_change(&target(), &t, None, &set(&[("..x", "x")]), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"..x\" is not a valid key name: must not start with '..'"
    );
    let err = env_change(&target(), &t, None, &set(&[("", "x")]), &[]).unwrap_err();
    assert!(matches!(err, Error::InvalidEnvName { .. }));
    // Names kubectl accepts.
    for ok in ["my.env-name", "MY_ENV.NAME", "_x", "-x", "MyEnvName1"] {
        assert!(env_name_problems(ok).is_empty(), "{ok}");
    }
}

#[test]
fn env_first_of_repeated_names_wins() {
    let t = pod();
    let change = env_change(
        &target(),
        &t,
        Some("app"),
        &set(&[("REGION", "eu"), ("REGION", "us")]),
        &[],
    )
    .unwrap();
    assert_eq!(change.priors.len(), 1);
    assert_eq!(
        change.patch["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "REGION", "value": "eu"}])
    );
}

#[test]
fn env_change_then_restore_round_trips_exactly() {
    let t = pod();
    let change = env_change(
        &target(),
        &t,
        None,
        &set(&[
            ("LOG_LEVEL", "debug"),
            ("DB_PASSWORD", "plain"),
            ("REGION", "eu"),
        ]),
        &names(&["FEATURE_X", "EMPTY"]),
    )
    .unwrap();
    let changed = apply(&t, &change.patch);
    assert_ne!(comparable(&changed), comparable(&t));

    let restore = env_restore(&changed, &change.priors);
    assert!(restore.changed);
    let restored = apply(&changed, &restore.patch);
    // Values and sources are back; re-added variables are appended, not re-positioned.
    for container in ["app", "sidecar-proxy", "migrate"] {
        let mut before = env_of(&t, container);
        let mut after = env_of(&restored, container);
        before.sort_by(|a, b| a.name.cmp(&b.name));
        after.sort_by(|a, b| a.name.cmp(&b.name));
        // The API server stores `value: ""` as no value (Go's omitempty); compare alike.
        let strip = |v: Vec<EnvVar>| -> Vec<Value> {
            v.iter()
                .map(|e| {
                    let mut j = to_json(e);
                    if j["value"] == "" {
                        j["value"] = Value::Null;
                    }
                    prune(&mut j);
                    j
                })
                .collect()
        };
        assert_eq!(strip(after), strip(before), "{container}");
    }
    // The sidecar had no env; REGION and LOG_LEVEL are deleted again.
    assert!(env_of(&restored, "sidecar-proxy").is_empty());
    // The source comes back without a plain value.
    let ops = &restore.patch["spec"]["template"]["spec"]["containers"][0]["env"];
    let db = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "DB_PASSWORD")
        .unwrap();
    assert_eq!(
        db,
        &json!({"name": "DB_PASSWORD", "value": null,
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}})
    );
    // Restoring again is a no-op.
    assert!(!env_restore(&restored, &change.priors).changed);
}

#[test]
fn env_restore_touches_only_changed_variables_first_record_wins_and_skips_gone_containers() {
    let t = pod();
    let records = vec![
        // Unchanged by the original change: left alone even though it differs now.
        EnvPrior {
            container: "app".into(),
            init_container: false,
            name: "LOG_LEVEL".into(),
            prior: Prior::Value("warn".into()),
            changed: false,
        },
        EnvPrior {
            container: "app".into(),
            init_container: false,
            name: "FEATURE_X".into(),
            prior: Prior::Value("off".into()),
            changed: true,
        },
        // A later change's record of the same variable: ignored.
        EnvPrior {
            container: "app".into(),
            init_container: false,
            name: "FEATURE_X".into(),
            prior: Prior::Value("on".into()),
            changed: true,
        },
        EnvPrior {
            container: "removed-sidecar".into(),
            init_container: false,
            name: "X".into(),
            prior: Prior::Absent,
            changed: true,
        },
        // Same name, but recorded for the init container list: not the app container.
        EnvPrior {
            container: "app".into(),
            init_container: true,
            name: "FEATURE_X".into(),
            prior: Prior::Absent,
            changed: true,
        },
    ];
    let restore = env_restore(&t, &records);
    assert_eq!(
        restore.patch,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "FEATURE_X", "value": "off"}]}
        ]}}}})
    );
    assert_eq!(restore.priors.len(), 1);
    assert_eq!(restore.priors[0].prior, Prior::Value("on".into()));
}

#[test]
fn env_restore_of_a_different_source_kind_nulls_the_old_one() {
    let t = template(json!({"spec": {"containers": [{"name": "app", "env": [
        {"name": "TOKEN", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "token", "optional": true}}}
    ]}]}}));
    let record = EnvPrior {
        container: "app".into(),
        init_container: false,
        name: "TOKEN".into(),
        prior: Prior::ValueFrom(Box::new(
            serde_json::from_value(json!({"secretKeyRef": {"name": "api", "key": "token"}}))
                .unwrap(),
        )),
        changed: true,
    };
    let restore = env_restore(&t, std::slice::from_ref(&record));
    assert_eq!(
        restore.patch["spec"]["template"]["spec"]["containers"][0]["env"][0],
        json!({"name": "TOKEN", "valueFrom": {
            "secretKeyRef": {"name": "api", "key": "token"}, "configMapKeyRef": null
        }})
    );
    let after = apply(&t, &restore.patch);
    let var = &env_of(&after, "app")[0];
    assert_eq!(var.value_from, record_source(&record));
}

fn record_source(p: &EnvPrior) -> Option<EnvVarSource> {
    match &p.prior {
        Prior::ValueFrom(src) => Some((**src).clone()),
        _ => None,
    }
}

#[test]
fn prior_descriptions_follow_kubectl_list_wording() {
    let src = |v: Value| Prior::ValueFrom(Box::new(serde_json::from_value(v).unwrap()));
    assert_eq!(Prior::Absent.describe(), "absent");
    assert_eq!(Prior::Value("a b".into()).describe(), "\"a b\"");
    assert_eq!(
        src(json!({"configMapKeyRef": {"name": "cfg", "key": "k"}})).describe(),
        "configmap cfg, key k"
    );
    assert_eq!(
        src(json!({"fieldRef": {"fieldPath": "metadata.name"}})).describe(),
        "field path metadata.name"
    );
    assert_eq!(
        src(json!({"resourceFieldRef": {"containerName": "app", "resource": "limits.cpu"}}))
            .describe(),
        "resource field app/limits.cpu"
    );
    assert_eq!(
        src(json!({"resourceFieldRef": {"resource": "requests.memory"}})).describe(),
        "resource field requests.memory"
    );
    assert_eq!(
        src(json!({"fileKeyRef": {"volumeName": "env", "path": "app.env", "key": "K"}})).describe(),
        "file env/app.env, key K"
    );
    assert_eq!(src(json!({})).describe(), "invalid valueFrom");
}

#[test]
fn env_prior_records_serialize_as_envvar_shapes_and_have_a_schema() {
    let records = vec![
        EnvPrior {
            container: "app".into(),
            init_container: false,
            name: "A".into(),
            prior: Prior::Absent,
            changed: true,
        },
        EnvPrior {
            container: "migrate".into(),
            init_container: true,
            name: "B".into(),
            prior: Prior::Value(String::new()),
            changed: true,
        },
        EnvPrior {
            container: "app".into(),
            init_container: false,
            name: "C".into(),
            prior: Prior::ValueFrom(Box::new(
                serde_json::from_value(json!({"secretKeyRef": {"name": "db", "key": "pw"}}))
                    .unwrap(),
            )),
            changed: false,
        },
    ];
    let wire = serde_json::to_value(&records).unwrap();
    assert_eq!(
        wire,
        json!([
            {"container": "app", "name": "A", "prior": {}, "changed": true},
            {"container": "migrate", "initContainer": true, "name": "B", "prior": {"value": ""}, "changed": true},
            {"container": "app", "name": "C", "prior": {"valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}, "changed": false}
        ])
    );
    let back: Vec<EnvPrior> = serde_json::from_value(wire).unwrap();
    assert_eq!(back, records);

    let schema = serde_json::to_value(schemars::schema_for!(EnvPrior)).unwrap();
    let text = schema.to_string();
    assert!(text.contains("valueFrom"), "{text}");
    assert!(text.contains("initContainer"), "{text}");
}

// ---- scale ------------------------------------------------------------------------------

#[test]
fn scale_target_absolute_relative_and_bounds() {
    assert_eq!(scale_target(3, Some(5), None), 5);
    assert_eq!(scale_target(3, Some(0), None), 0);
    assert_eq!(scale_target(3, None, Some(2)), 5);
    assert_eq!(scale_target(3, None, Some(-1)), 2);
    assert_eq!(scale_target(3, None, Some(-10)), 0);
    assert_eq!(scale_target(3, None, None), 3);
    assert_eq!(scale_target(i32::MAX - 1, None, Some(10)), i32::MAX);
    assert_eq!(scale_target(0, None, Some(i32::MIN)), 0);
    assert_eq!(scale_target(3, Some(-2), None), 0);
    // An absolute count wins over a delta.
    assert_eq!(scale_target(3, Some(1), Some(5)), 1);
}

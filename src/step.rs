//! Step: one typed action of a Runbook (also used for BlueGreenRelease validation).
//!
//! The API server enforces the shape (exactly one action, enums, durations, replica bounds)
//! through CEL rules generated from these types; [`validate_steps`] checks what CEL cannot.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::SpecProblem;
use crate::duration::Duration;
use crate::embedded::Embedded;
pub use crate::secret_ref::{HttpHeader, SecretKeyRef, ValueFrom, templated_host};

pub mod int_or_template;
pub mod metric;
pub mod refs;
pub use int_or_template::IntOrTemplate;
pub use metric::{QueryAction, WaitForAction};

/// Every action field a Step may carry; CEL requires exactly one of them.
pub const ACTIONS: [&str; 17] = [
    "scale",
    "restart",
    "setEnv",
    "waitForRollout",
    "rollback",
    "job",
    "http",
    "patch",
    "deletePods",
    "rotateSecret",
    "approval",
    "sleep",
    "notify",
    "backup",
    "query",
    "waitFor",
    "restore",
];

/// The most steps a list may hold; a bound keeps CEL rule costs predictable.
pub const MAX_STEPS: u32 = 64;

/// One step of a procedure: common settings plus exactly one action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.scale), has(self.restart), has(self.setEnv), has(self.waitForRollout), has(self.rollback), has(self.job), has(self.http), has(self.patch), has(self.deletePods), has(self.rotateSecret), has(self.approval), has(self.sleep), has(self.notify), has(self.backup), has(self.query), has(self.waitFor), has(self.restore)].filter(x, x).size() == 1").message("a step needs exactly one action: one of scale, restart, setEnv, waitForRollout, rollback, job, http, patch, deletePods, rotateSecret, approval, sleep, notify, backup, query, waitFor, restore"))]
pub struct Step {
    /// Name of the step, a DNS label unique among the steps and finally steps of its list.
    /// It names the step in status, Events and the approve annotation.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Longest time one attempt of the step may take before it fails (e.g. `5m`).
    /// At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// How often and how fast to retry a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// What a failure of this step does to the run: `Abort` (default) skips the remaining
    /// steps and goes to `finally`; `Continue` records the failure and goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Run the step only when this CEL expression is true; otherwise the step is `Skipped`
    /// with reason `ConditionFalse`. It reads `params` (typed: `params.replicas > 3`),
    /// `steps` (each earlier step's `phase` and `outputs`, as text:
    /// `steps.verify.phase == 'Failed'`, `int(steps['scale-down'].outputs.previousReplicas) > 0`;
    /// a step name with `-` needs the `steps['name']` form) and `run` (`name`, `namespace`,
    /// `mode`, `failed`: a main step failed with onFailure Abort, `cancelled`). In `finally`, `when: run.failed`
    /// makes a rollback that runs only when the procedure failed. An expression that cannot be
    /// evaluated (a missing output, a type error) fails the step with reason `InvalidSpec`.
    /// Example: `when: "steps.verify.phase == 'Failed'"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub when: Option<String>,

    /// Set a Deployment's or StatefulSet's replica count through the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleAction>,
    /// Rollout-restart a workload as `kubectl rollout restart` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartAction>,
    /// Add, replace or remove environment variables of a workload's containers by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_env: Option<SetEnvAction>,
    /// Wait until a workload's rollout is complete, as `kubectl rollout status` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_rollout: Option<WaitForRolloutAction>,
    /// Roll a Deployment back to an earlier revision, as `kubectl rollout undo` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackAction>,
    /// Run a Job (from a template or a CronJob) and wait for it to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobAction>,
    /// Send one HTTP request and check the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAction>,
    /// Patch any object in the same namespace (escape hatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchAction>,
    /// Delete pods matching a label selector (e.g. stuck workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_pods: Option<DeletePodsAction>,
    /// Write a new random value into a Secret key, then restart the workloads that use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_secret: Option<RotateSecretAction>,
    /// Wait until a person sets the annotation `ops.runbook.dev/approve: <step name>` on the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalAction>,
    /// Wait for a fixed time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepAction>,
    /// Send a message to one sink: a chat webhook (`url`/`urlFrom`, posting `{"text": ...}`),
    /// `slack`, `msteams`, `pagerduty`, `webhook` (JSON template) or `email` (SMTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyAction>,
    /// Start a backup of a BackupPolicy now and wait for it (and its verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupAction>,
    /// Measure a PromQL expression and judge each measurement (Argo Rollouts' analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryAction>,
    /// Wait until a condition on a PromQL result holds (e.g. the queue is below 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitForAction>,
    /// Restore a backup of a BackupPolicy with its `spec.restore` Job and wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreAction>,
}

impl Step {
    /// The integer fields a template may fill: field path, value, and the smallest value
    /// allowed.
    pub fn integer_fields(&self) -> [(&'static str, Option<&IntOrTemplate>, i32); 4] {
        [
            (
                "scale.replicas",
                self.scale.as_ref().and_then(|s| s.replicas.as_ref()),
                0,
            ),
            (
                "scale.by",
                self.scale.as_ref().and_then(|s| s.by.as_ref()),
                i32::MIN,
            ),
            (
                "rollback.toRevision",
                self.rollback.as_ref().and_then(|r| r.to_revision.as_ref()),
                1,
            ),
            (
                "deletePods.maxCount",
                self.delete_pods.as_ref().and_then(|d| d.max_count.as_ref()),
                1,
            ),
        ]
    }

    /// The name of the action field this step sets, if exactly one is set.
    pub fn action_name(&self) -> Option<&'static str> {
        let set = self.actions_set();
        match set.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    fn actions_set(&self) -> Vec<&'static str> {
        let flags = [
            self.scale.is_some(),
            self.restart.is_some(),
            self.set_env.is_some(),
            self.wait_for_rollout.is_some(),
            self.rollback.is_some(),
            self.job.is_some(),
            self.http.is_some(),
            self.patch.is_some(),
            self.delete_pods.is_some(),
            self.rotate_secret.is_some(),
            self.approval.is_some(),
            self.sleep.is_some(),
            self.notify.is_some(),
            self.backup.is_some(),
            self.query.is_some(),
            self.wait_for.is_some(),
            self.restore.is_some(),
        ];
        ACTIONS
            .iter()
            .zip(flags)
            .filter_map(|(name, set)| set.then_some(*name))
            .collect()
    }
}

/// Retry policy of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// How many times to retry after the first failed attempt (0 to 10).
    #[schemars(range(min = 0, max = 10))]
    pub limit: i32,
    /// Wait before the first retry; it doubles for each further retry (default `10s`).
    /// At most `8760h` (one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

/// What a failed step does to the rest of the run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum OnFailure {
    /// Stop running further steps; `finally` steps still run. The run fails.
    #[default]
    Abort,
    /// Record the failure and go on with the next step.
    Continue,
}

/// Kinds of workload a scale, restart, setEnv or rollout step acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
}

/// A Deployment or StatefulSet in the same namespace as the resource naming it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// Deployment or StatefulSet.
    pub kind: WorkloadKind,
    /// Name of the workload.
    /// A DNS subdomain (lowercase letters, digits, `-` and `.`) or a `{{ params.X }}` template
    /// that resolves to one when the run starts (else the run fails with reason InvalidSpec).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') || self.contains('{{')").message("target.name must be an object name (a DNS subdomain such as web or web-2), not a path"))]
    pub name: String,
}

/// Scale a workload to a count or by a signed delta.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.replicas) != has(self.by)").message("set exactly one of replicas (an absolute count) or by (a signed change)"))]
pub struct ScaleAction {
    /// The workload to scale.
    pub target: WorkloadRef,
    /// The replica count to set (0 or more), or a template that gives one, e.g.
    /// `"{{ params.replicas }}"` or `"{{ steps.scale-down.outputs.previousReplicas }}"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_template::non_negative")]
    pub replicas: Option<IntOrTemplate>,
    /// A change to the current replica count, e.g. `2` or `-1` (or a template that gives
    /// one); the result is never below 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_template::signed")]
    pub by: Option<IntOrTemplate>,
}

/// `kubectl rollout restart` of a workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartAction {
    /// The workload to restart.
    pub target: WorkloadRef,
    /// Wait for the restarted rollout to complete (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

/// One environment variable to set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Value to set.
    pub value: String,
}

/// Environment changes on a workload's containers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.set) ? size(self.set) : 0) + (has(self.unset) ? size(self.unset) : 0) > 0").message("setEnv needs at least one entry in set or unset"))]
pub struct SetEnvAction {
    /// The workload whose pod template is changed.
    pub target: WorkloadRef,
    /// Container to change; all containers when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Variables to add or replace, by name.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub set: Vec<EnvVar>,
    /// Names of variables to remove.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub unset: Vec<String>,
}

/// Wait for a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitForRolloutAction {
    /// The workload to watch.
    pub target: WorkloadRef,
}

/// `kubectl rollout undo` of a Deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.target.kind == 'Deployment'").message("rollback supports Deployments only (kubectl rollout undo semantics)"))]
pub struct RollbackAction {
    /// The Deployment to roll back.
    pub target: WorkloadRef,
    /// Revision to return to (or a template that gives one); the previous revision when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_template::positive")]
    pub to_revision: Option<IntOrTemplate>,
}

/// Run a Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.template) != has(self.fromCronJob)").message("set exactly one of template or fromCronJob"))]
pub struct JobAction {
    /// The Job to create (a batch/v1 JobTemplateSpec: metadata and spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Embedded<JobTemplateSpec>>,
    /// Name of a CronJob in the same namespace whose jobTemplate is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// A DNS subdomain (lowercase letters, digits, `-` and `.`) or a `{{ params.X }}` template
    /// that resolves to one when the run starts (else the run fails with reason InvalidSpec).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') || self.contains('{{')").message("fromCronJob must be a CronJob name (a DNS subdomain), not a path"))]
    pub from_cron_job: Option<String>,
    /// Wait for the Job to finish and fail the step if the Job fails (default true). Once it
    /// has finished, its containers' termination messages (what they wrote to
    /// `terminationMessagePath`: `key=value` lines or one JSON object of scalars) become the
    /// step's outputs, e.g. `steps.check.outputs.healthy`; at most 32 keys, values cut at
    /// 1024 bytes, keys the journal records itself (jobName, ...) ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

/// HTTP methods an http step may use.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum HttpMethod {
    /// GET (default).
    #[default]
    GET,
    /// HEAD.
    HEAD,
    /// POST.
    POST,
    /// PUT.
    PUT,
    /// PATCH.
    PATCH,
    /// DELETE.
    DELETE,
}

/// What a successful answer looks like.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpExpect {
    /// Accepted status codes (default `[200]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 100, max = 599)))]
    pub status: Vec<i32>,
    /// A JSONPath into the response body (e.g. `{.status}`) whose value must equal `equals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// The value expected at `jsonPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
}

/// One HTTP request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpAction {
    /// The URL, e.g. `http://app.shop.svc:8080/health`. A host without a dot is a Service in
    /// the run's namespace (`http://app:8080` means `http://app.<namespace>.svc:8080`).
    /// Refused destinations (the step fails with reason EgressRefused): link-local and cloud
    /// metadata addresses, the Kubernetes API server, loopback, and ranges the cluster admin
    /// denies.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("url must start with http:// or https://"))]
    pub url: String,
    /// HTTP method (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// Request headers (at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: Vec<HttpHeader>,
    /// Request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// What counts as success (default: status 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<HttpExpect>,
    /// Follow redirects (default false: a 3xx answer is the step's answer). Only redirects to
    /// the same host and port are followed, at most 5, never from https to http; headers
    /// read from Secrets are sent with the first request only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
    /// Values to capture from a successful answer's JSON body into the step's outputs, by
    /// output name and JSONPath, e.g. `{version: "{.version}"}`; later steps read them as
    /// `{{ steps.<name>.outputs.version }}`. At most 16; a path that finds nothing, or a body
    /// that is not JSON, fails the step with reason OutputMissing. Names the step records
    /// itself (httpStatus, body, bodyTruncated, sent, ...) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "http_outputs_schema")]
    pub outputs: BTreeMap<String, String>,
}

/// Schema of an http step's `outputs`: output names to JSONPaths, bounded.
fn http_outputs_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256},
        "x-kubernetes-validations": [{
            "rule": "self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]{0,62}$'))",
            "message": "output names are letters, digits and _ (at most 63), starting with a letter or _"
        }]
    })
}

/// An object reference for the generic patch step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectTarget {
    /// API version, e.g. `apps/v1` or `v1`.
    pub api_version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Name of the object.
    /// A DNS subdomain (lowercase letters, digits, `-` and `.`) or a `{{ params.X }}` template
    /// that resolves to one when the run starts (else the run fails with reason InvalidSpec).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') || self.contains('{{')").message("patch.target.name must be an object name (a DNS subdomain), not a path such as x/status: the patch step never addresses a subresource"))]
    pub name: String,
}

/// Patch strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PatchType {
    /// JSON merge patch (RFC 7386).
    Merge,
    /// JSON patch (RFC 6902), a list of operations.
    Json,
    /// Server-side apply under the field manager `runbook-operator`.
    Apply,
}

/// A generic patch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchAction {
    /// The object to patch, in the run's namespace. Secrets, ServiceAccounts, RBAC kinds and
    /// the ops.runbook.dev kinds are refused (reason PatchRefused) unless the operator's
    /// `--allow-patch-kinds` lists them.
    pub target: ObjectTarget,
    /// merge, json or apply.
    #[serde(rename = "type")]
    pub type_: PatchType,
    /// The patch: an object for merge and apply, a list of operations for json.
    #[schemars(schema_with = "any_json")]
    pub patch: serde_json::Value,
}

/// Schema for a value that may be any JSON (object, list or scalar).
fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Labels a selector must match (all of them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchLabels {
    /// Label key/value pairs that must all match (at most 32): keys are label keys
    /// (`app`, `app.kubernetes.io/name`), values label values (at most 63 characters) or a
    /// `{{ params.X }}` template that resolves to one.
    #[serde(default)]
    #[schemars(schema_with = "match_labels_schema")]
    pub match_labels: BTreeMap<String, String>,
}

impl MatchLabels {
    /// The selector as the API takes it (`k=v,k2=v2`), each key and value checked first, so
    /// a value can never add a term (`a=b,c` or `a in (x)`) to it.
    pub fn selector(&self) -> Result<String, String> {
        let mut terms = Vec::with_capacity(self.match_labels.len());
        for (key, value) in &self.match_labels {
            if !crate::names::is_label_key(key) {
                return Err(format!(
                    "{key:?} is not a label key (an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.')"
                ));
            }
            if !crate::names::is_label_value(value) {
                return Err(format!(
                    "the value of {key:?}, {value:?}, is not a label value (at most 63 letters, digits, '-', '_' or '.', a letter or digit at both ends)"
                ));
            }
            terms.push(format!("{key}={value}"));
        }
        Ok(terms.join(","))
    }
}

/// Label key (optional DNS-subdomain prefix) as the API server checks it.
const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// Label value as the API server checks it.
const LABEL_VALUE_PATTERN: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";

/// Schema of `matchLabels`: bounded, keys and values checked at apply.
fn match_labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {"type": "string", "maxLength": 253},
        "x-kubernetes-validations": [{
            "rule": format!("self.all(k, k.size() <= 317 && k.matches('{LABEL_KEY_PATTERN}'))"),
            "message": "matchLabels keys must be label keys such as app or app.kubernetes.io/name"
        }, {
            "rule": format!("self.all(k, self[k].matches('{LABEL_VALUE_PATTERN}') || self[k].contains('{{{{'))"),
            "message": "matchLabels values must be label values (at most 63 letters, digits, '-', '_' or '.', a letter or digit at both ends) or a {{ params.X }} template"
        }]
    })
}

/// Delete matching pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletePodsAction {
    /// Which pods; must name at least one label so a step never deletes every pod.
    #[x_kube(validation = Rule::new("size(self.matchLabels) > 0").message("deletePods.selector.matchLabels needs at least one label"))]
    pub selector: MatchLabels,
    /// Delete at most this many pods (or a template that gives the count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_template::positive")]
    pub max_count: Option<IntOrTemplate>,
}

/// Rotate a Secret key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotateSecretAction {
    /// Name of the Secret. It must be labelled `ops.runbook.dev/rotatable=true` (its owner's
    /// consent); otherwise the step fails with reason NotRotatable.
    /// A DNS subdomain (lowercase letters, digits, `-` and `.`) or a `{{ params.X }}` template
    /// that resolves to one when the run starts (else the run fails with reason InvalidSpec).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') || self.contains('{{')").message("rotateSecret.secret must be a Secret name (a DNS subdomain), not a path"))]
    pub secret: String,
    /// Key to write.
    pub key: String,
    /// Length of the new random value (default 32, 8 to 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 4096))]
    pub length: Option<i32>,
    /// Workloads to rollout-restart after the write (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub restart: Vec<WorkloadRef>,
}

/// Wait for a person: the step succeeds when someone holding the verb `approve` on
/// runbookruns sets `ops.runbook.dev/approve: <step name>` on the run while it waits at this
/// step, and fails with reason `Rejected` on `ops.runbook.dev/reject: <step name>`. An
/// approval set before the step started waiting does not count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalAction {
    /// What the approver is asked; shown in status and Events.
    pub message: String,
    /// Who may answer, narrowing the holders of the verb `approve`: a user listed in `users`
    /// or a member of a group listed in `groups`. Empty: anyone with the verb. Needs the
    /// chart's admission policies (they record who answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// Refuse an answer from the user who created the run (four eyes). Needs the chart's
    /// admission policies (they record who created the run and who answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_from_requester: Option<bool>,
}

/// The people allowed to answer an approval step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// Usernames as the API server authenticates them, e.g. `alice@example.com` or
    /// `system:serviceaccount:ci:deployer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Group names, e.g. `sre-oncall`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Wait a fixed time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SleepAction {
    /// How long, e.g. `30s`. At most `8760h` (one year).
    pub duration: Duration,
}

/// Send a notification: see [`crate::notify`].
pub use crate::notify::NotifyAction;

/// Run a backup now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupAction {
    /// Name of a BackupPolicy in the same namespace.
    /// A DNS subdomain (lowercase letters, digits, `-` and `.`) or a `{{ params.X }}` template
    /// that resolves to one when the run starts (else the run fails with reason InvalidSpec).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') || self.contains('{{')").message("backup.policy must be a BackupPolicy name (a DNS subdomain), not a path"))]
    pub policy: String,
}

/// Restore a backup now: run the BackupPolicy's `spec.restore.jobTemplate` with
/// `BACKUP_JOB_NAME` and `BACKUP_SCHEDULED_TIME` of the chosen backup in every container's
/// environment, and wait for it. The journal records which backup was restored
/// (`outputs.backupJob`); the policy's `status.lastRestore` keeps when, which backup and how
/// long it took (the measured recovery time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreAction {
    /// Name of a BackupPolicy in the same namespace that has `spec.restore`.
    /// A DNS subdomain or a `{{ params.X }}` template that resolves to one.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') || self.contains('{{')").message("restore.policy must be a BackupPolicy name (a DNS subdomain), not a path"))]
    pub policy: String,
    /// Which backup: `latestVerified` (default: the newest backup whose verification
    /// passed), `latest` (the newest successful backup), or the name of a backup Job in the
    /// policy's `status.history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub backup: Option<String>,
}

/// Checks what CEL leaves to the operator: durations that parse and templates that decode.
/// `path` is the JSON path of the list, e.g. `spec.steps`.
pub fn validate_steps(steps: &[Step], path: &str) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if step.action_name().is_none() {
            problems.push(SpecProblem::new(
                &at,
                format!(
                    "step {:?} must set exactly one action (found {:?})",
                    step.name,
                    step.actions_set()
                ),
            ));
        }
        let durations = [
            ("timeout", step.timeout.as_ref()),
            (
                "retries.backoff",
                step.retries.as_ref().and_then(|r| r.backoff.as_ref()),
            ),
            ("sleep.duration", step.sleep.as_ref().map(|s| &s.duration)),
        ];
        for (field, value) in durations {
            if let Some(Err(err)) = value.map(Duration::parse) {
                problems.push(SpecProblem::new(format!("{at}.{field}"), err.to_string()));
            }
        }
        for (field, value, min) in step.integer_fields() {
            let Some(value) = value.filter(|v| !v.is_template()) else {
                continue;
            };
            if let Err(message) = value.value(min) {
                problems.push(SpecProblem::new(
                    format!("{at}.{field}"),
                    format!("{message}; write an integer or a {{{{ ... }}}} template"),
                ));
            }
        }
        if let Some(http) = &step.http
            && http.headers.iter().any(|h| h.value_from.is_some())
            && templated_host(&http.url)
        {
            problems.push(SpecProblem::new(
                format!("{at}.http.url"),
                "a request carrying a header from a Secret must name its host in the step, not through a parameter (whoever starts the run would choose where the Secret goes): write the scheme and host and template only the path or query",
            ));
        }
        for name in step.http.iter().flat_map(|h| h.outputs.keys()) {
            if crate::runbook_run::decide::outputs::reserved(name) {
                problems.push(SpecProblem::new(
                    format!("{at}.http.outputs.{name}"),
                    format!("{name} is an output the step records itself (httpStatus, body, bodyTruncated, sent, ...); choose another name"),
                ));
            }
        }
        if let Some(Err(err)) = step
            .job
            .as_ref()
            .and_then(|j| j.template.as_ref())
            .map(Embedded::decode)
        {
            problems.push(SpecProblem::new(
                format!("{at}.job.template"),
                err.to_string(),
            ));
        }
    }
    problems
}

/// Longest URL an http or notify step may send to.
pub const MAX_URL: usize = crate::notify::MAX_URL;

/// Checks a step as it is after its `{{ params.X }}` templates were substituted, with the
/// rules the schema applies to written values: URLs are http(s) and at most [`MAX_URL`],
/// object names are DNS subdomains (so a name never addresses a subresource such as
/// `x/status`), selectors are label keys and values. `at` is the step's path, e.g.
/// `spec.steps[2]`; each problem names the field.
pub fn validate_resolved(step: &Step, at: &str) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    let mut name = |field: &str, value: &str| {
        if !crate::names::is_dns_subdomain(value) {
            problems.push(SpecProblem::new(
                format!("{at}.{field}"),
                format!(
                    "{:?} is not an object name (a DNS subdomain: lowercase letters, digits, '-' and '.', at most 253); check the parameter it came from",
                    crate::names::truncate(value, 256)
                ),
            ));
        }
    };
    let targets = [
        ("scale.target.name", step.scale.as_ref().map(|a| &a.target)),
        (
            "restart.target.name",
            step.restart.as_ref().map(|a| &a.target),
        ),
        (
            "setEnv.target.name",
            step.set_env.as_ref().map(|a| &a.target),
        ),
        (
            "waitForRollout.target.name",
            step.wait_for_rollout.as_ref().map(|a| &a.target),
        ),
        (
            "rollback.target.name",
            step.rollback.as_ref().map(|a| &a.target),
        ),
    ];
    for (field, target) in targets {
        if let Some(target) = target {
            name(field, &target.name);
        }
    }
    if let Some(cron) = step.job.as_ref().and_then(|j| j.from_cron_job.as_deref()) {
        name("job.fromCronJob", cron);
    }
    if let Some(patch) = &step.patch {
        name("patch.target.name", &patch.target.name);
    }
    if let Some(rotate) = &step.rotate_secret {
        name("rotateSecret.secret", &rotate.secret);
        for (i, target) in rotate.restart.iter().enumerate() {
            name(&format!("rotateSecret.restart[{i}].name"), &target.name);
        }
    }
    if let Some(backup) = &step.backup {
        name("backup.policy", &backup.policy);
    }
    if let Some(restore) = &step.restore {
        name("restore.policy", &restore.policy);
    }
    let numeric: Vec<SpecProblem> = step
        .integer_fields()
        .into_iter()
        .filter_map(|(field, value, min)| match value.map(|v| v.value(min)) {
            Some(Err(message)) => Some(SpecProblem::new(format!("{at}.{field}"), message)),
            _ => None,
        })
        .collect();
    if let Some(http) = &step.http {
        for (i, header) in http.headers.iter().enumerate() {
            if let Some(from) = &header.value_from {
                name(
                    &format!("http.headers[{i}].valueFrom.secretKeyRef.name"),
                    &from.secret_key_ref.name,
                );
            }
        }
    }
    let urls = [("http.url", step.http.as_ref().map(|h| h.url.as_str()))];
    for (field, url) in urls {
        let Some(url) = url else { continue };
        let problem = if url.len() > MAX_URL {
            Some(format!(
                "the URL is {} characters long; at most {MAX_URL} are allowed",
                url.len()
            ))
        } else if !(url.starts_with("http://") || url.starts_with("https://")) {
            Some(format!(
                "{:?} must start with http:// or https://",
                crate::names::truncate(url, 256)
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            problems.push(SpecProblem::new(format!("{at}.{field}"), message));
        }
    }
    if let Some(notify) = &step.notify {
        problems.extend(crate::notify::validate_resolved(notify, at));
    }
    if let Some(Err(message)) = step.delete_pods.as_ref().map(|d| d.selector.selector()) {
        problems.push(SpecProblem::new(
            format!("{at}.deletePods.selector.matchLabels"),
            message,
        ));
    }
    problems.extend(numeric);
    problems
}

/// Every problem of the step lists of one object (each list validated, then names unique
/// across all of them), each list given with its field path.
pub fn validate_step_lists(lists: &[(&str, &[Step])]) -> Vec<SpecProblem> {
    let mut problems: Vec<SpecProblem> = lists
        .iter()
        .flat_map(|(path, steps)| validate_steps(steps, path))
        .collect();
    problems.extend(validate_unique_names(lists));
    problems.extend(refs::problems(lists));
    problems
}

/// Rejects step names used twice across `steps` and `finally` (CEL checks each list; this
/// also covers objects stored before a rule existed).
pub fn validate_unique_names(lists: &[(&str, &[Step])]) -> Vec<SpecProblem> {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, steps) in lists {
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{path}[{i}].name");
            if let Some(first) = seen.get(step.name.as_str()) {
                problems.push(SpecProblem::new(
                    at,
                    format!(
                        "step name {:?} is already used by {first}; step names must be unique",
                        step.name
                    ),
                ));
            } else {
                seen.insert(&step.name, at);
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(value: serde_json::Value) -> Step {
        serde_json::from_value(value).expect("step shape")
    }

    #[test]
    fn names_the_single_action() {
        let s = step(json!({"name": "nap", "sleep": {"duration": "5s"}}));
        assert_eq!(s.action_name(), Some("sleep"));
        assert!(validate_steps(&[s], "spec.steps").is_empty());
    }

    #[test]
    fn reports_two_actions_with_the_field() {
        let s = step(json!({"name": "two", "sleep": {"duration": "5s"},
            "approval": {"message": "ok?"}}));
        let problems = validate_steps(&[s], "spec.steps");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.steps[0]");
        assert!(problems[0].message.contains("approval"));
    }

    #[test]
    fn reports_bad_durations_and_templates() {
        let s = step(json!({"name": "j", "timeout": "soon",
            "job": {"template": {"spec": {"backoffLimit": "x"}}}}));
        let fields: Vec<_> = validate_steps(&[s], "spec.steps")
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            ["spec.steps[0].timeout", "spec.steps[0].job.template"]
        );
    }

    #[test]
    fn a_secret_header_needs_a_written_host() {
        for templated in [
            "{{ params.baseUrl }}/health",
            "https://{{ params.host }}/x",
            "http://api.example.com:{{ params.port }}/x",
        ] {
            assert!(templated_host(templated), "{templated}");
        }
        for written in [
            "https://api.example.com/{{ params.path }}",
            "http://app:8080/x?q={{ params.q }}",
        ] {
            assert!(!templated_host(written), "{written}");
        }
        let header = json!([{"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}}]);
        let s = step(
            json!({"name": "h", "http": {"url": "{{ params.baseUrl }}/x", "headers": header}}),
        );
        let problems = validate_steps(&[s], "spec.steps");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "spec.steps[0].http.url");
        let inline = json!([{"name": "X-Plain", "value": "v"}]);
        let s = step(
            json!({"name": "h", "http": {"url": "{{ params.baseUrl }}/x", "headers": inline}}),
        );
        assert!(validate_steps(&[s], "spec.steps").is_empty());
    }

    #[test]
    fn durations_over_a_year_are_reported_with_their_field() {
        let s = step(json!({"name": "n", "timeout": "100000000h",
            "retries": {"limit": 1, "backoff": "8761h"}, "sleep": {"duration": "8760h"}}));
        let problems = validate_steps(&[s], "spec.steps");
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.steps[0].timeout", "spec.steps[0].retries.backoff"]
        );
        assert!(
            problems[0].message.contains("8760h"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn resolved_steps_are_checked_like_written_ones() {
        let cases = [
            (
                json!({"name": "p", "patch": {"target": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x/status"}, "type": "merge", "patch": {}}}),
                "patch.target.name",
            ),
            (
                json!({"name": "h", "http": {"url": format!("http://a/{}", "x".repeat(2048))}}),
                "http.url",
            ),
            (
                json!({"name": "h", "http": {"url": "ftp://a/x"}}),
                "http.url",
            ),
            (
                json!({"name": "d", "deletePods": {"selector": {"matchLabels": {"app": "a,b"}}}}),
                "deletePods.selector.matchLabels",
            ),
            (
                json!({"name": "r", "rotateSecret": {"secret": "A", "key": "k"}}),
                "rotateSecret.secret",
            ),
            (
                json!({"name": "b", "backup": {"policy": "../db"}}),
                "backup.policy",
            ),
            (
                json!({"name": "j", "job": {"fromCronJob": ""}}),
                "job.fromCronJob",
            ),
            (
                json!({"name": "s", "scale": {"target": {"kind": "Deployment", "name": "web/scale"}, "replicas": 1}}),
                "scale.target.name",
            ),
        ];
        for (value, field) in cases {
            let problems = validate_resolved(&step(value), "spec.steps[0]");
            assert_eq!(problems.len(), 1, "{field}: {problems:?}");
            assert_eq!(problems[0].field, format!("spec.steps[0].{field}"));
        }
        let fine = step(
            json!({"name": "d", "deletePods": {"selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}}}),
        );
        assert!(validate_resolved(&fine, "spec.steps[0]").is_empty());
        let selector = fine.delete_pods.unwrap().selector.selector();
        assert_eq!(selector.as_deref(), Ok("app.kubernetes.io/name=web"));
    }

    #[test]
    fn finds_duplicate_names_across_lists() {
        let a = step(json!({"name": "check", "sleep": {"duration": "1s"}}));
        let problems = validate_unique_names(&[
            ("spec.steps", std::slice::from_ref(&a)),
            ("spec.finally", std::slice::from_ref(&a)),
        ]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.finally[0].name");
        assert!(problems[0].message.contains("spec.steps[0].name"));
    }
}

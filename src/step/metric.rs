//! Metric checks: the `query` step (measure a PromQL expression a number of times and judge
//! each measurement, as Argo Rollouts' analysis does) and the `waitFor` step (poll until a
//! condition on a PromQL result holds).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::secret_ref::HttpHeader;

/// Measure a PromQL expression against Prometheus' HTTP API (`/api/v1/query`) `count` times,
/// `interval` apart, and judge every measurement with CEL over `result`: a scalar, or a
/// vector of one sample, is a number (`result < 0.05`); a vector of several samples is a list
/// of numbers (`result.all(x, x < 0.05)`); an empty vector is an empty list.
///
/// A measurement is **Successful** when `successCondition` is true, **Failed** when
/// `failureCondition` is true (or, without a `failureCondition`, when `successCondition` is
/// false), **Inconclusive** when both conditions are given and neither holds, and an
/// **Error** when the query or the evaluation failed. The step fails (reason
/// `MetricFailed`) once more than `failureLimit` measurements failed, (reason
/// `MetricInconclusive`) once more than `inconclusiveLimit` were inconclusive, or (reason
/// `MetricError`) after more than `consecutiveErrorLimit` errors in a row; it succeeds once
/// `count` measurements were judged (errors do not count) without reaching a limit. A matrix
/// or string result, NaN or an infinity is an Error. Each measurement is recorded in the
/// journal (`outputs.measurements`, the newest ten, with the counters `successful`, `failed`,
/// `inconclusive`, `errors`, `consecutiveErrors`) and the last value in `outputs.result`. In
/// Plan mode the step takes one measurement and ends Skipped, saying what it would decide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.successCondition) || has(self.failureCondition)").message("a query step needs successCondition, failureCondition or both"))]
pub struct QueryAction {
    /// Base URL of the Prometheus server, e.g. `http://prometheus.monitoring.svc:9090`. A host
    /// without a dot is a Service in the run's namespace. Fenced like an http step's URL.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("address must start with http:// or https://"))]
    pub address: String,
    /// Request headers, e.g. `Authorization` from a Secret (`valueFrom.secretKeyRef`); at
    /// most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub headers: Vec<HttpHeader>,
    /// The PromQL expression, e.g.
    /// `sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))`.
    #[schemars(length(min = 1, max = 4096))]
    pub promql: String,
    /// CEL over `result` that makes a measurement Successful, e.g. `result < 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub success_condition: Option<String>,
    /// CEL over `result` that makes a measurement Failed, e.g. `result >= 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub failure_condition: Option<String>,
    /// Time between measurements (default `30s`, at least `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How many measurements to judge (default 1, at most 1000); Error measurements do not
    /// count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: Option<i32>,
    /// How many Failed measurements are tolerated (default 0: the first fails the step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub failure_limit: Option<i32>,
    /// How many Inconclusive measurements are tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub inconclusive_limit: Option<i32>,
    /// How many Error measurements in a row are tolerated (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub consecutive_error_limit: Option<i32>,
}

/// Poll a PromQL expression every `interval` until CEL `until` over `result` holds (e.g.
/// "wait until the queue is below 1000": `until: result < 1000`), then succeed. It fails with
/// reason `TimedOut` after `timeout`. A query that fails or an expression that cannot be
/// evaluated (e.g. an empty result) counts as not yet, and is shown in the step's message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitForAction {
    /// Base URL of the Prometheus server (as in a query step).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("address must start with http:// or https://"))]
    pub address: String,
    /// Request headers, e.g. `Authorization` from a Secret; at most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub headers: Vec<HttpHeader>,
    /// The PromQL expression, e.g. `max(queue_depth{queue="message_queue"})`.
    #[schemars(length(min = 1, max = 4096))]
    pub promql: String,
    /// CEL over `result` that ends the wait, e.g. `result < 1000`.
    #[schemars(length(min = 1, max = 2048))]
    pub until: String,
    /// Time between polls (default `30s`, at least `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Longest wait (default `30m`); the step fails with reason `TimedOut` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

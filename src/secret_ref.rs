//! References to values kept in Secrets, shared by steps and notification sinks: a Secret
//! key, a value read from one, and a header whose value may come from one.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    /// A DNS subdomain (lowercase letters, digits, `-` and `.`) or a `{{ params.X }}` template
    /// that resolves to one when the run starts (else the run fails with reason InvalidSpec).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') || self.contains('{{')").message("secretKeyRef.name must be a Secret name (a DNS subdomain), not a path"))]
    pub name: String,
    /// Key within the Secret's data.
    pub key: String,
}

/// Where a value comes from when it is not written inline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    /// Read the value from a Secret key.
    pub secret_key_ref: SecretKeyRef,
}

/// One HTTP header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("set exactly one of value or valueFrom"))]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Header value, written inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Header value, read from a Secret (e.g. a bearer token). Sent to the host written in
    /// the step's or sink's url only: never along a redirect, and the Runbook is refused when
    /// the url's host comes from a parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// Whether a URL's scheme, host or port comes from a template (`{{ params.baseUrl }}/x`,
/// `https://{{ params.host }}/x`) rather than being written out.
pub fn templated_host(url: &str) -> bool {
    let rest = url.split_once("://").map_or(
        url,
        |(scheme, rest)| {
            if scheme.contains("{{") { url } else { rest }
        },
    );
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains("{{") || rest.starts_with("{{")
}

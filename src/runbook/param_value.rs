//! The values a Runbook writes for its parameters (`type`, `default`, `enum`, `min`, `max`);
//! checking a run's values against them is [`crate::params`].

use serde::{Deserialize, Serialize};

/// Longest parameter value (a Runbook default or a run's value), in bytes: values are
/// substituted into steps that the run keeps in its status, which etcd bounds.
pub const MAX_PARAM_VALUE: u32 = 4096;

/// What a parameter holds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text (default).
    #[default]
    String,
    /// A whole number, e.g. `4` or `-1`.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A duration such as `30s`, `5m` or `1h30m`.
    Duration,
}

impl ParamType {
    /// The type as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Duration => "duration",
        }
    }
}

/// A value written in a Runbook (`default`, `enum`, `min`, `max`): YAML's own scalar, so
/// `default: 4` and `default: "4"` mean the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Text.
    Text(String),
}

impl ParamValue {
    /// The value as text, as a run's `spec.params` would give it.
    pub fn as_text(&self) -> String {
        match self {
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Text(t) => t.clone(),
        }
    }
}

/// Schema of a written value: an integer or a string of at most 4096 bytes
/// (`MAX_PARAM_VALUE`; `true` is written `"true"`). A CEL rule cannot read a field of several
/// types, so these are plain OpenAPI bounds.
pub fn scalar_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "maxLength": MAX_PARAM_VALUE
    })
}

/// Schema of `enum`: at most 64 scalars.
pub fn enum_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = scalar_schema(generator);
    schemars::json_schema!({"type": "array", "maxItems": 64, "items": item})
}

//! Kubernetes objects embedded in our specs (Job and Pod templates).
//!
//! They are stored with `x-kubernetes-preserve-unknown-fields` rather than their full OpenAPI
//! schema: a full PodSpec schema per template would push the Runbook and RunbookRun CRDs past
//! the size etcd accepts. The API server validates the template when the operator creates the
//! Job or Deployment from it; before that, [`Embedded::decode`] tells the user which field is
//! wrong, and a bad template never stops the custom resource itself from deserializing.

use std::borrow::Cow;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Kubernetes object of type `T`, kept as free-form JSON until the operator uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedded<T> {
    /// The object as the user wrote it.
    pub raw: serde_json::Value,
    kind: PhantomData<fn() -> T>,
}

/// A template that does not have the shape of the Kubernetes type it stands for.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EmbeddedError(String);

impl<T: DeserializeOwned> Embedded<T> {
    /// Wraps a value.
    pub fn new(raw: serde_json::Value) -> Self {
        Self {
            raw,
            kind: PhantomData,
        }
    }

    /// Reads the template as its Kubernetes type; the error names the offending field.
    pub fn decode(&self) -> Result<T, EmbeddedError> {
        serde_path_to_error::deserialize(&self.raw).map_err(|err| {
            let path = err.path().to_string();
            EmbeddedError(format!("{path}: {}", err.into_inner()))
        })
    }
}

impl<T> Serialize for Embedded<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Embedded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            raw: serde_json::Value::deserialize(deserializer)?,
            kind: PhantomData,
        })
    }
}

impl<T> JsonSchema for Embedded<T> {
    fn schema_name() -> Cow<'static, str> {
        "EmbeddedObject".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobTemplateSpec;
    use serde_json::json;

    #[test]
    fn decodes_a_job_template() {
        let t: Embedded<JobTemplateSpec> = Embedded::new(json!({
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "dump", "image": "postgres:16"}]}}}
        }));
        let job = t.decode().expect("valid template");
        assert_eq!(job.spec.and_then(|s| s.backoff_limit), Some(0));
    }

    #[test]
    fn names_the_bad_field() {
        let t: Embedded<JobTemplateSpec> = Embedded::new(json!({"spec": {"backoffLimit": "many"}}));
        let err = t.decode().unwrap_err().to_string();
        assert!(err.starts_with("spec.backoffLimit: invalid type"), "{err}");
    }

    #[test]
    fn any_json_object_deserializes() {
        let t: Embedded<JobTemplateSpec> =
            serde_json::from_value(json!({"spec": {"backoffLimit": "many"}})).unwrap();
        assert!(t.decode().is_err());
    }
}

//! The revision of a pod template: a hash of its canonical JSON, so the same template always
//! names the same revision, whatever order its keys were written in.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The 64-bit FNV-1a hash (the one in [`crate::names`]).
pub(super) use crate::names::fnv64 as fnv1a64;

/// Writes `value` as canonical JSON: no whitespace, object keys sorted by their bytes, strings
/// escaped as serde_json escapes them. The output does not depend on the order keys were
/// inserted in, so it is the same whether or not serde_json's `preserve_order` feature is on.
pub(super) fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            // Scalars: serde_json's compact form, which is deterministic.
            out.push_str(&value.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
    }
}

/// The revision of a pod template: the first 10 lowercase hex digits of the 64-bit FNV-1a hash
/// of the template's canonical JSON (keys sorted, no whitespace).
///
/// The template is hashed as the typed `PodTemplateSpec` serializes it, i.e. exactly what
/// [`slot_deployment`](super::slot_deployment) puts in the Deployment: a field this version of
/// k8s-openapi does not know is dropped from both, so it neither changes the revision nor
/// reaches the cluster. Replicas are not part of the template, so a replica change is not a new
/// revision.
pub fn revision(template: &PodTemplateSpec) -> String {
    // Serializing a PodTemplateSpec cannot fail (every map key is a string).
    let value = serde_json::to_value(template).unwrap_or(serde_json::Value::Null);
    let mut text = String::new();
    canonical_json(&value, &mut text);
    let hash = format!("{:016x}", fnv1a64(text.as_bytes()));
    hash[..10].to_owned()
}

/// The revision of a release's decoded units (name, template), in declared order. The
/// single-template form (one unit without a name) is [`revision`] of its template, unchanged;
/// a stack is one hash over every component's name and template (canonical JSON of
/// `[{"name": ..., "template": ...}, ...]`), so a change to any of them is a new revision of
/// the whole stack, and every component's Deployment carries it.
pub fn stack_revision(units: &[(Option<&str>, &PodTemplateSpec)]) -> String {
    if let [(None, template)] = units {
        return revision(template);
    }
    let value = serde_json::Value::Array(
        units
            .iter()
            .map(|(name, template)| {
                serde_json::json!({
                    "name": name,
                    "template": serde_json::to_value(template).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect(),
    );
    let mut text = String::new();
    canonical_json(&value, &mut text);
    let hash = format!("{:016x}", fnv1a64(text.as_bytes()));
    hash[..10].to_owned()
}

/// The revision of a release's spec as the controller computes it ([`stack_revision`] of its
/// units); the error names the template field that is not a valid pod template.
pub fn spec_revision(
    spec: &crate::blue_green::types::BlueGreenReleaseSpec,
) -> Result<String, String> {
    let units = spec.units();
    if units.is_empty() {
        return Err("spec: set either template, replicas and services, or components".to_owned());
    }
    let mut decoded = Vec::new();
    for unit in &units {
        let template = unit.template.decode().map_err(|err| {
            format!(
                "{} is not a valid pod template ({err})",
                unit.field("template")
            )
        })?;
        decoded.push((unit.name, template));
    }
    let named: Vec<_> = decoded.iter().map(|(n, t)| (*n, t)).collect();
    Ok(stack_revision(&named))
}

/// The container images of several templates, each once, in order.
pub fn stack_images<'a>(templates: impl IntoIterator<Item = &'a PodTemplateSpec>) -> Vec<String> {
    let mut seen = Vec::new();
    for template in templates {
        for image in images(template) {
            if !seen.contains(&image) {
                seen.push(image);
            }
        }
    }
    seen
}

/// The container images of a template (containers, then init containers, each once), for
/// `status.history`.
pub fn images(template: &PodTemplateSpec) -> Vec<String> {
    let mut seen = Vec::new();
    if let Some(spec) = &template.spec {
        let init = spec.init_containers.iter().flatten();
        for container in spec.containers.iter().chain(init) {
            if let Some(image) = &container.image
                && !seen.contains(image)
            {
                seen.push(image.clone());
            }
        }
    }
    seen
}

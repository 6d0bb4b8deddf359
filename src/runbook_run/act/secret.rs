//! The rotateSecret step, and reading a Secret's value for other steps.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch};
use serde_json::json;

use super::workload::patch_workload;
use super::{Act, Error, Exec, failed, target_error, target_label, write_error};
use crate::kubectl;
use crate::runbook_run::types::StepStatus;
use crate::well_known::{ROTATABLE_LABEL, ROTATED_BY};

/// Writes a new random value (once per run step, marked on the Secret), then restarts the
/// workloads that read it.
pub(super) async fn rotate(
    exec: &Exec<'_>,
    rotate: &crate::step::RotateSecretAction,
    entry: &mut StepStatus,
) -> Result<Act, Error> {
    let what = format!("Secret/{}", rotate.secret);
    entry.target = Some(what.clone());
    let marker = format!("{}/{}", exec.run_name, entry.name);
    let secrets = exec.writer.api::<Secret>(exec.namespace);
    if !entry.outputs.contains_key("rotated") {
        let secret = match secrets.get(&rotate.secret).await {
            Ok(s) => s,
            Err(err) => return target_error(err, &what, exec.namespace),
        };
        if let Some(message) = not_rotatable(&secret, exec.namespace) {
            return Ok(Act::Failed {
                reason: "NotRotatable",
                message,
                retryable: false,
            });
        }
        // The marker on the Secret makes the rotation happen once per run step, even if the
        // operator dies between the write and recording it.
        let already = secret.annotations().get(ROTATED_BY) == Some(&marker);
        if !already {
            let length = usize::try_from(rotate.length.unwrap_or(32)).unwrap_or(32);
            let value = random_token(length);
            let patch = json!({
                "metadata": {"annotations": {ROTATED_BY: marker}},
                "stringData": {rotate.key.clone(): value},
            });
            if let Err(err) = exec
                .writer
                .patch(&secrets, &rotate.secret, &Patch::Merge(&patch), "secret")
                .await
            {
                return write_error(err, &what, exec.namespace);
            }
            if exec.plan() {
                return Ok(Act::Succeeded(format!(
                    "Plan: would write a new {length}-character value to key {:?} of {what} and restart {} workload(s)",
                    rotate.key,
                    rotate.restart.len()
                )));
            }
        }
        entry.outputs.insert("rotated".into(), rotate.key.clone());
        entry
            .outputs
            .insert("restartedAt".into(), kubectl::restarted_at(exec.now));
        return Ok(Act::Record);
    }
    let at = entry
        .outputs
        .get("restartedAt")
        .cloned()
        .unwrap_or_default();
    // Never a dry run: a Plan-mode run ends the step above, after its dry-run Secret write.
    let writer = exec.writer.dry_run(false);
    for target in &rotate.restart {
        if let Err(err) = patch_workload(
            &writer,
            exec.namespace,
            target,
            &Patch::Strategic(kubectl::restart_patch(at.parse().unwrap_or(exec.now))),
            "restart",
        )
        .await
        {
            return write_error(err, &target_label(target), exec.namespace);
        }
    }
    Ok(Act::Succeeded(format!(
        "wrote a new value to key {:?} of {what}; restarted {}",
        rotate.key,
        if rotate.restart.is_empty() {
            "nothing".to_owned()
        } else {
            rotate
                .restart
                .iter()
                .map(target_label)
                .collect::<Vec<_>>()
                .join(", ")
        }
    )))
}

/// Why a Secret may not be rotated: only Secrets their owners labelled rotatable are, so a
/// step cannot overwrite a ServiceAccount token, a TLS key or a Helm release by name.
fn not_rotatable(secret: &Secret, namespace: &str) -> Option<String> {
    if secret.labels().get(ROTATABLE_LABEL).map(String::as_str) == Some("true") {
        return None;
    }
    let name = secret.name_any();
    Some(format!(
        "Secret/{name} is not labelled {ROTATABLE_LABEL}=true, so rotateSecret leaves it alone; if it is meant to be rotated: kubectl label secret -n {namespace} {name} {ROTATABLE_LABEL}=true"
    ))
}

/// The value of a Secret's key; a missing Secret or key is a step failure.
pub(super) async fn secret_value(
    exec: &Exec<'_>,
    reference: &crate::step::SecretKeyRef,
) -> Result<Result<String, Act>, Error> {
    let secrets = Api::<Secret>::namespaced(exec.client().clone(), exec.namespace);
    let secret = match secrets.get(&reference.name).await {
        Ok(s) => s,
        Err(err) => {
            return target_error(err, &format!("Secret/{}", reference.name), exec.namespace)
                .map(Err);
        }
    };
    let value = secret
        .data
        .and_then(|mut d| d.remove(&reference.key))
        .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
    Ok(value.ok_or_else(|| {
        failed(
            "TargetNotFound",
            format!("Secret/{} has no key {:?}", reference.name, reference.key),
        )
    }))
}

/// A random alphanumeric token.
pub(super) fn random_token(length: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..length)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

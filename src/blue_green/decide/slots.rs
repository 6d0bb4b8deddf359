//! The slot Deployments: their label selector and the object the operator applies.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};

use crate::blue_green::observe::{
    Slot, component_deployment_name, release_label_value, slot_label,
};
use crate::blue_green::types::BlueGreenRelease;
use crate::well_known::{COMPONENT_LABEL, RELEASE_LABEL, REVISION_ANNOTATION};

/// The label selector of a slot Deployment: [`RELEASE_LABEL`] and the slot label.
///
/// A Deployment's selector is immutable, so it must hold only what never changes between
/// revisions. The template's own labels can change between revisions (a `version` label is
/// common), so they are *not* part of it; the release label makes the selector unique to this
/// release, so two releases' slots never select each other's pods.
pub fn slot_selector(release: &BlueGreenRelease, slot: Slot) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            RELEASE_LABEL.to_owned(),
            release_label_value(&release.name_any()),
        ),
        (
            slot_label(&release.spec).to_owned(),
            slot.as_str().to_owned(),
        ),
    ])
}

/// The Deployment of `slot` made from `template` at `revision` with `replicas`, for server-side
/// apply by the operator's field manager. It holds only fields the operator owns: name,
/// namespace, labels (the template's, plus [`slot_selector`]), the revision annotation, the owner
/// reference (controller, blocking deletion; only when the release has a uid), and
/// `spec.{replicas, selector, template}`. The pod template carries the template's labels and
/// annotations plus the selector labels and the revision annotation; other template metadata
/// (a name, say) means nothing in a Deployment and is dropped.
///
/// A slot label key the template already uses is overwritten with the slot.
///
/// A stack's component (`component` set) is named `<release>-<component>-<slot>`, and its
/// selector and labels also carry [`COMPONENT_LABEL`]`: <component>`, so the components'
/// Deployments of one slot never select each other's pods.
pub fn slot_deployment(
    release: &BlueGreenRelease,
    component: Option<&str>,
    slot: Slot,
    template: &PodTemplateSpec,
    revision: &str,
    replicas: i32,
) -> Deployment {
    let mut selector = slot_selector(release, slot);
    if let Some(component) = component {
        selector.insert(COMPONENT_LABEL.to_owned(), component.to_owned());
    }
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(selector.clone());
    let mut pod_annotations = meta.annotations.unwrap_or_default();
    pod_annotations.insert(REVISION_ANNOTATION.to_owned(), revision.to_owned());
    let owner = release.controller_owner_ref(&()).map(|mut owner| {
        owner.block_owner_deletion = Some(true);
        owner
    });
    Deployment {
        metadata: ObjectMeta {
            name: Some(component_deployment_name(
                &release.name_any(),
                component,
                slot,
            )),
            namespace: release.namespace(),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_owned(),
                revision.to_owned(),
            )])),
            owner_references: owner.map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: super::controls::slot_pod_spec(
                    template.spec.clone(),
                    release
                        .spec
                        .strategy
                        .as_ref()
                        .and_then(|s| s.anti_affinity.as_ref()),
                    slot_selector(release, slot.other()),
                ),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

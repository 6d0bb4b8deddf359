//! The requests `kubectl runbook` and its dashboard send, as the person using them: the one
//! place where the plugin writes. Each action reads the object, checks that the request makes
//! sense now (the pure checks of [`crate::plugin`]), then creates a RunbookRun or sets one of
//! the operator's request annotations with a merge patch of that key alone, field manager
//! [`FIELD_MANAGER`]. The API server's RBAC and the chart's admission policies decide whether
//! it lands, exactly as for `kubectl`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

use crate::backup_policy::BackupPolicy;
use crate::blue_green::BlueGreenRelease;
use crate::plugin::{self, FIELD_MANAGER, ReleaseRequest};
use crate::runbook::Runbook;
use crate::runbook_run::{RunMode, RunbookRun};

/// Why an action was not sent or not accepted: the message says what, where, and what to do;
/// `status` is the HTTP status the dashboard answers with (the API server's own for its
/// refusals; 409 for a request the object's state makes pointless; 400 for bad input).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    /// HTTP status of the refusal.
    pub status: u16,
    /// What went wrong, where, and what to do next.
    pub message: String,
}

impl ActionError {
    /// A request the object's state refuses (the run finished, the revision moved on).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: 409,
            message: message.into(),
        }
    }

    /// Input the action cannot use (an unknown parameter, a malformed value).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// The metric-style label of the refusal: `forbidden`, `not_found`, `conflict`, ...
    pub fn label(&self) -> &'static str {
        match self.status {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            422 => "invalid",
            502 => "unreachable",
            _ => "refused",
        }
    }
}

/// Explains an API error: what was refused, where, and what to do.
pub fn explain(err: kube::Error, doing: &str, namespace: &str) -> ActionError {
    let (status, message) = match &err {
        kube::Error::Api(s) if s.code == 403 => (
            403,
            format!(
                "{doing} in namespace {namespace:?} was forbidden: {}; ask for RBAC that allows it (kubectl auth can-i --list -n {namespace})",
                s.message
            ),
        ),
        kube::Error::Api(s) if s.code == 404 => (
            404,
            format!(
                "{doing} in namespace {namespace:?}: not found ({}); are the CRDs installed? (make install)",
                s.message
            ),
        ),
        kube::Error::Api(s) => (
            s.code,
            format!(
                "{doing} in namespace {namespace:?} was refused: {} ({})",
                s.message, s.reason
            ),
        ),
        other => (
            502,
            format!(
                "{doing} in namespace {namespace:?} failed: {other}; is the cluster reachable? (kubectl cluster-info)"
            ),
        ),
    };
    ActionError { status, message }
}

/// A namespaced kind the plugin reads and writes.
pub trait Kind:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
{
}

impl<K> Kind for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
{
}

/// Reads `name` of `K`, or fails with a message naming the kind, name and namespace.
pub async fn fetch<K: Kind>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<K, ActionError> {
    let kind = K::kind(&());
    match Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(object)) => Ok(object),
        Ok(None) => Err(ActionError {
            status: 404,
            message: plugin::not_found(&kind, &K::plural(&()), name, namespace),
        }),
        Err(err) => Err(explain(err, &format!("reading {kind} {name:?}"), namespace)),
    }
}

/// A RunbookRun, or a message that helps when the name is a Runbook's.
pub async fn fetch_run(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<RunbookRun, ActionError> {
    match fetch::<RunbookRun>(client, namespace, name).await {
        Ok(run) => Ok(run),
        Err(mut err) => {
            if err.status == 404
                && let Ok(Some(rb)) = Api::<Runbook>::namespaced(client.clone(), namespace)
                    .get_opt(name)
                    .await
            {
                let hint = match rb.status.and_then(|s| s.last_run) {
                    Some(last) => format!(
                        "{name:?} is a Runbook; its last run is {}: kubectl runbook get {} -n {namespace}",
                        last.name, last.name
                    ),
                    None => format!(
                        "{name:?} is a Runbook with no runs yet: kubectl runbook run {name} -n {namespace}"
                    ),
                };
                err.message = format!("{}; {hint}", err.message);
            }
            Err(err)
        }
    }
}

/// Sets one annotation on `name` with a merge patch of that key alone.
pub async fn annotate<K: Kind>(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    value: &str,
) -> Result<K, ActionError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &params,
            &Patch::Merge(plugin::annotation_patch(key, value)),
        )
        .await
        .map_err(|err| {
            explain(
                err,
                &format!("setting {key} on {} {name:?}", K::kind(&())),
                namespace,
            )
        })
}

/// Who the client is (SelfSubjectReview), best effort.
pub async fn whoami(client: &Client) -> Option<String> {
    let review: SelfSubjectReview = serde_json::from_value(serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}
    }))
    .ok()?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    let answer = Api::<SelfSubjectReview>::all(client.clone())
        .create(&params, &review)
        .await
        .ok()?;
    answer.status?.user_info?.username
}

/// Whether the user may `verb` the resource of `K` in `namespace` (false when the review
/// itself fails: the page then offers no button and the user can still try from the shell).
pub async fn can_i<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
    verb: &str,
) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(K::group(&()).into_owned()),
                resource: Some(K::plural(&()).into_owned()),
                verb: Some(verb.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    // A review is a question, not a write: nothing is stored, so it needs no field manager.
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await;
    answer
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| s.allowed)
}

/// An answer to an approval step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The step succeeds and the run goes on.
    Approve,
    /// The step fails with reason Rejected.
    Reject,
}

impl Answer {
    /// The verb (`approve`, `reject`).
    pub fn verb(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }

    /// The annotation carrying it.
    pub fn annotation(self) -> &'static str {
        match self {
            Self::Approve => plugin::APPROVE,
            Self::Reject => plugin::REJECT,
        }
    }

    fn done(self) -> &'static str {
        match self {
            Self::Approve => "approved",
            Self::Reject => "rejected",
        }
    }
}

/// Approves or rejects `step` of `run`, which must wait at it. Returns what was done.
pub async fn answer(
    client: &Client,
    namespace: &str,
    run: &str,
    step: &str,
    answer: Answer,
) -> Result<String, ActionError> {
    let verb = answer.verb();
    let current = fetch_run(client, namespace, run).await?;
    plugin::check_answer(&current, step, verb).map_err(|e| {
        ActionError::conflict(format!("cannot {verb} in namespace {namespace:?}: {e}"))
    })?;
    annotate::<RunbookRun>(client, namespace, run, answer.annotation(), step).await?;
    Ok(format!(
        "{} {}: step {step:?}",
        plugin::object_ref::<RunbookRun>(run),
        answer.done()
    ))
}

/// Requests a cancel of `run`: the current step stops, finally steps still run.
pub async fn cancel(client: &Client, namespace: &str, run: &str) -> Result<String, ActionError> {
    let current = fetch_run(client, namespace, run).await?;
    plugin::check_cancel(&current).map_err(|e| {
        ActionError::conflict(format!("cannot cancel in namespace {namespace:?}: {e}"))
    })?;
    let token = plugin::token(Timestamp::now());
    annotate::<RunbookRun>(client, namespace, run, plugin::CANCEL, &token).await?;
    Ok(format!(
        "{} cancel requested: the current step stops, finally steps still run",
        plugin::object_ref::<RunbookRun>(run)
    ))
}

/// Starts a run of Runbook `runbook` with `params` (Plan mode when `plan`), trigger Manual
/// with the caller as its source. Returns the created run and the Runbook.
pub async fn start_run(
    client: &Client,
    namespace: &str,
    runbook: &str,
    params: BTreeMap<String, String>,
    plan: bool,
) -> Result<(RunbookRun, Runbook), ActionError> {
    let rb: Runbook = fetch(client, namespace, runbook).await?;
    let user = whoami(client).await;
    let object = plugin::new_run(&rb, params, plan, &plugin::requested_by(user.as_deref()))
        .map_err(|e| ActionError::bad_request(format!("cannot run Runbook {runbook:?}: {e}")))?;
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    let created = Api::<RunbookRun>::namespaced(client.clone(), namespace)
        .create(&post, &object)
        .await
        .map_err(|err| explain(err, "creating a RunbookRun", namespace))?;
    Ok((created, rb))
}

/// Starts a new run of the Runbook `run` ran, with the same parameters and mode.
pub async fn rerun(client: &Client, namespace: &str, run: &str) -> Result<RunbookRun, ActionError> {
    let previous = fetch_run(client, namespace, run).await?;
    let plan = previous.spec.mode == Some(RunMode::Plan);
    let (created, _) = start_run(
        client,
        namespace,
        &previous.spec.runbook_ref.name,
        previous.spec.params.clone(),
        plan,
    )
    .await?;
    Ok(created)
}

/// Promotes or aborts the current revision of release `name` (refused unless it is
/// `revision`, when given). Returns the revision requested and notes for the user.
pub async fn release(
    client: &Client,
    namespace: &str,
    name: &str,
    request: ReleaseRequest,
    revision: Option<&str>,
) -> Result<(String, Vec<String>), ActionError> {
    let bgr: BlueGreenRelease = fetch(client, namespace, name).await?;
    let verb = request.verb();
    let (revision, notes) = plugin::release_request(&bgr, request, revision).map_err(|e| {
        ActionError::conflict(format!("cannot {verb} in namespace {namespace:?}: {e}"))
    })?;
    annotate::<BlueGreenRelease>(client, namespace, name, request.annotation(), &revision).await?;
    Ok((revision, notes))
}

/// Requests a backup of policy `name` now. Returns the Job it will run as and notes.
pub async fn backup_now(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(String, Vec<String>), ActionError> {
    let current: BackupPolicy = fetch(client, namespace, name).await?;
    let notes = plugin::backup_now_notes(&current);
    let token = plugin::token(Timestamp::now());
    annotate::<BackupPolicy>(client, namespace, name, plugin::BACKUP_NOW, &token).await?;
    Ok((
        crate::backup_policy::on_demand_job_name(name, &token),
        notes,
    ))
}

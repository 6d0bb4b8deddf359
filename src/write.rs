//! The one write path: every create, apply, patch and delete the operator sends goes through a
//! [`Writer`], so each write carries the field manager `runbook-operator`, is counted in
//! `runbook_operator_api_writes_total{controller, write}`, honours dry-run (plan mode), and
//! fails with a [`WriteError`] that names the request.
//!
//! Reads stay where they are (caches, `observe`); this module only writes. The `Api` handles a
//! writer hands out ([`Writer::api`], [`Writer::api_with`]) are the ones its writes use, so the
//! identity a write is sent as is decided here and nowhere else: the operator's own for its
//! kinds, or, for a writer [`Writer::acting_as`] an object's ServiceAccount, that identity
//! (whose handles the object's reads of its targets use too).

use std::fmt::Debug;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::context::Context;
use crate::identity::{Identity, IdentityError};
use crate::well_known::FIELD_MANAGER;

/// A write the API server (or the connection to it) refused, naming the request.
#[derive(Debug)]
pub struct WriteError {
    /// The identity the write was sent as, when the writer acted for an object
    /// ([`Writer::acting_as`]); `None` for the operator's own identity.
    pub identity: Option<String>,
    /// Set when the API server refused (403) the write to that identity: the sentence of
    /// [`crate::identity::refused`]. It is this error's `source()`, so a kind's error that
    /// wraps this one (even `#[error(transparent)]`) shows the refusal as the identity's,
    /// not as a rule missing from the operator's RBAC.
    pub refused: Option<crate::identity::Refused>,
    /// What was sent: `create`, `apply`, `patch`, `patch status`, `delete`...
    pub verb: &'static str,
    /// The kind written to.
    pub kind: String,
    /// `namespace/name` (or the name alone for cluster-scoped objects).
    pub target: String,
    /// The client's error (boxed: a `kube::Error` is large, and this travels in every `Result`).
    pub source: Box<kube::Error>,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.verb, self.kind, self.target, self.source
        )
    }
}

impl std::error::Error for WriteError {
    // The client's error itself, not its box: callers walk the chain and downcast to
    // `kube::Error` (a 403 is reported on the object), which a `Box<kube::Error>` would hide.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.refused {
            Some(refused) => Some(refused),
            None => Some(self.source.as_ref()),
        }
    }
}

impl WriteError {
    /// The HTTP status the API server answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        code(&self.source)
    }

    /// 409 on a create: an object of that name already exists.
    pub fn already_exists(&self) -> bool {
        self.code() == Some(409)
    }

    /// 404: the object (or its namespace) does not exist.
    pub fn not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 409 on a guarded write: the object changed since it was read.
    pub fn conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        status_label(&self.source)
    }

    /// The sentence about a 403 refused to an object's identity (see
    /// [`crate::identity::refused`]); `None` for anything else, or for the operator's own.
    pub fn refused_identity(&self) -> Option<String> {
        match (&self.identity, self.source.as_ref()) {
            (Some(_), kube::Error::Api(status)) if status.code == 403 => {
                Some(crate::identity::refused(&status.message))
            }
            _ => None,
        }
    }
}

/// The HTTP status of a client error, if the API server answered.
pub fn code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A short, bounded label for a client error, for `reconcile_errors_total{error}`.
pub fn status_label(err: &kube::Error) -> &'static str {
    match code(err) {
        Some(400) => "bad_request",
        Some(401) => "unauthorized",
        Some(403) => "forbidden",
        Some(404) => "not_found",
        Some(409) => "conflict",
        Some(410) => "gone",
        Some(422) => "invalid",
        Some(429) => "throttled",
        Some(500..=599) => "server_error",
        Some(_) => "api_error",
        None => "transport",
    }
}

/// Sends writes for one controller: the field manager, metrics, dry-run and (for the objects a
/// controller acts on) the identity are set here once.
#[derive(Clone)]
pub struct Writer<'a> {
    ctx: &'a Context,
    controller: &'static str,
    dry_run: bool,
    /// Set by [`Writer::acting_as`]: the identity and its impersonating client.
    acting: Option<(Identity, Client)>,
}

impl<'a> Writer<'a> {
    /// A writer for `controller`'s writes.
    pub fn new(ctx: &'a Context, controller: &'static str) -> Self {
        Self {
            ctx,
            controller,
            dry_run: false,
            acting: None,
        }
    }

    /// The same writer acting as `identity`: every `api`/`api_with` handle (for reads and
    /// writes alike) and so every write made with it is sent impersonating that ServiceAccount,
    /// and the API server's RBAC decides as for that ServiceAccount. For an object's targets;
    /// the operator's own kinds, Events and Leases keep the writer of [`Writer::new`].
    pub fn acting_as(&self, identity: &Identity) -> Result<Self, IdentityError> {
        let client = self.ctx.identities.client(identity)?;
        Ok(Self {
            acting: Some((identity.clone(), client)),
            ..self.clone()
        })
    }

    /// The same writer with the operator's own identity, for writes to the operator's own
    /// kinds made while acting for an object (a run's annotations, say).
    pub fn as_operator(&self) -> Self {
        Self {
            acting: None,
            ..self.clone()
        }
    }

    /// The identity this writer acts as; `None` for the operator's own.
    pub fn identity(&self) -> Option<&Identity> {
        self.acting.as_ref().map(|(identity, _)| identity)
    }

    /// The client this writer sends with: the identity's when acting, else the operator's.
    pub fn client(&self) -> &Client {
        match &self.acting {
            Some((_, client)) => client,
            None => &self.ctx.client,
        }
    }

    /// The same writer, sending every write as a server-side dry run when `dry_run` is true
    /// (plan mode): the API server validates and admits it, and stores nothing.
    pub fn dry_run(&self, dry_run: bool) -> Self {
        Self {
            dry_run,
            ..self.clone()
        }
    }

    /// Whether writes are dry runs.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The context the writer belongs to.
    pub fn ctx(&self) -> &'a Context {
        self.ctx
    }

    /// The API of `K` in `namespace`, as this writer sends.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client().clone(), namespace)
    }

    /// The API of a kind known at run time, in `namespace`.
    pub fn api_with(&self, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client().clone(), namespace, resource)
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            dry_run: self.dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
        }
    }

    fn patch_params<P: Serialize>(&self, patch: &Patch<P>) -> PatchParams {
        let params = match patch {
            Patch::Apply(_) => PatchParams::apply(FIELD_MANAGER).force(),
            _ => PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
        };
        if self.dry_run {
            params.dry_run()
        } else {
            params
        }
    }

    fn counted<T>(
        &self,
        write: &'static str,
        verb: &'static str,
        kind: &str,
        target: String,
        result: Result<T, kube::Error>,
    ) -> Result<T, WriteError> {
        // Dry runs store nothing: they are not writes.
        if !self.dry_run {
            self.ctx.metrics.count_write(self.controller, write);
        }
        match result {
            Ok(value) => {
                debug!(controller = self.controller, verb, kind, %target, "written");
                Ok(value)
            }
            Err(source) => Err(WriteError {
                refused: match (self.identity(), &source) {
                    (Some(_), kube::Error::Api(status)) if status.code == 403 => Some(
                        crate::identity::Refused(crate::identity::refused(&status.message)),
                    ),
                    _ => None,
                },
                identity: self.identity().map(Identity::username),
                verb,
                kind: kind.to_owned(),
                target,
                source: Box::new(source),
            }),
        }
    }

    /// Creates `obj`. A 409 ([`WriteError::already_exists`]) is the caller's to judge: for
    /// deterministic names it means the object was created before.
    pub async fn create<K>(
        &self,
        api: &Api<K>,
        obj: &K,
        write: &'static str,
    ) -> Result<K, WriteError>
    where
        K: Resource + Clone + Serialize + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let result = api.create(&self.post_params(), obj).await;
        let target = target(obj.namespace().as_deref(), &obj.name_any());
        self.counted(write, "create", &kind::<K>(), target, result)
    }

    /// Patches the object `name` (merge, JSON, strategic, or server-side apply with force).
    pub async fn patch<K, P>(
        &self,
        api: &Api<K>,
        name: &str,
        patch: &Patch<P>,
        write: &'static str,
    ) -> Result<K, WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
        P: Serialize + Debug,
    {
        let result = api.patch(name, &self.patch_params(patch), patch).await;
        self.counted(
            write,
            verb(patch, "patch", "apply"),
            &kind::<K>(),
            target(api_namespace(api), name),
            result,
        )
    }

    /// Patches an object of a kind known only at run time (a step's target).
    pub async fn patch_dynamic<P>(
        &self,
        api: &Api<DynamicObject>,
        resource: &ApiResource,
        name: &str,
        patch: &Patch<P>,
        write: &'static str,
    ) -> Result<DynamicObject, WriteError>
    where
        P: Serialize + Debug,
    {
        let result = api.patch(name, &self.patch_params(patch), patch).await;
        self.counted(
            write,
            verb(patch, "patch", "apply"),
            &resource.kind,
            target(api_namespace(api), name),
            result,
        )
    }

    /// Patches the scale subresource of `name`.
    pub async fn patch_scale<K, P>(
        &self,
        api: &Api<K>,
        name: &str,
        patch: &Patch<P>,
        write: &'static str,
    ) -> Result<k8s_openapi::api::autoscaling::v1::Scale, WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
        P: Serialize + Debug,
    {
        let result = api
            .patch_scale(name, &self.patch_params(patch), patch)
            .await;
        self.counted(
            write,
            "patch scale",
            &kind::<K>(),
            target(api_namespace(api), name),
            result,
        )
    }

    /// Patches the status subresource of `name`.
    pub async fn patch_status<K, P>(
        &self,
        api: &Api<K>,
        name: &str,
        patch: &Patch<P>,
        write: &'static str,
    ) -> Result<K, WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
        P: Serialize + Debug,
    {
        let result = api
            .patch_status(name, &self.patch_params(patch), patch)
            .await;
        self.counted(
            write,
            verb(patch, "patch status", "apply status"),
            &kind::<K>(),
            target(api_namespace(api), name),
            result,
        )
    }

    /// Deletes `name`. Returns `false` when it was already gone (404), which is what a delete
    /// wanted.
    pub async fn delete<K>(
        &self,
        api: &Api<K>,
        name: &str,
        params: &DeleteParams,
        write: &'static str,
    ) -> Result<bool, WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let mut params = params.clone();
        params.dry_run = self.dry_run;
        let result = api.delete(name, &params).await.map(|_| ());
        match self.counted(
            write,
            "delete",
            &kind::<K>(),
            target(api_namespace(api), name),
            result,
        ) {
            Ok(()) => Ok(true),
            Err(err) if err.not_found() => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Writes `status` on `obj` by server-side apply if it differs from `current`; returns the
    /// resourceVersion written, `None` when nothing was. Comparing first is what makes a settled
    /// object cost zero writes.
    pub async fn apply_status<K, S>(
        &self,
        obj: &K,
        current: Option<&S>,
        status: &S,
    ) -> Result<Option<String>, WriteError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
        S: Serialize + PartialEq,
    {
        self.apply_status_guarded(obj, None, current, status).await
    }

    /// [`Writer::apply_status`] that fails with a conflict (409) when `obj` is no longer at
    /// `resource_version` (the version the decision read): the status records something done
    /// once (a message sent), and an operator that decided from an older read must not
    /// record, and do, it again.
    pub async fn apply_status_guarded<K, S>(
        &self,
        obj: &K,
        resource_version: Option<&str>,
        current: Option<&S>,
        status: &S,
    ) -> Result<Option<String>, WriteError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
        S: Serialize + PartialEq,
    {
        if current == Some(status) {
            return Ok(None);
        }
        let api: Api<K> = self.api(&obj.namespace().unwrap_or_default());
        let mut patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        if let Some(version) = resource_version {
            patch["metadata"] = serde_json::json!({ "resourceVersion": version });
        }
        let written = self
            .patch_status(&api, &obj.name_any(), &Patch::Apply(&patch), "status")
            .await?;
        Ok(Some(written.resource_version().unwrap_or_default()))
    }

    /// Adds (`present`) or removes the finalizer `key` on `obj`, the one way the operator
    /// changes finalizers. `guard` says what must not have changed since `obj` was read (see
    /// [`FinalizerGuard`]). Adding also sets `labels` in the same write. Returns the written
    /// object, or `None` when nothing needed writing, or the object was already gone while
    /// removing.
    pub async fn set_finalizer<K>(
        &self,
        obj: &K,
        key: &str,
        present: bool,
        labels: &[(&str, &str)],
        guard: FinalizerGuard<'_>,
    ) -> Result<Option<K>, WriteError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let labels = if present { labels } else { &[] };
        let labelled = labels
            .iter()
            .all(|(k, v)| obj.labels().get(*k).map(String::as_str) == Some(*v));
        if obj.finalizers().iter().any(|f| f == key) == present && labelled {
            return Ok(None);
        }
        let api: Api<K> = self.api(&obj.namespace().unwrap_or_default());
        let result = match guard {
            FinalizerGuard::ResourceVersion(version) => {
                let mut finalizers: Vec<&str> = obj
                    .finalizers()
                    .iter()
                    .map(String::as_str)
                    .filter(|f| *f != key)
                    .collect();
                if present {
                    finalizers.push(key);
                }
                let mut metadata =
                    serde_json::json!({"finalizers": finalizers, "resourceVersion": version});
                if !labels.is_empty() {
                    metadata["labels"] = labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
                        .collect();
                }
                let patch = Patch::Merge(serde_json::json!({"metadata": metadata}));
                self.patch(&api, &obj.name_any(), &patch, "finalizer").await
            }
            FinalizerGuard::List => {
                let Some(patch) = finalizer_patch(obj.finalizers(), key, present) else {
                    return Ok(None);
                };
                self.patch(
                    &api,
                    &obj.name_any(),
                    &Patch::Json::<()>(patch),
                    "finalizer",
                )
                .await
            }
        };
        match result {
            Ok(written) => Ok(Some(written)),
            // Already gone: the finalizer was the last thing holding it.
            Err(err) if err.not_found() && !present => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// What a finalizer change requires to be unchanged since the object was read.
#[derive(Clone, Copy, Debug)]
pub enum FinalizerGuard<'a> {
    /// The whole object: a merge patch carrying this resourceVersion, which the API server
    /// refuses with 409 if the object changed. For a controller whose next write must not act
    /// on a stale copy (a RunbookRun records its journal right after).
    ResourceVersion(Option<&'a str>),
    /// Only the finalizer list, by a JSON patch whose `test` operations check it: other
    /// changes to the object do not make the write fail.
    List,
}

/// The JSON patch that adds or removes `key` from `finalizers`, guarded by `test` operations;
/// `None` when the list already is as wanted.
pub fn finalizer_patch(
    finalizers: &[String],
    key: &str,
    present: bool,
) -> Option<json_patch::Patch> {
    use serde_json::json;
    let index = finalizers.iter().position(|f| f == key);
    let ops = match (present, index) {
        (true, Some(_)) | (false, None) => return None,
        (true, None) if finalizers.is_empty() => {
            json!([{"op": "add", "path": "/metadata/finalizers", "value": [key]}])
        }
        (true, None) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": key}
        ]),
        (false, Some(index)) => json!([
            {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": key},
            {"op": "remove", "path": format!("/metadata/finalizers/{index}")}
        ]),
    };
    // The operations above are well-formed JSON patch by construction.
    serde_json::from_value(ops).ok()
}

fn verb<P: Serialize>(patch: &Patch<P>, merge: &'static str, apply: &'static str) -> &'static str {
    match patch {
        Patch::Apply(_) => apply,
        _ => merge,
    }
}

fn kind<K: Resource>() -> String
where
    K::DynamicType: Default,
{
    K::kind(&K::DynamicType::default()).into_owned()
}

fn api_namespace<K: Resource>(api: &Api<K>) -> Option<&str> {
    api.namespace()
}

fn target(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(patch: Option<json_patch::Patch>) -> serde_json::Value {
        serde_json::to_value(patch).unwrap()
    }

    #[test]
    fn finalizer_added_to_an_empty_list_creates_it() {
        assert_eq!(
            ops(finalizer_patch(&[], "x/y", true)),
            serde_json::json!([{"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}])
        );
    }

    #[test]
    fn finalizer_added_to_a_list_tests_the_list_first() {
        let patch = ops(finalizer_patch(&["other".into()], "x/y", true));
        assert_eq!(patch[0]["op"], "test");
        assert_eq!(patch[0]["value"], serde_json::json!(["other"]));
        assert_eq!(patch[1]["path"], "/metadata/finalizers/-");
    }

    #[test]
    fn finalizer_removed_by_index_after_a_test() {
        let patch = ops(finalizer_patch(&["a".into(), "x/y".into()], "x/y", false));
        assert_eq!(
            patch[0],
            serde_json::json!({"op": "test", "path": "/metadata/finalizers/1", "value": "x/y"})
        );
        assert_eq!(patch[1]["op"], "remove");
    }

    #[test]
    fn nothing_to_write_when_already_as_wanted() {
        assert!(finalizer_patch(&["x/y".into()], "x/y", true).is_none());
        assert!(finalizer_patch(&["a".into()], "x/y", false).is_none());
    }

    #[test]
    fn a_refused_write_shows_its_403_through_a_kind_error() {
        #[derive(Debug, thiserror::Error)]
        enum KindError {
            #[error(transparent)]
            Write(#[from] WriteError),
        }
        let refused = WriteError {
            identity: None,
            refused: None,
            verb: "patch status",
            kind: "RunbookRun".into(),
            target: "shop/x".into(),
            source: Box::new(kube::Error::Api(Box::new(kube::core::Status {
                code: 403,
                message: "runbookruns/status is forbidden".into(),
                ..Default::default()
            }))),
        };
        let err = KindError::from(refused);
        assert_eq!(
            crate::runtime::forbidden(&err).as_deref(),
            Some("runbookruns/status is forbidden")
        );
        assert!(
            err.to_string()
                .starts_with("patch status RunbookRun shop/x: "),
            "{err}"
        );
    }

    #[test]
    fn error_labels_are_bounded_by_status() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert_eq!(status_label(&api(403)), "forbidden");
        assert_eq!(status_label(&api(409)), "conflict");
        assert_eq!(status_label(&api(503)), "server_error");
        assert_eq!(status_label(&api(418)), "api_error");
    }
}

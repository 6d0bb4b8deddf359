//! Plumbing shared by every controller: a watcher that skips (and reports) objects it cannot
//! decode instead of stalling, status writes by server-side apply, metrics around reconciles.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event, watcher};
use kube::runtime::{Controller, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

mod report;

pub use report::{
    REASON_FORBIDDEN, REASON_INTERNAL_ERROR, forbidden, forbidden_note, internal_error_note,
    refused_identity,
};
use report::{Refusals, report_forbidden, report_internal_error};

use crate::conditions::HasConditions;
use crate::context::{Context, RefusedLists};
use crate::metrics::ReconcileResult;
use crate::write::{WriteError, Writer};

/// A future that resolves when the operator is asked to stop.
pub type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// The custom resources our controllers reconcile.
pub trait Kind:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static
{
}

/// The kinds whose reconciles [`run`] drives: namespaced custom resources with a status that
/// carries conditions, so a refusal can be reported on the object itself.
pub trait Reported:
    Kind + Resource<Scope = k8s_openapi::NamespaceResourceScope> + HasStatus<Status: HasConditions>
{
}

impl<K> Reported for K where
    K: Kind
        + Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + HasStatus<Status: HasConditions>
{
}

/// The API for `K` in the operator's scope, for lists and watches only: it uses the watch
/// client, whose read timeout outlasts a quiet watch ([`Context::watch_client`]).
pub fn watch_api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.watch_client.clone(), ns),
        None => Api::all(ctx.watch_client.clone()),
    }
}

/// `config` with the field selector that keeps the excluded namespaces out
/// (`--exclude-namespaces`): every list and watch of the controllers goes through here, so
/// objects there are never cached, never reconciled.
pub fn scoped_watcher(ctx: &Context, mut config: watcher::Config) -> watcher::Config {
    if let Some(exclusion) = ctx.config.exclusion_selector() {
        config.field_selector = Some(match config.field_selector.take() {
            Some(fields) if !fields.is_empty() => format!("{fields},{exclusion}"),
            _ => exclusion,
        });
    }
    config
}

/// Watches `K`, keeps a store of it and yields changed objects.
///
/// The watch reads raw JSON and decodes each object on its own, so one object that does not
/// decode (e.g. stored before a schema change) is logged, counted, reported as a Warning
/// Event, and skipped; a typed watch would fail the whole list and stall every object.
pub fn watch_decoded<K: Kind>(
    ctx: &Context,
    controller: &'static str,
) -> (
    Cache<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    watch_decoded_with(ctx, controller, watcher::Config::default())
}

/// [`watch_decoded`] with watcher settings, e.g. a label selector so the store holds only the
/// objects one controller owns.
pub fn watch_decoded_with<K: Kind>(
    ctx: &Context,
    controller: &'static str,
    config: watcher::Config,
) -> (
    Cache<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    reflect(ctx, decoded_watch(ctx, controller, config))
}

/// [`watch_decoded_with`] whose store keeps only the objects `keep` accepts when their event
/// arrives, and whose watch starts only once `after` resolves (e.g. once the objects `keep`
/// consults have listed, so the first list is judged against all of them).
///
/// An object `keep` refuses is never cached, and one it accepted before leaves the store at its
/// next event; its changes are not yielded. `keep` is only asked at events: an object it would
/// accept later (a release naming it is created after it) stays out until its next change, so
/// readers that miss an object read it from the API server.
pub fn watch_decoded_kept<K: Kind>(
    ctx: &Context,
    controller: &'static str,
    config: watcher::Config,
    after: futures::future::BoxFuture<'static, ()>,
    keep: impl Fn(&K) -> bool + Send + 'static,
) -> (
    Cache<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    let decoded = decoded_watch::<K>(ctx, controller, config);
    let gated = futures::stream::once(async move {
        after.await;
        decoded
    })
    .flatten()
    .filter_map(move |event| futures::future::ready(event.map(|e| kept(e, &keep)).transpose()));
    reflect(ctx, gated)
}

/// What of a watch event reaches a store that keeps only the objects `keep` accepts: an
/// accepted object as it came, a refused one in the initial list not at all, and a refused
/// change as a deletion (a no-op unless the object was accepted before).
pub fn kept<K>(event: Event<K>, keep: impl Fn(&K) -> bool) -> Option<Event<K>> {
    match event {
        Event::Apply(obj) if !keep(&obj) => Some(Event::Delete(obj)),
        Event::InitApply(obj) if !keep(&obj) => None,
        event => Some(event),
    }
}

/// The watch of `K` in the operator's scope, each object decoded on its own (and stripped).
fn decoded_watch<K: Kind>(
    ctx: &Context,
    controller: &'static str,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static {
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced_with(ctx.watch_client.clone(), ns, &resource),
        None => Api::all_with(ctx.watch_client.clone(), &resource),
    };
    let ctx = ctx.clone();
    watcher(api, scoped_watcher(&ctx, config).any_semantic())
        .default_backoff()
        .filter_map(move |event| {
            let ctx = ctx.clone();
            async move {
                match event {
                    Err(err) => Some(Err(err)),
                    Ok(event) => decode_event::<K>(event, &ctx, controller).await.map(Ok),
                }
            }
        })
}

/// A store of the objects `decoded` carries, and the objects applied.
fn reflect<K: Kind>(
    ctx: &Context,
    decoded: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> (
    Cache<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store::<K>();
    let (cache, signal) = Cache::new(reader, ctx.refused_lists.clone());
    let stream = signal
        .wrap(reflector::reflector(writer, decoded))
        .applied_objects();
    (cache, stream)
}

/// One watch of `K` whose store and change notifications several controllers of a scope
/// share, instead of each keeping its own copy of every object: `handles` holds one
/// subscription per consumer, taken before the watch starts so none misses the first list.
pub struct Shared<K: Kind> {
    /// The objects, stripped like every cached object.
    pub cache: Cache<K>,
    /// One stream of changed objects per consumer, in the order asked for.
    pub handles: Vec<reflector::ReflectHandle<K>>,
}

/// One consumer's part of a [`Shared`] watch: the shared cache and its own stream.
pub type SharedPart<K> = (Cache<K>, reflector::ReflectHandle<K>);

/// Events of a shared watch buffered per consumer before the watch waits for the slowest
/// (objects are looked up in the store when consumed: only references wait here).
const SHARED_BUFFER: usize = 1024;

/// [`watch_decoded`] once for `consumers` controllers: a background task drives the watch
/// until `shutdown`, logging watch failures (the consumers' streams carry only objects).
pub fn watch_decoded_shared<K: Kind>(
    ctx: &Context,
    controller: &'static str,
    consumers: usize,
    shutdown: Shutdown,
) -> Shared<K> {
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced_with(ctx.watch_client.clone(), ns, &resource),
        None => Api::all_with(ctx.watch_client.clone(), &resource),
    };
    let (reader, writer) = reflector::store_shared::<K>(SHARED_BUFFER);
    let handles = (0..consumers).filter_map(|_| writer.subscribe()).collect();
    let refused = ctx.refused_lists.clone();
    let decode_ctx = ctx.clone();
    let decoded = watcher(
        api,
        scoped_watcher(ctx, watcher::Config::default()).any_semantic(),
    )
    .default_backoff()
    .filter_map(move |event| {
        let ctx = decode_ctx.clone();
        async move {
            match event {
                Err(err) => Some(Err(err)),
                Ok(event) => decode_event::<K>(event, &ctx, controller).await.map(Ok),
            }
        }
    });
    let (cache, signal) = Cache::new(reader, refused);
    let root = signal.wrap(decoded.reflect_shared(writer));
    tokio::spawn(async move {
        root.take_until(shutdown)
            .for_each(|event| {
                if let Err(err) = event {
                    match refusal(&err) {
                        Some(status) => {
                            warn!(controller, error = %status.message, "the API server refused a list or watch: the operator's RBAC lacks list/watch on this resource; objects that need it report Forbidden, and the watch is retried")
                        }
                        None => warn!(controller, error = %err, "watch failed; retrying"),
                    }
                }
                futures::future::ready(())
            })
            .await;
    });
    Shared { cache, handles }
}

/// [`queued`] for a shared stream.
pub fn queued_shared<K: Kind>(
    ctx: &Context,
    controller: &'static str,
    stream: impl Stream<Item = Arc<K>> + Send + 'static,
) -> impl Stream<Item = Arc<K>> + Send + 'static {
    let metrics = ctx.metrics.clone();
    stream.inspect(move |obj| {
        metrics.enqueued(
            controller,
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
        );
    })
}

async fn decode_event<K: Kind>(
    event: Event<DynamicObject>,
    ctx: &Context,
    controller: &'static str,
) -> Option<Event<K>> {
    Some(match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::Apply(obj) => Event::Apply(decode(obj, ctx, controller).await?),
        Event::InitApply(obj) => Event::InitApply(decode(obj, ctx, controller).await?),
        Event::Delete(obj) => Event::Delete(decode(obj, ctx, controller).await?),
    })
}

/// Decodes one watched object; the error names the field that did not fit.
pub fn decode_object<K: Kind>(obj: &DynamicObject) -> Result<K, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

/// Drops what the operator never reads from an object before it is cached: the managed
/// fields and `kubectl apply`'s copy of the last applied object, together often larger than
/// the rest of the object. The operator's memory then grows with the number of objects it
/// watches, not with how they were written.
pub fn strip(meta: &mut kube::core::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(crate::well_known::LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

async fn decode<K: Kind>(
    mut obj: DynamicObject,
    ctx: &Context,
    controller: &'static str,
) -> Option<K> {
    strip(&mut obj.metadata);
    match decode_object::<K>(&obj) {
        Ok(k) => Some(k),
        Err(err) => {
            let kind = K::kind(&());
            let name = obj.name_any();
            let namespace = obj.namespace();
            warn!(%kind, %name, ?namespace, %err, "skipping an object that cannot be decoded");
            ctx.metrics
                .decode_errors
                .get_or_create(&crate::metrics::ControllerLabels {
                    controller: controller.to_owned(),
                })
                .inc();
            let regarding = ObjectReference {
                api_version: Some(K::api_version(&()).into_owned()),
                kind: Some(kind.into_owned()),
                name: Some(name),
                namespace,
                uid: obj.metadata.uid.clone(),
                ..Default::default()
            };
            ctx.publish(
                controller,
                &regarding,
                EventType::Warning,
                "DecodeFailed",
                format!("the operator cannot read this object and skips it: {err}"),
            )
            .await;
            None
        }
    }
}

/// Writes `status` by server-side apply if it differs from `current`: [`Writer::apply_status`]
/// for `controller`.
pub async fn apply_status<K, S>(
    ctx: &Context,
    controller: &'static str,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<Option<String>, WriteError>
where
    K: Kind + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    S: Serialize + PartialEq,
{
    Writer::new(ctx, controller)
        .apply_status(obj, current, status)
        .await
}

/// The resourceVersions of the objects a controller last wrote, so a reconcile never acts on a
/// cached copy older than its own last write.
///
/// A reconcile can be woken by a change to another object (a Deployment the last reconcile
/// scaled) before the watch has delivered the status that same reconcile wrote; acting on that
/// older copy would repeat a step (record a changed value as the prior one, switch traffic
/// again). When the cached copy is not the one last written, [`Written::latest`] reads the
/// object from the API server instead: one GET, only in that case.
#[derive(Default)]
pub struct Written(std::sync::Mutex<std::collections::HashMap<(String, String, String), String>>);

impl Written {
    fn key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> (String, String, String) {
        (
            K::kind(&()).into_owned(),
            namespace.to_owned(),
            name.to_owned(),
        )
    }

    /// Records that this controller wrote `name` at `resource_version`.
    pub fn record<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
        resource_version: String,
    ) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(Self::key::<K>(namespace, name), resource_version);
        }
    }

    /// Forgets an object (it is gone).
    pub fn forget<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&Self::key::<K>(namespace, name));
        }
    }

    /// `cached` if it is at least as new as this controller's last write of it, else the
    /// object as the API server has it now (`None`: it is gone).
    pub async fn latest<K>(
        &self,
        api: &Api<K>,
        cached: Arc<K>,
    ) -> Result<Option<Arc<K>>, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let namespace = cached.namespace().unwrap_or_default();
        let name = cached.name_any();
        let key = Self::key::<K>(&namespace, &name);
        let last = self.0.lock().ok().and_then(|map| map.get(&key).cloned());
        match last {
            None => return Ok(Some(cached)),
            Some(rv) if cached.resource_version().as_deref() == Some(rv.as_str()) => {
                return Ok(Some(cached));
            }
            Some(_) => {}
        }
        match api.get_opt(&name).await? {
            Some(fresh) => {
                // Whatever is newest now is what later cached copies are compared with.
                self.record::<K>(
                    &namespace,
                    &name,
                    fresh.resource_version().unwrap_or_default(),
                );
                Ok(Some(Arc::new(fresh)))
            }
            None => {
                self.forget::<K>(&namespace, &name);
                Ok(None)
            }
        }
    }
}

/// Counts every object `stream` yields as waiting for `controller`'s reconcile, for the
/// `workqueue_depth` gauge; [`run`] takes it off when its reconcile starts. Wrap the stream
/// of the controller's own kind in this before `Controller::for_stream`: kube-runtime exposes
/// no queue, and only this stream's items are keyed by the object they reconcile (a trigger
/// from a related object or a timer is not seen here, so it is not counted).
pub fn queued<K: Kind>(
    ctx: &Context,
    controller: &'static str,
    stream: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    let metrics = ctx.metrics.clone();
    stream.inspect(move |item| {
        if let Ok(obj) = item {
            metrics.enqueued(
                controller,
                &obj.namespace().unwrap_or_default(),
                &obj.name_any(),
            );
        }
    })
}

/// Runs a controller until shutdown, timing every reconcile into the metrics and logging
/// failures.
///
/// A failed reconcile is retried after [`crate::retry::delay`]: 5 s doubling per failure of
/// the object in a row up to 5 minutes, or the 5 minutes at once for a permanent error; a
/// success forgets the count. One the API server refused (403) is also reported on the
/// object, as a `Ready=False` condition with reason `Forbidden` and a Warning Event, so a
/// missing RBAC rule never looks like an object that is merely slow.
///
/// A reconcile that panics is caught: it is counted (`reconcile_panics_total`), logged, and
/// fails only its object, which gets `Stalled=True` and `Ready=False` with reason
/// `InternalError` and a Warning Event, and is retried after the longest wait; the
/// controller goes on with every other object.
///
/// A reconcile's result for `reconcile_total` is read from the `Action` it returns
/// ([`ReconcileResult::of`]), so reconcile functions need not report it.
pub async fn run<K, R, Fut, E>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    name: &'static str,
    reconcile: R,
    shutdown: Shutdown,
) where
    K: Reported,
    R: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + crate::errors::MetricLabel + Send + Sync + 'static,
{
    let reconcile = Arc::new(reconcile);
    let refusals = Refusals::default();
    let failures = crate::retry::Failures::default();
    let cleared = (refusals.clone(), failures.clone());
    let gone = failures.clone();
    let timed = move |obj: Arc<K>, ctx: Arc<Context>| {
        let reconcile = reconcile.clone();
        let (refusals, failures) = cleared.clone();
        // Runs when the reconcile starts, not when it is scheduled.
        async move {
            ctx.metrics
                .dequeued(name, &obj.namespace().unwrap_or_default(), &obj.name_any());
            let _working = ctx.metrics.working(name);
            let started = Instant::now();
            // The call itself is inside the guarded future too: a panic while building the
            // reconcile's future is caught the same way.
            let attempt = {
                let (obj, ctx) = (obj.clone(), ctx.clone());
                async move { reconcile(obj, ctx).await }
            };
            let result = match crate::retry::catch_panic(attempt).await {
                Ok(result) => result.map_err(Failure::Reconcile),
                Err(panicked) => {
                    ctx.metrics.count_reconcile_panic(name);
                    Err(Failure::Panicked(panicked))
                }
            };
            ctx.metrics
                .observe_reconcile(name, started.elapsed(), ReconcileResult::of(&result));
            if let Err(err) = &result {
                ctx.metrics
                    .count_reconcile_error(name, crate::errors::MetricLabel::metric_label(err));
            }
            if result.is_ok() {
                refusals.forget(obj.as_ref());
                failures.clear(&failure_key(obj.as_ref()));
            }
            result
        }
    };
    let error_policy = move |obj: Arc<K>, err: &Failure<E>, ctx: Arc<Context>| {
        let key = failure_key(obj.as_ref());
        let before = failures.count(&key);
        let err = match err {
            Failure::Panicked(panicked) => {
                let wait = crate::retry::delay(&key, before, crate::retry::Class::Permanent);
                // The panic's own message, never the object: its spec may hold secrets.
                tracing::error!(controller = name, object = %obj.name_any(), namespace = ?obj.namespace(), panic = %panicked.0, "a reconcile panicked: the object is marked Stalled (InternalError), the controller goes on; retrying in {}s", wait.as_secs());
                if refusals.first_time(obj.as_ref(), REASON_INTERNAL_ERROR) {
                    tokio::spawn(report_internal_error(ctx, name, obj));
                }
                return Action::requeue(wait);
            }
            Failure::Reconcile(err) => err,
        };
        // Refused to the object's own identity: nothing changes until someone grants a right,
        // so it is looked at again with the doubling wait, and reported once.
        if let Some(note) = refused_identity(err) {
            let wait = crate::retry::delay(&key, before, crate::retry::Class::Transient);
            warn!(controller = name, object = %obj.name_any(), namespace = ?obj.namespace(), error = %note, "refused to the object's identity; retrying in {}s", wait.as_secs());
            if refusals.first_time(obj.as_ref(), &note) {
                tokio::spawn(report_forbidden(ctx, name, obj, note));
            }
            return Action::requeue(wait);
        }
        let class = match err.permanent() {
            true => crate::retry::Class::Permanent,
            false => crate::retry::api_class(err),
        };
        let wait = crate::retry::delay(&key, before, class);
        warn!(controller = name, object = %obj.name_any(), namespace = ?obj.namespace(), error = %err, ?class, "reconcile failed; retrying in {}s", wait.as_secs());
        if let Some(message) = forbidden(err)
            && refusals.first_time(obj.as_ref(), &message)
        {
            tokio::spawn(report_forbidden(ctx, name, obj, forbidden_note(&message)));
        }
        Action::requeue(wait)
    };
    let metrics = ctx.metrics.clone();
    info!(controller = name, "controller started");
    let config = kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency);
    controller
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(timed, error_policy, ctx)
        .for_each(|result| {
            match result {
                // Reconcile failures were logged by the error policy; what is left are watch
                // failures, which the watcher retries with backoff.
                Err(kube::runtime::controller::Error::QueueError(err)) => {
                    if let Some(status) = refusal(&err) {
                        warn!(controller = name, error = %status.message, "the API server refused a list or watch: the operator's RBAC lacks list/watch on this resource; objects that need it report Forbidden, and the watch is retried");
                    } else {
                        warn!(controller = name, error = %err, "watch failed; retrying");
                    }
                }
                // Deleted before its reconcile started: it waits no more, and its failures
                // are forgotten.
                Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                    let namespace = obj.namespace.as_deref().unwrap_or_default();
                    metrics.dequeued(name, namespace, &obj.name);
                    gone.clear(&format!("{}/{namespace}/{}", K::kind(&()), obj.name));
                }
                _ => {}
            }
            futures::future::ready(())
        })
        .await;
    info!(controller = name, "controller stopped");
}

/// A failed reconcile as the error policy sees it: the kind's own error, or a panic caught in
/// the reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Failure<E: std::error::Error + 'static> {
    /// The reconcile returned an error.
    #[error(transparent)]
    Reconcile(E),
    /// The reconcile panicked.
    #[error(transparent)]
    Panicked(crate::retry::Panicked),
}

impl<E: std::error::Error + crate::errors::MetricLabel + 'static> crate::errors::MetricLabel
    for Failure<E>
{
    fn metric_label(&self) -> &'static str {
        match self {
            Self::Reconcile(err) => err.metric_label(),
            Self::Panicked(_) => "panic",
        }
    }
}

/// The key an object's failures in a row are counted under, which also seeds its jitter:
/// `<Kind>/<namespace>/<name>`.
fn failure_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Longest timer a controller sets: something months away is looked at again daily, at no
/// cost in writes, and a timer never exceeds what the runtime's delay queue holds.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Added to a boundary timer so the reconcile it wakes reads a clock at or past the boundary.
const TIMER_SLACK: Duration = Duration::from_millis(20);

/// The action that wakes an object at the instant `at` (a boundary its decision named), or on
/// its next change when there is none.
pub fn wake_at(at: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Action {
    match at {
        None => Action::await_change(),
        Some(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            Action::requeue((wait + TIMER_SLACK).min(MAX_WAIT))
        }
    }
}

pub use crate::time::now;

/// Watches only the metadata of `K` (names, labels) and keeps a store of it: enough to know
/// whether a referenced object exists, and to re-reconcile the objects that name it.
pub fn watch_metadata<K>(
    ctx: &Context,
) -> (
    Cache<kube::core::PartialObjectMeta<K>>,
    impl Stream<Item = Result<kube::core::PartialObjectMeta<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    // An Api over PartialObjectMeta sends metadata-only requests.
    let api: Api<kube::core::PartialObjectMeta<K>> = watch_api(ctx);
    let (cache, signal) = Cache::new(reader, ctx.refused_lists.clone());
    let stream = signal
        .wrap(reflector::reflector(
            writer,
            watcher(
                api,
                scoped_watcher(ctx, watcher::Config::default()).any_semantic(),
            )
            .default_backoff()
            .modify(|obj| strip(&mut obj.metadata)),
        ))
        .touched_objects();
    (cache, stream)
}

/// Watches a built-in namespaced kind `K` in the operator's scope and keeps a store of it;
/// `config` (a label selector) keeps the store to the objects one controller owns. Managed
/// fields are dropped before caching, and `trim` drops whatever else the controller never
/// reads (a Job's pod template): memory then grows with the number of objects, not their
/// size.
pub fn watch_typed<K>(
    ctx: &Context,
    config: watcher::Config,
    trim: fn(&mut K),
) -> (
    Cache<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = watch_api(ctx);
    let (cache, signal) = Cache::new(reader, ctx.refused_lists.clone());
    let stream = signal
        .wrap(reflector::reflector(
            writer,
            watcher(api, scoped_watcher(ctx, config).any_semantic())
                .default_backoff()
                .modify(move |obj| {
                    strip(obj.meta_mut());
                    trim(obj);
                }),
        ))
        .touched_objects();
    (cache, stream)
}

/// Whether an object named `name` exists in `namespace`, by the metadata cache.
pub async fn exists<K>(
    cache: &Cache<kube::core::PartialObjectMeta<K>>,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone,
{
    // The first reconciles can run before the cache has listed; wait rather than report a
    // present object as missing.
    cache.synced().await?;
    Ok(cache
        .store
        .get(&reflector::ObjectRef::new(name).within(namespace))
        .is_some())
}

/// The common tail of a reconcile that judges a spec: merge the conditions, build the status
/// with `status_for`, write it if it changed, and publish an Event if readiness changed.
/// Returns the verdict for callers that act on validity.
pub async fn settle<K, S>(
    ctx: &Context,
    controller: &'static str,
    obj: &K,
    current: Option<&S>,
    problems: &[crate::conditions::SpecProblem],
    ready_message: &str,
    status_for: impl FnOnce(&crate::validation::Verdict) -> S,
) -> Result<crate::validation::Verdict, WriteError>
where
    K: Kind + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    S: Serialize + PartialEq + crate::conditions::HasConditions,
{
    let verdict = crate::validation::judge(
        current.map(|s| s.conditions()).unwrap_or_default(),
        problems,
        obj.meta().generation,
        &now(),
        ready_message,
    );
    let status = status_for(&verdict);
    apply_status(ctx, controller, obj, current, &status).await?;
    if let Some(note) = &verdict.note {
        publish_note(ctx, controller, obj, note).await;
    }
    Ok(verdict)
}

/// Publishes a note from a [`crate::validation::Verdict`] on `obj`.
pub async fn publish_note<K: Kind>(
    ctx: &Context,
    controller: &'static str,
    obj: &K,
    note: &crate::validation::Note,
) {
    ctx.publish(
        controller,
        &obj.object_ref(&()),
        note.type_,
        note.reason,
        note.message.clone(),
    )
    .await;
}

/// References to the objects in `store`, in `namespace`, for which `names_it` is true: the
/// mapper behind "re-reconcile everything that names this object".
pub fn referrers<K>(
    store: &Store<K>,
    namespace: Option<String>,
    names_it: impl Fn(&K) -> bool,
) -> Vec<reflector::ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .into_iter()
        .filter(|obj| obj.meta().namespace == namespace && names_it(obj))
        .map(|obj| reflector::ObjectRef::from(obj.as_ref()))
        .collect()
}

/// A reflector store plus a signal that it has listed once.
///
/// `Store::wait_until_ready` keeps a single waker, so only one task may wait on it at a time
/// (the controller itself does); this signal may be awaited by any number of tasks.
#[derive(Clone)]
pub struct Cache<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// The objects.
    pub store: Store<K>,
    synced: tokio::sync::watch::Receiver<Listing>,
}

/// Where a cache's first list stands.
#[derive(Clone, Debug, PartialEq)]
enum Listing {
    /// Not listed yet; the watcher is trying.
    Pending,
    /// Listed at least once.
    Done,
    /// The API server refused to list or watch (403): waiting would stall every reconcile
    /// that needs the cache, so they fail with this instead until a retry lists.
    Refused(Box<kube::core::Status>),
}

/// The API server's answer when a watch failed in a way a person must fix (a missing RBAC
/// rule), rather than one the watcher's backoff gets past on its own.
fn refusal(err: &watcher::Error) -> Option<Box<kube::core::Status>> {
    let status = match err {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchError(status) => status,
        _ => return None,
    };
    (status.code == 403).then(|| status.clone())
}

/// Sets a [`Cache`]'s synced signal when its stream has delivered the first full list.
pub struct SyncSignal {
    listing: tokio::sync::watch::Sender<Listing>,
    refused: RefusedLists,
    id: u64,
}

impl SyncSignal {
    /// Passes `stream` through, raising the signal after the first `InitDone` (which the
    /// reflector has applied by the time it reaches here), or recording a refusal to list.
    pub fn wrap<K, S>(self, stream: S) -> impl Stream<Item = S::Item> + Send + 'static
    where
        K: Send + 'static,
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    {
        stream.inspect(move |event| match event {
            Ok(Event::InitDone) => {
                self.listing.send_replace(Listing::Done);
                self.refused.set(self.id, None);
            }
            Err(err) => {
                if let Some(status) = refusal(err) {
                    self.refused.set(self.id, Some(status.message.clone()));
                    // A cache that listed once keeps serving what it has; only a cache that
                    // never listed makes its readers fail.
                    self.listing.send_if_modified(|listing| {
                        if *listing == Listing::Done {
                            return false;
                        }
                        *listing = Listing::Refused(status);
                        true
                    });
                }
            }
            Ok(_) => {}
        })
    }
}

impl<K: Resource + Clone + 'static> Cache<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn new(store: Store<K>, refused: RefusedLists) -> (Self, SyncSignal) {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let (tx, rx) = tokio::sync::watch::channel(Listing::Pending);
        let signal = SyncSignal {
            listing: tx,
            refused,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        (Self { store, synced: rx }, signal)
    }

    /// Resolves once the cache has listed (immediately after that), or with the API server's
    /// 403 while it is refused the list or watch, so the reconcile that needed it reports the
    /// missing permission on its object instead of waiting forever.
    pub async fn synced(&self) -> Result<(), kube::Error> {
        let mut rx = self.synced.clone();
        // An error means the stream was dropped: the operator is shutting down.
        let listing = match rx.wait_for(|l| *l != Listing::Pending).await {
            Ok(listing) => listing.clone(),
            Err(_) => return Ok(()),
        };
        match listing {
            Listing::Refused(status) => Err(kube::Error::Api(status)),
            Listing::Pending | Listing::Done => Ok(()),
        }
    }

    /// Resolves once the cache has listed; a refusal keeps it waiting (readiness stays false).
    async fn listed(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|l| *l == Listing::Done).await;
    }
}

/// Signals `synced` once every cache in `caches` has listed.
pub fn report_synced(
    caches: Vec<futures::future::BoxFuture<'static, ()>>,
    synced: tokio::sync::mpsc::Sender<()>,
) {
    tokio::spawn(async move {
        futures::future::join_all(caches).await;
        let _ = synced.send(()).await;
    });
}

/// A future that resolves once `cache` has listed.
pub fn listed<K>(cache: &Cache<K>) -> futures::future::BoxFuture<'static, ()>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let cache = cache.clone();
    Box::pin(async move { cache.listed().await })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::Runbook;

    fn dynamic(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).expect("a DynamicObject")
    }

    #[test]
    fn decodes_a_well_formed_object() {
        let obj = dynamic(serde_json::json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
            "metadata": {"name": "ok", "namespace": "shop"},
            "spec": {"steps": [{"name": "nap", "sleep": {"duration": "1s"}}]}
        }));
        let rb: Runbook = decode_object(&obj).expect("decodes");
        assert_eq!(rb.spec.steps[0].name, "nap");
    }

    #[test]
    fn names_the_field_of_an_object_it_must_skip() {
        // What an object stored under an older schema could look like.
        let obj = dynamic(serde_json::json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
            "metadata": {"name": "old", "namespace": "shop"},
            "spec": {"steps": [{"name": "nap", "sleep": {"duration": 5}}]}
        }));
        let err = decode_object::<Runbook>(&obj).unwrap_err();
        assert!(
            err.starts_with("spec.steps[0].sleep.duration: invalid type"),
            "{err}"
        );
    }

    fn status(code: u16) -> Box<kube::core::Status> {
        Box::new(
            kube::core::Status::failure("jobs.batch is forbidden: no list", "Forbidden")
                .with_code(code),
        )
    }

    #[test]
    fn finds_a_refusal_anywhere_in_an_error_chain() {
        let err = crate::runbook::controller::Error::from(crate::runbook::observe::Error::Runs {
            runbook: "shop/nightly".into(),
            source: kube::Error::Api(status(403)),
        });
        assert_eq!(
            forbidden(&err).as_deref(),
            Some("jobs.batch is forbidden: no list")
        );
        let not_found =
            crate::runbook::controller::Error::from(crate::runbook::observe::Error::Runs {
                runbook: "shop/nightly".into(),
                source: kube::Error::Api(status(404)),
            });
        assert_eq!(forbidden(&not_found), None);
    }

    #[test]
    fn only_a_403_from_a_watch_is_a_refusal() {
        let refused = watcher::Error::InitialListFailed(kube::Error::Api(status(403)));
        assert!(refusal(&refused).is_some());
        let during = watcher::Error::WatchError(status(403));
        assert!(refusal(&during).is_some());
        let gone = watcher::Error::WatchError(status(410));
        assert!(refusal(&gone).is_none());
        assert!(refusal(&watcher::Error::NoResourceVersion).is_none());
    }

    #[test]
    fn a_kept_store_never_receives_a_refused_object_and_loses_one_refused_later() {
        let keep = |name: &&str| name.starts_with("named");
        assert!(matches!(
            kept(Event::InitApply("named"), keep),
            Some(Event::InitApply("named"))
        ));
        assert!(kept(Event::InitApply("other"), keep).is_none());
        assert!(matches!(
            kept(Event::Apply("named"), keep),
            Some(Event::Apply("named"))
        ));
        // Refused at a change: removed, in case it was kept before.
        assert!(matches!(
            kept(Event::Apply("other"), keep),
            Some(Event::Delete("other"))
        ));
        assert!(matches!(
            kept(Event::Delete("other"), keep),
            Some(Event::Delete("other"))
        ));
        assert!(matches!(
            kept(Event::<&str>::InitDone, keep),
            Some(Event::InitDone)
        ));
    }

    #[test]
    fn a_refusal_is_reported_once_per_object_until_it_reconciles() {
        let refusals = Refusals::default();
        let rb: crate::runbook::Runbook = serde_json::from_value(serde_json::json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
            "metadata": {"name": "a", "namespace": "n"}, "spec": {"steps": []}
        }))
        .expect("runbook");
        assert!(refusals.first_time(&rb, "no list"));
        assert!(!refusals.first_time(&rb, "no list"));
        assert!(refusals.first_time(&rb, "no patch"));
        refusals.forget(&rb);
        assert!(refusals.first_time(&rb, "no patch"));
    }

    #[test]
    fn only_a_refusal_to_an_identity_is_the_identitys() {
        let write = |identity: Option<&str>| crate::write::WriteError {
            identity: identity.map(str::to_owned),
            refused: identity.map(|_| crate::identity::Refused("x may not create jobs".into())),
            verb: "create",
            kind: "Job".into(),
            target: "a/j".into(),
            source: Box::new(kube::Error::Api(status(403))),
        };
        let note = refused_identity(&write(Some("system:serviceaccount:a:default")));
        assert!(note.is_some_and(|n| n.contains("grant")));
        assert_eq!(refused_identity(&write(None)), None);
        // Wrapped transparently by a kind's error, it is still the identity's refusal, and
        // not one of the operator's own.
        #[derive(Debug, thiserror::Error)]
        enum KindError {
            #[error(transparent)]
            Write(#[from] crate::write::WriteError),
        }
        let wrapped = KindError::from(write(Some("system:serviceaccount:a:default")));
        assert!(refused_identity(&wrapped).is_some());
        assert_eq!(forbidden(&wrapped), None);
    }
}

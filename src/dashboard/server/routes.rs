//! The handlers: assets, JSON views, the change stream, and actions.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use super::access;
use super::state::{Dashboard, NAMESPACES_TTL, error};
use crate::blue_green::observe::{Slot, services_named, slot_deployment_name};
use crate::dashboard::assets;
use crate::dashboard::calendar;
use crate::dashboard::server::cache::NamespaceCache;
use crate::dashboard::view::{self, Permissions};
use crate::plugin::ReleaseRequest;
use crate::plugin::actions::{self, ActionError, Answer};

type Shared = State<Arc<Dashboard>>;

impl IntoResponse for ActionError {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// The page, with this process's POST token.
pub async fn index(State(d): Shared) -> Response {
    let page = assets::INDEX_HTML.replace("{{TOKEN}}", &d.token);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page,
    )
        .into_response()
}

/// The script.
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", assets::APP_JS)
}

/// The style sheet.
pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", assets::APP_CSS)
}

/// The icon.
pub async fn favicon() -> Response {
    asset("image/svg+xml", assets::FAVICON_SVG)
}

/// Who the user is and which namespaces they may pick.
pub async fn context(State(d): Shared) -> Response {
    let kept = d
        .namespaces
        .lock()
        .ok()
        .and_then(|held| held.clone())
        .filter(|(at, _)| at.elapsed() < NAMESPACES_TTL);
    let namespaces = match kept {
        Some((_, namespaces)) => namespaces,
        None => {
            let listed = Api::<Namespace>::all(d.client.clone())
                .list_metadata(&ListParams::default())
                .await;
            let mut namespaces: Vec<String> = match listed {
                Ok(list) => list.items.iter().map(|n| n.name_any()).collect(),
                // Without the right to list namespaces, the kubeconfig's own is the one
                // to show.
                Err(_) => Vec::new(),
            };
            if !namespaces.contains(&d.default_namespace) {
                namespaces.push(d.default_namespace.clone());
            }
            namespaces.sort();
            if let Ok(mut held) = d.namespaces.lock() {
                *held = Some((std::time::Instant::now(), namespaces.clone()));
            }
            namespaces
        }
    };
    Json(json!({
        "user": d.user,
        "namespace": d.default_namespace,
        "namespaces": namespaces,
    }))
    .into_response()
}

/// The namespace's cache (its watches start on first use).
async fn open(d: &Dashboard, namespace: &str) -> Result<Arc<NamespaceCache>, Response> {
    if !crate::names::is_dns_label(namespace) {
        return Err(error(
            400,
            format!("{namespace:?} is not a namespace name (lower-case letters, digits and '-')"),
        ));
    }
    Ok(d.caches.namespace(&d.client, namespace))
}

/// The namespace's cache and the user's permissions there, for pages that offer buttons.
async fn open_permitted(
    d: &Dashboard,
    namespace: &str,
) -> Result<(Arc<NamespaceCache>, Permissions), Response> {
    let cache = open(d, namespace).await?;
    let permissions = match cache.cached_permissions() {
        Some(p) => p,
        None => {
            let p = access::permissions(&d.client, namespace).await;
            cache.keep_permissions(p);
            p
        }
    };
    Ok((cache, permissions))
}

/// Unwraps a listing, or answers with its error.
macro_rules! listed {
    ($watched:expr) => {
        match $watched.objects().await {
            Ok(objects) => objects.iter().map(|o| (**o).clone()).collect::<Vec<_>>(),
            Err((status, message)) => return error(status, message),
        }
    };
}

/// The Now page.
pub async fn now(State(d): Shared, Path(ns): Path<String>) -> Response {
    let (cache, permissions) = match open_permitted(&d, &ns).await {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    // Each kind the user may not read leaves its section empty and says why, rather than
    // failing the whole page: a team may hold rights to runs but not to releases.
    let mut unavailable = Vec::new();
    let runs = readable(cache.runs.objects().await, &mut unavailable);
    let windows = readable(cache.windows.objects().await, &mut unavailable);
    let releases = readable(cache.releases.objects().await, &mut unavailable);
    let policies = readable(cache.policies.objects().await, &mut unavailable);
    let mut page = view::now(
        &runs,
        &windows,
        &releases,
        &policies,
        permissions,
        Timestamp::now(),
    );
    page.unavailable = unavailable;
    Json(page).into_response()
}

/// The objects, or none and the reason noted.
fn readable<K: Clone>(
    listed: Result<Vec<Arc<K>>, (u16, String)>,
    unavailable: &mut Vec<String>,
) -> Vec<K> {
    match listed {
        Ok(objects) => objects.iter().map(|o| (**o).clone()).collect(),
        Err((_, message)) => {
            unavailable.push(message);
            Vec::new()
        }
    }
}

/// The Runs page.
pub async fn runs(
    State(d): Shared,
    Path(ns): Path<String>,
    Query(filter): Query<view::RunFilter>,
) -> Response {
    let cache = match open(&d, &ns).await {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    let runs = listed!(cache.runs);
    Json(view::runs(&runs, &filter)).into_response()
}

/// A run's page: the run from the cache, its Events read now.
pub async fn run(State(d): Shared, Path((ns, name)): Path<(String, String)>) -> Response {
    let (cache, permissions) = match open_permitted(&d, &ns).await {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    let runs = listed!(cache.runs);
    let Some(run) = runs.iter().find(|r| r.name_any() == name) else {
        return error(
            404,
            crate::plugin::not_found("RunbookRun", "runbookruns", &name, &ns),
        );
    };
    let events = events_of(&d.client, &ns, &name).await;
    Json(view::run_detail(
        run,
        &events,
        permissions,
        Timestamp::now(),
    ))
    .into_response()
}

/// The Events about run `name` (best effort: none when the user may not list Events).
async fn events_of(client: &Client, namespace: &str, name: &str) -> Vec<Event> {
    let params =
        ListParams::default().fields(&format!("regarding.kind=RunbookRun,regarding.name={name}"));
    Api::<Event>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map(|list| list.items)
        .unwrap_or_default()
}

/// The calendar's query.
#[derive(Debug, Default, Deserialize)]
pub struct CalendarQuery {
    /// `month` or `week`.
    pub span: Option<String>,
    /// `YYYY-MM-DD`.
    pub date: Option<String>,
    /// `own` or an IANA zone.
    pub zone: Option<String>,
}

/// The maintenance calendar.
pub async fn calendar(
    State(d): Shared,
    Path(ns): Path<String>,
    Query(query): Query<CalendarQuery>,
) -> Response {
    let now = Timestamp::now();
    let request = match calendar_request(&query, now) {
        Ok(request) => request,
        Err(message) => return error(400, message),
    };
    let cache = match open(&d, &ns).await {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    let windows = listed!(cache.windows);
    match calendar::calendar(&windows, &request, now) {
        Ok(page) => Json(page).into_response(),
        Err(message) => error(400, message),
    }
}

/// The calendar request from the query (defaults: month, today in UTC, each window's zone).
pub fn calendar_request(
    query: &CalendarQuery,
    now: Timestamp,
) -> Result<calendar::Request, String> {
    let span = match query.span.as_deref().unwrap_or("month") {
        "month" => calendar::Span::Month,
        "week" => calendar::Span::Week,
        other => return Err(format!("span {other:?}: use month or week")),
    };
    let date = match query.date.as_deref().filter(|d| !d.is_empty()) {
        Some(text) => text
            .parse::<jiff::civil::Date>()
            .map_err(|e| format!("date {text:?}: {e}; use YYYY-MM-DD"))?,
        None => now.to_zoned(jiff::tz::TimeZone::UTC).date(),
    };
    let zone = match query.zone.as_deref().filter(|z| !z.is_empty()) {
        None | Some("own") => calendar::Zone::Own,
        Some(name) => calendar::Zone::Named(name.to_owned()),
    };
    Ok(calendar::Request { span, date, zone })
}

/// The Releases page: each release with its slot Deployments and Services, read now.
pub async fn releases(State(d): Shared, Path(ns): Path<String>) -> Response {
    let (cache, permissions) = match open_permitted(&d, &ns).await {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    let mut releases = listed!(cache.releases);
    releases.sort_by_key(|r| r.name_any());
    let deployments_api = Api::<Deployment>::namespaced(d.client.clone(), &ns);
    let services_api = Api::<Service>::namespaced(d.client.clone(), &ns);
    let mut cards = Vec::with_capacity(releases.len());
    for release in &releases {
        let name = release.name_any();
        let mut deployments = Vec::new();
        for slot in [Slot::Blue, Slot::Green] {
            if let Ok(Some(found)) = deployments_api
                .get_opt(&slot_deployment_name(&name, slot))
                .await
            {
                deployments.push(found);
            }
        }
        let mut services = Vec::new();
        for (_, service) in services_named(release) {
            if let Ok(Some(found)) = services_api.get_opt(service).await {
                services.push(found);
            }
        }
        cards.push(view::release(release, &deployments, &services, permissions));
    }
    Json(json!({"releases": cards, "permissions": permissions})).into_response()
}

/// The Backups page.
pub async fn backups(State(d): Shared, Path(ns): Path<String>) -> Response {
    let (cache, permissions) = match open_permitted(&d, &ns).await {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    let mut policies = listed!(cache.policies);
    policies.sort_by_key(|p| p.name_any());
    let now = Timestamp::now();
    let cards: Vec<_> = policies
        .iter()
        .map(|p| view::policy(p, permissions, now))
        .collect();
    Json(json!({"policies": cards, "permissions": permissions})).into_response()
}

/// The change stream of a namespace: `ready`, then a `change` per object a watch delivered.
pub async fn watch(State(d): Shared, Path(ns): Path<String>) -> Response {
    let cache = match open(&d, &ns).await {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    let receiver = cache.subscribe();
    // The stream holds the cache so its watches live while a page listens.
    let stream = changes(cache, receiver);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn changes(
    cache: Arc<NamespaceCache>,
    receiver: tokio::sync::broadcast::Receiver<super::cache::Change>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let first = SseEvent::default().event("ready").data("{}");
    futures::stream::once(async move { Ok(first) }).chain(futures::stream::unfold(
        (cache, receiver),
        |(cache, mut receiver)| async move {
            use tokio::sync::broadcast::error::RecvError;
            let event = match receiver.recv().await {
                Ok(change) => SseEvent::default()
                    .event("change")
                    .json_data(&change)
                    .unwrap_or_else(|_| SseEvent::default().event("change").data("{}")),
                // Missed changes: the page fetches its view again anyway.
                Err(RecvError::Lagged(_)) => SseEvent::default().event("change").data("{}"),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), (cache, receiver)))
        },
    ))
}

use futures::StreamExt as _;

/// A release request's body.
#[derive(Debug, Deserialize)]
pub struct RevisionBody {
    revision: Option<String>,
}

fn done(message: String) -> Response {
    Json(json!({"message": message})).into_response()
}

/// Approve or reject a run's approval step (body `{"step": ...}`), cancel the run, or run it
/// again (body `{}`).
pub async fn run_post(
    State(d): Shared,
    Path((ns, name, verb)): Path<(String, String, String)>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let step = || {
        body.get("step")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                ActionError::bad_request(format!(
                    "{verb}: the body needs {{\"step\": \"<approval step>\"}}"
                ))
            })
    };
    let result = match verb.as_str() {
        "approve" | "reject" => {
            let how = if verb == "approve" {
                Answer::Approve
            } else {
                Answer::Reject
            };
            match step() {
                Ok(step) => actions::answer(&d.client, &ns, &name, &step, how)
                    .await
                    .map(|m| (m, None)),
                Err(err) => Err(err),
            }
        }
        "cancel" => actions::cancel(&d.client, &ns, &name)
            .await
            .map(|m| (m, None)),
        "rerun" => actions::rerun(&d.client, &ns, &name).await.map(|run| {
            let created = run.name_any();
            (
                format!(
                    "{} created",
                    crate::plugin::object_ref::<crate::runbook_run::RunbookRun>(&created)
                ),
                Some(created),
            )
        }),
        other => {
            return error(
                404,
                format!("no run action {other:?}: use approve, reject, cancel or rerun"),
            );
        }
    };
    match result {
        Ok((message, None)) => done(message),
        Ok((message, Some(name))) => {
            Json(json!({"message": message, "name": name})).into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// Promote or abort a release's revision.
pub async fn release_action(
    State(d): Shared,
    Path((ns, name, verb)): Path<(String, String, String)>,
    Json(body): Json<RevisionBody>,
) -> Response {
    let request = match verb.as_str() {
        "promote" => ReleaseRequest::Promote,
        "abort" => ReleaseRequest::Abort,
        other => return error(404, format!("no release action {other:?}")),
    };
    match actions::release(&d.client, &ns, &name, request, body.revision.as_deref()).await {
        Ok((revision, notes)) => done(
            std::iter::once(format!("{verb} requested: revision {revision}"))
                .chain(notes)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(err) => err.into_response(),
    }
}

/// Back up now.
pub async fn backup_now(State(d): Shared, Path((ns, name)): Path<(String, String)>) -> Response {
    match actions::backup_now(&d.client, &ns, &name).await {
        Ok((job, notes)) => done(
            std::iter::once(format!("backup requested: Job {job}"))
                .chain(notes)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(err) => err.into_response(),
    }
}

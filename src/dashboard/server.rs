//! The dashboard's HTTP server.
//!
//! Pages (the page's script routes by the URL fragment `#/<namespace>/<page>[/<name>]`, pages
//! `now`, `runs`, `calendar`, `releases`, `backups`; a run is `#/<ns>/runs/<name>`):
//!
//! - `GET /` the page (the POST token in `<meta name="dashboard-token">`), `/app.js`,
//!   `/app.css`, `/favicon.svg`.
//!
//! JSON (errors: `{"error": "<what went wrong, where, and what to do>"}` with the status the
//! API server gave, 403 and 404 included):
//!
//! - `GET /api/context`: `{user, namespace, namespaces}`: who the kubeconfig says you are,
//!   its default namespace, and the namespaces you may list (just the default one when you
//!   may not list namespaces).
//! - `GET /api/ns/{ns}/now`: [`view::Now`].
//! - `GET /api/ns/{ns}/runs?runbook=&phase=&trigger=`: [`view::Runs`].
//! - `GET /api/ns/{ns}/runs/{name}`: [`view::RunDetail`].
//! - `GET /api/ns/{ns}/calendar?span=month|week&date=YYYY-MM-DD&zone=own|<IANA>`:
//!   [`calendar::Calendar`] (defaults: month, today, own).
//! - `GET /api/ns/{ns}/releases`: `{releases: [view::ReleaseView], permissions}`.
//! - `GET /api/ns/{ns}/backups`: `{policies: [view::PolicyView], permissions}`.
//! - `GET /api/ns/{ns}/watch`: Server-Sent Events: `event: change` with data
//!   `{"kind": "RunbookRun", "name": "..."}` whenever the namespace's watch delivers a
//!   change of a run, Runbook, window, release or policy (the page then fetches its view
//!   again), and `event: ready` once the namespace's caches are filled.
//!
//! Actions (POST, JSON body, header `X-Dashboard-Token: <token>` required; answer
//! `{"message": "..."}`, and `"name"` for a new run):
//!
//! - `/api/ns/{ns}/runs/{name}/approve` and `/reject`, body `{"step": "<approval step>"}`;
//!   `/cancel`, `/rerun` (a new run of the same Runbook with the same parameters), body `{}`.
//! - `/api/ns/{ns}/releases/{name}/promote` and `/abort`, body `{"revision": "<revision>"}`:
//!   refused when the release moved on to another revision.
//! - `/api/ns/{ns}/backups/{name}/backup-now`, body `{}`.
//!
//! Guards of a server on 127.0.0.1: the `Host` header must be the address the server printed
//! (`127.0.0.1:<port>` or `localhost:<port>`), which stops DNS-rebinding pages; every POST
//! must carry the token, which a page of another origin cannot read; answers are
//! `no-store` with a content security policy allowing only the server's own assets.

mod access;
pub mod cache;
mod routes;
mod state;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use futures::FutureExt as _;
use kube::Client;

use crate::dashboard::server::cache::Caches;
use crate::dashboard::server::state::{Dashboard, error};

/// The request header that carries the POST token.
pub const TOKEN_HEADER: &str = "x-dashboard-token";

/// What the server needs to start.
#[derive(Clone, Debug)]
pub struct Options {
    /// The address to listen on (127.0.0.1 unless the user insists).
    pub address: IpAddr,
    /// The port; 0 picks a free one.
    pub port: u16,
    /// The namespace the page opens on.
    pub namespace: String,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}; pick another with --port (0: any free port)")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the dashboard stopped: {0}")]
    Serve(#[source] std::io::Error),
}

impl Error {
    /// A metric-style label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "bind",
            Self::Serve(_) => "serve",
        }
    }
}

/// A fresh random token (32 bytes, hex).
fn new_token() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two tokens are equal, in time independent of where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether the request may be served: its `Host` is ours (a page of another site that
/// re-points its DNS name at 127.0.0.1 sends its own name), and a POST carries the token
/// (which only a page served by us can read).
pub fn admit(
    method: &Method,
    host: Option<&str>,
    token: Option<&str>,
    d: (&[String], &str),
) -> Result<(), (u16, String)> {
    let (hosts, expected) = d;
    match host {
        Some(host) if hosts.iter().any(|h| h == host) => {}
        other => {
            return Err((
                403,
                format!(
                    "Host {:?} is not this dashboard's address; open it at http://{}/",
                    other.unwrap_or(""),
                    hosts.first().map_or("127.0.0.1", String::as_str)
                ),
            ));
        }
    }
    if method == Method::POST && !token.is_some_and(|t| same_token(t, expected)) {
        return Err((
            403,
            format!(
                "a POST needs the {TOKEN_HEADER} header of this dashboard's page; reload the page"
            ),
        ));
    }
    Ok(())
}

async fn guard(State(d): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    let admitted = {
        let headers = request.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        admit(
            request.method(),
            text(header::HOST.as_str()),
            text(TOKEN_HEADER),
            (&d.hosts, &d.token),
        )
    };
    if let Err((status, message)) = admitted {
        return error(status, message);
    }
    // A page built from one odd object must not take the connection down with it: the
    // panic becomes an answer naming the page, and the next request is served as usual.
    let path = request.uri().path().to_owned();
    let mut response = match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error(
                500,
                format!(
                    "the dashboard failed building {path}: {what}; the other pages still work (please report this with the object's YAML)"
                ),
            )
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}

fn router(state: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(routes::index))
        .route("/app.js", get(routes::app_js))
        .route("/app.css", get(routes::app_css))
        .route("/favicon.svg", get(routes::favicon))
        .route("/api/context", get(routes::context))
        .route("/api/ns/{ns}/now", get(routes::now))
        .route("/api/ns/{ns}/runs", get(routes::runs))
        .route("/api/ns/{ns}/runs/{name}", get(routes::run))
        .route("/api/ns/{ns}/calendar", get(routes::calendar))
        .route("/api/ns/{ns}/releases", get(routes::releases))
        .route("/api/ns/{ns}/backups", get(routes::backups))
        .route("/api/ns/{ns}/watch", get(routes::watch))
        .route("/api/ns/{ns}/runs/{name}/{verb}", post(routes::run_post))
        .route(
            "/api/ns/{ns}/releases/{name}/{verb}",
            post(routes::release_action),
        )
        .route(
            "/api/ns/{ns}/backups/{name}/backup-now",
            post(routes::backup_now),
        )
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serves the dashboard until `shutdown` completes. `listening` is told the address once
/// the port is bound (before any request can arrive).
pub async fn serve(
    client: Client,
    options: Options,
    listening: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let address = SocketAddr::new(options.address, options.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { address, source })?;
    let user = crate::plugin::actions::whoami(&client).await;
    let mut hosts = vec![bound.to_string(), format!("localhost:{}", bound.port())];
    if bound.ip().is_loopback() && bound.is_ipv4() {
        hosts.push(format!("127.0.0.1:{}", bound.port()));
    }
    hosts.dedup();
    let state = Arc::new(Dashboard {
        client,
        user,
        default_namespace: options.namespace,
        token: new_token(),
        hosts,
        caches: Caches::default(),
        namespaces: std::sync::Mutex::new(None),
    });
    // The page opens on the default namespace: start its watches and ask its permissions
    // now, so the first page finds them ready instead of waiting for the lists.
    let first = state
        .caches
        .namespace(&state.client, &state.default_namespace);
    let client = state.client.clone();
    let namespace = state.default_namespace.clone();
    tokio::spawn(async move {
        first.keep_permissions(access::permissions(&client, &namespace).await);
    });
    listening(bound);
    // Not a graceful shutdown: an open page holds its change stream forever, and a local
    // tool should stop when asked.
    tokio::select! {
        served = axum::serve(listener, router(state)) => served.map_err(Error::Serve),
        () = shutdown => Ok(()),
    }
}

//! The HTTP endpoint Alertmanager's `webhook_configs` posts to: `POST /v1/alerts/alertmanager`
//! on its own address (`--alerts-addr`), apart from the probe and metrics port.
//!
//! - Authentication: `Authorization: Bearer <token>`, the token read from a file (a mounted
//!   Secret, so a rotated Secret takes effect without a restart); anything else is 401.
//! - TLS when a certificate and key are given (also re-read, per connection).
//! - The body is capped (`--alerts-max-body-bytes`): 413 beyond it; a body that is not a
//!   version 4 notification is 400 with the reason.
//! - 200 only once every alert's runs are created or found to exist: a 500 (a write failed)
//!   or 503 (caches not synced yet) makes Alertmanager send the notification again, which
//!   creates nothing twice.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::FutureExt;
use serde_json::json;

use super::act::Alerts;
use super::payload::Notification;
use crate::metrics::Metrics;

/// The path Alertmanager posts to.
pub const PATH: &str = "/v1/alerts/alertmanager";

/// Default body cap: Alertmanager's notifications of a few hundred alerts fit well inside.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Where and how the receiver listens.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// File holding the bearer token (a mounted Secret key).
    pub token_file: PathBuf,
    /// PEM certificate chain and private key, for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest body accepted.
    pub max_body_bytes: usize,
}

struct Shared {
    settings: Settings,
    alerts: Arc<Alerts>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// Checks the settings before the operator starts: the token file must hold a token, and the
/// certificate and key must load.
pub fn check(settings: &Settings) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&settings.token_file).map_err(|err| {
        anyhow::anyhow!(
            "--alerts-token-file {}: {err}; mount the Secret holding the receiver's bearer token there",
            settings.token_file.display()
        )
    })?;
    if token.trim().is_empty() {
        anyhow::bail!(
            "--alerts-token-file {} is empty: put the bearer token Alertmanager sends in it",
            settings.token_file.display()
        );
    }
    if let Some((cert, key)) = &settings.tls {
        tls_config(cert, key)?;
    }
    Ok(())
}

/// Serves until `shutdown`; `ready` turns true once the Runbook caches are synced.
pub async fn serve(
    settings: Settings,
    alerts: Arc<Alerts>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    shutdown: crate::runtime::Shutdown,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    let tls = settings.tls.clone();
    let shared = Arc::new(Shared {
        settings,
        alerts,
        ready,
        metrics,
    });
    let app = Router::new().route(PATH, post(receive)).with_state(shared);
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.map(|_| ()))
                .await
        }
        Some((cert, key)) => serve_tls(listener, app, cert, key, shutdown).await,
    }
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    cert: PathBuf,
    key: PathBuf,
    shutdown: crate::runtime::Shutdown,
) -> std::io::Result<()> {
    let mut shutdown = shutdown;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let config = match tls_config(&cert, &key) {
            Ok(config) => config,
            Err(err) => {
                tracing::error!(%err, "cannot load the alert receiver's TLS certificate; refusing the connection");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let Ok(Ok(tls)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
                    .await
            else {
                tracing::debug!(%peer, "TLS handshake with the alert receiver failed");
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

fn tls_config(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| anyhow::anyhow!("--alerts-tls-cert-file {}: {err}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| anyhow::anyhow!("--alerts-tls-key-file {}: {err}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| {
            anyhow::anyhow!("the alert receiver's certificate and key do not fit together: {err}")
        })?;
    Ok(Arc::new(config))
}

async fn receive(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let (code, body) = answer(&shared, request).await;
    shared.metrics.count_alert_request(code.as_u16());
    shared
        .metrics
        .alert_request_duration
        .observe(started.elapsed().as_secs_f64());
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(code: StatusCode, message: impl Into<String>) -> (StatusCode, serde_json::Value) {
    (code, json!({ "error": message.into() }))
}

async fn answer(shared: &Shared, request: Request) -> (StatusCode, serde_json::Value) {
    if !shared.ready.load(Ordering::Relaxed) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the receiver is starting: its Runbook caches are not synced yet; send again (Alertmanager retries on its own)",
        );
    }
    let token = match std::fs::read_to_string(&shared.settings.token_file) {
        Ok(token) if !token.trim().is_empty() => token,
        _ => {
            tracing::error!(file = %shared.settings.token_file.display(), "the alert receiver's token file is missing or empty; answering 503");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the receiver's token is not available; the operator's administrator must fix its Secret",
            );
        }
    };
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !offered.is_some_and(|offered| same(offered.as_bytes(), token.trim().as_bytes())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: set http_config.authorization in the Alertmanager receiver to the token in the operator's alerts Secret",
        );
    }
    let max = shared.settings.max_body_bytes;
    let body = match axum::body::to_bytes(request.into_body(), max).await {
        Ok(body) => body,
        Err(err) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is larger than {max} bytes (--alerts-max-body-bytes); lower max_alerts in the Alertmanager receiver"
                    ),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {err}"),
                )
            };
        }
    };
    let notification = match Notification::parse(&body) {
        Ok(n) => n,
        Err(err) => return error(StatusCode::BAD_REQUEST, err.to_string()),
    };
    match shared.alerts.handle(&notification).await {
        Ok(reports) => (StatusCode::OK, json!({ "alerts": reports })),
        Err(err) => {
            tracing::warn!(error = %err, receiver = %notification.receiver, "could not act on an alert notification; answering 500 so Alertmanager sends it again");
            error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
        }
    }
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

//! HTTP endpoints for probes and Prometheus: `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the endpoints read.
#[derive(Clone)]
pub struct Probe {
    /// Set once every controller's cache has synced.
    pub ready: Arc<AtomicBool>,
    /// Set while the process waits on standby for the leader Lease: it is healthy and ready
    /// (a rollout must not wait for it), it just does not act.
    pub standby: Arc<AtomicBool>,
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// Lists and watches the API server refuses, named by `/readyz` while not ready.
    pub refused: crate::context::RefusedLists,
}

/// Serves the endpoints until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    probe: Probe,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probe);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(probe): State<Probe>) -> (StatusCode, String) {
    if probe.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok".into())
    } else if probe.standby.load(Ordering::Relaxed) {
        (
            StatusCode::OK,
            "standby: another replica holds the leader Lease".into(),
        )
    } else {
        let refused = probe.refused.messages();
        let body = if refused.is_empty() {
            "caches not synced yet".to_owned()
        } else {
            format!(
                "caches not synced yet: the API server refuses {} list(s): {}; grant the operator's ServiceAccount list and watch on them",
                refused.len(),
                refused.join("; ")
            )
        };
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn metrics(State(probe): State<Probe>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        probe.metrics.render(),
    )
}

//! The server's state and its error answer, shared by the guard and the handlers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kube::Client;
use serde_json::json;

use super::cache::Caches;

/// The server's state: the user's client, the namespaces watched, the POST token.
pub struct Dashboard {
    /// The user's client.
    pub client: Client,
    /// Who the user is (SelfSubjectReview).
    pub user: Option<String>,
    /// The namespace the page opens on.
    pub default_namespace: String,
    /// The POST token.
    pub token: String,
    /// `Host` values a request may carry (the printed address, and `localhost:<port>`).
    pub hosts: Vec<String>,
    /// The namespaces watched.
    pub caches: Caches,
    /// The namespace list of `/api/context`, and when it was read: every page load asks
    /// for it, and namespaces come and go rarely.
    pub namespaces: Mutex<Option<(Instant, Vec<String>)>>,
}

/// How long the namespace list is reused.
pub const NAMESPACES_TTL: Duration = Duration::from_secs(30);

/// A JSON error answer.
pub fn error(status: u16, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (code, Json(json!({"error": message.into()}))).into_response()
}

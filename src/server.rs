//! HTTP endpoints for probes and Prometheus: `/healthz`, `/readyz`, `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Whether each controller task is still running, for `/healthz`.
    pub liveness: Liveness,
}

/// Whether each controller task of this process is still running, by name, e.g.
/// `runbookrun` (or `runbookrun/shop` with one set of controllers per namespace).
///
/// A task holds an [`Alive`] guard for as long as it runs: when it ends in any way (returns,
/// panics, is aborted) the guard is dropped and the controller is reported dead. The process
/// exits soon after (see `main`), so `/healthz` answering 500 is the last word before a
/// restart, and the word of a task that could not even end the process.
#[derive(Clone, Debug, Default)]
pub struct Liveness(Arc<Mutex<BTreeMap<String, bool>>>);

/// Marks its controller dead when dropped.
#[derive(Debug)]
pub struct Alive {
    liveness: Liveness,
    name: String,
}

impl Liveness {
    /// Records `name` as running until the returned guard is dropped.
    pub fn alive(&self, name: impl Into<String>) -> Alive {
        let name = name.into();
        if let Ok(mut map) = self.0.lock() {
            map.insert(name.clone(), true);
        }
        Alive {
            liveness: self.clone(),
            name,
        }
    }

    /// Every controller and whether it runs, sorted by name.
    pub fn states(&self) -> Vec<(String, bool)> {
        self.0
            .lock()
            .map(|map| map.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}

/// A task spawned by [`Liveness::spawn`].
#[derive(Debug)]
pub struct Task {
    name: String,
    handle: tokio::task::JoinHandle<()>,
}

impl Liveness {
    /// Spawns `task` as `name`, alive for as long as it runs, however it ends.
    pub fn spawn(
        &self,
        name: impl Into<String>,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Task {
        let name = name.into();
        let alive = self.alive(name.clone());
        let handle = tokio::spawn(async move {
            let _alive = alive;
            task.await;
        });
        Task { name, handle }
    }
}

/// A task that ended before the process was asked to stop.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {name} controller ended before shutdown ({how}); exiting so that the operator is restarted"
)]
pub struct EndedEarly {
    /// The task's name.
    pub name: String,
    /// How it ended: returned, or the panic.
    pub how: String,
}

/// Waits until every task has ended. The first that ends while `shutdown` has not resolved
/// (returned or panicked on its own) is the error: the caller exits rather than go on half
/// alive.
pub async fn until_all_end(
    tasks: Vec<Task>,
    shutdown: crate::runtime::Shutdown,
) -> Result<(), EndedEarly> {
    use futures::{FutureExt, StreamExt};
    let mut running: futures::stream::FuturesUnordered<_> = tasks
        .into_iter()
        .map(|task| task.handle.map(move |ended| (task.name, ended)))
        .collect();
    while let Some((name, ended)) = running.next().await {
        // Shared::peek sees the shutdown once any clone (a controller) saw it resolve.
        if shutdown.peek().is_none() {
            let how = match ended {
                Ok(()) => "it returned".to_owned(),
                Err(err) => err.to_string(),
            };
            return Err(EndedEarly { name, how });
        }
    }
    Ok(())
}

impl Drop for Alive {
    fn drop(&mut self) {
        if let Ok(mut map) = self.liveness.0.lock() {
            map.insert(std::mem::take(&mut self.name), false);
        }
    }
}

/// The `/healthz` answer: `ok` and 200 while every controller runs, else `dead: <names>` and
/// 500; then one line per controller, `<name>: alive` or `<name>: dead`. A standby (no
/// controllers yet) answers `ok` alone.
pub fn health(states: &[(String, bool)]) -> (StatusCode, String) {
    let dead: Vec<&str> = states
        .iter()
        .filter(|(_, alive)| !alive)
        .map(|(name, _)| name.as_str())
        .collect();
    let (code, mut body) = match dead.is_empty() {
        true => (StatusCode::OK, "ok".to_owned()),
        false => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("dead: {}", dead.join(", ")),
        ),
    };
    for (name, alive) in states {
        body.push_str(&format!(
            "\n{name}: {}",
            if *alive { "alive" } else { "dead" }
        ));
    }
    (code, body)
}

/// Serves the endpoints until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    probe: Probe,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probe);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(probe): State<Probe>) -> (StatusCode, String) {
    health(&probe.liveness.states())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_lists_every_controller_and_fails_when_one_is_dead() {
        let liveness = Liveness::default();
        assert_eq!(health(&liveness.states()), (StatusCode::OK, "ok".into()));
        let _runs = liveness.alive("runbookrun");
        let windows = liveness.alive("maintenancewindow");
        assert_eq!(
            health(&liveness.states()),
            (
                StatusCode::OK,
                "ok\nmaintenancewindow: alive\nrunbookrun: alive".into()
            )
        );
        drop(windows);
        assert_eq!(
            health(&liveness.states()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "dead: maintenancewindow\nmaintenancewindow: dead\nrunbookrun: alive".into()
            )
        );
    }

    fn shutdown() -> (tokio::sync::oneshot::Sender<()>, crate::runtime::Shutdown) {
        use futures::FutureExt;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        (tx, rx.map(|_| ()).boxed().shared())
    }

    #[tokio::test]
    async fn a_task_that_panics_before_shutdown_is_dead_and_ends_the_wait() {
        let liveness = Liveness::default();
        let (_stop, stop_rx) = shutdown();
        let tasks = vec![
            liveness.spawn("runbook", stop_rx.clone()),
            liveness.spawn("backuppolicy", async { panic!("a controller bug") }),
        ];
        let err = until_all_end(tasks, stop_rx).await.unwrap_err();
        assert_eq!(err.name, "backuppolicy");
        assert!(err.how.contains("panicked"), "{}", err.how);
        assert_eq!(
            liveness.states(),
            vec![
                ("backuppolicy".to_owned(), false),
                ("runbook".to_owned(), true)
            ]
        );
    }

    #[tokio::test]
    async fn a_task_that_returns_before_shutdown_ends_the_wait_too() {
        let liveness = Liveness::default();
        let (_stop, stop_rx) = shutdown();
        let tasks = vec![liveness.spawn("runbookrun", async {})];
        let err = until_all_end(tasks, stop_rx).await.unwrap_err();
        assert_eq!(
            (err.name.as_str(), err.how.as_str()),
            ("runbookrun", "it returned")
        );
    }

    #[tokio::test]
    async fn tasks_that_stop_on_shutdown_end_the_wait_cleanly() {
        let liveness = Liveness::default();
        let (stop, stop_rx) = shutdown();
        let tasks = ["runbook", "runbookrun"]
            .map(|name| liveness.spawn(name, stop_rx.clone()))
            .into();
        let _ = stop.send(());
        assert!(until_all_end(tasks, stop_rx).await.is_ok());
    }
}

//! The one Context every controller receives: client, event recorder, metrics, settings.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use crate::metrics::Metrics;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "runbook-operator";

/// Operator settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
}

/// Shared state of all controllers.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub config: Config,
}

impl Context {
    /// Builds the context; Events are reported as `runbook-operator` (plus the pod name when
    /// running in a cluster, to tell replicas apart).
    pub fn new(client: Client, config: Config) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics: Arc::new(Metrics::default()),
            config,
        }
    }

    /// Publishes an Event in the background. Events are best-effort: a failure is logged,
    /// and the reconcile that reported something never waits for (or fails on) the Event
    /// write, which under load would add an API round trip to every step transition.
    pub async fn publish(
        &self,
        controller: &str,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        // The recorder folds Events with the same type, reason and action on one object into a
        // series that keeps the first message. An action naming the reason and the message's
        // hash folds only true repeats, so each distinct message (a second release's revision,
        // a second window's times) is its own Event.
        let action = format!("{reason}-{:08x}", crate::runbook_run::actions::fnv(&note));
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action,
            secondary: None,
        };
        self.metrics.count_write(controller, "event");
        let recorder = self.recorder.clone();
        let regarding = regarding.clone();
        let reason = reason.to_owned();
        tokio::spawn(async move {
            if let Err(err) = recorder.publish(&event, &regarding).await {
                warn!(%err, reason, "could not publish an Event");
            }
        });
    }
}

//! Prometheus metrics of the operator, served as text on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming one controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name, e.g. `runbook`.
    pub controller: String,
}

/// Labels naming a controller and the kind of write it made.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Controller name.
    pub controller: String,
    /// What was written: `status` or `event`.
    pub write: String,
}

/// All metrics the operator exports.
pub struct Metrics {
    /// Reconciles started, per controller.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles that ended in an error, per controller.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// Reconcile duration in seconds, per controller.
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// Writes to the API server, per controller and kind of write.
    pub api_writes: Family<WriteLabels, Counter>,
    /// Watched objects skipped because they could not be decoded, per controller.
    pub decode_errors: Family<ControllerLabels, Counter>,
    /// 1 once every controller's cache has synced.
    pub ready: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            });
        let api_writes = Family::<WriteLabels, Counter>::default();
        let decode_errors = Family::<ControllerLabels, Counter>::default();
        let ready = Gauge::default();
        let mut registry = Registry::with_prefix("runbook_operator");
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that returned an error",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server (status patches, events)",
            api_writes.clone(),
        );
        registry.register(
            "decode_errors",
            "Watched objects skipped because they could not be decoded",
            decode_errors.clone(),
        );
        registry.register(
            "ready",
            "1 once every controller's cache has synced",
            ready.clone(),
        );
        Self {
            reconciles,
            reconcile_errors,
            reconcile_duration,
            api_writes,
            decode_errors,
            ready,
            registry,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and its duration.
    pub fn observe_reconcile(&self, controller: &str, took: Duration, failed: bool) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
    }

    /// Counts one write to the API server.
    pub fn count_write(&self, controller: &str, write: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                controller: controller.to_owned(),
                write: write.to_owned(),
            })
            .inc();
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_per_controller() {
        let m = Metrics::default();
        m.observe_reconcile("runbook", Duration::from_millis(3), false);
        m.observe_reconcile("runbook", Duration::from_millis(5), true);
        m.count_write("runbook", "status");
        let text = m.render();
        assert!(
            text.contains("runbook_operator_reconciles_total{controller=\"runbook\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("runbook_operator_reconcile_errors_total{controller=\"runbook\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "runbook_operator_api_writes_total{controller=\"runbook\",write=\"status\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "runbook_operator_reconcile_duration_seconds_count{controller=\"runbook\"} 2"
            ),
            "{text}"
        );
    }
}

//! Prometheus metrics of the operator, served as text on `/metrics`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
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

/// Labels naming one BackupPolicy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub policy: String,
}

/// What the backup gauges report for one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupFreshness {
    /// Which policy.
    pub labels: PolicyLabels,
    /// When the newest good backup (verified, when the policy verifies) finished.
    pub newest_good: Option<jiff::Timestamp>,
    /// The policy's recovery-point objective.
    pub rpo: Option<Duration>,
}

/// Reads every policy's freshness at scrape time, so ages are exact when scraped and a
/// deleted policy's series disappears with it.
pub type BackupSource = Box<dyn Fn() -> Vec<BackupFreshness> + Send + Sync>;

/// The collector behind `backup_age_seconds` and `backup_rpo_seconds`; the BackupPolicy
/// controller installs its source once its cache exists.
#[derive(Clone, Default)]
pub struct BackupGauges(Arc<OnceLock<BackupSource>>);

impl std::fmt::Debug for BackupGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupGauges")
    }
}

impl BackupGauges {
    /// Installs the source; a second call is ignored.
    pub fn install(&self, source: BackupSource) {
        let _ = self.0.set(source);
    }
}

impl Collector for BackupGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = self.0.get() else {
            return Ok(());
        };
        let policies = source();
        let now = jiff::Timestamp::now();
        let ages: Vec<_> = policies
            .iter()
            .filter_map(|p| {
                let at = p.newest_good?;
                let age = now.duration_since(at).as_secs_f64().max(0.0);
                Some((&p.labels, ConstGauge::new(age)))
            })
            .collect();
        if !ages.is_empty() {
            let mut family = encoder.encode_descriptor(
                "backup_age_seconds",
                "Age of the newest good backup (verified, when the policy verifies) per BackupPolicy",
                None,
                ages[0].1.metric_type(),
            )?;
            for (labels, gauge) in &ages {
                gauge.encode(family.encode_family(*labels)?)?;
            }
        }
        let rpos: Vec<_> = policies
            .iter()
            .filter_map(|p| Some((&p.labels, ConstGauge::new(p.rpo?.as_secs_f64()))))
            .collect();
        if !rpos.is_empty() {
            let mut family = encoder.encode_descriptor(
                "backup_rpo_seconds",
                "Recovery-point objective (spec.rpo) per BackupPolicy",
                None,
                rpos[0].1.metric_type(),
            )?;
            for (labels, gauge) in &rpos {
                gauge.encode(family.encode_family(*labels)?)?;
            }
        }
        Ok(())
    }
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
    /// 1 while this process holds the leader Lease (or runs without leader election).
    pub leader: Gauge,
    /// Backup age and RPO per BackupPolicy, computed at scrape time.
    pub backups: BackupGauges,
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
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process holds the leader Lease (or runs without leader election)",
            leader.clone(),
        );
        let backups = BackupGauges::default();
        registry.register_collector(Box::new(backups.clone()));
        Self {
            leader,
            backups,
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

    #[test]
    fn renders_backup_age_and_rpo_at_scrape_time() {
        let m = Metrics::default();
        assert!(!m.render().contains("backup_age_seconds"));
        let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        m.backups.install(Box::new(move || {
            vec![
                BackupFreshness {
                    labels: PolicyLabels {
                        namespace: "shop".into(),
                        policy: "nightly".into(),
                    },
                    newest_good: Some(an_hour_ago),
                    rpo: Some(Duration::from_secs(26 * 3600)),
                },
                BackupFreshness {
                    labels: PolicyLabels {
                        namespace: "shop".into(),
                        policy: "new".into(),
                    },
                    newest_good: None,
                    rpo: None,
                },
            ]
        }));
        let text = m.render();
        let age_line = text
            .lines()
            .find(|l| l.starts_with("runbook_operator_backup_age_seconds{"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(age_line.contains("policy=\"nightly\""), "{age_line}");
        let age: f64 = age_line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{age_line}"));
        assert!((3599.0..3700.0).contains(&age), "{age_line}");
        assert!(
            !text.contains("policy=\"new\""),
            "no backup, no series: {text}"
        );
        assert!(
            text.contains(
                "runbook_operator_backup_rpo_seconds{namespace=\"shop\",policy=\"nightly\"} 93600"
            ),
            "{text}"
        );
    }
}

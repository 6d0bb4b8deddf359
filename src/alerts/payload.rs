//! Alertmanager's webhook payload, version 4: what its `webhook_configs` receiver POSTs.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One notification: a group of alerts that share a route and its `group_by` labels.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Payload version; only `4` is known.
    pub version: String,
    /// Alertmanager's key of the notification's group.
    #[serde(default)]
    pub group_key: String,
    /// `firing` when at least one alert fires, else `resolved`.
    #[serde(default)]
    pub status: String,
    /// The receiver's name in `alertmanager.yml`.
    #[serde(default)]
    pub receiver: String,
    /// The alerts of the group.
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Identifying labels, `alertname` among them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Descriptive annotations (summary, description, runbook_url, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing (RFC 3339).
    #[serde(default)]
    pub starts_at: String,
    /// When it ended, or when it will be considered resolved if not sent again.
    #[serde(default)]
    pub ends_at: String,
    /// Link to the rule's expression in Prometheus.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's hash of the labels: the same alert keeps it across notifications.
    #[serde(default)]
    pub fingerprint: String,
}

/// Most alerts one notification may carry; Alertmanager's `max_alerts` is 0 (no limit) by
/// default, and the body cap bounds them too.
pub const MAX_ALERTS: usize = 1000;

/// Why a body is not a notification, said in the 400 reply.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON of the notification's shape.
    #[error("the body is not an Alertmanager webhook notification (JSON, version 4): {0}")]
    Json(String),
    /// Another version.
    #[error("webhook payload version {0:?} is not supported: only version \"4\" is")]
    Version(String),
    /// Too many alerts.
    #[error("the notification carries {0} alerts; at most {MAX_ALERTS} are accepted")]
    TooMany(usize),
    /// An alert without the fields that identify its firing.
    #[error("alerts[{index}] has no {field}; Alertmanager always sends it")]
    Missing {
        /// Position in `alerts`.
        index: usize,
        /// The missing field.
        field: &'static str,
    },
}

impl Notification {
    /// Parses and checks a body.
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let notification: Notification = serde_json::from_slice(body).map_err(|err| {
            PayloadError::Json(crate::names::truncate(&err.to_string(), 256).into_owned())
        })?;
        if notification.version != "4" {
            return Err(PayloadError::Version(
                crate::names::truncate(&notification.version, 32).into_owned(),
            ));
        }
        if notification.alerts.len() > MAX_ALERTS {
            return Err(PayloadError::TooMany(notification.alerts.len()));
        }
        for (index, alert) in notification.alerts.iter().enumerate() {
            if alert.fingerprint.is_empty() {
                return Err(PayloadError::Missing {
                    index,
                    field: "fingerprint",
                });
            }
            if alert.starts_at.is_empty() {
                return Err(PayloadError::Missing {
                    index,
                    field: "startsAt",
                });
            }
        }
        Ok(notification)
    }
}

impl Alert {
    /// The `alertname` label, or empty.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// The namespace the alert belongs to: its `namespace` label.
    pub fn namespace(&self) -> Option<&str> {
        self.labels.get("namespace").map(String::as_str)
    }

    /// Whether Alertmanager says it is resolved.
    pub fn resolved(&self) -> bool {
        self.status == "resolved"
    }

    /// The firing this alert belongs to: `fingerprint@startsAt`. Repeats and retries of one
    /// firing carry the same; the same alert firing again later has a new `startsAt`.
    pub fn firing(&self) -> String {
        format!("{}@{}", self.fingerprint, self.starts_at)
    }
}

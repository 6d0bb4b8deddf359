//! What every module's error type shares: a short, bounded label for
//! `runbook_operator_reconcile_errors_total{controller, error}`.

/// An error that names its class in a word, for metrics (never a message: labels must stay few).
pub trait MetricLabel {
    /// A short `snake_case` label drawn from a small fixed set.
    fn metric_label(&self) -> &'static str;
}

impl MetricLabel for kube::Error {
    fn metric_label(&self) -> &'static str {
        crate::write::status_label(self)
    }
}

impl MetricLabel for crate::write::WriteError {
    fn metric_label(&self) -> &'static str {
        WriteError::metric_label(self)
    }
}

use crate::write::WriteError;

//! What every module's error type shares: a short, bounded label for
//! `runbook_operator_reconcile_errors_total{controller, error}`.

/// An error that names its class in a word, for metrics (never a message: labels must stay few).
pub trait MetricLabel {
    /// A short `snake_case` label drawn from a small fixed set.
    fn metric_label(&self) -> &'static str;

    /// Whether only a change to the object (or to what it names) can make this error go
    /// away, so its retry waits the longest backoff at once ([`crate::retry`]). The API
    /// server's own refusals are classed by their status code; a kind overrides this for
    /// errors of its own that no retry can pass.
    fn permanent(&self) -> bool {
        false
    }
}

/// A read from the API server (or a cache waiting for its first list) that failed, naming what
/// was read.
#[derive(Debug, thiserror::Error)]
#[error("reading {what}: {source}")]
pub struct ReadError {
    /// What was read, e.g. `Service shop/web` or `the RunbookRun cache`.
    pub what: String,
    /// The client's error.
    #[source]
    pub source: kube::Error,
}

impl MetricLabel for ReadError {
    fn metric_label(&self) -> &'static str {
        crate::write::status_label(&self.source)
    }
}

impl MetricLabel for kube::Error {
    fn metric_label(&self) -> &'static str {
        crate::write::status_label(self)
    }
}

impl MetricLabel for crate::write::WriteError {
    fn metric_label(&self) -> &'static str {
        crate::write::WriteError::metric_label(self)
    }
}

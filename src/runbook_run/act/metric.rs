//! query and waitFor steps: measuring PromQL expressions against Prometheus.

use super::{Act, Error, Exec};
use crate::runbook_run::types::StepStatus;
use crate::step::{QueryAction, Step, WaitForAction};

/// One call of a query step: take the measurement that is due, judge it, record it.
pub async fn query(
    _exec: &Exec<'_>,
    _step: &Step,
    _query: &QueryAction,
    _entry: &mut StepStatus,
) -> Result<Act, Error> {
    Ok(super::failed(
        "NotImplemented",
        "query steps are not built yet",
    ))
}

/// One call of a waitFor step: poll, and succeed once `until` holds.
pub async fn wait_for(
    _exec: &Exec<'_>,
    _step: &Step,
    _wait: &WaitForAction,
    _entry: &mut StepStatus,
) -> Result<Act, Error> {
    Ok(super::failed(
        "NotImplemented",
        "waitFor steps are not built yet",
    ))
}

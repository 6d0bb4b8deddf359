//! restore steps: run a BackupPolicy's restore Job for a chosen backup.

use super::{Act, Error, Exec};
use crate::runbook_run::types::StepStatus;
use crate::step::{RestoreAction, Step};

/// One call of a restore step.
pub async fn run(
    _exec: &Exec<'_>,
    _step: &Step,
    _restore: &RestoreAction,
    _entry: &mut StepStatus,
) -> Result<Act, Error> {
    Ok(super::failed(
        "NotImplemented",
        "restore steps are not built yet",
    ))
}

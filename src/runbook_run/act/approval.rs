//! An approval step: what [`decide::approval::judge`] decided, carried out. Answers set before
//! the step waited, and refused answers, are removed from the run (as the operator), so that
//! only an answer given to a waiting step counts and someone else may answer after a refusal.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::Patch;
use kube::runtime::events::EventType;
use serde_json::{Map, Value, json};

use super::{Act, Error, Exec};
use crate::runbook_run::decide::approval::{
    self as decide, Approval, Decision, REFUSED, WAITING_SINCE,
};
use crate::runbook_run::types::{RunbookRun, StepStatus};
use crate::step::{ApprovalAction, Step};

/// An Event to publish once the journal entry is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Normal or Warning.
    pub type_: EventType,
    /// Approved, Rejected or ApprovalRefused.
    pub reason: &'static str,
    /// Who answered what.
    pub note: String,
}

/// The run as an approval step writes it: its annotations and the resourceVersion every write
/// of the run is guarded by. Both follow the writes made here, so the journal write after them
/// is guarded by the version they produced.
pub struct RunMeta<'a> {
    /// The run.
    pub run: &'a RunbookRun,
    /// Its annotations as last read or written.
    pub annotations: &'a mut BTreeMap<String, String>,
    /// Its resourceVersion as last read or written.
    pub resource_version: &'a mut Option<String>,
}

/// Works on an approval step (not in Plan mode) once: opens it, waits, counts or refuses an
/// answer. Returns the step's outcome and an Event to publish after the journal is written.
pub async fn answer(
    exec: &Exec<'_>,
    meta: &mut RunMeta<'_>,
    step: &Step,
    action: &ApprovalAction,
    entry: &mut StepStatus,
) -> Result<(Act, Option<Notice>), Error> {
    match decide::judge(&step.name, action, entry, meta.annotations) {
        Approval::Open { clear } => {
            remove(exec, meta, &clear).await?;
            entry
                .outputs
                .insert(WAITING_SINCE.into(), exec.now.to_string());
            Ok((Act::Record, None))
        }
        Approval::Wait => Ok((
            Act::Wait {
                message: decide::waiting_message(exec.run_name, &step.name, action, entry),
                recheck: None,
                approval: true,
            },
            None,
        )),
        Approval::Refused { clear, who, why } => {
            remove(exec, meta, &clear).await?;
            let note = format!("{who}: {why}");
            entry.outputs.insert(REFUSED.into(), note.clone());
            let notice = Notice {
                type_: EventType::Warning,
                reason: "ApprovalRefused",
                note: format!(
                    "step {:?}: the answer of {note}; the step keeps waiting",
                    step.name
                ),
            };
            // Straight back to waiting (no Running in between), so that someone else's
            // answer is admitted at once.
            let wait = Act::Wait {
                message: decide::waiting_message(exec.run_name, &step.name, action, entry),
                recheck: None,
                approval: true,
            };
            Ok((wait, Some(notice)))
        }
        Approval::Answered { decision, approver } => {
            let who = match &approver {
                Some(a) => a.user.clone(),
                None => "an unrecorded user (the chart's admission policies are not installed)"
                    .to_owned(),
            };
            entry.outputs.remove(REFUSED);
            entry
                .outputs
                .insert("decision".into(), decision.as_str().into());
            entry
                .outputs
                .insert("approvedAt".into(), exec.now.to_string());
            if let Some(a) = &approver {
                entry.outputs.insert("approvedBy".into(), a.user.clone());
                entry
                    .outputs
                    .insert("approverGroups".into(), a.groups.join(","));
            }
            let (act, type_) = match decision {
                Decision::Approved => (
                    Act::Succeeded(match &approver {
                        Some(a) => format!("approved by {}", a.user),
                        None => "approved".into(),
                    }),
                    EventType::Normal,
                ),
                Decision::Rejected => (
                    Act::Failed {
                        reason: "Rejected",
                        message: format!("rejected by {who}"),
                        retryable: false,
                    },
                    EventType::Warning,
                ),
            };
            let notice = Notice {
                type_,
                reason: decision.as_str(),
                note: format!(
                    "step {:?} {} by {who}",
                    step.name,
                    decision.as_str().to_lowercase()
                ),
            };
            Ok((act, Some(notice)))
        }
    }
}

/// Removes `keys` from the run's annotations, guarded by the resourceVersion last seen.
async fn remove(
    exec: &Exec<'_>,
    meta: &mut RunMeta<'_>,
    keys: &[&'static str],
) -> Result<(), Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let nulls: Map<String, Value> = keys
        .iter()
        .map(|k| ((*k).to_owned(), Value::Null))
        .collect();
    let patch = json!({
        "metadata": {"resourceVersion": meta.resource_version, "annotations": nulls}
    });
    // The run is the operator's own kind: its annotations are written as the operator, not
    // as the identity the run's steps act as (which need not hold any right on runs).
    let writer = exec.writer.as_operator();
    let api = writer.api::<RunbookRun>(exec.namespace);
    let written = writer
        .patch(
            &api,
            &meta.run.name_any(),
            &Patch::Merge(&patch),
            "approval",
        )
        .await?;
    *meta.resource_version = written.resource_version();
    *meta.annotations = written.annotations().clone();
    Ok(())
}

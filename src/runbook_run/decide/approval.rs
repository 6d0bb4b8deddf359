//! Judging an answer to an approval step. Pure: the run's annotations and the step's journal
//! entry in, what the operator must do out.
//!
//! An answer is the annotation [`APPROVE`] or [`REJECT`] naming the step. It counts only if it
//! was set while the step waited: when the step starts waiting ([`Approval::Open`]) the
//! operator removes any answer naming it and only then records the step as waiting (both
//! writes guarded by the run's resourceVersion, so an answer that arrives in between makes the
//! second write fail and the step is opened again). The chart's admission policies stamp who
//! created the run ([`REQUESTED_BY`]) and who answered ([`APPROVED_BY`]); the step's
//! `approvers` and `distinctFromRequester` are judged on those stamps.

use std::collections::BTreeMap;

use crate::runbook_run::types::StepStatus;
use crate::step::ApprovalAction;
use crate::well_known::{
    APPROVE, APPROVED_BY, APPROVED_BY_GROUPS, REJECT, REQUESTED_BY, REQUESTED_BY_GROUPS,
};

/// Journal output: when the step started waiting; answers are counted only once it is set.
pub const WAITING_SINCE: &str = "approvalRequestedAt";
/// Journal output: the last answer refused, who gave it and why.
pub const REFUSED: &str = "approvalRefused";

/// What the operator does about an approval step now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    /// The step starts waiting: remove these annotations (an answer set before the step
    /// waited, and its stamps), then record [`WAITING_SINCE`].
    Open {
        /// Annotation keys to remove (empty: nothing to remove).
        clear: Vec<&'static str>,
    },
    /// No answer yet: keep waiting.
    Wait,
    /// An answer that counts.
    Answered {
        /// Approved or rejected.
        decision: Decision,
        /// Who answered; `None` when the chart's admission policies did not stamp it.
        approver: Option<Approver>,
    },
    /// An answer that does not count: remove it (so someone else may answer), say why, and
    /// keep waiting.
    Refused {
        /// Annotation keys to remove.
        clear: Vec<&'static str>,
        /// Who answered, for the message.
        who: String,
        /// Why the answer does not count, and what to do.
        why: String,
    },
}

/// The answer to an approval step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// [`APPROVE`]: the step succeeds.
    Approved,
    /// [`REJECT`]: the step fails with reason `Rejected`.
    Rejected,
}

impl Decision {
    /// As recorded in the journal and used as the Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "Approved",
            Decision::Rejected => "Rejected",
        }
    }
}

/// A person as the API server authenticated them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approver {
    /// Username.
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// The stamps [`APPROVED_BY`] / [`APPROVED_BY_GROUPS`] (or the requested-by pair) as a person.
fn person(annotations: &BTreeMap<String, String>, user: &str, groups: &str) -> Option<Approver> {
    let user = annotations.get(user).filter(|u| !u.is_empty())?;
    let groups = annotations
        .get(groups)
        .map(|g| {
            g.split(',')
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Some(Approver {
        user: user.clone(),
        groups,
    })
}

/// What to do about the approval step `step` (its `action` and journal `entry`) given the
/// run's `annotations`.
pub fn judge(
    step: &str,
    action: &ApprovalAction,
    entry: &StepStatus,
    annotations: &BTreeMap<String, String>,
) -> Approval {
    let names = |key: &str| annotations.get(key).map(String::as_str) == Some(step);
    let mut answers: Vec<&'static str> =
        [APPROVE, REJECT].into_iter().filter(|k| names(k)).collect();
    if !entry.outputs.contains_key(WAITING_SINCE) {
        if !answers.is_empty() {
            answers.extend([APPROVED_BY, APPROVED_BY_GROUPS]);
        }
        return Approval::Open { clear: answers };
    }
    // A reject and an approve of the same step at once: the safe answer wins.
    let (key, decision) = if names(REJECT) {
        (REJECT, Decision::Rejected)
    } else if names(APPROVE) {
        (APPROVE, Decision::Approved)
    } else {
        return Approval::Wait;
    };
    let approver = person(annotations, APPROVED_BY, APPROVED_BY_GROUPS);
    let refuse = |who: &str, why: String| Approval::Refused {
        clear: vec![key, APPROVED_BY, APPROVED_BY_GROUPS],
        who: who.to_owned(),
        why,
    };
    let approvers = action.approvers.clone().unwrap_or_default();
    let narrowed = !approvers.users.is_empty() || !approvers.groups.is_empty();
    let distinct = action.distinct_from_requester == Some(true);
    if !narrowed && !distinct {
        return Approval::Answered { decision, approver };
    }
    let Some(approver) = approver else {
        return refuse(
            "an unrecorded user",
            format!(
                "the answer carries no {APPROVED_BY} annotation, so approval.approvers and approval.distinctFromRequester cannot be checked: install the chart's admission policies (admission.enabled=true), then answer again"
            ),
        );
    };
    if narrowed
        && !approvers.users.contains(&approver.user)
        && !approver.groups.iter().any(|g| approvers.groups.contains(g))
    {
        return refuse(
            &approver.user,
            format!(
                "not among the step's approval.approvers (users: [{}], groups: [{}]); ask one of them",
                approvers.users.join(", "),
                approvers.groups.join(", ")
            ),
        );
    }
    if distinct {
        match person(annotations, REQUESTED_BY, REQUESTED_BY_GROUPS) {
            None => {
                return refuse(
                    &approver.user,
                    format!(
                        "the run has no {REQUESTED_BY} annotation (it was created without the chart's admission policies), so approval.distinctFromRequester cannot be checked: create a new run"
                    ),
                );
            }
            Some(requester) if requester.user == approver.user => {
                return refuse(
                    &approver.user,
                    "they created the run and the step sets approval.distinctFromRequester: someone else must answer".into(),
                );
            }
            Some(_) => {}
        }
    }
    Approval::Answered {
        decision,
        approver: Some(approver),
    }
}

/// The waiting step's message: what is asked, how to answer, and the last refused answer.
pub fn waiting_message(
    run: &str,
    step: &str,
    action: &ApprovalAction,
    entry: &StepStatus,
) -> String {
    let refused = entry
        .outputs
        .get(REFUSED)
        .map(|r| format!("; refused: {r}"))
        .unwrap_or_default();
    format!(
        "waiting for approval: {} (kubectl runbook approve {run} {step}, or reject; or kubectl annotate runbookrun {run} {APPROVE}={step}){refused}",
        action.message
    )
}

#[cfg(test)]
mod tests;

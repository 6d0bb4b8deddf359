use super::*;
use crate::runbook_run::types::StepPhase;
use crate::step::Approvers;

fn action(approvers: Option<Approvers>, distinct: bool) -> ApprovalAction {
    ApprovalAction {
        message: "Ship it?".into(),
        approvers,
        distinct_from_requester: distinct.then_some(true),
    }
}

fn entry(waiting: bool) -> StepStatus {
    let mut outputs = BTreeMap::new();
    if waiting {
        outputs.insert(WAITING_SINCE.to_owned(), "2026-01-01T00:00:00Z".to_owned());
    }
    StepStatus {
        name: "ask".into(),
        phase: StepPhase::Running,
        attempts: 1,
        start_time: None,
        completion_time: None,
        message: None,
        reason: None,
        condition: None,
        target: None,
        outputs,
    }
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn alice() -> Approver {
    Approver {
        user: "alice".into(),
        groups: vec!["sre".into(), "system:authenticated".into()],
    }
}

const BY_ALICE: [(&str, &str); 3] = [
    (APPROVE, "ask"),
    (APPROVED_BY, "alice"),
    (APPROVED_BY_GROUPS, "sre,system:authenticated"),
];

#[test]
fn an_answer_set_before_the_step_waited_is_cleared_when_it_starts_waiting() {
    let a = action(None, false);
    assert_eq!(
        judge("ask", &a, &entry(false), &annotations(&BY_ALICE)),
        Approval::Open {
            clear: vec![APPROVE, APPROVED_BY, APPROVED_BY_GROUPS]
        }
    );
    // An answer naming another step is left for that step to clear.
    let other = annotations(&[(APPROVE, "later"), (REJECT, "ask")]);
    assert_eq!(
        judge("ask", &a, &entry(false), &other),
        Approval::Open {
            clear: vec![REJECT, APPROVED_BY, APPROVED_BY_GROUPS]
        }
    );
    assert_eq!(
        judge("ask", &a, &entry(false), &annotations(&[])),
        Approval::Open { clear: vec![] }
    );
    assert_eq!(
        judge("ask", &a, &entry(true), &annotations(&[(APPROVE, "later")])),
        Approval::Wait
    );
}

#[test]
fn approve_and_reject_count_once_the_step_waits_and_reject_wins_a_tie() {
    let a = action(None, false);
    assert_eq!(
        judge("ask", &a, &entry(true), &annotations(&BY_ALICE)),
        Approval::Answered {
            decision: Decision::Approved,
            approver: Some(alice())
        }
    );
    let both = annotations(&[(APPROVE, "ask"), (REJECT, "ask")]);
    assert_eq!(
        judge("ask", &a, &entry(true), &both),
        Approval::Answered {
            decision: Decision::Rejected,
            approver: None
        }
    );
}

#[test]
fn approvers_narrow_by_user_or_group() {
    let by_user = action(
        Some(Approvers {
            users: vec!["alice".into()],
            groups: vec![],
        }),
        false,
    );
    let by_group = action(
        Some(Approvers {
            users: vec![],
            groups: vec!["sre".into()],
        }),
        false,
    );
    let others = action(
        Some(Approvers {
            users: vec!["bob".into()],
            groups: vec!["dba".into()],
        }),
        false,
    );
    let ann = annotations(&BY_ALICE);
    for a in [&by_user, &by_group] {
        assert!(matches!(
            judge("ask", a, &entry(true), &ann),
            Approval::Answered { .. }
        ));
    }
    let Approval::Refused { clear, who, why } = judge("ask", &others, &entry(true), &ann) else {
        panic!("alice is not an approver");
    };
    assert_eq!(clear, vec![APPROVE, APPROVED_BY, APPROVED_BY_GROUPS]);
    assert_eq!(who, "alice");
    assert!(why.contains("users: [bob], groups: [dba]"), "{why}");
}

#[test]
fn distinct_from_requester_refuses_the_creator_and_missing_stamps() {
    let a = action(None, true);
    let mut ann = annotations(&BY_ALICE);
    ann.insert(REQUESTED_BY.into(), "bob".into());
    assert!(matches!(
        judge("ask", &a, &entry(true), &ann),
        Approval::Answered { .. }
    ));
    ann.insert(REQUESTED_BY.into(), "alice".into());
    let Approval::Refused { who, why, .. } = judge("ask", &a, &entry(true), &ann) else {
        panic!("the creator may not approve");
    };
    assert_eq!(who, "alice");
    assert!(why.contains("created the run"), "{why}");
    ann.remove(REQUESTED_BY);
    let Approval::Refused { why, .. } = judge("ask", &a, &entry(true), &ann) else {
        panic!("no requester recorded");
    };
    assert!(why.contains("create a new run"), "{why}");
    // No approver stamp: the admission policies are missing.
    let bare = annotations(&[(REJECT, "ask")]);
    let Approval::Refused { clear, why, .. } = judge("ask", &a, &entry(true), &bare) else {
        panic!("no approver recorded");
    };
    assert_eq!(clear, vec![REJECT, APPROVED_BY, APPROVED_BY_GROUPS]);
    assert!(why.contains("admission.enabled=true"), "{why}");
}

#[test]
fn the_waiting_message_says_how_to_answer_and_who_was_refused() {
    let mut e = entry(true);
    let m = waiting_message("run-1", "ask", &action(None, false), &e);
    assert!(
        m.contains("Ship it?") && m.contains(&format!("{APPROVE}=ask")),
        "{m}"
    );
    e.outputs.insert(REFUSED.into(), "alice: not among".into());
    let m = waiting_message("run-1", "ask", &action(None, false), &e);
    assert!(m.ends_with("; refused: alice: not among"), "{m}");
}

//! The lifecycle events of a Runbook's runs, read from the runs' status, for
//! [`crate::notifications::plan`].

use jiff::Timestamp;
use kube::ResourceExt;

use crate::notifications::{LifecycleEvent, Occurrence};
use crate::runbook_run::RunbookRun;
use crate::runbook_run::types::RunPhase;
use crate::well_known::ACKNOWLEDGED;

/// The events a Runbook's `notifications` may name.
pub const EVENTS: [LifecycleEvent; 4] = [
    LifecycleEvent::RunStarted,
    LifecycleEvent::RunSucceeded,
    LifecycleEvent::RunFailed,
    LifecycleEvent::ApprovalNeeded,
];

/// `kubectl runbook approve <run> <step> -n <namespace>`: the command that answers an
/// approval (the plugin names the step, so the command approves exactly the step that waits).
pub fn approve_command(run: &str, step: &str, namespace: &str) -> String {
    format!("kubectl runbook approve {run} {step} -n {namespace}")
}

fn at(time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<Timestamp> {
    time.map(|t| t.0)
}

/// The occurrences the runs' status records: a run started (`startTime`), succeeded or failed
/// (phase and `completionTime`), or waits at an approval step (phase WaitingForApproval,
/// `currentStep`, the step's `startTime`). A failure or an approval is open until the run
/// carries [`ACKNOWLEDGED`]; an approval also closes when the run leaves WaitingForApproval.
pub fn occurrences(runs: &[&RunbookRun]) -> Vec<Occurrence> {
    let mut out = Vec::new();
    for run in runs {
        let Some(status) = &run.status else { continue };
        let name = run.name_any();
        let namespace = run.namespace().unwrap_or_default();
        let acknowledged = run.annotations().contains_key(ACKNOWLEDGED);
        let condition_message = || {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "Succeeded")
                .map(|c| c.message.clone())
                .unwrap_or_default()
        };
        if let Some(started) = at(status.start_time.as_ref()) {
            out.push(Occurrence {
                id: format!("RunStarted/{name}"),
                event: LifecycleEvent::RunStarted,
                at: started,
                open: false,
                message: format!("run {name} started"),
                command: None,
            });
        }
        let finished = at(status.completion_time.as_ref());
        match (status.phase, finished) {
            (Some(RunPhase::Succeeded), Some(done)) => out.push(Occurrence {
                id: format!("RunSucceeded/{name}"),
                event: LifecycleEvent::RunSucceeded,
                at: done,
                open: false,
                message: format!("run {name} succeeded"),
                command: None,
            }),
            (Some(RunPhase::Failed), Some(done)) => out.push(Occurrence {
                id: format!("RunFailed/{name}"),
                event: LifecycleEvent::RunFailed,
                at: done,
                open: !acknowledged,
                message: format!("run {name} failed: {}", condition_message()),
                command: Some(format!(
                    "kubectl annotate runbookrun {name} -n {namespace} {ACKNOWLEDGED}=true"
                )),
            }),
            _ => {}
        }
        if status.phase == Some(RunPhase::WaitingForApproval)
            && let Some(step) = &status.current_step
        {
            let since = status
                .steps
                .iter()
                .find(|s| &s.name == step)
                .and_then(|s| at(s.start_time.as_ref()))
                .or_else(|| at(status.start_time.as_ref()));
            if let Some(since) = since {
                out.push(Occurrence {
                    id: format!("ApprovalNeeded/{name}/{step}"),
                    event: LifecycleEvent::ApprovalNeeded,
                    at: since,
                    open: !acknowledged,
                    message: format!("run {name} waits for approval of step {step:?}"),
                    command: Some(approve_command(&name, step, &namespace)),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::runbook::decide::decide;
    use crate::runbook::observe::Observed;
    use crate::runbook::status::status;
    use crate::runbook::types::Runbook;
    use crate::runbook_run::RunbookRun;
    use crate::well_known::ACKNOWLEDGED;

    fn runbook(notifications: Value) -> Runbook {
        serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
            "metadata": {"name": "nightly", "namespace": "shop", "uid": "u1", "generation": 1},
            "spec": {"steps": [{"name": "ok", "approval": {"message": "go?"}}],
                "notifications": notifications}
        }))
        .unwrap()
    }

    fn run(name: &str, status: Value, annotations: Value) -> Arc<RunbookRun> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "RunbookRun",
                "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
                "spec": {"runbookRef": {"name": "nightly"}},
                "status": status
            }))
            .unwrap(),
        )
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn waiting(annotations: Value) -> Arc<RunbookRun> {
        run(
            "nightly-1",
            json!({"phase": "WaitingForApproval", "startTime": "2026-11-25T10:00:00Z",
                "currentStep": "ok", "steps": [{"name": "ok", "phase": "Running",
                "startTime": "2026-11-25T10:00:01Z"}]}),
            annotations,
        )
    }

    #[test]
    fn an_approval_notifies_once_with_the_command_then_escalates_until_answered() {
        let mut rb = runbook(
            json!([{"events": ["ApprovalNeeded"], "notify": {"url": "http://chat"},
            "escalate": [{"after": "2m", "notify": {"url": "http://pager"}}]}]),
        );
        let observed = Observed {
            runs: vec![waiting(json!({}))],
            ..Observed::default()
        };
        let now = ts("2026-11-25T10:00:05Z");
        let d = decide(&rb, &observed, now);
        assert_eq!(d.notifications.send.len(), 1);
        assert_eq!(
            d.notifications.send[0].occurrence.command.as_deref(),
            Some("kubectl runbook approve nightly-1 ok -n shop")
        );
        assert_eq!(d.wake_at, Some(ts("2026-11-25T10:02:01Z")));
        // Restarted from what the API server stores: nothing is sent again, nothing written.
        rb.status = Some(status(&rb, &d, now));
        let again = decide(&rb, &observed, ts("2026-11-25T10:01:00Z"));
        assert!(again.notifications.send.is_empty());
        assert_eq!(
            status(&rb, &again, ts("2026-11-25T10:01:00Z")),
            rb.status.clone().unwrap()
        );
        // Acknowledged before `after`: no escalation, no timer.
        let acked = Observed {
            runs: vec![waiting(json!({ACKNOWLEDGED: "alice"}))],
            ..Observed::default()
        };
        let quiet = decide(&rb, &acked, ts("2026-11-25T10:05:00Z"));
        assert!(quiet.notifications.send.is_empty());
        assert_eq!(quiet.wake_at, None);
        // Unanswered past `after`: the escalation, once.
        let late = decide(&rb, &observed, ts("2026-11-25T10:02:01Z"));
        assert_eq!(late.notifications.send.len(), 1);
        assert_eq!(late.notifications.send[0].level, 1);
    }

    #[test]
    fn finished_runs_give_their_events() {
        let runs = [
            run(
                "a",
                json!({"phase": "Failed", "startTime": "2026-11-25T10:00:00Z",
                    "completionTime": "2026-11-25T10:01:00Z"}),
                json!({}),
            ),
            run(
                "b",
                json!({"phase": "Succeeded", "startTime": "2026-11-25T10:00:00Z",
                    "completionTime": "2026-11-25T10:01:00Z"}),
                json!({}),
            ),
        ];
        let refs: Vec<&RunbookRun> = runs.iter().map(AsRef::as_ref).collect();
        let ids: Vec<String> = super::occurrences(&refs)
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(
            ids,
            [
                "RunStarted/a",
                "RunFailed/a",
                "RunStarted/b",
                "RunSucceeded/b"
            ]
        );
    }

    #[test]
    fn events_of_other_kinds_make_the_spec_invalid() {
        let rb = runbook(json!([{"events": ["WindowOpened"], "notify": {"url": "http://chat"}}]));
        let d = decide(&rb, &Observed::default(), ts("2026-11-25T10:00:00Z"));
        assert_eq!(d.problems[0].field, "spec.notifications[0].events");
    }
}

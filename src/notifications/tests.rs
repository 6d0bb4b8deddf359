//! What `plan` sends, escalates and records; what `render` writes.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn sink(url: &str) -> Sink {
    Sink {
        url: Some(url.into()),
        ..Sink::default()
    }
}

fn rule(on: &[LifecycleEvent], escalate: &[&str]) -> Notification {
    Notification {
        events: on.to_vec(),
        notify: sink("http://first"),
        message: None,
        escalate: escalate
            .iter()
            .map(|after| Escalation {
                after: Duration((*after).into()),
                notify: sink("http://pager"),
                message: None,
            })
            .collect(),
    }
}

fn occurrence(id: &str, event: LifecycleEvent, at: &str, open: bool) -> Occurrence {
    Occurrence {
        id: id.into(),
        event,
        at: t(at),
        open,
        message: "m".into(),
        command: Some("kubectl runbook approve r s -n ns".into()),
    }
}

const T0: &str = "2026-01-01T00:00:00Z";

#[test]
fn an_occurrence_is_sent_once_and_recorded() {
    let rules = [rule(&[LifecycleEvent::RunFailed], &[])];
    let occ = [occurrence(
        "RunFailed/r",
        LifecycleEvent::RunFailed,
        T0,
        true,
    )];
    let now = t("2026-01-01T00:00:05Z");
    let first = plan(&rules, &occ, &[], now);
    assert_eq!(first.send.len(), 1);
    assert_eq!(first.sent.len(), 1);
    assert_eq!(first.sent[0].event_id, "RunFailed/r");
    // The same observation with the record written: nothing more, record unchanged.
    let again = plan(&rules, &occ, &first.sent, t("2026-01-01T00:10:00Z"));
    assert!(again.send.is_empty());
    assert_eq!(again.sent, first.sent);
    assert_eq!(again.wake_at, None);
}

#[test]
fn rules_for_other_events_send_nothing() {
    let rules = [rule(&[LifecycleEvent::RunSucceeded], &["1m"])];
    let occ = [occurrence(
        "RunFailed/r",
        LifecycleEvent::RunFailed,
        T0,
        true,
    )];
    let p = plan(&rules, &occ, &[], t(T0));
    assert_eq!(p, Plan::default());
}

#[test]
fn escalation_waits_for_after_then_fires_once_in_order() {
    let rules = [rule(&[LifecycleEvent::ApprovalNeeded], &["1m", "5m"])];
    let occ = [occurrence(
        "ApprovalNeeded/r/s",
        LifecycleEvent::ApprovalNeeded,
        T0,
        true,
    )];
    let p0 = plan(&rules, &occ, &[], t(T0));
    assert_eq!(p0.send.len(), 1);
    assert_eq!(p0.wake_at, Some(t("2026-01-01T00:01:00Z")));
    let p1 = plan(&rules, &occ, &p0.sent, t("2026-01-01T00:01:00Z"));
    assert_eq!(p1.send.len(), 1);
    assert_eq!(p1.send[0].level, 1);
    assert_eq!(p1.send[0].sink, sink("http://pager"));
    assert_eq!(p1.wake_at, Some(t("2026-01-01T00:05:00Z")));
    let p1b = plan(&rules, &occ, &p1.sent, t("2026-01-01T00:02:00Z"));
    assert!(p1b.send.is_empty());
    // Long after: level 2 fires, once.
    let p2 = plan(&rules, &occ, &p1.sent, t("2026-01-01T00:30:00Z"));
    assert_eq!(p2.send.iter().map(|o| o.level).collect::<Vec<_>>(), [2]);
    let p3 = plan(&rules, &occ, &p2.sent, t("2026-01-01T00:31:00Z"));
    assert!(p3.send.is_empty());
    assert_eq!(p3.wake_at, None);
}

#[test]
fn an_answered_occurrence_does_not_escalate_nor_wake() {
    let rules = [rule(&[LifecycleEvent::RunFailed], &["1m"])];
    let open = [occurrence(
        "RunFailed/r",
        LifecycleEvent::RunFailed,
        T0,
        true,
    )];
    let p0 = plan(&rules, &open, &[], t(T0));
    let closed = [occurrence(
        "RunFailed/r",
        LifecycleEvent::RunFailed,
        T0,
        false,
    )];
    let p1 = plan(&rules, &closed, &p0.sent, t("2026-01-01T01:00:00Z"));
    assert!(p1.send.is_empty());
    assert_eq!(p1.wake_at, None);
    assert_eq!(p1.sent, p0.sent);
}

#[test]
fn an_old_occurrence_is_not_sent_when_first_seen() {
    let rules = [rule(&[LifecycleEvent::RunFailed], &["1m"])];
    let occ = [occurrence(
        "RunFailed/r",
        LifecycleEvent::RunFailed,
        T0,
        true,
    )];
    let later = crate::time::add(t(T0), SignedDuration::from_hours(2));
    let p = plan(&rules, &occ, &[], later);
    assert!(p.send.is_empty());
    assert!(p.sent.is_empty());
}

#[test]
fn the_record_is_bounded_dropping_unobserved_first() {
    let rules = [rule(&[LifecycleEvent::RunStarted], &[])];
    let stored: Vec<SentNotification> = (0..MAX_SENT)
        .map(|i| SentNotification {
            event_id: format!("RunStarted/old-{i}"),
            event: LifecycleEvent::RunStarted,
            rule: 0,
            level: 0,
            sent_at: crate::time::to_time(t(T0)),
        })
        .collect();
    let occ = [occurrence(
        "RunStarted/new",
        LifecycleEvent::RunStarted,
        T0,
        false,
    )];
    let p = plan(&rules, &occ, &stored, t(T0));
    assert_eq!(p.sent.len(), MAX_SENT);
    assert!(p.sent.iter().any(|s| s.event_id == "RunStarted/new"));
}

#[test]
fn problems_name_events_of_another_kind_and_bad_durations() {
    let rules = [rule(&[LifecycleEvent::WindowOpened], &["soon"])];
    let found = problems(&rules, &[LifecycleEvent::RunFailed], "spec.notifications");
    let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.notifications[0].events",
            "spec.notifications[0].escalate[0].after"
        ]
    );
}

fn outgoing(template: Option<&str>, event: LifecycleEvent, level: usize) -> Outgoing {
    Outgoing {
        occurrence: occurrence("E/r", event, T0, true),
        rule: 0,
        level,
        sink: sink("http://x"),
        template: template.map(Into::into),
    }
}

#[test]
fn templates_read_event_and_object_fields() {
    let object = json!({"kind": "Runbook", "metadata": {"name": "rb", "namespace": "ns"},
        "status": {"lastRun": {"phase": "Failed"}}});
    let out = outgoing(
        Some(
            "{{ event.name }} {{object.metadata.name}} {{ object.status.lastRun.phase }} L{{ escalation.level }} {{ nope }}!",
        ),
        LifecycleEvent::RunFailed,
        2,
    );
    assert_eq!(render(&out, &object), "RunFailed rb Failed L2 !");
    let default = outgoing(None, LifecycleEvent::RunFailed, 1);
    assert_eq!(
        render(&default, &object),
        "[escalation 1] Runbook ns/rb: RunFailed: m (kubectl runbook approve r s -n ns)"
    );
}

#[test]
fn an_approval_message_always_holds_the_command() {
    let out = outgoing(Some("approve please"), LifecycleEvent::ApprovalNeeded, 0);
    assert_eq!(
        render(&out, &json!({})),
        "approve please\nApprove with: kubectl runbook approve r s -n ns"
    );
}

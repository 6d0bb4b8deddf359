//! Which notifications are due: a pure function of the rules, the occurrences a kind observed,
//! the record of what was sent and the clock.

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::{LifecycleEvent, MAX_SENT, Notification, SentNotification, Sink};
use crate::conditions::SpecProblem;

/// An occurrence older than this when first seen is recorded as seen, never sent: turning
/// notifications on (or an operator that was down for hours) does not flood a channel with
/// old news.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// One lifecycle event of one object, as its kind reads it from status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// Stable id, the same on every reconcile and after a restart, e.g. `RunFailed/<run>`.
    pub id: String,
    /// The event.
    pub event: LifecycleEvent,
    /// When it happened (escalations count from here).
    pub at: Timestamp,
    /// Whether it is still unanswered: an approval still waiting, a failure not acknowledged.
    /// Only open occurrences escalate.
    pub open: bool,
    /// What happened, in a sentence (`{{ event.message }}`).
    pub message: String,
    /// The command that answers it (`{{ event.command }}`), e.g. the approve command.
    pub command: Option<String>,
}

/// One message to send now.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// The occurrence it is about.
    pub occurrence: Occurrence,
    /// Index of the rule.
    pub rule: usize,
    /// 0 for the rule's message, n for `escalate[n-1]`.
    pub level: usize,
    /// Where it goes.
    pub sink: Sink,
    /// Its template (`None`: the default summary).
    pub template: Option<String>,
}

/// What [`plan`] decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Messages to send, once the new record is written.
    pub send: Vec<Outgoing>,
    /// The record the status should hold (bounded by [`MAX_SENT`]).
    pub sent: Vec<SentNotification>,
    /// When the next escalation falls due, if one can.
    pub wake_at: Option<Timestamp>,
}

fn key(s: &SentNotification) -> (String, i32, i32) {
    (s.event_id.clone(), s.rule, s.level)
}

/// Decides at `now` which messages of `rules` are due for `occurrences`, given the `stored`
/// record: the rule's message once per occurrence, then each escalation level once, in
/// order, while the occurrence is open and `after` has passed since it happened.
pub fn plan(
    rules: &[super::Notification],
    occurrences: &[Occurrence],
    stored: &[SentNotification],
    now: Timestamp,
) -> Plan {
    let recorded: BTreeSet<(String, i32, i32)> = stored.iter().map(key).collect();
    let sent_at = crate::time::to_time(now);
    let mut plan = Plan::default();
    let mut fresh = Vec::new();
    for occurrence in occurrences {
        for (rule_index, rule) in rules.iter().enumerate() {
            if !rule.events.contains(&occurrence.event) {
                continue;
            }
            let rule_i = i32::try_from(rule_index).unwrap_or(i32::MAX);
            let has = |level: usize| {
                recorded.contains(&(
                    occurrence.id.clone(),
                    rule_i,
                    i32::try_from(level).unwrap_or(i32::MAX),
                ))
            };
            let mut record = |level: usize, plan: &mut Plan, sink: &Sink, template| {
                fresh.push(SentNotification {
                    event_id: occurrence.id.clone(),
                    event: occurrence.event,
                    rule: rule_i,
                    level: i32::try_from(level).unwrap_or(i32::MAX),
                    sent_at: sent_at.clone(),
                });
                plan.send.push(Outgoing {
                    occurrence: occurrence.clone(),
                    rule: rule_index,
                    level,
                    sink: sink.clone(),
                    template,
                });
            };
            if !has(0) {
                let stale = crate::time::add_std(occurrence.at, STALE_AFTER) < now;
                if stale {
                    continue;
                }
                record(0, &mut plan, &rule.notify, rule.message.clone());
            }
            if !occurrence.open {
                continue;
            }
            // Levels fire in order: the first one not yet sent is the only candidate.
            for (i, level) in rule.escalate.iter().enumerate() {
                let n = i + 1;
                if has(n) {
                    continue;
                }
                let Ok(after) = level.after.parse() else {
                    break;
                };
                let due = crate::time::add_std(occurrence.at, after);
                if due <= now {
                    let template = level.message.clone().or_else(|| rule.message.clone());
                    record(n, &mut plan, &level.notify, template);
                    continue;
                }
                plan.wake_at = Some(plan.wake_at.map_or(due, |w: Timestamp| w.min(due)));
                break;
            }
        }
    }
    plan.sent = bounded(stored, fresh, occurrences);
    plan
}

/// The stored record plus `fresh`, at most [`MAX_SENT`] entries: entries of occurrences no
/// longer observed go first, then the oldest. Ordered by time, then id, so the same record
/// serializes the same (a settled object writes nothing).
fn bounded(
    stored: &[SentNotification],
    fresh: Vec<SentNotification>,
    occurrences: &[Occurrence],
) -> Vec<SentNotification> {
    let observed: BTreeSet<&str> = occurrences.iter().map(|o| o.id.as_str()).collect();
    let mut all: Vec<SentNotification> = stored.iter().cloned().chain(fresh).collect();
    if all.len() > MAX_SENT {
        all.sort_by(|a, b| {
            let a_gone = !observed.contains(a.event_id.as_str());
            let b_gone = !observed.contains(b.event_id.as_str());
            b_gone
                .cmp(&a_gone)
                .then_with(|| a.sent_at.0.cmp(&b.sent_at.0))
        });
        let excess = all.len() - MAX_SENT;
        all.drain(..excess);
    }
    all.sort_by(|a, b| {
        a.sent_at
            .0
            .cmp(&b.sent_at.0)
            .then_with(|| key(a).cmp(&key(b)))
    });
    all
}

/// Problems with `rules` the API server cannot catch: events that do not apply to this kind
/// (`allowed`), durations that do not parse. `path` is the list's JSON path.
pub fn problems(
    rules: &[Notification],
    allowed: &[LifecycleEvent],
    path: &str,
) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        for event in &rule.events {
            if !allowed.contains(event) {
                let names: Vec<&str> = allowed.iter().map(|e| e.as_str()).collect();
                problems.push(SpecProblem::new(
                    format!("{path}[{i}].events"),
                    format!(
                        "event {event} does not happen to this kind; use one of {}",
                        names.join(", ")
                    ),
                ));
            }
        }
        for (j, level) in rule.escalate.iter().enumerate() {
            if let Err(err) = level.after.parse() {
                problems.push(SpecProblem::new(
                    format!("{path}[{i}].escalate[{j}].after"),
                    err.to_string(),
                ));
            }
        }
    }
    problems
}

/// The occurrence a condition records: `event` while condition `type_` has status `False` with
/// one of `reasons`, identified by its `lastTransitionTime` (which moves only when the
/// condition flips, so a streak of failures is one occurrence). Open until `acknowledged`
/// (the object's `ops.runbook.dev/acknowledged` value) names its id. `ack` builds the command
/// that acknowledges it from the id.
pub fn from_condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    (type_, reasons): (&str, &[&str]),
    event: LifecycleEvent,
    acknowledged: Option<&str>,
    ack: impl Fn(&str) -> String,
) -> Option<Occurrence> {
    let c = conditions.iter().find(|c| c.type_ == type_)?;
    if c.status != "False" || !reasons.contains(&c.reason.as_str()) {
        return None;
    }
    let at = c.last_transition_time.0;
    let id = format!("{event}/{}", crate::time::to_time(at).0);
    Some(Occurrence {
        open: acknowledged != Some(id.as_str()),
        command: Some(ack(&id)),
        id,
        event,
        at,
        message: c.message.clone(),
    })
}

/// `kubectl annotate <resource> <name> -n <namespace> ops.runbook.dev/acknowledged=<id>
/// --overwrite`: the command that acknowledges `id` on an object.
pub fn ack_command(resource: &str, name: &str, namespace: &str, id: &str) -> String {
    format!(
        "kubectl annotate {resource} {name} -n {namespace} {}={id} --overwrite",
        crate::well_known::ACKNOWLEDGED
    )
}

//! What one alert does to one Runbook: pure functions of the alert, the Runbook (its
//! triggers and `status.alerts`) and the clock.
//!
//! A firing is `fingerprint@startsAt`: Alertmanager repeats it (every `repeat_interval`),
//! retries it (on any non-2xx), and two operator replicas may both receive it; each time it
//! names the same run, `<runbook>-alert-<hash>`, so creating it again meets `AlreadyExists`.
//! The receiver records each firing in the Runbook's `status.alerts` with a resourceVersion
//! precondition: under a cooldown before the create (the record is what lets one firing of
//! a group through, across replicas and restarts), otherwise right after it. The record is
//! also what keeps a firing sent again after its run was pruned from starting another.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::ResourceExt;

use super::payload::Alert;
use crate::runbook::{
    AlertGroupStatus, AlertSuppression, AlertTrigger, AlertsStatus, OnResolved, Runbook,
    RunbookPhase,
};
use crate::runbook_run::{AlertRecord, RunbookRun, Trigger, TriggerType};

/// Groups kept in `status.alerts`, least recently used dropped first.
pub const MAX_GROUPS: usize = 64;
/// Firings kept per group.
pub const MAX_FIRINGS: usize = 10;
/// Longest label or annotation value recorded on a run.
pub const MAX_RECORDED_VALUE: usize = 1024;
/// Most labels (and, apart, annotations) recorded on a run.
pub const MAX_RECORDED_ENTRIES: usize = 64;
/// Longest group key.
const MAX_GROUP_KEY: usize = 256;

/// What an alert did to a Runbook.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Create this run (an existing one of that name means it was created before).
    Start(Box<RunbookRun>),
    /// The firing already started its run.
    Deduplicated {
        /// That run.
        run: String,
    },
    /// The group's cooldown suppressed it.
    CooledDown {
        /// Why, with the run that holds the cooldown.
        reason: String,
    },
    /// A resolved alert with `onResolved: Ignore`.
    Ignored,
    /// A resolved alert with `onResolved: CancelWaiting`: cancel this run if it still waits.
    CancelWaiting {
        /// The firing's run.
        run: String,
    },
    /// The Runbook's spec is invalid: it starts nothing until fixed.
    Invalid,
}

impl Outcome {
    /// The label of this outcome in metrics and replies.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Start(_) => "started",
            Outcome::Deduplicated { .. } => "deduplicated",
            Outcome::CooledDown { .. } => "cooled_down",
            Outcome::Ignored => "ignored",
            Outcome::CancelWaiting { .. } => "cancel_waiting",
            Outcome::Invalid => "invalid",
        }
    }
}

/// The decision for one alert and one Runbook.
#[derive(Clone, Debug)]
pub struct Decision {
    /// What the alert does.
    pub outcome: Outcome,
    /// `status.alerts` to write first (with the Runbook's resourceVersion as precondition);
    /// `None`: nothing to record.
    pub record: Option<AlertsStatus>,
}

/// The first of `rb`'s alert triggers that `alert` matches, with its index: the alert must
/// belong to the Runbook's namespace or one it lists, and carry every `match` label and a
/// value matching every `matchRegex`.
pub fn matching_trigger<'a>(rb: &'a Runbook, alert: &Alert) -> Option<(usize, &'a AlertTrigger)> {
    let triggers = rb.spec.triggers.as_ref()?;
    let namespace = rb.namespace().unwrap_or_default();
    let from = alert.namespace()?;
    triggers.alerts.iter().enumerate().find(|(_, trigger)| {
        (from == namespace || trigger.namespaces.iter().any(|n| n == from))
            && labels_match(trigger, &alert.labels)
    })
}

/// Whether `labels` carry every `match` label and match every `matchRegex` (whole value).
pub fn labels_match(trigger: &AlertTrigger, labels: &BTreeMap<String, String>) -> bool {
    trigger
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && trigger.match_regex.iter().all(|(k, pattern)| {
            let value = labels.get(k).map_or("", String::as_str);
            crate::runbook::compile_alert_regex(pattern).is_ok_and(|re| re.is_match(value))
        })
}

/// The cooldown group of `alert` under `trigger`: the `groupBy` labels (default: those named
/// in `match` and `matchRegex`) with the alert's values, e.g. `alertname=X,service=api`.
pub fn group_key(trigger: &AlertTrigger, alert: &Alert) -> String {
    let names: Vec<&String> = if trigger.group_by.is_empty() {
        let mut names: Vec<&String> = trigger
            .match_labels
            .keys()
            .chain(trigger.match_regex.keys())
            .collect();
        names.sort();
        names.dedup();
        names
    } else {
        trigger.group_by.iter().collect()
    };
    let key = names
        .iter()
        .map(|name| {
            format!(
                "{name}={}",
                alert.labels.get(*name).map_or("", String::as_str)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    crate::names::truncate(&key, MAX_GROUP_KEY).into_owned()
}

/// The run a firing of `alert` starts in `rb` (`resolved`: the run `onResolved: Run` starts).
pub fn run_name(rb: &Runbook, alert: &Alert, resolved: bool) -> String {
    let uid = rb.metadata.uid.as_deref().unwrap_or_default();
    let what = if resolved { "resolved" } else { "alert" };
    let hash = crate::names::fnv64(format!("{uid}/{}/{what}", alert.firing()).as_bytes());
    crate::names::bound(
        &format!("{}-{what}-{:08x}", rb.name_any(), hash as u32),
        crate::names::RUNBOOK_RUN_NAME,
    )
    .into_owned()
}

/// Replaces `{{ alert.labels.X }}`, `{{ alert.annotations.X }}`, `{{ alert.status }}`,
/// `{{ alert.fingerprint }}` and `{{ alert.startsAt }}` in `template`; other text, other
/// `{{ }}` expressions included, stays as written. The result is cut at the longest
/// parameter value.
pub fn render(template: &str, alert: &Alert) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let expr = after[..close].trim();
        let value = if let Some(label) = expr.strip_prefix("alert.labels.") {
            Some(alert.labels.get(label.trim()).cloned().unwrap_or_default())
        } else if let Some(name) = expr.strip_prefix("alert.annotations.") {
            Some(
                alert
                    .annotations
                    .get(name.trim())
                    .cloned()
                    .unwrap_or_default(),
            )
        } else {
            match expr {
                "alert.status" => Some(alert.status.clone()),
                "alert.fingerprint" => Some(alert.fingerprint.clone()),
                "alert.startsAt" => Some(alert.starts_at.clone()),
                _ => None,
            }
        };
        match value {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    crate::names::truncate(&out, crate::runbook::MAX_PARAM_VALUE as usize).into_owned()
}

/// The alert as recorded on a run: values and entries bounded.
pub fn record_of(alert: &Alert) -> AlertRecord {
    let bounded = |map: &BTreeMap<String, String>| {
        map.iter()
            .take(MAX_RECORDED_ENTRIES)
            .map(|(k, v)| {
                (
                    crate::names::truncate(k, 256).into_owned(),
                    crate::names::truncate(v, MAX_RECORDED_VALUE).into_owned(),
                )
            })
            .collect()
    };
    AlertRecord {
        name: crate::names::truncate(alert.name(), 256).into_owned(),
        status: crate::names::truncate(&alert.status, 32).into_owned(),
        fingerprint: crate::names::truncate(&alert.fingerprint, 64).into_owned(),
        starts_at: alert
            .starts_at
            .parse::<Timestamp>()
            .ok()
            .map(crate::time::to_time),
        labels: bounded(&alert.labels),
        annotations: bounded(&alert.annotations),
        generator_url: (!alert.generator_url.is_empty())
            .then(|| crate::names::truncate(&alert.generator_url, 2048).into_owned()),
    }
}

fn start(rb: &Runbook, trigger: &AlertTrigger, alert: &Alert, resolved: bool) -> RunbookRun {
    let params = trigger
        .params
        .iter()
        .map(|(k, v)| (k.clone(), render(v, alert)))
        .collect();
    crate::runbook::new_run_of(
        rb,
        run_name(rb, alert, resolved),
        Trigger {
            type_: TriggerType::Alert,
            scheduled_time: None,
            source: Some(crate::names::truncate(alert.name(), 256).into_owned()),
            alert: Some(record_of(alert)),
        },
        params,
    )
}

/// What `alert` does to `rb` under its matching `trigger`, at `now`.
pub fn decide(rb: &Runbook, trigger: &AlertTrigger, alert: &Alert, now: Timestamp) -> Decision {
    let status = rb.status.as_ref();
    if status.and_then(|s| s.phase) == Some(RunbookPhase::Invalid)
        && status.and_then(|s| s.observed_generation) == rb.metadata.generation
    {
        return Decision {
            outcome: Outcome::Invalid,
            record: None,
        };
    }
    let recorded = status.and_then(|s| s.alerts.clone()).unwrap_or_default();
    if alert.resolved() {
        let outcome = match trigger.on_resolved.unwrap_or_default() {
            OnResolved::Ignore => Outcome::Ignored,
            OnResolved::CancelWaiting => Outcome::CancelWaiting {
                run: run_name(rb, alert, false),
            },
            OnResolved::Run => Outcome::Start(Box::new(start(rb, trigger, alert, true))),
        };
        return Decision {
            outcome,
            record: None,
        };
    }
    let firing = alert.firing();
    let run = run_name(rb, alert, false);
    let key = group_key(trigger, alert);
    let group = recorded.groups.iter().find(|g| g.key == key);
    if let Some(group) = group
        && group.firings.contains(&firing)
    {
        // Recorded: either its run was created, or the receiver stopped between the record
        // and the create. Only the group's latest run can be the second case.
        let outcome = if group.last_run.as_deref() == Some(run.as_str()) {
            Outcome::Start(Box::new(start(rb, trigger, alert, false)))
        } else {
            Outcome::Deduplicated { run }
        };
        return Decision {
            outcome,
            record: None,
        };
    }
    let cooldown = trigger
        .cooldown
        .as_ref()
        .and_then(|c| c.parse_signed().ok());
    if let (Some(cooldown), Some(group)) = (cooldown, group)
        && let Some(last) = group.last_run_time.as_ref().map(|t| t.0)
        && now < crate::time::add(last, cooldown)
    {
        let reason = format!(
            "cooldown {}: run {} started at {last} (next run possible after {})",
            trigger
                .cooldown
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            group.last_run.as_deref().unwrap_or("?"),
            crate::time::add(last, cooldown),
        );
        // Repeats of several suppressed firings interleave: each is counted (and written)
        // once, however its repeats arrive.
        let again = group.suppressed_firings.contains(&firing)
            || group
                .last_suppression
                .as_ref()
                .is_some_and(|s| s.firing == firing);
        return Decision {
            record: (!again).then(|| suppress(&recorded, &key, &firing, &reason, now)),
            outcome: Outcome::CooledDown { reason },
        };
    }
    Decision {
        record: Some(claim(&recorded, &key, &run, &firing, now)),
        outcome: Outcome::Start(Box::new(start(rb, trigger, alert, false))),
    }
}

/// `recorded` with `key`'s group moved last (most recently used), created if new; the
/// oldest groups beyond [`MAX_GROUPS`] are dropped.
fn touch(
    recorded: &AlertsStatus,
    key: &str,
    change: impl FnOnce(&mut AlertGroupStatus),
) -> AlertsStatus {
    let mut groups = recorded.groups.clone();
    let mut group = match groups.iter().position(|g| g.key == key) {
        Some(i) => groups.remove(i),
        None => AlertGroupStatus {
            key: key.to_owned(),
            ..AlertGroupStatus::default()
        },
    };
    change(&mut group);
    groups.push(group);
    let excess = groups.len().saturating_sub(MAX_GROUPS);
    groups.drain(..excess);
    AlertsStatus { groups }
}

/// The record after `firing` started `run` at `now`.
pub fn claim(
    recorded: &AlertsStatus,
    key: &str,
    run: &str,
    firing: &str,
    now: Timestamp,
) -> AlertsStatus {
    touch(recorded, key, |group| {
        group.last_run = Some(run.to_owned());
        group.last_run_time = Some(crate::time::to_time(now));
        group.firings.push(firing.to_owned());
        let excess = group.firings.len().saturating_sub(MAX_FIRINGS);
        group.firings.drain(..excess);
    })
}

/// The record after the cooldown suppressed `firing` at `now`.
pub fn suppress(
    recorded: &AlertsStatus,
    key: &str,
    firing: &str,
    reason: &str,
    now: Timestamp,
) -> AlertsStatus {
    touch(recorded, key, |group| {
        group.suppressed = Some(group.suppressed.unwrap_or(0).saturating_add(1));
        group.suppressed_firings.push(firing.to_owned());
        let excess = group.suppressed_firings.len().saturating_sub(MAX_FIRINGS);
        group.suppressed_firings.drain(..excess);
        group.last_suppression = Some(AlertSuppression {
            time: crate::time::to_time(now),
            firing: firing.to_owned(),
            reason: reason.to_owned(),
        });
    })
}

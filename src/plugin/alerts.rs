//! `kubectl runbook alerts`: what recent alerts did to the Runbooks of a namespace, from the
//! receiver's Events on them, and each cooldown group's record from `status.alerts`.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;

use super::{human_duration, table};
use crate::alerts::act::{
    REASON_CANCELLED, REASON_COOLED_DOWN, REASON_DEDUPLICATED, REASON_INVALID, REASON_STARTED,
};
use crate::runbook::Runbook;

/// Event reasons the receiver publishes, with the word the table shows.
const OUTCOMES: [(&str, &str); 5] = [
    (REASON_STARTED, "started"),
    (REASON_DEDUPLICATED, "deduplicated"),
    (REASON_COOLED_DOWN, "cooled down"),
    (REASON_CANCELLED, "cancelled"),
    (REASON_INVALID, "invalid runbook"),
];

/// Two tables: the alert Events on Runbooks (oldest first, at most `limit`, only those of
/// `runbook` when given), then each Runbook's cooldown groups. `now` dates the ages.
pub fn render_alerts(
    runbooks: &[Runbook],
    events: &[Event],
    runbook: Option<&str>,
    limit: usize,
    now: Timestamp,
) -> String {
    let age =
        |t: Option<Timestamp>| t.map_or("-".to_owned(), |t| human_duration(now.duration_since(t)));
    let mut alerts: Vec<(&Event, &str)> = events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Runbook"))
        .filter(|e| {
            runbook.is_none_or(|name| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
        })
        .filter_map(|e| {
            let reason = e.reason.as_deref()?;
            OUTCOMES
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, word)| (e, *word))
        })
        .collect();
    alerts.sort_by_key(|(e, _)| crate::events::last_seen(e));
    let skip = alerts.len().saturating_sub(limit);
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .skip(skip)
        .map(|(e, word)| {
            vec![
                age(crate::events::last_seen(e)),
                e.regarding
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default(),
                (*word).to_owned(),
                e.series.as_ref().map_or(1, |s| s.count.max(1)).to_string(),
                e.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = if rows.is_empty() {
        "No alert has reached these Runbooks (recently: Events expire after an hour by default).\n"
            .to_owned()
    } else {
        table(
            &["LAST SEEN", "RUNBOOK", "OUTCOME", "COUNT", "MESSAGE"],
            &rows,
        )
    };
    let mut sorted: Vec<&Runbook> = runbooks
        .iter()
        .filter(|rb| runbook.is_none_or(|name| rb.name_any() == name))
        .collect();
    sorted.sort_by_key(|rb| rb.name_any());
    let groups: Vec<Vec<String>> = sorted
        .iter()
        .flat_map(|rb| {
            let alerts = rb.status.as_ref().and_then(|s| s.alerts.clone());
            alerts.into_iter().flat_map(|a| a.groups).map(|g| {
                vec![
                    rb.name_any(),
                    g.key,
                    g.last_run.unwrap_or_else(|| "-".to_owned()),
                    age(g.last_run_time.map(|t| t.0)),
                    g.suppressed.unwrap_or(0).to_string(),
                    g.last_suppression.map_or("-".to_owned(), |s| s.reason),
                ]
            })
        })
        .collect();
    if !groups.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &[
                "RUNBOOK",
                "GROUP",
                "LAST RUN",
                "STARTED",
                "SUPPRESSED",
                "LAST SUPPRESSION",
            ],
            &groups,
        ));
    }
    out
}

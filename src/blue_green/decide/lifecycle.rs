//! The lifecycle events of a BlueGreenRelease, read from the history its status records, for
//! [`crate::notifications::plan`].

use crate::blue_green::types::BlueGreenReleaseStatus;
use crate::notifications::{LifecycleEvent, Occurrence, ack_command};

/// The events a BlueGreenRelease's `notifications` may name.
pub const EVENTS: [LifecycleEvent; 2] = [LifecycleEvent::Promoted, LifecycleEvent::Aborted];

/// Promoted for each history record with result Promoted; Aborted for result Aborted or
/// RolledBack, open until `acknowledged` (the release's annotation) names it. Ids carry the
/// revision; the time is the record's `completionTime`.
pub fn occurrences(
    name: &str,
    namespace: &str,
    acknowledged: Option<&str>,
    status: &BlueGreenReleaseStatus,
) -> Vec<Occurrence> {
    let mut out = Vec::new();
    for record in &status.history {
        let Some(done) = &record.completion_time else {
            continue;
        };
        let result = record.result.as_deref().unwrap_or_default();
        let event = match result {
            "Promoted" => LifecycleEvent::Promoted,
            "Aborted" | "RolledBack" => LifecycleEvent::Aborted,
            _ => continue,
        };
        let id = format!("{event}/{}", record.revision);
        let failure = event == LifecycleEvent::Aborted;
        out.push(Occurrence {
            open: failure && acknowledged != Some(id.as_str()),
            command: failure.then(|| ack_command("bluegreenrelease", name, namespace, &id)),
            message: format!(
                "revision {} ({}): {result}",
                record.revision,
                record.images.join(", ")
            ),
            id,
            event,
            at: done.0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn promoted_and_rolled_back_revisions() {
        let status: BlueGreenReleaseStatus = serde_json::from_value(json!({"history": [
            {"revision": "a1", "result": "Promoted", "completionTime": "2026-11-25T10:00:00Z"},
            {"revision": "b2", "result": "RolledBack", "completionTime": "2026-11-25T11:00:00Z"},
            {"revision": "c3", "startTime": "2026-11-25T12:00:00Z"}]}))
        .unwrap();
        let found = occurrences("web", "shop", None, &status);
        let ids: Vec<&str> = found.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["Promoted/a1", "Aborted/b2"]);
        assert!(!found[0].open);
        assert!(found[1].open);
    }
}

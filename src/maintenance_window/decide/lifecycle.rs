//! The lifecycle events of a MaintenanceWindow, read from its status, for
//! [`crate::notifications::plan`].

use crate::maintenance_window::status::{DRIFT_RESPECTED, FAILED, SUCCEEDED};
use crate::maintenance_window::types::{MaintenanceWindowStatus, WindowPhase};
use crate::notifications::{LifecycleEvent, Occurrence, ack_command};

/// The events a MaintenanceWindow's `notifications` may name.
pub const EVENTS: [LifecycleEvent; 3] = [
    LifecycleEvent::WindowOpened,
    LifecycleEvent::WindowClosed,
    LifecycleEvent::RestoreFailed,
];

/// WindowOpened while the phase is Active (`currentWindow`); WindowClosed once an occurrence
/// that opened is recorded in `lastWindow` (result Succeeded, DriftRespected or Failed: a
/// skipped occurrence never opened); RestoreFailed when that result is Failed, open until
/// `acknowledged` (the window's annotation) names it. Ids carry the occurrence's start.
pub fn occurrences(
    name: &str,
    namespace: &str,
    acknowledged: Option<&str>,
    status: &MaintenanceWindowStatus,
) -> Vec<Occurrence> {
    let mut out = Vec::new();
    if status.phase == Some(WindowPhase::Active)
        && let Some(current) = &status.current_window
    {
        out.push(Occurrence {
            id: format!("WindowOpened/{}", current.start.0),
            event: LifecycleEvent::WindowOpened,
            at: current.start.0,
            open: false,
            message: format!("the window is open until {}", current.end.0),
            command: None,
        });
    }
    if let Some(last) = &status.last_window {
        let result = last.result.as_deref().unwrap_or_default();
        if [SUCCEEDED, DRIFT_RESPECTED, FAILED].contains(&result) {
            out.push(Occurrence {
                id: format!("WindowClosed/{}", last.start.0),
                event: LifecycleEvent::WindowClosed,
                at: last.end.0,
                open: false,
                message: format!(
                    "the window {}–{} closed: {result}",
                    last.start.0, last.end.0
                ),
                command: None,
            });
        }
        if result == FAILED {
            let id = format!("RestoreFailed/{}", last.start.0);
            out.push(Occurrence {
                open: acknowledged != Some(id.as_str()),
                command: Some(ack_command("maintenancewindow", name, namespace, &id)),
                id,
                event: LifecycleEvent::RestoreFailed,
                at: last.end.0,
                message: format!(
                    "the window {}–{} could not write a change or restore a value; see its Events",
                    last.start.0, last.end.0
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_open_window_then_a_failed_restore() {
        let open: MaintenanceWindowStatus = serde_json::from_value(json!({"phase": "Active",
            "currentWindow": {"start": "2026-11-25T02:00:00Z", "end": "2026-11-25T04:00:00Z"}}))
        .unwrap();
        let ids: Vec<String> = occurrences("db", "shop", None, &open)
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, ["WindowOpened/2026-11-25T02:00:00Z"]);
        let failed: MaintenanceWindowStatus = serde_json::from_value(json!({"phase": "Scheduled",
            "lastWindow": {"start": "2026-11-25T02:00:00Z", "end": "2026-11-25T04:00:00Z",
                "result": "Failed"}}))
        .unwrap();
        let found = occurrences("db", "shop", None, &failed);
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].id, "RestoreFailed/2026-11-25T02:00:00Z");
        assert!(found[1].open);
        let acked = occurrences(
            "db",
            "shop",
            Some("RestoreFailed/2026-11-25T02:00:00Z"),
            &failed,
        );
        assert!(!acked[1].open);
    }
}

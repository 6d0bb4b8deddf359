use super::*;

fn window(phase: Option<&str>) -> MaintenanceWindow {
    let mut value = serde_json::json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": "nightly", "namespace": "shop"},
        "spec": {"start": "2026-06-10T01:00:00Z", "end": "2026-06-10T02:00:00Z"}
    });
    if let Some(phase) = phase {
        value["status"] = serde_json::json!({"phase": phase});
    }
    serde_json::from_value(value).expect("a MaintenanceWindow")
}

#[test]
fn changes_are_in_effect_from_active_until_restored() {
    for phase in [
        WindowPhase::Scheduled,
        WindowPhase::Preparing,
        WindowPhase::Active,
        WindowPhase::Restoring,
        WindowPhase::Completed,
        WindowPhase::Suspended,
        WindowPhase::Invalid,
    ] {
        let expected = matches!(phase, WindowPhase::Active | WindowPhase::Restoring);
        assert_eq!(
            changes_in_effect(&window(Some(phase.as_str()))),
            expected,
            "{phase:?}"
        );
    }
    assert!(!changes_in_effect(&window(None)), "never reconciled");
}

#[test]
fn activity_names_each_cached_window() {
    let (reader, mut writer) = kube::runtime::reflector::store::<MaintenanceWindow>();
    writer.apply_watcher_event(&watcher::Event::Apply(window(Some("Active"))));
    let rows = activity(&reader);
    assert_eq!(
        rows,
        vec![(
            crate::metrics::WindowLabels {
                namespace: "shop".into(),
                window: "nightly".into()
            },
            true
        )]
    );
}

//! MaintenanceWindow: types, the pure lifecycle and change planning, and the controller.
pub mod changes;
pub mod controller;
pub mod lifecycle;
pub mod types;
pub use types::*;

use std::collections::BTreeMap;

/// Whether a MaintenanceWindow in `namespace` whose labels include `selector` has its `Active`
/// condition True: what Runbooks and BlueGreenReleases with `requiresMaintenanceWindow` wait
/// for.
pub fn open_window<'a>(
    windows: impl IntoIterator<Item = &'a MaintenanceWindow>,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> bool {
    windows.into_iter().any(|mw| {
        mw.metadata.namespace.as_deref() == Some(namespace)
            && selector
                .iter()
                .all(|(k, v)| mw.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
            && mw.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == controller::ACTIVE && c.status == "True")
            })
    })
}

//! MaintenanceWindow: recurring or one-off windows that prepare, change workloads for their
//! duration and always restore.
//!
//! - [`types`]: the custom resource;
//! - [`observe`]: what the cluster says (caches, reads), no decisions;
//! - [`decide`]: the pure lifecycle (occurrences, what to do now) and change planning;
//! - [`status`]: the whole status, conditions included, pure;
//! - [`act`]: the writes a decision needs, all through [`crate::write::Writer`];
//! - [`controller`]: the wiring.
pub mod act;
pub mod controller;
pub mod decide;
pub mod observe;
pub mod status;
pub mod types;
pub use status::ACTIVE;
pub use types::*;

use std::collections::BTreeMap;

/// Controller name in logs and metrics.
pub const NAME: &str = "maintenancewindow";

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
            && mw.status.as_ref().is_some_and(status::is_active)
    })
}

//! What the user may do in a namespace, asked of the API server with
//! SelfSubjectAccessReviews (the same question `kubectl auth can-i` asks).

use kube::Client;

use crate::backup_policy::BackupPolicy;
use crate::blue_green::BlueGreenRelease;
use crate::dashboard::view::Permissions;
use crate::plugin::actions::can_i as can;
use crate::runbook_run::RunbookRun;

/// The user's permissions in `namespace`. Approving needs both `patch` and the chart's verb
/// `approve` on runbookruns (its admission policy refuses an approval without the latter).
pub async fn permissions(client: &Client, namespace: &str) -> Permissions {
    let (patch_runs, approve, create_runs, patch_releases, patch_policies) = futures::join!(
        can::<RunbookRun>(client, namespace, "patch"),
        can::<RunbookRun>(client, namespace, "approve"),
        can::<RunbookRun>(client, namespace, "create"),
        can::<BlueGreenRelease>(client, namespace, "patch"),
        can::<BackupPolicy>(client, namespace, "patch"),
    );
    Permissions {
        approve: patch_runs && approve,
        cancel: patch_runs,
        run: create_runs,
        release: patch_releases,
        backup: patch_policies,
    }
}

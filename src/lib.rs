//! runbook-operator: operations runbooks, maintenance windows, blue-green releases and backup
//! policies as Kubernetes resources that the cluster executes, records and reports on.

// kube-derive expands each `printcolumn(..)` into attributes clippy reads as duplicates.
#![allow(clippy::duplicated_attributes)]
pub mod alerts;
pub mod backup_policy;
pub mod blue_green;
pub mod conditions;
pub mod context;
pub mod crds;
pub mod dashboard;
pub mod duration;
pub mod embedded;
pub mod errors;
pub mod events;
pub mod expr;
pub mod fence;
#[cfg(test)]
mod fuzz;
pub mod identity;
pub mod kubectl;
pub mod leader;
pub mod maintenance_window;
pub mod metrics;
pub mod names;
pub mod notifications;
pub mod notify;
pub mod outbound;
pub mod params;
pub mod plugin;
pub mod prometheus;
pub mod reference;
pub mod retry;
pub mod runbook;
pub mod runbook_run;
pub mod runtime;
pub mod schedule;
pub mod secret_ref;
pub mod server;
pub mod step;
pub mod template;
#[cfg(test)]
pub mod testing;
pub mod time;
pub mod validation;
pub mod well_known;
pub mod write;

has_conditions!(
    runbook::RunbookStatus,
    runbook_run::RunbookRunStatus,
    maintenance_window::MaintenanceWindowStatus,
    blue_green::BlueGreenReleaseStatus,
    backup_policy::BackupPolicyStatus
);

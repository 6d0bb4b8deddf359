//! BlueGreenRelease: two Deployment slots from one pod template behind existing Services.
//!
//! [`types`] (the CRD) -> [`observe`] (what the cluster says) -> [`decide`] (pure: what to do)
//! -> [`act`] (the writes) and [`status`] (pure: the status written) -> [`controller`] (wiring).
pub mod act;
pub mod controller;
pub mod decide;
pub mod observe;
pub mod status;
pub mod types;

pub use decide::{revision, spec_revision};
pub use types::*;

/// The controller's name in logs, metrics, Events and writes.
pub const CONTROLLER_NAME: &str = "bluegreenrelease";

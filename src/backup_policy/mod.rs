//! BackupPolicy: scheduled backup Jobs with verification, pruning, retention and an RPO.
//!
//! Rooms: [`types`] (the CRD), [`observe`] (the policy's Jobs as the cluster has them),
//! [`decide`] (pure: what to create, delete and record), [`status`] (the whole status,
//! conditions included), [`act`] (the Job writes), [`controller`] (wiring).
pub mod act;
pub mod controller;
pub mod decide;
pub mod observe;
pub mod status;
pub mod types;

pub use decide::{
    label_value, on_demand_job_name, prune_job_name, scheduled_job_name, verify_job_name,
};
pub use types::*;

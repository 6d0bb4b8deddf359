//! Runbook: a reusable, parameterised procedure. `observe` reads the caches, `decide` (pure)
//! turns run-now requests, the schedule and the history into runs to create, cancel and
//! prune, `status` builds the status, `act` writes, and `controller` wires them together.
pub mod act;
pub mod controller;
pub mod decide;
pub mod observe;
pub mod param_value;
pub mod status;
pub mod types;
pub use decide::{compile_alert_regex, new_run_of, run_now_name, scheduled_name};
pub use types::*;

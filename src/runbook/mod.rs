//! Runbook: types, triggers (run-now, schedule, history) and controller.
pub mod controller;
pub mod triggers;
pub mod types;
pub use types::*;

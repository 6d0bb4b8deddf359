//! Runbook: types and controller.
pub mod controller;
pub mod types;
pub use types::*;

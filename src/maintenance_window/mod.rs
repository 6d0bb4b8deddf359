//! MaintenanceWindow: types and controller.
pub mod controller;
pub mod lifecycle;
pub mod types;
pub use types::*;

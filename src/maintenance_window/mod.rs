//! MaintenanceWindow: types, the pure lifecycle and change planning, and the controller.
pub mod changes;
pub mod controller;
pub mod lifecycle;
pub mod types;
pub use types::*;

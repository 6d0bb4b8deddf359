//! BackupPolicy: types and controller.
pub mod controller;
pub mod plan;
pub mod types;
pub use types::*;

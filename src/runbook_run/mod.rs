//! RunbookRun: types, the journal state machine, step actions and the controller.
pub mod actions;
pub mod controller;
pub mod engine;
pub mod resolve;
pub mod types;
pub use types::*;

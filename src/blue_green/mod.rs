//! BlueGreenRelease: types and controller.
pub mod controller;
pub mod release;
pub mod types;
pub use types::*;

//! RunbookRun: one execution of a Runbook. The rooms: `types` (the CRD), `observe` (what the
//! cluster says), `decide` (the journal state machine: what comes next), `status` (the journal
//! and conditions that record it), `act` (the step executors, every write through
//! [`crate::write::Writer`]) and `controller` (the wiring). `resolve` substitutes a Runbook's
//! parameters into the steps a run executes.
pub mod act;
pub mod controller;
pub mod decide;
pub mod observe;
pub mod resolve;
pub mod status;
pub mod types;
pub use status::new_journal;
pub use types::*;

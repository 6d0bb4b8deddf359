//! Alerts start runs: a receiver for Alertmanager's webhook, and what each alert does to the
//! Runbooks whose `spec.triggers.alerts` match it.
//!
//! - [`payload`]: the webhook body (version 4).
//! - [`decide`]: pure: which trigger matches, the run a firing names, cooldowns, the record.
//! - [`act`]: records, creates and cancels through the [`crate::write::Writer`].
//! - [`receiver`]: the HTTP endpoint: bearer token, optional TLS, body cap, replies.

pub mod act;
pub mod decide;
pub mod payload;
pub mod receiver;

#[cfg(test)]
mod tests;

//! `kubectl runbook dashboard`: a local web page of what the operator keeps, served by the
//! plugin binary on 127.0.0.1 with the user's own kubeconfig and identity.
//!
//! Everything it shows was read, and every button it offers is sent, as that user: the API
//! server's RBAC and the chart's admission policies decide, exactly as for `kubectl runbook`.
//! Nothing runs in the cluster for it and it holds no credentials of its own.
//!
//! - [`view`]: what each page shows, built from observed objects and the clock (pure).
//! - [`calendar`]: the maintenance calendar, from the controller's own schedule code (pure).
//! - [`server`]: the HTTP server: pages, JSON, live updates (watch → Server-Sent Events),
//!   actions through [`crate::plugin::actions`], and the guards of a local server (Host
//!   check, per-process token on every POST).
//! - `assets`: the page, its style and script, embedded in the binary (no CDN, works offline).

pub mod assets;
pub mod calendar;
pub mod server;
pub mod view;

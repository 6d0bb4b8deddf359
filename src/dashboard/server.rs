//! The dashboard's HTTP server.
//!
//! Pages (the page's script routes by the URL fragment `#/<namespace>/<page>[/<name>]`, pages
//! `now`, `runs`, `calendar`, `releases`, `backups`; a run is `#/<ns>/runs/<name>`):
//!
//! - `GET /` the page (the POST token in `<meta name="dashboard-token">`), `/app.js`,
//!   `/app.css`, `/favicon.svg`.
//!
//! JSON (errors: `{"error": "<what went wrong, where, and what to do>"}` with the status the
//! API server gave, 403 and 404 included):
//!
//! - `GET /api/context`: `{user, namespace, namespaces}`: who the kubeconfig says you are,
//!   its default namespace, and the namespaces you may list (just the default one when you
//!   may not list namespaces).
//! - `GET /api/ns/{ns}/now`: [`view::Now`].
//! - `GET /api/ns/{ns}/runs?runbook=&phase=&trigger=`: [`view::Runs`].
//! - `GET /api/ns/{ns}/runs/{name}`: [`view::RunDetail`].
//! - `GET /api/ns/{ns}/calendar?span=month|week&date=YYYY-MM-DD&zone=own|<IANA>`:
//!   [`calendar::Calendar`] (defaults: month, today, own).
//! - `GET /api/ns/{ns}/releases`: `{releases: [view::ReleaseView], permissions}`.
//! - `GET /api/ns/{ns}/backups`: `{policies: [view::PolicyView], permissions}`.
//! - `GET /api/ns/{ns}/watch`: Server-Sent Events: `event: change` with data
//!   `{"kind": "RunbookRun", "name": "..."}` whenever the namespace's watch delivers a
//!   change of a run, Runbook, window, release or policy (the page then fetches its view
//!   again), and `event: ready` once the namespace's caches are filled.
//!
//! Actions (POST, JSON body, header `X-Dashboard-Token: <token>` required; answer
//! `{"message": "..."}`, and `"name"` for a new run):
//!
//! - `/api/ns/{ns}/runs/{name}/approve` and `/reject`, body `{"step": "<approval step>"}`;
//!   `/cancel`, `/rerun` (a new run of the same Runbook with the same parameters), body `{}`.
//! - `/api/ns/{ns}/releases/{name}/promote` and `/abort`, body `{"revision": "<revision>"}`:
//!   refused when the release moved on to another revision.
//! - `/api/ns/{ns}/backups/{name}/backup-now`, body `{}`.
//!
//! Guards of a server on 127.0.0.1: the `Host` header must be the address the server printed
//! (`127.0.0.1:<port>` or `localhost:<port>`), which stops DNS-rebinding pages; every POST
//! must carry the token, which a page of another origin cannot read; answers are
//! `no-store` with a content security policy allowing only the server's own assets.

use crate::dashboard::{calendar, view};

/// Placeholder until the server lands.
pub fn _contract(_: Option<view::Now>, _: Option<calendar::Calendar>) {}

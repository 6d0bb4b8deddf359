//! Carries out what alerts decided: records in `status.alerts`, creates runs, cancels waiting
//! ones. Every write goes through the [`Writer`], as the operator (starting a run is the
//! operator's own work; the run's steps act as the Runbook's identity).
//!
//! Decisions about one Runbook are taken one at a time in this process (a lock per Runbook),
//! and each record is written with the resourceVersion it was decided on: a second replica's
//! record, or the controller's status write, in between makes the write fail with a conflict,
//! and the decision is taken again on a fresh read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kube::api::Patch;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::decide::{self, Outcome};
use super::payload::{Alert, Notification};
use crate::context::Context;
use crate::runbook::Runbook;
use crate::runbook_run::{RunPhase, RunbookRun};
use crate::validation::Note;
use crate::well_known::CANCEL;
use crate::write::{WriteError, Writer};

/// Controller name of the receiver's writes in metrics and Events.
pub const NAME: &str = "alerts";

/// Decisions retried after a conflict before the request fails (Alertmanager retries it).
const ATTEMPTS: usize = 5;

/// Event reason: an alert started a run.
pub const REASON_STARTED: &str = "AlertStartedRun";
/// Event reason: an alert's firing had already started its run.
pub const REASON_DEDUPLICATED: &str = "AlertDeduplicated";
/// Event reason: the cooldown suppressed an alert.
pub const REASON_COOLED_DOWN: &str = "AlertCooledDown";
/// Event reason: a resolved alert cancelled its waiting run.
pub const REASON_CANCELLED: &str = "AlertResolvedCancelled";
/// Event reason (Warning): an alert matched an invalid Runbook.
pub const REASON_INVALID: &str = "AlertIgnoredInvalidSpec";

/// A write the alert receiver could not make; Alertmanager gets a 500 and retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Recording in `status.alerts`.
    #[error("recording alert {alert:?} on Runbook {namespace}/{runbook}: {source}")]
    Record {
        /// Alert name.
        alert: String,
        /// Runbook namespace.
        namespace: String,
        /// Runbook name.
        runbook: String,
        /// The refusal.
        #[source]
        source: WriteError,
    },
    /// Creating the run.
    #[error("starting run {namespace}/{run} for alert {alert:?}: {source}")]
    Create {
        /// Alert name.
        alert: String,
        /// Namespace.
        namespace: String,
        /// Run name.
        run: String,
        /// The refusal.
        #[source]
        source: WriteError,
    },
    /// Cancelling a waiting run.
    #[error("cancelling run {namespace}/{run} for resolved alert {alert:?}: {source}")]
    Cancel {
        /// Alert name.
        alert: String,
        /// Namespace.
        namespace: String,
        /// Run name.
        run: String,
        /// The refusal.
        #[source]
        source: WriteError,
    },
    /// Reading a Runbook or a run afresh.
    #[error("reading {what}: {source}")]
    Read {
        /// `Runbook ns/name` or `RunbookRun ns/name`.
        what: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Conflicts on every attempt.
    #[error(
        "Runbook {namespace}/{runbook} changed under {ATTEMPTS} attempts to record alert {alert:?}; Alertmanager will retry"
    )]
    Contended {
        /// Alert name.
        alert: String,
        /// Runbook namespace.
        namespace: String,
        /// Runbook name.
        runbook: String,
    },
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Record { source, .. }
            | Error::Create { source, .. }
            | Error::Cancel { source, .. } => source.metric_label(),
            Error::Read { source, .. } => crate::write::status_label(source),
            Error::Contended { .. } => "conflict",
        }
    }
}

/// What one alert did, for the reply and `kubectl runbook alerts`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The alert's name.
    pub alert: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Its `namespace` label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One entry per matching Runbook; empty: no Runbook matched.
    pub runbooks: Vec<RunbookOutcome>,
}

/// What an alert did to one Runbook.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunbookOutcome {
    /// `namespace/name`.
    pub runbook: String,
    /// started, deduplicated, cooled_down, ignored, cancel_waiting, invalid.
    pub outcome: &'static str,
    /// The run started, found, or cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Why, for a suppression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One Runbook's lock, guarding the newest copy of it this process wrote.
type Newest = Arc<tokio::sync::Mutex<Option<Arc<Runbook>>>>;

/// The receiver's state: the Runbooks it matches against and a lock per Runbook.
pub struct Alerts {
    ctx: Arc<Context>,
    runbooks: Vec<Store<Runbook>>,
    /// Per Runbook uid: the lock, and the newest copy this process wrote (the cache may lag
    /// behind it; a conflict replaces it with a fresh read).
    state: Mutex<HashMap<String, Newest>>,
    /// Runs (`namespace/name`) this process created or found to exist: a repeat of their
    /// firing is answered without sending the create again. Cleared when it reaches
    /// [`MAX_KNOWN_RUNS`]; a run deleted since stays "known", which is what the firing record
    /// says too (a firing whose run was removed starts nothing).
    known_runs: Mutex<std::collections::HashSet<String>>,
}

/// Most runs remembered in [`Alerts::known_runs`] before the set starts afresh.
const MAX_KNOWN_RUNS: usize = 10_000;

impl Alerts {
    /// The receiver's state over the Runbook caches of every watched scope.
    pub fn new(ctx: Arc<Context>, runbooks: Vec<Store<Runbook>>) -> Self {
        Self {
            ctx,
            runbooks,
            state: Mutex::default(),
            known_runs: Mutex::default(),
        }
    }

    fn known(&self, run: &str) -> bool {
        self.known_runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(run)
    }

    fn remember(&self, run: String) {
        let mut known = self.known_runs.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_KNOWN_RUNS {
            known.clear();
        }
        known.insert(run);
    }

    /// The Runbooks with alert triggers `alert` matches, sorted by namespace and name.
    fn candidates(&self, alert: &Alert) -> Vec<Arc<Runbook>> {
        let mut found: Vec<Arc<Runbook>> = self
            .runbooks
            .iter()
            .flat_map(|store| store.state())
            .filter(|rb| decide::matching_trigger(rb, alert).is_some())
            .collect();
        found.sort_by_key(|rb| (rb.namespace(), rb.name_any()));
        found
    }

    fn lock(&self, uid: &str) -> Newest {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Forget Runbooks no cache holds any more, so the map does not outgrow them.
        if state.len() > 4 * self.runbooks.iter().map(|s| s.state().len()).sum::<usize>() + 64 {
            let live: std::collections::HashSet<String> = self
                .runbooks
                .iter()
                .flat_map(|s| s.state())
                .filter_map(|rb| rb.metadata.uid.clone())
                .collect();
            state.retain(|uid, _| live.contains(uid));
        }
        state.entry(uid.to_owned()).or_default().clone()
    }

    /// Handles every alert of `notification`; an error means some write failed and the
    /// whole notification should be sent again (what was done stays done).
    pub async fn handle(&self, notification: &Notification) -> Result<Vec<Report>, Error> {
        let mut reports = Vec::with_capacity(notification.alerts.len());
        for alert in &notification.alerts {
            let mut report = Report {
                alert: alert.name().to_owned(),
                status: alert.status.clone(),
                fingerprint: alert.fingerprint.clone(),
                namespace: alert.namespace().map(str::to_owned),
                runbooks: Vec::new(),
            };
            for rb in self.candidates(alert) {
                let outcome = self.one(&rb, alert).await;
                self.ctx
                    .metrics
                    .count_alert(outcome.as_ref().map_or("failed", |o| o.outcome));
                report.runbooks.push(outcome?);
            }
            if report.runbooks.is_empty() {
                self.ctx.metrics.count_alert("no_match");
            }
            reports.push(report);
        }
        Ok(reports)
    }

    /// What `alert` does to `cached`. With a cooldown the firing is recorded first (the
    /// record is what lets one firing of the group through); without one the run's name is
    /// claim enough, so the run is created first, one write on the request's path, and the
    /// firing recorded after it (a retry after a stop in between finds the run and records).
    async fn one(&self, cached: &Arc<Runbook>, alert: &Alert) -> Result<RunbookOutcome, Error> {
        let writer = Writer::new(&self.ctx, NAME);
        if let Some((_, trigger)) = decide::matching_trigger(cached, alert)
            && trigger.cooldown.is_none()
        {
            let decision = decide::decide(cached, trigger, alert, Timestamp::now());
            let starts = matches!(decision.outcome, Outcome::Start(_));
            let result = self
                .carry_out(&writer, cached, alert, decision.outcome)
                .await?;
            if starts && decision.record.is_some() {
                self.record(&writer, cached, alert).await?;
            }
            return Ok(result);
        }
        match self.record(&writer, cached, alert).await? {
            Some((rb, decision)) => self.carry_out(&writer, &rb, alert, decision.outcome).await,
            // The Runbook changed and no longer matches.
            None => Ok(RunbookOutcome {
                runbook: format!(
                    "{}/{}",
                    cached.namespace().unwrap_or_default(),
                    cached.name_any()
                ),
                outcome: "no_match",
                run: None,
                reason: None,
            }),
        }
    }

    /// Decides on the newest copy of `cached` known and writes the record the decision calls
    /// for, deciding again on a fresh read after a conflict; the Runbook as written and the
    /// decision, or `None` when the Runbook no longer matches.
    async fn record(
        &self,
        writer: &Writer<'_>,
        cached: &Arc<Runbook>,
        alert: &Alert,
    ) -> Result<Option<(Arc<Runbook>, decide::Decision)>, Error> {
        let uid = cached.metadata.uid.clone().unwrap_or_default();
        let lock = self.lock(&uid);
        let mut newest = lock.lock().await;
        let namespace = cached.namespace().unwrap_or_default();
        let api: Api<Runbook> = writer.api(&namespace);
        // The cache wins once it has caught up with (or passed) what this process wrote.
        let mut rb = match newest.as_ref() {
            Some(mine) if mine.resource_version() != cached.resource_version() => mine.clone(),
            _ => cached.clone(),
        };
        for _ in 0..ATTEMPTS {
            let Some((_, trigger)) = decide::matching_trigger(&rb, alert) else {
                return Ok(None);
            };
            let decision = decide::decide(&rb, trigger, alert, Timestamp::now());
            let Some(record) = &decision.record else {
                return Ok(Some((rb, decision)));
            };
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": rb.resource_version()},
                "status": {"alerts": record},
            });
            match writer
                .patch_status(&api, &rb.name_any(), &Patch::Merge(&patch), "record")
                .await
            {
                Ok(written) => {
                    let written = Arc::new(written);
                    *newest = Some(written.clone());
                    return Ok(Some((written, decision)));
                }
                Err(err) if err.conflict() => {
                    let fresh = api.get(&rb.name_any()).await.map_err(|e| Error::Read {
                        what: format!("Runbook {namespace}/{}", rb.name_any()),
                        source: Box::new(e),
                    })?;
                    rb = Arc::new(fresh);
                    *newest = Some(rb.clone());
                }
                Err(source) => {
                    return Err(Error::Record {
                        alert: alert.name().to_owned(),
                        namespace,
                        runbook: cached.name_any(),
                        source,
                    });
                }
            }
        }
        Err(Error::Contended {
            alert: alert.name().to_owned(),
            namespace,
            runbook: cached.name_any(),
        })
    }

    async fn carry_out(
        &self,
        writer: &Writer<'_>,
        rb: &Runbook,
        alert: &Alert,
        outcome: Outcome,
    ) -> Result<RunbookOutcome, Error> {
        let namespace = rb.namespace().unwrap_or_default();
        let runs: Api<RunbookRun> = writer.api(&namespace);
        let mut result = RunbookOutcome {
            runbook: format!("{namespace}/{}", rb.name_any()),
            outcome: outcome.label(),
            run: None,
            reason: None,
        };
        let firing = format!("{} (firing {})", alert.name(), alert.firing());
        let note = match outcome {
            Outcome::Start(run) => {
                let name = run.name_any();
                result.run = Some(name.clone());
                let key = format!("{namespace}/{name}");
                let created = if self.known(&key) {
                    Err(None)
                } else {
                    writer.create(&runs, &run, "create").await.map_err(Some)
                };
                // Created now, or found to exist: either way it exists.
                let exists = match &created {
                    Ok(_) => true,
                    Err(Some(err)) => err.already_exists(),
                    Err(None) => false,
                };
                if exists {
                    self.remember(key);
                }
                match created {
                    Ok(_) => Some(normal(
                        REASON_STARTED,
                        format!("alert {firing} started run {name}"),
                    )),
                    Err(Some(source)) if !exists => {
                        return Err(Error::Create {
                            alert: alert.name().to_owned(),
                            namespace,
                            run: name,
                            source,
                        });
                    }
                    // Known to this process, or AlreadyExists: created before.
                    Err(_) => {
                        result.outcome = "deduplicated";
                        Some(normal(
                            REASON_DEDUPLICATED,
                            format!("alert {firing} already started run {name}"),
                        ))
                    }
                }
            }
            Outcome::Deduplicated { run } => {
                result.run = Some(run.clone());
                Some(normal(
                    REASON_DEDUPLICATED,
                    format!("alert {firing} already started run {run}"),
                ))
            }
            Outcome::CooledDown { reason } => {
                result.reason = Some(reason.clone());
                Some(normal(
                    REASON_COOLED_DOWN,
                    format!("alert {firing} started no run: {reason}"),
                ))
            }
            Outcome::Ignored => None,
            Outcome::Invalid => Some(Note {
                type_: EventType::Warning,
                reason: REASON_INVALID,
                message: format!(
                    "alert {firing} started no run: the Runbook's spec is invalid (see its Stalled condition)"
                ),
            }),
            Outcome::CancelWaiting { run } => {
                result.run = Some(run.clone());
                self.cancel_waiting(writer, &runs, &run, alert, &mut result)
                    .await?
            }
        };
        if let Some(note) = note {
            crate::runtime::publish_note(&self.ctx, NAME, rb, &note).await;
        }
        Ok(result)
    }

    /// Cancels `run` if it has not started a step or waits for an approval or a window.
    async fn cancel_waiting(
        &self,
        writer: &Writer<'_>,
        runs: &Api<RunbookRun>,
        run: &str,
        alert: &Alert,
        result: &mut RunbookOutcome,
    ) -> Result<Option<Note>, Error> {
        let error = |source| Error::Cancel {
            alert: alert.name().to_owned(),
            namespace: runs_namespace(runs),
            run: run.to_owned(),
            source,
        };
        let found = runs.get_opt(run).await.map_err(|e| Error::Read {
            what: format!("RunbookRun {}/{run}", runs_namespace(runs)),
            source: Box::new(e),
        })?;
        let waiting = found.as_ref().is_some_and(|r| {
            matches!(
                r.status.as_ref().and_then(|s| s.phase),
                None | Some(
                    RunPhase::Pending | RunPhase::WaitingForWindow | RunPhase::WaitingForApproval
                )
            )
        });
        if !waiting {
            result.outcome = "ignored";
            return Ok(None);
        }
        let patch = serde_json::json!({"metadata": {"annotations": {CANCEL: format!("alert {} resolved", alert.name())}}});
        match writer
            .patch(runs, run, &Patch::Merge(&patch), "cancel")
            .await
        {
            Ok(_) => Ok(Some(normal(
                REASON_CANCELLED,
                format!(
                    "alert {} (firing {}) resolved: cancelled waiting run {run}",
                    alert.name(),
                    alert.firing()
                ),
            ))),
            Err(err) if err.not_found() => {
                result.outcome = "ignored";
                Ok(None)
            }
            Err(source) => Err(error(source)),
        }
    }
}

fn runs_namespace(api: &Api<RunbookRun>) -> String {
    api.resource_url()
        .split('/')
        .skip_while(|p| *p != "namespaces")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn normal(reason: &'static str, message: String) -> Note {
    Note {
        type_: EventType::Normal,
        reason,
        message,
    }
}

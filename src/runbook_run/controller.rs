//! RunbookRun controller: starts a run (resolving its Runbook), executes its steps one at a
//! time, and records every transition in status, the run's journal.
//!
//! Crash safety comes from two rules. Every status write carries the resourceVersion the
//! reconcile read, so a reconcile working from a stale copy fails instead of acting twice.
//! And every side effect is preceded by a recorded intent and is idempotent for it (see
//! [`super::actions`]).

use crate::well_known::{APPROVE, CANCEL, FIELD_MANAGER, FINALLY_FINALIZER, RUNBOOK_LABEL};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::actions::{self, Act, Exec};
use super::engine::{self, Cursor, phase};
use super::resolve;
use super::types::{RunMode, RunbookRun, RunbookRunStatus, StepPhase};
use crate::conditions::{self, Desired, READY, RECONCILING, STALLED, Status};
use crate::context::Context;
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook::Runbook;
use crate::runtime::{self, Cache, Shutdown};

/// Controller name in logs and metrics.
pub const NAME: &str = "runbookrun";
/// Condition type: Unknown while running, then True or False.
pub const SUCCEEDED: &str = "Succeeded";

/// Most journal transitions one reconcile makes before yielding to other objects.
const STEPS_PER_RECONCILE: usize = 64;

/// What can go wrong while reconciling a RunbookRun (retried; step failures are recorded).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A write the API server refused or failed, naming the request.
    #[error(transparent)]
    Write(#[from] crate::write::WriteError),
    /// A step's side effect failed in a way a retry may fix.
    #[error(transparent)]
    Action(#[from] actions::Error),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(err) => crate::write::status_label(err),
            Error::Write(err) => err.metric_label(),
            Error::Action(err) => err.metric_label(),
        }
    }
}

struct State {
    ctx: Arc<Context>,
    windows: Cache<MaintenanceWindow>,
    http: reqwest::Client,
}

/// How long after a status write conflict (409) a run is looked at again if no newer version
/// has arrived by watch before then.
const CONFLICT_FALLBACK: Duration = Duration::from_secs(5);

/// Runs the RunbookRun controller until shutdown; `synced` fires once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<RunbookRun>(&ctx, NAME);
    let (runbooks, runbook_stream) = runtime::watch_metadata::<Runbook>(&ctx);
    let (windows, window_stream) = runtime::watch_decoded::<MaintenanceWindow>(&ctx, NAME);
    let runs = store.store.clone();
    let by_runbook = runs.clone();
    let waiting_for_window = runs.clone();
    let on_workload = runs.clone();
    let on_statefulset = runs.clone();
    let on_policy = runs.clone();
    let (policies, policy_stream) =
        runtime::watch_metadata::<crate::backup_policy::BackupPolicy>(&ctx);
    let jobs: Api<Job> = runtime::scoped_api(&ctx);
    let deployments: Api<PartialObjectMeta<Deployment>> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let statefulsets: Api<PartialObjectMeta<StatefulSet>> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::for_stream(runtime::queued(&ctx, NAME, stream), runs)
        .owns(
            jobs,
            watcher::Config::default().labels("ops.runbook.dev/run"),
        )
        .watches_stream(runbook_stream, move |runbook| {
            let name = runbook.name_any();
            runtime::referrers(&by_runbook, runbook.namespace(), |run| {
                run.spec.runbook_ref.name == name
                    && run
                        .status
                        .as_ref()
                        .is_none_or(|s| s.resolved_steps.is_empty())
            })
        })
        .watches_stream(window_stream, move |_window: MaintenanceWindow| {
            let namespace = _window.namespace();
            runtime::referrers(&waiting_for_window, namespace, |run| {
                run.status.as_ref().and_then(|s| s.phase.as_deref())
                    == Some(phase::WAITING_FOR_WINDOW)
            })
        })
        .watches_stream(
            watcher(deployments, watcher::Config::default())
                .default_backoff()
                .touched_objects(),
            move |d| {
                targets(
                    &on_workload,
                    d.namespace(),
                    &format!("Deployment/{}", d.name_any()),
                )
            },
        )
        .watches_stream(
            watcher(statefulsets, watcher::Config::default())
                .default_backoff()
                .touched_objects(),
            move |s| {
                targets(
                    &on_statefulset,
                    s.namespace(),
                    &format!("StatefulSet/{}", s.name_any()),
                )
            },
        )
        // A backup step waits on its policy's history.
        .watches_stream(policy_stream, move |p| {
            targets(
                &on_policy,
                p.namespace(),
                &format!("BackupPolicy/{}", p.name_any()),
            )
        });
    runtime::report_synced(
        vec![
            runtime::listed(&store),
            runtime::listed(&runbooks),
            runtime::listed(&windows),
            runtime::listed(&policies),
        ],
        synced,
    );
    let http = reqwest::Client::builder()
        .user_agent(concat!("runbook-operator/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let state = Arc::new(State {
        ctx: ctx.clone(),
        windows,
        http,
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |run, _| {
            let state = state.clone();
            async move {
                match reconcile(run, state).await {
                    // Our cached copy was older than the object (often our own last write):
                    // nothing was done on the stale copy. The watch brings the newer version
                    // and that triggers the next reconcile; the requeue is only a fallback.
                    // Retrying on a timer instead would, when the API server is slow and the
                    // watch lags, send the same doomed write again every few hundred ms.
                    Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 => {
                        tracing::debug!(
                            "status write conflicted with a newer version; waiting for it"
                        );
                        Ok(Action::requeue(CONFLICT_FALLBACK))
                    }
                    other => other,
                }
            }
        },
        shutdown,
    )
    .await;
}

/// Runs whose step in progress acts on `target` (e.g. `Deployment/app`).
fn targets(
    store: &kube::runtime::reflector::Store<RunbookRun>,
    namespace: Option<String>,
    target: &str,
) -> Vec<ObjectRef<RunbookRun>> {
    runtime::referrers(store, namespace, |run| {
        run.status.as_ref().is_some_and(|s| {
            !phase::is_finished(s.phase.as_deref())
                && s.steps
                    .iter()
                    .any(|e| e.phase == StepPhase::Running && e.target.as_deref() == Some(target))
        })
    })
}

/// Writes status, requiring that nobody wrote since `resource_version` (a stale copy must
/// not act twice); updates `resource_version` to the written one.
async fn write_status(
    ctx: &Context,
    run: &RunbookRun,
    status: &RunbookRunStatus,
    resource_version: &mut Option<String>,
) -> Result<(), Error> {
    let api: Api<RunbookRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": RunbookRun::api_version(&()),
        "kind": RunbookRun::kind(&()),
        "metadata": {"name": run.name_any(), "resourceVersion": resource_version},
        "status": status,
    });
    let written = api
        .patch_status(
            &run.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.metrics.count_write(NAME, "status");
    *resource_version = written.resource_version();
    Ok(())
}

/// Sets the finalizer and the Runbook label (start), or removes the finalizer (end).
async fn set_metadata(
    ctx: &Context,
    run: &RunbookRun,
    finalizer: bool,
    resource_version: &mut Option<String>,
) -> Result<(), Error> {
    let mut finalizers: Vec<String> = run
        .finalizers()
        .iter()
        .filter(|f| *f != FINALLY_FINALIZER)
        .cloned()
        .collect();
    if finalizer {
        finalizers.push(FINALLY_FINALIZER.into());
    }
    let mut metadata = json!({"finalizers": finalizers, "resourceVersion": resource_version});
    if finalizer {
        metadata["labels"] = json!({RUNBOOK_LABEL: run.spec.runbook_ref.name});
    }
    let api: Api<RunbookRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    match api
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": metadata})),
        )
        .await
    {
        Ok(written) => {
            ctx.metrics.count_write(NAME, "metadata");
            *resource_version = written.resource_version();
            Ok(())
        }
        // Already gone: nothing left to hold.
        Err(kube::Error::Api(s)) if s.code == 404 && !finalizer => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn now_time(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// The kstatus conditions and Succeeded for where the run stands.
fn run_conditions(
    status: &RunbookRunStatus,
    generation: Option<i64>,
    now: &Time,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let phase = status.phase.as_deref().unwrap_or(phase::PENDING);
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == SUCCEEDED)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let (succeeded, reason, text) = desired_succeeded(status);
    let finished = phase::is_finished(Some(phase));
    let invalid = matches!(reason.as_str(), "InvalidSpec" | "RunbookNotFound");
    let desired = vec![
        Desired::new(
            READY,
            if finished && succeeded != Status::True {
                Status::False
            } else {
                Status::True
            },
            if finished {
                reason.clone()
            } else {
                phase.to_owned()
            },
            text.clone(),
        ),
        Desired::new(
            RECONCILING,
            if finished {
                Status::False
            } else {
                Status::True
            },
            phase,
            if finished {
                "finished".to_owned()
            } else {
                text.clone()
            },
        ),
        Desired::new(
            STALLED,
            if invalid { Status::True } else { Status::False },
            if invalid {
                reason.clone()
            } else {
                "Progressing".to_owned()
            },
            if invalid { text.clone() } else { String::new() },
        ),
        Desired::new(
            SUCCEEDED,
            succeeded,
            reason,
            if text.is_empty() { message } else { text },
        ),
    ];
    conditions::merge(&status.conditions, &desired, generation, now)
}

/// The Succeeded condition's status, reason and message, from the journal.
fn desired_succeeded(status: &RunbookRunStatus) -> (Status, String, String) {
    let phase = status.phase.as_deref().unwrap_or(phase::PENDING);
    let previous = status.conditions.iter().find(|c| c.type_ == SUCCEEDED);
    match phase {
        phase::SUCCEEDED | phase::FAILED | phase::CANCELLED => {
            let prev = previous.cloned();
            let status_ = if phase == phase::SUCCEEDED {
                Status::True
            } else {
                Status::False
            };
            (
                status_,
                prev.as_ref()
                    .map(|c| c.reason.clone())
                    .unwrap_or_else(|| phase.to_owned()),
                prev.map(|c| c.message).unwrap_or_default(),
            )
        }
        // The message naming the window it waits for was set when the run was held.
        phase::WAITING_FOR_WINDOW => (
            Status::Unknown,
            phase.to_owned(),
            previous
                .map(|c| c.message.clone())
                .unwrap_or_else(|| format!("phase {phase}")),
        ),
        _ => {
            let current = status.current_step.clone().unwrap_or_default();
            let message = status
                .steps
                .iter()
                .find(|s| s.name == current)
                .and_then(|s| s.message.clone())
                .unwrap_or_else(|| format!("phase {phase}"));
            (Status::Unknown, phase.to_owned(), message)
        }
    }
}

/// Ends the run: phase, completion time and the Succeeded reason.
fn finish(status: &mut RunbookRunStatus, phase_: &str, reason: &str, message: String, now: &Time) {
    status.phase = Some(phase_.to_owned());
    status.completion_time = Some(now.clone());
    status.current_step = None;
    // The Succeeded condition carries the reason; run_conditions keeps it.
    let succeeded = if phase_ == phase::SUCCEEDED {
        Status::True
    } else {
        Status::False
    };
    status.conditions = conditions::merge(
        &status.conditions,
        &[Desired::new(SUCCEEDED, succeeded, reason, message)],
        None,
        now,
    );
}

async fn reconcile(run: Arc<RunbookRun>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let mut status = run.status.clone().unwrap_or_default();
    let mut rv = run.resource_version();
    let namespace = run.namespace().unwrap_or_default();
    let has_finalizer = run.finalizers().iter().any(|f| f == FINALLY_FINALIZER);

    if phase::is_finished(status.phase.as_deref()) {
        if has_finalizer {
            set_metadata(ctx, &run, false, &mut rv).await?;
        }
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let now_t = now_time(now);
    let cancel_seen =
        run.annotations().contains_key(CANCEL) || run.metadata.deletion_timestamp.is_some();

    if status.resolved_steps.is_empty() {
        if run.metadata.deletion_timestamp.is_some() {
            if has_finalizer {
                set_metadata(ctx, &run, false, &mut rv).await?;
            }
            return Ok(Action::await_change());
        }
        if cancel_seen {
            // Cancelled before it started (e.g. while held for a window): nothing ran.
            status.cancel_requested_at = Some(now_t.clone());
            let message = "cancelled before it started; no step ran".to_owned();
            return end_before_start(
                ctx,
                &run,
                status,
                rv,
                &now_t,
                (phase::CANCELLED, "Cancelled"),
                message,
            )
            .await;
        }
        return start(&run, &state, status, rv, now_t).await;
    }

    if cancel_seen && status.cancel_requested_at.is_none() {
        status.cancel_requested_at = Some(now_t.clone());
        publish(
            ctx,
            &run,
            EventType::Normal,
            "Cancelling",
            "cancel requested; stopping the current step, then running finally steps".into(),
        )
        .await;
    }
    let cancelled = status.cancel_requested_at.is_some();
    let approved = run.annotations().get(APPROVE).cloned();
    let exec = Exec {
        client: &ctx.client,
        http: &state.http,
        namespace: &namespace,
        run_name: &run.name_any(),
        run_uid: run.metadata.uid.as_deref().unwrap_or_default(),
        plan: run.spec.mode == Some(RunMode::Plan),
        approved: approved.as_deref(),
        now,
    };
    // Intents recorded by this reconcile: only these may be acted on without doubt.
    let mut fresh: HashSet<(usize, i32)> = HashSet::new();
    let written = run.status.clone().unwrap_or_default();
    let mut last_written = written;
    let mut action = Action::await_change();

    for _ in 0..STEPS_PER_RECONCILE {
        let cursor = engine::advance(&mut status, cancelled, &now_t);
        let Cursor::Step(index) = cursor else {
            let (phase_, reason, message) = engine::outcome(&status, cancelled);
            finish(&mut status, phase_, reason, message.clone(), &now_t);
            status.conditions = run_conditions(&status, run.metadata.generation, &now_t);
            write_status(ctx, &run, &status, &mut rv).await?;
            // Counted once the terminal phase is written: the write carries the
            // resourceVersion read, so a stale copy fails before it could count twice.
            ctx.metrics
                .count_run(&namespace, &run.spec.runbook_ref.name, phase_);
            let kind = if phase_ == phase::SUCCEEDED {
                EventType::Normal
            } else {
                EventType::Warning
            };
            publish(ctx, &run, kind, phase_, message).await;
            info!(run = %run.name_any(), namespace, phase = phase_, "run finished");
            set_metadata(ctx, &run, false, &mut rv).await?;
            return Ok(Action::await_change());
        };
        let Some(step) = engine::step_at(&status, index).cloned() else {
            break;
        };
        status.current_step = Some(step.name.clone());
        let is_finally = index >= status.resolved_steps.len();
        let phase_before = status.steps[index].phase;
        let entry = &mut status.steps[index];
        let outcome = step_once(
            &exec, &step, entry, cancelled, &mut fresh, index, is_finally,
        )
        .await?;
        let transition = match outcome {
            StepOutcome::Record => None,
            StepOutcome::Transition(reason, message, kind) => Some((reason, message, kind)),
            StepOutcome::Wait {
                message,
                recheck,
                approval,
            } => {
                status.phase = Some(
                    if approval {
                        phase::WAITING_FOR_APPROVAL
                    } else {
                        phase::RUNNING
                    }
                    .into(),
                );
                status.steps[index].message = Some(message);
                if let Some(after) = recheck {
                    action = Action::requeue(after.max(Duration::from_millis(200)));
                }
                status.conditions = run_conditions(&status, run.metadata.generation, &now_t);
                if status != last_written {
                    write_status(ctx, &run, &status, &mut rv).await?;
                }
                return Ok(action);
            }
        };
        status.phase = Some(phase::RUNNING.into());
        status.conditions = run_conditions(&status, run.metadata.generation, &now_t);
        write_status(ctx, &run, &status, &mut rv).await?;
        last_written = status.clone();
        if let Some((result, took)) = step_finished(phase_before, &status.steps[index], now) {
            ctx.metrics
                .observe_step(step.action_name().unwrap_or("unknown"), result, took);
        }
        if let Some((reason, message, kind)) = transition {
            publish(
                ctx,
                &run,
                kind,
                reason,
                format!("step {:?}: {message}", step.name),
            )
            .await;
        }
    }
    // Many quick steps: let other runs have a turn, then continue.
    Ok(Action::requeue(Duration::from_millis(10)))
}

/// The final phase of a step that `entry` shows has just ended (it was `before` when the
/// reconcile picked it up), and how long it ran: from its first attempt's start, to the
/// sub-second when the journal has that attempt's `attemptStartedAt`, to `now`, the instant
/// the reconcile recorded its end. `None` while it runs, and for a step that never started.
fn step_finished(
    before: StepPhase,
    entry: &super::types::StepStatus,
    now: Timestamp,
) -> Option<(&'static str, Duration)> {
    let result = match entry.phase {
        _ if entry.phase == before => return None,
        StepPhase::Succeeded => "Succeeded",
        StepPhase::Failed => "Failed",
        StepPhase::Skipped => "Skipped",
        StepPhase::Pending | StepPhase::Running => return None,
    };
    let first = entry.start_time.as_ref()?.0;
    // attemptStartedAt is the start of the latest attempt: the step's own start only on
    // the first one.
    let started = actions::attempt_start(entry)
        .filter(|t| entry.attempts <= 1 && *t >= first)
        .unwrap_or(first);
    let took = Duration::try_from(now.duration_since(started)).unwrap_or_default();
    Some((result, took))
}

/// What one call on the current step produced.
enum StepOutcome {
    /// New intent or attempt bookkeeping to record.
    Record,
    /// The step changed phase: Event reason, message and type.
    Transition(&'static str, String, EventType),
    /// Nothing to record; wait.
    Wait {
        message: String,
        recheck: Option<Duration>,
        approval: bool,
    },
}

/// Drives one journal entry one notch: start an attempt, honour cancel/timeout/retry, or call
/// the action.
async fn step_once(
    exec: &Exec<'_>,
    step: &crate::step::Step,
    entry: &mut super::types::StepStatus,
    cancelled: bool,
    fresh: &mut HashSet<(usize, i32)>,
    index: usize,
    is_finally: bool,
) -> Result<StepOutcome, Error> {
    let now_t = now_time(exec.now);
    if entry.phase == StepPhase::Pending {
        entry.phase = StepPhase::Running;
        entry.attempts = 1;
        entry.start_time = Some(now_t);
        entry
            .outputs
            .insert("attemptStartedAt".into(), exec.now.to_string());
        return Ok(StepOutcome::Transition(
            "StepStarted",
            "started".into(),
            EventType::Normal,
        ));
    }
    // Finally steps run to the end even when the run is cancelled.
    if cancelled && !is_finally {
        actions::stop(exec, entry).await?;
        return Ok(fail(
            entry,
            "Cancelled",
            "cancelled while running".into(),
            &now_t,
        ));
    }
    if let Some(retry_at) = entry
        .outputs
        .get("retryAt")
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        if exec.now < retry_at {
            return Ok(StepOutcome::Wait {
                message: entry.message.clone().unwrap_or_default(),
                recheck: Some(actions::until(exec.now, retry_at)),
                approval: false,
            });
        }
        entry.outputs.remove("retryAt");
        entry.attempts += 1;
        entry
            .outputs
            .insert("attemptStartedAt".into(), exec.now.to_string());
        return Ok(StepOutcome::Record);
    }
    let timeout = step.timeout.as_ref().and_then(|t| t.parse().ok());
    let started = actions::attempt_start(entry).unwrap_or(exec.now);
    if let Some(limit) = timeout {
        let deadline = started + actions::signed(limit);
        if exec.now >= deadline {
            actions::stop(exec, entry).await?;
            entry.outputs.insert("reason".into(), "TimedOut".into());
            return Ok(retry_or_fail(
                step,
                entry,
                "TimedOut",
                format!(
                    "timed out after {}",
                    step.timeout
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
                true,
                exec.now,
            ));
        }
    }
    let key = (index, entry.attempts);
    let act = actions::act(exec, step, entry, fresh.contains(&key)).await?;
    Ok(match act {
        Act::Record => {
            fresh.insert(key);
            StepOutcome::Record
        }
        Act::Succeeded(message) => {
            entry.phase = StepPhase::Succeeded;
            entry.completion_time = Some(now_t);
            entry.message = Some(message.clone());
            entry.outputs.remove("reason");
            StepOutcome::Transition("StepSucceeded", message, EventType::Normal)
        }
        Act::Skipped(message) => {
            entry.phase = StepPhase::Skipped;
            entry.completion_time = Some(now_t);
            entry.message = Some(message.clone());
            entry.outputs.insert("reason".into(), "Plan".into());
            StepOutcome::Transition("StepSkipped", message, EventType::Normal)
        }
        Act::Failed {
            reason,
            message,
            retryable,
        } => retry_or_fail(step, entry, reason, message, retryable, exec.now),
        Act::Wait {
            message,
            recheck,
            approval,
        } => {
            // The step timeout bounds every wait.
            let recheck = match timeout {
                Some(limit) => {
                    let left = actions::until(exec.now, started + actions::signed(limit));
                    Some(recheck.map_or(left, |r| r.min(left)))
                }
                None => recheck,
            };
            StepOutcome::Wait {
                message,
                recheck,
                approval,
            }
        }
    })
}

fn fail(
    entry: &mut super::types::StepStatus,
    reason: &'static str,
    message: String,
    now: &Time,
) -> StepOutcome {
    entry.phase = StepPhase::Failed;
    entry.completion_time = Some(now.clone());
    entry.message = Some(message.clone());
    entry.outputs.insert("reason".into(), reason.into());
    StepOutcome::Transition(
        "StepFailed",
        format!("{reason}: {message}"),
        EventType::Warning,
    )
}

/// Schedules another attempt if the step's retries allow it, or fails the step.
fn retry_or_fail(
    step: &crate::step::Step,
    entry: &mut super::types::StepStatus,
    reason: &'static str,
    message: String,
    retryable: bool,
    now: Timestamp,
) -> StepOutcome {
    let limit = step.retries.as_ref().map_or(0, |r| r.limit);
    if retryable && entry.attempts <= limit {
        let base = step
            .retries
            .as_ref()
            .and_then(|r| r.backoff.as_ref())
            .and_then(|b| b.parse().ok())
            .unwrap_or(Duration::from_secs(10));
        let factor = 1u32 << (entry.attempts - 1).clamp(0, 16) as u32;
        let wait = base.saturating_mul(factor);
        let at = now + actions::signed(wait);
        entry.outputs.insert("retryAt".into(), at.to_string());
        entry.message = Some(format!(
            "attempt {} failed ({reason}: {message}); retrying at {at}",
            entry.attempts
        ));
        return StepOutcome::Transition(
            "StepRetrying",
            entry.message.clone().unwrap_or_default(),
            EventType::Warning,
        );
    }
    fail(entry, reason, message, &now_time(now))
}

/// Ends a run that never started its steps: its Runbook is missing, its parameters are
/// wrong, or it was cancelled while held. `outcome` is (phase, reason).
async fn end_before_start(
    ctx: &Context,
    run: &RunbookRun,
    mut status: RunbookRunStatus,
    mut rv: Option<String>,
    now: &Time,
    outcome: (&str, &'static str),
    message: String,
) -> Result<Action, Error> {
    let (phase_, reason) = outcome;
    if phase_ != phase::CANCELLED {
        status.start_time = Some(now.clone());
    }
    finish(&mut status, phase_, reason, message.clone(), now);
    status.observed_generation = run.metadata.generation;
    status.conditions = run_conditions(&status, run.metadata.generation, now);
    write_status(ctx, run, &status, &mut rv).await?;
    ctx.metrics.count_run(
        &run.namespace().unwrap_or_default(),
        &run.spec.runbook_ref.name,
        phase_,
    );
    let kind = if phase_ == phase::CANCELLED {
        EventType::Normal
    } else {
        EventType::Warning
    };
    publish(ctx, run, kind, reason, message).await;
    Ok(Action::await_change())
}

/// First reconcile of a run: resolve the Runbook, hold for a window if required, record the
/// resolved steps.
async fn start(
    run: &RunbookRun,
    state: &State,
    mut status: RunbookRunStatus,
    mut rv: Option<String>,
    now: Time,
) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let namespace = run.namespace().unwrap_or_default();
    let runbook_name = &run.spec.runbook_ref.name;
    let runbook = match Api::<Runbook>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(runbook_name)
        .await?
    {
        Some(rb) => rb,
        None => {
            let message = format!(
                "spec.runbookRef.name: Runbook {runbook_name:?} does not exist in namespace {namespace:?}; create a new run that names an existing Runbook"
            );
            return end_before_start(
                ctx,
                run,
                status,
                rv,
                &now,
                (phase::FAILED, "RunbookNotFound"),
                message,
            )
            .await;
        }
    };
    let resolved = match resolve::resolve(runbook_name, &runbook.spec, &run.spec.params) {
        Ok(r) => r,
        Err(problems) => {
            let message = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return end_before_start(
                ctx,
                run,
                status,
                rv,
                &now,
                (phase::FAILED, "InvalidSpec"),
                message,
            )
            .await;
        }
    };
    if let Some(requirement) = &runbook.spec.requires_maintenance_window {
        state.windows.synced().await?;
        let selector = &requirement.selector.match_labels;
        let windows = state.windows.store.state();
        let open = crate::maintenance_window::open_window(
            windows.iter().map(|w| w.as_ref()),
            &namespace,
            selector,
        );
        if !open {
            let was_waiting = status.phase.as_deref() == Some(phase::WAITING_FOR_WINDOW);
            status.phase = Some(phase::WAITING_FOR_WINDOW.into());
            status.observed_generation = run.metadata.generation;
            let message = format!(
                "waiting for a MaintenanceWindow labelled {} to be Active",
                selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            status.conditions = conditions::merge(
                &status.conditions,
                &[Desired::new(
                    SUCCEEDED,
                    Status::Unknown,
                    phase::WAITING_FOR_WINDOW,
                    message.clone(),
                )],
                run.metadata.generation,
                &now,
            );
            status.conditions = run_conditions(&status, run.metadata.generation, &now);
            if Some(&status) != run.status.as_ref() {
                write_status(ctx, run, &status, &mut rv).await?;
            }
            if !was_waiting {
                publish(ctx, run, EventType::Normal, "WaitingForWindow", message).await;
            }
            return Ok(Action::await_change());
        }
    }
    set_metadata(ctx, run, true, &mut rv).await?;
    status.runbook_generation = runbook.metadata.generation;
    status.steps = engine::new_journal(&resolved.steps, &resolved.finally);
    status.resolved_steps = resolved.steps;
    status.resolved_finally = resolved.finally;
    status.start_time = Some(now.clone());
    status.phase = Some(phase::RUNNING.into());
    status.observed_generation = run.metadata.generation;
    status.conditions = run_conditions(&status, run.metadata.generation, &now);
    write_status(ctx, run, &status, &mut rv).await?;
    let mode = if run.spec.mode == Some(RunMode::Plan) {
        " in Plan mode"
    } else {
        ""
    };
    publish(
        ctx,
        run,
        EventType::Normal,
        "Started",
        format!(
            "running Runbook {runbook_name:?} (generation {}){mode}",
            runbook.metadata.generation.unwrap_or_default()
        ),
    )
    .await;
    Ok(Action::requeue(Duration::from_millis(1)))
}

async fn publish(ctx: &Context, run: &RunbookRun, type_: EventType, reason: &str, note: String) {
    ctx.publish(NAME, &run.object_ref(&()), type_, reason, note)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook_run::types::StepStatus;

    fn entry(phase: StepPhase, attempts: i32, attempt_started: Option<&str>) -> StepStatus {
        let mut value = json!({
            "name": "scale-down", "phase": phase, "attempts": attempts,
            "startTime": "2026-06-10T12:00:00Z"
        });
        if let Some(at) = attempt_started {
            value["outputs"] = json!({"attemptStartedAt": at});
        }
        serde_json::from_value(value).expect("a journal entry")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn a_step_that_just_ended_reports_its_result_and_duration() {
        let now = at("2026-06-10T12:00:03.5Z");
        let done = entry(StepPhase::Succeeded, 1, Some("2026-06-10T12:00:00.25Z"));
        assert_eq!(
            step_finished(StepPhase::Running, &done, now),
            Some(("Succeeded", Duration::from_millis(3250)))
        );
        // Started and ended within one reconcile.
        assert_eq!(
            step_finished(StepPhase::Pending, &done, now).map(|(r, _)| r),
            Some("Succeeded")
        );
        let failed = entry(StepPhase::Failed, 1, None);
        assert_eq!(
            step_finished(StepPhase::Running, &failed, now),
            Some(("Failed", Duration::from_millis(3500)))
        );
        let skipped = entry(StepPhase::Skipped, 1, None);
        assert_eq!(
            step_finished(StepPhase::Running, &skipped, now).map(|(r, _)| r),
            Some("Skipped")
        );
    }

    #[test]
    fn a_retried_step_is_timed_from_its_first_attempt() {
        let now = at("2026-06-10T12:01:00Z");
        let failed = entry(StepPhase::Failed, 3, Some("2026-06-10T12:00:40Z"));
        assert_eq!(
            step_finished(StepPhase::Running, &failed, now),
            Some(("Failed", Duration::from_secs(60)))
        );
    }

    #[test]
    fn no_observation_without_a_new_end_or_a_start() {
        let now = at("2026-06-10T12:00:05Z");
        let running = entry(StepPhase::Running, 1, None);
        assert_eq!(step_finished(StepPhase::Pending, &running, now), None);
        let done = entry(StepPhase::Succeeded, 1, None);
        assert_eq!(step_finished(StepPhase::Succeeded, &done, now), None);
        // Skipped by an abort before it started: no duration to report.
        let mut never = entry(StepPhase::Skipped, 0, None);
        never.start_time = None;
        assert_eq!(step_finished(StepPhase::Pending, &never, now), None);
    }
}

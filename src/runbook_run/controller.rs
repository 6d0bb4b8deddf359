//! RunbookRun controller: the wiring. Watches runs (and what their steps wait on), observes a
//! run, asks [`super::decide`] what comes next, carries it out through [`super::act`], and
//! records every transition in status, the run's journal (built by [`super::status`]).
//!
//! Crash safety comes from two rules. Every status write carries the resourceVersion the
//! reconcile read, so a reconcile working from a stale copy fails instead of acting twice.
//! And every side effect is preceded by a recorded intent and is idempotent for it (see
//! [`super::act`]): the journal entry is written before the step's action runs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::act::{self, Act, Exec};
use super::decide::condition::{self, Gate, RunView};
use super::decide::{self, Lifecycle, Next, Start, StepNext};
use super::observe;
use super::status::{self, StepOutcome, Transition};
use super::types::{RunMode, RunPhase, RunbookRun, RunbookRunStatus, StepPhase};
use crate::context::Context;
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook::Runbook;
use crate::runtime::{self, Cache, Shutdown};
use crate::well_known::{FINALLY_FINALIZER, LOCK_LABEL, RUN_LABEL, RUNBOOK_LABEL};
use crate::write::{FinalizerGuard, WriteError, Writer};

mod lock;

/// Controller name in logs and metrics.
pub const NAME: &str = "runbookrun";

/// Most journal transitions one reconcile makes before yielding to other objects.
const STEPS_PER_RECONCILE: usize = 64;

/// What can go wrong while reconciling a RunbookRun (retried; step failures are recorded).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run's Runbook could not be read.
    #[error("reading Runbook {namespace}/{name}: {source}")]
    ReadRunbook {
        /// The run's namespace.
        namespace: String,
        /// The Runbook named by the run.
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The MaintenanceWindows a held run waits for could not be listed.
    #[error("listing MaintenanceWindows in namespace {namespace:?}: {source}")]
    ListWindows {
        /// The run's namespace.
        namespace: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The caches a concurrency lock is judged from (lock Leases, runs) could not list.
    #[error(
        "listing the {what} in namespace {namespace:?} to judge the run's concurrency lock: {source}"
    )]
    ListLocks {
        /// What was listed.
        what: &'static str,
        /// The run's namespace.
        namespace: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A write of the run itself (its journal or metadata) the API server refused or failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// No client acting as the run's identity could be built.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// A step's side effect failed in a way a retry may fix.
    #[error("step {step:?}: {source}")]
    Step {
        /// The step.
        step: String,
        /// What failed.
        #[source]
        source: act::Error,
    },
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::ReadRunbook { source, .. }
            | Error::ListWindows { source, .. }
            | Error::ListLocks { source, .. } => crate::write::status_label(source),
            Error::Write(err) => err.metric_label(),
            Error::Step { source, .. } => source.metric_label(),
            Error::Identity(_) => "identity",
        }
    }
}

struct State {
    ctx: Arc<Context>,
    windows: Cache<MaintenanceWindow>,
    /// Every run of the scope: the holders and queues of concurrency locks.
    runs: Cache<RunbookRun>,
    /// The lock Leases (labelled [`LOCK_LABEL`]).
    leases: Cache<Lease>,
    http: reqwest::Client,
}

/// How long after a status write conflict (409) a run is looked at again if no newer version
/// has arrived by watch before then.
const CONFLICT_FALLBACK: Duration = Duration::from_secs(5);

/// Runs the RunbookRun controller until shutdown; `synced` fires once its caches are full.
/// `runs` and `windows` are the scope's shared RunbookRun and MaintenanceWindow watches.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: Shutdown,
    synced: tokio::sync::mpsc::Sender<()>,
    runs: runtime::SharedPart<RunbookRun>,
    windows: runtime::SharedPart<MaintenanceWindow>,
) {
    let (store, stream) = runs;
    let (runbooks, runbook_stream) = runtime::watch_metadata::<Runbook>(&ctx);
    let (windows, window_stream) = windows;
    let runs = store.store.clone();
    let by_runbook = runs.clone();
    let waiting_for_window = runs.clone();
    let on_workload = runs.clone();
    let on_statefulset = runs.clone();
    let on_policy = runs.clone();
    let on_lease = runs.clone();
    // Only the Leases that are locks; a change (a release deletes the Lease) wakes the runs
    // queued for it, so a queue never polls.
    let (leases, lease_stream) =
        runtime::watch_typed::<Lease>(&ctx, watcher::Config::default().labels(LOCK_LABEL), |_| {});
    let (policies, policy_stream) =
        runtime::watch_metadata::<crate::backup_policy::BackupPolicy>(&ctx);
    // Watched only: the watch client's read timeout outlasts a quiet watch.
    let jobs: Api<Job> = runtime::watch_api(&ctx);
    let deployments: Api<PartialObjectMeta<Deployment>> = runtime::watch_api(&ctx);
    let statefulsets: Api<PartialObjectMeta<StatefulSet>> = runtime::watch_api(&ctx);
    let controller =
        Controller::for_shared_stream(runtime::queued_shared(&ctx, NAME, stream), runs)
            .owns(
                jobs,
                runtime::scoped_watcher(&ctx, watcher::Config::default().labels(RUN_LABEL)),
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
            .watches_shared_stream(window_stream, move |window: Arc<MaintenanceWindow>| {
                let namespace = window.namespace();
                runtime::referrers(&waiting_for_window, namespace, |run| {
                    run.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::WaitingForWindow)
                })
            })
            .watches_stream(
                watcher(
                    deployments,
                    runtime::scoped_watcher(&ctx, watcher::Config::default()),
                )
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
                watcher(
                    statefulsets,
                    runtime::scoped_watcher(&ctx, watcher::Config::default()),
                )
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
            })
            .watches_stream(lease_stream, move |lease| {
                let name = lease.name_any();
                runtime::referrers(&on_lease, lease.namespace(), |run| {
                    run.status.as_ref().is_some_and(|s| {
                        s.resolved_steps.is_empty()
                            && !s.phase.is_some_and(RunPhase::is_finished)
                            && s.concurrency.as_ref().is_some_and(|c| c.lease == name)
                    })
                })
            })
            // An http or notify step waits on its request in the outbound pool.
            .reconcile_on(settled_requests(&ctx));
    runtime::report_synced(
        vec![
            runtime::listed(&store),
            runtime::listed(&runbooks),
            runtime::listed(&windows),
            runtime::listed(&policies),
            runtime::listed(&leases),
        ],
        synced,
    );
    let http = crate::fence::http_client(ctx.config.fence.egress.clone());
    let state = Arc::new(State {
        ctx: ctx.clone(),
        windows,
        runs: store.clone(),
        leases,
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
                    Err(Error::Write(err)) if err.conflict() => {
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

/// The runs of this scope whose request in the outbound pool got its slot or settled.
fn settled_requests(ctx: &Context) -> impl futures::Stream<Item = ObjectRef<RunbookRun>> + use<> {
    let scope = ctx.config.namespace.clone();
    let excluded = ctx.config.exclude_namespaces.clone();
    futures::stream::unfold(ctx.outbound.subscribe(), |mut wakes| async move {
        loop {
            match wakes.recv().await {
                Ok(owner) => return Some((owner, wakes)),
                // Wake-ups missed while far behind: those runs look again on their recheck.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(move |owner| {
        let ours = scope.as_ref().is_none_or(|ns| *ns == owner.namespace)
            && !excluded.contains(&owner.namespace);
        futures::future::ready(ours.then(|| ObjectRef::new(&owner.name).within(&owner.namespace)))
    })
}

/// Runs whose step in progress acts on `target` (e.g. `Deployment/app`).
fn targets(
    store: &kube::runtime::reflector::Store<RunbookRun>,
    namespace: Option<String>,
    target: &str,
) -> Vec<ObjectRef<RunbookRun>> {
    runtime::referrers(store, namespace, |run| {
        run.status.as_ref().is_some_and(|s| {
            !s.phase.is_some_and(RunPhase::is_finished)
                && s.steps
                    .iter()
                    .any(|e| e.phase == StepPhase::Running && e.target.as_deref() == Some(target))
        })
    })
}

/// Writes status, requiring that nobody wrote since `resource_version` (a stale copy must
/// not act twice); updates `resource_version` to the written one.
async fn write_status(
    writer: &Writer<'_>,
    run: &RunbookRun,
    status: &RunbookRunStatus,
    resource_version: &mut Option<String>,
) -> Result<(), Error> {
    let api: Api<RunbookRun> = writer.api(&run.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": RunbookRun::api_version(&()),
        "kind": RunbookRun::kind(&()),
        "metadata": {"name": run.name_any(), "resourceVersion": resource_version},
        "status": status.bounded(),
    });
    let written = writer
        .patch_status(&api, &run.name_any(), &Patch::Apply(&patch), "status")
        .await?;
    *resource_version = written.resource_version();
    Ok(())
}

/// Sets the finalizer and the Runbook label (start), or removes the finalizer (end), guarded
/// by `resource_version`: the journal is written right after, and must not be written from a
/// stale copy of the run.
async fn set_metadata(
    writer: &Writer<'_>,
    run: &RunbookRun,
    finalizer: bool,
    resource_version: &mut Option<String>,
) -> Result<(), Error> {
    // A Runbook name may be 253 characters; a label value only 63.
    let runbook = crate::names::label_value(&run.spec.runbook_ref.name);
    let labels = [(RUNBOOK_LABEL, runbook.as_ref())];
    let guard = FinalizerGuard::ResourceVersion(resource_version.as_deref());
    if let Some(written) = writer
        .set_finalizer(run, FINALLY_FINALIZER, finalizer, &labels, guard)
        .await?
    {
        *resource_version = written.resource_version();
    }
    Ok(())
}

async fn reconcile(run: Arc<RunbookRun>, state: Arc<State>) -> Result<Action, Error> {
    let writer = Writer::new(&state.ctx, NAME);
    let observed = observe::observe(&run);
    let mut rv = run.resource_version();
    match decide::lifecycle(&observed) {
        Lifecycle::Settled { release_finalizer } => {
            lock::release_left(&writer, &run, &state, &observed.status).await?;
            if release_finalizer {
                set_metadata(&writer, &run, false, &mut rv).await?;
            }
            Ok(Action::await_change())
        }
        Lifecycle::CancelBeforeStart => {
            let now = runtime::now();
            let mut status = observed.status;
            // Cancelled before it started (e.g. while held for a window): nothing ran.
            status.cancel_requested_at = Some(now.clone());
            let message = "cancelled before it started; no step ran".to_owned();
            end_before_start(
                &writer,
                &run,
                status,
                rv,
                &now,
                (RunPhase::Cancelled, status::REASON_CANCELLED),
                message,
            )
            .await
        }
        Lifecycle::Start => start(&run, &state, &writer, observed.status, rv, runtime::now()).await,
        Lifecycle::Execute { note_cancel } => {
            execute(&run, &state, &writer, observed.status, rv, note_cancel).await
        }
    }
}

/// Works through the journal: at most [`STEPS_PER_RECONCILE`] transitions, each written before
/// the next move (so before the side effect it leads to).
async fn execute(
    run: &RunbookRun,
    state: &State,
    writer: &Writer<'_>,
    mut status: RunbookRunStatus,
    mut rv: Option<String>,
    note_cancel: bool,
) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let namespace = run.namespace().unwrap_or_default();
    let generation = run.metadata.generation;
    let now = Timestamp::now();
    let now_t = crate::time::to_time(now);
    if note_cancel {
        status.cancel_requested_at = Some(now_t.clone());
        publish(
            ctx,
            run,
            EventType::Normal,
            "Cancelling",
            "cancel requested; stopping the current step, then running finally steps".into(),
        )
        .await;
    }
    let cancelled = status.cancel_requested_at.is_some();
    // The run's annotations as last read or written (an approval step removes answers).
    let mut annotations = run.annotations().clone();
    let run_name = run.name_any();
    // Every step acts with the rights of the identity recorded when the run started (a run
    // started before identities were recorded acts as the default ServiceAccount).
    let identity = ctx
        .identities
        .of(&namespace, status.service_account_name.as_deref());
    let exec = Exec {
        writer: writer
            .dry_run(run.spec.mode == Some(RunMode::Plan))
            .acting_as(&identity)?,
        http: &state.http,
        namespace: &namespace,
        run_name: &run_name,
        run_uid: run.metadata.uid.as_deref().unwrap_or_default(),
        now,
    };
    let request_key = |index: usize, attempt: i32| crate::outbound::Key {
        run: exec.run_uid.to_owned(),
        step: index,
        attempt,
    };
    // Intents recorded by this reconcile: only these may be acted on without doubt.
    let mut fresh: HashSet<(usize, i32)> = HashSet::new();
    let mut last_written = run.status.clone().unwrap_or_default();
    let grace = decide::grace(
        run.metadata.deletion_timestamp.as_ref().map(|t| t.0),
        ctx.config.deletion_grace.0,
        now,
    );
    if grace == decide::Grace::Over {
        abandon(&exec, run, &mut status, &now_t).await;
    }

    for _ in 0..STEPS_PER_RECONCILE {
        let decision = decide::decide(&status, now);
        status::skip(&mut status, &decision.skip, cancelled, &now_t);
        let (index, next) = match decision.next {
            Next::Finish => {
                let outcome = status::outcome(&status, cancelled);
                let (phase, _, message) = outcome.clone();
                status = status::finished(status, outcome, generation, &now_t);
                write_status(writer, run, &status, &mut rv).await?;
                lock::release_held(writer, run, &status).await?;
                // Nothing of the run may still be sending (a cancelled step's request was
                // aborted already; this also drops replies of skipped moves).
                ctx.outbound.abort_run(exec.run_uid);
                // Counted once the terminal phase is written: the write carries the
                // resourceVersion read, so a stale copy fails before it could count twice.
                ctx.metrics
                    .count_run(&namespace, Some(&run.spec.runbook_ref.name), phase.as_str());
                let kind = if phase == RunPhase::Succeeded {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                publish(ctx, run, kind, phase.as_str(), message).await;
                info!(run = %run_name, namespace, phase = phase.as_str(), "run finished");
                set_metadata(writer, run, false, &mut rv).await?;
                return Ok(Action::await_change());
            }
            Next::Undefined { .. } => break,
            Next::Step { index, next } => (index, next),
        };
        let Some(step) = decide::step_at(&status, index).cloned() else {
            break;
        };
        // What the step reads from the run: its `when` as it comes up, and the outputs of
        // earlier steps each time it acts (both pure, from the journal as it stands).
        let view = RunView {
            name: &run_name,
            namespace: &namespace,
            mode: run.spec.mode.unwrap_or_default(),
        };
        let gate =
            matches!(next, StepNext::Start).then(|| condition::gate(&step, &status, index, &view));
        let expanded = matches!(next, StepNext::Act { .. }).then(|| {
            let main = status.resolved_steps.len();
            let at = if index < main {
                format!("spec.steps[{index}]")
            } else {
                format!("spec.finally[{}]", index - main)
            };
            condition::expand(&step, &status, index, &at)
        });
        status.current_step = Some(step.name.clone());
        let Some(entry) = status.steps.get_mut(index) else {
            break;
        };
        let phase_before = entry.phase;
        // An Event about the step's answer, published once the journal entry is written.
        let mut notice = None;
        let in_step = |source| Error::Step {
            step: step.name.clone(),
            source,
        };
        // The pool's reply this move records, dropped from the pool once written.
        let mut collected = None;
        let outcome = match next {
            StepNext::Start => match gate {
                Some(Gate::Skip { condition }) => status::condition_false(entry, condition, now),
                Some(Gate::Invalid { message }) => status::condition_invalid(entry, message, now),
                Some(Gate::Run { condition }) => {
                    entry.condition = condition;
                    status::start_step(entry, now)
                }
                None => status::start_step(entry, now),
            },
            StepNext::Cancel => {
                ctx.outbound.abort(&request_key(index, entry.attempts));
                act::stop(&exec, entry).await.map_err(in_step)?;
                status::cancelled(entry, now)
            }
            StepNext::WaitForRetry { at } => status::wait_for_retry(entry, at, now),
            StepNext::NextAttempt => status::next_attempt(entry, now),
            StepNext::TimeOut => {
                ctx.outbound.abort(&request_key(index, entry.attempts));
                act::stop(&exec, entry).await.map_err(in_step)?;
                status::timed_out(&step, entry, now)
            }
            StepNext::Act { deadline } => {
                let key = (index, entry.attempts);
                let acting = match expanded {
                    Some(Ok(acting)) => Ok(acting),
                    Some(Err(message)) => Err(message),
                    None => Ok(step.clone()),
                };
                let result = match (&acting, &step.approval) {
                    // A field reads an output that is not there: another attempt would read
                    // the same journal. Plan mode runs no step that records such outputs.
                    (Err(message), _) if exec.plan() => Act::Skipped(format!(
                        "Plan: not planned: {message} (Plan mode does not run the step that records it)"
                    )),
                    (Err(message), _) => Act::Failed {
                        reason: status::REASON_INVALID_SPEC,
                        message: message.clone(),
                        retryable: false,
                    },
                    (Ok(_), Some(action)) if !exec.plan() => {
                        let mut meta = act::RunMeta {
                            run,
                            annotations: &mut annotations,
                            resource_version: &mut rv,
                        };
                        let (result, note) = act::answer(&exec, &mut meta, &step, action, entry)
                            .await
                            .map_err(in_step)?;
                        notice = note;
                        result
                    }
                    (Ok(acting), _) => act::act(&exec, acting, entry, index, fresh.contains(&key))
                        .await
                        .map_err(in_step)?,
                };
                if result == Act::Record {
                    fresh.insert(key);
                }
                if matches!(
                    result,
                    Act::Succeeded(_) | Act::Failed { .. } | Act::Skipped(_)
                ) {
                    collected = Some(request_key(index, entry.attempts));
                }
                status::acted(&step, entry, result, deadline, now)
            }
        };
        let transition = match outcome {
            StepOutcome::Record => None,
            StepOutcome::Transition(transition) => Some(transition),
            StepOutcome::Wait {
                message,
                recheck,
                approval,
            } => {
                status::waiting(&mut status, index, message, approval, generation, &now_t);
                if status != last_written {
                    write_status(writer, run, &status, &mut rv).await?;
                }
                publish_notice(ctx, run, notice).await;
                return Ok(match decide::capped_wait(recheck, grace, now) {
                    Some(after) => Action::requeue(after.max(Duration::from_millis(200))),
                    None => Action::await_change(),
                });
            }
        };
        status::progressed(&mut status, generation, &now_t);
        write_status(writer, run, &status, &mut rv).await?;
        last_written = status.clone();
        if let Some(key) = collected {
            ctx.outbound.forget(&key);
        }
        publish_notice(ctx, run, notice).await;
        if let Some((result, took)) = status
            .steps
            .get(index)
            .and_then(|entry| status::step_finished(phase_before, entry, now))
        {
            ctx.metrics
                .observe_step(step.action_name().unwrap_or("unknown"), result, took);
        }
        if let Some(Transition {
            reason,
            message,
            type_,
        }) = transition
        {
            publish(
                ctx,
                run,
                type_,
                reason,
                format!("step {:?}: {message}", step.name),
            )
            .await;
        }
    }
    // Many quick steps: let other runs have a turn, then continue.
    Ok(Action::requeue(Duration::from_millis(10)))
}

/// The run was deleted longer than `--deletion-grace` ago: stops what its unfinished steps
/// started (best effort: a stop that fails must not hold the run either), records them as
/// Skipped, and says so in a Warning Event naming them. The journal then ends and the
/// finalizer goes.
async fn abandon(exec: &Exec<'_>, run: &RunbookRun, status: &mut RunbookRunStatus, now: &Time) {
    let ctx = exec.writer.ctx();
    let left = decide::unfinished(status);
    if left.is_empty() {
        return;
    }
    let mut names = Vec::new();
    for &index in &left {
        let Some(entry) = status.steps.get(index) else {
            continue;
        };
        names.push(format!("{:?}", entry.name));
        if entry.phase == StepPhase::Running
            && let Err(err) = act::stop(exec, entry).await
        {
            tracing::warn!(run = %run.name_any(), step = entry.name, %err, "could not stop a step the deletion grace cut short");
        }
    }
    let grace = ctx.config.deletion_grace.to_string();
    status::abandon(status, &left, &grace, now);
    publish(
        ctx,
        run,
        EventType::Warning,
        REASON_DELETION_GRACE,
        format!(
            "the run was deleted and its deletion grace ({grace}, --deletion-grace) passed: skipped unfinished steps {}; removing the finalizer",
            names.join(", ")
        ),
    )
    .await;
}

/// Reason of the Warning Event about steps skipped because the deletion grace passed.
pub const REASON_DELETION_GRACE: &str = "DeletionGraceExpired";

/// Ends a run that never started its steps: its Runbook is missing, its parameters are
/// wrong, or it was cancelled while held. `outcome` is (phase, reason).
async fn end_before_start(
    writer: &Writer<'_>,
    run: &RunbookRun,
    status: RunbookRunStatus,
    mut rv: Option<String>,
    now: &Time,
    outcome: (RunPhase, &'static str),
    message: String,
) -> Result<Action, Error> {
    let ctx = writer.ctx();
    let (phase, reason) = outcome;
    let status = status::ended_before_start(
        status,
        phase,
        reason,
        message.clone(),
        run.metadata.generation,
        now,
    );
    write_status(writer, run, &status, &mut rv).await?;
    // A run naming a Runbook that does not exist counts without the name it made up.
    let runbook =
        (reason != status::REASON_RUNBOOK_NOT_FOUND).then_some(&run.spec.runbook_ref.name);
    ctx.metrics.count_run(
        &run.namespace().unwrap_or_default(),
        runbook.map(String::as_str),
        phase.as_str(),
    );
    let kind = if phase == RunPhase::Cancelled {
        EventType::Normal
    } else {
        EventType::Warning
    };
    publish(ctx, run, kind, reason, message).await;
    Ok(Action::await_change())
}

/// Starts a run: reads its Runbook (and, if the Runbook requires one, whether a window is
/// open), lets [`decide::start`] judge, and records the outcome.
async fn start(
    run: &RunbookRun,
    state: &State,
    writer: &Writer<'_>,
    status: RunbookRunStatus,
    mut rv: Option<String>,
    now: Time,
) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let namespace = run.namespace().unwrap_or_default();
    let runbook_name = &run.spec.runbook_ref.name;
    let generation = run.metadata.generation;
    let runbook = observe::runbook(&ctx.client, &namespace, runbook_name)
        .await
        .map_err(|source| Error::ReadRunbook {
            namespace: namespace.clone(),
            name: runbook_name.clone(),
            source,
        })?;
    // The windows are looked up only for a run that could start but for its window.
    let mut decision = decide::start(run, runbook.as_ref(), None);
    if matches!(decision, Start::WaitForWindow { .. })
        && let Some(requirement) = runbook
            .as_ref()
            .and_then(|rb| rb.spec.requires_maintenance_window.as_ref())
    {
        let open = observe::window_open(
            &state.windows,
            &namespace,
            &requirement.selector.match_labels,
        )
        .await
        .map_err(|source| Error::ListWindows {
            namespace: namespace.clone(),
            source,
        })?;
        decision = decide::start(run, runbook.as_ref(), Some(open));
    }
    match decision {
        Start::End {
            phase,
            reason,
            message,
        } => end_before_start(writer, run, status, rv, &now, (phase, reason), message).await,
        Start::WaitForWindow { message } => {
            let was_waiting = status.phase == Some(RunPhase::WaitingForWindow);
            let status = status::held_for_window(status, message.clone(), generation, &now);
            if Some(&status) != run.status.as_ref() {
                write_status(writer, run, &status, &mut rv).await?;
            }
            if !was_waiting {
                publish(ctx, run, EventType::Normal, "WaitingForWindow", message).await;
            }
            Ok(Action::await_change())
        }
        Start::Begin {
            resolved,
            runbook_generation,
        } => {
            // The lock of spec.concurrency is taken before anything of the start is written.
            let held = match &resolved.concurrency {
                None => None,
                Some(wanted) => {
                    match lock::take(run, state, writer, &status, wanted, &mut rv, &now).await? {
                        lock::Taken::Held(record) => Some(record),
                        lock::Taken::Not(action) => return Ok(action),
                    }
                }
            };
            set_metadata(writer, run, true, &mut rv).await?;
            // The identity is fixed now: a later edit of the Runbook does not change it.
            let identity = ctx.identities.of(
                &namespace,
                runbook
                    .as_ref()
                    .and_then(|rb| rb.spec.service_account_name.as_deref()),
            );
            let mut status =
                status::started(status, resolved, runbook_generation, generation, &now);
            status.service_account_name = Some(identity.service_account.clone());
            status.concurrency = held;
            write_status(writer, run, &status, &mut rv).await?;
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
                    "running Runbook {runbook_name:?} (generation {}){mode} as {identity}",
                    runbook_generation.unwrap_or_default()
                ),
            )
            .await;
            Ok(Action::requeue(Duration::from_millis(1)))
        }
    }
}

/// Publishes the Event about a step's answer (an approval's), if the step gave one.
async fn publish_notice(ctx: &Context, run: &RunbookRun, notice: Option<act::Notice>) {
    if let Some(act::Notice {
        type_,
        reason,
        note,
    }) = notice
    {
        publish(ctx, run, type_, reason, note).await;
    }
}

async fn publish(ctx: &Context, run: &RunbookRun, type_: EventType, reason: &str, note: String) {
    ctx.publish(NAME, &run.object_ref(&()), type_, reason, note)
        .await;
}

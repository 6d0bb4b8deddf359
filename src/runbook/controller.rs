//! Runbook controller wiring: watches and caches → observe → decide → act → status → requeue.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;

use super::decide::decide;
use super::observe::{self, Caches};
use super::types::Runbook;
use super::{act, status};
use crate::backup_policy::BackupPolicy;
use crate::context::Context;
use crate::notifications;
use crate::runbook_run::RunbookRun;
use crate::runtime::{self, Shutdown};
use crate::write::{WriteError, Writer};

/// Controller name in logs and metrics.
pub const NAME: &str = "runbook";

/// Added to the timer for the next scheduled time, so the reconcile it wakes reads a clock at
/// or past that time.
const SCHEDULE_SLACK: Duration = Duration::from_millis(50);

/// What can go wrong while reconciling a Runbook.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cache the reconcile reads could not list.
    #[error(transparent)]
    Observe(#[from] observe::Error),
    /// Cancelling, creating or pruning a run failed.
    #[error(transparent)]
    Act(#[from] act::Error),
    /// Writing the Runbook's status failed.
    #[error("writing the status: {0}")]
    Status(#[source] WriteError),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Observe(err) => err.metric_label(),
            Error::Act(err) => err.metric_label(),
            Error::Status(err) => err.metric_label(),
        }
    }
}

struct State {
    ctx: Arc<Context>,
    caches: Caches,
}

/// Runs the Runbook controller until shutdown; `synced` resolves once its caches are full.
/// `runs` is the scope's shared RunbookRun watch: its cache and this controller's stream.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: Shutdown,
    synced: tokio::sync::mpsc::Sender<()>,
    runs: runtime::SharedPart<RunbookRun>,
) {
    let (store, stream) = runtime::watch_decoded::<Runbook>(&ctx, NAME);
    let (policies, policy_stream) = runtime::watch_metadata::<BackupPolicy>(&ctx);
    let runbooks = store.store.clone();
    // The Runbooks that exist, for pruning the runs_total series of deleted ones.
    let listed = store.store.clone();
    ctx.metrics.runbooks.install(Box::new(move || {
        listed
            .state()
            .iter()
            .map(|rb| (rb.namespace().unwrap_or_default(), rb.name_any()))
            .collect()
    }));
    let controller =
        Controller::for_stream(runtime::queued(&ctx, NAME, stream), store.store.clone())
            .watches_stream(policy_stream, move |policy| {
                let name = policy.name_any();
                runtime::referrers(&runbooks, policy.namespace(), |rb| {
                    observe::backup_policies(rb).any(|(_, p)| p == name)
                })
            });
    let (runs, run_stream) = runs;
    let controller = controller.watches_shared_stream(run_stream, |run| {
        let namespace = run.namespace().unwrap_or_default();
        Some(
            kube::runtime::reflector::ObjectRef::new(&run.spec.runbook_ref.name).within(&namespace),
        )
    });
    runtime::report_synced(
        vec![
            runtime::listed(&store),
            runtime::listed(&policies),
            runtime::listed(&runs),
        ],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        caches: Caches { runs, policies },
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |rb, _| reconcile(rb, state.clone()),
        shutdown,
    )
    .await;
}

async fn reconcile(rb: Arc<Runbook>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = state.ctx.as_ref();
    let observed = observe::observe(&rb, &state.caches).await?;
    let now = Timestamp::now();
    let decision = decide(&rb, &observed, now);
    let writer = Writer::new(ctx, NAME);
    let namespace = rb.namespace().unwrap_or_default();
    let started = act::start_runs(&writer, &namespace, &decision).await?;
    let status = status::status(&rb, &decision, now);
    let current = rb.status.as_ref().map(|s| status::without_alerts(Some(s)));
    // Record, then send: with messages to send the write is guarded by the resourceVersion
    // this decision read, so of two operators deciding the same message only the one whose
    // record lands sends it.
    notifications::send::record_then_send(
        &writer,
        (rb.as_ref(), rb.resource_version().as_deref()),
        current.as_ref(),
        &status,
        &decision.notifications.send,
        || notifications::send::About {
            kind: "Runbook",
            namespace: namespace.clone(),
            name: rb.name_any(),
            uid: rb.uid().unwrap_or_default(),
            object: serde_json::to_value(rb.as_ref()).unwrap_or_default(),
            identity: ctx
                .identities
                .of(&namespace, rb.spec.service_account_name.as_deref()),
        },
    )
    .await
    .map_err(Error::Status)?;
    act::prune(&writer, &namespace, &decision).await?;
    let readiness = status::readiness_event(&rb, &decision, now);
    for note in readiness.iter().chain(started).chain(&decision.events) {
        runtime::publish_note(ctx, NAME, rb.as_ref(), note).await;
    }
    Ok(match decision.wake_at {
        Some(next) => Action::requeue(crate::time::until(now, next) + SCHEDULE_SLACK),
        None => Action::await_change(),
    })
}

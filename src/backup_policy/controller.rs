//! BackupPolicy controller, only wiring: the policy and its Jobs are watched; a reconcile
//! observes ([`observe`]), decides ([`decide`](super::decide::decide), pure),
//! acts ([`act`]: creates the one Job the decision asks for, deletes what
//! retention drops), writes the status ([`status`](super::status::status)) and sleeps until
//! the instant the decision names.
//!
//! Jobs are created before they are recorded, under names derived from what they stand for
//! (the scheduled minute, the backup-now token, the backup they verify or prune): a process
//! that dies in between finds the Job on restart and adopts it, and a second create of the
//! same name is refused by the API server, so no scheduled time ever gets two backups. The
//! reconcile then sleeps until the instant the decision names (the next scheduled time, the
//! moment the newest backup ages past the RPO); Job changes wake it in between.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::act::{self, Created};
use super::decide::{self, Inputs, lifecycle, spec};
use super::observe::{self, Deleted};
use super::status::{self, READY_MESSAGE, StatusInputs};
use super::types::BackupPolicy;
use crate::context::Context;
use crate::metrics::{BackupFreshness, PolicyLabels};
use crate::notifications;
use crate::runtime::{self, Cache, Shutdown};
use crate::validation;
use crate::well_known::ACKNOWLEDGED;
use crate::write::Writer;

/// Controller name in logs and metrics.
pub const NAME: &str = "backuppolicy";

/// Jobs created in one reconcile before it hands over to the next: a backup that completed
/// while the operator was away can need its verify and prune Jobs, then the next backup.
const MAX_CREATES: usize = 8;

/// What can go wrong while reconciling a BackupPolicy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The GET of the policy (when the cached copy is older than this controller's last
    /// write) failed.
    #[error("get BackupPolicy {namespace}/{name}: {source}")]
    ReadPolicy {
        /// The policy's namespace.
        namespace: String,
        /// The policy's name.
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Reading the policy's Jobs failed.
    #[error(transparent)]
    Observe(#[from] observe::Error),
    /// Creating or deleting a Job failed.
    #[error(transparent)]
    Act(#[from] act::Error),
    /// The status write failed.
    #[error(transparent)]
    Write(#[from] crate::write::WriteError),
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::ReadPolicy { source, .. } => crate::write::status_label(source),
            Error::Observe(err) => err.metric_label(),
            Error::Act(err) => err.metric_label(),
            Error::Write(err) => err.metric_label(),
        }
    }
}

struct State {
    ctx: Arc<Context>,
    jobs: Cache<Job>,
    /// Jobs this controller deleted, until the cache has seen them go.
    deleted: Deleted,
    /// The policies' resourceVersions as this controller last wrote them.
    written: runtime::Written,
}

/// The policy that owns `job`, by its controller owner reference; for a restore Job (owned by
/// the run that made it) the policy its labels name, so its end updates `lastRestore`.
fn owning_policy(job: &Job, policies: &Store<BackupPolicy>) -> Option<ObjectRef<BackupPolicy>> {
    let namespace = job.namespace()?;
    if let Some(owner) = job
        .owner_references()
        .iter()
        .find(|o| o.kind == "BackupPolicy" && o.controller == Some(true))
    {
        return Some(ObjectRef::new(&owner.name).within(&namespace));
    }
    // The label holds a bounded form of the name, so the policy is found by matching it.
    policies
        .state()
        .iter()
        .find(|bp| {
            bp.namespace().as_deref() == Some(namespace.as_str())
                && observe::is_restore_of(job, &bp.name_any())
        })
        .map(|bp| ObjectRef::from_obj(bp.as_ref()))
}

/// Runs the BackupPolicy controller until shutdown; `synced` fires once its caches are full.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown, synced: tokio::sync::mpsc::Sender<()>) {
    let (store, stream) = runtime::watch_decoded::<BackupPolicy>(&ctx, NAME);
    // Only the Jobs' metadata and status are read; their pod templates stay out of memory.
    let (jobs, job_stream) = runtime::watch_typed::<Job>(
        &ctx,
        watcher::Config::default().labels(crate::well_known::POLICY_LABEL),
        |job| job.spec = None,
    );
    let policies = store.store.clone();
    let by_restore = store.store.clone();
    ctx.metrics
        .backups
        .install(Box::new(move || freshness(&policies)));
    let controller =
        Controller::for_stream(runtime::queued(&ctx, NAME, stream), store.store.clone())
            .watches_stream(job_stream, move |job| owning_policy(&job, &by_restore));
    runtime::report_synced(
        vec![runtime::listed(&store), runtime::listed(&jobs)],
        synced,
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        jobs,
        deleted: Deleted::default(),
        written: runtime::Written::default(),
    });
    runtime::run(
        controller,
        ctx,
        NAME,
        move |bp, _| reconcile(bp, state.clone()),
        shutdown,
    )
    .await;
}

/// Every policy's newest good backup and RPO, for the backup gauges.
fn freshness(policies: &Store<BackupPolicy>) -> Vec<BackupFreshness> {
    policies
        .state()
        .iter()
        .map(|bp| {
            let status = bp.status.as_ref();
            let newest_good = if bp.spec.verify.is_some() {
                status.and_then(|s| s.last_verified_time.as_ref())
            } else {
                status.and_then(|s| s.last_successful_time.as_ref())
            };
            BackupFreshness {
                labels: PolicyLabels {
                    namespace: bp.namespace().unwrap_or_default(),
                    policy: bp.name_any(),
                },
                newest_good: newest_good.map(|t| t.0),
                rpo: bp.spec.rpo.as_ref().and_then(|r| r.parse().ok()),
            }
        })
        .collect()
}

async fn reconcile(bp: Arc<BackupPolicy>, state: Arc<State>) -> Result<Action, Error> {
    let namespace = bp.namespace().unwrap_or_default();
    let api: Api<BackupPolicy> = Api::namespaced(state.ctx.client.clone(), &namespace);
    let name = bp.name_any();
    let latest = state.written.latest(&api, bp).await;
    let Some(bp) = latest.map_err(|source| Error::ReadPolicy {
        namespace: namespace.clone(),
        name,
        source,
    })?
    else {
        return Ok(Action::await_change());
    };
    let writer = Writer::new(&state.ctx, NAME);
    // The policy's Jobs are created and deleted with its own rights.
    let identity = state.ctx.identities.of(
        &bp.namespace().unwrap_or_default(),
        bp.spec.service_account_name.as_deref(),
    );
    let targets = writer.acting_as(&identity).map_err(act::Error::from)?;
    let now = Timestamp::now();
    let mut problems = spec::problems(&bp.spec);
    problems.extend(notifications::problems(
        &bp.spec.notifications,
        &lifecycle::EVENTS,
        "spec.notifications",
    ));
    let schedule = spec::schedule(&bp.spec, &problems);
    let stored = bp.status.clone().unwrap_or_default();
    let mut observed = observe::observe(
        &state.ctx.client,
        &state.jobs,
        &state.deleted,
        &bp,
        &stored,
        now,
    )
    .await?;

    // Create at most one Job per decision, each before it is recorded (see the module
    // comment), until the decision has nothing more to start.
    let mut status = stored.clone();
    let mut notes = Vec::new();
    let mut more_to_do = false;
    let mut decision = None;
    for round in 0..=MAX_CREATES {
        let mut decided = decide::decide(&Inputs {
            policy: &bp.name_any(),
            created: observed.created,
            spec: &bp.spec,
            schedule: schedule.as_ref(),
            status: &status,
            jobs: &observed.jobs,
            backup_now: observed.backup_now.as_deref(),
            rejected: &observed.rejected,
            restores: &observed.restores,
            now,
        });
        let Some(new) = decided.create.take() else {
            notes.append(&mut decided.notes);
            decision = Some(decided);
            break;
        };
        status = decided.status.clone();
        if round == MAX_CREATES {
            // Left for the next reconcile, which starts right away.
            more_to_do = true;
            decision = Some(decided);
            break;
        }
        match act::create_job(&targets, &bp, &new).await? {
            Created::Exists(job) => observed.created(&job),
            Created::Rejected(message) => {
                // It did not start: the JobRejected Event of the next round says so instead.
                decided.notes.retain(|n| !n.reason.ends_with("Started"));
                observed.rejected(&new.name, message);
            }
        }
        notes.append(&mut decided.notes);
    }
    let Some(decision) = decision else {
        return Ok(Action::requeue(std::time::Duration::ZERO));
    };
    act::delete_jobs(&targets, &state.deleted, &bp, &decision.delete).await?;

    let time = runtime::now();
    // Judged for its Ready Event; the conditions are merged once by `status`, against the
    // stored ones, so a condition that stays put keeps its lastTransitionTime.
    let verdict = validation::judge(
        &stored.conditions,
        &problems,
        bp.meta().generation,
        &time,
        READY_MESSAGE,
    );
    let mut status = status::status(StatusInputs {
        stored: &stored,
        decided: decision.status,
        reported: &decision.conditions,
        running: decision.running.as_deref(),
        problems: &problems,
        generation: bp.meta().generation,
        now: &time,
    });
    // Lifecycle messages from the conditions this status records, recorded in the same write
    // before they are sent.
    let acknowledged = bp.annotations().get(ACKNOWLEDGED).map(String::as_str);
    let plan = notifications::plan(
        &bp.spec.notifications,
        &lifecycle::occurrences(&bp.name_any(), &namespace, acknowledged, &status),
        &stored.sent_notifications,
        now,
    );
    status.sent_notifications = plan.sent;
    if let Some(rv) = notifications::send::record_then_send(
        &writer,
        (bp.as_ref(), bp.resource_version().as_deref()),
        bp.status.as_ref(),
        &status,
        &plan.send,
        || notifications::send::About {
            kind: "BackupPolicy",
            namespace: namespace.clone(),
            name: bp.name_any(),
            uid: bp.uid().unwrap_or_default(),
            object: serde_json::to_value(bp.as_ref()).unwrap_or_default(),
            identity: identity.clone(),
        },
    )
    .await?
    {
        state
            .written
            .record::<BackupPolicy>(&namespace, &bp.name_any(), rv);
    }
    for note in verdict.note.iter().chain(&notes) {
        runtime::publish_note(&state.ctx, NAME, bp.as_ref(), note).await;
    }
    if more_to_do {
        return Ok(Action::requeue(std::time::Duration::ZERO));
    }
    let wake_at = match (decision.wake_at, plan.wake_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(runtime::wake_at(wake_at, now))
}

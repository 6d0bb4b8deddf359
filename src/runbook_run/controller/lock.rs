//! The controller's side of a run's concurrency lock: judge it from the caches
//! ([`crate::runbook_run::decide::lock`]), take it, queue or skip the run, release it when the
//! run ends (the writes are in [`crate::runbook_run::act::lock`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::{Error, State, end_before_start, publish, write_status};
use crate::context::Context;
use crate::runbook_run::act;
use crate::runbook_run::decide::{
    self,
    lock::{Asker, Lock},
};
use crate::runbook_run::observe;
use crate::runbook_run::resolve::ResolvedLock;
use crate::runbook_run::status;
use crate::runbook_run::types::{RunLock, RunPhase, RunbookRun, RunbookRunStatus};
use crate::write::Writer;

/// Where a run about to start stands with its concurrency lock.
pub(super) enum Taken {
    /// It holds the lock: record this.
    Held(RunLock),
    /// It does not (queued, skipped, or another run was first): end the reconcile so.
    Not(Action),
}

/// Takes the lock of `lock` for `run` if [`decide::lock::lock`] lets it; otherwise records
/// the run as queued (Queue) or ends it (Skip).
pub(super) async fn take(
    run: &RunbookRun,
    state: &State,
    writer: &Writer<'_>,
    status: &RunbookRunStatus,
    lock: &ResolvedLock,
    rv: &mut Option<String>,
    now: &Time,
) -> Result<Taken, Error> {
    let ctx = &state.ctx;
    let namespace = run.namespace().unwrap_or_default();
    let lease_name = crate::names::lock_lease(&lock.key);
    let listing = |what| {
        let namespace = namespace.clone();
        move |source| Error::ListLocks {
            what,
            namespace,
            source,
        }
    };
    let lease = observe::lease(&state.leases, &namespace, &lease_name)
        .await
        .map_err(listing("lock Leases"))?;
    let runs = observe::contenders(&state.runs, &namespace)
        .await
        .map_err(listing("RunbookRuns"))?;
    let run_name = run.name_any();
    let me = Asker {
        uid: run.metadata.uid.as_deref().unwrap_or_default(),
        name: &run_name,
        created: run.metadata.creation_timestamp.as_ref().map(|t| t.0),
    };
    let mut record = RunLock {
        key: lock.key.clone(),
        policy: lock.policy,
        lease: lease_name.clone(),
        held_version: None,
    };
    // The Lease is the operator's own object, whatever identity the run's steps use.
    let writer = writer.as_operator();
    let skip = |message: String| {
        let mut status = status.clone();
        status.concurrency = Some(record.clone());
        (status, message)
    };
    let held = match decide::lock::lock(&me, &lock.key, lock.policy, lease.as_ref(), &runs) {
        // Taken before a restart (or a failed write) and not yet recorded: not counted again.
        Lock::Held { resource_version } => {
            record.held_version = resource_version;
            return Ok(Taken::Held(record));
        }
        Lock::Create => act::lock::create(&writer, run, &lease_name, &lock.key, now.0)
            .await
            .map_err(Error::Write)?,
        Lock::TakeOver {
            resource_version,
            previous,
        } => {
            let taken = act::lock::take_over(
                &writer,
                run,
                &lease_name,
                resource_version.as_deref(),
                now.0,
            )
            .await?;
            if taken.is_some() {
                ctx.metrics.count_lock("taken_over");
                info!(run = %run_name, namespace, key = lock.key, previous, "took over a lock whose holder finished or is gone");
            }
            taken
        }
        Lock::Wait {
            message,
            behind_queued,
        } => {
            let wake = behind_queued.then_some(decide::lock::QUEUE_RECHECK);
            return queue(run, ctx, writer, status, record, message, wake, rv, now).await;
        }
        Lock::Skip { message } => {
            let (status, message) = skip(message);
            return skipped(&writer, run, status, message, rv, now).await;
        }
    };
    match held {
        Some(version) => {
            ctx.metrics.count_lock("acquired");
            record.held_version = Some(version);
            Ok(Taken::Held(record))
        }
        // Another run was first (the Lease was created or changed since the cache read).
        None if lock.policy == crate::runbook::LockPolicy::Skip => {
            let (status, message) = skip(format!(
                "skipped by spec.concurrency policy Skip: the lock on {:?} is taken (another run took it first); no step ran",
                lock.key
            ));
            skipped(&writer, run, status, message, rv, now).await
        }
        // Queued: the Lease's watch event, or this status write, wakes it again.
        None => {
            let message = format!(
                "waiting for the lock on {:?}: another run took it first",
                lock.key
            );
            queue(run, ctx, writer, status, record, message, None, rv, now).await
        }
    }
}

/// Ends a run whose lock is taken under policy Skip: Cancelled, reason
/// [`status::REASON_CONCURRENCY_SKIPPED`], no step run; counted once the phase is written.
async fn skipped(
    writer: &Writer<'_>,
    run: &RunbookRun,
    status: RunbookRunStatus,
    message: String,
    rv: &Option<String>,
    now: &Time,
) -> Result<Taken, Error> {
    let outcome = (RunPhase::Cancelled, status::REASON_CONCURRENCY_SKIPPED);
    let action = end_before_start(writer, run, status, rv.clone(), now, outcome, message).await?;
    writer.ctx().metrics.count_lock("skipped");
    Ok(Taken::Not(action))
}

/// Records `run` as queued for its lock (once: a settled queue writes nothing) and waits for
/// the lock's Lease to change, or `wake` at the latest. A first wait writes the run's status,
/// and that write reconciles the run again: a release that happened between the cache read and
/// the write is seen then.
#[allow(clippy::too_many_arguments)]
async fn queue(
    run: &RunbookRun,
    ctx: &Context,
    writer: Writer<'_>,
    status: &RunbookRunStatus,
    record: RunLock,
    message: String,
    wake: Option<std::time::Duration>,
    rv: &mut Option<String>,
    now: &Time,
) -> Result<Taken, Error> {
    let first = !status::is_waiting_for_lock(status);
    let queued = status::waiting_for_lock(
        status.clone(),
        record,
        message.clone(),
        run.metadata.generation,
        now,
    );
    if Some(&queued) != run.status.as_ref() {
        write_status(&writer, run, &queued, rv).await?;
    }
    if first {
        ctx.metrics.count_lock("waited");
        publish(
            ctx,
            run,
            EventType::Normal,
            status::REASON_WAITING_FOR_LOCK,
            message,
        )
        .await;
    }
    Ok(Taken::Not(
        wake.map_or_else(Action::await_change, Action::requeue),
    ))
}

/// Releases the lock a finished run recorded as held (the version it wrote).
pub(super) async fn release_held(
    writer: &Writer<'_>,
    run: &RunbookRun,
    status: &RunbookRunStatus,
) -> Result<(), Error> {
    let Some((lock, version)) = status
        .concurrency
        .as_ref()
        .and_then(|c| c.held_version.as_deref().map(|v| (c, v)))
    else {
        return Ok(());
    };
    let namespace = run.namespace().unwrap_or_default();
    act::lock::release(&writer.as_operator(), &namespace, &lock.lease, version).await?;
    Ok(())
}

/// A settled run whose lock Lease still names it as holder (the release after its last
/// journal write did not happen: a crash, a failed request) releases it now. Reads the cache
/// only, so a settled run costs no request.
pub(super) async fn release_left(
    writer: &Writer<'_>,
    run: &RunbookRun,
    state: &State,
    status: &RunbookRunStatus,
) -> Result<(), Error> {
    let Some(lock) = &status.concurrency else {
        return Ok(());
    };
    let namespace = run.namespace().unwrap_or_default();
    let Some(lease) = state
        .leases
        .store
        .get(&ObjectRef::new(&lock.lease).within(&namespace))
    else {
        return Ok(());
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref());
    if holder.is_none() || holder != run.metadata.uid.as_deref() {
        return Ok(());
    }
    let version = lease.resource_version().unwrap_or_default();
    act::lock::release(&writer.as_operator(), &namespace, &lock.lease, &version).await?;
    Ok(())
}

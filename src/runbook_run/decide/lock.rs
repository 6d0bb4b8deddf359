//! Per-target serialization: whether a run about to start may take the lock of its resolved
//! concurrency key, must wait for it, or is skipped. Pure: the lock's Lease and the other runs
//! come in as plain values read from the caches.
//!
//! The lock is a `coordination.k8s.io` Lease whose `holderIdentity` is the holding run's uid.
//! Taking it is a create (409 when another run was first) or, for a Lease whose holder is gone
//! or finished, a patch carrying the resourceVersion read (409 when someone else changed it
//! first), so two reconciles, two replicas or a failover never both hold it. Waiting runs are
//! served in creation order (then by name): a run only takes a free lock when no run queued for
//! the same key was created before it.

use jiff::Timestamp;

use crate::runbook::LockPolicy;

/// How long a run queued behind another queued run (not behind a holder) waits before it
/// looks again, in case that run went away without taking the lock.
pub const QUEUE_RECHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// The lock's Lease as cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// `spec.holderIdentity`: the uid of the run holding it (`None`: released).
    pub holder: Option<String>,
    /// Its resourceVersion, the precondition of a takeover.
    pub resource_version: Option<String>,
}

/// Another run of the namespace, as cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contender {
    /// Its uid.
    pub uid: String,
    /// Its name.
    pub name: String,
    /// Its `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// Whether it reached a terminal phase.
    pub finished: bool,
    /// Whether it started its steps (its journal exists).
    pub started: bool,
    /// The key it recorded in `status.concurrency` (waiting, holding or held).
    pub key: Option<String>,
}

/// The run asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asker<'a> {
    /// Its uid.
    pub uid: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
}

/// How a run about to start stands with its lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lock {
    /// It holds the lock already (a restart between taking it and recording the start).
    Held {
        /// The Lease's resourceVersion, recorded as `heldVersion`.
        resource_version: Option<String>,
    },
    /// The lock is free: create its Lease.
    Create,
    /// The Lease exists without a live holder: take it over, if it is still this version.
    TakeOver {
        /// The resourceVersion read: the precondition of the patch.
        resource_version: Option<String>,
        /// The previous holder's name, when it still exists (finished), for the log.
        previous: Option<String>,
    },
    /// Queue: wait; the message names the run waited for.
    Wait {
        /// Whom the run waits for, and why.
        message: String,
        /// The lock is free but a run queued earlier goes first. Its taking the lock wakes
        /// this one (the Lease is created), but if it goes away without taking it (cancelled,
        /// deleted) no Lease changes: the waiter looks again after [`QUEUE_RECHECK`].
        behind_queued: bool,
    },
    /// Skip: end without running a step.
    Skip {
        /// Whom the run gave way to.
        message: String,
    },
}

/// Whether `me` may take the lock of `key` under `policy`, given the lock's Lease (`None`: it
/// does not exist) and the other runs of the namespace (`runs` may include `me`: ignored).
pub fn lock(
    me: &Asker<'_>,
    key: &str,
    policy: LockPolicy,
    lease: Option<&LeaseView>,
    runs: &[Contender],
) -> Lock {
    let holder_uid = lease.and_then(|l| l.holder.as_deref());
    if holder_uid == Some(me.uid) {
        return Lock::Held {
            resource_version: lease.and_then(|l| l.resource_version.clone()),
        };
    }
    let holder = holder_uid.and_then(|uid| runs.iter().find(|r| r.uid == uid));
    let live = holder.filter(|h| !h.finished);
    let blocker = match live {
        Some(h) => Some((format!("held by run {:?}", h.name), false)),
        None => {
            first_ahead(me, key, runs).map(|r| (format!("run {:?} is queued ahead", r.name), true))
        }
    };
    if let Some((why, behind_queued)) = blocker {
        let message = format!("waiting for the lock on {key:?}: {why}");
        return match policy {
            LockPolicy::Queue => Lock::Wait {
                message,
                behind_queued,
            },
            LockPolicy::Skip => Lock::Skip {
                message: format!(
                    "skipped by spec.concurrency policy Skip: the lock on {key:?} is taken ({why}); no step ran"
                ),
            },
        };
    }
    match lease {
        None => Lock::Create,
        Some(lease) => Lock::TakeOver {
            resource_version: lease.resource_version.clone(),
            previous: holder.map(|h| h.name.clone()),
        },
    }
}

/// The oldest run queued for `key` that was created before `me` (by creation time, then name).
fn first_ahead<'r>(me: &Asker<'_>, key: &str, runs: &'r [Contender]) -> Option<&'r Contender> {
    let mine = (me.created, me.name);
    runs.iter()
        .filter(|r| {
            r.uid != me.uid
                && !r.finished
                && !r.started
                && r.key.as_deref() == Some(key)
                && (r.created, r.name.as_str()) < mine
        })
        .min_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)))
}

#[cfg(test)]
mod tests;

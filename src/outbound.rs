//! The bounded pool that sends the requests of http and notify steps, off the reconcile path.
//!
//! A reconcile never waits on a remote endpoint: it starts the step's request here, as a task
//! keyed by (run uid, journal entry, attempt), and returns. The task waits for a slot (one of
//! `--max-outbound-requests` in all, one of `--max-outbound-requests-per-namespace` in the
//! run's namespace), sends, keeps its [`Reply`] in memory and wakes the run's controller
//! ([`Pool::subscribe`]); the next reconcile records the reply in the journal through the
//! normal write path and then forgets it ([`Pool::forget`]). A cancel, a step timeout or the
//! end of the run aborts the task ([`Pool::abort`], [`Pool::abort_run`]).
//!
//! Nothing here survives a restart, on purpose: the journal records the attempt as sent before
//! the task starts, so a restarted operator that finds a sent attempt the pool does not know
//! reports it as interrupted, exactly as when requests ran inside the reconcile.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, broadcast};

#[cfg(test)]
mod tests;

/// Default of `--max-outbound-requests`: requests in flight at once, over all namespaces.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Default of `--max-outbound-requests-per-namespace`: requests in flight at once from the
/// runs of one namespace, so one namespace's slow endpoints leave slots to the others.
pub const DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE: usize = 8;
/// Longest an http step's request may take, whatever its `timeout` says.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a reply nobody collected (its run was deleted meanwhile) is kept.
const UNCLAIMED_TTL: Duration = Duration::from_secs(15 * 60);
/// Wake-ups buffered for a controller that is busy; a controller that falls further behind
/// still finds the replies on its runs' fallback recheck.
const WAKE_BUFFER: usize = 4096;

/// The timeout a request gets: the step's, capped at [`MAX_TIMEOUT`].
pub fn capped_timeout(requested: Duration) -> Duration {
    requested.min(MAX_TIMEOUT)
}

/// Which request: one attempt of one journal entry of one run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// The run's uid (a run recreated under the same name is another run).
    pub run: String,
    /// The journal entry's index (main steps first, then finally steps).
    pub step: usize,
    /// The attempt (a retry is a new request).
    pub attempt: i32,
}

/// The run a request belongs to, to wake its controller when the request settles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The run's namespace (also the namespace whose limit the request counts against).
    pub namespace: String,
    /// The run's name.
    pub name: String,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The step succeeded, with this message.
    Succeeded(String),
    /// The step's attempt failed.
    Failed {
        /// Why, as a PascalCase reason.
        reason: &'static str,
        /// What happened.
        message: String,
        /// Whether another attempt may help.
        retryable: bool,
    },
}

/// What a request left for the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Step outputs to record (status code, body excerpt, ...).
    pub outputs: Vec<(String, String)>,
    /// The outcome.
    pub verdict: Verdict,
}

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for a slot: the namespace's limit is reached (`namespace: true`) or the global
    /// one; `in_flight` requests hold that limit's slots.
    Queued {
        /// Whether the namespace's own limit holds it back (else the global one).
        namespace: bool,
        /// Requests in flight under the limit that holds it back.
        in_flight: usize,
    },
    /// Sent; waiting for the answer.
    InFlight,
    /// Settled; the reply waits to be recorded.
    Done(Reply),
}

impl Progress {
    /// The step's message while it waits, e.g. `waiting for an outbound slot (8 in flight in
    /// namespace "shop")`; `None` once done.
    pub fn waiting_message(&self, namespace: &str, what: &str) -> Option<String> {
        match self {
            Progress::Queued {
                namespace: true,
                in_flight,
            } => Some(format!(
                "waiting for an outbound slot ({in_flight} in flight in namespace {namespace:?}) to send {what}"
            )),
            Progress::Queued {
                namespace: false,
                in_flight,
            } => Some(format!(
                "waiting for an outbound slot ({in_flight} in flight in all namespaces) to send {what}"
            )),
            Progress::InFlight => Some(format!("waiting for the answer to {what}")),
            Progress::Done(_) => None,
        }
    }
}

struct Task {
    owner: Owner,
    progress: Progress,
    handle: Option<tokio::task::AbortHandle>,
    settled_at: Option<Instant>,
}

struct Inner {
    global: Arc<Semaphore>,
    global_limit: usize,
    per_namespace: usize,
    namespaces: Mutex<HashMap<String, Arc<Semaphore>>>,
    tasks: Mutex<HashMap<Key, Task>>,
    wake: broadcast::Sender<Owner>,
}

/// The request pool every controller's Context shares (cheap to clone).
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("global", &self.0.global_limit)
            .field("per_namespace", &self.0.per_namespace)
            .finish()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new(DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain maps behind, still consistent enough.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    /// A pool sending at most `global` requests at once, at most `per_namespace` of them for
    /// runs of one namespace (each at least 1).
    pub fn new(global: usize, per_namespace: usize) -> Self {
        let global = global.max(1);
        let (wake, _) = broadcast::channel(WAKE_BUFFER);
        Pool(Arc::new(Inner {
            global: Arc::new(Semaphore::new(global)),
            global_limit: global,
            per_namespace: per_namespace.max(1),
            namespaces: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            wake,
        }))
    }

    /// The runs whose request settled or got its slot, to reconcile again.
    pub fn subscribe(&self) -> broadcast::Receiver<Owner> {
        self.0.wake.subscribe()
    }

    /// Where the request `key` stands; `None` when this process never started it (or it was
    /// forgotten or aborted).
    pub fn progress(&self, key: &Key) -> Option<Progress> {
        let tasks = lock(&self.0.tasks);
        let task = tasks.get(key)?;
        Some(match &task.progress {
            Progress::Queued { .. } => self.queued(&task.owner.namespace),
            other => other.clone(),
        })
    }

    /// The queue position of a request of `namespace` that waits for a slot.
    fn queued(&self, namespace: &str) -> Progress {
        let semaphore = self.namespace_semaphore(namespace);
        let ns_in_flight = self.0.per_namespace - semaphore.available_permits();
        if ns_in_flight >= self.0.per_namespace {
            Progress::Queued {
                namespace: true,
                in_flight: ns_in_flight,
            }
        } else {
            Progress::Queued {
                namespace: false,
                in_flight: self.0.global_limit - self.0.global.available_permits(),
            }
        }
    }

    fn namespace_semaphore(&self, namespace: &str) -> Arc<Semaphore> {
        lock(&self.0.namespaces)
            .entry(namespace.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.0.per_namespace)))
            .clone()
    }

    /// Requests sent right now (holding a slot), over all namespaces.
    pub fn in_flight(&self) -> usize {
        self.0.global_limit - self.0.global.available_permits()
    }

    /// Starts `request` for `key` unless it is already known: it waits for a namespace slot,
    /// then a global one (so a namespace at its own limit holds no global slot), and runs.
    /// Returns the request's progress right after.
    pub fn start<F>(&self, key: Key, owner: Owner, request: F) -> Progress
    where
        F: Future<Output = Reply> + Send + 'static,
    {
        let mut tasks = lock(&self.0.tasks);
        self.sweep(&mut tasks);
        if let Some(task) = tasks.get(&key) {
            return task.progress.clone();
        }
        let namespace = self.namespace_semaphore(&owner.namespace);
        let global = self.0.global.clone();
        // Take the slots now when free, so a request that need not wait reports no queue.
        let permits = namespace
            .clone()
            .try_acquire_owned()
            .ok()
            .and_then(|ns| global.clone().try_acquire_owned().ok().map(|g| (ns, g)));
        let progress = match permits {
            Some(_) => Progress::InFlight,
            None => self.queued(&owner.namespace),
        };
        let pool = self.clone();
        let task_key = key.clone();
        let task_owner = owner.clone();
        let handle = tokio::spawn(async move {
            let had_to_wait = permits.is_none();
            let _permits = match permits {
                Some(permits) => permits,
                None => {
                    let Ok(ns) = namespace.acquire_owned().await else {
                        return;
                    };
                    let Ok(global) = global.acquire_owned().await else {
                        return;
                    };
                    (ns, global)
                }
            };
            if had_to_wait && pool.set(&task_key, Progress::InFlight) {
                // The step's message said it was queued: let it say it is sent.
                let _ = pool.0.wake.send(task_owner.clone());
            }
            let reply = request.await;
            if pool.set(&task_key, Progress::Done(reply)) {
                let _ = pool.0.wake.send(task_owner);
            }
        });
        tasks.insert(
            key,
            Task {
                owner,
                progress: progress.clone(),
                handle: Some(handle.abort_handle()),
                settled_at: None,
            },
        );
        progress
    }

    /// Records a task's progress; false when the task was forgotten meanwhile.
    fn set(&self, key: &Key, progress: Progress) -> bool {
        let mut tasks = lock(&self.0.tasks);
        let Some(task) = tasks.get_mut(key) else {
            return false;
        };
        if matches!(progress, Progress::Done(_)) {
            task.settled_at = Some(Instant::now());
            task.handle = None;
        }
        task.progress = progress;
        true
    }

    /// Drops a reply once the journal holds it.
    pub fn forget(&self, key: &Key) {
        lock(&self.0.tasks).remove(key);
    }

    /// Aborts the request `key` (its connection is dropped) and forgets it.
    pub fn abort(&self, key: &Key) {
        if let Some(task) = lock(&self.0.tasks).remove(key)
            && let Some(handle) = task.handle
        {
            handle.abort();
        }
    }

    /// Aborts and forgets every request of the run `run` (uid): it ended or is gone.
    pub fn abort_run(&self, run: &str) {
        let mut tasks = lock(&self.0.tasks);
        tasks.retain(|key, task| {
            if key.run != run {
                return true;
            }
            if let Some(handle) = task.handle.take() {
                handle.abort();
            }
            false
        });
    }

    /// Drops replies nobody collected for [`UNCLAIMED_TTL`] (their run was deleted).
    fn sweep(&self, tasks: &mut HashMap<Key, Task>) {
        tasks.retain(|_, task| {
            task.settled_at
                .is_none_or(|at| at.elapsed() < UNCLAIMED_TTL)
        });
    }

    /// Requests known to the pool (queued, in flight or waiting to be recorded).
    pub fn len(&self) -> usize {
        lock(&self.0.tasks).len()
    }

    /// Whether the pool knows no request.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads at most `limit` bytes of `response`'s body (lossy UTF-8), and whether it was cut:
/// an answer from outside the cluster never grows the operator's memory or a journal.
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> (String, bool) {
    let mut bytes: Vec<u8> = Vec::new();
    let mut truncated = false;
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    (String::from_utf8_lossy(&bytes).into_owned(), truncated)
}

/// A request's error with its causes, without the URL (its query may carry a token).
pub fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

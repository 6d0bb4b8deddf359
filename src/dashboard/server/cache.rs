//! What the dashboard has seen of a namespace: one watch per kind, as the user, kept in
//! reflector stores so a page is built from memory, and a broadcast of every change so open
//! pages update without reloading. A namespace's watches start on its first page and stop
//! when it has not been looked at for the longest time and more than [`MAX_NAMESPACES`] are
//! open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::backup_policy::BackupPolicy;
use crate::blue_green::BlueGreenRelease;
use crate::dashboard::view::Permissions;
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook::Runbook;
use crate::runbook_run::RunbookRun;

/// Namespaces watched at once; the least recently viewed one stops first.
pub const MAX_NAMESPACES: usize = 16;
/// How long a permissions answer is reused.
const PERMISSIONS_TTL: Duration = Duration::from_secs(30);
/// How long a page waits for a kind's first list.
pub const FIRST_LIST_PATIENCE: Duration = Duration::from_secs(30);
/// Changes kept for a slow page before it is told to fetch everything again.
const CHANGES_BUFFER: usize = 256;

/// One change a watch delivered.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// The object's kind, e.g. `RunbookRun`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// Whether a kind's watch has listed its objects yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// The first list is under way.
    Loading,
    /// The store holds the namespace's objects.
    Ready,
    /// The last list or watch failed; the watch retries with backoff.
    Failed(String),
}

/// One kind's store and its listing state.
pub struct Watched<K: Resource<DynamicType = ()> + 'static> {
    /// The objects.
    pub store: Store<K>,
    state: watch::Receiver<Listing>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Watched<K> {
    /// The objects once listed, or why they could not be (the watch's error, or that the
    /// first list took longer than [`FIRST_LIST_PATIENCE`]).
    pub async fn objects(&self) -> Result<Vec<Arc<K>>, (u16, String)> {
        let mut state = self.state.clone();
        let waited = tokio::time::timeout(
            FIRST_LIST_PATIENCE,
            state.wait_for(|s| *s != Listing::Loading),
        )
        .await;
        match waited {
            Err(_) => Err((
                504,
                format!(
                    "listing {} took longer than {}s; is the API server overloaded? (kubectl get --raw /readyz)",
                    K::plural(&()),
                    FIRST_LIST_PATIENCE.as_secs()
                ),
            )),
            Ok(Err(_)) => Err((500, "the dashboard's watch stopped".to_owned())),
            Ok(Ok(listing)) => match &*listing {
                Listing::Failed(message) if self.store.is_empty() => {
                    Err((failure_status(message), message.clone()))
                }
                _ => Ok(self.store.state()),
            },
        }
    }
}

/// 403 for a refusal by RBAC, 502 otherwise.
fn failure_status(message: &str) -> u16 {
    if message.contains("forbidden") {
        403
    } else {
        502
    }
}

/// Everything watched in one namespace.
pub struct NamespaceCache {
    /// RunbookRuns.
    pub runs: Watched<RunbookRun>,
    /// Runbooks.
    pub runbooks: Watched<Runbook>,
    /// MaintenanceWindows.
    pub windows: Watched<MaintenanceWindow>,
    /// BlueGreenReleases.
    pub releases: Watched<BlueGreenRelease>,
    /// BackupPolicies.
    pub policies: Watched<BackupPolicy>,
    changes: broadcast::Sender<Change>,
    tasks: Vec<JoinHandle<()>>,
    permissions: Mutex<Option<(Instant, Permissions)>>,
    last_viewed: Mutex<Instant>,
}

impl Drop for NamespaceCache {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl NamespaceCache {
    fn start(client: &Client, namespace: &str) -> Self {
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        let mut tasks = Vec::new();
        let runs = watch_kind::<RunbookRun>(client, namespace, &changes, &mut tasks);
        let runbooks = watch_kind::<Runbook>(client, namespace, &changes, &mut tasks);
        let windows = watch_kind::<MaintenanceWindow>(client, namespace, &changes, &mut tasks);
        let releases = watch_kind::<BlueGreenRelease>(client, namespace, &changes, &mut tasks);
        let policies = watch_kind::<BackupPolicy>(client, namespace, &changes, &mut tasks);
        Self {
            runs,
            runbooks,
            windows,
            releases,
            policies,
            changes,
            tasks,
            permissions: Mutex::new(None),
            last_viewed: Mutex::new(Instant::now()),
        }
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// The permissions answer if still fresh.
    pub fn cached_permissions(&self) -> Option<Permissions> {
        let held = self.permissions.lock().ok()?;
        held.filter(|(at, _)| at.elapsed() < PERMISSIONS_TTL)
            .map(|(_, p)| p)
    }

    /// Keeps a permissions answer.
    pub fn keep_permissions(&self, permissions: Permissions) {
        if let Ok(mut held) = self.permissions.lock() {
            *held = Some((Instant::now(), permissions));
        }
    }
}

/// Starts the watch of `K` in `namespace`, feeding a store and the change broadcast.
fn watch_kind<K>(
    client: &Client,
    namespace: &str,
    changes: &broadcast::Sender<Change>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Watched<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let (state_tx, state) = watch::channel(Listing::Loading);
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let changes = changes.clone();
    let kind = K::kind(&()).into_owned();
    let plural = K::plural(&()).into_owned();
    let namespace = namespace.to_owned();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                    let _ = changes.send(Change {
                        kind: kind.clone(),
                        name: object.name_any(),
                    });
                }
                Ok(watcher::Event::InitDone) => {
                    state_tx.send_replace(Listing::Ready);
                    let _ = changes.send(Change {
                        kind: kind.clone(),
                        name: String::new(),
                    });
                }
                Ok(_) => {}
                Err(err) => {
                    let message = match &err {
                        watcher::Error::InitialListFailed(kube::Error::Api(s))
                        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
                        | watcher::Error::WatchFailed(kube::Error::Api(s))
                            if s.code == 403 =>
                        {
                            format!(
                                "listing {plural} in namespace {namespace:?} was forbidden: {}; ask for RBAC that allows list and watch (kubectl auth can-i --list -n {namespace})",
                                s.message
                            )
                        }
                        other => format!(
                            "watching {plural} in namespace {namespace:?} failed: {other}; retrying"
                        ),
                    };
                    state_tx.send_replace(Listing::Failed(message));
                }
            }
        }
    }));
    Watched { store, state }
}

/// The namespaces being watched, at most [`MAX_NAMESPACES`].
#[derive(Default)]
pub struct Caches {
    open: Mutex<HashMap<String, Arc<NamespaceCache>>>,
}

impl Caches {
    /// The cache of `namespace`, started on first use.
    pub fn namespace(&self, client: &Client, namespace: &str) -> Arc<NamespaceCache> {
        let mut open = match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(cache) = open.get(namespace) {
            if let Ok(mut at) = cache.last_viewed.lock() {
                *at = Instant::now();
            }
            return cache.clone();
        }
        if open.len() >= MAX_NAMESPACES {
            let oldest = open
                .iter()
                .min_by_key(|(_, c)| {
                    c.last_viewed
                        .lock()
                        .map(|at| *at)
                        .unwrap_or_else(|_| Instant::now())
                })
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                open.remove(&oldest);
            }
        }
        let cache = Arc::new(NamespaceCache::start(client, namespace));
        open.insert(namespace.to_owned(), cache.clone());
        cache
    }
}

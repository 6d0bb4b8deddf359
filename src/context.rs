//! The one Context every controller receives: client, event recorder, metrics, settings.

use crate::well_known::FIELD_MANAGER;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::identity::Identities;
use crate::metrics::Metrics;

/// Operator settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Reconciles each controller runs at once; 0 sets no limit.
    pub concurrency: u16,
    /// Namespaces never watched nor reconciled (`--exclude-namespaces`).
    pub exclude_namespaces: Vec<String>,
    /// What steps may reach and touch (`--deny-egress-cidrs`, `--allow-loopback-egress`,
    /// `--allow-patch-kinds`).
    pub fence: Arc<Fence>,
    /// How long a deleted run's finally steps may go on (`--deletion-grace`).
    pub deletion_grace: DeletionGrace,
}

/// How long after its deletion a run's finally steps may still run; after it, what is
/// unfinished is skipped and the finalizer removed, so nothing that waits (an approval, a
/// sleep, a Job, an http call) keeps a run, or its namespace, Terminating forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeletionGrace(pub std::time::Duration);

/// Default of `--deletion-grace`.
pub const DEFAULT_DELETION_GRACE: &str = "5m";

impl Default for DeletionGrace {
    fn default() -> Self {
        Self(std::time::Duration::from_secs(300))
    }
}

impl std::fmt::Display for DeletionGrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs();
        match secs {
            s if s % 3600 == 0 && s > 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 && s > 0 => write!(f, "{}m", s / 60),
            s if self.0.subsec_millis() == 0 => write!(f, "{s}s"),
            _ => write!(f, "{}ms", self.0.as_millis()),
        }
    }
}

/// The limits on steps beyond RBAC (see [`crate::fence`]).
#[derive(Clone, Debug, Default)]
pub struct Fence {
    /// Where http and notify steps may not connect.
    pub egress: Arc<crate::fence::EgressPolicy>,
    /// Guarded kinds patch steps may write anyway, as `Kind` (core) or `Kind.group`.
    pub allow_patch_kinds: Vec<String>,
}

/// Read timeout of the watch client: a watch asks the API server to end it after 290 s
/// (`timeoutSeconds`, kube's default) and may be silent until then; a minute more is a hung
/// connection, while kube-runtime's own idle timeout (295 s) restarts a silent watch first.
pub const WATCH_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(290 + 60);

/// Default of `--max-concurrent-reconciles`. Reconciles mostly wait on the API server, so a
/// few run at once; a bound keeps thousands of due objects from sending thousands of
/// requests at the same moment to an API server that is already slow.
pub const DEFAULT_CONCURRENCY: u16 = 16;

impl Config {
    /// The scopes to run controllers in, from `--namespace a,b`: each listed namespace once,
    /// or one scope over all namespaces when none is listed.
    pub fn scopes(namespaces: &[String], concurrency: u16) -> Result<Vec<Config>, ConfigError> {
        let mut scopes: Vec<Config> = Vec::new();
        for namespace in namespaces.iter().map(|ns| ns.trim()) {
            if namespace.is_empty() {
                continue;
            }
            if !crate::names::is_dns_label(namespace) {
                return Err(ConfigError::NotANamespace(namespace.to_owned()));
            }
            if !scopes
                .iter()
                .any(|c| c.namespace.as_deref() == Some(namespace))
            {
                scopes.push(Config {
                    namespace: Some(namespace.to_owned()),
                    concurrency,
                    ..Config::default()
                });
            }
        }
        if scopes.is_empty() {
            scopes.push(Config {
                namespace: None,
                concurrency,
                ..Config::default()
            });
        }
        Ok(scopes)
    }

    /// `scopes` with the namespaces to leave alone (`--exclude-namespaces`); a namespace both
    /// watched and excluded is a contradiction, refused rather than guessed.
    pub fn excluding(
        mut scopes: Vec<Config>,
        excluded: &[String],
    ) -> Result<Vec<Config>, ConfigError> {
        let mut names: Vec<String> = Vec::new();
        for name in excluded.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if !crate::names::is_dns_label(name) {
                return Err(ConfigError::NotANamespace(name.to_owned()));
            }
            if scopes.iter().any(|c| c.namespace.as_deref() == Some(name)) {
                return Err(ConfigError::WatchedAndExcluded(name.to_owned()));
            }
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        for scope in &mut scopes {
            // A one-namespace scope never sees another namespace: nothing to exclude.
            if scope.namespace.is_none() {
                scope.exclude_namespaces = names.clone();
            }
        }
        Ok(scopes)
    }

    /// The field selector that keeps excluded namespaces out of every list and watch, e.g.
    /// `metadata.namespace!=kube-system,metadata.namespace!=runbook-system`.
    pub fn exclusion_selector(&self) -> Option<String> {
        if self.exclude_namespaces.is_empty() {
            return None;
        }
        Some(
            self.exclude_namespaces
                .iter()
                .map(|ns| format!("metadata.namespace!={ns}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--namespace` names something that cannot be a namespace.
    #[error(
        "--namespace {0:?} is not a namespace name: use lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit"
    )]
    NotANamespace(String),
    /// A namespace is listed both in `--namespace` and `--exclude-namespaces`.
    #[error(
        "namespace {0:?} is both watched (--namespace) and excluded (--exclude-namespaces): remove it from one of the two"
    )]
    WatchedAndExcluded(String),
}

/// Shared state of all controllers.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client for ordinary requests, with the connect and read timeouts
    /// (`--api-connect-timeout`, `--api-read-timeout`): a hung connection fails the request
    /// instead of wedging a reconcile.
    pub client: Client,
    /// Kubernetes client for lists and watches: the same configuration with a read timeout
    /// longer than a watch's `timeoutSeconds` ([`WATCH_READ_TIMEOUT`]), so a quiet watch is
    /// never cut while it waits for events.
    pub watch_client: Client,
    /// Publishes Kubernetes Events, through one bounded queue.
    pub events: crate::events::Publisher,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub config: Config,
    /// Lists and watches the API server refuses, for `/readyz`.
    pub refused_lists: RefusedLists,
    /// The base client configuration and the clients acting as objects' identities.
    pub identities: Identities,
    /// The bounded pool that sends http and notify steps' requests, shared by every scope.
    pub outbound: crate::outbound::Pool,
}

impl Context {
    /// Builds the context; Events are reported as `runbook-operator` (plus the pod name when
    /// running in a cluster, to tell replicas apart).
    pub fn new(client: Client, config: Config) -> Self {
        Self::with_identities(client, config, Identities::default())
    }

    /// [`Context::new`] whose writers can act as objects' identities, impersonated from the
    /// base configuration inside `identities`.
    pub fn with_identities(client: Client, config: Config, identities: Identities) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let metrics = Arc::new(Metrics::default());
        Self {
            watch_client: client.clone(),
            events: crate::events::Publisher::new(
                Recorder::new(client.clone(), reporter),
                metrics.clone(),
            ),
            client,
            metrics,
            config,
            refused_lists: Default::default(),
            identities,
            outbound: crate::outbound::Pool::default(),
        }
    }

    /// The same context, listing and watching with `watch_client` (see
    /// [`Context::watch_client`]).
    pub fn with_watch_client(mut self, watch_client: Client) -> Self {
        self.watch_client = watch_client;
        self
    }

    /// Publishes an Event in the background. Events are best-effort: a failure is logged,
    /// and the reconcile that reported something never waits for (or fails on) the Event
    /// write, which under load would add an API round trip to every step transition. Every
    /// Event goes through one bounded queue ([`crate::events`]); its note is cut to the
    /// Events API's limit.
    pub async fn publish(
        &self,
        controller: &str,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        // The recorder folds Events with the same type, reason and action on one object into a
        // series that keeps the first message. An action naming the reason and the message's
        // hash folds only true repeats, so each distinct message (a second release's revision,
        // a second window's times) is its own Event.
        let action = format!("{reason}-{:08x}", crate::names::fnv32(&note));
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action,
            secondary: None,
        };
        self.metrics.count_write(controller, "event");
        self.events.send(event, regarding.clone());
    }
}

/// The lists and watches the API server currently refuses, by the message it gave, so
/// `/readyz` can say why the operator is not ready (a primary kind it may not list has no
/// object to report on).
#[derive(Clone, Debug, Default)]
pub struct RefusedLists(Arc<std::sync::Mutex<std::collections::BTreeMap<u64, String>>>);

impl RefusedLists {
    pub(crate) fn set(&self, cache: u64, message: Option<String>) {
        if let Ok(mut map) = self.0.lock() {
            match message {
                Some(message) => map.insert(cache, message),
                None => map.remove(&cache),
            };
        }
    }

    /// The API server's messages, one per refused cache, deduplicated.
    pub fn messages(&self) -> Vec<String> {
        let mut messages: Vec<String> = self
            .0
            .lock()
            .map(|map| map.values().cloned().collect())
            .unwrap_or_default();
        messages.sort();
        messages.dedup();
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(scopes: &[Config]) -> Vec<Option<&str>> {
        scopes.iter().map(|c| c.namespace.as_deref()).collect()
    }

    #[test]
    fn the_deletion_grace_reads_as_written() {
        assert_eq!(DeletionGrace::default().to_string(), DEFAULT_DELETION_GRACE);
        let grace = |ms| DeletionGrace(std::time::Duration::from_millis(ms)).to_string();
        assert_eq!(grace(7_200_000), "2h");
        assert_eq!(grace(90_000), "90s");
        assert_eq!(grace(0), "0s");
        assert_eq!(grace(1_500), "1500ms");
    }

    #[test]
    fn no_namespace_means_one_scope_over_all() {
        assert_eq!(names(&Config::scopes(&[], 4).unwrap()), vec![None]);
        assert_eq!(
            names(&Config::scopes(&[" ".into(), String::new()], 4).unwrap()),
            vec![None]
        );
    }

    #[test]
    fn each_listed_namespace_once_in_order() {
        let listed = ["shop".into(), " payments".into(), "shop".into()];
        assert_eq!(
            names(&Config::scopes(&listed, 4).unwrap()),
            vec![Some("shop"), Some("payments")]
        );
    }

    #[test]
    fn every_scope_gets_the_concurrency() {
        let listed = ["shop".into(), "payments".into()];
        for scopes in [Config::scopes(&listed, 7), Config::scopes(&[], 7)] {
            assert!(scopes.unwrap().iter().all(|c| c.concurrency == 7));
        }
    }

    #[test]
    fn exclusions_apply_to_the_all_namespaces_scope_only() {
        let excluded = ["kube-system".to_owned(), " ops".into(), "ops".into()];
        let all = Config::excluding(Config::scopes(&[], 4).unwrap(), &excluded).unwrap();
        assert_eq!(
            all[0].exclusion_selector().as_deref(),
            Some("metadata.namespace!=kube-system,metadata.namespace!=ops")
        );
        let one = Config::scopes(&["shop".into()], 4).unwrap();
        let one = Config::excluding(one, &excluded).unwrap();
        assert_eq!(one[0].exclusion_selector(), None);
        assert_eq!(Config::default().exclusion_selector(), None);
    }

    #[test]
    fn a_namespace_watched_and_excluded_is_refused() {
        let scopes = Config::scopes(&["ops".into()], 4).unwrap();
        let err = Config::excluding(scopes, &["ops".into()]).unwrap_err();
        assert!(err.to_string().contains("--exclude-namespaces"), "{err}");
    }

    #[test]
    fn rejects_what_cannot_be_a_namespace() {
        for bad in ["Shop", "-shop", "shop-", "a_b", &"x".repeat(64)] {
            let err = Config::scopes(&[bad.to_owned()], 4).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}

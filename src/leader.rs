//! Leader election on a `coordination.k8s.io` Lease, so several replicas are safe: only the
//! process holding the Lease runs controllers and writes; the others wait on standby and
//! take over once the holder stops renewing it (killed) or releases it (shut down).
//!
//! A leader that loses the Lease stops its controllers and exits rather than carrying on:
//! another process may already be acting on the same objects, and a fresh start re-reads
//! everything from the API server.
//!
//! It also stops by its own clock: each write of the Lease that the API server accepts is
//! timed (on the monotonic clock, from when it was sent), and a leader whose last accepted
//! renewal is older than the lease duration minus a margin ([`local_expiry`]) counts the
//! Lease as lost even while its renewal request hangs: by then a standby may hold it.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Where and how to hold the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease: String,
    /// This process's identity in the Lease (the pod name in a cluster).
    pub identity: String,
    /// How long a holder's claim lasts after its last renewal.
    pub duration: Duration,
    /// How long before its claim expires the holder renews it.
    pub renew_before: Duration,
}

/// What can go wrong with leader election.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The durations cannot work: renewal must come before expiry.
    #[error(
        "--lease-renew-before ({renew_before:?}) must be shorter than --lease-duration ({duration:?}), and both at least 1s"
    )]
    Timing {
        /// The Lease duration asked for.
        duration: Duration,
        /// The renewal margin asked for.
        renew_before: Duration,
    },
    /// The Lease could not be read or created.
    #[error(
        "cannot use the Lease {namespace}/{lease} for leader election: {source}; the operator needs get and patch on that Lease and create on leases in that namespace"
    )]
    Lease {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        lease: String,
        /// What the API server said.
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The client for the Lease could not be built.
    #[error("cannot build the Kubernetes client for leader election: {0}")]
    Client(#[source] kube::Error),
}

impl Election {
    /// Checks the timing before anything talks to the cluster.
    pub fn validate(&self) -> Result<(), Error> {
        let whole = |d: Duration| d.as_secs() >= 1;
        if !whole(self.duration) || !whole(self.renew_before) || self.renew_before >= self.duration
        {
            return Err(Error::Timing {
                duration: self.duration,
                renew_before: self.renew_before,
            });
        }
        Ok(())
    }
}

/// The Lease, held.
pub struct Leadership {
    held: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    election: Election,
    renewals: Renewals,
    /// When the Lease was found held, for a holder that has not written it yet (a restart
    /// with the same identity within the lease duration).
    since: Instant,
}

/// How long before the Lease expires by this process's clock the leader stops acting: half
/// the renewal margin, at most a second (a standby, by its own clock, waits the whole lease
/// duration after the renewal the API server recorded, which came after it was sent).
pub fn expiry_margin(renew_before: Duration) -> Duration {
    (renew_before / 2).min(Duration::from_secs(1))
}

/// The instant a leader whose last accepted renewal was sent at `last_renewal` stops acting:
/// `last_renewal + duration - expiry_margin(renew_before)`; `None` if that is beyond what the
/// clock holds (then only the Lease itself says it is lost).
pub fn local_expiry(
    last_renewal: Instant,
    duration: Duration,
    renew_before: Duration,
) -> Option<Instant> {
    last_renewal.checked_add(duration.saturating_sub(expiry_margin(renew_before)))
}

/// When the last write of the Lease that the API server accepted was sent.
#[derive(Clone, Debug, Default)]
pub struct Renewals(Arc<Mutex<Option<Instant>>>);

impl Renewals {
    fn record(&self, sent: Instant) {
        if let Ok(mut last) = self.0.lock()
            && last.is_none_or(|last| last < sent)
        {
            *last = Some(sent);
        }
    }

    /// The send instant of the last accepted write, if any.
    pub fn last(&self) -> Option<Instant> {
        self.0.lock().ok().and_then(|last| *last)
    }
}

/// A client layer that times every accepted write of one Lease into [`Renewals`]: the lease
/// manager renews it but does not say when a renewal succeeded.
#[derive(Clone)]
struct ObserveLease {
    /// The end of the Lease's URL path, `/namespaces/<ns>/leases/<name>`.
    path: String,
    renewals: Renewals,
}

impl<S> tower::Layer<S> for ObserveLease {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observed {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ObserveLease`] wraps a client's stack in.
#[derive(Clone)]
struct Observed<S> {
    inner: S,
    layer: ObserveLease,
}

impl<S, B, R> tower::Service<http::Request<B>> for Observed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let write = request.method() != http::Method::GET
            && request.uri().path().ends_with(&self.layer.path);
        let sent = Instant::now();
        let renewals = self.layer.renewals.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if write && response.status().is_success() {
                renewals.record(sent);
            }
            Ok(response)
        })
    }
}

/// Waits until this process holds the Lease. Returns `None` if `stop` resolves first (the
/// process was asked to stop while on standby). The Lease is read and written with a client
/// built from `config` (with its timeouts) that times each accepted renewal.
pub async fn acquire(
    config: &kube::Config,
    election: Election,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Option<Leadership>, Error> {
    election.validate()?;
    let renewals = Renewals::default();
    let layer = ObserveLease {
        path: format!(
            "/namespaces/{}/leases/{}",
            election.namespace, election.lease
        ),
        renewals: renewals.clone(),
    };
    let client: Client = kube::client::ClientBuilder::try_from(config.clone())
        .map_err(Error::Client)?
        .with_layer(&layer)
        .build();
    let lease_error = |source| Error::Lease {
        namespace: election.namespace.clone(),
        lease: election.lease.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client, &election.lease)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration.as_secs())
        .with_grace(election.renew_before.as_secs())
        .with_field_manager(format!(
            "{}-leader-election",
            crate::well_known::FIELD_MANAGER
        ))
        .build()
        .await
        .map_err(lease_error)?;
    let (mut held, task) = manager.watch().await;
    info!(
        lease = %format!("{}/{}", election.namespace, election.lease),
        identity = %election.identity,
        "on standby: waiting to hold the leader Lease"
    );
    tokio::pin!(stop);
    loop {
        if *held.borrow_and_update() {
            info!(identity = %election.identity, "holding the leader Lease: starting controllers");
            let since = renewals.last().unwrap_or_else(Instant::now);
            return Ok(Some(Leadership {
                held,
                task,
                election,
                renewals,
                since,
            }));
        }
        tokio::select! {
            changed = held.changed() => {
                if changed.is_err() {
                    // The manager's task ended: it failed for good.
                    return match task.await {
                        Ok(Err(source)) => Err(lease_error(source)),
                        _ => Ok(None),
                    };
                }
            }
            () = &mut stop => {
                drop(held);
                let _ = task.await;
                return Ok(None);
            }
        }
    }
}

impl Leadership {
    /// Resolves when this process no longer holds the Lease: the lease manager says so (or
    /// ended), or by this process's clock the Lease expired without an accepted renewal
    /// ([`local_expiry`]), even if the renewal request is still waiting for an answer.
    pub async fn lost(&mut self) {
        loop {
            if !*self.held.borrow_and_update() {
                return;
            }
            let last = self.renewals.last().unwrap_or(self.since).max(self.since);
            let expiry = local_expiry(last, self.election.duration, self.election.renew_before);
            let expired = async {
                match expiry {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.held.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = expired => {
                    let renewed = self.renewals.last().is_some_and(|at| at > last);
                    if !renewed {
                        warn!(
                            identity = %self.election.identity,
                            lease_duration = ?self.election.duration,
                            "could not renew the leader Lease before it expires by this process's clock: a standby may hold it now, so this process stops acting"
                        );
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up, so a standby takes over at once instead of after it expires.
    pub async fn release(self) {
        drop(self.held);
        match self.task.await {
            Ok(Ok(_)) => info!(identity = %self.election.identity, "released the leader Lease"),
            Ok(Err(err)) => {
                warn!(%err, "could not release the leader Lease; it expires on its own")
            }
            Err(err) => warn!(%err, "the leader election task failed"),
        }
    }
}

/// This process's identity: the pod name in a cluster, else the host name and process id.
pub fn default_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME").map(|h| format!("{h}-{}", std::process::id())))
        .unwrap_or_else(|_| format!("runbook-operator-{}", std::process::id()))
}

/// The Lease's namespace when none is given: the pod's own namespace in a cluster, else
/// `default`.
pub fn default_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|ns| ns.trim().to_owned())
        })
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn election(duration: u64, renew_before: u64) -> Election {
        Election {
            namespace: "ops".into(),
            lease: "runbook-operator".into(),
            identity: "a".into(),
            duration: Duration::from_secs(duration),
            renew_before: Duration::from_secs(renew_before),
        }
    }

    #[test]
    fn a_leader_stops_by_its_clock_before_the_lease_expires() {
        let renewed = Instant::now();
        let at = |d, r| local_expiry(renewed, Duration::from_secs(d), Duration::from_secs(r));
        // Defaults: a 15s Lease renewed 5s before expiry: stop 1s before it expires.
        assert_eq!(at(15, 5), Some(renewed + Duration::from_secs(14)));
        // A short renewal margin: half of it, after the renewal was due.
        assert_eq!(at(6, 1), Some(renewed + Duration::from_millis(5500)));
        // Never before the manager's own renewal is due (duration - renew_before).
        for (d, r) in [(15, 5), (6, 2), (2, 1), (60, 59)] {
            let due = renewed + Duration::from_secs(d - r);
            assert!(at(d, r).is_some_and(|stop| stop > due), "{d}/{r}");
            assert!(
                at(d, r).is_some_and(|stop| stop < renewed + Duration::from_secs(d)),
                "{d}/{r}"
            );
        }
        // A duration beyond what the clock holds never expires locally, and never panics.
        assert_eq!(at(u64::MAX, 5), None);
    }

    #[test]
    fn only_a_later_renewal_moves_the_last_one() {
        let renewals = Renewals::default();
        assert_eq!(renewals.last(), None);
        let first = Instant::now();
        let later = first + Duration::from_secs(3);
        renewals.record(later);
        // A slow earlier write answered after a later one does not move it back.
        renewals.record(first);
        assert_eq!(renewals.last(), Some(later));
    }

    #[tokio::test]
    async fn the_layer_times_accepted_writes_of_the_lease_only() {
        use tower::{Layer as _, Service as _};
        let renewals = Renewals::default();
        let layer = ObserveLease {
            path: "/namespaces/ops/leases/runbook-operator".into(),
            renewals: renewals.clone(),
        };
        let answer = |code: u16| {
            tower::service_fn(move |_req: http::Request<()>| async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(code)
                        .body(())
                        .expect("response"),
                )
            })
        };
        let request = |method: &str, path: &str| {
            http::Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .expect("request")
        };
        let lease = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/runbook-operator";
        let mut ok = layer.layer(answer(200));
        ok.call(request("GET", lease)).await.expect("answer");
        ok.call(request("PATCH", "/api/v1/namespaces/ops/events/x"))
            .await
            .expect("answer");
        assert_eq!(
            renewals.last(),
            None,
            "reads and other objects do not count"
        );
        let mut refused = layer.layer(answer(409));
        refused.call(request("PATCH", lease)).await.expect("answer");
        assert_eq!(renewals.last(), None, "a refused renewal does not count");
        let before = Instant::now();
        ok.call(request("PATCH", &format!("{lease}?fieldManager=x")))
            .await
            .expect("answer");
        assert!(renewals.last().is_some_and(|at| at >= before));
    }

    #[test]
    fn renewal_must_come_before_expiry() {
        assert!(election(15, 5).validate().is_ok());
        let err = election(5, 5).validate().unwrap_err().to_string();
        assert!(err.contains("--lease-renew-before"), "{err}");
        assert!(election(5, 0).validate().is_err());
        assert!(election(0, 0).validate().is_err());
    }
}

//! Leader election on a `coordination.k8s.io` Lease, so several replicas are safe: only the
//! process holding the Lease runs controllers and writes; the others wait on standby and
//! take over once the holder stops renewing it (killed) or releases it (shut down).
//!
//! A leader that loses the Lease stops its controllers and exits rather than carrying on:
//! another process may already be acting on the same objects, and a fresh start re-reads
//! everything from the API server.

use std::time::Duration;

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
}

/// Waits until this process holds the Lease. Returns `None` if `stop` resolves first (the
/// process was asked to stop while on standby).
pub async fn acquire(
    client: Client,
    election: Election,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Option<Leadership>, Error> {
    election.validate()?;
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
            return Ok(Some(Leadership {
                held,
                task,
                election,
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
    /// Resolves when this process no longer holds the Lease.
    pub async fn lost(&mut self) {
        loop {
            if !*self.held.borrow_and_update() {
                return;
            }
            if self.held.changed().await.is_err() {
                return;
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
    fn renewal_must_come_before_expiry() {
        assert!(election(15, 5).validate().is_ok());
        let err = election(5, 5).validate().unwrap_err().to_string();
        assert!(err.contains("--lease-renew-before"), "{err}");
        assert!(election(5, 0).validate().is_err());
        assert!(election(0, 0).validate().is_err());
    }
}

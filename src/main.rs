//! The `runbook-operator` command: print the CRDs or their reference, or run the controllers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::{FutureExt, StreamExt};
use kube::Client;
use tracing::info;

use runbook_operator::context::{Config, Context};
use runbook_operator::identity::Identities;
use runbook_operator::runtime::Shutdown;
use runbook_operator::{
    backup_policy, blue_green, crds, leader, maintenance_window, reference, runbook, runbook_run,
    server,
};

/// Operations runbooks, maintenance windows, blue-green releases and backup policies as
/// Kubernetes resources.
#[derive(Parser)]
#[command(name = "runbook-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the `run` variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as YAML, or write one file per kind.
    Crd {
        /// Write `<plural>.<group>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print the Markdown field reference of every kind, rendered from the CRDs.
    Docs {
        /// Write the reference to this file (e.g. `docs/reference.md`) instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Serve `GET /health` (200, `ok`) and log every request: a stand-in for a Service's pods
    /// when the cluster only simulates them (kwok), so the local demo (`make run`) can validate
    /// a blue-green release through its preview Service (with `run --resolve`).
    DemoBackend {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18090")]
        address: SocketAddr,
    },
    /// Run the controllers against the cluster of the current kubeconfig (or in-cluster).
    Run {
        /// Watch only these namespaces, comma-separated or repeated (default: all namespaces).
        /// Each gets its own set of controllers, so the operator needs RBAC in these
        /// namespaces only (a Role per namespace instead of a ClusterRole).
        #[arg(long, env = "WATCH_NAMESPACE", value_delimiter = ',')]
        namespace: Vec<String>,
        /// Address of the /healthz, /readyz and /metrics server.
        #[arg(long, env = "PROBE_ADDR", default_value = "127.0.0.1:8080")]
        probe_addr: SocketAddr,
        /// Reconciles each controller runs at once (0: no limit). Each holds at most one
        /// object; http and notify requests are sent outside the reconciles, in their own
        /// pool (`--max-outbound-requests`).
        #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = runbook_operator::context::DEFAULT_CONCURRENCY)]
        max_concurrent_reconciles: u16,
        /// Log format.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Hold a Lease before running the controllers, so several replicas are safe: only the
        /// holder acts, the others wait on standby.
        #[arg(long, env = "LEADER_ELECT")]
        leader_elect: bool,
        /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
        #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
        leader_election_namespace: Option<String>,
        /// Name of the leader Lease.
        #[arg(
            long,
            env = "LEADER_ELECTION_LEASE",
            default_value = "runbook-operator"
        )]
        leader_election_lease: String,
        /// Seconds a leader's claim lasts after its last renewal: a standby takes over at most
        /// this long after the leader died.
        #[arg(long, env = "LEASE_DURATION", default_value_t = 15)]
        lease_duration: u64,
        /// Seconds before its claim expires that the leader renews it.
        #[arg(long, env = "LEASE_RENEW_BEFORE", default_value_t = 5)]
        lease_renew_before: u64,
        /// ServiceAccount (of the object's own namespace) whose rights an object without
        /// `spec.serviceAccountName` acts with: the operator impersonates it for every request
        /// made on the object's behalf. Give it no rights and nothing acts until a namespace
        /// admin grants some (lockdown).
        #[arg(long, env = "DEFAULT_SERVICE_ACCOUNT", default_value = runbook_operator::identity::DEFAULT_SERVICE_ACCOUNT)]
        default_service_account: String,
        /// Requests of http and notify steps sent at once, over all namespaces; more wait
        /// for a slot (the step says so). The reconciles never wait on them.
        #[arg(long, env = "MAX_OUTBOUND_REQUESTS", default_value_t = runbook_operator::outbound::DEFAULT_MAX_IN_FLIGHT)]
        max_outbound_requests: usize,
        /// Requests of http and notify steps sent at once for the runs of one namespace, so
        /// one namespace's slow endpoints leave slots to the others.
        #[arg(long, env = "MAX_OUTBOUND_REQUESTS_PER_NAMESPACE", default_value_t = runbook_operator::outbound::DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE)]
        max_outbound_requests_per_namespace: usize,
        /// How long a deleted RunbookRun's finally steps may still run, from its
        /// deletionTimestamp (e.g. `5m`, `90s`): after it, steps still unfinished (an approval,
        /// a sleep, a Job, an http call) are skipped, a Warning Event names them, and the
        /// finalizer is removed, so a run never stays Terminating forever.
        #[arg(long, env = "DELETION_GRACE", default_value = runbook_operator::context::DEFAULT_DELETION_GRACE, value_parser = parse_grace)]
        deletion_grace: std::time::Duration,
        #[command(flatten)]
        fence: FenceArgs,
        #[command(flatten)]
        timeouts: TimeoutArgs,
        #[command(flatten)]
        alerts: AlertArgs,
    },
}

/// The Alertmanager webhook receiver (off unless `--alerts-addr` is set).
#[derive(clap::Args)]
struct AlertArgs {
    /// Address of the alert receiver, e.g. `0.0.0.0:9443`: Alertmanager's webhook receiver
    /// posts to `/v1/alerts/alertmanager` there. Unset: no receiver.
    #[arg(long, env = "ALERTS_ADDR")]
    alerts_addr: Option<SocketAddr>,
    /// File holding the bearer token every request must carry (`Authorization: Bearer`);
    /// required with `--alerts-addr`. Re-read on every request, so a rotated Secret applies.
    #[arg(long, env = "ALERTS_TOKEN_FILE")]
    alerts_token_file: Option<PathBuf>,
    /// PEM certificate chain for TLS on the receiver (with `--alerts-tls-key-file`).
    #[arg(long, env = "ALERTS_TLS_CERT_FILE", requires = "alerts_tls_key_file")]
    alerts_tls_cert_file: Option<PathBuf>,
    /// PEM private key for TLS on the receiver.
    #[arg(long, env = "ALERTS_TLS_KEY_FILE", requires = "alerts_tls_cert_file")]
    alerts_tls_key_file: Option<PathBuf>,
    /// Largest request body the receiver reads; larger ones get 413.
    #[arg(long, env = "ALERTS_MAX_BODY_BYTES", default_value_t = runbook_operator::alerts::receiver::DEFAULT_MAX_BODY_BYTES)]
    alerts_max_body_bytes: usize,
}

impl AlertArgs {
    /// The receiver's settings, checked; `None` when it is off.
    fn settings(self) -> anyhow::Result<Option<runbook_operator::alerts::receiver::Settings>> {
        let Some(addr) = self.alerts_addr else {
            return Ok(None);
        };
        let Some(token_file) = self.alerts_token_file else {
            bail!(
                "--alerts-addr needs --alerts-token-file: the receiver accepts only requests carrying that bearer token"
            );
        };
        let settings = runbook_operator::alerts::receiver::Settings {
            addr,
            token_file,
            tls: self.alerts_tls_cert_file.zip(self.alerts_tls_key_file),
            max_body_bytes: self.alerts_max_body_bytes,
        };
        runbook_operator::alerts::receiver::check(&settings)?;
        Ok(Some(settings))
    }
}

/// How long a request to the API server may take before it fails.
#[derive(clap::Args)]
struct TimeoutArgs {
    /// Seconds to connect to the API server before a request fails (lists and watches too).
    #[arg(long, env = "API_CONNECT_TIMEOUT", default_value_t = 10)]
    api_connect_timeout: u64,
    /// Seconds a request to the API server may wait for the next bytes of its answer before
    /// it fails (and is retried): a hung connection then never wedges a reconcile or the
    /// leader's renewal. Watches use their own client whose read timeout (350 s) outlasts the
    /// 290 s a watch may stay silent.
    #[arg(long, env = "API_READ_TIMEOUT", default_value_t = 30)]
    api_read_timeout: u64,
}

impl TimeoutArgs {
    /// `config` with these timeouts for ordinary requests, and the same for watches with a
    /// read timeout that outlasts a quiet watch.
    fn apply(&self, mut config: kube::Config) -> anyhow::Result<(kube::Config, kube::Config)> {
        if self.api_connect_timeout == 0 || self.api_read_timeout == 0 {
            bail!(
                "--api-connect-timeout and --api-read-timeout must be at least 1 (seconds): a request without a bound can wedge a reconcile forever"
            );
        }
        config.connect_timeout = Some(Duration::from_secs(self.api_connect_timeout));
        config.read_timeout = Some(Duration::from_secs(self.api_read_timeout));
        // The read timeout counts from when a request is sent, not from when its pooled
        // connection went idle.
        config.reset_reader_on_write = true;
        let mut watch = config.clone();
        watch.read_timeout = Some(
            runbook_operator::context::WATCH_READ_TIMEOUT
                .max(Duration::from_secs(self.api_read_timeout)),
        );
        Ok((config, watch))
    }
}

/// Limits on what steps reach and touch, beyond RBAC.
#[derive(clap::Args)]
struct FenceArgs {
    /// Namespaces never watched nor reconciled, comma-separated or repeated (e.g.
    /// `kube-system`): their objects are left out of every list and watch by a field selector.
    #[arg(long, env = "EXCLUDE_NAMESPACES", value_delimiter = ',')]
    exclude_namespaces: Vec<String>,
    /// Address ranges http and notify steps may not connect to, comma-separated CIDRs (e.g.
    /// the node and control-plane networks), on top of the ranges always refused (link-local,
    /// cloud metadata, the API server).
    #[arg(long, env = "DENY_EGRESS_CIDRS", value_delimiter = ',')]
    deny_egress_cidrs: Vec<String>,
    /// Let http and notify steps connect to loopback addresses (127.0.0.0/8, ::1): for a
    /// local operator process and its tests only; in a pod, loopback is the operator itself.
    #[arg(long, env = "ALLOW_LOOPBACK_EGRESS")]
    allow_loopback_egress: bool,
    /// Guarded kinds patch steps may write anyway (Secret, ServiceAccount, RBAC kinds, the
    /// operator's own kinds), as `Kind` for the core group or `Kind.group`
    /// (`Role.rbac.authorization.k8s.io`, `*.ops.runbook.dev`), comma-separated.
    #[arg(long, env = "ALLOW_PATCH_KINDS", value_delimiter = ',')]
    allow_patch_kinds: Vec<String>,
    /// Answer a host name without DNS, `HOST=ADDRESS:PORT`, repeated or comma-separated (like
    /// curl's `--resolve`): an operator running outside the cluster (`make run`) reaches a
    /// Service such as `storefront-preview.demo.svc` through a port-forward or a local
    /// stand-in. The answer is fenced like any other (a loopback address needs
    /// `--allow-loopback-egress`).
    #[arg(long, env = "RESOLVE", value_delimiter = ',')]
    resolve: Vec<String>,
}

impl FenceArgs {
    /// The fence, with the API server's addresses as they are now.
    /// `cluster_wide`: every namespace is watched, so the operator may list the API server's
    /// endpoints (a namespaced install has no right outside its namespaces and does not try).
    async fn fence(
        &self,
        config: &kube::Config,
        client: &Client,
        cluster_wide: bool,
    ) -> anyhow::Result<runbook_operator::context::Fence> {
        let deny = self
            .deny_egress_cidrs
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| runbook_operator::fence::Cidr::parse(c).context("--deny-egress-cidrs"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let egress = runbook_operator::fence::EgressPolicy {
            deny,
            allow_loopback: self.allow_loopback_egress,
            api_server: api_server_addresses(config, client, cluster_wide).await,
            resolve: self
                .resolve
                .iter()
                .filter(|r| !r.trim().is_empty())
                .map(|r| runbook_operator::fence::Override::parse(r).context("--resolve"))
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        info!(
            api_server = ?egress.api_server,
            deny = ?self.deny_egress_cidrs,
            allow_loopback = egress.allow_loopback,
            resolve = ?self.resolve,
            "http and notify steps may not connect to link-local, cloud metadata and API server addresses"
        );
        Ok(runbook_operator::context::Fence {
            egress: Arc::new(egress),
            allow_patch_kinds: self.allow_patch_kinds.clone(),
        })
    }
}

/// The API server's addresses: its URL's host (from the kubeconfig or the pod), resolved now,
/// KUBERNETES_SERVICE_HOST (the `kubernetes` Service, inside a cluster), and, when every
/// namespace is watched, the endpoints of that Service (a pod reaches the API server on those
/// too).
async fn api_server_addresses(
    config: &kube::Config,
    client: &Client,
    cluster_wide: bool,
) -> Vec<SocketAddr> {
    let mut targets: Vec<(String, u16)> = Vec::new();
    let url = &config.cluster_url;
    if let Some(host) = url.host() {
        let port = url.port_u16().unwrap_or(443);
        targets.push((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        ));
    }
    if cluster_wide {
        targets.extend(api_server_endpoints(client.clone()).await);
    }
    if let Ok(host) = std::env::var("KUBERNETES_SERVICE_HOST") {
        let port = std::env::var("KUBERNETES_SERVICE_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(443);
        targets.push((host, port));
    }
    let mut addrs = Vec::new();
    for (host, port) in targets {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(found) => addrs.extend(found),
            Err(err) => tracing::warn!(%host, %err, "could not resolve the API server's host"),
        }
    }
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The addresses behind the `default/kubernetes` Service, best effort: without the right to
/// list them (a namespaced install) the Service's address and the URL's host remain.
async fn api_server_endpoints(client: Client) -> Vec<(String, u16)> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, "default");
    let params = kube::api::ListParams::default().labels("kubernetes.io/service-name=kubernetes");
    let listed = tokio::time::timeout(Duration::from_secs(5), api.list(&params)).await;
    let slices = match listed {
        Ok(Ok(list)) => list.items,
        Ok(Err(err)) => {
            tracing::warn!(%err, "could not list the API server's endpoints (the Service default/kubernetes); list them in --deny-egress-cidrs");
            return Vec::new();
        }
        Err(_) => return Vec::new(),
    };
    let mut found = Vec::new();
    for slice in slices {
        let ports: Vec<u16> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
            .collect();
        for endpoint in slice.endpoints.iter().flatten() {
            for address in &endpoint.addresses {
                for port in &ports {
                    found.push((address.clone(), *port));
                }
            }
        }
    }
    found
}

/// `--deletion-grace`: a duration such as `5m`, `90s` or `1h30m`.
fn parse_grace(text: &str) -> Result<Duration, String> {
    runbook_operator::duration::parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::Docs { out } => print_docs(out),
        Command::DemoBackend { address } => demo_backend(address).await,
        Command::Run {
            namespace,
            probe_addr,
            max_concurrent_reconciles,
            log_format,
            leader_elect,
            leader_election_namespace,
            leader_election_lease,
            lease_duration,
            lease_renew_before,
            default_service_account,
            max_outbound_requests,
            max_outbound_requests_per_namespace,
            deletion_grace,
            fence,
            timeouts,
            alerts,
        } => {
            init_logging(log_format);
            let alerts = alerts.settings()?;
            let election = leader_elect.then(|| leader::Election {
                namespace: leader_election_namespace.unwrap_or_else(leader::default_namespace),
                lease: leader_election_lease,
                identity: leader::default_identity(),
                duration: Duration::from_secs(lease_duration),
                renew_before: Duration::from_secs(lease_renew_before),
            });
            if let Some(election) = &election {
                election.validate()?;
            }
            if !runbook_operator::names::is_dns_subdomain(&default_service_account) {
                bail!(
                    "--default-service-account {default_service_account:?} is not a ServiceAccount name: use lowercase letters, digits, '-' and '.', at most 253"
                );
            }
            let scopes = Config::scopes(&namespace, max_concurrent_reconciles)?;
            let scopes = Config::excluding(scopes, &fence.exclude_namespaces)?;
            // http and notify steps use rustls with the same crypto provider as the Kubernetes
            // client.
            let _ = rustls::crypto::ring::default_provider().install_default();
            // One client configuration: the operator's own client, the fence's look-up of the
            // API server, and (impersonating) every object's identity are built from it.
            let config = kube::Config::infer().await.context(
                "cannot build a Kubernetes client: set KUBECONFIG or run inside a cluster",
            )?;
            let (config, watch_config) = timeouts.apply(config)?;
            let client = Client::try_from(config.clone()).context(
                "cannot build a Kubernetes client: set KUBECONFIG or run inside a cluster",
            )?;
            let watch_client = Client::try_from(watch_config).context(
                "cannot build a Kubernetes client: set KUBECONFIG or run inside a cluster",
            )?;
            let cluster_wide = scopes.iter().any(|c| c.namespace.is_none());
            let fence = Arc::new(fence.fence(&config, &client, cluster_wide).await?);
            let scopes = scopes
                .into_iter()
                .map(|config| Config {
                    fence: fence.clone(),
                    deletion_grace: runbook_operator::context::DeletionGrace(deletion_grace),
                    ..config
                })
                .collect();
            let outbound = runbook_operator::outbound::Pool::new(
                max_outbound_requests,
                max_outbound_requests_per_namespace,
            );
            run(
                scopes,
                probe_addr,
                election,
                Identities::new(config.clone(), default_service_account),
                Clients {
                    config,
                    client,
                    watch_client,
                },
                outbound,
                alerts,
            )
            .await
        }
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    for crd in crds::all() {
        let yaml = crds::to_yaml(&crd)?;
        match &out_dir {
            Some(dir) => {
                let path = dir.join(crds::file_name(&crd));
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            None => print!("---\n{yaml}"),
        }
    }
    Ok(())
}

/// The `demo-backend` server: 200 `ok` on `/health`, 404 elsewhere, one log line per request.
async fn demo_backend(address: SocketAddr) -> anyhow::Result<()> {
    use axum::http::{StatusCode, Uri};
    async fn answer(method: axum::http::Method, uri: Uri) -> (StatusCode, &'static str) {
        let found = uri.path() == "/health";
        println!(
            "[demo-backend] {method} {uri} -> {}",
            if found { 200 } else { 404 }
        );
        if found {
            (StatusCode::OK, "ok")
        } else {
            (
                StatusCode::NOT_FOUND,
                "not found: this stand-in serves /health only",
            )
        }
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("demo-backend: cannot listen on {address}"))?;
    println!(
        "[demo-backend] serving GET /health on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, axum::Router::new().fallback(answer))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn print_docs(out: Option<PathBuf>) -> anyhow::Result<()> {
    let page = reference::render(&crds::all());
    match out {
        Some(path) => {
            std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{page}");
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The operator's client configuration and the clients built from it.
struct Clients {
    /// With the timeouts, for the leader's own client.
    config: kube::Config,
    /// For ordinary requests.
    client: Client,
    /// For lists and watches.
    watch_client: Client,
}

async fn run(
    scopes: Vec<Config>,
    probe_addr: SocketAddr,
    election: Option<leader::Election>,
    identities: Identities,
    clients: Clients,
    outbound: runbook_operator::outbound::Pool,
    alerts: Option<runbook_operator::alerts::receiver::Settings>,
) -> anyhow::Result<()> {
    let Clients {
        config,
        client,
        watch_client,
    } = clients;
    let started = Instant::now();
    check_crds_installed(&client).await?;
    let namespaces: Vec<&str> = scopes
        .iter()
        .filter_map(|c| c.namespace.as_deref())
        .collect();
    let excluded = scopes
        .first()
        .map(|c| c.exclude_namespaces.clone())
        .unwrap_or_default();
    info!(
        ?namespaces,
        ?excluded,
        "starting runbook-operator (no namespaces: all of them)"
    );

    info!(
        default_service_account = identities.default_service_account(),
        "objects without spec.serviceAccountName act as this ServiceAccount of their namespace"
    );
    let ctx = Arc::new(Context {
        outbound,
        ..Context::with_identities(client.clone(), Config::default(), identities)
            .with_watch_client(watch_client)
    });
    let stop: Shutdown = stop_signal().boxed().shared();
    let ready = Arc::new(AtomicBool::new(false));
    let standby = Arc::new(AtomicBool::new(election.is_some()));
    let liveness = server::Liveness::default();
    let probe = server::Probe {
        ready: ready.clone(),
        standby: standby.clone(),
        metrics: ctx.metrics.clone(),
        refused: ctx.refused_lists.clone(),
        liveness: liveness.clone(),
    };
    let mut http = tokio::spawn(server::serve(probe_addr, probe, stop.clone()));
    info!(%probe_addr, "serving /healthz, /readyz and /metrics");
    // The alert receiver answers on every replica, leader or not: it keeps its own Runbook
    // caches, and run names derived from the firing make two replicas' runs one.
    let receiver =
        alerts.map(|settings| start_receiver(settings, &ctx, &scopes, &liveness, stop.clone()));

    let mut leadership = match election {
        None => None,
        // The probe server ending while on standby ends the process too: the kubelet would
        // otherwise find a process that answers no probe.
        Some(election) => tokio::select! {
            acquired = leader::acquire(&config, election, stop.clone()) => match acquired? {
                Some(leadership) => Some(leadership),
                None => {
                    info!("stopped while on standby");
                    return Ok(());
                }
            },
            served = &mut http => return Err(probe_server_ended(served, probe_addr)),
        },
    };
    standby.store(false, Ordering::Relaxed);
    ctx.metrics.leader.set(1);
    // Controllers stop on a stop signal, or as soon as the Lease is lost.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let mut lost_tx = Some(lost_tx);
    let shutdown: Shutdown = futures::future::select(stop.clone(), lost_rx)
        .map(|_| ())
        .boxed()
        .shared();

    let (synced_tx, mut synced_rx) = tokio::sync::mpsc::channel(8);
    let mut controllers = Vec::new();
    // One set of controllers per watched namespace, sharing the client, Event recorder and
    // metrics: each set lists and watches only its namespace, which a namespaced Role allows.
    for config in scopes {
        let scope = config.namespace.clone();
        let ctx = Arc::new(Context {
            config,
            ..(*ctx).clone()
        });
        // RunbookRuns are watched and cached once per scope, for both controllers that read
        // them.
        let mut runs = runbook_operator::runtime::watch_decoded_shared::<runbook_run::RunbookRun>(
            &ctx,
            runbook_run::controller::NAME,
            2,
            shutdown.clone(),
        );
        let (Some(for_runs), Some(for_runbooks)) = (runs.handles.pop(), runs.handles.pop()) else {
            bail!("the shared RunbookRun watch gave no subscription");
        };
        // MaintenanceWindows likewise, for the three controllers that read them.
        let mut windows = runbook_operator::runtime::watch_decoded_shared::<
            maintenance_window::MaintenanceWindow,
        >(&ctx, maintenance_window::NAME, 3, shutdown.clone());
        let (Some(windows_for_windows), Some(windows_for_runs), Some(windows_for_releases)) = (
            windows.handles.pop(),
            windows.handles.pop(),
            windows.handles.pop(),
        ) else {
            bail!("the shared MaintenanceWindow watch gave no subscription");
        };
        let named = |name: &str| match &scope {
            Some(ns) => format!("{name}/{ns}"),
            None => name.to_owned(),
        };
        let (c, s, t) = (ctx.clone(), shutdown.clone(), synced_tx.clone());
        controllers.push(liveness.spawn(
            named(runbook::controller::NAME),
            runbook::controller::run(c, s, t, (runs.cache.clone(), for_runbooks)),
        ));
        let (c, s, t) = (ctx.clone(), shutdown.clone(), synced_tx.clone());
        controllers.push(liveness.spawn(
            named(runbook_run::controller::NAME),
            runbook_run::controller::run(
                c,
                s,
                t,
                (runs.cache, for_runs),
                (windows.cache.clone(), windows_for_runs),
            ),
        ));
        let (c, s, t) = (ctx.clone(), shutdown.clone(), synced_tx.clone());
        controllers.push(liveness.spawn(
            named(maintenance_window::NAME),
            maintenance_window::controller::run(
                c,
                s,
                t,
                (windows.cache.clone(), windows_for_windows),
            ),
        ));
        let (c, s, t) = (ctx.clone(), shutdown.clone(), synced_tx.clone());
        controllers.push(liveness.spawn(
            named(blue_green::controller::NAME),
            blue_green::controller::run(c, s, t, (windows.cache, windows_for_releases)),
        ));
        let (c, s, t) = (ctx.clone(), shutdown.clone(), synced_tx.clone());
        controllers.push(liveness.spawn(
            named(backup_policy::controller::NAME),
            backup_policy::controller::run(c, s, t),
        ));
    }
    drop(synced_tx);
    let metrics = ctx.metrics.clone();
    let total = controllers.len();
    controllers.extend(receiver.into_iter().flatten());
    tokio::spawn(async move {
        let mut count = 0;
        while synced_rx.recv().await.is_some() {
            count += 1;
            if count == total {
                ready.store(true, Ordering::Relaxed);
                metrics.ready.set(1);
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "caches synced; ready"
                );
            }
        }
    });

    // Until every controller has stopped: a controller or the probe server that ends before
    // shutdown ends the process (non-zero, so the kubelet restarts it) rather than leave it
    // half alive; a lost Lease stops the controllers.
    let all_ended = server::until_all_end(controllers, shutdown.clone());
    tokio::pin!(all_ended);
    let mut lost = false;
    let mut served = None;
    loop {
        tokio::select! {
            ended = &mut all_ended => match ended {
                Ok(()) => break,
                Err(early) => {
                    tracing::error!(controller = %early.name, how = %early.how, "a controller ended before shutdown: exiting so that the operator is restarted");
                    return Err(early.into());
                }
            },
            () = async {
                match leadership.as_mut() {
                    Some(leadership) => leadership.lost().await,
                    None => futures::future::pending().await,
                }
            }, if !lost => {
                lost = true;
                ctx.metrics.leader.set(0);
                if let Some(tx) = lost_tx.take() {
                    let _ = tx.send(());
                }
            },
            ended = &mut http, if served.is_none() => {
                if stop.peek().is_none() {
                    return Err(probe_server_ended(ended, probe_addr));
                }
                served = Some(ended);
            },
        }
    }
    if lost {
        bail!(
            "lost the leader Lease (or could not renew it before it expired): stopped the controllers and exit, so only the new leader acts; a restart waits on standby"
        );
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    let served = match served {
        Some(served) => served,
        None => http.await,
    };
    served
        .context("the probe server task panicked")?
        .with_context(|| format!("probe server on {probe_addr} failed"))?;
    info!("stopped");
    Ok(())
}

/// Starts the alert receiver and the Runbook watches it matches against (one per scope);
/// returns their tasks, which must run until shutdown like the controllers.
fn start_receiver(
    settings: runbook_operator::alerts::receiver::Settings,
    ctx: &Arc<Context>,
    scopes: &[Config],
    liveness: &server::Liveness,
    stop: Shutdown,
) -> Vec<server::Task> {
    use runbook_operator::alerts::{act, receiver};
    let mut tasks = Vec::new();
    let mut stores = Vec::new();
    let mut listed = Vec::new();
    for config in scopes {
        let scoped = Context {
            config: config.clone(),
            ..(**ctx).clone()
        };
        let (cache, stream) =
            runbook_operator::runtime::watch_decoded::<runbook::Runbook>(&scoped, act::NAME);
        stores.push(cache.store.clone());
        listed.push(runbook_operator::runtime::listed(&cache));
        let name = match &config.namespace {
            Some(ns) => format!("{}-runbooks/{ns}", act::NAME),
            None => format!("{}-runbooks", act::NAME),
        };
        let stop = stop.clone();
        tasks.push(liveness.spawn(name, async move {
            stream
                .take_until(stop)
                .for_each(|_| futures::future::ready(()))
                .await;
        }));
    }
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    tokio::spawn(async move {
        futures::future::join_all(listed).await;
        flag.store(true, Ordering::Relaxed);
        info!("alert receiver ready: Runbook caches synced");
    });
    let addr = settings.addr;
    let tls = settings.tls.is_some();
    let alerts = Arc::new(act::Alerts::new(ctx.clone(), stores));
    let metrics = ctx.metrics.clone();
    tasks.push(liveness.spawn(act::NAME, async move {
        if let Err(err) = receiver::serve(settings, alerts, ready, metrics, stop).await {
            tracing::error!(%addr, %err, "the alert receiver failed");
        }
    }));
    info!(%addr, tls, path = receiver::PATH, "serving the Alertmanager webhook receiver");
    tasks
}

/// The error for a probe server that ended before shutdown.
fn probe_server_ended(
    ended: Result<std::io::Result<()>, tokio::task::JoinError>,
    probe_addr: SocketAddr,
) -> anyhow::Error {
    let how = match ended {
        Ok(Ok(())) => "it returned".to_owned(),
        Ok(Err(err)) => err.to_string(),
        Err(err) => err.to_string(),
    };
    tracing::error!(%probe_addr, how, "the probe server ended before shutdown: exiting so that the operator is restarted");
    anyhow::anyhow!(
        "the probe server on {probe_addr} ended before shutdown ({how}); exiting so that the operator is restarted"
    )
}

/// Fails early, with the fix, when the CRDs are not installed: otherwise every watch would
/// retry forever with a 404.
async fn check_crds_installed(client: &Client) -> anyhow::Result<()> {
    let group = client
        .list_api_group_resources(&<runbook::Runbook as kube::Resource>::api_version(&()))
        .await;
    let resources = match group {
        Ok(list) => list
            .resources
            .into_iter()
            .map(|r| r.name)
            .collect::<Vec<_>>(),
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(err) => return Err(err).context("cannot reach the Kubernetes API server"),
    };
    let missing: Vec<String> = crds::all()
        .into_iter()
        .map(|crd| crd.spec.names.plural)
        .filter(|plural| !resources.contains(plural))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the CRDs for {} are not installed in this cluster: run `kubectl apply --server-side -f crds/` (or `make install`) first",
            missing.join(", ")
        );
    }
    Ok(())
}

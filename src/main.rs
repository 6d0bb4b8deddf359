//! The `runbook-operator` command: print the CRDs, or run the controllers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::FutureExt;
use kube::Client;
use tracing::info;

use runbook_operator::context::{Config, Context};
use runbook_operator::runtime::Shutdown;
use runbook_operator::{
    backup_policy, blue_green, crds, maintenance_window, runbook, runbook_run, server,
};

/// Operations runbooks, maintenance windows, blue-green releases and backup policies as
/// Kubernetes resources.
#[derive(Parser)]
#[command(name = "runbook-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as YAML, or write one file per kind.
    Crd {
        /// Write `<plural>.<group>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Run the controllers against the cluster of the current kubeconfig (or in-cluster).
    Run {
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Address of the /healthz, /readyz and /metrics server.
        #[arg(long, env = "PROBE_ADDR", default_value = "127.0.0.1:8080")]
        probe_addr: SocketAddr,
        /// Log format.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
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
        Command::Run {
            namespace,
            probe_addr,
            log_format,
        } => {
            init_logging(log_format);
            run(Config { namespace }, probe_addr).await
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

async fn run(config: Config, probe_addr: SocketAddr) -> anyhow::Result<()> {
    let started = Instant::now();
    // http and notify steps use rustls with the same crypto provider as the Kubernetes client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client: set KUBECONFIG or run inside a cluster")?;
    check_crds_installed(&client).await?;
    info!(namespace = ?config.namespace, "starting runbook-operator");

    let ctx = Arc::new(Context::new(client, config));
    let shutdown: Shutdown = stop_signal().boxed().shared();
    let ready = Arc::new(AtomicBool::new(false));
    let probe = server::Probe {
        ready: ready.clone(),
        metrics: ctx.metrics.clone(),
    };
    let http = tokio::spawn(server::serve(probe_addr, probe, shutdown.clone()));

    let (synced_tx, mut synced_rx) = tokio::sync::mpsc::channel(8);
    let controllers = [
        tokio::spawn(runbook::controller::run(
            ctx.clone(),
            shutdown.clone(),
            synced_tx.clone(),
        )),
        tokio::spawn(runbook_run::controller::run(
            ctx.clone(),
            shutdown.clone(),
            synced_tx.clone(),
        )),
        tokio::spawn(maintenance_window::controller::run(
            ctx.clone(),
            shutdown.clone(),
            synced_tx.clone(),
        )),
        tokio::spawn(blue_green::controller::run(
            ctx.clone(),
            shutdown.clone(),
            synced_tx.clone(),
        )),
        tokio::spawn(backup_policy::controller::run(
            ctx.clone(),
            shutdown.clone(),
            synced_tx.clone(),
        )),
    ];
    drop(synced_tx);
    let metrics = ctx.metrics.clone();
    let total = controllers.len();
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
    info!(%probe_addr, "serving /healthz, /readyz and /metrics");

    for controller in controllers {
        controller.await.context("a controller task panicked")?;
    }
    http.await
        .context("the probe server task panicked")?
        .with_context(|| format!("probe server on {probe_addr} failed"))?;
    info!("stopped");
    Ok(())
}

/// Fails early, with the fix, when the CRDs are not installed: otherwise every watch would
/// retry forever with a 404.
async fn check_crds_installed(client: &Client) -> anyhow::Result<()> {
    let group = client
        .list_api_group_resources("ops.runbook.dev/v1alpha1")
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

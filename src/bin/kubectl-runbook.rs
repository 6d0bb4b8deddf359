//! `kubectl runbook`: start and follow runbook runs, answer approvals, cancel runs, promote or
//! abort blue-green releases, request backups and list maintenance windows, from the shell.
//!
//! It only creates RunbookRuns and sets the operator's request annotations (one key, by merge
//! patch, field manager `runbook-operator`), so GitOps tools see no drift in what they manage.
//! The pure parts (objects, patches, checks, rendering) live in `runbook_operator::plugin`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};

use runbook_operator::backup_policy::BackupPolicy;
use runbook_operator::blue_green::BlueGreenRelease;
use runbook_operator::dashboard::server as dashboard;
use runbook_operator::maintenance_window::MaintenanceWindow;
use runbook_operator::plugin::{self, ReleaseRequest, Style, actions};
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::RunbookRun;

/// Operate runbook-operator from kubectl: run runbooks and follow their journal, approve and
/// cancel runs, promote or abort blue-green releases, back up now, list maintenance windows.
#[derive(Parser)]
#[command(
    name = "kubectl-runbook",
    bin_name = "kubectl runbook",
    version,
    after_help = "Exit status: 0 success; 1 error (the message says what and where); 2 bad usage;\n\
                  with `run --wait`: 3 the run Failed, 4 the run was Cancelled."
)]
struct Cli {
    /// Namespace (default: the kubeconfig context's namespace).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Draw trees and symbols with ASCII characters only.
    #[arg(long, global = true)]
    ascii: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a run of a Runbook (a new RunbookRun, trigger Manual).
    Run {
        /// The Runbook to run.
        runbook: String,
        /// A parameter value, KEY=VALUE (repeatable).
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Plan mode: Kubernetes changes are dry-run, http, notify and job steps skipped.
        #[arg(long)]
        plan: bool,
        /// Follow the run until it finishes, print its journal, and exit 0 only if it
        /// Succeeded.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (e.g. 10m, 1h); the run goes on.
        #[arg(long, requires = "wait", value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Approve the approval step STEP of a run, which must be waiting at it (needs the verb
    /// `approve` on runbookruns with the chart's admission policies).
    Approve {
        /// The RunbookRun.
        run: String,
        /// The approval step's name.
        step: String,
    },
    /// Reject the approval step STEP of a run: the step fails with reason Rejected (needs the
    /// verb `approve` on runbookruns with the chart's admission policies).
    Reject {
        /// The RunbookRun.
        run: String,
        /// The approval step's name.
        step: String,
    },
    /// Cancel a run: the current step stops, finally steps still run.
    Cancel {
        /// The RunbookRun.
        run: String,
    },
    /// Promote a BlueGreenRelease's current revision (needed with autoPromote: false).
    Promote {
        /// The BlueGreenRelease.
        release: String,
        /// Refuse unless this is still the current revision.
        #[arg(long)]
        revision: Option<String>,
        /// Skip the gates still ahead (prePromotion, autoPromoteAfter, postPromotion); a
        /// required maintenance window is still waited for. Recorded in status.history.
        #[arg(long)]
        full: bool,
    },
    /// Release an aborted or rolled-back revision of a BlueGreenRelease again (validation runs
    /// again), without changing its template.
    Retry {
        /// The BlueGreenRelease.
        release: String,
        /// Refuse unless this is still the current revision.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Abort a BlueGreenRelease's current revision (or switch back from it).
    Abort {
        /// The BlueGreenRelease.
        release: String,
        /// Refuse unless this is still the current revision.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Start a backup of a BackupPolicy now.
    BackupNow {
        /// The BackupPolicy.
        policy: String,
    },
    /// List maintenance windows with the next start in their time zone and in UTC.
    Windows {
        /// List the windows of every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// What recent alerts did to the Runbooks of the namespace (started a run, deduplicated,
    /// cooled down, cancelled), and each cooldown group's last run and suppressions.
    Alerts {
        /// Only this Runbook.
        runbook: Option<String>,
        /// Show at most this many recent alerts.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Serve a web dashboard on 127.0.0.1 (Now, Runs, Maintenance calendar, Releases,
    /// Backups), live, with your own kubeconfig identity: it shows what you may read and
    /// offers the buttons you may press. Prints its URL; Ctrl-C stops it.
    Dashboard {
        /// Port to listen on (0: any free port).
        #[arg(long, default_value_t = 8765)]
        port: u16,
        /// Address to listen on. Anything but a loopback address exposes your identity's
        /// rights to whoever can reach it.
        #[arg(long, default_value = "127.0.0.1")]
        address: std::net::IpAddr,
    },
    /// Show a run's step journal as a tree.
    Get {
        /// The RunbookRun.
        run: String,
        /// Redraw on every change until the run finishes.
        #[arg(short, long)]
        watch: bool,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    runbook_operator::duration::parse_duration(text).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// The cluster connection and the namespace to work in.
struct Target {
    client: Client,
    namespace: String,
}

impl Target {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<Target> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| {
                format!(
                    "cannot use kubeconfig context {context:?} (list them with: kubectl config get-contexts)"
                )
            })?,
        (None, None) => Config::infer().await.context(
            "no cluster configured: set KUBECONFIG, pass --kubeconfig, or run inside a cluster",
        )?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("cannot build a Kubernetes client")?;
    Ok(Target { client, namespace })
}

/// `approve` or `reject` of `step` on `run`, with the follow-up hint.
async fn answer(
    target: &Target,
    run: &str,
    step: &str,
    how: actions::Answer,
) -> anyhow::Result<u8> {
    let ns = &target.namespace;
    println!(
        "{}",
        actions::answer(&target.client, ns, run, step, how).await?
    );
    eprintln!("follow it with: kubectl runbook get {run} -n {ns} --watch");
    Ok(0)
}

fn note(text: &str) {
    eprintln!("note: {text}");
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let target = connect(&cli).await?;
    let style = Style { ascii: cli.ascii };
    let ns = target.namespace.clone();
    match cli.command {
        Command::Run {
            runbook,
            params,
            plan,
            wait,
            timeout,
        } => {
            let params = plugin::parse_params(&params).map_err(|e| anyhow!(e))?;
            let (created, rb) =
                actions::start_run(&target.client, &ns, &runbook, params, plan).await?;
            let name = created.name_any();
            println!("{} created", plugin::object_ref::<RunbookRun>(&name));
            if rb.spec.requires_maintenance_window.is_some() {
                note(&format!(
                    "Runbook {runbook:?} requires a maintenance window; the run waits until one is Active"
                ));
            }
            if !wait {
                eprintln!("follow it with: kubectl runbook get {name} -n {ns} --watch");
                return Ok(0);
            }
            let follow = follow_run(&target, &name, style);
            let finished = match timeout {
                Some(limit) => tokio::time::timeout(limit, follow).await.map_err(|_| {
                    anyhow!(
                        "run {name:?} is still going after {}; it goes on: kubectl runbook get {name} -n {ns} --watch",
                        humantime(limit)
                    )
                })??,
                None => follow.await?,
            };
            print!("{}", plugin::render_run(&finished, style));
            Ok(plugin::exit_status(&finished).unwrap_or(1))
        }
        Command::Approve { run, step } => {
            answer(&target, &run, &step, actions::Answer::Approve).await
        }
        Command::Reject { run, step } => {
            answer(&target, &run, &step, actions::Answer::Reject).await
        }
        Command::Cancel { run } => {
            println!("{}", actions::cancel(&target.client, &ns, &run).await?);
            eprintln!("follow it with: kubectl runbook get {run} -n {ns} --watch");
            Ok(0)
        }
        Command::Promote {
            release,
            revision,
            full,
        } => {
            let request = if full {
                ReleaseRequest::PromoteFull
            } else {
                ReleaseRequest::Promote
            };
            release_request(&target, &release, request, revision).await
        }
        Command::Retry { release, revision } => {
            release_request(&target, &release, ReleaseRequest::Retry, revision).await
        }
        Command::Abort { release, revision } => {
            release_request(&target, &release, ReleaseRequest::Abort, revision).await
        }
        Command::BackupNow { policy } => {
            let (job, notes) = actions::backup_now(&target.client, &ns, &policy).await?;
            for text in notes {
                note(&text);
            }
            println!(
                "{} backup requested: Job {job}",
                plugin::object_ref::<BackupPolicy>(&policy)
            );
            eprintln!(
                "follow it with: kubectl get jobs -n {ns} -l {}={} -w",
                runbook_operator::well_known::POLICY_LABEL,
                runbook_operator::backup_policy::label_value(&policy)
            );
            Ok(0)
        }
        Command::Alerts { runbook, limit } => {
            let runbooks = target
                .api::<Runbook>()
                .list(&ListParams::default())
                .await
                .map_err(|err| actions::explain(err, "listing Runbooks", &ns))?
                .items;
            let events = target
                .api::<k8s_openapi::api::events::v1::Event>()
                .list(&ListParams::default())
                .await
                .map_err(|err| actions::explain(err, "listing Events", &ns))?
                .items;
            print!(
                "{}",
                plugin::alerts::render_alerts(
                    &runbooks,
                    &events,
                    runbook.as_deref(),
                    limit,
                    jiff::Timestamp::now()
                )
            );
            Ok(0)
        }
        Command::Windows { all_namespaces } => {
            let api: Api<MaintenanceWindow> = if all_namespaces {
                Api::all(target.client.clone())
            } else {
                target.api()
            };
            let where_ = if all_namespaces { "any" } else { ns.as_str() };
            let windows = api
                .list(&ListParams::default())
                .await
                .map_err(|err| actions::explain(err, "listing MaintenanceWindows", where_))?
                .items;
            if windows.is_empty() {
                eprintln!(
                    "No MaintenanceWindows in {}.",
                    if all_namespaces {
                        "any namespace".to_owned()
                    } else {
                        format!("namespace {ns:?} (-A lists every namespace)")
                    }
                );
                return Ok(0);
            }
            print!("{}", plugin::render_windows(&windows, all_namespaces));
            Ok(0)
        }
        Command::Dashboard { port, address } => {
            if !address.is_loopback() {
                note(&format!(
                    "listening on {address}, not a loopback address: anyone who can reach it acts with your Kubernetes identity"
                ));
            }
            let options = dashboard::Options {
                address,
                port,
                namespace: ns.clone(),
            };
            dashboard::serve(
                target.client.clone(),
                options,
                |bound| {
                    println!("Dashboard: http://{bound}/");
                    let _ = std::io::stdout().flush();
                    eprintln!(
                        "serving namespace {ns:?} (pick others on the page); Ctrl-C stops it"
                    );
                },
                shutdown_signal(),
            )
            .await?;
            Ok(0)
        }
        Command::Get { run, watch } => {
            let current = actions::fetch_run(&target.client, &ns, &run).await?;
            if !watch {
                print!("{}", plugin::render_run(&current, style));
                return Ok(0);
            }
            watch_run(&target, &run, style).await?;
            Ok(0)
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = interrupt => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = interrupt.await;
}

fn humantime(d: Duration) -> String {
    plugin::human_duration(runbook_operator::time::signed(d))
}

async fn release_request(
    target: &Target,
    name: &str,
    request: ReleaseRequest,
    revision: Option<String>,
) -> anyhow::Result<u8> {
    let ns = &target.namespace;
    let verb = request.verb();
    let (revision, notes) =
        actions::release(&target.client, ns, name, request, revision.as_deref()).await?;
    for text in &notes {
        note(text);
    }
    println!(
        "{} {verb} requested: revision {revision}",
        plugin::object_ref::<BlueGreenRelease>(name)
    );
    eprintln!("follow it with: kubectl get bgr {name} -n {ns} -w");
    Ok(0)
}

/// A watch of one RunbookRun: each new version of it, until it is deleted.
fn run_versions(
    target: &Target,
    name: &str,
) -> impl futures::Stream<Item = anyhow::Result<Option<RunbookRun>>> + use<> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_owned();
    let namespace = target.namespace.clone();
    let mut failures = 0u32;
    watcher(target.api::<RunbookRun>(), config).filter_map(move |event| {
        let item = match event {
            Ok(watcher::Event::Apply(run) | watcher::Event::InitApply(run)) => {
                failures = 0;
                Some(Ok(Some(run)))
            }
            Ok(watcher::Event::Delete(_)) => Some(Ok(None)),
            Ok(_) => None,
            Err(err) => {
                failures += 1;
                if failures >= 5 {
                    Some(Err(anyhow!(err).context(format!(
                        "watching RunbookRun {name:?} in namespace {namespace:?} keeps failing"
                    ))))
                } else {
                    eprintln!(
                        "warning: watch of RunbookRun {name:?} interrupted ({err}); resuming"
                    );
                    None
                }
            }
        };
        futures::future::ready(item)
    })
}

/// Follows a run until it finishes, printing each step as it starts and ends (stderr).
async fn follow_run(target: &Target, name: &str, style: Style) -> anyhow::Result<RunbookRun> {
    let mut versions = Box::pin(run_versions(target, name));
    let mut last: Option<RunbookRun> = None;
    while let Some(version) = versions.next().await {
        let Some(run) = version? else {
            bail!(
                "RunbookRun {name:?} was deleted in namespace {:?} before it finished",
                target.namespace
            );
        };
        let status = run.status.clone().unwrap_or_default();
        let before = last.as_ref().and_then(|r| r.status.as_ref());
        for line in plugin::transitions(before, &status, (&target.namespace, name), style) {
            eprintln!("{}  {line}", Timestamp::now().strftime("%H:%M:%S"));
        }
        if plugin::exit_status(&run).is_some() {
            return Ok(run);
        }
        last = Some(run);
    }
    bail!("the watch of RunbookRun {name:?} ended before the run finished")
}

/// Redraws a run's tree on every change until it finishes (a watch, not polling).
async fn watch_run(target: &Target, name: &str, style: Style) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal();
    let mut versions = Box::pin(run_versions(target, name));
    let mut shown = String::new();
    while let Some(version) = versions.next().await {
        let Some(run) = version? else {
            bail!(
                "RunbookRun {name:?} was deleted in namespace {:?}",
                target.namespace
            );
        };
        let tree = plugin::render_run(&run, style);
        let finished = plugin::exit_status(&run).is_some();
        if tree != shown {
            let mut out = std::io::stdout().lock();
            if tty {
                // Clear the screen and go home, then draw.
                write!(out, "\x1b[2J\x1b[H{tree}")?;
                if !finished {
                    write!(out, "\n(watching for changes; Ctrl-C to stop)\n")?;
                }
            } else {
                if !shown.is_empty() {
                    writeln!(out)?;
                }
                write!(out, "{tree}")?;
            }
            out.flush()?;
            shown = tree;
        }
        if finished {
            return Ok(());
        }
    }
    bail!("the watch of RunbookRun {name:?} ended")
}

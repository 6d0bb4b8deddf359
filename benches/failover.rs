//! Benchmark of leader failover (issue 7: "leader failover time (kill to first write by the
//! new leader)").
//!
//! Run it through `hack/bench-failover.sh`, which starts a cluster (`benchha` unless
//! BENCH_CLUSTER) and passes the operator binary in through the environment; this binary
//! starts, kills and restarts the two operator processes itself. Without `BENCH_OPERATOR_URL`
//! it only prints how to run it and exits 0, so a plain `cargo bench` never touches whatever
//! cluster the current kubeconfig points at.
//!
//! Prints figures, not verdicts: it exits non-zero only when something broke (an operator
//! died on its own, a wait timed out, a run did not succeed). Progress goes to stderr (a line
//! at least every ~15 s), the figures to stdout.
//!
//! # The stage
//!
//! One namespace (BENCH_NAMESPACE, `bench-failover`) with two Deployments, `app` and `app-b`,
//! and the Runbooks `bump-b` (scale `app-b` by +1) and, per Lease setting D/R,
//! `bump-pause-bump-D-R` (scale `app` by +1, sleep D s, scale `app` by +1). Two operator
//! processes run out-of-cluster with `run --namespace NS --leader-elect
//! --leader-election-namespace NS --leader-election-lease bench-failover-D-R
//! --lease-duration D --lease-renew-before R`, on the probe ports P and P + 1 (P from
//! BENCH_OPERATOR_URL). Each Lease setting (BENCH_LEASES, `15/5,6/2`: the
//! default and a short one) gets its own Lease and BENCH_ROUNDS (7) rounds. A round:
//!
//! 1. creates the run `mid-S-N` of `bump-pause-bump-D-R` and waits until its first scale is
//!    done and its pause step is running (the leader is mid-run), then a random 0..(D - R) s
//!    more, so the kill falls anywhere in the leader's renewal cycle (without it, the kill
//!    would come at the same point of the cycle every round);
//! 2. **kills the leader with SIGKILL** (a crash: the Lease is not released, it has to
//!    expire) and at once creates the run `after-S-N` of `bump-b`;
//! 3. waits until both runs succeeded, then restarts the killed process (a new identity) and
//!    waits until it is on standby. The next round kills the other process.
//!
//! # Definitions
//!
//! Every instant is the wall clock of this host (the API server, the operators and this
//! process share it). "Seen" = the arrival at this process of the watch event showing it.
//!
//! * **kill** = the instant SIGKILL was sent (the process is reaped right after).
//! * **lease taken** = the first Lease event naming another holder - kill (the standby first
//!   clears the expired Lease, then takes it: the clearing is not the takeover). Also shown:
//!   the Lease's own `acquireTime` (microseconds, written by the new leader) - kill.
//! * **new leader synced** = the standby's `/readyz` first answering `ok` (polled every
//!   50 ms: it says so once every controller's cache has synced) - kill.
//! * **first write** = the first write by the new leader seen after the kill: the earliest of
//!   the first status of `after-S-N`, the first change of `mid-S-N` and the first `app`
//!   generation change. The first status of `after-S-N` alone is shown too ("run created
//!   after the kill: first status").
//! * **after-run done** / **mid-run done** = the run seen with phase Succeeded - kill.
//! * **side effects**: with both runs finished, `app` must have grown by exactly 2 replicas in
//!   2 generations (spec writes) and `app-b` by 1 in 1, and every journal step has
//!   `attempts: 1`; the column says `once` or what was repeated. Not asserted.
//!
//! Expected: first write <= lease duration + the new leader's sync time (the kill falls
//! anywhere in the renewal cycle, so the lease wait lies between renew-before and duration).
//!
//! Environment (defaults in parentheses; hack/bench-failover.sh sets them):
//! * BENCH_OPERATOR_URL: http://127.0.0.1:P, the first process's probe address (required)
//! * BENCH_OPERATOR_BIN: the runbook-operator binary (required)
//! * BENCH_OPERATOR_KUBECONFIG: the operators' kubeconfig (default: the bench's)
//! * BENCH_NAMESPACE (bench-failover), BENCH_ROUNDS (7), BENCH_LEASES (15/5,6/2)
//! * BENCH_TIMEOUT (600): seconds for any one wait
//! * BENCH_OUT: directory for logs and raw data

#[allow(
    dead_code,
    reason = "this bench starts its own operators and reads no counters: most of support is unused"
)]
mod support;

use support::figures::Table;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use serde_json::{Value, json};
use support::pace::secs;
use support::process::{Launcher, Operator};
use support::{Settings, Ticker, env_positive, env_text, lock, progress, spawn_watch};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-failover";
/// Field manager of everything this binary writes.
const MANAGER: &str = "bench-failover";

// ---------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------

/// This bench's knobs.
struct Config {
    ns: String,
    rounds: usize,
    /// (lease duration, renew before) in seconds.
    leases: Vec<(u64, u64)>,
    timeout: Duration,
    port: u16,
}

impl Config {
    fn from_env(operator_url: &str) -> Result<Self> {
        let leases = env_text("BENCH_LEASES")
            .unwrap_or_else(|| "15/5,6/2".into())
            .split(',')
            .map(|pair| {
                let (d, r) = pair
                    .trim()
                    .split_once('/')
                    .ok_or_else(|| anyhow!("BENCH_LEASES: {pair:?} is not DURATION/RENEW"))?;
                let (d, r): (u64, u64) = (d.parse()?, r.parse()?);
                if r == 0 || r >= d {
                    bail!("BENCH_LEASES: {pair:?}: renew-before must be 1 or more and below the duration");
                }
                Ok((d, r))
            })
            .collect::<Result<Vec<_>>>()?;
        let port = operator_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
            .filter(|p| *p < u16::MAX)
            .ok_or_else(|| anyhow!("BENCH_OPERATOR_URL {operator_url:?} has no port"))?;
        let settings = Settings::from_env(operator_url.to_owned())?;
        Ok(Self {
            ns: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-failover".into()),
            rounds: env_positive("BENCH_ROUNDS", 7)? as usize,
            leases,
            timeout: settings.timeout,
            port,
        })
    }
}

// ---------------------------------------------------------------------------
// what the watches saw
// ---------------------------------------------------------------------------

/// One event of a run.
struct RunEvent {
    t: Timestamp,
    has_status: bool,
    phase: String,
}

/// One event of the Lease.
struct LeaseEvent {
    t: Timestamp,
    holder: String,
    acquired: Option<Timestamp>,
}

#[derive(Default)]
struct Seen {
    runs: HashMap<String, Vec<RunEvent>>,
    /// Deployment name -> (arrival, generation) for each event.
    deployments: HashMap<String, Vec<(Timestamp, i64)>>,
    /// Lease name -> events.
    leases: HashMap<String, Vec<LeaseEvent>>,
}

fn record_run(seen: &mut Seen, t: Timestamp, run: RunbookRun) {
    let status = run.status.as_ref();
    seen.runs.entry(run.name_any()).or_default().push(RunEvent {
        t,
        has_status: status.is_some_and(|s| s.observed_generation.is_some() || s.phase.is_some()),
        phase: status
            .and_then(|s| s.phase.map(|p| p.as_str().to_owned()))
            .unwrap_or_default(),
    });
}

fn record_deployment(seen: &mut Seen, t: Timestamp, d: Deployment) {
    let generation = d.metadata.generation.unwrap_or(0);
    let events = seen.deployments.entry(d.name_any()).or_default();
    if events.last().is_none_or(|(_, g)| *g != generation) {
        events.push((t, generation));
    }
}

fn record_lease(seen: &mut Seen, t: Timestamp, lease: Lease) {
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    let acquired = spec.and_then(|s| s.acquire_time.as_ref()).map(|m| m.0);
    let events = seen.leases.entry(lease.name_any()).or_default();
    if !holder.is_empty() && events.last().is_none_or(|e| e.holder != holder) {
        events.push(LeaseEvent {
            t,
            holder,
            acquired,
        });
    }
}

impl Seen {
    fn phase(&self, run: &str) -> &str {
        self.runs
            .get(run)
            .and_then(|e| e.last())
            .map_or("", |e| e.phase.as_str())
    }

    /// The first event of `run` after `t` with a status (any event, with `any`).
    fn first_after(&self, run: &str, t: Timestamp, any: bool) -> Option<Timestamp> {
        self.runs
            .get(run)?
            .iter()
            .find(|e| e.t > t && (any || e.has_status))
            .map(|e| e.t)
    }

    fn first_phase(&self, run: &str, phase: &str) -> Option<Timestamp> {
        self.runs
            .get(run)?
            .iter()
            .find(|e| e.phase == phase)
            .map(|e| e.t)
    }
}

// ---------------------------------------------------------------------------
// one round's figures
// ---------------------------------------------------------------------------

/// The figures of one round, seconds after the kill.
struct Round {
    from: String,
    to: String,
    lease_taken: Option<f64>,
    acquire_time: Option<f64>,
    synced: Option<f64>,
    first_write: Option<f64>,
    after_first_status: Option<f64>,
    after_done: Option<f64>,
    mid_done: Option<f64>,
    side_effects: String,
    once: bool,
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

// ---------------------------------------------------------------------------
// the bench
// ---------------------------------------------------------------------------

struct Bench {
    cfg: Config,
    client: Client,
    http: reqwest::Client,
    launcher: Launcher,
    seen: Arc<Mutex<Seen>>,
    /// Processes started so far (for names).
    spawned: usize,
}

impl Bench {
    fn runs(&self) -> Api<RunbookRun> {
        Api::namespaced(self.client.clone(), &self.cfg.ns)
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.cfg.ns)
    }

    async fn apply(&self, body: Value) -> Result<()> {
        let api_version = body["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = body["kind"].as_str().unwrap_or_default().to_owned();
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (group, version) = api_version
            .split_once('/')
            .unwrap_or(("", api_version.as_str()));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
        let (ar, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .with_context(|| format!("discovering {kind}"))?;
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.cfg.ns, &ar);
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .with_context(|| format!("applying {kind} {name}"))?;
        Ok(())
    }

    async fn setup(&self) -> Result<()> {
        let ns = &self.cfg.ns;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .patch(
                ns,
                &PatchParams::apply(MANAGER),
                &Patch::Apply(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                ),
            )
            .await
            .context("creating the namespace")?;
        for app in ["app", "app-b"] {
            self.apply(support::deployment(app, "app", ("BENCH", "1")))
                .await?;
        }
        let scale =
            |target: &str| json!({"target": {"kind": "Deployment", "name": target}, "by": 1});
        self.apply(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1",
            "kind": "Runbook",
            "metadata": {"name": "bump-b"},
            "spec": {"steps": [{"name": "bump", "scale": scale("app-b")}]}
        }))
        .await?;
        let config = watcher::Config::default();
        spawn_watch(self.runs(), config.clone(), self.seen.clone(), record_run);
        spawn_watch(
            self.deployments(),
            config.clone(),
            self.seen.clone(),
            record_deployment,
        );
        spawn_watch(
            Api::<Lease>::namespaced(self.client.clone(), ns),
            config,
            self.seen.clone(),
            record_lease,
        );
        Ok(())
    }

    fn spawn(&mut self, slot: usize, lease: &str, (d, r): (u64, u64)) -> Result<Operator> {
        self.spawned += 1;
        let name = format!("{}{}", if slot == 0 { "a" } else { "b" }, self.spawned);
        let args: Vec<String> = [
            "--namespace",
            &self.cfg.ns,
            "--leader-elect",
            "--leader-election-namespace",
            &self.cfg.ns,
            "--leader-election-lease",
            lease,
            "--lease-duration",
            &d.to_string(),
            "--lease-renew-before",
            &r.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.launcher
            .spawn(&name, self.cfg.port + slot as u16, &args)
    }

    async fn create_run(&self, name: &str, runbook: &str) -> Result<()> {
        self.apply(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1",
            "kind": "RunbookRun",
            "metadata": {"name": name},
            "spec": {"runbookRef": {"name": runbook}}
        }))
        .await
    }

    async fn deployment(&self, name: &str) -> Result<(i32, i64)> {
        let d = self.deployments().get(name).await?;
        Ok((
            d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            d.metadata.generation.unwrap_or(0),
        ))
    }

    /// One Lease setting: two processes, `rounds` kills.
    async fn setting(&mut self, (d, r): (u64, u64)) -> Result<Vec<Round>> {
        let lease = format!("bench-failover-{d}-{r}");
        let scale = json!({"target": {"kind": "Deployment", "name": "app"}, "by": 1});
        self.apply(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1",
            "kind": "Runbook",
            "metadata": {"name": format!("bump-pause-bump-{d}-{r}")},
            "spec": {"steps": [
                {"name": "bump", "scale": scale},
                {"name": "pause", "sleep": {"duration": format!("{d}s")}},
                {"name": "bump-again", "scale": scale}
            ]}
        }))
        .await?;
        progress(format!(
            "lease {d}s / renew before {r}s: starting two operators (Lease {lease})"
        ));
        let mut procs = vec![self.spawn(0, &lease, (d, r))?];
        let t = procs[0]
            .wait_readyz(&self.http, "ok", self.cfg.timeout)
            .await?;
        progress(format!(
            "  {} holds the Lease and is synced ({t:.1}s after spawn)",
            procs[0].name
        ));
        procs.push(self.spawn(1, &lease, (d, r))?);
        procs[1]
            .wait_readyz(&self.http, "standby", self.cfg.timeout)
            .await?;
        let mut leader = 0;
        let mut rounds = Vec::new();
        for n in 1..=self.cfg.rounds {
            let round = self
                .round(&mut procs, &mut leader, &lease, (d, r), n)
                .await?;
            println!("{}", round_line(n, &round));
            rounds.push(round);
        }
        for p in &mut procs {
            p.terminate(Duration::from_secs(10)).await;
        }
        Ok(rounds)
    }

    async fn round(
        &mut self,
        procs: &mut [Operator],
        leader: &mut usize,
        lease: &str,
        timing: (u64, u64),
        n: usize,
    ) -> Result<Round> {
        let standby = 1 - *leader;
        let tag = format!("{}-{}-{n}", timing.0, timing.1);
        let (mid, after) = (format!("mid-{tag}"), format!("after-{tag}"));
        let (app0, app_gen0) = self.deployment("app").await?;
        let (b0, b_gen0) = self.deployment("app-b").await?;
        self.create_run(&mid, &format!("bump-pause-bump-{}-{}", timing.0, timing.1))
            .await?;
        // Mid-run: the first scale is written and the pause step runs.
        let runs = self.runs();
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            let run = runs.get(&mid).await?;
            let pausing = run.status.as_ref().is_some_and(|s| {
                s.steps
                    .iter()
                    .any(|e| e.name == "pause" && e.phase == StepPhase::Running)
            });
            if pausing {
                break;
            }
            procs[*leader].check_alive()?;
            if Instant::now() > deadline {
                bail!("run {mid} never reached its pause step");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let from = procs[*leader].name.clone();
        let to = procs[standby].name.clone();
        let jitter = rand::random::<f64>() * (timing.0 - timing.1) as f64;
        tokio::time::sleep(Duration::from_secs_f64(jitter)).await;
        procs[*leader].check_alive()?;

        let t_kill = Timestamp::now();
        procs[*leader].kill();
        self.create_run(&after, "bump-b").await?;
        progress(format!(
            "round {n}: killed leader {from} (SIGKILL) {jitter:.1}s into {mid}'s pause, created {after}"
        ));

        // The standby's /readyz turning "ok" (polled at 50 ms) while the runs finish.
        let mut synced = None;
        let deadline = Instant::now() + self.cfg.timeout;
        let mut tick = Ticker::new();
        loop {
            if synced.is_none()
                && let Some((200, body)) = procs[standby].get(&self.http, "/readyz").await
                && body.starts_with("ok")
            {
                synced = Some(secs(t_kill, Timestamp::now()));
            }
            let done = {
                let seen = lock(&self.seen);
                let terminal = |r: &str| matches!(seen.phase(r), "Succeeded" | "Failed");
                terminal(&mid) && terminal(&after)
            };
            if done && synced.is_some() {
                break;
            }
            procs[standby].check_alive()?;
            if Instant::now() > deadline {
                bail!("round {n}: the runs did not finish after the kill");
            }
            if tick.due() {
                let seen = lock(&self.seen);
                progress(format!(
                    "  ... round {n}: {:.0}s since the kill; {mid} {}, {after} {}, {to} synced: {}",
                    secs(t_kill, Timestamp::now()),
                    seen.phase(&mid),
                    seen.phase(&after),
                    synced.is_some()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Side effects: app +2 in 2 generations, app-b +1 in 1, every step attempted once.
        let (app1, app_gen1) = self.deployment("app").await?;
        let (b1, b_gen1) = self.deployment("app-b").await?;
        let mut attempts = Vec::new();
        let mut phases = Vec::new();
        for run in [&mid, &after] {
            let status = runs.get(run).await?.status.unwrap_or_default();
            phases.push(
                status
                    .phase
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            );
            attempts.extend(status.steps.iter().map(|s| s.attempts));
        }
        let once = app1 - app0 == 2
            && app_gen1 - app_gen0 == 2
            && b1 - b0 == 1
            && b_gen1 - b_gen0 == 1
            && attempts.iter().all(|a| *a == 1)
            && phases.iter().all(|p| p == "Succeeded");
        let side_effects = if once {
            "once".to_owned()
        } else {
            format!(
                "REPEATED? app +{} in {} writes, app-b +{} in {}, attempts {attempts:?}, phases {phases:?}",
                app1 - app0,
                app_gen1 - app_gen0,
                b1 - b0,
                b_gen1 - b_gen0
            )
        };

        let round = {
            let seen = lock(&self.seen);
            let taken = seen
                .leases
                .get(lease)
                .and_then(|events| events.iter().find(|e| e.t > t_kill && e.holder != from));
            let app_write = seen
                .deployments
                .get("app")
                .and_then(|events| events.iter().find(|(t, _)| *t > t_kill))
                .map(|(t, _)| *t);
            let after_first = seen.first_after(&after, t_kill, false);
            let first_write = [after_first, seen.first_after(&mid, t_kill, true), app_write]
                .into_iter()
                .flatten()
                .min();
            let since = |t: Option<Timestamp>| t.map(|t| secs(t_kill, t));
            Round {
                from,
                to,
                lease_taken: since(taken.map(|e| e.t)),
                acquire_time: since(taken.and_then(|e| e.acquired)),
                synced,
                first_write: since(first_write),
                after_first_status: since(after_first),
                after_done: since(seen.first_phase(&after, "Succeeded")),
                mid_done: since(seen.first_phase(&mid, "Succeeded")),
                side_effects,
                once,
            }
        };

        // The killed process comes back as the new standby.
        let restarted = self.spawn(*leader, lease, timing)?;
        procs[*leader] = restarted;
        procs[*leader]
            .wait_readyz(&self.http, "standby", self.cfg.timeout)
            .await?;
        *leader = standby;
        Ok(round)
    }
}

fn round_header() -> String {
    format!(
        "{:<6} {:<10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}  side effects",
        "round",
        "leader",
        "lease",
        "acquire",
        "synced",
        "1st-write",
        "after-1st",
        "after-ok",
        "mid-ok"
    )
}

fn round_line(n: usize, r: &Round) -> String {
    format!(
        "{:<6} {:<10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}  {}",
        n,
        format!("{}->{}", r.from, r.to),
        opt(r.lease_taken),
        opt(r.acquire_time),
        opt(r.synced),
        opt(r.first_write),
        opt(r.after_first_status),
        opt(r.after_done),
        opt(r.mid_done),
        r.side_effects
    )
}

#[tokio::main]
async fn main() {
    support::main(
        "benches/failover.rs: run it with hack/bench-failover.sh (it needs a cluster and the operator binary)",
        bench,
    )
    .await;
}

async fn bench(operator_url: String) -> Result<bool> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Config::from_env(&operator_url)?;
    let launcher = Launcher::from_env()?;
    let client = Client::try_default()
        .await
        .map_err(|e| anyhow!("no Kubernetes client: {e}"))?;
    let mut bench = Bench {
        cfg,
        client,
        http: reqwest::Client::new(),
        launcher,
        seen: Arc::default(),
        spawned: 0,
    };
    progress(format!(
        "leader failover: {} rounds per Lease setting {:?} (duration/renew-before, s), namespace {}",
        bench.cfg.rounds, bench.cfg.leases, bench.cfg.ns
    ));
    bench.setup().await?;
    let mut table = Table::default();
    let mut all_once = true;
    let mut raw = String::new();
    let leases = bench.cfg.leases.clone();
    for timing in leases {
        println!();
        println!(
            "-- lease {}s / renew before {}s: seconds after the SIGKILL of the leader",
            timing.0, timing.1
        );
        println!("{}", round_header());
        let rounds = bench.setting(timing).await?;
        let col =
            |f: fn(&Round) -> Option<f64>| -> Vec<f64> { rounds.iter().filter_map(f).collect() };
        let median = |v: Vec<f64>| support::percentile(&support::sorted(v), 0.5);
        let p99 = |v: Vec<f64>| support::percentile(&support::sorted(v), 0.99);
        let once = rounds.iter().filter(|r| r.once).count();
        for (label, f) in [
            ("median", median as fn(Vec<f64>) -> Option<f64>),
            ("p99", p99),
        ] {
            println!(
                "{:<6} {:<10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}  {}",
                label,
                "",
                opt(f(col(|r| r.lease_taken))),
                opt(f(col(|r| r.acquire_time))),
                opt(f(col(|r| r.synced))),
                opt(f(col(|r| r.first_write))),
                opt(f(col(|r| r.after_first_status))),
                opt(f(col(|r| r.after_done))),
                opt(f(col(|r| r.mid_done))),
                if label == "median" {
                    format!("{once}/{} rounds once", rounds.len())
                } else {
                    String::new()
                }
            );
        }
        all_once &= once == rounds.len();
        table.heading(format!(
            "-- lease {}s / renew before {}s, {} rounds (kill = SIGKILL of the leader)",
            timing.0,
            timing.1,
            rounds.len()
        ));
        table.dist(
            "kill -> Lease holder changed (watch)",
            col(|r| r.lease_taken),
            "s",
            "lease wait",
        );
        table.dist(
            "kill -> Lease acquireTime",
            col(|r| r.acquire_time),
            "s",
            "written by the new leader (microseconds)",
        );
        table.dist(
            "kill -> new leader synced (/readyz ok)",
            col(|r| r.synced),
            "s",
            "lease wait + cache sync",
        );
        table.dist(
            "kill -> first write by the new leader",
            col(|r| r.first_write),
            "s",
            format!("expected <= {}s + sync", timing.0),
        );
        table.dist(
            "kill -> first status of the run created after it",
            col(|r| r.after_first_status),
            "s",
            "",
        );
        table.dist(
            "kill -> that run Succeeded",
            col(|r| r.after_done),
            "s",
            "one scale step",
        );
        table.dist(
            "kill -> the interrupted run Succeeded",
            col(|r| r.mid_done),
            "s",
            "its remaining pause and scale",
        );
        table.value(
            "rounds with every side effect applied once",
            Some(once as f64),
            "rounds",
            format!("of {}", rounds.len()),
        );
        for (n, r) in rounds.iter().enumerate() {
            let _ = writeln!(
                raw,
                "{}/{}\t{}\t{}\t{}",
                timing.0,
                timing.1,
                n + 1,
                round_line(n + 1, r),
                r.side_effects
            );
        }
    }
    if let Some(out) = env_text("BENCH_OUT") {
        let _ = std::fs::write(std::path::Path::new(&out).join("rounds.tsv"), raw);
    }
    let watch_errors = support::watch_errors();
    table.value("watch errors (retried)", Some(watch_errors as f64), "", "");
    println!();
    table.print();
    println!(
        "{}",
        if all_once {
            "every round: the interrupted run and the new run each applied their scale steps once"
                .to_owned()
        } else {
            "SOME ROUND REPEATED OR LOST A SIDE EFFECT: see the side effects column".to_owned()
        }
    );
    Ok(true)
}

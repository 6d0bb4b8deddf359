//! Benchmark of http steps off the reconcile path: does a namespace full of runs calling a
//! blackholed URL delay an unrelated run in another namespace?
//!
//! Run it through `hack/bench-outbound.sh`, which starts a cluster and one operator watching
//! every namespace (so both namespaces share its controllers and their reconcile slots), and
//! passes them in through the environment. Without `BENCH_OPERATOR_URL` this binary only
//! prints how to run it and exits 0.
//!
//! # What it does
//!
//! 1. **Unloaded**: BENCH_SAMPLES runs, one after the other, in `<ns>-other`, each of a
//!    Runbook with one http step to a server this binary runs on 127.0.0.1.
//! 2. **Load**: BENCH_BLACKHOLED (100) runs in `<ns>-stuck`, each with one http step (timeout
//!    10m) to a listener of this binary that accepts connections and never answers; it waits
//!    until at least 8 of those connections are open (the per-namespace limit of the pool)
//!    and every one of those runs says it waits on its request (or that count has not moved
//!    for 10 s: an operator that sends inside its reconciles never gets them all that far).
//! 3. **Loaded**: BENCH_SAMPLES more runs in `<ns>-other`, as in 1, while the load stays.
//!
//! # Definitions
//!
//! All times are taken by this process on one monotonic clock.
//!
//! * **run latency**: from the create request sent to the first watch event showing the run
//!   `Succeeded`.
//! * **step overhead**: from the moment the server answered the step's request to that
//!   event: what the operator adds after the endpoint is done (collecting the reply from the
//!   pool, the journal writes, the run's end).
//! * A sample that does not finish within BENCH_SAMPLE_TIMEOUT (60 s) is counted as timed out,
//!   and the loaded phase stops at the first one (the rest would wait just as long).
//!
//! Environment (defaults in parentheses; hack/bench-outbound.sh sets them):
//! * BENCH_OPERATOR_URL: http://127.0.0.1:PORT of the operator's probe server (required)
//! * BENCH_OPERATOR_PID: the operator's pid, for RSS
//! * BENCH_NAMESPACE (bench-outbound): prefix of the two namespaces
//! * BENCH_BLACKHOLED (100), BENCH_SAMPLES (20), BENCH_SAMPLE_TIMEOUT (60)
//! * BENCH_TIMEOUT (600): seconds for any other wait

#[allow(
    dead_code,
    reason = "this bench reads no request counters: most of support is unused"
)]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::RunbookRun;
use serde_json::json;
use support::figures::Table;
use support::{Rig, Settings, env_positive, env_text, lock, now, progress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-outbound";
/// Field manager of everything this binary writes.
const MANAGER: &str = "bench-outbound";
/// Connections the blackhole must hold before the loaded phase: the pool's default limit per
/// namespace (an operator that sends inside its reconciles holds 16).
const LOADED_CONNECTIONS: usize = 8;
/// How long the count of blackholed runs waiting on their request must stay put before the
/// loaded phase starts anyway.
const SETTLED_AFTER: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    support::main(
        "benches/outbound.rs: run it with hack/bench-outbound.sh (it needs a cluster and the operator)",
        bench,
    )
    .await;
}

/// A server on 127.0.0.1 answering 200 to everything, recording when it answered each path.
struct Answerer {
    base: String,
    answered: Arc<Mutex<HashMap<String, f64>>>,
}

impl Answerer {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let answered = Arc::new(Mutex::new(HashMap::new()));
        let log = answered.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, log).await;
                });
            }
        });
        Ok(Self { base, answered })
    }

    fn answered(&self, path: &str) -> Option<f64> {
        lock(&self.answered).get(path).copied()
    }
}

async fn answer(mut stream: TcpStream, log: Arc<Mutex<HashMap<String, f64>>>) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let body = r#"{"status":"ok"}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    lock(&log).insert(path, now());
    Ok(())
}

/// A listener on 127.0.0.1 that accepts connections and never answers nor closes them.
struct Blackhole {
    base: String,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Blackhole {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                lock(&keep).push(stream);
            }
        });
        Ok(Self { base, held })
    }

    fn connections(&self) -> usize {
        lock(&self.held).len()
    }
}

async fn create_runbook(
    client: &kube::Client,
    ns: &str,
    name: &str,
    step: serde_json::Value,
) -> Result<()> {
    let runbook: Runbook = serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": name},
        "spec": {"steps": [step]},
    }))?;
    Api::<Runbook>::namespaced(client.clone(), ns)
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &runbook,
        )
        .await
        .with_context(|| format!("creating Runbook {ns}/{name}"))?;
    Ok(())
}

async fn create_run(client: &kube::Client, ns: &str, name: &str, runbook: &str) -> Result<()> {
    let run: RunbookRun = serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1",
        "kind": "RunbookRun",
        "metadata": {"name": name},
        "spec": {"runbookRef": {"name": runbook}},
    }))?;
    Api::<RunbookRun>::namespaced(client.clone(), ns)
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &run,
        )
        .await
        .with_context(|| format!("creating RunbookRun {ns}/{name}"))?;
    Ok(())
}

/// Whether the run's step says it waits for its request (a slot or the answer).
fn waits_on_request(run: &RunbookRun) -> bool {
    run.status
        .as_ref()
        .and_then(|s| s.steps.first())
        .and_then(|e| e.message.as_deref())
        .is_some_and(|m| m.starts_with("waiting for"))
}

fn succeeded(run: Option<&RunbookRun>) -> bool {
    run.and_then(|r| r.status.as_ref())
        .and_then(|s| s.phase)
        .is_some_and(|p| p.as_str() == "Succeeded")
}

fn finished(run: Option<&RunbookRun>) -> bool {
    run.and_then(|r| r.status.as_ref())
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_finished())
}

/// One sample: (run latency, step overhead) in seconds, or None when it timed out.
async fn sample(
    client: &kube::Client,
    ns: &str,
    answerer: &Answerer,
    name: &str,
    timeout: Duration,
) -> Result<Option<(f64, f64)>> {
    let path = format!("/probe/{name}");
    create_runbook(
        client,
        ns,
        name,
        json!({"name": "call", "http": {"url": format!("{}{path}", answerer.base)}}),
    )
    .await?;
    let api = Api::<RunbookRun>::namespaced(client.clone(), ns);
    let created = now();
    create_run(client, ns, name, name).await?;
    let done = tokio::time::timeout(timeout, await_condition(api, name, finished)).await;
    let Ok(done) = done else {
        return Ok(None);
    };
    let seen = now();
    let run = done.map_err(|e| anyhow!("watching RunbookRun {ns}/{name}: {e}"))?;
    if !succeeded(run.as_ref()) {
        bail!(
            "RunbookRun {ns}/{name} did not succeed: {:?}",
            run.and_then(|r| r.status)
        );
    }
    let answered = answerer
        .answered(&path)
        .ok_or_else(|| anyhow!("{ns}/{name} succeeded but the server saw no request"))?;
    Ok(Some((seen - created, seen - answered)))
}

/// The samples of one phase: latencies, overheads, and how many timed out.
async fn phase(
    client: &kube::Client,
    ns: &str,
    answerer: &Answerer,
    prefix: &str,
    count: usize,
    timeout: Duration,
) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let (mut latency, mut overhead) = (Vec::new(), Vec::new());
    for i in 0..count {
        match sample(client, ns, answerer, &format!("{prefix}-{i}"), timeout).await? {
            Some((l, o)) => {
                latency.push(l);
                overhead.push(o);
            }
            None => {
                progress(format!(
                    "  {prefix}-{i} did not finish within {}s; the phase stops here",
                    timeout.as_secs()
                ));
                return Ok((latency, overhead, 1));
            }
        }
    }
    Ok((latency, overhead, 0))
}

async fn bench(operator_url: String) -> Result<bool> {
    let settings = Settings::from_env(operator_url)?;
    let rig = Rig::connect(settings, "runbook-bench-op-").await?;
    let prefix = env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-outbound".into());
    let stuck = format!("{prefix}-stuck");
    let other = format!("{prefix}-other");
    let blackholed = env_positive("BENCH_BLACKHOLED", 100)? as usize;
    let samples = env_positive("BENCH_SAMPLES", 20)? as usize;
    let sample_timeout = Duration::from_secs(env_positive("BENCH_SAMPLE_TIMEOUT", 60)?);
    let client = rig.client.clone();
    let answerer = Answerer::start().await?;
    let hole = Blackhole::start().await?;

    progress(format!(
        "unloaded: {samples} runs in {other}, one after the other"
    ));
    let (base_latency, base_overhead, base_timeouts) = phase(
        &client,
        &other,
        &answerer,
        "unloaded",
        samples,
        sample_timeout,
    )
    .await?;
    rig.operator_alive()?;

    progress(format!(
        "load: {blackholed} runs in {stuck} calling a blackholed URL"
    ));
    create_runbook(
        &client,
        &stuck,
        "stuck",
        json!({"name": "call", "timeout": "10m", "http": {"url": format!("{}/never", hole.base)}}),
    )
    .await?;
    for i in 0..blackholed {
        create_run(&client, &stuck, &format!("stuck-{i}"), "stuck").await?;
    }
    let started = now();
    while hole.connections() < LOADED_CONNECTIONS.min(blackholed) {
        if now() - started > rig.timeout.as_secs_f64() {
            bail!(
                "only {} blackholed connections after {}s",
                hole.connections(),
                rig.timeout.as_secs()
            );
        }
        rig.operator_alive()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The load is the waiting, not the start of 100 runs: go on once every blackholed run
    // waits on its request, or once that count has not moved for SETTLED_AFTER (an operator
    // whose reconciles are held never gets the others that far).
    let runs = Api::<RunbookRun>::namespaced(client.clone(), &stuck);
    let (mut waiting, mut since) = (usize::MAX, now());
    loop {
        let now_waiting = runs
            .list(&Default::default())
            .await
            .context("listing the blackholed runs")?
            .items
            .iter()
            .filter(|r| waits_on_request(r))
            .count();
        if now_waiting != waiting {
            (waiting, since) = (now_waiting, now());
        }
        if waiting == blackholed || now() - since > SETTLED_AFTER.as_secs_f64() {
            break;
        }
        if now() - started > rig.timeout.as_secs_f64() {
            bail!(
                "the blackholed runs did not settle in {}s",
                rig.timeout.as_secs()
            );
        }
        rig.operator_alive()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    progress(format!(
        "  {} blackholed connections open, {waiting} runs waiting on their request",
        hole.connections()
    ));
    let load_settle = now() - started;

    progress(format!(
        "loaded: {samples} runs in {other}, one after the other"
    ));
    let (load_latency, load_overhead, load_timeouts) = phase(
        &client,
        &other,
        &answerer,
        "loaded",
        samples,
        sample_timeout,
    )
    .await?;
    rig.operator_alive()?;
    let held = hole.connections();

    let mut table = Table::default();
    table.heading(format!("unloaded ({other} alone)"));
    table.dist("  run latency (create -> Succeeded)", base_latency, "s", "");
    table.dist(
        "  step overhead (server answered -> Succeeded)",
        base_overhead,
        "s",
        "",
    );
    table.value(
        "  samples timed out",
        Some(base_timeouts as f64),
        "runs",
        format!("limit {}s each", sample_timeout.as_secs()),
    );
    table.heading(format!(
        "loaded ({blackholed} runs in {stuck} on a blackholed URL)"
    ));
    table.dist("  run latency (create -> Succeeded)", load_latency, "s", "");
    table.dist(
        "  step overhead (server answered -> Succeeded)",
        load_overhead,
        "s",
        "",
    );
    table.value(
        "  samples timed out",
        Some(load_timeouts as f64),
        "runs",
        "the loaded phase stops at the first",
    );
    table.value(
        "  blackholed runs waiting on their request",
        Some(waiting as f64),
        "runs",
        format!(
            "when the phase began, {} s after the last create",
            support::num(load_settle)
        ),
    );
    table.value(
        "  blackholed connections open at the end",
        Some(held as f64),
        "conns",
        "accepted by the blackhole and still open",
    );
    table.value("operator RSS at the end", rig.proc_mib("VmRSS"), "MiB", "");
    table.print();
    Ok(true)
}
